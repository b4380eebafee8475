//! Aggregation operators with `by`/`without` (Prometheus `promql/engine.go`, `aggregation`).
//!
//! Groups keep the order in which their first sample arrives. `without` also drops the metric
//! name; `by` keeps only the listed labels. `sum` adds plainly, `avg` keeps an incremental mean
//! (with Prometheus's care for infinities), `stddev`/`stdvar` use Welford's update, `topk` and
//! `bottomk` keep a binary heap updated exactly as Go's `container/heap` is, so that which of
//! several equal values survive is Prometheus's choice too.

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::quantile::quantile;
use rustc_hash::FxHashMap;

use super::{Elem, Error, Evaluator, Val, unsupported};
use crate::model::{Labels, format_value};

/// Evaluates the parameter and the operand, then aggregates (apart, so that nesting costs
/// little stack: see `functions::eval`).
pub(crate) fn eval(ev: &mut Evaluator<'_>, a: &AggregateExpr, t: i64) -> Result<Val, Error> {
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, t)?),
        None => None,
    };
    let vec = ev.eval_vector(&a.expr, t)?;
    aggregate(ev, a, param, vec, t)
}

#[inline(never)]
fn aggregate(
    ev: &mut Evaluator<'_>,
    a: &AggregateExpr,
    param: Option<Val>,
    vec: Vec<Elem>,
    t: i64,
) -> Result<Val, Error> {
    let node = a as *const AggregateExpr as usize;
    let op = a.op.id();
    if !matches!(
        op,
        T_SUM
            | T_AVG
            | T_COUNT
            | T_MIN
            | T_MAX
            | T_GROUP
            | T_STDDEV
            | T_STDVAR
            | T_TOPK
            | T_BOTTOMK
            | T_QUANTILE
            | T_COUNT_VALUES
    ) {
        return Err(unsupported(&format!("aggregation {}", a.op)));
    }
    let mut k = 0i64;
    let mut q = 0.0;
    let mut value_label = String::new();
    if let Some(p) = param {
        let scalar = |p: &Val| match p {
            Val::Scalar(v) => Ok(*v),
            _ => Err(Error::BadData("expected a scalar parameter".into())),
        };
        match op {
            T_TOPK | T_BOTTOMK => {
                let f = scalar(&p)?;
                if !(f > -9.223_372_036_854_776e18 && f < 9.223_372_036_854_776e18) {
                    return Err(Error::Execution(format!("Scalar value {f} overflows int64")));
                }
                k = f as i64;
            }
            T_QUANTILE => q = scalar(&p)?,
            T_COUNT_VALUES => match p {
                Val::Str(s) => value_label = s,
                _ => return Err(Error::BadData("count_values needs a string parameter".into())),
            },
            _ => {}
        }
    }
    if matches!(op, T_TOPK | T_BOTTOMK) && k < 1 {
        return Ok(Val::Vector(Vec::new()));
    }
    if op == T_COUNT_VALUES && !super::functions::valid_label_name(&value_label) {
        return Err(Error::Execution(format!("invalid label name {value_label:?}")));
    }
    let (names, without): (Vec<String>, bool) = match &a.modifier {
        None => (Vec::new(), false),
        Some(LabelModifier::Include(l)) => (l.labels.clone(), false),
        Some(LabelModifier::Exclude(l)) => (l.labels.clone(), true),
    };
    let mut by_names = names.clone();
    if op == T_COUNT_VALUES && !without {
        by_names.push(value_label.clone());
    }

    let group_of = |labels: &Labels| {
        if without {
            Labels::new(
                labels
                    .iter()
                    .filter(|(n, _)| *n != "__name__" && !names.iter().any(|x| x == n))
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            )
        } else {
            Labels::new(
                labels
                    .iter()
                    .filter(|(n, _)| by_names.iter().any(|x| x == n))
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            )
        }
    };
    let mut groups: Vec<Group> = Vec::new();
    // Groups are numbered over the whole query (found by identity at every step after the
    // first); `at` places this step's groups in the order their first sample came.
    let mut numbers = ev.take_group_numbers(node);
    let mut at: FxHashMap<usize, usize> = FxHashMap::default();
    for s in vec {
        let mut labels = s.labels;
        let key = if op == T_COUNT_VALUES {
            // The value is a label here: a new label set per sample.
            let mut pairs = labels.into_pairs();
            pairs.push((value_label.clone(), format_value(s.v)));
            labels = Labels::new(pairs);
            group_of(&labels)
        } else {
            ev.group_key(node, &labels, group_of)
        };
        let v = s.v;
        let next = groups.len();
        let gi = *at.entry(numbers.slot(&key).0).or_insert(next);
        if gi == next {
            let mut g = Group { labels: key, value: v, mean: v, count: 1, heap: Vec::new() };
            match op {
                T_STDDEV | T_STDVAR => g.value = 0.0,
                T_TOPK | T_BOTTOMK | T_QUANTILE => g.heap.push((labels, v)),
                T_GROUP => g.value = 1.0,
                _ => {}
            }
            groups.push(g);
            continue;
        }
        let g = &mut groups[gi];
        match op {
            T_SUM => g.value += v,
            T_AVG => {
                g.count += 1;
                let n = g.count as f64;
                if g.mean.is_infinite() {
                    if v.is_infinite() && (g.mean > 0.0) == (v > 0.0) {
                        continue;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        continue;
                    }
                }
                g.mean += v / n - g.mean / n;
            }
            T_MAX if g.value < v || g.value.is_nan() => g.value = v,
            T_MIN if g.value > v || g.value.is_nan() => g.value = v,
            T_COUNT | T_COUNT_VALUES => g.count += 1,
            T_STDDEV | T_STDVAR => {
                g.count += 1;
                let delta = v - g.mean;
                g.mean += delta / g.count as f64;
                g.value += delta * (v - g.mean);
            }
            T_TOPK | T_BOTTOMK => {
                let less = if op == T_TOPK { topk_less } else { bottomk_less };
                let top = g.heap[0].1;
                let replace = if op == T_TOPK { top < v } else { top > v };
                if (g.heap.len() as i64) < k || replace || top.is_nan() {
                    if g.heap.len() as i64 == k {
                        if k == 1 {
                            g.heap[0] = (labels, v);
                            continue;
                        }
                        heap_pop(&mut g.heap, less);
                    }
                    heap_push(&mut g.heap, (labels, v), less);
                }
            }
            T_QUANTILE => g.heap.push((labels, v)),
            _ => {}
        }
    }

    ev.keep_group_numbers(node, numbers);
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let v = match op {
            T_AVG => g.mean,
            T_COUNT | T_COUNT_VALUES => g.count as f64,
            T_STDVAR => g.value / g.count as f64,
            T_STDDEV => (g.value / g.count as f64).sqrt(),
            T_TOPK | T_BOTTOMK => {
                let mut heap = g.heap;
                // Prometheus: sort.Sort(sort.Reverse(heap)), the heaps' Less calling NaN least.
                if op == T_TOPK {
                    super::gosort::sort(&mut heap, |a, b| b.1.is_nan() || b.1 < a.1);
                } else {
                    super::gosort::sort(&mut heap, |a, b| b.1.is_nan() || b.1 > a.1);
                }
                out.extend(heap.into_iter().map(|(labels, v)| Elem { labels, v, t }));
                continue;
            }
            T_QUANTILE => {
                let mut values: Vec<f64> = g.heap.iter().map(|x| x.1).collect();
                quantile(q, &mut values)
            }
            _ => g.value,
        };
        out.push(Elem { labels: g.labels, v, t });
    }
    Ok(Val::Vector(out))
}

