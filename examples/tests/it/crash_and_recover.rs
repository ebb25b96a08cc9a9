//! `crash_and_recover`: `kill -9` a writer, reopen, find every acknowledged visit.

use visit_journal::Reader;

use crate::support::{arg, run};

#[test]
fn every_acknowledged_visit_survives_the_kill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("visits.txt");
    let out = run("crash_and_recover", &[arg(&path)]);
    out.assert_success().assert_stdout_has(&[
        "killed the child (signal: 9 (SIGKILL)) after it acknowledged ",
        "reopened: cut a torn tail of ",
        "acknowledged visits are there, in order, and no line is torn\n",
        "and the journal takes new visits: ",
    ]);

    let acked: u64 = number_after(&out.stdout, "after it acknowledged ");
    let cut: u64 = number_after(&out.stdout, "cut a torn tail of ");
    assert!(
        cut > 0,
        "a torn tail is always shown being cut:\n{}",
        out.stdout
    );
    let report = Reader::open(&path).unwrap().verify().unwrap();
    assert!(report.is_clean());
    assert_eq!(report.torn_tail_bytes, 0);
    // The acknowledged ones, perhaps some written but not acknowledged, and one more after.
    assert!(report.records > acked, "{report:?}, {acked} acknowledged");
}

#[test]
fn refuses_to_start_on_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("visits.txt");
    std::fs::write(&path, "").unwrap();
    let out = run("crash_and_recover", &[arg(&path)]);
    assert_ne!(out.code(), 0);
    assert!(out.stderr.contains("exists"), "{out:#?}");
}

/// The number that follows `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> u64 {
    let start = text.find(prefix).unwrap() + prefix.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}
