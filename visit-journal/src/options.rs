//! [`Options`]: how a journal is opened. Plain data; [`Options::open`] lives with the journal.

use std::time::Duration;

/// Options for opening a [`Journal`](crate::Journal). The defaults are the durable ones.
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
    pub(crate) sync: bool,
    pub(crate) lock_timeout: Option<Duration>,
    pub(crate) create: bool,
    pub(crate) rotate_size: u64,
    pub(crate) retain_size: u64,
    pub(crate) retain_days: u64,
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
            rotate_size: 0,
            retain_size: 0,
            retain_days: 0,
        }
    }

    /// Whether appends call `fdatasync` before returning. Default: `true`.
    ///
    /// # Durability
    ///
    /// With `sync(false)`, an `Ok` from [`Journal::append`](crate::Journal::append) means only
    /// that the record is in the operating system's page cache: a power loss can take it (and
    /// leave NUL debris, which the next open repairs). Everything else (locking, whole lines,
    /// rollback) holds. Meant for tests, benchmarks and bulk imports that sync at the end;
    /// never the default.
    pub fn sync(mut self, sync: bool) -> Options {
        self.sync = sync;
        self
    }

    /// How long to wait for the file lock before failing with
    /// [`Error::Locked`](crate::Error::Locked). Default: wait as long as it takes.
    ///
    /// Another writer holds the lock only while it writes a batch, so waits are short unless a
    /// process holds it on purpose (e.g. `flock visits.txt sleep 60`).
    pub fn lock_timeout(mut self, timeout: Duration) -> Options {
        self.lock_timeout = Some(timeout);
        self
    }

    /// Whether opening creates a missing file (and its directories). Default: `true`.
    ///
    /// With `create(false)`, opening a missing journal fails with
    /// [`Error::Io`](crate::Error::Io) (`NotFound`): for tools that repair or append to an
    /// existing file and must not invent one.
    pub fn create(mut self, create: bool) -> Options {
        self.create = create;
        self
    }

    /// Rotates the live file before an append would make it larger than `bytes`: the file is
    /// sealed as `<path>.000001` (then `.000002`, …; never written again) and a fresh one takes
    /// its place. 0 (the default): never rotate. Any other size is taken as given (the server
    /// refuses less than 4 KiB: segments of a few visits each help nobody, but tests use them).
    ///
    /// A batch is never split: one larger than `bytes` goes whole into a fresh file, and a file
    /// is rotated only if it holds at least one line, so no segment is empty. Read the whole
    /// history with [`History`](crate::History), or `cat visits.txt.[0-9]* visits.txt`. Every
    /// writer of the journal should use the same rotate size (writers that do not rotate
    /// still follow the live file: see [`Journal::append`](crate::Journal::append)).
    ///
    /// # Durability
    ///
    /// Rotation happens under the lock, in the append that needs it: the live file is synced
    /// and renamed, the fresh one created and the directory fsynced before the batch is
    /// written. A crash at any step leaves every acknowledged visit in exactly one file; the
    /// next writer finishes the step.
    pub fn rotate_size(mut self, bytes: u64) -> Options {
        self.rotate_size = bytes;
        self
    }

    /// Retires the oldest sealed segments while their total size exceeds `bytes`. 0 (the
    /// default): keep them all (unless [`Options::retain_days`] retires them).
    ///
    /// Retiring a segment counts its visits per day into `<path>.summary` (so
    /// [`History::days`](crate::History::days) still counts every visit ever recorded), then
    /// deletes it. Retention runs under the lock after each rotation and when a writer opens
    /// the journal. A failure to retire never fails an append: it is counted in
    /// [`Stats::failed_retentions`](crate::Stats::failed_retentions), kept for
    /// [`Journal::take_lifecycle_error`](crate::Journal::take_lifecycle_error), and retried
    /// (at the next append a second later, the next rotation, or the next open).
    pub fn retain_size(mut self, bytes: u64) -> Options {
        self.retain_size = bytes;
        self
    }

    /// Retires the oldest sealed segment while its newest visit (its largest timestamp) is more
    /// than `days` × 24 hours old. 0 (the default): keep segments whatever their age (unless
    /// [`Options::retain_size`] retires them). Retiring is as described there.
    pub fn retain_days(mut self, days: u64) -> Options {
        self.retain_days = days;
        self
    }
}
