//! Evaluation of a parsed query over one trace.
//!
//! `View` indexes the trace once (span id → index, parent index, root span, trace duration), so
//! each span-set filter is one pass over the spans and `>`/`>>` are linear: the ancestor walk of
//! `>>` is iterative and memoised, and stops on parent cycles, which hostile data may contain.
//! Recursion here follows the query's AST only, whose depth the parser bounds.

use std::collections::HashMap;

use crate::ast::{AggFunc, CmpOp, Cond, Field, Num, Operand, Pipeline, Scope, SetExpr, Stage, Static};
use crate::model::{Span, SpanKind, SpanStatus, Trace, Value, lookup};

/// A trace with the indexes evaluation needs.
pub(crate) struct View<'t> {
    spans: &'t [Span],
    parent: Vec<Option<usize>>,
    root: Option<usize>,
    trace_duration: u64,
}

impl<'t> View<'t> {
    pub(crate) fn new(trace: &'t Trace) -> Self {
        let spans = trace.spans.as_slice();
        let mut ids: HashMap<[u8; 8], usize> = HashMap::with_capacity(spans.len());
        for (i, span) in spans.iter().enumerate() {
            // A duplicated span id refers to its first span.
            ids.entry(span.span_id).or_insert(i);
        }
        let parent: Vec<Option<usize>> = spans
            .iter()
            .enumerate()
            .map(|(i, span)| span.parent_span_id.and_then(|p| ids.get(&p).copied()).filter(|&p| p != i))
            .collect();
        let root = (0..spans.len()).filter(|&i| parent[i].is_none()).min_by_key(|&i| (spans[i].start_unix_nano, i));
        let start = spans.iter().map(|s| s.start_unix_nano).min();
        let end = spans.iter().map(|s| s.end_unix_nano).max();
        let trace_duration = match (start, end) {
            (Some(start), Some(end)) => end.saturating_sub(start),
            _ => 0,
        };
        View { spans, parent, root, trace_duration }
    }

    /// The root span: no parent in the trace, the earliest if several.
    pub(crate) fn root(&self) -> Option<usize> {
        self.root
    }

    fn marks(&self, set: &[usize]) -> Vec<bool> {
        let mut marks = vec![false; self.spans.len()];
        for &i in set {
            marks[i] = true;
        }
        marks
    }
}

/// A value read from a span or written in the query.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val<'a> {
    Str(&'a str),
    Num(Num),
    Bool(bool),
    Status(SpanStatus),
    Kind(SpanKind),
}

fn attr_value(value: &Value) -> Val<'_> {
    match value {
        Value::Str(s) => Val::Str(s),
        Value::Int(i) => Val::Num(Num::Int((*i).into())),
        Value::Float(f) => Val::Num(Num::Float(*f)),
        Value::Bool(b) => Val::Bool(*b),
    }
}

fn field_value<'a>(view: &View<'a>, i: usize, field: &Field) -> Option<Val<'a>> {
    let span: &'a Span = &view.spans[i];
    let root = || view.root.map(|r| &view.spans[r]);
    Some(match field {
        Field::Name => Val::Str(&span.name),
        Field::Status => Val::Status(span.status),
        Field::StatusMessage => Val::Str(&span.status_message),
        Field::Kind => Val::Kind(span.kind),
        Field::Duration => Val::Num(Num::Int(span.duration_nanos().into())),
        Field::RootName => Val::Str(&root()?.name),
        Field::RootServiceName => Val::Str(root()?.service_name()?),
        Field::TraceDuration => Val::Num(Num::Int(view.trace_duration.into())),
        Field::Attr { scope, name } => {
            let found = match scope {
                Scope::Span => lookup(&span.attributes, name),
                Scope::Resource => lookup(&span.resource, name),
                Scope::Any => lookup(&span.attributes, name).or_else(|| lookup(&span.resource, name)),
            };
            attr_value(found?)
        }
    })
}

fn operand_value<'a>(view: &View<'a>, i: usize, operand: &'a Operand) -> Option<Val<'a>> {
    match operand {
        Operand::Field(field) => field_value(view, i, field),
        Operand::Static(s) => Some(match s {
            Static::Str(s) => Val::Str(s),
            Static::Num(n) => Val::Num(*n),
            Static::Bool(b) => Val::Bool(*b),
            Static::Status(s) => Val::Status(*s),
            Static::Kind(k) => Val::Kind(*k),
        }),
    }
}

