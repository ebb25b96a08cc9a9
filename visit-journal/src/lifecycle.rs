//! Rotation and retention: the steps, in the order that makes every crash harmless.
//!
//! Every function here runs under the journal's lock (the `flock` on the live file, which the
//! caller has checked is still the file at the path), so only one writer of any process works
//! on the history at a time. Readers take no lock; the order of the steps is what keeps them
//! right (see [`History`](crate::History)).
//!
//! **Rotation** (when an append would make the live file larger than the rotate size):
//!
//! 1. number the new segment: one above the highest segment on disk and the summary's "folded
//!    through" (which needs only the summary's first line: a damaged summary pauses
//!    retention, not rotation, unless even its first line is lost);
//! 2. sync the live file (a torn tail has just been cut: a sealed segment ends in a whole line);
//! 3. rename it to `<path>.<N>`;
//! 4. create the fresh, empty live file, with the old one's mode, owner and group;
//! 5. fsync the directory.
//!
//! A crash after 3 leaves no live file: the next writer creates it. Before 3 nothing happened.
//!
//! **Retirement** of the oldest segments (retention):
//!
//! 1. write the new summary (their counts added, "folded through" their highest number, and
//!    any of them that is not a regular file that can be read counted under `# damaged`) to
//!    `<path>.summary.tmp` and fsync it;
//! 2. rename it over `<path>.summary`, fsync the directory;
//! 3. delete the segments (and rename the unusable ones to `<name>.damaged`: never deleted),
//!    fsync the directory.
//!
//! A crash before 2 leaves a stale temporary file, which the next writer deletes. After 2, the
//! segments at or below "folded through" still on disk are counted already: readers skip them
//! and the next writer deletes them (or sets them aside). So a visit is always in exactly one
//! place: a segment, the live file, or the summary's counts.
//!
//! Retention needs the whole summary: one that does not parse, or whose days do not add up to
//! its total, is never rewritten (that would lose or invent counts) nor reset. Retention then
//! pauses, fails with the summary's error (counted, kept for the owner to log, retried), and
//! resumes by itself once the summary is repaired.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, FixedOffset};

use crate::cache::CountCache;
use crate::counts::Tally;
use crate::dir::{self, Dir, FileKey};
use crate::error::{Error, Op, Result};
use crate::reader::{Opened, Reader};
use crate::segment::{self, Retention, Summary};

/// A file with a segment's name on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub(crate) n: u64,
    pub(crate) path: PathBuf,
    /// Its size; 0 for a file that is not regular.
    pub(crate) size: u64,
    /// False if it is not a regular file (a directory, a FIFO, …): it is never opened.
    pub(crate) regular: bool,
}

/// Counters of the lifecycle, for [`Stats`](crate::Stats), kept across reopens.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) rotations: AtomicU64,
    pub(crate) failed_rotations: AtomicU64,
    pub(crate) retired_segments: AtomicU64,
    pub(crate) failed_retentions: AtomicU64,
    /// Files with a segment's name that retention set aside as `<name>.damaged`.
    pub(crate) set_aside: AtomicU64,
    /// The sealed segments' total size and number, as last seen under the lock.
    pub(crate) sealed_bytes: AtomicU64,
    pub(crate) sealed_segments: AtomicU64,
    /// The last failure of a rotation or retention that did not fail an append, until the
    /// owner of the journal takes it to log it (the library never prints).
    pub(crate) last_error: Mutex<Option<Error>>,
    /// Set while `last_error` holds one, so that looking costs no lock.
    pub(crate) has_error: AtomicBool,
    /// What each sealed segment holds, by identity: shared by retention and by
    /// [`Journal::counts`](crate::Journal::counts), kept across reopens.
    pub(crate) cache: CountCache,
}

impl Counters {
    /// Takes the kept error, if any.
    pub(crate) fn take_error(&self) -> Option<Error> {
        if !self.has_error.swap(false, Relaxed) {
            return None;
        }
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// What `<path>.summary` holds, as far as it can be used.
#[derive(Debug)]
pub(crate) enum SummaryState {
    /// It parses and adds up (or there is none yet: the empty summary).
    Good(Summary),
    /// It cannot be used: its counts are left out, retention pauses. Its first line may still
    /// say "folded through", which is all that numbering needs.
    Damaged {
        folded_through: Option<u64>,
        /// What is wrong, for people.
        reason: String,
    },
}

/// Reads and parses the summary at `path`: the empty summary if there is none, and
/// [`SummaryState::Damaged`] if it does not parse or add up, or cannot be read for good (not a
/// regular file, no permission).
///
/// # Errors
///
/// [`Error::Io`] for a failure of the moment (an I/O error), which a retry may clear.
pub(crate) fn load_summary(dir: &dyn Dir, path: &Path) -> Result<SummaryState> {
    let bytes = match dir.read(path) {
        Ok(None) => return Ok(SummaryState::Good(Summary::default())),
        Ok(Some(bytes)) => bytes,
        Err(e) if dir::is_unusable(&e) => {
            return Ok(SummaryState::Damaged {
                folded_through: None,
                reason: e.to_string(),
            });
        }
        Err(e) => return Err(Error::io(Op::Read, path, e)),
    };
    Ok(match Summary::parse(&bytes) {
        Ok(summary) => SummaryState::Good(summary),
        Err(bad) => SummaryState::Damaged {
            folded_through: bad.folded_through,
            reason: format!("line {} at byte {}: {}", bad.line, bad.offset, bad.reason),
        },
    })
}

impl SummaryState {
    /// The summary, or the error that says it is damaged (naming its path).
    fn usable(self, path: &Path) -> Result<Summary> {
        match self {
            SummaryState::Good(summary) => Ok(summary),
            SummaryState::Damaged { reason, .. } => Err(damaged_summary(path, reason)),
        }
    }
}

fn damaged_summary(path: &Path, reason: String) -> Error {
    Error::io(
        Op::Read,
        path,
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("damaged summary ({reason}): retention pauses until it is repaired"),
        ),
    )
}

/// The history of one journal path: where its files are and what to do with them.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// The live file.
    pub(crate) path: PathBuf,
    /// Its directory, where the segments and the summary are.
    parent: PathBuf,
    /// Its file name, the prefix of every segment's.
    name: OsString,
    pub(crate) dir: Arc<dyn Dir>,
    /// 0: never rotate.
    pub(crate) rotate_size: u64,
    pub(crate) retention: Retention,
    /// Whether to fsync (off only with `Options::sync(false)`).
    sync: bool,
    /// Shared with the journal handle (and kept across its reopens), with the counts of
    /// each sealed segment: sealed segments never change, so each is read once however often
    /// retention asks its age.
    pub(crate) counters: Arc<Counters>,
}

