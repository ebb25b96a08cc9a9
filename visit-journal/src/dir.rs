//! The seam between rotation and retention and the directory they work in.
//!
//! Every rename, create, delete and directory fsync of the journal's lifecycle goes through
//! [`Dir`], as every operation on the live file goes through [`Storage`](crate::storage::Storage).
//! Production uses [`RealDir`]; the unit tests wrap it to fail a chosen step or to kill the
//! process at it, so the crash and fault tests run the code production runs.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

use crate::storage::retry_eintr;

/// A file's identity: device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl FileId {
    pub(crate) fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// What counts held for a file belong to: its identity (device and inode), its size, and the
/// times of its last write and last change. A sealed segment never changes, so a count kept
/// under this key stays true for as long as a file has it; a file that was replaced (the
/// history deleted and its numbers reused), or written by hand, has another key and is
/// counted again.
///
/// Device, inode and size alone are not enough: file systems reuse a deleted file's inode at
/// once, and segments of the same rotate size full of lines of the same length have the same
/// size, so a new segment 1 can have the old one's device, inode and size. Its times (to the
/// nanosecond where the file system keeps them) tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileKey {
    pub(crate) id: FileId,
    pub(crate) size: u64,
    /// `st_mtime` and `st_ctime`, in seconds and nanoseconds.
    pub(crate) times: [i64; 4],
}

impl FileKey {
    pub(crate) fn of(meta: &fs::Metadata) -> FileKey {
        FileKey {
            id: FileId::of(meta),
            size: meta.len(),
            times: [
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec(),
            ],
        }
    }
}

/// Opens `path` for reading if it is a regular file, and never blocks doing so: the open is
/// non-blocking (a FIFO would otherwise wait for a writer, with the journal's lock held) and
/// the type is checked on the open file, so nothing swapped in between is read either.
///
/// Returns the file with its metadata (taken from the open file, so it is the file's).
///
/// # Errors
///
/// The open's error (`NotFound` if there is nothing at `path`), or `InvalidInput` naming the
/// type of what is there (`not a regular file (a FIFO)`).
pub(crate) fn open_regular(path: &Path) -> io::Result<(File, fs::Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok((file, meta));
    }
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "of an unknown type"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file ({what})"),
    ))
}

/// The file a journal's path stands for: the path itself, or, if it is a symbolic link, the
/// file it points to (following a chain of links). Rotation renames the live file within its
/// directory, so a journal whose path is a link keeps its history beside the file, never
/// renaming the link (which would split the history over two directories). A link that
/// points nowhere yet resolves to where the file will be created.
///
/// # Errors
///
/// [`Error::Io`](crate::Error::Io) with [`Op::Open`](crate::Op::Open) if a link cannot be
/// read, or links point to each other in a loop.
pub(crate) fn resolve_live(path: &Path) -> crate::Result<std::path::PathBuf> {
    let mut at = path.to_path_buf();
    // The kernel's own limit on links followed in one lookup.
    for _ in 0..40 {
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target =
                    fs::read_link(&at).map_err(|e| crate::Error::io(crate::Op::Open, &at, e))?;
                at = match at.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            _ => return Ok(at),
        }
    }
    Err(crate::Error::io(
        crate::Op::Open,
        path,
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many levels of symbolic links",
        ),
    ))
}

/// True if `e`, from opening or reading a file of the history, says the file itself is
/// unusable (not a regular file, no permission to read it, a socket, a symlink loop), as
/// opposed to a fault of the moment (an I/O error, too many open files) that a retry may clear.
/// Such files are skipped by readers, and set aside by retention, instead of stopping them.
pub(crate) fn is_unusable(e: &io::Error) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::PermissionDenied | io::ErrorKind::IsADirectory
    ) {
        return true;
    }
    matches!(
        e.raw_os_error(),
        Some(libc::ENXIO | libc::ELOOP | libc::ENODEV | libc::ENOTDIR | libc::EOPNOTSUPP)
    )
}

/// The directory operations of rotation and retention. Each is one step a crash can stop
/// after, so each is a method of its own.
pub(crate) trait Dir: fmt::Debug + Send + Sync {
    /// The names in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// The identity of the file at `path`, `None` if there is none.
    fn id(&self, path: &Path) -> io::Result<Option<FileId>>;
    /// The size of the file at `path` and whether it is a regular file (following symbolic
    /// links; nothing is opened), `None` if there is none.
    fn kind(&self, path: &Path) -> io::Result<Option<(u64, bool)>>;
    /// True if the file at `path` is a regular file that this process can open for reading
    /// (opened without blocking, and closed at once).
    fn readable(&self, path: &Path) -> bool;
    /// The whole content of a small file, `None` if there is none.
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Writes `bytes` to a new file at `path` (replacing any) and fsyncs it.
    fn write_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// `rename(2)`: atomically replaces `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Creates an empty file at `path`; `Ok(false)` if one is there already. The new file takes
    /// the mode, owner and group of the file at `like` (the file it replaces), as far as this
    /// process may set them.
    fn create(&self, path: &Path, like: Option<&Path>) -> io::Result<bool>;
    /// Deletes the file at `path`; `Ok(false)` if there was none.
    fn remove(&self, path: &Path) -> io::Result<bool>;
    /// fsyncs the directory, so that the names it holds survive a crash.
    fn sync(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default)]
pub(crate) struct RealDir;

