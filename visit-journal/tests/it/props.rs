//! Property tests. Scale them with `PROPTEST_CASES`; failures are saved in
//! `visit-journal/proptest-regressions/` (committed, so everyone replays them).

use std::net::IpAddr;

use chrono::{FixedOffset, NaiveDate, NaiveTime, TimeZone};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use visit_journal::{Reader, Visit};

use crate::support::*;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/props.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Any representable visit: years 0000–9999, any whole-minute offset, any nanosecond,
/// leap seconds included, any IPv4 or IPv6 address.
fn any_visit() -> impl Strategy<Value = Visit> {
    (
        -365i32..=3_652_059, // days from 0001-01-01: year 0 to 9999
        0u32..86_400,
        0u32..1_000_000_000,
        prop::bool::weighted(0.05),
        -1439i32..=1439,
        prop::bool::weighted(0.5),
        any::<IpAddr>(),
    )
        .prop_filter_map(
            "representable",
            |(days, secs, nanos, leap, offset_min, round_millis, ip)| {
                let date = NaiveDate::from_num_days_from_ce_opt(days)?;
                let nanos = if round_millis {
                    nanos / 1_000_000 * 1_000_000
                } else {
                    nanos
                };
                let (secs, nanos) = if leap {
                    (secs / 60 * 60 + 59, nanos + 1_000_000_000)
                } else {
                    (secs, nanos)
                };
                let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)?;
                let offset = FixedOffset::east_opt(offset_min * 60)?;
                let at = offset.from_local_datetime(&date.and_time(time)).single()?;
                let v = Visit::new(at, ip);
                v.check().ok().map(|()| v)
            },
        )
}

