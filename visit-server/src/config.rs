//! Configuration from flags, environment variables and defaults, in that order of precedence.
//!
//! ```text
//! visit-server [--listen ADDR] [--file PATH] [--trusted-proxy IP ...] [--utc-offset +HH:MM]
//!              [--name NAME] [--peers HOST:PORT,...] [--peer-dns NAME:PORT]
//!              [--peer-timeout DURATION] [--public-port PORT] [--anonymize]
//!              [--rotate-size SIZE] [--retain-size SIZE] [--retain-days N]
//!              [--read-token-file PATH]
//! env: VISIT_LISTEN, VISIT_FILE, VISIT_TRUSTED_PROXIES, VISIT_UTC_OFFSET, VISIT_NAME,
//!      VISIT_PEERS, VISIT_PEER_DNS, VISIT_PEER_TIMEOUT, VISIT_PUBLIC_PORT,
//!      VISIT_ANONYMIZE, VISIT_ROTATE_SIZE, VISIT_RETAIN_SIZE, VISIT_RETAIN_DAYS,
//!      VISIT_READ_TOKEN_FILE  (flags win)
//! ```
//!
//! The parser is hand-written and table-driven ([`OPTIONS`]): each option names its flag, its
//! environment variable, its help text and a function that applies a value, so adding one is
//! one table row and one field.
//!
//! Why not clap (4.6, `derive` and `env`), measured with a scratch crate that declares these
//! eight options (there are more now): it adds 21 packages (syn among them), 9.2 s to a clean release build and
//! 516 KB to the stripped binary (3.5 MB with line tables; the server's is 1.9 MB stripped),
//! and would replace about 130 of this module's 310 lines of code (the table, [`parse`] and
//! [`usage`]; the value parsers stay). It would not keep the behaviour: an empty environment
//! variable is a value to clap (`VISIT_LISTEN=` exits 2 instead of counting as unset), an
//! environment list splits on one delimiter only (not on spaces), and clap reads the process
//! environment itself, so the tests could no longer pass one in: changing the environment
//! needs `unsafe` in edition 2024, which the workspace forbids. Precedence (flags > env >
//! defaults) and exit 2 with usage it does keep.
//!
//! The last five configure the cluster view (see [`crate::peers`]): this replica's name, the
//! peers whose visits `?scope=cluster` gathers, listed or found by DNS on each request, and,
//! behind a proxy in the same pod, the port the peers reach this server on.
//! `--rotate-size`, `--retain-size` and `--retain-days` keep the journal within its volume
//! (CONTRACT §6): rotation into sealed segments and retention of the oldest, whose visits stay
//! counted in the summary.
//! `--read-token-file` protects the reads (CONTRACT §11): only the path is parsed here; the
//! file itself is read and checked at start by [`crate::token::ReadTokens::load`], whose
//! error exits 1 with one line, not 2 with the usage (the flag was right, the file is not).
//!
//! Rules:
//! - `--flag VALUE` and `--flag=VALUE` both work.
//! - A flag given on the command line hides its environment variable entirely (for lists too:
//!   `--trusted-proxy` flags replace `VISIT_TRUSTED_PROXIES`, they do not add to it).
//! - An environment variable set to the empty string counts as unset (Kubernetes manifests
//!   often template empty values).
//! - List options repeat (`--trusted-proxy A --trusted-proxy B`) and accept commas
//!   (`--trusted-proxy A,B`); the environment form is comma- or space-separated.
//! - A single-valued flag given twice is an error, not "last wins": it is a typo more often
//!   than an intent.
//! - A switch (`--anonymize`) takes no value; its variable is `1` or `0` (or `true`/`false`,
//!   `yes`/`no`, `on`/`off`), and anything else is an error rather than a guess.
//! - `-h`/`--help` and `-V`/`--version` win over everything else.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::FixedOffset;

use crate::client_addr::{IpNet, TrustedProxies};
use crate::peers::{self, PeerAddr};

