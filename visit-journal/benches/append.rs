//! `cargo bench -p visit-journal --bench append`: durable append throughput against the
//! physical baseline measured in the same run, and streaming read speed and memory.
//!
//! Prints one `name value` line per figure, the ratios last. The machine is shared and noisy,
//! so every figure is compared only with the ones from the same run:
//!
//! - `raw_fdatasync_loop_per_s`: `write` + `fdatasync` per record on a plain file, the most
//!   a single durable writer can do on this disk. Measured in short rounds alternating with
//!   `append_1t_per_s` (one thread, one `Journal`) and `append_16t_per_s` (16 threads sharing
//!   one `Journal`: group commit), so all three see the same disk weather. `ratio_1t_vs_raw`
//!   (target ≥ 0.9) and `ratio_16t_vs_1t` (target ≥ 10) are medians of the rounds' ratios.
//! - `append_4p_per_s`: 4 processes, one thread each, one file (flock; no shared fsync).
//! - `sqlite_full_*_rows_per_s`: `../shared/anchors/sqlite_append.py` (WAL,
//!   `synchronous=FULL`: the same durability promise), when python3 and the script are there.
//! - `append_16t_rotating_per_s`: as `append_16t_per_s`, with a 1 MiB rotate size (a
//!   rotation every ~25,000 records), in the same rounds; `ratio_16t_rotating_vs_16t`
//!   (target >= 0.9) is the median of the rounds' ratios.
//! - `read_mb_per_s` and `peak_rss_mb`: a child process streams (and parses) a 256 MB
//!   journal with `Reader` and reports its peak resident memory (target < 20 MB). The file is
//!   fresh in the page cache, so this measures the reader, not the disk.
//! - `history_read_mb_per_s` and `history_peak_rss_mb`: the same 256 MB as a history of 32
//!   sealed segments and a live file, streamed with `History`, alternating with the one-file
//!   read; `ratio_history_vs_file_read` (target >= 0.9) is the median of the rounds' ratios.
//! - `history_tail_1000_ms`: `History::open` plus `tail(1000)` and reading the 1000 visits,
//!   which span the live file and the last segment (target < 5 ms; the median of 50).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark prints its figures and fails loudly"
)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use visit_journal::{History, Journal, Options, Reader, Visit};

