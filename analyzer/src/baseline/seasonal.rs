//! The seasonal memory of a series: one summary per hour over the last `history_days` days.
//!
//! Each completed hour leaves its median (robust to the odd outlier inside it) and its noise,
//! measured as the MAD of the differences between consecutive points (a seasonal slope within
//! the hour shifts every difference alike and does not count as noise that way). That is all
//! the daily and the time-of-week models need: the expected shape at an hour is the median of
//! the same hour's medians on the earlier days of the history (at least two of them); for the
//! time of week, on the same weekday of the earlier weeks. Only earlier days count, never the
//! hour itself; the daily value counts as one more week, so one week's incident cannot move the
//! time-of-week value far while the weeks are few. Between hours the profile is interpolated linearly from one hour's centre to the
//! next, so a smooth daily curve is followed within the hour instead of in steps. The memory is
//! a fixed ring of `24 × (history_days + 1)` summaries: 5.8 KiB for 14 days, whatever the
//! sampling rate.
//!
//! The noise profile gives each hour of the day its own share of the spread (quiet nights,
//! noisy peaks: latency is heteroscedastic), as a ratio to the median hour's, clamped to
//! [1/3, 3] so a few odd hours cannot make a band absurdly narrow or wide.

use serde::{Deserialize, Serialize};

use super::window::median_in_place;

pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_HOURS: i64 = 7 * 24;
/// Values of one hour kept for its median; past this the hour keeps every other one.
const HOUR_BUFFER: usize = 64;
const EMPTY: i64 = i64::MIN;
const EMPTY_TAG: i32 = i32::MIN;

/// An hour as kept in the ring: hours since 1970 fit an `i32` for 245,000 years either way.
fn tag(hour: i64) -> i32 {
    hour as i32
}
/// Bounds of one hour's noise relative to the median hour's.
const MIN_RATIO: f64 = 1.0 / 3.0;
const MAX_RATIO: f64 = 3.0;
/// Summaries (days, or hours of noise) a profile value needs.
const MIN_DAYS: usize = 2;

/// Hours of history and the profiles derived from them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct HourProfile {
    days: u32,
    /// Per absolute hour `H`, at `H mod (24 × days)`: the hour it holds (`EMPTY` if none), its
    /// median and its noise (NaN when it had too few points).
    tags: Vec<i32>,
    #[serde(with = "nan_vec")]
    medians: Vec<f64>,
    #[serde(with = "nan_vec32")]
    noise: Vec<f32>,
    /// The hour being accumulated and its accepted values (every `stride`-th once full).
    current: i64,
    buffer: Vec<f64>,
    stride: u32,
    seen: u32,
    /// Per hour of the day: the median over the days of the hours' noise.
    #[serde(with = "nan_vec")]
    daily_noise: Vec<f64>,
    /// The median of `daily_noise`: what a ratio of 1 means.
    #[serde(with = "nan_as_null")]
    noise_norm: f64,
    /// The daily and weekly profile values of the two hours a point is interpolated between
    /// (they change only when the point moves to the next hour).
    #[serde(skip)]
    memo: Memo,
}

/// Derived values, recomputed after a restart; never part of equality.
#[derive(Clone, Debug)]
struct Memo {
    hour: i64,
    daily: [f64; 2],
    weekly: [f64; 2],
}

impl Default for Memo {
    fn default() -> Memo {
        Memo { hour: EMPTY, daily: [f64::NAN; 2], weekly: [f64::NAN; 2] }
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

/// A profile value at a point in time, between two hour centres.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Nodes {
    /// The hour whose centre is at or before the time, and the fraction of the way to the next.
    hour: i64,
    frac: f64,
}

impl Nodes {
    pub(crate) fn at(time_ms: i64) -> Nodes {
        let u = time_ms - HOUR_MS / 2;
        let hour = u.div_euclid(HOUR_MS);
        Nodes { hour, frac: (u - hour * HOUR_MS) as f64 / HOUR_MS as f64 }
    }
}

impl HourProfile {
    pub(crate) fn new(days: u32) -> HourProfile {
        let slots = Self::slots(days);
        HourProfile {
            days,
            tags: vec![EMPTY_TAG; slots],
            medians: vec![f64::NAN; slots],
            noise: vec![f32::NAN; slots],
            current: EMPTY,
            buffer: Vec::new(),
            stride: 1,
            seen: 0,
            daily_noise: vec![f64::NAN; 24],
            noise_norm: f64::NAN,
            memo: Memo::default(),
        }
    }

    /// The ring holds one day more than the history, so an hour's value for a day `days` ago
    /// is still there while the hour after it is being accumulated.
    fn slots(days: u32) -> usize {
        24 * (days as usize + 1)
    }

