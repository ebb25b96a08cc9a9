//! The append path: locking, tail repair, group commit, rollback and fsync.
//!
//! # How group commit works
//!
//! Appenders put their encoded records into the *open batch* under the state mutex. One of
//! them becomes the *leader*: it takes the whole open batch, leaves the mutex and does the
//! I/O — `flock`, cut a torn tail, one `write` (rolled back on failure), `funlock`, one
//! `fdatasync` — then publishes the outcome to every appender of the batch and wakes them.
//! Records that arrive meanwhile fill the next open batch, which the first appender to find
//! no leader at work leads. No mutex is held across I/O; there is no background thread.
//!
//! Two details make the batches full, which is what group commit is for:
//!
//! - **Waking.** A batch's appenders sleep on one futex word of their own, and one
//!   `wake_all` system call rouses them, after the mutex is released; they see the outcome
//!   without taking the mutex. (A condition variable would wake every waiter of every batch
//!   and make them queue on the mutex one by one.)
//! - **Lingering.** Appenders that wait for an fsync come back together when it ends, so the
//!   first of them to return would lead a batch of one while the rest are still waking up. A
//!   leader therefore *lingers* before taking the batch until as many appends have arrived as
//!   the last batch carried, for at most as long as the last fsync took (and never more than
//!   [`MAX_LINGER`]). It yields the processor meanwhile rather than sleeping: the appenders it
//!   waits for need the processor, and it sees the last of them arrive without being woken.
//!   A lone appender never lingers.
//!
//! On a 2-core virtual machine, 16 threads get 16 records per fsync and about 11 times the
//! appends per second of one thread (see BENCHMARKS.md).
//!
//! Only this module calls `sync_data`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::atomic::{
    AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::error::{Error, Op, Result};
use crate::reader::Reader;
use crate::repair::{self, Cut};
use crate::storage::{FileStorage, Storage, count_newlines, last_line_end, read_exact_at};
use crate::visit::{self, Visit};

/// Options for opening a [`Journal`]. The defaults are the durable ones.
///
/// ```
/// use visit_journal::Options;
/// use std::time::{Duration, Instant};
///
/// # fn main() -> visit_journal::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("visits.txt");
/// let journal = Options::new()
///     .lock_timeout(Duration::from_secs(5))
///     .open(&path)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    sync: bool,
    lock_timeout: Option<Duration>,
    create: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options::new()
    }
}

impl Options {
    /// The default options: every append is fsynced, and the lock is waited for as long as it
    /// takes.
    pub fn new() -> Options {
        Options {
            sync: true,
            lock_timeout: None,
            create: true,
        }
    }

    /// Whether appends call `fdatasync` before returning. Default: `true`.
    ///
    /// # Durability
    ///
    /// With `sync(false)`, an `Ok` from [`Journal::append`] means only that the record is in
    /// the operating system's page cache: a power loss can take it (and leave NUL debris, which
    /// the next open repairs). Everything else (locking, whole lines, rollback) holds. Meant
    /// for tests, benchmarks and bulk imports that sync at the end; never the default.
    pub fn sync(mut self, sync: bool) -> Options {
        self.sync = sync;
        self
    }

    /// How long to wait for the file lock before failing with [`Error::Locked`].
    /// Default: wait as long as it takes.
    ///
    /// Another writer holds the lock only while it writes a batch, so waits are short unless a
    /// process holds it on purpose (e.g. `flock visits.txt sleep 60`).
    pub fn lock_timeout(mut self, timeout: Duration) -> Options {
        self.lock_timeout = Some(timeout);
        self
    }

    /// Whether opening creates a missing file (and its directories). Default: `true`.
    ///
    /// With `create(false)`, opening a missing journal fails with [`Error::Io`] (`NotFound`):
    /// for tools that repair or append to an existing file and must not invent one.
    pub fn create(mut self, create: bool) -> Options {
        self.create = create;
        self
    }

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
    /// Bytes cut from the end of the file by repairs (torn tails and power-loss debris).
    pub repaired_bytes: u64,
    /// Appends (batches) that failed and were rolled back, or failed to sync.
    pub failed_batches: u64,
    /// Failed `fdatasync` calls (each poisons the handle).
    pub failed_syncs: u64,
}

