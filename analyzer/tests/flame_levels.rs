//! Pyroscope's flame-graph levels (`analyzer::flame::levels`) read back the way Grafana reads them.
//! The decoder (`tests/src/flame.rs`, shared with the end-to-end tests) follows the rules of
//! Grafana's `levelsToTree` (the Pyroscope datasource's `query.go`, as described in our wire notes,
//! not its code): the root's name is `names[levels[0][0]]`, x is undone per level, a node goes
//! under the first parent, walking the previous level in order and never back, that contains it
//! (`parent.start <= start && start + value <= parent.start + parent.value`); a node no parent can
//! take is an error, which Grafana would turn into a wrong or broken flame graph.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use analyzer::flame::{FlameGraphDiff, FlameGraphLevels, Folded};
use analyzer::pprof::{self, Profile};
use proptest::prelude::*;

/// The decoder, shared with the end-to-end tests of the Pyroscope query API.
#[path = "../../tests/src/flame.rs"]
#[allow(dead_code)]
mod grafana;
use grafana::{Tree, decode};

/// The stacks a flame graph can draw: the positive ones.
fn drawable(folded: &Folded) -> BTreeMap<Vec<String>, i64> {
    folded.stacks().iter().filter(|&(_, &v)| v > 0).map(|(s, &v)| (s.clone(), v)).collect()
}

fn folded(stacks: &[(&str, i64)]) -> Folded {
    let mut folded = Folded::new();
    for (stack, value) in stacks {
        folded.add(stack.split(';').map(str::to_string).collect(), *value);
    }
    folded
}

/// Encodes `stacks` with `max_nodes`, compares with the expected wire values, and checks that the
/// Grafana-rules decoder accepts them.
fn check(stacks: &[(&str, i64)], max_nodes: usize, names: &[&str], levels: &[&[i64]], max_self: i64) {
    let input = folded(stacks);
    let graph = FlameGraphLevels::from_folded(&input, max_nodes);
    assert_eq!(graph.names, names, "names");
    assert_eq!(graph.levels, levels, "levels");
    assert_eq!((graph.total, graph.max_self), (input.total(), max_self), "total, max_self");
    let tree = decode(&graph.names, &graph.levels, 1).expect("Grafana's rules accept the levels");
    assert_eq!(tree.nodes[0].name, "total");
    assert_eq!(tree.nodes[0].value, [input.total()]);
    if max_nodes == 0 {
        assert_eq!(tree.stacks(0), drawable(&input));
    }
}

/// The decoder is as strict as Grafana: it refuses what Grafana would misplace, so the tests
/// below that it accepts mean something.
#[test]
fn decoder_refuses_what_grafana_cannot_place() {
    let names: Vec<String> = ["total", "a", "b"].map(String::from).to_vec();
    let ok: Vec<Vec<i64>> = vec![vec![0, 3, 0, 0], vec![0, 1, 0, 1, 0, 2, 0, 2], vec![0, 1, 1, 2, 0, 2, 2, 1]];
    let tree = decode(&names, &ok, 1).expect("well formed");
    assert_eq!(tree.stacks(0), BTreeMap::from([(vec!["a".into(), "b".into()], 1), (vec!["b".into(), "a".into()], 2)]));
    let refused = |levels: Vec<Vec<i64>>, why: &str| assert!(decode(&names, &levels, 1).is_err(), "{why}");
    // The root's name is read from its x: a root at x 1 is named "a".
    refused(vec![vec![1, 3, 0, 0]], "root x not 0");
    // Absolute x instead of deltas: the second node starts at 1 + 1, past the end.
    refused(vec![vec![0, 3, 0, 0], vec![0, 1, 0, 1, 1, 2, 0, 2]], "not delta-encoded");
    // Children in the wrong parent order: b's child first, then a's, which lies behind it.
    refused(
        vec![vec![0, 3, 0, 0], vec![0, 1, 0, 1, 0, 2, 0, 2], vec![1, 2, 2, 1, -3, 1, 1, 2]],
        "parents walked backwards",
    );
    // A child wider than its parent.
    refused(vec![vec![0, 3, 0, 0], vec![0, 4, 0, 1]], "child wider than the root");
    refused(Vec::new(), "no levels");
}

