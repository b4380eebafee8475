//! Which functions take a larger share of the profile in the candidate than in the baseline.
//!
//! Shares, not absolute values: every profile is divided by its own total, so a candidate that
//! ran longer (or under more load) is not a regression. For each function we take its *self*
//! share (samples where it is the leaf: where its own code runs) and *total* share (samples with
//! it anywhere on the stack) in every profile, average them per side, and report the change in
//! percentage points.
//!
//! Significance. A CI run has one to three profiles per side. With so few, the usual tests do not
//! work: Welch's t-test estimates each side's variance with one degree of freedom or none, and an
//! exact Mann-Whitney/permutation test over 2 + 1 profiles has only 3 orderings, so its smallest
//! p-value is 1/3 and it could never reach 95%. We use a one-sided z-test on the difference of the
//! means instead, where the variance of each side's mean is the larger of
//! - the observed between-profile variance divided by the number of profiles (when the side has at
//!   least two), which makes a function that moves as much between baseline runs as between the
//!   sides noise, and
//! - the sampling variance of a share, `D·p(1-p)/n` over the side's `n` sampled events (a CPU
//!   profile at 100 Hz has about 100 events a second), which is what one profile can tell us.
//!   `D ≥ 1` is the side's over-dispersion: on a busy machine samples come in bursts (a thread
//!   that was descheduled resumes and a run of samples lands in one function), and shares then
//!   vary between a side's profiles several times more than independent draws would (we measured
//!   `D` ≈ 3–5 for three CPU-bound programs on two cores). With two or more profiles, `D` is
//!   measured on the side itself, pooled over all its functions (a ratio of sums of variances, so
//!   it rests on many functions even when each one's own variance has a single degree of
//!   freedom); a side with one profile borrows the other side's.
//!
//! CPU samples are not independent draws (work comes in bursts, runs differ in scheduling and
//! cache state): between the corpus' A/A runs the changes are about 1.4 times (2 in variance)
//! what the sampling model predicts. Most functions do not change between the sides, so we measure
//! that excess in each comparison, as genome-wide association studies do ("genomic control",
//! Devlin and Roeder 1999): `λ = median(z²) / 0.4549` over the functions with a share of at least
//! `min_change_pp`, and divide every `z` by `√λ` (never by less than 1).
//!
//! The confidence is `Φ(z)`, the probability that the share really grew. A function is reported
//! when its chosen share ([`Metric`], self by default, because a slower function shows up in its
//! own code while its callers only inherit the change) grew by at least `min_change_pp` with at
//! least `min_confidence` after Holm's correction over the functions that grew by that much (the
//! effect-size filter screens first, so the family is small and a real regression keeps its
//! power): with a hundred functions at 95% each, five would "regress" by chance; the corpus' A/A
//! pair has `runtime.memclrNoHeapPointers` at +1.7 pp with 98.5% uncorrected. Leaf
//! `runtime.asyncPreempt` frames are folded into their caller first (GC preemption signals land on
//! whatever runs and would take self time from it).

use std::collections::{BTreeMap, BTreeSet};

use super::merge::{FoldedProfile, fold_each};
use super::{FlameError, Folded};
use crate::pprof::Profile;

/// Go's preemption frame, folded into its caller before comparing.
pub const ASYNC_PREEMPT: &str = "runtime.asyncPreempt";

/// Which share a regression is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    /// The function's own code (leaf samples).
    #[default]
    SelfShare,
    /// The function and everything it calls.
    TotalShare,
}

/// Thresholds of [`detect_regressions`].
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionOptions {
    /// Sample type to compare (`cpu`, `alloc_space`, ...); `None` takes each profile's default.
    pub sample_type: Option<String>,
    /// Smallest increase of the share, in percentage points, worth reporting.
    pub min_change_pp: f64,
    /// Smallest confidence (0..1) that the share grew.
    pub min_confidence: f64,
    /// The share regressions are judged on.
    pub metric: Metric,
    /// Leaf frames given to their caller before comparing.
    pub fold_into_caller: Vec<String>,
}

