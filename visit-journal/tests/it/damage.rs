//! What a long-lived volume can hold besides a healthy history (CONTRACT §10): a damaged
//! summary, odd files with a segment's name, a history deleted under a running writer, a
//! live file owned by someone else, a journal path that is a symlink. None of them may stop
//! recording or make a count wrong; the history degrades and says so, it never lies or stops.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use visit_journal::{History, Journal, Options, Visit};

use crate::rotation::{names, per_day, segments};
use crate::support::*;

/// Four KiB: the smallest rotate size, about 100 of the tests' visits.
const ROTATE: u64 = 4096;

/// A visit on day `day` of November 2026, distinct for `n`.
fn on_day(day: u32, n: u32) -> Visit {
    let mut v = visit(n);
    v.at = format!(
        "2026-11-{day:02}T10:{:02}:{:02}.{:03}+03:00",
        n / 60 % 60,
        n % 60,
        n % 1000
    )
    .parse()
    .unwrap();
    v
}

fn append_days(journal: &Journal, day: u32, range: std::ops::Range<u32>) -> Vec<Visit> {
    let visits: Vec<Visit> = range.map(|n| on_day(day, n)).collect();
    for v in &visits {
        journal.append(v).unwrap();
    }
    visits
}

/// Without fsync, rotating every 4 KiB, and (if `segments` > 0) keeping that many segments'
/// worth of sealed bytes.
fn fast(segments: u64) -> Options {
    Options::new()
        .sync(false)
        .rotate_size(ROTATE)
        .retain_size(segments * ROTATE)
}

/// Changes one byte of the summary's first day line, so that it no longer parses; returns
/// the sound text, to put back.
fn damage_summary(path: &Path) -> String {
    let good = summary_of(path);
    let damaged = good.replacen("2026-11-20 ", "2026-11-2x ", 1);
    assert_ne!(good, damaged);
    fs::write(path.with_file_name("visits.txt.summary"), damaged).unwrap();
    good
}

fn summary_of(path: &Path) -> String {
    fs::read_to_string(path.with_file_name("visits.txt.summary")).unwrap()
}

/// Retires a few segments so that a summary exists, and returns the visits appended.
fn with_a_summary(t: &TempJournal, options: &Options) -> Vec<Visit> {
    let journal = options.open(&t.path).unwrap();
    let visits = append_days(&journal, 20, 0..600);
    assert!(
        t.path.with_file_name("visits.txt.summary").exists(),
        "{:?}",
        names(t.dir.path())
    );
    visits
}

#[test]
fn a_damaged_summary_never_stops_rotation_or_recording() {
    let t = TempJournal::new();
    let options = fast(2);
    with_a_summary(&t, &options);
    // One byte changed in a day line: the summary no longer parses.
    damage_summary(&t.path);
    let summary = t.path.with_file_name("visits.txt.summary");
    let damaged = summary_of(&t.path);

    let journal = options.open(&t.path).unwrap();
    let before = segments(&t.path).len();
    append_days(&journal, 21, 0..1000);
    // Rotation goes on (its numbering needs only the first line): the live file stays within
    // the rotate size, and new segments are sealed.
    let live = fs::metadata(&t.path).unwrap().len();
    assert!(live <= ROTATE, "the live file grew to {live} bytes");
    assert!(
        segments(&t.path).len() > before,
        "{:?}",
        names(t.dir.path())
    );
    // Retention pauses: the summary is never rewritten from a damaged one.
    assert_eq!(fs::read_to_string(&summary).unwrap(), damaged);
    // Readers answer what they can read.
    let history = History::open(&t.path).unwrap();
    assert_eq!(history.count_lines().unwrap() as usize, {
        let mut n = 0;
        for seg in segments(&t.path) {
            n += fs::read_to_string(seg).unwrap().lines().count();
        }
        n + fs::read_to_string(&t.path).unwrap().lines().count()
    });
}

#[test]
fn a_summary_whose_first_line_does_not_parse_pauses_rotation_not_recording() {
    let t = TempJournal::new();
    let options = fast(2);
    with_a_summary(&t, &options);
    let summary = t.path.with_file_name("visits.txt.summary");
    fs::write(&summary, "# folded through x\n2026-11-20 5\n").unwrap();
    let sealed = segments(&t.path);

    let journal = options.open(&t.path).unwrap();
    let more = append_days(&journal, 22, 0..300);
    // No number can be trusted, so nothing is sealed; every visit is recorded in the live
    // file, and the failure is counted once per pause, not once per batch.
    assert_eq!(segments(&t.path), sealed);
    let live = History::open(&t.path).unwrap().count_lines().unwrap();
    assert!(live as usize >= more.len());
    assert!(
        journal.stats().failed_rotations < 10,
        "{:?}",
        journal.stats()
    );
    drop(journal);
    // Durably: a paused rotation costs no fdatasync of its own (it used to sync the live
    // file under the lock before finding that it had no number, at every batch).
    let journal = Options::new()
        .rotate_size(ROTATE)
        .retain_size(2 * ROTATE)
        .open(&t.path)
        .unwrap();
    append_days(&journal, 23, 0..50);
    let stats = journal.stats();
    assert_eq!(stats.syncs, stats.batches, "{stats:?}");
}

