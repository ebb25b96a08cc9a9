//! Any file: reading never panics and never returns an unterminated line; opening either
//! refuses (leaving the file untouched) or repairs it so that an append lands as a whole line
//! after exactly the records readers saw before.
#![no_main]

use std::fs;

use libfuzzer_sys::fuzz_target;
use visit_journal::{Options, Reader, Visit};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("visits.txt");
    fs::write(&path, data).expect("write");

    let before: Vec<Result<Visit, String>> = Reader::open(&path)
        .expect("reader")
        .map(|r| r.map_err(|e| e.to_string()))
        .collect();
    let report = Reader::open(&path).expect("reader").verify().expect("verify");
    assert_eq!(report.records + report.corrupt_lines, before.len() as u64);

    let journal = match Options::new().sync(false).open(&path) {
        Ok(journal) => journal,
        Err(_) => {
            assert_eq!(fs::read(&path).expect("read"), data, "a refused open changes nothing");
            return;
        }
    };
    let ours: Visit = "2026-11-26T10:44:36.123+03:00 - 10.0.0.7".parse().expect("visit");
    journal.append(&ours).expect("append after a successful open");

    let after: Vec<Result<Visit, String>> = Reader::open(&path)
        .expect("reader")
        .map(|r| r.map_err(|e| e.to_string()))
        .collect();
    assert!(fs::read(&path).expect("read").ends_with(b"\n"));
    assert_eq!(after.last(), Some(&Ok(ours)));
    // The repair only ever cuts debris at the end: what came before it reads the same.
    let kept = &after[..after.len() - 1];
    assert!(kept.len() <= before.len());
    assert_eq!(kept, &before[..kept.len()]);
});
