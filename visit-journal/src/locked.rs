//! The writer's I/O: what one batch, a repair or a probe does to the file, under the `flock`.
//!
//! [`Io`] is a journal's open file together with what the handle knows about it. Group commit
//! ([`crate::commit`]) lends it to one thread at a time: holding `&mut Io` is what entitles a
//! thread to do I/O, so no two threads of a process ever write at once (a `flock` belongs to
//! the open file, not to the thread, and could not keep them apart by itself).
//!
//! **Architecture Invariant.** Only this module calls `sync_data`; every acknowledgement
//! follows one of its successful calls. It knows nothing of batches' appenders, of waking or
//! of the state mutex: those are [`crate::commit`]'s.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::dir::{Dir, FileId, RealDir};
use crate::error::{Error, Op, Result};
use crate::lifecycle::{self, Lifecycle};
use crate::options::Options;
use crate::repair::{self, Cut};
use crate::segment::Retention;
use crate::storage::{
    FileStorage, Storage, count_newlines, last_line_end, read_exact_at, read_up_to,
};

/// The upper bounds of the batch-size buckets ([`Counters::batch_records`]), in records:
/// powers of two up to 1024. A lone appender makes batches of 1; 16 threads sharing a handle
/// fill batches of about 16 (BENCHMARKS.md); `append_batch` can carry any number.
pub(crate) const BATCH_RECORDS_BOUNDS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// What a journal handle has done, kept across reopens; read by `Journal::stats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) records: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) largest_batch: AtomicU64,
    /// Committed batches by size: `batch_records[i]` counts those of at most
    /// `BATCH_RECORDS_BOUNDS[i]` records (and more than the bound before); the last slot,
    /// the larger ones.
    pub(crate) batch_records: [AtomicU64; BATCH_RECORDS_BOUNDS.len() + 1],
    pub(crate) repaired_bytes: AtomicU64,
    pub(crate) failed_batches: AtomicU64,
    pub(crate) failed_syncs: AtomicU64,
    /// The live file's length after the last batch (or rotation, or open) of this handle.
    pub(crate) live_bytes: AtomicU64,
    /// Rotation and retention.
    pub(crate) life: Arc<lifecycle::Counters>,
}

impl Counters {
    /// Counts a committed batch of `records` in its bucket of [`Counters::batch_records`].
    pub(crate) fn batch_committed(&self, records: u64) {
        let bucket = BATCH_RECORDS_BOUNDS.partition_point(|&bound| bound < records);
        self.batch_records[bucket].fetch_add(1, Relaxed);
    }
}

/// A journal's open file and the knobs that say how to write it.
#[derive(Debug)]
pub(crate) struct Io {
    /// What errors name.
    path: PathBuf,
    storage: Arc<dyn Storage>,
    /// The identity of the open file. Under the lock it is checked against the file at the
    /// path: if they differ, the file was rotated (or moved) away, and the handle reopens the
    /// path before it writes, so nothing is ever appended to a sealed segment.
    id: FileId,
    /// [`Options::sync`]: whether to `fdatasync`.
    sync: bool,
    lock_timeout: Option<Duration>,
    /// [`Options::create`], or there is a history (a rotation was interrupted after its
    /// rename, so the live file is missing but the journal exists).
    create: bool,
    /// The rotation and retention of the journal's history.
    life: Lifecycle,
    /// Set when retention failed: it is retried by the first append (or probe) after this
    /// instant.
    retry_retention: Option<Instant>,
    /// Set when a rotation failed before its rename (no segment number could be had, say):
    /// batches go into the live file until this instant, instead of each trying again.
    retry_rotation: Option<Instant>,
    /// Shared with the journal, which reads them for `stats` while a thread holds the `Io`.
    counters: Arc<Counters>,
    /// The batch this handle wrote and has not yet seen through a successful fsync (or taken
    /// back). After a failed fsync it is the part of the file nobody can vouch for, and it
    /// stays here until [`Io::settle`] has made the file safe again.
    unsynced: Unsynced,
}

