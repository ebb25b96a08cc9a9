//! `visit-server`: parses the configuration, opens the journal, binds, and serves until
//! SIGTERM. Everything else lives in the library; see its docs.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use visit_journal::Options;
use visit_server::app::{self, App};
use visit_server::config::{self, Command};
use visit_server::log::{self, Value};
use visit_server::server::{self, Limits, Outcome};
use visit_server::shutdown::Signals;
use visit_server::token::{self, ReadTokens};

fn main() -> ExitCode {
    let config = match config::parse(std::env::args_os().skip(1), |k| std::env::var_os(k)) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => return say(&config::usage()),
        Ok(Command::Version) => {
            return say(&format!("visit-server {}\n", env!("CARGO_PKG_VERSION")));
        }
        Ok(Command::Probe(config)) => return probe(config.listen),
        Err(e) => {
            let _ = write!(io::stderr(), "visit-server: {e}\n\n{}", config::usage());
            return ExitCode::from(2);
        }
    };
    let limits = Limits::default();
    // Before anything is opened: a history of thousands of segments is opened whole by every
    // reader (CONTRACT §10), and a container's soft limit is often 1024.
    let open_files = raise_open_files_limit();
    let offset = config
        .utc_offset
        .map_or_else(|| "local".to_string(), |o| o.to_string());
    let peers = config
        .peers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let peer_dns = config
        .peer_dns
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let public_port = config
        .public_port
        .map(|p| p.to_string())
        .unwrap_or_default();
    // Reads are open without a token file: fine on loopback (the lab, a laptop), a warning
    // anywhere else, where anyone who reaches the port reads every visitor's address.
    let reads_open = config.read_token_file.is_none();
    let level = if reads_open && !config.listen.ip().to_canonical().is_loopback() {
        log::Level::Warn
    } else {
        log::Level::Info
    };
    let read_token_file = config
        .read_token_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let file = config.file.display();
    let mut fields = vec![
        ("version", env!("CARGO_PKG_VERSION").into()),
        ("listen", Value::Display(&config.listen)),
        ("file", Value::Display(&file)),
        ("trusted_proxies", Value::Display(&config.trusted_proxies)),
        ("utc_offset", Value::Str(&offset)),
        ("peers", Value::Str(&peers)),
        ("peer_dns", Value::Str(&peer_dns)),
        ("public_port", Value::Str(&public_port)),
        (
            "peer_timeout_ms",
            (config.peer_timeout.as_millis() as u64).into(),
        ),
        ("rotate_size", config.rotate_size.into()),
        ("retain_size", config.retain_size.into()),
        ("retain_days", config.retain_days.into()),
        ("anonymize", config.anonymize.into()),
        ("open_files_limit", Value::Str(&open_files)),
        ("reads", if reads_open { "open" } else { "token" }.into()),
        ("read_token_file", Value::Str(&read_token_file)),
        ("pid", u64::from(std::process::id()).into()),
    ];
    if level == log::Level::Warn {
        fields.push((
            "hint",
            "anyone who reaches this address reads every visitor's address: \
             set --read-token-file (VISIT_READ_TOKEN_FILE)"
                .into(),
        ));
    }
    log::emit(level, "starting", &fields);

    // The token file is checked before the journal is touched: a bad one exits with one line
    // naming the path and what is wrong (never a token), and creates nothing.
    let read_tokens = match &config.read_token_file {
        None => None,
        Some(path) => match ReadTokens::load(path) {
            Ok(tokens) => {
                log::info(
                    "read_tokens_loaded",
                    &[
                        ("path", Value::Display(&path.display())),
                        ("tokens", (tokens.current().len() as u64).into()),
                    ],
                );
                Some(tokens)
            }
            Err(e) => {
                log::error(
                    "read_token_file_invalid",
                    &[
                        ("path", Value::Display(&path.display())),
                        ("cause", Value::Display(&e.problem)),
                    ],
                );
                return fail(&e.to_string());
            }
        },
    };

    let journal = match Options::new()
        .lock_timeout(app::LOCK_TIMEOUT)
        .rotate_size(config.rotate_size)
        .retain_size(config.retain_size)
        .retain_days(config.retain_days)
        .open(&config.file)
    {
        Ok(j) => j,
        Err(e) => {
            app::log_journal_error("journal_open_failed", &config.file, &e);
            // Name the configured path even when the error is about a directory on the way.
            let msg = if e.path() == Some(config.file.as_path()) {
                app::describe(&e)
            } else {
                format!("journal {}: {}", config.file.display(), app::describe(&e))
            };
            return fail(&msg);
        }
    };
    log::info(
        "journal_opened",
        &[
            ("path", Value::Display(&journal.path().display())),
            ("repaired_bytes", journal.stats().repaired_bytes.into()),
            ("sealed_segments", journal.stats().sealed_segments.into()),
            ("retired_segments", journal.stats().retired_segments.into()),
        ],
    );
    let mut app = App::new(config, journal);
    if let Some(tokens) = read_tokens {
        app = app.with_read_tokens(tokens);
    }
    let app = Arc::new(app);
    // Retention ran at open; if it failed, the journal retries it, and the log says why.
    app.log_lifecycle_error();
    log::info("replica", &[("name", Value::Str(&app.name))]);
    // A journal that cannot be written fails fast, except for a full disk: that is no reason
    // to crash-loop; start unready and let /readyz notice when space is back.
    if let Err(e) = app.journal.check_writable() {
        app::log_journal_error("journal_probe_failed", app.journal.path(), &e);
        if !e.is_out_of_space() {
            return fail(&format!(
                "journal {} is not writable: {}",
                app.journal.path().display(),
                app::describe(&e)
            ));
        }
        app.mark_unwritable();
    }

    count_segments_in_background(&app);
    watch_read_tokens_in_background(&app);

    let listener = match server::bind(app.config.listen, &limits) {
        Ok(l) => l,
        Err(e) => {
            let msg = format!("cannot listen on {}: {e}", app.config.listen);
            log::error("listen_failed", &[("cause", Value::Str(&msg))]);
            return fail(&msg);
        }
    };
    let signals = match Signals::register() {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot install signal handlers: {e}")),
    };
    match server::run(listener, app, &limits, &signals) {
        Outcome::Stopped => ExitCode::SUCCESS,
        Outcome::Failed => ExitCode::FAILURE,
    }
}