const CHILD_ENV: &str = "VISIT_JOURNAL_BENCH_CHILD";
const ROUND: Duration = Duration::from_millis(600);
const ROUNDS: usize = 5;
const READ_BYTES: u64 = 256 << 20;

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return child(&spec);
    }
    let started = Instant::now();
    let dir = tempdir();

    // Short alternating rounds, so that every figure of a ratio saw the same disk weather;
    // each ratio is the median of its rounds' ratios.
    let (mut raw, mut one, mut sixteen) = (Vec::new(), Vec::new(), Vec::new());
    let mut rotating = Vec::new();
    for round in 0..ROUNDS {
        raw.push(raw_loop(&dir.join(format!("raw-{round}.txt")), ROUND));
        one.push(appends(
            &dir.join(format!("1t-{round}.txt")),
            1,
            0,
            ROUND * 2,
        ));
        sixteen.push(appends(
            &dir.join(format!("16t-{round}.txt")),
            16,
            0,
            ROUND * 2,
        ));
        let rot_dir = dir.join(format!("16t-rotating-{round}"));
        fs::create_dir_all(&rot_dir).unwrap();
        rotating.push(appends(&rot_dir.join("visits.txt"), 16, 1 << 20, ROUND * 2));
    }
    let ratio_1t = median_ratio(&one, &raw);
    let ratio_16t = median_ratio(&sixteen, &one);
    let ratio_rotating = median_ratio(&rotating, &sixteen);
    figure("raw_fdatasync_loop_per_s", mean(&raw));
    figure("append_1t_per_s", mean(&one));
    figure("append_16t_per_s", mean(&sixteen));
    figure("append_16t_rotating_per_s", mean(&rotating));
    let four_p = processes(&dir.join("4p.txt"), 4, Duration::from_secs(3));
    figure("append_4p_per_s", four_p);

    for threads in [1, 16] {
        if let Some(rows) = sqlite(&dir, threads) {
            figure(&format!("sqlite_full_{threads}t_rows_per_s"), rows);
        }
    }

    let file = dir.join("read.txt");
    write_big(&file, 0);
    let history_dir = dir.join("history");
    fs::create_dir_all(&history_dir).unwrap();
    let history = history_dir.join("visits.txt");
    write_big(&history, READ_BYTES / 32);
    let (mut file_reads, mut history_reads, mut rss, mut history_rss) =
        (Vec::new(), Vec::new(), 0f64, 0f64);
    for _ in 0..3 {
        let (mb_per_s, peak) = read_child("read", &file);
        file_reads.push(mb_per_s);
        rss = rss.max(peak);
        let (mb_per_s, peak) = read_child("history", &history);
        history_reads.push(mb_per_s);
        history_rss = history_rss.max(peak);
    }
    let ratio_history = median_ratio(&history_reads, &file_reads);
    figure("read_mb_per_s", mean(&file_reads));
    figure("peak_rss_mb", rss);
    figure("history_read_mb_per_s", mean(&history_reads));
    figure("history_peak_rss_mb", history_rss);
    figure("history_tail_1000_ms", tail_ms(&history));
    let _ = fs::remove_file(&file);

    figure("ratio_1t_vs_raw", ratio_1t);
    figure("ratio_16t_vs_1t", ratio_16t);
    figure("ratio_16t_rotating_vs_16t", ratio_rotating);
    figure("ratio_history_vs_file_read", ratio_history);
    println!(
        "# took {:.1} s; targets: 1t/raw >= 0.9, 16t/1t >= 10, 16t rotating/16t >= 0.9, \
         history/file read >= 0.9, peak RSS < 20 MB, history tail(1000) < 5 ms",
        started.elapsed().as_secs_f64()
    );
    let _ = fs::remove_dir_all(&dir);
}

