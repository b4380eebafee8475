//! The acceptance table: TraceQL queries over a generated set of traces, each compared with an
//! answer computed here independently (plain predicates over the same data, naive O(n²) tree
//! walks), never by the evaluator. Compared: the set of matching traces and of matched span ids.

use std::collections::BTreeSet;

use traceql::{Span, SpanKind, SpanStatus, Trace, Value};

// ---------------------------------------------------------------- deterministic data

/// SplitMix64: a fixed seed gives the same traces on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

const SERVICES: &[&str] = &["frontend", "checkout", "cart", "payment", "db"];
const NAMES: &[&str] = &["GET /cart", "POST /checkout", "SELECT orders", "auth", "render", "GET /api/items"];
const KINDS: &[SpanKind] = &[
    SpanKind::Unspecified,
    SpanKind::Internal,
    SpanKind::Server,
    SpanKind::Server,
    SpanKind::Client,
    SpanKind::Client,
    SpanKind::Producer,
    SpanKind::Consumer,
];
const STATUSES: &[SpanStatus] = &[SpanStatus::Unset, SpanStatus::Unset, SpanStatus::Ok, SpanStatus::Error];
const ROUTES: &[&str] = &["/cart", "/checkout", "/items/{id}", "/items/42"];

fn traces() -> Vec<Trace> {
    let mut rng = Rng(0x5EED_7ACE);
    (0..50u8)
        .map(|t| {
            let n = 1 + rng.below(20) as u8;
            let base = 1_700_000_000_000_000_000u64 + t as u64 * 10_000_000_000;
            let spans = (0..n)
                .map(|k| {
                    let parent_span_id = match k {
                        0 => None,
                        // Orphans: their parent is not in the trace, so they are root candidates.
                        _ if rng.chance(7) => Some([0xFF, t, k, 0, 0, 0, 0, 0]),
                        _ => Some([t, rng.below(k as u64) as u8, 1, 2, 3, 4, 5, 6]),
                    };
                    let status = rng.pick(STATUSES);
                    let start_unix_nano = base + rng.below(50_000_000);
                    let duration = match rng.below(3) {
                        0 => rng.below(2_000_000),
                        1 => rng.below(50_000_000),
                        _ => rng.below(2_000_000_000),
                    };
                    let mut resource = vec![
                        ("service.name".to_string(), Value::Str(rng.pick(SERVICES).to_string())),
                        ("region".to_string(), Value::Str(rng.pick(&["eu", "us"]).to_string())),
                    ];
                    if rng.chance(10) {
                        resource.push(("http.status_code".to_string(), Value::Int(299)));
                    }
                    let mut attributes = Vec::new();
                    if rng.chance(70) {
                        attributes.push(("http.status_code".into(), Value::Int(rng.pick(&[200, 201, 404, 500]))));
                    }
                    if rng.chance(60) {
                        attributes.push(("http.route".into(), Value::Str(rng.pick(ROUTES).into())));
                    }
                    if rng.chance(50) {
                        attributes.push(("cache.hit".into(), Value::Bool(rng.chance(50))));
                    }
                    if rng.chance(40) {
                        attributes.push(("retry.ratio".into(), Value::Float(rng.below(200) as f64 / 100.0)));
                    }
                    if rng.chance(20) {
                        attributes.push(("region".into(), Value::Str("ap".into())));
                    }
                    if rng.chance(30) {
                        attributes.push(("db.rows".into(), Value::Int(rng.below(100) as i64)));
                    }
                    if rng.chance(10) {
                        attributes.push(("foo bar".into(), Value::Str("baz".into())));
                    }
                    if rng.chance(5) {
                        // A string where other spans have an int: never equal to an int.
                        attributes.push(("http.status_code".into(), Value::Str("500".into())));
                    }
                    Span {
                        span_id: [t, k, 1, 2, 3, 4, 5, 6],
                        parent_span_id,
                        name: rng.pick(NAMES).to_string(),
                        kind: rng.pick(KINDS),
                        status,
                        status_message: if status == SpanStatus::Error {
                            format!("boom: {}", rng.below(3))
                        } else {
                            String::new()
                        },
                        start_unix_nano,
                        end_unix_nano: start_unix_nano + duration,
                        resource,
                        attributes,
                    }
                })
                .collect();
            Trace { spans }
        })
        .collect()
}

