//! The cluster view: `GET /visits?scope=cluster` and `GET /stats?scope=cluster` answer for
//! every replica, while each replica keeps writing only its own journal.
//!
//! A cluster view asks every peer (see [`crate::peers`]) for its `scope=local` answer in
//! parallel, reads this replica's part from its own journal meanwhile, and answers `200` with
//! the union, each part tagged with the replica it came from. A peer that is down, refuses,
//! is slow or answers badly is listed as missing; the answer then says it is partial:
//! `X-Visit-Partial: true`, a `# partial:` line first in the text form, a non-empty
//! `missing` (and `"partial": true`) in JSON. It never waits for a peer past
//! `--peer-timeout`.
//!
//! # `/visits?scope=cluster`
//!
//! ```text
//! # partial: 1 of 3 replicas missing
//! # missing 10.244.0.19:8080: timeout (no answer within the peer timeout)
//! # replica visit-server-0 10.244.0.17:8080
//! 2026-11-26T10:44:36.123+00:00 - 10.244.0.5
//! # replica visit-server-1 10.244.0.18:8080
//! 2026-11-26T10:44:36.140+00:00 - 10.244.0.5
//! ```
//!
//! Every heading starts with `# `, which no record does (a corrupt line is relayed byte for
//! byte, as the local text form shows it, and could; the JSON form leaves corrupt lines
//! out). Replicas come sorted by name, missing peers by address. `?format=json`:
//!
//! ```text
//! {"replica":"visit-server-0","partial":false,"replicas":[
//! {"name":"visit-server-0","address":"10.244.0.17:8080","visits":[
//! {"time":"2026-11-26T10:44:36.123+00:00","ip":"10.244.0.5"}
//! ]
//! }],
//! "missing":[]}
//! ```
//!
//! with `missing` entries `{"address": ..., "error": ..., "detail": ...}`, where `error` is
//! one of `timeout`, `refused`, `dns`, `too_large`, `status`, `bad_response`,
//! `too_many_peers`, `unauthorized` (the peer answered 401: it does not take this replica's
//! first read token), `other`.
//!
//! # Memory
//!
//! `?limit=N` applies per replica and defaults to
//! [`CLUSTER_DEFAULT_LIMIT`](crate::query::CLUSTER_DEFAULT_LIMIT) lines, at most
//! [`CLUSTER_MAX_LIMIT`](crate::query::CLUSTER_MAX_LIMIT): the answer is only known to be
//! complete or partial once every peer has answered or timed out, so the peers' parts are
//! held in memory until it is sent (the local part streams from the journal). Peers are asked
//! for text, the most compact form, and each answer is read up to [`FANOUT_BUDGET`] divided
//! among the peers asked (at most [`MAX_PEER_BYTES`] each: 10,000 of the longest records fit);
//! a larger answer (a journal of very long corrupt lines) makes that peer missing as
//! `too_large`. With [`MAX_FANOUTS`](crate::app::MAX_FANOUTS) views at once, peers' answers
//! take at most 16 MiB. The JSON form is produced from the held text as it is sent.
//!
//! # Concurrency
//!
//! A view takes a `/visits` stream slot and a fan-out slot for as long as its body is being
//! sent (503 with `Retry-After` when none is free): at most
//! [`MAX_FANOUTS`](crate::app::MAX_FANOUTS) views, each holding one worker, a thread per peer
//! for up to `--peer-timeout`, and its peers' answers.
//!
//! Each view is logged as one `fanout` line (peers asked, answered, missing, duration) and
//! counted in `/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use visit_journal::{History, Reader};

use crate::app::{App, Slot, log_journal_error};
use crate::http::{JSON, Reply, TEXT};
use crate::json;
use crate::log::{self, Value};
use crate::metrics::Endpoint;
use crate::peers::{self, Missing, PeerError};
use crate::query::{Format, StatsFormat, VisitsQuery};
use crate::stats::{self, DamagedFile, ReplicaStats, Summary};
use crate::stream::{Concat, JsonVisits, Slotted, Visits};

/// The most bytes of peers' answers one cluster view holds.
pub const FANOUT_BUDGET: u64 = 4 * 1024 * 1024;

