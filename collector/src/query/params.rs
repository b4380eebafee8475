//! The request parameters every query API shares: label selectors, times and output formats,
//! each read in one place so that every endpoint accepts and refuses the same texts with the
//! same messages.
//!
//! Selectors are PromQL vector selectors without a metric name, as Pyroscope's and Prometheus's
//! APIs take them (`{service_name="api", pod=~"api-.*", region!="eu", env!~"dev|test"}`),
//! parsed with `promql-parser`: the four matchers, quoted names for labels PromQL's identifiers
//! cannot spell (`{"service.name"="api"}`), regular expressions anchored at both ends, and
//! Prometheus 3's `or` between matcher groups. Prometheus's rule for absent labels holds: a
//! label a row does not have reads as the empty string, so `{pod!="a"}` matches rows without
//! `pod` and `{pod=~".+"}` requires one. `{}` and an empty parameter select everything.

use promql_parser::label::{MatchOp, Matcher};

use crate::error::QueryError;

/// Longest selector accepted, in bytes: enough for any hand-written or Grafana-built selector,
/// and a bound on the regular expressions a request can make the server compile.
pub const MAX_SELECTOR_BYTES: usize = 8 * 1024;

/// A parsed label selector: rows match when every matcher of any one group matches.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// Alternatives (`or`); one group for a selector without `or`, none for "everything".
    groups: Vec<Vec<Matcher>>,
}

impl Selector {
    /// The selector that matches every row.
    pub fn all() -> Selector {
        Selector::default()
    }

    /// A selector of `=` matchers.
    pub fn equal<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Selector {
        let group: Vec<Matcher> = pairs.into_iter().map(|(k, v)| Matcher::new(MatchOp::Equal, k, v)).collect();
        Selector { groups: if group.is_empty() { Vec::new() } else { vec![group] } }
    }

    /// Parses the parameter `param` (named in errors). Empty, absent or `{}` select everything.
    pub fn parse(param: &str, text: Option<&str>) -> Result<Selector, QueryError> {
        let text = text.map(str::trim).unwrap_or("");
        if text.is_empty() || text.chars().filter(|c| !c.is_whitespace()).eq("{}".chars()) {
            return Ok(Selector::all());
        }
        let shown = || text.chars().take(200).collect::<String>();
        if text.len() > MAX_SELECTOR_BYTES {
            return Err(QueryError::BadRequest(format!(
                "parameter `{param}` is {} bytes; a selector may have at most {MAX_SELECTOR_BYTES}",
                text.len()
            )));
        }
        if !text.starts_with('{') {
            return Err(QueryError::BadRequest(format!(
                "parameter `{param}` {:?} is not a selector like {{service_name=\"x\"}}: it must start with `{{`",
                shown()
            )));
        }
        // PromQL refuses a selector whose every matcher matches the empty string
        // (`{pod!="a"}`), since it would select every series there is; Pyroscope's selectors
        // (Prometheus's `ParseMetricSelector`) take it. Such a selector is parsed with one
        // matcher that cannot be empty put in front, which is then dropped.
        const FILLER: &str = "__slo_gate_selector__";
        let parsed = promql_parser::parser::parse(text).or_else(|why| match text.strip_prefix('{') {
            Some(rest) if why.contains("at least one non-empty matcher") => {
                promql_parser::parser::parse(&format!("{{{FILLER}=\"x\", {rest}")).map_err(|_| why)
            }
            _ => Err(why),
        });
        let expr = parsed.map_err(|why| {
            QueryError::BadRequest(format!(
                "parameter `{param}` {:?} is not a selector like {{service_name=\"x\"}}: {why}",
                shown()
            ))
        })?;
        let promql_parser::parser::Expr::VectorSelector(selector) = expr else {
            return Err(QueryError::BadRequest(format!(
                "parameter `{param}` {:?} is a PromQL expression, not a label selector",
                shown()
            )));
        };
        if selector.offset.is_some() || selector.at.is_some() {
            return Err(QueryError::BadRequest(format!(
                "parameter `{param}` {:?}: `offset` and `@` have no meaning in a selector",
                shown()
            )));
        }
        let mut selector = Selector::from(selector.matchers);
        for group in &mut selector.groups {
            group.retain(|m| m.name != FILLER);
        }
        Ok(selector)
    }

