//! Which functions take a larger share of the profile in the candidate than in the baseline.
//!
//! Shares, not absolute values: every profile is divided by its own total, so a candidate that
//! ran longer (or under more load) is not a regression. For each function we take its *self*
//! share (samples where it is the leaf: where its own code runs) and *total* share (samples with
//! it anywhere on the stack) in every profile, average them per run and over the runs of a side,
//! and report the change in percentage points.
//!
//! Replicates are runs, not profiles. A [`Run`] is one process of a build (a scrape target, a
//! pushing process, a directory of profile files), profiled once or many times. The profiles of
//! one run share its scheduling, cache and memory layout, so two runs of the same build differ by
//! more than the profiles of one run differ from each other: two processes of one Go build on a
//! busy 2-core machine were 3.5 pp apart in one function's share while each one's profiles agreed
//! to about 1 pp. A test that takes the profiles as independent calls that difference a
//! regression. So the share of a function in profile `i` of run `r` is modelled as
//! `μ + a_r + e_ri`, a run effect plus a profile's own noise, and each side's mean is the mean of
//! its runs' means, whose variance is `Σ_r (w_r + τ²) / R²` over its `R` runs:
//!
//! - `w_r`, the variance of run `r`'s mean from its profiles: the larger of the observed
//!   between-profile variance over its `m_r` profiles divided by `m_r` (when it has at least two),
//!   and the sampling variance of a share, `D·p(1-p)/n_r` over the run's `n_r` sampled events (a
//!   CPU profile at 100 Hz has about 100 events a second). `D ≥ 1` is the over-dispersion of the
//!   side's profiles within their runs: on a busy machine samples come in bursts (a thread that
//!   was descheduled resumes and a run of samples lands in one function), and shares vary between
//!   profiles several times more than independent draws would (`D` ≈ 3–5 for three CPU-bound
//!   programs on two cores). It is pooled over all functions (a ratio of sums of variances, so it
//!   rests on many functions even when each one's own variance has a single degree of freedom); a
//!   side whose runs have one profile each borrows the other side's.
//! - `τ² = T·p(1-p)`, the run-to-run variance. `T` is a method-of-moments estimate pooled over
//!   functions and over both sides (the runs of both sides ran on the same kind of machine): the
//!   observed variance between a side's run means less what their `w_r` explain, summed over
//!   functions, divided by the summed `p(1-p)`, at least 0. Only sides with two or more runs can
//!   measure it; a side with one run borrows it. When neither side has two runs it cannot be
//!   measured, is taken as 0, and [`Comparison::warnings`] says so: such a comparison calls any
//!   run-to-run difference a change.
//! - The runtime's functions have a `T` of their own, never below the pooled one. Pooled with
//!   the program's, whose large shares outweigh them, theirs was the program's; but how much a
//!   process spends in its GC and scheduler depends on its heap's timing and on how its threads
//!   meet the other processes', far more than its time in its own code does once each run's speed
//!   is taken out (ADR 0008). In the same-load phase of `tests/tests/cpu_dilution.rs` (two
//!   candidate processes whose new background work keeps the GC busy) the runtime's `T` was 0.135
//!   against 0.0019 pooled, and its functions were reported at ">99.9%" while the two candidate
//!   processes differed by a third in them; in A/A comparisons of the same program both were 0.
//!
//! The test is Student's t (one-sided) on the difference of the side means, with the function's
//! own variance between run means pooled over both sides and `R_b + R_c - 2` degrees of freedom —
//! the two-sample t-test over runs — except that its variance is never taken below the model's
//! above: with three runs per side a function's own variance has four degrees of freedom and is
//! sometimes far too small by chance, while the model borrows the sampling noise and the typical
//! run-to-run variance from all functions. With one run per side there is no own variance; the
//! test is then a z-test on the model's variance. Measured on `tests/go/cpuregress` (six fast and
//! three slow processes at once on two cores, eight 3 s CPU profiles each, three repetitions):
//! three fast runs against three others reported a function in 1 of 60 comparisons (every split
//! both ways), and three fast against the three slow found `main.checksum` in 12 of 12; with two
//! runs per side, 0 of 15 A/A comparisons and 9 of 17 A/B. The alternatives tried on the same data
//! reported 5–6 of 60 A/A comparisons: the pooled model alone with `T`'s degrees of freedom
//! counted per function (functions' run effects are not independent: the shares sum to one), and
//! the function's own variance moderated towards the model's (Smyth's moderated t).
//!
//! Why not Mann-Whitney over runs: 3 + 3 runs have twenty orderings, so its smallest one-sided
//! p-value is 1/20 and, after Holm's correction, it could not reach 95%.
//!
//! CPU samples are not independent draws even so: between the corpus' A/A profiles the changes
//! are about 1.4 times (2 in variance) what the sampling model predicts. Most functions do not
//! change between the sides, so we measure that excess in each comparison, as genome-wide
//! association studies do ("genomic control", Devlin and Roeder 1999): `λ = median(z²) / 0.4549`
//! over the functions with a share of at least `min_change_pp`, and divide every `z` by `√λ`
//! (never by less than 1).
//!
//! The confidence is the probability that the share really grew. A function is reported when its
//! chosen share ([`Share`], self by default, because a slower function shows up in its own code
//! while its callers only inherit the change) grew by at least `min_change_pp` with at least
//! `min_confidence` after Holm's correction over the functions that grew by that much (the
//! effect-size filter screens first, so the family is small and a real regression keeps its
//! power): with a hundred functions at 95% each, five would "regress" by chance; the corpus' A/A
//! pair has `runtime.memclrNoHeapPointers` at +1.7 pp with 98.5% uncorrected. Leaf
//! `runtime.asyncPreempt` frames are folded into their caller first (GC preemption signals land on
//! whatever runs and would take self time from it).

use std::collections::{BTreeMap, BTreeSet};

use super::merge::{FoldedProfile, fold_each};
use super::normalize::{self, Load, Normalization, SideRuns, Work};
use super::{FlameError, Folded};
use crate::compare::special::student_t_cdf;
use crate::pprof::Profile;
pub use slo_contracts::Share;

/// Go's preemption frame, folded into its caller before comparing.
pub const ASYNC_PREEMPT: &str = "runtime.asyncPreempt";

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
    pub metric: Share,
    /// Leaf frames given to their caller before comparing.
    pub fold_into_caller: Vec<String>,
    /// How profiles are made comparable (ADR 0008); `Auto` by default.
    pub normalization: Normalization,
    /// The baseline's work (requests served), for CPU per unit of work.
    pub baseline_work: Option<Work>,
    /// The candidate's work.
    pub candidate_work: Option<Work>,
}

