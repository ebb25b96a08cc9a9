//! The cluster view's client side: who the peers are, which of them is this replica, and
//! asking them all at once within one deadline.
//!
//! # Peers
//!
//! `--peers host:port,...` lists peers by address (a name is looked up on each request and
//! its first address used); `--peer-dns NAME:PORT` names a headless Service, looked up on
//! each request, every address of which is a peer: in Kubernetes that is every pod of the
//! StatefulSet, ready or not. Both may be given; an address that appears twice is asked once.
//! A peer is reported by its `address` "as configured" (`--peers`) or "as resolved"
//! (`--peer-dns`, `10.244.0.17:8080`).
//!
//! # Recognising this replica
//!
//! The peer list usually includes this server itself (Kubernetes' DNS answer always does).
//! It is recognised **by address, before any request**: a peer address is this server if its
//! port is the port the server is bound to and its IP is the IP it listens on or, for a
//! wildcard listener (`0.0.0.0`, `[::]`), an address of this host. "An address of this host"
//! is tested by binding a UDP socket to it, which the kernel allows only for local addresses:
//! no interface list, no `unsafe`, and in a pod it is exactly the pod's own IP (and
//! loopback). That part of the answer is read from the local journal, never over HTTP, and
//! this replica's `address` in it is the peer address that matched.
//!
//! Behind a proxy in the same pod (CONTRACT.md section 8: nginx on the pod's port 8080,
//! this server on `127.0.0.1:8081`), peers know the server by the proxy's port, which is not
//! the one it is bound to. `--public-port 8080` says so: then a peer address whose port is
//! the public port and whose IP is an address of this host is this server too, as for a
//! wildcard listener (the proxy listens on every address). Without it, only the listening
//! address counts, and the pod would ask itself through its own proxy.
//!
//! A second net catches what addresses cannot (a peer listed both by name and by IP, or this
//! server reached through some other address): replicas are keyed by the name each answers
//! with in its `X-Visit-Replica` header, and a name already present (this replica's own
//! included) is dropped and logged (`fanout_duplicate_replica`), so no replica ever appears
//! twice. In a dual-stack cluster, where DNS gives each pod an IPv4 and an IPv6 address, that
//! is how each other pod is kept once (it is asked on both).
//!
//! # Bounds
//!
//! | what | bound |
//! |---|---|
//! | time | one deadline, `--peer-timeout` (default 1 s) after the request arrived, covers looking names up, connecting and reading every answer: a peer that is down, refuses, or accepts and never answers is reported missing by then |
//! | peers | at most [`MAX_PEERS`]; more (a large DNS answer) are reported missing as `too_many_peers` |
//! | threads | one per peer and fan-out, joined before the answer is built; name lookups ([`std::net::ToSocketAddrs`], which cannot be cancelled) run on their own threads, at most [`MAX_LOOKUPS`] at once |
//! | bytes | each answer is read up to a cap (the caller's, see [`crate::cluster`]); beyond it the peer is missing as `too_large` |
//! | headers | [`MAX_HEADER_BYTES`] of response headers per peer |
//!
//! Peers are asked with `scope=local` only, so a peer never fans out in turn: a cycle of
//! peers cannot loop, and asking never records a visit (only `GET /` does).
//!
//! The HTTP client is [`ureq`] (synchronous, no TLS): one [`ureq::Agent`] per server keeps
//! idle connections to peers for [`IDLE_AGE`], shorter than the server's own keep-alive
//! timeout, so a pooled connection is not reused just as the peer closes it. Proxy variables
//! in the environment are ignored: peers are pods next door.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::exposition::label;
use crate::json;

/// The most peers asked by one fan-out (and listed with `--peers`).
pub const MAX_PEERS: usize = 16;

/// `--peer-timeout` by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The most name lookups in progress at once, across requests. A lookup that outlives its
/// deadline keeps its thread until the resolver gives up; this keeps a slow DNS server from
/// piling them up.
pub const MAX_LOOKUPS: usize = 8;

