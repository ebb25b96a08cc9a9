#!/usr/bin/env bash
# Plays the StatefulSet lab's transcript on this machine, without a cluster.
#
# Three visit-server processes stand in for the pods visit-server-0..2. Each gets its
# own directory, pvc-0..2, standing in for its PersistentVolumeClaim, and the same
# VISIT_LISTEN and VISIT_FILE variables that k8s/base/statefulset.yaml sets. Visits go
# round-robin, as the visit-server Service would spread them. Then each replica's
# journal is printed as `kubectl exec pod/visit-server-N -- cat /home/app/data/visits.txt`
# would print it, and checked: it must hold exactly the visits that this replica
# answered, in order, each a well-formed line. Then the cluster view: from one replica,
# `curl '/visits?scope=cluster'` must show every replica's journal under its name. Last, a
# pod is "deleted" (SIGTERM: it must exit 0 within the grace period); while it is down the
# cluster view must still answer 200 within the peer timeout, naming it as missing; then it
# comes back on its own claim with its visits.
#
# Each replica is named visit-server-N (VISIT_NAME) and lists all three addresses as its
# peers (VISIT_PEERS): locally that stands in for the StatefulSet's VISIT_PEER_DNS, the
# headless Service that resolves to every pod.
#
# As in the prod overlay, reads need the token of the Secret visit-server-read-token
# (CONTRACT.md section 11): each replica reads it from its own secret-N/token, standing in for
# its pod's mount of the Secret (VISIT_READ_TOKEN_FILE), so that one replica's copy can lag
# behind the others'. The probes and GET / need no token; /visits without one is 401. Last,
# the token is rotated as the README says (both tokens, then only the new one), with one
# replica's Secret lagging: the cluster view names it as missing, `unauthorized`, until it
# catches up. No replica may ever print a token.
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
# The server's default --peer-timeout: a cluster view never waits longer for a peer.
readonly peer_timeout_seconds=1

if [ -n "${VISIT_SERVER_BIN:-}" ]; then
    bin=$VISIT_SERVER_BIN
else
    # A no-op after `cargo test --workspace`, which already built it.
    cargo build --quiet --package visit-server
    bin=${CARGO_TARGET_DIR:-target}/debug/visit-server
fi
[ -x "$bin" ] || { echo "rehearse: no visit-server binary at $bin" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/visit-rehearsal.XXXXXX")
# The Secret's token, as `openssl rand -hex 32` makes it (python3, since openssl may be
# missing); lab.py reads it from the environment, never from its command line.
new_token() { python3 -c 'import secrets; print(secrets.token_hex(32))'; }
VISIT_TOKEN=$(new_token)
export VISIT_TOKEN
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
import calendar, http.client, json, os, re, socket, sys, time

LINE = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}) - 127\.0\.0\.1"
)


