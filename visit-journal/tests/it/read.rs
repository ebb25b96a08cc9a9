//! Reading: streaming, corrupt lines, tail, count, verify and raw text.

use std::io::Read;

use visit_journal::{Error, Op, Reader, Report};

use crate::support::*;

const GOOD: &str = "2026-11-26T10:44:36.123+03:00 - 10.0.0.7\n";

#[test]
fn an_empty_or_missing_journal() {
    let t = TempJournal::with_bytes(b"");
    assert!(t.read().is_empty());
    let missing = t.dir.path().join("nope.txt");
    let err = Reader::open(&missing).unwrap_err();
    assert!(matches!(err, Error::Io { op: Op::Open, .. }), "{err}");
    assert_eq!(err.path(), Some(missing.as_path()));
}

#[test]
fn a_torn_tail_is_never_returned() {
    let t = TempJournal::with_bytes(format!("{GOOD}2026-11-26T10:44:36.1").as_bytes());
    assert_eq!(t.read().len(), 1);
    let mut text = String::new();
    Reader::open(&t.path)
        .unwrap()
        .into_text()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, GOOD);
    assert_eq!(Reader::open(&t.path).unwrap().count_lines().unwrap(), 1);
}

#[test]
fn a_corrupt_line_is_reported_with_its_number_and_offset_and_reading_goes_on() {
    let file = format!("{GOOD}{GOOD}garbage here\n\n{GOOD}");
    let t = TempJournal::with_bytes(file.as_bytes());
    let items = t.read();
    assert_eq!(items.len(), 5);
    let path = t.path.display();
    let at = 2 * GOOD.len();
    assert_eq!(
        items[2],
        Err(format!(
            "{path}:3: bad record at byte {at}: missing ' - ' between time and address"
        ))
    );
    assert_eq!(
        items[3],
        Err(format!(
            "{path}:4: bad record at byte {}: empty line",
            at + 13
        ))
    );
    assert!(items[4].is_ok());
}

#[test]
fn an_enormous_line_is_reported_without_buffering_it() {
    let mut file = GOOD.to_string();
    file.push_str(&"9".repeat(1 << 20));
    file.push('\n');
    file.push_str(GOOD);
    let t = TempJournal::with_bytes(file.as_bytes());
    let items = t.read();
    assert_eq!(items.len(), 3);
    assert!(
        items[1]
            .as_ref()
            .unwrap_err()
            .ends_with(":2: bad record at byte 41: line too long")
    );
    assert!(items[2].is_ok());
}

#[test]
fn nul_bytes_inside_the_file_are_corruption() {
    let file = format!("{GOOD}\0\0\0\0\n{GOOD}");
    let t = TempJournal::with_bytes(file.as_bytes());
    let items = t.read();
    assert!(items[1].as_ref().unwrap_err().contains("NUL byte"));
    assert!(items[2].is_ok());
}

#[test]
fn tail_reads_backwards_across_chunks() {
    let t = TempJournal::new();
    let all = visits(0..5000); // about 200 KiB: several read chunks
    t.open_fast().append_batch(&all).unwrap();
    for n in [0u64, 1, 2, 1499, 1500, 1501, 4999, 5000, 5001, 100_000] {
        let mut r = Reader::open(&t.path).unwrap();
        let left = r.tail(n).unwrap();
        let got: Vec<_> = r.map(Result::unwrap).collect();
        let want = &all[all.len() - (n as usize).min(all.len())..];
        assert_eq!(got, want, "tail({n})");
        assert_eq!(left, want.len() as u64);
    }
}

#[test]
fn tail_ignores_a_torn_tail_and_numbers_a_corrupt_line() {
    let file = format!("{GOOD}oops\n{GOOD}{GOOD}2026-");
    let t = TempJournal::with_bytes(file.as_bytes());
    let mut r = Reader::open(&t.path).unwrap();
    assert_eq!(r.tail(3).unwrap(), 3);
    let items: Vec<_> = r.map(|r| r.map_err(|e| e.to_string())).collect();
    assert_eq!(items.len(), 3);
    assert!(
        items[0]
            .as_ref()
            .unwrap_err()
            .contains(":2: bad record at byte 41"),
        "{items:?}"
    );
}

