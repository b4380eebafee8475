//! The release gate on small contracts and synthetic data (fixed-seed SplitMix64), one
//! scenario per rule of `docs/contracts.md`. Each scenario's text report and findings are a
//! golden file in `tests/data/gate/`; two scenarios also keep their JSON, JUnit and Markdown
//! reports. Refresh with `UPDATE_EXPECT=1 cargo test -p analyzer --test gate_scenarios`.

use std::path::PathBuf;

use analyzer::compare::Verdict;
use analyzer::flame::Run;
use analyzer::gate::{
    self, GateError, GateInput, GateReport, MetricSample, MetricValue, PastRun, SideData, SpanRecord, report,
};
use analyzer::pprof::{self, Profile};
use slo_contracts::Contract;

/// The package's directory: where cargo runs this test from now (`CARGO_MANIFEST_DIR` at run
/// time), not where it was compiled, so a test binary built from another checkout of the same
/// sources with a shared target directory still reads this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
}

// ---------------------------------------------------------------------------------------
// Data generation

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

const T0: u64 = 1_780_000_000_000_000_000;
const MINUTE: u64 = 60_000_000_000;

/// How one side's spans are drawn.
#[derive(Clone)]
struct Load {
    seed: u64,
    n: usize,
    route: &'static str,
    version: &'static str,
    /// Median latency in milliseconds (log-normal).
    median_ms: f64,
    sigma: f64,
    error_rate: f64,
    /// Share of spans that take `slow_factor` times longer and run on node-7 90% of the time.
    slow_share: f64,
    slow_factor: f64,
}

impl Load {
    fn new(seed: u64, n: usize, version: &'static str, median_ms: f64) -> Self {
        Load {
            seed,
            n,
            route: "/api/checkout",
            version,
            median_ms,
            sigma: 0.4,
            error_rate: 0.0,
            slow_share: 0.0,
            slow_factor: 1.0,
        }
    }
}

fn spans(load: &Load) -> Vec<SpanRecord> {
    let mut rng = Rng(load.seed);
    (0..load.n)
        .map(|i| {
            let slow = rng.unit() < load.slow_share;
            let mut seconds = load.median_ms / 1000.0 * (load.sigma * rng.normal()).exp();
            let host = if slow {
                seconds *= load.slow_factor;
                if rng.unit() < 0.9 { 7 } else { 1 + rng.below(6) }
            } else if rng.unit() < 0.01 {
                7
            } else {
                1 + rng.below(6)
            };
            SpanRecord {
                time_unix_nano: T0 + (i as u64 * 10 * MINUTE) / load.n as u64,
                duration_seconds: seconds,
                name: format!("POST {}", load.route),
                route: Some(load.route.to_string()),
                error: rng.unit() < load.error_rate,
                attributes: vec![
                    ("service.version".into(), load.version.into()),
                    ("host.name".into(), format!("node-{host}")),
                    ("http.route".into(), load.route.into()),
                ],
            }
        })
        .collect()
}

fn side(version: &str, spans: Vec<SpanRecord>) -> SideData {
    SideData {
        versions: vec![version.to_string()],
        window: (T0, T0 + 10 * MINUTE),
        spans,
        metrics: Vec::new(),
        cpu_runs: Vec::new(),
        alloc_runs: Vec::new(),
        goroutine_runs: Vec::new(),
    }
}

fn contract(yaml: &str) -> Contract {
    let (mut contracts, diagnostics) = slo_contracts::parse("checkout.yaml", yaml);
    let errors: Vec<String> =
        diagnostics.iter().filter(|d| d.severity == slo_contracts::Severity::Error).map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "contract errors:\n{}", errors.join("\n"));
    assert_eq!(contracts.len(), 1);
    contracts.remove(0)
}

/// A contract for service checkout with `gate` lines and `objectives` lines.
fn yaml(gate: &str, objectives: &str) -> String {
    format!(
        "apiVersion: slo-gate/v1\nkind: Contract\nservice: checkout\nenvironment: staging\ngate:\n{gate}objectives:\n{objectives}"
    )
}

fn run(contract: &Contract, candidate: &SideData, baseline: Option<&SideData>, history: &[PastRun]) -> GateReport {
    gate::evaluate(&GateInput { contract, candidate, baseline, history })
}

// ---------------------------------------------------------------------------------------
// Golden files

fn data_dir() -> PathBuf {
    manifest_dir().join("tests/data/gate")
}

/// Compares `actual` with `tests/data/gate/NAME`, or rewrites it with `UPDATE_EXPECT=1`.
fn golden(name: &str, actual: &str) {
    let path = data_dir().join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e} (create it with UPDATE_EXPECT=1)", path.display()));
    assert!(expected == actual, "{name} differs from the golden file; rerun with UPDATE_EXPECT=1 to accept:\n{actual}");
}

