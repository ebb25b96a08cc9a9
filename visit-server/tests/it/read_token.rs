//! `--read-token-file` (CONTRACT.md section 11) on real servers: bad files refused at start,
//! every shape of `Authorization`, the file followed as it changes (a Kubernetes Secret's
//! symlink swap included), the cluster view's token, the logs and `/metrics` — and no token
//! anywhere in what a server printed.

use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    BIN, IO_TIMEOUT, Response, Scratch, Server, base64, connect, free_ports, get_with,
    journal_lines, random_token, read_until_closed,
};

/// How soon a token added or removed must take effect (the contract's 5 s).
const FOLLOW: Duration = Duration::from_secs(5);

/// The `WWW-Authenticate` of every 401.
const CHALLENGE: &str = "Basic realm=\"visit-server\", charset=\"UTF-8\"";

/// Writes `content` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// A server whose reads need the tokens in `dir/token` (written with `content`).
fn guarded(s: &Scratch, content: &str, args: &[&str]) -> (Server, PathBuf) {
    let file = write(s.dir.path(), "token", content);
    let mut a = vec!["--read-token-file", file.to_str().unwrap()];
    a.extend_from_slice(args);
    (Server::start(&s.file(), &a), file)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Authorization: Basic {}",
        base64(format!("{user}:{password}").as_bytes())
    )
}

fn status(server: &Server, path: &str, headers: &[&str]) -> u16 {
    get_with(server.addr, path, headers).status
}

fn assert_unauthorized(r: &Response, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    assert_eq!(r.header("WWW-Authenticate"), Some(CHALLENGE), "{what}");
    assert_eq!(r.header("Cache-Control"), Some("no-store"), "{what}");
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; charset=utf-8"),
        "{what}"
    );
    assert!(r.text().starts_with("this needs a read token"), "{what}");
}

/// Asserts that none of `secrets` appears in anything the server printed.
fn assert_never_printed(logs: &[String], secrets: &[&str]) {
    for line in logs {
        for secret in secrets {
            assert!(!line.contains(secret), "a secret in the output: {line}");
        }
    }
}

