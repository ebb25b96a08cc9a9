"""The facts the lab and the server's contract rely on, read from the rendered manifests.

Schema validators and checkov accept any well-formed StatefulSet; these tests pin what
makes this one right: the journal path is on the claim, the probes never record a
visit, the port is the one the server (or, in prod, its front proxy) listens on, and the
image and the proxy's nginx.conf agree with all that.

Run from the repository root (needs kubectl and PyYAML):

    python3 -m unittest discover -s k8s/tests -v
"""

import posixpath
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

# CONTRACT.md section 4: where the journal lives in the container and who writes it.
JOURNAL = "/home/app/data/visits.txt"
LISTEN = "0.0.0.0:8080"
# The pod's port, whoever listens on it: the server itself, or its front proxy.
POD_PORT = 8080
# CONTRACT.md section 8: behind the proxy, the server listens here and trusts only it.
PROXIED_LISTEN = "127.0.0.1:8081"
PROXY_ADDRESS = "127.0.0.1"
NGINX_CONF = ROOT / "k8s" / "components" / "front-proxy" / "nginx.conf"
# CONTRACT.md section 13: the one file of alerts, which the Helm chart reads too.
PROMETHEUS_RULE = ROOT / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
README = ROOT / "README.md"
# visit-server's read timeout (server::Limits::read_timeout): it closes a connection idle
# this long, so the proxy must drop its pooled connections sooner.
SERVER_READ_TIMEOUT_SECONDS = 5
# The most /visits streams the server runs at once (server::MAX_STREAMS): each may leave
# one temporary file of proxy_max_temp_file_size in the proxy's /tmp.
SERVER_MAX_STREAMS = 16
# The proxy's peak RSS (master and worker) holding the contract's 3,000 slow-header
# clients, measured by .ci/steps/40-front-proxy (BENCHMARKS.md).
EXPECTED_PROXY_RSS_BYTES = 42 * 1000 * 1000
APP_UID = 65532
# CONTRACT.md section 3: after SIGTERM the server exits within this many seconds.
SERVER_DRAIN_SECONDS = 5
# The RSS the contract expects under load; requests and limits are sized from it.
EXPECTED_RSS_BYTES = 20 * 1000 * 1000
# CONTRACT.md section 11: the read token, mounted from this Secret's key into this file
# (the token helper's README and tests, and the Helm chart, use the same names).
READ_TOKEN_SECRET = "visit-server-read-token"
READ_TOKEN_KEY = "token"
READ_TOKEN_DIR = "/var/run/secrets/visit-server"
READ_TOKEN_FILE = f"{READ_TOKEN_DIR}/token"

_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
_NGINX_SUFFIXES = {"k": 2**10, "m": 2**20, "g": 2**30}


def quantity(value):
    """Parses the few Kubernetes quantities used here: 500m, 1, 64Mi."""
    text = str(value)
    if text.endswith("m"):
        return int(text[:-1]) / 1000
    for suffix, factor in _BINARY_SUFFIXES.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return float(text)


def size(value):
    """Parses a visit-server SIZE (CONTRACT.md section 6): bytes, or K/KiB, M/MiB, G/GiB."""
    text = str(value)
    for suffix, shift in (("KiB", 10), ("K", 10), ("MiB", 20), ("M", 20), ("GiB", 30), ("G", 30)):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) << shift
    return int(text)
def nginx_size(text):
    """Parses an nginx size: 4m, 8k, 512."""
    factor = _NGINX_SUFFIXES.get(text[-1].lower(), 1)
    return int(text.rstrip("kKmMgG")) * factor


def nginx_seconds(text):
    """Parses the nginx times used here: 5s, 10s (plain numbers are seconds too)."""
    return int(text.rstrip("s"))


def nginx_directives():
    """The front proxy's directives as (line number, name, arguments), in file order; the
    entries of `map` blocks are values, not directives, and are left out. (The file keeps
    one directive per line and no `#` inside a value, which the facts below rely on.)"""
    directives = []
    in_map = False
    for number, line in enumerate(NGINX_CONF.read_text().splitlines(), 1):
        code = line.split("#", 1)[0].strip()
        if code == "}":
            in_map = False
        elif code and not in_map:
            name, _, args = code.rstrip(";{").strip().partition(" ")
            directives.append((number, name, args.strip()))
            in_map = name == "map"
    return directives


