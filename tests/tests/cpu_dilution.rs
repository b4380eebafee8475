//! A CPU regression hidden by everything else a release changed, end to end (issue 12, ADR
//! 0008). A Go program of ours (`tests/go/cpudilute`, standard library only, built here) runs as
//! several processes per build (three a side when comparing builds, two in the A/A phase),
//! scraped by the collector (`profile` with 8 s CPU profiles and `allocs`, every 10 s) and
//! reporting one SERVER span per request over OTLP/HTTP. The
//! candidate's `main.encode` does 30% more work per request, and new background work
//! (`main.refreshCache`, allocating in `main.buildEntry`) keeps the GC busy, so every other
//! function's *share* falls. Three phases, each with its own collector, one after the other (the
//! test runs alone: `.config/nextest.toml`):
//!
//! 1. Same arrival rate on all six processes: CPU per request (the default, since the spans give
//!    the work) and CPU per second both name `main.encode` first as slower code; the new
//!    allocation is named with its allocating function; `main.parse` and `main.checksum`
//!    (unchanged per request) are never reported.
//! 2. Three processes a side; the candidates share a CPU with a hog (`taskset`), so they serve
//!    fewer requests: CPU per request still names `main.encode`; CPU per second says the loads
//!    differ.
//! 3. A/A, two seeds: four processes of the baseline build split into two "versions" report
//!    nothing under any normalization, at 99.9% confidence. ADR 0002 asserts end-to-end A/A
//!    checks at 99%, but this phase asks twelve questions (two seeds; shares, CPU per second and
//!    CPU per request, `auto` being per request here; the program's functions and the runtime's,
//!    each a family of its own), and a test calibrated at 99% answers one of twelve wrongly in
//!    up to one run in ten: one of 24 A/A phases run had `runtime.futex` at +1.1 pp, 99%.

use std::process::{Command, Output};
use std::time::Duration;

use e2e::go::{self, GoProcess};
use e2e::{Server, eventually_every};
use serde_json::Value;

const CPU_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// CPU profiles each process must have before comparing (one every 10 s).
const PROFILES_PER_RUN: u64 = 7;
/// Requests per second arriving at every process.
const RATE: &str = "200";

/// One process of a phase: its version label, mode, and the CPUs it is pinned to (if any).
struct Proc {
    version: &'static str,
    mode: &'static str,
    cpus: Option<&'static str>,
}

/// A collector that scraped `procs` (and, with `hog`, a CPU hog on those CPUs) until every
/// process has [`PROFILES_PER_RUN`] CPU profiles; the programs are stopped when it returns.
fn phase(bin: &std::path::Path, dir: &std::path::Path, procs: &[Proc], hog: Option<&str>, seed: u64) -> Server {
    let addrs: Vec<std::net::SocketAddr> = procs.iter().map(|_| ([127, 0, 0, 1], go::free_port()).into()).collect();
    let mut config = String::new();
    for (p, a) in procs.iter().zip(&addrs) {
        config.push_str(&format!(
            "[[scrape]]\ntargets = [\"{a}\"]\nlabels = {{ service_name = \"cpudilute\", service_version = \"{}\" }}\n\
             interval = \"10s\"\ncpu_seconds = 8\nprofiles = [\"profile\", \"allocs\"]\n\n",
            p.version
        ));
    }
    std::fs::create_dir_all(dir).unwrap();
    let config_path = dir.join("slo-gate.toml");
    std::fs::write(&config_path, config).unwrap();
    let server = Server::start(&dir.join("data"), &["--config", &config_path.to_string_lossy()]);
    let otlp = server.http_url("");
    let otlp = otlp.trim_end_matches('/');
    let _hog = hog.map(|cpus| {
        let addr = ([127, 0, 0, 1], go::free_port()).into();
        GoProcess::start_pinned(bin, addr, cpus, &[], &["-mode", "hog", "-hog-threads", "6"])
    });
    let seed = seed.to_string();
    let programs: Vec<GoProcess> = procs
        .iter()
        .zip(&addrs)
        .enumerate()
        .map(|(i, (p, &addr))| {
            let seed = format!("{seed}{i}");
            let args = ["-mode", p.mode, "-version", p.version, "-otlp", otlp, "-rate", RATE, "-seed", &seed];
            match p.cpus {
                Some(cpus) => GoProcess::start_pinned(bin, addr, cpus, &[], &args),
                None => GoProcess::start_on(bin, addr, &args),
            }
        })
        .collect();
    let versions: Vec<&str> = {
        let mut v: Vec<&str> = procs.iter().map(|p| p.version).collect();
        v.dedup();
        v
    };
    let stored = |version: &str| -> (u64, u64) {
        let answer = diff(&server, version, "none", "");
        (answer["baseline_profiles"].as_u64().unwrap_or(0), answer["baseline_runs"].as_u64().unwrap_or(0))
    };
    // Every 3 s (profiles arrive every 10 s): each poll has the collector decode every stored
    // profile of a version, which at 10 polls a second took a growing share of the two cores
    // the profiled programs run on (the debug-build collector reached 60% of a core by the end
    // of a phase), and with it their CPU per second.
    let ready = eventually_every(Duration::from_secs(240), Duration::from_secs(3), || {
        versions
            .iter()
            .all(|v| {
                let runs = procs.iter().filter(|p| p.version == *v).count() as u64;
                let (profiles, stored_runs) = stored(v);
                stored_runs == runs && profiles >= runs * PROFILES_PER_RUN
            })
            .then_some(())
    });
    if ready.is_none() {
        let counts: Vec<(&str, (u64, u64))> = versions.iter().map(|v| (*v, stored(v))).collect();
        // Which scrapes failed, and how: the collector counts every outcome per target.
        let (_, metrics) = server.get_text("/metrics");
        let scrapes: Vec<&str> = metrics.lines().filter(|l| l.starts_with("slo_gate_scrapes_total")).collect();
        panic!("not enough CPU profiles scraped (profiles, runs): {counts:?}\nscrapes:\n{}", scrapes.join("\n"));
    }
    drop(programs);
    server
}