/// Counts the journal's sealed segments once, on one low-priority thread, into the counts the
/// journal keeps for `/stats` and `/dashboard` (`Journal::counts`), and logs
/// `segments_counted` when done. Without it a replica restarted with a big history would
/// count it on its first `/stats` (seconds for a GiB), so its peers' cluster views, which
/// wait `--peer-timeout` (1 s), would list it as missing until then; with it, they see it
/// within seconds of the start. Requests never wait for this thread: one that comes first
/// counts what is not counted yet itself, as without it.
fn count_segments_in_background(app: &Arc<App>) {
    if app.journal.stats().sealed_segments == 0 {
        return;
    }
    let app = Arc::clone(app);
    let spawned = std::thread::Builder::new()
        .name("count-segments".into())
        .spawn(move || {
            lower_priority();
            let start = Instant::now();
            match app.journal.counts() {
                Ok(counts) => log::info(
                    "segments_counted",
                    &[
                        ("segments", app.journal.stats().sealed_segments.into()),
                        ("visits", counts.visits().into()),
                        ("damaged_files", (counts.damaged().len() as u64).into()),
                        ("duration_s", Value::Seconds(start.elapsed())),
                    ],
                ),
                // Not fatal: the next /stats counts them (and says why it cannot).
                Err(e) => app::log_journal_error("segments_count_failed", app.journal.path(), &e),
            }
        });
    if let Err(e) = spawned {
        log::warn(
            "segments_count_failed",
            &[(
                "cause",
                Value::Display(&format_args!("cannot start a thread: {e}")),
            )],
        );
    }
}

