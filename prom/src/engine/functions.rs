//! PromQL functions (Prometheus `promql/functions.go`, 2.42).
//!
//! Range-vector functions see each series' samples in the window `[t - r, t]` of their argument
//! and drop the metric name, except `last_over_time` (it acts like `offset`). `rate`, `increase`
//! and `delta` extrapolate as `extrapolatedRate` does: to the window's ends when the first or
//! last sample lies within 1.1 average sample intervals of them, else by half an interval, and
//! for counters never below the counter's zero point; counter resets add the value before the
//! reset. Functions over native histograms (`histogram_count` and friends) answer nothing for
//! float samples, as Prometheus does.

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Call, Expr};

use super::quantile::{bucket_quantile, quantile};
use super::{
    Elem, Error, Evaluator, LabelIndex, RangeVal, Val, absent_labels, check_unique, drop_name, unsupported,
    unwrap_parens,
};
use crate::model::{Labels, Sample};

/// Evaluates the arguments, then the function. The two are apart so that the recursion through
/// arguments does not carry the (large) frame of [`apply`]: nesting depth costs little stack.
pub(crate) fn eval(ev: &mut Evaluator<'_>, c: &Call, t: i64) -> Result<Val, Error> {
    let mut vals = Vec::with_capacity(c.args.args.len());
    for a in &c.args.args {
        vals.push(ev.eval(a, t)?);
    }
    apply(ev, c, vals, t)
}

fn take_vector(vals: &mut [Val], i: usize) -> Result<Vec<Elem>, Error> {
    match std::mem::replace(&mut vals[i], Val::Scalar(0.0)) {
        Val::Vector(v) => Ok(v),
        _ => Err(Error::BadData("expected an instant vector argument".into())),
    }
}

fn take_range(vals: &mut [Val], i: usize) -> Result<RangeVal, Error> {
    match std::mem::replace(&mut vals[i], Val::Scalar(0.0)) {
        Val::Matrix(m) => Ok(m),
        _ => Err(Error::BadData("expected a range vector argument".into())),
    }
}

fn scalar_at(vals: &[Val], i: usize) -> Result<f64, Error> {
    match &vals[i] {
        Val::Scalar(v) => Ok(*v),
        _ => Err(Error::BadData("expected a scalar argument".into())),
    }
}

