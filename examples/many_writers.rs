//! Several processes, each with several threads, append to one journal at the same time; then
//! the file is checked: the exact number of lines, every line whole, every writer's visits in
//! its own order.
//!
//! ```text
//! cargo run --example many_writers [-- PROCESSES THREADS VISITS [PATH]]
//! ```
//!
//! Defaults: 4 processes × 4 threads × 100 visits each, in a temporary directory.
//! The processes are this program again (`current_exe`), started with the hidden first
//! argument `child`.
//!
//! Processes exclude each other with `flock(2)` on the file; the threads of one process share
//! one `Journal`, whose group commit writes their concurrent visits with one `write` and one
//! `fdatasync`. The per-process statistics show how many visits each fsync carried.
#![allow(
    clippy::print_stdout,
    reason = "an example shows what it does on stdout"
)]

use std::collections::HashMap;
use std::error::Error;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use visit_journal::{Journal, Reader, Visit};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "child") {
        return child(&args[1..]);
    }
    let processes: u16 = number(&args, 0, 4)?;
    let threads: u16 = number(&args, 1, 4)?;
    let visits: u16 = number(&args, 2, 100)?;
    let temp = tempfile::tempdir()?;
    let path = match args.get(3) {
        Some(path) => PathBuf::from(path),
        None => temp.path().join("visits.txt"),
    };
    // Whatever the file held before is counted, so that a PATH with visits in it works too.
    let before = if path.exists() {
        Reader::open(&path)?.count_lines()?
    } else {
        0
    };

    println!(
        "{processes} processes x {threads} threads x {visits} visits -> {}",
        path.display()
    );
    // Start every child before waiting for any, so that they all append at once.
    let exe = std::env::current_exe()?;
    let children = (1..=processes)
        .map(|p| {
            Command::new(&exe)
                .arg("child")
                .arg(&path)
                .args([p, threads, visits].map(|n| n.to_string()))
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", exe.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for child in children {
        let output = child.wait_with_output()?;
        print!("{}", String::from_utf8_lossy(&output.stdout));
        if !output.status.success() {
            return Err(format!("a writer process failed: {}", output.status).into());
        }
    }

    check(&path, before, processes, threads, visits)
}

/// A child process: `THREADS` threads share one journal and append `VISITS` tagged visits each.
fn child(args: &[OsString]) -> Result<(), Box<dyn Error>> {
    let path = args.first().ok_or("child: missing PATH")?;
    let process: u16 = number(args, 1, 1)?;
    let threads: u16 = number(args, 2, 1)?;
    let visits: u16 = number(args, 3, 1)?;
    let journal = Journal::open(path)?;
    // Scoped threads can borrow the journal: `Journal` is `Sync`, every method takes `&self`.
    std::thread::scope(|s| -> Result<(), Box<dyn Error>> {
        let workers: Vec<_> = (1..=threads)
            .map(|thread| {
                let journal = &journal;
                s.spawn(move || -> visit_journal::Result<()> {
                    for seq in 0..visits {
                        journal.append(&tagged(process, thread, seq))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            // The outer `Err` is a panic, the inner one an append that failed.
            worker.join().map_err(|_| "a writer thread panicked")??;
        }
        Ok(())
    })?;
    let stats = journal.stats();
    println!(
        "  process {process}: {} visits in {} writes and {} fsyncs (up to {} visits per fsync)",
        stats.records, stats.batches, stats.syncs, stats.largest_batch
    );
    Ok(())
}

/// Reads the file back and checks that it holds exactly what the writers appended.
fn check(
    path: &Path,
    before: u64,
    processes: u16,
    threads: u16,
    visits: u16,
) -> Result<(), Box<dyn Error>> {
    let expected = u64::from(processes) * u64::from(threads) * u64::from(visits);
    // The next sequence number expected from each (process, thread).
    let mut next: HashMap<(u16, u16), u16> = HashMap::new();
    let (mut lines, mut switches, mut last_process) = (0u64, 0u64, None);
    for visit in Reader::open(path)? {
        // A torn or interleaved line would not parse: the reader reports it with its line number.
        let visit = visit?;
        lines += 1;
        if lines <= before {
            continue; // It was in the file before we started.
        }
        let (process, thread, seq) =
            tag_of(&visit).ok_or_else(|| format!("line {lines}: a visit nobody here appended"))?;
        let want = next.entry((process, thread)).or_insert(0);
        if seq != *want {
            return Err(format!(
                "process {process} thread {thread}: visit {seq} where {want} was expected"
            )
            .into());
        }
        *want += 1;
        if last_process.is_some_and(|p| p != process) {
            switches += 1;
        }
        last_process = Some(process);
    }
    let appended = lines - before;
    if appended != expected || next.values().any(|&n| n != visits) {
        return Err(format!("{appended} visits in the file, {expected} expected").into());
    }
    println!("checked {}:", path.display());
    println!("  {appended} new lines, exactly the {expected} visits appended");
    println!("  every line parses: none torn, none interleaved with another");
    println!(
        "  each of the {} writers' visits in the order it appended them",
        next.len()
    );
    println!(
        "  the lines switch from one process to another {switches} times: the writes overlapped"
    );
    Ok(())
}

/// A visit whose address says who appended it: `fd00::PROCESS:THREAD:SEQ`.
fn tagged(process: u16, thread: u16, seq: u16) -> Visit {
    Visit::now(IpAddr::V6(Ipv6Addr::new(
        0xfd00, 0, 0, 0, 0, process, thread, seq,
    )))
}

fn tag_of(visit: &Visit) -> Option<(u16, u16, u16)> {
    match visit.ip {
        IpAddr::V6(ip) => match ip.segments() {
            [0xfd00, 0, 0, 0, 0, process, thread, seq] => Some((process, thread, seq)),
            _ => None,
        },
        IpAddr::V4(_) => None,
    }
}

/// The `i`th argument as a number, or `default` if it is absent.
fn number<T: FromStr>(args: &[OsString], i: usize, default: T) -> Result<T, String> {
    let Some(arg) = args.get(i) else {
        return Ok(default);
    };
    arg.to_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            format!(
                "argument {} is not a number: {}; usage: many_writers [PROCESSES THREADS VISITS [PATH]]",
                i + 1,
                arg.to_string_lossy()
            )
        })
}
