//! One leak across the processes (runs) of a build. [`super::detect`] judges one process's
//! series; counts of different processes are never added up, since each process leaks on its
//! own clock. But the same blocking site leaking in every replica is one bug, not one per
//! replica: findings of several reports are grouped by blocking function, wait reason and
//! root cause, and each group keeps every process's own rate. The gate's `goroutine_leak`
//! objective, `slo-gate leaks` over several folders and `GET /api/v1/leaks` all group here and
//! word a group the same way ([`headline`], [`line()`], [`json`]).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{LeakReport, RootCause, WaitReason, report};
use crate::compare::format::{share, trim_number};

/// One process's growth of one leak.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessGrowth {
    /// The run (process) id as the caller names it; may be empty.
    pub run: String,
    /// Theil–Sen growth, goroutines per minute.
    pub per_minute: f64,
    /// How long the cluster has been growing, seconds.
    pub seconds: f64,
    /// Goroutines in the cluster at the process's first and last snapshot.
    pub first: u64,
    pub last: u64,
    /// One-sided Mann-Kendall confidence that the count increases.
    pub confidence: f64,
}

/// A leak (blocking site) found in one or more processes.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossRunLeak {
    pub blocking_function: String,
    pub wait_reason: WaitReason,
    pub root_cause: RootCause,
    /// The processes where it leaks, in the order of the reports given.
    pub processes: Vec<ProcessGrowth>,
    /// How many processes' growth could be judged ([`LeakReport::judged`]), leaking or not.
    pub of_processes: usize,
}

impl CrossRunLeak {
    /// The mean growth of the processes where it leaks, goroutines per minute.
    pub fn per_minute_per_process(&self) -> f64 {
        self.processes.iter().map(|p| p.per_minute).sum::<f64>() / self.processes.len().max(1) as f64
    }

    /// The fastest process's growth, goroutines per minute.
    pub fn fastest(&self) -> f64 {
        self.processes.iter().map(|p| p.per_minute).fold(0.0, f64::max)
    }
}

/// Groups the findings of `reports` (one per run, as `(run id, report)`) by blocking site:
/// one [`CrossRunLeak`] per (blocking function, wait reason, root cause), with the growth of
/// each process where it leaks. Every finding with a trend counts; to judge by a stricter rule,
/// drop findings from the reports first. A leak is in `k` of the processes whose growth could be
/// judged: a run with one snapshot neither leaks nor counts. Sorted by the number of processes
/// (most first), then by the fastest process's growth, then by blocking site.
pub fn group_across_runs(reports: &[(String, LeakReport)]) -> Vec<CrossRunLeak> {
    let judged = reports.iter().filter(|(_, r)| r.judged).count();
    // Keyed by the words a report shows, so two spellings of one wait reason are one leak.
    let mut by_site: BTreeMap<(String, String, String), CrossRunLeak> = BTreeMap::new();
    for (run, report) in reports {
        for f in &report.findings {
            let Some(t) = &f.trend else { continue };
            let key = (f.key.blocking_function.clone(), f.key.wait_reason.to_string(), f.root_cause.to_string());
            let leak = by_site.entry(key).or_insert_with(|| CrossRunLeak {
                blocking_function: f.key.blocking_function.clone(),
                wait_reason: f.key.wait_reason.clone(),
                root_cause: f.root_cause,
                processes: Vec::new(),
                of_processes: judged,
            });
            leak.processes.push(ProcessGrowth {
                run: run.clone(),
                per_minute: t.growth_per_minute,
                seconds: t.growing_for_seconds,
                first: f.counts.first().copied().unwrap_or(0),
                last: f.counts.last().copied().unwrap_or(0),
                confidence: t.confidence,
            });
        }
    }
    let mut leaks: Vec<_> = by_site.into_iter().collect();
    leaks.sort_by(|(ka, a), (kb, b)| {
        b.processes.len().cmp(&a.processes.len()).then(b.fastest().total_cmp(&a.fastest())).then(ka.cmp(kb))
    });
    leaks.into_iter().map(|(_, leak)| leak).collect()
}

/// `2 of 2 processes`, `1 of 1 process`.
fn processes(k: usize, of: usize) -> String {
    format!("{k} of {of} process{}", if of == 1 { "" } else { "es" })
}

