#!/bin/bash
# bench.sh -- measure faka-mock-gateway throughput with wrk (Debian: wrk).
#
# Usage: bench.sh /path/to/faka-mock-gateway [duration=5s] [connections=32]
# Starts the binary on port 0 (faults off, latency 0), then runs, each with
# one wrk thread and keep-alive: POST /charges with unique keys, GET
# /charges/{key} over the recorded keys, and GET /_health as a baseline.
# Prints wrk's summaries and the ledger's double_charges (must be 0).
set -eu

BIN=${1:?usage: $0 /path/to/faka-mock-gateway [duration] [connections]}
DUR=${2:-5s}
CONNS=${3:-32}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
PID=
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)"; exit 1; }
"$BIN" --port 0 >"$TMP/out" 2>"$TMP/err" &
PID=$!
for _ in $(seq 1 50); do grep -q '^listening ' "$TMP/out" && break; sleep 0.1; done
PORT=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$TMP/out")
[[ -n $PORT ]] || { echo "server did not start"; cat "$TMP/err"; exit 1; }
B=http://127.0.0.1:$PORT
TAG=r$$

echo "== POST /charges, unique keys ($CONNS connections, $DUR)"
wrk -t1 -c"$CONNS" -d"$DUR" -s "$HERE/bench_post.lua" "$B" -- "$TAG" | tee "$TMP/post"
KEYS=$(curl -s "$B/_ledger?entries=0" | grep -o '"keys":[0-9]*' | cut -d: -f2)
echo "== GET /charges/{key} over $KEYS recorded keys"
wrk -t1 -c"$CONNS" -d"$DUR" -s "$HERE/bench_get.lua" "$B" -- "$TAG" "$KEYS" | tee "$TMP/get"
echo "== GET /_health (baseline)"
wrk -t1 -c"$CONNS" -d"$DUR" "$B/_health" | tee "$TMP/health"

echo "== ledger summary"
T0=$(date +%s%N)
curl -s -o "$TMP/ledger" "$B/_ledger"
T1=$(date +%s%N)
grep -o '^{"keys":[0-9]*,"charges_succeeded":[0-9]*,"double_charges":[0-9]*' "$TMP/ledger"
echo "full /_ledger: $(wc -c <"$TMP/ledger") bytes in $(( (T1 - T0) / 1000000 )) ms"
echo "== req/s: POST $(awk '/Requests\/sec/ {print $2}' "$TMP/post")," \
     "GET $(awk '/Requests\/sec/ {print $2}' "$TMP/get")," \
     "health $(awk '/Requests\/sec/ {print $2}' "$TMP/health")"
kill -TERM "$PID"
wait "$PID"
PID=
