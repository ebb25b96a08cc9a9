//! Spawning the real binary on a free loopback port, and speaking raw HTTP to it.
//!
//! Everything here is bounded in time: a server that does not come up, a response that does
//! not arrive or a child that does not exit fails the test instead of hanging it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Generous: a debug binary on a loaded 2-core machine.
pub const STARTUP: Duration = Duration::from_secs(30);
/// How long a single HTTP exchange may take before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

pub const BIN: &str = env!("CARGO_BIN_EXE_visit-server");

/// A temporary directory with a journal path in it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join("data/visits.txt")
    }
}

/// A running `visit-server` child. Killed (and reaped) on drop.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub file: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the binary on `127.0.0.1:0` with `--file file` and the extra arguments.
    pub fn start(file: &Path, args: &[&str]) -> Server {
        Server::start_on("127.0.0.1:0", file, args)
    }

    /// Starts the binary listening on `listen` with `--file file` and the extra arguments,
    /// with none of the server's variables inherited from the test's environment.
    pub fn start_on(listen: &str, file: &Path, args: &[&str]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", listen, "--file"])
            .arg(file)
            .args(args);
        for var in [
            "VISIT_LISTEN",
            "VISIT_FILE",
            "VISIT_TRUSTED_PROXIES",
            "VISIT_UTC_OFFSET",
            "VISIT_NAME",
            "VISIT_PEERS",
            "VISIT_PEER_DNS",
            "VISIT_PEER_TIMEOUT",
            "VISIT_ROTATE_SIZE",
            "VISIT_RETAIN_SIZE",
            "VISIT_RETAIN_DAYS",
            "VISIT_PUBLIC_PORT",
            "VISIT_ANONYMIZE",
            "VISIT_READ_TOKEN_FILE",
        ] {
            cmd.env_remove(var);
        }
        Server::spawn(cmd, file)
    }

    /// Spawns a prepared command (its arguments must make it listen on port 0 or a known
    /// port) and waits until it logs that it listens.
    pub fn spawn(mut cmd: Command, file: &Path) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn visit-server");
        let logs = Arc::new(Mutex::new(Vec::new()));
        // Drain stdout continuously: a full pipe would block the server's logging.
        let stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&logs);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(format!("stderr: {line}"));
            }
        });
        let mut server = Server {
            child: Some(child),
            addr: "0.0.0.0:0".parse().unwrap(),
            file: file.to_path_buf(),
            logs,
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(addr) = server.logs().iter().find_map(|l| listening_addr(l)) {
                server.addr = addr;
                return server;
            }
            if let Some(status) = server.child().try_wait().unwrap() {
                panic!("visit-server exited with {status}: {:#?}", server.logs());
            }
            assert!(
                Instant::now() < deadline,
                "visit-server did not start: {:#?}",
                server.logs()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already reaped")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child already reaped").id()
    }

    /// Everything the server printed so far (stdout lines, then stderr lines prefixed).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Everything the server printed so far, once `ready` says it holds what the test waits
    /// for (at most [`IO_TIMEOUT`]): a line logged just before or after an answer reaches the
    /// test through the thread draining the child's output, maybe after the answer does.
    pub fn await_logs(&self, what: &str, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let logs = self.logs();
            if ready(&logs) {
                return logs;
            }
            assert!(Instant::now() < deadline, "no {what} in the log: {logs:#?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by name (`TERM`, `INT`) with the shell's `kill`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{sig} {}", self.pid()))
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child().kill();
        let _ = self.child().wait();
        self.child = None;
    }

    /// Waits for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.addr, path)
    }

    /// Waits until `/readyz` answers `want`.
    pub fn await_ready(&self, want: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.get("/readyz").status;
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz stayed {got}, wanted {want}: {:#?}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["event"] != "listening" {
        return None;
    }
    v["addr"].as_str()?.parse().ok()
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

/// Opens a connection with the test's timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Opens a connection from a chosen loopback source address (127.0.0.0/8 is all local), so
/// that each request can be told apart in the journal by its address.
pub fn connect_from(src: Ipv4Addr, addr: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())?;
    s.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

/// `GET path` on a fresh connection, `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    exchange(
        connect(addr),
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `GET path` on a fresh connection, `Connection: close`, with extra header lines (each
/// `Name: value`, sent as given).
pub fn get_with(addr: SocketAddr, path: &str, headers: &[&str]) -> Response {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    exchange(
        connect(addr),
        format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
    )
    .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A fresh random token of 64 hexadecimal digits (as `openssl rand -hex 32` makes), so
/// that a test can look for it in everything a server printed.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding (RFC 4648), for Basic credentials.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Sends raw bytes on `stream` and reads one response.
pub fn exchange(mut stream: TcpStream, raw: &[u8]) -> io::Result<Response> {
    stream.write_all(raw)?;
    read_response(&mut BufReader::new(stream))
}

/// Reads one response: status line, headers, and a body framed by `Content-Length`, chunked
/// encoding, or the end of the connection.
pub fn read_response<R: BufRead>(r: &mut R) -> io::Result<Response> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').ok_or_else(|| bad("bad header"))?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = resp.header("Content-Length") {
        let len: usize = len.parse().map_err(|_| bad("bad length"))?;
        resp.body.resize(len, 0);
        r.read_exact(&mut resp.body)?;
    } else if resp
        .header("Transfer-Encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("bad chunk"))?;
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            r.read_exact(&mut resp.body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
            if size == 0 {
                break;
            }
        }
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

/// Reads until the peer closes or `timeout` passes; returns what came and whether it closed.
pub fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            // A reset is a close too.
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

/// The journal's lines, asserting that the file ends with a newline and every line is a
/// record.
pub fn journal_lines(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "journal does not end with a newline: {:?}",
        &text[text.len().saturating_sub(80)..]
    );
    let report = visit_journal::Reader::open(file).unwrap().verify().unwrap();
    assert!(report.is_clean(), "corrupt lines: {:?}", report.errors);
    assert_eq!(report.torn_tail_bytes, 0);
    text.lines().map(str::to_string).collect()
}

/// The address part of each record.
pub fn ips(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.rsplit_once(" - ").expect("record").1.to_string())
        .collect()
}

/// `n` distinct free ports, for servers that must know each other's ports before they start.
///
/// They come from below the kernel's ephemeral range. A port picked with `bind(...:0)` comes
/// from that range, the one client sockets get their source ports from, and the servers'
/// tickers alone open 160 connections a second: once released, such a port could be taken
/// by a connection before the server binds it. Ports below the range are only ever taken
/// explicitly; this process never hands out the same one twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    const LOWEST: u16 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768)
        .max(LOWEST + 1_000);
    let mut given = GIVEN.lock().unwrap();
    // xorshift64, seeded by the time and the process: different in every run.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut seed = (u64::from(std::process::id()) << 32 | u64::from(nanos)) | 1;
    let mut ports = Vec::new();
    for _ in 0..10_000 {
        if ports.len() == n {
            return ports;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = LOWEST + (seed % u64::from(ephemeral - LOWEST)) as u16;
        let free = |ip: &str| std::net::TcpListener::bind((ip, port)).is_ok();
        if !given.contains(&port) && free("127.0.0.1") && free("0.0.0.0") {
            given.push(port);
            ports.push(port);
        }
    }
    panic!("no {n} free ports below {ephemeral}");
}

/// Starts replicas `visit-server-0..`, one on each journal of `dirs`, on reserved loopback
/// ports ([`free_ports`]), each listing every replica's address (its own included) and then
/// the `extra` peers with `--peers`, and given `args` too.
pub fn start_replicas(dirs: &[Scratch], extra: &[String], args: &[&str]) -> Vec<Server> {
    let ports = free_ports(dirs.len());
    let mut peers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    peers.extend_from_slice(extra);
    let peers = peers.join(",");
    dirs.iter()
        .enumerate()
        .map(|(i, dir)| {
            let name = format!("visit-server-{i}");
            let mut a = vec!["--name", &name, "--peers", &peers];
            a.extend_from_slice(args);
            Server::start_on(&format!("127.0.0.1:{}", ports[i]), &dir.file(), &a)
        })
        .collect()
}

/// A distinct loopback source address for request number `i` (127.1.0.1, 127.1.0.2, ...).
pub fn source(i: u32) -> Ipv4Addr {
    let n = 0x7f01_0001 + i;
    Ipv4Addr::from(n)
}

/// Records a visit from `src` on a fresh connection; `Ok(true)` if answered 200.
pub fn visit_from(src: Ipv4Addr, addr: SocketAddr) -> io::Result<bool> {
    let stream = connect_from(src, addr)?;
    let resp = exchange(
        stream,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )?;
    Ok(resp.status == 200)
}
