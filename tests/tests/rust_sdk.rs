//! The Rust OpenTelemetry SDK's own OTLP exporters (`opentelemetry-otlp`, gRPC and HTTP)
//! send known spans, metrics and logs; everything is read back through the API and checked
//! item by item.

use std::collections::HashMap;
use std::time::Duration;

use e2e::Server;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Link, Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{LogExporter, MetricExporter, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::Value;

/// What was sent, to compare with what comes back.
struct Sent {
    trace_ids: Vec<String>,
    error_trace: String,
}

struct Exporters {
    spans: SpanExporter,
    metrics: MetricExporter,
    logs: LogExporter,
}

fn resource(service: &str, version: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_string())
        .with_attributes([
            KeyValue::new("service.version", version.to_string()),
            KeyValue::new("deployment.environment.name", "ci"),
            KeyValue::new("host.name", "test-host"),
        ])
        .build()
}

/// Emits the known data through the SDK and shuts the providers down (which exports it all).
fn send(exporters: Exporters, service: &str, version: &str) -> Sent {
    let tracer_provider = SdkTracerProvider::builder()
        .with_resource(resource(service, version))
        .with_simple_exporter(exporters.spans)
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_resource(resource(service, version))
        .with_periodic_exporter(exporters.metrics)
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_resource(resource(service, version))
        .with_simple_exporter(exporters.logs)
        .build();

    let tracer = tracer_provider.tracer("e2e-tracer");
    let logger = logger_provider.logger("e2e-logger");
    let mut trace_ids = Vec::new();
    let mut first_span = None;
    for i in 0..3 {
        let mut root = tracer
            .span_builder("GET /orders/{id}")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.route", "/orders/{id}"),
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 200i64),
                KeyValue::new("order.index", i as i64),
            ])
            .with_links(
                first_span
                    .iter()
                    .map(|sc: &opentelemetry::trace::SpanContext| Link::with_context(sc.clone()))
                    .collect(),
            )
            .start(&tracer);
        root.add_event("cache.miss", vec![KeyValue::new("cache.key", format!("order-{i}"))]);
        let root_cx = root.span_context().clone();
        trace_ids.push(root_cx.trace_id().to_string());
        if first_span.is_none() {
            first_span = Some(root_cx.clone());
        }
        let cx = Context::current_with_span(root);
        let mut child =
            tracer.span_builder("load order").with_kind(SpanKind::Internal).start_with_context(&tracer, &cx);
        child.set_attribute(KeyValue::new("db.system", "postgresql"));
        // A log record inside the child span carries its trace context.
        let mut record = logger.create_log_record();
        record.set_body(AnyValue::from(format!("loaded order {i}")));
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
        record.add_attribute("order.index", i as i64);
        record.set_trace_context(child.span_context().trace_id(), child.span_context().span_id(), None);
        logger.emit(record);
        child.end();
        cx.span().end();
    }
    let mut failing = tracer
        .span_builder("POST /orders")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.route", "/orders"),
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.response.status_code", 503i64),
        ])
        .start(&tracer);
    failing.set_status(Status::error("backend unavailable"));
    let error_trace = failing.span_context().trace_id().to_string();
    failing.end();
    let mut warn = logger.create_log_record();
    warn.set_body(AnyValue::from("disk almost full"));
    warn.set_severity_number(Severity::Warn);
    warn.set_severity_text("WARN");
    warn.add_attribute("disk.free_bytes", 1024i64);
    logger.emit(warn);

    let meter = meter_provider.meter("e2e-meter");
    let counter = meter.u64_counter("orders.processed").build();
    counter.add(3, &[KeyValue::new("region", "eu")]);
    counter.add(4, &[KeyValue::new("region", "us")]);
    let histogram = meter.f64_histogram("orders.latency").with_unit("ms").with_boundaries(vec![10.0, 100.0]).build();
    for v in [5.0, 15.0, 150.0, 160.0] {
        histogram.record(v, &[]);
    }
    let gauge = meter.u64_gauge("queue.depth").build();
    gauge.record(7, &[KeyValue::new("queue", "orders")]);

    tracer_provider.shutdown().expect("trace export");
    meter_provider.shutdown().expect("metric export");
    logger_provider.shutdown().expect("log export");
    Sent { trace_ids, error_trace }
}

fn attr<'a>(attrs: &'a Value, key: &str) -> &'a Value {
    attrs.as_array().and_then(|a| a.iter().find(|kv| kv["key"] == key)).map(|kv| &kv["value"]).unwrap_or(&Value::Null)
}

