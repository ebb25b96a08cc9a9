//! `?format=csv`: RFC 4180 exports of `/visits` and `/stats`.
//!
//! ```text
//! time,ip                                    /visits?format=csv
//! 2026-11-26T10:44:36.123+03:00,10.0.0.7
//! replica,time,ip                            /visits?scope=cluster&format=csv
//! visit-server-0,2026-11-26T10:44:36.123+03:00,10.0.0.7
//! day,replica,count                          /stats?format=csv (and scope=cluster)
//! 2026-11-26,visit-server-0,42
//! ```
//!
//! RFC 4180: a header row first, every row ended by CRLF, and a field quoted (`"`, with `"`
//! doubled) when it holds a comma, a quote, CR or LF. Only replica names can: a timestamp or
//! an address never does. `time` is the record's timestamp exactly as the file writes it
//! ([`visit_journal::Visit::parse_with_time`]), not re-formatted: a classic line's
//! `2022-11-29T10:44:36+03:00` stays so.
//!
//! [`CsvVisits`] turns a text `/visits` body (the journal's lines, as
//! [`visit_journal::Reader::into_text`] streams them, or a peer's answer) into rows as it is
//! read, through fixed buffers: constant memory, like the text form. A line that is not a
//! record is left out (every row has the same shape), as in the JSON form; the count of such
//! lines and the first one's reason are handed to a callback when the body ends.
//!
//! `/stats` rows ([`stats_rows`]) list each replica's visits per listed day, days ascending
//! and replicas by name within a day; visits on days before the listed ones
//! (`earlier_days_visits` in the JSON) have no day to be listed under.

use std::fmt::Write as _;
use std::io::{self, Read};

use visit_journal::Visit;

use crate::stats::ReplicaStats;

/// The media type of every CSV answer.
pub const CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// The header row of `/visits?format=csv`.
pub const VISITS_HEADER: &str = "time,ip\r\n";

/// The header row of `/visits?scope=cluster&format=csv`.
pub const CLUSTER_VISITS_HEADER: &str = "replica,time,ip\r\n";

/// The header row of `/stats?format=csv`.
pub const STATS_HEADER: &str = "day,replica,count\r\n";

/// Appends `s` to `out` as one CSV field, quoted if RFC 4180 requires it.
pub fn push_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\r', '\n']) {
        out.push('"');
        for c in s.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// The `/stats` CSV: [`STATS_HEADER`], then a `day,replica,count` row per replica and listed
/// day with visits, days ascending, replicas by name within a day.
pub fn stats_rows(replicas: &[ReplicaStats]) -> String {
    let mut rows: Vec<(chrono::NaiveDate, &str, u64)> = replicas
        .iter()
        .flat_map(|r| {
            r.summary
                .days
                .iter()
                .map(move |(day, n)| (*day, r.name.as_str(), *n))
        })
        .collect();
    rows.sort_unstable();
    let mut out = String::with_capacity(STATS_HEADER.len() + rows.len() * 32);
    out.push_str(STATS_HEADER);
    for (day, replica, n) in rows {
        // Writing into a String cannot fail.
        let _ = write!(out, "{day},");
        push_field(&mut out, replica);
        let _ = write!(out, ",{n}\r\n");
    }
    out
}

/// How many bytes of input [`CsvVisits`] reads at a time.
const IN_BUF: usize = 64 * 1024;

/// A line longer than this is no record (a record is at most 4096 bytes); it is skipped
/// without being buffered.
const MAX_LINE: usize = 8 * 1024;

/// What a finished [`CsvVisits`] left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Skipped {
    /// Lines that are not records.
    pub lines: u64,
    /// Why the first of them is not a record.
    pub first: Option<String>,
}

/// Called once, when the body has been read to its end.
pub type OnEnd = Box<dyn FnOnce(Skipped) + Send>;

