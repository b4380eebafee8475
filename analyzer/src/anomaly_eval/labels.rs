//! Labelled incidents: which stretches of each series file are anomalies, and how those become
//! the windows a detector is judged on.
//!
//! A labels file is a JSON object keyed by the series file's path relative to the corpus folder
//! (`/`-separated), in either of the Numenta Anomaly Benchmark's two forms (Lavin & Ahmad 2015,
//! "Evaluating Real-time Anomaly Detection Algorithms – the Numenta Anomaly Benchmark", and the
//! NAB repository's `labels/`):
//! - `combined_windows.json`: a list of windows `[start, end]` per file;
//! - `combined_labels.json`: a list of anomaly times per file. Each becomes a window as NAB's
//!   labeller builds them (`nab/labeler.py`, `applyWindows`): window length = ⌊10% of the file's
//!   points ÷ the number of labels⌋ points, centred on the label (half that length, rounded
//!   down, on each side), clipped to the file.
//!
//! Times may be in any form [`super::parse_time_ms`] reads. A window covers the points whose
//! times lie within it; a label time that falls between points is placed on the first point at
//! or after it. As NAB's labeller does (`checkWindows`), a window that starts inside the
//! probationary period (the first points, during which a detector is still learning and is not
//! scored) is dropped, and overlapping windows are merged into one incident. Dropped windows
//! are kept with the reason, for the report.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::time::{TimeError, parse_time_ms};

/// Share of a file's points that NAB's label windows cover together (NAB's `windowSize`).
pub const NAB_WINDOW_FRACTION: f64 = 0.10;

/// The labels of one series file.
#[derive(Debug, Clone, PartialEq)]
pub enum FileLabels {
    /// Windows `(start, end)`, unix milliseconds, both included.
    Windows(Vec<(i64, i64)>),
    /// Anomaly times, unix milliseconds; windows are built around them.
    Points(Vec<i64>),
}

/// A labels file: the labels of each file key.
pub type Labels = BTreeMap<String, FileLabels>;

/// Why a labels file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("expected an object mapping each file (path relative to the data folder) to its labels")]
    NotObject,
    #[error("{key:?}: expected a list of windows [[start, end], ...] or of anomaly times [time, ...]")]
    NotList { key: String },
    #[error("{key:?} entry {index}: {why}")]
    Entry { key: String, index: usize, why: String },
    #[error("{key:?} entry {index}: {source}")]
    Time { key: String, index: usize, source: TimeError },
    #[error("{key:?} mixes windows and single times; use one form per file")]
    Mixed { key: String },
}

/// Reads a labels file (either NAB form, chosen per file key).
pub fn parse_labels(json: &str) -> Result<Labels, LabelsError> {
    let Value::Object(map) = serde_json::from_str::<Value>(json)? else {
        return Err(LabelsError::NotObject);
    };
    let mut labels = Labels::new();
    for (key, entries) in map {
        let Value::Array(entries) = entries else {
            return Err(LabelsError::NotList { key });
        };
        let time = |index: usize, v: &Value| -> Result<i64, LabelsError> {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(LabelsError::Entry {
                        key: key.clone(),
                        index,
                        why: format!("expected a time, got {other}"),
                    });
                }
            };
            parse_time_ms(&text).map_err(|source| LabelsError::Time { key: key.clone(), index, source })
        };
        let windows = entries.iter().filter(|e| e.is_array()).count();
        let file = if windows == 0 {
            FileLabels::Points(entries.iter().enumerate().map(|(i, v)| time(i, v)).collect::<Result<_, _>>()?)
        } else if windows == entries.len() {
            let mut list = Vec::with_capacity(entries.len());
            for (index, entry) in entries.iter().enumerate() {
                let pair = entry.as_array().map(Vec::as_slice).unwrap_or_default();
                let [start, end] = pair else {
                    let why = format!("a window is [start, end], got {} values", pair.len());
                    return Err(LabelsError::Entry { key: key.clone(), index, why });
                };
                let (start, end) = (time(index, start)?, time(index, end)?);
                if end < start {
                    let why = "the window ends before it starts".to_string();
                    return Err(LabelsError::Entry { key: key.clone(), index, why });
                }
                list.push((start, end));
            }
            FileLabels::Windows(list)
        } else {
            return Err(LabelsError::Mixed { key });
        };
        labels.insert(key, file);
    }
    Ok(labels)
}

