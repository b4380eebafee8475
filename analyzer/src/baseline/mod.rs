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
//!
//! How a point is judged:
//! - **Expected value** = a seasonal profile at this time (none, hour of day, or hour of week:
//!   `seasonal.rs`) + the median of the last 24 deseasonalised points (the local level, which
//!   follows trends and is what a level shift moves). With [`Model::Auto`] the three candidates
//!   run side by side and the simplest one whose residuals are clearly smaller than the simpler
//!   ones' is used, re-chosen every hour. [`Model::Mixture`] uses `mixture.rs` instead.
//! - **Spread** = a robust standard deviation of the recent residuals (MAD, or the mean absolute
//!   deviation when most residuals are zero), times the hour of day's share of the noise, times a
//!   tail factor ≥ 1 that widens the band of series whose noise has heavier tails than the band
//!   assumes (a streaming quantile of the scores: at most about 1 normal point in 2,000 leaves
//!   the band in the long run).
//! - **Score** = the deviation (in the configured direction) over the band's half-width
//!   `max(band · spread, min_deviation, min_relative_deviation · |expected|)`; with direction
//!   `both`, at least the last 8 points' spread over 4× the usual spread (a burst of
//!   variance).
//! - **Incidents**: `incident.rs` turns scores into one alarm per incident; anomalous points are
//!   kept out of the baseline; an incident that lasts becomes the new normal.

mod config;
mod context;
mod incident;
mod mixture;
mod seasonal;
mod subhour;
pub mod synthetic;
mod window;

pub use config::{Config, ConfigError, Direction, ExemptWindow, MAX_HISTORY_DAYS, Model};
pub use context::{ConfigOverride, ContextRule, ContextRules};

use serde::{Deserialize, Serialize};

use incident::Tracker;
use mixture::Mixture;
use seasonal::{DAY_MS, HOUR_MS, HourProfile, Nodes, nan_as_null};
use subhour::SubHour;
use window::Window;

/// Points in the window the local level (median) is taken over.
const LEVEL_POINTS: usize = 24;
/// Residuals the spread is estimated from.
const SCALE_POINTS: usize = 128;
/// Sampling intervals the typical interval is the median of.
const STEP_POINTS: usize = 16;
/// Scores are capped here so that a deviation from a spread of exactly zero stays a number.
pub const MAX_SCORE: f64 = 1e6;
/// Consistency constant of the MAD for the normal distribution (1 / Φ⁻¹(3/4)).
const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;
/// E|X| = σ·√(2/π) for a normal residual: the mean absolute deviation's constant.
const MEAN_AD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;
/// A more seasonal model replaces a simpler one when its typical residual is below this share
/// of the simpler one's (it explains at least ~28% of the remaining variance) …
const SWITCH_RATIO: f64 = 0.85;
/// … and keeps its place while it stays below this share.
const STAY_RATIO: f64 = 0.95;
/// Long-run share of normal points the tail factor lets outside the band, and how far one
/// exceedance widens it.
const TAIL_TARGET: f64 = 0.0005;
const TAIL_STEP: f64 = 0.03;
const MAX_TAIL: f64 = 1e3;
/// Long-run share of normal points a single point may open an incident at, and how far one
/// such point raises the bar (the same streaming quantile, further out).
const SPIKE_TARGET: f64 = 1e-4;
const SPIKE_STEP: f64 = 0.05;
/// Points whose spread is compared with the usual one, and how many times larger it must be to
/// score 1: both the MAD of the 8 (around their own median) and the median of their 7
/// successive absolute differences (over √2) must exceed 4 times the usual median absolute
/// residual, which Gaussian noise does in far fewer than 1 in 10⁶ windows and noise grown
/// six-fold in about half of them.
const BURST_POINTS: usize = 8;
const BURST_RATIO: f64 = 4.0;

/// What the detector says about one point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Deviation from the expected value in band half-widths (in the configured direction):
    /// above 1 is outside the band. With direction `both`, at least the spread of the last 8
    /// points over 4 times the usual spread, so a burst of variance scores above 1 even while
    /// most of its points stay inside the band. Never negative, never NaN, at most [`MAX_SCORE`]; 0 while
    /// warming up and for ignored or exempt points.
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

/// The three expectations [`Model::Auto`] chooses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    Flat = 0,
    Daily = 1,
    Weekly = 2,
}

const KINDS: [Kind; 3] = [Kind::Flat, Kind::Daily, Kind::Weekly];

