//! One anomaly per incident: the state machine between per-point scores and alarms.
//!
//! A detector that fires on every point of an incident is useless to the person paged and
//! scores badly on every benchmark that charges false positives (NAB counts only the first
//! detection inside a labelled window and charges every one outside). So:
//! - **Opening.** A run of consecutive points outside the band (score > 1) opens an incident
//!   when it reaches `persistence` points, or at once when a point scores `spike_score` or more.
//!   Heavy-tailed noise puts an isolated point just outside a 4σ band far more often than a
//!   Gaussian would (Student's t with 3 degrees of freedom: ~1 point in 60); two in a row, or one
//!   far out, is rare in noise and common at the start of a real incident. The incident starts at
//!   the run's first point; the alarm is raised on the point that confirms it.
//! - **Staying open, with hysteresis.** While open, a point is still anomalous above
//!   `hysteresis` (< 1), so an incident hovering at the band's edge stays one incident.
//! - **Closing.** `close_points` consecutive normal points close it; it ended at the first of
//!   them. A refractory period follows (`refractory_points` points and `refractory_ms`) in which
//!   no new incident opens: a run that lasts past it opens one then.
//! - **Re-baselining.** An incident that has lasted `rebaseline_points` points (and
//!   `rebaseline_ms`) and is still
//!   anomalous is a new normal (a level shift, a change of variance): the tracker tells the
//!   detector to adopt the recent points and resolves the incident there.
//! - Points that are anomalous (inside an incident, or in a run that may become one) are
//!   *held*: the detector does not teach them to the baseline.

use serde::{Deserialize, Serialize};

use super::{Config, Incident};

/// What the tracker decided about one point.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Decision {
    pub alarm: bool,
    pub event: Option<Incident>,
    /// The point is (possibly) anomalous: keep it out of the baseline.
    pub held: bool,
    /// The incident has become the new normal: adopt the points since `adopt_from_ms`.
    pub rebaseline: bool,
}

/// The open incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Open {
    pub start_ms: i64,
    pub peak_score: f64,
    pub peak_ms: i64,
    pub expected_at_peak: f64,
    pub actual_at_peak: f64,
    /// Points since it opened (including the opening run).
    pub points: u32,
    /// Consecutive normal points at the end; the first of them is `normal_since_ms`.
    pub normal_run: u32,
    pub normal_since_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tracker {
    pub open: Option<Open>,
    /// Consecutive points outside the band while no incident is open, and when the run began.
    run: u32,
    run_start_ms: i64,
    /// The strongest point of the current run (it becomes the incident's first peak).
    run_peak: Option<(f64, i64, f64, f64)>,
    /// Refractory period left after the last incident.
    refractory_points: u32,
    refractory_until_ms: i64,
}

impl Tracker {
    /// Judges one scored point (not exempt, past warm-up or not: a score of 0 is normal); a
    /// single point opens an incident from a score of `spike` (at least `config.spike_score`).
    pub(crate) fn step(
        &mut self,
        config: &Config,
        time_ms: i64,
        score: f64,
        spike: f64,
        expected: f64,
        actual: f64,
    ) -> Decision {
        let mut d = Decision::default();
        if let Some(open) = &mut self.open {
            open.points = open.points.saturating_add(1);
            if score > config.hysteresis {
                open.normal_run = 0;
                if score > open.peak_score {
                    open.peak_score = score;
                    open.peak_ms = time_ms;
                    open.expected_at_peak = expected;
                    open.actual_at_peak = actual;
                }
                d.held = true;
                if config.rebaseline_points > 0
                    && open.points >= config.rebaseline_points
                    && time_ms - open.start_ms >= config.rebaseline_ms
                {
                    d.rebaseline = true;
                    d.event = Some(self.close(config, time_ms, time_ms));
                }
            } else {
                if open.normal_run == 0 {
                    open.normal_since_ms = time_ms;
                }
                open.normal_run += 1;
                if open.normal_run >= config.close_points {
                    let end = open.normal_since_ms;
                    d.event = Some(self.close(config, time_ms, end));
                }
            }
            return d;
        }

        self.refractory_points = self.refractory_points.saturating_sub(1);
        if score <= 1.0 {
            self.run = 0;
            self.run_peak = None;
            return d;
        }
        d.held = true;
        if self.run == 0 {
            self.run_start_ms = time_ms;
        }
        self.run = self.run.saturating_add(1);
        if self.run_peak.is_none_or(|(s, ..)| score > s) {
            self.run_peak = Some((score, time_ms, expected, actual));
        }
        let refractory = self.refractory_points > 0 || time_ms < self.refractory_until_ms;
        if !refractory && (self.run >= config.persistence || score >= spike) {
            let (peak_score, peak_ms, expected_at_peak, actual_at_peak) =
                self.run_peak.take().unwrap_or((score, time_ms, expected, actual));
            self.open = Some(Open {
                start_ms: self.run_start_ms,
                peak_score,
                peak_ms,
                expected_at_peak,
                actual_at_peak,
                points: self.run,
                normal_run: 0,
                normal_since_ms: time_ms,
            });
            self.run = 0;
            d.alarm = true;
            d.event = Some(Incident::Opened { start_ms: self.run_start_ms });
        }
        d
    }

