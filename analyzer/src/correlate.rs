//! Which attribute values are over-represented among anomalous spans (as Honeycomb's BubbleUp).
//!
//! Input: the spans of a candidate split into a *selection* (say the slow ones, see
//! [`split_by_duration`]) and a *baseline* (the others), each span a set of `(key, value)` string
//! attributes (anything implementing [`Attributes`]: slices or vectors of pairs, maps, borrowed or
//! owned). For every value of every key we compare the share of selection spans that have it with
//! the share of baseline spans that have it, so a report can say "92% of slow spans have
//! service.version=v3.7.2-rc4 vs 3% of the others".
//!
//! Choices:
//! - A span without the key counts as not having the value: shares are of all spans of the group,
//!   so a key present only on slow spans stands out.
//! - Keys whose values are nearly unique per span (trace ids, request ids, timestamps) cannot
//!   explain anything and would flood the tests; a key with more distinct values than
//!   `max_distinct_ratio` (default 50%) of the spans that carry it is skipped and reported as
//!   skipped. Each remaining key contributes at most `max_values_per_key` values, its most
//!   frequent, so the number of tests stays bounded.
//! - Each value gets the one-sided two-proportion test of [`crate::compare::proportion`]
//!   (Fisher's exact test when counts are small). Dozens of keys and values are tested at once,
//!   and a report that blames an innocent version or host costs an engineer an afternoon, so the
//!   p-values are corrected with Holm's method across every tested (key, value) pair, which
//!   bounds the chance of any false lead by `alpha` (Holm 1979).
//! - Findings are ranked by the difference in percentage points (what a person reads first),
//!   ties broken by key then value, so the output is deterministic.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use crate::compare::format::share;
use crate::compare::proportion::{Counts, ProportionMethod, rate_increase_test};
use crate::compare::{CompareError, holm_adjust, nearest_rank, sort_finite};

/// A span's attributes as `(key, value)` strings. Implemented for slices and vectors of pairs of
/// anything string-like, for maps, and for references to those.
pub trait Attributes {
    /// The span's attributes; a pair may repeat, it counts once.
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)>;
}

impl<K: AsRef<str>, V: AsRef<str>> Attributes for [(K, V)] {
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Attributes for Vec<(K, V)> {
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.as_slice().attributes()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Attributes for BTreeMap<K, V> {
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

impl<K: AsRef<str>, V: AsRef<str>, H: BuildHasher> Attributes for HashMap<K, V, H> {
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

impl<T: Attributes + ?Sized> Attributes for &T {
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        (**self).attributes()
    }
}

/// Why a correlation could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CorrelateError {
    /// A group has no spans, so there is nothing to compare.
    #[error("the {group} group has no spans")]
    NoSpans {
        /// `selection` or `baseline`.
        group: &'static str,
    },
    /// A span's duration is NaN or infinite.
    #[error("span {index} has duration {value}, which is not a finite number")]
    NotFinite {
        /// Position of the span.
        index: usize,
        /// The duration.
        value: f64,
    },
    /// A percentile outside (0, 100).
    #[error("percentile {0} is outside (0, 100)")]
    InvalidPercentile(f64),
    /// An option is out of range.
    #[error("{0}")]
    InvalidOption(&'static str),
}

/// Settings of [`correlate`].
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelateOptions {
    /// A key is skipped when its distinct values exceed this fraction of the spans that carry it
    /// (and there are at least two). Default 0.5.
    pub max_distinct_ratio: f64,
    /// At most this many values per key are tested, the most frequent ones. Default 20.
    pub max_values_per_key: usize,
    /// Family-wise error rate for [`Correlation::significant`], after Holm's correction.
    /// Default 0.05.
    pub alpha: f64,
}

impl Default for CorrelateOptions {
    fn default() -> Self {
        CorrelateOptions { max_distinct_ratio: 0.5, max_values_per_key: 20, alpha: 0.05 }
    }
}

/// One attribute value over-represented in the selection.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    /// Attribute key.
    pub key: String,
    /// Attribute value.
    pub value: String,
    /// Selection spans with this value.
    pub selection_count: u64,
    /// Baseline spans with this value.
    pub baseline_count: u64,
    /// Share of selection spans with this value, in percent.
    pub selection_pct: f64,
    /// Share of baseline spans with this value, in percent.
    pub baseline_pct: f64,
    /// `selection_pct − baseline_pct`, in percentage points (positive).
    pub difference_pp: f64,
    /// One-sided p-value of "more common in the selection", before correction.
    pub p_value: f64,
    /// The p-value after Holm's correction over every tested pair.
    pub adjusted_p_value: f64,
    /// Whether `adjusted_p_value ≤ alpha`.
    pub significant: bool,
    /// The test used.
    pub method: ProportionMethod,
}

impl Correlation {
    /// `92% of slow spans have service.version=v3.7.2-rc4 vs 3% of the others`.
    pub fn sentence(&self) -> String {
        format!(
            "{} of slow spans have {}={} vs {} of the others",
            share(self.selection_pct / 100.0),
            self.key,
            self.value,
            share(self.baseline_pct / 100.0)
        )
    }
}

/// A key left out because its values are nearly unique per span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Attribute key.
    pub key: String,
    /// Distinct values seen across both groups.
    pub distinct_values: usize,
    /// Spans that carry the key.
    pub spans_with_key: u64,
}

/// A key of which only the most frequent values were tested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CappedKey {
    /// Attribute key.
    pub key: String,
    /// Distinct values seen.
    pub distinct_values: usize,
    /// Values tested.
    pub tested_values: usize,
}

