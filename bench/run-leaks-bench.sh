#!/usr/bin/env bash
# Goroutine-leak detection benchmark: `slo-gate-leaks-bench` builds its inputs in memory (a
# gzipped pprof goroutine profile of 1,000,000 goroutines over 10,000 stacks; 1,000 snapshots of
# 300 blocking sites) and prints the wall time and peak RSS of each phase. Runs it RUNS times.
#
# Usage: bench/run-leaks-bench.sh [--no-build] [slo-gate-leaks-bench flags...]
# Env:   RUNS (3)  CARGO_TARGET_DIR (~/.cache/slo-gate-target)
set -euo pipefail

BUILD=1
if [[ ${1:-} == --no-build ]]; then BUILD=0; shift; fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/slo-gate-target}
RUNS=${RUNS:-3}

if [[ $BUILD == 1 ]]; then
  echo "== building slo-gate-leaks-bench (release)" >&2
  (cd "$ROOT" && cargo build --release --locked -p bench --bin slo-gate-leaks-bench)
fi

echo "slo-gate-leaks-bench (release build, $(nproc) cores, $(uname -r))"
for run in $(seq "$RUNS"); do
  echo "-- run $run of $RUNS"
  "$CARGO_TARGET_DIR/release/slo-gate-leaks-bench" "$@"
done
