//! How a function's CPU is made comparable between two builds (ADR 0008).
//!
//! Three normalizations, each dividing every profile's values by its own divisor:
//!
//! - [`Normalization::Share`]: by the profile's total. Right when nothing but the function
//!   changed; new work elsewhere (a background task, more GC) dilutes every other function, so a
//!   function 30% slower per request can show a *smaller* share.
//! - [`Normalization::Rate`]: by the profile's duration: CPU-seconds per second of profiled wall
//!   time, per process. Not diluted by new work, but only comparable when the builds carried the
//!   same load.
//! - [`Normalization::PerUnit`]: by the work done while the profile ran (the process's work rate
//!   times the duration): CPU per request. Not diluted, and holds under different loads.
//!
//! Rates and per-unit costs are reported as a percentage of the baseline's total (its CPU per
//! second or per unit of work), so the effect-size threshold `min_change_pp` means the same in
//! all three: "a change worth 1% of what the baseline spent".
//!
//! [`Normalization::Auto`] picks by the rule of ADR 0008: per unit of work when both sides' work
//! is known; else the rate when every profile has a duration and the builds' loads agree within
//! [`LOAD_TOLERANCE`] (measured, without work counts, as the CPU-weighted median of the functions'
//! rate ratios, which a minority of changed functions does not move); else shares, saying why.

use std::collections::BTreeMap;

use super::merge::FoldedProfile;

/// How much the builds' loads may differ for CPU rates to be compared: the candidate's load (work
/// per second per process, or the median rate ratio of its functions) within ±10% of the
/// baseline's. Between two groups of processes of one build at the same request rate, the median
/// rate ratio stayed within ±4% (ADR 0008).
pub const LOAD_TOLERANCE: f64 = 0.10;

/// How profiles are made comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Normalization {
    /// Chosen by the rule of ADR 0008 (module docs).
    #[default]
    Auto,
    /// Share of each profile's total.
    Share,
    /// Per second of profiled wall time, per process.
    Rate,
    /// Per unit of work (request) done while the profile ran.
    PerUnit,
}

impl Normalization {
    /// The name in contracts, flags and the API: `auto`, `share`, `rate`, `per_unit`.
    pub fn name(self) -> &'static str {
        match self {
            Normalization::Auto => "auto",
            Normalization::Share => "share",
            Normalization::Rate => "rate",
            Normalization::PerUnit => "per_unit",
        }
    }

    /// Parses [`Normalization::name`]; `per_request` is accepted for `per_unit`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "auto" => Normalization::Auto,
            "share" => Normalization::Share,
            "rate" => Normalization::Rate,
            "per_unit" | "per_request" => Normalization::PerUnit,
            _ => return None,
        })
    }

    /// How a value reads in a sentence: `share`, `CPU per second`, `CPU per request`.
    pub fn per(self, unit: &str) -> String {
        match self {
            Normalization::Auto | Normalization::Share => "share".to_string(),
            Normalization::Rate => "CPU per second".to_string(),
            Normalization::PerUnit => format!("CPU per {unit}"),
        }
    }
}

/// The work one side did: requests served (SERVER spans), a counter's increase, or a count given
/// on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    /// Units of work, all the side's processes together.
    pub units: f64,
    /// The wall time the units were counted over; `None` when they were done during the side's
    /// profiles (a count for a set of profile files).
    pub seconds: Option<f64>,
    /// What a unit is, singular (`request`).
    pub unit: String,
}

/// The builds' loads compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// How the load was measured.
    pub measured_from: LoadSource,
    /// Baseline work per second per process (`None` when measured from CPU).
    pub baseline_per_second: Option<f64>,
    /// Candidate work per second per process.
    pub candidate_per_second: Option<f64>,
    /// Candidate load over baseline load.
    pub ratio: f64,
    /// Standard error of `ln(ratio)` from counting: `√(1/n_b + 1/n_c)` over the work units, or
    /// over the sampled events of the function that gave the median.
    pub uncertainty: f64,
}

