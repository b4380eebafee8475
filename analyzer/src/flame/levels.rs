//! Folded stacks in Pyroscope's flame-graph wire layout, the `levels` Grafana's Pyroscope
//! datasource draws.
//!
//! The facts implemented are those of Pyroscope's FlameGraph encoding (grafana/pyroscope
//! `pkg/model/flamegraph.go` and `flamegraph_diff.go`): one level per depth; level 0 is the root
//! alone, named `names[0] = "total"`, at x 0 with self 0; each node is `[x, total, self]` per side
//! followed by its name index (4 values, or 7 for a diff: `[x_left, total_left, self_left,
//! x_right, total_right, self_right, name]`); inside a parent its self comes first, then its
//! children sorted by name; nodes of a level are in ascending x, grouped by parent in the order of
//! the parents above; x is stored as a delta from the end of the previous node of the same level
//! (per side); names are de-duplicated. Grafana's decoder (`levelsToTree`) relies on every one of
//! these: it walks the parents of the level above in order and never back.
//!
//! Design: the stacks are inserted into an arena of nodes (node 0 the root), then each node's
//! children are sorted into one shared array (children of a node are a contiguous range), and the
//! levels are written breadth first, one level's frontier at a time. Nothing recurses, so a stack
//! of any depth costs heap, not call stack; memory is the tree plus one level of frontier. A diff
//! is the same walk over the union tree with two values per node ([`FlameGraphDiff`]).
//!
//! `max_nodes` follows Pyroscope's rule: the threshold is the `max_nodes`-th largest node total
//! (the root not counted; for a diff, the total of both sides together); children whose total is
//! strictly below it are summed into one synthetic child `"other"` of their parent (self = total
//! = that sum), placed after the kept children. Nodes whose total equals the threshold are all
//! kept, so ties can keep more than `max_nodes` nodes, and the `"other"` nodes are not counted.
//! With `max_nodes` or fewer nodes nothing is folded. Since a child never totals more than its
//! parent, the kept nodes form a connected tree. `max_nodes == 0` means no limit: the query API
//! chooses the default (Pyroscope's is 8192).
//!
//! Stacks whose value is zero or negative are left out (as [`Folded::lines`] does): a flame graph
//! cannot draw them, and a node of width zero or less would not fit inside its parent in Grafana's
//! decoder. An empty stack is drawn as one `<unknown>` frame, the name [`mod@super::merge`] gives it.
//! Names are numbered in drawing order (level by level, left to right) after `"total"`. Sums
//! saturate at `i64::MAX` instead of wrapping (a graph that large no longer nests exactly; no real
//! profile comes near it).

use std::collections::HashMap;

use super::Folded;
use crate::hash::FastHash;

const ROOT_NAME: &str = "total";
const OTHER_NAME: &str = "other";
const UNKNOWN_NAME: &str = "<unknown>";

/// One profile's flame graph as Pyroscope's `FlameGraph` message carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlameGraphLevels {
    /// Function names; `names[0]` is `"total"`, the root. Each name appears once.
    pub names: Vec<String>,
    /// One entry per depth, [`FlameGraphLevels::VALUES_PER_NODE`] values per node:
    /// `[x_offset_delta, total, self, name_index]`.
    pub levels: Vec<Vec<i64>>,
    /// Sum of all (positive) stack values: the root's total.
    pub total: i64,
    /// The largest self value of any node.
    pub max_self: i64,
}

impl FlameGraphLevels {
    /// Values per node in [`FlameGraphLevels::levels`].
    pub const VALUES_PER_NODE: usize = 4;

    /// Lays out `folded`, folding nodes below the `max_nodes`-th largest total into `"other"`
    /// (`0`: no limit; see the module documentation).
    pub fn from_folded(folded: &Folded, max_nodes: usize) -> Self {
        let mut tree = TreeBuilder::<1>::default();
        for (stack, &value) in folded.stacks() {
            tree.add(stack, 0, value);
        }
        let tree = tree.finish();
        let [total] = tree.nodes[0].total;
        let laid = tree.layout(max_nodes);
        FlameGraphLevels { names: laid.names, levels: laid.levels, total, max_self: laid.max_self }
    }
}

