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
/// `Var S = [n(n−1)(2n+5) − Σ t(t−1)(2t+5)] / 18`. S = (pairs that rise) − (pairs that fall),
/// counted by merge sort in O(n log n) rather than over all n(n−1)/2 pairs.
fn mann_kendall(x: &[u64]) -> (i64, f64) {
    let n = x.len();
    let pairs = n * n.saturating_sub(1) / 2;
    let mut scratch = Scratch::default();
    let not_rising = scratch.count_falling(x, Ties::Count);
    let falling = scratch.count_falling(x, Ties::Skip);
    let s = (pairs - not_rising) as i64 - falling as i64;
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

/// Whether [`Scratch::count_falling`] counts pairs of equal values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ties {
    Count,
    Skip,
}

/// Buffers of the merge sorts, reused across the counts of one series.
#[derive(Debug, Default)]
struct Scratch<T> {
    a: Vec<T>,
    b: Vec<T>,
}

impl<T: Copy + PartialOrd> Scratch<T> {
    /// Pairs `i < j` with `v[j] < v[i]` (and `v[j] == v[i]` too with [`Ties::Count`]), by a
    /// bottom-up merge sort: O(n log n).
    fn count_falling(&mut self, v: &[T], ties: Ties) -> usize {
        let mut count = 0usize;
        let right_first = |right: &T, left: &T| match ties {
            Ties::Count => right <= left,
            Ties::Skip => right < left,
        };
        merge_sort(v, &mut self.a, &mut self.b, right_first, |_, waiting| {
            count += waiting.len();
            true
        });
        count
    }
}

/// Bottom-up merge sort of `items` (into `a`, with `b` as scratch). Whenever an element of a
/// right run is taken while elements of its left run still wait (`right_first(right, left)`),
/// `jumped(right, waiting)` sees it with those elements: each is a pair that appears earlier in
/// `items` and sorts after it. `jumped` returning false stops the sort; the result says whether
/// it ran to the end.
fn merge_sort<T: Copy>(
    items: &[T],
    a: &mut Vec<T>,
    b: &mut Vec<T>,
    right_first: impl Fn(&T, &T) -> bool,
    mut jumped: impl FnMut(T, &[T]) -> bool,
) -> bool {
    let n = items.len();
    a.clear();
    a.extend_from_slice(items);
    b.clear();
    b.extend_from_slice(items);
    let mut width = 1;
    while width < n {
        let mut start = 0;
        while start < n {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut i, mut j, mut k) = (start, mid, start);
            while i < mid && j < end {
                if right_first(&a[j], &a[i]) {
                    if !jumped(a[j], &a[i..mid]) {
                        return false;
                    }
                    b[k] = a[j];
                    j += 1;
                } else {
                    b[k] = a[i];
                    i += 1;
                }
                k += 1;
            }
            b[k..k + (mid - i)].copy_from_slice(&a[i..mid]);
            let k = k + (mid - i);
            b[k..k + (end - j)].copy_from_slice(&a[j..end]);
            start = end;
        }
        std::mem::swap(a, b);
        width *= 2;
    }
    true
}

/// Median of the pairwise slopes (per second) of the points `(t[i], x[i])`, `t` strictly
/// increasing. Exact. Up to [`BRUTE_FORCE_PAIRS`] pairs they are all listed; beyond, the median is
/// selected without listing all n(n−1)/2 of them (the randomised slope selection of Matoušek,
/// and of Dillencourt, Mount and Netanyahu, 1992): random pairs bracket the wanted rank in an
/// interval (a, b), the pairs below a and below b are counted by merge sort, and once the
/// interval holds few pairs they are listed and the median picked among them. O(n log n)
/// expected; the random draws (fixed seed) only decide how fast it gets there.
fn theil_sen(t: &[f64], x: &[u64]) -> f64 {
    let n = x.len();
    let pairs = n * n.saturating_sub(1) / 2;
    if pairs == 0 {
        return 0.0;
    }
    let mid = pairs / 2;
    if pairs <= BRUTE_FORCE_PAIRS {
        let mut slopes = all_slopes(t, x, f64::NEG_INFINITY, f64::INFINITY);
        let (_, &mut hi, _) = slopes.select_nth_unstable_by(mid, f64::total_cmp);
        return if pairs % 2 == 1 {
            hi
        } else {
            let lo = slopes[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo + hi) / 2.0
        };
    }
    let mut selector = SlopeSelector::new(t, x);
    let hi = selector.kth(mid);
    if pairs % 2 == 1 { hi } else { (selector.kth(mid - 1) + hi) / 2.0 }
}

