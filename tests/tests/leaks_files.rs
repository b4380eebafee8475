//! `slo-gate leaks` on snapshot files of a real Go program (`tests/go/leaky`, standard library
//! only, built here with Debian's Go). One process per mode runs for 30 s while the test saves
//! its goroutine profile (`/debug/pprof/goroutine`, gzipped proto) every 5 s — 7 snapshots, the
//! issue's default span, and its `debug=2` text dump at the same moments. Every leaking mode
//! (1 goroutine/s) is one finding with its blocking function and root-cause tag, from the
//! profiles and from the dumps alike; the worker pool (large but flat) and the allocation-heavy
//! mode (busy GC workers) report nothing. Two folders are two processes: the corpus' leaking
//! program run twice has its two leaks each in 2 of 2 processes, one finding per leak.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
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

/// Copies the corpus run's goroutine snapshots of one kind (`.pb.gz` or `.txt`) to `dir`.
fn copy_snapshots(run: &str, suffix: &str, dir: &Path) {
    let corpus = e2e::manifest_dir().join("../testdata/corpus/go-dev").join(run);
    std::fs::create_dir_all(dir).unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("goroutine-t") && name.ends_with(suffix) {
            std::fs::copy(&path, dir.join(&name)).unwrap();
            copied += 1;
        }
    }
    assert_eq!(copied, 9, "{}", corpus.display());
}

fn leaks_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(e2e::binary()).arg("leaks").args(args).current_dir(dir).output().expect("run slo-gate leaks")
}

// Issue 12: the same leak in several processes is one finding with each process's rate, not one
// finding per process.
#[test]
fn a_leak_in_two_processes_is_one_finding() {
    let dir = tempfile::tempdir().unwrap();
    // The corpus' leaking program, run twice: two processes of one build.
    copy_snapshots("fast", ".pb.gz", &dir.path().join("pod-a"));
    copy_snapshots("fast-rerun", ".pb.gz", &dir.path().join("pod-b"));
    copy_snapshots("fast", ".debug2.txt", &dir.path().join("dumps-a"));
    copy_snapshots("fast-rerun", ".debug2.txt", &dir.path().join("dumps-b"));

    let out = leaks_in(dir.path(), &["pod-a", "pod-b/"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", e2e::output_text(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..2],
        ["processes: 2 (pod-a, pod-b)", "2 goroutine leaks grow faster than 1/min, each in 2 of 2 processes"]
    );
    for (line, function) in lines[2..4].iter().zip(["main.closeWhenDone", "main.collectResults"]) {
        assert!(line.starts_with(&format!("  {function} (")), "{text}");
        assert!(line.contains(") in 2 of 2 processes, about 60/min per process: pod-a: 60/min for 40 s"), "{text}");
        assert!(line.contains("; pod-b: 60/min for 40 s"), "{text}");
    }
    e2e::check_golden("leaks/two-processes.txt", &text);

    let out = leaks_in(dir.path(), &["--json", "pod-a", "pod-b"]);
    assert_eq!(out.status.code(), Some(1), "{}", e2e::output_text(&out));
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", e2e::output_text(&out)));
    assert_eq!((&report["leaks"], &report["clusters"], &report["processes"]), (&2.into(), &4.into(), &2.into()));
    for finding in report["findings"].as_array().unwrap() {
        assert_eq!((&finding["processes"], &finding["of_processes"]), (&2.into(), &2.into()), "{finding:#}");
        let rate = finding["per_minute_per_process"].as_f64().unwrap();
        assert!((50.0..70.0).contains(&rate), "about 60/min: {finding:#}");
        let runs: Vec<&str> = finding["runs"].as_array().unwrap().iter().map(|r| r["run"].as_str().unwrap()).collect();
        assert_eq!(runs, ["pod-a", "pod-b"], "{finding:#}");
    }
    // Each process's own report, labelled with its run.
    for (run, name) in report["runs"].as_array().unwrap().iter().zip(["pod-a", "pod-b"]) {
        assert_eq!((&run["run"], &run["report"]["source"]["run"]), (&name.into(), &name.into()), "{run:#}");
        assert_eq!(run["report"]["findings"].as_array().unwrap().len(), 2, "{run:#}");
    }

    // Text dumps: the same leaks, with creators the profiles do not record.
    let out = leaks_in(dir.path(), &["dumps-a", "dumps-b"]);
    assert_eq!(out.status.code(), Some(1), "{}", e2e::output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("2 goroutine leaks grow faster than 1/min, each in 2 of 2 processes")
    );

    // A folder with no goroutine snapshot is an error that names it.
    let cpu = dir.path().join("cpu");
    std::fs::create_dir_all(&cpu).unwrap();
    std::fs::copy(e2e::manifest_dir().join("../testdata/corpus/go-dev/fast/cpu-10s.pb.gz"), cpu.join("cpu.pb.gz"))
        .unwrap();
    let out = leaks_in(dir.path(), &["pod-a", "cpu"]);
    assert_eq!(out.status.code(), Some(2), "{}", e2e::output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error: in cpu: no goroutine snapshots found"),
        "{}",
        e2e::output_text(&out)
    );
}
