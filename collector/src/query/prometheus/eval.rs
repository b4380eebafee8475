//! `GET|POST /api/v1/query` and `/api/v1/query_range`: PromQL evaluated by `prom::engine` over
//! the tenant's stored metrics, answered as Prometheus writes results (sample values as strings,
//! times as float unix seconds).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, Method};
use prom::engine::{self, Options, Value as PromValue};
use prom::model::{Labels, Series, format_value};
use serde_json::{Value, json};

use super::{MAX_SAMPLES, Params, PromError, QUERY_TIMEOUT, run, source, success, tenant};
use crate::query::ApiState;

/// Most points a range query may ask per series, as Prometheus refuses more.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// A timestamp in milliseconds as Prometheus's float seconds (an integer when whole, as
/// Prometheus writes `4`, not `4.0`).
fn seconds(t_ms: i64) -> Value {
    if t_ms % 1000 == 0 {
        return json!(t_ms / 1000);
    }
    let secs = t_ms as f64 / 1000.0;
    serde_json::Number::from_f64(secs).map_or(Value::Null, Value::Number)
}

fn metric(labels: &Labels) -> Value {
    json!(labels.iter().collect::<BTreeMap<&str, &str>>())
}

fn matrix(series: &[Series]) -> Value {
    Value::Array(
        series
            .iter()
            .map(|s| {
                let values: Vec<Value> = s.samples.iter().map(|p| json!([seconds(p.t), format_value(p.v)])).collect();
                json!({"metric": metric(&s.labels), "values": values})
            })
            .collect(),
    )
}

fn data(value: &PromValue) -> Value {
    match value {
        PromValue::Scalar { t, v } => json!({"resultType": "scalar", "result": [seconds(*t), format_value(*v)]}),
        PromValue::String { t, v } => json!({"resultType": "string", "result": [seconds(*t), v]}),
        PromValue::Vector(samples) => {
            let result: Vec<Value> = samples
                .iter()
                .map(|s| json!({"metric": metric(&s.labels), "value": [seconds(s.t), format_value(s.v)]}))
                .collect();
            json!({"resultType": "vector", "result": result})
        }
        PromValue::Matrix(series) => json!({"resultType": "matrix", "result": matrix(series)}),
    }
}

/// A duration parameter: float seconds or a PromQL duration (`1m30s`).
fn duration_ms(params: &Params, key: &str) -> Result<Option<i64>, PromError> {
    let Some(text) = params.get(key).map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    let invalid =
        || PromError::BadData(format!("invalid parameter {key:?}: cannot parse {text:?} to a valid duration"));
    if let Ok(secs) = text.parse::<f64>() {
        if !secs.is_finite() || secs.abs() > 9.2e15 {
            return Err(invalid());
        }
        return Ok(Some((secs * 1000.0).round() as i64));
    }
    let d = promql_parser::util::duration::parse_duration(text).map_err(|_| invalid())?;
    Ok(Some(i64::try_from(d.as_millis()).map_err(|_| invalid())?))
}

/// The evaluation options of a request: its `timeout` (at most [`QUERY_TIMEOUT`]) and the limits.
fn options(params: &Params) -> Result<Options, PromError> {
    let timeout = match duration_ms(params, "timeout")? {
        Some(ms) if ms > 0 => Duration::from_millis(ms as u64).min(QUERY_TIMEOUT),
        _ => QUERY_TIMEOUT,
    };
    Ok(Options { max_samples: MAX_SAMPLES, deadline: Some(Instant::now() + timeout), ..Options::default() })
}

fn query_text(params: &Params) -> Result<String, PromError> {
    match params.get("query") {
        Some(q) if !q.trim().is_empty() => Ok(q.to_string()),
        _ => Err(PromError::BadData("invalid parameter \"query\": no query given".into())),
    }
}

fn engine_error(e: engine::Error) -> PromError {
    match e {
        engine::Error::BadData(m) => PromError::BadData(format!("invalid parameter \"query\": {m}")),
        engine::Error::Execution(m) => PromError::Execution(m),
        engine::Error::Timeout => PromError::Timeout("query timed out in expression evaluation".into()),
        engine::Error::Storage(m) => PromError::Internal(m),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `GET|POST /api/v1/query`.
pub async fn query(
    State(state): State<ApiState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    let tenant = tenant(&headers)?;
    let params = Params::read(&state, &method, &headers, raw, body).await?;
    let text = query_text(&params)?;
    let t = params.time_ms("time")?.unwrap_or_else(now_ms);
    let opts = options(&params)?;
    let src = source(&state, tenant);
    run(move || {
        let value = engine::instant(&text, t, &src, &opts).map_err(engine_error)?;
        let warnings: BTreeSet<String> = std::mem::take(&mut *src.warnings.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(success(data(&value), warnings))
    })
    .await
}

/// `GET|POST /api/v1/query_range`.
pub async fn query_range(
    State(state): State<ApiState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    let tenant = tenant(&headers)?;
    let params = Params::read(&state, &method, &headers, raw, body).await?;
    let text = query_text(&params)?;
    let missing = |key: &str| PromError::BadData(format!("invalid parameter {key:?}: missing"));
    let start = params.time_ms("start")?.ok_or_else(|| missing("start"))?;
    let end = params.time_ms("end")?.ok_or_else(|| missing("end"))?;
    if end < start {
        return Err(PromError::BadData("end timestamp must not be before start time".into()));
    }
    let step = duration_ms(&params, "step")?.ok_or_else(|| missing("step"))?;
    if step <= 0 {
        return Err(PromError::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return Err(PromError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                .into(),
        ));
    }
    let opts = options(&params)?;
    let src = source(&state, tenant);
    run(move || {
        let series = engine::range(&text, start, end, step, &src, &opts).map_err(engine_error)?;
        let warnings: BTreeSet<String> = std::mem::take(&mut *src.warnings.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(success(json!({"resultType": "matrix", "result": matrix(&series)}), warnings))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_prometheus_writes_them() {
        let cases = [
            (1.0, "1"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e21, "1000000000000000000000"),
            (1e-7, "0.0000001"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, text) in cases {
            assert_eq!(format_value(v), text);
        }
        assert_eq!(seconds(4000), json!(4));
        assert_eq!(seconds(1_435_781_451_781), json!(1_435_781_451.781));
    }
}
