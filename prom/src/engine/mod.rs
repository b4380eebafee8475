//! PromQL evaluation over any [`Queryable`], with Prometheus 2.42's semantics.
//!
//! Design: every expression is evaluated as an *instant* at one evaluation time; a range query
//! is the instant evaluation repeated at every step, its vectors gathered into series by label
//! set. PromQL is defined per step (Prometheus's `rangeEval` computes each step from the
//! arguments' values at that step alone), so the two are equivalent; step-invariant `@`
//! sub-trees, which Prometheus evaluates once, are here evaluated at every step, which costs
//! time but not correctness. Two things are not per step and are kept across steps: each
//! selector asks the source once per query, for all the times the query can look at
//! (`Evaluator::prefetch`), and the check that range-vector functions and unary minus never
//! map two series to one label set covers the whole query (`Evaluator::note_origin`).
//!
//! Bounds: the expression tree is at most [`MAX_DEPTH`] deep and holds at most
//! [`MAX_OPERATORS`] operators (checked before evaluation; the evaluator recurses once per
//! level), samples held are counted against [`Options::max_samples`], and the deadline is
//! checked at every step, subquery step and selection.
//!
//! Rules followed (Prometheus `promql/engine.go`):
//! - an instant selector at `t` takes each series' latest sample in `[t - lookback, t]`
//!   (`vectorSelectorSingle` rejects only samples older than `t - lookback`), unless that
//!   sample is a staleness marker;
//! - a range selector `[r]` at `t` takes the samples in `[t - r, t]`, both ends included
//!   (`matrixIterSlice`, 2.42), staleness markers dropped;
//! - `offset o` and `@ a` move the time a selector looks at to `(a or t) - o`; `@ start()` and
//!   `@ end()` are the query's start and end, also inside subqueries;
//! - a subquery `e[r:s] offset o` at `t` evaluates `e` at every multiple of `s` in
//!   `[t - o - r, t - o]` (its steps are aligned to the epoch, not to the query), `s` defaulting
//!   to [`Options::subquery_step_ms`] (the server's global evaluation interval, 1m by default).

mod aggregate;
mod binary;
mod functions;
mod gosort;
mod quantile;
mod regex;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{self, AtModifier, Expr, Offset};

use crate::model::{Labels, Queryable, Sample, SelectError, Series, is_stale_marker};

/// Limits and defaults of one evaluation.
#[derive(Debug, Clone)]
pub struct Options {
    /// How far back an instant selector looks for a sample (Prometheus `--query.lookback-delta`).
    pub lookback_ms: i64,
    /// The most samples an evaluation may hold (the role of Prometheus's `--query.max-samples`,
    /// with its error message). Counted, each against this limit: the samples selected from the
    /// source for the whole query (held in memory here, where Prometheus streams chunks); the
    /// samples loaded by selectors during one step plus those a range query's result holds so
    /// far. Close to Prometheus's count, not identical: its peak also includes intermediate
    /// results of other steps.
    pub max_samples: usize,
    /// When the evaluation gives up with [`Error::Timeout`].
    pub deadline: Option<Instant>,
    /// The step of a subquery written without one (`x[1h:]`): Prometheus uses the global
    /// evaluation interval, 1m unless configured.
    pub subquery_step_ms: i64,
    /// Most threads a range query's steps are evaluated on (each takes at least
    /// [`MIN_STEPS_PER_THREAD`] steps); by default the cores, at most 4.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lookback_ms: 300_000,
            max_samples: 50_000_000,
            deadline: None,
            subquery_step_ms: 60_000,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()).min(4),
        }
    }
}

/// The result of an instant query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, v: String },
    Vector(Vec<VectorSample>),
    Matrix(Vec<Series>),
}

/// One element of an instant vector: a series' labels, the evaluation time and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// Why a query has no answer; the variants are Prometheus's error types.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The query is malformed, uses a construct this engine does not evaluate, or has a bad
    /// argument (`bad_data`, HTTP 400).
    #[error("{0}")]
    BadData(String),
    /// The query is well-formed but cannot be answered (`execution`, HTTP 422).
    #[error("{0}")]
    Execution(String),
    /// The deadline passed (`timeout`, HTTP 503).
    #[error("query timed out in expression evaluation")]
    Timeout,
    /// The source of series failed (`internal`, HTTP 500).
    #[error("{0}")]
    Storage(String),
}

/// Most steps of a range query, beyond the first (Prometheus's API: 11,000 points a series).
const MAX_POINTS: i128 = 11_000;

impl Error {
    /// Prometheus's `errorType` for this error, as its HTTP API answers it.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::BadData(_) => "bad_data",
            Error::Execution(_) => "execution",
            Error::Timeout => "timeout",
            Error::Storage(_) => "internal",
        }
    }

    /// The HTTP status Prometheus answers with this error (`web/api/v1/api.go`).
    pub fn http_status(&self) -> u16 {
        match self {
            Error::BadData(_) => 400,
            Error::Execution(_) => 422,
            Error::Timeout => 503,
            Error::Storage(_) => 500,
        }
    }
}

/// Deepest expression tree evaluated; deeper ones are refused before evaluation (the evaluator
/// recurses once per level).
pub const MAX_DEPTH: usize = 256;

const TOO_MANY_SAMPLES: &str = "query processing would load too many samples into memory in query execution";

/// Evaluates `query` at `t_ms`.
pub fn instant(query: &str, t_ms: i64, source: &(dyn Queryable + Sync), opts: &Options) -> Result<Value, Error> {
    let expr = parse(query)?;
    let mut ev = Evaluator::new(source, opts, t_ms, t_ms);
    ev.prefetch(&expr)?;
    Ok(match ev.eval(&expr, t_ms)? {
        Val::Scalar(v) => Value::Scalar { t: t_ms, v },
        Val::Str(v) => Value::String { t: t_ms, v },
        Val::Vector(elems) => {
            Value::Vector(elems.into_iter().map(|e| VectorSample { labels: e.labels, t: t_ms, v: e.v }).collect())
        }
        Val::Matrix(m) => {
            let mut series: Vec<Series> =
                m.series.iter().map(|s| Series { labels: s.labels.clone(), samples: s.samples().to_vec() }).collect();
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Matrix(series)
        }
    })
}

