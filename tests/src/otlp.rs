//! Building OTLP requests for tests with the protobuf types of `opentelemetry-proto`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        key_strindex: 0,
    }
}

pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(Value::IntValue(value)) }), key_strindex: 0 }
}

/// A 16-byte trace id whose first 8 bytes are `n` (never all zero).
pub fn trace_id(n: u64) -> Vec<u8> {
    let mut id = n.to_be_bytes().to_vec();
    id.extend_from_slice(&[0xab; 8]);
    id
}

/// Batch `batch` of the load and crash tests: one trace (`trace_id(batch)`) of `count` SERVER
/// spans of `service`, span ids 1.., 1 µs apart from `start_unix_nano`, each 500 ns long.
pub fn batch_request(service: &str, batch: u64, count: u64, start_unix_nano: u64) -> ExportTraceServiceRequest {
    let spans = (0..count)
        .map(|i| Span {
            trace_id: trace_id(batch),
            span_id: (i + 1).to_be_bytes().to_vec(),
            name: format!("{service} #{i}"),
            kind: 2,
            start_time_unix_nano: start_unix_nano + i * 1_000,
            end_time_unix_nano: start_unix_nano + i * 1_000 + 500,
            ..Default::default()
        })
        .collect();
    service_request(service, spans)
}

/// One resource of service `service` holding `spans`.
fn service_request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            schema_url: String::new(),
        }],
    }
}

/// `count` SERVER spans of trace `trace`, service `service`.
pub fn spans_request(service: &str, trace: u64, count: usize) -> ExportTraceServiceRequest {
    // Now, so retention (14 days by default) keeps what the tests send.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let spans = (0..count)
        .map(|i| Span {
            trace_id: trace_id(trace),
            span_id: ((i as u64) + 1).to_be_bytes().to_vec(),
            name: format!("GET /item/{{id}} #{i}"),
            kind: 2,
            start_time_unix_nano: now + i as u64 * 1000,
            end_time_unix_nano: now + i as u64 * 1000 + 500,
            attributes: vec![kv("http.route", "/item/{id}"), kv_int("http.response.status_code", 200)],
            ..Default::default()
        })
        .collect();
    service_request(service, spans)
}
