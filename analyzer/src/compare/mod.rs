//! Baseline-vs-candidate comparison statistics for the release gate.
//!
//! The gate must say *why* it failed and must not fail by chance, so every number comes with its
//! uncertainty and every test has a known false-positive rate:
//! - [`mod@percentile`]: nearest-rank percentiles (an observed value, so "p99 ≤ 300 ms" means exactly
//!   "at least 99% of the spans took at most 300 ms", the way an SLO counts), and their
//!   distribution-free confidence intervals from order statistics. Latency is skewed and
//!   multi-modal, so an interval that assumes a shape (normal, log-normal) would be wrong exactly
//!   in the tail we gate on; the number of values below the true p-quantile is
//!   Binomial(n, p) whatever the distribution, which gives exact ranks (Conover, *Practical
//!   Nonparametric Statistics*, §3.2; Hahn and Meeker, *Statistical Intervals*). It also says when
//!   `n` is too small: a 95% interval for p99 needs at least 368 values.
//! - [`rank`] and [`shift`]: the Mann-Whitney U test and the Hodges–Lehmann shift with its
//!   Moses confidence interval, the pair Kayenta's canary judge uses (Netflix, "Automated Canary
//!   Analysis at Netflix with Kayenta", 2018). Both use ranks only, so a few huge outliers (GC
//!   pauses, timeouts) move them little, they make no assumption on the shape of the latency
//!   distribution, and they agree with each other: the shift interval contains 0 exactly when the
//!   two-sided test does not reject (Hollander and Wolfe, *Nonparametric Statistical Methods*,
//!   §4.1–4.3). Exact null distributions are used for small samples without ties, as R's
//!   `wilcox.test` does.
//! - [`proportion`]: error rates. Wilson's score interval (it stays inside [0, 1] and behaves at
//!   0 errors, where the textbook Wald interval collapses to a point; Brown, Cai and DasGupta
//!   2001) and a one-sided two-proportion test that falls back to Fisher's exact test when an
//!   expected count is below 5, the classic rule under which the normal approximation is
//!   unreliable (Cochran 1954); a release with 2 errors in 300 requests is judged exactly.
//! - [`verdict`], [`samples`] and [`finding`]: the vocabulary of the gate (pass, warn, fail,
//!   inconclusive), the minimum-sample rule that makes "not enough data" a verdict rather than a
//!   guess, and the numbers behind a verdict with a plain-English sentence ([`mod@format`] makes the
//!   numbers deterministic).
//! - [`multiple`]: Holm's correction for testing many hypotheses at once.
//! - [`special`]: the normal, binomial and hypergeometric distributions these need.
//!
//! Inputs are slices of finite `f64` sorted ascending; [`sort_finite`] makes one and rejects NaN.
//! Everything here is a pure function of its inputs (the one pseudo-random choice, the pivot of
//! the pairwise-difference selection, uses a fixed seed and does not change the result).

pub mod finding;
pub mod format;
pub mod multiple;
pub mod percentile;
pub mod proportion;
pub mod rank;
pub mod samples;
pub mod shift;
pub mod special;
pub mod verdict;

pub use finding::{Finding, PValue, Unit};
pub use multiple::holm_adjust;
pub use percentile::{nearest_rank, order_statistic_ranks, percentile, percentile_ci, percentile_ci_min_samples};
pub use proportion::{
    Counts, ProportionMethod, ProportionTest, rate_increase_exact_test, rate_increase_test, wilson_interval,
};
pub use rank::{MannWhitney, PValueMethod, mann_whitney, u_null_distribution};
pub use samples::{InsufficientSamples, require_min_samples};
pub use shift::{Shift, hodges_lehmann, kth_pairwise_difference, median};
pub use verdict::{UnknownVerdict, Verdict};

/// Why a comparison could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    /// A value is NaN or infinite; durations and rates are finite numbers.
    #[error("{side} value at index {index} is not a finite number ({value})")]
    NotFinite {
        /// Which input (`sample`, `baseline`, `candidate`).
        side: &'static str,
        /// Position of the value in its input.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// A slice that must be sorted ascending is not; sort it with [`sort_finite`].
    #[error("{side} is not sorted ascending at index {index}")]
    NotSorted {
        /// Which input.
        side: &'static str,
        /// First index whose value is smaller than the one before.
        index: usize,
    },
    /// An input that needs values has none: no data, which is not the same as a zero.
    #[error("{side} has no data")]
    NoData {
        /// Which input.
        side: &'static str,
    },
    /// A percentile outside the open interval (0, 100).
    #[error("percentile {0} is outside (0, 100)")]
    InvalidPercentile(f64),
    /// A confidence level outside the open interval (0, 1).
    #[error("confidence {0} is outside (0, 1)")]
    InvalidConfidence(f64),
    /// Too few values to reach the requested confidence at all (not merely a wide interval).
    #[error("{what} needs at least {needed} values, got {n}")]
    TooFewSamples {
        /// What was asked for, e.g. `95% CI of p99`.
        what: String,
        /// Values available.
        n: usize,
        /// Values needed.
        needed: usize,
    },
    /// A rank outside `1..=count`.
    #[error("rank {k} is outside 1..={count}")]
    RankOutOfRange {
        /// The rank asked for.
        k: u64,
        /// How many values there are.
        count: u64,
    },
    /// A count of events larger than its total.
    #[error("{side} has {events} events out of {total}")]
    EventsExceedTotal {
        /// Which input.
        side: &'static str,
        /// Events counted.
        events: u64,
        /// Total counted.
        total: u64,
    },
}

/// A two-sided confidence interval `[lo, hi]` at the nominal level `confidence` (e.g. 0.95).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
    /// Nominal coverage in (0, 1). Intervals from order statistics and ranks are conservative:
    /// their exact coverage is at least this.
    pub confidence: f64,
}

impl Interval {
    /// Whether `x` lies in the closed interval.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    /// The interval moved by `c`.
    pub fn shifted(&self, c: f64) -> Interval {
        Interval { lo: self.lo + c, hi: self.hi + c, confidence: self.confidence }
    }
}

/// Sorts `values` ascending for the functions of this module, refusing NaN and infinities (the
/// error names the first one).
pub fn sort_finite(values: impl IntoIterator<Item = f64>) -> Result<Vec<f64>, CompareError> {
    let mut out: Vec<f64> = values.into_iter().collect();
    if let Some((index, &value)) = out.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(CompareError::NotFinite { side: "sample", index, value });
    }
    out.sort_unstable_by(f64::total_cmp);
    // total_cmp orders -0.0 before 0.0; they are the same duration.
    for v in &mut out {
        if *v == 0.0 {
            *v = 0.0;
        }
    }
    Ok(out)
}

/// Checks that `values` are finite and sorted ascending, in O(n).
pub(crate) fn check_sorted(values: &[f64], side: &'static str) -> Result<(), CompareError> {
    for (index, &value) in values.iter().enumerate() {
        if !value.is_finite() {
            return Err(CompareError::NotFinite { side, index, value });
        }
        if index > 0 && value < values[index - 1] {
            return Err(CompareError::NotSorted { side, index });
        }
    }
    Ok(())
}

/// Checks a confidence level and returns the two-sided normal critical value `z_{1−α/2}`.
pub(crate) fn check_confidence(confidence: f64) -> Result<f64, CompareError> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(CompareError::InvalidConfidence(confidence));
    }
    Ok(special::normal_quantile(1.0 - (1.0 - confidence) / 2.0))
}
