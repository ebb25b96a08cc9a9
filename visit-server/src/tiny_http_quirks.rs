//! Every workaround for a tiny_http 0.12 fault, each with the upstream issue and the test
//! that pins it.
//!
//! | fault | workaround | upstream | pinned by |
//! |---|---|---|---|
//! | the accept thread quits on its first error, and `SO_RCVTIMEO` makes an idle `accept` fail | the [`ticker`] connects every tick | tiny-http #283 (PR #284 open) | `hostile::slow_and_idle_clients_are_cut_off_and_others_are_served` |
//! | `TaskPool` queues connections behind busy threads | the [`ticker`] makes it start threads | none found (`src/util/task_pool.rs`; PR #258 closed) | `hostile::a_burst_of_connections_is_served_promptly` |
//! | a `Connection` header cannot be set, and a connection is read on after any response | refusals are written by hand (`http::respond`) and their connection is condemned ([`Intake`]) | tiny-http #244 | `hostile::a_request_smuggled_in_a_body_is_never_served`, `intake_*` below |
//! | no limit on header size | [`crate::http::screen`] answers 431 past [`crate::http::MAX_HEADER_BYTES`] (after tiny_http has read them) | tiny-http #56, PR #232 open | `hostile::hostile_requests_are_refused_and_never_recorded` |
//! | without chunked encoding (HTTP/1.0, `TE: identity`) a body is buffered whole | `/visits` refuses them (`routes`) | none | `routes::tests::visits_serves_the_file_and_checks_the_query` |
//! | an `HTTP/2.0` request line leaks its connection's thread | none possible here: a proxy in front | none found | `hostile::fixme_an_http2_request_line_hangs_only_its_own_connection` |
//! | `unblock()` wakes one waiter, `recv()` reports it as an error | workers poll with `recv_timeout` (`server`) | tiny-http #146 | `shutdown::sigterm_under_load_drains_and_exits_0_quickly` |
//!
//! # The ticker
//!
//! A *ticker* thread opens [`RESCUE_BURST`] connections to the server every `Limits::tick`
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
//! # Refused requests close their connection
//!
//! tiny_http drops the `Connection` header from responses and keeps reading a connection
//! after any response, so a refused request's unread body would be parsed as the next
//! request: a request smuggled past a proxy in a body would be served, with the proxy's
//! trusted `X-Forwarded-For`. Refusals are therefore written by hand with
//! `Connection: close` (`http::respond`), and the connection is *condemned*: for
//! [`CONDEMNED_FOR`], every further request from the same peer address and port (that is,
//! the same connection) gets 400 and close, and is never handled. Workers take requests from
//! the queue under one *intake* lock and mark a connection before releasing it, so the next
//! request of a condemned connection cannot slip past on another worker.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::http::{self, RequestInfo};
use crate::log::{self, Value};
use crate::shutdown;

/// How many connections the ticker opens and resets each tick; see the module docs.
pub const RESCUE_BURST: usize = 16;

/// How long a condemned connection's further requests are refused.
pub const CONDEMNED_FOR: Duration = Duration::from_secs(30);

/// At most this many condemned connections are remembered (the oldest are forgotten first).
const MAX_CONDEMNED: usize = 4096;

/// The state workers share while taking requests off the queue; see the module docs.
#[derive(Debug, Default)]
pub struct Intake {
    /// Condemned connections (by peer address and port) and when they were condemned.
    condemned: HashMap<SocketAddr, Instant>,
}

/// What to do with a request taken off the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Serve,
    /// It came on a condemned connection: refuse and close.
    Refuse,
}

impl Intake {
    /// Decides about a request taken off the queue, and condemns its connection if its reply
    /// will close it. Call it under the lock that takes requests off the queue.
    pub fn admit(&mut self, rq: &RequestInfo<'_>, now: Instant) -> Verdict {
        let Some(peer) = rq.peer else {
            return Verdict::Serve;
        };
        if let Some(&since) = self.condemned.get(&peer) {
            if now.duration_since(since) < CONDEMNED_FOR {
                return Verdict::Refuse;
            }
            self.condemned.remove(&peer);
        }
        if http::must_close(rq) {
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

/// The addresses the ticker connects to, in order of preference: the listening address, or
/// loopback if it listens on all interfaces. `[::]` also accepts IPv4, which matters where
/// IPv6 loopback is disabled: without a working target, `accept` would time out.
pub fn loopback_for(addr: SocketAddr) -> Vec<SocketAddr> {
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
pub fn ticker(targets: &[SocketAddr], stop: &AtomicBool, every: Duration) {
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
        let te =
            [tiny_http::Header::from_bytes(&b"Transfer-Encoding"[..], &b"chunked"[..]).unwrap()];
        let rq = |peer, headers| RequestInfo {
            method: &tiny_http::Method::Get,
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