/// `folded` with the nodes that [`FlameGraphLevels::from_folded`] would fold into `"other"` for
/// `max_nodes` folded the same way, as stacks: a stack is cut at its first folded frame, which
/// becomes `"other"` (summed per parent). A profile so truncated draws the flame graph of the
/// same `max_nodes` — what Pyroscope's `SelectMergeProfile` answers for `max_nodes`. Stacks of
/// value zero or below are left out, as a flame graph leaves them; with `max_nodes` or fewer
/// nodes (or `0`) nothing is folded and the other stacks come back as they are.
pub fn truncate(folded: &Folded, max_nodes: usize) -> Folded {
    let mut tree = TreeBuilder::<1>::default();
    for (stack, &value) in folded.stacks() {
        tree.add(stack, 0, value);
    }
    let tree = tree.finish();
    let threshold = tree.threshold(max_nodes);
    if threshold == i64::MIN {
        let mut out = Folded::new();
        for (stack, &value) in folded.stacks().iter().filter(|&(_, &v)| v > 0) {
            out.add(stack.clone(), value);
        }
        return out;
    }
    let mut out = Folded::new();
    // Depth first without recursion: `path` holds the frames above the node being visited.
    let mut path: Vec<&str> = Vec::new();
    let mut pending: Vec<(u32, usize)> = vec![(0, 0)];
    while let Some((node, depth)) = pending.pop() {
        path.truncate(depth);
        if node != 0 {
            path.push(tree.names[tree.nodes[node as usize].name as usize]);
        }
        let [self_value] = tree.nodes[node as usize].self_value;
        let stack = |extra: Option<&str>| path.iter().copied().chain(extra).map(str::to_string).collect::<Vec<_>>();
        if self_value > 0 {
            out.add(stack(None), self_value);
        }
        let mut other = 0i64;
        for &child in tree.children(node) {
            let [total] = tree.nodes[child as usize].total;
            if tree.nodes[child as usize].combined_total() < threshold {
                other = other.saturating_add(total);
            } else {
                pending.push((child, path.len()));
            }
        }
        if other > 0 {
            out.add(stack(Some(OTHER_NAME)), other);
        }
    }
    out
}

/// Two profiles' flame graphs over their union tree, as Pyroscope's `FlameGraphDiff` message
/// carries them: left is the baseline, right the candidate. A node present on one side only has
/// zeros on the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlameGraphDiff {
    /// Function names; `names[0]` is `"total"`, the root. Each name appears once.
    pub names: Vec<String>,
    /// One entry per depth, [`FlameGraphDiff::VALUES_PER_NODE`] values per node: `[x_left,
    /// total_left, self_left, x_right, total_right, self_right, name_index]`, each x delta-encoded
    /// on its own side.
    pub levels: Vec<Vec<i64>>,
    /// `left_ticks + right_ticks`.
    pub total: i64,
    /// The largest self value of any node on either side.
    pub max_self: i64,
    /// Sum of the left (baseline) stack values.
    pub left_ticks: i64,
    /// Sum of the right (candidate) stack values.
    pub right_ticks: i64,
}

impl FlameGraphDiff {
    /// Values per node in [`FlameGraphDiff::levels`].
    pub const VALUES_PER_NODE: usize = 7;

