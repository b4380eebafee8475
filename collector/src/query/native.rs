//! The native read API: `/api/v1/traces/{id}`, `/api/v1/stats`, `/api/v1/services`, and row
//! listings of metric points, log records and profile samples.
//!
//! Every handler reads the tenant from `X-Scope-OrgID` and sees only that tenant's data.
//! Answers are sorted, so the same data always gives the same bytes.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiState, blocking, tenant};
use crate::api::native::{Service, Services};
use crate::error::QueryError;
use crate::model::{Rows, attrs, span};
use crate::signal::Signal;
use crate::store::parts::Narrow;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/traces/{trace_id}", get(trace))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/services", get(services))
        .route("/api/v1/metrics/points", get(metric_points))
        .route("/api/v1/logs", get(logs))
        .route("/api/v1/profiles/samples", get(profile_samples))
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let kind = self.kind();
        let mut response = (kind.http_status(), Json(json!({ "error": self.to_string() }))).into_response();
        if let Some(after) = kind.retry_after() {
            response.headers_mut().insert(http::header::RETRY_AFTER, after.as_secs().into());
        }
        response
    }
}

async fn trace(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, QueryError> {
    let tenant = tenant(&headers)?;
    let mut trace_id = [0u8; 16];
    hex::decode_to_slice(id.trim(), &mut trace_id)
        .map_err(|_| QueryError::BadRequest(format!("trace id {id:?} is not 32 hex digits")))?;
    let data = blocking(move || {
        let snapshot = state.store.trace_snapshot(&tenant, &trace_id);
        let mut found = Vec::new();
        let report = state
            .store
            .scan(&snapshot, |rows| {
                if let Rows::Spans(spans) = rows {
                    found.extend(spans.iter().filter(|s| s.trace_id == trace_id).cloned());
                }
            })
            .map_err(QueryError::from)?;
        if found.is_empty() {
            let mut message = format!("trace {id} not found");
            for w in &report.warnings {
                message.push_str("; ");
                message.push_str(w);
            }
            return Err(QueryError::NotFound(message));
        }
        Ok((span::to_traces_data(&found), report.warnings))
    })
    .await?;
    let (data, warnings) = data;
    let mut response = Json(data).into_response();
    super::warning_headers(&mut response, &warnings);
    Ok(response)
}

async fn stats(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, QueryError> {
    let tenant = tenant(&headers)?;
    let signals: BTreeMap<&str, _> =
        state.store.stats(&tenant).into_iter().map(|(signal, s)| (signal.as_str(), s)).collect();
    Ok(Json(json!({ "tenant": tenant.as_str(), "signals": signals })))
}

async fn services(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<Services>, QueryError> {
    let tenant = tenant(&headers)?;
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, version) in state.store.services(&tenant) {
        let versions = by_name.entry(name).or_default();
        if let Some(v) = version {
            versions.push(v);
        }
    }
    let services = by_name.into_iter().map(|(name, versions)| Service { name, versions }).collect();
    Ok(Json(Services { tenant: tenant.as_str().to_string(), services }))
}

/// Filters shared by the row listings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RowFilter {
    /// `service.name` of the rows.
    service: Option<String>,
    /// Metric name (metric points only).
    name: Option<String>,
    /// Hex trace id (log records only).
    trace_id: Option<String>,
    /// At most this many rows (default 10000, at most 1000000).
    limit: Option<usize>,
    /// Rows at or after this time (unix seconds or RFC 3339); parts wholly before it are not read.
    from: Option<String>,
    /// Rows at or before this time; parts wholly after it are not read.
    to: Option<String>,
    /// `from` and `to` as unix nanoseconds, once read.
    #[serde(skip)]
    range: (u64, u64),
}

impl RowFilter {
    fn in_range(&self, time_unix_nano: u64) -> bool {
        (self.range.0..=self.range.1).contains(&time_unix_nano)
    }
}

const DEFAULT_LIMIT: usize = 10_000;
/// The largest `limit` a listing honours; a larger one is taken as this (the answer then says
/// `truncated` when more rows matched).
const MAX_LIMIT: usize = 1_000_000;

fn service_matches(filter: &Option<String>, service: &Option<std::sync::Arc<str>>) -> bool {
    filter.as_deref().is_none_or(|f| service.as_deref() == Some(f))
}

/// Scans one signal of one tenant, turning matching rows into JSON objects.
async fn list(
    state: ApiState,
    headers: HeaderMap,
    signal: Signal,
    filter: RowFilter,
    key: &'static str,
    mut to_json: impl FnMut(&RowFilter, &Rows, &mut Vec<Value>) + Send + 'static,
) -> Result<Json<Value>, QueryError> {
    let tenant = tenant(&headers)?;
    let mut filter = filter;
    let from = super::params::parse_time("from", filter.from.as_deref())?;
    let to = super::params::parse_time("to", filter.to.as_deref())?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(QueryError::BadRequest("parameter `from` is after `to`".into()));
    }
    filter.range = (from.unwrap_or(0), to.unwrap_or(u64::MAX));
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let tenant_name = tenant.as_str().to_string();
    let (mut rows, warnings) = blocking(move || {
        let mut snapshot = state.store.snapshot(&tenant, signal);
        super::prune_snapshot(&mut snapshot, from, to, filter.service.as_deref());
        let mut out = Vec::new();
        // The answer is the first `limit` rows in order (and whether there were more): the
        // rows kept while scanning are cut back to those whenever they reach twice as many, so
        // a listing of a large store holds at most 2 × (limit + 1) rows, not all it matched.
        let keep = limit.saturating_add(1);
        let (lo, hi) = filter.range;
        let narrow = Narrow { lo, hi, service: filter.service.as_deref() };
        let report = state
            .store
            .scan_narrowed(&snapshot, &narrow, |rows| {
                to_json(&filter, rows, &mut out);
                if out.len() >= keep.saturating_mul(2) {
                    first_in_order(&mut out, keep);
                }
            })
            .map_err(QueryError::from)?;
        first_in_order(&mut out, keep);
        Ok((out, report.warnings))
    })
    .await?;
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    let mut answer = json!({ "tenant": tenant_name, key: rows, "truncated": truncated });
    if !warnings.is_empty() {
        answer["warnings"] = json!(warnings);
    }
    Ok(Json(answer))
}

