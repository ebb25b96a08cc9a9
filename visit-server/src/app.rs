//! The state every worker shares: the journal, the metrics and the server's health.
//!
//! Health has three inputs, and `/readyz` answers 200 only when all are clear:
//! - **draining**: set once by SIGTERM/SIGINT, never cleared;
//! - **poisoned**: the journal's own flag after a failed fsync, cleared by a successful
//!   [`Journal::reopen`];
//! - **unwritable**: the last append failed (a full disk, a lock timeout, a foreign
//!   non-record at the end of the file), cleared by the next successful append or
//!   [`Journal::check_writable`] probe.
//!
//! An unready pod receives no `GET /` traffic, so it cannot wait for a visit to find out that
//! the fault has cleared: [`App::heal`], called by `/readyz` itself (and after each failed
//! append), reopens a poisoned journal or re-runs the probe, at most once a second.
//!
//! Liveness ([`App::liveness`], `/livez`) fails in two cases only: the listener died, or the
//! journal has been unable to record for more than [`STUCK_LIMIT`] (poisoned, and every
//! reopen since failed: a batch whose fsync failed could not be settled). Then only a restart
//! helps (a new process opens the journal afresh and repairs it), and Kubernetes restarts a
//! container whose liveness probe fails; nothing restarts one that is merely unready.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use visit_journal::{Journal, Visit};

use crate::config::Config;
use crate::log::{self, Value};
use crate::metrics::{AppendError, Gauges, Metrics};
use crate::token::ReadTokens;

/// How often [`App::heal`] may touch the disk: a probe takes the journal's lock and writes
/// 4 KiB, so a storm of readiness probes must not turn into a storm of writes.
pub const HEAL_INTERVAL: Duration = Duration::from_secs(1);

/// How long an append waits for the journal's file lock before answering 503. Another
/// writer holds it only for one `write`; a holder that keeps it longer (`flock visits.txt
/// sleep 60`) must not pin every worker.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// How many `/visits` responses may stream at once (see [`App::open_stream`]); `/stats`
/// computations and cluster views take a slot too.
pub const MAX_STREAMS: usize = 16;

/// How many cluster views (`?scope=cluster`) may be in progress at once (see
/// [`App::open_fanout`]).
pub const MAX_FANOUTS: usize = 4;

/// How long the journal may be unable to record (poisoned, no reopen succeeding) before
/// `/livez` fails so that the container is restarted (CONTRACT §10).
pub const STUCK_LIMIT: Duration = Duration::from_secs(60);

/// How often one kind of rotation or retention failure is logged: a lasting one (a damaged
/// summary pauses retention, and each batch or probe retries it) must not log a line per
/// visit.
pub const LIFECYCLE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Shared state of a running server.
#[derive(Debug)]
pub struct App {
    /// The configuration the server was started with (for logs and for routes).
    pub config: Config,
    /// The one journal handle: sharing it is what lets concurrent `GET /` share an fsync.
    pub journal: Journal,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Since when the journal has been unable to record (see [`STUCK_LIMIT`]).
    stuck: Stuck,
    /// When each kind of rotation or retention failure was last logged, and how many were
    /// not logged since (see [`LIFECYCLE_LOG_INTERVAL`]).
    lifecycle_logged: Mutex<HashMap<String, (Instant, u64)>>,
    /// Set by the shutdown sequence: `/readyz` answers 503 from then on.
    draining: AtomicBool,
    /// Set when the listener died: `/healthz` answers 503 and the process exits non-zero.
    fatal: AtomicBool,
    /// The last append or probe failed; see the module docs.
    unwritable: AtomicBool,
    /// When [`App::heal`] last touched the disk. The mutex also makes sure only one thread
    /// heals at a time; the others go on with their request.
    last_heal: Mutex<Option<Instant>>,
    /// `/visits` responses in progress. Shared with the response bodies, which release their
    /// slot when tiny_http drops them.
    streams: Arc<AtomicUsize>,
    /// Cluster views in progress, from the fan-out until their body is dropped: each holds
    /// its peers' answers in memory (see `cluster`).
    fanouts: Arc<AtomicUsize>,
    /// This replica's name: `--name`, or the host name.
    pub name: String,
    /// The address the listener is bound to (the configured one may have port 0), set by
    /// `server::run`; the cluster view recognises itself among its peers by it.
    bound: OnceLock<SocketAddr>,
    /// The HTTP client for peers; it keeps their idle connections for reuse.
    pub peer_agent: ureq::Agent,
    /// The tokens `/visits`, `/stats` and `/dashboard` require, loaded by `main` from
    /// `--read-token-file` ([`App::with_read_tokens`]). `None` with no file configured: reads
    /// are open. (A file configured but not loaded refuses every read: see `routes`.)
    pub read_tokens: Option<ReadTokens>,
}

