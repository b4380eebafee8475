//! `slo-gate demo` end to end: the in-process collector, the instrumented service in its
//! baseline and candidate builds (real OpenTelemetry SDK, real CPU profiles), and the gate. The
//! candidate must be blocked (exit 1) for its slower checkout route, its errors and its
//! CPU-heavier pricing function, with the reports written as artifacts.

use std::process::Command;

#[test]
fn demo_blocks_the_candidate_with_its_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    // 12 s per build (the default is 15 s): four CPU profiles of one process per side. Two CI
    // runs once missed the pricing regression; the cause was pprof-rs's inlined frames, which
    // put a whole window's `price_items` time under `u64::rotate_left` (`demo::profile`).
    let out = Command::new(e2e::binary())
        .args(["demo", "--duration", "12s", "--artifacts"])
        .arg(&artifacts)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run slo-gate demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!("exit {:?}\n{stdout}\n{}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{report}");
    for needle in [
        "GATE FAILED: release blocked",
        "checkout-latency (key objective) failed",
        "checkout-errors failed",
        "price_items",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?}: {report}");
    }
    // Not asserted: `/api/cart` is unchanged in the candidate, but it shares the CPU with the
    // heavier checkout, so on a busy 2-core machine its latency can rise too (it did once in CI,
    // +35%): the gate is right to say so.
    for file in ["gate.json", "junit.xml", "gate.md", "slow-span-correlation.json", "flamegraph-diff-cpu.svg"] {
        assert!(artifacts.join(file).exists(), "{file} missing: {report}");
    }
}
