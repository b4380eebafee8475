#!/usr/bin/env bash
# Pyroscope query benchmark (issue 13): a fresh `slo-gate serve` is given 2,880 CPU profiles
# (20 services × 2 hours, one profile per service every 50 s, each a copy of one of the go-dev
# corpus' 10 s CPU profiles with its values redrawn, pushed through Pyroscope's
# PusherService/Push), then
# `slo-gate-pyroscope-bench` times Grafana's Connect calls — SelectMergeStacktraces for one
# service over one hour (target < 300 ms), SelectSeries at 15 s steps (target < 200 ms) — twice:
# right after the push (head and freshly flushed parts), and after a restart, once everything is
# in Parquet parts and nothing is decoded in memory (the first call of each query decodes the
# parts it reads; the next ones find them in the query cache).
#
# Usage: bench/run-pyroscope-bench.sh [--no-build]
# Env:   RUNS (30)  SERVICES (20)  HOURS (2)  INTERVAL (50)  CARGO_TARGET_DIR (~/.cache/slo-gate-target)
set -euo pipefail

BUILD=1
[[ ${1:-} == --no-build ]] && BUILD=0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORPUS=$ROOT/testdata/corpus/go-dev
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/slo-gate-target}
BIN=$CARGO_TARGET_DIR/release
RUNS=${RUNS:-30}
# 2,880 profiles: 20 services over 2 hours, one profile per service every 50 s.
SERVICES=${SERVICES:-20}
HOURS=${HOURS:-2}
INTERVAL=${INTERVAL:-50}
WORK=$(mktemp -d -t slo-gate-pyroscope-bench.XXXXXX)
SERVER=
cleanup() { [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

log() { echo "== $*" >&2; }

if [[ $BUILD == 1 ]]; then
  log "building release binaries"
  (cd "$ROOT" && cargo build --release --locked -p ci --bin slo-gate -p bench --bin slo-gate-pyroscope-bench)
fi

# Flush the head every 10 s so that, after the push, the profiles are in Parquet parts.
printf '[storage]\nflush_interval = "10s"\n' > "$WORK/slo-gate.toml"
start_server() {
  : > "$WORK/serve.out"
  "$BIN/slo-gate" serve --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 --api 127.0.0.1:0 \
    --data-dir "$WORK/data" --config "$WORK/slo-gate.toml" > "$WORK/serve.out" 2> "$WORK/serve.err" &
  SERVER=$!
  for _ in $(seq 100); do grep -q 'api=' "$WORK/serve.out" 2>/dev/null && break; sleep 0.1; done
  API=$(grep -o 'api=[0-9.:]*' "$WORK/serve.out" | head -1 | cut -d= -f2)
  [[ -n $API ]] || { cat "$WORK/serve.err" >&2; exit 1; }
  until curl -fs "http://$API/readyz" > /dev/null; do sleep 0.1; done
  log "slo-gate serve on $API"
}
start_server

PROFILES=("$CORPUS/fast/cpu-10s.pb.gz" "$CORPUS/slow/cpu-10s.pb.gz" "$CORPUS/fast-rerun/cpu-10s.pb.gz")
END=$(( $(date +%s) / INTERVAL * INTERVAL ))
ARGS=(--api "$API" --end "$END" --runs "$RUNS" --services "$SERVICES" --hours "$HOURS" --interval "$INTERVAL")
log "push $SERVICES services x $HOURS h, one profile every $INTERVAL s; query while they are flushed"
"$BIN/slo-gate-pyroscope-bench" "${ARGS[@]}" "${PROFILES[@]}"
log "waiting for the head to be flushed to parts"
for _ in $(seq 60); do
  sleep 1
  IN_HEAD=$(curl -fs "http://$API/api/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["signals"]["profiles"]["in_head"])')
  [[ $IN_HEAD == 0 ]] && break
done
curl -fs "http://$API/api/v1/stats" | python3 -c 'import json,sys; p=json.load(sys.stdin)["signals"]["profiles"]; print("profile rows:", p["items"], "in head:", p["in_head"], "parts:", p["parts"])'
log "restart (nothing decoded in memory), query the parts: first call cold, then warm"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
start_server
ARGS[1]=$API
"$BIN/slo-gate-pyroscope-bench" "${ARGS[@]}" --phase query "${PROFILES[@]}"
