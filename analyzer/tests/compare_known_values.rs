//! Known values for the comparison statistics, one `check` helper per feature.
//!
//! Sources: R's documented `wilcox.test` example (Hollander and Wolfe's permeability data:
//! `W = 35, p-value = 0.1272` one-sided exact, `0.1103` normal without correction), Mann-Whitney
//! critical-value tables, Conover's order-statistic tables, Newcombe (1998, table II) for
//! Wilson intervals, Fisher's tea-tasting table, and values worked by hand (exact rational
//! arithmetic) where noted.

use analyzer::compare::{
    self, Counts, PValueMethod, ProportionMethod, hodges_lehmann, mann_whitney, order_statistic_ranks, percentile,
    percentile_ci, percentile_ci_min_samples, rate_increase_test, sort_finite, u_null_distribution, wilson_interval,
};

fn close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!((actual - expected).abs() <= tolerance, "{what}: got {actual}, expected {expected} ± {tolerance}");
}

/// Hollander and Wolfe (1973, p. 69): permeability at term (the "candidate") and at 12–26 weeks.
const TERM: [f64; 10] = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46];
const EARLY: [f64; 5] = [1.15, 0.88, 0.90, 0.74, 1.21];

fn sorted(values: &[f64]) -> Vec<f64> {
    sort_finite(values.iter().copied()).expect("finite")
}

#[test]
fn percentiles_use_nearest_rank() {
    fn check(values: &[f64], q: f64, expected: Option<f64>) {
        assert_eq!(percentile(&sorted(values), q), expected, "p{q} of {values:?}");
    }
    let ten: Vec<f64> = (1..=10).map(f64::from).collect();
    // R: quantile(1:10, c(.5, .9, .95, .99, .01), type = 1) = 5 9 10 10 1
    check(&ten, 50.0, Some(5.0));
    check(&ten, 90.0, Some(9.0));
    check(&ten, 95.0, Some(10.0));
    check(&ten, 99.0, Some(10.0));
    check(&ten, 1.0, Some(1.0));
    let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
    // 95% of 100 is exactly 95 despite 0.95 · 100 = 95.00000000000001 in binary.
    check(&hundred, 95.0, Some(95.0));
    check(&hundred, 99.9, Some(100.0));
    check(&hundred, 0.5, Some(1.0));
    check(&[7.0], 99.0, Some(7.0));
    check(&[], 50.0, None);
    check(&ten, 0.0, None);
    check(&ten, 100.0, None);
    check(&ten, f64::NAN, None);
}

#[test]
fn percentile_interval_ranks_match_binomial_tables() {
    fn check(n: usize, q: f64, confidence: f64, expected: (usize, usize)) {
        assert_eq!(order_statistic_ranks(n, q, confidence).expect("ranks"), expected, "n={n} p{q} {confidence}");
    }
    // Conover, Practical Nonparametric Statistics, table A3 and §3.2 examples; checked with exact
    // rational binomial sums.
    check(20, 50.0, 0.95, (6, 15)); // coverage 0.9586
    check(100, 50.0, 0.95, (40, 61)); // coverage 0.9648
    check(100, 90.0, 0.95, (84, 96)); // coverage 0.9557
    check(1000, 99.0, 0.95, (983, 997)); // coverage 0.9761
    // Normal approximation (n > 10 000): symmetric around n/2 for the median.
    let (l, u) = order_statistic_ranks(1_000_000, 50.0, 0.95).expect("ranks");
    assert_eq!((l, u), (499_020, 500_981));
}

#[test]
fn percentile_interval_needs_enough_samples() {
    fn check(q: f64, confidence: f64, needed: usize) {
        assert_eq!(percentile_ci_min_samples(q, confidence).expect("valid"), needed, "p{q}");
        assert!(order_statistic_ranks(needed, q, confidence).is_ok(), "p{q} with {needed}");
        let err = order_statistic_ranks(needed - 1, q, confidence).expect_err("too few");
        assert!(matches!(err, compare::CompareError::TooFewSamples { needed: n, .. } if n == needed), "{err}");
    }
    // 0.99ⁿ ≤ 0.025 first holds at n = 368, 0.5ⁿ at n = 6, 0.999ⁿ at 3688; 0.95ⁿ ≤ 0.005 at 104
    // (checked in exact rationals).
    check(99.0, 0.95, 368);
    check(50.0, 0.95, 6);
    check(99.9, 0.95, 3688);
    check(95.0, 0.99, 104);
    let err = percentile_ci(&[1.0; 100], 99.0, 0.95).expect_err("too few");
    assert_eq!(err.to_string(), "95% CI of p99 needs at least 368 values, got 100");
}

