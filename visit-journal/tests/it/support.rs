//! Fixtures that make the tests read as scenarios.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use visit_journal::{Journal, Options, Reader, Visit};

/// A journal path in a fresh temporary directory, removed on drop.
pub struct TempJournal {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempJournal {
    pub fn new() -> TempJournal {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("visits.txt");
        TempJournal { dir, path }
    }

    /// A journal whose file starts with exactly these bytes.
    pub fn with_bytes(bytes: &[u8]) -> TempJournal {
        let t = TempJournal::new();
        t.write(bytes);
        t
    }

    pub fn open(&self) -> Journal {
        Journal::open(&self.path).expect("open journal")
    }

    /// Without fsync: for tests that write a lot and do not crash the machine.
    pub fn open_fast(&self) -> Journal {
        Options::new()
            .sync(false)
            .open(&self.path)
            .expect("open journal")
    }

    pub fn write(&self, bytes: &[u8]) {
        fs::write(&self.path, bytes).expect("write file");
    }

    pub fn bytes(&self) -> Vec<u8> {
        fs::read(&self.path).expect("read file")
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.bytes()).expect("utf-8")
    }

    /// Every item the reader yields, errors as their messages.
    pub fn read(&self) -> Vec<Result<Visit, String>> {
        read_all(&self.path)
    }

    /// The visits, failing the test on any error.
    pub fn visits(&self) -> Vec<Visit> {
        visits_at(&self.path)
    }
}

/// The visits of the journal at `path`, failing the test on any error.
pub fn visits_at(path: &Path) -> Vec<Visit> {
    read_all(path)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("unexpected error: {e}")))
        .collect()
}

pub fn read_all(path: &Path) -> Vec<Result<Visit, String>> {
    Reader::open(path)
        .expect("open reader")
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
}

/// A distinct, deterministic visit for `n`.
pub fn visit(n: u32) -> Visit {
    let at = format!(
        "2026-11-26T10:{:02}:{:02}.{:03}+03:00",
        n / 60 % 60,
        n % 60,
        n % 1000
    );
    Visit::new(
        at.parse().expect("timestamp"),
        IpAddr::V4((0x0a00_0000 | (n & 0x00ff_ffff)).into()),
    )
}

pub fn visits(range: std::ops::Range<u32>) -> Vec<Visit> {
    range.map(visit).collect()
}

/// The file's text for these visits.
pub fn lines(visits: &[Visit]) -> String {
    visits.iter().map(|v| format!("{v}\n")).collect()
}

/// A visit whose address names a writer (process, thread) and its sequence number, so a test
/// can check that every writer's records are all there, once, in order.
pub fn tagged(process: u16, thread: u16, seq: u32) -> Visit {
    let ip = Ipv6Addr::new(
        0xfd00,
        0,
        0,
        0,
        process,
        thread,
        (seq >> 16) as u16,
        seq as u16,
    );
    Visit::now(IpAddr::V6(ip))
}

/// The (process, thread, seq) of a [`tagged`] visit.
pub fn tag(v: &Visit) -> (u16, u16, u32) {
    match v.ip {
        IpAddr::V6(ip) => {
            let s = ip.segments();
            assert_eq!(s[0], 0xfd00, "not a tagged visit: {v}");
            (s[4], s[5], (u32::from(s[6]) << 16) | u32::from(s[7]))
        }
        IpAddr::V4(_) => panic!("not a tagged visit: {v}"),
    }
}

/// Makes a FIFO at `path` (with mkfifo(1): std has no call for it and the crate no `unsafe`).
pub fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Starts `python3 -c script`, stdin closed: the foreign writer of a test.
pub fn spawn_python(script: &str) -> Child {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 is on every machine this project supports")
}

/// Re-executes this test binary to run the `#[test]` named `test` (a child entry point) with
/// `env` set, its stdout piped.
pub fn spawn_child(test: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child test process")
}

/// In a child process: the journal path and process number its parent put in `env`
/// (`<path>;<process>`), or `None` when this is not a child (the entry point is then a no-op).
pub fn child_spec(env: &str) -> Option<(String, u16)> {
    let spec = std::env::var(env).ok()?;
    let (path, process) = spec.split_once(';').expect("<path>;<process>");
    Some((path.to_string(), process.parse().expect("process number")))
}

/// The lines a child prints, as they come.
pub fn child_lines(child: &mut Child) -> impl Iterator<Item = String> + use<> {
    let stdout = child.stdout.take().expect("child stdout");
    BufReader::new(stdout).lines().map_while(Result::ok)
}

/// Runs `body` on a thread of its own and fails the test if it has not finished within
/// `limit`, so that a hang (a lost wake-up, a starved reopen) fails instead of stalling CI.
/// A hung thread is left behind; it dies with the test binary.
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, finished) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let out = body();
        let _ = done.send(());
        out
    });
    match finished.recv_timeout(limit) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: still running after {limit:?}, so it hangs")
        }
    }
}

/// In a child process: exits it with status 99 if it is still running after `limit`, so that
/// a hung child cannot outlive its test.
pub fn child_watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("child still running after {limit:?}: exiting");
        std::process::exit(99);
    });
}
