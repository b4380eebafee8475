//! The machine-readable report: every number the verdicts rest on. Numbers are plain JSON
//! numbers in canonical units (seconds, fractions, per second); a value that is not finite is
//! `null`.

use serde_json::{Value, json};

use super::outcome_line;
use crate::compare::{Interval, Verdict};
use crate::gate::{GateReport, LimitCheck, ObjectiveResult};

/// The report as a JSON value.
pub fn json(report: &GateReport) -> Value {
    json!({
        "service": report.service,
        "environment": report.environment,
        "candidate_versions": report.candidate_versions,
        "baseline_versions": report.baseline_versions,
        "verdict": report.verdict.as_str(),
        "blocked": report.blocked,
        "outcome": outcome_line(report),
        "score": report.score,
        "failure_streak": report.failure_streak,
        "consecutive_failures": report.consecutive_failures,
        "reasons": report.reasons,
        "objectives": report.objectives.iter().map(objective).collect::<Vec<_>>(),
    })
}

fn interval(i: &Option<Interval>) -> Value {
    i.map_or(Value::Null, |i| json!({ "lo": i.lo, "hi": i.hi, "confidence": i.confidence }))
}

fn objective(o: &ObjectiveResult) -> Value {
    let change_relative = match (o.value, o.baseline_value) {
        (Some(v), Some(b)) if b > 0.0 => json!((v - b) / b),
        _ => Value::Null,
    };
    json!({
        "name": o.name,
        "description": o.description,
        "indicator": o.indicator,
        "subject": o.subject,
        "verdict": o.verdict.as_str(),
        "counted_as": o.counted_as.as_str(),
        "key": o.key,
        "weight": o.weight,
        "unit": o.unit.as_str(),
        "value": o.value,
        "baseline_value": o.baseline_value,
        "change_relative": change_relative,
        "interval": interval(&o.interval),
        "p_value": o.p_value.as_ref().map_or(Value::Null, |p| json!({ "test": p.test, "value": p.value })),
        "shift": o.shift.map_or(Value::Null, |s| json!({ "estimate": s.estimate, "interval": interval(&s.interval) })),
        "samples": { "candidate": o.samples.candidate, "baseline": o.samples.baseline, "noun": o.samples.noun },
        "limits": o.limits.iter().map(limit).collect::<Vec<_>>(),
        "findings": o.findings,
        "reason": o.reason,
        "correlation": o.correlation.iter().map(|c| json!({
            "key": c.key,
            "value": c.value,
            "selection_count": c.selection_count,
            "baseline_count": c.baseline_count,
            "selection_pct": c.selection_pct,
            "baseline_pct": c.baseline_pct,
            "difference_pp": c.difference_pp,
            "p_value": c.p_value,
            "adjusted_p_value": c.adjusted_p_value,
            "test": c.method.name(),
        })).collect::<Vec<_>>(),
        // The same serde form as the collector's diff API (`analyzer::flame::Regression`).
        "cpu_regressions": o.cpu_regressions,
        "cpu_normalization": o.cpu_normalization,
        "location": o.location.to_string(),
    })
}

fn limit(l: &LimitCheck) -> Value {
    json!({
        "level": l.level.as_str(),
        "criterion": l.text,
        "op": l.op.to_string(),
        "relative": l.relative,
        "limit": l.limit,
        "held": l.held,
        "significant": l.significant,
        "outcome": verdict(l.outcome),
        "note": l.note,
        "location": l.location.to_string(),
    })
}

fn verdict(v: Verdict) -> &'static str {
    v.as_str()
}
