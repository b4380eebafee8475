//! Dynamic baselines: per series, what normal looks like at this point, how far a point is from
//! it, and one anomaly per incident (issue 15; ADR 0010).
//!
//! A [`Detector`] takes a series' points in time order, one at a time, and returns for each a
//! [`Scored`]: the expected value, the band around it, and a score normalised so that a score
//! above 1 is outside the band (vmanomaly's convention). It is causal (a point is judged only by
//! the points before it) and incremental (O(1) amortised work per point, bounded memory, never
//! a refit over all history), and its whole state serialises, so a restarted process continues
//! exactly where it stopped. An incident raises one alarm, on its first point, and one
//! resolution ([`Incident`]); [`ContextRules`] give series chosen by their labels their own
//! settings (a batch job's nightly peak exempt).

mod config;
mod context;
mod incident;
// The order statistics the seasonal model reads are not all used by the flat first version.
#[allow(dead_code)]
mod window;

pub use config::{Config, ConfigError, Direction, ExemptWindow, MAX_HISTORY_DAYS, Model};
pub use context::{ConfigOverride, ContextRule, ContextRules};

use serde::{Deserialize, Serialize};

use incident::Tracker;
use window::Window;

/// Points in the window the local level (median) is taken over.
const LEVEL_POINTS: usize = 24;
/// Residuals the spread is estimated from.
const SCALE_POINTS: usize = 128;
/// Scores are capped here so that a deviation from a spread of exactly zero stays a number.
pub const MAX_SCORE: f64 = 1e6;
/// Consistency constant of the MAD for the normal distribution (1 / Φ⁻¹(3/4)).
const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;

/// What the detector says about one point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Deviation from the expected value in band half-widths (in the configured direction):
    /// above 1 is outside the band. Never negative, never NaN; 0 while warming up and for
    /// ignored or exempt points.
    pub score: f64,
    /// The expected value (for a counter, the expected rate per second); NaN while nothing is
    /// known yet.
    #[serde(with = "nan_as_null")]
    pub expected: f64,
    /// Lower edge of the band; NaN while nothing is known yet.
    #[serde(with = "nan_as_null")]
    pub lower: f64,
    /// Upper edge of the band; NaN while nothing is known yet.
    #[serde(with = "nan_as_null")]
    pub upper: f64,
    /// True only on the point that opens an incident.
    pub alarm: bool,
    /// The point was not used: not after the previous point's time, or not a finite number.
    pub ignored: bool,
    /// An incident opened or resolved at this point.
    pub event: Option<Incident>,
}

impl Scored {
    fn nothing(ignored: bool) -> Scored {
        Scored { score: 0.0, expected: f64::NAN, lower: f64::NAN, upper: f64::NAN, alarm: false, ignored, event: None }
    }
}

/// The start and the end of one incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Incident {
    /// The incident's first point was at `start_ms` (the alarm is raised on the point that
    /// confirms it, which may be a little later).
    Opened { start_ms: i64 },
    /// The incident ended at `end_ms` (the first of the normal points that closed it, or the
    /// point at which its new level became the baseline).
    Resolved { start_ms: i64, end_ms: i64, peak_score: f64, peak_ms: i64, expected_at_peak: f64, actual_at_peak: f64 },
}

/// A probability-like score in [0, 1] for tools that threshold one: at least 0.5 exactly on
/// alarm points (higher for stronger alarms), below 0.5 otherwise, growing with the score;
/// monotone and continuous within each class.
pub fn probability(scored: &Scored) -> f64 {
    let s = if scored.score.is_finite() { scored.score.max(0.0) } else { 0.0 };
    if scored.alarm { 1.0 - 0.5 / s.max(1.0) } else { 0.5 * s / (1.0 + s) }
}

/// One series' anomaly detector: its configuration and its complete state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    config: Config,
    /// Exempt windows as minutes of the week (derived from the configuration).
    exempt: Vec<(u32, u32)>,
    last_ms: Option<i64>,
    /// The previous raw counter value (counter mode).
    last_counter: Option<f64>,
    level: Window,
    scale: Window,
    tracker: Tracker,
}

