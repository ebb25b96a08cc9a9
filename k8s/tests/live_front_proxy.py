"""The front proxy for real: k8s/components/front-proxy/nginx.conf under Debian's nginx in
front of the release visit-server, as in a prod pod (CONTRACT.md section 8).

Run by .ci/steps/40-front-proxy inside a network namespace of its own (so ports 8080 and
8081 are free and every attack stays on its loopback) with a private tmpfs on /tmp, as
root; the proxy and the server run as uid 65532, so /tmp is the only place they can write:

    unshare --net --mount sh -c 'ip link set lo up && mount -t tmpfs tmpfs /tmp &&
        python3 -B k8s/tests/live_front_proxy.py -v'

Needs nginx on PATH; VISIT_SERVER_BIN names the release binary and VISIT_PROXY_CONF the
nginx.conf to run (by default, those of this checkout). Every loop is bounded in
count and time; every socket goes to 127.0.0.0/8 or ::1.
"""

import base64
import os
import re
import resource
import secrets
import signal
import socket
import subprocess
import threading
import time
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Both as the step mounts them (the repository may sit where uid 65532 cannot look, such as
# under /root): the component's directory read-only, as the pod mounts its ConfigMap.
NGINX_CONF = Path(os.environ.get("VISIT_PROXY_CONF", ROOT / "k8s" / "components" / "front-proxy" / "nginx.conf"))
SERVER_BIN = os.environ.get("VISIT_SERVER_BIN", str(ROOT / "target" / "release" / "visit-server"))
# The pod's user (k8s/base/statefulset.yaml): neither process runs as root.
APP_UID = 65532
PROXY_PORT = 8080
SERVER_LISTEN = "127.0.0.1:8081"

# CONTRACT.md section 8 and issue 13: what the attacks may cost.
MAX_EXTRA_SERVER_THREADS = 100
MAX_POD_RSS_BYTES = 64 * 1000 * 1000
MAX_VISIT_SECONDS = 1.0
HTTP2_CONNECTIONS = 2000
SLOW_CONNECTIONS = 3000
# client_header_timeout in nginx.conf, and how much later a slow client may still be open.
HEADER_TIMEOUT_SECONDS = 5
HEADER_TIMEOUT_SLACK_SECONDS = 2
# The server's drain after SIGTERM (CONTRACT.md section 3), and the proxy's.
DRAIN_SECONDS = 5

LINE = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2}) - (\S+)\n")
# nginx's own error pages end with this; visit-server's answers never contain it.
NGINX_PAGE = b"<hr><center>nginx</center>"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = HTTP2_CONNECTIONS * 2 + SLOW_CONNECTIONS + 256
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return min(hard, need) >= need


def as_app_user():
    os.setgroups([])
    os.setgid(APP_UID)
    os.setuid(APP_UID)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def children(pid):
    """The pids whose parent is pid (nginx's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def exchange(data, source="127.0.0.1", host="127.0.0.1", timeout=5.0, close_write=False):
    """Sends raw bytes to the proxy and returns everything it answers before closing (or
    before the timeout, or once a whole response with a Content-Length has arrived)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        if family == socket.AF_INET:
            s.bind((source, 0))
        s.connect((host, PROXY_PORT))
        s.sendall(data)
        if close_write:
            s.shutdown(socket.SHUT_WR)
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            got += chunk
            head, sep, body = got.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if sep and length and len(body) >= int(length.group(1)):
                break
        return got


def status_of(response):
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", response)
    return int(match.group(1)) if match else None


def visit(source="127.0.0.1", headers=b""):
    """One GET / through the proxy: (status, seconds taken)."""
    started = time.monotonic()
    response = exchange(
        b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n" + headers + b"\r\n", source
    )
    return status_of(response), time.monotonic() - started