/// Evaluates `query` at every step from `start_ms` to `end_ms`; the series are sorted by labels.
pub fn range(
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    source: &(dyn Queryable + Sync),
    opts: &Options,
) -> Result<Vec<Series>, Error> {
    if step_ms <= 0 {
        return Err(Error::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if end_ms < start_ms {
        return Err(Error::BadData("end timestamp must not be before start time".into()));
    }
    // Prometheus's HTTP API refuses these before its engine sees them; here the engine is the
    // only guard, so it refuses them itself, with the API's words.
    if (end_ms as i128 - start_ms as i128) / step_ms as i128 > MAX_POINTS {
        return Err(Error::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                .into(),
        ));
    }
    let expr = parse(query)?;
    match expr.value_type() {
        parser::value::ValueType::Scalar | parser::value::ValueType::Vector => {}
        other => {
            return Err(Error::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                type_name(other)
            )));
        }
    }
    let mut ev = Evaluator::new(source, opts, start_ms, end_ms);
    ev.prefetch(&expr)?;
    // The steps are independent (module docs): consecutive runs of them are evaluated on
    // threads of their own, each with its own evaluator over the shared prefetched samples.
    let steps = ((end_ms as i128 - start_ms as i128) / step_ms as i128 + 1) as usize;
    let threads = opts.threads.min(steps / MIN_STEPS_PER_THREAD).max(1);
    if threads == 1 {
        let (out, _) = ev.eval_steps(&expr, start_ms, end_ms, step_ms, opts.max_samples)?;
        return Ok(out.into_series());
    }
    let per = steps.div_ceil(threads) as i64;
    let parts: Vec<(i64, i64)> = (0..threads as i64)
        .map(|k| {
            let at = |n: i64| start_ms.saturating_add(n.saturating_mul(step_ms));
            (at(k * per), at((k + 1) * per - 1).min(end_ms))
        })
        .filter(|(a, b)| a <= b)
        .collect();
    let cache = Arc::clone(&ev.cache);
    let results: Vec<Result<(Gathered, Origins), Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .map(|&(a, b)| {
                let (cache, expr) = (Arc::clone(&cache), &expr);
                std::thread::Builder::new()
                    .name("promql".into())
                    .stack_size(PART_STACK)
                    .spawn_scoped(scope, move || {
                        let mut ev = Evaluator::new(source, opts, start_ms, end_ms);
                        ev.cache = cache;
                        ev.eval_steps(expr, a, b, step_ms, opts.max_samples)
                    })
                    .map_err(|e| Error::Storage(format!("cannot start a query thread: {e}")))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h?.join().unwrap_or_else(|_| Err(Error::Storage("a query thread panicked".into()))))
            .collect()
    });
    // The first part's error is the one a step-by-step evaluation meets first.
    let mut out = Gathered::default();
    let mut origins = Origins::default();
    for result in results {
        let (part, part_origins) = result?;
        for (key, input) in part_origins {
            match origins.get(&key) {
                Some(first) if *first != input => {
                    return Err(Error::Execution("vector cannot contain metrics with the same labelset".into()));
                }
                Some(_) => {}
                None => {
                    origins.insert(key, input);
                }
            }
        }
        for (labels, samples) in part.series {
            out.extend(&labels, samples);
        }
        if out.held > opts.max_samples {
            return Err(Error::Execution(TOO_MANY_SAMPLES.into()));
        }
    }
    Ok(out.into_series())
}

/// Fewest steps worth a thread.
pub const MIN_STEPS_PER_THREAD: usize = 64;
/// Stack of a query thread: the evaluator recurses once per level of the expression tree
/// ([`MAX_DEPTH`]), which needs less than 2 MiB.
const PART_STACK: usize = 4 << 20;

/// Which input label set each result label set of a name-dropping node came from
/// ([`Evaluator::note_origin`]).
type Origins = std::collections::HashMap<(usize, Labels), Labels>;

/// Steps' values gathered into series by label set.
#[derive(Default)]
struct Gathered {
    series: Vec<(Labels, Vec<Sample>)>,
    index: LabelIndex,
    /// Samples held.
    held: usize,
}

impl Gathered {
    fn push(&mut self, labels: &Labels, sample: Sample) {
        let (i, new) = self.index.slot(labels);
        if new {
            self.series.push((labels.clone(), Vec::new()));
        }
        self.series[i].1.push(sample);
        self.held += 1;
    }

    /// Adds `samples`, later than any of `labels` held.
    fn extend(&mut self, labels: &Labels, samples: Vec<Sample>) {
        let (i, new) = self.index.slot(labels);
        self.held += samples.len();
        if new {
            self.series.push((labels.clone(), samples));
        } else {
            self.series[i].1.extend(samples);
        }
    }

