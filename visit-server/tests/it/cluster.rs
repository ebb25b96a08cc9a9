//! The cluster view: three replicas on loopback ports, each listing all three with `--peers`,
//! and peers that are dead, silent or stalled.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    Response, Scratch, Server, free_ports, ips, journal_lines, source, start_replicas, visit_from,
};

/// Generous on a loaded 2-core machine: a cluster answer must come within the peer timeout
/// plus this.
const SLACK: Duration = Duration::from_secs(3);

/// Replicas `visit-server-0..n` on reserved ports, each listing every address (its own
/// included) with `--peers`, plus `extra` peers.
struct Cluster {
    dirs: Vec<Scratch>,
    servers: Vec<Server>,
}

impl Cluster {
    fn start(n: usize, extra: &[String], args: &[&str]) -> Cluster {
        let dirs: Vec<Scratch> = (0..n).map(|_| Scratch::new()).collect();
        let servers = start_replicas(&dirs, extra, args);
        Cluster { dirs, servers }
    }

    /// Sends `n` visits round-robin, each from its own address; returns the addresses each
    /// replica was sent.
    fn visit_round_robin(&self, n: u32) -> Vec<BTreeSet<String>> {
        let mut sent = vec![BTreeSet::new(); self.servers.len()];
        for i in 0..n {
            let replica = i as usize % self.servers.len();
            let src = source(20_000 + i);
            assert!(visit_from(src, self.servers[replica].addr).unwrap());
            sent[replica].insert(src.to_string());
        }
        sent
    }

    fn line_counts(&self) -> Vec<usize> {
        self.dirs
            .iter()
            .map(|d| journal_lines(&d.file()).len())
            .collect()
    }
}

