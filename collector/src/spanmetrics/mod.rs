//! Span metrics: the trace-to-metrics bridge. Every stored SERVER and CONSUMER span is counted
//! once, at ingest, into per-tenant series of request counts and a duration histogram, which
//! are written every `metrics_flush_interval` as ordinary OTLP metrics through
//! [`Ingest::export`](crate::receive::Ingest::export) — so they get the write-ahead log,
//! replay, Parquet rows, the series store and PromQL exactly like metrics a service sends.
//!
//! Names and labels are the OpenTelemetry Collector's `spanmetrics` connector's (contrib
//! `connector/spanmetricsconnector`), so dashboards and queries written for it work unchanged:
//! metrics `traces.span.metrics.calls` (a cumulative monotonic sum) and
//! `traces.span.metrics.duration` (a cumulative explicit-bucket histogram in seconds) under the
//! connector's default namespace `traces.span.metrics`, which Prometheus's OTLP translation
//! (`model::prometheus`) turns into `traces_span_metrics_calls_total` and
//! `traces_span_metrics_duration_seconds_bucket`/`_sum`/`_count`; point attributes
//! `service.name`, `span.name`, `span.kind` (`SPAN_KIND_SERVER` …), `status.code`
//! (`STATUS_CODE_UNSET`/`_OK`/`_ERROR`) and the configured dimensions, each looked up in the
//! span's attributes, then its resource's. Errors are the calls whose `status.code` is
//! `STATUS_CODE_ERROR`, as in the connector. Spans whose resource has no `service.name` are not
//! counted (the connector skips them too).
//!
//! Where this differs from the connector, and why:
//! - only the span kinds of `span_kinds` are counted (SERVER and CONSUMER by default): a CLIENT
//!   span is the same request seen by its caller;
//! - a metric's resource is `service.name` plus the `service.version` and
//!   `deployment.environment` dimension values (when configured), not every resource attribute
//!   of the spans: a `host.name` or process id in the resource would split every series per
//!   instance, and the series stay keyed by their labels alone;
//! - the cardinality limit (`aggregation_cardinality_limit`, whose overflow data point carries
//!   `otel.metric.overflow=true`, the OpenTelemetry SDKs' overflow attribute) is per tenant, and
//!   a global bound in series and bytes holds over all tenants.
//!
//! The cost at ingest is what `tally` does per span — a hash of the span's borrowed label
//! values, a lookup among the request's few distinct label sets, a binary search over the
//! buckets — and no allocation unless a label set is new; each tenant's table is locked twice
//! per request (to resolve the request's label sets, and to add its counts once the store
//! acknowledged it), never per span. Only what was stored is counted: the counts are added
//! after [`Ingest::export`](crate::receive::Ingest::export) has the store's acknowledgement.
//!
//! What is kept is cumulative, so a write that fails loses nothing: the next flush writes the
//! values again. A restart starts every series again from zero with a new start time (a
//! counter reset, which PromQL's `rate` and `increase` handle); the points written before it
//! are in the store already and are not counted again. A crash loses at most the increments
//! since the last flush (the spans themselves are stored); a clean stop writes them first.

mod emit;
mod table;
mod tally;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{SpanKindName, SpanMetricsConfig};
use crate::tenant::Tenant;

pub use emit::{Flushed, start};
pub use tally::Tally;
pub(crate) use tally::{Attr, CountedSpan};

use table::Table;

/// The connector's default namespace: the prefix of both metric names.
pub const NAMESPACE: &str = "traces.span.metrics";
/// The request counter (Prometheus: `traces_span_metrics_calls_total`).
pub const CALLS_METRIC: &str = "traces.span.metrics.calls";
/// The duration histogram, in seconds (Prometheus: `traces_span_metrics_duration_seconds_*`).
pub const DURATION_METRIC: &str = "traces.span.metrics.duration";
/// The attribute of the overflow series, as the OpenTelemetry SDKs and the connector name it.
pub const OVERFLOW_ATTRIBUTE: &str = "otel.metric.overflow";
/// The instrumentation scope of the written metrics.
pub const SCOPE: &str = "slo-gate/spanmetrics";