#[derive(Debug, Default)]
struct Counters {
    records: AtomicU64,
    batches: AtomicU64,
    syncs: AtomicU64,
    bytes: AtomicU64,
    largest_batch: AtomicU64,
    repaired_bytes: AtomicU64,
    failed_batches: AtomicU64,
    failed_syncs: AtomicU64,
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
    /// Everything appenders coordinate on. Never held across I/O.
    state: Mutex<State>,
    /// `state.open.calls`, mirrored so that a lingering leader can watch it without taking
    /// the mutex from the appenders it waits for.
    open_calls: AtomicU64,
    counters: Counters,
}

#[derive(Debug)]
struct State {
    /// The open file. Replaced by [`Journal::reopen`]; the leader works on a clone of the
    /// `Arc`, and a reopen waits until no leader is at work.
    storage: Arc<dyn Storage>,
    /// Records waiting for the next leader.
    open: Batch,
    /// True while a thread does I/O outside the mutex (a leader, a reopen or a probe). One at a
    /// time is what makes the `flock` exclude threads too: flock locks belong to the open
    /// file, not to the thread.
    busy: bool,
    /// Set when an fsync failed (or a failed write could not be rolled back): the file may
    /// hold bytes nobody can vouch for, so nothing more is acknowledged until a reopen.
    poisoned: bool,
    /// How many appends the last batch carried: in steady state the same callers come back,
    /// so a leader lingers until as many have arrived.
    last_calls: u64,
    /// How long the last fsync took; bounds the linger.
    last_sync: Duration,
    /// Threads waiting for `busy` to clear for a reopen or a probe. While any waits, no new
    /// leader starts, so a steady stream of appends cannot starve them.
    idle_waiters: Vec<Thread>,
}

/// Where the appenders of a batch wait.
#[derive(Debug, Default)]
struct Signal {
    /// The batch's result, set once, by its leader.
    outcome: OnceLock<std::result::Result<(), Arc<Error>>>,
    /// A futex word the appenders sleep on (`atomic_wait`). It is bumped, under the state
    /// mutex, whenever they should look again: the outcome is published, or one of them is to
    /// lead. A sleeper reads it under the mutex, so no bump can slip between its last look and
    /// its sleep; and one `wake_all` rouses a whole batch in one system call.
    bell: AtomicU32,
}

/// Someone to wake once the state mutex is released (woken under it, they would only queue
/// up on it).
#[must_use = "someone must be woken"]
enum Wake {
    /// Every appender of a finished batch.
    All(Arc<Signal>),
    /// One appender of the open batch, to lead it.
    One(Arc<Signal>),
    /// A reopen or probe waiting for its turn.
    Thread(Thread),
}

impl Wake {
    fn wake(self) {
        match self {
            Wake::All(signal) => atomic_wait::wake_all(&signal.bell),
            Wake::One(signal) => atomic_wait::wake_one(&signal.bell),
            Wake::Thread(thread) => thread.unpark(),
        }
    }
}

impl Signal {
    /// Bumps the bell (call under the state mutex); ring it with [`Wake::wake`] after.
    fn bump(&self) {
        self.bell.fetch_add(1, Release);
    }
}

#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    records: u64,
    /// `append`/`append_batch` calls in the batch.
    calls: u64,
    /// Every appender of the batch holds a clone and waits on it.
    signal: Arc<Signal>,
}

impl Batch {
    /// Publishes the outcome (under the state mutex). Only the leader that took the batch
    /// finishes it, once, so `set` cannot fail.
    fn finish(self, result: std::result::Result<(), Arc<Error>>) -> Wake {
        let _ = self.signal.outcome.set(result);
        self.signal.bump();
        Wake::All(self.signal)
    }
}

/// The most a leader lingers for appenders to come back (see the module docs).
const MAX_LINGER: Duration = Duration::from_micros(500);

