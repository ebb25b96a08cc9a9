//! The whole history of a journal: the sealed segments still on disk, oldest first, then the
//! live file, with the summary's counts of the retired ones. No locks.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::cache::{CountCache, Held};
use crate::counts::{Counts, Damaged, Tally};
use crate::dir::{self, Dir, FileId, FileKey, RealDir};
use crate::error::{Error, Op, Result};
use crate::lifecycle::{SummaryState, load_summary, tally_file};
use crate::reader::{Opened, Reader, Report};
use crate::segment::{self, Summary};
use crate::visit::Visit;

/// How often [`History::open`] starts over when the live file is rotated while it opens the
/// files, before it gives up. A rotation takes microseconds and comes once per rotate size of
/// appends, so a second attempt is nearly always the last.
const ATTEMPTS: usize = 100;

/// Streams every visit a journal still holds, across its sealed segments and its live file,
/// oldest first, in constant memory; and counts, with the summary, every visit ever recorded.
///
/// With rotation on ([`Options::rotate_size`](crate::Options::rotate_size)), a journal at
/// `visits.txt` is the files `visits.txt.000001`, `visits.txt.000002`, … (sealed, never written
/// again), the live `visits.txt`, and `visits.txt.summary`, which counts the visits per day of
/// the segments retention deleted. A `History` reads them in that order, as
/// `cat visits.txt.[0-9]* visits.txt` would, and is a [`Reader`] in every other way: an
/// iterator of `Result<Visit>`, [`tail`](History::tail), [`count_lines`](History::count_lines),
/// [`verify`](History::verify), [`into_text`](History::into_text). Without rotation it reads
/// just the live file.
///
/// ```
/// use visit_journal::{History, Options, Visit};
///
/// # fn main() -> visit_journal::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("visits.txt");
/// let journal = Options::new().rotate_size(4096).open(&path)?;
/// for _ in 0..500 {
///     journal.append(&Visit::now("10.0.0.7".parse().unwrap()))?;
/// }
/// assert!(path.with_file_name("visits.txt.000001").exists());
///
/// let history = History::open(&path)?;
/// assert_eq!(history.count_lines()?, 500);
/// let mut last = History::open(&path)?;
/// last.tail(150)?; // across segments, reading backwards from the end
/// assert_eq!(last.count(), 150);
/// # Ok(())
/// # }
/// ```
///
/// # Consistency
///
/// A `History` opens every file of the history when it is opened, and re-checks that the live
/// file was not rotated meanwhile (if it was, it starts over), so it is one consistent
/// snapshot: a segment retired while it reads is still read whole (its open file stays
/// readable), a segment sealed meanwhile is not missed, and nothing is counted twice. Each
/// file is read up to the last complete line it had when it was opened.
///
/// # Damaged files
///
/// A history degrades, it never stops: a file with a segment's name that is not a regular
/// file that can be read (a directory, a FIFO, a file without read permission) is skipped
/// without ever being opened in a way that could block, and a summary that does not parse (or
/// whose days do not add up to its total) is left out of the counts. Both are listed by
/// [`History::damaged`], with what is wrong, and so are the files retention set aside
/// (`<name>.damaged`).
#[derive(Debug)]
pub struct History {
    path: PathBuf,
    /// The counts of the retired segments (empty if the summary is damaged).
    summary: Summary,
    /// The files that could not be used, or were set aside.
    damaged: Vec<Damaged>,
    /// The files not yet read, oldest first, each already open.
    parts: VecDeque<Part>,
    /// The file being read, and its segment number (`None`: the live file).
    current: Option<(Option<u64>, Reader)>,
    /// Set after an I/O error: the iteration is over.
    failed: bool,
}

/// One open file of the history.
#[derive(Debug)]
struct Part {
    /// The segment's number; `None` for the live file.
    segment: Option<u64>,
    /// A sealed segment's identity and size as opened: what its kept counts belong to.
    key: Option<FileKey>,
    path: PathBuf,
    /// The file; the live file's end as it was when the history was opened.
    file: Opened,
}

impl Part {
    fn reader(self) -> Result<Reader> {
        self.file.reader(&self.path)
    }

    /// A second reader of the same open file, with the same end.
    fn clone_reader(&self) -> Result<Reader> {
        self.file.try_clone(&self.path)?.reader(&self.path)
    }
}

