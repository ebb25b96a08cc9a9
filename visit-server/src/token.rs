//! Read tokens (CONTRACT.md section 11): who may read the visits.
//!
//! Client addresses are personal data. With `--read-token-file PATH`, `/visits`, `/stats` and
//! `/dashboard` answer only requests that carry one of the file's tokens; the greeting, the
//! probes, `/metrics`, `/openapi.json` and `/favicon.ico` stay open (they show no address).
//!
//! # The file
//!
//! One or two tokens, one per line; blank lines and white space around a token are ignored
//! (so a Secret made with `--from-literal` and one made from a file with a final newline read
//! the same). Each token is 32 to 1024 bytes of visible ASCII (`!` to `~`). Two tokens let an
//! operator rotate without downtime: add the new one, move the clients to it, remove the old
//! one. The first token is the one this replica sends to its peers (see [`crate::cluster`]).
//! Anything else is refused at start ([`ReadTokens::load`], [`TokenError`]: one line naming
//! the path and what is wrong, never a token).
//!
//! # Credentials
//!
//! `Authorization: Bearer <token>`, or `Authorization: Basic <base64(user ":" token)>` with any
//! user name: the latter is what a browser sends once it has asked for a user name and a
//! password, after the `401`'s [`CHALLENGE`]. Scheme names are case-insensitive (RFC 9110
//! section 11.1); the token is compared byte for byte, in constant time ([`Tokens::accepts`]).
//! A request with no `Authorization`, with two, with another scheme, with malformed
//! credentials or with a token that is not one of the file's is refused; [`Refusal`] says
//! which, for the log.
//!
//! # Following the file
//!
//! Kubernetes updates a mounted Secret in place: it writes the new files into a fresh
//! directory and swaps the `..data` symlink the file's path goes through, so the path stays
//! and the file behind it is a new one. The path is therefore looked at again, not the file
//! first opened: [`ReadTokens::refresh`], at most once every [`CHECK_INTERVAL`], `stat`s the
//! path (following symlinks) and reads the file again when its device, inode, size, mtime or
//! ctime differ from what was last read, or when it was read within [`RACY_WINDOW`] of its
//! mtime (a second write within the same timestamp tick would otherwise go unseen).
//! `main` calls it once a second on a thread of its own, so a change is read, and logged,
//! even when nobody reads; and a protected request calls it first when the last look is a
//! second old, so a token removed is refused by the first request more than a second after
//! the change whatever that thread is doing. Either way a token added is accepted, and one
//! removed refused, within about a second, without a restart.
//!
//! A file that turns bad while the server runs (deleted, emptied, unreadable, a token too
//! short) never opens reads and never stops the server: the last good tokens stay in force,
//! the file is read again on each look until it is good, and the problem is logged as
//! `read_token_file_invalid` at most once every [`REPORT_INTERVAL`]. A good file after a
//! change or a problem is logged as `read_tokens_reloaded` with the number of tokens.
//!
//! Why `stat` and not inotify: it needs no dependency and no special case for the symlink
//! swap (inotify watches inodes, and the swap replaces the ones on the path), and a `stat`
//! a second costs nothing.
//!
//! Architecture Invariant: no token, and no credential a client sent, is ever written to a
//! log line, an error message or a response. [`Tokens`] and [`ReadTokens`] print as a count;
//! problems name a line and a byte position, never a byte's value.

use std::borrow::Cow;
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::log::{self, Value};

/// The shortest token, in bytes: 32 bytes of `openssl rand -hex 32`'s 64 are already 128
/// bits.
pub const MIN_LEN: usize = 32;

/// The longest token, in bytes.
pub const MAX_LEN: usize = 1024;

/// The most tokens a file may hold: the current one and, while rotating, the next.
pub const MAX_TOKENS: usize = 2;

/// The largest token file read: two of the longest tokens fit many times over.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The longest `Authorization` value looked at: a Basic pair of the longest token and a long
/// user name fits. A longer one is refused before it is decoded.
pub const MAX_CREDENTIALS_LEN: usize = 4096;

