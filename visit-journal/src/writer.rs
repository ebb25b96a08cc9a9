//! [`Journal`], the public face of the append path, and [`Stats`].
//!
//! The work is done below: [`crate::commit`] batches concurrent appends and lends the file
//! to one thread at a time, [`crate::locked`] does the I/O under the `flock`. This module
//! opens, encodes, and answers questions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::commit::Group;
use crate::counts::{Counts, Damaged};
use crate::error::{Error, Result};
use crate::history::History;
use crate::locked::{BATCH_RECORDS_BOUNDS, Counters, Io};
use crate::options::Options;
use crate::reader::Reader;
#[cfg(test)]
use crate::storage::Storage;
use crate::visit::{self, Visit};

impl Options {
    /// Opens (or creates) the journal at `path` with these options.
    ///
    /// See [`Journal::open`].
    ///
    /// # Errors
    ///
    /// As [`Journal::open`].
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Journal> {
        Journal::open_with(path.as_ref(), self.clone())
    }
}

/// Counters of what a [`Journal`] handle has done since it was opened.
///
/// Cheap to take (a handful of relaxed atomic loads); meant for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Records written and acknowledged.
    pub records: u64,
    /// Batches written (one `write` each).
    pub batches: u64,
    /// Successful `fdatasync` calls.
    pub syncs: u64,
    /// Bytes written and acknowledged.
    pub bytes: u64,
    /// The largest number of records one batch has carried.
    pub largest_batch: u64,
    /// How many records each committed batch carried, as histogram buckets:
    /// `batch_records[i]` counts the batches of more than
    /// [`BATCH_RECORDS_BOUNDS`](Stats::BATCH_RECORDS_BOUNDS)`[i - 1]` and at most
    /// `BATCH_RECORDS_BOUNDS[i]` records, and the last element those of more than 1024.
    /// The buckets are not cumulative: together they count [`Stats::batches`], and the
    /// records they carried add up to [`Stats::records`]. (Read without a lock, the fields
    /// can disagree by the batch being committed at that moment.)
    ///
    /// A lone appender makes batches of one; concurrent appenders share a batch, and so an
    /// `fdatasync` (group commit), so this shows how much the sharing saves.
    ///
    /// ```
    /// use visit_journal::{Journal, Stats, Visit};
    ///
    /// # fn main() -> visit_journal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let journal = Journal::open(dir.path().join("visits.txt"))?;
    /// let visit = Visit::now("10.0.0.7".parse().unwrap());
    /// journal.append(&visit)?;
    /// journal.append_batch(&[visit; 5])?;
    /// let stats = journal.stats();
    /// assert_eq!(Stats::BATCH_RECORDS_BOUNDS[..4], [1, 2, 4, 8]);
    /// // One batch of 1 record, one of 5 (in the bucket of at most 8).
    /// assert_eq!(stats.batch_records[..5], [1, 0, 0, 1, 0]);
    /// # Ok(())
    /// # }
    /// ```
    pub batch_records: [u64; Stats::BATCH_RECORDS_BOUNDS.len() + 1],
    /// Bytes cut from the end of the file by repairs (torn tails and power-loss debris) and
    /// by the cut of a batch whose fsync failed.
    pub repaired_bytes: u64,
    /// Appends (batches) that failed and were rolled back, or failed to sync.
    pub failed_batches: u64,
    /// Failed `fdatasync` calls (each poisons the handle).
    pub failed_syncs: u64,
    /// The live file's length after this handle's last batch (or rotation, or open).
    pub live_bytes: u64,
    /// Sealed segments on disk and their total size, as last seen under the lock (after a
    /// rotation or retention, or at open).
    pub sealed_segments: u64,
    /// See [`Stats::sealed_segments`].
    pub sealed_bytes: u64,
    /// Rotations this handle made (see [`Options::rotate_size`]).
    pub rotations: u64,
    /// Rotations with a step that failed: before the rename, the batch went into the live
    /// file and the next batch tried again; after it, the step was finished at once.
    pub failed_rotations: u64,
    /// Segments this handle retired (counted into the summary, then deleted).
    pub retired_segments: u64,
    /// Retention runs that failed (and were retried later); appends did not fail.
    pub failed_retentions: u64,
    /// Files with a segment's name that were not regular files that could be read, which this
    /// handle's retention set aside as `<name>.damaged` (see [`Damaged`]).
    pub set_aside_files: u64,
}

impl Stats {
    /// The upper bounds (inclusive) of the buckets of [`Stats::batch_records`], in records:
    /// the powers of two from 1 to 1024.
    pub const BATCH_RECORDS_BOUNDS: [u64; 11] = BATCH_RECORDS_BOUNDS;
}

/// A visits journal open for appending.
///
/// `Journal` is `Send + Sync` and every method takes `&self`: share one handle between threads
/// (in an `Arc`, or by reference with scoped threads) and concurrent appends are committed
/// together, with one `write` and one `fdatasync` per batch.
///
/// See the [crate documentation](crate) for the guarantees, the file format and crash
/// recovery.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    options: Options,
    /// The appenders' coordination, and the open file it lends to one thread at a time.
    group: Group,
    /// Shared with the file's [`Io`], which counts syncs and repairs.
    counters: Arc<Counters>,
}

