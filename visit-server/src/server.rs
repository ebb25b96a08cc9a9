//! The listening socket, the worker pool over tiny_http and the shutdown sequence.
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
//! The workarounds for tiny_http's faults (the ticker, condemned connections) live in
//! [`crate::tiny_http_quirks`].

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tiny_http::{Request, Server};

use crate::app::App;
use crate::http::{self, Body, Reply, RequestInfo};
use crate::log::{self, Value};
use crate::routes;
use crate::shutdown::{self, Signals};
use crate::tiny_http_quirks::{self as quirks, Intake, Verdict};

#[cfg(doc)]
use crate::{
    app::{MAX_FANOUTS, MAX_STREAMS},
    http::MAX_HEADER_BYTES,
};
#[cfg(doc)]
use visit_journal::Journal;

/// How long a worker waits on the queue before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(100);

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
    /// How often the ticker connects (see [`crate::tiny_http_quirks`]): well under
    /// `read_timeout`, and short enough that a connection starved by tiny_http's pool is
    /// rescued promptly.
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
/// [`shutdown::GRACE`] so load balancers can take the pod out; then the listening socket is
/// shut down (new connections are refused), the workers answer every request already received,
/// each with `Connection: close`, until none has come for one poll, and stop (waiting at most
/// [`shutdown::JOIN_DEADLINE`]). Stopping the workers while the socket still accepted left the
/// requests in tiny_http's queue to be dropped: answered 500, or their connection closed
/// unanswered. Every acknowledged visit is already on disk, so nothing remains to flush.
pub fn run(listener: TcpListener, app: Arc<App>, limits: &Limits, signals: &Signals) -> Outcome {
    let local = listener.local_addr().ok();
    if let Some(addr) = local {
        app.set_bound(addr);
    }
    // A second handle on the listening socket, to shut it down when draining: tiny_http
    // closes its own only when the `Server` is dropped, after the workers are gone.
    let door = listener
        .try_clone()
        .map_err(|e| log::warn("listener_clone_failed", &[("cause", Value::Display(&e))]))
        .ok();
    let server = match Server::from_listener(listener, None) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log::error("listen_failed", &[("cause", Value::Display(&e))]);
            return Outcome::Failed;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    // Set once the listener is shut down: workers then drain the queue and close each
    // connection they answer. The ticker stops on it too (it would only be refused).
    let closing = Arc::new(AtomicBool::new(false));
    let intake = Arc::new(Mutex::new(Intake::default()));

    let mut threads: Vec<JoinHandle<()>> = Vec::with_capacity(limits.workers + 1);
    for i in 0..limits.workers {
        let (server, app, intake, flag, closing) = (
            Arc::clone(&server),
            Arc::clone(&app),
            Arc::clone(&intake),
            Arc::clone(&stop),
            Arc::clone(&closing),
        );
        let spawned = thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker(&server, &app, &intake, &flag, &closing));
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
        let (stop, every) = (Arc::clone(&closing), limits.tick);
        match thread::Builder::new()
            .name("ticker".into())
            .spawn(move || quirks::ticker(&quirks::loopback_for(addr), &stop, every))
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
        closing.store(true, SeqCst);
        shutdown::join_all(threads, shutdown::JOIN_DEADLINE);
        return Outcome::Failed;
    }

    app.start_draining();
    log::info(
        "draining",
        &[("grace_ms", (shutdown::GRACE.as_millis() as u64).into())],
    );
    shutdown::sleep_unless(shutdown::GRACE, || app.is_fatal());
    closing.store(true, SeqCst);
    match &door {
        Some(door) => {
            // Linux turns a listening socket that is shut down for reading into a closed one:
            // connections are refused, and tiny_http's `accept` fails, which ends its thread.
            if let Err(e) = SockRef::from(door).shutdown(std::net::Shutdown::Read) {
                log::warn("listener_shutdown_failed", &[("cause", Value::Display(&e))]);
                stop.store(true, SeqCst);
            }
        }
        None => stop.store(true, SeqCst),
    }
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

fn worker(
    server: &Server,
    app: &Arc<App>,
    intake: &Mutex<Intake>,
    stop: &AtomicBool,
    closing: &AtomicBool,
) {
    loop {
        let (rq, verdict) = {
            let mut intake = intake.lock().unwrap_or_else(PoisonError::into_inner);
            if stop.load(SeqCst) {
                return;
            }
            match server.recv_timeout(POLL) {
                // Draining, and nothing came for a whole poll: every request received has
                // been taken, so all workers may stop.
                Ok(None) if closing.load(SeqCst) => {
                    stop.store(true, SeqCst);
                    return;
                }
                Ok(None) => continue,
                Ok(Some(rq)) => {
                    let verdict = intake.admit(&RequestInfo::of(&rq), Instant::now());
                    (rq, verdict)
                }
                // The accept thread ended because the listener was shut down on purpose.
                Err(_) if closing.load(SeqCst) => continue,
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
        let closing = closing.load(SeqCst);
        if panic::catch_unwind(AssertUnwindSafe(|| serve(app, rq, verdict, closing))).is_err() {
            log::error("handler_panicked", &[]);
        }
    }
}

/// Handles one request, writes the reply, counts and logs it. While `closing`, a short reply
/// closes its connection, so that a keep-alive client reconnects (and is refused) rather than
/// sends a request that no worker may be left to take.
fn serve(app: &Arc<App>, rq: Request, verdict: Verdict, closing: bool) {
    let started = Instant::now();
    let mut reply = match verdict {
        Verdict::Serve => routes::handle(app, &RequestInfo::of(&rq)),
        Verdict::Refuse => {
            Reply::text(400, "this connection is closed after a refused request\n").closing()
        }
    };
    // A streamed body keeps tiny_http's writer: the hand-written closing one buffers it.
    if closing && matches!(reply.body, Body::Text(_)) {
        reply.close = true;
    }
    let (status, close, recorded, denied) =
        (reply.status, reply.close, reply.recorded, reply.denied);
    let method = rq.method().as_str().to_string();
    let path = log::clip(rq.url(), 512).to_string();
    // With --anonymize, no full address reaches the log either: the peer is reduced like
    // the recorded address (the port is kept, it names a connection, not a person).
    let peer = rq.remote_addr().map(|p| {
        if app.config.anonymize {
            std::net::SocketAddr::new(visit_journal::anonymize(p.ip()), p.port())
        } else {
            *p
        }
    });
    // Counted before the answer goes out: a client that has it and then asks /metrics must
    // find it counted.
    app.metrics.request(status);
    let written = http::respond(rq, reply);

    let duration = started.elapsed();
    let duration_us = duration.as_micros() as u64;
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    let recorded = recorded.map(|ip| ip.to_string());
    let error = written.err().map(|e| e.to_string());
    let mut fields: Vec<(&str, Value<'_>)> = vec![
        ("method", Value::Str(&method)),
        ("path", Value::Str(&path)),
        ("status", u64::from(status).into()),
        // The contract names the field `duration`; `duration_us` is kept for existing queries.
        ("duration", Value::Seconds(duration)),
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
    match denied {
        // A refused read is its own event, a warning with who tried and why, never what they
        // sent (CONTRACT §11); still one line for one request.
        Some(denied) => {
            let client = if app.config.anonymize {
                visit_journal::anonymize(denied.client)
            } else {
                denied.client
            };
            fields.push(("client", Value::Display(&client)));
            fields.push(("reason", Value::Str(denied.reason)));
            log::warn("unauthorized", &fields);
        }
        None => log::info("request", &fields),
    }
}
