//! `cpu_regression`: the flame-graph regression test of [`crate::flame::detect_regressions`]
//! (ADR 0002) between the baseline's and the candidate's CPU profiles, normalized as the
//! objective's `normalize:` says (ADR 0008; `auto` by default: CPU per request from the service's
//! SERVER spans, or from the `work:` counter, when both builds have work in the profiles'
//! window). Any function found makes the objective take its `on_violation` verdict; the findings
//! name the functions that got slower first, then new work, then the runtime's growth charged to
//! the code that allocates (from the builds' allocation profiles, when there are some).

use slo_contracts::{CpuNormalize, Indicator, MetricSelector, Objective, OnViolation, Share};

use super::display::ValueUnit;
use super::input::{GateInput, SideData};
use super::objective::ObjectiveResult;
use crate::compare::Verdict;
use crate::compare::format::trim_number;
use crate::flame::explain::{self, of_what};
use crate::flame::{
    Comparison, Normalization, RegressionOptions, Run, Work, attribute_allocations, detect_regressions,
};
use crate::pprof::profile_name;

/// Regressions named when a latency objective is explained.
const TOP: usize = 3;

/// Evaluates a `cpu_regression` objective.
pub(crate) fn evaluate(objective: &Objective, input: &GateInput<'_>) -> ObjectiveResult {
    let Indicator::CpuRegression { profile_type, min_change_pp, confidence, share, normalize, work } =
        &objective.indicator
    else {
        unreachable!("cpu::evaluate is only called for cpu_regression");
    };
    let metric = *share;
    let subject = format!("{metric} CPU growth ({profile_type})");
    let mut result = ObjectiveResult::new(objective, subject, ValueUnit::PercentagePoints, "profiles");
    // `name:sample_type:unit:period_type:period_unit`: profiles of that name with that sample type.
    let mut parts = profile_type.split(':');
    let (name, sample_type) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let matching = |runs: &[Run]| -> Vec<Run> {
        runs.iter()
            .map(|run| {
                let profiles = run
                    .profiles
                    .iter()
                    .filter(|p| profile_name(p) == name && p.sample_types.iter().any(|t| t.kind == sample_type))
                    .cloned()
                    .collect();
                Run::new(run.id.clone(), profiles)
            })
            .filter(|run| !run.profiles.is_empty())
            .collect()
    };
    let profile_count = |runs: &[Run]| runs.iter().map(|r| r.profiles.len()).sum::<usize>();
    let candidate = matching(&input.candidate.cpu_runs);
    let baseline = input.baseline.map(|b| matching(&b.cpu_runs));
    result.samples.candidate = profile_count(&candidate) as u64;
    result.samples.baseline = baseline.as_ref().map(|b| profile_count(b) as u64);
    let (baseline, baseline_data) = match (baseline, input.baseline) {
        _ if candidate.is_empty() => {
            result.inconclusive(format!("the candidate has no {profile_type} profile"));
            return result;
        }
        (Some(b), Some(data)) if !b.is_empty() => (b, data),
        (Some(_), _) => {
            result.inconclusive(format!("the baseline has no {profile_type} profile"));
            return result;
        }
        (None, _) => {
            result.inconclusive("there is no baseline data to compare the CPU profiles with".into());
            return result;
        }
    };
    let normalization = match normalize {
        CpuNormalize::Auto => Normalization::Auto,
        CpuNormalize::Share => Normalization::Share,
        CpuNormalize::Rate => Normalization::Rate,
        CpuNormalize::PerRequest => Normalization::PerUnit,
    };
    let wants_work = normalization != Normalization::Share;
    let options = RegressionOptions {
        sample_type: Some(sample_type.to_string()),
        min_change_pp: *min_change_pp,
        min_confidence: *confidence,
        metric,
        normalization,
        baseline_work: wants_work.then(|| side_work(baseline_data, &baseline, work.as_ref())).flatten(),
        candidate_work: wants_work.then(|| side_work(input.candidate, &candidate, work.as_ref())).flatten(),
        ..RegressionOptions::default()
    };
    let comparison = match detect_regressions(&baseline, &candidate, &options) {
        Ok(r) => r,
        Err(e) => {
            let source = match work {
                Some(w) => format!("increase of {}", w.name),
                None => "SERVER spans".to_string(),
            };
            result.inconclusive(format!(
                "the CPU profiles cannot be compared: {e} (work is the {source} in the profiles' window)"
            ));
            return result;
        }
    };
    result.cpu_normalization = Some(comparison.normalization.name());
    let measure = format!("{metric} {}", comparison.measure());
    let of = of_what(&comparison);
    let sides = sides(&comparison);
    let mut notes: Vec<String> = comparison.notes.iter().map(|n| format!("note: {n}")).collect();
    notes.extend(
        comparison.warnings().into_iter().filter(|w| !comparison.notes.contains(w)).map(|w| format!("note: {w}")),
    );
    if comparison.loads_differ {
        result.inconclusive(format!(
            "CPU per second cannot be compared: {}",
            comparison.load.as_ref().map_or_else(String::new, |l| l.describe(&comparison.unit))
        ));
        result.findings.extend(notes);
        return result;
    }
    let found = &comparison.functions;
    result.value = Some(found.first().map_or(0.0, |r| r.share(metric).change_pp));
    if found.is_empty() {
        result.verdict = Verdict::Pass;
        result.findings.push(format!(
            "no function's {measure} grew by {} pp {of} or more at {}% confidence ({sides})",
            trim_number(*min_change_pp),
            trim_number(confidence * 100.0),
        ));
    } else {
        result.verdict = match objective.on_violation {
            OnViolation::Fail => Verdict::Fail,
            OnViolation::Warn => Verdict::Warn,
        };
        let allocation = attribute_allocations(&baseline_data.alloc_runs, &input.candidate.alloc_runs, &comparison);
        result.findings.push(format!(
            "{} function{} grew: {measure} by at least {} pp {of} at {}% confidence ({sides})",
            found.len(),
            if found.len() == 1 { "" } else { "s" },
            trim_number(*min_change_pp),
            trim_number(confidence * 100.0),
        ));
        result.findings.extend(explain::sentences(&comparison, found, metric, Some(&allocation)));
    }
    result.findings.extend(notes);
    result.cpu_regressions = comparison.functions;
    result
}