impl Journal {
    /// Opens the journal at `path` for appending, creating it (and its parent directories) if
    /// needed, with the default, durable [`Options`].
    ///
    /// On open, under the lock, the end of the file is repaired: power-loss debris (NUL bytes)
    /// in the last 1 MiB and a torn last line are cut; [`Stats::repaired_bytes`] tells how many
    /// bytes. No lock is held once `open` returns.
    ///
    /// ```
    /// use visit_journal::{Journal, Visit};
    ///
    /// # fn main() -> visit_journal::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("data/visits.txt");
    /// let journal = Journal::open(&path)?;
    /// journal.append(&Visit::now("10.0.0.7".parse().unwrap()))?;
    /// assert_eq!(journal.count()?, 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Durability
    ///
    /// When `open` creates the file or a directory, it fsyncs the parent directory, so the
    /// file's name survives a crash as well as its contents.
    ///
    /// # Errors
    ///
    /// - [`Error::Io`] if a directory cannot be created, the path is not a regular file, or the
    ///   file cannot be opened, locked, read or truncated.
    /// - [`Error::Corrupt`] if the file ends in an unterminated line that does not look like a
    ///   torn record (more than 4 KiB, or bytes no record contains): it is probably not a
    ///   journal, and the repair refuses to cut it.
    /// - [`Error::Locked`] if a lock timeout is set and passes.
    pub fn open(path: impl AsRef<Path>) -> Result<Journal> {
        Journal::open_with(path.as_ref(), Options::new())
    }

    fn open_with(path: &Path, options: Options) -> Result<Journal> {
        let counters = Arc::new(Counters::default());
        let io = Io::open(path, &options, Arc::clone(&counters))?;
        Ok(Journal::with_io(path, options, io, counters))
    }

    /// A journal whose file operations go through `storage` (tests inject faults here).
    #[cfg(test)]
    pub(crate) fn with_storage(
        path: &Path,
        options: Options,
        storage: Arc<dyn Storage>,
    ) -> Result<Journal> {
        let counters = Arc::new(Counters::default());
        let io = Io::with_storage(path, &options, storage, Arc::clone(&counters))?;
        Ok(Journal::with_io(path, options, io, counters))
    }

    /// A journal whose rotation and retention go through `dir` (tests fail or crash a step
    /// there).
    #[cfg(test)]
    pub(crate) fn with_dir(
        path: &Path,
        options: Options,
        dir: Arc<dyn crate::dir::Dir>,
    ) -> Result<Journal> {
        let counters = Arc::new(Counters::default());
        let io = Io::open_in(dir, path, &options, Arc::clone(&counters))?;
        Ok(Journal::with_io(path, options, io, counters))
    }

    fn with_io(path: &Path, options: Options, io: Io, counters: Arc<Counters>) -> Journal {
        Journal {
            path: path.to_path_buf(),
            group: Group::new(path.to_path_buf(), io, options.sync, Arc::clone(&counters)),
            options,
            counters,
        }
    }

    /// The path the journal was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one visit.
    ///
    /// Returns once the record is on stable storage. Concurrent calls from other threads are
    /// written and synced together with it.
    ///
    /// # Durability
    ///
    /// `Ok` means the record and everything before it in the file went through a successful
    /// `fdatasync` (unless [`Options::sync`] is off). `Err` means it was not acknowledged: a
    /// failed write has been rolled back to the last whole line, so no part of the record is
    /// left in the file. If the fsync itself failed ([`Error::is_poisoned`]), the batch was
    /// cut off the file before the error was returned (or, if another process had appended
    /// after it, written again and synced, so it stays, whole); the handle refuses appends
    /// until [`Journal::reopen`]. See the crate docs, "Durability".
    ///
    /// # The live file
    ///
    /// The record goes to the file at the journal's path *now*: under the lock the handle
    /// checks that its open file is still that one (device and inode) and, if another writer
    /// rotated it away (or a program moved it), opens the path again, creating the file if it
    /// is missing. With [`Options::rotate_size`], the batch may first seal the live file as the
    /// next segment, and then runs retention (whose failures never fail the append; see
    /// [`Options::retain_size`]).
    ///
    /// # Errors
    ///
    /// - [`Error::Unrepresentable`] if the visit cannot be written (see [`Visit::check`]);
    ///   nothing is written.
    /// - [`Error::Io`] if locking, writing or syncing fails. Running out of space
    ///   ([`Error::is_out_of_space`]) does not poison the handle: appends succeed again once
    ///   there is room.
    /// - [`Error::Poisoned`] after an earlier failed fsync.
    /// - [`Error::Corrupt`] if the file now ends in something that is not a torn record
    ///   (another program wrote it); nothing is cut or written.
    /// - [`Error::Locked`] if a lock timeout is set and passes.
    pub fn append(&self, visit: &Visit) -> Result<()> {
        self.append_batch(std::slice::from_ref(visit))
    }