#[test]
fn a_directory_with_a_segments_name_is_set_aside_and_retention_goes_on() {
    let t = TempJournal::new();
    fs::create_dir(t.dir.path().join("visits.txt.000001")).unwrap();
    fs::write(t.dir.path().join("visits.txt.000001/inside"), "x").unwrap();
    let journal = fast(2).open(&t.path).unwrap();
    let visits = append_days(&journal, 20, 0..2000);
    let names = names(t.dir.path());
    assert!(
        segments(&t.path).len() <= 3,
        "retention stopped at the directory: {names:?}"
    );
    assert_eq!(
        journal.stats().failed_retentions,
        0,
        "{:?}",
        journal.stats()
    );
    // Set aside, never deleted.
    let aside = t.dir.path().join("visits.txt.000001.damaged");
    assert!(aside.is_dir(), "{names:?}");
    assert_eq!(fs::read_to_string(aside.join("inside")).unwrap(), "x");
    assert!(summary_of(&t.path).contains("# damaged 1\n"));
    // Every visit is counted once.
    let days = History::open(&t.path).unwrap().days().unwrap();
    assert_eq!(days, per_day(&visits));
}

#[test]
fn a_fifo_with_a_segments_name_never_blocks_a_writer_or_a_reader() {
    let t = TempJournal::new();
    let fifo = t.dir.path().join("visits.txt.000001");
    mkfifo(&fifo);
    let path = t.path.clone();
    let visits = within(
        Duration::from_secs(20),
        "appending beside a FIFO",
        move || {
            let journal = fast(2).retain_days(30).open(&path).unwrap();
            append_days(&journal, 20, 0..1000)
        },
    );
    let path = t.path.clone();
    let days = within(
        Duration::from_secs(20),
        "reading beside a FIFO",
        move || History::open(&path).unwrap().days().unwrap(),
    );
    assert_eq!(days, per_day(&visits));
    assert!(t.dir.path().join("visits.txt.000001.damaged").exists());
}

#[test]
fn a_fifo_with_a_segments_name_is_skipped_by_readers_without_retention() {
    let t = TempJournal::new();
    let journal = fast(0).open(&t.path).unwrap();
    let visits = append_days(&journal, 20, 0..300);
    let fifo = t.dir.path().join("visits.txt.000900");
    mkfifo(&fifo);
    let path = t.path.clone();
    let read = within(
        Duration::from_secs(20),
        "reading beside a FIFO",
        move || {
            History::open(&path)
                .unwrap()
                .map(|v| v.unwrap())
                .collect::<Vec<_>>()
        },
    );
    assert_eq!(read, visits);
    // A number is never reused: the next segment is numbered above the FIFO's.
    append_days(&journal, 21, 300..500);
    assert!(t.dir.path().join("visits.txt.000901").exists());
}

#[test]
fn counts_belong_to_a_files_identity_not_its_number() {
    let t = TempJournal::new();
    // The age limit makes retention count each segment (to know its newest visit) and keep
    // it (its visits are recent); the size limit then retires by size.
    let options = fast(3).retain_days(36_500);
    let journal = options.open(&t.path).unwrap();
    append_days(&journal, 20, 0..250);
    // An operator deletes the history under the running writer.
    for name in names(t.dir.path()) {
        fs::remove_file(t.dir.path().join(name)).unwrap();
    }
    // New segments reuse the old numbers; the old ones' counts must not come back.
    let fresh = append_days(&journal, 25, 0..1000);
    let days = History::open(&t.path).unwrap().days().unwrap();
    assert_eq!(days, per_day(&fresh), "{}", summary_of(&t.path));
}

