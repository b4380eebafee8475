//! `latency`: a nearest-rank percentile of SERVER span durations with its order-statistic
//! interval, compared with the baseline by Mann-Whitney (one-sided, "candidate slower") and the
//! Hodges–Lehmann shift; relative limits are tested against the baseline moved by the allowed
//! change (`margin_test`). When the objective fails or warns, the slow spans (above the
//! percentile) are correlated with their attributes so the report can say what they share.

use slo_contracts::{GatePolicy, Objective, Op, SpanSelector};

use super::display::{ValueUnit, quantity};
use super::input::{GateInput, SpanRecord};
use super::objective::{Evidence, MarginTest, ObjectiveResult, Significance, apply};
use super::select;
use crate::compare::format::trim_number;
use crate::compare::{self, Finding, Interval, PValue, Shift, Unit, Verdict, require_min_samples};
use crate::correlate::{CorrelateOptions, correlate, split_by_duration};

/// Correlations kept per objective.
const TOP_CORRELATIONS: usize = 5;

/// Evaluates a latency objective.
pub(crate) fn evaluate(
    objective: &Objective,
    percentile: f64,
    selector: &SpanSelector,
    policy: &GatePolicy,
    alpha: f64,
    input: &GateInput<'_>,
) -> ObjectiveResult {
    let subject = format!("p{} latency of {}", trim_number(percentile), select::describe(selector));
    let mut result = ObjectiveResult::new(objective, subject, ValueUnit::Seconds, "spans");
    let candidate: Vec<&SpanRecord> = select::spans(selector, &input.candidate.spans)
        .into_iter()
        .filter(|s| s.duration_seconds.is_finite())
        .collect();
    let baseline: Option<Vec<&SpanRecord>> = input
        .baseline
        .map(|b| select::spans(selector, &b.spans).into_iter().filter(|s| s.duration_seconds.is_finite()).collect());
    result.samples.candidate = candidate.len() as u64;
    result.samples.baseline = baseline.as_ref().map(|b| b.len() as u64);
    if candidate.is_empty() {
        result.inconclusive(select::never_appears(selector, &input.candidate.spans));
        return result;
    }
    if let Err(short) = require_min_samples(candidate.len() as u64, None, policy.min_samples, "spans") {
        result.inconclusive(short.to_string());
        return result;
    }
    let sorted = sorted_durations(&candidate);
    let value = compare::percentile(&sorted, percentile).unwrap_or(f64::NAN);
    let interval = compare::percentile_ci(&sorted, percentile, 0.95).ok();
    result.value = Some(value);
    result.interval = interval;

    let mut finding = Finding {
        subject: format!("p{} latency", trim_number(percentile)),
        value: Some(value),
        value_interval: interval,
        candidate_count: candidate.len() as u64,
        noun: "spans".into(),
        ..Finding::default()
    };
    let base_sorted: Result<Vec<f64>, String> = match &baseline {
        None => Err("there is no baseline data to compare with".into()),
        Some(base) => require_min_samples(candidate.len() as u64, Some(base.len() as u64), policy.min_samples, "spans")
            .map(|()| sorted_durations(base))
            .map_err(|short| short.to_string()),
    };
    let mut evidence = Evidence::new(value, interval);
    match &base_sorted {
        Err(why) => evidence.baseline_missing = Some(why.clone()),
        Ok(base_sorted) => {
            let base_value = compare::percentile(base_sorted, percentile).unwrap_or(f64::NAN);
            result.baseline_value = Some(base_value);
            evidence.baseline = Some(base_value);
            finding.baseline = Some(base_value);
            finding.baseline_count = Some(base_sorted.len() as u64);
            if let Ok(mw) = compare::mann_whitney(base_sorted, &sorted) {
                let p = PValue { test: "Mann-Whitney".into(), value: mw.p_greater };
                finding.p_value = Some(p.clone());
                result.p_value = Some(p);
            }
            if let Ok(shift) = compare::hodges_lehmann(base_sorted, &sorted, 0.95) {
                result.shift = Some(shift);
                finding.shift = Some(shift);
            }
            evidence.test = Some(margin_test(base_sorted, &sorted, percentile));
        }
    }
    // Sentences in milliseconds below a second, as the tables show them.
    let scale = [Some(value), finding.baseline].into_iter().flatten().fold(0.0_f64, |m, v| m.max(v.abs()));
    if scale < 1.0 {
        finding = to_milliseconds(finding);
    } else {
        finding.unit = Unit::Seconds;
    }
    result.findings.push(finding.sentence());
    apply(&mut result, objective, &evidence, alpha);

    if matches!(result.verdict, Verdict::Fail | Verdict::Warn) {
        correlate_slow_spans(&mut result, &candidate, percentile);
    }
    result
}