/// Series with at most this many pairs (n ≤ 128) have all their slopes listed.
const BRUTE_FORCE_PAIRS: usize = 128 * 127 / 2;

/// If slope selection cannot narrow the median down, series with at most this many pairs
/// (n ≤ 2,048; 16 MiB of slopes) list them all; longer ones settle for a listing a few ulps off.
const FALLBACK_PAIRS: usize = 2048 * 2047 / 2;

/// Slopes of the pairs `i < j` strictly between `lo` and `hi`.
fn all_slopes(t: &[f64], x: &[u64], lo: f64, hi: f64) -> Vec<f64> {
    let mut slopes = Vec::new();
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let slope = (x[j] as f64 - x[i] as f64) / (t[j] - t[i]);
            if slope > lo && slope < hi {
                slopes.push(slope);
            }
        }
    }
    slopes
}

/// The k-th smallest pairwise slope, by counting rather than listing (see [`theil_sen`]).
///
/// A pair `i < j` has a slope above θ exactly when `x[j] − θ·t[j] > x[i] − θ·t[i]`, so the pairs
/// at or below θ are the falling pairs of the sequence `x − θ·t`, which merge sort counts; and
/// the pairs between a and b are the falling pairs of `x − b·t` taken in the order of `x − a·t`,
/// which a merge sort lists. The same comparisons classify every pair in the counts and the
/// listing, so the rank arithmetic is consistent; a listing that does not hold the counted number
/// of pairs (rounding when a and b are a few ulps apart) falls back to listing all pairs.
struct SlopeSelector<'a> {
    t: &'a [f64],
    x: &'a [u64],
    rng: u64,
    scratch: Scratch<f64>,
    y: Vec<f64>,
}

impl<'a> SlopeSelector<'a> {
    fn new(t: &'a [f64], x: &'a [u64]) -> Self {
        SlopeSelector { t, x, rng: 0x9e37_79b9_7f4a_7c15, scratch: Scratch::default(), y: Vec::new() }
    }

    fn pairs(&self) -> usize {
        self.x.len() * (self.x.len() - 1) / 2
    }

    fn random_below(&mut self, n: usize) -> usize {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as usize % n
    }

    fn slope(&self, i: usize, j: usize) -> f64 {
        (self.x[j] as f64 - self.x[i] as f64) / (self.t[j] - self.t[i])
    }

    /// Pairs with a slope at or below θ (`Ties::Count`) or below θ (`Ties::Skip`).
    fn count_up_to(&mut self, theta: f64, ties: Ties) -> usize {
        self.y.clear();
        self.y.extend(self.x.iter().zip(self.t).map(|(&x, &t)| x as f64 - theta * t));
        let y = std::mem::take(&mut self.y);
        let count = self.scratch.count_falling(&y, ties);
        self.y = y;
        count
    }

