//! The server over a journal's whole history (CONTRACT §6): `/visits`, `?limit`, JSON,
//! `/stats` and the cluster view cover the sealed segments, the live file and the summary.

use std::path::{Path, PathBuf};

use crate::support::{Scratch, Server, free_ports};

/// `cat visits.txt.[0-9]* visits.txt`.
fn cat_history(file: &Path) -> String {
    let dir = file.parent().unwrap();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("visits.txt."))
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    segments.sort();
    segments.push(file.to_path_buf());
    segments
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

fn segments(file: &Path) -> usize {
    std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().into_string().unwrap();
            name.strip_prefix("visits.txt.")
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
        })
        .count()
}

fn json(server: &Server, path: &str) -> serde_json::Value {
    let r = server.get(path);
    assert_eq!(r.status, 200, "{path}");
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn visits_limit_and_json_read_across_segments() {
    let s = Scratch::new();
    let file = s.file();
    let server = Server::start(&file, &["--rotate-size", "4096"]);
    for _ in 0..300 {
        assert_eq!(server.get("/").status, 200);
    }
    assert!(segments(&file) >= 2, "rotated");
    let all = cat_history(&file);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 300);

    let text = server.get("/visits");
    assert_eq!(text.status, 200);
    assert_eq!(text.text(), all, "byte for byte, oldest first");

    // The last 150 span the live file and at least one segment.
    assert!(std::fs::read_to_string(&file).unwrap().lines().count() < 150);
    let tail = server.get("/visits?limit=150").text();
    assert_eq!(
        tail,
        lines[150..]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );

    let visits = json(&server, "/visits?format=json");
    let visits = visits.as_array().unwrap();
    assert_eq!(visits.len(), 300);
    assert_eq!(
        visits[0]["time"].as_str().unwrap(),
        lines[0].split(" - ").next().unwrap()
    );
    let csv = server.get("/visits?format=csv").text();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows.len(),
        301,
        "a header row, then every visit of the history"
    );
    assert_eq!(
        rows[300].split(',').next().unwrap(),
        lines[299].split(" - ").next().unwrap()
    );
    let last = json(&server, "/visits?limit=2&format=json");
    assert_eq!(
        last[1]["time"].as_str().unwrap(),
        lines[299].split(" - ").next().unwrap()
    );
}

#[test]
fn stats_count_every_visit_ever_recorded_with_the_summary() {
    let s = Scratch::new();
    let file = s.file();
    let server = Server::start(&file, &["--rotate-size", "4096", "--retain-size", "8192"]);
    for _ in 0..500 {
        assert_eq!(server.get("/").status, 200);
    }
    let summary = std::fs::read_to_string(file.with_file_name("visits.txt.summary")).unwrap();
    assert!(summary.starts_with("# folded through "), "{summary}");
    let on_disk = cat_history(&file).lines().count() as u64;
    assert!(on_disk < 500, "some were retired");

    for _ in 0..2 {
        // Cold, then warm (the sealed segments' counts are kept): the same answer.
        let stats = json(&server, "/stats");
        assert_eq!(stats["total"]["visits"], 500, "{stats}");
        let days: u64 = stats["total"]["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["visits"].as_u64().unwrap())
            .sum();
        assert_eq!(days, 500);
        // Addresses are gone with the retired segments: the list covers what is on disk.
        let listed: u64 = stats["total"]["ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["visits"].as_u64().unwrap())
            .sum();
        assert_eq!(listed, on_disk);
        assert_eq!(stats["total"]["other_ips_visits"], 500 - on_disk);
    }
    // The /visits of the history are what is on disk.
    assert_eq!(server.get("/visits").text(), cat_history(&file));
}

#[test]
fn the_cluster_view_reads_each_replicas_whole_history() {
    let s = Scratch::new();
    let ports = free_ports(2);
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let peers = addrs.join(",");
    let files = [
        s.dir.path().join("a/visits.txt"),
        s.dir.path().join("b/visits.txt"),
    ];
    let servers: Vec<Server> = (0..2)
        .map(|i| {
            Server::start_on(
                &addrs[i],
                &files[i],
                &[
                    "--rotate-size",
                    "4K",
                    "--name",
                    ["a", "b"][i],
                    "--peers",
                    &peers,
                ],
            )
        })
        .collect();
    for (i, server) in servers.iter().enumerate() {
        for _ in 0..(150 + 50 * i) {
            assert_eq!(server.get("/").status, 200);
        }
    }
    let view = json(&servers[0], "/visits?scope=cluster&format=json");
    let replicas = view["replicas"].as_array().unwrap();
    let counts: Vec<usize> = replicas
        .iter()
        .map(|r| r["visits"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, [150, 200], "{view}");
    let stats = json(&servers[1], "/stats?scope=cluster");
    assert_eq!(stats["total"]["visits"], 350, "{stats}");
    let text = servers[0].get("/visits?scope=cluster").text();
    for file in &files {
        assert!(
            text.contains(&cat_history(file)),
            "each replica's history, whole"
        );
    }
}

#[test]
fn sealed_segments_are_counted_in_the_background_at_start() {
    let s = Scratch::new();
    let file = s.file();
    let line = |i: usize| {
        format!(
            "2026-11-0{}T10:00:00.000+03:00 - 10.0.0.{}\n",
            1 + i % 3,
            i % 7
        )
    };
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut n = 0;
    for segment in 1..=3 {
        let text: String = (0..100).map(|i| line(n + i)).collect();
        n += 100;
        std::fs::write(
            file.with_file_name(format!("visits.txt.{segment:06}")),
            text,
        )
        .unwrap();
    }
    std::fs::write(&file, (0..10).map(|i| line(n + i)).collect::<String>()).unwrap();
    let server = Server::start(&file, &["--rotate-size", "1MiB"]);
    // No request asks for counts: the server counts its sealed segments by itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let counted = loop {
        let found = server.logs().into_iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            (v["event"] == "segments_counted").then_some(v)
        });
        if let Some(v) = found {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "{:#?}", server.logs());
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(counted["segments"], 3, "{counted}");
    assert_eq!(counted["visits"], 310, "{counted}");
    assert!(counted["duration_s"].as_f64().is_some(), "{counted}");
    let stats = json(&server, "/stats");
    assert_eq!(stats["total"]["visits"], 310, "{stats}");

    // A journal without sealed segments has nothing to count in advance.
    let lone = Scratch::new();
    let lone_file = lone.file();
    let server = Server::start(&lone_file, &[]);
    assert_eq!(json(&server, "/stats")["total"]["visits"], 0);
    assert!(
        !server.logs().iter().any(|l| l.contains("segments_counted")),
        "{:#?}",
        server.logs()
    );
}
