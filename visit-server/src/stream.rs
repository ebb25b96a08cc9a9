//! Response bodies for `/visits` that stream the journal in constant memory.
//!
//! tiny_http copies a body [`Read`] to the socket with chunked encoding, so a 256 MB journal
//! goes out through a few fixed buffers and is never held in memory. Both bodies carry a
//! [`Slot`], freed when tiny_http drops the body after the response.
//!
//! The text body is [`History::into_text`]: the complete lines of the journal's sealed
//! segments and live file, byte for byte, oldest first.
//! The JSON body is [`JsonVisits`], which serializes one visit at a time.
//! The cluster view strings such parts together with [`Concat`]; its peers' text answers are
//! read with [`Reader::from_bytes`], so they stream through the same two bodies.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Arc;

use std::path::Path;

use visit_journal::{History, Reader, Visit};

use crate::app::{App, Slot};
use crate::csv;
use crate::json;
use crate::log::{self, Value};

/// A body that holds a slot (of `/visits` streams or cluster views) while it is read.
///
/// The slot is freed as soon as the body ends, before tiny_http writes the final chunk: a
/// client that sends its next request the moment it has the answer must find the slot free
/// again (freeing it only when tiny_http drops the body lost that race, and such a client
/// was refused with 503). A body that is not read to its end frees the slot when dropped.
pub struct Slotted<R> {
    inner: R,
    slot: Option<Slot>,
}

impl<R> std::fmt::Debug for Slotted<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slotted").finish_non_exhaustive()
    }
}

impl<R> Slotted<R> {
    /// Ties `inner` to `slot`.
    pub fn new(inner: R, slot: Slot) -> Slotted<R> {
        Slotted {
            inner,
            slot: Some(slot),
        }
    }
}

impl<R: Read> Read for Slotted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.slot = None;
        }
        Ok(n)
    }
}

/// The visits a body streams: this replica's history, or a peer's answer.
#[derive(Debug)]
pub enum Visits {
    /// This replica's journal: its sealed segments, then its live file.
    History(History),
    /// A peer's `/visits` answer, read like a journal.
    Peer(Reader),
}

impl Visits {
    /// The complete lines, byte for byte.
    pub fn into_text(self) -> Box<dyn Read + Send> {
        match self {
            Visits::History(h) => Box::new(h.into_text()),
            Visits::Peer(r) => Box::new(r.into_text()),
        }
    }

    /// What errors name: the journal's path, or the peer.
    pub fn path(&self) -> &Path {
        match self {
            Visits::History(h) => h.path(),
            Visits::Peer(r) => r.path(),
        }
    }
}

impl From<History> for Visits {
    fn from(h: History) -> Visits {
        Visits::History(h)
    }
}

impl From<Reader> for Visits {
    fn from(r: Reader) -> Visits {
        Visits::Peer(r)
    }
}

impl crate::csv::TimedVisits for Visits {
    fn read_visit_with_time(
        &mut self,
        visit: &mut Visit,
        time: &mut String,
    ) -> visit_journal::Result<bool> {
        match self {
            Visits::History(h) => h.read_visit_with_time(visit, time),
            Visits::Peer(r) => r.read_visit_with_time(visit, time),
        }
    }
}

impl Iterator for Visits {
    type Item = visit_journal::Result<Visit>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Visits::History(h) => h.next(),
            Visits::Peer(r) => r.next(),
        }
    }
}

/// How many bytes of JSON [`JsonVisits`] prepares before handing them out.
const JSON_BUF: usize = 16 * 1024;

/// A JSON array of the visits a [`History`] (or a peer's [`Reader`]) yields, produced lazily:
///
/// ```text
/// [
/// {"time":"2026-11-26T10:44:36.123+03:00","ip":"10.0.0.7"},
/// {"time":"2026-11-26T10:44:37.402+03:00","ip":"2001:db8::1"}
/// ]
/// ```
///
/// `time` is the visit's timestamp in RFC 3339 with its own offset and 3 fractional digits (6
/// or 9 if the line has finer ones). A **corrupt line** is left out (every element has the same
/// shape, so a client can rely on it); the text form still shows it byte for byte, the count
/// goes to `visit_server_json_skipped_lines_total` and one warning per response names the
/// first one. An **I/O error** ends the body with an error, so tiny_http aborts the chunked
/// response without its final chunk: the client sees a truncated response, never a valid
/// but incomplete array.
#[derive(Debug)]
pub struct JsonVisits {
    visits: Visits,
    app: Arc<App>,
    buf: String,
    pos: usize,
    started: bool,
    items: json::Items,
    done: bool,
    skipped: u64,
    first_skipped: Option<String>,
}

