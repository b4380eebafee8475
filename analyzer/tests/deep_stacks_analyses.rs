//! Every analysis a deep stack reaches runs without recursing once per frame: folding and
//! merging, folded text, inferno's SVG (plain and differential), the regression comparison and
//! goroutine leak detection, each on stacks of 10,000 frames on a thread with a 256 KiB stack
//! (anything recursing per frame overflows it long before).

use analyzer::flame::{self, RegressionOptions, Run, svg};
use analyzer::leaks::{self, LeakOptions};
use analyzer::pprof::{Frame, Profile, ValueType};

const DEPTH: usize = 10_000;

fn frame(name: String) -> Frame {
    Frame { function: name.into(), ..Frame::default() }
}

/// A profile with one `DEPTH`-frame stack (`f0` the root) and one short stack `f0 → hot`,
/// `hot` taking `hot_share` per mille of `events` samples.
fn profile(kind: (&str, &str), events: i64, hot_share: i64, time: i64) -> Profile {
    let deep: Vec<Frame> = (0..DEPTH).rev().map(|i| frame(format!("f{i}"))).collect();
    let short = vec![frame("hot".into()), frame("f0".into())];
    let hot = events * hot_share / 1000;
    let types = vec![ValueType { kind: kind.0.into(), unit: kind.1.into() }];
    Profile { time_nanos: time, ..Profile::from_stacks(types, [(deep, vec![events - hot]), (short, vec![hot])]) }
}

fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(256 << 10).spawn(f).expect("spawn").join().expect("no overflow")
}

// issue 11 #1: a 4,000–10,000-frame stack took the collector down in its flame-graph answers;
// these are the analyses the same stack reaches after the JSON tree.
#[test]
fn deep_stacks_fold_render_compare_and_judge_without_recursion() {
    let (folded_lines, svg_len, diff_svg_len, hot_regressed, clusters) = on_small_stack(|| {
        let cpu = ("samples", "count");
        let run = |id: &str, share: i64, seed: i64| {
            Run::new(id, (0..3).map(|i| profile(cpu, 1000 + seed + i, share, i)).collect())
        };
        let baseline = vec![run("b1", 300, 0), run("b2", 300, 7)];
        let candidate = vec![run("c1", 500, 3), run("c2", 500, 11)];

        let all = |runs: &[Run]| runs.iter().flat_map(|r| r.profiles.clone()).collect::<Vec<_>>();
        let base = flame::merge(&all(&baseline), None).expect("merge");
        let cand = flame::merge(&all(&candidate), None).expect("merge");
        let lines = cand.lines();
        let mut folded = Vec::new();
        cand.write_folded(&mut folded).expect("folded");
        let mut out = Vec::new();
        svg::render(&cand, &svg::SvgOptions::default(), &mut out).expect("svg");
        let differential = flame::differential(&base, &cand);
        let mut diff_out = Vec::new();
        svg::render_lines(differential.iter().map(String::as_str), &svg::SvgOptions::default(), &mut diff_out)
            .expect("differential svg");
        let comparison =
            flame::detect_regressions(&baseline, &candidate, &RegressionOptions::default()).expect("compare");
        let hot = comparison.functions.iter().any(|r| r.function == "hot" && r.hottest_path == ["f0", "hot"]);

        let goroutines = ("goroutine", "count");
        let snapshots: Vec<leaks::Snapshot> =
            (0..6).map(|i| leaks::from_pprof(&profile(goroutines, 100 + 50 * i, 0, i * 10_000_000_000))).collect();
        let report = leaks::detect(&snapshots, &LeakOptions::default());
        let text = leaks::report::text(&report);
        let json = leaks::report::json(&report).to_string();
        assert!(!text.is_empty() && !json.is_empty());
        (lines.len(), out.len(), diff_out.len(), hot, report.clusters.len())
    });
    assert_eq!(folded_lines, 2);
    assert!(svg_len > DEPTH * 50, "the SVG draws every frame: {svg_len} bytes");
    assert!(diff_svg_len > DEPTH * 50);
    assert!(hot_regressed, "the share of `hot` grew from 30% to 50%");
    assert_eq!(clusters, 1, "one blocking site");
}
