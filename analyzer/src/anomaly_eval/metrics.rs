//! How well a detector's detections match the labelled incidents of a file: incident-level
//! precision, recall, F1 and detection delay, and the Numenta Anomaly Benchmark's window score.
//!
//! A *detection* is a point whose anomaly score reaches the threshold (the caller decides
//! which; for slo-gate's detector, the first point of each incident it raises). Points of the
//! probationary period are never scored: no detection there counts, for or against.
//!
//! Incident level (what a person on call sees):
//! - an incident (window) is *detected* when at least one detection lies inside it; more
//!   detections in the same window add nothing;
//! - detections at consecutive points form one alarm, as a pager shows one ongoing alert; an
//!   alarm none of whose points lies in a window is one *false alarm*, however many points it
//!   spans (an alarm that begins inside a window and outlasts it is the true one, not a false
//!   one);
//! - precision = detected ÷ (detected + false alarms), recall = detected ÷ incidents, F1 their
//!   harmonic mean; undefined (absent) when the denominator is 0;
//! - delay: from the window's onset (the labelled time for windows built around a label, the
//!   window's start otherwise) to its first detection, in points and in time; negative when the
//!   detection precedes the labelled time.
//!
//! NAB window score (Lavin & Ahmad 2015, "Evaluating Real-time Anomaly Detection Algorithms –
//! the Numenta Anomaly Benchmark", section 4, and NAB's `nab/sweeper.py`), for a cost profile
//! (A_TP, A_FP, A_FN):
//! - σ(y) = 2/(1 + e^{5y}) − 1, the scaled sigmoid, for y < 3; −1 for y ≥ 3;
//! - a window with detections scores A_TP·σ(y)/σ(−1) for its first detection only, at relative
//!   position y = −(last − i + 1)/len (so −1 at the window's first point, giving exactly A_TP,
//!   and −1/len at its last); a window without one scores −A_FN;
//! - *every* detection point outside the windows scores A_FP·σ(y), with y = (i − last)/(len − 1)
//!   measured from the end of the preceding window (a detection just late is charged little,
//!   one far away almost A_FP), and y ≥ 3 (charged A_FP in full) when no window precedes it
//!   (or the window has one point). This is NAB's rule and differs on purpose from the
//!   incident-level false alarm count above: NAB charges points;
//! - the raw score is the sum; normalised, 100·(raw − null)/(perfect − null) with the null
//!   detector's score (no detections) null = −A_FN·windows and the perfect one's A_TP·windows
//!   (NAB's `runner.py`, `normalize`). 100 is perfect, 0 is no better than detecting nothing,
//!   and false alarms can take it below 0.

use serde::Serialize;

use super::labels::Window;

/// NAB's cost weights of one application profile (`config/profiles.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostProfile {
    pub name: &'static str,
    /// A_TP: reward of a window detected at its first point.
    pub true_positive: f64,
    /// A_FP, as a positive number: cost of a detection far from any window.
    pub false_positive: f64,
    /// A_FN, as a positive number: cost of a window not detected.
    pub false_negative: f64,
}

/// NAB's standard profile.
pub const STANDARD: CostProfile =
    CostProfile { name: "standard", true_positive: 1.0, false_positive: 0.11, false_negative: 1.0 };
/// NAB's profile for applications where false alarms are expensive.
pub const REWARD_LOW_FP: CostProfile =
    CostProfile { name: "reward_low_fp_rate", true_positive: 1.0, false_positive: 0.22, false_negative: 1.0 };
/// NAB's profile for applications where missed incidents are expensive.
pub const REWARD_LOW_FN: CostProfile =
    CostProfile { name: "reward_low_fn_rate", true_positive: 1.0, false_positive: 0.11, false_negative: 2.0 };
/// The three profiles, in the order of [`Tally::nab_raw`].
pub const PROFILES: [CostProfile; 3] = [STANDARD, REWARD_LOW_FP, REWARD_LOW_FN];

/// NAB's scaled sigmoid of a relative position (module docs).
pub fn scaled_sigmoid(y: f64) -> f64 {
    if y >= 3.0 { -1.0 } else { 2.0 / (1.0 + (5.0 * y).exp()) - 1.0 }
}

