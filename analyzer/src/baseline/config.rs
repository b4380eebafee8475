//! The settings of one series' detector, as users write them (TOML or JSON) and as
//! [`ContextRules`](super::ContextRules) override them.
//!
//! Every default is what works on real data with no tuning; the doc comment of each field is its
//! user documentation. [`Config::validate`] names the key and what is wrong with it, so a typo
//! or an impossible value is an error before any point is scored.

use serde::{Deserialize, Serialize};

/// Which expectation the detector compares each point with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// Chosen per series from how much seasonality it shows: the time-of-week model when it
    /// explains clearly more of the series than the daily one, the daily model when it explains
    /// clearly more than a flat level, else a flat level (see ADR 0010).
    #[default]
    Auto,
    /// Expected value per hour of the week (hour of day × weekday); daily, then flat, while the
    /// history is too short.
    Seasonal,
    /// Expected value per hour of the day; flat while the history is shorter than two days.
    Daily,
    /// No seasonality: a robust local level (median) and spread (MAD).
    Flat,
    /// A two-component Gaussian mixture per hour of the week (hour of the day, then flat, while
    /// the history is short), for series with several normal modes; a point is anomalous beyond
    /// `mixture_sigmas` standard deviations of every component.
    Mixture,
}

/// Which deviations count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Above and below the band.
    #[default]
    Both,
    /// Only values above the band (latency, error ratio).
    Above,
    /// Only values below the band (throughput, availability).
    Below,
}

/// A recurring window of time (UTC) in which a series is expected to do anything: its points
/// are never anomalous and never teach the baseline (a nightly batch job's peak).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExemptWindow {
    /// Start of the window, `HH:MM` in UTC.
    pub start: String,
    /// End of the window, `HH:MM` in UTC (exclusive; `24:00` is the end of the day). A window
    /// whose end is before its start runs over midnight.
    pub end: String,
    /// Days the window starts on (`mon` … `sun`); empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
}

/// Settings of a [`Detector`](super::Detector).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The expectation: `auto` (default), `seasonal`, `daily`, `flat` or `mixture`.
    pub model: Model,
    /// Which deviations count: `both` (default), `above` or `below`.
    pub direction: Direction,
    /// Days of history the seasonal profiles are fitted over (default 14, at most 60).
    pub history_days: u32,
    /// Half-width of the band in robust standard deviations of the residuals (default 4): a
    /// point's score is its deviation divided by `band` times the spread, so a score above 1 is
    /// outside the band.
    pub band: f64,
    /// Deviations smaller than this (in the series' own unit; for a counter, per second) never
    /// score above 1 (default 0).
    pub min_deviation: f64,
    /// Deviations smaller than this fraction of the expected value's magnitude never score
    /// above 1 (default 0).
    pub min_relative_deviation: f64,
    /// For the mixture model: a point is anomalous beyond this many standard deviations of
    /// every component (default 3).
    pub mixture_sigmas: f64,
    /// A single point outside the band opens an incident only when its score reaches this
    /// (default 1.5); weaker deviations must last `persistence` points.
    pub spike_score: f64,
    /// Consecutive points outside the band that open an incident (default 2).
    pub persistence: u32,
    /// While an incident is open, a point still counts as anomalous above this score
    /// (hysteresis; default 0.75, at most 1).
    pub hysteresis: f64,
    /// Consecutive normal points that close an incident (default 6).
    pub close_points: u32,
    /// After an incident closes, no new one opens for this many points (default 12) …
    pub refractory_points: u32,
    /// … nor for this many milliseconds (default 0).
    pub refractory_ms: i64,
    /// An incident that lasts this many points is a new normal (a level shift, a change of
    /// variance): the baseline adopts its recent points and the incident resolves (default 48;
    /// 0 never re-baselines) …
    pub rebaseline_points: u32,
    /// … once it has also lasted this many milliseconds (default 4 hours, so an hour-long
    /// outage of a series sampled every minute is not adopted as normal and then alarmed on
    /// again when it ends).
    pub rebaseline_ms: i64,
    /// Points a fresh detector (or a flat level after a long gap) needs before it scores
    /// (default 12).
    pub warmup_points: u32,
    /// A silence longer than this many sampling intervals is a gap: the local level is
    /// relearned from the points after it, so the first point after it is not judged by a
    /// level that may have moved (default 12).
    pub gap_intervals: f64,
    /// The values are a monotonically increasing counter; a decrease is a reset. The detector
    /// scores the per-second rate (default false).
    pub counter: bool,
    /// Recurring windows whose points are normal whatever they are.
    pub exempt: Vec<ExemptWindow>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model: Model::Auto,
            direction: Direction::Both,
            history_days: 14,
            band: 4.0,
            min_deviation: 0.0,
            min_relative_deviation: 0.0,
            mixture_sigmas: 3.0,
            spike_score: 1.5,
            persistence: 2,
            hysteresis: 0.75,
            close_points: 6,
            refractory_points: 12,
            refractory_ms: 0,
            rebaseline_points: 48,
            rebaseline_ms: 4 * 3_600_000,
            warmup_points: 12,
            gap_intervals: 12.0,
            counter: false,
            exempt: Vec::new(),
        }
    }
}

