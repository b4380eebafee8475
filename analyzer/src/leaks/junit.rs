//! The leak report as JUnit XML, which every CI shows: one test suite (per process, for the
//! reports of several processes), one test case per cluster whose growth was judged. A leaking cluster is a `<failure>` whose message is the one-line
//! summary (blocking frame, root-cause tag, growth rate) and whose body is the count series and
//! the representative stack; a cluster that does not leak passes. A report that could not judge
//! growth (one snapshot, none) has no judged cluster: it gets one `<skipped>` case saying why, so
//! the CI shows that nothing was checked rather than that everything passed.
//!
//! Test-case names are the cluster keys (`main.f [chan receive]`): stable across runs, so a CI
//! can follow one blocking site from build to build. Output is deterministic: findings in rank
//! order, then the other clusters in the report's order; no timestamps.

use std::fmt::Write;

use super::{ClusterSeries, LeakReport};
use crate::xml::escape;

const SUITE: &str = "goroutine leaks";

/// Renders `report` as a JUnit XML document.
pub fn junit(report: &LeakReport) -> String {
    document(&[suite(report, None)])
}

/// Renders the reports of several processes (runs, as `(run id, report)`) as one JUnit XML
/// document with one test suite per process, named after it (`goroutine leaks (pod-a)`).
pub fn junit_runs(reports: &[(String, LeakReport)]) -> String {
    document(&reports.iter().map(|(run, report)| suite(report, Some(run))).collect::<Vec<_>>())
}

/// One `<testsuite>` element and its counts.
struct Suite {
    tests: usize,
    failures: usize,
    skipped: usize,
    xml: String,
}

impl Suite {
    fn counts(&self) -> String {
        counts(self.tests, self.failures, self.skipped)
    }
}

fn counts(tests: usize, failures: usize, skipped: usize) -> String {
    format!("tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\"")
}

fn document(suites: &[Suite]) -> String {
    let sum = |f: fn(&Suite) -> usize| suites.iter().map(f).sum::<usize>();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let totals = counts(sum(|s| s.tests), sum(|s| s.failures), sum(|s| s.skipped));
    let _ = writeln!(out, "<testsuites name=\"slo-gate leaks\" {totals}>");
    for suite in suites {
        out.push_str(&suite.xml);
    }
    out.push_str("</testsuites>\n");
    out
}

/// The test suite of one process's `report`; `run` names the process when there are several.
fn suite(report: &LeakReport, run: Option<&str>) -> Suite {
    let judged: Vec<&ClusterSeries> = if report.judged {
        let leaking = report.findings.iter();
        let passing = report.clusters.iter().filter(|c| !c.is_leak);
        leaking.chain(passing).filter(|c| c.trend.is_some()).collect()
    } else {
        Vec::new()
    };
    let skipped = usize::from(judged.is_empty());
    let tests = judged.len() + skipped;
    let failures = judged.iter().filter(|c| c.is_leak).count();
    let mut suite = Suite { tests, failures, skipped, xml: String::new() };
    let counts = suite.counts();
    let out = &mut suite.xml;

    // A test name (test-time use) names the suite; every source label is a property.
    let class = match run {
        Some(run) => format!("{SUITE} ({run})"),
        None => SUITE.to_string(),
    };
    let name = match report.source.iter().find(|(k, _)| k == "test") {
        Some((_, test)) => format!("{class}: {test}"),
        None => class.clone(),
    };
    let class = escape(&class);
    let _ = writeln!(out, "  <testsuite name=\"{}\" {counts}>", escape(&name));
    if !report.source.is_empty() {
        out.push_str("    <properties>\n");
        for (k, v) in &report.source {
            let _ = writeln!(out, "      <property name=\"{}\" value=\"{}\"/>", escape(k), escape(v));
        }
        out.push_str("    </properties>\n");
    }
    for c in &judged {
        let _ = writeln!(out, "    <testcase classname=\"{class}\" name=\"{}\">", escape(&c.key.to_string()));
        if c.is_leak {
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                escape(&summary(c)),
                escape(c.root_cause.as_str()),
                escape(&details(report, c))
            );
        } else {
            let _ = writeln!(out, "      <system-out>{}</system-out>", escape(&series_line(report, c)));
        }
        out.push_str("    </testcase>\n");
    }
    if judged.is_empty() {
        let _ = writeln!(out, "    <testcase classname=\"{class}\" name=\"growth\">");
        let _ = writeln!(out, "      <skipped message=\"{}\"/>", escape(&skip_reason(report)));
        out.push_str("    </testcase>\n");
    }
    let mut notes = vec![format!(
        "{} snapshot(s) over {:.0} s; {} cluster(s); goroutines {}",
        report.times_s.len(),
        report.span_seconds(),
        report.clusters.len(),
        join(&report.totals)
    )];
    notes.extend(report.notes.iter().map(|n| format!("note: {n}")));
    let _ = writeln!(out, "    <system-out>{}</system-out>", escape(&notes.join("\n")));
    out.push_str("  </testsuite>\n");
    suite
}