    /// Appends several visits at once, in order, as one write.
    ///
    /// # Durability
    ///
    /// All or nothing: on `Ok` every record is on stable storage; on `Err` none of them is
    /// left in the file (with the same caveat as [`Journal::append`] for a failed fsync).
    /// An empty slice returns `Ok` without touching the file.
    ///
    /// # Errors
    ///
    /// As [`Journal::append`]; a single unrepresentable visit fails the whole batch before
    /// anything is written.
    pub fn append_batch(&self, visits: &[Visit]) -> Result<()> {
        if visits.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(visits.len() * 48);
        for v in visits {
            v.check()?;
            visit::encode(v, &mut bytes);
        }
        self.group.commit(&bytes, visits.len() as u64)
    }

    /// Replaces the file handle with a fresh one, repairing the tail again, and clears the
    /// poisoned state.
    ///
    /// Call it after an append failed with [`Error::is_poisoned`]: the new handle starts with
    /// a clean slate (no pending fsync error), and the repair runs again. (A file moved away
    /// or rotated needs no reopen: every append follows the path.) Appends wait while it runs.
    ///
    /// # Durability
    ///
    /// A fresh descriptor does not report the old one's writeback error, so the old handle
    /// first makes sure that no batch of its whose fsync failed is left unsynced in the file
    /// (normally the failed append already cut it; see the crate docs, "Durability"). Until
    /// that succeeds, `reopen` fails with [`Op::Settle`](crate::Op::Settle) and the handle
    /// stays poisoned, so nothing is acknowledged after bytes that may never reach the disk.
    /// Reopen a poisoned handle rather than dropping it: only this handle knows where its
    /// failed batch is.
    ///
    /// # Errors
    ///
    /// As [`Journal::open`]; [`Error::Io`] with [`Op::Settle`](crate::Op::Settle) if a
    /// failed batch cannot yet be cut off or synced again. On error the old handle stays,
    /// still poisoned if it was (and
    /// poisoned if the error [`is_poisoned`](Error::is_poisoned), as every error that says so
    /// poisons the handle it came from).
    pub fn reopen(&self) -> Result<()> {
        self.group.exclusive(|io, poisoned| {
            if *poisoned {
                // A handle is poisoned by a failed unlock among other things; a lock still held
                // by the old file would block the new one's repair forever.
                io.release_stale_lock();
            }
            // Nothing may be acknowledged after a batch whose fsync failed until it is cut off
            // or proven durable. The old handle knows where it is; a fresh one could not.
            io.settle()?;
            *io = Io::open(&self.path, &self.options, Arc::clone(&self.counters))?;
            *poisoned = false;
            Ok(())
        })
    }

    /// Checks that an append could be written now, without leaving anything in the file.
    ///
    /// Under the lock, it writes 4 KiB at the end and truncates them away. Use it to tell when
    /// a full disk or a size limit has cleared (a readiness probe, say) without recording a
    /// visit. It does not fsync; if the process dies between the write and the truncate, the
    /// next writer cuts the 4 KiB as a torn tail.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] if the handle is poisoned (call [`Journal::reopen`]); [`Error::Io`]
    /// if the probe write fails (e.g. [`Error::is_out_of_space`]) or cannot be cut again
    /// ([`Op::Truncate`](crate::Op::Truncate): the probe is left as a torn tail, which the next append cuts; nothing
    /// is poisoned); as [`Journal::append`] otherwise. If the lock cannot be released
    /// ([`Op::Unlock`](crate::Op::Unlock)), the handle is poisoned, as after an append.
    pub fn check_writable(&self) -> Result<()> {
        self.group.exclusive(|io, poisoned| {
            if *poisoned {
                return Err(self.poisoned());
            }
            io.probe()
        })
    }

    /// True if the handle refuses appends until [`Journal::reopen`]: an operation failed with
    /// an error whose [`Error::is_poisoned`] is true (a failed fsync, a failed write that
    /// could not be rolled back, a lock that could not be released).
    pub fn is_poisoned(&self) -> bool {
        self.group.is_poisoned()
    }

    /// What this handle has done since it was opened.
    pub fn stats(&self) -> Stats {
        let c = &*self.counters;
        let life = &*c.life;
        Stats {
            live_bytes: c.live_bytes.load(Relaxed),
            sealed_segments: life.sealed_segments.load(Relaxed),
            sealed_bytes: life.sealed_bytes.load(Relaxed),
            rotations: life.rotations.load(Relaxed),
            failed_rotations: life.failed_rotations.load(Relaxed),
            retired_segments: life.retired_segments.load(Relaxed),
            failed_retentions: life.failed_retentions.load(Relaxed),
            set_aside_files: life.set_aside.load(Relaxed),
            records: c.records.load(Relaxed),
            batches: c.batches.load(Relaxed),
            syncs: c.syncs.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            largest_batch: c.largest_batch.load(Relaxed),
            batch_records: c.batch_records.each_ref().map(|n| n.load(Relaxed)),
            repaired_bytes: c.repaired_bytes.load(Relaxed),
            failed_batches: c.failed_batches.load(Relaxed),
            failed_syncs: c.failed_syncs.load(Relaxed),
        }
    }

    /// The last failure of a rotation or retention that did not fail an append (see
    /// [`Options::retain_size`]), taken so that it is reported once: call it after appends
    /// (it costs one atomic load when there is none) and log what it returns.
    ///
    /// Such failures are counted in [`Stats::failed_rotations`] and
    /// [`Stats::failed_retentions`] and retried; nothing is lost by them.
    pub fn take_lifecycle_error(&self) -> Option<Error> {
        self.counters.life.take_error()
    }

