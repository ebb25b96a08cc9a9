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
//! ([`Reader::read_visit_with_time`]), not re-formatted: a classic line's
//! `2022-11-29T10:44:36+03:00` stays so.
//!
//! [`CsvVisits`] turns a [`Reader`] (of the journal, or of a peer's text answer with
//! [`Reader::from_bytes`]) into rows as it is read, through a fixed buffer: constant memory,
//! like the text form. A line that is not a record is left out (every row has the same
//! shape), as in the JSON form; how many, and the first, are [reported](Report) at the end.
//!
//! This module knows CSV, not the server: `stats` writes the `/stats` rows with
//! [`push_field`], and `stream` reports what a [`CsvVisits`] skipped to the metrics and the
//! log.

use std::io::{self, Read, Write as _};

use visit_journal::{History, Reader, Visit};

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

/// How many bytes of CSV [`CsvVisits`] prepares before handing them out.
const OUT_BUF: usize = 16 * 1024;

/// What a finished [`CsvVisits`] left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Skipped {
    /// Lines that are not records.
    pub lines: u64,
    /// The first of them, as the library reports it (path or peer, line, byte, reason).
    pub first: Option<String>,
}

/// Told how a [`CsvVisits`] body ended: once, when it has been read to its end (with what
/// it skipped) or when reading the journal failed.
pub trait Report: Send {
    /// The body ended; `skipped` says what it left out.
    fn done(&mut self, skipped: Skipped);
    /// Reading failed: the body ends here, without its final chunk.
    fn failed(&mut self, error: &visit_journal::Error);
}

/// Where [`CsvVisits`] reads visits from: anything that gives each record with its time as
/// written, like [`Reader::read_visit_with_time`] (a journal's reader, or a peer's answer
/// read with [`Reader::from_bytes`]).
pub trait TimedVisits: Send {
    /// Reads the next record into `visit` and its timestamp's text into `time`; `Ok(false)`
    /// at the end.
    ///
    /// # Errors
    ///
    /// The library's: `Corrupt` for a line that is not a record (reading goes on), else
    /// the read failed.
    fn read_visit_with_time(
        &mut self,
        visit: &mut Visit,
        time: &mut String,
    ) -> visit_journal::Result<bool>;
}

impl TimedVisits for Reader {
    fn read_visit_with_time(
        &mut self,
        visit: &mut Visit,
        time: &mut String,
    ) -> visit_journal::Result<bool> {
        Reader::read_visit_with_time(self, visit, time)
    }
}

impl TimedVisits for History {
    fn read_visit_with_time(
        &mut self,
        visit: &mut Visit,
        time: &mut String,
    ) -> visit_journal::Result<bool> {
        History::read_visit_with_time(self, visit, time)
    }
}

/// CSV rows (`time,ip`, or `replica,time,ip`) of the visits a [`Reader`] yields, produced as
/// they are read: constant memory, whatever the journal's size. Writes no header row: the
/// caller sends it first (once, for a cluster view of several replicas).
///
/// An I/O error is returned as is (after [`Report::failed`]), so a chunked response ends
/// without its final chunk and the client sees it truncated, never complete.
pub struct CsvVisits<S = Reader> {
    reader: S,
    /// `replica,` already quoted, or empty.
    prefix: String,
    visit: Visit,
    time: String,
    out: Vec<u8>,
    pos: usize,
    done: bool,
    skipped: Skipped,
    report: Box<dyn Report>,
}

