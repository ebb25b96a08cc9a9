//! A foreign writer (Python, `fcntl.flock`, two `write`s under one lock) beside the server
//! under load: nothing interleaves, every foreign record is there.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use crate::load::Load;
use crate::support::{Scratch, Server, ips, journal_lines};

const FOREIGN: u32 = 300;

/// Appends `n` records from 10.250.x.y, each as two writes (split mid-line, a pause between)
/// under one exclusive `flock`, as a careful script would.
const WRITER: &str = r#"
import datetime, fcntl, sys, time
path, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    line = f"{now} - 10.250.{i // 256}.{i % 256}\n".encode()
    with open(path, "ab", buffering=0) as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line[:20])
        time.sleep(0.0005)
        f.write(line[20:])
        fcntl.flock(f, fcntl.LOCK_UN)
"#;

#[test]
fn a_foreign_flock_writer_interleaves_safely() {
    let s = Scratch::new();
    let server = Server::start(&s.file(), &[]);
    let next = Arc::new(AtomicU32::new(0));
    let load = Load::start(server.addr, 4, &next, 100_000, Duration::from_secs(60));
    let started = Instant::now();
    let status = Command::new("python3")
        .arg("-c")
        .arg(WRITER)
        .arg(s.file())
        .arg(FOREIGN.to_string())
        .status()
        .expect("python3 is on every machine");
    assert!(status.success());
    // Keep the load going a little longer than the writer if it was very quick.
    if started.elapsed() < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(500) - started.elapsed());
    }
    let (acked, _) = load.stop();

    let lines = journal_lines(&s.file());
    let recorded: BTreeSet<String> = ips(&lines).into_iter().collect();
    assert_eq!(recorded.len(), lines.len(), "duplicate records");
    for i in 0..FOREIGN {
        let ip = format!("10.250.{}.{}", i / 256, i % 256);
        assert!(recorded.contains(&ip), "foreign record {ip} missing");
    }
    let ours: BTreeSet<String> = recorded
        .iter()
        .filter(|ip| !ip.starts_with("10.250."))
        .cloned()
        .collect();
    // Every 200 is there, and nothing else of ours (no visit failed here).
    assert_eq!(ours, acked);
    assert!(acked.len() > 10, "too little load: {}", acked.len());
}