#[test]
fn count_and_verify() {
    let file = format!("{GOOD}{GOOD}not a visit\n{GOOD}2026-11");
    let t = TempJournal::with_bytes(file.as_bytes());
    assert_eq!(Reader::open(&t.path).unwrap().count_lines().unwrap(), 4);
    let report = Reader::open(&t.path).unwrap().verify().unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(report.corrupt_lines, 1);
    assert_eq!(report.torn_tail_bytes, 7);
    assert_eq!(report.bytes, (file.len() - 7) as u64);
    assert!(!report.is_clean());
    assert!(matches!(report.errors[0], Error::Corrupt { line: 3, .. }));
}

#[test]
fn verify_keeps_the_first_errors_and_counts_all() {
    let t = TempJournal::with_bytes("x\n".repeat(Report::MAX_ERRORS + 50).as_bytes());
    let report = Reader::open(&t.path).unwrap().verify().unwrap();
    assert_eq!(report.corrupt_lines, Report::MAX_ERRORS as u64 + 50);
    assert_eq!(report.errors.len(), Report::MAX_ERRORS);
}

#[test]
fn into_text_is_the_file_byte_for_byte_from_where_the_reader_is() {
    let t = TempJournal::new();
    let all = visits(0..4000);
    t.open_fast().append_batch(&all).unwrap();
    let mut bytes = t.bytes();
    bytes.extend_from_slice(b"2026-11-26T1"); // torn tail
    t.write(&bytes);
    let whole = &bytes[..bytes.len() - 12];

    let mut text = Vec::new();
    Reader::open(&t.path)
        .unwrap()
        .into_text()
        .read_to_end(&mut text)
        .unwrap();
    assert_eq!(text, whole);

    // After reading some records, the text goes on from the next one.
    let mut r = Reader::open(&t.path).unwrap();
    for _ in 0..1234 {
        r.next().unwrap().unwrap();
    }
    let mut text = Vec::new();
    r.into_text().read_to_end(&mut text).unwrap();
    assert_eq!(text, lines(&all[1234..]).as_bytes());

    // After tail.
    let mut r = Reader::open(&t.path).unwrap();
    r.tail(3).unwrap();
    let mut text = String::new();
    r.into_text().read_to_string(&mut text).unwrap();
    assert_eq!(text, lines(&all[3997..]));
}

#[test]
fn a_reader_stops_where_the_file_ended_when_it_was_opened() {
    let t = TempJournal::new();
    let journal = t.open_fast();
    journal.append_batch(&visits(0..3)).unwrap();
    let reader = Reader::open(&t.path).unwrap();
    journal.append_batch(&visits(3..6)).unwrap();
    assert_eq!(reader.count(), 3);
    assert_eq!(journal.count().unwrap(), 6);
    assert_eq!(journal.tail(2).unwrap(), visits(4..6));
}

#[test]
fn read_visit_reuses_the_callers_value() {
    let t = TempJournal::with_bytes(format!("{GOOD}bad\n{GOOD}").as_bytes());
    let mut r = Reader::open(&t.path).unwrap();
    let mut v = visit(0);
    assert!(r.read_visit(&mut v).unwrap());
    assert_eq!(v.to_string(), GOOD.trim_end());
    assert!(r.read_visit(&mut v).unwrap_err().is_corrupt());
    assert!(r.read_visit(&mut v).unwrap());
    assert!(!r.read_visit(&mut v).unwrap());
}

