//! `metric`: a stored metric aggregated over each side's window, and the ratio of two.
//!
//! - `avg`, `min`, `max`, `sum` over the values of every matching point (gauge readings or
//!   counter values); `last` is the sum over series of each series' newest value (several pods
//!   each report their own queue depth).
//! - `rate`: per series, the increase between its first and last point in the window divided
//!   by the time between them; a monotonic counter that drops was reset, and its value after
//!   the drop is counted as increase (Prometheus' `rate`). Series are summed.
//! - a percentile: of a histogram's observations, by linear interpolation within the bucket
//!   (Prometheus' `histogram_quantile`: the first bucket starts at 0, the overflow bucket
//!   answers the last finite bound); of the gauge readings otherwise (nearest rank). A
//!   cumulative histogram contributes its increase over the window, a delta histogram the sum.
//! - the ratio form: `increase(numerator) / increase(total)` for counters, the averages'
//!   ratio for gauges.
//!
//! An aggregate has no per-sample test, so relative limits on metrics are judged on the
//! values alone; at least one point per side (two per series for `rate`) is required.

use std::collections::BTreeMap;

use slo_contracts::{Aggregation, Indicator, MetricSelector, Objective};

use super::display::ValueUnit;
use super::input::{GateInput, MetricSample, MetricValue, SideData};
use super::objective::{Evidence, ObjectiveResult, apply};
use crate::compare::format::trim_number;
use crate::compare::{Finding, Unit, percentile, sort_finite};

/// Evaluates a `metric` objective (plain or ratio).
/// Metrics need one point per side (two per series for `rate`), not `min_samples` spans: a
/// scrape every 15 s gives 40 points in ten minutes.
pub(crate) fn evaluate(objective: &Objective, input: &GateInput<'_>) -> ObjectiveResult {
    let (subject, unit) = match &objective.indicator {
        Indicator::Metric { name, matchers, aggregation } => {
            (format!("{} of {}", aggregation_name(*aggregation), selector_text(name, matchers)), ValueUnit::Raw)
        }
        Indicator::MetricRatio { numerator, total, .. } => (
            format!(
                "ratio {} / {}",
                selector_text(&numerator.name, &numerator.matchers),
                selector_text(&total.name, &total.matchers)
            ),
            ValueUnit::Ratio,
        ),
        _ => unreachable!("metric::evaluate is only called for metric indicators"),
    };
    let mut result = ObjectiveResult::new(objective, subject.clone(), unit, "points");
    let measure = |side: &SideData| -> (u64, Result<f64, String>) {
        match &objective.indicator {
            Indicator::Metric { name, matchers, aggregation } => {
                let points = select(side, name, matchers);
                (points.len() as u64, aggregate(&points, *aggregation, &selector_text(name, matchers)))
            }
            Indicator::MetricRatio { numerator, counts: _, total, counter } => {
                let num = select(side, &numerator.name, &numerator.matchers);
                let den = select(side, &total.name, &total.matchers);
                ((num.len() + den.len()) as u64, ratio(&num, &den, *counter, total))
            }
            _ => (0, Err("not a metric".into())),
        }
    };
    let (n_c, value) = measure(input.candidate);
    let baseline = input.baseline.map(measure);
    result.samples.candidate = n_c;
    result.samples.baseline = baseline.as_ref().map(|b| b.0);
    let value = match value {
        Ok(v) => v,
        Err(why) => {
            result.inconclusive(format!("candidate: {why}"));
            return result;
        }
    };
    result.value = Some(value);
    let mut evidence = Evidence::new(value, None);
    let mut finding = Finding {
        subject: subject.clone(),
        unit: if unit == ValueUnit::Ratio { Unit::Ratio } else { Unit::Plain },
        value: Some(value),
        candidate_count: n_c,
        noun: "points".into(),
        ..Finding::default()
    };
    match baseline {
        None => evidence.baseline_missing = Some("there is no baseline data to compare with".into()),
        Some((_, Err(why))) => evidence.baseline_missing = Some(format!("baseline: {why}")),
        Some((n_b, Ok(base))) => {
            result.baseline_value = Some(base);
            evidence.baseline = Some(base);
            finding.baseline = Some(base);
            finding.baseline_count = Some(n_b);
        }
    }
    result.findings.push(finding.sentence());
    apply(&mut result, objective, &evidence, super::objective::SIGNIFICANCE);
    result
}

