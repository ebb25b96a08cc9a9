//! Many threads and many processes appending to one file at once.

use std::time::Duration;

use visit_journal::{Options, Stats};

use crate::support::*;

const CHILD_ENV: &str = "VISIT_JOURNAL_WRITER_CHILD";
const PROCESSES: u16 = 3;
const THREADS: u16 = 4;
const PER_THREAD: u32 = 150;

/// Child entry point: a no-op unless `VISIT_JOURNAL_WRITER_CHILD=<path>;<process>` is set.
/// Appends `PER_THREAD` tagged visits from each of `THREADS` threads, durably, then exits.
#[test]
fn child_writer() {
    let Some((path, process)) = child_spec(CHILD_ENV) else {
        return;
    };
    child_watchdog(Duration::from_secs(120));
    let journal = Options::new()
        .lock_timeout(Duration::from_secs(30))
        .open(&path)
        .expect("child opens the journal");
    std::thread::scope(|s| {
        for thread in 0..THREADS {
            let journal = &journal;
            s.spawn(move || {
                for seq in 0..PER_THREAD {
                    journal
                        .append(&tagged(process, thread, seq))
                        .expect("append");
                }
            });
        }
    });
    println!("done {process} batches={}", journal.stats().batches);
}

/// The most a stress test may take on a loaded 2-core machine before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn processes_times_threads_append_without_loss_or_interleaving() {
    within(LIMIT, "processes × threads", || {
        let t = TempJournal::new();
        let mut children: Vec<_> = (0..PROCESSES)
            .map(|p| {
                let spec = format!("{};{p}", t.path.display());
                spawn_child("concurrency::child_writer", &[(CHILD_ENV, spec)])
            })
            .collect();
        for child in &mut children {
            let out: Vec<String> = child_lines(child).collect();
            assert!(child.wait().unwrap().success(), "a writer failed: {out:?}");
            assert!(out.iter().any(|l| l.starts_with("done ")), "{out:?}");
        }
        let tags: Vec<_> = t.visits().iter().map(tag).collect();
        assert_eq!(
            tags.len(),
            (PROCESSES * THREADS) as usize * PER_THREAD as usize
        );
        for p in 0..PROCESSES {
            for th in 0..THREADS {
                let seqs: Vec<u32> = tags
                    .iter()
                    .filter(|t| (t.0, t.1) == (p, th))
                    .map(|t| t.2)
                    .collect();
                assert_eq!(seqs, (0..PER_THREAD).collect::<Vec<_>>(), "writer {p}/{th}");
            }
        }
    });
}

#[test]
fn concurrent_appends_share_fsyncs() {
    within(LIMIT, "16 appending threads", || {
        let t = TempJournal::new();
        let journal = t.open();
        std::thread::scope(|s| {
            for thread in 0..16u16 {
                let journal = &journal;
                s.spawn(move || {
                    for seq in 0..50 {
                        // Mix single appends and batches.
                        if seq % 5 == 0 {
                            let batch: Vec<_> =
                                (0..3).map(|i| tagged(1, thread, seq * 10 + i)).collect();
                            journal.append_batch(&batch).unwrap();
                        } else {
                            journal.append(&tagged(0, thread, seq)).unwrap();
                        }
                    }
                });
            }
        });
        let stats = journal.stats();
        assert_eq!(stats.records, 16 * (40 + 10 * 3));
        // One fsync per batch, exactly: none skipped, none spent on a rollback.
        assert_eq!(stats.syncs, stats.batches, "{stats:?}");
        // 800 calls from 16 threads: group commit must have put several calls in one batch.
        // (How many is a matter for the benchmark, not for a test on a noisy machine.) No call
        // carries more than 3 records, so a batch of 4 or more holds at least two calls.
        assert!(stats.batches < 800, "{stats:?}");
        assert!(stats.largest_batch > 3, "{stats:?}");
        // The batch-size histogram counts every batch once, in the bucket of its size, and
        // the largest batch in the highest bucket used.
        assert_eq!(stats.batch_records.iter().sum::<u64>(), stats.batches);
        let highest = stats.batch_records.iter().rposition(|&n| n > 0).unwrap();
        let bounds = Stats::BATCH_RECORDS_BOUNDS;
        assert!(bounds[highest] >= stats.largest_batch, "{stats:?}");
        assert!(
            highest == 0 || bounds[highest - 1] < stats.largest_batch,
            "{stats:?}"
        );
        let visits = t.visits();
        assert_eq!(visits.len() as u64, stats.records);
        for thread in 0..16 {
            let singles: Vec<u32> = visits
                .iter()
                .map(tag)
                .filter(|t| t.0 == 0 && t.1 == thread)
                .map(|t| t.2)
                .collect();
            assert_eq!(singles, (0..50).filter(|s| s % 5 != 0).collect::<Vec<_>>());
        }
    });
}

