//! The Hodges–Lehmann shift between baseline and candidate, with its confidence interval.
//!
//! The shift estimate is the median of the `n₁·n₂` pairwise differences `candidate − baseline`
//! (Hodges and Lehmann 1963): "how much slower a candidate request is than a baseline request",
//! robust to outliers and in the unit of the data. Its interval (Moses; Bauer 1972; Hollander
//! and Wolfe §4.3) is `[D_(k), D_(n₁n₂+1−k)]`, where `D` are the sorted differences and `k` is
//! the largest rank with `P(U ≤ k − 1) ≤ α/2` under the Mann-Whitney null distribution without
//! ties (exact below 50 values a side, normal with continuity correction above), so for untied
//! data the interval excludes 0 exactly when the Mann-Whitney test rejects. `k` deliberately
//! ignores ties: it then depends on the sample sizes only, and the interval moves exactly with the
//! data (adding `c` to every candidate value adds `c` to the estimate and both bounds), whatever
//! ties a shift creates or removes; with heavy ties the coverage is approximate, as in Hollander
//! and Wolfe.
//!
//! 200 000 values a side make 4·10¹⁰ differences, too many to list. Small inputs (up to 65 536
//! differences) are enumerated and sorted; larger ones use selection in the sorted matrix
//! `D(i, j) = c_i − b_{n₂−1−j}`, whose rows and columns ascend (Monahan 1984, after Johnson and
//! Mizoguchi 1978): keep a window of candidate columns per row, pick a pivot among the remaining
//! entries, count the entries below and at it in O(n₁ + n₂) with a two-pointer sweep, and drop
//! the part of every row that is on the wrong side of the pivot, until few entries remain. The
//! pivot is the entry at the target's relative rank in a small random sample of the remaining
//! entries (as in Floyd and Rivest's SELECT), drawn from a SplitMix64 generator with a fixed seed:
//! only the running time depends on it, never the result.

use super::rank::{EXACT_BELOW, u_null_distribution};
use super::{CompareError, Interval, check_confidence, check_sorted};

/// Entries sampled to choose each selection pivot.
const PIVOT_SAMPLE: usize = 64;

/// Up to this many pairwise differences are enumerated rather than selected.
const ENUMERATE_LIMIT: u64 = 1 << 16;

/// A location shift estimate with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    /// The estimate (candidate − baseline, in the unit of the data, or relative after
    /// [`Shift::relative_to`]).
    pub estimate: f64,
    /// The confidence interval; None when the samples are too small for the confidence (with
    /// 3 + 3 values the narrowest possible interval already has only 90% coverage).
    pub interval: Option<Interval>,
}

impl Shift {
    /// This shift as a fraction of `reference`, usually the baseline median (+0.12 for +12%).
    /// The reference is treated as known, which slightly understates the uncertainty. None
    /// unless `reference` is positive and finite: relative changes are for positive quantities
    /// such as durations.
    pub fn relative_to(&self, reference: f64) -> Option<Shift> {
        if !(reference > 0.0 && reference.is_finite()) {
            return None;
        }
        Some(Shift {
            estimate: self.estimate / reference,
            interval: self.interval.map(|i| Interval { lo: i.lo / reference, hi: i.hi / reference, ..i }),
        })
    }
}

/// The median of sorted values (mean of the two middle ones for an even count); None when empty.
pub fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(midpoint(sorted[n / 2 - 1], sorted[n / 2])),
    }
}

/// `(a + b) / 2` without overflow, and symmetric: `midpoint(−b, −a) = −midpoint(a, b)`, so
/// swapping the sides negates the estimate exactly.
fn midpoint(a: f64, b: f64) -> f64 {
    a / 2.0 + b / 2.0
}

/// The Hodges–Lehmann shift of `candidate` relative to `baseline` (both sorted ascending and
/// finite) with its `confidence` interval.
pub fn hodges_lehmann(baseline: &[f64], candidate: &[f64], confidence: f64) -> Result<Shift, CompareError> {
    let z = check_confidence(confidence)?;
    let diffs = Differences::new(baseline, candidate)?;
    let total = diffs.count();
    let estimate = if total % 2 == 1 {
        diffs.kth(total.div_ceil(2))
    } else {
        let lower = diffs.kth(total / 2);
        midpoint(lower, diffs.next_at_or_above(lower, total / 2 + 1))
    };
    let k = moses_rank(baseline.len(), candidate.len(), confidence, z);
    let interval = (k >= 1).then(|| Interval { lo: diffs.kth(k), hi: diffs.kth(total + 1 - k), confidence });
    Ok(Shift { estimate, interval })
}