/// Visits as the server writes them: now-ish, milliseconds.
fn written_visit() -> impl Strategy<Value = Visit> {
    (0u32..1_000_000, any::<IpAddr>(), -720i32..=840).prop_map(|(n, ip, off)| {
        let mut v = visit(n);
        v.ip = ip;
        v.at =
            v.at.with_timezone(&FixedOffset::east_opt(off * 60).unwrap());
        v
    })
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn display_and_parse_are_inverses(v in any_visit()) {
        let line = v.to_string();
        let back: Visit = line.parse().map_err(|e| TestCaseError::fail(format!("{line:?}: {e}")))?;
        prop_assert_eq!(back, v);
        prop_assert_eq!(back.at.offset(), v.at.offset());
        prop_assert_eq!(back.to_string(), line);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(s in "\\PC{0,80}") {
        let _ = s.parse::<Visit>();
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn any_sequence_of_batches_reads_back_exactly(
        batches in prop::collection::vec(prop::collection::vec(any_visit(), 0..20), 0..20)
    ) {
        let t = TempJournal::new();
        let journal = t.open_fast();
        for batch in &batches {
            journal.append_batch(batch).unwrap();
        }
        let all: Vec<Visit> = batches.concat();
        prop_assert_eq!(t.visits(), all.clone());
        prop_assert_eq!(journal.count().unwrap(), all.len() as u64);
        prop_assert_eq!(t.text(), lines(&all));
    }
}

proptest! {
    #![proptest_config(config(16))]

    /// A crash can stop a write after any byte, and some file systems then show zeros where
    /// the unsynced data was. At every cut: readers see exactly the complete records before
    /// it, and the next append repairs the file and lands cleanly.
    #[test]
    fn a_file_cut_at_every_byte_reads_as_a_prefix_and_is_repaired(
        visits in prop::collection::vec(written_visit(), 1..8),
        extra in written_visit(),
    ) {
        let file = lines(&visits);
        let bytes = file.as_bytes();
        let t = TempJournal::new();
        for cut in 0..=bytes.len() {
            let whole = bytes[..cut].iter().filter(|&&b| b == b'\n').count();
            let want = &visits[..whole];
            let mut zeroed = bytes[..cut].to_vec();
            zeroed.resize(bytes.len(), 0);
            for damaged in [&bytes[..cut], &zeroed[..]] {
                t.write(damaged);
                prop_assert_eq!(&t.visits(), want, "cut at {} of {}", cut, bytes.len());
                let journal = t.open_fast();
                journal.append(&extra).unwrap();
                let mut repaired = want.to_vec();
                repaired.push(extra);
                prop_assert_eq!(t.text(), lines(&repaired), "cut at {}", cut);
                let report = Reader::open(&t.path).unwrap().verify().unwrap();
                prop_assert!(report.is_clean() && report.torn_tail_bytes == 0);
            }
        }
    }
}

/// One step of a journal's life: a batch of appends, or reopening with other lifetime knobs.
#[derive(Debug, Clone)]
enum Step {
    Append(Vec<Visit>),
    Reopen { rotate: u64, retain: u64 },
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop::collection::vec(written_visit(), 0..12).prop_map(Step::Append),
        1 => (prop_oneof![Just(0u64), 1u64..600], prop_oneof![Just(0u64), 1u64..2000])
            .prop_map(|(rotate, retain)| Step::Reopen { rotate, retain }),
    ]
}

proptest! {
    #![proptest_config(config(64))]

    /// Any sequence of appends, rotations and retirements: the history reads back exactly the
    /// newest visits, byte for byte, and the summary counts exactly the others, per day.
    #[test]
    fn any_sequence_of_appends_and_rotations_reads_back_exactly(
        steps in prop::collection::vec(any_step(), 1..40)
    ) {
        use visit_journal::History;
        let t = TempJournal::new();
        let open = |rotate, retain| crate::rotation::retaining(&t, rotate, retain);
        let mut journal = open(200, 0);
        let mut all: Vec<Visit> = Vec::new();
        for step in &steps {
            match step {
                Step::Append(batch) => {
                    journal.append_batch(batch).unwrap();
                    all.extend_from_slice(batch);
                }
                Step::Reopen { rotate, retain } => {
                    drop(journal);
                    journal = open(*rotate, *retain);
                }
            }
        }
        let history = History::open(&t.path).unwrap();
        let retired = history.retired_visits() as usize;
        prop_assert!(retired <= all.len());
        prop_assert_eq!(history.retired_corrupt_lines(), 0);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut History::open(&t.path).unwrap().into_text(), &mut text).unwrap();
        prop_assert_eq!(text, lines(&all[retired..]));
        let visits: Vec<Visit> = history.map(Result::unwrap).collect();
        prop_assert_eq!(&visits, &all[retired..]);
        prop_assert_eq!(
            History::open(&t.path).unwrap().days().unwrap(),
            crate::rotation::per_day(&all)
        );
        prop_assert_eq!(crate::rotation::cat_history(&t.path), lines(&all[retired..]));
    }
}

/// One step of a long-lived volume's life (CONTRACT §10): appends and reopens as above, and
/// what an operator or a fault does beside the writer: a summary damaged (a byte changed, or
/// its last line lost) and later repaired, an odd file with the next segment's name, the whole
/// history deleted under the running writer.
#[derive(Debug, Clone)]
enum Event {
    Step(Step),
    Count,
    DamageSummary { cut: bool },
    RepairSummary,
    OddFile { fifo: bool },
    DeleteHistory,
}

fn any_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        8 => any_step().prop_map(Event::Step),
        2 => Just(Event::Count),
        1 => any::<bool>().prop_map(|cut| Event::DamageSummary { cut }),
        1 => Just(Event::RepairSummary),
        1 => any::<bool>().prop_map(|fifo| Event::OddFile { fifo }),
        1 => Just(Event::DeleteHistory),
    ]
}