fn json(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// `(name, address, ips)` of each replica in a JSON cluster answer.
fn replicas(v: &Value) -> Vec<(String, String, BTreeSet<String>)> {
    v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let visits = r["visits"].as_array().unwrap();
            for visit in visits {
                let keys: BTreeSet<&str> = visit
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(keys, BTreeSet::from(["time", "ip"]));
            }
            (
                r["name"].as_str().unwrap().to_string(),
                r["address"].as_str().unwrap().to_string(),
                visits
                    .iter()
                    .map(|v| v["ip"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// `(address, error)` of each missing peer.
pub fn missing(v: &Value) -> Vec<(String, String)> {
    v["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["address"].as_str().unwrap().to_string(),
                m["error"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Parses a text cluster answer into `(heading lines, [(replica heading, lines)])`.
fn text_parts(text: &str) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let mut head = Vec::new();
    let mut parts: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(replica) = line.strip_prefix("# replica ") {
            parts.push((replica.to_string(), Vec::new()));
        } else if line.starts_with("# ") {
            assert!(parts.is_empty(), "a heading after the replicas: {text}");
            head.push(line.to_string());
        } else {
            parts
                .last_mut()
                .expect("a line before any replica")
                .1
                .push(line.to_string());
        }
    }
    (head, parts)
}

fn fanout_logs(server: &Server) -> Vec<Value> {
    fanouts_in(&server.logs())
}

fn fanouts_in(logs: &[String]) -> Vec<Value> {
    logs.iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "fanout")
        .collect()
}

/// The server's fanout lines once there are at least `n` of them.
fn await_fanouts(server: &Server, n: usize) -> Vec<Value> {
    fanouts_in(&server.await_logs("fanout line", |l| fanouts_in(l).len() >= n))
}

fn metric(server: &Server, series: &str) -> f64 {
    let text = server.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series}"))
        .parse()
        .unwrap()
}

#[test]
fn any_replica_shows_every_visit_tagged_with_its_replica() {
    let c = Cluster::start(3, &[], &[]);
    let sent = c.visit_round_robin(9);
    let names: Vec<String> = (0..3).map(|i| format!("visit-server-{i}")).collect();
    let want: Vec<(String, String, BTreeSet<String>)> = (0..3)
        .map(|i| {
            (
                names[i].clone(),
                c.servers[i].addr.to_string(),
                sent[i].clone(),
            )
        })
        .collect();

    for server in &c.servers {
        let r = server.get("/visits?scope=cluster&format=json");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.header("X-Visit-Partial"), Some("false"));
        let v = json(&r);
        // Each replica once (its own address is in its --peers), with exactly its visits.
        assert_eq!(replicas(&v), want, "from {}", server.addr);
        assert!(missing(&v).is_empty());
        assert_eq!(v["partial"], false);
        let all: usize = want.iter().map(|w| w.2.len()).sum();
        assert_eq!(all, 9);
    }

    // The text form: a heading per replica, then its lines, byte for byte as in its file.
    let r = c.servers[1].get("/visits?scope=cluster");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Visit-Replica"), Some("visit-server-1"));
    let (head, parts) = text_parts(&r.text());
    assert!(head.is_empty(), "{head:?}");
    let headings: Vec<&str> = parts.iter().map(|p| p.0.as_str()).collect();
    let expected: Vec<String> = (0..3)
        .map(|i| format!("{} {}", names[i], c.servers[i].addr))
        .collect();
    assert_eq!(headings, expected);
    for (i, (_, lines)) in parts.iter().enumerate() {
        assert_eq!(lines, &journal_lines(&c.dirs[i].file()));
    }

    // ?limit=N applies per replica.
    let v = json(&c.servers[2].get("/visits?scope=cluster&format=json&limit=1"));
    for (i, (_, _, got)) in replicas(&v).iter().enumerate() {
        let last = ips(&journal_lines(&c.dirs[i].file())).pop().unwrap();
        assert_eq!(got, &BTreeSet::from([last]));
    }

    // The local scope is the default, names the replica, and never fans out.
    let local = c.servers[0].get("/visits?scope=local");
    assert_eq!(local.header("X-Visit-Replica"), Some("visit-server-0"));
    assert_eq!(
        local.text(),
        journal_lines(&c.dirs[0].file()).join("\n") + "\n"
    );
    assert_eq!(
        c.servers[0].get("/visits").header("X-Visit-Replica"),
        Some("visit-server-0")
    );
    for bad in [
        "/visits?scope=all",
        "/stats?scope=all",
        "/stats?limit=1",
        "/visits?scope=cluster&limit=10001",
    ] {
        assert_eq!(c.servers[0].get(bad).status, 400, "{bad}");
    }

    // No recursion: a replica asked by a peer answers locally and never fans out in turn.
    let before: Vec<usize> = c.servers.iter().map(|s| fanout_logs(s).len()).collect();
    assert_eq!(c.servers[0].get("/visits?scope=cluster").status, 200);
    await_fanouts(&c.servers[0], before[0] + 1);
    // A peer that fanned out would have logged it before it answered.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let after: Vec<usize> = c.servers.iter().map(|s| fanout_logs(s).len()).collect();
    assert_eq!(after, [before[0] + 1, before[1], before[2]]);

    // Fan-outs never record a visit, and peers are only ever asked for their local scope.
    assert_eq!(c.line_counts(), [3, 3, 3]);
    for server in &c.servers {
        let fanouts = fanout_logs(server);
        assert!(!fanouts.is_empty());
        for f in &fanouts {
            assert_eq!(f["peers_asked"], 2, "{f}");
            assert_eq!(f["missing"], 0, "{f}");
            assert!(f["duration_us"].is_u64());
        }
        let asked: Vec<Value> = server
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "request")
            .filter(|v| {
                v["path"]
                    .as_str()
                    .unwrap()
                    .starts_with("/visits?scope=local&limit=")
            })
            .collect();
        assert!(!asked.is_empty());
        assert!(asked.iter().all(|v| v["status"] == 200));
    }
    assert_eq!(
        metric(
            &c.servers[0],
            "visit_server_fanouts_total{endpoint=\"visits\",result=\"complete\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &c.servers[0],
            "visit_server_peer_answers_total{result=\"ok\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(&c.servers[0], "visit_server_fanout_duration_seconds_count"),
        2.0
    );
    assert_eq!(
        metric(&c.servers[0], "visit_server_visits_recorded_total"),
        3.0
    );
}

#[test]
fn a_killed_replica_is_missing_and_the_answer_comes_within_the_timeout() {
    let mut c = Cluster::start(3, &[], &["--peer-timeout", "1s"]);
    let sent = c.visit_round_robin(9);
    let dead = c.servers[2].addr.to_string();
    c.servers[2].kill9();

    for format in ["json", "text"] {
        let started = Instant::now();
        let r = c.servers[0].get(&format!("/visits?scope=cluster&format={format}"));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1) + SLACK, "{took:?}");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("X-Visit-Partial"), Some("true"));
        if format == "json" {
            let v = json(&r);
            assert_eq!(v["partial"], true);
            let got = replicas(&v);
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].2, sent[0]);
            assert_eq!(got[1].2, sent[1]);
            assert_eq!(missing(&v), [(dead.clone(), "refused".to_string())]);
        } else {
            let (head, parts) = text_parts(&r.text());
            assert_eq!(head[0], "# partial: 1 of 3 replicas missing");
            assert!(
                head[1].starts_with(&format!("# missing {dead}: refused")),
                "{head:?}"
            );
            assert_eq!(parts.len(), 2);
        }
    }
    let stats = json(&c.servers[1].get("/stats?scope=cluster"));
    assert_eq!(stats["partial"], true);
    assert_eq!(stats["total"]["visits"], 6);
    assert_eq!(missing(&stats), [(dead, "refused".to_string())]);
    assert_eq!(
        metric(
            &c.servers[0],
            "visit_server_peer_answers_total{result=\"refused\"}"
        ),
        2.0
    );
}

