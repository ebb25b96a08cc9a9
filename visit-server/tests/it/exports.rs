//! `?format=csv` on real servers, read back with a real CSV parser (Python's `csv` module,
//! strict): the header row, every record with its time exactly as written, the cluster's
//! replica column, `/stats` rows equal to its JSON, and a large journal streamed.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{Response, Scratch, Server, source, start_replicas, visit_from};

/// Parses `body` with Python's `csv.reader` (strict: a malformed field is an error).
fn parse_csv(body: &[u8]) -> Vec<Vec<String>> {
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import csv, io, json, sys\n\
             text = io.TextIOWrapper(sys.stdin.buffer, encoding='utf-8', newline='')\n\
             json.dump(list(csv.reader(text, strict=True)), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (CI has Python 3.11)");
    let mut stdin = python.stdin.take().unwrap();
    let body = body.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let out = python.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "csv.reader refused it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn csv(r: &Response) -> Vec<Vec<String>> {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("Content-Type"), Some("text/csv; charset=utf-8"));
    // RFC 4180: every row ends with CRLF.
    assert!(r.body.ends_with(b"\r\n"));
    assert_eq!(
        r.body.windows(2).filter(|w| w == b"\r\n").count(),
        r.body.iter().filter(|&&b| b == b'\n').count()
    );
    parse_csv(&r.body)
}

fn rows(v: &[&[&str]]) -> Vec<Vec<String>> {
    v.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

#[test]
fn visits_csv_keeps_each_time_as_written_and_leaves_out_corrupt_lines() {
    let scratch = Scratch::new();
    let file = scratch.file();
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        "2022-11-29T10:44:36+03:00 - 172.17.0.1\n\
         not a visit, \"quoted\"\n\
         2022-11-29T07:44:36.5Z - 2001:db8::1\n\
         2026-11-26T10:44:36.123+03:00 - 10.0.0.7\n",
    )
    .unwrap();
    let server = Server::start(&file, &["--name", "r0"]);
    let got = csv(&server.get("/visits?format=csv"));
    assert_eq!(
        got,
        rows(&[
            &["time", "ip"],
            &["2022-11-29T10:44:36+03:00", "172.17.0.1"],
            &["2022-11-29T07:44:36.5Z", "2001:db8::1"],
            &["2026-11-26T10:44:36.123+03:00", "10.0.0.7"],
        ])
    );
    let last = csv(&server.get("/visits?format=csv&limit=1"));
    assert_eq!(
        last,
        rows(&[
            &["time", "ip"],
            &["2026-11-26T10:44:36.123+03:00", "10.0.0.7"]
        ])
    );
    assert_eq!(
        csv(&server.get("/visits?format=csv&limit=0")),
        rows(&[&["time", "ip"]])
    );
    let r = server.get("/visits?format=csv");
    assert_eq!(r.header("X-Visit-Replica"), Some("r0"));
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(server.get("/visits?format=tsv").status, 400);
}

#[test]
fn cluster_csv_names_each_rows_replica_and_stats_csv_equals_its_json() {
    let dirs: Vec<Scratch> = (0..2).map(|_| Scratch::new()).collect();
    let servers = start_replicas(&dirs, &[], &[]);
    for i in 0..5 {
        assert!(visit_from(source(600 + i), servers[i as usize % 2].addr).unwrap());
    }
    let got = csv(&servers[1].get("/visits?scope=cluster&format=csv"));
    assert_eq!(got[0], ["replica", "time", "ip"]);
    assert_eq!(got.len(), 1 + 5);
    let mut from: Vec<(String, String)> = got[1..]
        .iter()
        .map(|r| {
            assert_eq!(r.len(), 3);
            (r[0].clone(), r[2].clone())
        })
        .collect();
    from.sort();
    let mut want: Vec<(String, String)> = (0..5)
        .map(|i| {
            (
                format!("visit-server-{}", i % 2),
                source(600 + i).to_string(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(from, want);
    // Each time is a record's, as its own replica's text form has it.
    let text = servers[0].get("/visits").text();
    for r in got[1..].iter().filter(|r| r[0] == "visit-server-0") {
        assert!(text.contains(&format!("{} - {}\n", r[1], r[2])), "{r:?}");
    }

    for scope in ["local", "cluster"] {
        let json: Value =
            serde_json::from_slice(&servers[0].get(&format!("/stats?scope={scope}")).body).unwrap();
        let got = csv(&servers[0].get(&format!("/stats?scope={scope}&format=csv")));
        assert_eq!(got[0], ["day", "replica", "count"]);
        let mut want: Vec<Vec<String>> = Vec::new();
        for r in json["replicas"].as_array().unwrap() {
            for d in r["days"].as_array().unwrap() {
                want.push(vec![
                    d["day"].as_str().unwrap().to_string(),
                    r["name"].as_str().unwrap().to_string(),
                    d["visits"].to_string(),
                ]);
            }
        }
        want.sort();
        assert_eq!(got[1..], want[..], "{scope}");
        let total: u64 = got[1..].iter().map(|r| r[2].parse::<u64>().unwrap()).sum();
        assert_eq!(total, if scope == "local" { 3 } else { 5 });
    }
    assert_eq!(servers[0].get("/stats?format=xml").status, 400);
}

/// The server's peak resident memory so far, in KiB.
fn peak_rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_large_journal_is_streamed_as_csv_in_constant_memory() {
    let scratch = Scratch::new();
    let file = scratch.file();
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let line = "2026-11-26T10:44:36.123+03:00 - 10.0.0.7\n";
    // 21 MB of journal, 20 MB of CSV: far more than the server's whole footprint.
    let n = 500_000;
    std::fs::write(&file, line.repeat(n)).unwrap();
    let server = Server::start(&file, &[]);
    let before = peak_rss_kib(&server);
    let r = server.get("/visits?format=csv");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(r.header("Content-Length"), None);
    let row = b"2026-11-26T10:44:36.123+03:00,10.0.0.7\r\n";
    assert_eq!(r.body.len(), b"time,ip\r\n".len() + n * row.len());
    assert!(r.body.ends_with(row));
    let grown = peak_rss_kib(&server).saturating_sub(before);
    assert!(
        grown < 4 * 1024,
        "the peak RSS grew by {grown} KiB while streaming 20 MB"
    );
}