/// The scenario's text report followed by every objective's findings, as a golden file.
fn check(name: &str, report: &GateReport) {
    let mut out = report::text(report);
    out.push_str("\n--- findings ---\n");
    for o in &report.objectives {
        out.push_str(&format!("{} [{} / counted {}]\n", o.name, o.verdict, o.counted_as));
        for f in &o.findings {
            out.push_str(&format!("  {f}\n"));
        }
    }
    golden(&format!("{name}.txt"), &out);
}

/// All four report forms, as golden files.
fn check_all_forms(name: &str, report: &GateReport) {
    check(name, report);
    golden(&format!("{name}.json"), &(serde_json::to_string_pretty(&report::json(report)).expect("json") + "\n"));
    golden(&format!("{name}.junit.xml"), &report::junit(report));
    golden(&format!("{name}.md"), &report::markdown(report));
}

fn objective<'r>(report: &'r GateReport, name: &str) -> &'r gate::ObjectiveResult {
    report.objectives.iter().find(|o| o.name == name).unwrap_or_else(|| panic!("no objective {name}"))
}

const BASELINE_142: &str = "  baseline: { version: \"1.4.2\" }\n";

// ---------------------------------------------------------------------------------------
// Latency

#[test]
fn latency_passes_under_its_limits() {
    let c = contract(&yaml(
        BASELINE_142,
        "  - name: checkout-latency\n    latency: { percentile: p95, route: /api/checkout }\n    fail: [\"<= 420ms\", \"<= +10%\"]\n",
    ));
    let cand = side("1.5.0", spans(&Load::new(1, 800, "1.5.0", 100.0)));
    let base = side("1.4.2", spans(&Load::new(2, 800, "1.4.2", 100.0)));
    let r = run(&c, &cand, Some(&base), &[]);
    assert_eq!(r.verdict, Verdict::Pass);
    assert!(!r.blocked);
    check("latency-pass", &r);
}

#[test]
fn latency_fails_an_absolute_limit() {
    let c = contract(&yaml(
        "  min_samples: 100\n",
        "  - name: checkout-latency\n    latency: { percentile: p95, route: /api/checkout }\n    fail: \"<= 420ms\"\n",
    ));
    let cand = side("1.5.0", spans(&Load::new(3, 500, "1.5.0", 300.0)));
    let r = run(&c, &cand, None, &[]);
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.blocked);
    let o = objective(&r, "checkout-latency");
    assert!(o.value.unwrap() > 0.42);
    assert!(r.reasons[0].contains("does not hold"), "{:?}", r.reasons);
    check("latency-fail-absolute", &r);
}

#[test]
fn absolute_limit_inside_the_interval_says_so() {
    // p95 right at the limit: the sentence says the CI straddles it.
    let c = contract(&yaml(
        "  min_samples: 100\n",
        "  - name: checkout-latency\n    latency: { percentile: p95, route: /api/checkout }\n    fail: \"<= 190ms\"\n",
    ));
    let cand = side("1.5.0", spans(&Load::new(4, 300, "1.5.0", 100.0)));
    let r = run(&c, &cand, None, &[]);
    let o = objective(&r, "checkout-latency");
    assert!(o.findings.iter().any(|f| f.contains("straddles")), "{:#?}", o.findings);
    check("latency-ci-straddles", &r);
}

#[test]
fn relative_limit_exceeded_and_significant_fails() {
    let c = contract(&yaml(
        BASELINE_142,
        "  - name: checkout-latency\n    latency: { percentile: p95, route: /api/checkout }\n    fail: \"<= +10%\"\n",
    ));
    let cand = side("1.5.0", spans(&Load::new(5, 1000, "1.5.0", 130.0)));
    let base = side("1.4.2", spans(&Load::new(6, 1000, "1.4.2", 100.0)));
    let r = run(&c, &cand, Some(&base), &[]);
    assert_eq!(r.verdict, Verdict::Fail);
    let o = objective(&r, "checkout-latency");
    assert_eq!(o.limits[0].significant, Some(true));
    assert!(o.p_value.as_ref().unwrap().value < 0.001);
    check("latency-relative-significant", &r);
}

#[test]
fn relative_limit_exceeded_without_significance_is_not_counted() {
    // Twenty spans a side: the candidate's two slowest spans push its p95 30% over the
    // baseline's, but nothing else moved; Mann-Whitney sees no slowdown.
    let c = contract(&yaml(
        "  baseline: { version: \"1.4.2\" }\n  min_samples: 20\n",
        "  - name: checkout-latency\n    latency: { percentile: p95, route: /api/checkout }\n    fail: \"<= +10%\"\n",
    ));
    let make = |version: &'static str, tail: [f64; 2]| {
        let mut s = spans(&Load::new(7, 20, version, 100.0));
        for (i, span) in s.iter_mut().enumerate() {
            span.duration_seconds = match i {
                18 => tail[0],
                19 => tail[1],
                _ => 0.100 + i as f64 * 0.001,
            };
        }
        side(version, s)
    };
    let cand = make("1.5.0", [0.150, 0.160]);
    let base = make("1.4.2", [0.118, 0.119]);
    let r = run(&c, &cand, Some(&base), &[]);
    let o = objective(&r, "checkout-latency");
    assert_eq!(o.verdict, Verdict::Pass, "{:#?}", o.findings);
    assert_eq!(o.limits[0].significant, Some(false));
    assert_eq!(r.verdict, Verdict::Pass);
    assert!(!r.blocked);
    check("latency-relative-not-significant", &r);
}