    /// The series, sorted by labels.
    fn into_series(self) -> Vec<Series> {
        let mut out: Vec<Series> =
            self.series.into_iter().map(|(labels, samples)| Series { labels, samples }).collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// Numbers label sets in the order they come, equal contents the same number. The label sets
/// of one series or group at successive steps are mostly clones of one allocation (the
/// [`Evaluator`]'s memos hand them out), so a set seen before is found by its identity, an
/// integer hash; a new allocation is looked up by contents once. The identities it remembers
/// are bounded (forgetting one only costs a lookup by contents).
#[derive(Default)]
pub(crate) struct LabelIndex {
    by_identity: rustc_hash::FxHashMap<usize, (Labels, usize)>,
    by_labels: std::collections::HashMap<Labels, usize>,
}

impl LabelIndex {
    /// The number of `labels`, and whether it is new (then it is the count of sets before it).
    pub(crate) fn slot(&mut self, labels: &Labels) -> (usize, bool) {
        if let Some((_, i)) = self.by_identity.get(&labels.identity()) {
            return (*i, false);
        }
        let next = self.by_labels.len();
        let i = *self.by_labels.entry(labels.clone()).or_insert(next);
        if self.by_identity.len() >= ByIdentity::<()>::LIMIT {
            self.forget_identities();
        }
        self.by_identity.insert(labels.identity(), (labels.clone(), i));
        (i, i == next)
    }

    fn forget_identities(&mut self) {
        self.by_identity.clear();
    }
}

/// Values computed once per node and label set, found by the label set's allocation
/// ([`Labels::identity`]): an integer hash instead of hashing label contents, at every step of
/// every series. Each entry keeps a clone of its label set, so no other set can take its
/// address while it is here. Label sets made anew at every step (under a subquery, say) would
/// grow it without end: at [`ByIdentity::LIMIT`] entries it starts over.
pub(crate) struct ByIdentity<V> {
    map: rustc_hash::FxHashMap<(usize, usize), (Labels, V)>,
}

impl<V> Default for ByIdentity<V> {
    fn default() -> Self {
        ByIdentity { map: Default::default() }
    }
}

impl<V> ByIdentity<V> {
    const LIMIT: usize = 1 << 19;

    pub(crate) fn get(&self, node: usize, labels: &Labels) -> Option<&V> {
        self.map.get(&(node, labels.identity())).map(|(_, v)| v)
    }

    pub(crate) fn insert(&mut self, node: usize, labels: &Labels, v: V) {
        if self.map.len() >= Self::LIMIT {
            self.map.clear();
        }
        self.map.insert((node, labels.identity()), (labels.clone(), v));
    }
}

/// The matchers of every vector and range selector of `query`, in the order they appear
/// (Prometheus's `parser.ExtractSelectors`, which `query_exemplars` uses).
pub fn selectors(query: &str) -> Result<Vec<Matchers>, Error> {
    fn walk(expr: &Expr, out: &mut Vec<Matchers>) {
        match expr {
            Expr::VectorSelector(vs) => out.push(selector_matchers(vs)),
            Expr::MatrixSelector(ms) => out.push(selector_matchers(&ms.vs)),
            Expr::Subquery(sq) => walk(&sq.expr, out),
            Expr::Aggregate(a) => {
                walk(&a.expr, out);
                if let Some(p) = &a.param {
                    walk(p, out);
                }
            }
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
            _ => {}
        }
    }
    // Depth is bounded by `parse`.
    let expr = parse(query)?;
    let mut out = Vec::new();
    walk(&expr, &mut out);
    Ok(out)
}

fn type_name(t: parser::value::ValueType) -> &'static str {
    match t {
        parser::value::ValueType::Scalar => "scalar",
        parser::value::ValueType::Vector => "instant vector",
        parser::value::ValueType::Matrix => "range vector",
        parser::value::ValueType::String => "string",
    }
}

/// Most operators a query may hold: the parser builds (and drops) operator chains recursively,
/// and a chain of 20000 overflows a 2 MiB thread stack; 4096 leave a wide margin.
pub const MAX_OPERATORS: usize = 4096;

/// Parses `query`, refusing trees deeper than [`MAX_DEPTH`]. Bracket nesting and the number of
/// operators are checked on the text first, so that a pathological query never reaches the
/// (recursive) parser.
fn parse(query: &str) -> Result<Expr, Error> {
    let mut operators = 0usize;
    let mut word = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in query.chars() {
        if in_quote(&mut quote, &mut escaped, c) {
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            if matches!(word.as_str(), "and" | "or" | "unless" | "atan2") {
                operators += 1;
            }
            word.clear();
        }
        if matches!(c, '+' | '-' | '*' | '/' | '%' | '^' | '<' | '>' | '=' | '!') {
            operators += 1;
        }
        if operators > MAX_OPERATORS {
            return Err(Error::BadData(format!("query has more than {MAX_OPERATORS} operators")));
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Error::BadData(format!("query is nested deeper than {MAX_DEPTH} levels")));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if let Some(what) = newer_syntax(query) {
        return Err(unsupported(what));
    }
    register_functions();
    // promql-parser 0.11 drops the position of a syntax error (its `parse` discards the
    // parser's error list); the errors its lexer finds are placed here as Prometheus places
    // them, the grammar's have no position.
    if let Some(refused) = number_as_duration(query) {
        return Err(Error::BadData(refused));
    }
    // Should another of promql-parser's grammar actions panic, that is the query's fault too,
    // and is answered like any syntax error.
    let parsed = std::panic::catch_unwind(|| parser::parse(query))
        .unwrap_or_else(|_| Err("the parser failed on this query (a number out of range for a duration?)".to_string()));
    let expr = parsed.map_err(|e| match error_position(query, &e) {
        Some(at) => Error::BadData(format!("{at}: parse error: {e}")),
        None if e == GRAMMAR_ERROR => match grammar_error(query) {
            Some(found) => Error::BadData(found),
            None => Error::BadData(format!("parse error: {e}")),
        },
        None => Error::BadData(format!("parse error: {e}")),
    })?;
    // Iterative depth measure of the parsed tree (binary operator chains nest without brackets).
    let mut stack: Vec<(&Expr, usize)> = vec![(&expr, 1)];
    while let Some((e, d)) = stack.pop() {
        if d > MAX_DEPTH {
            return Err(Error::BadData(format!("query is nested deeper than {MAX_DEPTH} levels")));
        }
        match e {
            Expr::Aggregate(a) => {
                stack.push((&a.expr, d + 1));
                if let Some(p) = &a.param {
                    stack.push((p, d + 1));
                }
            }
            Expr::Unary(u) => stack.push((&u.expr, d + 1)),
            Expr::Binary(b) => {
                stack.push((&b.lhs, d + 1));
                stack.push((&b.rhs, d + 1));
            }
            Expr::Paren(p) => stack.push((&p.expr, d + 1)),
            Expr::Subquery(s) => stack.push((&s.expr, d + 1)),
            Expr::Call(c) => {
                for a in &c.args.args {
                    stack.push((a, d + 1));
                }
            }
            _ => {}
        }
    }
    Ok(expr)
}

/// Where Prometheus 2.42 places the lexical error `message` in `query`, as `line:column`
/// (1-based, columns in bytes): an unclosed bracket or an early end at the end of the input, an
/// unterminated string at its opening quote, an unexpected closing bracket just after it.
/// `None` for the errors its grammar finds, whose place the parser does not say.
fn error_position(query: &str, message: &str) -> Option<String> {
    if message.starts_with("unclosed left") || message.starts_with("unexpected end of input") {
        return Some(line_col(query, query.len()));
    }
    let unterminated = message.starts_with("unterminated quoted string");
    let closing = ["parenthesis", "bracket", "brace"]
        .iter()
        .zip([')', ']', '}'])
        .find(|(word, _)| message.starts_with(&format!("unexpected right {word}")))
        .map(|(_, c)| c);
    if !unterminated && closing.is_none() {
        return None;
    }
    let mut depth = [0usize; 3];
    let mut found = None;
    let end = scan_code(query, |i, c| {
        match c {
            '(' => depth[0] += 1,
            '[' => depth[1] += 1,
            '{' => depth[2] += 1,
            ')' | ']' | '}' => {
                let k = [')', ']', '}'].iter().position(|&x| x == c).expect("a closing bracket");
                if depth[k] == 0 && closing == Some(c) {
                    found = Some(line_col(query, i + 1));
                    return false;
                }
                depth[k] = depth[k].saturating_sub(1);
            }
            _ => {}
        }
        true
    });
    found.or_else(|| end.open_quote.filter(|_| unterminated).map(|at| line_col(query, at)))
}

/// `line:column` of byte `at` of `query` (1-based, columns in bytes), as Prometheus writes a
/// position.
fn line_col(query: &str, at: usize) -> String {
    let before = &query[..at.min(query.len())];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |nl| nl + 1) + 1;
    format!("{line}:{col}")
}

/// How [`scan_code`] left a text: the byte offset of a string still open, and whether it ends in
/// a comment.
struct ScanEnd {
    open_quote: Option<usize>,
    in_comment: bool,
}

/// Calls `visit` with the byte offset of each character of `text` that is code — outside
/// quoted strings and `#` comments — until it answers `false`.
fn scan_code(text: &str, mut visit: impl FnMut(usize, char) -> bool) -> ScanEnd {
    let (mut quote, mut opened_at) = (None, 0);
    let (mut escaped, mut comment) = (false, false);
    for (i, c) in text.char_indices() {
        if comment {
            comment = c != '\n';
            continue;
        }
        if in_quote(&mut quote, &mut escaped, c) {
            continue;
        }
        match c {
            '#' => comment = true,
            '"' | '\'' | '`' => (quote, opened_at) = (Some(c), i),
            _ if !visit(i, c) => break,
            _ => {}
        }
    }
    ScanEnd { open_quote: quote.map(|_| opened_at), in_comment: comment }
}

/// What promql-parser 0.11 says of every error its grammar finds (its `parse` discards the
/// parser's own errors, and with them where they are).
const GRAMMAR_ERROR: &str = "invalid promql query";
/// Longest query whose grammar error [`grammar_error`] looks for.
pub(crate) const MAX_GRAMMAR_SEARCH_BYTES: usize = 4 << 10;
/// Most token prefixes [`grammar_error`] tries to complete.
const MAX_GRAMMAR_SEARCH_PREFIXES: usize = 64;
/// What [`grammar_error`] appends to a prefix, before closing its brackets, to complete it:
/// an operand, a duration, an aggregation's or function's argument list, grouping labels, a
/// matcher's operator and value, a further argument, the end of a modifier's label list.
const COMPLETIONS: [&str; 16] = [
    "", " 1", " x", " 5m", " (x)", " (x[5m])", " (a)", " (a) (x)", " (a) 1", "=\"v\"", "\"v\"", " 1, x", ", x", ", 1",
    "a) 1", ") 1",
];

/// Where the grammar's error is, as Prometheus 2.42 reports it (`line:col: parse error:
/// unexpected ...`, at the first token after which the query cannot be valid PromQL, or at the
/// end of the input when it could still go on). The parser does not say, so the place is found
/// from outside: the longest prefix of whole tokens that some completion ([`COMPLETIONS`] and the
/// brackets it leaves open, closed) turns into a query that parses is the longest prefix that
/// can be valid — a completion that parses proves it —, and the token after it is the error.
/// A prefix the completions cannot finish (the third argument of a five-argument function)
/// would place the error too early, so prefixes are tried from the longest down. `None` for a
/// query over [`MAX_GRAMMAR_SEARCH_BYTES`] or when no prefix among the
/// [`MAX_GRAMMAR_SEARCH_PREFIXES`] longest completes.
fn grammar_error(query: &str) -> Option<String> {
    use lrpar::{Lexeme, Lexer};
    if query.len() > MAX_GRAMMAR_SEARCH_BYTES {
        return None;
    }
    let lexer = parser::lex::lexer(query).ok()?;
    let spans: Vec<(usize, usize)> =
        lexer.iter().filter_map(Result::ok).map(|l| (l.span().start(), l.span().end())).collect();
    let completes = |prefix: &str| {
        COMPLETIONS.iter().any(|tail| {
            let mut text = format!("{prefix}{tail}");
            let mut open = Vec::new();
            let end = scan_code(&text, |_, c| {
                match c {
                    '(' => open.push(')'),
                    '[' => open.push(']'),
                    '{' => open.push('}'),
                    ')' | ']' | '}' => {
                        open.pop();
                    }
                    _ => {}
                }
                true
            });
            if end.open_quote.is_some() {
                return false;
            }
            if end.in_comment {
                text.push('\n');
            }
            text.extend(open.iter().rev());
            parses(&text)
        })
    };
    let line_col = |at: usize| line_col(query, at);
    for k in (0..=spans.len()).rev().take(MAX_GRAMMAR_SEARCH_PREFIXES) {
        let end = if k == 0 { 0 } else { spans[k - 1].1 };
        if !completes(&query[..end]) {
            continue;
        }
        return Some(match spans.get(k) {
            None => format!("{}: parse error: unexpected end of input", line_col(query.len())),
            Some(&(start, stop)) => {
                format!("{}: parse error: unexpected {:?}", line_col(start), &query[start..stop])
            }
        });
    }
    None
}

/// A number where Prometheus 2.42 wants a duration (after `offset`, in `[...]`), refused as
/// 2.42 refuses it, at its place. promql-parser 0.11 takes such numbers as seconds and panics
/// on one no duration can hold (`x offset -1e309`, `x[inf]`). An `@` timestamp that is not a
/// finite number of seconds within ±10^15 is refused too.
fn number_as_duration(query: &str) -> Option<String> {
    use lrpar::{Lexeme, Lexer};
    use parser::token::{T_ADD, T_AT, T_COLON, T_LEFT_BRACKET, T_NUMBER, T_OFFSET, T_SUB};
    let lexer = parser::lex::lexer(query).ok()?;
    let tokens: Vec<(u16, usize, usize)> =
        lexer.iter().filter_map(Result::ok).map(|l| (l.tok_id(), l.span().start(), l.span().end())).collect();
    let line_col = |at: usize| line_col(query, at);
    for (i, &(id, start, end)) in tokens.iter().enumerate() {
        if id != T_NUMBER {
            continue;
        }
        let before = |k: usize| i.checked_sub(k).map(|j| tokens[j].0);
        let signed = matches!(before(1), Some(T_SUB | T_ADD));
        let lead = if signed { before(2) } else { before(1) };
        let text = &query[start..end];
        match lead {
            Some(T_OFFSET | T_LEFT_BRACKET | T_COLON) => {
                return Some(format!(
                    "{}: parse error: unexpected number {text:?}, expected duration",
                    line_col(start)
                ));
            }
            Some(T_AT) => {
                let finite =
                    text.parse::<f64>().is_ok_and(|v| v.is_finite() && v.abs() <= 1e15) || text.starts_with("0x");
                if !finite {
                    return Some(format!(
                        "{}: parse error: timestamp {text:?} of the @ modifier is out of range",
                        line_col(start)
                    ));
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether promql-parser takes `text`. Some of its grammar actions panic on numbers no
/// duration can hold (`x offset -1e309 ...`): a panic is a refusal.
fn parses(text: &str) -> bool {
    std::panic::catch_unwind(|| parser::parse(text).is_ok()).unwrap_or(false)
}

/// Whether `c` belongs to the quoted string `quote` is in (the closing quote too), moving the
/// scan on: a backslash escapes the next character except in a backtick string.
fn in_quote(quote: &mut Option<char>, escaped: &mut bool, c: char) -> bool {
    let Some(q) = *quote else { return false };
    if *escaped {
        *escaped = false;
    } else if c == '\\' && q != '`' {
        *escaped = true;
    } else if c == q {
        *quote = None;
    }
    true
}

/// Syntax promql-parser 0.11 accepts but Prometheus 2.42 does not (it came with Prometheus 3):
/// a duration used as a number (`time() - 5m`; 2.42 takes durations only in `[...]` and after
/// `offset`), and quoted label or metric names in braces (`{"room"="x"}`, `{"name"}`) or in
/// label lists (`by ("room")`). Found on a rough token scan of the text.
fn newer_syntax(query: &str) -> Option<&'static str> {
    #[derive(PartialEq)]
    enum Tok {
        Str,
        Word(String),
        Punct(char),
    }
    let mut toks: Vec<Tok> = Vec::new();
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            '"' | '\'' | '`' => {
                let mut escaped = false;
                for n in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if n == '\\' && c != '`' {
                        escaped = true;
                    } else if n == c {
                        break;
                    }
                }
                toks.push(Tok::Str);
            }
            // Identifiers (colons included: `job:rate:5m` is a metric name) and numbers.
            c if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == ':' => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' || n == '.' || n == ':' {
                        w.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                toks.push(Tok::Word(w));
            }
            c if c.is_whitespace() => {}
            c => toks.push(Tok::Punct(c)),
        }
    }
    let is_duration = |w: &str| {
        let mut rest = w;
        if rest.is_empty() {
            return false;
        }
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                return false;
            }
            rest = &rest[digits..];
            let unit = ["ms", "s", "m", "h", "d", "w", "y"].iter().find(|u| rest.starts_with(*u));
            match unit {
                Some(u) => rest = &rest[u.len()..],
                None => return false,
            }
        }
        true
    };
    let (mut brackets, mut braces) = (0usize, 0usize);
    // Inside the label list of by/without/on/ignoring/group_left/group_right.
    let mut label_list = false;
    for (i, t) in toks.iter().enumerate() {
        let prev = |k: usize| i.checked_sub(k).map(|j| &toks[j]);
        match t {
            Tok::Punct('(')
                if matches!(prev(1), Some(Tok::Word(w))
                    if matches!(w.as_str(), "by" | "without" | "on" | "ignoring" | "group_left" | "group_right")) =>
            {
                label_list = true;
            }
            Tok::Punct(')') => label_list = false,
            Tok::Str if label_list => return Some("a quoted label name"),
            Tok::Punct('[') => brackets += 1,
            Tok::Punct(']') => brackets = brackets.saturating_sub(1),
            Tok::Punct('{') => braces += 1,
            Tok::Punct('}') => braces = braces.saturating_sub(1),
            Tok::Str if braces > 0 && matches!(prev(1), Some(Tok::Punct('{' | ','))) => {
                return Some("a quoted label or metric name");
            }
            Tok::Word(w) if brackets == 0 && is_duration(w) => {
                let after_offset = matches!(prev(1), Some(Tok::Word(o)) if o == "offset")
                    || matches!(prev(1), Some(Tok::Punct('-')))
                        && matches!(prev(2), Some(Tok::Word(o)) if o == "offset");
                if !after_offset {
                    return Some("a duration used as a number");
                }
            }
            _ => {}
        }
    }
    None
}