class Pod:
    """visit-server on 127.0.0.1:8081 and nginx on 8080 with the component's nginx.conf,
    both as uid 65532, as the prod overlay runs them; with `token`, the server's reads need
    it (--read-token-file, as the prod pods mount the Secret visit-server-read-token)."""

    def __init__(self, name, again=False, token=None):
        """Starts the pod in /tmp/name; again=True starts it on the journal it left there."""
        self.dir = Path("/tmp") / name
        self.dir.mkdir(mode=0o700, exist_ok=again)
        os.chown(self.dir, APP_UID, APP_UID)
        self.journal = self.dir / "data" / "visits.txt"
        token_args = []
        if token:
            # A Secret volume's file: root's, read-only, readable by the pod's user.
            token_file = self.dir / "read-token"
            token_file.write_text(token + "\n")
            token_file.chmod(0o444)
            token_args = ["--read-token-file", str(token_file)]
        self.server_log = open(self.dir / "server.log", "ab")
        self.proxy_log = open(self.dir / "proxy.log", "ab")
        # The container runtime (runc, crun) hands the container's user its stdio; nginx
        # reopens its stderr as /dev/stderr for the access log, which needs that.
        for log in (self.server_log, self.proxy_log):
            os.fchown(log.fileno(), APP_UID, APP_UID)
        self.server = subprocess.Popen(
            [
                SERVER_BIN,
                "--listen", SERVER_LISTEN,
                "--file", str(self.journal),
                "--trusted-proxy", "127.0.0.1",
                "--utc-offset", "+00:00",
                *token_args,
            ],
            stdout=self.server_log,
            stderr=subprocess.STDOUT,
            preexec_fn=as_app_user,
        )
        self.proxy = subprocess.Popen(
            ["nginx", "-c", str(NGINX_CONF), "-g", "daemon off;"],
            stdout=self.proxy_log,
            stderr=subprocess.STDOUT,
            preexec_fn=as_app_user,
            cwd=self.dir,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if status_of(exchange(b"GET /readyz HTTP/1.1\r\nHost: pod\r\n\r\n", timeout=1)) == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.server.poll() is not None or self.proxy.poll() is not None:
                for p in (self.server, self.proxy):
                    p.kill()
                    p.wait()
                raise AssertionError(f"the pod did not come up:\n{self.logs()}")
            time.sleep(0.05)

    def raw_logs(self):
        """Everything both processes printed so far."""
        for log in (self.server_log, self.proxy_log):
            if not log.closed:
                log.flush()
        return (self.dir / "server.log").read_bytes(), (self.dir / "proxy.log").read_bytes()

    def logs(self):
        for log in (self.server_log, self.proxy_log):
            if not log.closed:
                log.flush()
        return (
            "--- server\n" + (self.dir / "server.log").read_text(errors="replace")[-3000:]
            + "\n--- proxy\n" + (self.dir / "proxy.log").read_text(errors="replace")[-3000:]
        )

    def proxy_pids(self):
        return [self.proxy.pid, *children(self.proxy.pid)]

    def rss(self):
        """The pod's memory: the server's RSS plus nginx's (master and workers)."""
        return rss_bytes(self.server.pid) + sum(rss_bytes(p) for p in self.proxy_pids())

    def server_threads(self):
        return threads(self.server.pid)

    def lines(self):
        data = self.journal.read_bytes() if self.journal.exists() else b""
        assert data == b"" or data.endswith(b"\n"), "a torn line in the journal"
        lines = data.splitlines(keepends=True)
        for line in lines:
            assert LINE.fullmatch(line), f"a malformed line in the journal: {line!r}"
        return lines

    def addresses(self):
        return [LINE.fullmatch(line).group(3).decode() for line in self.lines()]

    def stop(self):
        for p in (self.server, self.proxy):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = []
        for p in (self.server, self.proxy):
            try:
                codes.append(p.wait(timeout=DRAIN_SECONDS + 2))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait())
        self.server_log.close()
        self.proxy_log.close()
        return codes