/// OTLP span kinds, written as the connector writes them (`SPAN_KIND_SERVER` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// The kind of an OTLP `Span.kind` number; numbers OTLP does not define are unspecified.
    pub fn from_otlp(kind: i32) -> SpanKind {
        match kind {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
            SpanKind::Producer => "SPAN_KIND_PRODUCER",
            SpanKind::Consumer => "SPAN_KIND_CONSUMER",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl From<SpanKindName> for SpanKind {
    fn from(name: SpanKindName) -> SpanKind {
        match name {
            SpanKindName::Unspecified => SpanKind::Unspecified,
            SpanKindName::Internal => SpanKind::Internal,
            SpanKindName::Server => SpanKind::Server,
            SpanKindName::Client => SpanKind::Client,
            SpanKindName::Producer => SpanKind::Producer,
            SpanKindName::Consumer => SpanKind::Consumer,
        }
    }
}

/// OTLP span status codes, written as the connector writes them (`STATUS_CODE_ERROR` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    /// The code of an OTLP `Status.code` number; numbers OTLP does not define are unset.
    pub fn from_otlp(code: i32) -> StatusCode {
        match code {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "STATUS_CODE_UNSET",
            StatusCode::Ok => "STATUS_CODE_OK",
            StatusCode::Error => "STATUS_CODE_ERROR",
        }
    }
}

/// What identifies one series: its label values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub service: Box<str>,
    pub span_name: Box<str>,
    pub kind: SpanKind,
    pub status: StatusCode,
    /// One value per configured dimension, in the order of [`SpanMetrics::dimension_names`];
    /// `None` when the span had no value and the dimension no default.
    pub dimensions: Box<[Option<Box<str>>]>,
}

impl SeriesKey {
    /// Bytes of memory the key holds beyond its own size.
    fn heap_bytes(&self) -> u64 {
        let dims: usize =
            self.dimensions.iter().map(|d| std::mem::size_of_val(d) + d.as_ref().map_or(0, |v| v.len())).sum();
        (self.service.len() + self.span_name.len() + dims) as u64
    }
}

/// One series' cumulative values at a moment, for callers that compute their own deltas (the
/// continuous analysis: request rate, error ratio and P95 per step without PromQL).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSnapshot {
    /// The series' labels; `None` for the tenant's overflow series, which counts the spans of
    /// every label set beyond the cardinality limits.
    pub key: Option<Arc<SeriesKey>>,
    /// Spans counted since `start_unix_nano`.
    pub calls: u64,
    /// Those of them with status `STATUS_CODE_ERROR`.
    pub errors: u64,
    /// Spans per bucket of [`SpanMetrics::bounds_seconds`], not cumulative: `bucket_counts[i]`
    /// counts durations in `(bounds[i-1], bounds[i]]`, the last one those above every bound.
    pub bucket_counts: Vec<u64>,
    /// The spans' durations added up, in seconds.
    pub sum_seconds: f64,
    /// When counting started (the series was made, or made again after it expired): a later
    /// snapshot with another start time is a reset, whose values count from zero.
    pub start_unix_nano: u64,
    /// When a span was last counted in it.
    pub updated_unix_nano: u64,
}

/// The resolved `[span_metrics]` settings.
#[derive(Debug, Clone)]
struct Settings {
    dimensions: Vec<Dimension>,
    /// Bucket bounds in nanoseconds, increasing, for the search; and the same in seconds.
    bounds_nanos: Vec<u64>,
    bounds_seconds: Vec<f64>,
    /// One bit per counted [`SpanKind`].
    kinds: u8,
    flush_interval: Duration,
    expiration: Option<Duration>,
    tenant_limit: usize,
    max_series: usize,
    max_bytes: u64,
}

#[derive(Debug, Clone)]
struct Dimension {
    name: String,
    default: Option<Box<str>>,
    /// A second name to look for when `name` is missing: the newer name of a renamed attribute.
    alias: Option<&'static str>,
}

/// Overflow series may be made past `max_series` up to this many, so that each tenant can
/// still count its spans somewhere; past that, spans are not counted at all (and counted as
/// dropped).
const OVERFLOW_RESERVE: usize = 1024;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
struct Stats {
    spans: AtomicU64,
    overflowed_spans: AtomicU64,
    dropped_spans: AtomicU64,
    unnamed_service_spans: AtomicU64,
    expired_series: AtomicU64,
    flushes: AtomicU64,
    written_points: AtomicU64,
    write_failures: AtomicU64,
}

/// Series and bytes held over all tenants, reserved before a series is made.
#[derive(Debug, Default)]
struct Usage {
    series: AtomicU64,
    bytes: AtomicU64,
}

