//! The seam between the journal's logic and the file system.
//!
//! Every byte the writer reads or writes, every lock, truncate and fsync goes through
//! [`Storage`]. Production uses [`FileStorage`]; the unit tests wrap it to inject short
//! writes, `ENOSPC` and failed fsyncs at chosen points, so the fault tests exercise the same
//! code paths as production.

use std::fmt;
use std::fs::{File, TryLockError};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::time::{Duration, Instant};

/// Positioned reads: all a [`Reader`](crate::Reader) needs, from a file or from bytes in
/// memory.
pub(crate) trait ReadAt: fmt::Debug + Send + Sync {
    /// Reads at `offset`; may return fewer bytes than asked for (0 at or past the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

/// The file operations the writer needs. Each method is one system call (or a retry loop
/// around one), so a fault can be injected between any two of them.
pub(crate) trait Storage: ReadAt {
    /// Takes the exclusive advisory lock (`flock(2)`), waiting at most `timeout` if given.
    /// Returns `Ok(false)` if the timeout passed.
    fn lock(&self, timeout: Option<Duration>) -> io::Result<bool>;
    /// Releases the lock.
    fn unlock(&self) -> io::Result<()>;
    /// The current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// One `write(2)` at the end of the file (the file is opened with `O_APPEND`). May be
    /// short.
    fn append(&self, buf: &[u8]) -> io::Result<usize>;
    /// Sets the length of the file (used only to shrink it).
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// `fdatasync(2)`.
    fn sync_data(&self) -> io::Result<()>;
    /// Writes `buf` at `offset`, inside the file (not at its end), and `fdatasync`s it,
    /// through a descriptor of its own: the file's own is opened with `O_APPEND`, with which
    /// Linux's `pwrite` appends. Used only to make durable again a batch whose fsync failed
    /// (see `locked.rs`, `settle_locked`).
    fn rewrite_durably(&self, buf: &[u8], offset: u64) -> io::Result<()>;
}

/// The real thing: a file opened for reading and appending.
#[derive(Debug)]
pub(crate) struct FileStorage {
    pub(crate) file: File,
}

impl ReadAt for FileStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        retry_eintr(|| self.file.read_at(buf, offset))
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let rest = usize::try_from(offset)
            .ok()
            .and_then(|at| self.get(at..))
            .unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

impl Storage for FileStorage {
    fn lock(&self, timeout: Option<Duration>) -> io::Result<bool> {
        // std's `File::lock` is flock(2) with LOCK_EX on Linux: the same lock Python's
        // `fcntl.flock` and the `flock` command take. See the crate docs, "Locking", for why
        // std rather than fs2.
        let Some(timeout) = timeout else {
            retry_eintr(|| self.file.lock())?;
            return Ok(true);
        };
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(100);
        loop {
            match self.file.try_lock() {
                Ok(()) => return Ok(true),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(TryLockError::Error(e)) => return Err(e),
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    fn unlock(&self) -> io::Result<()> {
        retry_eintr(|| self.file.unlock())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn append(&self, buf: &[u8]) -> io::Result<usize> {
        (&self.file).write(buf)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        retry_eintr(|| self.file.set_len(len))
    }

    fn sync_data(&self) -> io::Result<()> {
        // Only locked.rs calls this: an acknowledgement follows it.
        retry_eintr(|| self.file.sync_data())
    }

    fn rewrite_durably(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd as _;
        use std::os::unix::fs::MetadataExt as _;
        // /proc/self/fd/N names this very file, even if it was renamed or unlinked since. The
        // check of device and inode guards against anything else answering to that name.
        let other = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", self.file.as_raw_fd()))?;
        let (ours, theirs) = (self.file.metadata()?, other.metadata()?);
        if (ours.dev(), ours.ino()) != (theirs.dev(), theirs.ino()) {
            return Err(io::Error::other(
                "/proc/self/fd does not name the journal's file",
            ));
        }
        retry_eintr(|| other.write_all_at(buf, offset))?;
        retry_eintr(|| other.sync_data())
    }
}

/// Retries `op` while it fails with `EINTR`.
pub(crate) fn retry_eintr<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads `buf.len()` bytes at `offset`, or fewer if the end of the file comes first; returns
/// how many.
pub(crate) fn read_up_to(
    storage: &(impl ReadAt + ?Sized),
    buf: &mut [u8],
    offset: u64,
) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match storage.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
pub(crate) fn read_exact_at(
    storage: &(impl ReadAt + ?Sized),
    mut buf: &mut [u8],
    mut offset: u64,
) -> io::Result<()> {
    while !buf.is_empty() {
        match storage.read_at(buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// Counts the `\n` bytes in `[start, end)`, in constant memory.
pub(crate) fn count_newlines(
    storage: &(impl ReadAt + ?Sized),
    start: u64,
    end: u64,
) -> io::Result<u64> {
    let mut buf = vec![0; CHUNK];
    let mut pos = start;
    let mut count = 0;
    while pos < end {
        let want = (end - pos).min(CHUNK as u64) as usize;
        let n = storage.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            break; // The file shrank under us: count what is there.
        }
        count += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        pos += n as u64;
    }
    Ok(count)
}

/// Where the last `\n` before `len` ends (0 if there is none), scanning backwards in
/// constant memory.
pub(crate) fn last_line_end(storage: &(impl ReadAt + ?Sized), len: u64) -> io::Result<u64> {
    let mut chunk = vec![0; CHUNK];
    let mut at = len;
    while at > 0 {
        let lo = at.saturating_sub(CHUNK as u64);
        let n = (at - lo) as usize;
        read_exact_at(storage, &mut chunk[..n], lo)?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(lo + i as u64 + 1);
        }
        at = lo;
    }
    Ok(0)
}

/// The size of the reads readers and repairs make.
pub(crate) const CHUNK: usize = 64 * 1024;

#[cfg(test)]
pub(crate) mod faulty {
    //! A [`Storage`] that fails on cue.

    use super::*;
    use std::sync::{Arc, Condvar, Mutex, PoisonError};

    /// What to do to the next calls.
    #[derive(Debug, Default)]
    pub(crate) struct Faults {
        /// Accept at most this many more bytes in total, then fail writes with this error.
        pub(crate) space_left: Option<(usize, i32)>,
        /// Make the next write short: accept at most this many bytes of it.
        pub(crate) short_write: Option<usize>,
        /// Fail the next `sync_data` calls with `sync_errno` (`EIO` if unset).
        pub(crate) fail_syncs: usize,
        pub(crate) sync_errno: Option<i32>,
        /// Fail the next `unlock` calls with `EIO`, leaving the lock held.
        pub(crate) fail_unlocks: usize,
        /// Fail the next `rewrite_durably` calls with `EIO`, writing nothing.
        pub(crate) fail_rewrites: usize,
        /// Fail the next `truncate` calls with `EIO`.
        pub(crate) fail_truncates: usize,
        /// Return `EINTR` from the next writes before doing anything.
        pub(crate) interrupt_writes: usize,
        /// Panic in the next write, as a bug in the I/O path would.
        pub(crate) panic_in_write: bool,
        /// Hold the next `sync_data` call until the gate opens, after deciding whether it
        /// fails (so a fault armed meanwhile hits the next batch, not this one).
        pub(crate) sync_gate: Option<Arc<Gate>>,
        /// Calls seen, in order, for assertions.
        pub(crate) log: Vec<&'static str>,
    }

    /// A gate a test opens once the scene is set (say, once N appenders wait).
    #[derive(Debug, Default)]
    pub(crate) struct Gate {
        /// (someone waits at the gate, the gate is open)
        state: Mutex<(bool, bool)>,
        changed: Condvar,
    }

    impl Gate {
        /// Waits until a thread waits at the gate.
        pub(crate) fn until_reached(&self) {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            while !state.0 {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }

        pub(crate) fn open(&self) {
            self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
            self.changed.notify_all();
        }

        fn pass(&self) {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.0 = true;
            self.changed.notify_all();
            while !state.1 {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    #[derive(Debug)]
    pub(crate) struct FaultyStorage {
        pub(crate) inner: FileStorage,
        pub(crate) faults: Arc<Mutex<Faults>>,
    }

    impl FaultyStorage {
        fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
            self.faults.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl ReadAt for FaultyStorage {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.inner.read_at(buf, offset)
        }
    }

    impl Storage for FaultyStorage {
        fn lock(&self, timeout: Option<Duration>) -> io::Result<bool> {
            self.faults().log.push("lock");
            self.inner.lock(timeout)
        }

        fn unlock(&self) -> io::Result<()> {
            let mut f = self.faults();
            f.log.push("unlock");
            if f.fail_unlocks > 0 {
                f.fail_unlocks -= 1;
                return Err(io::Error::from_raw_os_error(5));
            }
            self.inner.unlock()
        }

        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }

        fn append(&self, buf: &[u8]) -> io::Result<usize> {
            let mut f = self.faults();
            f.log.push("write");
            if std::mem::take(&mut f.panic_in_write) {
                drop(f);
                panic!("injected panic in write");
            }
            if f.interrupt_writes > 0 {
                f.interrupt_writes -= 1;
                return Err(io::ErrorKind::Interrupted.into());
            }
            let mut n = buf.len();
            if let Some(short) = f.short_write.take() {
                n = n.min(short);
            }
            if let Some((left, errno)) = f.space_left.as_mut() {
                if *left == 0 {
                    return Err(io::Error::from_raw_os_error(*errno));
                }
                n = n.min(*left);
                *left -= n;
            }
            self.inner.append(&buf[..n])
        }

        fn truncate(&self, len: u64) -> io::Result<()> {
            let mut f = self.faults();
            f.log.push("truncate");
            if f.fail_truncates > 0 {
                f.fail_truncates -= 1;
                return Err(io::Error::from_raw_os_error(5));
            }
            self.inner.truncate(len)
        }

        fn rewrite_durably(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            let mut f = self.faults();
            f.log.push("rewrite");
            if f.fail_rewrites > 0 {
                f.fail_rewrites -= 1;
                return Err(io::Error::from_raw_os_error(5));
            }
            drop(f);
            self.inner.rewrite_durably(buf, offset)
        }

        fn sync_data(&self) -> io::Result<()> {
            let mut f = self.faults();
            f.log.push("fsync");
            let fail = f.fail_syncs > 0;
            if fail {
                f.fail_syncs -= 1;
            }
            let errno = f.sync_errno.unwrap_or(5);
            let gate = f.sync_gate.take();
            drop(f);
            if let Some(gate) = gate {
                gate.pass();
            }
            if fail {
                return Err(io::Error::from_raw_os_error(errno));
            }
            self.inner.sync_data()
        }
    }
}