class Watch:
    """While an attack runs: a normal visit every 100 ms (its worst time and status), and
    the pod's peak RSS and the server's peak thread count."""

    def __init__(self, pod):
        self.pod = pod
        self.stop = threading.Event()
        self.slowest = 0.0
        self.failures = []
        self.visits = 0
        self.peak_rss = 0
        self.peak_threads = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def run(self):
        while not self.stop.is_set():
            try:
                status, took = visit(source="127.0.0.3")
            except OSError as e:
                status, took = repr(e), MAX_VISIT_SECONDS * 10
            self.visits += 1
            self.slowest = max(self.slowest, took)
            if status != 200:
                self.failures.append(status)
            self.peak_rss = max(self.peak_rss, self.pod.rss())
            self.peak_threads = max(self.peak_threads, self.pod.server_threads())
            self.stop.wait(0.1)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)

    def report(self, name):
        print(
            f"\n{name}: {self.visits} visits during the attack, slowest {self.slowest * 1000:.0f} ms; "
            f"pod peak RSS {self.peak_rss / 1e6:.1f} MB; server peak threads {self.peak_threads}",
            flush=True,
        )


def open_many(count, payload, source):
    """Opens count connections to the proxy and sends payload on each; returns them open."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.bind((source, 0))
        s.connect(("127.0.0.1", PROXY_PORT))
        if payload:
            s.sendall(payload)
        socks.append(s)
    return socks


class Attacks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # As in prod, the reads need a token; the attacks go for GET /, which does not.
        cls.token = secrets.token_hex(32)
        cls.pod = Pod("attacks", token=cls.token)
        time.sleep(0.5)
        cls.idle_threads = cls.pod.server_threads()
        cls.idle_rss = cls.pod.rss()
        print(
            f"\nidle: server threads {cls.idle_threads}, pod RSS {cls.idle_rss / 1e6:.1f} MB "
            f"(server {rss_bytes(cls.pod.server.pid) / 1e6:.1f} MB)",
            flush=True,
        )

    @classmethod
    def tearDownClass(cls):
        cls.pod.stop()

    def assert_pod_held(self, watch):
        self.assertEqual(watch.failures, [], self.pod.logs())
        self.assertGreater(watch.visits, 0)
        self.assertLess(watch.slowest, MAX_VISIT_SECONDS)
        self.assertLess(watch.peak_rss, MAX_POD_RSS_BYTES)
        self.assertLessEqual(watch.peak_threads, self.idle_threads + MAX_EXTRA_SERVER_THREADS)

    def refused_by_proxy(self, request, statuses, **kw):
        """request gets one of statuses from nginx itself, and records nothing."""
        before = len(self.pod.lines())
        response = exchange(request, **kw)
        self.assertIn(status_of(response), statuses, response[:300])
        self.assertIn(NGINX_PAGE, response, "the answer must come from the proxy")
        time.sleep(0.2)
        self.assertEqual(len(self.pod.lines()), before, "nothing may be recorded")
        return response

    def test_both_run_as_the_app_user_with_only_tmp_written(self):
        for pid in (self.pod.server.pid, *self.pod.proxy_pids()):
            with self.subTest(pid=pid):
                uids = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[:4]
                self.assertEqual(set(uids), {str(APP_UID)})
        # nginx keeps its pid file and temporary directories in /tmp, the one place it may
        # write in the pod.
        self.assertTrue(Path("/tmp/nginx.pid").exists())
        self.assertTrue(Path("/tmp/nginx-proxy").is_dir())

    def test_client_address_is_the_peer_and_forged_forwarding_is_ignored(self):
        before = len(self.pod.lines())
        status, _ = visit(source="127.0.0.2", headers=b"X-Forwarded-For: 6.6.6.6\r\n")
        self.assertEqual(status, 200)
        status, _ = visit(
            source="127.0.0.2",
            headers=b"X-Forwarded-For: 6.6.6.6, 127.0.0.1\r\nX-Real-IP: 6.6.6.7\r\n"
            b"Forwarded: for=6.6.6.8\r\n",
        )
        self.assertEqual(status, 200)
        response = exchange(b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n", host="::1")
        self.assertEqual(status_of(response), 200)
        self.assertEqual(self.pod.addresses()[before:], ["127.0.0.2", "127.0.0.2", "::1"])

    def test_authorization_reaches_the_server_and_is_never_logged(self):
        # CONTRACT.md section 11: the proxy passes Authorization through untouched, the
        # server's 401 and its challenge come back, and neither process logs a credential.
        def read(path, *headers):
            request = b"GET " + path + b" HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n"
            return exchange(request + b"".join(h + b"\r\n" for h in headers) + b"\r\n")

        token = self.token.encode()
        wrong = b"not-" + token
        basic = base64.b64encode(b"reader:" + token)
        wrong_basic = base64.b64encode(b"reader:" + wrong)
        for path in (b"/visits", b"/stats?scope=cluster", b"/dashboard"):
            with self.subTest(path=path):
                refused = read(path)
                self.assertEqual(status_of(refused), 401, refused[:300])
                self.assertNotIn(NGINX_PAGE, refused, "the 401 must be the server's")
                self.assertIn(b'\r\nWWW-Authenticate: Basic realm="visit-server", charset="UTF-8"\r\n', refused)
                self.assertRegex(refused, rb"(?i)\r\ncache-control: no-store\r\n")
                for ok in (b"Authorization: Bearer " + token, b"authorization: basic " + basic):
                    self.assertEqual(status_of(read(path, ok)), 200, ok[:22])
                for bad in (
                    b"Authorization: Bearer " + wrong,
                    b"Authorization: Basic " + wrong_basic,
                    b"Authorization: Bearer " + token[:-1],
                ):
                    self.assertEqual(status_of(read(path, bad)), 401, bad[:22])
                # Two are refused by nginx itself (Authorization is a single header to it),
                # which logs the duplicate line only at `info`, below its `warn`.
                two = b"Authorization: Bearer " + token
                twice = read(path, two, two)
                self.assertEqual(status_of(twice), 400, twice[:300])
                self.assertIn(NGINX_PAGE, twice)
        time.sleep(0.3)
        server_log, proxy_log = self.pod.raw_logs()
        # The proxy logged the refusals (its access log keeps every 4xx)...
        self.assertIn(b'"GET /visits HTTP/1.1" 401', proxy_log)
        # ...and the server too, without the credential; neither holds one anywhere.
        self.assertIn(b'"event":"unauthorized"', server_log)
        for secret in (token, wrong, basic, wrong_basic, token[:32], token[32:]):
            self.assertNotIn(secret, server_log)
            self.assertNotIn(secret, proxy_log)

    def test_http2_request_lines_and_h2c_prefaces_never_reach_the_server(self):
        shapes = {
            "request line": b"GET / HTTP/2.0\r\nHost: pod\r\n\r\n",
            "h2c preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        }
        for name, payload in shapes.items():
            with self.subTest(shape=name):
                before = len(self.pod.lines())
                with Watch(self.pod) as watch:
                    socks = open_many(HTTP2_CONNECTIONS, payload, "127.0.0.4")
                    try:
                        # Every one is answered with an error by the proxy and closed.
                        statuses = set()
                        for s in socks[:: HTTP2_CONNECTIONS // 20]:
                            got = b""
                            while NGINX_PAGE not in got:
                                chunk = s.recv(4096)
                                if not chunk:
                                    break
                                got += chunk
                            statuses.add(status_of(got))
                        time.sleep(1)
                    finally:
                        for s in socks:
                            s.close()
                watch.report(f"{HTTP2_CONNECTIONS} x {name}")
                self.assertLessEqual(statuses, {400, 505}, statuses)
                self.assert_pod_held(watch)
                # Only the watcher's visits were recorded.
                self.assertEqual(
                    set(self.pod.addresses()[before:]), {"127.0.0.3"} if watch.visits else set()
                )

    def test_slow_header_clients_are_cut_off_and_the_pod_holds(self):
        # 3,000 clients each send a request line, then a header line every second for
        # twice the header timeout; a client that is cut off reconnects and starts again.
        before = len(self.pod.lines())
        cut = []
        with Watch(self.pod) as watch:
            socks = open_many(SLOW_CONNECTIONS, b"GET / HTTP/1.1\r\nHost: pod\r\n", "127.0.0.5")
            opened = {s: time.monotonic() for s in socks}
            deadline = time.monotonic() + 2 * HEADER_TIMEOUT_SECONDS
            while time.monotonic() < deadline:
                tick = time.monotonic()
                for s in list(opened):
                    try:
                        s.send(b"X-Slow: 1\r\n")
                    except OSError:
                        cut.append(time.monotonic() - opened.pop(s))
                        s.close()
                        (fresh,) = open_many(1, b"GET / HTTP/1.1\r\nHost: pod\r\n", "127.0.0.5")
                        opened[fresh] = time.monotonic()
                time.sleep(max(0.0, 1 - (time.monotonic() - tick)))
            for s in opened:
                s.close()
        watch.report(f"{SLOW_CONNECTIONS} slow-header clients")
        self.assert_pod_held(watch)
        # The first generation was cut by the header timeout, none much later.
        self.assertGreaterEqual(len(cut), SLOW_CONNECTIONS)
        self.assertLess(max(cut), HEADER_TIMEOUT_SECONDS + HEADER_TIMEOUT_SLACK_SECONDS)
        self.assertEqual(
            set(self.pod.addresses()[before:]), {"127.0.0.3"} if watch.visits else set()
        )

    def test_oversized_headers_are_refused_by_the_proxy(self):
        long_line = b"GET /?" + b"a" * 4000 + b" HTTP/1.1\r\nHost: pod\r\n\r\n"
        self.refused_by_proxy(long_line, {414})
        long_field = b"GET / HTTP/1.1\r\nHost: pod\r\nX-Big: " + b"b" * 4000 + b"\r\n\r\n"
        self.refused_by_proxy(long_field, {400})
        many = b"".join(b"X-Many-%d: " % i + b"c" * 2000 + b"\r\n" for i in range(10))
        self.refused_by_proxy(b"GET / HTTP/1.1\r\nHost: pod\r\n" + many + b"\r\n", {400})

    def test_bodies_are_refused_before_they_are_read(self):
        # A slow body: the length is declared, the bytes never come.
        started = time.monotonic()
        self.refused_by_proxy(b"GET / HTTP/1.1\r\nHost: pod\r\nContent-Length: 100\r\n\r\na", {400})
        self.assertLess(time.monotonic() - started, 1)
        self.refused_by_proxy(
            b"POST / HTTP/1.1\r\nHost: pod\r\nContent-Length: 5\r\n\r\nhello", {400}
        )
        self.refused_by_proxy(
            b"GET / HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n", {400}
        )
        self.refused_by_proxy(
            b"GET / HTTP/1.1\r\nHost: pod\r\nContent-Length: 100000\r\n\r\n", {400, 413}
        )

    def test_smuggling_shapes_are_refused_by_the_proxy(self):
        smuggled = b"GET / HTTP/1.1\r\nHost: pod\r\n\r\n"
        shapes = {
            "CL.TE": b"POST / HTTP/1.1\r\nHost: pod\r\nContent-Length: 40\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
            "TE.CL": b"POST / HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 3\r\n\r\n1d\r\n" + smuggled + b"\r\n0\r\n\r\n",
            "TE.TE": b"GET / HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled,
            "TE obfuscated": b"GET / HTTP/1.1\r\nHost: pod\r\nTransfer-Encoding: xchunked\r\n\r\n"
            b"0\r\n\r\n" + smuggled,
            "two lengths": b"GET / HTTP/1.1\r\nHost: pod\r\nContent-Length: 0\r\n"
            b"Content-Length: 30\r\n\r\n" + smuggled,
            "TE on HTTP/1.0": b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            + smuggled,
            "bare LF in a header": b"GET / HTTP/1.1\r\nHost: pod\r\nX-A: 1\nContent-Length: 30\r\n\r\n"
            + smuggled,
            "obs-fold": b"GET / HTTP/1.1\r\nHost: pod\r\nX-A: 1\r\n Content-Length: 30\r\n\r\n"
            + smuggled,
            "NUL in a header": b"GET / HTTP/1.1\r\nHost: pod\r\nX-A: 1\x00\r\n\r\n",
        }
        for name, request in shapes.items():
            with self.subTest(shape=name):
                self.refused_by_proxy(request, {400, 501}, close_write=True)


class Shutdown(unittest.TestCase):
    def test_in_the_kubelets_order_the_proxy_says_503_once_the_server_is_gone(self):
        # The kubelet stops the server first, and its sidecar only once it has exited.
        pod = Pod("kubelet-order")
        try:
            pod.server.send_signal(signal.SIGTERM)
            self.assertEqual(pod.server.wait(timeout=DRAIN_SECONDS + 2), 0, pod.logs())
            response = exchange(b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
            self.assertEqual(status_of(response), 503, response[:300])
            self.assertRegex(response, rb"(?i)\r\nretry-after: 1\r\n")
            self.assertEqual(pod.lines(), [])
            # Then the sidecar, with the image's stop signal: a graceful exit.
            pod.proxy.send_signal(signal.SIGQUIT)
            self.assertEqual(pod.proxy.wait(timeout=DRAIN_SECONDS), 0, pod.logs())
        finally:
            pod.stop()

    def test_sigterm_of_the_pod_loses_nothing_acknowledged(self):
        pod = Pod("shutdown")
        acked = {}
        stop = threading.Event()
        lock = threading.Lock()

        def client(source):
            # Keep-alive visits until the pod is gone: each 200 is a promise.
            while not stop.is_set():
                try:
                    status, _ = visit(source=source)
                except OSError:
                    status = None
                if status == 200:
                    with lock:
                        acked[source] = acked.get(source, 0) + 1
                elif status is None:
                    time.sleep(0.01)

        sources = [f"127.0.0.{n}" for n in range(10, 18)]
        workers = [threading.Thread(target=client, args=(s,), daemon=True) for s in sources]
        for w in workers:
            w.start()
        time.sleep(1.5)
        started = time.monotonic()
        codes = pod.stop()
        took = time.monotonic() - started
        stop.set()
        for w in workers:
            w.join(timeout=10)
        print(f"\nSIGTERM during load: {sum(acked.values())} visits acknowledged, "
              f"both exited {codes} in {took:.1f} s", flush=True)
        self.assertEqual(codes, [0, 0], pod.logs())
        self.assertLess(took, DRAIN_SECONDS + 1)
        self.assertGreater(sum(acked.values()), 0)
        recorded = pod.addresses()
        for source in sources:
            with self.subTest(client=source):
                self.assertGreaterEqual(recorded.count(source), acked.get(source, 0))
        # The pod comes back on the same journal with every visit still there.
        pod = Pod("shutdown", again=True)
        try:
            self.assertEqual(visit(source="127.0.0.20")[0], 200)
            self.assertEqual(pod.addresses(), recorded + ["127.0.0.20"])
        finally:
            self.assertEqual(pod.stop(), [0, 0], pod.logs())


if __name__ == "__main__":
    if not raise_fd_limit():
        raise SystemExit(f"live_front_proxy: the file-descriptor limit is too low: {resource.getrlimit(resource.RLIMIT_NOFILE)}")
    unittest.main()
