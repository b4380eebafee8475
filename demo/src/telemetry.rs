//! The service's OpenTelemetry SDK set-up: a tracer provider with a batch span processor and a
//! meter provider with a periodic reader, both exporting over OTLP gRPC (`opentelemetry-otlp`
//! with tonic), exactly as an application would configure them.
//!
//! [`Telemetry::shutdown`] flushes and shuts both providers down, which blocks until every
//! span and metric recorded so far has been exported (or the export failed), so a run's data
//! is in the collector when [`crate::run_build`] returns.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};

use crate::{Build, ENVIRONMENT, SERVICE};

/// Name of the instrumentation scope of the service's spans and metrics.
pub const SCOPE: &str = "demo-checkout";

/// The OpenTelemetry resource of a build: `service.name`, `service.version` and
/// `deployment.environment.name`. (`host.name` is set per request on the span, since one
/// process plays all the nodes.)
pub fn resource(build: Build) -> Resource {
    Resource::builder()
        .with_service_name(SERVICE)
        .with_attributes([
            KeyValue::new("service.version", build.version()),
            KeyValue::new("deployment.environment.name", ENVIRONMENT),
        ])
        .build()
}

/// The SDK providers of one run.
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
}

/// What the service records with.
#[derive(Debug, Clone)]
pub struct Instruments {
    /// Starts the SERVER spans.
    pub tracer: SdkTracer,
    /// `http.server.request.count`: requests served, by route, method and status code.
    pub requests: Counter<u64>,
    /// `http.server.request.duration` (seconds), by route, method and status code.
    pub duration: Histogram<f64>,
}

impl Telemetry {
    /// Providers exporting to the OTLP gRPC endpoint `endpoint`. Must be called inside a tokio
    /// runtime (tonic's channel lives on it), which must outlive [`Telemetry::shutdown`].
    pub fn otlp(build: Build, endpoint: SocketAddr) -> anyhow::Result<Telemetry> {
        let url = format!("http://{endpoint}");
        let spans = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&url)
            .with_timeout(Duration::from_secs(10))
            .build()
            .context("building the OTLP span exporter")?;
        let metrics = MetricExporter::builder()
            .with_tonic()
            .with_endpoint(&url)
            .with_timeout(Duration::from_secs(10))
            .build()
            .context("building the OTLP metric exporter")?;
        // A queue large enough that no span is dropped at the demo's rate (~500/s), exported
        // every second in batches of 512.
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(65_536)
            .with_max_export_batch_size(512)
            .with_scheduled_delay(Duration::from_secs(1))
            .build();
        let tracer_provider = SdkTracerProvider::builder()
            .with_resource(resource(build))
            .with_span_processor(BatchSpanProcessor::builder(spans).with_batch_config(batch).build())
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_resource(resource(build))
            .with_reader(PeriodicReader::builder(metrics).with_interval(Duration::from_secs(5)).build())
            .build();
        Ok(Telemetry { tracer_provider, meter_provider })
    }

    /// Providers that record but export nothing (for tests of the service alone).
    pub fn disabled(build: Build) -> Telemetry {
        Telemetry {
            tracer_provider: SdkTracerProvider::builder().with_resource(resource(build)).build(),
            meter_provider: SdkMeterProvider::builder().with_resource(resource(build)).build(),
        }
    }

    /// The tracer and metric instruments the service records with.
    pub fn instruments(&self) -> Instruments {
        let meter = self.meter_provider.meter(SCOPE);
        Instruments {
            tracer: self.tracer_provider.tracer(SCOPE),
            requests: meter
                .u64_counter("http.server.request.count")
                .with_description("HTTP requests served")
                .with_unit("{request}")
                .build(),
            duration: meter
                .f64_histogram("http.server.request.duration")
                .with_description("Duration of HTTP server requests")
                .with_unit("s")
                .with_boundaries(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0])
                .build(),
        }
    }

    /// Flushes every recorded span and metric to the exporters and shuts the providers down.
    /// Blocks until the exports finished; both providers are shut down even when one fails.
    pub fn shutdown(self) -> anyhow::Result<()> {
        let traces = self
            .tracer_provider
            .force_flush()
            .and_then(|()| self.tracer_provider.shutdown())
            .map_err(|e| anyhow!("exporting spans: {e}"));
        let metrics = self
            .meter_provider
            .force_flush()
            .and_then(|()| self.meter_provider.shutdown())
            .map_err(|e| anyhow!("exporting metrics: {e}"));
        traces.and(metrics)
    }
}
