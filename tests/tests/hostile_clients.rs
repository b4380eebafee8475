//! Hostile clients (issue 11): request bodies sent almost whole and then held, idle sockets
//! past the file-descriptor limit, tenant ids outside the allowed set, corrupt gzip frames.
//!
//! The load tests are bounded: loopback, a few seconds of hostile load, and each asserts both
//! the server's memory (`VmHWM` of its process) and that a normal client is served meanwhile.

use std::convert::Infallible;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::Server;
use e2e::otlp::{spans_request, trace_id};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tokio::io::AsyncWriteExt;

const MIB: usize = 1 << 20;
/// The default `limits.max_request_bytes`: what each hostile client declares.
const DECLARED: usize = 16 * MIB;
const TRACES_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const PB: &str = "application/x-protobuf";

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("slo-gate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A figure of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
fn proc_status_bytes(pid: u32, key: &str) -> usize {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let line = text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in {text}"));
    let kib: usize = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB");
    kib * 1024
}

// ---- raw HTTP/2 (gRPC) client --------------------------------------------------------------

/// A request body fed by a channel: a client that sends part of a body and then holds.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

async fn h2_connect<B>(addr: SocketAddr) -> Option<hyper::client::conn::http2::SendRequest<B>>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(tcp)).await.ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// A gRPC message frame: compressed flag, big-endian length, message.
fn grpc_frame(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// One gRPC unary call with hand-set headers (values may be any bytes): grpc-status and
/// grpc-message of the answer, from its headers or its trailers.
async fn grpc_call(addr: SocketAddr, path: &str, headers: &[(&str, &[u8])], body: Vec<u8>) -> (i32, String) {
    let mut send = h2_connect::<Full<Bytes>>(addr).await.expect("HTTP/2 connection");
    let mut req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        req = req.header(*name, http::HeaderValue::from_bytes(value).expect("header value"));
    }
    let resp = send.send_request(req.body(Full::new(Bytes::from(body))).unwrap()).await.expect("gRPC answer");
    let (parts, body) = resp.into_parts();
    let trailers = body.collect().await.ok().and_then(|c| c.trailers().cloned()).unwrap_or_default();
    let get = |name: &str| {
        parts
            .headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let status = get("grpc-status").and_then(|s| s.parse().ok()).expect("a grpc-status");
    (status, e2e::percent_decode(&get("grpc-message").unwrap_or_default()))
}

// ---- hostile senders -----------------------------------------------------------------------

/// HTTP/1.1: declares a 16 MiB body, sends all of it but one byte (or until `until`), and
/// returns the socket so the caller can hold it open.
async fn hold_http1_body(
    addr: SocketAddr,
    target: &str,
    content_type: &str,
    until: Instant,
) -> Option<tokio::net::TcpStream> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {DECLARED}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.ok()?;
    let chunk = vec![b'a'; 64 * 1024];
    let mut left = DECLARED - 1;
    while left > 0 {
        let n = left.min(chunk.len());
        let remaining = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, tcp.write_all(&chunk[..n])).await {
            Ok(Ok(())) => left -= n,
            _ => break,
        }
    }
    Some(tcp)
}

/// What holds a gRPC stream open: the connection and the sending half of its body.
type HeldStream = (hyper::client::conn::http2::SendRequest<ChannelBody>, tokio::sync::mpsc::Sender<Bytes>);