impl Default for RegressionOptions {
    fn default() -> Self {
        Self {
            sample_type: None,
            min_change_pp: 1.0,
            min_confidence: 0.95,
            metric: Metric::SelfShare,
            fold_into_caller: vec![ASYNC_PREEMPT.to_string()],
        }
    }
}

/// A function's share of the profile on both sides.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    /// Mean share over the baseline profiles, in percent.
    pub baseline_pct: f64,
    /// Mean share over the candidate profiles, in percent.
    pub candidate_pct: f64,
    /// `candidate_pct - baseline_pct`, in percentage points.
    pub change_pp: f64,
    /// The change divided by its standard error, after the noise correction.
    pub z: f64,
    /// Factor by which the run-to-run variance of this comparison exceeded the sampling model
    /// (genomic control, at least 1); the variance behind `z` includes it.
    pub noise_inflation: f64,
    /// Probability (0..1) that the share really grew (see the module docs).
    pub confidence: f64,
}

/// One function compared between the sides.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    /// Function name.
    pub function: String,
    /// Share of its own code.
    pub self_share: Share,
    /// Share with its callees.
    pub total_share: Share,
    /// The heaviest root-first call path in the candidate that ends in this function.
    pub hottest_path: Vec<String>,
    /// Confidence that the judged share grew, corrected for testing many functions at once
    /// (Holm); from [`compare_functions`] it is the uncorrected self-share confidence.
    pub confidence: f64,
}

impl Regression {
    /// The share of `metric`.
    pub fn share(&self, metric: Metric) -> &Share {
        match metric {
            Metric::SelfShare => &self.self_share,
            Metric::TotalShare => &self.total_share,
        }
    }
}

/// Every function of either side with its shares, sorted by name.
pub fn compare_functions(
    baseline: &[Profile],
    candidate: &[Profile],
    options: &RegressionOptions,
) -> Result<Vec<Regression>, FlameError> {
    let kind = options.sample_type.as_deref();
    let mut base = fold_each(baseline, kind, "baseline")?;
    let mut cand = fold_each(candidate, kind, "candidate")?;
    if let (Some(b), Some(c)) = (base.first(), cand.first())
        && b.type_name != c.type_name
    {
        return Err(FlameError::TypeMismatch {
            profile: 0,
            expected: b.type_name.clone(),
            found: format!("{} (candidate)", c.type_name),
        });
    }
    for p in base.iter_mut().chain(cand.iter_mut()) {
        for name in &options.fold_into_caller {
            p.folded.fold_leaf_into_caller(name);
        }
    }
    let base_shares: Vec<FunctionShares> = base.iter().map(FunctionShares::of).collect();
    let cand_shares: Vec<FunctionShares> = cand.iter().map(FunctionShares::of).collect();
    let base_events: Vec<f64> = base.iter().map(|p| p.events).collect();
    let cand_events: Vec<f64> = cand.iter().map(|p| p.events).collect();
    let mut candidate_merged = Folded::new();
    for p in &cand {
        candidate_merged.merge_from(&p.folded);
    }

    let functions: BTreeSet<&str> =
        base_shares.iter().chain(&cand_shares).flat_map(|s| s.shares.keys().map(String::as_str)).collect();
    let pick = |sides: &[FunctionShares], function: &str, total: bool| -> Vec<f64> {
        sides.iter().map(|s| s.shares.get(function).map_or(0.0, |&(sf, tt)| if total { tt } else { sf })).collect()
    };
    // Over-dispersion per side and share kind, pooled over functions; a side with one profile
    // borrows the other side's (the two run on the same kind of machine), else assumes none.
    let dispersion = |total: bool| -> (f64, f64) {
        let of = |side: &[FunctionShares], events: &[f64]| {
            overdispersion(functions.iter().map(|f| pick(side, f, total)), events)
        };
        let (b, c) = (of(&base_shares, &base_events), of(&cand_shares, &cand_events));
        (b.or(c).unwrap_or(1.0), c.or(b).unwrap_or(1.0))
    };
    let (self_dispersion, total_dispersion) = (dispersion(false), dispersion(true));
    let (base_total, cand_total) = (base_events.iter().sum::<f64>(), cand_events.iter().sum::<f64>());
    let mut out: Vec<Regression> = Vec::with_capacity(functions.len());
    for &function in &functions {
        let share = |total: bool| {
            let (db, dc) = if total { total_dispersion } else { self_dispersion };
            compare_shares(
                Side { shares: &pick(&base_shares, function, total), events: base_total, dispersion: db },
                Side { shares: &pick(&cand_shares, function, total), events: cand_total, dispersion: dc },
            )
        };
        let self_share = share(false);
        out.push(Regression {
            function: function.to_string(),
            confidence: self_share.confidence,
            self_share,
            total_share: share(true),
            hottest_path: hottest_path(&candidate_merged, function),
        });
    }
    let self_inflation = noise_inflation(out.iter().map(|r| &r.self_share), options.min_change_pp);
    let total_inflation = noise_inflation(out.iter().map(|r| &r.total_share), options.min_change_pp);
    for r in &mut out {
        deflate(&mut r.self_share, self_inflation);
        deflate(&mut r.total_share, total_inflation);
        r.confidence = r.self_share.confidence;
    }
    Ok(out)
}

