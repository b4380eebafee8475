//! Percentiles and their distribution-free confidence intervals.
//!
//! Definition: the q-th percentile of `n` sorted values is the nearest-rank value
//! `x_(⌈q·n/100⌉)` (1-based), the smallest value with at least q% of the values at or below it
//! (Hyndman and Fan's type 1, R's `quantile(x, type = 1)`). It is always an observed duration,
//! and "p99 ≤ 300 ms" holds exactly when at least 99% of the spans took at most 300 ms, which is
//! how an SLO is counted. Interpolating definitions (R's default type 7) invent values between
//! observations and do not have that property.
//!
//! Interval: the number `B` of values below the true q-quantile is Binomial(n, q/100) for any
//! continuous distribution, so `[x_(l), x_(u)]` covers it with probability `P(l ≤ B < u)`. We
//! take the largest `l` with `P(B < l) ≤ α/2` and the smallest `u` with `P(B ≥ u) ≤ α/2`: an
//! equal-tailed interval whose coverage is at least the requested confidence. The binomial tails
//! are summed exactly for `n ≤ 10 000` or when the quantile is so extreme that fewer than 100
//! values are expected beyond it (where the normal approximation is skewed), and approximated
//! by the normal distribution with continuity correction otherwise. When even `x_(1)` or `x_(n)`
//! cannot reach the coverage (`(1−p)ⁿ > α/2` or `pⁿ > α/2`) there is no interval: the error says
//! how many values would be needed (368 for a 95% interval of p99).

use super::special::{ln_choose, normal_quantile};
use super::{CompareError, Interval, check_confidence, check_sorted};

/// Above this many values the binomial tails are approximated (when not too skewed).
const EXACT_LIMIT: usize = 10_000;

/// The 1-based nearest rank `⌈q·n/100⌉` of percentile `q` among `n` values; None when `n = 0` or
/// `q` is outside (0, 100).
pub fn nearest_rank(n: usize, q: f64) -> Option<usize> {
    if n == 0 || !(q > 0.0 && q < 100.0) {
        return None;
    }
    let exact = q / 100.0 * n as f64;
    // 0.95 · 100 is 95.00000000000001 in binary floating point; it means 95.
    let nearest = exact.round();
    let rank = if (exact - nearest).abs() <= 1e-9 * nearest.max(1.0) { nearest } else { exact.ceil() };
    Some((rank as usize).clamp(1, n))
}

/// The nearest-rank `q`-th percentile (`q` in (0, 100), e.g. 99.9) of `sorted`, which must be
/// sorted ascending (see [`super::sort_finite`]); None when empty or `q` is out of range.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    nearest_rank(sorted.len(), q).map(|rank| sorted[rank - 1])
}

/// A confidence interval for the `q`-th percentile of the distribution `sorted` was drawn from:
/// `[x_(l), x_(u)]` with the ranks of [`order_statistic_ranks`].
pub fn percentile_ci(sorted: &[f64], q: f64, confidence: f64) -> Result<Interval, CompareError> {
    check_sorted(sorted, "sample")?;
    let (l, u) = order_statistic_ranks(sorted.len(), q, confidence)?;
    Ok(Interval { lo: sorted[l - 1], hi: sorted[u - 1], confidence })
}

/// The 1-based ranks `(l, u)`, `l < u`, of the order statistics that bound the `q`-th percentile
/// with at least `confidence` coverage among `n` values.
pub fn order_statistic_ranks(n: usize, q: f64, confidence: f64) -> Result<(usize, usize), CompareError> {
    if !(q > 0.0 && q < 100.0) {
        return Err(CompareError::InvalidPercentile(q));
    }
    check_confidence(confidence)?;
    let too_few = || CompareError::TooFewSamples {
        what: format!("{}% CI of p{}", super::format::trim_number(confidence * 100.0), super::format::trim_number(q)),
        n,
        needed: min_samples(q / 100.0, confidence),
    };
    if n == 0 {
        return Err(too_few());
    }
    let p = q / 100.0;
    let half_alpha = (1.0 - confidence) / 2.0;
    let beyond = n as f64 * p.min(1.0 - p);
    let (l, u) = if n <= EXACT_LIMIT || beyond < 100.0 {
        exact_ranks(n as u64, p, half_alpha)
    } else {
        let z = normal_quantile(1.0 - half_alpha);
        let mean = n as f64 * p;
        let sd = (mean * (1.0 - p)).sqrt();
        ((mean - z * sd + 0.5).floor() as i64, (mean + z * sd + 0.5).ceil() as i64)
    };
    if l < 1 || u > n as i64 {
        return Err(too_few());
    }
    Ok((l as usize, u as usize))
}

/// The smallest `n` for which [`order_statistic_ranks`] has an answer: both `(1−p)ⁿ` and `pⁿ`
/// must be at most `α/2`.
pub fn percentile_ci_min_samples(q: f64, confidence: f64) -> Result<usize, CompareError> {
    if !(q > 0.0 && q < 100.0) {
        return Err(CompareError::InvalidPercentile(q));
    }
    check_confidence(confidence)?;
    Ok(min_samples(q / 100.0, confidence))
}

fn min_samples(p: f64, confidence: f64) -> usize {
    let half_alpha = (1.0 - confidence) / 2.0;
    let worst = p.max(1.0 - p);
    let mut n = (half_alpha.ln() / worst.ln()).ceil().max(1.0) as usize;
    // Guard the boundary against rounding in the logarithms.
    while n > 1 && worst.powi((n - 1) as i32) <= half_alpha {
        n -= 1;
    }
    while worst.powi(n as i32) > half_alpha {
        n += 1;
    }
    n
}

/// Exact binomial tails: `l` is one more than the last `k` with `P(B ≤ k) ≤ α/2` (0 if none),
/// `u` is the smallest `j` with `P(B ≥ j) ≤ α/2` (`n + 1` if none).
fn exact_ranks(n: u64, p: f64, half_alpha: f64) -> (i64, i64) {
    let ln_p = p.ln();
    let ln_q = (-p).ln_1p();
    let pmf = |k: u64| (ln_choose(n, k) + k as f64 * ln_p + (n - k) as f64 * ln_q).exp();
    // Terms more than 40 standard deviations (+10) from the mean sum to less than e⁻⁷⁰ (Bernstein's
    // inequality), so the sums start there: O(σ) terms instead of O(n).
    let mean = n as f64 * p;
    let reach = 40.0 * (mean * (1.0 - p)).sqrt() + 10.0;
    let first = (mean - reach).floor().max(0.0) as u64;
    let last = ((mean + reach).ceil() as u64).min(n);
    let mut cumulative = 0.0;
    let mut l = n as i64;
    for k in first..=n {
        cumulative += pmf(k);
        if cumulative > half_alpha {
            l = k as i64;
            break;
        }
    }
    let mut cumulative = 0.0;
    let mut u = 1;
    for j in (0..=last).rev() {
        cumulative += pmf(j);
        if cumulative > half_alpha {
            u = j as i64 + 1;
            break;
        }
    }
    (l, u)
}
