//! Growth detection, data-driven: each case is a count series 5 s apart and the expected
//! verdict at the default thresholds, with the Theil–Sen growth per minute; then the report's
//! handling of bad series (one snapshot, out of order, duplicate times).

use analyzer::leaks::trend::{LeakRule, TrendError, trend};
use analyzer::leaks::{self, GoroutineGroup, LeakOptions, Snapshot, StackFrame};

const RULE: LeakRule = LeakRule { min_growth_per_minute: 1.0, min_confidence: 0.99 };

fn check(name: &str, step_s: f64, counts: &[u64], leak: bool, growth_per_minute: f64) {
    let times: Vec<f64> = (0..counts.len()).map(|i| i as f64 * step_s).collect();
    let t = trend(&times, counts).expect("trend");
    let span = times[times.len() - 1];
    assert_eq!(t.is_leak(span, RULE), leak, "{name}: {t:?}");
    assert_eq!(format!("{:.2}", t.growth_per_minute), format!("{growth_per_minute:.2}"), "{name}: growth per minute");
}

#[test]
fn series() {
    // A flat worker pool, however large, does not leak.
    check("flat", 5.0, &[200; 9], false, 0.0);
    check("noisy flat", 5.0, &[198, 203, 199, 201, 200, 204, 197, 202, 200, 199, 203, 201], false, 1.86);
    // One goroutine per second, the corpus leak.
    check("steady", 5.0, &[0, 4, 13, 14, 20, 25, 30, 34, 40], true, 60.0);
    // 0.5 goroutine/s over 7 snapshots (30 s): issue 5's minimum.
    check("half per second, 7 snapshots", 5.0, &[10, 12, 15, 17, 20, 22, 25], true, 30.0);
    // Slow steady growth: one goroutine a minute, sampled every minute for 15 minutes.
    check("slow steady", 60.0, &[10, 11, 11, 13, 14, 14, 16, 17, 18, 18, 20, 21, 22, 22, 24, 25], true, 1.0);
    // A burst (a CPU profile being served) that returns to the baseline.
    check("burst", 5.0, &[0, 0, 16, 0, 1, 0, 1, 0, 0], false, 0.0);
    check("burst on a pool", 5.0, &[50, 50, 51, 80, 75, 60, 52, 50, 50], false, 0.0);
    // A burst that has not finished draining: still well above the start, but its slope is
    // negative after the peak, so it is not a steady climb.
    check("late burst", 5.0, &[5, 5, 5, 5, 5, 5, 5, 30, 20], false, 0.0);
    // Shrinking.
    check("draining", 5.0, &[40, 35, 30, 26, 20, 15, 10, 5, 0], false, -60.0);
    // Growth too slow to matter at the default threshold (0.5 a minute).
    check("below threshold", 60.0, &[10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15], false, 0.5);
}

#[test]
fn mann_kendall_known_values() {
    // Strictly increasing n = 9: S = 36, Var = 9·8·23/18 = 92, z = 35/√92.
    let t = trend(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[1, 2, 3, 4, 5, 6, 7, 8, 9]).expect("trend");
    assert_eq!(t.s, 36);
    assert!((t.z - 35.0 / 92f64.sqrt()).abs() < 1e-12);
    // Ties: [1, 1, 2, 2, 3]: S = 8; Var = (5·4·15 − 2·(2·1·9)) / 18 = 264/18; z = 7/√(264/18).
    let t = trend(&[0.0, 1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2, 3]).expect("trend");
    assert_eq!(t.s, 8);
    assert!((t.z - 7.0 / (264.0f64 / 18.0).sqrt()).abs() < 1e-12);
    // All equal: no variance, no confidence.
    let t = trend(&[0.0, 1.0, 2.0], &[4, 4, 4]).expect("trend");
    assert_eq!((t.s, t.z, t.confidence), (0, 0.0, 0.0));
    assert_eq!(t.growing_for_seconds, 0.0);
}

#[test]
fn bad_series() {
    assert_eq!(trend(&[0.0], &[1]), Err(TrendError::TooFewPoints(1)));
    assert_eq!(trend(&[0.0, 1.0], &[1]), Err(TrendError::LengthMismatch(2, 1)));
    assert_eq!(trend(&[1.0, 0.0], &[1, 2]), Err(TrendError::Unordered));
    assert_eq!(trend(&[0.0, 0.0], &[1, 2]), Err(TrendError::Unordered));
    assert_eq!(trend(&[0.0, f64::NAN], &[1, 2]), Err(TrendError::Unordered));
}

fn snapshot(t_s: i64, leaked: u64) -> Snapshot {
    let frame = StackFrame { function: "main.leak".into(), file: "/a.go".into(), line: 3 };
    Snapshot {
        time_unix_nano: t_s * 1_000_000_000,
        goroutines: vec![GoroutineGroup {
            count: leaked,
            stack: vec![frame],
            wait_reason: Some("chan receive".into()),
            ..GoroutineGroup::default()
        }],
    }
}

#[test]
fn one_snapshot_cannot_be_judged() {
    let report = leaks::detect(&[snapshot(0, 100)], &LeakOptions::default());
    assert!(!report.judged);
    assert!(report.findings.is_empty());
    assert_eq!(report.notes, ["growth cannot be judged from one snapshot"]);
    assert_eq!(report.clusters[0].trend, None);
    let report = leaks::detect(&[], &LeakOptions::default());
    assert!(!report.judged && report.clusters.is_empty());
}

#[test]
fn snapshots_out_of_order_are_sorted() {
    let ordered: Vec<Snapshot> = (0..8).map(|i| snapshot(i * 5, (i * 5) as u64)).collect();
    let mut shuffled = ordered.clone();
    shuffled.swap(0, 5);
    shuffled.swap(2, 7);
    let a = leaks::detect(&ordered, &LeakOptions::default());
    let b = leaks::detect(&shuffled, &LeakOptions::default());
    assert_eq!(a.findings, b.findings);
    assert_eq!(b.findings.len(), 1);
    assert!(a.notes.is_empty());
    assert_eq!(b.notes, ["snapshots were not in time order; they were sorted by time"]);
}

#[test]
fn duplicate_times_keep_the_later_snapshot() {
    let mut snapshots: Vec<Snapshot> = (0..8).map(|i| snapshot(i * 5, (i * 5) as u64)).collect();
    snapshots.push(snapshot(35, 1000));
    let report = leaks::detect(&snapshots, &LeakOptions::default());
    assert_eq!(report.times_s.len(), 8);
    assert_eq!(report.clusters[0].counts.last(), Some(&1000));
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
}

#[test]
fn findings_are_ranked_by_growth() {
    let snaps: Vec<Snapshot> = (0..9)
        .map(|i| {
            let mut s = snapshot(i * 5, i as u64 * 2);
            let mut fast = s.goroutines[0].clone();
            fast.stack[0].function = "main.fastLeak".into();
            fast.count = i as u64 * 10;
            s.goroutines.push(fast);
            s
        })
        .collect();
    let report = leaks::detect(&snaps, &LeakOptions::default());
    let names: Vec<&str> = report.findings.iter().map(|f| f.key.blocking_function.as_str()).collect();
    assert_eq!(names, ["main.fastLeak", "main.leak"]);
}