/// `main.f [chan receive] unclosed_channel_receive: +12.3 goroutines/min`.
fn summary(c: &ClusterSeries) -> String {
    let rate = c.trend.map_or(0.0, |t| t.growth_per_minute);
    format!("{} {}: {rate:+.1} goroutines/min", c.key, c.root_cause)
}

/// The failure body: the series, the growth test and the representative stack.
fn details(report: &LeakReport, c: &ClusterSeries) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", series_line(report, c));
    if let Some(t) = c.trend {
        let _ = writeln!(
            out,
            "growth: {:.1}/min for {:.0} s (Mann-Kendall S = {}, confidence {:.4})",
            t.growth_per_minute, t.growing_for_seconds, t.s, t.confidence
        );
    }
    let _ = writeln!(out, "created by: {}", c.created_by.as_deref().unwrap_or("unknown"));
    let _ = writeln!(
        out,
        "distinct stacks: {}; representative stack ({} goroutines):",
        c.distinct_stacks, c.representative.count
    );
    for frame in c.representative.stack.iter() {
        if frame.file.is_empty() {
            let _ = writeln!(out, "  {}", frame.function);
        } else {
            let _ = writeln!(out, "  {} ({}:{})", frame.function, frame.file, frame.line);
        }
    }
    out
}

/// `counts 0 4 13 at t = 0 5 10 s`.
fn series_line(report: &LeakReport, c: &ClusterSeries) -> String {
    let times: Vec<String> = report.times_s.iter().map(|t| format!("{t:.0}")).collect();
    let rate = c.trend.map_or_else(|| "-".to_string(), |t| format!("{:+.1}/min", t.growth_per_minute));
    format!("counts {} at t = {} s; growth {rate}", join(&c.counts), times.join(" "))
}

fn skip_reason(report: &LeakReport) -> String {
    let why = report
        .notes
        .iter()
        .find(|n| n.contains("cannot be judged"))
        .cloned()
        .unwrap_or_else(|| "growth cannot be judged: no cluster has a count series".to_string());
    format!("{why} ({} snapshot(s), {} cluster(s) seen)", report.times_s.len(), report.clusters.len())
}