/// Values of different types never compare true, not even with `!=`.
fn compare(a: Val<'_>, op: CmpOp, b: Val<'_>) -> bool {
    let equality = |eq: bool| match op {
        CmpOp::Eq => eq,
        CmpOp::Ne => !eq,
        _ => false,
    };
    match (a, b) {
        (Val::Str(a), Val::Str(b)) => op.holds(a.cmp(b)),
        (Val::Num(a), Val::Num(b)) => a.compare(op, b),
        (Val::Bool(a), Val::Bool(b)) => equality(a == b),
        (Val::Status(a), Val::Status(b)) => equality(a == b),
        (Val::Kind(a), Val::Kind(b)) => equality(a == b),
        _ => false,
    }
}

fn holds<'a>(view: &View<'a>, i: usize, cond: &'a Cond) -> bool {
    match cond {
        Cond::And(items) => items.iter().all(|c| holds(view, i, c)),
        Cond::Or(items) => items.iter().any(|c| holds(view, i, c)),
        Cond::Not(inner) => !holds(view, i, inner),
        Cond::Cmp { lhs, op, rhs } => match (operand_value(view, i, lhs), operand_value(view, i, rhs)) {
            (Some(a), Some(b)) => compare(a, *op, b),
            // A missing attribute makes every comparison false.
            _ => false,
        },
        Cond::Regex { lhs, regex, negated } => match operand_value(view, i, lhs) {
            Some(Val::Str(s)) => regex.is_match(s) != *negated,
            _ => false,
        },
        Cond::Exists(field) => field_value(view, i, field).is_some(),
        Cond::Truthy(operand) => operand_value(view, i, operand) == Some(Val::Bool(true)),
    }
}

fn filter<'a>(view: &View<'a>, cond: &'a Option<Cond>) -> Vec<usize> {
    match cond {
        None => (0..view.spans.len()).collect(),
        Some(cond) => (0..view.spans.len()).filter(|&i| holds(view, i, cond)).collect(),
    }
}

/// The spans the pipeline selects, in index order; empty when the trace does not match.
pub(crate) fn pipeline<'a>(view: &View<'a>, p: &'a Pipeline) -> Vec<usize> {
    let mut spans = set(view, &p.source);
    for stage in &p.stages {
        if spans.is_empty() {
            break;
        }
        match stage {
            Stage::Filter(None) => {}
            Stage::Filter(Some(cond)) => spans.retain(|&i| holds(view, i, cond)),
            Stage::Aggregate { func, field, op, value } => {
                let passes = aggregate(view, &spans, *func, field.as_ref()).is_some_and(|v| v.compare(*op, *value));
                if !passes {
                    spans.clear();
                }
            }
        }
    }
    spans
}

fn set<'a>(view: &View<'a>, expr: &'a SetExpr) -> Vec<usize> {
    match expr {
        SetExpr::Filter(cond) => filter(view, cond),
        SetExpr::And(items) => {
            let mut marks = vec![false; view.spans.len()];
            for item in items {
                let s = set(view, item);
                if s.is_empty() {
                    return Vec::new();
                }
                for i in s {
                    marks[i] = true;
                }
            }
            collect(&marks)
        }
        SetExpr::Or(items) => {
            let mut marks = vec![false; view.spans.len()];
            for item in items {
                for i in set(view, item) {
                    marks[i] = true;
                }
            }
            collect(&marks)
        }
        SetExpr::Child(left, right) => {
            let left = set(view, left);
            if left.is_empty() {
                return Vec::new();
            }
            let in_left = view.marks(&left);
            let mut right = set(view, right);
            right.retain(|&i| view.parent[i].is_some_and(|p| in_left[p]));
            right
        }
        SetExpr::Descendant(left, right) => {
            let left = set(view, left);
            if left.is_empty() {
                return Vec::new();
            }
            let in_left = view.marks(&left);
            let mut right = set(view, right);
            let mut memo = AncestorMemo::new(view.spans.len());
            right.retain(|&i| memo.has_ancestor_in(&view.parent, &in_left, i));
            right
        }
        SetExpr::Pipeline(p) => pipeline(view, p),
    }
}

