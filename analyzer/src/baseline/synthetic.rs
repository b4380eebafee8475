//! A labelled synthetic corpus for the detector: deterministic series (seeded, with the crate's
//! own small generator, so every machine gets the same points) with labelled incidents, and the
//! scoring rule the tests and `examples/baseline_corpus.rs` share.
//!
//! The series imitate what services emit, not what flatters a detector: daily curves with a
//! business-hours shape, weekends, an hourly cron bump, trends; Gaussian, Student-t (heavy
//! tails), multiplicative (latency-like), autocorrelated and Poisson (error counts) noise; 1- and
//! 5-minute and jittered sampling; long gaps; NaNs and repeated timestamps. Incidents come in
//! varied sizes, some close to the band's edge: single-point spikes and dips, outages, level
//! shifts that stay (and must become the new normal), variance changes, slow drifts, traffic
//! surges on a counter that also resets. A batch job (`job="etl-batch"`) peaks every night; its
//! peak is normal under [`context_rules`], and any alarm there is counted against the detector,
//! as is any alarm right after a gap or a counter reset. Incidents are placed after three days,
//! so the seasonal models have had their history.
//!
//! Sizes are in units of the noise's standard deviation at that time (σ), so they mean the same
//! on every series.

use super::{Config, ConfigOverride, ContextRule, ContextRules, Detector, ExemptWindow};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Monday 2026-01-05 00:00 UTC: every series starts on a Monday.
const EPOCH: i64 = 1_767_571_200_000;

/// SplitMix64 (Steele, Lea and Flood 2014) with the few distributions the corpus needs.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * self.unit()).cos()
    }

    /// Student's t with `nu` degrees of freedom, scaled to unit variance.
    pub fn student_t(&mut self, nu: u32) -> f64 {
        let chi2: f64 = (0..nu).map(|_| self.normal().powi(2)).sum();
        let t = self.normal() / (chi2 / f64::from(nu)).sqrt();
        t * ((f64::from(nu) - 2.0) / f64::from(nu)).sqrt()
    }

    /// Poisson by inversion (small means) or its normal approximation (large).
    pub fn poisson(&mut self, mean: f64) -> f64 {
        if mean > 50.0 {
            return (mean + mean.sqrt() * self.normal()).round().max(0.0);
        }
        let (limit, mut k, mut p) = ((-mean).exp(), 0.0, 1.0);
        loop {
            p *= self.unit();
            if p <= limit {
                return k;
            }
            k += 1.0;
        }
    }
}

/// One labelled incident: anomalous from `start_ms` to `end_ms` (inclusive).
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledIncident {
    pub start_ms: i64,
    pub end_ms: i64,
    /// What happened: `spike`, `dip`, `outage`, `level_shift`, `variance`, `drift`, `surge`.
    pub kind: &'static str,
    /// Its size in noise standard deviations (the factor for `variance`).
    pub size: f64,
}

/// One series of the corpus.
#[derive(Clone, Debug)]
pub struct LabelledSeries {
    pub name: String,
    /// What the series is there to test (the table's rows).
    pub category: &'static str,
    pub labels: Vec<(String, String)>,
    /// Values are a counter (score them with `counter: true`).
    pub counter: bool,
    /// (unix ms, value), in order; a few series carry NaNs and repeated timestamps.
    pub points: Vec<(i64, f64)>,
    pub incidents: Vec<LabelledIncident>,
    /// Windows in which any alarm is wrong: a batch job's nightly peak, the first points after a
    /// gap or a counter reset.
    pub quiet: Vec<(i64, i64)>,
}