#[inline(never)]
fn apply(ev: &mut Evaluator<'_>, c: &Call, mut vals: Vec<Val>, t: i64) -> Result<Val, Error> {
    let name = c.func.name;
    let node = c as *const Call as usize;
    let args: Vec<&Expr> = c.args.args.iter().map(|b| b.as_ref()).collect();
    let out = match name {
        "time" => return Ok(Val::Scalar(t as f64 / 1000.0)),
        "pi" => return Ok(Val::Scalar(std::f64::consts::PI)),
        "scalar" => {
            let v = take_vector(&mut vals, 0)?;
            return Ok(Val::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }));
        }
        "vector" => {
            let v = scalar_at(&vals, 0)?;
            return Ok(Val::Vector(vec![Elem { labels: Labels::default(), v, t }]));
        }
        "rate" | "increase" | "delta" => {
            let m = take_range(&mut vals, 0)?;
            per_series(ev, node, m, t, true, |s, m| extrapolated_rate(s, m, name != "delta", name == "rate"))?
        }
        "irate" | "idelta" => {
            let m = take_range(&mut vals, 0)?;
            per_series(ev, node, m, t, true, |s, _| instant_value(s, name == "irate"))?
        }
        "resets" | "changes" => {
            let m = take_range(&mut vals, 0)?;
            per_series(ev, node, m, t, true, |s, _| {
                let mut n = 0;
                for w in s.windows(2) {
                    let (prev, cur) = (w[0].v, w[1].v);
                    let hit =
                        if name == "resets" { cur < prev } else { cur != prev && !(cur.is_nan() && prev.is_nan()) };
                    if hit {
                        n += 1;
                    }
                }
                Some(n as f64)
            })?
        }
        "avg_over_time" | "min_over_time" | "max_over_time" | "sum_over_time" | "count_over_time"
        | "stddev_over_time" | "stdvar_over_time" | "present_over_time" => {
            let m = take_range(&mut vals, 0)?;
            per_series(ev, node, m, t, true, |s, _| Some(over_time(name, s)))?
        }
        "last_over_time" => {
            let m = take_range(&mut vals, 0)?;
            per_series(ev, node, m, t, false, |s, _| s.last().map(|p| p.v))?
        }
        "quantile_over_time" => {
            let q = scalar_at(&vals, 0)?;
            let m = take_range(&mut vals, 1)?;
            per_series(ev, node, m, t, true, |s, _| {
                let mut values: Vec<f64> = s.iter().map(|p| p.v).collect();
                Some(quantile(q, &mut values))
            })?
        }
        "deriv" => {
            let m = take_range(&mut vals, 0)?;
            per_series(ev, node, m, t, true, |s, _| (s.len() >= 2).then(|| linear_regression(s, s[0].t).0))?
        }
        "predict_linear" => {
            let m = take_range(&mut vals, 0)?;
            let d = scalar_at(&vals, 1)?;
            per_series(ev, node, m, t, true, |s, _| {
                (s.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(s, t);
                    slope * d + intercept
                })
            })?
        }
        "holt_winters" => {
            let m = take_range(&mut vals, 0)?;
            let sf = scalar_at(&vals, 1)?;
            let tf = scalar_at(&vals, 2)?;
            // Prometheus checks the factors in the function itself, which runs only for a
            // series with samples in the window: with none there is no error.
            if m.series.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            if sf <= 0.0 || sf >= 1.0 {
                return Err(Error::Execution(format!("invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}")));
            }
            if tf <= 0.0 || tf >= 1.0 {
                return Err(Error::Execution(format!("invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}")));
            }
            per_series(ev, node, m, t, true, |s, _| holt_winters(s, sf, tf))?
        }
        "absent_over_time" => {
            let m = take_range(&mut vals, 0)?;
            if m.series.is_empty() { vec![Elem { labels: absent_labels(args[0]), v: 1.0, t }] } else { Vec::new() }
        }
        "absent" => {
            let v = take_vector(&mut vals, 0)?;
            if v.is_empty() { vec![Elem { labels: absent_labels(args[0]), v: 1.0, t }] } else { Vec::new() }
        }
        "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sin" | "cos" | "tan" | "asin"
        | "acos" | "atan" | "sinh" | "cosh" | "tanh" | "asinh" | "acosh" | "atanh" | "rad" | "deg" | "sgn" => {
            let v = take_vector(&mut vals, 0)?;
            let f = math(name);
            v.into_iter().map(|e| Elem { labels: drop_name(&e.labels), v: f(e.v), t }).collect()
        }
        "round" => {
            let v = take_vector(&mut vals, 0)?;
            let to = if args.len() > 1 { scalar_at(&vals, 1)? } else { 1.0 };
            let inv = 1.0 / to;
            v.into_iter()
                .map(|e| Elem { labels: drop_name(&e.labels), v: (e.v * inv + 0.5).floor() / inv, t })
                .collect()
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = take_vector(&mut vals, 0)?;
            let (lo, hi) = match name {
                "clamp" => (scalar_at(&vals, 1)?, scalar_at(&vals, 2)?),
                "clamp_min" => (scalar_at(&vals, 1)?, f64::NAN),
                _ => (f64::NAN, scalar_at(&vals, 1)?),
            };
            if name == "clamp" && hi < lo {
                Vec::new()
            } else {
                v.into_iter()
                    .map(|e| {
                        // Go's math.Max/Min: NaN in, NaN out.
                        let mut x = e.v;
                        if name != "clamp_max" {
                            x = go_max(lo, x);
                        }
                        if name != "clamp_min" {
                            x = go_min(hi, x);
                        }
                        Elem { labels: drop_name(&e.labels), v: x, t }
                    })
                    .collect()
            }
        }
        "timestamp" => {
            // A selector argument reports its samples' own timestamps (Prometheus evaluates
            // `timestamp(selector)` over the selector itself); anything else the evaluation time.
            let direct = matches!(unwrap_parens(args[0]), Expr::VectorSelector(_));
            let v = take_vector(&mut vals, 0)?;
            v.into_iter()
                .map(|e| {
                    let ts = if direct { e.t } else { t };
                    Elem { labels: drop_name(&e.labels), v: ts as f64 / 1000.0, t }
                })
                .collect()
        }
        "sort" | "sort_desc" => {
            let mut v = take_vector(&mut vals, 0)?;
            sort_like_prometheus(&mut v, name == "sort");
            return Ok(Val::Vector(v.into_iter().map(|e| Elem { t, ..e }).collect()));
        }
        "histogram_quantile" => {
            let q = scalar_at(&vals, 0)?;
            let v = take_vector(&mut vals, 1)?;
            histogram_quantile(ev, node, q, v, t)
        }
        "histogram_count" | "histogram_sum" | "histogram_fraction" | "histogram_stddev" | "histogram_stdvar" => {
            if !matches!(name, "histogram_count" | "histogram_sum" | "histogram_fraction") {
                return Err(unsupported(&format!("function {name}")));
            }
            // Only native histograms have these; every sample here is a float.
            Vec::new()
        }
        "label_replace" => {
            let v = take_vector(&mut vals, 0)?;
            let s = |i: usize| string_arg(args[i]);
            label_replace(v, &s(1)?, &s(2)?, &s(3)?, &s(4)?, t)?
        }
        "label_join" => {
            let v = take_vector(&mut vals, 0)?;
            let dst = string_arg(args[1])?;
            let sep = string_arg(args[2])?;
            let srcs: Vec<String> = args[3..].iter().map(|a| string_arg(a)).collect::<Result<_, _>>()?;
            for s in &srcs {
                if !valid_label_name(s) {
                    return Err(Error::Execution(format!("invalid source label name in label_join(): {s}")));
                }
            }
            if !valid_label_name(&dst) {
                return Err(Error::Execution(format!("invalid destination label name in label_join(): {dst}")));
            }
            v.into_iter()
                .map(|e| {
                    let joined: Vec<&str> = srcs.iter().map(|s| e.labels.get(s).unwrap_or("")).collect();
                    let mut pairs: Vec<(String, String)> =
                        e.labels.iter().filter(|(n, _)| *n != dst).map(|(n, v)| (n.into(), v.into())).collect();
                    pairs.push((dst.clone(), joined.join(&sep)));
                    Elem { labels: Labels::new(pairs), v: e.v, t }
                })
                .collect()
        }
        "minute" | "hour" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "month" | "year" => {
            if args.is_empty() {
                vec![Elem { labels: Labels::default(), v: date_part(name, t.div_euclid(1000)), t }]
            } else {
                let v = take_vector(&mut vals, 0)?;
                v.into_iter()
                    .map(|e| Elem { labels: drop_name(&e.labels), v: date_part(name, e.v as i64), t })
                    .collect()
            }
        }
        other => return Err(unsupported(&format!("function {other}"))),
    };
    // A range-vector function's results are unique already: its input series are, and
    // `Evaluator::result_labels` refuses two inputs with one result label set.
    if !c.args.args.iter().any(|a| a.value_type() == ValueType::Matrix) {
        check_unique(&out)?;
    }
    Ok(Val::Vector(out))
}

