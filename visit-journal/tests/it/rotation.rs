//! Rotation and retention through the public API: the live file, sealed segments, the summary
//! and the history reader over them (CONTRACT §6). Crashes and failures at each step are
//! `src/writer.rs`'s unit tests (they need the fault-injecting seams); processes appending
//! and rotating at once are in `concurrency.rs`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use visit_journal::{History, Journal, Options, Visit};

use crate::support::*;

/// The files of the journal's directory, sorted, as names.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The sealed segments of the journal at `path`, oldest first.
pub fn segments(path: &Path) -> Vec<PathBuf> {
    let dir = path.parent().unwrap();
    names(dir)
        .into_iter()
        .filter(|n| {
            n.len() > "visits.txt.".len()
                && n["visits.txt.".len()..].bytes().all(|b| b.is_ascii_digit())
        })
        .map(|n| dir.join(n))
        .collect()
}

/// `cat visits.txt.[0-9]* visits.txt`.
pub fn cat_history(path: &Path) -> String {
    let mut text = String::new();
    for seg in segments(path) {
        text.push_str(&fs::read_to_string(seg).unwrap());
    }
    if path.exists() {
        text.push_str(&fs::read_to_string(path).unwrap());
    }
    text
}

/// Everything the history reader yields, failing on any error.
pub fn history_visits(path: &Path) -> Vec<Visit> {
    History::open(path)
        .unwrap()
        .map(|r| r.unwrap_or_else(|e| panic!("unexpected error: {e}")))
        .collect()
}

/// Visits per day.
pub fn per_day(visits: &[Visit]) -> BTreeMap<NaiveDate, u64> {
    let mut days = BTreeMap::new();
    for v in visits {
        *days.entry(v.at.date_naive()).or_default() += 1;
    }
    days
}

/// Every visit in `all` is in exactly one place: the history holds the newest, in order,
/// and the summary counts the rest, per day.
pub fn assert_history_is(path: &Path, all: &[Visit]) {
    let history = History::open(path).unwrap();
    let retired = history.retired_visits() as usize;
    assert!(retired <= all.len());
    drop(history);
    assert_eq!(
        history_visits(path),
        &all[retired..],
        "{:?}",
        names(path.parent().unwrap())
    );
    assert_eq!(cat_history(path), lines(&all[retired..]));
    assert_eq!(History::open(path).unwrap().days().unwrap(), per_day(all));
}

/// A journal without fsync that rotates at `rotate` bytes and keeps every sealed segment.
fn rotating(t: &TempJournal, rotate: u64) -> Journal {
    retaining(t, rotate, 0)
}

/// A journal without fsync that rotates at `rotate` bytes and retires the oldest sealed
/// segments while they hold more than `retain` bytes (0: none).
pub fn retaining(t: &TempJournal, rotate: u64, retain: u64) -> Journal {
    Options::new()
        .sync(false)
        .rotate_size(rotate)
        .retain_size(retain)
        .open(&t.path)
        .unwrap()
}

/// Appends `visits` as batches of `chunk` records (the last one may be shorter).
fn append_in_chunks(journal: &Journal, visits: &[Visit], chunk: usize) {
    for batch in visits.chunks(chunk) {
        journal.append_batch(batch).unwrap();
    }
}

#[test]
fn rotation_seals_segments_that_read_back_as_one_history() {
    let t = TempJournal::new();
    let journal = rotating(&t, 4096);
    let all = visits(0..1000);
    for v in &all {
        journal.append(v).unwrap();
    }
    let segs = segments(&t.path);
    assert!(segs.len() >= 9, "{:?}", names(t.dir.path()));
    for (i, seg) in segs.iter().enumerate() {
        let name = seg.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, format!("visits.txt.{:06}", i + 1));
        let bytes = fs::read(seg).unwrap();
        assert!(
            bytes.len() <= 4096 && bytes.len() > 4096 - 60,
            "{name}: {}",
            bytes.len()
        );
        assert!(bytes.ends_with(b"\n"));
    }
    assert!(fs::metadata(&t.path).unwrap().len() <= 4096);
    assert_history_is(&t.path, &all);
    let stats = journal.stats();
    assert_eq!(stats.rotations, segs.len() as u64);
    assert_eq!(stats.sealed_segments, segs.len() as u64);
    assert_eq!(stats.live_bytes, fs::metadata(&t.path).unwrap().len());
    assert_eq!(
        stats.sealed_bytes,
        segs.iter()
            .map(|s| fs::metadata(s).unwrap().len())
            .sum::<u64>()
    );
    // The single-file reader still reads the live file.
    assert_eq!(t.visits(), &all[all.len() - t.visits().len()..]);
    assert_eq!(journal.tail(3).unwrap(), &all[997..]);
}

