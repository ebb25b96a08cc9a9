//! A torn last line (a writer died mid-write) is never served and is cut by the next visit.

use std::fs::OpenOptions;
use std::io::Write;

use crate::support::{Scratch, Server, journal_lines};

const WHOLE: &str = "2026-11-26T10:44:36.123+03:00 - 10.0.0.7\n";
const TORN: &str = "2026-11-26T10:44:37.4";

#[test]
fn a_torn_tail_left_before_start_is_cut_and_never_served() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.file().parent().unwrap()).unwrap();
    std::fs::write(s.file(), format!("{WHOLE}{TORN}")).unwrap();
    let server = Server::start(&s.file(), &[]);
    // The startup log reports the repair.
    let opened = server
        .logs()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "journal_opened")
        .unwrap();
    assert_eq!(opened["repaired_bytes"], TORN.len() as u64);

    assert_eq!(server.get("/visits").text(), WHOLE);
    assert_eq!(server.get("/").status, 200);
    let lines = journal_lines(&s.file());
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], WHOLE.trim_end());
    assert!(lines[1].ends_with(" - 127.0.0.1"));
}

#[test]
fn a_torn_tail_left_by_another_writer_while_serving_is_cut_by_the_next_visit() {
    let s = Scratch::new();
    let server = Server::start(&s.file(), &[]);
    assert_eq!(server.get("/").status, 200);
    let first = std::fs::read_to_string(s.file()).unwrap();
    // Another process dies halfway through its line.
    OpenOptions::new()
        .append(true)
        .open(s.file())
        .unwrap()
        .write_all(TORN.as_bytes())
        .unwrap();
    for path in ["/visits", "/visits?limit=1", "/visits?limit=5"] {
        assert_eq!(server.get(path).text(), first, "{path}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&server.get("/visits?format=json").body).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);

    assert_eq!(server.get("/").status, 200);
    let lines = journal_lines(&s.file());
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], first.trim_end());
    assert!(!std::fs::read_to_string(s.file()).unwrap().contains(TORN));
}