/// `sort` (ascending) and `sort_desc`, NaN last: Go's `sort.Sort` with the comparison
/// Prometheus uses (`sort.Reverse` of `vectorByReverseValueHeap`, resp. `vectorByValueHeap`,
/// whose `Less` calls every NaN smaller), so ties and NaNs come out in Prometheus's order.
fn sort_like_prometheus(v: &mut [Elem], ascending: bool) {
    if ascending {
        super::gosort::sort(v, |a, b| b.v.is_nan() || b.v > a.v);
    } else {
        super::gosort::sort(v, |a, b| b.v.is_nan() || b.v < a.v);
    }
}

fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }
}

fn string_arg(e: &Expr) -> Result<String, Error> {
    match unwrap_parens(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => Err(Error::BadData("expected a string literal argument".into())),
    }
}

/// Prometheus's label name syntax, `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Applies `f` to each series of a range vector, naming the result after the series (without
/// its metric name when `drop` is set); `None` means no result for that series. Two series
/// whose results carry the same labels are refused even at different steps of a range query
/// ([`Evaluator::note_origin`]).
fn per_series(
    ev: &mut Evaluator<'_>,
    node: usize,
    m: RangeVal,
    t: i64,
    drop: bool,
    mut f: impl FnMut(&[Sample], &RangeVal) -> Option<f64>,
) -> Result<Vec<Elem>, Error> {
    let mut out = Vec::with_capacity(m.series.len());
    for s in &m.series {
        if let Some(v) = f(s.samples(), &m) {
            let labels = ev.result_labels(node, &s.labels, drop)?;
            out.push(Elem { labels, v, t });
        }
    }
    Ok(out)
}

