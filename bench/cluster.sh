#!/usr/bin/env bash
# Latency of the cluster view (GET /visits?scope=cluster) with three replicas on loopback.
#
#   bench/cluster.sh                    # ~1.5 minutes once built; `name value` lines
#   DURATION=10 RUNS=5 VISITS=500 bench/cluster.sh
#
# Three release visit-servers, each listing all three addresses with --peers, each holding
# $VISITS visits (sent round-robin). wrk then asks replica 0, on one keep-alive connection
# and on four (the most cluster views at once), for the cluster view as text and as JSON,
# for /stats?scope=cluster, and, as a baseline without fan-out, for its own
# /visits?limit=$VISITS. Each figure is the median of $RUNS runs of $DURATION seconds.
# Last, replica 0 is restarted with a fourth peer that accepts connections and never
# answers: every answer should then take the peer timeout (1 s), no more, on one connection
# and on three at once.
# Installs wrk (apt) if missing. Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

duration=${DURATION:-5}
runs=${RUNS:-3}
visits=${VISITS:-300}

results=$(mktemp)
# say, get, note, prepare, free_port, wait_http, rss_kb, to_ms, median, load.
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

if ! command -v wrk >/dev/null; then
    note "installing wrk"
    apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi
prepare

# The hanging peer: a socket that listens and never accepts, so connections to it sit in
# its backlog and no answer ever comes. It lives as long as this script.
hang_port=$(free_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1024)
time.sleep(3600)' "$hang_port" &
pids+=($!)

ports=() replica_pids=()
for i in 0 1 2; do ports+=("$(free_port)"); done
peers=$(printf '127.0.0.1:%s,' "${ports[@]}")
peers=${peers%,}

start() { # replica peers
    local i=$1
    "$bin" --listen "127.0.0.1:${ports[i]}" --file "$work/pvc-$i/visits.txt" \
        --name "visit-server-$i" --peers "$2" >/dev/null 2>&1 &
    replica_pids[i]=$!
    pids+=($!)
    wait_http "http://127.0.0.1:${ports[i]}/readyz"
}

note "machine: $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in 0 1 2; do start "$i" "$peers"; done
note "recording $visits visits per replica"
for ((n = 0; n < 3 * visits; n++)); do
    curl -fsS -o /dev/null "http://127.0.0.1:${ports[n % 3]}/"
done
url=http://127.0.0.1:${ports[0]}

# The answer holds every visit of every replica, each under its heading.
lines=$(curl -fsS "$url/visits?scope=cluster" | grep -cv '^# ')
say "cluster_view_visits $lines"
[ "$lines" -eq $((3 * visits)) ] || { note "MISMATCH: $lines visits, expected $((3 * visits))"; exit 1; }
say "cluster_view_bytes $(curl -fsS "$url/visits?scope=cluster" | wc -c)"

wrk -t1 -c1 -d2s "$url/visits?scope=cluster" >/dev/null
load local_visits "$url/visits?limit=$visits" 1
for c in 1 4; do load cluster_text "$url/visits?scope=cluster" "$c"; done
load cluster_json "$url/visits?scope=cluster&format=json" 1
load cluster_stats "$url/stats?scope=cluster" 1

note "restarting visit-server-0 with a fourth peer that never answers"
kill "${replica_pids[0]}"
wait "${replica_pids[0]}" 2>/dev/null || true
start 0 "$peers,127.0.0.1:$hang_port"
partial=$(curl -fsS -D - -o /dev/null "$url/visits?scope=cluster" | tr -d '\r' | awk -F': ' '$1 == "X-Visit-Partial" {print $2}')
say "hanging_peer_partial $partial"
[ "$partial" = true ] || { note "MISMATCH: X-Visit-Partial: $partial"; exit 1; }
# One run each, with a pause first: a view in flight when a wrk run ends keeps its slot
# until its peer times out, and a client finding all four slots taken gets an immediate 503
# (and wrk, which ignores Retry-After, would spin on those). Three connections stay under
# the cap of four views.
runs=1 duration=$((duration * 2)) load cluster_hanging_peer "$url/visits?scope=cluster" 1
sleep 2
runs=1 duration=$((duration * 2)) load cluster_hanging_peer "$url/visits?scope=cluster" 3
