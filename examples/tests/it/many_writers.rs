//! `many_writers`: processes × threads appending to one file at once.

use std::collections::HashMap;
use std::net::IpAddr;

use visit_journal::Reader;

use crate::support::{arg, run};

#[test]
fn every_visit_of_every_writer_lands_once_and_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("visits.txt");
    let out = run("many_writers", &["3", "4", "25", arg(&path)]);
    out.assert_success().assert_stdout_has(&[
        "3 processes x 4 threads x 25 visits",
        "  process 1: 100 visits in ",
        "  process 2: 100 visits in ",
        "  process 3: 100 visits in ",
        "  300 new lines, exactly the 300 visits appended\n",
        "  every line parses: none torn, none interleaved with another\n",
        "  each of the 12 writers' visits in the order it appended them\n",
    ]);

    // Check the file independently of the example's own check.
    let mut per_writer: HashMap<[u16; 2], Vec<u16>> = HashMap::new();
    for visit in Reader::open(&path).unwrap() {
        let IpAddr::V6(ip) = visit.unwrap().ip else {
            panic!("an IPv4 visit")
        };
        let [0xfd00, 0, 0, 0, 0, process, thread, seq] = ip.segments() else {
            panic!("not a tag: {ip}")
        };
        per_writer.entry([process, thread]).or_default().push(seq);
    }
    assert_eq!(per_writer.len(), 12);
    for seqs in per_writer.values() {
        assert_eq!(*seqs, (0..25).collect::<Vec<_>>());
    }
}

#[test]
fn counts_only_what_it_added_to_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("visits.txt");
    run("many_writers", &["2", "2", "5", arg(&path)]).assert_success();
    run("many_writers", &["2", "2", "5", arg(&path)])
        .assert_success()
        .assert_stdout_has(&["  20 new lines, exactly the 20 visits appended\n"]);
    assert_eq!(Reader::open(&path).unwrap().count_lines().unwrap(), 40);
}

#[test]
fn refuses_an_argument_that_is_not_a_number() {
    let out = run("many_writers", &["2", "lots"]);
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr.contains("argument 2 is not a number: lots"),
        "{out:#?}"
    );
}