/// Everything the server is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where to listen. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The visits journal. Default `data/visits.txt`, relative to the working directory.
    pub file: PathBuf,
    /// Peers whose `X-Forwarded-For` is believed. Default: none.
    pub trusted_proxies: TrustedProxies,
    /// The UTC offset written in timestamps. `None` (the default): the system's local offset
    /// at the moment of each visit, so a daylight-saving change is followed.
    pub utc_offset: Option<FixedOffset>,
    /// This replica's name in the cluster view and its `X-Visit-Replica` header. `None` (the
    /// default): the host name, which in Kubernetes is the pod's name.
    pub name: Option<String>,
    /// Peers listed by address, asked on each `?scope=cluster` request. Default: none.
    pub peers: Vec<PeerAddr>,
    /// A DNS name whose addresses are all peers, resolved on each request. Default: none.
    pub peer_dns: Option<PeerAddr>,
    /// How long a cluster view waits for its peers, in all (resolving, connecting, reading).
    /// Default 1 s.
    pub peer_timeout: Duration,
    /// The port peers reach this server on, when it is not the listening port (a proxy in
    /// front, on every address of this host). `None` (the default): the listening port.
    pub public_port: Option<u16>,
    /// Reduce each address to its /24 (IPv4) or /48 (IPv6) before it is recorded
    /// ([`visit_journal::anonymize`]). Default: off, full addresses.
    pub anonymize: bool,
    /// Rotate the live file before it would grow past this many bytes. 0 (the default): never.
    pub rotate_size: u64,
    /// Keep at most this many bytes of sealed segments, retiring the oldest. 0 (the default):
    /// keep all.
    pub retain_size: u64,
    /// Retire a sealed segment once its newest visit is this many days old. 0 (the default):
    /// keep all.
    pub retain_days: u64,
    /// The file of read tokens that `/visits`, `/stats` and `/dashboard` require (see
    /// [`crate::token`]). `None` (the default): reads are open.
    pub read_token_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            file: PathBuf::from("data/visits.txt"),
            trusted_proxies: TrustedProxies::default(),
            utc_offset: None,
            name: None,
            peers: Vec::new(),
            peer_dns: None,
            peer_timeout: peers::DEFAULT_TIMEOUT,
            public_port: None,
            anonymize: false,
            rotate_size: 0,
            retain_size: 0,
            retain_days: 0,
            read_token_file: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once at startup and matched at once; boxing would only add noise"
)]
pub enum Command {
    /// Serve with this configuration.
    Run(Config),
    /// Print [`usage`] and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
    /// `--probe`: ask this configuration's own listen address for `GET /livez` and exit 0
    /// on a 200, 1 otherwise (the image's HEALTHCHECK).
    Probe(Config),
}

/// A bad flag or value: print it and [`usage`], exit 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// One configurable option.
#[derive(Debug)]
pub struct Opt {
    /// The long flag, with its dashes.
    pub flag: &'static str,
    /// The environment variable that supplies it when the flag is absent.
    pub env: &'static str,
    /// The value's name in the usage text; empty for a switch, a flag that takes no value
    /// (its variable takes `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`).
    pub value: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// The default, as the usage text shows it.
    pub default: &'static str,
    /// True for list options: the flag repeats and values split on commas.
    pub list: bool,
    /// Applies one value (one list element, for list options).
    pub apply: fn(&mut Config, &str) -> Result<(), String>,
}