/// The sentence that opens a list of leaks: `2 goroutine leaks grow faster than 10/min for 30s,
/// each in 2 of 2 processes` (`limit` is the `10/min for 30s` part). The `each in` clause is
/// there when every leak is in every process. Nothing to say of no leak: `None`.
pub fn headline(leaks: &[CrossRunLeak], limit: &str) -> Option<String> {
    let first = leaks.first()?;
    let of = first.of_processes;
    let everywhere = leaks.iter().all(|l| l.processes.len() == of);
    let each = if everywhere { format!(", each in {}", processes(of, of)) } else { String::new() };
    Some(format!(
        "{} goroutine leak{} faster than {limit}{each}",
        leaks.len(),
        if leaks.len() == 1 { " grows" } else { "s grow" }
    ))
}

/// One leak with every process's growth: `main.f (chan receive, unclosed_channel_receive) in
/// 2 of 2 processes, about 60/min per process: pod-a: 60/min for 40 s (0 -> 40 goroutines,
/// confidence >99.9%); pod-b: ...`. A process with an empty run id is not named.
pub fn line(leak: &CrossRunLeak) -> String {
    let per_process = leak
        .processes
        .iter()
        .map(|p| {
            let run = if p.run.is_empty() { String::new() } else { format!("{}: ", p.run) };
            format!(
                "{run}{}/min for {} s ({} -> {} goroutines, confidence {})",
                trim_number((p.per_minute * 10.0).round() / 10.0),
                trim_number(p.seconds.round()),
                p.first,
                p.last,
                share(p.confidence),
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "{} ({}, {}) in {}, about {}/min per process: {per_process}",
        leak.blocking_function,
        leak.wait_reason,
        leak.root_cause,
        processes(leak.processes.len(), leak.of_processes),
        trim_number((leak.per_minute_per_process() * 10.0).round() / 10.0),
    )
}

/// `leak` as JSON: the blocking site, in how many of how many processes it leaks, the mean
/// growth per process and each process's growth (`run`, `per_minute`, `seconds`, `first`,
/// `last`, `confidence`). Field names are stable.
pub fn json(leak: &CrossRunLeak) -> serde_json::Value {
    use serde_json::json;
    json!({
        "blocking_function": leak.blocking_function,
        "wait_reason": leak.wait_reason.to_string(),
        "root_cause": leak.root_cause.to_string(),
        "processes": leak.processes.len(),
        "of_processes": leak.of_processes,
        "per_minute_per_process": leak.per_minute_per_process(),
        "runs": leak.processes.iter().map(|p| json!({
            "run": p.run,
            "per_minute": p.per_minute,
            "seconds": p.seconds,
            "first": p.first,
            "last": p.last,
            "confidence": p.confidence,
        })).collect::<Vec<_>>(),
    })
}

/// The report of several processes as text: which processes, the grouped leaks (a
/// [`headline`] and one [`line()`] per leak) or that none grew faster than
/// `min_growth_per_minute`, then each process's own report ([`report::text`]). `leaks` is
/// [`group_across_runs`] of `reports`.
pub fn text(reports: &[(String, LeakReport)], leaks: &[CrossRunLeak], min_growth_per_minute: f64) -> String {
    let mut out = String::new();
    let judged = reports.iter().filter(|(_, r)| r.judged).count();
    let names: Vec<&str> = reports.iter().map(|(run, _)| run.as_str()).collect();
    let _ = writeln!(out, "processes: {} ({})", reports.len(), names.join(", "));
    if judged < reports.len() {
        let _ = writeln!(out, "note: growth could be judged in {judged} of them");
    }
    let limit = format!("{}/min", trim_number(min_growth_per_minute));
    match headline(leaks, &limit) {
        Some(headline) => {
            let _ = writeln!(out, "{headline}");
            for leak in leaks {
                let _ = writeln!(out, "  {}", line(leak));
            }
        }
        None => {
            let _ =
                writeln!(out, "no goroutine cluster grew faster than {limit} ({} judged)", processes_judged(judged));
        }
    }
    for (run, report) in reports {
        let _ = writeln!(out, "\n== process {run} ==");
        out.push_str(&report::text(report));
    }
    out
}

/// `2 processes`, `1 process`.
fn processes_judged(n: usize) -> String {
    format!("{n} process{}", if n == 1 { "" } else { "es" })
}

/// The report of several processes as JSON, in the shape of `GET /api/v1/leaks`: `leaks` (the
/// grouped leaks), `clusters` (every process's leaking clusters), `processes` (those whose
/// growth could be judged), `findings` ([`json`] of each of `leaks`) and `runs`, each process's
/// `run` id and `report` ([`report::json`]).
pub fn report_json(reports: &[(String, LeakReport)], leaks: &[CrossRunLeak]) -> serde_json::Value {
    use serde_json::json;
    json!({
        "leaks": leaks.len(),
        "clusters": reports.iter().map(|(_, r)| r.findings.len()).sum::<usize>(),
        "processes": reports.iter().filter(|(_, r)| r.judged).count(),
        "findings": leaks.iter().map(json).collect::<Vec<_>>(),
        "runs": reports.iter().map(|(run, r)| json!({ "run": run, "report": report::json(r) })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaks::{GoroutineGroup, LeakOptions, Snapshot, StackFrame, detect};

    fn stack(function: &str, park: &str) -> Vec<StackFrame> {
        [("runtime.gopark", "proc.go"), (park, "chan.go"), (function, "main.go")]
            .into_iter()
            .map(|(f, file)| StackFrame { function: f.to_string(), file: file.to_string(), line: 7 })
            .collect()
    }

    /// A process with a snapshot every 60 s for 10 minutes; each `(function, per minute)` grows
    /// by that many goroutines a minute from 1, blocked in a channel receive.
    fn process(leaks: &[(&str, u64)]) -> LeakReport {
        let snapshots: Vec<Snapshot> = (0..10u64)
            .map(|i| Snapshot {
                time_unix_nano: i as i64 * 60_000_000_000,
                goroutines: leaks
                    .iter()
                    .map(|(f, rate)| GoroutineGroup {
                        count: 1 + rate * i,
                        stack: stack(f, "runtime.chanrecv"),
                        ..Default::default()
                    })
                    .chain([GoroutineGroup {
                        count: 4,
                        stack: stack("main.flat", "runtime.selectgo"),
                        ..Default::default()
                    }])
                    .collect(),
            })
            .collect();
        detect(&snapshots, &LeakOptions::default())
    }

    fn summary(leaks: &[CrossRunLeak]) -> Vec<(String, Vec<(String, f64)>)> {
        leaks
            .iter()
            .map(|l| {
                let runs = l.processes.iter().map(|p| (p.run.clone(), (p.per_minute * 10.0).round() / 10.0)).collect();
                (l.blocking_function.clone(), runs)
            })
            .collect()
    }

    #[test]
    fn the_same_blocking_site_in_several_processes_is_one_leak() {
        let reports = vec![
            ("pod-a".to_string(), process(&[("main.a", 6), ("main.b", 20), ("main.c", 3)])),
            ("pod-b".to_string(), process(&[("main.a", 12), ("main.b", 10)])),
            ("pod-c".to_string(), process(&[("main.a", 9)])),
        ];
        let leaks = group_across_runs(&reports);
        // Most processes first, then the fastest process.
        assert_eq!(
            summary(&leaks),
            [
                ("main.a".into(), vec![("pod-a".into(), 6.0), ("pod-b".into(), 12.0), ("pod-c".into(), 9.0)]),
                ("main.b".into(), vec![("pod-a".into(), 20.0), ("pod-b".into(), 10.0)]),
                ("main.c".into(), vec![("pod-a".into(), 3.0)]),
            ]
        );
        assert!(leaks.iter().all(|l| l.of_processes == 3));
        assert_eq!(leaks[0].wait_reason, WaitReason::ChanReceive);
        assert_eq!(leaks[0].root_cause, RootCause::UnclosedChannelReceive);
        assert!((leaks[0].per_minute_per_process() - 9.0).abs() < 1e-9);
        let p = &leaks[0].processes[0];
        assert_eq!((p.first, p.last, p.seconds.round()), (1, 55, 540.0));
        assert!(p.confidence > 0.999, "{p:?}");

        // Not every leak is in every process: no `each in` clause.
        assert_eq!(headline(&leaks, "1/min").unwrap(), "3 goroutine leaks grow faster than 1/min");
        assert_eq!(
            line(&leaks[1]),
            "main.b (chan receive, unclosed_channel_receive) in 2 of 3 processes, about 15/min per process: \
             pod-a: 20/min for 540 s (1 -> 181 goroutines, confidence >99.9%); \
             pod-b: 10/min for 540 s (1 -> 91 goroutines, confidence >99.9%)"
        );
        assert_eq!(
            headline(&leaks[..1], "1/min").unwrap(),
            "1 goroutine leak grows faster than 1/min, each in 3 of 3 processes"
        );
        let j = json(&leaks[1]);
        assert_eq!((j["processes"].as_u64(), j["of_processes"].as_u64()), (Some(2), Some(3)));
        assert_eq!(j["per_minute_per_process"].as_f64().map(f64::round), Some(15.0));
        assert_eq!(j["wait_reason"], "chan receive");
        assert_eq!(j["runs"][1]["run"], "pod-b");
        assert_eq!((j["runs"][1]["first"].as_u64(), j["runs"][1]["last"].as_u64()), (Some(1), Some(91)));
    }

    #[test]
    fn no_findings_no_leaks_and_one_unnamed_process() {
        assert!(group_across_runs(&[]).is_empty());
        assert!(headline(&[], "1/min").is_none());
        let quiet = vec![("a".to_string(), process(&[])), ("b".to_string(), process(&[]))];
        assert!(group_across_runs(&quiet).is_empty());
        let one = group_across_runs(&[(String::new(), process(&[("main.a", 6)]))]);
        assert_eq!(
            headline(&one, "1/min").unwrap(),
            "1 goroutine leak grows faster than 1/min, each in 1 of 1 process"
        );
        assert!(
            line(&one[0]).ends_with("about 6/min per process: 6/min for 540 s (1 -> 55 goroutines, confidence >99.9%)")
        );
    }

    #[test]
    fn a_process_with_one_snapshot_is_not_counted() {
        let one = GoroutineGroup { count: 5, stack: stack("main.a", "runtime.chanrecv"), ..Default::default() };
        let single = detect(&[Snapshot { time_unix_nano: 0, goroutines: vec![one] }], &LeakOptions::default());
        assert!(!single.judged);
        let reports = vec![("a".to_string(), process(&[("main.a", 6)])), ("b".to_string(), single)];
        let leaks = group_across_runs(&reports);
        assert_eq!((leaks.len(), leaks[0].processes.len(), leaks[0].of_processes), (1, 1, 1));
    }

    #[test]
    fn several_processes_as_text_and_json() {
        let reports = vec![
            ("pod-a".to_string(), process(&[("main.a", 6), ("main.b", 20)])),
            ("pod-b".to_string(), process(&[("main.a", 12), ("main.b", 10)])),
        ];
        let leaks = group_across_runs(&reports);
        let text = text(&reports, &leaks, 1.0);
        let head: Vec<&str> = text.lines().take(4).collect();
        assert_eq!(
            head,
            [
                "processes: 2 (pod-a, pod-b)",
                "2 goroutine leaks grow faster than 1/min, each in 2 of 2 processes",
                "  main.b (chan receive, unclosed_channel_receive) in 2 of 2 processes, about 15/min per process: \
                 pod-a: 20/min for 540 s (1 -> 181 goroutines, confidence >99.9%); \
                 pod-b: 10/min for 540 s (1 -> 91 goroutines, confidence >99.9%)",
                "  main.a (chan receive, unclosed_channel_receive) in 2 of 2 processes, about 9/min per process: \
                 pod-a: 6/min for 540 s (1 -> 55 goroutines, confidence >99.9%); \
                 pod-b: 12/min for 540 s (1 -> 109 goroutines, confidence >99.9%)",
            ],
            "{text}"
        );
        // Each process's own report follows.
        assert!(text.contains("\n== process pod-b ==\nsnapshots: 10 at t = 0, 60,"), "{text}");
        let j = report_json(&reports, &leaks);
        assert_eq!((j["leaks"].as_u64(), j["clusters"].as_u64(), j["processes"].as_u64()), (Some(2), Some(4), Some(2)));
        assert_eq!(j["findings"][0]["blocking_function"], "main.b");
        assert_eq!(j["runs"][1]["run"], "pod-b");
        assert_eq!(j["runs"][1]["report"]["findings"].as_array().map(Vec::len), Some(2));

        let quiet = vec![("a".to_string(), process(&[])), ("b".to_string(), detect(&[], &LeakOptions::default()))];
        let text = super::text(&quiet, &group_across_runs(&quiet), 1.5);
        assert!(
            text.starts_with(
                "processes: 2 (a, b)\nnote: growth could be judged in 1 of them\n\
                 no goroutine cluster grew faster than 1.5/min (1 process judged)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn order_does_not_depend_on_the_order_of_the_reports() {
        let reports = vec![
            ("a".to_string(), process(&[("main.x", 5), ("main.y", 5)])),
            ("b".to_string(), process(&[("main.y", 5), ("main.x", 5)])),
        ];
        let mut reversed = reports.clone();
        reversed.reverse();
        let names = |leaks: Vec<CrossRunLeak>| leaks.into_iter().map(|l| l.blocking_function).collect::<Vec<_>>();
        assert_eq!(names(group_across_runs(&reports)), ["main.x", "main.y"]);
        assert_eq!(names(group_across_runs(&reversed)), ["main.x", "main.y"]);
    }
}
