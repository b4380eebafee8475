//! The Gaussian-mixture model, for series with more than one normal mode (a cache that is hit or
//! missed, a job that runs or does not): per hour of the week, and per hour of the day while the
//! weeks are few, a two-component Gaussian mixture of the values seen at that hour.
//!
//! Each slot is fitted by stepwise (online) EM (Cappé and Moulines 2009): every point moves the
//! components' weights, means and variances by its responsibilities with a step of
//! 1/min(n + 1, N), where N is the number of points the slot sees in `history_days` — a running
//! average until then, an exponential forgetting of about the history afterwards. No refit over
//! stored points, 56 bytes a slot. A second component is born at a point more than 3σ from the
//! first; a component whose weight falls under 1% dies, and two that come within one σ of each
//! other merge, so there is room for a mode that appears later. Variances are floored at a tenth of the
//! series' spread so one repeated value cannot collapse a component to zero width.
//!
//! A point is anomalous when it lies beyond `mixture_sigmas` standard deviations of every
//! component that carries at least 5% of the weight, in its hour of the week and its hour of the
//! day; its score is the smallest of its distances in units of `mixture_sigmas · σ`, so > 1
//! means outside, as for the other models.

use serde::{Deserialize, Serialize};

use super::seasonal::HOUR_MS;

const BIRTH_SIGMAS: f64 = 3.0;
const MIN_WEIGHT: f64 = 0.01;
const SCORING_WEIGHT: f64 = 0.05;
/// Points a slot needs before it is used.
pub(crate) const READY_POINTS: u32 = 12;

/// One slot's mixture. Unused components have weight 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Gmm {
    w: [f64; 2],
    mu: [f64; 2],
    var: [f64; 2],
    n: u32,
}

/// The best-fitting component for a point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Fit {
    pub mean: f64,
    pub sigma: f64,
}

impl Gmm {
    pub(crate) fn ready(&self) -> bool {
        self.n >= READY_POINTS
    }

    /// Whether a component is free for a new mode.
    fn has_room(&self) -> bool {
        self.w.contains(&0.0)
    }

    /// The components that count for scoring, as (mean, σ).
    pub(crate) fn components(&self) -> impl Iterator<Item = Fit> + '_ {
        (0..2)
            .filter(move |&k| self.w[k] >= SCORING_WEIGHT)
            .map(move |k| Fit { mean: self.mu[k], sigma: self.var[k].sqrt() })
    }

    /// Learns `x`; `memory` is N, `spread` the series' robust spread (its square floors the
    /// variances and is the first component's prior width).
    pub(crate) fn learn(&mut self, x: f64, memory: u32, spread: f64) {
        let floor = if spread > 0.0 { (0.1 * spread).powi(2) } else { 0.0 };
        if self.n == 0 || (self.w[0] == 0.0 && self.w[1] == 0.0) {
            *self = Gmm { w: [1.0, 0.0], mu: [x, 0.0], var: [(spread * spread).max(floor), 0.0], n: 1 };
            return;
        }
        let n = self.n as f64;
        let eta = 1.0 / (n + 1.0).min(f64::from(memory.max(1)));
        let free = (0..2).find(|&k| self.w[k] == 0.0);
        let far =
            (0..2).filter(|&k| self.w[k] > 0.0).all(|k| (x - self.mu[k]).abs() > BIRTH_SIGMAS * self.var[k].sqrt());
        if let (Some(k), true) = (free, far) {
            let other = 1 - k;
            self.w = [self.w[0] * (1.0 - eta), self.w[1] * (1.0 - eta)];
            self.w[k] = eta;
            self.mu[k] = x;
            self.var[k] = self.var[other].max(floor);
            self.n = self.n.saturating_add(1);
            return;
        }
        // Responsibilities, computed in log space relative to the best component.
        let log_p: [f64; 2] = std::array::from_fn(|k| {
            if self.w[k] > 0.0 {
                let var = self.var[k].max(floor).max(f64::MIN_POSITIVE);
                self.w[k].ln() - 0.5 * var.ln() - 0.5 * (x - self.mu[k]).powi(2) / var
            } else {
                f64::NEG_INFINITY
            }
        });
        let best = log_p[0].max(log_p[1]);
        let p = log_p.map(|l| (l - best).exp());
        let total = p[0] + p[1];
        for (k, pk) in p.into_iter().enumerate() {
            if self.w[k] == 0.0 {
                continue;
            }
            let gamma = pk / total;
            self.w[k] = (1.0 - eta) * self.w[k] + eta * gamma;
            if gamma > 0.0 && self.w[k] > 0.0 {
                let rho = (eta * gamma / self.w[k]).min(1.0);
                let d = x - self.mu[k];
                self.mu[k] += rho * d;
                self.var[k] = ((1.0 - rho) * (self.var[k] + rho * d * d)).max(floor);
            }
        }
        for k in 0..2 {
            if self.w[k] < MIN_WEIGHT {
                self.w[k] = 0.0;
            }
        }
        // Two components on one mode are one: merged, they leave room for another mode.
        if self.w[0] > 0.0 && self.w[1] > 0.0 && (self.mu[0] - self.mu[1]).abs() < self.var[0].max(self.var[1]).sqrt() {
            let w = self.w[0] + self.w[1];
            let mu = (self.w[0] * self.mu[0] + self.w[1] * self.mu[1]) / w;
            let var = (self.w[0] * (self.var[0] + (self.mu[0] - mu).powi(2))
                + self.w[1] * (self.var[1] + (self.mu[1] - mu).powi(2)))
                / w;
            self.w = [w, 0.0];
            self.mu = [mu, 0.0];
            self.var = [var, 0.0];
        }
        let sum = self.w[0] + self.w[1];
        if sum > 0.0 {
            self.w = [self.w[0] / sum, self.w[1] / sum];
        }
        self.n = self.n.saturating_add(1);
    }
}