/// Six stacks: shared prefixes (`main`, `main;a`), a function (`b`, `c`) under two parents, a
/// parent with self (`main;a`, `main;b`).
///
/// Tree (total/self): root 13/0; gc 2/2; main 11/0; main;a 6/1; main;a;b 3/3; main;a;c 2/2;
/// main;b 5/4; main;b;c 1/1.
const PROFILE: [(&str, i64); 6] =
    [("main;a;b", 3), ("main;a;c", 2), ("main;a", 1), ("main;b", 4), ("main;b;c", 1), ("gc", 2)];

#[test]
fn hand_computed_profile() {
    // Absolute x: gc 0, main 2; a 2, b 8; a;b 3 (after a's self), a;c 6, b;c 12 (after b's self).
    // Stored x is x minus the end of the previous node of the level. Names in drawing order.
    check(
        &PROFILE,
        0,
        &["total", "gc", "main", "a", "b", "c"],
        &[&[0, 13, 0, 0], &[0, 2, 2, 1, 0, 11, 0, 2], &[2, 6, 1, 3, 0, 5, 4, 4], &[3, 3, 3, 4, 0, 2, 2, 5, 4, 1, 1, 5]],
        4,
    );
}

#[test]
fn max_nodes_folds_small_nodes_into_other() {
    // Node totals, largest first: 11 main, 6 a, 5 b, 3 a;b, 2 gc, 2 a;c, 1 b;c.
    // max_nodes 4: the threshold is 3; gc (2) becomes the root's "other", a;c (2) a's, b;c (1)
    // b's. x: main 0, other 11; a 0, b 6; a;b 1, other 4, other 10.
    check(
        &PROFILE,
        4,
        &["total", "main", "other", "a", "b"],
        &[&[0, 13, 0, 0], &[0, 11, 0, 1, 0, 2, 2, 2], &[0, 6, 1, 3, 0, 5, 4, 4], &[1, 3, 3, 4, 0, 2, 2, 2, 4, 1, 1, 2]],
        4,
    );
    // max_nodes 5: the threshold is 2, and both nodes of total 2 stay (ties are kept), so six
    // nodes are drawn; only b;c (1) folds.
    check(
        &PROFILE,
        5,
        &["total", "gc", "main", "a", "b", "c", "other"],
        &[&[0, 13, 0, 0], &[0, 2, 2, 1, 0, 11, 0, 2], &[2, 6, 1, 3, 0, 5, 4, 4], &[3, 3, 3, 4, 0, 2, 2, 5, 4, 1, 1, 6]],
        4,
    );
    // max_nodes 1: only main stays.
    check(&PROFILE, 1, &["total", "main", "other"], &[&[0, 13, 0, 0], &[0, 11, 0, 1, 0, 2, 2, 2], &[0, 11, 11, 2]], 11);
    // As many nodes as the tree has, or more: nothing folds.
    for max_nodes in [7, 8, 1000] {
        let unlimited = FlameGraphLevels::from_folded(&folded(&PROFILE), 0);
        assert_eq!(FlameGraphLevels::from_folded(&folded(&PROFILE), max_nodes), unlimited, "{max_nodes}");
    }
}

/// Random folded stacks over a small alphabet (so prefixes and names repeat), some values zero or
/// negative.
fn arb_folded() -> impl Strategy<Value = Folded> {
    let frame = prop::sample::select(vec!["a", "b", "c", "d", "main"]);
    let stack = prop::collection::vec(frame, 1..7);
    prop::collection::vec((stack, -3i64..1000), 0..40).prop_map(|stacks| {
        let mut folded = Folded::new();
        for (stack, value) in stacks {
            folded.add(stack.into_iter().map(str::to_string).collect(), value);
        }
        folded
    })
}

/// The stacks of the tree `unlimited` that `max_nodes` keeps, by Pyroscope's rule written plainly:
/// sort the node totals, take the `max_nodes`-th largest, keep every node at or above it.
fn kept(unlimited: &BTreeMap<Vec<String>, i64>, max_nodes: usize) -> BTreeMap<Vec<String>, i64> {
    let mut totals: Vec<i64> = unlimited.values().copied().collect();
    totals.sort_unstable_by(|a, b| b.cmp(a));
    let threshold = if max_nodes == 0 || totals.len() <= max_nodes { i64::MIN } else { totals[max_nodes - 1] };
    unlimited.iter().filter(|&(_, &t)| t >= threshold).map(|(s, &t)| (s.clone(), t)).collect()
}

