//! Prometheus remote write 1.0 on the API port: `POST /api/v1/write`, a snappy-compressed
//! `WriteRequest` (`prom::remote_write`), per tenant (`X-Scope-OrgID`).
//!
//! Each series becomes one OTLP gauge named by its `__name__`, its other labels the points'
//! attributes, under the instrumentation scope [`SCOPE`] — which is how the Prometheus API reads
//! them back with exactly the labels they were sent with (`query::prometheus::series`). Going
//! through `Ingest::export` gives remote write the same limits, admission and durability as OTLP:
//! the body is counted against the in-flight budget before it is read and again before it is
//! decompressed, and the 204 is sent only after the write-ahead log holds the samples. The log
//! keeps the body as it came (snappy, about a tenth of the OTLP encoding; replay converts it
//! again, `model::prometheus::rows_from_remote_write`).
//!
//! Answers, as Prometheus's own receiver and its senders expect: 204 on success; 400 (a sender
//! gives up) for a body that is not snappy or not a `WriteRequest`, a series without a metric
//! name or with an invalid label name, native histograms, which are not stored, and, as
//! Prometheus's head refuses them, a sample older than its series' newest or at the newest's
//! time with another value ([`LastSamples`]); 413 for a
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
use prom::remote_write::{self, WriteRequest};

use super::{Ingest, Raw};
use crate::error::IngestError;
use crate::tenant::Tenant;

use crate::model::prometheus::otlp_from_remote_write;
pub use crate::model::prometheus::{NO_RECORDED_VALUE, SCOPE};

pub fn router(ingest: Arc<Ingest>) -> Router {
    let state = Arc::new(Receiver { ingest, last: LastSamples::new(MAX_TRACKED_SERIES) });
    Router::new().route("/api/v1/write", post(write)).with_state(state)
}

/// Most series whose newest sample [`LastSamples`] remembers.
pub const MAX_TRACKED_SERIES: usize = 2_000_000;

struct Receiver {
    ingest: Arc<Ingest>,
    last: LastSamples,
}

/// The newest sample (time, value bits) of each series written by remote write, per tenant,
/// to refuse what Prometheus's head refuses: a sample older than its series' newest ("out of
/// order sample") and one at the newest's time with another value ("duplicate sample for
/// timestamp"); an exact duplicate is accepted, as there. Keyed by a 64-bit hash of tenant and
/// labels; at most `capacity` series, beyond which it starts afresh (and accepts until it has
/// seen each series again). It starts empty at start-up, so the first sample of each series
/// after a restart is not checked against what was stored before.
#[derive(Debug)]
pub struct LastSamples {
    newest: std::sync::Mutex<std::collections::HashMap<u64, (i64, u64)>>,
    capacity: usize,
}

/// A change [`LastSamples::check_and_advance`] made, to undo if the write fails.
type Undo = Vec<(u64, Option<(i64, u64)>, (i64, u64))>;

impl LastSamples {
    pub fn new(capacity: usize) -> LastSamples {
        LastSamples { newest: Default::default(), capacity }
    }

    /// Checks every sample of `request` in order, as Prometheus appends them, and records the
    /// new newest samples; on the first refused sample, records nothing and says why.
    pub fn check_and_advance(&self, tenant: &Tenant, request: &WriteRequest) -> Result<Undo, IngestError> {
        let mut newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        if newest.len() > self.capacity {
            tracing::warn!(series = newest.len(), "remote write tracks too many series; starting afresh");
            newest.clear();
        }
        let mut undo: Undo = Vec::new();
        let mut refused = None;
        'series: for (i, series) in request.timeseries.iter().enumerate() {
            let key = series_key(tenant, &series.labels);
            for s in &series.samples {
                let sample = (s.timestamp, s.value.to_bits());
                let before = newest.get(&key).copied();
                match before {
                    Some((t, _)) if s.timestamp < t => {
                        refused = Some(format!("out of order sample (series {i}, timestamp {})", s.timestamp));
                        break 'series;
                    }
                    Some((t, bits)) if s.timestamp == t && bits != sample.1 => {
                        refused =
                            Some(format!("duplicate sample for timestamp (series {i}, timestamp {})", s.timestamp));
                        break 'series;
                    }
                    Some(b) if b == sample => {}
                    _ => {
                        newest.insert(key, sample);
                        undo.push((key, before, sample));
                    }
                }
            }
        }
        if let Some(why) = refused {
            Self::restore(&mut newest, undo);
            return Err(IngestError::Invalid(why));
        }
        Ok(undo)
    }

    /// Undoes what a write whose storage failed recorded (where nothing newer came since).
    pub fn undo(&self, undo: Undo) {
        Self::restore(&mut self.newest.lock().unwrap_or_else(|e| e.into_inner()), undo);
    }

    fn restore(newest: &mut std::collections::HashMap<u64, (i64, u64)>, undo: Undo) {
        for (key, before, set) in undo.into_iter().rev() {
            if newest.get(&key) == Some(&set) {
                match before {
                    Some(b) => newest.insert(key, b),
                    None => newest.remove(&key),
                };
            }
        }
    }
}