/// Where the last batch went, and its bytes, until an fsync covers it.
#[derive(Debug, Default)]
struct Unsynced {
    /// The batch's offset in the file, while it is unsynced.
    start: Option<u64>,
    /// The batch's bytes (the buffer is reused from batch to batch).
    bytes: Vec<u8>,
    /// An fsync failed since the batch was written (its own, or its rollback's): its pages
    /// may be lost with the error already reported, so only the batch's own bytes, found in
    /// place and cut or synced again, can make the file safe. Without it (the write or the
    /// rollback failed, no fsync did), our own fsync reports any writeback error since we
    /// opened the file.
    fsync_failed: bool,
}

/// How long after a failed retention it is tried again (besides at every rotation and open):
/// often enough to free space soon after the fault clears, rarely enough that a lasting fault
/// (a damaged summary) costs nothing noticeable.
const RETENTION_RETRY: Duration = Duration::from_secs(1);

/// How long after a rotation that failed before its rename it is tried again: a lasting fault
/// (a summary whose first line is lost) then costs one attempt a second, not one per batch.
const ROTATION_RETRY: Duration = Duration::from_secs(1);

/// How many times a writer follows the live file to a new one before it gives up: each time,
/// another writer rotated it (or a program moved it away) between our open and our lock.
const MAX_REOPENS: usize = 100;

/// 4 KiB of a byte that a torn record may contain: what [`Io::probe`] writes and takes back.
pub(crate) const PROBE: [u8; repair::MAX_TORN as usize] = [b'0'; repair::MAX_TORN as usize];

impl Io {
    /// Opens (creating if `options.create`) the file at `path`, repairs its end, and runs
    /// retention.
    pub(crate) fn open(path: &Path, options: &Options, counters: Arc<Counters>) -> Result<Io> {
        Io::open_in(Arc::new(RealDir), path, options, counters)
    }

    /// As [`Io::open`], with the directory operations of rotation and retention going through
    /// `dir` (tests inject faults and crashes there).
    pub(crate) fn open_in(
        dir: Arc<dyn Dir>,
        path: &Path,
        options: &Options,
        counters: Arc<Counters>,
    ) -> Result<Io> {
        // A journal path that is a symbolic link: the file it points to is the journal, and
        // its history is kept beside it (see `dir::resolve_live`).
        let resolved = crate::dir::resolve_live(path)?;
        let path = resolved.as_path();
        let life = lifecycle_of(dir, path, options, &counters);
        // A live file missing beside its segments is a rotation interrupted after its rename:
        // the journal exists, and the next writer creates its live file.
        let create = options.create || life.history_exists();
        let (storage, id) = open_storage(path, create)?;
        Io::with_parts(path, options, storage, id, life, create, counters)
    }

    /// An `Io` over `storage` (tests inject faults here), its end repaired.
    #[cfg(test)]
    pub(crate) fn with_storage(
        path: &Path,
        options: &Options,
        storage: Arc<dyn Storage>,
        counters: Arc<Counters>,
    ) -> Result<Io> {
        let id = fs::metadata(path)
            .map(|m| FileId::of(&m))
            .map_err(|e| Error::io(Op::Stat, path, e))?;
        let life = lifecycle_of(Arc::new(RealDir), path, options, &counters);
        Io::with_parts(path, options, storage, id, life, options.create, counters)
    }

    fn with_parts(
        path: &Path,
        options: &Options,
        storage: Arc<dyn Storage>,
        id: FileId,
        life: Lifecycle,
        create: bool,
        counters: Arc<Counters>,
    ) -> Result<Io> {
        let mut io = Io {
            path: path.to_path_buf(),
            storage,
            id,
            sync: options.sync,
            lock_timeout: options.lock_timeout,
            create,
            life,
            retry_retention: None,
            retry_rotation: None,
            counters,
            unsynced: Unsynced::default(),
        };
        io.repair_on_open()?;
        Ok(io)
    }

