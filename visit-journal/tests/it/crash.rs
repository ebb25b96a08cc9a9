//! `kill -9` writer processes mid-load, again and again: every acknowledged visit survives,
//! nothing is corrupt, and the next writer repairs the tail.
//!
//! Kills test torn writes and locking, not fsync (the page cache survives a killed process):
//! the `sync_data` calls in locked.rs are reviewed by eye and tested with injected faults.

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use visit_journal::{History, Journal, Options};

use crate::support::*;

const CHILD_ENV: &str = "VISIT_JOURNAL_CRASH_CHILD";
/// `<rotate size>;<retain size>`: the child rotates and retires as it appends.
const ROTATE_ENV: &str = "VISIT_JOURNAL_CRASH_ROTATE";
const ROUNDS: u16 = 8;
const CHILDREN: u16 = 3;
const THREADS: u16 = 2;

/// Child entry point: a no-op unless `VISIT_JOURNAL_CRASH_CHILD=<path>;<process>` is set.
/// Appends tagged visits from several threads, printing `acked P T S` after each `Ok`, until
/// it is killed (or, should the parent be gone, for at most 30 seconds).
#[test]
fn child_appender() {
    let Some((path, process)) = child_spec(CHILD_ENV) else {
        return;
    };
    let journal = match std::env::var(ROTATE_ENV) {
        Ok(sizes) => {
            let (rotate, retain) = sizes.split_once(';').expect("<rotate>;<retain>");
            Options::new()
                .rotate_size(rotate.parse().expect("rotate size"))
                .retain_size(retain.parse().expect("retain size"))
                .open(&path)
        }
        Err(_) => Journal::open(&path),
    }
    .expect("child opens the journal");
    let deadline = Instant::now() + Duration::from_secs(30);
    std::thread::scope(|s| {
        for thread in 0..THREADS {
            let journal = &journal;
            s.spawn(move || {
                let mut seq = 0;
                while Instant::now() < deadline {
                    journal
                        .append(&tagged(process, thread, seq))
                        .expect("append");
                    println!("acked {process} {thread} {seq}");
                    seq += 1;
                }
            });
        }
    });
}

#[test]
fn kill_9_mid_append_loses_no_acknowledged_visit() {
    kill_rounds(None);
}

/// The same with every child rotating every 4 KiB and retiring beyond 12 KiB, so that kills
/// land in rotations and retirements too: every acknowledged visit is in the history or
/// counted in the summary, once.
#[test]
fn kill_9_mid_rotation_and_retention_loses_no_acknowledged_visit() {
    kill_rounds(Some("4096;12288"));
}

fn kill_rounds(rotate: Option<&str>) {
    let t = TempJournal::new();
    let mut rng = Rng::seeded();
    let mut acked: HashSet<(u16, u16, u32)> = HashSet::new();
    for round in 0..ROUNDS {
        let (tx, rx) = mpsc::channel();
        let mut children = Vec::new();
        for c in 0..CHILDREN {
            let process = round * CHILDREN + c;
            let spec = format!("{};{process}", t.path.display());
            let mut env = vec![(CHILD_ENV, spec)];
            env.extend(rotate.map(|r| (ROTATE_ENV, r.to_string())));
            let mut child = spawn_child("crash::child_appender", &env);
            let lines = child_lines(&mut child);
            let tx = tx.clone();
            std::thread::spawn(move || {
                // The test harness prints its own lines too; only acks count.
                for line in lines.filter(|l| l.starts_with("acked ")) {
                    let _ = tx.send(line);
                }
            });
            children.push(child);
        }
        drop(tx);

        // Let them run until a random number of acknowledgements, then kill them all.
        let target = rng.below(300) + 20;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        while seen < target && Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                acked.insert(parse_ack(&line));
                seen += 1;
            }
        }
        assert!(
            seen >= target,
            "round {round}: children stalled after {seen} acks"
        );
        for child in &mut children {
            child.kill().expect("kill -9");
        }
        for child in &mut children {
            child.wait().expect("reap child");
        }
        // Acks printed before the kill are still in the pipes.
        for line in rx.iter() {
            acked.insert(parse_ack(&line));
        }
        if rotate.is_some() {
            check_history(&t, &acked, (round + 1) * CHILDREN, round);
        } else {
            check(&t, &acked, round);
        }
    }
    // Finally the next writer repairs whatever the last kill left.
    let journal = t.open();
    let bytes = t.bytes();
    assert!(bytes.is_empty() || bytes.ends_with(b"\n"));
    journal.append(&visit(1)).unwrap();
    if rotate.is_some() {
        check_history(&t, &acked, ROUNDS * CHILDREN, ROUNDS);
        assert!(
            History::open(&t.path).unwrap().retired_visits() > 0,
            "the kills did not reach retention"
        );
    } else {
        check(&t, &acked, ROUNDS);
    }
}

