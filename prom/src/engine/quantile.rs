//! Quantiles: of a set of values (`quantile`, `quantile_over_time`) and of classic histogram
//! buckets (`histogram_quantile`), as Prometheus's `promql/quantile.go` computes them.

/// The φ-quantile of `values` by linear interpolation between the closest ranks
/// (rank `q·(n-1)`); NaN when empty or φ is NaN, ∓Inf when φ is below 0 or above 1.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Prometheus sorts NaN before every number.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// The φ-quantile of one classic histogram given as `(upper bound, cumulative count)` buckets
/// (Prometheus `bucketQuantile`): NaN without a `+Inf` bucket, with fewer than two buckets or no
/// observations; buckets with equal bounds are added together and counts are made monotonic
/// (a lower bucket never counts more than a higher one) before interpolating linearly inside
/// the bucket holding the rank. The lowest bucket starts at 0 unless its bound is not positive,
/// and a rank in the `+Inf` bucket answers the highest finite bound.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    super::gosort::sort(buckets, |a, b| a.0 < b.0);
    match buckets.last() {
        Some(&(ub, _)) if ub == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    // Coalesce equal upper bounds.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    // Monotonic counts.
    let mut max = merged[0].1;
    for b in merged.iter_mut().skip(1) {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    // First bucket (among all but the last) whose count reaches the rank, found by Go's
    // `sort.Search` probing: with NaN counts (or a NaN rank) the predicate is not monotonic and
    // the probe sequence decides, e.g. a NaN rank finds no bucket and answers the highest
    // finite bound.
    let n = merged.len() - 1;
    let b = go_search(n, |i| merged[i].1 >= rank);
    if b == n {
        return merged[n - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let end = merged[b].0;
    let mut count = merged[b].1;
    let mut start = 0.0;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Go's `sort.Search`: the smallest index in `[0, n)` at which `f` is true, assuming `f` is
/// false then true; `n` when it is never true. Reproduced probe for probe.
fn go_search(n: usize, f: impl Fn(usize) -> bool) -> usize {
    let (mut i, mut j) = (0, n);
    while i < j {
        let h = (i + j) / 2;
        if !f(h) {
            i = h + 1;
        } else {
            j = h;
        }
    }
    i
}
