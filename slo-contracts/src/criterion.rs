//! The criteria grammar: `OP VALUE`, OP one of `<`, `<=`, `>`, `>=`; VALUE either a signed
//! percentage relative to the baseline (`+10%`, `-5%`) or an absolute value in a unit that
//! fits the indicator, converted to the indicator's canonical [`Unit`]. A sign is what makes
//! a percentage relative, so `0.1%` (an error rate) and `+10%` (a change) cannot be confused.

use crate::duration::{HumanDuration, unit_nanos};
use crate::model::{Bound, Op, Unit};

/// Why a criterion could not be read; [`CriterionError::hint`] says how to write it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CriterionError {
    /// No `<`, `<=`, `>` or `>=` in front.
    #[error("criterion {text:?} does not start with a comparison operator")]
    MissingOperator {
        /// The criterion as written.
        text: String,
    },
    /// An operator we do not support, such as `==` or `=<`.
    #[error("criterion {text:?}: unknown operator {op:?}")]
    UnknownOperator {
        /// The criterion as written.
        text: String,
        /// The operator as written.
        op: String,
    },
    /// Nothing after the operator.
    #[error("criterion {text:?} has no value after the operator")]
    MissingValue {
        /// The criterion as written.
        text: String,
    },
    /// A value whose unit does not fit the indicator.
    #[error("{indicator} criteria need {expected}, got {value}")]
    WrongUnit {
        /// The indicator's key, e.g. `latency`.
        indicator: String,
        /// What fits, e.g. "a duration such as 420ms".
        expected: &'static str,
        /// The value as written.
        value: String,
        /// The value with a fitting unit, when it was a bare number (`0.42` → `0.42s`).
        suggestion: Option<String>,
    },
    /// A relative value that is not a signed percentage.
    #[error("relative limit {value} must be a signed percentage such as +10% or -5%")]
    BadRelative {
        /// The value as written.
        value: String,
    },
    /// A value outside the indicator's range (negative latency, error rate above 100%).
    #[error("{indicator} limit {value} is out of range: {why}")]
    OutOfRange {
        /// The indicator's key.
        indicator: String,
        /// The value as written.
        value: String,
        /// What the range is.
        why: &'static str,
    },
}

impl CriterionError {
    /// How to write the criterion instead.
    pub fn hint(&self) -> Option<String> {
        match self {
            CriterionError::MissingOperator { .. } | CriterionError::MissingValue { .. } => {
                Some("write an operator and a value, e.g. \"<= 420ms\", \"< 0.1%\", \">= 20/s\" or \"<= +10%\"".into())
            }
            CriterionError::UnknownOperator { .. } => Some("use one of <, <=, >, >=".into()),
            CriterionError::WrongUnit { suggestion: Some(suggestion), .. } => {
                Some(format!("add a unit, e.g. {suggestion}"))
            }
            CriterionError::WrongUnit { suggestion: None, value, .. } if value.ends_with('%') => {
                Some("a change relative to the baseline is written with a sign, e.g. <= +10%".into())
            }
            CriterionError::BadRelative { .. } => Some("+10% means at most 10% above the baseline's value".into()),
            CriterionError::OutOfRange { indicator, value, .. } if indicator != "throughput" => {
                Some(format!("rates are fractions (0.05) or percentages ({value}% is {value} percent)"))
            }
            CriterionError::WrongUnit { .. } | CriterionError::OutOfRange { .. } => None,
        }
    }
}

/// Reads a criterion's operator and bound for an indicator whose values are in `unit`;
/// `indicator` names it in messages (`latency`, `error_rate`, ...).
pub fn parse_criterion(text: &str, unit: Unit, indicator: &str) -> Result<(Op, Bound), CriterionError> {
    let trimmed = text.trim();
    let op_len = trimmed.find(|c: char| !matches!(c, '<' | '>' | '=' | '!')).unwrap_or(trimmed.len());
    let (op_text, value) = trimmed.split_at(op_len);
    let op = match op_text {
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "" => return Err(CriterionError::MissingOperator { text: text.to_string() }),
        other => return Err(CriterionError::UnknownOperator { text: text.to_string(), op: other.to_string() }),
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(CriterionError::MissingValue { text: text.to_string() });
    }
    let bound = parse_bound(value, unit, indicator)?;
    Ok((op, bound))
}