/// Checks a truncated tree against the unlimited one: the kept nodes are exactly those the rule
/// keeps, with their totals, every "other" node is a leaf whose self is its total, and nothing is
/// lost from the total.
fn check_truncated(truncated: &Tree, unlimited: &Tree, max_nodes: usize, sides: usize) {
    let mut real = BTreeMap::new();
    let mut self_sum = vec![0i64; sides];
    truncated.each_path(|path, node| {
        for (sum, value) in self_sum.iter_mut().zip(&node.self_value) {
            *sum += value;
        }
        if node.name == "other" {
            assert!(node.children.is_empty() && node.self_value == node.value, "{path:?}: {node:?}");
        } else {
            real.insert(path.to_vec(), node.value.iter().sum::<i64>());
        }
    });
    assert_eq!(real, kept(&unlimited.totals(), max_nodes));
    assert_eq!(self_sum, unlimited.nodes[0].value);
    assert_eq!(truncated.nodes[0].value, unlimited.nodes[0].value);
}

proptest! {
    #[test]
    fn round_trip_through_grafanas_rules(input in arb_folded()) {
        let graph = FlameGraphLevels::from_folded(&input, 0);
        let tree = decode(&graph.names, &graph.levels, 1).map_err(TestCaseError::fail)?;
        prop_assert_eq!(tree.stacks(0), drawable(&input));
        let total: i64 = drawable(&input).values().sum();
        prop_assert_eq!(graph.total, total);
        prop_assert_eq!(&tree.nodes[0].value, &vec![total]);
        let max_self = tree.stacks(0).values().copied().max().unwrap_or(0);
        prop_assert_eq!(graph.max_self, max_self);
    }

    #[test]
    fn max_nodes_keeps_the_largest_nodes(input in arb_folded(), max_nodes in 1usize..30) {
        let unlimited = FlameGraphLevels::from_folded(&input, 0);
        let unlimited = decode(&unlimited.names, &unlimited.levels, 1).map_err(TestCaseError::fail)?;
        let graph = FlameGraphLevels::from_folded(&input, max_nodes);
        let tree = decode(&graph.names, &graph.levels, 1).map_err(TestCaseError::fail)?;
        check_truncated(&tree, &unlimited, max_nodes, 1);
    }

    #[test]
    fn truncated_stacks_draw_the_truncated_flame_graph(input in arb_folded(), max_nodes in 0usize..30) {
        let graph = FlameGraphLevels::from_folded(&input, max_nodes);
        let expected = decode(&graph.names, &graph.levels, 1).map_err(TestCaseError::fail)?;
        let truncated = analyzer::flame::levels::truncate(&input, max_nodes);
        let redrawn = FlameGraphLevels::from_folded(&truncated, 0);
        let tree = decode(&redrawn.names, &redrawn.levels, 1).map_err(TestCaseError::fail)?;
        prop_assert_eq!(tree.stacks(0), expected.stacks(0));
        prop_assert_eq!(truncated.total(), drawable(&input).values().sum::<i64>());
    }

    #[test]
    fn diff_decodes_into_both_sides(left in arb_folded(), right in arb_folded(), max_nodes in 0usize..30) {
        let diff = FlameGraphDiff::from_folded(&left, &right, 0);
        let tree = decode(&diff.names, &diff.levels, 2).map_err(TestCaseError::fail)?;
        prop_assert_eq!(tree.stacks(0), drawable(&left));
        prop_assert_eq!(tree.stacks(1), drawable(&right));
        let (left_ticks, right_ticks): (i64, i64) = (drawable(&left).values().sum(), drawable(&right).values().sum());
        prop_assert_eq!((diff.left_ticks, diff.right_ticks, diff.total), (left_ticks, right_ticks, left_ticks + right_ticks));
        let truncated = FlameGraphDiff::from_folded(&left, &right, max_nodes);
        let truncated_tree = decode(&truncated.names, &truncated.levels, 2).map_err(TestCaseError::fail)?;
        check_truncated(&truncated_tree, &tree, max_nodes, 2);
    }
}