/// How often a protected request may look at the token file again.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A file read this soon after its mtime is read again on the next check, even if its
/// metadata looks the same: a second write within one timestamp tick changes nothing a
/// `stat` shows (Git's "racily clean" entries).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// How often a token file that stays bad is logged again.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// The `WWW-Authenticate` value of a `401`: a browser then asks for a user name and password
/// (any user name; the token as the password) and sends them as Basic credentials.
pub const CHALLENGE: &str = "Basic realm=\"visit-server\", charset=\"UTF-8\"";

/// What is wrong with a token file (without naming the path; see [`TokenError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Nothing at the path (or a directory on the way is missing).
    NotFound,
    /// Something at the path that is not a regular file: a directory, a FIFO, a device.
    NotAFile(&'static str),
    /// It cannot be opened or read (the operating system's reason).
    Unreadable(String),
    /// Larger than [`MAX_FILE_BYTES`].
    TooBig(u64),
    /// No token: empty, or only white space.
    Empty,
    /// More than [`MAX_TOKENS`] tokens.
    TooMany(usize),
    /// The token on this line (1-based) is shorter than [`MIN_LEN`] bytes.
    TooShort {
        /// The line.
        line: usize,
        /// The token's length.
        len: usize,
    },
    /// The token on this line is longer than [`MAX_LEN`] bytes.
    TooLong {
        /// The line.
        line: usize,
        /// The token's length.
        len: usize,
    },
    /// The token on this line has a byte other than visible ASCII at this (1-based) position
    /// of the token: what kind of byte, never its value.
    BadByte {
        /// The line.
        line: usize,
        /// The position in the token.
        at: usize,
        /// `white space`, `a control character` or `not ASCII`.
        kind: &'static str,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RULE: &str = "a token is 32 to 1024 bytes of visible ASCII (! to ~), one per line";
        match self {
            Problem::NotFound => f.write_str("no such file"),
            Problem::NotAFile(what) => write!(f, "is {what}, not a file"),
            Problem::Unreadable(why) => write!(f, "cannot be read: {why}"),
            Problem::TooBig(n) => write!(
                f,
                "is {n} bytes, more than a token file's {MAX_FILE_BYTES}; {RULE}"
            ),
            Problem::Empty => write!(
                f,
                "holds no token (it is empty or blank); {RULE}, made with e.g. `openssl rand -hex 32`"
            ),
            Problem::TooMany(n) => write!(
                f,
                "holds {n} tokens, at most {MAX_TOKENS}: the current one and, while rotating, \
                 the next, one per line"
            ),
            Problem::TooShort { line, len } => write!(
                f,
                "line {line}: the token is {len} bytes, shorter than {MIN_LEN}; {RULE} \
                 (`openssl rand -hex 32` makes one)"
            ),
            Problem::TooLong { line, len } => write!(
                f,
                "line {line}: the token is {len} bytes, longer than {MAX_LEN}; {RULE}"
            ),
            Problem::BadByte { line, at, kind } => {
                write!(f, "line {line}: byte {at} of the token is {kind}; {RULE}")
            }
        }
    }
}

/// A token file that cannot be used: its path and what is wrong. Displays as one line,
/// `read token file PATH: PROBLEM`, and never holds a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// The file, as configured.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read token file {}: {}",
            self.path.display(),
            self.problem
        )
    }
}

impl std::error::Error for TokenError {}

/// One or two checked tokens. Neither `Debug` nor anything else shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens(Vec<Box<str>>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} redacted)", self.0.len())
    }
}

impl Tokens {
    /// Parses a token file's content.
    ///
    /// # Errors
    ///
    /// The first [`Problem`]: none at all or more than [`MAX_TOKENS`], then the first line
    /// whose token is too short, too long or has a byte other than `!` to `~`.
    pub fn parse(content: &[u8]) -> Result<Tokens, Problem> {
        let lines: Vec<(usize, &[u8])> = content
            .split(|&b| b == b'\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_ascii()))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        if lines.is_empty() {
            return Err(Problem::Empty);
        }
        if lines.len() > MAX_TOKENS {
            return Err(Problem::TooMany(lines.len()));
        }
        let mut tokens = Vec::with_capacity(lines.len());
        for (line, token) in lines {
            if let Some(i) = token.iter().position(|b| !b.is_ascii_graphic()) {
                let kind = match token[i] {
                    b if b.is_ascii_whitespace() => "white space",
                    b if b.is_ascii() => "a control character",
                    _ => "not ASCII",
                };
                return Err(Problem::BadByte {
                    line,
                    at: i + 1,
                    kind,
                });
            }
            if token.len() < MIN_LEN {
                return Err(Problem::TooShort {
                    line,
                    len: token.len(),
                });
            }
            if token.len() > MAX_LEN {
                return Err(Problem::TooLong {
                    line,
                    len: token.len(),
                });
            }
            // Visible ASCII, checked just above: always UTF-8.
            let token = std::str::from_utf8(token).map_err(|_| Problem::BadByte {
                line,
                at: 1,
                kind: "not ASCII",
            })?;
            tokens.push(token.into());
        }
        Ok(Tokens(tokens))
    }

