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
