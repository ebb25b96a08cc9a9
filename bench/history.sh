#!/usr/bin/env bash
# The server over a 1 GiB history (CONTRACT §6): 128 sealed segments of 8 MiB, a 7 MiB live
# file and a summary, as a replica with --rotate-size 8MiB leaves them.
#
#   bench/history.sh          # ~3 minutes once built (~3 GiB of scratch); `name value` lines
#   GIB=2 bench/history.sh
#
# Measures /stats cold (asked as soon as the server is ready, while it counts its sealed
# segments in the background) and warm (each sealed segment's counts are kept: only the live
# file is read; target < 100 ms), how long after the start the background count is done, and
# for /visits (text and JSON) the time to the first byte (target < 50 ms), the throughput and
# the server's peak RSS while it streams the whole history (target < 20 MB, flat), and
# /visits?limit=1000 across segments.
# Then /dashboard (issue #12): cold and warm on a fresh server, and on three replicas on
# loopback (each with its own copy of the history, all naming each other with --peers):
# replica 0's page asked at once after a cold start (how many replicas answered within the
# 1 s --peer-timeout, and how long until the page names all three), warm (target < 100 ms),
# its peak RSS, a check that its figures equal /stats?scope=cluster, and the first page after
# a restart once every replica has counted its segments in the background.
# Everything runs on 127.0.0.1 and stops by itself; the scratch directory is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=0 runs=0
gib=${GIB:-1}
results=$(mktemp)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
prepare

# The median time_total, in seconds, of 7 requests for $2, each body written to $1.
median_of_7() {
    local times=""
    for _ in 1 2 3 4 5 6 7; do
        times+="$(curl -fsS -o "$1" -w '%{time_total}' "$2")"$'\n'
    done
    median <<<"${times%$'\n'}"
}


