//! What a person reads: verdicts, the minimum-sample rule, finding sentences (golden strings) and
//! attribute correlation.

use analyzer::compare::{Finding, Interval, PValue, Shift, Unit, Verdict, require_min_samples};
use analyzer::correlate::{Attributes, CorrelateOptions, correlate, split_by_duration};

#[test]
fn verdicts_order_by_worry() {
    use Verdict::*;
    fn check(verdicts: &[Verdict], expected: Verdict) {
        assert_eq!(Verdict::worst(verdicts.iter().copied()), expected, "{verdicts:?}");
    }
    check(&[Pass, Pass], Pass);
    check(&[Pass, Warn], Warn);
    check(&[Warn, Inconclusive, Pass], Inconclusive);
    check(&[Inconclusive, Fail], Fail);
    // Nothing checked is not a pass.
    check(&[], Inconclusive);
    assert_eq!(Pass.worse(Fail), Fail);
    assert_eq!(Inconclusive.to_string(), "inconclusive");
}

#[test]
fn minimum_samples_make_verdicts_inconclusive_with_a_reason() {
    fn check(candidate: u64, baseline: Option<u64>, min: u64, expected: Option<&str>) {
        let result = require_min_samples(candidate, baseline, min, "spans");
        match (result, expected) {
            (Ok(()), None) => {}
            (Err(e), Some(reason)) => {
                assert_eq!(e.to_string(), reason);
                assert_eq!(e.verdict(), Verdict::Inconclusive);
            }
            (got, want) => panic!("{candidate} vs {baseline:?} (min {min}): got {got:?}, expected {want:?}"),
        }
    }
    check(37, Some(500), 100, Some("candidate has 37 spans, the contract needs 100"));
    check(500, Some(12), 100, Some("baseline has 12 spans, the contract needs 100"));
    check(37, Some(12), 100, Some("candidate has 37 spans and baseline has 12 spans, the contract needs 100"));
    check(2_500, Some(1_200), 1_000, None);
    check(1_000, None, 1_000, None);
    check(999, None, 1_000, Some("candidate has 999 spans, the contract needs 1,000"));
    // A minimum of 0 still needs one value.
    check(0, None, 0, Some("candidate has 0 spans, the contract needs 1"));
}

#[test]
fn finding_sentences() {
    fn check(finding: Finding, expected: &str) {
        assert_eq!(finding.sentence(), expected);
    }
    let ci = |lo, hi| Some(Interval { lo, hi, confidence: 0.95 });
    let latency = Finding {
        subject: "p95 latency".into(),
        unit: Unit::Milliseconds,
        value: Some(512.3),
        value_interval: ci(498.2, 530.4),
        baseline: Some(431.2),
        shift: Some(Shift { estimate: 74.4, interval: ci(61.1, 88.0) }),
        p_value: Some(PValue { test: "Mann-Whitney".into(), value: 3e-9 }),
        candidate_count: 12_400,
        baseline_count: Some(11_980),
        noun: "spans".into(),
    };
    assert!((latency.change_relative().expect("relative") - 0.188_079).abs() < 1e-6);
    check(
        latency.clone(),
        "p95 latency 512 ms (95% CI 498–530 ms) vs baseline 431 ms: +18.8%, shift +74 ms (95% CI +61 to +88 ms), \
         Mann-Whitney p < 0.001, 12,400 vs 11,980 spans",
    );
    check(
        Finding {
            value: Some(4.312),
            value_interval: ci(4.1, 4.52),
            baseline: Some(4.4),
            shift: None,
            ..latency.clone()
        },
        "p95 latency 4.31 ms (95% CI 4.10–4.52 ms) vs baseline 4.40 ms: -2.0%, Mann-Whitney p < 0.001, 12,400 vs \
         11,980 spans",
    );
    check(
        Finding {
            subject: "p99 latency".into(),
            value: Some(1_234.5),
            value_interval: None,
            baseline: None,
            shift: None,
            p_value: None,
            baseline_count: None,
            ..latency.clone()
        },
        // 1234.5 is exact in binary: a tie, rounded to even.
        "p99 latency 1,234 ms, 12,400 spans",
    );
    check(
        Finding {
            shift: Some(Shift { estimate: -3.0, interval: ci(-9.6, 2.2) }),
            p_value: Some(PValue { test: "Mann-Whitney".into(), value: 0.41 }),
            value: Some(95.0),
            value_interval: None,
            baseline: Some(98.0),
            ..latency.clone()
        },
        "p95 latency 95.0 ms vs baseline 98.0 ms: -3.1%, shift -3.0 ms (95% CI -9.6 to +2.2 ms), Mann-Whitney p = \
         0.410, 12,400 vs 11,980 spans",
    );
    check(
        Finding {
            subject: "error rate".into(),
            unit: Unit::Ratio,
            value: Some(0.024),
            value_interval: ci(0.021, 0.0275),
            baseline: Some(0.009),
            shift: None,
            p_value: Some(PValue { test: "Fisher's exact test".into(), value: 0.0123 }),
            candidate_count: 1_200,
            baseline_count: Some(1_180),
            noun: "requests".into(),
        },
        "error rate 2.40% (95% CI 2.10–2.75%) vs baseline 0.90%: +1.50 pp, Fisher's exact test p = 0.012, 1,200 vs \
         1,180 requests",
    );
    check(
        Finding {
            subject: "throughput".into(),
            unit: Unit::PerSecond,
            value: None,
            baseline: Some(1_250.0),
            baseline_count: Some(11_980),
            noun: "requests".into(),
            ..Finding::default()
        },
        "throughput: no data vs baseline 1,250 /s: 0 vs 11,980 requests",
    );
    check(Finding { subject: "throughput".into(), ..Finding::default() }, "throughput: no data, 0");
}