fn figure(name: &str, value: f64) {
    if value >= 100.0 {
        println!("{name} {value:.0}");
    } else {
        println!("{name} {value:.2}");
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn median_ratio(num: &[f64], den: &[f64]) -> f64 {
    let mut ratios: Vec<f64> = num.iter().zip(den).map(|(n, d)| n / d).collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// A scratch directory on the disk the project builds on (not a tmpfs `/tmp`).
fn tempdir() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("append-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn line() -> Vec<u8> {
    format!("{}\n", sample(7)).into_bytes()
}

fn sample(n: u32) -> Visit {
    Visit::now(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (n & 0xff_ffff))))
}

/// The physical baseline: one `write` and one `fdatasync` per record.
fn raw_loop(path: &Path, time: Duration) -> f64 {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let line = line();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < time {
        f.write_all(&line).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// `threads` threads appending to one shared durable journal for `time`, rotating at
/// `rotate_size` bytes (0: never).
fn appends(path: &Path, threads: u32, rotate_size: u64, time: Duration) -> f64 {
    let journal = Options::new().rotate_size(rotate_size).open(path).unwrap();
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let journal = &journal;
                s.spawn(move || {
                    let visit = sample(t);
                    let mut n = 0u64;
                    while start.elapsed() < time {
                        journal.append(&visit).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let rate = total as f64 / start.elapsed().as_secs_f64();
    let st = journal.stats();
    println!(
        "# {threads}t rotate={rotate_size}: {} records, {:.1} per write, {:.1} per fsync, {} rotations",
        st.records,
        st.records as f64 / st.batches as f64,
        st.records as f64 / st.syncs as f64,
        st.rotations,
    );
    assert_eq!(
        History::open(path).unwrap().count_lines().unwrap(),
        total,
        "every acknowledged append is in the history"
    );
    rate
}

/// `n` processes (this binary re-executed), one thread each, appending to one file until a
/// shared deadline.
fn processes(path: &Path, n: u32, time: Duration) -> f64 {
    Journal::open(path).unwrap(); // create it once, before the race
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let begin = now_ms + 300; // time for every child to start
    let end = begin + time.as_millis();
    let children: Vec<_> = (0..n)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .env(
                    CHILD_ENV,
                    format!("append;{};{begin};{end}", path.display()),
                )
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = 0u64;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        total += String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap();
    }
    assert_eq!(Journal::open(path).unwrap().count().unwrap(), total);
    total as f64 / time.as_secs_f64()
}

/// The SQLite anchor, if python3 and the script are there.
fn sqlite(dir: &Path, threads: u32) -> Option<f64> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/anchors/sqlite_append.py");
    if !script.exists() {
        println!("# sqlite anchor not found at {}", script.display());
        return None;
    }
    let db = dir.join(format!("sqlite-{threads}"));
    fs::create_dir_all(&db).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .args([
            "--dir",
            db.to_str()?,
            "--threads",
            &threads.to_string(),
            "--rows",
            "4000",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().last()?.split_whitespace().nth(1)?.parse().ok()
}

/// Writes a 256 MB journal (without fsync: it is read from the page cache anyway), rotating at
/// `rotate_size` (0: one file), then 300 visits more, so a tail spans the live file and the
/// last segment.
fn write_big(path: &Path, rotate_size: u64) {
    let journal = Options::new()
        .sync(false)
        .rotate_size(rotate_size)
        .open(path)
        .unwrap();
    let batch: Vec<Visit> = (0..1_000).map(sample).collect();
    let mut bytes = 0;
    while bytes < READ_BYTES {
        journal.append_batch(&batch).unwrap();
        bytes = journal.stats().bytes;
    }
    journal.append_batch(&batch[..300]).unwrap();
}

/// The median time of `History::open` + `tail(1000)` + reading them, in milliseconds.
fn tail_ms(path: &Path) -> f64 {
    let mut times: Vec<f64> = (0..50)
        .map(|_| {
            let start = Instant::now();
            let mut history = History::open(path).unwrap();
            assert_eq!(history.tail(1000).unwrap(), 1000);
            assert_eq!(history.count(), 1000);
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Has a child stream the journal (`read`: the one file with `Reader`; `history`: every file
/// with `History`); returns its MB/s and peak RSS.
fn read_child(how: &str, path: &Path) -> (f64, f64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, format!("{how};{}", path.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().unwrap());
    (fields.next().unwrap(), fields.next().unwrap())
}

fn child(spec: &str) {
    let parts: Vec<&str> = spec.split(';').collect();
    match parts[0] {
        "append" => {
            let (begin, end): (u128, u128) = (parts[2].parse().unwrap(), parts[3].parse().unwrap());
            let journal = Journal::open(parts[1]).unwrap();
            let now = || {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis()
            };
            while now() < begin {
                std::thread::sleep(Duration::from_millis(1));
            }
            let visit = sample(std::process::id());
            let mut n = 0u64;
            while now() < end {
                journal.append(&visit).unwrap();
                n += 1;
            }
            println!("{n}");
        }
        "read" | "history" => {
            let start = Instant::now();
            let (visits, bytes): (Box<dyn Iterator<Item = visit_journal::Result<Visit>>>, u64) =
                if parts[0] == "read" {
                    let bytes = fs::metadata(parts[1]).unwrap().len();
                    (Box::new(Reader::open(parts[1]).unwrap()), bytes)
                } else {
                    let history = History::open(parts[1]).unwrap();
                    let bytes = history
                        .files()
                        .map(|f| fs::metadata(f).unwrap().len())
                        .sum();
                    (Box::new(history), bytes)
                };
            let mut records = 0u64;
            for visit in visits {
                visit.unwrap();
                records += 1;
            }
            let secs = start.elapsed().as_secs_f64();
            assert!(records > 0);
            println!("{} {}", bytes as f64 / 1e6 / secs, peak_rss_mb());
        }
        other => panic!("unknown bench child {other}"),
    }
}

/// VmHWM: the most resident memory this process has used.
fn peak_rss_mb() -> f64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}