    /// How many tokens (1 or 2).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a [`Tokens`] holds at least one token.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True if `given` is one of the tokens, compared in constant time: every token is
    /// compared whole, whatever `given` is, so how long the answer takes tells nothing of
    /// how much of it was right.
    pub fn accepts(&self, given: &[u8]) -> bool {
        let mut any = false;
        for token in &self.0 {
            any |= same(token.as_bytes(), given);
        }
        any
    }

    /// The first token: the one this replica sends to its peers.
    fn first(&self) -> &str {
        self.0.first().map_or("", |t| t)
    }
}

/// `secret == given`, in time that depends only on `secret`'s length.
///
/// By hand rather than with `subtle` or `constant_time_eq`: both compare equal-length slices
/// only and return at once when the lengths differ, which is fine (a token's length is no
/// secret) but would still need this loop's caller to handle the lengths; the loop is five
/// lines, and a new dependency is a reviewed change of its own (STYLE.md section 6). The
/// `black_box` keeps the optimiser from turning the accumulation into an early exit, which
/// is what those crates do too.
fn same(secret: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(secret.len() != given.len());
    for (i, &s) in secret.iter().enumerate() {
        // Which branch runs depends on the length of `given`, which the client chose.
        let g = given.get(i).copied().unwrap_or(!s);
        diff = std::hint::black_box(diff | (s ^ g));
    }
    diff == 0
}

/// Why a request was refused, for the log (never the credential itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header.
    NoCredentials,
    /// More than one `Authorization` header.
    Repeated,
    /// A scheme other than Bearer or Basic.
    Scheme,
    /// No credentials after the scheme, or white space inside them.
    Malformed,
    /// Longer than [`MAX_CREDENTIALS_LEN`].
    TooLong,
    /// Basic credentials that are not base64 (RFC 4648, with padding).
    BadBase64,
    /// Basic credentials without the colon between user name and password.
    NoColon,
    /// Well-formed, but not one of the tokens.
    WrongToken,
}

impl Refusal {
    /// The `reason` field of the `unauthorized` log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoCredentials => "no credentials",
            Refusal::Repeated => "more than one Authorization header",
            Refusal::Scheme => "not Bearer or Basic",
            Refusal::Malformed => "malformed credentials",
            Refusal::TooLong => "credentials too long",
            Refusal::BadBase64 => "Basic credentials not base64",
            Refusal::NoColon => "Basic credentials without a colon",
            Refusal::WrongToken => "wrong token",
        }
    }
}

/// The token a request presents, from its `Authorization` values: the Bearer token, or the
/// password of a Basic pair.
///
/// # Errors
///
/// Why the values present no token.
pub fn presented<'a>(mut values: impl Iterator<Item = &'a str>) -> Result<Cow<'a, [u8]>, Refusal> {
    let value = values.next().ok_or(Refusal::NoCredentials)?;
    if values.next().is_some() {
        return Err(Refusal::Repeated);
    }
    if value.len() > MAX_CREDENTIALS_LEN {
        return Err(Refusal::TooLong);
    }
    // credentials = auth-scheme [ 1*SP token68 ] (RFC 9110 section 11.4), inside optional
    // white space around the field value.
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once(' ').ok_or(Refusal::Malformed)?;
    let rest = rest.trim_start_matches(' ');
    if rest.is_empty() || rest.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(Refusal::Malformed);
    }
    if scheme.eq_ignore_ascii_case("Bearer") {
        Ok(Cow::Borrowed(rest.as_bytes()))
    } else if scheme.eq_ignore_ascii_case("Basic") {
        let pair = base64_decode(rest.as_bytes()).ok_or(Refusal::BadBase64)?;
        let colon = pair
            .iter()
            .position(|&b| b == b':')
            .ok_or(Refusal::NoColon)?;
        // Any user name: only the password is a token.
        Ok(Cow::Owned(pair[colon + 1..].to_vec()))
    } else {
        Err(Refusal::Scheme)
    }
}

