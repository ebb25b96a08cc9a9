//! Crash debris on disk: torn tails, NUL blocks, and what the repair refuses to cut.

use std::fs::{self, OpenOptions};
use std::io::Write;

use visit_journal::{Error, Journal};

use crate::support::*;

#[test]
fn open_cuts_a_torn_tail_and_reports_it() {
    let good = lines(&visits(0..3));
    let t = TempJournal::with_bytes(format!("{good}2026-11-26T10:4").as_bytes());
    let journal = t.open();
    assert_eq!(journal.stats().repaired_bytes, 15);
    assert_eq!(t.text(), good);
    journal.append(&visit(3)).unwrap();
    assert_eq!(t.visits(), visits(0..4));
}

#[test]
fn every_append_cuts_a_tail_torn_since_open() {
    let t = TempJournal::new();
    let journal = t.open();
    journal.append(&visit(0)).unwrap();
    // Another process died mid-write after we opened.
    let mut f = OpenOptions::new().append(true).open(&t.path).unwrap();
    f.write_all(b"2026-11-26T10:44:36.1").unwrap();
    journal.append(&visit(1)).unwrap();
    assert_eq!(t.text(), lines(&visits(0..2)));
    assert_eq!(journal.stats().repaired_bytes, 21);
}

#[test]
fn open_cuts_power_loss_debris_from_its_first_line() {
    let good = lines(&visits(0..3));
    // The file system kept the length of two more appends but not all of their data.
    let mut bytes = good.clone().into_bytes();
    bytes.extend_from_slice(&[0; 30]);
    bytes.extend_from_slice(b"6:36.123+03:00 - 10.0.0.4\n");
    bytes.extend_from_slice(lines(&[visit(5)]).as_bytes());
    bytes.extend_from_slice(&[0; 100]);
    let t = TempJournal::with_bytes(&bytes);
    // Before the repair a reader reports the debris line.
    assert!(t.read()[3].as_ref().unwrap_err().contains("NUL byte"));
    let journal = t.open();
    assert_eq!(t.text(), good);
    assert_eq!(
        journal.stats().repaired_bytes,
        (bytes.len() - good.len()) as u64
    );
    journal.append(&visit(9)).unwrap();
    assert_eq!(t.visits(), [visits(0..3), vec![visit(9)]].concat());
}

#[test]
fn a_file_of_nothing_but_zeros_is_emptied() {
    let t = TempJournal::with_bytes(&[0; 4096]);
    assert!(t.read().is_empty());
    let journal = t.open();
    assert_eq!(journal.stats().repaired_bytes, 4096);
    assert_eq!(t.text(), "");
}

#[test]
fn nul_debris_deeper_than_a_mebibyte_is_reported_not_cut() {
    let t = TempJournal::new();
    let mut bytes = lines(&visits(0..2)).into_bytes();
    bytes.extend_from_slice(b"\0\0\0\n");
    let after = visits(2..30_000); // > 1 MiB of records after the debris
    bytes.extend_from_slice(lines(&after).as_bytes());
    t.write(&bytes);
    let journal = t.open();
    assert_eq!(journal.stats().repaired_bytes, 0);
    assert_eq!(t.bytes(), bytes);
    let report = journal.reader().unwrap().verify().unwrap();
    assert_eq!((report.records, report.corrupt_lines), (30_000, 1));
    assert!(matches!(report.errors[0], Error::Corrupt { line: 3, .. }));
}

#[test]
fn the_wrong_file_is_never_truncated() {
    // Pointing the journal at a binary: its unterminated end is not a torn record.
    let binary: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let t = TempJournal::with_bytes(&binary);
    let err = Journal::open(&t.path).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert!(err.to_string().contains("bad record at byte"), "{err}");
    assert_eq!(t.bytes(), binary, "untouched");

    // A text file with a long unterminated last line.
    let long = format!("{}{}", lines(&visits(0..2)), "x".repeat(5000));
    let t = TempJournal::with_bytes(long.as_bytes());
    let err = Journal::open(&t.path).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { line: 3, offset, reason, .. }
            if offset == 82 && reason.contains("too long to be a torn record")),
        "{err}"
    );
    assert_eq!(t.text(), long);
}

#[test]
fn an_append_refuses_to_cut_foreign_bytes_written_since_open() {
    let t = TempJournal::new();
    let journal = t.open();
    journal.append(&visit(0)).unwrap();
    let mut f = OpenOptions::new().append(true).open(&t.path).unwrap();
    f.write_all(b"\x7fELF\x02\x01\x01").unwrap();
    let err = journal.append(&visit(1)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Corrupt {
                line: 2,
                offset: 41,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_poisoned());
    let mut want = lines(&[visit(0)]).into_bytes();
    want.extend_from_slice(b"\x7fELF\x02\x01\x01");
    assert_eq!(fs::read(&t.path).unwrap(), want);
}