impl Default for RegressionOptions {
    fn default() -> Self {
        Self {
            sample_type: None,
            min_change_pp: 1.0,
            min_confidence: 0.95,
            metric: Share::Flat,
            fold_into_caller: vec![ASYNC_PREEMPT.to_string()],
            normalization: Normalization::Auto,
            baseline_work: None,
            candidate_work: None,
        }
    }
}

/// A function's normalized CPU on both sides: its share of each profile, or under
/// [`Normalization::Rate`] and [`Normalization::PerUnit`] its CPU per second or per unit of work
/// as a percentage of the baseline's total (so that `change_pp` is a part of what the baseline
/// spent in every normalization).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShareChange {
    /// Mean over the baseline's runs, in percent.
    pub baseline_pct: f64,
    /// Mean over the candidate's runs, in percent.
    pub candidate_pct: f64,
    /// `candidate_pct - baseline_pct`, in percentage points.
    pub change_pp: f64,
    /// The change relative to the baseline, in percent (`None` when the baseline has none).
    pub change_pct: Option<f64>,
    /// The change divided by its standard error, after the noise correction.
    pub z: f64,
    /// Degrees of freedom of the t-test on `z` (infinite: a z-test; `null` in JSON, which has no
    /// infinity).
    #[serde(with = "infinite_as_null")]
    pub degrees_of_freedom: f64,
    /// Factor by which the run-to-run variance of this comparison exceeded the sampling model
    /// (genomic control, at least 1); the variance behind `z` includes it.
    pub noise_inflation: f64,
    /// Probability (0..1) that the share really grew (see the module docs).
    pub confidence: f64,
}

/// One function compared between the sides.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Regression {
    /// Function name.
    pub function: String,
    /// Share of its own code.
    pub self_share: ShareChange,
    /// Share with its callees.
    pub total_share: ShareChange,
    /// The heaviest root-first call path in the candidate that ends in this function.
    pub hottest_path: Vec<String>,
    /// Confidence that the judged share grew, corrected for testing many functions at once
    /// (Holm); from [`compare_functions`] it is the uncorrected self-share confidence.
    pub confidence: f64,
    /// What kind of change it is.
    pub kind: ChangeKind,
}

/// What kind of change a grown function is (ADR 0008): the developer's next step differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Code the baseline also ran now costs more: it got slower.
    #[default]
    Slower,
    /// Code that was absent or near zero in the baseline (below half of `min_change_pp`).
    NewWork,
    /// The language runtime (`runtime.*`: GC, allocation, scheduling), grown because of what the
    /// program's code does; see [`Comparison::runtime_change`] and
    /// [`crate::flame::attribute_allocations`].
    Runtime,
}

impl ChangeKind {
    /// `slower`, `new_work`, `runtime`.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Slower => "slower",
            ChangeKind::NewWork => "new_work",
            ChangeKind::Runtime => "runtime",
        }
    }
}

/// Infinity as JSON's `null` and back: JSON has no infinity, and serde_json would write `null`
/// and then refuse to read it.
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        match value.is_finite() {
            true => s.serialize_f64(*value),
            false => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

/// Whether a function belongs to the Go runtime (its GC, allocator and scheduler).
pub fn is_runtime(function: &str) -> bool {
    function.starts_with("runtime.") || function.starts_with("internal/runtime/") || function.starts_with("runtime/")
}

impl Regression {
    /// The share of `metric`.
    pub fn share(&self, metric: Share) -> &ShareChange {
        match metric {
            Share::Flat => &self.self_share,
            Share::Cumulative => &self.total_share,
        }
    }
}

/// The profiles of one run: one process of a build, profiled once or more (see the module docs:
/// runs are the replicates of a comparison).
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// What identifies the run: a scrape target's `instance`, a directory, a file.
    pub id: String,
    /// Its profiles, in any order.
    pub profiles: Vec<Profile>,
}

impl Run {
    /// A run of `profiles`.
    pub fn new(id: impl Into<String>, profiles: Vec<Profile>) -> Self {
        Self { id: id.into(), profiles }
    }

    /// Groups `(run id, profile)` pairs into runs, in the order each id first appears.
    pub fn group(items: impl IntoIterator<Item = (String, Profile)>) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for (id, profile) in items {
            let i = *index.entry(id.clone()).or_insert_with(|| {
                runs.push(Run::new(id, Vec::new()));
                runs.len() - 1
            });
            runs[i].profiles.push(profile);
        }
        runs
    }
}

/// How many runs and profiles one side of a comparison had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideSummary {
    /// Runs with at least one profile.
    pub runs: usize,
    /// Profiles over all its runs.
    pub profiles: usize,
}

/// Every compared function (or, from [`detect_regressions`], the regressed ones) and what the
/// comparison rested on.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The functions, sorted by name from [`compare_functions`], by change from
    /// [`detect_regressions`].
    pub functions: Vec<Regression>,
    /// The baseline's runs and profiles.
    pub baseline: SideSummary,
    /// The candidate's runs and profiles.
    pub candidate: SideSummary,
    /// Run-to-run variance of the self shares as a multiple of `p(1-p)` (`T` of the module docs,
    /// pooled over all functions); `None` when neither side had two runs to measure it.
    pub run_variance: Option<f64>,
    /// Degrees of freedom of the tests, `R_b + R_c - 2` (infinite for the z-test of one run per
    /// side).
    pub degrees_of_freedom: f64,
    /// How the profiles were made comparable (never `Auto`: the choice made).
    pub normalization: Normalization,
    /// Why that normalization, and what limits it.
    pub notes: Vec<String>,
    /// The builds' loads compared, when they could be.
    pub load: Option<Load>,
    /// Work per second per process of each side, when known.
    pub work_per_second: (Option<f64>, Option<f64>),
    /// What a unit of work is (`request`).
    pub unit: String,
    /// CPU rates were asked for, but the loads differ beyond [`normalize::LOAD_TOLERANCE`]: the
    /// functions found are not to be trusted.
    pub loads_differ: bool,
    /// Factor that puts the merged baseline on the candidate's scale in a differential flame graph
    /// ([`differential_scaled`]): the ratio of totals for shares, of profiled time for rates, of
    /// work done for per-unit costs.
    pub baseline_scale: f64,
    /// Under rates and per-unit costs: the median ratio (candidate over baseline) of the costs of
    /// the program's functions both builds run, which the candidate's values were divided by
    /// (ADR 0008); `None` for shares or with fewer than three such functions.
    pub common_shift: Option<f64>,
    /// The runtime's functions together (`runtime.*`), self values: how much the GC, allocator
    /// and scheduler grew, whether or not any one of them was found on its own.
    pub runtime_change: RuntimeChange,
}

