//! Dispatch and handlers: one function from a request to a [`Reply`], without a socket.
//!
//! | path | GET | HEAD | other methods |
//! |---|---|---|---|
//! | `/` | records a visit, 200 greeting (503 + `Retry-After` if the journal refuses) | the same status, records nothing | 405 |
//! | `/visits` | the journal, streamed; `?limit=N`, `?format=json` or `csv`, `?scope=cluster` (every replica's, see [`crate::cluster`]); bad query 400 | headers only | 405 |
//! | `/stats` | visit counts per replica, address and day (JSON, see [`crate::stats`]); `?scope=cluster`, `?format=csv` | same | 405 |
//! | `/healthz`, `/livez` | 200 while the process serves | same | 405 |
//! | `/readyz` | 200 if the journal is writable and not draining, else 503 | same | 405 |
//! | `/metrics` | Prometheus text | same | 405 |
//! | `/dashboard` | one HTML page of `/stats`' figures (see [`crate::dashboard`]); every replica's when peers are configured | same | 405 |
//! | `/openapi.json` | the OpenAPI 3.1 description of all of this | same | 405 |
//! | anything else (`/favicon.ico`, `/../`, `/visits/`) | 404 | 404 | 404 |
//!
//! With `--read-token-file`, `/visits`, `/stats` and `/dashboard` (GET and HEAD) first need
//! one of the file's tokens ([`crate::token`]): without it, `401` with
//! `WWW-Authenticate: Basic realm="visit-server", charset="UTF-8"`, before anything else is
//! done (no query parsed, no slot taken, no journal opened, no peer asked). Everything else
//! stays open: it shows no address.
//!
//! Paths match exactly, undecoded: `/%76isits` and `/visits/../` are 404, so no path trick
//! reaches a handler. The query is read only by `/visits` and `/stats`; elsewhere it is
//! ignored, so `/?utm=x` is a visit. Both name this replica in an `X-Visit-Replica` header.
//!
//! Before routing, [`screen`] refuses what this server does not parse: request bodies,
//! `Transfer-Encoding`, conflicting `Content-Length`, control characters in headers and
//! oversized headers. Those replies close the connection (see [`crate::tiny_http_quirks`]),
//! so a body tiny_http did not consume cannot be read as the next request.
//!
//! Architecture Invariant: only `GET /` calls [`App::record_visit`], and only after every
//! check has passed; no other path, method or refusal writes to the journal.

use std::sync::Arc;

use tiny_http::Method;
use visit_journal::History;

use crate::app::{App, NotReady, log_journal_error};
use crate::client_addr::{self, client_ip};
use crate::http::{Denied, JSON, Reply, RequestInfo, TEXT, screen};
use crate::metrics::Endpoint;
use crate::peers::REPLICA_HEADER;
use crate::query::{Format, Scope, StatsFormat, StatsQuery, VisitsQuery};
use crate::stream::{Concat, JsonVisits, Slotted};
use crate::{cluster, csv, dashboard, stats, token};

/// Handles one request: [`screen`], then [`route`].
pub fn handle(app: &Arc<App>, rq: &RequestInfo<'_>) -> Reply {
    if let Some(refusal) = screen(rq) {
        return refusal;
    }
    let mut reply = route(app, rq);
    // A body on another method (a POST with data, say) is never read: close so its bytes
    // are not parsed as a request. Only 404/405 reach here for such methods.
    if rq.content_length().is_ok_and(|n| n > 0) {
        reply.close = true;
    }
    reply
}

