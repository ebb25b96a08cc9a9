//! SIGTERM and SIGINT, and the timing of a graceful stop.
//!
//! A signal only sets a flag ([`signal_hook::flag`]: async-signal-safe, no `unsafe` here);
//! the main thread polls it and runs the drain sequence in [`crate::server::run`]:
//!
//! ```text
//! SIGTERM ─► /readyz 503 ─► GRACE (2 s, still serving) ─► refuse new connections
//!         ─► answer what was received, closing each connection ─► join (≤ 2 s) ─► exit 0
//! ```
//!
//! So the process exits within about 4 s of the signal, under Kubernetes' default 30 s
//! `terminationGracePeriodSeconds` and the contract's 5 s. No line can be torn by the stop:
//! a visit is acknowledged only after its fsync, and a batch in flight either completes or is
//! cut as a torn tail by the next writer.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long requests are still served after the signal, with `/readyz` answering 503, so
/// that Services and load balancers stop sending new ones first.
pub const GRACE: Duration = Duration::from_secs(2);

/// How long to wait for workers to finish the request in hand (a slow `/visits` reader is
/// cut off after this).
pub const JOIN_DEADLINE: Duration = Duration::from_secs(2);

/// How often the main thread looks at the flags.
const TICK: Duration = Duration::from_millis(20);

/// The stop request: set by SIGTERM or SIGINT, or by [`Signals::trigger`].
#[derive(Debug, Clone, Default)]
pub struct Signals {
    term: Arc<AtomicBool>,
}

impl Signals {
    /// Routes SIGTERM and SIGINT to the flag.
    ///
    /// # Errors
    ///
    /// The handlers cannot be installed.
    pub fn register() -> io::Result<Signals> {
        let s = Signals::default();
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&s.term))?;
        }
        Ok(s)
    }

    /// Requests a stop, as a signal would (for embedding and tests).
    pub fn trigger(&self) {
        self.term.store(true, SeqCst);
    }

    /// True once a stop was requested.
    pub fn received(&self) -> bool {
        self.term.load(SeqCst)
    }

    /// Blocks until a stop is requested or `abort` returns true.
    pub fn wait(&self, abort: impl Fn() -> bool) {
        while !self.received() && !abort() {
            thread::sleep(TICK);
        }
    }
}

/// Sleeps for `d`, or less if `abort` turns true.
pub fn sleep_unless(d: Duration, abort: impl Fn() -> bool) {
    let until = Instant::now() + d;
    loop {
        let now = Instant::now();
        if now >= until || abort() {
            return;
        }
        thread::sleep(TICK.min(until - now));
    }
}

/// Joins the threads that finish within `deadline`; returns how many did not (they are left
/// to die with the process).
pub fn join_all(threads: Vec<JoinHandle<()>>, deadline: Duration) -> usize {
    let until = Instant::now() + deadline;
    let mut pending = threads;
    while !pending.is_empty() && Instant::now() < until {
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|t| t.is_finished());
        for t in done {
            // A worker that panicked has already been logged by its catch; nothing to add.
            let _ = t.join();
        }
        pending = rest;
        if !pending.is_empty() {
            thread::sleep(TICK);
        }
    }
    pending.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_all_waits_for_quick_threads_and_gives_up_on_stuck_ones() {
        let stuck = Arc::new(AtomicBool::new(true));
        let s = Arc::clone(&stuck);
        let threads = vec![
            thread::spawn(|| thread::sleep(Duration::from_millis(30))),
            thread::spawn(move || {
                while s.load(SeqCst) {
                    thread::sleep(Duration::from_millis(5));
                }
            }),
        ];
        let started = Instant::now();
        assert_eq!(join_all(threads, Duration::from_millis(300)), 1);
        assert!(started.elapsed() >= Duration::from_millis(300));
        stuck.store(false, SeqCst);
    }

    #[test]
    fn trigger_ends_wait() {
        let s = Signals::default();
        let t = s.clone();
        let h = thread::spawn(move || t.wait(|| false));
        s.trigger();
        h.join().unwrap();
        assert!(s.received());
    }
}
