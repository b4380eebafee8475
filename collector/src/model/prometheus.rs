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
//! Not translated (skipped, with a warning in the answer): exponential histograms (Prometheus
//! makes native histograms of them, which this engine does not evaluate) and points of delta
//! temporality (Prometheus 2.42 refuses them too). A point flagged `FLAG_NO_RECORDED_VALUE` is a
//! staleness marker.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use prom::model::{STALE_NAN_BITS, Sample};

use super::attrs;
use super::metric::{MetricKind, MetricRow};

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

/// What [`translate`] could not turn into series.
#[derive(Debug, Default)]
pub struct Skipped {
    pub exponential_histograms: u64,
    pub delta: u64,
}

/// Calls `emit` with each (labels, sample) a stored point stands for.
pub fn translate(row: &MetricRow, skipped: &mut Skipped, mut emit: impl FnMut(Vec<(String, String)>, Sample)) {
    let t = i64::try_from(row.time_unix_nano / 1_000_000).unwrap_or(i64::MAX);
    let remote_write = &*row.scope.name == SCOPE;
    if row.temporality == 1 {
        skipped.delta += 1;
        return;
    }
    let stale = row.flags & NO_RECORDED_VALUE != 0;
    let value = |v: f64| if stale { f64::from_bits(STALE_NAN_BITS) } else { v };
    let (base, target_info) = base_labels(row, remote_write);
    if let Some(info) = target_info {
        emit(info, Sample { t, v: 1.0 });
    }
    let named = |suffix: &str, extra: Option<(&str, String)>| {
        let mut labels = base.clone();
        let name = if remote_write { row.metric.name.to_string() } else { format!("{}{suffix}", metric_name(row)) };
        labels.push(("__name__".into(), name));
        if let Some((k, v)) = extra {
            labels.push((k.into(), v));
        }
        labels
    };
    match row.kind {
        MetricKind::Gauge | MetricKind::Sum => {
            emit(named("", None), Sample { t, v: value(row.value.unwrap_or(f64::NAN)) });
        }
        MetricKind::Histogram => {
            let detail: serde_json::Value = serde_json::from_str(&row.detail).unwrap_or_default();
            let bounds: Vec<f64> = detail["explicitBounds"]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default();
            let counts: Vec<u64> = detail["bucketCounts"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok())).collect())
                .unwrap_or_default();
            let mut cumulative = 0u64;
            for (i, bound) in bounds.iter().enumerate() {
                cumulative += counts.get(i).copied().unwrap_or(0);
                emit(named("_bucket", Some(("le", le(*bound)))), Sample { t, v: value(cumulative as f64) });
            }
            let count = row.count.unwrap_or(cumulative + counts.get(bounds.len()).copied().unwrap_or(0));
            emit(named("_bucket", Some(("le", le(f64::INFINITY)))), Sample { t, v: value(count as f64) });
            emit(named("_sum", None), Sample { t, v: value(row.sum.unwrap_or(f64::NAN)) });
            emit(named("_count", None), Sample { t, v: value(count as f64) });
        }
        MetricKind::Summary => {
            let detail: serde_json::Value = serde_json::from_str(&row.detail).unwrap_or_default();
            for q in detail["quantileValues"].as_array().into_iter().flatten() {
                let (Some(quantile), Some(v)) = (q["quantile"].as_f64(), q["value"].as_f64()) else { continue };
                emit(named("", Some(("quantile", le(quantile)))), Sample { t, v: value(v) });
            }
            emit(named("_sum", None), Sample { t, v: value(row.sum.unwrap_or(f64::NAN)) });
            emit(named("_count", None), Sample { t, v: value(row.count.unwrap_or(0) as f64) });
        }
        MetricKind::ExponentialHistogram => skipped.exponential_histograms += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        translate(&delta, &mut skipped, |_, _| panic!("a delta point has no Prometheus form here"));
        assert_eq!(skipped.delta, 1);
    }
}
