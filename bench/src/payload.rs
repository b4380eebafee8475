//! The one OTLP trace export that the load generator replays.
//!
//! The request is built once, from a fixed seed, and encoded once: every run
//! with the same `--spans-per-request` and `--seed` sends byte-identical
//! bodies, so two servers (or two commits of one server) are measured on the
//! same input. The content imitates an HTTP service's server spans, with the
//! resource and span attributes the OpenTelemetry semantic conventions name,
//! so a collector does the work it would do on real traffic (attribute
//! decoding, route and status extraction) rather than on empty spans.
//!
//! Every replay carries the same trace and span ids. That is fine for
//! ingestion throughput; a collector that deduplicates spans would be
//! measured favourably, so note it when reading storage numbers.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use prost::Message;

/// Routes the fake service serves: (method, route template, path prefix).
const ROUTES: [(&str, &str, &str); 6] = [
    ("GET", "/api/orders/{id}", "/api/orders/"),
    ("GET", "/api/products/{id}", "/api/products/"),
    ("POST", "/api/orders", "/api/orders"),
    ("GET", "/api/cart", "/api/cart"),
    ("PUT", "/api/cart/items/{id}", "/api/cart/items/"),
    ("GET", "/healthz", "/healthz"),
];

/// A xorshift64* generator: deterministic, dependency-free, good enough to
/// make ids and attribute values look varied. Not for anything secret.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // The state must never be zero, or the sequence is all zeros.
        Self((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn bytes<const N: usize>(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(N);
        while out.len() < N {
            let word = self.next_u64().to_le_bytes();
            let take = (N - out.len()).min(8);
            out.extend_from_slice(&word[..take]);
        }
        out
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

/// Builds the export request: one resource, one scope, `spans` server spans
/// that ended within the second before `now_unix_nano`.
pub fn build_request(spans: usize, seed: u64, now_unix_nano: u64) -> ExportTraceServiceRequest {
    let mut rng = XorShift::new(seed);
    let resource = Resource {
        attributes: vec![
            kv_str("service.name", "checkout"),
            kv_str("service.version", "1.4.2"),
            kv_str("deployment.environment.name", "bench"),
            kv_str("host.name", "bench-host-01"),
        ],
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "slo-gate-load".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    };
    let spans = (0..spans).map(|_| server_span(&mut rng, now_unix_nano)).collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans { scope: Some(scope), spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn server_span(rng: &mut XorShift, now_unix_nano: u64) -> Span {
    let (method, route, path_prefix) = ROUTES[rng.below(ROUTES.len() as u64) as usize];
    let path =
        if route.ends_with("{id}") { format!("{path_prefix}{}", rng.below(100_000)) } else { path_prefix.to_owned() };
    // 95% 200, 3% 404, 2% 500: enough errors for an SLI to be non-trivial.
    let status_code: i64 = match rng.below(100) {
        0..=94 => 200,
        95..=97 => 404,
        _ => 500,
    };
    // Server spans: 4xx is the client's fault and stays Unset (semconv).
    let status = if status_code >= 500 {
        Status { code: status::StatusCode::Error as i32, message: "internal error".to_owned() }
    } else {
        Status::default()
    };
    // Latencies between ~1 ms and ~260 ms, skewed towards the fast end.
    let duration_ns = (1u64 << rng.below(9)) * 1_000_000 + rng.below(1_000_000);
    let end = now_unix_nano.saturating_sub(rng.below(1_000_000_000));
    let start = end.saturating_sub(duration_ns);
    Span {
        trace_id: rng.bytes::<16>(),
        span_id: rng.bytes::<8>(),
        flags: 1, // sampled
        name: format!("{method} {route}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: vec![
            kv_str("http.route", route),
            kv_str("http.request.method", method),
            kv("http.response.status_code", any_value::Value::IntValue(status_code)),
            kv_str("url.path", path),
            kv_str("server.address", "checkout.internal"),
            kv_str("user.id", format!("user-{}", rng.below(5_000))),
        ],
        status: Some(status),
        ..Default::default()
    }
}

/// Nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_unix_nano() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The request encoded to protobuf bytes, ready to be sent as is.
pub fn encode(request: &ExportTraceServiceRequest) -> bytes::Bytes {
    bytes::Bytes::from(request.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000_000_000;

    #[test]
    fn same_seed_same_bytes() {
        assert_eq!(encode(&build_request(64, 7, NOW)), encode(&build_request(64, 7, NOW)));
        assert_ne!(encode(&build_request(64, 7, NOW)), encode(&build_request(64, 8, NOW)));
    }

    #[test]
    fn spans_are_well_formed() {
        let request = build_request(512, 1, NOW);
        let decoded = ExportTraceServiceRequest::decode(encode(&request)).expect("round trip");
        assert_eq!(decoded, request);
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 512);
        for s in spans {
            assert_eq!(s.trace_id.len(), 16);
            assert_eq!(s.span_id.len(), 8);
            assert_eq!(s.kind, span::SpanKind::Server as i32);
            assert!(s.start_time_unix_nano < s.end_time_unix_nano);
            assert!(s.end_time_unix_nano <= NOW);
            assert_eq!(s.attributes.len(), 6);
        }
        let errors = spans
            .iter()
            .filter(|s| s.status.as_ref().is_some_and(|st| st.code == status::StatusCode::Error as i32))
            .count();
        assert!(errors > 0 && errors < 512 / 10, "errors: {errors}");
    }

    #[test]
    fn zero_seed_is_not_degenerate() {
        let mut rng = XorShift::new(0x9E37_79B9_7F4A_7C15);
        assert_ne!(rng.next_u64(), 0);
    }
}