/// One candidate's local level and how well it has predicted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Local {
    /// The last deseasonalised points (value − profile).
    level: Window,
    /// Exponentially weighted mean absolute residual (clipped at 5× itself), for the choice.
    #[serde(with = "nan_as_null")]
    typical: f64,
    /// Residuals it has seen.
    n: u32,
}

impl Local {
    fn new() -> Local {
        Local { level: Window::new(LEVEL_POINTS), typical: f64::NAN, n: 0 }
    }

    fn learn_residual(&mut self, r: f64, memory: f64) {
        let r = r.abs();
        self.n = self.n.saturating_add(1);
        if self.typical.is_nan() {
            self.typical = r;
            return;
        }
        let alpha = (1.0 / f64::from(self.n)).max(1.0 / memory);
        let clipped = if self.typical > 0.0 { r.min(5.0 * self.typical) } else { r };
        self.typical += alpha * (clipped - self.typical);
    }
}

/// The last sampling intervals, for the typical one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Steps {
    deltas: [i64; STEP_POINTS],
    len: usize,
    head: usize,
    /// The median of `deltas` (0 before any), kept as they change.
    median: i64,
}

impl Steps {
    fn push(&mut self, delta: i64) {
        self.deltas[self.head] = delta;
        self.head = (self.head + 1) % STEP_POINTS;
        self.len = (self.len + 1).min(STEP_POINTS);
        let mut d = self.deltas;
        window::insertion_sort(&mut d[..self.len]);
        self.median = d[self.len / 2];
    }

    /// The median interval in ms (0 before any).
    fn typical(&self) -> i64 {
        self.median
    }
}

