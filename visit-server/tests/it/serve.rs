//! Normal service: N visits are N lines, `/visits` is the file, nothing else records.

use std::io::{BufReader, Write};
use std::thread;

use crate::support::{
    Scratch, Server, connect, exchange, ips, journal_lines, read_response, read_until_closed,
};

#[test]
fn n_visits_are_n_lines_and_visits_serves_them() {
    const THREADS: usize = 4;
    const EACH: usize = 15;
    let s = Scratch::new();
    let server = Server::start(&s.file(), &[]);
    // Keep-alive connections, several requests each, concurrently: the group-commit path.
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                let stream = connect(server.addr);
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                for _ in 0..EACH {
                    w.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                    let resp = read_response(&mut r).unwrap();
                    assert_eq!(resp.status, 200);
                    assert!(resp.text().starts_with("Hello! It is "));
                    assert_eq!(resp.header("Cache-Control"), Some("no-store"));
                }
            });
        }
    });
    let lines = journal_lines(&s.file());
    assert_eq!(lines.len(), THREADS * EACH);
    assert!(ips(&lines).iter().all(|ip| ip == "127.0.0.1"));
    let file = std::fs::read(s.file()).unwrap();

    let all = server.get("/visits");
    assert_eq!(all.status, 200);
    assert_eq!(
        all.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(all.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(all.body, file);

    let last = server.get("/visits?limit=5");
    assert_eq!(last.status, 200);
    assert_eq!(last.text(), lines[lines.len() - 5..].join("\n") + "\n");

    let json = server.get("/visits?format=json");
    assert_eq!(json.status, 200);
    assert_eq!(json.header("Content-Type"), Some("application/json"));
    let parsed: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    let items = parsed.as_array().unwrap();
    assert_eq!(items.len(), lines.len());
    for (item, line) in items.iter().zip(&lines) {
        let (time, ip) = line.split_once(" - ").unwrap();
        assert_eq!(item["time"], time);
        assert_eq!(item["ip"], ip);
        assert_eq!(item.as_object().unwrap().len(), 2);
    }
    let json2: serde_json::Value =
        serde_json::from_slice(&server.get("/visits?limit=2&format=json").body).unwrap();
    assert_eq!(json2.as_array().unwrap().len(), 2);

    for bad in [
        "/visits?limit=x",
        "/visits?limit=-1",
        "/visits?format=xml",
        "/visits?limit=1&limit=2",
        "/visits?bogus=1",
        "/visits?limit",
    ] {
        let r = server.get(bad);
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.text().starts_with("bad query: "), "{bad}: {}", r.text());
    }

    let metrics = server.get("/metrics").text();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .unwrap()
    };
    let n = (THREADS * EACH) as f64;
    assert_eq!(value("visit_server_visits_recorded_total"), n);
    assert_eq!(value("visit_journal_records_total"), n);
    assert!(value("visit_journal_fsyncs_total") >= 1.0);
    assert!(value("visit_journal_fsyncs_total") <= n);
    assert_eq!(value("visit_server_append_duration_seconds_count"), n);
    assert!(value("visit_server_requests_total{status=\"200\"}") >= n);
    assert!(value("visit_server_requests_total{status=\"400\"}") >= 6.0);
    assert!(value("visit_server_disk_available_bytes") > 0.0);
    assert!(value("visit_server_disk_size_bytes") >= value("visit_server_disk_available_bytes"));
    // Every visit went through a committed batch: the histogram of their sizes counts the
    // batches, and its sum is the visits.
    assert_eq!(value("visit_journal_batch_records_sum"), n);
    assert_eq!(
        value("visit_journal_batch_records_count"),
        value("visit_journal_batches_total")
    );
    assert_eq!(
        value("visit_journal_batch_records_bucket{le=\"+Inf\"}"),
        value("visit_journal_batch_records_count")
    );

    // Every request is logged as one JSON object with the contract's fields (after its
    // answer: the last lines may come a little later).
    let requests_in = |logs: &[String]| -> Vec<serde_json::Value> {
        logs.iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["event"] == "request")
            .collect()
    };
    let logs = server.await_logs("request lines", |l| requests_in(l).len() >= THREADS * EACH);
    let requests = requests_in(&logs);
    let visit = requests.iter().find(|v| v["path"] == "/").unwrap();
    assert_eq!(visit["method"], "GET");
    assert_eq!(visit["status"], 200);
    assert!(visit["duration_us"].is_u64());
    assert!(visit["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(visit["client"], "127.0.0.1");
}

#[test]
fn nothing_but_get_root_records_a_visit() {
    let s = Scratch::new();
    let server = Server::start(&s.file(), &[]);
    let cases: &[(&str, u16)] = &[
        ("GET /healthz HTTP/1.1", 200),
        ("GET /livez HTTP/1.1", 200),
        ("GET /readyz HTTP/1.1", 200),
        ("GET /metrics HTTP/1.1", 200),
        ("GET /visits HTTP/1.1", 200),
        ("GET /favicon.ico HTTP/1.1", 404),
        ("GET /robots.txt HTTP/1.1", 404),
        ("GET /wp-login.php HTTP/1.1", 404),
        ("GET /index.html HTTP/1.1", 404),
        ("GET /visits/ HTTP/1.1", 404),
        ("POST / HTTP/1.1", 405),
        ("PUT / HTTP/1.1", 405),
        ("DELETE /visits HTTP/1.1", 405),
        ("OPTIONS /readyz HTTP/1.1", 405),
        ("POST /metrics HTTP/1.1", 405),
    ];
    for (line, status) in cases {
        let r = exchange(
            connect(server.addr),
            format!("{line}\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, *status, "{line}");
        if *status == 405 {
            assert_eq!(r.header("Allow"), Some("GET, HEAD"), "{line}");
        }
    }
    // HEAD / answers like GET / without a body, and records nothing.
    let mut stream = connect(server.addr);
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (raw, closed) = read_until_closed(&mut stream, crate::support::IO_TIMEOUT);
    assert!(closed);
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Content-Length: "), "{head}");
    assert_eq!(body, "");

    assert!(journal_lines(&s.file()).is_empty());
    // The journal was not touched beyond its creation.
    assert_eq!(std::fs::metadata(s.file()).unwrap().len(), 0);
}

/// On `[::]` (what a dual-stack pod listens on), IPv4 clients arrive as `::ffff:a.b.c.d`;
/// they are recorded as plain IPv4, and IPv6 clients as IPv6.
#[test]
fn a_dual_stack_listener_records_ipv4_peers_as_ipv4() {
    let s = Scratch::new();
    let mut cmd = std::process::Command::new(crate::support::BIN);
    cmd.args(["--listen", "[::]:0", "--file"]).arg(s.file());
    let server = Server::spawn(cmd, &s.file());
    let port = server.addr.port();
    for addr in ["127.0.0.1", "::1"] {
        let target = std::net::SocketAddr::new(addr.parse().unwrap(), port);
        assert_eq!(crate::support::get(target, "/").status, 200, "{addr}");
    }
    assert_eq!(ips(&journal_lines(&s.file())), ["127.0.0.1", "::1"]);
}

#[test]
fn the_request_log_names_method_path_status_duration_and_peer() {
    let s = Scratch::new();
    let server = Server::start(&s.file(), &[]);
    assert_eq!(server.get("/healthz").status, 200);
    // The log is read from the child's stdout by another thread: wait for the line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let line = loop {
        let found = server.logs().into_iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            (v["event"] == "request" && v["path"] == "/healthz").then_some(v)
        });
        if let Some(v) = found {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", server.logs());
        thread::sleep(std::time::Duration::from_millis(20));
    };
    // The contract's names, as written: `duration` is in seconds, beside `duration_us`.
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 200);
    assert!(line["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let seconds = line["duration"].as_f64().expect("a number of seconds");
    let micros = line["duration_us"].as_u64().unwrap();
    assert!((seconds * 1e6 - micros as f64).abs() < 1.5, "{line}");
}

#[test]
fn metrics_count_a_request_before_its_client_has_the_answer() {
    let s = Scratch::new();
    let server = Server::start(&s.file(), &[]);
    let mut conn = BufReader::new(connect(server.addr));
    let count = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("visit_server_requests_total{status=\"404\"} "))
            .map_or(0, |v| v.parse().unwrap())
    };
    for i in 1..=300 {
        conn.get_mut()
            .write_all(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut conn).unwrap().status, 404);
        // Asked only once the 404 is in hand, /metrics must already count it.
        conn.get_mut()
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let metrics = read_response(&mut conn).unwrap();
        assert_eq!(count(&String::from_utf8(metrics.body).unwrap()), i);
    }
}
