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

use crate::error::{Error, Op, Result};
use crate::options::Options;
use crate::repair::{self, Cut};
use crate::storage::{FileStorage, Storage, count_newlines, last_line_end, read_exact_at};

/// What a journal handle has done, kept across reopens; read by `Journal::stats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) records: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) largest_batch: AtomicU64,
    pub(crate) repaired_bytes: AtomicU64,
    pub(crate) failed_batches: AtomicU64,
    pub(crate) failed_syncs: AtomicU64,
}

/// A journal's open file and the knobs that say how to write it.
#[derive(Debug)]
pub(crate) struct Io {
    /// What errors name.
    path: PathBuf,
    storage: Arc<dyn Storage>,
    /// [`Options::sync`]: whether to `fdatasync`.
    sync: bool,
    lock_timeout: Option<Duration>,
    /// Shared with the journal, which reads them for `stats` while a thread holds the `Io`.
    counters: Arc<Counters>,
}

/// 4 KiB of a byte that a torn record may contain: what [`Io::probe`] writes and takes back.
pub(crate) const PROBE: [u8; repair::MAX_TORN as usize] = [b'0'; repair::MAX_TORN as usize];

impl Io {
    /// Opens (creating if `options.create`) the file at `path` and repairs its end.
    pub(crate) fn open(path: &Path, options: &Options, counters: Arc<Counters>) -> Result<Io> {
        let storage = open_storage(path, options.create)?;
        Io::with_storage(path, options, storage, counters)
    }

    /// An `Io` over `storage` (tests inject faults here), its end repaired.
    pub(crate) fn with_storage(
        path: &Path,
        options: &Options,
        storage: Arc<dyn Storage>,
        counters: Arc<Counters>,
    ) -> Result<Io> {
        let io = Io {
            path: path.to_path_buf(),
            storage,
            sync: options.sync,
            lock_timeout: options.lock_timeout,
            counters,
        };
        io.repair_on_open()?;
        Ok(io)
    }

    /// One batch of whole records: under the `flock`, [`Io::write_batch_locked`]; then,
    /// without the lock, the `fdatasync`. Returns how long the fsync took.
    ///
    /// The lock is released before the fsync: our bytes are whole lines, so nothing another
    /// writer does under the lock can touch them, and holding the lock across the fsync would
    /// stop other processes from batching behind us.
    pub(crate) fn append(&mut self, batch: &[u8]) -> Result<Duration> {
        let lock = self.lock_file()?;
        let written = self.write_batch_locked(batch);
        let unlocked = lock.release().map_err(|e| self.io(Op::Unlock, e));
        written?;
        // If unlocking failed, the lock is released only when the file is closed: the error
        // poisons the handle (see `Op::poisons`), and reopening is the way out.
        unlocked?;
        let started = Instant::now();
        self.sync_file()?;
        Ok(started.elapsed())
    }

    /// Everything a batch does to the file under the lock: cut a torn tail, then write the
    /// whole batch at the end or, if the write fails, roll it back. A batch is written with
    /// one call here, so it is never split.
    fn write_batch_locked(&mut self, batch: &[u8]) -> Result<()> {
        let start = self.cut_torn_tail()?;
        self.write_or_roll_back(batch, start)
    }

    /// Writes `bytes` at the end (`start`); on failure truncates back to `start`.
    fn write_or_roll_back(&self, bytes: &[u8], start: u64) -> Result<()> {
        let Err(write_error) = write_all(&*self.storage, bytes) else {
            return Ok(());
        };
        let write_error = self.io(Op::Write, write_error);
        if let Err(e) = self.storage.truncate(start) {
            // Part of the batch stays in the file and we cannot take it back: refuse to
            // acknowledge anything more until a reopen (whose repair cuts a torn tail).
            return Err(self.io(Op::RollBack, e));
        }
        // Make the rollback durable too, so a crash cannot resurrect a half-written batch.
        self.sync_file()?;
        Err(write_error)
    }

    /// Checks that a batch could be written now: under the lock, writes [`PROBE`] at the end
    /// and truncates it away. No fsync.
    pub(crate) fn probe(&self) -> Result<()> {
        let lock = self.lock_file()?;
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

    /// Under the lock: cuts power-loss debris near the end, then a torn tail.
    fn repair_on_open(&self) -> Result<()> {
        let lock = self.lock_file()?;
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

/// Opens the file for reading and appending, creating it and its directories if `create`.
fn open_storage(path: &Path, create: bool) -> Result<Arc<dyn Storage>> {
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
        let file = options
            .open(path)
            .map_err(|e| Error::io(Op::Open, path, e))?;
        return Ok(Arc::new(FileStorage { file }));
    }
    let parent = parent_dir(path);
    create_dirs(parent)?;
    let file = match options.clone().create_new(true).open(path) {
        Ok(file) => {
            sync_dir(parent)?;
            file
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options
            .open(path)
            .map_err(|e| Error::io(Op::Open, path, e))?,
        Err(e) => return Err(Error::io(Op::Create, path, e)),
    };
    Ok(Arc::new(FileStorage { file }))
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
