"""Runs the real `pyroscope-io` agent against slo-gate: burns CPU in a named function and lets
the agent push what it sampled. Used by tests/tests/pyroscope_push.rs.

Usage: pyroscope_agent.py SERVER_ADDRESS APPLICATION_NAME [SECONDS]
"""

import sys
import time

import pyroscope


def slo_gate_burn_cpu(seconds):
    """The function the test looks for in the stored samples."""
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        for i in range(10_000):
            total += i * i % 7
    return total


def main():
    server_address, application_name = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    pyroscope.configure(
        application_name=application_name,
        server_address=server_address,
        sample_rate=100,
        oncpu=True,
        tags={"env": "ci", "service_version": "9.9.9"},
    )
    slo_gate_burn_cpu(seconds)
    # shutdown() flushes the profile collected since the last upload.
    pyroscope.shutdown()
    print("done", flush=True)


if __name__ == "__main__":
    main()