impl<S> std::fmt::Debug for CsvVisits<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvVisits")
            .field("prefix", &self.prefix)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl<S: TimedVisits> CsvVisits<S> {
    /// Rows of `reader`'s visits from its current position, each starting with `replica` if
    /// given.
    pub fn new(reader: S, replica: Option<&str>, report: Box<dyn Report>) -> CsvVisits<S> {
        let mut prefix = String::new();
        if let Some(name) = replica {
            push_field(&mut prefix, name);
            prefix.push(',');
        }
        CsvVisits {
            reader,
            prefix,
            // Overwritten before it is read.
            visit: Visit::new(
                chrono::DateTime::UNIX_EPOCH.fixed_offset(),
                [0, 0, 0, 0].into(),
            ),
            time: String::new(),
            out: Vec::with_capacity(OUT_BUF + 256),
            pos: 0,
            done: false,
            skipped: Skipped::default(),
            report,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        while self.out.len() < OUT_BUF {
            match self
                .reader
                .read_visit_with_time(&mut self.visit, &mut self.time)
            {
                Ok(true) => {
                    self.out.extend_from_slice(self.prefix.as_bytes());
                    // Neither an RFC 3339 timestamp nor an address has a character to quote.
                    self.out.extend_from_slice(self.time.as_bytes());
                    // Writing into a Vec cannot fail.
                    let _ = write!(self.out, ",{}\r\n", self.visit.ip);
                }
                Ok(false) => {
                    self.done = true;
                    self.report.done(std::mem::take(&mut self.skipped));
                    break;
                }
                Err(e) if e.is_corrupt() => {
                    self.skipped.lines += 1;
                    if self.skipped.first.is_none() {
                        self.skipped.first = Some(e.to_string());
                    }
                }
                Err(e) => {
                    self.done = true;
                    self.report.failed(&e);
                    return Err(io::Error::from(e));
                }
            }
        }
        Ok(())
    }
}

impl<S: TimedVisits> Read for CsvVisits<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = (self.out.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
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

    #[derive(Default)]
    struct Seen {
        done: Option<Skipped>,
        failed: Option<String>,
    }

    struct Probe(Arc<Mutex<Seen>>);

    impl Report for Probe {
        fn done(&mut self, skipped: Skipped) {
            assert!(self.0.lock().unwrap().done.replace(skipped).is_none());
        }
        fn failed(&mut self, error: &visit_journal::Error) {
            self.0.lock().unwrap().failed = Some(error.to_string());
        }
    }

    /// Reads `text` through a CsvVisits in reads of `chunk` bytes.
    fn convert(text: &[u8], replica: Option<&str>, chunk: usize) -> (String, Skipped) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let reader = Reader::from_bytes("peer 10.0.0.2:8080", text.to_vec());
        let mut csv = CsvVisits::new(reader, replica, Box::new(Probe(Arc::clone(&seen))));
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            let n = csv.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        // Reading past the end stays at the end, and reports once.
        assert_eq!(csv.read(&mut buf).unwrap(), 0);
        let mut seen = seen.lock().unwrap();
        assert_eq!(seen.failed, None);
        let skipped = seen.done.take().expect("done was reported");
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
            let first = skipped.first.unwrap();
            assert!(first.starts_with("peer 10.0.0.2:8080:2: "), "{first}");
        }
        let (csv, skipped) = convert(text.as_bytes(), Some("r,\"0\""), 4096);
        assert!(csv.starts_with("\"r,\"\"0\"\"\",2026-11-26T10:44:36.123+03:00,10.0.0.7\r\n"));
        assert_eq!(skipped.lines, 1);
        let (csv, skipped) = convert(b"", Some("r0"), 16);
        assert_eq!((csv.as_str(), skipped.lines), ("", 0));
    }

    #[test]
    fn long_lines_and_a_torn_tail_are_not_rows() {
        let mut text = "x".repeat(3 * OUT_BUF).into_bytes();
        text.extend_from_slice(
            b"\n2026-11-26T10:44:36.123Z - ::1\n\xff\xfe\n2026-11-26T10:44:37Z - ::2",
        );
        let (csv, skipped) = convert(&text, None, 1000);
        assert_eq!(csv, "2026-11-26T10:44:36.123Z,::1\r\n");
        assert_eq!(skipped.lines, 2);
        assert!(skipped.first.unwrap().contains("too long"));
    }

    #[test]
    fn a_large_body_comes_out_in_bounded_pieces() {
        let line = "2026-11-26T10:44:36.123+03:00 - 10.0.0.7\n";
        let reader = Reader::from_bytes("big", line.repeat(10_000).into_bytes());
        let mut csv = CsvVisits::new(reader, None, Box::new(Probe(Arc::default())));
        let mut buf = vec![0; 1 << 20];
        let (mut reads, mut total) = (0, 0);
        loop {
            let n = csv.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= OUT_BUF + 256);
            total += n;
            reads += 1;
        }
        let row = "2026-11-26T10:44:36.123+03:00,10.0.0.7\r\n";
        assert_eq!(total, 10_000 * row.len());
        assert!(reads > 10);
    }
}
