//! The numbers that decided a comparison, and the sentence that explains them.
//!
//! Users of release gates most often complain that they cannot tell why a gate failed. A
//! [`Finding`] keeps every number a verdict rests on (the candidate's value and interval, the
//! baseline's value, the change, the shift with its interval, the p-value, the sample counts),
//! so a report can print a table, JSON, or [`Finding::sentence`]:
//!
//! `p95 latency 512 ms (95% CI 498–530 ms) vs baseline 431 ms: +18.8%, shift +74 ms (95% CI +61 to
//! +88 ms), Mann-Whitney p < 0.001, 12,400 vs 11,980 spans`
//!
//! All quantities in one sentence share the precision of the larger of the value and the
//! baseline (three significant digits, [`super::format`]), so a shift is never shown more
//! precisely than the values it compares.

use super::Interval;
use super::format::{decimals_for, fixed, p_value, percent_change, signed, thousands, trim_number};
use super::shift::Shift;

/// The unit of a compared quantity, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unit {
    /// Durations in milliseconds: `512 ms`.
    Milliseconds,
    /// Durations in seconds: `1.25 s`.
    Seconds,
    /// A rate in [0, 1] shown as a percentage, with absolute changes in percentage points:
    /// `2.40%`, `+1.50 pp`.
    Ratio,
    /// Events per second: `1,250 /s`.
    PerSecond,
    /// A plain number.
    #[default]
    Plain,
}

impl Unit {
    /// Display value of a quantity in this unit (ratios become percentages).
    fn scale(&self, v: f64) -> f64 {
        if *self == Unit::Ratio { v * 100.0 } else { v }
    }

    fn suffix(&self) -> &'static str {
        match self {
            Unit::Milliseconds => " ms",
            Unit::Seconds => " s",
            Unit::Ratio => "%",
            Unit::PerSecond => " /s",
            Unit::Plain => "",
        }
    }

    /// Suffix of a difference: percentage points for ratios.
    fn change_suffix(&self) -> &'static str {
        if *self == Unit::Ratio { " pp" } else { self.suffix() }
    }
}

/// A p-value with the name of the test that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct PValue {
    /// The test, as named in a sentence: `Mann-Whitney`, `Fisher's exact test`.
    pub test: String,
    /// The p-value.
    pub value: f64,
}

/// The evidence behind one comparison. Fields that do not apply stay `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Finding {
    /// What was compared: `p95 latency`, `error rate`, `throughput`.
    pub subject: String,
    /// Unit of `value`, `baseline` and `shift`.
    pub unit: Unit,
    /// The candidate's value; None when it has no data.
    pub value: Option<f64>,
    /// Confidence interval of the candidate's value.
    pub value_interval: Option<Interval>,
    /// The baseline's value, for comparisons against a baseline.
    pub baseline: Option<f64>,
    /// The Hodges–Lehmann shift (absolute, in `unit`) with its interval.
    pub shift: Option<Shift>,
    /// The test's p-value.
    pub p_value: Option<PValue>,
    /// Values in the candidate.
    pub candidate_count: u64,
    /// Values in the baseline.
    pub baseline_count: Option<u64>,
    /// What was counted, plural: `spans`, `requests`.
    pub noun: String,
}

impl Finding {
    /// `value − baseline`.
    pub fn change_absolute(&self) -> Option<f64> {
        Some(self.value? - self.baseline?)
    }

    /// `(value − baseline) / baseline`; None when the baseline is not positive.
    pub fn change_relative(&self) -> Option<f64> {
        let baseline = self.baseline.filter(|b| *b > 0.0)?;
        Some((self.value? - baseline) / baseline)
    }

    /// The finding in one plain-English sentence, with deterministic number formatting.
    pub fn sentence(&self) -> String {
        let unit = self.unit;
        let scale = [self.value, self.baseline].into_iter().flatten().map(|v| unit.scale(v).abs()).fold(0.0, f64::max);
        let decimals = decimals_for(scale);
        let quantity = |v: f64| format!("{}{}", fixed(unit.scale(v), decimals), unit.suffix());
        let change = |v: f64| format!("{}{}", signed(unit.scale(v), decimals), unit.change_suffix());
        let percent = |c: f64| trim_number(c * 100.0);

        let mut head = self.subject.clone();
        match self.value {
            Some(value) => {
                head.push(' ');
                head.push_str(&quantity(value));
                if let Some(i) = self.value_interval {
                    let range = if i.lo >= 0.0 {
                        format!("{}–{}", fixed(unit.scale(i.lo), decimals), quantity(i.hi))
                    } else {
                        format!("{} to {}", signed(unit.scale(i.lo), decimals), change(i.hi))
                    };
                    head.push_str(&format!(" ({}% CI {range})", percent(i.confidence)));
                }
            }
            None => head.push_str(": no data"),
        }
        if let Some(baseline) = self.baseline {
            head.push_str(&format!(" vs baseline {}", quantity(baseline)));
        }

        let mut details = Vec::new();
        if unit == Unit::Ratio {
            if let Some(c) = self.change_absolute() {
                details.push(change(c));
            }
        } else if let Some(r) = self.change_relative() {
            details.push(percent_change(r));
        } else if let Some(c) = self.change_absolute() {
            details.push(change(c));
        }
        if let Some(shift) = &self.shift {
            let mut text = format!("shift {}", change(shift.estimate));
            if let Some(i) = shift.interval {
                let lo = signed(unit.scale(i.lo), decimals);
                text.push_str(&format!(" ({}% CI {lo} to {})", percent(i.confidence), change(i.hi)));
            }
            details.push(text);
        }
        if let Some(p) = &self.p_value {
            details.push(format!("{} p {}", p.test, p_value(p.value)));
        }
        let counts = match self.baseline_count {
            Some(b) => format!("{} vs {} {}", thousands(self.candidate_count), thousands(b), self.noun),
            None => format!("{} {}", thousands(self.candidate_count), self.noun),
        };
        details.push(counts.trim_end().to_string());
        let separator = if self.baseline.is_some() { ": " } else { ", " };
        format!("{head}{separator}{}", details.join(", "))
    }
}