    /// Lays out the union of `left` (baseline) and `right` (candidate), folding nodes whose
    /// left + right total is below the `max_nodes`-th largest into `"other"` (`0`: no limit; see
    /// the module documentation).
    pub fn from_folded(left: &Folded, right: &Folded, max_nodes: usize) -> Self {
        let mut tree = TreeBuilder::<2>::default();
        for (side, folded) in [left, right].into_iter().enumerate() {
            for (stack, &value) in folded.stacks() {
                tree.add(stack, side, value);
            }
        }
        let tree = tree.finish();
        let [left_ticks, right_ticks] = tree.nodes[0].total;
        let laid = tree.layout(max_nodes);
        FlameGraphDiff {
            names: laid.names,
            levels: laid.levels,
            total: left_ticks.saturating_add(right_ticks),
            max_self: laid.max_self,
            left_ticks,
            right_ticks,
        }
    }
}

/// A node of the arena; `N` values per side (1 for a flame graph, 2 for a diff).
#[derive(Debug, Clone)]
struct Node<const N: usize> {
    /// Index into the builder's names.
    name: u32,
    parent: u32,
    total: [i64; N],
    self_value: [i64; N],
    /// The node's children are `Tree::children[first_child..first_child + child_count]`.
    first_child: u32,
    child_count: u32,
}

impl<const N: usize> Node<N> {
    fn new(name: u32, parent: u32) -> Self {
        Node { name, parent, total: [0; N], self_value: [0; N], first_child: 0, child_count: 0 }
    }

    /// The total the `max_nodes` threshold compares: both sides together.
    fn combined_total(&self) -> i64 {
        self.total.iter().fold(0i64, |acc, &t| acc.saturating_add(t))
    }
}

/// Stacks being inserted: names and children looked up by hash.
#[derive(Debug)]
struct TreeBuilder<'a, const N: usize> {
    names: Vec<&'a str>,
    name_ids: HashMap<&'a str, u32, FastHash>,
    nodes: Vec<Node<N>>,
    /// `(parent, name)` → child.
    child_ids: HashMap<(u32, u32), u32, FastHash>,
}

impl<const N: usize> Default for TreeBuilder<'_, N> {
    fn default() -> Self {
        TreeBuilder {
            names: Vec::new(),
            name_ids: HashMap::default(),
            nodes: vec![Node::new(u32::MAX, u32::MAX)],
            child_ids: HashMap::default(),
        }
    }
}

impl<'a, const N: usize> TreeBuilder<'a, N> {
    fn intern(&mut self, name: &'a str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct frame names");
        self.names.push(name);
        self.name_ids.insert(name, id);
        id
    }

    /// Adds `value` to side `side` of the root-first `stack`.
    fn add(&mut self, stack: &'a [String], side: usize, value: i64) {
        if value <= 0 {
            return;
        }
        let root = &mut self.nodes[0];
        root.total[side] = root.total[side].saturating_add(value);
        let mut at = 0u32;
        for frame in stack.iter().map(String::as_str).chain(stack.is_empty().then_some(UNKNOWN_NAME)) {
            let name = self.intern(frame);
            let next = u32::try_from(self.nodes.len()).expect("fewer than 2^32 flame-graph nodes");
            let child = *self.child_ids.entry((at, name)).or_insert(next);
            if child == next {
                self.nodes.push(Node::new(name, at));
            }
            at = child;
            let node = &mut self.nodes[at as usize];
            node.total[side] = node.total[side].saturating_add(value);
        }
        let leaf = &mut self.nodes[at as usize];
        leaf.self_value[side] = leaf.self_value[side].saturating_add(value);
    }

    /// Sorts every node's children by name into one array.
    fn finish(self) -> Tree<'a, N> {
        let TreeBuilder { names, mut nodes, name_ids, child_ids } = self;
        // The lookups are done with: free them before the sort needs its array.
        drop((name_ids, child_ids));
        let mut children: Vec<u32> = (1..nodes.len() as u32).collect();
        children.sort_unstable_by(|&a, &b| {
            let (a, b) = (&nodes[a as usize], &nodes[b as usize]);
            a.parent.cmp(&b.parent).then_with(|| names[a.name as usize].cmp(names[b.name as usize]))
        });
        for (position, &child) in children.iter().enumerate() {
            let parent = nodes[child as usize].parent as usize;
            let parent = &mut nodes[parent];
            if parent.child_count == 0 {
                parent.first_child = position as u32;
            }
            parent.child_count += 1;
        }
        Tree { names, nodes, children }
    }
}