/// Dispatches on (method, path).
pub fn route(app: &Arc<App>, rq: &RequestInfo<'_>) -> Reply {
    let read_only = matches!(rq.method, Method::Get | Method::Head);
    match (rq.path(), read_only) {
        ("/", _) => match rq.method {
            Method::Get => visit(app, rq),
            // As GET would answer, without recording: 503 while the journal refuses visits.
            Method::Head => match app.readiness() {
                Err(NotReady::Poisoned | NotReady::Unwritable) => {
                    Reply::unavailable("the visit could not be recorded; please retry\n")
                }
                _ => greeting(app, None),
            },
            _ => not_allowed(),
        },
        ("/visits", true) => authorize(app, rq).unwrap_or_else(|| visits(app, rq)),
        ("/stats", true) => authorize(app, rq).unwrap_or_else(|| stats(app, rq)),
        ("/healthz" | "/livez", true) => match app.liveness() {
            Ok(()) => Reply::text(200, "ok\n"),
            Err(why) => Reply::text(503, format!("{why}\n")),
        },
        ("/readyz", true) => {
            app.heal();
            match app.readiness() {
                Ok(()) => Reply::text(200, "ready\n"),
                Err(why) => Reply::unavailable(format!("not ready: {}\n", why.reason())),
            }
        }
        ("/metrics", true) => Reply::text(200, app.metrics.render(&app.gauges()))
            .with_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),
        ("/dashboard", true) => authorize(app, rq).unwrap_or_else(|| dashboard_page(app)),
        ("/openapi.json", true) => Reply::json(200, OPENAPI.to_string()),
        (
            "/visits" | "/stats" | "/dashboard" | "/openapi.json" | "/healthz" | "/livez"
            | "/readyz" | "/metrics",
            false,
        ) => not_allowed(),
        _ => Reply::text(404, "not found\n"),
    }
}

fn not_allowed() -> Reply {
    Reply::text(405, "method not allowed\n").with_header("Allow", "GET, HEAD")
}

/// The body of a `401`.
pub const UNAUTHORIZED: &str = "this needs a read token: send \"Authorization: Bearer <token>\", \
                                or Basic credentials with any user name and the token as the \
                                password\n";

/// Checks a read's token, if reads need one: `None` lets the request through, else the
/// `401` (see the module docs), which says why in its `denied`, for the log.
fn authorize(app: &App, rq: &RequestInfo<'_>) -> Option<Reply> {
    let reason = match (&app.read_tokens, &app.config.read_token_file) {
        (Some(tokens), _) => tokens
            .admit(rq.header_values("Authorization"))
            .err()?
            .as_str(),
        (None, None) => return None,
        // A token file configured but not loaded (a caller that skipped `with_read_tokens`):
        // closed, never open.
        (None, Some(_)) => "read tokens not loaded",
    };
    let mut reply =
        Reply::text(401, UNAUTHORIZED).with_header("WWW-Authenticate", token::CHALLENGE);
    reply.denied = Some(Denied {
        reason,
        client: client(app, rq),
    });
    Some(reply)
}

/// The client's address: the TCP peer, or what a trusted proxy forwarded.
fn client(app: &App, rq: &RequestInfo<'_>) -> std::net::IpAddr {
    client_ip(
        rq.peer.map_or(client_addr::UNSPECIFIED, |p| p.ip()),
        rq.header_values("X-Forwarded-For"),
        &app.config.trusted_proxies,
    )
}

/// `GET /`: records the visit, then greets.
fn visit(app: &Arc<App>, rq: &RequestInfo<'_>) -> Reply {
    let ip = client(app, rq);
    if rq.peer.is_none() {
        // tiny_http has a peer for every TCP connection; never record a made-up address.
        return Reply::text(500, "no peer address\n");
    }
    match app.record_visit(ip) {
        Ok(v) => {
            let mut reply = greeting(app, Some(v.at));
            // The address as recorded (reduced, with --anonymize), never more.
            reply.recorded = Some(v.ip);
            reply
        }
        Err(_) => Reply::unavailable("the visit could not be recorded; please retry\n"),
    }
}

/// The greeting, with the time of the visit (or of now, for `HEAD`).
fn greeting(app: &App, at: Option<chrono::DateTime<chrono::FixedOffset>>) -> Reply {
    let at = at.unwrap_or_else(|| now(app));
    Reply::text(
        200,
        format!(
            "Hello! It is {} ({}). Your visit is recorded; see /visits and /dashboard.\n",
            at.format("%H:%M:%S"),
            at.format("%A %-d %B %Y, UTC%:z")
        ),
    )
}

