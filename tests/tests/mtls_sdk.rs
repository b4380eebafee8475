//! mTLS with the real OpenTelemetry SDKs against the built binary: the Python SDK's gRPC and
//! HTTP exporters (`tests/python/tls_send.py`) and the Rust SDK's tonic exporter
//! (`opentelemetry-otlp` with `tls-ring`), configured with a CA and a client certificate as
//! users configure them.
//!
//! The collector requires a client certificate on both OTLP listeners, verifies it against
//! the bundle of its SPIFFE trust domain, and lets `spiffe://prod.example/ns/pay/*` write to
//! tenant `pay` only. The API listener stays plaintext on loopback: the checks read it with a
//! `read` token of the token file (`Server::start` waits on `/readyz` over plain HTTP, and
//! the test's reqwest has no TLS), which keeps what is checked (the OTLP listeners) apart
//! from the checking.
//!
//! Every refusal is checked from the collector's side, never from the exporter's failure
//! alone: a 403 / `PERMISSION_DENIED` shows in `slo_gate_auth_requests_total{outcome="denied"}`,
//! a handshake refusal in `slo_gate_tls_handshake_failures_total` by reason, and "nothing
//! stored" is the tenants' stats and `slo_gate_received_items_total`, which counts every
//! tenant's items.
//!
//! The Python side needs the virtualenv of `tests/python/requirements.txt`; without it the
//! Python tests fail with the install command, never skip.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use e2e::Server;
use e2e::certs::{Ca, Pair};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::tonic_types::metadata::MetadataMap;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanData, SpanExporter as _};
use serde_json::{Value, json};

/// The workload allowed to write: its identity names tenant `pay`.
const ORDER: &str = "spiffe://prod.example/ns/pay/sa/order";
/// A valid identity of the same trust domain that no rule lets in.
const CART: &str = "spiffe://prod.example/ns/shop/sa/cart";
/// The `read` token the checks use (all tenants).
const READER: &str = "reader-token-0123456789abcdef0123456789";

struct Setup {
    /// Certificates, config, token file and data directory.
    dir: tempfile::TempDir,
    prod: Ca,
    dev: Ca,
    server: Server,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A collector with TLS on both OTLP listeners, client certificates required and verified
/// against `prod.example`'s and `dev.example`'s bundles, `[auth]` required with one SPIFFE
/// rule (`ns/pay/*` may write to `pay`) and a read token for the checks.
fn start() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let prod = Ca::new("prod.example CA");
    let dev = Ca::new("dev.example CA");
    let (server_cert, server_key) = prod.server().write(dir.path(), "server");
    let prod_bundle = prod.write(dir.path(), "prod-ca.pem");
    let dev_bundle = dev.write(dir.path(), "dev-ca.pem");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("# id tenants scopes digest\nreader * read {}\n", sha256(READER))).expect("tokens");
    let config = dir.path().join("collector.toml");
    let text = format!(
        r#"# What is stored must be exactly what was sent: no span metrics derived from it.
[span_metrics]
enabled = false

[tls]
cert_file = {server_cert:?}
key_file = {server_key:?}
client_auth = "required"
listeners = ["otlp_grpc", "otlp_http"]
reload_interval = "1s"

[tls.trust_domains]
"prod.example" = {prod_bundle:?}
"dev.example" = {dev_bundle:?}

[auth]
required = true
token_file = {tokens:?}

[[auth.spiffe]]
id = "spiffe://prod.example/ns/pay/*"
tenants = ["pay"]
scopes = ["write"]
"#
    );
    std::fs::write(&config, text).expect("write the config");
    let server = Server::start(&dir.path().join("data"), &["--config", config.to_str().expect("UTF-8 path")]);
    Setup { dir, prod, dev, server, server_cert, server_key }
}

fn sha256(token: &str) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(token.as_bytes())))
}

