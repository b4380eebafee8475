//! `GET|POST /api/v1/query_exemplars`: the exemplars of the series a query's selectors match,
//! from OTLP points (`model::prometheus::exemplars` says which series each belongs to), as
//! Prometheus answers them: one entry per series, `seriesLabels` and its `exemplars`
//! (`labels`, `value` as a string, `timestamp` as float seconds), in `[start, end]`.
//!
//! Exemplars are read from the rows of the head and the metrics parts in range (the series
//! store keeps samples only); at most [`MAX_EXEMPLARS`] are answered, within the query timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, Method};
use prom::model::{Labels, format_value};
use serde_json::{Value, json};

use super::{Params, PromError, QUERY_TIMEOUT, run, success, tenant};
use crate::model::Rows;
use crate::query::ApiState;
use crate::query::params::Selector;
use crate::signal::Signal;
use crate::store::ms_to_ns;

/// Most exemplars one answer holds.
pub const MAX_EXEMPLARS: usize = 100_000;

/// `GET|POST /api/v1/query_exemplars`.
pub async fn query_exemplars(
    State(state): State<ApiState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    let tenant = tenant(&headers)?;
    let params = Params::read(&state, &method, &headers, raw, body).await?;
    let start = params.time_ms("start")?.unwrap_or(i64::MIN / 2);
    let end = params.time_ms("end")?.unwrap_or(i64::MAX / 2);
    if end < start {
        return Err(PromError::BadData("end timestamp must not be before start timestamp".into()));
    }
    let query = params.get("query").unwrap_or_default().to_string();
    let selectors =
        prom::engine::selectors(&query).map_err(|e| PromError::BadData(format!("invalid parameter \"query\": {e}")))?;
    if selectors.is_empty() {
        return Ok(success(Value::Null, BTreeSet::new()));
    }
    let selectors: Vec<Selector> = selectors.into_iter().map(Selector::from).collect();
    let store = std::sync::Arc::clone(&state.store);
    run(move || {
        let deadline = Instant::now() + QUERY_TIMEOUT;
        let (lo, hi) = (ms_to_ns(start), ms_to_ns(end));
        let mut snapshot = store.snapshot(&tenant, Signal::Metrics);
        snapshot.chunks.retain(|c| c.min_time <= hi && c.max_time >= lo);
        snapshot.parts.retain(|p| p.of(&tenant).is_some_and(|t| t.min_time <= hi && t.max_time >= lo));
        let mut found: BTreeMap<Labels, Vec<Item>> = BTreeMap::new();
        let mut count = 0usize;
        let mut over: Option<PromError> = None;
        let narrow = crate::store::parts::Narrow { lo, hi, service: None };
        let report = store
            .scan_narrowed(&snapshot, &narrow, |rows| {
                let Rows::Metrics(points) = rows else { return };
                if over.is_none() && Instant::now() >= deadline {
                    over = Some(PromError::Timeout("query timed out in expression evaluation".into()));
                }
                for row in points.iter().filter(|r| !r.exemplars.is_empty()) {
                    if over.is_some() {
                        return;
                    }
                    crate::model::prometheus::exemplars(row, |series, e| {
                        if e.t_ms < start || e.t_ms > end || over.is_some() {
                            return;
                        }
                        let labels = Labels::new(series);
                        if !selectors.iter().any(|s| s.matches(|name| labels.get(name))) {
                            return;
                        }
                        count += 1;
                        if count > MAX_EXEMPLARS {
                            over = Some(PromError::Execution(format!(
                                "the query selects more than {MAX_EXEMPLARS} exemplars; narrow it or its time range"
                            )));
                            return;
                        }
                        found.entry(labels).or_default().push(Item {
                            labels: Labels::new(e.labels),
                            value: e.value,
                            t_ms: e.t_ms,
                        });
                    });
                }
            })
            .map_err(|e| PromError::Internal(e.to_string()))?;
        if let Some(over) = over {
            return Err(over);
        }
        let data: Vec<Value> = found
            .into_iter()
            .map(|(series, mut items)| {
                items.sort_by_key(|i| i.t_ms);
                let exemplars: Vec<Value> = items
                    .iter()
                    .map(|i| {
                        json!({
                            "labels": i.labels.iter().collect::<BTreeMap<&str, &str>>(),
                            "value": format_value(i.value),
                            "timestamp": i.t_ms as f64 / 1000.0,
                        })
                    })
                    .collect();
                json!({"seriesLabels": series.iter().collect::<BTreeMap<&str, &str>>(), "exemplars": exemplars})
            })
            .collect();
        Ok(success(Value::Array(data), report.warnings.into_iter().collect()))
    })
    .await
}

/// One exemplar of an answer.
struct Item {
    labels: Labels,
    value: f64,
    t_ms: i64,
}
