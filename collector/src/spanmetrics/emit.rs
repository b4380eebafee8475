//! Writing the span metrics: every `metrics_flush_interval`, each tenant's cumulative values as
//! an OTLP metrics export through the ordinary ingest path, as a service's SDK would send them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{CALLS_METRIC, DURATION_METRIC, OVERFLOW_ATTRIBUTE, SCOPE, SeriesSnapshot, SpanMetrics, now_unix_nano};
use crate::receive::{Ingest, Raw};

/// Series per export request: a tenant with many series is written in several requests, each
/// well inside the ingest path's memory bounds.
const SERIES_PER_REQUEST: usize = 500;

/// The calls and duration points of one resource.
type Points = (Vec<NumberDataPoint>, Vec<HistogramDataPoint>);

/// What one flush wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Data points the store took.
    pub points: u64,
    /// Export requests the store refused (their values are written again by the next flush).
    pub failures: u64,
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
        key_strindex: 0,
    }
}

impl SpanMetrics {
    /// Drops the expired series and writes every tenant's cumulative values through `ingest`.
    /// A refused write is logged and counted; nothing is lost by it, since the next flush
    /// writes the same cumulative values, grown.
    pub async fn flush(&self, ingest: &Ingest) -> Flushed {
        let now = self.flush_time(now_unix_nano());
        self.expire(now);
        let mut flushed = Flushed::default();
        for tenant in self.tenants() {
            let series = self.snapshot(&tenant);
            for request in self.requests(&series, now) {
                let points = count_points(&request);
                match ingest.export(tenant.clone(), request, Raw::None).await {
                    Ok(response) => {
                        let rejected = response.partial_success.as_ref().map_or(0, |p| p.rejected_data_points.max(0));
                        if let Some(p) = response.partial_success.filter(|p| p.rejected_data_points > 0) {
                            tracing::warn!(tenant = %tenant, rejected = p.rejected_data_points, error = %p.error_message, "span metrics: data points refused");
                        }
                        flushed.points += points.saturating_sub(rejected as u64);
                    }
                    Err(err) => {
                        flushed.failures += 1;
                        tracing::warn!(tenant = %tenant, error = %err, "span metrics: write failed; the next flush writes the values again");
                    }
                }
            }
        }
        self.stats.flushes.fetch_add(1, Relaxed);
        self.stats.written_points.fetch_add(flushed.points, Relaxed);
        self.stats.write_failures.fetch_add(flushed.failures, Relaxed);
        flushed
    }

    /// The time of a flush at `now`: at least a millisecond after the last one, so no two
    /// flushes write two values of a series at one Prometheus timestamp.
    pub(super) fn flush_time(&self, now: u64) -> u64 {
        let previous = self.last_flush_unix_nano.fetch_max(now, Relaxed);
        if now >= previous.saturating_add(1_000_000) {
            return now;
        }
        let at = previous + 1_000_000;
        self.last_flush_unix_nano.fetch_max(at, Relaxed);
        at
    }

