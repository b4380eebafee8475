//! What a store may prune on before evaluating a query.
//!
//! Hints are derived bottom-up and are only ever *necessary* conditions: "every trace the query
//! matches has …". Conjunctions (`&&`, structural operators, pipeline stages) take the union of
//! their parts' hints, disjunctions the intersection, negations none. A hint may be weaker than
//! the query (it lets through traces the query will then reject), never stronger.

use crate::ast::{AggFunc, CmpOp, Cond, Field, Num, Operand, Pipeline, Scope, SetExpr, Stage, Static};

/// Necessary conditions of a query, for pruning traces before evaluation. Empty means "no
/// pruning possible": every field is a separate, independent hint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// Every matching trace has, for each of these names, at least one span whose resource
    /// `service.name` is that string (sorted, without duplicates).
    pub service_names: Vec<String>,
    /// Every matching trace's root span (no parent in the trace, the earliest if several) has
    /// this resource `service.name`.
    pub root_service_name: Option<String>,
    /// Every matching trace has at least one span lasting at least this many nanoseconds.
    pub min_span_duration_nanos: Option<u64>,
    /// Every matching trace has, for each pair, a span whose span attribute (`span.x`, not
    /// `.x`, which may read the resource) is that string (sorted, without duplicates).
    pub span_string_attributes: Vec<(String, String)>,
}

impl Hints {
    /// Both hold: keep every requirement.
    fn and(mut self, other: Hints) -> Hints {
        self.service_names.extend(other.service_names);
        self.service_names.sort();
        self.service_names.dedup();
        // Two different root services cannot both hold: nothing matches, either one is correct.
        self.root_service_name = self.root_service_name.or(other.root_service_name);
        self.min_span_duration_nanos = match (self.min_span_duration_nanos, other.min_span_duration_nanos) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.span_string_attributes.extend(other.span_string_attributes);
        self.span_string_attributes.sort();
        self.span_string_attributes.dedup();
        self
    }

    /// One of them holds: keep what both require.
    fn or(self, other: Hints) -> Hints {
        Hints {
            service_names: self.service_names.into_iter().filter(|s| other.service_names.contains(s)).collect(),
            root_service_name: self.root_service_name.filter(|r| other.root_service_name.as_ref() == Some(r)),
            min_span_duration_nanos: match (self.min_span_duration_nanos, other.min_span_duration_nanos) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            },
            span_string_attributes: self
                .span_string_attributes
                .into_iter()
                .filter(|a| other.span_string_attributes.contains(a))
                .collect(),
        }
    }
}

fn all(items: impl IntoIterator<Item = Hints>) -> Hints {
    items.into_iter().fold(Hints::default(), Hints::and)
}

fn any(items: impl IntoIterator<Item = Hints>) -> Hints {
    items.into_iter().reduce(Hints::or).unwrap_or_default()
}

pub(crate) fn pipeline(p: &Pipeline) -> Hints {
    let stages = p.stages.iter().map(|stage| match stage {
        Stage::Filter(cond) => cond.as_ref().map(cond_hints).unwrap_or_default(),
        Stage::Aggregate { func, field, op, value } => {
            // min/max/avg of durations above X ⇒ some span lasts at least X; count and sum don't.
            let bounds_a_span = matches!(func, AggFunc::Min | AggFunc::Max | AggFunc::Avg);
            if bounds_a_span && field.as_ref() == Some(&Field::Duration) {
                Hints { min_span_duration_nanos: lower_bound(*op, *value), ..Hints::default() }
            } else {
                Hints::default()
            }
        }
    });
    all(std::iter::once(set(&p.source)).chain(stages))
}

fn set(expr: &SetExpr) -> Hints {
    match expr {
        SetExpr::Filter(cond) => cond.as_ref().map(cond_hints).unwrap_or_default(),
        SetExpr::And(items) => all(items.iter().map(set)),
        SetExpr::Or(items) => any(items.iter().map(set)),
        // Both sides' spans are in a matching trace.
        SetExpr::Child(l, r) | SetExpr::Descendant(l, r) => set(l).and(set(r)),
        SetExpr::Pipeline(p) => pipeline(p),
    }
}

fn cond_hints(cond: &Cond) -> Hints {
    match cond {
        Cond::And(items) => all(items.iter().map(cond_hints)),
        Cond::Or(items) => any(items.iter().map(cond_hints)),
        Cond::Cmp { lhs, op, rhs } => match (lhs, rhs) {
            (Operand::Field(f), Operand::Static(s)) => field_hints(f, *op, s),
            (Operand::Static(s), Operand::Field(f)) => field_hints(f, op.flip(), s),
            _ => Hints::default(),
        },
        Cond::Not(_) | Cond::Regex { .. } | Cond::Exists(_) | Cond::Truthy(_) => Hints::default(),
    }
}

