//! Flame graphs and regression detection on the `go-dev` corpus (`testdata/corpus/go-dev/`, see
//! its README for the known regression). Golden files live in `tests/data/flame/`; refresh them
//! with `UPDATE_EXPECT=1 cargo test -p analyzer --test flame_corpus`.

use std::path::PathBuf;

use analyzer::flame::{self, RegressionOptions, Run, Share, svg};
use analyzer::pprof::{self, Profile};

/// The package's directory: where cargo runs this test from now (`CARGO_MANIFEST_DIR` at run
/// time), not where it was compiled, so a test binary built from another checkout of the same
/// sources with a shared target directory still reads this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
}

fn corpus() -> PathBuf {
    manifest_dir().join("../testdata/corpus/go-dev")
}

fn profile(run: &str) -> Profile {
    let path = corpus().join(run).join("cpu-10s.pb.gz");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    pprof::decode(&bytes).unwrap_or_else(|e| panic!("decode {}: {e}", path.display()))
}

/// The corpus' run `name` (one process, one 10 s CPU profile) as a run of the comparison.
fn run(name: &str) -> Run {
    Run::new(name, vec![profile(name)])
}

/// Compares `actual` with the golden file `tests/data/flame/NAME`, or rewrites it with
/// `UPDATE_EXPECT=1`.
fn check_golden(name: &str, actual: &str) {
    let path = manifest_dir().join("tests/data/flame").join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e} (create it with UPDATE_EXPECT=1)", path.display()));
    assert!(expected == actual, "{name} differs from the golden file; rerun with UPDATE_EXPECT=1 to accept:\n{actual}");
}

/// Parses `svg` as XML from start to end and counts its elements.
fn assert_valid_xml(svg: &[u8]) -> usize {
    let mut reader = quick_xml::Reader::from_reader(svg);
    let mut buf = Vec::new();
    let (mut depth, mut elements) = (0i64, 0usize);
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(quick_xml::events::Event::Start(_)) => {
                depth += 1;
                elements += 1;
            }
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Empty(_)) => elements += 1,
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("invalid XML at {}: {e}", reader.buffer_position()),
        }
        buf.clear();
    }
    assert_eq!(depth, 0, "unbalanced tags");
    assert!(svg.starts_with(b"<?xml"), "no XML declaration");
    elements
}

#[test]
fn folded_fast_cpu_matches_golden() {
    let folded = flame::merge(&[profile("fast")], Some("cpu")).expect("merge");
    let mut out = Vec::new();
    folded.write_folded(&mut out).expect("write");
    let text = String::from_utf8(out).expect("utf-8");
    // The folded total is the profile's total CPU time (6.98 s in the README's `go tool pprof`).
    let total: i64 = text.lines().map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<i64>().ok()).unwrap_or(0)).sum();
    assert_eq!(total, folded.total());
    assert!((6.9e9..7.1e9).contains(&(total as f64)), "total {total}");
    check_golden("fast-cpu.folded", &text);
}

#[test]
fn merging_is_order_independent() {
    let (a, b, c) = (profile("fast"), profile("fast-rerun"), profile("slow"));
    let abc = flame::merge(&[a.clone(), b.clone(), c.clone()], Some("cpu")).expect("merge");
    let cab = flame::merge(&[c, a, b], Some("cpu")).expect("merge");
    assert_eq!(abc, cab);
}

#[test]
fn svg_is_valid_xml_and_deterministic() {
    let folded = flame::merge(&[profile("fast")], Some("cpu")).expect("merge");
    let options = svg::SvgOptions { title: "fast cpu".into(), count_name: "nanoseconds".into() };
    let (mut first, mut second) = (Vec::new(), Vec::new());
    svg::render(&folded, &options, &mut first).expect("render");
    svg::render(&folded, &options, &mut second).expect("render");
    assert!(first == second, "two renders differ");
    assert!(assert_valid_xml(&first) > 100);
    let text = String::from_utf8(first).expect("utf-8");
    assert!(text.contains("main.sanitizeLabels"));
}

#[test]
fn sanitize_labels_regression_ranks_first() {
    let found = flame::detect_regressions(
        &[run("fast")],
        &[run("slow")],
        &RegressionOptions { sample_type: Some("cpu".into()), ..Default::default() },
    )
    .expect("detect")
    .functions;
    let first = found.first().expect("a regression");
    assert_eq!(first.function, "main.sanitizeLabels", "{found:#?}");
    assert!(first.self_share.change_pp > 5.0, "{first:#?}");
    assert!(first.self_share.confidence > 0.99, "{first:#?}");
    assert_eq!(
        first.hottest_path.iter().rev().take(3).rev().map(String::as_str).collect::<Vec<_>>(),
        ["main.fetchBatch.func1", "main.encodeBatch", "main.sanitizeLabels"]
    );
    check_golden("regressions-fast-vs-slow.txt", &table(&found));
}

