//! OTLP receivers. Both transports hand an export request to [`Ingest::export`] (decoded) or
//! [`Ingest::export_protobuf`] (as it arrived, read in place when it is a trace request the
//! wire reader takes), the one place that validates, enforces limits, stores and builds the
//! OTLP answer.
//!
//! * [`admission`] — the budget every request body is counted against as it arrives, and the
//!   body timeouts;
//! * [`otlp_grpc`] — the four OTLP/gRPC `Export` methods (unary gRPC over HTTP/2);
//! * [`otlp_http`] — `POST /v1/{traces,metrics,logs}` and `/v1development/profiles`, protobuf
//!   or JSON, optionally gzip;
//! * [`pprof_push`] — Pyroscope-compatible pprof push (`/ingest`, connect `PusherService/Push`),
//!   served on the API listener and converted to OTLP profiles;
//! * [`pprof_scrape`] — pulls Go `/debug/pprof/` endpoints (`[[scrape]]`) into the same path;
//! * [`validate`] — per-signal checks that reject single items (partial success) rather than
//!   whole requests; [`depth`] — the attribute nesting and profile stack depth limits they apply.

pub mod admission;
pub mod depth;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod pprof_push;
pub mod pprof_scrape;
pub mod remote_write;
pub mod rpc_status;
pub mod validate;

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::profiles::v1development::{
    ExportProfilesPartialSuccess, ExportProfilesServiceRequest, ExportProfilesServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::sync::Semaphore;

use crate::config::Limits;
use crate::error::IngestError;
use crate::model::{self, Rows};
use crate::receive::admission::Admission;
use crate::signal::Signal;
use crate::spanmetrics::{self, SpanMetrics};
use crate::store::Store;
use crate::store::wal::Format;
use crate::telemetry::Telemetry;
use crate::tenant::Tenant;

/// How often a write waiting for room in a full head looks again.
const ROOM_POLL: std::time::Duration = std::time::Duration::from_millis(10);

pub use validate::Rejections;

/// An OTLP export request type: what the ingest path needs to know of each signal.
pub trait ExportRequest: Message + Default + serde::de::DeserializeOwned + Send + Sized + 'static {
    const SIGNAL: Signal;
    /// The gRPC service name and the path of its `Export` method.
    const GRPC_SERVICE: &'static str;
    const GRPC_EXPORT_PATH: &'static str;
    type Response: Message + serde::Serialize + Default + Send + 'static;

    /// Items (spans, data points, log records, profiles) in the request.
    fn item_count(&self) -> u64;
    /// Most storage rows the request can become (profiles: one per sample value).
    fn max_rows(&self) -> u64 {
        self.item_count()
    }
    /// Size of one storage row of this signal, before the text it owns.
    const ROW_BYTES: u64;
    /// Removes invalid items, returning how many and why.
    fn validate(&mut self, limits: &Limits) -> Rejections;
    fn into_rows(self) -> Rows;
    fn response(rejections: &Rejections) -> Self::Response;
    /// The request's spans as span metrics count them (traces only).
    fn tally_spans(&self, _metrics: &SpanMetrics, _tenant: &Tenant) -> Option<spanmetrics::Tally> {
        None
    }
}

fn partial<T>(r: &Rejections, make: impl FnOnce(i64, String) -> T) -> Option<T> {
    (r.items > 0 || !r.warnings.is_empty()).then(|| make(r.items as i64, r.message()))
}

impl ExportRequest for ExportTraceServiceRequest {
    const ROW_BYTES: u64 = std::mem::size_of::<model::SpanRow>() as u64;
    const SIGNAL: Signal = Signal::Traces;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const GRPC_EXPORT_PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    type Response = ExportTraceServiceResponse;
    fn item_count(&self) -> u64 {
        validate::count_spans(self)
    }
    fn validate(&mut self, limits: &Limits) -> Rejections {
        validate::traces(self, limits)
    }
    fn into_rows(self) -> Rows {
        Rows::Spans(model::span::rows_from_request(self))
    }
    fn tally_spans(&self, metrics: &SpanMetrics, tenant: &Tenant) -> Option<spanmetrics::Tally> {
        metrics.tally(tenant, self)
    }
    fn response(r: &Rejections) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: partial(r, |rejected_spans, error_message| ExportTracePartialSuccess {
                rejected_spans,
                error_message,
            }),
        }
    }
}