/// gRPC: one stream (on its own connection) whose message is declared 16 MiB − 5 bytes long
/// (a 16 MiB body), of which all but one byte is sent (or until `until`).
async fn hold_grpc_body(addr: SocketAddr, until: Instant) -> Option<HeldStream> {
    let mut send = h2_connect::<ChannelBody>(addr).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let req = http::Request::post(format!("http://{addr}{TRACES_EXPORT}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(ChannelBody(rx))
        .unwrap();
    let answer = send.send_request(req);
    tokio::spawn(answer);
    let mut first = vec![0u8];
    first.extend_from_slice(&((DECLARED - 5) as u32).to_be_bytes());
    let chunk = Bytes::from(vec![0x0au8; 64 * 1024]);
    let mut left = DECLARED - 1 - first.len();
    if tx.send(Bytes::from(first)).await.is_err() {
        return Some((send, tx));
    }
    while left > 0 {
        let n = left.min(chunk.len());
        let remaining = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, tx.send(chunk.slice(..n))).await {
            Ok(Ok(())) => left -= n,
            _ => break,
        }
    }
    Some((send, tx))
}

// ---- normal clients ------------------------------------------------------------------------

/// What an OTLP/HTTP exporter does: retries on 429/503 (after `Retry-After`) and on connection
/// errors, until `deadline`. Returns how long it took to be stored.
fn http_export_with_retries(url: &str, body: Vec<u8>, deadline: Instant) -> Result<Duration, String> {
    let start = Instant::now();
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut last = String::new();
    while Instant::now() < deadline {
        match client.post(url).header("content-type", PB).body(body.clone()).send() {
            Ok(resp) if resp.status().is_success() => return Ok(start.elapsed()),
            Ok(resp) if matches!(resp.status().as_u16(), 429 | 503) => {
                let after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                last = format!("{} {}", resp.status(), resp.text().unwrap_or_default());
                std::thread::sleep(Duration::from_secs(after));
            }
            Ok(resp) => return Err(format!("{} {}", resp.status(), resp.text().unwrap_or_default())),
            Err(e) => {
                last = e.to_string();
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    Err(format!("not stored before the deadline; last answer: {last}"))
}

/// What an OTLP/gRPC exporter does: retries on `UNAVAILABLE` and on connection errors.
async fn grpc_export_with_retries(addr: SocketAddr, trace: u64, deadline: Instant) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = async {
            let mut client = TraceServiceClient::connect(format!("http://{addr}")).await.map_err(|e| e.to_string())?;
            client
                .export(spans_request("patient-grpc", trace, 1))
                .await
                .map_err(|s| if s.code() == tonic::Code::Unavailable { s.to_string() } else { format!("fatal: {s}") })
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(_)) => return Ok(start.elapsed()),
            Ok(Err(e)) if e.starts_with("fatal") => return Err(e),
            Ok(Err(e)) => last = e,
            Err(_) => last = "timed out".to_string(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!("not stored before the deadline; last answer: {last}"))
}

// ---- #3 ------------------------------------------------------------------------------------

/// The in-flight body budget the load test configures.
const BUDGET: usize = 64 * MIB;
/// What the server may hold beyond its budget: connection buffers (HTTP/2 windows, HTTP/1
/// read buffers), the allocator's slack, decoded requests of the normal clients.
const ALLOWANCE: usize = 96 * MIB;

#[test]
fn bodies_sent_almost_whole_and_held_stay_within_the_inflight_budget() {
    // issue 11 #3: 60 HTTP connections each sending 16 MiB − 1 of a declared 16 MiB body and
    // then holding (the same with 20 gRPC streams and with /ingest) grew the RSS linearly to
    // 1.18 GB: bodies were buffered in full before admission, with no body timeout.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\nmax_inflight_body_bytes = {BUDGET}\nbody_progress_timeout = \"2s\"\nbody_timeout = \"30s\"\n"
        ),
    );
    let server = Server::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let pid = server.pid();
    let before = proc_status_bytes(pid, "VmRSS");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let attack_end = Instant::now() + Duration::from_secs(4);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (http_took, grpc_took) = rt.block_on(async {
        let mut http1 = Vec::new();
        for _ in 0..60 {
            http1.push(tokio::spawn(hold_http1_body(server.http, "/v1/traces", PB, attack_end)));
            http1.push(tokio::spawn(hold_http1_body(
                server.api,
                "/ingest?name=hostile.cpu&format=folded",
                "text/plain",
                attack_end,
            )));
        }
        let grpc: Vec<_> = (0..20).map(|_| tokio::spawn(hold_grpc_body(server.grpc, attack_end))).collect();

        // Normal clients, once the attack is under way.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let url = server.http_url("/v1/traces");
        let body = spans_request("patient-http", 1, 1).encode_to_vec();
        let http_client = std::thread::spawn(move || http_export_with_retries(&url, body, deadline));
        let grpc_took = grpc_export_with_retries(server.grpc, 2, deadline).await;

        let mut held = (Vec::new(), Vec::new());
        for t in http1 {
            held.0.push(t.await.unwrap());
        }
        for t in grpc {
            held.1.push(t.await.unwrap());
        }
        tokio::time::sleep_until(attack_end.into()).await;
        let http_took = http_client.join().unwrap();
        drop(held);
        (http_took, grpc_took)
    });
    let peak = proc_status_bytes(pid, "VmHWM");
    let grown = peak.saturating_sub(before);
    eprintln!(
        "RSS before {} MiB, peak {} MiB (+{} MiB; budget {} MiB + allowance {} MiB); normal clients stored after {:?} (HTTP) and {:?} (gRPC)",
        before / MIB,
        peak / MIB,
        grown / MIB,
        BUDGET / MIB,
        ALLOWANCE / MIB,
        http_took,
        grpc_took
    );
    let http_took = http_took.expect("the normal OTLP/HTTP client was served");
    let grpc_took = grpc_took.expect("the normal OTLP/gRPC client was served");
    assert!(grown <= BUDGET + ALLOWANCE, "the server grew by {} MiB under hostile bodies", grown / MIB);
    assert!(http_took < Duration::from_secs(20) && grpc_took < Duration::from_secs(20));
    let stored = e2e::eventually(Duration::from_secs(10), || {
        let (status, _) = server.get(&format!("/api/v1/traces/{}", hex::encode(trace_id(1))), None);
        let (status2, _) = server.get(&format!("/api/v1/traces/{}", hex::encode(trace_id(2))), None);
        (status == 200 && status2 == 200).then_some(())
    });
    assert!(stored.is_some(), "the normal clients' spans are readable");
    let (_, metrics) = server.get("/metrics", None);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(metrics.contains("slo_gate_body_bytes_limit 67108864"), "{metrics}");
    assert!(!metrics.contains("slo_gate_body_refused_total{reason=\"overloaded\"} 0\n"), "{metrics}");
}

// ---- #4 ------------------------------------------------------------------------------------

#[test]
fn idle_sockets_past_the_descriptor_limit_do_not_lock_clients_out() {
    // issue 11 #4: 1,100 idle sockets against a server with a 1,024 file-descriptor limit
    // made every port stop answering until they closed: no connection cap, no idle or header
    // timeout.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[server]\nidle_timeout = \"2s\"\nheader_read_timeout = \"2s\"\n");
    let server = Server::start_with_fd_limit(&dir.path().join("data"), &["--config", config.to_str().unwrap()], 1024);
    let ports = [server.grpc, server.http, server.api];
    let mut idle = Vec::new();
    for i in 0..1_100 {
        if let Ok(s) = TcpStream::connect_timeout(&ports[i % 3], Duration::from_secs(2)) {
            idle.push(s);
        }
    }
    let opened = Instant::now();
    assert!(idle.len() >= 1_000, "only {} idle sockets could connect", idle.len());

    // A normal client is served on each port within a bounded time.
    let bound = Duration::from_secs(15);
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let http = e2e::eventually(bound, || {
        let resp = client
            .post(server.http_url("/v1/traces"))
            .header("content-type", PB)
            .body(spans_request("patient", 1, 1).encode_to_vec())
            .send();
        resp.ok().filter(|r| r.status().is_success()).map(|_| opened.elapsed())
    });
    let api = e2e::eventually(bound, || {
        let resp = client.get(server.api_url("/healthz")).send();
        resp.ok().filter(|r| r.status().is_success()).map(|_| opened.elapsed())
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let grpc = rt.block_on(grpc_export_with_retries(server.grpc, 2, Instant::now() + bound));
    eprintln!("served after the idle sockets opened: HTTP {http:?}, API {api:?}, gRPC {grpc:?}");
    assert!(http.is_some(), "OTLP/HTTP port not served within {bound:?}");
    assert!(api.is_some(), "API port not served within {bound:?}");
    grpc.expect("OTLP/gRPC port served");

    // Every idle socket is closed by the server after the idle timeout (or at once, over the
    // connection cap).
    std::thread::sleep((opened + Duration::from_secs(5)).saturating_duration_since(Instant::now()));
    let mut open = 0;
    for s in &mut idle {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    open += 1;
                    break;
                }
                Err(_) => break,
            }
        }
    }
    assert_eq!(open, 0, "{open} of {} idle sockets are still open after the idle timeout", idle.len());
    let (_, metrics) = server.get("/metrics", None);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(metrics.contains("slo_gate_connections_limit "), "{metrics}");
    assert!(metrics.contains("slo_gate_connections_refused_total{listener=\"otlp_grpc\"}"), "{metrics}");
    assert!(metrics.contains("slo_gate_connections_open{listener=\"api\"}"), "{metrics}");
}

