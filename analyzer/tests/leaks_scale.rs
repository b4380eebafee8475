//! Scale checks for issue 5's benchmark: clustering 1 000 000 goroutines over 10 000 distinct
//! stacks (one group per goroutine, as a `debug=2` dump gives them), and the trend over 1 000
//! snapshots. Ignored by default (run with `--release -- --ignored --nocapture`); the timings
//! printed are wall time on this machine.

use std::time::Instant;

use analyzer::leaks::trend::trend;
use analyzer::leaks::{self, GoroutineGroup, LeakOptions, Snapshot, StackFrame, cluster};

fn stack(i: usize) -> Vec<StackFrame> {
    let frame = |function: String, line: u64| StackFrame { function, file: "/app/main.go".into(), line };
    vec![
        frame("sync.runtime_Semacquire".into(), 62),
        frame("sync.(*WaitGroup).Wait".into(), 139),
        frame(format!("main.block{}", i % 100), 10),
        frame(format!("main.path{}", i / 100), 20),
        frame("main.serve".into(), 30),
        frame("main.main".into(), 40),
    ]
}

#[test]
#[ignore = "benchmark"]
fn cluster_a_million_goroutines() {
    let stacks: Vec<Vec<StackFrame>> = (0..10_000).map(stack).collect();
    let goroutines: Vec<GoroutineGroup> = (0..1_000_000)
        .map(|i| GoroutineGroup {
            count: 1,
            stack: stacks[i % 10_000].clone(),
            wait_reason: Some("semacquire".into()),
            ..GoroutineGroup::default()
        })
        .collect();
    let snapshot = Snapshot { time_unix_nano: 0, goroutines };
    let start = Instant::now();
    let c = cluster::cluster(&snapshot, &LeakOptions::default());
    eprintln!("cluster 1e6 goroutines / 1e4 stacks: {:?}", start.elapsed());
    // 100 blocking sites, each reached by 100 call paths.
    assert_eq!(c.clusters.len(), 100);
    assert!(c.clusters.iter().all(|c| c.count == 10_000 && c.variants.len() == 100));
}

#[test]
#[ignore = "benchmark"]
fn trend_over_a_thousand_snapshots() {
    let times: Vec<f64> = (0..1000).map(|i| f64::from(i) * 15.0).collect();
    let counts: Vec<u64> = (0..1000u64).map(|i| 500 + (i * 7919 % 13) + i / 20).collect();
    let start = Instant::now();
    let t = trend(&times, &counts).expect("trend");
    eprintln!("trend over 1000 snapshots: {:?}", start.elapsed());
    assert!(t.growth_per_minute > 0.0);
    let snapshots: Vec<Snapshot> = (0..1000u32)
        .map(|i| Snapshot {
            time_unix_nano: i64::from(i) * 15_000_000_000,
            goroutines: (0..50)
                .map(|k| GoroutineGroup { count: 10 + u64::from(i), stack: stack(k), ..GoroutineGroup::default() })
                .collect(),
        })
        .collect();
    let start = Instant::now();
    let report = leaks::detect(&snapshots, &LeakOptions::default());
    eprintln!("detect over 1000 snapshots x 50 clusters: {:?}", start.elapsed());
    assert_eq!(report.findings.len(), 50);
}