/// The most bytes of response headers read from a peer.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// How long an idle connection to a peer is kept for reuse: less than the server's read
/// timeout (5 s), after which the peer closes it.
pub const IDLE_AGE: Duration = Duration::from_secs(2);

/// The longest replica name (a DNS name's limit).
pub const MAX_NAME_LEN: usize = 253;

/// The response header naming the replica that answered.
pub const REPLICA_HEADER: &str = "X-Visit-Replica";

/// Name lookups in progress (see [`MAX_LOOKUPS`]).
static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

/// Checks a replica name: 1 to 253 characters from `A-Z a-z 0-9 . _ : -`, as host and pod
/// names are. It appears in a response header and in text headings, so nothing else may.
///
/// # Errors
///
/// A message naming the value.
pub fn check_name(name: &str) -> Result<&str, String> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(ok) {
        return Err(format!(
            "{name:?} is not a replica name: 1 to {MAX_NAME_LEN} characters from A-Z a-z 0-9 . _ : -"
        ));
    }
    Ok(name)
}

/// The host name, for the default replica name: in Kubernetes, the pod's name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| check_name(s).is_ok())
        .unwrap_or_else(|| "visit-server".to_string())
}

/// A peer as configured: a host (a DNS name, or an IP address) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    host: String,
    port: u16,
}

impl PeerAddr {
    /// The socket address, if the host is an IP address.
    pub fn literal(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }
}

impl FromStr for PeerAddr {
    type Err = String;

    /// Parses `host:port`, `a.b.c.d:port` or `[v6]:port`.
    fn from_str(s: &str) -> Result<PeerAddr, String> {
        let bad = || {
            format!("{s:?} is not a host:port such as visit-server-1.visit-server-headless:8080")
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        let host = if let Some(v6) = host.strip_prefix('[') {
            let v6 = v6.strip_suffix(']').ok_or_else(bad)?;
            v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            v6.to_string()
        } else {
            let dns = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
            if host.is_empty() || host.len() > MAX_NAME_LEN || !host.bytes().all(dns) {
                return Err(bad());
            }
            host.to_string()
        };
        Ok(PeerAddr { host, port })
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

label! {
    /// The kind of a [`PeerError`]: the `error` field of a missing peer, and the `result`
    /// label of `visit_server_peer_answers_total`.
    pub enum ErrorKind {
        Timeout = "timeout",
        Refused = "refused",
        Dns = "dns",
        TooLarge = "too_large",
        Status = "status",
        BadResponse = "bad_response",
        TooManyPeers = "too_many_peers",
        Unauthorized = "unauthorized",
        Other = "other",
    }
}

/// Why a peer is missing from a cluster answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// No complete answer before the deadline (including a name lookup that took too long).
    Timeout,
    /// The connection was refused: nothing listens there (a pod that is down or starting).
    Refused,
    /// The name could not be looked up, or has no address.
    Dns(String),
    /// The answer was larger than the cap (bytes).
    TooLarge(u64),
    /// The peer answered with another status than 200.
    Status(u16),
    /// The answer is not what a visit-server sends.
    BadResponse(String),
    /// More peers than [`MAX_PEERS`]: this one was not asked.
    TooManyPeers,
    /// The peer answered 401: it does not take this replica's read token (during a rotation,
    /// one of the two has not seen the new token file yet).
    Unauthorized,
    /// Anything else (a reset connection, no thread to ask it).
    Other(String),
}

impl PeerError {
    /// The kind: the `error` field of a missing peer, and the metric label.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PeerError::Timeout => ErrorKind::Timeout,
            PeerError::Refused => ErrorKind::Refused,
            PeerError::Dns(_) => ErrorKind::Dns,
            PeerError::TooLarge(_) => ErrorKind::TooLarge,
            PeerError::Status(_) => ErrorKind::Status,
            PeerError::BadResponse(_) => ErrorKind::BadResponse,
            PeerError::TooManyPeers => ErrorKind::TooManyPeers,
            PeerError::Unauthorized => ErrorKind::Unauthorized,
            PeerError::Other(_) => ErrorKind::Other,
        }
    }