#[test]
fn check_tail_judges_the_end_as_a_writer_would_without_writing() {
    // A torn record: the next writer cuts it.
    let t = TempJournal::with_bytes(format!("{GOOD}2026-11-26T10:4").as_bytes());
    let r = Reader::open(&t.path).unwrap();
    assert_eq!(r.torn_tail_bytes(), 15);
    assert!(r.check_tail().unwrap().is_none());
    assert!(r.verify().unwrap().is_clean());

    // Not a torn record: a writer would refuse, and verify says so.
    let t = TempJournal::with_bytes(format!("{GOOD}{GOOD}\x7fELF\x02").as_bytes());
    let r = Reader::open(&t.path).unwrap();
    let err = r.check_tail().unwrap().expect("refused");
    assert!(
        matches!(
            err,
            Error::Corrupt {
                line: 3,
                offset: 82,
                ..
            }
        ),
        "{err}"
    );
    let report = r.verify().unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.corrupt_lines, 0);
    assert_eq!(
        report.unrepairable_tail.map(|e| e.to_string()),
        Some(err.to_string()),
        "the same verdict, with the line number counted while reading"
    );
    assert_eq!(t.bytes().len(), 2 * GOOD.len() + 5, "nothing written");
}

/// Everything a reader can tell about `bytes`, errors as messages.
fn everything(open: impl Fn() -> Reader) -> Vec<String> {
    let mut seen = Vec::new();
    let r = open();
    seen.push(format!("path {}", r.path().display()));
    seen.push(format!("torn {}", r.torn_tail_bytes()));
    seen.push(format!(
        "tail check {:?}",
        r.check_tail().map(|e| e.map(|e| e.to_string()))
    ));
    let items: Vec<_> = r.map(|r| r.map_err(|e| e.to_string())).collect();
    seen.push(format!("items {items:?}"));
    seen.push(format!(
        "count {:?}",
        open().count_lines().map_err(|e| e.to_string())
    ));
    for n in [0, 1, 2, 3, 1000] {
        let mut r = open();
        let left = r.tail(n).map_err(|e| e.to_string());
        let items: Vec<_> = r.map(|r| r.map_err(|e| e.to_string())).collect();
        seen.push(format!("tail({n}) {left:?} {items:?}"));
    }
    let mut r = open();
    r.next();
    let mut text = Vec::new();
    r.into_text().read_to_end(&mut text).unwrap();
    seen.push(format!("text after one {text:?}"));
    let report = open().verify().unwrap();
    seen.push(format!(
        "verify {} {} {} {} {:?} {:?}",
        report.records,
        report.corrupt_lines,
        report.bytes,
        report.torn_tail_bytes,
        report
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>(),
        report.unrepairable_tail.map(|e| e.to_string()),
    ));
    seen
}

#[test]
fn a_reader_from_bytes_behaves_exactly_like_one_from_a_file() {
    let long = format!("{GOOD}{}\n{GOOD}", "9".repeat(100_000));
    let many: String = lines(&visits(0..3000)); // several read chunks
    let cases = [
        String::new(),
        GOOD.to_string(),
        format!("{GOOD}2026-11-26T10:44:36.1"),
        "2026-11-26T10:4".to_string(),
        format!("{GOOD}{GOOD}garbage here\n\n{GOOD}"),
        format!("{GOOD}\0\0\0\0\n{GOOD}"),
        format!("{GOOD}oops\n{GOOD}{GOOD}2026-"),
        format!("{GOOD}{GOOD}\x7fELF\x02"),
        "2022-11-29T10:44:36+03:00 - 172.17.0.1\n".to_string(),
        long,
        format!("{many}2026-11-26T1"),
    ];
    for case in cases {
        let t = TempJournal::with_bytes(case.as_bytes());
        let from_file = everything(|| Reader::open(&t.path).unwrap());
        // Named like the file, the errors must read the same, word for word.
        let from_bytes = everything(|| Reader::from_bytes(&t.path, case.as_bytes().to_vec()));
        assert_eq!(from_bytes, from_file, "{case:?}");
    }
}

#[test]
fn a_reader_from_bytes_names_its_source_in_errors() {
    let body = format!("{GOOD}bad\n{GOOD}2026-11");
    let mut r = Reader::from_bytes("peer 10.0.0.2:8080", body.into_bytes());
    assert_eq!(r.path().to_str(), Some("peer 10.0.0.2:8080"));
    assert_eq!(r.torn_tail_bytes(), 7, "a body cut short is visible");
    assert!(r.next().unwrap().is_ok());
    let err = r.next().unwrap().unwrap_err();
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
    assert_eq!(
        err.to_string(),
        "peer 10.0.0.2:8080:2: bad record at byte 41: missing ' - ' between time and address"
    );
    assert!(r.next().unwrap().is_ok());
    assert!(r.next().is_none(), "the torn tail is never returned");
}