fn aggregation_name(a: Aggregation) -> String {
    match a {
        Aggregation::Avg => "avg".into(),
        Aggregation::Min => "min".into(),
        Aggregation::Max => "max".into(),
        Aggregation::Sum => "sum".into(),
        Aggregation::Last => "last".into(),
        Aggregation::Rate => "rate".into(),
        Aggregation::Percentile(q) => format!("p{}", trim_number(q)),
    }
}

/// `queue_depth{queue="orders"}`.
fn selector_text(name: &str, matchers: &[(String, String)]) -> String {
    if matchers.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = matchers.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Points of `name` whose labels include every matcher, inside the side's window, ordered by
/// series (sorted labels) then time, so the result does not depend on input order.
fn select<'s>(side: &'s SideData, name: &str, matchers: &[(String, String)]) -> Vec<&'s MetricSample> {
    let (start, end) = side.window;
    let mut points: Vec<&MetricSample> = side
        .metrics
        .iter()
        .filter(|p| p.name == name && (start..=end).contains(&p.time_unix_nano))
        .filter(|p| matchers.iter().all(|(k, v)| p.labels.iter().any(|(pk, pv)| pk == k && pv == v)))
        .collect();
    points.sort_by(|a, b| series_key(a).cmp(&series_key(b)).then(a.time_unix_nano.cmp(&b.time_unix_nano)));
    points
}

fn series_key(p: &MetricSample) -> Vec<(&str, &str)> {
    let mut key: Vec<(&str, &str)> = p.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    key.sort_unstable();
    key
}

/// Points grouped by series, each in time order.
fn series<'s>(points: &[&'s MetricSample]) -> BTreeMap<Vec<(&'s str, &'s str)>, Vec<&'s MetricSample>> {
    let mut out: BTreeMap<Vec<(&str, &str)>, Vec<&MetricSample>> = BTreeMap::new();
    for p in points {
        out.entry(series_key(p)).or_default().push(p);
    }
    out
}

fn scalar(p: &MetricSample) -> Option<f64> {
    match p.value {
        MetricValue::Gauge(v) | MetricValue::Counter { value: v, .. } => Some(v).filter(|v| v.is_finite()),
        MetricValue::Histogram { .. } => None,
    }
}

fn no_points(what: &str) -> String {
    format!("no point of {what} in the window")
}

/// One value for the points of one metric.
pub(crate) fn aggregate(points: &[&MetricSample], aggregation: Aggregation, what: &str) -> Result<f64, String> {
    if points.is_empty() {
        return Err(no_points(what));
    }
    let histograms = points.iter().any(|p| matches!(p.value, MetricValue::Histogram { .. }));
    if aggregation == Aggregation::Rate {
        let rates: Vec<f64> = series(points).values().filter_map(|s| series_rate(s)).collect();
        if rates.is_empty() {
            return Err(format!("rate of {what} needs two points of one series in the window"));
        }
        return Ok(rates.iter().sum());
    }
    if histograms {
        return match aggregation {
            Aggregation::Percentile(q) => {
                let m = merged_histogram(points, what)?;
                histogram_quantile(&m.bounds, &m.counts, q)
                    .ok_or_else(|| format!("{what} has no observations in the window"))
            }
            Aggregation::Avg => {
                let m = merged_histogram(points, what)?;
                if m.count == 0 {
                    return Err(format!("{what} has no observations in the window"));
                }
                Ok(m.sum / m.count as f64)
            }
            other => Err(format!(
                "{what} is a histogram: {} is not defined for it (use avg or a percentile)",
                aggregation_name(other)
            )),
        };
    }
    let values: Vec<f64> = points.iter().filter_map(|p| scalar(p)).collect();
    if values.is_empty() {
        return Err(no_points(what));
    }
    Ok(match aggregation {
        Aggregation::Avg => values.iter().sum::<f64>() / values.len() as f64,
        Aggregation::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        Aggregation::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Aggregation::Sum => values.iter().sum(),
        Aggregation::Last => series(points).values().filter_map(|s| s.last().and_then(|p| scalar(p))).sum(),
        Aggregation::Percentile(q) => {
            let sorted = sort_finite(values).map_err(|e| e.to_string())?;
            percentile(&sorted, q).ok_or_else(|| no_points(what))?
        }
        Aggregation::Rate => unreachable!("handled above"),
    })
}

