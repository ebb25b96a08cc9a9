"""The alerts and /metrics under a real Prometheus (CONTRACT.md section 13), run by
.ci/steps/45-prometheus:

    VISIT_SERVER_BIN=target/debug/visit-server python3 -B k8s/tests/live_prometheus.py -v

- `Rules`: the `spec` of k8s/components/monitoring/prometheusrule.yaml (the very file the
  component and the chart ship) written out as a `groups:` file, then `promtool check rules`
  on it and `promtool test rules` with k8s/tests/alerts.test.yaml beside it.
- `Live`: three visit-server replicas on loopback ports, each with a journal of its own, and
  Debian's prometheus scraping them every second with those rules (evaluated every second:
  short intervals for this test only), listening on loopback only, its storage in a
  temporary directory. Visits spread over the replicas are summed by PromQL as /stats counts
  them; every /metrics passes `promtool check metrics`; a replica whose journal cannot be
  written still scrapes and shows it; a stopped replica is `up` 0 and
  VisitServerReplicaDown pending.

Needs PyYAML, and prometheus and promtool on PATH (or PROMETHEUS, PROMTOOL). Every wait is
bounded; every socket goes to 127.0.0.1.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
RULE_TESTS = ROOT / "k8s" / "tests" / "alerts.test.yaml"
# The name alerts.test.yaml's rule_files gives the rules.
RULES_NAME = "visit-server.rules.yaml"
SERVER_BIN = os.environ.get("VISIT_SERVER_BIN", str(ROOT / "target" / "debug" / "visit-server"))
PROMETHEUS = os.environ.get("PROMETHEUS", "prometheus")
PROMTOOL = os.environ.get("PROMTOOL", "promtool")
# How long any one condition may take to show in Prometheus: a scrape and an evaluation
# are a second each, so this is ample on a busy machine and still bounds the test.
WAIT_SECONDS = 30
# The visits each replica receives.
VISITS = (5, 3, 7)
# Alerts that depend on this machine, not on the servers: the journals share the host's
# disk, which may well be more than 85% full.
HOST_ALERTS = 'alertname!="VisitJournalVolumeFilling"'


def write_groups(directory):
    """Writes the PrometheusRule manifest's spec as a Prometheus rules file in `directory`,
    and returns the file and the number of rules in it."""
    manifest = yaml.safe_load(RULES.read_text())
    groups = manifest["spec"]["groups"]
    path = Path(directory) / RULES_NAME
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path, sum(len(g["rules"]) for g in groups)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5.0):
    """(status, body) of a GET; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(what, check, seconds=WAIT_SECONDS):
    """Polls `check` until it returns something truthy, and returns that; fails the test
    naming `what` and the last value seen after `seconds`."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError, KeyError) as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {what} (last seen: {last!r})")


def stop(proc, signum, seconds):
    """Sends `signum` to `proc` unless it has exited, waits `seconds` for it, then kills it."""
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def listening_addresses(pid):
    """The local addresses of the TCP sockets process `pid` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                raw = bytes.fromhex(address)
                if width == 8:
                    host = socket.inet_ntop(socket.AF_INET, raw[::-1])
                else:
                    # Four 32-bit words, each in host (little-endian) order.
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    host = socket.inet_ntop(socket.AF_INET6, words)
                found.append((host, int(port, 16)))
    return found