/// Decodes base64 (RFC 4648 section 4: the standard alphabet, padded to a multiple of four
/// characters), as Basic credentials are encoded; `None` for anything else.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(v))
    }
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let quads = text.len() / 4;
    let mut out = Vec::with_capacity(quads * 3);
    for (i, quad) in text.chunks_exact(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        // Padding only at the very end, and at most two characters of it.
        if pad > 2 || (pad > 0 && i + 1 != quads) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | sextet(c)?;
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

/// The tokens in force and the file they come from, followed as it changes (see the module
/// docs). One per server, in [`crate::app::App`].
pub struct ReadTokens {
    /// The file, as configured: looked up again on every check, never only the first inode.
    path: PathBuf,
    /// The last good content of the file. Requests clone the `Arc` (or read through the
    /// lock), so a reload never waits for a comparison in progress.
    tokens: RwLock<Arc<Tokens>>,
    /// When the file was last looked at, in milliseconds since `born`: one relaxed load tells
    /// a request whether it is time to look again.
    looked: AtomicU64,
    /// The origin of `looked`.
    born: Instant,
    /// What the last look saw. The mutex also makes sure one thread looks at a time; the
    /// others go on with the tokens in force.
    watch: Mutex<Watch>,
}

impl fmt::Debug for ReadTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadTokens")
            .field("path", &self.path)
            .field("tokens", &self.current().len())
            .finish_non_exhaustive()
    }
}

/// What the last look at the token file saw.
#[derive(Debug, Default)]
struct Watch {
    /// The identity and timestamps of the file whose content is in force; `None` while the
    /// file is bad (it is then read again on every check).
    seen: Option<Stamp>,
    /// The file was read within [`RACY_WINDOW`] of its mtime: read it again next time.
    racy: bool,
    /// When a problem with the file was last logged.
    reported: Option<Instant>,
}

/// What `stat` says of a file that tells a changed one apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Reads and checks the token file at `path`, following symlinks: what was read, its stamp,
/// and whether it was read within [`RACY_WINDOW`] of its mtime.
fn read_file(path: &Path) -> Result<(Tokens, Stamp, bool), Problem> {
    let kind = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => Problem::NotFound,
        io::ErrorKind::IsADirectory => Problem::NotAFile("a directory"),
        _ => Problem::Unreadable(e.to_string()),
    };
    // Refuse a FIFO or a device before opening it: opening a FIFO would wait for a writer.
    let before = fs::metadata(path).map_err(kind)?;
    if before.is_dir() {
        return Err(Problem::NotAFile("a directory"));
    }
    if !before.is_file() {
        return Err(Problem::NotAFile("not a regular file"));
    }
    let mut file = File::open(path).map_err(kind)?;
    // The stamp of what is read, not of what the path named a moment ago.
    let meta = file.metadata().map_err(kind)?;
    if !meta.is_file() {
        return Err(Problem::NotAFile("not a regular file"));
    }
    let mut content = Vec::new();
    (&mut file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut content)
        .map_err(kind)?;
    if content.len() as u64 > MAX_FILE_BYTES {
        return Err(Problem::TooBig(meta.len().max(content.len() as u64)));
    }
    let racy = meta.modified().map_or(true, |m| {
        SystemTime::now()
            .duration_since(m)
            .map_or(true, |age| age < RACY_WINDOW)
    });
    Ok((Tokens::parse(&content)?, Stamp::of(&meta), racy))
}

