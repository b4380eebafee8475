//! Acceptance targets of the release gate (issue 4), measured on realistic data: log-normal
//! latencies (median 80–120 ms, σ 0.3–0.6), errors at 0.1–5%, drawn with SplitMix64 from fixed
//! seeds, turned into `SpanRecord`s and judged by `gate::evaluate` on contracts parsed with
//! `slo_contracts::parse`. Each test prints its measured rate (`--nocapture`).
//!
//! 1. **A/A** — baseline and candidate from one distribution, 500 seeds per variant, 200–5,000
//!    spans a side (drawn independently per side, mostly small), a contract with a p95 latency
//!    objective and an error-rate objective, both `<= +10%` (or both `<= +5%`), at the default
//!    level (0.05 shared by the two relative limits): the gate fails in at most 1% of seeds.
//!    Measured: 4 of 500 (0.8%) for `+10%`, 4 of 500 (0.8%) for `+5%`, every one an
//!    error-rate fluke of the baseline (e.g. 2 errors in 200 spans at a true 5% rate). A rule
//!    testing against no change instead of the allowed change would fail 1.4% and 2.4%.
//!    Before the error-rate margin test rounded the allowance in the contract's favour and
//!    used Fisher's exact test at every count (`analyzer/src/gate/errors.rs`), 5 and 5 of 500.
//! 2. **Power** — every candidate duration × 1.10, 2,000 spans a side, 200 seeds, a contract
//!    with the latency objective `fail: "<= +5%"`: the objective's `p_value` is below 0.05 in
//!    100% of seeds at every σ, and the objective fails in 98.5% of seeds at σ 0.3–0.4
//!    (asserted ≥ 95%). At σ 0.5 it fails in 86% and at σ 0.6 in 70%: there "more than +5%"
//!    cannot be shown 95% of the time with 2,000 spans by *any* test that keeps the +5%
//!    allowance at level 0.05 (the z-test on log durations, optimal for this shift, has 90%
//!    and 79%; 95% at σ 0.6 needs about 3,800 spans a side). Those are asserted to stay within
//!    12 points of that bound, not at 95%.
//! 3. **Small samples** — 20 spans a side (default `min_samples` 100), A/A or a candidate 3×
//!    slower with 10× the errors: every objective is `Inconclusive` with the reason "candidate
//!    has 20 spans ..., the contract needs 100", never `Pass`; it counts as fail by default
//!    (the gate fails), as warn with `no_data: warn`, and as pass only with `no_data: pass`.
//!    One short side (20 or 99) is enough to be inconclusive; 100 a side is conclusive.

use analyzer::compare::Verdict;
use analyzer::gate::{self, GateInput, GateReport, SideData, SpanRecord};
use slo_contracts::Contract;

/// SplitMix64 (Steele, Lea and Flood 2014): a fixed seed gives the same data on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * self.unit()).cos()
    }
}

const T0: u64 = 1_780_000_000_000_000_000;
const WINDOW: u64 = 600_000_000_000;

/// How one side's spans are drawn: log-normal durations, independent errors.
#[derive(Debug, Clone, Copy)]
struct Population {
    /// Median duration, seconds.
    median: f64,
    /// Standard deviation of the log duration.
    sigma: f64,
    /// Probability that a span is an error.
    error_rate: f64,
    /// Every duration is multiplied by this (1.10 for a +10% regression).
    scale: f64,
}

fn side(seed: u64, n: usize, population: Population, version: &str) -> SideData {
    let mut rng = Rng(seed);
    let spans = (0..n)
        .map(|i| SpanRecord {
            time_unix_nano: T0 + i as u64 * (WINDOW / n as u64),
            duration_seconds: population.scale * population.median * (population.sigma * rng.normal()).exp(),
            name: "POST /api/checkout".into(),
            route: Some("/api/checkout".into()),
            error: rng.unit() < population.error_rate,
            attributes: vec![
                ("service.version".into(), version.into()),
                ("host.name".into(), format!("node-{}", 1 + rng.next() % 4)),
            ],
        })
        .collect();
    SideData { versions: vec![version.into()], window: (T0, T0 + WINDOW), spans, ..SideData::default() }
}