#[test]
fn mann_whitney_matches_r() {
    struct Expect {
        u: f64,
        p_greater: f64,
        p_two_sided: f64,
        method: PValueMethod,
    }
    fn check(baseline: &[f64], candidate: &[f64], e: Expect) {
        let r = mann_whitney(&sorted(baseline), &sorted(candidate)).expect("test");
        assert_eq!(r.u_candidate, e.u);
        assert_eq!(r.u_candidate + r.u_baseline, (baseline.len() * candidate.len()) as f64);
        assert_eq!(r.method, e.method);
        close(r.p_greater, e.p_greater, 1e-4, "p_greater");
        close(r.p_two_sided, e.p_two_sided, 1e-4, "p_two_sided");
    }
    // wilcox.test(x, y, alternative = "greater"): W = 35, p-value = 0.1272 (exact, 382/3003).
    check(&EARLY, &TERM, Expect { u: 35.0, p_greater: 0.1272, p_two_sided: 0.2544, method: PValueMethod::Exact });
    // Swapped sides: W = 15, and "greater" becomes the other tail: P(U ≥ 15) = 1 − P(U ≤ 14).
    check(&TERM, &EARLY, Expect { u: 15.0, p_greater: 0.8968, p_two_sided: 0.2544, method: PValueMethod::Exact });
    // Complete separation, 5 + 5: p = 1/C(10, 5) = 1/252.
    let low = [1.0, 2.0, 3.0, 4.0, 5.0];
    let high = [6.0, 7.0, 8.0, 9.0, 10.0];
    check(
        &low,
        &high,
        Expect { u: 25.0, p_greater: 1.0 / 252.0, p_two_sided: 2.0 / 252.0, method: PValueMethod::Exact },
    );
    // With ties (normal, tie and continuity corrected), worked by hand: the merged values
    // 1 2 2 2 3 3 3 4 have mid-ranks 1; 3 3 3; 6 6 6; 8. Candidate {2, 3, 3, 4}: 3 + 6 + 6 + 8 = 23,
    // U = 23 − 10 = 13. Σ(t³ − t) = 24 + 24 = 48; σ² = 16/12 · (9 − 48/56) = 10.857142…,
    // z = (13 − 8 − 0.5)/3.29502 = 1.36570; 1 − Φ(z) = 0.086016.
    check(
        &[1.0, 2.0, 2.0, 3.0],
        &[2.0, 3.0, 3.0, 4.0],
        Expect { u: 13.0, p_greater: 0.086_016, p_two_sided: 0.172_03, method: PValueMethod::Normal },
    );
}

#[test]
fn mann_whitney_large_sample_normal_approximation() {
    // 50 + 50 without ties leaves the exact range; the R example's statistic scaled up: here
    // candidate = baseline + 0.5 for a clean, hand-checkable U.
    let baseline: Vec<f64> = (0..50).map(f64::from).collect();
    let candidate: Vec<f64> = (0..50).map(|i| f64::from(i) + 10.5).collect();
    let r = mann_whitney(&baseline, &candidate).expect("test");
    // Pairs with c > b: for c_i = i + 10.5, b_j < c_i for j ≤ i + 10 → min(i + 11, 50) pairs.
    let u: usize = (0..50).map(|i| (i + 11).min(50)).sum();
    assert_eq!(r.u_candidate, u as f64);
    assert_eq!(r.method, PValueMethod::Normal);
    let sd = (50.0 * 50.0 * 101.0 / 12.0_f64).sqrt();
    let z = (u as f64 - 1250.0 - 0.5) / sd;
    close(r.z, z, 1e-12, "z");
    close(r.p_greater, compare::special::normal_sf(z), 1e-15, "p");
}

#[test]
fn exact_null_distribution_matches_tables() {
    fn check(m: usize, n: usize, u: usize, cumulative: f64) {
        let dist = u_null_distribution(m, n).expect("small");
        let p: f64 = dist[..=u].iter().sum();
        close(p, cumulative, 5e-5, &format!("P(U ≤ {u}) for {m}, {n}"));
    }
    let three = u_null_distribution(3, 3).expect("small");
    let counts: Vec<f64> = three.iter().map(|p| (p * 20.0).round()).collect();
    assert_eq!(counts, [1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 2.0, 1.0, 1.0]);
    // Critical values for n₁ = n₂ = 10: 23 two-sided at 5%, 27 one-sided at 5%.
    check(10, 10, 23, 0.021_63);
    check(10, 10, 24, 0.026_21);
    check(10, 10, 27, 0.044_60);
    check(10, 10, 28, 0.052_56);
    // P(U ≤ 8) for 10 and 5 (the Hollander–Wolfe sizes): 0.01998 (60/3003).
    check(10, 5, 8, 60.0 / 3003.0);
    assert!(u_null_distribution(100, 100).is_none());
}

