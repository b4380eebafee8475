//! Stored metric points as Prometheus series: the names and labels Prometheus's own OTLP
//! ingestion gives them.
//!
//! Points that arrived by remote write (scope [`SCOPE`]) read back with the
//! labels they were sent with. OTLP points are named as Prometheus's own OTLP translation names
//! them (the `prometheusremotewrite` translator Prometheus ingests OTLP with):
//!
//! | OTLP | Prometheus |
//! |---|---|
//! | metric `http.server.duration`, unit `s`, histogram | `http_server_duration_seconds_bucket{le=..}`, `_sum`, `_count` |
//! | monotonic cumulative sum `requests`, unit `1` | `requests_total` |
//! | gauge `memory.usage`, unit `By` | `memory_usage_bytes` |
//! | gauge `cpu.utilization`, unit `1` | `cpu_utilization_ratio` |
//! | unit `{request}/s` | `_per_second` (annotations in braces dropped) |
//! | attribute `http.route` | label `http_route`; a key starting with a digit gets `key_` |
//! | resource `service.namespace`/`service.name` | `job="<namespace>/<name>"` (or `<name>`) |
//! | resource `service.instance.id` | `instance` |
//! | other resource attributes (`service.version`, `host.name`) | `target_info{job, instance, service_version, host_name}` = 1 at each point's time |
//! | summary | `{quantile=..}`, `_sum`, `_count` |
//!
//! Points of delta temporality (sums and histograms) are accumulated at ingest into the
//! cumulative series a cumulative point would have made ([`DeltaAccumulator`]). Not translated
//! (skipped, with a warning in the answer): exponential histograms (Prometheus makes native
//! histograms of them, which this engine does not evaluate). A point flagged
//! `FLAG_NO_RECORDED_VALUE` is a staleness marker.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use prom::model::{Labels, STALE_NAN_BITS, Sample};

use super::ResourceColumns;
use super::attrs;
use super::metric::{MetricDescriptor, MetricKind, MetricRow};

/// The instrumentation scope of metrics that arrived by remote write.
pub const SCOPE: &str = "slo-gate/prometheus-remote-write";

/// OTLP's `DataPointFlags.FLAG_NO_RECORDED_VALUE`: set on Prometheus staleness markers.
pub const NO_RECORDED_VALUE: u32 = 1;

/// A metric or label name made valid: characters outside `[a-zA-Z0-9_]` (and `:` in metric
/// names) become `_`; a name starting with a digit gets `prefix`.
fn sanitize(name: &str, metric: bool, prefix: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':') { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, prefix);
    }
    out
}

/// The word Prometheus's translator uses for an OTLP (UCUM) unit, if it has one.
fn unit_word(unit: &str) -> Option<String> {
    let known = |u: &str| -> Option<&'static str> {
        Some(match u {
            "d" => "days",
            "h" => "hours",
            "min" => "minutes",
            "s" => "seconds",
            "ms" => "milliseconds",
            "us" => "microseconds",
            "ns" => "nanoseconds",
            "By" => "bytes",
            "KiBy" => "kibibytes",
            "MiBy" => "mebibytes",
            "GiBy" => "gibibytes",
            "TiBy" => "tebibytes",
            "KBy" => "kilobytes",
            "MBy" => "megabytes",
            "GBy" => "gigabytes",
            "TBy" => "terabytes",
            "m" => "meters",
            "V" => "volts",
            "A" => "amperes",
            "J" => "joules",
            "W" => "watts",
            "g" => "grams",
            "Cel" => "celsius",
            "Hz" => "hertz",
            "%" => "percent",
            _ => return None,
        })
    };
    let per = |u: &str| -> Option<&'static str> {
        Some(match u {
            "s" => "second",
            "m" => "minute",
            "h" => "hour",
            "d" => "day",
            "w" => "week",
            "mo" => "month",
            "y" => "year",
            _ => return None,
        })
    };
    // Annotations (`{request}`) say nothing Prometheus keeps.
    let mut plain = String::new();
    let mut depth = 0u32;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let plain = plain.trim();
    let (main, rate) = match plain.split_once('/') {
        Some((m, r)) => (m.trim(), Some(r.trim())),
        None => (plain, None),
    };
    let main = match main {
        "" | "1" => None,
        m => Some(known(m).map(str::to_string).unwrap_or_else(|| sanitize(m, true, ""))),
    };
    let rate =
        rate.filter(|r| !r.is_empty()).map(|r| per(r).map(str::to_string).unwrap_or_else(|| sanitize(r, true, "")));
    match (main, rate) {
        (None, None) => None,
        (Some(m), None) => Some(m),
        (None, Some(r)) => Some(format!("per_{r}")),
        (Some(m), Some(r)) => Some(format!("{m}_per_{r}")),
    }
}