/// Median of the χ²₁ distribution, what the median of `z²` is when the model's variance is right.
const CHI2_1_MEDIAN: f64 = 0.454_936_4;

/// Fewest functions large enough to reach `min_change_pp` for genomic control to apply.
///
/// Shares add up to one, so when one function grows every other one shrinks a little: in a
/// program with five busy functions, a real +8 pp regression moves the other four by about
/// -2 pp each, the median `z²` is theirs, and the "correction" would erase the regression (it did,
/// on `tests/go/cpuregress`). With twenty or more functions most of them are far from the change
/// and the median measures noise, as the method assumes (the corpus service has 23 at 1 pp).
const MIN_FUNCTIONS_FOR_GENOMIC_CONTROL: usize = 20;

/// Genomic control: how much larger the observed `z²` are than the model predicts, estimated as
/// `median(z²) / 0.4549` over the functions large enough to reach `min_change_pp` (at least
/// [`MIN_FUNCTIONS_FOR_GENOMIC_CONTROL`] of them, else 1). It is a median, so the few functions
/// that really changed do not move it.
fn noise_inflation<'a>(shares: impl Iterator<Item = &'a Share>, min_change_pp: f64) -> f64 {
    let mut z2: Vec<f64> = shares
        .filter(|s| s.baseline_pct.max(s.candidate_pct) >= min_change_pp.max(0.5))
        .map(|s| s.z * s.z)
        .filter(|z2| z2.is_finite())
        .collect();
    if z2.len() < MIN_FUNCTIONS_FOR_GENOMIC_CONTROL {
        return 1.0;
    }
    z2.sort_by(f64::total_cmp);
    let median = if z2.len() % 2 == 1 { z2[z2.len() / 2] } else { (z2[z2.len() / 2 - 1] + z2[z2.len() / 2]) / 2.0 };
    (median / CHI2_1_MEDIAN).max(1.0)
}

fn deflate(share: &mut Share, inflation: f64) {
    share.noise_inflation = inflation;
    share.z /= inflation.sqrt();
    share.confidence = normal_cdf(share.z);
}

/// The functions whose share grew by at least `min_change_pp` with at least `min_confidence`,
/// largest change first (ties by name).
pub fn detect_regressions(
    baseline: &[Profile],
    candidate: &[Profile],
    options: &RegressionOptions,
) -> Result<Vec<Regression>, FlameError> {
    let mut found: Vec<Regression> = compare_functions(baseline, candidate, options)?
        .into_iter()
        .filter(|r| r.share(options.metric).change_pp >= options.min_change_pp)
        .collect();
    holm_adjust(&mut found, options.metric);
    found.retain(|r| r.confidence >= options.min_confidence);
    found.sort_by(|a, b| {
        b.share(options.metric)
            .change_pp
            .total_cmp(&a.share(options.metric).change_pp)
            .then_with(|| a.function.cmp(&b.function))
    });
    Ok(found)
}

