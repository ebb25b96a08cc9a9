//! Checks a visits journal's whole history: reports corrupt lines with their file and line
//! numbers, a torn tail, and counts visits per day and per address, including the visits of
//! retired segments that `visits.txt.summary` counts. `--repair` first cuts a torn tail, as a
//! writer would.
//!
//! ```text
//! kubectl exec pod/visit-server-0 -- cat /home/app/data/visits.txt > visits.txt
//! cargo run --example verify -- [--repair] [--top N] visits.txt
//!
//! kubectl cp visit-server-0:/home/app/data ./data     # the live file, segments and summary
//! cargo run --example verify -- data                  # a directory: its visits.txt history
//! ```
//!
//! PATH is the live file (its sealed segments `PATH.000001`, … and `PATH.summary` beside it
//! are read too, oldest first), or a directory holding `visits.txt` and its history.
//!
//! Exit status: 0 if every line is a visit (a torn last line is fine: the next writer cuts it),
//! 1 if some are not or the file ends in something that is not a torn record, 2 for bad usage,
//! a file that cannot be read, or a report that cannot be written (piped into `head`, say).
//!
//! The file is streamed, never loaded: memory grows with the number of distinct addresses and
//! days, not with the size of the file.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool reports on stdout and complains on stderr"
)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt::Display;
use std::io::ErrorKind::BrokenPipe;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use visit_journal::{Error, History, Options, Reader};

const USAGE: &str = "usage: verify [--repair] [--top N] PATH

Checks the visits journal PATH and its history (sealed segments PATH.000001, ... and the
summary PATH.summary beside it; a directory means its visits.txt): corrupt lines, torn
tail, visits per day (retired ones included) and per address.
  --repair  first cut a torn tail (and power-loss debris near the end), under the lock
  --top N   list the N busiest addresses (default 10)
Exit status: 0 clean, 1 corrupt lines found, 2 bad usage or unreadable file.";

/// How many corrupt lines are printed; the rest are only counted.
const SHOWN_ERRORS: u64 = 20;

struct Args {
    repair: bool,
    top: usize,
    path: PathBuf,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("verify: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match verify(&args, &mut io::stdout().lock()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            // Piped into `head`, say, which has read all it wanted: stop quietly.
            if let Some(e) = e.downcast_ref::<io::Error>()
                && e.kind() == BrokenPipe
            {
                return ExitCode::from(2);
            }
            // The library's message names the file; its cause (the OS error) is the `source`.
            let mut msg = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                msg = format!("{msg}: {c}");
                cause = c.source();
            }
            eprintln!("verify: {msg}");
            let corrupt = e.downcast_ref().is_some_and(Error::is_corrupt);
            ExitCode::from(if corrupt { 1 } else { 2 })
        }
    }
}

/// `Ok(None)` for `--help`.
fn parse_args(mut args: impl Iterator<Item = OsString>) -> Result<Option<Args>, String> {
    let (mut repair, mut top, mut paths) = (false, 10, Vec::new());
    while let Some(arg) = args.next() {
        // A path need not be UTF-8; an option is.
        match arg.to_str() {
            Some("-h" | "--help") => return Ok(None),
            Some("--repair") => repair = true,
            Some("--top") => {
                let n = args.next().unwrap_or_default();
                top = n
                    .to_str()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("--top needs a number, got {n:?}"))?;
            }
            // Everything after `--` is a path, even if it starts with a dash.
            Some("--") => paths.extend(args.by_ref()),
            Some(flag) if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            _ => paths.push(arg),
        }
    }
    match <[OsString; 1]>::try_from(paths) {
        Ok([path]) => Ok(Some(Args {
            repair,
            top,
            path: path.into(),
        })),
        Err(paths) if paths.is_empty() => Err("missing PATH".into()),
        Err(paths) => Err(format!("one PATH only, got {}", paths.len())),
    }
}

