#!/usr/bin/env python3
"""Send a steady stream of SERVER spans of one route from several hosts through the real
OpenTelemetry Python SDK, following a schedule of phases in which one host turns slow or a
share of the requests fail. Used by tests/tests/analysis.rs, which checks the anomalies, the
webhook notifications and the burn-rate alerts that `slo-gate serve` raises from them.

    incident_send.py --protocol grpc|http --endpoint http://127.0.0.1:4317 [--tenant T] \
        --phases '[{"seconds": 25}, {"seconds": 8, "slow_host": "node-3", "slow_ms": [300, 400]}]'

Each host (`host.name` node-1 … node-N, a resource attribute) has its own TracerProvider with
a BatchSpanProcessor exporting every `--schedule-ms`, as N separately deployed instances of
the service would. Every `--tick-ms` each host ends its share of `--rate` spans a second, so
the collector receives nearly the same number of requests in every second: the hosts' shares
of a tick are staggered so that their sum is the same in every tick. A span's duration is
drawn from `--normal-ms` (or the phase's `slow_ms` on its slow host) by a seeded generator,
and its start and end times are given explicitly (it ends at the tick), so durations are exact
without sleeping per span.

A phase is `{"seconds": S}` plus optionally `"slow_host": "node-3", "slow_ms": [lo, hi]` and
`"error_ratio": 0.2` (that share of every host's spans has status ERROR, spread evenly). When a
phase starts, one JSON line `{"phase": i, "start_ms": …, "end_ms": …}` is printed (flushed), so
the test knows when each phase ran; at the end, one line with what was sent and exported. Exits
non-zero when an export failed or the schedule is invalid.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

# The real exporters, wrapped to count failures, as span_metrics_send.py builds them.
from span_metrics_send import Counting, exporter

PHASE_KEYS = {"seconds", "slow_host", "slow_ms", "error_ratio"}


def check_phases(phases: Any, hosts: list[str]) -> list[str]:
    """Every problem of the schedule, each naming the phase and key."""
    if not isinstance(phases, list) or not phases:
        return ["--phases must be a non-empty JSON list of phases"]
    problems = []
    for i, p in enumerate(phases):
        if not isinstance(p, dict):
            problems.append(f"phase {i}: not a JSON object")
            continue
        for key in sorted(set(p) - PHASE_KEYS):
            problems.append(f"phase {i}: unknown key {key!r} (known: {', '.join(sorted(PHASE_KEYS))})")
        seconds = p.get("seconds")
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            problems.append(f"phase {i}: seconds must be a positive number, not {seconds!r}")
        if ("slow_host" in p) != ("slow_ms" in p):
            problems.append(f"phase {i}: slow_host and slow_ms go together")
        if "slow_host" in p and p["slow_host"] not in hosts:
            problems.append(f"phase {i}: slow_host {p['slow_host']!r} is not one of {hosts}")
        slow = p.get("slow_ms")
        if slow is not None and not (
            isinstance(slow, list) and len(slow) == 2 and all(isinstance(v, (int, float)) for v in slow) and 0 < slow[0] <= slow[1]
        ):
            problems.append(f"phase {i}: slow_ms must be [lo, hi] with 0 < lo <= hi, not {slow!r}")
        ratio = p.get("error_ratio", 0)
        if not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            problems.append(f"phase {i}: error_ratio must be in [0, 1], not {ratio!r}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=["grpc", "http"], required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--tenant")
    parser.add_argument("--service", default="checkout")
    parser.add_argument("--version", default="v1")
    parser.add_argument("--route", default="/pay")
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--rate", type=float, default=25.0, help="spans per second per host")
    parser.add_argument("--tick-ms", type=int, default=100)
    parser.add_argument("--schedule-ms", type=int, default=50, help="the batch processors' schedule delay")
    parser.add_argument("--normal-ms", type=float, nargs=2, default=[30.0, 80.0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phases", required=True)
    args = parser.parse_args()

    hosts = [f"node-{i + 1}" for i in range(args.hosts)]
    try:
        phases = json.loads(args.phases)
    except json.JSONDecodeError as err:
        print(f"incident_send: --phases is not JSON: {err}", file=sys.stderr)
        return 2
    problems = check_phases(phases, hosts)
    if args.hosts < 1 or args.rate <= 0 or args.tick_ms <= 0 or args.schedule_ms <= 0:
        problems.append("--hosts, --rate, --tick-ms and --schedule-ms must be positive")
    if problems:
        print("incident_send: " + "; ".join(problems), file=sys.stderr)
        return 2

    providers = []
    tracers = []
    counters = []
    for host in hosts:
        resource = Resource.create(
            {"service.name": args.service, "service.version": args.version, "host.name": host}
        )
        counting = Counting(exporter(args))
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(
            BatchSpanProcessor(counting, schedule_delay_millis=args.schedule_ms, max_export_batch_size=512)
        )
        providers.append(provider)
        tracers.append(provider.get_tracer("e2e.python.incident", "0.1.0"))
        counters.append(counting)

    rng = random.Random(args.seed)
    per_tick = args.rate * args.tick_ms / 1000.0
    # Staggered starting fractions: with 2.5 spans per host per tick, hosts alternate 2 and 3,
    # and the sum over the hosts is the same in every tick.
    owed = [(h / len(hosts)) % 1.0 for h in range(len(hosts))]
    failing = [0.0] * len(hosts)
    tick_ns = args.tick_ms * 1_000_000
    sent = 0
    errors = 0
    next_tick = time.monotonic_ns()
    for index, phase in enumerate(phases):
        ticks = round(phase["seconds"] * 1000 / args.tick_ms)
        start_ms = time.time_ns() // 1_000_000
        print(json.dumps({"phase": index, "start_ms": start_ms, "end_ms": start_ms + ticks * args.tick_ms}), flush=True)
        slow_host = phase.get("slow_host")
        error_ratio = phase.get("error_ratio", 0.0)
        for _ in range(ticks):
            end = time.time_ns()
            for h, host in enumerate(hosts):
                owed[h] += per_tick
                count = int(owed[h])
                owed[h] -= count
                lo, hi = phase["slow_ms"] if host == slow_host else args.normal_ms
                for _ in range(count):
                    duration = int(rng.uniform(lo, hi) * 1_000_000)
                    span = tracers[h].start_span(
                        f"POST {args.route}",
                        context=trace.set_span_in_context(trace.INVALID_SPAN),
                        kind=SpanKind.SERVER,
                        attributes={"http.route": args.route, "http.request.method": "POST"},
                        start_time=end - duration,
                    )
                    # Errors spread evenly: exactly `error_ratio` of each host's spans.
                    failing[h] += error_ratio
                    if failing[h] >= 1.0:
                        failing[h] -= 1.0
                        span.set_status(Status(StatusCode.ERROR, "payment declined"))
                        errors += 1
                    span.end(end_time=end)
                    sent += 1
            # Absolute schedule: a slow tick does not shift the ones after it.
            next_tick += tick_ns
            delay = next_tick - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)

    for provider in providers:
        provider.shutdown()
    exported = sum(c.exported for c in counters)
    failures = sum(c.failures for c in counters)
    print(json.dumps({"sent": sent, "errors": errors, "exported": exported, "failures": failures}), flush=True)
    if failures or exported != sent:
        print(f"incident_send: {failures} exports failed; {exported} of {sent} spans exported", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
