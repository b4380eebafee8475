#!/usr/bin/env bash
# `slo-gate check` benchmark: one service with 1 million stored SERVER spans (four routes, two
# versions of 500,000 spans each) in a collector's store; measures the wall time and peak RSS of
# `slo-gate check` against the running collector (--collector) and against its data directory
# once the collector is stopped (--data-dir: the check opens the store itself).
#
# Usage: bench/run-check-bench.sh [--no-build]
# Env:   SPANS_PER_VERSION (500000)  CARGO_TARGET_DIR (~/.cache/slo-gate-target)
set -euo pipefail

BUILD=1
[[ ${1:-} == --no-build ]] && BUILD=0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/slo-gate-target}
SPANS=${SPANS_PER_VERSION:-500000}
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d -t slo-gate-check-bench.XXXXXX)
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "== $*" >&2; }

if [[ $BUILD == 1 ]]; then
  log "building release binaries"
  (cd "$ROOT" && cargo build --release --locked -p ci -p bench --bins)
fi

log "starting the collector"
"$BIN/slo-gate" serve --data-dir "$WORK/data" --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 --api 127.0.0.1:0 \
  >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
for _ in $(seq 100); do [[ -s $WORK/serve.out ]] && break; sleep 0.1; done
LINE=$(head -1 "$WORK/serve.out")
HTTP=$(sed -E 's/.*otlp-http=([^ ]+).*/\1/' <<<"$LINE")
API=$(sed -E 's/.*api=([^ ]+).*/\1/' <<<"$LINE")

log "writing $((2 * SPANS)) spans"
"$BIN/slo-gate-spans" --otlp-http "$HTTP" --spans "$SPANS" --versions 1.0.0,1.1.0
for _ in $(seq 600); do
  ITEMS=$(curl -s "http://$API/api/v1/stats" | jq '.signals.traces.items // 0')
  [[ $ITEMS -ge $((2 * SPANS)) ]] && break
  sleep 0.5
done
log "stored: $(curl -s "http://$API/api/v1/stats" | jq -c '.signals.traces')"

mkdir -p "$WORK/contracts"
cat >"$WORK/contracts/bench.yaml" <<'YAML'
apiVersion: slo-gate/v1
kind: Contract
service: bench-checkout
environment: bench
gate:
  baseline: { version: "1.0.0" }
objectives:
  - name: checkout-latency
    latency: { percentile: p95, route: /api/checkout }
    fail: ["<= 1s", "<= +10%"]
  - name: cart-latency
    latency: { percentile: p99, route: /api/cart }
    fail: "<= +10%"
  - name: search-latency
    latency: { percentile: p95, route: /api/search }
    fail: "<= +10%"
  - name: errors
    error_rate: {}
    fail: ["< 1%", "<= +50%"]
  - name: throughput
    throughput: {}
    fail: ">= 1/s"
YAML

measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$BIN/slo-gate" check --contracts "$WORK/contracts" \
    --service bench-checkout --environment bench --candidate 1.1.0 --no-record "$@" >"$WORK/check.out" 2>"$WORK/check.err" || true
  read -r WALL RSS_KB <"$WORK/time"
  printf '%-32s wall %6.2f s   peak RSS %6d MiB   %s\n' "$label" "$WALL" $((RSS_KB / 1024)) "$(tail -1 "$WORK/check.out")"
}

echo "slo-gate check over $((2 * SPANS)) stored spans (release build, $(nproc) cores)"
measure "--collector (check process)" --collector "http://$API"
measure "--collector (again, warm)" --collector "http://$API"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
measure "--data-dir (store in-process)" --data-dir "$WORK/data"
