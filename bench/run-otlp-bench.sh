#!/usr/bin/env bash
# OTLP trace ingestion benchmark: slo-gate against rotel (a Rust OTLP
# collector, blackhole exporter), same load generator, same machine, loopback.
#
# Usage: bench/run-otlp-bench.sh [--only slo-gate|rotel] [--no-build] [--span-metrics-off] [--tls]
#                                 [--replay] [--profiling]
# Env:   DURATION (s, 20)  CONNECTIONS (16)  SPANS_PER_REQUEST (512)
#        LOAD_THREADS (1)  CARGO_TARGET_DIR (~/.cache/slo-gate-target)
#        SLO_GATE (path of the slo-gate binary; default: the release build)
#        FLUSH_WAIT (s, 90: how long to wait for slo-gate's head to reach Parquet)
#        ROUNDS (3: how many times each server and transport is measured)
#
# Every request carries fresh trace and span ids and timestamps near now
# (`slo-gate-load --fresh`), for both servers: replaying one request byte for
# byte flatters a columnar store, whose dictionaries then compress the ids to
# nothing. --replay sends the one request again and again, as before.
# After each slo-gate run the script waits until the head is flushed to
# Parquet (/api/v1/stats: traces in_head = 0), then reports the bytes on disk
# per span (trace parts alone, and the whole data directory with its WAL and
# span metrics) against the gzip-compressed OTLP protobuf of the same spans,
# the number of trace parts, and spans per server CPU-second counting the
# CPU spent until everything was flushed.
# --profiling builds and runs the `profiling` cargo profile (release with line
# tables, which the shipped release binary does not carry), for `perf record
# -p PID` and `perf report` with source lines.
#
# Each (server, transport) pair gets a freshly started server, so VmHWM is
# the peak of that run alone and one transport's run does not warm the other.
# The pairs run ROUNDS times, interleaved (slo-gate gRPC, rotel gRPC, slo-gate
# HTTP, rotel HTTP, then again), because one run of a server moves by up to 2x
# on a shared 2-core machine; the comparison is of the medians, and every run
# is listed with its round.
# The load generator runs on the same 2 cores as the server; it is kept to
# LOAD_THREADS runtime threads and its own CPU is reported beside the server's.
# The headline number is spans per server CPU-second, which is less sensitive
# to that sharing than spans per second. Note: rotel's blackhole exporter
# drops everything, while slo-gate stores what it accepts. --span-metrics-off
# also measures slo-gate with `[span_metrics] enabled = false` (and no
# analysis), as `slo-gate-nospanmetrics`, to show what span metrics cost.
# --tls also measures slo-gate with mTLS on every listener (`serve --tls-cert
# --tls-key --tls-client-ca --tls-client-auth required`, throw-away
# certificates from `slo-gate certs init`, a client certificate with a SPIFFE
# ID), as `slo-gate-mtls`, and prints its spans per server CPU-second against
# plaintext on the same run.
set -euo pipefail

ONLY=all
BUILD=1
SPAN_METRICS_OFF=0
TLS=0
IDS=--fresh
PROFILE=release
while [[ $# -gt 0 ]]; do
  case $1 in
    --only) ONLY=${2:?--only needs slo-gate or rotel}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --span-metrics-off) SPAN_METRICS_OFF=1; shift ;;
    --tls) TLS=1; shift ;;
    --replay) IDS=--replay; shift ;;
    --profiling) PROFILE=profiling; shift ;;
    -h|--help) sed -n '2,44p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case $ONLY in all|slo-gate|rotel) ;; *) echo "--only takes slo-gate or rotel" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/slo-gate-target}
