"""The facts the lab and the server's contract rely on, read from the rendered manifests.

Schema validators and checkov accept any well-formed StatefulSet; these tests pin what
makes this one right: the journal path is on the claim, the probes never record a
visit, the port is the one the server listens on, and the image agrees with all that.

Run from the repository root (needs kubectl and PyYAML):

    python3 -m unittest discover -s k8s/tests -v
"""

import posixpath
import re
import shlex
import subprocess
import unittest
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

# CONTRACT.md section 4: where the journal lives in the container and who writes it.
JOURNAL = "/home/app/data/visits.txt"
LISTEN = "0.0.0.0:8080"
APP_UID = 65532
# CONTRACT.md section 3: after SIGTERM the server exits within this many seconds.
SERVER_DRAIN_SECONDS = 5
# The RSS the contract expects under load; requests and limits are sized from it.
EXPECTED_RSS_BYTES = 20 * 1000 * 1000

_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


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


def render(overlay):
    """Renders an overlay as `kubectl apply -k` would, keyed by (kind, name)."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    docs = {}
    for doc in yaml.safe_load_all(out):
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in docs, f"{overlay}: {key} rendered twice"
        docs[key] = doc
    return docs


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

    @classmethod
    def setUpClass(cls):
        cls.docs = render(cls.overlay)
        cls.sts = cls.docs[("StatefulSet", "visit-server")]
        cls.pod = cls.sts["spec"]["template"]["spec"]
        (cls.container,) = cls.pod["containers"]

    def env_var(self, name):
        (var,) = [e for e in self.container["env"] if e["name"] == name]
        return var

    def env(self, name):
        return self.env_var(name)["value"]

    def container_port(self, ref):
        """The container port number a probe or a Service names, by number or by name."""
        for port in self.container["ports"]:
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
        self.assertEqual(self.env("VISIT_LISTEN"), LISTEN)
        listen_port = int(LISTEN.rpartition(":")[2])
        (port,) = self.container["ports"]
        self.assertEqual((port["name"], port["containerPort"]), ("http", listen_port))

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
                self.assertEqual(self.container_port(get["port"]), 8080)

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

    def test_everything_lands_in_the_overlays_namespace(self):
        namespaces = {doc["metadata"].get("namespace") for doc in self.docs.values()}
        self.assertEqual(len(namespaces), 1)
        self.assertNotIn(namespaces.pop(), (None, "default"))


class DevOverlay(OverlayFacts, unittest.TestCase):
    overlay = "dev"
    replicas = 1

    def test_rolls_out_on_apply(self):
        self.assertEqual(self.sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0)


class ProdOverlay(OverlayFacts, unittest.TestCase):
    overlay = "prod"
    replicas = 3

    def test_rollout_waits_for_the_partition_to_be_lowered(self):
        partition = self.sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
        self.assertEqual(partition, self.replicas)

    def test_image_comes_from_a_registry_with_a_fixed_tag(self):
        image = self.container["image"]
        self.assertIn("/", image, "prod pulls from a registry, not a locally loaded image")
        self.assertRegex(image, r":[0-9]+\.[0-9]+\.[0-9]+$|@sha256:[0-9a-f]{64}$")


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