/// `GET /api/v1/flamegraph/diff` between two versions, with extra query text.
fn diff(server: &Server, baseline: &str, candidate: &str, extra: &str) -> Value {
    let selector = |v: &str| format!("{{service_name=\"cpudilute\",service_version=\"{v}\"}}");
    let path = format!(
        "/api/v1/flamegraph/diff?type={}&baseline={}&candidate={}{extra}",
        e2e::url_encode(CPU_TYPE),
        e2e::url_encode(&selector(baseline)),
        e2e::url_encode(&selector(candidate)),
    );
    let (status, mut answer) = server.get(&path, None);
    assert_eq!(status, 200, "{answer:#}");
    // The differential tree is large and not needed here.
    answer.as_object_mut().map(|o| o.remove("flamegraph"));
    answer
}

fn flame_diff(server: &Server, baseline: &str, candidate: &str, extra: &[&str]) -> Output {
    Command::new(e2e::binary())
        .args(["flame", "diff", "--collector", &server.api_url(""), "--service", "cpudilute"])
        .args(["--baseline-version", baseline, "--candidate-version", candidate])
        .args(extra)
        .output()
        .expect("run slo-gate flame diff")
}

/// The reported functions with their kinds, in order.
fn reported(answer: &Value) -> Vec<(String, String)> {
    answer["regressions"]
        .as_array()
        .unwrap_or_else(|| panic!("no regressions: {answer:#}"))
        .iter()
        .map(|r| (r["function"].as_str().unwrap().to_string(), r["kind"].as_str().unwrap().to_string()))
        .collect()
}

/// Functions whose cost per request did not change.
const UNCHANGED: [&str; 2] = ["main.parse", "main.checksum"];

/// `main.encode` first as slower code, and nothing reported but it, the new work and the runtime.
fn assert_encode_first(answer: &Value, what: &str) {
    let found = reported(answer);
    let explanation = &answer["explanation"];
    // The whole answer (its tree removed by `diff`): the runtime's and the loads' numbers too.
    assert_eq!(
        found.first().map(|(f, k)| (f.as_str(), k.as_str())),
        Some(("main.encode", "slower")),
        "{what}: {found:?}\n{answer:#}"
    );
    for (function, kind) in &found[1..] {
        assert!(
            kind == "runtime"
                || (kind == "new_work" && ["main.refreshCache", "main.buildEntry"].contains(&function.as_str())),
            "{what}: {function} ({kind}) reported: {found:?}\n{explanation:#}"
        );
    }
    assert!(found.iter().all(|(f, _)| !UNCHANGED.contains(&f.as_str())), "{what}: {found:?}");
    let first = explanation[0].as_str().unwrap_or_default();
    assert!(first.starts_with("main.encode +"), "{what}: {explanation:#}");
}