/// CSV rows (`time,ip`, or `replica,time,ip`) of the text visits `src` yields, produced as
/// they are read. Writes no header row: the caller sends it first (once, for a cluster view
/// of several replicas). An I/O error from `src` is returned as is, so a chunked response
/// ends without its final chunk and the client sees it truncated, never complete.
pub struct CsvVisits<R> {
    src: R,
    /// `replica,` already quoted, or empty.
    prefix: String,
    input: Vec<u8>,
    /// The unparsed input is `input[start..end]`.
    start: usize,
    end: usize,
    /// Inside a line longer than [`MAX_LINE`], dropping bytes until its `\n`.
    overlong: bool,
    eof: bool,
    out: Vec<u8>,
    out_pos: usize,
    skipped: Skipped,
    on_end: Option<OnEnd>,
}

impl<R> std::fmt::Debug for CsvVisits<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvVisits")
            .field("prefix", &self.prefix)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl<R: Read> CsvVisits<R> {
    /// Rows of `src`'s visits, each starting with `replica` if given; `on_end` learns what
    /// was skipped.
    pub fn new(src: R, replica: Option<&str>, on_end: OnEnd) -> CsvVisits<R> {
        let mut prefix = String::new();
        if let Some(name) = replica {
            push_field(&mut prefix, name);
            prefix.push(',');
        }
        CsvVisits {
            src,
            prefix,
            input: vec![0; IN_BUF],
            start: 0,
            end: 0,
            overlong: false,
            eof: false,
            out: Vec::with_capacity(IN_BUF + 1024),
            out_pos: 0,
            skipped: Skipped::default(),
            on_end: Some(on_end),
        }
    }

    fn skip(&mut self, why: impl FnOnce() -> String) {
        self.skipped.lines += 1;
        if self.skipped.first.is_none() {
            self.skipped.first = Some(why());
        }
    }

    fn row(&mut self, line: &[u8]) {
        let Ok(text) = std::str::from_utf8(line) else {
            return self.skip(|| "line is not UTF-8".into());
        };
        match Visit::parse_with_time(text) {
            Ok((visit, time)) => {
                self.out.extend_from_slice(self.prefix.as_bytes());
                // Neither an RFC 3339 timestamp nor an address has a character to quote.
                self.out.extend_from_slice(time.as_bytes());
                self.out.push(b',');
                // Writing into a Vec cannot fail.
                let _ = io::Write::write_fmt(&mut self.out, format_args!("{}\r\n", visit.ip));
            }
            Err(e) => self.skip(|| e.to_string()),
        }
    }

    /// Turns the buffered input's complete lines into rows.
    fn convert(&mut self) {
        // Taken out of `self` so that `row` may borrow `self` mutably meanwhile.
        let mut input = std::mem::take(&mut self.input);
        while let Some(nl) = input[self.start..self.end].iter().position(|&b| b == b'\n') {
            let line_end = self.start + nl;
            if self.overlong {
                self.overlong = false;
            } else {
                self.row(&input[self.start..line_end]);
            }
            self.start = line_end + 1;
        }
        if self.overlong || self.end - self.start > MAX_LINE {
            if !self.overlong {
                self.skip(|| format!("line longer than {MAX_LINE} bytes"));
            }
            self.overlong = true;
            self.start = self.end;
        }
        // Move the partial line (at most MAX_LINE bytes) to the front, to make room.
        input.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        self.input = input;
    }

    fn fill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.out_pos = 0;
        while self.out.is_empty() && !self.eof {
            let n = self.src.read(&mut self.input[self.end..])?;
            if n == 0 {
                self.eof = true;
                if self.end > self.start && !self.overlong {
                    // Text bodies end with a whole line; a peer's that did not was refused.
                    self.skip(|| "last line has no newline".into());
                }
                if let Some(on_end) = self.on_end.take() {
                    on_end(std::mem::take(&mut self.skipped));
                }
                break;
            }
            self.end += n;
            self.convert();
        }
        Ok(())
    }
}

impl<R: Read> Read for CsvVisits<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out_pos == self.out.len() {
            if self.eof {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = (self.out.len() - self.out_pos).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn field(s: &str) -> String {
        let mut out = String::new();
        push_field(&mut out, s);
        out
    }

    #[test]
    fn quotes_only_what_rfc_4180_requires() {
        assert_eq!(field("visit-server-0"), "visit-server-0");
        assert_eq!(field(""), "");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\r\nlines"), "\"two\r\nlines\"");
        assert_eq!(field("lf\n"), "\"lf\n\"");
    }