impl Load {
    /// Whether the loads agree within [`LOAD_TOLERANCE`], allowing two standard errors of the
    /// ratio's own counting noise (a lightly loaded process has few samples per function, and
    /// its CPU-based ratio is only good to several percent).
    pub fn comparable(&self) -> bool {
        self.ratio.ln().abs() <= (1.0 + LOAD_TOLERANCE).ln() + 2.0 * self.uncertainty
    }

    /// `baseline 150 vs candidate 104 requests/s per process (-31%)`, or for a CPU estimate
    /// `the functions both builds run take 31% less CPU per second in the candidate (median)`.
    pub fn describe(&self, unit: &str) -> String {
        let pct = (self.ratio - 1.0) * 100.0;
        match (self.measured_from, self.baseline_per_second, self.candidate_per_second) {
            (LoadSource::Work, Some(b), Some(c)) => {
                format!(
                    "the baseline did {} and the candidate {} {unit}s/s per process ({pct:+.0}%)",
                    round3(b),
                    round3(c)
                )
            }
            _ => format!(
                "the functions both builds run take {:.0}% {} CPU per second in the candidate (weighted median)",
                pct.abs(),
                if pct < 0.0 { "less" } else { "more" }
            ),
        }
    }
}

/// Three significant digits.
fn round3(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Where a [`Load`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Work counts of both sides.
    Work,
    /// The CPU-weighted median ratio of the functions' rates (no work counts).
    Cpu,
}

/// A normalization resolved for one comparison, with each profile's divisor.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub normalization: Normalization,
    /// Why it was chosen (for `auto`) or what limits it.
    pub notes: Vec<String>,
    pub load: Option<Load>,
    /// Work per second per process of each side, when known.
    pub work_per_second: (Option<f64>, Option<f64>),
    /// The unit of work (`request`).
    pub unit: String,
    /// Each profile's divisor, side by side in profile order: values / divisor are fractions of
    /// the baseline's total (shares for [`Normalization::Share`]).
    pub divisors: (Vec<f64>, Vec<f64>),
    /// Factor that puts the merged baseline on the candidate's scale in a differential flame
    /// graph: the candidate's total over the baseline's for shares, the ratio of profiled time for
    /// rates, of work done for per-unit costs.
    pub baseline_scale: f64,
    /// The loads differ beyond [`LOAD_TOLERANCE`] while CPU rates were asked for.
    pub loads_differ: bool,
    /// The common shift the candidate's values were divided by ([`common_shift`]).
    pub common_shift: Option<f64>,
}

/// Why a normalization could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NormalizeError {
    /// Rates and per-unit costs need each profile's duration.
    #[error(
        "{side} profile {profile} has no duration, so CPU per second or per unit of work cannot be computed; use normalize=share"
    )]
    NoDuration {
        /// `baseline` or `candidate`.
        side: &'static str,
        /// Position of the profile in the side.
        profile: usize,
    },
    /// Per-unit costs need both sides' work.
    #[error(
        "CPU per unit of work needs the work of both builds ({missing} is missing): give work counts, or use normalize=rate or share"
    )]
    NoWork {
        /// Which side's work is missing.
        missing: &'static str,
    },
    /// A work count that cannot divide anything.
    #[error("the {side}'s work must be a positive number of units over a positive time, got {units} over {seconds} s")]
    BadWork {
        /// `baseline` or `candidate`.
        side: &'static str,
        /// The units given.
        units: f64,
        /// The seconds given (or the profiled seconds).
        seconds: f64,
    },
}

/// Runs of one side: each run's profiles, folded.
pub(crate) struct SideRuns<'a> {
    pub name: &'static str,
    pub runs: Vec<&'a [FoldedProfile]>,
    pub work: Option<&'a Work>,
}

