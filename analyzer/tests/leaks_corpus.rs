//! Leak detection on the `go-dev` corpus (`testdata/corpus/go-dev/`, see its README): nine
//! goroutine snapshots 5 s apart, in pprof and `debug=2` form, with two known leaks
//! (`main.closeWhenDone` in `sync.(*WaitGroup).Wait`, `main.collectResults` in a channel
//! receive, about 1 goroutine/s each) and a transient backlog (`main.fetchBatch.func1`) that
//! must not be reported. Golden reports live in `tests/data/leaks/`; refresh them with
//! `UPDATE_EXPECT=1 cargo test -p analyzer --test leaks_corpus`.

use std::path::{Path, PathBuf};

use analyzer::leaks::{self, LeakOptions, LeakReport, RootCause, Snapshot, WaitReason};
use analyzer::pprof;

/// The package's directory: where cargo runs this test from now (`CARGO_MANIFEST_DIR` at run
/// time), not where it was compiled, so a test binary built from another checkout of the same
/// sources with a shared target directory still reads this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
}

const RUNS: &[&str] = &["fast", "slow", "fast-rerun"];
const TIMES: &[i64] = &[0, 5, 10, 15, 20, 25, 30, 35, 40];

fn corpus() -> PathBuf {
    manifest_dir().join("../testdata/corpus/go-dev")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn pprof_snapshots(run: &str) -> Vec<Snapshot> {
    TIMES
        .iter()
        .map(|t| {
            let path = corpus().join(run).join(format!("goroutine-t{t:02}.pb.gz"));
            let profile = pprof::decode(&read(&path)).unwrap_or_else(|e| panic!("decode {}: {e}", path.display()));
            Snapshot { time_unix_nano: t * 1_000_000_000, ..leaks::from_pprof(&profile) }
        })
        .collect()
}

fn text_snapshots(run: &str) -> Vec<Snapshot> {
    TIMES
        .iter()
        .map(|t| {
            let path = corpus().join(run).join(format!("goroutine-t{t:02}.debug2.txt"));
            let text = String::from_utf8(read(&path)).expect("utf-8");
            let snapshot = leaks::parse_debug2(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
            Snapshot { time_unix_nano: t * 1_000_000_000, ..snapshot }
        })
        .collect()
}

fn check_golden(name: &str, actual: &str) {
    let path = manifest_dir().join("tests/data/leaks").join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e} (create it with UPDATE_EXPECT=1)", path.display()));
    assert!(expected == actual, "{name} differs from the golden file; rerun with UPDATE_EXPECT=1 to accept:\n{actual}");
}

/// The two known leaks, and only them, at about 1 goroutine/s.
fn assert_known_leaks(report: &LeakReport, what: &str) {
    let found: Vec<(&str, &WaitReason, RootCause)> =
        report.findings.iter().map(|f| (f.key.blocking_function.as_str(), &f.key.wait_reason, f.root_cause)).collect();
    let mut names: Vec<&str> = found.iter().map(|f| f.0).collect();
    names.sort_unstable();
    assert_eq!(names, ["main.closeWhenDone", "main.collectResults"], "{what}: {found:?}");
    for f in &report.findings {
        let t = f.trend.expect("judged");
        let per_s = t.growth_per_minute / 60.0;
        assert!((0.7..=1.3).contains(&per_s), "{what}: {} grows {per_s}/s", f.key);
        assert!(t.confidence > 0.999, "{what}: {} confidence {}", f.key, t.confidence);
        assert!(f.created_by.as_deref().is_none_or(|c| c == "main.fetchBatch"), "{what}: {:?}", f.created_by);
        match f.key.blocking_function.as_str() {
            "main.closeWhenDone" => {
                assert_eq!(f.key.wait_reason, WaitReason::WaitGroup, "{what}");
                assert_eq!(f.root_cause, RootCause::WaitGroup, "{what}");
            }
            _ => {
                assert_eq!(f.key.wait_reason, WaitReason::ChanReceive, "{what}");
                assert_eq!(f.root_cause, RootCause::UnclosedChannelReceive, "{what}");
            }
        }
    }
    assert!(
        report.findings.iter().all(|f| !f.key.blocking_function.starts_with("main.fetchBatch")),
        "{what}: the transient fetchBatch.func1 backlog is not a leak"
    );
    assert!(
        report.clusters.iter().any(|c| c.key.blocking_function == "main.fetchBatch.func1"
            || c.representative.stack.iter().any(|f| f.function == "main.fetchBatch.func1")),
        "{what}: the backlog is seen as a cluster"
    );
}

#[test]
fn pprof_snapshots_report_the_two_leaks() {
    for run in RUNS {
        let report = leaks::detect(&pprof_snapshots(run), &LeakOptions::default());
        assert_known_leaks(&report, &format!("{run} pprof"));
        // pprof profiles have no `created by`.
        assert!(report.findings.iter().all(|f| f.created_by.is_none()));
    }
}

#[test]
fn text_snapshots_report_the_two_leaks() {
    for run in RUNS {
        let report = leaks::detect(&text_snapshots(run), &LeakOptions::default());
        assert_known_leaks(&report, &format!("{run} debug=2"));
        assert!(report.findings.iter().all(|f| f.created_by.as_deref() == Some("main.fetchBatch")));
        // Same creator: reported as one likely root cause.
        assert_eq!(report.related.len(), 1);
        assert_eq!(
            (report.related[0].created_by.as_str(), report.related[0].findings.as_slice()),
            ("main.fetchBatch", &[0, 1][..])
        );
    }
}

#[test]
fn both_forms_agree_on_the_leak_series() {
    let series = |r: &LeakReport| -> Vec<(String, Vec<u64>)> {
        let mut v: Vec<_> = r.findings.iter().map(|f| (f.key.to_string(), f.counts.clone())).collect();
        v.sort();
        v
    };
    for keep_file_line in [false, true] {
        let options = LeakOptions { keep_file_line, ..LeakOptions::default() };
        let a = leaks::detect(&pprof_snapshots("fast"), &options);
        let b = leaks::detect(&text_snapshots("fast"), &options);
        assert_eq!(series(&a), series(&b));
        assert_eq!(a.findings.len(), 2);
    }
}

#[test]
fn counts_match_the_corpus_tally() {
    // `fast/counts.tsv`: closeWhenDone and collectResults per snapshot.
    let report = leaks::detect(&text_snapshots("fast"), &LeakOptions::default());
    let counts =
        |name: &str| report.findings.iter().find(|f| f.key.blocking_function == name).map(|f| f.counts.clone());
    assert_eq!(counts("main.closeWhenDone"), Some(vec![0, 4, 13, 14, 20, 25, 30, 34, 40]));
    // The tally counts every goroutine in `collectResults`; a few of a healthy batch are in
    // `main.(*stats).record` (a mutex wait), which is another blocking site.
    assert_eq!(counts("main.collectResults"), Some(vec![0, 4, 14, 14, 20, 25, 30, 34, 40]));
    assert_eq!(report.totals, [2, 10, 47, 33, 43, 54, 63, 70, 82]);
}

#[test]
fn ignore_rules_drop_the_leaks() {
    let options = LeakOptions {
        ignore_top_functions: vec!["sync.runtime_Semacquire".into()],
        ignore_any_functions: vec!["main.collectResults".into()],
        ..LeakOptions::default()
    };
    for snapshots in [pprof_snapshots("fast"), text_snapshots("fast")] {
        let report = leaks::detect(&snapshots, &options);
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.ignored.last(), Some(&80));
    }
}

