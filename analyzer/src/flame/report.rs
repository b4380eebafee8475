//! How a CPU comparison is shown to people and scripts: the table and sentences of
//! `slo-gate flame diff`, and its `--json` lines. Whether the profiles came from files or from
//! the collector's diff API, they are written here, as the gate's and the leak reports are
//! written in their own `report` modules; the caller prints the text.

use std::fmt::Write;

use serde::Serialize;

use super::regression::{ChangeKind, Regression, Share, ShareChange};

/// What a comparison rested on: `(profiles, runs)` per side, its caveats, how it normalized and
/// what it found, in sentences.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DiffSummary {
    /// Baseline profiles and runs.
    pub baseline: (usize, usize),
    /// Candidate profiles and runs.
    pub candidate: (usize, usize),
    /// Caveats, each said once.
    pub warnings: Vec<String>,
    /// `share`, `rate`, `per_unit` (`Normalization::name`).
    pub normalization: String,
    /// What a percentage is of: `share`, `CPU per second`, `CPU per request`.
    pub measure: String,
    /// The sentences of `explain::sentences`.
    pub explanation: Vec<String>,
}

/// One line of `flame diff --json`: the judged share's change up front, both shares in full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegressionLine<'a> {
    pub function: &'a str,
    pub kind: ChangeKind,
    /// How the comparison normalized (`share`, `rate`, `per_unit`).
    pub normalization: &'a str,
    /// The share the regression was judged on.
    pub metric: Share,
    pub change_pp: f64,
    pub change_pct: Option<f64>,
    /// Holm-corrected confidence that the judged share grew.
    pub confidence: f64,
    #[serde(rename = "self")]
    pub self_share: &'a ShareChange,
    #[serde(rename = "total")]
    pub total_share: &'a ShareChange,
    pub hottest_path: &'a [String],
}

impl<'a> RegressionLine<'a> {
    /// The line of `r`, judged on `metric`.
    pub fn new(r: &'a Regression, metric: Share, normalization: &'a str) -> RegressionLine<'a> {
        let judged = r.share(metric);
        RegressionLine {
            function: &r.function,
            kind: r.kind,
            normalization,
            metric,
            change_pp: judged.change_pp,
            change_pct: judged.change_pct,
            confidence: r.confidence,
            self_share: &r.self_share,
            total_share: &r.total_share,
            hottest_path: &r.hottest_path,
        }
    }
}

/// The `--json` lines of `found`: the regressions alone (caveats go where a person sees them).
pub fn json_lines<'a>(found: &'a [Regression], metric: Share, normalization: &'a str) -> Vec<RegressionLine<'a>> {
    found.iter().map(|r| RegressionLine::new(r, metric, normalization)).collect()
}

/// The text report: what was compared, the caveats, the table of grown functions with their
/// hottest paths, and the sentences.
pub fn text(found: &[Regression], metric: Share, summary: &DiffSummary) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut out = String::new();
    let ((bp, br), (cp, cr)) = (summary.baseline, summary.candidate);
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "compared {} from {} with {} from {}",
        plural(bp, "baseline profile"),
        plural(br, "run"),
        plural(cp, "candidate profile"),
        plural(cr, "run")
    );
    for w in &summary.warnings {
        let _ = writeln!(out, "note: {w}");
    }
    table(&mut out, found, metric, &summary.measure);
    for line in &summary.explanation {
        let _ = writeln!(out, "- {line}");
    }
    out
}

/// The table of grown functions, ranked, each with its hottest path under it.
pub fn table(out: &mut String, found: &[Regression], metric: Share, measure: &str) {
    if found.is_empty() {
        let _ = writeln!(out, "no function's {metric} {measure} grew significantly");
        return;
    }
    let _ = writeln!(
        out,
        "{:>4}  {:>8} {:>8} {:>9} {:>10}  {:<9} function / hottest path",
        "rank", "before", "after", "change", "confidence", "kind"
    );
    for (i, r) in found.iter().enumerate() {
        let s = r.share(metric);
        let _ = writeln!(
            out,
            "{:>4}  {:>7.1}% {:>7.1}% {:>+6.1} pp {:>9.1}%  {:<9} {} ({metric})",
            i + 1,
            s.baseline_pct,
            s.candidate_pct,
            s.change_pp,
            r.confidence * 100.0,
            r.kind.name(),
            r.function
        );
        let _ = writeln!(out, "{:>50}{}", "", r.hottest_path.join(" → "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(baseline_pct: f64, candidate_pct: f64, degrees_of_freedom: f64) -> ShareChange {
        ShareChange {
            baseline_pct,
            candidate_pct,
            change_pp: candidate_pct - baseline_pct,
            change_pct: Some((candidate_pct / baseline_pct - 1.0) * 100.0),
            z: 4.0,
            degrees_of_freedom,
            noise_inflation: 1.0,
            confidence: 0.999,
        }
    }

    fn regression() -> Regression {
        Regression {
            function: "main.encode".into(),
            self_share: share(20.0, 30.0, f64::INFINITY),
            total_share: share(40.0, 45.0, 6.0),
            hottest_path: vec!["main.main".into(), "main.encode".into()],
            confidence: 0.998,
            kind: ChangeKind::Slower,
        }
    }

    #[test]
    fn regressions_round_trip_through_json_with_infinite_degrees_of_freedom() {
        let r = regression();
        let text = serde_json::to_string(&r).expect("encode");
        assert!(text.contains(r#""degrees_of_freedom":null"#) && text.contains(r#""kind":"slower""#), "{text}");
        let back: Regression = serde_json::from_str(&text).expect("decode");
        assert_eq!(back, r);
    }

    #[test]
    fn json_lines_lead_with_the_judged_share() {
        let found = [regression()];
        let lines = serde_json::to_value(json_lines(&found, Share::Cumulative, "share")).expect("encode");
        assert_eq!(lines[0]["metric"], "total");
        assert_eq!(lines[0]["change_pp"], 5.0);
        assert_eq!(lines[0]["self"]["baseline_pct"], 20.0);
        assert_eq!(lines[0]["total"]["degrees_of_freedom"], 6.0);
    }

    #[test]
    fn text_names_the_measure_and_every_caveat() {
        let summary = DiffSummary {
            baseline: (2, 1),
            candidate: (1, 1),
            warnings: vec!["one run per side".into()],
            normalization: "share".into(),
            measure: "share".into(),
            explanation: vec!["main.encode got slower".into()],
        };
        let text = text(&[regression()], Share::Flat, &summary);
        assert!(
            text.starts_with("compared 2 baseline profiles from 1 run with 1 candidate profile from 1 run\n"),
            "{text}"
        );
        assert!(text.contains("note: one run per side\n") && text.contains("- main.encode got slower\n"), "{text}");
        assert!(text.contains("+10.0 pp") && text.contains("main.encode (self)"), "{text}");
        assert_eq!(
            super::text(&[], Share::Cumulative, &summary).lines().nth(2),
            Some("no function's total share grew significantly")
        );
    }
}