    /// A sentence for people: the `detail` field of a missing peer.
    pub fn detail(&self) -> String {
        match self {
            PeerError::Timeout => "no answer within the peer timeout".into(),
            PeerError::Refused => "connection refused".into(),
            PeerError::Dns(why) => format!("name lookup failed: {why}"),
            PeerError::TooLarge(n) => {
                format!("answer larger than {n} bytes; ask for fewer with ?limit=")
            }
            PeerError::Status(s) => format!("answered {s}"),
            PeerError::BadResponse(why) | PeerError::Other(why) => why.clone(),
            PeerError::TooManyPeers => format!("more than {MAX_PEERS} peers; not asked"),
            PeerError::Unauthorized => {
                "answered 401: it does not accept this replica's read token (are their token \
                 files the same?)"
                    .into()
            }
        }
    }

    fn of(e: ureq::Error) -> PeerError {
        match e {
            ureq::Error::Timeout(_) => PeerError::Timeout,
            ureq::Error::BodyExceedsLimit(n) => PeerError::TooLarge(n),
            ureq::Error::HostNotFound => PeerError::Dns("host not found".into()),
            ureq::Error::Io(e) => match e.kind() {
                std::io::ErrorKind::ConnectionRefused => PeerError::Refused,
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => PeerError::Timeout,
                _ => PeerError::Other(e.to_string()),
            },
            ureq::Error::Protocol(e) => PeerError::BadResponse(e.to_string()),
            e => PeerError::Other(e.to_string()),
        }
    }
}

/// A peer that is not part of the answer, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The peer as configured or resolved.
    pub address: String,
    /// Why.
    pub error: PeerError,
}

/// Writes `missing` as the JSON array of a cluster answer:
/// `[{"address": ..., "error": kind, "detail": ...}]`.
pub fn write_missing(out: &mut String, missing: &[Missing]) {
    let mut list = json::Array::new(out);
    for m in missing {
        list.object()
            .str("address", &m.address)
            .str("error", m.error.kind().as_str())
            .str("detail", &m.error.detail())
            .end();
    }
    list.end();
}

/// A peer to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The peer as configured or resolved, for the answer.
    pub address: String,
    /// Where to connect.
    pub addr: SocketAddr,
}

/// Who to ask for one fan-out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The other peers, each address once, at most [`MAX_PEERS`].
    pub targets: Vec<Target>,
    /// Peers that cannot be asked (lookup failed, too many).
    pub missing: Vec<Missing>,
    /// How the peer list names this server, if it does.
    pub own_address: Option<String>,
}

/// Looks up the peers and sets this server apart, by `deadline`.
///
/// `local` is the address the server is bound to; `public_port` the port peers reach it on
/// through a proxy of this host, if any (see [`is_self`]).
pub fn plan(
    peers: &[PeerAddr],
    dns: Option<&PeerAddr>,
    local: SocketAddr,
    public_port: Option<u16>,
    deadline: Instant,
) -> Plan {
    // Start every lookup first, so that they run side by side.
    let listed: Vec<(&PeerAddr, Lookup)> = peers.iter().map(|p| (p, Lookup::start(p))).collect();
    let service = dns.map(|d| (d, Lookup::start(d)));
    let mut candidates: Vec<(String, Result<SocketAddr, PeerError>, bool)> = Vec::new();
    for (peer, lookup) in listed {
        // A listed name stands for one peer: its first address, unless any address is ours.
        let found = lookup.wait(deadline);
        let own = found
            .as_ref()
            .is_ok_and(|addrs| addrs.iter().any(|a| is_self(*a, local, public_port)));
        let first = found.and_then(|addrs| {
            addrs
                .first()
                .copied()
                .ok_or_else(|| PeerError::Dns("no address".into()))
        });
        candidates.push((peer.to_string(), first, own));
    }
    if let Some((name, lookup)) = service {
        match lookup.wait(deadline) {
            Ok(addrs) => candidates.extend(addrs.into_iter().map(|a| {
                let own = is_self(a, local, public_port);
                (a.to_string(), Ok(a), own)
            })),
            Err(e) => candidates.push((name.to_string(), Err(e), false)),
        }
    }
    build_plan(candidates)
}

