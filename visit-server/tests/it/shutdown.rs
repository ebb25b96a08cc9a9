//! SIGTERM under load: readiness turns 503, exit 0 within 5 s, no torn line, every 200 kept.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::thread;
use std::time::{Duration, Instant};

use crate::load::Load;
use crate::support::{Scratch, Server, ips, journal_lines};

#[test]
fn sigterm_under_load_drains_and_exits_0_quickly() {
    for signal in ["TERM", "INT"] {
        let s = Scratch::new();
        let mut server = Server::start(&s.file(), &[]);
        let next = Arc::new(AtomicU32::new(0));
        let load = Load::start(server.addr, 8, &next, 100_000, Duration::from_secs(30));
        thread::sleep(Duration::from_millis(500));

        let signalled = Instant::now();
        server.signal(signal);
        // During the grace period the server still answers, but is not ready.
        let mut saw_unready = false;
        while signalled.elapsed() < Duration::from_millis(1500) && !saw_unready {
            if let Ok(stream) = std::net::TcpStream::connect(server.addr) {
                let r = crate::support::exchange(
                    stream,
                    b"GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n",
                );
                saw_unready = r.is_ok_and(|r| r.status == 503);
            }
        }
        let status = server
            .wait_exit(Duration::from_secs(10))
            .expect("still running 10 s after the signal");
        let took = signalled.elapsed();
        let (acked, _) = load.stop();

        assert!(saw_unready, "SIG{signal}: /readyz never answered 503");
        assert!(status.success(), "SIG{signal}: exit status {status}");
        assert!(took < Duration::from_secs(5), "SIG{signal}: took {took:?}");
        assert!(!acked.is_empty());
        let lines = journal_lines(&s.file());
        let recorded: BTreeSet<String> = ips(&lines).into_iter().collect();
        let lost: Vec<&String> = acked.difference(&recorded).collect();
        assert!(
            lost.is_empty(),
            "SIG{signal}: acknowledged but lost: {lost:?}"
        );
        let logs = server.logs();
        assert!(logs.iter().any(|l| l.contains("\"event\":\"draining\"")));
        assert!(logs.iter().any(|l| l.contains("\"event\":\"stopped\"")));
    }
}

/// What one client saw while the server shut down under it.
#[derive(Debug, Default)]
struct Seen {
    answered: u32,
    /// Statuses other than 200 (tiny_http answers 500 for a request it drops).
    other: Vec<u16>,
    /// Requests sent on an open connection that was closed without an answer.
    unanswered: Vec<String>,
}

/// Sends `GET /` until the server refuses connections; keep-alive clients reuse their
/// connection until the server answers `Connection: close`, as HTTP clients do.
fn visit_until_refused(addr: std::net::SocketAddr, keep_alive: bool, until: Instant) -> Seen {
    use std::io::{BufReader, Write};
    let mut seen = Seen::default();
    let mut conn: Option<BufReader<std::net::TcpStream>> = None;
    while Instant::now() < until {
        let fresh = conn.is_none();
        let mut c = match conn.take() {
            Some(c) => c,
            None => match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    BufReader::new(s)
                }
                // Refused: the server no longer takes connections.
                Err(_) => return seen,
            },
        };
        let ask: &[u8] = if keep_alive {
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        } else {
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        };
        let sent = c.get_mut().write_all(ask);
        let answer = sent.and_then(|()| crate::support::read_response(&mut c));
        match answer {
            // A connection still in the listen backlog when the listener closes is reset
            // before the server ever saw it: that is a refusal, not a dropped request.
            Err(e) if fresh && e.kind() == std::io::ErrorKind::ConnectionReset => return seen,
            Ok(r) => {
                if r.status == 200 {
                    seen.answered += 1;
                } else {
                    seen.other.push(r.status);
                }
                let closing = r
                    .header("Connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                if keep_alive && !closing {
                    conn = Some(c);
                }
            }
            Err(e) => seen.unanswered.push(e.to_string()),
        }
    }
    seen
}

#[test]
fn every_request_in_flight_at_sigterm_is_answered() {
    let s = Scratch::new();
    let mut server = Server::start(&s.file(), &[]);
    let until = Instant::now() + Duration::from_secs(20);
    let addr = server.addr;
    let clients: Vec<_> = (0..8)
        .map(|i| thread::spawn(move || visit_until_refused(addr, i % 2 == 0, until)))
        .collect();
    thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("still running 10 s after the signal");
    assert!(status.success(), "exit status {status}");
    assert!(signalled.elapsed() < Duration::from_secs(5));
    let mut answered = 0;
    for c in clients {
        let seen = c.join().unwrap();
        // Refused connections are fine; a request the server took must get its answer.
        assert!(
            seen.other.is_empty() && seen.unanswered.is_empty(),
            "{seen:?}"
        );
        answered += seen.answered;
    }
    assert_eq!(journal_lines(&s.file()).len(), answered as usize);
}
