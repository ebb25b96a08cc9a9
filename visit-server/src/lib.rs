//! `visit-server`: the HTTP face of a [`visit_journal`] file.
//!
//! `GET /` records the client's visit as one durable line and greets; `GET /visits` streams
//! the journal back; `GET /stats` counts it; with `?scope=cluster` both answer for every
//! replica of a StatefulSet, each of which keeps writing only its own journal.
//! It replaces the classic Kubernetes lab's Flask app with one people can rely on: a `200`
//! means the visit is on disk (fsynced), nothing a client sends can become a line, probes and
//! scanners are never counted, and the server stays up under abuse.
//! The flags, endpoints, logs and metrics are described in the repository's README (and
//! `visit-server --help`); [`routes`] has the table of endpoints.
//!
//! # Layout
//!
//! Modules are stacked: each imports only modules below it, never one above or beside it in
//! a cycle (the `layout` test below checks the source against this list).
//!
//! 1. [`server`]: the listening socket, the worker pool and the shutdown sequence.
//! 2. [`routes`]: `handle(&App, &RequestInfo) -> Reply`, one match on (method, path), and the
//!    handlers. No socket.
//!    [`tiny_http_quirks`]: each tiny_http 0.12 workaround (the ticker, condemned
//!    connections), with its upstream issue and the test that pins it.
//! 3. [`cluster`]: `?scope=cluster` answers: the fan-out, its bounds, and the union of the
//!    replicas' parts, tagged, with the missing peers.
//!    [`dashboard`]: `/dashboard`, the counts of `/stats` as one self-contained HTML page with
//!    an SVG chart (pure: counts in, HTML out).
//! 4. [`stats`]: `/stats`: the library's counts of the journal's history (per day, per
//!    address, damaged files) as JSON and CSV, and the sum over replicas.
//!    [`stream`]: `/visits` bodies (text and JSON) that stream in constant memory, over the
//!    journal's whole history (its sealed segments, then its live file).
//! 5. [`app`]: the shared state: the journal, metrics, readiness and its self-healing.
//!    [`http`]: the request and response model, the screen that refuses bodies, smuggling
//!    material and oversized headers, and the one response writer with the default headers.
//! 6. [`config`]: flags > environment > defaults; `--help`, `--version`.
//!    [`metrics`]: which metrics exist, counted in atomics, rendered for `/metrics`.
//!    [`token`]: the read tokens of `--read-token-file`: the file's rules, the credentials a
//!    request presents, the constant-time comparison, following the file as it changes.
//! 7. [`peers`]: the cluster view's client: peer addresses, name lookups, recognising this
//!    replica, asking every peer within one deadline (ureq).
//!    [`client_addr`]: the TCP peer, or the rightmost untrusted `X-Forwarded-For` entry when
//!    the peer is a trusted proxy.
//!    [`query`]: the strict `?limit=&format=&scope=` of `/visits` and `?scope=&format=` of
//!    `/stats`.
//!    [`log`]: one JSON object per line on stdout.
//!    [`shutdown`]: SIGTERM/SIGINT and the drain timing.
//! 8. [`json`]: the one JSON writer, for logs and bodies.
//!    [`exposition`]: the Prometheus text format: labelled counters, histograms.
//!    [`csv`]: RFC 4180 fields, and `/visits` rows streamed from a
//!    [`Reader`](visit_journal::Reader), for `?format=csv`.
//!
//! `main.rs` only wires these together (and raises the limit of open files, and starts the
//! background count of the sealed segments, which the journal keeps).
//!
//! # Architecture Invariants
//!
//! - Only `GET /` appends, and only through [`app::App::record_visit`], with a typed
//!   [`std::net::IpAddr`]: no string from a request reaches the journal.
//! - A `200` for `GET /` is sent only after `Journal::append` returned `Ok`.
//! - This crate knows no byte of the file format: it writes [`visit_journal::Visit`] values,
//!   streams [`visit_journal::History`] and [`visit_journal::Reader`] text, and formats JSON
//!   from parsed visits.
//! - Request bodies are never read.
//! - A cluster view asks its peers only for `scope=local`, which never fans out, and only
//!   `GET /visits` and `GET /stats`, which never record: no recursion, no visit.
//! - No replica writes to another's journal: the cluster view only reads.
//! - Counting is the library's ([`visit_journal::Journal::counts`]): this crate keeps no
//!   counts of its own, so it cannot keep a stale one.
//! - With `--read-token-file`, `/visits`, `/stats` and `/dashboard` check the request's token
//!   before anything else (no journal is opened, no slot taken, no peer asked for a refused
//!   request), and no token or credential is ever logged or answered.

pub mod app;
pub mod client_addr;
pub mod cluster;
pub mod config;
pub mod csv;
pub mod dashboard;
pub mod exposition;
pub mod http;
pub mod json;
pub mod log;
pub mod metrics;
pub mod peers;
pub mod query;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod stream;
pub mod tiny_http_quirks;
pub mod token;

#[cfg(test)]
mod layout {
    //! Checks the `# Layout` of the crate docs against the source: every module imports only
    //! modules in lower layers.

    /// The layers of the crate docs, top first.
    const LAYERS: &[&[&str]] = &[
        &["server"],
        &["routes", "tiny_http_quirks"],
        &["cluster", "dashboard"],
        &["stats", "stream"],
        &["app", "http"],
        &["config", "metrics", "token"],
        &["peers", "client_addr", "query", "log", "shutdown"],
        &["json", "exposition", "csv"],
    ];

    fn layer(module: &str) -> usize {
        LAYERS
            .iter()
            .position(|l| l.contains(&module))
            .unwrap_or_else(|| panic!("module {module} is not in the layout"))
    }

    /// The crate modules `source` names (`crate::x`, `use crate::{x, y::z}`), ignoring
    /// comments and the unit tests at the bottom.
    fn imports(source: &str) -> Vec<String> {
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        let mut found = Vec::new();
        for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    // Split the group at its top-level commas: `{http::{A, B}, json}`.
                    let (mut depth, mut items, mut item) = (0, Vec::new(), String::new());
                    for c in group.chars() {
                        match c {
                            '}' if depth == 0 => break,
                            ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                            c => {
                                depth += i32::from(c == '{') - i32::from(c == '}');
                                item.push(c);
                            }
                        }
                    }
                    items.push(item);
                    for item in items {
                        let name = item.trim().split([':', ' ']).next().unwrap_or_default();
                        found.push(name.to_string());
                    }
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    found.push(name);
                }
            }
        }
        found.retain(|n| !n.is_empty());
        found
    }

    #[test]
    fn modules_import_only_lower_layers() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut checked = 0;
        for module in LAYERS.iter().flat_map(|l| l.iter()) {
            let source = std::fs::read_to_string(dir.join(format!("{module}.rs"))).unwrap();
            for import in imports(&source).iter().filter(|i| *i != module) {
                assert!(
                    layer(import) > layer(module),
                    "{module} imports {import}, which is not in a lower layer"
                );
            }
            checked += 1;
        }
        // Every module file is in the layout.
        let files = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".rs") && n != "lib.rs" && n != "main.rs")
            .count();
        assert_eq!(checked, files);
    }

    #[test]
    fn imports_are_found() {
        let src = "use crate::app::App;\nuse crate::{http::{Reply, TEXT}, json};\n\
                   // crate::ignored\nlet x = crate::peers::agent();\n#[cfg(test)]\nuse crate::z;";
        assert_eq!(imports(src), ["app", "http", "json", "peers"]);
    }
}