impl ReadTokens {
    /// Reads and checks the token file at start.
    ///
    /// # Errors
    ///
    /// A [`TokenError`] naming the path and what is wrong with it; never a token.
    pub fn load(path: &Path) -> Result<ReadTokens, TokenError> {
        let (tokens, stamp, racy) = read_file(path).map_err(|problem| TokenError {
            path: path.to_path_buf(),
            problem,
        })?;
        Ok(ReadTokens {
            path: path.to_path_buf(),
            tokens: RwLock::new(Arc::new(tokens)),
            looked: AtomicU64::new(0),
            born: Instant::now(),
            watch: Mutex::new(Watch {
                seen: Some(stamp),
                racy,
                reported: None,
            }),
        })
    }

    /// The file, as configured.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens in force.
    pub fn current(&self) -> Arc<Tokens> {
        Arc::clone(&self.tokens.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Checks a request's `Authorization` values: `Ok` if they present one of the tokens in
    /// force. Looks at the file first if it is time (see the module docs).
    ///
    /// # Errors
    ///
    /// Why the request is refused.
    pub fn admit<'a>(&self, authorization: impl Iterator<Item = &'a str>) -> Result<(), Refusal> {
        let given = presented(authorization)?;
        self.refresh();
        if self.current().accepts(&given) {
            Ok(())
        } else {
            Err(Refusal::WrongToken)
        }
    }

    /// `Bearer <the first token>`: the `Authorization` this replica sends to its peers.
    pub fn bearer(&self) -> String {
        self.refresh();
        format!("Bearer {}", self.current().first())
    }

    /// Looks at the file again if the last look was [`CHECK_INTERVAL`] ago or more, unless
    /// another thread is at it.
    pub fn refresh(&self) {
        let due = |now: u64| now.saturating_sub(self.looked.load(Relaxed)) >= interval_ms();
        if !due(self.elapsed_ms()) {
            return;
        }
        let Ok(mut watch) = self.watch.try_lock() else {
            return;
        };
        // Another thread may have looked between the check above and the lock.
        if !due(self.elapsed_ms()) {
            return;
        }
        self.look(&mut watch);
        self.looked.store(self.elapsed_ms(), Relaxed);
    }

    fn elapsed_ms(&self) -> u64 {
        // Non-zero from the start, so the first request after `load` may look already.
        u64::try_from(self.born.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(interval_ms())
    }

    /// Reads the file if it may have changed; installs good tokens, logs problems.
    fn look(&self, watch: &mut Watch) {
        if let Some(seen) = watch.seen
            && !watch.racy
            && fs::metadata(&self.path).is_ok_and(|m| Stamp::of(&m) == seen)
        {
            return;
        }
        let path = self.path.display();
        match read_file(&self.path) {
            Ok((tokens, stamp, racy)) => {
                let recovered = watch.seen.is_none();
                watch.seen = Some(stamp);
                watch.racy = racy;
                let changed = *self.current() != tokens;
                let count = tokens.len() as u64;
                if changed {
                    *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tokens);
                }
                if changed || recovered {
                    log::info(
                        "read_tokens_reloaded",
                        &[
                            ("path", Value::Display(&path)),
                            ("tokens", count.into()),
                            ("changed", changed.into()),
                        ],
                    );
                }
            }
            Err(problem) => {
                watch.seen = None;
                if watch
                    .reported
                    .is_none_or(|at| at.elapsed() >= REPORT_INTERVAL)
                {
                    watch.reported = Some(Instant::now());
                    log::error(
                        "read_token_file_invalid",
                        &[
                            ("path", Value::Display(&path)),
                            ("cause", Value::Display(&problem)),
                            ("kept_tokens", (self.current().len() as u64).into()),
                        ],
                    );
                }
            }
        }
    }
}

/// [`CHECK_INTERVAL`] in milliseconds.
fn interval_ms() -> u64 {
    CHECK_INTERVAL.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_file_holds_one_or_two_tokens_around_blank_lines() {
        assert_eq!(Tokens::parse(A.as_bytes()).unwrap().len(), 1);
        let two = format!("\n  {A}\t\r\n\n{B}\n\n");
        let t = Tokens::parse(two.as_bytes()).unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.accepts(A.as_bytes()) && t.accepts(B.as_bytes()));
        assert_eq!(t.first(), A);
        let edges = format!("{}\n{}", "!".repeat(MIN_LEN), "~".repeat(MAX_LEN));
        assert_eq!(Tokens::parse(edges.as_bytes()).unwrap().len(), 2);
        // Debug shows no token.
        assert_eq!(format!("{t:?}"), "Tokens(2 redacted)");
    }