    /// One batch of whole records: under the `flock`, cut a torn tail, rotate if the batch
    /// would make the live file larger than the rotate size, write the whole batch (or roll
    /// it back), and run retention after a rotation; then, without the lock, the
    /// `fdatasync`. Returns how long the fsync took.
    ///
    /// The lock is released before the fsync: our bytes are whole lines, so nothing another
    /// writer does under the lock can touch them (a rotation syncs the file before sealing
    /// it), and holding the lock across the fsync would stop other processes from batching
    /// behind us.
    pub(crate) fn append(&mut self, batch: &[u8]) -> Result<Duration> {
        let mut lock = self.lock_live()?;
        let written = match self.make_room(&mut lock, batch.len() as u64) {
            Ok((start, rotated)) => {
                // Noted before the write, so that even a write that unwinds leaves it for
                // `settle`.
                self.unsynced.start = Some(start);
                self.unsynced.fsync_failed = false;
                self.unsynced.bytes.clear();
                self.unsynced.bytes.extend_from_slice(batch);
                let written = self.write_or_roll_back(batch, start).map(|()| {
                    self.counters
                        .live_bytes
                        .store(start + batch.len() as u64, Relaxed);
                });
                // Even if the batch failed: the rotation happened, and when the disk is full
                // the space retention frees is what lets the next batch in (the fresh live
                // file is too small to rotate again soon).
                let due = self.retry_retention.is_some_and(|at| Instant::now() >= at);
                if rotated || due {
                    self.retain_quietly();
                }
                written
            }
            Err(e) => Err(e),
        };
        if written.as_ref().is_err_and(Error::is_poisoned) {
            // A rollback failed, or its fsync did: part of the batch may be in the file,
            // unsynced. Settle it while we hold the lock, as after a failed fsync (below).
            let _ = self.settle_locked();
        }
        let unlocked = lock.release().map_err(|e| self.io(Op::Unlock, e));
        written?;
        // If unlocking failed, the lock is released only when the file is closed: the error
        // poisons the handle (see `Op::poisons`), and reopening is the way out.
        unlocked?;
        let started = Instant::now();
        if let Err(e) = self.sync_file() {
            // The batch may never reach the disk, and Linux reports a writeback error once per
            // open file: a later fsync, by this descriptor or a fresh one, can succeed while
            // these pages are lost. Were more records acknowledged after them, a power loss
            // would leave zeros before those records, and the power-loss repair would cut them
            // too. So the batch comes off the file now, before anything else is appended. If
            // that fails, it stays noted, the handle is poisoned, and `reopen` tries again
            // before it lets anything more be acknowledged.
            self.unsynced.fsync_failed = true;
            let _ = self.settle();
            return Err(e);
        }
        self.unsynced.start = None;
        Ok(started.elapsed())
    }

    /// Under the lock, before a batch of `len` bytes: cuts a torn tail and, if the batch
    /// would make the live file larger than the rotate size, rotates it and takes the lock of
    /// the fresh file instead (in `lock`). Returns where the batch goes, and whether the file
    /// was rotated.
    ///
    /// A rotation that fails before its rename leaves the live file where it was: the batch
    /// goes there (a little over the rotate size), the failure is counted and kept, and the
    /// next batch tries again. One that fails after its rename has sealed the file, so the
    /// fresh file must exist and be durable before anything is written: if that cannot be
    /// made so, the batch fails.
    fn make_room(&mut self, lock: &mut FileLock, len: u64) -> Result<(u64, bool)> {
        let mut start = self.cut_torn_tail()?;
        let mut rotated = false;
        // Another writer may have filled the fresh file before we locked it: if the batch no
        // longer fits beside its lines, that file is rotated too (a bounded number of times;
        // then the batch goes where it is, a little over the rotate size).
        for _ in 0..MAX_REOPENS {
            if !self.life.should_rotate(start, len)
                || self.retry_rotation.is_some_and(|at| Instant::now() < at)
            {
                break;
            }
            if let Err(e) = self.life.rotate(|| self.sync_file()) {
                let sealed = self
                    .life
                    .dir
                    .id(&self.path)
                    .map_err(|e| self.io(Op::Stat, e))?;
                if e.is_poisoned() {
                    return Err(e);
                }
                self.life.counters.failed_rotations.fetch_add(1, Relaxed);
                self.life.keep_error(e);
                if sealed == Some(self.id) {
                    self.retry_rotation = Some(Instant::now() + ROTATION_RETRY);
                    break;
                }
                // Sealed, but the fresh file or its name's durability is missing: finish that
                // now.
                self.life.create_live()?;
            }
            // The file we hold is sealed: nothing more goes into it. Follow the path to the
            // fresh file and lock that one (another writer may have got there first: it is
            // locked and checked like any other).
            self.retry_rotation = None;
            let old = std::mem::replace(lock, self.lock_live_reopening()?);
            old.release().map_err(|e| self.io(Op::Unlock, e))?;
            start = self.cut_torn_tail()?;
            rotated = true;
        }
        Ok((start, rotated))
    }

