//! The `cpu_regression` objective under each normalization (ADR 0008), on a simulated Go
//! service: two processes per build, ten 5 s CPU profiles each at 100 Hz (Poisson sample counts,
//! a speed factor per process and per profile), SERVER spans for the requests served, and two
//! cumulative allocation snapshots per process. The candidate's `main.encode` costs 30% more per
//! request and a new background task, `main.refreshCache`, allocates 50 MB/s and keeps the GC
//! busy (+60% on the whole profile, as in the live run the ADR quotes). Each sentence form of the
//! report is a golden file in `tests/data/gate/`; refresh with
//! `UPDATE_EXPECT=1 cargo nextest run --workspace -E 'binary(cpu_normalization)'`.

use analyzer::compare::Verdict;
use analyzer::flame::Run;
use analyzer::gate::{self, GateInput, GateReport, ObjectiveResult, SideData, SpanRecord, report};
use analyzer::pprof::{Frame, Profile, ValueType};
use slo_contracts::Contract;

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

const T0: u64 = 1_780_000_000_000_000_000;
const SECOND: u64 = 1_000_000_000;
/// Profiles per process, one every 10 s, each 5 s long.
const PROFILES: u64 = 10;
const PROFILE_SECONDS: u64 = 5;
/// Requests arriving per second at every process (each costs about 2 ms of CPU: 30% of a core).
const RATE: f64 = 150.0;

