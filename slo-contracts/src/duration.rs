//! Human durations: a sequence of `<integer><unit>` terms, units `ns us µs ms s m h d w`,
//! as Prometheus and Go's `time.ParseDuration` accept them (without fractions, which
//! Prometheus also refuses).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration written as text, e.g. `14d` or `1h30m`; serialises back to the same form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

/// Why a duration could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("duration {text:?}: expected a number at byte {at}")]
    ExpectedNumber { text: String, at: usize },
    #[error("duration {text:?}: unknown unit {unit:?}; use ns, us, ms, s, m, h, d or w")]
    UnknownUnit { text: String, unit: String },
    #[error("duration {text:?}: missing unit after {number}; use ns, us, ms, s, m, h, d or w")]
    MissingUnit { text: String, number: u64 },
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

const UNITS: [(&str, u64); 9] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
    ("w", 7 * 86_400 * 1_000_000_000),
];

/// Nanoseconds in one `unit` (`ms`, `s`, ...), `None` for an unknown unit.
pub(crate) fn unit_nanos(unit: &str) -> Option<u64> {
    UNITS.iter().find(|(name, _)| *name == unit).map(|(_, scale)| *scale)
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.trim();
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        if s == "0" {
            return Ok(HumanDuration(Duration::ZERO));
        }
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let at = s.len() - rest.len();
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(DurationError::ExpectedNumber { text: text.to_string(), at });
            }
            let number: u64 = rest[..digits].parse().map_err(|_| DurationError::Overflow(text.to_string()))?;
            rest = &rest[digits..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            if unit.is_empty() {
                return Err(DurationError::MissingUnit { text: text.to_string(), number });
            }
            let scale = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(|| DurationError::UnknownUnit { text: text.to_string(), unit: unit.to_string() })?;
            total = number
                .checked_mul(scale)
                .and_then(|n| total.checked_add(n))
                .ok_or_else(|| DurationError::Overflow(text.to_string()))?;
            rest = &rest[unit_len..];
        }
        Ok(HumanDuration(Duration::from_nanos(total)))
    }
}

impl fmt::Display for HumanDuration {
    /// The largest units first, e.g. `1h30m`; `0s` for zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (name, scale) in [
            ("d", 86_400_000_000_000u128),
            ("h", 3_600_000_000_000),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
            ("ns", 1),
        ] {
            if nanos >= scale {
                write!(f, "{}{name}", nanos / scale)?;
                nanos %= scale;
            }
        }
        Ok(())
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<&str, DurationError>) {
        let got = input.parse::<HumanDuration>().map(|d| d.to_string());
        assert_eq!(got, expect.map(String::from), "{input}");
    }

    #[test]
    fn parses_and_prints() {
        check("14d", Ok("14d"));
        check("1h30m", Ok("1h30m"));
        check("90m", Ok("1h30m"));
        check("5ms", Ok("5ms"));
        check("0", Ok("0s"));
        check("2w", Ok("14d"));
        check("420ms", Ok("420ms"));
        check("", Err(DurationError::Empty));
        check("10", Err(DurationError::MissingUnit { text: "10".into(), number: 10 }));
        check("10y", Err(DurationError::UnknownUnit { text: "10y".into(), unit: "y".into() }));
        check("h", Err(DurationError::ExpectedNumber { text: "h".into(), at: 0 }));
        check("1.5s", Err(DurationError::UnknownUnit { text: "1.5s".into(), unit: ".".into() }));
        check("99999999999999999999d", Err(DurationError::Overflow("99999999999999999999d".into())));
    }
}
