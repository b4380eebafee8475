//! Properties of the release gate: an A/A comparison (baseline and candidate drawn from one
//! distribution) never fails the gate, and the order spans and points arrive in does not
//! change the report. Proptest runs with a fixed RNG seed so CI is reproducible; the A/A
//! false-alarm rate of the rule itself is measured in `aa_false_alarm_rate_is_small`.

use analyzer::compare::Verdict;
use analyzer::gate::{self, GateInput, GateReport, MetricSample, MetricValue, SideData, SpanRecord};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use slo_contracts::Contract;

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

const T0: u64 = 1_780_000_000_000_000_000;
const WINDOW: u64 = 600_000_000_000;

/// Log-normal latencies around `median` seconds, errors at `error_rate`, hosts node-1..4.
fn side(seed: u64, n: usize, median: f64, sigma: f64, error_rate: f64, version: &str) -> SideData {
    let mut rng = Rng(seed);
    let spans = (0..n)
        .map(|i| SpanRecord {
            time_unix_nano: T0 + i as u64 * (WINDOW / n as u64),
            duration_seconds: median * (sigma * rng.normal()).exp(),
            name: "GET /api/cart".into(),
            route: Some("/api/cart".into()),
            error: rng.unit() < error_rate,
            attributes: vec![
                ("service.version".into(), version.into()),
                ("host.name".into(), format!("node-{}", 1 + rng.next() % 4)),
            ],
        })
        .collect();
    let metrics = (0..=10)
        .flat_map(|m| {
            let t = T0 + m * WINDOW / 10;
            [
                MetricSample {
                    name: "queue_depth".into(),
                    labels: vec![("queue".into(), "orders".into())],
                    time_unix_nano: t,
                    value: MetricValue::Gauge((rng.unit() * 100.0).round()),
                },
                MetricSample {
                    name: "jobs_total".into(),
                    labels: vec![],
                    time_unix_nano: t,
                    value: MetricValue::Counter { value: 60.0 * m as f64, monotonic: true },
                },
            ]
        })
        .collect();
    SideData {
        versions: vec![version.into()],
        window: (T0, T0 + WINDOW),
        spans,
        metrics,
        cpu_runs: Vec::new(),
        alloc_runs: Vec::new(),
        goroutine_runs: Vec::new(),
    }
}

fn aa_contract() -> Contract {
    let yaml = concat!(
        "apiVersion: slo-gate/v1\nkind: Contract\nservice: cart\n",
        "gate:\n  baseline: { version: \"1.0.0\" }\n  min_samples: 100\n",
        "objectives:\n",
        "  - name: latency\n    latency: { percentile: p95, route: /api/cart }\n    fail: \"<= +10%\"\n",
        "  - name: errors\n    error_rate: { route: /api/cart }\n    fail: \"<= +10%\"\n",
    );
    let (mut contracts, diagnostics) = slo_contracts::parse("cart.yaml", yaml);
    assert_eq!(contracts.len(), 1, "{diagnostics:?}");
    contracts.remove(0)
}

fn evaluate(contract: &Contract, candidate: &SideData, baseline: &SideData) -> GateReport {
    gate::evaluate(&GateInput { contract, candidate, baseline: Some(baseline), history: &[] })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_seed: RngSeed::Fixed(0x5107_6a7e), ..ProptestConfig::default() })]

    /// PRODUCT.md: "a gate that fails an A/A comparison is a bug". Relative limits fail only
    /// when exceeded *and* significant, so noise between two runs of one build warns at most.
    #[test]
    fn an_aa_comparison_never_fails_the_gate(
        seed in any::<u64>(),
        n_base in 100_usize..1500,
        n_cand in 100_usize..1500,
        median in 0.005_f64..0.5,
        sigma in 0.1_f64..1.0,
        error_rate in 0.0_f64..0.05,
    ) {
        let contract = aa_contract();
        let base = side(seed, n_base, median, sigma, error_rate, "1.0.0");
        let cand = side(seed ^ 0xA5A5_A5A5_A5A5_A5A5, n_cand, median, sigma, error_rate, "1.1.0");
        let report = evaluate(&contract, &cand, &base);
        prop_assert_ne!(report.verdict, Verdict::Fail, "{:#?}", report.reasons);
    }

    /// The order spans and metric points arrive in does not change anything in the report.
    #[test]
    fn shuffling_the_input_does_not_change_the_report(seed in any::<u64>(), n in 100_usize..800) {
        let contract = aa_contract();
        let base = side(seed, n, 0.1, 0.5, 0.02, "1.0.0");
        let cand = side(seed.wrapping_add(1), n, 0.12, 0.5, 0.03, "1.1.0");
        let report = evaluate(&contract, &cand, &base);
        let mut rng = Rng(seed ^ 0x5eed);
        let (mut base2, mut cand2) = (base.clone(), cand.clone());
        for data in [&mut base2, &mut cand2] {
            shuffle(&mut data.spans, &mut rng);
            shuffle(&mut data.metrics, &mut rng);
        }
        prop_assert_eq!(report, evaluate(&contract, &cand2, &base2));
    }
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
}