/// The counts of one file, or the sums of several (add with [`Tally::add`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Points read.
    pub points: usize,
    /// Points after the probationary period.
    pub scored_points: usize,
    pub incidents: usize,
    pub detected: usize,
    pub false_alarms: usize,
    /// Detection points outside every window (what NAB charges).
    pub false_positive_points: usize,
    /// Sums of the delays of the detected incidents, in points and in milliseconds.
    pub delay_points_sum: i64,
    pub delay_ms_sum: i64,
    /// Raw NAB score per profile of [`PROFILES`].
    pub nab_raw: [f64; 3],
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.points += other.points;
        self.scored_points += other.scored_points;
        self.incidents += other.incidents;
        self.detected += other.detected;
        self.false_alarms += other.false_alarms;
        self.false_positive_points += other.false_positive_points;
        self.delay_points_sum += other.delay_points_sum;
        self.delay_ms_sum += other.delay_ms_sum;
        for (mine, theirs) in self.nab_raw.iter_mut().zip(other.nab_raw) {
            *mine += theirs;
        }
    }

    pub fn missed(&self) -> usize {
        self.incidents - self.detected
    }

    pub fn precision(&self) -> Option<f64> {
        ratio(self.detected, self.detected + self.false_alarms)
    }

    pub fn recall(&self) -> Option<f64> {
        ratio(self.detected, self.incidents)
    }

    pub fn f1(&self) -> Option<f64> {
        let (p, r) = (self.precision()?, self.recall()?);
        Some(if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) })
    }

    /// False alarms per 10,000 scored points.
    pub fn false_alarms_per_10k(&self) -> Option<f64> {
        ratio(self.false_alarms * 10_000, self.scored_points)
    }

    /// Mean delay of the detected incidents, in points.
    pub fn mean_delay_points(&self) -> Option<f64> {
        (self.detected > 0).then(|| self.delay_points_sum as f64 / self.detected as f64)
    }

    /// Mean delay of the detected incidents, in seconds.
    pub fn mean_delay_seconds(&self) -> Option<f64> {
        (self.detected > 0).then(|| self.delay_ms_sum as f64 / 1000.0 / self.detected as f64)
    }

    /// NAB's normalised score (0–100) for profile `index` of [`PROFILES`]; absent without
    /// incidents, where the null and the perfect detector score alike.
    pub fn nab_normalized(&self, index: usize) -> Option<f64> {
        let profile = PROFILES[index];
        let windows = self.incidents as f64;
        let null = -profile.false_negative * windows;
        let perfect = profile.true_positive * windows;
        (self.incidents > 0).then(|| 100.0 * (self.nab_raw[index] - null) / (perfect - null))
    }
}

