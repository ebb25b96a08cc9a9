#!/usr/bin/env bash
# Plays the StatefulSet lab's transcript on this machine, without a cluster.
#
# Three visit-server processes stand in for the pods visit-server-0..2. Each gets its
# own directory, pvc-0..2, standing in for its PersistentVolumeClaim, and the same
# VISIT_LISTEN and VISIT_FILE variables that k8s/base/statefulset.yaml sets. Visits go
# round-robin, as the visit-server Service would spread them. Then each replica's
# journal is printed as `kubectl exec pod/visit-server-N -- cat /home/app/data/visits.txt`
# would print it, and checked: it must hold exactly the visits that this replica
# answered, in order, each a well-formed line. Last, a pod is "deleted" (SIGTERM: it must
# exit 0 within the grace period) and comes back on its own claim with its visits.
#
# Usage: k8s/rehearse.sh
#   VISIT_SERVER_BIN=path  run that binary instead of building target/debug/visit-server
# Exits non-zero if a replica misbehaves or a journal is wrong. Needs bash and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly replicas=3
readonly visits=8
# terminationGracePeriodSeconds in k8s/base/statefulset.yaml: after SIGTERM, the kubelet
# waits this long before SIGKILL.
readonly grace_seconds=10
readonly ready_timeout_seconds=10

if [ -n "${VISIT_SERVER_BIN:-}" ]; then
    bin=$VISIT_SERVER_BIN
else
    # A no-op after `cargo test --workspace`, which already built it.
    cargo build --quiet --package visit-server
    bin=${CARGO_TARGET_DIR:-target}/debug/visit-server
fi
[ -x "$bin" ] || { echo "rehearse: no visit-server binary at $bin" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/visit-rehearsal.XXXXXX")
declare -a pids=() ports=()

cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    done
    wait
    rm -rf "$work"
}
trap cleanup EXIT

# The HTTP side, in python3 (always there; curl may not be).
lab=$work/lab.py
cat >"$lab" <<'PY'
import calendar, http.client, json, re, socket, sys, time

LINE = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}) - 127\.0\.0\.1"
)


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def ports(count):
    """Free loopback ports, all held at once so that they differ."""
    socks = [socket.socket() for _ in range(int(count))]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_ready(port, pid, timeout):
    """0 once /readyz answers 200, 2 if the process died first, 1 on timeout."""
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        if not alive(pid):
            return 2
        try:
            if get(int(port), "/readyz") == 200 and alive(pid):
                return 0
        except OSError:
            pass
        time.sleep(0.1)
    return 1


def visit(ledger, count, *targets):
    """Sends COUNT visits round-robin over REPLICA=PORT targets; logs each to LEDGER."""
    targets = [t.split("=") for t in targets]
    with open(ledger, "a") as out:
        for n in range(int(count)):
            replica, port = targets[n % len(targets)]
            before = time.time_ns()
            status = get(int(port), "/")
            after = time.time_ns()
            print(f"GET / -> visit-server-{replica}: {status}")
            if status != 200:
                return 1
            out.write(json.dumps({"replica": int(replica), "before": before, "after": after}) + "\n")
    return 0


def probe(*ports_):
    """Everything but GET /: it must answer as the contract says and record nothing."""
    expected = {"/livez": 200, "/healthz": 200, "/readyz": 200, "/metrics": 200,
                "/visits": 200, "/favicon.ico": 404}
    wrong = [f"{path} on port {port}: {status}, expected {expected[path]}"
             for port in ports_ for path in expected
             if (status := get(int(port), path)) != expected[path]]
    print(f"{len(expected)} requests to each replica: {' '.join(expected)}")
    for problem in wrong:
        print(f"FAIL {problem}")
    return 1 if wrong else 0


def nanos(match):
    """A journal timestamp as nanoseconds since the epoch."""
    date, fraction, offset = match.groups()
    seconds = calendar.timegm(time.strptime(date, "%Y-%m-%dT%H:%M:%S"))
    if offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    return seconds * 10**9 + int((fraction or "").ljust(9, "0"))