    #[test]
    fn bad_files_name_the_problem_and_never_a_token() {
        let short = "s".repeat(MIN_LEN - 1);
        let long = "l".repeat(MAX_LEN + 1);
        let cases: Vec<(Vec<u8>, Problem)> = vec![
            (b"".to_vec(), Problem::Empty),
            (b" \n\t\r\n\n".to_vec(), Problem::Empty),
            (
                short.clone().into_bytes(),
                Problem::TooShort { line: 1, len: 31 },
            ),
            (
                format!("{A}\n\n{long}").into_bytes(),
                Problem::TooLong { line: 3, len: 1025 },
            ),
            (
                format!("{A}é").into_bytes(),
                Problem::BadByte {
                    line: 1,
                    at: 65,
                    kind: "not ASCII",
                },
            ),
            (
                format!("{B}\x07{B}").into_bytes(),
                Problem::BadByte {
                    line: 1,
                    at: 33,
                    kind: "a control character",
                },
            ),
            (
                format!("{B}\x7f").into_bytes(),
                Problem::BadByte {
                    line: 1,
                    at: 33,
                    kind: "a control character",
                },
            ),
            (
                format!("{B} {B}").into_bytes(),
                Problem::BadByte {
                    line: 1,
                    at: 33,
                    kind: "white space",
                },
            ),
            (format!("{A}\n{B}\n{A}").into_bytes(), Problem::TooMany(3)),
        ];
        for (content, want) in cases {
            let got = Tokens::parse(&content).unwrap_err();
            assert_eq!(got, want, "{content:?}");
            let text = got.to_string();
            for secret in [A, B, &short, &long] {
                assert!(!text.contains(secret), "{text}");
            }
            assert!(!text.contains('\n'), "{text}");
        }
        let e = TokenError {
            path: "/run/token".into(),
            problem: Problem::TooShort { line: 2, len: 5 },
        };
        assert_eq!(
            e.to_string(),
            "read token file /run/token: line 2: the token is 5 bytes, shorter than 32; a token \
             is 32 to 1024 bytes of visible ASCII (! to ~), one per line (`openssl rand -hex 32` \
             makes one)"
        );
    }

    #[test]
    fn comparison_accepts_exactly_the_tokens() {
        let t = Tokens::parse(format!("{A}\n{B}").as_bytes()).unwrap();
        assert!(t.accepts(A.as_bytes()));
        assert!(t.accepts(B.as_bytes()));
        for wrong in [
            &A[..A.len() - 1],
            &format!("{A}a"),
            &format!("{B}{A}"),
            "",
            &A.to_uppercase(),
            &format!("{}b", &A[..A.len() - 1]),
        ] {
            assert!(!t.accepts(wrong.as_bytes()), "{wrong}");
        }
        // A byte that is the token's byte with every bit flipped is no match either.
        assert!(!same(b"\x00", b"\xff") && !same(b"\xff", b""));
        assert!(same(b"", b""));
    }

