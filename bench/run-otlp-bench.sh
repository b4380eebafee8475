#!/usr/bin/env bash
# OTLP trace ingestion benchmark: slo-gate against rotel (a Rust OTLP
# collector, blackhole exporter), same load generator, same machine, loopback.
#
# Usage: bench/run-otlp-bench.sh [--only slo-gate|rotel] [--no-build] [--span-metrics-off] [--tls]
# Env:   DURATION (s, 20)  CONNECTIONS (16)  SPANS_PER_REQUEST (512)
#        LOAD_THREADS (1)  CARGO_TARGET_DIR (~/.cache/slo-gate-target)
#        SLO_GATE (path of the slo-gate binary; default: the release build)
#
# Each (server, transport) pair gets a freshly started server, so VmHWM is
# the peak of that run alone and one transport's run does not warm the other.
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
while [[ $# -gt 0 ]]; do
  case $1 in
    --only) ONLY=${2:?--only needs slo-gate or rotel}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --span-metrics-off) SPAN_METRICS_OFF=1; shift ;;
    --tls) TLS=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
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
SLO_GATE=${SLO_GATE:-$CARGO_TARGET_DIR/release/slo-gate}
LOAD=$CARGO_TARGET_DIR/release/slo-gate-load
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
  log "$name $transport: $CONNECTIONS connections x ${DURATION}s, $SPANS_PER_REQUEST spans/request"
  "$LOAD" "--$transport" "$addr" --pid "$SERVER_PID" --json \
    --duration "$DURATION" --connections "$CONNECTIONS" \
    --spans-per-request "$SPANS_PER_REQUEST" --threads "$LOAD_THREADS" \
    "${LOAD_EXTRA[@]}" >"$WORK/$name-$transport.json"
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
    --api "127.0.0.1:$api" --data-dir "$data" "${extra[@]}" >"$WORK/$name-$transport.log" 2>&1 &
  SERVER_PID=$!
  wait_until "$name" "$WORK/$name-$transport.log" http_ok "$API_SCHEME://127.0.0.1:$api/readyz"
  if [[ $transport == grpc ]]; then
    run_load "$name" grpc "127.0.0.1:$grpc"
  else
    run_load "$name" http "127.0.0.1:$http"
  fi
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
    --pid-file "$WORK/rotel-$transport.pid" --log-file "$WORK/rotel-agent-$transport.log" \
    >"$WORK/rotel-$transport.log" 2>&1 &
  SERVER_PID=$!
  wait_until rotel "$WORK/rotel-$transport.log" tcp_open "$grpc"
  wait_until rotel "$WORK/rotel-$transport.log" tcp_open "$http"
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
  log "building slo-gate-load (release)"
  cargo build --release -p bench
else
  log "building slo-gate and slo-gate-load (release)"
  cargo build --release -p ci -p bench
fi

if [[ $ONLY != rotel ]]; then
  bench_slo_gate grpc
  bench_slo_gate http
  if [[ $SPAN_METRICS_OFF == 1 ]]; then
    printf '[span_metrics]\nenabled = false\n[analysis]\nenabled = false\n' >"$WORK/no-span-metrics.toml"
    bench_slo_gate grpc slo-gate-nospanmetrics "$WORK/no-span-metrics.toml"
    bench_slo_gate http slo-gate-nospanmetrics "$WORK/no-span-metrics.toml"
  fi
  if [[ $TLS == 1 ]]; then
    certs=$WORK/certs
    "$SLO_GATE" certs init --dir "$certs" --days 1 --ip 127.0.0.1 --client spiffe://bench.example/load >&2
    SERVE_EXTRA=(--tls-cert "$certs/server.pem" --tls-key "$certs/server-key.pem"
      --tls-client-ca "bench.example=$certs/ca.pem" --tls-client-auth required)
    LOAD_EXTRA=(--tls-ca "$certs/ca.pem" --tls-cert "$certs/load.pem" --tls-key "$certs/load-key.pem")
    CURL_EXTRA=(--cacert "$certs/ca.pem" --cert "$certs/load.pem" --key "$certs/load-key.pem")
    API_SCHEME=https
    bench_slo_gate grpc slo-gate-mtls
    bench_slo_gate http slo-gate-mtls
    SERVE_EXTRA=() LOAD_EXTRA=() CURL_EXTRA=() API_SCHEME=http
  fi
fi
if [[ $ONLY != slo-gate ]]; then
  ROTEL=$(fetch_rotel)
  log "rotel: $("$ROTEL" version 2>/dev/null || echo "$ROTEL_VERSION")"
  bench_rotel grpc "$ROTEL"
  bench_rotel http "$ROTEL"
fi

python3 - "$WORK" <<'EOF'
import json, pathlib, sys

work = pathlib.Path(sys.argv[1])
runs = {}
for path in sorted(work.glob("*.json")):
    server, transport = path.stem.rsplit("-", 1)
    runs[(server, transport)] = json.loads(path.read_text())

def num(value, fmt):
    return "-" if value is None else format(value, fmt)

cols = ["server", "transport", "spans/s", "server cpu-s", "spans/cpu-s", "VmHWM MiB",
        "max RSS MiB", "p50 ms", "p99 ms", "client cpu-s", "failed"]
rows = []
for (server, transport), r in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    rows.append([server, transport, num(r["spans_per_second"], ",.0f"),
                 num(r["server_cpu_seconds"], ".2f"), num(r["spans_per_server_cpu_second"], ",.0f"),
                 num(r["server_peak_rss_mib"], ".1f"), num(r["server_max_rss_during_run_mib"], ".1f"),
                 num(r["latency_p50_ms"], ".2f"), num(r["latency_p99_ms"], ".2f"),
                 num(r["client_cpu_seconds"], ".2f"), str(r["requests_failed"])])
widths = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c) for i, c in enumerate(cols)]
print()
print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
for row in rows:
    print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
print()
for transport in ("grpc", "http"):
    ours, peer = runs.get(("slo-gate", transport)), runs.get(("rotel", transport))
    if ours and peer and ours["spans_per_server_cpu_second"] and peer["spans_per_server_cpu_second"]:
        ratio = ours["spans_per_server_cpu_second"] / peer["spans_per_server_cpu_second"]
        print(f"{transport}: slo-gate / rotel spans per CPU-second = {ratio:.2f}")
for transport in ("grpc", "http"):
    plain, tls = runs.get(("slo-gate", transport)), runs.get(("slo-gate-mtls", transport))
    if plain and tls and plain["spans_per_server_cpu_second"] and tls["spans_per_server_cpu_second"]:
        ratio = tls["spans_per_server_cpu_second"] / plain["spans_per_server_cpu_second"]
        change = f"{(1 - ratio) * 100:.1f}% lower" if ratio <= 1 else f"{(ratio - 1) * 100:.1f}% higher"
        print(f"{transport}: slo-gate mTLS / plaintext spans per CPU-second = {ratio:.2f} "
              f"({change}; target: under 15% lower)")
EOF
log "JSON results and server logs: $WORK"
