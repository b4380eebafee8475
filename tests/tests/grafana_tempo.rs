//! Grafana's built-in Tempo datasource against the real `slo-gate serve`: every request the
//! datasource sends (health check, build info, trace by id v2 then v1 with Grafana's `Accept`,
//! search, tags and tag values v1/v2, streaming search over gRPC/h2c) replayed against spans
//! with real trace structure, the protobuf trace bodies decoded by the Python
//! `opentelemetry-proto` types (`tests/python/tempo_decode.py`), a table of TraceQL queries
//! whose expected traces are written out from the data below, and the bad inputs with their
//! statuses and messages. The table runs twice: on the head, then on Parquet parts after a
//! restart with a short flush interval.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use e2e::otlp::{kv, kv_int};
use e2e::{Server, eventually, url_encode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::Value;

const MS: u64 = 1_000_000;

/// One span of the fixture: service, name, kind, parent (index in the trace), start offset
/// and duration in ms, error status, span attributes.
struct S {
    service: &'static str,
    name: &'static str,
    kind: i32,
    parent: Option<usize>,
    at: u64,
    ms: u64,
    error: bool,
    attrs: Vec<KeyValue>,
}

fn s(service: &'static str, name: &'static str, kind: i32, parent: Option<usize>, at: u64, ms: u64) -> S {
    S { service, name, kind, parent, at, ms, error: false, attrs: Vec::new() }
}

impl S {
    fn error(mut self) -> S {
        self.error = true;
        self
    }
    fn attr(mut self, kv: KeyValue) -> S {
        self.attrs.push(kv);
        self
    }
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const INTERNAL: i32 = 1;

/// Trace ids: `n` in the last byte, except trace 6 whose first 8 bytes are zero (a 64-bit id).
fn tid(n: u8) -> [u8; 16] {
    let mut id = [0x5a; 16];
    id[15] = n;
    if n == 6 {
        id[..8].fill(0);
    }
    id
}

fn hex_id(n: u8) -> String {
    hex::encode(tid(n))
}

/// The fixture: six traces, trace `n` starting `(10 - n)` minutes ago (trace 6 the newest).
fn traces() -> Vec<(u8, Vec<S>)> {
    vec![
        (
            1,
            vec![
                s("frontend", "GET /cart", SERVER, None, 0, 800).attr(kv("http.route", "/cart")),
                s("checkout", "price", SERVER, Some(0), 50, 600).attr(kv("http.route", "/price")),
                s("db", "SELECT", CLIENT, Some(1), 100, 50),
            ],
        ),
        (
            2,
            vec![
                s("frontend", "GET /home", SERVER, None, 0, 100).attr(kv("http.route", "/home")),
                s("checkout", "price", SERVER, Some(0), 10, 20).error().attr(kv_int("http.response.status_code", 500)),
            ],
        ),
        (
            3,
            vec![
                s("checkout", "batch", INTERNAL, None, 0, 2000),
                s("db", "SELECT", CLIENT, Some(0), 100, 1500).error(),
            ],
        ),
        (
            4,
            vec![
                s("frontend", "GET /cart", SERVER, None, 0, 300).attr(kv("http.route", "/cart")),
                s("checkout", "price", SERVER, Some(0), 10, 250),
                s("checkout", "tax", INTERNAL, Some(1), 20, 10),
            ],
        ),
        (5, vec![s("db", "vacuum", INTERNAL, None, 0, 5)]),
        (6, vec![s("jaeger-app", "legacy", SERVER, None, 0, 40)]),
    ]
}

/// The resource of a service (`db` carries `region=eu`).
fn resource(service: &str) -> Resource {
    let mut attributes = vec![kv("service.name", service)];
    if service == "db" {
        attributes.push(kv("region", "eu"));
    }
    Resource { attributes, ..Default::default() }
}

/// One request per trace, one `ResourceSpans` per service; returns the base time (ns).
fn send_fixture(server: &Server, tenant: &str) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let base = now - 10 * 60_000 * MS;
    for (n, spans) in traces() {
        let start = base + u64::from(n) * 60_000 * MS;
        let mut by_service: Vec<(&str, Vec<Span>)> = Vec::new();
        for (i, sp) in spans.iter().enumerate() {
            let span = Span {
                trace_id: tid(n).to_vec(),
                span_id: [n, i as u8 + 1, 0, 0, 0, 0, 0, 1].to_vec(),
                parent_span_id: sp.parent.map(|p| [n, p as u8 + 1, 0, 0, 0, 0, 0, 1].to_vec()).unwrap_or_default(),
                name: sp.name.into(),
                kind: sp.kind,
                start_time_unix_nano: start + sp.at * MS,
                end_time_unix_nano: start + (sp.at + sp.ms) * MS,
                attributes: sp.attrs.clone(),
                status: sp.error.then(|| Status { code: 2, message: "boom".into() }),
                ..Default::default()
            };
            match by_service.iter_mut().find(|(svc, _)| *svc == sp.service) {
                Some((_, list)) => list.push(span),
                None => by_service.push((sp.service, vec![span])),
            }
        }
        let request = ExportTraceServiceRequest {
            resource_spans: by_service
                .into_iter()
                .map(|(service, spans)| ResourceSpans {
                    resource: Some(resource(service)),
                    scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                    schema_url: String::new(),
                })
                .collect(),
        };
        let resp = reqwest::blocking::Client::new()
            .post(server.http_url("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .header("X-Scope-OrgID", tenant)
            .body(request.encode_to_vec())
            .send()
            .expect("export");
        assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text());
    }
    base
}

/// GET with Grafana's headers; status, content type, body bytes.
fn get(server: &Server, path: &str, tenant: Option<&str>, accept: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut req = reqwest::blocking::Client::new().get(server.api_url(path)).header("User-Agent", "Grafana/12.1.0");
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let resp = req.send().expect("request");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (status, ct, resp.bytes().expect("body").to_vec())
}

fn get_json(server: &Server, path: &str, tenant: Option<&str>) -> (u16, Value) {
    let (status, _, body) = get(server, path, tenant, Some("application/json"));
    let text = String::from_utf8_lossy(&body).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Decodes a trace body with the Python protobuf types (`v1` or `v2`).
fn decode_with_python(kind: &str, body: &[u8]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.bin");
    std::fs::write(&file, body).unwrap();
    let out = Command::new(e2e::python::interpreter("opentelemetry.proto.trace.v1.trace_pb2"))
        .arg(e2e::manifest_dir().join("python/tempo_decode.py"))
        .arg(kind)
        .arg(&file)
        .output()
        .expect("run tempo_decode.py");
    assert!(out.status.success(), "{}", e2e::output_text(&out));
    serde_json::from_slice(&out.stdout).expect("decoder output")
}

fn search_ids(server: &Server, query: &str, tenant: Option<&str>) -> Vec<String> {
    let (status, body) = get_json(server, query, tenant);
    assert_eq!(status, 200, "{query}: {body}");
    body["traces"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {body}"))
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_string())
        .collect()
}

/// The TraceQL table: query → the traces it selects, read off the fixture by hand.
fn query_table() -> Vec<(String, Vec<u8>)> {
    let q = |text: &str| format!("/api/search?q={}&limit=50&spss=10", url_encode(text));
    vec![
        (q(r#"{ resource.service.name = "checkout" }"#), vec![1, 2, 3, 4]),
        // price 600ms in trace 1, batch 2s in trace 3; trace 4's checkout spans are shorter.
        (q(r#"{ resource.service.name = "checkout" && duration > 500ms }"#), vec![1, 3]),
        (q("{ status = error }"), vec![2, 3]),
        (q(r#"{ span.http.route = "/cart" }"#), vec![1, 4]),
        (q(r#"{ name = "GET /cart" } > { name = "price" }"#), vec![1, 4]),
        (q(r#"{ resource.service.name = "frontend" } >> { resource.service.name = "db" }"#), vec![1]),
        (q(r#"{ resource.service.name = "frontend" } > { resource.service.name = "db" }"#), vec![]),
        (q("{ kind = server } && { status = error }"), vec![2]),
        (q(r#"{ resource.service.name = "checkout" } | count() > 1"#), vec![4]),
        (q(r#"{ rootServiceName = "frontend" }"#), vec![1, 2, 4]),
        (q("{ traceDuration > 1s }"), vec![3]),
        (q("{ span.http.response.status_code >= 500 }"), vec![2]),
        (q(r#"{ resource.region = "eu" }"#), vec![1, 3, 5]),
        (q(r#"{ name =~ "GET.*" }"#), vec![1, 2, 4]),
        (q(r#"{ rootName = "batch" }"#), vec![3]),
        (q(r#"{ .region = "eu" && duration > 1s } || { status = error }"#), vec![2, 3]),
        (q("{ kind = client } | max(duration) > 1s"), vec![3]),
        (q("{ kind = internal } | { duration < 8ms }"), vec![5]),
        (format!("/api/search?tags={}&minDuration=1s&limit=50", url_encode("service.name=db")), vec![3]),
        (format!("/api/search?tags={}&limit=50", url_encode("http.route=/cart")), vec![1, 4]),
        (format!("/api/search?tags={}&maxDuration=30ms&limit=50", url_encode("name=price")), vec![2]),
        // Most recent first, cut at the limit.
        (format!("/api/search?q={}&limit=2", url_encode("{}")), vec![6, 5]),
    ]
}

fn check_table(server: &Server, tenant: &str, base_ns: u64) {
    let start = base_ns / 1_000_000_000 - 60;
    let end = start + 3600;
    for (path, expect) in query_table() {
        let mut want: Vec<String> = expect.iter().map(|n| hex_id(*n)).collect();
        // Answers are most recent first: trace n starts n minutes after the base.
        want.sort_by_key(|id| std::cmp::Reverse(id.clone()));
        want.sort_by_key(|id| std::cmp::Reverse(traces_start_order(id)));
        let got = search_ids(server, &path, Some(tenant));
        assert_eq!(got, want, "{path}");
        // The same with Grafana's time range.
        let ranged = search_ids(server, &format!("{path}&start={start}&end={end}"), Some(tenant));
        assert_eq!(ranged, want, "{path} with start/end");
    }
    // A range that misses everything.
    let miss =
        search_ids(server, &format!("/api/search?q=%7B%7D&start={}&end={}", start - 7200, start - 3600), Some(tenant));
    assert!(miss.is_empty(), "{miss:?}");
}

fn traces_start_order(id: &str) -> u8 {
    (1..=6).find(|n| hex_id(*n) == id).unwrap_or(0)
}

fn check_search_shape(server: &Server, tenant: &str, base_ns: u64) {
    let path = format!("/api/search?q={}&limit=20&spss=1", url_encode(r#"{ resource.service.name = "checkout" }"#));
    let (status, body) = get_json(server, &path, Some(tenant));
    assert_eq!(status, 200, "{body}");
    let t4 = body["traces"].as_array().unwrap().iter().find(|t| t["traceID"] == hex_id(4)).expect("trace 4").clone();
    assert_eq!(t4["rootServiceName"], "frontend");
    assert_eq!(t4["rootTraceName"], "GET /cart");
    let start = base_ns + 4 * 60_000 * MS;
    assert_eq!(t4["startTimeUnixNano"], start.to_string(), "a string, as proto3 JSON writes uint64");
    assert_eq!(t4["durationMs"], 300);
    assert_eq!(t4["serviceStats"]["frontend"]["spanCount"], 1);
    assert_eq!(t4["serviceStats"]["checkout"]["spanCount"], 2);
    let set = &t4["spanSets"][0];
    assert_eq!(set["matched"], 2, "{set}");
    assert_eq!(set["spans"].as_array().unwrap().len(), 1, "spss=1 keeps one span");
    let span = &set["spans"][0];
    assert_eq!(span["spanID"], hex::encode([4u8, 2, 0, 0, 0, 0, 0, 1]));
    assert_eq!(span["name"], "price");
    assert_eq!(span["startTimeUnixNano"], (start + 10 * MS).to_string());
    assert_eq!(span["durationNanos"], (250 * MS).to_string());
    assert_eq!(span["attributes"][0], serde_json::json!({"key": "service.name", "value": {"stringValue": "checkout"}}));
    assert_eq!(t4["spanSet"], *set, "the deprecated spanSet repeats the first span set");
    let t2 = body["traces"].as_array().unwrap().iter().find(|t| t["traceID"] == hex_id(2)).unwrap();
    assert_eq!(t2["serviceStats"]["checkout"]["errorCount"], 1);
    let metrics = &body["metrics"];
    assert!(metrics["inspectedBytes"].as_str().is_some_and(|b| b.parse::<u64>().unwrap() > 0), "{metrics}");
    assert!(metrics["inspectedTraces"].as_u64().is_some(), "{metrics}");
}

fn check_trace_by_id(server: &Server, tenant: &str) {
    // T4: v2 with Grafana's Accept; decoded by the Python protobuf types.
    let (status, ct, body) =
        get(server, &format!("/api/v2/traces/{}", hex_id(1)), Some(tenant), Some("application/protobuf"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(ct, "application/protobuf");
    let v2 = decode_with_python("v2", &body);
    assert_eq!(v2["has_trace"], true);
    assert_eq!(v2["status"], 0);
    let spans = v2["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3, "{v2}");
    let names: BTreeSet<(&str, &str, &str)> = spans
        .iter()
        .map(|s| (s["service"].as_str().unwrap(), s["name"].as_str().unwrap(), s["parent_span_id"].as_str().unwrap()))
        .collect();
    let p = |i: u8| hex::encode([1u8, i, 0, 0, 0, 0, 0, 1]);
    assert_eq!(
        names,
        BTreeSet::from([
            ("frontend", "GET /cart", ""),
            ("checkout", "price", p(1).as_str()),
            ("db", "SELECT", p(2).as_str())
        ])
    );
    assert!(spans.iter().all(|s| s["trace_id"] == hex_id(1)));

    // v1, protobuf: TracesData bytes.
    let (status, _, body) =
        get(server, &format!("/api/traces/{}", hex_id(3)), Some(tenant), Some("application/protobuf"));
    assert_eq!(status, 200);
    let v1 = decode_with_python("v1", &body);
    let spans = v1["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{v1}");
    assert!(spans.iter().any(|s| s["name"] == "SELECT" && s["status"] == 2 && s["service"] == "db"), "{v1}");

    // JSON forms: v2 wraps the OTLP/JSON trace; v1 is OTLP/JSON.
    let (status, v2json) = get_json(server, &format!("/api/v2/traces/{}", hex_id(2)), Some(tenant));
    assert_eq!(status, 200, "{v2json}");
    assert_eq!(v2json["trace"]["resourceSpans"].as_array().unwrap().len(), 2, "{v2json}");
    assert!(v2json["metrics"]["inspectedBytes"].is_string(), "{v2json}");
    let (status, v1json) = get_json(server, &format!("/api/traces/{}", hex_id(2)), Some(tenant));
    assert_eq!(status, 200);
    assert_eq!(v1json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"], hex_id(2));

    // A 64-bit (16 hex digit) id is left-padded, as Tempo does.
    let short = &hex_id(6)[16..];
    let (status, _, body) = get(server, &format!("/api/v2/traces/{short}"), Some(tenant), Some("application/protobuf"));
    assert_eq!(status, 200);
    assert_eq!(decode_with_python("v2", &body)["spans"][0]["name"], "legacy");

    // Unknown: 404 with Tempo's text on v2 (Grafana then tries v1) and v1.
    for path in ["/api/v2/traces/0123456789abcdef0123456789abcdef", "/api/traces/0123456789abcdef0123456789abcdef"] {
        let (status, ct, body) = get(server, path, Some(tenant), Some("application/protobuf"));
        assert_eq!((status, String::from_utf8_lossy(&body).trim()), (404, "trace not found"), "{path}");
        assert!(ct.starts_with("text/plain"), "{ct}");
    }
    // start/end prune: a window before the trace finds nothing.
    let (status, _, _) = get(server, &format!("/api/v2/traces/{}?start=1000&end=2000", hex_id(1)), Some(tenant), None);
    assert_eq!(status, 404);
}

fn check_tags(server: &Server, tenant: &str) {
    let (status, v2) = get_json(server, "/api/v2/search/tags?limit=5000", Some(tenant));
    assert_eq!(status, 200, "{v2}");
    let scope = |name: &str| -> Vec<String> {
        v2["scopes"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{name}: {v2}"))["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(scope("resource"), ["region", "service.name"]);
    assert_eq!(scope("span"), ["http.response.status_code", "http.route"]);
    assert!(scope("intrinsic").contains(&"duration".to_string()));
    let (_, only_span) = get_json(server, "/api/v2/search/tags?scope=span", Some(tenant));
    assert_eq!(only_span["scopes"].as_array().unwrap().len(), 1, "{only_span}");
    let (_, v1) = get_json(server, "/api/search/tags", Some(tenant));
    assert_eq!(
        v1["tagNames"],
        serde_json::json!(["http.response.status_code", "http.route", "region", "service.name"])
    );

    // Values: the tag arrives percent-encoded once after Grafana's proxy.
    let (status, values) = get_json(server, "/api/v2/search/tag/resource.service.name/values", Some(tenant));
    assert_eq!(status, 200, "{values}");
    assert_eq!(
        values["tagValues"],
        serde_json::json!([
            {"type": "string", "value": "checkout"}, {"type": "string", "value": "db"},
            {"type": "string", "value": "frontend"}, {"type": "string", "value": "jaeger-app"}
        ])
    );
    let narrowed =
        format!("/api/v2/search/tag/resource.service.name/values?q={}", url_encode(r#"{ span.http.route = "/cart" }"#));
    let (_, values) = get_json(server, &narrowed, Some(tenant));
    assert_eq!(values["tagValues"], serde_json::json!([{"type": "string", "value": "frontend"}]));
    let (_, codes) = get_json(server, "/api/v2/search/tag/span.http.response.status_code/values", Some(tenant));
    assert_eq!(codes["tagValues"], serde_json::json!([{"type": "int", "value": "500"}]));
    let (_, status_values) = get_json(server, "/api/v2/search/tag/status/values", Some(tenant));
    assert_eq!(
        status_values["tagValues"],
        serde_json::json!([{"type": "keyword", "value": "error"}, {"type": "keyword", "value": "unset"}])
    );
    let (_, v1values) = get_json(server, "/api/search/tag/http.route/values", Some(tenant));
    assert_eq!(v1values["tagValues"], serde_json::json!(["/cart", "/home", "/price"]));
    let (_, limited) = get_json(server, "/api/v2/search/tag/name/values?limit=2", Some(tenant));
    assert_eq!(limited["tagValues"].as_array().unwrap().len(), 2, "{limited}");
    let (status, body) = get_json(server, "/api/v2/search/tag/http.route/values", Some(tenant));
    assert_eq!(status, 400);
    assert!(body.as_str().unwrap().contains("scoped attribute"), "{body}");
}

// ---- gRPC (h2c) ----------------------------------------------------------------------------

/// `tempopb.SearchRequest` with the fields Grafana sets (field numbers from tempo.proto).
#[derive(Clone, PartialEq, prost::Message)]
struct SearchRequest {
    #[prost(uint32, tag = "4")]
    limit: u32,
    #[prost(uint32, tag = "5")]
    start: u32,
    #[prost(uint32, tag = "6")]
    end: u32,
    #[prost(string, tag = "8")]
    query: String,
    #[prost(uint32, tag = "9")]
    spans_per_span_set: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SearchResponse {
    #[prost(message, repeated, tag = "1")]
    traces: Vec<TraceSearchMetadata>,
    #[prost(message, optional, tag = "2")]
    metrics: Option<SearchMetrics>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TraceSearchMetadata {
    #[prost(string, tag = "1")]
    trace_id: String,
    #[prost(string, tag = "2")]
    root_service_name: String,
    #[prost(uint32, tag = "5")]
    duration_ms: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SearchMetrics {
    #[prost(uint32, tag = "1")]
    inspected_traces: u32,
    #[prost(uint64, tag = "2")]
    inspected_bytes: u64,
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// One streaming call; the messages and the grpc-status/-message.
async fn grpc_search(addr: SocketAddr, tenant: &str, body: Vec<u8>) -> (Vec<Vec<u8>>, i32, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(tcp)).await.expect("h2c");
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{addr}/tempopb.StreamingQuerier/Search"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "grpc-go/1.70.0")
        .header("x-scope-orgid", tenant)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = send.send_request(req).await.expect("answer");
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let bytes = collected.to_bytes();
    let get = |name: &str| {
        parts
            .headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let status = get("grpc-status").and_then(|s| s.parse().ok()).expect("grpc-status");
    let mut messages = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        messages.push(rest[5..5 + len].to_vec());
        rest = &rest[5 + len..];
    }
    (messages, status, e2e::percent_decode(&get("grpc-message").unwrap_or_default()))
}

fn check_grpc(server: &Server, tenant: &str, base_ns: u64) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let start = (base_ns / 1_000_000_000) as u32 - 60;
        let request = SearchRequest {
            limit: 20,
            start,
            end: start + 3600,
            query: r#"{ resource.service.name = "checkout" && duration > 500ms }"#.into(),
            spans_per_span_set: 3,
        };
        let (messages, status, message) = grpc_search(server.api, tenant, frame(&request.encode_to_vec())).await;
        assert_eq!(status, 0, "{message}");
        let mut ids = Vec::new();
        let mut metrics = None;
        for m in &messages {
            let r = SearchResponse::decode(m.as_slice()).expect("SearchResponse");
            ids.extend(r.traces.iter().map(|t| t.trace_id.clone()));
            metrics = r.metrics.or(metrics);
        }
        assert_eq!(ids, [hex_id(3), hex_id(1)]);
        assert!(metrics.is_some_and(|m| m.inspected_bytes > 0));

        // Grafana's Save & test with streaming on: `{}` over the last 15 minutes, limit 1.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32;
        let health = SearchRequest { limit: 1, start: now - 900, end: now, query: "{}".into(), spans_per_span_set: 0 };
        let (messages, status, _) = grpc_search(server.api, tenant, frame(&health.encode_to_vec())).await;
        assert_eq!(status, 0);
        assert_eq!(SearchResponse::decode(messages[0].as_slice()).unwrap().traces.len(), 1);

        // Malformed: a frame that lies about its length, bytes that are not a SearchRequest,
        // TraceQL that does not parse, a message over the size limit, another tenant.
        for (body, code, text) in [
            (b"\0\0\0\0\x09abc".to_vec(), 3, "declares 9 bytes"),
            (frame(&[0xff, 0xff, 0xff]), 3, "malformed SearchRequest"),
            (
                frame(&SearchRequest { query: "{ name = }".into(), ..Default::default() }.encode_to_vec()),
                3,
                "invalid TraceQL query",
            ),
            (frame(&SearchRequest { query: "x".repeat(1 << 20), ..Default::default() }.encode_to_vec()), 8, "bytes"),
        ] {
            let (_, status, message) = grpc_search(server.api, tenant, body).await;
            assert_eq!(status, code, "{message}");
            assert!(message.contains(text), "{message}");
        }
        let (messages, status, _) = grpc_search(server.api, "intruder", frame(&request.encode_to_vec())).await;
        assert_eq!(status, 0);
        assert!(SearchResponse::decode(messages[0].as_slice()).unwrap().traces.is_empty());
    });
}

fn check_bad_input(server: &Server, tenant: &str) {
    let cases: Vec<(String, u16, &str)> = vec![
        ("/api/v2/traces/xyz".into(), 400, "invalid trace id"),
        (format!("/api/traces/{}0", "a".repeat(32)), 400, "invalid trace id"),
        ("/api/search?q=%7B%7D&start=20&end=10".into(), 400, "start is after end"),
        (format!("/api/search?q={}", url_encode("{ name = }")), 400, "invalid TraceQL query: expected"),
        (
            format!("/api/search?q={}", url_encode("{ } | by(resource.service.name)")),
            400,
            "unsupported TraceQL construct \"by(\"",
        ),
        (
            format!("/api/search?q={}", url_encode(&format!("{}{{}}{}", "(".repeat(100), ")".repeat(100)))),
            400,
            "nesting deeper than 64",
        ),
        (
            format!("/api/search?q={}", url_encode(r#"{ name =~ "(a{1000}){1000}" }"#)),
            400,
            "regular expression at offset",
        ),
        (
            format!("/api/search?q={}", url_encode(&format!("{{ name = \"{}\" }}", "x".repeat(20_000)))),
            400,
            "more than the limit of 16384",
        ),
        ("/api/search?q=%7B%7D&limit=100000000".into(), 400, "at most 5000"),
        ("/api/search?q=%7B%7D&spss=-3".into(), 400, "invalid spss"),
        ("/api/search?tags=oops".into(), 400, "invalid tags"),
        ("/api/search?minDuration=1s%7D".into(), 400, "invalid minDuration"),
        ("/api/v2/search/tags?scope=bogus".into(), 400, "invalid scope"),
        ("/api/v2/search/tags?limit=99999999".into(), 400, "at most"),
    ];
    for (path, status, text) in cases {
        let (got, ct, body) = get(server, &path, Some(tenant), None);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(text), "{path}: {body}");
        assert!(ct.starts_with("text/plain"), "{path}: {ct}");
    }
    // A 1 MiB query never reaches the parser whole: refused by size at the HTTP layer or by
    // the TraceQL length limit, and the server keeps answering.
    // (HTTP clients refuse URLs this long, so it is written by hand.)
    {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(server.api).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let request =
            format!("GET /api/search?q={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "a".repeat(1 << 20));
        // The server may close the connection before reading it all.
        let _ = tcp.write_all(request.as_bytes());
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        let status_line = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
        assert!(answer.is_empty() || status_line.starts_with("HTTP/1.1 4"), "{status_line}");
    }
    let (status, _, body) = get(server, "/api/echo", None, None);
    assert_eq!((status, body.as_slice()), (200, &b"echo"[..]));

    // Another tenant sees nothing of this one.
    assert!(search_ids(server, "/api/search?q=%7B%7D", Some("intruder")).is_empty());
    let (status, _, _) =
        get(server, &format!("/api/v2/traces/{}", hex_id(1)), Some("intruder"), Some("application/protobuf"));
    assert_eq!(status, 404);
    let (_, tags) = get_json(server, "/api/search/tags", Some("intruder"));
    assert_eq!(tags["tagNames"], serde_json::json!([]));
    // A tenant header outside the allowed set is refused, never read as the default tenant.
    let (status, _, _) = get(server, "/api/search?q=%7B%7D", Some("../etc"), None);
    assert_eq!(status, 400);
}

#[test]
fn grafana_tempo_datasource_requests() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = "team-a";
    let server = Server::start(dir.path(), &[]);
    let base = send_fixture(&server, tenant);

    // Health check and build info.
    let (status, _, body) = get(&server, "/api/echo", None, None);
    assert_eq!((status, body.as_slice()), (200, &b"echo"[..]));
    let (status, info) = get_json(&server, "/api/status/buildinfo", None);
    assert_eq!(status, 200);
    assert!(info["version"].as_str().is_some_and(|v| v.starts_with("2.")), "{info}");

    check_trace_by_id(&server, tenant);
    check_search_shape(&server, tenant, base);
    check_table(&server, tenant, base);
    check_tags(&server, tenant);
    check_grpc(&server, tenant, base);
    check_bad_input(&server, tenant);

    // The same answers from Parquet parts.
    drop(server);
    let server = Server::start(dir.path(), &["--flush-interval", "100ms"]);
    let flushed = eventually(Duration::from_secs(30), || {
        let (_, stats) = server.get("/api/v1/stats", Some(tenant));
        (stats["signals"]["traces"]["in_head"] == 0 && stats["signals"]["traces"]["in_parts"] == 12).then_some(())
    });
    assert!(flushed.is_some(), "the spans were not written to parts: {}", server.get("/api/v1/stats", Some(tenant)).1);
    check_trace_by_id(&server, tenant);
    check_search_shape(&server, tenant, base);
    check_table(&server, tenant, base);
    check_tags(&server, tenant);
    check_grpc(&server, tenant, base);

    // A part damaged under the running server costs that part: the search still answers
    // 200, names the part (relative to the data directory) in a Warning header, and the
    // part is set aside.
    // (The fixture's ten minutes may straddle an hour, so one or two parts: damage them all.)
    let mut parts = Vec::new();
    find_parquet(&dir.path().join("parts"), &mut parts);
    assert!(!parts.is_empty());
    for part in &parts {
        let mut bytes = std::fs::read(part).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(part, &bytes).unwrap();
    }
    let resp = reqwest::blocking::Client::new()
        .get(server.api_url(&format!("/api/search?q={}", url_encode(r#"{ name = "GET /cart" }"#))))
        .header("X-Scope-OrgID", tenant)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let warnings: Vec<String> =
        resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert!(warnings.iter().any(|w| w.contains("damaged") && w.contains("parts/")), "{warnings:?}");
    let root = dir.path().to_string_lossy().into_owned();
    assert!(warnings.iter().all(|w| !w.contains(&root)), "no absolute path: {warnings:?}");
    let body: Value = resp.json().unwrap();
    assert_eq!(body["traces"], serde_json::json!([]), "the damaged parts held every span");
    assert!(dir.path().join("quarantine").exists());
}

fn find_parquet(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            find_parquet(&path, out);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
}