fn field_hints(field: &Field, op: CmpOp, value: &Static) -> Hints {
    match (field, op, value) {
        (Field::Attr { scope: Scope::Resource, name }, CmpOp::Eq, Static::Str(s)) if name == "service.name" => {
            Hints { service_names: vec![s.clone()], ..Hints::default() }
        }
        (Field::Attr { scope: Scope::Span, name }, CmpOp::Eq, Static::Str(s)) => {
            Hints { span_string_attributes: vec![(name.clone(), s.clone())], ..Hints::default() }
        }
        (Field::RootServiceName, CmpOp::Eq, Static::Str(s)) => {
            Hints { root_service_name: Some(s.clone()), ..Hints::default() }
        }
        (Field::Duration, op, Static::Num(n)) => {
            Hints { min_span_duration_nanos: lower_bound(op, *n), ..Hints::default() }
        }
        _ => Hints::default(),
    }
}

/// The least whole number of nanoseconds `duration op value` allows, when it bounds from below.
fn lower_bound(op: CmpOp, value: Num) -> Option<u64> {
    let bound: i128 = match (op, value) {
        (CmpOp::Gt, Num::Int(v)) => v.saturating_add(1),
        (CmpOp::Ge | CmpOp::Eq, Num::Int(v)) => v,
        // Whole nanoseconds above a fraction: floor is always safe (at worst one ns weaker).
        (CmpOp::Gt | CmpOp::Ge | CmpOp::Eq, Num::Float(f)) if f.is_finite() => f.floor() as i128,
        _ => return None,
    };
    u64::try_from(bound).ok().filter(|b| *b > 0)
}

/// Whether the pipeline selects exactly the spans that each satisfy it alone: a union of
/// filters (`||`) followed by filter stages only, none reading a trace-level field
/// (`rootName`, `rootServiceName`, `traceDuration`). Such a query can be evaluated one span at a
/// time, without the rest of its trace, and every hint then holds for each selected span.
pub(crate) fn span_local(p: &Pipeline) -> bool {
    span_local_set(&p.source)
        && p.stages.iter().all(|stage| match stage {
            Stage::Filter(cond) => cond.as_ref().is_none_or(span_local_cond),
            Stage::Aggregate { .. } => false,
        })
}

fn span_local_set(expr: &SetExpr) -> bool {
    match expr {
        SetExpr::Filter(cond) => cond.as_ref().is_none_or(span_local_cond),
        SetExpr::Or(items) => items.iter().all(span_local_set),
        SetExpr::And(_) | SetExpr::Child(..) | SetExpr::Descendant(..) => false,
        SetExpr::Pipeline(p) => span_local(p),
    }
}

// Recursion is bounded by the parser's nesting limit (`limits::MAX_DEPTH`).
fn span_local_cond(cond: &Cond) -> bool {
    let local_field = |f: &Field| !matches!(f, Field::RootName | Field::RootServiceName | Field::TraceDuration);
    let local_operand = |o: &Operand| match o {
        Operand::Field(f) => local_field(f),
        Operand::Static(_) => true,
    };
    match cond {
        Cond::And(items) | Cond::Or(items) => items.iter().all(span_local_cond),
        Cond::Not(inner) => span_local_cond(inner),
        Cond::Cmp { lhs, rhs, .. } => local_operand(lhs) && local_operand(rhs),
        Cond::Regex { lhs, .. } => local_operand(lhs),
        Cond::Exists(f) => local_field(f),
        Cond::Truthy(o) => local_operand(o),
    }
}

#[cfg(test)]
mod span_local_tests {
    #[test]
    fn span_local_queries_are_unions_of_filters_without_trace_fields() {
        for (q, expect) in [
            ("{}", true),
            ("{ resource.service.name = \"a\" && duration > 1s }", true),
            ("{ name = \"x\" } || { status = error }", true),
            ("{ kind = server } | { span.http.route = \"/r\" }", true),
            ("({ kind = server } || { kind = client }) | { duration > 1ms }", true),
            ("{ rootServiceName = \"a\" }", false),
            ("{ traceDuration > 1s }", false),
            ("{ !(rootName = \"x\") }", false),
            ("{ kind = server } && { status = error }", false),
            ("{ kind = server } > { status = error }", false),
            ("{ kind = server } >> { status = error }", false),
            ("{ status = error } | count() > 1", false),
        ] {
            assert_eq!(crate::parse(q).unwrap().span_local(), expect, "{q}");
        }
    }
}
