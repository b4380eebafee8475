//! `goroutine_leak`: goroutine leak detection ([`crate::leaks::detect`], ADR 0005) over the
//! candidate's goroutine snapshots, one process (run) at a time — counts of different processes
//! are never added up; the same leak in several processes is one finding with each process's
//! rate ([`crate::leaks::across`]). A cluster that grows faster than `max_growth_per_minute` with the
//! detector's confidence, for at least `min_duration`, makes the objective take its
//! `on_violation` verdict. Snapshots that span less than `min_duration` cannot show such growth:
//! inconclusive, as any objective without enough data.

use std::time::Duration;

use slo_contracts::{Indicator, Objective, OnViolation};

use super::display::ValueUnit;
use super::input::GateInput;
use super::objective::ObjectiveResult;
use crate::compare::Verdict;
use crate::compare::format::trim_number;
use crate::leaks::{LeakOptions, LeakReport, Snapshot, across, detect, from_pprof, group_across_runs};

/// Leaking clusters named in the findings.
const TOP: usize = 3;

/// Evaluates a `goroutine_leak` objective.
pub(crate) fn evaluate(objective: &Objective, input: &GateInput<'_>) -> ObjectiveResult {
    let Indicator::GoroutineLeak { max_growth_per_minute, min_duration } = &objective.indicator else {
        unreachable!("leak::evaluate is only called for goroutine_leak");
    };
    let mut result = ObjectiveResult::new(objective, "goroutine growth".into(), ValueUnit::PerMinute, "snapshots");
    let runs = &input.candidate.goroutine_runs;
    let snapshots = runs.iter().map(|r| r.profiles.len()).sum::<usize>();
    result.samples.candidate = snapshots as u64;
    if runs.iter().all(|r| r.profiles.len() < 2) {
        result.inconclusive(format!(
            "growth cannot be judged: the candidate has {snapshots} goroutine snapshot{} and no process with two or more",
            if snapshots == 1 { "" } else { "s" }
        ));
        return result;
    }
    let options = LeakOptions { min_growth_per_minute: *max_growth_per_minute, ..LeakOptions::default() };
    let min_seconds = min_duration.as_secs_f64();
    let mut longest_span: f64 = 0.0;
    let mut fastest: f64 = 0.0;
    let mut judged: Vec<(String, LeakReport)> = Vec::new();
    for run in runs.iter().filter(|r| r.profiles.len() >= 2) {
        let snapshots: Vec<Snapshot> = run.profiles.iter().map(from_pprof).collect();
        let mut report = detect(&snapshots, &options);
        longest_span = longest_span.max(report.span_seconds());
        for cluster in &report.clusters {
            if let Some(t) = &cluster.trend {
                fastest = fastest.max(t.growth_per_minute);
            }
        }
        // Only leaks that grew for `min_duration` count; the report is read for its findings only.
        report.findings.retain(|f| f.trend.is_some_and(|t| t.growing_for_seconds + 1e-9 >= min_seconds));
        judged.push((run.id.clone(), report));
    }
    if longest_span + 1e-9 < min_seconds {
        result.inconclusive(format!(
            "the candidate's goroutine snapshots span {} s; growth over {} needs snapshots at least that far apart",
            trim_number(longest_span.round()),
            human(*min_duration)
        ));
        return result;
    }
    result.value = Some(fastest);
    let limit = format!("{}/min for {}", trim_number(*max_growth_per_minute), human(*min_duration));
    // The same leak in several processes of the build is one finding with each process's rate.
    let leaks = group_across_runs(&judged);
    match across::headline(&leaks, &limit) {
        None => {
            result.verdict = Verdict::Pass;
            result.findings.push(format!(
                "no goroutine cluster grew faster than {limit} ({snapshots} snapshots of {} process{})",
                runs.len(),
                if runs.len() == 1 { "" } else { "es" }
            ));
        }
        Some(headline) => {
            result.verdict = match objective.on_violation {
                OnViolation::Fail => Verdict::Fail,
                OnViolation::Warn => Verdict::Warn,
            };
            result.findings.push(headline);
            result.findings.extend(leaks.iter().take(TOP).map(across::line));
        }
    }
    result
}

/// `120 s` → `2m`, `90 s` → `90s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) { format!("{}m", s / 60) } else { format!("{s}s") }
}