#[test]
fn a_batch_is_never_split_across_segments() {
    let t = TempJournal::new();
    let journal = rotating(&t, 4096);
    let mut all = Vec::new();
    let mut boundaries = Vec::new();
    for (i, size) in [30, 120, 7, 200, 1, 99, 64].into_iter().enumerate() {
        let batch: Vec<Visit> = (0..size).map(|s| tagged(0, i as u16, s)).collect();
        journal.append_batch(&batch).unwrap();
        all.extend(batch);
        boundaries.push(all.len());
    }
    // Every file starts at a batch boundary, and a batch larger than the rotate size went
    // whole into a fresh file.
    let mut at = 0;
    for seg in segments(&t.path) {
        at += fs::read_to_string(&seg).unwrap().lines().count();
        assert!(boundaries.contains(&at), "{seg:?} ends inside a batch");
    }
    assert_history_is(&t.path, &all);
}

#[test]
fn the_live_file_is_rotated_only_when_it_holds_a_record() {
    let t = TempJournal::new();
    let journal = rotating(&t, 4096);
    // Larger than the rotate size, into an empty file: no empty segment before it.
    let big = visits(0..200);
    journal.append_batch(&big).unwrap();
    assert!(segments(&t.path).is_empty());
    journal.append(&visit(200)).unwrap();
    assert_eq!(segments(&t.path).len(), 1);
    assert_eq!(t.visits(), [visit(200)]);
}

#[test]
fn retention_by_size_deletes_the_oldest_and_counts_them_in_the_summary() {
    let t = TempJournal::new();
    let journal = retaining(&t, 4096, 3 * 4096);
    let all = visits(0..2000);
    append_in_chunks(&journal, &all, 7);
    let segs = segments(&t.path);
    let sealed: u64 = segs.iter().map(|s| fs::metadata(s).unwrap().len()).sum();
    assert!(
        sealed <= 3 * 4096 && segs.len() == 3,
        "{:?}",
        names(t.dir.path())
    );
    let summary = fs::read_to_string(t.path.with_extension("txt.summary")).unwrap();
    let first = segs[0].file_name().unwrap().to_str().unwrap()["visits.txt.".len()..]
        .parse::<u64>()
        .unwrap();
    assert!(
        summary.starts_with(&format!("# folded through {}, ", first - 1)),
        "{summary}"
    );
    assert_history_is(&t.path, &all);
    let stats = journal.stats();
    assert_eq!(stats.retired_segments, first - 1);
    assert_eq!(stats.failed_retentions, 0);
}

#[test]
fn retention_by_age_keeps_segments_with_recent_visits() {
    let t = TempJournal::new();
    let journal = Options::new()
        .sync(false)
        .rotate_size(4096)
        .retain_days(2)
        .open(&t.path)
        .unwrap();
    // Old visits (years ago), then recent ones.
    let old: Vec<Visit> = visits(0..300)
        .into_iter()
        .map(|mut v| {
            v.at -= chrono::TimeDelta::days(3000);
            v
        })
        .collect();
    journal.append_batch(&old).unwrap();
    let recent: Vec<Visit> = (0..300).map(|s| tagged(0, 0, s)).collect();
    append_in_chunks(&journal, &recent, 50);
    let all: Vec<Visit> = old.iter().chain(&recent).copied().collect();
    assert_eq!(History::open(&t.path).unwrap().retired_visits(), 300);
    assert_history_is(&t.path, &all);
}

