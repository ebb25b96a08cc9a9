"""Runs the chart's `helm test` pod for real, as the kubelet would run it, with no cluster.

The pod's command and environment come from the chart's default rendering (release
visit-server). Three visit-server processes stand in for the replicas, each on its own
loopback address and port 8080 as a pod is; a round-robin relay on port 80 stands in for
the client Service; /etc/hosts names them as the cluster DNS would
(visit-server-N.visit-server-headless, visit-server). The script runs under busybox's sh,
with busybox's wget, timeout and date, as in the server's image. Then:

- all replicas up: it exits 0, names each replica as ready, and its one visit through the
  "Service" is in exactly one replica's journal;
- one replica stopped: it exits 1 and names that replica, and only that one;
- the "Service" down as well: it names the failed visit too.

Needs root inside a network and mount namespace of its own (.ci/steps/25-helm-chart runs it
as `unshare --net --mount`): it brings up the namespace's loopback and mounts a hosts file
over /etc/hosts, which nobody outside the namespace sees. Environment: VISIT_SERVER_BIN, the
server to run; BUSYBOX, the busybox binary; VISIT_HELM_OUT (default target/helm) for the
replicas' journals.
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART_DIR = ROOT / "charts" / "visit-server"
REPLICAS = 3
# Each replica's address; the "Service" has its own.
ADDRESSES = [f"127.0.0.{10 + n}" for n in range(REPLICAS)]
SERVICE_ADDRESS = "127.0.0.20"


def test_pod():
    """The rendered `helm test` pod's container: (argv, env)."""
    with helm.Chart.load(CHART_DIR) as chart:
        manifests = chart.render(
            {}, name="visit-server", namespace="visit-journal", is_install=True
        )
    (pod,) = [
        doc
        for path, text in manifests.items()
        if "/templates/tests/" in path
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] == "Pod"
    ]
    (container,) = pod["spec"]["containers"]
    return container["command"], {e["name"]: e["value"] for e in container["env"]}


class Relay(threading.Thread):
    """The client Service: accepts on SERVICE_ADDRESS:port and hands each connection to the
    next replica in turn (as kube-proxy spreads connections), bytes both ways."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.listener = socket.create_server((SERVICE_ADDRESS, port))
        self.next = 0

    def run(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            target = ADDRESSES[self.next % REPLICAS]
            self.next += 1
            threading.Thread(target=self.serve, args=(client, target), daemon=True).start()

    def serve(self, client, target):
        with client:
            try:
                upstream = socket.create_connection((target, 8080), timeout=5)
            except OSError:
                return
            with upstream:
                back = threading.Thread(target=self.pipe, args=(upstream, client))
                back.start()
                self.pipe(client, upstream)
                back.join()

    @staticmethod
    def pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        # shutdown wakes the accept() blocked in run(); close alone would leave it waiting.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.join(timeout=5)


class HelmTestPod(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.command, cls.env = test_pod()
        cls.work = Path(
            tempfile.mkdtemp(dir=os.environ.get("VISIT_HELM_OUT", ROOT / "target" / "helm"))
        )
        subprocess.run([os.environ["BUSYBOX"], "ip", "link", "set", "lo", "up"], check=True)
        hostnames = {
            address: f"visit-server-{n}.{cls.env['HEADLESS']}"
            for n, address in enumerate(ADDRESSES)
        }
        hosts = cls.work / "hosts"
        hosts.write_text(
            "127.0.0.1 localhost\n"
            + "".join(f"{a} {h}\n" for a, h in hostnames.items())
            + f"{SERVICE_ADDRESS} {cls.env['SERVICE'].rsplit(':', 1)[0]}\n"
        )
        subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
        # busybox's applets by their names, first on PATH, as in the image's /busybox.
        cls.bin = cls.work / "bin"
        cls.bin.mkdir()
        for applet in ("sh", "wget", "timeout", "date", "sleep", "head"):
            (cls.bin / applet).symlink_to(os.environ["BUSYBOX"])
        cls.servers = [cls.start(n) for n in range(REPLICAS)]
        cls.relay = Relay(int(cls.env["SERVICE"].rsplit(":", 1)[1]))
        cls.relay.start()

    @classmethod
    def start(cls, n):
        server = subprocess.Popen(
            [os.environ["VISIT_SERVER_BIN"]],
            env={
                "VISIT_LISTEN": f"{ADDRESSES[n]}:8080",
                "VISIT_FILE": str(cls.work / f"pvc-{n}" / "visits.txt"),
                "VISIT_NAME": f"visit-server-{n}",
            },
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((ADDRESSES[n], 8080), timeout=1).close()
                return server
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"replica {n} did not start listening on {ADDRESSES[n]}:8080")

    @classmethod
    def tearDownClass(cls):
        cls.relay.close()
        # SIGKILL: the journals are scratch, and a drain would only add seconds.
        for server in cls.servers:
            server.kill()
            server.wait(timeout=10)

    def run_pod(self, **env):
        """Runs the pod's command as the kubelet would: its argv, its env, nothing else."""
        result = subprocess.run(
            self.command,
            env={**self.env, "PATH": str(self.bin), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        output = "".join(f"    | {line}\n" for line in (result.stdout + result.stderr).splitlines())
        print(f"\n    the pod's output (exit {result.returncode}):\n{output}", file=sys.stderr)
        return result

    def visits(self):
        return [
            line
            for n in range(REPLICAS)
            if (self.work / f"pvc-{n}" / "visits.txt").exists()
            for line in (self.work / f"pvc-{n}" / "visits.txt").read_text().splitlines()
        ]

    def test_1_all_replicas_ready(self):
        self.assertEqual(self.command[:2], ["sh", "-c"])
        before = len(self.visits())
        result = self.run_pod()
        self.assertEqual(result.returncode, 0)
        for n in range(REPLICAS):
            self.assertIn(
                f"ok: visit-server-{n}.visit-server-headless /readyz: ready\n", result.stdout
            )
        self.assertIn("ok: GET http://visit-server:80/ recorded a visit: Hello!", result.stdout)
        self.assertEqual(len(self.visits()), before + 1)

    def test_2_a_stopped_replica_is_named(self):
        # A replica that died (a drain would take seconds and end the same way).
        self.servers[1].kill()
        self.servers[1].wait(timeout=10)
        result = self.run_pod(READY_SECONDS="2")
        self.assertEqual(result.returncode, 1)
        self.assertIn("FAILED: visit-server-1.visit-server-headless /readyz", result.stdout)
        self.assertNotIn("FAILED: visit-server-0", result.stdout)
        self.assertNotIn("FAILED: visit-server-2", result.stdout)

    def test_3_a_failed_visit_is_named(self):
        self.relay.close()
        result = self.run_pod(READY_SECONDS="1")
        self.assertEqual(result.returncode, 1)
        self.assertIn("FAILED: GET http://visit-server:80/", result.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