/// One build: CPU per request of each request-path function (µs), and background CPU (ms per
/// second) of the runtime and of other work, by stack (root first).
struct Build {
    version: &'static str,
    parse_us: f64,
    encode_us: f64,
    checksum_us: f64,
    /// Background stacks with their CPU in ms per second of wall time.
    background: Vec<(Vec<&'static str>, f64)>,
    /// Allocated bytes per second by allocating function.
    allocation: Vec<(&'static str, f64)>,
}

fn baseline_build() -> Build {
    Build {
        version: "1.4.2",
        parse_us: 400.0,
        encode_us: 800.0,
        checksum_us: 740.0,
        background: vec![
            (vec!["runtime.gcBgMarkWorker", "runtime.gcDrain", "runtime.scanobject"], 8.0),
            (vec!["runtime.mcall", "runtime.schedule", "runtime.findRunnable"], 6.0),
        ],
        allocation: vec![("main.encode", 2048.0 * RATE)],
    }
}

/// `main.encode` 30% slower per request, `main.refreshCache` new, and the GC it causes. As in the
/// live run of ADR 0008, the GC's threads slow every function of the candidate by 15% (the
/// other core of a 2-core machine is busy): the unchanged functions must not be reported for it.
fn candidate_build() -> Build {
    const CONTENTION: f64 = 1.15;
    let base = baseline_build();
    let mut build = Build {
        version: "1.5.0",
        parse_us: base.parse_us * CONTENTION,
        encode_us: 1040.0 * CONTENTION,
        checksum_us: base.checksum_us * CONTENTION,
        ..base
    };
    build.background = vec![
        (vec!["runtime.gcBgMarkWorker", "runtime.gcDrain", "runtime.scanobject"], 80.0),
        (vec!["runtime.gcBgMarkWorker", "runtime.gcDrain", "runtime.scanobject", "runtime.findObject"], 28.0),
        (vec!["runtime.gcBgMarkWorker", "runtime.gcDrain", "runtime.greyobject"], 16.0),
        (vec!["runtime.mcall", "runtime.schedule", "runtime.findRunnable"], 6.0),
        (vec!["main.refreshCache"], 12.0),
        (vec!["main.refreshCache", "runtime.mallocgc"], 32.0),
    ];
    build.allocation.push(("main.refreshCache", 50e6));
    build
}

/// What one process of a build did: its CPU profiles, allocation snapshots and served spans.
struct Process {
    cpu: Run,
    allocs: Run,
    spans: Vec<SpanRecord>,
}

fn frames(stack: &[&str]) -> Vec<Frame> {
    stack.iter().rev().map(|f| Frame { function: (*f).into(), ..Default::default() }).collect()
}

/// Simulates process `index` of `build` serving `load` times the arrival rate.
fn process(build: &Build, index: usize, load: f64, rng: &mut Rng) -> Process {
    let id = format!("{}/10.0.0.{}:6060", build.version, index + 1);
    let speed = 1.0 + 0.03 * rng.normal();
    let served = RATE * load;
    let request =
        [("main.parse", build.parse_us), ("main.encode", build.encode_us), ("main.checksum", build.checksum_us)];
    let mut cpu = Vec::new();
    for i in 0..PROFILES {
        let jitter = speed * (1.0 + 0.05 * rng.normal());
        // Expected 10 ms samples of each stack in a 5 s profile.
        let mut stacks: Vec<(Vec<&str>, f64)> = request
            .iter()
            .map(|&(f, us)| (vec!["main.main", "main.serve", "main.handle", f], us * 1e-6 * served * jitter * 100.0))
            .collect();
        stacks.extend(build.background.iter().map(|(s, ms)| (s.clone(), ms * 1e-3 * jitter * 100.0)));
        let samples: Vec<(Vec<Frame>, Vec<i64>)> = stacks
            .iter()
            .map(|(s, per_second)| {
                let n = rng.poisson(per_second * PROFILE_SECONDS as f64);
                (frames(s), vec![n, n * 10_000_000])
            })
            .filter(|(_, v)| v[0] > 0)
            .collect();
        let vt = |kind: &str, unit: &str| ValueType { kind: kind.into(), unit: unit.into() };
        cpu.push(Profile {
            time_nanos: (T0 + i * 10 * SECOND) as i64,
            duration_nanos: (PROFILE_SECONDS * SECOND) as i64,
            period: 10_000_000,
            period_type: Some(vt("cpu", "nanoseconds")),
            ..Profile::from_stacks(vec![vt("samples", "count"), vt("cpu", "nanoseconds")], samples)
        });
    }
    let end = T0 + ((PROFILES - 1) * 10 + PROFILE_SECONDS) * SECOND;
    let allocs = [T0, end]
        .iter()
        .map(|&t| {
            let seconds = (t - T0) as f64 / 1e9 + 60.0;
            let vt = |kind: &str| ValueType { kind: kind.into(), unit: "bytes".into() };
            let samples = build.allocation.iter().map(|&(f, per_second)| {
                // Request-path allocation follows the requests served; background work does not.
                let scale = if f == "main.encode" { load } else { 1.0 };
                let bytes = (per_second * scale * seconds) as i64;
                (frames(&["main.main", f]), vec![bytes, bytes / 10])
            });
            Profile {
                time_nanos: t as i64,
                ..Profile::from_stacks(vec![vt("alloc_space"), vt("inuse_space")], samples)
            }
        })
        .collect();
    let n = (served * (end - T0) as f64 / 1e9) as u64;
    let spans = (0..n)
        .map(|k| SpanRecord {
            time_unix_nano: T0 + k * (end - T0) / n,
            duration_seconds: 0.002,
            name: "GET /work".into(),
            route: Some("/work".into()),
            error: false,
            attributes: Vec::new(),
        })
        .collect();
    Process { cpu: Run::new(id.clone(), cpu), allocs: Run::new(id, allocs), spans }
}

/// Two processes of `build` at `load` times the arrival rate; with `spans`, the work is known.
fn side(build: &Build, load: f64, spans: bool, seed: u64) -> SideData {
    let mut rng = Rng(seed);
    let processes: Vec<Process> = (0..2).map(|i| process(build, i, load, &mut rng)).collect();
    let end = T0 + 100 * SECOND;
    SideData {
        versions: vec![build.version.to_string()],
        window: (T0, end),
        spans: if spans { processes.iter().flat_map(|p| p.spans.clone()).collect() } else { Vec::new() },
        metrics: Vec::new(),
        cpu_runs: processes.iter().map(|p| p.cpu.clone()).collect(),
        alloc_runs: processes.iter().map(|p| p.allocs.clone()).collect(),
        goroutine_runs: Vec::new(),
    }
}

fn contract(normalize: &str) -> Contract {
    let yaml = format!(
        "apiVersion: slo-gate/v1\nkind: Contract\nservice: checkout\ngate:\n  baseline: {{ version: \"1.4.2\" }}\n\
         objectives:\n  - name: cpu\n    cpu_regression: {{ min_change: 1, confidence: 0.95{normalize} }}\n"
    );
    let (mut contracts, diagnostics) = slo_contracts::parse("checkout.yaml", &yaml);
    assert!(diagnostics.iter().all(|d| d.severity != slo_contracts::Severity::Error), "{diagnostics:?}");
    contracts.remove(0)
}

fn evaluate(normalize: &str, candidate: &SideData, baseline: &SideData) -> GateReport {
    gate::evaluate(&GateInput { contract: &contract(normalize), candidate, baseline: Some(baseline), history: &[] })
}

fn cpu(report: &GateReport) -> &ObjectiveResult {
    &report.objectives[0]
}

fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
}

/// The report and the objective's findings against `tests/data/gate/NAME.txt` (`UPDATE_EXPECT=1`
/// rewrites it).
fn golden(name: &str, report: &GateReport) {
    let mut actual = report::text(report);
    actual.push_str("\n--- findings ---\n");
    for f in &cpu(report).findings {
        actual.push_str(&format!("{f}\n"));
    }
    let path = manifest_dir().join("tests/data/gate").join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &actual).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(expected == actual, "{name} differs from the golden file; rerun with UPDATE_EXPECT=1 to accept:\n{actual}");
}

