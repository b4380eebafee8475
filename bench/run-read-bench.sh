#!/usr/bin/env bash
# Read benchmark (issue 17): does a narrow read cost what it selects or what is stored? For each
# of 1 and 7 days (DAYS_LIST), a fresh `slo-gate serve` is given that many days of closed hours —
# per hour 20,000 spans, a 20-series gauge at one point a minute and 4 CPU profiles (a real
# pprof of the go-dev corpus) for each of 4 services — waits until everything is in compacted
# Parquet parts, then times over the last hour: trace by id, a TraceQL search, metric points,
# PromQL query_range and a flame graph. The table at the end compares each read's p50 across
# the stored days; pruned reads stay flat.
#
# Usage: bench/run-read-bench.sh [--no-build]
# Env:   DAYS_LIST ("1 7")  SPANS_PER_HOUR (20000)  RUNS (20)
#        CARGO_TARGET_DIR (~/.cache/slo-gate-target)
set -euo pipefail

BUILD=1
[[ ${1:-} == --no-build ]] && BUILD=0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/slo-gate-target}
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d -t slo-gate-read-bench.XXXXXX)
SERVER_PID=
stop_server() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "== $*" >&2; }

if [[ $BUILD == 1 ]]; then
  log "building release binaries"
  (cd "$ROOT" && cargo build --release --locked -p ci -p bench --bins)
fi

# Parts written every 5 s and compacted every 5 s, so the store settles quickly; retention
# keeps every day written.
cat >"$WORK/config.toml" <<'TOML'
retention = "30d"
[storage]
flush_interval = "5s"
[storage.compaction]
interval = "5s"
TOML

DAYS_LIST=${DAYS_LIST:-1 7}
echo "slo-gate reads over the last hour with N days stored (release build, $(nproc) cores)"
for DAYS in $DAYS_LIST; do
  rm -rf "$WORK/data"
  "$BIN/slo-gate" serve --config "$WORK/config.toml" --data-dir "$WORK/data" \
    --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 --api 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.err" &
  SERVER_PID=$!
  for _ in $(seq 100); do [[ -s $WORK/serve.out ]] && break; sleep 0.1; done
  LINE=$(head -1 "$WORK/serve.out")
  HTTP=$(sed -E 's/.*otlp-http=([^ ]+).*/\1/' <<<"$LINE")
  API=$(sed -E 's/.*api=([^ ]+).*/\1/' <<<"$LINE")
  echo
  echo "--- $DAYS day(s) stored"
  "$BIN/slo-gate-read-bench" --otlp-http "$HTTP" --api "$API" --pid "$SERVER_PID" --days "$DAYS" \
    --spans-per-hour "${SPANS_PER_HOUR:-20000}" --runs "${RUNS:-20}" \
    --profile "$ROOT/testdata/corpus/go-dev/fast/cpu-10s.pb.gz" | tee "$WORK/days-$DAYS.txt"
  echo "data directory: $(du -sh "$WORK/data" | cut -f1), $(find "$WORK/data" -name '*.parquet*' | wc -l) part files"
  stop_server
done

echo
echo "p50 of each read (ms) by days stored:"
python3 - "$WORK" $DAYS_LIST <<'PY'
import re, sys
work, days = sys.argv[1], sys.argv[2:]
rows = {}
for d in days:
    for line in open(f"{work}/days-{d}.txt"):
        m = re.match(r"(.{58}) p50\s+([\d.]+) ms", line)
        if m:
            rows.setdefault(m.group(1).strip(), {})[d] = float(m.group(2))
print(f"{'read':<58}" + "".join(f"{d + ' d':>10}" for d in days) + f"{'ratio':>8}")
for name, by in rows.items():
    ratio = by.get(days[-1], 0) / by[days[0]] if by.get(days[0]) else float("nan")
    print(f"{name:<58}" + "".join(f"{by.get(d, float('nan')):>10.1f}" for d in days) + f"{ratio:>8.2f}")
PY
