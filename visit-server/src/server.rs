//! The listener, the worker pool and the shutdown sequence around tiny_http.
//!
//! # How a request flows
//!
//! tiny_http runs an accept thread and one thread per connection; those threads parse
//! requests and push them into one queue. [`Limits::workers`] fixed worker threads take them
//! from the queue (`recv_timeout`, so they notice the stop flag), call
//! [`routes::handle`], and write the reply. All workers share one [`Journal`], so concurrent
//! `GET /` share an fsync.
//!
//! # What is bounded, and how
//!
//! | resource | bound |
//! |---|---|
//! | threads doing work (appends, `/visits`) | [`Limits::workers`] (64); `/visits`, `/stats` and cluster views hold at most [`MAX_STREAMS`] (16) of them, cluster views at most [`MAX_FANOUTS`] (4) |
//! | an idle or stalled connection | [`Limits::read_timeout`] (5 s) per read: tiny_http sees an error and closes it silently |
//! | a client that does not read its response | [`Limits::write_timeout`] (10 s) per write |
//! | headers that reach a handler | [`MAX_HEADER_BYTES`] (16 KiB), else 431 and close |
//! | request bodies | none is read: `Transfer-Encoding`, bodies on GET/HEAD, conflicting lengths get 400 and close |
//! | the journal lock | 2 s, then 503 |
//!
//! The socket timeouts are set on the listening socket, and Linux copies them to every
//! accepted socket (tiny_http gives no access to accepted sockets).
//!
//! # The ticker: two tiny_http 0.12 bugs worked around
//!
//! A *ticker* thread opens [`RESCUE_BURST`] connections to the server every [`Limits::tick`]
//! (100 ms) and resets each at once. tiny_http reads nothing from them and drops them. They
//! work around two faults that otherwise take the server down or starve it:
//!
//! - **`accept` times out.** `SO_RCVTIMEO` on a listening socket also makes `accept` fail
//!   with `EAGAIN` after that long without a new connection, and tiny_http's accept thread
//!   quits on its first accept error: the server would stop accepting after 5 quiet seconds.
//!   With a connection every tick, `accept` never waits that long. (The
//!   `slow_and_idle_clients_are_cut_off_and_others_are_served` test guards this.)
//! - **Connections starve in tiny_http's thread pool.** `TaskPool::spawn` queues a new
//!   connection instead of starting a thread when it *believes* a thread is idle, but its idle
//!   count is only updated once a woken thread runs. When connections arrive in a burst (wrk
//!   opening 64 at once, an ingress filling its pool), most of them are queued behind threads
//!   that serve long-lived keep-alive connections, and a queued connection only runs when some
//!   later connection makes the pool start a thread, which takes one queued connection once
//!   its own ends. Measured here: 55 to 60 of 64 connections left unserved for seconds. Each
//!   ticker connection that finds no idle thread starts one, which ends at once and then
//!   serves one starved connection: up to 160 rescued per second. (The
//!   `a_burst_of_connections_is_served_promptly` test guards this.)
//!
//! The cost is about 1% of one core on an idle server (160 connection setups a second), and
//! a few idle pool threads. The right fix is in tiny_http (or a fork of it), not here.
//!
//! # What stays unbounded (tiny_http 0.12)
//!
//! - **Connections.** tiny_http spawns a thread per connection with no limit and offers no
//!   hook to refuse one. Each costs a parked thread and two file descriptors while it lives;
//!   the read timeout ends idle ones within 5 s, but a client that sends a byte every few
//!   seconds keeps its connection (and thread) alive.
//! - **Header size and time.** tiny_http reads a request's header into memory with no size
//!   limit and no overall deadline (only the per-read timeout), before we see it.
//! - **`HTTP/2.0` request lines leak.** For a request line with version 2.0 or 3.0, tiny_http
//!   writes its own 505 through the connection's next writer while the request holding the
//!   current one is alive, and waits forever: one thread and two descriptors leak per such
//!   connection. The request never reaches us. An HTTP proxy never forwards such a line.
//!   (Pinned by `fixme_an_http2_request_line_hangs_only_its_own_connection`.)
//!
//! None of these reaches the workers or the journal: slow or huge headers pin only their own
//! connection thread. Running out of file descriptors makes tiny_http's accept thread quit;
//! the workers see the error, the process exits non-zero and Kubernetes restarts it, and the
//! journal's guarantees make that safe. For internet-facing use, put the Service behind an
//! ingress or proxy that enforces header limits, header timeouts and connection limits.
//!
//! # Refused requests close their connection
//!
//! tiny_http drops the `Connection` header from responses and keeps reading a connection
//! after any response, so a refused request's unread body would be parsed as the next
//! request: a request smuggled past a proxy in a body would be served, with the proxy's
//! trusted `X-Forwarded-For`. Refusals are therefore written by hand with `Connection: close`,
//! and the connection is *condemned*: for [`CONDEMNED_FOR`], every further request from the
//! same peer address and port (that is, the same connection) gets 400 and close, and is never
//! handled. Workers take requests from the queue under one *intake* lock and mark a
//! connection before releasing it, so the next request of a condemned connection cannot
//! slip past on another worker.