/// Reads everything back and checks it.
fn check(server: &Server, sent: &Sent, service: &str, version: &str, tenant: Option<&str>) {
    // Traces: 3 traces of 2 spans, 1 of 1.
    for (i, trace_id) in sent.trace_ids.iter().enumerate() {
        let (status, body) = server.get(&format!("/api/v1/traces/{trace_id}"), tenant);
        assert_eq!(status, 200, "trace {trace_id}: {body}");
        let rs = &body["resourceSpans"];
        assert_eq!(rs.as_array().unwrap().len(), 1, "{body}");
        let resource = &rs[0]["resource"]["attributes"];
        assert_eq!(attr(resource, "service.name")["stringValue"], service);
        assert_eq!(attr(resource, "service.version")["stringValue"], version);
        assert_eq!(attr(resource, "host.name")["stringValue"], "test-host");
        let spans: Vec<&Value> =
            rs[0]["scopeSpans"].as_array().unwrap().iter().flat_map(|ss| ss["spans"].as_array().unwrap()).collect();
        assert_eq!(rs[0]["scopeSpans"][0]["scope"]["name"], "e2e-tracer");
        assert_eq!(spans.len(), 2, "{body}");
        let root = spans.iter().find(|s| s["name"] == "GET /orders/{id}").expect("root span");
        let child = spans.iter().find(|s| s["name"] == "load order").expect("child span");
        assert_eq!(root["traceId"], trace_id.as_str());
        assert_eq!(root["kind"], 2, "SERVER");
        assert_eq!(child["kind"], 1, "INTERNAL");
        assert_eq!(child["parentSpanId"], root["spanId"]);
        assert_eq!(attr(&root["attributes"], "http.route")["stringValue"], "/orders/{id}");
        assert_eq!(attr(&root["attributes"], "http.response.status_code")["intValue"], "200");
        assert_eq!(attr(&root["attributes"], "order.index")["intValue"], i.to_string());
        assert_eq!(attr(&child["attributes"], "db.system")["stringValue"], "postgresql");
        assert_eq!(root["events"][0]["name"], "cache.miss");
        assert_eq!(attr(&root["events"][0]["attributes"], "cache.key")["stringValue"], format!("order-{i}"));
        let links = root["links"].as_array().map_or(0, Vec::len);
        assert_eq!(links, usize::from(i > 0), "only later roots link to the first: {root}");
        if i > 0 {
            assert_eq!(root["links"][0]["traceId"], sent.trace_ids[0].as_str());
        }
        let start: u64 = root["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u64 = root["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(end >= start && start > 0);
    }
    let (status, body) = server.get(&format!("/api/v1/traces/{}", sent.error_trace), tenant);
    assert_eq!(status, 200, "{body}");
    let span = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["status"]["code"], 2, "ERROR: {span}");
    assert_eq!(span["status"]["message"], "backend unavailable");
    assert_eq!(attr(&span["attributes"], "http.response.status_code")["intValue"], "503");
    assert_eq!(server.items("traces", tenant), 7);

    // Metrics. The periodic reader may export more than once before shutdown (cumulative
    // temporality), so each series is judged by its newest point.
    let newest = |name: &str| -> Vec<Value> {
        let (status, body) = server.get(&format!("/api/v1/metrics/points?name={name}&service={service}"), tenant);
        assert_eq!(status, 200, "{body}");
        let mut by_series: HashMap<String, Value> = HashMap::new();
        for p in body["points"].as_array().unwrap() {
            let key = p["attributes"].to_string();
            let newer = by_series.get(&key).is_none_or(|q| q["time_unix_nano"].as_u64() < p["time_unix_nano"].as_u64());
            if newer {
                by_series.insert(key, p.clone());
            }
        }
        let mut v: Vec<Value> = by_series.into_values().collect();
        v.sort_by_key(|p| p["attributes"].to_string());
        v
    };
    let counter = newest("orders.processed");
    assert_eq!(counter.len(), 2, "{counter:?}");
    assert_eq!(counter[0]["attributes"]["region"], "eu");
    assert_eq!(counter[0]["value_int"], 3);
    assert_eq!(counter[1]["attributes"]["region"], "us");
    assert_eq!(counter[1]["value_int"], 4);
    for p in &counter {
        assert_eq!(p["kind"], "sum");
        assert_eq!(p["is_monotonic"], true);
        assert_eq!(p["temporality"], 2, "cumulative");
        assert_eq!(p["service_version"], version);
    }
    let hist = newest("orders.latency");
    assert_eq!(hist.len(), 1, "{hist:?}");
    assert_eq!(hist[0]["kind"], "histogram");
    assert_eq!(hist[0]["unit"], "ms");
    assert_eq!(hist[0]["count"], 4);
    assert_eq!(hist[0]["sum"], 330.0);
    assert_eq!(hist[0]["min"], 5.0);
    assert_eq!(hist[0]["max"], 160.0);
    assert_eq!(hist[0]["detail"]["explicitBounds"], serde_json::json!([10.0, 100.0]));
    assert_eq!(hist[0]["detail"]["bucketCounts"], serde_json::json!([1, 1, 2]));
    let gauge = newest("queue.depth");
    assert_eq!(gauge.len(), 1, "{gauge:?}");
    assert_eq!(gauge[0]["kind"], "gauge");
    assert_eq!(gauge[0]["value_int"], 7);
    assert_eq!(gauge[0]["attributes"]["queue"], "orders");

    // Logs.
    let (status, body) = server.get(&format!("/api/v1/logs?service={service}"), tenant);
    assert_eq!(status, 200, "{body}");
    let logs = body["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 4, "{body}");
    for (i, trace_id) in sent.trace_ids.iter().enumerate() {
        let rec = logs.iter().find(|l| l["body"] == format!("loaded order {i}")).expect("log record");
        assert_eq!(rec["severity_number"], 9, "INFO");
        assert_eq!(rec["severity_text"], "INFO");
        assert_eq!(rec["attributes"]["order.index"], i as i64);
        assert_eq!(rec["trace_id"], trace_id.as_str());
        assert_eq!(rec["scope_name"], "e2e-logger");
        let (_, by_trace) = server.get(&format!("/api/v1/logs?trace_id={trace_id}"), tenant);
        assert_eq!(by_trace["logs"].as_array().unwrap().len(), 1);
    }
    let warn = logs.iter().find(|l| l["body"] == "disk almost full").expect("warn record");
    assert_eq!(warn["severity_number"], 13, "WARN");
    assert_eq!(warn["attributes"]["disk.free_bytes"], 1024);
    assert_eq!(warn["trace_id"], Value::Null);

    let (_, services) = server.get("/api/v1/services", tenant);
    let svc = services["services"].as_array().unwrap().iter().find(|s| s["name"] == service).expect("service listed");
    assert_eq!(svc["versions"], serde_json::json!([version]));
}

#[test]
fn rust_sdk_grpc_exporters_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // tonic's channel runs on this runtime; the SDK's processors block on exports from
    // their own threads, which is how applications use the SDK.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _guard = rt.enter();
    let endpoint = server.grpc_url();
    let exporters = Exporters {
        spans: SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&endpoint)
            .with_timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        metrics: MetricExporter::builder().with_tonic().with_endpoint(&endpoint).build().unwrap(),
        logs: LogExporter::builder().with_tonic().with_endpoint(&endpoint).build().unwrap(),
    };
    let sent = send(exporters, "checkout-grpc", "1.4.2");
    check(&server, &sent, "checkout-grpc", "1.4.2", None);

    // The same answers after a restart (WAL replay) and after the head is written to parts.
    server.stop();
    let server = Server::start(dir.path(), &["--flush-interval", "1s"]);
    check(&server, &sent, "checkout-grpc", "1.4.2", None);
    let parts = e2e::eventually(Duration::from_secs(20), || {
        let (_, stats) = server.get("/api/v1/stats", None);
        (stats["signals"]["traces"]["in_parts"] == 7).then_some(stats)
    });
    assert!(parts.is_some(), "head never flushed to parts");
    check(&server, &sent, "checkout-grpc", "1.4.2", None);
}

#[test]
fn rust_sdk_http_exporters_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let tenant = HashMap::from([("X-Scope-OrgID".to_string(), "team-http".to_string())]);
    let exporters = Exporters {
        spans: SpanExporter::builder()
            .with_http()
            .with_endpoint(server.http_url("/v1/traces"))
            .with_headers(tenant.clone())
            .build()
            .unwrap(),
        metrics: MetricExporter::builder()
            .with_http()
            .with_endpoint(server.http_url("/v1/metrics"))
            .with_headers(tenant.clone())
            .build()
            .unwrap(),
        logs: LogExporter::builder()
            .with_http()
            .with_endpoint(server.http_url("/v1/logs"))
            .with_headers(tenant.clone())
            .build()
            .unwrap(),
    };
    let sent = send(exporters, "checkout-http", "2.0.0");
    // Everything went to tenant team-http: the default tenant sees none of it.
    assert_eq!(server.items("traces", None), 0);
    assert_eq!(server.items("logs", None), 0);
    let (status, _) = server.get(&format!("/api/v1/traces/{}", sent.trace_ids[0]), None);
    assert_eq!(status, 404);
    check(&server, &sent, "checkout-http", "2.0.0", Some("team-http"));
}
