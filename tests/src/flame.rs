//! Pyroscope flame-graph levels read back the way Grafana reads them, for the end-to-end tests of
//! the Pyroscope query API and the analyzer's tests of the encoding
//! (`analyzer/tests/flame_levels.rs` includes this file). The decoder follows the rules of
//! Grafana's `levelsToTree` (the Pyroscope datasource's `query.go`, as described in our wire notes,
//! not its code): the root's name is `names[levels[0][0]]`, x is undone per level, a node goes
//! under the first parent, walking the previous level in order and never back, that contains it
//! (`parent.start <= start && start + value <= parent.start + parent.value`); a node no parent can
//! take is an error.

use std::collections::BTreeMap;

/// A node of a decoded tree; per side (1, or 2 for a diff): start, value (total) and self.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub start: Vec<i64>,
    pub value: Vec<i64>,
    pub self_value: Vec<i64>,
    pub children: Vec<usize>,
}

/// A decoded tree; node 0 is the root.
#[derive(Debug)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// Decodes `levels` with `sides` sides (`[x, total, self]` per side, then the name index).
///
/// Grafana's built-in datasource never decodes a diff (it does not call `Diff`); for one, a node
/// must fit its parent on both sides, so a node of width zero on one side is still placed by the
/// other.
pub fn decode(names: &[String], levels: &[Vec<i64>], sides: usize) -> Result<Tree, String> {
    let width = 3 * sides + 1;
    let root_level = levels.first().ok_or("no levels")?;
    if root_level.len() != width {
        return Err(format!("level 0 must be one node, it has {} values", root_level.len()));
    }
    // Grafana names the root from the x offset, not the name index.
    let root_name = names.get(usize::try_from(root_level[0]).map_err(|_| "negative root x")?).ok_or("no root name")?;
    let root_name_index = root_level[width - 1];
    if names.get(root_name_index as usize) != Some(root_name) {
        return Err(format!("root x {} does not name the root (name index {root_name_index})", root_level[0]));
    }
    let mut nodes = vec![Node {
        name: root_name.clone(),
        start: (0..sides).map(|s| root_level[3 * s]).collect(),
        value: (0..sides).map(|s| root_level[3 * s + 1]).collect(),
        self_value: (0..sides).map(|s| root_level[3 * s + 2]).collect(),
        children: Vec::new(),
    }];
    let mut parents: Vec<usize> = vec![0];
    for (depth, level) in levels.iter().enumerate().skip(1) {
        if level.is_empty() || level.len() % width != 0 {
            return Err(format!("level {depth} has {} values", level.len()));
        }
        let mut this_level = Vec::new();
        let mut end = vec![0i64; sides];
        let mut p = 0;
        for values in level.chunks(width) {
            let start: Vec<i64> = (0..sides).map(|s| end[s] + values[3 * s]).collect();
            let value: Vec<i64> = (0..sides).map(|s| values[3 * s + 1]).collect();
            for s in 0..sides {
                end[s] = start[s] + value[s];
            }
            let fits = |parent: &Node| {
                (0..sides)
                    .all(|s| parent.start[s] <= start[s] && start[s] + value[s] <= parent.start[s] + parent.value[s])
            };
            while p < parents.len() && !fits(&nodes[parents[p]]) {
                p += 1;
            }
            let Some(&parent) = parents.get(p) else {
                return Err(format!("level {depth}: node {values:?} (start {start:?}) fits no parent at or after"));
            };
            let name =
                names.get(values[width - 1] as usize).ok_or_else(|| format!("name index {}", values[width - 1]))?;
            let id = nodes.len();
            nodes.push(Node {
                name: name.clone(),
                start,
                value,
                self_value: (0..sides).map(|s| values[3 * s + 2]).collect(),
                children: Vec::new(),
            });
            nodes[parent].children.push(id);
            this_level.push(id);
        }
        parents = this_level;
    }
    Ok(Tree { nodes })
}

impl Tree {
    /// Visits every node but the root with its root-first path, depth first without recursion.
    pub fn each_path(&self, mut visit: impl FnMut(&[String], &Node)) {
        let mut path: Vec<String> = Vec::new();
        let mut pending: Vec<(usize, usize)> = self.nodes[0].children.iter().rev().map(|&c| (c, 0)).collect();
        while let Some((id, depth)) = pending.pop() {
            let node = &self.nodes[id];
            path.truncate(depth);
            path.push(node.name.clone());
            visit(&path, node);
            pending.extend(node.children.iter().rev().map(|&c| (c, depth + 1)));
        }
    }

    /// Self values by root-first stack on `side`, zeros left out: what the tree says was folded.
    pub fn stacks(&self, side: usize) -> BTreeMap<Vec<String>, i64> {
        let mut out = BTreeMap::new();
        self.each_path(|path, node| {
            if node.self_value[side] != 0 {
                *out.entry(path.to_vec()).or_insert(0) += node.self_value[side];
            }
        });
        out
    }

    /// Self per function name on `side`, zeros left out (pprof's flat).
    pub fn self_by_name(&self, side: usize) -> BTreeMap<String, i64> {
        let mut out: BTreeMap<String, i64> = BTreeMap::new();
        self.each_path(|_, node| *out.entry(node.name.clone()).or_insert(0) += node.self_value[side]);
        out.retain(|_, v| *v != 0);
        out
    }

    /// Combined total (both sides) by root-first stack, for every node.
    pub fn totals(&self) -> BTreeMap<Vec<String>, i64> {
        let mut out = BTreeMap::new();
        self.each_path(|path, node| {
            out.insert(path.to_vec(), node.value.iter().sum());
        });
        out
    }
}

impl Tree {
    /// pprof's flat and cum per function on `side` (`go tool pprof -top`): self summed over
    /// every node of the function, total summed over the nodes with no ancestor of the same
    /// name (so recursion counts once).
    pub fn flat_and_cum(&self, side: usize) -> BTreeMap<String, (i64, i64)> {
        let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        self.each_path(|path, node| {
            let entry = out.entry(node.name.clone()).or_insert((0, 0));
            entry.0 += node.self_value[side];
            if !path[..path.len() - 1].contains(&node.name) {
                entry.1 += node.value[side];
            }
        });
        out
    }
}