def nginx_values(name):
    return [args for _, n, args in nginx_directives() if n == name]


def kustomize(directory):
    """Renders a kustomization as `kubectl apply -k` would, keyed by (kind, name)."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    docs = {}
    for doc in yaml.safe_load_all(out):
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in docs, f"{directory}: {key} rendered twice"
        docs[key] = doc
    return docs


def render(overlay):
    """Renders an overlay, keyed by (kind, name)."""
    return kustomize(ROOT / "k8s" / "overlays" / overlay)


def render_with_monitoring(overlay, patches=()):
    """The overlay as README "Monitoring" says to change it: a copy of k8s/ in which the
    overlay's kustomization lists ../../components/monitoring among its components (and has
    `patches` too). Keyed by (kind, name)."""
    with tempfile.TemporaryDirectory(prefix="visit-monitoring-") as tmp:
        k8s = Path(tmp) / "k8s"
        shutil.copytree(ROOT / "k8s", k8s, ignore=shutil.ignore_patterns("tests"))
        path = k8s / "overlays" / overlay / "kustomization.yaml"
        kustomization = yaml.safe_load(path.read_text())
        kustomization.setdefault("components", []).append("../../components/monitoring")
        kustomization.setdefault("patches", []).extend(patches)
        path.write_text(yaml.safe_dump(kustomization, sort_keys=False))
        return kustomize(path.parent)


def readme_label_patches():
    """The `patches:` README "Monitoring" shows for giving both monitoring objects a label."""
    blocks = re.findall(r"(?ms)^```yaml\n(.*?)^```", README.read_text())
    (block,) = [b for b in blocks if "/metadata/labels/release" in b]
    return yaml.safe_load(block)["patches"]


def dockerfile_instructions():
    """The image recipe's instructions as (KEYWORD, arguments), continuations joined."""
    text = (ROOT / "visit-server" / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            yield keyword.upper(), args.strip()


def runtime_stage():
    """The instructions of the Dockerfile's last stage: what the image ships."""
    stage = []
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            stage = []
        stage.append((keyword, args))
    return stage


class OverlayFacts:
    """Checks for one overlay; subclasses name it and its replica count."""

    overlay = None
    replicas = None
    # Whether the overlay includes k8s/components/front-proxy.
    proxied = None
    # Whether the overlay includes k8s/components/read-token (reads need a token).
    guarded = None

    @classmethod
    def rendered(cls):
        """The objects these facts are checked in, keyed by (kind, name): the overlay's (the
        Helm chart's tests check the chart's renderings against the same facts)."""
        return render(cls.overlay)

    @classmethod
    def setUpClass(cls):
        cls.docs = cls.rendered()
        cls.sts = cls.docs[("StatefulSet", "visit-server")]
        cls.pod = cls.sts["spec"]["template"]["spec"]
        (cls.container,) = cls.pod["containers"]
        # The container that owns the pod's port: the proxy sidecar, or the server.
        sidecars = [c for c in cls.pod.get("initContainers", []) if c["name"] == "front-proxy"]
        cls.proxy = sidecars[0] if sidecars else None
        cls.front = cls.proxy if cls.proxied else cls.container

    def env_var(self, name):
        (var,) = [e for e in self.container["env"] if e["name"] == name]
        return var

    def env(self, name):
        return self.env_var(name)["value"]

    def container_port(self, ref):
        """The pod port number a probe or a Service names, by number or by name: a port of
        the container that faces clients (the server, or its front proxy)."""
        for port in self.front["ports"]:
            if ref in (port["containerPort"], port.get("name")):
                return port["containerPort"]
        self.fail(f"{self.overlay}: no container port {ref!r}")

    def selects_the_pods(self, selector):
        labels = self.sts["spec"]["template"]["metadata"]["labels"]
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    def test_replica_count(self):
        self.assertEqual(self.sts["spec"]["replicas"], self.replicas)

    def test_replicas_are_independent_and_keep_their_claims(self):
        spec = self.sts["spec"]
        self.assertEqual(spec["podManagementPolicy"], "Parallel")
        self.assertEqual(spec["updateStrategy"]["type"], "RollingUpdate")
        self.assertGreater(spec["minReadySeconds"], 0)
        self.assertEqual(
            spec["persistentVolumeClaimRetentionPolicy"],
            {"whenDeleted": "Retain", "whenScaled": "Retain"},
        )

    def test_each_replica_gets_its_own_claim(self):
        (claim,) = self.sts["spec"]["volumeClaimTemplates"]
        self.assertEqual(claim["metadata"]["name"], "data")
        self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteOnce"])
        storage = quantity(claim["spec"]["resources"]["requests"]["storage"])
        self.assertGreaterEqual(storage, 64 * 2**20)
        # A pod volume called "data" would shadow the claim template.
        self.assertNotIn("data", [v["name"] for v in self.pod.get("volumes", [])])

    def test_the_journal_keeps_itself_within_its_claim(self):
        # CONTRACT.md section 6: sealed segments are retired beyond the retain size, so the
        # journal never needs more than retain + rotate bytes (plus a small summary).
        (claim,) = self.sts["spec"]["volumeClaimTemplates"]
        storage = quantity(claim["spec"]["resources"]["requests"]["storage"])
        rotate = size(self.env("VISIT_ROTATE_SIZE"))
        retain = size(self.env("VISIT_RETAIN_SIZE"))
        self.assertGreaterEqual(rotate, 4 * 2**10)
        self.assertGreater(retain, rotate)
        self.assertLessEqual(retain + rotate, 0.85 * storage)

    def test_journal_is_on_the_claim(self):
        self.assertEqual(self.env("VISIT_FILE"), JOURNAL)
        mounts = {m["mountPath"]: m for m in self.container["volumeMounts"]}
        mount = mounts.get(posixpath.dirname(JOURNAL))
        self.assertIsNotNone(mount, f"nothing mounted at {posixpath.dirname(JOURNAL)}")
        self.assertEqual(mount["name"], "data")
        self.assertNotIn("subPath", mount)
        self.assertFalse(mount.get("readOnly", False))

    def test_container_port_is_the_listen_port(self):
        if self.proxied:
            # The server is reachable from inside the pod only, and believes only the proxy.
            self.assertEqual(self.env("VISIT_LISTEN"), PROXIED_LISTEN)
            self.assertEqual(self.env("VISIT_TRUSTED_PROXIES"), PROXY_ADDRESS)
            self.assertFalse(self.container.get("ports"))
        else:
            self.assertEqual(self.env("VISIT_LISTEN"), LISTEN)
            self.assertNotIn("VISIT_TRUSTED_PROXIES", [e["name"] for e in self.container["env"]])
            self.assertIsNone(self.proxy)
        (port,) = self.front["ports"]
        self.assertEqual((port["name"], port["containerPort"]), ("http", POD_PORT))

    def test_probes_hit_health_endpoints_never_the_visit_counter(self):
        expected = {
            "startupProbe": "/livez",
            "livenessProbe": "/livez",
            "readinessProbe": "/readyz",
        }
        for probe, path in expected.items():
            with self.subTest(probe=probe):
                get = self.container[probe]["httpGet"]
                self.assertEqual(get["path"], path)
                self.assertEqual(self.container_port(get["port"]), POD_PORT)
                if self.proxied:
                    # A probe's port name is looked up in its own container: a number here.
                    self.assertEqual(get["port"], POD_PORT)

    def test_headless_service_governs_the_statefulset(self):
        svc = self.docs[("Service", self.sts["spec"]["serviceName"])]
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        self.assertIs(svc["spec"]["publishNotReadyAddresses"], True)
        self.assertTrue(self.selects_the_pods(svc["spec"]["selector"]))

    def test_client_service_maps_port_80_to_the_server(self):
        svc = self.docs[("Service", "visit-server")]
        self.assertEqual(svc["spec"]["type"], "ClusterIP")
        (port,) = svc["spec"]["ports"]
        self.assertEqual(port["port"], 80)
        self.assertEqual(self.container_port(port["targetPort"]), 8080)
        self.assertTrue(self.selects_the_pods(svc["spec"]["selector"]))

    def test_each_replica_is_named_after_its_pod(self):
        # CONTRACT.md section 5: --name / VISIT_NAME names the replica in X-Visit-Replica
        # and in the cluster view; the downward API gives the pod's own name.
        var = self.env_var("VISIT_NAME")
        self.assertEqual(var["valueFrom"], {"fieldRef": {"fieldPath": "metadata.name"}})

    def test_peers_are_every_pod_of_the_headless_service(self):
        host, _, port = self.env("VISIT_PEER_DNS").rpartition(":")
        # The governing Service: its name resolves to every pod, ready or not.
        self.assertEqual(host, self.sts["spec"]["serviceName"])
        svc = self.docs[("Service", host)]
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        self.assertIs(svc["spec"]["publishNotReadyAddresses"], True)
        # A headless Service's port is not translated: DNS gives pod IPs, so the port is
        # the container's.
        self.assertEqual(self.container_port(int(port)), 8080)
        (svc_port,) = svc["spec"]["ports"]
        self.assertEqual(self.container_port(svc_port["targetPort"]), int(port))
        self.assertNotIn("VISIT_PEERS", [e["name"] for e in self.container["env"]])
        # Peers reach a pod on the pod's port. Behind the proxy the server listens on
        # another one, so it must be told (VISIT_PUBLIC_PORT) to recognise its own pod
        # among the peers; without the proxy the listening port is the peers' port.
        if self.proxied:
            self.assertEqual(self.env("VISIT_PUBLIC_PORT"), str(POD_PORT))
            self.assertEqual(int(port), POD_PORT)
        else:
            self.assertNotIn("VISIT_PUBLIC_PORT", [e["name"] for e in self.container["env"]])
            self.assertEqual(int(port), int(self.env("VISIT_LISTEN").rpartition(":")[2]))

    def test_egress_is_only_to_the_peers_and_the_cluster_dns(self):
        spec = self.docs[("NetworkPolicy", "visit-server")]["spec"]
        self.assertIn("Egress", spec["policyTypes"])
        peers, dns = spec["egress"]
        # The peers: pods of this app (same namespace), on the port they listen on.
        (to,) = peers["to"]
        self.assertEqual(set(to), {"podSelector"})
        self.assertTrue(self.selects_the_pods(to["podSelector"]["matchLabels"]))
        self.assertEqual(peers["ports"], [{"port": 8080, "protocol": "TCP"}])
        # DNS: kube-dns in kube-system, port 53 over UDP and TCP, nothing else.
        (to,) = dns["to"]
        self.assertEqual(
            to["namespaceSelector"],
            {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        )
        self.assertEqual(to["podSelector"], {"matchLabels": {"k8s-app": "kube-dns"}})
        self.assertEqual(
            sorted((p["port"], p["protocol"]) for p in dns["ports"]),
            [(53, "TCP"), (53, "UDP")],
        )
        # Ingress stays the HTTP port only.
        (rule,) = spec["ingress"]
        self.assertNotIn("from", rule)
        (port,) = rule["ports"]
        self.assertEqual(self.container_port(port["port"]), 8080)

    def test_selectors_match_the_pod_template(self):
        self.assertTrue(self.selects_the_pods(self.sts["spec"]["selector"]["matchLabels"]))
        pdb = self.docs[("PodDisruptionBudget", "visit-server")]
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
        self.assertTrue(self.selects_the_pods(pdb["spec"]["selector"]["matchLabels"]))
        policy = self.docs[("NetworkPolicy", "visit-server")]
        self.assertTrue(self.selects_the_pods(policy["spec"]["podSelector"]["matchLabels"]))

    def test_pod_runs_as_the_image_user_without_privileges(self):
        pod_sc = self.pod["securityContext"]
        self.assertIs(pod_sc["runAsNonRoot"], True)
        self.assertEqual(
            (pod_sc["runAsUser"], pod_sc["runAsGroup"], pod_sc["fsGroup"]),
            (APP_UID, APP_UID, APP_UID),
        )
        self.assertEqual(pod_sc["fsGroupChangePolicy"], "OnRootMismatch")
        self.assertEqual(pod_sc["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertIs(self.pod["automountServiceAccountToken"], False)
        sc = self.container["securityContext"]
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        self.assertNotEqual(sc.get("runAsUser", APP_UID), 0)

    def test_grace_period_outlasts_the_drain(self):
        self.assertGreater(self.pod["terminationGracePeriodSeconds"], SERVER_DRAIN_SECONDS)

    def test_resources_leave_headroom_over_the_expected_rss(self):
        requests = self.container["resources"]["requests"]
        limits = self.container["resources"]["limits"]
        self.assertGreater(quantity(requests["memory"]), EXPECTED_RSS_BYTES)
        self.assertGreaterEqual(quantity(limits["memory"]), 2 * quantity(requests["memory"]))
        self.assertLessEqual(quantity(requests["cpu"]), quantity(limits["cpu"]))

    def test_reads_need_the_token_from_the_secret_exactly_when_guarded(self):
        env = {e["name"]: e for e in self.container["env"]}
        mounts = {m["name"]: m for m in self.container["volumeMounts"]}
        volumes = {v["name"]: v for v in self.pod.get("volumes", [])}
        secrets = {name: v["secret"] for name, v in volumes.items() if "secret" in v}
        if not self.guarded:
            # Open reads, the lab's behaviour: no token file, no Secret.
            self.assertNotIn("VISIT_READ_TOKEN_FILE", env)
            self.assertEqual(secrets, {})
            return
        self.assertEqual(env["VISIT_READ_TOKEN_FILE"].get("value"), READ_TOKEN_FILE)
        (name,) = secrets
        secret = secrets[name]
        self.assertEqual(secret["secretName"], READ_TOKEN_SECRET)
        self.assertEqual(secret["items"], [{"key": READ_TOKEN_KEY, "path": "token"}])
        # Not optional: a pod without the Secret must not start with open reads.
        self.assertIs(secret["optional"], False)
        # Readable by the server through the pod's fsGroup, by no one else, and not writable.
        mode = secret["defaultMode"]
        self.assertEqual(self.pod["securityContext"]["fsGroup"], APP_UID)
        self.assertEqual(mode & 0o040, 0o040, oct(mode))
        self.assertEqual(mode & 0o227, 0, oct(mode))
        mount = mounts[name]
        self.assertEqual(mount["mountPath"], READ_TOKEN_DIR)
        self.assertIs(mount["readOnly"], True)
        # A subPath mount never sees the Secret's updates: rotation needs the directory.
        self.assertNotIn("subPath", mount)
        # Only the server reads it; the proxy never sees the token.
        if self.proxy:
            self.assertNotIn(name, [m["name"] for m in self.proxy["volumeMounts"]])

    def test_everything_lands_in_the_overlays_namespace(self):
        namespaces = {doc["metadata"].get("namespace") for doc in self.docs.values()}
        self.assertEqual(len(namespaces), 1)
        self.assertNotIn(namespaces.pop(), (None, "default"))


class DevOverlay(OverlayFacts, unittest.TestCase):
    overlay = "dev"
    replicas = 1
    proxied = False
    guarded = False

    def test_has_no_front_proxy(self):
        self.assertNotIn("initContainers", self.pod)
        self.assertNotIn("ConfigMap", [kind for kind, _ in self.docs])

    def test_rolls_out_on_apply(self):
        self.assertEqual(self.sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0)


class ProdOverlay(OverlayFacts, unittest.TestCase):
    overlay = "prod"
    replicas = 3
    proxied = True
    guarded = True

    def test_proxy_is_a_native_sidecar_running_the_mounted_config(self):
        self.assertIsNotNone(self.proxy, "prod must include k8s/components/front-proxy")
        self.assertEqual(self.proxy["restartPolicy"], "Always")
        image = self.proxy["image"]
        self.assertIn("nginx-unprivileged", image)
        self.assertRegex(image, r":[0-9]+\.[0-9]+\.[0-9]+(-[a-z0-9-]+)?$|@sha256:[0-9a-f]{64}$")
        mounts = {m["mountPath"]: m for m in self.proxy["volumeMounts"]}
        command = self.proxy["command"]
        self.assertEqual(command[0], "nginx")
        self.assertEqual(command[1:2] + command[3:], ["-c", "-g", "daemon off;"])
        conf_dir, _, conf_name = command[2].rpartition("/")
        self.assertEqual(conf_name, "nginx.conf")
        self.assertIs(mounts[conf_dir]["readOnly"], True)
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        config_map = volumes[mounts[conf_dir]["name"]]["configMap"]["name"]
        # The whole configuration, byte for byte as in the repository.
        data = self.docs[("ConfigMap", config_map)]["data"]
        self.assertEqual(data, {"nginx.conf": NGINX_CONF.read_text()})

    def test_kubectl_exec_means_the_server(self):
        annotations = self.sts["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(annotations["kubectl.kubernetes.io/default-container"], "visit-server")

    def test_proxy_is_hardened_like_the_server(self):
        sc = self.proxy["securityContext"]
        self.assertIs(sc["runAsNonRoot"], True)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        self.assertNotEqual(sc.get("runAsUser", APP_UID), 0)
        # Its one writable place is /tmp, a bounded emptyDir that holds its pid file and
        # its temporary files: every one of them under /tmp.
        mounts = {m["mountPath"]: m["name"] for m in self.proxy["volumeMounts"]}
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        tmp = volumes[mounts["/tmp"]]["emptyDir"]
        for name in ("pid", *(f"{k}_temp_path" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))):
            with self.subTest(directive=name):
                (path,) = nginx_values(name)
                self.assertTrue(path.startswith("/tmp/"), path)
        # Every buffered /visits the server may be streaming fits at once.
        (temp_file,) = nginx_values("proxy_max_temp_file_size")
        self.assertGreaterEqual(quantity(tmp["sizeLimit"]), SERVER_MAX_STREAMS * nginx_size(temp_file))

    def test_proxy_resources_cover_the_measured_rss(self):
        requests = self.proxy["resources"]["requests"]
        limits = self.proxy["resources"]["limits"]
        self.assertGreater(quantity(limits["memory"]), 1.5 * EXPECTED_PROXY_RSS_BYTES)
        self.assertGreaterEqual(quantity(limits["memory"]), quantity(requests["memory"]))
        self.assertLessEqual(quantity(requests["cpu"]), quantity(limits["cpu"]))

    def test_proxy_probes_its_own_port(self):
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            with self.subTest(probe=probe):
                self.assertEqual(self.proxy[probe]["tcpSocket"]["port"], POD_PORT)

    def test_services_and_policy_name_the_proxy_port_by_number(self):
        # A named port of an init container is not resolved by every network plugin.
        for name in ("visit-server", "visit-server-headless"):
            (port,) = self.docs[("Service", name)]["spec"]["ports"]
            self.assertEqual(port["targetPort"], POD_PORT)
        (rule,) = self.docs[("NetworkPolicy", "visit-server")]["spec"]["ingress"]
        self.assertEqual(rule["ports"], [{"port": POD_PORT, "protocol": "TCP"}])

    def test_proxy_stops_within_the_grace_period_after_the_server(self):
        (timeout,) = nginx_values("worker_shutdown_timeout")
        self.assertLess(
            SERVER_DRAIN_SECONDS + nginx_seconds(timeout),
            self.pod["terminationGracePeriodSeconds"],
        )


class FrontProxyConfig(unittest.TestCase):
    """nginx.conf against the pod and the server it fronts (CONTRACT.md section 8)."""

    def test_listens_on_the_pod_port_over_ipv4_and_ipv6_without_http2(self):
        self.assertEqual(sorted(nginx_values("listen")), [str(POD_PORT), f"[::]:{POD_PORT}"])
        self.assertEqual(nginx_values("http2"), [])

    def test_forwards_to_the_server_and_overwrites_the_forwarding_header(self):
        self.assertEqual(nginx_values("proxy_pass"), ["http://visit_server"])
        (server,) = nginx_values("server")[:1]
        self.assertEqual(server.split()[0], PROXIED_LISTEN)
        headers = dict(v.split(None, 1) for v in nginx_values("proxy_set_header"))
        self.assertEqual(headers["X-Forwarded-For"], "$remote_addr")
        # The pool to the server is used: HTTP/1.1 and no Connection: close.
        self.assertEqual(headers["Connection"], '""')
        self.assertEqual(nginx_values("proxy_http_version"), ["1.1"])

    def test_bounds_what_a_client_can_hold(self):
        for name in (
            "client_header_timeout",
            "client_header_buffer_size",
            "large_client_header_buffers",
            "client_max_body_size",
            "client_body_timeout",
            "keepalive_timeout",
            "send_timeout",
            "worker_connections",
            "keepalive",
        ):
            with self.subTest(directive=name):
                self.assertTrue(nginx_values(name), f"nginx.conf must set {name}")
        # The whole header stays below what the server refuses itself (16 KiB).
        count, size = nginx_values("large_client_header_buffers")[0].split()
        self.assertLess(int(count) * nginx_size(size), 16 * 1024)
        # A body is never passed on: any Content-Length but 0, or Transfer-Encoding, is 400.
        self.assertEqual(nginx_values("if"), ["($refuse_body)"])
        # A pooled connection is dropped before the server drops it as idle.
        keepalive_timeouts = [nginx_seconds(v) for v in nginx_values("keepalive_timeout")]
        self.assertLess(min(keepalive_timeouts), SERVER_READ_TIMEOUT_SECONDS)
        # Enough descriptors for every connection nginx may hold.
        (connections,) = nginx_values("worker_connections")
        (nofile,) = nginx_values("worker_rlimit_nofile")
        self.assertGreater(int(nofile), int(connections))
        self.assertEqual(nginx_values("worker_processes"), ["1"])

    def test_every_directive_says_why(self):
        # Each directive, or each run of directives on consecutive lines, comes right after
        # a comment: what it bounds and why that number.
        lines = NGINX_CONF.read_text().splitlines()
        directive_lines = {number for number, _, _ in nginx_directives()}
        for number, name, _ in nginx_directives():
            above = number - 1
            while above in directive_lines:
                above -= 1
            with self.subTest(line=number, directive=name):
                self.assertTrue(
                    above >= 1 and lines[above - 1].lstrip().startswith("#"),
                    f"nginx.conf:{number}: {name} has no comment above it",
                )


class ImageAgreesWithManifests(unittest.TestCase):
    def test_runtime_stage_has_the_contracts_settings(self):
        stage = runtime_stage()
        env = {}
        for keyword, args in stage:
            if keyword == "ENV":
                env.update(pair.split("=", 1) for pair in shlex.split(args))
        self.assertEqual(env.get("VISIT_LISTEN"), LISTEN)
        self.assertEqual(env.get("VISIT_FILE"), JOURNAL)
        self.assertIn(("EXPOSE", "8080"), stage)
        self.assertIn(("USER", f"{APP_UID}:{APP_UID}"), stage)
        (entrypoint,) = [args for keyword, args in stage if keyword == "ENTRYPOINT"]
        self.assertTrue(entrypoint.startswith("["), "ENTRYPOINT must be exec form")

    def test_healthcheck_probes_the_configured_address(self):
        (check,) = [args for keyword, args in runtime_stage() if keyword == "HEALTHCHECK"]
        # The server's own probe follows VISIT_LISTEN; a URL here would hard-code a port.
        self.assertTrue(check.endswith('CMD ["/usr/local/bin/visit-server", "--probe"]'), check)
        # podman drops HEALTHCHECK from OCI images: the file says to build --format docker.
        self.assertIn("--format docker", (ROOT / "visit-server" / "Dockerfile").read_text())

    def test_no_unpinned_frontend(self):
        first = (ROOT / "visit-server" / "Dockerfile").read_text().splitlines()[0]
        self.assertFalse(first.lower().startswith("# syntax="), first)

    def test_runtime_base_has_cat_for_kubectl_exec(self):
        (base,) = [args for keyword, args in runtime_stage() if keyword == "FROM"]
        # distroless debug images carry busybox (cat included) on PATH.
        self.assertRegex(base, r"^gcr\.io/distroless/cc-debian\d+:debug-nonroot\b")


class Kustomizations(unittest.TestCase):
    def test_no_deprecated_common_labels(self):
        for path in sorted((ROOT / "k8s").rglob("kustomization.yaml")):
            with self.subTest(path=str(path.relative_to(ROOT))):
                self.assertNotIn("commonLabels", yaml.safe_load(path.read_text()))


if __name__ == "__main__":
    unittest.main()