CACHE=$HOME/.cache/slo-gate-bench
ROTEL_VERSION=0.0.1a15
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-16}
SPANS_PER_REQUEST=${SPANS_PER_REQUEST:-512}
LOAD_THREADS=${LOAD_THREADS:-1}
FLUSH_WAIT=${FLUSH_WAIT:-90}
ROUNDS=${ROUNDS:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive whole number, not '$ROUNDS'" >&2; exit 2; }
ROUND=1
SLO_GATE=${SLO_GATE:-$CARGO_TARGET_DIR/$PROFILE/slo-gate}
LOAD=$CARGO_TARGET_DIR/$PROFILE/slo-gate-load
# slo-gate-load replays by default; it has no --replay flag.
LOAD_IDS=()
if [[ $IDS == --fresh ]]; then LOAD_IDS=(--fresh); fi
WORK=$(mktemp -d -t slo-gate-bench.XXXXXX)

SERVER_PID=
# Extra flags of the current run's server, load generator and readiness probe
# (the TLS files of the mTLS runs), and the API's scheme.
SERVE_EXTRA=()
LOAD_EXTRA=()
CURL_EXTRA=()
API_SCHEME=http
cleanup() {
  if [[ -n $SERVER_PID ]]; then stop_server; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# stop_server: TERM, up to 10 s to exit, then KILL; only the PID we started.
stop_server() {
  local pid=$SERVER_PID
  SERVER_PID=
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# wait_until NAME LOGFILE COMMAND...: retries COMMAND for 30 s while the server lives.
wait_until() {
  local name=$1 logfile=$2
  shift 2
  for _ in $(seq 300); do
    if "$@" 2>/dev/null; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "$name exited before it was ready; its log:" >&2
      tail -n 30 "$logfile" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "$name not ready after 30 s; its log:" >&2
  tail -n 30 "$logfile" >&2
  return 1
}

http_ok() { curl -fsS -o /dev/null --max-time 1 "${CURL_EXTRA[@]}" "$1"; }
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1"); }

# run_load NAME TRANSPORT ADDR: one measured run against the running server.
run_load() {
  local name=$1 transport=$2 addr=$3
  log "round $ROUND/$ROUNDS, $name $transport: $CONNECTIONS connections x ${DURATION}s, $SPANS_PER_REQUEST spans/request"
  "$LOAD" "--$transport" "$addr" --pid "$SERVER_PID" --json \
    --duration "$DURATION" --connections "$CONNECTIONS" \
    --spans-per-request "$SPANS_PER_REQUEST" --threads "$LOAD_THREADS" \
    "${LOAD_IDS[@]}" "${LOAD_EXTRA[@]}" >"$WORK/$name-$transport-r$ROUND.json"
}

# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks.
cpu_ticks() { awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }

# traces_stats URL: the traces line of /api/v1/stats as "in_head in_parts parts".
traces_stats() {
  curl -fsS --max-time 5 "${CURL_EXTRA[@]}" "$1" |
    python3 -c 'import json, sys; t = json.load(sys.stdin)["signals"]["traces"]; print(t["in_head"], t["in_parts"], t["parts"])'
}

# storage_report NAME TRANSPORT API DATA CPU_TICKS_BEFORE: waits up to FLUSH_WAIT s
# for the head to reach Parquet, then writes NAME-TRANSPORT.storage.json: spans in
# parts, trace parts and their bytes, the data directory's bytes, and the server's
# CPU seconds from before the load until then.
storage_report() {
  local name=$1 transport=$2 api=$3 data=$4 before=$5 stats in_head=-1 in_parts=0 parts=0 waited=0
  local url="$API_SCHEME://127.0.0.1:$api/api/v1/stats"
  while ((waited < FLUSH_WAIT * 2)); do
    if stats=$(traces_stats "$url"); then
      read -r in_head in_parts parts <<<"$stats"
      if [[ $in_head == 0 ]]; then break; fi
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  local flushed=true
  if [[ $in_head != 0 ]]; then
    flushed=false
    log "$name $transport: $in_head spans still in the head after ${FLUSH_WAIT}s; sizes are of what was flushed"
  fi
  local cpu_ticks_used=$(($(cpu_ticks "$SERVER_PID") - before))
  local part_bytes data_bytes
  part_bytes=$(find "$data/parts" -path '*/traces/*' -type f -name '*.parquet' -printf '%s\n' 2>/dev/null |
    awk '{s += $1} END {print s + 0}')
  data_bytes=$(du -sb "$data" | cut -f1)
  printf '{"flushed": %s, "flush_wait_seconds": %s, "spans_in_parts": %s, "spans_in_head": %s, "trace_parts": %s, "trace_part_bytes": %s, "data_dir_bytes": %s, "server_cpu_seconds_until_flushed": %s}\n' \
    "$flushed" "$((waited / 2))" "$in_parts" "$in_head" "$parts" "$part_bytes" "$data_bytes" \
    "$(awk -v t="$cpu_ticks_used" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}')" \
    >"$WORK/$name-$transport-r$ROUND.storage.json"
}

# bench_slo_gate TRANSPORT [NAME CONFIG]: one run of slo-gate (named NAME in the
# results, started with --config CONFIG when given).
bench_slo_gate() {
  local transport=$1 name=${2:-slo-gate} config=${3:-} grpc http api data
  local extra=("${SERVE_EXTRA[@]}")
  if [[ -n $config ]]; then extra+=(--config "$config"); fi
  grpc=$(free_port) http=$(free_port) api=$(free_port)
  data=$(mktemp -d -p "$WORK" data.XXXXXX)
  "$SLO_GATE" serve --otlp-grpc "127.0.0.1:$grpc" --otlp-http "127.0.0.1:$http" \
    --api "127.0.0.1:$api" --data-dir "$data" "${extra[@]}" >"$WORK/$name-$transport-r$ROUND.log" 2>&1 &
  SERVER_PID=$!
  wait_until "$name" "$WORK/$name-$transport-r$ROUND.log" http_ok "$API_SCHEME://127.0.0.1:$api/readyz"
  local before
  before=$(cpu_ticks "$SERVER_PID")
  if [[ $transport == grpc ]]; then
    run_load "$name" grpc "127.0.0.1:$grpc"
  else
    run_load "$name" http "127.0.0.1:$http"
  fi
  storage_report "$name" "$transport" "$api" "$data" "$before"
  du -sh "$data" | awk -v n="$name" -v t="$transport" '{print "== " n " " t ": data dir " $1}' >&2
  stop_server
  rm -rf "$data"
}

# fetch_rotel: prints the path of the rotel-agent binary from the cached wheel.
fetch_rotel() {
  local dir=$CACHE/rotel-$ROTEL_VERSION wheel bin
  mkdir -p "$CACHE"
  bin=$(find "$dir" -type f \( -name rotel-agent -o -name rotel \) 2>/dev/null | head -n 1)
  if [[ -z $bin ]]; then
    wheel=$(find "$CACHE" -maxdepth 1 -name "rotel-$ROTEL_VERSION-*.whl" | head -n 1)
    if [[ -z $wheel ]]; then
      log "downloading rotel $ROTEL_VERSION wheel into $CACHE"
      # The wheels are per CPython version; pin one if this Python has none.
      pip download "rotel==$ROTEL_VERSION" --no-deps -d "$CACHE" >&2 ||
        pip download "rotel==$ROTEL_VERSION" --no-deps --only-binary=:all: \
          --python-version 3.11 --platform manylinux_2_34_x86_64 -d "$CACHE" >&2
      wheel=$(find "$CACHE" -maxdepth 1 -name "rotel-$ROTEL_VERSION-*.whl" | head -n 1)
    fi
    [[ -n $wheel ]] || { echo "no rotel wheel in $CACHE" >&2; return 1; }
    rm -rf "$dir"
    unzip -q -o "$wheel" -d "$dir"
    bin=$(find "$dir" -type f \( -name rotel-agent -o -name rotel \) | head -n 1)
    [[ -n $bin ]] || { echo "no rotel binary inside $wheel" >&2; return 1; }
  fi
  chmod +x "$bin"
  echo "$bin"
}

bench_rotel() {
  local transport=$1 rotel=$2 grpc http
  grpc=$(free_port) http=$(free_port)
  "$rotel" start --exporter blackhole \
    --otlp-grpc-endpoint "127.0.0.1:$grpc" --otlp-http-endpoint "127.0.0.1:$http" \
    --pid-file "$WORK/rotel-$transport-r$ROUND.pid" --log-file "$WORK/rotel-agent-$transport-r$ROUND.log" \
    >"$WORK/rotel-$transport-r$ROUND.log" 2>&1 &
  SERVER_PID=$!
  wait_until rotel "$WORK/rotel-$transport-r$ROUND.log" tcp_open "$grpc"
  wait_until rotel "$WORK/rotel-$transport-r$ROUND.log" tcp_open "$http"
  if [[ $transport == grpc ]]; then
    run_load rotel grpc "127.0.0.1:$grpc"
  else
    run_load rotel http "127.0.0.1:$http"
  fi
  stop_server
}

cd "$ROOT"
if [[ $BUILD == 0 ]]; then
  log "not building; using $LOAD"
elif [[ $ONLY == rotel ]]; then
  log "building slo-gate-load ($PROFILE)"
  cargo build --profile "$PROFILE" -p bench --bin slo-gate-load
else
  log "building slo-gate and slo-gate-load ($PROFILE)"
  cargo build --profile "$PROFILE" -p ci --bin slo-gate -p bench --bin slo-gate-load
fi
log "load: ${IDS#--} ids; binaries: $PROFILE"

if [[ $ONLY != slo-gate ]]; then
  ROTEL=$(fetch_rotel)
  log "rotel: $("$ROTEL" version 2>/dev/null || echo "$ROTEL_VERSION")"
fi
if [[ $TLS == 1 ]]; then
  certs=$WORK/certs
  "$SLO_GATE" certs init --dir "$certs" --days 1 --ip 127.0.0.1 --client spiffe://bench.example/load >&2
fi
printf '[span_metrics]\nenabled = false\n[analysis]\nenabled = false\n' >"$WORK/no-span-metrics.toml"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  for transport in grpc http; do
    if [[ $ONLY != rotel ]]; then bench_slo_gate "$transport"; fi
    if [[ $ONLY != slo-gate ]]; then bench_rotel "$transport" "$ROTEL"; fi
    if [[ $ONLY != rotel && $SPAN_METRICS_OFF == 1 ]]; then
      bench_slo_gate "$transport" slo-gate-nospanmetrics "$WORK/no-span-metrics.toml"
    fi
    if [[ $ONLY != rotel && $TLS == 1 ]]; then
      SERVE_EXTRA=(--tls-cert "$certs/server.pem" --tls-key "$certs/server-key.pem"
        --tls-client-ca "bench.example=$certs/ca.pem" --tls-client-auth required)
      LOAD_EXTRA=(--tls-ca "$certs/ca.pem" --tls-cert "$certs/load.pem" --tls-key "$certs/load-key.pem")
      CURL_EXTRA=(--cacert "$certs/ca.pem" --cert "$certs/load.pem" --key "$certs/load-key.pem")
      API_SCHEME=https
      bench_slo_gate "$transport" slo-gate-mtls
      SERVE_EXTRA=() LOAD_EXTRA=() CURL_EXTRA=() API_SCHEME=http
    fi
  done
done

python3 - "$WORK" <<'EOF'
import json, pathlib, statistics, sys

work = pathlib.Path(sys.argv[1])
# Keyed by (server, transport, round); files are NAME-TRANSPORT-rROUND[.storage].json.
runs, storage = {}, {}
for path in sorted(work.glob("*-r*.json")):
    stem = path.name.removesuffix(".json")
    target = runs
    if stem.endswith(".storage"):
        stem, target = stem.removesuffix(".storage"), storage
    server, transport, rnd = stem.rsplit("-", 2)
    target[(server, transport, int(rnd[1:]))] = json.loads(path.read_text())

def num(value, fmt):
    return "-" if value is None else format(value, fmt)

def table(cols, rows):
    widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print()
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    print()

def order(key):
    server, transport, rnd = key
    return (transport, server, rnd)

rows = []
for key in sorted(runs, key=order):
    (server, transport, rnd), r = key, runs[key]
    rows.append([server, transport, str(rnd), r.get("ids", "replay"), num(r["spans_per_second"], ",.0f"),
                 num(r["server_cpu_seconds"], ".2f"), num(r["spans_per_server_cpu_second"], ",.0f"),
                 num(r["server_peak_rss_mib"], ".1f"), num(r["server_max_rss_during_run_mib"], ".1f"),
                 num(r["latency_p50_ms"], ".2f"), num(r["latency_p99_ms"], ".2f"),
                 num(r["client_cpu_seconds"], ".2f"), num(r.get("client_cpu_us_per_request"), ",.0f"),
                 str(r["requests_failed"])])
print("Every run")
table(["server", "transport", "round", "ids", "spans/s", "server cpu-s", "spans/cpu-s", "VmHWM MiB", "max RSS MiB",
       "p50 ms", "p99 ms", "client cpu-s", "client us/req", "failed"], rows)

# Storage: what the spans cost on disk once flushed, against the same spans as an OTLP
# exporter sends them gzip-compressed (one request of the run's kind, gzip level 6).
rows = []
for key in sorted(storage, key=order):
    (server, transport, rnd), st = key, storage[key]
    r = runs.get(key)
    spans = st["spans_in_parts"]
    gz = r["request_gzip_bytes"] / r["spans_per_request"] if r and r.get("request_gzip_bytes") else None
    part = st["trace_part_bytes"] / spans if spans else None
    data = st["data_dir_bytes"] / spans if spans else None
    flushed_rate = spans / st["server_cpu_seconds_until_flushed"] if st["server_cpu_seconds_until_flushed"] else None
    rows.append([server, transport, str(rnd), f"{spans:,}",
                 "yes" if st["flushed"] else f"no ({st['spans_in_head']:,} in head)",
                 f"{st['flush_wait_seconds']}", str(st["trace_parts"]), num(part, ".1f"), num(data, ".1f"),
                 num(gz, ".1f"), num(part / gz if part and gz else None, ".2f"),
                 num(st["server_cpu_seconds_until_flushed"], ".2f"), num(flushed_rate, ",.0f")])
if rows:
    print("Bytes on disk once flushed")
    table(["server", "transport", "round", "spans in parts", "flushed", "wait s", "trace parts", "part B/span",
           "data dir B/span", "OTLP gzip B/span", "parts/gzip", "cpu-s to flushed", "spans/cpu-s flushed"], rows)

def values(server, transport, field):
    return [r[field] for (s, t, _), r in sorted(runs.items()) if (s, t) == (server, transport) and r.get(field)]

def median(server, transport, field):
    v = values(server, transport, field)
    return statistics.median(v) if v else None

RATE = "spans_per_server_cpu_second"
RSS = "server_peak_rss_mib"

# The medians over the rounds, with the range, per server and transport.
rows = []
for server, transport in sorted({(s, t) for s, t, _ in runs}, key=lambda p: (p[1], p[0])):
    rate, rss = values(server, transport, RATE), values(server, transport, RSS)
    failed = sum(r["requests_failed"] for (s, t, _), r in runs.items() if (s, t) == (server, transport))
    rows.append([server, transport, str(len(rate)), num(median(server, transport, RATE), ",.0f"),
                 f"{min(rate):,.0f}-{max(rate):,.0f}" if rate else "-",
                 num(median(server, transport, RSS), ".1f"), num(max(rss) if rss else None, ".1f"), str(failed)])
print("Medians over the rounds")
table(["server", "transport", "runs", "median spans/cpu-s", "range", "median VmHWM MiB", "max VmHWM MiB",
       "failed (all runs)"], rows)

# Against rotel: the ratio of the medians, and each round's own ratio (the two runs of a
# round are next to each other in time, so they share the machine's state).
rows = []
for transport in ("grpc", "http"):
    ours, peer = median("slo-gate", transport, RATE), median("rotel", transport, RATE)
    if not (ours and peer):
        continue
    paired = []
    for (s, t, n), r in sorted(runs.items()):
        other = runs.get(("rotel", transport, n))
        if (s, t) == ("slo-gate", transport) and other and r.get(RATE) and other.get(RATE):
            paired.append(r[RATE] / other[RATE])
    ours_rss, peer_rss = median("slo-gate", transport, RSS), median("rotel", transport, RSS)
    rows.append([transport, num(ours, ",.0f"), num(peer, ",.0f"), num(ours / peer, ".2f"),
                 " ".join(f"{p:.2f}" for p in paired) or "-", num(ours_rss, ".1f"), num(peer_rss, ".1f"),
                 num(ours_rss / peer_rss if ours_rss and peer_rss else None, ".2f")])
if rows:
    print("slo-gate against rotel, medians (ratio = slo-gate / rotel; spans/cpu-s: higher is better, RSS: lower is better)")
    table(["transport", "slo-gate spans/cpu-s", "rotel spans/cpu-s", "ratio", "ratio per round",
           "slo-gate VmHWM MiB", "rotel VmHWM MiB", "ratio"], rows)
for transport in ("grpc", "http"):
    plain, tls = median("slo-gate", transport, RATE), median("slo-gate-mtls", transport, RATE)
    if plain and tls:
        ratio = tls / plain
        change = f"{(1 - ratio) * 100:.1f}% lower" if ratio <= 1 else f"{(ratio - 1) * 100:.1f}% higher"
        print(f"{transport}: slo-gate mTLS / plaintext median spans per CPU-second = {ratio:.2f} "
              f"({change}; target: under 15% lower)")
EOF
log "JSON results and server logs: $WORK"
