//! OTLP/HTTP and OTLP/gRPC answers to every kind of request: JSON, gzip, partial success,
//! and each bad input with the status and message the OTLP specification asks for. After
//! every refusal, what was accepted before is still there.

use std::io::Write;

use e2e::Server;
use e2e::otlp::{kv, spans_request, trace_id};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use reqwest::blocking::Client;
use serde_json::Value;

fn post(
    server: &Server,
    path: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = Client::new().post(server.http_url(path)).header("content-type", content_type).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().expect("body").to_vec())
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

const PB: &str = "application/x-protobuf";

#[test]
fn otlp_http_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-request-bytes", "200000", "--max-attributes-per-item", "8"]);

    // OTLP/JSON as the specification writes it: hex ids, enums as integers, lowerCamelCase,
    // 64-bit integers as strings.
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
      "scopeSpans":[{"scope":{"name":"manual"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
      "name":"GET /json","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000",
      "attributes":[{"key":"http.response.status_code","value":{"intValue":"500"}}],"status":{"code":2,"message":"oops"}}]}]}]}"#;
    let (status, headers, resp) = post(&server, "/v1/traces", "application/json", &[], body.into());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(json(&resp), serde_json::json!({}), "no partial success");
    let (status, trace) = server.get("/api/v1/traces/5b8efff798038103d269b633813fc60c", None);
    assert_eq!(status, 200, "{trace}");
    let span = &trace["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["spanId"], "eee19b7ec3c1b174");
    assert_eq!(span["status"]["message"], "oops");
    assert_eq!(span["endTimeUnixNano"], "1700000000100000000");

    // gzip-compressed protobuf.
    let req = spans_request("gzip-svc", 1, 10);
    let (status, headers, resp) =
        post(&server, "/v1/traces", PB, &[("content-encoding", "gzip")], gzip(&req.encode_to_vec()));
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], PB);
    assert!(resp.is_empty(), "an export response without partial success encodes to nothing");
    assert_eq!(server.items("traces", None), 11);

    // Partial success: one span with a 15-byte trace id and one with too many attributes are
    // rejected, the other three are stored.
    let mut req = spans_request("partial-svc", 2, 5);
    req.resource_spans[0].scope_spans[0].spans[1].trace_id.pop();
    req.resource_spans[0].scope_spans[0].spans[3].attributes = (0..9).map(|i| kv(&format!("k{i}"), "v")).collect();
    let (status, _, resp) = post(&server, "/v1/traces", "application/json", &[], serde_json::to_vec(&req).unwrap());
    assert_eq!(status, 200);
    let partial = &json(&resp)["partialSuccess"];
    assert_eq!(partial["rejectedSpans"], 2, "{partial}");
    let msg = partial["errorMessage"].as_str().unwrap();
    assert!(msg.contains("span 1: trace_id is 15 bytes; must be 16"), "{msg}");
    assert!(msg.contains("span 3: 9 attributes; the limit is 8"), "{msg}");
    assert_eq!(server.items("traces", None), 14);

    // Every span invalid: 400, not retryable, with the reason.
    let mut req = spans_request("bad-svc", 3, 2);
    for s in &mut req.resource_spans[0].scope_spans[0].spans {
        s.span_id.clear();
    }
    let (status, headers, resp) = post(&server, "/v1/traces", PB, &[], req.encode_to_vec());
    assert_eq!(status, 400);
    assert!(headers.get("retry-after").is_none());
    let st = e2e_status(&resp);
    assert_eq!(st.0, 3, "INVALID_ARGUMENT");
    assert!(st.1.contains("2 spans rejected") && st.1.contains("span_id is 0 bytes"), "{}", st.1);

    // Malformed bodies.
    let (status, _, resp) = post(&server, "/v1/traces", PB, &[], vec![0x0a, 0xff, 0xff, 0xff]);
    assert_eq!(status, 400);
    assert!(e2e_status(&resp).1.contains("malformed OTLP/protobuf body"), "{:?}", e2e_status(&resp));
    let (status, _, resp) = post(&server, "/v1/metrics", "application/json", &[], b"{\"resourceMetrics\": [".to_vec());
    assert_eq!(status, 400);
    let msg = json(&resp)["message"].as_str().unwrap().to_string();
    assert!(msg.contains("malformed OTLP/JSON body") && msg.contains("line 1 column"), "{msg}");
    let (status, _, resp) = post(&server, "/v1/logs", PB, &[("content-encoding", "gzip")], b"not gzip".to_vec());
    assert_eq!(status, 400);
    assert!(e2e_status(&resp).1.contains("malformed gzip body"));

    // Too large: by Content-Length, and a small gzip body that inflates past the limit.
    let (status, _, resp) = post(&server, "/v1/traces", PB, &[], vec![0; 300_000]);
    assert_eq!(status, 413);
    assert!(e2e_status(&resp).1.contains("the limit is 200000 bytes"));
    let bomb = gzip(&vec![0u8; 5_000_000]);
    assert!(bomb.len() < 200_000);
    let (status, _, _) = post(&server, "/v1/traces", PB, &[("content-encoding", "gzip")], bomb);
    assert_eq!(status, 413);

    // Wrong content type or encoding: 415. Unknown path: 404. Bad tenant id: 400.
    let (status, _, resp) = post(&server, "/v1/traces", "text/plain", &[], b"hello".to_vec());
    assert_eq!(status, 415);
    assert!(json(&resp)["message"].as_str().unwrap().contains("application/x-protobuf or application/json"));
    let (status, _, _) = post(&server, "/v1/traces", PB, &[("content-encoding", "br")], vec![]);
    assert_eq!(status, 415);
    let (status, _, _) = post(&server, "/v1/spans", PB, &[], vec![]);
    assert_eq!(status, 404);
    let (status, _, resp) =
        post(&server, "/v1/traces", PB, &[("x-scope-orgid", "../etc")], spans_request("x", 9, 1).encode_to_vec());
    assert_eq!(status, 400);
    assert!(e2e_status(&resp).1.contains("tenant id"));

    // Nothing accepted before was lost, nothing refused was stored.
    assert_eq!(server.items("traces", None), 14);
    let (_, metrics) = server.get("/metrics", None);
    let text = metrics.as_str().unwrap();
    assert!(text.contains("slo_gate_refused_items_total{signal=\"traces\"} 4"), "{text}");
    assert!(
        text.contains("slo_gate_export_requests_total{transport=\"http\",signal=\"traces\",outcome=\"too_large\"} 2"),
        "{text}"
    );
}

