"""The Helm chart, charts/visit-server, with the real Helm engine (CONTRACT.md section 12).

Helm 4's own Go SDK renders, lints and packages the chart here, through PyPI's
helm-python-sdk (`helm_python`, ctypes over libhelm_c), since no helm binary can be fetched
on these machines. The tests hold the chart to the prod overlay (installed as release
visit-server with its defaults, it gives the same objects and the same pod), to the facts
k8s/tests/test_manifests.py checks in the overlays, to the server's own parser (every SIZE,
offset and proxy the schema takes, the server takes), and to the README (every values
example renders), and, with metrics.serviceMonitor and metrics.prometheusRule on, to the
prod overlay with k8s/components/monitoring/ included. Each rendering is written under
$VISIT_HELM_OUT/rendered (default target/helm) for .ci/steps/25-helm-chart to validate
strictly and pass through checkov; its monitoring.coreos.com objects, which
kubernetes-validate does not know, go to $VISIT_HELM_OUT/rendered-monitoring for the step to
check against the Prometheus Operator's CRD schemas (k8s/tests/operator_crds.py).

Run from the repository root, in the venv of .ci/helm-tools.txt, with kubectl on PATH and
VISIT_SERVER_BIN naming a built visit-server (as .ci/steps/25-helm-chart does):

    python -m unittest discover -s k8s/tests/helm -v
"""

import copy
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import tomllib
import unittest
from pathlib import Path

import helm_python as helm
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))
import test_manifests as facts  # noqa: E402  (the overlays' facts, parsers and names)

CHART_DIR = ROOT / "charts" / "visit-server"
# What the contract installs: the prod overlay's namespace, the release named like its objects.
RELEASE = "visit-server"
NAMESPACE = "visit-journal"
OUT = Path(os.environ.get("VISIT_HELM_OUT", ROOT / "target" / "helm"))
RENDERED = OUT / "rendered"
RENDERED_MONITORING = OUT / "rendered-monitoring"
# The labels of Helm's conventions (`helm create`), which the overlays' objects do not
# carry; everything else must agree. Of them, selectors carry only the release's instance.
HELM_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
}
HELM_SELECTOR_LABELS = {"app.kubernetes.io/instance"}
# The Kubernetes versions every rendering is checked for, as step 20 checks the overlays.
KUBE_VERSIONS = (
    re.search(r"^kube_versions=\(([^)]*)\)", (ROOT / ".ci" / "k8s-checks.sh").read_text(), re.M)
    .group(1)
    .split()
)
# The dev overlay as chart values: k8s/overlays/dev/kustomization.yaml, value by value.
DEV_VALUES = {
    "replicaCount": 1,
    "image": {"repository": "visit-server", "tag": "dev"},
    "persistence": {"size": "64Mi"},
    "journal": {"rotateSize": "4MiB", "retainSize": "48MiB"},
    "readToken": {"existingSecret": ""},
    "frontProxy": {"enabled": False},
    "updateStrategy": {"rollingUpdate": {"partition": 0}},
}
# Both monitoring objects on (CONTRACT.md section 13): the chart's counterpart of including
# k8s/components/monitoring/ in an overlay.
MONITORING = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}
MONITORING_KINDS = ("ServiceMonitor", "PrometheusRule")
# What the ServiceMonitor selects on the headless Service, and the job its targets get.
METRICS_LABEL = ("visit-journal/metrics", "per-pod")
JOB = "visit-server"

CHART = None


def setUpModule():
    global CHART
    RENDERED.mkdir(parents=True, exist_ok=True)
    RENDERED_MONITORING.mkdir(parents=True, exist_ok=True)
    # Loaded once: each load logs Helm's INFO line about the nginx.conf symbolic link.
    CHART = helm.Chart.load(CHART_DIR)


def tearDownModule():
    CHART.close()


