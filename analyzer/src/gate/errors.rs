//! `error_rate`: error spans over all selected spans with Wilson's interval, compared with the
//! baseline by the one-sided two-proportion test (Fisher's exact test at small counts, where
//! release gates usually are: 0 to 3 errors); relative limits use Fisher's exact test at every
//! count against the baseline's error count moved by the allowed change, rounded in the
//! contract's favour (`margin_test`).

use slo_contracts::{GatePolicy, Objective, Op, SpanSelector};

use super::display::ValueUnit;
use super::input::GateInput;
use super::objective::{Evidence, MarginTest, ObjectiveResult, Significance, apply};
use super::select;
use crate::compare::{
    Counts, Finding, PValue, Unit, rate_increase_exact_test, rate_increase_test, require_min_samples, wilson_interval,
};

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

/// Relative error-rate limits: Fisher's exact test (at every count) of the candidate against
/// the baseline with its errors multiplied by `1 + change`, so the test asks whether the
/// candidate's rate is past the allowed one, not merely higher.
///
/// Two choices keep the gate from being stricter than the contract at the small counts
/// release gates see (`tests/gate_acceptance.rs` measures A/A false alarms: before, 5 of 500
/// gates with `<= +10%` and 5 of 500 with `<= +5%`, all on error rates; after, 4 and 4):
/// - the allowed count is rounded *away from the candidate* (up for an upper limit, down for
///   a lower one), never to the nearest error: 4 errors × 1.10 = 4.4 rounded to 4 tested
///   against no allowance at all. The gate may be more lenient than the contract by less
///   than one baseline error, never stricter;
/// - the pooled z-test is not used here even when Cochran's rule allows it: with few errors on
///   one side it is liberal (the pooled expected counts pass the rule while the baseline has
///   2 to 8 errors), and a limit that fails a release must keep its level.
fn margin_test<'a>(base: Counts, candidate: Counts) -> MarginTest<'a> {
    Box::new(move |op: Op, change: f64| {
        let factor = 1.0 + change;
        if factor < 0.0 {
            return None;
        }
        // The product of a whole count and a factor written in percent is a whole number
        // only up to rounding (10 × 1.1 = 11.000000000000002): snap it before rounding away.
        let exact = base.events as f64 * factor;
        let snapped = if (exact - exact.round()).abs() < 1e-9 { exact.round() } else { exact };
        let allowed_events = if op.is_upper() { snapped.ceil() } else { snapped.floor() };
        let events = (allowed_events as u64).min(base.total);
        let allowed = Counts::new(events, base.total);
        let test = if op.is_upper() {
            rate_increase_exact_test(allowed, candidate).ok()?
        } else {
            rate_increase_exact_test(candidate, allowed).ok()?
        };
        Some(Significance {
            test: format!("{} against the baseline's errors × {factor:.2}", test.method.name()),
            p: test.p_value,
            separated: false,
            detail: None,
        })
    })
}