/// A contract with a p95 latency objective and an error-rate objective, both `<= +{limit}%`,
/// judged against version 1.0.0 (`extra_gate` goes into `gate:`).
fn contract(latency_limit: &str, error_limit: Option<&str>, extra_gate: &str) -> Contract {
    let mut yaml = format!(
        "apiVersion: slo-gate/v1\nkind: Contract\nservice: checkout\n\
         gate:\n  baseline: {{ version: \"1.0.0\" }}\n{extra_gate}\
         objectives:\n  - name: checkout-latency\n    latency: {{ percentile: p95, route: /api/checkout }}\n    fail: \"{latency_limit}\"\n"
    );
    if let Some(limit) = error_limit {
        yaml.push_str(&format!(
            "  - name: checkout-errors\n    error_rate: {{ route: /api/checkout }}\n    fail: \"{limit}\"\n"
        ));
    }
    let (mut contracts, diagnostics) = slo_contracts::parse("checkout.yaml", &yaml);
    assert_eq!(contracts.len(), 1, "{yaml}\n{diagnostics:?}");
    contracts.remove(0)
}

fn evaluate(contract: &Contract, candidate: &SideData, baseline: &SideData) -> GateReport {
    gate::evaluate(&GateInput { contract, candidate, baseline: Some(baseline), history: &[] })
}

/// Sample size per side in 200..=5,000: `200 · 25^(u²)`, so most draws are small (the median
/// is about 420) and the slow large ones are few.
fn sample_size(rng: &mut Rng) -> usize {
    let u = rng.unit();
    (200.0 * 25.0_f64.powf(u * u)).round() as usize
}

/// The parameters of one seed: realistic checkout latencies (median 80–120 ms, σ 0.3–0.6),
/// an error rate of 0.1–5%, and 200–5,000 spans a side.
fn draw_population(rng: &mut Rng) -> Population {
    Population {
        median: 0.08 + 0.04 * rng.unit(),
        sigma: 0.3 + 0.3 * rng.unit(),
        error_rate: 0.001 + 0.049 * rng.unit(),
        scale: 1.0,
    }
}

fn seed_rng(salt: u64, seed: u64) -> Rng {
    Rng(salt ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D))
}

/// What the A/A loop counts.
#[derive(Debug, Default)]
struct AaTally {
    seeds: u64,
    /// Gates whose verdict is fail.
    failed: u64,
    /// Gates a rule without the margin would have failed: a relative limit exceeded with the
    /// plain "candidate worse" test (the objective's `p_value`) below the per-limit level.
    failed_without_margin: u64,
    /// Failing gates, described.
    examples: Vec<String>,
}

fn run_aa(limit: &str, seeds: u64, salt: u64) -> AaTally {
    let contract = contract(limit, Some(limit), "");
    let alpha = gate::per_limit_alpha(&contract);
    let mut tally = AaTally { seeds, ..AaTally::default() };
    for seed in 0..seeds {
        let mut rng = seed_rng(salt, seed);
        let population = draw_population(&mut rng);
        let (nb, nc) = (sample_size(&mut rng), sample_size(&mut rng));
        let base = side(rng.next(), nb, population, "1.0.0");
        let cand = side(rng.next(), nc, population, "1.1.0");
        let report = evaluate(&contract, &cand, &base);
        for o in &report.objectives {
            assert_ne!(o.verdict, Verdict::Inconclusive, "seed {seed}: {:?}", o.findings);
        }
        if report.verdict == Verdict::Fail {
            tally.failed += 1;
            tally.examples.push(format!("seed {seed}, {nb}/{nc} spans, {population:?}: {:?}", report.reasons));
        }
        let plain = report.objectives.iter().any(|o| {
            let exceeded = o.limits.iter().any(|l| l.relative && l.held == Some(false));
            exceeded && o.p_value.as_ref().is_some_and(|p| p.value < alpha)
        });
        if plain {
            tally.failed_without_margin += 1;
        }
    }
    eprintln!(
        "A/A, latency p95 and error rate both {limit:?}: {} of {} gates failed ({:.2}%); a rule testing against \
         no change instead of the allowed change would have failed {} ({:.2}%)",
        tally.failed,
        tally.seeds,
        percent(tally.failed, tally.seeds),
        tally.failed_without_margin,
        percent(tally.failed_without_margin, tally.seeds),
    );
    for example in &tally.examples {
        eprintln!("  {example}");
    }
    tally
}

