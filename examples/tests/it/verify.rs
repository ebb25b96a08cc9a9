//! `verify`: the checker's findings and exit codes on clean, corrupt, torn and foreign files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::support::{Output, arg, example, finish, run};

/// Five records: two offsets, three days (in the records' own offsets), the classic lab format.
const CLEAN: &str = "\
2026-11-25T23:30:00.000+03:00 - 10.0.0.7
2026-11-25T23:30:00-05:00 - 10.0.0.8
2026-11-26T10:44:36.123+03:00 - 2001:db8::1
2026-11-26T10:44:36.123+03:00 - 10.0.0.7
2022-11-29T10:44:36+03:00 - 172.17.0.1
";

/// A file holding `bytes`, in a fresh temporary directory.
fn file(bytes: impl AsRef<[u8]>) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("visits.txt");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn verify(args: &[&str]) -> Output {
    run("verify", args)
}

fn contents(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn a_clean_file_gets_counts_per_day_and_address_and_exit_0() {
    let (_dir, path) = file(CLEAN);
    let out = verify(&[arg(&path)]);
    out.assert_success();
    let expected = format!(
        "{}:
  visits:         5
  corrupt lines:  0
  torn tail:      none
visits per day (each record's own date):
  2022-11-29         1
  2026-11-25         2
  2026-11-26         2
visits per address (top 4 of 4):
         2  10.0.0.7
         1  10.0.0.8
         1  172.17.0.1
         1  2001:db8::1
",
        path.display()
    );
    assert_eq!(out.stdout, expected);
    assert_eq!(out.stderr, "");
}

#[test]
fn top_limits_the_addresses_listed() {
    let (_dir, path) = file(CLEAN);
    let out = verify(&["--top", "1", arg(&path)]);
    out.assert_success()
        .assert_stdout_has(&["visits per address (top 1 of 4):\n         2  10.0.0.7\n"]);
    assert!(!out.stdout.contains("10.0.0.8"));
}

#[test]
fn an_empty_file_is_clean() {
    let (_dir, path) = file("");
    verify(&[arg(&path)])
        .assert_success()
        .assert_stdout_has(&["  visits:         0\n", "  corrupt lines:  0\n"]);
}

#[test]
fn corrupt_lines_are_reported_with_line_and_byte_and_exit_1() {
    let (_dir, path) = file(CLEAN.replacen("2026-11-25T23:30:00-05:00 - ", "garbage ", 1));
    let out = verify(&[arg(&path)]);
    assert_eq!(out.code(), 1, "{out:#?}");
    out.assert_stdout_has(&[
        &format!(
            "{}:2: bad record at byte 41: missing ' - ' between time and address\n",
            path.display()
        ),
        "  visits:         4\n",
        "  corrupt lines:  1\n",
    ]);
}

#[test]
fn many_corrupt_lines_are_capped_and_counted() {
    let (_dir, path) = file(format!("{CLEAN}{}", "oops\n".repeat(25)));
    let out = verify(&[arg(&path)]);
    assert_eq!(out.code(), 1, "{out:#?}");
    assert_eq!(out.stdout.matches(": bad record at byte ").count(), 20);
    out.assert_stdout_has(&["... and 5 more corrupt lines\n", "  corrupt lines:  25\n"]);
}

#[test]
fn a_torn_tail_is_reported_not_cut_and_is_no_error() {
    let torn = format!("{CLEAN}2026-11-26T10:4");
    let (_dir, path) = file(&torn);
    verify(&[arg(&path)]).assert_success().assert_stdout_has(&[
        "  visits:         5\n",
        "  torn tail:      15 bytes after the last complete line",
    ]);
    assert_eq!(
        contents(&path),
        torn.as_bytes(),
        "verify alone never writes"
    );
}

#[test]
fn repair_cuts_a_torn_tail() {
    let (_dir, path) = file(format!("{CLEAN}2026-11-26T10:4"));
    verify(&["--repair", arg(&path)])
        .assert_success()
        .assert_stdout_has(&[
            &format!("repaired {}: cut 15 bytes\n", path.display()),
            "  torn tail:      none\n",
        ]);
    assert_eq!(contents(&path), CLEAN.as_bytes());
}

#[test]
fn repair_cuts_power_loss_debris() {
    let (_dir, path) = file(format!("{CLEAN}\0\0\0\0\n\0\0\0"));
    let out = verify(&[arg(&path)]);
    assert_eq!(out.code(), 1, "{out:#?}");
    out.assert_stdout_has(&[&format!(
        "{}:6: bad record at byte {}: NUL byte in line (debris of an unsynced write?)\n",
        path.display(),
        CLEAN.len()
    )]);

    verify(&["--repair", arg(&path)])
        .assert_success()
        .assert_stdout_has(&["cut 8 bytes\n", "  corrupt lines:  0\n"]);
    assert_eq!(contents(&path), CLEAN.as_bytes());
}

#[test]
fn a_binary_file_is_corrupt_and_repair_refuses_to_cut_it() {
    let binary = b"\x7fELF\x02\x01\x01\0\0\0\n\xff\xfe\xfd binary\n\x00\x01\x02";
    let (_dir, path) = file(binary);
    let p = path.display();
    let out = verify(&[arg(&path)]);
    assert_eq!(out.code(), 1, "{out:#?}");
    out.assert_stdout_has(&[
        &format!("{p}:1: bad record at byte 0: NUL byte in line"),
        &format!("{p}:2: bad record at byte 11: "),
        &format!("{p}:3: bad record at byte 22: unterminated last line is not a torn record\n"),
        "  torn tail:      3 bytes that are not a torn record\n",
    ]);

    // The library refuses to cut what does not look like a torn record, in the same words.
    let out = verify(&["--repair", arg(&path)]);
    assert_eq!(out.code(), 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        format!(
            "verify: {p}:3: bad record at byte 22: unterminated last line is not a torn record\n"
        )
    );
    assert_eq!(contents(&path), binary);
}

#[test]
fn a_long_unterminated_file_is_not_a_torn_record() {
    let (_dir, path) = file("x".repeat(5000));
    let out = verify(&[arg(&path)]);
    assert_eq!(out.code(), 1, "{out:#?}");
    out.assert_stdout_has(&[&format!(
        "{}:1: bad record at byte 0: unterminated last line is too long to be a torn record\n",
        path.display()
    )]);
}

/// Asserts that `verify PATH` and `verify --repair PATH` both exit 2 with the library's message.
fn assert_refused(path: &Path, message: &str) {
    for args in [&[arg(path)][..], &["--repair", arg(path)]] {
        let out = verify(args);
        assert_eq!(out.code(), 2, "{out:#?}");
        assert_eq!(out.stderr, format!("verify: {message}\n"));
    }
}

#[test]
fn a_directory_without_a_journal_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("visits.txt");
    let message = format!(
        "cannot open {}: No such file or directory (os error 2)",
        journal.display()
    );
    assert_refused(dir.path(), &message);
    assert!(!journal.exists());
}

/// A history as a pod leaves it: `visits.txt.summary` counting retired segments 1 and 2, two
/// sealed segments, the live file.
fn history() -> (TempDir, PathBuf) {
    let (dir, path) = file("2026-11-27T08:00:00.000+03:00 - 10.0.0.9\n");
    let d = dir.path();
    std::fs::write(
        d.join("visits.txt.summary"),
        "# folded through 2\n# corrupt 1\n2026-11-24 40\n2026-11-25 2\n",
    )
    .unwrap();
    std::fs::write(
        d.join("visits.txt.000003"),
        &CLEAN[..CLEAN.find("2026-11-26").unwrap()],
    )
    .unwrap();
    std::fs::write(
        d.join("visits.txt.000004"),
        &CLEAN[CLEAN.find("2026-11-26").unwrap()..],
    )
    .unwrap();
    // A segment the summary already counts (a crash between its two steps): skipped.
    std::fs::write(
        d.join("visits.txt.000002"),
        "2026-11-25T00:00:00Z - 10.9.9.9\n",
    )
    .unwrap();
    (dir, path)
}

#[test]
fn a_whole_history_is_counted_with_the_summary() {
    let (dir, path) = history();
    for target in [dir.path(), path.as_path()] {
        let out = verify(&[arg(target)]);
        out.assert_success();
        let expected = format!(
            "{}:
  sealed segments: 2
  retired visits:  42 (counted in {}; 1 corrupt lines)
  visits:         6
  corrupt lines:  0
  all visits:     48
  torn tail:      none
visits per day (each record's own date; retired visits included):
  2022-11-29         1
  2026-11-24        40
  2026-11-25         4
  2026-11-26         2
  2026-11-27         1
visits per address (top 5 of 5):
         2  10.0.0.7
         1  10.0.0.8
         1  10.0.0.9
         1  172.17.0.1
         1  2001:db8::1
",
            path.display(),
            dir.path().join("visits.txt.summary").display()
        );
        assert_eq!(out.stdout, expected, "{target:?}");
    }
}

#[test]
fn a_history_without_its_live_file_is_read_and_repair_recreates_it() {
    let (dir, path) = history();
    std::fs::remove_file(&path).unwrap();
    verify(&[arg(dir.path())])
        .assert_success()
        .assert_stdout_has(&["  visits:         5\n", "  all visits:     47\n"]);
    verify(&["--repair", arg(dir.path())])
        .assert_success()
        .assert_stdout_has(&["cut 0 bytes\n", "  all visits:     47\n"]);
    assert!(path.exists(), "the next writer creates the live file");
    assert!(
        !dir.path().join("visits.txt.000002").exists(),
        "and deletes a segment the summary counts"
    );
}

#[test]
fn a_corrupt_line_in_a_segment_names_the_segment() {
    let (dir, path) = history();
    let seg = dir.path().join("visits.txt.000004");
    std::fs::write(&seg, "not a visit\n2026-11-26T10:4").unwrap();
    let out = verify(&[arg(&path)]);
    assert_eq!(out.code(), 1, "{out:#?}");
    out.assert_stdout_has(&[
        &format!(
            "{}:1: bad record at byte 0: missing ' - ' between time and address\n",
            seg.display()
        ),
        &format!(
            "{}: 15 bytes after the last complete line of a sealed segment\n",
            seg.display()
        ),
        "  corrupt lines:  2\n",
    ]);
}

#[test]
fn a_damaged_summary_is_reported_naming_its_line_and_the_rest_counted() {
    let (dir, path) = history();
    let summary = dir.path().join("visits.txt.summary");
    std::fs::write(&summary, "# folded through 2\n2026-11-24 forty\n").unwrap();
    let out = verify(&[arg(&path)]);
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "{}: damaged: line 2 at byte 19: not a 'YYYY-MM-DD COUNT' line\n",
            summary.display()
        )),
        "{out:#?}"
    );
    assert!(out.stdout.contains("  damaged files:  1\n"), "{out:#?}");
    assert!(out.stdout.contains("  retired visits:  0 "), "{out:#?}");
}