/// Sorts listed rows into their answer order and keeps the first `keep`: oldest first by
/// `time_unix_nano`, rows of one time by their JSON text (so an answer is the same on every
/// call, whichever order the parts were read in).
fn first_in_order(rows: &mut Vec<Value>, keep: usize) {
    let mut keyed: Vec<((u64, String), Value)> =
        rows.drain(..).map(|v| ((v["time_unix_nano"].as_u64().unwrap_or(0), v.to_string()), v)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.truncate(keep);
    rows.extend(keyed.into_iter().map(|(_, v)| v));
}

async fn metric_points(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(filter): Query<RowFilter>,
) -> Result<Json<Value>, QueryError> {
    list(state, headers, Signal::Metrics, filter, "points", |f, rows, out| {
        let Rows::Metrics(points) = rows else { return };
        for p in points {
            if !service_matches(&f.service, &p.resource.service_name)
                || !f.in_range(p.time_unix_nano)
                || f.name.as_deref().is_some_and(|n| n != &*p.metric.name)
            {
                continue;
            }
            out.push(json!({
                "service_name": p.resource.service_name.as_deref(),
                "service_version": p.resource.service_version.as_deref(),
                "name": &*p.metric.name,
                "description": &*p.metric.description,
                "unit": &*p.metric.unit,
                "kind": p.kind.as_str(),
                "temporality": p.temporality,
                "is_monotonic": p.is_monotonic,
                "start_time_unix_nano": p.start_unix_nano,
                "time_unix_nano": p.time_unix_nano,
                "attributes": attrs::plain_text(&p.attributes),
                "value": p.value,
                "value_int": p.value_int,
                "count": p.count,
                "sum": p.sum,
                "min": p.min,
                "max": p.max,
                "detail": if p.detail.is_empty() { Value::Null } else { serde_json::from_str(&p.detail).unwrap_or(Value::Null) },
                "exemplars": attrs::decode_json::<Value>(&p.exemplars).unwrap_or_default(),
                "resource": attrs::plain_text(&p.resource.attributes),
            }));
        }
    })
    .await
}

async fn logs(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(filter): Query<RowFilter>,
) -> Result<Json<Value>, QueryError> {
    list(state, headers, Signal::Logs, filter, "logs", |f, rows, out| {
        let Rows::Logs(records) = rows else { return };
        for r in records {
            let trace_hex = r.trace_id.map(hex::encode);
            if !service_matches(&f.service, &r.resource.service_name)
                || !f.in_range(r.time_unix_nano)
                || f.trace_id.as_deref().is_some_and(|t| trace_hex.as_deref() != Some(t))
            {
                continue;
            }
            let body = if r.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&r.body).map(|b| attrs::plain_value(&b)).unwrap_or(Value::Null)
            };
            out.push(json!({
                "service_name": r.resource.service_name.as_deref(),
                "service_version": r.resource.service_version.as_deref(),
                "time_unix_nano": r.time_unix_nano,
                "observed_time_unix_nano": r.observed_unix_nano,
                "severity_number": r.severity_number,
                "severity_text": r.severity_text,
                "body": body,
                "attributes": attrs::plain_text(&r.attributes),
                "trace_id": trace_hex,
                "span_id": r.span_id.map(hex::encode),
                "event_name": r.event_name,
                "scope_name": &*r.scope.name,
                "resource": attrs::plain_text(&r.resource.attributes),
            }));
        }
    })
    .await
}