/// Teaches the parser the functions of Prometheus 2.42 it no longer knows: `holt_winters`
/// (renamed `double_exponential_smoothing` in Prometheus 3).
fn register_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::value::ValueType;
        let holt_winters = parser::Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        // Registration fails only for a name the parser already knows, which is then fine.
        let _ = parser::register_extra_functions(vec![holt_winters]);
    });
}

/// One element of an instant vector during evaluation. `t` is the timestamp of the sample a
/// selector picked (what `timestamp()` reports); other operations set it to the evaluation time.
#[derive(Debug, Clone)]
pub(crate) struct Elem {
    pub labels: Labels,
    pub v: f64,
    pub t: i64,
}

/// A range vector at one evaluation time: the series and the window `[start, end]` they were
/// taken from (`rate` extrapolates to the window's ends), `range_ms` its length.
#[derive(Debug, Clone)]
pub(crate) struct RangeVal {
    pub series: Vec<RangeSeries>,
    pub start: i64,
    pub end: i64,
    pub range_ms: i64,
}

/// One series of a range vector: a window of samples shared with the selector's prefetched
/// series (a range query's steps look at overlapping windows of the same samples; none is
/// copied).
#[derive(Debug, Clone)]
pub(crate) struct RangeSeries {
    pub labels: Labels,
    all: Arc<Vec<Sample>>,
    window: std::ops::Range<usize>,
}