/// The options, in the order the usage text lists them.
pub const OPTIONS: &[Opt] = &[
    Opt {
        flag: "--listen",
        env: "VISIT_LISTEN",
        value: "ADDR",
        help: "address and port to listen on, e.g. 0.0.0.0:8080 or [::]:8080",
        default: "127.0.0.1:8080",
        list: false,
        apply: |c, v| {
            c.listen = v
                .parse()
                .map_err(|_| format!("{v:?} is not an address:port such as 0.0.0.0:8080"))?;
            Ok(())
        },
    },
    Opt {
        flag: "--file",
        env: "VISIT_FILE",
        value: "PATH",
        help: "the visits journal; missing directories and the file are created",
        default: "data/visits.txt",
        list: false,
        apply: |c, v| {
            if v.is_empty() {
                return Err("the journal path is empty".into());
            }
            c.file = PathBuf::from(v);
            Ok(())
        },
    },
    Opt {
        flag: "--trusted-proxy",
        env: "VISIT_TRUSTED_PROXIES",
        value: "IP",
        help: "a proxy whose X-Forwarded-For is believed: an IP or a CIDR network; repeat or \
               separate with commas",
        default: "none",
        list: true,
        apply: |c, v| {
            c.trusted_proxies.push(v.parse::<IpNet>()?);
            Ok(())
        },
    },
    Opt {
        flag: "--utc-offset",
        env: "VISIT_UTC_OFFSET",
        value: "+HH:MM",
        help: "UTC offset of recorded timestamps, e.g. +03:00, -05:00 or Z",
        default: "the system's local offset",
        list: false,
        apply: |c, v| {
            c.utc_offset = Some(parse_offset(v)?);
            Ok(())
        },
    },
    Opt {
        flag: "--name",
        env: "VISIT_NAME",
        value: "NAME",
        help: "this replica's name in the cluster view (in Kubernetes: the pod's name)",
        default: "the host name",
        list: false,
        apply: |c, v| {
            c.name = Some(peers::check_name(v)?.to_string());
            Ok(())
        },
    },
    Opt {
        flag: "--peers",
        env: "VISIT_PEERS",
        value: "HOST:PORT",
        help: "a replica that ?scope=cluster asks (this server's own address is answered \
               locally); repeat or separate with commas",
        default: "none",
        list: true,
        apply: |c, v| {
            if c.peers.len() >= peers::MAX_PEERS {
                return Err(format!("at most {} peers", peers::MAX_PEERS));
            }
            c.peers.push(v.parse()?);
            Ok(())
        },
    },
    Opt {
        flag: "--peer-dns",
        env: "VISIT_PEER_DNS",
        value: "NAME:PORT",
        help: "a DNS name whose addresses are all replicas (a headless Service), resolved on \
               each ?scope=cluster request",
        default: "none",
        list: false,
        apply: |c, v| {
            c.peer_dns = Some(v.parse()?);
            Ok(())
        },
    },
    Opt {
        flag: "--peer-timeout",
        env: "VISIT_PEER_TIMEOUT",
        value: "DURATION",
        help: "how long ?scope=cluster waits for its peers in all, e.g. 1s, 1.5s or 800ms",
        default: "1s",
        list: false,
        apply: |c, v| {
            c.peer_timeout = parse_duration(v)?;
            Ok(())
        },
    },
    Opt {
        flag: "--public-port",
        env: "VISIT_PUBLIC_PORT",
        value: "PORT",
        help: "the port peers reach this server on, behind a proxy on this host (in a pod: \
               the proxy's); a peer there on an address of this host is answered locally",
        default: "the --listen port",
        list: false,
        apply: |c, v| {
            c.public_port = Some(parse_port(v)?);
            Ok(())
        },
    },
    Opt {
        flag: "--anonymize",
        env: "VISIT_ANONYMIZE",
        value: "",
        help: "record each address as its /24 (IPv4) or /48 (IPv6), also from X-Forwarded-For \
               (data minimisation)",
        default: "off: full addresses",
        list: false,
        apply: |c, v| {
            c.anonymize = parse_switch(v)?;
            Ok(())
        },
    },
    Opt {
        flag: "--rotate-size",
        env: "VISIT_ROTATE_SIZE",
        value: "SIZE",
        help: "seal the journal as visits.txt.000001, ... before it grows past SIZE (bytes, or \
               with K/KiB, M/MiB, G/GiB; at least 4KiB); 0 = never",
        default: "0",
        list: false,
        apply: |c, v| {
            let size = parse_size(v)?;
            if size > 0 && size < MIN_ROTATE_SIZE {
                return Err(format!("{v:?} is below the smallest rotate size, 4KiB"));
            }
            c.rotate_size = size;
            Ok(())
        },
    },
    Opt {
        flag: "--retain-size",
        env: "VISIT_RETAIN_SIZE",
        value: "SIZE",
        help: "keep at most SIZE of sealed segments; older ones are deleted, their visits \
               counted in visits.txt.summary; 0 = keep all",
        default: "0",
        list: false,
        apply: |c, v| {
            c.retain_size = parse_size(v)?;
            Ok(())
        },
    },
    Opt {
        flag: "--retain-days",
        env: "VISIT_RETAIN_DAYS",
        value: "N",
        help: "delete a sealed segment once its newest visit is N days old (its visits stay \
               counted in visits.txt.summary); 0 = keep all",
        default: "0",
        list: false,
        apply: |c, v| {
            c.retain_days = parse_count(v)
                .ok_or_else(|| format!("{v:?} is not a number of days such as 30"))?;
            Ok(())
        },
    },
    Opt {
        flag: "--read-token-file",
        env: "VISIT_READ_TOKEN_FILE",
        value: "PATH",
        help: "require a token of this file (one or two, one per line) to read /visits, /stats \
               and /dashboard: Authorization: Bearer TOKEN, or Basic with the token as the \
               password; re-read when it changes",
        default: "none: reads are open",
        list: false,
        apply: |c, v| {
            if v.is_empty() {
                return Err("the read token file path is empty".into());
            }
            c.read_token_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
];

/// What a switch's flag stands for: on.
const SWITCH_ON: &str = "1";

/// Parses a switch's value: `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`.
///
/// # Errors
///
/// A message naming the value, if it is none of those.
pub fn parse_switch(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not 1 or 0 (true/false, yes/no, on/off)")),
    }
}

/// Parses the command line (without the program name) and the environment.
///
/// `env` looks up a variable; pass `|k| std::env::var_os(k)` in `main` and a map in tests.
///
/// # Errors
///
/// [`UsageError`] for an unknown flag, a missing or bad value, a repeated single-valued flag,
/// a positional argument or a non-UTF-8 argument or variable.
pub fn parse<I, E>(args: I, env: E) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = OsString>,
    E: Fn(&str) -> Option<OsString>,
{
    let args = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| UsageError(format!("argument {a:?} is not valid UTF-8")))
        })
        .collect::<Result<Vec<String>, UsageError>>()?;
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help);
    }
    if args.iter().any(|a| a == "-V" || a == "--version") {
        return Ok(Command::Version);
    }
    let probe = args.iter().any(|a| a == "--probe");
    let args: Vec<String> = args.into_iter().filter(|a| a != "--probe").collect();

    // Values given on the command line, per option.
    let mut given: Vec<Vec<String>> = vec![Vec::new(); OPTIONS.len()];
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_string(), Some(value)),
            _ => (arg.clone(), None),
        };
        let Some(i) = OPTIONS.iter().position(|o| o.flag == name) else {
            return Err(UsageError(if arg.starts_with('-') {
                format!("unknown option {name}")
            } else {
                format!("unexpected argument {arg:?}")
            }));
        };
        let opt = &OPTIONS[i];
        let value = match inline {
            Some(_) if opt.value.is_empty() => {
                return Err(UsageError(format!("{} takes no value", opt.flag)));
            }
            Some(v) => v.to_string(),
            None if opt.value.is_empty() => SWITCH_ON.to_string(),
            None => args
                .next()
                .ok_or_else(|| UsageError(format!("{} needs a value ({})", opt.flag, opt.value)))?,
        };
        if !opt.list && !given[i].is_empty() {
            return Err(UsageError(format!("{} given twice", opt.flag)));
        }
        given[i].push(value);
    }

    let mut config = Config::default();
    for (opt, values) in OPTIONS.iter().zip(given) {
        let (values, source) = if values.is_empty() {
            match env(opt.env) {
                Some(v) if !v.is_empty() => {
                    let v = v.into_string().map_err(|_| {
                        UsageError(format!(
                            "environment variable {} is not valid UTF-8",
                            opt.env
                        ))
                    })?;
                    (vec![v], opt.env)
                }
                _ => continue,
            }
        } else {
            (values, opt.flag)
        };
        for value in values {
            let parts: Vec<&str> = if opt.list {
                value
                    .split([',', ' ', '\t', '\n'])
                    .filter(|s| !s.is_empty())
                    .collect()
            } else {
                vec![value.as_str()]
            };
            for part in parts {
                (opt.apply)(&mut config, part).map_err(|e| UsageError(format!("{source}: {e}")))?;
            }
        }
    }
    Ok(if probe {
        Command::Probe(config)
    } else {
        Command::Run(config)
    })
}

