//! Prometheus remote write 1.0 on the API port: `POST /api/v1/write`, a snappy-compressed
//! `WriteRequest` (`prom::remote_write`), per tenant (`X-Scope-OrgID`).
//!
//! Remote-written samples are Prometheus series already: they go straight to the series store
//! (`store::series`), never through OTLP rows or Parquet parts (ADR 0009). The body is walked
//! in place (`prom::remote_write::walk`, labels borrowed from it); each series is found in the
//! [`SeriesTable`] by a hash of tenant and labels, so a series seen before costs a lookup and a
//! comparison, not an allocation, and every batch of it shares one label set. The receiver has
//! the same limits, admission and durability as OTLP: the body is counted against the in-flight
//! budget before it is read and again before it is decompressed, and the 204 is sent only after
//! the write-ahead log holds the body, kept as it came (snappy; replay walks it again,
//! `model::prometheus::series_from_remote_write`).
//!
//! Answers, as Prometheus's own receiver and its senders expect: 204 on success; 400 (a sender
//! gives up) for a body that is not snappy or not a `WriteRequest`, a series without a metric
//! name, with an invalid label name or more labels than `limits.max_attributes_per_item`,
//! native histograms, which are not stored, and, as Prometheus's head refuses them, a sample
//! older than its series' newest or at the newest's time with another value ([`SeriesTable`]);
//! 413 for a body over `limits.max_request_bytes`; 429 or 503 with `Retry-After` (a sender
//! retries) when the collector is overloaded or its storage failing. Nothing of a refused
//! request is stored.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prom::model::{Labels, Sample};
use prom::remote_write::{self, WalkError};

use super::Ingest;
use crate::error::IngestError;
use crate::model::prometheus::{
    BatchSeries, SeriesBatch, clamp_ms, label_text_bytes, normalize_labels, series_problem,
};
use crate::tenant::Tenant;

pub use crate::model::prometheus::{NO_RECORDED_VALUE, SCOPE};

pub fn router(ingest: Arc<Ingest>) -> Router {
    let state = Arc::new(Receiver { ingest, table: SeriesTable::new(MAX_TRACKED_SERIES, MAX_TRACKED_LABEL_BYTES) });
    Router::new().route("/api/v1/write", post(write)).with_state(state)
}

/// Most series the [`SeriesTable`] remembers.
pub const MAX_TRACKED_SERIES: usize = 2_000_000;
/// Most label text (with a per-label overhead) the [`SeriesTable`] holds.
pub const MAX_TRACKED_LABEL_BYTES: u64 = 256 << 20;

struct Receiver {
    ingest: Arc<Ingest>,
    table: SeriesTable,
}

/// The series written by remote write, per tenant: each one's labels, shared by every batch of
/// it, and its newest sample (time, value bits), to refuse what Prometheus's head refuses: a
/// sample older than its series' newest ("out of order sample") and one at the newest's time
/// with another value ("duplicate sample for timestamp"); an exact duplicate is accepted, as
/// there. Keyed by a 64-bit hash of tenant and labels (randomly seeded, so no client can choose
/// colliding label sets; a collision anyway gets labels of its own and goes unchecked). Bounded
/// by `max_series` and `max_label_bytes`, beyond which it starts afresh (and accepts until it
/// has seen each series again). It starts empty at start-up, so the first sample of each
/// series after a restart is not checked against what was stored before.
#[derive(Debug)]
pub struct SeriesTable {
    state: std::sync::Mutex<TableState>,
    hasher: foldhash::quality::RandomState,
    max_series: usize,
    max_label_bytes: u64,
}

#[derive(Debug, Default)]
struct TableState {
    known: HashMap<u64, Known, foldhash::fast::RandomState>,
    label_bytes: u64,
}

#[derive(Debug)]
struct Known {
    labels: Labels,
    /// The newest sample (time, value bits) accepted.
    newest: Option<(i64, u64)>,
}

/// What [`SeriesTable::admit`] recorded, to undo if the write fails: per series changed, its
/// key, its newest sample before and after.
pub type Undo = Vec<(u64, Option<(i64, u64)>, (i64, u64))>;

/// One series of a request between the walk and the table: where its labels and samples are.
struct Walked {
    key: u64,
    labels: std::ops::Range<usize>,
    samples: std::ops::Range<usize>,
}

impl SeriesTable {
    pub fn new(max_series: usize, max_label_bytes: u64) -> SeriesTable {
        SeriesTable { state: Default::default(), hasher: Default::default(), max_series, max_label_bytes }
    }