impl Usage {
    /// Takes one series of `bytes` if that keeps within `max_series` and `max_bytes`.
    fn reserve(&self, bytes: u64, max_series: usize, max_bytes: u64) -> bool {
        let series_ok =
            self.series.fetch_update(Relaxed, Relaxed, |n| (n < max_series as u64).then_some(n + 1)).is_ok();
        if !series_ok {
            return false;
        }
        let bytes_ok =
            self.bytes.fetch_update(Relaxed, Relaxed, |b| (b + bytes <= max_bytes).then_some(b + bytes)).is_ok();
        if !bytes_ok {
            self.series.fetch_sub(1, Relaxed);
        }
        bytes_ok
    }

    fn release(&self, series: u64, bytes: u64) {
        self.series.fetch_sub(series, Relaxed);
        self.bytes.fetch_sub(bytes, Relaxed);
    }
}

/// The span metrics of every tenant.
#[derive(Debug)]
pub struct SpanMetrics {
    settings: Settings,
    tenants: RwLock<HashMap<Tenant, Arc<Mutex<Table>>>>,
    /// Randomly seeded, so no client can choose label sets whose hashes collide (a collision
    /// anyway costs a comparison, never a wrong count).
    hasher: foldhash::quality::RandomState,
    usage: Usage,
    stats: Stats,
    /// The time of the last flush, so two flushes never write two values at one time.
    last_flush_unix_nano: AtomicU64,
}