#[test]
fn retention_runs_when_a_writer_opens_the_journal() {
    let t = TempJournal::new();
    let all = visits(0..1000);
    rotating(&t, 4096).append_batch(&all[..500]).unwrap();
    let journal = rotating(&t, 4096);
    append_in_chunks(&journal, &all[500..], 10);
    drop(journal);
    let before = segments(&t.path).len();
    assert!(before >= 3);
    let journal = Options::new()
        .rotate_size(4096)
        .retain_size(1)
        .open(&t.path)
        .unwrap();
    assert!(segments(&t.path).is_empty(), "{:?}", names(t.dir.path()));
    assert_eq!(journal.stats().retired_segments, before as u64);
    assert_history_is(&t.path, &all);
}

#[test]
fn segment_numbers_are_never_reused_after_every_segment_was_retired() {
    let t = TempJournal::new();
    let journal = retaining(&t, 4096, 1);
    let all = visits(0..500);
    append_in_chunks(&journal, &all, 20);
    assert!(segments(&t.path).is_empty());
    let summary = fs::read_to_string(t.dir.path().join("visits.txt.summary")).unwrap();
    let folded: u64 = summary.lines().next().unwrap()["# folded through ".len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(journal.stats().rotations, folded);
    // Retention off now: the next segment is numbered after the retired ones.
    drop(journal);
    let journal = rotating(&t, 4096);
    journal.append_batch(&visits(500..600)).unwrap();
    assert_eq!(
        names(t.dir.path()),
        [
            "visits.txt".to_string(),
            format!("visits.txt.{:06}", folded + 1),
            "visits.txt.summary".to_string()
        ]
    );
    assert_history_is(&t.path, &visits(0..600));
}

#[test]
fn a_writer_whose_file_was_rotated_away_reopens_and_appends_to_the_live_file() {
    let t = TempJournal::new();
    // Two handles: one rotates; the other was opened before and would, without the inode
    // check, write into the sealed segment.
    let rotator = rotating(&t, 4096);
    let other = t.open_fast();
    let mut all = Vec::new();
    while segments(&t.path).is_empty() {
        let v = visit(all.len() as u32);
        rotator.append(&v).unwrap();
        all.push(v);
    }
    let sealed = fs::read(&segments(&t.path)[0]).unwrap();
    let v = visit(all.len() as u32);
    other.append(&v).unwrap();
    all.push(v);
    assert_eq!(
        fs::read(&segments(&t.path)[0]).unwrap(),
        sealed,
        "never written again"
    );
    assert_eq!(t.visits(), &all[all.len() - 2..]);
    assert_history_is(&t.path, &all);
}

#[test]
fn a_journal_moved_away_by_another_program_is_followed() {
    let t = TempJournal::new();
    let journal = t.open_fast();
    journal.append(&visit(1)).unwrap();
    // logrotate's way: rename, and a new file appears (or not: the writer creates it).
    fs::rename(&t.path, t.dir.path().join("old.txt")).unwrap();
    journal.append(&visit(2)).unwrap();
    assert_eq!(t.visits(), [visit(2)]);
    fs::rename(&t.path, t.dir.path().join("older.txt")).unwrap();
    fs::write(&t.path, lines(&[visit(3)])).unwrap();
    journal.append(&visit(4)).unwrap();
    assert_eq!(t.visits(), [visit(3), visit(4)]);
    assert_eq!(
        fs::read_to_string(t.dir.path().join("old.txt")).unwrap(),
        lines(&[visit(1)])
    );
}

#[test]
fn a_missing_live_file_after_a_rename_is_created_by_the_next_writer() {
    let t = TempJournal::new();
    rotating(&t, 4096).append_batch(&visits(0..100)).unwrap();
    // A crash between the rename and the creation of the fresh file.
    fs::rename(&t.path, t.dir.path().join("visits.txt.000001")).unwrap();
    assert_history_is(&t.path, &visits(0..100));
    // Even a writer told not to create the journal: it exists, as its segments.
    let journal = Options::new()
        .create(false)
        .rotate_size(4096)
        .open(&t.path)
        .unwrap();
    assert!(t.path.exists());
    journal.append(&visit(100)).unwrap();
    assert_history_is(&t.path, &visits(0..101));
    // Without segments, create(false) still refuses to invent a journal.
    let err = Options::new()
        .create(false)
        .open(t.dir.path().join("none.txt"))
        .unwrap_err();
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound)
    );
}