    /// A [`History`] over every file of the journal (sealed segments, then the live file), as
    /// of now.
    ///
    /// # Errors
    ///
    /// As [`History::open`].
    pub fn history(&self) -> Result<History> {
        History::open(&self.path)
    }

    /// Counts every visit the journal ever recorded, as its history stands now: per day, per
    /// address, with the summary's counts of the retired segments, and the files that could
    /// not be counted (see [`Counts`]).
    ///
    /// What each sealed segment holds is counted once and kept, under the file's identity
    /// (device, inode and size, never its number alone), together with their sum: a second
    /// call reads only the live file and the segments sealed since. Retention uses the same
    /// counts. Calls from many threads at once each get a consistent count of the history as
    /// they opened it.
    ///
    /// # Errors
    ///
    /// As [`History::open`], or [`Error::Io`] if reading fails. A damaged file is not an
    /// error: it is left out and listed in [`Counts::damaged`].
    pub fn counts(&self) -> Result<Counts> {
        self.history()?
            .counts_with(&self.counters.life.cache, || {})
    }

    /// As [`Journal::counts`], running `between` once every file is counted and before they
    /// are summed (the race tests force an interleaving there).
    #[cfg(test)]
    pub(crate) fn counts_between(&self, between: impl FnOnce()) -> Result<Counts> {
        self.history()?
            .counts_with(&self.counters.life.cache, between)
    }

    /// The files of the journal's history that are damaged or were set aside (see
    /// [`Damaged`]), sorted by path, as they are now: what [`History::damaged`] lists, without
    /// reading the history (each file with a segment's name is opened, without blocking, and
    /// closed; the summary is read and checked), for a metric, say.
    ///
    /// # Errors
    ///
    /// As [`History::open`].
    pub fn damaged_files(&self) -> Result<Vec<Damaged>> {
        Ok(self.history()?.damaged().to_vec())
    }

    /// A [`Reader`] over the live file's complete lines, as of now. With rotation on, the
    /// older visits are in sealed segments: see [`Journal::history`].
    ///
    /// # Errors
    ///
    /// As [`Reader::open`].
    pub fn reader(&self) -> Result<Reader> {
        Reader::open(&self.path)
    }

    /// The last `n` visits, oldest first, reading backwards from the end of the live file
    /// (with rotation on, [`History::tail`] reads across segments).
    ///
    /// # Errors
    ///
    /// As [`Reader::tail`]; [`Error::Corrupt`] for the first malformed line among them.
    pub fn tail(&self, n: u64) -> Result<Vec<Visit>> {
        let mut reader = self.reader()?;
        reader.tail(n)?;
        reader.collect()
    }

    /// The number of complete lines (records, and any corrupt lines) in the live file (with
    /// rotation on, [`History::count_lines`] counts every file).
    ///
    /// Counts newlines without parsing, in constant memory.
    ///
    /// # Errors
    ///
    /// As [`Reader::open`], or [`Error::Io`] if reading fails.
    pub fn count(&self) -> Result<u64> {
        self.reader()?.count_lines()
    }

    fn poisoned(&self) -> Error {
        Error::Poisoned {
            path: self.path.clone(),
        }
    }
}