#[test]
fn too_few_spans_are_inconclusive_and_no_data_decides() {
    for (policy, counted, gate_verdict) in [
        ("fail", Verdict::Fail, Verdict::Fail),
        ("warn", Verdict::Warn, Verdict::Warn),
        ("pass", Verdict::Pass, Verdict::Pass),
    ] {
        let c = contract(&yaml(
            &format!("  min_samples: 100\n  no_data: {policy}\n"),
            "  - name: checkout-latency\n    latency: { percentile: p95, route: /api/checkout }\n    fail: \"<= 420ms\"\n",
        ));
        let cand = side("1.5.0", spans(&Load::new(8, 37, "1.5.0", 100.0)));
        let r = run(&c, &cand, None, &[]);
        let o = objective(&r, "checkout-latency");
        assert_eq!(o.verdict, Verdict::Inconclusive);
        assert_eq!(o.counted_as, counted);
        assert_eq!(o.reason.as_deref(), Some("candidate has 37 spans, the contract needs 100"));
        assert_eq!(r.verdict, gate_verdict);
        check(&format!("min-samples-no-data-{policy}"), &r);
    }
}

#[test]
fn a_route_that_never_appears_names_the_contract_line() {
    let c = contract(&yaml(
        "  min_samples: 100\n",
        "  - name: checkout-latency\n    latency: { percentile: p95, route: /api/chekout }\n    fail: \"<= 420ms\"\n",
    ));
    let cand = side("1.5.0", spans(&Load::new(9, 500, "1.5.0", 100.0)));
    let r = run(&c, &cand, None, &[]);
    let o = objective(&r, "checkout-latency");
    assert_eq!(o.verdict, Verdict::Inconclusive);
    assert_eq!(o.counted_as, Verdict::Fail);
    let reason = o.reason.as_deref().unwrap();
    assert!(reason.starts_with("route /api/chekout (checkout.yaml:9:"), "{reason}");
    assert!(reason.contains("never appears") && reason.contains("/api/checkout"), "{reason}");
    assert!(r.blocked);
    check("route-never-appears", &r);
}

#[test]
fn slow_spans_are_correlated_with_their_host() {
    let c = contract(&yaml(
        "  min_samples: 100\n",
        "  - name: checkout-latency\n    latency: { percentile: p95, route: /api/checkout }\n    fail: \"<= 200ms\"\n",
    ));
    let load = Load { slow_share: 0.05, slow_factor: 6.0, sigma: 0.2, ..Load::new(10, 4000, "1.5.0", 100.0) };
    let cand = side("1.5.0", spans(&load));
    let r = run(&c, &cand, None, &[]);
    let o = objective(&r, "checkout-latency");
    assert_eq!(o.verdict, Verdict::Fail);
    let top = o.correlation.first().expect("a correlation");
    assert_eq!((top.key.as_str(), top.value.as_str()), ("host.name", "node-7"));
    assert!(top.selection_pct > 80.0, "{top:?}");
    assert!(o.findings.iter().any(|f| f.contains("of slow spans have host.name=node-7")), "{:#?}", o.findings);
    check("latency-correlation", &r);
}

// ---------------------------------------------------------------------------------------
// Error rate and throughput

#[test]
fn error_rate_increase_at_small_counts_uses_fisher() {
    let c = contract(&yaml(
        BASELINE_142,
        "  - name: errors\n    error_rate: { route: /api/checkout }\n    fail: \"<= +10%\"\n",
    ));
    let cand = side("1.5.0", spans(&Load { error_rate: 0.02, ..Load::new(11, 300, "1.5.0", 100.0) }));
    let base = side("1.4.2", spans(&Load::new(12, 300, "1.4.2", 100.0)));
    let r = run(&c, &cand, Some(&base), &[]);
    let o = objective(&r, "errors");
    assert_eq!(o.p_value.as_ref().unwrap().test, "Fisher's exact test");
    assert_eq!(o.verdict, Verdict::Fail, "{:#?}", o.findings);
    check("error-rate-fisher", &r);
}

#[test]
fn throughput_below_its_floor_fails() {
    let c = contract(&yaml(
        "  min_samples: 100\n",
        "  - name: throughput\n    throughput: { route: /api/checkout }\n    fail: \">= 20/s\"\n    warn: \">= 1200/m\"\n",
    ));
    // 3,000 spans in ten minutes: 5/s.
    let cand = side("1.5.0", spans(&Load::new(13, 3000, "1.5.0", 100.0)));
    let r = run(&c, &cand, None, &[]);
    let o = objective(&r, "throughput");
    assert_eq!(o.value, Some(5.0));
    assert_eq!(o.verdict, Verdict::Fail);
    check("throughput-floor", &r);
}