/// Relative latency limits: Mann-Whitney of the candidate against the baseline's durations
/// multiplied by `1 + change` (durations are positive, so scaling keeps their order), one-sided
/// in the direction that violates the limit. A regression confined to the tail moves the
/// percentile more than the ranks, so separated percentile intervals also count: the
/// candidate's one-sided 95% bound beyond the scaled baseline's (90% two-sided intervals).
fn margin_test<'a>(base: &'a [f64], candidate: &'a [f64], percentile: f64) -> MarginTest<'a> {
    Box::new(move |op: Op, change: f64| {
        let factor = 1.0 + change;
        if factor <= 0.0 {
            return None;
        }
        let scaled: Vec<f64> = base.iter().map(|v| v * factor).collect();
        let mw = compare::mann_whitney(&scaled, candidate).ok()?;
        let upper = op.is_upper();
        let p = if upper { mw.p_greater } else { mw.p_less };
        let (c, b) =
            (compare::percentile_ci(candidate, percentile, 0.90), compare::percentile_ci(&scaled, percentile, 0.90));
        let separated = match (c, b) {
            (Ok(c), Ok(b)) if upper && c.lo > b.hi => Some((c.lo, b.hi)),
            (Ok(c), Ok(b)) if !upper && c.hi < b.lo => Some((c.hi, b.lo)),
            _ => None,
        };
        let q = trim_number(percentile);
        let detail = separated.map(|(cand, limit)| {
            let (word, side) = if upper { ("at least", "above") } else { ("at most", "below") };
            format!(
                "the candidate's p{q} is {word} {} with 95% confidence, {side} the allowed p{q}'s bound {}",
                quantity(ValueUnit::Seconds, cand),
                quantity(ValueUnit::Seconds, limit)
            )
        });
        Some(Significance {
            test: format!("Mann-Whitney against the baseline × {factor:.2}"),
            p,
            separated: separated.is_some(),
            detail,
        })
    })
}

fn sorted_durations(spans: &[&SpanRecord]) -> Vec<f64> {
    // Finite by construction (filtered above).
    compare::sort_finite(spans.iter().map(|s| s.duration_seconds)).unwrap_or_default()
}

fn to_milliseconds(finding: Finding) -> Finding {
    let ms = |i: Interval| Interval { lo: i.lo * 1000.0, hi: i.hi * 1000.0, ..i };
    Finding {
        unit: Unit::Milliseconds,
        value: finding.value.map(|v| v * 1000.0),
        value_interval: finding.value_interval.map(ms),
        baseline: finding.baseline.map(|v| v * 1000.0),
        shift: finding.shift.map(|s| Shift { estimate: s.estimate * 1000.0, interval: s.interval.map(ms) }),
        ..finding
    }
}

/// BubbleUp on the candidate: spans above the objective's percentile against the others.
fn correlate_slow_spans(result: &mut ObjectiveResult, candidate: &[&SpanRecord], percentile: f64) {
    let Ok(split) = split_by_duration(candidate, |s| s.duration_seconds, percentile) else {
        return;
    };
    if split.slow.is_empty() || split.fast.is_empty() {
        return;
    }
    let Ok(report) = correlate(&split.slow, &split.fast, &CorrelateOptions::default()) else {
        return;
    };
    result.correlation = report.significant().take(TOP_CORRELATIONS).cloned().collect();
    for c in &result.correlation {
        result.findings.push(format!(
            "{} (Holm-adjusted p {})",
            c.sentence(),
            crate::compare::format::p_value(c.adjusted_p_value)
        ));
    }
}
