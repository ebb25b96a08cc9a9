//! Group commit: many appending threads, one `write` and one `fdatasync` per batch.
//!
//! # How it works
//!
//! Appenders put their encoded records into the *open batch* under the state mutex. One of
//! them becomes the *leader*: it takes the whole open batch and the journal's [`Io`] (the
//! file; whoever holds it is the one thread doing I/O), leaves the mutex and hands the batch
//! to [`Io::append`] — `flock`, cut a torn tail, one `write` (rolled back on failure),
//! `funlock`, one `fdatasync` — then publishes the outcome to every appender of the batch
//! and wakes them. Records that arrive meanwhile fill the next open batch, which the first
//! appender to find the `Io` back leads. No mutex is held across I/O; there is no background
//! thread. A batch goes to the file whole, in one call, so it is never split.
//!
//! # Why a futex and a linger, not a condition variable
//!
//! The textbook version (okaywal's `synchronize_locked`) waits on a condvar and wakes with
//! `notify_all`. Measured on a 2-core virtual machine whose `fdatasync` takes about 135 µs
//! (BENCHMARKS.md, and the closing notes of issues 3 and 4), it gave 16 threads about 7 times
//! the appends per second of one thread; two changes took that to about 10 times:
//!
//! - **Waking: one futex word per batch.** A batch's appenders sleep on a word of their own
//!   ([`Signal::bell`], `atomic_wait`), and one `wake_all` system call rouses them after the
//!   mutex is released; they read the outcome without taking the mutex. A condvar wakes every
//!   waiter of every batch, and each must then take the mutex in turn just to learn whether
//!   it is done: with 16 threads, the appenders coming back queue on the mutex one by one
//!   instead of appending again together. One futex call instead of 16 unparks took 16
//!   threads from about 7 to about 9 times one thread; waking 15 threads still costs about
//!   40 µs of inter-processor interrupts, the bulk of the remaining latency. Behind the
//!   server (BENCHMARKS.md, HTTP runs A–C with `notify_all`, run D with this scheme and the
//!   linger), batches grew from 5.6–6.3 to 9.1 visits per fsync on average.
//! - **Lingering.** Appenders that wait for an fsync come back together when it ends, so the
//!   first of them to return would lead a batch of one while the rest are still waking up. A
//!   leader therefore *lingers* before taking the batch, until as many appends have arrived
//!   as the last batch carried, for at most as long as the last fsync took (and never more
//!   than [`MAX_LINGER`]). It yields the processor meanwhile rather than sleeping: the
//!   appenders it waits for need the processor, and it sees the last of them arrive without
//!   being woken. A lone appender never lingers. The yielding linger took 16 threads from 9 to
//!   about 10 times one thread (9.5–10.6 in five runs), with 15.4–16.0 records per fsync.
//!
//! # Invariants
//!
//! - At most one thread holds the [`Io`] (a [`Turn`]); the others wait, or leave their records
//!   for it. `State::io` is `None` exactly while a turn is out.
//! - Every batch is finished exactly once, by the thread whose turn took it, even if that
//!   thread unwinds ([`Turn`]'s `Drop`): nobody waits forever.
//! - The handle is poisoned exactly when an operation's error [`Error::is_poisoned`], and it
//!   is poisoned before that error is published, so an appender that sees it and appends again
//!   is refused.
//! - A reopen or probe waiting for the `Io` keeps new leaders out, so a steady stream of
//!   appends cannot starve it.
//!
//! Imports point down only: `writer` → `commit` → `locked` → `storage`.

