//! Which spans a span indicator reads, and what to say when there are none.

use std::collections::BTreeMap;

use slo_contracts::SpanSelector;

use super::input::SpanRecord;

/// The spans `selector` picks (`route` matches `http.route`, `span_name` the name; neither:
/// all), in input order.
pub(crate) fn spans<'s>(selector: &SpanSelector, spans: &'s [SpanRecord]) -> Vec<&'s SpanRecord> {
    spans
        .iter()
        .filter(|s| match (&selector.route, &selector.span_name) {
            (Some((route, _)), _) => s.route.as_deref() == Some(route.as_str()),
            (None, Some((name, _))) => &s.name == name,
            (None, None) => true,
        })
        .collect()
}

/// `route /api/checkout` / `span GET /x` / `all SERVER spans`, for subjects.
pub(crate) fn describe(selector: &SpanSelector) -> String {
    match (&selector.route, &selector.span_name) {
        (Some((route, _)), _) => route.clone(),
        (None, Some((name, _))) => format!("span {name}"),
        (None, None) => "all SERVER spans".to_string(),
    }
}

/// Why a selector found nothing in the candidate: the route (or span name) never appears,
/// with where the contract names it and what the data has instead.
pub(crate) fn never_appears(selector: &SpanSelector, all: &[SpanRecord]) -> String {
    let (what, wanted, location, seen): (&str, &str, _, Vec<&str>) = match (&selector.route, &selector.span_name) {
        (Some((route, location)), _) => {
            ("route", route.as_str(), location, all.iter().filter_map(|s| s.route.as_deref()).collect())
        }
        (None, Some((name, location))) => {
            ("span name", name.as_str(), location, all.iter().map(|s| s.name.as_str()).collect())
        }
        (None, None) => return "the candidate has no SERVER spans of the service".to_string(),
    };
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for s in seen {
        *counts.entry(s).or_default() += 1;
    }
    let mut text = format!("{what} {wanted} ({location}) never appears in the candidate's data");
    if counts.is_empty() {
        text.push_str(&format!(" (no span has a {what})"));
    } else {
        let mut top: Vec<(&str, u64)> = counts.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let names: Vec<&str> = top.iter().take(5).map(|(n, _)| *n).collect();
        let more = if top.len() > 5 { format!(" and {} more", top.len() - 5) } else { String::new() };
        text.push_str(&format!("; it has {}{more}", names.join(", ")));
    }
    text
}