// ---- #9 ------------------------------------------------------------------------------------

/// Tenant ids outside the allowed set: not text, not ASCII, path-like, too long, empty.
fn bad_tenants() -> Vec<Vec<u8>> {
    vec![
        "é".as_bytes().to_vec(),
        vec![0xe9],
        "team a".as_bytes().to_vec(),
        "a/b".as_bytes().to_vec(),
        "..".as_bytes().to_vec(),
        vec![b'x'; 151],
        Vec::new(),
    ]
}

#[test]
fn tenant_ids_outside_the_allowed_set_are_refused_on_every_path() {
    // issue 11 #9: `X-Scope-OrgID: é` (any non-ASCII value) on HTTP ingest, /ingest and
    // queries was answered 200 and the data stored in and read from `anonymous`: the header's
    // `to_str().ok()` turned it into "no header".
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = reqwest::blocking::Client::new();
    let span = spans_request("tenant-test", 1, 1).encode_to_vec();
    let send = |req: reqwest::blocking::RequestBuilder, tenant: &[u8]| {
        let resp = req.header("x-scope-orgid", http::HeaderValue::from_bytes(tenant).unwrap()).send().unwrap();
        (resp.status().as_u16(), resp.text().unwrap_or_default())
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for tenant in bad_tenants() {
        let shown = String::from_utf8_lossy(&tenant).into_owned();
        let (status, body) =
            send(client.post(server.http_url("/v1/traces")).header("content-type", PB).body(span.clone()), &tenant);
        assert_eq!(status, 400, "OTLP/HTTP with tenant {shown:?}: {body}");
        let (status, body) =
            send(client.post(server.api_url("/ingest?name=app.cpu&format=folded")).body("main;work 10\n"), &tenant);
        assert_eq!(status, 400, "/ingest with tenant {shown:?}: {body}");
        assert!(body.contains("tenant id"), "{body}");
        let (status, body) = send(
            client
                .post(server.api_url("/push.v1.PusherService/Push"))
                .header("content-type", "application/json")
                .body("{\"series\": []}"),
            &tenant,
        );
        assert_eq!(status, 400, "Push with tenant {shown:?}: {body}");
        for path in [
            "/api/v1/stats",
            "/api/v1/services",
            &format!("/api/v1/traces/{}", hex::encode(trace_id(1))),
            "/api/v1/logs",
            "/api/v1/profile-types",
            "/api/v1/gate/runs?service=checkout",
        ] {
            let (status, body) = send(client.get(server.api_url(path)), &tenant);
            assert_eq!(status, 400, "GET {path} with tenant {shown:?}: {body}");
        }
        let (code, message) =
            rt.block_on(grpc_call(server.grpc, TRACES_EXPORT, &[("x-scope-orgid", &tenant)], grpc_frame(false, &span)));
        assert_eq!(code, tonic::Code::InvalidArgument as i32, "gRPC with tenant {shown:?}: {message}");
        assert!(message.contains("tenant id"), "{message}");
    }
    assert_eq!(server.items("traces", None), 0, "nothing was stored under anonymous");
    assert_eq!(server.items("profiles", None), 0, "nothing was stored under anonymous");
}

// ---- minor: corrupt gzip on gRPC ------------------------------------------------------------

#[test]
fn corrupt_gzip_grpc_frame_is_invalid_argument() {
    // issue 11 minor: a bad gzip frame on gRPC was answered INTERNAL instead of
    // INVALID_ARGUMENT.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (code, message) = rt.block_on(grpc_call(
        server.grpc,
        TRACES_EXPORT,
        &[("grpc-encoding", b"gzip")],
        grpc_frame(true, b"this is not a gzip stream"),
    ));
    assert_eq!(code, tonic::Code::InvalidArgument as i32, "{message}");
    assert!(message.contains("malformed gzip body"), "{message}");
    // A valid gzip frame is still taken.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &spans_request("gz", 3, 2).encode_to_vec()).unwrap();
    let (code, message) = rt.block_on(grpc_call(
        server.grpc,
        TRACES_EXPORT,
        &[("grpc-encoding", b"gzip")],
        grpc_frame(true, &gz.finish().unwrap()),
    ));
    assert_eq!(code, 0, "{message}");
    assert_eq!(server.items("traces", None), 2);
}
