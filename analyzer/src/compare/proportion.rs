//! Error rates: Wilson's score interval and a one-sided test for "the candidate's rate is
//! higher".
//!
//! Wilson's interval (Wilson 1927) inverts the score test, so it stays inside [0, 1], is not a
//! single point at 0 or n events, and keeps close to its nominal coverage for small counts
//! (Brown, Cai and DasGupta 2001; Newcombe 1998), where the Wald interval `p̂ ± z·√(p̂(1−p̂)/n)`
//! does not. It is R's `prop.test(x, n, correct = FALSE)` interval.
//!
//! The test is the pooled two-proportion z-test (R's `prop.test(c(x₁, x₂), c(n₁, n₂),
//! alternative = "greater", correct = FALSE)`) while every expected cell count of the 2×2 table
//! is at least 5, and Fisher's exact test (R's `fisher.test(alternative = "greater")`, the
//! hypergeometric tail given the margins) otherwise: release gates often see 0 to 3 errors, where
//! the normal approximation gives p-values off by an order of magnitude.
//!
//! No data is not a zero: a total of 0 is an error ([`CompareError::NoData`]), never a rate of 0%.
//! Zero events on both sides is data, and carries no evidence of an increase (p = 1).

use super::special::{hypergeometric_sf, normal_sf};
use super::{CompareError, Interval, check_confidence};

/// Every expected cell count must reach this for the z-test to be used.
const MIN_EXPECTED: f64 = 5.0;

/// Events (errors) out of a total (requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Events counted, at most `total`.
    pub events: u64,
    /// Trials counted.
    pub total: u64,
}

impl Counts {
    /// `events` out of `total`.
    pub fn new(events: u64, total: u64) -> Self {
        Counts { events, total }
    }

    /// The observed rate; None when there is no data.
    pub fn rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.events as f64 / self.total as f64)
    }

    fn check(&self, side: &'static str) -> Result<(), CompareError> {
        if self.total == 0 {
            return Err(CompareError::NoData { side });
        }
        if self.events > self.total {
            return Err(CompareError::EventsExceedTotal { side, events: self.events, total: self.total });
        }
        Ok(())
    }
}

/// Wilson's score interval for the rate of `counts` at `confidence`.
pub fn wilson_interval(counts: Counts, confidence: f64) -> Result<Interval, CompareError> {
    let z = check_confidence(confidence)?;
    counts.check("sample")?;
    let n = counts.total as f64;
    let p = counts.events as f64 / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At 0 or n events one bound is exactly 0 or 1; say so rather than leave rounding noise.
    let lo = if counts.events == 0 { 0.0 } else { (center - half).clamp(0.0, p) };
    let hi = if counts.events == counts.total { 1.0 } else { (center + half).clamp(p, 1.0) };
    Ok(Interval { lo, hi, confidence })
}

/// Which test produced a [`ProportionTest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProportionMethod {
    /// Pooled two-proportion z-test.
    PooledZ,
    /// Fisher's exact test (some expected count below 5).
    FisherExact,
}

impl ProportionMethod {
    /// The test's name in a sentence.
    pub fn name(&self) -> &'static str {
        match self {
            ProportionMethod::PooledZ => "two-proportion z-test",
            ProportionMethod::FisherExact => "Fisher's exact test",
        }
    }
}

/// The result of [`rate_increase_test`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProportionTest {
    /// The candidate's observed rate.
    pub candidate_rate: f64,
    /// The baseline's observed rate.
    pub baseline_rate: f64,
    /// The pooled z statistic (computed for both methods; 0 when no side has an event or every
    /// trial is one).
    pub z: f64,
    /// One-sided p-value for "the candidate's rate is higher".
    pub p_value: f64,
    /// The test used.
    pub method: ProportionMethod,
}

/// One-sided test of "the candidate's event rate is higher than the baseline's".
pub fn rate_increase_test(baseline: Counts, candidate: Counts) -> Result<ProportionTest, CompareError> {
    rate_increase(baseline, candidate, MIN_EXPECTED)
}

/// [`rate_increase_test`] with Fisher's exact test at every count, for decisions that must not
/// be liberal: the uncorrected z-test can be anti-conservative when one side has few events
/// even though the pooled expected counts pass Cochran's rule, while Fisher's test keeps its
/// level at every count (conservatively) and agrees with the z-test at large counts.
pub fn rate_increase_exact_test(baseline: Counts, candidate: Counts) -> Result<ProportionTest, CompareError> {
    rate_increase(baseline, candidate, f64::INFINITY)
}

fn rate_increase(baseline: Counts, candidate: Counts, min_expected: f64) -> Result<ProportionTest, CompareError> {
    baseline.check("baseline")?;
    candidate.check("candidate")?;
    let (nb, nc) = (baseline.total as f64, candidate.total as f64);
    let (pb, pc) = (baseline.events as f64 / nb, candidate.events as f64 / nc);
    let events = baseline.events + candidate.events;
    let population = baseline.total + candidate.total;
    let pooled = events as f64 / population as f64;
    let variance = pooled * (1.0 - pooled) * (1.0 / nb + 1.0 / nc);
    let z = if variance > 0.0 { (pc - pb) / variance.sqrt() } else { 0.0 };
    let expected_min = nb.min(nc) * pooled.min(1.0 - pooled);
    let (p_value, method) = if expected_min >= min_expected {
        (normal_sf(z), ProportionMethod::PooledZ)
    } else {
        // Given the margins, the candidate's events are hypergeometric: `events` marked among
        // `population`, `candidate.total` drawn.
        (hypergeometric_sf(candidate.events, population, events, candidate.total), ProportionMethod::FisherExact)
    };
    Ok(ProportionTest { candidate_rate: pc, baseline_rate: pb, z, p_value: p_value.clamp(0.0, 1.0), method })
}
