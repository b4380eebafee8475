//! Binary operators: arithmetic, comparison (filtering, or 0/1 with `bool`), the set operators
//! `and`/`or`/`unless`, and vector matching (`on`/`ignoring`, `group_left`/`group_right`).
//!
//! Rules followed (Prometheus `promql/engine.go`, `VectorBinop`, `VectorAnd/Or/Unless`,
//! `resultMetric`): arithmetic drops the metric name, so does `bool`; a filtering comparison
//! keeps the left operand's sample (`atan2` keeps the metric name too, in 2.42) (the vector's own value when the scalar is on the left); a
//! one-to-one match refuses duplicates on either side; `group_x` takes the listed labels from the
//! "one" side; with `on(...)` a one-to-one result keeps only the listed labels.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD, T_MUL, T_NEQ, T_POW,
    T_SUB, TokenId,
};
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::{Elem, Error, Evaluator, Val, check_unique, drop_name, unsupported};
use crate::model::Labels;

/// Evaluates both operands, then combines them (apart, so that nesting costs little stack: see
/// `functions::eval`).
pub(crate) fn eval(ev: &mut Evaluator<'_>, b: &BinaryExpr, t: i64) -> Result<Val, Error> {
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    combine(b, lhs, rhs, t)
}

#[inline(never)]
fn combine(b: &BinaryExpr, lhs: Val, rhs: Val, t: i64) -> Result<Val, Error> {
    let op = b.op.id();
    if let Some(m) = &b.modifier
        && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
    {
        return Err(unsupported("fill modifiers of binary operators"));
    }
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let (v, keep) = apply(op, l, r)?;
            if is_comparison(op) {
                // The parser only accepts a scalar comparison with `bool`.
                Ok(Val::Scalar(if keep { 1.0 } else { 0.0 }))
            } else {
                Ok(Val::Scalar(v))
            }
        }
        (Val::Vector(l), Val::Scalar(r)) => vector_scalar(op, l, r, false, return_bool, t),
        (Val::Scalar(l), Val::Vector(r)) => vector_scalar(op, r, l, true, return_bool, t),
        (Val::Vector(l), Val::Vector(r)) => {
            let default = BinModifier {
                card: VectorMatchCardinality::OneToOne,
                matching: None,
                return_bool: false,
                fill_values: Default::default(),
            };
            let m = b.modifier.as_ref().unwrap_or(&default);
            match op {
                T_LAND | T_LOR | T_LUNLESS => Ok(Val::Vector(set_op(op, l, r, m.matching.as_ref(), t))),
                _ => vector_vector(op, l, r, m, return_bool, t),
            }
        }
        _ => Err(Error::BadData("binary operator on a string or range vector".into())),
    }
}

/// Prometheus `shouldDropMetricName`: the arithmetic operators except `atan2` (2.42 keeps the
/// metric name of `atan2`'s result).
fn drops_name(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD)
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// `(value, keep)` of `l op r` (Prometheus `vectorElemBinop`): comparisons answer the left value
/// and whether the comparison holds.
fn apply(op: TokenId, l: f64, r: f64) -> Result<(f64, bool), Error> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        // Go's math.Mod and Rust's % both take the sign of the dividend.
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => return Err(unsupported(&format!("binary operator {}", promql_parser::parser::token::TokenType::new(op)))),
    })
}

fn vector_scalar(
    op: TokenId,
    vec: Vec<Elem>,
    scalar: f64,
    scalar_left: bool,
    return_bool: bool,
    t: i64,
) -> Result<Val, Error> {
    if matches!(op, T_LAND | T_LOR | T_LUNLESS) {
        return Err(Error::BadData("set operator between a vector and a scalar".into()));
    }
    let comparison = is_comparison(op);
    let mut out = Vec::with_capacity(vec.len());
    for e in vec {
        let (l, r) = if scalar_left { (scalar, e.v) } else { (e.v, scalar) };
        let (mut v, keep) = apply(op, l, r)?;
        if comparison && scalar_left {
            v = r;
        }
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let drop = drops_name(op) || return_bool;
        let labels = if drop { drop_name(&e.labels) } else { e.labels };
        out.push(Elem { labels, v, t });
    }
    if drops_name(op) || return_bool {
        check_unique(&out)?;
    }
    Ok(Val::Vector(out))
}

/// The labels two samples are matched on: with `on(ls)` the listed ones, otherwise all but the
/// metric name and those of `ignoring(ls)`.
fn signature(l: &Labels, matching: Option<&LabelModifier>) -> Vec<(String, String)> {
    match matching {
        Some(LabelModifier::Include(on)) => {
            let mut names: Vec<&String> = on.labels.iter().collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| (n.clone(), l.get(n).unwrap_or("").to_string())).collect()
        }
        Some(LabelModifier::Exclude(ign)) => l
            .iter()
            .filter(|(n, _)| *n != "__name__" && !ign.labels.iter().any(|x| x == n))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        None => l.iter().filter(|(n, _)| *n != "__name__").map(|(n, v)| (n.to_string(), v.to_string())).collect(),
    }
}