/// The package's directory at run time (see `pprof_corpus.rs`).
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
}

fn corpus() -> PathBuf {
    manifest_dir().join("../testdata/corpus")
}

/// The gzipped profile.proto files of the corpus (recognised by the gzip magic), sorted.
fn proto_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![corpus()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if read(&path).starts_with(&[0x1f, 0x8b]) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn decode_profile(path: &Path) -> Profile {
    pprof::decode(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every corpus profile and sample type: the levels decode under Grafana's rules, self per
/// function equals `go tool pprof -top`'s flat (our `flat_and_cum`, checked against it in
/// `pprof_corpus.rs`), the root is the profile's total, and a node limit loses nothing.
#[test]
fn corpus_profiles_decode_to_pprof_flat_values() {
    let files = proto_files();
    assert_eq!(files.len(), 48, "{files:#?}");
    let mut checked = 0;
    for path in &files {
        let profile = decode_profile(path);
        for index in 0..profile.sample_types.len() {
            let what = format!("{} sample type {index}", path.display());
            let mut input = Folded::new();
            input.add_profile(&profile, index);
            let graph = FlameGraphLevels::from_folded(&input, 0);
            let tree = decode(&graph.names, &graph.levels, 1).unwrap_or_else(|e| panic!("{what}: {e}"));
            let mut flat: BTreeMap<String, i64> = pprof::flat_and_cum(&profile, index)
                .expect("index in range")
                .into_iter()
                .filter(|&(_, (flat, _))| flat != 0)
                .map(|(name, (flat, _))| (name, flat))
                .collect();
            // A sample with no frames (one in a goroutine profile) has no leaf, so pprof gives no
            // function its flat value though it counts in the total; folding keeps it under
            // `<unknown>` (see `flame::merge`).
            let frameless: i64 =
                profile.samples.iter().filter(|s| profile.stack(s).next().is_none()).map(|s| s.values[index]).sum();
            if frameless != 0 {
                *flat.entry("<unknown>".to_string()).or_insert(0) += frameless;
            }
            assert_eq!(tree.self_by_name(0), flat, "{what}");
            let profile_total: i64 = profile.samples.iter().map(|s| s.values[index]).sum();
            assert_eq!((graph.total, tree.nodes[0].value[0]), (profile_total, profile_total), "{what}");
            for max_nodes in [1, 16, 256] {
                let small = FlameGraphLevels::from_folded(&input, max_nodes);
                let small_tree = decode(&small.names, &small.levels, 1).unwrap_or_else(|e| panic!("{what}: {e}"));
                check_truncated(&small_tree, &tree, max_nodes, 1);
            }
            checked += 1;
        }
    }
    // As in pprof_corpus.rs: 2 + 1 + 4 sample types in the pprof files, 24 per go-dev run.
    assert_eq!(checked, 2 + 1 + 4 + 3 * 24);
}

/// The go-dev runs as baseline and candidate of a diff: each side decodes to its own profile.
#[test]
fn corpus_diff_decodes_into_both_profiles() {
    let dir = corpus().join("go-dev");
    let mut checked = 0;
    for file in ["cpu-10s.pb.gz", "heap.pb.gz", "allocs.pb.gz", "goroutine-t40.pb.gz", "mutex.pb.gz", "block.pb.gz"] {
        let fold = |run: &str| {
            let profile = decode_profile(&dir.join(run).join(file));
            let mut folded = Folded::new();
            folded.add_profile(&profile, profile.default_sample_index().expect("a sample type"));
            folded
        };
        let (left, right) = (fold("fast"), fold("slow"));
        for max_nodes in [0, 64] {
            let diff = FlameGraphDiff::from_folded(&left, &right, max_nodes);
            let tree = decode(&diff.names, &diff.levels, 2).unwrap_or_else(|e| panic!("{file} {max_nodes}: {e}"));
            assert_eq!((diff.left_ticks, diff.right_ticks), (left.total(), right.total()), "{file}");
            assert_eq!(tree.nodes[0].value, [left.total(), right.total()], "{file}");
            if max_nodes == 0 {
                assert_eq!(tree.stacks(0), drawable(&left), "{file} left");
                assert_eq!(tree.stacks(1), drawable(&right), "{file} right");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
}
