//! The work a build did in a time window, for CPU per request (ADR 0008): its SERVER spans, or
//! the increase of a counter it reports (`http_requests_total`). A profile selector
//! (`{service_name="api", service_version="1.4"}`) picks the build: `service_name` and
//! `service_version` match the resource's `service.name` and `service.version`, any other label
//! must be a resource attribute of that name (or with `_` read as `.`), so a selector that narrows
//! the profiles to some processes narrows their work the same way, or finds none.

use std::collections::BTreeMap;

use analyzer::flame::Work;

use super::ApiState;
use super::gate::SPAN_KIND_SERVER;
use super::params::Selector;
use crate::error::QueryError;
use crate::model::metric::MetricKind;
use crate::model::{ResourceColumns, Rows, attrs};
use crate::signal::Signal;
use crate::store::parts::Narrow;
use crate::tenant::Tenant;

/// Where a build's work is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkSource {
    /// Its SERVER spans (by start time).
    ServerSpans,
    /// The increase of this counter (a monotonic cumulative sum), summed over its series.
    Counter(String),
}

impl WorkSource {
    /// What a unit is called in reports.
    fn unit(&self) -> String {
        match self {
            WorkSource::ServerSpans => "request".to_string(),
            WorkSource::Counter(name) => format!("unit of {name}"),
        }
    }
}

/// Whether `resource` belongs to the build `selector` names.
fn matches(
    selector: &Selector,
    resource: &ResourceColumns,
    decoded: &mut BTreeMap<String, Vec<(String, String)>>,
) -> bool {
    let pairs: &Vec<(String, String)> = decoded.entry(resource.attributes.to_string()).or_insert_with(|| {
        attrs::decode_lossy(&resource.attributes)
            .iter()
            .filter_map(|kv| attrs::as_text(kv.value.as_ref()?).map(|v| (kv.key.clone(), v.to_string())))
            .collect()
    });
    selector.matches(|key| match key {
        "service_name" | "service.name" => resource.service_name.as_deref(),
        "service_version" | "service.version" => resource.service_version.as_deref(),
        // The profile's own labels say nothing about the resource that did the work.
        "__profile_type__" | "__name__" => None,
        _ => {
            let dotted = key.replace('_', ".");
            pairs.iter().find(|(k, _)| k == key || *k == dotted).map(|(_, v)| v.as_str())
        }
    })
}

/// The work of the build `selector` names in `[from, to]` (unix nanoseconds), `None` when it
/// did none (so `auto` falls back to rates or shares).
pub fn work_in_window(
    state: &ApiState,
    tenant: &Tenant,
    selector: &Selector,
    (from, to): (u64, u64),
    source: &WorkSource,
) -> Result<Option<Work>, QueryError> {
    if to <= from {
        return Ok(None);
    }
    let mut decoded = BTreeMap::new();
    let units = match source {
        WorkSource::ServerSpans => {
            let snapshot = state.store.snapshot(tenant, Signal::Traces);
            let mut n: u64 = 0;
            state
                .store
                .scan(&snapshot, |rows| {
                    let Rows::Spans(spans) = rows else { return };
                    for s in spans.iter().filter(|s| s.kind == SPAN_KIND_SERVER) {
                        if (from..=to).contains(&s.start_unix_nano) && matches(selector, &s.resource, &mut decoded) {
                            n += 1;
                        }
                    }
                })
                .map_err(QueryError::from)?;
            n as f64
        }
        WorkSource::Counter(name) => {
            let snapshot = state.store.snapshot(tenant, Signal::Metrics);
            let mut series: BTreeMap<(String, String), Vec<(u64, f64)>> = BTreeMap::new();
            state
                .store
                .scan_narrowed(&snapshot, &Narrow { lo: from, hi: to, service: None }, |rows| {
                    let Rows::Metrics(points) = rows else { return };
                    for p in points {
                        if &*p.metric.name != name.as_str()
                            || p.kind != MetricKind::Sum
                            || !p.is_monotonic
                            || !(from..=to).contains(&p.time_unix_nano)
                            || !matches(selector, &p.resource, &mut decoded)
                        {
                            continue;
                        }
                        let Some(value) = p.value_int.map(|i| i as f64).or(p.value) else { continue };
                        let key = (p.resource.attributes.to_string(), p.attributes.clone());
                        series.entry(key).or_default().push((p.time_unix_nano, value));
                    }
                })
                .map_err(QueryError::from)?;
            increase(series.into_values())
        }
    };
    let seconds = (to - from) as f64 / 1e9;
    Ok((units > 0.0).then(|| Work { units, seconds: Some(seconds), unit: source.unit() }))
}

/// The summed increase of cumulative counter series; a drop is a restart from zero.
fn increase(series: impl Iterator<Item = Vec<(u64, f64)>>) -> f64 {
    series
        .map(|mut points| {
            points.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            analyzer::gate::monotonic_increase(points.into_iter().map(|(_, v)| v))
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_increase_survives_a_restart() {
        let a = vec![(3, 30.0), (1, 10.0), (2, 20.0)];
        let restarted = vec![(1, 100.0), (2, 150.0), (3, 5.0), (4, 25.0)];
        // 20 + (50 + 5 + 20).
        assert_eq!(increase([a, restarted].into_iter()), 95.0);
    }

    #[test]
    fn selectors_match_resources_by_service_and_attribute() {
        let resource = ResourceColumns {
            service_name: Some("api".into()),
            service_version: Some("1.4".into()),
            attributes: r#"[{"key":"deployment.batch","value":{"stringValue":"a"}}]"#.into(),
            ..Default::default()
        };
        let mut cache = BTreeMap::new();
        let sel = |pairs: &[(&str, &str)]| Selector::equal(pairs.iter().copied());
        assert!(matches(&sel(&[("service_name", "api"), ("service_version", "1.4")]), &resource, &mut cache));
        assert!(matches(&sel(&[("service_name", "api"), ("deployment_batch", "a")]), &resource, &mut cache));
        assert!(!matches(&sel(&[("service_name", "api"), ("batch", "a")]), &resource, &mut cache));
        assert!(!matches(&sel(&[("service_version", "1.5")]), &resource, &mut cache));
    }
}