/// A hash of a tenant and a series' labels (in any order; empty values dropped, as stored).
fn series_key(tenant: &Tenant, labels: &[remote_write::Label]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut pairs: Vec<(&str, &str)> =
        labels.iter().filter(|l| !l.value.is_empty()).map(|l| (l.name.as_str(), l.value.as_str())).collect();
    pairs.sort_unstable();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tenant.as_str().hash(&mut h);
    pairs.hash(&mut h);
    h.finish()
}

async fn write(State(state): State<Arc<Receiver>>, headers: HeaderMap, body: Body) -> Response {
    let ingest = &state.ingest;
    let result = receive(&state, &headers, body).await;
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

async fn receive(state: &Receiver, headers: &HeaderMap, body: Body) -> Result<(), IngestError> {
    let ingest = &state.ingest;
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
    let undo = state.last.check_and_advance(&tenant, &request)?;
    let result = async {
        let otlp = to_otlp(request)?;
        // The log keeps the body as it came: a tenth of the OTLP encoding, and not re-encoded.
        let raw = Raw::RemoteWrite { body: compressed, decoded_len: size };
        let response = ingest.export(tenant, otlp, raw).await?;
        match response.partial_success {
            Some(p) if p.rejected_data_points > 0 => Err(IngestError::Invalid(p.error_message)),
            _ => Ok(()),
        }
    }
    .await;
    if result.is_err() {
        state.last.undo(undo);
    }
    result
}

/// The series of a remote-write request as OTLP gauges (`model::prometheus::otlp_from_remote_write`).
pub fn to_otlp(request: WriteRequest) -> Result<ExportMetricsServiceRequest, IngestError> {
    otlp_from_remote_write(request).map_err(IngestError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prom::remote_write::{Label, Sample, TimeSeries};

    fn request(series: &[(&str, &[(i64, f64)])]) -> WriteRequest {
        WriteRequest {
            timeseries: series
                .iter()
                .map(|(job, samples)| TimeSeries {
                    labels: vec![
                        Label { name: "__name__".into(), value: "up".into() },
                        Label { name: "job".into(), value: job.to_string() },
                    ],
                    samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
                    ..Default::default()
                })
                .collect(),
            metadata: Vec::new(),
        }
    }

    #[test]
    fn out_of_order_and_conflicting_duplicates_are_refused_as_prometheus_refuses_them() {
        let last = LastSamples::new(100);
        let a = Tenant::parse("a").unwrap();
        last.check_and_advance(&a, &request(&[("x", &[(10, 1.0), (20, 2.0)])])).unwrap();
        // An exact duplicate of the newest sample is accepted; newer samples too.
        last.check_and_advance(&a, &request(&[("x", &[(20, 2.0), (30, 3.0)])])).unwrap();
        let refused = |r: WriteRequest| last.check_and_advance(&a, &r).unwrap_err().to_string();
        assert!(refused(request(&[("x", &[(25, 1.0)])])).contains("out of order sample (series 0, timestamp 25)"));
        assert!(refused(request(&[("x", &[(30, 9.0)])])).contains("duplicate sample for timestamp"));
        // Within one request too; and a refused request records nothing of its other series.
        assert!(refused(request(&[("y", &[(5, 1.0)]), ("x", &[(40, 1.0), (35, 1.0)])])).contains("series 1"));
        last.check_and_advance(&a, &request(&[("y", &[(5, 1.0)]), ("x", &[(40, 4.0)])])).unwrap();
        // Another tenant's series are its own.
        last.check_and_advance(&Tenant::parse("b").unwrap(), &request(&[("x", &[(1, 0.0)])])).unwrap();
        // A write that failed in storage is undone.
        let undo = last.check_and_advance(&a, &request(&[("x", &[(50, 5.0)])])).unwrap();
        last.undo(undo);
        last.check_and_advance(&a, &request(&[("x", &[(45, 4.5)])])).unwrap();
        // Staleness markers are values like any other (the same NaN bits are a duplicate).
        let stale = f64::from_bits(prom::model::STALE_NAN_BITS);
        last.check_and_advance(&a, &request(&[("x", &[(60, stale)])])).unwrap();
        last.check_and_advance(&a, &request(&[("x", &[(60, stale)])])).unwrap();
        assert!(refused(request(&[("x", &[(60, f64::NAN)])])).contains("duplicate"));
    }
}