/// `GET /visits`.
fn visits(app: &Arc<App>, rq: &RequestInfo<'_>) -> Reply {
    let q = match VisitsQuery::parse(rq.query()) {
        Ok(q) => q,
        Err(e) => return Reply::text(400, format!("bad query: {e}\n")),
    };
    // Without chunked encoding (HTTP/1.0), or asked for identity coding (`TE: identity`),
    // tiny_http would buffer the whole body to learn its length: refuse rather than hold a
    // whole journal in memory.
    if rq.http_version < (1, 1) {
        return Reply::text(505, "/visits is streamed and needs HTTP/1.1\n");
    }
    if rq
        .header_values("TE")
        .any(|v| v.to_ascii_lowercase().contains("identity"))
    {
        return Reply::text(400, "TE: identity is not supported: /visits is streamed\n");
    }
    let Some(slot) = app.open_stream() else {
        return Reply::unavailable("too many /visits responses in progress\n");
    };
    if q.scope == Scope::Cluster {
        return cluster::visits(app, &q, slot, |n| open_journal(app, Some(n)));
    }
    let reader = match open_journal(app, q.limit) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let reply = match q.format {
        Format::Text => Reply::stream(TEXT, Slotted::new(reader.into_text(), slot)),
        Format::Json => Reply::stream(
            JSON,
            Slotted::new(JsonVisits::new(reader.into(), Arc::clone(app)), slot),
        ),
        Format::Csv => {
            let mut body = Concat::new();
            body.push_bytes(csv::VISITS_HEADER);
            body.push(crate::stream::csv_visits(app, reader, None));
            Reply::stream(csv::CONTENT_TYPE, Slotted::new(body, slot))
        }
    };
    reply.with_header(REPLICA_HEADER, app.name.clone())
}

/// Opens the journal's whole history for reading (sealed segments, then the live file), at
/// its last `limit` lines.
fn open_journal(app: &App, limit: Option<u64>) -> Result<History, Reply> {
    let mut reader = History::open(app.journal.path()).map_err(|e| {
        log_journal_error("visits_open_failed", app.journal.path(), &e);
        Reply::unavailable("the journal cannot be read\n")
    })?;
    if let Some(n) = limit
        && let Err(e) = reader.tail(n)
    {
        log_journal_error("visits_read_failed", app.journal.path(), &e);
        return Err(Reply::unavailable("the journal cannot be read\n"));
    }
    Ok(reader)
}

/// `GET /stats`: counts the local journal by streaming it once (it takes a `/visits` slot
/// meanwhile), or the cluster's.
fn stats(app: &Arc<App>, rq: &RequestInfo<'_>) -> Reply {
    let q = match StatsQuery::parse(rq.query()) {
        Ok(q) => q,
        Err(e) => return Reply::text(400, format!("bad query: {e}\n")),
    };
    let Some(_slot) = app.open_stream() else {
        return Reply::unavailable("too many /visits and /stats responses in progress\n");
    };
    if q.scope == Scope::Cluster {
        return cluster::stats(app, q.format);
    }
    let replica = match local_stats(app) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let reply = match q.format {
        StatsFormat::Json => {
            Reply::json(200, stats::render(&app.name, "local", vec![replica], &[]))
        }
        StatsFormat::Csv => Reply::text(200, stats::render_csv(&[replica]))
            .with_header("Content-Type", csv::CONTENT_TYPE),
    };
    reply.with_header(REPLICA_HEADER, app.name.clone())
}

/// This replica's counts, as `/stats?scope=local` and a lone replica's dashboard show them.
fn local_stats(app: &App) -> Result<stats::ReplicaStats, Reply> {
    match app.journal.counts() {
        Ok(counts) => Ok(stats::ReplicaStats {
            name: app.name.clone(),
            address: app.local_addr().to_string(),
            summary: stats::Summary::of(&counts),
            damaged: stats::DamagedFile::list(counts.damaged()),
        }),
        Err(e) => {
            log_journal_error("stats_read_failed", app.journal.path(), &e);
            Err(Reply::unavailable("the journal cannot be read\n"))
        }
    }
}

