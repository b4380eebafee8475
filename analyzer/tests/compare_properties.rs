//! Properties of the comparison statistics: A/A comparisons keep their false-positive rate,
//! estimates move with the data as they must, selection equals enumeration, intervals are
//! well-formed. Random data comes from a SplitMix64 generator with fixed seeds, so every run sees
//! the same numbers.

use analyzer::compare::PValueMethod as MwMethod;
use analyzer::compare::special::normal_quantile;
use analyzer::compare::{
    Counts, hodges_lehmann, kth_pairwise_difference, mann_whitney, percentile, percentile_ci, rate_increase_test,
    sort_finite, wilson_interval,
};
use proptest::prelude::*;

/// SplitMix64 (Steele, Lea and Flood 2014).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A latency-like log-normal value in milliseconds (median 100 ms, σ = 0.5).
    fn latency(&mut self) -> f64 {
        100.0 * (0.5 * normal_quantile(self.uniform())).exp()
    }

    fn sample(&mut self, n: usize, f: impl Fn(&mut Rng) -> f64) -> Vec<f64> {
        sort_finite((0..n).map(|_| f(self)).collect::<Vec<_>>()).expect("finite")
    }
}

const TRIALS: u64 = 1000;

/// Runs `trials` A/A comparisons and returns how many "found" a difference.
fn false_positives(trials: u64, mut found: impl FnMut(&mut Rng) -> bool) -> u64 {
    (0..trials).filter(|&seed| found(&mut Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xA5A5))).count() as u64
}

#[test]
fn a_a_mann_whitney_false_positive_rate_is_at_most_alpha() {
    // Exact test (small, continuous) and normal approximation (large; and with ties from
    // millisecond rounding). At α = 0.01 about 10 of 1000 are expected; 20 would already be
    // unlikely (p ≈ 0.003) for a correct test.
    for (n, round) in [(20, false), (200, false), (200, true)] {
        let hits = false_positives(TRIALS, |rng| {
            let f = |r: &mut Rng| if round { r.latency().round() } else { r.latency() };
            let (b, c) = (rng.sample(n, f), rng.sample(n, f));
            mann_whitney(&b, &c).expect("test").p_greater < 0.01
        });
        assert!(hits <= 20, "n = {n}, rounded = {round}: {hits} of {TRIALS} A/A comparisons had p < 0.01");
    }
}

#[test]
fn a_a_error_rate_false_positive_rate_is_at_most_alpha() {
    // 2% errors on both sides, with 100 requests (Fisher) and 2 000 (z-test).
    for n in [100_u64, 2000] {
        let hits = false_positives(TRIALS, |rng| {
            let mut errors = || (0..n).filter(|_| rng.uniform() < 0.02).count() as u64;
            let (b, c) = (errors(), errors());
            rate_increase_test(Counts::new(b, n), Counts::new(c, n)).expect("test").p_value < 0.01
        });
        assert!(hits <= 20, "n = {n}: {hits} of {TRIALS} A/A comparisons had p < 0.01");
    }
}

#[test]
fn a_a_shift_interval_covers_zero() {
    // The 95% Hodges–Lehmann interval excludes 0 in about 5% of A/A comparisons.
    let misses = false_positives(TRIALS, |rng| {
        let (b, c) = (rng.sample(60, Rng::latency), rng.sample(60, Rng::latency));
        let interval = hodges_lehmann(&b, &c, 0.95).expect("shift").interval.expect("interval");
        !interval.contains(0.0)
    });
    assert!(misses <= 70, "{misses} of {TRIALS} intervals missed 0");
}

#[test]
fn percentile_interval_covers_the_true_percentile() {
    // p90 of Exp(1) is ln 10; order-statistic intervals cover it at least 95% of the time.
    let truth = 10.0_f64.ln();
    let misses = false_positives(TRIALS, |rng| {
        let x = rng.sample(300, |r| -r.uniform().ln());
        !percentile_ci(&x, 90.0, 0.95).expect("interval").contains(truth)
    });
    assert!(misses <= 65, "{misses} of {TRIALS} intervals missed the true p90");
}

#[test]
fn real_shift_is_detected() {
    // A 10% slowdown on 2 000 spans a side is found, and its size estimated.
    let mut rng = Rng(7);
    let b = rng.sample(2000, Rng::latency);
    let c = rng.sample(2000, |r| r.latency() * 1.1);
    assert!(mann_whitney(&b, &c).expect("test").p_greater < 1e-6);
    let shift = hodges_lehmann(&b, &c, 0.95).expect("shift");
    let relative = shift.relative_to(percentile(&b, 50.0).expect("median")).expect("positive");
    let interval = relative.interval.expect("interval");
    assert!(interval.lo > 0.0 && interval.contains(0.1), "{relative:?}");
}