    /// Runs retention under the lock; a failure is counted, kept for the caller to log, and
    /// retried a second later. It never fails the append that triggered it.
    fn retain_quietly(&mut self) {
        let now = chrono::Utc::now().fixed_offset();
        match self.life.retain(now) {
            Ok(_) => self.retry_retention = None,
            Err(e) => {
                self.life.counters.failed_retentions.fetch_add(1, Relaxed);
                self.life.keep_error(e);
                self.retry_retention = Some(Instant::now() + RETENTION_RETRY);
            }
        }
    }

    /// Writes `bytes` at the end (`start`); on failure truncates back to `start`.
    fn write_or_roll_back(&mut self, bytes: &[u8], start: u64) -> Result<()> {
        let Err(write_error) = write_all(&*self.storage, bytes) else {
            return Ok(());
        };
        let write_error = self.io(Op::Write, write_error);
        if let Err(e) = self.storage.truncate(start) {
            // Part of the batch stays in the file and we cannot take it back: refuse to
            // acknowledge anything more until a reopen (which settles it first).
            return Err(self.io(Op::RollBack, e));
        }
        // Make the rollback durable too, so a crash cannot resurrect a half-written batch.
        if let Err(e) = self.sync_file() {
            self.unsynced.fsync_failed = true;
            return Err(e);
        }
        self.unsynced.start = None;
        Err(write_error)
    }

    /// True if a batch of this handle's may be in the file without having been synced (its
    /// fsync, write or rollback failed, and [`Io::settle`] has not made the file safe since).
    pub(crate) fn is_unsettled(&self) -> bool {
        self.unsynced.start.is_some()
    }

    /// After a failed fsync (or rollback): makes the file safe to append to again, under the
    /// lock, or says why it cannot.
    ///
    /// - If the unsynced batch (or what is left of it) is still the end of the file, it is
    ///   cut off and the cut is fsynced: the file is then exactly what was acknowledged.
    /// - If records follow it (another process appended meanwhile), it cannot be cut; its
    ///   bytes are written again in place and fsynced through a fresh descriptor, which
    ///   reports any new writeback error: once that succeeds, the batch is on disk and
    ///   nothing after it can be cut by the power-loss repair. (Its appenders were told it
    ///   failed; like any record of a failed fsync it may or may not be there.)
    /// - If its place holds other bytes than the batch (or NULs, where the kernel dropped the
    ///   pages), nothing can be proven: the error says so, and the batch stays noted.
    ///
    /// Does nothing if no batch is unsettled.
    pub(crate) fn settle(&mut self) -> Result<()> {
        if !self.is_unsettled() {
            return Ok(());
        }
        let lock = self.lock_file()?;
        let settled = self.settle_locked();
        let unlocked = lock.release().map_err(|e| self.io(Op::Unlock, e));
        settled?;
        unlocked
    }