/// A side's work in the window its CPU profiles cover: the increase of the `work` counter, or
/// its SERVER spans; `None` when there is none (so `auto` falls back, ADR 0008).
fn side_work(side: &SideData, runs: &[Run], work: Option<&MetricSelector>) -> Option<Work> {
    let profiles = runs.iter().flat_map(|r| &r.profiles);
    let start = profiles.clone().map(|p| p.time_nanos.max(0) as u64).min()?;
    let end = profiles.map(|p| (p.time_nanos.max(0) as u64).saturating_add(p.duration_nanos.max(0) as u64)).max()?;
    let seconds = end.saturating_sub(start) as f64 / 1e9;
    if seconds <= 0.0 {
        return None;
    }
    let (units, unit) = match work {
        None => {
            let n = side.spans.iter().filter(|s| (start..=end).contains(&s.time_unix_nano)).count();
            (n as f64, "request".to_string())
        }
        Some(selector) => {
            (super::metric::selected_increase(side, selector, start, end), format!("unit of {}", selector.name))
        }
    };
    (units > 0.0).then_some(Work { units, seconds: Some(seconds), unit })
}

/// `candidate vs baseline` profiles and runs, as the findings quote them.
fn sides(c: &Comparison) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    format!(
        "{} vs {} profiles from {} vs {} run{}",
        c.candidate.profiles,
        c.baseline.profiles,
        c.candidate.runs,
        c.baseline.runs,
        plural(c.baseline.runs.max(c.candidate.runs))
    )
}

/// For a latency objective that did not pass: the functions whose CPU share grew between the
/// sides' CPU profiles (default thresholds of [`RegressionOptions`], shares), when both sides
/// have some, so the report says where the extra time went as well as that it went.
pub(crate) fn explain_latency(result: &mut ObjectiveResult, input: &GateInput<'_>) {
    let Some(baseline) = input.baseline else { return };
    let (base, cand) = (&baseline.cpu_runs, &input.candidate.cpu_runs);
    if base.is_empty() || cand.is_empty() {
        return;
    }
    let options = RegressionOptions {
        sample_type: Some("cpu".into()),
        normalization: Normalization::Share,
        ..RegressionOptions::default()
    };
    // Profiles without a `cpu` sample type cannot say anything here; that is not an error.
    let Ok(comparison) = detect_regressions(base, cand, &options) else { return };
    for r in comparison.functions.iter().take(TOP) {
        result.findings.push(format!("CPU profiles: {}", explain::function(&comparison, r, Share::Flat)));
    }
    result.cpu_regressions = comparison.functions.into_iter().take(TOP).collect();
}