/// The runtime's functions taken together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeChange {
    /// Their summed self value on the baseline, percent (of the profile, or of the baseline's
    /// total).
    pub baseline_pct: f64,
    /// On the candidate.
    pub candidate_pct: f64,
    /// The largest contributors to the change: function and its change in pp, largest first.
    pub top: Vec<(String, f64)>,
    /// The summed self value tested as one function (the runtime's run-to-run variance, the
    /// program's noise inflation): how surely the runtime as a whole grew. GC work spread over
    /// many runtime functions grows each by too little to pass Holm's correction on its own,
    /// while their sum grows plainly.
    pub together: Option<ShareChange>,
    /// Whether the runtime's growth is reported (set by [`detect_regressions`]): its sum grew by
    /// at least `min_change_pp` with at least `min_confidence`, or one of its functions did.
    pub reported: bool,
}

impl RuntimeChange {
    /// `candidate_pct - baseline_pct`.
    pub fn change_pp(&self) -> f64 {
        self.candidate_pct - self.baseline_pct
    }
}

impl Comparison {
    /// How a value reads: `share`, `CPU per second`, `CPU per request`.
    pub fn measure(&self) -> String {
        self.normalization.per(&self.unit)
    }

    /// What a reader must know to trust the result: a side with a single run, loads that differ
    /// under CPU rates.
    pub fn warnings(&self) -> Vec<String> {
        let one = |side: &SideSummary| side.runs == 1;
        let mut out = Vec::new();
        if self.loads_differ {
            out.extend(self.notes.iter().filter(|n| n.starts_with("the loads differ")).cloned());
        }
        match (one(&self.baseline), one(&self.candidate)) {
            (true, true) => out.push(
                "baseline and candidate have one run each: differences between runs of one build cannot be \
                 measured and may be reported as changes; profile two or more processes (scrape targets or \
                 directories of profiles) per side"
                    .to_string(),
            ),
            (true, false) => out.push(
                "the baseline has one run: its run-to-run variation is taken from the candidate's runs".to_string(),
            ),
            (false, true) => out.push(
                "the candidate has one run: its run-to-run variation is taken from the baseline's runs".to_string(),
            ),
            (false, false) => {}
        }
        out
    }
}

/// Every function of either side with its shares, sorted by name.
pub fn compare_functions(
    baseline: &[Run],
    candidate: &[Run],
    options: &RegressionOptions,
) -> Result<Comparison, FlameError> {
    let (mut comparison, candidate_merged) = compare_shares(baseline, candidate, options)?;
    for r in &mut comparison.functions {
        r.hottest_path = hottest_path(&candidate_merged, &r.function);
    }
    Ok(comparison)
}

/// [`compare_functions`] without the hottest paths (left empty), and the merged candidate they
/// are found in. A path is as long as the function is deep, so the paths of every function of a
/// stack `d` frames deep hold `d²/2` names: callers fill in only those they report.
fn compare_shares(
    baseline: &[Run],
    candidate: &[Run],
    options: &RegressionOptions,
) -> Result<(Comparison, Folded), FlameError> {
    let kind = options.sample_type.as_deref();
    let base_runs: Vec<&Run> = baseline.iter().filter(|r| !r.profiles.is_empty()).collect();
    let cand_runs: Vec<&Run> = candidate.iter().filter(|r| !r.profiles.is_empty()).collect();
    let mut base = fold_each(base_runs.iter().flat_map(|r| &r.profiles), kind, "baseline")?;
    let mut cand = fold_each(cand_runs.iter().flat_map(|r| &r.profiles), kind, "candidate")?;
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
    let resolved = {
        let base_sides = SideRuns {
            name: "baseline",
            runs: split_runs(&base, base_runs.iter().map(|r| r.profiles.len())),
            work: options.baseline_work.as_ref(),
        };
        let cand_sides = SideRuns {
            name: "candidate",
            runs: split_runs(&cand, cand_runs.iter().map(|r| r.profiles.len())),
            work: options.candidate_work.as_ref(),
        };
        normalize::resolve(options.normalization, &base_sides, &cand_sides)?
    };
    let base_side = SideShares::new(&base, base_runs.iter().map(|r| r.profiles.len()), &resolved.divisors.0);
    let cand_side = SideShares::new(&cand, cand_runs.iter().map(|r| r.profiles.len()), &resolved.divisors.1);
    let mut candidate_merged = Folded::new();
    for p in &cand {
        candidate_merged.merge_from(&p.folded);
    }

    let binomial = resolved.normalization == Normalization::Share;
    let functions: BTreeSet<&str> = base_side.functions().chain(cand_side.functions()).collect();
    let self_model = Model::fit(&functions, &base_side, &cand_side, false, binomial);
    let total_model = Model::fit(&functions, &base_side, &cand_side, true, binomial);
    let mut out: Vec<Regression> = Vec::with_capacity(functions.len());
    for &function in &functions {
        let self_share = self_model.compare(&base_side, &cand_side, function);
        out.push(Regression {
            function: function.to_string(),
            confidence: self_share.confidence,
            self_share,
            total_share: total_model.compare(&base_side, &cand_side, function),
            hottest_path: Vec::new(),
            kind: ChangeKind::Slower,
        });
    }
    for r in &mut out {
        r.kind = if is_runtime(&r.function) {
            ChangeKind::Runtime
        } else if r.share(options.metric).baseline_pct < options.min_change_pp / 2.0 {
            ChangeKind::NewWork
        } else {
            ChangeKind::Slower
        };
    }
    let mut runtime_change = runtime_change(&out);
    runtime_change.together = Some(self_model.compare(&base_side, &cand_side, RUNTIME_TOGETHER));
    // Under rates and per-unit costs the noise is measured on the program's functions only: new
    // work lands in the runtime (a busier GC moves dozens of its functions at once, all real), and
    // taken for noise it erased every change of the live run of ADR 0008 (λ = 11.6).
    let (fewest, measured): (usize, Vec<&Regression>) = if binomial {
        (MIN_FUNCTIONS_FOR_GENOMIC_CONTROL, out.iter().collect())
    } else {
        (MIN_FUNCTIONS_FOR_GENOMIC_CONTROL_OF_COSTS, out.iter().filter(|r| r.kind != ChangeKind::Runtime).collect())
    };
    let self_inflation = noise_inflation(measured.iter().map(|r| &r.self_share), options.min_change_pp, fewest);
    let total_inflation = noise_inflation(measured.iter().map(|r| &r.total_share), options.min_change_pp, fewest);
    for r in &mut out {
        deflate(&mut r.self_share, self_inflation);
        deflate(&mut r.total_share, total_inflation);
        r.confidence = r.self_share.confidence;
    }
    if let Some(together) = &mut runtime_change.together {
        deflate(together, self_inflation);
    }
    let comparison = Comparison {
        functions: out,
        baseline: SideSummary { runs: base_side.runs.len(), profiles: base.len() },
        candidate: SideSummary { runs: cand_side.runs.len(), profiles: cand.len() },
        run_variance: self_model.program.t,
        degrees_of_freedom: match base_side.runs.len() + cand_side.runs.len() {
            2 => f64::INFINITY,
            runs => (runs - 2) as f64,
        },
        normalization: resolved.normalization,
        notes: resolved.notes,
        load: resolved.load,
        work_per_second: resolved.work_per_second,
        unit: resolved.unit,
        loads_differ: resolved.loads_differ,
        baseline_scale: resolved.baseline_scale,
        common_shift: resolved.common_shift,
        runtime_change,
    };
    Ok((comparison, candidate_merged))
}

