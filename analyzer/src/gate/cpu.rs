//! `cpu_regression`: the flame-graph regression test of [`crate::flame::detect_regressions`]
//! (ADR 0002) between the baseline's and the candidate's CPU profiles. Any function found
//! makes the objective take its `on_violation` verdict; the findings name the top three with
//! their shares before and after, the change, the confidence and the hottest call path.

use slo_contracts::{Indicator, Objective, OnViolation, Share};

use super::display::ValueUnit;
use super::input::GateInput;
use super::objective::ObjectiveResult;
use crate::compare::Verdict;
use crate::compare::format::trim_number;
use crate::flame::{Comparison, Metric, RegressionOptions, Run, detect_regressions};
use crate::pprof::profile_name;

/// Regressions named in the findings.
const TOP: usize = 3;

/// Evaluates a `cpu_regression` objective.
pub(crate) fn evaluate(objective: &Objective, input: &GateInput<'_>) -> ObjectiveResult {
    let Indicator::CpuRegression { profile_type, min_change_pp, confidence, share } = &objective.indicator else {
        unreachable!("cpu::evaluate is only called for cpu_regression");
    };
    let metric = match share {
        Share::Flat => Metric::SelfShare,
        Share::Cumulative => Metric::TotalShare,
    };
    let share_word = if metric == Metric::SelfShare { "self" } else { "total" };
    let subject = format!("{share_word} CPU share growth ({profile_type})");
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
    let baseline = match baseline {
        _ if candidate.is_empty() => {
            result.inconclusive(format!("the candidate has no {profile_type} profile"));
            return result;
        }
        None => {
            result.inconclusive("there is no baseline data to compare the CPU profiles with".into());
            return result;
        }
        Some(b) if b.is_empty() => {
            result.inconclusive(format!("the baseline has no {profile_type} profile"));
            return result;
        }
        Some(b) => b,
    };
    let options = RegressionOptions {
        sample_type: Some(sample_type.to_string()),
        min_change_pp: *min_change_pp,
        min_confidence: *confidence,
        metric,
        ..RegressionOptions::default()
    };
    let comparison = match detect_regressions(&baseline, &candidate, &options) {
        Ok(r) => r,
        Err(e) => {
            result.inconclusive(format!("the CPU profiles cannot be compared: {e}"));
            return result;
        }
    };
    let sides = sides(&comparison);
    let notes: Vec<String> = comparison.warnings().into_iter().map(|w| format!("note: {w}")).collect();
    let regressions = comparison.functions;
    result.value = Some(regressions.first().map_or(0.0, |r| r.share(metric).change_pp));
    if regressions.is_empty() {
        result.verdict = Verdict::Pass;
        result.findings.push(format!(
            "no function's {share_word} share grew by {} pp or more at {}% confidence ({sides})",
            trim_number(*min_change_pp),
            trim_number(confidence * 100.0),
        ));
    } else {
        result.verdict = match objective.on_violation {
            OnViolation::Fail => Verdict::Fail,
            OnViolation::Warn => Verdict::Warn,
        };
        result.findings.push(format!(
            "{} function{} got slower: {share_word} share grew by at least {} pp at {}% confidence ({sides})",
            regressions.len(),
            if regressions.len() == 1 { "" } else { "s" },
            trim_number(*min_change_pp),
            trim_number(confidence * 100.0),
        ));
        for r in regressions.iter().take(TOP) {
            result.findings.push(describe(r, metric));
        }
    }
    result.findings.extend(notes);
    result.cpu_regressions = regressions;
    result
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
/// sides' CPU profiles (default thresholds of [`RegressionOptions`]), when both sides have some,
/// so the report says where the extra time went as well as that it went.
pub(crate) fn explain_latency(result: &mut ObjectiveResult, input: &GateInput<'_>) {
    let Some(baseline) = input.baseline else { return };
    let (base, cand) = (&baseline.cpu_runs, &input.candidate.cpu_runs);
    if base.is_empty() || cand.is_empty() {
        return;
    }
    let options = RegressionOptions { sample_type: Some("cpu".into()), ..RegressionOptions::default() };
    // Profiles without a `cpu` sample type cannot say anything here; that is not an error.
    let Ok(Comparison { functions: found, .. }) = detect_regressions(base, cand, &options) else { return };
    for r in found.iter().take(TOP) {
        result.findings.push(format!("CPU profiles: {}", describe(r, Metric::SelfShare)));
    }
    result.cpu_regressions = found.into_iter().take(TOP).collect();
}

/// One regressed function in a sentence: its share before and after, the change, the
/// confidence and where it is called from.
fn describe(r: &crate::flame::Regression, metric: Metric) -> String {
    let s = r.share(metric);
    let share_word = if metric == Metric::SelfShare { "self" } else { "total" };
    format!(
        "{} {share_word} share {:.1}% -> {:.1}% ({:+.1} pp, confidence {}), hottest path {}",
        r.function,
        s.baseline_pct,
        s.candidate_pct,
        s.change_pp,
        crate::compare::format::share(r.confidence),
        short_path(&r.hottest_path)
    )
}

/// The last frames of a call path (`… > caller > function`): runtime and thread-start frames
/// at the root say nothing in a report; the JSON keeps the whole path.
fn short_path(path: &[String]) -> String {
    const SHOWN: usize = 4;
    let tail = &path[path.len().saturating_sub(SHOWN)..];
    let prefix = if path.len() > SHOWN { "… > " } else { "" };
    format!("{prefix}{}", tail.join(" > "))
}
