#!/usr/bin/env bash
# Issue #16's figures: counts that are exact, and still fast, against the server before the
# change (BASE, a git revision) measured in the same run, alternating request by request.
#
#   bench/counts.sh                 # BASE=0ec2936 (main before #16); ~10 minutes once built
#   BASE=<rev> bench/counts.sh
#
# 1. A 1 GiB history (128 segments of 8 MiB, a 7 MiB live file): /stats warm, median of 7
#    per server, alternating (target < 100 ms and within 1.2x of BASE).
# 2. A history of 5,000 segments of 4 KiB: /visits time to the first byte (target < 50 ms),
#    /stats cold (a fresh server's first answer, while it counts in the background; target
#    < 10 s) and warm (target < 100 ms), for both servers; BASE needs the descriptor limit
#    raised by the shell (it opens one per segment and does not raise it itself), so both
#    run with the soft limit at the hard one; then each with a soft limit of 1024, as
#    containers often start, to show which answers.
#
# Prints `name value` lines; the ratios are new/base. Everything runs on 127.0.0.1 and stops
# by itself; the scratch directory is removed on exit (the base build is kept in
# target/bench-base for the next run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
results=$(mktemp)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
prepare
base_rev=${BASE:-0ec2936}

note "building visit-server at $base_rev (release, target/bench-base)"
git worktree add -q --detach "$work/base-src" "$base_rev"
cargo build --release -q -p visit-server --manifest-path "$work/base-src/Cargo.toml" \
    --target-dir "$root/target/bench-base"
git worktree remove --force "$work/base-src"
base_bin=$root/target/bench-base/release/visit-server
new_bin=$bin

ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
hard=$(ulimit -Hn)
note "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), descriptors soft $(ulimit -Sn) hard $hard"

# Starts $1 (a binary) on the journal $2 with a soft descriptor limit of $3, logging to $4;
# sets $srv and $url.
start() { # bin journal soft_limit log
    local port
    port=$(free_port)
    (ulimit -Sn "$3" && exec "$1" --listen "127.0.0.1:$port" --file "$2" --rotate-size 8MiB) >"$4" 2>&1 &
    srv=$!; pids+=("$srv")
    url="http://127.0.0.1:$port"
    wait_http "$url/readyz"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# Waits (at most 300 s) until the server logging to $1 has counted its segments at start.
counted() {
    for _ in $(seq 6000); do
        grep -q '"event":"segments_counted"' "$1" && return 0
        sleep 0.05
    done
    note "no segments_counted in $1"; return 1
}
total_of() { curl -fsS --max-time 300 "$1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["visits"])'; }
# Seconds of one request for $2 at $1: the whole answer, or with `first` the first byte.
one() { # url path [first]
    if [ "${3:-}" = first ]; then
        curl -fsS -o /dev/null -r 0-0 --max-time 60 -w '%{time_starttransfer}' "$1$2"
    else
        curl -fsS -o /dev/null --max-time 300 -w '%{time_total}' "$1$2"
    fi
}
# Medians of $3 alternating requests for $2 at the base ($base_url) and new ($new_url)
# servers; says `${1}_base_ms`, `${1}_new_ms` and their ratio.
alternate() { # name path times [first]
    local b="" n=""
    for _ in $(seq "$3"); do
        b+="$(one "$base_url" "$2" "${4:-}")"$'\n'
        n+="$(one "$new_url" "$2" "${4:-}")"$'\n'
    done
    b=$(median <<<"${b%$'\n'}"); n=$(median <<<"${n%$'\n'}")
    say "${1}_base_ms $(ms "$b")"
    say "${1}_new_ms $(ms "$n")"
    say "${1}_ratio $(ratio "$n" "$b")"
}

# 1. The 1 GiB history, warm.
note "writing a 1 GiB history"
mkdir -p "$work/gib"
write_history "$work/gib/visits.txt" 128 $((8 << 20)) $((7 << 20))
start "$base_bin" "$work/gib/visits.txt" "$hard" "$work/gib-base.log"; base_srv=$srv base_url=$url
start "$new_bin" "$work/gib/visits.txt" "$hard" "$work/gib-new.log"; new_srv=$srv new_url=$url
counted "$work/gib-base.log"; counted "$work/gib-new.log"
total=$(total_of "$new_url")
[ "$total" = "$(total_of "$base_url")" ] || { note "MISMATCH: the servers count the 1 GiB history differently"; exit 1; }
say "gib_total_visits $total"
alternate gib_stats_warm /stats 7
stop "$base_srv"; stop "$new_srv"
rm -rf "$work/gib"

# 2. 5,000 segments of 4 KiB.
note "writing a history of 5,000 segments"
mkdir -p "$work/many"
write_history "$work/many/visits.txt" 5000 4096 2048
say "many_segments $(ls "$work/many" | grep -c '^visits.txt.[0-9]')"
# Cold: a fresh server's first /stats, three starts each, alternating.
cold_b="" cold_n=""
for i in 1 2 3; do
    start "$base_bin" "$work/many/visits.txt" "$hard" "$work/many-base-$i.log"
    cold_b+="$(one "$url" /stats)"$'\n'; stop "$srv"
    start "$new_bin" "$work/many/visits.txt" "$hard" "$work/many-new-$i.log"
    cold_n+="$(one "$url" /stats)"$'\n'; stop "$srv"
done
b=$(median <<<"${cold_b%$'\n'}"); n=$(median <<<"${cold_n%$'\n'}")
say "many_stats_cold_base_ms $(ms "$b")"
say "many_stats_cold_new_ms $(ms "$n")"
say "many_stats_cold_ratio $(ratio "$n" "$b")"
start "$base_bin" "$work/many/visits.txt" "$hard" "$work/many-base.log"; base_srv=$srv base_url=$url
start "$new_bin" "$work/many/visits.txt" "$hard" "$work/many-new.log"; new_srv=$srv new_url=$url
counted "$work/many-base.log"; counted "$work/many-new.log"
total=$(total_of "$new_url")
[ "$total" = "$(total_of "$base_url")" ] || { note "MISMATCH: the servers count 5,000 segments differently"; exit 1; }
say "many_total_visits $total"
alternate many_stats_warm /stats 7
alternate many_visits_first_byte /visits 7 first
alternate many_visits_limit_1000 '/visits?limit=1000' 7
stop "$base_srv"; stop "$new_srv"
# A soft limit of 1024, as a container often starts with.
for which in base new; do
    b=${which}_bin
    start "${!b}" "$work/many/visits.txt" 1024 "$work/many-$which-1024.log"
    say "many_soft_1024_${which}_visits_status $(curl -s -o /dev/null -w '%{http_code}' --max-time 60 "$url/visits")"
    say "many_soft_1024_${which}_stats_status $(curl -s -o /dev/null -w '%{http_code}' --max-time 60 "$url/stats")"
    stop "$srv"
done
note "load average $(cut -d' ' -f1-3 /proc/loadavg)"
note "targets: gib_stats_warm_new_ms < 100 and gib_stats_warm_ratio <= 1.2; many_visits_first_byte_new_ms < 50; many_stats_cold_new_ms < 10000; many_stats_warm_new_ms < 100; many_soft_1024_new_* 200"
