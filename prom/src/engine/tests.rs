//! The engine's tricky rules, one small case each (the comparison against a real Prometheus is
//! `tests/against_prometheus.rs`).

use std::time::{Duration, Instant};

use promql_parser::label::Matchers;

use super::quantile::bucket_quantile;
use super::{Error, Options, Value, instant, range};
use crate::model::{Labels, MemSource, Queryable, STALE_NAN_BITS, Sample, Series};

fn series(name: &str, extra: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
    let mut pairs = vec![("__name__".to_string(), name.to_string())];
    pairs.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    Series { labels: Labels::new(pairs), samples: points.iter().map(|&(t, v)| Sample { t, v }).collect() }
}

/// The single value of an instant query's answer (vector of one element or scalar).
fn one(q: &str, t: i64, src: &MemSource) -> Option<f64> {
    match instant(q, t, src, &Options::default()).expect(q) {
        Value::Scalar { v, .. } => Some(v),
        Value::Vector(v) if v.is_empty() => None,
        Value::Vector(v) if v.len() == 1 => Some(v[0].v),
        other => panic!("{q}: unexpected {other:?}"),
    }
}

fn err(q: &str, src: &MemSource) -> Error {
    instant(q, 0, src, &Options::default()).expect_err(q)
}

#[test]
fn increase_extrapolates_to_the_window_but_not_below_the_counters_zero() {
    // Samples every 15s from 15s to 300s, 10 per step: the window [0, 300s] starts 15s before
    // the first sample, within 1.1 intervals, so the increase is extrapolated to the start;
    // the counter's zero point (also 15s before) limits it to the same place.
    let points: Vec<(i64, f64)> = (1..=20).map(|k| (k * 15_000, 10.0 * k as f64)).collect();
    let src = MemSource(vec![series("c", &[], &points)]);
    assert_eq!(one("increase(c[5m])", 300_000, &src), Some(200.0));
    let rate = one("rate(c[5m])", 300_000, &src).unwrap();
    assert!((rate - 200.0 / 300.0).abs() < 1e-12);
    // The zero point is nearer than the window start when the counter starts low: first value
    // 1 at 15s, then +10 per step: to zero = 285 * 1/190 = 1.5s < 15s.
    let points: Vec<(i64, f64)> = (1..=20).map(|k| (k * 15_000, 1.0 + 10.0 * (k - 1) as f64)).collect();
    let src = MemSource(vec![series("c", &[], &points)]);
    let got = one("increase(c[5m])", 300_000, &src).unwrap();
    assert!((got - 190.0 * (285.0 + 1.5) / 285.0).abs() < 1e-9, "{got}");
}

#[test]
fn extrapolation_stops_at_half_an_interval_when_samples_end_early() {
    // Samples at 100s..200s every 10s, window [0, 300s]: both gaps exceed 1.1 intervals, so
    // each side adds half an interval (5s): delta = 10 * (100 + 10) / 100.
    let points: Vec<(i64, f64)> = (10..=20).map(|k| (k * 10_000, k as f64)).collect();
    let src = MemSource(vec![series("g", &[], &points)]);
    let got = one("delta(g[5m])", 300_000, &src).unwrap();
    assert!((got - 11.0).abs() < 1e-12, "{got}");
}

#[test]
fn counter_resets_add_the_value_before_the_reset() {
    let src = MemSource(vec![series("c", &[], &[(0, 5.0), (15_000, 10.0), (30_000, 2.0), (45_000, 4.0)])]);
    assert_eq!(one("resets(c[1m])", 45_000, &src), Some(1.0));
    // 4 - 5 + 10 = 9 over 45s sampled, extrapolated by 15s at the start (zero point 15·5/9·3
    // is further) and 0 at the end: 9 * 60 / 45.
    let got = one("increase(c[1m])", 45_000, &src).unwrap();
    assert!((got - 12.0).abs() < 1e-12, "{got}");
    // irate after a reset is the new value over the interval.
    let got = one("irate(c[1m])", 45_000, &src).unwrap();
    assert!((got - 2.0 / 15.0).abs() < 1e-12, "{got}");
}

