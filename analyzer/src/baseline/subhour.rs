//! Patterns within the hour: a cron job at :00, a flush every 15 minutes. The hour profiles
//! hold one median per hour and cannot see them, and a flat or daily model would alarm on every
//! one of them.
//!
//! For series sampled every few minutes or faster, the residuals the other models leave are
//! averaged per minute of the hour, and at the end of each hour the minutes' averages, less
//! their median across the hour, go into a ring of the last [`DEPTH`] hours per minute. Only the
//! shape within the hour is kept that way: a level shift, a drift or a long incident moves every
//! minute of the hour alike and cancels out, while a bump at :00 stays. The correction for a
//! minute is the median of its ring (so one odd hour does not count), kept only where it stands
//! out of the noise. Every point teaches it,
//! anomalous or not: what recurs every hour is the pattern.
//!
//! Whether the correction applies is decided as for the daily and weekly models: by how large
//! the minutes' deviations typically are with and without it, from the third hour on. A series
//! without such a pattern never switches it on.

use serde::{Deserialize, Serialize};

use super::seasonal::{HOUR_MS, nan_as_null};
use super::window::median_in_place;

/// Hours kept per minute.
pub(crate) const DEPTH: usize = 5;
/// Sampling intervals up to this have patterns within the hour worth keeping.
pub(crate) const MAX_STEP_MS: i64 = 10 * 60_000;
/// Hours of shape before the correction may apply.
const MIN_HOURS: u32 = 3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SubHour {
    /// The hour being accumulated and, per minute, the sum and count of its residuals.
    current: i64,
    sums: Vec<f64>,
    counts: Vec<u16>,
    /// Per minute of the hour, the last `DEPTH` hours' deviations from their hour's median (a
    /// ring; `seen` says how full and where the next one goes).
    shape: Vec<f32>,
    seen: Vec<u16>,
    /// Per minute, the median of its ring (0 with fewer than 3 hours), kept as the ring changes.
    medians: Vec<f32>,
    /// Typical absolute deviation of a minute without and with the correction (exponentially
    /// weighted over the minutes seen).
    #[serde(with = "nan_as_null")]
    without: f64,
    #[serde(with = "nan_as_null")]
    with: f64,
    n: u32,
    hours: u32,
    pub(crate) on: bool,
}

impl Default for SubHour {
    fn default() -> SubHour {
        SubHour {
            current: i64::MIN,
            sums: vec![0.0; 60],
            counts: vec![0; 60],
            shape: vec![0.0; 60 * DEPTH],
            seen: vec![0; 60],
            medians: vec![0.0; 60],
            without: f64::NAN,
            with: f64::NAN,
            n: 0,
            hours: 0,
            on: false,
        }
    }
}

fn minute(time_ms: i64) -> usize {
    (time_ms.div_euclid(60_000)).rem_euclid(60) as usize
}

impl SubHour {
    pub(crate) fn check(&self) -> Result<(), String> {
        let ok = self.sums.len() == 60
            && self.counts.len() == 60
            && self.shape.len() == 60 * DEPTH
            && self.seen.len() == 60
            && self.medians.len() == 60;
        if ok { Ok(()) } else { Err("the within-hour profile is damaged".into()) }
    }

    /// The median deviation of minute `m` over the hours kept; 0 with fewer than 3, or when it
    /// is within twice the typical deviation (a median of a few noisy hours would add noise to
    /// every minute that has no pattern).
    fn median_at(&self, m: usize) -> f64 {
        let median = f64::from(self.medians[m]);
        if self.without.is_nan() || median.abs() > 2.0 * self.without { median } else { 0.0 }
    }

    /// Recomputes minute `m`'s median after its ring changed.
    fn refresh(&mut self, m: usize) {
        let n = usize::from(self.seen[m]).min(DEPTH);
        self.medians[m] = if n < 3 {
            0.0
        } else {
            let mut buf = [0.0f64; DEPTH];
            for (b, v) in buf.iter_mut().zip(&self.shape[m * DEPTH..m * DEPTH + n]) {
                *b = f64::from(*v);
            }
            median_in_place(&mut buf[..n]) as f32
        };
    }

    /// The correction to add to an expectation at `time_ms` (0 while off).
    pub(crate) fn correction(&self, time_ms: i64) -> f64 {
        if self.on { self.median_at(minute(time_ms)) } else { 0.0 }
    }