/// The smallest nonzero `--rotate-size`: smaller segments would each hold a handful of visits.
pub const MIN_ROTATE_SIZE: u64 = 4 << 10;

/// Parses a SIZE: a number of bytes, or one with the suffix `K`/`KiB`, `M`/`MiB` or `G`/`GiB`
/// (powers of 1024), such as `8MiB`, `192M` or `4096`.
///
/// # Errors
///
/// A message naming the value, if it is not of that form or does not fit in 64 bits.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size such as 4096, 512K, 8MiB or 1G");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let shift = match suffix {
        "" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return Err(bad()),
    };
    let n = parse_count(number).ok_or_else(bad)?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// A decimal number: digits only (no sign, no space), fitting in 64 bits.
fn parse_count(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The usage text, generated from [`OPTIONS`].
pub fn usage() -> String {
    let mut out = String::from(
        "Usage: visit-server [OPTIONS]\n\n\
         Records each GET / as one durable line in a visits journal and serves the journal \
         over HTTP.\n\n\
         Options:\n",
    );
    for o in OPTIONS {
        let left = format!("  {} {}", o.flag, o.value);
        let left = left.trim_end();
        out.push_str(&format!("{left:<26}{}\n", o.help));
        out.push_str(&format!(
            "{:26}[env: {}] [default: {}]\n",
            "", o.env, o.default
        ));
    }
    out.push_str(&format!("{:<26}print this help\n", "  -h, --help"));
    out.push_str(&format!("{:<26}print the version\n", "  -V, --version"));
    out.push_str(&format!(
        "{:<26}GET /livez from the configured --listen address; exit 0 on 200, else 1\n",
        "  --probe"
    ));
    out.push_str(
        "\nEndpoints: GET / records a visit; GET /visits[?limit=N][&format=json|csv]\
         [&scope=local|cluster]; GET /stats[?scope=local|cluster][&format=csv]; GET /dashboard; \
         GET /openapi.json; /healthz, /livez, /readyz, /metrics. With --read-token-file, \
         /visits, /stats and /dashboard need a token; the rest stays open.\n",
    );
    out
}

/// The shortest and longest `--peer-timeout`.
const PEER_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(60));