#[test]
fn reopen_and_probe_are_not_starved_by_a_stream_of_appends() {
    use std::sync::atomic::{AtomicBool, Ordering};
    within(LIMIT, "reopen and probe beside 8 appenders", || {
        let t = TempJournal::new();
        let journal = t.open();
        let stop = AtomicBool::new(false);
        let appended: u32 = std::thread::scope(|s| {
            let writers: Vec<_> = (0..8u16)
                .map(|thread| {
                    let (journal, stop) = (&journal, &stop);
                    s.spawn(move || {
                        let mut seq = 0;
                        while !stop.load(Ordering::Relaxed) {
                            journal.append(&tagged(0, thread, seq)).unwrap();
                            seq += 1;
                        }
                        seq
                    })
                })
                .collect();
            for _ in 0..20 {
                journal.check_writable().unwrap();
                journal.reopen().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            writers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(t.visits().len(), appended as usize);
    });
}

const ROTATING_CHILD_ENV: &str = "VISIT_JOURNAL_ROTATING_CHILD";
const ROTATE_SIZE: u64 = 4096;

/// Child entry point: a no-op unless `VISIT_JOURNAL_ROTATING_CHILD=<path>;<process>` is set.
/// As [`child_writer`], with rotation every 4 KiB and retention of 16 KiB, so the live file is
/// sealed (and old segments retired) many times while the other processes append too.
#[test]
fn child_rotating_writer() {
    let Some((path, process)) = child_spec(ROTATING_CHILD_ENV) else {
        return;
    };
    let journal = Options::new()
        .sync(false)
        .rotate_size(ROTATE_SIZE)
        .retain_size(4 * ROTATE_SIZE)
        .lock_timeout(Duration::from_secs(30))
        .open(&path)
        .expect("child opens the journal");
    std::thread::scope(|s| {
        for thread in 0..THREADS {
            let journal = &journal;
            s.spawn(move || {
                for seq in 0..PER_THREAD {
                    journal
                        .append(&tagged(process, thread, seq))
                        .expect("append");
                }
            });
        }
    });
    let stats = journal.stats();
    assert_eq!(stats.failed_retentions, 0, "{stats:?}");
    println!("done {process} rotations={}", stats.rotations);
}

#[test]
fn processes_times_threads_append_and_rotate_without_loss_or_reordering() {
    use std::collections::{BTreeMap, HashMap};
    use std::time::Instant;

    let t = TempJournal::new();
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            let spec = format!("{};{p}", t.path.display());
            spawn_child(
                "concurrency::child_rotating_writer",
                &[(ROTATING_CHILD_ENV, spec)],
            )
        })
        .collect();
    // While they run, note each sealed segment's bytes when first seen: a segment is never
    // written again, so they must be the same at the end (or it was retired meanwhile).
    let mut first_seen: HashMap<std::path::PathBuf, Vec<u8>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        assert!(
            Instant::now() < deadline,
            "the writers did not finish in 120 s"
        );
        for seg in crate::rotation::segments(&t.path) {
            if !first_seen.contains_key(&seg)
                && let Ok(bytes) = std::fs::read(&seg)
            {
                first_seen.insert(seg, bytes);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for child in &mut children {
        assert!(child.wait().unwrap().success(), "a writer failed");
    }
    let mut checked = 0;
    for (seg, bytes) in &first_seen {
        if let Ok(now) = std::fs::read(seg) {
            assert_eq!(&now, bytes, "{seg:?} changed after it was sealed");
            assert!(
                bytes.ends_with(b"\n"),
                "{seg:?} does not end in a whole line"
            );
            checked += 1;
        }
    }
    assert!(
        first_seen.len() > 10,
        "too few rotations seen: {}",
        first_seen.len()
    );
    assert!(checked > 0);

    // Every record exactly once across the history and the summary, in order per writer.
    let history = visit_journal::History::open(&t.path).unwrap();
    let retired = history.retired_visits();
    let tags: Vec<_> = history.map(|v| tag(&v.unwrap())).collect();
    let total = (PROCESSES * THREADS) as u64 * u64::from(PER_THREAD);
    assert_eq!(retired + tags.len() as u64, total);
    let mut by_writer: BTreeMap<(u16, u16), Vec<u32>> = BTreeMap::new();
    for (p, th, seq) in tags {
        by_writer.entry((p, th)).or_default().push(seq);
    }
    for ((p, th), seqs) in by_writer {
        // The retired ones are each writer's oldest: what is left is a run up to the last.
        let first = seqs[0];
        assert_eq!(
            seqs,
            (first..PER_THREAD).collect::<Vec<_>>(),
            "writer {p}/{th}"
        );
    }
    let days = visit_journal::History::open(&t.path)
        .unwrap()
        .days()
        .unwrap();
    assert_eq!(days.values().sum::<u64>(), total);
}

/// Counts taken while a writer rotates every 4 KiB and retention retires: each is the count of
/// the history at one moment (between what was acknowledged before it started and after it
/// ended, its days adding up to its visits), and once the writer stops, every count is exact.
/// Bounded: the writer stops after two seconds or 20,000 visits, whichever comes first.
#[test]
fn counts_taken_during_rotations_and_retirements_are_each_a_moment_of_the_history() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::time::Instant;

    let t = TempJournal::new();
    let journal = Options::new()
        .sync(false)
        .rotate_size(4096)
        .retain_size(8 * 4096)
        .open(&t.path)
        .unwrap();
    let acked = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let counted = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let until = Instant::now() + Duration::from_secs(2);
            for n in 0..20_000 {
                if Instant::now() > until {
                    break;
                }
                journal.append(&visit(n)).unwrap();
                acked.fetch_add(1, SeqCst);
            }
            done.store(true, SeqCst);
        });
        for _ in 0..3 {
            s.spawn(|| {
                while !done.load(SeqCst) {
                    let before = acked.load(SeqCst);
                    let counts = journal.counts().unwrap();
                    // One visit may be written and not yet acknowledged (the writer appends
                    // one at a time).
                    let after = acked.load(SeqCst) + 1;
                    assert!(
                        (before..=after).contains(&counts.visits()),
                        "{} visits counted, {before}..={after} acknowledged or written",
                        counts.visits()
                    );
                    assert_eq!(counts.days().values().sum::<u64>(), counts.visits());
                    counted.fetch_add(1, SeqCst);
                }
            });
        }
    });
    let total = acked.load(SeqCst);
    assert!(
        journal.stats().retired_segments > 0,
        "{:?}",
        journal.stats()
    );
    assert!(counted.load(SeqCst) > 10, "the counts raced the writer");
    for _ in 0..2 {
        assert_eq!(journal.counts().unwrap().visits(), total);
    }
    assert_eq!(
        visit_journal::History::open(&t.path)
            .unwrap()
            .counts()
            .unwrap()
            .visits(),
        total
    );
}
