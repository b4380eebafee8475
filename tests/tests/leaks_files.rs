//! `slo-gate leaks` on snapshot files of a real Go program (`tests/go/leaky`, standard library
//! only, built here with Debian's Go). One process per mode runs for 30 s while the test saves
//! its goroutine profile (`/debug/pprof/goroutine`, gzipped proto) every 5 s — 7 snapshots, the
//! issue's default span, and its `debug=2` text dump at the same moments. Every leaking mode
//! (1 goroutine/s) is one finding with its blocking function and root-cause tag, from the
//! profiles and from the dumps alike; the worker pool (large but flat) and the allocation-heavy
//! mode (busy GC workers) report nothing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::go::{self, GoProcess};
use serde_json::Value;

/// (mode, blocking function, root-cause tag); `None` for the healthy modes.
const MODES: [(&str, Option<(&str, &str)>); 7] = [
    ("chanrecv", Some(("main.receiveForever", "unclosed_channel_receive"))),
    ("detached", Some(("main.detachedWorker", "detached_context"))),
    ("ticker", Some(("main.tickForever", "ticker_not_stopped"))),
    ("send", Some(("main.sendForever", "blocked_send"))),
    ("waitgroup", Some(("main.waitForever", "waitgroup"))),
    ("pool", None),
    ("gc", None),
];

fn leaks_json(dir: &Path) -> (Option<i32>, Value, String) {
    let out = Command::new(e2e::binary()).arg("leaks").arg("--json").arg(dir).output().expect("run slo-gate leaks");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code(), json, stderr)
}

#[test]
fn every_leak_pattern_is_one_finding_and_healthy_modes_are_silent() {
    let dir = tempfile::tempdir().unwrap();
    let bin = go::build(dir.path(), "leaky", &go::program("leaky"));
    let programs: Vec<GoProcess> = MODES.iter().map(|(mode, _)| GoProcess::start(&bin, &["-mode", mode])).collect();
    let client = reqwest::blocking::Client::new();
    let start = Instant::now();
    for i in 0..7 {
        let due = Duration::from_secs(5 * i);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        for ((mode, _), program) in MODES.iter().zip(&programs) {
            for (query, folder, name) in [
                ("", *mode, format!("goroutine-{i:02}.pb.gz")),
                ("?debug=2", &format!("{mode}-text"), format!("goroutine-{i:02}.txt")),
            ] {
                let url = format!("http://{}/debug/pprof/goroutine{query}", program.addr);
                let body = client.get(&url).send().and_then(|r| r.bytes()).unwrap_or_else(|e| panic!("{url}: {e}"));
                let folder = dir.path().join(folder);
                std::fs::create_dir_all(&folder).unwrap();
                // A dump's time is its file's modification time: written now, 5 s apart.
                std::fs::write(folder.join(name), &body).unwrap();
            }
        }
    }
    drop(programs);

    for (mode, expected) in MODES.iter().flat_map(|(m, e)| [(m.to_string(), *e), (format!("{m}-text"), *e)]) {
        let (code, report, stderr) = leaks_json(&dir.path().join(&mode));
        let findings = report["findings"].as_array().unwrap();
        match expected {
            Some((function, tag)) => {
                assert_eq!(code, Some(1), "{mode}: a leak exits 1: {report:#}\n{stderr}");
                assert_eq!(findings.len(), 1, "{mode}: one finding: {report:#}");
                assert_eq!(findings[0]["blocking_function"], function, "{mode}: {report:#}");
                assert_eq!(findings[0]["root_cause"], tag, "{mode}: {report:#}");
                let rate = findings[0]["growth_per_minute"].as_f64().unwrap();
                assert!((30.0..90.0).contains(&rate), "{mode}: about 60/min, got {rate}: {report:#}");
            }
            None => {
                assert_eq!(code, Some(0), "{mode}: no leak: {report:#}\n{stderr}");
                assert!(findings.is_empty(), "{mode}: {report:#}");
            }
        }
    }
}
