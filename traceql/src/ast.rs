//! The parsed query. Boolean and span-set `&&`/`||` chains are n-ary vectors, so a long chain is
//! a wide node, not a deep one; nesting depth is bounded by the parser (`limits::MAX_DEPTH`).

use regex::Regex;

use crate::model::{SpanKind, SpanStatus};

/// Where an attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Span,
    Resource,
    /// `.x`: the span attribute if the span has it, else the resource attribute.
    Any,
}

/// `{A} | stage | stage …`
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    pub(crate) source: SetExpr,
    pub(crate) stages: Vec<Stage>,
}

/// An expression whose value, for one trace, is a set of spans.
#[derive(Debug, Clone)]
pub(crate) enum SetExpr {
    /// `{ cond }`; `None` is `{}`.
    Filter(Option<Cond>),
    /// Every operand non-empty; the union.
    And(Vec<SetExpr>),
    /// The union.
    Or(Vec<SetExpr>),
    /// `{A} > {B}`: spans of B whose parent is in A.
    Child(Box<SetExpr>, Box<SetExpr>),
    /// `{A} >> {B}`: spans of B with an ancestor in A.
    Descendant(Box<SetExpr>, Box<SetExpr>),
    /// `( pipeline )`.
    Pipeline(Box<Pipeline>),
}

#[derive(Debug, Clone)]
pub(crate) enum Stage {
    /// `| { cond }`: keep the spans that satisfy it.
    Filter(Option<Cond>),
    /// `| count() > 3`, `| avg(duration) >= 1s`.
    Aggregate { func: AggFunc, field: Option<Field>, op: CmpOp, value: Num },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggFunc {
    Count,
    Avg,
    Min,
    Max,
    Sum,
}

/// A condition on one span.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Cmp {
        lhs: Operand,
        op: CmpOp,
        rhs: Operand,
    },
    Regex {
        lhs: Operand,
        regex: Regex,
        negated: bool,
    },
    /// `x != nil`: the field has a value (intrinsics always have one).
    Exists(Field),
    /// A bare operand: true when it is the boolean `true`.
    Truthy(Operand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    /// `a op b` ⇔ `b op.flip() a`.
    pub(crate) fn flip(self) -> CmpOp {
        match self {
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            same => same,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Field(Field),
    Static(Static),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    Name,
    Status,
    StatusMessage,
    Kind,
    Duration,
    RootName,
    RootServiceName,
    TraceDuration,
    Attr { scope: Scope, name: String },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Static {
    Str(String),
    Num(Num),
    Bool(bool),
    Status(SpanStatus),
    Kind(SpanKind),
}

/// A number: integers and durations (nanoseconds) compare exactly, floats as `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    pub(crate) fn compare(self, op: CmpOp, other: Num) -> bool {
        let ord = match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        };
        ord.is_some_and(|o| op.holds(o))
    }
}

impl CmpOp {
    pub(crate) fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => ord == Equal,
            CmpOp::Ne => ord != Equal,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
        }
    }
}
