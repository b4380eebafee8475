//! How the gate writes its quantities: three significant digits ([`crate::compare::format`]),
//! latency in milliseconds below one second, rates as percentages, so every report and
//! sentence shows one number the same way.

use crate::compare::format::{decimals_for, fixed, signed};

/// The unit of an objective's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueUnit {
    /// Seconds (latency); shown in ms below one second.
    Seconds,
    /// A fraction shown as a percentage (error rate, metric ratio).
    Ratio,
    /// Events per second (throughput).
    PerSecond,
    /// The metric's own unit.
    Raw,
    /// Percentage points of a CPU profile (the largest share growth).
    PercentagePoints,
    /// Events per minute (goroutine growth).
    PerMinute,
}

impl ValueUnit {
    /// The name used in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            ValueUnit::Seconds => "seconds",
            ValueUnit::Ratio => "ratio",
            ValueUnit::PerSecond => "per_second",
            ValueUnit::Raw => "raw",
            ValueUnit::PercentagePoints => "percentage_points",
            ValueUnit::PerMinute => "per_minute",
        }
    }
}

/// `0.5123` s → `512 ms`; `0.0042` ratio → `0.420%`; `20.5` per second → `20.5/s`.
pub fn quantity(unit: ValueUnit, v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    match unit {
        ValueUnit::Seconds if v.abs() < 1.0 => {
            let ms = v * 1000.0;
            format!("{} ms", fixed(ms, decimals_for(ms)))
        }
        ValueUnit::Seconds => format!("{} s", fixed(v, decimals_for(v))),
        ValueUnit::Ratio => {
            let pct = v * 100.0;
            format!("{}%", fixed(pct, decimals_for(pct)))
        }
        ValueUnit::PerSecond => format!("{}/s", fixed(v, decimals_for(v))),
        ValueUnit::Raw => fixed(v, decimals_for(v)),
        ValueUnit::PercentagePoints => format!("{} pp", signed(v, 1)),
        ValueUnit::PerMinute => format!("{}/min", fixed(v, decimals_for(v))),
    }
}

/// A relative change with one decimal: `+18.8%`; `None` when the baseline is not positive.
pub fn relative_change(value: f64, baseline: f64) -> Option<String> {
    (baseline > 0.0 && value.is_finite()).then(|| crate::compare::format::percent_change((value - baseline) / baseline))
}

/// The change of `value` against `baseline` as a report shows it: relative for positive
/// baselines, in percentage points for rates, absolute otherwise.
pub fn change(unit: ValueUnit, value: f64, baseline: f64) -> String {
    match unit {
        ValueUnit::Ratio => format!("{} pp", signed((value - baseline) * 100.0, 2)),
        _ => relative_change(value, baseline).unwrap_or_else(|| signed(value - baseline, decimals_for(baseline))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity(ValueUnit::Seconds, 0.5123), "512 ms");
        assert_eq!(quantity(ValueUnit::Seconds, 0.00421), "4.21 ms");
        assert_eq!(quantity(ValueUnit::Seconds, 1.5), "1.50 s");
        assert_eq!(quantity(ValueUnit::Ratio, 0.0042), "0.420%");
        assert_eq!(quantity(ValueUnit::Ratio, 0.0), "0%");
        assert_eq!(quantity(ValueUnit::PerSecond, 20.5), "20.5/s");
        assert_eq!(quantity(ValueUnit::Raw, 1234.0), "1,234");
        assert_eq!(quantity(ValueUnit::PercentagePoints, 8.23), "+8.2 pp");
        assert_eq!(change(ValueUnit::Seconds, 0.5, 0.4), "+25.0%");
        assert_eq!(change(ValueUnit::Ratio, 0.03, 0.01), "+2.00 pp");
    }
}