impl SideRuns<'_> {
    fn profiles(&self) -> impl Iterator<Item = &FoldedProfile> {
        self.runs.iter().flat_map(|r| r.iter())
    }

    fn profiled_seconds(&self) -> f64 {
        self.profiles().map(|p| p.duration_seconds).sum()
    }

    /// Work per second per process.
    fn work_per_second(&self) -> Result<Option<f64>, NormalizeError> {
        let Some(work) = self.work else { return Ok(None) };
        let (per_second, seconds) = match work.seconds {
            Some(s) => (work.units / s / self.runs.len().max(1) as f64, s),
            None => {
                let s = self.profiled_seconds();
                (work.units / s, s)
            }
        };
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(NormalizeError::BadWork { side: self.name, units: work.units, seconds });
        }
        Ok(Some(per_second))
    }

    fn first_without_duration(&self) -> Option<usize> {
        self.profiles().position(|p| !(p.duration_seconds.is_finite() && p.duration_seconds > 0.0))
    }

    /// Each function's self value per profiled second and its sampled events, summed over the
    /// side's profiles.
    fn self_rates(&self) -> Rates<'_> {
        let seconds = self.profiled_seconds();
        let mut out: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for p in self.profiles() {
            let total = p.folded.total();
            let events_per_value = if total > 0 { p.events / total as f64 } else { 0.0 };
            for (stack, &v) in p.folded.stacks() {
                if let Some(leaf) = stack.last() {
                    let e = out.entry(leaf.as_str()).or_default();
                    e.0 += v as f64 / seconds;
                    e.1 += v as f64 * events_per_value;
                }
            }
        }
        out
    }
}

/// The CPU-weighted median of the functions' rate ratios (candidate over baseline, weights the
/// baseline's rates), over functions both sides ran: how much more CPU per second the candidate
/// spends in what did not change, when most of the baseline's CPU did not change.
fn cpu_load_ratio(base: &SideRuns<'_>, cand: &SideRuns<'_>) -> Option<Load> {
    let (b, c) = (base.self_rates(), cand.self_rates());
    // (ratio, weight, standard error of its log)
    let mut ratios: Vec<(f64, f64, f64)> = b
        .iter()
        .filter_map(|(f, &(bv, be))| {
            let &(cv, ce) = c.get(f)?;
            (bv > 0.0 && cv > 0.0).then(|| (cv / bv, bv, (1.0 / be.max(1.0) + 1.0 / ce.max(1.0)).sqrt()))
        })
        .collect();
    let total: f64 = ratios.iter().map(|&(_, w, _)| w).sum();
    if total <= 0.0 {
        return None;
    }
    ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut seen = 0.0;
    let median = ratios
        .iter()
        .find(|&&(_, w, _)| {
            seen += w;
            seen >= total / 2.0
        })
        .or(ratios.last())?;
    Some(Load {
        measured_from: LoadSource::Cpu,
        baseline_per_second: None,
        candidate_per_second: None,
        ratio: median.0,
        uncertainty: median.2,
    })
}

/// Smallest baseline share of a function that takes part in [`common_shift`]. Smaller functions'
/// ratios are mostly counting noise: with 2% the corpus' A/A pair (one 10 s profile a side) had
/// a median of 0.75 from functions of 2–4%, and its largest function looked +33%.
const MIN_SHIFT_SHARE: f64 = 0.05;