    /// Reads `src` through a CsvVisits in reads of `chunk` bytes.
    fn convert(src: &[u8], replica: Option<&str>, chunk: usize) -> (String, Skipped) {
        let seen = Arc::new(Mutex::new(None));
        let s = Arc::clone(&seen);
        let mut csv = CsvVisits::new(
            src,
            replica,
            Box::new(move |k| *s.lock().unwrap() = Some(k)),
        );
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            let n = csv.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let skipped = seen.lock().unwrap().take().expect("on_end was called");
        (String::from_utf8(out).unwrap(), skipped)
    }

    #[test]
    fn rows_keep_the_time_as_written_and_skip_what_is_not_a_record() {
        let text = "2026-11-26T10:44:36.123+03:00 - 10.0.0.7\n\
                    not a visit\n\
                    2022-11-29T10:44:36+03:00 - 172.17.0.1\n\
                    2022-11-29T07:44:36.5Z - 2001:db8::1\n";
        for chunk in [1, 7, 4096] {
            let (csv, skipped) = convert(text.as_bytes(), None, chunk);
            assert_eq!(
                csv,
                "2026-11-26T10:44:36.123+03:00,10.0.0.7\r\n\
                 2022-11-29T10:44:36+03:00,172.17.0.1\r\n\
                 2022-11-29T07:44:36.5Z,2001:db8::1\r\n"
            );
            assert_eq!(skipped.lines, 1);
            assert!(skipped.first.unwrap().contains("missing ' - '"));
        }
        let (csv, skipped) = convert(text.as_bytes(), Some("r,\"0\""), 4096);
        assert!(csv.starts_with("\"r,\"\"0\"\"\",2026-11-26T10:44:36.123+03:00,10.0.0.7\r\n"));
        assert_eq!(skipped.lines, 1);
        let (csv, skipped) = convert(b"", Some("r0"), 16);
        assert_eq!((csv.as_str(), skipped.lines), ("", 0));
    }

    #[test]
    fn overlong_and_unterminated_lines_are_skipped_without_being_held() {
        let mut text = "x".repeat(3 * IN_BUF).into_bytes();
        text.extend_from_slice(
            b"\n2026-11-26T10:44:36.123Z - ::1\n\xff\xfe\n2026-11-26T10:44:37Z - ::2",
        );
        let (csv, skipped) = convert(&text, None, 1000);
        assert_eq!(csv, "2026-11-26T10:44:36.123Z,::1\r\n");
        assert_eq!(skipped.lines, 3);
        assert!(skipped.first.unwrap().contains("longer than"));
    }

    #[test]
    fn io_errors_are_passed_on() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let mut csv = CsvVisits::new(Broken, None, Box::new(|_| {}));
        let err = csv.read(&mut [0; 64]).unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
    }

    #[test]
    fn stats_rows_are_sorted_by_day_then_replica() {
        use crate::stats::Tally;
        let rs = |name: &str, lines: &[&str]| {
            let mut t = Tally::default();
            for l in lines {
                t.add(&l.parse().unwrap());
            }
            ReplicaStats {
                name: name.into(),
                address: "127.0.0.1:1".into(),
                summary: t.summary(),
            }
        };
        let b = rs(
            "b",
            &["2026-11-25T10:00:00Z - ::1", "2026-11-26T10:00:00Z - ::1"],
        );
        let a = rs(
            "a,1",
            &["2026-11-26T10:00:00Z - ::1", "2026-11-26T11:00:00Z - ::2"],
        );
        assert_eq!(
            stats_rows(&[b, a]),
            "day,replica,count\r\n2026-11-25,b,1\r\n2026-11-26,\"a,1\",2\r\n2026-11-26,b,1\r\n"
        );
        assert_eq!(stats_rows(&[]), STATS_HEADER);
    }
}
