//! Series, samples, labels and query values, as Prometheus defines them.

use std::fmt;
use std::sync::Arc;

/// The value Prometheus writes to mark a series stale (a NaN with this exact bit pattern,
/// `value.StaleNaN` in Prometheus): a sample holding it ends the series for lookback.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is Prometheus's staleness marker (not any NaN: a NaN sample is a value).
pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A value as Prometheus writes it (Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest
/// round-trip digits, no exponent; `NaN`, `+Inf`, `-Inf`): the sample values of the HTTP API and
/// the labels `count_values` adds.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// A label set, sorted by name, names unique; `__name__` is the metric name. Shared: a clone
/// is a reference count, so the engine hands one series' labels to every step it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Arc<Vec<(String, String)>>);

impl Labels {
    /// Sorts `pairs` by name; a later duplicate name replaces an earlier one. Empty values are
    /// dropped (Prometheus treats a label with an empty value as absent).
    pub fn new(mut pairs: Vec<(String, String)>) -> Labels {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, first| later.0 == first.0);
        Labels(Arc::new(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| self.0[i].1.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_pairs(self) -> Vec<(String, String)> {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Which allocation holds these labels: equal for clones of one label set, and stable while
    /// a clone is alive (the engine's per-series memos are keyed by it and keep a clone).
    pub fn identity(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

impl fmt::Display for Labels {
    /// `name{a="x", b="y"}`, as Prometheus prints a series.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.get("__name__") {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (n, v) in self.iter().filter(|(n, _)| *n != "__name__") {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// One sample: a timestamp in milliseconds since the epoch and a float value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

/// A series: its labels and its samples in ascending time order, one per timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// Why a [`Queryable`] has no series to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The selection would pass a limit of the source (series or samples): the query cannot be
    /// answered as asked (Prometheus's `execution`).
    #[error("{0}")]
    Limit(String),
    /// The source ran past the query's deadline.
    #[error("query timed out in expression evaluation")]
    Timeout,
    /// The source failed (storage).
    #[error("{0}")]
    Failed(String),
}

/// A source of series for the engine: the series whose labels match every matcher, with their
/// samples in `[start_ms, end_ms]` (both ends included; staleness markers kept). The matchers
/// are those of one vector selector (`promql_parser::label::Matchers`, including `__name__`).
pub trait Queryable {
    fn select(
        &self,
        matchers: &promql_parser::label::Matchers,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, SelectError>;
}

/// Series held in memory, answering selections as a storage would: every matcher group of the
/// selector (`a="x" or b="y"` makes two), samples in `[start_ms, end_ms]`, series without any
/// left out. The engine's tests, its benchmark and its fuzz target read from it.
#[derive(Debug, Clone, Default)]
pub struct MemSource(pub Vec<Series>);

impl Queryable for MemSource {
    fn select(
        &self,
        matchers: &promql_parser::label::Matchers,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, SelectError> {
        let all = |group: &[promql_parser::label::Matcher], s: &Series| {
            group.iter().all(|m| m.is_match(s.labels.get(&m.name).unwrap_or("")))
        };
        let mut out = Vec::new();
        for s in &self.0 {
            let selected = all(&matchers.matchers, s)
                && (matchers.or_matchers.is_empty() || matchers.or_matchers.iter().any(|g| all(g, s)));
            if !selected {
                continue;
            }
            let lo = s.samples.partition_point(|p| p.t < start_ms);
            let hi = s.samples.partition_point(|p| p.t <= end_ms);
            if lo < hi {
                out.push(Series { labels: s.labels.clone(), samples: s.samples[lo..hi].to_vec() });
            }
        }
        Ok(out)
    }
}
