#!/usr/bin/env bash
# The server over a 1 GiB history (CONTRACT §6): 128 sealed segments of 8 MiB, a 7 MiB live
# file and a summary, as a replica with --rotate-size 8MiB leaves them.
#
#   bench/history.sh          # ~1 minute once built; `name value` lines
#   GIB=2 bench/history.sh
#
# Measures /stats cold (every segment read once) and warm (each sealed segment's counts are
# kept: only the live file is read; target < 100 ms), and for /visits (text and JSON) the
# time to the first byte (target < 50 ms), the throughput and the server's peak RSS while it
# streams the whole history (target < 20 MB, flat), and /visits?limit=1000 across segments.
# Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=0 runs=0
gib=${GIB:-1}
results=$(mktemp)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
prepare

sample_rss() { # pid out stop
    local pid=$1 out=$2 stop=$3 peak=0 r
    while [ ! -e "$stop" ]; do
        r=$(rss_kb "$pid" 2>/dev/null || echo 0)
        [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.02
    done
    echo "$peak" > "$out"
}

note "machine: $(nproc) cores, kernel $(uname -r), $(df -T "$work" | awk 'NR==2 {print $2" on "$1}')"
note "writing a ${gib} GiB history"
mkdir -p "$work/h"
python3 - "$work/h/visits.txt" "$gib" <<'PY'
import sys
path, gib = sys.argv[1], int(sys.argv[2])
lines = [
    f"2026-11-{1 + i // 1000 % 28:02d}T10:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}+03:00 - 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}\n"
    for i in range(40000)
]
block = "".join(lines).encode()
seg = 8 << 20
def fill(name, size):
    with open(name, "wb") as f:
        left = size
        while left > 0:
            chunk = block[:left]
            chunk = chunk[: chunk.rfind(b"\n") + 1] or block[: block.find(b"\n") + 1]
            f.write(chunk)
            left -= len(chunk)
n = gib * 1024 // 8
for i in range(1, n + 1):
    fill(f"{path}.{i:06d}", seg)
fill(path, 7 << 20)
with open(path + ".summary", "w") as f:
    f.write("# folded through 0\n")
PY
say "history_bytes $(du -cb "$work/h" | tail -1 | cut -f1)"
say "history_segments $(ls "$work/h" | grep -c '^visits.txt.[0-9]')"

port=$(free_port)
"$bin" --listen "127.0.0.1:$port" --file "$work/h/visits.txt" --rotate-size 8MiB >/dev/null 2>&1 &
srv=$!; pids+=("$srv")
wait_http "http://127.0.0.1:$port/readyz"
url="http://127.0.0.1:$port"
say "server_idle_rss_kb $(rss_kb "$srv")"

ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
for format in text json; do
    first=""
    for _ in 1 2 3 4 5; do
        first+="$(curl -fsS -o /dev/null -r 0-0 --max-time 60 -w '%{time_starttransfer}' "$url/visits?format=$format" 2>/dev/null || true)"$'\n'
    done
    sample_rss "$srv" "$work/rss" "$work/rss.stop" &
    sampler=$!
    start=$(date +%s.%N)
    got=$(curl -fsS --max-time 300 -o /dev/null -w '%{size_download}' "$url/visits?format=$format")
    end=$(date +%s.%N)
    touch "$work/rss.stop"; wait "$sampler"
    say "visits_${format}_first_byte_ms $(ms "$(median <<<"${first%$'\n'}")")"
    say "visits_${format}_bytes $got"
    say "visits_${format}_mb_per_s $(awk -v b="$got" -v s="$start" -v e="$end" 'BEGIN {printf "%.0f", b / 1048576 / (e - s)}')"
    say "visits_${format}_peak_rss_kb $(cat "$work/rss")"
    rm -f "$work/rss" "$work/rss.stop"
done
t=$(curl -fsS -o /dev/null -w '%{time_total}' "$url/stats")
say "stats_cold_ms $(ms "$t")"
warm=""
for _ in 1 2 3 4 5 6 7; do
    warm+="$(curl -fsS -o /dev/null -w '%{time_total}' "$url/stats")"$'\n'
done
say "stats_warm_ms $(ms "$(median <<<"${warm%$'\n'}")")"
say "stats_total_visits $(curl -fsS "$url/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["visits"])')"
say "server_rss_after_stats_kb $(rss_kb "$srv")"
# /visits again, with the sealed segments' counts kept.
sample_rss "$srv" "$work/rss" "$work/rss.stop" &
sampler=$!
curl -fsS --max-time 300 -o /dev/null "$url/visits"
touch "$work/rss.stop"; wait "$sampler"
say "visits_text_after_stats_peak_rss_kb $(cat "$work/rss")"
rm -f "$work/rss" "$work/rss.stop"

tail=""
for _ in 1 2 3 4 5 6 7; do
    tail+="$(curl -fsS -o /dev/null -w '%{time_total}' "$url/visits?limit=1000")"$'\n'
done
say "visits_limit_1000_ms $(ms "$(median <<<"${tail%$'\n'}")")"
[ "$(curl -fsS "$url/visits" | cmp -s - <(cd "$work/h" && cat visits.txt.[0-9]* visits.txt) && echo same)" = same ] \
    || { note "MISMATCH: /visits differs from cat visits.txt.[0-9]* visits.txt"; exit 1; }
say "visits_text_equals_cat 1"
note "targets: stats_warm_ms < 100, visits_*_first_byte_ms < 50, visits_*_peak_rss_kb < 20480"