/// The most bytes read from one peer's `/visits` answer.
pub const MAX_PEER_BYTES: u64 = 1024 * 1024;

/// The most bytes read from one peer's `/stats` answer: about 4 KB, and 80 bytes per day with
/// visits (every day is listed), so some 12,000 days (within [`FANOUT_BUDGET`] shared by the
/// peers asked: with 16 peers, 256 KiB each, about 3,000 days).
pub const MAX_STATS_BYTES: u64 = 1024 * 1024;

/// The response header saying that some replica is missing from a cluster answer.
pub const PARTIAL_HEADER: &str = "X-Visit-Partial";

/// A peer's part of the answer.
struct Part<T> {
    name: String,
    address: String,
    content: T,
}

/// What a fan-out gathered.
struct Gathered<T> {
    parts: Vec<Part<T>>,
    missing: Vec<Missing>,
    /// How the peer list names this replica (else its listening address).
    own_address: String,
}

/// Asks every peer for `path_and_query`, turns each body into a `T` with `check` (an error
/// makes the peer missing), runs `local` meanwhile, then counts and logs the fan-out.
fn gather<T: Send, L>(
    app: &App,
    endpoint: Endpoint,
    path_and_query: &str,
    max_bytes: u64,
    check: impl Fn(&str, Vec<u8>) -> Result<T, PeerError> + Sync,
    local: impl FnOnce() -> L,
) -> (Gathered<T>, L) {
    let started = Instant::now();
    let deadline = started + app.config.peer_timeout;
    let plan = peers::plan(
        &app.config.peers,
        app.config.peer_dns.as_ref(),
        app.local_addr(),
        app.config.public_port,
        deadline,
    );
    let share = FANOUT_BUDGET / plan.targets.len().max(1) as u64;
    // The peers require the same token (CONTRACT §11): send them the first.
    let authorization = app.read_tokens.as_ref().map(|t| t.bearer());
    let (answers, local) = peers::ask_all(
        &app.peer_agent,
        &plan.targets,
        path_and_query,
        authorization.as_deref(),
        deadline,
        share.min(max_bytes),
        local,
    );
    let asked = plan.targets.len();
    let mut missing = plan.missing;
    let mut parts = Vec::new();
    for (target, answer) in plan.targets.into_iter().zip(answers) {
        let part = answer.and_then(|a| Ok((a.name, check(&target.address, a.body)?)));
        match part {
            Ok((name, _)) if name == app.name || parts.iter().any(|p: &Part<T>| p.name == name) => {
                // The same replica reached twice (or a name given to two replicas).
                log::warn(
                    "fanout_duplicate_replica",
                    &[
                        ("name", Value::Str(&name)),
                        ("address", Value::Str(&target.address)),
                    ],
                );
            }
            Ok((name, content)) => parts.push(Part {
                name,
                address: target.address,
                content,
            }),
            Err(error) => missing.push(Missing {
                address: target.address,
                error,
            }),
        }
    }
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    missing.sort_by(|a, b| a.address.cmp(&b.address));
    let took = started.elapsed();
    app.metrics.fanout(
        endpoint,
        parts.len(),
        missing.iter().map(|m| m.error.kind()),
        took,
    );
    let missing_list = missing
        .iter()
        .map(|m| format!("{}={}", m.address, m.error.kind().as_str()))
        .collect::<Vec<_>>()
        .join(",");
    log::info(
        "fanout",
        &[
            ("endpoint", Value::Str(endpoint.as_str())),
            ("peers_asked", (asked as u64).into()),
            ("answered", (parts.len() as u64).into()),
            ("missing", (missing.len() as u64).into()),
            ("missing_peers", Value::Str(&missing_list)),
            ("partial", (!missing.is_empty()).into()),
            ("duration_us", (took.as_micros() as u64).into()),
        ],
    );
    let own_address = plan
        .own_address
        .unwrap_or_else(|| app.local_addr().to_string());
    (
        Gathered {
            parts,
            missing,
            own_address,
        },
        local,
    )
}