/// The result of [`correlate`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CorrelationReport {
    /// Over-represented values, largest difference first (ties by key, then value); significant
    /// or not, see [`Correlation::significant`].
    pub findings: Vec<Correlation>,
    /// Keys skipped as near-unique, by key.
    pub skipped: Vec<SkippedKey>,
    /// Keys whose rarer values were not tested, by key.
    pub capped: Vec<CappedKey>,
    /// (key, value) pairs tested (the size of the Holm family).
    pub tested: usize,
    /// Spans in the selection.
    pub selection_spans: u64,
    /// Spans in the baseline.
    pub baseline_spans: u64,
}

impl CorrelationReport {
    /// The findings that remain significant after the correction.
    pub fn significant(&self) -> impl Iterator<Item = &Correlation> {
        self.findings.iter().filter(|c| c.significant)
    }
}

/// Per key: spans carrying it, and per value the (selection, baseline) span counts.
#[derive(Default)]
struct KeyCounts<'a> {
    spans: u64,
    values: BTreeMap<&'a str, (u64, u64)>,
}

/// Attribute values over-represented in `selection` compared with `baseline`.
pub fn correlate<S: Attributes>(
    selection: &[S],
    baseline: &[S],
    options: &CorrelateOptions,
) -> Result<CorrelationReport, CorrelateError> {
    if selection.is_empty() {
        return Err(CorrelateError::NoSpans { group: "selection" });
    }
    if baseline.is_empty() {
        return Err(CorrelateError::NoSpans { group: "baseline" });
    }
    if !(options.max_distinct_ratio > 0.0 && options.max_distinct_ratio <= 1.0) {
        return Err(CorrelateError::InvalidOption("max_distinct_ratio must be in (0, 1]"));
    }
    if !(options.alpha > 0.0 && options.alpha < 1.0) {
        return Err(CorrelateError::InvalidOption("alpha must be in (0, 1)"));
    }
    let mut keys: BTreeMap<&str, KeyCounts> = BTreeMap::new();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for (group, spans) in [(0, selection), (1, baseline)] {
        for span in spans {
            pairs.clear();
            pairs.extend(span.attributes());
            pairs.sort_unstable();
            pairs.dedup();
            let mut previous_key = None;
            for &(key, value) in &pairs {
                let entry = keys.entry(key).or_default();
                if previous_key != Some(key) {
                    entry.spans += 1;
                    previous_key = Some(key);
                }
                let counts = entry.values.entry(value).or_default();
                if group == 0 {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
            }
        }
    }

    let (n_selection, n_baseline) = (selection.len() as u64, baseline.len() as u64);
    let mut report =
        CorrelationReport { selection_spans: n_selection, baseline_spans: n_baseline, ..Default::default() };
    let mut tested: Vec<(&str, &str, u64, u64)> = Vec::new();
    for (key, counts) in &keys {
        let distinct = counts.values.len();
        if distinct >= 2 && distinct as f64 > options.max_distinct_ratio * counts.spans as f64 {
            report.skipped.push(SkippedKey {
                key: key.to_string(),
                distinct_values: distinct,
                spans_with_key: counts.spans,
            });
            continue;
        }
        let mut values: Vec<(&str, u64, u64)> = counts.values.iter().map(|(v, &(s, b))| (*v, s, b)).collect();
        // Most frequent first, then by value: a deterministic cap.
        values.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then(a.0.cmp(b.0)));
        if values.len() > options.max_values_per_key {
            report.capped.push(CappedKey {
                key: key.to_string(),
                distinct_values: values.len(),
                tested_values: options.max_values_per_key,
            });
            values.truncate(options.max_values_per_key);
        }
        tested.extend(values.into_iter().map(|(value, s, b)| (*key, value, s, b)));
    }

    let mut results = Vec::with_capacity(tested.len());
    for &(_, _, s, b) in &tested {
        let test =
            rate_increase_test(Counts::new(b, n_baseline), Counts::new(s, n_selection)).map_err(|e| match e {
                // Counts come from the spans themselves; a failure here would be a bug, but never
                // a panic.
                CompareError::NoData { .. } => CorrelateError::NoSpans { group: "baseline" },
                _ => CorrelateError::InvalidOption("inconsistent counts"),
            })?;
        results.push(test);
    }
    let adjusted = holm_adjust(&results.iter().map(|t| t.p_value).collect::<Vec<_>>());
    report.tested = tested.len();
    for (((key, value, s, b), test), adjusted) in tested.into_iter().zip(results).zip(adjusted) {
        let selection_pct = 100.0 * s as f64 / n_selection as f64;
        let baseline_pct = 100.0 * b as f64 / n_baseline as f64;
        let difference_pp = selection_pct - baseline_pct;
        if difference_pp <= 0.0 {
            continue;
        }
        report.findings.push(Correlation {
            key: key.to_string(),
            value: value.to_string(),
            selection_count: s,
            baseline_count: b,
            selection_pct,
            baseline_pct,
            difference_pp,
            p_value: test.p_value,
            adjusted_p_value: adjusted,
            significant: adjusted <= options.alpha,
            method: test.method,
        });
    }
    report.findings.sort_by(|a, b| {
        b.difference_pp.total_cmp(&a.difference_pp).then_with(|| a.key.cmp(&b.key)).then_with(|| a.value.cmp(&b.value))
    });
    Ok(report)
}