    /// The k-th smallest slope (0-based).
    fn kth(&mut self, k: usize) -> f64 {
        let n = self.x.len();
        // The k-th slope lies strictly between lo and hi; `below_lo` pairs are at or below lo,
        // `below_hi` pairs are below hi.
        let (mut lo, mut below_lo) = (f64::NEG_INFINITY, 0usize);
        let (mut hi, mut below_hi) = (f64::INFINITY, self.pairs());
        for _ in 0..32 {
            let inside = below_hi - below_lo;
            if inside <= 4 * n {
                if let Some(slope) = self.select_between(lo, hi, k - below_lo, Some(inside)) {
                    return slope;
                }
                break;
            }
            // About 2n random pairs; the share inside (lo, hi) brackets the wanted rank.
            let mut sample: Vec<f64> = Vec::with_capacity(2 * n);
            for _ in 0..2 * n {
                let (a, b) = (self.random_below(n), self.random_below(n));
                if a != b {
                    let slope = self.slope(a.min(b), a.max(b));
                    if slope > lo && slope < hi {
                        sample.push(slope);
                    }
                }
            }
            if sample.len() < 16 {
                continue;
            }
            sample.sort_unstable_by(f64::total_cmp);
            let at = (k - below_lo) as f64 / inside as f64 * sample.len() as f64;
            let spread = 2.0 * (sample.len() as f64).sqrt() + 1.0;
            let pick = |f: f64| sample[(f.max(0.0) as usize).min(sample.len() - 1)];
            let (a, b) = (pick(at - spread), pick(at + spread));
            for theta in [a, b] {
                let at_or_below = self.count_up_to(theta, Ties::Count);
                let below = self.count_up_to(theta, Ties::Skip);
                if below <= k && k < at_or_below {
                    return theta;
                }
                if at_or_below <= k {
                    if theta > lo {
                        (lo, below_lo) = (theta, at_or_below);
                    }
                } else if theta < hi {
                    (hi, below_hi) = (theta, below);
                }
            }
        }
        // Not narrowed down (or inconsistent rounding): list every pair while that is cheap;
        // beyond, take the pairs the listing finds between the bounds, a few ulps off at worst.
        if self.pairs() <= FALLBACK_PAIRS {
            let mut slopes = all_slopes(self.t, self.x, f64::NEG_INFINITY, f64::INFINITY);
            let (_, &mut slope, _) = slopes.select_nth_unstable_by(k, f64::total_cmp);
            return slope;
        }
        self.select_between(lo, hi, k - below_lo, None).unwrap_or(if lo.is_finite() { lo } else { hi })
    }