impl ExportRequest for ExportMetricsServiceRequest {
    const ROW_BYTES: u64 = std::mem::size_of::<model::MetricRow>() as u64;
    const SIGNAL: Signal = Signal::Metrics;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const GRPC_EXPORT_PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    type Response = ExportMetricsServiceResponse;
    fn item_count(&self) -> u64 {
        validate::count_points(self)
    }
    fn validate(&mut self, limits: &Limits) -> Rejections {
        validate::metrics(self, limits)
    }
    fn into_rows(self) -> Rows {
        Rows::Metrics(model::metric::rows_from_request(self))
    }
    fn response(r: &Rejections) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: partial(r, |rejected_data_points, error_message| ExportMetricsPartialSuccess {
                rejected_data_points,
                error_message,
            }),
        }
    }
}

impl ExportRequest for ExportLogsServiceRequest {
    const ROW_BYTES: u64 = std::mem::size_of::<model::LogRow>() as u64;
    const SIGNAL: Signal = Signal::Logs;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const GRPC_EXPORT_PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    type Response = ExportLogsServiceResponse;
    fn item_count(&self) -> u64 {
        validate::count_logs(self)
    }
    fn validate(&mut self, limits: &Limits) -> Rejections {
        validate::logs(self, limits)
    }
    fn into_rows(self) -> Rows {
        Rows::Logs(model::log::rows_from_request(self))
    }
    fn response(r: &Rejections) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: partial(r, |rejected_log_records, error_message| ExportLogsPartialSuccess {
                rejected_log_records,
                error_message,
            }),
        }
    }
}

impl ExportRequest for ExportProfilesServiceRequest {
    const ROW_BYTES: u64 = std::mem::size_of::<model::ProfileRow>() as u64;
    const SIGNAL: Signal = Signal::Profiles;
    const GRPC_SERVICE: &'static str = "opentelemetry.proto.collector.profiles.v1development.ProfilesService";
    const GRPC_EXPORT_PATH: &'static str =
        "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export";
    type Response = ExportProfilesServiceResponse;
    fn item_count(&self) -> u64 {
        validate::count_profiles(self)
    }
    fn max_rows(&self) -> u64 {
        self.resource_profiles
            .iter()
            .flat_map(|rp| &rp.scope_profiles)
            .flat_map(|sp| &sp.profiles)
            .flat_map(|p| &p.samples)
            .map(|s| s.values.len() as u64)
            .sum()
    }
    fn validate(&mut self, limits: &Limits) -> Rejections {
        validate::profiles(self, limits)
    }
    fn into_rows(self) -> Rows {
        Rows::Profiles(model::profile::rows_from_request(self))
    }
    fn response(r: &Rejections) -> Self::Response {
        ExportProfilesServiceResponse {
            partial_success: partial(r, |rejected_profiles, error_message| ExportProfilesPartialSuccess {
                rejected_profiles,
                error_message,
            }),
        }
    }
}

/// A request as it arrived, for the write-ahead log to keep as it is ([`Ingest::export`]).
#[derive(Debug, Clone)]
pub enum Raw {
    /// Not at hand: the log keeps the request's OTLP encoding.
    None,
    /// The request's OTLP protobuf.
    Otlp(Bytes),
}

/// The shared ingest path of both receivers.
#[derive(Debug)]
pub struct Ingest {
    store: Arc<Store>,
    limits: Limits,
    telemetry: Arc<Telemetry>,
    inflight: Semaphore,
    admission: Admission,
    span_metrics: Option<Arc<SpanMetrics>>,
}