/// As [`check`], over the whole history of the records of `processes` processes: each
/// writer's records still on disk are a run with no gap, up to its last acknowledged one (or
/// one more); every record before that run was retired; and the summary counts exactly the
/// records retired.
fn check_history(t: &TempJournal, acked: &HashSet<(u16, u16, u32)>, processes: u16, round: u16) {
    let history = History::open(&t.path).unwrap();
    let retired = history.retired_visits();
    let mut by_writer: BTreeMap<(u16, u16), Vec<u32>> = BTreeMap::new();
    for item in history {
        let v = item.unwrap_or_else(|e| panic!("round {round}: corrupt line: {e}"));
        if v.ip.is_ipv4() {
            continue; // the final check's own visit
        }
        let (p, th, seq) = tag(&v);
        by_writer.entry((p, th)).or_default().push(seq);
    }
    let mut last_acked: BTreeMap<(u16, u16), u32> = BTreeMap::new();
    for &(p, th, seq) in acked {
        let last = last_acked.entry((p, th)).or_default();
        *last = (*last).max(seq);
    }
    // How many records each writer wrote before its first one on disk: those were retired,
    // so the summary must count them. A writer waits for each acknowledgement before its next
    // append, so it wrote its acknowledged records and at most one more.
    let (mut low, mut high) = (0u64, 0u64);
    for process in 0..processes {
        for thread in 0..THREADS {
            let writer = (process, thread);
            let last = last_acked.get(&writer).copied();
            let written = last.map_or(0, |l| l + 1); // at least
            match by_writer.get(&writer) {
                Some(seqs) => {
                    let first = seqs[0];
                    let want: Vec<u32> = (first..first + seqs.len() as u32).collect();
                    assert_eq!(seqs, &want, "round {round}: writer {writer:?} has a gap");
                    let end = first + seqs.len() as u32;
                    assert!(
                        end >= written && end <= written + 1,
                        "round {round}: writer {writer:?}: {end} records, {written} acknowledged"
                    );
                    low += u64::from(first);
                    high += u64::from(first);
                }
                // Every record of this writer was retired, or it wrote none.
                None => {
                    low += u64::from(written);
                    high += u64::from(written + 1);
                }
            }
        }
    }
    assert!(
        (low..=high).contains(&retired),
        "round {round}: the summary counts {retired} retired visits, not {low}..={high}"
    );
}

/// Every acknowledged visit is present exactly once; each writer's records are in order with
/// no gap (an unacknowledged record may follow the last acknowledged one); no line is corrupt.
fn check(t: &TempJournal, acked: &HashSet<(u16, u16, u32)>, round: u16) {
    let mut by_writer: BTreeMap<(u16, u16), Vec<u32>> = BTreeMap::new();
    let mut present = HashSet::new();
    for item in t.read() {
        let v = item.unwrap_or_else(|e| panic!("round {round}: corrupt line: {e}"));
        if v.ip.is_ipv4() {
            continue; // the final check's own visit
        }
        let (p, th, seq) = tag(&v);
        assert!(present.insert((p, th, seq)), "round {round}: duplicate {v}");
        by_writer.entry((p, th)).or_default().push(seq);
    }
    for a in acked {
        assert!(
            present.contains(a),
            "round {round}: acknowledged visit {a:?} lost"
        );
    }
    for ((p, th), seqs) in by_writer {
        let want: Vec<u32> = (0..seqs.len() as u32).collect();
        assert_eq!(
            seqs, want,
            "round {round}: writer {p}/{th} out of order or with a gap"
        );
    }
}

fn parse_ack(line: &str) -> (u16, u16, u32) {
    let mut parts = line["acked ".len()..].split(' ');
    let mut next = || {
        parts
            .next()
            .expect("three numbers")
            .parse::<u32>()
            .expect("number")
    };
    (next() as u16, next() as u16, next())
}

/// A tiny xorshift generator: no dependency, and the seed is printed to replay a failure.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        let seed = std::env::var("VISIT_JOURNAL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        eprintln!("crash test seed: VISIT_JOURNAL_SEED={seed}");
        Rng(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
