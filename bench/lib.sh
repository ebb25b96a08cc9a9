# Helpers shared by the benchmarks (bench/http.sh, bench/cluster.sh, bench/history.sh,
# bench/counts.sh); sourced, not run.
# The caller sets $results (a file collecting `name value` lines), $duration and $runs.

say() { printf '%s\n' "$*" | tee -a "$results"; }
get() { awk -v k="$1" '$1 == k {print $2}' "$results"; }
note() { printf '# %s\n' "$*" >&2; }

# Builds the release server ($bin) and makes $work, a scratch directory, and $pids, the
# processes to stop; both are cleaned up on exit. Call it from the repository root.
prepare() {
    note "building visit-server (release)"
    cargo build --release -q -p visit-server
    bin=$root/target/release/visit-server
    work=$(mktemp -d)
    pids=()
    trap cleanup EXIT
}

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work" "$results"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url
    for _ in $(seq 200); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    note "no answer from $1"; return 1
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# Samples the peak RSS of pid $1 into file $2 until file $3 exists, every $4 seconds
# (default 0.05).
sample_rss() {
    local pid=$1 out=$2 stop=$3 every=${4:-0.05} peak=0 r
    while [ ! -e "$stop" ]; do
        r=$(rss_kb "$pid" 2>/dev/null || echo 0)
        [ "$r" -gt "$peak" ] && peak=$r
        sleep "$every"
    done
    echo "$peak" > "$out"
}

# Converts wrk's latency (e.g. 812.00us, 1.23ms, 1.01s) to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# Runs wrk $runs times at one concurrency; prints the median requests/s, p50 and p99 (each
# the median over the runs), the slowest and fastest run's requests/s, and any timeouts or
# non-2xx answers (summed).
load() { # name url connections
    local name=$1 url=$2 c=$3 t i out rps="" p50="" p99="" timeouts=0 non2xx=0
    t=$(( c < 2 ? 1 : 2 ))
    for i in $(seq "$runs"); do
        out=$(wrk -t"$t" -c"$c" -d"${duration}s" --latency "$url")
        rps+="$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")"$'\n'
        p50+="$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"$'\n'
        p99+="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"$'\n'
        timeouts=$(( timeouts + $(awk '/Socket errors/ {print $NF; f=1} END {if (!f) print 0}' <<<"$out") ))
        non2xx=$(( non2xx + $(awk '/Non-2xx/ {print $NF; f=1} END {if (!f) print 0}' <<<"$out") ))
    done
    say "${name}_${c}c_rps $(median <<<"${rps%$'\n'}")"
    say "${name}_${c}c_rps_min $(sort -g <<<"${rps%$'\n'}" | head -1)"
    say "${name}_${c}c_rps_max $(sort -g <<<"${rps%$'\n'}" | tail -1)"
    say "${name}_${c}c_p50_ms $(median <<<"${p50%$'\n'}")"
    say "${name}_${c}c_p99_ms $(median <<<"${p99%$'\n'}")"
    say "${name}_${c}c_timeouts $timeouts"
    say "${name}_${c}c_non_2xx $non2xx"
}

# Writes a history as a replica with --rotate-size leaves it: $2 sealed segments of $3 bytes
# each (whole lines), a live file of $4 bytes, and an empty summary, for the journal at $1.
# The visits come from 40,000 addresses over 28 days of November 2026.
write_history() { # live_path segments segment_bytes live_bytes
    python3 - "$@" <<'PY'
import sys
path, n, seg, live = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lines = [
    f"2026-11-{1 + i // 1000 % 28:02d}T10:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}+03:00 - 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}\n"
    for i in range(40000)
]
block = "".join(lines).encode()
at = 0
def fill(name, size):
    # Each file takes the next lines, wrapping around, so files differ as real segments do.
    global at
    with open(name, "wb") as f:
        left = size
        while left > 0:
            chunk = block[at:at + left]
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                cut = block.find(b"\n", at) + 1 - at
                chunk = block[at:at + cut]
            else:
                chunk = chunk[:cut]
            f.write(chunk)
            left -= len(chunk)
            at = (at + len(chunk)) % len(block)
for i in range(1, n + 1):
    fill(f"{path}.{i:06d}", seg)
fill(path, live)
with open(path + ".summary", "w") as f:
    f.write("# folded through 0\n")
PY
}