/// The context rules a user of these services would write: the batch job's nightly run is its
/// normal.
pub fn context_rules() -> ContextRules {
    ContextRules::new(vec![ContextRule {
        match_exact: [("job".to_string(), "etl-batch".to_string())].into(),
        set: ConfigOverride {
            exempt: Some(vec![ExemptWindow { start: "00:45".into(), end: "03:00".into(), days: vec![] }]),
            ..ConfigOverride::default()
        },
        ..ContextRule::default()
    }])
    .expect("the corpus's rules are valid")
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Noise {
    Gauss,
    /// Student's t, 4 degrees of freedom.
    Heavy,
    /// Relative to the value (lognormal-like latency).
    Multiplicative,
    /// AR(1) with φ = 0.6.
    Autocorrelated,
    /// Poisson counts of the value as mean (σ given is ignored).
    Poisson,
}

/// The normal behaviour of a series.
#[derive(Clone, Debug)]
struct Shape {
    step: i64,
    days: f64,
    /// Sampling times jittered uniformly by ±70% of the step.
    jitter: bool,
    level: f64,
    /// Relative change of the level per day.
    trend: f64,
    daily: f64,
    /// Level on Saturday and Sunday relative to weekdays.
    weekend: f64,
    /// A bump at the top of each hour (cron), relative.
    hourly: f64,
    noise: Noise,
    /// σ of the noise: absolute, or relative for `Multiplicative`.
    sigma: f64,
}

impl Shape {
    fn new(step: i64, days: f64) -> Shape {
        Shape {
            step,
            days,
            jitter: false,
            level: 100.0,
            trend: 0.0,
            daily: 0.0,
            weekend: 1.0,
            hourly: 0.0,
            noise: Noise::Gauss,
            sigma: 3.0,
        }
    }

    fn mean(&self, t: i64) -> f64 {
        let since = (t - EPOCH) as f64 / DAY as f64;
        let hour = ((t - EPOCH).rem_euclid(DAY)) as f64 / HOUR as f64;
        let tau = 2.0 * std::f64::consts::PI;
        // Business hours: low at night, a peak in the afternoon, a shoulder in the evening.
        let day_shape = 0.75 * (tau * (hour - 8.0) / 24.0).sin() + 0.25 * (2.0 * tau * (hour - 10.0) / 24.0).sin();
        // The weekend comes in and goes out over a few hours around midnight (users are in
        // several time zones), not in one step.
        let days = (t - EPOCH) as f64 / DAY as f64;
        let into_week = days.rem_euclid(7.0);
        let edge = |d: f64| 1.0 / (1.0 + (-(into_week - d) * 24.0 / 1.5).exp());
        let weekend_share = edge(5.0) - edge(7.0) + (1.0 - edge(0.0));
        let weekend = 1.0 + (self.weekend - 1.0) * weekend_share.clamp(0.0, 1.0);
        let minute = ((t - EPOCH).rem_euclid(HOUR)) / MINUTE;
        let cron = if minute < 3 { 1.0 + self.hourly } else { 1.0 };
        self.level * (1.0 + self.trend * since) * (1.0 + self.daily * day_shape) * weekend * cron
    }

    /// The noise's standard deviation at `t`.
    fn sigma_at(&self, t: i64) -> f64 {
        match self.noise {
            Noise::Multiplicative => self.sigma * self.mean(t),
            Noise::Poisson => self.mean(t).max(0.0).sqrt(),
            _ => self.sigma,
        }
    }
}

/// How an incident changes the series.
#[derive(Clone, Copy, Debug)]
enum Effect {
    /// `size` σ added at one point (negative: a dip).
    Spike { at: i64, size: f64 },
    /// `size` σ added over [start, end).
    Shift { start: i64, end: i64, size: f64 },
    /// A ramp to `size` σ over [start, ramp_end), held until `end`.
    Drift { start: i64, ramp_end: i64, end: i64, size: f64 },
    /// Noise multiplied by `factor` over [start, end).
    Variance { start: i64, end: i64, factor: f64 },
    /// Value multiplied by `factor` over [start, end) (an outage at 0.2, a surge at 2).
    Scale { start: i64, end: i64, factor: f64 },
}

struct Builder {
    rng: Rng,
    name: String,
    category: &'static str,
    labels: Vec<(String, String)>,
    shape: Shape,
    effects: Vec<Effect>,
    incidents: Vec<LabelledIncident>,
    quiet: Vec<(i64, i64)>,
    gaps: Vec<(i64, i64)>,
    /// (time, new level factor) after a gap: the level may legitimately move while nobody looks.
    after_gap_level: Vec<(i64, f64)>,
    nightly_batch: Option<f64>,
    counter_resets: Vec<i64>,
    counter: bool,
    nan_every: Option<u64>,
}

impl Builder {
    fn new(seed: u64, name: &str, category: &'static str, shape: Shape) -> Builder {
        Builder {
            rng: Rng(seed),
            name: name.to_string(),
            category,
            labels: vec![("series".into(), name.into())],
            shape,
            effects: Vec::new(),
            incidents: Vec::new(),
            quiet: Vec::new(),
            gaps: Vec::new(),
            after_gap_level: Vec::new(),
            nightly_batch: None,
            counter_resets: Vec::new(),
            counter: false,
            nan_every: None,
        }
    }

    /// A time on day `day` (0-based from the start) at `hour` (fractional).
    fn at(day: f64, hour: f64) -> i64 {
        EPOCH + (day * DAY as f64) as i64 + (hour * HOUR as f64) as i64
    }

    /// An incident time: day in [lo, hi), a random hour, aligned to the step.
    fn random_time(&mut self, lo: f64, hi: f64) -> i64 {
        let day = self.rng.range(lo, hi).floor();
        let t = Self::at(day, self.rng.range(0.0, 24.0));
        t - (t - EPOCH).rem_euclid(self.shape.step)
    }

    fn spike(&mut self, t: i64, size: f64) {
        self.effects.push(Effect::Spike { at: t, size });
        let kind = if size < 0.0 { "dip" } else { "spike" };
        self.incidents.push(LabelledIncident { start_ms: t, end_ms: t, kind, size: size.abs() });
    }

    fn shift(&mut self, start: i64, minutes: i64, size: f64, kind: &'static str) {
        let end = start + minutes * MINUTE;
        self.effects.push(Effect::Shift { start, end, size });
        self.incidents.push(LabelledIncident { start_ms: start, end_ms: end - 1, kind, size: size.abs() });
    }

    fn drift(&mut self, start: i64, ramp_minutes: i64, hold_minutes: i64, size: f64) {
        let ramp_end = start + ramp_minutes * MINUTE;
        let end = ramp_end + hold_minutes * MINUTE;
        self.effects.push(Effect::Drift { start, ramp_end, end, size });
        self.incidents.push(LabelledIncident { start_ms: start, end_ms: end - 1, kind: "drift", size });
    }

    fn variance(&mut self, start: i64, minutes: i64, factor: f64) {
        let end = start + minutes * MINUTE;
        self.effects.push(Effect::Variance { start, end, factor });
        self.incidents.push(LabelledIncident { start_ms: start, end_ms: end - 1, kind: "variance", size: factor });
    }

    fn scale(&mut self, start: i64, minutes: i64, factor: f64, kind: &'static str) {
        let end = start + minutes * MINUTE;
        self.effects.push(Effect::Scale { start, end, factor });
        self.incidents.push(LabelledIncident { start_ms: start, end_ms: end - 1, kind, size: factor });
    }

    /// No points in [start, start + minutes); the next few points must not alarm, and the
    /// level after it is `level` times the one before.
    fn gap(&mut self, start: i64, minutes: i64, level: f64) {
        let end = start + minutes * MINUTE;
        self.gaps.push((start, end));
        self.after_gap_level.push((end, level));
        self.quiet.push((end, end + 3 * self.shape.step));
    }

    fn build(mut self) -> LabelledSeries {
        let shape = self.shape.clone();
        let start = EPOCH;
        let end = EPOCH + (shape.days * DAY as f64) as i64;
        let mut points = Vec::new();
        let mut ar = 0.0;
        let mut counter_value = 0.0;
        let mut last_t = start;
        let mut k: u64 = 0;
        let mut spiked = Vec::new();
        let mut t = start;
        while t < end {
            k += 1;
            let sample_t = if shape.jitter {
                let j = self.rng.range(-0.7, 0.7);
                t + (j * shape.step as f64) as i64
            } else {
                t
            };
            let grid_t = t;
            t += shape.step;
            if self.gaps.iter().any(|&(a, b)| sample_t >= a && sample_t < b) {
                continue;
            }
            let mut mean = shape.mean(sample_t);
            for &(from, factor) in &self.after_gap_level {
                if sample_t >= from {
                    mean *= factor;
                }
            }
            if let Some(factor) = self.nightly_batch {
                mean *= batch_factor(sample_t, factor);
            }
            let mut sigma = shape.sigma_at(sample_t);
            let mut noise_factor = 1.0;
            let mut add = 0.0;
            let mut scale = 1.0;
            for e in &self.effects {
                match *e {
                    // A spike hits the sample of its grid step, wherever jitter put it.
                    Effect::Spike { at, size } if grid_t == at => {
                        add += size;
                        spiked.push((at, sample_t));
                    }
                    Effect::Shift { start, end, size } if sample_t >= start && sample_t < end => add += size,
                    Effect::Drift { start, ramp_end, end, size } if sample_t >= start && sample_t < end => {
                        let f = ((sample_t - start) as f64 / (ramp_end - start) as f64).min(1.0);
                        add += size * f;
                    }
                    Effect::Variance { start, end, factor } if sample_t >= start && sample_t < end => {
                        noise_factor *= factor
                    }
                    Effect::Scale { start, end, factor } if sample_t >= start && sample_t < end => scale *= factor,
                    _ => {}
                }
            }
            let e = match shape.noise {
                Noise::Gauss => self.rng.normal(),
                Noise::Heavy => self.rng.student_t(4),
                Noise::Multiplicative => {
                    // Lognormal with unit-variance log scale, centred: a latency's right skew.
                    let z = self.rng.normal();
                    ((shape.sigma * z).exp() - 1.0) / shape.sigma
                }
                Noise::Autocorrelated => {
                    ar = 0.6 * ar + 0.8 * self.rng.normal();
                    ar
                }
                Noise::Poisson => 0.0,
            };
            let mut value = if shape.noise == Noise::Poisson {
                let m = (mean * scale).max(0.0);
                let p = self.rng.poisson(m);
                p + (p - m) * (noise_factor - 1.0) + add * m.max(1.0).sqrt()
            } else {
                sigma *= noise_factor;
                mean * scale + sigma * e + add * shape.sigma_at(sample_t)
            };
            if self.counter {
                // The value is the rate per second; the series is its running count.
                let dt = (sample_t - last_t) as f64 / 1000.0;
                counter_value += value.max(0.0) * dt;
                if self.counter_resets.iter().any(|&r| r > last_t && r <= sample_t) {
                    counter_value = value.max(0.0) * dt * self.rng.unit();
                }
                value = counter_value.floor();
            }
            last_t = sample_t;
            if self.nan_every.is_some_and(|n| k.is_multiple_of(n)) {
                points.push((sample_t, f64::NAN));
            }
            points.push((sample_t, value));
            if self.nan_every.is_some_and(|n| k % (3 * n) == 1) {
                // A repeated timestamp with another value: the detector must ignore it.
                points.push((sample_t, value * 3.0));
            }
        }
        for (at, sample_t) in spiked {
            for i in &mut self.incidents {
                if i.start_ms == at && i.end_ms == at {
                    (i.start_ms, i.end_ms) = (sample_t, sample_t);
                }
            }
        }
        if let Some(_factor) = self.nightly_batch {
            let mut day = 0.0;
            while Self::at(day, 0.0) < end {
                self.quiet.push((Self::at(day, 1.0), Self::at(day, 2.5)));
                day += 1.0;
            }
        }
        for &r in &self.counter_resets {
            self.quiet.push((r, r + 3 * shape.step));
        }
        LabelledSeries {
            name: self.name,
            category: self.category,
            labels: self.labels,
            counter: self.counter,
            points,
            incidents: self.incidents,
            quiet: self.quiet,
        }
    }
}

/// The nightly batch job's load: ramps up at 01:00, `factor` times the usual until 02:15,
/// back down by 02:30.
fn batch_factor(t: i64, factor: f64) -> f64 {
    let minute = ((t - EPOCH).rem_euclid(DAY) / MINUTE) as f64;
    let up = (minute - 60.0) / 10.0;
    let down = (150.0 - minute) / 15.0;
    let f = up.min(down).clamp(0.0, 1.0);
    1.0 + (factor - 1.0) * f
}

/// The corpus: every category, deterministic for a seed.
pub fn corpus(seed: u64) -> Vec<LabelledSeries> {
    let mut out = Vec::new();
    let mut n = 0u64;
    let mut next = |name: &str, category: &'static str, shape: Shape| {
        n += 1;
        Builder::new(seed ^ n.wrapping_mul(0xA24B_AED4_963E_E407), name, category, shape)
    };

    // Clean series: no incident, every kind of normal.
    let mut b = next("clean-flat-gauss", "clean", Shape { sigma: 5.0, ..Shape::new(5 * MINUTE, 14.0) });
    b.shape.level = 250.0;
    out.push(b.build());
    let b = next(
        "clean-daily-latency",
        "clean",
        Shape { daily: 0.6, noise: Noise::Multiplicative, sigma: 0.08, ..Shape::new(5 * MINUTE, 21.0) },
    );
    out.push(b.build());
    let b = next(
        "clean-weekly-ar",
        "clean",
        Shape { daily: 0.5, weekend: 0.55, noise: Noise::Autocorrelated, sigma: 4.0, ..Shape::new(5 * MINUTE, 28.0) },
    );
    out.push(b.build());
    let b = next(
        "clean-trend-heavy",
        "clean",
        Shape { trend: 0.12, noise: Noise::Heavy, sigma: 4.0, ..Shape::new(5 * MINUTE, 14.0) },
    );
    out.push(b.build());
    let b = next(
        "clean-error-counts",
        "clean",
        Shape { level: 3.0, daily: 0.5, noise: Noise::Poisson, ..Shape::new(MINUTE, 7.0) },
    );
    out.push(b.build());
    let b =
        next("clean-hourly-cron", "clean", Shape { daily: 0.3, hourly: 0.25, sigma: 2.0, ..Shape::new(MINUTE, 6.0) });
    out.push(b.build());

    // Spikes and dips of one point, from clearly out to near the single-point threshold.
    let mut b = next("spikes-daily-1m", "spike", Shape { daily: 0.5, sigma: 4.0, ..Shape::new(MINUTE, 7.0) });
    for (i, size) in [7.5, 10.0, 20.0].into_iter().enumerate() {
        let t = b.random_time(3.0 + i as f64, 4.0 + i as f64);
        b.spike(t, size);
    }
    out.push(b.build());
    let mut b =
        next("spikes-heavy-5m", "spike", Shape { noise: Noise::Heavy, sigma: 3.0, ..Shape::new(5 * MINUTE, 14.0) });
    for (i, size) in [9.0, 12.0, 25.0].into_iter().enumerate() {
        let t = b.random_time(3.0 + 3.0 * i as f64, 6.0 + 3.0 * i as f64);
        b.spike(t, size);
    }
    out.push(b.build());
    let mut b = next(
        "dips-latency-5m",
        "spike",
        Shape { daily: 0.4, noise: Noise::Multiplicative, sigma: 0.05, ..Shape::new(5 * MINUTE, 14.0) },
    );
    for (i, size) in [-8.0, -12.0].into_iter().enumerate() {
        let t = b.random_time(4.0 + 4.0 * i as f64, 8.0 + 4.0 * i as f64);
        b.spike(t, size);
    }
    out.push(b.build());

    // Outages and dips that last: traffic falls to a fraction for a while.
    let mut b = next(
        "outage-weekly-5m",
        "dip",
        Shape { daily: 0.5, weekend: 0.6, sigma: 3.0, level: 200.0, ..Shape::new(5 * MINUTE, 21.0) },
    );
    let t = b.random_time(8.0, 11.0);
    b.scale(t, 40, 0.2, "outage");
    let t = b.random_time(14.0, 18.0);
    b.shift(t, 25, -5.0, "dip");
    out.push(b.build());
    let mut b = next("outage-1m", "dip", Shape { daily: 0.3, sigma: 2.0, ..Shape::new(MINUTE, 6.0) });
    let t = b.random_time(3.0, 5.0);
    b.shift(t, 12, -6.0, "dip");
    out.push(b.build());

    // Level shifts: some return, some stay and must become the new normal.
    let mut b = next("shift-stays-5m", "level_shift", Shape { daily: 0.3, sigma: 3.0, ..Shape::new(5 * MINUTE, 14.0) });
    let t = b.random_time(8.0, 9.0);
    b.effects.push(Effect::Shift { start: t, end: i64::MAX, size: 7.0 });
    b.incidents.push(LabelledIncident { start_ms: t, end_ms: t + 6 * HOUR, kind: "level_shift", size: 7.0 });
    out.push(b.build());
    let mut b = next("shift-near-band-5m", "level_shift", Shape { sigma: 2.0, ..Shape::new(5 * MINUTE, 14.0) });
    let t = b.random_time(4.0, 7.0);
    b.shift(t, 120, 5.5, "level_shift");
    let t = b.random_time(9.0, 12.0);
    b.shift(t, 180, -5.0, "level_shift");
    out.push(b.build());
    let mut b = next("shift-down-1m", "level_shift", Shape { daily: 0.4, sigma: 3.0, ..Shape::new(MINUTE, 7.0) });
    let t = b.random_time(4.0, 6.0);
    b.shift(t, 60, -8.0, "level_shift");
    out.push(b.build());

    // The noise changes, not the level.
    let mut b = next("variance-5m", "variance", Shape { daily: 0.3, sigma: 2.0, ..Shape::new(5 * MINUTE, 14.0) });
    let t = b.random_time(5.0, 8.0);
    b.variance(t, 180, 6.0);
    let t = b.random_time(10.0, 13.0);
    b.variance(t, 240, 4.0);
    out.push(b.build());

    // Slow drifts: a leak that climbs for hours.
    let mut b = next("drift-leak-5m", "drift", Shape { sigma: 2.0, ..Shape::new(5 * MINUTE, 14.0) });
    let t = b.random_time(6.0, 9.0);
    b.drift(t, 180, 360, 15.0);
    out.push(b.build());
    let mut b = next("drift-1m", "drift", Shape { daily: 0.3, sigma: 2.0, ..Shape::new(MINUTE, 6.0) });
    let t = b.random_time(3.0, 5.0);
    b.drift(t, 90, 60, 12.0);
    out.push(b.build());

    // Gaps: two days and six hours without a point; the level moves a little meanwhile.
    let mut b = next("gaps-5m", "gap", Shape { daily: 0.4, sigma: 3.0, ..Shape::new(5 * MINUTE, 16.0) });
    b.gap(Builder::at(5.0, 10.0), 2 * 24 * 60, 1.01);
    b.gap(Builder::at(9.0, 3.0), 6 * 60, 0.99);
    let t = b.random_time(11.0, 14.0);
    b.shift(t, 60, 8.0, "level_shift");
    out.push(b.build());

    // The batch job: its nightly peak is normal; a daytime saturation is not.
    let mut b = next("etl-batch-cpu", "batch_job", Shape { level: 20.0, sigma: 1.5, ..Shape::new(5 * MINUTE, 14.0) });
    b.labels.push(("job".into(), "etl-batch".into()));
    b.nightly_batch = Some(4.0);
    let t = Builder::at(10.0, 14.0);
    b.shift(t, 60, 10.0, "level_shift");
    out.push(b.build());

    // A request counter with process restarts and a traffic surge.
    let mut b = next(
        "requests-counter-1m",
        "counter_reset",
        Shape { level: 80.0, daily: 0.5, noise: Noise::Multiplicative, sigma: 0.03, ..Shape::new(MINUTE, 7.0) },
    );
    b.counter = true;
    b.counter_resets = vec![Builder::at(3.0, 9.5), Builder::at(5.0, 16.2)];
    let t = b.random_time(4.0, 5.0);
    b.scale(t, 20, 1.6, "surge");
    out.push(b.build());

    // Irregular sampling, NaNs and repeated timestamps.
    let mut b = next(
        "irregular-jitter",
        "irregular",
        Shape { jitter: true, daily: 0.4, sigma: 2.0, ..Shape::new(2 * MINUTE, 8.0) },
    );
    b.nan_every = Some(97);
    let t = b.random_time(3.0, 5.0);
    b.spike(t, 12.0);
    let t = b.random_time(5.0, 8.0);
    b.shift(t, 90, 6.0, "level_shift");
    out.push(b.build());

    // Short, trending, non-seasonal, autocorrelated: the shape of most public benchmark files.
    let mut b = next(
        "short-trend-ar",
        "short",
        Shape { trend: 0.05, noise: Noise::Autocorrelated, sigma: 3.0, ..Shape::new(5 * MINUTE, 9.0) },
    );
    let t = b.random_time(3.0, 5.0);
    b.spike(t, 12.0);
    let t = b.random_time(6.0, 8.0);
    b.shift(t, 240, 7.0, "level_shift");
    out.push(b.build());

    // Weekly: a weekday afternoon at the weekend's level is an incident only the time-of-week
    // profile sees.
    let mut b = next(
        "weekly-traffic-5m",
        "weekly",
        Shape { daily: 0.5, weekend: 0.5, sigma: 3.0, level: 300.0, ..Shape::new(5 * MINUTE, 28.0) },
    );
    let t = Builder::at(16.0, 13.0);
    b.scale(t, 120, 0.55, "dip");
    let t = b.random_time(22.0, 26.0);
    b.spike(t, 10.0);
    out.push(b.build());
    out
}