/// A journal in a fresh temporary directory whose file operations go through
/// fault-injecting storage: for this module's tests, and for `lifecycle.rs`'s, which fail an
/// fsync or a settle around a rotation the same way.
#[cfg(test)]
pub(crate) mod fixture {
    use super::{Journal, Options};
    use crate::storage::FileStorage;
    use crate::storage::faulty::{Faults, FaultyStorage};
    use std::fs::{self, OpenOptions};
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex, MutexGuard};

    pub(crate) struct Fixture {
        _dir: tempfile::TempDir,
        pub(crate) path: PathBuf,
        faults: Arc<Mutex<Faults>>,
        pub(crate) journal: Journal,
    }

    impl Fixture {
        /// With the default options.
        pub(crate) fn new() -> Fixture {
            Fixture::with_options(Options::new())
        }

        pub(crate) fn with_options(options: Options) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("visits.txt");
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .unwrap();
            let faults = Arc::new(Mutex::new(Faults::default()));
            let storage = Arc::new(FaultyStorage {
                inner: FileStorage { file },
                faults: Arc::clone(&faults),
            });
            let journal = Journal::with_storage(&path, options, storage).unwrap();
            Fixture {
                _dir: dir,
                path,
                faults,
                journal,
            }
        }

        /// The faults to inject from now on, and the log of storage calls so far.
        pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
            self.faults.lock().unwrap()
        }

        pub(crate) fn contents(&self) -> String {
            fs::read_to_string(&self.path).unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    //! Faults injected through the same `Storage` seam production uses.

    use super::fixture::Fixture;
    use super::*;
    use crate::error::Op;
    use crate::locked::PROBE;
    use crate::storage::faulty::{Faults, Gate};
    use std::fs::OpenOptions;
    use std::io;
    use std::time::{Duration, Instant};

    const ENOSPC: i32 = 28;

    fn visit(n: u8) -> Visit {
        format!("2026-11-26T10:44:36.123+03:00 - 10.0.0.{n}")
            .parse()
            .unwrap()
    }

    fn lines(visits: &[u8]) -> String {
        visits.iter().map(|&n| format!("{}\n", visit(n))).collect()
    }

    #[test]
    fn writes_under_the_lock_and_syncs_after_unlocking() {
        let f = Fixture::new();
        f.faults().log.clear();
        f.journal.append(&visit(1)).unwrap();
        assert_eq!(f.faults().log, ["lock", "write", "unlock", "fsync"]);
        assert_eq!(f.contents(), lines(&[1]));
    }

    #[test]
    fn out_of_space_rolls_back_and_recovers_without_reopen() {
        let f = Fixture::new();
        f.journal.append_batch(&[visit(1), visit(2)]).unwrap();
        // Room for half a record: the write is short, then the disk is full.
        f.faults().space_left = Some((20, ENOSPC));
        let err = f.journal.append(&visit(3)).unwrap_err();
        assert!(err.is_out_of_space(), "{err}");
        assert!(!err.is_poisoned());
        assert_eq!(
            f.contents(),
            lines(&[1, 2]),
            "the partial record is rolled back"
        );
        assert!(!f.journal.is_poisoned());
        assert!(f.journal.check_writable().unwrap_err().is_out_of_space());
        assert_eq!(
            f.contents(),
            lines(&[1, 2]),
            "the probe leaves nothing behind"
        );

        f.faults().space_left = None;
        f.journal.check_writable().unwrap();
        f.journal.append(&visit(4)).unwrap();
        assert_eq!(f.contents(), lines(&[1, 2, 4]));
        let stats = f.journal.stats();
        assert_eq!((stats.records, stats.failed_batches), (3, 1));
        // A failed batch is no committed batch: one of two records, one of one.
        assert_eq!(stats.batch_records[..3], [1, 1, 0]);
    }

    #[test]
    fn a_batch_is_all_or_nothing() {
        let f = Fixture::new();
        f.journal.append(&visit(1)).unwrap();
        // Room for two and a half of five records.
        f.faults().space_left = Some((100, ENOSPC));
        let batch: Vec<Visit> = (2..7).map(visit).collect();
        assert!(
            f.journal
                .append_batch(&batch)
                .unwrap_err()
                .is_out_of_space()
        );
        assert_eq!(f.contents(), lines(&[1]));
    }

    #[test]
    fn short_writes_are_continued() {
        let f = Fixture::new();
        f.faults().short_write = Some(7);
        f.journal.append_batch(&[visit(1), visit(2)]).unwrap();
        assert_eq!(f.contents(), lines(&[1, 2]));
        assert_eq!(
            f.faults().log.iter().filter(|op| **op == "write").count(),
            2
        );
    }

    #[test]
    fn eintr_is_retried() {
        let f = Fixture::new();
        f.faults().interrupt_writes = 3;
        f.journal.append(&visit(1)).unwrap();
        assert_eq!(f.contents(), lines(&[1]));
    }

    #[test]
    fn failed_fsync_poisons_until_reopen() {
        let f = Fixture::new();
        f.journal.append(&visit(1)).unwrap();
        f.faults().fail_syncs = 1;
        let err = f.journal.append(&visit(2)).unwrap_err();
        assert!(err.is_poisoned(), "{err}");
        assert!(matches!(err, Error::Io { op: Op::Fsync, .. }));
        assert!(f.journal.is_poisoned());

        // Never retried and called durable: refused without touching the file.
        f.faults().log.clear();
        let err = f.journal.append(&visit(3)).unwrap_err();
        assert!(matches!(err, Error::Poisoned { .. }), "{err}");
        assert!(f.faults().log.is_empty());
        assert!(matches!(
            f.journal.check_writable(),
            Err(Error::Poisoned { .. })
        ));

        // The unsynced record was cut off before anything else could follow it.
        assert_eq!(f.contents(), lines(&[1]));
        f.journal.reopen().unwrap();
        f.journal.append(&visit(4)).unwrap();
        assert_eq!(f.contents(), lines(&[1, 4]));
    }

    #[test]
    fn an_fsync_failing_for_want_of_space_poisons_and_is_not_reported_as_out_of_space() {
        let f = Fixture::new();
        {
            let mut faults = f.faults();
            faults.fail_syncs = 1;
            faults.sync_errno = Some(ENOSPC);
        }
        let err = f.journal.append(&visit(1)).unwrap_err();
        assert!(err.is_poisoned(), "{err}");
        assert!(
            !err.is_out_of_space(),
            "out of space means rolled back: {err}"
        );
        assert!(f.journal.is_poisoned());
        assert_eq!(
            err.io_error().and_then(io::Error::raw_os_error),
            Some(ENOSPC)
        );
    }

    #[test]
    fn a_probe_whose_cut_fails_poisons_nothing_and_the_next_append_cuts_it() {
        let f = Fixture::new();
        f.journal.append(&visit(1)).unwrap();
        f.faults().fail_truncates = 1;
        let err = f.journal.check_writable().unwrap_err();
        assert_eq!(err.op(), Some(Op::Truncate), "{err}");
        assert!(!err.is_poisoned(), "{err}");
        assert!(!f.journal.is_poisoned());
        assert_eq!(f.contents().len(), lines(&[1]).len() + PROBE.len());
        f.journal.append(&visit(2)).unwrap();
        assert_eq!(
            f.contents(),
            lines(&[1, 2]),
            "the probe was cut as a torn tail"
        );
    }

    #[test]
    fn a_probe_whose_unlock_fails_poisons_the_handle_as_its_error_says() {
        let f = Fixture::new();
        f.faults().fail_unlocks = 1;
        let err = f.journal.check_writable().unwrap_err();
        assert_eq!(err.op(), Some(Op::Unlock), "{err}");
        assert!(err.is_poisoned(), "{err}");
        // The lock may still be held by the open file: only closing it is sure to free it.
        assert!(f.journal.is_poisoned(), "the error and the handle agree");
        assert!(matches!(
            f.journal.append(&visit(1)),
            Err(Error::Poisoned { .. })
        ));
        f.journal.reopen().unwrap();
        f.journal.append(&visit(2)).unwrap();
        assert_eq!(f.contents(), lines(&[2]));
    }

    #[test]
    fn a_failed_rollback_poisons_and_reopen_repairs() {
        let f = Fixture::new();
        f.journal.append(&visit(1)).unwrap();
        {
            let mut faults = f.faults();
            faults.space_left = Some((10, ENOSPC));
            // The rollback, and the settling right after it, both fail.
            faults.fail_truncates = 2;
        }
        let err = f.journal.append(&visit(2)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Io {
                    op: Op::RollBack,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_poisoned());
        assert!(
            f.contents().ends_with("10.0.0.1\n2026-11-26"),
            "a torn tail is left"
        );
        f.faults().space_left = None;
        f.journal.reopen().unwrap();
        assert_eq!(f.contents(), lines(&[1]), "reopening cut the torn tail");
        assert_eq!(f.journal.stats().repaired_bytes, 10);
        f.journal.append(&visit(3)).unwrap();
        assert_eq!(f.contents(), lines(&[1, 3]));
    }

    /// A failed write whose rollback also failed, then another writer cuts the partial line
    /// (a torn tail, to it) and appends: the failed batch's place now holds the other
    /// writer's records. No fsync failed, so the file is provably safe, and the reopen must
    /// settle it instead of refusing for ever (as it did: every `reopen` failed with
    /// `Op::Settle`, and the replica stayed unready).
    /// Visit 1, then visit 2 whose write is cut short by a full disk and whose rollback (and
    /// the settling right after it) fails: part of it stays in the file as a torn tail, and
    /// the handle is poisoned. The disk has room again afterwards.
    fn fail_a_write_and_its_rollback(f: &Fixture) {
        f.journal.append(&visit(1)).unwrap();
        {
            let mut faults = f.faults();
            faults.space_left = Some((10, ENOSPC));
            faults.fail_truncates = 2;
        }
        let err = f.journal.append(&visit(2)).unwrap_err();
        assert_eq!(err.op(), Some(Op::RollBack), "{err}");
        assert!(f.journal.is_poisoned());
        f.faults().space_left = None;
    }

    #[test]
    fn a_failed_rollback_whose_bytes_another_writer_cut_settles() {
        let f = Fixture::new();
        fail_a_write_and_its_rollback(&f);
        // Another writer (another process, say) cuts the torn tail and appends.
        let other = Journal::open(&f.path).unwrap();
        other.append_batch(&[visit(7), visit(8)]).unwrap();
        assert_eq!(f.contents(), lines(&[1, 7, 8]));
        f.journal.reopen().unwrap();
        f.journal.append(&visit(3)).unwrap();
        assert_eq!(f.contents(), lines(&[1, 7, 8, 3]));
        assert!(!f.journal.is_poisoned());
    }

    /// The same scene after a failed fsync is another matter: the batch's pages may be lost
    /// with the error already reported, so bytes found changed in its place prove nothing
    /// (`a_failed_batch_overwritten_meanwhile_is_never_vouched_for`). So when the settle's
    /// own fsync fails, the handle stays poisoned.
    #[test]
    fn a_settle_whose_own_fsync_fails_stays_poisoned() {
        let f = Fixture::new();
        fail_a_write_and_its_rollback(&f);
        Journal::open(&f.path).unwrap().append(&visit(7)).unwrap();
        f.faults().fail_syncs = 1;
        let err = f.journal.reopen().unwrap_err();
        assert_eq!(err.op(), Some(Op::Settle), "{err}");
        assert!(f.journal.is_poisoned());
        // From now on nothing can be proven: this handle stays poisoned (the server turns
        // `/livez` to 503 after a minute of it, and the restart opens a fresh journal).
        let err = f.journal.reopen().unwrap_err();
        assert_eq!(err.op(), Some(Op::Settle), "{err}");
        assert!(f.journal.is_poisoned());
        let fresh = Journal::open(&f.path).unwrap();
        fresh.append(&visit(3)).unwrap();
        assert_eq!(f.contents(), lines(&[1, 7, 3]));
    }

    /// The race that made the server's `/stats` undercount for good, forced: request B holds
    /// the newest view (segments 1, 2, 3) and has counted segment 3; then request A, holding
    /// an older view (1, 2), counts and stores its sum, which drops the cache's entries A
    /// does not see; then B sums. B must still count segment 3, and later counts stay exact.
    #[test]
    fn a_count_of_an_older_view_never_takes_a_segment_from_a_newer_one() {
        let f = Fixture::with_options(Options::new().sync(false).rotate_size(4096));
        let append_until_sealed = |n: &mut u32, segments: u64| {
            while f.journal.stats().rotations < segments {
                let ip = std::net::IpAddr::from((0x0a00_0000 + *n).to_be_bytes());
                f.journal.append(&Visit::new(visit(0).at, ip)).unwrap();
                *n += 1;
            }
        };
        let mut n = 0;
        append_until_sealed(&mut n, 2);
        assert_eq!(f.journal.counts().unwrap().visits(), u64::from(n));
        let older = f.journal.history().unwrap(); // A's view: segments 1 and 2.
        let a_visits = u64::from(n);
        append_until_sealed(&mut n, 3);
        let cold = History::open(&f.path).unwrap().counts().unwrap();
        assert_eq!(cold.visits(), u64::from(n));
        let (counted, go) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        let b = std::thread::scope(|s| {
            let b = s.spawn(|| {
                f.journal.counts_between(|| {
                    counted.wait();
                    go.wait();
                })
            });
            counted.wait();
            // A counts its older view and stores its sum while B holds its counts.
            let a = older
                .counts_with(&f.journal.counters.life.cache, || {})
                .unwrap();
            assert_eq!(a.visits(), a_visits);
            go.wait();
            b.join().unwrap()
        })
        .unwrap();
        assert_eq!(b, cold);
        for _ in 0..2 {
            assert_eq!(f.journal.counts().unwrap(), cold, "warm counts stay exact");
        }
    }

    /// How many appenders share the batch under test.
    const FOLLOWERS: u8 = 6;

    /// Sets the scene for a batch of several appenders: a first append (visit 100) is held in
    /// its fsync while `FOLLOWERS` appenders (visits 0..FOLLOWERS) join the next batch; once
    /// they all wait, `arm` sets the fault for that batch and the first fsync goes on. Returns
    /// each follower's outcome (`Err` if it panicked).
    fn batch_of_followers(
        f: &Fixture,
        arm: impl FnOnce(&mut Faults),
    ) -> Vec<std::thread::Result<Result<()>>> {
        let gate = Arc::new(Gate::default());
        f.faults().sync_gate = Some(Arc::clone(&gate));
        std::thread::scope(|s| {
            let first = s.spawn(|| f.journal.append(&visit(100)));
            // Its leader holds the file until the gate opens: every later append waits in the
            // next batch.
            gate.until_reached();
            let followers: Vec<_> = (0..FOLLOWERS)
                .map(|n| {
                    let journal = &f.journal;
                    s.spawn(move || journal.append(&visit(n)))
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(10);
            while f.journal.group.waiting() < u64::from(FOLLOWERS) {
                assert!(
                    Instant::now() < deadline,
                    "the followers never joined one batch"
                );
                std::thread::yield_now();
            }
            arm(&mut f.faults());
            gate.open();
            first.join().unwrap().unwrap();
            followers.into_iter().map(|h| h.join()).collect()
        })
    }

    #[test]
    fn every_appender_of_a_failed_batch_gets_the_error() {
        let f = Fixture::new();
        let results = batch_of_followers(&f, |faults| faults.fail_syncs = 1);
        // They were all in the batch whose fsync failed: each gets that error, not a refusal
        // from a later batch.
        for r in &results {
            let err = r.as_ref().unwrap().as_ref().unwrap_err();
            assert_eq!(err.op(), Some(Op::Fsync), "{err}");
            assert!(err.is_poisoned());
        }
        let stats = f.journal.stats();
        assert_eq!((stats.records, stats.failed_syncs), (1, 1));
        assert_eq!(stats.failed_batches, 1, "one batch for all of them");
    }

    #[test]
    fn a_panicking_leader_fails_its_batch_instead_of_hanging_it() {
        let f = Fixture::new();
        let results = batch_of_followers(&f, |faults| faults.panic_in_write = true);
        // One of them led the batch and panicked in its write; the others did not hang.
        let panicked = results.iter().filter(|r| r.is_err()).count();
        assert_eq!(panicked, 1, "the leader panicked");
        for r in results.iter().filter_map(|r| r.as_ref().ok()) {
            assert!(matches!(r, Err(Error::Poisoned { .. })), "{r:?}");
        }
        // Nothing is acknowledged after an I/O path that did not finish.
        assert!(f.journal.is_poisoned());
        assert!(matches!(
            f.journal.append(&visit(2)),
            Err(Error::Poisoned { .. })
        ));
        f.journal.reopen().unwrap();
        f.journal.append(&visit(3)).unwrap();
        assert_eq!(f.contents(), lines(&[100, 3]));
    }

    #[test]
    fn a_failed_fsync_cuts_its_whole_batch_before_anything_else_is_appended() {
        let f = Fixture::new();
        f.faults().log.clear();
        let results = batch_of_followers(&f, |faults| faults.fail_syncs = 1);
        assert!(results.iter().all(|r| r.as_ref().unwrap().is_err()));
        // All six records of the failed batch are gone, the acknowledged one is there.
        assert_eq!(f.contents(), lines(&[100]));
        assert_eq!(
            f.journal.stats().repaired_bytes,
            lines(&[0, 1, 2, 3, 4, 5]).len() as u64
        );
        // The cut was made under the lock and synced, right after the failed fsync.
        let log = f.faults().log.clone();
        assert!(
            log.ends_with(&[
                "write", "unlock", "fsync", "lock", "truncate", "fsync", "unlock"
            ]),
            "{log:?}"
        );
        // The reopened handle appends after the acknowledged records only.
        f.journal.reopen().unwrap();
        f.journal.append(&visit(7)).unwrap();
        assert_eq!(f.contents(), lines(&[100, 7]));
    }

    /// A batch whose fsync is held until another writer has appended a record after it, then
    /// fails. `tamper` may change the batch's bytes meanwhile.
    fn fail_with_a_record_after(f: &Fixture, tamper: impl FnOnce(&Path)) -> Error {
        f.journal.append(&visit(1)).unwrap();
        let gate = Arc::new(Gate::default());
        {
            let mut faults = f.faults();
            faults.fail_syncs = 1;
            faults.sync_gate = Some(Arc::clone(&gate));
        }
        std::thread::scope(|s| {
            let failing = s.spawn(|| f.journal.append(&visit(2)));
            gate.until_reached();
            // Another process appends, under the lock, while our fsync is under way.
            let other = OpenOptions::new().append(true).open(&f.path).unwrap();
            other.lock().unwrap();
            std::io::Write::write_all(&mut &other, format!("{}\n", visit(3)).as_bytes()).unwrap();
            tamper(&f.path);
            other.unlock().unwrap();
            gate.open();
            failing.join().unwrap().unwrap_err()
        })
    }

    #[test]
    fn a_failed_batch_that_is_no_longer_last_is_written_again_and_synced() {
        let f = Fixture::new();
        let err = fail_with_a_record_after(&f, |_| {});
        assert_eq!(err.op(), Some(Op::Fsync), "{err}");
        // It cannot be cut without cutting the other writer's record: instead its bytes are
        // made durable again (a fresh descriptor's fsync reports any new writeback error).
        assert!(f.faults().log.contains(&"rewrite"), "{:?}", f.faults().log);
        assert_eq!(f.contents(), lines(&[1, 2, 3]));
        f.journal.reopen().unwrap();
        f.journal.append(&visit(4)).unwrap();
        assert_eq!(f.contents(), lines(&[1, 2, 3, 4]));
    }

    #[test]
    fn nothing_is_acknowledged_until_a_failed_batch_is_settled() {
        let f = Fixture::new();
        f.faults().fail_rewrites = 2;
        let err = fail_with_a_record_after(&f, |_| {});
        assert_eq!(err.op(), Some(Op::Fsync), "{err}");
        // The rewrite right after the failure failed, and so does the reopen's: the handle
        // stays poisoned and refuses appends.
        let err = f.journal.reopen().unwrap_err();
        assert_eq!(err.op(), Some(Op::Settle), "{err}");
        assert!(err.is_poisoned() && f.journal.is_poisoned());
        assert!(matches!(
            f.journal.append(&visit(4)),
            Err(Error::Poisoned { .. })
        ));
        // Once the rewrite succeeds, the reopen does.
        f.journal.reopen().unwrap();
        f.journal.append(&visit(4)).unwrap();
        assert_eq!(f.contents(), lines(&[1, 2, 3, 4]));
    }

    #[test]
    fn a_failed_batch_overwritten_meanwhile_is_never_vouched_for() {
        let f = Fixture::new();
        let err = fail_with_a_record_after(&f, |path| {
            // Something changed the failed batch's bytes in place (no writer of ours would).
            let file = OpenOptions::new().write(true).open(path).unwrap();
            let at = lines(&[1]).len() as u64 + 5;
            std::os::unix::fs::FileExt::write_all_at(&file, b"X", at).unwrap();
        });
        assert_eq!(err.op(), Some(Op::Fsync), "{err}");
        let err = f.journal.reopen().unwrap_err();
        assert_eq!(err.op(), Some(Op::Settle), "{err}");
        assert_eq!(
            err.io_error().map(io::Error::kind),
            Some(io::ErrorKind::InvalidData)
        );
        assert!(f.journal.is_poisoned());
        assert!(matches!(
            f.journal.append(&visit(4)),
            Err(Error::Poisoned { .. })
        ));
        assert!(f.faults().log.iter().all(|op| *op != "rewrite"));
    }

    #[test]
    fn unrepresentable_visits_are_refused_before_writing() {
        let f = Fixture::new();
        let mut odd = visit(1);
        odd.at = odd
            .at
            .with_timezone(&chrono::FixedOffset::east_opt(30).unwrap());
        f.faults().log.clear();
        let err = f.journal.append_batch(&[visit(2), odd]).unwrap_err();
        assert!(matches!(err, Error::Unrepresentable { .. }));
        assert!(f.faults().log.is_empty());
        assert_eq!(f.contents(), "");
    }
}