class Rules(unittest.TestCase):
    """promtool on the rules the component ships."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="visit-rules-")
        cls.rules, cls.count = write_groups(cls.dir.name)

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def test_promtool_check_rules(self):
        run = subprocess.run([PROMTOOL, "check", "rules", str(self.rules)],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn(f"SUCCESS: {self.count} rules found", run.stdout)

    def test_promtool_test_rules(self):
        tests = Path(self.dir.name) / RULE_TESTS.name
        shutil.copyfile(RULE_TESTS, tests)
        run = subprocess.run([PROMTOOL, "test", "rules", str(tests)],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("SUCCESS", run.stdout)


class Replica:
    """One visit-server on a loopback port with a journal of its own."""

    def __init__(self, index, directory):
        self.name = f"visit-server-{index}"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dir = Path(directory) / self.name
        self.dir.mkdir()
        self.journal = self.dir / "visits.txt"
        self.log = open(self.dir / "server.log", "wb")
        self.proc = subprocess.Popen(
            [SERVER_BIN, "--listen", self.address, "--file", str(self.journal),
             "--name", self.name, "--utc-offset", "Z"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        wait_for(f"{self.name} ready", lambda: self.proc.poll() is None
                 and get(self.url("/readyz"))[0] == 200)

    def url(self, path):
        return f"http://{self.address}{path}"

    def visit(self):
        return get(self.url("/"))[0]

    def stats(self):
        status, body = get(self.url("/stats"))
        assert status == 200, (status, body)
        return json.loads(body)

    def metrics(self):
        status, body = get(self.url("/metrics"))
        assert status == 200, (status, body)
        return body

    def stop(self):
        # SIGTERM: the server drains and exits within 5 s (CONTRACT.md section 3).
        stop(self.proc, signal.SIGTERM, 10)
        self.log.close()


class Prometheus:
    """Debian's prometheus, scraping `replicas` every second with the component's rules,
    on a loopback port, its storage in `directory`."""

    def __init__(self, replicas, directory):
        self.dir = Path(directory) / "prometheus"
        self.dir.mkdir()
        rules, _ = write_groups(self.dir)
        self.storage = self.dir / "data"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{
                # The labels a ServiceMonitor's targets get (servicemonitor.yaml), which
                # the alerts use.
                "job_name": "visit-server",
                "static_configs": [{
                    "targets": [r.address],
                    "labels": {"namespace": "ci", "service": "visit-server-headless",
                               "pod": r.name},
                } for r in replicas],
            }],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.log = open(self.dir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.storage}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.dir,
        )
        wait_for("prometheus ready", lambda: self.proc.poll() is None
                 and get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200)

    def query(self, promql):
        """The instant vector `promql` gives, as {frozenset of labels: value}."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql})
        status, body = get(url)
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (promql, status, body)
        return {frozenset(s["metric"].items()): float(s["value"][1])
                for s in answer["data"]["result"]}

    def scalar(self, promql):
        """The value of a query that gives one series, or None while it gives none."""
        result = self.query(promql)
        assert len(result) <= 1, (promql, result)
        return next(iter(result.values()), None)

    def stop(self):
        stop(self.proc, signal.SIGTERM, 20)
        self.log.close()