#[test]
fn history_tail_reads_across_segments() {
    let t = TempJournal::new();
    let journal = rotating(&t, 4096);
    let all = visits(0..1000);
    append_in_chunks(&journal, &all, 13);
    for n in [0, 1, 5, 90, 97, 98, 99, 100, 250, 999, 1000, 1001, 5000] {
        let mut history = History::open(&t.path).unwrap();
        let left = history.tail(n).unwrap();
        assert_eq!(left, n.min(1000), "tail({n})");
        let got: Vec<Visit> = history.map(Result::unwrap).collect();
        assert_eq!(got, &all[1000 - n.min(1000) as usize..], "tail({n})");
    }
    // After some reading, tail still counts from the end.
    let mut history = History::open(&t.path).unwrap();
    history.next().unwrap().unwrap();
    assert_eq!(history.tail(3).unwrap(), 3);
    assert_eq!(history.map(Result::unwrap).collect::<Vec<_>>(), &all[997..]);
}

#[test]
fn history_text_is_cat_of_the_files() {
    let t = TempJournal::new();
    let journal = rotating(&t, 4096);
    journal.append_batch(&visits(0..300)).unwrap();
    journal.append_batch(&visits(300..310)).unwrap();
    // A torn tail in the live file is not part of the text.
    fs::OpenOptions::new()
        .append(true)
        .open(&t.path)
        .unwrap()
        .write_all(b"2026-11-26T10:4")
        .unwrap();
    let mut text = String::new();
    History::open(&t.path)
        .unwrap()
        .into_text()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, lines(&visits(0..310)));
    let report = History::open(&t.path).unwrap().verify().unwrap();
    assert_eq!(
        (report.records, report.corrupt_lines, report.torn_tail_bytes),
        (310, 0, 15)
    );
    assert_eq!(History::open(&t.path).unwrap().count_lines().unwrap(), 310);
}

use std::io::Write as _;

#[test]
fn a_history_opened_before_a_retirement_reads_the_retired_segment_whole() {
    let t = TempJournal::new();
    let journal = rotating(&t, 4096);
    let all = visits(0..500);
    journal.append_batch(&all[..100]).unwrap();
    journal.append_batch(&all[100..200]).unwrap();
    journal.append_batch(&all[200..300]).unwrap();
    let history = History::open(&t.path).unwrap();
    // Retire every segment while the history is open.
    drop(Options::new().retain_size(1).open(&t.path).unwrap());
    assert!(segments(&t.path).is_empty());
    let got: Vec<Visit> = history.map(Result::unwrap).collect();
    assert_eq!(got, &all[..300]);
    assert_history_is(&t.path, &all[..300]);
}

#[test]
fn corrupt_lines_in_segments_are_reported_with_their_file() {
    let t = TempJournal::new();
    let journal = rotating(&t, 4096);
    journal.append_batch(&visits(0..50)).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&t.path)
        .unwrap()
        .write_all(b"not a visit\n")
        .unwrap();
    journal.append_batch(&visits(50..150)).unwrap();
    let items: Vec<_> = History::open(&t.path).unwrap().collect();
    let errors: Vec<String> = items
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("visits.txt.000001:51: bad record at byte"),
        "{errors:?}"
    );
    // Retiring it counts the corrupt line in the summary.
    drop(Options::new().retain_size(1).open(&t.path).unwrap());
    let history = History::open(&t.path).unwrap();
    assert_eq!(
        (history.retired_visits(), history.retired_corrupt_lines()),
        (50, 1)
    );
}

#[test]
fn history_files_name_their_segments_for_callers_that_keep_counts() {
    let t = TempJournal::new();
    let journal = retaining(&t, 4096, 2 * 4096);
    let all = visits(0..600);
    append_in_chunks(&journal, &all, 30);
    let history = History::open(&t.path).unwrap();
    let retired: u64 = history.retired_days().values().sum();
    assert_eq!(retired, history.retired_visits());
    let files: Vec<(Option<u64>, u64)> = history
        .into_files()
        .map(|f| {
            let (segment, reader) = f.unwrap();
            (segment, reader.count_lines().unwrap())
        })
        .collect();
    let numbers: Vec<Option<u64>> = segments(&t.path)
        .iter()
        .map(|p| p.to_str().unwrap().rsplit('.').next().unwrap().parse().ok())
        .chain([None])
        .collect();
    assert_eq!(files.iter().map(|f| f.0).collect::<Vec<_>>(), numbers);
    assert_eq!(retired + files.iter().map(|f| f.1).sum::<u64>(), 600);
}

