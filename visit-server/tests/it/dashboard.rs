//! `GET /dashboard` and `GET /openapi.json` on real servers: the page's figures against
//! `/stats`, a stopped or hostile peer named, nothing recorded; the API document served as
//! it is and matching the routes.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use serde_json::Value;

use crate::support::{
    IO_TIMEOUT, Response, Scratch, Server, connect, exchange, journal_lines, read_until_closed,
    source, start_replicas, visit_from,
};

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// The values of `attrs` of every `<tag ...>` element that has the first of them, in order.
fn elements(html: &str, tag: &str, attrs: &[&str]) -> Vec<Vec<String>> {
    let value = |tag: &str, a: &str| -> Option<String> {
        let key = format!(" {a}=\"");
        let start = tag.find(&key)? + key.len();
        let len = tag[start..].find('"')?;
        Some(tag[start..start + len].to_string())
    };
    html.split(&format!("<{tag} "))
        .skip(1)
        .map(|rest| &rest[..rest.find('>').unwrap()])
        .filter(|t| value(&format!(" {t}"), attrs[0]).is_some())
        .map(|t| {
            let t = format!(" {t}");
            attrs
                .iter()
                .map(|a| value(&t, a).unwrap_or_else(|| panic!("no {a} in <{t}>")))
                .collect()
        })
        .collect()
}

/// The bars as (day, replica, count).
fn bars(html: &str) -> BTreeSet<(String, String, u64)> {
    elements(html, "rect", &["data-day", "data-replica", "data-count"])
        .into_iter()
        .map(|a| (a[0].clone(), a[1].clone(), a[2].parse().unwrap()))
        .collect()
}

/// The (day, replica, count) of `/stats` for its 30 most recent days with visits.
fn stats_bars(stats: &Value) -> BTreeSet<(String, String, u64)> {
    let days: Vec<&str> = stats["total"]["days"]
        .as_array()
        .unwrap()
        .iter()
        .take(30)
        .map(|d| d["day"].as_str().unwrap())
        .collect();
    let mut out = BTreeSet::new();
    for r in stats["replicas"].as_array().unwrap() {
        for d in r["days"].as_array().unwrap() {
            let day = d["day"].as_str().unwrap();
            if days.contains(&day) {
                out.insert((
                    day.to_string(),
                    r["name"].as_str().unwrap().to_string(),
                    d["visits"].as_u64().unwrap(),
                ));
            }
        }
    }
    out
}

/// A `HEAD` exchange, read to the close (the response has a length but no body).
fn head(addr: std::net::SocketAddr, path: &str) -> Response {
    let mut stream = connect(addr);
    stream
        .write_all(
            format!("HEAD {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let (raw, closed) = read_until_closed(&mut stream, IO_TIMEOUT);
    assert!(closed);
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_string(), v.to_string())
        })
        .collect();
    Response {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn json(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

fn assert_page_headers(r: &Response) {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("Content-Security-Policy"), Some(CSP));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
}

/// A few weeks of history, written as a foreign writer would (before the server starts).
fn seed(file: &std::path::Path, days: u32, per_day: impl Fn(u32) -> u32, ip: &str) {
    let mut text = String::new();
    for d in 0..days {
        let day =
            chrono::NaiveDate::from_ymd_opt(2026, 9, 1).unwrap() + chrono::Days::new(d.into());
        for k in 0..per_day(d) {
            text.push_str(&format!("{day}T10:{:02}:00.000+02:00 - {ip}\n", k % 60));
        }
    }
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, text).unwrap();
}

#[test]
fn dashboard_charts_every_replica_as_stats_counts_them_and_names_the_stopped_one() {
    let dirs: Vec<Scratch> = (0..3).map(|_| Scratch::new()).collect();
    seed(&dirs[0].file(), 40, |d| d % 7 + 1, "10.0.0.1");
    seed(&dirs[1].file(), 20, |d| d % 3 + 1, "10.0.0.2");
    let mut servers = start_replicas(&dirs, &[], &[]);
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    for i in 0..12 {
        assert!(visit_from(source(300 + i), servers[i as usize % 3].addr).unwrap());
    }
    servers[2].kill9();
    let lines_before: Vec<usize> = dirs
        .iter()
        .map(|d| journal_lines(&d.file()).len())
        .collect();

    let page = servers[0].get("/dashboard");
    assert_page_headers(&page);
    assert_eq!(page.header("X-Visit-Replica"), Some("visit-server-0"));
    assert_eq!(page.header("X-Visit-Partial"), Some("true"));
    let html = page.text();
    let stats = json(&servers[0].get("/stats?scope=cluster"));
    let bars = bars(&html);
    assert_eq!(bars, stats_bars(&stats));
    assert_eq!(
        bars.iter().map(|b| &b.0).collect::<BTreeSet<_>>().len(),
        30,
        "30 days charted"
    );
    assert_eq!(
        elements(&html, "li", &["data-missing"]),
        [[addrs[2].clone()]],
        "{html}"
    );
    assert!(html.contains(&format!(
        "<strong>{}</strong> did not answer: refused",
        addrs[2]
    )));
    let totals = elements(&html, "tr", &["data-total-replica", "data-total"]);
    let want: Vec<Vec<String>> = stats["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            vec![
                r["name"].as_str().unwrap().to_string(),
                r["visits"].to_string(),
            ]
        })
        .collect();
    assert_eq!(totals, want);
    // The top addresses are those of /stats' total.
    let top = elements(&html, "tr", &["data-ip", "data-count"]);
    let want: Vec<Vec<String>> = stats["total"]["ips"]
        .as_array()
        .unwrap()
        .iter()
        .take(10)
        .map(|i| {
            vec![
                i["ip"].as_str().unwrap().to_string(),
                i["visits"].to_string(),
            ]
        })
        .collect();
    assert_eq!(top, want);
    assert_eq!(top[0][0], "10.0.0.1");
    // Neither the page nor its fan-out recorded anything.
    let lines_after: Vec<usize> = dirs
        .iter()
        .map(|d| journal_lines(&d.file()).len())
        .collect();
    assert_eq!(lines_before, lines_after);
    // HEAD: the same headers, no body.
    let head = head(servers[0].addr, "/dashboard");
    assert_page_headers(&head);
    assert!(head.body.is_empty());
}