/// GET on the plaintext API with the read token, as `tenant`; the status and the body (JSON
/// when it parses, else text).
fn get(server: &Server, path: &str, tenant: Option<&str>) -> (u16, Value) {
    let mut request =
        reqwest::blocking::Client::new().get(server.api_url(path)).header("authorization", format!("Bearer {READER}"));
    if let Some(t) = tenant {
        request = request.header("X-Scope-OrgID", t);
    }
    let response = request.send().unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Spans stored for `tenant`.
fn spans_of(server: &Server, tenant: &str) -> u64 {
    let (status, stats) = get(server, "/api/v1/stats", Some(tenant));
    assert_eq!(status, 200, "stats of {tenant}: {stats}");
    stats["signals"]["traces"]["items"].as_u64().unwrap_or_else(|| panic!("no traces items in {stats}"))
}

/// The trace's span ids as the API answers them for `tenant`; `None` when it is not found.
fn trace_of(server: &Server, trace_id: &str, tenant: &str) -> Option<Vec<String>> {
    let (status, data) = get(server, &format!("/api/v1/traces/{trace_id}"), Some(tenant));
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "trace {trace_id} of {tenant}: {data}");
    let mut ids: Vec<String> = data["resourceSpans"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rs| rs["scopeSpans"].as_array().into_iter().flatten())
        .flat_map(|ss| ss["spans"].as_array().into_iter().flatten())
        .map(|s| s["spanId"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    Some(ids)
}

/// `/metrics`, read with the token (credentials are required for it too).
fn metrics(server: &Server) -> String {
    let (status, body) = get(server, "/metrics", None);
    assert_eq!(status, 200, "/metrics: {body}");
    match body {
        Value::String(text) => text,
        other => panic!("/metrics is not text: {other}"),
    }
}

/// The sum of the samples of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (metric, have) = match series.split_once('{') {
            Some((m, rest)) => (m, parse_labels(rest.trim_end_matches('}'))),
            None => (series, BTreeMap::new()),
        };
        if metric == name && labels.iter().all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v)) {
            sum += value.parse::<f64>().unwrap_or_else(|e| panic!("sample value of {line:?}: {e}"));
        }
    }
    sum
}

/// `a="x",b="y"` (values may hold escaped quotes) as a map.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
    }
    out
}

/// Every tenant the tests could have written to holds no span, and the collector received
/// none over any listener (`slo_gate_received_items_total` counts all tenants).
fn assert_nothing_stored(server: &Server) {
    for tenant in ["pay", "shop", "anonymous"] {
        assert_eq!(spans_of(server, tenant), 0, "spans stored in tenant {tenant}");
    }
    let text = metrics(server);
    assert_eq!(sample(&text, "slo_gate_received_items_total", &[("signal", "traces")]), 0.0, "{text}");
}

/// Waits until `tenant` holds `spans` spans; panics with what it holds otherwise.
fn wait_for_spans(server: &Server, tenant: &str, spans: u64) {
    let stored = e2e::eventually(Duration::from_secs(15), || (spans_of(server, tenant) == spans).then_some(()));
    assert!(stored.is_some(), "tenant {tenant} holds {} spans, expected {spans}", spans_of(server, tenant));
}

// --- Python SDK -----------------------------------------------------------------------------

/// The interpreter with the SDK, both exporters and grpcio.
fn python() -> PathBuf {
    e2e::python::interpreter(
        "grpc, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http",
    )
}

/// One Python export case: `protocol` (`grpc` or `http`) with `identity` (certificate and
/// key files) or none, naming `tenant` in the header or not.
fn case(setup: &Setup, name: &str, protocol: &str, identity: Option<(&Path, &Path)>, tenant: Option<&str>) -> Value {
    let addr = if protocol == "grpc" { setup.server.grpc } else { setup.server.http };
    json!({
        "name": name,
        "protocol": protocol,
        "endpoint": format!("https://{addr}"),
        "ca": setup.path("prod-ca.pem"),
        "cert": identity.map(|(c, _)| c),
        "key": identity.map(|(_, k)| k),
        "tenant": tenant,
        "service": format!("py-{name}"),
        "timeout": 3,
    })
}