// ---------------------------------------------------------------------------------------
// Metrics

fn gauge(name: &str, labels: &[(&str, &str)], minute: u64, v: f64) -> MetricSample {
    MetricSample {
        name: name.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        time_unix_nano: T0 + minute * MINUTE,
        value: MetricValue::Gauge(v),
    }
}

fn counter(name: &str, labels: &[(&str, &str)], minute: u64, v: f64) -> MetricSample {
    MetricSample { value: MetricValue::Counter { value: v, monotonic: true }, ..gauge(name, labels, minute, 0.0) }
}

fn metrics_side() -> SideData {
    let mut m = Vec::new();
    for minute in 0..=10 {
        m.push(gauge("queue_depth", &[("queue", "orders")], minute, 100.0 + 10.0 * minute as f64));
        m.push(gauge("queue_depth", &[("queue", "emails")], minute, 5000.0));
        // A counter reset after minute 5: 600/min before and after.
        let requests = if minute <= 5 { 600.0 * minute as f64 } else { 600.0 * (minute - 5) as f64 };
        m.push(counter("jobs_total", &[], minute, requests));
        m.push(counter("http_requests_total", &[("code", "200")], minute, 990.0 * minute as f64));
        m.push(counter("http_requests_total", &[("code", "500")], minute, 10.0 * minute as f64));
        // Cumulative histogram: per minute 90 under 0.1 s, 9 in (0.1, 0.5], 1 in (0.5, 1].
        let k = minute;
        m.push(MetricSample {
            name: "request_duration_seconds".into(),
            labels: vec![],
            time_unix_nano: T0 + minute * MINUTE,
            value: MetricValue::Histogram {
                bounds: vec![0.1, 0.5, 1.0],
                counts: vec![90 * k, 9 * k, k, 0],
                count: 100 * k,
                sum: 12.0 * k as f64,
                cumulative: true,
            },
        });
    }
    // Outside the window: ignored.
    m.push(gauge("queue_depth", &[("queue", "orders")], 30, 1e9));
    SideData { metrics: m, ..side("1.5.0", Vec::new()) }
}

#[test]
fn metric_aggregations() {
    let c = contract(&yaml(
        "  min_samples: 100\n",
        "  - name: queue-max\n    metric: { name: queue_depth, matchers: { queue: orders }, aggregation: max }\n    fail: \"<= 150\"\n\
         \x20 - name: queue-avg\n    metric: { name: queue_depth, matchers: { queue: orders }, aggregation: avg }\n    fail: \"<= 120\"\n\
         \x20 - name: jobs-rate\n    metric: { name: jobs_total, aggregation: rate }\n    fail: \">= 9.5\"\n\
         \x20 - name: duration-p99\n    metric: { name: request_duration_seconds, aggregation: p99 }\n    fail: \"<= 0.9\"\n",
    ));
    let r = run(&c, &metrics_side(), None, &[]);
    let value = |name| objective(&r, name).value.unwrap();
    assert_eq!(value("queue-max"), 200.0);
    assert_eq!(value("queue-avg"), 150.0);
    // 6,000 jobs in 600 s, across a reset.
    assert!((value("jobs-rate") - 10.0).abs() < 1e-9);
    // 1,000 observations: rank 990 is the last one of (0.1, 0.5]: 0.5.
    assert!((value("duration-p99") - 0.5).abs() < 1e-9);
    assert_eq!(objective(&r, "queue-max").verdict, Verdict::Fail);
    assert_eq!(objective(&r, "queue-avg").verdict, Verdict::Fail);
    assert_eq!(objective(&r, "jobs-rate").verdict, Verdict::Pass);
    assert_eq!(objective(&r, "duration-p99").verdict, Verdict::Pass);
    check("metric-aggregations", &r);
}

#[test]
fn metric_ratio_of_counters() {
    let c = contract(&yaml(
        "  min_samples: 100\n",
        "  - name: availability\n    metric:\n      ratio:\n        good: { name: http_requests_total, matchers: { code: \"200\" } }\n        total: { name: http_requests_total }\n    fail: \">= 99.5%\"\n    warn: \">= 99.9%\"\n",
    ));
    let r = run(&c, &metrics_side(), None, &[]);
    let o = objective(&r, "availability");
    assert!((o.value.unwrap() - 0.99).abs() < 1e-12);
    assert_eq!(o.verdict, Verdict::Fail);
    check("metric-ratio", &r);
}

// ---------------------------------------------------------------------------------------
// CPU profiles and goroutine leaks

/// The corpus' run `name` (one process, one CPU profile) as a run of the CPU comparison.
fn corpus_run(name: &str) -> Run {
    Run::new(name, vec![corpus_profile(name)])
}