#[test]
fn lookback_includes_a_sample_exactly_five_minutes_old() {
    let src = MemSource(vec![series("g", &[], &[(0, 1.0)])]);
    assert_eq!(one("g", 300_000, &src), Some(1.0));
    assert_eq!(one("g", 300_001, &src), None);
    let opts = Options { lookback_ms: 60_000, ..Options::default() };
    assert!(matches!(instant("g", 60_001, &src, &opts), Ok(Value::Vector(v)) if v.is_empty()));
}

#[test]
fn a_staleness_marker_ends_the_series_but_a_nan_does_not() {
    let stale = f64::from_bits(STALE_NAN_BITS);
    let src = MemSource(vec![
        series("s", &[], &[(0, 1.0), (10_000, stale), (40_000, 3.0)]),
        series("n", &[], &[(0, 1.0), (10_000, f64::NAN)]),
    ]);
    assert_eq!(one("s", 5_000, &src), Some(1.0));
    assert_eq!(one("s", 20_000, &src), None);
    assert_eq!(one("s", 40_000, &src), Some(3.0));
    assert!(one("n", 20_000, &src).unwrap().is_nan());
    // Range selectors drop the marker.
    assert_eq!(one("count_over_time(s[1m])", 40_000, &src), Some(2.0));
}

#[test]
fn range_selectors_include_both_ends() {
    let src = MemSource(vec![series("g", &[], &[(0, 1.0), (30_000, 2.0), (60_000, 3.0)])]);
    assert_eq!(one("count_over_time(g[1m])", 60_000, &src), Some(3.0));
    assert_eq!(one("count_over_time(g[59999ms])", 60_000, &src), Some(2.0));
}

#[test]
fn offset_and_at_move_the_selector() {
    let src = MemSource(vec![series("g", &[], &[(0, 1.0), (60_000, 2.0), (120_000, 3.0)])]);
    assert_eq!(one("g offset 1m", 120_000, &src), Some(2.0));
    assert_eq!(one("g @ 60", 500_000, &src), Some(2.0));
    assert_eq!(one("g @ 60 offset 1m", 500_000, &src), Some(1.0));
    let m = range("g @ start()", 60_000, 120_000, 60_000, &src, &Options::default()).unwrap();
    assert_eq!(m[0].samples.iter().map(|p| p.v).collect::<Vec<_>>(), vec![2.0, 2.0]);
}