fn collect(marks: &[bool]) -> Vec<usize> {
    marks.iter().enumerate().filter_map(|(i, &m)| m.then_some(i)).collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    Unknown,
    InProgress,
    Known(bool),
}

/// "Has a strict ancestor in the set", computed for each span at most once.
struct AncestorMemo {
    state: Vec<Walk>,
    stack: Vec<usize>,
}

impl AncestorMemo {
    fn new(len: usize) -> Self {
        AncestorMemo { state: vec![Walk::Unknown; len], stack: Vec::new() }
    }

    fn known(&self, i: usize) -> bool {
        matches!(self.state[i], Walk::Known(true))
    }

    fn has_ancestor_in(&mut self, parent: &[Option<usize>], set: &[bool], start: usize) -> bool {
        // Walk up until a span whose answer is known (or the root, or a cycle), then answer the
        // walked spans from the top down: ancestor(n) = set[parent(n)] || ancestor(parent(n)).
        let mut cur = start;
        loop {
            match self.state[cur] {
                Walk::Known(_) => break,
                Walk::InProgress => {
                    // A parent cycle: cut it here; `cur` is recomputed when the stack unwinds.
                    self.state[cur] = Walk::Known(false);
                    break;
                }
                Walk::Unknown => match parent[cur] {
                    None => {
                        self.state[cur] = Walk::Known(false);
                        break;
                    }
                    Some(p) => {
                        self.state[cur] = Walk::InProgress;
                        self.stack.push(cur);
                        cur = p;
                    }
                },
            }
        }
        while let Some(n) = self.stack.pop() {
            let p = parent[n].unwrap_or(n);
            let value = set[p] || self.known(p);
            self.state[n] = Walk::Known(value);
        }
        self.known(start)
    }
}

fn aggregate<'a>(view: &View<'a>, spans: &[usize], func: AggFunc, field: Option<&'a Field>) -> Option<Num> {
    let values = || {
        spans.iter().filter_map(move |&i| match field.and_then(|f| field_value(view, i, f)) {
            Some(Val::Num(n)) => Some(n),
            _ => None,
        })
    };
    match func {
        AggFunc::Count => Some(Num::Int(spans.len() as i128)),
        AggFunc::Sum => values().reduce(add),
        AggFunc::Avg => {
            let (sum, count) = values().fold((0.0, 0u64), |(s, c), n| (s + n.as_f64(), c + 1));
            (count > 0).then(|| Num::Float(sum / count as f64))
        }
        AggFunc::Min => values().reduce(|a, b| if b.compare(CmpOp::Lt, a) { b } else { a }),
        AggFunc::Max => values().reduce(|a, b| if b.compare(CmpOp::Gt, a) { b } else { a }),
    }
}

fn add(a: Num, b: Num) -> Num {
    match (a, b) {
        (Num::Int(a), Num::Int(b)) => a.checked_add(b).map_or(Num::Float(a as f64 + b as f64), Num::Int),
        (a, b) => Num::Float(a.as_f64() + b.as_f64()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestor_walk_survives_parent_cycles() {
        // 0 → 1 → 2 → 0 (a cycle) and 3 → 2.
        let parent = vec![Some(2), Some(0), Some(1), Some(2)];
        let set = vec![false, true, false, false];
        let mut memo = AncestorMemo::new(4);
        let answers: Vec<bool> = (0..4).map(|i| memo.has_ancestor_in(&parent, &set, i)).collect();
        // Each span reaches span 1 by walking up, except where the cut falls; no hang, no panic.
        assert!(answers[3]);
        assert!(answers[2]);
    }

    #[test]
    fn ancestor_walk_on_a_long_chain_is_iterative() {
        let n: usize = 200_000;
        let parent: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
        let mut set = vec![false; n];
        set[0] = true;
        let mut memo = AncestorMemo::new(n);
        assert!(memo.has_ancestor_in(&parent, &set, n - 1));
        assert!(!memo.has_ancestor_in(&parent, &set, 0));
    }
}