    /// Learns the residual `r` (value minus the expectation without correction) at `time_ms`;
    /// `memory` is about a day of points.
    pub(crate) fn learn(&mut self, time_ms: i64, r: f64, memory: f64, switch: f64, stay: f64) {
        let hour = time_ms.div_euclid(HOUR_MS);
        if hour != self.current {
            if self.current != i64::MIN {
                self.complete(memory, switch, stay);
            }
            self.current = hour;
            self.sums.iter_mut().for_each(|s| *s = 0.0);
            self.counts.iter_mut().for_each(|c| *c = 0);
        }
        let m = minute(time_ms);
        self.sums[m] += r;
        self.counts[m] = self.counts[m].saturating_add(1);
    }

    fn complete(&mut self, memory: f64, switch: f64, stay: f64) {
        let mut means = [0.0f64; 60];
        let mut minutes = [0usize; 60];
        let mut k = 0;
        for m in 0..60 {
            if self.counts[m] > 0 {
                means[k] = self.sums[m] / f64::from(self.counts[m]);
                minutes[k] = m;
                k += 1;
            }
        }
        if k < 4 {
            return;
        }
        let mut sorted = means;
        let center = median_in_place(&mut sorted[..k]);
        let alpha_floor = 1.0 / memory.max(1.0);
        for (&m, &mean) in minutes[..k].iter().zip(&means[..k]) {
            let deviation = mean - center;
            // Compared only where the minute has a correction to offer.
            if usize::from(self.seen[m]) >= 3 {
                let corrected = deviation - self.median_at(m);
                self.n = self.n.saturating_add(1);
                let alpha = (1.0 / f64::from(self.n)).max(alpha_floor);
                // Capped so that one incident cannot decide the comparison.
                let cap = if self.without > 0.0 { 10.0 * self.without } else { f64::INFINITY };
                for (typical, v) in [(&mut self.without, deviation), (&mut self.with, corrected)] {
                    let v = v.abs().min(cap);
                    *typical = if typical.is_nan() { v } else { *typical + alpha * (v - *typical) };
                }
            }
            // `seen` counts to 2·DEPTH and wraps back to DEPTH, so `seen mod DEPTH` keeps
            // cycling through the ring and `min(seen, DEPTH)` says it is full.
            let slot = usize::from(self.seen[m]) % DEPTH;
            self.shape[m * DEPTH + slot] = deviation as f32;
            let next = self.seen[m] + 1;
            self.seen[m] = if usize::from(next) >= 2 * DEPTH { next - DEPTH as u16 } else { next };
            self.refresh(m);
        }
        self.hours = self.hours.saturating_add(1);
        if self.hours < MIN_HOURS || self.without.is_nan() || self.without <= 0.0 {
            self.on = false;
        } else {
            let ratio = if self.on { stay } else { switch };
            self.on = self.with < ratio * self.without;
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.sums.capacity() * 8
            + self.counts.capacity() * 2
            + (self.shape.capacity() + self.medians.capacity()) * 4
            + self.seen.capacity() * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(f: impl Fn(i64) -> f64) -> SubHour {
        let mut s = SubHour::default();
        let mut state = 5u64;
        for i in 0..3000i64 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let noise = ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0;
            let t = i * 60_000;
            s.learn(t, noise + f(t), 1440.0, 0.85, 0.95);
        }
        s
    }

    #[test]
    fn a_cron_bump_is_learnt_and_noise_is_not() {
        let cron = fed(|t| if minute(t) < 3 { 10.0 } else { 0.0 });
        assert!(cron.on, "{cron:?}");
        assert!((cron.correction(60_000) - 10.0).abs() < 1.0);
        assert!(cron.correction(30 * 60_000).abs() < 1.0);
        assert!(!fed(|_| 0.0).on);
        assert!(cron.check().is_ok());
    }

    #[test]
    fn levels_cancel_out() {
        // A step of 50 every fifth hour, a level of 30 on even hours: no shape within the hour.
        let s = fed(|t| {
            let hour = t / HOUR_MS;
            (if hour % 5 == 0 { 50.0 } else { 0.0 }) + (if hour % 2 == 0 { 30.0 } else { 0.0 })
        });
        assert!(!s.on, "{s:?}");
    }
}
