//! Holm's step-down correction for testing many hypotheses at once.
//!
//! Testing a hundred attribute values at 5% each finds about five "significant" ones by chance.
//! Holm's method (Holm 1979) controls the family-wise error rate like Bonferroni's, under any
//! dependence between the tests, and is uniformly more powerful, so it is the safe default when
//! a report must not point at an innocent attribute.

/// Holm-adjusted p-values, in the order of `p_values` (R's `p.adjust(p, "holm")`): the `i`-th
/// smallest p-value is multiplied by `m − i + 1`, made monotone, and capped at 1. NaN inputs are
/// treated as 1.
pub fn holm_adjust(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let clean = |p: f64| if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) };
    let mut order: Vec<usize> = (0..m).collect();
    // Stable sort: equal p-values keep their input order, so the result is deterministic.
    order.sort_by(|&a, &b| clean(p_values[a]).total_cmp(&clean(p_values[b])));
    let mut adjusted = vec![1.0; m];
    let mut running = 0.0_f64;
    for (rank, &index) in order.iter().enumerate() {
        let value = ((m - rank) as f64 * clean(p_values[index])).min(1.0);
        running = running.max(value);
        adjusted[index] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_r_p_adjust() {
        // p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") = 0.03 0.06 0.06 0.02
        let adjusted = holm_adjust(&[0.01, 0.04, 0.03, 0.005]);
        let expected = [0.03, 0.06, 0.06, 0.02];
        for (a, e) in adjusted.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{adjusted:?}");
        }
        assert!(holm_adjust(&[]).is_empty());
        assert_eq!(holm_adjust(&[0.5, 0.9]), vec![1.0, 1.0]);
    }
}