impl History {
    /// Opens the history of the journal at `path`: its summary, its sealed segments and its
    /// live file (which may be missing while a rotation is under way, or if only segments were
    /// copied). If `path` is a symbolic link, the history is the one beside the file it points
    /// to, where the journal keeps it (see [`Journal::open`](crate::Journal::open)).
    ///
    /// Damaged files do not make it fail: see [`History::damaged`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory cannot be listed, the live file is not a regular file,
    /// or a file cannot be opened for a reason of the moment (an I/O error, running out of
    /// file descriptors for a history of very many segments: raise the limit).
    pub fn open(path: impl AsRef<Path>) -> Result<History> {
        History::open_in(&RealDir, path.as_ref())
    }

    pub(crate) fn open_in(dir: &dyn Dir, path: &Path) -> Result<History> {
        let path = &dir::resolve_live(path)?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path.file_name().unwrap_or_default();
        for _ in 0..ATTEMPTS {
            let live = open_part(path, true)?;
            let mut numbers = Vec::new();
            let mut damaged = Vec::new();
            for entry in dir
                .list(parent)
                .map_err(|e| Error::io(Op::ListDirectory, parent, e))?
            {
                if let Some(n) = segment::segment_number(name, &entry) {
                    numbers.push(n);
                } else if segment::is_set_aside(name, &entry) {
                    damaged.push(Damaged::new(&parent.join(&entry), SET_ASIDE));
                }
            }
            numbers.sort_unstable();
            let mut sealed = Vec::with_capacity(numbers.len());
            for n in numbers {
                let seg = segment::segment_path(path, n);
                match open_part(&seg, false) {
                    // Gone since the listing: retired, so counted in the summary read below.
                    Ok(None) => {}
                    Ok(Some(part)) => sealed.push((n, part)),
                    Err(Error::Io { source, .. }) if dir::is_unusable(&source) => {
                        damaged.push(Damaged::new(&seg, source.to_string()));
                    }
                    Err(e) => return Err(e),
                }
            }
            // Read after the segments are open: a retirement writes the summary before it
            // deletes, so any segment we missed is in it.
            let summary_path = segment::summary_path(path);
            let (summary, folded_through) = match load_summary(dir, &summary_path)? {
                SummaryState::Good(summary) => {
                    let n = summary.folded_through;
                    (summary, n)
                }
                SummaryState::Damaged {
                    folded_through,
                    reason,
                } => {
                    damaged.push(Damaged::new(&summary_path, reason));
                    (Summary::default(), folded_through.unwrap_or(0))
                }
            };
            let now = dir.id(path).map_err(|e| Error::io(Op::Stat, path, e))?;
            if now != live.as_ref().map(|(_, id)| *id) {
                continue; // Rotated while we opened: a segment may be missing. Start over.
            }
            let mut parts: VecDeque<Part> = sealed
                .into_iter()
                .filter(|(n, _)| *n > folded_through)
                .map(|(n, (mut part, _))| {
                    part.segment = Some(n);
                    part
                })
                .collect();
            parts.extend(live.map(|(part, _)| part));
            damaged.sort_by(|a, b| a.path().cmp(b.path()));
            return Ok(History {
                path: path.to_path_buf(),
                summary,
                damaged,
                parts,
                current: None,
                failed: false,
            });
        }
        Err(Error::io(
            Op::Open,
            path,
            io::Error::other("the journal kept being rotated while its history was opened"),
        ))
    }