/// Increase of one monotonic counter series over its values in time order: a drop is a restart
/// from zero, so what was counted after it is added. Shared with the collector's work count.
pub fn monotonic_increase(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut total = 0.0;
    let mut previous: Option<f64> = None;
    for b in values {
        if let Some(a) = previous {
            total += if b < a { b } else { b - a };
        }
        previous = Some(b);
    }
    total
}

/// The increase of the counter series `selector` matches between `start` and `end`, summed over
/// series (the work a build did, for CPU per request).
pub(crate) fn selected_increase(side: &SideData, selector: &MetricSelector, start: u64, end: u64) -> f64 {
    let points: Vec<&MetricSample> = side
        .metrics
        .iter()
        .filter(|p| p.name == selector.name && (start..=end).contains(&p.time_unix_nano))
        .filter(|p| matches!(p.value, MetricValue::Counter { monotonic: true, .. }))
        .filter(|p| selector.matchers.iter().all(|(k, v)| p.labels.iter().any(|(pk, pv)| pk == k && pv == v)))
        .collect();
    let mut points = points;
    points.sort_by(|a, b| series_key(a).cmp(&series_key(b)).then(a.time_unix_nano.cmp(&b.time_unix_nano)));
    series(&points).values().map(|s| monotonic_increase(s.iter().filter_map(|p| scalar(p)))).sum()
}

/// Increase of one series' cumulative value over its points, counting resets.
fn increase(points: &[&MetricSample]) -> f64 {
    let mut total = 0.0;
    for pair in points.windows(2) {
        let (Some(a), Some(b)) = (cumulative(pair[0]), cumulative(pair[1])) else { continue };
        let monotonic = !matches!(pair[1].value, MetricValue::Counter { monotonic: false, .. });
        total += if monotonic && b < a { b } else { b - a };
    }
    total
}

/// The value a rate or increase follows: a counter's value, a histogram's count.
fn cumulative(p: &MetricSample) -> Option<f64> {
    match &p.value {
        MetricValue::Histogram { count, .. } => Some(*count as f64),
        _ => scalar(p),
    }
}

fn series_rate(points: &[&MetricSample]) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    let seconds = last.time_unix_nano.saturating_sub(first.time_unix_nano) as f64 / 1e9;
    (points.len() >= 2 && seconds > 0.0).then(|| increase(points) / seconds)
}

/// One histogram point, borrowed.
struct Point<'a> {
    bounds: &'a [f64],
    counts: &'a [u64],
    count: u64,
    sum: f64,
    cumulative: bool,
}