    #[test]
    fn base64_is_strict_rfc4648() {
        // RFC 4648 section 10's test vectors, and bytes that are not text.
        for (text, raw) in [
            ("", &b""[..]),
            ("Zg==", b"f"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYg==", b"foob"),
            ("Zm9vYmE=", b"fooba"),
            ("Zm9vYmFy", b"foobar"),
            ("AP+A", &[0, 255, 128]),
        ] {
            assert_eq!(
                base64_decode(text.as_bytes()).as_deref(),
                Some(raw),
                "{text}"
            );
        }
        for bad in [
            "Zm9", "Zm9v=", "Zg", "Zg=", "Z===", "Zg==Zg==", "Zm-v", "Zm_v", "Zm9v\n", "====",
            "Z=g=",
        ] {
            assert_eq!(base64_decode(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn credentials_are_bearer_or_basic_in_any_case() {
        let ok = |v: &str| presented([v].into_iter()).map(|c| c.into_owned());
        // base64 of `any user:` and A.
        let basic = "YW55IHVzZXI6YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh\
                     YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYQ==";
        for v in [
            format!("Bearer {A}"),
            format!("bearer {A}"),
            format!("BEARER {A}"),
            format!("Bearer    {A}"),
            format!(" Bearer {A} "),
            format!("Basic {basic}"),
            format!("basic {basic}"),
            format!("bAsIc {basic}"),
            // An empty user name: `:` and A.
            "Basic OmFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh\
             YWFhYWFhYWFhYWFhYWFhYWFhYWE="
                .to_string(),
        ] {
            assert_eq!(ok(&v).as_deref(), Ok(A.as_bytes()), "{v}");
        }
        // The password is everything after the first colon.
        // `u:`, A and `:x`.
        let colons = "dTphYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh\
                      YWFhYWFhYWFhYWFhYWFhYWFhYWFhOng=";
        assert_eq!(
            ok(&format!("Basic {colons}")).unwrap(),
            format!("{A}:x").into_bytes()
        );
        // A alone.
        let no_colon = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh\
                        YWFhYWFhYWFhYWFhYWFhYWFhYQ==";
        for (v, why) in [
            (String::new(), Refusal::Malformed),
            ("Bearer".into(), Refusal::Malformed),
            ("Bearer ".into(), Refusal::Malformed),
            (format!("Bearer{A}"), Refusal::Malformed),
            (format!("Bearer\t{A}"), Refusal::Malformed),
            (format!("Bearer {A} {A}"), Refusal::Malformed),
            (format!("Token {A}"), Refusal::Scheme),
            (format!("Digest {A}"), Refusal::Scheme),
            (format!("Bearer: {A}"), Refusal::Scheme),
            (format!("Basic {A}!"), Refusal::BadBase64),
            ("Basic Zm9v=".into(), Refusal::BadBase64),
            (format!("Basic {no_colon}"), Refusal::NoColon),
            (
                format!("Bearer {}", "x".repeat(MAX_CREDENTIALS_LEN)),
                Refusal::TooLong,
            ),
        ] {
            assert_eq!(ok(&v), Err(why), "{v:?}");
        }
        assert_eq!(presented([].into_iter()), Err(Refusal::NoCredentials));
        let a = format!("Bearer {A}");
        assert_eq!(
            presented([a.as_str(), a.as_str()].into_iter()),
            Err(Refusal::Repeated)
        );
    }

    #[test]
    fn read_tokens_follow_the_file_and_keep_the_last_good_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, A).unwrap();
        let rt = ReadTokens::load(&path).unwrap();
        let bearer = |t: &str| format!("Bearer {t}");
        let admit = |t: &str| rt.admit([bearer(t).as_str()].into_iter());
        assert_eq!(admit(A), Ok(()));
        assert_eq!(admit(B), Err(Refusal::WrongToken));
        assert_eq!(rt.bearer(), bearer(A));
        // A change is seen by the first check after the interval, at once.
        fs::write(&path, format!("{A}\n{B}\n")).unwrap();
        rt.looked.store(0, Relaxed);
        assert_eq!(admit(B), Ok(()));
        // A file that turns bad keeps the last good tokens.
        fs::write(&path, "").unwrap();
        rt.looked.store(0, Relaxed);
        assert_eq!(admit(B), Ok(()));
        fs::remove_file(&path).unwrap();
        rt.looked.store(0, Relaxed);
        assert_eq!(admit(A), Ok(()));
        // Back, with only the new one.
        fs::write(&path, B).unwrap();
        rt.looked.store(0, Relaxed);
        assert_eq!(admit(A), Err(Refusal::WrongToken));
        assert_eq!(admit(B), Ok(()));
        assert_eq!(rt.bearer(), bearer(B));
        assert_eq!(
            format!("{rt:?}"),
            format!("ReadTokens {{ path: {path:?}, tokens: 1, .. }}")
        );
    }

    #[test]
    fn load_names_what_is_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let problem = |p: &Path| ReadTokens::load(p).unwrap_err().problem;
        assert_eq!(problem(&missing), Problem::NotFound);
        assert_eq!(problem(dir.path()), Problem::NotAFile("a directory"));
        let big = dir.path().join("big");
        fs::write(&big, vec![b'\n'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert_eq!(problem(&big), Problem::TooBig(MAX_FILE_BYTES + 1));
        let e = ReadTokens::load(&missing).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("read token file {}: no such file", missing.display())
        );
    }
}