/// What is wrong with a configuration or a context rule: the key, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A key holds a value it cannot take.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key, with its path (`rules[2].set.band`).
        key: String,
        /// What is wrong, and what would be right.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { key: key.into(), reason: reason.into() }
    }

    /// The same error with its key under `prefix` (`rules[0].set` + `band`).
    pub(crate) fn under(self, prefix: &str) -> ConfigError {
        match self {
            ConfigError::Invalid { key, reason } => ConfigError::Invalid { key: format!("{prefix}.{key}"), reason },
        }
    }
}

/// Upper bound of `history_days`: the seasonal state grows with it (24 hour summaries a day).
pub const MAX_HISTORY_DAYS: u32 = 60;

impl Config {
    /// Checks every key; the first problem found is returned with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.history_days == 0 || self.history_days > MAX_HISTORY_DAYS {
            return Err(ConfigError::invalid(
                "history_days",
                format!("{} is outside 1..={MAX_HISTORY_DAYS}", self.history_days),
            ));
        }
        positive("band", self.band)?;
        non_negative("min_deviation", self.min_deviation)?;
        non_negative("min_relative_deviation", self.min_relative_deviation)?;
        positive("mixture_sigmas", self.mixture_sigmas)?;
        if !(self.spike_score.is_finite() && self.spike_score >= 1.0) {
            return Err(ConfigError::invalid("spike_score", format!("{} is not a number >= 1", self.spike_score)));
        }
        if self.persistence == 0 {
            return Err(ConfigError::invalid("persistence", "0 points can never open an incident; use 1 or more"));
        }
        if !(self.hysteresis.is_finite() && self.hysteresis > 0.0 && self.hysteresis <= 1.0) {
            return Err(ConfigError::invalid("hysteresis", format!("{} is outside (0, 1]", self.hysteresis)));
        }
        if self.close_points == 0 {
            return Err(ConfigError::invalid("close_points", "an incident needs at least 1 normal point to close"));
        }
        if self.refractory_ms < 0 {
            return Err(ConfigError::invalid("refractory_ms", format!("{} is negative", self.refractory_ms)));
        }
        if self.rebaseline_points != 0 && self.rebaseline_points < 4 {
            return Err(ConfigError::invalid(
                "rebaseline_points",
                format!(
                    "{} points are too few to learn a new level from; use 0 (never) or 4 or more",
                    self.rebaseline_points
                ),
            ));
        }
        if self.rebaseline_ms < 0 {
            return Err(ConfigError::invalid("rebaseline_ms", format!("{} is negative", self.rebaseline_ms)));
        }
        if self.warmup_points < 3 {
            return Err(ConfigError::invalid(
                "warmup_points",
                format!("{} points cannot give a spread; use 3 or more", self.warmup_points),
            ));
        }
        if !(self.gap_intervals.is_finite() && self.gap_intervals >= 2.0) {
            return Err(ConfigError::invalid("gap_intervals", format!("{} is not a number >= 2", self.gap_intervals)));
        }
        for (i, window) in self.exempt.iter().enumerate() {
            window.minutes_of_week().map_err(|e| e.under(&format!("exempt[{i}]")))?;
        }
        Ok(())
    }
}

fn positive(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, format!("{value} is not a positive number")))
    }
}

fn non_negative(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, format!("{value} is not a number >= 0")))
    }
}