/// Builds spans with `version`, `host`, `request.id` attributes.
fn spans(version: &str, count: usize, first_id: usize) -> Vec<Vec<(String, String)>> {
    (0..count)
        .map(|i| {
            vec![
                ("service.version".to_string(), version.to_string()),
                ("host".to_string(), format!("host-{}", i % 3)),
                ("request.id".to_string(), format!("req-{}", first_id + i)),
            ]
        })
        .collect()
}

#[test]
fn correlation_finds_the_guilty_version() {
    // 92 of 100 slow spans run the release candidate, 3 of 100 fast ones do.
    let mut slow = spans("v3.7.2-rc4", 92, 0);
    slow.extend(spans("v3.7.1", 8, 92));
    let mut fast = spans("v3.7.2-rc4", 3, 100);
    fast.extend(spans("v3.7.1", 97, 103));
    let report = correlate(&slow, &fast, &CorrelateOptions::default()).expect("report");
    let top = &report.findings[0];
    assert_eq!((top.key.as_str(), top.value.as_str()), ("service.version", "v3.7.2-rc4"));
    assert_eq!(top.sentence(), "92% of slow spans have service.version=v3.7.2-rc4 vs 3% of the others");
    assert!((top.difference_pp - 89.0).abs() < 1e-9);
    assert!(top.significant && top.adjusted_p_value < 1e-20, "{top:?}");
    // Hosts are spread evenly: over-represented by chance at most, never significant.
    assert!(report.findings.iter().filter(|c| c.key == "host").all(|c| !c.significant));
    assert_eq!(report.significant().count(), 1);
    // Request ids are unique per span: skipped, and said so.
    assert_eq!(report.skipped.len(), 1);
    assert_eq!((report.skipped[0].key.as_str(), report.skipped[0].distinct_values), ("request.id", 200));
    // 2 versions + 3 hosts tested.
    assert_eq!(report.tested, 5);
}

#[test]
fn correlation_is_deterministic_and_capped() {
    // Borrowed input: slices of (&str, &str). Equal differences are ordered by key, then value.
    let a: &[(&str, &str)] = &[("region", "eu"), ("zone", "b")];
    let b: &[(&str, &str)] = &[("region", "us"), ("zone", "a")];
    let c: &[(&str, &str)] = &[("region", "ap"), ("zone", "c")];
    let selection = vec![a, a, b, b];
    let baseline = vec![c, c, c, c];
    let options = CorrelateOptions { max_values_per_key: 2, max_distinct_ratio: 1.0, ..CorrelateOptions::default() };
    let report = correlate(&selection, &baseline, &options).expect("report");
    let order: Vec<String> =
        report.findings.iter().map(|c| format!("{}={} {:.0}", c.key, c.value, c.difference_pp)).collect();
    // Each key has three values; the cap keeps the two most frequent (4 "ap", then "eu" before
    // "us" by name; 4 "c", then "a" before "b").
    assert_eq!(order, ["region=eu 50", "zone=a 50"]);
    assert_eq!(report.capped.len(), 2);
    assert_eq!((report.capped[0].distinct_values, report.capped[0].tested_values), (3, 2));
    // Small counts use Fisher's exact test; Holm's correction over the 4 tested pairs.
    let top = &report.findings[0];
    assert_eq!(top.method.name(), "Fisher's exact test");
    assert!((top.p_value - 3.0 / 14.0).abs() < 1e-12, "{top:?}");
    assert!((top.adjusted_p_value - (4.0 * 3.0 / 14.0_f64).min(1.0)).abs() < 1e-12, "{top:?}");
}

/// A caller's own span type: implementing [`Attributes`] lets `correlate` read it in place.
struct Span {
    duration_ms: f64,
    attributes: Vec<(&'static str, &'static str)>,
}

impl Attributes for Span {
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attributes.iter().copied()
    }
}

#[test]
fn split_by_duration_at_a_percentile() {
    let spans: Vec<Span> = (1..=10)
        .map(|i| Span { duration_ms: f64::from(i), attributes: vec![("slow", if i > 9 { "yes" } else { "no" })] })
        .collect();
    let split = split_by_duration(&spans, |s| s.duration_ms, 90.0).expect("split");
    assert_eq!(split.threshold, 9.0);
    assert_eq!(split.slow.iter().map(|s| s.duration_ms).collect::<Vec<_>>(), [10.0]);
    assert_eq!(split.fast.len(), 9);
    let report = correlate(&split.slow, &split.fast, &CorrelateOptions::default()).expect("report");
    assert_eq!(report.findings[0].sentence(), "100% of slow spans have slow=yes vs 0% of the others");

    let bad = [(f64::NAN, ())];
    assert_eq!(
        split_by_duration(&bad, |s| s.0, 50.0).expect_err("nan").to_string(),
        "span 0 has duration NaN, which is not a finite number"
    );
    assert!(correlate::<Vec<(&str, &str)>>(&[], &[vec![]], &CorrelateOptions::default()).is_err());
}
