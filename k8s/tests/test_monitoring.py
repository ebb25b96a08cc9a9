"""The monitoring component (CONTRACT.md section 13), rendered into each overlay as README
"Monitoring" says to include it, and its two objects checked against the Prometheus
Operator's own schemas.

kubernetes-validate knows no monitoring.coreos.com kind, so .ci/steps/20-k8s-validate
validates the overlays without the component, and these tests hold the rest together:
- including the component changes nothing but two labels on the headless Service and adds
  the ServiceMonitor and the PrometheusRule, so everything else is what kubernetes-validate
  and checkov already passed;
- those two objects are checked against the models PyPI's cloudcoil generates from the
  Prometheus Operator's CRDs (v0.80): every field known and of its type; a field the CRD
  does not know is refused here, as the API server's strict field validation would;
- the ServiceMonitor reaches each pod's own /metrics exactly once, and the rules'
  expressions name metrics that /metrics has.
The rules themselves are checked by promtool (.ci/steps/45-prometheus).

Run from the repository root (needs kubectl, PyYAML and cloudcoil, from .ci/k8s-tools.txt):

    python3 -m unittest discover -s k8s/tests -v
"""

import re
import unittest
from pathlib import Path

import yaml

# The directory of these tests is on the path when unittest discovers them.
from operator_crds import problems
from test_manifests import readme_label_patches, render, render_with_monitoring

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "k8s" / "components" / "monitoring"
RULES = COMPONENT / "prometheusrule.yaml"
README = ROOT / "README.md"
# The exposition /metrics is held to, byte for byte (visit-server/src/metrics.rs).
GOLDEN_METRICS = ROOT / "visit-server" / "src" / "testdata" / "metrics.prom"
RUNBOOKS = "https://github.com/visit-journal/visit-journal/blob/main/README.md#"
# The labels the component puts on the headless Service: the one the ServiceMonitor selects,
# and the one its `job` comes from.
HEADLESS_LABELS = {"app.kubernetes.io/name": "visit-server", "visit-journal/metrics": "per-pod"}
JOB = "visit-server"
# The alerts of CONTRACT.md section 13, and the one more README "Monitoring" documents.
REQUIRED_ALERTS = {
    "VisitServerReplicaDown",
    "VisitServerNotReady",
    "VisitJournalAppendErrors",
    "VisitJournalPoisoned",
    "VisitJournalRetentionFailing",
    "VisitJournalVolumeFilling",
    "VisitJournalDamagedFiles",
}
MORE_ALERTS = {"VisitServerDown"}
# As the Prometheus Operator's mixins use them.
SEVERITIES = {"warning", "critical"}
METRICS_PORT = 8080


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces
    as hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def rules():
    manifest = yaml.safe_load(RULES.read_text())
    return [r for group in manifest["spec"]["groups"] for r in group["rules"]]