/// The number the next segment of the journal at `path` would get, as the writer numbers it.
fn next_number(path: &std::path::Path) -> u64 {
    let dir = path.parent().unwrap();
    let highest = crate::rotation::names(dir)
        .iter()
        .filter_map(|n| n.strip_prefix("visits.txt.")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let folded = std::fs::read_to_string(dir.join("visits.txt.summary"))
        .ok()
        .and_then(|s| {
            let first = s
                .lines()
                .next()?
                .strip_prefix("# folded through ")?
                .to_string();
            first.split(',').next()?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    highest.max(folded) + 1
}

proptest! {
    #![proptest_config(config(32))]

    /// Whatever the volume goes through, every count is exact or says what it could not
    /// count: the journal's kept counts (by file identity) always equal a cold count of the
    /// same files; with a sound summary they equal every visit recorded since the history
    /// began (or was deleted); every odd file is listed as damaged, never deleted; and no
    /// append fails.
    #[test]
    fn any_life_of_a_volume_keeps_every_count_exact_or_partial_and_said(
        events in prop::collection::vec(any_event(), 1..30)
    ) {
        use visit_journal::History;
        let t = TempJournal::new();
        let open = |rotate, retain| crate::rotation::retaining(&t, rotate, retain);
        let summary = t.dir.path().join("visits.txt.summary");
        let mut journal = open(200, 600);
        let mut all: Vec<Visit> = Vec::new();
        let mut sound_summary: Option<Vec<u8>> = None;
        let mut odd_files = 0usize;
        let check = |journal: &visit_journal::Journal, all: &[Visit], sound: bool, odd: usize| -> Result<(), TestCaseError> {
            let warm = journal.counts().unwrap();
            let cold = History::open(&t.path).unwrap().counts().unwrap();
            prop_assert_eq!(&warm, &cold);
            let damaged_summary = warm.damaged().iter().any(|d| d.file_name() == "visits.txt.summary");
            prop_assert_eq!(damaged_summary, !sound);
            prop_assert_eq!(warm.damaged().len() - usize::from(damaged_summary), odd);
            prop_assert_eq!(journal.damaged_files().unwrap(), warm.damaged().to_vec());
            if sound {
                prop_assert_eq!(warm.visits(), all.len() as u64);
                prop_assert_eq!(warm.days(), &crate::rotation::per_day(all));
            }
            prop_assert_eq!(warm.days().values().sum::<u64>(), warm.visits());
            Ok(())
        };
        for event in &events {
            match event {
                Event::Step(Step::Append(batch)) => {
                    journal.append_batch(batch).unwrap();
                    all.extend_from_slice(batch);
                }
                Event::Step(Step::Reopen { rotate, retain }) => {
                    drop(journal);
                    journal = open(*rotate, *retain);
                }
                Event::Count => check(&journal, &all, sound_summary.is_none(), odd_files)?,
                Event::DamageSummary { cut } => {
                    let Ok(text) = std::fs::read(&summary) else { continue };
                    if sound_summary.is_some() || !text.ends_with(b"\n") {
                        continue;
                    }
                    let damaged = if *cut {
                        // The last line lost, at a line boundary.
                        let body = &text[..text.len() - 1];
                        let end = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                        text[..end].to_vec()
                    } else {
                        // A byte of the last line changed.
                        let mut t = text.clone();
                        let at = t.len() - 2;
                        t[at] = b'x';
                        t
                    };
                    // A summary of only its first line has no day to lose.
                    if text.iter().filter(|&&b| b == b'\n').count() < 2 {
                        continue;
                    }
                    std::fs::write(&summary, &damaged).unwrap();
                    sound_summary = Some(text);
                }
                Event::RepairSummary => {
                    if let Some(text) = sound_summary.take() {
                        std::fs::write(&summary, text).unwrap();
                    }
                }
                Event::OddFile { fifo } => {
                    let odd = t.dir.path().join(format!("visits.txt.{:06}", next_number(&t.path)));
                    if *fifo {
                        mkfifo(&odd);
                    } else {
                        std::fs::create_dir(&odd).unwrap();
                    }
                    odd_files += 1;
                }
                Event::DeleteHistory => {
                    for name in crate::rotation::names(t.dir.path()) {
                        let at = t.dir.path().join(name);
                        if at.is_dir() {
                            std::fs::remove_dir_all(at).unwrap();
                        } else {
                            std::fs::remove_file(at).unwrap();
                        }
                    }
                    all.clear();
                    sound_summary = None;
                    odd_files = 0;
                }
            }
        }
        check(&journal, &all, sound_summary.is_none(), odd_files)?;
    }
}
