//! `tiny_counter`: raw HTTP over loopback; only `GET /` is counted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use visit_journal::Reader;

use crate::support::{arg, example, run, wait};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A running counter, killed if a test fails before it stops by itself.
struct Counter(Child);

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the counter for `requests` requests on a free port; returns it and its address.
fn start(path: &Path, requests: &str) -> (Counter, SocketAddr) {
    let mut child = Command::new(example("tiny_counter"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--file",
            arg(path),
            "--requests",
            requests,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Read its first line on a thread, so that a counter that never prints fails in time.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(TIMEOUT)
        .expect("the counter says where it listens");
    let addr = line
        .strip_prefix("serving http://")
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .0;
    (Counter(child), addr.parse().unwrap())
}

/// Sends one raw HTTP/1.1 request and returns the whole response.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn counts_get_slash_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/visits.txt");
    let (mut counter, addr) = start(&path, "3");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    let first = get(addr, "/");
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    assert!(
        first.ends_with("Hello! You are visit number 1.\n"),
        "{first}"
    );
    assert!(get(addr, "/").ends_with("Hello! You are visit number 2.\n"));
    let probe = get(addr, "/healthz");
    assert!(probe.starts_with("HTTP/1.1 404 "), "{probe}");

    // It served its three requests and stopped by itself.
    assert!(wait(&mut counter.0).success());
    let visits: Vec<_> = Reader::open(&path).unwrap().map(Result::unwrap).collect();
    assert_eq!(visits.len(), 2, "only GET / is recorded");
    assert!(visits.iter().all(|v| v.ip.is_loopback()), "{visits:?}");

    // Counting goes on from what the file holds.
    let (mut counter, addr) = start(&path, "1");
    assert!(get(addr, "/").ends_with("Hello! You are visit number 3.\n"));
    assert!(wait(&mut counter.0).success());
}

#[test]
fn bad_flags_print_the_usage() {
    let out = run("tiny_counter", &["--port", "80"]);
    assert_ne!(out.code(), 0);
    assert!(out.stderr.contains("usage: tiny_counter"), "{out:#?}");
}