impl Ingest {
    pub fn new(store: Arc<Store>, limits: Limits, telemetry: Arc<Telemetry>, admission: Admission) -> Ingest {
        let inflight = Semaphore::new(limits.max_inflight_requests.max(1));
        Ingest { store, limits, telemetry, inflight, admission, span_metrics: None }
    }

    /// Counts the stored spans in `metrics` from now on.
    pub fn with_span_metrics(mut self, metrics: Arc<SpanMetrics>) -> Ingest {
        self.span_metrics = Some(metrics);
        self
    }

    /// The span metrics stored spans are counted in, when they are on.
    pub fn span_metrics(&self) -> Option<&Arc<SpanMetrics>> {
        self.span_metrics.as_ref()
    }

    /// The in-flight body budget and body timeouts every receiver reads bodies with.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Whether a request may be taken at all. The receivers ask before reading or decoding a
    /// body, so waiting or refusing under overload costs next to nothing: a full head is waited
    /// on for up to `limits.max_wait_for_flush` (the flusher frees it a block at a time), then
    /// refused.
    pub async fn admit(&self) -> Result<(), IngestError> {
        self.wait_for_room().await
    }

    /// Returns once the head has room, waiting up to `limits.max_wait_for_flush` for the
    /// flusher; refused (429 / `UNAVAILABLE`, with `Retry-After`) after that.
    async fn wait_for_room(&self) -> Result<(), IngestError> {
        let refused = match self.store.check_capacity() {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        let wait = self.limits.max_wait_for_flush.0;
        if wait.is_zero() {
            return Err(refused);
        }
        self.telemetry.waits_for_flush.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + wait;
        let mut refused = refused;
        while tokio::time::Instant::now() < deadline {
            // Polled rather than notified: only a request that found the head full pays it,
            // and a flush frees room in blocks, tens of milliseconds apart at the least.
            tokio::time::sleep(ROOM_POLL.min(deadline.saturating_duration_since(tokio::time::Instant::now()))).await;
            match self.store.check_capacity() {
                Ok(()) => return Ok(()),
                Err(err) => refused = err,
            }
        }
        Err(refused)
    }

    /// One of the `max_inflight_requests` slots, and room in the head: a request over the
    /// slots is refused at once; one that finds the head full — admitted while it had room, it
    /// filled while the body was read — waits for the flusher as [`Ingest::admit`] does (its
    /// body is already counted in the admission budget, so the wait holds no more memory).
    async fn take_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, IngestError> {
        let permit = self.inflight.try_acquire().map_err(|_| {
            IngestError::Overloaded(format!(
                "{} export requests are already in progress",
                self.limits.max_inflight_requests
            ))
        })?;
        self.wait_for_room().await?;
        Ok(permit)
    }

    /// Validates, stores and answers one request. `raw` is the request as it arrived, when the
    /// write-ahead log can keep that instead of re-encoding it (a fully valid request).
    pub async fn export<R: ExportRequest>(
        &self,
        tenant: Tenant,
        request: R,
        raw: Raw,
    ) -> Result<R::Response, IngestError> {
        let _permit = self.take_slot().await?;
        self.export_taken(tenant, request, raw).await
    }

    /// [`Ingest::export`] of a request in protobuf, `message` as it arrived (the log keeps it).
    /// Traces are read in place (`model::span_wire`) when they can be, which costs a fraction
    /// of decoding them; every other request, and any trace request that reader does not take,
    /// is decoded by prost and goes through [`Ingest::export`]'s steps.
    pub async fn export_protobuf<R: ExportRequest>(
        &self,
        tenant: Tenant,
        message: Bytes,
    ) -> Result<R::Response, IngestError> {
        let malformed =
            |e: prost::DecodeError| IngestError::Malformed { format: "OTLP/protobuf", detail: e.to_string() };
        let wire = if R::SIGNAL == Signal::Traces { model::span_wire::Request::read(&message) } else { None };
        let Some(wire) = wire else {
            let request = R::decode(message.clone()).map_err(malformed)?;
            return self.export(tenant, request, Raw::Otlp(message)).await;
        };
        let _permit = self.take_slot().await?;
        if !wire.acceptable(&self.limits) {
            let request = R::decode(message.clone()).map_err(malformed)?;
            return self.export_taken(tenant, request, Raw::Otlp(message)).await;
        }
        let total = wire.span_count();
        self.telemetry.received(Signal::Traces, total);
        if total == 0 {
            return Ok(R::response(&Rejections::new("spans")));
        }
        let size = message.len().max(1) as u64;
        self.check_expansion(total.saturating_mul(R::ROW_BYTES), "its rows alone", size)?;
        let tally = self.span_metrics.as_deref().and_then(|m| m.tally_resources(&tenant, wire.counted()));
        let Some(rows) = wire.rows() else {
            drop(wire);
            let request = R::decode(message.clone()).map_err(malformed)?;
            return self.export_taken(tenant, request, Raw::Otlp(message)).await;
        };
        drop(wire);
        self.store_rows(tenant, Signal::Traces, Rows::Spans(rows), message, size, total, tally).await?;
        Ok(R::response(&Rejections::new("spans")))
    }

    /// Refuses a request whose rows could take more than `max_memory_expansion` times its own
    /// `size`; `what` names the estimate.
    fn check_expansion(&self, bytes: u64, what: &'static str, size: u64) -> Result<(), IngestError> {
        let factor = self.limits.max_memory_expansion;
        if bytes > factor.saturating_mul(size) {
            return Err(IngestError::Expands { what, bytes, size, factor });
        }
        Ok(())
    }

    /// [`Ingest::export`] once its in-flight slot is taken.
    async fn export_taken<R: ExportRequest>(
        &self,
        tenant: Tenant,
        mut request: R,
        raw: Raw,
    ) -> Result<R::Response, IngestError> {
        let total = request.item_count();
        self.telemetry.received(R::SIGNAL, total);
        let rejections = request.validate(&self.limits);
        self.telemetry.refused(R::SIGNAL, rejections.items);
        if rejections.items > 0 && rejections.items >= total {
            return Err(IngestError::Invalid(rejections.message()));
        }
        if total == 0 {
            return Ok(R::response(&rejections));
        }
        // Memory is counted before it is spent: a request whose rows could take more than
        // `max_memory_expansion` times its own size is refused before conversion, and again
        // after it when the rows' text makes them larger than the bound foresaw.
        let size = match &raw {
            Raw::None => request.encoded_len(),
            Raw::Otlp(bytes) => bytes.len(),
        }
        .max(1) as u64;
        self.check_expansion(request.max_rows().saturating_mul(R::ROW_BYTES), "its rows alone", size)?;
        // Validation may also have changed what it kept (profile stacks cut to the depth limit,
        // with a warning): then the log must hold the request as changed, not as received.
        let payload = match raw {
            Raw::Otlp(bytes) if rejections.items == 0 && rejections.warnings.is_empty() => bytes,
            _ => Bytes::from(request.encode_to_vec()),
        };
        // Span metrics count what is stored: tallied from the validated request before it
        // becomes rows, added once the store has acknowledged it.
        let tally = self.span_metrics.as_deref().and_then(|m| request.tally_spans(m, &tenant));
        let rows = request.into_rows();
        let accepted = total - rejections.items;
        self.store_rows(tenant, R::SIGNAL, rows, payload, size, accepted, tally).await?;
        Ok(R::response(&rejections))
    }

    /// Stores the rows of `accepted` items, their request's `payload` (of `size` bytes before
    /// any inflation) to the log, after checking the rows' measured memory; then counts the
    /// request's spans in span metrics.
    #[allow(clippy::too_many_arguments)]
    async fn store_rows(
        &self,
        tenant: Tenant,
        signal: Signal,
        rows: Rows,
        payload: Bytes,
        size: u64,
        accepted: u64,
        tally: Option<spanmetrics::Tally>,
    ) -> Result<(), IngestError> {
        let memory = rows.memory_bytes();
        self.check_expansion(memory, "its rows", size)?;
        if let Err(err) = self.store.append_sized(tenant, Format::Otlp, payload, rows, memory).await {
            self.telemetry.refused(signal, accepted);
            return Err(err);
        }
        if let (Some(metrics), Some(tally)) = (self.span_metrics.as_deref(), tally) {
            metrics.record(tally);
        }
        Ok(())
    }

    /// Stores the samples of one remote-write request, checked whole by the receiver
    /// (`remote_write`): the log keeps `body` as it came (snappy, `decoded_len` bytes
    /// decompressed), the head the batch. The same overload, capacity and memory bounds as
    /// [`Ingest::export`].
    pub async fn export_series(
        &self,
        tenant: Tenant,
        batch: model::prometheus::SeriesBatch,
        body: Bytes,
        decoded_len: usize,
    ) -> Result<(), IngestError> {
        let _permit = self.take_slot().await?;
        let total = batch.samples as u64;
        self.telemetry.received(Signal::Metrics, total);
        if total == 0 {
            return Ok(());
        }
        let size = decoded_len.max(1) as u64;
        let budget = self.limits.max_memory_expansion.saturating_mul(size);
        let memory = batch.memory_bytes();
        if memory > budget {
            self.telemetry.refused(Signal::Metrics, total);
            return Err(IngestError::Expands {
                what: "its samples",
                bytes: memory,
                size,
                factor: self.limits.max_memory_expansion,
            });
        }
        if let Err(err) = self.store.append_sized(tenant, Format::RemoteWrite, body, Rows::Series(batch), memory).await
        {
            self.telemetry.refused(Signal::Metrics, total);
            return Err(err);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Durability, ServerLimits};
    use crate::store::StoreSettings;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use std::time::Duration;

    // The docs said the in-flight request limit answers 503; it answers 429 / `UNAVAILABLE` with
    // `Retry-After`, as OTLP asks of an overloaded receiver.
    #[test]
    fn requests_over_the_in_flight_limit_get_429_with_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Arc::new(Telemetry::default());
        let settings = StoreSettings {
            durability: Durability::Group,
            group_commit_interval: Duration::from_millis(1),
            flush_interval: Duration::from_secs(3600),
            max_head_bytes: 1 << 30,
            retention: Duration::from_secs(86_400),
            retention_interval: Duration::from_secs(3600),
            min_tenant_part_bytes: 1 << 20,
            verify_parts_at_start: false,
            min_free_bytes: 0,
            span_index_cache_bytes: 64 << 20,
            trace_key_bytes: 64 << 20,
        };
        let store = Arc::new(Store::open(dir.path(), settings, Arc::clone(&telemetry)).unwrap());
        let limits = Limits { max_inflight_requests: 1, ..Limits::default() };
        let admission = Admission::new(&ServerLimits::default(), Arc::clone(&telemetry));
        let ingest = Ingest::new(store, limits, telemetry, admission);
        let held = ingest.inflight.try_acquire().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let tenant = Tenant::parse("anonymous").unwrap();
        let err =
            rt.block_on(ingest.export(tenant.clone(), ExportTraceServiceRequest::default(), Raw::None)).unwrap_err();
        assert_eq!(err.kind().http_status(), http::StatusCode::TOO_MANY_REQUESTS, "{err}");
        assert_eq!(err.kind().grpc_code(), tonic::Code::Unavailable);
        assert!(err.kind().retry_after().is_some());
        assert!(err.to_string().contains("1 export requests are already in progress"), "{err}");
        drop(held);
        rt.block_on(ingest.export(tenant, ExportTraceServiceRequest::default(), Raw::None)).unwrap();
    }

    // A write that finds the head full waits for the flusher instead of being refused at once:
    // refused after `max_wait_for_flush` while no flush can make room (a file stands where the
    // parts directory goes), taken as soon as one does.
    #[test]
    fn a_full_head_is_waited_on_then_refused_or_taken_once_a_flush_makes_room() {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let dir = tempfile::tempdir().unwrap();
        let telemetry = Arc::new(Telemetry::default());
        let storage = crate::config::StorageConfig {
            flush_interval: slo_contracts::HumanDuration(Duration::from_secs(3600)),
            max_head_bytes: 20_000,
            verify_parts_at_start: false,
            min_free_bytes: 0,
            span_index_cache_bytes: 64 << 20,
            trace_key_bytes: 64 << 20,
            ..Default::default()
        };
        let settings = StoreSettings::new(&storage, Duration::from_secs(86_400));
        let store = Arc::new(Store::open(dir.path(), settings, Arc::clone(&telemetry)).unwrap());
        std::fs::write(dir.path().join("parts"), b"not a directory").unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let tenant = Tenant::parse("anonymous").unwrap();
        let spans = |batch: u8| ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (0..50u8)
                        .map(|i| Span {
                            trace_id: vec![batch, i, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                            span_id: vec![batch, i, 1, 1, 1, 1, 1, 1],
                            name: "GET /a-name-long-enough-to-take-some-memory".into(),
                            start_time_unix_nano: 1_700_000_000_000_000_000,
                            end_time_unix_nano: 1_700_000_000_001_000_000,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut batch = 0u8;
        while store.check_capacity().is_ok() {
            batch += 1;
            assert!(batch < 200, "the head never filled");
            let request = spans(batch);
            let payload = Bytes::from(request.encode_to_vec());
            rt.block_on(store.append(tenant.clone(), payload, Rows::Spans(model::span::rows_from_request(request))))
                .unwrap();
        }
        let admission = Admission::new(&ServerLimits::default(), Arc::clone(&telemetry));
        let wait = Duration::from_millis(300);
        let limits = Limits { max_wait_for_flush: slo_contracts::HumanDuration(wait), ..Limits::default() };
        let ingest = Ingest::new(Arc::clone(&store), limits, Arc::clone(&telemetry), admission);
        let started = std::time::Instant::now();
        let err = rt.block_on(ingest.admit()).unwrap_err();
        assert!(started.elapsed() >= wait, "refused after {:?}", started.elapsed());
        assert_eq!(err.kind().http_status(), http::StatusCode::TOO_MANY_REQUESTS, "{err}");
        assert!(err.to_string().contains("wait to be written to parts"), "{err}");
        // A request admitted before the head filled finds it full after its body was read and
        // decoded: it waits too, rather than being refused at once.
        let started = std::time::Instant::now();
        let err = rt.block_on(ingest.export(tenant.clone(), spans(250), Raw::None)).unwrap_err();
        assert!(started.elapsed() >= wait, "an admitted request refused after {:?}", started.elapsed());
        assert!(err.to_string().contains("wait to be written to parts"), "{err}");

        // The parts directory can be made again: the flusher's next retry (each second) drains
        // the head, and a write waiting meanwhile is taken.
        std::fs::remove_file(dir.path().join("parts")).unwrap();
        let admission = Admission::new(&ServerLimits::default(), Arc::clone(&telemetry));
        let limits =
            Limits { max_wait_for_flush: slo_contracts::HumanDuration(Duration::from_secs(20)), ..Limits::default() };
        let ingest = Ingest::new(Arc::clone(&store), limits, Arc::clone(&telemetry), admission);
        assert!(store.check_capacity().is_err(), "the head drained before the write came");
        let (admitted, exported) =
            rt.block_on(async { tokio::join!(ingest.admit(), ingest.export(tenant.clone(), spans(251), Raw::None)) });
        admitted.unwrap();
        exported.unwrap();
        assert_eq!(telemetry.waits_for_flush.load(std::sync::atomic::Ordering::Relaxed), 4);
    }
}
