//! SVG flame graphs, drawn by inferno (the Rust port of Brendan Gregg's `flamegraph.pl`).
//!
//! Design: inferno picks frame colours at random unless told otherwise; we always set its
//! `deterministic` option (colour from a hash of the function name), so the same input gives
//! byte-identical SVGs, which golden files and reviews need. Differential lines (`stack before
//! after`, see [`super::regression::differential`]) are drawn by the same function: inferno colours
//! a frame red when it grew and blue when it shrank.

use std::io::{self, Write};

use inferno::flamegraph::{self, Options};

use super::Folded;

/// What the SVG says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvgOptions {
    /// Title at the top of the graph.
    pub title: String,
    /// What a value counts, shown on hover (e.g. `nanoseconds`, `bytes`).
    pub count_name: String,
}

impl Default for SvgOptions {
    fn default() -> Self {
        Self { title: "Flame Graph".to_string(), count_name: "samples".to_string() }
    }
}

/// Renders folded lines (`root;child;leaf value`, or differential `stack before after`) as an
/// SVG flame graph into `out`. With no line at all inferno writes an SVG that says so and this
/// returns an error.
pub fn render_lines<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    options: &SvgOptions,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut opt = Options::default();
    opt.deterministic = true;
    opt.title = options.title.clone();
    opt.count_name = options.count_name.clone();
    flamegraph::from_lines(&mut opt, lines, out)
}

/// Renders the stacks of `folded` as an SVG flame graph into `out`.
pub fn render(folded: &Folded, options: &SvgOptions, out: &mut impl Write) -> io::Result<()> {
    let lines = folded.lines();
    render_lines(lines.iter().map(String::as_str), options, out)
}