    /// The `rank`-th smallest slope strictly between `lo` and `hi`, listing the `expected`
    /// pairs there; `None` when the listing does not find exactly that many. Without an
    /// expectation, the rank is clamped to what the listing finds (`None` when it finds nothing).
    fn select_between(&mut self, lo: f64, hi: f64, rank: usize, expected: Option<usize>) -> Option<f64> {
        let n = self.x.len();
        // Points in the order of x − lo·t, ties by later point first: then an earlier point
        // precedes a later one exactly when their slope is above lo.
        let mut order: Vec<usize> = (0..n).collect();
        if lo.is_finite() {
            let key = |i: usize| self.x[i] as f64 - lo * self.t[i];
            order.sort_by(|&p, &q| key(p).total_cmp(&key(q)).then(q.cmp(&p)));
        }
        // Among those, the pairs whose slope is below hi are the falling pairs of x − hi·t.
        let value = |i: usize| if hi.is_finite() { self.x[i] as f64 - hi * self.t[i] } else { -(i as f64) };
        let mut found = Vec::with_capacity(expected.unwrap_or(4 * n));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let complete = merge_sort(
            &order,
            &mut a,
            &mut b,
            |&right, &left| value(right) < value(left),
            |right, waiting| {
                for &p in waiting {
                    found.push(self.slope(p.min(right), p.max(right)));
                }
                expected.is_none_or(|e| found.len() <= e)
            },
        );
        if !complete {
            return None;
        }
        let rank = match expected {
            Some(e) if found.len() != e || rank >= e => return None,
            Some(_) => rank,
            None if found.is_empty() => return None,
            None => rank.min(found.len() - 1),
        };
        let (_, &mut slope, _) = found.select_nth_unstable_by(rank, f64::total_cmp);
        Some(slope)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair, the definition.
    fn brute_mann_kendall_s(x: &[u64]) -> i64 {
        let mut s = 0i64;
        for i in 0..x.len() {
            for j in i + 1..x.len() {
                s += (x[j].cmp(&x[i]) as i8) as i64;
            }
        }
        s
    }

    fn brute_theil_sen(t: &[f64], x: &[u64]) -> f64 {
        let mut slopes = all_slopes(t, x, f64::NEG_INFINITY, f64::INFINITY);
        slopes.sort_unstable_by(f64::total_cmp);
        let m = slopes.len() / 2;
        if slopes.len() % 2 == 1 { slopes[m] } else { (slopes[m - 1] + slopes[m]) / 2.0 }
    }

    /// Series of the shapes leak detection meets: flat with many ties, noisy flat, steady
    /// growth, growth with jittered scrape times, a burst, a staircase, a sawtooth.
    fn series(n: usize, seed: u64) -> Vec<(Vec<f64>, Vec<u64>)> {
        let mut rng = seed | 1;
        let mut next = move |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        let regular: Vec<f64> = (0..n).map(|i| i as f64 * 15.0).collect();
        let jittered: Vec<f64> = (0..n).map(|i| i as f64 * 15.0 + next(3000) as f64 / 1000.0).collect();
        vec![
            (regular.clone(), vec![40; n]),
            (regular.clone(), (0..n).map(|_| 100 + next(7)).collect()),
            (regular.clone(), (0..n).map(|i| 10 + i as u64 / 2 + next(5)).collect()),
            (jittered.clone(), (0..n).map(|i| 200 + (i as u64 * 3) / 4 + next(30)).collect()),
            (jittered, (0..n).map(|i| if (n / 3..n / 3 + 20).contains(&i) { 500 } else { 50 + next(3) }).collect()),
            (regular.clone(), (0..n).map(|i| (i / 50) as u64 * 10).collect()),
            (regular, (0..n).map(|i| (i % 40) as u64).collect()),
        ]
    }

    #[test]
    fn counting_equals_the_pairwise_definition() {
        for n in [2, 3, 10, 129, 200, 517, 1000] {
            for (t, x) in series(n, n as u64) {
                let (s, _) = mann_kendall(&x);
                assert_eq!(s, brute_mann_kendall_s(&x), "Mann-Kendall S, n = {n}, {x:?}");
                let fast = theil_sen(&t, &x);
                let slow = brute_theil_sen(&t, &x);
                assert!(
                    fast == slow || (fast - slow).abs() <= 1e-12 * slow.abs(),
                    "Theil–Sen n = {n}: {fast} vs {slow}"
                );
            }
        }
    }

    #[test]
    fn selection_finds_every_rank() {
        let (t, x) = series(300, 7).swap_remove(3);
        let mut all = all_slopes(&t, &x, f64::NEG_INFINITY, f64::INFINITY);
        all.sort_unstable_by(f64::total_cmp);
        let mut selector = SlopeSelector::new(&t, &x);
        for k in [0, 1, 299, all.len() / 3, all.len() / 2, all.len() - 2, all.len() - 1] {
            assert_eq!(selector.kth(k), all[k], "rank {k}");
            // The listing between two bounds, with and without the expected count. The bounds
            // lie between distinct slopes: a pair exactly at a bound may be classified either
            // way by `x − θ·t` (the counts `kth` uses classify it the same way as the listing).
            let between = |i: usize| {
                let next = all[i..].iter().copied().find(|&s| s > all[i]).unwrap_or(all[i] + 1.0);
                (all[i] + next) / 2.0
            };
            let (lo, hi) = (between(k / 2), between((k + all.len()) / 2));
            let below_lo = all.iter().filter(|&&s| s <= lo).count();
            let inside = all.iter().filter(|&&s| s > lo && s < hi).count();
            if (below_lo..below_lo + inside).contains(&k) {
                assert_eq!(selector.select_between(lo, hi, k - below_lo, Some(inside)), Some(all[k]), "rank {k}");
                assert_eq!(selector.select_between(lo, hi, k - below_lo, None), Some(all[k]), "rank {k}");
            }
        }
        let everything = selector.select_between(f64::NEG_INFINITY, f64::INFINITY, all.len() / 2, None);
        assert_eq!(everything, Some(all[all.len() / 2]));
    }

    #[test]
    fn long_series_select_without_listing_all_pairs() {
        let n = 3000;
        for (t, x) in series(n, 11).into_iter().skip(2).take(2) {
            assert_eq!(theil_sen(&t, &x), brute_theil_sen(&t, &x), "n = {n}");
        }
    }
}