fn percent(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole as f64
}

/// Target 1 with `<= +10%` limits.
#[test]
fn aa_fails_at_most_one_percent_of_gates_with_ten_percent_limits() {
    let tally = run_aa("<= +10%", 500, 0xA11C_E010);
    assert!(tally.failed * 100 <= tally.seeds, "{} of {} A/A gates failed", tally.failed, tally.seeds);
}

/// Target 1 with `<= +5%` limits: half the room, the same guarantee.
#[test]
fn aa_fails_at_most_one_percent_of_gates_with_five_percent_limits() {
    let tally = run_aa("<= +5%", 500, 0xA11C_E005);
    assert!(tally.failed * 100 <= tally.seeds, "{} of {} A/A gates failed", tally.failed, tally.seeds);
}

/// What the power loop counts.
#[derive(Debug, Default)]
struct PowerTally {
    seeds: u64,
    /// The latency objective's `p_value` (Mann-Whitney, candidate slower) is below 0.05.
    significant: u64,
    /// ... and the `<= +5%` objective's verdict is fail.
    detected: u64,
}

/// Candidate = the baseline's distribution with every duration × 1.10, 2,000 spans a side,
/// `sigma` drawn per seed from `sigmas`; the contract has the one latency objective
/// `fail: "<= +5%"` (so its test runs at the full 0.05).
fn run_power(sigmas: (f64, f64), seeds: u64, salt: u64) -> PowerTally {
    let contract = contract("<= +5%", None, "");
    assert_eq!(gate::per_limit_alpha(&contract), gate::SIGNIFICANCE);
    let mut tally = PowerTally { seeds, ..PowerTally::default() };
    for seed in 0..seeds {
        let mut rng = seed_rng(salt, seed);
        let population =
            Population { sigma: sigmas.0 + (sigmas.1 - sigmas.0) * rng.unit(), ..draw_population(&mut rng) };
        let base = side(rng.next(), 2_000, population, "1.0.0");
        let cand = side(rng.next(), 2_000, Population { scale: 1.10, ..population }, "1.1.0");
        let report = evaluate(&contract, &cand, &base);
        let latency = &report.objectives[0];
        let significant = latency.p_value.as_ref().is_some_and(|p| p.value < 0.05);
        tally.significant += u64::from(significant);
        tally.detected += u64::from(significant && latency.verdict == Verdict::Fail);
    }
    eprintln!(
        "power, p95 +10% with 2,000 spans a side, sigma {}–{}: significant increase in {} of {} seeds ({:.1}%), \
         `<= +5%` failed and significant in {} ({:.1}%); best possible test of \"more than +5%\": {:.1}%",
        sigmas.0,
        sigmas.1,
        tally.significant,
        tally.seeds,
        percent(tally.significant, tally.seeds),
        tally.detected,
        percent(tally.detected, tally.seeds),
        100.0 * best_power(sigmas),
    );
    tally
}

/// The power of the most powerful level-0.05 test of "the candidate is more than 5% slower"
/// when it is 10% slower, for a log-normal scale shift with 2,000 values a side: the z-test on
/// log durations, `Φ(ln(1.10 / 1.05) / (σ·√(2/n)) − z₀.₉₅)`, averaged over σ in `sigmas`. No
/// rule that keeps the allowed +5% from failing more than 5% of the time can beat it.
fn best_power(sigmas: (f64, f64)) -> f64 {
    use analyzer::compare::special::{normal_cdf, normal_quantile};
    let steps = 100;
    (0..steps)
        .map(|i| {
            let sigma = sigmas.0 + (sigmas.1 - sigmas.0) * (i as f64 + 0.5) / steps as f64;
            let z = (1.10_f64 / 1.05).ln() / (sigma * (2.0 / 2_000.0_f64).sqrt());
            normal_cdf(z - normal_quantile(0.95))
        })
        .sum::<f64>()
        / steps as f64
}

/// Target 2 where it can be met: σ 0.3–0.4.
#[test]
fn a_ten_percent_shift_fails_a_five_percent_limit_in_95_percent_of_seeds() {
    let tally = run_power((0.3, 0.4), 200, 0xB0B0_0304);
    assert!(tally.detected * 100 >= tally.seeds * 95, "{tally:?}");
}