/// The `k`-th smallest (1-based) of the pairwise differences `candidate − baseline` of two sorted
/// inputs, found by selection without listing the differences.
pub fn kth_pairwise_difference(baseline: &[f64], candidate: &[f64], k: u64) -> Result<f64, CompareError> {
    let diffs = Differences::new(baseline, candidate)?;
    if k == 0 || k > diffs.count() {
        return Err(CompareError::RankOutOfRange { k, count: diffs.count() });
    }
    Ok(diffs.select(k))
}

/// The Moses rank `k`: the largest with `P(U ≤ k − 1) ≤ α/2` under the null distribution of `U`
/// without ties; 0 when there is none. `z` is `Φ⁻¹(1 − α/2)`.
///
/// `k` depends on the sample sizes only, not on ties: shifting the candidate can create or
/// remove ties between the sides, and the interval must still move exactly with the data.
fn moses_rank(nb: usize, nc: usize, confidence: f64, z: f64) -> u64 {
    let half_alpha = (1.0 - confidence) / 2.0;
    let exact = if nb < EXACT_BELOW && nc < EXACT_BELOW { u_null_distribution(nc, nb) } else { None };
    if let Some(dist) = exact {
        let mut cumulative = 0.0;
        let mut k = 0;
        for p in dist {
            // A relative slack so that a tail of exactly α/2 (in exact arithmetic) counts.
            if cumulative + p > half_alpha * (1.0 + 1e-12) {
                break;
            }
            cumulative += p;
            k += 1;
        }
        return k;
    }
    let (b, c) = (nb as f64, nc as f64);
    let variance = b * c * (b + c + 1.0) / 12.0;
    // P(U ≤ k − 1) ≈ Φ((k − ½ − bc/2)/σ) ≤ α/2, with continuity correction.
    let k = (b * c / 2.0 - z * variance.sqrt() + 0.5).floor();
    if k < 1.0 { 0 } else { k as u64 }
}

/// The pairwise differences of two sorted inputs, as the sorted matrix `D(i, j) = c_i − b_{n₂−1−j}`.
struct Differences<'a> {
    baseline: &'a [f64],
    candidate: &'a [f64],
}

impl<'a> Differences<'a> {
    fn new(baseline: &'a [f64], candidate: &'a [f64]) -> Result<Self, CompareError> {
        check_sorted(baseline, "baseline")?;
        check_sorted(candidate, "candidate")?;
        if baseline.is_empty() {
            return Err(CompareError::NoData { side: "baseline" });
        }
        if candidate.is_empty() {
            return Err(CompareError::NoData { side: "candidate" });
        }
        Ok(Differences { baseline, candidate })
    }

    fn count(&self) -> u64 {
        self.candidate.len() as u64 * self.baseline.len() as u64
    }

    /// `D(i, j)`. Floating-point subtraction is monotone, so the matrix stays sorted after
    /// rounding.
    fn at(&self, i: usize, j: usize) -> f64 {
        self.candidate[i] - self.baseline[self.baseline.len() - 1 - j]
    }

    /// The `k`-th smallest difference, by enumeration when there are few.
    fn kth(&self, k: u64) -> f64 {
        if self.count() <= ENUMERATE_LIMIT {
            let mut all: Vec<f64> =
                self.candidate.iter().flat_map(|c| self.baseline.iter().map(move |b| c - b)).collect();
            let (_, kth, _) = all.select_nth_unstable_by((k - 1) as usize, f64::total_cmp);
            *kth
        } else {
            self.select(k)
        }
    }

    /// The `k`-th smallest difference given that `v` is the `(k−1)`-th: `v` itself when it
    /// occurs at least `k` times from below, otherwise the smallest difference above `v`.
    fn next_at_or_above(&self, v: f64, k: u64) -> f64 {
        let mut at_or_below = vec![0; self.candidate.len()];
        let (_, le) = self.counts(v, None, Some(&mut at_or_below));
        if le >= k {
            return v;
        }
        (0..self.candidate.len())
            .filter(|&i| at_or_below[i] < self.baseline.len())
            .map(|i| self.at(i, at_or_below[i]))
            .min_by(f64::total_cmp)
            .unwrap_or(v)
    }

