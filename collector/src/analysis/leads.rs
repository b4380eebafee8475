//! Which attribute values the anomalous requests of an incident share (BubbleUp): the SERVER
//! spans of the series' service and route around the incident are read from the store, split
//! into the anomalous ones (slower than the baseline expected, or failed) inside the incident
//! and the others, and `analyzer::correlate` finds the values over-represented among the
//! first — "78% of slow requests have host.name=node-3, against 2% of the others".
//!
//! Bounded: parts are chosen by their catalog time range and service list, spans by a probe on
//! service and time before they are built, and at most `max_spans` are kept (the scan stops
//! keeping past it; the answer is then from the first ones read). A damaged part costs a
//! warning.

use std::collections::HashMap;
use std::sync::Arc;

use analyzer::correlate::{CorrelateOptions, correlate};

use crate::api::anomalies::Lead;
use crate::query::gate::flatten;
use crate::signal::Signal;
use crate::store::Store;
use crate::tenant::Tenant;

/// OTLP `SpanKind::SPAN_KIND_SERVER`.
const SPAN_KIND_SERVER: i32 = 2;
/// OTLP `Status.code` `STATUS_CODE_ERROR`.
const STATUS_CODE_ERROR: i32 = 2;

/// A span's resource and span attributes, flattened to text pairs, shared by the spans that
/// have the same ones.
type AttributeSet = Arc<Vec<(String, String)>>;

/// What makes a request anomalous.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anomalous {
    /// Slower than this many seconds.
    Slower(f64),
    /// Failed (status `ERROR` or an HTTP status of 500 or more, as the gate counts errors).
    Failed,
}

impl Anomalous {
    fn noun(self) -> &'static str {
        match self {
            Anomalous::Slower(_) => "slow requests",
            Anomalous::Failed => "failed requests",
        }
    }
}

/// The spans a lead search reads.
#[derive(Debug, Clone)]
pub struct Window {
    pub service: String,
    /// `http.route`, or the span name for spans without a route.
    pub route: Option<String>,
    /// From here (unix ns) the spans are the comparison group only.
    pub from_ns: u64,
    /// The incident's first point (unix ns): anomalous spans are counted from here.
    pub incident_ns: u64,
    pub to_ns: u64,
}

/// The leads of one incident, strongest first (at most `max_leads`), and the scan's warnings.
pub fn find(
    store: &Store,
    tenant: &Tenant,
    window: &Window,
    anomalous: Anomalous,
    max_spans: usize,
    max_leads: usize,
) -> (Vec<Lead>, Vec<String>) {
    let mut snapshot = store.snapshot(tenant, Signal::Traces);
    snapshot.parts.retain(|p| {
        p.of(tenant).is_some_and(|t| {
            t.max_time >= window.from_ns
                && t.min_time <= window.to_ns
                && t.services.iter().any(|(s, _)| s == &window.service)
        })
    });
    let mut cache: HashMap<(Arc<str>, crate::model::text::Text), AttributeSet> = HashMap::new();
    let (mut selection, mut others): (Vec<AttributeSet>, Vec<AttributeSet>) = Default::default();
    let mut probe = |p: &crate::store::SpanProbe<'_>| {
        p.service_name == Some(window.service.as_str())
            && p.start_unix_nano >= window.from_ns
            && p.start_unix_nano <= window.to_ns
    };
    let report = store.scan_spans_where(&snapshot, &mut probe, |s| {
        if s.kind != SPAN_KIND_SERVER || selection.len() + others.len() >= max_spans {
            return;
        }
        let route = s.http_route.as_deref().unwrap_or(&s.name);
        if window.route.as_deref().is_some_and(|r| r != route) {
            return;
        }
        let bad = match anomalous {
            Anomalous::Slower(seconds) => s.duration_nano() as f64 / 1e9 > seconds,
            Anomalous::Failed => s.status_code == STATUS_CODE_ERROR || s.http_status_code.is_some_and(|c| c >= 500),
        };
        let key = (s.resource.attributes.clone(), s.attributes.clone());
        let set = Arc::clone(cache.entry(key).or_insert_with(|| {
            let mut merged: std::collections::BTreeMap<String, String> =
                flatten(&s.resource.attributes).into_iter().collect();
            merged.extend(flatten(&s.attributes));
            Arc::new(merged.into_iter().collect())
        }));
        if bad && s.start_unix_nano >= window.incident_ns {
            selection.push(set);
        } else if !bad {
            others.push(set);
        }
    });
    let warnings = match report {
        Ok(report) => report.warnings,
        Err(err) => return (Vec::new(), vec![format!("the spans behind the incident could not be read: {err}")]),
    };
    let selection: Vec<&Vec<(String, String)>> = selection.iter().map(|s| s.as_ref()).collect();
    let others: Vec<&Vec<(String, String)>> = others.iter().map(|s| s.as_ref()).collect();
    let Ok(report) = correlate(&selection, &others, &CorrelateOptions::default()) else {
        // One of the groups is empty: nothing to compare.
        return (Vec::new(), warnings);
    };
    let leads = report
        .significant()
        .take(max_leads)
        .map(|c| Lead {
            key: c.key.clone(),
            value: c.value.clone(),
            selection_share: c.selection_pct / 100.0,
            baseline_share: c.baseline_pct / 100.0,
            p_value: c.adjusted_p_value,
            sentence: format!(
                "{:.0}% of {} have {}={}, against {:.0}% of the others",
                c.selection_pct,
                anomalous.noun(),
                c.key,
                c.value,
                c.baseline_pct
            ),
        })
        .collect();
    (leads, warnings)
}