#[test]
fn read_visit_with_time_gives_each_timestamp_as_written() {
    let t = TempJournal::with_bytes(
        b"2022-11-29T10:44:36+03:00 - 172.17.0.1\n\
          not a visit\n\
          2022-11-29T07:44:36.5z - ::1\n\
          2026-11-26T10:44:36.123+03:00 - 10.0.0.7\n",
    );
    let mut r = Reader::open(&t.path).unwrap();
    let mut v = visit(0);
    let mut time = String::from("left from before");
    assert!(r.read_visit_with_time(&mut v, &mut time).unwrap());
    assert_eq!(
        (time.as_str(), v.ip.to_string().as_str()),
        ("2022-11-29T10:44:36+03:00", "172.17.0.1")
    );
    // A corrupt line is the same error as read_visit's, and leaves `time` alone.
    let err = r.read_visit_with_time(&mut v, &mut time).unwrap_err();
    assert!(matches!(err, Error::Corrupt { line: 2, .. }), "{err}");
    assert_eq!(time, "2022-11-29T10:44:36+03:00");
    assert!(r.read_visit_with_time(&mut v, &mut time).unwrap());
    assert_eq!(time, "2022-11-29T07:44:36.5z");
    assert_eq!(v.time().to_string(), "2022-11-29T07:44:36.500+00:00");
    // After tail, too.
    let mut r = Reader::open(&t.path).unwrap();
    r.tail(1).unwrap();
    assert!(r.read_visit_with_time(&mut v, &mut time).unwrap());
    assert_eq!(time, "2026-11-26T10:44:36.123+03:00");
    assert!(!r.read_visit_with_time(&mut v, &mut time).unwrap());
}

#[test]
fn tail_of_u64_max_lines_is_the_whole_file_without_overflow() {
    let t = TempJournal::new();
    let all = visits(0..100);
    t.open_fast().append_batch(&all).unwrap();
    let mut r = Reader::open(&t.path).unwrap();
    assert_eq!(r.tail(u64::MAX).unwrap(), 100);
    assert_eq!(r.map(Result::unwrap).collect::<Vec<_>>(), all);
    let mut r = Reader::from_bytes("memory", lines(&all).into_bytes());
    assert_eq!(r.tail(u64::MAX).unwrap(), 100);
}

#[test]
fn into_text_after_the_file_shrank_neither_underflows_nor_reads_past_its_snapshot() {
    let t = TempJournal::with_bytes(GOOD.repeat(10).as_bytes());
    let mut r = Reader::open(&t.path).unwrap();
    // A writer takes back most of the file (a rolled-back batch the reader saw), leaving
    // part of a line.
    let kept = 2 * GOOD.len() + 7;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&t.path)
        .unwrap()
        .set_len(kept as u64)
        .unwrap();
    assert!(r.next().unwrap().is_ok());
    assert!(r.next().unwrap().is_ok());
    assert!(r.next().is_none(), "the partial line is not a record");
    // Then the file grows again, past where the reader's snapshot ended.
    t.write(GOOD.repeat(12).as_bytes());
    let mut text = Vec::new();
    r.into_text().read_to_end(&mut text).unwrap();
    assert_eq!(
        text, b"",
        "nothing after the snapshot's end, which the shrink moved"
    );
}