    /// Counts the differences `< t` and `≤ t`, optionally per row; rows ascend, so each row's
    /// boundary is at or left of the previous row's and one sweep finds them all.
    fn counts(&self, t: f64, mut below: Option<&mut [usize]>, mut at_or_below: Option<&mut [usize]>) -> (u64, u64) {
        let n = self.baseline.len();
        let (mut lt, mut le) = (n, n);
        let (mut total_lt, mut total_le) = (0_u64, 0_u64);
        for i in 0..self.candidate.len() {
            while lt > 0 && self.at(i, lt - 1) >= t {
                lt -= 1;
            }
            while le > 0 && self.at(i, le - 1) > t {
                le -= 1;
            }
            if let Some(row) = below.as_deref_mut() {
                row[i] = lt;
            }
            if let Some(row) = at_or_below.as_deref_mut() {
                row[i] = le;
            }
            total_lt += lt as u64;
            total_le += le as u64;
        }
        (total_lt, total_le)
    }

    /// Selection of the `k`-th smallest difference (1-based, `k ≤ count`).
    fn select(&self, k: u64) -> f64 {
        let rows = self.candidate.len();
        let cols = self.baseline.len();
        // Columns lo[i]..hi[i] of row i may still hold the answer; everything left of lo[i] is
        // smaller than it, everything from hi[i] on is larger.
        let mut lo = vec![0_usize; rows];
        let mut hi = vec![cols; rows];
        let mut below = vec![0_usize; rows];
        let mut at_or_below = vec![0_usize; rows];
        let mut rng = SplitMix64(0x5EED_5106_A7E0_0004);
        let small = (rows + cols) as u64;
        let mut sample = Vec::with_capacity(PIVOT_SAMPLE);
        loop {
            let active: u64 = (0..rows).map(|i| (hi[i] - lo[i]) as u64).sum();
            let smaller: u64 = lo.iter().map(|&l| l as u64).sum();
            if active <= small {
                let mut rest: Vec<f64> =
                    (0..rows).flat_map(|i| (lo[i]..hi[i]).map(move |j| (i, j))).map(|(i, j)| self.at(i, j)).collect();
                let index = (k - smaller - 1) as usize;
                let (_, kth, _) = rest.select_nth_unstable_by(index, f64::total_cmp);
                return *kth;
            }
            // Pivot: from a random sample of the remaining entries, the one at the target's
            // relative rank (as Floyd and Rivest's SELECT), so the pivot lands near the answer and
            // each step keeps a small fraction of the entries.
            let mut ends = Vec::with_capacity(rows);
            let mut end = 0_u64;
            for i in 0..rows {
                end += (hi[i] - lo[i]) as u64;
                ends.push(end);
            }
            sample.clear();
            for _ in 0..PIVOT_SAMPLE {
                let r = rng.below(active);
                let i = ends.partition_point(|&e| e <= r);
                let offset = r - (ends[i] - (hi[i] - lo[i]) as u64);
                sample.push(self.at(i, lo[i] + offset as usize));
            }
            sample.sort_unstable_by(f64::total_cmp);
            let target = (k - smaller) as f64 / active as f64;
            let pivot = sample[((target * PIVOT_SAMPLE as f64).ceil() as usize).clamp(1, PIVOT_SAMPLE) - 1];
            let (lt, le) = self.counts(pivot, Some(&mut below), Some(&mut at_or_below));
            if k <= lt {
                for i in 0..rows {
                    hi[i] = hi[i].min(below[i]).max(lo[i]);
                }
            } else if k > le {
                for i in 0..rows {
                    lo[i] = lo[i].max(at_or_below[i]).min(hi[i]);
                }
            } else {
                return pivot;
            }
        }
    }
}

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny generator for pivots, with a fixed seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (Lemire's multiply-shift; the bias is irrelevant for pivots).
    fn below(&mut self, bound: u64) -> u64 {
        ((self.next() as u128 * bound as u128) >> 64) as u64
    }
}