#[test]
fn a_writer_not_creating_follows_a_rotation_interrupted_after_its_rename() {
    let t = TempJournal::new();
    rotating(&t, 4096).append_batch(&visits(0..10)).unwrap();
    // A writer that must not invent a journal, opened while the journal had no history yet.
    let journal = Options::new()
        .create(false)
        .sync(false)
        .rotate_size(4096)
        .open(&t.path)
        .unwrap();
    // Another writer dies between its rename and the creation of the fresh file: the journal
    // exists, as its segment, and the next append creates the live file.
    fs::rename(&t.path, t.dir.path().join("visits.txt.000001")).unwrap();
    journal.append(&visit(10)).unwrap();
    assert_history_is(&t.path, &visits(0..11));
}

#[test]
fn a_segment_number_past_the_largest_is_refused_not_wrapped() {
    let t = TempJournal::new();
    fs::write(
        t.dir.path().join("visits.txt.summary"),
        format!("# folded through {}\n", u64::MAX),
    )
    .unwrap();
    let journal = rotating(&t, 4096);
    let all = visits(0..200);
    for v in &all {
        journal.append(v).unwrap();
    }
    // No number is left for a segment: the rotation fails (counted, kept for the log) and
    // the visits stay in the live file, never renamed to a name no reader knows.
    assert!(journal.stats().failed_rotations > 0);
    assert!(journal.take_lifecycle_error().is_some());
    assert!(segments(&t.path).is_empty(), "{:?}", names(t.dir.path()));
    assert_eq!(history_visits(&t.path), all);
}

#[test]
fn a_history_opened_while_a_writer_rotates_and_retires_counts_each_visit_once() {
    let t = TempJournal::new();
    let journal = retaining(&t, 4096, 2 * 4096);
    let acked = std::sync::atomic::AtomicU32::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for seq in 0..20_000 {
                journal.append(&tagged(0, 0, seq)).unwrap();
                acked.store(seq + 1, std::sync::atomic::Ordering::SeqCst);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut opened = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) && opened < 2_000 {
            let before = acked.load(std::sync::atomic::Ordering::SeqCst);
            let history = History::open(&t.path).unwrap();
            let retired = history.retired_visits();
            let seqs: Vec<u32> = history.map(|v| tag(&v.unwrap()).2).collect();
            let after = acked.load(std::sync::atomic::Ordering::SeqCst);
            // The files hold a run of the newest visits, right after the ones the summary
            // counts: none missing, none twice, whatever was rotated or retired meanwhile.
            let want: Vec<u32> = (retired as u32..retired as u32 + seqs.len() as u32).collect();
            assert_eq!(seqs, want, "retired {retired}");
            let end = retired + seqs.len() as u64;
            assert!(
                end >= u64::from(before) && end <= u64::from(after) + 1,
                "{before}..{after}: {end}"
            );
            let days = History::open(&t.path).unwrap().days().unwrap();
            assert!(days.values().sum::<u64>() >= end);
            opened += 1;
        }
        assert!(opened > 0);
    });
}

#[test]
fn history_tail_across_segments_yields_n_lines_while_the_live_file_grows() {
    let t = TempJournal::new();
    let journal = rotating(&t, 4096);
    let mut all = visits(0..120);
    journal.append_batch(&all[..100]).unwrap();
    journal.append_batch(&all[100..]).unwrap();
    let live = t.visits().len() as u64;
    assert_eq!((live, segments(&t.path).len()), (20, 1));
    let mut history = History::open(&t.path).unwrap();
    // The tail starts in a segment and takes the whole live file.
    assert_eq!(history.tail(live + 5).unwrap(), live + 5);
    // Appended after the tail was placed: not among the last `live + 5` it promised.
    let more = visits(120..123);
    journal.append_batch(&more).unwrap();
    let got: Vec<Visit> = history.map(Result::unwrap).collect();
    assert_eq!(got, &all[120 - (live as usize + 5)..]);
    assert_eq!(segments(&t.path).len(), 1, "no rotation meanwhile");
    all.extend(more);
    assert_history_is(&t.path, &all);
}