use std::collections::HashMap;
use std::io::{self, Cursor, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

use crate::app::App;
use crate::log::{self, Value};
use crate::routes::{self, Body, Reply, RequestInfo};
use crate::shutdown::{self, Signals};

#[cfg(doc)]
use crate::{
    app::{MAX_FANOUTS, MAX_STREAMS},
    routes::MAX_HEADER_BYTES,
};
#[cfg(doc)]
use visit_journal::Journal;

/// How many connections the ticker opens and resets each tick; see the module docs.
pub const RESCUE_BURST: usize = 16;

/// How long a worker waits on the queue before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(100);

/// How long a condemned connection's further requests are refused.
pub const CONDEMNED_FOR: Duration = Duration::from_secs(30);

/// At most this many condemned connections are remembered (the oldest are forgotten first).
const MAX_CONDEMNED: usize = 4096;

/// The `Server` header.
const SERVER: &str = concat!("visit-server/", env!("CARGO_PKG_VERSION"));

/// Sizes and timeouts of the server. [`Limits::default`] is what the binary uses.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Worker threads. Each `GET /` holds one for its append (write + fsync), so this is
    /// also how many appends can share one fsync.
    pub workers: usize,
    /// Per-read timeout of every connection: idle keep-alive and stalled clients are closed
    /// after this long without a byte.
    pub read_timeout: Duration,
    /// Per-write timeout of every connection: a client that stops reading its response is
    /// dropped after this long.
    pub write_timeout: Duration,
    /// The listen backlog.
    pub backlog: i32,
    /// How often the ticker connects (see the module docs): well under `read_timeout`, and
    /// short enough that a connection starved by tiny_http's pool is rescued promptly.
    pub tick: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            workers: 64,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            backlog: 1024,
            tick: Duration::from_millis(100),
        }
    }
}

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped by a signal after draining: exit 0.
    Stopped,
    /// The listener failed: exit non-zero so that the pod is restarted.
    Failed,
}

/// Binds the listening socket, with the per-connection timeouts that accepted sockets
/// inherit, `TCP_NODELAY` (replies are one write each; no Nagle delay) and `SO_REUSEADDR` (a
/// restart must not wait for old connections in `TIME_WAIT`). `[::]` accepts IPv4 too.
///
/// # Errors
///
/// The socket cannot be created, configured or bound (address in use, permission denied).
pub fn bind(addr: SocketAddr, limits: &Limits) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_read_timeout(Some(limits.read_timeout))?;
    socket.set_write_timeout(Some(limits.write_timeout))?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(limits.backlog)?;
    Ok(socket.into())
}

