//! Open a journal, append a few visits, stream them back and read the last ones.
//!
//! ```text
//! cargo run --example append_and_read [-- PATH]
//! ```
//!
//! Without `PATH` the journal lives in a temporary directory, removed when the example ends.
//! With a `PATH`, the visits are added to that file (created if needed), which stays.
#![allow(
    clippy::print_stdout,
    reason = "an example shows what it does on stdout"
)]

use std::error::Error;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;

use visit_journal::{Journal, Reader, Visit};

fn main() -> Result<(), Box<dyn Error>> {
    // Dropping the TempDir deletes it, so it lives as long as `main` even when unused.
    let temp = tempfile::tempdir()?;
    let path = match std::env::args_os().nth(1) {
        Some(path) => PathBuf::from(path),
        None => temp.path().join("data/visits.txt"),
    };

    // Creates data/ and the file if needed, and cuts a torn last line left by a crash.
    let journal = Journal::open(&path)?;
    println!("opened {}", path.display());

    let ips: [IpAddr; 4] = [
        "10.0.0.7".parse()?,
        "10.0.0.8".parse()?,
        "2001:db8::1".parse()?,
        "10.0.0.7".parse()?,
    ];
    for ip in ips {
        // Returns only once the line is on stable storage (fdatasync): a crash cannot lose it.
        journal.append(&Visit::now(ip))?;
        println!("appended a visit from {ip}");
    }

    // The file is plain text: this is what `kubectl exec ... -- cat visits.txt` shows.
    // `into_text` streams the complete lines byte for byte, in constant memory.
    println!("\nthe file, as cat shows it:");
    let mut out = io::stdout().lock();
    io::copy(&mut journal.reader()?.into_text(), &mut out)?;
    out.flush()?;
    drop(out);

    // A Reader parses the lines back into visits, oldest first, without loading the file.
    // It takes no lock, so it can run while other processes append.
    println!("\nstreamed back as typed values:");
    for visit in Reader::open(&path)? {
        // A malformed line would be an `Err` naming the path, line number and byte offset.
        let visit = visit?;
        println!(
            "  {:<12} on {} at {} (UTC offset {})",
            visit.ip,
            visit.at.date_naive(),
            visit.at.time(),
            visit.at.offset()
        );
    }

    // `count` counts newlines without parsing; `tail` reads backwards from the end, so its cost
    // depends on how many lines you ask for, not on the size of the file.
    println!("\n{} lines in the file; the last 2:", journal.count()?);
    for visit in journal.tail(2)? {
        println!("  {visit}");
    }

    let stats = journal.stats();
    println!(
        "\nthis handle appended {} visits with {} fdatasync calls",
        stats.records, stats.syncs
    );
    Ok(())
}
