"""Objects of the Prometheus Operator's kinds (monitoring.coreos.com/v1: ServiceMonitor,
PrometheusRule, ...) checked against its CRDs' schemas, since kubernetes-validate knows no
such kind.

The schemas are the Pydantic models PyPI's cloudcoil generates from the operator's CRDs
(cloudcoil-models-prometheus-operator, pinned in .ci/k8s-tools.txt): every field known and
of its type and pattern. A model ignores a field its CRD does not know, so the dump of the
validated model is compared with the object: a field missing from it is refused here, as
the API server's strict field validation would refuse it.

Used by k8s/tests/test_monitoring.py (the component in each overlay) and, as a script, by
.ci/steps/25-helm-chart (the Helm chart's renderings):

    python3 k8s/tests/operator_crds.py FILE...

checks every monitoring.coreos.com object in the YAML files, prints one line per file and
exits 1 naming each problem, or when a file holds no such object (a rendering that lost its
objects must not pass unseen).
"""

import sys

import pydantic
import yaml
from cloudcoil.models.prometheus_operator import v1 as monitoring_v1

GROUP = "monitoring.coreos.com"
API_VERSION = f"{GROUP}/v1"


def is_operator_kind(doc):
    """Whether a manifest is of the Prometheus Operator's API group."""
    return str(doc.get("apiVersion", "")).split("/")[0] == GROUP


def unknown_fields(given, validated, path=""):
    """Fields of `given` that the model dropped (it ignores what its CRD does not know)."""
    if isinstance(given, dict) and isinstance(validated, dict):
        for key, value in given.items():
            if key not in validated:
                yield f"{path}.{key}"
            else:
                yield from unknown_fields(value, validated[key], f"{path}.{key}")
    elif isinstance(given, list) and isinstance(validated, list):
        for i, (a, b) in enumerate(zip(given, validated)):
            yield from unknown_fields(a, b, f"{path}[{i}]")


def problems(doc):
    """What the operator's CRD schema refuses in one object: an empty list when valid."""
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if doc.get("apiVersion") != API_VERSION:
        return [f"{name}: apiVersion {doc.get('apiVersion')!r}, not {API_VERSION}"]
    model = getattr(monitoring_v1, str(doc.get("kind")), None)
    if not isinstance(model, type) or not issubclass(model, pydantic.BaseModel):
        return [f"{name}: {API_VERSION} has no kind {doc.get('kind')!r}"]
    try:
        validated = model.model_validate(doc)
    except pydantic.ValidationError as e:
        return [f"{name}: {e}"]
    back = validated.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return [f"{name}: unknown field {field}" for field in unknown_fields(doc, back)]


def main(paths):
    failed = False
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d and is_operator_kind(d)]
        found = [p for d in docs for p in problems(d)]
        if not docs:
            found = [f"no {GROUP} object in it"]
        for problem in found:
            print(f"{path}: {problem}", file=sys.stderr)
        failed |= bool(found)
        if not found:
            kinds = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
            print(f"{path}: {kinds} valid")
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