    /// Whether a row whose label values `label` gives matches. A label the row lacks is empty.
    pub fn matches<'a>(&self, mut label: impl FnMut(&str) -> Option<&'a str>) -> bool {
        self.groups.is_empty()
            || self.groups.iter().any(|group| group.iter().all(|m| m.is_match(label(&m.name).unwrap_or(""))))
    }

    /// Per alternative, its `=` matchers with a non-empty value (those a label index can look
    /// up); an alternative without one has an empty list.
    pub fn equalities(&self) -> Vec<Vec<(&str, &str)>> {
        self.groups
            .iter()
            .map(|group| {
                group
                    .iter()
                    .filter(|m| matches!(m.op, MatchOp::Equal) && !m.value.is_empty())
                    .map(|m| (m.name.as_str(), m.value.as_str()))
                    .collect()
            })
            .collect()
    }

    /// The value every row must have for `name` (an `=` matcher in every group), if any.
    pub fn required(&self, name: &str) -> Option<&str> {
        let mut values = self.groups.iter().map(|group| {
            group.iter().find(|m| m.name == name && matches!(m.op, MatchOp::Equal)).map(|m| m.value.as_str())
        });
        let first = values.next()??;
        values.all(|v| v == Some(first)).then_some(first)
    }

    /// The same selector without the matchers on `name` (after the caller handled them).
    pub fn without(&self, name: &str) -> Selector {
        Selector {
            groups: self.groups.iter().map(|g| g.iter().filter(|m| m.name != name).cloned().collect()).collect(),
        }
    }

    /// Adds `name="value"` to every group.
    pub fn and_equal(mut self, name: &str, value: &str) -> Selector {
        let m = Matcher::new(MatchOp::Equal, name, value);
        if self.groups.is_empty() {
            self.groups.push(Vec::new());
        }
        for g in &mut self.groups {
            g.push(m.clone());
        }
        self
    }

    /// The label names the selector reads.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().flatten().map(|m| m.name.as_str())
    }
}

/// The selector in PromQL's syntax, every name quoted (`{"service_name"="api"}`), so that it
/// parses back to the same matchers whatever the names hold.
impl From<promql_parser::label::Matchers> for Selector {
    /// A PromQL selector's matchers: its plain matchers are one group, each `or` alternative
    /// another.
    fn from(matchers: promql_parser::label::Matchers) -> Selector {
        let mut groups = Vec::new();
        if !matchers.matchers.is_empty() {
            groups.push(matchers.matchers);
        }
        groups.extend(matchers.or_matchers.into_iter().filter(|g| !g.is_empty()));
        Selector { groups }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn quoted(f: &mut std::fmt::Formatter<'_>, text: &str) -> std::fmt::Result {
            f.write_str("\"")?;
            for c in text.chars() {
                match c {
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")
        }
        f.write_str("{")?;
        for (g, group) in self.groups.iter().enumerate() {
            if g > 0 {
                f.write_str(" or ")?;
            }
            for (i, m) in group.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                quoted(f, &m.name)?;
                f.write_str(match m.op {
                    MatchOp::Equal => "=",
                    MatchOp::NotEqual => "!=",
                    MatchOp::Re(_) => "=~",
                    MatchOp::NotRe(_) => "!~",
                })?;
                quoted(f, &m.value)?;
            }
        }
        f.write_str("}")
    }
}

/// Unix seconds (fractions allowed) or an RFC 3339 time, as unix nanoseconds: the one reader
/// of every time parameter of the API. RFC 3339 is read by `jiff`, which refuses impossible
/// dates, times and offsets (February 30, `+99:99`); it also takes the ISO 8601 forms Temporal
/// allows (seconds left out, an offset without its colon).
pub fn parse_time(param: &str, text: Option<&str>) -> Result<Option<u64>, QueryError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    let bad = || {
        QueryError::BadRequest(format!(
            "parameter `{param}` {:?} is neither unix seconds nor an RFC 3339 time",
            text.chars().take(100).collect::<String>()
        ))
    };
    if let Ok(secs) = text.parse::<u64>() {
        return secs.checked_mul(1_000_000_000).map(Some).ok_or_else(bad);
    }
    if let Ok(secs) = text.parse::<f64>() {
        if secs.is_finite() && (0.0..1.8e10).contains(&secs) {
            return Ok(Some((secs * 1e9) as u64));
        }
        return Err(bad());
    }
    // jiff reads offsets up to ±25:59 (Temporal's range) and bracketed annotations; RFC 3339's
    // offset hours stop at 23 and it has no annotations (the `+24:00` case of the test below).
    let offset_hours = text.get(10..).and_then(|t| t.rfind(['+', '-']).map(|i| &t[i + 1..]));
    let hours_ok = |h: &str| h.get(..2).and_then(|h| h.parse::<u8>().ok()).is_some_and(|h| h <= 23);
    if text.contains('[') || offset_hours.is_some_and(|h| !hours_ok(h)) {
        return Err(bad());
    }
    let time: jiff::Timestamp = text.parse().map_err(|_| bad())?;
    u64::try_from(time.as_nanosecond()).map(Some).map_err(|_| bad())
}