fn ratio(numerator: usize, denominator: usize) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// Scores one file: `times` of its points (unix ms, never decreasing), `detections` (one per point),
/// its `windows` (in time order, disjoint, as [`super::file_windows`] returns them) and the
/// number of leading `probation` points not scored.
///
/// # Panics
/// When `detections` and `times` differ in length, or a window lies beyond the points.
pub fn score_file(times: &[i64], detections: &[bool], windows: &[Window], probation: usize) -> Tally {
    assert_eq!(times.len(), detections.len(), "one detection flag per point");
    let n = times.len();
    let probation = probation.min(n);
    let max_tp = scaled_sigmoid(-1.0);
    let mut tally = Tally { points: n, scored_points: n - probation, incidents: windows.len(), ..Tally::default() };

    for window in windows {
        assert!(window.last < n && window.first <= window.last, "window {window:?} outside {n} points");
        let from = window.first.max(probation);
        let first_detection = (from..=window.last).find(|&i| detections[i]);
        for (raw, profile) in tally.nab_raw.iter_mut().zip(PROFILES) {
            *raw += match first_detection {
                Some(i) => {
                    let y = -((window.last - i + 1) as f64) / window.len() as f64;
                    profile.true_positive * scaled_sigmoid(y) / max_tp
                }
                None => -profile.false_negative,
            };
        }
        if let Some(i) = first_detection {
            tally.detected += 1;
            tally.delay_points_sum += i as i64 - window.onset as i64;
            tally.delay_ms_sum += times[i] - times[window.onset];
        }
    }

    // One pass over the scored points: `next` is the first window not yet passed, `run_in_window`
    // whether the current run of consecutive detections has touched a window.
    let mut next = 0;
    let mut in_run = false;
    let mut run_in_window = false;
    for (i, &detected) in detections.iter().enumerate().skip(probation) {
        while next < windows.len() && windows[next].last < i {
            next += 1;
        }
        let inside = next < windows.len() && windows[next].first <= i;
        if !detected {
            if in_run && !run_in_window {
                tally.false_alarms += 1;
            }
            in_run = false;
            continue;
        }
        if !in_run {
            in_run = true;
            run_in_window = false;
        }
        run_in_window |= inside;
        if inside {
            continue;
        }
        tally.false_positive_points += 1;
        let y = match next.checked_sub(1).map(|p| windows[p]) {
            Some(previous) if previous.len() > 1 => (i - previous.last) as f64 / (previous.len() - 1) as f64,
            _ => f64::INFINITY,
        };
        for (raw, profile) in tally.nab_raw.iter_mut().zip(PROFILES) {
            *raw += profile.false_positive * scaled_sigmoid(y);
        }
    }
    if in_run && !run_in_window {
        tally.false_alarms += 1;
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed values: σ(y) = tanh(−5y/2), so σ(−1) = tanh(2.5).
    const MAX_TP: f64 = 0.9866142981514303;
    const EPS: f64 = 1e-12;

    /// 100 points one second apart, one window at points 10..=19, no probation; detections at
    /// the points given.
    fn one_window(detect: &[usize]) -> Tally {
        score(100, &[Window { first: 10, last: 19, onset: 10 }], detect, 0)
    }

    fn score(n: usize, windows: &[Window], detect: &[usize], probation: usize) -> Tally {
        let times: Vec<i64> = (0..n as i64).map(|i| i * 1000).collect();
        let mut flags = vec![false; n];
        for &i in detect {
            flags[i] = true;
        }
        score_file(&times, &flags, windows, probation)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < EPS
    }

    #[test]
    fn sigmoid_matches_nab_s_landmarks() {
        assert!(close(scaled_sigmoid(-1.0), MAX_TP));
        assert!(close(scaled_sigmoid(0.0), 0.0));
        assert!(close(scaled_sigmoid(1.0), -MAX_TP));
        assert!(close(scaled_sigmoid(-0.5), 0.8482836399575129)); // NAB's docstring: 0.84828
        assert_eq!(scaled_sigmoid(3.0), -1.0);
        assert_eq!(scaled_sigmoid(f64::INFINITY), -1.0);
    }

    #[test]
    fn detection_at_the_window_start_scores_a_tp() {
        let t = one_window(&[10]);
        assert_eq!((t.incidents, t.detected, t.false_alarms), (1, 1, 0));
        assert!(close(t.nab_raw[0], 1.0));
        assert_eq!(t.nab_normalized(0), Some(100.0));
        assert_eq!((t.precision(), t.recall(), t.f1()), (Some(1.0), Some(1.0), Some(1.0)));
        assert_eq!(t.mean_delay_points(), Some(0.0));
    }

    #[test]
    fn detection_at_the_window_end_scores_little() {
        // y = −1/10: tanh(0.25) / tanh(2.5).
        let t = one_window(&[19]);
        assert!(close(t.nab_raw[0], 0.24824154977542992), "{}", t.nab_raw[0]);
        assert!(close(t.nab_normalized(0).unwrap(), 100.0 * (0.24824154977542992 + 1.0) / 2.0));
        assert_eq!(t.mean_delay_points(), Some(9.0));
        assert_eq!(t.mean_delay_seconds(), Some(9.0));
        assert_eq!(t.recall(), Some(1.0));
    }

    #[test]
    fn no_detection_scores_the_null_detector() {
        let t = one_window(&[]);
        assert_eq!(t.nab_raw, [-1.0, -1.0, -2.0]);
        assert_eq!((t.nab_normalized(0), t.nab_normalized(2)), (Some(0.0), Some(0.0)));
        assert_eq!((t.precision(), t.recall(), t.f1()), (None, Some(0.0), None));
        assert_eq!(t.mean_delay_points(), None);
    }

    #[test]
    fn only_the_first_detection_in_a_window_counts() {
        // Point 12: y = −8/10, tanh(2)/tanh(2.5); the detection at 15 adds nothing.
        let t = one_window(&[12, 15]);
        assert!(close(t.nab_raw[0], 0.9771068409226047));
        assert_eq!((t.detected, t.false_alarms, t.false_positive_points), (1, 0, 0));
        assert_eq!(t.mean_delay_points(), Some(2.0));
    }

    #[test]
    fn detections_outside_windows_are_charged() {
        // Before any window: A_FP in full. Three points after the window's end:
        // y = 3/9, σ = tanh(−5/6). The window itself is missed.
        let t = one_window(&[2, 22]);
        let late = -0.6822617902381698;
        assert!(close(t.nab_raw[0], -1.0 - 0.11 + 0.11 * late), "{}", t.nab_raw[0]);
        assert!(close(t.nab_raw[1], -1.0 - 0.22 + 0.22 * late));
        assert!(close(t.nab_raw[2], -2.0 - 0.11 + 0.11 * late));
        assert_eq!((t.detected, t.false_alarms, t.false_positive_points), (0, 2, 2));
        assert_eq!((t.precision(), t.recall(), t.f1()), (Some(0.0), Some(0.0), Some(0.0)));
        assert!(t.nab_normalized(0).unwrap() < 0.0);
    }

    #[test]
    fn consecutive_detections_are_one_alarm_but_nab_charges_each_point() {
        let t = one_window(&[40, 41, 42, 60]);
        assert_eq!((t.false_alarms, t.false_positive_points), (2, 4));
        assert_eq!(t.false_alarms_per_10k(), Some(200.0));
        // An alarm that starts inside the window and outlasts it is the true one.
        let t = one_window(&[18, 19, 20, 21]);
        assert_eq!((t.detected, t.false_alarms, t.false_positive_points), (1, 0, 2));
        assert_eq!(t.precision(), Some(1.0));
        // One that starts before it and runs into it detects it.
        let t = one_window(&[8, 9, 10]);
        assert_eq!((t.detected, t.false_alarms), (1, 0));
        assert!(close(t.nab_raw[0], 1.0 - 2.0 * 0.11));
    }

    #[test]
    fn probation_points_are_not_scored() {
        let t = score(100, &[Window { first: 10, last: 19, onset: 10 }], &[3, 12], 11);
        assert_eq!((t.scored_points, t.false_alarms, t.detected), (89, 0, 1));
        // Point 12 in a window starting at 10: y = −8/10, as if the probation were not there.
        assert!(close(t.nab_raw[0], 0.9771068409226047));
        let t = score(100, &[Window { first: 10, last: 19, onset: 10 }], &[15], 16);
        assert_eq!((t.detected, t.nab_raw[0]), (0, -1.0));
    }

    #[test]
    fn false_positive_is_measured_from_the_preceding_window() {
        let windows = [Window { first: 10, last: 19, onset: 10 }, Window { first: 50, last: 54, onset: 52 }];
        // Point 56 follows the second window (len 5): y = 2/4 = 0.5, σ = tanh(−1.25).
        let t = score(100, &windows, &[10, 50, 56], 0);
        assert!(close(t.nab_raw[0], 1.0 + 1.0 + 0.11 * (-1.25f64).tanh()), "{}", t.nab_raw[0]);
        assert_eq!(t.mean_delay_points(), Some(-1.0), "a detection before the label is early");
        // A one-point window: the next false positive is charged in full.
        let t = score(100, &[Window { first: 10, last: 10, onset: 10 }], &[11], 0);
        assert!(close(t.nab_raw[0], -1.0 - 0.11));
    }

    #[test]
    fn totals_add_counts_not_ratios() {
        let mut total = one_window(&[10]);
        total.add(&one_window(&[]));
        total.add(&score(100, &[], &[5], 0));
        assert_eq!((total.incidents, total.detected, total.false_alarms), (2, 1, 1));
        assert_eq!((total.precision(), total.recall()), (Some(0.5), Some(0.5)));
        assert!(close(total.nab_raw[0], 1.0 - 1.0 - 0.11));
        assert!(close(total.nab_normalized(0).unwrap(), 100.0 * (-0.11 + 2.0) / 4.0));
        assert_eq!(score(100, &[], &[], 0).nab_normalized(0), None);
    }
}
