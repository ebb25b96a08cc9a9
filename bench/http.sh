#!/usr/bin/env bash
# HTTP benchmark of visit-server against the classic lab's Flask app, in one run, on loopback.
#
#   bench/http.sh                  # ~3 minutes once built; `name value` lines, ratios last
#   DURATION=10 RUNS=5 bench/http.sh
#
# Measures, for durable `GET /` (every 200 fsynced), requests/s and p50/p99 latency at 1, 16
# and 64 connections (wrk, keep-alive, after a 2 s warm-up; each figure the median of $RUNS
# runs of $DURATION seconds, as a shared 2-core machine is noisy), the same for ../shared/anchors/seed_app.py (Flask,
# no lock, no fsync), the RSS of visit-server under that load, and its RSS while it streams
# /visits of a 256 MB journal (text and JSON). The same durable `GET /` is also measured
# through the prod pod's front proxy (k8s/components/front-proxy/nginx.conf, unchanged, under
# Debian's nginx on 8080, the server on 127.0.0.1:8081), in a network namespace of its own
# when run as root (elsewhere, a copy of the file on free ports), with the pod's RSS.
# Installs wrk and nginx (apt) and Flask (a venv under target/) if missing. Everything runs on
# 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

duration=${DURATION:-5}
runs=${RUNS:-3}
seed_app=${SEED_APP:-$root/../shared/anchors/seed_app.py}
big_mb=${BIG_MB:-256}

results=${BENCH_RESULTS:-$(mktemp)}
# say, get, note, prepare, free_port, wait_http, rss_kb, sample_rss, to_ms, median, load.
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

[ -f "$seed_app" ] || { note "seed app not found at $seed_app (set SEED_APP)"; exit 1; }
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
    note "installing wrk and nginx"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk nginx >/dev/null
fi
venv=$root/target/bench-venv
if ! "$venv/bin/python" -c 'import flask' 2>/dev/null; then
    note "installing Flask into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q flask
fi
if [ -n "${BENCH_PROXIED_INNER:-}" ]; then
    # Re-executed in a network namespace for the proxied part (below): the caller's build,
    # scratch directory and results; the caller cleans up.
    bin=$BENCH_BIN work=$BENCH_WORK
    pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait' EXIT
else
    prepare
fi

# Two seconds of load before measuring, the same for both servers: both pools of threads
# start cold, and tiny_http's starts a burst of new connections slowly (see visit-server's
# `tiny_http_quirks` module docs).
warm() { wrk -t2 -c64 -d2s "$1" >/dev/null; }

# Measures GET / through the front proxy: nginx with config $1 on port $2, the server on $3.
proxied_load() {
    local conf=$1 proxy_port=$2 server_listen=$3 server
    mkdir -p "$work/px"
    "$bin" --listen "$server_listen" --file "$work/px/visits.txt" --trusted-proxy 127.0.0.1 \
        >/dev/null 2>&1 &
    server=$!; pids+=("$server")
    nginx -c "$conf" -g 'daemon off;' 2>"$work/px/nginx.log" &
    proxy=$!; pids+=("$proxy")
    wait_http "http://127.0.0.1:$proxy_port/readyz"
    pod_rss() { echo $(( $(rss_kb "$server") + $(rss_kb "$proxy") + $(rss_kb "$(pgrep -P "$proxy" | head -1)") )); }
    say "proxied_idle_pod_rss_kb $(pod_rss)"
    warm "http://127.0.0.1:$proxy_port/"
    for c in 1 16; do load proxied "http://127.0.0.1:$proxy_port/" "$c"; done
    load proxied "http://127.0.0.1:$proxy_port/" 64
    say "proxied_64c_pod_rss_kb $(pod_rss)"
    local acked lines
    acked=$(curl -fsS "http://127.0.0.1:$proxy_port/metrics" | awk '$1 == "visit_server_visits_recorded_total" {print $2}')
    lines=$(wc -l < "$work/px/visits.txt")
    say "proxied_visits_acked $acked"
    say "proxied_file_lines $lines"
    [ "$acked" = "$lines" ] || { note "MISMATCH: $acked acknowledged, $lines lines"; exit 1; }
    kill "$proxy" "$server"; wait "$proxy" "$server" 2>/dev/null || true
}

conf=$root/k8s/components/front-proxy/nginx.conf
if [ -n "${BENCH_PROXIED_INNER:-}" ]; then
    # Re-executed inside the network namespace: only the proxied part, into the caller's
    # $results and $work.
    ip link set lo up
    proxied_load "$conf" 8080 127.0.0.1:8081
    exit 0
fi

note "machine: $(nproc) cores, kernel $(uname -r), $(df -T "$work" | awk 'NR==2 {print $2" on "$1}')"

# --- visit-server -----------------------------------------------------------------------
vs_port=$(free_port)
"$bin" --listen "127.0.0.1:$vs_port" --file "$work/vs/visits.txt" >/dev/null 2>&1 &
vs=$!; pids+=("$vs")
wait_http "http://127.0.0.1:$vs_port/readyz"
say "visit_server_idle_rss_kb $(rss_kb "$vs")"
warm "http://127.0.0.1:$vs_port/"

for c in 1 16; do load visit_server "http://127.0.0.1:$vs_port/" "$c"; done
sample_rss "$vs" "$work/rss" "$work/rss.stop" &
sampler=$!
load visit_server "http://127.0.0.1:$vs_port/" 64
touch "$work/rss.stop"; wait "$sampler"
say "visit_server_64c_peak_rss_kb $(cat "$work/rss")"
rm -f "$work/rss" "$work/rss.stop"

