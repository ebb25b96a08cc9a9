//! The crate's one error type.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A specialized [`Result`](std::result::Result) for journal operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when writing or reading a visits journal.
///
/// Each variant carries what an operator needs to find the fault: the path of the journal,
/// the operation that failed and, for bad records, the line number and byte offset.
/// Use the accessors ([`Error::path`], [`Error::is_poisoned`], [`Error::io_error`], …) rather
/// than matching when you only need one fact; the enum is `#[non_exhaustive]`.
///
/// An `Error` converts into an [`io::Error`] that keeps the original [`io::ErrorKind`] (and the
/// OS error code, such as `ENOSPC`), so `?` works in functions returning `io::Result`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on the journal failed.
    ///
    /// `op` names the operation ([`Op::Open`], [`Op::Write`], [`Op::Fsync`], …). When an append
    /// fails this way, nothing of it stays in the file (see
    /// [`Journal::append`](crate::Journal::append)).
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What the journal was doing.
        op: Op,
        /// The journal file (or the directory being created or synced).
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A line in the file is not a valid record.
    ///
    /// Readers yield this for a malformed complete line and go on with the next line; a writer
    /// returns it when the unterminated end of the file does not look like a torn record and it
    /// refuses to cut it (see the crate docs, "Crash recovery").
    #[error("{}:{line}: bad record at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// The 1-based line number of the bad line.
        line: u64,
        /// The byte offset at which the bad line starts.
        offset: u64,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A string given to [`Visit::from_str`](crate::Visit) is not a record.
    #[error("bad record: {reason}")]
    Parse {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A [`Visit`](crate::Visit) cannot be written in the file format.
    ///
    /// Its year is outside 0000–9999 or its UTC offset is not a whole number of minutes: RFC 3339
    /// can express neither, so the record could not be read back.
    #[error("visit cannot be recorded: {reason}")]
    Unrepresentable {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An earlier operation on this handle failed in a way that poisons it, so it refuses
    /// appends: most often an `fdatasync` (see [`Op::poisons`] for the others).
    ///
    /// After a failed fsync the kernel may have dropped the dirty pages and cleared the error, so
    /// a retried fsync could succeed without the data being on disk. The handle therefore
    /// refuses every further append until [`Journal::reopen`](crate::Journal::reopen) succeeds,
    /// and `reopen` succeeds only once the failed batch is off the file or synced again (see
    /// the crate docs, "Durability").
    #[error("journal {} refuses appends after a failed fsync; reopen it", path.display())]
    Poisoned {
        /// The journal file.
        path: PathBuf,
    },

    /// The journal's lock was not granted within [`Options::lock_timeout`](crate::Options::lock_timeout).
    #[error("journal {} is locked by another process", path.display())]
    Locked {
        /// The journal file.
        path: PathBuf,
    },
}

impl Error {
    /// The journal file (or directory) the error is about, if any.
    ///
    /// Only [`Error::Parse`] and [`Error::Unrepresentable`], which concern a value rather than a
    /// file, have none.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. }
            | Error::Corrupt { path, .. }
            | Error::Poisoned { path }
            | Error::Locked { path } => Some(path),
            Error::Parse { .. } | Error::Unrepresentable { .. } => None,
        }
    }

    /// The underlying I/O error, if this error is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The operation that failed, if this is an [`Error::Io`].
    pub fn op(&self) -> Option<Op> {
        match self {
            Error::Io { op, .. } => Some(*op),
            _ => None,
        }
    }

    /// True if the handle refuses appends until reopened (see [`Error::Poisoned`]).
    ///
    /// This is true for [`Error::Poisoned`] and for the error that poisoned the handle: an
    /// [`Error::Io`] whose [`Op::poisons`] is true (a failed fsync, a failed write that could
    /// not be rolled back, a lock that could not be released). The journal poisons a handle
    /// exactly when one of its operations fails with such an error, so the two cannot
    /// disagree.
    pub fn is_poisoned(&self) -> bool {
        match self {
            Error::Poisoned { .. } => true,
            Error::Io { op, .. } => op.poisons(),
            _ => false,
        }
    }

    /// True if the lock was not granted in time (see [`Error::Locked`]).
    pub fn is_locked(&self) -> bool {
        matches!(self, Error::Locked { .. })
    }

    /// True if the error is about a malformed line in the file.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }

    /// True if the append (or probe) failed for want of room and was rolled back: the file
    /// system is full or the file hit a size limit (`ENOSPC`, `EDQUOT`, `EFBIG`).
    ///
    /// Such a failure does not poison the journal: appends succeed again once space is freed,
    /// without a reopen. An fsync that fails with `ENOSPC` or `EDQUOT` (a file system that
    /// allocates at writeback) is not one of these: the data may be lost, so it poisons the
    /// handle, [`Error::is_poisoned`] is true and this is false. The cause stays readable in
    /// [`Error::io_error`].
    pub fn is_out_of_space(&self) -> bool {
        !self.is_poisoned() && self.io_error().is_some_and(is_out_of_space)
    }

    pub(crate) fn io(op: Op, path: &Path, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What the journal was doing when a system call failed: the `op` of [`Error::Io`].
///
/// Its [`Display`](fmt::Display) is the verb of the error message: `cannot fsync /data/visits.txt`.
/// New operations may be added, so match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Opening the file (or a reader's file).
    Open,
    /// Creating the file.
    Create,
    /// Creating a missing parent directory.
    CreateDirectory,
    /// Fsyncing a directory after creating an entry in it.
    SyncDirectory,
    /// Reading the file's metadata.
    Stat,
    /// Taking the `flock`.
    Lock,
    /// Releasing the `flock`. Poisons: the lock may stay held until the file is closed.
    Unlock,
    /// Reading the file.
    Read,
    /// Writing a batch (or the probe of
    /// [`Journal::check_writable`](crate::Journal::check_writable)).
    Write,
    /// Cutting the end of the file: a torn tail or power-loss debris, or the probe of
    /// `check_writable`. A failed cut leaves a torn tail, which the next writer cuts.
    Truncate,
    /// Taking a failed write back out of the file. Poisons: part of the batch stays in it.
    RollBack,
    /// `fdatasync` of the file. Poisons: see [`Error::Poisoned`].
    Fsync,
    /// Listing the journal's directory (its sealed segments).
    ListDirectory,
    /// Renaming the live file to a sealed segment, or a new summary over the old one.
    Rename,
    /// Deleting a retired segment (or a stale temporary summary).
    Remove,
    /// Making the file safe again after a failed fsync: cutting off (or, if records follow
    /// it, writing again and syncing) the batch whose fsync failed. Poisons: until it succeeds,
    /// nothing more is acknowledged. See [`Journal::reopen`](crate::Journal::reopen).
    Settle,
}