/// The runtime's self values summed, and its five largest changes.
fn runtime_change(functions: &[Regression]) -> RuntimeChange {
    let mut change = RuntimeChange::default();
    let mut top: Vec<(String, f64)> = Vec::new();
    for r in functions.iter().filter(|r| r.kind == ChangeKind::Runtime) {
        change.baseline_pct += r.self_share.baseline_pct;
        change.candidate_pct += r.self_share.candidate_pct;
        top.push((r.function.clone(), r.self_share.change_pp));
    }
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(5);
    change.top = top;
    change
}

/// Splits a side's folded profiles (run after run) into its runs.
fn split_runs(folded: &[FoldedProfile], sizes: impl Iterator<Item = usize>) -> Vec<&[FoldedProfile]> {
    let mut rest = folded;
    sizes
        .map(|n| {
            let (run, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            run
        })
        .collect()
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

/// The same for rates and per-unit costs (ADR 0008), counted over the program's functions (not
/// the runtime's). Rates do not add up to one: a function that grows leaves the others where they
/// were, so the median `z²` of eight functions is still mostly noise. (The corpus' A/A pair under
/// CPU per second has 15; without the correction `runtime.memclrNoHeapPointers` was reported at
/// +1.4 pp.)
const MIN_FUNCTIONS_FOR_GENOMIC_CONTROL_OF_COSTS: usize = 8;

/// Genomic control: how much larger the observed `z²` are than the model predicts, estimated as
/// `median(z²) / 0.4549` over the functions large enough to reach `min_change_pp` (at least
/// [`MIN_FUNCTIONS_FOR_GENOMIC_CONTROL`] of them, else 1). It is a median, so the few functions
/// that really changed do not move it.
fn noise_inflation<'a>(shares: impl Iterator<Item = &'a ShareChange>, min_change_pp: f64, fewest: usize) -> f64 {
    let mut z2: Vec<f64> = shares
        .filter(|s| s.baseline_pct.max(s.candidate_pct) >= min_change_pp.max(0.5))
        .map(|s| s.z * s.z)
        .filter(|z2| z2.is_finite())
        .collect();
    if z2.len() < fewest {
        return 1.0;
    }
    z2.sort_by(f64::total_cmp);
    let median = if z2.len() % 2 == 1 { z2[z2.len() / 2] } else { (z2[z2.len() / 2 - 1] + z2[z2.len() / 2]) / 2.0 };
    (median / CHI2_1_MEDIAN).max(1.0)
}

fn deflate(share: &mut ShareChange, inflation: f64) {
    share.noise_inflation = inflation;
    share.z /= inflation.sqrt();
    share.confidence = student_t_cdf(share.z, share.degrees_of_freedom);
}

/// The functions whose share grew by at least `min_change_pp` with at least `min_confidence`:
/// those that got slower, then new work, then the runtime ([`ChangeKind`]), each largest change
/// first (ties by name).
pub fn detect_regressions(
    baseline: &[Run],
    candidate: &[Run],
    options: &RegressionOptions,
) -> Result<Comparison, FlameError> {
    let (mut comparison, candidate_merged) = compare_shares(baseline, candidate, options)?;
    let found = &mut comparison.functions;
    found.retain(|r| r.share(options.metric).change_pp >= options.min_change_pp);
    // Two families, two claims: "this code of the program grew" and "the runtime grew" (which
    // the report states once, for all runtime functions together, ADR 0008). Correcting the
    // program's functions for the runtime's many GC and allocator functions, which new work moves
    // all at once, would cost the slower function its power exactly when it matters.
    let (mut runtime, mut program): (Vec<Regression>, Vec<Regression>) =
        std::mem::take(found).into_iter().partition(|r| r.kind == ChangeKind::Runtime);
    holm_adjust(&mut program, options.metric);
    holm_adjust(&mut runtime, options.metric);
    *found = program.into_iter().chain(runtime).collect();
    found.retain(|r| r.confidence >= options.min_confidence);
    // The runtime's claim is about its functions together: one more test, outside both families
    // (a self share, whatever the judged metric: the runtime's line is about its own code).
    let together_grew = comparison
        .runtime_change
        .together
        .as_ref()
        .is_some_and(|t| t.change_pp >= options.min_change_pp && t.confidence >= options.min_confidence);
    comparison.runtime_change.reported = together_grew || found.iter().any(|r| r.kind == ChangeKind::Runtime);
    // Slower code first (what the developer must look at), then new work, then the runtime.
    let order = |k: ChangeKind| match k {
        ChangeKind::Slower => 0,
        ChangeKind::NewWork => 1,
        ChangeKind::Runtime => 2,
    };
    found.sort_by(|a, b| {
        order(a.kind)
            .cmp(&order(b.kind))
            .then(b.share(options.metric).change_pp.total_cmp(&a.share(options.metric).change_pp))
            .then_with(|| a.function.cmp(&b.function))
    });
    for r in found.iter_mut() {
        r.hottest_path = hottest_path(&candidate_merged, &r.function);
    }
    Ok(comparison)
}

/// Holm's step-down correction over the functions in `family`: the `i`-th smallest p-value (from
/// 0) is multiplied by `m - i`, and adjusted p-values are made monotone. Sets each
/// [`Regression::confidence`] to one minus its adjusted p-value.
fn holm_adjust(family: &mut [Regression], metric: Share) {
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
    differential_scaled(baseline, candidate, if bt > 0 { ct as f64 / bt as f64 } else { 0.0 })
}

/// [`differential`] with the baseline multiplied by `scale`: [`Comparison::baseline_scale`]
/// draws absolute changes (per second of profiled time, or per unit of work), where a function
/// that got slower is red even when new work elsewhere shrank its share.
pub fn differential_scaled(baseline: &Folded, candidate: &Folded, scale: f64) -> Vec<String> {
    let scale = if scale.is_finite() && scale > 0.0 { scale } else { 0.0 };
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
    /// The self values of the runtime's functions summed ([`RUNTIME_TOGETHER`]).
    runtime: f64,
}

/// The name under which [`SideShares::shares`] gives the runtime's functions together (their
/// self values summed; its total is the same sum). No Go function has this name.
const RUNTIME_TOGETHER: &str = "runtime.*";

impl FunctionShares {
    /// The profile's values over `divisor` (its total for shares).
    fn of(p: &FoldedProfile, divisor: f64) -> Self {
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
        let frac = |x: i64| if divisor > 0.0 { x as f64 / divisor } else { 0.0 };
        let shares: BTreeMap<String, (f64, f64)> =
            values.into_iter().map(|(k, (s, t))| (k, (frac(s), frac(t)))).collect();
        // Every sample has one leaf, so the runtime's self values add up without overlap.
        let runtime = shares.iter().filter(|(f, _)| is_runtime(f)).map(|(_, &(s, _))| s).sum();
        Self { shares, runtime }
    }
}
/// One side's profiles as function shares, grouped by run.
struct SideShares {
    runs: Vec<RunShares>,
}

/// The profiles of one run as function shares.
struct RunShares {
    profiles: Vec<FunctionShares>,
    /// Sampled events of each profile per unit of its normalized values (for shares, the events).
    events: Vec<f64>,
}

impl SideShares {
    /// Splits `folded` (the side's profiles, run after run) into runs of the given sizes, each
    /// profile divided by its divisor.
    fn new(folded: &[FoldedProfile], sizes: impl Iterator<Item = usize>, divisors: &[f64]) -> Self {
        let mut start = 0;
        let runs = split_runs(folded, sizes)
            .into_iter()
            .map(|run| {
                let divisors = &divisors[start..start + run.len()];
                start += run.len();
                RunShares {
                    profiles: run.iter().zip(divisors).map(|(p, &d)| FunctionShares::of(p, d)).collect(),
                    events: run
                        .iter()
                        .zip(divisors)
                        .map(|(p, &d)| {
                            let total = p.folded.total();
                            if total > 0 && d > 0.0 { p.events * d / total as f64 } else { p.events }
                        })
                        .collect(),
                }
            })
            .collect();
        Self { runs }
    }

    fn functions(&self) -> impl Iterator<Item = &str> {
        self.runs.iter().flat_map(|r| &r.profiles).flat_map(|p| p.shares.keys().map(String::as_str))
    }

    /// The function's share in each profile, run by run.
    fn shares(&self, function: &str, total: bool) -> Vec<Vec<f64>> {
        self.runs
            .iter()
            .map(|run| {
                run.profiles
                    .iter()
                    .map(|p| match function {
                        RUNTIME_TOGETHER => p.runtime,
                        _ => p.shares.get(function).map_or(0.0, |&(sf, tt)| if total { tt } else { sf }),
                    })
                    .collect()
            })
            .collect()
    }

    /// Each run's mean share of the function and that mean's variance from its profiles (`w_r`).
    fn run_estimates(&self, function: &str, total: bool, dispersion: f64, binomial: bool) -> Vec<(f64, f64)> {
        self.shares(function, total)
            .iter()
            .zip(&self.runs)
            .map(|(shares, run)| run_mean_and_variance(shares, run.events.iter().sum(), dispersion, binomial))
            .collect()
    }
}

/// The variance model of one share kind (self or total), fitted to both sides (module docs).
struct Model {
    total: bool,
    /// Shares (binomial sampling, run effects `T·p(1-p)`) or rates and per-unit costs (Poisson
    /// sampling, multiplicative run effects `T·p²`: a process that runs slower is slower in every
    /// function).
    binomial: bool,
    /// Within-run over-dispersion `D` of each side.
    dispersion: (f64, f64),
    /// `T` pooled over all functions, when some side had two runs: the program's functions'.
    program: RunVariance,
    /// `T` of the runtime's functions alone, or the pooled one when that is larger (module docs).
    runtime: RunVariance,
}

/// The run-to-run variance `T` of one family of functions and its degrees of freedom: the runs'
/// degrees of freedom summed over the sides, times the effective number of functions it rests on
/// (Kish's `(Σw)² / Σw²` over the functions' weights in its estimate).
#[derive(Debug, Clone, Copy, Default)]
struct RunVariance {
    t: Option<f64>,
    df: f64,
}

/// Sums of one family's run-to-run excess over functions, for [`RunVariance`].
#[derive(Default)]
struct RunVarianceSums<'a> {
    excess: f64,
    scale: f64,
    weights: BTreeMap<&'a str, f64>,
}

