//! Markdown for a pull-request comment or `$GITHUB_STEP_SUMMARY`: the outcome as the heading,
//! the table, the reasons, and each objective's findings in a collapsed section.

use super::{HEADER, outcome_line, row, score_text, title, versions};
use crate::gate::GateReport;

/// The report as Markdown.
pub fn markdown(report: &GateReport) -> String {
    let mut out = format!("## slo-gate: {}: {}\n\n", cell(&title(report)), outcome_line(report));
    out.push_str(&cell(&versions(report)));
    if let Some(score) = report.score {
        out.push_str(&format!(", score {}", score_text(score)));
    }
    out.push_str(".\n\n");
    let header: Vec<String> = HEADER.iter().map(|h| capitalise(h)).collect();
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(HEADER.len())));
    for o in &report.objectives {
        let cells: Vec<String> = row(o).cells.iter().map(|c| cell(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    if !report.reasons.is_empty() {
        out.push_str("\n### Why\n\n");
        for reason in &report.reasons {
            out.push_str(&format!("- {}\n", inline(reason)));
        }
    }
    out.push_str("\n### Findings\n");
    for o in &report.objectives {
        out.push_str(&format!("\n<details><summary>{}: {}</summary>\n\n", inline(&o.name), super::verdict_cell(o)));
        for finding in &o.findings {
            out.push_str(&format!("- {}\n", inline(finding)));
        }
        out.push_str("\n</details>\n");
    }
    out
}

fn capitalise(header: &str) -> String {
    let lower = header.to_lowercase();
    let mut chars = lower.chars();
    chars.next().map_or(String::new(), |c| c.to_uppercase().chain(chars).collect())
}

/// Text safe inside a table cell: no pipes, no line breaks.
fn cell(text: &str) -> String {
    inline(text).replace('|', "\\|")
}

/// Text safe on one Markdown line: HTML-significant characters escaped so `<= 420ms` and
/// `{id}` routes show as written.
fn inline(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace(['\n', '\r'], " ")
}
