#!/usr/bin/env python3
"""Send spans described on the command line through the real OpenTelemetry Python SDK and its
real OTLP exporter, each with exact start and end times, and print one JSON line of what was
exported. Used by tests/tests/span_metrics.rs, which checks the span-metric series the
collector makes of them. Exits non-zero when an export failed.

    span_metrics_send.py --protocol grpc|http --endpoint http://127.0.0.1:4317 \
        --service NAME --version VER --environment ENV [--tenant T] --spans JSON

`--spans` is a JSON list of groups, each `{"name", "kind" (server|client|internal|producer|
consumer), "route" (optional http.route), "status" (unset|ok|error), "duration_ms", "count"}`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

KINDS = {
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "internal": SpanKind.INTERNAL,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}
STATUSES = {"unset": StatusCode.UNSET, "ok": StatusCode.OK, "error": StatusCode.ERROR}


class Counting(SpanExporter):
    """The real exporter, counting what it sent and whether each export succeeded (the batch
    processor only logs a failure)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.exported = 0
        self.failures = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        result = self.inner.export(spans)
        if result == SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failures += 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def exporter(args: argparse.Namespace) -> SpanExporter:
    if args.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        headers = {"x-scope-orgid": args.tenant} if args.tenant else None
        return OTLPSpanExporter(endpoint=args.endpoint, insecure=True, headers=headers, timeout=10)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    headers = {"X-Scope-OrgID": args.tenant} if args.tenant else None
    return OTLPSpanExporter(endpoint=args.endpoint.rstrip("/") + "/v1/traces", headers=headers, timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=["grpc", "http"], required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--environment", required=True)
    parser.add_argument("--tenant")
    parser.add_argument("--spans", required=True)
    args = parser.parse_args()
    groups = json.loads(args.spans)

    resource = Resource.create(
        {
            "service.name": args.service,
            "service.version": args.version,
            "deployment.environment.name": args.environment,
            "host.name": "e2e-python",
        }
    )
    counting = Counting(exporter(args))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(counting, max_export_batch_size=256))
    tracer = provider.get_tracer("e2e.python.spanmetrics", "0.1.0")

    # Whole milliseconds, a minute ago: durations are exact and inside any retention.
    start = (time.time_ns() // 1_000_000) * 1_000_000 - 60_000_000_000
    sent = 0
    for g in groups:
        attributes = {"http.route": g["route"]} if g.get("route") else {}
        for _ in range(g["count"]):
            span = tracer.start_span(
                g["name"],
                context=trace.set_span_in_context(trace.INVALID_SPAN),
                kind=KINDS[g["kind"]],
                attributes=attributes,
                start_time=start,
            )
            status = STATUSES[g.get("status", "unset")]
            if status != StatusCode.UNSET:
                span.set_status(Status(status))
            span.end(end_time=start + g["duration_ms"] * 1_000_000)
            sent += 1
    provider.shutdown()

    print(json.dumps({"sent": sent, "exported": counting.exported, "failures": counting.failures}))
    if counting.failures or counting.exported != sent:
        print(f"span_metrics_send: {counting.failures} exports failed; {counting.exported} of {sent} spans exported", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
