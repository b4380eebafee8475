//! Property: `parse` never panics, whatever the text, and what it accepts evaluates without
//! panicking on traces with odd shapes (parent cycles, duplicate ids, end before start).

use proptest::prelude::*;
use traceql::{Span, SpanKind, SpanStatus, Trace, Value};

/// Fragments of TraceQL, so random texts reach deep into the grammar instead of failing at once.
const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "|",
    "&&",
    "||",
    "!",
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "=~",
    "!~",
    ">>",
    "<<",
    "~",
    "&>",
    "name",
    "status",
    "kind",
    "duration",
    "rootName",
    "rootServiceName",
    "traceDuration",
    "span:name",
    "trace:duration",
    "span.a",
    "resource.service.name",
    ".a",
    "span.\"x y\"",
    "\"s\"",
    "`r.*`",
    "\"\\u00e9\"",
    "1",
    "-2",
    "2.5",
    "1ms",
    "1m30s",
    "1.5µs",
    "true",
    "false",
    "nil",
    "error",
    "ok",
    "server",
    "client",
    "count()",
    "avg(duration)",
    "max(span.a)",
    "sum(",
    "by(",
    "rate()",
    " ",
    "\"",
    "`",
    "\\",
    "µ",
    ",",
    ".",
];

fn query_text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..40).prop_map(|v| v.join(" ")),
        proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..40).prop_map(|v| v.concat()),
        any::<String>(),
    ]
}

fn odd_trace() -> Trace {
    let span = |id: u8, parent: Option<u8>, start: u64, end: u64| Span {
        span_id: [id; 8],
        parent_span_id: parent.map(|p| [p; 8]),
        name: "name".into(),
        kind: SpanKind::Server,
        status: SpanStatus::Error,
        start_unix_nano: start,
        end_unix_nano: end,
        resource: vec![("service.name".into(), Value::Str("svc".into()))],
        attributes: vec![("a".into(), Value::Int(1)), ("a".into(), Value::Float(f64::NAN))],
        ..Span::default()
    };
    Trace {
        spans: vec![
            span(1, Some(3), 10, 5),
            span(2, Some(1), 0, u64::MAX),
            span(3, Some(2), 7, 9),
            span(3, None, 1, 2),
            span(4, Some(4), 3, 3),
        ],
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics(text in query_text()) {
        if let Ok(query) = traceql::parse(&text) {
            let _ = query.matches(&odd_trace());
            let _ = query.matches(&Trace::default());
            let _ = query.hints();
        }
    }
}