# Every 200 is a line: the file must hold exactly what /metrics says was acknowledged.
metrics=$(curl -fsS "http://127.0.0.1:$vs_port/metrics")
acked=$(awk '$1 == "visit_server_visits_recorded_total" {print $2}' <<<"$metrics")
fsyncs=$(awk '$1 == "visit_journal_fsyncs_total" {print $2}' <<<"$metrics")
largest=$(awk '$1 == "visit_journal_largest_batch" {print $2}' <<<"$metrics")
lines=$(wc -l < "$work/vs/visits.txt")
say "visit_server_visits_acked $acked"
say "visit_server_file_lines $lines"
say "visit_server_fsyncs $fsyncs"
say "visit_server_visits_per_fsync $(awk -v a="$acked" -v f="$fsyncs" 'BEGIN {printf "%.1f", a / f}')"
say "visit_server_largest_batch $largest"
[ "$acked" = "$lines" ] || { note "MISMATCH: $acked acknowledged, $lines lines"; exit 1; }
kill "$vs"; wait "$vs" 2>/dev/null || true

# --- visit-server behind the front proxy ------------------------------------------------------
if [ "$(id -u)" = 0 ] && unshare --net true 2>/dev/null; then
    note "proxied: $(nginx -v 2>&1 | sed 's/.*: //') with $conf, in a network namespace of its own"
    BENCH_PROXIED_INNER=1 BENCH_RESULTS=$results BENCH_WORK=$work BENCH_BIN=$bin \
        unshare --net "$root/bench/http.sh"
else
    # No namespace: the same file on free ports (its pid and temporary paths under /tmp).
    px_port=$(free_port); srv_port=$(free_port)
    sed -e "s/listen 8080;/listen $px_port;/" -e "s/listen \[::\]:8080;/listen [::]:$px_port;/" \
        -e "s/127\.0\.0\.1:8081/127.0.0.1:$srv_port/" -e "s#/tmp/nginx#$work/nginx#" "$conf" > "$work/nginx.conf"
    note "proxied: $(nginx -v 2>&1 | sed 's/.*: //') with a copy of $conf on ports $px_port and $srv_port"
    proxied_load "$work/nginx.conf" "$px_port" "127.0.0.1:$srv_port"
fi

# --- the classic Flask app ----------------------------------------------------------------
seed_port=$(free_port)
mkdir -p "$work/seed"
"$venv/bin/python" "$seed_app" --port "$seed_port" --file "$work/seed/visits.txt" >/dev/null 2>&1 &
seed=$!; pids+=("$seed")
wait_http "http://127.0.0.1:$seed_port/"
warm "http://127.0.0.1:$seed_port/"
for c in 1 16 64; do load seed_app "http://127.0.0.1:$seed_port/" "$c"; done
kill "$seed"; wait "$seed" 2>/dev/null || true

# --- streaming a big journal ----------------------------------------------------------------
note "writing a ${big_mb} MB journal"
mkdir -p "$work/big"
python3 - "$work/big/visits.txt" "$big_mb" <<'EOF'
import sys
path, mb = sys.argv[1], int(sys.argv[2])
block = "".join(
    f"2026-11-26T10:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}+03:00 - 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}\n"
    for i in range(20000)
).encode()
with open(path, "wb") as f:
    for _ in range(mb * 1024 * 1024 // len(block) + 1):
        f.write(block)
EOF
big_bytes=$(stat -c %s "$work/big/visits.txt")
say "big_journal_bytes $big_bytes"
big_port=$(free_port)
"$bin" --listen "127.0.0.1:$big_port" --file "$work/big/visits.txt" >/dev/null 2>&1 &
big=$!; pids+=("$big")
wait_http "http://127.0.0.1:$big_port/readyz"
say "visit_server_big_idle_rss_kb $(rss_kb "$big")"
for format in text json; do
    sample_rss "$big" "$work/rss" "$work/rss.stop" &
    sampler=$!
    start=$(date +%s.%N)
    got=$(curl -fsS --max-time 120 -o /dev/null -w '%{size_download}' \
        "http://127.0.0.1:$big_port/visits?format=$format")
    end=$(date +%s.%N)
    touch "$work/rss.stop"; wait "$sampler"
    say "visit_server_stream_${format}_bytes $got"
    say "visit_server_stream_${format}_mb_per_s $(awk -v b="$got" -v s="$start" -v e="$end" 'BEGIN {printf "%.0f", b / 1048576 / (e - s)}')"
    say "visit_server_stream_${format}_peak_rss_kb $(cat "$work/rss")"
    rm -f "$work/rss" "$work/rss.stop"
done
[ "$(curl -fsS "http://127.0.0.1:$big_port/visits" | cmp -s - "$work/big/visits.txt" && echo same)" = same ] \
    || { note "MISMATCH: /visits differs from the file"; exit 1; }
say "visit_server_stream_text_equals_file 1"

# --- ratios -----------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a / b}'; }
for c in 1 16 64; do
    say "ratio_rps_${c}c_visit_server_over_seed_app $(ratio "$(get visit_server_${c}c_rps)" "$(get seed_app_${c}c_rps)")"
done
for c in 1 16 64; do
    say "ratio_rps_${c}c_proxied_over_seed_app $(ratio "$(get proxied_${c}c_rps)" "$(get seed_app_${c}c_rps)")"
    say "ratio_rps_${c}c_proxied_over_visit_server $(ratio "$(get proxied_${c}c_rps)" "$(get visit_server_${c}c_rps)")"
done
say "ratio_p99_64c_seed_app_over_visit_server $(ratio "$(get seed_app_64c_p99_ms)" "$(get visit_server_64c_p99_ms)")"
say "ratio_stream_text_rss_over_idle $(ratio "$(get visit_server_stream_text_peak_rss_kb)" "$(get visit_server_big_idle_rss_kb)")"
