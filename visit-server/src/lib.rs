//! `visit-server`: the HTTP face of a [`visit_journal`] file.
//!
//! `GET /` records the client's visit as one durable line and greets; `GET /visits` streams
//! the journal back; `GET /stats` counts it; with `?scope=cluster` both answer for every
//! replica of a StatefulSet, each of which keeps writing only its own journal. It replaces the classic Kubernetes lab's Flask app with one people can
//! rely on: a `200` means the visit is on disk (fsynced), nothing a client sends can become a
//! line, probes and scanners are never counted, and the server stays up under abuse. The
//! interface is section 3 of the project's contract; the repository README shows a session.
//!
//! # Layout
//!
//! - [`config`]: flags > environment > defaults; `--help`, `--version`.
//! - [`client_addr`]: the TCP peer, or the rightmost untrusted `X-Forwarded-For` entry when
//!   the peer is a trusted proxy.
//! - [`query`]: the strict `?limit=&format=&scope=` of `/visits` and `?scope=` of `/stats`.
//! - [`routes`]: `handle(&App, &RequestInfo) -> Reply`, one match on (method, path), and the
//!   screen that refuses bodies, smuggling material and oversized headers. No socket.
//! - [`app`]: the shared state: the journal, metrics, readiness and its self-healing.
//! - [`stream`]: `/visits` bodies (text and JSON) that stream in constant memory.
//! - [`stats`]: `/stats`: counts per day and per address in bounded memory.
//! - [`peers`]: the cluster view's client: peer addresses, name lookups, recognising this
//!   replica, asking every peer within one deadline (ureq).
//! - [`cluster`]: `?scope=cluster` answers: the fan-out, its bounds, and the union of the
//!   replicas' parts, tagged, with the missing peers.
//! - [`dashboard`]: `/dashboard`, the counts of `/stats` as one self-contained HTML page with
//!   an SVG chart (pure: counts in, HTML out).
//! - [`csv`]: `?format=csv`: RFC 4180 fields, `/stats` rows, and `/visits` rows streamed from
//!   the text form.
//! - [`metrics`]: counters in atomics, rendered as Prometheus text.
//! - [`log`]: one JSON object per line on stdout.
//! - [`server`]: the listening socket, the worker pool over tiny_http, and what is (and is
//!   not) bounded.
//! - [`shutdown`]: SIGTERM/SIGINT and the drain timing.
//!
//! `main.rs` only wires these together.
//!
//! # Architecture Invariants
//!
//! - Only `GET /` appends, and only through [`app::App::record_visit`], with a typed
//!   [`std::net::IpAddr`]: no string from a request reaches the journal.
//! - A `200` for `GET /` is sent only after `Journal::append` returned `Ok`.
//! - This crate knows no byte of the file format: it writes [`visit_journal::Visit`] values,
//!   streams [`visit_journal::Reader`] text, and formats JSON from parsed visits.
//! - Request bodies are never read.
//! - A cluster view asks its peers only for `scope=local`, which never fans out, and only
//!   `GET /visits` and `GET /stats`, which never record: no recursion, no visit.
//! - No replica writes to another's journal: the cluster view only reads.

pub mod app;
pub mod client_addr;
pub mod cluster;
pub mod config;
pub mod csv;
pub mod dashboard;
pub mod log;
pub mod metrics;
pub mod peers;
pub mod query;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod stream;
