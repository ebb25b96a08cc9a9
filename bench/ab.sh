#!/usr/bin/env bash
# A/B of two visit-server binaries on durable `GET /` at 64 connections, alternating, so that
# the machine's drift falls on both alike.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY        # ROUNDS=3 DURATION=5 by default
#
# Each round starts each binary on a fresh journal under target/, warms it for 2 s with wrk,
# then measures req/s and p99 for $DURATION s. Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bench/ab.sh OLD_BINARY NEW_BINARY" >&2; exit 2; }
bins=("$1" "$2")
rounds=${ROUNDS:-3}
duration=${DURATION:-5}
command -v wrk >/dev/null || { apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null; }
work=$(mktemp -d "$PWD/target/ab.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for round in $(seq "$rounds"); do
    for i in 0 1; do
        rm -rf "${work:?}/$i"
        "${bins[$i]}" --listen "127.0.0.1:$port" --file "$work/$i/visits.txt" >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 100); do curl -fs -o /dev/null "127.0.0.1:$port/livez" && break; sleep 0.05; done
        wrk -t2 -c64 -d2s "http://127.0.0.1:$port/" >/dev/null
        out=$(wrk -t2 -c64 -d"${duration}s" --latency "http://127.0.0.1:$port/")
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        echo "round $round ${bins[$i]} rps=$rps p99=$p99 load=$(cut -d' ' -f1 /proc/loadavg)"
        kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    done
done