/// Runs `tls_send.py` on `cases`; its results by case name.
fn run_python(setup: &Setup, cases: &[Value]) -> BTreeMap<String, Value> {
    let python = python();
    let file = setup.path("cases.json");
    std::fs::write(&file, Value::Array(cases.to_vec()).to_string()).expect("write the cases");
    let mut command = std::process::Command::new(python);
    command.arg(e2e::manifest_dir().join("python/tls_send.py")).arg(&file);
    // OTEL_* variables would add endpoints, headers or certificates of their own. And
    // requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the CA a session was given
    // (psf/requests#4726), so with either set the HTTP exporter would ignore its
    // `certificate_file` and refuse the collector's certificate.
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("OTEL_") || key_text == "REQUESTS_CA_BUNDLE" || key_text == "CURL_CA_BUNDLE" {
            command.env_remove(key);
        }
    }
    let out = command.output().expect("run tls_send.py");
    assert!(out.status.success(), "tls_send.py: {}", e2e::output_text(&out));
    let results: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("tls_send.py printed no JSON ({e}): {}", e2e::output_text(&out)));
    assert_eq!(results.len(), cases.len(), "one result per case: {results:?}");
    results.into_iter().map(|r| (r["name"].as_str().expect("case name").to_string(), r)).collect()
}

fn assert_result(results: &BTreeMap<String, Value>, name: &str, want: &str) {
    let result = &results[name];
    assert_eq!(result["result"], want, "case {name}: {result:#}");
}

/// The exporter's own measurement of case `name`'s export: the attributes of its one
/// `otel.sdk.exporter.operation.duration` point (`rpc.response.status_code`,
/// `http.response.status_code`, `error.type`).
fn operation<'a>(results: &'a BTreeMap<String, Value>, name: &str) -> &'a Value {
    let operations = results[name]["operations"].as_array().map(Vec::as_slice).unwrap_or_default();
    assert_eq!(operations.len(), 1, "case {name}: one export measured: {:#}", results[name]);
    &operations[0]
}

/// The identity names the tenant: `ns/pay` certificates write to `pay` without a header over
/// gRPC and HTTP; a valid certificate outside the allow-list, and an allowed one whose
/// header names another tenant, get 403 / `PERMISSION_DENIED`, and nothing of theirs is
/// stored anywhere.
#[test]
fn python_sdk_identity_names_the_tenant() {
    let setup = start();
    let order = setup.prod.client(ORDER).write(setup.dir.path(), "order");
    let cart = setup.prod.client(CART).write(setup.dir.path(), "cart");
    let order = Some((order.0.as_path(), order.1.as_path()));
    let cart = Some((cart.0.as_path(), cart.1.as_path()));
    let cases = [
        case(&setup, "grpc-order", "grpc", order, None),
        case(&setup, "http-order", "http", order, None),
        case(&setup, "grpc-cart", "grpc", cart, None),
        case(&setup, "http-cart", "http", cart, None),
        case(&setup, "grpc-order-as-shop", "grpc", order, Some("shop")),
        case(&setup, "http-order-as-shop", "http", order, Some("shop")),
    ];
    let results = run_python(&setup, &cases);

    for name in ["grpc-order", "http-order"] {
        assert_result(&results, name, "success");
    }
    for name in ["grpc-cart", "http-cart", "grpc-order-as-shop", "http-order-as-shop"] {
        assert_result(&results, name, "failure");
    }
    // What the exporters were told: 403 and PERMISSION_DENIED, not an error of the transport.
    for name in ["grpc-order", "http-order"] {
        assert_eq!(operation(&results, name).get("error.type"), None, "case {name}: {:#}", results[name]);
    }
    for name in ["grpc-cart", "grpc-order-as-shop"] {
        let answer = &operation(&results, name)["rpc.response.status_code"];
        assert_eq!(answer, "PERMISSION_DENIED", "case {name}: {:#}", results[name]);
    }
    for name in ["http-cart", "http-order-as-shop"] {
        let answer = &operation(&results, name)["http.response.status_code"];
        assert_eq!(answer, 403, "case {name}: {:#}", results[name]);
    }

    // The two allowed exports, and only they, are stored, in `pay`.
    let server = &setup.server;
    wait_for_spans(server, "pay", 6);
    for name in ["grpc-order", "http-order"] {
        let sent = &results[name];
        let trace_id = sent["trace_id"].as_str().expect("trace id");
        let want: Vec<String> = serde_json::from_value(sent["span_ids"].clone()).expect("span ids");
        assert_eq!(trace_of(server, trace_id, "pay"), Some(want), "case {name}");
    }
    for name in ["grpc-cart", "http-cart", "grpc-order-as-shop", "http-order-as-shop"] {
        let trace_id = results[name]["trace_id"].as_str().expect("trace id");
        for tenant in ["pay", "shop", "anonymous"] {
            assert_eq!(trace_of(server, trace_id, tenant), None, "case {name}: stored in {tenant}");
        }
    }
    assert_eq!(spans_of(server, "shop"), 0);
    assert_eq!(spans_of(server, "anonymous"), 0);
    let text = metrics(server);
    assert_eq!(sample(&text, "slo_gate_received_items_total", &[("signal", "traces")]), 6.0, "{text}");
    for listener in ["otlp_grpc", "otlp_http"] {
        for principal in [CART, ORDER] {
            let denied = [("listener", listener), ("principal", principal), ("outcome", "denied")];
            assert!(
                sample(&text, "slo_gate_auth_requests_total", &denied) >= 1.0,
                "no denied request of {principal} counted on {listener}:\n{text}"
            );
        }
        let allowed = [("listener", listener), ("principal", ORDER), ("tenant", "pay"), ("outcome", "allowed")];
        assert!(sample(&text, "slo_gate_auth_requests_total", &allowed) >= 1.0, "{listener}:\n{text}");
        let cart_allowed = [("listener", listener), ("principal", CART), ("outcome", "allowed")];
        assert_eq!(sample(&text, "slo_gate_auth_requests_total", &cart_allowed), 0.0, "{text}");
    }
}