#[test]
fn opening_and_verifying_beside_a_shrinking_writer_never_fails() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    within(
        Duration::from_secs(60),
        "readers beside a probing writer",
        || {
            let t = TempJournal::new();
            let journal = t.open_fast();
            journal.append_batch(&visits(0..300)).unwrap();
            let records = 300;
            let stop = AtomicBool::new(false);
            /// Stops the prober however the readers end, so that a failed assertion fails the
            /// test at once instead of leaving the scope waiting for the prober.
            struct StopOnDrop<'a>(&'a AtomicBool);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let (opens, torn) = std::thread::scope(|s| {
                let _stop = StopOnDrop(&stop);
                // `check_writable` appends 4 KiB and truncates it away, over and over: the file
                // shrinks under the readers thousands of times a second.
                let prober = s.spawn(|| {
                    let mut probes = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        journal.check_writable().unwrap();
                        probes += 1;
                    }
                    probes
                });
                let deadline = Instant::now() + Duration::from_secs(2);
                let (mut opens, mut torn) = (0u64, 0u64);
                while Instant::now() < deadline && opens < 20_000 {
                    let r = Reader::open(&t.path).unwrap_or_else(|e| panic!("open {opens}: {e}"));
                    torn += u64::from(r.torn_tail_bytes() > 0);
                    let report = r.verify().unwrap_or_else(|e| panic!("verify {opens}: {e}"));
                    assert_eq!(report.records, records, "{report:?}");
                    assert_eq!(report.corrupt_lines, 0, "{report:?}");
                    let mut r = Reader::open(&t.path).unwrap();
                    r.tail(2).unwrap();
                    assert_eq!(r.count(), 2);
                    opens += 1;
                }
                stop.store(true, Ordering::Relaxed);
                assert!(
                    prober.join().unwrap() > 100,
                    "the writer did shrink the file"
                );
                (opens, torn)
            });
            // A reader that looks while the probe is in the file sees its 4 KiB as a torn tail,
            // as it would a batch being written: readers see the file as it is (see `Reader`).
            eprintln!("{opens} opens beside the prober, {torn} saw its 4 KiB as a torn tail");
            assert!(opens > 100, "only {opens} opens");
        },
    );
}

/// Child entry point: a no-op unless `VISIT_JOURNAL_LONG_LINE_CHILD=<path>` is set. Reads the
/// journal every way there is, then prints its peak resident memory (`VmHWM`).
#[test]
fn child_reads_an_enormous_line() {
    let Ok(path) = std::env::var("VISIT_JOURNAL_LONG_LINE_CHILD") else {
        return;
    };
    let items: Vec<_> = Reader::open(&path)
        .unwrap()
        .map(|r| r.map_err(|e| e.to_string()))
        .collect();
    let report = Reader::open(&path).unwrap().verify().unwrap();
    let text = std::io::copy(
        &mut Reader::open(&path).unwrap().into_text(),
        &mut std::io::sink(),
    )
    .unwrap();
    let count = Reader::open(&path).unwrap().count_lines().unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .to_string();
    println!(
        "items={} corrupt={} text={text} count={count} hwm_kb={hwm} first_error={:?}",
        items.len(),
        report.corrupt_lines,
        items[1]
    );
}

#[test]
fn an_enormous_line_is_skipped_in_constant_memory() {
    // 64 MiB of one line (NUL bytes: a sparse file, no disk to write), between two records:
    // twice the bound below, so buffering it could not pass.
    const LONG: u64 = 64 << 20;
    let t = TempJournal::with_bytes(GOOD.as_bytes());
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&t.path)
        .unwrap();
    file.set_len(GOOD.len() as u64 + LONG).unwrap();
    use std::io::Write;
    (&file).write_all(format!("\n{GOOD}").as_bytes()).unwrap();
    drop(file);

    let mut child = spawn_child(
        "read::child_reads_an_enormous_line",
        &[(
            "VISIT_JOURNAL_LONG_LINE_CHILD",
            t.path.display().to_string(),
        )],
    );
    let out: Vec<String> = child_lines(&mut child).collect();
    assert!(child.wait().unwrap().success(), "{out:?}");
    let line = out
        .iter()
        .find(|l| l.starts_with("items="))
        .expect("the child's report");
    let total = 2 * GOOD.len() as u64 + LONG + 1;
    assert!(
        line.starts_with(&format!("items=3 corrupt=1 text={total} count=3 hwm_kb=")),
        "{line}"
    );
    assert!(line.contains("line too long"), "{line}");
    let hwm_kb: u64 = line
        .split("hwm_kb=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("hwm_kb");
    // The whole test binary, libtest included; buffering the line would add 64 MiB.
    eprintln!("peak RSS reading a 64 MiB line: {hwm_kb} kB");
    assert!(hwm_kb < 32 * 1024, "peak RSS {hwm_kb} kB");
}