impl RunVarianceSums<'_> {
    fn fit(&self, run_df: f64) -> RunVariance {
        let squares: f64 = self.weights.values().map(|w| w * w).sum();
        let functions_behind = if squares > 0.0 { self.scale * self.scale / squares } else { 0.0 };
        RunVariance {
            t: (self.scale > 0.0).then(|| (self.excess / self.scale).max(0.0)),
            df: run_df * functions_behind,
        }
    }
}

impl Model {
    fn fit(functions: &BTreeSet<&str>, base: &SideShares, cand: &SideShares, total: bool, binomial: bool) -> Self {
        let within = |side: &SideShares| {
            let events: Vec<&[f64]> = side.runs.iter().map(|r| r.events.as_slice()).collect();
            overdispersion(functions.iter().map(|f| side.shares(f, total)), &events, binomial)
        };
        let (b, c) = (within(base), within(cand));
        let dispersion = (b.or(c).unwrap_or(1.0), c.or(b).unwrap_or(1.0));

        // [all functions, the runtime's]
        let mut sums = [RunVarianceSums::default(), RunVarianceSums::default()];
        let mut run_df = 0.0;
        for (side, d) in [(base, dispersion.0), (cand, dispersion.1)] {
            let r = side.runs.len();
            if r < 2 {
                continue;
            }
            run_df += (r - 1) as f64;
            for &f in functions {
                let runs = side.run_estimates(f, total, d, binomial);
                let (mean, between) = mean_and_variance(runs.iter().map(|&(m, _)| m));
                let within = runs.iter().map(|&(_, w)| w).sum::<f64>() / r as f64;
                let pq = run_form(mean, binomial);
                let families = if is_runtime(f) { &mut sums[..] } else { &mut sums[..1] };
                for family in families {
                    family.excess += (r - 1) as f64 * (between - within);
                    family.scale += (r - 1) as f64 * pq;
                    *family.weights.entry(f).or_default() += (r - 1) as f64 * pq;
                }
            }
        }
        let program = sums[0].fit(run_df);
        let own = sums[1].fit(run_df);
        let runtime = match (own.t, program.t) {
            (Some(t), p) if p.is_none_or(|p| t >= p) => own,
            _ => program,
        };
        Self { total, binomial, dispersion, program, runtime }
    }