/// How the detector did on one series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Points scored (not ignored).
    pub points: usize,
    /// Per labelled incident: the delay in points from its start to the first alarm inside it,
    /// or `None` when it was missed.
    pub delays: Vec<Option<usize>>,
    /// Alarms outside every labelled incident.
    pub false_alarms: usize,
    /// Alarms inside a quiet window (also counted as false alarms).
    pub quiet_alarms: usize,
}

/// Scores `series` with `base` under `rules` (its labels choose the overrides) and matches the
/// alarms with its labels: an alarm inside an incident's window finds it, any other alarm is
/// false.
pub fn evaluate(series: &LabelledSeries, base: &Config, rules: &ContextRules) -> Evaluation {
    let labels: Vec<(&str, &str)> = series.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut config = rules.config_for(base, &labels);
    config.counter |= series.counter;
    let mut detector = Detector::new(config).expect("a valid configuration");
    let mut eval = Evaluation { delays: vec![None; series.incidents.len()], ..Evaluation::default() };
    let mut scored_times = Vec::new();
    for &(t, v) in &series.points {
        let s = detector.update(t, v);
        if s.ignored {
            continue;
        }
        eval.points += 1;
        scored_times.push(t);
        if !s.alarm {
            continue;
        }
        let hit = series.incidents.iter().position(|i| t >= i.start_ms && t <= i.end_ms);
        match hit {
            Some(i) => {
                if eval.delays[i].is_none() {
                    let start = series.incidents[i].start_ms;
                    let first = scored_times.partition_point(|&x| x < start);
                    eval.delays[i] = Some(scored_times.len() - 1 - first);
                }
            }
            None => {
                eval.false_alarms += 1;
                if series.quiet.iter().any(|&(a, b)| t >= a && t <= b) {
                    eval.quiet_alarms += 1;
                }
            }
        }
    }
    eval
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_deterministic_and_labelled() {
        let a = corpus(7);
        let b = corpus(7);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.name, y.name);
            assert_eq!(x.points.len(), y.points.len());
            assert!(x.points.iter().zip(&y.points).all(|(p, q)| p.0 == q.0 && p.1.to_bits() == q.1.to_bits()));
        }
        let c = corpus(8);
        assert!(a[0].points.iter().zip(&c[0].points).any(|(p, q)| p.1 != q.1), "another seed, other noise");
        for s in &a {
            for i in &s.incidents {
                assert!(i.start_ms <= i.end_ms, "{}", s.name);
                assert!(i.start_ms >= EPOCH + 3 * DAY, "{}: incidents come after three days", s.name);
            }
        }
    }

    #[test]
    fn noise_has_the_stated_spread() {
        let mut rng = Rng(11);
        let n = 200_000;
        let var = |f: &mut dyn FnMut() -> f64| {
            let xs: Vec<f64> = (0..n).map(|_| f()).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64
        };
        assert!((var(&mut || rng.normal()) - 1.0).abs() < 0.02);
        let mut rng = Rng(12);
        assert!((var(&mut || rng.student_t(4)) - 1.0).abs() < 0.15);
        let mut rng = Rng(13);
        assert!((var(&mut || rng.poisson(3.0)) - 3.0).abs() < 0.1);
    }
}