    /// Checks the sizes a deserialised profile must have for `days`.
    pub(crate) fn check(&self, days: u32) -> Result<(), String> {
        let slots = Self::slots(days);
        if self.days != days || self.tags.len() != slots || self.medians.len() != slots || self.noise.len() != slots {
            return Err(format!("the hour profile does not hold {days} days"));
        }
        if self.daily_noise.len() != 24 || self.buffer.len() > HOUR_BUFFER || self.stride == 0 {
            return Err("the hour profile's daily summaries or buffer are damaged".into());
        }
        Ok(())
    }

    /// Moves the accumulator to the hour of `time_ms`, completing the hour before it; true when
    /// an hour was completed. A jump of more than a day recomputes the whole daily profile, whose
    /// older days may have left the history.
    pub(crate) fn advance(&mut self, time_ms: i64) -> bool {
        let hour = time_ms.div_euclid(HOUR_MS);
        if hour == self.current {
            return false;
        }
        let previous = self.current;
        let completed = previous != EMPTY;
        if completed {
            self.complete(previous);
        }
        self.current = hour;
        self.buffer.clear();
        self.stride = 1;
        self.seen = 0;
        if completed && hour - previous > 24 {
            for h in 0..24 {
                self.refresh_daily(previous, h);
            }
            self.refresh_norm();
        }
        completed
    }

    /// Adds an accepted (normal) value to the current hour.
    pub(crate) fn accept(&mut self, value: f64) {
        self.seen = self.seen.wrapping_add(1);
        if !self.seen.is_multiple_of(self.stride) {
            return;
        }
        if self.buffer.len() == HOUR_BUFFER {
            // Keep every other value, and from now on every other new one.
            let kept: Vec<f64> = self.buffer.iter().copied().step_by(2).collect();
            self.buffer.clear();
            self.buffer.extend(kept);
            self.stride = self.stride.saturating_mul(2);
            if !self.seen.is_multiple_of(self.stride) {
                return;
            }
        }
        if self.buffer.capacity() == 0 {
            self.buffer.reserve_exact(HOUR_BUFFER);
        }
        self.buffer.push(value);
    }

    fn complete(&mut self, hour: i64) {
        if self.buffer.is_empty() {
            return;
        }
        let noise = if self.buffer.len() >= 4 {
            // The MAD of the differences: a steady slope within the hour shifts every difference
            // alike and is not noise.
            let mut diffs = [0.0; HOUR_BUFFER];
            let n = self.buffer.len() - 1;
            for (d, w) in diffs.iter_mut().zip(self.buffer.windows(2)) {
                *d = w[1] - w[0];
            }
            let diffs = &mut diffs[..n];
            let center = median_in_place(diffs);
            diffs.iter_mut().for_each(|d| *d = (*d - center).abs());
            median_in_place(diffs)
        } else {
            f64::NAN
        };
        let median = median_in_place(&mut self.buffer);
        let slot = hour.rem_euclid(self.tags.len() as i64) as usize;
        self.tags[slot] = tag(hour);
        self.medians[slot] = median;
        self.noise[slot] = noise as f32;
        let h = hour.rem_euclid(24) as usize;
        for neighbour in [(h + 23) % 24, h, (h + 1) % 24] {
            self.refresh_daily(hour, neighbour);
        }
        self.refresh_norm();
    }

    /// The values kept at `hour − step·k` for k = `first`, `first` + 1, … within the history.
    fn same_hour(&self, hour: i64, step: i64, first: i64, value: impl Fn(usize) -> f64, out: &mut [f64; 64]) -> usize {
        let mut n = 0;
        let span = self.tags.len() as i64;
        let history = 24 * i64::from(self.days);
        let mut k = first;
        while step * k <= history && step * k < span && n < out.len() {
            let h = hour - step * k;
            let slot = h.rem_euclid(span) as usize;
            if self.tags[slot] == tag(h) {
                let v = value(slot);
                if !v.is_nan() {
                    out[n] = v;
                    n += 1;
                }
            }
            k += 1;
        }
        n
    }