fn corpus_profile(run: &str) -> Profile {
    let path = manifest_dir().join("../testdata/corpus/go-dev").join(run).join("cpu-10s.pb.gz");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    pprof::decode(&bytes).unwrap_or_else(|e| panic!("decode {}: {e}", path.display()))
}

#[test]
fn cpu_regression_names_the_slower_function() {
    let c = contract(&yaml(
        BASELINE_142,
        "  - name: cpu\n    cpu_regression: { min_change: 2, confidence: 0.95, share: self }\n  - name: leaks\n    goroutine_leak: { max_growth_per_minute: 1, min_duration: 2m }\n    on_violation: warn\n",
    ));
    let cand = SideData { cpu_runs: vec![corpus_run("slow")], ..side("1.5.0", Vec::new()) };
    // One run per side, the corpus' designed pair (two baseline runs 5 pp apart against one
    // candidate run are weak evidence: `flame_corpus::two_baseline_runs_against_one`).
    let base = SideData { cpu_runs: vec![corpus_run("fast")], ..side("1.4.2", Vec::new()) };
    let r = run(&c, &cand, Some(&base), &[]);
    let cpu = objective(&r, "cpu");
    assert_eq!(cpu.verdict, Verdict::Fail);
    assert_eq!(cpu.cpu_regressions[0].function, "main.sanitizeLabels");
    assert!(
        cpu.findings.iter().any(|f| f.starts_with("main.sanitizeLabels self share 42.8% -> 53.2%")),
        "{:#?}",
        cpu.findings
    );
    // No goroutine snapshots: the leak objective cannot judge growth.
    let leaks = objective(&r, "leaks");
    assert_eq!(leaks.verdict, Verdict::Inconclusive);
    assert!(leaks.findings[0].starts_with("growth cannot be judged: the candidate has 0 goroutine snapshots"));
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.reasons[0].contains("main.sanitizeLabels"), "{:?}", r.reasons);
    check("cpu-regression", &r);

    // A/A: the two fast runs against each other find nothing.
    let cand = SideData { cpu_runs: vec![corpus_run("fast-rerun")], ..side("1.5.0", Vec::new()) };
    let base = SideData { cpu_runs: vec![corpus_run("fast")], ..side("1.4.2", Vec::new()) };
    let r = run(&c, &cand, Some(&base), &[]);
    assert_eq!(objective(&r, "cpu").verdict, Verdict::Pass, "{:#?}", objective(&r, "cpu").findings);
}

/// Goroutine snapshots of the corpus' leaking program (`testdata/corpus/go-dev/fast`: nine
/// snapshots over 40 s; `main.closeWhenDone` and `main.collectResults` each leak about one
/// goroutine a second), as one process.
fn corpus_goroutines() -> Run {
    corpus_goroutines_as("fast")
}

/// [`corpus_goroutines`] as the process `id`.
fn corpus_goroutines_as(id: &str) -> Run {
    let dir = manifest_dir().join("../testdata/corpus/go-dev/fast");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("goroutine-t") && p.extension().unwrap() == "gz"
        })
        .collect();
    files.sort();
    let profiles = files.iter().map(|f| pprof::decode(&std::fs::read(f).unwrap()).unwrap()).collect();
    Run::new(id, profiles)
}

/// A process whose only goroutines are a pool of `n` workers blocked in a channel receive,
/// snapshotted every 20 s for three minutes: large and flat.
fn flat_goroutines(n: i64) -> Run {
    use analyzer::pprof::{Frame, ValueType};
    let frame = |f: &str| Frame { function: f.into(), ..Default::default() };
    let profiles = (0..10)
        .map(|i| Profile {
            time_nanos: T0 as i64 + i * 20_000_000_000,
            ..Profile::from_stacks(
                vec![ValueType { kind: "goroutine".into(), unit: "count".into() }],
                [(
                    ["runtime.gopark", "runtime.chanrecv", "runtime.chanrecv2", "main.worker"].map(frame).to_vec(),
                    vec![n],
                )],
            )
        })
        .collect();
    Run::new("pool", profiles)
}

