#!/usr/bin/env bash
# What the read token costs (issue #17, CONTRACT §11), on loopback, in one run.
#
#   bench/token.sh                 # ~3 minutes once built; `name value` lines, ratios last
#   DURATION=5 ROUNDS=7 CONNECTIONS=16 bench/token.sh
#
# Two release servers over copies of the same journal (LINES visits, default 1,000: a small
# journal, so that the token's share of a request is as large as it gets): one open, one with
# --read-token-file. wrk (keep-alive, $CONNECTIONS connections, after a warm-up) measures, in
# $ROUNDS rounds of alternating pairs, each run $DURATION seconds:
#
#   stats          /stats on the open server         vs  /stats with a valid Bearer token
#   visits_100     /visits?limit=100 on the open one  vs  the same with a valid Bearer token
#   refused        /healthz on the token server      vs  /stats without credentials (401)
#   refused_wrong  /healthz with a wrong Bearer token vs  /stats with it (401): the same
#                  (ignored there)                        bytes on the wire but the path, a
#                                                         full-length comparison
#
# Each pair runs back to back, in the opposite order every other round, so that both sides
# see the same machine; each ratio is the median of the rounds' ratios (baseline requests/s
# over the other's: 1.00 costs nothing, 1.05 is 5% fewer requests per second), with the
# slowest and fastest round's. Beside requests/s, each run measures the server's own CPU time
# per request (utime + stime from /proc, over wrk's request count): on a machine shared with
# other work, requests/s moves with whatever else runs, the CPU a request costs much less, so
# `ratio_cpu_*` (the other's CPU per request over the baseline's) is the steadier figure of
# what the token adds. Logs go to /dev/null, as in bench/http.sh.
# Nothing is pinned to a core: tried (both servers on one core, wrk on the other), it made
# the rounds noisier on a machine shared with other work, not quieter.
# Installs wrk (apt) if missing. Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

duration=${DURATION:-3}
rounds=${ROUNDS:-7}
connections=${CONNECTIONS:-8}
lines=${LINES:-1000}
runs=1

results=${BENCH_RESULTS:-$(mktemp)}
# say, get, note, prepare, free_port, wait_http, to_ms, median.
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

if ! command -v wrk >/dev/null; then
    note "installing wrk"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
prepare
note "machine: $(nproc) cores, kernel $(uname -r); $lines visits, $rounds rounds of ${duration}s, $connections connections"

# The journal: $lines visits over a few days and addresses, the same for both servers.
mkdir -p "$work/open" "$work/token"
python3 - "$work/open/visits.txt" "$lines" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    for i in range(n):
        f.write(f"2026-11-{20 + i % 7:02d}T10:{i // 60 % 60:02d}:{i % 60:02d}.123+00:00 - 10.0.{i % 50}.{i % 200}\n")
EOF
cp "$work/open/visits.txt" "$work/token/visits.txt"
token=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
wrong="${token%?}0"
[ "$wrong" != "$token" ] || wrong="${token%?}1"
printf '%s\n' "$token" >"$work/read-token"

open_port=$(free_port)
"$bin" --listen "127.0.0.1:$open_port" --file "$work/open/visits.txt" >/dev/null 2>&1 &
open_pid=$!
pids+=("$open_pid")
token_port=$(free_port)
"$bin" --listen "127.0.0.1:$token_port" --file "$work/token/visits.txt" \
    --read-token-file "$work/read-token" >/dev/null 2>&1 &
token_pid=$!
pids+=("$token_pid")
wait_http "http://127.0.0.1:$open_port/readyz"
wait_http "http://127.0.0.1:$token_port/readyz"
open=http://127.0.0.1:$open_port token_url=http://127.0.0.1:$token_port
good=("-H" "Authorization: Bearer $token")
bad=("-H" "Authorization: Bearer $wrong")

# Sanity: what each side answers.
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code "$token_url/stats")" = 401 ] || { note "the token server's /stats is open"; exit 1; }
[ "$(code "${good[@]}" "$token_url/stats")" = 200 ] || { note "the token is refused"; exit 1; }
[ "$(code "${bad[@]}" "$token_url/stats")" = 401 ] || { note "a wrong token is accepted"; exit 1; }
[ "$(code "$open/stats")" = 200 ] || { note "the open server's /stats is not 200"; exit 1; }