class MonitoringFacts:
    """Checks for the component in one overlay; subclasses name it and its namespace."""

    overlay = None
    namespace = None
    # Whether the overlay includes k8s/components/front-proxy: then the pod's port is the
    # proxy's, which forwards every path (/metrics too) to the server.
    proxied = None

    @classmethod
    def setUpClass(cls):
        cls.plain = render(cls.overlay)
        cls.docs = render_with_monitoring(cls.overlay)
        cls.monitor = cls.docs[("ServiceMonitor", "visit-server")]
        cls.rule = cls.docs[("PrometheusRule", "visit-server")]
        cls.sts = cls.docs[("StatefulSet", "visit-server")]

    def test_adds_the_two_objects_in_the_overlays_namespace(self):
        added = set(self.docs) - set(self.plain)
        self.assertEqual(added, {("ServiceMonitor", "visit-server"),
                                 ("PrometheusRule", "visit-server")})
        for key in added:
            doc = self.docs[key]
            self.assertEqual(doc["apiVersion"], "monitoring.coreos.com/v1")
            self.assertEqual(doc["metadata"]["namespace"], self.namespace, key)

    def test_the_readmes_label_patch_labels_both_objects(self):
        docs = render_with_monitoring(self.overlay, readme_label_patches())
        for kind in ("ServiceMonitor", "PrometheusRule"):
            labels = docs[(kind, "visit-server")]["metadata"]["labels"]
            self.assertEqual(labels["release"], "kube-prometheus-stack", kind)
            self.assertEqual(labels["app.kubernetes.io/part-of"], "visit-journal", kind)

    def test_changes_nothing_else_but_the_headless_services_labels(self):
        for key, doc in self.plain.items():
            with self.subTest(key=key):
                got = self.docs[key]
                if key == ("Service", "visit-server-headless"):
                    want = yaml.safe_load(yaml.safe_dump(doc))
                    want["metadata"]["labels"].update(HEADLESS_LABELS)
                    self.assertEqual(got, want)
                else:
                    self.assertEqual(got, doc)

    def test_the_crd_objects_match_the_operators_schemas(self):
        for kind in ("ServiceMonitor", "PrometheusRule"):
            with self.subTest(kind=kind):
                self.assertEqual(problems(self.docs[(kind, "visit-server")]), [])

    def test_the_schema_check_sees_a_wrong_field(self):
        # Guards the check above: a misspelt field, a wrong type, a bad duration.
        for kind, change, expected in (
            ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(intervall="30s"),
             "unknown field .spec.endpoints[0].intervall"),
            ("ServiceMonitor", lambda d: d["spec"].update(jobLabel=["app.kubernetes.io/name"]),
             "spec.jobLabel"),
            ("PrometheusRule", lambda d: d["spec"]["groups"][0].update(interval="30"),
             "spec.groups.0.interval"),
        ):
            with self.subTest(expected=expected):
                doc = yaml.safe_load(yaml.safe_dump(self.docs[(kind, "visit-server")]))
                change(doc)
                self.assertIn(expected, "\n".join(problems(doc)))

    def test_scrapes_each_pods_own_metrics_once(self):
        spec = self.monitor["spec"]
        wanted = spec["selector"]["matchLabels"]
        services = [doc for (kind, _), doc in self.docs.items() if kind == "Service"
                    and all(doc["metadata"].get("labels", {}).get(k) == v
                            for k, v in wanted.items())]
        # One Service: each pod is one target, never counted twice.
        self.assertEqual([s["metadata"]["name"] for s in services], ["visit-server-headless"])
        (service,) = services
        # Its endpoints are the StatefulSet's pods, ready or not: an unready replica is
        # still scraped and shows why.
        pod_labels = self.sts["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(all(pod_labels.get(k) == v
                            for k, v in service["spec"]["selector"].items()))
        self.assertIs(service["spec"].get("publishNotReadyAddresses"), True)
        self.assertEqual(service["spec"]["clusterIP"], "None")
        (endpoint,) = spec["endpoints"]
        self.assertEqual(endpoint["path"], "/metrics")
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        pod = self.sts["spec"]["template"]["spec"]
        front = ([c for c in pod.get("initContainers", []) if c["name"] == "front-proxy"]
                 if self.proxied else pod["containers"])
        self.assertEqual(len(front), 1)
        ports = {p.get("name"): p["containerPort"] for p in front[0]["ports"]}
        target = port["targetPort"]
        self.assertEqual(ports.get(target, target), METRICS_PORT)
        self.assertIn(METRICS_PORT, ports.values())

    def test_the_job_is_the_one_the_alerts_select(self):
        service = self.docs[("Service", "visit-server-headless")]
        job = service["metadata"]["labels"][self.monitor["spec"]["jobLabel"]]
        self.assertEqual(job, JOB)
        for rule in rules():
            for selector in re.findall(r"\bup\{([^}]*)\}", rule["expr"]):
                self.assertIn(f'job="{JOB}"', selector, rule["alert"])


class DevMonitoring(MonitoringFacts, unittest.TestCase):
    overlay = "dev"
    namespace = "visit-journal-dev"
    proxied = False


class ProdMonitoring(MonitoringFacts, unittest.TestCase):
    overlay = "prod"
    namespace = "visit-journal"
    proxied = True


class RulesFile(unittest.TestCase):
    """The one source of the alerts, as the chart and promtool read it."""

    def test_is_one_document_whose_spec_holds_the_groups(self):
        docs = list(yaml.safe_load_all(RULES.read_text()))
        self.assertEqual(len(docs), 1, "the chart reads it with fromYaml: one document")
        self.assertEqual(docs[0]["kind"], "PrometheusRule")
        self.assertTrue(docs[0]["spec"]["groups"])
        # No anchors: every reader (kustomize, Helm, promtool after PyYAML) sees plain text.
        self.assertNotRegex(RULES.read_text(), r"(?m)^[^#]*[:-] [&*][\w-]+")

    def test_holds_every_alert_with_a_severity_and_its_annotations(self):
        self.assertEqual({r.get("alert") for r in rules()}, REQUIRED_ALERTS | MORE_ALERTS)
        for rule in rules():
            with self.subTest(alert=rule["alert"]):
                self.assertIn(rule["labels"]["severity"], SEVERITIES)
                notes = rule["annotations"]
                self.assertEqual(set(notes), {"summary", "description", "runbook", "runbook_url"})
                self.assertEqual(notes["runbook"], notes["runbook_url"])
                self.assertTrue(notes["summary"].endswith("."), "one sentence")
                self.assertNotIn("\n", notes["summary"])

    def test_every_runbook_is_a_readme_section(self):
        # Headings outside code blocks (where `#` starts a shell comment).
        text = re.sub(r"(?ms)^```.*?^```", "", README.read_text())
        headings = re.findall(r"(?m)^#+ (.+)$", text)
        anchors = {github_anchor(h) for h in headings}
        for rule in rules():
            with self.subTest(alert=rule["alert"]):
                url = rule["annotations"]["runbook"]
                self.assertTrue(url.startswith(RUNBOOKS), url)
                self.assertIn(url[len(RUNBOOKS):], anchors)
                self.assertEqual(url[len(RUNBOOKS):], rule["alert"].lower())

    def test_expressions_name_only_metrics_that_metrics_has(self):
        families = set(re.findall(r"(?m)^# TYPE (\S+) (\S+)$", GOLDEN_METRICS.read_text()))
        names = set()
        for name, kind in families:
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        for rule in rules():
            for metric in re.findall(r"\b(visit_\w+)", rule["expr"]):
                self.assertIn(metric, names, rule["alert"])


if __name__ == "__main__":
    unittest.main()