    /// The run-to-run variance that applies to `function`.
    fn run_variance(&self, function: &str) -> RunVariance {
        if is_runtime(function) { self.runtime } else { self.program }
    }

    /// The function's shares on both sides and the test of their difference: Student's t on the
    /// run means, with the function's own between-run variance pooled over both sides and
    /// `R_b + R_c - 2` degrees of freedom, where the variance is at least the model's (which
    /// carries the sampling noise of the runs' profiles and the run-to-run variance `T` pooled
    /// over functions, so a function whose few runs happen to agree is not taken as exact). With
    /// one run per side there is no between-run variance to measure: the model's variance and a
    /// z-test.
    fn compare(&self, base: &SideShares, cand: &SideShares, function: &str) -> ShareChange {
        let b = self.side_estimate(base, function, self.dispersion.0);
        let c = self.side_estimate(cand, function, self.dispersion.1);
        let diff = c.mean - b.mean;
        let own_df = (b.runs + c.runs).saturating_sub(2);
        let (mut variance, mut degrees_of_freedom) = (b.variance + c.variance, f64::INFINITY);
        if own_df > 0 {
            let own = (b.squares + c.squares) / own_df as f64;
            let own_variance = own * (1.0 / b.runs as f64 + 1.0 / c.runs as f64);
            if self.binomial || own_variance >= variance {
                (variance, degrees_of_freedom) = (variance.max(own_variance), own_df as f64);
            } else {
                // Rates and per-unit costs (ADR 0008): the model's variance won, so its degrees of
                // freedom apply (Satterthwaite): the sampling part is known from every profile,
                // the run-to-run part from `T`'s.
                let tau = b.run_part + c.run_part;
                let run_variance_df = self.run_variance(function).df;
                let model_df = if tau > 0.0 && run_variance_df > 0.0 {
                    variance * variance * run_variance_df / (tau * tau)
                } else {
                    f64::INFINITY
                };
                degrees_of_freedom = model_df.max(own_df as f64);
            }
        }
        let sd = variance.sqrt();
        // The variance is never 0 (the sampling variance has a floor); guard anyway.
        let z = if sd > 0.0 { diff / sd } else { 0.0 };
        ShareChange {
            baseline_pct: b.mean * 100.0,
            candidate_pct: c.mean * 100.0,
            change_pp: diff * 100.0,
            change_pct: (b.mean > 0.0).then(|| diff / b.mean * 100.0),
            z,
            degrees_of_freedom,
            noise_inflation: 1.0,
            confidence: student_t_cdf(z, degrees_of_freedom),
        }
    }

    /// A side's mean share (the mean of its runs' means), the model's variance of that mean,
    /// `Σ (w_r + T·p(1-p)) / R²`, and the sum of squared deviations of the run means.
    fn side_estimate(&self, side: &SideShares, function: &str, dispersion: f64) -> SideEstimate {
        let runs = side.run_estimates(function, self.total, dispersion, self.binomial);
        if runs.is_empty() {
            return SideEstimate { mean: 0.0, variance: 0.0, run_part: 0.0, squares: 0.0, runs: 0 };
        }
        let r = runs.len() as f64;
        let (mean, between) = mean_and_variance(runs.iter().map(|&(m, _)| m));
        let tau2 = self.run_variance(function).t.unwrap_or(0.0) * run_form(mean, self.binomial);
        let variance = runs.iter().map(|&(_, w)| w + tau2).sum::<f64>() / (r * r);
        SideEstimate { mean, variance, run_part: tau2 / r, squares: between * (r - 1.0), runs: runs.len() }
    }
}

/// One side's estimate of a function's share.
struct SideEstimate {
    mean: f64,
    variance: f64,
    /// The run-to-run part of `variance`, `τ²/R`.
    run_part: f64,
    /// `Σ_r (x̄_r - mean)²` over the run means.
    squares: f64,
    runs: usize,
}

/// Mean and (n − 1) sample variance; variance 0 for fewer than two values.
fn mean_and_variance(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let values: Vec<f64> = values.collect();
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance =
        if values.len() < 2 { 0.0 } else { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) };
    (mean, variance)
}

/// One run's mean share and the variance of that mean: the larger of the function's own
/// between-profile variance and the over-dispersed sampling variance over the run's `events`.
fn run_mean_and_variance(shares: &[f64], events: f64, dispersion: f64, binomial: bool) -> (f64, f64) {
    if shares.is_empty() {
        return (0.0, 0.0);
    }
    let k = shares.len() as f64;
    let (mean, variance) = mean_and_variance(shares.iter().copied());
    // At least one event, so a share of 0 or 1 still has some uncertainty.
    let n = events.max(1.0);
    let sampling = dispersion * sampling_form(mean, binomial).max(1.0 / n) / n;
    (mean, (variance / k).max(sampling))
}

/// Sampling variance of a normalized value `p` per sampled event: binomial `p(1-p)` for a share,
/// Poisson `p` for a rate or per-unit cost (in units where one event is `1/n`).
fn sampling_form(p: f64, binomial: bool) -> f64 {
    if binomial {
        let p = p.clamp(0.0, 1.0);
        p * (1.0 - p)
    } else {
        p.max(0.0)
    }
}

/// Shape of the run-to-run variance, `τ² = T·form(p)`: `p(1-p)` for shares, `p²` for rates and
/// per-unit costs.
fn run_form(p: f64, binomial: bool) -> f64 {
    if binomial {
        let p = p.clamp(0.0, 1.0);
        p * (1.0 - p)
    } else {
        p * p
    }
}

