//! `append_and_read`: open, append, stream back, tail.

use visit_journal::{Reader, Visit};

use crate::support::{arg, run};

#[test]
fn appends_four_visits_and_reads_them_back() {
    let out = run("append_and_read", &[]);
    out.assert_success().assert_stdout_has(&[
        "appended a visit from 10.0.0.7\n",
        "appended a visit from 2001:db8::1\n",
        "4 lines in the file; the last 2:\n",
        "this handle appended 4 visits with 4 fdatasync calls\n",
    ]);

    // The file as `cat` shows it: four records, in the order they were appended.
    let cat = section(&out.stdout, "the file, as cat shows it:\n");
    let ips: Vec<String> = cat
        .lines()
        .map(|line| line.parse::<Visit>().unwrap().ip.to_string())
        .collect();
    assert_eq!(ips, ["10.0.0.7", "10.0.0.8", "2001:db8::1", "10.0.0.7"]);
    assert_eq!(
        section(&out.stdout, "streamed back as typed values:\n")
            .lines()
            .count(),
        4
    );

    // The tail: the last two lines of the file, oldest first.
    let tail = section(&out.stdout, "the last 2:\n");
    assert_eq!(
        tail.lines().map(str::trim).collect::<Vec<_>>(),
        cat.lines().skip(2).collect::<Vec<_>>()
    );
}

#[test]
fn adds_to_the_file_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/visits.txt");
    run("append_and_read", &[arg(&path)]).assert_success();
    run("append_and_read", &[arg(&path)])
        .assert_success()
        .assert_stdout_has(&["8 lines in the file"]);
    let visits: Vec<Visit> = Reader::open(&path).unwrap().map(Result::unwrap).collect();
    assert_eq!(visits.len(), 8);
}

/// The lines after `heading`, up to the next blank line.
fn section<'a>(stdout: &'a str, heading: &str) -> &'a str {
    let start = stdout
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in:\n{stdout}"));
    let rest = &stdout[start + heading.len()..];
    &rest[..rest.find("\n\n").unwrap_or(rest.len())]
}