// ---------------------------------------------------------------- independent answers

fn get<'a>(attrs: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}
fn span_attr<'a>(s: &'a Span, key: &str) -> Option<&'a Value> {
    get(&s.attributes, key)
}
fn res_attr<'a>(s: &'a Span, key: &str) -> Option<&'a Value> {
    get(&s.resource, key)
}
fn any_attr<'a>(s: &'a Span, key: &str) -> Option<&'a Value> {
    span_attr(s, key).or_else(|| res_attr(s, key))
}
fn int(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}
fn float(v: Option<&Value>) -> Option<f64> {
    match v {
        Some(Value::Float(f)) => Some(*f),
        Some(Value::Int(i)) => Some(*i as f64),
        _ => None,
    }
}
fn string(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    }
}
fn service(s: &Span) -> &str {
    string(res_attr(s, "service.name")).unwrap()
}
fn dur(s: &Span) -> u64 {
    s.end_unix_nano - s.start_unix_nano
}
fn parent_of(t: &Trace, i: usize) -> Option<usize> {
    let pid = t.spans[i].parent_span_id?;
    (0..t.spans.len()).find(|&j| j != i && t.spans[j].span_id == pid)
}
fn root_of(t: &Trace) -> usize {
    let mut roots: Vec<usize> = (0..t.spans.len()).filter(|&i| parent_of(t, i).is_none()).collect();
    roots.sort_by_key(|&i| (t.spans[i].start_unix_nano, i));
    roots[0]
}
fn trace_dur(t: &Trace) -> u64 {
    let start = t.spans.iter().map(|s| s.start_unix_nano).min().unwrap();
    let end = t.spans.iter().map(|s| s.end_unix_nano).max().unwrap();
    end - start
}
fn ancestors(t: &Trace, i: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut cur = i;
    while let Some(p) = parent_of(t, cur) {
        out.push(p);
        cur = p;
        assert!(out.len() <= t.spans.len(), "generated traces have no cycles");
    }
    out
}

type Sel = Box<dyn Fn(&Trace) -> Vec<usize>>;

/// Spans satisfying a predicate.
fn spans(p: impl Fn(&Trace, &Span) -> bool + 'static) -> Sel {
    Box::new(move |t| (0..t.spans.len()).filter(|&i| p(t, &t.spans[i])).collect())
}
fn all_spans() -> Sel {
    spans(|_, _| true)
}
fn union(a: Vec<usize>, b: Vec<usize>) -> Vec<usize> {
    a.into_iter().chain(b).collect::<BTreeSet<_>>().into_iter().collect()
}
fn and(a: Sel, b: Sel) -> Sel {
    Box::new(move |t| {
        let (a, b) = (a(t), b(t));
        if a.is_empty() || b.is_empty() { Vec::new() } else { union(a, b) }
    })
}
fn or(a: Sel, b: Sel) -> Sel {
    Box::new(move |t| union(a(t), b(t)))
}
fn child(a: Sel, b: Sel) -> Sel {
    Box::new(move |t| {
        let a = a(t);
        b(t).into_iter().filter(|&i| parent_of(t, i).is_some_and(|p| a.contains(&p))).collect()
    })
}
fn descendant(a: Sel, b: Sel) -> Sel {
    Box::new(move |t| {
        let a = a(t);
        b(t).into_iter().filter(|&i| ancestors(t, i).iter().any(|p| a.contains(p))).collect()
    })
}
/// Keeps the set when a condition over its spans holds.
fn when(a: Sel, p: impl Fn(&Trace, &[usize]) -> bool + 'static) -> Sel {
    Box::new(move |t| {
        let s = a(t);
        if !s.is_empty() && p(t, &s) { s } else { Vec::new() }
    })
}
fn then(a: Sel, p: impl Fn(&Trace, &Span) -> bool + 'static) -> Sel {
    Box::new(move |t| a(t).into_iter().filter(|&i| p(t, &t.spans[i])).collect())
}
fn durs(t: &Trace, s: &[usize]) -> Vec<u64> {
    s.iter().map(|&i| dur(&t.spans[i])).collect()
}

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// Queries whose answer may be empty on purpose (anchoring, type mismatch, `false`).
const MAY_BE_EMPTY: &[&str] = &[
    r#"{ name =~ "cart" }"#,
    r#"{ span.region = "eu" }"#,
    r#"{ span.http.status_code = "404" }"#,
    "{ false }",
    "{ duration > 1m30s }",
];