def fetch(port, path, token=None):
    """(status, headers, body) of GET path, with `Authorization: Bearer token` if given."""
    headers = {"Connection": "close"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def get(port, path, token=None):
    return fetch(port, path, token)[0]


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
    """Everything but GET /: it must answer as the contract says and record nothing. The
    probes need no token; the reads need the Secret's."""
    token = os.environ["VISIT_TOKEN"]
    expected = {("/livez", None): 200, ("/healthz", None): 200, ("/readyz", None): 200,
                ("/metrics", None): 200, ("/favicon.ico", None): 404, ("/visits", None): 401,
                ("/stats", None): 401, ("/dashboard", None): 401, ("/visits", token): 200,
                ("/stats", token): 200, ("/dashboard", token): 200,
                ("/visits", "not-" + token): 401}
    shown = {None: "", token: " (with the token)", "not-" + token: " (with a wrong token)"}
    wrong = [f"{path}{shown[tok]} on port {port}: {status}, expected {want}"
             for port in ports_ for (path, tok), want in expected.items()
             if (status := get(int(port), path, tok)) != want]
    print(f"{len(expected)} requests to each replica: "
          + ", ".join(f"{path}{shown[tok]} {want}" for (path, tok), want in expected.items()))
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


def cluster(work, asked, timeout, down, *ports_):
    """GET /visits?scope=cluster from replica ASKED, with the token: every replica up must
    appear under its name with exactly its journal's lines; the DOWN ones (a comma list of
    N or N:error, or -) must be listed as missing (with that error); the answer is 200 either
    way, within TIMEOUT seconds and some slack."""
    down = {} if down == "-" else dict((d.split(":") + [""])[:2] for d in down.split(","))
    down = {int(i): error for i, error in down.items()}
    asked = int(asked)
    print(f"$ kubectl exec pod/visit-server-{asked} -- wget -qO- "
          f"--header \"Authorization: Bearer $TOKEN\" 'localhost:8080/visits?scope=cluster'")
    started = time.monotonic()
    status, headers, body = fetch(int(ports_[asked]), "/visits?scope=cluster",
                                  os.environ["VISIT_TOKEN"])
    took = time.monotonic() - started
    text = body.decode("utf-8", "replace")
    print(text, end="")
    problems = []
    if status != 200:
        problems.append(f"status {status}")
    if took > float(timeout) + 2:
        problems.append(f"took {took:.2f}s, over the {timeout}s peer timeout")
    partial = headers.get("X-Visit-Partial")
    if partial != ("true" if down else "false"):
        problems.append(f"X-Visit-Partial: {partial}")
    parts, head, current = {}, [], None
    for line in text.splitlines():
        if line.startswith("# replica "):
            current = line[len("# replica "):]
            parts[current] = []
        elif line.startswith("# "):
            head.append(line)
        elif current is None:
            problems.append(f"a line before any replica: {line!r}")
        else:
            parts[current].append(line)
    expected = set()
    for replica, port in enumerate(ports_):
        address = f"127.0.0.1:{port}"
        if replica in down:
            if not any(h.startswith(f"# missing {address}: {down[replica]}") for h in head):
                problems.append(f"visit-server-{replica} ({address}) is not listed as missing "
                                f"{down[replica] or ''}")
            continue
        heading = f"visit-server-{replica} {address}"
        expected.add(heading)
        with open(f"{work}/pvc-{replica}/visits.txt") as f:
            journal = f.read().splitlines()
        if parts.get(heading) != journal:
            problems.append(f"{heading}: not exactly its journal's {len(journal)} lines")
    if set(parts) != expected:
        problems.append(f"replicas {sorted(parts)}, expected {sorted(expected)}")
    for problem in problems:
        print(f"FAIL cluster view: {problem}")
    if not problems:
        shown = len(parts)
        print(f"ok   cluster view: {shown} replicas, each under its name with its own journal, "
              f"{len(down)} missing, status {status} in {took:.2f}s")
    return 1 if problems else 0


def secret_logs(*logs):
    """No replica's log holds a token it was given (VISIT_TOKENS: the rehearsal's tokens)."""
    tokens = os.environ["VISIT_TOKENS"].split()
    leaked = [log for log in logs for token in tokens if token in open(log).read()]
    for log in leaked:
        print(f"FAIL {log} holds a read token")
    if not leaked:
        print(f"ok   no replica's log holds any of the {len(tokens)} tokens")
    return 1 if leaked else 0


def until_cluster(work, asked, timeout, down, *ports_):
    """As `cluster`, retried for up to 5 s (a Secret's new content is read within seconds),
    printing only the last answer."""
    import contextlib, io
    deadline = time.monotonic() + 5
    while True:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            failed = cluster(work, asked, timeout, down, *ports_)
        if not failed or time.monotonic() > deadline:
            print(out.getvalue(), end="")
            return failed
        time.sleep(0.2)


commands = {"ports": ports, "wait-ready": wait_ready, "visit": visit, "probe": probe,
            "check": check, "cluster": cluster, "until-cluster": until_cluster,
            "secret-logs": secret_logs}
sys.exit(commands[sys.argv[1]](*sys.argv[2:]) or 0)
PY

say() { printf '\n==> %s\n' "$*"; }

# Starts replica $1 on its claim, on its port in ${ports[@]}, listing every replica's
# address as its peers. Returns 2 if it exited (most likely because another process took
# its port first), 1 if it did not become ready.
start_replica() {
    local i=$1 status peers
    peers=$(printf '127.0.0.1:%s,' "${ports[@]}")
    mkdir -p "$work/pvc-$i"
    [ -e "$work/secret-$i/token" ] || put_secret "$i" "$VISIT_TOKEN"
    VISIT_LISTEN=127.0.0.1:${ports[i]} VISIT_FILE=$work/pvc-$i/visits.txt \
        VISIT_NAME=visit-server-$i VISIT_PEERS=${peers%,} \
        VISIT_PEER_TIMEOUT=${peer_timeout_seconds}s \
        VISIT_READ_TOKEN_FILE=$work/secret-$i/token \
        "$bin" >>"$work/visit-server-$i.log" 2>&1 &
    pids[i]=$!
    status=0
    python3 "$lab" wait-ready "${ports[i]}" "${pids[i]}" "$ready_timeout_seconds" || status=$?
    if [ "$status" -eq 0 ]; then
        echo "visit-server-$i: ready on 127.0.0.1:${ports[i]}, claim pvc-$i"
        return 0
    fi
    kill -KILL "${pids[i]}" 2>/dev/null || :
    wait "${pids[i]}" 2>/dev/null || :
    pids[i]=
    return "$status"
}

# Writes replica $1's copy of the Secret (token lines $2...) as the kubelet updates a
# mounted Secret: the whole file at once (written aside, then renamed over it).
put_secret() {
    local i=$1
    shift
    mkdir -p "$work/secret-$i"
    printf '%s\n' "$@" >"$work/secret-$i/.token.tmp"
    mv "$work/secret-$i/.token.tmp" "$work/secret-$i/token"
}

# Starts every replica. The peers must know each other's ports up front, so if one port
# was taken meanwhile, all of them start again on fresh ports.
start_all() {
    local attempt i status
    for attempt in 1 2 3 4 5; do
        read -r -a ports <<<"$(python3 "$lab" ports "$replicas")"
        status=0
        for ((i = 0; i < replicas; i++)); do
            start_replica "$i" || { status=$?; break; }
        done
        [ "$status" -eq 0 ] && return 0
        for ((i = 0; i < replicas; i++)); do
            if [ -n "${pids[i]:-}" ]; then
                kill -KILL "${pids[i]}" 2>/dev/null || :
                wait "${pids[i]}" 2>/dev/null || :
            fi
            pids[i]=
        done
        [ "$status" -eq 2 ] || break
    done
    echo "the replicas did not become ready (attempt $attempt); their logs:" >&2
    cat "$work"/visit-server-*.log >&2
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
start_all
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

say "One view of every replica, from any pod: GET /visits?scope=cluster"
python3 "$lab" cluster "$work" 1 "$peer_timeout_seconds" - "${ports[@]}"

say "kubectl delete pod/visit-server-0: the StatefulSet recreates it on the same claim"
delete_pods 0
echo "While it is down, the cluster view names it missing and still answers:"
python3 "$lab" cluster "$work" 2 "$peer_timeout_seconds" 0 "${ports[@]}"
start_replica 0
python3 "$lab" visit "$ledger" 1 "0=${ports[0]}"
show_journal 0
python3 "$lab" check "$ledger" "${journals[@]}"
python3 "$lab" cluster "$work" 0 "$peer_timeout_seconds" - "${ports[@]}"

say "Rotate the read token (README: two tokens, then only the new one)"
old_token=$VISIT_TOKEN
new=$(new_token)
# shellcheck disable=SC2016 # The transcript shows the commands, not their values.
echo '$ kubectl create secret generic visit-server-read-token --from-literal=token="$(printf "%s\n%s\n" "$OLD" "$NEW")" --dry-run=client -o yaml | kubectl apply -f -'
for ((i = 0; i < replicas; i++)); do put_secret "$i" "$old_token" "$new"; done
python3 "$lab" until-cluster "$work" 1 "$peer_timeout_seconds" - "${ports[@]}"
VISIT_TOKEN=$new python3 "$lab" until-cluster "$work" 2 "$peer_timeout_seconds" - "${ports[@]}"
echo "The clients now send \$NEW. Then only the new token, which reaches visit-server-0's copy of the Secret first:"
# shellcheck disable=SC2016
echo '$ kubectl create secret generic visit-server-read-token --from-literal=token="$NEW" --dry-run=client -o yaml | kubectl apply -f -'
put_secret 0 "$new"
# Replica 1 still sends the old token first, which replica 0 no longer takes.
VISIT_TOKEN=$new python3 "$lab" until-cluster "$work" 1 "$peer_timeout_seconds" 0:unauthorized "${ports[@]}"
for ((i = 1; i < replicas; i++)); do put_secret "$i" "$new"; done
VISIT_TOKEN=$new python3 "$lab" until-cluster "$work" 1 "$peer_timeout_seconds" - "${ports[@]}"
VISIT_TOKEN=$new python3 "$lab" probe "${ports[@]}"
VISIT_TOKENS="$old_token $new" python3 "$lab" secret-logs "$work"/visit-server-*.log

say "Scale to zero: every replica drains and exits 0"
# shellcheck disable=SC2046 # One word per replica number.
delete_pods $(seq 0 $((replicas - 1)))
python3 "$lab" check "$ledger" "${journals[@]}"

say "Rehearsal passed: each replica kept exactly its own visits, and any one shows them all"