/// Serves on `listener` until `signals` fires (then drains and returns
/// [`Outcome::Stopped`]) or the listener fails ([`Outcome::Failed`]).
///
/// The shutdown sequence: `/readyz` turns 503 at once; requests are still served for
/// [`shutdown::GRACE`] so load balancers can take the pod out; then the workers finish the
/// request in hand and stop (waiting at most [`shutdown::JOIN_DEADLINE`]), and the listener
/// closes. Every acknowledged visit is already on disk, so nothing remains to flush.
pub fn run(listener: TcpListener, app: Arc<App>, limits: &Limits, signals: &Signals) -> Outcome {
    let local = listener.local_addr().ok();
    if let Some(addr) = local {
        app.set_bound(addr);
    }
    let server = match Server::from_listener(listener, None) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log::error("listen_failed", &[("cause", Value::Display(&e))]);
            return Outcome::Failed;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let intake = Arc::new(Mutex::new(Intake::default()));

    let mut threads: Vec<JoinHandle<()>> = Vec::with_capacity(limits.workers + 1);
    for i in 0..limits.workers {
        let (server, app, intake, flag) = (
            Arc::clone(&server),
            Arc::clone(&app),
            Arc::clone(&intake),
            Arc::clone(&stop),
        );
        let spawned = thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker(&server, &app, &intake, &flag));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                log::error("worker_spawn_failed", &[("cause", Value::Display(&e))]);
                stop.store(true, SeqCst);
                shutdown::join_all(threads, shutdown::JOIN_DEADLINE);
                return Outcome::Failed;
            }
        }
    }
    if let Some(addr) = local {
        let (stop, every) = (Arc::clone(&stop), limits.tick);
        match thread::Builder::new()
            .name("ticker".into())
            .spawn(move || ticker(&loopback_for(addr), &stop, every))
        {
            Ok(t) => threads.push(t),
            Err(e) => log::error("ticker_spawn_failed", &[("cause", Value::Display(&e))]),
        }
    }
    let shown = local.map_or_else(|| "?".to_string(), |a| a.to_string());
    log::info(
        "listening",
        &[
            ("addr", Value::Str(&shown)),
            ("workers", (limits.workers as u64).into()),
            (
                "read_timeout_ms",
                (limits.read_timeout.as_millis() as u64).into(),
            ),
            (
                "write_timeout_ms",
                (limits.write_timeout.as_millis() as u64).into(),
            ),
        ],
    );

    signals.wait(|| app.is_fatal());
    if app.is_fatal() {
        stop.store(true, SeqCst);
        shutdown::join_all(threads, shutdown::JOIN_DEADLINE);
        return Outcome::Failed;
    }

    app.start_draining();
    log::info(
        "draining",
        &[("grace_ms", (shutdown::GRACE.as_millis() as u64).into())],
    );
    shutdown::sleep_unless(shutdown::GRACE, || app.is_fatal());
    stop.store(true, SeqCst);
    let unfinished = shutdown::join_all(threads, shutdown::JOIN_DEADLINE);
    drop(server);
    log::info(
        "stopped",
        &[
            ("visits_recorded", app.metrics.visits().into()),
            ("unfinished_threads", (unfinished as u64).into()),
        ],
    );
    if app.is_fatal() {
        Outcome::Failed
    } else {
        Outcome::Stopped
    }
}

/// The state workers share while taking requests off the queue; see the module docs.
#[derive(Debug, Default)]
struct Intake {
    /// Condemned connections (by peer address and port) and when they were condemned.
    condemned: HashMap<SocketAddr, Instant>,
}

/// What to do with a request taken off the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Serve,
    /// It came on a condemned connection: refuse and close.
    Refuse,
}

impl Intake {
    fn admit(&mut self, rq: &RequestInfo<'_>, now: Instant) -> Verdict {
        let Some(peer) = rq.peer else {
            return Verdict::Serve;
        };
        if let Some(&since) = self.condemned.get(&peer) {
            if now.duration_since(since) < CONDEMNED_FOR {
                return Verdict::Refuse;
            }
            self.condemned.remove(&peer);
        }
        if routes::must_close(rq) {
            self.condemn(peer, now);
        }
        Verdict::Serve
    }

    fn condemn(&mut self, peer: SocketAddr, now: Instant) {
        if self.condemned.len() >= MAX_CONDEMNED {
            self.condemned
                .retain(|_, since| now.duration_since(*since) < CONDEMNED_FOR);
        }
        if self.condemned.len() >= MAX_CONDEMNED {
            let oldest = self
                .condemned
                .iter()
                .min_by_key(|(_, since)| **since)
                .map(|(p, _)| *p);
            if let Some(p) = oldest {
                self.condemned.remove(&p);
            }
        }
        self.condemned.insert(peer, now);
    }
}

