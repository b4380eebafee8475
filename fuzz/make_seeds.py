#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs (fuzz/seeds/<target>/): small valid inputs of each
format, hand-encoded here from the published field numbers (OTLP, Pyroscope's push API, the
WAL record format of collector/src/store/wal.rs) or taken from testdata/corpus. Run from the
repository root: python3 fuzz/make_seeds.py"""
import gzip
import json
import os
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
CORPUS = os.path.join(ROOT, "testdata", "corpus")


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def ld(field, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return key(field, 2) + varint(len(payload)) + payload


def vi(field, n):
    return key(field, 0) + varint(n)


def f64(field, n):
    return key(field, 1) + struct.pack("<Q", n)


def dbl(field, x):
    return key(field, 1) + struct.pack("<d", x)


def anyvalue_str(s):
    return ld(1, s)


def kv(k, value):
    return ld(1, k) + ld(2, value)


def kv_str(k, v):
    return kv(k, anyvalue_str(v))


T0 = 1_764_000_000_000_000_000
TRACE_ID = bytes(range(1, 17))
SPAN_ID = bytes(range(1, 9))

resource = ld(1, kv_str("service.name", "checkout")) + ld(1, kv_str("service.version", "1.0.0")) + ld(
    1, kv_str("deployment.environment.name", "staging"))
scope = ld(1, "gate-check") + ld(2, "0.1")

span = (ld(1, TRACE_ID) + ld(2, SPAN_ID) + ld(5, "POST /api/checkout") + vi(6, 2) + f64(7, T0) + f64(8, T0 + 120_000_000)
        + ld(9, kv_str("http.route", "/api/checkout")) + ld(9, kv("http.response.status_code", vi(3, 503)))
        + ld(9, kv("retry", ld(5, ld(1, anyvalue_str("a")) + ld(1, vi(3, 2)))))
        + ld(11, f64(1, T0 + 1) + ld(2, "exception") + ld(3, kv_str("exception.type", "Timeout")))
        + ld(15, ld(2, "upstream failed") + vi(3, 2)))
traces = ld(1, ld(1, resource) + ld(2, ld(1, scope) + ld(2, span)))

gauge_point = ld(7, kv_str("route", "/cart")) + f64(2, T0) + f64(3, T0 + 1) + dbl(4, 0.25)
sum_point = ld(7, kv_str("route", "/cart")) + f64(2, T0) + f64(3, T0 + 1) + key(6, 1) + struct.pack("<q", 42)
hist_point = (ld(9, kv_str("route", "/cart")) + f64(2, T0) + f64(3, T0 + 1) + f64(4, 6) + dbl(5, 1.5)
              + ld(6, struct.pack("<QQQ", 1, 3, 2)) + ld(7, struct.pack("<dd", 0.1, 0.5)))
metrics = ld(1, ld(1, resource) + ld(2, ld(1, scope)
                                      + ld(2, ld(1, "queue.depth") + ld(3, "1") + ld(5, ld(1, gauge_point)))
                                      + ld(2, ld(1, "requests") + ld(7, ld(1, sum_point) + vi(2, 2) + vi(3, 1)))
                                      + ld(2, ld(1, "http.server.duration") + ld(3, "s")
                                           + ld(9, ld(1, hist_point) + vi(2, 2)))))

log = (f64(1, T0) + vi(2, 17) + ld(3, "ERROR") + ld(5, anyvalue_str("payment declined"))
       + ld(6, kv_str("order.id", "42")) + ld(9, TRACE_ID) + ld(10, SPAN_ID) + f64(11, T0 + 5))
logs = ld(1, ld(1, resource) + ld(2, ld(1, scope) + ld(2, log)))


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def corpus(path):
    with open(os.path.join(CORPUS, path), "rb") as f:
        return f.read()



def packed(field, values):
    return ld(field, b"".join(varint(v) for v in values))


strings = ["", "main.work", "main.main", "main.go", "cpu", "nanoseconds", "samples", "count", "pod", "a-1"]
dictionary = (ld(1, b"")
              + ld(2, b"") + ld(2, vi(2, 0x10) + ld(3, vi(1, 1) + vi(2, 12))) + ld(2, ld(3, vi(1, 2) + vi(2, 30)))
              + ld(3, b"") + ld(3, vi(1, 1) + vi(3, 3)) + ld(3, vi(1, 2) + vi(3, 3))
              + ld(4, b"")
              + b"".join(ld(5, x) for x in strings)
              + ld(6, b"") + ld(6, vi(1, 8) + ld(2, vi(8, 9)))
              + ld(7, b"") + ld(7, packed(1, [1, 2])))
profile = (ld(1, vi(1, 4) + vi(2, 5)) + ld(2, vi(1, 1) + packed(4, [30_000_000]) + packed(2, [1]))
           + ld(2, vi(1, 1) + packed(4, [10_000_000])) + f64(3, T0) + vi(4, 10_000_000_000)
           + ld(5, vi(1, 4) + vi(2, 5)) + vi(6, 10_000_000) + ld(7, bytes(range(16))) + packed(11, [1]))
profiles = ld(1, ld(1, resource) + ld(2, ld(1, scope) + ld(2, profile))) + ld(2, dictionary)
write("otlp_profiles", "cpu", profiles)
write("otlp_traces", "server-span", traces)
write("otlp_metrics", "gauge-sum-histogram", metrics)
write("otlp_logs", "error-log", logs)

json_resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}},
                                {"key": "service.version", "value": {"stringValue": "1.0.0"}}]}
json_traces = {"resourceSpans": [{"resource": json_resource, "scopeSpans": [{"scope": {"name": "s"}, "spans": [{
    "traceId": TRACE_ID.hex(), "spanId": SPAN_ID.hex(), "name": "GET /cart", "kind": 2,
    "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + 30_000_000),
    "attributes": [{"key": "http.route", "value": {"stringValue": "/cart"}},
                   {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"doubleValue": 1.5}]}}},
                   {"key": "ctx", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}}}],
    "status": {"code": 1}}]}]}]}
json_metrics = {"resourceMetrics": [{"resource": json_resource, "scopeMetrics": [{"metrics": [
    {"name": "queue.depth", "gauge": {"dataPoints": [{"timeUnixNano": str(T0), "asDouble": 3.5}]}},
    {"name": "http.server.duration", "histogram": {"aggregationTemporality": 2, "dataPoints": [{
        "timeUnixNano": str(T0), "count": "3", "sum": 0.9, "bucketCounts": ["1", "2"], "explicitBounds": [0.25]}]}}]}]}]}
json_logs = {"resourceLogs": [{"resource": json_resource, "scopeLogs": [{"logRecords": [{
    "timeUnixNano": str(T0), "severityNumber": 9, "body": {"stringValue": "hello"},
    "attributes": [{"key": "n", "value": {"intValue": "7"}}]}]}]}]}
write("otlp_json", "traces", b"\x00" + json.dumps(json_traces).encode())
write("otlp_json", "metrics", b"\x01" + json.dumps(json_metrics).encode())
write("otlp_json", "logs", b"\x02" + json.dumps(json_logs).encode())

write("pprof", "go-cpu", corpus("pprof/internal/report/testdata/sample.cpu"))
write("pprof", "go-heap-no-mappings", corpus("pprof/internal/driver/testdata/go.nomappings.crash"))
write("pprof", "go-goroutine", corpus("go-dev/fast/goroutine-t00.pb.gz"))
write("pprof", "go-goroutine-plain", gzip.decompress(corpus("go-dev/fast/goroutine-t05.pb.gz")))
write("pprof", "empty-threadcreate", corpus("go-dev/fast/threadcreate.pb.gz"))

write("goroutine_dump", "t00", corpus("go-dev/fast/goroutine-t00.debug2.txt"))
write("goroutine_dump", "t05", corpus("go-dev/fast/goroutine-t05.debug2.txt"))
write("goroutine_dump", "crash", b"panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:9 +0x1d\n"
      b"exit status 2\n\ngoroutine 7 [chan receive, 3 minutes]:\nmain.worker(0xc0000a6000)\n\t/app/w.go:12 +0x2b\n"
      b"created by main.main in goroutine 1\n\t/app/main.go:8 +0x3c\n")

cpu = gzip.decompress(corpus("pprof/internal/report/testdata/sample.cpu"))
push = ld(1, ld(1, ld(1, "__name__") + ld(2, "process_cpu")) + ld(1, ld(1, "service_name") + ld(2, "checkout"))
          + ld(1, ld(1, "service_version") + ld(2, "1.0.0")) + ld(2, ld(1, cpu) + ld(2, "0f8c7b5e")))
write("pyroscope_push", "proto", b"\x00" + push)
write("pyroscope_push", "json", b"\x01" + json.dumps({"series": [{
    "labels": [{"name": "service_name", "value": "checkout"}],
    "samples": [{"rawProfile": __import__("base64").b64encode(corpus("go-dev/fast/goroutine-t00.pb.gz")).decode(),
                 "ID": "x"}]}]}).encode())

write("pyroscope_ingest", "folded-cpu",
      b"checkout.cpu{env=staging,service_version=1.0}\x001700000000\x001700000010\x00100\x00gospy\x00folded\x00"
      b"text/plain\x00main;handle;price 10\nmain;handle;tax 5\nmain 1\n")
write("pyroscope_ingest", "pprof", b"checkout\x00\x00\x00\x00\x00pprof\x00application/octet-stream\x00" + cpu)
boundary = b"b0undary"
multipart = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n"
             b"Content-Type: application/octet-stream\r\n\r\n" + cpu + b"\r\n--" + boundary + b"--\r\n")
write("pyroscope_ingest", "multipart", b"checkout.cpu\x00\x00\x00\x00\x00\x00multipart/form-data; boundary="
      + boundary + b"\x00" + multipart)

with open(os.path.join(ROOT, "demo", "contract.yaml"), "rb") as f:
    write("contracts", "demo", f.read())
write("contracts", "gate-check", """apiVersion: slo-gate/v1
kind: Contract
service: checkout
environment: staging
gate:
  baseline: { version: "1.0.0" }
  min_samples: 100
  no_data: fail
  consecutive_failures: 3