    /// The path of the live file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The files still to be read, oldest first: the sealed segments, then the live file.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.current
            .iter()
            .map(|(_, r)| r.path())
            .chain(self.parts.iter().map(|p| p.path.as_path()))
    }

    /// Visits per day counted in the summary: those of the segments retention deleted.
    pub fn retired_days(&self) -> &BTreeMap<NaiveDate, u64> {
        &self.summary.days
    }

    /// The files still to be read, oldest first, each as a [`Reader`] with its segment number
    /// (`None` for the live file): for a caller that keeps what it computed from each sealed
    /// segment, since a sealed segment never changes (its number is never reused).
    ///
    /// Each reader is built when the iterator reaches it, so only one buffer is in memory at a
    /// time.
    pub fn into_files(mut self) -> impl Iterator<Item = Result<(Option<u64>, Reader)>> {
        let current = self.current.take().map(Ok);
        current.into_iter().chain(
            self.parts
                .into_iter()
                .map(|part| Ok((part.segment, part.reader()?))),
        )
    }

    /// The files of the history that could not be used (skipped by this reader, and left out
    /// of its counts), or were set aside by retention, sorted by path; empty for a healthy
    /// history. See "Damaged files" above.
    pub fn damaged(&self) -> &[Damaged] {
        &self.damaged
    }

    /// Counts every visit of the history from here to the end, with the summary's: on a
    /// freshly opened history, every visit ever recorded, per day and per address (see
    /// [`Counts`]). Reads every file once; [`Journal::counts`](crate::Journal::counts) keeps
    /// what sealed segments hold, so that it reads only the live file the next time.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if reading fails; corrupt lines are counted, not errors.
    pub fn counts(self) -> Result<Counts> {
        self.counts_with(&CountCache::default(), || {})
    }

    /// [`History::counts`], taking each sealed segment's counts from `cache` if they are
    /// kept there under its identity, and keeping them otherwise. `between` runs once every
    /// file is counted and before they are summed (tests force interleavings there).
    pub(crate) fn counts_with(
        mut self,
        cache: &CountCache,
        between: impl FnOnce(),
    ) -> Result<Counts> {
        let retired = self.summary.tally();
        let damaged = std::mem::take(&mut self.damaged);
        let mut held = Vec::new();
        let mut live = Tally::default();
        let mut current = self.current.take().map(|(_, reader)| reader);
        let mut parts = std::mem::take(&mut self.parts).into_iter();
        loop {
            let (part_key, segment, reader) = match current.take() {
                // A reader already moved by `tail`: counted from where it stands.
                Some(reader) => (None, None, reader),
                None => match parts.next() {
                    None => break,
                    Some(part) => {
                        let (key, segment) = (part.key, part.segment);
                        if let (Some(key), Some(n)) = (key, segment)
                            && let Some(tally) = cache.get(&key)
                        {
                            held.push(Held { n, key, tally });
                            continue;
                        }
                        (key, segment, part.reader()?)
                    }
                },
            };
            match (part_key, segment) {
                (Some(key), Some(n)) => {
                    let tally = std::sync::Arc::new(tally_file(reader)?.kept());
                    cache.insert(n, key, std::sync::Arc::clone(&tally));
                    held.push(Held { n, key, tally });
                }
                _ => live.add(&tally_file(reader)?),
            }
        }
        between();
        let mut total = cache.sum(&held);
        total.add(&live);
        total.add(&retired);
        Ok(Counts {
            total,
            retired_visits: retired.visits,
            damaged,
        })
    }

    /// Visits counted in the summary: those of the segments retention deleted.
    pub fn retired_visits(&self) -> u64 {
        self.summary.visits()
    }

    /// Corrupt lines met in the segments retention deleted.
    pub fn retired_corrupt_lines(&self) -> u64 {
        self.summary.corrupt
    }

    /// Moves the history to the start of its last `n` complete lines, across segments,
    /// reading backwards from the end: the cost depends on `n`, not on the size of the
    /// history. Returns how many lines are left to read (fewer than `n` if the history is
    /// shorter). Retired visits are not lines any more, so they are not among them.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if reading fails.
    pub fn tail(&mut self, n: u64) -> Result<u64> {
        let mut need = n;
        let mut first = self.parts.len();
        let mut positioned = None;
        while need > 0 && first > 0 {
            let mut reader = self.parts[first - 1].clone_reader()?;
            need -= reader.tail(need)?;
            first -= 1;
            if need == 0 {
                positioned = Some(reader);
            }
        }
        self.parts.drain(..first);
        if let Some(reader) = positioned {
            // The tail starts in this file: read it from there, the later ones whole.
            let segment = self.parts.pop_front().and_then(|p| p.segment);
            self.current = Some((segment, reader));
        } else if let Some((_, current)) = &mut self.current {
            // Every file after it is wanted whole, and some of the file being read too.
            need -= current.tail(need)?;
        }
        Ok(n - need)
    }

    /// Reads the next record into `visit`. Returns `Ok(false)` at the end.
    ///
    /// # Errors
    ///
    /// As [`Reader::read_visit`].
    pub fn read_visit(&mut self, visit: &mut Visit) -> Result<bool> {
        match self.next() {
            None => Ok(false),
            Some(Ok(v)) => {
                *visit = v;
                Ok(true)
            }
            Some(Err(e)) => Err(e),
        }
    }

    /// Reads the next record into `visit` and its timestamp, exactly as the line writes it,
    /// into `time`. Returns `Ok(false)` at the end.
    ///
    /// # Errors
    ///
    /// As [`Reader::read_visit_with_time`].
    pub fn read_visit_with_time(&mut self, visit: &mut Visit, time: &mut String) -> Result<bool> {
        while !self.failed {
            let reader = match self.next_reader() {
                None => return Ok(false),
                Some(Ok(reader)) => reader,
                Some(Err(e)) => {
                    self.failed = true;
                    return Err(e);
                }
            };
            match reader.read_visit_with_time(visit, time) {
                Ok(true) => return Ok(true),
                Ok(false) => self.current = None,
                Err(e @ Error::Io { .. }) => {
                    self.failed = true;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Counts the complete lines from here to the end, in constant memory, without parsing.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if reading fails.
    pub fn count_lines(mut self) -> Result<u64> {
        let mut count = match self.current.take() {
            Some((_, reader)) => reader.count_lines()?,
            None => 0,
        };
        for part in self.parts {
            count += part.reader()?.count_lines()?;
        }
        Ok(count)
    }

    /// Visits per day (the day as written in each record's own offset) from here to the end,
    /// plus the summary's counts of the retired segments: on a freshly opened history, every
    /// visit ever recorded. Corrupt lines are not visits and are not counted.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if reading fails.
    pub fn days(mut self) -> Result<BTreeMap<NaiveDate, u64>> {
        let mut all = self.summary.tally();
        if let Some((_, reader)) = self.current.take() {
            all.add(&tally_file(reader)?);
        }
        for part in self.parts {
            all.add(&tally_file(part.reader()?)?);
        }
        Ok(all.days)
    }

    /// Reads everything from here to the end and reports what it found, over every file:
    /// records, corrupt lines (with the first [`Report::MAX_ERRORS`], naming their file),
    /// bytes, and any torn tail (normally only the live file can have one).
    ///
    /// The visits the summary counts are not in the report: see
    /// [`retired_visits`](History::retired_visits).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if reading fails.
    pub fn verify(self) -> Result<Report> {
        let mut total = Report {
            records: 0,
            corrupt_lines: 0,
            errors: Vec::new(),
            bytes: 0,
            torn_tail_bytes: 0,
            unrepairable_tail: None,
        };
        for file in self.into_files() {
            let report = file?.1.verify()?;
            total.records += report.records;
            total.corrupt_lines += report.corrupt_lines;
            let room = Report::MAX_ERRORS - total.errors.len();
            total.errors.extend(report.errors.into_iter().take(room));
            total.bytes += report.bytes;
            total.torn_tail_bytes += report.torn_tail_bytes;
            if total.unrepairable_tail.is_none() {
                total.unrepairable_tail = report.unrepairable_tail;
            }
        }
        Ok(total)
    }

    /// The remaining complete lines of every file as bytes, exactly as they are in the files,
    /// concatenated oldest first: what `cat visits.txt.[0-9]* visits.txt` prints, minus any
    /// torn tail. Streams in constant memory.
    pub fn into_text(mut self) -> impl Read + Send + 'static {
        HistoryText {
            current: self
                .current
                .take()
                .map(|(_, r)| Box::new(r.into_text()) as _),
            parts: self.parts,
        }
    }

    fn next_reader(&mut self) -> Option<Result<&mut Reader>> {
        if self.current.is_none() {
            let part = self.parts.pop_front()?;
            let segment = part.segment;
            match part.reader() {
                Ok(reader) => self.current = Some((segment, reader)),
                Err(e) => return Some(Err(e)),
            }
        }
        self.current.as_mut().map(|(_, r)| Ok(r))
    }
}

impl Iterator for History {
    type Item = Result<Visit>;

    fn next(&mut self) -> Option<Result<Visit>> {
        while !self.failed {
            match self.next_reader()? {
                Ok(reader) => match reader.next() {
                    Some(Err(e @ Error::Io { .. })) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                    Some(item) => return Some(item),
                    None => self.current = None,
                },
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl std::iter::FusedIterator for History {}

/// The bytes of a history; see [`History::into_text`].
struct HistoryText {
    current: Option<Box<dyn Read + Send>>,
    parts: VecDeque<Part>,
}

impl Read for HistoryText {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(current) = &mut self.current {
                match current.read(out)? {
                    0 => self.current = None,
                    n => return Ok(n),
                }
            }
            let Some(part) = self.parts.pop_front() else {
                return Ok(0);
            };
            self.current = Some(Box::new(part.reader()?.into_text()));
        }
    }
}

/// Why a `<name>.damaged` file is listed.
const SET_ASIDE: &str = "set aside by retention: it had a segment's name but could not be read";

/// Opens a file of the history (without blocking, and only if it is a regular file) and notes
/// its identity; `None` if it is not there. The end of a file that still `grows` (the live
/// one) is taken now.
fn open_part(path: &Path, grows: bool) -> Result<Option<(Part, FileId)>> {
    let (file, meta) = match dir::open_regular(path) {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(Op::Open, path, e)),
    };
    let part = Part {
        segment: None,
        key: (!grows).then(|| FileKey::of(&meta)),
        path: path.to_path_buf(),
        file: if grows {
            Opened::now(path, file)?
        } else {
            Opened::later(file)
        },
    };
    Ok(Some((part, FileId::of(&meta))))
}