/// `Ok(None)` for "not found".
fn found<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Dir for RealDir {
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect()
    }

    fn id(&self, path: &Path) -> io::Result<Option<FileId>> {
        Ok(found(fs::metadata(path))?.map(|m| FileId::of(&m)))
    }

    fn kind(&self, path: &Path) -> io::Result<Option<(u64, bool)>> {
        Ok(found(fs::metadata(path))?.map(|m| (m.len(), m.is_file())))
    }

    fn readable(&self, path: &Path) -> bool {
        open_regular(path).is_ok()
    }

    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let Some((mut file, _)) = found(open_regular(path))? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }

    fn write_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.write_all(bytes)?;
        retry_eintr(|| file.sync_all())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn create(&self, path: &Path, like: Option<&Path>) -> io::Result<bool> {
        let file = match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        };
        if let Some(like) = like.and_then(|like| fs::metadata(like).ok()) {
            take_mode_and_owner(&file, &like);
        }
        Ok(true)
    }

    fn remove(&self, path: &Path) -> io::Result<bool> {
        Ok(found(fs::remove_file(path))?.is_some())
    }

    fn sync(&self, dir: &Path) -> io::Result<()> {
        let dir = File::open(dir)?;
        retry_eintr(|| dir.sync_all())
    }
}

/// Gives `file` (just created by this process) the mode, owner and group of `like`, as far as
/// this process may: the mode first (once the file belongs to someone else only root could
/// change it), then owner and group together, else the group alone (a member of the group may
/// give it away). A root debug container that rotates the server's journal so leaves a live
/// file the server can still append to. Failures are ignored: the file works as it is for
/// whoever made it, and the metadata is a courtesy to the others.
fn take_mode_and_owner(file: &File, like: &fs::Metadata) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = file.set_permissions(fs::Permissions::from_mode(like.mode() & 0o777));
    let mine = file.metadata().ok();
    if mine
        .as_ref()
        .is_some_and(|m| m.uid() == like.uid() && m.gid() == like.gid())
    {
        return;
    }
    if std::os::unix::fs::fchown(file, Some(like.uid()), Some(like.gid())).is_err() {
        let _ = std::os::unix::fs::fchown(file, None, Some(like.gid()));
    }
}

#[cfg(test)]
pub(crate) mod faulty {
    //! A [`Dir`] that fails, or kills the process, at a chosen step.

    use super::*;
    use std::path::PathBuf;
    use std::sync::Mutex;

    /// The steps of rotation and retention, as the faulty directory names them.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Step {
        /// Renaming the live file to a segment.
        Rename,
        /// Renaming an unusable file out of the numbering (`<name>.damaged`).
        SetAside,
        /// Creating the fresh live file.
        Create,
        /// Writing and syncing the new summary's temporary file.
        WriteSummary,
        /// Renaming the new summary over the old.
        RenameSummary,
        /// Deleting a stale temporary summary (whether there is one or not).
        RemoveTemp,
        /// Deleting a retired segment.
        Remove,
        /// fsyncing the directory.
        SyncDir,
    }

    /// What to do at a step.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Fault {
        /// Fail it with `EIO`.
        Fail,
        /// Kill the process just before it (`abort`: no destructor runs, as with `kill -9`).
        CrashBefore,
        /// Kill the process just after it.
        CrashAfter,
    }

    #[derive(Debug, Default)]
    pub(crate) struct Plan {
        /// The fault, the step it hits, and how many of those steps pass before it.
        pub(crate) fault: Option<(Fault, Step, usize)>,
        /// Every step taken, in order, with its path.
        pub(crate) log: Vec<(Step, PathBuf)>,
    }

    #[derive(Debug, Default)]
    pub(crate) struct FaultyDir {
        pub(crate) plan: std::sync::Arc<Mutex<Plan>>,
    }

    impl FaultyDir {
        fn step<T>(
            &self,
            step: Step,
            path: &Path,
            op: impl FnOnce() -> io::Result<T>,
        ) -> io::Result<T> {
            let fault = {
                let mut plan = self
                    .plan
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                plan.log.push((step, path.to_path_buf()));
                match &mut plan.fault {
                    Some((fault, s, 0)) if *s == step => {
                        let fault = *fault;
                        plan.fault = None;
                        Some(fault)
                    }
                    Some((_, s, skip)) if *s == step => {
                        *skip -= 1;
                        None
                    }
                    _ => None,
                }
            };
            match fault {
                None => op(),
                Some(Fault::Fail) => Err(io::Error::from_raw_os_error(5)),
                Some(Fault::CrashBefore) => std::process::abort(),
                Some(Fault::CrashAfter) => {
                    let _ = op();
                    std::process::abort()
                }
            }
        }
    }

    impl Dir for FaultyDir {
        fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
            RealDir.list(dir)
        }
        fn id(&self, path: &Path) -> io::Result<Option<FileId>> {
            RealDir.id(path)
        }
        fn kind(&self, path: &Path) -> io::Result<Option<(u64, bool)>> {
            RealDir.kind(path)
        }
        fn readable(&self, path: &Path) -> bool {
            RealDir.readable(path)
        }
        fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
            RealDir.read(path)
        }
        fn write_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            self.step(Step::WriteSummary, path, || {
                RealDir.write_synced(path, bytes)
            })
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            let step = if to.extension().is_some_and(|e| e == "summary") {
                Step::RenameSummary
            } else if to.to_string_lossy().contains(".damaged") {
                Step::SetAside
            } else {
                Step::Rename
            };
            self.step(step, to, || RealDir.rename(from, to))
        }
        fn create(&self, path: &Path, like: Option<&Path>) -> io::Result<bool> {
            self.step(Step::Create, path, || RealDir.create(path, like))
        }
        fn remove(&self, path: &Path) -> io::Result<bool> {
            let step = if path.extension().is_some_and(|e| e == "tmp") {
                Step::RemoveTemp
            } else {
                Step::Remove
            };
            self.step(step, path, || RealDir.remove(path))
        }
        fn sync(&self, dir: &Path) -> io::Result<()> {
            self.step(Step::SyncDir, dir, || RealDir.sync(dir))
        }
    }
}
