//! `--anonymize` / `VISIT_ANONYMIZE=1` on the real binary: addresses reach the journal as
//! their /24 or /48, from the TCP peer and from a trusted proxy's `X-Forwarded-For` alike;
//! off by default.

use std::process::Command;

use crate::support::{
    BIN, Scratch, Server, connect, exchange, ips, journal_lines, source, visit_from,
};

fn visit_forwarded(server: &Server, xff: &str) {
    let raw =
        format!("GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n");
    let r = exchange(connect(server.addr), raw.as_bytes()).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn anonymize_reduces_peers_and_forwarded_addresses_before_they_are_written() {
    let scratch = Scratch::new();
    let server = Server::start(
        &scratch.file(),
        &["--anonymize", "--trusted-proxy", "127.0.0.1"],
    );
    assert!(visit_from(source(7), server.addr).unwrap()); // 127.1.0.8
    visit_forwarded(&server, "203.0.113.77");
    visit_forwarded(&server, "2001:db8:1:2::5");
    visit_forwarded(&server, "6.6.6.6, [2001:db8:aa:bb::1]:443");
    let lines = journal_lines(&scratch.file());
    assert_eq!(
        ips(&lines),
        ["127.1.0.0", "203.0.113.0", "2001:db8:1::", "2001:db8:aa::"]
    );
    // The line format is unchanged: each line is still `<time> - <ip>`.
    for line in &lines {
        assert!(line.parse::<visit_journal::Visit>().is_ok(), "{line}");
    }
    let log = server.logs();
    assert!(
        log.iter().any(|l| l.contains("\"anonymize\":true")),
        "the startup config says so: {log:#?}"
    );
    // Nor does the request log keep a full address: peer and client are reduced too.
    for full in [
        "127.1.0.8",
        "\"peer\":\"127.0.0.1:",
        "203.0.113.77",
        "2001:db8:1:2::5",
        "aa:bb::1",
    ] {
        assert!(!log.iter().any(|l| l.contains(full)), "{full} in {log:#?}");
    }
    assert!(
        log.iter()
            .any(|l| l.contains("\"peer\":\"127.1.0.0:") && l.contains("\"client\":\"127.1.0.0\"")),
        "{log:#?}"
    );
}

#[test]
fn anonymize_comes_from_the_environment_and_is_off_by_default() {
    let scratch = Scratch::new();
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--file"])
        .arg(scratch.file())
        .env("VISIT_ANONYMIZE", "1");
    let server = Server::spawn(cmd, &scratch.file());
    assert!(visit_from(source(20), server.addr).unwrap());
    assert_eq!(ips(&journal_lines(&scratch.file())), ["127.1.0.0"]);
    drop(server);

    let plain = Scratch::new();
    let server = Server::start(&plain.file(), &[]);
    assert!(visit_from(source(20), server.addr).unwrap());
    assert_eq!(ips(&journal_lines(&plain.file())), ["127.1.0.21"]);

    for (env, why) in [("yes please", "VISIT_ANONYMIZE"), ("2", "VISIT_ANONYMIZE")] {
        let out = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--file"])
            .arg(plain.file())
            .env("VISIT_ANONYMIZE", env)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{env}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(why), "{env}");
    }
    let out = Command::new(BIN)
        .args(["--anonymize=yes", "--file"])
        .arg(plain.file())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--anonymize takes no value"));
}