/// Prometheus `extrapolatedRate`.
fn extrapolated_rate(s: &[Sample], m: &RangeVal, counter: bool, per_second: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let first = s[0];
    let last = s[s.len() - 1];
    let mut result = last.v - first.v;
    if counter {
        for w in s.windows(2) {
            if w[1].v < w[0].v {
                result += w[0].v;
            }
        }
    }
    let mut to_start = (first.t - m.start) as f64 / 1000.0;
    let to_end = (m.end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_step = sampled / (s.len() - 1) as f64;
    if counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_step * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { avg_step / 2.0 };
    interval += if to_end < threshold { to_end } else { avg_step / 2.0 };
    let mut factor = interval / sampled;
    if per_second {
        factor /= m.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Prometheus `instantValue` (`irate`, `idelta`): the last two samples.
fn instant_value(s: &[Sample], is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let last = s[s.len() - 1];
    let prev = s[s.len() - 2];
    let mut v = if is_rate && last.v < prev.v { last.v } else { last.v - prev.v };
    let dt = last.t - prev.t;
    if dt == 0 {
        return None;
    }
    if is_rate {
        v /= dt as f64 / 1000.0;
    }
    Some(v)
}

/// Kahan-Babuška summation step, Prometheus `kahanSumInc`.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() { c + ((sum - t) + inc) } else { c + ((inc - t) + sum) };
    (t, c)
}

fn over_time(name: &str, s: &[Sample]) -> f64 {
    match name {
        "avg_over_time" => {
            let (mut mean, mut c, mut count) = (0.0f64, 0.0f64, 0.0f64);
            for p in s {
                count += 1.0;
                if mean.is_infinite() {
                    if p.v.is_infinite() && (mean > 0.0) == (p.v > 0.0) {
                        continue;
                    }
                    if !p.v.is_infinite() && !p.v.is_nan() {
                        continue;
                    }
                }
                (mean, c) = kahan_inc(p.v / count - mean / count, mean, c);
            }
            if mean.is_infinite() { mean } else { mean + c }
        }
        "min_over_time" | "max_over_time" => {
            let mut best = s[0].v;
            for p in s {
                let better = if name == "max_over_time" { p.v > best } else { p.v < best };
                if better || best.is_nan() {
                    best = p.v;
                }
            }
            best
        }
        "sum_over_time" => {
            let (mut sum, mut c) = (0.0, 0.0);
            for p in s {
                (sum, c) = kahan_inc(p.v, sum, c);
            }
            if sum.is_infinite() { sum } else { sum + c }
        }
        "count_over_time" => s.len() as f64,
        "present_over_time" => 1.0,
        _ => {
            // stddev/stdvar: Welford with Kahan-compensated mean and sum of squares.
            let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for p in s {
                count += 1.0;
                let delta = p.v - (mean + c_mean);
                (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
                (aux, c_aux) = kahan_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
            }
            let var = (aux + c_aux) / count;
            if name == "stddev_over_time" { var.sqrt() } else { var }
        }
    }
}

/// Least-squares fit of the samples, time measured in seconds from `intercept_t` (Prometheus
/// `linearRegression`): a constant series has slope 0 (NaN when the constant is infinite).
pub(crate) fn linear_regression(s: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init = s[0].v;
    let mut constant = true;
    for (i, p) in s.iter().enumerate() {
        if constant && i > 0 && p.v != init {
            constant = false;
        }
        n += 1.0;
        let x = (p.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if constant {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// Prometheus `funcHoltWinters` (double exponential smoothing).
fn holt_winters(s: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = s[0].v;
    let mut b = s[1].v - s[0].v;
    for (i, p) in s.iter().enumerate().skip(1) {
        let x = sf * p.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

fn math(name: &str) -> fn(f64) -> f64 {
    match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        _ => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
    }
}

/// `histogram_quantile` over classic buckets: samples grouped by all their labels but `le`
/// (the metric name included), each group answering under its labels without `le` and the
/// metric name, so two groups differing only in name collide as Prometheus's do; samples
/// without a parsable `le` are ignored (Prometheus `funcHistogramQuantile`).
fn histogram_quantile(ev: &mut Evaluator<'_>, node: usize, q: f64, v: Vec<Elem>, t: i64) -> Vec<Elem> {
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    let mut index = LabelIndex::default();
    for e in v {
        let Some(le) = e.labels.get("le").and_then(parse_go_float) else { continue };
        let key = ev.group_key(node, &e.labels, |l| {
            Labels::new(l.iter().filter(|(n, _)| *n != "le").map(|(n, v)| (n.to_string(), v.to_string())).collect())
        });
        let (i, new) = index.slot(&key);
        if new {
            groups.push((key, Vec::new()));
        }
        groups[i].1.push((le, e.v));
    }
    groups
        .into_iter()
        .map(|(key, mut b)| {
            // The answer's labels: the group's without the metric name, one set per group.
            let labels = ev.result_labels_unchecked(node, &key);
            Elem { labels, v: bucket_quantile(q, &mut b), t }
        })
        .collect()
}

/// Go's `strconv.ParseFloat` for the spellings an `le` label takes (`+Inf`, `NaN`, numbers);
/// Rust's parser accepts the same infinities and NaN, case-insensitively, as Go's does.
fn parse_go_float(s: &str) -> Option<f64> {
    s.parse().ok()
}

fn label_replace(v: Vec<Elem>, dst: &str, repl: &str, src: &str, re: &str, t: i64) -> Result<Vec<Elem>, Error> {
    let regex = super::regex::compile_anchored(re)
        .map_err(|_| Error::Execution(format!("invalid regular expression in label_replace(): {re}")))?;
    if !valid_label_name(dst) {
        return Err(Error::Execution(format!("invalid destination label name in label_replace(): {dst}")));
    }
    let mut out = Vec::with_capacity(v.len());
    for e in v {
        let value = e.labels.get(src).unwrap_or("").to_string();
        let labels = match regex.captures(&value) {
            None => e.labels,
            Some(caps) => {
                let mut res = String::new();
                caps.expand(repl, &mut res);
                let mut pairs: Vec<(String, String)> =
                    e.labels.iter().filter(|(n, _)| *n != dst).map(|(n, v)| (n.into(), v.into())).collect();
                pairs.push((dst.to_string(), res));
                Labels::new(pairs)
            }
        };
        out.push(Elem { labels, v: e.v, t });
    }
    Ok(out)
}

/// Calendar fields of a UTC instant given in seconds (Prometheus's date functions).
fn date_part(name: &str, secs: i64) -> f64 {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    match name {
        "minute" => ((rem / 60) % 60) as f64,
        "hour" => (rem / 3600) as f64,
        "day_of_month" => d as f64,
        // 1970-01-01 was a Thursday; Sunday is 0.
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => (days - days_from_civil(y, 1, 1) + 1) as f64,
        "days_in_month" => {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as f64
        }
        "month" => m as f64,
        _ => y as f64,
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