/// Holm's step-down correction over the functions in `family`: the `i`-th smallest p-value (from
/// 0) is multiplied by `m - i`, and adjusted p-values are made monotone. Sets each
/// [`Regression::confidence`] to one minus its adjusted p-value.
fn holm_adjust(family: &mut [Regression], metric: Metric) {
    let m = family.len();
    let mut order: Vec<usize> = (0..m).collect();
    let p = |r: &Regression| (1.0 - r.share(metric).confidence).clamp(0.0, 1.0);
    order.sort_by(|&a, &b| p(&family[a]).total_cmp(&p(&family[b])).then(a.cmp(&b)));
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max((p(&family[i]) * (m - rank) as f64).min(1.0));
        family[i].confidence = 1.0 - running;
    }
}

/// Differential folded lines `stack before after` (inferno's differential format) of the merged
/// baseline and candidate, the baseline scaled to the candidate's total so that widths are the
/// candidate's and colours show shares, not run length. Sorted by stack.
///
/// Not `inferno::differential`: it scales with truncation and writes in hash-map order, and the
/// golden files need a stable order.
pub fn differential(baseline: &Folded, candidate: &Folded) -> Vec<String> {
    let (bt, ct) = (baseline.total(), candidate.total());
    let scale = if bt > 0 { ct as f64 / bt as f64 } else { 0.0 };
    let mut both: BTreeMap<&Vec<String>, (i64, i64)> = BTreeMap::new();
    for (stack, &v) in baseline.stacks() {
        both.entry(stack).or_default().0 = (v as f64 * scale).round() as i64;
    }
    for (stack, &v) in candidate.stacks() {
        both.entry(stack).or_default().1 = v;
    }
    both.into_iter()
        .filter(|&(_, (b, a))| b > 0 || a > 0)
        .map(|(stack, (b, a))| format!("{} {} {}", stack.join(";"), b.max(0), a.max(0)))
        .collect()
}

/// Self and total share per function of one profile.
struct FunctionShares {
    shares: BTreeMap<String, (f64, f64)>,
}

impl FunctionShares {
    fn of(p: &FoldedProfile) -> Self {
        let total = p.folded.total();
        let mut values: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for (stack, &v) in p.folded.stacks() {
            seen.clear();
            for name in stack {
                if seen.insert(name.as_str()) {
                    let e = values.entry(name.clone()).or_default();
                    e.1 = e.1.saturating_add(v);
                }
            }
            if let Some(leaf) = stack.last() {
                let e = values.entry(leaf.clone()).or_default();
                e.0 = e.0.saturating_add(v);
            }
        }
        let frac = |x: i64| if total > 0 { x as f64 / total as f64 } else { 0.0 };
        Self { shares: values.into_iter().map(|(k, (s, t))| (k, (frac(s), frac(t)))).collect() }
    }
}

/// The profiles of one side for one function.
struct Side<'a> {
    /// The function's share in each profile.
    shares: &'a [f64],
    /// Sampled events of all the side's profiles together.
    events: f64,
    /// The side's over-dispersion (at least 1).
    dispersion: f64,
}

fn compare_shares(base: Side<'_>, cand: Side<'_>) -> Share {
    let (mb, vb) = mean_and_variance_of_mean(&base);
    let (mc, vc) = mean_and_variance_of_mean(&cand);
    let diff = mc - mb;
    let sd = (vb + vc).sqrt();
    // `vb + vc` is never 0 (the sampling variance has a floor); guard anyway.
    let z = if sd > 0.0 { diff / sd } else { 0.0 };
    Share {
        baseline_pct: mb * 100.0,
        candidate_pct: mc * 100.0,
        change_pp: diff * 100.0,
        z,
        noise_inflation: 1.0,
        confidence: normal_cdf(z),
    }
}