/// The inserted stacks, children sorted by name.
#[derive(Debug)]
struct Tree<'a, const N: usize> {
    names: Vec<&'a str>,
    /// Node 0 is the root.
    nodes: Vec<Node<N>>,
    children: Vec<u32>,
}

/// What [`Tree::layout`] writes.
#[derive(Debug)]
struct Laid {
    names: Vec<String>,
    levels: Vec<Vec<i64>>,
    max_self: i64,
}

impl<const N: usize> Tree<'_, N> {
    fn children(&self, node: u32) -> &[u32] {
        let node = &self.nodes[node as usize];
        &self.children[node.first_child as usize..(node.first_child + node.child_count) as usize]
    }

    /// The smallest combined total a node may have to be drawn rather than folded into
    /// `"other"`: the `max_nodes`-th largest total of the nodes below the root.
    fn threshold(&self, max_nodes: usize) -> i64 {
        let below_root = self.nodes.len() - 1;
        if max_nodes == 0 || below_root <= max_nodes {
            return i64::MIN;
        }
        let mut totals: Vec<i64> = self.nodes[1..].iter().map(Node::combined_total).collect();
        let (_, nth, _) = totals.select_nth_unstable_by(max_nodes - 1, |a, b| b.cmp(a));
        *nth
    }

    /// Writes the levels breadth first: each level is the children of the previous level's nodes
    /// in order, so x ascends within a level as Grafana's decoder needs.
    fn layout(&self, max_nodes: usize) -> Laid {
        let threshold = self.threshold(max_nodes);
        let mut names = Names::default();
        let mut max_self = 0i64;
        let mut levels: Vec<Vec<i64>> = Vec::new();
        let root = &self.nodes[0];
        let mut root_level = LevelWriter::<N>::default();
        root_level.push([0; N], root.total, [0; N], 0);
        levels.push(root_level.values);
        // The drawn nodes of the last written level with their absolute x per side.
        let mut frontier: Vec<(u32, [i64; N])> = vec![(0, [0; N])];
        loop {
            let mut level = LevelWriter::<N>::default();
            let mut next: Vec<(u32, [i64; N])> = Vec::new();
            for &(parent, parent_x) in &frontier {
                let parent_self = self.nodes[parent as usize].self_value;
                let mut x: [i64; N] = std::array::from_fn(|s| parent_x[s].saturating_add(parent_self[s]));
                let mut other = [0i64; N];
                for &child in self.children(parent) {
                    let node = &self.nodes[child as usize];
                    if node.combined_total() < threshold {
                        add_to(&mut other, node.total);
                        continue;
                    }
                    let name = names.index(self.names[node.name as usize], node.name);
                    level.push(x, node.total, node.self_value, name);
                    max_self = node.self_value.iter().fold(max_self, |m, &s| m.max(s));
                    next.push((child, x));
                    add_to(&mut x, node.total);
                }
                if other.iter().any(|&o| o != 0) {
                    level.push(x, other, other, names.other());
                    max_self = other.iter().fold(max_self, |m, &s| m.max(s));
                }
            }
            if level.values.is_empty() {
                break;
            }
            levels.push(level.values);
            frontier = next;
        }
        Laid { names: names.names, levels, max_self }
    }
}

fn add_to<const N: usize>(sum: &mut [i64; N], values: [i64; N]) {
    for (s, v) in sum.iter_mut().zip(values) {
        *s = s.saturating_add(v);
    }
}