#[test]
fn goroutine_leak_objective_finds_the_corpus_leak() {
    let leak_contract = |min_duration: &str| {
        contract(&yaml(
            "  min_samples: 100\n",
            &format!(
                "  - name: leaks\n    goroutine_leak: {{ max_growth_per_minute: 10, min_duration: {min_duration} }}\n"
            ),
        ))
    };
    let cand = SideData { goroutine_runs: vec![corpus_goroutines()], ..side("1.5.0", Vec::new()) };
    let r = run(&leak_contract("30s"), &cand, None, &[]);
    let leaks = objective(&r, "leaks");
    assert_eq!(leaks.verdict, Verdict::Fail, "{:#?}", leaks.findings);
    assert_eq!(leaks.findings[0], "2 goroutine leaks grow faster than 10/min for 30s, each in 1 of 1 process");
    assert!(leaks.findings.iter().any(|f| f.contains("main.closeWhenDone")), "{:#?}", leaks.findings);
    assert!(leaks.findings.iter().any(|f| f.contains("main.collectResults")), "{:#?}", leaks.findings);
    assert!(leaks.value.is_some_and(|v| (40.0..90.0).contains(&v)), "{:?}", leaks.value);
    check("goroutine-leak", &r);

    // Forty seconds of snapshots cannot show two minutes of growth.
    let r = run(&leak_contract("2m"), &cand, None, &[]);
    let leaks = objective(&r, "leaks");
    assert_eq!(leaks.verdict, Verdict::Inconclusive);
    assert!(leaks.findings[0].starts_with("the candidate's goroutine snapshots span 40 s"), "{:#?}", leaks.findings);

    // A large pool that stays flat passes.
    let cand = SideData { goroutine_runs: vec![flat_goroutines(500)], ..side("1.5.0", Vec::new()) };
    let r = run(&leak_contract("2m"), &cand, None, &[]);
    assert_eq!(objective(&r, "leaks").verdict, Verdict::Pass, "{:#?}", objective(&r, "leaks").findings);
}

// Issue 12: the same leak in two processes of the build is one finding with each process's
// rate, not one finding per process.
#[test]
fn a_leak_in_several_processes_is_one_finding() {
    let c = contract(&yaml(
        "  min_samples: 100\n",
        "  - name: leaks\n    goroutine_leak: { max_growth_per_minute: 10, min_duration: 30s }\n",
    ));
    let cand = SideData {
        goroutine_runs: vec![corpus_goroutines_as("pod-a"), corpus_goroutines_as("pod-b")],
        ..side("1.5.0", Vec::new())
    };
    let r = run(&c, &cand, None, &[]);
    let leaks = objective(&r, "leaks");
    assert_eq!(leaks.verdict, Verdict::Fail, "{:#?}", leaks.findings);
    assert_eq!(leaks.findings[0], "2 goroutine leaks grow faster than 10/min for 30s, each in 2 of 2 processes");
    assert_eq!(leaks.findings.len(), 3, "{:#?}", leaks.findings);
    for (finding, function) in leaks.findings[1..].iter().zip(["main.closeWhenDone", "main.collectResults"]) {
        assert!(finding.starts_with(function), "{finding}");
        assert!(finding.contains(" in 2 of 2 processes, about 60/min per process: pod-a: 60/min"), "{finding}");
        assert!(finding.contains("; pod-b: 60/min"), "{finding}");
    }
}

#[test]
fn goroutine_leak_objective_without_snapshots_is_no_data() {
    let c = contract(&yaml(
        "  min_samples: 100\n  score: { pass: 90, warn: 75 }\n",
        "  - name: latency\n    latency: { percentile: p95 }\n    fail: \"<= 420ms\"\n  - name: leaks\n    goroutine_leak:\n",
    ));
    let r = run(&c, &side("1.5.0", spans(&Load::new(14, 500, "1.5.0", 100.0))), None, &[]);
    assert_eq!(objective(&r, "leaks").verdict, Verdict::Inconclusive);
    // The contract's `no_data` policy (fail by default) decides.
    assert_eq!(r.verdict, Verdict::Fail);
    check("goroutine-leak-no-data", &r);
}

// ---------------------------------------------------------------------------------------
// Gate outcome: key objectives, score, consecutive failures

const THREE_OBJECTIVES: &str = "  - name: checkout-latency\n    latency: { percentile: p95, route: /api/checkout }\n    fail: \"<= 150ms\"\n    key: KEY\n    weight: 1\n\
\x20 - name: errors\n    error_rate: { route: /api/checkout }\n    fail: \"< 1%\"\n    weight: 2\n\
\x20 - name: throughput\n    throughput: { route: /api/checkout }\n    fail: \">= 1/s\"\n    warn: \">= 20/s\"\n    weight: 1\n";

#[test]
fn a_failing_key_objective_fails_the_gate_despite_the_score() {
    let c = contract(&yaml(
        "  min_samples: 100\n  score: { pass: 60, warn: 40 }\n",
        &THREE_OBJECTIVES.replace("KEY", "true"),
    ));
    let r = run(&c, &side("1.5.0", spans(&Load::new(15, 3000, "1.5.0", 100.0))), None, &[]);
    // latency fails (0 of 1), errors pass (2), throughput warns (0.5 of 1): 62.5%.
    assert_eq!(r.score, Some(62.5));
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.reasons.iter().any(|s| s.contains("key objective checkout-latency failed")), "{:?}", r.reasons);
    check("key-objective-fails-gate", &r);
}