/// The observations of the window.
struct Merged {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

/// The histogram of the observations in the window, summed over series.
fn merged_histogram(points: &[&MetricSample], what: &str) -> Result<Merged, String> {
    let mut merged: Option<Merged> = None;
    for series in series(points).values() {
        let hist: Vec<Point> = series
            .iter()
            .filter_map(|p| match &p.value {
                MetricValue::Histogram { bounds, counts, count, sum, cumulative } => {
                    Some(Point { bounds, counts, count: *count, sum: *sum, cumulative: *cumulative })
                }
                _ => None,
            })
            .collect();
        let Some(first) = hist.first() else { continue };
        let bounds = first.bounds;
        if hist.iter().any(|h| h.bounds != bounds || h.counts.len() != bounds.len() + 1) {
            return Err(format!("{what} changes its bucket bounds within a series"));
        }
        let mut window = Merged { bounds: bounds.to_vec(), counts: vec![0; bounds.len() + 1], count: 0, sum: 0.0 };
        let last = &hist[hist.len() - 1];
        if first.cumulative && hist.len() >= 2 {
            // The increase over the window; after a reset, what was counted since.
            let reset = last.count < first.count || last.counts.iter().zip(first.counts).any(|(l, f)| l < f);
            for (i, c) in window.counts.iter_mut().enumerate() {
                *c = if reset { last.counts[i] } else { last.counts[i] - first.counts[i] };
            }
            (window.count, window.sum) =
                if reset { (last.count, last.sum) } else { (last.count - first.count, last.sum - first.sum) };
        } else if first.cumulative {
            window.counts.copy_from_slice(first.counts);
            (window.count, window.sum) = (first.count, first.sum);
        } else {
            for h in &hist {
                for (c, add) in window.counts.iter_mut().zip(h.counts) {
                    *c += add;
                }
                window.count += h.count;
                window.sum += h.sum;
            }
        }
        match &mut merged {
            None => merged = Some(window),
            Some(m) => {
                if m.bounds != window.bounds {
                    return Err(format!("{what} has series with different bucket bounds"));
                }
                for (x, add) in m.counts.iter_mut().zip(window.counts) {
                    *x += add;
                }
                m.count += window.count;
                m.sum += window.sum;
            }
        }
    }
    merged.ok_or_else(|| no_points(what))
}

/// The `q`-th percentile of a histogram's observations by linear interpolation in its bucket;
/// `None` without observations.
pub(crate) fn histogram_quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q / 100.0 * total as f64;
    let mut below = 0_u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (below + c) as f64 >= rank {
            let Some(&upper) = bounds.get(i) else {
                // The overflow bucket: the largest finite bound is all we know.
                return bounds.last().copied().or(Some(f64::NAN));
            };
            let lower = if i == 0 { if upper > 0.0 { 0.0 } else { return Some(upper) } } else { bounds[i - 1] };
            return Some(lower + (upper - lower) * (rank - below as f64) / c as f64);
        }
        below += c;
    }
    bounds.last().copied()
}

/// `increase(numerator) / increase(total)` (counters) or `avg / avg` (gauges).
fn ratio(num: &[&MetricSample], den: &[&MetricSample], counter: bool, total: &MetricSelector) -> Result<f64, String> {
    let what = selector_text(&total.name, &total.matchers);
    if den.is_empty() {
        return Err(no_points(&what));
    }
    let (n, d) = if counter {
        let sum = |points: &[&MetricSample]| series(points).values().map(|s| increase(s)).sum::<f64>();
        (sum(num), sum(den))
    } else {
        let avg = |points: &[&MetricSample]| {
            let v: Vec<f64> = points.iter().filter_map(|p| scalar(p)).collect();
            if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
        };
        (avg(num), avg(den))
    };
    if d <= 0.0 {
        return Err(format!("{what} did not increase in the window, so the ratio has no data"));
    }
    Ok(n / d)
}

#[cfg(test)]
mod tests {
    use super::histogram_quantile;

    #[test]
    fn histogram_quantiles_interpolate_within_buckets() {
        // 100 observations: 50 in (0, 0.1], 40 in (0.1, 0.5], 10 in (0.5, 1].
        let bounds = [0.1, 0.5, 1.0];
        let counts = [50, 40, 10, 0];
        assert_eq!(histogram_quantile(&bounds, &counts, 50.0), Some(0.1));
        assert!((histogram_quantile(&bounds, &counts, 70.0).unwrap() - 0.3).abs() < 1e-12);
        assert!((histogram_quantile(&bounds, &counts, 99.0).unwrap() - 0.95).abs() < 1e-12);
        assert_eq!(histogram_quantile(&bounds, &[0, 0, 0, 5], 50.0), Some(1.0));
        assert_eq!(histogram_quantile(&bounds, &[0, 0, 0, 0], 50.0), None);
    }
}
