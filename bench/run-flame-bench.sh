#!/usr/bin/env bash
# Flame-graph merge benchmark (issue 3): 1,000 CPU profiles of a real Go program (the go-dev
# corpus' 10 s CPU profiles of its JSON service, each file with its sample counts redrawn, see
# bench/src/bin/flame_bench.rs) merged into one flame graph by `slo-gate-flame-bench merge` —
# the code path of `slo-gate flame render --folded` (read, gunzip, decode, fold, merge, write
# folded stacks), in a binary without the collector so the benchmark builds quickly — and by
# `go tool pprof -proto`, three times each in the same run (both use every core: pprof fetches
# its sources concurrently, slo-gate decodes and folds on one thread per core); plus single-core
# decoding speed in MB/s of uncompressed pprof and the whole merge on one core.
#
# Usage: bench/run-flame-bench.sh [--no-build]
# Env:   PROFILES (1000)  CARGO_TARGET_DIR (~/.cache/slo-gate-target)
set -euo pipefail

BUILD=1
[[ ${1:-} == --no-build ]] && BUILD=0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORPUS=$ROOT/testdata/corpus/go-dev
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/slo-gate-target}
COUNT=${PROFILES:-1000}
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d -t slo-gate-flame-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

log() { echo "== $*" >&2; }
command -v go >/dev/null || { echo "go is missing: apt-get install -y golang-go" >&2; exit 1; }

if [[ $BUILD == 1 ]]; then
  log "building release binaries"
  (cd "$ROOT" && cargo build --release --locked -p bench --bin slo-gate-flame-bench)
fi

"$BIN/slo-gate-flame-bench" generate --count "$COUNT" --out "$WORK/profiles" \
  "$CORPUS/fast/cpu-10s.pb.gz" "$CORPUS/slow/cpu-10s.pb.gz" "$CORPUS/fast-rerun/cpu-10s.pb.gz"
FILES=("$WORK"/profiles/*.pb.gz)
log "$(du -sh "$WORK/profiles" | cut -f1) in ${#FILES[@]} files"

# `go tool pprof` builds itself on first use; do that outside the timings.
go tool pprof -proto "${FILES[0]}" > /dev/null 2>&1

for run in 1 2 3; do
  "$BIN/slo-gate-flame-bench" decode "$WORK/profiles"
  /usr/bin/time -f "slo-gate merge (flame render --folded): %e s wall, %U s user + %S s sys, %M KiB peak" \
    "$BIN/slo-gate-flame-bench" merge -o "$WORK/merged.folded" "${FILES[@]}"
  /usr/bin/time -o "$WORK/go.time" -f "go tool pprof -proto:                    %e s wall, %U s user + %S s sys, %M KiB peak" \
    go tool pprof -proto "${FILES[@]}" > "$WORK/merged.pb.gz" 2> "$WORK/pprof.err" \
    || { cat "$WORK/pprof.err" >&2; exit 1; }
  cat "$WORK/go.time"
done
