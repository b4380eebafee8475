#!/usr/bin/env bash
# Tempo API benchmark: 10,000,000 stored spans (100,000 traces of 100 spans over 20 services,
# one hour) written over OTLP/HTTP to `slo-gate serve`; then trace by id and TraceQL searches
# (limit 20) timed over HTTP as Grafana sends them, with the server's resident memory.
#
# Usage: bench/run-tempo-bench.sh [--no-build]
# Env:   TRACES (100000)  SPANS_PER_TRACE (100)  SERVICES (20)  RUNS (20)
#        SPAN_INDEX_CACHE_BYTES (335544320: the cache the README's table was measured with,
#        large enough to index all 10 M spans; the collector's default is 64 MiB)
#        CARGO_TARGET_DIR (~/.cache/slo-gate-target)
set -euo pipefail

BUILD=1
[[ ${1:-} == --no-build ]] && BUILD=0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/slo-gate-target}
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d -t slo-gate-tempo-bench.XXXXXX)
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
  --span-index-cache-bytes "${SPAN_INDEX_CACHE_BYTES:-335544320}" \
  >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
for _ in $(seq 100); do [[ -s $WORK/serve.out ]] && break; sleep 0.1; done
LINE=$(head -1 "$WORK/serve.out")
HTTP=$(sed -E 's/.*otlp-http=([^ ]+).*/\1/' <<<"$LINE")
API=$(sed -E 's/.*api=([^ ]+).*/\1/' <<<"$LINE")

echo "slo-gate Tempo API over $((${TRACES:-100000} * ${SPANS_PER_TRACE:-100})) spans (release build, $(nproc) cores)"
"$BIN/slo-gate-tempo-bench" --otlp-http "$HTTP" --api "$API" --pid "$SERVER_PID" \
  --traces "${TRACES:-100000}" --spans-per-trace "${SPANS_PER_TRACE:-100}" --services "${SERVICES:-20}" \
  --runs "${RUNS:-20}"
log "data directory: $(du -sh "$WORK/data" | cut -f1)"