#[test]
fn a_lone_replica_charts_its_own_journal_and_names_no_one() {
    let scratch = Scratch::new();
    let server = Server::start(&scratch.file(), &["--name", "solo"]);
    let empty = server.get("/dashboard");
    assert_page_headers(&empty);
    assert!(empty.text().contains("No visits recorded yet."));
    assert!(bars(&empty.text()).is_empty());
    for i in 0..3 {
        assert!(visit_from(source(400 + i), server.addr).unwrap());
    }
    let page = server.get("/dashboard");
    assert_page_headers(&page);
    assert_eq!(page.header("X-Visit-Partial"), None);
    let html = page.text();
    let stats = json(&server.get("/stats"));
    assert_eq!(bars(&html), stats_bars(&stats));
    assert_eq!(bars(&html).len(), 1);
    assert!(!html.contains("data-missing"));
    assert!(html.contains("on this replica"));
    assert_eq!(journal_lines(&scratch.file()).len(), 3);
    // The greeting links to it.
    assert!(server.get("/").text().contains("/dashboard"));
    for method in ["POST", "PUT", "DELETE"] {
        let r = exchange(
            connect(server.addr),
            format!("{method} /dashboard HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (r.status, r.header("Allow")),
            (405, Some("GET, HEAD")),
            "{method}"
        );
    }
}

/// A peer that answers every request with `head` (status line and headers) and `body`.
fn fake_peer(head: &'static str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr.to_string()
}

#[test]
fn a_hostile_peer_cannot_inject_markup() {
    // Its name is refused (replica names are checked), so it is listed as missing; the
    // reason it gives is shown escaped.
    let peer = fake_peer(
        "HTTP/1.1 200 OK\r\nX-Visit-Replica: <img src=x onerror=alert(1)>",
        "{\"replicas\":[]}",
    );
    let scratch = Scratch::new();
    let server = Server::start(&scratch.file(), &["--name", "r0", "--peers", &peer]);
    assert!(visit_from(source(500), server.addr).unwrap());
    let page = server.get("/dashboard");
    assert_page_headers(&page);
    let html = page.text();
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    assert_eq!(elements(&html, "li", &["data-missing"]), [[peer.clone()]]);
    assert!(html.contains("bad_response"), "{html}");
    // A peer that names itself well but answers garbage is missing too; the page still has
    // this replica's bar.
    assert_eq!(bars(&html).len(), 1);
}

#[test]
fn openapi_json_is_the_document_and_lists_every_route() {
    let doc_text = include_str!("../../openapi.json");
    let doc: Value = serde_json::from_str(doc_text).unwrap();
    let scratch = Scratch::new();
    let server = Server::start(&scratch.file(), &["--name", "r0"]);
    let r = server.get("/openapi.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.text(), doc_text);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));

    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let routed: BTreeSet<&str> = [
        "/",
        "/visits",
        "/stats",
        "/dashboard",
        "/openapi.json",
        "/healthz",
        "/livez",
        "/readyz",
        "/metrics",
    ]
    .into();
    assert_eq!(paths, routed);
    for path in &paths {
        let item = &doc["paths"][path];
        for method in ["get", "head"] {
            let documented: BTreeSet<u16> = item[method]["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} undocumented"))
                .keys()
                .map(|s| s.parse().unwrap())
                .collect();
            let got = if method == "head" {
                head(server.addr, path).status
            } else {
                server.get(path).status
            };
            assert!(
                documented.contains(&got),
                "{method} {path}: {got} not in {documented:?}"
            );
        }
    }
    // Not documented, not served.
    for path in ["/favicon.ico", "/openapi.yaml", "/dashboard/"] {
        assert_eq!(server.get(path).status, 404, "{path}");
    }
    // Opening the document recorded nothing (GET / above recorded one visit).
    assert_eq!(journal_lines(&scratch.file()).len(), 1);
}
