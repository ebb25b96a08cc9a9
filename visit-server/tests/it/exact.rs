//! Counts that are exact after any race and on any volume (CONTRACT §10): every figure the
//! server shows is a count of the history at one moment, or the answer names what it could
//! not count; nothing on the volume stops recording.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Scratch, Server};

fn json(server: &Server, path: &str) -> serde_json::Value {
    let r = server.get(path);
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    serde_json::from_slice(&r.body).unwrap()
}

fn days_sum(days: &serde_json::Value) -> u64 {
    days.as_array()
        .unwrap()
        .iter()
        .map(|d| d["visits"].as_u64().unwrap())
        .sum()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn visit(server: &Server, n: usize) {
    for _ in 0..n {
        assert_eq!(server.get("/").status, 200);
    }
}

#[test]
fn stats_count_only_the_new_files_after_the_history_is_deleted_under_the_server() {
    let s = Scratch::new();
    let file = s.file();
    let dir = file.parent().unwrap();
    fs::create_dir_all(dir).unwrap();
    // Two small sealed segments, counted (and their counts kept) by the first /stats.
    for n in 1..=2 {
        let lines: String = (0..5)
            .map(|i| format!("2026-11-20T10:00:0{i}.000Z - 10.0.0.{n}\n"))
            .collect();
        fs::write(dir.join(format!("visits.txt.00000{n}")), lines).unwrap();
    }
    let server = Server::start(&file, &["--rotate-size", "4096"]);
    assert_eq!(json(&server, "/stats")["total"]["visits"], 10);
    // The operator deletes the whole history; the new segments reuse the old numbers.
    for name in names(dir) {
        fs::remove_file(dir.join(name)).unwrap();
    }
    visit(&server, 300);
    assert!(dir.join("visits.txt.000002").exists(), "{:?}", names(dir));
    for _ in 0..2 {
        let stats = json(&server, "/stats");
        assert_eq!(stats["total"]["visits"], 300, "{stats}");
        assert_eq!(days_sum(&stats["total"]["days"]), 300);
    }
}

#[test]
fn stats_list_every_day_however_many() {
    let s = Scratch::new();
    let file = s.file();
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    // A summary of 500 days of 10 visits each: older than the /stats of today could list.
    let mut summary = String::from("# folded through 3\n");
    let first = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    for i in 0..500 {
        summary.push_str(&format!("{} 10\n", first + chrono::Days::new(i)));
    }
    fs::write(file.with_file_name("visits.txt.summary"), summary).unwrap();
    let server = Server::start(&file, &["--rotate-size", "4096"]);
    visit(&server, 1);
    let stats = json(&server, "/stats");
    assert_eq!(stats["total"]["visits"], 5001);
    assert_eq!(stats["total"]["days"].as_array().unwrap().len(), 501);
    assert_eq!(days_sum(&stats["total"]["days"]), 5001);
    assert_eq!(days_sum(&stats["replicas"][0]["days"]), 5001);
    let csv = server.get("/stats?format=csv").text();
    let rows: u64 = csv
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(rows, 5001, "the CSV adds up to the total");
}

/// Starts a server over a history whose summary is damaged, with `--rotate-size 4096` and
/// `--retain-size 8192`.
fn over_a_damaged_summary(s: &Scratch) -> Server {
    let file = s.file();
    let server = Server::start(&file, &["--rotate-size", "4096", "--retain-size", "8192"]);
    visit(&server, 400);
    drop(server);
    let summary = file.with_file_name("visits.txt.summary");
    let text = fs::read_to_string(&summary).unwrap();
    // One byte changed: a day line that no longer parses.
    let damaged = text.replacen("\n20", "\n2x", 1);
    assert_ne!(text, damaged);
    fs::write(&summary, damaged).unwrap();
    Server::start(&file, &["--rotate-size", "4096", "--retain-size", "8192"])
}

#[test]
fn a_damaged_summary_never_stops_recording_and_reads_answer_what_they_can() {
    let s = Scratch::new();
    let file = s.file();
    let server = over_a_damaged_summary(&s);
    visit(&server, 600);
    let live = fs::metadata(&file).unwrap().len();
    assert!(
        live <= 4096,
        "rotation stopped: the live file is {live} bytes"
    );
    assert_eq!(server.get("/visits").status, 200);
    assert_eq!(server.get("/readyz").status, 200);
    // Reads answer 200 with what they can count, and name the summary.
    let stats = json(&server, "/stats");
    let damaged = stats["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{stats}");
    assert_eq!(damaged[0]["file"], "visits.txt.summary");
    assert_eq!(damaged[0]["replica"], stats["replica"]);
    assert!(
        damaged[0]["error"].as_str().unwrap().contains("line "),
        "{stats}"
    );
    let on_disk = cat_lines(&file);
    assert_eq!(
        stats["total"]["visits"], on_disk,
        "the summary's visits are left out"
    );
    assert_eq!(days_sum(&stats["total"]["days"]), on_disk);
    let page = server.get("/dashboard").text();
    assert!(
        page.contains("data-damaged=\"visits.txt.summary\""),
        "{page}"
    );
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("\nvisit_journal_damaged_files 1\n"),
        "{metrics}"
    );
    // Logged at most once a minute, not once per visit.
    let failures = server
        .logs()
        .iter()
        .filter(|l| l.contains("visits.txt.summary"))
        .count();
    assert!(failures <= 2, "{failures} log lines about the summary");
    // Repaired by the operator: retention resumes by itself, and the counts are whole again.
    drop(server);
    let summary = file.with_file_name("visits.txt.summary");
    let text = fs::read_to_string(&summary).unwrap();
    fs::write(&summary, text.replacen("\n2x", "\n20", 1)).unwrap();
    let server = Server::start(&file, &["--rotate-size", "4096", "--retain-size", "8192"]);
    visit(&server, 1);
    let stats = json(&server, "/stats");
    assert_eq!(stats["total"]["visits"], 1001, "{stats}");
    assert_eq!(stats["damaged"].as_array().unwrap().len(), 0);
    assert!(
        server
            .get("/metrics")
            .text()
            .contains("\nvisit_journal_damaged_files 0\n")
    );
}