/// The median, over the program's functions both builds run (at least [`MIN_SHIFT_SHARE`] of the
/// baseline's CPU, not the runtime), of the ratio of their costs, candidate over baseline, with
/// `scale` the ratio of the sides' divisors per second (1 for rates, `u_b / u_c` for per-unit
/// costs). `None` with fewer than three such functions, or when the median is within one standard
/// error of its own counting noise of 1 (`√(1/n_b + 1/n_c)` over that function's sampled
/// events): a shift lost in the noise is not taken out.
///
/// One standard error, not two: the function at the median must never be reported itself for a
/// shift that was left in. The regression test needs about 1.65 standard errors (95% one-sided)
/// of a variance at least the counting noise, so a shift kept below one cannot make the median
/// function a regression. With two, a median between 1.65 and 2 standard errors was neither taken
/// out nor noise: on the 2-core machine of ADR 0008 the candidate's `main.checksum`, unchanged but
/// 9% slower per second beside its GC's threads (2 standard errors were 10%), was reported at 96%.
///
/// Unweighted, so the largest function cannot be the median by its weight alone: when that
/// function is the one that got slower, it must still be one of three or more. In the live run of
/// ADR 0008 the candidate's unchanged functions cost 14–17% more per request than the baseline's
/// — the GC's threads on the other core of a 2-core machine slowed everything — and were, until
/// this, the largest "regressions" after the slower one.
fn common_shift(b: &Rates<'_>, c: &Rates<'_>, main: &[&str], scale: f64) -> Option<f64> {
    // (ratio, standard error of its log)
    let mut ratios: Vec<(f64, f64)> = main
        .iter()
        .filter_map(|f| {
            let &(bv, be) = b.get(f)?;
            let &(cv, ce) = c.get(f).filter(|&&(cv, _)| cv > 0.0)?;
            Some((cv / bv * scale, (1.0 / be.max(1.0) + 1.0 / ce.max(1.0)).sqrt()))
        })
        .collect();
    if ratios.len() < 3 {
        return None;
    }
    ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = ratios.len();
    let (median, se) = if n % 2 == 1 {
        ratios[n / 2]
    } else {
        let (a, b) = (ratios[n / 2 - 1], ratios[n / 2]);
        ((a.0 * b.0).sqrt(), a.1.max(b.1))
    };
    (median.ln().abs() > se).then_some(median)
}

/// Each run's speed relative to its side: its CPU per second in the program's main functions (the
/// baseline's functions of at least [`MIN_SHIFT_SHARE`], not the runtime) over the mean of its
/// side's runs; all 1 when fewer than three such functions exist.
///
/// Processes of one build run at different speeds: on the 2-core machine of ADR 0008 one of two
/// candidate processes spent 40% more CPU per request in *every* function than the other (the
/// GC threads of both shared its core). That is one run effect, common to the run's functions;
/// left in, it is each large function's own run-to-run variance, and with two runs per side the
/// slower function's test had two degrees of freedom to see through it. Within a side every run
/// is the same build, so the sum over the main functions is a fair reference (no median needed:
/// no function changed between them), and its counting noise is that of all their samples.
fn run_speeds(side: &SideRuns<'_>, main: &[&str]) -> Vec<f64> {
    if main.len() < 3 || side.runs.len() < 2 {
        return vec![1.0; side.runs.len()];
    }
    let per_run: Vec<f64> = side
        .runs
        .iter()
        .map(|run| {
            let one = SideRuns { name: side.name, runs: vec![run], work: None };
            let rates = one.self_rates();
            main.iter().filter_map(|f| rates.get(f)).map(|&(v, _)| v).sum()
        })
        .collect();
    let mean = per_run.iter().sum::<f64>() / per_run.len() as f64;
    per_run.iter().map(|&c| if mean > 0.0 && c > 0.0 { c / mean } else { 1.0 }).collect()
}

/// Each function's self value per profiled second and its sampled events ([`SideRuns::self_rates`]).
type Rates<'a> = BTreeMap<&'a str, (f64, f64)>;

/// The program's main functions, which [`common_shift`] and [`run_speeds`] compare on: the
/// baseline's functions of at least [`MIN_SHIFT_SHARE`] of its CPU, not the runtime's.
fn main_functions<'a>(b: &Rates<'a>) -> Vec<&'a str> {
    let b_total: f64 = b.values().map(|&(v, _)| v).sum();
    b.iter().filter(|(f, (bv, _))| !super::is_runtime(f) && *bv >= MIN_SHIFT_SHARE * b_total).map(|(f, _)| *f).collect()
}

/// Mean over runs of the mean over each run's profiles of `f(profile)`.
fn mean_of_runs(side: &SideRuns<'_>, f: impl Fn(&FoldedProfile) -> f64) -> f64 {
    let means: Vec<f64> =
        side.runs.iter().filter(|r| !r.is_empty()).map(|r| r.iter().map(&f).sum::<f64>() / r.len() as f64).collect();
    if means.is_empty() { 0.0 } else { means.iter().sum::<f64>() / means.len() as f64 }
}

