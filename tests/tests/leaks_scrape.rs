//! Goroutine leak detection through the collector, end to end. A real Go program of ours
//! (`tests/go/leaky`, standard library only, built here with Debian's Go) runs one process per
//! mode, each labelled as its own version of service `leaky` (two processes for `send`, as two
//! replicas of one build); the collector scrapes each one's
//! goroutine profile every 5 s and, to put the brief step of the profile handler's goroutine into
//! the snapshots, a 3 s CPU profile as well. Once every process has seven snapshots (30 s, the
//! issue's default span), `GET /api/v1/leaks` reports each leaking mode (1 goroutine/s, and the
//! channel receive also at 0.5/s) as one finding with its blocking frame and root-cause tag —
//! well within two minutes of the leak starting — and nothing for the worker pool and the
//! allocation-heavy mode. The leak of the two `send` processes is one grouped finding in 2 of 2
//! processes. `slo-gate check` with a `goroutine_leak` objective blocks the leaking build and
//! passes the pool.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::go::{self, GoProcess};
use e2e::{Server, eventually};
use serde_json::Value;

/// The blocking function and root-cause tag a leaking mode must be reported with.
type Expected = Option<(&'static str, &'static str)>;

/// (version label, mode, rate per second, expected finding); a version listed twice runs two
/// processes.
const MODES: [(&str, &str, &str, Expected); 9] = [
    ("chanrecv", "chanrecv", "1", Some(("main.receiveForever", "unclosed_channel_receive"))),
    ("chanrecv-slow", "chanrecv", "0.5", Some(("main.receiveForever", "unclosed_channel_receive"))),
    ("detached", "detached", "1", Some(("main.detachedWorker", "detached_context"))),
    ("ticker", "ticker", "1", Some(("main.tickForever", "ticker_not_stopped"))),
    ("send", "send", "1", Some(("main.sendForever", "blocked_send"))),
    ("send", "send", "1", Some(("main.sendForever", "blocked_send"))),
    ("waitgroup", "waitgroup", "1", Some(("main.waitForever", "waitgroup"))),
    ("pool", "pool", "1", None),
    ("gc", "gc", "1", None),
];

/// Snapshots each process must have: 30 s at one every 5 s.
const SNAPSHOTS: u64 = 7;

const CONTRACT: &str = "apiVersion: slo-gate/v1\nkind: Contract\nservice: leaky\ngate:\n  min_samples: 1\nobjectives:\n  - name: goroutines\n    goroutine_leak: { max_growth_per_minute: 10, min_duration: 20s }\n";

fn leaks(server: &Server, version: &str) -> Value {
    let (status, answer) = server.get(&format!("/api/v1/leaks?service=leaky&version={version}"), None);
    assert_eq!(status, 200, "{answer}");
    answer
}

/// How many processes of `version` the test runs.
fn processes(version: &str) -> usize {
    MODES.iter().filter(|m| m.0 == version).count()
}

fn check<S: AsRef<OsStr>>(contracts: &Path, args: &[S]) -> Output {
    Command::new(e2e::binary())
        .args(["check", "--contracts"])
        .arg(contracts)
        .args(["--service", "leaky", "--no-record"])
        .args(args)
        .output()
        .expect("run slo-gate check")
}

