//! From objective results to the gate's outcome, as `docs/contracts.md` promises.
//!
//! - Without `score` thresholds: the worst counted verdict (any failure fails, else any
//!   warning warns, else pass).
//! - With them: a passing objective earns its weight, a warning half, a failure nothing;
//!   `score = earned / total weight × 100` decides against `pass` and `warn`.
//! - A failing key objective fails the gate whatever the score.
//! - Skipped objectives (not evaluated yet) are left out of all of this; inconclusive ones
//!   count as `gate.no_data` says (fail by default), so missing data never passes by
//!   accident.
//! - A failure blocks the release only at the `consecutive_failures`-th failing build in a
//!   row ([`super::history::failure_streak`]).

use slo_contracts::Contract;

use super::display::quantity;
use super::input::PastRun;
use super::objective::ObjectiveResult;
use crate::compare::Verdict;
use crate::compare::format::trim_number;

/// The gate's verdict, score, blocking decision and the reasons a CI log shows first.
pub(crate) struct Outcome {
    pub score: Option<f64>,
    pub verdict: Verdict,
    pub blocked: bool,
    pub failure_streak: u32,
    pub reasons: Vec<String>,
}

pub(crate) fn outcome(contract: &Contract, objectives: &[ObjectiveResult], history: &[PastRun]) -> Outcome {
    let policy = &contract.gate;
    let counted: Vec<&ObjectiveResult> = objectives.iter().collect();
    let total: f64 = counted.iter().map(|o| o.weight).sum();
    let earned: f64 = counted
        .iter()
        .map(|o| match o.counted_as {
            Verdict::Pass => o.weight,
            Verdict::Warn => o.weight / 2.0,
            Verdict::Inconclusive | Verdict::Fail => 0.0,
        })
        .sum();
    let score = (total > 0.0).then(|| earned / total * 100.0);
    let worst = Verdict::worst(counted.iter().map(|o| o.counted_as));
    let key_failed: Vec<&&ObjectiveResult> =
        counted.iter().filter(|o| o.key && o.counted_as == Verdict::Fail).collect();
    let mut gate_reasons = Vec::new();
    let mut verdict = match (policy.score, score) {
        (Some(t), Some(s)) => {
            let v = if s >= t.pass {
                Verdict::Pass
            } else if s >= t.warn {
                Verdict::Warn
            } else {
                Verdict::Fail
            };
            let line = match v {
                Verdict::Pass => format!("score {}% reaches the pass threshold {}%", pct(s), trim_number(t.pass)),
                Verdict::Warn => format!(
                    "score {}% is below the pass threshold {}% but reaches the warn threshold {}%",
                    pct(s),
                    trim_number(t.pass),
                    trim_number(t.warn)
                ),
                _ => format!("score {}% is below the warn threshold {}%", pct(s), trim_number(t.warn)),
            };
            gate_reasons.push(line);
            v
        }
        _ if counted.is_empty() => {
            gate_reasons.push("no objective was evaluated".to_string());
            Verdict::Inconclusive
        }
        _ => worst,
    };
    if !key_failed.is_empty() && verdict != Verdict::Fail {
        let names: Vec<&str> = key_failed.iter().map(|o| o.name.as_str()).collect();
        gate_reasons
            .push(format!("key objective {} failed, which fails the gate whatever the score", names.join(", ")));
        verdict = Verdict::Fail;
    }
    let streak = super::history::failure_streak(verdict, history, policy.consecutive_failures);
    let blocked = verdict == Verdict::Fail && streak >= policy.consecutive_failures;
    if verdict == Verdict::Fail && !blocked {
        gate_reasons.push(format!(
            "failed {streak} of the {} consecutive builds the contract requires before blocking",
            policy.consecutive_failures
        ));
    } else if blocked && policy.consecutive_failures > 1 {
        gate_reasons.push(format!(
            "{} consecutive builds failed (gate.consecutive_failures: {}), so the release is blocked",
            streak, policy.consecutive_failures
        ));
    }

    // Objectives first (key ones first, then failures before warnings, in contract order),
    // then what the gate made of them.
    let mut order: Vec<&ObjectiveResult> = counted.iter().copied().filter(|o| o.counted_as != Verdict::Pass).collect();
    order.sort_by_key(|o| (!o.key, std::cmp::Reverse(o.counted_as)));
    let mut reasons: Vec<String> = order.iter().map(|o| objective_reason(o)).collect();
    reasons.extend(gate_reasons);
    Outcome { score, verdict, blocked, failure_streak: streak, reasons }
}

fn pct(score: f64) -> String {
    format!("{:.1}", score)
}

/// One line per objective that did not pass: name, what happened, and the numbers.
fn objective_reason(o: &ObjectiveResult) -> String {
    let key = if o.key { " (key objective)" } else { "" };
    if o.verdict == Verdict::Inconclusive {
        let reason = o.reason.as_deref().unwrap_or("not enough data");
        return format!("{}{key} is inconclusive, counted as {}: {reason}", o.name, o.counted_as);
    }
    let verb = if o.verdict == Verdict::Fail { "failed" } else { "warned" };
    // The subject names what was measured, e.g. "p95 latency of /api/checkout".
    let mut text = format!("{}{key} {verb} ({}): ", o.name, o.subject);
    let violations: Vec<&str> = o.violations().collect();
    if !violations.is_empty() {
        text.push_str(&violations.join("; "));
    } else if let Some(first) = o.findings.get(1).or(o.findings.first()) {
        // cpu_regression: the headline and the top function.
        text.push_str(&o.findings[0]);
        if o.findings.len() > 1 {
            text.push_str("; ");
            text.push_str(first);
        }
    }
    if let (Some(v), Some(b)) = (o.value, o.baseline_value)
        && violations.iter().all(|n| !n.contains("baseline's"))
    {
        text.push_str(&format!(" (baseline {} -> {})", quantity(o.unit, b), quantity(o.unit, v)));
    }
    // Where the slow spans concentrate, when attribute correlation found something.
    let significant: Vec<String> =
        o.correlation.iter().filter(|c| c.significant).take(3).map(|c| c.sentence()).collect();
    if !significant.is_empty() {
        text.push_str(&format!("; {}", significant.join("; ")));
    }
    // A slow latency objective with CPU profiles on both sides: where the CPU time grew.
    if o.indicator == "latency" && !o.cpu_regressions.is_empty() {
        let grew: Vec<String> =
            o.cpu_regressions.iter().map(|r| format!("{} ({:+.1} pp)", r.function, r.self_share.change_pp)).collect();
        text.push_str(&format!("; CPU share grew in {}", grew.join(", ")));
    }
    text
}