/// The lines of the history's files on disk: `cat visits.txt.[0-9]* visits.txt | wc -l`.
fn cat_lines(file: &Path) -> u64 {
    let dir = file.parent().unwrap();
    names(dir)
        .iter()
        .filter(|n| {
            *n == "visits.txt"
                || n.strip_prefix("visits.txt.")
                    .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|n| fs::read_to_string(dir.join(n)).unwrap().lines().count() as u64)
        .sum()
}

#[test]
fn a_directory_with_a_segments_name_stops_neither_retention_nor_reads() {
    let s = Scratch::new();
    let file = s.file();
    fs::create_dir_all(file.with_file_name("visits.txt.000001")).unwrap();
    let server = Server::start(&file, &["--rotate-size", "4096", "--retain-size", "8192"]);
    visit(&server, 1000);
    let dir = file.parent().unwrap();
    let sealed = names(dir)
        .iter()
        .filter(|n| {
            n.strip_prefix("visits.txt.")
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    assert!(sealed <= 3, "{:?}", names(dir));
    let stats = json(&server, "/stats");
    assert_eq!(stats["total"]["visits"], 1000, "{stats}");
    // Set aside, never deleted, and named.
    assert!(file.with_file_name("visits.txt.000001.damaged").is_dir());
    let damaged = stats["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{stats}");
    assert_eq!(damaged[0]["file"], "visits.txt.000001.damaged");
    let summary = fs::read_to_string(file.with_file_name("visits.txt.summary")).unwrap();
    assert!(summary.contains("\n# damaged 1\n"), "{summary}");
}

#[test]
fn a_fifo_with_a_segments_name_never_hangs_a_visit() {
    let s = Scratch::new();
    let file = s.file();
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    let fifo = file.with_file_name("visits.txt.000001");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let server = Server::start(
        &file,
        &[
            "--rotate-size",
            "4096",
            "--retain-size",
            "8192",
            "--retain-days",
            "30",
        ],
    );
    let started = Instant::now();
    visit(&server, 300);
    assert!(started.elapsed() < Duration::from_secs(30));
    let stats = json(&server, "/stats");
    assert_eq!(stats["total"]["visits"], 300, "{stats}");
}

#[test]
fn thousands_of_segments_answer_whole_under_a_low_descriptor_limit() {
    let s = Scratch::new();
    let file = s.file();
    let dir = file.parent().unwrap();
    fs::create_dir_all(dir).unwrap();
    // 300 sealed segments of one visit each, more than a soft limit of 256 descriptors.
    for n in 1..=300u32 {
        fs::write(
            dir.join(format!("visits.txt.{n:06}")),
            format!("2026-11-26T10:00:00.{:03}+03:00 - 10.0.0.1\n", n % 1000),
        )
        .unwrap();
    }
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -Sn 256 && exec "$0" "$@""#)
        .arg(crate::support::BIN)
        .args(["--listen", "127.0.0.1:0", "--rotate-size", "4096", "--file"])
        .arg(&file);
    let server = Server::spawn(cmd, &file);
    let visits = server.get("/visits");
    assert_eq!(visits.status, 200, "{}", visits.text());
    assert_eq!(visits.text().lines().count(), 300);
    assert_eq!(json(&server, "/stats")["total"]["visits"], 300);
}

#[test]
fn the_cluster_view_names_every_replicas_damaged_files() {
    let dirs = [Scratch::new(), Scratch::new()];
    // Replica 1's volume holds a directory with a segment's name.
    let odd = dirs[1].file().with_file_name("visits.txt.000001");
    fs::create_dir_all(&odd).unwrap();
    let servers = crate::support::start_replicas(&dirs, &[], &["--rotate-size", "4096"]);
    for s in &servers {
        visit(s, 3);
    }
    for s in &servers {
        let stats = json(s, "/stats?scope=cluster");
        assert_eq!(stats["total"]["visits"], 6, "{stats}");
        let damaged = stats["damaged"].as_array().unwrap();
        assert_eq!(damaged.len(), 1, "{stats}");
        assert_eq!(damaged[0]["replica"], "visit-server-1");
        assert_eq!(damaged[0]["file"], "visits.txt.000001");
        assert!(
            damaged[0]["error"].as_str().unwrap().contains("directory"),
            "{stats}"
        );
        let page = s.get("/dashboard").text();
        assert!(
            page.contains("data-damaged=\"visits.txt.000001\" data-replica=\"visit-server-1\""),
            "{page}"
        );
    }
    // The local view of the replica without damage has none.
    assert_eq!(
        json(&servers[0], "/stats")["damaged"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}