fn join(values: &[u64]) -> String {
    values.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use quick_xml::events::Event;

    use super::*;
    use crate::leaks::{GoroutineGroup, LeakOptions, Snapshot, StackFrame, detect};

    fn frame(function: &str) -> StackFrame {
        StackFrame { function: function.to_string(), file: "/app/main.go".to_string(), line: 7 }
    }

    /// A snapshot every 60 s; `leak` grows by 10 a minute, `flat` stays at 5.
    fn snapshots(n: u32, leak: &[StackFrame], flat: &[StackFrame]) -> Vec<Snapshot> {
        (0..n)
            .map(|i| Snapshot {
                time_unix_nano: i64::from(i) * 60_000_000_000,
                goroutines: vec![
                    GoroutineGroup { count: 1 + 10 * u64::from(i), stack: leak.to_vec(), ..Default::default() },
                    GoroutineGroup { count: 5, stack: flat.to_vec(), ..Default::default() },
                ],
            })
            .collect()
    }

    fn leak_stack() -> Vec<StackFrame> {
        vec![
            frame("runtime.gopark"),
            frame("runtime.chanrecv"),
            frame("runtime.chanrecv2"),
            frame("main.(*T[...]).f"),
            frame("main.run[go.shape.int]"),
            frame("main.\"quoted\"&'apos'<tag>"),
        ]
    }

    fn flat_stack() -> Vec<StackFrame> {
        vec![frame("runtime.gopark"), frame("runtime.selectgo"), frame("main.(*Pool).worker")]
    }

    /// What a CI reads from the document: (test-case name, outcome, message, body) per case,
    /// with every entity decoded. Panics when the XML is not well-formed.
    fn parse(xml: &str) -> Vec<(String, &'static str, String, String)> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut cases = Vec::new();
        let mut depth = 0usize;
        let mut in_failure = false;
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) | Event::Empty(e) if matches!(e.name().as_ref(), b"testcase") => {
                    let name = attr(&e, b"name");
                    cases.push((name, "pass", String::new(), String::new()));
                    depth += 1;
                }
                Event::Start(e) if e.name().as_ref() == b"failure" => {
                    let case = cases.last_mut().expect("failure inside a testcase");
                    case.1 = "failure";
                    case.2 = attr(&e, b"message");
                    in_failure = true;
                }
                Event::Empty(e) if e.name().as_ref() == b"skipped" => {
                    let case = cases.last_mut().expect("skipped inside a testcase");
                    case.1 = "skipped";
                    case.2 = attr(&e, b"message");
                }
                Event::Text(t) if in_failure => {
                    let text = t.decode().expect("utf-8");
                    let body = quick_xml::escape::unescape(&text).expect("valid entities").into_owned();
                    cases.last_mut().expect("inside a testcase").3.push_str(&body);
                }
                Event::GeneralRef(r) if in_failure => {
                    let name = r.decode().expect("utf-8");
                    let body = quick_xml::escape::unescape(&format!("&{name};")).expect("known entity").into_owned();
                    cases.last_mut().expect("inside a testcase").3.push_str(&body);
                }
                Event::End(e) if e.name().as_ref() == b"failure" => in_failure = false,
                Event::End(e) if e.name().as_ref() == b"testcase" => depth -= 1,
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(depth, 0);
        cases
    }

    fn attr(e: &quick_xml::events::BytesStart<'_>, key: &[u8]) -> String {
        let a = e.try_get_attribute(key).expect("attribute parses").expect("attribute present");
        a.normalized_value(quick_xml::XmlVersion::Explicit1_0).expect("valid entities").into_owned()
    }

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(
            escape("main.(*T[...]).f <&> \"x\" 'y'\u{1}\n"),
            "main.(*T[...]).f &lt;&amp;&gt; &quot;x&quot; &apos;y&apos;&#10;"
        );
    }

    #[test]
    fn a_leaking_cluster_fails_and_a_flat_one_passes() {
        let report = detect(&snapshots(10, &leak_stack(), &flat_stack()), &LeakOptions::default());
        assert_eq!(report.findings.len(), 1);
        let xml = junit(&report);
        let cases = parse(&xml);
        assert_eq!(cases.len(), 2, "{xml}");
        let (name, outcome, message, body) = &cases[0];
        assert_eq!(name, "main.(*T).f [chan receive]");
        assert_eq!(*outcome, "failure");
        assert_eq!(message, "main.(*T).f [chan receive] unclosed_channel_receive: +10.0 goroutines/min");
        assert!(body.contains("counts 1 11 21 31 41 51 61 71 81 91 at t = 0 60 120"), "{body}");
        // The raw frames, with every character that needs escaping, come back unchanged.
        assert!(body.contains("  main.(*T[...]).f (/app/main.go:7)\n"), "{body}");
        assert!(body.contains("  main.\"quoted\"&'apos'<tag> (/app/main.go:7)\n"), "{body}");
        assert_eq!(cases[1].0, "main.(*Pool).worker [select]");
        assert_eq!(cases[1].1, "pass");
        assert!(xml.contains("tests=\"2\" failures=\"1\" errors=\"0\" skipped=\"0\""), "{xml}");
        assert!(!xml.contains("<tag>"), "{xml}");
    }

    #[test]
    fn no_leak_means_every_judged_cluster_passes() {
        let flat: Vec<Snapshot> = snapshots(10, &leak_stack(), &flat_stack())
            .into_iter()
            .map(|mut s| {
                s.goroutines[0].count = 3;
                s
            })
            .collect();
        let report = detect(&flat, &LeakOptions::default());
        let cases = parse(&junit(&report));
        assert_eq!(cases.len(), 2);
        assert!(cases.iter().all(|c| c.1 == "pass"), "{cases:?}");
    }

    #[test]
    fn one_snapshot_is_skipped_with_the_reason() {
        let report = detect(&snapshots(1, &leak_stack(), &flat_stack()), &LeakOptions::default());
        assert!(!report.judged);
        let xml = junit(&report);
        let cases = parse(&xml);
        assert_eq!(cases.len(), 1, "{xml}");
        assert_eq!(cases[0].0, "growth");
        assert_eq!(cases[0].1, "skipped");
        assert_eq!(cases[0].2, "growth cannot be judged from one snapshot (1 snapshot(s), 2 cluster(s) seen)");
        assert!(xml.contains("tests=\"1\" failures=\"0\" errors=\"0\" skipped=\"1\""), "{xml}");
    }

    #[test]
    fn no_snapshot_is_skipped_too() {
        let cases = parse(&junit(&detect(&[], &LeakOptions::default())));
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].1, "skipped");
        assert!(cases[0].2.starts_with("no snapshots: growth cannot be judged"), "{cases:?}");
    }

    #[test]
    fn several_processes_are_one_suite_each() {
        let leaking = detect(&snapshots(10, &leak_stack(), &flat_stack()), &LeakOptions::default());
        let mut single = detect(&snapshots(1, &leak_stack(), &flat_stack()), &LeakOptions::default());
        single.source = vec![("run".to_string(), "pod-b".to_string())];
        let xml = junit_runs(&[("pod-a".to_string(), leaking.clone()), ("pod-b".to_string(), single)]);
        let cases = parse(&xml);
        let outcomes: Vec<&str> = cases.iter().map(|c| c.1).collect();
        assert_eq!(outcomes, ["failure", "pass", "skipped"], "{xml}");
        assert!(
            xml.contains("<testsuites name=\"slo-gate leaks\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\">"),
            "{xml}"
        );
        assert!(xml.contains("<testsuite name=\"goroutine leaks (pod-a)\" tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("<testsuite name=\"goroutine leaks (pod-b)\" tests=\"1\" failures=\"0\""), "{xml}");
        assert!(xml.contains("<testcase classname=\"goroutine leaks (pod-b)\" name=\"growth\">"), "{xml}");
        assert!(xml.contains("<property name=\"run\" value=\"pod-b\"/>"), "{xml}");
        // One process alone is today's document, whichever function writes it.
        let one = junit_runs(&[("pod-a".to_string(), leaking.clone())]);
        assert_eq!(one.replace(" (pod-a)", ""), junit(&leaking));
    }

    #[test]
    fn output_is_deterministic() {
        let input = snapshots(10, &leak_stack(), &flat_stack());
        let a = junit(&detect(&input, &LeakOptions::default()));
        let mut reversed = input.clone();
        reversed.reverse();
        let b = junit(&detect(&reversed, &LeakOptions::default()));
        // The reversed input adds a note about the order; everything else is identical.
        let strip =
            |x: &str| x.lines().filter(|l| !l.contains("<system-out>10 snapshot")).collect::<Vec<_>>().join("\n");
        assert_eq!(strip(&a), strip(&b));
        assert_eq!(a, junit(&detect(&input, &LeakOptions::default())));
    }
}