/// How many times more the shares vary between the profiles of a run than binomial sampling of
/// their events predicts, pooled over the side's runs: `Σ (m - 1)·s² / Σ (m - 1)·E[s²]` over
/// functions and runs with `m ≥ 2` profiles (each item is one function's shares, run by run), at
/// least 1; `None` when no run has two profiles. A ratio of sums, so the large functions, whose
/// variances are measured best, dominate.
fn overdispersion(functions: impl Iterator<Item = Vec<Vec<f64>>>, events: &[&[f64]], binomial: bool) -> Option<f64> {
    if events.iter().all(|e| e.len() < 2) {
        return None;
    }
    let (mut observed, mut expected) = (0.0, 0.0);
    for runs in functions {
        for (shares, events) in runs.iter().zip(events) {
            if shares.len() < 2 {
                continue;
            }
            let m = shares.len() as f64;
            let mean = shares.iter().sum::<f64>() / m;
            observed += shares.iter().map(|s| (s - mean).powi(2)).sum::<f64>();
            expected += (m - 1.0) * events.iter().map(|&n| sampling_form(mean, binomial) / n.max(1.0)).sum::<f64>() / m;
        }
    }
    (expected > 0.0).then(|| (observed / expected).max(1.0))
}

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A comparison of nothing, for tests of what reads one.
    pub(crate) fn empty_comparison() -> Comparison {
        Comparison {
            functions: Vec::new(),
            baseline: SideSummary { runs: 2, profiles: 2 },
            candidate: SideSummary { runs: 2, profiles: 2 },
            run_variance: None,
            degrees_of_freedom: 2.0,
            normalization: Normalization::Share,
            notes: Vec::new(),
            load: None,
            work_per_second: (None, None),
            unit: "request".into(),
            loads_differ: false,
            baseline_scale: 1.0,
            common_shift: None,
            runtime_change: RuntimeChange::default(),
        }
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
    fn absolute_differential_scales_by_the_given_factor() {
        let mut b = Folded::new();
        b.add(vec!["main".into(), "a".into()], 10);
        b.add(vec!["main".into(), "b".into()], 10);
        let mut c = Folded::new();
        c.add(vec!["main".into(), "a".into()], 13);
        c.add(vec!["main".into(), "b".into()], 10);
        c.add(vec!["main".into(), "gc".into()], 17);
        // Shares would scale the baseline by 40/20 and draw `a` as shrunk; per unit of work with
        // equal work (factor 1), `a` grew and `b` did not.
        assert_eq!(differential(&b, &c), vec!["main;a 20 13", "main;b 20 10", "main;gc 0 17"]);
        assert_eq!(differential_scaled(&b, &c, 1.0), vec!["main;a 10 13", "main;b 10 10", "main;gc 0 17"]);
        assert_eq!(differential_scaled(&b, &c, f64::NAN), vec!["main;a 0 13", "main;b 0 10", "main;gc 0 17"]);
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
    /// A CPU profile of `events` samples in which `main.f` is the leaf of `f_events` and
    /// `main.g` of the rest, with a `samples/count` type so the sampling model knows `n`.
    fn cpu_profile(f_events: i64, events: i64) -> Profile {
        timed_cpu_profile(&[("main.f", f_events), ("main.g", events - f_events)], 0)
    }

    /// Runs of four identical profiles each, with `main.f` at the given per-mille shares.
    fn runs(per_mille: &[i64]) -> Vec<Run> {
        per_mille.iter().enumerate().map(|(i, &f)| Run::new(format!("run{i}"), vec![cpu_profile(f, 1000); 4])).collect()
    }

    fn one_run(runs: Vec<Run>) -> Vec<Run> {
        vec![Run::new("all", runs.into_iter().flat_map(|r| r.profiles).collect())]
    }

    /// A CPU profile of `seconds` whose leaves (under `main.main`) have the given sampled events.
    fn timed_cpu_profile(leaves: &[(&str, i64)], seconds: i64) -> Profile {
        use crate::pprof::{Frame, ValueType};
        let vt = |kind: &str, unit: &str| ValueType { kind: kind.into(), unit: unit.into() };
        let mut p = Profile::from_stacks(
            vec![vt("cpu", "nanoseconds"), vt("samples", "count")],
            leaves.iter().map(|&(leaf, n)| {
                let stack = [leaf, "main.main"].map(|f| Frame { function: f.into(), ..Default::default() });
                (stack.to_vec(), vec![n * 10_000_000, n])
            }),
        );
        p.duration_nanos = seconds * 1_000_000_000;
        p
    }

    #[test]
    fn an_unchanged_function_at_the_median_shift_is_not_a_regression() {
        // Every function of the candidate runs 9.7% slower per second (its new GC work shares the
        // cores), `main.encode` 26%: the shift of all shared code is `main.checksum`'s own
        // ratio, 1.79 standard errors of its counting noise over 740 events a side. Unchanged,
        // `main.checksum` must not be reported: at 1.79 it would be at 96% were the shift left in.
        let side = |leaves: &[(&str, i64)]| -> Vec<Run> {
            (0..2).map(|i| Run::new(format!("run{i}"), vec![timed_cpu_profile(leaves, 8); 2])).collect()
        };
        let base = side(&[("main.parse", 100), ("main.encode", 200), ("main.checksum", 185), ("runtime.mallocgc", 10)]);
        let cand = side(&[("main.parse", 104), ("main.encode", 252), ("main.checksum", 203), ("runtime.mallocgc", 60)]);
        let options = RegressionOptions { normalization: Normalization::Rate, ..RegressionOptions::default() };
        let found = detect_regressions(&base, &cand, &options).unwrap();
        let names: Vec<&str> = found.functions.iter().map(|r| r.function.as_str()).collect();
        assert_eq!(names, ["main.encode", "runtime.mallocgc"], "{:#?}", found.functions);
        let shift = found.common_shift.expect("a shift beyond one standard error is taken out");
        assert!((shift - 203.0 / 185.0).abs() < 1e-9, "{shift}");
        // The same data as shares: new runtime work dilutes everything, nothing of ours grew.
        let shares = RegressionOptions { normalization: Normalization::Share, ..RegressionOptions::default() };
        let found = detect_regressions(&base, &cand, &shares).unwrap();
        assert!(found.functions.iter().all(|r| r.function != "main.checksum"), "{:#?}", found.functions);
    }

    #[test]
    fn the_runtime_varies_between_runs_by_its_own_measure() {
        // The program's functions are the same in every run; `runtime.gcDrain` differs threefold
        // between the two runs of each side (GC timing) and did not change between the sides;
        // `runtime.mallocgc` grew in both candidate runs alike. Its own two runs agreeing says
        // little: the runtime's functions vary between runs as `runtime.gcDrain` does. On the
        // pooled run-to-run variance (the program's: none) it was reported at 99.5%; now 74%.
        let run = |i: usize, gc: i64, malloc: i64| {
            let leaves =
                [("main.parse", 300), ("main.encode", 300), ("runtime.gcDrain", gc), ("runtime.mallocgc", malloc)];
            Run::new(format!("run{i}"), vec![timed_cpu_profile(&leaves, 8); 2])
        };
        let base = vec![run(0, 20, 10), run(1, 60, 10)];
        let cand = vec![run(0, 60, 17), run(1, 20, 17)];
        let options = RegressionOptions {
            normalization: Normalization::Rate,
            min_change_pp: 0.5,
            ..RegressionOptions::default()
        };
        let found = compare_functions(&base, &cand, &options).unwrap();
        let malloc = found.functions.iter().find(|r| r.function == "runtime.mallocgc").unwrap();
        assert!((malloc.self_share.change_pp - 700.0 / 650.0).abs() < 0.01, "{malloc:#?}");
        assert!(malloc.self_share.confidence < 0.9, "{malloc:#?}");
        let parse = found.functions.iter().find(|r| r.function == "main.parse").unwrap();
        assert_eq!(parse.self_share.change_pp, 0.0, "{parse:#?}");
    }

    #[test]
    fn runtime_growth_spread_over_many_functions_is_reported_by_its_sum() {
        // New GC work spread over twelve runtime functions, each +5 samples in 8 s (0.6 pp of
        // the baseline's CPU, below `min_change_pp`, so none can be reported on its own), their
        // sum +60 (7 pp). The runs of each side differ by ±10% in all of the runtime at once
        // (one process's GC busier than the other's). The summed test reports the runtime;
        // the same data as an A/A comparison does not.
        let program = [("main.parse", 300), ("main.encode", 300), ("main.checksum", 200)];
        let run = |i: usize, per_function: i64| {
            let names: Vec<String> = (0..12).map(|k| format!("runtime.gc{k}")).collect();
            let gc = if i == 0 { per_function + per_function / 10 } else { per_function - per_function / 10 };
            let mut leaves: Vec<(&str, i64)> = program.to_vec();
            leaves.extend(names.iter().map(|n| (n.as_str(), gc)));
            Run::new(format!("run{i}"), vec![timed_cpu_profile(&leaves, 8); 2])
        };
        let base = vec![run(0, 5), run(1, 5)];
        let cand = vec![run(0, 10), run(1, 10)];
        let options = RegressionOptions { normalization: Normalization::Rate, ..RegressionOptions::default() };
        let found = detect_regressions(&base, &cand, &options).unwrap();
        assert!(found.functions.is_empty(), "{:#?}", found.functions);
        let together = found.runtime_change.together.as_ref().expect("tested");
        assert!((together.change_pp - 60.0 / 860.0 * 100.0).abs() < 0.5, "{together:#?}");
        // Two runs a side: Student's t with 2 degrees of freedom on the sum's own spread.
        assert!(together.confidence > options.min_confidence, "{together:#?}");
        assert!(found.runtime_change.reported);
        let lines = super::super::explain::sentences(&found, &found.functions, options.metric, None);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("runtime (GC, allocation, scheduling) 7.0% -> 14.0%"), "{lines:?}");

        let same = detect_regressions(&base, &[run(1, 5), run(0, 5)], &options).unwrap();
        let together = same.runtime_change.together.as_ref().expect("tested");
        assert!(together.confidence < 0.9 && !same.runtime_change.reported, "{together:#?}");
        assert!(super::super::explain::sentences(&same, &same.functions, options.metric, None).is_empty());
    }

    #[test]
    fn runs_not_profiles_are_the_replicates() {
        // Two runs per side whose own profiles agree exactly, 4 pp apart within each side: the
        // +3 pp between the sides is no more than the runs of one side differ.
        let (base, cand) = (runs(&[300, 340]), runs(&[330, 370]));
        let options = RegressionOptions::default();
        let by_run = detect_regressions(&base, &cand, &options).unwrap();
        assert!(by_run.functions.is_empty(), "{:#?}", by_run.functions);
        assert_eq!((by_run.baseline.runs, by_run.candidate.runs, by_run.degrees_of_freedom), (2, 2, 2.0));
        assert!(by_run.warnings().is_empty());
        let f = compare_functions(&base, &cand, &options).unwrap();
        let f = f.functions.iter().find(|r| r.function == "main.f").unwrap();
        assert!((f.self_share.change_pp - 3.0).abs() < 1e-9, "{f:#?}");
        assert!(f.self_share.confidence < 0.9, "{f:#?}");
        // The same profiles taken as one run per side: the profiles agree, so only sampling noise
        // is left and +3 pp over 8,000 events looks certain; the result says it could not tell.
        let pooled = detect_regressions(&one_run(base), &one_run(cand), &options).unwrap();
        assert_eq!(pooled.functions.first().map(|r| r.function.as_str()), Some("main.f"));
        assert_eq!(pooled.degrees_of_freedom, f64::INFINITY);
        assert!(
            pooled.warnings()[0].starts_with("baseline and candidate have one run each"),
            "{:?}",
            pooled.warnings()
        );
    }

    #[test]
    fn a_change_larger_than_the_run_spread_is_found() {
        let (base, cand) = (runs(&[300, 310, 305]), runs(&[380, 370, 390]));
        let found = detect_regressions(&base, &cand, &RegressionOptions::default()).unwrap();
        let f = &found.functions[0];
        assert_eq!(f.function, "main.f");
        assert!((f.self_share.change_pp - 7.5).abs() < 1e-9 && f.confidence > 0.99, "{f:#?}");
        assert_eq!(f.self_share.degrees_of_freedom, 4.0);
        // T measured from both sides' runs: positive, since the run means vary more than the
        // identical profiles of each run explain.
        assert!(found.run_variance.is_some_and(|t| t > 0.0), "{:?}", found.run_variance);
    }

    #[test]
    fn one_run_per_side_borrows_the_other_sides_run_variance() {
        let found = compare_functions(&runs(&[300, 340, 320]), &runs(&[330]), &RegressionOptions::default()).unwrap();
        assert_eq!(
            found.warnings(),
            ["the candidate has one run: its run-to-run variation is taken from the baseline's runs"]
        );
        assert_eq!(found.degrees_of_freedom, 2.0);
        let f = found.functions.iter().find(|r| r.function == "main.f").unwrap();
        assert!(f.self_share.confidence < 0.9, "{f:#?}");
    }

    #[test]
    fn runs_group_by_id_in_order_of_first_appearance() {
        let p = cpu_profile(1, 2);
        let items = ["b", "a", "b", "c", "a"].map(|id| (id.to_string(), p.clone()));
        let grouped = Run::group(items);
        let shape: Vec<(&str, usize)> = grouped.iter().map(|r| (r.id.as_str(), r.profiles.len())).collect();
        assert_eq!(shape, [("b", 2), ("a", 2), ("c", 1)]);
    }
}