impl RangeSeries {
    pub(crate) fn samples(&self) -> &[Sample] {
        &self.all[self.window.clone()]
    }
}

/// A selector's series over every time a query looks at, selected once
/// ([`Evaluator::prefetch`]). A range selector's have their staleness markers removed (a range
/// never includes them).
struct Selected {
    lo: i64,
    hi: i64,
    series: Vec<SelectedSeries>,
}

struct SelectedSeries {
    labels: Labels,
    samples: Arc<Vec<Sample>>,
}

/// The first index of `samples` whose sample fails `before` (which holds for a prefix), like
/// `partition_point`, looking first just after `hint`, where it usually is: steps ascend, so
/// a window moves forward a few samples at a time. Gallops from the hint, so a far answer costs
/// a logarithm, a near one a few sequential reads.
fn seek(samples: &[Sample], hint: usize, before: impl Fn(&Sample) -> bool) -> usize {
    let hint = hint.min(samples.len());
    if hint > 0 && !before(&samples[hint - 1]) {
        return samples[..hint].partition_point(before);
    }
    let (mut lo, mut step) = (hint, 1usize);
    while lo + step <= samples.len() && before(&samples[lo + step - 1]) {
        lo += step;
        step *= 2;
    }
    let hi = (lo + step).min(samples.len());
    lo + samples[lo..hi].partition_point(before)
}

#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<Elem>),
    Matrix(RangeVal),
}

pub(crate) struct Evaluator<'a> {
    source: &'a (dyn Queryable + Sync),
    opts: &'a Options,
    /// The query's start and end, what `@ start()` and `@ end()` mean.
    start: i64,
    end: i64,
    /// Samples loaded from the source during the current step.
    loaded: usize,
    /// For each node that names its results after its input series with the metric name
    /// dropped (range-vector functions, unary minus), which input series each result label set
    /// came from, over all the steps of the query.
    origins: Origins,
    /// Each selector's series over every time the query can ask of it, selected once
    /// (`Evaluator::prefetch`); keyed by the selector node's address. Shared by the evaluators
    /// of a range query's parts ([`range`]).
    cache: Arc<std::collections::HashMap<usize, Arc<Selected>>>,
    /// Per selector, where each series' window began and ended at the step before: the next
    /// step's is usually a few samples on ([`seek`]).
    cursors: std::collections::HashMap<usize, Vec<(usize, usize)>>,
    /// The labels a node (range-vector function, unary minus) gives each input series.
    result_labels: ByIdentity<Labels>,
    /// The group each input series falls in, per aggregation or `histogram_quantile` node; and
    /// one label set per group (so that groups are found by identity too).
    group_keys: ByIdentity<Labels>,
    interned: std::collections::HashMap<(usize, Labels), Labels>,
    /// Per aggregation node, its groups numbered over the whole query.
    group_numbers: std::collections::HashMap<usize, LabelIndex>,
    /// Each subquery's inner values by inner step, over the window of the latest outer step
    /// (an inner step's value depends on that step alone).
    subquery_memo: std::collections::HashMap<usize, BTreeMap<i64, Val>>,
}

