//! Tempo's own protobuf messages, written by hand with `prost` derive from the field numbers
//! published in Grafana Tempo's `pkg/tempopb/tempo.proto` (tempopb, Tempo 2.x, as read at
//! grafana/tempo@ad33aa8f). No Tempo source is copied; only the wire numbers are followed.
//!
//! `Trace` is byte-compatible with OTLP `TracesData` (`resource_spans = 1`, vendored OTLP
//! numbers), so `TraceByIDResponse.trace` is `opentelemetry-proto`'s `TracesData` itself, and
//! `KeyValue` is OTLP's. Only the fields slo-gate fills or reads are declared; prost skips the
//! others on decode.
//!
//! The same types serve the JSON answers: `serde` writes Tempo's proto3 JSON (lowerCamel
//! names as in the `.proto`, 64-bit integers as strings, `spanSet` beside `spanSets`).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use serde::{Deserialize, Serialize};

/// proto3 JSON writes `uint64`/`int64` as strings; Grafana reads them either way.
mod u64_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Num(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Num(n) => Ok(n),
            Either::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `tempopb.TraceByIDResponse` (`/api/v2/traces/<id>`).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceByIdResponse {
    /// Always set: Grafana reads `trace.resourceSpans` without a nil check.
    #[prost(message, optional, tag = "1")]
    pub trace: Option<TracesData>,
    #[prost(message, optional, tag = "2")]
    pub metrics: Option<TraceByIdMetrics>,
    /// `PartialStatus`: 0 = COMPLETE, 1 = PARTIAL.
    #[prost(int32, tag = "3")]
    #[serde(skip_serializing_if = "is_zero_i32", default)]
    pub status: i32,
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub message: String,
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

/// `tempopb.TraceByIDMetrics`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceByIdMetrics {
    #[prost(uint64, tag = "1")]
    #[serde(with = "u64_string")]
    pub inspected_bytes: u64,
}

/// `tempopb.SearchRequest`: what the streaming `Search` call carries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SearchRequest {
    /// Legacy tag search (`key=value` pairs).
    #[prost(btree_map = "string, string", tag = "1")]
    pub tags: BTreeMap<String, String>,
    #[prost(uint32, tag = "2")]
    pub min_duration_ms: u32,
    #[prost(uint32, tag = "3")]
    pub max_duration_ms: u32,
    #[prost(uint32, tag = "4")]
    pub limit: u32,
    /// Unix seconds.
    #[prost(uint32, tag = "5")]
    pub start: u32,
    /// Unix seconds.
    #[prost(uint32, tag = "6")]
    pub end: u32,
    /// TraceQL.
    #[prost(string, tag = "8")]
    pub query: String,
    #[prost(uint32, tag = "9")]
    pub spans_per_span_set: u32,
}

/// `tempopb.SearchResponse`, also the JSON of `/api/search`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResponse {
    #[prost(message, repeated, tag = "1")]
    pub traces: Vec<TraceSearchMetadata>,
    #[prost(message, optional, tag = "2")]
    pub metrics: Option<SearchMetrics>,
}

/// `tempopb.TraceSearchMetadata`: one trace of a search answer.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSearchMetadata {
    #[prost(string, tag = "1")]
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[prost(string, tag = "2")]
    #[serde(default)]
    pub root_service_name: String,
    #[prost(string, tag = "3")]
    #[serde(default)]
    pub root_trace_name: String,
    #[prost(uint64, tag = "4")]
    #[serde(with = "u64_string")]
    pub start_time_unix_nano: u64,
    #[prost(uint32, tag = "5")]
    #[serde(default)]
    pub duration_ms: u32,
    /// Deprecated in Tempo but still sent: the first span set.
    #[prost(message, optional, tag = "6")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_set: Option<SpanSet>,
    #[prost(message, repeated, tag = "7")]
    #[serde(default)]
    pub span_sets: Vec<SpanSet>,
    #[prost(btree_map = "string, message", tag = "8")]
    #[serde(default)]
    pub service_stats: BTreeMap<String, ServiceStats>,
}

/// `tempopb.ServiceStats`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStats {
    #[prost(uint32, tag = "1")]
    pub span_count: u32,
    #[prost(uint32, tag = "2")]
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub error_count: u32,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// `tempopb.SpanSet`: the spans of one trace a query selected (at most `spss` of them).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanSet {
    #[prost(message, repeated, tag = "1")]
    pub spans: Vec<Span>,
    /// How many spans matched (may exceed `spans.len()`).
    #[prost(uint32, tag = "2")]
    pub matched: u32,
}

/// `tempopb.Span`: one matched span.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    #[prost(string, tag = "1")]
    #[serde(rename = "spanID")]
    pub span_id: String,
    #[prost(string, tag = "2")]
    #[serde(default)]
    pub name: String,
    #[prost(uint64, tag = "3")]
    #[serde(with = "u64_string")]
    pub start_time_unix_nano: u64,
    #[prost(uint64, tag = "4")]
    #[serde(with = "u64_string")]
    pub duration_nanos: u64,
    /// OTLP `KeyValue`s (OTLP/JSON form in JSON answers).
    #[prost(message, repeated, tag = "5")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<KeyValue>,
}

