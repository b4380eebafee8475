#!/usr/bin/env python3
"""Decode a Tempo trace-by-id body with the real protobuf runtime and the
opentelemetry-proto Python types, and print what it holds as JSON.

Used by tests/tests/grafana_tempo.rs, so the bodies slo-gate sends are read by a decoder
that is not slo-gate's own:

    tempo_decode.py v1 FILE   # tempopb.Trace == opentelemetry.proto.trace.v1.TracesData
    tempo_decode.py v2 FILE   # tempopb.TraceByIDResponse{1: Trace, 2: metrics, 3: status, 4: message}

For v2 the wrapper message is declared at run time from its published field numbers (Tempo's
pkg/tempopb/tempo.proto), its field 1 typed as OTLP's TracesData, since tempopb.Trace is
byte-compatible with it.
"""

from __future__ import annotations

import json
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.trace.v1 import trace_pb2


def trace_by_id_response_class():
    pool = descriptor_pool.Default()
    file = descriptor_pb2.FileDescriptorProto(
        name="slo_gate_test/tempopb_subset.proto",
        package="tempopb",
        syntax="proto3",
        dependency=["opentelemetry/proto/trace/v1/trace.proto"],
    )
    metrics = file.message_type.add(name="TraceByIDMetrics")
    metrics.field.add(name="inspectedBytes", number=1, type=4, label=1)  # uint64
    msg = file.message_type.add(name="TraceByIDResponse")
    msg.field.add(
        name="trace", number=1, type=11, label=1, type_name=".opentelemetry.proto.trace.v1.TracesData"
    )
    msg.field.add(name="metrics", number=2, type=11, label=1, type_name=".tempopb.TraceByIDMetrics")
    msg.field.add(name="status", number=3, type=5, label=1)  # int32 (enum PartialStatus)
    msg.field.add(name="message", number=4, type=9, label=1)  # string
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tempopb.TraceByIDResponse"))


def describe(traces: trace_pb2.TracesData) -> dict:
    spans = []
    for rs in traces.resource_spans:
        service = next(
            (kv.value.string_value for kv in rs.resource.attributes if kv.key == "service.name"), None
        )
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append(
                    {
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "service": service,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "status": s.status.code,
                        "attributes": {kv.key: kv.value.WhichOneof("value") for kv in s.attributes},
                    }
                )
    return {"spans": spans}


def main() -> int:
    kind, path = sys.argv[1], sys.argv[2]
    data = open(path, "rb").read()
    if kind == "v1":
        traces = trace_pb2.TracesData()
        traces.ParseFromString(data)
        out = describe(traces)
    elif kind == "v2":
        response = trace_by_id_response_class()()
        response.ParseFromString(data)
        out = describe(response.trace)
        out["has_trace"] = response.HasField("trace")
        out["status"] = response.status
        out["message"] = response.message
        out["inspected_bytes"] = response.metrics.inspectedBytes
    else:
        print(f"unknown kind {kind!r}", file=sys.stderr)
        return 2
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