class Rendering:
    """One `helm template`: the objects by (kind, name), the `helm test` hooks, NOTES.txt."""

    def __init__(self, manifests):
        self.manifests = manifests
        self.objects, self.hooks, self.notes = {}, {}, ""
        for path, text in sorted(manifests.items()):
            if path.endswith("/NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if not doc:
                    continue
                key = (doc["kind"], doc["metadata"]["name"])
                target = self.hooks if "/templates/tests/" in path else self.objects
                assert key not in self.objects and key not in self.hooks, f"{key} twice"
                target[key] = doc

    def save(self, name):
        """Writes the objects and hooks for the step's validators, as `helm template` would:
        the Prometheus Operator's kinds apart, for the check that knows them."""
        docs = list(self.objects.values()) + list(self.hooks.values())
        operator = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
        core = [d for d in docs if d not in operator]
        (RENDERED / f"{name}.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False))
        if operator:
            (RENDERED_MONITORING / f"{name}.yaml").write_text(
                yaml.safe_dump_all(operator, sort_keys=False)
            )


def render(values=None, release=RELEASE, namespace=NAMESPACE, chart=None):
    return Rendering(
        (chart or CHART).render(values or {}, name=release, namespace=namespace, is_install=True)
    )


def refusal(values, **kwargs):
    """The message of the HelmError that rendering these values raises, or None."""
    try:
        render(values, **kwargs)
    except helm.HelmError as e:
        return str(e)
    return None


def normalized(doc, generated=None):
    """A copy of an object with what may differ between Helm and kustomize set aside:
    Helm's labels (in labels, label selectors and Service selectors), the chart's checksum
    annotations, kustomize's hashed names (`generated` maps them to the plain ones), empty
    lists and maps (the API server drops them), and the order of env, volumeMounts and
    volumes, which are maps keyed by name (nothing here refers to another variable)."""
    generated = generated or {}

    def walk(node, key=None):
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                v = walk(v, k)
                if k == "labels":
                    v = {lk: lv for lk, lv in v.items() if lk not in HELM_LABELS}
                elif k == "matchLabels" or (k == "selector" and "matchLabels" not in v):
                    v = {lk: lv for lk, lv in v.items() if lk not in HELM_SELECTOR_LABELS}
                if k == "annotations":
                    v = {ak: av for ak, av in v.items() if not ak.startswith("checksum/")}
                if v in ({}, []):
                    continue
                out[k] = v
            return out
        if isinstance(node, list):
            items = [walk(v) for v in node]
            if key in ("env", "volumeMounts", "volumes"):
                items.sort(key=lambda item: item["name"])
            return items
        if isinstance(node, str):
            return generated.get(node, node)
        return node

    return walk(copy.deepcopy(doc))


def kustomize(overlay):
    """The overlay's objects by (kind, name), its generated objects under their plain names,
    and the map from hashed to plain name."""
    docs = facts.render(overlay)
    generated = {}
    for kind, name in docs:
        match = re.fullmatch(r"(.+)-[a-z0-9]{10}", name)
        if kind in ("ConfigMap", "Secret") and match:
            generated[name] = match.group(1)
    return {(k, generated.get(n, n)): d for (k, n), d in docs.items()}, generated


def env_of(rendering, name=RELEASE):
    (container,) = rendering.objects[("StatefulSet", name)]["spec"]["template"]["spec"][
        "containers"
    ]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


class TheOverlaysAsAChart(unittest.TestCase):
    """With its defaults the chart is the prod overlay; with DEV_VALUES, the dev overlay."""

    def assert_same_objects(self, rendering, overlay):
        theirs, generated = kustomize(overlay)
        self.assertEqual(sorted(rendering.objects), sorted(theirs))
        for key, doc in theirs.items():
            with self.subTest(overlay=overlay, object=key):
                self.assertEqual(normalized(rendering.objects[key]), normalized(doc, generated))

    def test_defaults_give_the_prod_overlay(self):
        defaults = render()
        defaults.save("defaults")
        self.assert_same_objects(defaults, "prod")

    def test_dev_values_give_the_dev_overlay(self):
        dev = render(DEV_VALUES, namespace="visit-journal-dev")
        dev.save("dev-values")
        self.assert_same_objects(dev, "dev")

    def test_the_comparison_sees_a_difference(self):
        # The normalisation must not hide what matters: one probe, one env value, one claim.
        (theirs, generated), ours = kustomize("prod"), render()
        for path in (
            ("spec", "template", "spec", "containers", 0, "readinessProbe", "periodSeconds"),
            ("spec", "template", "spec", "containers", 0, "env", 3, "value"),
            ("spec", "volumeClaimTemplates", 0, "spec", "resources", "requests", "storage"),
            ("spec", "template", "spec", "initContainers", 0, "image"),
        ):
            with self.subTest(path=path):
                doc = copy.deepcopy(ours.objects[("StatefulSet", RELEASE)])
                node = doc
                for step in path[:-1]:
                    node = node[step]
                node[path[-1]] = "changed"
                self.assertNotEqual(
                    normalized(doc), normalized(theirs[("StatefulSet", RELEASE)], generated)
                )

    def test_no_env_value_refers_to_another(self):
        # Why the comparison may ignore the order of env: no $(VAR) reference depends on it.
        for rendering in (render(), render(DEV_VALUES)):
            for key, doc in rendering.objects.items():
                self.assertNotIn("$(", yaml.safe_dump(doc), key)


class ChartFacts:
    """test_manifests' overlay facts, checked in the chart's rendering of `values`."""

    values = {}
    namespace = NAMESPACE

    @classmethod
    def rendered(cls):
        return render(cls.values, namespace=cls.namespace).objects


class ChartDefaultsAreProd(ChartFacts, facts.ProdOverlay):
    pass


class ChartDevValuesAreDev(ChartFacts, facts.DevOverlay):
    values = DEV_VALUES
    namespace = "visit-journal-dev"


class ChartMetadata(unittest.TestCase):
    def test_chart_yaml(self):
        chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
        server = tomllib.loads((ROOT / "visit-server" / "Cargo.toml").read_text())
        version = server["package"]["version"]
        self.assertEqual(chart["apiVersion"], "v2")
        self.assertEqual(chart["name"], "visit-server")
        self.assertEqual((chart["version"], chart["appVersion"]), (version, version))
        self.assertEqual(chart["kubeVersion"], ">=1.29.0-0")
        self.assertEqual(CHART.metadata["version"], version)

    def test_each_linked_file_has_one_source(self):
        # nginx.conf and the alerts: each a symbolic link into k8s/components/, and what
        # Helm loaded is that file.
        for name, source in (
            ("nginx.conf", facts.NGINX_CONF),
            ("prometheusrule.yaml", facts.PROMETHEUS_RULE),
        ):
            with self.subTest(file=name):
                link = CHART_DIR / "files" / name
                self.assertTrue(link.is_symlink(), f"{link} must be a symbolic link, not a copy")
                self.assertEqual(link.resolve(), source.resolve())
                (loaded,) = [f for f in CHART.files if f["name"] == f"files/{name}"]
                self.assertEqual(loaded["data"], source.read_text())
        # The ConfigMap holds nginx.conf byte for byte (Monitoring checks the rules).
        data = render().objects[("ConfigMap", "visit-server-proxy")]["data"]
        self.assertEqual(data, {"nginx.conf": facts.NGINX_CONF.read_text()})

    def test_a_checkout_without_symbolic_links_is_refused(self):
        # git writes each link's target path into a plain file where links are off.
        with tempfile.TemporaryDirectory() as tmp:
            copy_dir = Path(tmp) / "visit-server"
            shutil.copytree(CHART_DIR, copy_dir, symlinks=True)
            targets = {}
            for name in ("nginx.conf", "prometheusrule.yaml"):
                link = copy_dir / "files" / name
                targets[name] = os.readlink(link)
                link.unlink()
                link.write_text(targets[name])
            with helm.Chart.load(copy_dir) as chart:
                message = refusal({}, chart=chart)
                self.assertIn("files/nginx.conf is not an nginx configuration", message or "")
                self.assertIn(targets["nginx.conf"], message)
                # Without the proxy, nginx.conf is not needed.
                self.assertIsNone(refusal({"frontProxy": {"enabled": False}}, chart=chart))
                # Nor are the rules without the PrometheusRule.
                values = merge(MONITORING, {"frontProxy": {"enabled": False}})
                message = refusal(values, chart=chart)
                self.assertIn("files/prometheusrule.yaml is not a PrometheusRule", message or "")
                self.assertIn(targets["prometheusrule.yaml"], message)
                values["metrics"]["prometheusRule"]["enabled"] = False
                self.assertIsNone(refusal(values, chart=chart))


class ReadToken(unittest.TestCase):
    """readToken.existingSecret and readToken.key (CONTRACT.md section 11)."""

    def pod(self, values):
        return render(values).objects[("StatefulSet", RELEASE)]["spec"]["template"]["spec"]

    def test_another_secret_and_key(self):
        pod = self.pod({"readToken": {"existingSecret": "visit-tokens", "key": "read"}})
        volumes = {v["name"]: v for v in pod["volumes"]}
        secret = volumes["read-token"]["secret"]
        self.assertEqual(secret["secretName"], "visit-tokens")
        self.assertEqual(secret["items"], [{"key": "read", "path": "token"}])
        self.assertIs(secret["optional"], False)
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        self.assertEqual(env["VISIT_READ_TOKEN_FILE"], facts.READ_TOKEN_FILE)

    def test_no_secret_no_mount_and_no_env(self):
        for proxy in (True, False):
            with self.subTest(frontProxy=proxy):
                pod = self.pod(
                    {"readToken": {"existingSecret": ""}, "frontProxy": {"enabled": proxy}}
                )
                self.assertNotIn("read-token", [v["name"] for v in pod.get("volumes", [])])
                (container,) = pod["containers"]
                self.assertNotIn("VISIT_READ_TOKEN_FILE", [e["name"] for e in container["env"]])
                self.assertNotIn("read-token", [m["name"] for m in container["volumeMounts"]])


class Names(unittest.TestCase):
    """Objects are named after the release (CONTRACT.md section 12)."""

    def test_objects_follow_the_release(self):
        for release, fullname in (
            ("visit-server", "visit-server"),
            ("lab", "lab-visit-server"),
            ("my-visit-server-2", "my-visit-server-2"),
        ):
            with self.subTest(release=release):
                rendering = render(release=release)
                names = sorted({name for _, name in rendering.objects})
                self.assertEqual(
                    names, sorted({fullname, f"{fullname}-headless", f"{fullname}-proxy"})
                )
                self.assertEqual(
                    sorted(rendering.hooks),
                    [("NetworkPolicy", f"{fullname}-test"), ("Pod", f"{fullname}-test")],
                )
                env = env_of(rendering, fullname)
                self.assertEqual(env["VISIT_PEER_DNS"], f"{fullname}-headless:8080")
                sts = rendering.objects[("StatefulSet", fullname)]
                self.assertEqual(sts["spec"]["serviceName"], f"{fullname}-headless")
                pod = sts["spec"]["template"]["spec"]
                self.assertEqual(pod["serviceAccountName"], fullname)
                volumes = {v["name"]: v for v in pod["volumes"]}
                self.assertEqual(volumes["proxy-config"]["configMap"]["name"], f"{fullname}-proxy")

    def test_a_long_release_name_still_fits(self):
        # Helm's longest release name; the StatefulSet's pods carry a label of its name, a
        # dash and a 10-character hash, and the headless Service's name must be a DNS label.
        release = "r" * 53
        rendering = render(release=release)
        (sts,) = [name for kind, name in rendering.objects if kind == "StatefulSet"]
        self.assertLessEqual(len(sts) + 11, 63)
        for _, name in rendering.objects:
            self.assertLessEqual(len(name), 63)
            self.assertRegex(name, r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        rendering.save("long-release")

    def test_two_releases_select_only_their_own_pods(self):
        a, b = render(release="a"), render(release="b")
        pods_of_b = b.objects[("StatefulSet", "b-visit-server")]["spec"]["template"]["metadata"]
        for (kind, name), doc in a.objects.items():
            spec = doc.get("spec", {})
            selector = spec.get("selector", spec.get("podSelector"))
            if not selector:
                continue
            selector = selector.get("matchLabels", selector)
            with self.subTest(object=(kind, name)):
                self.assertFalse(
                    all(pods_of_b["labels"].get(k) == v for k, v in selector.items()),
                    f"{kind}/{name} of release a selects the pods of release b",
                )

    def test_the_test_pod_is_selected_by_nothing_but_its_policy(self):
        rendering = render()
        pod = rendering.hooks[("Pod", f"{RELEASE}-test")]
        labels = pod["metadata"]["labels"]
        # Its own NetworkPolicy selects it, and lets it reach the release's pods only.
        policy = rendering.hooks[("NetworkPolicy", f"{RELEASE}-test")]["spec"]
        selected = policy["podSelector"]["matchLabels"]
        self.assertTrue(all(labels.get(k) == v for k, v in selected.items()))
        self.assertEqual(policy["policyTypes"], ["Ingress", "Egress"])
        self.assertNotIn("ingress", policy)
        replicas = policy["egress"][0]["to"][0]["podSelector"]["matchLabels"]
        pod_labels = rendering.objects[("StatefulSet", RELEASE)]["spec"]["template"]["metadata"][
            "labels"
        ]
        self.assertTrue(all(pod_labels.get(k) == v for k, v in replicas.items()))
        for (kind, name), doc in rendering.objects.items():
            spec = doc.get("spec", {})
            selector = spec.get("selector", spec.get("podSelector"))
            if selector:
                selector = selector.get("matchLabels", selector)
                self.assertFalse(all(labels.get(k) == v for k, v in selector.items()), (kind, name))

    def test_claim_templates_carry_no_label_that_changes(self):
        # volumeClaimTemplates are immutable: a chart version in them would make every
        # upgrade to a new chart version fail.
        (claim,) = render().objects[("StatefulSet", RELEASE)]["spec"]["volumeClaimTemplates"]
        self.assertEqual(
            claim["metadata"]["labels"], {"app.kubernetes.io/part-of": "visit-journal"}
        )
        selector = render().objects[("StatefulSet", RELEASE)]["spec"]["selector"]["matchLabels"]
        self.assertFalse(set(selector) & {"helm.sh/chart", "app.kubernetes.io/version"})


def selects(selector, labels):
    """Whether a matchLabels (or a Service's selector) selects an object with `labels`."""
    return all(labels.get(k) == v for k, v in selector.items())


def assert_same_as_the_component(test, rendering, overlay, patches=()):
    """That `rendering` gives the objects of the overlay with k8s/components/monitoring/
    included (and `patches`), as test_monitoring.py renders it: the two new objects, the
    headless Service's labels, everything else unchanged; Helm's labels and names aside."""
    theirs, generated = kustomize(overlay)
    plain = facts.render(overlay)
    with_component = facts.render_with_monitoring(overlay, patches)
    added = {key: doc for key, doc in with_component.items() if key not in plain}
    test.assertEqual(sorted(kind for kind, _ in added), sorted(MONITORING_KINDS))
    headless = ("Service", f"{RELEASE}-headless")
    theirs.update(added)
    theirs[headless] = with_component[headless]
    test.assertEqual(sorted(rendering.objects), sorted(theirs))
    for key, doc in theirs.items():
        with test.subTest(overlay=overlay, object=key):
            test.assertEqual(normalized(rendering.objects[key]), normalized(doc, generated))
    # The labels normalized() sets aside as Helm's, where monitoring needs them: the headless
    # Service's app.kubernetes.io/name is the targets' job.
    ours = rendering.objects[headless]["metadata"]["labels"]
    for key, value in with_component[headless]["metadata"]["labels"].items():
        test.assertEqual(ours.get(key), value, key)
    test.assertEqual(ours["app.kubernetes.io/name"], JOB)


class Monitoring(unittest.TestCase):
    """metrics.serviceMonitor and metrics.prometheusRule (CONTRACT.md section 13): off by
    default; on, the objects of k8s/components/monitoring/ included in the overlay."""

    def test_the_defaults_render_neither(self):
        for values in ({}, DEV_VALUES):
            with self.subTest(values=values):
                rendering = render(values)
                kinds = {kind for kind, _ in rendering.objects}
                self.assertFalse(kinds & set(MONITORING_KINDS))
                headless = rendering.objects[("Service", f"{RELEASE}-headless")]
                self.assertNotIn(METRICS_LABEL[0], headless["metadata"]["labels"])
        self.assertEqual(
            CHART.values["metrics"],
            {
                "serviceMonitor": {
                    "enabled": False,
                    "labels": {},
                    "interval": "",
                    "scrapeTimeout": "",
                },
                "prometheusRule": {"enabled": False, "labels": {}},
            },
        )

    def test_on_it_is_the_component_in_the_prod_overlay(self):
        rendering = render(MONITORING)
        rendering.save("monitoring")
        assert_same_as_the_component(self, rendering, "prod")

    def test_on_with_the_dev_values_it_is_the_component_in_the_dev_overlay(self):
        rendering = render(merge(DEV_VALUES, MONITORING), namespace="visit-journal-dev")
        rendering.save("monitoring-dev-values")
        assert_same_as_the_component(self, rendering, "dev")

    def test_the_comparison_sees_a_difference(self):
        # The normalisation must not hide what matters in the two new objects.
        theirs = facts.render_with_monitoring("prod")
        ours = render(MONITORING)
        for kind, path in (
            ("ServiceMonitor", ("spec", "jobLabel")),
            ("ServiceMonitor", ("spec", "endpoints", 0, "port")),
            ("ServiceMonitor", ("spec", "selector", "matchLabels", METRICS_LABEL[0])),
            ("PrometheusRule", ("spec", "groups", 0, "rules", 0, "expr")),
            ("PrometheusRule", ("spec", "groups", 0, "rules", 3, "annotations", "description")),
        ):
            with self.subTest(kind=kind, path=path):
                doc = copy.deepcopy(ours.objects[(kind, RELEASE)])
                node = doc
                for step in path[:-1]:
                    node = node[step]
                node[path[-1]] = "changed"
                self.assertNotEqual(normalized(doc), normalized(theirs[(kind, RELEASE)]))

    def test_the_rules_are_the_components_file_as_written(self):
        rule = render(MONITORING).objects[("PrometheusRule", RELEASE)]
        source = yaml.safe_load(facts.PROMETHEUS_RULE.read_text())
        self.assertEqual(rule["spec"], source["spec"])
        # The annotations' templates are Prometheus's, not Helm's: they reach it unexpanded.
        descriptions = [
            r["annotations"]["description"] for g in rule["spec"]["groups"] for r in g["rules"]
        ]
        self.assertTrue(all("{{ $labels.namespace }}" in d for d in descriptions))

    def test_turning_it_on_changes_no_pod(self):
        # No rollout: only the headless Service's labels change, and the two objects come.
        off, on = render(), render(MONITORING)
        for key, doc in off.objects.items():
            with self.subTest(object=key):
                if key == ("Service", f"{RELEASE}-headless"):
                    doc = copy.deepcopy(doc)
                    doc["metadata"]["labels"][METRICS_LABEL[0]] = METRICS_LABEL[1]
                self.assertEqual(on.objects[key], doc)
        self.assertEqual(on.hooks, off.hooks)

    def test_each_alone(self):
        monitor_only = render({"metrics": {"serviceMonitor": {"enabled": True}}})
        self.assertIn(("ServiceMonitor", RELEASE), monitor_only.objects)
        self.assertNotIn(("PrometheusRule", RELEASE), monitor_only.objects)
        headless = monitor_only.objects[("Service", f"{RELEASE}-headless")]
        self.assertEqual(headless["metadata"]["labels"][METRICS_LABEL[0]], METRICS_LABEL[1])
        rule_only = render({"metrics": {"prometheusRule": {"enabled": True}}})
        self.assertIn(("PrometheusRule", RELEASE), rule_only.objects)
        self.assertNotIn(("ServiceMonitor", RELEASE), rule_only.objects)
        headless = rule_only.objects[("Service", f"{RELEASE}-headless")]
        self.assertNotIn(METRICS_LABEL[0], headless["metadata"]["labels"])

    def test_each_release_scrapes_its_own_pods_once(self):
        # Two releases in one namespace: each ServiceMonitor selects exactly its own headless
        # Service (not the client Service, which lists the same pods), and not the other's.
        for release, fullname in (
            ("lab", "lab-visit-server"),
            ("my-visit-server", "my-visit-server"),
        ):
            with self.subTest(release=release):
                rendering = render(MONITORING, release=release)
                other = render(MONITORING, release="other")
                self.assertEqual(
                    sorted(k for k in rendering.objects if k[0] in MONITORING_KINDS),
                    [("PrometheusRule", fullname), ("ServiceMonitor", fullname)],
                )
                monitor = rendering.objects[("ServiceMonitor", fullname)]["spec"]
                services = [
                    name
                    for r in (rendering, other)
                    for (kind, name), doc in r.objects.items()
                    if kind == "Service"
                    and selects(monitor["selector"]["matchLabels"], doc["metadata"]["labels"])
                ]
                self.assertEqual(services, [f"{fullname}-headless"])
                self.assertNotIn("namespaceSelector", monitor)
                service = rendering.objects[("Service", f"{fullname}-headless")]
                self.assertEqual(service["metadata"]["labels"][monitor["jobLabel"]], JOB)
                pod = rendering.objects[("StatefulSet", fullname)]["spec"]["template"]
                self.assertTrue(selects(service["spec"]["selector"], pod["metadata"]["labels"]))
                (endpoint,) = monitor["endpoints"]
                self.assertIn(endpoint["port"], [p["name"] for p in service["spec"]["ports"]])
        # fullnameOverride renames the objects; the job stays the alerts'.
        rendering = render(merge(MONITORING, {"fullnameOverride": "journal"}))
        monitor = rendering.objects[("ServiceMonitor", "journal")]["spec"]
        service = rendering.objects[("Service", "journal-headless")]["metadata"]["labels"]
        self.assertEqual(service[monitor["jobLabel"]], JOB)

    def test_labels_interval_and_timeout(self):
        values = {
            "metrics": {
                "serviceMonitor": {
                    "enabled": True,
                    "labels": {"release": "kube-prometheus-stack", "example.com/team": "web"},
                    "interval": "1m30s",
                    "scrapeTimeout": "20s",
                },
                "prometheusRule": {"enabled": True, "labels": {"release": "prom", "tier": ""}},
            }
        }
        rendering = render(values)
        rendering.save("monitoring-labels-interval")
        monitor = rendering.objects[("ServiceMonitor", RELEASE)]
        rule = rendering.objects[("PrometheusRule", RELEASE)]
        self.assertEqual(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack")
        self.assertEqual(monitor["metadata"]["labels"]["example.com/team"], "web")
        self.assertEqual(monitor["metadata"]["labels"]["app.kubernetes.io/instance"], RELEASE)
        self.assertNotIn("tier", monitor["metadata"]["labels"])
        self.assertEqual(rule["metadata"]["labels"]["release"], "prom")
        self.assertEqual(rule["metadata"]["labels"]["tier"], "")
        self.assertNotIn("example.com/team", rule["metadata"]["labels"])
        (endpoint,) = monitor["spec"]["endpoints"]
        self.assertEqual((endpoint["interval"], endpoint["scrapeTimeout"]), ("1m30s", "20s"))
        # Empty: the Prometheus's own, so neither field is written.
        (endpoint,) = render(MONITORING).objects[("ServiceMonitor", RELEASE)]["spec"]["endpoints"]
        self.assertNotIn("interval", endpoint)
        self.assertNotIn("scrapeTimeout", endpoint)
        # Values that YAML would read as something else stay strings.
        labels = {"release": "true", "version": "1.0", "empty": ""}
        rendering = render(merge(MONITORING, {"metrics": {"serviceMonitor": {"labels": labels}}}))
        rendering.save("monitoring-label-strings")
        got = rendering.objects[("ServiceMonitor", RELEASE)]["metadata"]["labels"]
        self.assertEqual({k: got[k] for k in labels}, labels)

    def test_durations_the_operator_takes(self):
        for interval, timeout in (
            ("1s", ""),
            ("30s", "10s"),
            ("1m", "1m"),
            ("2m", ""),
            ("1m59s999ms", "500ms"),
            ("", "10s"),
            ("", "2m"),
            ("90s", "1m30s"),
        ):
            values = {
                "serviceMonitor": {"enabled": True, "interval": interval, "scrapeTimeout": timeout}
            }
            with self.subTest(values=values):
                self.assertIsNone(refusal({"metrics": values}))

    def test_what_the_schema_cannot_say_fails_with_the_values_named(self):
        for values, message in (
            (
                {"serviceMonitor": {"interval": "5m"}},
                "metrics.serviceMonitor.interval 5m is longer than 2m",
            ),
            (
                {"serviceMonitor": {"enabled": True, "interval": "2m1s"}},
                "metrics.serviceMonitor.interval 2m1s is longer than 2m",
            ),
            (
                {"serviceMonitor": {"interval": "1d"}},
                "metrics.serviceMonitor.interval 1d is longer than 2m",
            ),
            (
                {"serviceMonitor": {"interval": "0s"}},
                "metrics.serviceMonitor.interval 0s: a scrape interval must be longer than 0",
            ),
            (
                {"serviceMonitor": {"interval": "10s", "scrapeTimeout": "15s"}},
                "metrics.serviceMonitor.scrapeTimeout 15s is longer than "
                "metrics.serviceMonitor.interval 10s",
            ),
            (
                {"serviceMonitor": {"interval": "500ms", "scrapeTimeout": "1s"}},
                "metrics.serviceMonitor.scrapeTimeout 1s is longer than",
            ),
            (
                {"serviceMonitor": {"scrapeTimeout": "2m1s"}},
                "metrics.serviceMonitor.scrapeTimeout 2m1s is longer than 2m",
            ),
            (
                {"serviceMonitor": {"scrapeTimeout": "0ms"}},
                "metrics.serviceMonitor.scrapeTimeout 0ms: a scrape needs some time",
            ),
            (
                {"serviceMonitor": {"labels": {"app.kubernetes.io/name": "x"}}},
                "metrics.serviceMonitor.labels app.kubernetes.io/name: the chart sets this "
                "label itself (app.kubernetes.io/name: visit-server)",
            ),
            (
                {"prometheusRule": {"labels": {"helm.sh/chart": "x"}}},
                "metrics.prometheusRule.labels helm.sh/chart: the chart sets this label itself",
            ),
        ):
            with self.subTest(values=values):
                self.assertIn(message, refusal({"metrics": values}) or "")
        # The job comes from app.kubernetes.io/name, which nameOverride would change.
        message = refusal(merge(MONITORING, {"nameOverride": "lab"}))
        self.assertIn(
            "nameOverride lab: with metrics.serviceMonitor.enabled the scraped targets' job "
            'is the headless Service\'s app.kubernetes.io/name, which would be "lab"',
            message or "",
        )
        self.assertIsNone(refusal({"nameOverride": "lab"}))
        self.assertIsNone(refusal(merge(MONITORING, {"nameOverride": "visit-server"})))


class Notes(unittest.TestCase):
    """NOTES.txt prints the lab's commands for the release and its replica count."""

    def exec_lines(self, notes):
        return re.findall(
            r"^\s*(kubectl exec pod/\S+ -- cat /home/app/data/visits\.txt)$", notes, re.M
        )

    def test_the_lab_commands_for_each_replica(self):
        for release, replicas, fullname in (
            ("visit-server", 3, "visit-server"),
            ("lab", 5, "lab-visit-server"),
            ("lab", 1, "lab-visit-server"),
        ):
            with self.subTest(release=release, replicas=replicas):
                notes = render({"replicaCount": replicas}, release=release).notes
                self.assertIn(
                    f"kubectl get po,sts,svc,pvc -l app.kubernetes.io/instance={release}\n", notes
                )
                self.assertEqual(
                    self.exec_lines(notes),
                    [
                        f"kubectl exec pod/{fullname}-{n} -- cat /home/app/data/visits.txt"
                        for n in range(replicas)
                    ],
                )
                self.assertIn(f"helm test {release} --namespace {NAMESPACE}", notes)
                self.assertIn(f"--namespace {NAMESPACE}", notes)

    def test_no_replica_no_exec(self):
        notes = render({"replicaCount": 0}).notes
        self.assertEqual(self.exec_lines(notes), [])
        self.assertIn("replicaCount is 0: no pod runs", notes)

    def test_says_how_reads_are_guarded_and_rollouts_staged(self):
        notes = render().notes
        self.assertIn("visit-server-read-token", notes)
        self.assertIn("partition is 3", notes)
        notes = render(
            {
                "readToken": {"existingSecret": ""},
                "updateStrategy": {"rollingUpdate": {"partition": 0}},
            }
        ).notes
        self.assertIn("readToken.existingSecret is empty", notes)
        self.assertNotIn("partition", notes)

    def test_says_how_to_check_the_monitoring(self):
        self.assertNotIn("servicemonitor", render().notes)
        notes = render(MONITORING, release="lab").notes
        self.assertIn(
            "\n  kubectl get servicemonitor,prometheusrule lab-visit-server --show-labels\n", notes
        )
        self.assertIn(
            'up{job="visit-server",namespace="visit-journal",service="lab-visit-server-headless"}'
            " has one series per replica (3), each 1.",
            notes,
        )
        notes = render({"metrics": {"prometheusRule": {"enabled": True}}}).notes
        self.assertIn("\n  kubectl get prometheusrule visit-server --show-labels\n", notes)
        self.assertNotIn("up{", notes)


class Schema(unittest.TestCase):
    """values.schema.json refuses unknown keys and wrong types, naming the value."""

    def test_the_issue_table_of_bad_values(self):
        # (values, what the refusal must name)
        for values, names in (
            ({"replicaCount": "three"}, ["'/replicaCount'", "want integer"]),
            ({"replicaCount": -1}, ["'/replicaCount'", "minimum"]),
            ({"replicaCount": 18}, ["'/replicaCount'", "maximum"]),
            ({"replicaCount": 1.5}, ["'/replicaCount'"]),
            ({"replicas": 3}, ["'replicas' not allowed"]),
            ({"image": {"digset": ""}}, ["'/image'", "'digset' not allowed"]),
            ({"journal": {"rotate": "8MiB"}}, ["'/journal'", "'rotate' not allowed"]),
            ({"frontProxy": {"image": {"tags": "1"}}}, ["'/frontProxy/image'", "'tags'"]),
            ({"resources": {"requests": {"cpus": "1"}}}, ["'/resources/requests'", "'cpus'"]),
            ({"persistence": {"size": "lots"}}, ["'/persistence/size'", "'lots'"]),
            ({"persistence": {"size": 256}}, ["'/persistence/size'", "want string"]),
            ({"journal": {"rotateSize": "1KiB"}}, ["'/journal/rotateSize'", "'1KiB'"]),
            ({"journal": {"rotateSize": "5 MB"}}, ["'/journal/rotateSize'", "'5 MB'"]),
            ({"journal": {"rotateSize": 4095}}, ["'/journal/rotateSize'"]),
            ({"journal": {"retainSize": "1.5G"}}, ["'/journal/retainSize'", "'1.5G'"]),
            # The server takes an empty variable as unset; the chart always sets it.
            ({"journal": {"retainSize": ""}}, ["'/journal/retainSize'"]),
            ({"journal": {"retainDays": "30"}}, ["'/journal/retainDays'", "want integer"]),
            ({"journal": {"anonymize": "yes"}}, ["'/journal/anonymize'", "want boolean"]),
            ({"journal": {"utcOffset": "+3"}}, ["'/journal/utcOffset'", "'+3'"]),
            ({"image": {"digest": "3f2b" * 16}}, ["'/image/digest'"]),
            ({"image": {"digest": "sha256:XYZ"}}, ["'/image/digest'", "'sha256:XYZ'"]),
            ({"image": {"repository": "reg/app:1.0"}}, ["'/image/repository'", "'reg/app:1.0'"]),
            ({"image": {"pullPolicy": "Sometimes"}}, ["'/image/pullPolicy'"]),
            ({"service": {"port": 70000}}, ["'/service/port'", "maximum"]),
            ({"service": {"port": "80"}}, ["'/service/port'", "want integer"]),
            ({"service": {"type": "ExternalName"}}, ["'/service/type'"]),
            (
                {"podManagementPolicy": "Sometimes"},
                ["'/podManagementPolicy'", "'Parallel', 'OrderedReady'"],
            ),
            ({"updateStrategy": {"type": "Recreate"}}, ["'/updateStrategy/type'"]),
            (
                {"updateStrategy": {"rollingUpdate": {"partition": -1}}},
                ["'/updateStrategy/rollingUpdate/partition'"],
            ),
            (
                {"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Keep"}},
                ["'/persistentVolumeClaimRetentionPolicy/whenScaled'"],
            ),
            (
                {"readToken": {"existingSecret": "Token!"}},
                ["'/readToken/existingSecret'", "'Token!'"],
            ),
            ({"readToken": {"key": ""}}, ["'/readToken/key'"]),
            ({"frontProxy": {"enabled": "true"}}, ["'/frontProxy/enabled'", "want boolean"]),
            ({"trustedProxies": "10.0.0.1"}, ["'/trustedProxies'", "want array"]),
            (
                {"trustedProxies": ["proxy.example.com"]},
                ["'/trustedProxies/0'", "'proxy.example.com'"],
            ),
            ({"storageClassName": "fast"}, ["'storageClassName' not allowed"]),
            ({"fullnameOverride": "Visit_Server"}, ["'/fullnameOverride'"]),
            # --set image=null deletes the default; every value the chart defines is required.
            ({"image": None}, ["missing property 'image'"]),
            ({"journal": {"retainDays": None}}, ["'/journal'", "missing property 'retainDays'"]),
            # The monitoring values (CONTRACT.md section 13).
            (
                {"metrics": {"serviceMonitor": {"enabled": "true"}}},
                ["'/metrics/serviceMonitor/enabled'", "want boolean"],
            ),
            (
                {"metrics": {"prometheusRule": {"enable": True}}},
                ["'/metrics/prometheusRule'", "'enable' not allowed"],
            ),
            ({"metrics": {"enabled": True}}, ["'/metrics'", "'enabled' not allowed"]),
            ({"serviceMonitor": {"enabled": True}}, ["'serviceMonitor' not allowed"]),
            (
                {"metrics": {"serviceMonitor": None}},
                ["'/metrics'", "missing property 'serviceMonitor'"],
            ),
            (
                {"metrics": {"prometheusRule": {"labels": None}}},
                ["'/metrics/prometheusRule'", "missing property 'labels'"],
            ),
            (
                {"metrics": {"serviceMonitor": {"interval": "30"}}},
                ["'/metrics/serviceMonitor/interval'", "'30'"],
            ),
            (
                {"metrics": {"serviceMonitor": {"interval": 30}}},
                ["'/metrics/serviceMonitor/interval'", "want string"],
            ),
            (
                {"metrics": {"serviceMonitor": {"interval": "1s1m"}}},
                ["'/metrics/serviceMonitor/interval'", "'1s1m'"],
            ),
            (
                {"metrics": {"serviceMonitor": {"interval": "1.5m"}}},
                ["'/metrics/serviceMonitor/interval'", "'1.5m'"],
            ),
            (
                {"metrics": {"serviceMonitor": {"scrapeTimeout": "10 s"}}},
                ["'/metrics/serviceMonitor/scrapeTimeout'", "'10 s'"],
            ),
            (
                {"metrics": {"serviceMonitor": {"labels": ["release=kube-prometheus-stack"]}}},
                ["'/metrics/serviceMonitor/labels'", "want object"],
            ),
            (
                {"metrics": {"serviceMonitor": {"labels": {"release": True}}}},
                ["'/metrics/serviceMonitor/labels/release'", "want string"],
            ),
            (
                {"metrics": {"serviceMonitor": {"labels": {"team name": "web"}}}},
                ["'/metrics/serviceMonitor/labels'", "'team name' not allowed"],
            ),
            (
                {"metrics": {"serviceMonitor": {"labels": {"Example.com/team": "web"}}}},
                ["'/metrics/serviceMonitor/labels'", "'Example.com/team' not allowed"],
            ),
            (
                {"metrics": {"prometheusRule": {"labels": {"t" * 64: "web"}}}},
                ["'/metrics/prometheusRule/labels'", "not allowed"],
            ),
            (
                {"metrics": {"prometheusRule": {"labels": {"release": "kube prometheus"}}}},
                ["'/metrics/prometheusRule/labels/release'", "'kube prometheus'"],
            ),
            (
                {"metrics": {"prometheusRule": {"labels": {"release": "r" * 64}}}},
                ["'/metrics/prometheusRule/labels/release'", "maxLength"],
            ),
            (
                {"metrics": {"prometheusRule": {"labels": {"release": "-kps"}}}},
                ["'/metrics/prometheusRule/labels/release'", "'-kps'"],
            ),
        ):
            with self.subTest(values=values):
                message = refusal(values)
                self.assertIsNotNone(message, f"{values} was accepted")
                self.assertIn("values don't meet the specifications of the schema", message)
                for name in names:
                    self.assertIn(name, message)

    def test_zero_replicas_are_allowed(self):
        # Scaling to zero stops every pod and keeps every claim (whenScaled: Retain): the way
        # to stop the service for maintenance, such as restoring a journal into its claim,
        # without Helm and the cluster disagreeing. The next scale-up finds each journal.
        rendering = render({"replicaCount": 0})
        self.assertEqual(rendering.objects[("StatefulSet", RELEASE)]["spec"]["replicas"], 0)
        rendering.save("zero-replicas")

    def test_values_a_user_may_write(self):
        for values, env in (
            ({"journal": {"rotateSize": "4KiB"}}, {"VISIT_ROTATE_SIZE": "4KiB"}),
            ({"journal": {"rotateSize": 4096}}, {"VISIT_ROTATE_SIZE": "4096"}),
            ({"journal": {"rotateSize": 0, "retainSize": "0"}}, {"VISIT_ROTATE_SIZE": "0"}),
            (
                {"journal": {"retainSize": "100M", "retainDays": 30}},
                {"VISIT_RETAIN_SIZE": "100M", "VISIT_RETAIN_DAYS": "30"},
            ),
            (
                {"journal": {"anonymize": True, "utcOffset": "+03:00"}},
                {"VISIT_ANONYMIZE": "1", "VISIT_UTC_OFFSET": "+03:00"},
            ),
            (
                {"frontProxy": {"enabled": False}, "trustedProxies": ["10.0.0.0/8", "fd00::/8"]},
                {"VISIT_TRUSTED_PROXIES": "10.0.0.0/8,fd00::/8", "VISIT_LISTEN": "0.0.0.0:8080"},
            ),
            (
                {"persistence": {"size": "1.5Gi"}, "journal": {"retainSize": "1GiB"}},
                {"VISIT_RETAIN_SIZE": "1GiB"},
            ),
        ):
            with self.subTest(values=values):
                rendered = env_of(render(values))
                for name, value in env.items():
                    self.assertEqual(rendered.get(name), value)

    def test_numbers_from_a_values_file_stay_whole(self):
        # Helm reads a values file's numbers as floats: 8388608 must not become 8.388608e+06.
        values = helm.values_from_yaml("journal:\n  rotateSize: 8388608\n  retainDays: 400\n")
        env = env_of(render(values))
        self.assertEqual((env["VISIT_ROTATE_SIZE"], env["VISIT_RETAIN_DAYS"]), ("8388608", "400"))

    def test_what_the_schema_cannot_say_fails_with_the_values_named(self):
        message = refusal({"trustedProxies": ["10.0.0.0/8"]})
        self.assertIn("trustedProxies [10.0.0.0/8]: with frontProxy.enabled", message or "")
        message = refusal({"persistence": {"size": "128Mi"}})
        self.assertIn(
            "journal.retainSize 192MiB plus journal.rotateSize 8MiB is more than 85% of "
            "persistence.size 128Mi",
            message or "",
        )
        # Kubernetes' M is 10^6, a SIZE's M is 2^20: 256M of claim holds less than 256Mi.
        self.assertIsNotNone(refusal({"persistence": {"size": "230M"}}))
        self.assertIsNone(refusal({"persistence": {"size": "240Mi"}}))
        # Unbounded journals are the operator's choice (the lab's behaviour).
        self.assertIsNone(refusal({"persistence": {"size": "1Mi"}, "journal": {"retainSize": 0}}))

    def test_the_schema_is_strict_everywhere(self):
        # Every object the chart defines refuses unknown keys; a group added later (the
        # monitoring values, say) must do the same.
        schema = CHART.schema
        self.assertTrue(schema["$schema"].startswith("http://json-schema.org/draft-07/"))

        def walk(node, path):
            if isinstance(node, dict):
                if "properties" in node:
                    self.assertIs(node.get("additionalProperties"), False, path)
                for key, value in node.items():
                    walk(value, f"{path}/{key}")
            elif isinstance(node, list):
                for i, value in enumerate(node):
                    walk(value, f"{path}/{i}")

        walk(schema, "")

    def test_every_value_is_in_the_schema_and_commented(self):
        schema = CHART.schema
        values = CHART.values

        def resolve(node):
            return schema["definitions"][node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node

        def walk(values_node, schema_node, path):
            schema_node = resolve(schema_node)
            for key, value in values_node.items():
                with self.subTest(value=f"{path}{key}"):
                    self.assertIn(key, schema_node.get("properties", {}))
                    child = resolve(schema_node["properties"][key])
                    if isinstance(value, dict) and child.get("required"):
                        self.assertEqual(sorted(value), sorted(child["properties"]))
                        walk(value, child, f"{path}{key}.")

        walk(values, schema, "")
        self.assertEqual(sorted(values), sorted(schema["properties"]))
        # Every value the chart defines has a comment right above it. Inside a map that is
        # passed to Kubernetes as it is (resources.requests, say), the map's comment serves.
        lines = (CHART_DIR / "values.yaml").read_text().splitlines()
        stack = []
        for number, line in enumerate(lines):
            match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
            if not match:
                continue
            depth = len(match.group(1)) // 2
            stack[depth:] = [match.group(2)]
            parent = schema
            for key in stack[:-1]:
                parent = resolve(resolve(parent)["properties"][key])
            if not resolve(parent).get("required"):
                continue
            with self.subTest(line=number + 1, value=".".join(stack)):
                self.assertTrue(
                    number > 0 and lines[number - 1].strip().startswith("#"),
                    f"values.yaml:{number + 1}: {'.'.join(stack)} has no comment above it",
                )


class AgreesWithTheServer(unittest.TestCase):
    """What the schema takes as a SIZE, an offset or a proxy, the server takes, and the
    reverse: each is asked of visit-server itself (`--probe` parses the whole configuration
    first; a refused value exits 2, a taken one goes on to probe a closed port and exits 1)."""

    @classmethod
    def setUpClass(cls):
        binary = os.environ.get("VISIT_SERVER_BIN", str(ROOT / "target" / "debug" / "visit-server"))
        if not Path(binary).is_file():
            raise RuntimeError(
                f"no visit-server at {binary}: build it (cargo build -p visit-server) or set "
                "VISIT_SERVER_BIN, as .ci/steps/25-helm-chart does"
            )
        cls.binary = binary

    def server_takes(self, variable, text):
        result = subprocess.run(
            [self.binary, "--probe"],
            env={"VISIT_LISTEN": "127.0.0.1:1", variable: text, "PATH": os.environ.get("PATH", "")},
            capture_output=True,
            text=True,
            timeout=10,
        )
        self.assertIn(result.returncode, (1, 2), result.stderr)
        return result.returncode == 1

    def check(self, variable, values_path, texts):
        for text in texts:
            values = {}
            node = values
            for key in values_path[:-1]:
                node = node.setdefault(key, {})
            node[values_path[-1]] = [text] if values_path[-1] == "trustedProxies" else text
            if values_path[-1] == "trustedProxies":
                values["frontProxy"] = {"enabled": False}
            with self.subTest(value=text):
                message = refusal(values)
                schema_takes = message is None or "schema" not in message
                self.assertEqual(schema_takes, self.server_takes(variable, text), message)

    # Sizes on both sides of every boundary the schema draws (0, 4 KiB, the suffixes, what
    # the server refuses in its own tests, visit-server/src/config.rs `sizes`); the server
    # is the judge of each, so the list needs no expected verdicts.
    # fmt: off
    SIZES = (
        "0", "00", "0K", "0KiB", "0M", "0G", "1", "4095", "4096", "04096", "9999", "10000",
        "3K", "4K", "4KiB", "007K", "12K", "1M", "1MiB", "8MiB", "192M", "1G", "16GiB",
        "999999999G", "K", "1k", "1KB", "1 K", " 1K", "1K ", "1.5M", "+1", "-1", "1T", "1Ki",
        "1MIB", "5 MB", "1KiB", "lots", "0x10",
    )
    # fmt: on

    def test_rotate_sizes(self):
        self.check("VISIT_ROTATE_SIZE", ["journal", "rotateSize"], self.SIZES)

    def test_retain_sizes(self):
        self.check("VISIT_RETAIN_SIZE", ["journal", "retainSize"], self.SIZES)

    def test_utc_offsets(self):
        self.check(
            "VISIT_UTC_OFFSET",
            ["journal", "utcOffset"],
            (
                "Z",
                "z",
                "+03:00",
                "-05:00",
                "+23:59",
                "+24:00",
                "+03:60",
                "+3:00",
                "03:00",
                "+0300",
                "UTC",
                " +03:00",
            ),
        )

    def test_trusted_proxies(self):
        self.check(
            "VISIT_TRUSTED_PROXIES",
            ["trustedProxies"],
            (
                "10.0.0.1",
                "10.0.0.0/8",
                "10.0.0.0/33",
                "256.0.0.1",
                "::1",
                "fd00::/8",
                "2001:db8::1/128",
                "2001:db8::1/129",
                "proxy",
                "10.0.0",
                "1.2.3.4/",
            ),
        )


class Lint(unittest.TestCase):
    def assert_clean(self, values=None, label="defaults"):
        for version in KUBE_VERSIONS:
            with self.subTest(values=label, kube_version=version):
                report = helm.lint(
                    CHART_DIR, values, strict=True, kube_version=f"v{version}", namespace=NAMESPACE
                )
                self.assertEqual(report["errors"], [])
                findings = [m for m in report["messages"] if m["severity"] >= 2]
                self.assertEqual(findings, [])

    def test_lint_strict_is_clean(self):
        self.assert_clean()
        self.assert_clean(DEV_VALUES, "dev")

    def test_lint_strict_is_clean_with_monitoring(self):
        values = merge(
            MONITORING,
            {
                "metrics": {
                    "serviceMonitor": {"labels": {"release": "kps"}, "interval": "30s"},
                    "prometheusRule": {"labels": {"release": "kps"}},
                }
            },
        )
        self.assert_clean(values, "monitoring")

    def test_lint_sees_a_broken_template(self):
        # Guards the check above: the engine's lint does report a finding here.
        with tempfile.TemporaryDirectory() as tmp:
            copy_dir = Path(tmp) / "visit-server"
            shutil.copytree(CHART_DIR, copy_dir, symlinks=True)
            (copy_dir / "templates" / "broken.yaml").write_text("kind: {{ .Values.nope.nope }}\n")
            report = helm.lint(copy_dir, strict=True, kube_version=f"v{KUBE_VERSIONS[0]}")
            self.assertTrue(
                report["errors"] or [m for m in report["messages"] if m["severity"] >= 2]
            )


class ReadmeExamples(unittest.TestCase):
    """Every values example that README.md's "Install with Helm" and "Monitoring" show
    renders and lints; each rendering is written for the step to validate strictly and pass
    through checkov (its monitoring objects, for the check against the operator's CRDs)."""

    SECTIONS = ("### Install with Helm", "## Monitoring")

    @classmethod
    def setUpClass(cls):
        text = (ROOT / "README.md").read_text()
        cls.blocks = []
        for heading in cls.SECTIONS:
            start = text.index(f"\n{heading}\n")
            # To the next heading of this level or above (a section's own subsections in).
            level = heading.split(" ")[0]
            # (Two hashes at least: a shell comment in a code block is not a heading.)
            ends = [
                m.start()
                for m in re.finditer(r"\n(##+) ", text[start + 1 :])
                if len(m.group(1)) <= len(level)
            ]
            section = text[start : start + 1 + ends[0] if ends else None]
            # Fenced blocks, also those indented under a list item.
            cls.blocks += [
                (lang, textwrap.dedent(body))
                for _, lang, body in re.findall(r"^( *)```(\w+)\n(.*?)^\1```", section, re.S | re.M)
            ]
        # A values file is a yaml block whose first line names it: `# values-dev.yaml`.
        cls.files = {}
        for lang, body in cls.blocks:
            first = body.splitlines()[0]
            if lang == "yaml" and re.fullmatch(r"# [\w.-]+\.yaml", first):
                cls.files[first[2:]] = yaml.safe_load(body) or {}
        cls.commands = []
        for lang, body in cls.blocks:
            if lang != "sh":
                continue
            for line in re.sub(r"\\\n\s*", " ", body).splitlines():
                line = line.split(" #", 1)[0].strip()
                if re.match(r"helm (install|upgrade|template|lint) ", line):
                    cls.commands.append(line)

    def values_of(self, command):
        """The release, namespace and values a `helm install|upgrade` line gives, parsed
        with Helm's own --set parser. --reuse-values starts from the chart's defaults: each
        example is an upgrade of a release installed with them."""
        words = shlex.split(command)
        release = words[2] if words[1] in ("install", "upgrade", "template") else RELEASE
        namespace, values, i = NAMESPACE, {}, 3
        while i < len(words):
            word = words[i]
            if word in ("--namespace", "-n"):
                namespace = words[i + 1]
            elif word in ("-f", "--values"):
                self.assertIn(words[i + 1], self.files, f"{command}: no such values file shown")
                values = merge(values, self.files[words[i + 1]])
            elif word == "--set":
                values = merge(values, helm.parse_set_string(words[i + 1]))
            elif word == "--set-string":
                values = merge(values, helm.parse_set_string_values(words[i + 1]))
            elif word.startswith("--set"):
                self.fail(f"{command}: {word} is not understood by this test")
            if word in ("--namespace", "-n", "-f", "--values", "--set", "--set-string"):
                i += 1
            i += 1
        return release, namespace, values

    def test_there_are_examples(self):
        self.assertGreaterEqual(len(self.files), 3)
        self.assertGreaterEqual(len(self.commands), 5)
        self.assertIn(
            f"helm install {RELEASE} charts/visit-server --namespace {NAMESPACE} --create-namespace",
            self.commands,
        )

    def test_every_command_renders(self):
        for number, command in enumerate(self.commands, 1):
            with self.subTest(command=command):
                release, namespace, values = self.values_of(command)
                rendering = render(values, release=release, namespace=namespace)
                rendering.save(f"readme-command-{number:02d}")
                report = helm.lint(CHART_DIR, values, strict=True, namespace=namespace)
                self.assertEqual(
                    [m for m in report["messages"] if m["severity"] >= 2] + report["errors"], []
                )

    def test_every_values_file_renders(self):
        for name, values in self.files.items():
            with self.subTest(values_file=name):
                render(values).save(f"readme-{Path(name).stem}")

    def test_the_dev_example_is_the_dev_overlay(self):
        self.assertEqual(merge({}, self.files["values-dev.yaml"]), DEV_VALUES)

    def test_the_monitoring_example_is_the_component_with_the_readmes_label(self):
        # The values file and the --set lines give what README's kustomize example gives:
        # the component in the prod overlay, both objects labelled by its patch.
        values = self.files["values-monitoring.yaml"]
        assert_same_as_the_component(self, render(values), "prod", facts.readme_label_patches())
        with_set = [
            self.values_of(c)[2]
            for c in self.commands
            if "--set metrics.serviceMonitor.enabled=true" in c
        ]
        self.assertEqual(with_set, [values])


def merge(base, extra):
    """Helm's coalescing of two values maps: `extra` wins; maps merge key by key."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Package(unittest.TestCase):
    def test_the_package_carries_the_linked_files_and_renders_the_same(self):
        destination = OUT / "package"
        shutil.rmtree(destination, ignore_errors=True)
        destination.mkdir(parents=True)
        archive = Path(helm.package(CHART_DIR, destination=destination))
        self.assertEqual(archive.name, f"visit-server-{CHART.metadata['version']}.tgz")
        with tarfile.open(archive) as tar:
            # Each link's target, stored as a plain file: the archive works anywhere.
            for name, source in (
                ("nginx.conf", facts.NGINX_CONF),
                ("prometheusrule.yaml", facts.PROMETHEUS_RULE),
            ):
                member = tar.getmember(f"visit-server/files/{name}")
                self.assertTrue(member.isfile(), f"the packaged {name} is not a regular file")
                self.assertEqual(tar.extractfile(member).read(), source.read_bytes())
            names = tar.getnames()
        self.assertIn("visit-server/values.schema.json", names)
        self.assertIn("visit-server/templates/tests/test-replicas.yaml", names)
        with helm.Chart.load(archive) as packaged:
            self.assertEqual(render(chart=packaged).manifests, render().manifests)
            self.assertEqual(
                render(MONITORING, chart=packaged).manifests, render(MONITORING).manifests
            )


if __name__ == "__main__":
    unittest.main()