/// Decodes a `google.rpc.Status` protobuf body: (code, message).
fn e2e_status(body: &[u8]) -> (i32, String) {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return (v["code"].as_i64().unwrap_or(-1) as i32, v["message"].as_str().unwrap_or("").to_string());
    }
    let s = RpcStatus::decode(body).unwrap_or_else(|e| panic!("not a google.rpc.Status ({e}): {body:?}"));
    (s.code, s.message)
}

#[test]
fn otlp_grpc_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-request-bytes", "100000"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = TraceServiceClient::connect(server.grpc_url()).await.unwrap();
        let with_tenant = |req, tenant: &str| {
            let mut r = tonic::Request::new(req);
            r.metadata_mut().insert("x-scope-orgid", tenant.parse().unwrap());
            r
        };
        let resp = client.export(with_tenant(spans_request("grpc-svc", 1, 20), "team-a")).await.unwrap();
        assert_eq!(resp.into_inner().partial_success, None);

        let mut partial = spans_request("grpc-svc", 2, 4);
        partial.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![0; 16];
        let resp = client.export(with_tenant(partial, "team-a")).await.unwrap().into_inner();
        let ps = resp.partial_success.expect("partial success");
        assert_eq!(ps.rejected_spans, 1);
        assert!(ps.error_message.contains("trace_id is all zero"), "{}", ps.error_message);

        let mut invalid = spans_request("grpc-svc", 3, 1);
        invalid.resource_spans[0].scope_spans[0].spans[0].parent_span_id = vec![1, 2, 3];
        let err = client.export(invalid).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("parent_span_id is 3 bytes; must be 8"), "{}", err.message());

        let err = client.export(spans_request("grpc-svc", 4, 2000)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");

        let err = client.export(with_tenant(spans_request("grpc-svc", 5, 1), "no/slashes")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    });
    assert_eq!(server.items("traces", Some("team-a")), 23);
    assert_eq!(server.items("traces", None), 0, "team-a's spans are not the default tenant's");
    let (status, _) = server.get(&format!("/api/v1/traces/{}", hex::encode(trace_id(1))), Some("team-b"));
    assert_eq!(status, 404);
    let (status, body) = server.get(&format!("/api/v1/traces/{}", hex::encode(trace_id(1))), Some("team-a"));
    assert_eq!(status, 200);
    assert_eq!(body["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().unwrap().len(), 20);
}

/// When parts cannot be written (here: a file stands where the parts directory should be),
/// the head grows until the collector refuses new data with 429 and `Retry-After`; every
/// item it acknowledged stays queryable.
#[test]
fn overload_is_retryable_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-head-bytes", "20000", "--flush-interval", "1h"]);
    std::fs::write(dir.path().join("parts"), b"not a directory").unwrap();
    let mut accepted = 0;
    let mut refused = None;
    for batch in 0..200u64 {
        let (status, headers, body) =
            post(&server, "/v1/traces", PB, &[], spans_request("busy", batch + 1, 50).encode_to_vec());
        match status {
            200 => accepted += 50,
            429 => {
                refused = Some((headers, body));
                break;
            }
            other => panic!("unexpected status {other}: {}", String::from_utf8_lossy(&body)),
        }
    }
    let (headers, body) = refused.expect("the collector never pushed back");
    assert_eq!(headers["retry-after"], "1");
    let (code, msg) = e2e_status(&body);
    assert_eq!(code, 14, "UNAVAILABLE");
    assert!(msg.contains("overloaded") && msg.contains("retry later"), "{msg}");
    assert!(accepted > 0);
    assert_eq!(server.items("traces", None), accepted);
    let failing = e2e::eventually(std::time::Duration::from_secs(10), || {
        let (_, metrics) = server.get("/metrics", None);
        (!metrics.as_str().unwrap().contains("slo_gate_flush_failures_total 0\n")).then_some(())
    });
    assert!(failing.is_some(), "flushes should be failing");

    // Once parts can be written again, the head drains and new data is taken.
    std::fs::remove_file(dir.path().join("parts")).unwrap();
    let drained = e2e::eventually(std::time::Duration::from_secs(30), || {
        let (status, _, _) = post(&server, "/v1/traces", PB, &[], spans_request("busy", 10_000, 50).encode_to_vec());
        (status == 200).then_some(())
    });
    assert!(drained.is_some(), "collector did not recover after the disk came back");
    assert_eq!(server.items("traces", None), accepted + 50);
}
