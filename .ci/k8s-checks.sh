# How rendered Kubernetes manifests are validated, shared by .ci/steps/20-k8s-validate (the
# kustomize overlays) and .ci/steps/25-helm-chart (the Helm chart's renderings), so that
# both pass exactly the same checks. Source it; it defines:
#
#   offline CMD...                          runs CMD without network access where it can
#   validate_strict VENV MANIFEST...        kubernetes-validate --strict, each version below
#   checkov_check VENV REPORT [--dockerfile FILE] MANIFEST...
#                                           checkov, less the skips below, and a check that
#                                           it really scanned every object
#
# VENV is the venv of .ci/k8s-tools.txt (`.ci/venv .ci/k8s-tools.txt`).

# 1.30: the oldest release we support (every field used is GA or on by default there);
# 1.32: the kubectl on CI's machines; 1.37: the newest schema the pinned tool ships.
kube_versions=(1.30.0 1.32.0 1.37.0)

# checkov's checks that these manifests fail on purpose. Each one is a decision:
checkov_skips=(
    # "Image should use digest": a digest exists only once the image is pushed, and no
    # registry is reachable here. The README's release step pins it in the prod overlay
    # (`images: digest:`) or the chart (image.digest); the facts test requires prod to pin
    # a version tag or a digest.
    CKV_K8S_43
    # "Image Pull Policy should be Always": the overlays name immutable versions (a
    # release tag or digest in prod; a locally loaded image in dev, which Always would
    # fail to pull), and Always would make every restart of a pod that holds a journal
    # depend on the registry being up.
    CKV_K8S_15
)

# Runs a command without network access when the kernel lets us make a network
# namespace (CI runs as root); elsewhere runs it as is, having said so once.
if unshare --net true 2>/dev/null; then
    offline() { unshare --net "$@"; }
else
    echo "k8s-checks: cannot unshare the network here; checks run with it" >&2
    offline() { "$@"; }
fi

validate_strict() {
    local venv=$1 version report
    shift
    for version in "${kube_versions[@]}"; do
        printf '\n--> kubernetes-validate --strict -k %s\n' "$version"
        # Warnings count as failures: the tool only warns when it has no schema for a kind.
        report=$(offline "$venv/bin/kubernetes-validate" --strict --quiet \
            -k "$version" "$@" 2>&1) || { echo "$report"; return 1; }
        if [ -n "$report" ]; then
            echo "$report"
            return 1
        fi
        echo "$# files valid"
    done
}

checkov_check() {
    local venv=$1 report=$2 dockerfile="" manifest
    shift 2
    if [ "${1:-}" = --dockerfile ]; then
        dockerfile=$2
        shift 2
    fi
    local files=() frameworks=(kubernetes)
    for manifest in "$@"; do
        files+=(--file "$manifest")
    done
    if [ -n "$dockerfile" ]; then
        files+=(--file "$dockerfile")
        frameworks+=(dockerfile)
    fi
    printf '\n--> checkov (skipping %s)\n' "${checkov_skips[*]}"
    # No update check, no platform download: nothing but the files is consulted.
    CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE offline "$venv/bin/checkov" \
        --quiet --compact --skip-download \
        --framework "${frameworks[@]}" \
        --skip-check "$(IFS=,; echo "${checkov_skips[*]}")" \
        --output cli --output json --output-file-path "console,$report" \
        "${files[@]}"
    # checkov passes a file it cannot parse, or does not recognise, without a word.
    "$venv/bin/python" - "$report" "${dockerfile:+1}" "$@" <<'PY'
import json, sys
import yaml

report, dockerfiles, manifests = sys.argv[1], len(sys.argv[2]), sys.argv[3:]
objects = sum(1 for m in manifests for doc in yaml.safe_load_all(open(m)) if doc)
results = json.load(open(report))
# One framework gives one object, not a list.
results = results if isinstance(results, list) else [results]
summaries = {r["check_type"]: r["summary"] for r in results}
expected = {"kubernetes": objects}
if dockerfiles:
    expected["dockerfile"] = dockerfiles
for framework, resources in expected.items():
    summary = summaries.get(framework)
    if (
        summary is None
        or summary["parsing_errors"]
        or summary["failed"]
        or summary["passed"] == 0
        or summary["resource_count"] < resources
    ):
        sys.exit(f"checkov did not scan all {resources} {framework} resources: {summary}")
print(f"checkov scanned {objects} objects" + (f" and {dockerfiles} Dockerfile" if dockerfiles else ""))
PY
}
