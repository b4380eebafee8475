//! The plain-text leak report: deterministic (fixed number formats, sorted input), so it is
//! golden-tested and diffable between runs.

use std::fmt::Write;

use super::{ClusterSeries, LeakReport};

/// Renders `report` as text: the findings with their series and a representative stack, then a
/// one-line summary of every other cluster.
pub fn text(report: &LeakReport) -> String {
    let mut out = String::new();
    if !report.source.is_empty() {
        let labels: Vec<String> = report.source.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "source: {}", labels.join(", "));
    }
    let times: Vec<String> = report.times_s.iter().map(|t| format!("{t:.0}")).collect();
    let _ = writeln!(out, "snapshots: {} at t = {} s", report.times_s.len(), times.join(", "));
    let _ = writeln!(out, "goroutines: {}", join(&report.totals));
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    if report.findings.is_empty() {
        let _ = writeln!(out, "leaks: none");
    } else {
        let _ = writeln!(out, "leaks: {}", report.findings.len());
    }
    for group in &report.related {
        let ranks: Vec<String> = group.findings.iter().map(|i| format!("#{}", i + 1)).collect();
        let _ = writeln!(out, "related: {} (same creator: {})", ranks.join(", "), group.created_by);
    }
    for (i, f) in report.findings.iter().enumerate() {
        let _ = writeln!(out, "\n#{} {}", i + 1, f.key);
        finding(&mut out, f);
    }
    let others: Vec<&ClusterSeries> = report.clusters.iter().filter(|c| !c.is_leak).collect();
    if !others.is_empty() {
        let _ = writeln!(out, "\nnot leaking:");
        for c in others {
            let rate = c.trend.map_or_else(|| "-".to_string(), |t| format!("{:+.1}/min", t.growth_per_minute));
            let _ = writeln!(out, "  {}  counts {}  {rate}", c.key, join(&c.counts));
        }
    }
    out
}

fn finding(out: &mut String, f: &ClusterSeries) {
    let _ = writeln!(out, "  root cause: {}", f.root_cause);
    let _ = writeln!(out, "  created by: {}", f.created_by.as_deref().unwrap_or("unknown"));
    let _ = writeln!(out, "  counts: {}", join(&f.counts));
    if let Some(t) = f.trend {
        let _ = writeln!(
            out,
            "  growth: {:.1}/min for {:.0} s (Mann-Kendall S = {}, confidence {:.4})",
            t.growth_per_minute, t.growing_for_seconds, t.s, t.confidence
        );
    }
    let _ = writeln!(out, "  distinct stacks: {}", f.distinct_stacks);
    let _ = writeln!(out, "  stack:");
    for frame in f.representative.stack.iter() {
        let _ = writeln!(out, "    {} ({}:{})", frame.function, frame.file, frame.line);
    }
}

fn join(values: &[u64]) -> String {
    values.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
}

/// `report` as JSON: the findings (leaking clusters, fastest growth first) and every cluster with
/// its count series (for a dashboard: one series per cluster over `times_s`), plus the totals and
/// the notes. Field names are stable; `growth_per_minute` and its kin are `null` for a cluster
/// whose growth could not be judged.
pub fn json(report: &LeakReport) -> serde_json::Value {
    use serde_json::json;
    let series = |c: &ClusterSeries| {
        json!({
            "cluster": c.key.to_string(),
            "blocking_function": c.key.blocking_function,
            "blocking_location": c.key.blocking_location.as_ref().map(|(f, l)| format!("{f}:{l}")),
            "wait_reason": c.key.wait_reason.to_string(),
            "root_cause": c.root_cause.to_string(),
            "created_by": c.created_by,
            "counts": c.counts,
            "leak": c.is_leak,
            "growth_per_minute": c.trend.as_ref().map(|t| t.growth_per_minute),
            "growing_for_seconds": c.trend.as_ref().map(|t| t.growing_for_seconds),
            "confidence": c.trend.as_ref().map(|t| t.confidence),
            "distinct_stacks": c.distinct_stacks,
            "representative_stack": c.representative.stack.iter().map(|f| {
                if f.file.is_empty() { f.function.clone() } else { format!("{} ({}:{})", f.function, f.file, f.line) }
            }).collect::<Vec<_>>(),
        })
    };
    json!({
        "source": report.source.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect::<serde_json::Map<_, _>>(),
        "judged": report.judged,
        "times_s": report.times_s,
        "totals": report.totals,
        "runtime_owned": report.runtime_owned,
        "findings": report.findings.iter().map(series).collect::<Vec<_>>(),
        "related": report.related.iter().map(|r| json!({ "created_by": r.created_by, "findings": r.findings })).collect::<Vec<_>>(),
        "clusters": report.clusters.iter().map(series).collect::<Vec<_>>(),
        "notes": report.notes,
    })
}