async fn profile_samples(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(filter): Query<RowFilter>,
) -> Result<Json<Value>, QueryError> {
    list(state, headers, Signal::Profiles, filter, "samples", |f, rows, out| {
        let Rows::Profiles(samples) = rows else { return };
        for s in samples {
            if !service_matches(&f.service, &s.resource.service_name) || !f.in_range(s.time_unix_nano) {
                continue;
            }
            out.push(json!({
                "service_name": s.resource.service_name.as_deref(),
                "service_version": s.resource.service_version.as_deref(),
                "time_unix_nano": s.time_unix_nano,
                "profile_id": hex::encode(s.profile.profile_id),
                "source_sha256": s.profile.source_sha256.map(hex::encode),
                "sample_type": &*s.profile.sample_type,
                "sample_unit": &*s.profile.sample_unit,
                "period_type": &*s.profile.period_type,
                "period_unit": &*s.profile.period_unit,
                "period": s.profile.period,
                "value": s.value,
                "stack": serde_json::from_str::<Value>(&s.stack).unwrap_or(Value::Null),
                "attributes": attrs::plain_text(&s.attributes),
                "trace_id": s.trace_id.map(hex::encode),
                "span_id": s.span_id.map(hex::encode),
            }));
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    // Cutting the kept rows back while scanning gives the answer sorting them all at the end
    // gives: the first `keep` in order, whichever batches they came in.
    #[test]
    fn rows_cut_back_while_scanning_are_the_first_in_order() {
        let all: Vec<Value> = (0..1000u64).map(|i| json!({ "n": i, "time_unix_nano": (i * 7919) % 100 })).collect();
        let mut expected = all.clone();
        first_in_order(&mut expected, usize::MAX);
        let keep = 11;
        let mut kept = Vec::new();
        for batch in all.chunks(37) {
            kept.extend(batch.iter().cloned());
            if kept.len() >= 2 * keep {
                first_in_order(&mut kept, keep);
            }
            assert!(kept.len() < 2 * keep + 37);
        }
        first_in_order(&mut kept, keep);
        assert_eq!(kept, expected[..keep]);
    }

    // A listing's order is time first: rows are not ordered by their attributes (the first
    // field of their JSON text), and rows at one time are ordered by their text so an answer
    // is the same on every call.
    #[test]
    fn listed_rows_are_in_time_order() {
        let mut rows = vec![
            json!({ "attributes": { "a": "1" }, "time_unix_nano": 30u64 }),
            json!({ "attributes": { "z": "1" }, "time_unix_nano": 10u64 }),
            json!({ "attributes": { "b": "1" }, "time_unix_nano": 30u64 }),
            json!({ "attributes": { "m": "1" }, "time_unix_nano": 20u64 }),
        ];
        first_in_order(&mut rows, 3);
        let got: Vec<(u64, String)> = rows
            .iter()
            .map(|r| {
                let key = r["attributes"].as_object().unwrap().keys().next().unwrap().clone();
                (r["time_unix_nano"].as_u64().unwrap(), key)
            })
            .collect();
        let want = [(10, "z"), (20, "m"), (30, "a")].map(|(t, k)| (t, k.to_string()));
        assert_eq!(got, want);
    }
}
