//! Queries that must be refused, each with the exact message a user sees: it names the construct
//! and where it starts. Hostile queries (deep nesting, huge regexes, long texts) are refused
//! before they cost more than their length.

use traceql::{ParseError, limits};

#[track_caller]
fn check(query: &str, expect: &str) {
    match traceql::parse(query) {
        Ok(_) => panic!("{query:?} was accepted, expected: {expect}"),
        Err(e) => assert_eq!(e.to_string(), expect, "query {query:?}"),
    }
}

#[test]
fn malformed_queries_name_the_construct_and_offset() {
    let cases: &[(&str, &str)] = &[
        // Strings.
        (r#"{ name = "abc }"#, "unterminated string starting at offset 9"),
        ("{ name = `abc }", "unterminated string starting at offset 9"),
        (r#"{ name = "\q" }"#, r#"invalid escape "\q" in string at offset 10"#),
        // Names.
        ("{ foo = 1 }", r#"unknown intrinsic "foo" at offset 2"#),
        (
            r#"{ http.method = "GET" }"#,
            r#"unknown intrinsic "http.method" at offset 2 (attributes need a scope: span.x, resource.x or .x)"#,
        ),
        ("{ kind = sever }", r#"unknown intrinsic "sever" at offset 9"#),
        ("{ span. = 1 }", "expected an attribute name, found ' ' at offset 2"),
        ("{ # }", "unexpected character '#' at offset 2"),
        // Missing operands.
        ("{ name = }", r#"expected a field or a value, found "}" at offset 9"#),
        (r#"{ = "x" }"#, r#"expected a field or a value, found "=" at offset 2"#),
        ("{ true && }", r#"expected a field or a value, found "}" at offset 10"#),
        ("{ 1 }", r#"expected a comparison operator, found "}" at offset 4"#),
        (r#"{ name = "a" } && "#, r#"expected "{" or "(", found end of query at offset 18"#),
        ("{ } >", r#"expected "{" or "(", found end of query at offset 5"#),
        ("{ } |", r#"expected "{" or an aggregate (count, avg, min, max, sum), found end of query at offset 5"#),
        ("", r#"expected "{" or "(", found end of query at offset 0"#),
        // Numbers and durations.
        ("{ duration > 10xs }", r#"bad duration unit "xs" at offset 15 (units: ns, us, µs, ms, s, m, h)"#),
        ("{ duration > 5d }", r#"bad duration unit "d" at offset 14 (units: ns, us, µs, ms, s, m, h)"#),
        ("{ duration > 1m30 }", "expected a duration unit, found ' ' at offset 17"),
        ("{ 99999999999999999999 = 1 }", r#"invalid number "99999999999999999999" at offset 2: integer out of range"#),
        ("{ duration > 9999999h }", r#"invalid number "9999999h" at offset 13: duration out of range"#),
        // Balance.
        (r#"{ name = "a" "#, r#"unclosed "{" opened at offset 0"#),
        (r#"{ name = "a" } }"#, r#"unmatched "}" at offset 15"#),
        (r#"({ name = "a" }"#, r#"unclosed "(" opened at offset 0"#),
        (r#"({ name = "a" }))"#, r#"unmatched ")" at offset 16"#),
        (r#"{ (name = "a" }"#, r#"expected ")" or an operator, found "}" at offset 14"#),
        // Unsupported TraceQL.
        ("{ } | by(resource.service.name)", r#"unsupported TraceQL construct "by(" at offset 6"#),
        ("{ } | select(span.foo)", r#"unsupported TraceQL construct "select(" at offset 6"#),
        ("{ } | rate()", r#"unsupported TraceQL construct "rate(" at offset 6"#),
        (
            "{ } | quantile_over_time(duration, .9)",
            r#"unsupported TraceQL construct "quantile_over_time(" at offset 6"#,
        ),
        ("rate()", r#"unsupported TraceQL construct "rate(" at offset 0"#),
        ("{ } ~ { }", r#"unsupported TraceQL construct "~" at offset 4"#),
        ("{ } < { }", r#"unsupported TraceQL construct "<" at offset 4"#),
        ("{ } << { }", r#"unsupported TraceQL construct "<<" at offset 4"#),
        ("{ } !> { }", r#"unsupported TraceQL construct "!>" at offset 4"#),
        ("{ } !~ { }", r#"unsupported TraceQL construct "!~" at offset 4"#),
        ("{ } &>> { }", r#"unsupported TraceQL construct "&>>" at offset 4"#),
        ("{ span.a + 1 = 2 }", r#"unsupported TraceQL construct "+" at offset 9"#),
        ("{ .a - 1 > 0 }", r#"unsupported TraceQL construct "-" at offset 5"#),
        (r#"{ event.name = "x" }"#, r#"unsupported TraceQL construct "event." at offset 2"#),
        (r#"{ span:id = "x" }"#, r#"unsupported TraceQL construct "span:id" at offset 2"#),
        (r#"{ trace:id = "x" }"#, r#"unsupported TraceQL construct "trace:id" at offset 2"#),
        ("{ span.foo = nil }", r#"unsupported TraceQL construct "= nil" at offset 11"#),
        // Types.
        ("{ name > 3 }", "type mismatch at offset 9: cannot compare a string with a number or duration"),
        ("{ status > error }", r#"type mismatch at offset 9: a status has no order, only "=" and "!=""#),
        (r#"{ status = "error" }"#, "type mismatch at offset 11: cannot compare a status with a string"),
        ("{ kind = error }", "type mismatch at offset 9: cannot compare a kind with a status"),
        ("{ name =~ 3 }", "type mismatch at offset 10: a regular expression must be a string literal, found a number"),
        (
            r#"{ duration =~ "1" }"#,
            "type mismatch at offset 11: a regular expression matches strings, not a number or duration",
        ),
        ("{ } | avg(name) > 1", "type mismatch at offset 10: an aggregate needs a numeric field, not a string"),
        (r#"{ } | count() > "a""#, "expected a number or duration, found a string at offset 16"),
        ("{ nil != nil }", "type mismatch at offset 2: nil compares only with a field"),
        ("{ nil }", "type mismatch at offset 2: nil is not a condition"),
        // Pipelines combine only when parenthesized.
        (
            "{ } | count() > 1 && { }",
            r#"expected end of query or "|" (parenthesize a pipeline to combine it), found "&&" at offset 18"#,
        ),
        // Regular expressions.
        (r#"{ name =~ "(" }"#, "invalid regular expression at offset 10: error: unclosed group"),
        (r"{ name =~ `\w{2000}` }", "regular expression at offset 10 compiles to more than 1048576 bytes"),
    ];
    for (query, expect) in cases {
        check(query, expect);
    }
}

#[test]
fn too_long_query() {
    let query = format!("{{ name = \"{}\" }}", "a".repeat(limits::MAX_QUERY_BYTES));
    check(&query, &format!("query is {} bytes long, more than the limit of 16384", query.len()));
    // Just under the limit is fine.
    let fits = format!("{{ name = \"{}\" }}", "a".repeat(limits::MAX_QUERY_BYTES - 13));
    assert_eq!(fits.len(), limits::MAX_QUERY_BYTES);
    traceql::parse(&fits).unwrap();
}

/// Regression guard: deep nesting must be an error, not a stack overflow.
#[test]
fn hostile_nesting_is_refused_without_overflowing_the_stack() {
    let parens = "(".repeat(100_000);
    // Longer than the limit: refused by length before anything else.
    assert!(matches!(traceql::parse(&parens), Err(ParseError::TooLong { .. })));
    let parens = "(".repeat(16_000);
    check(&parens, "nesting deeper than 64 levels at offset 64");
    let nots = format!("{{ {}true }}", "!".repeat(16_000));
    check(&nots, "nesting deeper than 64 levels at offset 65");
    let inner_parens = format!("{{ {}true }}", "(".repeat(16_000));
    check(&inner_parens, "nesting deeper than 64 levels at offset 65");
    let braces = "{".repeat(16_000);
    check(&braces, r#"expected a field or a value, found "{" at offset 1"#);

    // The boundary: 63 parentheses and a brace are 64 levels; one more is refused.
    let at_limit = format!("{}{{}}{}", "(".repeat(63), ")".repeat(63));
    traceql::parse(&at_limit).unwrap();
    let over = format!("{}{{}}{}", "(".repeat(64), ")".repeat(64));
    check(&over, "nesting deeper than 64 levels at offset 64");
}

#[test]
fn condition_and_regex_budgets() {
    let conditions = |n: usize| format!("{{ {} }}", vec!["true"; n].join(" && "));
    traceql::parse(&conditions(limits::MAX_CONDITIONS)).unwrap();
    let err = traceql::parse(&conditions(limits::MAX_CONDITIONS + 1)).unwrap_err();
    assert_eq!(err, ParseError::TooManyConditions { limit: 256, offset: 2 + 256 * 8 });
    assert_eq!(err.to_string(), format!("more than 256 conditions, at offset {}", 2 + 256 * 8));

    let regexes = |n: usize| format!("{{ {} }}", vec![r#"name =~ "a.*""#; n].join(" || "));
    traceql::parse(&regexes(limits::MAX_REGEXES)).unwrap();
    let err = traceql::parse(&regexes(limits::MAX_REGEXES + 1)).unwrap_err();
    assert!(matches!(err, ParseError::TooManyRegexes { limit: 32, .. }), "{err}");
}

#[test]
fn every_error_offset_is_inside_the_query() {
    for query in ["{ name = ", "{ } | by(", "{ duration > 3q }", "((", "{ .a = \"x }", "{ span.\"unterminated = 1 }"] {
        let err = traceql::parse(query).unwrap_err();
        assert!(err.offset() <= query.len(), "{query:?}: {err}");
    }
}