/// The API description, `GET /openapi.json`: a static file, checked against the server by
/// the integration tests and by `.ci/steps/70-openapi`.
const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /dashboard`: this replica's counts, or every replica's when peers are configured,
/// as one HTML page (see [`crate::dashboard`]). Like `/stats`, it takes a `/visits` slot
/// while it counts, and a fan-out slot while it asks the peers.
fn dashboard_page(app: &Arc<App>) -> Reply {
    let Some(_slot) = app.open_stream() else {
        return Reply::unavailable(
            "too many /visits, /stats and /dashboard responses in progress\n",
        );
    };
    let cluster = !app.config.peers.is_empty() || app.config.peer_dns.is_some();
    let (replicas, missing) = if cluster {
        match cluster::gather_stats(app, Endpoint::Dashboard) {
            Ok(parts) => parts,
            Err(reply) => return reply,
        }
    } else {
        match local_stats(app) {
            Ok(r) => (vec![r], Vec::new()),
            Err(reply) => return reply,
        }
    };
    let html = dashboard::render(&dashboard::View {
        this: &app.name,
        cluster,
        replicas: &replicas,
        missing: &missing,
        generated: now(app),
    });
    let reply = Reply::text(200, html)
        .with_header("Content-Type", "text/html; charset=utf-8")
        .with_header("Content-Security-Policy", dashboard::CSP);
    if cluster {
        cluster::view(app, reply, &missing)
    } else {
        reply.with_header(REPLICA_HEADER, app.name.clone())
    }
}

/// Now, in the configured offset (else the system's).
fn now(app: &App) -> chrono::DateTime<chrono::FixedOffset> {
    match app.config.utc_offset {
        Some(o) => chrono::Utc::now().with_timezone(&o),
        None => chrono::Local::now().fixed_offset(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::http::{Body, MAX_HEADER_BYTES, RETRY_AFTER, must_close};
    use tiny_http::Header;
    use visit_journal::Journal;

    struct Fixture {
        app: Arc<App>,
        _dir: tempfile::TempDir,
    }

    fn fixture(config: impl FnOnce(&mut Config)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config {
            file: dir.path().join("data/visits.txt"),
            ..Config::default()
        };
        config(&mut c);
        let journal = Journal::open(&c.file).unwrap();
        Fixture {
            app: Arc::new(App::new(c, journal)),
            _dir: dir,
        }
    }

    fn header(name: &str, value: &str) -> Header {
        Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap()
    }

    fn request<'a>(method: &'a Method, url: &'a str, headers: &'a [Header]) -> RequestInfo<'a> {
        RequestInfo {
            method,
            url,
            http_version: (1, 1),
            peer: Some("203.0.113.7:40000".parse().unwrap()),
            headers,
        }
    }

    fn lines(f: &Fixture) -> Vec<String> {
        std::fs::read_to_string(f.app.journal.path())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn body(r: Reply) -> String {
        String::from_utf8(r.into_bytes().unwrap()).unwrap()
    }

    #[test]
    fn get_root_records_the_peer_and_greets() {
        let f = fixture(|_| {});
        let r = handle(&f.app, &request(&Method::Get, "/?utm=x", &[]));
        assert_eq!(r.status, 200);
        assert_eq!(r.recorded, Some("203.0.113.7".parse().unwrap()));
        assert!(body(r).starts_with("Hello! It is "));
        let l = lines(&f);
        assert_eq!(l.len(), 1);
        assert!(l[0].ends_with(" - 203.0.113.7"), "{l:?}");
    }

    #[test]
    fn only_get_root_records() {
        let f = fixture(|_| {});
        let cases: &[(&Method, &str, u16)] = &[
            (&Method::Head, "/", 200),
            (&Method::Post, "/", 405),
            (&Method::Delete, "/", 405),
            (&Method::Get, "/healthz", 200),
            (&Method::Get, "/livez", 200),
            (&Method::Head, "/livez", 200),
            (&Method::Get, "/readyz", 200),
            (&Method::Get, "/metrics", 200),
            (&Method::Get, "/visits", 200),
            (&Method::Put, "/visits", 405),
            (&Method::Get, "/stats", 200),
            (&Method::Get, "/stats?scope=cluster", 200),
            (&Method::Get, "/visits?scope=cluster", 200),
            (&Method::Post, "/stats", 405),
            (&Method::Get, "/stats?format=csv", 200),
            (&Method::Get, "/visits?format=csv", 200),
            (&Method::Get, "/dashboard", 200),
            (&Method::Head, "/dashboard", 200),
            (&Method::Post, "/dashboard", 405),
            (&Method::Get, "/openapi.json", 200),
            (&Method::Delete, "/openapi.json", 405),
            (&Method::Get, "/dashboard/", 404),
            (&Method::Get, "/favicon.ico", 404),
            (&Method::Get, "/../", 404),
            (&Method::Get, "/visits/../", 404),
            (&Method::Get, "/%76isits", 404),
            (&Method::Get, "//", 404),
            (&Method::Get, "http://example.com/", 404),
            (&Method::Get, "*", 404),
        ];
        for (method, url, status) in cases {
            let r = handle(&f.app, &request(method, url, &[]));
            assert_eq!(r.status, *status, "{method} {url}");
            if *status == 405 {
                assert_eq!(r.header("Allow"), Some("GET, HEAD"));
            }
            assert!(!r.close, "{method} {url}");
        }
        assert!(lines(&f).is_empty());
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let f = fixture(|c| c.trusted_proxies.push("203.0.113.7".parse().unwrap()));
        let h = [
            header("X-Forwarded-For", "6.6.6.6, 198.51.100.9"),
            header("X-Real-IP", "7.7.7.7"),
        ];
        assert_eq!(handle(&f.app, &request(&Method::Get, "/", &h)).status, 200);
        let untrusted = fixture(|_| {});
        assert_eq!(
            handle(&untrusted.app, &request(&Method::Get, "/", &h)).status,
            200
        );
        assert!(lines(&f)[0].ends_with(" - 198.51.100.9"));
        assert!(lines(&untrusted)[0].ends_with(" - 203.0.113.7"));
    }

    #[test]
    fn screen_refuses_bodies_and_smuggling_material_and_closes() {
        let f = fixture(|_| {});
        let big = "x".repeat(MAX_HEADER_BYTES);
        let cases: Vec<(Vec<Header>, u16)> = vec![
            (vec![header("Transfer-Encoding", "chunked")], 400),
            (vec![header("Transfer-Encoding", "identity")], 400),
            (vec![header("Content-Length", "5")], 400),
            (
                vec![header("Content-Length", "0"), header("Content-Length", "7")],
                400,
            ),
            (vec![header("Content-Length", "1, 2")], 400),
            (vec![header("Content-Length", "-1")], 400),
            (vec![header("Content-Length", "+0")], 400),
            (
                vec![header(
                    "X-Forwarded-For",
                    "1.2.3.4\n2026-11-26T10:44:36.123+03:00 - 6.6.6.6",
                )],
                400,
            ),
            (vec![header("X-Note", "a\rb")], 400),
            (vec![header("X-Big", &big)], 431),
        ];
        for (h, status) in &cases {
            let rq = request(&Method::Get, "/", h);
            assert!(must_close(&rq));
            let r = handle(&f.app, &rq);
            assert_eq!(r.status, *status, "{h:?}");
            assert!(r.close);
        }
        // Harmless: an empty body, and repeated equal lengths.
        for h in [
            vec![header("Content-Length", "0")],
            vec![header("Content-Length", "0, 0")],
        ] {
            let rq = request(&Method::Get, "/healthz", &h);
            assert!(!must_close(&rq));
            assert_eq!(handle(&f.app, &rq).status, 200);
        }
        // A POST with a body gets its 405, and the connection closes.
        let h = [header("Content-Length", "3")];
        let rq = request(&Method::Post, "/", &h);
        assert!(must_close(&rq));
        let r = handle(&f.app, &rq);
        assert_eq!((r.status, r.close), (405, true));
        assert!(lines(&f).is_empty());
    }

    #[test]
    fn visits_serves_the_file_and_checks_the_query() {
        let f = fixture(|_| {});
        for _ in 0..3 {
            assert_eq!(handle(&f.app, &request(&Method::Get, "/", &[])).status, 200);
        }
        let file = std::fs::read_to_string(f.app.journal.path()).unwrap();
        let all = handle(&f.app, &request(&Method::Get, "/visits", &[]));
        assert_eq!(all.header("Content-Type"), Some(TEXT));
        assert_eq!(body(all), file);
        let last = body(handle(
            &f.app,
            &request(&Method::Get, "/visits?limit=2", &[]),
        ));
        assert_eq!(
            last,
            file.lines()
                .skip(1)
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        );
        let json = handle(
            &f.app,
            &request(&Method::Get, "/visits?format=json&limit=1", &[]),
        );
        assert_eq!(json.header("Content-Type"), Some("application/json"));
        let json = body(json);
        let (time, ip) = file.lines().last().unwrap().split_once(" - ").unwrap();
        assert_eq!(
            json,
            format!("[\n{{\"time\":\"{time}\",\"ip\":\"{ip}\"}}\n]\n")
        );
        for bad in [
            "/visits?limit=x",
            "/visits?format=xml",
            "/visits?limit=1&limit=1",
            "/visits?x=1",
        ] {
            assert_eq!(
                handle(&f.app, &request(&Method::Get, bad, &[])).status,
                400,
                "{bad}"
            );
        }
        let mut old = request(&Method::Get, "/visits", &[]);
        old.http_version = (1, 0);
        assert_eq!(handle(&f.app, &old).status, 505);
        let te = [header("TE", "identity")];
        assert_eq!(
            handle(&f.app, &request(&Method::Get, "/visits", &te)).status,
            400
        );
    }

    #[test]
    fn json_leaves_out_corrupt_lines_and_counts_them() {
        let f = fixture(|_| {});
        std::fs::write(
            f.app.journal.path(),
            "2026-11-26T10:44:36.123+03:00 - 10.0.0.7\nnot a visit\n2022-11-29T10:44:36+03:00 - ::1\n",
        )
        .unwrap();
        let json = body(handle(
            &f.app,
            &request(&Method::Get, "/visits?format=json", &[]),
        ));
        assert_eq!(
            json,
            "[\n{\"time\":\"2026-11-26T10:44:36.123+03:00\",\"ip\":\"10.0.0.7\"},\n\
             {\"time\":\"2022-11-29T10:44:36.000+03:00\",\"ip\":\"::1\"}\n]\n"
        );
        let empty = fixture(|_| {});
        assert_eq!(
            body(handle(
                &empty.app,
                &request(&Method::Get, "/visits?format=json", &[])
            )),
            "[\n]\n"
        );
        let metrics = body(handle(&f.app, &request(&Method::Get, "/metrics", &[])));
        assert!(
            metrics.contains("visit_server_json_skipped_lines_total 1\n"),
            "{metrics}"
        );
    }

    #[test]
    fn streams_are_capped_and_released() {
        let f = fixture(|_| {});
        let held: Vec<Reply> = (0..crate::app::MAX_STREAMS)
            .map(|_| handle(&f.app, &request(&Method::Get, "/visits", &[])))
            .collect();
        assert!(held.iter().all(|r| r.status == 200));
        let refused = handle(&f.app, &request(&Method::Get, "/visits", &[]));
        assert_eq!(refused.status, 503);
        assert_eq!(refused.header("Retry-After"), Some(RETRY_AFTER));
        drop(held);
        assert_eq!(
            handle(&f.app, &request(&Method::Get, "/visits", &[])).status,
            200
        );
        // A body read to its end frees its slot at once, before it is dropped.
        let mut read: Vec<Reply> = (0..crate::app::MAX_STREAMS)
            .map(|_| handle(&f.app, &request(&Method::Get, "/visits", &[])))
            .collect();
        assert_eq!(
            handle(&f.app, &request(&Method::Get, "/visits", &[])).status,
            503
        );
        let Body::Stream(r) = &mut read[0].body else {
            panic!("not streamed")
        };
        std::io::copy(r, &mut std::io::sink()).unwrap();
        assert_eq!(
            handle(&f.app, &request(&Method::Get, "/visits", &[])).status,
            200
        );
    }

    #[test]
    fn cluster_views_are_capped_and_released() {
        let f = fixture(|c| c.name = Some("r0".into()));
        let view = || handle(&f.app, &request(&Method::Get, "/visits?scope=cluster", &[]));
        let held: Vec<Reply> = (0..crate::app::MAX_FANOUTS).map(|_| view()).collect();
        assert!(held.iter().all(|r| r.status == 200));
        assert_eq!(held[0].header(REPLICA_HEADER), Some("r0"));
        assert_eq!(held[0].header(cluster::PARTIAL_HEADER), Some("false"));
        let refused = view();
        assert_eq!(refused.status, 503);
        assert_eq!(refused.header("Retry-After"), Some(RETRY_AFTER));
        // A local /visits still has its own slots.
        assert_eq!(
            handle(&f.app, &request(&Method::Get, "/visits", &[])).status,
            200
        );
        drop(held);
        let r = view();
        assert_eq!(r.status, 200);
        // Without peers, the cluster is this replica alone.
        assert_eq!(body(r), "# replica r0 127.0.0.1:8080\n");
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A fixture whose reads need [`TOKEN`].
    fn guarded() -> Fixture {
        guarded_with(|_| {})
    }

    fn guarded_with(config: impl FnOnce(&mut Config)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let mut c = Config {
            file: dir.path().join("data/visits.txt"),
            read_token_file: Some(token_file.clone()),
            ..Config::default()
        };
        config(&mut c);
        let journal = Journal::open(&c.file).unwrap();
        let tokens = crate::token::ReadTokens::load(&token_file).unwrap();
        Fixture {
            app: Arc::new(App::new(c, journal).with_read_tokens(tokens)),
            _dir: dir,
        }
    }

    fn assert_unauthorized(r: &Reply, reason: &str) {
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some("Basic realm=\"visit-server\", charset=\"UTF-8\"")
        );
        assert_eq!(r.header("Content-Type"), Some(TEXT));
        assert_eq!(r.denied.map(|d| d.reason), Some(reason));
        assert!(!r.close);
    }

    #[test]
    fn reads_need_a_token_and_everything_else_stays_open() {
        let f = guarded();
        let bearer = [header("Authorization", &format!("Bearer {TOKEN}"))];
        for method in [&Method::Get, &Method::Head] {
            for url in [
                "/visits",
                "/visits?limit=1&format=json",
                "/visits?format=csv",
                "/visits?scope=cluster",
                "/stats",
                "/stats?format=csv",
                "/stats?scope=cluster",
                "/dashboard",
            ] {
                let r = handle(&f.app, &request(method, url, &[]));
                assert_unauthorized(&r, "no credentials");
                assert_eq!(r.denied.unwrap().client.to_string(), "203.0.113.7");
                assert_eq!(body(r), UNAUTHORIZED);
                let r = handle(&f.app, &request(method, url, &bearer));
                assert_eq!(r.status, 200, "{method} {url}");
                assert_eq!(r.denied, None);
            }
        }
        // A bad query is 400 only for whom may read: the token is checked first.
        assert_unauthorized(
            &handle(&f.app, &request(&Method::Get, "/visits?limit=x", &[])),
            "no credentials",
        );
        assert_eq!(
            handle(&f.app, &request(&Method::Get, "/visits?limit=x", &bearer)).status,
            400
        );
        for (method, url, status) in [
            (&Method::Get, "/", 200),
            (&Method::Head, "/", 200),
            (&Method::Get, "/healthz", 200),
            (&Method::Get, "/livez", 200),
            (&Method::Get, "/readyz", 200),
            (&Method::Get, "/metrics", 200),
            (&Method::Get, "/openapi.json", 200),
            (&Method::Get, "/favicon.ico", 404),
            (&Method::Post, "/visits", 405),
        ] {
            let r = handle(&f.app, &request(method, url, &[]));
            assert_eq!(r.status, status, "{method} {url}");
        }
        let metrics = body(handle(&f.app, &request(&Method::Get, "/metrics", &[])));
        assert!(!metrics.contains(TOKEN));
        assert_eq!(lines(&f).len(), 1, "only GET / recorded");
    }

    #[test]
    fn a_refused_read_does_no_work() {
        // A peer that is not there: a cluster view, or the dashboard, would ask it.
        let f = guarded_with(|c| c.peers.push("127.0.0.1:9".parse().unwrap()));
        let bearer = [header("Authorization", &format!("Bearer {TOKEN}"))];
        let wrong = [header("Authorization", &format!("Bearer {TOKEN}0"))];
        // Every stream slot taken: a read with the token waits its turn (503), a refused one
        // is refused without taking one.
        let held: Vec<Reply> = (0..crate::app::MAX_STREAMS)
            .map(|_| handle(&f.app, &request(&Method::Get, "/visits", &bearer)))
            .collect();
        assert!(held.iter().all(|r| r.status == 200));
        for url in ["/visits", "/stats", "/dashboard"] {
            assert_eq!(
                handle(&f.app, &request(&Method::Get, url, &bearer)).status,
                503
            );
            assert_unauthorized(
                &handle(&f.app, &request(&Method::Get, url, &wrong)),
                "wrong token",
            );
        }
        drop(held);
        // No peer was asked for the refused cluster views and dashboards.
        for url in [
            "/stats?scope=cluster",
            "/visits?scope=cluster",
            "/dashboard",
        ] {
            assert_unauthorized(
                &handle(&f.app, &request(&Method::Get, url, &wrong)),
                "wrong token",
            );
        }
        let metrics = body(handle(&f.app, &request(&Method::Get, "/metrics", &[])));
        let asked: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("visit_server_peer_answers_total") && !l.ends_with(" 0"))
            .collect();
        assert!(asked.is_empty(), "{asked:?}");
        // No journal to read: a read with the token fails to open it (503), a refused one never
        // tries.
        std::fs::remove_dir_all(f.app.journal.path().parent().unwrap()).unwrap();
        for url in ["/visits", "/stats", "/dashboard"] {
            assert_eq!(
                handle(&f.app, &request(&Method::Get, url, &bearer)).status,
                503,
                "{url}"
            );
            assert_unauthorized(
                &handle(&f.app, &request(&Method::Get, url, &[])),
                "no credentials",
            );
        }
    }

    #[test]
    fn a_token_file_configured_but_not_loaded_refuses_every_read() {
        let f = fixture(|c| c.read_token_file = Some("/nonexistent/token".into()));
        let bearer = [header("Authorization", &format!("Bearer {TOKEN}"))];
        for url in ["/visits", "/stats", "/dashboard"] {
            assert_unauthorized(
                &handle(&f.app, &request(&Method::Get, url, &bearer)),
                "read tokens not loaded",
            );
        }
    }

    #[test]
    fn head_root_answers_as_get_would_without_recording() {
        let f = fixture(|_| {});
        assert_eq!(
            handle(&f.app, &request(&Method::Head, "/", &[])).status,
            200
        );
        f.app.mark_unwritable();
        let r = handle(&f.app, &request(&Method::Head, "/", &[]));
        assert_eq!(r.status, 503);
        assert_eq!(r.header("Retry-After"), Some(RETRY_AFTER));
        assert!(lines(&f).is_empty());
    }

    #[test]
    fn readiness_follows_draining() {
        let f = fixture(|_| {});
        assert_eq!(
            handle(&f.app, &request(&Method::Get, "/readyz", &[])).status,
            200
        );
        f.app.start_draining();
        let r = handle(&f.app, &request(&Method::Get, "/readyz", &[]));
        assert_eq!(r.status, 503);
        assert_eq!(r.header("Retry-After"), Some(RETRY_AFTER));
        // Still alive, and GET / still records while draining (in-flight clients finish).
        assert_eq!(
            handle(&f.app, &request(&Method::Get, "/livez", &[])).status,
            200
        );
        assert_eq!(handle(&f.app, &request(&Method::Get, "/", &[])).status, 200);
    }
}