/// A peer's text `/visits` body, read by the library like a journal of its own: it must end
/// with a whole line, since a torn end means the answer was cut short.
fn check_visits(address: &str, body: Vec<u8>) -> Result<Reader, PeerError> {
    let reader = Reader::from_bytes(format!("peer {address}"), body);
    if reader.torn_tail_bytes() > 0 {
        return Err(PeerError::BadResponse(
            "the answer does not end with a whole line".into(),
        ));
    }
    Ok(reader)
}

/// A peer's `/stats?scope=local` body: its one replica's counts, and its damaged files.
fn check_stats(_address: &str, body: Vec<u8>) -> Result<(Summary, Vec<DamagedFile>), PeerError> {
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| PeerError::BadResponse(format!("not JSON: {e}")))?;
    let summary = Summary::from_json(&v["replicas"][0])
        .ok_or_else(|| PeerError::BadResponse("not the counts of one replica".into()))?;
    let damaged = stats::damaged_from_json(&v)
        .ok_or_else(|| PeerError::BadResponse("a bad list of damaged files".into()))?;
    Ok((summary, damaged))
}

/// `GET /visits?scope=cluster`. `stream` is the `/visits` slot the caller took; `open`
/// opens the local journal at the last `limit` lines (or says why not).
pub fn visits(
    app: &Arc<App>,
    q: &VisitsQuery,
    stream: Slot,
    open: impl FnOnce(u64) -> Result<History, Reply>,
) -> Reply {
    let Some(fanout) = app.open_fanout() else {
        return busy();
    };
    let limit = q.per_replica_limit();
    let path = format!("/visits?scope=local&limit={limit}");
    let (g, local) = gather(
        app,
        Endpoint::Visits,
        &path,
        MAX_PEER_BYTES,
        check_visits,
        || open(limit),
    );
    let local = match local {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    // This replica's part streams from its journal; each peer's is read from its answer.
    let mut replicas: Vec<(String, String, Visits)> =
        vec![(app.name.clone(), g.own_address, local.into())];
    replicas.extend(
        g.parts
            .into_iter()
            .map(|p| (p.name, p.address, p.content.into())),
    );
    replicas.sort_by(|a, b| a.0.cmp(&b.0));
    let total = replicas.len() + g.missing.len();

    let mut body = Concat::new();
    let content_type = match q.format {
        Format::Text => {
            let mut head = String::new();
            if !g.missing.is_empty() {
                let _ = writeln!(
                    head,
                    "# partial: {} of {total} replicas missing",
                    g.missing.len()
                );
            }
            for m in &g.missing {
                let _ = writeln!(
                    head,
                    "# missing {}: {} ({})",
                    m.address,
                    m.error.kind().as_str(),
                    m.error.detail().replace('\n', " ")
                );
            }
            body.push_bytes(head);
            for (name, address, visits) in replicas {
                body.push_bytes(format!("# replica {name} {address}\n"));
                body.push(visits.into_text());
            }
            TEXT
        }
        Format::Json => {
            let mut head = String::new();
            json::Object::new(&mut head)
                .str("replica", &app.name)
                .bool("partial", !g.missing.is_empty())
                .key("replicas")
                .push('[');
            body.push_bytes(head);
            let mut items = json::Items::new("\n", ",\n");
            for (name, address, visits) in replicas {
                let mut head = String::new();
                items.next(&mut head);
                json::Object::new(&mut head)
                    .str("name", &name)
                    .str("address", &address)
                    .key("visits");
                body.push_bytes(head);
                body.push(JsonVisits::new(visits, Arc::clone(app)));
                body.push_bytes("}");
            }
            // The object opened in the first head ends here, after the streamed parts.
            let mut tail = String::from("],\n");
            json::string(&mut tail, "missing");
            tail.push(':');
            peers::write_missing(&mut tail, &g.missing);
            tail.push_str("}\n");
            body.push_bytes(tail);
            JSON
        }
        Format::Csv => {
            // Every row has the same shape: the missing peers are named by X-Visit-Partial
            // (and /stats), not in the rows.
            body.push_bytes(crate::csv::CLUSTER_VISITS_HEADER);
            for (name, _, visits) in replicas {
                body.push(crate::stream::csv_visits(app, visits, Some(&name)));
            }
            crate::csv::CONTENT_TYPE
        }
    };
    view(
        app,
        Reply::stream(
            content_type,
            Slotted::new(Slotted::new(body, fanout), stream),
        ),
        &g.missing,
    )
}

/// `GET /stats?scope=cluster`.
pub fn stats(app: &Arc<App>, format: StatsFormat) -> Reply {
    let (replicas, missing) = match gather_stats(app, Endpoint::Stats) {
        Ok(parts) => parts,
        Err(reply) => return reply,
    };
    let reply = match format {
        StatsFormat::Json => {
            Reply::json(200, stats::render(&app.name, "cluster", replicas, &missing))
        }
        StatsFormat::Csv => Reply::text(200, stats::render_csv(&replicas))
            .with_header("Content-Type", crate::csv::CONTENT_TYPE),
    };
    view(app, reply, &missing)
}

/// Every replica's counts (this one's from its journal, the peers' from their
/// `/stats?scope=local`), sorted by name, and the peers that did not answer: what
/// `/stats?scope=cluster` and the dashboard (`endpoint`, for the metrics) show. Holds a
/// fan-out slot meanwhile.
///
/// # Errors
///
/// The reply to send instead: 503 when every fan-out slot is taken or the local journal
/// cannot be read.
pub fn gather_stats(
    app: &Arc<App>,
    endpoint: Endpoint,
) -> Result<(Vec<ReplicaStats>, Vec<Missing>), Reply> {
    let Some(_fanout) = app.open_fanout() else {
        return Err(busy());
    };
    let (g, local) = gather(
        app,
        endpoint,
        "/stats?scope=local",
        MAX_STATS_BYTES,
        check_stats,
        || app.journal.counts(),
    );
    let local = match local {
        Ok(counts) => counts,
        Err(e) => {
            log_journal_error("stats_read_failed", app.journal.path(), &e);
            return Err(Reply::unavailable("the journal cannot be read\n"));
        }
    };
    let mut replicas = vec![ReplicaStats {
        name: app.name.clone(),
        address: g.own_address,
        summary: Summary::of(&local),
        damaged: DamagedFile::list(local.damaged()),
    }];
    replicas.extend(g.parts.into_iter().map(|p| ReplicaStats {
        name: p.name,
        address: p.address,
        summary: p.content.0,
        damaged: p.content.1,
    }));
    replicas.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((replicas, g.missing))
}

/// Adds the headers of a cluster answer: who answered, and whether a replica is missing.
pub fn view(app: &App, reply: Reply, missing: &[Missing]) -> Reply {
    reply
        .with_header(peers::REPLICA_HEADER, app.name.clone())
        .with_header(PARTIAL_HEADER, (!missing.is_empty()).to_string())
}

fn busy() -> Reply {
    Reply::unavailable("too many cluster views in progress\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: Reader) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut r.into_text(), &mut out).unwrap();
        out
    }

    #[test]
    fn peer_bodies_are_checked() {
        assert_eq!(text(check_visits("p:1", Vec::new()).unwrap()), b"");
        assert_eq!(
            text(check_visits("p:1", b"a\nb\n".to_vec()).unwrap()),
            b"a\nb\n"
        );
        assert!(matches!(
            check_visits("p:1", b"a\nb".to_vec()),
            Err(PeerError::BadResponse(_))
        ));
        assert!(matches!(
            check_stats("p:1", b"{".to_vec()),
            Err(PeerError::BadResponse(_))
        ));
        assert!(matches!(
            check_stats("p:1", b"{\"replicas\":[]}".to_vec()),
            Err(PeerError::BadResponse(_))
        ));
    }

    #[test]
    fn a_peers_corrupt_line_is_named_with_the_peer_line_and_byte() {
        let body = b"2026-11-26T10:44:36.123+03:00 - 10.0.0.7\nnot a visit\n".to_vec();
        let mut visits = check_visits("10.0.0.2:8080", body).unwrap();
        assert!(visits.next().unwrap().is_ok());
        let e = visits.next().unwrap().unwrap_err();
        assert!(e.is_corrupt());
        assert!(e.to_string().starts_with("peer 10.0.0.2:8080:2: "), "{e}");
        assert!(visits.next().is_none());
    }
}
