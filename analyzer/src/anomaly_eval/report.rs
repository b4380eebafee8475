//! The evaluation of a corpus, file by file, and its two forms: a table a person reads and JSON
//! a script reads (`slo-gate anomalies eval [--json]`).
//!
//! A file the labels do not name is evaluated as a file without incidents (its detections are
//! all false alarms) and listed, as is every label key that names no file: either is usually a
//! path typed differently in the two places, which a silent skip would hide.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::Serialize;

use super::labels::{DropReason, FileLabels, Labels, file_windows, probation_points};
use super::metrics::{Tally, score_file};
use super::time::format_time_ms;

/// Settings of an evaluation; the defaults are NAB's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalOptions {
    /// A point is a detection when its anomaly score is at least this.
    pub threshold: f64,
    /// Share of each file's first points not scored (NAB: 0.15, at most 750 points).
    pub probation_fraction: f64,
    /// Share of a file's points that the windows around label times cover together (NAB: 0.10).
    pub window_fraction: f64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { threshold: 0.5, probation_fraction: 0.15, window_fraction: super::labels::NAB_WINDOW_FRACTION }
    }
}

/// Where a file's anomaly scores came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreSource {
    /// slo-gate's detector, run over the file's values.
    Detector,
    /// The file's own `anomaly_score` column (another detector's output), used as is.
    AnomalyScoreColumn,
}

/// The evaluation of a corpus.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub options: EvalOptions,
    /// One entry per file, by key.
    pub files: Vec<FileReport>,
    /// The sums over all files (ratios of the summed counts, not means of the files' ratios).
    pub total: Metrics,
    /// Label keys that name no file of the corpus.
    pub labels_without_file: Vec<String>,
    /// Files the labels do not name (evaluated as having no incidents).
    pub files_without_labels: Vec<String>,
}

/// The evaluation of one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    /// Path relative to the corpus folder, `/`-separated: the labels' key.
    pub file: String,
    pub source: ScoreSource,
    /// Whether the labels name this file.
    pub labelled: bool,
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Labelled windows that were not scored, and why.
    pub dropped_windows: Vec<DroppedReport>,
}

/// A labelled window that was not scored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedReport {
    /// RFC 3339, UTC.
    pub start: String,
    pub end: String,
    pub reason: DropReason,
}

/// The measures of a file or of the corpus (definitions: [`super::metrics`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub points: usize,
    pub scored_points: usize,
    pub incidents: usize,
    pub detected: usize,
    pub missed: usize,
    pub false_alarms: usize,
    pub false_positive_points: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub false_alarms_per_10k_points: Option<f64>,
    pub mean_delay_points: Option<f64>,
    pub mean_delay_seconds: Option<f64>,
    pub nab: NabScores,
}

/// NAB's score under each of its profiles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NabScores {
    pub standard: NabScore,
    pub reward_low_fp_rate: NabScore,
    pub reward_low_fn_rate: NabScore,
}

/// NAB's raw score and its normalised form (0 = the null detector, 100 = perfect; absent
/// without incidents).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NabScore {
    pub raw: f64,
    pub normalized: Option<f64>,
}

impl From<&Tally> for Metrics {
    fn from(t: &Tally) -> Metrics {
        let nab = |i: usize| NabScore { raw: t.nab_raw[i], normalized: t.nab_normalized(i) };
        Metrics {
            points: t.points,
            scored_points: t.scored_points,
            incidents: t.incidents,
            detected: t.detected,
            missed: t.missed(),
            false_alarms: t.false_alarms,
            false_positive_points: t.false_positive_points,
            precision: t.precision(),
            recall: t.recall(),
            f1: t.f1(),
            false_alarms_per_10k_points: t.false_alarms_per_10k(),
            mean_delay_points: t.mean_delay_points(),
            mean_delay_seconds: t.mean_delay_seconds(),
            nab: NabScores { standard: nab(0), reward_low_fp_rate: nab(1), reward_low_fn_rate: nab(2) },
        }
    }
}

