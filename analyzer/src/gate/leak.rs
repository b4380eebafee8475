//! `goroutine_leak`: goroutine leak detection ([`crate::leaks::detect`], ADR 0005) over the
//! candidate's goroutine snapshots, one process (run) at a time — counts of different processes
//! are never added up. A cluster that grows faster than `max_growth_per_minute` with the
//! detector's confidence, for at least `min_duration`, makes the objective take its
//! `on_violation` verdict. Snapshots that span less than `min_duration` cannot show such growth:
//! inconclusive, as any objective without enough data.

use std::collections::BTreeMap;
use std::time::Duration;

use slo_contracts::{Indicator, Objective, OnViolation};

use super::display::ValueUnit;
use super::input::GateInput;
use super::objective::ObjectiveResult;
use crate::compare::Verdict;
use crate::compare::format::trim_number;
use crate::leaks::{LeakOptions, Snapshot, detect, from_pprof};

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
    // Leaks by blocking site (function, wait reason, root cause): the same leak in several
    // processes of the build is one finding with each process's rate.
    let mut leaks: BTreeMap<(String, String, String), Vec<ProcessLeak>> = BTreeMap::new();
    let judged_runs = runs.iter().filter(|r| r.profiles.len() >= 2).count();
    for run in runs.iter().filter(|r| r.profiles.len() >= 2) {
        let snapshots: Vec<Snapshot> = run.profiles.iter().map(from_pprof).collect();
        let report = detect(&snapshots, &options);
        longest_span = longest_span.max(report.span_seconds());
        for cluster in &report.clusters {
            if let Some(t) = &cluster.trend {
                fastest = fastest.max(t.growth_per_minute);
            }
        }
        for f in &report.findings {
            let Some(t) = &f.trend else { continue };
            if t.growing_for_seconds + 1e-9 < min_seconds {
                continue;
            }
            let key = (f.key.blocking_function.clone(), f.key.wait_reason.to_string(), f.root_cause.to_string());
            leaks.entry(key).or_default().push(ProcessLeak {
                run: run.id.clone(),
                per_minute: t.growth_per_minute,
                seconds: t.growing_for_seconds,
                first: f.counts.first().copied().unwrap_or(0),
                last: f.counts.last().copied().unwrap_or(0),
                confidence: t.confidence,
            });
        }
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
    if leaks.is_empty() {
        result.verdict = Verdict::Pass;
        result.findings.push(format!(
            "no goroutine cluster grew faster than {limit} ({snapshots} snapshots of {} process{})",
            runs.len(),
            if runs.len() == 1 { "" } else { "es" }
        ));
    } else {
        result.verdict = match objective.on_violation {
            OnViolation::Fail => Verdict::Fail,
            OnViolation::Warn => Verdict::Warn,
        };
        let mut leaks: Vec<_> = leaks.into_iter().collect();
        // Leaks in the most processes first, then the fastest.
        let top = |p: &[ProcessLeak]| p.iter().map(|l| l.per_minute).fold(0.0, f64::max);
        leaks.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(top(&b.1).total_cmp(&top(&a.1))).then(a.0.cmp(&b.0)));
        let processes = |k: usize| format!("{k} of {judged_runs} process{}", if judged_runs == 1 { "" } else { "es" });
        let everywhere = leaks.iter().all(|(_, p)| p.len() == judged_runs);
        let each = if everywhere { format!(", each in {}", processes(judged_runs)) } else { String::new() };
        result.findings.push(format!(
            "{} goroutine leak{} faster than {limit}{each}",
            leaks.len(),
            if leaks.len() == 1 { " grows" } else { "s grow" }
        ));
        for ((function, wait_reason, cause), found) in leaks.into_iter().take(TOP) {
            let mean = found.iter().map(|l| l.per_minute).sum::<f64>() / found.len() as f64;
            let per_process = found
                .iter()
                .map(|l| {
                    let run = if l.run.is_empty() { String::new() } else { format!("{}: ", l.run) };
                    format!(
                        "{run}{}/min for {} s ({} -> {} goroutines, confidence {})",
                        trim_number((l.per_minute * 10.0).round() / 10.0),
                        trim_number(l.seconds.round()),
                        l.first,
                        l.last,
                        crate::compare::format::share(l.confidence),
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            result.findings.push(format!(
                "{function} ({wait_reason}, {cause}) in {}, about {}/min per process: {per_process}",
                processes(found.len()),
                trim_number((mean * 10.0).round() / 10.0),
            ));
        }
    }
    result
}

/// One process's growth of one leak.
struct ProcessLeak {
    run: String,
    per_minute: f64,
    seconds: f64,
    first: u64,
    last: u64,
    confidence: f64,
}

/// `120 s` → `2m`, `90 s` → `90s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) { format!("{}m", s / 60) } else { format!("{s}s") }
}