#[test]
fn a_slower_function_is_named_through_new_gc_work_and_a_cpu_hog_and_a_a_is_silent() {
    let dir = tempfile::tempdir().unwrap();
    let bin = go::build(dir.path(), "cpudilute", &go::program("cpudilute"));
    let p = |version, mode, cpus| Proc { version, mode, cpus };

    // 1. Same load: per request (spans known) and per second name main.encode. Three processes a
    // side, as in phase 2: how much GC the candidates' new work costs differs between two
    // processes of the build (their runtime share scattered from 39% to 76% of the baseline's
    // CPU per request over eight runs), so the run-to-run variance can set the degrees of
    // freedom, and at R_b + R_c - 2 = 2 main.encode at z 4.5 had 95% confidence and once in CI
    // was not reported. A third process a side doubles them.
    let phase_dir = dir.path().join("same-load");
    let server = phase(
        &bin,
        &phase_dir,
        &[
            p("v1", "baseline", None),
            p("v1", "baseline", None),
            p("v1", "baseline", None),
            p("v2", "candidate", None),
            p("v2", "candidate", None),
            p("v2", "candidate", None),
        ],
        None,
        1,
    );
    let per_request = diff(&server, "v1", "v2", "");
    assert_eq!(per_request["normalization"], "per_unit", "{per_request:#}");
    assert_encode_first(&per_request, "per request");
    let encode = &per_request["regressions"][0]["self_share"];
    let pct = encode["change_pct"].as_f64().unwrap();
    // Designed +30%; measured beyond the shift all shared code shows, it scattered from +14% to
    // +53% over the runs of this test (100 Hz sampling, two processes a side, GC threads slowing
    // the functions unequally).
    assert!((5.0..80.0).contains(&pct), "main.encode per request {pct:+.0}% (designed +30%): {encode:#}");
    let runtime_line = per_request["explanation"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|l| l.starts_with("runtime ("))
        .unwrap_or_else(|| panic!("no runtime line: {:#}\n{:#}", per_request["explanation"], per_request["runtime"]))
        .to_string();
    assert!(
        runtime_line.contains("new allocation in main.buildEntry")
            || runtime_line.contains("new allocation in main.refreshCache"),
        "{runtime_line}"
    );
    let rate = diff(&server, "v1", "v2", "&normalize=rate");
    assert_eq!(rate["normalization"], "rate");
    assert_eq!(rate["loads_differ"], false, "{:#}", rate["load"]);
    assert_encode_first(&rate, "per second");
    // The CLI says the same, in the same order.
    let out = flame_diff(&server, "v1", "v2", &[]);
    let text = e2e::output_text(&out);
    assert!(out.status.success(), "{text}");
    let first_sentence = text.lines().find(|l| l.starts_with("- ")).unwrap_or_default();
    assert!(first_sentence.starts_with("- main.encode +"), "{text}");
    server.kill();

    // 2. The candidates share CPU 1 with a hog and serve fewer requests. Three processes a side:
    // next to the hog the two processes of one build drift apart (the scheduler shares CPU 1
    // unevenly), so their run-to-run variance sets the test's degrees of freedom; with two a side
    // that was R_b + R_c - 2 = 2, and main.encode's +40..+60% per request (z 5.3) was missed once
    // in CI at 95%. A third run a side doubles them.
    let phase_dir = dir.path().join("hog");
    let server = phase(
        &bin,
        &phase_dir,
        &[
            p("v1", "baseline", Some("0")),
            p("v1", "baseline", Some("0")),
            p("v1", "baseline", Some("0")),
            p("v2", "candidate", Some("1")),
            p("v2", "candidate", Some("1")),
            p("v2", "candidate", Some("1")),
        ],
        Some("1"),
        2,
    );
    let per_request = diff(&server, "v1", "v2", "");
    let ratio = per_request["load"]["ratio"].as_f64().unwrap_or(1.0);
    assert!(ratio < 0.9, "the hog should cut the candidates' requests: {:#}", per_request["load"]);
    assert_encode_first(&per_request, "per request under a hog");
    let rate = diff(&server, "v1", "v2", "&normalize=rate");
    assert_eq!(rate["loads_differ"], true, "{:#}", rate["load"]);
    assert!(
        rate["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap_or_default().starts_with("the loads differ")),
        "{:#}",
        rate["warnings"]
    );
    let out = flame_diff(&server, "v1", "v2", &["--normalize", "rate"]);
    assert!(e2e::output_text(&out).contains("note: the loads differ"), "{}", e2e::output_text(&out));
    server.kill();

    // 3. A/A over two seeds: the same build as two versions.
    for seed in [3, 4] {
        let phase_dir = dir.path().join(format!("a-a-{seed}"));
        let server = phase(
            &bin,
            &phase_dir,
            &[p("a", "baseline", None), p("a", "baseline", None), p("b", "baseline", None), p("b", "baseline", None)],
            None,
            seed,
        );
        for normalize in ["auto", "share", "rate", "per_request"] {
            let same = diff(&server, "a", "b", &format!("&normalize={normalize}&confidence=0.999"));
            assert_eq!(same["regressions"], serde_json::json!([]), "A/A seed {seed}, {normalize}: {same:#}");
            assert_eq!(same["runtime"]["reported"], false, "A/A seed {seed}, {normalize}: {:#}", same["runtime"]);
        }
        server.kill();
    }
}