    fn settle_locked(&mut self) -> Result<()> {
        let Some(start) = self.unsynced.start else {
            return Ok(());
        };
        let settle = |e| Error::io(Op::Settle, &self.path, e);
        let ours = &self.unsynced.bytes;
        let end = start + ours.len() as u64;
        let len = self.storage.len().map_err(settle)?;
        let present = (len.clamp(start, end) - start) as usize;
        let mut found = vec![0; present];
        let n = read_up_to(&*self.storage, &mut found, start).map_err(settle)?;
        let intact = n == present
            && found
                .iter()
                .zip(ours)
                .all(|(&found, &ours)| found == ours || found == 0);
        if !intact && !self.unsynced.fsync_failed {
            // The batch's place holds other bytes: another writer, under the lock, cut what
            // was left of it as a torn tail (or truncated it) and appended. No fsync of ours
            // failed, so no error about its pages went unheard; one more fsync of our
            // descriptor reports any writeback error since we opened the file. If it succeeds
            // the file is safe: what follows is the other writer's, synced by it.
            if self.sync
                && let Err(e) = self.storage.sync_data()
            {
                self.unsynced.fsync_failed = true;
                return Err(Error::io(Op::Settle, &self.path, e));
            }
            self.unsynced.start = None;
            return Ok(());
        }
        if !intact {
            return Err(settle(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the bytes at {start}..{end}, written by an append whose fsync failed, are \
                     no longer what was written: nothing after them can be proven durable"
                ),
            )));
        }
        // Another writer may have rotated the file away since: a sealed segment is never cut
        // (its content is final, and readers and retention rely on it), so what is there of
        // the batch is made durable in place instead.
        let sealed = self.life.dir.id(&self.path).map_err(settle)? != Some(self.id);
        if len <= end && !sealed {
            if len > start {
                self.storage.truncate(start).map_err(settle)?;
                self.counters.repaired_bytes.fetch_add(len - start, Relaxed);
            }
            if self.sync {
                self.storage.sync_data().map_err(settle)?;
            }
        } else if self.sync {
            self.storage
                .rewrite_durably(&ours[..present], start)
                .map_err(settle)?;
        }
        self.unsynced.start = None;
        Ok(())
    }

    /// Checks that a batch could be written now: under the lock, writes [`PROBE`] at the end
    /// and truncates it away. No fsync. A retention that failed and is due again is retried
    /// here too: a replica that records no visits (an unready one, say) still frees its space
    /// once the fault clears.
    pub(crate) fn probe(&mut self) -> Result<()> {
        let lock = self.lock_live()?;
        let probed = self.cut_torn_tail().and_then(|start| {
            let written = write_all(&*self.storage, &PROBE).map_err(|e| self.io(Op::Write, e));
            // Not a roll back: if this cut fails, the probe is a torn tail (it is no longer
            // than one), which the next writer cuts; nothing needs a reopen.
            let cut = self
                .storage
                .truncate(start)
                .map_err(|e| self.io(Op::Truncate, e));
            written.and(cut)
        });
        if self.retry_retention.is_some_and(|at| Instant::now() >= at) {
            self.retain_quietly();
        }
        let unlocked = lock.release().map_err(|e| self.io(Op::Unlock, e));
        probed.and(unlocked)
    }

    /// Releases a lock this handle may still hold after a failed unlock, so that a fresh
    /// handle on the same file is not blocked by it. Unlocking a file that holds no lock is
    /// harmless.
    pub(crate) fn release_stale_lock(&self) {
        let _ = self.storage.unlock();
    }

    /// `fdatasync`, unless [`Options::sync`] is off.
    fn sync_file(&self) -> Result<()> {
        if !self.sync {
            return Ok(());
        }
        match self.storage.sync_data() {
            Ok(()) => {
                self.counters.syncs.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(e) => {
                self.counters.failed_syncs.fetch_add(1, Relaxed);
                Err(self.io(Op::Fsync, e))
            }
        }
    }

    /// Takes the file lock. It is released by [`FileLock::release`], or by dropping the guard
    /// if the holder unwinds.
    fn lock_file(&self) -> Result<FileLock> {
        match self.storage.lock(self.lock_timeout) {
            Ok(true) => Ok(FileLock {
                storage: Arc::clone(&self.storage),
                held: true,
            }),
            Ok(false) => Err(Error::Locked {
                path: self.path.clone(),
            }),
            Err(e) => Err(self.io(Op::Lock, e)),
        }
    }

    /// Takes the lock of the live file: locks the open file, then checks that it is still the
    /// file at the path (device and inode, `fstat` against `stat`). If another writer rotated
    /// it away meanwhile (or a program moved it), the lock is of a sealed file: release it,
    /// open the path again, and retry.
    fn lock_live(&mut self) -> Result<FileLock> {
        for _ in 0..MAX_REOPENS {
            let lock = self.lock_file()?;
            let at_path = self
                .life
                .dir
                .id(&self.path)
                .map_err(|e| self.io(Op::Stat, e))?;
            if at_path == Some(self.id) {
                return Ok(lock);
            }
            lock.release().map_err(|e| self.io(Op::Unlock, e))?;
            self.reopen_storage()?;
        }
        Err(self.io(
            Op::Open,
            io::Error::other("the live file kept being replaced while the writer locked it"),
        ))
    }

    /// After a rotation: opens the path (the fresh file) and takes its lock.
    fn lock_live_reopening(&mut self) -> Result<FileLock> {
        self.reopen_storage()?;
        self.lock_live()
    }

    /// Replaces the open file with the one now at the path, creating it if it is missing (a
    /// rotation was interrupted after its rename, or a program moved the journal away).
    fn reopen_storage(&mut self) -> Result<()> {
        // The journal may have gained a history since it was opened: a live file missing
        // beside segments is a rotation (maybe another process's) interrupted after its
        // rename, and is created even by a writer that must not invent a journal.
        self.create = self.create || self.life.history_exists();
        let (storage, id) = open_storage(&self.path, self.create)?;
        self.storage = storage;
        self.id = id;
        Ok(())
    }

    /// Under the lock: cuts a torn last line, if any, and returns the new length.
    fn cut_torn_tail(&self) -> Result<u64> {
        let storage = &*self.storage;
        let len = storage.len().map_err(|e| self.io(Op::Stat, e))?;
        if len == 0 {
            return Ok(0);
        }
        // The common case costs one one-byte read.
        let mut last = [0u8];
        read_exact_at(storage, &mut last, len - 1).map_err(|e| self.io(Op::Read, e))?;
        if last[0] == b'\n' {
            return Ok(len);
        }
        let start = last_line_end(storage, len).map_err(|e| self.io(Op::Read, e))?;
        let mut tail = vec![0; (len - start).min(repair::MAX_TORN + 1) as usize];
        read_exact_at(storage, &mut tail, start).map_err(|e| self.io(Op::Read, e))?;
        self.apply(len, repair::torn_tail(start, len, &tail))
    }

    /// Carries out a repair decision; returns the file's length afterwards.
    fn apply(&self, len: u64, cut: Cut) -> Result<u64> {
        match cut {
            Cut::Nothing => Ok(len),
            Cut::At(at) => {
                self.storage
                    .truncate(at)
                    .map_err(|e| self.io(Op::Truncate, e))?;
                self.counters.repaired_bytes.fetch_add(len - at, Relaxed);
                Ok(at)
            }
            Cut::Refuse { offset, reason } => Err(Error::Corrupt {
                path: self.path.clone(),
                line: count_newlines(&*self.storage, 0, offset)
                    .map_err(|e| self.io(Op::Read, e))?
                    + 1,
                offset,
                reason,
            }),
        }
    }

    fn read_tail(&self, len: u64, max: u64) -> Result<Vec<u8>> {
        let n = len.min(max);
        let mut tail = vec![0; n as usize];
        read_exact_at(&*self.storage, &mut tail, len - n).map_err(|e| self.io(Op::Read, e))?;
        Ok(tail)
    }

    /// Under the lock: cuts power-loss debris near the end, then a torn tail; then runs
    /// retention (which also finishes an interrupted retirement).
    fn repair_on_open(&mut self) -> Result<()> {
        let lock = self.lock_live()?;
        let repaired = (|| {
            let len = self.storage.len().map_err(|e| self.io(Op::Stat, e))?;
            let window = self.read_tail(len, repair::DEBRIS_WINDOW + 1)?;
            match repair::power_loss_debris(len, &window) {
                // Deeper NUL bytes are corruption that readers report; never cut.
                Cut::Refuse { .. } => {}
                cut => {
                    self.apply(len, cut)?;
                }
            }
            self.cut_torn_tail()
        })();
        if let Ok(len) = repaired {
            self.counters.live_bytes.store(len, Relaxed);
            self.retain_quietly();
        }
        let unlocked = lock.release().map_err(|e| self.io(Op::Unlock, e));
        repaired?;
        unlocked
    }

    fn io(&self, op: Op, source: io::Error) -> Error {
        Error::io(op, &self.path, source)
    }
}