#[test]
fn the_fresh_live_file_takes_the_mode_and_owner_of_the_one_it_replaces() {
    let t = TempJournal::new();
    let journal = fast(0).open(&t.path).unwrap();
    journal.append(&visit(0)).unwrap();
    fs::set_permissions(&t.path, fs::Permissions::from_mode(0o640)).unwrap();
    let root = is_root();
    if root {
        // Root (a debug container running a backfill) rotates a file the server owns.
        std::os::unix::fs::chown(&t.path, Some(65532), Some(65532)).unwrap();
    }
    append_days(&journal, 20, 0..300);
    assert!(!segments(&t.path).is_empty());
    let meta = fs::metadata(&t.path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    if root {
        assert_eq!((meta.uid(), meta.gid()), (65532, 65532));
    } else {
        eprintln!("not root: the owner part of this test needs root to chown; mode checked");
    }
}

/// True when the tests run as root (as in CI and containers).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn a_journal_path_that_is_a_symlink_keeps_its_history_beside_the_target() {
    let t = TempJournal::new();
    let real = t.dir.path().join("real");
    fs::create_dir(&real).unwrap();
    let link_dir = t.dir.path().join("link");
    fs::create_dir(&link_dir).unwrap();
    let target = real.join("visits.txt");
    fs::write(&target, "").unwrap();
    let link = link_dir.join("visits.txt");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    let journal = fast(0).open(&link).unwrap();
    let visits = append_days(&journal, 20, 0..300);
    // The link still points at the live file; the segments are beside it.
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(names(&link_dir), ["visits.txt"]);
    assert!(!segments(&target).is_empty(), "{:?}", names(&real));
    let read: Vec<Visit> = History::open(&link).unwrap().map(|v| v.unwrap()).collect();
    assert_eq!(read, visits);
}

#[test]
fn a_readiness_probe_retries_a_pending_retention() {
    let t = TempJournal::new();
    let options = fast(2);
    with_a_summary(&t, &options);
    let good = damage_summary(&t.path);
    let journal = options.open(&t.path).unwrap();
    append_days(&journal, 21, 0..1000);
    let piled_up = segments(&t.path).len();
    assert!(piled_up > 3, "{:?}", names(t.dir.path()));
    // The operator repairs the summary; no visit comes (the replica is unready, say), only
    // probes. Retention must run again by itself.
    fs::write(t.path.with_file_name("visits.txt.summary"), &good).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    journal.check_writable().unwrap();
    assert!(segments(&t.path).len() <= 3, "{:?}", names(t.dir.path()));
}

const UNREADABLE_CHILD: &str = "VISIT_JOURNAL_UNREADABLE_CHILD";

/// A file with a segment's name that this process may not read (root reads everything, so as
/// root the test runs again as `nobody`, through `setpriv`).
#[test]
fn an_unreadable_file_with_a_segments_name_is_skipped_and_set_aside() {
    let t = TempJournal::new();
    if !is_root() {
        return unreadable_segment(&t.path);
    }
    std::os::unix::fs::chown(t.dir.path(), Some(65534), Some(65534)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(exe)
        .args([
            "damage::unreadable_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(UNREADABLE_CHILD, &t.path)
        .output()
        .expect("setpriv (util-linux) runs the child as nobody");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("unreadable: ok"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Child entry point of the test above: a no-op unless its parent set `UNREADABLE_CHILD`.
#[test]
fn unreadable_child() {
    let Ok(path) = std::env::var(UNREADABLE_CHILD) else {
        return;
    };
    unreadable_segment(Path::new(&path));
    println!("unreadable: ok");
}

fn unreadable_segment(path: &Path) {
    let options = fast(3);
    let journal = options.open(path).unwrap();
    let first = append_days(&journal, 20, 0..150);
    let seg = path.with_file_name("visits.txt.000001");
    let in_first = fs::read_to_string(&seg).unwrap().lines().count();
    fs::set_permissions(&seg, fs::Permissions::from_mode(0o000)).unwrap();
    assert!(
        fs::File::open(&seg).is_err(),
        "the test needs a file it cannot read"
    );
    // Readers skip it and say so.
    let history = History::open(path).unwrap();
    assert_eq!(history.damaged().len(), 1);
    assert_eq!(history.damaged()[0].file_name(), "visits.txt.000001");
    assert!(history.damaged()[0].reason().contains("ermission denied"));
    let counts = journal.counts().unwrap();
    assert_eq!(counts.visits() as usize, first.len() - in_first);
    // Retention reaches it: set aside, counted, never deleted; every other visit counted.
    let more = append_days(&journal, 21, 0..1000);
    let aside = path.with_file_name("visits.txt.000001.damaged");
    assert!(
        fs::symlink_metadata(&aside).is_ok(),
        "{:?}",
        names(path.parent().unwrap())
    );
    assert!(summary_of(path).contains("# damaged 1\n"));
    let counts = journal.counts().unwrap();
    assert_eq!(
        counts.visits() as usize,
        first.len() - in_first + more.len()
    );
    assert_eq!(counts.damaged().len(), 1);
    assert_eq!(counts.damaged()[0].file_name(), "visits.txt.000001.damaged");
    assert_eq!(journal.stats().set_aside_files, 1);
}
