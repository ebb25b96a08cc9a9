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
}