#[test]
fn score_thresholds_decide_without_key_objectives() {
    for (thresholds, expected) in [
        ("{ pass: 60, warn: 40 }", Verdict::Pass),
        ("{ pass: 90, warn: 60 }", Verdict::Warn),
        ("{ pass: 90, warn: 75 }", Verdict::Fail),
    ] {
        let c = contract(&yaml(
            &format!("  min_samples: 100\n  score: {thresholds}\n"),
            &THREE_OBJECTIVES.replace("KEY", "false"),
        ));
        let r = run(&c, &side("1.5.0", spans(&Load::new(15, 3000, "1.5.0", 100.0))), None, &[]);
        assert_eq!(r.score, Some(62.5));
        assert_eq!(r.verdict, expected, "{thresholds}");
    }
    // Without thresholds any failure fails.
    let c = contract(&yaml("  min_samples: 100\n", &THREE_OBJECTIVES.replace("KEY", "false")));
    let r = run(&c, &side("1.5.0", spans(&Load::new(15, 3000, "1.5.0", 100.0))), None, &[]);
    assert_eq!(r.verdict, Verdict::Fail);
    check("score-without-thresholds", &r);
}

fn past(version: &str, verdict: Verdict) -> PastRun {
    PastRun { version: version.into(), time_unix_nano: T0, verdict, objectives: Vec::new() }
}

#[test]
fn consecutive_failures_block_at_the_third() {
    let c = contract(&yaml(
        "  min_samples: 100\n  consecutive_failures: 3\n",
        "  - name: checkout-latency\n    latency: { percentile: p95 }\n    fail: \"<= 100ms\"\n",
    ));
    let cand = side("1.5.3", spans(&Load::new(16, 500, "1.5.3", 100.0)));
    let fail = Verdict::Fail;
    // Newest first.
    let cases: [(&[PastRun], u32, bool); 5] = [
        (&[], 1, false),
        (&[past("1.5.2", fail)], 2, false),
        (&[past("1.5.2", fail), past("1.5.1", fail)], 3, true),
        (&[past("1.5.2", fail), past("1.5.1", Verdict::Pass), past("1.5.0", fail)], 2, false),
        (&[past("1.5.2", Verdict::Warn), past("1.5.1", fail), past("1.5.0", fail)], 1, false),
    ];
    for (history, streak, blocked) in cases {
        let r = run(&c, &cand, None, history);
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!((r.failure_streak, r.blocked), (streak, blocked), "{history:?}");
        let line = report::outcome_line(&r);
        if blocked {
            assert_eq!(line, "GATE FAILED: release blocked");
        } else {
            assert_eq!(line, format!("GATE FAILED (not blocking: {streak} of 3 consecutive failures)"));
            assert!(
                r.reasons.iter().any(|s| s
                    == &format!("failed {streak} of the 3 consecutive builds the contract requires before blocking"))
            );
        }
    }
    check("consecutive-failures-first", &run(&c, &cand, None, &[]));
}

#[test]
fn baseline_versions_follow_the_policy() {
    use slo_contracts::{Baseline, GatePolicy};
    let policy = |b: Option<Baseline>| GatePolicy { baseline: b, ..GatePolicy::default() };
    let history = [
        past("1.5.0", Verdict::Fail),
        past("1.4.9", Verdict::Fail),
        past("1.4.8", Verdict::Warn),
        past("1.4.9", Verdict::Pass),
        past("1.4.7", Verdict::Pass),
    ];
    let versions =
        |p: &GatePolicy, h: &[PastRun], explicit: Option<&str>| gate::baseline_versions(p, h, explicit, "1.5.0");
    // The flag wins.
    assert_eq!(versions(&policy(Some(Baseline::LastPassing)), &history, Some("1.0.0")), Ok(vec!["1.0.0".into()]));
    assert_eq!(versions(&policy(Some(Baseline::Version("1.4.2".into()))), &history, None), Ok(vec!["1.4.2".into()]));
    // A warning passed the gate.
    assert_eq!(versions(&policy(Some(Baseline::LastPassing)), &history, None), Ok(vec!["1.4.8".into()]));
    assert_eq!(
        versions(&policy(Some(Baseline::Previous(3))), &history, None),
        Ok(vec!["1.4.9".into(), "1.4.8".into(), "1.4.7".into()])
    );
    assert_eq!(versions(&policy(Some(Baseline::Previous(1))), &history, None), Ok(vec!["1.4.9".into()]));
    assert_eq!(versions(&policy(None), &history, None), Ok(vec![]));
    // Errors: nothing passed yet; nothing but the candidate itself.
    let failing = [past("1.4.9", Verdict::Fail), past("1.5.0", Verdict::Pass)];
    let err = versions(&policy(Some(Baseline::LastPassing)), &failing, None).unwrap_err();
    assert_eq!(err, GateError::NoPassingBuild);
    assert_eq!(err.to_string(), "no passing build in the history yet: run with --baseline VERSION once");
    let err = versions(&policy(Some(Baseline::Previous(3))), &[past("1.5.0", Verdict::Pass)], None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no previous build other than 1.5.0 in the history yet: run with --baseline VERSION once"
    );
}