/// Refused at the handshake, before any request: no client certificate, a `prod.example`
/// identity signed by `dev.example`'s CA (a CA the collector trusts, for another domain),
/// and an expired certificate — over gRPC and HTTP, each counted by its reason.
#[test]
fn python_sdk_refused_at_the_handshake() {
    let setup = start();
    let foreign = setup.dev.client(ORDER).write(setup.dir.path(), "foreign");
    let expired = setup.prod.expired_client(ORDER).write(setup.dir.path(), "expired");
    let mut cases = Vec::new();
    for protocol in ["grpc", "http"] {
        cases.push(case(&setup, &format!("{protocol}-no-certificate"), protocol, None, None));
        let foreign = Some((foreign.0.as_path(), foreign.1.as_path()));
        cases.push(case(&setup, &format!("{protocol}-foreign-ca"), protocol, foreign, None));
        let expired = Some((expired.0.as_path(), expired.1.as_path()));
        cases.push(case(&setup, &format!("{protocol}-expired"), protocol, expired, None));
    }
    let results = run_python(&setup, &cases);
    for name in results.keys() {
        assert_result(&results, name, "failure");
        let answer = operation(&results, name);
        assert!(answer.get("error.type").is_some(), "case {name}: {:#}", results[name]);
        if name.starts_with("grpc") {
            // The channel never came up: the transport's code, not one the collector sent.
            assert_eq!(answer["rpc.response.status_code"], "UNAVAILABLE", "case {name}: {:#}", results[name]);
        } else {
            // No HTTP answer at all.
            assert_eq!(answer.get("http.response.status_code"), None, "case {name}: {:#}", results[name]);
        }
    }

    let server = &setup.server;
    let text = metrics(server);
    for (listener, protocol) in [("otlp_grpc", "grpc"), ("otlp_http", "http")] {
        for reason in ["no_certificate", "untrusted", "expired"] {
            let refused = [("listener", listener), ("reason", reason)];
            assert!(
                sample(&text, "slo_gate_tls_handshake_failures_total", &refused) >= 1.0,
                "{protocol}: no handshake refused for {reason} on {listener}:\n{text}"
            );
        }
        // No request got through to be decided.
        let decided = [("listener", listener)];
        assert_eq!(sample(&text, "slo_gate_auth_requests_total", &decided), 0.0, "{text}");
        assert_eq!(sample(&text, "slo_gate_tls_handshakes_total", &decided), 0.0, "{text}");
    }
    assert_nothing_stored(server);
}

// --- Rust SDK -------------------------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime")
}

/// The Rust SDK's gRPC span exporter to the collector over TLS, trusting `prod.example`'s CA,
/// with `identity` as its client certificate and `tenant` in the metadata.
fn rust_exporter(
    rt: &tokio::runtime::Runtime,
    setup: &Setup,
    identity: Option<&Pair>,
    tenant: Option<&str>,
) -> opentelemetry_otlp::SpanExporter {
    let _entered = rt.enter();
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&setup.prod.pem)).domain_name("localhost");
    if let Some(pair) = identity {
        tls = tls.identity(Identity::from_pem(&pair.cert, &pair.key));
    }
    let mut metadata = MetadataMap::new();
    if let Some(t) = tenant {
        metadata.insert("x-scope-orgid", t.parse().expect("metadata value"));
    }
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("https://{}", setup.server.grpc))
        .with_tls_config(tls)
        .with_metadata(metadata)
        .with_timeout(Duration::from_secs(5))
        .build()
        .expect("build the gRPC span exporter");
    exporter.set_resource(&Resource::builder().with_service_name("rust-tls").build());
    exporter
}