/// Evaluates a corpus one file at a time, so only one file's points are held at once.
#[derive(Debug)]
pub struct Evaluation<'a> {
    labels: &'a Labels,
    options: EvalOptions,
    files: Vec<FileReport>,
    seen: BTreeSet<String>,
    total: Tally,
}

impl<'a> Evaluation<'a> {
    pub fn new(labels: &'a Labels, options: EvalOptions) -> Evaluation<'a> {
        Evaluation { labels, options, files: Vec::new(), seen: BTreeSet::new(), total: Tally::default() }
    }

    /// The detection flags of a file's points under the threshold: a NaN score never detects.
    pub fn detections(&self, scores: &[f64]) -> Vec<bool> {
        scores.iter().map(|&s| s >= self.options.threshold).collect()
    }

    /// Adds file `key` with the times of its points (unix ms, never decreasing) and their detection
    /// flags.
    pub fn add_file(&mut self, key: &str, times: &[i64], detections: &[bool], source: ScoreSource) {
        let probation = probation_points(times.len(), self.options.probation_fraction);
        let empty = FileLabels::Points(Vec::new());
        let labels = self.labels.get(key);
        let windows = file_windows(times, labels.unwrap_or(&empty), self.options.window_fraction, probation);
        let tally = score_file(times, detections, &windows.windows, probation);
        self.total.add(&tally);
        self.seen.insert(key.to_string());
        let dropped_windows = windows
            .dropped
            .iter()
            .map(|d| DroppedReport {
                start: format_time_ms(d.start_ms),
                end: format_time_ms(d.end_ms),
                reason: d.reason,
            })
            .collect();
        self.files.push(FileReport {
            file: key.to_string(),
            source,
            labelled: labels.is_some(),
            metrics: Metrics::from(&tally),
            dropped_windows,
        });
    }

    pub fn finish(mut self) -> EvalReport {
        self.files.sort_by(|a, b| a.file.cmp(&b.file));
        let labels_without_file = self.labels.keys().filter(|k| !self.seen.contains(*k)).cloned().collect();
        let files_without_labels = self.files.iter().filter(|f| !f.labelled).map(|f| f.file.clone()).collect();
        EvalReport {
            options: self.options,
            files: self.files,
            total: Metrics::from(&self.total),
            labels_without_file,
            files_without_labels,
        }
    }
}

/// The report as a table with notes, for a terminal or a CI log.
pub fn render_text(report: &EvalReport) -> String {
    let head = [
        "file",
        "points",
        "incidents",
        "detected",
        "false alarms",
        "precision",
        "recall",
        "F1",
        "delay (points)",
        "NAB standard",
        "NAB low FP",
        "NAB low FN",
    ];
    let row = |name: &str, m: &Metrics| -> Vec<String> {
        let ratio = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        let one = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        vec![
            name.to_string(),
            m.points.to_string(),
            m.incidents.to_string(),
            m.detected.to_string(),
            m.false_alarms.to_string(),
            ratio(m.precision),
            ratio(m.recall),
            ratio(m.f1),
            one(m.mean_delay_points),
            one(m.nab.standard.normalized),
            one(m.nab.reward_low_fp_rate.normalized),
            one(m.nab.reward_low_fn_rate.normalized),
        ]
    };
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    rows.extend(report.files.iter().map(|f| row(&f.file, &f.metrics)));
    rows.push(row("TOTAL", &report.total));
    let widths: Vec<usize> =
        (0..head.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        if i == rows.len() - 1 {
            let _ = writeln!(out, "{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
        }
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| if c == 0 { format!("{cell:<w$}") } else { format!("{cell:>w$}") })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    let o = &report.options;
    let _ = writeln!(
        out,
        "\ndetection: anomaly score >= {}; first {}% of each file's points (at most {}) not scored; \
         NAB scores normalised 0 (no detections) to 100 (perfect)",
        o.threshold,
        o.probation_fraction * 100.0,
        (o.probation_fraction * 5000.0).floor()
    );
    if let Some(seconds) = report.total.mean_delay_seconds {
        let _ = writeln!(out, "mean detection delay: {seconds:.1} s");
    }
    let precomputed: Vec<&str> =
        report.files.iter().filter(|f| f.source == ScoreSource::AnomalyScoreColumn).map(|f| f.file.as_str()).collect();
    if !precomputed.is_empty() {
        let _ = writeln!(out, "scores taken from the files' anomaly_score column: {}", precomputed.join(", "));
    }
    if !report.files_without_labels.is_empty() {
        let _ = writeln!(
            out,
            "files without labels (evaluated as having no incidents): {}",
            report.files_without_labels.join(", ")
        );
    }
    if !report.labels_without_file.is_empty() {
        let _ = writeln!(out, "label keys that match no file: {}", report.labels_without_file.join(", "));
    }
    for f in &report.files {
        for d in &f.dropped_windows {
            let why = match d.reason {
                DropReason::NoPoint => "no point of the file lies in it",
                DropReason::Probation => "it starts in the probationary period",
            };
            let _ = writeln!(out, "{}: label {} .. {} not scored: {why}", f.file, d.start, d.end);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly_eval::parse_labels;

    #[test]
    fn corpus_report_lists_mismatched_keys_and_sums_counts() {
        let labels = parse_labels(r#"{"a.csv": [["100", "109"]], "typo.csv": ["5"]}"#).unwrap();
        let options = EvalOptions { probation_fraction: 0.0, ..EvalOptions::default() };
        let mut eval = Evaluation::new(&labels, options);
        let times: Vec<i64> = (0..200).map(|i| i * 1000).collect();
        let mut scores = vec![0.0; 200];
        scores[100] = 0.9;
        scores[150] = f64::NAN;
        let flags = eval.detections(&scores);
        assert_eq!(flags.iter().filter(|f| **f).count(), 1, "NaN never detects");
        eval.add_file("b.csv", &times, &flags, ScoreSource::AnomalyScoreColumn);
        eval.add_file("a.csv", &times, &flags, ScoreSource::Detector);
        let report = eval.finish();
        assert_eq!(report.files.iter().map(|f| f.file.as_str()).collect::<Vec<_>>(), ["a.csv", "b.csv"]);
        assert_eq!(report.labels_without_file, ["typo.csv"]);
        assert_eq!(report.files_without_labels, ["b.csv"]);
        assert_eq!((report.files[0].metrics.detected, report.files[1].metrics.false_alarms), (1, 1));
        assert_eq!((report.total.incidents, report.total.detected, report.total.false_alarms), (1, 1, 1));
        assert_eq!(report.total.precision, Some(0.5));
        assert_eq!(report.total.nab.standard.raw, 1.0 - 0.11);

        let text = render_text(&report);
        assert!(text.contains("files without labels (evaluated as having no incidents): b.csv"), "{text}");
        assert!(text.contains("label keys that match no file: typo.csv"), "{text}");
        let total = text.lines().find(|l| l.starts_with("TOTAL")).unwrap();
        let cells: Vec<&str> = total.split_whitespace().collect();
        assert_eq!(cells, ["TOTAL", "400", "1", "1", "1", "0.500", "1.000", "0.667", "0.0", "94.5", "89.0", "96.3"]);

        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["files"][0]["nab"]["standard"]["normalized"], 100.0);
        assert_eq!(json["files"][1]["source"], "anomaly_score_column");
        assert!(json["files"][1]["recall"].is_null());
    }

    #[test]
    fn dropped_windows_are_reported_with_their_reason() {
        let labels = parse_labels(r#"{"a.csv": [["1", "3"], ["500", "600"]]}"#).unwrap();
        let mut eval = Evaluation::new(&labels, EvalOptions::default());
        let times: Vec<i64> = (0..100).map(|i| i * 1000).collect();
        eval.add_file("a.csv", &times, &[false; 100], ScoreSource::Detector);
        let report = eval.finish();
        let reasons: Vec<DropReason> = report.files[0].dropped_windows.iter().map(|d| d.reason).collect();
        assert_eq!(reasons, [DropReason::NoPoint, DropReason::Probation]);
        assert_eq!(report.files[0].metrics.incidents, 0);
        assert!(render_text(&report).contains("a.csv: label 1970-01-01T00:00:01Z .. 1970-01-01T00:00:03Z not scored"));
    }
}
