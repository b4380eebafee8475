//! Metric data points as rows: one row per point of every OTLP point type.
//!
//! Gauge and sum points keep their value (as a double, and the exact integer when the point
//! carried one); histogram, exponential-histogram and summary points keep count, sum, min and
//! max as columns and their buckets or quantiles as OTLP/JSON in `detail`.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use serde::Serialize;

use super::{ResourceColumns, Row, RowKey, ScopeColumns, attrs};

/// The OTLP point type of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Sum => "sum",
            MetricKind::Histogram => "histogram",
            MetricKind::ExponentialHistogram => "exponential_histogram",
            MetricKind::Summary => "summary",
        }
    }

    pub fn parse(s: &str) -> Option<MetricKind> {
        [
            MetricKind::Gauge,
            MetricKind::Sum,
            MetricKind::Histogram,
            MetricKind::ExponentialHistogram,
            MetricKind::Summary,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Name, description and unit of a metric, shared by its points.
#[derive(Debug, Clone, Default)]
pub struct MetricDescriptor {
    pub name: Arc<str>,
    pub description: Arc<str>,
    pub unit: Arc<str>,
    /// OTLP/JSON of `Metric.metadata`.
    pub metadata: Arc<str>,
}

/// One data point.
#[derive(Debug, Clone)]
pub struct MetricRow {
    pub metric: Arc<MetricDescriptor>,
    pub kind: MetricKind,
    /// OTLP `AggregationTemporality` number (1 = delta, 2 = cumulative); 0 for gauges and
    /// summaries.
    pub temporality: i32,
    pub is_monotonic: bool,
    pub start_unix_nano: u64,
    pub time_unix_nano: u64,
    /// OTLP/JSON of the point's attributes (its label set).
    pub attributes: String,
    pub flags: u32,
    /// Gauge and sum: the value as a double.
    pub value: Option<f64>,
    /// Gauge and sum: the exact value when it was sent as an integer.
    pub value_int: Option<i64>,
    pub count: Option<u64>,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Histogram: `{"explicitBounds":[..],"bucketCounts":[..]}`; exponential histogram:
    /// `{"scale":..,"zeroCount":..,"zeroThreshold":..,"positive":{..},"negative":{..}}`;
    /// summary: `{"quantileValues":[..]}`; empty for gauge and sum.
    pub detail: String,
    /// OTLP/JSON of the exemplars.
    pub exemplars: String,
    pub resource: Arc<ResourceColumns>,
    pub scope: Arc<ScopeColumns>,
}

impl Row for MetricRow {
    fn key(&self) -> RowKey<'_> {
        RowKey {
            time_unix_nano: self.time_unix_nano,
            service_name: self.resource.service_name.as_ref(),
            service_version: self.resource.service_version.as_ref(),
        }
    }
}

fn json(value: serde_json::Value) -> String {
    value.to_string()
}

/// Flattens a validated request into rows (metrics without data were rejected before).
pub fn rows_from_request(request: ExportMetricsServiceRequest) -> Vec<MetricRow> {
    // Sized once: growing by doubling held the old and the new buffer at once.
    let mut rows = Vec::with_capacity(crate::receive::validate::count_points(&request) as usize);
    let mut attributes = AttributesMemo::default();
    for rm in request.resource_metrics {
        let resource = Arc::new(ResourceColumns::from_otlp(rm.resource.as_ref(), &rm.schema_url));
        for sm in rm.scope_metrics {
            let scope = Arc::new(ScopeColumns::from_otlp(sm.scope.as_ref(), &sm.schema_url));
            for metric in sm.metrics {
                let descriptor = Arc::new(MetricDescriptor {
                    name: Arc::from(metric.name.as_str()),
                    description: Arc::from(metric.description.as_str()),
                    unit: Arc::from(metric.unit.as_str()),
                    metadata: Arc::from(attrs::encode(&metric.metadata)),
                });
                let base = |kind, temporality, is_monotonic| MetricRow {
                    metric: Arc::clone(&descriptor),
                    kind,
                    temporality,
                    is_monotonic,
                    start_unix_nano: 0,
                    time_unix_nano: 0,
                    attributes: String::new(),
                    flags: 0,
                    value: None,
                    value_int: None,
                    count: None,
                    sum: None,
                    min: None,
                    max: None,
                    detail: String::new(),
                    exemplars: String::new(),
                    resource: Arc::clone(&resource),
                    scope: Arc::clone(&scope),
                };
                match metric.data {
                    None => {}
                    Some(Data::Gauge(g)) => {
                        for p in g.data_points {
                            rows.push(number_row(base(MetricKind::Gauge, 0, false), p, &mut attributes));
                        }
                    }
                    Some(Data::Sum(s)) => {
                        for p in s.data_points {
                            let row = base(MetricKind::Sum, s.aggregation_temporality, s.is_monotonic);
                            rows.push(number_row(row, p, &mut attributes));
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for p in h.data_points {
                            let mut row = base(MetricKind::Histogram, h.aggregation_temporality, false);
                            row.start_unix_nano = p.start_time_unix_nano;
                            row.time_unix_nano = p.time_unix_nano;
                            row.attributes = attributes.encode(&p.attributes);
                            row.flags = p.flags;
                            row.count = Some(p.count);
                            row.sum = p.sum;
                            row.min = p.min;
                            row.max = p.max;
                            row.detail = json(serde_json::json!({
                                "explicitBounds": p.explicit_bounds,
                                "bucketCounts": p.bucket_counts,
                            }));
                            row.exemplars = attrs::encode_json(&p.exemplars);
                            rows.push(row);
                        }
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        for p in h.data_points {
                            let mut row = base(MetricKind::ExponentialHistogram, h.aggregation_temporality, false);
                            row.start_unix_nano = p.start_time_unix_nano;
                            row.time_unix_nano = p.time_unix_nano;
                            row.attributes = attrs::encode(&p.attributes);
                            row.flags = p.flags;
                            row.count = Some(p.count);
                            row.sum = p.sum;
                            row.min = p.min;
                            row.max = p.max;
                            let buckets = |b: &Option<_>| {
                                match b {
                                Some(opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets { offset, bucket_counts }) => {
                                    serde_json::json!({"offset": offset, "bucketCounts": bucket_counts})
                                }
                                None => serde_json::Value::Null,
                            }
                            };
                            row.detail = json(serde_json::json!({
                                "scale": p.scale,
                                "zeroCount": p.zero_count,
                                "zeroThreshold": p.zero_threshold,
                                "positive": buckets(&p.positive),
                                "negative": buckets(&p.negative),
                            }));
                            row.exemplars = attrs::encode_json(&p.exemplars);
                            rows.push(row);
                        }
                    }
                    Some(Data::Summary(s)) => {
                        for p in s.data_points {
                            let mut row = base(MetricKind::Summary, 0, false);
                            row.start_unix_nano = p.start_time_unix_nano;
                            row.time_unix_nano = p.time_unix_nano;
                            row.attributes = attrs::encode(&p.attributes);
                            row.flags = p.flags;
                            row.count = Some(p.count);
                            row.sum = Some(p.sum);
                            let quantiles: Vec<_> = p
                                .quantile_values
                                .iter()
                                .map(|q| serde_json::json!({"quantile": q.quantile, "value": q.value}))
                                .collect();
                            row.detail = json(serde_json::json!({ "quantileValues": quantiles }));
                            rows.push(row);
                        }
                    }
                }
            }
        }
    }
    rows
}

/// The OTLP/JSON of the last attributes encoded: the points of one series (a remote-written
/// series' samples, a histogram's points over time) carry the same attributes one after another.
#[derive(Default)]
struct AttributesMemo {
    last: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
    json: String,
}

impl AttributesMemo {
    fn encode(&mut self, attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> String {
        if self.json.is_empty() || self.last != attributes {
            self.json = attrs::encode(attributes);
            self.last = attributes.to_vec();
        }
        self.json.clone()
    }
}

fn number_row(
    mut row: MetricRow,
    p: opentelemetry_proto::tonic::metrics::v1::NumberDataPoint,
    attributes: &mut AttributesMemo,
) -> MetricRow {
    row.start_unix_nano = p.start_time_unix_nano;
    row.time_unix_nano = p.time_unix_nano;
    row.attributes = attributes.encode(&p.attributes);
    row.flags = p.flags;
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => row.value = Some(d),
        Some(number_data_point::Value::AsInt(i)) => {
            row.value = Some(i as f64);
            row.value_int = Some(i);
        }
        None => {}
    }
    row.exemplars = attrs::encode_json(&p.exemplars);
    row
}