/// One level being written: absolute x values become deltas from the end of the previous node
/// of the level, per side.
#[derive(Debug)]
struct LevelWriter<const N: usize> {
    values: Vec<i64>,
    /// Absolute x + total of the previous node, per side.
    end: [i64; N],
}

impl<const N: usize> Default for LevelWriter<N> {
    fn default() -> Self {
        LevelWriter { values: Vec::new(), end: [0; N] }
    }
}

impl<const N: usize> LevelWriter<N> {
    fn push(&mut self, x: [i64; N], total: [i64; N], self_value: [i64; N], name: u32) {
        for side in 0..N {
            self.values.extend([x[side].saturating_sub(self.end[side]), total[side], self_value[side]]);
            self.end[side] = x[side].saturating_add(total[side]);
        }
        self.values.push(i64::from(name));
    }
}

/// The output name table: `"total"` first, then names in the order they are first drawn, each
/// once (a function named `"total"` or `"other"` shares the index of the root or the folded
/// nodes, as a same-named function would).
#[derive(Debug)]
struct Names {
    names: Vec<String>,
    by_name: HashMap<String, u32, FastHash>,
    /// Output index of each tree name id, once drawn (`u32::MAX` before).
    by_tree_id: Vec<u32>,
}

impl Default for Names {
    fn default() -> Self {
        let mut names = Names { names: Vec::new(), by_name: HashMap::default(), by_tree_id: Vec::new() };
        names.by_string(ROOT_NAME);
        names
    }
}

impl Names {
    fn by_string(&mut self, name: &str) -> u32 {
        if let Some(&index) = self.by_name.get(name) {
            return index;
        }
        let index = self.names.len() as u32;
        self.names.push(name.to_string());
        self.by_name.insert(name.to_string(), index);
        index
    }

    /// The index of tree name `tree_id`, spelled `name`.
    fn index(&mut self, name: &str, tree_id: u32) -> u32 {
        let slot = tree_id as usize;
        if slot >= self.by_tree_id.len() {
            self.by_tree_id.resize(slot + 1, u32::MAX);
        }
        if self.by_tree_id[slot] == u32::MAX {
            self.by_tree_id[slot] = self.by_string(name);
        }
        self.by_tree_id[slot]
    }