    /// Recomputes hour-of-day `h`'s noise from the days up to the one of `latest`, pooling the
    /// hour before and the hour after it: one hour of 5-minute points gives a noise estimate
    /// good to ±50%, and three hours over two weeks bring that to about ±10%.
    fn refresh_daily(&mut self, latest: i64, h: usize) {
        let mut pooled = [0.0; 3 * 64];
        let mut n = 0;
        for offset in [23, 0, 1] {
            let hh = (h as i64 + offset).rem_euclid(24);
            let last = latest - (latest.rem_euclid(24) - hh).rem_euclid(24);
            let mut buf = [0.0; 64];
            let k = self.same_hour(last, 24, 0, |slot| f64::from(self.noise[slot]), &mut buf);
            pooled[n..n + k].copy_from_slice(&buf[..k]);
            n += k;
        }
        self.daily_noise[h] = if n >= 3 * MIN_DAYS { median_in_place(&mut pooled[..n]) } else { f64::NAN };
    }

    fn refresh_norm(&mut self) {
        let mut buf = [0.0; 24];
        let mut n = 0;
        for v in self.daily_noise.iter().filter(|v| !v.is_nan()) {
            buf[n] = *v;
            n += 1;
        }
        self.noise_norm = if n >= 12 { median_in_place(&mut buf[..n]) } else { f64::NAN };
    }

    /// The profile value of hour `hour`: the median of the same hour on the earlier days
    /// (`period` 24) or weeks (168) within the history; NaN with fewer than `min` of them.
    fn node(&self, hour: i64, period: i64, min: usize) -> f64 {
        let mut buf = [0.0; 64];
        let n = self.same_hour(hour, period, 1, |slot| self.medians[slot], &mut buf);
        if n >= min { median_in_place(&mut buf[..n]) } else { f64::NAN }
    }

    /// The time-of-week value of hour `hour`: the median of the same hour in the earlier weeks
    /// and of the daily profile's value there, which stands in for one more week. Two weeks of
    /// history give two values, whose median is their mean: one week with an incident at that
    /// hour would move it half-way; with the daily value beside them, it does not.
    fn weekly_node(&self, hour: i64, daily: f64) -> f64 {
        let mut buf = [0.0; 64];
        let mut n = self.same_hour(hour, WEEK_HOURS, 1, |slot| self.medians[slot], &mut buf);
        if n == 0 {
            return f64::NAN;
        }
        if !daily.is_nan() && n < buf.len() {
            buf[n] = daily;
            n += 1;
        }
        median_in_place(&mut buf[..n])
    }

    /// Makes the profile values of the hours around `nodes` ready to read.
    pub(crate) fn prepare(&mut self, nodes: Nodes) {
        if self.memo.hour == nodes.hour {
            return;
        }
        let h = nodes.hour;
        let daily = [self.node(h, 24, MIN_DAYS), self.node(h + 1, 24, MIN_DAYS)];
        let weekly = [self.weekly_node(h, daily[0]), self.weekly_node(h + 1, daily[1])];
        self.memo = Memo { hour: h, daily, weekly };
    }

    /// The daily profile at `nodes` (read from the memo after [`HourProfile::prepare`]);
    /// `None` when neither neighbouring hour has one.
    pub(crate) fn daily_at(&self, nodes: Nodes) -> Option<f64> {
        if self.memo.hour == nodes.hour {
            return interpolate(self.memo.daily[0], self.memo.daily[1], nodes.frac);
        }
        interpolate(self.node(nodes.hour, 24, MIN_DAYS), self.node(nodes.hour + 1, 24, MIN_DAYS), nodes.frac)
    }

    /// The time-of-week profile at `nodes`: the same hours of the earlier weeks.
    pub(crate) fn weekly_at(&self, nodes: Nodes) -> Option<f64> {
        if self.memo.hour == nodes.hour {
            return interpolate(self.memo.weekly[0], self.memo.weekly[1], nodes.frac);
        }
        let (h, daily) = (nodes.hour, |hour| self.node(hour, 24, MIN_DAYS));
        interpolate(self.weekly_node(h, daily(h)), self.weekly_node(h + 1, daily(h + 1)), nodes.frac)
    }