/// The Prometheus name of an OTLP metric (module docs).
pub fn metric_name(row: &MetricRow) -> String {
    let mut name = sanitize(&row.metric.name, true, "_");
    if let Some(word) = unit_word(&row.metric.unit)
        && !name.split('_').any(|part| part == word)
    {
        name.push('_');
        name.push_str(&word);
    }
    if row.kind == MetricKind::Gauge && row.metric.unit.trim() == "1" && !name.ends_with("_ratio") {
        name.push_str("_ratio");
    }
    if row.kind == MetricKind::Sum && row.is_monotonic && !name.ends_with("_total") {
        name.push_str("_total");
    }
    name
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().map(attrs::plain_value) {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Label names and values, in no particular order.
type LabelPairs = Vec<(String, String)>;

/// The labels every series of a point carries besides its name (attributes, job, instance),
/// and for an OTLP point the labels of its resource's `target_info` series, if it has one.
fn base_labels(row: &MetricRow, remote_write: bool) -> (LabelPairs, Option<LabelPairs>) {
    let mut out: Vec<(String, String)> = Vec::new();
    for kv in attrs::decode_lossy(&row.attributes) {
        let key = if remote_write { kv.key.clone() } else { sanitize(&kv.key, false, "key_") };
        out.push((key, text(&kv)));
    }
    if remote_write {
        return (out, None);
    }
    let resource = attrs::decode_lossy(&row.resource.attributes);
    let get = |k: &str| attrs::find(&resource, k).and_then(attrs::as_text).map(str::to_string);
    let mut identity: Vec<(String, String)> = Vec::new();
    let service = row.resource.service_name.as_deref().map(str::to_string).or_else(|| get("service.name"));
    if let Some(service) = service {
        let job = match get("service.namespace") {
            Some(ns) if !ns.is_empty() => format!("{ns}/{service}"),
            _ => service,
        };
        identity.push(("job".into(), job));
    }
    if let Some(instance) = get("service.instance.id") {
        identity.push(("instance".into(), instance));
    }
    out.extend(identity.iter().cloned());
    // `target_info`: the other resource attributes, on a series of their own.
    let mut info = identity;
    let before = info.len();
    for kv in &resource {
        if !matches!(kv.key.as_str(), "service.name" | "service.namespace" | "service.instance.id") {
            info.push((sanitize(&kv.key, false, "key_"), text(kv)));
        }
    }
    let info = (info.len() > before).then(|| {
        info.push(("__name__".into(), "target_info".into()));
        info
    });
    (out, info)
}

/// Formats a bucket bound as Prometheus's `le` label does.
fn le(bound: f64) -> String {
    if bound == f64::INFINITY { "+Inf".into() } else { format!("{bound}") }
}

/// An exemplar as Prometheus's API serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// `trace_id`, `span_id` (hex) and the exemplar's filtered attributes.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub t_ms: i64,
}

/// Calls `emit` with each exemplar of a stored OTLP point and the labels of the series
/// Prometheus's OTLP translation attaches it to: a histogram's to the `_bucket` series of the
/// first bucket whose bound holds its value, a sum's to the sum's series. Remote-written
/// points and other kinds carry none.
pub fn exemplars(row: &MetricRow, mut emit: impl FnMut(Vec<(String, String)>, Exemplar)) {
    use opentelemetry_proto::tonic::metrics::v1::exemplar::Value as ExemplarValue;
    if row.exemplars.is_empty() || &*row.scope.name == SCOPE || row.temporality == 1 {
        return;
    }
    let list: Vec<opentelemetry_proto::tonic::metrics::v1::Exemplar> =
        attrs::decode_json(&row.exemplars).unwrap_or_default();
    if list.is_empty() {
        return;
    }
    let (base, _) = base_labels(row, false);
    let name = metric_name(row);
    let bounds: Vec<f64> = match row.kind {
        MetricKind::Histogram => {
            let detail: serde_json::Value = serde_json::from_str(&row.detail).unwrap_or_default();
            detail["explicitBounds"]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default()
        }
        MetricKind::Sum => Vec::new(),
        _ => return,
    };
    for e in list {
        let value = match e.value {
            Some(ExemplarValue::AsDouble(v)) => v,
            Some(ExemplarValue::AsInt(v)) => v as f64,
            None => continue,
        };
        let mut labels: Vec<(String, String)> = Vec::new();
        if !e.trace_id.is_empty() {
            labels.push(("trace_id".into(), hex(&e.trace_id)));
        }
        if !e.span_id.is_empty() {
            labels.push(("span_id".into(), hex(&e.span_id)));
        }
        for kv in &e.filtered_attributes {
            labels.push((sanitize(&kv.key, false, "key_"), text(kv)));
        }
        let exemplar =
            Exemplar { labels, value, t_ms: i64::try_from(e.time_unix_nano / 1_000_000).unwrap_or(i64::MAX) };
        let mut series = base.clone();
        if row.kind == MetricKind::Histogram {
            let bound = bounds.iter().copied().find(|b| value <= *b).unwrap_or(f64::INFINITY);
            series.push(("__name__".into(), format!("{name}_bucket")));
            series.push(("le".into(), le(bound)));
        } else {
            series.push(("__name__".into(), name.clone()));
        }
        emit(series, exemplar);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A label name Prometheus accepts: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The series of a remote-write request as OTLP gauges, one per series, named by its
/// `__name__`, its other labels the points' attributes, under the scope [`SCOPE`] (which is how
/// they read back with exactly the labels they were sent with); a staleness marker is a point
/// flagged [`NO_RECORDED_VALUE`]. Fails, saying why, on the first series that cannot be stored
/// (no metric name, an invalid label name, native histograms), so nothing of the request is.
///
/// How remote-written samples were stored before they went straight to the series store: the
/// tests use it to make such rows, which [`Translator`] still reads back.
#[cfg(test)]
pub(crate) fn otlp_from_remote_write(
    request: prom::remote_write::WriteRequest,
) -> Result<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest, String> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    let mut metrics = Vec::with_capacity(request.timeseries.len());
    for (i, series) in request.timeseries.into_iter().enumerate() {
        if !series.histograms.is_empty() {
            return Err(format!(
                "series {i}: native histograms are not supported; send classic histograms (_bucket/_sum/_count)"
            ));
        }
        let mut name = None;
        let mut attributes = Vec::with_capacity(series.labels.len());
        for label in series.labels {
            if label.name == "__name__" {
                name = Some(label.value);
                continue;
            }
            if !valid_label_name(&label.name) {
                return Err(format!("series {i}: invalid label name {:?}", label.name));
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
            return Err(format!("series {i} has no metric name (__name__)"));
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

/// The samples of one accepted remote-write request, as the series they belong to: what the
/// head holds of remote write and what a flush writes straight into series segments
/// (`store::series`) — remote-written samples are Prometheus series already and are kept only
/// there, never as Parquet metric rows (ADR 0009).
#[derive(Debug, Clone, Default)]
pub struct SeriesBatch {
    pub series: Vec<BatchSeries>,
    /// Samples over all series.
    pub samples: usize,
    /// Label text this batch allocated itself (labels shared with the receiver's series table
    /// are counted there).
    pub label_bytes: u64,
}

/// One series of a [`SeriesBatch`]: its labels (sorted, empty values dropped) and its samples
/// in the order they came, times in milliseconds clamped to `[0, MAX_SAMPLE_MS]`.
#[derive(Debug, Clone)]
pub struct BatchSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// The latest time a stored sample may have, in milliseconds: the store keeps times as unsigned
/// nanoseconds, so earlier and later samples are clamped into `[0, MAX_SAMPLE_MS]` (as OTLP's
/// unsigned times are).
pub const MAX_SAMPLE_MS: i64 = (u64::MAX / 1_000_000) as i64;

/// A sample's time as the store keeps it.
pub fn clamp_ms(t: i64) -> i64 {
    t.clamp(0, MAX_SAMPLE_MS)
}

impl SeriesBatch {
    /// Memory the batch holds: its series and samples, and the label text it owns.
    pub fn memory_bytes(&self) -> u64 {
        let series: usize = self
            .series
            .iter()
            .map(|s| std::mem::size_of::<BatchSeries>() + s.samples.capacity() * std::mem::size_of::<Sample>())
            .sum();
        series as u64 + self.label_bytes
    }
}

/// The memory a label set's text is counted for (the text and a per-label overhead), in the
/// receiver's series table and in the head's bound.
pub fn label_text_bytes<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    pairs.into_iter().map(|(n, v)| 48 + n.len() + v.len()).sum::<usize>() as u64
}

/// The label pairs of a remote-written series as they are stored: empty values dropped, sorted
/// by name, of a name given twice the later kept (as [`Labels::new`] keeps them). Refills
/// `out`, borrowing from the request.
pub fn normalize_labels<'a>(labels: &[(&'a str, &'a str)], out: &mut Vec<(&'a str, &'a str)>) {
    out.clear();
    out.extend(labels.iter().filter(|(_, v)| !v.is_empty()));
    if out.windows(2).all(|w| w[0].0 < w[1].0) {
        return;
    }
    out.reverse();
    out.sort_by(|a, b| a.0.cmp(b.0));
    out.dedup_by(|later, first| later.0 == first.0);
}

/// Why series `i` of a remote-write request cannot be stored, if it cannot: native histograms,
/// no metric name, an invalid label name, more labels than `max_labels` besides `__name__`.
/// `labels` as sent, `normalized` as [`normalize_labels`] made them.
pub fn series_problem(
    i: usize,
    labels: &[(&str, &str)],
    normalized: &[(&str, &str)],
    histograms: usize,
    max_labels: usize,
) -> Option<String> {
    if histograms > 0 {
        return Some(format!(
            "series {i}: native histograms are not supported; send classic histograms (_bucket/_sum/_count)"
        ));
    }
    if let Some((name, _)) = labels.iter().find(|(n, _)| *n != "__name__" && !valid_label_name(n)) {
        return Some(format!("series {i}: invalid label name {name:?}"));
    }
    if !normalized.iter().any(|(n, _)| *n == "__name__") {
        return Some(format!("series {i} has no metric name (__name__)"));
    }
    if normalized.len() - 1 > max_labels {
        return Some(format!(
            "series {i}: {} labels besides __name__, over the limit of {max_labels}",
            normalized.len() - 1
        ));
    }
    None
}

/// The samples of a remote-write body (snappy-compressed `WriteRequest`) that was accepted
/// before, as a [`SeriesBatch`]: the store's replay of a log record that kept the body as it
/// came. Each series gets labels of its own (the replay has no series table).
pub fn series_from_remote_write(body: &[u8]) -> Result<SeriesBatch, String> {
    // Accepted once, within the limits of then. Snappy expands a body at most about 21 times
    // (a 3-byte copy element makes 64 bytes): a length claiming more is not from a real body.
    let limit = body.len().saturating_mul(64).max(1 << 20);
    let raw = prom::remote_write::decompress(body, limit).map_err(|e| e.to_string())?;
    let mut batch = SeriesBatch::default();
    let mut pairs = Vec::new();
    let mut i = 0;
    prom::remote_write::walk(&raw, |view| {
        normalize_labels(&view.labels, &mut pairs);
        if let Some(problem) = series_problem(i, &view.labels, &pairs, view.histograms, usize::MAX) {
            return Err(problem);
        }
        i += 1;
        let labels = Labels::new(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect());
        batch.label_bytes += label_text_bytes(pairs.iter().copied());
        batch.samples += view.samples.len();
        batch.series.push(BatchSeries {
            labels,
            samples: view.samples.iter().map(|s| Sample { t: clamp_ms(s.timestamp), v: s.value }).collect(),
        });
        Ok(())
    })
    .map_err(|e| match e {
        prom::remote_write::WalkError::Decode(e) => e.to_string(),
        prom::remote_write::WalkError::Visitor(e) => e,
    })?;
    Ok(batch)
}

/// Turns OTLP points of delta temporality into the cumulative series Prometheus reads, as the
/// OpenTelemetry Collector's `deltatocumulative` processor does before a Prometheus exporter:
/// each delta point is translated as if it were cumulative (names, `_total`, histogram
/// `_bucket`/`_sum`/`_count`, `target_info`), and each resulting series keeps a running total
/// per tenant, to which the point's value is added. A point no later than its series' newest is
/// dropped from the accumulation (counted in `dropped`); a staleness marker is passed on as is.
///
/// The totals live in memory and are bounded by `max_series`, beyond which they start afresh:
/// after that, or after a restart, a series starts again from its next delta — which PromQL
/// reads as a counter reset, so `rate` and `increase` stay right. The rows themselves keep the
/// deltas as they were sent (the native API and the gate read those).
#[derive(Debug)]
pub struct DeltaAccumulator {
    totals: std::collections::HashMap<(crate::tenant::Tenant, Labels), (i64, f64)>,
    max_series: usize,
    pub dropped: u64,
}

impl DeltaAccumulator {
    pub fn new(max_series: usize) -> DeltaAccumulator {
        DeltaAccumulator { totals: Default::default(), max_series, dropped: 0 }
    }

    /// Drops the running totals of a deleted tenant: its next delta points start afresh.
    pub fn forget(&mut self, tenant: &crate::tenant::Tenant) {
        self.totals.retain(|(t, _), _| t != tenant);
    }

    /// The accumulated series of the delta points among `rows`, if there are any.
    pub fn accumulate(&mut self, tenant: &crate::tenant::Tenant, rows: &[MetricRow]) -> Option<SeriesBatch> {
        if !rows.iter().any(|r| r.temporality == 1) {
            return None;
        }
        if self.totals.len() > self.max_series {
            tracing::warn!(series = self.totals.len(), "delta accumulation tracks too many series; starting afresh");
            self.totals.clear();
        }
        let mut translator = Translator::default();
        let mut out: Vec<(u32, Sample)> = Vec::new();
        for row in rows.iter().filter(|r| r.temporality == 1) {
            let mut cumulative = row.clone();
            cumulative.temporality = 2;
            translator.translate(&cumulative, |id, sample| out.push((id, sample)));
        }
        let mut batch = SeriesBatch::default();
        let mut at: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
        for (id, sample) in out {
            let labels = translator.labels(id);
            let value = if labels.get("__name__") == Some("target_info") || sample.v.to_bits() == STALE_NAN_BITS {
                Some(sample.v)
            } else {
                let total = self.totals.entry((tenant.clone(), labels.clone())).or_insert((i64::MIN, 0.0));
                if sample.t <= total.0 {
                    self.dropped += 1;
                    None
                } else {
                    *total = (sample.t, total.1 + sample.v);
                    Some(total.1)
                }
            };
            let Some(v) = value else { continue };
            let i = *at.entry(id).or_insert_with(|| {
                batch.series.push(BatchSeries { labels: labels.clone(), samples: Vec::new() });
                batch.label_bytes += label_text_bytes(labels.iter());
                batch.series.len() - 1
            });
            batch.series[i].samples.push(Sample { t: sample.t, v });
            batch.samples += 1;
        }
        (batch.samples > 0).then_some(batch)
    }
}

/// A metric family's metadata as Prometheus's `/api/v1/metadata` answers it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Metadata {
    /// `counter`, `gauge`, `histogram` or `summary`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub help: String,
    pub unit: String,
}

/// The metadata of the OTLP metrics each tenant sent, by Prometheus family name (the name its
/// series take, before `_bucket`/`_sum`/`_count`): the type the translation gives them (a
/// monotonic sum is a `counter`, a non-monotonic sum a `gauge`), the description as help, and
/// the unit's word (`seconds`, `bytes`; empty when the unit has none). Kept in memory as the
/// metrics arrive — as Prometheus keeps what its scrapes report —, bounded by
/// `max_families` over all tenants and [`MAX_METADATA_PER_FAMILY`] distinct entries per
/// family; past the bounds new families or entries are not kept.
#[derive(Debug)]
pub struct MetadataIndex {
    by_tenant: std::collections::HashMap<crate::tenant::Tenant, std::collections::BTreeMap<String, Vec<Metadata>>>,
    families: usize,
    max_families: usize,
}

/// Distinct metadata kept per family (services may describe one metric differently).
pub const MAX_METADATA_PER_FAMILY: usize = 8;

impl MetadataIndex {
    pub fn new(max_families: usize) -> MetadataIndex {
        MetadataIndex { by_tenant: Default::default(), families: 0, max_families }
    }

    /// Records the metadata of the metrics among `rows` (once per metric descriptor).
    pub fn record(&mut self, tenant: &crate::tenant::Tenant, rows: &[MetricRow]) {
        let mut last: Option<(*const MetricDescriptor, MetricKind, bool)> = None;
        for row in rows {
            let key = (std::sync::Arc::as_ptr(&row.metric), row.kind, row.is_monotonic);
            if last == Some(key) {
                continue;
            }
            last = Some(key);
            let kind = match row.kind {
                _ if &*row.scope.name == SCOPE => continue,
                MetricKind::Gauge => "gauge",
                MetricKind::Sum if row.is_monotonic => "counter",
                MetricKind::Sum => "gauge",
                MetricKind::Histogram => "histogram",
                MetricKind::Summary => "summary",
                MetricKind::ExponentialHistogram => continue,
            };
            let metadata = Metadata {
                kind,
                help: row.metric.description.to_string(),
                unit: unit_word(&row.metric.unit).unwrap_or_default(),
            };
            let family = metric_name(row);
            let known = self.by_tenant.get(tenant).and_then(|f| f.get(&family));
            if known.is_some_and(|k| k.contains(&metadata) || k.len() >= MAX_METADATA_PER_FAMILY)
                || (known.is_none() && self.families >= self.max_families)
            {
                continue;
            }
            let entries = self.by_tenant.entry(tenant.clone()).or_default().entry(family).or_default();
            if entries.is_empty() {
                self.families += 1;
            }
            entries.push(metadata);
            entries.sort();
        }
    }

    /// Drops what is known of a deleted tenant.
    pub fn forget(&mut self, tenant: &crate::tenant::Tenant) {
        if let Some(families) = self.by_tenant.remove(tenant) {
            self.families = self.families.saturating_sub(families.len());
        }
    }

    /// A tenant's metadata, of one family or all, at most `limit` families (in name order).
    pub fn get(
        &self,
        tenant: &crate::tenant::Tenant,
        metric: Option<&str>,
        limit: Option<usize>,
    ) -> std::collections::BTreeMap<String, Vec<Metadata>> {
        let Some(families) = self.by_tenant.get(tenant) else { return Default::default() };
        families
            .iter()
            .filter(|(name, _)| metric.is_none_or(|m| m == name.as_str()))
            .take(limit.unwrap_or(usize::MAX))
            .map(|(name, entries)| (name.clone(), entries.clone()))
            .collect()
    }
}

/// Rows to numbered series, translating each distinct point identity once. A point's label
/// sets depend only on its metric (name, unit, kind, monotonicity), its attributes and its
/// resource, and these repeat from row to row (every sample of a series is a row of its own):
/// so a row costs a hash of the strings that identify it and a comparison, and the attribute
/// JSON is decoded once per series, not once per sample. Label sets are numbered in the order
/// they first come, equal sets (from different identities: `target_info` of one resource under
/// every metric) the same number. Lives for one batch of rows (a flush, a query's read of the
/// head), so what it remembers is bounded by the batch.
#[derive(Debug, Default)]
pub struct Translator {
    hasher: std::collections::hash_map::RandomState,
    /// Every identity met, and where they are by hash.
    known: Vec<Known>,
    by_hash: std::collections::HashMap<u64, Vec<usize>>,
    series: Vec<Labels>,
    numbers: std::collections::HashMap<Labels, u32>,
    /// The identity of the row before.
    last: Option<usize>,
    pub skipped: Skipped,
}

/// One point identity and its translation.
#[derive(Debug)]
struct Known {
    remote_write: bool,
    kind: MetricKind,
    is_monotonic: bool,
    metric: std::sync::Arc<MetricDescriptor>,
    attributes: Box<str>,
    resource: std::sync::Arc<ResourceColumns>,
    base: LabelPairs,
    /// The metric's name (as translated).
    name: String,
    target_info: Option<u32>,
    /// The numbers of the label sets emitted so far: by name suffix and extra label value.
    named: Vec<(&'static str, Option<String>, u32)>,
}

impl Known {
    fn is(&self, row: &MetricRow, remote_write: bool) -> bool {
        self.remote_write == remote_write
            && *self.attributes == row.attributes
            && *self.metric.name == *row.metric.name
            && (remote_write
                || (self.kind == row.kind
                    && self.is_monotonic == row.is_monotonic
                    && *self.metric.unit == *row.metric.unit
                    && self.resource.service_name == row.resource.service_name
                    && *self.resource.attributes == *row.resource.attributes))
    }
}

impl Translator {
    /// The label set of series `id`.
    pub fn labels(&self, id: u32) -> &Labels {
        &self.series[id as usize]
    }

    /// How many series have been numbered.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The numbered label sets, by number.
    pub fn into_labels(self) -> (Vec<Labels>, Skipped) {
        (self.series, self.skipped)
    }

    fn number(&mut self, pairs: LabelPairs) -> u32 {
        let labels = Labels::new(pairs);
        let next = self.series.len() as u32;
        let id = *self.numbers.entry(labels.clone()).or_insert(next);
        if id == next {
            self.series.push(labels);
        }
        id
    }

    /// Calls `emit` with the series number and sample of each sample a stored point stands
    /// for (module docs: names, labels, `target_info`, histogram and summary series, staleness
    /// markers); exponential-histogram points are counted in `skipped`, delta points left to
    /// [`DeltaAccumulator`].
    pub fn translate(&mut self, row: &MetricRow, mut emit: impl FnMut(u32, Sample)) {
        use std::hash::{BuildHasher, Hash, Hasher};
        let t = i64::try_from(row.time_unix_nano / 1_000_000).unwrap_or(i64::MAX);
        let remote_write = &*row.scope.name == SCOPE;
        if row.temporality == 1 {
            // Their cumulative series come from `DeltaAccumulator`, at ingest.
            return;
        }
        if row.kind == MetricKind::ExponentialHistogram {
            self.skipped.exponential_histograms += 1;
            return;
        }
        // A series' rows often come one after another: then the last identity is this one.
        let found = match self.last.filter(|&at| self.known[at].is(row, remote_write)) {
            Some(at) => Some(at),
            None => {
                let mut h = self.hasher.build_hasher();
                (remote_write, &*row.metric.name, &row.attributes).hash(&mut h);
                if !remote_write {
                    (row.kind as u8, row.is_monotonic, &*row.metric.unit).hash(&mut h);
                    (&row.resource.service_name, &*row.resource.attributes).hash(&mut h);
                }
                let hash = h.finish();
                let at = self
                    .by_hash
                    .get(&hash)
                    .and_then(|list| list.iter().copied().find(|&at| self.known[at].is(row, remote_write)));
                if at.is_none() {
                    // Placed now; made below.
                    self.by_hash.entry(hash).or_default().push(self.known.len());
                }
                at
            }
        };
        let at = match found {
            Some(at) => at,
            None => {
                let (base, info) = base_labels(row, remote_write);
                let target_info = info.map(|info| self.number(info));
                let name = if remote_write { row.metric.name.to_string() } else { metric_name(row) };
                self.known.push(Known {
                    remote_write,
                    kind: row.kind,
                    is_monotonic: row.is_monotonic,
                    metric: row.metric.clone(),
                    attributes: row.attributes.as_str().into(),
                    resource: row.resource.clone(),
                    base,
                    name,
                    target_info,
                    named: Vec::new(),
                });
                self.known.len() - 1
            }
        };
        self.last = Some(at);
        let stale = row.flags & NO_RECORDED_VALUE != 0;
        let value = |v: f64| if stale { f64::from_bits(STALE_NAN_BITS) } else { v };
        if let Some(info) = self.known[at].target_info {
            emit(info, Sample { t, v: 1.0 });
        }
        // The number of the series named `suffix` with label `extra` (le or quantile).
        let series = |me: &mut Self, suffix: &'static str, extra: Option<(&'static str, String)>| {
            let known = &me.known[at];
            let value_of = extra.as_ref().map(|(_, v)| v.as_str());
            if let Some((_, _, id)) = known.named.iter().find(|(s, x, _)| *s == suffix && x.as_deref() == value_of) {
                return *id;
            }
            let mut pairs = known.base.clone();
            pairs.push(("__name__".into(), format!("{}{suffix}", known.name)));
            let extra_value = extra.as_ref().map(|(_, v)| v.clone());
            if let Some((k, v)) = extra {
                pairs.push((k.into(), v));
            }
            let id = me.number(pairs);
            me.known[at].named.push((suffix, extra_value, id));
            id
        };
        match row.kind {
            MetricKind::Gauge | MetricKind::Sum => {
                let id = series(self, "", None);
                emit(id, Sample { t, v: value(row.value.unwrap_or(f64::NAN)) });
            }
            MetricKind::Histogram => {
                let (bounds, counts) = histogram_buckets(&row.detail);
                let mut cumulative = 0u64;
                for (i, bound) in bounds.iter().enumerate() {
                    cumulative += counts.get(i).copied().unwrap_or(0);
                    let id = series(self, "_bucket", Some(("le", le(*bound))));
                    emit(id, Sample { t, v: value(cumulative as f64) });
                }
                let count = row.count.unwrap_or(cumulative + counts.get(bounds.len()).copied().unwrap_or(0));
                let id = series(self, "_bucket", Some(("le", le(f64::INFINITY))));
                emit(id, Sample { t, v: value(count as f64) });
                let id = series(self, "_sum", None);
                emit(id, Sample { t, v: value(row.sum.unwrap_or(f64::NAN)) });
                let id = series(self, "_count", None);
                emit(id, Sample { t, v: value(count as f64) });
            }
            MetricKind::Summary => {
                let detail: serde_json::Value = serde_json::from_str(&row.detail).unwrap_or_default();
                for q in detail["quantileValues"].as_array().into_iter().flatten() {
                    let (Some(quantile), Some(v)) = (q["quantile"].as_f64(), q["value"].as_f64()) else { continue };
                    let id = series(self, "", Some(("quantile", le(quantile))));
                    emit(id, Sample { t, v: value(v) });
                }
                let id = series(self, "_sum", None);
                emit(id, Sample { t, v: value(row.sum.unwrap_or(f64::NAN)) });
                let id = series(self, "_count", None);
                emit(id, Sample { t, v: value(row.count.unwrap_or(0) as f64) });
            }
            MetricKind::ExponentialHistogram => {}
        }
    }
}

/// A histogram point's explicit bounds and bucket counts (from its `detail` JSON).
fn histogram_buckets(detail: &str) -> (Vec<f64>, Vec<u64>) {
    let detail: serde_json::Value = serde_json::from_str(detail).unwrap_or_default();
    let bounds: Vec<f64> = detail["explicitBounds"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default();
    let counts: Vec<u64> = detail["bucketCounts"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok())).collect())
        .unwrap_or_default();
    (bounds, counts)
}

/// What a [`Translator`] could not turn into series.
#[derive(Debug, Default)]
pub struct Skipped {
    pub exponential_histograms: u64,
    pub delta: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each (labels, sample) a point stands for, and what was skipped.
    fn translate(row: &MetricRow, skipped: &mut Skipped, mut emit: impl FnMut(Vec<(String, String)>, Sample)) {
        let mut tr = Translator::default();
        let mut out = Vec::new();
        tr.translate(row, |id, sample| out.push((id, sample)));
        for (id, sample) in out {
            emit(tr.labels(id).clone().into_pairs(), sample);
        }
        skipped.delta += tr.skipped.delta;
        skipped.exponential_histograms += tr.skipped.exponential_histograms;
    }
    use crate::model::metric::MetricDescriptor;
    use crate::model::{ResourceColumns, ScopeColumns};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use prom::model::Labels;
    use std::sync::Arc;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
            key_strindex: 0,
        }
    }

    fn row(name: &str, unit: &str, kind: MetricKind, monotonic: bool) -> MetricRow {
        MetricRow {
            metric: Arc::new(MetricDescriptor {
                name: name.into(),
                description: "".into(),
                unit: unit.into(),
                metadata: "".into(),
            }),
            kind,
            temporality: if kind == MetricKind::Gauge { 0 } else { 2 },
            is_monotonic: monotonic,
            start_unix_nano: 0,
            time_unix_nano: 5_000_000_000,
            attributes: attrs::encode(&[kv("http.route", "/a"), kv("1st", "x")]),
            flags: 0,
            value: Some(2.5),
            value_int: None,
            count: Some(6),
            sum: Some(9.0),
            min: None,
            max: None,
            detail: r#"{"explicitBounds":[0.1,1],"bucketCounts":["1","2","3"]}"#.into(),
            exemplars: String::new(),
            resource: Arc::new(ResourceColumns {
                service_name: Some("api".into()),
                attributes: attrs::encode(&[
                    kv("service.name", "api"),
                    kv("service.namespace", "shop"),
                    kv("service.instance.id", "pod-1"),
                ])
                .into(),
                ..Default::default()
            }),
            scope: Arc::new(ScopeColumns::default()),
        }
    }

    /// Rows of one series share its number (and its labels are made once); a change in any
    /// part of a point's identity makes another series; equal label sets from different
    /// identities (`target_info` of one resource under two metrics) share a number.
    #[test]
    fn a_translator_numbers_series_by_what_identifies_them() {
        let mut tr = Translator::default();
        let ids = |tr: &mut Translator, r: &MetricRow| {
            let mut out = Vec::new();
            tr.translate(r, |id, s| out.push((id, s.t)));
            out
        };
        let mut gauge = row("g", "", MetricKind::Gauge, false);
        let mut resource = (*gauge.resource).clone();
        resource.attributes = attrs::encode(&[kv("service.name", "api"), kv("host.name", "h1")]).into();
        gauge.resource = Arc::new(resource);
        let first = ids(&mut tr, &gauge);
        let (info, g) = (first[0].0, first[1].0);
        assert_eq!(tr.labels(info).get("__name__"), Some("target_info"));
        assert_eq!(tr.labels(g).get("http_route"), Some("/a"));
        // The next sample of the series, in a row with fresh allocations.
        let mut later = gauge.clone();
        later.time_unix_nano += 15_000_000_000;
        later.metric = Arc::new((*gauge.metric).clone());
        later.resource = Arc::new((*gauge.resource).clone());
        assert_eq!(ids(&mut tr, &later), vec![(info, 20_000), (g, 20_000)]);
        // Other attributes: another series, the same target_info.
        let mut other = gauge.clone();
        other.attributes = attrs::encode(&[kv("http.route", "/b")]);
        let got = ids(&mut tr, &other);
        assert_eq!(got[0].0, info);
        assert_ne!(got[1].0, g);
        // Another unit renames the metric; another kind or resource is another identity too.
        let mut unit = gauge.clone();
        unit.metric = Arc::new(MetricDescriptor { unit: "By".into(), ..(*gauge.metric).clone() });
        let id = ids(&mut tr, &unit)[1].0;
        assert_eq!(tr.labels(id).get("__name__"), Some("g_bytes"));
        let mut sum = gauge.clone();
        (sum.kind, sum.is_monotonic) = (MetricKind::Sum, true);
        let id = ids(&mut tr, &sum)[1].0;
        assert_eq!(tr.labels(id).get("__name__"), Some("g_total"));
        let mut moved = gauge.clone();
        let mut resource = (*gauge.resource).clone();
        resource.attributes = attrs::encode(&[kv("service.name", "api"), kv("host.name", "h2")]).into();
        moved.resource = Arc::new(resource);
        let got = ids(&mut tr, &moved);
        assert_ne!(got[0].0, info);
        assert_eq!(got[1].0, g, "the gauge's labels do not name the host");
        assert_eq!(tr.len(), 6);
    }

    #[test]
    fn names_follow_prometheus_otlp_translation() {
        let cases = [
            ("http.server.duration", "s", MetricKind::Histogram, false, "http_server_duration_seconds"),
            ("requests", "1", MetricKind::Sum, true, "requests_total"),
            ("requests", "{request}", MetricKind::Sum, true, "requests_total"),
            ("memory.usage", "By", MetricKind::Gauge, false, "memory_usage_bytes"),
            ("cpu.utilization", "1", MetricKind::Gauge, false, "cpu_utilization_ratio"),
            ("throughput", "{request}/s", MetricKind::Gauge, false, "throughput_per_second"),
            ("net.io", "By/s", MetricKind::Sum, false, "net_io_bytes_per_second"),
            ("latency_seconds", "s", MetricKind::Gauge, false, "latency_seconds"),
            ("2xx.count", "", MetricKind::Sum, true, "_2xx_count_total"),
        ];
        for (name, unit, kind, monotonic, expected) in cases {
            assert_eq!(metric_name(&row(name, unit, kind, monotonic)), expected, "{name} {unit}");
        }
    }

    #[test]
    fn histograms_become_cumulative_buckets_sum_and_count() {
        let mut out = Vec::new();
        translate(&row("d", "s", MetricKind::Histogram, false), &mut Skipped::default(), |l, s| {
            out.push((Labels::new(l).to_string(), s.v))
        });
        let labels = |name: &str, le: Option<&str>| {
            let mut pairs = vec![
                ("__name__".to_string(), name.to_string()),
                ("job".into(), "shop/api".into()),
                ("key_1st".into(), "x".into()),
                ("http_route".into(), "/a".into()),
                ("instance".into(), "pod-1".into()),
            ];
            if let Some(le) = le {
                pairs.push(("le".into(), le.into()));
            }
            Labels::new(pairs).to_string()
        };
        assert_eq!(
            out,
            vec![
                (labels("d_seconds_bucket", Some("0.1")), 1.0),
                (labels("d_seconds_bucket", Some("1")), 3.0),
                (labels("d_seconds_bucket", Some("+Inf")), 6.0),
                (labels("d_seconds_sum", None), 9.0),
                (labels("d_seconds_count", None), 6.0),
            ]
        );
    }

    #[test]
    fn exemplars_attach_to_the_bucket_that_holds_them() {
        use opentelemetry_proto::tonic::metrics::v1::{Exemplar as OtlpExemplar, exemplar};
        let mut r = row("d", "s", MetricKind::Histogram, false);
        let at = |v: f64, t: u64| OtlpExemplar {
            filtered_attributes: vec![kv("user.id", "u1")],
            time_unix_nano: t,
            span_id: vec![0xab; 8],
            trace_id: vec![0x01; 16],
            value: Some(exemplar::Value::AsDouble(v)),
        };
        r.exemplars = attrs::encode_json(&[at(0.05, 4_000_000_000), at(1.0, 4_500_000_000), at(7.0, 4_900_000_000)]);
        let mut out = Vec::new();
        exemplars(&r, |series, e| out.push((Labels::new(series).get("le").unwrap().to_string(), e)));
        let les: Vec<&str> = out.iter().map(|(le, _)| le.as_str()).collect();
        assert_eq!(les, ["0.1", "1", "+Inf"]);
        assert_eq!(out[0].1.t_ms, 4_000);
        assert_eq!(
            Labels::new(out[0].1.labels.clone()).to_string(),
            r#"{span_id="abababababababab", trace_id="01010101010101010101010101010101", user_id="u1"}"#
        );
        // A gauge's exemplars are not served, as the translation keeps none.
        let mut g = row("g", "", MetricKind::Gauge, false);
        g.exemplars = r.exemplars.clone();
        exemplars(&g, |_, _| panic!("a gauge's exemplar"));
    }

    #[test]
    fn other_resource_attributes_go_to_target_info() {
        let mut r = row("g", "", MetricKind::Gauge, false);
        let mut resource = (*r.resource).clone();
        resource.attributes = attrs::encode(&[
            kv("service.name", "api"),
            kv("service.instance.id", "pod-1"),
            kv("service.version", "v2"),
            kv("host.name", "h1"),
        ])
        .into();
        r.resource = Arc::new(resource);
        let mut out = Vec::new();
        translate(&r, &mut Skipped::default(), |l, s| out.push((Labels::new(l).to_string(), s.v)));
        assert_eq!(
            out,
            vec![
                (r#"target_info{host_name="h1", instance="pod-1", job="api", service_version="v2"}"#.to_string(), 1.0),
                (r#"g{http_route="/a", instance="pod-1", job="api", key_1st="x"}"#.to_string(), 2.5),
            ]
        );
    }

    #[test]
    fn remote_write_points_keep_their_labels_and_stale_markers() {
        let mut r = row("up", "", MetricKind::Gauge, false);
        r.scope = Arc::new(ScopeColumns { name: SCOPE.into(), ..Default::default() });
        r.attributes = attrs::encode(&[kv("job", "node")]);
        r.flags = NO_RECORDED_VALUE;
        let mut out = Vec::new();
        translate(&r, &mut Skipped::default(), |l, s| out.push((Labels::new(l), s)));
        assert_eq!(out[0].0.to_string(), r#"up{job="node"}"#);
        assert!(prom::model::is_stale_marker(out[0].1.v));
        assert_eq!(out[0].1.t, 5_000);
        let mut delta = row("d", "", MetricKind::Sum, true);
        delta.temporality = 1;
        let mut skipped = Skipped::default();
        translate(&delta, &mut skipped, |_, _| panic!("a delta point is left to the accumulator"));
        assert_eq!(skipped.delta, 0);
    }

    #[test]
    fn metadata_is_kept_per_tenant_and_family_within_its_bounds() {
        let a = crate::tenant::Tenant::parse("a").unwrap();
        let b = crate::tenant::Tenant::parse("b").unwrap();
        let mut index = MetadataIndex::new(3);
        let mut counter = row("requests", "1", MetricKind::Sum, true);
        counter.metric = Arc::new(MetricDescriptor { description: "Requests.".into(), ..(*counter.metric).clone() });
        let rows = [
            counter.clone(),
            counter.clone(),
            row("d", "s", MetricKind::Histogram, false),
            row("queue", "", MetricKind::Sum, false),
            row("x", "", MetricKind::ExponentialHistogram, false),
        ];
        index.record(&a, &rows);
        let got = serde_json::to_value(index.get(&a, None, None)).unwrap();
        assert_eq!(
            got,
            serde_json::json!({
                "d_seconds": [{"type": "histogram", "help": "", "unit": "seconds"}],
                "queue": [{"type": "gauge", "help": "", "unit": ""}],
                "requests_total": [{"type": "counter", "help": "Requests.", "unit": ""}],
            })
        );
        assert_eq!(index.get(&a, Some("queue"), None).len(), 1);
        assert_eq!(index.get(&a, None, Some(1)).keys().collect::<Vec<_>>(), ["d_seconds"]);
        assert!(index.get(&b, None, None).is_empty());
        // Another description of a known family is kept beside the first; a new family past the
        // bound of 3 is not.
        let mut again = counter.clone();
        again.metric = Arc::new(MetricDescriptor { description: "Other.".into(), ..(*counter.metric).clone() });
        index.record(&a, &[again]);
        assert_eq!(index.get(&a, Some("requests_total"), None)["requests_total"].len(), 2);
        index.record(&b, &[row("up", "", MetricKind::Gauge, false)]);
        assert!(index.get(&b, None, None).is_empty());
    }

    #[test]
    fn delta_points_accumulate_into_the_series_a_cumulative_point_makes() {
        let tenant = crate::tenant::Tenant::parse("a").unwrap();
        let at = |mut r: MetricRow, secs: u64, value: f64| {
            r.temporality = 1;
            r.time_unix_nano = secs * 1_000_000_000;
            r.value = Some(value);
            r
        };
        let view = |b: Option<SeriesBatch>| -> Vec<(String, Vec<(i64, f64)>)> {
            b.map(|b| {
                b.series
                    .iter()
                    .map(|s| (s.labels.to_string(), s.samples.iter().map(|x| (x.t, x.v)).collect()))
                    .collect()
            })
            .unwrap_or_default()
        };
        let sum = row("requests", "1", MetricKind::Sum, true);
        let mut acc = DeltaAccumulator::new(100);
        // Cumulative rows are not its business.
        assert!(acc.accumulate(&tenant, std::slice::from_ref(&sum)).is_none());
        let first = acc.accumulate(&tenant, &[at(sum.clone(), 10, 2.0), at(sum.clone(), 20, 3.0)]);
        let name = r#"requests_total{http_route="/a", instance="pod-1", job="shop/api", key_1st="x"}"#.to_string();
        assert_eq!(view(first), vec![(name.clone(), vec![(10_000, 2.0), (20_000, 5.0)])]);
        // The totals carry over to the next request; a point no later than the newest is dropped.
        let next = acc.accumulate(&tenant, &[at(sum.clone(), 20, 7.0), at(sum.clone(), 30, 1.0)]);
        assert_eq!(view(next), vec![(name.clone(), vec![(30_000, 6.0)])]);
        assert_eq!(acc.dropped, 1);
        // Another tenant's series start from zero.
        let other = crate::tenant::Tenant::parse("b").unwrap();
        assert_eq!(
            view(acc.accumulate(&other, &[at(sum.clone(), 30, 1.0)])),
            vec![(name.clone(), vec![(30_000, 1.0)])]
        );
        // A histogram's buckets, sum and count each accumulate.
        let mut h = at(row("d", "s", MetricKind::Histogram, false), 10, 0.0);
        h.value = None;
        let twice = acc.accumulate(
            &tenant,
            &[h.clone(), {
                let mut l = h.clone();
                l.time_unix_nano += 15_000_000_000;
                l
            }],
        );
        let got = view(twice);
        let inf = got.iter().find(|(l, _)| l.contains(r#"le="+Inf""#)).unwrap();
        assert_eq!(inf.1, vec![(10_000, 6.0), (25_000, 12.0)]);
        let count = got.iter().find(|(l, _)| l.starts_with("d_seconds_count")).unwrap();
        assert_eq!(count.1, vec![(10_000, 6.0), (25_000, 12.0)]);
        let sum_series = got.iter().find(|(l, _)| l.starts_with("d_seconds_sum")).unwrap();
        assert_eq!(sum_series.1, vec![(10_000, 9.0), (25_000, 18.0)]);
        // Past its bound the accumulator starts afresh (read as a counter reset).
        let mut small = DeltaAccumulator::new(0);
        small.accumulate(&tenant, &[at(sum.clone(), 10, 2.0)]);
        assert_eq!(view(small.accumulate(&tenant, &[at(sum.clone(), 20, 3.0)])), vec![(name, vec![(20_000, 3.0)])]);
    }
}
