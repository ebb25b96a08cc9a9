//! The StatefulSet in miniature: three servers with their own files behind round-robin.

use std::collections::BTreeSet;

use crate::support::{Scratch, Server, ips, journal_lines, source, visit_from};

#[test]
fn three_replicas_each_keep_only_their_own_visits() {
    let dirs: Vec<Scratch> = (0..3).map(|_| Scratch::new()).collect();
    let servers: Vec<Server> = dirs.iter().map(|d| Server::start(&d.file(), &[])).collect();
    let mut sent: Vec<BTreeSet<String>> = vec![BTreeSet::new(); 3];
    for i in 0..60u32 {
        let replica = (i % 3) as usize;
        let src = source(10_000 + i);
        assert!(visit_from(src, servers[replica].addr).unwrap());
        sent[replica].insert(src.to_string());
    }
    for (replica, server) in servers.iter().enumerate() {
        let lines = journal_lines(&server.file);
        let got: BTreeSet<String> = ips(&lines).into_iter().collect();
        assert_eq!(got.len(), lines.len());
        assert_eq!(got, sent[replica], "replica {replica}");
        assert_eq!(server.get("/visits").text(), lines.join("\n") + "\n");
    }
}
