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
use std::os::unix::fs::MetadataExt as _;
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

/// The directory operations of rotation and retention. Each is one step a crash can stop
/// after, so each is a method of its own.
pub(crate) trait Dir: fmt::Debug + Send + Sync {
    /// The names in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// The size of a file, `None` if there is none at `path`.
    fn size(&self, path: &Path) -> io::Result<Option<u64>>;
    /// The identity of the file at `path`, `None` if there is none.
    fn id(&self, path: &Path) -> io::Result<Option<FileId>>;
    /// The whole content of a small file, `None` if there is none.
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Writes `bytes` to a new file at `path` (replacing any) and fsyncs it.
    fn write_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// `rename(2)`: atomically replaces `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Creates an empty file at `path`; `Ok(false)` if one is there already.
    fn create(&self, path: &Path) -> io::Result<bool>;
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

    fn size(&self, path: &Path) -> io::Result<Option<u64>> {
        Ok(found(fs::metadata(path))?.map(|m| m.len()))
    }

    fn id(&self, path: &Path) -> io::Result<Option<FileId>> {
        Ok(found(fs::metadata(path))?.map(|m| FileId::of(&m)))
    }

    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let Some(mut file) = found(File::open(path))? else {
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

    fn create(&self, path: &Path) -> io::Result<bool> {
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn remove(&self, path: &Path) -> io::Result<bool> {
        Ok(found(fs::remove_file(path))?.is_some())
    }

    fn sync(&self, dir: &Path) -> io::Result<()> {
        let dir = File::open(dir)?;
        retry_eintr(|| dir.sync_all())
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
        fn size(&self, path: &Path) -> io::Result<Option<u64>> {
            RealDir.size(path)
        }
        fn id(&self, path: &Path) -> io::Result<Option<FileId>> {
            RealDir.id(path)
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
            } else {
                Step::Rename
            };
            self.step(step, to, || RealDir.rename(from, to))
        }
        fn create(&self, path: &Path) -> io::Result<bool> {
            self.step(Step::Create, path, || RealDir.create(path))
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