objectives:
  - name: checkout-latency
    latency: { percentile: p95, route: /api/checkout }
    fail: ["<= 2s", "<= +10%"]
    key: true
  - name: checkout-errors
    error_rate: { route: /api/checkout }
    fail: ["< 5%", "<= +50%"]
  - name: leaks
    goroutine_leak: { max_growth_per_minute: 1, min_duration: 5m }
""")
write("contracts", "openslo", """apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout-availability
spec:
  service: checkout
  budgetingMethod: Occurrences
  indicator:
    metadata:
      name: errors
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: Prometheus
            spec:
              query: sum(http_requests_total{service="checkout",code!~"5.."})
        total:
          metricSource:
            type: Prometheus
            spec:
              query: sum(http_requests_total{service="checkout"})
  objectives:
    - target: 0.999
  timeWindow:
    - duration: 28d
      isRolling: true
""")

write("query_params", "selector", '{service_name="checkout", service_version="1.0 \\"rc\\"",pod="a\\nb"}')
write("query_params", "rfc3339", "2023-11-14T23:13:20.5+01:00")
write("query_params", "unix", "1700000000.25")

MAGIC = b"SLOGWAL1"


def record(signal, tenant, payload):
    body = bytes([signal, len(tenant)]) + tenant + payload
    return struct.pack("<II", len(body), zlib.crc32(body)) + body


write("wal_segment", "three-records",
      MAGIC + record(1, b"anonymous", traces) + record(2, b"team-a", metrics) + record(3, b"anonymous", logs))
write("wal_segment", "torn-tail", MAGIC + record(1, b"anonymous", traces) + record(3, b"anonymous", logs)[:-7])

# chunk: the hand-worked chunk of prom::chunk's `golden_bytes` test (decoded as a chunk), and
# samples to encode: a start time, then (time step, value bits) pairs, little-endian.
write("chunk", "golden", bytes([0x04, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x98, 0x75,
                                0b00110000, 0b10010111, 0b11111111, 0b11100000, 0b00000000, 0b01000000]))


def steps(start, pairs):
    return struct.pack("<q", start) + b"".join(struct.pack("<qQ", step, bits) for step, bits in pairs)


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


counter = []
value = 1000.0
for i in range(40):
    counter.append((0 if i == 0 else 15_000 + (3 if i % 7 == 0 else 0), bits(value)))
    value += i % 5
write("chunk", "counter-15s", steps(1_700_000_000_000, counter))
STALE_NAN = 0x7FF0_0000_0000_0002
write("chunk", "extremes", steps(-(1 << 63), [
    (0, STALE_NAN), (1, bits(float("nan"))), ((1 << 63) - 1, bits(float("inf"))), (-5, bits(-0.0)),
    ((1 << 63) - 1, bits(1.0)), (1, 0x7FF8_DEAD_BEEF_0001), (1, bits(2.0)),
]))