/// One series' anomaly detector: its configuration and its complete state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "State")]
pub struct Detector {
    config: Config,
    /// Exempt windows as minutes of the week (derived from the configuration).
    #[serde(skip)]
    exempt: Vec<(u32, u32)>,
    last_ms: Option<i64>,
    /// The first point's time: the band is wider while the detector has not seen a whole day.
    first_ms: Option<i64>,
    /// The previous raw counter value (counter mode).
    last_counter: Option<f64>,
    steps: Steps,
    profile: Option<HourProfile>,
    /// The correction within the hour (series sampled every few minutes or faster).
    subhour: Option<SubHour>,
    mixture: Option<Mixture>,
    locals: [Local; 3],
    /// The candidate [`Model::Auto`] has chosen.
    active: Kind,
    /// Absolute residuals of the `scale_kind` candidate, divided by the hour's noise ratio.
    scale: Window,
    scale_kind: Kind,
    /// The same for the last few points, anomalous or not (signed): a burst of variance; and
    /// their successive absolute differences.
    burst: Window,
    burst_steps: Window,
    /// The band's widening for heavy tails (≥ 1).
    tail: f64,
    /// The same for the score at which one point alone opens an incident (≥ 1).
    spike_tail: f64,
    /// The smallest change between two consecutive values seen (0 before any): the resolution
    /// of a quantised series, which floors the spread.
    #[serde(with = "nan_as_null")]
    quantum: f64,
    tracker: Tracker,
    /// The last points (time, value), for re-baselining.
    recent: Vec<(i64, f64)>,
    recent_head: usize,
    /// The levels before the last re-baselining, for a day: a series that comes back to them
    /// has recovered, which is not a new incident.
    former: Option<Former>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Former {
    /// Each candidate's local level before (NaN where it had none).
    #[serde(with = "seasonal::nan_vec")]
    levels: Vec<f64>,
    until_ms: i64,
}

/// What one candidate expects at a point.
#[derive(Clone, Copy, Debug)]
struct Expectation {
    kind: Kind,
    /// The seasonal profile's value (0 for flat).
    profile: f64,
    /// The local level included in `expected`.
    level: f64,
    /// The correction within the hour included in `expected`.
    within_hour: f64,
    expected: f64,
    /// Points the local level was taken over.
    level_points: usize,
}

impl Detector {
    /// A detector with no history; fails when the configuration does not validate.
    pub fn new(config: Config) -> Result<Detector, ConfigError> {
        config.validate()?;
        let exempt = exempt_minutes(&config)?;
        let profile = matches!(config.model, Model::Auto | Model::Seasonal | Model::Daily)
            .then(|| HourProfile::new(config.history_days));
        let mixture = (config.model == Model::Mixture).then(Mixture::default);
        Ok(Detector {
            config,
            exempt,
            last_ms: None,
            first_ms: None,
            last_counter: None,
            steps: Steps { deltas: [0; STEP_POINTS], len: 0, head: 0, median: 0 },
            profile,
            subhour: None,
            mixture,
            locals: [Local::new(), Local::new(), Local::new()],
            active: Kind::Flat,
            scale: Window::new(SCALE_POINTS),
            scale_kind: Kind::Flat,
            burst: Window::new(BURST_POINTS),
            burst_steps: Window::new(BURST_POINTS - 1),
            tail: 1.0,
            spike_tail: 1.0,
            quantum: 0.0,
            tracker: Tracker::default(),
            recent: Vec::new(),
            recent_head: 0,
            former: None,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The model that judges points now: what [`Model::Auto`] has chosen (`Flat`, `Daily` or
    /// `Seasonal`), or the configured model.
    pub fn chosen_model(&self) -> Model {
        match (self.config.model, self.active) {
            (Model::Auto, Kind::Flat) => Model::Flat,
            (Model::Auto, Kind::Daily) => Model::Daily,
            (Model::Auto, Kind::Weekly) => Model::Seasonal,
            (model, _) => model,
        }
    }

    /// Scores one point. Points must come in time order: a point at or before the previous
    /// one's time, or whose value is not finite, is ignored (score 0, `ignored: true`) and
    /// changes nothing. In counter mode the first point, which has no rate yet, and the first
    /// point after a reset score 0 with nothing expected.
    pub fn update(&mut self, time_ms: i64, value: f64) -> Scored {
        if !value.is_finite() || self.last_ms.is_some_and(|last| time_ms <= last) {
            return Scored::nothing(true);
        }
        let previous_ms = self.last_ms.replace(time_ms);
        let value = if self.config.counter {
            let (Some(prev), Some(prev_ms)) = (self.last_counter.replace(value), previous_ms) else {
                self.last_counter = Some(value);
                return Scored::nothing(false);
            };
            if value < prev {
                // A decrease is a reset. What was counted between the previous point and the
                // reset is lost (Prometheus's `rate` assumes a restart from zero, which
                // undercounts that interval), so this interval's rate is not judged: counting
                // starts again from the new value.
                return Scored::nothing(false);
            }
            (value - prev) / ((time_ms - prev_ms) as f64 / 1000.0)
        } else {
            value
        };
        self.observe(previous_ms, time_ms, value)
    }

    /// Scores every point of `points` in order (the same as calling [`Detector::update`] on each).
    pub fn update_all(&mut self, points: impl IntoIterator<Item = (i64, f64)>) -> Vec<Scored> {
        points.into_iter().map(|(t, v)| self.update(t, v)).collect()
    }

    /// Points in a day at the typical interval (a day's worth when unknown), bounded.
    fn memory(&self) -> f64 {
        let step = self.steps.typical();
        let per_day = if step > 0 { DAY_MS as f64 / step as f64 } else { 288.0 };
        per_day.clamp(48.0, 1440.0)
    }

    fn observe(&mut self, previous_ms: Option<i64>, time_ms: i64, x: f64) -> Scored {
        self.first_ms.get_or_insert(time_ms);
        if let Some(prev) = previous_ms {
            let delta = time_ms - prev;
            let typical = self.steps.typical();
            if self.steps.len >= 4 && delta as f64 > self.config.gap_intervals * typical as f64 {
                // After a silence the level may have moved: relearn it from the points to come.
                for local in &mut self.locals {
                    local.level.clear();
                }
            }
            self.steps.push(delta);
        }
        let memory = self.memory();
        let nodes = Nodes::at(time_ms);
        if let Some(profile) = &mut self.profile
            && profile.advance(time_ms)
            && self.config.model == Model::Auto
        {
            self.choose();
        }
        if let Some(profile) = &mut self.profile {
            profile.prepare(nodes);
        }
        let ratio = self.profile.as_ref().map_or(1.0, |p| p.noise_ratio(nodes));
        let candidates = self.expectations(nodes, time_ms);
        let used = self.pick(&candidates);
        let exempt = self.in_exempt_window(time_ms);

        let mut out = Scored::nothing(false);
        let mut half = f64::NAN;
        let mut band_part = f64::NAN;
        let mut deviation = 0.0;
        let mixture_fit = self.mixture_fit(time_ms, x);
        if let Some((expected, h)) = mixture_fit {
            half = h;
            deviation = x - expected;
            out.expected = expected;
        } else if let Some(e) = used {
            let sigma = self.spread(e.kind, ratio, e.level_points);
            band_part = self.config.band * self.tail * self.youth(time_ms) * sigma;
            half = if sigma.is_nan() { f64::NAN } else { self.half_width(e.expected, band_part) };
            deviation = x - e.expected;
            out.expected = e.expected;
        }
        if !half.is_nan() {
            out.lower = out.expected - half;
            out.upper = out.expected + half;
        }
        if exempt {
            return out;
        }

        let warm = self.scale.len() >= self.config.warmup_points as usize && !half.is_nan();
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
            if let Some(e) = used
                && mixture_fit.is_none()
            {
                let r = deviation / (ratio * self.conversion(e.kind));
                let r = r.clamp(-MAX_SCORE, MAX_SCORE);
                if let Some(previous) = self.burst.last() {
                    self.burst_steps.push((r - previous).abs());
                }
                self.burst.push(r);
            }
            let point_score = out.score;
            if self.config.direction == Direction::Both && mixture_fit.is_none() && self.burst.len() == BURST_POINTS {
                let usual = self.scale.median();
                if usual > 0.0 {
                    // A minimum deviation that widens the band widens this threshold alike.
                    let widening = if band_part > 0.0 && half > band_part { half / band_part } else { 1.0 };
                    // The spread measured two ways, the smaller kept: the MAD around the window's
                    // own median (which one step in the level, splitting the window in two,
                    // inflates) and the median successive difference over √2 (which two
                    // outliers, each moving two differences, inflate). A burst of variance
                    // raises both.
                    let spread = self.burst.mad().min(self.burst_steps.median() / std::f64::consts::SQRT_2);
                    let burst = spread / (BURST_RATIO * usual * widening);
                    out.score = out.score.max(burst.min(MAX_SCORE));
                }
            }
            // With the mixture model, only the mixture's own scores calibrate its tails, once
            // its hour of the week has learnt: before, every mode it has not seen is a miss.
            let calibrates = self.config.model != Model::Mixture
                || (mixture_fit.is_some() && !self.mixture.as_ref().is_some_and(|m| m.learning(time_ms)));
            if self.tracker.open.is_none() && calibrates {
                // The streaming (1 − TAIL_TARGET)-quantile of the scores (Ma, Muthukrishnan and
                // Sandler's frugal estimator), never below the band itself.
                if point_score > 1.0 {
                    self.tail = (self.tail * (1.0 + TAIL_STEP)).min(MAX_TAIL);
                } else {
                    self.tail = (self.tail * (1.0 - TAIL_STEP * TAIL_TARGET / (1.0 - TAIL_TARGET))).max(1.0);
                }
                if point_score >= self.config.spike_score * self.spike_tail {
                    self.spike_tail = (self.spike_tail * (1.0 + SPIKE_STEP)).min(MAX_TAIL);
                } else {
                    self.spike_tail =
                        (self.spike_tail * (1.0 - SPIKE_STEP * SPIKE_TARGET / (1.0 - SPIKE_TARGET))).max(1.0);
                }
            }
        }
        if out.score > 1.0
            && self.tracker.open.is_none()
            && let Some(e) = used
            && let Some(level) = self.returned(time_ms, x, e, half)
        {
            // Back at the level it had before the last incident became the new normal: a
            // recovery. That level is the baseline again, from this point on.
            out.expected = e.expected - e.level + level;
            out.lower = out.expected - half;
            out.upper = out.expected + half;
            out.score = if half > 0.0 { (x - out.expected).abs() / half } else { 0.0 };
            let former = self.former.take().map(|f| f.levels).unwrap_or_default();
            for (kind, level) in KINDS.into_iter().zip(former) {
                if !level.is_nan() {
                    let local = &mut self.locals[kind as usize];
                    local.level.clear();
                    local.level.push(level);
                }
            }
        }
        let start_ms = self.tracker.open.as_ref().map(|o| o.start_ms);
        let spike = self.config.spike_score * self.spike_tail;
        let d = self.tracker.step(&self.config, time_ms, out.score, spike, out.expected, x);
        out.alarm = d.alarm;
        out.event = d.event;
        self.remember(time_ms, x);
        // The hour summaries take every point: an incident is one day among `history_days`, and
        // the median across days drops it, whereas leaving it out would leave a recurring
        // pattern the model has not learnt unlearnt for ever.
        if let Some(profile) = &mut self.profile {
            profile.accept(x);
        }
        // So does the correction within the hour: a pattern that recurs every hour is normal.
        if let Some(e) = used
            && self.profile.is_some()
            && self.steps.len >= 4
            && self.steps.typical() <= subhour::MAX_STEP_MS
        {
            self.subhour.get_or_insert_with(SubHour::default).learn(
                time_ms,
                x - (e.expected - e.within_hour),
                memory,
                SWITCH_RATIO,
                STAY_RATIO,
            );
        }
        if d.rebaseline {
            self.adopt(start_ms.unwrap_or(time_ms), memory);
        } else if !d.held {
            self.learn(time_ms, x, nodes, ratio, &candidates, used.map(|e| e.kind), memory);
        } else if self.mixture_learning(time_ms, mixture_fit.is_some()) {
            // A slot still learning cannot tell a second mode from an anomaly yet, and one with
            // room for another mode takes it in at a small weight (it counts once it recurs):
            // they learn every point, the flat fallback only the normal ones.
            self.learn_mixture(time_ms, x);
        }
        out
    }

    /// Each candidate's expectation at `nodes`, when it has one.
    fn expectations(&self, nodes: Nodes, time_ms: i64) -> [Option<Expectation>; 3] {
        let within_hour = self.subhour.as_ref().map_or(0.0, |s| s.correction(time_ms));
        let mut out = [None; 3];
        for kind in KINDS {
            let profile = match (kind, &self.profile) {
                (Kind::Flat, _) => Some(0.0),
                (Kind::Daily, Some(p)) => p.daily_at(nodes),
                (Kind::Weekly, Some(p)) if matches!(self.config.model, Model::Auto | Model::Seasonal) => {
                    p.weekly_at(nodes)
                }
                _ => None,
            };
            let local = &self.locals[kind as usize];
            if let Some(profile) = profile
                && !local.level.is_empty()
            {
                let level = local.level.median();
                let expected = profile + within_hour + level;
                out[kind as usize] =
                    Some(Expectation { kind, profile, level, within_hour, expected, level_points: local.level.len() });
            }
        }
        out
    }

    /// The candidate that judges this point: the chosen one (or the configured one) when it has
    /// an expectation, else the next simpler one that has.
    fn pick(&self, candidates: &[Option<Expectation>; 3]) -> Option<Expectation> {
        let first = match self.config.model {
            Model::Auto => self.active,
            Model::Seasonal => Kind::Weekly,
            Model::Daily => Kind::Daily,
            Model::Flat | Model::Mixture => Kind::Flat,
        };
        (0..=first as usize).rev().find_map(|k| candidates[k])
    }

    /// [`Model::Auto`]'s choice, once an hour: the most seasonal candidate whose typical residual
    /// is clearly below the simpler chosen one's, over at least half a day of points.
    fn choose(&mut self) {
        let memory = self.memory();
        let ready = |k: Kind| {
            let l = &self.locals[k as usize];
            f64::from(l.n) >= memory / 2.0 && l.typical.is_finite()
        };
        let mut best = Kind::Flat;
        for k in [Kind::Daily, Kind::Weekly] {
            if !ready(k) {
                continue;
            }
            let ratio = if self.active as usize >= k as usize { STAY_RATIO } else { SWITCH_RATIO };
            let (mine, simpler) = (self.locals[k as usize].typical, self.locals[best as usize].typical);
            if mine < ratio * simpler {
                best = k;
            }
        }
        if self.active == Kind::Flat && best != Kind::Flat {
            // The tail factor measured how the flat level missed the seasonal shape; the
            // seasonal model's residuals start afresh.
            self.tail = 1.0;
        }
        self.active = best;
    }

    /// Widening of the band during the first day: before it has seen a whole day, the detector
    /// cannot know whether a morning ramp is the series' daily cycle or an anomaly (1.5 at the
    /// first point, 1 after 24 hours).
    fn youth(&self, time_ms: i64) -> f64 {
        let age = self.first_ms.map_or(0, |first| time_ms - first) as f64 / DAY_MS as f64;
        1.0 + 0.5 * (1.0 - age).max(0.0)
    }

    /// How much larger `kind`'s residuals typically are than those the spread window holds.
    fn conversion(&self, kind: Kind) -> f64 {
        let (mine, held) = (self.locals[kind as usize].typical, self.locals[self.scale_kind as usize].typical);
        if mine > 0.0 && held > 0.0 { mine / held } else { 1.0 }
    }

    /// The robust standard deviation of `kind`'s residuals at this point; NaN before any.
    fn spread(&self, kind: Kind, ratio: f64, level_points: usize) -> f64 {
        if self.scale.is_empty() {
            return f64::NAN;
        }
        let typical = self.conversion(kind);
        let mad = self.scale.median();
        let standard = if mad > 0.0 { MAD_TO_SIGMA * mad } else { MEAN_AD_TO_SIGMA * self.scale.mean_abs_dev(0.0) };
        // A level from fewer points than usual (after a gap) predicts worse: the variance of a
        // median of n points is about π/2 · σ²/n.
        let n = level_points.max(1) as f64;
        let level = ((1.0 + std::f64::consts::FRAC_PI_2 / n)
            / (1.0 + std::f64::consts::FRAC_PI_2 / LEVEL_POINTS as f64))
            .sqrt();
        // Few residuals give a rough spread: widen it a little until there are more.
        let few = 1.0 + 4.0 / self.scale.len() as f64;
        (standard * typical * ratio * level * few).max(0.5 * self.quantum)
    }

    fn half_width(&self, expected: f64, band: f64) -> f64 {
        band.max(self.config.min_deviation).max(self.config.min_relative_deviation * expected.abs())
    }

    /// The mixture's expectation and half-width at a point, when its slot is ready.
    fn mixture_fit(&self, time_ms: i64, x: f64) -> Option<(f64, f64)> {
        let mut best: Option<(f64, f64, f64)> = None;
        for c in self.mixture.as_ref()?.slots_for(time_ms).flat_map(|g| g.components()) {
            let half = self.half_width(c.mean, self.config.mixture_sigmas * self.tail * c.sigma);
            let deviation = x - c.mean;
            let directed = match self.config.direction {
                Direction::Both => deviation.abs(),
                Direction::Above => deviation.max(0.0),
                Direction::Below => (-deviation).max(0.0),
            };
            let score = if half > 0.0 {
                directed / half
            } else if directed > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            if best.is_none_or(|(s, ..)| score < s) {
                best = Some((score, c.mean, half));
            }
        }
        best.map(|(_, mean, half)| (mean, half))
    }

    fn mixture_learning(&self, time_ms: i64, judged: bool) -> bool {
        self.mixture.as_ref().is_some_and(|m| (!judged && m.learning(time_ms)) || m.has_room(time_ms))
    }

    /// Teaches a normal point to every model.
    #[allow(clippy::too_many_arguments)]
    fn learn(
        &mut self,
        time_ms: i64,
        x: f64,
        nodes: Nodes,
        ratio: f64,
        candidates: &[Option<Expectation>; 3],
        used: Option<Kind>,
        memory: f64,
    ) {
        if let Some(last) = self.recent_last()
            && last != x
        {
            let step = (x - last).abs();
            if self.quantum == 0.0 || step < self.quantum {
                self.quantum = step;
            }
        }
        if let Some(kind) = used
            && let Some(e) = candidates[kind as usize]
        {
            if kind != self.scale_kind && kind == self.pick_kind() {
                // The chosen model judges again (or for the first time): the window is
                // converted to its residuals rather than mixing two models' residuals.
                let factor = self.conversion(kind);
                self.scale.scale_values(factor);
                self.scale_kind = kind;
                // The last few residuals were the other model's: a burst they are not.
                self.burst.clear();
                self.burst_steps.clear();
            }
            let u = (x - e.expected).abs() / (ratio * self.conversion(kind));
            self.scale.push(u.min(MAX_SCORE));
        }
        let within_hour = self.subhour.as_ref().map_or(0.0, |s| s.correction(time_ms));
        for kind in KINDS {
            if let Some(e) = candidates[kind as usize] {
                self.locals[kind as usize].learn_residual(x - e.expected, memory);
            }
            let profile = match kind {
                Kind::Flat => Some(0.0),
                _ => candidates[kind as usize].map(|e| e.profile).or_else(|| self.profile_at(kind, nodes)),
            };
            if let Some(p) = profile {
                self.locals[kind as usize].level.push(x - p - within_hour);
            }
        }
        self.learn_mixture(time_ms, x);
    }

    fn learn_mixture(&mut self, time_ms: i64, x: f64) {
        if self.mixture.is_none() {
            return;
        }
        let spread = self.spread(Kind::Flat, 1.0, LEVEL_POINTS);
        if spread.is_nan() || spread <= 0.0 {
            // Nothing to size a component with yet.
            return;
        }
        let per_hour = HOUR_MS as f64 / self.steps.typical().max(1) as f64;
        let days = self.config.history_days;
        if let Some(m) = &mut self.mixture {
            m.learn(time_ms, x, per_hour, days, spread);
        }
    }

    fn profile_at(&self, kind: Kind, nodes: Nodes) -> Option<f64> {
        let p = self.profile.as_ref()?;
        match kind {
            Kind::Flat => Some(0.0),
            Kind::Daily => p.daily_at(nodes),
            Kind::Weekly => p.weekly_at(nodes),
        }
    }

    /// The former level `x` is back at (within `half`), if there is one and it has not expired.
    fn returned(&self, time_ms: i64, x: f64, e: Expectation, half: f64) -> Option<f64> {
        let former = self.former.as_ref().filter(|f| time_ms <= f.until_ms)?;
        let level = *former.levels.get(e.kind as usize)?;
        let expected = e.expected - e.level + level;
        (!level.is_nan() && (x - expected).abs() <= half).then_some(level)
    }

    /// A lasting incident is the new normal: every level is relearned from its points.
    fn adopt(&mut self, start_ms: i64, memory: f64) {
        let points: Vec<(i64, f64)> = self.recent_iter().filter(|&(t, _)| t >= start_ms).collect();
        self.former = Some(Former {
            levels: self.locals.iter().map(|l| l.level.median()).collect(),
            until_ms: points.last().map_or(start_ms, |p| p.0).saturating_add(DAY_MS),
        });
        for kind in KINDS {
            let deseasonalised: Vec<f64> =
                points.iter().filter_map(|&(t, x)| self.profile_at(kind, Nodes::at(t)).map(|p| x - p)).collect();
            if deseasonalised.is_empty() {
                continue;
            }
            let chosen = kind == self.scale_kind;
            let local = &mut self.locals[kind as usize];
            local.level.clear();
            for v in &deseasonalised {
                local.level.push(*v);
            }
            // The new level's own residuals tell the typical residual of the new normal.
            let level = local.level.median();
            for v in &deseasonalised {
                local.learn_residual(v - level, memory);
            }
            if chosen {
                for (v, &(t, _)) in deseasonalised.iter().zip(&points) {
                    let ratio = self.profile.as_ref().map_or(1.0, |p| p.noise_ratio(Nodes::at(t)));
                    self.scale.push(((v - level).abs() / ratio).min(MAX_SCORE));
                }
            }
        }
        for &(t, x) in &points {
            self.learn_mixture(t, x);
        }
    }

    /// The candidate whose residuals the spread window holds most of the time.
    fn pick_kind(&self) -> Kind {
        match self.config.model {
            Model::Auto => self.active,
            Model::Seasonal => Kind::Weekly,
            Model::Daily => Kind::Daily,
            Model::Flat | Model::Mixture => Kind::Flat,
        }
    }

    fn remember(&mut self, time_ms: i64, x: f64) {
        if self.recent.len() < LEVEL_POINTS {
            if self.recent.capacity() == 0 {
                self.recent.reserve_exact(LEVEL_POINTS);
            }
            self.recent.push((time_ms, x));
        } else {
            self.recent[self.recent_head] = (time_ms, x);
            self.recent_head = (self.recent_head + 1) % LEVEL_POINTS;
        }
    }

    fn recent_iter(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        let (newer, older) = self.recent.split_at(self.recent_head.min(self.recent.len()));
        older.iter().chain(newer).copied()
    }

    /// The point before the one just remembered.
    fn recent_last(&self) -> Option<f64> {
        let n = self.recent.len();
        if n < 2 {
            return None;
        }
        // The newest is at head − 1 (or the end while filling); the one before it, one back.
        let newest = if n < LEVEL_POINTS { n - 1 } else { (self.recent_head + LEVEL_POINTS - 1) % LEVEL_POINTS };
        Some(self.recent[(newest + n - 1) % n].1)
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
            + self.locals.iter().map(|l| l.level.heap_bytes()).sum::<usize>()
            + self.scale.heap_bytes()
            + self.burst.heap_bytes()
            + self.burst_steps.heap_bytes()
            + self.profile.as_ref().map_or(0, HourProfile::heap_bytes)
            + self.subhour.as_ref().map_or(0, SubHour::heap_bytes)
            + self.mixture.as_ref().map_or(0, Mixture::heap_bytes)
            + self.recent.capacity() * std::mem::size_of::<(i64, f64)>()
            + self.exempt.capacity() * std::mem::size_of::<(u32, u32)>()
            + self.config.exempt.capacity() * std::mem::size_of::<ExemptWindow>()
            + self
                .config
                .exempt
                .iter()
                .map(|w| {
                    w.start.capacity()
                        + w.end.capacity()
                        + w.days.capacity() * std::mem::size_of::<String>()
                        + w.days.iter().map(String::capacity).sum::<usize>()
                })
                .sum::<usize>()
    }
}

fn exempt_minutes(config: &Config) -> Result<Vec<(u32, u32)>, ConfigError> {
    let mut exempt = Vec::new();
    for (i, w) in config.exempt.iter().enumerate() {
        exempt.extend(w.minutes_of_week().map_err(|e| e.under(&format!("exempt[{i}]")))?);
    }
    Ok(exempt)
}

/// The serialised form of a [`Detector`], checked before it becomes one: a damaged or
/// hand-edited state is an error, never a panic later.
#[derive(Deserialize)]
struct State {
    config: Config,
    last_ms: Option<i64>,
    first_ms: Option<i64>,
    last_counter: Option<f64>,
    steps: Steps,
    profile: Option<HourProfile>,
    subhour: Option<SubHour>,
    mixture: Option<Mixture>,
    locals: [Local; 3],
    active: Kind,
    scale: Window,
    scale_kind: Kind,
    burst: Window,
    burst_steps: Window,
    tail: f64,
    spike_tail: f64,
    #[serde(with = "nan_as_null")]
    quantum: f64,
    tracker: Tracker,
    recent: Vec<(i64, f64)>,
    recent_head: usize,
    former: Option<Former>,
}

impl TryFrom<State> for Detector {
    type Error = String;
    fn try_from(s: State) -> Result<Detector, String> {
        s.config.validate().map_err(|e| e.to_string())?;
        let exempt = exempt_minutes(&s.config).map_err(|e| e.to_string())?;
        let wants_profile = matches!(s.config.model, Model::Auto | Model::Seasonal | Model::Daily);
        match &s.profile {
            Some(p) if wants_profile => p.check(s.config.history_days)?,
            None if !wants_profile => {}
            _ => return Err("the seasonal state does not match the model".into()),
        }
        match &s.mixture {
            Some(m) if s.config.model == Model::Mixture => m.check()?,
            None if s.config.model != Model::Mixture => {}
            _ => return Err("the mixture state does not match the model".into()),
        }
        if let Some(sub) = &s.subhour {
            sub.check()?;
        }
        if s.former.as_ref().is_some_and(|f| f.levels.len() != KINDS.len()) {
            return Err("the former levels are damaged".into());
        }
        if s.steps.len > STEP_POINTS || s.steps.head >= STEP_POINTS {
            return Err("the interval ring is damaged".into());
        }
        if s.recent.len() > LEVEL_POINTS || (s.recent_head != 0 && s.recent_head >= s.recent.len()) {
            return Err("the recent points are damaged".into());
        }
        if !(1.0..=MAX_TAIL).contains(&s.tail)
            || !(1.0..=MAX_TAIL).contains(&s.spike_tail)
            || s.quantum.is_nan()
            || s.quantum < 0.0
        {
            return Err("the tail factor or the resolution is out of range".into());
        }
        Ok(Detector {
            config: s.config,
            exempt,
            last_ms: s.last_ms,
            first_ms: s.first_ms,
            last_counter: s.last_counter,
            steps: s.steps,
            profile: s.profile,
            subhour: s.subhour,
            mixture: s.mixture,
            locals: s.locals,
            active: s.active,
            scale: s.scale,
            scale_kind: s.scale_kind,
            burst: s.burst,
            burst_steps: s.burst_steps,
            tail: s.tail,
            spike_tail: s.spike_tail,
            quantum: s.quantum,
            tracker: s.tracker,
            recent: s.recent,
            recent_head: s.recent_head,
            former: s.former,
        })
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

    /// The band is four standard deviations of the noise, whatever the model: the spread
    /// estimate is consistent for Gaussian noise (within 15% over a week of points; a profile's own
    /// error adds to the daily model's residuals).
    #[test]
    fn the_spread_is_the_noise_standard_deviation() {
        let mut rng = synthetic::Rng(3);
        for (model, step) in [(Model::Flat, 60_000), (Model::Auto, 300_000), (Model::Daily, 300_000)] {
            let mut d = Detector::new(Config { model, ..Config::default() }).unwrap();
            let mut halves = Vec::new();
            for i in 0..7 * 288 * 300_000 / step {
                let t = 1_767_571_200_000 + i * step;
                let s = d.update(t, 1000.0 + 2.0 * rng.normal());
                if i > 2 * 288 * 300_000 / step {
                    halves.push((s.upper - s.expected) / 4.0);
                }
            }
            halves.sort_by(f64::total_cmp);
            let median = halves[halves.len() / 2];
            assert!((median / 2.0 - 1.0).abs() < 0.15, "{model:?}: σ {median}");
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