fn table() -> Vec<(&'static str, Sel)> {
    vec![
        ("{}", all_spans()),
        ("{ }", all_spans()),
        (r#"{ name = "GET /cart" }"#, spans(|_, s| s.name == "GET /cart")),
        (r#"{ span:name = "auth" }"#, spans(|_, s| s.name == "auth")),
        (r#"{ name != "auth" }"#, spans(|_, s| s.name != "auth")),
        (r#"{ name =~ "GET .*" }"#, spans(|_, s| s.name.starts_with("GET "))),
        // Fully anchored: "cart" does not match "GET /cart".
        (r#"{ name =~ "cart" }"#, spans(|_, s| s.name == "cart")),
        (r#"{ name =~ ".*cart.*" }"#, spans(|_, s| s.name.contains("cart"))),
        ("{ name !~ `GET.*` }", spans(|_, s| !s.name.starts_with("GET"))),
        (r#"{ name > "P" }"#, spans(|_, s| s.name.as_str() > "P")),
        ("{ status = error }", spans(|_, s| s.status == SpanStatus::Error)),
        ("{ span:status = ok }", spans(|_, s| s.status == SpanStatus::Ok)),
        ("{ status != unset }", spans(|_, s| s.status != SpanStatus::Unset)),
        ("{ kind = server }", spans(|_, s| s.kind == SpanKind::Server)),
        (
            "{ span:kind = client || kind = consumer }",
            spans(|_, s| matches!(s.kind, SpanKind::Client | SpanKind::Consumer)),
        ),
        ("{ kind = unspecified }", spans(|_, s| s.kind == SpanKind::Unspecified)),
        ("{ duration > 100ms }", spans(|_, s| dur(s) > 100 * MS)),
        ("{ span:duration >= 1s }", spans(|_, s| dur(s) >= SEC)),
        ("{ duration < 1.5ms }", spans(|_, s| dur(s) < 1_500_000)),
        ("{ duration <= 250µs }", spans(|_, s| dur(s) <= 250_000)),
        ("{ duration > 1m30s }", spans(|_, s| dur(s) > 90 * SEC)),
        ("{ duration > 1000000 }", spans(|_, s| dur(s) > MS)),
        (r#"{ resource.service.name = "checkout" }"#, spans(|_, s| service(s) == "checkout")),
        (
            r#"{ resource.service.name = "checkout" && status = error }"#,
            spans(|_, s| service(s) == "checkout" && s.status == SpanStatus::Error),
        ),
        (r#"{ resource.service.name =~ "c.*" }"#, spans(|_, s| service(s).starts_with('c'))),
        ("{ span.http.status_code = 500 }", spans(|_, s| int(span_attr(s, "http.status_code")) == Some(500))),
        (
            "{ span.http.status_code >= 400 }",
            spans(|_, s| int(span_attr(s, "http.status_code")).is_some_and(|c| c >= 400)),
        ),
        // `!=` with a missing attribute, or one of another type, is false.
        (
            "{ span.http.status_code != 200 }",
            spans(|_, s| int(span_attr(s, "http.status_code")).is_some_and(|c| c != 200)),
        ),
        ("{ 500 = span.http.status_code }", spans(|_, s| int(span_attr(s, "http.status_code")) == Some(500))),
        (
            "{ span.http.status_code > 399.5 }",
            spans(|_, s| int(span_attr(s, "http.status_code")).is_some_and(|c| c > 399)),
        ),
        (r#"{ span.http.status_code = "404" }"#, spans(|_, s| string(span_attr(s, "http.status_code")) == Some("404"))),
        (r#"{ span.http.status_code = "500" }"#, spans(|_, s| string(span_attr(s, "http.status_code")) == Some("500"))),
        (
            "{ span.retry.ratio > 1 }",
            spans(|_, s| matches!(span_attr(s, "retry.ratio"), Some(Value::Float(f)) if *f > 1.0)),
        ),
        (
            "{ span.retry.ratio <= 0.5 }",
            spans(|_, s| matches!(span_attr(s, "retry.ratio"), Some(Value::Float(f)) if *f <= 0.5)),
        ),
        ("{ span.cache.hit = true }", spans(|_, s| span_attr(s, "cache.hit") == Some(&Value::Bool(true)))),
        ("{ span.cache.hit }", spans(|_, s| span_attr(s, "cache.hit") == Some(&Value::Bool(true)))),
        ("{ !span.cache.hit }", spans(|_, s| span_attr(s, "cache.hit") != Some(&Value::Bool(true)))),
        ("{ span.cache.hit != false }", spans(|_, s| span_attr(s, "cache.hit") == Some(&Value::Bool(true)))),
        ("{ span.cache.hit != nil }", spans(|_, s| span_attr(s, "cache.hit").is_some())),
        ("{ !(span.cache.hit != nil) }", spans(|_, s| span_attr(s, "cache.hit").is_none())),
        (r#"{ .region = "ap" }"#, spans(|_, s| string(any_attr(s, "region")) == Some("ap"))),
        (r#"{ .region = "eu" }"#, spans(|_, s| string(any_attr(s, "region")) == Some("eu"))),
        (r#"{ resource.region = "eu" }"#, spans(|_, s| string(res_attr(s, "region")) == Some("eu"))),
        (r#"{ span.region = "eu" }"#, spans(|_, s| string(span_attr(s, "region")) == Some("eu"))),
        (r#"{ span."foo bar" = "baz" }"#, spans(|_, s| string(span_attr(s, "foo bar")) == Some("baz"))),
        (
            r#"{ span.http.route = "/items/{id}" }"#,
            spans(|_, s| string(span_attr(s, "http.route")) == Some("/items/{id}")),
        ),
        (
            r#"{ span.http.route =~ "/items/.*" && span.http.status_code = 200 }"#,
            spans(|_, s| {
                string(span_attr(s, "http.route")).is_some_and(|r| r.starts_with("/items/"))
                    && int(span_attr(s, "http.status_code")) == Some(200)
            }),
        ),
        (r#"{ statusMessage =~ "boom.*" }"#, spans(|_, s| s.status_message.starts_with("boom"))),
        (r#"{ span:statusMessage != "" }"#, spans(|_, s| !s.status_message.is_empty())),
        (r#"{ rootName = "GET /cart" }"#, spans(|t, _| t.spans[root_of(t)].name == "GET /cart")),
        (r#"{ trace:rootName = "auth" }"#, spans(|t, _| t.spans[root_of(t)].name == "auth")),
        (r#"{ rootServiceName = "frontend" }"#, spans(|t, _| service(&t.spans[root_of(t)]) == "frontend")),
        (
            r#"{ trace:rootService = "frontend" && kind = server }"#,
            spans(|t, s| service(&t.spans[root_of(t)]) == "frontend" && s.kind == SpanKind::Server),
        ),
        ("{ traceDuration > 1s }", spans(|t, _| trace_dur(t) > SEC)),
        ("{ trace:duration < 100ms }", spans(|t, _| trace_dur(t) < 100 * MS)),
        (
            r#"{ (status = error || kind = client) && resource.service.name != "db" }"#,
            spans(|_, s| (s.status == SpanStatus::Error || s.kind == SpanKind::Client) && service(s) != "db"),
        ),
        ("{ !(status = error) }", spans(|_, s| s.status != SpanStatus::Error)),
        ("{ !!(status = error) }", spans(|_, s| s.status == SpanStatus::Error)),
        ("{ true }", all_spans()),
        ("{ false }", spans(|_, _| false)),
        (
            r#"{ status = error } && { resource.service.name = "frontend" }"#,
            and(spans(|_, s| s.status == SpanStatus::Error), spans(|_, s| service(s) == "frontend")),
        ),
        (
            "{ status = error } || { kind = producer }",
            or(spans(|_, s| s.status == SpanStatus::Error), spans(|_, s| s.kind == SpanKind::Producer)),
        ),
        (
            r#"{ resource.service.name = "frontend" } > { resource.service.name = "checkout" }"#,
            child(spans(|_, s| service(s) == "frontend"), spans(|_, s| service(s) == "checkout")),
        ),
        (
            r#"{ resource.service.name = "frontend" } >> { status = error }"#,
            descendant(spans(|_, s| service(s) == "frontend"), spans(|_, s| s.status == SpanStatus::Error)),
        ),
        (
            "{ kind = server } > { kind = client } > { }",
            child(
                child(spans(|_, s| s.kind == SpanKind::Server), spans(|_, s| s.kind == SpanKind::Client)),
                all_spans(),
            ),
        ),
        (
            "{ kind = server } >> { kind = client } >> { status = error }",
            descendant(
                descendant(spans(|_, s| s.kind == SpanKind::Server), spans(|_, s| s.kind == SpanKind::Client)),
                spans(|_, s| s.status == SpanStatus::Error),
            ),
        ),
        (
            "({ status = error } || { kind = consumer }) && { duration > 500ms }",
            and(
                or(spans(|_, s| s.status == SpanStatus::Error), spans(|_, s| s.kind == SpanKind::Consumer)),
                spans(|_, s| dur(s) > 500 * MS),
            ),
        ),
        (
            // `>` binds tighter than `&&`, `&&` tighter than `||`.
            "{ kind = server } > { kind = client } && { status = error } || { name = \"auth\" }",
            or(
                and(
                    child(spans(|_, s| s.kind == SpanKind::Server), spans(|_, s| s.kind == SpanKind::Client)),
                    spans(|_, s| s.status == SpanStatus::Error),
                ),
                spans(|_, s| s.name == "auth"),
            ),
        ),
        ("{ } | count() > 10", when(all_spans(), |_, s| s.len() > 10)),
        ("{ status = error } | count() >= 2", when(spans(|_, s| s.status == SpanStatus::Error), |_, s| s.len() >= 2)),
        ("{ status = error } | count() = 1", when(spans(|_, s| s.status == SpanStatus::Error), |_, s| s.len() == 1)),
        (
            "{ } | avg(duration) > 200ms",
            when(all_spans(), |t, s| durs(t, s).iter().sum::<u64>() as f64 / s.len() as f64 > 200e6),
        ),
        (
            "{ kind = client } | max(duration) > 1s",
            when(spans(|_, s| s.kind == SpanKind::Client), |t, s| durs(t, s).into_iter().max().unwrap() > SEC),
        ),
        ("{ } | min(duration) < 1ms", when(all_spans(), |t, s| durs(t, s).into_iter().min().unwrap() < MS)),
        ("{ } | sum(duration) >= 5s", when(all_spans(), |t, s| durs(t, s).iter().sum::<u64>() >= 5 * SEC)),
        (
            "{ span.http.status_code != nil } | sum(span.http.status_code) > 1000",
            when(spans(|_, s| span_attr(s, "http.status_code").is_some()), |t, s| {
                s.iter().filter_map(|&i| int(span_attr(&t.spans[i], "http.status_code"))).sum::<i64>() > 1000
            }),
        ),
        (
            r#"{ resource.service.name = "db" } | count() != 1"#,
            when(spans(|_, s| service(s) == "db"), |_, s| s.len() != 1),
        ),
        (
            "{ } | count() > 3 | avg(duration) < 500ms",
            when(when(all_spans(), |_, s| s.len() > 3), |t, s| {
                durs(t, s).iter().sum::<u64>() as f64 / (s.len() as f64) < 500e6
            }),
        ),
        ("{ } | { status = error }", then(all_spans(), |_, s| s.status == SpanStatus::Error)),
        (
            "{ kind = server } | { duration > 10ms } | count() >= 2",
            when(then(spans(|_, s| s.kind == SpanKind::Server), |_, s| dur(s) > 10 * MS), |_, s| s.len() >= 2),
        ),
        (
            "({ kind = server } | count() > 1) && { status = error }",
            and(
                when(spans(|_, s| s.kind == SpanKind::Server), |_, s| s.len() > 1),
                spans(|_, s| s.status == SpanStatus::Error),
            ),
        ),
        (
            "{ status = error && duration > 10ms } | max(span.retry.ratio) >= 1.5",
            when(spans(|_, s| s.status == SpanStatus::Error && dur(s) > 10 * MS), |t, s| {
                s.iter()
                    .filter_map(|&i| float(span_attr(&t.spans[i], "retry.ratio")))
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                    .is_some_and(|m| m >= 1.5)
            }),
        ),
        (
            r#"{ name = "SELECT orders" } | avg(.db.rows) > 50"#,
            when(spans(|_, s| s.name == "SELECT orders"), |t, s| {
                let rows: Vec<i64> = s.iter().filter_map(|&i| int(any_attr(&t.spans[i], "db.rows"))).collect();
                !rows.is_empty() && rows.iter().sum::<i64>() as f64 / rows.len() as f64 > 50.0
            }),
        ),
        (
            // Unscoped: the span attribute first, else the resource's.
            "{ .http.status_code < 300 && kind = server }",
            spans(|_, s| int(any_attr(s, "http.status_code")).is_some_and(|c| c < 300) && s.kind == SpanKind::Server),
        ),
        (
            r#"{ resource.http.status_code = 299 } >> { }"#,
            descendant(spans(|_, s| int(res_attr(s, "http.status_code")) == Some(299)), all_spans()),
        ),
        (
            "{ span.db.rows >= 10 && span.db.rows < 20 } || { span.retry.ratio = 0 }",
            or(
                spans(|_, s| int(span_attr(s, "db.rows")).is_some_and(|r| (10..20).contains(&r))),
                spans(|_, s| float(span_attr(s, "retry.ratio")) == Some(0.0)),
            ),
        ),
    ]
}

fn got(query: &traceql::Query, t: &Trace) -> Vec<usize> {
    match query.matches(t) {
        None => Vec::new(),
        Some(sets) => {
            assert_eq!(sets.len(), 1, "one span set per trace");
            assert_eq!(sets[0].matched, sets[0].spans.len());
            assert!(!sets[0].spans.is_empty(), "a match has spans");
            assert!(sets[0].spans.windows(2).all(|w| w[0] < w[1]), "ascending, no duplicates");
            sets[0].spans.clone()
        }
    }
}

type Answer = BTreeSet<(usize, [u8; 8])>;

#[test]
fn queries_match_independent_answers() {
    let traces = traces();
    let table = table();
    assert!(table.len() >= 60, "the acceptance asks for at least 60 queries, have {}", table.len());
    let mut failures = Vec::new();
    for (text, expect) in &table {
        let query = traceql::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let mut want = Answer::new();
        let mut have = Answer::new();
        for (ti, t) in traces.iter().enumerate() {
            want.extend(expect(t).into_iter().map(|i| (ti, t.spans[i].span_id)));
            have.extend(got(&query, t).into_iter().map(|i| (ti, t.spans[i].span_id)));
        }
        let traces_of = |a: &Answer| a.iter().map(|(t, _)| *t).collect::<BTreeSet<_>>();
        if want != have {
            failures.push(format!(
                "{text}\n  want traces {:?}\n  have traces {:?}\n  missing spans {:?}\n  extra spans {:?}",
                traces_of(&want),
                traces_of(&have),
                want.difference(&have).take(5).collect::<Vec<_>>(),
                have.difference(&want).take(5).collect::<Vec<_>>(),
            ));
        }
        let matched = traces_of(&want).len();
        if !MAY_BE_EMPTY.contains(text) {
            assert!(matched > 0, "{text}: the generated data should exercise this query");
        }
    }
    assert!(failures.is_empty(), "{} of {} queries differ:\n{}", failures.len(), table.len(), failures.join("\n"));
}

/// A hint never excludes a trace the query matches (checked on every query of the table).
#[test]
fn hints_never_exclude_a_matching_trace() {
    let traces = traces();
    for (text, _) in table() {
        let query = traceql::parse(text).unwrap();
        let hints = query.hints();
        for t in traces.iter().filter(|t| query.matches(t).is_some()) {
            for name in &hints.service_names {
                assert!(t.spans.iter().any(|s| service(s) == name), "{text}: service hint {name}");
            }
            if let Some(root) = &hints.root_service_name {
                assert_eq!(service(&t.spans[root_of(t)]), root, "{text}: root service hint");
                assert_eq!(traceql::root_span(t), Some(root_of(t)));
            }
            if let Some(min) = hints.min_span_duration_nanos {
                assert!(t.spans.iter().any(|s| dur(s) >= min), "{text}: duration hint {min}");
            }
        }
    }
}

#[test]
fn hints_of_typical_queries() {
    let hints = |q: &str| traceql::parse(q).unwrap().hints();
    let services = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Grafana's search builder output.
    let h = hints(r#"{resource.service.name="checkout" && name="GET /cart" && status=error && duration>100ms}"#);
    assert_eq!(h.service_names, services(&["checkout"]));
    assert_eq!(h.min_span_duration_nanos, Some(100 * MS + 1));
    assert_eq!(h.root_service_name, None);

    let h = hints(r#"{ resource.service.name = "a" } && { rootServiceName = "fe" } > { duration >= 2s }"#);
    assert_eq!(h.service_names, services(&["a"]));
    assert_eq!(h.root_service_name.as_deref(), Some("fe"));
    assert_eq!(h.min_span_duration_nanos, Some(2 * SEC));

    // Disjunctions keep only what both sides require.
    let h = hints(
        r#"{ resource.service.name = "a" && duration > 1s } || { resource.service.name = "b" && duration > 5ms }"#,
    );
    assert_eq!(h, traceql::Hints { min_span_duration_nanos: Some(5 * MS + 1), ..Default::default() });
    let h = hints(r#"{ resource.service.name = "a" || resource.service.name = "a" }"#);
    assert_eq!(h.service_names, services(&["a"]));

    // Nothing derivable.
    for q in [
        "{}",
        r#"{ !(resource.service.name = "a") }"#,
        r#"{ resource.service.name != "a" }"#,
        r#"{ .service.name = "a" }"#,
        r#"{ resource.service.name =~ "a" }"#,
        "{ duration < 1s }",
        "{ } | sum(duration) > 1s",
        "{ } | count() > 3",
        r#"{ rootServiceName = "a" } || { }"#,
    ] {
        assert_eq!(hints(q), traceql::Hints::default(), "{q}");
    }

    assert_eq!(hints("{ } | max(duration) >= 1s").min_span_duration_nanos, Some(SEC));
    assert_eq!(hints("{ } | avg(duration) > 1.5").min_span_duration_nanos, Some(1));
    assert_eq!(hints("{ 1s < duration }").min_span_duration_nanos, Some(SEC + 1));
}