/// Sorts looked-up candidates `(address, where, is_self)` into a [`Plan`]: this server set
/// apart, each socket address asked once, at most [`MAX_PEERS`] asked.
fn build_plan(candidates: Vec<(String, Result<SocketAddr, PeerError>, bool)>) -> Plan {
    let mut plan = Plan::default();
    let mut seen: Vec<SocketAddr> = Vec::new();
    for (address, addr, own) in candidates {
        if own {
            plan.own_address.get_or_insert(address);
            continue;
        }
        match addr {
            Err(error) => plan.missing.push(Missing { address, error }),
            Ok(addr) if seen.contains(&addr) => {}
            Ok(addr) => {
                seen.push(addr);
                if plan.targets.len() < MAX_PEERS {
                    plan.targets.push(Target { address, addr });
                } else {
                    plan.missing.push(Missing {
                        address,
                        error: PeerError::TooManyPeers,
                    });
                }
            }
        }
    }
    plan
}

/// True if a connection to `addr` would reach this server, bound to `local`, or, with a
/// `public_port`, a proxy in front of it that listens on that port on every address of this
/// host.
pub fn is_self(addr: SocketAddr, local: SocketAddr, public_port: Option<u16>) -> bool {
    if public_port == Some(addr.port()) && is_local_ip(addr.ip().to_canonical()) {
        return true;
    }
    if addr.port() != local.port() {
        return false;
    }
    let (ip, listen) = (addr.ip().to_canonical(), local.ip().to_canonical());
    match listen {
        // `0.0.0.0` accepts IPv4 only; `[::]` accepts both.
        IpAddr::V4(any) if any.is_unspecified() => ip.is_ipv4() && is_local_ip(ip),
        IpAddr::V6(any) if any.is_unspecified() => is_local_ip(ip),
        _ => ip == listen,
    }
}

/// True if `ip` is an address of this host: the kernel lets a socket bind only to those.
fn is_local_ip(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// A name lookup under way (or done at once, for an IP address).
enum Lookup {
    Done(Result<Vec<SocketAddr>, PeerError>),
    Pending(mpsc::Receiver<std::io::Result<Vec<SocketAddr>>>),
}

impl Lookup {
    fn start(peer: &PeerAddr) -> Lookup {
        if let Some(addr) = peer.literal() {
            return Lookup::Done(Ok(vec![addr]));
        }
        if LOOKUPS.fetch_add(1, Relaxed) >= MAX_LOOKUPS {
            LOOKUPS.fetch_sub(1, Relaxed);
            return Lookup::Done(Err(PeerError::Dns("too many lookups in progress".into())));
        }
        let (tx, rx) = mpsc::channel();
        let query = peer.to_string();
        let spawned = thread::Builder::new()
            .name("peer-lookup".into())
            .spawn(move || {
                let found = query.to_socket_addrs().map(Iterator::collect);
                LOOKUPS.fetch_sub(1, Relaxed);
                // The requester may have given up waiting: nothing to do then.
                let _ = tx.send(found);
            });
        match spawned {
            Ok(_) => Lookup::Pending(rx),
            Err(e) => {
                LOOKUPS.fetch_sub(1, Relaxed);
                Lookup::Done(Err(PeerError::Other(format!("cannot start a lookup: {e}"))))
            }
        }
    }

    fn wait(self, deadline: Instant) -> Result<Vec<SocketAddr>, PeerError> {
        match self {
            Lookup::Done(found) => found,
            Lookup::Pending(rx) => {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(Ok(addrs)) if addrs.is_empty() => Err(PeerError::Dns("no address".into())),
                    Ok(Ok(addrs)) => Ok(addrs),
                    Ok(Err(e)) => Err(PeerError::Dns(e.to_string())),
                    Err(mpsc::RecvTimeoutError::Timeout) => Err(PeerError::Timeout),
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        Err(PeerError::Other("the lookup thread died".into()))
                    }
                }
            }
        }
    }
}