/// `tempopb.SearchMetrics`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchMetrics {
    #[prost(uint32, tag = "1")]
    pub inspected_traces: u32,
    #[prost(uint64, tag = "2")]
    #[serde(with = "u64_string")]
    pub inspected_bytes: u64,
    /// Parts (Tempo: blocks) the search read.
    #[prost(uint32, tag = "3")]
    pub total_blocks: u32,
    #[prost(uint32, tag = "4")]
    pub completed_jobs: u32,
    #[prost(uint32, tag = "5")]
    pub total_jobs: u32,
    #[prost(uint64, tag = "6")]
    #[serde(with = "u64_string")]
    pub total_block_bytes: u64,
    #[prost(uint64, tag = "7")]
    #[serde(with = "u64_string")]
    pub inspected_spans: u64,
}

/// `tempopb.MetadataMetrics` of the tag answers (only `inspectedBytes` filled).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataMetrics {
    #[prost(uint64, tag = "1")]
    #[serde(with = "u64_string")]
    pub inspected_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    use prost::Message;

    fn sample_traces() -> TracesData {
        TracesData {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![opentelemetry_proto::tonic::trace::v1::Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "GET".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn trace_by_id_response_round_trips_and_wraps_traces_data_in_field_1() {
        let traces = sample_traces();
        let response = TraceByIdResponse {
            trace: Some(traces.clone()),
            metrics: Some(TraceByIdMetrics { inspected_bytes: 7 }),
            status: 0,
            message: String::new(),
        };
        let bytes = response.encode_to_vec();
        assert_eq!(TraceByIdResponse::decode(bytes.as_slice()).unwrap(), response);
        // Field 1, length-delimited, holding exactly the TracesData bytes (tempopb.Trace).
        let inner = traces.encode_to_vec();
        assert_eq!(bytes[0], 0x0a);
        assert_eq!(&bytes[2..2 + inner.len()], inner.as_slice());
        // An empty trace is still a present field 1 (Grafana dereferences it).
        let empty = TraceByIdResponse { trace: Some(TracesData::default()), ..Default::default() }.encode_to_vec();
        assert_eq!(empty, vec![0x0a, 0x00]);
    }

    #[test]
    fn search_messages_round_trip_with_tempo_field_numbers() {
        let request = SearchRequest {
            tags: [("service.name".to_string(), "a".to_string())].into(),
            min_duration_ms: 5,
            max_duration_ms: 9,
            limit: 20,
            start: 1_700_000_000,
            end: 1_700_000_900,
            query: "{}".into(),
            spans_per_span_set: 3,
        };
        let bytes = request.encode_to_vec();
        assert_eq!(SearchRequest::decode(bytes.as_slice()).unwrap(), request);
        // Query is field 8 (tag byte 8<<3|2 = 0x42), SpansPerSpanSet field 9 (0x48).
        assert!(bytes.windows(3).any(|w| w == [0x42, 2, b'{']), "{bytes:?}");
        assert!(bytes.windows(2).any(|w| w == [0x48, 3]), "{bytes:?}");

        let set = SpanSet {
            spans: vec![Span {
                span_id: "0102030405060708".into(),
                name: "GET".into(),
                start_time_unix_nano: 1_684_778_327_699_392_724,
                duration_nanos: 446_979_497,
                attributes: vec![],
            }],
            matched: 1,
        };
        let response = SearchResponse {
            traces: vec![TraceSearchMetadata {
                trace_id: "2f3e0cee77ae5dc9c17ade3689eb2e54".into(),
                root_service_name: "shop".into(),
                root_trace_name: "update".into(),
                start_time_unix_nano: 1_684_778_327_699_392_724,
                duration_ms: 557,
                span_set: Some(set.clone()),
                span_sets: vec![set],
                service_stats: [("shop".to_string(), ServiceStats { span_count: 3, error_count: 1 })].into(),
            }],
            metrics: Some(SearchMetrics { inspected_traces: 3, inspected_bytes: 10, ..Default::default() }),
        };
        let bytes = response.encode_to_vec();
        assert_eq!(SearchResponse::decode(bytes.as_slice()).unwrap(), response);

        // The JSON Grafana reads: Tempo's names, 64-bit integers as strings.
        let json = serde_json::to_value(&response).unwrap();
        let t = &json["traces"][0];
        assert_eq!(t["traceID"], "2f3e0cee77ae5dc9c17ade3689eb2e54");
        assert_eq!(t["startTimeUnixNano"], "1684778327699392724");
        assert_eq!(t["durationMs"], 557);
        assert_eq!(t["spanSets"][0]["spans"][0]["spanID"], "0102030405060708");
        assert_eq!(t["spanSets"][0]["spans"][0]["durationNanos"], "446979497");
        assert_eq!(t["spanSet"]["matched"], 1);
        assert_eq!(t["serviceStats"]["shop"]["errorCount"], 1);
        assert_eq!(json["metrics"]["inspectedBytes"], "10");
        let back: SearchResponse = serde_json::from_value(json).unwrap();
        assert_eq!(back, response);
    }
}