pub(crate) const MINUTES_PER_DAY: u32 = 24 * 60;
pub(crate) const MINUTES_PER_WEEK: u32 = 7 * MINUTES_PER_DAY;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl ExemptWindow {
    /// The window as half-open ranges of minutes of the week (Monday 00:00 UTC is 0), split
    /// where they wrap past Sunday midnight.
    pub(crate) fn minutes_of_week(&self) -> Result<Vec<(u32, u32)>, ConfigError> {
        let start = hh_mm("start", &self.start, false)?;
        let end = hh_mm("end", &self.end, true)?;
        if start == end {
            return Err(ConfigError::invalid("end", format!("{} is the start: the window is empty", self.end)));
        }
        let length = if end > start { end - start } else { end + MINUTES_PER_DAY - start };
        let mut days = Vec::new();
        for day in &self.days {
            match DAYS.iter().position(|d| d.eq_ignore_ascii_case(day)) {
                Some(d) => days.push(d as u32),
                None => return Err(ConfigError::invalid("days", format!("{day:?} is not one of mon, tue, … sun"))),
            }
        }
        if days.is_empty() {
            days.extend(0..7);
        }
        let mut ranges = Vec::new();
        for day in days {
            let from = day * MINUTES_PER_DAY + start;
            let to = from + length;
            if to <= MINUTES_PER_WEEK {
                ranges.push((from, to));
            } else {
                ranges.push((from, MINUTES_PER_WEEK));
                ranges.push((0, to - MINUTES_PER_WEEK));
            }
        }
        Ok(ranges)
    }
}

/// `HH:MM` as minutes of the day; `24:00` only for an end.
fn hh_mm(key: &str, text: &str, end: bool) -> Result<u32, ConfigError> {
    let bad = || ConfigError::invalid(key, format!("{text:?} is not a time of day as HH:MM (UTC)"));
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && (m != 0 || !end)) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, expect: &str) {
        let config: Config = serde_json::from_str(json).expect("parses");
        let got = match config.validate() {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expect, "{json}");
    }

    #[test]
    fn validation_names_the_key() {
        check("{}", "ok");
        check(r#"{"band": 0}"#, "band: 0 is not a positive number");
        check(r#"{"band": -2.5}"#, "band: -2.5 is not a positive number");
        check(r#"{"history_days": 0}"#, "history_days: 0 is outside 1..=60");
        check(r#"{"hysteresis": 1.5}"#, "hysteresis: 1.5 is outside (0, 1]");
        check(r#"{"spike_score": 0.5}"#, "spike_score: 0.5 is not a number >= 1");
        check(r#"{"persistence": 0}"#, "persistence: 0 points can never open an incident; use 1 or more");
        check(r#"{"min_deviation": -1}"#, "min_deviation: -1 is not a number >= 0");
        check(
            r#"{"exempt": [{"start": "01:00", "end": "03:00"}, {"start": "1:0", "end": "03:00"}]}"#,
            r#"exempt[1].start: "1:0" is not a time of day as HH:MM (UTC)"#,
        );
        check(r#"{"exempt": [{"start": "23:00", "end": "24:00", "days": ["sun"]}]}"#, "ok");
        check(
            r#"{"exempt": [{"start": "23:00", "end": "01:00", "days": ["funday"]}]}"#,
            r#"exempt[0].days: "funday" is not one of mon, tue, … sun"#,
        );
        check(
            r#"{"exempt": [{"start": "24:00", "end": "01:00"}]}"#,
            r#"exempt[0].start: "24:00" is not a time of day as HH:MM (UTC)"#,
        );
    }

    #[test]
    fn unknown_keys_and_models_are_refused() {
        assert!(
            serde_json::from_str::<Config>(r#"{"bnad": 3}"#).unwrap_err().to_string().contains("unknown field `bnad`")
        );
        assert!(serde_json::from_str::<Config>(r#"{"model": "weekly"}"#).is_err());
        let config: Config = serde_json::from_str(r#"{"model": "mixture", "direction": "above"}"#).unwrap();
        assert_eq!((config.model, config.direction), (Model::Mixture, Direction::Above));
    }

    #[test]
    fn exempt_windows_wrap_midnight_and_the_week() {
        let w = ExemptWindow { start: "23:00".into(), end: "01:00".into(), days: vec!["sun".into()] };
        assert_eq!(w.minutes_of_week().unwrap(), vec![(6 * 1440 + 1380, MINUTES_PER_WEEK), (0, 60)]);
        let w = ExemptWindow { start: "01:00".into(), end: "03:00".into(), days: vec![] };
        let ranges = w.minutes_of_week().unwrap();
        assert_eq!(ranges.len(), 7);
        assert_eq!(ranges[2], (2 * 1440 + 60, 2 * 1440 + 180));
    }
}