/// Raises the soft limit of open files to the hard limit, as Go's runtime does at start: the
/// history's readers hold a descriptor per segment, and the hard limit is what the operator
/// (or the container runtime) allows. Returns `soft/hard` as set, for the start-up log, or
/// why it could not.
fn raise_open_files_limit() -> String {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |v| v.to_string());
        if limit.current != limit.maximum {
            limit.current = limit.maximum;
            if let Err(e) = setrlimit(Resource::Nofile, limit) {
                let now = getrlimit(Resource::Nofile);
                return format!(
                    "{}/{} (not raised: {e})",
                    show(now.current),
                    show(now.maximum)
                );
            }
        }
        let now = getrlimit(Resource::Nofile);
        format!("{}/{}", show(now.current), show(now.maximum))
    }
    #[cfg(not(target_os = "linux"))]
    {
        "unchanged".to_string()
    }
}

/// Looks at the read token file once every [`token::CHECK_INTERVAL`] on a thread of its own,
/// besides the look a protected request takes when the last one is that old: so a Secret the
/// kubelet updated is read (and `read_tokens_reloaded` or `read_token_file_invalid` logged)
/// within a second even when nobody reads, and an operator rotating a token sees each pod
/// take it. The thread only sleeps and calls `stat`; it lives as long as the process.
fn watch_read_tokens_in_background(app: &Arc<App>) {
    if app.read_tokens.is_none() {
        return;
    }
    let app = Arc::clone(app);
    let spawned = std::thread::Builder::new()
        .name("read-tokens".into())
        .spawn(move || {
            let Some(tokens) = &app.read_tokens else {
                return;
            };
            loop {
                std::thread::sleep(token::CHECK_INTERVAL);
                tokens.refresh();
            }
        });
    if let Err(e) = spawned {
        // Not fatal: protected requests still look at the file themselves.
        log::warn(
            "read_tokens_watch_failed",
            &[(
                "cause",
                Value::Display(&format_args!("cannot start a thread: {e}")),
            )],
        );
    }
}

/// Makes the calling thread the lowest priority (nice 19): on Linux a thread's nice value is
/// its own, so request workers keep theirs. Elsewhere it does nothing.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), 19) {
            log::warn(
                "segments_count_priority_failed",
                &[("cause", Value::Display(&e))],
            );
        }
    }
}

/// `--probe`: GET /livez from the address the server is configured to listen on (an
/// unspecified address, 0.0.0.0 or [::], is asked on its loopback), within 2 s. Exit 0 on a
/// 200; otherwise one line on stderr saying what was wrong, and exit 1.
fn probe(listen: SocketAddr) -> ExitCode {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let status_line = (|| -> io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        write!(
            stream,
            "GET /livez HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        // The status line is all we need; a short answer is read whole.
        let mut head = [0u8; 64];
        let mut len = 0;
        while len < head.len() {
            match stream.read(&mut head[len..])? {
                0 => break,
                n => len += n,
            }
        }
        let head = String::from_utf8_lossy(&head[..len]);
        Ok(head.lines().next().unwrap_or_default().to_string())
    })();
    match status_line {
        Ok(line) if line.starts_with("HTTP/1.1 200 ") || line.starts_with("HTTP/1.0 200 ") => {
            ExitCode::SUCCESS
        }
        Ok(line) => fail(&format!("probe of http://{addr}/livez: answered {line:?}")),
        Err(e) => fail(&format!("probe of http://{addr}/livez: {e}")),
    }
}

/// Prints to stdout (help, version) and exits 0.
fn say(text: &str) -> ExitCode {
    let _ = io::stdout().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// One clear line on stderr (besides the JSON log line), then exit 1.
fn fail(msg: &str) -> ExitCode {
    let _ = writeln!(io::stderr(), "visit-server: {msg}");
    ExitCode::FAILURE
}
