//! `kill -9` under load: every acknowledged visit survives, nothing is torn.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::thread;
use std::time::Duration;

use crate::load::Load;
use crate::support::{Scratch, Server, ips, journal_lines};

const ROUNDS: u64 = 3;

#[test]
fn kill_9_under_load_loses_no_acknowledged_visit() {
    let s = Scratch::new();
    let next = Arc::new(AtomicU32::new(0));
    let mut acked_all = BTreeSet::new();
    let mut tried_all = BTreeSet::new();
    for round in 0..ROUNDS {
        let mut server = Server::start(&s.file(), &[]);
        // Whatever the previous kill left, the restarted server serves whole lines only:
        // `/visits` ends with a newline and every line is a record.
        let served = server.get("/visits").text();
        assert!(served.is_empty() || served.ends_with('\n'));
        for line in served.lines() {
            line.parse::<visit_journal::Visit>()
                .unwrap_or_else(|e| panic!("round {round}: served {line:?}: {e}"));
        }

        let load = Load::start(server.addr, 8, &next, 10_000, Duration::from_secs(20));
        // Kill at a different moment each round, while requests are in flight.
        thread::sleep(Duration::from_millis(300 + 250 * round));
        server.kill9();
        let (acked, tried) = load.stop();
        assert!(!acked.is_empty(), "round {round}: no visit acknowledged");
        acked_all.extend(acked);
        tried_all.extend(tried);
    }

    // A last start repairs whatever the last kill tore; then compare.
    let server = Server::start(&s.file(), &[]);
    let lines = journal_lines(&s.file());
    assert_eq!(server.get("/visits").text(), lines.join("\n") + "\n");
    let recorded = ips(&lines);
    let unique: BTreeSet<String> = recorded.iter().cloned().collect();
    assert_eq!(unique.len(), recorded.len(), "a visit was recorded twice");
    let lost: Vec<&String> = acked_all.difference(&unique).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let forged: Vec<&String> = unique.difference(&tried_all).collect();
    assert!(forged.is_empty(), "recorded but never sent: {forged:?}");
}
