//! Attribute values nested deeper than `max_attribute_depth` (default 16) are refused item by
//! item with OTLP partial success naming the item and the depth, wherever they arrive (span
//! attributes, resource attributes, a log body, a metric point), and the other items of the same
//! request are stored and read back with their attributes. A value nested exactly to the limit
//! is stored and reads back unchanged.

use e2e::Server;
use e2e::otlp::{kv, trace_id};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value as Any};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Value, json};

/// `levels` arrayValues, one inside the other, around the string "leaf".
fn nested(levels: usize) -> AnyValue {
    let mut value = AnyValue { value: Some(Any::StringValue("leaf".into())) };
    for _ in 0..levels {
        value = AnyValue { value: Some(Any::ArrayValue(ArrayValue { values: vec![value] })) };
    }
    value
}

/// The same nesting in OTLP/JSON, as the trace API answers it.
fn nested_json(levels: usize) -> Value {
    let mut value = json!({"stringValue": "leaf"});
    for _ in 0..levels {
        value = json!({"arrayValue": {"values": [value]}});
    }
    value
}

fn deep(key: &str, levels: usize) -> KeyValue {
    KeyValue { key: key.into(), value: Some(nested(levels)), key_strindex: 0 }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn resource(service: &str, mut extra: Vec<KeyValue>) -> Option<Resource> {
    extra.insert(0, kv("service.name", service));
    Some(Resource { attributes: extra, ..Default::default() })
}

fn span(trace: u64, n: u64, attributes: Vec<KeyValue>) -> Span {
    let start = now();
    Span {
        trace_id: trace_id(trace),
        span_id: n.to_be_bytes().to_vec(),
        name: format!("span {n}"),
        kind: 2,
        start_time_unix_nano: start + n,
        end_time_unix_nano: start + n + 1_000,
        attributes,
        ..Default::default()
    }
}

/// POSTs a protobuf export request over OTLP/HTTP; the status and the decoded answer.
fn export<Req: Message, Resp: Message + Default>(server: &Server, path: &str, request: &Req) -> (u16, Resp) {
    let resp = reqwest::blocking::Client::new()
        .post(server.http_url(path))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .expect("export");
    let status = resp.status().as_u16();
    let body = resp.bytes().expect("body");
    (status, Resp::decode(body).unwrap_or_default())
}

/// The spans of a trace as the API answers them, by name.
fn trace_spans(server: &Server, trace: u64) -> Vec<Value> {
    let (status, body) = server.get(&format!("/api/v1/traces/{}", hex::encode(trace_id(trace))), None);
    assert_eq!(status, 200, "{body}");
    let mut spans: Vec<Value> = body["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
        .flat_map(|ss| ss["spans"].as_array().unwrap().clone())
        .collect();
    spans.sort_by_key(|s| s["name"].to_string());
    spans
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    let found = span["attributes"].as_array().and_then(|a| a.iter().find(|kv| kv["key"] == key));
    &found.unwrap_or_else(|| panic!("span has no attribute {key}: {span}"))["value"]
}

// issue 11 #10: a span attribute nested 45 levels deep in `arrayValue` was acknowledged (200, no
// partial success) and then every attribute of that span read back empty ("recursion limit
// exceeded"): acknowledged and lost.
#[test]
fn values_nested_past_the_limit_are_refused_item_by_item() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    // A span attribute: span 1 is refused, spans 0 and 2 are stored with their attributes,
    // span 2's nested exactly to the limit.
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("deep-spans", vec![]),
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    span(1, 1, vec![kv("http.route", "/a"), kv("team", "x")]),
                    span(1, 2, vec![kv("http.route", "/b"), deep("deep", 45)]),
                    span(1, 3, vec![kv("http.route", "/c"), deep("at_limit", 16)]),
                ],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    let (status, answer): (u16, ExportTraceServiceResponse) = export(&server, "/v1/traces", &request);
    assert_eq!(status, 200);
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 1, "{}", partial.error_message);
    assert!(
        partial.error_message.contains(
            "resource 0, scope 0, span 1: attribute \"deep\" nests 45 levels of arrayValue/kvlistValue; the limit is 16"
        ),
        "{}",
        partial.error_message
    );
    let spans = trace_spans(&server, 1);
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["span 1", "span 3"]);
    assert_eq!(attribute(&spans[0], "http.route"), &json!({"stringValue": "/a"}));
    assert_eq!(attribute(&spans[0], "team"), &json!({"stringValue": "x"}));
    assert_eq!(attribute(&spans[1], "http.route"), &json!({"stringValue": "/c"}));
    assert_eq!(attribute(&spans[1], "at_limit"), &nested_json(16));

    // A resource attribute: every span of that resource is refused with one reason; the other
    // resource's span is stored.
    let request = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource("deep-resource", vec![deep("host.tags", 45)]),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(2, 1, vec![kv("k", "v")]), span(2, 2, vec![kv("k", "v")])],
                    ..Default::default()
                }],
                schema_url: String::new(),
            },
            ResourceSpans {
                resource: resource("plain-resource", vec![kv("host.name", "h1")]),
                scope_spans: vec![ScopeSpans { spans: vec![span(2, 3, vec![kv("k", "v3")])], ..Default::default() }],
                schema_url: String::new(),
            },
        ],
    };
    let (status, answer): (u16, ExportTraceServiceResponse) = export(&server, "/v1/traces", &request);
    assert_eq!(status, 200);
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 2, "{}", partial.error_message);
    assert_eq!(
        partial.error_message,
        "2 spans rejected: resource 0: resource attribute \"host.tags\" nests 45 levels of arrayValue/kvlistValue; \
         the limit is 16"
    );
    let spans = trace_spans(&server, 2);
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(attribute(&spans[0], "k"), &json!({"stringValue": "v3"}));

    // A log body.
    let record = |body: AnyValue, n: &str| LogRecord {
        time_unix_nano: now(),
        body: Some(body),
        attributes: vec![kv("n", n)],
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("deep-logs", vec![]),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record(nested(45), "first"),
                    record(AnyValue { value: Some(Any::StringValue("hello".into())) }, "second"),
                ],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    let (status, answer): (u16, ExportLogsServiceResponse) = export(&server, "/v1/logs", &request);
    assert_eq!(status, 200);
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_log_records, 1, "{}", partial.error_message);
    assert!(
        partial.error_message.contains(
            "resource 0, scope 0, log record 0: body nests 45 levels of arrayValue/kvlistValue; the limit is 16"
        ),
        "{}",
        partial.error_message
    );
    let (status, logs) = server.get("/api/v1/logs?service=deep-logs", None);
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs["logs"].as_array().unwrap().len(), 1, "{logs}");
    assert_eq!(logs["logs"][0]["body"], "hello");
    assert_eq!(logs["logs"][0]["attributes"], json!({"n": "second"}));

    // A metric point.
    let point = |attributes: Vec<KeyValue>, v: f64| NumberDataPoint {
        attributes,
        time_unix_nano: now(),
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("deep-metrics", vec![]),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![point(vec![deep("shape", 45)], 1.0), point(vec![kv("queue", "b")], 2.0)],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    let (status, answer): (u16, ExportMetricsServiceResponse) = export(&server, "/v1/metrics", &request);
    assert_eq!(status, 200);
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 1, "{}", partial.error_message);
    assert!(
        partial.error_message.contains(
            "resource 0, scope 0, metric \"queue.depth\", point 0: attribute \"shape\" nests 45 levels of \
             arrayValue/kvlistValue; the limit is 16"
        ),
        "{}",
        partial.error_message
    );
    let (status, points) = server.get("/api/v1/metrics/points?service=deep-metrics", None);
    assert_eq!(status, 200, "{points}");
    assert_eq!(points["points"].as_array().unwrap().len(), 1, "{points}");
    assert_eq!(points["points"][0]["attributes"], json!({"queue": "b"}));
    assert_eq!(points["points"][0]["value"], 2.0);
}