/// One trace of `count` spans, as the SDK hands them to its exporter; its id and span ids.
fn rust_spans(count: usize) -> (Vec<SpanData>, String, Vec<String>) {
    let ids = RandomIdGenerator::default();
    let trace_id: TraceId = ids.new_trace_id();
    let now = SystemTime::now();
    let spans: Vec<SpanData> = (0..count)
        .map(|i| SpanData {
            span_context: SpanContext::new(
                trace_id,
                ids.new_span_id(),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: format!("POST /pay/{i}").into(),
            start_time: now - Duration::from_millis(20),
            end_time: now,
            attributes: vec![KeyValue::new("http.route", "/pay")],
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Ok,
            instrumentation_scope: InstrumentationScope::builder("e2e.rust.tls").build(),
        })
        .collect();
    let mut span_ids: Vec<String> = spans.iter().map(|s| s.span_context.span_id().to_string()).collect();
    span_ids.sort();
    (spans, trace_id.to_string(), span_ids)
}

/// Exports one trace of three spans with `exporter`; the result and the trace's ids.
fn rust_export(
    rt: &tokio::runtime::Runtime,
    exporter: &opentelemetry_otlp::SpanExporter,
) -> (Result<(), String>, String, Vec<String>) {
    let (spans, trace_id, span_ids) = rust_spans(3);
    let result = rt.block_on(exporter.export(spans)).map_err(|e| format!("{e:?}"));
    (result, trace_id, span_ids)
}

/// The Rust SDK over gRPC: an `ns/pay` certificate writes to `pay`; a valid certificate
/// outside the allow-list, and an allowed one naming another tenant, get `PERMISSION_DENIED`;
/// a client without a certificate, one whose certificate another trust domain's CA signed and
/// one with an expired certificate fail at the handshake.
#[test]
fn rust_sdk_identity_names_the_tenant() {
    let setup = start();
    let rt = runtime();
    let server = &setup.server;

    let order = rust_exporter(&rt, &setup, Some(&setup.prod.client(ORDER)), None);
    let (result, trace_id, span_ids) = rust_export(&rt, &order);
    assert_eq!(result, Ok(()), "an ns/pay certificate");

    let refused: [(&str, opentelemetry_otlp::SpanExporter); 2] = [
        ("ns/shop certificate", rust_exporter(&rt, &setup, Some(&setup.prod.client(CART)), None)),
        (
            "ns/pay certificate naming tenant shop",
            rust_exporter(&rt, &setup, Some(&setup.prod.client(ORDER)), Some("shop")),
        ),
    ];
    let mut refused_traces = Vec::new();
    for (what, exporter) in &refused {
        let (result, trace_id, _) = rust_export(&rt, exporter);
        let error = result.expect_err(what);
        assert!(error.contains("PermissionDenied"), "{what}: {error}");
        refused_traces.push(trace_id);
    }
    let handshake: [(&str, opentelemetry_otlp::SpanExporter); 3] = [
        ("no certificate", rust_exporter(&rt, &setup, None, None)),
        (
            "dev.example's CA signing a prod.example ID",
            rust_exporter(&rt, &setup, Some(&setup.dev.client(ORDER)), None),
        ),
        ("expired certificate", rust_exporter(&rt, &setup, Some(&setup.prod.expired_client(ORDER)), None)),
    ];
    for (what, exporter) in &handshake {
        let (result, trace_id, _) = rust_export(&rt, exporter);
        let error = result.expect_err(what);
        assert!(!error.contains("PermissionDenied"), "{what} got as far as a request: {error}");
        refused_traces.push(trace_id);
    }

    wait_for_spans(server, "pay", 3);
    assert_eq!(trace_of(server, &trace_id, "pay"), Some(span_ids));
    for trace_id in &refused_traces {
        for tenant in ["pay", "shop", "anonymous"] {
            assert_eq!(trace_of(server, trace_id, tenant), None, "refused trace {trace_id} stored in {tenant}");
        }
    }
    let text = metrics(server);
    assert_eq!(sample(&text, "slo_gate_received_items_total", &[("signal", "traces")]), 3.0, "{text}");
    for principal in [CART, ORDER] {
        let denied = [("listener", "otlp_grpc"), ("principal", principal), ("outcome", "denied")];
        assert!(sample(&text, "slo_gate_auth_requests_total", &denied) >= 1.0, "{principal}:\n{text}");
    }
    for reason in ["no_certificate", "untrusted", "expired"] {
        let refused = [("listener", "otlp_grpc"), ("reason", reason)];
        assert!(sample(&text, "slo_gate_tls_handshake_failures_total", &refused) >= 1.0, "{reason}:\n{text}");
    }
}

/// The certificate the server presents to a new TLS connection on `addr` (a plain rustls
/// client with `identity`, which the listener requires; only the server's side is read).
fn presented_certificate(addr: std::net::SocketAddr, ca: &str, identity: &Pair) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).expect("CA PEM")).expect("CA certificate");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(identity.cert.as_bytes()).expect("client PEM")],
            PrivateKeyDer::from_pem_slice(identity.key.as_bytes()).expect("client key PEM"),
        )
        .expect("client certificate");
    let name = ServerName::try_from("localhost").expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let mut sock = std::net::TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"));
    }
    let der = conn.peer_certificates().and_then(|c| c.first()).expect("a server certificate").to_vec();
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    let _ = sock.flush();
    let _ = sock.read(&mut [0u8; 1]);
    der
}