use std::mem;
use std::path::PathBuf;
use std::sync::atomic::{
    AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::locked::{Counters, Io};

/// The most a leader lingers for appenders to come back (see the module docs).
const MAX_LINGER: Duration = Duration::from_micros(500);

/// The coordination of one journal handle's appenders.
#[derive(Debug)]
pub(crate) struct Group {
    /// What errors name.
    path: PathBuf,
    /// Everything appenders coordinate on. Never held across I/O.
    state: Mutex<State>,
    /// `state.open.calls`, mirrored so that a lingering leader can watch it without taking
    /// the mutex from the appenders it waits for.
    open_calls: AtomicU64,
    /// Whether appends fsync: only then is a batch worth lingering for.
    linger: bool,
    counters: Arc<Counters>,
}

#[derive(Debug)]
struct State {
    /// The open file, here while no thread does I/O. A leader, a reopen or a probe takes it
    /// for its turn (see [`Turn`]); one at a time is what makes the `flock` exclude threads
    /// too, since flock locks belong to the open file, not to the thread.
    io: Option<Io>,
    /// Records waiting for the next leader.
    open: Batch,
    /// Set when an operation failed with an error that poisons (an fsync, a rollback, an
    /// unlock): the file may hold bytes nobody can vouch for, so nothing more is acknowledged
    /// until a reopen.
    poisoned: bool,
    /// How many appends the last batch carried: in steady state the same callers come back,
    /// so a leader lingers until as many have arrived.
    last_calls: u64,
    /// How long the last fsync took; bounds the linger.
    last_sync: Duration,
    /// Threads waiting for the `Io` for a reopen or a probe. While any waits, no new leader
    /// starts, so a steady stream of appends cannot starve them.
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

impl Signal {
    /// Bumps the bell (call under the state mutex); ring it with [`Wake::wake`] after.
    fn bump(&self) {
        self.bell.fetch_add(1, Release);
    }
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

/// Records on their way to the file, and who waits for them.
#[derive(Debug, Default)]
struct Batch {
    /// Whole encoded records, in the order their appends arrived.
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

/// A thread's turn at doing I/O: it holds the [`Io`]. Ending it gives the `Io` back; if the
/// thread unwinds while it holds a batch, the batch fails and the handle is poisoned (nobody
/// knows what reached the file), so its appenders never hang.
struct Turn<'a> {
    group: &'a Group,
    /// `Some` until the turn ends.
    io: Option<Io>,
    /// The batch a leader has not finished yet.
    batch: Option<Batch>,
}

impl<'a> Turn<'a> {
    /// Takes the `Io` for a turn, if no other thread has it.
    fn take(group: &'a Group, state: &mut State) -> Option<Turn<'a>> {
        let io = state.io.take()?;
        Some(Turn {
            group,
            io: Some(io),
            batch: None,
        })
    }

    /// The file, and the bytes of the batch this turn carries (none for a reopen or probe).
    fn parts(&mut self) -> (&mut Io, &[u8]) {
        let io = self
            .io
            .as_mut()
            .expect("a turn holds the Io until it ends, and it ends by value");
        let bytes = self.batch.as_ref().map_or(&[][..], |b| &b.bytes[..]);
        (io, bytes)
    }

    /// Ends the turn under the lock the caller holds: gives the `Io` back and returns whom to
    /// wake once the lock is released.
    #[must_use = "the next thread must be woken"]
    fn end(mut self, state: &mut State) -> Option<Wake> {
        state.io = self.io.take();
        state.next_turn()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Some(io) = self.io.take() else {
            return; // Ended normally.
        };
        // Unwinding from the middle of a turn.
        let mut state = self.group.lock_state();
        state.io = Some(io);
        let finished = self.batch.take().map(|batch| {
            state.poisoned = true;
            batch.finish(Err(Arc::new(self.group.poisoned())))
        });
        let next = state.next_turn();
        drop(state);
        finished.into_iter().chain(next).for_each(Wake::wake);
    }
}

impl State {
    /// Called when the `Io` is back: returns whoever waits for it, to be woken: a reopen or
    /// probe first, otherwise one appender of the open batch, to lead it.
    fn next_turn(&mut self) -> Option<Wake> {
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

impl Group {
    /// The coordination of appends to the file `io`.
    pub(crate) fn new(path: PathBuf, io: Io, linger: bool, counters: Arc<Counters>) -> Group {
        Group {
            path,
            state: Mutex::new(State {
                io: Some(io),
                open: Batch::default(),
                poisoned: false,
                last_calls: 0,
                last_sync: Duration::ZERO,
                idle_waiters: Vec::new(),
            }),
            open_calls: AtomicU64::new(0),
            linger,
            counters,
        }
    }

    /// Adds `bytes` (whole records) to the open batch and waits until a leader has written
    /// and synced it, leading it ourselves if nobody else does.
    pub(crate) fn commit(&self, bytes: &[u8], records: u64) -> Result<()> {
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
            let mut state = match locked.take() {
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
            if open
                && state.idle_waiters.is_empty()
                && let Some(turn) = Turn::take(self, &mut state)
            {
                self.lead(state, turn);
                continue;
            }
            let seen = signal.bell.load(Acquire);
            drop(state);
            atomic_wait::wait(&signal.bell, seen);
        }
    }

    /// Lingers for the batch to fill, then writes and syncs it outside the mutex and publishes
    /// its outcome.
    fn lead<'a>(&'a self, mut state: MutexGuard<'a, State>, mut turn: Turn<'a>) {
        let target = state.last_calls;
        if self.linger && state.open.calls < target {
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

        let batch = turn.batch.insert(mem::take(&mut state.open));
        self.open_calls.store(0, Relaxed);
        state.last_calls = batch.calls;
        let poisoned = state.poisoned;
        drop(state);

        let result = if poisoned {
            // An fsync failed while this batch was filling.
            Err(self.poisoned())
        } else {
            let (io, bytes) = turn.parts();
            io.append(bytes)
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
                c.batch_committed(batch.records);
                batch.finish(Ok(()))
            }
            Err(e) => {
                c.failed_batches.fetch_add(1, Relaxed);
                // Poison before publishing: an appender that sees the failure and appends
                // again must find the handle poisoned.
                state.poisoned |= e.is_poisoned();
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

    /// Waits until no other thread does I/O on the journal, then runs `op` with the `Io` as
    /// the only one. `op` gets the poisoned flag to read or clear (a reopen clears it); an
    /// error from `op` that [`Error::is_poisoned`] poisons the handle, as in appends.
    pub(crate) fn exclusive<T>(
        &self,
        op: impl FnOnce(&mut Io, &mut bool) -> Result<T>,
    ) -> Result<T> {
        let mut state = self.lock_state();
        let me = thread::current();
        let mut turn = loop {
            if let Some(turn) = Turn::take(self, &mut state) {
                break turn;
            }
            if !state.idle_waiters.iter().any(|t| t.id() == me.id()) {
                state.idle_waiters.push(me.clone());
            }
            drop(state);
            thread::park();
            state = self.lock_state();
        };
        state.idle_waiters.retain(|t| t.id() != me.id());
        let mut poisoned = state.poisoned;
        drop(state);

        let result = op(turn.parts().0, &mut poisoned);

        let mut state = self.lock_state();
        state.poisoned = poisoned;
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

    /// How many appends wait in the open batch (for tests that set a scene).
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> u64 {
        self.open_calls.load(Relaxed)
    }

    /// True if the handle refuses appends until reopened.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.lock_state().poisoned
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
}

/// A copy of an error for each appender of a failed batch.
fn duplicate(err: &Error) -> Error {
    match err {
        Error::Io { op, path, source } => Error::Io {
            op: *op,
            path: path.clone(),
            source: match source.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(source.kind(), source.to_string()),
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