fn parse_bound(value: &str, unit: Unit, indicator: &str) -> Result<Bound, CriterionError> {
    if let Some(percent) = value.strip_suffix('%')
        && value.starts_with(['+', '-'])
    {
        return match number(percent) {
            Some(p) => Ok(Bound::Relative(p / 100.0)),
            None => Err(CriterionError::BadRelative { value: value.to_string() }),
        };
    }
    let bare = number(value).is_some();
    let wrong = |expected| CriterionError::WrongUnit {
        indicator: indicator.to_string(),
        expected,
        value: value.to_string(),
        suggestion: match unit {
            Unit::Seconds if bare => Some(format!("{value}s")),
            Unit::PerSecond if bare => Some(format!("{value}/s")),
            _ => None,
        },
    };
    let range = |why| CriterionError::OutOfRange { indicator: indicator.to_string(), value: value.to_string(), why };
    match unit {
        Unit::Seconds => {
            let expected = "a duration such as 420ms or 1.5s";
            let seconds = duration_seconds(value).ok_or_else(|| wrong(expected))?;
            Ok(Bound::Absolute(seconds))
        }
        Unit::Ratio => {
            let expected = "a percentage such as 0.1% or a fraction such as 0.001";
            let fraction = if let Some(percent) = value.strip_suffix('%') {
                number(percent).ok_or_else(|| wrong(expected))? / 100.0
            } else {
                number(value).ok_or_else(|| wrong(expected))?
            };
            if !(0.0..=1.0).contains(&fraction) {
                return Err(range("a rate lies between 0 and 1 (0% and 100%)"));
            }
            Ok(Bound::Absolute(fraction))
        }
        Unit::PerSecond => {
            let expected = "a rate such as 20/s, 1200/m or 20rps";
            let per_second = throughput(value).ok_or_else(|| wrong(expected))?;
            if per_second < 0.0 {
                return Err(range("a rate cannot be negative"));
            }
            Ok(Bound::Absolute(per_second))
        }
        Unit::Raw => Ok(Bound::Absolute(number(value).ok_or_else(|| wrong("a plain number such as 1000"))?)),
    }
}

/// A finite decimal number (digits, one optional dot, optional exponent, optional sign).
pub(crate) fn number(text: &str) -> Option<f64> {
    let ok = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && text.bytes().any(|b| b.is_ascii_digit());
    ok.then(|| text.parse::<f64>().ok()).flatten().filter(|n| n.is_finite())
}

/// Seconds in a duration: [`HumanDuration`]'s syntax (`1h30m`, `420ms`), or one decimal
/// number with a unit (`1.5s`, `0.25ms`), which latency limits need.
pub(crate) fn duration_seconds(text: &str) -> Option<f64> {
    if let Ok(HumanDuration(d)) = text.parse::<HumanDuration>() {
        return Some(d.as_secs_f64());
    }
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = text.split_at(split);
    let nanos = unit_nanos(unit)?;
    // `number` refuses signs and exponents here: the split stops at the first other byte.
    number(n).map(|n| n * nanos as f64 / 1e9)
}

fn throughput(text: &str) -> Option<f64> {
    const UNITS: [(&str, f64); 7] =
        [("/s", 1.0), ("/m", 60.0), ("/min", 60.0), ("/h", 3600.0), ("rps", 1.0), ("rpm", 60.0), ("rph", 3600.0)];
    UNITS.iter().find_map(|(suffix, per)| text.strip_suffix(suffix).and_then(|n| number(n.trim())).map(|n| n / per))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, unit: Unit, expect: Result<(Op, Bound), &str>) {
        let got = parse_criterion(text, unit, "x").map_err(|e| e.to_string());
        assert_eq!(got, expect.map_err(String::from), "{text}");
    }

    #[test]
    fn grammar() {
        check("<= 420ms", Unit::Seconds, Ok((Op::Le, Bound::Absolute(0.42))));
        check("<1.5s", Unit::Seconds, Ok((Op::Lt, Bound::Absolute(1.5))));
        check("<= 1m30s", Unit::Seconds, Ok((Op::Le, Bound::Absolute(90.0))));
        check("<= +10%", Unit::Seconds, Ok((Op::Le, Bound::Relative(0.10))));
        check(">= -5%", Unit::PerSecond, Ok((Op::Ge, Bound::Relative(-0.05))));
        check("< 0.1%", Unit::Ratio, Ok((Op::Lt, Bound::Absolute(0.001))));
        check("< 0.001", Unit::Ratio, Ok((Op::Lt, Bound::Absolute(0.001))));
        check(">= 20/s", Unit::PerSecond, Ok((Op::Ge, Bound::Absolute(20.0))));
        check(">= 1200/m", Unit::PerSecond, Ok((Op::Ge, Bound::Absolute(20.0))));
        check(">= 20rps", Unit::PerSecond, Ok((Op::Ge, Bound::Absolute(20.0))));
        check("<= 1000", Unit::Raw, Ok((Op::Le, Bound::Absolute(1000.0))));
        check(">= -3", Unit::Raw, Ok((Op::Ge, Bound::Absolute(-3.0))));
        check("<= 0.1%", Unit::Seconds, Err("x criteria need a duration such as 420ms or 1.5s, got 0.1%"));
        check("<= 0.42", Unit::Seconds, Err("x criteria need a duration such as 420ms or 1.5s, got 0.42"));
        check("420ms", Unit::Seconds, Err("criterion \"420ms\" does not start with a comparison operator"));
        check("== 1", Unit::Raw, Err("criterion \"== 1\": unknown operator \"==\""));
        check("<=", Unit::Raw, Err("criterion \"<=\" has no value after the operator"));
        check("< 5", Unit::Ratio, Err("x limit 5 is out of range: a rate lies between 0 and 1 (0% and 100%)"));
        check("<= +ten%", Unit::Raw, Err("relative limit +ten% must be a signed percentage such as +10% or -5%"));
        check(">= 20", Unit::PerSecond, Err("x criteria need a rate such as 20/s, 1200/m or 20rps, got 20"));
    }
}