/// Spans split at a duration percentile: `slow` are strictly above the threshold, `fast` the rest.
#[derive(Debug)]
pub struct DurationSplit<'s, S> {
    /// The nearest-rank percentile of the durations the split was made at.
    pub threshold: f64,
    /// Spans slower than the threshold, in input order.
    pub slow: Vec<&'s S>,
    /// The other spans, in input order.
    pub fast: Vec<&'s S>,
}

/// Splits `spans` at the `q`-th percentile (nearest rank, in (0, 100)) of `duration`.
pub fn split_by_duration<'s, S>(
    spans: &'s [S],
    duration: impl Fn(&S) -> f64,
    q: f64,
) -> Result<DurationSplit<'s, S>, CorrelateError> {
    if !(q > 0.0 && q < 100.0) {
        return Err(CorrelateError::InvalidPercentile(q));
    }
    if spans.is_empty() {
        return Err(CorrelateError::NoSpans { group: "input" });
    }
    let durations: Vec<f64> = spans.iter().map(&duration).collect();
    let sorted = sort_finite(durations.iter().copied()).map_err(|e| match e {
        CompareError::NotFinite { index, value, .. } => CorrelateError::NotFinite { index, value },
        _ => CorrelateError::InvalidOption("durations"),
    })?;
    let rank = nearest_rank(sorted.len(), q).ok_or(CorrelateError::InvalidPercentile(q))?;
    let threshold = sorted[rank - 1];
    let (mut slow, mut fast) = (Vec::new(), Vec::new());
    for (span, d) in spans.iter().zip(durations) {
        if d > threshold { slow.push(span) } else { fast.push(span) }
    }
    Ok(DurationSplit { threshold, slow, fast })
}