impl JsonVisits {
    /// Serializes what `visits` yields from its current position.
    pub fn new(visits: Visits, app: Arc<App>) -> JsonVisits {
        JsonVisits {
            visits,
            app,
            buf: String::with_capacity(JSON_BUF + 128),
            pos: 0,
            started: false,
            items: json::Items::new("", ",\n"),
            done: false,
            skipped: 0,
            first_skipped: None,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        self.buf.clear();
        self.pos = 0;
        if !self.started {
            self.buf.push_str("[\n");
            self.started = true;
        }
        while self.buf.len() < JSON_BUF {
            match self.visits.next() {
                Some(Ok(v)) => {
                    self.items.next(&mut self.buf);
                    // The time exactly as the record writes it: the library owns that format.
                    json::Object::new(&mut self.buf)
                        .display("time", &v.time())
                        .display("ip", &v.ip)
                        .end();
                }
                Some(Err(e)) if e.is_corrupt() => {
                    self.skipped += 1;
                    if self.first_skipped.is_none() {
                        self.first_skipped = Some(e.to_string());
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    crate::app::log_journal_error("visits_read_failed", self.visits.path(), &e);
                    return Err(io::Error::from(e));
                }
                None => {
                    self.buf
                        .push_str(if self.items.any() { "\n]\n" } else { "]\n" });
                    self.done = true;
                    self.report_skipped();
                    break;
                }
            }
        }
        Ok(())
    }

    fn report_skipped(&mut self) {
        if self.skipped == 0 {
            return;
        }
        self.app.metrics.json_skipped(self.skipped);
        let first = self.first_skipped.take().unwrap_or_default();
        log::warn(
            "visits_json_skipped_corrupt_lines",
            &[
                ("count", self.skipped.into()),
                ("first", Value::Str(&first)),
            ],
        );
        self.skipped = 0;
    }
}

impl Read for JsonVisits {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = (self.buf.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf.as_bytes()[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// CSV rows of `reader`'s visits (see [`crate::csv`]), each starting with `replica` if given;
/// lines left out are counted in `/metrics` and logged once, as for the JSON form.
pub fn csv_visits<S: csv::TimedVisits>(
    app: &Arc<App>,
    reader: S,
    replica: Option<&str>,
) -> csv::CsvVisits<S> {
    csv::CsvVisits::new(reader, replica, Box::new(CsvReport(Arc::clone(app))))
}

/// Reports what a CSV body left out, or why it failed, to the metrics and the log.
struct CsvReport(Arc<App>);

impl csv::Report for CsvReport {
    fn done(&mut self, skipped: csv::Skipped) {
        if skipped.lines == 0 {
            return;
        }
        self.0.metrics.json_skipped(skipped.lines);
        let first = skipped.first.unwrap_or_default();
        log::warn(
            "visits_csv_skipped_corrupt_lines",
            &[
                ("count", skipped.lines.into()),
                ("first", Value::Str(&first)),
            ],
        );
    }

    fn failed(&mut self, error: &visit_journal::Error) {
        crate::app::log_journal_error("visits_read_failed", self.0.journal.path(), error);
    }
}

/// Reads its parts one after the other.
pub struct Concat {
    parts: VecDeque<Box<dyn Read + Send>>,
}

impl std::fmt::Debug for Concat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Concat")
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl Concat {
    /// No parts yet.
    pub fn new() -> Concat {
        Concat {
            parts: VecDeque::new(),
        }
    }

    /// Appends a part.
    pub fn push(&mut self, part: impl Read + Send + 'static) {
        self.parts.push_back(Box::new(part));
    }

    /// Appends bytes.
    pub fn push_bytes(&mut self, bytes: impl Into<Vec<u8>>) {
        self.push(io::Cursor::new(bytes.into()));
    }
}

impl Default for Concat {
    fn default() -> Concat {
        Concat::new()
    }
}

impl Read for Concat {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(part) = self.parts.front_mut() {
            let n = part.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.parts.pop_front();
        }
        Ok(0)
    }
}