    fn close(&mut self, config: &Config, now_ms: i64, end_ms: i64) -> Incident {
        let open = self.open.take().expect("close is called on an open incident");
        self.refractory_points = config.refractory_points;
        self.refractory_until_ms = now_ms.saturating_add(config.refractory_ms);
        self.run = 0;
        self.run_peak = None;
        Incident::Resolved {
            start_ms: open.start_ms,
            end_ms,
            peak_score: open.peak_score,
            peak_ms: open.peak_ms,
            expected_at_peak: open.expected_at_peak,
            actual_at_peak: open.actual_at_peak,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `scores` one per second and writes what happened: `A` alarm, `R` resolved,
    /// `B` re-baselined, `h` held, `.` normal.
    fn check(config: &Config, scores: &[f64], expect: &str) {
        let mut t = Tracker::default();
        let mut out = String::new();
        for (i, &s) in scores.iter().enumerate() {
            let d = t.step(config, i as i64 * 1000, s, config.spike_score, 0.0, s);
            out.push(match (&d.event, d.rebaseline, d.alarm, d.held) {
                (_, true, ..) => 'B',
                (Some(Incident::Resolved { .. }), ..) => 'R',
                (_, _, true, _) => 'A',
                (_, _, _, true) => 'h',
                _ => '.',
            });
        }
        assert_eq!(out, expect, "{scores:?}");
    }

    #[test]
    fn one_alarm_per_incident() {
        let c = Config { close_points: 3, refractory_points: 4, rebaseline_points: 0, ..Config::default() };
        // a lone point just outside the band is held, not alarmed
        check(&c, &[0.1, 1.2, 0.3, 0.2], ".h..");
        // two in a row open; the hysteresis keeps 0.8 inside; three normal points close
        check(&c, &[0.1, 1.2, 1.3, 0.8, 2.0, 0.2, 0.1, 0.3, 0.1], ".hAhh..R.");
        // a spike opens at once
        check(&c, &[0.1, 1.6, 0.1, 0.1, 0.1, 0.1], ".A..R.");
        // during the refractory period a run is held; when it outlasts the period it opens
        check(&c, &[1.6, 0.1, 0.1, 0.1, 1.6, 1.6, 1.6, 1.6, 1.6], "A..RhhhAh");
    }

    #[test]
    fn a_lasting_incident_is_rebaselined() {
        let c = Config { rebaseline_points: 5, rebaseline_ms: 2000, ..Config::default() };
        // after it, the refractory period holds what is still outside the band without an alarm
        check(&c, &[0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.0], ".AhhhBh.");
    }

    #[test]
    fn the_incident_records_its_start_peak_and_end() {
        let c = Config { close_points: 2, ..Config::default() };
        let mut t = Tracker::default();
        let mut events = Vec::new();
        for (i, s) in [0.0, 1.1, 1.4, 3.0, 0.9, 0.2, 0.1, 0.0].into_iter().enumerate() {
            let d = t.step(&c, i as i64 * 10, s, c.spike_score, 100.0, 100.0 + s);
            events.extend(d.event);
        }
        assert_eq!(
            events,
            vec![
                Incident::Opened { start_ms: 10 },
                Incident::Resolved {
                    start_ms: 10,
                    end_ms: 50,
                    peak_score: 3.0,
                    peak_ms: 30,
                    expected_at_peak: 100.0,
                    actual_at_peak: 103.0
                }
            ]
        );
    }
}
