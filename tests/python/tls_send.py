#!/usr/bin/env python3
"""Export spans over TLS and mTLS with the real OpenTelemetry Python SDK's OTLP exporters,
once per case, and print one JSON result per case: whether the exporter reported success,
what was sent, and the exporter's own account of the answer: the attributes of its
`otel.sdk.exporter.operation.duration` measurement (`rpc.response.status_code` for gRPC,
`http.response.status_code` for HTTP, `error.type`), read from an in-memory meter provider,
and what it logged (its log drops a line equal to one of the last 20 s, so it is kept for
the reader, not asserted on).

Used by tests/tests/mtls_sdk.rs, which decides from the collector's side (its API and
/metrics) whether the answer was right. The cases come as a JSON list in the file named by
the only argument:

    [{"name": "...", "protocol": "grpc"|"http", "endpoint": "https://127.0.0.1:4317",
      "ca": "ca.pem", "cert": "client.pem"|null, "key": "client-key.pem"|null,
      "tenant": "shop"|null, "service": "checkout", "timeout": 3}]

The gRPC exporter gets `grpc.ssl_channel_credentials(root, key, chain)`; the HTTP exporter
`certificate_file`, `client_certificate_file` and `client_key_file`, as users configure
them. Exits non-zero only when a case could not be run at all; an export that fails is a
result, printed like any other.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind

# The tenant header; gRPC metadata keys must be lowercase.
TENANT_HEADER = "X-Scope-OrgID"


class Collect(SpanProcessor):
    """Keeps ended spans so that the test exports them itself and sees the exporter's result
    (a batch processor would swallow it)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


class Remember(logging.Handler):
    """Every log record of the exporters, as text: why an export failed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def spans_of(service: str, count: int) -> list[ReadableSpan]:
    collect = Collect()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(collect)
    tracer = provider.get_tracer("e2e.python.tls")
    with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.route", "/pay")
        for i in range(count - 1):
            with tracer.start_as_current_span(f"step {i}", kind=SpanKind.INTERNAL):
                time.sleep(0.001)
    provider.shutdown()
    return collect.spans


def read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def exporter_of(case: dict[str, Any], meter_provider: MeterProvider):
    timeout = float(case.get("timeout", 3))
    tenant = case.get("tenant")
    if case["protocol"] == "grpc":
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(case["ca"]),
            private_key=read(case.get("key")),
            certificate_chain=read(case.get("cert")),
        )
        headers = [(TENANT_HEADER.lower(), tenant)] if tenant else None
        return GrpcSpanExporter(
            endpoint=case["endpoint"],
            credentials=credentials,
            headers=headers,
            timeout=timeout,
            meter_provider=meter_provider,
        )
    if case["protocol"] == "http":
        return HttpSpanExporter(
            endpoint=case["endpoint"].rstrip("/") + "/v1/traces",
            certificate_file=case["ca"],
            client_certificate_file=case.get("cert"),
            client_key_file=case.get("key"),
            headers={TENANT_HEADER: tenant} if tenant else None,
            timeout=timeout,
            meter_provider=meter_provider,
        )
    raise ValueError(f"case {case.get('name')!r}: protocol {case['protocol']!r} is not grpc or http")


def run(case: dict[str, Any], remember: Remember) -> dict[str, Any]:
    spans = spans_of(case["service"], int(case.get("spans", 3)))
    reader = InMemoryMetricReader()
    exporter = exporter_of(case, MeterProvider(metric_readers=[reader]))
    remember.lines = []
    started = time.monotonic()
    result = exporter.export(spans)
    seconds = time.monotonic() - started
    exporter.shutdown()
    return {
        "name": case["name"],
        "result": "success" if result == SpanExportResult.SUCCESS else "failure",
        "seconds": round(seconds, 3),
        "trace_id": format(spans[0].context.trace_id, "032x"),
        "span_ids": sorted(format(s.context.span_id, "016x") for s in spans),
        "operations": operations(reader),
        "log": remember.lines,
    }


def operations(reader: InMemoryMetricReader) -> list[dict[str, Any]]:
    """The attributes of each export the exporter measured (one data point per distinct set)."""
    data = reader.get_metrics_data()
    found: list[dict[str, Any]] = []
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "otel.sdk.exporter.operation.duration":
                    found.extend(dict(point.attributes or {}) for point in metric.data.data_points)
    return found


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} CASES.json", file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    # The exporters measure their exports (the operation-duration attributes above) only when
    # the SDK's internal metrics are turned on.
    os.environ["OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"] = "true"
    remember = Remember()
    logging.getLogger().addHandler(remember)
    logging.getLogger().setLevel(logging.INFO)
    results = [run(case, remember) for case in cases]
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
