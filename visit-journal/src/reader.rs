//! The read path: streaming complete lines, `tail`, counting and verification. No locks.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Op, Result};
use crate::repair::{self, Cut};
use crate::storage::{CHUNK, FileStorage, ReadAt, count_newlines, last_line_end, read_up_to};
use crate::visit::{MAX_LINE, Visit, parse_record, written_time};

/// Streams the visits of a journal, oldest first, in constant memory.
///
/// A `Reader` takes no lock: it can run beside any number of writers. When it is opened it
/// notes where the last complete line ends and never reads past it, so it never returns a
/// torn tail, nor half of a line being appended while it reads.
///
/// As an [`Iterator`] it yields `Result<Visit>`:
///
/// - a malformed line yields `Err(`[`Error::Corrupt`]`)` with its line number and byte
///   offset, and iteration **goes on** with the next line (so one bad line does not hide the
///   rest; stop at the first `Err` if you prefer);
/// - an I/O error yields `Err(`[`Error::Io`]`)` and ends the iteration.
///
/// ```
/// use visit_journal::{Journal, Reader, Visit};
///
/// # fn main() -> visit_journal::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("visits.txt");
/// let journal = Journal::open(&path)?;
/// for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
///     journal.append(&Visit::now(ip.parse().unwrap()))?;
/// }
///
/// let mut visits = 0;
/// for visit in Reader::open(&path)? {
///     let visit = visit?;
///     println!("{} from {}", visit.at, visit.ip);
///     visits += 1;
/// }
/// assert_eq!(visits, 3);
///
/// // The last two, reading backwards from the end.
/// let mut reader = Reader::open(&path)?;
/// reader.tail(2)?;
/// let last: Vec<Visit> = reader.collect::<Result<_, _>>()?;
/// assert_eq!(last[1].ip.to_string(), "10.0.0.3");
/// # Ok(())
/// # }
/// ```
///
/// # Concurrent writers
///
/// A reader sees the file as it is, not as it is acknowledged: a record can be read a moment
/// before its append returns, and if that append then fails and is rolled back, the record
/// disappears again. Readers that must see only acknowledged visits should ask the process
/// that appended them.
///
/// A writer shrinks the file only to take back its own end (a rolled-back batch, the probe of
/// [`Journal::check_writable`](crate::Journal::check_writable), a torn tail). A reader that
/// meets such a shrink does not fail: opening and [`tail`](Reader::tail) look again at the
/// new length, and reading stops at the last complete line still there, never reading past
/// where its snapshot ended.
#[derive(Debug)]
pub struct Reader {
    /// The file's path, or the name given to [`Reader::from_bytes`]: what errors name.
    path: PathBuf,
    file: Source,
    /// The file's length when the reader was opened.
    len: u64,
    /// Where the last complete line ended when the reader was opened: nothing past it is read.
    end: u64,
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    buf_start: u64,
    /// The unread bytes are `buf[lo..hi]`.
    lo: usize,
    hi: usize,
    /// The 1-based number of the next line, when known (it is not after [`Reader::tail`]
    /// until an error needs it).
    line: Option<u64>,
    /// Set after an I/O error: the iteration is over.
    failed: bool,
}

/// What [`Reader::verify`] found in a journal.
#[derive(Debug)]
#[non_exhaustive]
pub struct Report {
    /// Valid records.
    pub records: u64,
    /// Malformed complete lines.
    pub corrupt_lines: u64,
    /// The first [`Report::MAX_ERRORS`] malformed lines, as [`Error::Corrupt`] values in file
    /// order.
    pub errors: Vec<Error>,
    /// Bytes of complete lines (the length of the valid prefix).
    pub bytes: u64,
    /// Bytes after the last complete line: a torn tail, which the next writer cuts.
    pub torn_tail_bytes: u64,
    /// Set if those bytes are not a torn record, so a writer would refuse to cut them: the
    /// [`Error::Corrupt`] it would return (see [`Reader::check_tail`]).
    pub unrepairable_tail: Option<Error>,
}

impl Report {
    /// How many corrupt lines [`Report::errors`] keeps.
    pub const MAX_ERRORS: usize = 100;

    /// True if every complete line is a valid record and the end, if unterminated, is a torn
    /// record that the next writer will cut.
    pub fn is_clean(&self) -> bool {
        self.corrupt_lines == 0 && self.unrepairable_tail.is_none()
    }
}