/// The times a query asks of each selector: `(matchers, first, last, is a range selector)` by
/// selector address.
type Plan = std::collections::HashMap<usize, (Matchers, i64, i64, bool)>;

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub(crate) fn drop_name(l: &Labels) -> Labels {
    if l.get("__name__").is_none() {
        return l.clone();
    }
    Labels::new(l.iter().filter(|(n, _)| *n != "__name__").map(|(n, v)| (n.to_string(), v.to_string())).collect())
}

pub(crate) fn unsupported(what: &str) -> Error {
    Error::BadData(format!("{what} is not supported"))
}

impl<'a> Evaluator<'a> {
    fn new(source: &'a (dyn Queryable + Sync), opts: &'a Options, start: i64, end: i64) -> Self {
        Evaluator {
            source,
            opts,
            start,
            end,
            loaded: 0,
            origins: Default::default(),
            cache: Default::default(),
            cursors: Default::default(),
            result_labels: Default::default(),
            group_keys: Default::default(),
            interned: Default::default(),
            group_numbers: Default::default(),
            subquery_memo: Default::default(),
        }
    }

    /// Evaluates `expr` at every step from `first` to `last`: the values gathered by series,
    /// and which input each name-dropping node's results came from (for the check across the
    /// parts of a query). Holding more than `max_samples` is an error.
    fn eval_steps(
        &mut self,
        expr: &Expr,
        first: i64,
        last: i64,
        step_ms: i64,
        max_samples: usize,
    ) -> Result<(Gathered, Origins), Error> {
        let mut out = Gathered::default();
        let mut t = first;
        while t <= last {
            self.check_deadline()?;
            self.loaded = 0;
            match self.eval(expr, t)? {
                Val::Scalar(v) => out.push(&Labels::default(), Sample { t, v }),
                Val::Vector(elems) => {
                    for e in elems {
                        out.push(&e.labels, Sample { t, v: e.v });
                    }
                }
                Val::Str(_) | Val::Matrix(_) => {
                    return Err(Error::BadData("range query of a string or range vector".into()));
                }
            }
            if out.held > max_samples {
                return Err(Error::Execution(TOO_MANY_SAMPLES.into()));
            }
            t = match t.checked_add(step_ms) {
                Some(next) => next,
                None => break,
            };
        }
        Ok((out, std::mem::take(&mut self.origins)))
    }

    /// The labels that `node` (a range-vector function or unary minus) gives to results of
    /// `input`: without the metric name when `drop`. Computed and checked against the other
    /// inputs ([`Evaluator::note_origin`]) once per input series.
    pub(crate) fn result_labels(&mut self, node: usize, input: &Labels, drop: bool) -> Result<Labels, Error> {
        if !drop {
            return Ok(input.clone());
        }
        if let Some(out) = self.result_labels.get(node, input) {
            return Ok(out.clone());
        }
        let out = drop_name(input);
        self.note_origin(node, &out, input)?;
        self.result_labels.insert(node, input, out.clone());
        Ok(out)
    }

    /// `input` without the metric name, once per label set, for a node whose results may share
    /// a label set (`histogram_quantile`: Prometheus lets those collide).
    pub(crate) fn result_labels_unchecked(&mut self, node: usize, input: &Labels) -> Labels {
        if let Some(out) = self.result_labels.get(node, input) {
            return out.clone();
        }
        let out = drop_name(input);
        self.result_labels.insert(node, input, out.clone());
        out
    }

    /// The group of `input` at aggregation-like `node`: `key(input)`, once per input series, as
    /// one shared label set per group (so [`LabelIndex`] finds groups by identity).
    pub(crate) fn group_key(&mut self, node: usize, input: &Labels, key: impl FnOnce(&Labels) -> Labels) -> Labels {
        if let Some(k) = self.group_keys.get(node, input) {
            return k.clone();
        }
        let k = self.intern(node, key(input));
        self.group_keys.insert(node, input, k.clone());
        k
    }

    /// The numbering of `node`'s groups, kept over the query's steps (taken out while in use).
    pub(crate) fn take_group_numbers(&mut self, node: usize) -> LabelIndex {
        self.group_numbers.remove(&node).unwrap_or_default()
    }

    pub(crate) fn keep_group_numbers(&mut self, node: usize, numbers: LabelIndex) {
        self.group_numbers.insert(node, numbers);
    }

    /// One shared label set for each distinct `labels` of `node`.
    fn intern(&mut self, node: usize, labels: Labels) -> Labels {
        if self.interned.len() >= ByIdentity::<()>::LIMIT {
            self.interned.clear();
        }
        self.interned.entry((node, labels.clone())).or_insert(labels).clone()
    }

    pub(crate) fn check_deadline(&self) -> Result<(), Error> {
        match self.opts.deadline {
            Some(d) if Instant::now() >= d => Err(Error::Timeout),
            _ => Ok(()),
        }
    }

    /// Prometheus evaluates range-vector functions and unary minus once for the whole range
    /// of a query (or of a subquery) and then refuses a result matrix in which two series
    /// have the same labels (`Matrix.ContainsSameLabelset`), even when they never share a
    /// step: so two input series that map to the same result labels are an error here at
    /// whichever step the second one appears.
    pub(crate) fn note_origin(&mut self, node: usize, out: &Labels, input: &Labels) -> Result<(), Error> {
        match self.origins.get(&(node, out.clone())) {
            Some(first) if first != input => {
                Err(Error::Execution("vector cannot contain metrics with the same labelset".into()))
            }
            Some(_) => Ok(()),
            None => {
                self.origins.insert((node, out.clone()), input.clone());
                Ok(())
            }
        }
    }

    fn count(&mut self, n: usize) -> Result<(), Error> {
        self.loaded += n;
        if self.loaded > self.opts.max_samples {
            return Err(Error::Execution(TOO_MANY_SAMPLES.into()));
        }
        Ok(())
    }

