//! The span-metric SLIs of one step: request rate, error ratio and P95 latency per service,
//! route and version, from the differences between two snapshots of the cumulative span
//! metrics ([`crate::spanmetrics`]).
//!
//! Design: the span metrics count every SERVER and CONSUMER span once, at ingest; the
//! analysis keeps the previous snapshot's totals of each series and sums the differences by
//! group, so a step costs one pass over the tenant's series, never a read of spans. A series
//! whose start time changed was made again (it expired, or the collector restarted): its new
//! totals are counted from zero, as PromQL's `increase` treats a counter reset. The overflow
//! series (label sets past the cardinality limit) belong to no group and are left out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::spanmetrics::{SeriesKey, SeriesSnapshot, SpanKind, SpanMetrics};

/// A group of span-metric series one set of SLIs is computed for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    pub service: String,
    /// `http.route`, or the span name when the spans have none.
    pub route: String,
    /// `service.version`, empty when the spans have none.
    pub version: String,
}

/// What a group's spans did during one step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    pub calls: u64,
    pub errors: u64,
    /// Per bucket of the span metrics' bounds, not cumulative (the last: above every bound).
    pub buckets: Vec<u64>,
}

/// The totals of one series at the previous step.
#[derive(Debug, Clone)]
struct Totals {
    start_unix_nano: u64,
    calls: u64,
    errors: u64,
    buckets: Vec<u64>,
}

/// The previous totals of one tenant's series, to difference the next snapshot against.
#[derive(Debug, Default)]
pub struct Previous {
    totals: HashMap<Arc<SeriesKey>, Totals>,
}

/// Where the group's dimensions are among the span metrics' configured dimensions.
#[derive(Debug, Clone, Copy)]
pub struct Positions {
    route: Option<usize>,
    version: Option<usize>,
}

impl Positions {
    pub fn of(span_metrics: &SpanMetrics) -> Positions {
        let names: Vec<&str> = span_metrics.dimension_names().collect();
        let find = |wanted: &[&str]| names.iter().position(|n| wanted.contains(n));
        Positions { route: find(&["http.route"]), version: find(&["service.version"]) }
    }
}

/// The differences since `previous` by group, and `previous` moved on to `snapshot`. Only
/// SERVER and CONSUMER spans (the requests a service serves) count.
pub fn deltas(previous: &mut Previous, snapshot: Vec<SeriesSnapshot>, at: Positions) -> BTreeMap<Group, Delta> {
    let mut groups: BTreeMap<Group, Delta> = BTreeMap::new();
    let mut seen: HashMap<Arc<SeriesKey>, Totals> = HashMap::with_capacity(snapshot.len());
    for s in snapshot {
        let Some(key) = s.key else { continue };
        if !matches!(key.kind, SpanKind::Server | SpanKind::Consumer) {
            continue;
        }
        let dimension = |i: Option<usize>| i.and_then(|i| key.dimensions.get(i)).and_then(|d| d.as_deref());
        let group = Group {
            service: key.service.to_string(),
            route: dimension(at.route).unwrap_or(&key.span_name).to_string(),
            version: dimension(at.version).unwrap_or("").to_string(),
        };
        let delta = groups.entry(group).or_default();
        if delta.buckets.len() < s.bucket_counts.len() {
            delta.buckets.resize(s.bucket_counts.len(), 0);
        }
        let before = previous.totals.get(&key).filter(|t| t.start_unix_nano == s.start_unix_nano);
        let minus = |now: u64, then: Option<u64>| now.saturating_sub(then.unwrap_or(0));
        delta.calls += minus(s.calls, before.map(|t| t.calls));
        delta.errors += minus(s.errors, before.map(|t| t.errors));
        for (i, &n) in s.bucket_counts.iter().enumerate() {
            delta.buckets[i] += minus(n, before.and_then(|t| t.buckets.get(i).copied()));
        }
        seen.insert(
            key,
            Totals { start_unix_nano: s.start_unix_nano, calls: s.calls, errors: s.errors, buckets: s.bucket_counts },
        );
    }
    previous.totals = seen;
    groups
}

/// The `q`-quantile of the durations counted in `buckets` (per-bucket counts over `bounds`,
/// in seconds, the last bucket above every bound), as Prometheus's `histogram_quantile`
/// estimates it: linear interpolation inside the bucket the rank falls in, from 0 for the
/// first bucket; a rank in the bucket above every bound gives the highest bound. None without
/// observations.
pub fn quantile(q: f64, bounds: &[f64], buckets: &[u64]) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 || bounds.is_empty() {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if (below + n) as f64 >= rank && n > 0 {
            let Some(&upper) = bounds.get(i) else { return bounds.last().copied() };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            return Some(lower + (upper - lower) * (rank - below as f64) / n as f64);
        }
        below += n;
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket_as_prometheus_does() {
        let bounds = [0.1, 0.2, 0.4];
        // 10 at or below 0.1, 10 in (0.1, 0.2], none above.
        assert_eq!(quantile(0.5, &bounds, &[10, 10, 0, 0]), Some(0.1));
        let p75 = quantile(0.75, &bounds, &[10, 10, 0, 0]).unwrap();
        assert!((p75 - 0.15).abs() < 1e-12, "{p75}");
        // From 0 inside the first bucket.
        let p25 = quantile(0.25, &bounds, &[10, 10, 0, 0]).unwrap();
        assert!((p25 - 0.05).abs() < 1e-12, "{p25}");
        // In the bucket above every bound: the highest bound.
        assert_eq!(quantile(0.95, &bounds, &[1, 0, 0, 9]), Some(0.4));
        assert_eq!(quantile(0.95, &bounds, &[0, 0, 0, 0]), None);
    }
}