/// Target 2 on wider distributions (σ 0.5 and 0.6), where "more than +5%" cannot be shown
/// 95% of the time with 2,000 spans a side by any test that keeps the +5% allowance (the
/// bound of [`best_power`]: 90% at σ 0.5, 79% at σ 0.6; 95% at σ 0.6 needs about 3,800 a
/// side). The plain increase is still significant in at least 95% of seeds, and the rule
/// stays within a few points of the best possible test.
#[test]
fn on_wider_distributions_the_power_is_close_to_the_best_possible() {
    for (sigma, salt) in [(0.5, 0xB0B0_0500), (0.6, 0xB0B0_0600)] {
        let tally = run_power((sigma, sigma), 200, salt);
        assert!(tally.significant * 100 >= tally.seeds * 95, "sigma {sigma}: {tally:?}");
        let rate = tally.detected as f64 / tally.seeds as f64;
        // The rule also needs the point estimate past +5%, which costs a few points more.
        assert!(rate >= best_power((sigma, sigma)) - 0.12, "sigma {sigma}: {tally:?}");
    }
}

/// Target 3: 20 spans a side is below the default `min_samples` of 100, so each objective is
/// inconclusive (never pass), whatever the data says, and counts as `gate.no_data` says:
/// fail by default (the gate fails), pass only when the contract writes `no_data: pass`.
#[test]
fn twenty_spans_a_side_are_inconclusive_and_never_pass_by_accident() {
    let default = contract("<= +10%", Some("<= +10%"), "");
    let warn = contract("<= +10%", Some("<= +10%"), "  no_data: warn\n");
    let pass = contract("<= +10%", Some("<= +10%"), "  no_data: pass\n");
    assert_eq!(default.gate.min_samples, 100);
    let mut rng = Rng(0x5_3A11);
    for seed in 0..100_u64 {
        let population = draw_population(&mut rng);
        // Half A/A, half a candidate three times slower with ten times the errors: too few
        // spans is inconclusive either way.
        let candidate_population = if seed % 2 == 0 {
            population
        } else {
            Population { scale: 3.0, error_rate: (population.error_rate * 10.0).min(1.0), ..population }
        };
        let base = side(rng.next(), 20, population, "1.0.0");
        let cand = side(rng.next(), 20, candidate_population, "1.1.0");
        for (contract, counted) in [(&default, Verdict::Fail), (&warn, Verdict::Warn), (&pass, Verdict::Pass)] {
            let report = evaluate(contract, &cand, &base);
            for o in &report.objectives {
                assert_eq!(o.verdict, Verdict::Inconclusive, "seed {seed} {}: {:?}", o.name, o.findings);
                assert_eq!(o.counted_as, counted, "seed {seed} {}", o.name);
                let reason = o.reason.as_deref().unwrap_or_default();
                assert!(reason.contains("candidate has 20 spans"), "seed {seed}: {reason}");
                assert!(reason.contains("the contract needs 100"), "seed {seed}: {reason}");
            }
            assert_eq!(report.verdict, counted, "seed {seed}: {:?}", report.reasons);
        }
    }
}

/// Target 3 at the edges: one short side is enough to be inconclusive (a relative limit has
/// nothing to compare with), and exactly `min_samples` a side is conclusive.
#[test]
fn one_short_side_is_inconclusive_and_the_minimum_itself_is_enough() {
    let default = contract("<= +10%", Some("<= +10%"), "");
    let population = Population { median: 0.1, sigma: 0.45, error_rate: 0.02, scale: 1.0 };
    for (nb, nc) in [(2_000, 20), (20, 2_000), (99, 100), (100, 99)] {
        let report = evaluate(&default, &side(1, nc, population, "1.1.0"), &side(2, nb, population, "1.0.0"));
        for o in &report.objectives {
            assert_eq!(o.verdict, Verdict::Inconclusive, "{nb}/{nc} {}: {:?}", o.name, o.findings);
            assert_eq!(o.counted_as, Verdict::Fail);
        }
        assert_eq!(report.verdict, Verdict::Fail);
    }
    let report = evaluate(&default, &side(1, 100, population, "1.1.0"), &side(2, 100, population, "1.0.0"));
    for o in &report.objectives {
        assert_ne!(o.verdict, Verdict::Inconclusive, "{}: {:?}", o.name, o.findings);
    }
}