    /// Walks a decompressed request, checks every series and every sample in order, as
    /// Prometheus appends them, and records the new newest samples; returns the request's
    /// samples as a batch. On the first problem, records nothing and says what and where.
    pub fn admit(&self, tenant: &Tenant, raw: &[u8], max_labels: usize) -> Result<(SeriesBatch, Undo), IngestError> {
        // The walk, outside the lock: labels normalised and hashed, borrowed from the body.
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        let mut samples: Vec<remote_write::Sample> = Vec::new();
        let mut walked: Vec<Walked> = Vec::new();
        let mut scratch = Vec::new();
        remote_write::walk(raw, |view| {
            let i = walked.len();
            normalize_labels(&view.labels, &mut scratch);
            // Labels dropped or merged by normalising are checked as sent now; a series whose
            // labels are already stored as sent is checked when it is first met (below).
            if (view.histograms > 0 || scratch.len() != view.labels.len())
                && let Some(problem) = series_problem(i, &view.labels, &scratch, view.histograms, max_labels)
            {
                return Err(problem);
            }
            let mut h = self.hasher.build_hasher();
            h.write(tenant.as_str().as_bytes());
            for (n, v) in &scratch {
                // 0xff never occurs in UTF-8: the pairs cannot run into each other.
                h.write_u8(0xff);
                h.write(n.as_bytes());
                h.write_u8(0xff);
                h.write(v.as_bytes());
            }
            let start = pairs.len();
            pairs.extend_from_slice(&scratch);
            let first = samples.len();
            samples.extend_from_slice(&view.samples);
            walked.push(Walked { key: h.finish(), labels: start..pairs.len(), samples: first..samples.len() });
            Ok(())
        })
        .map_err(|e| match e {
            WalkError::Decode(e) => IngestError::Malformed { format: "remote write", detail: e.to_string() },
            WalkError::Visitor(problem) => IngestError::Invalid(problem),
        })?;

        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.known.len() > self.max_series || state.label_bytes > self.max_label_bytes {
            tracing::warn!(
                series = state.known.len(),
                label_bytes = state.label_bytes,
                "remote write tracks too many series; starting afresh"
            );
            *state = TableState::default();
        }
        let mut undo: Undo = Vec::new();
        let mut inserted: Vec<u64> = Vec::new();
        let mut batch =
            SeriesBatch { series: Vec::with_capacity(walked.len()), samples: samples.len(), label_bytes: 0 };
        let result = (|| -> Result<(), IngestError> {
            for (i, w) in walked.iter().enumerate() {
                let wanted = &pairs[w.labels.clone()];
                let fresh = || -> Result<Labels, IngestError> {
                    if let Some(problem) = series_problem(i, wanted, wanted, 0, max_labels) {
                        return Err(IngestError::Invalid(problem));
                    }
                    Ok(Labels::new(wanted.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()))
                };
                let (labels, newest) = match state.known.get_mut(&w.key) {
                    Some(k) if k.labels.iter().eq(wanted.iter().copied()) => (k.labels.clone(), Some(&mut k.newest)),
                    // Another series with the same hash: stored, but unchecked; the batch holds
                    // its labels.
                    Some(_) => {
                        let labels = fresh()?;
                        batch.label_bytes += label_text_bytes(wanted.iter().copied());
                        (labels, None)
                    }
                    // The table holds these labels, not the batch.
                    None => {
                        let labels = fresh()?;
                        let state = &mut *state;
                        state.label_bytes += label_text_bytes(wanted.iter().copied());
                        inserted.push(w.key);
                        let k = state.known.entry(w.key).or_insert(Known { labels: labels.clone(), newest: None });
                        (labels, Some(&mut k.newest))
                    }
                };
                let series_samples = &samples[w.samples.clone()];
                if let Some(newest) = newest {
                    let before = *newest;
                    for s in series_samples {
                        let sample = (s.timestamp, s.value.to_bits());
                        match *newest {
                            Some((t, _)) if s.timestamp < t => {
                                *newest = before;
                                return Err(IngestError::Invalid(format!(
                                    "out of order sample (series {i}, timestamp {})",
                                    s.timestamp
                                )));
                            }
                            Some((t, bits)) if s.timestamp == t && bits != sample.1 => {
                                *newest = before;
                                return Err(IngestError::Invalid(format!(
                                    "duplicate sample for timestamp (series {i}, timestamp {})",
                                    s.timestamp
                                )));
                            }
                            _ => *newest = Some(sample),
                        }
                    }
                    if let Some(after) = *newest
                        && before != Some(after)
                    {
                        undo.push((w.key, before, after));
                    }
                }
                batch.series.push(BatchSeries {
                    labels,
                    samples: series_samples.iter().map(|s| Sample { t: clamp_ms(s.timestamp), v: s.value }).collect(),
                });
            }
            Ok(())
        })();
        if let Err(err) = result {
            Self::restore(&mut state, std::mem::take(&mut undo));
            // The series this request was the first to send are forgotten again.
            for key in inserted {
                if let Some(k) = state.known.remove(&key) {
                    state.label_bytes -= label_text_bytes(k.labels.iter());
                }
            }
            return Err(err);
        }
        Ok((batch, undo))
    }