#[test]
fn two_hundred_thousand_spans_a_side() {
    // Exercises the sort-based ranks and the selection of pairwise differences on 4·10¹⁰ pairs;
    // not timed here (the dev profile is unoptimised), see the report for release timings.
    let mut rng = Rng(42);
    let b = rng.sample(200_000, Rng::latency);
    let c = rng.sample(200_000, |r| r.latency() + 5.0);
    let mw = mann_whitney(&b, &c).expect("test");
    assert!(mw.p_greater < 1e-10);
    let shift = hodges_lehmann(&b, &c, 0.95).expect("shift");
    let interval = shift.interval.expect("interval");
    assert!(interval.lo < shift.estimate && shift.estimate < interval.hi);
    assert!(interval.contains(5.0) || (shift.estimate - 5.0).abs() < 1.0, "{shift:?}");
}

fn enumerate_sorted(b: &[f64], c: &[f64]) -> Vec<f64> {
    let mut d: Vec<f64> = c.iter().flat_map(|x| b.iter().map(move |y| x - y)).collect();
    d.sort_by(f64::total_cmp);
    d
}

fn small_ints(max_len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(0_i32..40, 1..max_len)
        .prop_map(|v| sort_finite(v.into_iter().map(f64::from)).expect("finite"))
}

fn floats(max_len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-1e3_f64..1e3, 1..max_len).prop_map(|v| sort_finite(v).expect("finite"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn selection_equals_enumeration(b in floats(90), c in floats(90), ties_b in small_ints(60), ties_c in small_ints(60)) {
        for (b, c) in [(&b, &c), (&ties_b, &ties_c)] {
            let all = enumerate_sorted(b, c);
            let count = all.len() as u64;
            for k in [1, 2, count / 3, count / 2, count / 2 + 1, count - 1, count] {
                let k = k.clamp(1, count);
                prop_assert_eq!(kth_pairwise_difference(b, c, k).unwrap(), all[(k - 1) as usize], "k = {}", k);
            }
        }
    }

    #[test]
    fn shift_is_equivariant(b in small_ints(80), c in small_ints(80), shift in -50_i32..50) {
        // Integer values keep the arithmetic exact, so equality is exact.
        let moved: Vec<f64> = c.iter().map(|x| x + f64::from(shift)).collect();
        let before = hodges_lehmann(&b, &c, 0.95).unwrap();
        let after = hodges_lehmann(&b, &moved, 0.95).unwrap();
        prop_assert_eq!(after.estimate, before.estimate + f64::from(shift));
        prop_assert_eq!(after.interval, before.interval.map(|i| i.shifted(f64::from(shift))));
    }

    #[test]
    fn swapping_sides_mirrors_mann_whitney(b in floats(70), c in small_ints(70)) {
        let forward = mann_whitney(&b, &c).unwrap();
        let backward = mann_whitney(&c, &b).unwrap();
        prop_assert_eq!(forward.u_candidate, backward.u_baseline);
        prop_assert_eq!(forward.u_baseline, backward.u_candidate);
        prop_assert!((forward.p_greater - backward.p_less).abs() < 1e-12);
        prop_assert!((forward.p_two_sided - backward.p_two_sided).abs() < 1e-12);
        prop_assert!((forward.z + backward.z).abs() < 1e-12);
        let shift = hodges_lehmann(&b, &c, 0.95).unwrap();
        let mirrored = hodges_lehmann(&c, &b, 0.95).unwrap();
        prop_assert_eq!(shift.estimate, -mirrored.estimate);
    }

    #[test]
    fn shift_interval_agrees_with_the_test(b in floats(45), c in floats(45)) {
        // Exact case (fewer than 50 a side, no ties): the 95% interval lies above 0 exactly when
        // the one-sided exact test gives p ≤ 0.025, and below 0 exactly when the other does.
        let s = hodges_lehmann(&b, &c, 0.95).unwrap();
        let mw = mann_whitney(&b, &c).unwrap();
        let zero_difference = c.iter().any(|x| b.contains(x));
        if let (Some(i), false, MwMethod::Exact) = (s.interval, zero_difference, mw.method) {
            prop_assert!(i.lo <= s.estimate && s.estimate <= i.hi);
            prop_assert_eq!(i.lo > 0.0, mw.p_greater <= 0.025, "{:?} {:?}", i, mw);
            prop_assert_eq!(i.hi < 0.0, mw.p_less <= 0.025, "{:?} {:?}", i, mw);
        }
    }

    #[test]
    fn wilson_interval_contains_the_rate(total in 1_u64..5000, events_per_mille in 0_u64..=1000, confidence in 0.5_f64..0.999) {
        let events = total * events_per_mille / 1000;
        let i = wilson_interval(Counts::new(events, total), confidence).unwrap();
        let rate = events as f64 / total as f64;
        prop_assert!(0.0 <= i.lo && i.lo <= rate && rate <= i.hi && i.hi <= 1.0, "{:?} for {}/{}", i, events, total);
    }

    #[test]
    fn percentile_interval_brackets_the_percentile(x in floats(400), q in 1.0_f64..99.0) {
        let p = percentile(&x, q).unwrap();
        if let Ok(i) = percentile_ci(&x, q, 0.9) {
            prop_assert!(i.lo <= p && p <= i.hi);
        }
    }
}