struct Group {
    labels: Labels,
    value: f64,
    mean: f64,
    count: u64,
    heap: Vec<(Labels, f64)>,
}

/// Prometheus's `vectorByValueHeap.Less`: a min-heap where NaN is smallest.
fn topk_less(a: f64, b: f64) -> bool {
    a.is_nan() || a < b
}

/// Prometheus's `vectorByReverseValueHeap.Less`: a max-heap where NaN is "largest".
fn bottomk_less(a: f64, b: f64) -> bool {
    a.is_nan() || a > b
}

type Less = fn(f64, f64) -> bool;

fn heap_up(h: &mut [(Labels, f64)], mut j: usize, less: Less) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(h[j].1, h[i].1) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [(Labels, f64)], i0: usize, n: usize, less: Less) {
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && less(h[j2].1, h[j1].1) {
            j = j2;
        }
        if !less(h[j].1, h[i].1) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

fn heap_push(h: &mut Vec<(Labels, f64)>, x: (Labels, f64), less: Less) {
    h.push(x);
    let n = h.len();
    heap_up(h, n - 1, less);
}

fn heap_pop(h: &mut Vec<(Labels, f64)>, less: Less) {
    let n = h.len() - 1;
    h.swap(0, n);
    heap_down(h, 0, n, less);
    h.pop();
}