impl Detector {
    /// A detector with no history; fails when the configuration does not validate.
    pub fn new(config: Config) -> Result<Detector, ConfigError> {
        config.validate()?;
        let mut exempt = Vec::new();
        for (i, w) in config.exempt.iter().enumerate() {
            exempt.extend(w.minutes_of_week().map_err(|e| e.under(&format!("exempt[{i}]")))?);
        }
        Ok(Detector {
            config,
            exempt,
            last_ms: None,
            last_counter: None,
            level: Window::new(LEVEL_POINTS),
            scale: Window::new(SCALE_POINTS),
            tracker: Tracker::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Scores one point. Points must come in time order: a point at or before the previous
    /// one's time, or whose value is not finite, is ignored (score 0, `ignored: true`) and
    /// changes nothing.
    pub fn update(&mut self, time_ms: i64, value: f64) -> Scored {
        if !value.is_finite() || self.last_ms.is_some_and(|last| time_ms <= last) {
            return Scored::nothing(true);
        }
        let previous_ms = self.last_ms.replace(time_ms);
        let value = if self.config.counter {
            let (Some(prev), Some(prev_ms)) = (self.last_counter.replace(value), previous_ms) else {
                return Scored::nothing(false);
            };
            // A decrease is a reset: the counter restarted from zero and counted `value` since.
            let increase = if value >= prev { value - prev } else { value };
            increase / ((time_ms - prev_ms) as f64 / 1000.0)
        } else {
            value
        };
        self.score(time_ms, value)
    }

    fn score(&mut self, time_ms: i64, value: f64) -> Scored {
        let expected = self.level.median();
        let spread = self.spread(expected);
        let mut out = Scored::nothing(false);
        if expected.is_nan() {
            self.level.push(value);
            return out;
        }
        let half = self.half_width(expected, spread);
        out.expected = expected;
        out.lower = expected - half;
        out.upper = expected + half;
        let deviation = value - expected;
        if self.in_exempt_window(time_ms) {
            return out;
        }
        let warm = self.scale.len() + 1 >= self.config.warmup_points as usize;
        if warm {
            let directed = match self.config.direction {
                Direction::Both => deviation.abs(),
                Direction::Above => deviation.max(0.0),
                Direction::Below => (-deviation).max(0.0),
            };
            out.score = if half > 0.0 {
                (directed / half).min(MAX_SCORE)
            } else if directed > 0.0 {
                MAX_SCORE
            } else {
                0.0
            };
        }
        let d = self.tracker.step(&self.config, time_ms, out.score, expected, value);
        out.alarm = d.alarm;
        out.event = d.event;
        if !d.held || d.rebaseline {
            self.level.push(value);
            // Winsorised at the band's edge so one outlier cannot widen the band much.
            let r = if half > 0.0 { deviation.abs().min(half) } else { deviation.abs() };
            self.scale.push(r);
        }
        out
    }

    /// Robust standard deviation of the residuals: the MAD's, or the mean absolute deviation's
    /// when more than half the residuals are zero (a series that is mostly constant).
    fn spread(&self, _expected: f64) -> f64 {
        if self.scale.is_empty() {
            return f64::NAN;
        }
        let mad = self.scale.median();
        if mad > 0.0 {
            MAD_TO_SIGMA * mad
        } else {
            // E|X| = σ·√(2/π) for a normal residual.
            1.253_314_137_315_500_3 * self.scale.mean_abs_dev(0.0)
        }
    }

    fn half_width(&self, expected: f64, spread: f64) -> f64 {
        let spread = if spread.is_nan() { 0.0 } else { spread };
        (self.config.band * spread)
            .max(self.config.min_deviation)
            .max(self.config.min_relative_deviation * expected.abs())
    }

    fn in_exempt_window(&self, time_ms: i64) -> bool {
        if self.exempt.is_empty() {
            return false;
        }
        // 1970-01-01 was a Thursday: Monday-based minute of the week.
        let minute = (time_ms.div_euclid(60_000) + 3 * 1440).rem_euclid(i64::from(config::MINUTES_PER_WEEK)) as u32;
        self.exempt.iter().any(|&(from, to)| from <= minute && minute < to)
    }

    /// Bytes the detector holds: its inline size and every heap allocation it owns.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Detector>()
            + self.level.heap_bytes()
            + self.scale.heap_bytes()
            + self.exempt.capacity() * std::mem::size_of::<(u32, u32)>()
            + self.config.exempt.capacity() * std::mem::size_of::<ExemptWindow>()
            + self
                .config
                .exempt
                .iter()
                .map(|w| {
                    w.start.capacity() + w.end.capacity() + w.days.iter().map(|d| d.capacity() + 24).sum::<usize>()
                })
                .sum::<usize>()
    }
}

/// NaN written as `null` and read back: JSON has no NaN, and `serde_json` would refuse to read
/// the `null` it writes for one.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() { s.serialize_none() } else { s.serialize_f64(*v) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_separates_alarms() {
        let mut s = Scored::nothing(false);
        let mut last = -1.0;
        for score in [0.0, 0.5, 1.0, 3.0, 100.0, MAX_SCORE] {
            s.score = score;
            let p = probability(&s);
            assert!(p > last && p < 0.5, "{score} → {p}");
            last = p;
        }
        s.alarm = true;
        let mut last = 0.0;
        for score in [1.0, 1.5, 3.0, 100.0, MAX_SCORE] {
            s.score = score;
            let p = probability(&s);
            assert!(p > last && (0.5..1.0).contains(&p), "{score} → {p}");
            last = p;
        }
    }

    #[test]
    fn scored_with_nan_round_trips_through_json() {
        let s = Scored::nothing(true);
        let json = serde_json::to_string(&s).unwrap();
        let back: Scored = serde_json::from_str(&json).unwrap();
        assert!(back.expected.is_nan() && back.ignored);
    }
}
