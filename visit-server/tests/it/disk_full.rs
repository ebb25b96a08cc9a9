//! A full disk: `GET /` answers 503 with `Retry-After`, `/readyz` 503, the file keeps exactly
//! the acknowledged visits, and once space is freed visits succeed again without a restart.
//!
//! As root, the journal lives on a small tmpfs mounted for the test. Elsewhere (no
//! permission to mount), the server runs under `RLIMIT_FSIZE` with `SIGXFSZ` ignored, so a
//! write past the limit fails with `EFBIG`, and "freeing space" raises the limit of the
//! running process with `prlimit --pid` (util-linux, on every Debian machine).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{BIN, Scratch, Server, journal_lines};

/// Room left for the journal: a few hundred visits.
const ROOM: u64 = 16 * 1024;

/// A tmpfs mounted on a directory; unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Fills the file system holding `path` with `path`, then frees `room` bytes of it.
fn fill_all_but(path: &Path, room: u64) {
    let mut f = File::create(path).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut len = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n as u64,
        }
    }
    f.set_len(len.saturating_sub(room)).unwrap();
}

/// A server whose journal has `room` bytes left, and a way to free space. Holds the tmpfs
/// (if any) so that it is unmounted after the server is gone.
struct Full {
    server: Server,
    free: Box<dyn FnOnce()>,
    _fs: Option<Tmpfs>,
    _scratch: Scratch,
}

impl Full {
    fn new(room: u64) -> Full {
        let s = Scratch::new();
        let mnt = s.dir.path().join("mnt");
        if let Some(fs) = Tmpfs::mount(&mnt, "512k") {
            let file = fs.dir.join("visits.txt");
            let filler = fs.dir.join("filler");
            fill_all_but(&filler, room);
            let server = Server::start(&file, &[]);
            return Full {
                server,
                free: Box::new(move || fs::remove_file(&filler).unwrap()),
                _fs: Some(fs),
                _scratch: s,
            };
        }
        eprintln!("cannot mount a tmpfs here; using RLIMIT_FSIZE");
        let file = s.file();
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "trap '' XFSZ; exec prlimit --fsize={room}:unlimited -- \"$0\" \"$@\""
            ))
            .arg(BIN)
            .args(["--listen", "127.0.0.1:0", "--file"])
            .arg(&file);
        let server = Server::spawn(cmd, &file);
        let pid = server.pid();
        Full {
            server,
            free: Box::new(move || {
                let ok = Command::new("prlimit")
                    .args(["--pid", &pid.to_string(), "--fsize=unlimited"])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "prlimit --pid failed");
            }),
            _fs: None,
            _scratch: s,
        }
    }
}

#[test]
fn a_full_disk_answers_503_and_recovers_without_restart() {
    let full = Full::new(ROOM);
    scenario(&full.server, full.free);
}

#[test]
fn a_server_started_on_a_full_disk_is_unready_until_space_returns() {
    let full = Full::new(0);
    let server = &full.server;
    assert_eq!(server.get("/readyz").status, 503);
    assert_eq!(server.get("/").status, 503);
    assert_eq!(head_root(server), 503);
    assert!(journal_lines(&server.file).is_empty());
    (full.free)();
    server.await_ready(200, Duration::from_secs(20));
    assert_eq!(server.get("/").status, 200);
    assert_eq!(journal_lines(&server.file).len(), 1);
}

/// The status of `HEAD /`.
fn head_root(server: &Server) -> u16 {
    let mut stream = crate::support::connect(server.addr);
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (got, _) = crate::support::read_until_closed(&mut stream, crate::support::IO_TIMEOUT);
    String::from_utf8_lossy(&got)
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3)?.parse().ok())
        .expect("a status line")
}

fn scenario(server: &Server, free_space: Box<dyn FnOnce()>) {
    let mut acked = 0;
    let mut refused = None;
    for _ in 0..5_000 {
        let r = server.get("/");
        match r.status {
            200 => acked += 1,
            503 => {
                refused = Some(r);
                break;
            }
            other => panic!("GET / answered {other}: {}", r.text()),
        }
    }
    let refused = refused.expect("the journal never filled up");
    assert!(acked > 10, "only {acked} visits fit");
    assert_eq!(refused.header("Retry-After"), Some("1"));
    assert_eq!(server.get("/readyz").status, 503);
    assert_eq!(server.get("/").status, 503);
    assert_eq!(head_root(server), 503);
    // Exactly the acknowledged visits, whole lines, nothing partial.
    assert_eq!(journal_lines(&server.file).len(), acked);
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("visit_server_append_errors_total{kind=\"out_of_space\"} 2\n"),
        "{metrics}"
    );
    assert!(metrics.contains("visit_server_ready 0\n"));
    // The error is logged with the path and the cause (before the 503 is sent; the test
    // reads the server's stdout on a thread of its own, which may lag on a busy machine).
    let logged = || {
        server.logs().into_iter().any(|l| {
            l.contains("\"event\":\"append_failed\"")
                && l.contains(server.file.to_str().unwrap())
                && (l.contains("No space left") || l.contains("too large"))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !logged() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(logged(), "{:#?}", server.logs());

    free_space();
    // No visit can come to an unready pod: readiness must notice by itself.
    server.await_ready(200, Duration::from_secs(20));
    assert_eq!(server.get("/").status, 200);
    assert_eq!(journal_lines(&server.file).len(), acked + 1);
}
