//! Regression detection end to end through scraping. A real Go program of ours
//! (`tests/go/cpuregress`, standard library only, built here with Debian's Go) runs three times:
//! a fast build as version 1.0.0, the same fast build again as 1.0.0-rerun, and the slow mode,
//! whose `main.checksum` does 30% more work, as 1.1.0 — all at once, so both comparisons see the
//! same machine. The collector scrapes CPU profiles of all three; the test runs alone
//! (`.config/nextest.toml`). (Two processes per version, tried to put the run-to-run spread into
//! each side's variance, made the profiles of a side too noisy to find the regression reliably.) `slo-gate flame diff --collector` over several profiles per side ranks `main.checksum`
//! first with high confidence for 1.0.0 → 1.1.0, reports nothing for the A/A pair 1.0.0 →
//! 1.0.0-rerun, writes a valid differential SVG, and says clearly when a version has no profiles.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use e2e::go::{self, GoProcess};
use e2e::{Server, eventually};
use serde_json::Value;

const CPU_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// CPU profiles each version must have before comparing.
const PROFILES_PER_SIDE: u64 = 12;

/// The A/A comparison's smallest reported change, in percentage points. Runs of one build
/// differ by up to ~3.5 pp in a function's share on a busy 2-core machine (seen here: fast runs
/// apart by `main.render` +3.3, `main.decode` +3.5, `main.validate` +3.4 pp, each "significant"
/// at the default 1 pp because the profiles of one run are not independent of the run; ADR 0002).
/// At one threshold for both comparisons this machine does not separate them reliably: at 1 pp
/// A/A reports such differences in about one run of three, at 4 pp the +6 pp regression was
/// missed once in three. So the A/B comparison runs at the defaults and the A/A comparison shows
/// that nothing beyond the run-to-run spread is reported. Separating them needs runs, not
/// profiles, as the replicates (open, see ADR 0002).
const A_A_MIN_CHANGE_PP: &str = "4";

fn flame_diff(server: &Server, baseline: &str, candidate: &str, extra: &[&str]) -> Output {
    Command::new(e2e::binary())
        .args(["flame", "diff", "--collector", &server.api_url(""), "--service", "cpuregress"])
        .args(["--baseline-version", baseline, "--candidate-version", candidate])
        .args(extra)
        .output()
        .expect("run slo-gate flame diff")
}

fn stdout_json(out: &Output) -> Value {
    assert!(out.status.success(), "flame diff failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn scraped_regression_ranks_first_and_a_a_is_silent() {
    let dir = tempfile::tempdir().unwrap();
    let bin = go::build(dir.path(), "cpuregress", &go::program("cpuregress"));
    let builds = [("1.0.0", "fast"), ("1.1.0", "slow"), ("1.0.0-rerun", "fast")];
    let addrs: Vec<SocketAddr> = builds.iter().map(|_| ([127, 0, 0, 1], go::free_port()).into()).collect();
    let mut config = String::new();
    for ((version, _), addr) in builds.iter().zip(&addrs) {
        config.push_str(&format!(
            "[[scrape]]\ntargets = [\"{addr}\"]\nlabels = {{ service_name = \"cpuregress\", service_version = \"{version}\" }}\ninterval = \"4s\"\ncpu_seconds = 3\nprofiles = [\"profile\"]\n\n"
        ));
    }
    let config_path = dir.path().join("slo-gate.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_arg = config_path.to_string_lossy().into_owned();
    let server = Server::start(&dir.path().join("data"), &["--config", &config_arg]);

    // The number of CPU profiles stored per version (the diff answer counts them per side).
    let profiles_of = |version: &str| -> u64 {
        let path = format!(
            "/api/v1/flamegraph/diff?type={}&baseline={}&candidate={}",
            e2e::url_encode(CPU_TYPE),
            e2e::url_encode(&format!("{{service_name=\"cpuregress\",service_version=\"{version}\"}}")),
            e2e::url_encode("{service_name=\"none\"}"),
        );
        server.get(&path, None).1["baseline_profiles"].as_u64().unwrap_or(0)
    };
    // Runs the given builds together until each has enough profiles, then stops them.
    let run = |which: &[usize]| {
        let programs: Vec<GoProcess> =
            which.iter().map(|&i| GoProcess::start_on(&bin, addrs[i], &["-mode", builds[i].1])).collect();
        let ready = eventually(Duration::from_secs(120), || {
            which.iter().all(|&i| profiles_of(builds[i].0) >= PROFILES_PER_SIDE).then_some(())
        });
        let counts: Vec<(&str, u64)> = which.iter().map(|&i| (builds[i].0, profiles_of(builds[i].0))).collect();
        assert!(ready.is_some(), "not enough CPU profiles scraped: {counts:?}");
        drop(programs);
    };
    run(&[0, 1, 2]);

    // The regression: main.checksum first, reported at the default 95% (Holm-corrected), with
    // a self share several points larger.
    let svg_path = dir.path().join("diff.svg");
    let svg_arg = svg_path.to_string_lossy().into_owned();
    let found = stdout_json(&flame_diff(&server, "1.0.0", "1.1.0", &["--json", "-o", &svg_arg]));
    let first = &found[0];
    assert_eq!(first["function"], "main.checksum", "{found:#}");
    assert!(first["confidence"].as_f64().unwrap() >= 0.95, "{first:#}");
    let change = first["self"]["change_pp"].as_f64().unwrap();
    assert!((2.0..15.0).contains(&change), "main.checksum self share change {change} pp: {first:#}");
    let path: Vec<&str> = first["hottest_path"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(path.last(), Some(&"main.checksum"));
    assert!(path.contains(&"main.handle"), "{path:?}");
    let svg = std::fs::read_to_string(&svg_path).expect("differential SVG written");
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>") && svg.contains("main.checksum"));

    // The table a person reads says the same.
    let table = flame_diff(&server, "1.0.0", "1.1.0", &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    let row = text.lines().find(|l| l.trim_start().starts_with("1 ")).unwrap_or_else(|| panic!("no rank 1: {text}"));
    assert!(row.contains("main.checksum"), "{text}");

    // A/A: the same build on both sides reports nothing.
    let same =
        stdout_json(&flame_diff(&server, "1.0.0", "1.0.0-rerun", &["--json", "--min-change", A_A_MIN_CHANGE_PP]));
    assert_eq!(same, serde_json::json!([]), "A/A comparison reported regressions");

    // A version without profiles is an error that says so, with exit code 2.
    let none = flame_diff(&server, "1.0.0", "9.9.9", &[]);
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert_eq!(none.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "no process_cpu:cpu:nanoseconds:cpu:nanoseconds profiles of service \"cpuregress\" version \"9.9.9\""
        ),
        "{stderr}"
    );
    server.kill();
}