/// The reported functions, in order, with their kinds.
fn found(report: &GateReport) -> Vec<(String, &'static str)> {
    cpu(report).cpu_regressions.iter().map(|r| (r.function.clone(), r.kind.name())).collect()
}

const UNCHANGED: [&str; 2] = ["main.parse", "main.checksum"];

#[test]
fn per_request_names_the_slower_function_first_and_charges_the_gc_to_the_new_allocator() {
    let (base, cand) = (side(&baseline_build(), 1.0, true, 1), side(&candidate_build(), 1.0, true, 2));
    let r = evaluate("", &cand, &base);
    let o = cpu(&r);
    assert_eq!(o.cpu_normalization, Some("per_unit"));
    assert_eq!(o.verdict, Verdict::Fail);
    let found = found(&r);
    assert_eq!(found[0], ("main.encode".to_string(), "slower"), "{found:?}");
    assert!(found.iter().all(|(f, _)| !UNCHANGED.contains(&f.as_str())), "{found:?}");
    assert!(found.iter().skip(1).all(|(_, k)| *k != "slower"), "{found:?}");
    let encode = &o.cpu_regressions[0].self_share;
    // +30% by design; each process's speed draw moves it by a few percent.
    assert!((20.0..45.0).contains(&encode.change_pct.unwrap()), "{encode:?}");
    let gc = o.findings.iter().find(|f| f.starts_with("runtime (GC")).expect("a runtime line");
    assert!(gc.contains("new allocation in main.refreshCache (+50.0 MB/s per process, +333 KB per request)"), "{gc}");
    golden("cpu-per-request", &r);
}

#[test]
fn without_work_and_with_equal_loads_the_rate_names_the_slower_function() {
    let (base, cand) = (side(&baseline_build(), 1.0, false, 1), side(&candidate_build(), 1.0, false, 2));
    let r = evaluate("", &cand, &base);
    assert_eq!(cpu(&r).cpu_normalization, Some("rate"));
    let found = found(&r);
    assert_eq!(found[0], ("main.encode".to_string(), "slower"), "{found:?}");
    assert!(found.iter().all(|(f, _)| !UNCHANGED.contains(&f.as_str())), "{found:?}");
    golden("cpu-rate", &r);
}

#[test]
fn shares_are_diluted_by_new_work_and_say_so_when_chosen() {
    // What the contract asked for before ADR 0008: the GC's growth shrinks every other share, so
    // the slower function's share falls and only the runtime and the new task are reported.
    let (base, cand) = (side(&baseline_build(), 1.0, true, 1), side(&candidate_build(), 1.0, true, 2));
    let r = evaluate(", normalize: share", &cand, &base);
    assert_eq!(cpu(&r).cpu_normalization, Some("share"));
    let found = found(&r);
    assert!(found.iter().all(|(f, _)| f != "main.encode" && !UNCHANGED.contains(&f.as_str())), "{found:?}");
    golden("cpu-share-diluted", &r);
}