#[test]
fn a_missing_file_is_refused_with_exit_2_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("visits.txt");
    let p = path.display();
    assert_refused(
        &path,
        &format!("cannot open {p}: No such file or directory (os error 2)"),
    );
    assert!(!path.exists());
}

#[test]
fn bad_usage_prints_the_usage_and_exits_2() {
    for (args, complaint) in [
        (&[][..], "verify: missing PATH\n"),
        (
            &["--bogus", "visits.txt"],
            "verify: unknown option --bogus\n",
        ),
        (&["a.txt", "b.txt"], "verify: one PATH only, got 2\n"),
        (
            &["--top", "many", "a.txt"],
            "verify: --top needs a number, got \"many\"\n",
        ),
    ] {
        let out = verify(args);
        assert_eq!(out.code(), 2, "{args:?}: {out:#?}");
        assert!(out.stderr.starts_with(complaint), "{args:?}: {out:#?}");
        assert!(
            out.stderr
                .contains("usage: verify [--repair] [--top N] PATH")
        );
        assert_eq!(out.stdout, "");
    }
}

#[test]
fn help_prints_the_usage_and_exits_0() {
    verify(&["--help"])
        .assert_success()
        .assert_stdout_has(&["usage: verify [--repair] [--top N] PATH"]);
}

#[test]
fn output_to_a_closed_pipe_stops_it_quietly() {
    let (_dir, path) = file(CLEAN);
    // As `verify visits.txt | head -0`: nobody reads the report.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = Command::new(example("verify"))
        .arg(&path)
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child);
    assert_eq!(
        (out.code(), out.stderr.as_str()),
        (2, ""),
        "no panic, no message"
    );
}
