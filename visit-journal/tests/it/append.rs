//! Appending: creation, batches, errors that name the path, locking with other programs.

use std::fs::{self, File};
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use visit_journal::{Error, Journal, Op, Options, Reader, Visit};

use crate::support::*;

#[test]
fn open_creates_missing_directories_and_the_file() {
    let t = TempJournal::new();
    let path = t.dir.path().join("a/b/c/visits.txt");
    let journal = Journal::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(journal.count().unwrap(), 0);
    journal.append(&visit(1)).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), lines(&[visit(1)]));
}

#[test]
fn appends_are_whole_lines_in_order() {
    let t = TempJournal::new();
    let journal = t.open();
    journal.append(&visit(1)).unwrap();
    journal.append_batch(&visits(2..5)).unwrap();
    journal.append_batch(&[]).unwrap();
    journal.append(&visit(5)).unwrap();
    assert_eq!(t.text(), lines(&visits(1..6)));
    assert_eq!(t.visits(), visits(1..6));
    let stats = journal.stats();
    assert_eq!((stats.records, stats.batches, stats.syncs), (5, 3, 3));
    // Two batches of one record, one of three (in the bucket of at most 4); the empty batch
    // touched nothing.
    assert_eq!(stats.batch_records[..4], [2, 0, 1, 0]);
    assert_eq!(stats.batch_records.iter().sum::<u64>(), 3);
    assert_eq!(stats.bytes, t.bytes().len() as u64);
}

#[test]
fn reopening_appends_after_existing_records() {
    let t = TempJournal::new();
    t.open().append_batch(&visits(0..3)).unwrap();
    t.open().append_batch(&visits(3..6)).unwrap();
    assert_eq!(t.visits(), visits(0..6));
}

#[test]
fn classic_lab_files_are_journals() {
    let classic =
        "2022-11-29T10:44:36+03:00 - 172.17.0.1\n2022-11-29T10:44:40+03:00 - 172.17.0.1\n";
    let t = TempJournal::with_bytes(classic.as_bytes());
    let journal = t.open();
    assert_eq!(journal.stats().repaired_bytes, 0);
    journal.append(&visit(7)).unwrap();
    assert_eq!(t.text(), format!("{classic}{}\n", visit(7)));
    assert_eq!(t.visits().len(), 3);
}

#[test]
fn bad_paths_name_the_path_and_the_operation() {
    let t = TempJournal::new();
    // A directory where the file should be.
    let err = Journal::open(t.dir.path()).unwrap_err();
    assert_eq!(err.path(), Some(t.dir.path()));
    assert!(err.to_string().starts_with("cannot open "), "{err}");
    // A file where a directory should be.
    let blocker = t.dir.path().join("blocker");
    fs::write(&blocker, "").unwrap();
    let err = Journal::open(blocker.join("visits.txt")).unwrap_err();
    assert!(err.to_string().contains("blocker"), "{err}");
    // Nothing at all.
    let err = Journal::open("").unwrap_err();
    assert!(matches!(err, Error::Io { op: Op::Open, .. }), "{err}");
}

/// Child entry point: a no-op unless `VISIT_JOURNAL_READ_ONLY_CHILD=<path>` is set. Run as
/// an unprivileged user: opens the read-only journal for writing and for reading, and prints
/// what happened.
#[test]
fn child_opens_a_read_only_file() {
    let Ok(path) = std::env::var("VISIT_JOURNAL_READ_ONLY_CHILD") else {
        return;
    };
    let readable = Reader::open(&path).map(|_| ()).map_err(|e| e.to_string());
    match Journal::open(&path) {
        Ok(_) => println!("opened for writing; readable={readable:?}"),
        Err(e) => println!(
            "refused op={:?} kind={:?} path={:?} readable={readable:?}",
            e.op(),
            e.io_error().map(std::io::Error::kind),
            e.path()
        ),
    }
}