#[test]
fn under_a_cpu_hog_per_request_still_names_the_function_and_the_rate_says_the_loads_differ() {
    // The candidate's processes get less CPU and serve 70% of the requests.
    let (base, cand) = (side(&baseline_build(), 1.0, true, 1), side(&candidate_build(), 0.7, true, 2));
    let r = evaluate("", &cand, &base);
    assert_eq!(cpu(&r).cpu_normalization, Some("per_unit"));
    let found = found(&r);
    assert_eq!(found[0], ("main.encode".to_string(), "slower"), "{found:?}");
    assert!(found.iter().all(|(f, _)| !UNCHANGED.contains(&f.as_str())), "{found:?}");
    golden("cpu-hog-per-request", &r);

    let r = evaluate(", normalize: rate", &cand, &base);
    let o = cpu(&r);
    assert_eq!(o.verdict, Verdict::Inconclusive);
    assert!(o.findings[0].starts_with("CPU per second cannot be compared: the baseline did 150"), "{:?}", o.findings);
    golden("cpu-hog-rate", &r);

    // Without work counts the loads are judged from the unchanged functions' CPU per second
    // (15% less here, near the tolerance once counting noise is allowed for); whichever way it
    // goes, the slower function comes first and the unchanged ones are not reported: under CPU
    // per second the shift all shared code shows is taken out before functions are compared.
    let (base, cand) = (side(&baseline_build(), 1.0, false, 1), side(&candidate_build(), 0.7, false, 2));
    let r = evaluate("", &cand, &base);
    let kinds = self::found(&r);
    assert_eq!(kinds[0], ("main.encode".to_string(), "slower"), "{:#?}", cpu(&r).findings);
    assert!(kinds.iter().all(|(f, _)| !UNCHANGED.contains(&f.as_str())), "{kinds:?}");
}

#[test]
fn a_a_is_silent_under_every_normalization_over_seeds() {
    for seed in 0..6 {
        for normalize in ["", ", normalize: share", ", normalize: rate", ", normalize: per_request"] {
            let base = side(&baseline_build(), 1.0, true, 100 + seed);
            let cand = SideData { versions: vec!["1.5.0".into()], ..side(&baseline_build(), 1.0, true, 200 + seed) };
            let r = evaluate(normalize, &cand, &base);
            assert_eq!(cpu(&r).verdict, Verdict::Pass, "seed {seed}{normalize}: {:#?}", cpu(&r).findings);
        }
    }
}

#[test]
fn a_work_counter_gives_cpu_per_unit_of_it() {
    use analyzer::gate::{MetricSample, MetricValue};
    // Each process counts its requests in `http_requests_total` every 10 s, and restarts once.
    let with_counter = |mut side: SideData, per_second: f64| {
        side.spans.clear();
        for (i, run) in side.cpu_runs.iter().enumerate() {
            for k in 0..=10u64 {
                let value = per_second * (k * 10) as f64;
                side.metrics.push(MetricSample {
                    name: "http_requests_total".into(),
                    labels: vec![("instance".into(), run.id.clone()), ("job".into(), "api".into())],
                    time_unix_nano: T0 + k * 10 * SECOND,
                    value: MetricValue::Counter {
                        value: if i == 1 && k >= 5 { value - per_second * 50.0 } else { value },
                        monotonic: true,
                    },
                });
            }
        }
        side
    };
    let base = with_counter(side(&baseline_build(), 1.0, true, 1), RATE);
    let cand = with_counter(side(&candidate_build(), 0.7, true, 2), RATE * 0.7);
    let r = evaluate(", work: { name: http_requests_total, matchers: { job: api } }", &cand, &base);
    let o = cpu(&r);
    assert_eq!(o.cpu_normalization, Some("per_unit"));
    assert_eq!(found(&r)[0], ("main.encode".to_string(), "slower"));
    assert!(o.findings[1].contains("CPU per unit of http_requests_total"), "{:?}", o.findings);
    assert!(o.findings.iter().any(|f| f.contains("-30%")), "{:?}", o.findings);
}