/// The held `flock`. Dropping it unlocks (for unwinding); the normal path calls `release` to
/// see the error. It holds its own reference to the file, so the holder of the [`Io`] can
/// still change it (`&mut`) while locked.
struct FileLock {
    storage: Arc<dyn Storage>,
    /// Cleared by `release`, so that `Drop` does not unlock twice.
    held: bool,
}

impl FileLock {
    fn release(mut self) -> io::Result<()> {
        self.held = false;
        self.storage.unlock()
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        if self.held {
            let _ = self.storage.unlock();
        }
    }
}

/// Writes all of `bytes` at the end of the file: a short write is continued (the lock keeps
/// other writers out), `EINTR` is retried, anything else is returned.
fn write_all(storage: &dyn Storage, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match storage.append(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The rotation and retention of the journal at `path`, as the options ask.
fn lifecycle_of(
    dir: Arc<dyn Dir>,
    path: &Path,
    options: &Options,
    counters: &Counters,
) -> Lifecycle {
    Lifecycle::new(
        path,
        dir,
        options.rotate_size,
        Retention {
            size: options.retain_size,
            days: options.retain_days,
        },
        options.sync,
        Arc::clone(&counters.life),
    )
}

/// Opens the file for reading and appending, creating it and its directories if `create`.
/// Returns it with its identity (taken from the open file, so it is the file we hold).
fn open_storage(path: &Path, create: bool) -> Result<(Arc<dyn Storage>, FileId)> {
    let file = open_file(path, create)?;
    let id = file
        .metadata()
        .map(|m| FileId::of(&m))
        .map_err(|e| Error::io(Op::Stat, path, e))?;
    Ok((Arc::new(FileStorage { file }), id))
}

fn open_file(path: &Path, create: bool) -> Result<File> {
    if path.as_os_str().is_empty() {
        return Err(Error::io(
            Op::Open,
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "empty path"),
        ));
    }
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => {
            return Err(Error::io(
                Op::Open,
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    if !create {
        return options.open(path).map_err(|e| Error::io(Op::Open, path, e));
    }
    let parent = parent_dir(path);
    create_dirs(parent)?;
    match options.clone().create_new(true).open(path) {
        Ok(file) => {
            sync_dir(parent)?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            options.open(path).map_err(|e| Error::io(Op::Open, path, e))
        }
        Err(e) => Err(Error::io(Op::Create, path, e)),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` and its missing ancestors, fsyncing each new directory's parent.
fn create_dirs(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = parent_dir(dir);
    if parent != dir {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(Error::io(Op::CreateDirectory, dir, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| crate::storage::retry_eintr(|| d.sync_all()))
        .map_err(|e| Error::io(Op::SyncDirectory, dir, e))
}