#[test]
fn seven_snapshots_are_enough() {
    // Issue 5: at the defaults, 7 snapshots 5 s apart find a steady leak.
    let mut snapshots = text_snapshots("fast");
    snapshots.truncate(7);
    let report = leaks::detect(&snapshots, &LeakOptions::default());
    assert_eq!(report.findings.len(), 2, "{}", leaks::report::text(&report));
}

#[test]
fn golden_reports() {
    check_golden(
        "fast-pprof.txt",
        &leaks::report::text(&leaks::detect(&pprof_snapshots("fast"), &LeakOptions::default())),
    );
    check_golden(
        "fast-debug2.txt",
        &leaks::report::text(&leaks::detect(&text_snapshots("fast"), &LeakOptions::default())),
    );
}

#[test]
fn stackless_samples_are_counted_apart() {
    // threadcreate.pb.gz holds one sample with an empty stack (count 5): nothing to cluster.
    let profile = pprof::decode(&read(&corpus().join("fast/threadcreate.pb.gz"))).expect("decode");
    let snapshot = leaks::from_pprof(&profile);
    let later = Snapshot { time_unix_nano: snapshot.time_unix_nano + 1_000_000_000, ..snapshot.clone() };
    let report = leaks::detect(&[snapshot, later], &LeakOptions::default());
    assert!(report.findings.is_empty() && report.clusters.is_empty() && report.judged);
    assert_eq!(report.no_stack, [5, 5]);
}

#[test]
fn a_profile_with_no_samples_is_an_empty_snapshot() {
    let empty = pprof::Profile {
        samples: Vec::new(),
        ..pprof::decode(&read(&corpus().join("fast/goroutine-t00.pb.gz"))).expect("decode")
    };
    let snapshot = leaks::from_pprof(&empty);
    assert!(snapshot.goroutines.is_empty());
    let report = leaks::detect(&[snapshot], &LeakOptions::default());
    assert!(!report.judged && report.findings.is_empty());
    assert_eq!(report.notes, ["growth cannot be judged from one snapshot"]);
}
