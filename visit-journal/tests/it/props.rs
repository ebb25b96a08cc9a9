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