/// A certificate rotation under an established client: the Rust SDK's gRPC exporter (one
/// HTTP/2 connection) exports, the server's certificate and key are renamed over with a new
/// pair, and once the collector has loaded them the same exporter exports again on the same
/// connection (no second handshake on the gRPC listener), while a new connection is shown
/// the new certificate.
#[test]
fn rust_sdk_keeps_its_connection_across_a_certificate_reload() {
    let setup = start();
    let rt = runtime();
    let server = &setup.server;
    let order = setup.prod.client(ORDER);
    let exporter = rust_exporter(&rt, &setup, Some(&order), None);
    let (result, first_trace, first_spans) = rust_export(&rt, &exporter);
    assert_eq!(result, Ok(()), "first export");

    let old_der = presented_certificate(server.http, &setup.prod.pem, &order);
    let text = metrics(server);
    let grpc = [("listener", "otlp_grpc")];
    assert_eq!(sample(&text, "slo_gate_tls_handshakes_total", &grpc), 1.0, "{text}");
    assert_eq!(sample(&text, "slo_gate_connections_open", &grpc), 1.0, "{text}");
    assert_eq!(sample(&text, "slo_gate_tls_reloads_total", &[]), 0.0, "{text}");

    let new = setup.prod.server();
    assert_ne!(new.der, old_der, "a new pair is another certificate");
    e2e::certs::replace(&setup.server_key, &new.key);
    e2e::certs::replace(&setup.server_cert, &new.cert);
    // reload_interval is 1 s: the files are looked at within a second or two.
    let seen = e2e::eventually(Duration::from_secs(10), || {
        (presented_certificate(server.http, &setup.prod.pem, &order) == new.der).then_some(())
    });
    assert!(seen.is_some(), "new connections were never shown the new certificate:\n{}", metrics(server));
    let text = metrics(server);
    assert!(sample(&text, "slo_gate_tls_reloads_total", &[]) >= 1.0, "{text}");

    let (result, second_trace, second_spans) = rust_export(&rt, &exporter);
    assert_eq!(result, Ok(()), "export on the connection opened before the reload");
    let text = metrics(server);
    assert_eq!(
        sample(&text, "slo_gate_tls_handshakes_total", &grpc),
        1.0,
        "the exporter had to handshake again:\n{text}"
    );
    assert_eq!(sample(&text, "slo_gate_connections_open", &grpc), 1.0, "{text}");

    wait_for_spans(server, "pay", 6);
    assert_eq!(trace_of(server, &first_trace, "pay"), Some(first_spans));
    assert_eq!(trace_of(server, &second_trace, "pay"), Some(second_spans));
}