/// A peer that accepts connections and then does nothing, or sends headers and stalls.
struct Stalled {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Stalled {
    /// `headers`: what to send after reading the request (nothing: never answer at all).
    fn start(headers: &'static [u8]) -> Stalled {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(500)))
                            .unwrap();
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(headers);
                        held.push(s);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Stalled {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn peers_that_accept_and_never_answer_do_not_hang_the_request() {
    let silent = Stalled::start(b"");
    let headers = Stalled::start(
        b"HTTP/1.1 200 OK\r\nX-Visit-Replica: stalled\r\nContent-Length: 1000\r\n\r\n2026-11-26",
    );
    // Listening, never accepting: connections wait in the backlog.
    let backlog = TcpListener::bind("127.0.0.1:0").unwrap();
    let extra = [silent.addr, headers.addr, backlog.local_addr().unwrap()].map(|a| a.to_string());
    let c = Cluster::start(1, &extra, &["--peer-timeout", "500ms"]);
    assert!(visit_from(source(1), c.servers[0].addr).unwrap());

    // Several at once: each is bounded by the same deadline.
    let answers: Vec<(Duration, Response)> = thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                let server = &c.servers[0];
                s.spawn(move || {
                    let started = Instant::now();
                    let path = if i == 0 {
                        "/stats?scope=cluster"
                    } else {
                        "/visits?scope=cluster&format=json"
                    };
                    let r = server.get(path);
                    (started.elapsed(), r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (took, r) in &answers {
        assert!(*took < Duration::from_millis(500) + SLACK, "{took:?}");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("X-Visit-Partial"), Some("true"));
        let v = json(r);
        assert_eq!(v["replicas"].as_array().unwrap().len(), 1);
        let mut got = missing(&v);
        got.sort();
        let mut want: Vec<(String, String)> = extra
            .iter()
            .map(|a| (a.clone(), "timeout".to_string()))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }
    assert_eq!(c.line_counts(), [1]);
}

#[test]
fn a_replica_reached_twice_appears_once() {
    // Wildcard listeners, as in a pod: each is reachable on every loopback address.
    let ports = free_ports(2);
    let (a, b) = (ports[0], ports[1]);
    let peers = format!("127.0.0.1:{a},127.0.0.3:{a},127.0.0.1:{b},127.0.0.2:{b},127.0.0.1:{b}");
    let dirs = [Scratch::new(), Scratch::new()];
    let servers: Vec<Server> = [("r-a", a), ("r-b", b)]
        .iter()
        .zip(&dirs)
        .map(|((name, port), d)| {
            Server::start_on(
                &format!("0.0.0.0:{port}"),
                &d.file(),
                &["--name", name, "--peers", &peers],
            )
        })
        .collect();
    let v = json(&servers[0].get("/visits?scope=cluster&format=json"));
    let got: Vec<(String, String)> = replicas(&v).into_iter().map(|(n, a, _)| (n, a)).collect();
    // This replica by address (both of its addresses), the other by name (its first address).
    assert_eq!(
        got,
        [
            ("r-a".to_string(), format!("127.0.0.1:{a}")),
            ("r-b".to_string(), format!("127.0.0.1:{b}"))
        ]
    );
    assert!(missing(&v).is_empty());
    // The peer was asked twice (two addresses), never this replica itself.
    assert_eq!(await_fanouts(&servers[0], 1)[0]["peers_asked"], 2);
    let asked_self = servers[0]
        .logs()
        .iter()
        .any(|l| l.contains("\"path\":\"/visits?scope=local"));
    assert!(!asked_self);
}

/// A stand-in for the pod's front proxy: accepts on its own loopback port and relays each
/// connection to `target`, counting the connections it was given.
struct Forwarder {
    addr: SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Forwarder {
    fn start(target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (Arc::clone(&connections), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                // Bounded: an idle relay gives up after a few seconds.
                for s in [&client, &server] {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Forwarder {
            addr,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a replica behind a forwarder answered: see [`behind_a_forwarder`].
struct Proxied {
    /// The forwarder's address (the replica's public one) and the other replica's.
    public: String,
    other: String,
    /// `(name, address)` of each replica in the JSON cluster answer, and in cluster stats.
    visits: Vec<(String, String)>,
    stats: Vec<(String, String)>,
    /// How many connections the forwarder was given.
    connections: usize,
    logs: Vec<String>,
}

/// One replica behind a forwarder (as behind the pod's proxy), listing the forwarder's
/// address and another replica as its peers, with `--public-port` or without; asks it for
/// the cluster view of visits and stats.
fn behind_a_forwarder(public_port: bool) -> Proxied {
    let ports = free_ports(2);
    let (listen, other) = (
        SocketAddr::from(([127, 0, 0, 1], ports[0])),
        SocketAddr::from(([127, 0, 0, 1], ports[1])),
    );
    let proxy = Forwarder::start(listen);
    let peers = format!("{},{other}", proxy.addr);
    let port = proxy.addr.port().to_string();
    let mut args = vec!["--name", "r-a", "--peers", &peers];
    if public_port {
        args.extend_from_slice(&["--public-port", &port]);
    }
    let dirs = [Scratch::new(), Scratch::new()];
    let server = Server::start_on(&listen.to_string(), &dirs[0].file(), &args);
    let _other = Server::start_on(&other.to_string(), &dirs[1].file(), &["--name", "r-b"]);
    let names = |v: &Value| -> Vec<(String, String)> {
        assert!(missing(v).is_empty(), "{v}");
        v["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let field = |k: &str| r[k].as_str().unwrap().to_string();
                (field("name"), field("address"))
            })
            .collect()
    };
    let visits = names(&json(&server.get("/visits?scope=cluster&format=json")));
    let stats = names(&json(&server.get("/stats?scope=cluster")));
    // Log lines arrive through a pipe: wait for both fan-outs' summaries, which each follow
    // any duplicate that fan-out dropped.
    await_fanouts(&server, 2);
    Proxied {
        public: proxy.addr.to_string(),
        other: other.to_string(),
        visits,
        stats,
        connections: proxy.connections(),
        logs: server.logs(),
    }
}

#[test]
fn behind_a_proxy_the_public_port_is_this_replica() {
    let p = behind_a_forwarder(true);
    // Once, by the address the peers know it by, and never asked through the proxy.
    let want = [
        ("r-a".to_string(), p.public.clone()),
        ("r-b".to_string(), p.other.clone()),
    ];
    assert_eq!(p.visits, want);
    assert_eq!(p.stats, want);
    assert_eq!(p.connections, 0, "asked itself through the forwarder");
    let duplicates = |logs: &[String]| {
        logs.iter()
            .filter(|l| l.contains("fanout_duplicate_replica"))
            .count()
    };
    assert_eq!(duplicates(&p.logs), 0, "{:#?}", p.logs);
    let fanouts: Vec<Value> = p
        .logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "fanout")
        .collect();
    assert_eq!(fanouts.len(), 2);
    assert!(fanouts.iter().all(|f| f["peers_asked"] == 1), "{fanouts:?}");
    let port = p.public.rsplit_once(':').unwrap().1;
    assert!(
        p.logs.iter().any(|l| l.contains("\"event\":\"starting\"")
            && l.contains(&format!("\"public_port\":\"{port}\""))),
        "{:#?}",
        p.logs
    );

    // Without --public-port the replica does not know the forwarder's address for its own:
    // it asks itself through it, drops the answer by name, and shows its listening address.
    let p = behind_a_forwarder(false);
    let names: Vec<&str> = p.visits.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["r-a", "r-b"]);
    assert_ne!(p.visits[0].1, p.public);
    assert_eq!(p.stats, p.visits);
    // One connection or two: the client keeps it for the next request.
    assert!(p.connections >= 1);
    assert_eq!(duplicates(&p.logs), 2, "{:#?}", p.logs);
}

#[test]
fn stats_count_per_replica_address_and_day() {
    let ports = free_ports(2);
    let peers = format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]);
    let dirs = [Scratch::new(), Scratch::new()];
    let files = [
        "2026-11-25T23:00:00.000+03:00 - 10.0.0.1\n\
         2026-11-26T09:00:00.000+03:00 - 10.0.0.1\n\
         2022-11-29T10:44:36+03:00 - 172.17.0.1\n",
        "2026-11-26T10:00:00.000+03:00 - 10.0.0.1\n\
         not a visit\n\
         2026-11-26T11:00:00.000Z - 2001:db8::1\n",
    ];
    for (d, text) in dirs.iter().zip(files) {
        std::fs::create_dir_all(d.file().parent().unwrap()).unwrap();
        std::fs::write(d.file(), text).unwrap();
    }
    let servers: Vec<Server> = (0..2)
        .map(|i| {
            let name = format!("s{i}");
            Server::start_on(
                &format!("127.0.0.1:{}", ports[i]),
                &dirs[i].file(),
                &["--name", &name, "--peers", &peers],
            )
        })
        .collect();

    let local = servers[1].get("/stats");
    assert_eq!(local.status, 200);
    assert_eq!(local.header("X-Visit-Replica"), Some("s1"));
    let local = json(&local);
    assert_eq!(local["scope"], "local");
    assert_eq!(local["replicas"].as_array().unwrap().len(), 1);
    assert_eq!(local["total"]["visits"], 2);
    assert_eq!(local["total"]["corrupt_lines"], 1);

    let v = json(&servers[0].get("/stats?scope=cluster"));
    assert_eq!(v["scope"], "cluster");
    assert_eq!(v["partial"], false);
    let total = &v["total"];
    assert_eq!(total["visits"], 5);
    assert_eq!(total["corrupt_lines"], 1);
    assert_eq!(
        total["days"],
        serde_json::json!([
            {"day": "2026-11-26", "visits": 3},
            {"day": "2026-11-25", "visits": 1},
            {"day": "2022-11-29", "visits": 1},
        ])
    );
    assert_eq!(
        total["ips"],
        serde_json::json!([
            {"ip": "10.0.0.1", "visits": 3},
            {"ip": "172.17.0.1", "visits": 1},
            {"ip": "2001:db8::1", "visits": 1},
        ])
    );
    assert_eq!(total["other_ips_visits"], 0);
    assert_eq!(total["distinct_ips"], 3);
    assert_eq!(total["ips_exact"], true);
    let per: Vec<(String, u64)> = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["visits"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(per, [("s0".to_string(), 3), ("s1".to_string(), 2)]);
    // Counting records nothing.
    assert_eq!(journal_lines_lenient(&dirs[0].file()), 3);
    assert_eq!(journal_lines_lenient(&dirs[1].file()), 3);

    // Without peers, the cluster is this replica alone.
    let lone = Scratch::new();
    let alone = Server::start(&lone.file(), &["--name", "alone"]);
    let v = json(&alone.get("/stats?scope=cluster"));
    assert_eq!(v["replicas"][0]["name"], "alone");
    assert_eq!(v["partial"], false);
}

/// Line count of a file that may hold corrupt lines.
fn journal_lines_lenient(file: &std::path::Path) -> usize {
    std::fs::read_to_string(file).unwrap().lines().count()
}
