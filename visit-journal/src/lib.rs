//! A crash-safe journal of web visits: one line of plain text per visit, readable with `cat`.
//!
//! ```text
//! $ cat data/visits.txt
//! 2026-11-26T10:44:36.123+03:00 - 10.0.0.7
//! 2026-11-26T10:44:37.402+03:00 - 2001:db8::1
//! ```
//!
//! A visit is acknowledged only once it is on disk; any number of threads and processes can
//! append to the same file at once without losing or tearing a line; a crash at any moment
//! leaves a file whose complete lines are exactly the acknowledged visits (plus, at most, a
//! few that were written but not yet acknowledged), which the next writer tidies up.
//!
//! # Overview
//!
//! - [`Visit`]: one visit, a timestamp and an IP address. Its [`Display`](std::fmt::Display)
//!   and [`FromStr`](std::str::FromStr) are the line format. Pure, no I/O.
//! - [`anonymize`]: reduces an address to its /24 (IPv4) or /48 (IPv6) before it is
//!   recorded, for operators who must not keep full addresses.
//! - [`Journal`]: a file open for appending. [`Journal::append`] and
//!   [`Journal::append_batch`] return once the records are durable. `Send + Sync`: share one
//!   between threads and their appends are committed together.
//! - [`Options`]: how to open a journal (fsync on or off, lock timeout, create or not, and
//!   its lifetime: rotate size, retain size, retain days).
//! - [`Reader`]: streams the records of a journal in constant memory, with
//!   [`tail`](Reader::tail), [`count_lines`](Reader::count_lines),
//!   [`verify`](Reader::verify) and [`into_text`](Reader::into_text). Takes no lock.
//!   [`read_visit_with_time`](Reader::read_visit_with_time) also gives each record's
//!   timestamp exactly as the line writes it.
//!   [`Reader::from_bytes`] reads a journal's bytes held in memory (another replica's answer,
//!   say) with exactly the same rules and errors.
//! - [`History`]: the same over a journal's whole history, its sealed segments and live file,
//!   with the summary's counts of the retired ones (see "Lifetime" below).
//! - [`Counts`] and [`Damaged`]: every visit ever recorded, per day and per address, from
//!   [`Journal::counts`] (which keeps what each sealed segment holds) or [`History::counts`],
//!   and the files that could not be counted (see "Damaged files" below).
//! - [`Error`] and [`Result`]: one error type, naming the path, the operation ([`Op`]) and,
//!   for bad records, the line and byte.
//! - [`Stats`] and [`Report`]: counters of a journal handle, and what `verify` found.
//!
//! # Example
//!
//! ```
//! use visit_journal::{Journal, Reader, Visit};
//!
//! # fn main() -> visit_journal::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("data/visits.txt");
//! // Creates data/ and the file if needed, and repairs a torn last line.
//! let journal = Journal::open(&path)?;
//!
//! // Durable when it returns.
//! journal.append(&Visit::now("10.0.0.7".parse().unwrap()))?;
//! journal.append(&Visit::now("2001:db8::1".parse().unwrap()))?;
//!
//! // Read them back, oldest first, without loading the file.
//! for visit in Reader::open(&path)? {
//!     let visit = visit?;
//!     println!("{visit}"); // 2026-11-26T10:44:36.123+03:00 - 10.0.0.7
//! }
//! assert_eq!(journal.tail(1)?[0].ip.to_string(), "2001:db8::1");
//! # Ok(())
//! # }
//! ```
//!
//! # Durability
//!
//! - **Acknowledged means durable.** [`Journal::append`] returns `Ok` only after an
//!   `fdatasync` that covered the record (and everything before it). When the file or its
//!   directories are created, their parent directories are fsynced too.
//! - **Whole lines or nothing.** Each batch goes out in one `write` under an exclusive lock.
//!   If the write fails (a full disk, say), the file is truncated back to its last whole line
//!   and the append returns `Err`; later appends succeed once there is room, without a
//!   restart.
//! - **A failed fsync.** If the `fdatasync` fails, the append returns `Err` and the handle
//!   refuses every further append until [`Journal::reopen`]: after a failed fsync Linux may
//!   have dropped the data and cleared the error, so retrying and calling it durable would be
//!   a lie. Worse, a later fsync (by this descriptor or a fresh one) can succeed while the
//!   failed batch's pages are lost, so records acknowledged after them would sit behind
//!   bytes that read as zeros after a power loss, and the power-loss repair (see "Crash
//!   recovery") would cut them too. So before the error is returned, the handle, under the
//!   lock, makes the file safe:
//!   - if the failed batch is still the end of the file, it is cut off, and the cut is
//!     fsynced: the file is exactly what was acknowledged;
//!   - if records follow it (another process appended meanwhile), it cannot be cut; its bytes
//!     are written again in place and fsynced through a fresh descriptor (which reports any
//!     new error), so that they are on disk before anything more is acknowledged. Its
//!     appenders were told it failed; its records stay in the file, whole;
//!   - if that fails too (the disk still fails, the lock is not granted, or the batch's bytes
//!     were changed by someone else), the handle remembers the batch and stays poisoned, and
//!     every [`Journal::reopen`] tries again first and fails ([`Op::Settle`]) until it
//!     succeeds: nothing more is acknowledged through this handle in the meantime.
//!
//!   Not covered: another process cannot know of this handle's failed batch. If this process
//!   dies, or drops its poisoned `Journal` instead of reopening it, before the file is safe,
//!   the next writer (whose fresh descriptor reports no error) appends after the unsynced
//!   bytes. And a file system that acknowledges an fsync and drops the data cannot be
//!   defended against (ext4 with delayed allocation on a thin-provisioned device that runs
//!   out of space has been seen to do it).
//! - **Many writers.** Threads share one `Journal`; processes each open their own. Appends
//!   exclude each other with `flock(2)`, and concurrent appends in a process share one
//!   `write` and one `fdatasync` (group commit), so throughput grows with the number of
//!   writers. Each writer's records appear in the order it appended them.
//! - **Readers need no lock** and never see a partial line: a [`Reader`] stops at the last
//!   `\n` that existed when it was opened.
//! - **No injection.** The API takes a typed IP address, so no string from a request can
//!   reach the file, let alone a newline.
//!
//! # Locking
//!
//! Every append holds an exclusive `flock(2)` lock on the file while it writes (not while it
//! fsyncs). Any program taking the same lock interleaves safely with this crate: the library
//! in other processes, Python's `fcntl.flock(f, fcntl.LOCK_EX)`, or the `flock(1)` command:
//!
//! ```text
//! flock data/visits.txt sh -c 'echo "$(date -Iseconds) - 10.0.0.9" >> data/visits.txt'
//! ```
//!
//! A `flock` lock belongs to an open file, not to a thread, so inside a process the journal
//! also lets only one thread at a time do I/O; the others hand it their records.
//!
//! The lock is std's [`File::lock`](std::fs::File::lock) (Rust 1.89), which is `flock(2)` on
//! Linux. The older `fs2` crate offers the same call, but it has been unmaintained since 2018
//! and, since Rust 1.89, its `FileExt::lock_exclusive`/`unlock` trait methods are shadowed by
//! std's inherent `File::lock`/`File::unlock`, an easy way to call the wrong one. std needs no
//! dependency.
//!
//! # File format
//!
//! UTF-8 text, one record per line, each line ended by `\n`:
//!
//! ```text
//! <timestamp> - <ip>\n
//! ```
//!
//! - `<timestamp>` is RFC 3339 with an explicit offset: `2026-11-26T10:44:36.123+03:00`.
//!   This crate writes the visit's own offset and the fraction of a second with 3 digits
//!   (6 or 9 if the time has finer precision); readers accept 0 to 9 digits and `Z`, so lines
//!   written by the classic lab app (`2022-11-29T10:44:36+03:00 - 172.17.0.1`) are valid.
//! - `<ip>` is an IPv4 or IPv6 address as Rust's [`IpAddr`](std::net::IpAddr) displays it.
//! - A last line without `\n` is a **torn tail**: readers ignore it, the next writer cuts it.
//! - Any other line that does not parse is **corrupt**: readers report it with its 1-based
//!   line number and byte offset ([`Error::Corrupt`]) and go on; nothing is silently skipped.
//!
//! # Lifetime: rotation, retention, summary
//!
//! Off unless configured. With [`Options::rotate_size`], the live file (always the path you
//! gave) is sealed before an append would make it larger than that: renamed to
//! `<path>.000001`, `<path>.000002`, … (at least six digits, numbers never reused), and a fresh
//! file takes its place. A sealed segment ends in a whole line and is never written again, so
//! the whole history, oldest first, is
//!
//! ```text
//! cat visits.txt.[0-9]* visits.txt
//! ```
//!
//! With [`Options::retain_size`] or [`Options::retain_days`], the oldest segments are retired:
//! their visits are counted per day into `<path>.summary`, then they are deleted. The summary
//! is text, replaced atomically (temporary file, fsync, rename, directory fsync) before the
//! delete:
//!
//! ```text
//! # folded through 3, 99223 visits
//! # corrupt 1
//! # damaged 1
//! 2026-11-25 51200
//! 2026-11-26 48023
//! ```
//!
//! The first line says that segments 1 to 3 are counted here and how many visits they held;
//! the optional `# corrupt` line counts corrupt lines met in them, the optional `# damaged`
//! line the files with a segment's name that retention set aside (see "Damaged files"); then
//! one `YYYY-MM-DD COUNT` line per day (the day as written in each record's own offset),
//! ascending, adding up to the total of the first line. [`Journal::counts`] and
//! [`History::days`] add these to the counts of the files still on disk: every visit ever
//! recorded. A first line without the total (`# folded through 3`, as older versions wrote
//! it) is accepted, and gains the total at the next retirement.
//!
//! # Damaged files
//!
//! A long-lived volume collects surprises; none of them stops recording, and none makes a
//! count wrong without saying so. [`Journal::counts`] and [`History`] list each in
//! [`Counts::damaged`] / [`History::damaged`] ([`Damaged`]: the file and what is wrong), and
//! count what they can.
//!
//! - **A damaged summary** (a line that does not parse, or days that do not add up to the
//!   total: cut at a line boundary, say) is left out of the counts, never rewritten, never
//!   reset. Rotation goes on (numbering the next segment needs only the summary's first
//!   line); retention pauses, failing with an error that names the summary's line (kept for
//!   [`Journal::take_lifecycle_error`], counted in [`Stats::failed_retentions`], retried), and
//!   resumes by itself once the summary is repaired. If even the first line is lost, rotation
//!   pauses too (a guessed number could reuse one the lost line covered), trying again once a
//!   second: the live file grows, and every visit is still recorded.
//! - **A file with a segment's name that is not a regular file that can be read** (a
//!   directory, a FIFO, a socket, a file without read permission) is never opened in a way
//!   that could block (a FIFO would wait for a writer, with the lock held), and never deleted.
//!   Readers skip it. Retention, when it reaches it, renames it out of the numbering to
//!   `<name>.damaged`, counts it under `# damaged`, and goes on with the next segment.
//! - **The history deleted under a running writer**: new segments reuse the old numbers.
//!   Counts kept for sealed segments belong to the file's identity (device, inode, size, and
//!   the times of its last write and change), never its number alone, so the new files are
//!   counted afresh.
//! - **A journal path that is a symbolic link** is followed to the file it points to, and the
//!   history is kept beside that file (rotation renames within the file's directory, never the
//!   link).
//! - **A live file rotated by someone else** (a root debug container running a backfill): the
//!   fresh live file takes the owner, group and mode of the file it replaces, as far as the
//!   rotating process may set them, so the usual writer can still append.
//!
//! Both run under the lock, in the append that needs them (retention also when a writer opens
//! the journal), so writers of several processes never step on each other. Every writer,
//! under the lock, checks that the file it holds is still the one at the path (`fstat` against
//! `stat`: device and inode) and follows the path if not, so nothing is appended to a sealed
//! segment. Other programs appending beside the library must do the same (a plain
//! `flock` + `echo >>` is safe only without rotation); the repository's README shows how.
//!
//! # Crash recovery
//!
//! A crash at any step of a rotation or a retirement leaves every acknowledged visit in exactly
//! one place: a sealed segment, the live file, or the summary's counts. A crash after the
//! rename leaves no live file: the next writer creates it (even with
//! [`Options::create`]`(false)`, since the journal exists). A crash after the summary was
//! replaced leaves segments it already counts: readers skip them, the next writer deletes them,
//! and a stale temporary summary too.
//!
//! A writer killed mid-write leaves at most one partial line at the end. Before **every**
//! append, under the lock, the writer cuts such a torn tail (another process may have died
//! since we opened the file). After a power loss some file systems also leave NUL bytes where
//! data was written but never synced; nothing acknowledged can follow them, so when a journal
//! is opened it also cuts from the first line containing a NUL, if that line starts within the
//! last 1 MiB. [`Stats::repaired_bytes`] counts what was cut.
//!
//! After a failed `fdatasync` the writer cuts its unsynced batch off the file (or makes it
//! durable again) before anything else is appended, so that the power-loss repair can never
//! take acknowledged records with it (see "Durability"); [`Stats::repaired_bytes`] counts
//! those cuts too.
//!
//! Repairs never destroy what does not look like debris of records: an unterminated last line
//! longer than 4 KiB or containing bytes no record has is refused with [`Error::Corrupt`], so
//! pointing a journal at the wrong file cannot truncate it. NUL bytes deeper in the file are
//! reported by readers, never cut.
//!
//! # Errors
//!
//! Every fallible function returns [`Result`]; its `# Errors` section says which variants of
//! [`Error`] it returns. Nothing panics on anything read from disk.
//!
//! # Non-goals
//!
//! - Not a database: no index, no query, no deletion. Read by streaming.
//! - No compaction of the live file: it grows by one line per visit (about 42 bytes; a
//!   million visits is 42 MB) until it is rotated; retired segments keep only their counts per
//!   day, not their visits.
//! - No replication: each file is one machine's (or one pod's) record.
//! - Linux and other Unixes (`flock`, `pread`). Network file systems that do not honour
//!   `flock` are not supported for several writers.
#![deny(missing_docs)]

mod cache;
mod commit;
mod counts;
mod dir;
mod error;
mod history;
mod lifecycle;
mod locked;
mod options;
mod reader;
mod repair;
mod segment;
mod storage;
mod visit;
mod writer;

pub use crate::counts::{Counts, Damaged};
pub use crate::error::{Error, Op, Result};
pub use crate::history::History;
pub use crate::options::Options;
pub use crate::reader::{Reader, Report};
pub use crate::visit::{Visit, anonymize};
pub use crate::writer::{Journal, Stats};

// The READMEs' Rust examples are compiled as doc tests, so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct CrateReadme;

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct RepositoryReadme;
