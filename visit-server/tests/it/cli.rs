//! The command line: help, version, usage errors, failing fast, env vs flags.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{BIN, Scratch, Server, journal_lines};

fn output(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("VISIT_LISTEN")
        .env_remove("VISIT_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn help_and_version_print_and_exit_0() {
    let help = output(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for needle in [
        "Usage: visit-server",
        "--listen ADDR",
        "--file PATH",
        "--trusted-proxy IP",
        "--utc-offset +HH:MM",
        "VISIT_LISTEN",
        "VISIT_FILE",
        "VISIT_TRUSTED_PROXIES",
        "VISIT_UTC_OFFSET",
        "--public-port PORT",
        "VISIT_PUBLIC_PORT",
        "127.0.0.1:8080",
        "data/visits.txt",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let version = output(&["-V"]);
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8(version.stdout).unwrap(),
        format!("visit-server {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_flag_exits_2_with_usage() {
    for args in [
        &["--bogus"][..],
        &["--listen"],
        &["--utc-offset", "+3"],
        &["--public-port", "0"],
        &["extra"],
    ] {
        let out = output(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("visit-server: "), "{err}");
        assert!(err.contains("Usage: visit-server"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn an_unopenable_journal_fails_fast_naming_the_path() {
    let s = Scratch::new();
    // A regular file where a directory should be: fails even for root.
    let blocker = s.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let file = blocker.join("visits.txt");
    let started = Instant::now();
    let out = output(&["--listen", "127.0.0.1:0", "--file", file.to_str().unwrap()]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    // The JSON log says the same, with the path in its own field.
    let log = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "journal_open_failed");
    assert_eq!(last["level"], "error");
    assert_eq!(last["path"], file.to_str().unwrap());
}

#[test]
fn environment_configures_and_flags_win() {
    let s = Scratch::new();
    let file = s.file();
    let mut cmd = Command::new(BIN);
    cmd.env("VISIT_LISTEN", "127.0.0.1:0")
        .env("VISIT_FILE", &file)
        .env("VISIT_UTC_OFFSET", "-05:00")
        .env("VISIT_TRUSTED_PROXIES", "127.0.0.1");
    visit_forwarded_for(&Server::spawn(cmd, &file));
    let lines = journal_lines(&file);
    assert!(lines[0].ends_with("-05:00 - 198.51.100.23"), "{lines:?}");

    let mut cmd = Command::new(BIN);
    cmd.env("VISIT_LISTEN", "127.0.0.1:1")
        .env("VISIT_FILE", s.dir.path().join("ignored.txt"))
        .env("VISIT_UTC_OFFSET", "-05:00")
        .env("VISIT_TRUSTED_PROXIES", "127.0.0.1")
        .args(["--listen", "127.0.0.1:0", "--file"])
        .arg(&file)
        .args(["--utc-offset", "+03:00", "--trusted-proxy", "10.0.0.1"]);
    visit_forwarded_for(&Server::spawn(cmd, &file));
    let lines = journal_lines(&file);
    assert!(lines[1].ends_with("+03:00 - 127.0.0.1"), "{lines:?}");
    assert!(!s.dir.path().join("ignored.txt").exists());
}

/// `GET /` claiming to be forwarded for 198.51.100.23; must be answered 200.
fn visit_forwarded_for(server: &Server) {
    let r = crate::support::exchange(
        crate::support::connect(server.addr),
        b"GET / HTTP/1.1\r\nX-Forwarded-For: 198.51.100.23\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn bad_lifetime_sizes_exit_2_with_usage() {
    for args in [
        &["--rotate-size", "4095"][..],
        &["--rotate-size", "1K"],
        &["--rotate-size", "8mb"],
        &["--rotate-size", "1.5M"],
        &["--rotate-size"],
        &["--retain-size", "-1"],
        &["--retain-size", "1T"],
        &["--retain-days", "two"],
    ] {
        let out = output(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("visit-server: "), "{err}");
        assert!(err.contains("Usage: visit-server"), "{err}");
    }
    for (var, value) in [
        ("VISIT_ROTATE_SIZE", "100"),
        ("VISIT_RETAIN_SIZE", "8 MiB"),
        ("VISIT_RETAIN_DAYS", "-3"),
    ] {
        let out = Command::new(BIN)
            .env(var, value)
            .env("VISIT_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(var), "{err}");
    }
    let help = String::from_utf8(output(&["--help"]).stdout).unwrap();
    for needle in [
        "--rotate-size SIZE",
        "--retain-size SIZE",
        "--retain-days N",
        "VISIT_ROTATE_SIZE",
        "VISIT_RETAIN_SIZE",
        "VISIT_RETAIN_DAYS",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

#[test]
fn a_rotating_server_seals_segments_and_retires_them_into_the_summary() {
    let s = Scratch::new();
    let file = s.file();
    let mut cmd = Command::new(BIN);
    cmd.env("VISIT_ROTATE_SIZE", "4KiB")
        .env("VISIT_RETAIN_SIZE", "8K")
        .args(["--listen", "127.0.0.1:0", "--file"])
        .arg(&file);
    let server = Server::spawn(cmd, &file);
    for _ in 0..400 {
        assert_eq!(server.get("/").status, 200);
    }
    let dir = file.parent().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("visits.txt."))
        .collect();
    names.sort();
    let summary = std::fs::read_to_string(dir.join("visits.txt.summary")).unwrap();
    assert!(summary.starts_with("# folded through "), "{summary}");
    let segments: Vec<&String> = names
        .iter()
        .filter(|n| *n != "visits.txt.summary")
        .collect();
    assert!(!segments.is_empty() && segments.len() <= 2, "{names:?}");
    for seg in &segments {
        assert!(std::fs::metadata(dir.join(seg)).unwrap().len() <= 4096);
    }
    let metrics = server.get("/metrics").text();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name}"))
            .parse()
            .unwrap()
    };
    assert!(value("visit_journal_rotations_total") >= 3, "{metrics}");
    assert!(value("visit_journal_retired_segments_total") >= 1);
    assert_eq!(value("visit_journal_failed_retentions_total"), 0);
    assert_eq!(
        value("visit_journal_sealed_segments"),
        segments.len() as u64
    );
    assert!(value("visit_journal_sealed_bytes") <= 8192);
}

#[test]
fn probe_asks_the_configured_address_and_records_nothing() {
    let scratch = Scratch::new();
    let server = Server::start(&scratch.file(), &[]);
    let listen = server.addr.to_string();
    // As the image's HEALTHCHECK runs it: the address comes from VISIT_LISTEN.
    let healthy = Command::new(BIN)
        .arg("--probe")
        .env("VISIT_LISTEN", &listen)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(healthy.status.success(), "{healthy:?}");
    // An unspecified address is asked on its loopback.
    let any = format!("0.0.0.0:{}", server.addr.port());
    assert!(output(&["--probe", "--listen", &any]).status.success());
    assert!(
        journal_lines(&scratch.file()).is_empty(),
        "a probe recorded a visit"
    );
    // Nobody listening: exit 1 with one line naming the address.
    let port = crate::support::free_ports(1)[0];
    let down = output(&["--probe", "--listen", &format!("127.0.0.1:{port}")]);
    assert_eq!(down.status.code(), Some(1));
    let err = String::from_utf8(down.stderr).unwrap();
    assert!(
        err.starts_with("visit-server: probe of http://127.0.0.1:"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
