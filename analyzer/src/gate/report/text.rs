//! The table a person reads in a CI log.

use super::{HEADER, outcome_line, row, score_text, title, versions};
use crate::gate::GateReport;

/// The report as plain text: a header, one row per objective, the reasons, the score and the
/// outcome line last.
pub fn text(report: &GateReport) -> String {
    let mut out = format!("slo-gate check: {}\n{}\n\n", title(report), versions(report));
    let rows: Vec<[String; 7]> = report.objectives.iter().map(|o| row(o).cells).collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for cells in &rows {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> =
            cells.iter().zip(widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count()))).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    out.push_str(&line(&HEADER.map(String::from)));
    for cells in &rows {
        out.push_str(&line(cells));
    }
    if !report.reasons.is_empty() {
        out.push_str("\nWhy:\n");
        for reason in &report.reasons {
            out.push_str(&format!("  - {reason}\n"));
        }
    }
    out.push('\n');
    if let Some(score) = report.score {
        out.push_str(&format!("Score: {}\n", score_text(score)));
    }
    out.push_str(&outcome_line(report));
    out.push('\n');
    out
}