    /// The export requests that write `series` (one tenant's snapshot) as at `now`: per
    /// request, one resource per service (with the series' `service.version` and
    /// `deployment.environment` dimension values), one scope, the calls sum and the duration
    /// histogram, cumulative from each series' start.
    pub(super) fn requests(&self, series: &[SeriesSnapshot], now: u64) -> Vec<ExportMetricsServiceRequest> {
        let names: Vec<&str> = self.dimension_names().collect();
        let resource_dims: Vec<(usize, &str)> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                matches!(**n, "service.version" | "deployment.environment" | "deployment.environment.name")
            })
            .map(|(i, n)| (i, *n))
            .collect();
        let bounds = self.bounds_seconds().to_vec();
        series
            .chunks(SERIES_PER_REQUEST)
            .map(|chunk| {
                // Resource attributes (service, version, environment) → their calls and duration
                // points, in a deterministic order.
                let mut resources: BTreeMap<Vec<(&str, &str)>, Points> = BTreeMap::new();
                for s in chunk {
                    let (resource, attributes) = match &s.key {
                        Some(key) => {
                            let mut resource = vec![("service.name", &*key.service)];
                            for (i, name) in &resource_dims {
                                if let Some(v) = key.dimensions.get(*i).and_then(|v| v.as_deref()) {
                                    resource.push((name, v));
                                }
                            }
                            let mut attributes = vec![
                                text("service.name", &key.service),
                                text("span.name", &key.span_name),
                                text("span.kind", key.kind.as_str()),
                                text("status.code", key.status.as_str()),
                            ];
                            for (name, value) in names.iter().zip(key.dimensions.iter()) {
                                if let Some(v) = value {
                                    attributes.push(text(name, v));
                                }
                            }
                            (resource, attributes)
                        }
                        None => (
                            Vec::new(),
                            vec![KeyValue {
                                key: OVERFLOW_ATTRIBUTE.to_string(),
                                value: Some(AnyValue { value: Some(any_value::Value::BoolValue(true)) }),
                                key_strindex: 0,
                            }],
                        ),
                    };
                    let (calls, durations) = resources.entry(resource).or_default();
                    calls.push(NumberDataPoint {
                        attributes: attributes.clone(),
                        start_time_unix_nano: s.start_unix_nano,
                        time_unix_nano: now,
                        exemplars: Vec::new(),
                        flags: 0,
                        value: Some(number_data_point::Value::AsInt(i64::try_from(s.calls).unwrap_or(i64::MAX))),
                    });
                    durations.push(HistogramDataPoint {
                        attributes,
                        start_time_unix_nano: s.start_unix_nano,
                        time_unix_nano: now,
                        count: s.calls,
                        sum: Some(s.sum_seconds),
                        bucket_counts: s.bucket_counts.clone(),
                        explicit_bounds: bounds.clone(),
                        exemplars: Vec::new(),
                        flags: 0,
                        min: None,
                        max: None,
                    });
                }
                let resource_metrics = resources
                    .into_iter()
                    .map(|(resource, (calls, durations))| ResourceMetrics {
                        resource: Some(Resource {
                            attributes: resource.iter().map(|(k, v)| text(k, v)).collect(),
                            dropped_attributes_count: 0,
                            entity_refs: Vec::new(),
                        }),
                        scope_metrics: vec![ScopeMetrics {
                            scope: Some(InstrumentationScope { name: SCOPE.to_string(), ..Default::default() }),
                            metrics: vec![
                                Metric {
                                    name: CALLS_METRIC.to_string(),
                                    description: "Spans counted (requests handled); errors are those with status.code STATUS_CODE_ERROR.".to_string(),
                                    unit: String::new(),
                                    metadata: Vec::new(),
                                    data: Some(metric::Data::Sum(Sum {
                                        data_points: calls,
                                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                        is_monotonic: true,
                                    })),
                                },
                                Metric {
                                    name: DURATION_METRIC.to_string(),
                                    description: "Span durations (end minus start).".to_string(),
                                    unit: "s".to_string(),
                                    metadata: Vec::new(),
                                    data: Some(metric::Data::Histogram(Histogram {
                                        data_points: durations,
                                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                    })),
                                },
                            ],
                            schema_url: String::new(),
                        }],
                        schema_url: String::new(),
                    })
                    .collect();
                ExportMetricsServiceRequest { resource_metrics }
            })
            .collect()
    }
}

pub(super) fn count_points(request: &ExportMetricsServiceRequest) -> u64 {
    request
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => s.data_points.len() as u64,
            Some(metric::Data::Histogram(h)) => h.data_points.len() as u64,
            _ => 0,
        })
        .sum()
}

/// Starts the task that flushes `metrics` every `metrics_flush_interval` until `shutdown`. The
/// last values are written by a final [`SpanMetrics::flush`] once the listeners have stopped
/// (`RunningCollector::stop`), so the spans of requests still in progress at shutdown count.
pub fn start(metrics: Arc<SpanMetrics>, ingest: Arc<Ingest>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(metrics.flush_interval());
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is at once: nothing to write yet.
        ticks.tick().await;
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = ticks.tick() => {
                    metrics.flush(&ingest).await;
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// For tests: `tenant`'s requests as at `now`.
#[cfg(test)]
pub(super) fn requests_of(
    metrics: &SpanMetrics,
    tenant: &crate::tenant::Tenant,
    now: u64,
) -> Vec<ExportMetricsServiceRequest> {
    metrics.requests(&metrics.snapshot(tenant), now)
}