# A process's user + system CPU time, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# One wrk run against the server $1: prints `requests/s p50_ms non_2xx cpu_us_per_request`.
run() { # pid url [wrk options...]
    local pid=$1 url=$2 out before after
    shift 2
    before=$(cpu_ticks "$pid")
    out=$(wrk -t2 -c"$connections" -d"${duration}s" --latency "$@" "$url")
    after=$(cpu_ticks "$pid")
    printf '%s %s %s %s\n' \
        "$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")" \
        "$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")" \
        "$(awk '/Non-2xx/ {print $NF; f=1} END {if (!f) print 0}' <<<"$out")" \
        "$(awk -v t=$((after - before)) -v hz="$hz" '/ requests in / {printf "%.2f", t * 1e6 / hz / $1}' <<<"$out")"
}

# Warm both servers' thread pools and caches.
wrk -t2 -c"$connections" -d2s "$open/stats" >/dev/null
wrk -t2 -c"$connections" -d2s "${good[@]}" "$token_url/stats" >/dev/null

# pair NAME BASE_PID BASE_URL BASE_OPTS... -- OTHER_PID OTHER_URL OTHER_OPTS...: $rounds
# rounds, alternating.
pair() {
    local name=$1 base=() other=() r a b ratios="" base_rps="" other_rps="" base_p50="" other_p50=""
    local non2xx=0 cpu_ratios="" base_cpu="" other_cpu=""
    shift
    while [ "$1" != -- ]; do base+=("$1"); shift; done
    shift
    other=("$@")
    for r in $(seq "$rounds"); do
        if [ $((r % 2)) = 1 ]; then
            a=$(run "${base[@]}"); b=$(run "${other[@]}")
        else
            b=$(run "${other[@]}"); a=$(run "${base[@]}")
        fi
        read -r ar ap an ac <<<"$a"
        read -r br bp bn bc <<<"$b"
        non2xx=$((non2xx + an))
        base_rps+="$ar"$'\n' other_rps+="$br"$'\n' base_p50+="$ap"$'\n' other_p50+="$bp"$'\n'
        base_cpu+="$ac"$'\n' other_cpu+="$bc"$'\n'
        ratios+="$(awk -v a="$ar" -v b="$br" 'BEGIN {printf "%.3f", a / b}')"$'\n'
        cpu_ratios+="$(awk -v a="$ac" -v b="$bc" 'BEGIN {printf "%.3f", b / a}')"$'\n'
        note "$name round $r: base $ar/s (p50 $ap ms, $ac us CPU/request)," \
            "other $br/s (p50 $bp ms, $bc us CPU/request, $bn non-2xx)"
    done
    say "${name}_base_rps $(median <<<"${base_rps%$'\n'}")"
    say "${name}_other_rps $(median <<<"${other_rps%$'\n'}")"
    say "${name}_base_p50_ms $(median <<<"${base_p50%$'\n'}")"
    say "${name}_other_p50_ms $(median <<<"${other_p50%$'\n'}")"
    say "${name}_base_non_2xx $non2xx"
    say "ratio_${name}_base_over_other $(median <<<"${ratios%$'\n'}")"
    say "ratio_${name}_base_over_other_min $(sort -g <<<"${ratios%$'\n'}" | head -1)"
    say "ratio_${name}_base_over_other_max $(sort -g <<<"${ratios%$'\n'}" | tail -1)"
    say "${name}_base_cpu_us_per_request $(median <<<"${base_cpu%$'\n'}")"
    say "${name}_other_cpu_us_per_request $(median <<<"${other_cpu%$'\n'}")"
    say "ratio_cpu_${name}_other_over_base $(median <<<"${cpu_ratios%$'\n'}")"
    say "ratio_cpu_${name}_other_over_base_min $(sort -g <<<"${cpu_ratios%$'\n'}" | head -1)"
    say "ratio_cpu_${name}_other_over_base_max $(sort -g <<<"${cpu_ratios%$'\n'}" | tail -1)"
}

pair stats "$open_pid" "$open/stats" -- "$token_pid" "$token_url/stats" "${good[@]}"
pair visits_100 "$open_pid" "$open/visits?limit=100" -- \
    "$token_pid" "$token_url/visits?limit=100" "${good[@]}"
pair refused "$token_pid" "$token_url/healthz" -- "$token_pid" "$token_url/stats"
pair refused_wrong "$token_pid" "$token_url/healthz" "${bad[@]}" -- \
    "$token_pid" "$token_url/stats" "${bad[@]}"

# The refused side answered only 401s, and the token server counted them.
refused=$(curl -fsS "$token_url/metrics" | awk '$1 == "visit_server_requests_total{status=\"401\"}" {print $2}')
say "token_server_401_total $refused"
[ "${refused:-0}" -gt 0 ] || { note "no 401 counted"; exit 1; }
note "targets: ratio_stats and ratio_visits_100 <= 1.05; ratio_refused(_wrong) <= 1.10 (and the same for ratio_cpu_*)"