def check(ledger, *journals):
    """Each journal must hold exactly its replica's visits: count, order, times, format."""
    with open(ledger) as f:
        sent = [json.loads(line) for line in f]
    failed = False
    for replica, journal in enumerate(journals):
        name = f"visit-server-{replica}"
        mine = [v for v in sent if v["replica"] == replica]
        try:
            with open(journal, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        problems = []
        if data and not data.endswith(b"\n"):
            problems.append("the last line has no newline (torn tail)")
        lines = data.decode("utf-8", "replace").splitlines()
        if len(lines) != len(mine):
            problems.append(f"{len(lines)} lines for the {len(mine)} visits it answered")
        for number, (line, v) in enumerate(zip(lines, mine), 1):
            match = LINE.fullmatch(line)
            if not match:
                problems.append(f"line {number} is not '<RFC 3339 time> - 127.0.0.1': {line!r}")
                continue
            # Writers emit milliseconds: allow the truncation on either side.
            at = nanos(match)
            if not v["before"] - 10**6 <= at <= v["after"] + 10**6:
                problems.append(f"line {number} ({line}) is not the time of its visit")
        if problems:
            failed = True
            print(f"FAIL {name}: " + "; ".join(problems))
        else:
            print(f"ok   {name}: {len(lines)} lines, exactly the {len(mine)} visits it answered")
    return 1 if failed else 0


commands = {"ports": ports, "wait-ready": wait_ready, "visit": visit, "probe": probe, "check": check}
sys.exit(commands[sys.argv[1]](*sys.argv[2:]) or 0)
PY

say() { printf '\n==> %s\n' "$*"; }

# Starts replica $1 on its claim, retrying on another port if one was taken meanwhile.
start_replica() {
    local i=$1 attempt port status
    mkdir -p "$work/pvc-$i"
    for attempt in 1 2 3 4 5; do
        port=$(python3 "$lab" ports 1)
        VISIT_LISTEN=127.0.0.1:$port VISIT_FILE=$work/pvc-$i/visits.txt \
            "$bin" >>"$work/visit-server-$i.log" 2>&1 &
        pids[i]=$!
        status=0
        python3 "$lab" wait-ready "$port" "${pids[i]}" "$ready_timeout_seconds" || status=$?
        if [ "$status" -eq 0 ]; then
            ports[i]=$port
            echo "visit-server-$i: ready on 127.0.0.1:$port, claim pvc-$i"
            return 0
        fi
        kill -KILL "${pids[i]}" 2>/dev/null || :
        wait "${pids[i]}" 2>/dev/null || :
        pids[i]=
        # 2: it exited, most likely because another process took the port first.
        [ "$status" -eq 2 ] || break
    done
    echo "visit-server-$i did not become ready (attempt $attempt); its log:" >&2
    cat "$work/visit-server-$i.log" >&2
    return 1
}

any_running() {
    local i
    for i in "$@"; do
        kill -0 "${pids[i]}" 2>/dev/null && return 0
    done
    return 1
}

# Deletes the pods numbered $@ as the kubelet would: SIGTERM to all of them, then
# SIGKILL after the grace period. Each must have exited 0 by then.
delete_pods() {
    local i tick status failed=0
    for i in "$@"; do
        kill -TERM "${pids[i]}"
    done
    for ((tick = 0; tick < grace_seconds * 10; tick++)); do
        any_running "$@" || break
        sleep 0.1
    done
    for i in "$@"; do
        if kill -0 "${pids[i]}" 2>/dev/null; then
            echo "FAIL visit-server-$i still running ${grace_seconds}s after SIGTERM" >&2
            failed=1
            continue
        fi
        status=0
        wait "${pids[i]}" || status=$?
        pids[i]=
        if [ "$status" -eq 0 ]; then
            echo "pod \"visit-server-$i\" deleted (exit 0 after SIGTERM)"
        else
            echo "FAIL visit-server-$i exited with status $status after SIGTERM; its log:" >&2
            cat "$work/visit-server-$i.log" >&2
            failed=1
        fi
    done
    return "$failed"
}

show_journal() {
    local i=$1
    echo "\$ kubectl exec pod/visit-server-$i -- cat /home/app/data/visits.txt"
    cat "$work/pvc-$i/visits.txt"
    # Keep the transcript readable even if a torn last line has no newline.
    [ -z "$(tail -c 1 "$work/pvc-$i/visits.txt")" ] || echo
}

say "$bin as a StatefulSet of $replicas replicas, each with its own claim"
for ((i = 0; i < replicas; i++)); do
    start_replica "$i"
done
journals=() targets=()
for ((i = 0; i < replicas; i++)); do
    journals+=("$work/pvc-$i/visits.txt")
    targets+=("$i=${ports[i]}")
done

say "$visits visits through the Service (round-robin), then the kubelet's probes"
ledger=$work/ledger.jsonl
python3 "$lab" visit "$ledger" "$visits" "${targets[@]}"
python3 "$lab" probe "${ports[@]}"

say "Each pod's journal"
for ((i = 0; i < replicas; i++)); do
    show_journal "$i"
done
python3 "$lab" check "$ledger" "${journals[@]}"

say "kubectl delete pod/visit-server-0: the StatefulSet recreates it on the same claim"
delete_pods 0
start_replica 0
python3 "$lab" visit "$ledger" 1 "0=${ports[0]}"
show_journal 0
python3 "$lab" check "$ledger" "${journals[@]}"

say "Scale to zero: every replica drains and exits 0"
# shellcheck disable=SC2046 # One word per replica number.
delete_pods $(seq 0 $((replicas - 1)))
python3 "$lab" check "$ledger" "${journals[@]}"

say "Rehearsal passed: each replica kept exactly its own visits"
