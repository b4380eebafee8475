//! The gate report in the forms a CI run writes: a text table for the log ([`text()`]), JSON
//! with every number ([`json()`]), JUnit XML that every CI shows ([`junit()`]) and Markdown for
//! a PR comment or `$GITHUB_STEP_SUMMARY` ([`markdown()`]). Pure functions of a
//! [`GateReport`]; the output is deterministic (contract order, fixed number formatting), so
//! the reports are golden-tested.

mod json;
mod junit;
mod markdown;
mod text;

pub use json::json;
pub use junit::junit;
pub use markdown::markdown;
pub use text::text;

use super::display::{change, quantity};
use super::{GateReport, ObjectiveResult};
use crate::compare::Verdict;
use crate::compare::format::thousands;

/// The last line of every report: `GATE PASSED`, `GATE WARNED`, `GATE FAILED: release
/// blocked` or `GATE FAILED (not blocking: 1 of 3 consecutive failures)`.
pub fn outcome_line(report: &GateReport) -> String {
    match report.verdict {
        Verdict::Pass => "GATE PASSED".to_string(),
        Verdict::Warn => "GATE WARNED".to_string(),
        Verdict::Fail if report.blocked => "GATE FAILED: release blocked".to_string(),
        Verdict::Fail => format!(
            "GATE FAILED (not blocking: {} of {} consecutive failures)",
            report.failure_streak, report.consecutive_failures
        ),
        Verdict::Inconclusive => "GATE INCONCLUSIVE: no objective could be evaluated".to_string(),
    }
}

/// `checkout (staging)`.
pub(crate) fn title(report: &GateReport) -> String {
    match &report.environment {
        Some(env) => format!("{} ({env})", report.service),
        None => report.service.clone(),
    }
}

/// `candidate 1.5.0, baseline 1.4.2`.
pub(crate) fn versions(report: &GateReport) -> String {
    let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    format!("candidate {}, baseline {}", list(&report.candidate_versions), list(&report.baseline_versions))
}

/// One table row: objective, verdict, value, limit, baseline, change, samples.
pub(crate) struct Row {
    pub cells: [String; 7],
}

pub(crate) const HEADER: [&str; 7] = ["OBJECTIVE", "VERDICT", "VALUE", "LIMIT", "BASELINE", "CHANGE", "SAMPLES"];

pub(crate) fn verdict_cell(o: &ObjectiveResult) -> String {
    if o.verdict == Verdict::Inconclusive { format!("inconclusive ({})", o.counted_as) } else { o.verdict.to_string() }
}

pub(crate) fn row(o: &ObjectiveResult) -> Row {
    let name = if o.key { format!("{} (key)", o.name) } else { o.name.clone() };
    let dash = || "-".to_string();
    let value = o.value.map_or_else(dash, |v| quantity(o.unit, v));
    let limit = if o.limits.is_empty() { dash() } else { o.limits_text() };
    let baseline = o.baseline_value.map_or_else(dash, |b| quantity(o.unit, b));
    let delta = match (o.value, o.baseline_value) {
        (Some(v), Some(b)) => change(o.unit, v, b),
        _ => dash(),
    };
    let samples = match o.samples.baseline {
        Some(b) => format!("{} vs {} {}", thousands(o.samples.candidate), thousands(b), o.samples.noun),
        None => format!("{} {}", thousands(o.samples.candidate), o.samples.noun),
    };
    Row { cells: [name, verdict_cell(o), value, limit, baseline, delta, samples] }
}

/// `62.5%`.
pub(crate) fn score_text(score: f64) -> String {
    format!("{score:.1}%")
}