    /// Undoes what a write whose storage failed recorded (where nothing newer came since).
    pub fn undo(&self, undo: Undo) {
        Self::restore(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()), undo);
    }

    fn restore(state: &mut TableState, undo: Undo) {
        for (key, before, set) in undo.into_iter().rev() {
            if let Some(k) = state.known.get_mut(&key)
                && k.newest == Some(set)
            {
                k.newest = before;
            }
        }
    }
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
    ingest.admit().await?;
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
    let raw = remote_write::decompress(&compressed, limit).map_err(malformed)?;
    let (batch, undo) = state.table.admit(&tenant, &raw, ingest.limits().max_attributes_per_item)?;
    drop(raw);
    // The log keeps the body as it came: a tenth of the OTLP encoding, and not re-encoded.
    let result = ingest.export_series(tenant, batch, compressed, size).await;
    if result.is_err() {
        state.table.undo(undo);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use prom::remote_write::{Label, TimeSeries, WriteRequest};
    use prost::Message;

    fn request(series: &[(&str, &[(i64, f64)])]) -> Vec<u8> {
        WriteRequest {
            timeseries: series
                .iter()
                .map(|(job, samples)| TimeSeries {
                    labels: vec![
                        Label { name: "__name__".into(), value: "up".into() },
                        Label { name: "job".into(), value: job.to_string() },
                    ],
                    samples: samples
                        .iter()
                        .map(|&(timestamp, value)| remote_write::Sample { value, timestamp })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            metadata: Vec::new(),
        }
        .encode_to_vec()
    }

    fn admit(table: &SeriesTable, tenant: &str, raw: &[u8]) -> Result<(SeriesBatch, Undo), String> {
        table.admit(&Tenant::parse(tenant).unwrap(), raw, 30).map_err(|e| e.to_string())
    }

    #[test]
    fn out_of_order_and_conflicting_duplicates_are_refused_as_prometheus_refuses_them() {
        let table = SeriesTable::new(100, 1 << 20);
        admit(&table, "a", &request(&[("x", &[(10, 1.0), (20, 2.0)])])).unwrap();
        // An exact duplicate of the newest sample is accepted; newer samples too.
        admit(&table, "a", &request(&[("x", &[(20, 2.0), (30, 3.0)])])).unwrap();
        let refused = |r: Vec<u8>| admit(&table, "a", &r).unwrap_err();
        assert!(refused(request(&[("x", &[(25, 1.0)])])).contains("out of order sample (series 0, timestamp 25)"));
        assert!(refused(request(&[("x", &[(30, 9.0)])])).contains("duplicate sample for timestamp"));
        // Within one request too; and a refused request records nothing of its other series.
        assert!(refused(request(&[("y", &[(5, 1.0)]), ("x", &[(40, 1.0), (35, 1.0)])])).contains("series 1"));
        admit(&table, "a", &request(&[("y", &[(5, 1.0)]), ("x", &[(40, 4.0)])])).unwrap();
        // Another tenant's series are its own.
        admit(&table, "b", &request(&[("x", &[(1, 0.0)])])).unwrap();
        // A write that failed in storage is undone.
        let (_, undo) = admit(&table, "a", &request(&[("x", &[(50, 5.0)])])).unwrap();
        table.undo(undo);
        admit(&table, "a", &request(&[("x", &[(45, 4.5)])])).unwrap();
        // Staleness markers are values like any other (the same NaN bits are a duplicate).
        let stale = f64::from_bits(prom::model::STALE_NAN_BITS);
        admit(&table, "a", &request(&[("x", &[(60, stale)])])).unwrap();
        admit(&table, "a", &request(&[("x", &[(60, stale)])])).unwrap();
        assert!(refused(request(&[("x", &[(60, f64::NAN)])])).contains("duplicate"));
    }

    #[test]
    fn batches_share_one_label_set_per_series_and_hold_the_samples_as_sent() {
        let table = SeriesTable::new(100, 1 << 20);
        let (first, _) = admit(&table, "a", &request(&[("x", &[(10, 1.0), (20, 2.0)]), ("y", &[(-5, 3.0)])])).unwrap();
        let (second, _) = admit(&table, "a", &request(&[("x", &[(30, 3.0)])])).unwrap();
        assert_eq!(first.samples, 3);
        assert_eq!(first.series[0].labels.to_string(), r#"up{job="x"}"#);
        // The table holds the label text: a batch of known series owns none.
        assert!(first.label_bytes == 0 && second.label_bytes == 0);
        assert_eq!(first.series[0].labels.identity(), second.series[0].labels.identity());
        // Times before 1970 are kept as 0, as the store keeps times unsigned.
        assert_eq!(first.series[1].samples, [Sample { t: 0, v: 3.0 }]);
        // Labels sent out of order, with an empty value, are the same series.
        let unsorted = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label { name: "job".into(), value: "x".into() },
                    Label { name: "pod".into(), value: String::new() },
                    Label { name: "__name__".into(), value: "up".into() },
                ],
                samples: vec![remote_write::Sample { value: 4.0, timestamp: 40 }],
                ..Default::default()
            }],
            metadata: Vec::new(),
        };
        let (third, _) = admit(&table, "a", &unsorted.encode_to_vec()).unwrap();
        assert_eq!(third.series[0].labels.identity(), first.series[0].labels.identity());
        // Over its bounds the table starts afresh: the series get new label sets.
        let small = SeriesTable::new(1, 1 << 20);
        let (a, _) = admit(&small, "a", &request(&[("x", &[(1, 1.0)]), ("y", &[(1, 1.0)])])).unwrap();
        let (b, _) = admit(&small, "a", &request(&[("x", &[(1, 1.0)])])).unwrap();
        assert_ne!(a.series[0].labels.identity(), b.series[0].labels.identity());
        assert!(b.label_bytes == 0 && a.label_bytes == 0);
    }

    #[test]
    fn bad_series_are_refused_saying_which() {
        let table = SeriesTable::new(100, 1 << 20);
        let one = |labels: &[(&str, &str)], histograms: usize| {
            WriteRequest {
                timeseries: vec![
                    TimeSeries {
                        labels: vec![Label { name: "__name__".into(), value: "ok".into() }],
                        ..Default::default()
                    },
                    TimeSeries {
                        labels: labels
                            .iter()
                            .map(|(n, v)| Label { name: n.to_string(), value: v.to_string() })
                            .collect(),
                        samples: vec![remote_write::Sample { value: 1.0, timestamp: 1 }],
                        histograms: vec![vec![]; histograms],
                        ..Default::default()
                    },
                ],
                metadata: Vec::new(),
            }
            .encode_to_vec()
        };
        let refused = |raw: Vec<u8>| admit(&table, "a", &raw).unwrap_err();
        assert!(refused(one(&[("job", "x")], 0)).contains("series 1 has no metric name"));
        assert!(
            refused(one(&[("__name__", "up"), ("bad-name", "x")], 0))
                .contains(r#"series 1: invalid label name "bad-name""#)
        );
        // An invalid name is refused even when its value is empty.
        assert!(refused(one(&[("__name__", "up"), ("0x", "")], 0)).contains("invalid label name"));
        assert!(refused(one(&[("__name__", "up")], 1)).contains("series 1: native histograms"));
        let many: Vec<(String, String)> = (0..31).map(|i| (format!("l{i:02}"), "v".to_string())).collect();
        let many: Vec<(&str, &str)> =
            std::iter::once(("__name__", "up")).chain(many.iter().map(|(n, v)| (n.as_str(), v.as_str()))).collect();
        assert!(refused(one(&many, 0)).contains("31 labels besides __name__, over the limit of 30"));
        assert!(refused(vec![0x0a, 5, 1]).contains("not a remote-write WriteRequest"));
        // None of them left anything behind: the good series of each was not recorded.
        assert!(table.state.lock().unwrap().known.is_empty());
    }
}