    /// The time a selector or subquery with these modifiers looks at when evaluated at `t`.
    fn effective_time(&self, at: &Option<AtModifier>, offset: &Option<Offset>, t: i64) -> i64 {
        let base = match at {
            None => t,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(st)) => system_time_ms(st),
        };
        base.saturating_sub(offset_ms(offset))
    }

    /// Selects, once per selector, the samples of every step the query will evaluate (as
    /// Prometheus's `FindMinMaxTime` does before its `Select`s), so that a range query asks the
    /// source once per selector instead of once per step. The selected samples are held in
    /// memory and count against [`Options::max_samples`].
    fn prefetch(&mut self, expr: &Expr) -> Result<(), Error> {
        let mut plan = Plan::new();
        self.plan(expr, self.start, self.end, &mut plan);
        let mut held = 0usize;
        for (node, (matchers, lo, hi, range)) in plan {
            let series = self.select(&matchers, lo, hi)?;
            held += series.iter().map(|s| s.samples.len()).sum::<usize>();
            if held > self.opts.max_samples {
                return Err(Error::Execution(TOO_MANY_SAMPLES.into()));
            }
            let series = series
                .into_iter()
                .map(|mut s| {
                    if range {
                        s.samples.retain(|p| !is_stale_marker(p.v));
                    }
                    SelectedSeries { labels: s.labels, samples: Arc::new(s.samples) }
                })
                .collect();
            Arc::make_mut(&mut self.cache).insert(node, Arc::new(Selected { lo, hi, series }));
        }
        Ok(())
    }

    /// Records in `plan` the times each selector below `expr` is asked for when `expr` is
    /// evaluated at every time in `[lo, hi]`. Depth is bounded by [`parse`].
    fn plan(&self, expr: &Expr, lo: i64, hi: i64, plan: &mut Plan) {
        let mut note = |vs: &parser::VectorSelector, back: i64, range: bool| {
            let (a, b) = match vs.at {
                Some(_) => {
                    let t = self.effective_time(&vs.at, &vs.offset, lo);
                    (t.saturating_sub(back), t)
                }
                None => (
                    lo.saturating_sub(offset_ms(&vs.offset)).saturating_sub(back),
                    hi.saturating_sub(offset_ms(&vs.offset)),
                ),
            };
            let e = plan.entry(vs as *const _ as usize).or_insert((selector_matchers(vs), a, b, range));
            e.1 = e.1.min(a);
            e.2 = e.2.max(b);
        };
        match expr {
            Expr::VectorSelector(vs) => note(vs, self.opts.lookback_ms, false),
            Expr::MatrixSelector(ms) => note(&ms.vs, duration_ms(&ms.range), true),
            Expr::Subquery(sq) => {
                let range = duration_ms(&sq.range);
                let (a, b) = match sq.at {
                    Some(_) => {
                        let t = self.effective_time(&sq.at, &sq.offset, lo);
                        (t.saturating_sub(range), t)
                    }
                    None => (
                        lo.saturating_sub(offset_ms(&sq.offset)).saturating_sub(range),
                        hi.saturating_sub(offset_ms(&sq.offset)),
                    ),
                };
                self.plan(&sq.expr, a, b, plan);
            }
            Expr::Aggregate(a) => {
                self.plan(&a.expr, lo, hi, plan);
                if let Some(p) = &a.param {
                    self.plan(p, lo, hi, plan);
                }
            }
            Expr::Unary(u) => self.plan(&u.expr, lo, hi, plan),
            Expr::Binary(b) => {
                self.plan(&b.lhs, lo, hi, plan);
                self.plan(&b.rhs, lo, hi, plan);
            }
            Expr::Paren(p) => self.plan(&p.expr, lo, hi, plan),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.plan(a, lo, hi, plan);
                }
            }
            _ => {}
        }
    }

    /// The series of range selector `vs` with their samples in `[start, end]`, staleness markers
    /// left out: windows of the prefetched ones when the query planned for them, else from the
    /// source.
    fn range_of(&mut self, vs: &parser::VectorSelector, start: i64, end: i64) -> Result<Vec<RangeSeries>, Error> {
        self.check_deadline()?;
        let node = vs as *const _ as usize;
        let selected = match self.cache.get(&node) {
            Some(sel) if sel.lo <= start && end <= sel.hi => sel,
            _ => {
                let series = self.select(&selector_matchers(vs), start, end)?;
                return Ok(series
                    .into_iter()
                    .filter_map(|mut s| {
                        s.samples.retain(|p| p.t >= start && p.t <= end && !is_stale_marker(p.v));
                        let window = 0..s.samples.len();
                        (!window.is_empty()).then(|| RangeSeries { labels: s.labels, all: Arc::new(s.samples), window })
                    })
                    .collect());
            }
        };
        let mut out = Vec::new();
        let cursors = self.cursors.entry(node).or_insert_with(|| vec![(0, 0); selected.series.len()]);
        for (s, cursor) in selected.series.iter().zip(cursors.iter_mut()) {
            let lo = seek(&s.samples, cursor.0, |p| p.t < start);
            let hi = seek(&s.samples, cursor.1.max(lo), |p| p.t <= end);
            *cursor = (lo, hi);
            if lo < hi {
                out.push(RangeSeries { labels: s.labels.clone(), all: s.samples.clone(), window: lo..hi });
            }
        }
        Ok(out)
    }

    /// The source's series, sorted by labels as Prometheus's storage returns them (the order
    /// decides which of equal values `topk`/`bottomk` keep).
    fn select(&mut self, matchers: &Matchers, start: i64, end: i64) -> Result<Vec<Series>, Error> {
        self.check_deadline()?;
        let mut series = self.source.select(matchers, start, end).map_err(|e| match e {
            SelectError::Limit(m) => Error::Execution(m),
            SelectError::Timeout => Error::Timeout,
            SelectError::Failed(m) => Error::Storage(m),
        })?;
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(series)
    }

    pub(crate) fn eval(&mut self, expr: &Expr, t: i64) -> Result<Val, Error> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => self.eval_unary(u, t),
            Expr::VectorSelector(vs) => self.eval_vector_selector(vs, t),
            Expr::MatrixSelector(ms) => self.eval_matrix_selector(ms, t),
            Expr::Subquery(sq) => self.eval_subquery(sq, t),
            Expr::Aggregate(a) => aggregate::eval(self, a, t),
            Expr::Binary(b) => binary::eval(self, b, t),
            Expr::Call(c) => functions::eval(self, c, t),
            Expr::Extension(_) => Err(unsupported("an extension expression")),
        }
    }

    #[inline(never)]
    fn eval_vector_selector(&mut self, vs: &parser::VectorSelector, t: i64) -> Result<Val, Error> {
        if !vs.matchers.or_matchers.is_empty() {
            return Err(unsupported("`or` inside a selector's braces"));
        }
        let eff = self.effective_time(&vs.at, &vs.offset, t);
        let from = eff.saturating_sub(self.opts.lookback_ms);
        // The latest sample at or before `eff` (the last of `samples[..end]`), if not older than
        // `from` nor a staleness marker.
        let pick = |samples: &[Sample], end: usize| {
            let last = *samples.get(end.checked_sub(1)?)?;
            (last.t >= from && !is_stale_marker(last.v)).then_some(last)
        };
        let mut out = Vec::new();
        let node = vs as *const _ as usize;
        match self.cache.get(&node) {
            // From the prefetched series, each one's position kept from the step before.
            Some(sel) if sel.lo <= from && eff <= sel.hi => {
                let cursors = self.cursors.entry(node).or_insert_with(|| vec![(0, 0); sel.series.len()]);
                for (s, cursor) in sel.series.iter().zip(cursors.iter_mut()) {
                    let i = seek(&s.samples, cursor.1, |p| p.t <= eff);
                    cursor.1 = i;
                    if let Some(p) = pick(&s.samples, i) {
                        out.push(Elem { labels: s.labels.clone(), v: p.v, t: p.t });
                    }
                }
                self.check_deadline()?;
            }
            _ => {
                for s in self.select(&selector_matchers(vs), from, eff)? {
                    let i = s.samples.partition_point(|p| p.t <= eff);
                    if let Some(p) = pick(&s.samples, i) {
                        out.push(Elem { labels: s.labels, v: p.v, t: p.t });
                    }
                }
            }
        }
        self.count(out.len())?;
        Ok(Val::Vector(out))
    }

    #[inline(never)]
    fn eval_matrix_selector(&mut self, ms: &parser::MatrixSelector, t: i64) -> Result<Val, Error> {
        let vs = &ms.vs;
        if !vs.matchers.or_matchers.is_empty() {
            return Err(unsupported("`or` inside a selector's braces"));
        }
        let eff = self.effective_time(&vs.at, &vs.offset, t);
        let range = duration_ms(&ms.range);
        let from = eff.saturating_sub(range);
        let series = self.range_of(vs, from, eff)?;
        self.count(series.iter().map(|s| s.window.len()).sum())?;
        Ok(Val::Matrix(RangeVal { series, start: from, end: eff, range_ms: range }))
    }

    #[inline(never)]
    fn eval_subquery(&mut self, sq: &parser::SubqueryExpr, t: i64) -> Result<Val, Error> {
        let eff = self.effective_time(&sq.at, &sq.offset, t);
        let range = duration_ms(&sq.range);
        let step = match &sq.step {
            Some(s) if duration_ms(s) > 0 => duration_ms(s),
            _ => self.opts.subquery_step_ms,
        };
        let lo = eff.saturating_sub(range);
        let mut ts = lo.div_euclid(step) * step;
        if ts < lo {
            ts += step;
        }
        // Consecutive steps of a range query share most of their subquery steps: keep the inner
        // values from `lo` on, drop older ones (steps ascend, so they are not asked again).
        let node = sq as *const parser::SubqueryExpr as usize;
        if let Some(memo) = self.subquery_memo.get_mut(&node) {
            *memo = memo.split_off(&ts);
        }
        let mut gathered: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        while ts <= eff {
            self.check_deadline()?;
            let known = self.subquery_memo.get(&node).and_then(|m| m.get(&ts)).cloned();
            let value = match known {
                Some(v) => v,
                None => {
                    let v = self.eval(&sq.expr, ts)?;
                    self.subquery_memo.entry(node).or_default().insert(ts, v.clone());
                    v
                }
            };
            let n = match &value {
                Val::Vector(elems) => elems.len(),
                _ => 1,
            };
            match value {
                Val::Scalar(v) => gathered.entry(Labels::default()).or_default().push(Sample { t: ts, v }),
                Val::Vector(elems) => {
                    for e in elems {
                        gathered.entry(e.labels).or_default().push(Sample { t: ts, v: e.v });
                    }
                }
                _ => return Err(Error::BadData("subquery of a string or range vector".into())),
            }
            // An empty inner step counts as one sample, so that a subquery of absurdly many
            // steps ends at the sample limit even when it finds nothing.
            self.count(n.max(1))?;
            ts = match ts.checked_add(step) {
                Some(next) => next,
                None => break,
            };
        }
        let series = gathered
            .into_iter()
            .map(|(labels, samples)| RangeSeries { labels, window: 0..samples.len(), all: Arc::new(samples) })
            .collect();
        Ok(Val::Matrix(RangeVal { series, start: lo, end: eff, range_ms: range }))
    }

    #[inline(never)]
    fn eval_unary(&mut self, u: &parser::UnaryExpr, t: i64) -> Result<Val, Error> {
        match self.eval(&u.expr, t)? {
            Val::Scalar(v) => Ok(Val::Scalar(-v)),
            Val::Vector(elems) => {
                let node = u as *const parser::UnaryExpr as usize;
                let mut out = Vec::with_capacity(elems.len());
                for e in elems {
                    let labels = self.result_labels(node, &e.labels, true)?;
                    out.push(Elem { labels, v: -e.v, t });
                }
                check_unique(&out)?;
                Ok(Val::Vector(out))
            }
            _ => Err(Error::BadData("unary minus of a string or range vector".into())),
        }
    }

    pub(crate) fn eval_vector(&mut self, expr: &Expr, t: i64) -> Result<Vec<Elem>, Error> {
        match self.eval(expr, t)? {
            Val::Vector(v) => Ok(v),
            _ => Err(Error::BadData("expected an instant vector argument".into())),
        }
    }
}