/// Why `/readyz` says no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Shutting down.
    Draining,
    /// The listener died; the process is about to exit.
    Fatal,
    /// A failed fsync, and the reopen has not succeeded yet.
    Poisoned,
    /// The last append or probe failed (e.g. the disk is full).
    Unwritable,
}

impl NotReady {
    /// A short reason for the 503 body and the logs.
    pub fn reason(self) -> &'static str {
        match self {
            NotReady::Draining => "shutting down",
            NotReady::Fatal => "listener failed",
            NotReady::Poisoned => "journal fsync failed; reopening",
            NotReady::Unwritable => "journal not writable (disk full?)",
        }
    }
}

impl App {
    /// Wraps an open journal.
    pub fn new(config: Config, journal: Journal) -> App {
        App {
            name: config.name.clone().unwrap_or_else(crate::peers::host_name),
            bound: OnceLock::new(),
            peer_agent: crate::peers::agent(),
            fanouts: Arc::new(AtomicUsize::new(0)),
            config,
            journal,
            metrics: Metrics::default(),
            stuck: Stuck::default(),
            lifecycle_logged: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            fatal: AtomicBool::new(false),
            unwritable: AtomicBool::new(false),
            last_heal: Mutex::new(None),
            streams: Arc::new(AtomicUsize::new(0)),
            read_tokens: None,
        }
    }

    /// Requires `tokens` for reading (see [`crate::token`]).
    pub fn with_read_tokens(mut self, tokens: ReadTokens) -> App {
        self.read_tokens = Some(tokens);
        self
    }

    /// Records a visit from `ip`, durably. Returns the visit once `append` returned `Ok`.
    /// With `--anonymize`, `ip` is reduced to its /24 or /48 first, and the visit returned
    /// carries the reduced address.
    ///
    /// On failure nothing of the visit is in the file (the journal rolls back), the error is
    /// logged with the journal's path and cause, and the health flags are updated: a failed
    /// fsync triggers a reopen before anything more is acknowledged (the journal itself
    /// refuses appends until then).
    ///
    /// # Errors
    ///
    /// The journal's error; the caller answers 503.
    pub fn record_visit(&self, ip: IpAddr) -> Result<Visit, visit_journal::Error> {
        // Here, the one way to the journal, so that no address escapes the reduction.
        let ip = if self.config.anonymize {
            visit_journal::anonymize(ip)
        } else {
            ip
        };
        let visit = match self.config.utc_offset {
            Some(offset) => Visit::now_with_offset(ip, offset),
            None => Visit::now(ip),
        };
        let started = Instant::now();
        let appended = self.journal.append(&visit);
        // A rotation or retention that failed beside this append: it did not fail the visit,
        // and the journal retries it; say why (at most once a minute for each kind).
        self.log_lifecycle_error();
        match appended {
            Ok(()) => {
                self.metrics.visit_recorded(started.elapsed());
                // A success proves the file writable again (space was freed, the lock came
                // back): no need to wait for a probe.
                if self.unwritable.load(Relaxed) {
                    self.unwritable.store(false, Relaxed);
                }
                Ok(visit)
            }
            Err(e) => {
                let kind = AppendError::of(&e);
                self.metrics.append_failed(kind, started.elapsed());
                log_journal_error("append_failed", self.journal.path(), &e);
                if kind != AppendError::Poisoned {
                    self.unwritable.store(true, Relaxed);
                }
                self.heal();
                self.stuck_for();
                Err(e)
            }
        }
    }