/// A file opened for reading, and where its last complete line ended when its end was taken:
/// a [`Reader`] of it as it was then, whose buffer is allocated only when it is made. The
/// history opens every file first and reads them one by one: the live file's end is taken at
/// once (it still grows), a sealed segment's when it is read (it never changes, and taking an
/// end reads up to 64 KiB, which a history of many segments should not pay for each one).
#[derive(Debug)]
pub(crate) struct Opened {
    source: Source,
    /// `(len, end)` as [`snapshot`] took them; `None` until taken.
    taken: Option<(u64, u64)>,
}

impl Opened {
    /// Takes the end of `file` now (`path` is what errors name).
    pub(crate) fn now(path: &Path, file: File) -> Result<Opened> {
        let mut opened = Opened::later(file);
        opened.taken = Some(opened.take(path)?);
        Ok(opened)
    }

    /// Takes the end of `file` when its reader is made.
    pub(crate) fn later(file: File) -> Opened {
        Opened {
            source: Source::File(FileStorage { file }),
            taken: None,
        }
    }

    fn take(&self, path: &Path) -> Result<(u64, u64)> {
        let io = |op, e| Error::io(op, path, e);
        let meta = self.source.metadata().map_err(|e| io(Op::Stat, e))?;
        if !meta.is_file() {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
            return Err(io(Op::Open, e));
        }
        snapshot(&self.source, meta.len()).map_err(|e| io(Op::Read, e))
    }

    /// The same through a second descriptor of the same open file.
    pub(crate) fn try_clone(&self, path: &Path) -> Result<Opened> {
        let source = match &self.source {
            Source::File(file) => Source::File(FileStorage {
                file: file
                    .file
                    .try_clone()
                    .map_err(|e| Error::io(Op::Open, path, e))?,
            }),
            Source::Bytes(bytes) => Source::Bytes(bytes.clone()),
        };
        Ok(Opened {
            source,
            taken: self.taken,
        })
    }

    /// The reader, stopping where the file's last complete line ended when its end was taken.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file is not a regular file or its end cannot be read.
    pub(crate) fn reader(self, path: &Path) -> Result<Reader> {
        let (len, end) = match self.taken {
            Some(taken) => taken,
            None => self.take(path)?,
        };
        Ok(Reader::new(path.to_path_buf(), self.source, len, end))
    }
}

/// Where a reader's bytes come from.
#[derive(Debug)]
enum Source {
    File(FileStorage),
    /// A journal's bytes held in memory (see [`Reader::from_bytes`]).
    Bytes(Vec<u8>),
}

impl ReadAt for Source {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self {
            Source::File(file) => file.read_at(buf, offset),
            Source::Bytes(bytes) => bytes.as_slice().read_at(buf, offset),
        }
    }
}

impl Source {
    fn metadata(&self) -> io::Result<std::fs::Metadata> {
        match self {
            Source::File(file) => file.file.metadata(),
            Source::Bytes(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bytes in memory have no metadata",
            )),
        }
    }

    /// The length of the file now.
    fn len(&self) -> io::Result<u64> {
        match self {
            Source::File(file) => Ok(file.file.metadata()?.len()),
            Source::Bytes(bytes) => Ok(bytes.len() as u64),
        }
    }
}

/// How often a reader looks again when the file changed under it (see [`snapshot`]). A writer
/// shrinks a file only to take back a failed batch, a probe or a torn tail, which takes
/// microseconds; this bound is only there so that no file can keep a reader looping.
const MAX_LOOKS: u32 = 100;

