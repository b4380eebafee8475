//! The times of a series file and of a labels file, read the ways metric exports write them.
//!
//! Three forms, tried in this order:
//! 1. RFC 3339 with an offset (`2014-04-10T07:15:00Z`, `2014-04-10 09:15:00+02:00`);
//! 2. a civil date and time without an offset, `YYYY-MM-DD HH:MM:SS` (or with `T`; the seconds,
//!    or the whole time of day, may be left out), optionally with a fraction of a second (`2014-04-10 07:15:00.000000`, as the Numenta Anomaly
//!    Benchmark's files write them), taken as UTC: exports without an offset are UTC far more
//!    often than local time, and a local reading would make the same file mean different
//!    instants on different machines;
//! 3. unix seconds, integer or with a fraction (`1397114100`, `1397114100.25`), parsed as a
//!    decimal so no binary rounding moves a time across a millisecond.
//!
//! Times are kept as unix milliseconds, the resolution the detector works in; two rows in the
//! same millisecond are the same time (a duplicate), which for metric series is what they are.

/// Why a time text is not a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("empty time")]
    Empty,
    #[error(
        "cannot read {0:?} as a time: expected RFC 3339 (2014-04-10T07:15:00Z), \
         YYYY-MM-DD HH:MM:SS[.ffffff] (UTC) or unix seconds (1397114100[.25])"
    )]
    Unreadable(String),
    #[error("time {0:?} is out of range")]
    OutOfRange(String),
}

/// Unix milliseconds of a time text in one of the forms of the module docs; surrounding spaces
/// are ignored. A time between two milliseconds is rounded down (toward the past), so the order
/// of two times is never reversed.
pub fn parse_time_ms(text: &str) -> Result<i64, TimeError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(TimeError::Empty);
    }
    if let Some(ms) = unix_seconds(text) {
        return ms.ok_or_else(|| TimeError::OutOfRange(text.to_string()));
    }
    let timestamp = match text.parse::<jiff::Timestamp>() {
        Ok(t) => t,
        Err(_) => match text.parse::<jiff::civil::DateTime>() {
            Ok(civil) => {
                jiff::tz::TimeZone::UTC.to_timestamp(civil).map_err(|_| TimeError::OutOfRange(text.to_string()))?
            }
            Err(_) => return Err(TimeError::Unreadable(text.to_string())),
        },
    };
    i64::try_from(timestamp.as_nanosecond().div_euclid(1_000_000)).map_err(|_| TimeError::OutOfRange(text.to_string()))
}

/// `Some` when `text` has the shape of unix seconds (`-`? digits, then `.` digits optionally):
/// the milliseconds, or `None` inside when they overflow. `None` for any other shape.
fn unix_seconds(text: &str) -> Option<Option<i64>> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((w, f)) => (w, f),
        None => (unsigned, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || (unsigned.contains('.') && fraction.is_empty()) {
        return None;
    }
    // Whole milliseconds of the fraction; further digits only decide whether a negative time
    // rounds down to the previous millisecond.
    let millis: i64 =
        fraction.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0, |acc, b| acc * 10 + i64::from(b - b'0'));
    let below_millis = fraction.bytes().skip(3).any(|b| b != b'0');
    let ms = whole.parse::<i64>().ok().and_then(|s| s.checked_mul(1000)).and_then(|s| s.checked_add(millis));
    Some(ms.and_then(|ms| {
        if negative { ms.checked_neg().and_then(|n| n.checked_sub(i64::from(below_millis))) } else { Some(ms) }
    }))
}

/// An instant as RFC 3339 UTC text, for reports (`2014-04-10T07:15:00Z`).
pub fn format_time_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.to_string(),
        Err(_) => format!("{ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_397_114_100_000; // 2014-04-10T07:15:00Z

    #[test]
    fn reads_each_form() {
        for (text, want) in [
            ("2014-04-10T07:15:00Z", T),
            ("2014-04-10T09:15:00+02:00", T),
            ("2014-04-10 07:15:00Z", T),
            ("2014-04-10 07:15:00", T),
            ("2014-04-10T07:15:00", T),
            ("2014-04-10 07:15:00.000000", T),
            ("2014-04-10 07:15:00.250", T + 250),
            ("2014-04-10 07:15:00.2509", T + 250),
            ("  2014-04-10 07:15:00 ", T),
            ("2014-04-10 07:15", T),
            ("2014-04-10", T - (7 * 60 + 15) * 60_000),
            ("1397114100", T),
            ("1397114100.25", T + 250),
            ("1397114100.2509", T + 250),
            ("0", 0),
            ("-1.5", -1500),
            ("-1.0001", -1001),
        ] {
            assert_eq!(parse_time_ms(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for text in ["yesterday", "1397114100.", ".5", "1e9", "2014-13-10 07:15:00", "12:00:00"] {
            assert!(
                matches!(parse_time_ms(text), Err(TimeError::Unreadable(_))),
                "{text:?}: {:?}",
                parse_time_ms(text)
            );
        }
        assert_eq!(parse_time_ms("  "), Err(TimeError::Empty));
        assert!(matches!(parse_time_ms("99999999999999999999"), Err(TimeError::OutOfRange(_))));
    }

    #[test]
    fn formats_as_rfc3339_utc() {
        assert_eq!(format_time_ms(T + 250), "2014-04-10T07:15:00.25Z");
    }
}