/// One incident of a file, as indices of its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First point inside the window.
    pub first: usize,
    /// Last point inside the window (included).
    pub last: usize,
    /// The point detection delay is measured from: the labelled time for windows built around
    /// labels, the window's first point for labelled windows.
    pub onset: usize,
}

impl Window {
    /// Points in the window.
    pub fn len(&self) -> usize {
        self.last - self.first + 1
    }

    /// Never true: a window holds at least one point.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a labelled window is not scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// No point of the file lies inside it.
    NoPoint,
    /// It starts inside the probationary period.
    Probation,
}

/// A labelled window that is not scored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedWindow {
    /// Start and end as labelled (for a single label time, the time itself twice), unix ms.
    pub start_ms: i64,
    pub end_ms: i64,
    pub reason: DropReason,
}

/// The windows of one file: the incidents it is scored on, in time order and disjoint, and the
/// labels that were dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileWindows {
    pub windows: Vec<Window>,
    pub dropped: Vec<DroppedWindow>,
}

/// The points of the probationary period of a file of `points` points: NAB's
/// `min(⌊fraction·points⌋, fraction·5000)` (`nab/util.py`, `getProbationPeriod`; 15% by default,
/// at most 750 points).
pub fn probation_points(points: usize, fraction: f64) -> usize {
    let n = (fraction * points as f64).floor().min((fraction * 5000.0).floor());
    if n.is_finite() && n > 0.0 { n as usize } else { 0 }
}