/// The HTTP client for peers; see the module docs.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .user_agent(concat!(
            "visit-server/",
            env!("CARGO_PKG_VERSION"),
            " (cluster view)"
        ))
        .max_response_header_size(MAX_HEADER_BYTES)
        .input_buffer_size(16 * 1024)
        .output_buffer_size(4 * 1024)
        .max_idle_age(IDLE_AGE)
        .max_idle_connections(2 * MAX_PEERS)
        .max_idle_connections_per_host(4)
        .build()
        .new_agent()
}

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The name in its `X-Visit-Replica` header.
    pub name: String,
    /// The body, at most the cap.
    pub body: Vec<u8>,
}

/// Asks every target for `path_and_query` at once, each on its own thread, and waits for
/// all of them, which `deadline` bounds. Answers come back in the order of `targets`.
///
/// `authorization`, if any, is sent as the `Authorization` header (`Bearer <token>`: this
/// replica's first read token); a peer that answers 401 is [`PeerError::Unauthorized`].
/// `while_waiting` runs on the calling thread meanwhile (the local part of the answer).
pub fn ask_all<L>(
    agent: &ureq::Agent,
    targets: &[Target],
    path_and_query: &str,
    authorization: Option<&str>,
    deadline: Instant,
    max_bytes: u64,
    while_waiting: impl FnOnce() -> L,
) -> (Vec<Result<Answer, PeerError>>, L) {
    thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| {
                thread::Builder::new()
                    .name("peer-ask".into())
                    .spawn_scoped(scope, move || {
                        ask(
                            agent,
                            t.addr,
                            path_and_query,
                            authorization,
                            deadline,
                            max_bytes,
                        )
                    })
            })
            .collect();
        let local = while_waiting();
        let answers = handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(PeerError::Other("the asking thread panicked".into()))),
                Err(e) => Err(PeerError::Other(format!("cannot start a thread: {e}"))),
            })
            .collect();
        (answers, local)
    })
}