    /// This time of day's share of the spread (1 when the noise profile is not known yet).
    pub(crate) fn noise_ratio(&self, nodes: Nodes) -> f64 {
        if self.noise_norm.is_nan() || self.noise_norm <= 0.0 {
            return 1.0;
        }
        let a = self.daily_noise[nodes.hour.rem_euclid(24) as usize];
        let b = self.daily_noise[(nodes.hour + 1).rem_euclid(24) as usize];
        match interpolate(a, b, nodes.frac) {
            Some(v) => (v / self.noise_norm).clamp(MIN_RATIO, MAX_RATIO),
            None => 1.0,
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        (self.tags.capacity() + self.noise.capacity()) * 4
            + (self.medians.capacity() + self.buffer.capacity()) * 8
            + self.daily_noise.capacity() * 8
    }
}

fn interpolate(a: f64, b: f64, frac: f64) -> Option<f64> {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => Some(a + frac * (b - a)),
        (false, true) => Some(a),
        (true, false) => Some(b),
        (true, true) => None,
    }
}

/// NaN written as `null` and read back (JSON has no NaN).
pub(crate) mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() { s.serialize_none() } else { s.serialize_f64(*v) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// A vector of `f32` whose NaNs are written as `null`.
pub(crate) mod nan_vec32 {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        let opts: Vec<Option<f32>> = v.iter().map(|x| if x.is_nan() { None } else { Some(*x) }).collect();
        opts.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        Ok(Vec::<Option<f32>>::deserialize(d)?.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect())
    }
}

/// A vector whose NaNs are written as `null`.
pub(crate) mod nan_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let opts: Vec<Option<f64>> = v.iter().map(|x| if x.is_nan() { None } else { Some(*x) }).collect();
        opts.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `days` days of a value per `step_ms` given by `f(time)` and returns the profile.
    fn fed(days: i64, step_ms: i64, f: impl Fn(i64) -> f64) -> HourProfile {
        let mut p = HourProfile::new(14);
        let mut t = 0;
        while t < days * DAY_MS {
            p.advance(t);
            p.accept(f(t));
            t += step_ms;
        }
        p
    }

    #[test]
    fn the_daily_profile_follows_a_smooth_curve_between_hours() {
        let curve = |t: i64| 100.0 + 50.0 * (2.0 * std::f64::consts::PI * (t % DAY_MS) as f64 / DAY_MS as f64).sin();
        let p = fed(3, 60_000, curve);
        for minute in [0, 17, 30, 45, 61, 719, 1000, 1439] {
            let t = 3 * DAY_MS + minute * 60_000;
            let got = p.daily_at(Nodes::at(t)).unwrap();
            // An hour's median sits a little inside the curve at its peaks; within 1.5%.
            assert!((got - curve(t)).abs() < 1.5, "minute {minute}: {got} vs {}", curve(t));
        }
        assert_eq!(p.weekly_at(Nodes::at(3 * DAY_MS)), None, "no earlier week");
    }

    #[test]
    fn one_day_is_not_a_profile() {
        let p = fed(1, 300_000, |_| 5.0);
        assert_eq!(p.daily_at(Nodes::at(DAY_MS + 1)), None);
        let p = fed(2, 300_000, |_| 5.0);
        assert_eq!(p.daily_at(Nodes::at(2 * DAY_MS + 1)), Some(5.0));
    }

    #[test]
    fn the_weekly_profile_reads_the_same_hour_of_earlier_weeks() {
        // Weekends (days 2 and 3 after the epoch's Thursday) are at 10, weekdays at 50.
        let f = |t: i64| if matches!((t / DAY_MS) % 7, 2 | 3) { 10.0 } else { 50.0 };
        let p = fed(16, 600_000, f);
        // Two earlier Saturdays and the daily value (a weekday's) beside them.
        let saturday_noon = 16 * DAY_MS + 12 * HOUR_MS;
        assert_eq!(p.weekly_at(Nodes::at(saturday_noon)), Some(10.0));
        assert_eq!(p.daily_at(Nodes::at(saturday_noon)), Some(50.0));
        // One earlier Saturday: half-way between it and the daily value.
        let p = fed(13, 600_000, f);
        assert_eq!(p.weekly_at(Nodes::at(9 * DAY_MS + 12 * HOUR_MS)), Some(30.0));
    }

    #[test]
    fn noise_ratio_marks_the_noisy_hours() {
        // Uniform noise of width 1 at night (hours 0–11) and 4 by day, on a steep slope that
        // must not count as noise.
        let f = |t: i64| {
            let amp = if (t % DAY_MS) < 12 * HOUR_MS { 1.0 } else { 4.0 };
            let mut z = ((t / 60_000) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let u = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            (t % DAY_MS) as f64 / 1000.0 + amp * u
        };
        let p = fed(3, 60_000, f);
        let night = p.noise_ratio(Nodes::at(3 * DAY_MS + 5 * HOUR_MS));
        let day = p.noise_ratio(Nodes::at(3 * DAY_MS + 17 * HOUR_MS));
        assert!((day / night - 4.0).abs() < 0.4, "{night} {day}");
        assert!(night < 1.0 && day > 1.0);
    }

    #[test]
    fn a_busy_hour_is_thinned_not_grown() {
        let p = fed(1, 1_000, |t| (t % 7) as f64);
        assert!(p.buffer.len() <= HOUR_BUFFER);
        assert!(p.heap_bytes() < 10 * 1024, "{}", p.heap_bytes());
    }
}
