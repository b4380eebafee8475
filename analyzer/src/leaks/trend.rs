//! Growth of one goroutine-count series: the Mann-Kendall trend test (normal approximation
//! with tie and continuity correction) and the Theil–Sen slope. Both are rank-based: a single
//! burst moves them little, and a steady climb of even one goroutine per snapshot is
//! significant after a handful of snapshots. Two extra conditions make a *leak* rather than a
//! trend: the count must still be up at the end (a burst that drained is not a leak), and the
//! slope must be large enough to matter (a large flat pool has a slope of zero).

use crate::compare::special::normal_sf;

/// The trend of one count series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Mann-Kendall S (concordant minus discordant pairs).
    pub s: i64,
    /// Its standard normal score, continuity-corrected (0 when the variance is 0).
    pub z: f64,
    /// One-sided confidence that the series increases: `1 − p`.
    pub confidence: f64,
    /// Theil–Sen slope in goroutines per minute.
    pub growth_per_minute: f64,
    /// Seconds from the last time the series stood at its minimum to the last snapshot.
    pub growing_for_seconds: f64,
    /// Last count minus first count.
    pub net_growth: i64,
}

/// Why a series cannot be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrendError {
    #[error("growth cannot be judged from {0} snapshot(s); at least 2 are needed")]
    TooFewPoints(usize),
    #[error("times and counts differ in length ({0} and {1})")]
    LengthMismatch(usize, usize),
    #[error("snapshot times are not finite or not in increasing order")]
    Unordered,
}

/// Computes the trend of `counts` taken at `times_s` (seconds, strictly increasing).
pub fn trend(times_s: &[f64], counts: &[u64]) -> Result<Trend, TrendError> {
    let n = counts.len();
    if times_s.len() != n {
        return Err(TrendError::LengthMismatch(times_s.len(), n));
    }
    if n < 2 {
        return Err(TrendError::TooFewPoints(n));
    }
    if times_s.iter().any(|t| !t.is_finite()) || times_s.windows(2).any(|w| w[1] <= w[0]) {
        return Err(TrendError::Unordered);
    }
    let (s, var) = mann_kendall(counts);
    let z = if var > 0.0 {
        let corrected = s as f64 - (s.signum() as f64);
        corrected / var.sqrt()
    } else {
        0.0
    };
    let confidence = if var > 0.0 { 1.0 - normal_sf(z) } else { 0.0 };
    let slope = theil_sen(times_s, counts);
    let min = *counts.iter().min().unwrap_or(&0);
    let last_min = counts.iter().rposition(|&c| c == min).unwrap_or(0);
    Ok(Trend {
        s,
        z,
        confidence,
        growth_per_minute: slope * 60.0,
        growing_for_seconds: times_s[n - 1] - times_s[last_min],
        net_growth: counts[n - 1] as i64 - counts[0] as i64,
    })
}

/// S and its variance under no trend, with the tie correction
/// `Var S = [n(n−1)(2n+5) − Σ t(t−1)(2t+5)] / 18`. O(n²); 1 000 snapshots are 500 000 pairs.
fn mann_kendall(x: &[u64]) -> (i64, f64) {
    let n = x.len();
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            s += match x[j].cmp(&x[i]) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    let mut sorted = x.to_vec();
    sorted.sort_unstable();
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let j = sorted[i..].iter().position(|&v| v != sorted[i]).map_or(n, |k| i + k);
        let t = (j - i) as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i = j;
    }
    let nf = n as f64;
    (s, (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0)
}

/// Median of the pairwise slopes (per second).
fn theil_sen(t: &[f64], x: &[u64]) -> f64 {
    let n = x.len();
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            slopes.push((x[j] as f64 - x[i] as f64) / (t[j] - t[i]));
        }
    }
    if slopes.is_empty() {
        return 0.0;
    }
    let mid = slopes.len() / 2;
    let (_, &mut hi, _) = slopes.select_nth_unstable_by(mid, f64::total_cmp);
    if slopes.len() % 2 == 1 {
        hi
    } else {
        let lo = slopes[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    }
}

/// The thresholds that turn a trend into a leak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakRule {
    /// Minimum Theil–Sen growth, goroutines per minute.
    pub min_growth_per_minute: f64,
    /// Minimum Mann-Kendall confidence of an increase.
    pub min_confidence: f64,
}

impl Trend {
    /// Whether this trend is a leak under `rule`: significant, fast enough, and still up at the
    /// end — the net growth must reach half of what the slope predicts over the span, so a
    /// burst that drained back to its baseline is not one.
    pub fn is_leak(&self, span_seconds: f64, rule: LeakRule) -> bool {
        let predicted = self.growth_per_minute / 60.0 * span_seconds;
        self.confidence >= rule.min_confidence
            && self.growth_per_minute >= rule.min_growth_per_minute
            && self.growth_per_minute > 0.0
            && self.net_growth as f64 >= 0.5 * predicted
            && self.net_growth > 0
    }
}