/// The `format` parameter: one of `allowed`, `json` when absent.
pub fn format_param(format: Option<&str>, allowed: &[&str]) -> Result<String, QueryError> {
    let format = format.map(str::trim).filter(|f| !f.is_empty()).unwrap_or("json");
    if allowed.contains(&format) {
        Ok(format.to_string())
    } else {
        Err(QueryError::BadRequest(format!(
            "parameter `format` {:?} is not one of {}",
            format.chars().take(50).collect::<String>(),
            allowed.join(", ")
        )))
    }
}

/// The profile type parameter `param`.
pub fn profile_type(param: &str, id: Option<&str>) -> Result<analyzer::pprof::ProfileTypeId, QueryError> {
    let id = id.map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| {
        QueryError::BadRequest(format!(
            "parameter `{param}` is required (name:sample_type:unit:period_type:period_unit, see /api/v1/profile-types)"
        ))
    })?;
    id.parse().map_err(|e| QueryError::BadRequest(format!("parameter `{param}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn labels<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl FnMut(&str) -> Option<&'a str> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        move |k| map.get(k).copied()
    }

    #[test]
    fn selectors_match_as_prometheus_does() {
        let row = [("service_name", "api"), ("pod", "api-7"), ("service.name", "api")];
        let check = |text: &str| Selector::parse("selector", Some(text)).unwrap().matches(labels(&row));
        for yes in [
            "",
            "{}",
            " { } ",
            r#"{service_name="api"}"#,
            r#"{service_name!="web"}"#,
            r#"{pod=~"api-.*"}"#,
            r#"{pod!~"web-.*"}"#,
            r#"{region!="eu"}"#,
            r#"{region=""}"#,
            r#"{region=~".*"}"#,
            r#"{"service.name"="api"}"#,
            r#"{service_name="web" or pod="api-7"}"#,
            r#"{service_name='api', pod=~"api-\\d"}"#,
        ] {
            assert!(check(yes), "{yes}");
        }
        for no in [
            r#"{service_name="web"}"#,
            r#"{pod=~"api"}"#, // anchored
            r#"{pod!~"api-.*"}"#,
            r#"{region=~".+"}"#,
            r#"{region="eu"}"#,
            r#"{service_name="api", pod="api-8"}"#,
        ] {
            assert!(!check(no), "{no}");
        }
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        for (text, expect) in [
            (r#"service_name="api""#, "must start with `{`"),
            (r#"{service_name="api""#, "not a selector"),
            (r#"{service_name=~"("}"#, "not a selector"),
            (r#"{service_name=="api"}"#, "not a selector"),
            (r#"{a="b"} offset 5m"#, "offset"),
            (r#"{a="b"} + 1"#, "not a label selector"),
        ] {
            let err = Selector::parse("selector", Some(text)).unwrap_err().to_string();
            assert!(err.contains("parameter `selector`") && err.contains(expect), "{text}: {err}");
        }
        let huge = format!("{{a=~\"{}\"}}", "x".repeat(MAX_SELECTOR_BYTES));
        let err = Selector::parse("selector", Some(&huge)).unwrap_err().to_string();
        assert!(err.contains("at most 8192"), "{err}");
    }

    #[test]
    fn selectors_written_parse_back_the_same() {
        for text in [
            r#"{service_name="api"}"#,
            r#"{"service.name"="a\"b\\c", pod=~"x|y\n", region!="", env!~".*"}"#,
            r#"{a="b" or c="d"}"#,
            "{a=\"\\u0001\"}",
        ] {
            let s = Selector::parse("s", Some(text)).unwrap();
            let again = Selector::parse("s", Some(&s.to_string())).unwrap();
            assert_eq!(again.to_string(), s.to_string(), "{text}");
        }
        assert_eq!(Selector::all().to_string(), "{}");
    }

    #[test]
    fn required_values_and_rewrites() {
        let s = Selector::parse(
            "s",
            Some(r#"{__profile_type__="process_cpu:cpu:nanoseconds:cpu:nanoseconds", service_name="a"}"#),
        )
        .unwrap();
        assert_eq!(s.required("__profile_type__"), Some("process_cpu:cpu:nanoseconds:cpu:nanoseconds"));
        assert_eq!(s.required("pod"), None);
        let rest = s.without("__profile_type__");
        assert_eq!(rest.names().collect::<Vec<_>>(), ["service_name"]);
        let narrowed = Selector::all().and_equal("service_version", "v2");
        assert!(narrowed.matches(labels(&[("service_version", "v2")])));
        assert!(!narrowed.matches(labels(&[("service_version", "v1")])));
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("from", Some("1700000000")).unwrap(), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_time("from", Some("2023-11-14T22:13:20Z")).unwrap(), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_time("from", Some("2023-11-14T23:13:20.5+01:00")).unwrap(), Some(1_700_000_000_500_000_000));
        assert!(parse_time("to", Some("yesterday")).unwrap_err().to_string().contains("`to`"));
        assert!(parse_time("to", Some("-5")).is_err());
    }

    // issue 11 minor: `from=2020-01-01T00:00:00+99:99` was accepted. Impossible offsets, dates
    // and times are refused; every valid RFC 3339 form is read.
    #[test]
    fn impossible_times_are_refused() {
        for bad in [
            "2020-01-01T00:00:00+99:99",
            "2020-01-01T00:00:00+24:00",
            "2020-01-01T00:00:00-12:60",
            "2021-02-30T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2020-04-31T12:00:00Z",
            "2020-13-01T00:00:00Z",
            "2020-01-01T24:00:00Z",
            "2020-01-01T23:60:00Z",
            "2020-01-01T00:00:00",
            "2020-01-01",
            "2020-1-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2020-01-01T00:00:00.Z",
        ] {
            assert!(parse_time("from", Some(bad)).is_err(), "{bad} accepted");
        }
        let day = 86_400_000_000_000u64;
        let y2020 = 18_262 * day;
        for (good, nanos) in [
            ("2020-01-01T00:00:00Z", y2020),
            ("2020-01-01t00:00:00z", y2020),
            ("2020-01-01 00:00:00Z", y2020),
            ("2020-01-01T00:00:00+00:00", y2020),
            ("2020-01-01T01:30:00+01:30", y2020),
            ("2019-12-31T10:00:00-14:00", y2020),
            ("2020-02-29T00:00:00Z", y2020 + 59 * day),
            ("2020-01-01T00:00:00.000000001Z", y2020 + 1),
            ("2020-01-01T00:00:00.25Z", y2020 + 250_000_000),
        ] {
            assert_eq!(parse_time("from", Some(good)).unwrap(), Some(nanos), "{good}");
        }
    }
}
