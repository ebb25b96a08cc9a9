#!/usr/bin/env bash
# HTTP benchmark of visit-server against the classic lab's Flask app, in one run, on loopback.
#
#   bench/http.sh                  # ~2.5 minutes once built; `name value` lines, ratios last
#   DURATION=10 RUNS=5 bench/http.sh
#
# Measures, for durable `GET /` (every 200 fsynced), requests/s and p50/p99 latency at 1, 16
# and 64 connections (wrk, keep-alive, after a 2 s warm-up; each figure the median of $RUNS
# runs of $DURATION seconds, as a shared 2-core machine is noisy), the same for ../shared/anchors/seed_app.py (Flask,
# no lock, no fsync), the RSS of visit-server under that load, and its RSS while it streams
# /visits of a 256 MB journal (text and JSON). Installs wrk (apt) and Flask (a venv under
# target/) if missing. Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

duration=${DURATION:-5}
runs=${RUNS:-3}
seed_app=${SEED_APP:-$root/../shared/anchors/seed_app.py}
big_mb=${BIG_MB:-256}

results=$(mktemp)
# say, get, note, prepare, free_port, wait_http, rss_kb, to_ms, median, load.
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

[ -f "$seed_app" ] || { note "seed app not found at $seed_app (set SEED_APP)"; exit 1; }
if ! command -v wrk >/dev/null; then
    note "installing wrk"
    apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
fi
venv=$root/target/bench-venv
if ! "$venv/bin/python" -c 'import flask' 2>/dev/null; then
    note "installing Flask into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q flask
fi
prepare

# Samples the peak RSS of pid $1 into file $2 until file $3 exists.
sample_rss() {
    local pid=$1 out=$2 stop=$3 peak=0 r
    while [ ! -e "$stop" ]; do
        r=$(rss_kb "$pid" 2>/dev/null || echo 0)
        [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.05
    done
    echo "$peak" > "$out"
}

# Two seconds of load before measuring, the same for both servers: both pools of threads
# start cold, and tiny_http's starts a burst of new connections slowly (see visit-server's
# `tiny_http_quirks` module docs).
warm() { wrk -t2 -c64 -d2s "$1" >/dev/null; }

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
say "ratio_p99_64c_seed_app_over_visit_server $(ratio "$(get seed_app_64c_p99_ms)" "$(get visit_server_64c_p99_ms)")"
say "ratio_stream_text_rss_over_idle $(ratio "$(get visit_server_stream_text_peak_rss_kb)" "$(get visit_server_big_idle_rss_kb)")"
