//! Anomaly detection over files, and how well a detector does against labelled incidents: what
//! `slo-gate anomalies score` and `anomalies eval` compute, with no I/O (the command line reads
//! the lines and files and hands them here).
//!
//! - [`time`]: the time forms series and labels files use, as unix milliseconds;
//! - [`series`]: `timestamp,value` CSV rows one line at a time, with every bad line reported by
//!   its number (missing columns, unreadable times or values, unsorted or duplicate times), and
//!   the scored output rows;
//! - [`labels`]: labels files in the Numenta Anomaly Benchmark's two forms and the incident
//!   windows built from them;
//! - [`metrics`]: incident-level precision, recall, F1 and delay, and NAB's window score (Lavin &
//!   Ahmad 2015, "Evaluating Real-time Anomaly Detection Algorithms – the Numenta Anomaly
//!   Benchmark");
//! - [`report`]: a corpus evaluated file by file, as a table or JSON.
//!
//! The benchmark's conventions are followed where it has them (window construction,
//! probationary period, scoring profiles), so a score here can be set beside published NAB
//! scores; where it has none (what counts as one false alarm), the choice is documented where it
//! is made.

pub mod labels;
pub mod metrics;
pub mod report;
pub mod series;
pub mod time;

pub use labels::{
    DropReason, DroppedWindow, FileLabels, FileWindows, Labels, LabelsError, Window, file_windows, parse_labels,
    probation_points,
};
pub use metrics::{CostProfile, PROFILES, Tally, scaled_sigmoid, score_file};
pub use report::{EvalOptions, EvalReport, Evaluation, FileReport, Metrics, ScoreSource, render_text};
pub use series::{
    Disorder, MAX_LINE_BYTES, Needs, Order, Row, SCORED_HEADER, SeriesError, SeriesErrorKind, SeriesParser,
    write_scored_row,
};
pub use time::{TimeError, format_time_ms, parse_time_ms};