#[test]
fn hodges_lehmann_matches_enumeration_and_r() {
    fn check(baseline: &[f64], candidate: &[f64], confidence: f64, estimate: f64, interval: Option<(f64, f64)>) {
        let s = hodges_lehmann(&sorted(baseline), &sorted(candidate), confidence).expect("shift");
        close(s.estimate, estimate, 1e-12, "estimate");
        match (s.interval, interval) {
            (Some(i), Some((lo, hi))) => {
                close(i.lo, lo, 1e-12, "lo");
                close(i.hi, hi, 1e-12, "hi");
            }
            (None, None) => {}
            (got, want) => panic!("interval {got:?}, expected {want:?}"),
        }
    }
    // R's exact rule for wilcox.test(x, y, conf.int = TRUE): the median of the 50 differences,
    // 0.305, and the 9th smallest and 9th largest (qwilcox(0.025, 10, 5) = 9, coverage 0.960),
    // worked by enumeration in exact arithmetic: [−0.15, 0.76].
    check(&EARLY, &TERM, 0.95, 0.305, Some((-0.15, 0.76)));
    // Swapping the sides negates everything.
    check(&TERM, &EARLY, 0.95, -0.305, Some((-0.76, 0.15)));
    // 3 + 3: even the widest interval [min, max] covers only 1 − 2/20 = 90%.
    check(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], 0.95, 3.0, None);
    check(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], 0.90, 3.0, Some((1.0, 5.0)));
}

#[test]
fn wilson_intervals_match_newcombe() {
    fn check(events: u64, total: u64, lo: f64, hi: f64) {
        let i = wilson_interval(Counts::new(events, total), 0.95).expect("interval");
        close(i.lo, lo, 5e-5, &format!("{events}/{total} lo"));
        close(i.hi, hi, 5e-5, &format!("{events}/{total} hi"));
    }
    // Newcombe (1998), table II, method 3 (score, no continuity correction).
    check(81, 263, 0.2553, 0.3662);
    check(15, 148, 0.0624, 0.1605);
    check(0, 20, 0.0, 0.1611);
    check(1, 29, 0.0061, 0.1718);
    // prop.test(0, 10, correct = FALSE)$conf.int = 0 0.2775328
    check(0, 10, 0.0, 0.2775);
    check(10, 10, 0.7225, 1.0);
    assert_eq!(wilson_interval(Counts::new(0, 20), 0.95).expect("interval").lo, 0.0);
}

#[test]
fn rate_increase_tests_match_r() {
    fn check(candidate: (u64, u64), baseline: (u64, u64), method: ProportionMethod, p: f64) {
        let t = rate_increase_test(Counts::new(baseline.0, baseline.1), Counts::new(candidate.0, candidate.1))
            .expect("test");
        assert_eq!(t.method, method, "{candidate:?} vs {baseline:?}");
        close(t.p_value, p, 5e-6, &format!("{candidate:?} vs {baseline:?}"));
    }
    // prop.test(c(30, 15), c(100, 100), alternative = "greater", correct = FALSE):
    // X-squared = 6.4516 (z = 2.54000), p = 0.005543.
    check((30, 100), (15, 100), ProportionMethod::PooledZ, 0.005_543);
    check((120, 1000), (100, 1000), ProportionMethod::PooledZ, 0.076_459);
    // fisher.test(matrix(c(3, 1, 1, 3), 2), alternative = "greater"): p = 0.2429 (17/70).
    check((3, 4), (1, 4), ProportionMethod::FisherExact, 17.0 / 70.0);
    // 5 errors in 100 vs none in 100: C(100, 5)/C(200, 5) = 0.029692.
    check((5, 100), (0, 100), ProportionMethod::FisherExact, 0.029_692);
    // 2 vs 1 in 300: no evidence at all (p = 0.5).
    check((2, 300), (1, 300), ProportionMethod::FisherExact, 0.5);
    // No errors anywhere: data, and no evidence.
    check((0, 300), (0, 300), ProportionMethod::FisherExact, 1.0);
    // Everything failed on both sides.
    check((7, 7), (9, 9), ProportionMethod::FisherExact, 1.0);
}