/// Writes the report to `out`; `Ok(true)` if the history is clean.
fn verify(args: &Args, out: &mut impl Write) -> Result<bool, Box<dyn std::error::Error>> {
    // A directory (as `kubectl cp` copies a pod's data) stands for the journal in it.
    let path = &if args.path.is_dir() {
        args.path.join("visits.txt")
    } else {
        args.path.clone()
    };
    if args.repair {
        // Opening a journal for writing repairs the end of the file, under the lock that every
        // writer takes; a stuck writer makes us give up rather than wait forever, and a missing
        // journal is an error rather than a new one (a missing live file beside its segments is
        // created: a rotation was interrupted).
        let journal = Options::new()
            .create(false)
            .lock_timeout(Duration::from_secs(10))
            .open(path)?;
        let cut = journal.stats().repaired_bytes;
        writeln!(out, "repaired {}: cut {cut} bytes", path.display())?;
    }

    let history = History::open(path)?;
    let segments = history.files().filter(|f| *f != path.as_path()).count();
    let retired = history.retired_visits();
    let summary = path.with_file_name(format!(
        "{}.summary",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let has_summary = summary.exists();
    if !path.exists() && segments == 0 && !has_summary {
        // Nothing there: the library's own words for the missing file.
        Reader::open(path)?;
    }
    // Damaged files (a summary that does not parse or add up, an odd file with a segment's
    // name, one set aside): the library counts around them and names them.
    let damaged = history.damaged().to_vec();
    for d in &damaged {
        writeln!(out, "{}: damaged: {}", d.path().display(), d.reason())?;
    }
    let retired_corrupt = history.retired_corrupt_lines();
    let mut per_day: BTreeMap<_, u64> = history.retired_days().clone();
    let (mut records, mut corrupt) = (0u64, 0u64);
    let mut per_ip = HashMap::new();
    let mut torn = None;
    for file in history.into_files() {
        let (segment, mut reader) = file?;
        // `by_ref` keeps the reader, to ask it about the tail once the lines are read.
        for visit in reader.by_ref() {
            match visit {
                Ok(visit) => {
                    records += 1;
                    // The date where the visit happened: the record's own UTC offset, not ours.
                    *per_day.entry(visit.at.date_naive()).or_insert(0) += 1;
                    *per_ip.entry(visit.ip).or_insert(0u64) += 1;
                }
                // `path:line: bad record at byte N: reason`; the reader goes on.
                Err(e) if e.is_corrupt() => {
                    corrupt += 1;
                    if corrupt <= SHOWN_ERRORS {
                        writeln!(out, "{e}")?;
                    }
                }
                // An I/O error ends the reading.
                Err(e) => return Err(e.into()),
            }
        }
        // Would a writer cut the unterminated end, or refuse it? Asked without writing.
        let refused = reader.check_tail()?;
        if let Some(err) = &refused {
            // Reported like a corrupt line, in the library's words.
            corrupt += 1;
            writeln!(out, "{err}")?;
        }
        let tail = reader.torn_tail_bytes();
        if segment.is_some() {
            // A sealed segment ends in a whole line and is never written again: no writer
            // will ever cut what follows it.
            if tail > 0 && refused.is_none() {
                corrupt += 1;
                writeln!(
                    out,
                    "{}: {tail} bytes after the last complete line of a sealed segment",
                    reader.path().display()
                )?;
            }
        } else {
            torn = Some((tail, refused.is_some()));
        }
    }
    if corrupt > SHOWN_ERRORS {
        writeln!(out, "... and {} more corrupt lines", corrupt - SHOWN_ERRORS)?;
    }

    writeln!(out, "{}:", path.display())?;
    if segments > 0 || has_summary {
        writeln!(out, "  sealed segments: {segments}")?;
        writeln!(
            out,
            "  retired visits:  {retired} (counted in {}; {retired_corrupt} corrupt lines)",
            summary.display()
        )?;
    }
    writeln!(out, "  visits:         {records}")?;
    writeln!(out, "  corrupt lines:  {corrupt}")?;
    if !damaged.is_empty() {
        writeln!(out, "  damaged files:  {}", damaged.len())?;
    }
    if segments > 0 || has_summary {
        writeln!(out, "  all visits:     {}", records + retired)?;
    }
    match torn.unwrap_or((0, false)) {
        (0, _) => writeln!(out, "  torn tail:      none")?,
        (n, false) => writeln!(
            out,
            "  torn tail:      {n} bytes after the last complete line (readers ignore them; \
             the next writer, or --repair, cuts them)"
        )?,
        (n, true) => writeln!(
            out,
            "  torn tail:      {n} bytes that are not a torn record"
        )?,
    }
    if records + retired > 0 {
        print_counts(out, &per_day, per_ip, args.top, retired)?;
    }
    Ok(corrupt == 0 && damaged.is_empty())
}

/// Writes the visits per day, and per address for the `top` busiest addresses (the summary
/// keeps no addresses, so `retired` visits count only per day).
fn print_counts(
    out: &mut impl Write,
    per_day: &BTreeMap<impl Display, u64>,
    per_ip: HashMap<IpAddr, u64>,
    top: usize,
    retired: u64,
) -> io::Result<()> {
    if retired > 0 {
        writeln!(
            out,
            "visits per day (each record's own date; retired visits included):"
        )?;
    } else {
        writeln!(out, "visits per day (each record's own date):")?;
    }
    for (day, n) in per_day {
        writeln!(out, "  {day}  {n:>8}")?;
    }
    let mut busiest: Vec<_> = per_ip.into_iter().collect();
    // Most visits first; equal counts in address order, so the output is stable.
    busiest.sort_unstable_by(|(ip_a, a), (ip_b, b)| b.cmp(a).then(ip_a.cmp(ip_b)));
    let shown = top.min(busiest.len());
    writeln!(
        out,
        "visits per address (top {shown} of {}):",
        busiest.len()
    )?;
    for (ip, n) in &busiest[..shown] {
        writeln!(out, "  {n:>8}  {ip}")?;
    }
    Ok(())
}