/// Mean of the shares and the variance of that mean: the larger of the function's own
/// between-profile variance and the over-dispersed sampling variance (see the module docs).
fn mean_and_variance_of_mean(side: &Side<'_>) -> (f64, f64) {
    let k = side.shares.len() as f64;
    if side.shares.is_empty() {
        return (0.0, 0.0);
    }
    let mean = side.shares.iter().sum::<f64>() / k;
    let between = if side.shares.len() >= 2 {
        side.shares.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (k - 1.0) / k
    } else {
        0.0
    };
    // At least one event, so a share of 0 or 1 still has some uncertainty.
    let n = side.events.max(1.0);
    let p = mean.clamp(0.0, 1.0);
    let sampling = side.dispersion * (p * (1.0 - p)).max(1.0 / n) / n;
    (mean, between.max(sampling))
}

/// How many times more the shares vary between a side's profiles than binomial sampling of
/// their events predicts: `Σ_f s²_f / Σ_f E[s²_f]` over the functions `f` (each item is one
/// function's share in every profile), at least 1; `None` with fewer than two profiles, where
/// nothing can be measured. A ratio of sums, so the large functions, whose variances are
/// measured best, dominate.
fn overdispersion(functions: impl Iterator<Item = Vec<f64>>, events: &[f64]) -> Option<f64> {
    if events.len() < 2 {
        return None;
    }
    let k = events.len() as f64;
    let (mut observed, mut expected) = (0.0, 0.0);
    for shares in functions {
        let mean = shares.iter().sum::<f64>() / k;
        observed += shares.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (k - 1.0);
        expected += events.iter().map(|&n| mean * (1.0 - mean) / n.max(1.0)).sum::<f64>() / k;
    }
    (expected > 0.0).then(|| (observed / expected).max(1.0))
}

/// The heaviest root-first path that ends in `function` (at its outermost occurrence), summing
/// candidate stacks that share that path.
fn hottest_path(folded: &Folded, function: &str) -> Vec<String> {
    let mut paths: BTreeMap<&[String], i64> = BTreeMap::new();
    for (stack, &v) in folded.stacks() {
        if let Some(i) = stack.iter().position(|f| f == function) {
            let e = paths.entry(&stack[..=i]).or_insert(0);
            *e = e.saturating_add(v);
        }
    }
    // Heaviest first; among equals the first path in sorted order, for determinism.
    let mut best: Option<(&[String], i64)> = None;
    for (path, v) in paths {
        if best.is_none_or(|(_, bv)| v > bv) {
            best = Some((path, v));
        }
    }
    best.map(|(p, _)| p.to_vec()).unwrap_or_default()
}

/// Standard normal CDF via the complementary error function (Numerical Recipes' `erfc`
/// approximation, relative error below 1.2e-7).
fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-6);
        assert!((normal_cdf(1.959964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.644854) - 0.05).abs() < 1e-6);
    }

    #[test]
    fn differential_scales_baseline_to_candidate_total() {
        let mut b = Folded::new();
        b.add(vec!["main".into(), "a".into()], 10);
        b.add(vec!["main".into(), "b".into()], 10);
        let mut c = Folded::new();
        c.add(vec!["main".into(), "a".into()], 20);
        c.add(vec!["main".into(), "b".into()], 20);
        // The candidate ran twice as long with the same shares: no change once normalised.
        assert_eq!(differential(&b, &c), vec!["main;a 20 20", "main;b 20 20"]);
    }

    #[test]
    fn hottest_path_ends_at_the_function_and_sums_shared_prefixes() {
        let mut f = Folded::new();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        f.add(s(&["main", "x", "f", "g"]), 3);
        f.add(s(&["main", "x", "f"]), 3);
        f.add(s(&["main", "y", "f"]), 5);
        assert_eq!(hottest_path(&f, "f"), s(&["main", "x", "f"]));
        assert!(hottest_path(&f, "absent").is_empty());
    }

    #[test]
    fn fold_leaf_into_caller_moves_value() {
        let mut f = Folded::new();
        f.add(vec!["main".into(), ASYNC_PREEMPT.into()], 3);
        f.add(vec!["main".into()], 1);
        f.fold_leaf_into_caller(ASYNC_PREEMPT);
        assert_eq!(f.lines(), vec!["main 4"]);
    }
}
