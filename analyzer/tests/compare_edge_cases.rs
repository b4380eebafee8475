//! Edge cases: empty inputs, one value, all ties, NaN, unsorted slices, bad parameters. None may
//! panic, and none may produce a NaN that a report would print as a number.

use analyzer::compare::{
    CompareError, Counts, PValueMethod, hodges_lehmann, kth_pairwise_difference, mann_whitney, median, percentile,
    percentile_ci, rate_increase_test, sort_finite, wilson_interval,
};

fn check_err<T: std::fmt::Debug>(result: Result<T, CompareError>, expected: &str) {
    match result {
        Ok(v) => panic!("expected the error {expected:?}, got {v:?}"),
        Err(e) => assert_eq!(e.to_string(), expected),
    }
}

#[test]
fn nan_and_infinity_are_refused() {
    check_err(sort_finite([1.0, f64::NAN, 2.0]), "sample value at index 1 is not a finite number (NaN)");
    check_err(sort_finite([f64::INFINITY]), "sample value at index 0 is not a finite number (inf)");
    check_err(mann_whitney(&[1.0, f64::NAN], &[1.0]), "baseline value at index 1 is not a finite number (NaN)");
    check_err(
        hodges_lehmann(&[1.0], &[f64::NEG_INFINITY], 0.95),
        "candidate value at index 0 is not a finite number (-inf)",
    );
    check_err(percentile_ci(&[f64::NAN; 400], 50.0, 0.95), "sample value at index 0 is not a finite number (NaN)");
}

#[test]
fn unsorted_input_is_refused() {
    check_err(mann_whitney(&[2.0, 1.0], &[1.0]), "baseline is not sorted ascending at index 1");
    check_err(hodges_lehmann(&[1.0], &[3.0, 2.0, 1.0], 0.95), "candidate is not sorted ascending at index 1");
    check_err(
        percentile_ci(&[1.0, 0.0, 2.0, 3.0, 4.0, 5.0, 6.0], 50.0, 0.95),
        "sample is not sorted ascending at index 1",
    );
    // -0.0 and 0.0 compare equal: sorted.
    assert_eq!(sort_finite([0.0, -0.0, -1.0]).expect("finite"), vec![-1.0, 0.0, 0.0]);
}

#[test]
fn empty_inputs_are_no_data() {
    check_err(mann_whitney(&[], &[1.0]), "baseline has no data");
    check_err(mann_whitney(&[1.0], &[]), "candidate has no data");
    check_err(hodges_lehmann(&[1.0], &[], 0.95), "candidate has no data");
    check_err(percentile_ci(&[], 50.0, 0.95), "95% CI of p50 needs at least 6 values, got 0");
    check_err(wilson_interval(Counts::new(0, 0), 0.95), "sample has no data");
    check_err(rate_increase_test(Counts::new(0, 0), Counts::new(0, 10)), "baseline has no data");
    check_err(rate_increase_test(Counts::new(0, 10), Counts::new(0, 0)), "candidate has no data");
    assert_eq!(Counts::new(0, 0).rate(), None);
    assert_eq!(percentile(&[], 50.0), None);
    assert_eq!(median(&[]), None);
}

#[test]
fn one_value_a_side() {
    let r = mann_whitney(&[1.0], &[2.0]).expect("test");
    assert_eq!((r.u_candidate, r.method), (1.0, PValueMethod::Exact));
    assert_eq!((r.p_greater, r.p_less, r.p_two_sided), (0.5, 1.0, 1.0));
    let s = hodges_lehmann(&[1.0], &[2.0], 0.95).expect("shift");
    assert_eq!((s.estimate, s.interval), (1.0, None));
    assert_eq!(percentile(&[3.0], 99.9), Some(3.0));
    assert_eq!(median(&[3.0]), Some(3.0));
    assert_eq!(kth_pairwise_difference(&[1.0], &[2.0], 1), Ok(1.0));
    check_err(kth_pairwise_difference(&[1.0], &[2.0], 2), "rank 2 is outside 1..=1");
}

#[test]
fn all_ties_carry_no_evidence() {
    let same = vec![5.0; 1000];
    let r = mann_whitney(&same, &same).expect("test");
    assert_eq!((r.z, r.p_greater, r.p_less, r.p_two_sided), (0.0, 1.0, 1.0, 1.0));
    assert_eq!(r.u_candidate, 500_000.0);
    let s = hodges_lehmann(&same, &same, 0.95).expect("shift");
    assert_eq!(s.estimate, 0.0);
    let i = s.interval.expect("interval");
    assert_eq!((i.lo, i.hi), (0.0, 0.0));
    let i = percentile_ci(&same, 99.0, 0.95).expect("interval");
    assert_eq!((i.lo, i.hi), (5.0, 5.0));
    // Tied sides that differ: every candidate value above every baseline value.
    let r = mann_whitney(&[1.0; 100], &[2.0; 100]).expect("test");
    assert_eq!(r.u_candidate, 10_000.0);
    assert!(r.p_greater < 1e-20 && r.p_greater > 0.0, "{r:?}");
}

#[test]
fn bad_parameters_are_refused() {
    check_err(percentile_ci(&[1.0; 10], 100.0, 0.95), "percentile 100 is outside (0, 100)");
    check_err(percentile_ci(&[1.0; 10], 50.0, 1.0), "confidence 1 is outside (0, 1)");
    check_err(hodges_lehmann(&[1.0], &[1.0], f64::NAN), "confidence NaN is outside (0, 1)");
    check_err(wilson_interval(Counts::new(3, 2), 0.95), "sample has 3 events out of 2");
    check_err(rate_increase_test(Counts::new(1, 2), Counts::new(5, 4)), "candidate has 5 events out of 4");
}

#[test]
fn huge_values_do_not_make_nan() {
    let b = [-1e308, 0.0, 1e308];
    let c = [-1e308, 1e308];
    let s = hodges_lehmann(&b, &c, 0.5).expect("shift");
    // Differences overflow to ±inf, but the estimate is a median, not a NaN.
    assert!(!s.estimate.is_nan());
    assert!(!mann_whitney(&b, &c).expect("test").p_greater.is_nan());
}