/// The windows of a file whose point times are `times` (never decreasing), from its labels.
/// `window_fraction` is NAB's window size for label times ([`NAB_WINDOW_FRACTION`]);
/// `probation` the number of leading points not scored.
pub fn file_windows(times: &[i64], labels: &FileLabels, window_fraction: f64, probation: usize) -> FileWindows {
    let n = times.len();
    let mut out = FileWindows::default();
    let mut windows = Vec::new();
    match labels {
        FileLabels::Windows(list) => {
            for &(start_ms, end_ms) in list {
                let first = times.partition_point(|&t| t < start_ms);
                let end = times.partition_point(|&t| t <= end_ms);
                if first >= end {
                    out.dropped.push(DroppedWindow { start_ms, end_ms, reason: DropReason::NoPoint });
                } else {
                    windows.push((Window { first, last: end - 1, onset: first }, start_ms, end_ms));
                }
            }
        }
        FileLabels::Points(list) => {
            let length =
                if list.is_empty() { 0 } else { (window_fraction * n as f64 / list.len() as f64).floor() as usize };
            let half = length / 2;
            for &at in list {
                let onset = times.partition_point(|&t| t < at);
                if onset == n {
                    out.dropped.push(DroppedWindow { start_ms: at, end_ms: at, reason: DropReason::NoPoint });
                } else {
                    let window = Window { first: onset.saturating_sub(half), last: (onset + half).min(n - 1), onset };
                    windows.push((window, at, at));
                }
            }
        }
    }
    windows.sort_by_key(|(w, ..)| (w.first, w.last));
    for (window, start_ms, end_ms) in windows {
        if window.first < probation {
            out.dropped.push(DroppedWindow { start_ms, end_ms, reason: DropReason::Probation });
            continue;
        }
        match out.windows.last_mut() {
            Some(previous) if window.first <= previous.last => {
                previous.last = previous.last.max(window.last);
                previous.onset = previous.onset.min(window.onset);
            }
            _ => out.windows.push(window),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_nab_forms() {
        let labels = parse_labels(
            r#"{
                "a/x.csv": [["2014-04-10 07:15:00.000000", "2014-04-10 08:15:00.000000"]],
                "b.csv": ["2014-04-10T07:15:00Z", 1397114400],
                "empty.csv": []
            }"#,
        )
        .unwrap();
        assert_eq!(labels["a/x.csv"], FileLabels::Windows(vec![(1_397_114_100_000, 1_397_117_700_000)]));
        assert_eq!(labels["b.csv"], FileLabels::Points(vec![1_397_114_100_000, 1_397_114_400_000]));
        assert_eq!(labels["empty.csv"], FileLabels::Points(vec![]));
    }

    #[test]
    fn bad_labels_say_which_key_and_entry() {
        let msg = |json: &str| parse_labels(json).unwrap_err().to_string();
        assert_eq!(msg("[]"), "expected an object mapping each file (path relative to the data folder) to its labels");
        assert!(msg(r#"{"a.csv": [["1"]]}"#).starts_with("\"a.csv\" entry 0: a window is [start, end], got 1 values"));
        assert!(
            msg(r#"{"a.csv": [["1", "2"], ["5", "4"]]}"#)
                .contains("\"a.csv\" entry 1: the window ends before it starts")
        );
        assert!(msg(r#"{"a.csv": ["1", "soon"]}"#).starts_with("\"a.csv\" entry 1: cannot read \"soon\" as a time"));
        assert!(msg(r#"{"a.csv": ["1", ["1", "2"]]}"#).contains("mixes windows and single times"));
        assert!(msg(r#"{"a.csv": "1"}"#).starts_with("\"a.csv\": expected a list"));
        assert!(msg(r#"{"a.csv": [true]}"#).contains("expected a time, got true"));
        assert!(msg("{").starts_with("not JSON"));
    }

    #[test]
    fn probation_is_nab_s() {
        assert_eq!(probation_points(1000, 0.15), 150);
        assert_eq!(probation_points(4032, 0.15), 604);
        assert_eq!(probation_points(22_695, 0.15), 750);
        assert_eq!(probation_points(10, 0.0), 0);
    }

    /// Point i at time 1000·i.
    fn times(n: usize) -> Vec<i64> {
        (0..n as i64).map(|i| i * 1000).collect()
    }

    #[test]
    fn windows_cover_the_points_inside() {
        let w = file_windows(&times(100), &FileLabels::Windows(vec![(20_500, 30_000), (95_000, 200_000)]), 0.1, 10);
        assert_eq!(
            w.windows,
            vec![Window { first: 21, last: 30, onset: 21 }, Window { first: 95, last: 99, onset: 95 }]
        );
        assert!(w.dropped.is_empty());
    }

    #[test]
    fn label_points_become_centred_windows() {
        // 1000 points, 2 labels: 10% / 2 = 50 points, 25 on each side.
        let w = file_windows(&times(1000), &FileLabels::Points(vec![400_000, 990_500]), 0.1, 150);
        assert_eq!(
            w.windows,
            vec![Window { first: 375, last: 425, onset: 400 }, Window { first: 966, last: 999, onset: 991 }]
        );
        // One label: 100 points, 50 on each side.
        let w = file_windows(&times(1000), &FileLabels::Points(vec![400_000]), 0.1, 150);
        assert_eq!(w.windows, vec![Window { first: 350, last: 450, onset: 400 }]);
    }

    #[test]
    fn probation_drops_and_overlaps_merge() {
        let labels = FileLabels::Windows(vec![(5_000, 30_000), (50_000, 60_000), (55_000, 70_000), (200_000, 300_000)]);
        let w = file_windows(&times(100), &labels, 0.1, 15);
        assert_eq!(w.windows, vec![Window { first: 50, last: 70, onset: 50 }]);
        assert_eq!(
            w.dropped,
            vec![
                DroppedWindow { start_ms: 200_000, end_ms: 300_000, reason: DropReason::NoPoint },
                DroppedWindow { start_ms: 5_000, end_ms: 30_000, reason: DropReason::Probation },
            ]
        );
    }
}