#[test]
fn scraped_leaks_are_found_and_healthy_modes_are_silent() {
    let dir = tempfile::tempdir().unwrap();
    let bin = go::build(dir.path(), "leaky", &go::program("leaky"));
    let addrs: Vec<SocketAddr> = MODES.iter().map(|_| ([127, 0, 0, 1], go::free_port()).into()).collect();
    let mut config = String::new();
    for ((version, ..), addr) in MODES.iter().zip(&addrs) {
        config.push_str(&format!(
            "[[scrape]]\ntargets = [\"{addr}\"]\nlabels = {{ service_name = \"leaky\", service_version = \"{version}\" }}\ninterval = \"5s\"\ncpu_seconds = 3\nprofiles = [\"goroutine\", \"profile\"]\n\n"
        ));
    }
    let config_path = dir.path().join("slo-gate.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_arg = config_path.to_string_lossy().into_owned();
    let server = Server::start(&dir.path().join("data"), &["--config", &config_arg]);

    let started = Instant::now();
    let programs: Vec<GoProcess> = MODES
        .iter()
        .zip(&addrs)
        .map(|((_, mode, rate, _), &addr)| GoProcess::start_on(&bin, addr, &["-mode", mode, "-rate", rate]))
        .collect();
    // The fewest snapshots of any process of `version`; 0 until every one has some.
    let snapshots = |version: &str| {
        let runs = leaks(&server, version)["runs"].as_array().cloned().unwrap_or_default();
        let fewest = runs.iter().map(|r| r["snapshots"].as_u64().unwrap_or(0)).min().unwrap_or(0);
        if runs.len() == processes(version) { fewest } else { 0 }
    };
    let ready =
        eventually(Duration::from_secs(110), || MODES.iter().all(|m| snapshots(m.0) >= SNAPSHOTS).then_some(()));
    let counts: Vec<(&str, u64)> = MODES.iter().map(|m| (m.0, snapshots(m.0))).collect();
    assert!(ready.is_some(), "not enough goroutine snapshots scraped: {counts:?}");

    for (i, (version, _, _, expected)) in MODES.into_iter().enumerate() {
        if MODES[..i].iter().any(|m| m.0 == version) {
            continue;
        }
        let answer = leaks(&server, version);
        let n = processes(version);
        for run in answer["runs"].as_array().unwrap() {
            let findings = run["report"]["findings"].as_array().unwrap();
            match expected {
                Some((function, tag)) => {
                    assert_eq!(findings.len(), 1, "{version}: one finding: {answer:#}");
                    assert_eq!(findings[0]["blocking_function"], function, "{version}: {answer:#}");
                    assert_eq!(findings[0]["root_cause"], tag, "{version}: {answer:#}");
                }
                None => assert!(findings.is_empty(), "{version}: no leak: {answer:#}"),
            }
        }
        // The leak of every process of the build is one finding.
        let grouped = answer["findings"].as_array().unwrap();
        match expected {
            Some((function, tag)) => {
                assert_eq!((grouped.len(), &answer["leaks"]), (1, &1.into()), "{version}: {answer:#}");
                assert_eq!(
                    (&grouped[0]["blocking_function"], &grouped[0]["root_cause"]),
                    (&function.into(), &tag.into())
                );
                assert_eq!(
                    (&grouped[0]["processes"], &grouped[0]["of_processes"]),
                    (&n.into(), &n.into()),
                    "{answer:#}"
                );
                assert_eq!(grouped[0]["runs"].as_array().unwrap().len(), n, "{version}: {answer:#}");
            }
            None => assert!(grouped.is_empty() && answer["leaks"] == 0, "{version}: no leak: {answer:#}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(120), "leaks found {elapsed:?} after they started");

    // The gate: the leaking build is blocked, the pool passes.
    let contracts = dir.path().join("contracts");
    std::fs::create_dir_all(&contracts).unwrap();
    std::fs::write(contracts.join("leaky.yaml"), CONTRACT).unwrap();
    let api = server.api_url("");
    let blocked = check(&contracts, &["--collector", api.as_str(), "--candidate", "send"]);
    let text = String::from_utf8_lossy(&blocked.stdout);
    assert_eq!(blocked.status.code(), Some(1), "{text}\n{}", String::from_utf8_lossy(&blocked.stderr));
    assert!(text.contains("main.sendForever") && text.contains("blocked_send"), "{text}");
    assert!(text.contains("in 2 of 2 processes"), "{text}");
    let passed = check(&contracts, &["--collector", api.as_str(), "--candidate", "pool"]);
    let text = String::from_utf8_lossy(&passed.stdout);
    assert_eq!(passed.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&passed.stderr));
    drop(programs);
    server.kill();
}
