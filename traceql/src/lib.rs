//! TraceQL, the trace query language of Grafana Tempo: a parser and an evaluator over plain trace
//! values (`model`), for answering Grafana's `/api/search?q=…` from slo-gate's own store.
//!
//! Design: `parse` checks everything it can up front (syntax, static types, limits against hostile
//! queries, regular expressions compiled once) and refuses the parts of TraceQL this crate does
//! not evaluate by name and byte offset, so a query either runs with Tempo's meaning or fails
//! loudly. `Query::matches` then evaluates one trace at a time in time linear in its spans, and
//! `Query::hints` tells a store what it may prune on without evaluating. No I/O, no other
//! workspace crate: the collector maps its stored spans to `model` types.
//!
//! The accepted grammar, its semantics and its limits are in `docs/traceql.md`.

mod ast;
mod error;
mod eval;
mod hints;
mod lex;
mod model;
mod parse;

pub use error::{ParseError, limits};
pub use hints::Hints;
pub use model::{Span, SpanKind, SpanStatus, Trace, Value};

/// A parsed, validated TraceQL query. Cheap to share between threads and reuse for many traces.
#[derive(Debug, Clone)]
pub struct Query {
    pipeline: ast::Pipeline,
}

/// The spans of one trace a query selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanSet {
    /// Indices into `Trace::spans`, ascending.
    pub spans: Vec<usize>,
    /// How many spans matched (Tempo's `matched`; equals `spans.len()` here, kept separate
    /// because an API answer truncates `spans` to `spss`).
    pub matched: usize,
}

/// Parses and validates a TraceQL query.
pub fn parse(text: &str) -> Result<Query, ParseError> {
    parse::parse(text).map(|pipeline| Query { pipeline })
}

impl Query {
    /// The span sets this query selects in `trace`, or `None` when the trace does not match.
    /// (One span set per trace: `by()`, which would split it, is refused by `parse`.)
    pub fn matches(&self, trace: &Trace) -> Option<Vec<SpanSet>> {
        let view = eval::View::new(trace);
        let spans = eval::pipeline(&view, &self.pipeline);
        (!spans.is_empty()).then(|| vec![SpanSet { matched: spans.len(), spans }])
    }

    /// Necessary conditions every matching trace meets, for a store to prune on.
    pub fn hints(&self) -> Hints {
        hints::pipeline(&self.pipeline)
    }

    /// Whether each span is selected or not on its own: the query is a union (`||`) of filters
    /// and filter stages that read no trace-level field (`rootName`, `rootServiceName`,
    /// `traceDuration`). Then evaluating it on a trace of one span, for each span, selects the
    /// same spans as evaluating it on the whole trace, and every [`Hints`] condition holds for
    /// each selected span itself — a store may evaluate it span by span, without assembling
    /// traces.
    pub fn span_local(&self) -> bool {
        hints::span_local(&self.pipeline)
    }
}

/// The root span of a trace as TraceQL sees it (`rootName`, `rootServiceName`): the span with no
/// parent in the trace, the earliest if several. A store computing root hints must agree with it.
pub fn root_span(trace: &Trace) -> Option<usize> {
    eval::View::new(trace).root()
}