#[test]
fn relative_limit_without_baseline_data_is_inconclusive() {
    let c = contract(&yaml(
        "  baseline: last_passing\n  no_data: warn\n",
        "  - name: checkout-latency\n    latency: { percentile: p95 }\n    fail: \"<= +10%\"\n",
    ));
    let r = run(&c, &side("1.5.0", spans(&Load::new(17, 500, "1.5.0", 100.0))), None, &[]);
    let o = objective(&r, "checkout-latency");
    assert_eq!((o.verdict, o.counted_as), (Verdict::Inconclusive, Verdict::Warn));
    assert!(o.reason.as_deref().unwrap().contains("there is no baseline data"), "{:?}", o.reason);
    assert_eq!(r.verdict, Verdict::Warn);
}

// ---------------------------------------------------------------------------------------
// Full reports

fn full_contract() -> Contract {
    contract(&yaml(
        "  baseline: { version: \"1.4.2\" }\n  min_samples: 100\n  consecutive_failures: 2\n",
        "  - name: checkout-latency\n    description: P95 of the checkout route\n    latency: { percentile: p95, route: /api/checkout }\n    fail: [\"<= 420ms\", \"<= +10%\"]\n    warn: \"<= 380ms\"\n    key: true\n    weight: 2\n\
         \x20 - name: errors\n    error_rate: { route: /api/checkout }\n    fail: [\"< 1%\", \"<= +10%\"]\n\
         \x20 - name: throughput\n    throughput: { route: /api/checkout }\n    fail: \">= 2/s\"\n\
         \x20 - name: availability\n    metric:\n      ratio:\n        good: { name: http_requests_total, matchers: { code: \"200\" } }\n        total: { name: http_requests_total }\n    fail: \">= 98%\"\n\
         \x20 - name: leaks\n    goroutine_leak: { max_growth_per_minute: 1, min_duration: 2m }\n    on_violation: warn\n",
    ))
}

#[test]
fn full_report_failing() {
    let load = Load { slow_share: 0.08, slow_factor: 5.0, error_rate: 0.002, ..Load::new(20, 3000, "1.5.0", 120.0) };
    let cand = SideData { metrics: metrics_side().metrics, ..side("1.5.0", spans(&load)) };
    let base = SideData {
        metrics: metrics_side().metrics,
        ..side("1.4.2", spans(&Load { error_rate: 0.002, ..Load::new(21, 3000, "1.4.2", 100.0) }))
    };
    let r = run(&full_contract(), &cand, Some(&base), &[past("1.4.9", Verdict::Fail)]);
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.blocked);
    assert!(r.reasons[0].starts_with("checkout-latency (key objective) failed"), "{:?}", r.reasons);
    check_all_forms("full-failing", &r);
}

#[test]
fn full_report_passing() {
    let load = |seed, version| Load { error_rate: 0.002, ..Load::new(seed, 3000, version, 100.0) };
    let cand = SideData {
        metrics: metrics_side().metrics,
        goroutine_runs: vec![flat_goroutines(200)],
        ..side("1.5.0", spans(&load(22, "1.5.0")))
    };
    let base = SideData { metrics: metrics_side().metrics, ..side("1.4.2", spans(&load(23, "1.4.2"))) };
    let r = run(&full_contract(), &cand, Some(&base), &[]);
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reasons);
    assert_eq!(report::outcome_line(&r), "GATE PASSED");
    check_all_forms("full-passing", &r);
}

#[test]
fn a_slow_latency_objective_names_the_functions_whose_cpu_share_grew() {
    // No cpu_regression objective: the latency objective alone, with CPU profiles on both sides.
    let c = contract(&yaml(
        BASELINE_142,
        "  - name: checkout-latency\n    latency: { percentile: p95, route: /api/checkout }\n    fail: \"<= +10%\"\n",
    ));
    let cand =
        SideData { cpu_runs: vec![corpus_run("slow")], ..side("1.5.0", spans(&Load::new(5, 1000, "1.5.0", 130.0))) };
    let base =
        SideData { cpu_runs: vec![corpus_run("fast")], ..side("1.4.2", spans(&Load::new(6, 1000, "1.4.2", 100.0))) };
    let r = run(&c, &cand, Some(&base), &[]);
    let o = objective(&r, "checkout-latency");
    assert_eq!(o.verdict, Verdict::Fail);
    assert_eq!(o.cpu_regressions.first().map(|f| f.function.as_str()), Some("main.sanitizeLabels"));
    assert!(
        o.findings.iter().any(|f| f.starts_with("CPU profiles: main.sanitizeLabels self share")),
        "{:#?}",
        o.findings
    );
    assert!(r.reasons[0].contains("CPU share grew in main.sanitizeLabels"), "{:?}", r.reasons);

    // A passing latency objective does not go looking.
    let cand =
        SideData { cpu_runs: vec![corpus_run("slow")], ..side("1.5.0", spans(&Load::new(7, 1000, "1.5.0", 100.0))) };
    let r = run(&c, &cand, Some(&base), &[]);
    assert!(objective(&r, "checkout-latency").cpu_regressions.is_empty());
}
