#!/usr/bin/env python3
"""Send a known set of traces, metrics and logs to an OTLP endpoint with the real
OpenTelemetry Python SDK and its real OTLP exporters, then print one JSON manifest of
exactly what was sent.

Used by tests/tests/python_sdk.rs, which reads everything back through slo-gate's API and
checks it against the manifest. Exits non-zero when any export failed.

    otlp_send.py --protocol grpc|http --endpoint http://127.0.0.1:4317 \
        --service NAME --version VER [--tenant T] [--compression none|gzip]

`--endpoint` is the base URL for both protocols: the gRPC exporters take it as is; the
proto-http exporters take a full per-signal URL when given `endpoint=` in code (only
`OTEL_EXPORTER_OTLP_ENDPOINT` gets `/v1/<signal>` appended), so this script appends it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

TRACES_SCOPE = "e2e.python.traces"
METRICS_SCOPE = "e2e.python.metrics"
LOGS_SCOPE = "e2e.python.logs"
SCOPE_VERSION = "0.1.0"

# The tenant header. gRPC metadata keys must be lowercase (grpcio rejects others, and
# HTTP/2 lowercases header names on the wire anyway), so the gRPC exporters get it lowercased.
TENANT_HEADER = "X-Scope-OrgID"

# OTLP enum numbers, as the collector's API answers them.
OTLP_SPAN_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
OTLP_STATUS_CODE = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}
CUMULATIVE = 2

HISTOGRAM_BOUNDS = [10.0, 50.0, 100.0, 500.0]


class Tally:
    """What one signal's exporter did: export calls, items sent, failures."""

    def __init__(self) -> None:
        self.calls = 0
        self.items = 0
        self.failures = 0
        self._lock = threading.Lock()

    def record(self, items: int, ok: bool) -> None:
        with self._lock:
            self.calls += 1
            if ok:
                self.items += items
            else:
                self.failures += 1

    def as_json(self) -> dict[str, int]:
        return {"calls": self.calls, "items": self.items, "failures": self.failures}


# The SDK's batch processors and periodic reader only log a failed export, so each real
# exporter is wrapped to count what it sent and whether it succeeded.


class TallySpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, tally: Tally) -> None:
        self._inner = inner
        self._tally = tally

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        result = self._inner.export(spans)
        self._tally.record(len(spans), result == SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class TallyLogExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, tally: Tally) -> None:
        self._inner = inner
        self._tally = tally

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        result = self._inner.export(batch)
        self._tally.record(len(batch), result == LogRecordExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class TallyMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, tally: Tally) -> None:
        # The periodic reader takes temporality and aggregation from its exporter: keep the
        # real exporter's (cumulative unless OTEL_* variables say otherwise).
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._tally = tally

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        points = sum(
            len(m.data.data_points)
            for rm in metrics_data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        )
        self._tally.record(points, result == MetricExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def make_exporters(args: argparse.Namespace) -> tuple[SpanExporter, MetricExporter, LogRecordExporter]:
    """The real OTLP exporters of the chosen protocol."""
    timeout = 10  # seconds per export, retries included
    if args.protocol == "grpc":
        from grpc import Compression
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        headers = {TENANT_HEADER.lower(): args.tenant} if args.tenant else None
        compression = Compression.Gzip if args.compression == "gzip" else Compression.NoCompression
        common = {"endpoint": args.endpoint, "insecure": True, "headers": headers, "timeout": timeout, "compression": compression}
        return OTLPSpanExporter(**common), OTLPMetricExporter(**common), OTLPLogExporter(**common)

    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    headers = {TENANT_HEADER: args.tenant} if args.tenant else None
    compression = Compression.Gzip if args.compression == "gzip" else Compression.NoCompression
    base = args.endpoint.rstrip("/")

    def common(signal: str) -> dict[str, Any]:
        return {"endpoint": f"{base}/v1/{signal}", "headers": headers, "timeout": timeout, "compression": compression}

    return (
        OTLPSpanExporter(**common("traces")),
        OTLPMetricExporter(**common("metrics")),
        OTLPLogExporter(**common("logs")),
    )


def hex_trace_id(trace_id: int) -> str:
    return format(trace_id, "032x")


def hex_span_id(span_id: int) -> str:
    return format(span_id, "016x")


def send_traces(provider: TracerProvider, base_ns: int) -> list[dict[str, Any]]:
    """Three traces, each a SERVER root with an INTERNAL child; the last one fails. Every
    timestamp is explicit so the manifest can state it exactly."""
    tracer = provider.get_tracer(TRACES_SCOPE, SCOPE_VERSION)
    traces: list[dict[str, Any]] = []
    previous_root = None
    ms = 1_000_000
    for i in range(3):
        start = base_ns + i * 1000 * ms
        failed = i == 2
        status_code = 500 if failed else 200
        root_attrs = {
            "http.route": "/items/{id}",
            "http.request.method": "GET",
            "http.response.status_code": status_code,
            "url.path": f"/items/{i}",
        }
        # Each trace after the first links to the previous trace's root (as a retry would).
        links = []
        if previous_root is not None:
            links.append(Link(previous_root.get_span_context(), {"link.reason": "retry", "link.attempt": i}))
        root = tracer.start_span(
            "GET /items/{id}",
            context=trace.set_span_in_context(trace.INVALID_SPAN),  # a new trace, not a child of anything
            kind=SpanKind.SERVER,
            attributes=root_attrs,
            links=links,
            start_time=start,
        )
        root_status = Status(StatusCode.OK)
        if failed:
            root_status = Status(StatusCode.ERROR, "upstream timeout")
        root.set_status(root_status)

        child_attrs = {
            "db.system.name": "sqlite",
            "item.id": i,
            "item.price": 9.5 + i,
            "item.cached": i % 2 == 0,
            "item.tags": ["a", f"t{i}"],
        }
        child = tracer.start_span(
            "load item",
            context=trace.set_span_in_context(root),
            kind=SpanKind.INTERNAL,
            attributes=child_attrs,
            start_time=start + 10 * ms,
        )
        event_attrs = {"cache.key": f"item:{i}", "cache.attempt": 1}
        child.add_event("cache.miss", event_attrs, timestamp=start + 50 * ms)
        child.end(end_time=start + 200 * ms)
        root.end(end_time=start + 250 * ms)

        root_ctx, child_ctx = root.get_span_context(), child.get_span_context()
        traces.append(
            {
                "trace_id": hex_trace_id(root_ctx.trace_id),
                "spans": [
                    {
                        "span_id": hex_span_id(root_ctx.span_id),
                        "parent_span_id": None,
                        "name": "GET /items/{id}",
                        "kind": OTLP_SPAN_KIND[SpanKind.SERVER],
                        "start_time_unix_nano": start,
                        "end_time_unix_nano": start + 250 * ms,
                        "attributes": root_attrs,
                        "status": {"code": OTLP_STATUS_CODE[root_status.status_code], "message": root_status.description or ""},
                        "events": [],
                        "links": [
                            {
                                "trace_id": hex_trace_id(link.context.trace_id),
                                "span_id": hex_span_id(link.context.span_id),
                                "attributes": dict(link.attributes or {}),
                            }
                            for link in links
                        ],
                    },
                    {
                        "span_id": hex_span_id(child_ctx.span_id),
                        "parent_span_id": hex_span_id(root_ctx.span_id),
                        "name": "load item",
                        "kind": OTLP_SPAN_KIND[SpanKind.INTERNAL],
                        "start_time_unix_nano": start + 10 * ms,
                        "end_time_unix_nano": start + 200 * ms,
                        "attributes": child_attrs,
                        "status": {"code": 0, "message": ""},
                        "events": [{"name": "cache.miss", "time_unix_nano": start + 50 * ms, "attributes": event_attrs}],
                        "links": [],
                    },
                ],
            }
        )
        previous_root = root
    return traces


def send_metrics(provider: MeterProvider, reader: PeriodicExportingMetricReader) -> list[dict[str, Any]]:
    """A counter with two attribute sets, a histogram with explicit buckets and an observable
    gauge, recorded in two phases with a flush between them so the collector receives each
    cumulative series twice (once mid-way, once at shutdown)."""
    meter = provider.get_meter(METRICS_SCOPE, SCOPE_VERSION)
    counter = meter.create_counter("e2e.requests", unit="{request}", description="Requests handled")
    histogram = meter.create_histogram("e2e.request.duration", unit="ms", description="Request duration")

    def observe_queue(_options: CallbackOptions):
        yield Observation(42.5, {"queue": "ingest"})

    meter.create_observable_gauge(
        "e2e.queue.depth", callbacks=[observe_queue], unit="{item}", description="Items waiting"
    )

    ok = {"http.route": "/items/{id}", "http.response.status_code": 200}
    failed = {"http.route": "/items/{id}", "http.response.status_code": 500}
    route = {"http.route": "/items/{id}"}
    # (counter increments, histogram values) of each phase.
    first_phase = ([(1, ok), (2, ok), (4, failed)], [5.0, 20.0, 75.0])
    second_phase = ([(3, ok)], [30.0, 200.0, 1000.0])

    for i, (adds, durations) in enumerate([first_phase, second_phase]):
        for amount, attrs in adds:
            counter.add(amount, attrs)
        for v in durations:
            histogram.record(v, route)
        if i == 0:
            reader.force_flush()  # the first export; the last one happens at shutdown (see main)

    def total(attrs: dict[str, Any]) -> int:
        return sum(amount for adds, _ in (first_phase, second_phase) for amount, a in adds if a == attrs)

    values = first_phase[1] + second_phase[1]
    buckets = [0] * (len(HISTOGRAM_BOUNDS) + 1)
    for v in values:
        # Explicit buckets are upper-inclusive: bucket i holds bounds[i-1] < v <= bounds[i].
        buckets[sum(1 for b in HISTOGRAM_BOUNDS if v > b)] += 1
    return [
        {
            "name": "e2e.requests",
            "kind": "sum",
            "unit": "{request}",
            "description": "Requests handled",
            "temporality": CUMULATIVE,
            "is_monotonic": True,
            "points": [
                {"attributes": ok, "value_int": total(ok)},
                {"attributes": failed, "value_int": total(failed)},
            ],
        },
        {
            "name": "e2e.request.duration",
            "kind": "histogram",
            "unit": "ms",
            "description": "Request duration",
            "temporality": CUMULATIVE,
            "is_monotonic": False,
            "points": [
                {
                    "attributes": route,
                    "count": len(values),
                    "sum": sum(values),
                    "min": min(values),
                    "max": max(values),
                    "explicit_bounds": HISTOGRAM_BOUNDS,
                    "bucket_counts": buckets,
                }
            ],
        },
        {
            "name": "e2e.queue.depth",
            "kind": "gauge",
            "unit": "{item}",
            "description": "Items waiting",
            "temporality": 0,
            "is_monotonic": False,
            "points": [{"attributes": {"queue": "ingest"}, "value": 42.5}],
        },
    ]


def send_logs(
    provider: LoggerProvider, tracer_provider: TracerProvider, base_ns: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Three records through the logs API; the last one inside an active span, so the SDK
    stamps it with that span's trace and span id. Returns the records and that span's trace."""
    logger = provider.get_logger(LOGS_SCOPE, SCOPE_VERSION)
    tracer = tracer_provider.get_tracer(TRACES_SCOPE, SCOPE_VERSION)
    ms = 1_000_000
    records: list[dict[str, Any]] = [
        {
            "time_unix_nano": base_ns + 5000 * ms,
            "severity_number": SeverityNumber.INFO,
            "severity_text": "INFO",
            "body": "service started",
            "attributes": {"component": "e2e", "attempt": 1, "ratio": 0.25, "ready": True},
        },
        {
            "time_unix_nano": base_ns + 5001 * ms,
            "severity_number": SeverityNumber.WARN,
            "severity_text": "WARN",
            "body": {"event": "cache.miss", "key": "item:1", "size": 3},
            "attributes": {"cache.hit": False, "cache.tiers": ["l1", "l2"]},
        },
    ]
    for r in records:
        logger.emit(
            timestamp=r["time_unix_nano"],
            severity_number=r["severity_number"],
            severity_text=r["severity_text"],
            body=r["body"],
            attributes=r["attributes"],
        )
        r["trace_id"] = None
        r["span_id"] = None

    in_span = {
        "time_unix_nano": base_ns + 5002 * ms,
        "severity_number": SeverityNumber.ERROR,
        "severity_text": "ERROR",
        "body": "payment declined",
        "attributes": {"payment.id": "p-17", "retryable": False},
    }
    # A span of its own trace, made current while the record is emitted.
    charge_start, charge_end = base_ns + 5002 * ms - 500_000, base_ns + 5002 * ms + 500_000
    charge_attrs = {"payment.id": "p-17"}
    span = tracer.start_span(
        "charge",
        context=trace.set_span_in_context(trace.INVALID_SPAN),
        kind=SpanKind.CLIENT,
        attributes=charge_attrs,
        start_time=charge_start,
    )
    with trace.use_span(span, end_on_exit=False):
        logger.emit(
            timestamp=in_span["time_unix_nano"],
            severity_number=in_span["severity_number"],
            severity_text=in_span["severity_text"],
            body=in_span["body"],
            attributes=in_span["attributes"],
        )
    span.end(end_time=charge_end)
    ctx = span.get_span_context()
    in_span["trace_id"] = hex_trace_id(ctx.trace_id)
    in_span["span_id"] = hex_span_id(ctx.span_id)
    charge_trace = {
        "trace_id": hex_trace_id(ctx.trace_id),
        "spans": [
            {
                "span_id": hex_span_id(ctx.span_id),
                "parent_span_id": None,
                "name": "charge",
                "kind": OTLP_SPAN_KIND[SpanKind.CLIENT],
                "start_time_unix_nano": charge_start,
                "end_time_unix_nano": charge_end,
                "attributes": charge_attrs,
                "status": {"code": 0, "message": ""},
                "events": [],
                "links": [],
            }
        ],
    }
    records.append(in_span)
    for r in records:
        r["severity_number"] = int(r["severity_number"].value)
        r["scope_name"] = LOGS_SCOPE
    return records, charge_trace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=["grpc", "http"], required=True)
    parser.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:4317")
    parser.add_argument("--service", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--tenant", help=f"sent as the {TENANT_HEADER} header; none when absent")
    parser.add_argument("--compression", choices=["none", "gzip"], default="none")
    args = parser.parse_args()

    started = time.time_ns()
    # A whole number of milliseconds, ten seconds ago: well inside any retention window.
    base_ns = (started // 1_000_000) * 1_000_000 - 10_000_000_000
    resource = Resource.create(
        {
            "service.name": args.service,
            "service.version": args.version,
            "deployment.environment.name": "e2e",
            "host.name": "e2e-python",
        }
    )
    span_exporter, metric_exporter, log_exporter = make_exporters(args)
    tallies = {"traces": Tally(), "metrics": Tally(), "logs": Tally()}

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(TallySpanExporter(span_exporter, tallies["traces"])))

    # A long interval: exports happen exactly at the explicit flush and at shutdown.
    reader = PeriodicExportingMetricReader(
        TallyMetricExporter(metric_exporter, tallies["metrics"]), export_interval_millis=600_000
    )
    view = View(
        instrument_name="e2e.request.duration",
        aggregation=ExplicitBucketHistogramAggregation(boundaries=HISTOGRAM_BOUNDS),
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader], views=[view])

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(TallyLogExporter(log_exporter, tallies["logs"])))

    traces = send_traces(tracer_provider, base_ns)
    metrics = send_metrics(meter_provider, reader)
    logs, charge_trace = send_logs(logger_provider, tracer_provider, base_ns)
    traces.append(charge_trace)

    # Shutdown flushes every processor and runs the reader's last collection.
    tracer_provider.shutdown()
    meter_provider.shutdown()
    logger_provider.shutdown()

    spans_sent = sum(len(t["spans"]) for t in traces)
    manifest = {
        "protocol": args.protocol,
        "compression": args.compression,
        "tenant": args.tenant,
        "service": {"name": args.service, "version": args.version},
        "resource": dict(resource.attributes),
        "scopes": {"traces": TRACES_SCOPE, "metrics": METRICS_SCOPE, "logs": LOGS_SCOPE, "version": SCOPE_VERSION},
        "started_unix_nano": started,
        "finished_unix_nano": time.time_ns(),
        "exports": {signal: t.as_json() for signal, t in tallies.items()},
        "traces": traces,
        "metrics": metrics,
        "logs": logs,
    }
    print(json.dumps(manifest, indent=None, sort_keys=True))

    failed = {s: t.as_json() for s, t in tallies.items() if t.failures or not t.calls}
    if failed:
        print(f"otlp_send: exports failed or never happened: {failed}", file=sys.stderr)
        return 1
    if tallies["traces"].items != spans_sent or tallies["logs"].items != len(logs):
        print(f"otlp_send: exported item counts differ from what was created: {manifest['exports']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
