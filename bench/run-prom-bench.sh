#!/usr/bin/env bash
# Prometheus API benchmark: slo-gate against Prometheus 2.42 (/usr/bin/prometheus). The same
# 10,000 series over 6 hours at 15 s (14.4 M samples: request counters with resets, a classic
# latency histogram, gauges) are written to a fresh `slo-gate serve` and a fresh Prometheus by
# remote write 1.0 (each server's ingest wall time, CPU time and peak RSS); slo-gate is then
# restarted on its data directory, so the queries read what it stored; then Grafana's
# `query_range` over the 6 hours (`sum by (route) (rate(...[5m]))` and a `histogram_quantile`,
# steps 15 s and 60 s) is timed on both and their answers compared point by point. Exits non-zero
# when an answer differs. Loopback only.
#
# Usage: bench/run-prom-bench.sh [--no-build]
# Env:   SERIES (10000)  HOURS (6)  RUNS (5)  STEPS_PER_REQUEST (4)  IN_FLIGHT (4)
#        BIN (directory holding slo-gate and slo-gate-prom-bench; default $CARGO_TARGET_DIR/release)
#        PROMETHEUS (/usr/bin/prometheus)  CARGO_TARGET_DIR (~/.cache/slo-gate-target)
# A quick run: SERIES=1000 HOURS=1 bench/run-prom-bench.sh
set -euo pipefail

BUILD=1
[[ ${1:-} == --no-build ]] && BUILD=0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/slo-gate-target}
BIN=${BIN:-$CARGO_TARGET_DIR/release}
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
SERIES=${SERIES:-10000}
HOURS=${HOURS:-6}
WORK=$(mktemp -d -t slo-gate-prom-bench.XXXXXX)
SERVER=
PROM=
cleanup() {
  for pid in $SERVER $PROM; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "== $*" >&2; }

if [[ $BUILD == 1 ]]; then
  log "building release binaries"
  (cd "$ROOT" && cargo build --release --locked -p ci --bin slo-gate -p bench --bin slo-gate-prom-bench)
fi

# Flush the head every 10 s, so that after the ingest everything can be in Parquet parts.
printf '[storage]\nflush_interval = "10s"\n' >"$WORK/slo-gate.toml"
start_slo_gate() {
  : >"$WORK/serve.out"
  "$BIN/slo-gate" serve --data-dir "$WORK/data" --config "$WORK/slo-gate.toml" \
    --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 --api 127.0.0.1:0 >"$WORK/serve.out" 2>>"$WORK/serve.err" &
  SERVER=$!
  for _ in $(seq 100); do [[ -s $WORK/serve.out ]] && break; sleep 0.1; done
  API=$(head -1 "$WORK/serve.out" | sed -nE 's/.*api=([^ ]+).*/\1/p')
  [[ -n $API ]] || { cat "$WORK/serve.err" >&2; exit 1; }
  # Ready once the write-ahead log is replayed.
  for _ in $(seq 1200); do curl -fs "http://$API/readyz" >/dev/null && break; sleep 0.1; done
  log "slo-gate serve on $API (pid $SERVER)"
}

# Prometheus: no scrape configs, so it holds only what is written to it.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n' >"$WORK/prometheus.yml"
"$PROMETHEUS" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
  --web.listen-address="127.0.0.1:$PORT" --web.enable-remote-write-receiver >"$WORK/prometheus.log" 2>&1 &
PROM=$!
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$PORT/-/ready" >/dev/null && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$PORT/-/ready" >/dev/null || { tail -20 "$WORK/prometheus.log" >&2; exit 1; }
log "$("$PROMETHEUS" --version 2>&1 | head -1) on 127.0.0.1:$PORT (pid $PROM)"

start_slo_gate
END=$(($(date +%s) / 3600 * 3600))
ARGS=(--prometheus "http://127.0.0.1:$PORT" --prometheus-pid "$PROM" --series "$SERIES" --hours "$HOURS"
  --end "$END" --runs "${RUNS:-5}" --steps-per-request "${STEPS_PER_REQUEST:-4}" --in-flight "${IN_FLIGHT:-4}"
  --state "$WORK/ingest.json")
echo "slo-gate against Prometheus: $SERIES series over $HOURS h ($(basename "$BIN") build, $(nproc) cores)"
"$BIN/slo-gate-prom-bench" --phase ingest --slo-gate "http://$API" --slo-gate-pid "$SERVER" "${ARGS[@]}"

log "waiting for slo-gate's head to be flushed to parts"
for _ in $(seq 120); do
  IN_HEAD=$(curl -fs "http://$API/api/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["signals"]["metrics"]["in_head"])' || echo "?")
  [[ $IN_HEAD == 0 ]] && break
  sleep 1
done
log "metric rows still in the head: $IN_HEAD; restarting slo-gate on its data directory"
kill "$SERVER"
wait "$SERVER" 2>/dev/null || true
start_slo_gate

STATUS=0
"$BIN/slo-gate-prom-bench" --phase query --slo-gate "http://$API" --slo-gate-pid "$SERVER" "${ARGS[@]}" || STATUS=$?
log "data on disk: slo-gate $(du -sh "$WORK/data" | cut -f1), Prometheus $(du -sh "$WORK/prometheus" | cut -f1)"
exit "$STATUS"
