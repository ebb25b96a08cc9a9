//! Hostile clients on raw sockets: the server answers 4xx or closes, stays up, and the file
//! holds only valid lines with real peer addresses.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{IO_TIMEOUT, Scratch, Server, connect, ips, journal_lines, read_until_closed};

/// Sends `raw`, half-closes nothing, and reads until the server closes (or 10 s pass).
/// Returns the status of the first response, if any, and all response bytes.
fn attack(server: &Server, raw: &[u8]) -> (Option<u16>, String, bool) {
    let mut stream = connect(server.addr);
    // The server may answer and close before reading everything (a 100 KB header): a write
    // error then is part of the test, not a failure.
    let _ = stream.write_all(raw);
    let (got, closed) = read_until_closed(&mut stream, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|s| s.parse().ok());
    (status, text, closed)
}

fn assert_refused(server: &Server, name: &str, raw: &[u8]) -> String {
    let (status, text, closed) = attack(server, raw);
    match status {
        Some(s) => assert!((400..500).contains(&s) || s == 505, "{name}: {text}"),
        None => assert!(closed, "{name}: no answer and not closed"),
    }
    text
}

#[test]
fn hostile_requests_are_refused_and_never_recorded() {
    let s = Scratch::new();
    // A trusted proxy that is not us: our forwarding headers must be ignored.
    let server = Server::start(&s.file(), &["--trusted-proxy", "10.9.9.9"]);

    // A header value carrying a bare LF and a fake record: refused, connection closed.
    let text = assert_refused(
        &server,
        "LF in header",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 1.2.3.4\n2026-11-26T10:44:36.123+03:00 - 6.6.6.6\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    assert_refused(
        &server,
        "CR in header",
        b"GET / HTTP/1.1\r\nHost: t\r\nUser-Agent: a\rb\r\n\r\n",
    );
    // A fake record in an ordinary header value is just a header: the visit is the peer's.
    let (status, _, _) = attack(
        &server,
        b"GET / HTTP/1.1\r\nHost: t\r\nUser-Agent: 2026-11-26T10:44:36.123+03:00 - 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 7.7.7.7\r\nForwarded: for=8.8.8.8\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, Some(200));

    // 100 KB of header.
    let mut big = b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 100 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let text = assert_refused(&server, "100 KB header", &big);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");

    // Binary garbage, with and without a line end.
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    assert_refused(&server, "garbage", &garbage);
    let mut garbage_line = garbage.clone();
    garbage_line.extend_from_slice(b"\r\n\r\n");
    assert_refused(&server, "garbage line", &garbage_line);
    assert_refused(&server, "not http", b"HELLO\r\n\r\n");

    // Bodies and framing games on GET.
    let text = assert_refused(
        &server,
        "chunked GET",
        b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    assert_refused(
        &server,
        "conflicting Content-Length",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_refused(
        &server,
        "GET with a body",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_refused(
        &server,
        "HEAD with a body",
        b"HEAD / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    );

    // Path tricks.
    for path in [
        "/../",
        "/../../etc/passwd",
        "/visits/../",
        "/./",
        "//",
        "/%2e%2e/",
        "/%2F",
        "/visits%00",
        "/\u{7f}",
    ] {
        let (status, text, _) = attack(
            &server,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(matches!(status, Some(400 | 404)), "{path}: {text}");
    }

    // Still up, and the file holds exactly the one honest visit, with the peer's address.
    assert_eq!(server.get("/healthz").status, 200);
    let lines = journal_lines(&s.file());
    assert_eq!(ips(&lines), ["127.0.0.1"], "{lines:?}");
}

/// A request hidden in a refused request's body must never be served, even from a trusted
/// proxy: that is how request smuggling forges `X-Forwarded-For`.
#[test]
fn a_request_smuggled_in_a_body_is_never_served() {
    let s = Scratch::new();
    // The test plays the trusted proxy.
    let server = Server::start(&s.file(), &["--trusted-proxy", "127.0.0.1"]);
    let smuggled = "GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
    let attempts = [
        // tiny_http obeys Transfer-Encoding; a proxy obeying Content-Length forwards both.
        format!(
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
            5 + smuggled.len()
        ),
        // Two lengths: tiny_http takes the first (no body), a proxy might take the last.
        format!(
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        ),
        // A small body tiny_http reads eagerly, then parses the next request at once: the
        // worker must mark the connection before another worker takes that request.
        format!("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello{smuggled}"),
        // A body on a method that is merely not allowed.
        format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello{smuggled}"),
    ];
    for raw in &attempts {
        let (status, text, _) = attack(&server, raw.as_bytes());
        assert!(matches!(status, Some(400 | 405)), "{raw:?}: {text}");
        assert!(text.contains("Connection: close"), "{text}");
        assert!(
            !text.contains("200 OK"),
            "{raw:?} served the smuggled request: {text}"
        );
    }
    // The same proxy's honest request on a new connection is believed.
    let r = crate::support::exchange(
        connect(server.addr),
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6, 198.51.100.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let lines = journal_lines(&s.file());
    assert_eq!(ips(&lines), ["198.51.100.1"], "{lines:?}");
}

/// A client trickling its request pins only its own connection thread: the workers go on
/// serving, and once it pauses longer than the read timeout (5 s) it is disconnected.
/// An idle connection is closed the same way, and `accept` survives the quiet period (the
/// listener's read timeout would otherwise make it fail; see `server`'s docs).
#[test]
fn slow_and_idle_clients_are_cut_off_and_others_are_served() {
    let s = Scratch::new();
    let server = Server::start(&s.file(), &[]);
    let mut idle = connect(server.addr);
    let mut slow = connect(server.addr);
    for b in b"GET / HTTP" {
        slow.write_all(&[*b]).unwrap();
        // Others are served meanwhile.
        assert_eq!(server.get("/healthz").status, 200);
        thread::sleep(Duration::from_secs(1));
    }
    // 10 s have passed: the idle connection was closed, silently, after 5 s.
    let (got, closed) = read_until_closed(&mut idle, Duration::from_secs(1));
    assert!(
        closed && got.is_empty(),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // The slow one still lives (each byte came within the timeout); once it stalls, it is
    // closed without a response and without a visit.
    let stalled = Instant::now();
    let (got, closed) = read_until_closed(&mut slow, IO_TIMEOUT);
    assert!(closed, "slow client still connected");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(
        stalled.elapsed() >= Duration::from_secs(2),
        "{:?}",
        stalled.elapsed()
    );

    // No new connection for longer than the read timeout: accept must still work.
    thread::sleep(Duration::from_secs(6));
    assert_eq!(server.get("/healthz").status, 200);
    assert!(journal_lines(&s.file()).is_empty());
}

/// FIXME(tiny_http 0.12): a request line with `HTTP/2.0` or `HTTP/3.0` deadlocks its
/// connection thread. tiny_http answers 505 itself (client.rs, `ClientConnection::next`) by
/// writing through the connection's *next* sequential writer while the request that holds the
/// current one is still alive, so the write waits forever: no response, and one thread and two
/// file descriptors leak per such connection, even after the client hangs up. The request
/// never reaches our workers, so the server cannot answer or close it. This test pins today's
/// behaviour: the rest of the server is unaffected and nothing is recorded. When tiny_http is
/// fixed (or patched), it should expect a 505 and a close instead.
#[test]
fn fixme_an_http2_request_line_hangs_only_its_own_connection() {
    let s = Scratch::new();
    let server = Server::start(&s.file(), &[]);
    let mut stream = connect(server.addr);
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap();
    let (got, closed) = read_until_closed(&mut stream, Duration::from_secs(2));
    assert!(got.is_empty() && !closed, "tiny_http now answers: {got:?}");
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/").status, 200);
    assert_eq!(ips(&journal_lines(&s.file())), ["127.0.0.1"]);
}

/// tiny_http's thread pool queues most of a burst of new connections behind busy threads
/// (see `server`'s docs); the ticker must get every one of them served within moments, not
/// one a second.
#[test]
fn a_burst_of_connections_is_served_promptly() {
    const BURST: usize = 64;
    let s = Scratch::new();
    let server = Server::start(&s.file(), &[]);
    // Keep-alive connections opened all at once, as a load balancer filling its pool does.
    let mut conns: Vec<_> = (0..BURST).map(|_| connect(server.addr)).collect();
    let started = Instant::now();
    for c in &mut conns {
        c.write_all(b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    for (i, c) in conns.iter().enumerate() {
        let r = crate::support::read_response(&mut std::io::BufReader::new(c)).unwrap();
        assert_eq!(r.status, 200, "connection {i}");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{BURST} connections took {took:?}"
    );
}