class Live(unittest.TestCase):
    """One scenario, in the order of the test names: visits, a failing journal, a replica
    stopped."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="visit-prometheus-")
        cls.replicas = []
        cls.prometheus = None
        try:
            cls.replicas = [Replica(i, cls.dir.name) for i in range(len(VISITS))]
            cls.prometheus = Prometheus(cls.replicas, cls.dir.name)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for r in cls.replicas:
            r.stop()
        if cls.prometheus:
            cls.prometheus.stop()
        cls.dir.cleanup()

    def check_metrics(self, replica):
        """promtool check metrics on what the replica's /metrics answers now."""
        run = subprocess.run([PROMTOOL, "check", "metrics"], input=replica.metrics(),
                             capture_output=True, timeout=60)
        self.assertEqual((run.returncode, run.stdout + run.stderr), (0, b""), replica.name)

    def test_0_prometheus_listens_on_loopback_only_and_stores_in_a_temporary_directory(self):
        addresses = listening_addresses(self.prometheus.proc.pid)
        self.assertEqual(addresses, [("127.0.0.1", self.prometheus.port)])
        self.assertTrue(self.prometheus.storage.is_relative_to(self.dir.name))
        wait_for("prometheus's write-ahead log in its storage directory",
                 lambda: (self.prometheus.storage / "wal").is_dir())

    def test_1_visits_summed_by_prometheus_equal_each_replicas_stats(self):
        for replica, n in zip(self.replicas, VISITS):
            for _ in range(n):
                self.assertEqual(replica.visit(), 200)
        for replica in self.replicas:
            self.check_metrics(replica)
        p = self.prometheus
        wait_for(f"sum(visit_server_visits_recorded_total) == {sum(VISITS)}",
                 lambda: p.scalar("sum(visit_server_visits_recorded_total)") == sum(VISITS))
        by_instance = {dict(labels)["instance"]: value for labels, value in
                       p.query("sum by (instance) (visit_server_visits_recorded_total)").items()}
        stats = {r.address: r.stats()["total"]["visits"] for r in self.replicas}
        self.assertEqual(by_instance, {a: float(v) for a, v in stats.items()})
        self.assertEqual(list(stats.values()), list(VISITS))
        # Every visit went through a committed batch: the histogram's sum is the visits.
        self.assertEqual(p.scalar("sum(visit_journal_batch_records_sum)"), sum(VISITS))
        self.assertEqual(p.scalar("sum(visit_journal_batch_records_count)"),
                         p.scalar("sum(visit_journal_batches_total)"))
        self.assertEqual(p.scalar("count(visit_server_disk_size_bytes"
                                  " >= visit_server_disk_available_bytes)"), len(VISITS))
        # Healthy replicas: nothing pending, nothing firing.
        self.assertEqual(p.query(f"ALERTS{{{HOST_ALERTS}}}"), {})

    def test_2_a_replica_whose_journal_cannot_be_written_still_scrapes_and_shows_it(self):
        failing = self.replicas[1]
        # The journal's path becomes a directory: every append (which follows the path,
        # CONTRACT.md section 6) and every readiness probe fails, as on a broken volume.
        failing.journal.unlink()
        failing.journal.mkdir()
        self.assertEqual(failing.visit(), 503)
        self.check_metrics(failing)
        p = self.prometheus
        pod = f'pod="{failing.name}"'
        wait_for("the failing replica's errors in Prometheus", lambda: p.scalar(
            f"sum(visit_server_append_errors_total{{{pod}}})") == 1)
        wait_for("the failing replica not ready",
                 lambda: p.scalar(f"visit_server_ready{{{pod}}}") == 0)
        self.assertEqual(p.scalar(f"up{{{pod}}}"), 1)
        self.assertEqual(p.scalar(f"visit_server_journal_unwritable{{{pod}}}"), 1)
        for alert in ("VisitJournalAppendErrors", "VisitServerNotReady"):
            wait_for(f"{alert} pending for {failing.name}", lambda alert=alert: p.scalar(
                f'ALERTS{{alertname="{alert}",alertstate="pending",{pod}}}') == 1)
        self.assertEqual(p.scalar(f'count(ALERTS{{pod!="visit-server-1",{HOST_ALERTS}}})'), None)

    def test_3_a_stopped_replica_is_down_and_its_alert_pending(self):
        stopped = self.replicas[2]
        stopped.stop()
        p = self.prometheus
        pod = f'pod="{stopped.name}"'
        wait_for(f"up{{{pod}}} == 0", lambda: p.scalar(f"up{{{pod}}}") == 0)
        wait_for("VisitServerReplicaDown pending", lambda: p.scalar(
            f'ALERTS{{alertname="VisitServerReplicaDown",alertstate="pending",{pod}}}') == 1)
        # The healthy replica still records, so the service is not down.
        self.assertEqual(self.replicas[0].visit(), 200)
        self.assertEqual(p.scalar('count(ALERTS{alertname="VisitServerDown"})'), None)
        self.assertEqual(p.scalar(f'count(ALERTS{{pod="visit-server-0",{HOST_ALERTS}}})'), None)
        self.assertEqual(p.scalar("up{pod=\"visit-server-0\"}"), 1)


if __name__ == "__main__":
    unittest.main()