fn worker(server: &Server, app: &Arc<App>, intake: &Mutex<Intake>, stop: &AtomicBool) {
    loop {
        let (rq, verdict) = {
            let mut intake = intake.lock().unwrap_or_else(PoisonError::into_inner);
            if stop.load(SeqCst) {
                return;
            }
            match server.recv_timeout(POLL) {
                Ok(None) => continue,
                Ok(Some(rq)) => {
                    let verdict = intake.admit(&RequestInfo::of(&rq), Instant::now());
                    (rq, verdict)
                }
                Err(e) => {
                    // tiny_http's accept thread reports its first accept error and quits: no
                    // new connection will ever come. Exit so that the pod is restarted.
                    log::error("accept_failed", &[("cause", Value::Display(&e))]);
                    app.set_fatal();
                    stop.store(true, SeqCst);
                    return;
                }
            }
        };
        // A bug in a handler must cost one request (tiny_http answers 500 when the request
        // is dropped while unwinding), not a worker.
        if panic::catch_unwind(AssertUnwindSafe(|| serve(app, rq, verdict))).is_err() {
            log::error("handler_panicked", &[]);
        }
    }
}

/// Handles one request, writes the reply, counts and logs it.
fn serve(app: &Arc<App>, rq: Request, verdict: Verdict) {
    let started = Instant::now();
    let reply = match verdict {
        Verdict::Serve => routes::handle(app, &RequestInfo::of(&rq)),
        Verdict::Refuse => {
            let mut r = Reply::text(400, "this connection is closed after a refused request\n");
            r.close = true;
            r
        }
    };
    let (status, close, recorded) = (reply.status, reply.close, reply.recorded);
    let method = rq.method().as_str().to_string();
    let path = log::clip(rq.url(), 512).to_string();
    let peer = rq.remote_addr().copied();
    let written = if close {
        write_closing(rq, reply)
    } else {
        rq.respond(response(reply))
    };
    app.metrics.request(status);

    let duration_us = started.elapsed().as_micros() as u64;
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    let recorded = recorded.map(|ip| ip.to_string());
    let error = written.err().map(|e| e.to_string());
    let mut fields: Vec<(&str, Value<'_>)> = vec![
        ("method", Value::Str(&method)),
        ("path", Value::Str(&path)),
        ("status", u64::from(status).into()),
        ("duration_us", duration_us.into()),
        ("peer", Value::Str(&peer)),
    ];
    if let Some(ip) = &recorded {
        fields.push(("client", Value::Str(ip)));
    }
    if close {
        fields.push(("close", true.into()));
    }
    if let Some(e) = &error {
        fields.push(("write_error", Value::Str(e)));
    }
    log::info("request", &fields);
}

/// A tiny_http response for a reply that keeps the connection open.
fn response(reply: Reply) -> Response<Box<dyn Read + Send>> {
    let mut headers: Vec<Header> = reply
        .headers
        .iter()
        .map(|(name, value)| header(name, value))
        .collect();
    headers.push(header("Server", SERVER));
    let status = StatusCode(reply.status);
    match reply.body {
        Body::Text(s) => {
            let len = s.len();
            Response::new(
                status,
                headers,
                Box::new(Cursor::new(s.into_bytes())),
                Some(len),
                None,
            )
        }
        // No length: tiny_http sends it chunked, reading the body as it goes.
        Body::Stream(r) => Response::new(status, headers, r, None, None),
    }
}

fn header(name: &str, value: &str) -> Header {
    // Names and values are this crate's constants, numbers and content types: ASCII.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("response headers are ASCII")
}