note "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r), $(df -T "$work" | awk 'NR==2 {print $2" on "$1}')"
note "writing a ${gib} GiB history"
mkdir -p "$work/h"
write_history "$work/h/visits.txt" $((gib * 1024 / 8)) $((8 << 20)) $((7 << 20))
say "history_bytes $(du -cb "$work/h" | tail -1 | cut -f1)"
say "history_segments $(ls "$work/h" | grep -c '^visits.txt.[0-9]')"

ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
since() { ms "$(awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN {print e - s}')"; } # start_epoch
start_one() { # name port dir peers log; sets $started
    local args=(--listen "127.0.0.1:$2" --file "$3/visits.txt" --rotate-size 8MiB --name "$1")
    [ -n "$4" ] && args+=(--peers "$4")
    "$bin" "${args[@]}" >"$5" 2>&1 &
    started=$!; pids+=("$started")
}
# Waits (at most 120 s) for the server logging to $1 to say it counted its sealed segments
# in the background (it does so at start); prints the milliseconds from $2 to that log
# line's own time stamp, or "none".
counted_after() { # log start_epoch
    local line
    for _ in $(seq 2400); do
        line=$(grep -m1 '"event":"segments_counted"' "$1" || true)
        if [ -n "$line" ]; then
            ms "$(awk -v s="$2" -v e="$(date -d "$(sed 's/.*"ts":"\([^"]*\)".*/\1/' <<<"$line")" +%s.%N)" \
                'BEGIN {print e - s}')"
            return 0
        fi
        sleep 0.05
    done
    echo none
}

# The first server: its first /stats, asked as soon as it is ready, is what a user gets
# after a restart (cold; the server is counting its sealed segments in the background
# meanwhile), then /visits and /stats once the counts are kept.
port=$(free_port)
t0=$(date +%s.%N)
start_one solo "$port" "$work/h" "" "$work/solo.log"; srv=$started
url="http://127.0.0.1:$port"
wait_http "$url/readyz"
say "server_idle_rss_kb $(rss_kb "$srv")"
t=$(curl -fsS -o /dev/null --max-time 120 -w '%{time_total}' "$url/stats")
say "stats_cold_ms $(ms "$t")"
say "segments_counted_after_start_ms $(counted_after "$work/solo.log" "$t0")"
for format in text json; do
    first=""
    for _ in 1 2 3 4 5; do
        first+="$(curl -fsS -o /dev/null -r 0-0 --max-time 60 -w '%{time_starttransfer}' "$url/visits?format=$format" 2>/dev/null || true)"$'\n'
    done
    sample_rss "$srv" "$work/rss" "$work/rss.stop" 0.02 &
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
warm=$(median_of_7 /dev/null "$url/stats")
say "stats_warm_ms $(ms "$warm")"
say "stats_total_visits $(curl -fsS "$url/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["visits"])')"
say "server_rss_after_stats_kb $(rss_kb "$srv")"
# /visits again, with the sealed segments' counts kept.
sample_rss "$srv" "$work/rss" "$work/rss.stop" 0.02 &
sampler=$!
curl -fsS --max-time 300 -o /dev/null "$url/visits"
touch "$work/rss.stop"; wait "$sampler"
say "visits_text_after_stats_peak_rss_kb $(cat "$work/rss")"
rm -f "$work/rss" "$work/rss.stop"

tail=$(median_of_7 /dev/null "$url/visits?limit=1000")
say "visits_limit_1000_ms $(ms "$tail")"
[ "$(curl -fsS "$url/visits" | cmp -s - <(cd "$work/h" && cat visits.txt.[0-9]* visits.txt) && echo same)" = same ] \
    || { note "MISMATCH: /visits differs from cat visits.txt.[0-9]* visits.txt"; exit 1; }
say "visits_text_equals_cat 1"

# /dashboard on a big history, one replica: a fresh server (nothing counted yet), asked at
# once (cold), then again (warm: median of 7); peak RSS over both.
kill "$srv"; wait "$srv" 2>/dev/null || true
dashboard_ok() { # html file: a page that shows a chart (at least one bar)
    grep -q 'data-day="' "$1"
}
port=$(free_port)
t0=$(date +%s.%N)
start_one solo "$port" "$work/h" "" "$work/solo.log"; srv=$started
url="http://127.0.0.1:$port"
wait_http "$url/readyz"
sample_rss "$srv" "$work/rss" "$work/rss.stop" 0.02 &
sampler=$!
t=$(curl -fsS -o "$work/page.html" --max-time 120 -w '%{time_total}' "$url/dashboard")
dashboard_ok "$work/page.html" || { note "no chart in the cold /dashboard"; exit 1; }
say "dashboard_cold_ms $(ms "$t")"
warm=$(median_of_7 "$work/page.html" "$url/dashboard")
touch "$work/rss.stop"; wait "$sampler"
say "dashboard_warm_ms $(ms "$warm")"
say "dashboard_bytes $(wc -c < "$work/page.html")"
say "dashboard_peak_rss_kb $(cat "$work/rss")"
rm -f "$work/rss" "$work/rss.stop"
say "dashboard_segments_counted_after_start_ms $(counted_after "$work/solo.log" "$t0")"
kill "$srv"; wait "$srv" 2>/dev/null || true

# Three replicas on loopback, each with its own copy of the history, each naming all three
# with --peers; all start cold at once, and replica 0's /dashboard is asked at once.
note "copying the history for replicas 1 and 2"
cp -r --reflink=auto "$work/h" "$work/h1"
cp -r --reflink=auto "$work/h" "$work/h2"
dirs=("$work/h" "$work/h1" "$work/h2")
ports=()
for i in 0 1 2; do ports+=("$(free_port)"); done
peers=$(printf '127.0.0.1:%s,' "${ports[@]}")
peers=${peers%,}
# Starts the three replicas (into $replica_pids), notes the time in $t0, waits until each is ready.
start_replicas() {
    t0=$(date +%s.%N)
    for i in 0 1 2; do
        start_one "visit-server-$i" "${ports[i]}" "${dirs[i]}" "$peers" "$work/r$i.log"
        replica_pids+=("$started")
    done
    for i in 0 1 2; do wait_http "http://127.0.0.1:${ports[i]}/readyz"; done
}
replica_pids=()
start_replicas
url="http://127.0.0.1:${ports[0]}"
sample_rss "${replica_pids[0]}" "$work/rss" "$work/rss.stop" 0.02 &
sampler=$!
page_figures() { # html: "answered missing"
    python3 - "$1" <<'PY'
import re, sys
html = open(sys.argv[1], encoding="utf-8").read()
print(len(set(re.findall(r'data-total-replica="([^"]*)"', html))), len(re.findall(r'data-missing="', html)))
PY
}
# The first page, cold: how many replicas answered within the peer timeout; then a page
# every 2 s until every replica is on it (at most 120 s).
t=$(curl -fsS -o "$work/page.html" --max-time 120 -w '%{time_total}' "$url/dashboard")
read -r answered missing < <(page_figures "$work/page.html")
say "cluster_dashboard_cold_ms $(ms "$t")"
say "cluster_dashboard_cold_replicas_answered $answered"
say "cluster_dashboard_cold_replicas_missing $missing"
complete=none
for _ in $(seq 60); do
    [ "$missing" = 0 ] && [ "$answered" = 3 ] && {
        complete=$(since "$t0"); break; }
    sleep 2
    curl -fsS -o "$work/page.html" --max-time 120 "$url/dashboard"
    read -r answered missing < <(page_figures "$work/page.html")
done
say "cluster_dashboard_complete_after_start_ms $complete"
for i in 0 1 2; do
    say "cluster_replica_${i}_segments_counted_after_start_ms $(counted_after "$work/r$i.log" "$t0")"
done
warm=$(median_of_7 "$work/page.html" "$url/dashboard")
touch "$work/rss.stop"; wait "$sampler"
say "cluster_dashboard_warm_ms $(ms "$warm")"
say "cluster_dashboard_peak_rss_kb $(cat "$work/rss")"
rm -f "$work/rss" "$work/rss.stop"
# The warm page's figures against /stats?scope=cluster: every bar's count is that replica's
# count for that day, each replica's total is its visits, and no replica is missing.
curl -fsS "$url/stats?scope=cluster" > "$work/stats.json"
python3 - "$work/page.html" "$work/stats.json" <<'PY' || { note "MISMATCH: /dashboard differs from /stats?scope=cluster"; exit 1; }
import html as h, json, re, sys
page = open(sys.argv[1], encoding="utf-8").read()
stats = json.load(open(sys.argv[2]))
assert not stats["missing"] and "data-missing" not in page, "a replica is missing"
bars = [(h.unescape(r), d, int(c)) for d, r, c in re.findall(
    r'data-day="([^"]*)" data-replica="([^"]*)" data-count="(\d+)"', page)]
totals = {h.unescape(r): int(v) for r, v in re.findall(
    r'data-total-replica="([^"]*)" data-total="(\d+)"', page)}
want = {r["name"]: r for r in stats["replicas"]}
assert set(totals) == set(want) and len(want) == 3, (totals.keys(), want.keys())
for name, r in want.items():
    assert totals[name] == r["visits"], (name, totals[name], r["visits"])
    days = {d["day"]: d["visits"] for d in r["days"]}
    mine = [(d, c) for n, d, c in bars if n == name]
    assert len(mine) == min(30, len(days)), (name, len(mine), len(days))
    for d, c in mine:
        assert days[d] == c, (name, d, c, days[d])
PY
say "cluster_dashboard_equals_stats 1"
say "cluster_total_visits $(python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["visits"])' < "$work/stats.json")"

# The three restarted at once, and left alone until each has counted its sealed segments in
# the background: the first /dashboard then needs no slow count anywhere.
for p in "${replica_pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
replica_pids=()
start_replicas
for i in 0 1 2; do
    say "restart_replica_${i}_segments_counted_after_start_ms $(counted_after "$work/r$i.log" "$t0")"
done
t=$(curl -fsS -o "$work/page.html" --max-time 120 -w '%{time_total}' "$url/dashboard")
read -r answered missing < <(page_figures "$work/page.html")
say "restart_cluster_dashboard_first_ms $(ms "$t")"
say "restart_cluster_dashboard_first_replicas_answered $answered"
say "restart_cluster_dashboard_first_replicas_missing $missing"
note "load average $(cut -d' ' -f1-3 /proc/loadavg)"
note "targets: stats_warm_ms < 100, dashboard_warm_ms < 100, cluster_dashboard_warm_ms < 100, visits_*_first_byte_ms < 50, visits_*_peak_rss_kb < 20480"
