//! `error_rate`: error spans over all selected spans with Wilson's interval, compared with the
//! baseline by the one-sided two-proportion test (Fisher's exact test at small counts, where
//! release gates usually are: 0 to 3 errors); relative limits use the same test against the
//! baseline's error count moved by the allowed change (`margin_test`).

use slo_contracts::{GatePolicy, Objective, Op, SpanSelector};

use super::display::ValueUnit;
use super::input::GateInput;
use super::objective::{Evidence, MarginTest, ObjectiveResult, Significance, apply};
use super::select;
use crate::compare::{Counts, Finding, PValue, Unit, rate_increase_test, require_min_samples, wilson_interval};

/// Evaluates an error-rate objective.
pub(crate) fn evaluate(
    objective: &Objective,
    selector: &SpanSelector,
    policy: &GatePolicy,
    alpha: f64,
    input: &GateInput<'_>,
) -> ObjectiveResult {
    let subject = format!("error rate of {}", select::describe(selector));
    let mut result = ObjectiveResult::new(objective, subject, ValueUnit::Ratio, "spans");
    let count = |spans: &[super::input::SpanRecord]| {
        let selected = select::spans(selector, spans);
        Counts::new(selected.iter().filter(|s| s.error).count() as u64, selected.len() as u64)
    };
    let candidate = count(&input.candidate.spans);
    let baseline = input.baseline.map(|b| count(&b.spans));
    result.samples.candidate = candidate.total;
    result.samples.baseline = baseline.map(|b| b.total);
    if candidate.total == 0 {
        result.inconclusive(select::never_appears(selector, &input.candidate.spans));
        return result;
    }
    if let Err(short) = require_min_samples(candidate.total, None, policy.min_samples, "spans") {
        result.inconclusive(short.to_string());
        return result;
    }
    let value = candidate.rate().unwrap_or(f64::NAN);
    let interval = wilson_interval(candidate, 0.95).ok();
    result.value = Some(value);
    result.interval = interval;
    let mut evidence = Evidence::new(value, interval);
    let mut finding = Finding {
        subject: "error rate".into(),
        unit: Unit::Ratio,
        value: Some(value),
        value_interval: interval,
        candidate_count: candidate.total,
        noun: "spans".into(),
        ..Finding::default()
    };
    match baseline {
        None => evidence.baseline_missing = Some("there is no baseline data to compare with".into()),
        Some(base) => match require_min_samples(candidate.total, Some(base.total), policy.min_samples, "spans") {
            Err(short) => evidence.baseline_missing = Some(short.to_string()),
            Ok(()) => {
                let base_rate = base.rate().unwrap_or(f64::NAN);
                result.baseline_value = Some(base_rate);
                evidence.baseline = Some(base_rate);
                finding.baseline = Some(base_rate);
                finding.baseline_count = Some(base.total);
                if let Ok(up) = rate_increase_test(base, candidate) {
                    let p = PValue { test: up.method.name().into(), value: up.p_value };
                    finding.p_value = Some(p.clone());
                    result.p_value = Some(p);
                }
                evidence.test = Some(margin_test(base, candidate));
            }
        },
    }
    result.findings.push(format!(
        "{} ({} errors)",
        finding.sentence(),
        crate::compare::format::thousands(candidate.events)
    ));
    apply(&mut result, objective, &evidence, alpha);
    result
}

/// Relative error-rate limits: the one-sided two-proportion test (Fisher's exact test at small
/// counts) of the candidate against the baseline with its errors multiplied by `1 + change`
/// (rounded to the nearest whole error), so the test asks whether the candidate's rate is
/// past the allowed one, not merely higher.
fn margin_test<'a>(base: Counts, candidate: Counts) -> MarginTest<'a> {
    Box::new(move |op: Op, change: f64| {
        let factor = 1.0 + change;
        if factor < 0.0 {
            return None;
        }
        let events = ((base.events as f64 * factor).round() as u64).min(base.total);
        let allowed = Counts::new(events, base.total);
        let test = if op.is_upper() {
            rate_increase_test(allowed, candidate).ok()?
        } else {
            rate_increase_test(candidate, allowed).ok()?
        };
        Some(Significance {
            test: format!("{} against the baseline's errors × {factor:.2}", test.method.name()),
            p: test.p_value,
            separated: false,
            detail: None,
        })
    })
}