/// Writes a reply with `Connection: close` by hand (tiny_http strips that header), on the
/// raw writer of the request.
fn write_closing(rq: Request, reply: Reply) -> io::Result<()> {
    let head = *rq.method() == Method::Head;
    let status = reply.status;
    let headers = reply.headers.clone();
    // Closing replies are short texts (refusals, 404/405).
    let body = reply.into_bytes()?;
    let mut out = Vec::with_capacity(256 + body.len());
    write!(
        out,
        "HTTP/1.1 {status} {}\r\n",
        StatusCode(status).default_reason_phrase()
    )?;
    for (name, value) in &headers {
        write!(out, "{name}: {value}\r\n")?;
    }
    write!(
        out,
        "Server: {SERVER}\r\nDate: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
        body.len()
    )?;
    if !head {
        out.extend_from_slice(&body);
    }
    let mut w = rq.into_writer();
    match w.write_all(&out).and_then(|()| w.flush()) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// The addresses the ticker connects to, in order of preference: the listening address, or
/// loopback if it listens on all interfaces. `[::]` also accepts IPv4, which matters where
/// IPv6 loopback is disabled: without a working target, `accept` would time out.
fn loopback_for(addr: SocketAddr) -> Vec<SocketAddr> {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => vec![(Ipv4Addr::LOCALHOST, addr.port()).into()],
        IpAddr::V6(ip) if ip.is_unspecified() => vec![
            (Ipv6Addr::LOCALHOST, addr.port()).into(),
            (Ipv4Addr::LOCALHOST, addr.port()).into(),
        ],
        _ => vec![addr],
    }
}

/// Every `every`, opens [`RESCUE_BURST`] connections to the server and resets them at once
/// (see the module docs for why). A reset (`SO_LINGER` 0) rather than a close leaves no
/// `TIME_WAIT` socket behind: 160 a second would otherwise pile up thousands.
fn ticker(targets: &[SocketAddr], stop: &AtomicBool, every: Duration) {
    // The target that worked last; on failure the next one is tried.
    let mut current = 0;
    let mut warned = false;
    while !stop.load(SeqCst) {
        shutdown::sleep_unless(every, || stop.load(SeqCst));
        for _ in 0..RESCUE_BURST {
            if stop.load(SeqCst) {
                return;
            }
            let target = targets[current % targets.len()];
            match TcpStream::connect_timeout(&target, every) {
                Ok(s) => {
                    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                }
                Err(e) => {
                    current += 1;
                    if !warned {
                        warned = true;
                        log::warn(
                            "ticker_connect_failed",
                            &[
                                ("addr", Value::Display(&target)),
                                ("cause", Value::Display(&e)),
                            ],
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intake_refuses_a_condemned_connection_until_it_expires() {
        let mut intake = Intake::default();
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let other: SocketAddr = "10.0.0.1:5001".parse().unwrap();
        let te = [Header::from_bytes(&b"Transfer-Encoding"[..], &b"chunked"[..]).unwrap()];
        let rq = |peer, headers| RequestInfo {
            method: &Method::Get,
            url: "/",
            http_version: (1, 1),
            peer: Some(peer),
            headers,
        };
        let t0 = Instant::now();
        assert_eq!(intake.admit(&rq(peer, &[]), t0), Verdict::Serve);
        // The bad request itself is served (with its 400), and condemns its connection.
        assert_eq!(intake.admit(&rq(peer, &te), t0), Verdict::Serve);
        assert_eq!(intake.admit(&rq(peer, &[]), t0), Verdict::Refuse);
        assert_eq!(intake.admit(&rq(other, &[]), t0), Verdict::Serve);
        let later = t0 + CONDEMNED_FOR;
        assert_eq!(intake.admit(&rq(peer, &[]), later), Verdict::Serve);
        assert!(intake.condemned.is_empty());
    }

    #[test]
    fn intake_forgets_the_oldest_when_full() {
        let mut intake = Intake::default();
        let t0 = Instant::now();
        for i in 0..MAX_CONDEMNED + 10 {
            let peer = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1));
            intake.condemn(peer, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(intake.condemned.len(), MAX_CONDEMNED);
        assert!(
            !intake
                .condemned
                .contains_key(&SocketAddr::from(([10, 0, 0, 0], 1)))
        );
    }

    #[test]
    fn the_ticker_targets_loopback_for_wildcard_listeners() {
        let addrs =
            |v: &[&str]| -> Vec<SocketAddr> { v.iter().map(|a| a.parse().unwrap()).collect() };
        assert_eq!(
            loopback_for("0.0.0.0:8080".parse().unwrap()),
            addrs(&["127.0.0.1:8080"])
        );
        assert_eq!(
            loopback_for("[::]:8080".parse().unwrap()),
            addrs(&["[::1]:8080", "127.0.0.1:8080"])
        );
        assert_eq!(
            loopback_for("10.1.2.3:80".parse().unwrap()),
            addrs(&["10.1.2.3:80"])
        );
    }
}
