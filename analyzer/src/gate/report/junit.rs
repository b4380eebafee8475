//! JUnit XML, which every CI shows: one test suite for the service, one test case per
//! objective. A failure (including an inconclusive objective counted as a failure) is a
//! `<failure>` with the findings; a skipped objective is `<skipped/>`; a warning passes with
//! its findings in `<system-out>`.

use super::outcome_line;
use crate::compare::Verdict;
use crate::gate::GateReport;
use crate::xml::escape;

/// The report as a JUnit XML document.
pub fn junit(report: &GateReport) -> String {
    let service = escape(&report.service);
    let tests = report.objectives.len();
    let failures = report.objectives.iter().filter(|o| o.counted_as == Verdict::Fail).count();
    // Every objective is judged: none is skipped (`skipped` stays for JUnit readers).
    let skipped = 0;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"slo-gate\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n"
    ));
    out.push_str(&format!(
        "  <testsuite name=\"slo-gate: {service}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n"
    ));
    for o in &report.objectives {
        out.push_str(&format!("    <testcase classname=\"{service}\" name=\"{}\">\n", escape(&o.name)));
        let body = escape(&o.findings.join("\n"));
        if o.counted_as == Verdict::Fail {
            let message = o
                .violations()
                .next()
                .map(str::to_string)
                .or_else(|| o.reason.clone())
                .or_else(|| o.findings.first().cloned())
                .unwrap_or_default();
            out.push_str(&format!(
                "      <failure message=\"{}\" type=\"{}\">{body}</failure>\n",
                escape(&message),
                o.verdict
            ));
        } else {
            out.push_str(&format!("      <system-out>{}: {body}</system-out>\n", o.counted_as));
        }
        out.push_str("    </testcase>\n");
    }
    let mut summary = report.reasons.clone();
    summary.push(outcome_line(report));
    out.push_str(&format!("    <system-out>{}</system-out>\n", escape(&summary.join("\n"))));
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(escape("<= 420ms & \"x\" 'y'\u{1}"), "&lt;= 420ms &amp; &quot;x&quot; &apos;y&apos;");
    }
}