    /// Tries to clear a fault: reopens a poisoned journal, or probes an unwritable one with
    /// [`Journal::check_writable`]. Does nothing if all is well, if another thread is at it,
    /// or if the last attempt was less than [`HEAL_INTERVAL`] ago.
    pub fn heal(&self) {
        let poisoned = self.journal.is_poisoned();
        if !poisoned && !self.unwritable.load(Relaxed) {
            return;
        }
        let Ok(mut last) = self.last_heal.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < HEAL_INTERVAL) {
            return;
        }
        *last = Some(now);
        if poisoned {
            match self.journal.reopen() {
                Ok(()) => {
                    self.metrics.reopened(true);
                    let repaired = self.journal.stats().repaired_bytes;
                    log::warn(
                        "journal_reopened",
                        &[
                            ("path", Value::Display(&self.journal.path().display())),
                            ("repaired_bytes_total", repaired.into()),
                        ],
                    );
                }
                Err(e) => {
                    self.metrics.reopened(false);
                    log_journal_error("journal_reopen_failed", self.journal.path(), &e);
                    return;
                }
            }
        }
        let probed = self.journal.check_writable();
        // The probe retries a pending retention, which may have failed again.
        self.log_lifecycle_error();
        match probed {
            Ok(()) => {
                if self.unwritable.swap(false, Relaxed) {
                    log::info(
                        "journal_writable",
                        &[("path", Value::Display(&self.journal.path().display()))],
                    );
                }
            }
            Err(e) => {
                self.unwritable.store(true, Relaxed);
                log_journal_error("journal_probe_failed", self.journal.path(), &e);
            }
        }
    }

    /// Marks the journal as unwritable (used at startup when the first probe fails).
    pub fn mark_unwritable(&self) {
        self.unwritable.store(true, Relaxed);
    }

    /// `Ok` if `/readyz` should answer 200. Call [`App::heal`] first to give a cleared fault
    /// the chance to show.
    ///
    /// # Errors
    ///
    /// The first reason the server is not ready.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.fatal.load(SeqCst) {
            Err(NotReady::Fatal)
        } else if self.draining.load(SeqCst) {
            Err(NotReady::Draining)
        } else if self.journal.is_poisoned() {
            Err(NotReady::Poisoned)
        } else if self.unwritable.load(Relaxed) {
            Err(NotReady::Unwritable)
        } else {
            Ok(())
        }
    }

    /// True once the listener died.
    pub fn is_fatal(&self) -> bool {
        self.fatal.load(SeqCst)
    }

    /// `Ok` if `/livez` should answer 200: the listener is alive, and the journal has not
    /// been unable to record for more than [`STUCK_LIMIT`] (see the module docs).
    ///
    /// # Errors
    ///
    /// Why the process should be restarted, for the 503 body.
    pub fn liveness(&self) -> Result<(), String> {
        if self.is_fatal() {
            return Err("listener failed".into());
        }
        match self.stuck_for() {
            Some(stuck) if stuck > STUCK_LIMIT => Err(format!(
                "the journal has refused visits for {} s (a failed fsync that no reopen \
                 could settle); a restart reopens and repairs it",
                stuck.as_secs()
            )),
            _ => Ok(()),
        }
    }

    /// How long the journal has been unable to record, if it is now.
    pub fn stuck_for(&self) -> Option<Duration> {
        self.stuck
            .observe(self.journal.is_poisoned(), Instant::now())
    }

    /// Logs the rotation or retention failure the journal kept, if any: at most once per
    /// [`LIFECYCLE_LOG_INTERVAL`] for each kind (its message), with how many were not logged
    /// since.
    pub fn log_lifecycle_error(&self) {
        let Some(e) = self.journal.take_lifecycle_error() else {
            return;
        };
        let key = describe(&e);
        let now = Instant::now();
        let suppressed = {
            let mut logged = self
                .lifecycle_logged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if logged.len() > 64 {
                // Many kinds at once: forget the old ones rather than grow.
                logged.retain(|_, (at, _)| now.duration_since(*at) < LIFECYCLE_LOG_INTERVAL);
            }
            match logged.get_mut(&key) {
                Some((at, skipped)) if now.duration_since(*at) < LIFECYCLE_LOG_INTERVAL => {
                    *skipped += 1;
                    return;
                }
                Some((at, skipped)) => {
                    *at = now;
                    std::mem::take(skipped)
                }
                None => {
                    logged.insert(key.clone(), (now, 0));
                    0
                }
            }
        };
        let path = self.journal.path().display();
        log::error(
            "journal_lifecycle_failed",
            &[
                ("path", Value::Display(&path)),
                ("cause", Value::Str(&key)),
                ("not_logged_since", suppressed.into()),
            ],
        );
    }

    /// Starts the shutdown: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, SeqCst);
    }

    /// Marks the server as failed: `/healthz` answers 503 and `main` exits non-zero.
    pub fn set_fatal(&self) {
        self.fatal.store(true, SeqCst);
    }

    /// Takes one of the [`MAX_STREAMS`] `/visits` slots, or `None` if all are taken.
    ///
    /// `/visits` responses are long and paced by the client, and each holds a worker while it
    /// streams: without a cap, a few slow readers could take every worker and starve `GET /`.
    pub fn open_stream(&self) -> Option<Slot> {
        Slot::take(&self.streams, MAX_STREAMS)
    }

    /// Takes one of the [`MAX_FANOUTS`] cluster-view slots, or `None` if all are taken.
    ///
    /// A cluster view holds a worker for up to `--peer-timeout`, a thread per peer, and its
    /// peers' answers until its body is sent; it also takes a `/visits` slot, so together
    /// they can never take every worker.
    pub fn open_fanout(&self) -> Option<Slot> {
        Slot::take(&self.fanouts, MAX_FANOUTS)
    }

    /// Records the address the listener is bound to.
    pub fn set_bound(&self, addr: SocketAddr) {
        let _ = self.bound.set(addr);
    }

    /// The address the listener is bound to (the configured one until `server::run` binds).
    pub fn local_addr(&self) -> SocketAddr {
        self.bound.get().copied().unwrap_or(self.config.listen)
    }

    /// The values `/metrics` reads at scrape time.
    pub fn gauges(&self) -> Gauges {
        self.stuck_for();
        // One statvfs for both figures, so that they describe the same moment.
        let disk = fs2::statvfs(journal_dir(self.journal.path())).ok();
        Gauges {
            ready: self.readiness().is_ok(),
            poisoned: self.journal.is_poisoned(),
            unwritable: self.unwritable.load(Relaxed),
            streams: self.streams.load(Relaxed),
            fanouts: self.fanouts.load(Relaxed),
            disk_available: disk.as_ref().map(fs2::FsStats::available_space),
            disk_size: disk.as_ref().map(fs2::FsStats::total_space),
            journal: self.journal.stats(),
            damaged_files: self.journal.damaged_files().ok().map(|d| d.len() as u64),
        }
    }
}