#[test]
fn a_read_only_file_is_refused_at_open() {
    let t = TempJournal::with_bytes(b"");
    let mut perms = fs::metadata(&t.path).unwrap().permissions();
    perms.set_readonly(true);
    fs::set_permissions(&t.path, perms).unwrap();
    if !is_root() {
        let err = Journal::open(&t.path).unwrap_err();
        assert!(matches!(err, Error::Io { op: Op::Open, .. }), "{err}");
        assert_eq!(err.path(), Some(t.path.as_path()));
        return;
    }
    // Root writes to a read-only file anyway (CI runs as root), so the check runs in a child
    // process as the unprivileged `nobody` (65534), in a directory it may enter.
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    fs::set_permissions(t.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |exe: &std::path::Path| {
        Command::new(exe)
            .args([
                "append::child_opens_a_read_only_file",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env("VISIT_JOURNAL_READ_ONLY_CHILD", &t.path)
            .uid(65534)
            .gid(65534)
            .output()
    };
    let exe = std::env::current_exe().unwrap();
    let out = match as_nobody(&exe) {
        // The build directory is not open to other users: run a copy from the temp directory.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let copy = t.dir.path().join("it");
            fs::copy(&exe, &copy).unwrap();
            as_nobody(&copy)
        }
        other => other,
    }
    .expect("run the test binary as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let want = format!(
        "refused op=Some(Open) kind=Some(PermissionDenied) path=Some({:?}) readable=Ok(())",
        t.path
    );
    assert!(stdout.lines().any(|l| l == want), "{stdout}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

#[test]
fn unrepresentable_visits_are_refused() {
    let t = TempJournal::new();
    let journal = t.open();
    let mut v = visit(1);
    v.at =
        v.at.with_timezone(&chrono::FixedOffset::east_opt(45).unwrap());
    let err = journal.append(&v).unwrap_err();
    assert!(matches!(err, Error::Unrepresentable { .. }), "{err}");
    assert_eq!(t.text(), "");
}

#[test]
fn a_lock_held_elsewhere_times_out_with_locked() {
    let t = TempJournal::new();
    let journal = Options::new()
        .lock_timeout(Duration::from_millis(200))
        .open(&t.path)
        .unwrap();
    let holder = File::open(&t.path).unwrap();
    holder.lock().unwrap();
    let started = Instant::now();
    let err = journal.append(&visit(1)).unwrap_err();
    assert!(err.is_locked(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(t.text(), "", "nothing written without the lock");
    holder.unlock().unwrap();
    journal.append(&visit(2)).unwrap();
    assert_eq!(t.visits(), [visit(2)]);
}

/// A Python writer taking `fcntl.flock` and writing each record in two `write`s, beside a
/// journal appending from several threads: every record of both is whole and present.
#[test]
fn interleaves_safely_with_python_flock_writers() {
    // A lock that is never released would hang here: fail instead.
    within(
        Duration::from_secs(120),
        "beside a Python flock writer",
        || {
            const FOREIGN: u32 = 300;
            let t = TempJournal::new();
            let journal = t.open_fast();
            let script = format!(
                r#"
import fcntl, os, sys
with open({path:?}, "ab", buffering=0) as f:
    for i in range({FOREIGN}):
        line = b"2022-11-29T10:44:36+03:00 - 192.168.%d.%d\n" % (i // 256, i % 256)
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write(line[:10])
            os.sched_yield()
            f.write(line[10:])
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
"#,
                path = t.path.to_str().unwrap()
            );
            let mut python = spawn_python(&script);
            std::thread::scope(|s| {
                for thread in 0..4u16 {
                    let journal = &journal;
                    s.spawn(move || {
                        for seq in 0..200 {
                            journal.append(&tagged(0, thread, seq)).unwrap();
                        }
                    });
                }
            });
            assert!(python.wait().unwrap().success());

            let visits = t.visits(); // no corrupt line: nothing interleaved
            let foreign: Vec<_> = visits.iter().filter(|v| v.ip.is_ipv4()).collect();
            assert_eq!(foreign.len(), FOREIGN as usize);
            for (i, v) in foreign.iter().enumerate() {
                assert_eq!(v.ip.to_string(), format!("192.168.{}.{}", i / 256, i % 256));
            }
            let ours: Vec<_> = visits.iter().filter(|v| v.ip.is_ipv6()).map(tag).collect();
            assert_eq!(ours.len(), 800);
            for thread in 0..4 {
                let seqs: Vec<u32> = ours.iter().filter(|t| t.1 == thread).map(|t| t.2).collect();
                assert_eq!(
                    seqs,
                    (0..200).collect::<Vec<_>>(),
                    "thread {thread} in order"
                );
            }
        },
    );
}

/// A record another program appended under the lock is read back like ours.
#[test]
fn foreign_records_appended_under_the_lock_are_kept() {
    let t = TempJournal::new();
    t.open().append(&visit(1)).unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&t.path).unwrap();
    f.lock().unwrap();
    writeln!(f, "2022-11-29T10:44:36Z - ::1").unwrap();
    f.unlock().unwrap();
    let journal = t.open();
    journal.append(&visit(2)).unwrap();
    let got: Vec<String> = t.visits().iter().map(Visit::to_string).collect();
    assert_eq!(got[1], "2022-11-29T10:44:36.000+00:00 - ::1");
    assert_eq!(got.len(), 3);
}

#[test]
fn create_false_opens_only_an_existing_journal() {
    let t = TempJournal::new();
    let err = Options::new().create(false).open(&t.path).unwrap_err();
    assert!(matches!(err, Error::Io { op: Op::Open, .. }), "{err}");
    assert_eq!(
        err.io_error().map(std::io::Error::kind),
        Some(std::io::ErrorKind::NotFound)
    );
    assert!(!t.path.exists());
    t.write(b"2026-11-26T10:4");
    let journal = Options::new().create(false).open(&t.path).unwrap();
    assert_eq!(journal.stats().repaired_bytes, 15);
}

#[test]
fn journal_and_reader_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Journal>();
    send::<visit_journal::Reader>();
    send_sync::<visit_journal::Error>();
}