#[test]
fn subquery_steps_are_aligned_to_the_epoch() {
    let points: Vec<(i64, f64)> = (0..20).map(|k| (k * 15_000, k as f64)).collect();
    let src = MemSource(vec![series("g", &[], &points)]);
    // At 130s, `[40s:30s]` covers [90s, 130s]: the multiples of 30s in it are 90s and 120s.
    match instant("g[40s:30s]", 130_000, &src, &Options::default()).unwrap() {
        Value::Matrix(m) => {
            let ts: Vec<i64> = m[0].samples.iter().map(|p| p.t).collect();
            assert_eq!(ts, vec![90_000, 120_000]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn histogram_quantile_edge_cases() {
    let inf = f64::INFINITY;
    // No +Inf bucket: NaN.
    assert!(bucket_quantile(0.5, &mut [(1.0, 1.0), (2.0, 2.0)]).is_nan());
    // Only the +Inf bucket: NaN (fewer than two buckets).
    assert!(bucket_quantile(0.5, &mut [(inf, 3.0)]).is_nan());
    // No observations: NaN.
    assert!(bucket_quantile(0.5, &mut [(1.0, 0.0), (inf, 0.0)]).is_nan());
    // q outside [0, 1].
    assert_eq!(bucket_quantile(-0.1, &mut [(1.0, 1.0), (inf, 2.0)]), f64::NEG_INFINITY);
    assert_eq!(bucket_quantile(1.1, &mut [(1.0, 1.0), (inf, 2.0)]), inf);
    // Linear interpolation inside the bucket, the first one starting at 0.
    assert_eq!(bucket_quantile(0.25, &mut [(2.0, 4.0), (4.0, 8.0), (inf, 8.0)]), 1.0);
    assert_eq!(bucket_quantile(0.75, &mut [(2.0, 4.0), (4.0, 8.0), (inf, 8.0)]), 3.0);
    // A rank in the +Inf bucket answers the highest finite bound.
    assert_eq!(bucket_quantile(0.99, &mut [(2.0, 4.0), (4.0, 8.0), (inf, 10.0)]), 4.0);
    // A first bucket with a bound <= 0 answers its bound.
    assert_eq!(bucket_quantile(0.1, &mut [(-1.0, 5.0), (1.0, 10.0), (inf, 10.0)]), -1.0);
    // Non-monotonic counts are raised to the maximum below them: (1,10),(2,8)->(2,10).
    let got = bucket_quantile(0.5, &mut [(1.0, 10.0), (2.0, 8.0), (inf, 12.0)]);
    assert_eq!(got, 0.6);
    // NaN counts: no bucket "reaches" a NaN rank, so the highest finite bound answers
    // (regression: a partition point on `count < rank` answered NaN).
    assert_eq!(bucket_quantile(0.5, &mut [(1.0, f64::NAN), (inf, f64::NAN)]), 1.0);
    // Unsorted input and duplicate bounds are handled.
    assert_eq!(bucket_quantile(0.5, &mut [(inf, 4.0), (1.0, 1.0), (1.0, 1.0)]), 1.0);
}

#[test]
fn histogram_quantile_groups_by_labels_without_le() {
    let src = MemSource(vec![
        series("h_bucket", &[("le", "1"), ("job", "a")], &[(0, 2.0)]),
        series("h_bucket", &[("le", "+Inf"), ("job", "a")], &[(0, 4.0)]),
        series("h_bucket", &[("le", "junk"), ("job", "a")], &[(0, 100.0)]),
    ]);
    match instant("histogram_quantile(0.5, h_bucket)", 0, &src, &Options::default()).unwrap() {
        Value::Vector(v) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].labels.to_string(), "{job=\"a\"}");
            assert_eq!(v[0].v, 1.0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn histogram_quantile_groups_keep_the_metric_name_apart() {
    // Regression (found by the comparison test): buckets under two metric names are two
    // histograms, and both answer under the same labels: an error, as in Prometheus.
    let src = MemSource(vec![
        series("h", &[("le", "1")], &[(0, 1.0)]),
        series("h", &[("le", "+Inf")], &[(0, 2.0)]),
        series("k", &[("le", "1")], &[(0, 1.0)]),
        series("k", &[("le", "+Inf")], &[(0, 2.0)]),
    ]);
    assert!(
        matches!(err("histogram_quantile(0.5, {le!=\"\"})", &src), Error::Execution(m) if m.contains("same labelset"))
    );
    assert_eq!(one("histogram_quantile(0.5, h)", 0, &src), Some(1.0));
}

#[test]
fn vector_matching_errors() {
    let src = MemSource(vec![
        series("a", &[("i", "1"), ("c", "x")], &[(0, 1.0)]),
        series("a", &[("i", "1"), ("c", "y")], &[(0, 2.0)]),
        series("b", &[("i", "1")], &[(0, 10.0)]),
    ]);
    // Two left samples match one right sample: one-to-one is not enough.
    assert!(
        matches!(err("a + on (i) b", &src), Error::Execution(m) if m.contains("many-to-one matching must be explicit"))
    );
    // Duplicates on the "one" side.
    assert!(
        matches!(err("b + on (i) a", &src), Error::Execution(m) if m.contains("many-to-many matching not allowed"))
    );
    assert!(matches!(err("b * on (i) group_left a", &src), Error::Execution(_)));
    // With group_left it works and keeps the many side's labels, without the name.
    match instant("a + on (i) group_left b", 0, &src, &Options::default()).unwrap() {
        Value::Vector(mut v) => {
            v.sort_by(|x, y| x.labels.cmp(&y.labels));
            assert_eq!(v.iter().map(|e| e.v).collect::<Vec<_>>(), vec![11.0, 12.0]);
            assert_eq!(v[0].labels.to_string(), "{c=\"x\", i=\"1\"}");
        }
        other => panic!("{other:?}"),
    }
    // Dropping the names of a{i="1"} and b{i="1"}... a has c, so use the ones without it.
    let src = MemSource(vec![series("x", &[("i", "1")], &[(0, 1.0)]), series("y", &[("i", "1")], &[(0, 2.0)])]);
    assert!(matches!(err("-{__name__=~\"x|y\"}", &src), Error::Execution(m) if m.contains("same labelset")));
    assert!(matches!(err("abs({__name__=~\"x|y\"})", &src), Error::Execution(m) if m.contains("same labelset")));
}

#[test]
fn limits_are_enforced() {
    let points: Vec<(i64, f64)> = (0..100).map(|k| (k * 1_000, k as f64)).collect();
    let src = MemSource(vec![series("g", &[], &points)]);
    let opts = Options { max_samples: 50, ..Options::default() };
    assert_eq!(
        instant("g[5m]", 99_000, &src, &opts),
        Err(Error::Execution("query processing would load too many samples into memory in query execution".into()))
    );
    let opts = Options { deadline: Some(Instant::now() - Duration::from_secs(1)), ..Options::default() };
    assert_eq!(instant("g", 0, &src, &opts), Err(Error::Timeout));
    // More than 11,000 steps, as Prometheus's API refuses.
    assert!(
        matches!(range("g", 0, 11_001_000, 1_000, &src, &Options::default()), Err(Error::BadData(m)) if m.contains("11,000"))
    );
    assert_eq!(range("g", 0, 11_000_000, 1_000, &src, &Options::default()).map(|m| m.len()), Ok(1));
    // A subquery of very many steps ends at the sample limit, even finding nothing.
    let opts = Options { max_samples: 10_000, ..Options::default() };
    assert!(matches!(instant("count_over_time(nothing[100d:1ms])", 0, &src, &opts), Err(Error::Execution(_))));
    let deep = format!("{}g{}", "(".repeat(300), ")".repeat(300));
    assert!(matches!(instant(&deep, 0, &src, &Options::default()), Err(Error::BadData(_))));
    let chain = vec!["g"; 400].join(" + ");
    assert!(matches!(instant(&chain, 0, &src, &Options::default()), Err(Error::BadData(m)) if m.contains("nested")));
}

#[test]
fn constructs_outside_prometheus_2_42_are_refused_by_name() {
    let src = MemSource(Vec::new());
    assert!(matches!(err("sort_by_label(g, \"a\")", &src), Error::BadData(m) if m.ends_with("is not supported")));
    assert!(matches!(err("limitk(1, g)", &src), Error::BadData(m) if m.ends_with("is not supported")));
    assert!(matches!(err("rate(g[5m]", &src), Error::BadData(_)));
    // Prometheus 3 syntax the parser accepts (regression: these were answered).
    for q in [
        "time() - 5m",
        "g{\"room\"=\"x\"}",
        "{\"g\", a=\"b\"}",
        "g @ 1m",
        "sum by (\"a\") (g)",
        "g + ignoring (b, \"a\") g",
        "g{a=\"x\", \"b\"=\"y\"}",
    ] {
        assert!(matches!(err(q, &src), Error::BadData(m) if m.ends_with("is not supported")), "{q}");
    }
    // ... while durations where 2.42 takes them, and strings elsewhere, are fine.
    for q in [
        "rate(g[5m])",
        "max_over_time(g[1h30m:1m])",
        "g offset 5m",
        "g offset -1h",
        "label_replace(g, \"a\", \"5m\", \"b\", \"(.*)\")",
        "g{a=\"5m\"} # comment 5m \"x\"",
        "g5m + 0x1F + 1e5 + 1.5",
        "job:rate:5m + 1",
        "sum by (a) (g) + on (a) group_left (b) count_values(\"b\", g)",
    ] {
        assert!(instant(q, 0, &src, &Options::default()).is_ok(), "{q}");
    }
}

struct Counting(MemSource, std::sync::atomic::AtomicUsize);

impl Queryable for Counting {
    fn select(&self, m: &Matchers, start: i64, end: i64) -> Result<Vec<Series>, crate::model::SelectError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.select(m, start, end)
    }
}

/// A range query split over threads answers what one thread answers, step for step, and the
/// check that two inputs never share result labels spans the parts: `-x` over series that
/// differ only in name, one series before the split and the other after it, is refused as a
/// whole query is (by Prometheus too: it evaluates the whole range at once).
#[test]
fn a_range_query_over_threads_answers_as_one_thread() {
    let points: Vec<(i64, f64)> = (0..2000).map(|k| (k * 15_000, (k * k % 97) as f64)).collect();
    let mut data = vec![series("c", &[("a", "1")], &points), series("c", &[("a", "2")], &points[500..])];
    data.push(series("g", &[], &points.iter().map(|&(t, v)| (t, v.sin())).collect::<Vec<_>>()));
    let src = MemSource(data);
    let (end, step) = (1999 * 15_000, 15_000);
    for q in [
        "sum by (a) (rate(c[5m]))",
        "max_over_time(rate(c[1m])[10m:1m])",
        "topk(1, c) + on(a) group_left c",
        "-g",
        "count_values(\"v\", c)",
    ] {
        let one = Options { threads: 1, ..Options::default() };
        let four = Options { threads: 4, ..Options::default() };
        const { assert!(2000 / super::MIN_STEPS_PER_THREAD >= 4) };
        assert_eq!(range(q, 0, end, step, &src, &four), range(q, 0, end, step, &src, &one), "{q}");
    }
    let split = MemSource(vec![series("x", &[], &points[..100]), series("y", &[], &points[1900..])]);
    let four = Options { threads: 4, ..Options::default() };
    let want = Err(Error::Execution("vector cannot contain metrics with the same labelset".into()));
    assert_eq!(range("-{__name__=~\"x|y\"}", 0, end, step, &split, &four), want);
    assert_eq!(range("-{__name__=~\"x|y\"}", 0, end, step, &split, &Options { threads: 1, ..four }), want);
}

/// Syntax errors the lexer finds carry Prometheus 2.42's position (these are its answers to
/// the same text, taken from a running 2.42), and so do the grammar's.
#[test]
fn lexical_errors_say_where_as_prometheus_does() {
    let src = MemSource::default();
    let error = |q: &str| match instant(q, 0, &src, &Options::default()) {
        Err(Error::BadData(m)) => m,
        other => panic!("{q}: {other:?}"),
    };
    for (q, at) in [
        ("sum(rate(x[5m])", "1:16: parse error: unclosed left parenthesis"),
        ("rate(x[5m]", "1:11: parse error: unclosed left parenthesis"),
        ("(1+", "1:4: parse error: unclosed left parenthesis"),
        ("sum(x))", "1:8: parse error: unexpected right parenthesis"),
        (")", "1:2: parse error: unexpected right parenthesis"),
        ("x{a=\"b}", "1:5: parse error: unterminated quoted string"),
        ("\"abc", "1:1: parse error: unterminated quoted string"),
        ("foo{", "1:5: parse error: unexpected end of input inside braces"),
        ("x offset", "1:9: parse error: unexpected end of input in offset"),
        ("x[5m", "1:5: parse error: "),
        ("sum(\n  x # a comment (\n))", "3:3: parse error: unexpected right parenthesis"),
    ] {
        assert!(error(q).starts_with(at), "{q:?}: {}", error(q));
    }
    // The grammar's errors, at the places Prometheus 2.42 gives (taken from a running 2.42):
    // the first token after which the query cannot be valid, or the end of the input.
    for (q, at) in [
        ("1 +", "1:4: parse error: unexpected end of input"),
        ("x and", "1:6: parse error: unexpected end of input"),
        ("1 > bool", "1:9: parse error: unexpected end of input"),
        ("sum(x) by", "1:10: parse error: unexpected end of input"),
        ("sum without", "1:12: parse error: unexpected end of input"),
        ("sum by (x) 1", "1:12: parse error: unexpected \"1\""),
        ("rate(x[5m]) +* 2", "1:14: parse error: unexpected \"*\""),
        ("x y", "1:3: parse error: unexpected \"y\""),
        ("x + on(a) y z", "1:13: parse error: unexpected \"z\""),
        ("topk(3, x) by", "1:14: parse error: unexpected end of input"),
        ("x[5m] @", "1:8: parse error: unexpected end of input"),
        ("rate(x[5m] 2)", "1:12: parse error: unexpected \"2\""),
        ("-", "1:2: parse error: unexpected end of input"),
        ("x == bool", "1:10: parse error: unexpected end of input"),
        ("sum(rate(x[5m])) by (a) or on() vector(1) 7", "1:43: parse error: unexpected \"7\""),
        ("x{a=}", "1:5: parse error: unexpected \"}\""),
        ("histogram_quantile(0.9 x)", "1:24: parse error: unexpected \"x\""),
        ("label_replace(x, \"a\", \"b\", \"c\", \"d\") x", "1:38: parse error: unexpected \"x\""),
        ("sum(\n  rate(x[5m])\n) y", "3:3: parse error: unexpected \"y\""),
    ] {
        assert!(error(q).starts_with(at), "{q:?}: {}", error(q));
    }
    // The search is bounded: an error far from the end of a long query, or in a query over
    // the size it searches, is reported without a place.
    let far = format!("x y {}", "x + ".repeat(800));
    assert_eq!(error(&far), "parse error: invalid promql query");
    let long = format!("{} y z", "x + ".repeat(1100));
    assert!(long.len() > super::MAX_GRAMMAR_SEARCH_BYTES);
    assert_eq!(error(&long), "parse error: invalid promql query");
    // A number where 2.42 wants a duration is refused at its place (promql-parser would take
    // it as seconds, and panic on one no duration holds); so is an @ timestamp out of range.
    for (q, at) in [
        ("c offset -1e309", "1:11: parse error: unexpected number \"1e309\", expected duration"),
        ("x offset 5", "1:10: parse error: unexpected number \"5\", expected duration"),
        ("x[5]", "1:3: parse error: unexpected number \"5\", expected duration"),
        ("x offset inf", "1:10: parse error: unexpected number \"inf\", expected duration"),
        ("x @ 1e309", "1:5: parse error: timestamp \"1e309\" of the @ modifier is out of range"),
    ] {
        assert_eq!(error(q), at, "{q}");
    }
    let near = format!("{}x y", "x + ".repeat(800));
    assert!(error(&near).starts_with("1:3203: parse error: unexpected \"y\""), "{}", error(&near));
}

#[test]
fn a_range_query_selects_once_per_selector() {
    let points: Vec<(i64, f64)> = (0..200).map(|k| (k * 15_000, k as f64)).collect();
    let src = Counting(MemSource(vec![series("g", &[], &points)]), std::sync::atomic::AtomicUsize::new(0));
    let q = "rate(g[1m]) + g + max_over_time(g[5m:30s] offset 1m) + g @ 600";
    let m = range(q, 600_000, 2_400_000, 15_000, &src, &Options::default()).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(src.1.load(std::sync::atomic::Ordering::Relaxed), 4, "one select per selector");
    // The answers are those of per-step instant evaluations.
    for p in &m[0].samples {
        assert_eq!(one(q, p.t, &src.0), Some(p.v), "at {}", p.t);
    }
}

#[test]
fn a_very_long_operator_chain_is_refused_before_parsing() {
    // Regression: a 20000-term `g + g + ...` overflowed the stack in the parser.
    let chain = vec!["g"; 20_000].join(" + ");
    let r = instant(&chain, 0, &MemSource(Vec::new()), &Options::default());
    assert!(matches!(&r, Err(Error::BadData(m)) if m.contains("operators")), "{r:?}");
    let chain = vec!["g"; 20_000].join(" and ");
    assert!(matches!(instant(&chain, 0, &MemSource(Vec::new()), &Options::default()), Err(Error::BadData(_))));
}

#[test]
fn the_deepest_accepted_query_evaluates_on_a_small_stack() {
    // Regression: 120 nested calls overflowed a 2 MiB stack in a debug build, before the
    // evaluation of operands was split from the (large) frames that compute results.
    // 50 aggregations, 40 parenthesised unary minuses (2 levels each), 40 calls, a 60-term
    // operator chain and a subquery: about 250 levels.
    let src = MemSource(vec![series("g", &[], &[(0, 2.0)])]);
    let chain = vec!["g"; 60].join(" * 1 + 0 * ");
    let inner = format!("{}max_over_time(({chain})[1m:1m]){}", "abs(".repeat(40), ")".repeat(40));
    let q = format!("{}{}{}{}{}", "sum(".repeat(50), "-(".repeat(40), inner, ")".repeat(40), ")".repeat(50));
    assert!(super::parse(&q).is_ok());
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || assert_eq!(one(&q, 0, &src), Some(2.0)))
        .unwrap()
        .join()
        .unwrap();
}

mod properties {
    //! Metamorphic: a range query answers at each step what an instant query at that time
    //! answers; and no query, well-formed or not, panics.

    use proptest::prelude::*;

    use super::series;
    use crate::engine::{Options, Value, instant, range};
    use crate::model::MemSource;

    fn data() -> MemSource {
        let stale = f64::from_bits(crate::model::STALE_NAN_BITS);
        let mut c = Vec::new();
        let mut v = 0.0;
        for k in 0..120i64 {
            v = if k == 50 { 3.0 } else { v + (k % 7) as f64 };
            c.push((k * 15_000 + (k % 3) * 7, v));
        }
        MemSource(vec![
            series("c", &[("a", "1")], &c),
            series("c", &[("a", "2")], &c.iter().map(|&(t, v)| (t + 5_000, v * 2.0)).collect::<Vec<_>>()),
            series("g", &[("a", "1")], &(0..60).map(|k| (k * 30_000, (k as f64).sin())).collect::<Vec<_>>()),
            series("g", &[("a", "3")], &[(0, 1.0), (60_000, f64::NAN), (120_000, stale), (900_000, 4.0)]),
        ])
    }

    fn vector_expr() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("c".to_string()),
            Just("g".to_string()),
            Just("c{a=\"1\"}".to_string()),
            Just("g offset 1m".to_string()),
            Just("c @ 600".to_string()),
            Just("vector(2)".to_string()),
        ];
        leaf.prop_recursive(4, 24, 3, |inner| {
            let range_fn = prop_oneof![
                Just("rate"),
                Just("increase"),
                Just("delta"),
                Just("irate"),
                Just("changes"),
                Just("resets"),
                Just("avg_over_time"),
                Just("max_over_time"),
                Just("stddev_over_time"),
                Just("deriv"),
                Just("last_over_time"),
            ];
            prop_oneof![
                (range_fn.clone(), prop_oneof![Just("c"), Just("g")], 1..6u32)
                    .prop_map(|(f, s, m)| format!("{f}({s}[{m}m])")),
                (range_fn, inner.clone(), 1..4u32, 1..3u32).prop_map(|(f, e, m, s)| format!("{f}(({e})[{m}m:{s}0s])")),
                (prop_oneof![Just("sum"), Just("avg"), Just("max"), Just("count"), Just("stddev")], inner.clone())
                    .prop_map(|(a, e)| format!("{a} by (a) ({e})")),
                (
                    prop_oneof![
                        Just("+"),
                        Just("*"),
                        Just(">"),
                        Just("< bool"),
                        Just("and"),
                        Just("or"),
                        Just("unless")
                    ],
                    inner.clone(),
                    inner.clone()
                )
                    .prop_map(|(op, l, r)| format!("({l}) {op} ({r})")),
                inner.clone().prop_map(|e| format!("abs({e})")),
                inner.clone().prop_map(|e| format!("-({e})")),
                inner.clone().prop_map(|e| format!("topk(1, {e})")),
                inner.prop_map(|e| format!("({e}) * 2")),
            ]
        })
    }

    fn opts() -> Options {
        Options { deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(5)), ..Options::default() }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn a_range_query_answers_what_instant_queries_answer(q in vector_expr(), step in 1..5i64) {
            let src = data();
            let (start, end, step) = (300_000, 1_500_000, step * 45_000);
            let Ok(m) = range(&q, start, end, step, &src, &opts()) else { return Ok(()) };
            let mut t = start;
            while t <= end {
                let mut want: Vec<(String, u64)> = match instant(&q, t, &src, &opts()) {
                    Ok(Value::Vector(v)) => v.iter().map(|e| (e.labels.to_string(), e.v.to_bits())).collect(),
                    Ok(Value::Scalar { v, .. }) => vec![("{}".to_string(), v.to_bits())],
                    other => panic!("{q} at {t}: {other:?}"),
                };
                let mut got: Vec<(String, u64)> = m
                    .iter()
                    .filter_map(|s| s.samples.iter().find(|p| p.t == t).map(|p| (s.labels.to_string(), p.v.to_bits())))
                    .collect();
                want.sort();
                got.sort();
                prop_assert_eq!(want, got, "{} at {}", q, t);
                t += step;
            }
        }

        #[test]
        fn no_query_panics(tokens in prop::collection::vec(prop_oneof![
            Just("c"), Just("g"), Just("("), Just(")"), Just("["), Just("]"), Just("{"), Just("}"),
            Just("5m"), Just(":"), Just("1m"), Just("+"), Just("-"), Just("/"), Just("%"), Just("^"),
            Just("=="), Just(">"), Just("bool"), Just("and"), Just("or"), Just("on"), Just("ignoring"),
            Just("group_left"), Just("by"), Just("without"), Just("sum"), Just("topk"), Just("quantile"),
            Just("count_values"), Just("rate"), Just("histogram_quantile"), Just("label_replace"),
            Just("label_join"), Just("round"), Just("clamp"), Just("holt_winters"), Just("day_of_week"),
            Just("time"), Just("timestamp"), Just("scalar"), Just("vector"), Just("absent"), Just("sort"),
            Just("offset"), Just("@"), Just("start()"), Just("end()"), Just(","), Just("\"a\""),
            Just("\"(.*)\""), Just("0"), Just("1"), Just("-1e309"), Just("NaN"), Just("9e18"),
            Just("a=\"1\""), Just("a=~\"\""), Just("__name__")
        ], 1..14)) {
            let q = tokens.join(" ");
            let src = data();
            let _ = instant(&q, 600_000, &src, &opts());
            let _ = range(&q, 0, 1_800_000, 60_000, &src, &opts());
        }

        /// `seek` from any hint finds what a binary search over all samples finds.
        #[test]
        fn seek_from_any_hint_is_partition_point(
            times in prop::collection::vec(0..1000i64, 0..64),
            hint in 0..80usize,
            at in -10..1010i64,
        ) {
            let mut times = times;
            times.sort();
            times.dedup();
            let samples: Vec<crate::model::Sample> =
                times.iter().map(|&t| crate::model::Sample { t, v: 0.0 }).collect();
            prop_assert_eq!(
                crate::engine::seek(&samples, hint, |p| p.t < at),
                samples.partition_point(|p| p.t < at)
            );
        }
    }
}

/// A label index numbers equal label sets alike whether it meets them by identity or, after
/// forgetting identities, by contents; different sets differently.
#[test]
fn a_label_index_numbers_by_contents_whatever_the_allocation() {
    let mut index = super::LabelIndex::default();
    let a = Labels::new(vec![("x".into(), "1".into())]);
    let a_again = Labels::new(vec![("x".into(), "1".into())]);
    let b = Labels::new(vec![("x".into(), "2".into())]);
    assert_eq!(index.slot(&a), (0, true));
    assert_eq!(index.slot(&a.clone()), (0, false));
    assert_eq!(index.slot(&a_again), (0, false));
    assert_eq!(index.slot(&b), (1, true));
    index.forget_identities();
    assert_eq!(index.slot(&a), (0, false));
    assert_eq!(index.slot(&b), (1, false));
}
