//! The smallest web counter: `GET /` records the caller's address and answers with the count;
//! anything else is 404 and not recorded.
//!
//! ```text
//! cargo run --example tiny_counter -- [--listen ADDR] [--file PATH] [--requests N]
//! ```
//!
//! Defaults: `127.0.0.1:0` (a free port, printed), a file in the system's temporary directory,
//! and serving forever. One thread handles the requests, to show the core only: the production
//! server (`visit-server`) adds a worker pool, trusted proxies (`X-Forwarded-For`), health and
//! readiness probes, metrics, limits and timeouts, reopening the journal after a failed fsync,
//! and a graceful shutdown on SIGTERM.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an example shows what it does on stdout, and its errors on stderr"
)]

use std::error::Error;
use std::path::PathBuf;

use tiny_http::{Method, Response, Server};
use visit_journal::{Journal, Visit};

const USAGE: &str = "usage: tiny_counter [--listen ADDR] [--file PATH] [--requests N]";

fn main() -> Result<(), Box<dyn Error>> {
    let mut listen = "127.0.0.1:0".to_string();
    let mut file = std::env::temp_dir().join("tiny_counter/visits.txt");
    let mut requests = usize::MAX;
    let mut args = std::env::args_os().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match (flag.to_str(), value.to_str()) {
            (Some("--listen"), Some(addr)) => listen = addr.to_string(),
            (Some("--file"), _) => file = PathBuf::from(value),
            (Some("--requests"), Some(n)) => requests = n.parse().map_err(|_| USAGE)?,
            _ => return Err(USAGE.into()),
        }
    }

    let journal = Journal::open(&file)?;
    // Counted once, then kept here: right as long as no other process appends to the file.
    let mut visits = journal.count()?;
    let server = Server::http(&listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!(
        "serving http://{}/ with {visits} visits in {}",
        server.server_addr(),
        file.display()
    );

    for request in server.incoming_requests().take(requests) {
        // The TCP peer (behind a proxy, the proxy). `to_canonical` turns `::ffff:a.b.c.d`, as a
        // listener on `[::]` sees an IPv4 client, back into `a.b.c.d`.
        let peer = request.remote_addr().map(|addr| addr.ip().to_canonical());
        let response = match (request.method(), request.url(), peer) {
            // Answered only once the visit is on disk.
            (Method::Get, "/", Some(ip)) => match journal.append(&Visit::now(ip)) {
                Ok(()) => {
                    visits += 1;
                    Response::from_string(format!("Hello! You are visit number {visits}.\n"))
                }
                Err(e) => {
                    eprintln!("{e}"); // It names the file; the client needs no such detail.
                    Response::from_string("Try again later.\n").with_status_code(503)
                }
            },
            _ => Response::from_string("Not found.\n").with_status_code(404),
        };
        // A client that hung up before its answer is no reason to stop.
        let _ = request.respond(response);
    }
    Ok(())
}