/// A thread's turn at doing I/O (`busy`). Dropping it ends the turn; if the thread unwinds
/// while it holds a batch, the batch fails and the handle is poisoned (nobody knows what
/// reached the file), so its appenders never hang.
struct Turn<'a> {
    journal: &'a Journal,
    /// The batch a leader has not finished yet.
    batch: Option<Batch>,
    /// Set when the turn was ended under a lock the owner already holds.
    ended: bool,
}

impl<'a> Turn<'a> {
    /// A turn the caller has just taken (by setting `busy`), holding no batch yet.
    fn new(journal: &'a Journal) -> Turn<'a> {
        Turn {
            journal,
            batch: None,
            ended: false,
        }
    }

    /// Ends the turn under the lock the caller holds; returns whom to wake once it is released.
    #[must_use = "the next thread must be woken"]
    fn end(mut self, state: &mut State) -> Option<Wake> {
        self.ended = true;
        state.end_turn()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut state = self.journal.lock_state();
        let finished = self.batch.take().map(|batch| {
            state.poisoned = true;
            batch.finish(Err(Arc::new(self.journal.poisoned())))
        });
        let next = state.end_turn();
        drop(state);
        finished.into_iter().chain(next).for_each(Wake::wake);
    }
}

impl State {
    /// Clears `busy`; returns whoever waits for it, to be woken: a reopen or probe first,
    /// otherwise one appender of the open batch, to lead it.
    fn end_turn(&mut self) -> Option<Wake> {
        self.busy = false;
        // A reopen or probe goes first; the others stay registered, so leaders keep out.
        if let Some(waiter) = self.idle_waiters.first() {
            Some(Wake::Thread(waiter.clone()))
        } else if self.open.calls > 0 {
            self.open.signal.bump();
            Some(Wake::One(Arc::clone(&self.open.signal)))
        } else {
            None
        }
    }
}

/// The held `flock`. Dropping it unlocks (for unwinding); the normal path calls `release` to
/// see the error.
struct FileLock<'s> {
    storage: &'s dyn Storage,
}

impl FileLock<'_> {
    fn release(self) -> io::Result<()> {
        let storage = self.storage;
        mem::forget(self);
        storage.unlock()
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = self.storage.unlock();
    }
}