/// The slots: 168 hours of the week, 24 hours of the day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Mixture {
    week: Vec<Gmm>,
    day: Vec<Gmm>,
}

impl Default for Mixture {
    fn default() -> Self {
        Mixture { week: vec![Gmm::default(); 168], day: vec![Gmm::default(); 24] }
    }
}

impl Mixture {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.week.len() != 168 || self.day.len() != 24 {
            return Err("the mixture does not have 168 weekly and 24 daily slots".into());
        }
        Ok(())
    }

    /// Monday-based hour of the week and hour of the day (1970-01-01 was a Thursday).
    fn slots(time_ms: i64) -> (usize, usize) {
        let hour = time_ms.div_euclid(HOUR_MS);
        ((hour + 3 * 24).rem_euclid(168) as usize, hour.rem_euclid(24) as usize)
    }

    /// The slots that judge `time_ms`, those of its hour of the week and its hour of the day
    /// that have enough points: a point is anomalous only beyond every component of both. The
    /// hour of the week sees 24 points in two weeks of 5-minute data, too few to trust alone
    /// the width of a mode that holds a third of them; the hour of the day sees seven times as
    /// many.
    pub(crate) fn slots_for(&self, time_ms: i64) -> impl Iterator<Item = &Gmm> {
        let (w, d) = Self::slots(time_ms);
        [&self.week[w], &self.day[d]].into_iter().filter(|g| g.ready())
    }

    /// Whether the slots of `time_ms` are still learning (then every point teaches them).
    pub(crate) fn learning(&self, time_ms: i64) -> bool {
        let (w, _) = Self::slots(time_ms);
        !self.week[w].ready()
    }

    /// Whether a slot of `time_ms` has room for another mode.
    pub(crate) fn has_room(&self, time_ms: i64) -> bool {
        let (w, d) = Self::slots(time_ms);
        self.week[w].has_room() || self.day[d].has_room()
    }

    /// Learns `x` in both slots of `time_ms`; `points_per_hour` sets their memories.
    pub(crate) fn learn(&mut self, time_ms: i64, x: f64, points_per_hour: f64, history_days: u32, spread: f64) {
        let (w, d) = Self::slots(time_ms);
        let weeks = history_days.div_ceil(7);
        let per_hour = points_per_hour.clamp(1.0, 3600.0);
        self.week[w].learn(x, (f64::from(weeks) * per_hour).ceil() as u32, spread);
        self.day[d].learn(x, (f64::from(history_days) * per_hour).ceil() as u32, spread);
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        (self.week.capacity() + self.day.capacity()) * std::mem::size_of::<Gmm>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_modes_are_found() {
        let mut g = Gmm::default();
        let mut state = 3u64;
        for i in 0..400 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let x = if i % 3 == 0 { 200.0 + 4.0 * u } else { 100.0 + 2.0 * u };
            g.learn(x, 100, 30.0);
        }
        let mut comps: Vec<Fit> = g.components().collect();
        comps.sort_by(|a, b| a.mean.total_cmp(&b.mean));
        assert_eq!(comps.len(), 2, "{g:?}");
        assert!((comps[0].mean - 100.0).abs() < 1.0 && (comps[1].mean - 200.0).abs() < 2.0, "{comps:?}");
        assert!((g.w[0] - 2.0 / 3.0).abs() < 0.15 || (g.w[1] - 2.0 / 3.0).abs() < 0.15, "{g:?}");
        // Both σ near the uniform's (width/√12), well above the floor of 3.
        assert!(comps.iter().all(|c| c.sigma < 3.5), "{comps:?}");
    }

    #[test]
    fn one_mode_stays_one() {
        let mut g = Gmm::default();
        for i in 0..200 {
            g.learn(50.0 + (i % 5) as f64, 100, 2.0);
        }
        assert_eq!(g.components().count(), 1, "{g:?}");
    }
}