/// The file's length and where its last complete line ends, as of one moment, starting from
/// the length `len` just read.
///
/// Readers take no lock, so a writer may shrink the file while we read its end (a rolled-back
/// batch, the probe of `check_writable`, a torn tail being cut): a short read means the file
/// shrank, so we read the length again and retry rather than fail. And an unterminated end
/// may be bytes in flight (a batch being written or taken back, a probe): if the length moved
/// while we looked, we look again rather than report them as a torn tail.
fn snapshot(file: &Source, mut len: u64) -> io::Result<(u64, u64)> {
    let mut looks = 0;
    loop {
        looks += 1;
        match last_line_end(file, len) {
            Ok(end) if end == len || looks >= MAX_LOOKS => return Ok((len, end)),
            Ok(end) => {
                let now = file.len()?;
                if now == len {
                    return Ok((len, end));
                }
                len = now;
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && looks < MAX_LOOKS => {
                len = file.len()?;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Reader {
    /// Opens the journal at `path` for reading.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be opened or read, or is not a regular file.
    pub fn open(path: impl AsRef<Path>) -> Result<Reader> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(Op::Open, path, e))?;
        Reader::from_file(path, file)
    }

    /// A reader of a file already open (`path` is what errors name): the history opens every
    /// file of a journal first, and reads each one later.
    pub(crate) fn from_file(path: &Path, file: File) -> Result<Reader> {
        Opened::later(file).reader(path)
    }

    /// A reader over a journal's bytes held in memory (say, the body of another replica's
    /// `/visits`), with exactly the rules of a file: complete lines only, a torn tail ignored
    /// and visible through [`torn_tail_bytes`](Reader::torn_tail_bytes) and
    /// [`check_tail`](Reader::check_tail), a malformed line reported as [`Error::Corrupt`]
    /// with its line number and byte offset.
    ///
    /// `name` plays the part of the path: errors and [`Reader::path`] name it, so make it
    /// say where the bytes came from (`"peer 10.0.0.2:8080"`).
    ///
    /// ```
    /// use visit_journal::Reader;
    ///
    /// # fn main() -> visit_journal::Result<()> {
    /// let body = b"2026-11-26T10:44:36.123+03:00 - 10.0.0.7\nnot a visit\n2026-11-26T10:4".to_vec();
    /// let mut reader = Reader::from_bytes("peer 10.0.0.2:8080", body);
    /// assert_eq!(reader.torn_tail_bytes(), 15); // never returned
    ///
    /// assert_eq!(reader.next().transpose()?.unwrap().ip.to_string(), "10.0.0.7");
    /// let err = reader.next().unwrap().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "peer 10.0.0.2:8080:2: bad record at byte 41: missing ' - ' between time and address"
    /// );
    /// assert!(reader.next().is_none());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// None here. Reading memory cannot fail either: of the errors the other methods
    /// document, a reader from bytes returns only [`Error::Corrupt`].
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Reader {
        let len = bytes.len() as u64;
        let end = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i as u64 + 1);
        Reader::new(name.into(), Source::Bytes(bytes), len, end)
    }

    fn new(path: PathBuf, file: Source, len: u64, end: u64) -> Reader {
        Reader {
            path,
            file,
            len,
            end,
            buf: vec![0; CHUNK],
            buf_start: 0,
            lo: 0,
            hi: 0,
            line: Some(1),
            failed: false,
        }
    }

    /// The path this reader reads (or the name given to [`Reader::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many bytes followed the last complete line when the reader was opened: a torn
    /// tail, which readers ignore and the next writer cuts (0 if the file ended with `\n`).
    ///
    /// Bytes a writer has in flight at that moment (a batch being written, the 4 KiB probe of
    /// [`Journal::check_writable`](crate::Journal::check_writable)) count too: a reader sees
    /// the file as it is.
    pub fn torn_tail_bytes(&self) -> u64 {
        self.len - self.end
    }

    /// Judges the unterminated end of the file (as it was when the reader was opened) the way
    /// a writer would, without writing: `None` if there is none or it is a torn record that
    /// the next writer will cut; otherwise the [`Error::Corrupt`] with which
    /// [`Journal::open`](crate::Journal::open) and appends would refuse to cut it (it is more
    /// than 4 KiB, or holds bytes no record has).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if reading fails.
    pub fn check_tail(&self) -> Result<Option<Error>> {
        let mut tail = vec![0; (self.len - self.end).min(repair::MAX_TORN + 1) as usize];
        let n = read_up_to(&self.file, &mut tail, self.end).map_err(|e| self.io(Op::Read, e))?;
        // Fewer bytes than we saw at open: the file shrank since (a writer cut or took back
        // its end). Judge what is left, as a writer now would.
        let len = if n < tail.len() {
            self.end + n as u64
        } else {
            self.len
        };
        tail.truncate(n);
        let Cut::Refuse { offset, reason } = repair::torn_tail(self.end, len, &tail) else {
            return Ok(None);
        };
        let line = match self.line {
            // The reader has read every line: its count is at hand.
            Some(line) if self.pos() == self.end => line,
            _ => count_newlines(&self.file, 0, offset).map_err(|e| self.io(Op::Read, e))? + 1,
        };
        Ok(Some(Error::Corrupt {
            path: self.path.clone(),
            line,
            offset,
            reason,
        }))
    }

    /// Moves the reader to the start of the last `n` complete lines, reading backwards from
    /// the end: the cost depends on `n`, not on the size of the file.
    ///
    /// Returns how many lines are left to read (fewer than `n` if the file is shorter).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if reading fails.
    pub fn tail(&mut self, n: u64) -> Result<u64> {
        let start = self.pos();
        let mut chunk = vec![0; CHUNK];
        let mut looks = 0;
        let (found, from) = 'look: loop {
            looks += 1;
            let mut found = 0; // newlines seen, counting the one that ends the last line
            let mut at = self.end;
            while at > start {
                let lo = at.saturating_sub(CHUNK as u64).max(start);
                let want = (at - lo) as usize;
                let got = read_up_to(&self.file, &mut chunk[..want], lo)
                    .map_err(|e| self.io(Op::Read, e))?;
                if got < want && looks < MAX_LOOKS {
                    // The file shrank below what we saw at open (a writer took back a batch we
                    // saw): stop at its last complete line now, and look again.
                    let now = self.file.len().map_err(|e| self.io(Op::Read, e))?;
                    let end = last_line_end(&self.file, now.min(self.end))
                        .map_err(|e| self.io(Op::Read, e))?;
                    self.end = end.max(start);
                    self.len = self.len.min(now).max(self.end);
                    continue 'look;
                }
                for i in (0..got).rev() {
                    if chunk[i] == b'\n' {
                        found += 1;
                        // `found > n`, not `found == n + 1`: `n` may be `u64::MAX`.
                        if found > n {
                            break 'look (n, lo + i as u64 + 1);
                        }
                    }
                }
                at = lo;
            }
            break (found, start);
        };
        if from != start {
            self.line = None;
        }
        self.buf_start = from;
        self.lo = 0;
        self.hi = 0;
        Ok(found.min(n))
    }

    /// Reads the next record into `visit`. Returns `Ok(false)` at the end.
    ///
    /// The same as [`Iterator::next`], in the style of `csv::Reader::read_record`.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a malformed line (the next call goes on after it);
    /// [`Error::Io`] if reading fails (the next call returns `Ok(false)`).
    pub fn read_visit(&mut self, visit: &mut Visit) -> Result<bool> {
        match self.next_record() {
            None => Ok(false),
            Some(Ok(v)) => {
                *visit = v;
                Ok(true)
            }
            Some(Err(e)) => Err(e),
        }
    }

    /// Reads the next record into `visit`, like [`read_visit`](Reader::read_visit), and its
    /// timestamp's text exactly as the line writes it into `time` (replacing what it held).
    /// Returns `Ok(false)` at the end.
    ///
    /// [`Visit::time`] prints a timestamp the way this crate writes it, which can differ from
    /// the line it was read from: the classic lab app's `2022-11-29T10:44:36+03:00` prints as
    /// `2022-11-29T10:44:36.000+03:00`, and `Z` as `+00:00`. An export that must show each
    /// record's time byte for byte as in the file (a CSV, say) reads it from here.
    ///
    /// ```
    /// use visit_journal::{Reader, Visit};
    ///
    /// # fn main() -> visit_journal::Result<()> {
    /// let body = b"2022-11-29T07:44:36Z - 172.17.0.1\n".to_vec();
    /// let mut reader = Reader::from_bytes("example", body);
    /// let (mut visit, mut time) = (Visit::now([0, 0, 0, 0].into()), String::new());
    /// assert!(reader.read_visit_with_time(&mut visit, &mut time)?);
    /// assert_eq!(time, "2022-11-29T07:44:36Z");
    /// assert_eq!(visit.time().to_string(), "2022-11-29T07:44:36.000+00:00");
    /// assert!(!reader.read_visit_with_time(&mut visit, &mut time)?);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`read_visit`](Reader::read_visit); `time` is then left as it was.
    pub fn read_visit_with_time(&mut self, visit: &mut Visit, time: &mut String) -> Result<bool> {
        match self.next_record_keeping(Some(time)) {
            None => Ok(false),
            Some(Ok(v)) => {
                *visit = v;
                Ok(true)
            }
            Some(Err(e)) => Err(e),
        }
    }

    /// Counts the complete lines from here to the end, in constant memory, without parsing.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if reading fails.
    pub fn count_lines(mut self) -> Result<u64> {
        let buffered = self.buf[self.lo..self.hi]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        let from = self.buf_start + self.hi as u64;
        let rest = count_newlines(&self.file, from, self.end).map_err(|e| self.io(Op::Read, e))?;
        self.lo = self.hi;
        Ok(buffered + rest)
    }

    /// Reads everything from here to the end and reports what it found.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("visits.txt");
    /// std::fs::write(&path, "2026-11-26T10:44:36.123+03:00 - 10.0.0.7\nnot a visit\n2026-11-26T10:4")?;
    /// let report = visit_journal::Reader::open(&path)?.verify()?;
    /// assert_eq!((report.records, report.corrupt_lines, report.torn_tail_bytes), (1, 1, 15));
    /// assert!(report.errors[0].to_string().ends_with(":2: bad record at byte 41: missing ' - ' between time and address"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if reading fails. Malformed lines are counted, not returned as errors.
    pub fn verify(mut self) -> Result<Report> {
        let mut report = Report {
            records: 0,
            corrupt_lines: 0,
            errors: Vec::new(),
            bytes: self.end,
            torn_tail_bytes: self.torn_tail_bytes(),
            unrepairable_tail: None,
        };
        while let Some(item) = self.next_record() {
            match item {
                Ok(_) => report.records += 1,
                Err(e @ Error::Corrupt { .. }) => {
                    report.corrupt_lines += 1;
                    if report.errors.len() < Report::MAX_ERRORS {
                        report.errors.push(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        report.unrepairable_tail = self.check_tail()?;
        Ok(report)
    }

    /// The remaining complete lines as bytes, exactly as they are in the file (corrupt lines
    /// included), for copying to a socket or another file in constant memory.
    ///
    /// ```
    /// use std::io::Read;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("visits.txt");
    /// std::fs::write(&path, "2026-11-26T10:44:36.123+03:00 - 10.0.0.7\n2026-11-26T10:4")?;
    /// let mut text = String::new();
    /// visit_journal::Reader::open(&path)?.into_text().read_to_string(&mut text)?;
    /// assert_eq!(text, "2026-11-26T10:44:36.123+03:00 - 10.0.0.7\n"); // no torn tail
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The bytes always end with a whole line: should the file shrink while they are read (an
    /// append rolled back), the text stops at the last `\n` it got.
    pub fn into_text(self) -> impl Read + Send + 'static {
        Text {
            file: self.file,
            pos: self.buf_start + self.hi as u64,
            end: self.end,
            buf: self.buf,
            // The reader's unread bytes may end in the middle of a line: hold them back.
            lo: self.lo,
            hi: self.lo,
            held_end: self.hi,
            done: false,
        }
    }

    fn pos(&self) -> u64 {
        self.buf_start + self.lo as u64
    }

    fn next_record(&mut self) -> Option<Result<Visit>> {
        self.next_record_keeping(None)
    }

    /// The next record, and its timestamp's text into `time` if asked.
    fn next_record_keeping(&mut self, time: Option<&mut String>) -> Option<Result<Visit>> {
        let (offset, parsed) = match self.next_line()? {
            Ok((offset, line)) => {
                let parsed = parse_record(line);
                if let (Ok(_), Some(time)) = (&parsed, time) {
                    time.clear();
                    time.push_str(written_time(line));
                }
                (offset, parsed)
            }
            Err(e) => return Some(Err(e)),
        };
        let this_line = self.line;
        self.line = this_line.map(|n| n + 1);
        let reason = match parsed {
            Ok(visit) => return Some(Ok(visit)),
            Err(reason) => reason,
        };
        // After `tail` the line number is unknown; an error is rare enough to pay for a count.
        let line = match this_line {
            Some(n) => n,
            None => match count_newlines(&self.file, 0, offset) {
                Ok(n) => n + 1,
                Err(e) => return Some(Err(self.fail(Op::Read, e))),
            },
        };
        self.line = Some(line + 1);
        Some(Err(Error::Corrupt {
            path: self.path.clone(),
            line,
            offset,
            reason,
        }))
    }

    /// The next complete line, without its `\n`, and its offset. A line longer than
    /// [`MAX_LINE`] is skipped without being buffered and returned as an empty slice marked by
    /// its length (`parse_record` reports it as too long).
    fn next_line(&mut self) -> Option<Result<(u64, &[u8])>> {
        if self.failed {
            return None;
        }
        let start = self.pos();
        if start >= self.end {
            return None;
        }
        loop {
            if let Some(i) = self.buf[self.lo..self.hi].iter().position(|&b| b == b'\n') {
                let line = self.lo..self.lo + i;
                self.lo += i + 1;
                return Some(Ok((start, &self.buf[line])));
            }
            if self.hi - self.lo > MAX_LINE {
                return Some(self.skip_long_line(start));
            }
            match self.refill() {
                Ok(true) => {}
                // The file shrank below what we saw at open: what is left is not a line, and
                // nothing past it will ever be read (so the snapshot ends here, also for
                // `into_text`).
                Ok(false) => {
                    self.end = self.pos();
                    self.hi = self.lo;
                    return None;
                }
                Err(e) => return Some(Err(self.fail(Op::Read, e))),
            }
        }
    }

    /// Skips a line too long to be a record, reading on to its `\n`.
    fn skip_long_line(&mut self, start: u64) -> Result<(u64, &'static [u8])> {
        loop {
            if let Some(i) = self.buf[self.lo..self.hi].iter().position(|&b| b == b'\n') {
                self.lo += i + 1;
                // Longer than MAX_LINE: `parse_record` calls it too long.
                return Ok((start, &LONG_LINE));
            }
            self.lo = self.hi;
            match self.refill() {
                Ok(true) => {}
                Ok(false) => {
                    self.end = self.pos();
                    return Ok((start, &LONG_LINE));
                }
                Err(e) => return Err(self.fail(Op::Read, e)),
            }
        }
    }

    /// Moves the unread bytes to the front and reads more, up to `end`. `Ok(false)` at EOF.
    fn refill(&mut self) -> io::Result<bool> {
        if self.lo > 0 {
            self.buf.copy_within(self.lo..self.hi, 0);
            self.buf_start += self.lo as u64;
            self.hi -= self.lo;
            self.lo = 0;
        }
        let at = self.buf_start + self.hi as u64;
        let want = (self.end.saturating_sub(at) as usize).min(self.buf.len() - self.hi);
        if want == 0 {
            return Ok(false);
        }
        let n = self
            .file
            .read_at(&mut self.buf[self.hi..self.hi + want], at)?;
        self.hi += n;
        Ok(n > 0)
    }

    fn fail(&mut self, op: Op, e: io::Error) -> Error {
        self.failed = true;
        self.io(op, e)
    }

    fn io(&self, op: Op, e: io::Error) -> Error {
        Error::io(op, &self.path, e)
    }
}

/// Stands for a line longer than [`MAX_LINE`]; only its length matters.
static LONG_LINE: [u8; MAX_LINE + 1] = [b'x'; MAX_LINE + 1];

impl Iterator for Reader {
    type Item = Result<Visit>;

    fn next(&mut self) -> Option<Result<Visit>> {
        self.next_record()
    }
}

impl std::iter::FusedIterator for Reader {}

/// The bytes of the complete lines from a position to the end; see [`Reader::into_text`].
struct Text {
    file: Source,
    /// The next file offset to read.
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    /// `buf[lo..hi]` is ready to hand out: whole lines (or a piece of an over-long one).
    lo: usize,
    hi: usize,
    /// `buf[hi..held_end]` is read but not yet known to be followed by a `\n`.
    held_end: usize,
    done: bool,
}

impl Read for Text {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.lo == self.hi && !self.done {
            self.fill()?;
        }
        let n = (self.hi - self.lo).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.lo..self.lo + n]);
        self.lo += n;
        Ok(n)
    }
}

impl Text {
    /// Reads a chunk after the held-back bytes and makes ready everything up to the last `\n`.
    fn fill(&mut self) -> io::Result<()> {
        let held = self.held_end - self.hi;
        self.buf.copy_within(self.hi..self.held_end, 0);
        // Never past the snapshot's end, whatever the file does meanwhile.
        let want = (self.end.saturating_sub(self.pos) as usize).min(self.buf.len() - held);
        let n = if want == 0 {
            0
        } else {
            self.file
                .read_at(&mut self.buf[held..held + want], self.pos)?
        };
        self.pos += n as u64;
        let filled = held + n;
        self.lo = 0;
        self.hi = match self.buf[..filled].iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            // A line longer than the buffer: only a damaged file has one, and it ends before
            // `end`, so hand it out in pieces.
            None if filled == self.buf.len() => filled,
            None => 0,
        };
        self.held_end = filled;
        if n == 0 && self.hi == 0 {
            // The end, or the file shrank under us: a partial line is never handed out.
            self.done = true;
            self.held_end = 0;
        }
        Ok(())
    }
}