/// How often the rule fails an A/A comparison, over 1,000 fixed draws of the proptest's
/// parameters (sizes 100–1,500 a side, error rates 0–5%). Relative limits are tested against
/// the baseline moved by the allowed change, at 5% shared between the contract's two relative
/// fail limits, so the gate's false alarms stay well under 5%; what remains are error-rate
/// flukes at small counts (1 error in 265 baseline spans against 18 in 746), where the allowed
/// +10% is less than one error and the test is Fisher's plain one. The proptest above checks
/// "never" on its fixed cases; this test keeps the rate itself in check.
#[test]
fn aa_false_alarm_rate_is_small() {
    let contract = aa_contract();
    let mut params = Rng(0xAA);
    let (mut fails, mut warns, trials) = (0, 0, 1000);
    for trial in 0..trials {
        let n_base = 100 + (params.next() % 1400) as usize;
        let n_cand = 100 + (params.next() % 1400) as usize;
        let median = 0.005 + params.unit() * 0.5;
        let sigma = 0.1 + params.unit() * 0.9;
        let error_rate = params.unit() * 0.05;
        let base = side(trial * 2, n_base, median, sigma, error_rate, "1.0.0");
        let cand = side(trial * 2 + 1, n_cand, median, sigma, error_rate, "1.1.0");
        match evaluate(&contract, &cand, &base).verdict {
            Verdict::Fail => fails += 1,
            Verdict::Warn => warns += 1,
            _ => {}
        }
    }
    eprintln!("A/A: {fails} failing and {warns} warning gates in {trials}");
    assert!(fails * 100 <= trials * 2, "{fails} of {trials} A/A comparisons failed the gate");
}

/// At the contract's minimum of 100 spans a side (the noisiest latency percentiles), no A/A
/// comparison of 400 fails.
#[test]
fn aa_at_the_minimum_sample_size_does_not_fail() {
    let contract = aa_contract();
    for seed in 0..400_u64 {
        let base = side(seed * 2, 100, 0.1, 0.6, 0.03, "1.0.0");
        let cand = side(seed * 2 + 1, 100, 0.1, 0.6, 0.03, "1.1.0");
        let report = evaluate(&contract, &cand, &base);
        assert_ne!(report.verdict, Verdict::Fail, "seed {seed}: {:#?}", report.reasons);
    }
}

#[test]
fn metric_objectives_are_order_independent_too() {
    let yaml = concat!(
        "apiVersion: slo-gate/v1\nkind: Contract\nservice: cart\nobjectives:\n",
        "  - name: queue\n    metric: { name: queue_depth, matchers: { queue: orders }, aggregation: avg }\n",
        "    fail: \"<= 1000\"\n",
        "  - name: jobs\n    metric: { name: jobs_total, aggregation: rate }\n    fail: \">= 0.5\"\n",
    );
    let (contracts, diagnostics) = slo_contracts::parse("cart.yaml", yaml);
    assert_eq!(contracts.len(), 1, "{diagnostics:?}");
    let cand = side(9, 10, 0.1, 0.5, 0.0, "1.1.0");
    let mut shuffled = cand.clone();
    shuffled.metrics.reverse();
    let run = |c: &SideData| {
        gate::evaluate(&GateInput { contract: &contracts[0], candidate: c, baseline: None, history: &[] })
    };
    let (a, b) = (run(&cand), run(&shuffled));
    assert_eq!(a, b);
    assert_eq!(a.objectives[1].value, Some(1.0));
}
