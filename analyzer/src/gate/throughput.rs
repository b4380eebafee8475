//! `throughput`: selected spans per second over each side's window. A relative limit is
//! tested like the others, against the margin: given both counts, the candidate's count is
//! binomial with share `R·t_c / (R·t_c + t_b)` when its rate is `R` times the baseline's,
//! `R = 1 + change` (the conditional test for a ratio of two Poisson rates, Przyborowski and
//! Wilenski 1940), exact up to 10 000 spans, normal above.

use slo_contracts::{GatePolicy, Objective, Op, SpanSelector};

use super::display::ValueUnit;
use super::input::{GateInput, SideData};
use super::objective::{Evidence, ObjectiveResult, Significance, apply};
use super::select;
use crate::compare::special::{binomial_cdf, normal_cdf, normal_sf};
use crate::compare::{Finding, PValue, Unit, require_min_samples};

/// Evaluates a throughput objective.
pub(crate) fn evaluate(
    objective: &Objective,
    selector: &SpanSelector,
    policy: &GatePolicy,
    alpha: f64,
    input: &GateInput<'_>,
) -> ObjectiveResult {
    let subject = format!("throughput of {}", select::describe(selector));
    let mut result = ObjectiveResult::new(objective, subject, ValueUnit::PerSecond, "spans");
    let measure = |side: &SideData| (select::spans(selector, &side.spans).len() as u64, seconds(side.window));
    let (n_c, t_c) = measure(input.candidate);
    let baseline = input.baseline.map(measure);
    result.samples.candidate = n_c;
    result.samples.baseline = baseline.map(|b| b.0);
    if n_c == 0 {
        result.inconclusive(select::never_appears(selector, &input.candidate.spans));
        return result;
    }
    if let Err(short) = require_min_samples(n_c, None, policy.min_samples, "spans") {
        result.inconclusive(short.to_string());
        return result;
    }
    if t_c <= 0.0 {
        result.inconclusive("the candidate's window is empty, so no rate can be computed".into());
        return result;
    }
    let value = n_c as f64 / t_c;
    result.value = Some(value);
    let mut evidence = Evidence::new(value, None);
    let mut finding = Finding {
        subject: "throughput".into(),
        unit: Unit::PerSecond,
        value: Some(value),
        candidate_count: n_c,
        noun: "spans".into(),
        ..Finding::default()
    };
    match baseline {
        None => evidence.baseline_missing = Some("there is no baseline data to compare with".into()),
        Some((_, t_b)) if t_b <= 0.0 => evidence.baseline_missing = Some("the baseline's window is empty".into()),
        Some((n_b, t_b)) => match require_min_samples(n_c, Some(n_b), policy.min_samples, "spans") {
            Err(short) => evidence.baseline_missing = Some(short.to_string()),
            Ok(()) => {
                let base = n_b as f64 / t_b;
                result.baseline_value = Some(base);
                evidence.baseline = Some(base);
                finding.baseline = Some(base);
                finding.baseline_count = Some(n_b);
                let (p_higher, p_lower) = poisson_rate_test(n_c, t_c, n_b, t_b, 1.0);
                let p = PValue {
                    test: "Poisson rate test".into(),
                    value: if objective_is_floor(objective) { p_lower } else { p_higher },
                };
                finding.p_value = Some(p.clone());
                result.p_value = Some(p);
                evidence.test = Some(Box::new(move |op: Op, change: f64| {
                    let factor = 1.0 + change;
                    if factor <= 0.0 {
                        return None;
                    }
                    let (higher, lower) = poisson_rate_test(n_c, t_c, n_b, t_b, factor);
                    let p = if op.is_upper() { higher } else { lower };
                    Some(Significance {
                        test: format!("Poisson rate test against the baseline × {factor:.2}"),
                        p,
                        separated: false,
                        detail: None,
                    })
                }));
            }
        },
    }
    result.findings.push(finding.sentence());
    apply(&mut result, objective, &evidence, alpha);
    result
}

fn seconds((start, end): (u64, u64)) -> f64 {
    end.saturating_sub(start) as f64 / 1e9
}

/// Throughput limits are usually floors; the p-value shown is the one for a drop then.
fn objective_is_floor(objective: &Objective) -> bool {
    objective.fail.iter().chain(&objective.warn).any(|c| !c.op.is_upper())
}

/// One-sided p-values (candidate rate higher, candidate rate lower than `ratio` times the
/// baseline's) for counts `n_c` over `t_c` seconds against `n_b` over `t_b`.
pub(crate) fn poisson_rate_test(n_c: u64, t_c: f64, n_b: u64, t_b: f64, ratio: f64) -> (f64, f64) {
    let n = n_c + n_b;
    let share = ratio * t_c / (ratio * t_c + t_b);
    if n == 0 {
        return (1.0, 1.0);
    }
    if n <= 10_000 {
        let lower = binomial_cdf(n_c, n, share);
        let higher = if n_c == 0 { 1.0 } else { 1.0 - binomial_cdf(n_c - 1, n, share) };
        (higher.clamp(0.0, 1.0), lower.clamp(0.0, 1.0))
    } else {
        let mean = n as f64 * share;
        let sd = (mean * (1.0 - share)).sqrt();
        let x = n_c as f64;
        (normal_sf((x - 0.5 - mean) / sd), normal_cdf((x + 0.5 - mean) / sd))
    }
}

#[cfg(test)]
mod tests {
    use super::poisson_rate_test;

    #[test]
    fn equal_rates_are_not_significant_and_a_halving_is() {
        let (up, down) = poisson_rate_test(600, 60.0, 600, 60.0, 1.0);
        assert!(up > 0.4 && down > 0.4, "{up} {down}");
        let (up, down) = poisson_rate_test(300, 60.0, 600, 60.0, 1.0);
        assert!(down < 1e-6 && up > 0.99, "{up} {down}");
        let (up, down) = poisson_rate_test(30_000, 60.0, 20_000, 60.0, 1.0);
        assert!(up < 1e-6 && down > 0.99, "{up} {down}");
    }
}