fn set_op(op: TokenId, l: Vec<Elem>, r: Vec<Elem>, matching: Option<&LabelModifier>, t: i64) -> Vec<Elem> {
    let at = |e: Elem| Elem { t, ..e };
    match op {
        T_LAND => {
            let right: HashSet<_> = r.iter().map(|e| signature(&e.labels, matching)).collect();
            l.into_iter().filter(|e| right.contains(&signature(&e.labels, matching))).map(at).collect()
        }
        T_LUNLESS => {
            let right: HashSet<_> = r.iter().map(|e| signature(&e.labels, matching)).collect();
            l.into_iter().filter(|e| !right.contains(&signature(&e.labels, matching))).map(at).collect()
        }
        _ => {
            let left: HashSet<_> = l.iter().map(|e| signature(&e.labels, matching)).collect();
            let mut out: Vec<Elem> = l.into_iter().map(at).collect();
            out.extend(r.into_iter().filter(|e| !left.contains(&signature(&e.labels, matching))).map(at));
            out
        }
    }
}

fn vector_vector(
    op: TokenId,
    l: Vec<Elem>,
    r: Vec<Elem>,
    m: &BinModifier,
    return_bool: bool,
    t: i64,
) -> Result<Val, Error> {
    let matching = m.matching.as_ref();
    let (include, one_to_many) = match &m.card {
        VectorMatchCardinality::OneToOne => (Vec::new(), false),
        VectorMatchCardinality::ManyToOne(ls) => (ls.labels.clone(), false),
        VectorMatchCardinality::OneToMany(ls) => (ls.labels.clone(), true),
        VectorMatchCardinality::ManyToMany => {
            return Err(Error::BadData("many-to-many matching of an arithmetic or comparison operator".into()));
        }
    };
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    // Prometheus answers nothing, before looking for duplicates, when a side is empty.
    if l.is_empty() || r.is_empty() {
        return Ok(Val::Vector(Vec::new()));
    }
    // `many` is the side whose samples each give a result, `one` the side they look up.
    let (many, one) = if one_to_many { (r, l) } else { (l, r) };
    let mut one_by_sig: HashMap<Vec<(String, String)>, Elem> = HashMap::with_capacity(one.len());
    for e in one {
        let sig = signature(&e.labels, matching);
        if one_by_sig.contains_key(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(Error::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: many-to-many matching not allowed: matching labels must be unique on one side",
                Labels::new(sig)
            )));
        }
        one_by_sig.insert(sig, e);
    }
    let drop = drops_name(op) || return_bool;
    let mut matched_sigs: HashSet<Vec<(String, String)>> = HashSet::new();
    let mut out = Vec::new();
    for e in many {
        let sig = signature(&e.labels, matching);
        let Some(other) = one_by_sig.get(&sig) else { continue };
        let (lv, rv) = if one_to_many { (other.v, e.v) } else { (e.v, other.v) };
        let (mut v, keep) = apply(op, lv, rv)?;
        if return_bool {
            v = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        if one_to_one && !matched_sigs.insert(sig.clone()) {
            return Err(Error::Execution(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
            ));
        }
        let labels = result_labels(&e.labels, &other.labels, matching, one_to_one, &include, drop);
        out.push(Elem { labels, v, t });
    }
    check_unique(&out).map_err(|_| {
        Error::Execution("multiple matches for labels: grouping labels must ensure unique matches".into())
    })?;
    Ok(Val::Vector(out))
}

fn result_labels(
    many: &Labels,
    one: &Labels,
    matching: Option<&LabelModifier>,
    one_to_one: bool,
    include: &[String],
    drop: bool,
) -> Labels {
    let mut pairs: Vec<(String, String)> = many
        .iter()
        .filter(|(n, _)| !(drop && *n == "__name__"))
        .filter(|(n, _)| {
            if !one_to_one {
                return true;
            }
            match matching {
                Some(LabelModifier::Include(on)) => on.labels.iter().any(|x| x == n),
                Some(LabelModifier::Exclude(ign)) => !ign.labels.iter().any(|x| x == n),
                None => true,
            }
        })
        .filter(|(n, _)| !include.iter().any(|x| x == n))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    for n in include {
        if let Some(v) = one.get(n) {
            pairs.push((n.clone(), v.to_string()));
        }
    }
    Labels::new(pairs)
}