/// The JSON log lines of `event`.
fn events(logs: &[String], event: &str) -> Vec<Value> {
    logs.iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

/// The log lines of `event` once there are at least `n` (a request is logged just after its
/// answer is sent).
fn wait_events(server: &Server, event: &str, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let found = events(&server.logs(), event);
        if found.len() >= n {
            return found;
        }
        assert!(
            started.elapsed() < IO_TIMEOUT,
            "{} {event} lines, not {n}: {:#?}",
            found.len(),
            server.logs()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `path` with `headers` until it answers `want`; returns how long that took.
fn until_status(server: &Server, path: &str, headers: &[&str], want: u16) -> Duration {
    let started = Instant::now();
    loop {
        let got = status(server, path, headers);
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < FOLLOW,
            "{path} still {got}, not {want}, {FOLLOW:?} after the change: {:#?}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn metric(server: &Server, name: &str) -> u64 {
    let text = server.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

// --- Bad files stop the server at start ---------------------------------------------------

/// How a test prepares the token path in its scratch directory.
enum Setup<'a> {
    /// A file with this content.
    Content(&'a [u8]),
    /// Nothing at the path.
    Missing,
    /// A directory at the path.
    Directory,
}

/// Runs the binary with `--read-token-file` at the prepared path (as `uid`, if given) and
/// asserts it exits 1 at once, before touching the journal, with one line on stderr naming
/// the path and `problem`, the same in the JSON log, and no token anywhere.
fn assert_refused_at_start(setup: Setup<'_>, problem: &str) {
    let s = Scratch::new();
    let path = s.dir.path().join("token");
    match setup {
        Setup::Content(c) => std::fs::write(&path, c).unwrap(),
        Setup::Missing => {}
        Setup::Directory => std::fs::create_dir(&path).unwrap(),
    }
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--file"])
        .arg(s.file())
        .arg("--read-token-file")
        .arg(&path);
    let out = run(cmd);
    assert_start_failure(&out, &path, problem);
    assert!(
        !s.file().parent().unwrap().exists(),
        "the journal was touched"
    );
}

fn run(mut cmd: Command) -> Output {
    cmd.env_remove("VISIT_READ_TOKEN_FILE")
        .env_remove("VISIT_LISTEN")
        .env_remove("VISIT_FILE")
        .stdin(Stdio::null());
    let started = Instant::now();
    let out = cmd.output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    out
}

fn assert_start_failure(out: &Output, path: &Path, problem: &str) {
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let want = format!(
        "visit-server: read token file {}: {problem}",
        path.display()
    );
    assert!(
        err.starts_with(&want),
        "{err}\nwanted it to start with\n{want}"
    );
    let log = String::from_utf8(out.stdout.clone()).unwrap();
    let last: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "read_token_file_invalid");
    assert_eq!(last["level"], "error");
    assert_eq!(last["path"], path.to_str().unwrap());
    assert!(
        last["cause"].as_str().unwrap().starts_with(problem),
        "{last}"
    );
    // Whatever was in the file (the tests' tokens all hold this run of letters), none of it
    // is printed.
    for text in [&err, &log] {
        assert!(!text.contains("tokentoken"), "{text}");
    }
}

#[test]
fn an_empty_token_file_is_refused_at_start() {
    assert_refused_at_start(Setup::Content(b""), "holds no token (it is empty or blank)");
}

#[test]
fn a_blank_token_file_is_refused_at_start() {
    assert_refused_at_start(Setup::Content(b"\n  \t\r\n\n"), "holds no token");
}

#[test]
fn a_short_token_is_refused_at_start() {
    assert_refused_at_start(
        Setup::Content(b"tokentoken-31-bytes-xxxxxxxxxxx\n"),
        "line 1: the token is 31 bytes, shorter than 32",
    );
}

#[test]
fn a_long_token_is_refused_at_start() {
    let long = format!("tokentoken{}", "y".repeat(1015));
    assert_refused_at_start(
        Setup::Content(long.as_bytes()),
        "line 1: the token is 1025 bytes, longer than 1024",
    );
}

#[test]
fn a_non_ascii_token_is_refused_at_start() {
    assert_refused_at_start(
        Setup::Content("\ntokentoken-and-an-accent-é-xxxxxxxxxxxx".as_bytes()),
        "line 2: byte 26 of the token is not ASCII",
    );
}

#[test]
fn a_token_with_control_characters_is_refused_at_start() {
    assert_refused_at_start(
        Setup::Content(b"tokentoken-and-a-bell-\x07-xxxxxxxxxxxxxxxxxx"),
        "line 1: byte 23 of the token is a control character",
    );
    assert_refused_at_start(
        Setup::Content(b"tokentoken-and-a-nul-\x00-xxxxxxxxxxxxxxxxxx"),
        "line 1: byte 22 of the token is a control character",
    );
}

#[test]
fn three_tokens_are_refused_at_start() {
    let t = "tokentoken-0123456789abcdef0123456789abcdef";
    assert_refused_at_start(
        Setup::Content(format!("{t}1\n{t}2\n\n{t}3\n").as_bytes()),
        "holds 3 tokens, at most 2",
    );
}

#[test]
fn a_missing_token_file_is_refused_at_start() {
    assert_refused_at_start(Setup::Missing, "no such file");
}

#[test]
fn a_directory_as_the_token_file_is_refused_at_start() {
    assert_refused_at_start(Setup::Directory, "is a directory, not a file");
}

#[test]
fn the_variable_names_the_file_too() {
    let s = Scratch::new();
    let path = s.dir.path().join("nowhere/token");
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--file"])
        .arg(s.file())
        .env_remove("VISIT_LISTEN")
        .env_remove("VISIT_FILE")
        .env("VISIT_READ_TOKEN_FILE", &path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_start_failure(&out, &path, "no such file");
}

#[test]
fn an_unreadable_token_file_is_refused_at_start() {
    let s = Scratch::new();
    let dir = s.dir.path();
    let path = write(
        dir,
        "token",
        "tokentoken-0123456789abcdef0123456789abcdef\n",
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let mut cmd;
    if is_root {
        // Root reads any file: drop to nobody (65534) in the child, with a copy of the binary
        // and a scratch directory that nobody may enter (a checkout under /root is not).
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(setpriv) = setpriv else {
            eprintln!(
                "SKIPPED an_unreadable_token_file_is_refused_at_start: running as root and \
                 setpriv (util-linux) is not installed, so no unprivileged child can be run"
            );
            return;
        };
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("visit-server");
        std::fs::copy(BIN, &bin).unwrap();
        cmd = Command::new(setpriv);
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin);
    } else {
        cmd = Command::new(BIN);
    }
    cmd.args(["--listen", "127.0.0.1:0", "--file"])
        .arg(dir.join("data/visits.txt"))
        .arg("--read-token-file")
        .arg(&path);
    let out = run(cmd);
    assert_start_failure(&out, &path, "cannot be read: Permission denied");
}

// --- Requests ------------------------------------------------------------------------------

#[test]
fn reads_need_a_token_in_any_accepted_shape_and_the_rest_stays_open() {
    let s = Scratch::new();
    let token = random_token();
    let (server, _) = guarded(&s, &format!("{token}\n"), &["--name", "r0"]);
    let ok = [
        bearer(&token),
        format!("Authorization: bearer {token}"),
        format!("Authorization: BEARER {token}"),
        format!("Authorization: Bearer    {token}"),
        format!("Authorization:    Bearer {token}   "),
        basic("reader", &token),
        basic("", &token),
        format!(
            "Authorization: basic {}",
            base64(format!("ünïcode user:{token}").as_bytes())
        ),
        format!(
            "Authorization: BASIC {}",
            base64(format!("x:{token}").as_bytes())
        ),
    ];
    for path in ["/visits", "/visits?format=json", "/stats", "/dashboard"] {
        for header in &ok {
            let r = get_with(server.addr, path, &[header]);
            assert_eq!(r.status, 200, "{path} {header}: {}", r.text());
            assert_eq!(r.header("X-Visit-Replica"), Some("r0"));
        }
    }
    assert_eq!(status(&server, "/visits?limit=x", &[&bearer(&token)]), 400);
    assert_eq!(
        status(
            &server,
            "/stats?scope=cluster&format=csv",
            &[&bearer(&token)]
        ),
        200
    );

    let prefix = &token[..token.len() - 1];
    let extension = format!("{token}0");
    let no_colon = format!("Authorization: Basic {}", base64(token.as_bytes()));
    let big = format!("Authorization: Bearer {}", "A".repeat(8 * 1024));
    let refused: Vec<(Vec<String>, &str)> = vec![
        (vec![], "no credentials"),
        (vec!["Authorization:".into()], "malformed credentials"),
        (
            vec!["Authorization: Bearer".into()],
            "malformed credentials",
        ),
        (
            vec![format!("Authorization: Bearer{token}")],
            "malformed credentials",
        ),
        (
            vec![format!("Authorization: {token}")],
            "malformed credentials",
        ),
        (
            vec![format!("Authorization: Bearer {token} {token}")],
            "malformed credentials",
        ),
        (
            vec![bearer(&token), bearer(&token)],
            "more than one Authorization header",
        ),
        (
            vec![bearer(&token), bearer("x")],
            "more than one Authorization header",
        ),
        (
            vec![format!("Authorization: Token {token}")],
            "not Bearer or Basic",
        ),
        (
            vec![format!("Authorization: Digest {token}")],
            "not Bearer or Basic",
        ),
        (
            vec![format!("Proxy-Authorization: Bearer {token}")],
            "no credentials",
        ),
        (
            vec![format!("Authorization: Basic {token}!")],
            "Basic credentials not base64",
        ),
        (
            vec!["Authorization: Basic dXNlcjp0b2tlbg".into()],
            "Basic credentials not base64",
        ),
        (vec![no_colon], "Basic credentials without a colon"),
        (vec![bearer(prefix)], "wrong token"),
        (vec![bearer(&extension)], "wrong token"),
        (vec![basic("u", prefix)], "wrong token"),
        (vec![basic("u", &extension)], "wrong token"),
        (vec![bearer(&token.to_uppercase())], "wrong token"),
        (vec![basic(&token, "password")], "wrong token"),
        (vec![big], "credentials too long"),
    ];
    let mut sent = 0;
    for (headers, reason) in &refused {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        for path in ["/visits", "/stats?scope=cluster", "/dashboard"] {
            assert_unauthorized(
                &get_with(server.addr, path, &headers),
                &format!("{headers:?}"),
            );
            sent += 1;
        }
        let logged = wait_events(&server, "unauthorized", sent);
        assert_eq!(logged[sent - 1]["reason"], *reason, "{headers:?}");
    }
    // A HEAD too.
    let mut stream = connect(server.addr);
    stream
        .write_all(b"HEAD /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, _) = read_until_closed(&mut stream, IO_TIMEOUT);
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert!(
        head.contains(&format!("\r\nWWW-Authenticate: {CHALLENGE}\r\n")),
        "{head}"
    );
    sent += 1;

    // The rest is open, and the server is well.
    for (path, want) in [
        ("/healthz", 200),
        ("/livez", 200),
        ("/readyz", 200),
        ("/openapi.json", 200),
        ("/metrics", 200),
        ("/favicon.ico", 404),
    ] {
        assert_eq!(status(&server, path, &[]), want, "{path}");
    }
    // No refused read recorded a visit; GET / still does, with or without credentials.
    assert!(journal_lines(&s.file()).is_empty());
    assert_eq!(status(&server, "/", &[]), 200);
    assert_eq!(status(&server, "/", &[&bearer("wrong")]), 200);
    assert_eq!(journal_lines(&s.file()).len(), 2);

    // Counted under 401; logged with path, peer and reason; never the credential.
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains(&format!(
            "visit_server_requests_total{{status=\"401\"}} {sent}\n"
        )),
        "{metrics}"
    );
    let logged = wait_events(&server, "unauthorized", sent);
    assert_eq!(logged.len(), sent);
    let logs = server.logs();
    let first = &logged[0];
    assert_eq!(first["level"], "warn");
    assert_eq!(first["path"], "/visits");
    assert_eq!(first["method"], "GET");
    assert!(first["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(first["client"], "127.0.0.1");
    // One line for one request: the refusal is not logged again as a `request`.
    assert!(logged.iter().all(|l| l["status"] == 401));
    assert!(events(&logs, "request").iter().all(|r| r["status"] != 401));
    let b64 = base64(format!("reader:{token}").as_bytes());
    assert_never_printed(&logs, &[&token, prefix, &token[8..40], &b64]);
}

#[test]
fn with_anonymize_a_refusal_logs_the_reduced_address() {
    let s = Scratch::new();
    let token = random_token();
    let (server, _) = guarded(&s, &token, &["--anonymize"]);
    assert_unauthorized(&get_with(server.addr, "/visits", &[]), "no credentials");
    let logged = wait_events(&server, "unauthorized", 1);
    assert_eq!(logged[0]["client"], "127.0.0.0");
    assert!(
        logged[0]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.0:")
    );
}

// --- Following the file ----------------------------------------------------------------------

#[test]
fn a_token_added_is_accepted_and_one_removed_refused_within_seconds() {
    let s = Scratch::new();
    let (old, new) = (random_token(), random_token());
    let (server, file) = guarded(&s, &old, &[]);
    assert_eq!(status(&server, "/stats", &[&bearer(&old)]), 200);
    assert_eq!(status(&server, "/stats", &[&bearer(&new)]), 401);

    // Rotation, step 1: both.
    std::fs::write(&file, format!("{old}\n{new}\n")).unwrap();
    let took = until_status(&server, "/stats", &[&bearer(&new)], 200);
    assert_eq!(status(&server, "/stats", &[&bearer(&old)]), 200);
    // Step 3: only the new one.
    std::fs::write(&file, format!("{new}\n")).unwrap();
    let took_removed = until_status(&server, "/stats", &[&bearer(&old)], 401);
    assert_eq!(status(&server, "/stats", &[&basic("x", &new)]), 200);
    eprintln!("a token added took {took:?}, one removed {took_removed:?}");

    let logs = server.logs();
    let reloads: Vec<u64> = events(&logs, "read_tokens_reloaded")
        .iter()
        .map(|e| e["tokens"].as_u64().unwrap())
        .collect();
    assert_eq!(reloads, [2, 1], "{logs:#?}");
    assert_eq!(events(&logs, "read_tokens_loaded")[0]["tokens"], 1);
    assert_never_printed(&logs, &[&old, &new]);
}

/// Lays out `dir` as the kubelet does a Secret volume: `token` → `..data/token`, `..data` →
/// `..<stamp>`, the directory holding the file. Returns the path the server is given.
fn secret_volume(dir: &Path, stamp: &str, token: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::create_dir(dir.join(stamp)).unwrap();
    std::fs::write(dir.join(stamp).join("token"), token).unwrap();
    symlink(stamp, dir.join("..data")).unwrap();
    symlink("..data/token", dir.join("token")).unwrap();
    dir.join("token")
}

/// Updates a Secret volume as the kubelet's atomic writer does: a new timestamped directory,
/// a new `..data_tmp` symlink renamed over `..data`, then the old directory removed.
fn swap_secret(dir: &Path, old_stamp: &str, stamp: &str, content: &str) {
    std::fs::create_dir(dir.join(stamp)).unwrap();
    std::fs::write(dir.join(stamp).join("token"), content).unwrap();
    symlink(stamp, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join(old_stamp)).unwrap();
}

#[test]
fn a_kubernetes_secret_swap_is_followed_even_with_no_traffic_before() {
    let s = Scratch::new();
    let (old, new) = (random_token(), random_token());
    let volume = s.dir.path().join("secret");
    let path = secret_volume(&volume, "..2026_11_26_10_44_36.1", &old);
    let server = Server::start(&s.file(), &["--read-token-file", path.to_str().unwrap()]);
    assert_eq!(status(&server, "/visits", &[&bearer(&old)]), 200);
    swap_secret(
        &volume,
        "..2026_11_26_10_44_36.1",
        "..2026_11_26_10_45_01.2",
        &new,
    );
    // No request: the server reads the new file by itself, and says so, within seconds.
    let started = Instant::now();
    let reloaded = wait_events(&server, "read_tokens_reloaded", 1);
    assert!(started.elapsed() < FOLLOW, "{reloaded:?}");
    assert_eq!(reloaded[0]["tokens"], 1);
    // No request for over a second: the very first one after sees the new file.
    thread::sleep(Duration::from_millis(1200));
    assert_eq!(status(&server, "/visits", &[&bearer(&old)]), 401);
    assert_eq!(status(&server, "/visits", &[&bearer(&new)]), 200);
    // And again, to a file of two tokens.
    swap_secret(
        &volume,
        "..2026_11_26_10_45_01.2",
        "..2026_11_26_10_46_00.3",
        &format!("{new}\n{old}\n"),
    );
    until_status(&server, "/visits", &[&bearer(&old)], 200);
    assert_eq!(status(&server, "/visits", &[&bearer(&new)]), 200);
    assert_never_printed(&server.logs(), &[&old, &new]);
}

#[test]
fn a_token_file_that_turns_bad_keeps_the_last_good_tokens() {
    let s = Scratch::new();
    let (good, next) = (random_token(), random_token());
    let (server, file) = guarded(&s, &good, &[]);
    // Emptied: still the old token, for several checks, and one log line about it.
    std::fs::write(&file, "").unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        assert_eq!(status(&server, "/stats", &[&bearer(&good)]), 200);
        assert_eq!(status(&server, "/stats", &[]), 401);
        thread::sleep(Duration::from_millis(100));
    }
    // Deleted, or a short token: the same.
    std::fs::remove_file(&file).unwrap();
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(status(&server, "/stats", &[&bearer(&good)]), 200);
    std::fs::write(&file, "short").unwrap();
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(status(&server, "/stats", &[&bearer(&good)]), 200);
    assert_eq!(status(&server, "/stats", &[&bearer("short")]), 401);
    let logs = server.logs();
    let problems = events(&logs, "read_token_file_invalid");
    assert_eq!(problems.len(), 1, "at most one a minute: {problems:#?}");
    assert_eq!(problems[0]["level"], "error");
    assert_eq!(problems[0]["path"], file.to_str().unwrap());
    assert!(
        problems[0]["cause"]
            .as_str()
            .unwrap()
            .starts_with("holds no token"),
        "{problems:?}"
    );
    assert_eq!(problems[0]["kept_tokens"], 1);
    // Good again, with another token: taken, and said so.
    std::fs::write(&file, &next).unwrap();
    until_status(&server, "/stats", &[&bearer(&next)], 200);
    assert_eq!(status(&server, "/stats", &[&bearer(&good)]), 401);
    assert_eq!(status(&server, "/healthz", &[]), 200);
    let logs = server.logs();
    assert_eq!(events(&logs, "read_tokens_reloaded").len(), 1);
    assert_never_printed(&logs, &[&good, &next]);
}

// --- The start-up line -----------------------------------------------------------------------

fn starting(server: &Server) -> Value {
    events(&server.logs(), "starting").remove(0)
}

#[test]
fn open_reads_beyond_loopback_are_a_warning_at_start() {
    let s = Scratch::new();
    let local = Server::start(&s.file(), &[]);
    let line = starting(&local);
    assert_eq!(
        (line["level"].as_str(), line["reads"].as_str()),
        (Some("info"), Some("open"))
    );
    drop(local);

    let any = Server::start_on("0.0.0.0:0", &s.file(), &[]);
    let line = starting(&any);
    assert_eq!(
        (line["level"].as_str(), line["reads"].as_str()),
        (Some("warn"), Some("open"))
    );
    assert!(line["hint"].as_str().unwrap().contains("--read-token-file"));
    drop(any);

    let token = random_token();
    let file = write(s.dir.path(), "token", &token);
    let guarded = Server::start_on(
        "[::]:0",
        &s.file(),
        &["--read-token-file", file.to_str().unwrap()],
    );
    let line = starting(&guarded);
    assert_eq!(
        (line["level"].as_str(), line["reads"].as_str()),
        (Some("info"), Some("token"))
    );
    assert_eq!(line["read_token_file"], file.to_str().unwrap());
    assert_never_printed(&guarded.logs(), &[&token]);
}

// --- The cluster view --------------------------------------------------------------------------

/// Replicas `visit-server-0..`, all peers of each other, replica `i` reading its tokens from
/// its own file with `contents[i]`.
fn token_replicas(dirs: &[Scratch], contents: &[String]) -> (Vec<Server>, Vec<PathBuf>) {
    let ports = free_ports(dirs.len());
    let peers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let peers = peers.join(",");
    let mut servers = Vec::new();
    let mut files = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let file = write(dir.dir.path(), "token", &contents[i]);
        let name = format!("visit-server-{i}");
        servers.push(Server::start_on(
            &format!("127.0.0.1:{}", ports[i]),
            &dir.file(),
            &[
                "--name",
                &name,
                "--peers",
                &peers,
                "--read-token-file",
                file.to_str().unwrap(),
            ],
        ));
        files.push(file);
    }
    (servers, files)
}

fn cluster_stats(server: &Server, token: &str) -> Value {
    let r = get_with(server.addr, "/stats?scope=cluster", &[&bearer(token)]);
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn names_and_missing(v: &Value) -> (Vec<String>, Vec<(String, String)>) {
    let names = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    (names, crate::cluster::missing(v))
}

#[test]
fn peers_get_the_first_token_and_one_that_refuses_it_is_named() {
    let dirs: Vec<Scratch> = (0..3).map(|_| Scratch::new()).collect();
    let (a, b) = (random_token(), random_token());
    // Replica 2's Secret lags: it still has only the old token, the others the new one first.
    let (servers, files) = token_replicas(
        &dirs,
        &[format!("{a}\n{b}\n"), format!("{a}\n"), format!("{b}\n")],
    );
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(status(s, "/", &[]), 200, "visit on {i}");
    }
    let address = |i: usize| servers[i].addr.to_string();

    // From replica 0, which sends `a`: replica 2 refuses it.
    let v = cluster_stats(&servers[0], &b);
    let (names, missing) = names_and_missing(&v);
    assert_eq!(names, ["visit-server-0", "visit-server-1"]);
    assert_eq!(missing, [(address(2), "unauthorized".to_string())]);
    assert!(
        v["missing"][0]["detail"].as_str().unwrap().contains("401"),
        "{v}"
    );
    let visits = get_with(servers[0].addr, "/visits?scope=cluster", &[&bearer(&a)]);
    assert_eq!(visits.status, 200);
    assert_eq!(visits.header("X-Visit-Partial"), Some("true"));
    assert!(
        visits
            .text()
            .contains(&format!("# missing {}: unauthorized", address(2))),
        "{}",
        visits.text()
    );
    let page = get_with(servers[0].addr, "/dashboard", &[&basic("me", &b)]);
    assert_eq!(page.status, 200);
    assert!(
        page.text()
            .contains(&format!("data-missing=\"{}\"", address(2)))
    );
    assert!(
        metric(
            &servers[0],
            "visit_server_peer_answers_total{result=\"unauthorized\"}"
        ) >= 3
    );

    // From replica 2, which sends `b`: replica 1 refuses it, replica 0 takes it.
    let (names, missing) = names_and_missing(&cluster_stats(&servers[2], &b));
    assert_eq!(names, ["visit-server-0", "visit-server-2"]);
    assert_eq!(missing, [(address(1), "unauthorized".to_string())]);

    // The Secrets catch up (replica 1 gets both, replica 2 too): every view is whole.
    std::fs::write(&files[1], format!("{a}\n{b}\n")).unwrap();
    std::fs::write(&files[2], format!("{b}\n{a}\n")).unwrap();
    for from in [0, 2] {
        let started = Instant::now();
        loop {
            let (names, missing) = names_and_missing(&cluster_stats(&servers[from], &a));
            if missing.is_empty() {
                assert_eq!(names.len(), 3);
                break;
            }
            assert!(started.elapsed() < FOLLOW, "still missing {missing:?}");
            thread::sleep(Duration::from_millis(100));
        }
    }
    // The refusals were logged by the refusing replicas, and no replica printed a token.
    assert!(!events(&servers[2].logs(), "unauthorized").is_empty());
    for s in &servers {
        assert_never_printed(&s.logs(), &[&a, &b]);
    }
}

// --- The API description -----------------------------------------------------------------------

#[test]
fn openapi_declares_both_schemes_and_the_401_on_exactly_the_protected_operations() {
    let doc: Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["readToken"]["scheme"], "bearer");
    assert_eq!(schemes["readTokenBasic"]["scheme"], "basic");
    let unauthorized = &doc["components"]["responses"]["Unauthorized"];
    assert_eq!(
        unauthorized["headers"]["WWW-Authenticate"]["$ref"],
        "#/components/headers/WWWAuthenticate"
    );
    assert_eq!(
        doc["components"]["headers"]["WWWAuthenticate"]["schema"]["const"],
        CHALLENGE
    );
    let s = Scratch::new();
    let token = random_token();
    let (server, _) = guarded(&s, &token, &[]);
    for (path, item) in doc["paths"].as_object().unwrap() {
        let protected = ["/visits", "/stats", "/dashboard"].contains(&path.as_str());
        for method in ["get", "head"] {
            let op = &item[method];
            let security = op["security"].as_array().map(Vec::as_slice);
            let documented_401 = op["responses"]["401"].is_object();
            if protected {
                let names: Vec<&str> = security
                    .unwrap_or_else(|| panic!("{method} {path} declares no security"))
                    .iter()
                    .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
                    .collect();
                assert_eq!(names, ["readToken", "readTokenBasic"], "{method} {path}");
                assert!(documented_401, "{method} {path}");
            } else {
                assert!(security.is_none() && !documented_401, "{method} {path}");
            }
        }
        // And the server does as it says: 401 without the token exactly where documented.
        let without = status(&server, path, &[]);
        assert_eq!(without == 401, protected, "{path}: {without}");
        if protected {
            assert_eq!(status(&server, path, &[&bearer(&token)]), 200, "{path}");
        }
    }
}