    fn other(&mut self) -> u32 {
        self.by_string(OTHER_NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(stacks: &[(&str, i64)]) -> Folded {
        let mut folded = Folded::new();
        for (stack, value) in stacks {
            let frames = if stack.is_empty() { Vec::new() } else { stack.split(';').map(str::to_string).collect() };
            folded.add(frames, *value);
        }
        folded
    }

    /// Lays out `stacks` without a node limit and compares with the expected wire values.
    fn check(stacks: &[(&str, i64)], names: &[&str], levels: &[&[i64]], total: i64, max_self: i64) {
        let got = FlameGraphLevels::from_folded(&folded(stacks), 0);
        let expected = FlameGraphLevels {
            names: names.iter().map(|n| n.to_string()).collect(),
            levels: levels.iter().map(|l| l.to_vec()).collect(),
            total,
            max_self,
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn empty_is_the_root_alone() {
        // What Pyroscope sends for an empty result.
        check(&[], &["total"], &[&[0, 0, 0, 0]], 0, 0);
        let diff = FlameGraphDiff::from_folded(&Folded::new(), &Folded::new(), 10);
        assert_eq!(diff.names, ["total"]);
        assert_eq!(diff.levels, [vec![0; 7]]);
        assert_eq!((diff.total, diff.max_self, diff.left_ticks, diff.right_ticks), (0, 0, 0, 0));
    }

    #[test]
    fn single_stack() {
        check(&[("main;work", 5)], &["total", "main", "work"], &[&[0, 5, 0, 0], &[0, 5, 0, 1], &[0, 5, 5, 2]], 5, 5);
    }

    #[test]
    fn same_name_at_different_depths_shares_an_index() {
        check(
            &[("a;b;a", 2), ("b;a", 3), ("a", 1)],
            &["total", "a", "b"],
            &[&[0, 6, 0, 0], &[0, 3, 1, 1, 0, 3, 0, 2], &[1, 2, 0, 2, 0, 3, 3, 1], &[1, 2, 2, 1]],
            6,
            3,
        );
    }

    #[test]
    fn functions_named_like_the_root_or_other_share_their_index() {
        check(&[("total;other", 1)], &["total", "other"], &[&[0, 1, 0, 0], &[0, 1, 0, 0], &[0, 1, 1, 1]], 1, 1);
    }

    #[test]
    fn zero_and_negative_stacks_are_left_out_and_empty_is_unknown() {
        check(&[("a", 0), ("b", -4), ("", 2)], &["total", "<unknown>"], &[&[0, 2, 0, 0], &[0, 2, 2, 1]], 2, 2);
    }

    /// 100,000 frames deep: the layout must not recurse (the test thread has a 2 MiB stack).
    #[test]
    fn very_deep_stack() {
        const DEPTH: usize = 100_000;
        let mut input = Folded::new();
        input.add(vec!["f".to_string(); DEPTH], 7);
        input.add(vec!["f".to_string(); DEPTH / 2], 1);
        let graph = FlameGraphLevels::from_folded(&input, 0);
        assert_eq!(graph.names, ["total", "f"]);
        assert_eq!(graph.levels.len(), DEPTH + 1);
        assert_eq!(graph.levels[DEPTH / 2], [0, 8, 1, 1]);
        // Below the shorter stack's leaf, x moves right by its self.
        assert_eq!(graph.levels[DEPTH / 2 + 1], [1, 7, 0, 1]);
        assert_eq!(graph.levels[DEPTH], [1, 7, 7, 1]);
        assert_eq!((graph.total, graph.max_self), (8, 7));
        // The 3rd largest total is 8: the deeper half (7) folds into one "other" node.
        let diff = FlameGraphDiff::from_folded(&input, &Folded::new(), 3);
        assert_eq!(diff.names, ["total", "f", "other"]);
        assert_eq!(diff.levels.len(), DEPTH / 2 + 2);
        assert_eq!(diff.levels[DEPTH / 2 + 1], [1, 7, 7, 0, 0, 0, 2]);
    }

    #[test]
    fn diff_over_the_union_tree() {
        // left: main 1, main;a 2. right: main;b 3. Left x: main 0 (self 1), a 1, b 3 (empty).
        let diff = FlameGraphDiff::from_folded(&folded(&[("main;a", 2), ("main", 1)]), &folded(&[("main;b", 3)]), 0);
        assert_eq!(diff.names, ["total", "main", "a", "b"]);
        assert_eq!(
            diff.levels,
            [vec![0, 3, 0, 0, 3, 0, 0], vec![0, 3, 1, 0, 3, 0, 1], vec![1, 2, 2, 0, 0, 0, 2, 0, 0, 0, 0, 3, 3, 3]]
        );
        assert_eq!((diff.total, diff.max_self, diff.left_ticks, diff.right_ticks), (6, 3, 3, 3));
    }

    #[test]
    fn diff_folds_on_both_sides_together() {
        // Totals below the root: main 4+4, a 3+0, b 0+3, c 1+1 (4th largest: 2).
        let left = folded(&[("main;a", 3), ("main;c", 1)]);
        let right = folded(&[("main;b", 3), ("main;c", 1)]);
        let diff = FlameGraphDiff::from_folded(&left, &right, 3);
        assert_eq!(diff.names, ["total", "main", "a", "b", "other"]);
        assert_eq!(
            diff.levels[2],
            [0, 3, 3, 0, 0, 0, 2, 0, 0, 0, 0, 3, 3, 3, 0, 1, 1, 0, 1, 1, 4],
            "a, b, then other with c's values"
        );
    }
}