/// The matchers of a selector including its metric name (the parser keeps `name{...}`'s name
/// apart from the matchers in braces), regular expressions compiled as Go reads them. Sources
/// should match with `Matcher::is_match`, which uses that compilation.
fn selector_matchers(vs: &parser::VectorSelector) -> Matchers {
    let mut m = vs.matchers.clone();
    // Regular expressions with Go's ASCII classes (`regex::go_syntax`); one that Rust cannot
    // compile that way keeps the parser's compilation.
    for x in m.matchers.iter_mut() {
        let go = |re: &str| regex::compile_anchored(re).ok();
        match &x.op {
            MatchOp::Re(_) => {
                if let Some(r) = go(&x.value) {
                    x.op = MatchOp::Re(r);
                }
            }
            MatchOp::NotRe(_) => {
                if let Some(r) = go(&x.value) {
                    x.op = MatchOp::NotRe(r);
                }
            }
            _ => {}
        }
    }
    if let Some(name) = &vs.name
        && !m.matchers.iter().any(|x| x.name == "__name__")
    {
        m.matchers.push(Matcher::new(MatchOp::Equal, "__name__", name));
    }
    m
}

/// Prometheus refuses a step whose vector holds one label set twice ("vector cannot contain
/// metrics with the same labelset"), e.g. after a function dropped the metric names of two
/// series that differed only in them.
pub(crate) fn check_unique(v: &[Elem]) -> Result<(), Error> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for e in v {
        if !seen.insert(&e.labels) {
            return Err(Error::Execution("vector cannot contain metrics with the same labelset".into()));
        }
    }
    Ok(())
}

/// The labels `absent()` gives its answer: those of the selector's equality matchers, except the
/// metric name and any label matched more than once (Prometheus `createLabelsForAbsentFunction`).
pub(crate) fn absent_labels(expr: &Expr) -> Labels {
    let matchers: &[Matcher] = match unwrap_parens(expr) {
        Expr::VectorSelector(vs) => &vs.matchers.matchers,
        Expr::MatrixSelector(ms) => &ms.vs.matchers.matchers,
        _ => return Labels::default(),
    };
    let mut has = std::collections::HashSet::new();
    let mut set: BTreeMap<&str, &str> = BTreeMap::new();
    for m in matchers {
        if m.name == "__name__" {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !has.contains(m.name.as_str()) {
            set.insert(&m.name, &m.value);
            has.insert(m.name.as_str());
        } else {
            set.remove(m.name.as_str());
        }
    }
    Labels::new(set.into_iter().map(|(n, v)| (n.to_string(), v.to_string())).collect())
}

pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

#[cfg(test)]
mod tests;