/// 4 KiB of a byte that a torn record may contain: what [`Journal::check_writable`] writes
/// and takes back.
const PROBE: [u8; repair::MAX_TORN as usize] = [b'0'; repair::MAX_TORN as usize];

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
        let storage = open_storage(path, options.create)?;
        Journal::with_storage(path, options, storage)
    }

    /// A journal whose file operations go through `storage` (tests inject faults here).
    pub(crate) fn with_storage(
        path: &Path,
        options: Options,
        storage: Arc<dyn Storage>,
    ) -> Result<Journal> {
        let journal = Journal {
            path: path.to_path_buf(),
            options,
            state: Mutex::new(State {
                storage: Arc::clone(&storage),
                open: Batch::default(),
                busy: false,
                poisoned: false,
                last_calls: 0,
                last_sync: Duration::ZERO,
                idle_waiters: Vec::new(),
            }),
            open_calls: AtomicU64::new(0),
            counters: Counters::default(),
        };
        journal.repair_on_open(&*storage)?;
        Ok(journal)
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
    /// left in the file. If the fsync itself failed ([`Error::is_poisoned`]), the record may
    /// or may not be on disk — but whole or not at all — and the handle refuses appends until
    /// [`Journal::reopen`].
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
        self.commit(&bytes, visits.len() as u64)
    }

    /// Adds `bytes` (whole records) to the open batch and waits until a leader has written
    /// and synced it, leading it ourselves if nobody else does.
    ///
    /// Waiting is `park`/`unpark` rather than a condition variable: a finished batch wakes
    /// exactly its own appenders, and they return without touching the state mutex, so under
    /// load the appenders coming back do not queue up on it.
    fn commit(&self, bytes: &[u8], records: u64) -> Result<()> {
        let mut state = self.lock_state();
        if state.poisoned {
            return Err(self.poisoned());
        }
        state.open.bytes.extend_from_slice(bytes);
        state.open.records += records;
        state.open.calls += 1;
        self.open_calls.store(state.open.calls, Relaxed);
        let signal = Arc::clone(&state.open.signal);
        let mut locked = Some(state);
        loop {
            let state = match locked.take() {
                Some(state) => state,
                // Woken: most often because the outcome is out, which needs no lock to see.
                None => match signal.outcome.get() {
                    Some(result) => return result.clone().map_err(|e| duplicate(&e)),
                    None => self.lock_state(),
                },
            };
            // Under the mutex, the outcome and the bell are consistent with each other.
            if let Some(result) = signal.outcome.get() {
                return result.clone().map_err(|e| duplicate(&e));
            }
            let open = Arc::ptr_eq(&state.open.signal, &signal);
            if open && !state.busy && state.idle_waiters.is_empty() {
                self.lead(state);
                continue;
            }
            let seen = signal.bell.load(Acquire);
            drop(state);
            atomic_wait::wait(&signal.bell, seen);
        }
    }

    /// Lingers for the batch to fill, then writes and syncs it outside the mutex and publishes
    /// its outcome.
    fn lead<'a>(&'a self, mut state: MutexGuard<'a, State>) {
        state.busy = true;
        let turn = Turn::new(self);
        let target = state.last_calls;
        if self.options.sync && state.open.calls < target {
            // Yield rather than sleep: the appenders we wait for need the processor, and we
            // notice the last of them without being woken (a context switch we would pay for
            // on every batch).
            let deadline = Instant::now() + state.last_sync.min(MAX_LINGER);
            drop(state);
            while self.open_calls.load(Relaxed) < target && Instant::now() < deadline {
                thread::yield_now();
            }
            state = self.lock_state();
        }
        self.write_and_sync(state, turn);
    }

    /// Takes the open batch, writes and syncs it outside the mutex, and publishes its outcome.
    fn write_and_sync<'a>(&'a self, mut state: MutexGuard<'a, State>, mut turn: Turn<'a>) {
        let batch = turn.batch.insert(mem::take(&mut state.open));
        self.open_calls.store(0, Relaxed);
        state.last_calls = batch.calls;
        let storage = Arc::clone(&state.storage);
        let poisoned = state.poisoned;
        drop(state);

        let result = if poisoned {
            // An fsync failed while this batch was filling.
            Err(self.poisoned())
        } else {
            self.write_batch(&*storage, &batch.bytes).and_then(|()| {
                let started = Instant::now();
                self.sync(&*storage).map(|()| started.elapsed())
            })
        };

        let mut state = self.lock_state();
        let c = &self.counters;
        let batch = turn.batch.take().unwrap_or_default();
        let finished = match result {
            Ok(sync_time) => {
                state.last_sync = sync_time;
                c.records.fetch_add(batch.records, Relaxed);
                c.bytes.fetch_add(batch.bytes.len() as u64, Relaxed);
                c.batches.fetch_add(1, Relaxed);
                c.largest_batch.fetch_max(batch.records, Relaxed);
                batch.finish(Ok(()))
            }
            Err(e) => {
                c.failed_batches.fetch_add(1, Relaxed);
                // Poison before publishing: an appender that sees the failure and appends
                // again must find the handle poisoned.
                if e.is_poisoned() {
                    state.poisoned = true;
                }
                batch.finish(Err(Arc::new(e)))
            }
        };
        let next = turn.end(&mut state);
        drop(state);
        finished.wake();
        if let Some(next) = next {
            next.wake();
        }
    }

    /// The leader's I/O for one batch before the fsync: lock, cut a torn tail, write, unlock.
    fn write_batch(&self, storage: &dyn Storage, bytes: &[u8]) -> Result<()> {
        let lock = self.lock_file(storage)?;
        let written = self
            .cut_torn_tail(storage)
            .and_then(|start| self.write_or_roll_back(storage, bytes, start));
        // Unlock before the fsync: our bytes are whole lines, so nothing another writer does
        // under the lock can touch them, and holding the lock across the fsync would stop other
        // processes from batching behind us.
        let unlocked = lock.release().map_err(|e| self.io(Op::Unlock, e));
        written?;
        // If unlocking failed, the lock is released only when the file is closed: the error
        // poisons the handle (see `Error::is_poisoned`), and reopening is the way out.
        unlocked
    }

    /// Writes `bytes` at the end (`start`); on failure truncates back to `start`.
    fn write_or_roll_back(&self, storage: &dyn Storage, bytes: &[u8], start: u64) -> Result<()> {
        let Err(write_error) = write_all(storage, bytes) else {
            return Ok(());
        };
        let write_error = self.io(Op::Write, write_error);
        if let Err(e) = storage.truncate(start) {
            // Part of the batch stays in the file and we cannot take it back: refuse to
            // acknowledge anything more until a reopen (whose repair cuts a torn tail).
            return Err(self.io(Op::RollBack, e));
        }
        // Make the rollback durable too, so a crash cannot resurrect a half-written batch.
        if self.options.sync {
            self.sync(storage)?;
        }
        Err(write_error)
    }

    fn sync(&self, storage: &dyn Storage) -> Result<()> {
        if !self.options.sync {
            return Ok(());
        }
        match storage.sync_data() {
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
    fn lock_file<'s>(&self, storage: &'s dyn Storage) -> Result<FileLock<'s>> {
        match storage.lock(self.options.lock_timeout) {
            Ok(true) => Ok(FileLock { storage }),
            Ok(false) => Err(Error::Locked {
                path: self.path.clone(),
            }),
            Err(e) => Err(self.io(Op::Lock, e)),
        }
    }

    /// Under the lock: cuts a torn last line, if any, and returns the new length.
    fn cut_torn_tail(&self, storage: &dyn Storage) -> Result<u64> {
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
        self.apply(storage, len, repair::torn_tail(start, len, &tail))
    }

    /// Carries out a repair decision; returns the file's length afterwards.
    fn apply(&self, storage: &dyn Storage, len: u64, cut: Cut) -> Result<u64> {
        match cut {
            Cut::Nothing => Ok(len),
            Cut::At(at) => {
                storage.truncate(at).map_err(|e| self.io(Op::Truncate, e))?;
                self.counters.repaired_bytes.fetch_add(len - at, Relaxed);
                Ok(at)
            }
            Cut::Refuse { offset, reason } => Err(Error::Corrupt {
                path: self.path.clone(),
                line: count_newlines(storage, 0, offset).map_err(|e| self.io(Op::Read, e))? + 1,
                offset,
                reason,
            }),
        }
    }

    fn read_tail(&self, storage: &dyn Storage, len: u64, max: u64) -> Result<Vec<u8>> {
        let n = len.min(max);
        let mut tail = vec![0; n as usize];
        read_exact_at(storage, &mut tail, len - n).map_err(|e| self.io(Op::Read, e))?;
        Ok(tail)
    }

    /// Under the lock: cuts power-loss debris near the end, then a torn tail.
    fn repair_on_open(&self, storage: &dyn Storage) -> Result<()> {
        let lock = self.lock_file(storage)?;
        let repaired = (|| {
            let len = storage.len().map_err(|e| self.io(Op::Stat, e))?;
            let window = self.read_tail(storage, len, repair::DEBRIS_WINDOW + 1)?;
            match repair::power_loss_debris(len, &window) {
                // Deeper NUL bytes are corruption that readers report; never cut.
                Cut::Refuse { .. } => {}
                cut => {
                    self.apply(storage, len, cut)?;
                }
            }
            self.cut_torn_tail(storage)
        })();
        let unlocked = lock.release().map_err(|e| self.io(Op::Unlock, e));
        repaired?;
        unlocked
    }

    /// Replaces the file handle with a fresh one, repairing the tail again, and clears the
    /// poisoned state.
    ///
    /// Call it after an append failed with [`Error::is_poisoned`]: the new handle starts with
    /// a clean slate (no pending fsync error), and the repair runs again. It also picks up a
    /// file that was moved away and recreated (log rotation). Appends wait while it runs.
    ///
    /// # Errors
    ///
    /// As [`Journal::open`]. On error the old handle stays, still poisoned if it was (and
    /// poisoned if the error [`is_poisoned`](Error::is_poisoned), as every error that says so
    /// poisons the handle it came from).
    pub fn reopen(&self) -> Result<()> {
        self.exclusive(|old, poisoned| {
            if poisoned {
                // A handle is poisoned by a failed unlock among other things; a lock still held
                // by the old file would block the new one's repair forever. Unlocking a file
                // that holds no lock is harmless.
                let _ = old.unlock();
            }
            let storage = open_storage(&self.path, self.options.create)?;
            self.repair_on_open(&*storage)?;
            // We are the only thread doing I/O: no leader holds the old storage.
            let mut state = self.lock_state();
            state.storage = storage;
            state.poisoned = false;
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
    /// ([`Op::Truncate`]: the probe is left as a torn tail, which the next append cuts; nothing
    /// is poisoned); as [`Journal::append`] otherwise. If the lock cannot be released
    /// ([`Op::Unlock`]), the handle is poisoned, as after an append.
    pub fn check_writable(&self) -> Result<()> {
        self.exclusive(|storage, poisoned| {
            if poisoned {
                return Err(self.poisoned());
            }
            let lock = self.lock_file(storage)?;
            let probed = self.cut_torn_tail(storage).and_then(|start| {
                let written = write_all(storage, &PROBE).map_err(|e| self.io(Op::Write, e));
                // Not a roll back: if this cut fails, the probe is a torn tail (it is no longer
                // than one), which the next writer cuts; nothing needs a reopen.
                let cut = storage
                    .truncate(start)
                    .map_err(|e| self.io(Op::Truncate, e));
                written.and(cut)
            });
            let unlocked = lock.release().map_err(|e| self.io(Op::Unlock, e));
            probed.and(unlocked)
        })
    }

    /// Waits until no other thread does I/O on the journal, then runs `op` as the only one.
    fn exclusive<T>(&self, op: impl FnOnce(&dyn Storage, bool) -> Result<T>) -> Result<T> {
        let mut state = self.lock_state();
        let me = thread::current();
        while state.busy {
            if !state.idle_waiters.iter().any(|t| t.id() == me.id()) {
                state.idle_waiters.push(me.clone());
            }
            drop(state);
            thread::park();
            state = self.lock_state();
        }
        state.idle_waiters.retain(|t| t.id() != me.id());
        state.busy = true;
        let storage = Arc::clone(&state.storage);
        let poisoned = state.poisoned;
        drop(state);
        let turn = Turn::new(self);
        let result = op(&*storage, poisoned);
        let mut state = self.lock_state();
        if let Err(e) = &result {
            // The one rule, as for appends: an error that says it poisons, does.
            state.poisoned |= e.is_poisoned();
        }
        let next = turn.end(&mut state);
        drop(state);
        if let Some(next) = next {
            next.wake();
        }
        result
    }

    /// True if the handle refuses appends until [`Journal::reopen`]: an operation failed with
    /// an error whose [`Error::is_poisoned`] is true (a failed fsync, a failed write that
    /// could not be rolled back, a lock that could not be released).
    pub fn is_poisoned(&self) -> bool {
        self.lock_state().poisoned
    }

    /// What this handle has done since it was opened.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            records: c.records.load(Relaxed),
            batches: c.batches.load(Relaxed),
            syncs: c.syncs.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            largest_batch: c.largest_batch.load(Relaxed),
            repaired_bytes: c.repaired_bytes.load(Relaxed),
            failed_batches: c.failed_batches.load(Relaxed),
            failed_syncs: c.failed_syncs.load(Relaxed),
        }
    }

    /// A [`Reader`] over the journal's complete lines, as of now.
    ///
    /// # Errors
    ///
    /// As [`Reader::open`].
    pub fn reader(&self) -> Result<Reader> {
        Reader::open(&self.path)
    }

    /// The last `n` visits, oldest first, reading backwards from the end.
    ///
    /// # Errors
    ///
    /// As [`Reader::tail`]; [`Error::Corrupt`] for the first malformed line among them.
    pub fn tail(&self, n: u64) -> Result<Vec<Visit>> {
        let mut reader = self.reader()?;
        reader.tail(n)?;
        reader.collect()
    }

    /// The number of complete lines (records, and any corrupt lines) in the journal.
    ///
    /// Counts newlines without parsing, in constant memory.
    ///
    /// # Errors
    ///
    /// As [`Reader::open`], or [`Error::Io`] if reading fails.
    pub fn count(&self) -> Result<u64> {
        self.reader()?.count_lines()
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // The state is consistent at every point a thread could panic while holding the mutex
        // (none of its updates can panic halfway), so a poisoned mutex is safe to use.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn poisoned(&self) -> Error {
        Error::Poisoned {
            path: self.path.clone(),
        }
    }

    fn io(&self, op: Op, source: io::Error) -> Error {
        Error::io(op, &self.path, source)
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

/// A copy of an error for each appender of a failed batch.
fn duplicate(err: &Error) -> Error {
    match err {
        Error::Io { op, path, source } => Error::Io {
            op: *op,
            path: path.clone(),
            source: match source.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(source.kind(), source.to_string()),
            },
        },
        Error::Corrupt {
            path,
            line,
            offset,
            reason,
        } => Error::Corrupt {
            path: path.clone(),
            line: *line,
            offset: *offset,
            reason,
        },
        Error::Parse { reason } => Error::Parse { reason },
        Error::Unrepresentable { reason } => Error::Unrepresentable { reason },
        Error::Poisoned { path } => Error::Poisoned { path: path.clone() },
        Error::Locked { path } => Error::Locked { path: path.clone() },
    }
}

#[cfg(test)]
mod tests {
    //! Faults injected through the same `Storage` seam production uses.

    use super::*;
    use crate::storage::faulty::{Faults, FaultyStorage};
    use std::sync::Mutex;

    const ENOSPC: i32 = 28;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        faults: Arc<Mutex<Faults>>,
        journal: Journal,
    }

    impl Fixture {
        fn new() -> Fixture {
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
            let journal = Journal::with_storage(&path, Options::new(), storage).unwrap();
            Fixture {
                _dir: dir,
                path,
                faults,
                journal,
            }
        }

        fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
            self.faults.lock().unwrap()
        }

        fn contents(&self) -> String {
            fs::read_to_string(&self.path).unwrap()
        }
    }

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

        // The unsynced record is whole (it may or may not survive a crash), never torn.
        assert_eq!(f.contents(), lines(&[1, 2]));
        f.journal.reopen().unwrap();
        f.journal.append(&visit(4)).unwrap();
        assert_eq!(f.contents(), lines(&[1, 2, 4]));
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
            faults.fail_truncates = 1;
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

    #[test]
    fn every_appender_of_a_failed_batch_gets_the_error() {
        let f = Fixture::new();
        f.faults().fail_syncs = 1;
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|n| {
                    let journal = &f.journal;
                    s.spawn(move || journal.append(&visit(n)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // The first batch's fsync fails; every later batch finds the handle poisoned.
        for r in &results {
            assert!(r.as_ref().is_err_and(Error::is_poisoned), "{r:?}");
        }
        let stats = f.journal.stats();
        assert_eq!((stats.records, stats.failed_syncs), (0, 1));
    }

    #[test]
    fn a_panicking_leader_fails_its_batch_instead_of_hanging_it() {
        let f = Fixture::new();
        f.faults().panic_in_write = true;
        let outcome = std::thread::scope(|s| s.spawn(|| f.journal.append(&visit(1))).join());
        assert!(outcome.is_err(), "the leader panicked");
        // Nobody is left waiting on a leader that is gone, and nothing is acknowledged after
        // an I/O path that did not finish.
        assert!(f.journal.is_poisoned());
        assert!(matches!(
            f.journal.append(&visit(2)),
            Err(Error::Poisoned { .. })
        ));
        f.journal.reopen().unwrap();
        f.journal.append(&visit(3)).unwrap();
        assert_eq!(f.contents(), lines(&[3]));
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
