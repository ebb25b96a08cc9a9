"""Real visit-server processes on loopback, for the browser and API checks.

Used by dashboard.py and conformance.py (run by .ci/steps/60-dashboard-browser and
70-openapi). Nothing here leaves 127.0.0.1: each replica listens on a port picked free on
loopback, and the peers of the cluster view are those ports.
"""

import datetime
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def server_binary():
    """The visit-server that `cargo test --workspace` built (or VISIT_SERVER_BIN)."""
    path = Path(os.environ.get("VISIT_SERVER_BIN", ROOT / "target/debug/visit-server"))
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `cargo build -p visit-server` first")
    return path


def free_ports(n):
    """n distinct ports free on loopback, for servers that must know each other's ports.

    Picked at random below the kernel's ephemeral range, as the Rust tests' support does: a
    port from `bind(("127.0.0.1", 0))` comes from the range client sockets take their source
    ports from, so once released it could be taken by a connection before the server binds it.
    """
    lowest = 10_000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32_768
    ephemeral = max(ephemeral, lowest + 1_000)
    ports = []
    for _ in range(10_000):
        if len(ports) == n:
            return ports
        port = random.randrange(lowest, ephemeral)
        if port not in ports and all(bindable(ip, port) for ip in ("127.0.0.1", "0.0.0.0")):
            ports.append(port)
    raise SystemExit(f"no {n} free ports below {ephemeral}")


def bindable(ip, port):
    with socket.socket() as s:
        try:
            s.bind((ip, port))
            return True
        except OSError:
            return False


def get(url, headers=None, timeout=10):
    """(status, headers, body bytes) of a GET, errors included."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Replicas:
    """`n` replicas named visit-server-0.., each with its own journal and all as peers.

    With `token`, every replica reads that one token from a file (--read-token-file), as the
    prod overlay's pods read their Secret; `auth` is then the header that reads need, and
    `stats` sends it."""

    def __init__(self, n=3, extra_args=(), seed=None, token=None):
        self.dir = tempfile.TemporaryDirectory(prefix="visit-web-")
        self.token = token
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        if token:
            token_file = Path(self.dir.name) / "read-token"
            token_file.write_text(f"{token}\n")
            extra_args = ["--read-token-file", str(token_file), *extra_args]
        self.ports = free_ports(n)
        self.names = [f"visit-server-{i}" for i in range(n)]
        self.addresses = [f"127.0.0.1:{p}" for p in self.ports]
        self.files = [Path(self.dir.name) / name / "visits.txt" for name in self.names]
        self.procs = [None] * n
        if seed:
            for i, lines in enumerate(seed):
                self.files[i].parent.mkdir(parents=True, exist_ok=True)
                self.files[i].write_text("".join(f"{line}\n" for line in lines))
        peers = ",".join(self.addresses)
        for i in range(n):
            log = open(Path(self.dir.name) / f"{self.names[i]}.log", "wb")
            self.procs[i] = subprocess.Popen(
                [
                    str(server_binary()),
                    "--listen", self.addresses[i],
                    "--file", str(self.files[i]),
                    "--name", self.names[i],
                    "--peers", peers,
                    "--utc-offset", "Z",
                    *extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        for i in range(n):
            self.wait_ready(i)

    def url(self, i, path):
        return f"http://{self.addresses[i]}{path}"

    def wait_ready(self, i, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[i].poll() is not None:
                raise SystemExit(f"{self.names[i]} exited: {self.log(i)}")
            try:
                if get(self.url(i, "/readyz"), timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"{self.names[i]} not ready within {timeout}s: {self.log(i)}")

    def log(self, i):
        return (Path(self.dir.name) / f"{self.names[i]}.log").read_text(errors="replace")

    def stop(self, i):
        """SIGTERM, as Kubernetes stops a pod; waits for exit 0."""
        p = self.procs[i]
        p.send_signal(signal.SIGTERM)
        code = p.wait(timeout=10)
        if code != 0:
            raise SystemExit(f"{self.names[i]} exited {code} on SIGTERM: {self.log(i)}")

    def close(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.kill()
                p.wait()
        self.dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def assert_token_never_printed(self):
        """No replica printed its token in any log line (CONTRACT.md section 11)."""
        for i in range(len(self.names)):
            if self.token and self.token in self.log(i):
                raise SystemExit(f"{self.names[i]} printed its read token")

    def stats(self, i, scope="cluster"):
        status, _, body = get(self.url(i, f"/stats?scope={scope}"), self.auth)
        if status != 200:
            raise SystemExit(f"/stats?scope={scope} answered {status}: {body!r}")
        return json.loads(body)


def history(days, per_day, ips, today=None, seed=0):
    """Journal lines for `days` past days (not today), `per_day(d)` visits on the d-th day
    back, from `ips` drawn with Zipf-like weights (a few busy clients, many rare ones), the
    same for the same seed."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(ips))]
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    lines = []
    for d in range(days, 0, -1):
        day = today - datetime.timedelta(days=d)
        for j in range(per_day(d)):
            at = datetime.datetime.combine(day, datetime.time(8 + j % 12, j % 60, 0, 123000))
            ip = rng.choices(ips, weights)[0]
            lines.append(f"{at.isoformat(timespec='milliseconds')}+00:00 - {ip}")
    return lines