impl Lifecycle {
    pub(crate) fn new(
        path: &Path,
        dir: Arc<dyn Dir>,
        rotate_size: u64,
        retention: Retention,
        sync: bool,
        counters: Arc<Counters>,
    ) -> Lifecycle {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Lifecycle {
            path: path.to_path_buf(),
            parent,
            name: path.file_name().map(OsString::from).unwrap_or_default(),
            dir,
            rotate_size,
            retention,
            sync,
            counters,
        }
    }

    /// True if the journal has a history beside its live file: a sealed segment or a
    /// summary. (An I/O error counts as no: opening the live file will say what is wrong.)
    pub(crate) fn history_exists(&self) -> bool {
        let summary = segment::summary_path(&self.path);
        matches!(self.dir.kind(&summary), Ok(Some(_)))
            || self.scan().is_ok_and(|sealed| !sealed.is_empty())
    }

    /// Keeps a failure that did not fail an append, for the journal's owner to log.
    pub(crate) fn keep_error(&self, e: Error) {
        *self
            .counters
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e);
        self.counters.has_error.store(true, Relaxed);
    }

    /// True if appending `batch` bytes to a live file of `len` bytes (whole lines) calls for a
    /// rotation first: it would grow past the rotate size, and it holds at least one line (so
    /// a batch larger than the rotate size goes whole into a fresh file, and no segment is
    /// ever empty).
    pub(crate) fn should_rotate(&self, len: u64, batch: u64) -> bool {
        self.rotate_size > 0 && len > 0 && len.saturating_add(batch) > self.rotate_size
    }

    /// The files with a segment's name on disk, oldest first (including any at or below the
    /// summary's "folded through" that a crash left behind, and any that is not a regular
    /// file). Never opens them.
    pub(crate) fn scan(&self) -> Result<Vec<Sealed>> {
        let names = self
            .dir
            .list(&self.parent)
            .map_err(|e| Error::io(Op::ListDirectory, &self.parent, e))?;
        let mut sealed = Vec::new();
        for name in names {
            let Some(n) = segment::segment_number(&self.name, &name) else {
                continue;
            };
            let path = self.parent.join(&name);
            // Gone since the listing: another writer retired it; it is in the summary.
            if let Some((size, regular)) = self
                .dir
                .kind(&path)
                .map_err(|e| Error::io(Op::Stat, &path, e))?
            {
                sealed.push(Sealed {
                    n,
                    path,
                    size: if regular { size } else { 0 },
                    regular,
                });
            }
        }
        sealed.sort_by_key(|s| s.n);
        Ok(sealed)
    }

    /// The summary; the empty one if there is none yet.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the summary's path if it is damaged (does not parse, does not add
    /// up, cannot be read): it is never silently reset, since that would lose every count in
    /// it.
    pub(crate) fn summary(&self) -> Result<Summary> {
        let path = segment::summary_path(&self.path);
        load_summary(&*self.dir, &path)?.usable(&path)
    }

    /// The number the next segment gets: one above both the highest on disk and the summary's
    /// "folded through", so that no number is ever reused. Needs only the summary's first
    /// line.
    fn next_number(&self) -> Result<u64> {
        let highest = self.scan()?.last().map_or(0, |s| s.n);
        let path = segment::summary_path(&self.path);
        let folded_through = match load_summary(&*self.dir, &path)? {
            SummaryState::Good(summary) => summary.folded_through,
            SummaryState::Damaged {
                folded_through: Some(n),
                ..
            } => n,
            SummaryState::Damaged {
                folded_through: None,
                reason,
            } => {
                // Guessing could reuse a number the lost line covered: rotation pauses too.
                return Err(Error::io(
                    Op::Rename,
                    &self.path,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "cannot number the next segment: the first line of {} is damaged \
                             ({reason}); rotation pauses until it is repaired",
                            path.display()
                        ),
                    ),
                ));
            }
        };
        // Only a damaged summary (or a segment named by hand) gets here: wrapping to 0 would
        // seal the live file under a name no reader counts.
        highest.max(folded_through).checked_add(1).ok_or_else(|| {
            Error::io(
                Op::Rename,
                &self.path,
                io::Error::other("no segment number is left above the highest in use"),
            )
        })
    }

    /// Seals the live file (locked, ending in a whole line; `sync_live` fsyncs it) as the next
    /// segment and creates a fresh live file. Returns the new segment's number.
    ///
    /// The caller must then reopen the path: the file it holds is sealed and never written
    /// again.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] for the step that failed. `Ok` or not, the caller must check where the
    /// live file is: if the rename happened, the old file is sealed.
    pub(crate) fn rotate(&self, sync_live: impl FnOnce() -> Result<()>) -> Result<u64> {
        // Numbered first: if no number can be had, nothing else is done (not even the fsync,
        // which would be wasted on every batch while rotation is paused).
        let n = self.next_number()?;
        // Whatever another process wrote and has not synced yet, and our own cut of a torn
        // tail: a sealed segment must survive a power loss whole, since no repair ever touches
        // it again. (The writer's own fsync: only `locked.rs` syncs the live file.)
        sync_live()?;
        let sealed = segment::segment_path(&self.path, n);
        self.dir
            .rename(&self.path, &sealed)
            .map_err(|e| Error::io(Op::Rename, &self.path, e))?;
        self.counters.rotations.fetch_add(1, Relaxed);
        self.create_live_like(Some(&sealed))?;
        Ok(n)
    }

    /// Creates the live file if it is missing (a rotation was interrupted after its rename)
    /// and makes its name durable. It takes the mode and owner of the newest sealed segment,
    /// the live file it replaces.
    pub(crate) fn create_live(&self) -> Result<()> {
        let newest = self
            .scan()
            .ok()
            .and_then(|sealed| sealed.into_iter().rev().find(|s| s.regular))
            .map(|s| s.path);
        self.create_live_like(newest.as_deref())
    }

    fn create_live_like(&self, like: Option<&Path>) -> Result<()> {
        self.dir
            .create(&self.path, like)
            .map_err(|e| Error::io(Op::Create, &self.path, e))?;
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<()> {
        if !self.sync {
            return Ok(());
        }
        self.dir
            .sync(&self.parent)
            .map_err(|e| Error::io(Op::SyncDirectory, &self.parent, e))
    }

    /// Retention, under the lock: finishes an interrupted retirement (deletes the segments the
    /// summary already counts and a stale temporary summary), then retires the oldest sealed
    /// segments while the retention limits say so. Returns how many it retired.
    ///
    /// `now` is the time the age limit is measured from.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] for a step that failed, or naming the summary if it is damaged. Nothing
    /// is lost either way; the next run starts over.
    pub(crate) fn retain(&self, now: DateTime<FixedOffset>) -> Result<u64> {
        let mut summary = self.summary()?;
        let mut sealed = self.scan()?;
        let mut removed = false;
        let stale = segment::summary_temp_path(&self.path);
        removed |= self
            .dir
            .remove(&stale)
            .map_err(|e| Error::io(Op::Remove, &stale, e))?;
        let counted = sealed.partition_point(|s| s.n <= summary.folded_through);
        for s in sealed.drain(..counted) {
            // Counted already (a crash came between the summary and the delete).
            let readable = s.regular && self.dir.readable(&s.path);
            removed |= self.retire_file(&s, readable)?;
        }
        if removed {
            self.sync_dir()?;
        }
        self.note_sealed(&sealed);

        // A file that cannot be read is set aside when retention reaches it: its age and
        // size say nothing, so it never holds back the segments after it.
        let mut tallies: Vec<Option<Arc<Tally>>> = vec![None; sealed.len()];
        let sizes: Vec<u64> = sealed.iter().map(|s| s.size).collect();
        let count = segment::retire_count(&sizes, self.retention, now, |i| {
            let tally = self.tally(&sealed[i])?;
            let newest = tally.as_ref().and_then(|t| t.newest);
            tallies[i] = tally;
            Ok::<_, Error>(newest)
        })?;
        if count == 0 {
            return Ok(0);
        }
        let mut unusable = vec![false; count];
        for (i, s) in sealed[..count].iter().enumerate() {
            let tally = match tallies[i].take() {
                Some(tally) => Some(tally),
                None => self.tally(s)?,
            };
            match tally {
                Some(tally) => summary.fold(s.n, &tally),
                None => {
                    summary.set_aside(s.n);
                    unusable[i] = true;
                }
            }
        }
        self.dir
            .write_synced(&stale, summary.to_text().as_bytes())
            .map_err(|e| Error::io(Op::Write, &stale, e))?;
        let summary_path = segment::summary_path(&self.path);
        self.dir
            .rename(&stale, &summary_path)
            .map_err(|e| Error::io(Op::Rename, &stale, e))?;
        self.sync_dir()?;
        // From here on the segments are counted: deleting them only frees their space.
        for (s, unusable) in sealed[..count].iter().zip(unusable) {
            // Whether it could be read was settled when it was counted, just above.
            self.retire_file(s, !unusable)?;
            if unusable {
                self.counters.set_aside.fetch_add(1, Relaxed);
            } else {
                self.counters.retired_segments.fetch_add(1, Relaxed);
            }
        }
        self.note_sealed(&sealed[count..]);
        self.sync_dir()?;
        Ok(count as u64)
    }

    /// Removes a file the summary counts: deletes a segment (`readable`: a regular file this
    /// process can read), or renames a file that is not one that can be read out of the
    /// numbering, to `<name>.damaged` (never deleting what may not be a journal's). Returns
    /// whether anything changed.
    fn retire_file(&self, s: &Sealed, readable: bool) -> Result<bool> {
        if readable {
            let key = self.key(&s.path);
            let removed = self
                .dir
                .remove(&s.path)
                .map_err(|e| Error::io(Op::Remove, &s.path, e))?;
            if let Some(key) = key {
                self.counters.cache.forget(&key);
            }
            return Ok(removed);
        }
        let Some(aside) = self.free_aside_name(&s.path) else {
            return Err(Error::io(
                Op::Rename,
                &s.path,
                io::Error::other("no free '<name>.damaged' name to set it aside"),
            ));
        };
        match self.dir.rename(&s.path, &aside) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(Op::Rename, &s.path, e)),
        }
    }

    /// `<name>.damaged`, or `<name>.damaged.2`, … if that is taken.
    fn free_aside_name(&self, path: &Path) -> Option<PathBuf> {
        (1..1000)
            .map(|k| segment::set_aside_path(path, k))
            .find(|p| matches!(self.dir.kind(p), Ok(None)))
    }

    /// The identity and size of the file at `path`, if it is there.
    fn key(&self, path: &Path) -> Option<FileKey> {
        std::fs::metadata(path).ok().map(|m| FileKey::of(&m))
    }

    /// Records the sealed segments' total size and number for the stats.
    pub(crate) fn note_sealed(&self, sealed: &[Sealed]) {
        let bytes = sealed.iter().map(|s| s.size).sum();
        self.counters.sealed_bytes.store(bytes, Relaxed);
        self.counters
            .sealed_segments
            .store(sealed.iter().filter(|s| s.regular).count() as u64, Relaxed);
    }

    /// What a sealed segment holds, read once (the counts are kept under its identity).
    /// `None` if it is not a regular file that can be read: it is to be set aside.
    fn tally(&self, s: &Sealed) -> Result<Option<Arc<Tally>>> {
        if !s.regular {
            return Ok(None);
        }
        let (file, meta) = match dir::open_regular(&s.path) {
            Ok(opened) => opened,
            Err(e) if dir::is_unusable(&e) => return Ok(None),
            Err(e) => return Err(Error::io(Op::Open, &s.path, e)),
        };
        let key = FileKey::of(&meta);
        if let Some(tally) = self.counters.cache.get(&key) {
            return Ok(Some(tally));
        }
        let reader = Opened::later(file).reader(&s.path)?;
        let tally = Arc::new(tally_file(reader)?.kept());
        self.counters.cache.insert(s.n, key, Arc::clone(&tally));
        Ok(Some(tally))
    }
}