impl Op {
    /// The operation as the error message says it: `"fsync"`, `"roll back"`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Open => "open",
            Op::Create => "create",
            Op::CreateDirectory => "create directory",
            Op::SyncDirectory => "fsync directory",
            Op::Stat => "stat",
            Op::Lock => "lock",
            Op::Unlock => "unlock",
            Op::Read => "read",
            Op::Write => "write",
            Op::Truncate => "truncate",
            Op::RollBack => "roll back",
            Op::Fsync => "fsync",
            Op::ListDirectory => "list directory",
            Op::Rename => "rename",
            Op::Remove => "remove",
            Op::Settle => "cut or resync the batch whose fsync failed in",
        }
    }

    /// True if a failure of this operation poisons the handle: afterwards it refuses appends
    /// until [`Journal::reopen`](crate::Journal::reopen) (see [`Error::is_poisoned`]).
    pub fn poisons(self) -> bool {
        // Exhaustive on purpose: a new operation must say whether it poisons.
        match self {
            Op::Unlock | Op::RollBack | Op::Fsync | Op::Settle => true,
            Op::Open
            | Op::Create
            | Op::CreateDirectory
            | Op::SyncDirectory
            | Op::Stat
            | Op::Lock
            | Op::Read
            | Op::Write
            | Op::Truncate
            | Op::ListDirectory
            | Op::Rename
            | Op::Remove => false,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True for the errors that mean "no room": the file system is full, the quota is used up, or
/// the file reached its size limit (`RLIMIT_FSIZE`).
pub(crate) fn is_out_of_space(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

impl From<Error> for io::Error {
    /// Keeps the kind (and the OS error code) of an I/O error; malformed records become
    /// [`io::ErrorKind::InvalidData`], a refused append [`io::ErrorKind::Other`] and a lock
    /// timeout [`io::ErrorKind::WouldBlock`].
    fn from(err: Error) -> io::Error {
        let kind = match &err {
            Error::Io { source, .. } => source.kind(),
            Error::Corrupt { .. } | Error::Parse { .. } => io::ErrorKind::InvalidData,
            Error::Unrepresentable { .. } => io::ErrorKind::InvalidInput,
            Error::Locked { .. } => io::ErrorKind::WouldBlock,
            Error::Poisoned { .. } => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_path_and_operation() {
        let err = Error::io(
            Op::Fsync,
            Path::new("/data/visits.txt"),
            io::Error::from_raw_os_error(5),
        );
        assert_eq!(err.to_string(), "cannot fsync /data/visits.txt");
        assert!(err.is_poisoned());
        let corrupt = Error::Corrupt {
            path: "/v.txt".into(),
            line: 3,
            offset: 70,
            reason: "bad ip address",
        };
        assert_eq!(
            corrupt.to_string(),
            "/v.txt:3: bad record at byte 70: bad ip address"
        );
    }

    #[test]
    fn io_conversion_keeps_the_os_error() {
        let err = Error::io(
            Op::Write,
            Path::new("v"),
            io::Error::from_raw_os_error(28), // ENOSPC
        );
        assert!(err.is_out_of_space());
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn every_operation_reads_as_the_message_says_it() {
        let all = [
            (Op::Open, "open"),
            (Op::Create, "create"),
            (Op::CreateDirectory, "create directory"),
            (Op::SyncDirectory, "fsync directory"),
            (Op::Stat, "stat"),
            (Op::Lock, "lock"),
            (Op::Unlock, "unlock"),
            (Op::Read, "read"),
            (Op::Write, "write"),
            (Op::Truncate, "truncate"),
            (Op::RollBack, "roll back"),
            (Op::Fsync, "fsync"),
            (Op::ListDirectory, "list directory"),
            (Op::Rename, "rename"),
            (Op::Remove, "remove"),
            (Op::Settle, "cut or resync the batch whose fsync failed in"),
        ];
        for (op, verb) in all {
            let err = Error::io(op, Path::new("/v.txt"), io::Error::from_raw_os_error(5));
            assert_eq!(err.to_string(), format!("cannot {verb} /v.txt"));
            assert_eq!(err.op(), Some(op));
            assert_eq!(err.is_poisoned(), op.poisons(), "{op}");
        }
        let poisoning: Vec<Op> = all
            .iter()
            .map(|(op, _)| *op)
            .filter(|op| op.poisons())
            .collect();
        assert_eq!(poisoning, [Op::Unlock, Op::RollBack, Op::Fsync, Op::Settle]);
    }

    #[test]
    fn an_fsync_failing_for_want_of_space_is_poisoned_not_out_of_space() {
        for errno in [28, 122] {
            // ENOSPC, EDQUOT
            let err = Error::io(
                Op::Fsync,
                Path::new("v"),
                io::Error::from_raw_os_error(errno),
            );
            assert!(err.is_poisoned(), "{errno}");
            assert!(
                !err.is_out_of_space(),
                "{errno}: documented as rolled back, not poisoned"
            );
            assert_eq!(
                err.io_error().and_then(io::Error::raw_os_error),
                Some(errno)
            );
        }
        let rolled_back = Error::io(Op::Write, Path::new("v"), io::Error::from_raw_os_error(122));
        assert!(rolled_back.is_out_of_space() && !rolled_back.is_poisoned());
    }
}