/// Resolves `requested` for these sides (module docs) and computes every profile's divisor.
pub(crate) fn resolve(
    requested: Normalization,
    base: &SideRuns<'_>,
    cand: &SideRuns<'_>,
) -> Result<Resolved, NormalizeError> {
    let unit = cand.work.or(base.work).map_or_else(|| "request".to_string(), |w| w.unit.clone());
    let durations = base
        .first_without_duration()
        .map(|i| ("baseline", i))
        .or_else(|| cand.first_without_duration().map(|i| ("candidate", i)));
    let work = (base.work_per_second()?, cand.work_per_second()?);
    let work_load = match (work, base.work, cand.work) {
        ((Some(b), Some(c)), Some(wb), Some(wc)) => Some(Load {
            measured_from: LoadSource::Work,
            baseline_per_second: Some(b),
            candidate_per_second: Some(c),
            ratio: c / b,
            uncertainty: (1.0 / wb.units.max(1.0) + 1.0 / wc.units.max(1.0)).sqrt(),
        }),
        _ => None,
    };
    let mut notes = Vec::new();
    let (normalization, load) = match requested {
        Normalization::Share => (Normalization::Share, work_load),
        Normalization::Rate | Normalization::PerUnit => {
            if let Some((side, profile)) = durations {
                return Err(NormalizeError::NoDuration { side, profile });
            }
            if requested == Normalization::PerUnit && work_load.is_none() {
                let missing = if work.0.is_none() { "the baseline's" } else { "the candidate's" };
                return Err(NormalizeError::NoWork { missing });
            }
            let load = work_load.or_else(|| cpu_load_ratio(base, cand));
            (requested, load)
        }
        Normalization::Auto => match (durations, work_load) {
            (None, Some(load)) => {
                notes.push(format!("CPU per {unit}: both builds' work is known ({})", load.describe(&unit)));
                (Normalization::PerUnit, Some(load))
            }
            (Some((side, profile)), _) => {
                notes.push(format!(
                    "shares of each profile: {side} profile {profile} has no duration, so CPU per second or per {unit} \
                     cannot be computed; new work in the candidate dilutes every other function's share"
                ));
                (Normalization::Share, None)
            }
            (None, None) => match cpu_load_ratio(base, cand) {
                Some(load) if load.comparable() => {
                    notes.push(format!(
                        "CPU per second: the work is not known and the loads look alike ({}); give work counts \
                             for CPU per {unit}",
                        load.describe(&unit)
                    ));
                    (Normalization::Rate, Some(load))
                }
                Some(load) => {
                    notes.push(format!(
                        "shares of each profile: the work is not known and the loads differ ({}), so CPU per \
                             second is not comparable; new work in the candidate dilutes every other function's \
                             share; give work counts for CPU per {unit}",
                        load.describe(&unit)
                    ));
                    (Normalization::Share, Some(load))
                }
                None => {
                    notes.push("shares of each profile: the builds run no function in common".to_string());
                    (Normalization::Share, None)
                }
            },
        },
    };
    let loads_differ = normalization == Normalization::Rate && load.as_ref().is_some_and(|l| !l.comparable());
    if loads_differ && let Some(load) = &load {
        notes.push(format!(
            "the loads differ ({}), so CPU per second is not comparable between the builds: use CPU per {unit}",
            load.describe(&unit)
        ));
    }
    let total = |p: &FoldedProfile| p.folded.total().max(0) as f64;
    let mut shift = None;
    let (divisors, baseline_scale) = match normalization {
        Normalization::Share | Normalization::Auto => {
            let scale = {
                let (bt, ct): (f64, f64) = (base.profiles().map(total).sum(), cand.profiles().map(total).sum());
                if bt > 0.0 { ct / bt } else { 0.0 }
            };
            ((base.profiles().map(total).collect(), cand.profiles().map(total).collect()), scale)
        }
        Normalization::Rate | Normalization::PerUnit => {
            let (ub, uc) = if normalization == Normalization::PerUnit {
                (work.0.unwrap_or(1.0), work.1.unwrap_or(1.0))
            } else {
                (1.0, 1.0)
            };
            // The baseline's mean total per second (or per unit): the unit of every value.
            let b_total = mean_of_runs(base, |p| total(p) / (p.duration_seconds * ub));
            let b_total = if b_total > 0.0 { b_total } else { 1.0 };
            // Costs shared by all code (a slower machine, contention) are taken out of the
            // candidate, so that a function is reported for changing against the rest.
            let (b_rates, c_rates) = (base.self_rates(), cand.self_rates());
            let main = main_functions(&b_rates);
            shift = common_shift(&b_rates, &c_rates, &main, ub / uc);
            let s = shift.unwrap_or(1.0);
            if let Some(s) = shift.filter(|s| (s - 1.0).abs() >= 0.05) {
                notes.push(format!(
                    "the program's functions both builds run cost {:+.0}% {} in the candidate (median): a slower \
                     machine, contention or a change that touches all code; each function is compared after taking \
                     that out",
                    (s - 1.0) * 100.0,
                    normalization.per(&unit)
                ));
            }
            // And each process's own speed, relative to its side.
            let (speeds_b, speeds_c) = (run_speeds(base, &main), run_speeds(cand, &main));
            let all: Vec<f64> = speeds_b.iter().chain(&speeds_c).copied().collect();
            let (slowest, fastest) = all.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            if fastest / slowest >= 1.1 {
                notes.push(format!(
                    "processes of one build differed in speed (their main functions' CPU {:+.0}% to {:+.0}% of \
                     their build's mean): each process is taken relative to its own speed",
                    (slowest - 1.0) * 100.0,
                    (fastest - 1.0) * 100.0
                ));
            }
            let divisors = |side: &SideRuns<'_>, speeds: &[f64], u: f64, s: f64| -> Vec<f64> {
                side.runs
                    .iter()
                    .zip(speeds)
                    .flat_map(|(run, &speed)| run.iter().map(move |p| p.duration_seconds * u * b_total * s * speed))
                    .collect()
            };
            let scale = (cand.profiled_seconds() * uc * s) / (base.profiled_seconds() * ub);
            ((divisors(base, &speeds_b, ub, 1.0), divisors(cand, &speeds_c, uc, s)), scale)
        }
    };
    Ok(Resolved {
        normalization,
        notes,
        load,
        work_per_second: work,
        unit,
        divisors,
        baseline_scale,
        loads_differ,
        common_shift: shift,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flame::Folded;

    fn profile(functions: &[(&str, i64)], seconds: f64) -> FoldedProfile {
        let mut folded = Folded::new();
        for &(f, v) in functions {
            folded.add(vec!["main".into(), f.into()], v);
        }
        FoldedProfile {
            events: folded.total() as f64,
            folded,
            type_name: "cpu/nanoseconds".into(),
            duration_seconds: seconds,
        }
    }

    fn side<'a>(name: &'static str, runs: &'a [Vec<FoldedProfile>], work: Option<&'a Work>) -> SideRuns<'a> {
        SideRuns { name, runs: runs.iter().map(Vec::as_slice).collect(), work }
    }

    fn work(units: f64) -> Work {
        Work { units, seconds: Some(10.0), unit: "request".into() }
    }

    #[test]
    fn auto_is_per_unit_when_both_sides_work_is_known() {
        let b = vec![vec![profile(&[("a", 40), ("b", 60)], 1.0)]];
        let c = vec![vec![profile(&[("a", 80), ("b", 60)], 1.0)]];
        let (wb, wc) = (work(1000.0), work(500.0));
        let r =
            resolve(Normalization::Auto, &side("baseline", &b, Some(&wb)), &side("candidate", &c, Some(&wc))).unwrap();
        assert_eq!(r.normalization, Normalization::PerUnit);
        assert_eq!(r.work_per_second, (Some(100.0), Some(50.0)));
        // The baseline's CPU per request is the unit: 100 per 100 requests/s.
        assert_eq!(r.divisors.0, vec![100.0]);
        assert_eq!(r.divisors.1, vec![50.0]);
        assert!(r.notes[0].starts_with("CPU per request: both builds' work is known"), "{:?}", r.notes);
    }

    #[test]
    fn auto_is_the_rate_when_most_cpu_kept_its_rate_and_shares_when_it_did_not() {
        // `a` doubled; `b` and `c` (most of the baseline's CPU) kept their rates.
        let b = vec![vec![profile(&[("a", 2000), ("b", 4000), ("c", 4000)], 1.0)]];
        let c = vec![vec![profile(&[("a", 4000), ("b", 4100), ("c", 3900), ("gc", 3000)], 1.0)]];
        let r = resolve(Normalization::Auto, &side("baseline", &b, None), &side("candidate", &c, None)).unwrap();
        assert_eq!(r.normalization, Normalization::Rate);
        assert!(r.load.as_ref().unwrap().comparable());
        // Everything ran at 70% of the rate: the loads differ (by far more than the counting noise
        // of 4,000 events).
        let c = vec![vec![profile(&[("a", 1400), ("b", 2800), ("c", 2800)], 1.0)]];
        let r = resolve(Normalization::Auto, &side("baseline", &b, None), &side("candidate", &c, None)).unwrap();
        assert_eq!(r.normalization, Normalization::Share);
        assert!((r.load.as_ref().unwrap().ratio - 0.7).abs() < 1e-9);
        assert!(r.notes[0].contains("the loads differ"), "{:?}", r.notes);
        // The same 30% difference over a tenth of the events is within the counting noise.
        let few = |v: &[(&str, i64)]| vec![vec![profile(v, 1.0)]];
        let r = resolve(
            Normalization::Auto,
            &side("baseline", &few(&[("a", 2), ("b", 4), ("c", 4)]), None),
            &side("candidate", &few(&[("a", 1), ("b", 3), ("c", 3)]), None),
        )
        .unwrap();
        assert_eq!(r.normalization, Normalization::Rate, "{:?}", r.load);
        // Asked for the rate anyway: computed, and flagged.
        let r = resolve(Normalization::Rate, &side("baseline", &b, None), &side("candidate", &c, None)).unwrap();
        assert!(r.loads_differ && r.notes[0].contains("not comparable"), "{:?}", r.notes);
    }

    #[test]
    fn auto_is_shares_without_durations_and_explicit_choices_say_what_is_missing() {
        let b = vec![vec![profile(&[("a", 20)], 0.0)]];
        let c = vec![vec![profile(&[("a", 20)], 1.0)]];
        let wb = work(10.0);
        let r =
            resolve(Normalization::Auto, &side("baseline", &b, Some(&wb)), &side("candidate", &c, Some(&wb))).unwrap();
        assert_eq!(r.normalization, Normalization::Share);
        assert!(r.notes[0].contains("baseline profile 0 has no duration"), "{:?}", r.notes);
        let e = resolve(Normalization::Rate, &side("baseline", &b, None), &side("candidate", &c, None)).unwrap_err();
        assert_eq!(e, NormalizeError::NoDuration { side: "baseline", profile: 0 });
        let b = vec![vec![profile(&[("a", 20)], 1.0)]];
        let e = resolve(Normalization::PerUnit, &side("baseline", &b, Some(&wb)), &side("candidate", &c, None))
            .unwrap_err();
        assert_eq!(e, NormalizeError::NoWork { missing: "the candidate's" });
        let zero = work(0.0);
        let e = resolve(Normalization::PerUnit, &side("baseline", &b, Some(&zero)), &side("candidate", &c, None))
            .unwrap_err();
        assert!(matches!(e, NormalizeError::BadWork { side: "baseline", .. }), "{e:?}");
    }

    #[test]
    fn names_round_trip() {
        for n in [Normalization::Auto, Normalization::Share, Normalization::Rate, Normalization::PerUnit] {
            assert_eq!(Normalization::parse(n.name()), Some(n));
        }
        assert_eq!(Normalization::parse("per_request"), Some(Normalization::PerUnit));
        assert_eq!(Normalization::parse("bogus"), None);
    }
}