/// Two baseline runs whose `main.sanitizeLabels` self shares are 5 pp apart (42% and 47% of
/// their profiles) against one candidate run: the test over runs has one degree of freedom, and
/// the +8 pp change, largest of all, is not significant at 95%. The comparison says so rather than
/// trusting the profiles of each run as if they were independent runs.
#[test]
fn two_baseline_runs_against_one() {
    let c = flame::compare_functions(&[run("fast"), run("fast-rerun")], &[run("slow")], &RegressionOptions::default())
        .expect("compare");
    assert_eq!((c.baseline.runs, c.candidate.runs, c.degrees_of_freedom), (2, 1, 1.0));
    assert_eq!(c.warnings(), ["the candidate has one run: its run-to-run variation is taken from the baseline's runs"]);
    let largest = c.functions.iter().max_by(|a, b| a.self_share.change_pp.total_cmp(&b.self_share.change_pp));
    let s = largest.expect("functions");
    assert_eq!(s.function, "main.sanitizeLabels");
    assert!((7.0..10.0).contains(&s.self_share.change_pp), "{s:#?}");
    assert!((0.6..0.95).contains(&s.self_share.confidence), "{s:#?}");
    let found =
        flame::detect_regressions(&[run("fast"), run("fast-rerun")], &[run("slow")], &RegressionOptions::default())
            .expect("detect");
    assert!(found.functions.is_empty(), "{:#?}", found.functions);
}

/// With one profile per side only the sampling model and the genomic-control correction judge the
/// noise. `fast` alone finds the regression; `fast-rerun` alone (sanitizeLabels at 47% instead of
/// 42% of its run) gives +6.0 pp at about 93% confidence, under the default 95%: one baseline
/// profile is not enough on this noisy VM.
#[test]
fn regression_is_found_against_one_baseline_profile() {
    let found = flame::detect_regressions(&[run("fast")], &[run("slow")], &RegressionOptions::default())
        .expect("detect")
        .functions;
    assert_eq!(found.first().map(|r| r.function.as_str()), Some("main.sanitizeLabels"), "{found:#?}");
    let weak =
        flame::compare_functions(&[run("fast-rerun")], &[run("slow")], &RegressionOptions::default()).expect("compare");
    let s = weak.functions.iter().find(|r| r.function == "main.sanitizeLabels").expect("present");
    assert!(s.self_share.change_pp > 5.0 && s.self_share.confidence > 0.85, "{s:#?}");
}

#[test]
fn a_a_comparison_reports_nothing() {
    for (base, cand) in [("fast", "fast-rerun"), ("fast-rerun", "fast")] {
        let c = flame::detect_regressions(&[run(base)], &[run(cand)], &RegressionOptions::default()).expect("detect");
        assert!(c.functions.is_empty(), "{base} -> {cand}: {:#?}", c.functions);
        assert!(!c.runtime_change.reported, "{base} -> {cand}: {:#?}", c.runtime_change);
        let options = RegressionOptions { metric: Share::Cumulative, ..Default::default() };
        let found = flame::detect_regressions(&[run(base)], &[run(cand)], &options).expect("detect").functions;
        assert!(found.is_empty(), "{base} -> {cand}, total share: {found:#?}");
    }
}

#[test]
fn differential_golden_and_svg() {
    let base = flame::merge(&[profile("fast"), profile("fast-rerun")], Some("cpu")).expect("merge");
    let cand = flame::merge(&[profile("slow")], Some("cpu")).expect("merge");
    let lines = flame::differential(&base, &cand);
    // Normalised: the baseline column sums to the candidate's total (up to rounding).
    let before: i64 = lines.iter().filter_map(|l| l.split(' ').rev().nth(1)?.parse::<i64>().ok()).sum();
    assert!((before - cand.total()).abs() < lines.len() as i64, "{before} vs {}", cand.total());
    check_golden("diff-fast+rerun-vs-slow.folded", &(lines.join("\n") + "\n"));
    let options = svg::SvgOptions { title: "fast vs slow".into(), count_name: "nanoseconds".into() };
    let (mut first, mut second) = (Vec::new(), Vec::new());
    svg::render_lines(lines.iter().map(String::as_str), &options, &mut first).expect("render");
    svg::render_lines(lines.iter().map(String::as_str), &options, &mut second).expect("render");
    assert!(first == second, "two renders differ");
    assert_valid_xml(&first);
}