/// Nanoseconds since the Unix epoch now.
fn now_unix_nano() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl SpanMetrics {
    /// Span metrics with the settings of `config`, which must be valid
    /// ([`SpanMetricsConfig::validate`]).
    pub fn new(config: &SpanMetricsConfig) -> Result<SpanMetrics, String> {
        config.validate()?;
        let dimensions = config
            .dimensions
            .iter()
            .map(|d| Dimension {
                name: d.name.clone(),
                default: d.default.as_deref().map(Box::from),
                // Semantic conventions 1.27 renamed it; SDKs send either.
                alias: (d.name == "deployment.environment").then_some("deployment.environment.name"),
            })
            .collect();
        let bounds_nanos: Vec<u64> =
            config.buckets.iter().map(|b| u64::try_from(b.0.as_nanos()).unwrap_or(u64::MAX)).collect();
        let bounds_seconds = bounds_nanos.iter().map(|n| *n as f64 / 1e9).collect();
        let expiration = (!config.metrics_expiration.0.is_zero()).then_some(config.metrics_expiration.0);
        Ok(SpanMetrics {
            settings: Settings {
                dimensions,
                bounds_nanos,
                bounds_seconds,
                kinds: config.span_kinds.iter().fold(0, |bits, k| bits | SpanKind::from(*k).bit()),
                flush_interval: config.metrics_flush_interval.0,
                expiration,
                tenant_limit: config.aggregation_cardinality_limit,
                max_series: config.max_series,
                max_bytes: config.max_memory_bytes,
            },
            tenants: RwLock::default(),
            hasher: foldhash::quality::RandomState::default(),
            usage: Usage::default(),
            stats: Stats::default(),
            last_flush_unix_nano: AtomicU64::new(0),
        })
    }

    /// The configured dimensions, in the order of [`SeriesKey::dimensions`].
    pub fn dimension_names(&self) -> impl Iterator<Item = &str> {
        self.settings.dimensions.iter().map(|d| d.name.as_str())
    }

    /// The histogram's bucket bounds in seconds (the `le` labels but `+Inf`).
    pub fn bounds_seconds(&self) -> &[f64] {
        &self.settings.bounds_seconds
    }

    /// How often the values are written to the store.
    pub fn flush_interval(&self) -> Duration {
        self.settings.flush_interval
    }

    /// The tenants that have series now.
    pub fn tenants(&self) -> Vec<Tenant> {
        let mut tenants: Vec<Tenant> = self.tenants.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        tenants.sort();
        tenants
    }

    /// Every series of `tenant` with its cumulative values, sorted by labels, the overflow
    /// series (if any) last. Only this tenant's spans are in them.
    pub fn snapshot(&self, tenant: &Tenant) -> Vec<SeriesSnapshot> {
        let Some(table) = self.table(tenant) else { return Vec::new() };
        let table = table.lock().unwrap_or_else(|e| e.into_inner());
        table.snapshot()
    }

    /// The series kept over all tenants and the memory they hold, as bounded by `max_series`
    /// and `max_memory_bytes`.
    pub fn usage(&self) -> (u64, u64) {
        (self.usage.series.load(Relaxed), self.usage.bytes.load(Relaxed))
    }

    fn table(&self, tenant: &Tenant) -> Option<Arc<Mutex<Table>>> {
        self.tenants.read().unwrap_or_else(|e| e.into_inner()).get(tenant).cloned()
    }

    fn table_or_new(&self, tenant: &Tenant) -> Arc<Mutex<Table>> {
        if let Some(table) = self.table(tenant) {
            return table;
        }
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(tenants.entry(tenant.clone()).or_default())
    }

    /// Drops every series of a deleted tenant, so the counts of its deleted spans are not
    /// written again at the next flush.
    pub fn forget(&self, tenant: &Tenant) {
        let removed = self.tenants.write().unwrap_or_else(|e| e.into_inner()).remove(tenant);
        if let Some(table) = removed {
            let (series, bytes) = table.lock().unwrap_or_else(|e| e.into_inner()).expire(u64::MAX);
            self.usage.release(series, bytes);
        }
    }

    /// Drops the series of every tenant that no span updated since `now - expiration`, and
    /// the tenants left without any.
    fn expire(&self, now: u64) {
        let Some(expiration) = self.settings.expiration else { return };
        let cutoff = now.saturating_sub(u64::try_from(expiration.as_nanos()).unwrap_or(u64::MAX));
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        tenants.retain(|_, table| {
            let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
            let (series, bytes) = table.expire(cutoff);
            self.usage.release(series, bytes);
            self.stats.expired_series.fetch_add(series, Relaxed);
            !table.is_empty()
        });
    }

    /// The figures of `/metrics`, in the Prometheus text format, appended to `out`.
    pub fn render_telemetry(&self, out: &mut String) {
        use std::fmt::Write;
        let (series, bytes) = self.usage();
        let s = &self.stats;
        for (name, kind, help, value) in [
            (
                "slo_gate_span_metrics_series",
                "gauge",
                "Span-metric series kept now, over all tenants (overflow series included).",
                series,
            ),
            (
                "slo_gate_span_metrics_memory_bytes",
                "gauge",
                "Memory held by the span-metric series: label values, counters and index entries.",
                bytes,
            ),
            (
                "slo_gate_span_metrics_spans_total",
                "counter",
                "Stored spans counted in span metrics.",
                s.spans.load(Relaxed),
            ),
            (
                "slo_gate_span_metrics_overflowed_spans_total",
                "counter",
                "Spans counted in a tenant's overflow series because a cardinality limit was reached.",
                s.overflowed_spans.load(Relaxed),
            ),
            (
                "slo_gate_span_metrics_dropped_spans_total",
                "counter",
                "Spans not counted at all: every limit, the overflow reserve included, was reached.",
                s.dropped_spans.load(Relaxed),
            ),
            (
                "slo_gate_span_metrics_unnamed_service_spans_total",
                "counter",
                "Spans of a counted kind not counted because their resource has no service.name.",
                s.unnamed_service_spans.load(Relaxed),
            ),
            (
                "slo_gate_span_metrics_expired_series_total",
                "counter",
                "Span-metric series dropped after metrics_expiration without a span.",
                s.expired_series.load(Relaxed),
            ),
            (
                "slo_gate_span_metrics_flushes_total",
                "counter",
                "Flushes of the span metrics to the store.",
                s.flushes.load(Relaxed),
            ),
            (
                "slo_gate_span_metrics_written_points_total",
                "counter",
                "Span-metric data points written to the store.",
                s.written_points.load(Relaxed),
            ),
            (
                "slo_gate_span_metrics_write_failures_total",
                "counter",
                "Span-metric writes the store refused (the values are cumulative: the next flush writes them again).",
                s.write_failures.load(Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
    }

    /// The hash a label set is found by.
    fn hash_key<'a>(
        &self,
        service: &str,
        span_name: &str,
        kind: SpanKind,
        status: StatusCode,
        dimensions: impl Iterator<Item = Option<&'a str>>,
    ) -> u64 {
        let mut h = self.hasher.build_hasher();
        // 0xff never occurs in UTF-8: the values cannot run into each other.
        h.write(service.as_bytes());
        h.write_u8(0xff);
        h.write(span_name.as_bytes());
        h.write_u8(0xff);
        h.write_u8(kind as u8);
        h.write_u8(status as u8);
        for d in dimensions {
            match d {
                Some(v) => {
                    h.write_u8(1);
                    h.write(v.as_bytes());
                    h.write_u8(0xff);
                }
                None => h.write_u8(0),
            }
        }
        h.finish()
    }
}

/// A hasher for keys that are hashes already.
#[derive(Debug, Default, Clone, Copy)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with it; fold anything else in rather than lose it.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type PrehashedMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<Prehashed>>;

#[cfg(test)]
mod tests;