/// Asks one peer.
fn ask(
    agent: &ureq::Agent,
    addr: SocketAddr,
    path_and_query: &str,
    authorization: Option<&str>,
    deadline: Instant,
    max_bytes: u64,
) -> Result<Answer, PeerError> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(PeerError::Timeout);
    }
    let mut request = agent.get(format!("http://{addr}{path_and_query}"));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let mut response = request
        .config()
        .timeout_global(Some(remaining))
        .build()
        .call()
        .map_err(PeerError::of)?;
    let status = response.status().as_u16();
    if status == 401 {
        return Err(PeerError::Unauthorized);
    }
    if status != 200 {
        return Err(PeerError::Status(status));
    }
    let name = response
        .headers()
        .get(REPLICA_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| PeerError::BadResponse(format!("no {REPLICA_HEADER} header")))?;
    let name = check_name(name)
        .map_err(|_| PeerError::BadResponse(format!("bad {REPLICA_HEADER} header")))?
        .to_string();
    let body = response
        .body_mut()
        .with_config()
        .limit(max_bytes)
        .read_to_vec()
        .map_err(PeerError::of)?;
    Ok(Answer { name, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn missing_peers_render_as_json() {
        let mut out = String::new();
        write_missing(
            &mut out,
            &[
                Missing {
                    address: "10.0.0.1:8080".into(),
                    error: PeerError::Timeout,
                },
                Missing {
                    address: "x:1".into(),
                    error: PeerError::Dns("no \"such\" host".into()),
                },
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["address"], "10.0.0.1:8080");
        assert_eq!(v[0]["error"], "timeout");
        assert_eq!(v[1]["error"], "dns");
        assert_eq!(v[1]["detail"], "name lookup failed: no \"such\" host");
        let mut out = String::new();
        write_missing(&mut out, &[]);
        assert_eq!(out, "[]");
    }

    #[test]
    fn peer_addresses_parse_and_print_back() {
        for ok in [
            "visit-server-1.visit-server-headless:8080",
            "10.0.0.7:8080",
            "[fd00::7]:8080",
            "localhost:1",
        ] {
            assert_eq!(ok.parse::<PeerAddr>().unwrap().to_string(), ok);
        }
        assert_eq!(
            "[::1]:80".parse::<PeerAddr>().unwrap().literal(),
            Some(addr("[::1]:80"))
        );
        assert_eq!("a.b:80".parse::<PeerAddr>().unwrap().literal(), None);
        for bad in [
            "",
            "host",
            ":80",
            "host:",
            "host:0",
            "host:65536",
            "host:+80",
            "fd00::7:8080",
            "[fd00::7:8080",
            "[nope]:80",
            "a b:80",
            "http://a:80",
            "a/b:80",
        ] {
            assert!(bad.parse::<PeerAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn replica_names_are_header_safe() {
        assert!(check_name("visit-server-0").is_ok());
        assert!(check_name("a.b_c:d").is_ok());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        for bad in [
            "",
            "a b",
            "a\nb",
            "é",
            "a\"b",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&host_name()).is_ok());
    }

    #[test]
    fn self_is_the_bound_port_on_a_local_address() {
        let local = addr("127.0.0.1:8081");
        assert!(is_self(addr("127.0.0.1:8081"), local, None));
        assert!(!is_self(addr("127.0.0.1:8082"), local, None));
        // Bound to one address: another loopback address is not this server.
        assert!(!is_self(addr("127.0.0.2:8081"), local, None));
        // A wildcard listener is every local address on its port (a pod's own IP).
        let any = addr("0.0.0.0:8080");
        assert!(is_self(addr("127.0.0.1:8080"), any, None));
        assert!(is_self(addr("127.0.0.9:8080"), any, None));
        assert!(!is_self(addr("127.0.0.1:8081"), any, None));
        // 192.0.2.0/24 is documentation space: never an address of this host.
        assert!(!is_self(addr("192.0.2.1:8080"), any, None));
        assert!(!is_self(addr("[::1]:8080"), any, None));
        assert!(is_self(addr("[::ffff:127.0.0.1]:8080"), any, None));
        assert!(is_self(addr("127.0.0.1:8080"), addr("[::]:8080"), None));
    }

    #[test]
    fn behind_a_proxy_self_is_the_public_port_on_any_local_address() {
        // A pod's layout: the proxy on 8080 (every address), the server on 127.0.0.1:8081.
        let local = addr("127.0.0.1:8081");
        let public = Some(8080);
        // What peers know this pod by (its own IP stands in as a loopback address here).
        assert!(!is_self(addr("127.0.0.1:8080"), local, None));
        assert!(is_self(addr("127.0.0.1:8080"), local, public));
        assert!(is_self(addr("127.0.0.7:8080"), local, public));
        assert!(is_self(addr("[::ffff:127.0.0.1]:8080"), local, public));
        // Another pod on the same port, or this host on another port, is not.
        assert!(!is_self(addr("192.0.2.1:8080"), local, public));
        assert!(!is_self(addr("[2001:db8::1]:8080"), local, public));
        assert!(!is_self(addr("127.0.0.1:8082"), local, public));
        // The listening address itself still is; another address on its port still is not.
        assert!(is_self(addr("127.0.0.1:8081"), local, public));
        assert!(!is_self(addr("127.0.0.2:8081"), local, public));
        // A wildcard listener keeps its own port besides the public one.
        let any = addr("0.0.0.0:8081");
        assert!(is_self(addr("127.0.0.3:8081"), any, public));
        assert!(is_self(addr("127.0.0.3:8080"), any, public));
        assert!(!is_self(addr("192.0.2.1:8081"), any, public));
        // A plan names this replica by the peer address that matched, and asks the rest.
        let deadline = Instant::now() + Duration::from_secs(10);
        let peers: Vec<PeerAddr> = ["127.0.0.1:8080", "192.0.2.1:8080"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let got = plan(&peers, None, local, public, deadline);
        assert_eq!(got.own_address.as_deref(), Some("127.0.0.1:8080"));
        let asked: Vec<&str> = got.targets.iter().map(|t| t.address.as_str()).collect();
        assert_eq!(asked, ["192.0.2.1:8080"]);
        let got = plan(&peers, None, local, None, deadline);
        assert_eq!(got.own_address, None);
        assert_eq!(got.targets.len(), 2);
    }

    #[test]
    fn a_plan_sets_self_apart_asks_each_address_once_and_caps_the_count() {
        let c = |a: &str, own: bool| (a.to_string(), Ok(addr(a)), own);
        let plan = build_plan(vec![
            c("127.0.0.1:1", false),
            c("127.0.0.1:2", true),
            c("127.0.0.1:1", false),
            ("peer.example:3".into(), Err(PeerError::Timeout), false),
            c("127.0.0.1:3", false),
            c("127.0.0.1:2", true),
        ]);
        assert_eq!(plan.own_address.as_deref(), Some("127.0.0.1:2"));
        let asked: Vec<&str> = plan.targets.iter().map(|t| t.address.as_str()).collect();
        assert_eq!(asked, ["127.0.0.1:1", "127.0.0.1:3"]);
        assert_eq!(
            plan.missing,
            [Missing {
                address: "peer.example:3".into(),
                error: PeerError::Timeout
            }]
        );

        let many: Vec<_> = (1..=MAX_PEERS as u16 + 2)
            .map(|p| c(&format!("10.0.0.1:{p}"), false))
            .collect();
        let plan = build_plan(many);
        assert_eq!(plan.targets.len(), MAX_PEERS);
        assert_eq!(plan.missing.len(), 2);
        assert!(
            plan.missing
                .iter()
                .all(|m| m.error == PeerError::TooManyPeers)
        );
        assert_eq!(plan.own_address, None);
    }

    #[test]
    fn a_plan_looks_up_names_and_finds_self_among_them() {
        let deadline = Instant::now() + Duration::from_secs(10);
        let peers: Vec<PeerAddr> = ["127.0.0.1:9001", "127.0.0.1:9002"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let got = plan(&peers, None, addr("127.0.0.1:9002"), None, deadline);
        assert_eq!(got.own_address.as_deref(), Some("127.0.0.1:9002"));
        assert_eq!(got.targets.len(), 1);
        // `localhost` resolves on any machine; its addresses are this host's.
        let dns: PeerAddr = "localhost:9003".parse().unwrap();
        let got = plan(&[], Some(&dns), addr("0.0.0.0:9003"), None, deadline);
        assert!(got.targets.iter().all(|t| t.addr.is_ipv6()), "{got:?}");
        assert!(got.own_address.is_some(), "{got:?}");
        // A name that does not resolve is missing, with the name as configured.
        let nowhere: PeerAddr = "nowhere.invalid:80".parse().unwrap();
        let got = plan(&[nowhere], None, addr("127.0.0.1:1"), None, deadline);
        assert_eq!(got.missing.len(), 1, "{got:?}");
        assert_eq!(got.missing[0].address, "nowhere.invalid:80");
        assert!(
            matches!(got.missing[0].error, PeerError::Dns(_) | PeerError::Timeout),
            "{got:?}"
        );
    }
}