#[test]
fn mixing_profile_types_is_an_error() {
    let heap = {
        let path = corpus().join("fast/heap.pb.gz");
        pprof::decode(&std::fs::read(path).expect("read")).expect("decode")
    };
    let err = flame::merge(&[profile("fast"), heap], None).expect_err("mixed types");
    assert!(matches!(err, flame::FlameError::TypeMismatch { profile: 1, .. }), "{err}");
    let err = flame::merge(&[profile("fast")], Some("alloc_space")).expect_err("no such type");
    assert!(matches!(err, flame::FlameError::NoSuchSampleType { .. }), "{err}");
}

fn table(found: &[flame::Regression]) -> String {
    let mut out = String::new();
    for r in found {
        let s = r.share(Share::Flat);
        let t = r.share(Share::Cumulative);
        out.push_str(&format!(
            "{} self {:.1}% -> {:.1}% ({:+.1} pp, {:.3}) total {:.1}% -> {:.1}% ({:+.1} pp) path {}\n",
            r.function,
            s.baseline_pct,
            s.candidate_pct,
            s.change_pp,
            s.confidence,
            t.baseline_pct,
            t.candidate_pct,
            t.change_pp,
            r.hottest_path.join(" > ")
        ));
    }
    out
}

/// `merge_encoded` on several threads gives exactly the stacks of a sequential merge, and a bad
/// input is reported by its position: the lowest failing one, whichever thread met it.
#[test]
fn parallel_merge_of_encoded_profiles() {
    let files: Vec<Vec<u8>> = ["fast", "slow", "fast-rerun", "slow", "fast", "fast-rerun", "slow"]
        .iter()
        .map(|run| std::fs::read(corpus().join(run).join("cpu-10s.pb.gz")).expect("corpus file"))
        .collect();
    let decoded: Vec<Profile> = files.iter().map(|b| pprof::decode(b).expect("decode")).collect();
    let sequential = flame::merge(&decoded, Some("cpu")).expect("merge");
    let load = |bytes: &[Vec<u8>], i: usize| Ok::<_, std::io::Error>(bytes[i].clone());
    for threads in [1, 2, 3, 16] {
        let merger =
            flame::merge_encoded(files.len(), Some("cpu"), threads, |i| load(&files, i)).expect("parallel merge");
        assert_eq!(merger.sample_type().map(|t| t.unit.as_str()), Some("nanoseconds"));
        assert_eq!(merger.finish().expect("profiles"), sequential, "{threads} threads");
    }

    // Corrupt bytes at positions 5 and 2, on different threads: position 2 is reported.
    let mut bad = files.clone();
    bad[5] = b"\x1f\x8b\x08\x00 not gzip".to_vec();
    bad[2] = vec![0xff, 0xff, 0xff];
    for threads in [1, 2, 4] {
        let err = flame::merge_encoded(bad.len(), Some("cpu"), threads, |i| load(&bad, i)).expect_err("corrupt");
        assert_eq!(err.position(), Some(2), "{threads} threads: {err}");
        assert!(err.to_string().starts_with("profile 2: not a valid profile.proto message"), "{err}");
    }

    // A heap profile among CPU profiles: a type mismatch naming it.
    let mut mixed = files.clone();
    mixed[3] = std::fs::read(corpus().join("fast/heap.pb.gz")).expect("corpus file");
    let err = flame::merge_encoded(mixed.len(), None, 2, |i| load(&mixed, i)).expect_err("mixed types");
    assert_eq!(
        err.to_string(),
        "profile 3 measures inuse_space/bytes, but the first profile measures cpu/nanoseconds: merge profiles of one type"
    );

    // The loader's own error, with its position.
    let err = flame::merge_encoded(files.len(), Some("cpu"), 2, |i| {
        if i == 4 { Err(std::io::Error::other("disk on fire")) } else { load(&files, i) }
    })
    .expect_err("load error");
    assert_eq!(err.to_string(), "profile 4: disk on fire");

    // Nothing to merge.
    let none = flame::merge_encoded(0, Some("cpu"), 2, |i| load(&files, i)).expect("no work");
    assert!(none.finish().is_err());
}