/// Counts a file's visits per day and per address, its corrupt lines and its newest visit,
/// in constant memory (the addresses in bounded memory: see `counts.rs`).
///
/// # Errors
///
/// [`Error::Io`] if reading fails.
pub(crate) fn tally_file(reader: Reader) -> Result<Tally> {
    let mut tally = Tally::default();
    for item in reader {
        match item {
            Ok(visit) => tally.visit(visit.at, visit.ip),
            Err(Error::Corrupt { .. }) => tally.corrupt += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    //! The steps one by one, with faults injected through the `Dir` seam. The whole journal is
    //! tested in `tests/it/rotation.rs`, and killed at each step in `writer.rs`'s tests.

    use super::*;
    use crate::dir::faulty::{Fault, FaultyDir, Plan, Step};
    use crate::history::History;
    use crate::storage::{FileStorage, Storage as _};
    use std::collections::BTreeMap;
    use std::fs::{self, OpenOptions};
    use std::io::Write as _;

    struct Fixture {
        _tmp: tempfile::TempDir,
        path: PathBuf,
        plan: Arc<Mutex<Plan>>,
        life: Lifecycle,
        /// Every line appended so far, oldest first.
        written: Vec<String>,
    }

    impl Fixture {
        fn new(retention: Retention) -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("visits.txt");
            fs::write(&path, "").unwrap();
            let dir = FaultyDir::default();
            let plan = Arc::clone(&dir.plan);
            let life = Lifecycle::new(&path, Arc::new(dir), 4096, retention, true, Arc::default());
            Fixture {
                _tmp: tmp,
                path,
                plan,
                life,
                written: Vec::new(),
            }
        }

        /// Appends `n` visits on day `day` (1–28 of November 2026) to the live file.
        fn append(&mut self, day: u32, n: usize) {
            let mut file = OpenOptions::new().append(true).open(&self.path).unwrap();
            for _ in 0..n {
                let line = format!(
                    "2026-11-{day:02}T10:00:00.{:03}+03:00 - 10.0.0.1\n",
                    self.written.len() % 1000
                );
                file.write_all(line.as_bytes()).unwrap();
                self.written.push(line);
            }
        }

        fn storage(&self) -> FileStorage {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&self.path)
                .unwrap();
            FileStorage { file }
        }

        fn rotate(&self) -> Result<u64> {
            let storage = self.storage();
            self.life.rotate(|| {
                storage
                    .sync_data()
                    .map_err(|e| Error::io(Op::Fsync, &self.path, e))
            })
        }

        fn fail(&self, step: Step, skip: usize) {
            self.plan.lock().unwrap().fault = Some((Fault::Fail, step, skip));
        }

        fn now() -> DateTime<FixedOffset> {
            "2026-11-28T12:00:00Z".parse().unwrap()
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(self._tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        }

        /// Every visit written is in exactly one place: the history's files hold the newest
        /// ones, in order, and the summary counts exactly the older ones, per day.
        fn assert_each_visit_once(&self) {
            let history = History::open(&self.path).unwrap();
            let retired = history.retired_visits() as usize;
            let mut text = String::new();
            history.into_text().read_to_string(&mut text).unwrap();
            assert_eq!(text, self.written[retired..].concat(), "{:?}", self.names());
            let mut want: BTreeMap<chrono::NaiveDate, u64> = BTreeMap::new();
            for line in &self.written {
                let day = line[..10].parse().unwrap();
                *want.entry(day).or_default() += 1;
            }
            let days = History::open(&self.path).unwrap().days().unwrap();
            assert_eq!(days, want, "{:?}", self.names());
        }
    }

    use std::io::Read as _;

    #[test]
    fn rotation_seals_the_live_file_and_never_reuses_a_number() {
        let mut f = Fixture::new(Retention { size: 1, days: 0 });
        f.append(20, 3);
        assert_eq!(f.rotate().unwrap(), 1);
        assert_eq!(f.names(), ["visits.txt", "visits.txt.000001"]);
        assert_eq!(fs::read(&f.path).unwrap(), b"");
        f.append(21, 2);
        assert_eq!(f.rotate().unwrap(), 2);
        f.assert_each_visit_once();
        // Retire both: the next segment is still 3, not 1 again.
        assert_eq!(f.life.retain(Fixture::now()).unwrap(), 2);
        assert_eq!(f.names(), ["visits.txt", "visits.txt.summary"]);
        assert_eq!(
            fs::read_to_string(segment::summary_path(&f.path)).unwrap(),
            "# folded through 2, 5 visits\n2026-11-20 3\n2026-11-21 2\n"
        );
        f.append(22, 1);
        assert_eq!(f.rotate().unwrap(), 3);
        f.assert_each_visit_once();
    }

    #[test]
    fn retention_keeps_the_newest_within_size_and_age() {
        let mut f = Fixture::new(Retention {
            size: 3 * 41,
            days: 5,
        });
        for day in [10, 20, 25, 26] {
            f.append(day, 1);
            f.rotate().unwrap();
        }
        // Four segments of 41 bytes: size retires the first; the second is 8 days old.
        assert_eq!(f.life.retain(Fixture::now()).unwrap(), 2);
        assert_eq!(
            f.names(),
            [
                "visits.txt",
                "visits.txt.000003",
                "visits.txt.000004",
                "visits.txt.summary"
            ]
        );
        f.assert_each_visit_once();
        assert_eq!(f.life.retain(Fixture::now()).unwrap(), 0);
        assert_eq!(f.life.counters.retired_segments.load(Relaxed), 2);
        assert_eq!(f.life.counters.sealed_segments.load(Relaxed), 2);
        assert_eq!(f.life.counters.sealed_bytes.load(Relaxed), 2 * 41);
    }

    #[test]
    fn corrupt_lines_are_counted_and_do_not_stop_retention() {
        let mut f = Fixture::new(Retention { size: 1, days: 0 });
        f.append(20, 2);
        fs::OpenOptions::new()
            .append(true)
            .open(&f.path)
            .unwrap()
            .write_all(b"not a visit\n")
            .unwrap();
        f.rotate().unwrap();
        assert_eq!(f.life.retain(Fixture::now()).unwrap(), 1);
        let summary = f.life.summary().unwrap();
        assert_eq!((summary.visits(), summary.corrupt), (2, 1));
        assert_eq!(History::open(&f.path).unwrap().retired_corrupt_lines(), 1);
    }

    #[test]
    fn a_damaged_summary_pauses_retention_never_reset_and_numbering_goes_on() {
        let mut f = Fixture::new(Retention { size: 1, days: 0 });
        f.append(20, 1);
        f.rotate().unwrap();
        let summary = segment::summary_path(&f.path);
        fs::write(&summary, "# folded through 4\n2026-11-20 x\n").unwrap();
        let err = f.life.retain(Fixture::now()).unwrap_err();
        let text = format!("{err}: {}", err.io_error().unwrap());
        assert!(text.contains("visits.txt.summary"), "{text}");
        assert!(text.contains("line 2 at byte 19"), "{text}");
        assert!(text.contains("retention pauses"), "{text}");
        // Readers leave its counts out and say so.
        let history = History::open(&f.path).unwrap();
        assert_eq!(history.retired_visits(), 0);
        assert_eq!(history.damaged().len(), 1);
        assert_eq!(history.damaged()[0].file_name(), "visits.txt.summary");
        assert!(history.damaged()[0].reason().contains("YYYY-MM-DD"));
        assert_eq!(
            fs::read_to_string(&summary).unwrap(),
            "# folded through 4\n2026-11-20 x\n",
            "left as it was"
        );
        // Numbering needs only the first line: above both segment 1 and "folded through 4".
        f.append(21, 1);
        assert_eq!(f.rotate().unwrap(), 5);
        // Without even that, no number is guessed.
        fs::write(&summary, "# folded thro").unwrap();
        f.append(22, 1);
        let err = f.rotate().unwrap_err();
        assert!(
            err.io_error()
                .unwrap()
                .to_string()
                .contains("rotation pauses"),
            "{err}"
        );
        assert!(f.path.exists(), "the live file stays");
    }

    /// Fails `step` (after `skip` earlier ones of its kind) in a rotation, then checks that
    /// nothing is lost and that the next writer's work finishes the job.
    fn rotation_step_fails(step: Step, skip: usize) {
        let mut f = Fixture::new(Retention::default());
        f.append(20, 3);
        f.fail(step, skip);
        assert!(f.rotate().is_err());
        f.assert_each_visit_once();
        // The next writer: the live file is there (created if the rename happened), and the
        // next rotation takes the next number.
        f.life.create_live().unwrap();
        f.append(21, 1);
        f.assert_each_visit_once();
        let n = f.rotate().unwrap();
        assert!(n == 1 || n == 2, "{n}");
        f.assert_each_visit_once();
    }

    #[test]
    fn rotation_survives_a_failed_rename() {
        rotation_step_fails(Step::Rename, 0);
    }

    #[test]
    fn rotation_survives_a_failed_create() {
        rotation_step_fails(Step::Create, 0);
    }

    #[test]
    fn rotation_survives_a_failed_directory_fsync() {
        rotation_step_fails(Step::SyncDir, 0);
    }

    /// Fails `step` (after `skip` earlier ones of its kind) while retiring two segments, then
    /// checks that every visit is in exactly one place, and that the next run finishes.
    fn retirement_step_fails(step: Step, skip: usize) {
        let mut f = Fixture::new(Retention { size: 1, days: 0 });
        for day in [20, 21] {
            f.append(day, 2);
            f.rotate().unwrap();
        }
        f.append(22, 1);
        f.fail(step, skip);
        assert!(f.life.retain(Fixture::now()).is_err());
        f.assert_each_visit_once();
        f.life.retain(Fixture::now()).unwrap();
        f.assert_each_visit_once();
        assert_eq!(f.names(), ["visits.txt", "visits.txt.summary"]);
        assert_eq!(
            fs::read_to_string(segment::summary_path(&f.path)).unwrap(),
            "# folded through 2, 4 visits\n2026-11-20 2\n2026-11-21 2\n"
        );
    }

    #[test]
    fn retirement_survives_a_failed_summary_write() {
        retirement_step_fails(Step::WriteSummary, 0);
    }

    #[test]
    fn retirement_survives_a_failed_summary_rename() {
        retirement_step_fails(Step::RenameSummary, 0);
    }

    #[test]
    fn retirement_survives_a_failed_fsync_after_the_summary() {
        retirement_step_fails(Step::SyncDir, 0);
    }

    #[test]
    fn retirement_survives_a_failed_delete() {
        retirement_step_fails(Step::Remove, 0);
    }

    #[test]
    fn retirement_survives_a_failed_second_delete() {
        retirement_step_fails(Step::Remove, 1);
    }

    #[test]
    fn retirement_survives_a_failed_cleanup_of_a_stale_summary() {
        retirement_step_fails(Step::RemoveTemp, 0);
    }

    #[test]
    fn retirement_survives_a_failed_last_directory_fsync() {
        retirement_step_fails(Step::SyncDir, 1);
    }

    #[test]
    fn leftovers_of_an_interrupted_retirement_are_cleaned_up() {
        let mut f = Fixture::new(Retention::default());
        for day in [20, 21, 22] {
            f.append(day, 1);
            f.rotate().unwrap();
        }
        // A crash after the summary's rename: segment 1 is counted but still on disk; and a
        // temporary summary from an even earlier crash.
        let summary = segment::summary_path(&f.path);
        fs::write(&summary, "# folded through 1\n2026-11-20 1\n").unwrap();
        fs::write(segment::summary_temp_path(&f.path), "# folded thr").unwrap();
        f.assert_each_visit_once();
        // Retention off still finishes the job.
        assert_eq!(f.life.retain(Fixture::now()).unwrap(), 0);
        assert_eq!(
            f.names(),
            [
                "visits.txt",
                "visits.txt.000002",
                "visits.txt.000003",
                "visits.txt.summary"
            ]
        );
        f.assert_each_visit_once();
    }
}

#[cfg(test)]
mod journal_tests {
    //! A whole journal killed (`abort`, as with `kill -9`) or failed at each step of rotation
    //! and retention, through the `Dir` seam: after each, every acknowledged visit is in
    //! exactly one place, and the next writer finishes or repairs the step.
    //!
    //! The test binary re-executes itself: `crashing_child` is a no-op unless
    //! `VISIT_JOURNAL_LIFECYCLE_CHILD` names its work.

    use super::*;
    use crate::dir::faulty::{Fault, FaultyDir, Step};
    use crate::history::History;
    use crate::options::Options;
    use crate::storage::faulty::Faults;
    use crate::visit::Visit;
    use crate::writer::Journal;
    use crate::writer::fixture::Fixture;
    use std::fs;
    use std::io::{BufRead, BufReader};
    use std::net::{IpAddr, Ipv6Addr};
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::{Command, Stdio};

    const CHILD_ENV: &str = "VISIT_JOURNAL_LIFECYCLE_CHILD";
    const ROTATE: u64 = 4096;
    const RETAIN: u64 = 2 * 4096;
    const MAX_APPENDS: u32 = 3000;

    fn options() -> Options {
        Options::new().rotate_size(ROTATE).retain_size(RETAIN)
    }

    /// Visit number `seq`: now, from an address that is its number.
    fn visit(seq: u32) -> Visit {
        let ip = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (seq >> 16) as u16, seq as u16);
        Visit::now(IpAddr::V6(ip))
    }

    fn seq(v: &Visit) -> u32 {
        match v.ip {
            IpAddr::V6(ip) => {
                let s = ip.segments();
                (u32::from(s[6]) << 16) | u32::from(s[7])
            }
            IpAddr::V4(_) => panic!("not ours: {v}"),
        }
    }

    fn fault_name(f: Fault) -> &'static str {
        match f {
            Fault::Fail => "fail",
            Fault::CrashBefore => "before",
            Fault::CrashAfter => "after",
        }
    }

    fn step_of(name: &str) -> Step {
        match name {
            "Rename" => Step::Rename,
            "Create" => Step::Create,
            "WriteSummary" => Step::WriteSummary,
            "RenameSummary" => Step::RenameSummary,
            "RemoveTemp" => Step::RemoveTemp,
            "Remove" => Step::Remove,
            "SyncDir" => Step::SyncDir,
            other => panic!("no step {other}"),
        }
    }

    /// Child entry point: `<path>;<before|after>;<Step>;<skip>`. Appends visits one by one,
    /// printing `acked N` after each, until the planned crash kills it.
    #[test]
    fn crashing_child() {
        let Ok(spec) = std::env::var(CHILD_ENV) else {
            return;
        };
        let parts: Vec<&str> = spec.split(';').collect();
        let fault = match parts[1] {
            "before" => Fault::CrashBefore,
            _ => Fault::CrashAfter,
        };
        let dir = FaultyDir::default();
        dir.plan.lock().unwrap().fault =
            Some((fault, step_of(parts[2]), parts[3].parse().unwrap()));
        let journal = Journal::with_dir(Path::new(parts[0]), options(), Arc::new(dir)).unwrap();
        for n in 0..MAX_APPENDS {
            journal.append(&visit(n)).unwrap();
            println!("acked {n}");
        }
        println!("never crashed");
    }

    /// Every visit numbered below `acked` is in exactly one place: the history holds a run of
    /// them up to the newest (maybe one more, written but not acknowledged), and the summary
    /// counts exactly the ones before that run.
    fn assert_each_acked_once(path: &Path, acked: u32, context: &str) -> u32 {
        let history = History::open(path).unwrap();
        let retired = history.retired_visits();
        let seqs: Vec<u32> = history.map(|v| seq(&v.unwrap())).collect();
        let first = seqs.first().copied().unwrap_or(retired as u32);
        assert_eq!(
            u64::from(first),
            retired,
            "{context}: the summary counts the others"
        );
        let want: Vec<u32> = (first..first + seqs.len() as u32).collect();
        assert_eq!(seqs, want, "{context}: in order, once each");
        let end = first + seqs.len() as u32;
        assert!(
            end >= acked && end <= acked + 1,
            "{context}: {end} of {acked} acked"
        );
        let days = History::open(path).unwrap().days().unwrap();
        assert_eq!(days.values().sum::<u64>(), u64::from(end), "{context}");
        end
    }

    /// The directory holds nothing half done: no temporary summary, no segment the summary
    /// counts, a live file.
    fn assert_tidy(path: &Path, context: &str) {
        assert!(path.exists(), "{context}: no live file");
        assert!(
            !segment::summary_temp_path(path).exists(),
            "{context}: stale temporary"
        );
        let dir = Arc::new(crate::dir::RealDir);
        let life = Lifecycle::new(
            path,
            dir,
            ROTATE,
            Retention::default(),
            true,
            Arc::default(),
        );
        let folded = life.summary().unwrap().folded_through;
        for s in life.scan().unwrap() {
            assert!(
                s.n > folded,
                "{context}: counted segment {} still on disk",
                s.n
            );
            assert!(fs::read(&s.path).unwrap().ends_with(b"\n"), "{context}");
        }
    }

    fn crash_at(fault: Fault, step: Step, skip: usize) {
        let context = format!("{} {step:?} #{skip}", fault_name(fault));
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("visits.txt");
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args([
                "lifecycle::journal_tests::crashing_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(
                CHILD_ENV,
                format!("{};{};{step:?};{skip}", path.display(), fault_name(fault)),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // A child that hangs instead of crashing fails the test within a minute.
        let pid = child.id().to_string();
        let (done, watching) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if watching
                .recv_timeout(std::time::Duration::from_secs(60))
                .is_err()
            {
                let _ = Command::new("kill").args(["-9", &pid]).status();
            }
        });
        let mut acked = 0;
        let mut crashed_late = false;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.parse::<u32>().unwrap() + 1;
            }
            crashed_late |= line == "never crashed";
        }
        let status = child.wait().unwrap();
        let _ = done.send(());
        watchdog.join().unwrap();
        assert!(!crashed_late, "{context}: the step was never reached");
        assert_eq!(
            status.signal(),
            Some(6),
            "{context}: killed at the step ({status})"
        );
        assert!(acked > 0, "{context}");

        assert_each_acked_once(&path, acked, &context);
        // The next writer finishes or repairs the step, and carries on.
        let journal = options().open(&path).unwrap();
        assert_eq!(journal.stats().failed_retentions, 0, "{context}");
        assert_tidy(&path, &context);
        let end = assert_each_acked_once(&path, acked, &context);
        for n in end..end + 200 {
            journal.append(&visit(n)).unwrap();
        }
        assert_each_acked_once(&path, end + 200, &context);
        assert_tidy(&path, &context);
    }

    // Rotation: killed before and after each of its steps.
    #[test]
    fn killed_before_the_rename() {
        crash_at(Fault::CrashBefore, Step::Rename, 0);
    }
    #[test]
    fn killed_after_the_rename() {
        crash_at(Fault::CrashAfter, Step::Rename, 2);
    }
    #[test]
    fn killed_before_the_new_file() {
        crash_at(Fault::CrashBefore, Step::Create, 1);
    }
    #[test]
    fn killed_after_the_new_file() {
        crash_at(Fault::CrashAfter, Step::Create, 0);
    }
    #[test]
    fn killed_before_the_rotations_directory_fsync() {
        crash_at(Fault::CrashBefore, Step::SyncDir, 0);
    }

    // Retention (the directory fsyncs after the first rotations belong to retention runs
    // once there are more than two segments).
    #[test]
    fn killed_before_the_summary() {
        crash_at(Fault::CrashBefore, Step::WriteSummary, 0);
    }
    #[test]
    fn killed_after_the_temporary_summary() {
        crash_at(Fault::CrashAfter, Step::WriteSummary, 1);
    }
    #[test]
    fn killed_after_the_summary() {
        crash_at(Fault::CrashAfter, Step::RenameSummary, 0);
    }
    #[test]
    fn killed_before_the_delete() {
        crash_at(Fault::CrashBefore, Step::Remove, 0);
    }
    #[test]
    fn killed_after_the_delete() {
        crash_at(Fault::CrashAfter, Step::Remove, 1);
    }
    #[test]
    fn killed_before_a_later_directory_fsync() {
        for skip in 3..7 {
            crash_at(Fault::CrashBefore, Step::SyncDir, skip);
        }
    }

    /// Fails `step` once (after `skip` of its kind) in a journal that rotates and retires
    /// often: no append fails, the failure is counted and kept for the owner to log, and the
    /// history stays exact.
    fn fail_at(step: Step, skip: usize) {
        let context = format!("fail {step:?} #{skip}");
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("visits.txt");
        let dir = FaultyDir::default();
        let plan = Arc::clone(&dir.plan);
        plan.lock().unwrap().fault = Some((Fault::Fail, step, skip));
        let journal = Journal::with_dir(&path, options(), Arc::new(dir)).unwrap();
        let mut n = 0;
        while plan.lock().unwrap().fault.is_some() {
            assert!(n < MAX_APPENDS, "{context}: the step was never reached");
            journal.append(&visit(n)).unwrap();
            n += 1;
        }
        let err = journal.take_lifecycle_error().expect("the failure is kept");
        assert!(err.to_string().starts_with("cannot "), "{context}: {err}");
        assert!(journal.take_lifecycle_error().is_none(), "taken once");
        let stats = journal.stats();
        assert_eq!(
            stats.failed_rotations + stats.failed_retentions,
            1,
            "{context}: {stats:?}"
        );
        assert_each_acked_once(&path, n, &context);
        // Retried: by the next rotation at the latest.
        for m in n..n + 300 {
            journal.append(&visit(m)).unwrap();
        }
        assert_each_acked_once(&path, n + 300, &context);
        assert_tidy(&path, &context);
        let stats = journal.stats();
        assert!(stats.sealed_bytes <= RETAIN, "{context}: {stats:?}");
    }

    #[test]
    fn a_failed_rename_is_retried_by_the_next_batch() {
        fail_at(Step::Rename, 1);
    }
    #[test]
    fn a_failed_creation_of_the_new_file_is_finished_at_once() {
        fail_at(Step::Create, 1);
    }
    #[test]
    fn a_failed_directory_fsync_is_finished_at_once_or_retried() {
        for skip in 0..6 {
            fail_at(Step::SyncDir, skip);
        }
    }
    #[test]
    fn a_failed_summary_write_is_retried() {
        fail_at(Step::WriteSummary, 0);
    }
    #[test]
    fn a_failed_summary_rename_is_retried() {
        fail_at(Step::RenameSummary, 0);
    }
    #[test]
    fn a_failed_delete_is_retried() {
        fail_at(Step::Remove, 0);
    }
    #[test]
    fn a_failed_cleanup_is_retried() {
        fail_at(Step::RemoveTemp, 2);
    }

    #[test]
    fn a_failed_fsync_before_sealing_poisons_and_seals_nothing() {
        let f = Fixture::with_options(options());
        let mut n = 0;
        let line = visit(0).to_string().len() as u64 + 1;
        while fs::metadata(&f.path).unwrap().len() + line <= ROTATE {
            f.journal.append(&visit(n)).unwrap();
            n += 1;
        }
        f.faults().fail_syncs = 1;
        let err = f.journal.append(&visit(n)).unwrap_err();
        assert!(err.is_poisoned(), "{err}");
        assert!(
            !segment::segment_path(&f.path, 1).exists(),
            "nothing sealed"
        );
        assert_each_acked_once(&f.path, n, "failed fsync");
        f.journal.reopen().unwrap();
        f.journal.append(&visit(n)).unwrap();
        assert!(segment::segment_path(&f.path, 1).exists());
        assert_each_acked_once(&f.path, n + 1, "failed fsync");
    }
    #[test]
    fn a_batch_left_unsettled_in_a_file_rotated_away_is_never_cut_from_the_sealed_segment() {
        let f = Fixture::new();
        for n in 0..10 {
            f.journal.append(&visit(n)).unwrap();
        }
        // The batch's fsync fails, and so does every attempt to settle it for now: it stays
        // in the file, noted as unsettled, and the handle is poisoned.
        {
            let mut faults = f.faults();
            faults.fail_syncs = 100;
            faults.fail_truncates = 100;
            faults.fail_rewrites = 100;
        }
        assert!(f.journal.append(&visit(10)).unwrap_err().is_poisoned());
        assert!(f.journal.reopen().is_err(), "cannot settle yet");
        // Meanwhile another writer rotates the file away: the unsettled batch is sealed in
        // segment 1, as whole lines.
        let other = options().rotate_size(100).open(&f.path).unwrap();
        other.append(&visit(11)).unwrap();
        let sealed = segment::segment_path(&f.path, 1);
        let before = fs::read(&sealed).unwrap();
        let last: Visit = String::from_utf8(before.clone())
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            seq(&last),
            10,
            "the unsettled batch is the segment's last line"
        );
        // Now the faults clear and the first handle settles: the sealed segment is made
        // durable in place, never cut.
        *f.faults() = Faults::default();
        f.journal.reopen().unwrap();
        assert_eq!(
            fs::read(&sealed).unwrap(),
            before,
            "a sealed segment is final"
        );
        f.journal.append(&visit(12)).unwrap();
        // Everything once, in order: the unacknowledged 10 happens to be on disk, whole.
        assert_each_acked_once(&f.path, 13, "settled");
    }

    /// A directory where another writer gets to every other fresh live file first: a rotation
    /// finds it there already, holding `lines` of that writer's.
    #[derive(Debug)]
    struct Overtaken {
        lines: Vec<u8>,
        creates: std::sync::atomic::AtomicU32,
    }

    impl Dir for Overtaken {
        fn list(&self, dir: &Path) -> std::io::Result<Vec<OsString>> {
            crate::dir::RealDir.list(dir)
        }
        fn id(&self, path: &Path) -> std::io::Result<Option<crate::dir::FileId>> {
            crate::dir::RealDir.id(path)
        }
        fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
            crate::dir::RealDir.read(path)
        }
        fn write_synced(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
            crate::dir::RealDir.write_synced(path, bytes)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            crate::dir::RealDir.rename(from, to)
        }
        fn kind(&self, path: &Path) -> std::io::Result<Option<(u64, bool)>> {
            crate::dir::RealDir.kind(path)
        }
        fn readable(&self, path: &Path) -> bool {
            crate::dir::RealDir.readable(path)
        }
        fn create(&self, path: &Path, like: Option<&Path>) -> std::io::Result<bool> {
            if self.creates.fetch_add(1, Relaxed) % 2 == 1 {
                return crate::dir::RealDir.create(path, like);
            }
            if crate::dir::RealDir.create(path, like)? {
                fs::write(path, &self.lines)?;
            }
            Ok(false)
        }
        fn remove(&self, path: &Path) -> std::io::Result<bool> {
            crate::dir::RealDir.remove(path)
        }
        fn sync(&self, dir: &Path) -> std::io::Result<()> {
            crate::dir::RealDir.sync(dir)
        }
    }

    #[test]
    fn a_fresh_live_file_another_writer_filled_first_is_rotated_again_if_the_batch_needs_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("visits.txt");
        let theirs: Vec<u8> = (0..60u32)
            .flat_map(|n| format!("{}\n", visit(100_000 + n)).into_bytes())
            .collect();
        assert!(theirs.len() < ROTATE as usize);
        let dir = Overtaken {
            lines: theirs,
            creates: Default::default(),
        };
        let journal =
            Journal::with_dir(&path, Options::new().rotate_size(ROTATE), Arc::new(dir)).unwrap();
        let batch: Vec<Visit> = (0..40).map(visit).collect();
        for _ in 0..10 {
            journal.append_batch(&batch).unwrap();
            // Never larger than the rotate size: the batch did not fit beside the other
            // writer's lines, so it went into a fresh file of its own.
            let live = fs::metadata(&path).unwrap().len();
            assert!(live <= ROTATE, "live file of {live} bytes");
        }
    }
}
