//! Prometheus remote write 1.0 on the API port: `POST /api/v1/write`, a snappy-compressed
//! `WriteRequest` (`prom::remote_write`), per tenant (`X-Scope-OrgID`).
//!
//! Each series becomes one OTLP gauge named by its `__name__`, its other labels the points'
//! attributes, under the instrumentation scope [`SCOPE`] — which is how the Prometheus API reads
//! them back with exactly the labels they were sent with (`query::prometheus::series`). Going
//! through `Ingest::export` gives remote write the same limits, admission and durability as OTLP:
//! the body is counted against the in-flight budget before it is read and again before it is
//! decompressed, and the 204 is sent only after the write-ahead log holds the samples.
//!
//! Answers, as Prometheus's own receiver and its senders expect: 204 on success; 400 (a sender
//! gives up) for a body that is not snappy or not a `WriteRequest`, a series without a metric
//! name or with an invalid label name, or native histograms, which are not stored; 413 for a
//! body over `limits.max_request_bytes`; 429 or 503 with `Retry-After` (a sender retries) when
//! the collector is overloaded or its storage failing. Nothing of a refused request is stored.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use prom::remote_write::{self, WriteRequest};

use super::Ingest;
use crate::error::IngestError;
use crate::tenant::Tenant;

/// The instrumentation scope of metrics that arrived by remote write.
pub const SCOPE: &str = "slo-gate/prometheus-remote-write";

/// OTLP's `DataPointFlags.FLAG_NO_RECORDED_VALUE`: set on Prometheus staleness markers.
pub const NO_RECORDED_VALUE: u32 = 1;

pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new().route("/api/v1/write", post(write)).with_state(ingest)
}

async fn write(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    let result = receive(&ingest, &headers, body).await;
    let telemetry = ingest.telemetry();
    match result {
        Ok(()) => {
            telemetry.request("remote_write", crate::signal::Signal::Metrics, "ok");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => {
            telemetry.request("remote_write", crate::signal::Signal::Metrics, super::otlp_http::outcome_err(&err));
            let kind = err.kind();
            let mut response =
                (kind.http_status(), [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{err}\n"))
                    .into_response();
            if let Some(after) = kind.retry_after() {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
            }
            response
        }
    }
}

async fn receive(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<(), IngestError> {
    let tenant = Tenant::from_headers(headers)?;
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    if !encoding.eq_ignore_ascii_case("snappy") {
        return Err(IngestError::UnsupportedMediaType {
            what: "content encoding",
            value: encoding.to_string(),
            expected: "remote write bodies are snappy-compressed (Content-Encoding: snappy)",
        });
    }
    ingest.admit()?;
    let limit = ingest.limits().max_request_bytes;
    let admitted = ingest.admission().read(headers, body, limit, false).await?;
    let (compressed, mut held) = (admitted.bytes, admitted.held);
    let malformed =
        |e: remote_write::DecodeError| IngestError::Malformed { format: "remote write", detail: e.to_string() };
    let size = remote_write::decompressed_len(&compressed).map_err(malformed)?;
    if size > limit {
        return Err(IngestError::TooLarge { size, limit });
    }
    held.grow(size)?;
    let request = remote_write::decode(&compressed, limit).map_err(malformed)?;
    drop(compressed);
    let otlp = to_otlp(request)?;
    let response = ingest.export(tenant, otlp, None).await?;
    match response.partial_success {
        Some(p) if p.rejected_data_points > 0 => Err(IngestError::Invalid(p.error_message)),
        _ => Ok(()),
    }
}

/// A label name Prometheus accepts: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The series of a remote-write request as OTLP gauges (module docs); fails on the first series
/// that cannot be stored, so nothing of the request is.
pub fn to_otlp(request: WriteRequest) -> Result<ExportMetricsServiceRequest, IngestError> {
    let mut metrics = Vec::with_capacity(request.timeseries.len());
    for (i, series) in request.timeseries.into_iter().enumerate() {
        if !series.histograms.is_empty() {
            return Err(IngestError::Invalid(format!(
                "series {i}: native histograms are not supported; send classic histograms (_bucket/_sum/_count)"
            )));
        }
        let mut name = None;
        let mut attributes = Vec::with_capacity(series.labels.len());
        for label in series.labels {
            if label.name == "__name__" {
                name = Some(label.value);
                continue;
            }
            if !valid_label_name(&label.name) {
                return Err(IngestError::Invalid(format!("series {i}: invalid label name {:?}", label.name)));
            }
            if label.value.is_empty() {
                continue;
            }
            attributes.push(KeyValue {
                key: label.name,
                value: Some(AnyValue { value: Some(any_value::Value::StringValue(label.value)) }),
                key_strindex: 0,
            });
        }
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Err(IngestError::Invalid(format!("series {i} has no metric name (__name__)")));
        };
        let data_points = series
            .samples
            .into_iter()
            .map(|s| NumberDataPoint {
                attributes: attributes.clone(),
                start_time_unix_nano: 0,
                time_unix_nano: u64::try_from(s.timestamp).unwrap_or(0).saturating_mul(1_000_000),
                exemplars: Vec::new(),
                flags: if prom::model::is_stale_marker(s.value) { NO_RECORDED_VALUE } else { 0 },
                value: Some(number_data_point::Value::AsDouble(s.value)),
            })
            .collect();
        metrics.push(Metric {
            name,
            description: String::new(),
            unit: String::new(),
            metadata: Vec::new(),
            data: Some(metric::Data::Gauge(Gauge { data_points })),
        });
    }
    Ok(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: None,
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope { name: SCOPE.to_string(), ..Default::default() }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    })
}
