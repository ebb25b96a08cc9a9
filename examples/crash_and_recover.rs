//! A child process appends visits until it is killed (`kill -9`) in the middle of its work;
//! reopening the journal shows every visit the child had acknowledged and repairs the tail.
//!
//! ```text
//! cargo run --example crash_and_recover [-- PATH]
//! ```
//!
//! Without `PATH` the journal lives in a temporary directory; a `PATH` must not exist yet.
//! The child is this program again (`current_exe`), started with the hidden first argument
//! `child`. It prints `acked N` after each append returns, which is the promise under test:
//! every acknowledged visit survives the crash.
#![allow(
    clippy::print_stdout,
    reason = "an example shows what it does on stdout"
)]

use std::error::Error;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use visit_journal::{Journal, Reader, Visit};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let first = args.next();
    if first.as_deref().is_some_and(|a| a == "child") {
        let path = args.next().ok_or("child: missing PATH")?;
        return child(Path::new(&path));
    }
    let temp = tempfile::tempdir()?;
    let path = first.map_or_else(|| temp.path().join("visits.txt"), PathBuf::from);
    if path.exists() {
        return Err(format!(
            "{} exists; this example starts from no file",
            path.display()
        )
        .into());
    }

    // Kill the child after a number of acknowledgements that differs from run to run.
    let kill_after = 20
        + SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .subsec_nanos()
            % 100;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(&exe)
        .arg("child")
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let acks = BufReader::new(child.stdout.take().ok_or("no pipe from the child")?);
    let mut acked = 0u32; // The child acknowledges visits 0, 1, 2, ... in order.
    let mut killed = false;
    for line in acks.lines() {
        acked = line?
            .strip_prefix("acked ")
            .ok_or("unexpected output from the child")?
            .parse::<u32>()?
            + 1;
        if acked == kill_after && !killed {
            // SIGKILL: no destructor, no flush, no goodbye. The child may be inside `write`,
            // between `write` and `fdatasync`, or between two appends.
            child.kill()?;
            killed = true;
        }
        // Keep reading: acks the child printed just before it died are still in the pipe, and
        // they are promises too.
    }
    let status = child.wait()?;
    if !killed {
        return Err(format!("the child stopped by itself ({status}) after {acked} visits").into());
    }
    println!("killed the child ({status}) after it acknowledged {acked} visits");

    // Look at the file as the crash left it, without writing.
    let report = Reader::open(&path)?.verify()?;
    println!(
        "the file now: {} complete lines, {} bytes after the last one",
        report.records, report.torn_tail_bytes
    );
    if report.torn_tail_bytes == 0 {
        // A kill rarely lands inside a 42-byte `write`. Leave what such a kill (or a power
        // loss, or a crashed non-library writer) leaves: the first half of a line.
        let half_a_line = b"2026-11-26T10:44:36.12";
        OpenOptions::new()
            .append(true)
            .open(&path)?
            .write_all(half_a_line)?;
        println!(
            "the kill fell between writes; tearing the last line by hand: +{} bytes",
            half_a_line.len()
        );
    }

    // Opening for writing repairs the tail under the lock, and says how much it cut.
    let journal = Journal::open(&path)?;
    println!(
        "reopened: cut a torn tail of {} bytes",
        journal.stats().repaired_bytes
    );

    let mut seq = 0u32;
    for visit in journal.reader()? {
        if sequence_number(&visit?) != Some(seq) {
            return Err(format!("line {}: not visit {seq}", seq + 1).into());
        }
        seq += 1;
    }
    if seq < acked {
        return Err(format!("only {seq} visits survived, {acked} were acknowledged").into());
    }
    println!("all {acked} acknowledged visits are there, in order, and no line is torn");
    if seq > acked {
        // Allowed: the visit was written, and maybe synced, but the child died before saying so.
        println!(
            "plus {} written but not acknowledged before the kill",
            seq - acked
        );
    }

    journal.append(&Visit::now(tag(seq)))?;
    println!(
        "and the journal takes new visits: {} lines now",
        journal.count()?
    );
    Ok(())
}

/// The child: appends visits `0, 1, 2, ...` one by one and prints `acked N` after each.
fn child(path: &Path) -> Result<(), Box<dyn Error>> {
    let journal = Journal::open(path)?;
    let mut out = std::io::stdout().lock();
    // Should the parent be gone without killing us, stop anyway.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seq = 0;
    while Instant::now() < deadline {
        journal.append(&Visit::now(tag(seq)))?;
        // Only now is the visit durable, so only now may we say so.
        writeln!(out, "acked {seq}")?;
        out.flush()?;
        seq += 1;
    }
    Ok(())
}

/// Visit number `seq` comes from address `10.0.0.0 + seq`, so the file tells which it is.
fn tag(seq: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + seq))
}

fn sequence_number(visit: &Visit) -> Option<u32> {
    match visit.ip {
        IpAddr::V4(ip) => u32::from(ip).checked_sub(0x0a00_0000),
        IpAddr::V6(_) => None,
    }
}