/// The code block in `lang` that README.md shows first after its "Other writers beside the
/// server" paragraph: the foreign writers are tested as the README writes them.
fn readme_writer(lang: &str) -> String {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
    let section = &readme[readme
        .find("**Other writers beside the server.**")
        .expect("README.md has the foreign writers' section")..];
    let fence = format!("```{lang}\n");
    let body = &section[section.find(&fence).expect("a code block") + fence.len()..];
    body[..body.find("```").expect("a closed code block")].to_string()
}

/// README's foreign writers cut a torn tail left by a writer that died mid-line before they
/// append (as every writer must, CONTRACT §1): their line is never glued to the debris.
#[test]
fn the_readmes_foreign_writers_cut_a_torn_tail_first() {
    let t = TempJournal::new();
    let whole = lines(&visits(0..3));
    let torn = "2026-11-26T10:44:36.12";
    t.write(format!("{whole}{torn}").as_bytes());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(readme_writer("sh"))
        .current_dir(t.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let shell_line = "2026-11-26T10:44:36.123+03:00 - 10.0.0.9\n";
    assert_eq!(t.text(), format!("{whole}{shell_line}"));

    t.write(format!("{whole}{torn}").as_bytes());
    let script = format!(
        "{}\nappend({path:?}, '2026-11-26T10:44:37+03:00 - 192.168.0.1')\n",
        readme_writer("python"),
        path = t.path.to_str().unwrap()
    );
    assert!(spawn_python(&script).wait().unwrap().success());
    assert_eq!(
        t.text(),
        format!("{whole}2026-11-26T10:44:37+03:00 - 192.168.0.1\n")
    );
    // What is not a torn record is refused, never cut.
    let long = "x".repeat(5000);
    t.write(format!("{whole}{long}").as_bytes());
    let refused = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!refused.success());
    assert_eq!(t.text(), format!("{whole}{long}"));
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(readme_writer("sh"))
        .current_dir(t.dir.path())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
    assert_eq!(t.text(), format!("{whole}{long}"));
}

/// The foreign writer the README shows (Python: `flock`, then `fstat` against `stat`, retry,
/// cut a torn tail) appends beside a rotating journal: its lines all land, in order, and none
/// in a segment after it was sealed.
#[test]
fn a_foreign_writer_that_rechecks_the_inode_never_writes_a_sealed_segment() {
    const FOREIGN: u32 = 300;
    let t = TempJournal::new();
    let journal = rotating(&t, 4096);
    let script = format!(
        r#"
{writer}
for i in range({FOREIGN}):
    append({path:?}, "2026-11-26T10:44:36+03:00 - 192.168.%d.%d" % (i // 256, i % 256))
"#,
        writer = readme_writer("python"),
        path = t.path.to_str().unwrap()
    );
    let mut python = spawn_python(&script);
    let mut ours = 0u32;
    let mut sealed: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    while python.try_wait().unwrap().is_none() || ours < 300 {
        journal.append(&tagged(0, 0, ours)).unwrap();
        ours += 1;
        for seg in segments(&t.path) {
            if !sealed.iter().any(|(p, _)| *p == seg) {
                let bytes = fs::read(&seg).unwrap();
                sealed.push((seg, bytes));
            }
        }
        assert!(ours < 100_000, "the Python writer did not finish");
    }
    assert!(python.wait().unwrap().success());
    for (seg, bytes) in &sealed {
        assert_eq!(
            &fs::read(seg).unwrap(),
            bytes,
            "{seg:?} written after it was sealed"
        );
    }
    assert!(sealed.len() > 3, "rotated while Python wrote");
    let visits = history_visits(&t.path);
    let foreign: Vec<String> = visits
        .iter()
        .filter(|v| v.ip.is_ipv4())
        .map(|v| v.ip.to_string())
        .collect();
    let want: Vec<String> = (0..FOREIGN)
        .map(|i| format!("192.168.{}.{}", i / 256, i % 256))
        .collect();
    assert_eq!(foreign, want, "every foreign line once, in order");
    let seqs: Vec<u32> = visits
        .iter()
        .filter(|v| v.ip.is_ipv6())
        .map(|v| tag(v).2)
        .collect();
    assert_eq!(seqs, (0..ours).collect::<Vec<_>>());
}