/// Since when the journal has been unable to record: set the first time it is seen poisoned,
/// cleared the first time it is seen recording again.
#[derive(Debug, Default)]
struct Stuck {
    since: Mutex<Option<Instant>>,
}

impl Stuck {
    /// Notes whether the journal is `poisoned` at `now`; returns for how long it has been.
    fn observe(&self, poisoned: bool, now: Instant) -> Option<Duration> {
        let mut since = self
            .since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !poisoned {
            *since = None;
            return None;
        }
        Some(now.saturating_duration_since(*since.get_or_insert(now)))
    }
}

/// A taken slot (of `/visits` streams or cluster views); dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    taken: Arc<AtomicUsize>,
}

impl Slot {
    /// Takes one of `max` slots counted by `taken`, or `None` if all are taken.
    fn take(taken: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        let mut n = taken.load(Relaxed);
        loop {
            if n >= max {
                return None;
            }
            match taken.compare_exchange_weak(n, n + 1, Relaxed, Relaxed) {
                Ok(_) => {
                    return Some(Slot {
                        taken: Arc::clone(taken),
                    });
                }
                Err(now) => n = now,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.taken.fetch_sub(1, Relaxed);
    }
}

/// The directory holding the journal (for the free-space gauge).
fn journal_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A journal error with its cause chain, on one line: `cannot open /x/v.txt: Permission
/// denied (os error 13)`.
pub fn describe(e: &visit_journal::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Logs a journal error with the journal's path and the error's cause chain (which names
/// the directory, if a directory was the problem).
pub fn log_journal_error(event: &str, path: &Path, e: &visit_journal::Error) {
    let cause = describe(e);
    let path = path.display();
    log::error(
        event,
        &[
            ("path", Value::Display(&path)),
            ("cause", Value::Str(&cause)),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_is_measured_from_the_first_poisoned_sight_and_cleared_by_a_recording_one() {
        let stuck = Stuck::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(stuck.observe(false, at(0)), None);
        assert_eq!(stuck.observe(true, at(1)), Some(Duration::ZERO));
        assert_eq!(stuck.observe(true, at(30)), Some(Duration::from_secs(29)));
        assert_eq!(stuck.observe(true, at(62)), Some(Duration::from_secs(61)));
        assert!(stuck.observe(true, at(62)).unwrap() > STUCK_LIMIT);
        // A reopen succeeded: the clock starts again at the next failure.
        assert_eq!(stuck.observe(false, at(63)), None);
        assert_eq!(stuck.observe(true, at(70)), Some(Duration::ZERO));
    }
}