/// Parses a duration such as `1s`, `1.5s` or `800ms` (a bare number is seconds), between
/// 10 ms and 60 s.
///
/// # Errors
///
/// A message naming the value, if it is not one of those forms or is out of range.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration between 10ms and 60s, such as 1s or 800ms");
    let (number, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else {
        (s.strip_suffix('s').unwrap_or(s), 1.0)
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let seconds = number.parse::<f64>().map_err(|_| bad())? * unit;
    let d = Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
    if d < PEER_TIMEOUT_RANGE.0 || d > PEER_TIMEOUT_RANGE.1 {
        return Err(bad());
    }
    Ok(d)
}

/// Parses a TCP port, 1 to 65535, in decimal digits only.
///
/// # Errors
///
/// A message naming the value, if it is not such a number.
pub fn parse_port(s: &str) -> Result<u16, String> {
    let bad = || format!("{s:?} is not a port from 1 to 65535");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

/// Parses `Z`, `+HH:MM` or `-HH:MM`.
///
/// # Errors
///
/// A message naming the value, if it is not one of those forms or is out of range.
pub fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    let bad = || format!("{s:?} is not a UTC offset such as +03:00, -05:00 or Z");
    if s == "Z" || s == "z" {
        return FixedOffset::east_opt(0).ok_or_else(bad);
    }
    let b = s.as_bytes();
    if b.len() != 6 || b[3] != b':' || !matches!(b[0], b'+' | b'-') {
        return Err(bad());
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i32> {
        let d = &s[r];
        if d.bytes().all(|c| c.is_ascii_digit()) {
            d.parse().ok()
        } else {
            None
        }
    };
    let (h, m) = (digits(1..3).ok_or_else(bad)?, digits(4..6).ok_or_else(bad)?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    let secs = (h * 3600 + m * 60) * if b[0] == b'-' { -1 } else { 1 };
    FixedOffset::east_opt(secs).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Command, UsageError> {
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        parse(args.iter().map(OsString::from), |k| env.get(k).cloned())
    }

    fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
        match run(args, env) {
            Ok(Command::Run(c)) => c,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = config(&[], &[]);
        assert_eq!(c, Config::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.file, PathBuf::from("data/visits.txt"));
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.utc_offset, None);
    }

    #[test]
    fn flags_beat_env_beats_defaults() {
        let env = [
            ("VISIT_LISTEN", "0.0.0.0:9000"),
            ("VISIT_FILE", "/env/visits.txt"),
            ("VISIT_TRUSTED_PROXIES", "10.0.0.1, 10.0.0.2"),
            ("VISIT_UTC_OFFSET", "-05:00"),
        ];
        let c = config(&[], &env);
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.file, PathBuf::from("/env/visits.txt"));
        assert_eq!(c.trusted_proxies.to_string(), "10.0.0.1,10.0.0.2");
        assert_eq!(c.utc_offset, FixedOffset::west_opt(5 * 3600));

        let c = config(
            &[
                "--listen",
                "[::]:8081",
                "--file=/flag/v.txt",
                "--trusted-proxy",
                "192.168.0.0/16",
                "--trusted-proxy=fd00::1,10.9.9.9",
                "--utc-offset",
                "Z",
            ],
            &env,
        );
        assert_eq!(c.listen.to_string(), "[::]:8081");
        assert_eq!(c.file, PathBuf::from("/flag/v.txt"));
        assert_eq!(
            c.trusted_proxies.to_string(),
            "192.168.0.0/16,fd00::1,10.9.9.9"
        );
        assert_eq!(c.utc_offset, FixedOffset::east_opt(0));
    }

    #[test]
    fn anonymize_is_a_switch() {
        assert!(!config(&[], &[]).anonymize);
        assert!(config(&["--anonymize"], &[]).anonymize);
        // The switch takes no value, so what follows it is the next flag.
        let c = config(&["--anonymize", "--listen", "0.0.0.0:1"], &[]);
        assert!(c.anonymize);
        assert_eq!(c.listen.to_string(), "0.0.0.0:1");
        for on in ["1", "true", "YES", "on"] {
            assert!(config(&[], &[("VISIT_ANONYMIZE", on)]).anonymize, "{on}");
        }
        for off in ["0", "false", "No", "off", ""] {
            assert!(!config(&[], &[("VISIT_ANONYMIZE", off)]).anonymize, "{off}");
        }
        // The flag wins over the variable.
        assert!(config(&["--anonymize"], &[("VISIT_ANONYMIZE", "0")]).anonymize);
        let err = |args: &[&str], env: &[(&str, &str)]| run(args, env).unwrap_err().0;
        assert_eq!(err(&["--anonymize=1"], &[]), "--anonymize takes no value");
        assert_eq!(
            err(&["--anonymize", "--anonymize"], &[]),
            "--anonymize given twice"
        );
        assert_eq!(
            err(&[], &[("VISIT_ANONYMIZE", "2")]),
            "VISIT_ANONYMIZE: \"2\" is not 1 or 0 (true/false, yes/no, on/off)"
        );
        assert!(err(&["--anonymize", "yes"], &[]).contains("unexpected argument \"yes\""));
        assert!(usage().contains("\n  --anonymize             record each address as its /24"));
    }

    #[test]
    fn cluster_options() {
        let c = config(&[], &[]);
        assert_eq!(
            (&c.name, &c.peers, &c.peer_dns, c.peer_timeout),
            (&None, &Vec::new(), &None, Duration::from_secs(1))
        );
        let env = [
            ("VISIT_NAME", "visit-server-1"),
            ("VISIT_PEERS", "10.0.0.1:8080, [fd00::2]:8080"),
            ("VISIT_PEER_DNS", "visit-server-headless:8080"),
            ("VISIT_PEER_TIMEOUT", "1.5s"),
        ];
        let c = config(&[], &env);
        assert_eq!(c.name.as_deref(), Some("visit-server-1"));
        let peers: Vec<String> = c.peers.iter().map(ToString::to_string).collect();
        assert_eq!(peers, ["10.0.0.1:8080", "[fd00::2]:8080"]);
        assert_eq!(
            c.peer_dns.map(|p| p.to_string()).as_deref(),
            Some("visit-server-headless:8080")
        );
        assert_eq!(c.peer_timeout, Duration::from_millis(1500));
        let c = config(
            &[
                "--name=a",
                "--peers",
                "b:1",
                "--peers=c:2,d:3",
                "--peer-timeout",
                "250ms",
            ],
            &env,
        );
        assert_eq!(c.name.as_deref(), Some("a"));
        assert_eq!(c.peers.len(), 3);
        assert_eq!(c.peer_timeout, Duration::from_millis(250));
        let many = (1..=peers::MAX_PEERS + 1)
            .map(|i| format!("10.0.0.{i}:80"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            run(&["--peers", &many], &[])
                .unwrap_err()
                .0
                .contains("at most")
        );
        for (args, want) in [
            (
                &["--name", "a b"][..],
                "--name: \"a b\" is not a replica name",
            ),
            (
                &["--peers", "10.0.0.1"],
                "--peers: \"10.0.0.1\" is not a host:port",
            ),
            (&["--peer-dns", "svc"], "--peer-dns: \"svc\" is not"),
            (
                &["--peer-timeout", "0"],
                "--peer-timeout: \"0\" is not a duration",
            ),
            (&["--peer-timeout", "61s"], "is not a duration"),
            (&["--peer-timeout", "1m"], "is not a duration"),
            (&["--peer-timeout", "-1s"], "is not a duration"),
        ] {
            let err = run(args, &[]).unwrap_err().0;
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn public_port() {
        assert_eq!(config(&[], &[]).public_port, None);
        let env = [("VISIT_PUBLIC_PORT", "8080")];
        assert_eq!(config(&[], &env).public_port, Some(8080));
        assert_eq!(
            config(&["--public-port", "9090"], &env).public_port,
            Some(9090)
        );
        assert_eq!(config(&["--public-port=1"], &[]).public_port, Some(1));
        assert_eq!(config(&[], &[("VISIT_PUBLIC_PORT", "")]).public_port, None);
        for bad in ["0", "65536", "-1", "+80", "80 ", "8o", ":8080", "0x50"] {
            let err = run(&["--public-port", bad], &[]).unwrap_err().0;
            assert!(
                err.starts_with("--public-port: ") && err.contains("is not a port"),
                "{bad:?}: {err}"
            );
            let err = run(&[], &[("VISIT_PUBLIC_PORT", bad)]).unwrap_err().0;
            assert!(err.starts_with("VISIT_PUBLIC_PORT: "), "{bad:?}: {err}");
        }
        assert!(
            run(&["--public-port", "1", "--public-port", "2"], &[])
                .unwrap_err()
                .0
                .contains("given twice")
        );
        assert_eq!(parse_port("65535"), Ok(65535));
        assert!(parse_port("").is_err());
    }

    #[test]
    fn lifetime_options() {
        let c = config(&[], &[]);
        assert_eq!((c.rotate_size, c.retain_size, c.retain_days), (0, 0, 0));
        let env = [
            ("VISIT_ROTATE_SIZE", "8MiB"),
            ("VISIT_RETAIN_SIZE", "192M"),
            ("VISIT_RETAIN_DAYS", "30"),
        ];
        let c = config(&[], &env);
        assert_eq!(
            (c.rotate_size, c.retain_size, c.retain_days),
            (8 << 20, 192 << 20, 30)
        );
        let c = config(
            &[
                "--rotate-size=4096",
                "--retain-size",
                "0",
                "--retain-days=0",
            ],
            &env,
        );
        assert_eq!((c.rotate_size, c.retain_size, c.retain_days), (4096, 0, 0));
        assert_eq!(config(&["--rotate-size", "0"], &[]).rotate_size, 0);
        for (args, want) in [
            (
                &["--rotate-size", "4095"][..],
                "below the smallest rotate size",
            ),
            (&["--rotate-size", "1K"], "below the smallest rotate size"),
            (
                &["--rotate-size", "8mb"],
                "--rotate-size: \"8mb\" is not a size",
            ),
            (
                &["--retain-size", "-1"],
                "--retain-size: \"-1\" is not a size",
            ),
            (
                &["--retain-days", "1.5"],
                "--retain-days: \"1.5\" is not a number",
            ),
            (&["--retain-days", "-1"], "is not a number of days"),
        ] {
            let err = run(args, &[]).unwrap_err().0;
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn read_token_file_is_a_path() {
        assert_eq!(config(&[], &[]).read_token_file, None);
        let env = [(
            "VISIT_READ_TOKEN_FILE",
            "/var/run/secrets/visit-server/token",
        )];
        assert_eq!(
            config(&[], &env).read_token_file,
            Some(PathBuf::from("/var/run/secrets/visit-server/token"))
        );
        assert_eq!(
            config(&["--read-token-file", "t"], &env).read_token_file,
            Some(PathBuf::from("t"))
        );
        // Empty in the environment is unset: reads stay open.
        assert_eq!(
            config(&[], &[("VISIT_READ_TOKEN_FILE", "")]).read_token_file,
            None
        );
        let err = |args: &[&str]| run(args, &[]).unwrap_err().0;
        assert_eq!(
            err(&["--read-token-file="]),
            "--read-token-file: the read token file path is empty"
        );
        assert_eq!(
            err(&["--read-token-file", "a", "--read-token-file", "b"]),
            "--read-token-file given twice"
        );
        assert_eq!(
            err(&["--read-token-file"]),
            "--read-token-file needs a value (PATH)"
        );
    }

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("0", 0),
            ("4096", 4096),
            ("4K", 4096),
            ("4KiB", 4096),
            ("8M", 8 << 20),
            ("8MiB", 8 << 20),
            ("1G", 1 << 30),
            ("16GiB", 16 << 30),
            ("007", 7),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in [
            "",
            "K",
            "1k",
            "1KB",
            "1 K",
            " 1K",
            "1K ",
            "1.5M",
            "+1",
            "-1",
            "1T",
            "1Ki",
            "1MIB",
            "18446744073709551616",
            "17179869184G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        for (text, ms) in [
            ("1s", 1000),
            ("2", 2000),
            ("0.5s", 500),
            ("800ms", 800),
            ("10ms", 10),
            ("60s", 60_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in [
            "", "s", "ms", "9ms", "60.1s", "1 s", "1e3ms", "nan", "inf", ".", "1.2.3s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_env_counts_as_unset() {
        assert_eq!(
            config(&[], &[("VISIT_LISTEN", ""), ("VISIT_FILE", "")]),
            Config::default()
        );
    }

    #[test]
    fn probe_takes_the_same_configuration() {
        let probe = run(&["--probe", "--listen", "0.0.0.0:9090"], &[]);
        let Ok(Command::Probe(c)) = probe else {
            panic!("--probe parsed as {probe:?}");
        };
        assert_eq!(c.listen.to_string(), "0.0.0.0:9090");
        let env = run(&["--probe"], &[("VISIT_LISTEN", "127.0.0.1:7070")]);
        assert!(matches!(env, Ok(Command::Probe(c)) if c.listen.to_string() == "127.0.0.1:7070"));
        assert!(run(&["--probe", "--bogus"], &[]).is_err());
    }

    #[test]
    fn help_and_version_win() {
        assert_eq!(run(&["--bogus", "--help"], &[]), Ok(Command::Help));
        assert_eq!(run(&["-h"], &[]), Ok(Command::Help));
        assert_eq!(run(&["-V"], &[]), Ok(Command::Version));
        assert_eq!(run(&["--version"], &[]), Ok(Command::Version));
    }

    #[test]
    fn bad_input_is_a_usage_error_naming_the_problem() {
        for (args, env, want) in [
            (&["--bogus"][..], &[][..], "unknown option --bogus"),
            (&["serve"], &[], "unexpected argument \"serve\""),
            (&["--listen"], &[], "--listen needs a value (ADDR)"),
            (
                &["--listen", "localhost"],
                &[],
                "--listen: \"localhost\" is not",
            ),
            (
                &["--listen", "1:1", "--listen", "2:2"],
                &[],
                "--listen given twice",
            ),
            (&["--file="], &[], "--file: the journal path is empty"),
            (
                &["--trusted-proxy", "10.0.0.0/40"],
                &[],
                "bad prefix length",
            ),
            (
                &["--utc-offset", "+3"],
                &[],
                "--utc-offset: \"+3\" is not a UTC offset",
            ),
            (
                &[],
                &[("VISIT_UTC_OFFSET", "+24:00")],
                "VISIT_UTC_OFFSET: \"+24:00\"",
            ),
            (
                &[],
                &[("VISIT_TRUSTED_PROXIES", "proxy")],
                "VISIT_TRUSTED_PROXIES: \"proxy\"",
            ),
        ] {
            let err = run(args, env).unwrap_err().0;
            assert!(err.contains(want), "{args:?} {env:?}: {err}");
        }
    }

    #[test]
    fn offsets() {
        assert_eq!(
            parse_offset("+03:00"),
            Ok(FixedOffset::east_opt(10800).unwrap())
        );
        assert_eq!(
            parse_offset("-09:30"),
            Ok(FixedOffset::west_opt(34200).unwrap())
        );
        assert_eq!(parse_offset("z"), Ok(FixedOffset::east_opt(0).unwrap()));
        for bad in [
            "",
            "03:00",
            "+0300",
            "+03:60",
            "+3:00",
            "+03:0a",
            "+-3:00",
            "+03:00:00",
        ] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_lists_every_option_and_its_env() {
        let u = usage();
        for o in OPTIONS {
            assert!(u.contains(o.flag) && u.contains(o.env), "{}", o.flag);
        }
        assert!(u.contains("--help") && u.contains("--version"));
    }
}
