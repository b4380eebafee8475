//! Tenant isolation through every route: with `[auth] required = true`, tenant A's token
//! cannot read (or write) tenant B's data through any API — native, gate, Grafana's
//! Prometheus, Tempo and Pyroscope APIs, the push routes and both OTLP listeners.
//!
//! The routes are not listed by hand: they are read from the collector's source (every
//! `.route(` call), so a route added later is checked by this test without anyone touching
//! it, and a route whose path is not a literal fails the test until its paths are added to
//! `expand` below.

use std::time::Duration;

use base64::Engine;
use e2e::Server;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::json;

const ALICE: &str = "alice-secret-token-0123456789abcdef";
const BOB: &str = "bob-secret-token-0123456789abcdef01";
const BOB_PASSWORD: &str = "bob's chosen password";
/// What tenant b's data carries, looked for in every answer tenant a's token gets.
const MARKERS: [&str; 3] = ["svc-b-secret", "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0", "b-secret-metric"];
const TRACE_ID: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
const JWT_KEY: &[u8] = b"the HMAC key of the test issuer, 32+ bytes";
/// Holds the `admin` scope for tenant a only.
const OPS_A: &str = "ops-a-secret-token-0123456789abcdef";

fn sha(token: &str) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(token.as_bytes())))
}

fn argon2(password: &str) -> String {
    let out = std::process::Command::new(e2e::binary())
        .args(["tokens", "new", "--id", "bob-grafana", "--tenants", "b", "--scopes", "read", "--argon2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(password.as_bytes())?;
            child.wait_with_output()
        })
        .expect("slo-gate tokens new --argon2");
    assert!(out.status.success(), "{}", e2e::output_text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Setup {
    server: Server,
    dir: tempfile::TempDir,
}

fn start() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!(
            "# id tenants scopes digest\nalice a read,write,gate-write {}\nbob b read,write,gate-write {}\nops-a a admin {}\n{}\n",
            sha(ALICE),
            sha(BOB),
            sha(OPS_A),
            argon2(BOB_PASSWORD)
        ),
    )
    .unwrap();
    let jwks = dir.path().join("jwks.json");
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(JWT_KEY);
    std::fs::write(&jwks, json!({"keys": [{"kty": "oct", "kid": "mesh", "alg": "HS256", "k": k}]}).to_string())
        .unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nrequired = true\nreload_interval = \"1s\"\ntoken_file = {:?}\n[auth.jwt]\njwks_file = {:?}\naudience = \"slo-gate\"\n\
             default_scopes = [\"read\", \"write\"]\n",
            tokens.display().to_string(),
            jwks.display().to_string()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", config.to_str().unwrap()]);
    Setup { server, dir }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn jwt(claims: serde_json::Value, key: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("mesh".into());
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(key)).unwrap()
}

/// Tenant b's spans, metrics, logs, a profile and a gate run, written with bob's token.
fn write_tenant_b(server: &Server) {
    write_tenant(server, "b", BOB);
}

/// A tenant's spans (service `svc-<t>-secret`, trace id `<t>0<t>0…`), a gauge
/// `<t>-secret-metric`, a log line, a profile and a gate run, written with `token`.
fn write_tenant(server: &Server, tenant: &str, token: &str) {
    let client = Client::new();
    let t = now_ns();
    let service = format!("svc-{tenant}-secret");
    let trace_id = format!("{tenant}0").repeat(16);
    let resource = json!({"attributes": [{"key": "service.name", "value": {"stringValue": service}}]});
    let bodies = [
        (
            "/v1/traces",
            json!({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [{
            "traceId": trace_id, "spanId": &trace_id[..16], "name": format!("GET /{service}"), "kind": 2,
            "startTimeUnixNano": (t - 5_000_000).to_string(), "endTimeUnixNano": t.to_string(),
            "attributes": [{"key": "http.route", "value": {"stringValue": format!("/{service}")}}]}]}]}]}),
        ),
        (
            "/v1/metrics",
            json!({"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": [{
            "name": format!("{tenant}-secret-metric"), "gauge": {"dataPoints": [{"asDouble": 1.5, "timeUnixNano": t.to_string()}]}}]}]}]}),
        ),
        (
            "/v1/logs",
            json!({"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [{
            "timeUnixNano": t.to_string(), "body": {"stringValue": format!("{service} log line")}}]}]}]}),
        ),
    ];
    for (path, body) in bodies {
        let response = client
            .post(server.http_url(path))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{path}: {}", response.text().unwrap_or_default());
    }
    let pprof = std::fs::read(e2e::manifest_dir().join("../testdata/corpus/go-dev/fast/cpu-10s.pb.gz")).unwrap();
    let response = client
        .post(server.api_url(&format!("/ingest?name={service}.cpu&format=pprof")))
        .header("authorization", format!("Bearer {token}"))
        .header("X-Scope-OrgID", tenant)
        .body(pprof)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().unwrap_or_default());
    let run = json!({"service": service, "environment": "prod", "version": "1.0.0",
        "time_unix_nano": t, "verdict": "pass", "blocked": false,
        "objectives": [{"name": format!("{service}-latency"), "verdict": "pass"}]});
    let response = client
        .post(server.api_url("/api/v1/gate/runs"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(run.to_string())
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.text().unwrap_or_default());
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Grpc,
    Http,
    Api,
}

#[derive(Debug, Clone)]
struct Route {
    port: Port,
    path: String,
    /// gRPC (HTTP/2, `application/grpc`).
    grpc: bool,
    /// Where it was found.
    at: String,
}

/// The collector's routes, read from its source.
fn routes() -> Vec<Route> {
    let src = e2e::manifest_dir().join("../collector/src");
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut routes = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests' own servers are not the collector's routes.
        let text = text.split("#[cfg(test)]").next().unwrap();
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        let port = match rel.as_str() {
            "receive/otlp_grpc.rs" => Port::Grpc,
            "receive/otlp_http.rs" => Port::Http,
            _ => Port::Api,
        };
        for (i, _) in text.match_indices(".route(") {
            let args = &text[i + ".route(".len()..];
            let arg = first_argument(args);
            for (path, grpc) in expand(arg.trim(), &rel) {
                routes.push(Route {
                    port,
                    path,
                    grpc: grpc || port == Port::Grpc,
                    at: format!("{rel}: {}", arg.trim()),
                });
            }
        }
    }
    routes
}

fn first_argument(args: &str) -> &str {
    let mut depth = 0i32;
    let mut in_string = false;
    for (i, c) in args.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '(' | '[' | '{' if !in_string => depth += 1,
            ')' | ']' | '}' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => return &args[..i],
            _ => {}
        }
    }
    args
}

/// The concrete paths of a route's first argument: a literal with its parameters filled in,
/// or one of the non-literal paths known here.
fn expand(arg: &str, file: &str) -> Vec<(String, bool)> {
    if let Some(literal) = arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
        let path =
            literal.replace("{trace_id}", TRACE_ID).replace("{tag}", "service.name").replace("{name}", "service_name");
        assert!(!path.contains('{'), "{file}: route {literal} has a parameter this test does not fill; add it");
        return vec![(path, false)];
    }
    let otlp = |signal: &str, service: &str, version: &str| {
        (format!("/opentelemetry.proto.collector.{signal}.{version}.{service}/Export"), true)
    };
    match arg {
        "ExportTraceServiceRequest::GRPC_EXPORT_PATH" => vec![otlp("trace", "TraceService", "v1")],
        "ExportMetricsServiceRequest::GRPC_EXPORT_PATH" => vec![otlp("metrics", "MetricsService", "v1")],
        "ExportLogsServiceRequest::GRPC_EXPORT_PATH" => vec![otlp("logs", "LogsService", "v1")],
        "ExportProfilesServiceRequest::GRPC_EXPORT_PATH" => vec![otlp("profiles", "ProfilesService", "v1development")],
        "grpc::SEARCH_PATH" => vec![("/tempopb.StreamingQuerier/Search".into(), true)],
        "&format!(\"/{SERVICE}/{{method}}\")" => {
            pyroscope_methods().into_iter().map(|m| (format!("/querier.v1.QuerierService/{m}"), false)).collect()
        }
        other => panic!("{file}: route {other} is not a literal path; add its paths to `expand` in this test"),
    }
}

/// The methods the Pyroscope querier route dispatches, from its `METHODS` table.
fn pyroscope_methods() -> Vec<String> {
    let text = std::fs::read_to_string(e2e::manifest_dir().join("../collector/src/query/pyroscope/mod.rs")).unwrap();
    let table = text.split("pub const METHODS").nth(1).expect("METHODS in query/pyroscope/mod.rs");
    let table = &table[table.find('[').unwrap()..];
    let table = &table[table.find('=').unwrap()..table.find("];").unwrap()];
    let methods: Vec<String> = table.split('"').skip(1).step_by(2).map(str::to_string).collect();
    assert!(methods.len() >= 10, "{methods:?}");
    methods
}

/// Whether an answer holds one of tenant b's markers that the request did not itself carry
/// (a "trace … not found" names the id it was asked for).
fn leaks(route: &Route, answer: &Answer) -> bool {
    MARKERS.iter().any(|m| !route.path.contains(m) && answer.body.contains(m))
}

#[derive(Debug)]
struct Answer {
    status: u16,
    grpc_status: Option<String>,
    body: String,
}

impl Answer {
    fn unauthenticated(&self) -> bool {
        self.status == 401 || self.grpc_status.as_deref() == Some("16")
    }

    fn denied(&self) -> bool {
        self.status == 403 || self.grpc_status.as_deref() == Some("7")
    }
}

fn send(server: &Server, route: &Route, method: &str, auth: Option<&str>, tenant: Option<&str>) -> Answer {
    let addr = match route.port {
        Port::Grpc => server.grpc,
        Port::Http => server.http,
        Port::Api => server.api,
    };
    let url = format!("http://{addr}{}", route.path);
    let client = match route.grpc {
        true => Client::builder().http2_prior_knowledge().timeout(Duration::from_secs(10)).build().unwrap(),
        false => Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
    };
    let mut request: RequestBuilder = match (route.grpc, method) {
        (true, _) => {
            client.post(&url).header("content-type", "application/grpc").header("te", "trailers").body(vec![0u8; 5])
        }
        (false, "GET") => client.get(&url),
        (false, _) => client.post(&url).header("content-type", "application/json").body("{}"),
    };
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let response = request.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let grpc_status = response.headers().get("grpc-status").map(|v| v.to_str().unwrap_or("?").to_string());
    let body = response.text().unwrap_or_default();
    Answer { status, grpc_status, body }
}

fn open(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

#[test]
fn no_route_lets_one_tenants_token_reach_another_tenants_data() {
    // The temporary directory (data, token file) lives as long as `setup`.
    let setup = start();
    let server = &setup.server;
    write_tenant_b(server);
    let routes = routes();
    assert!(routes.len() >= 45, "only {} routes found in the source: {routes:?}", routes.len());
    let alice = format!("Bearer {ALICE}");
    let bob = format!("Bearer {BOB}");
    // Bob's own answers do hold his data (so the markers would be seen if they leaked).
    let (status, services) = server.get_with("/api/v1/services", Some("b"), Some(&bob));
    assert_eq!(status, 200);
    assert!(services.contains("svc-b-secret"), "{services}");

    let mut checked = 0;
    for route in &routes {
        for method in ["GET", "POST"] {
            if route.grpc && method == "GET" {
                continue;
            }
            let what = format!("{method} {} ({})", route.path, route.at);
            if open(&route.path) {
                let answer = send(server, route, method, None, None);
                assert!(!answer.unauthenticated() && !answer.denied(), "{what}: {answer:?}");
                continue;
            }
            // No credential at all: refused before anything else.
            let answer = send(server, route, method, None, Some("b"));
            assert!(answer.unauthenticated(), "{what} without a credential: {answer:?}");
            assert!(!leaks(route, &answer), "{what}: {answer:?}");
            if route.path == "/metrics" {
                continue;
            }
            // Admin routes: neither alice nor bob holds the scope, for any tenant; what an
            // admin may do is `an_admin_deletes_its_tenant_and_no_other`'s.
            if route.path.starts_with("/api/v1/admin/") {
                for (who, tenant) in [(&alice, "a"), (&alice, "b"), (&bob, "b")] {
                    let answer = send(server, route, method, Some(who), Some(tenant));
                    assert!(answer.denied(), "{what} for {tenant}: {answer:?}");
                    assert!(answer.body.contains("may not administer"), "{what}: {answer:?}");
                }
                checked += 1;
                continue;
            }
            // Alice naming tenant b: refused, nothing of b in the answer.
            let answer = send(server, route, method, Some(&alice), Some("b"));
            assert!(answer.denied(), "{what} as alice for tenant b: {answer:?}");
            assert!(!leaks(route, &answer), "{what}: {answer:?}");
            // Alice naming no tenant, or her own: whatever the answer, nothing of b in it.
            for tenant in [None, Some("a")] {
                let answer = send(server, route, method, Some(&alice), tenant);
                assert!(!answer.unauthenticated() && !answer.denied(), "{what} as alice for {tenant:?}: {answer:?}");
                assert!(!leaks(route, &answer), "{what} as alice: {answer:?}");
            }
            // Bob for his own tenant is let through (the check does not refuse everyone).
            let answer = send(server, route, method, Some(&bob), Some("b"));
            assert!(!answer.unauthenticated() && !answer.denied(), "{what} as bob: {answer:?}");
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} route × method pairs checked");
    // Every refusal above is in the audit counters, with who asked for which tenant.
    let (_, metrics) = server.get_with("/metrics", None, Some(&alice));
    assert!(
        metrics.contains(r#"kind="token",principal="alice",tenant="b",scope="read",outcome="denied""#),
        "{metrics}"
    );
}

#[test]
fn basic_auth_jwts_and_tenants_from_identity() {
    // The temporary directory (data, token file) lives as long as `setup`.
    let setup = start();
    let server = &setup.server;
    write_tenant_b(server);
    // Grafana's basic auth: the token id and its secret, or a password kept as argon2.
    let basic = |user: &str, secret: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
    };
    let (status, body) = server.get_with("/api/v1/services", None, Some(&basic("bob", BOB)));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("svc-b-secret"), "bob's token implies tenant b: {body}");
    let (status, body) = server.get_with("/api/v1/services", Some("b"), Some(&basic("bob-grafana", BOB_PASSWORD)));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("svc-b-secret"), "{body}");
    let (status, body) = server.get_with("/api/v1/services", Some("b"), Some(&basic("bob-grafana", "wrong")));
    assert_eq!(status, 401, "{body}");
    // A read-only token cannot write.
    let response = Client::new()
        .post(server.http_url("/v1/traces"))
        .header("authorization", basic("bob-grafana", BOB_PASSWORD))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(response.status(), 403);

    // JWTs: the tenant claim decides; expired and foreign-signed ones are refused with why.
    let exp = now_ns() / 1_000_000_000 + 600;
    let good = jwt(json!({"sub": "mesh/order", "aud": "slo-gate", "exp": exp, "tenant": "b"}), JWT_KEY);
    let (status, body) = server.get_with("/api/v1/services", None, Some(&format!("Bearer {good}")));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("svc-b-secret"), "{body}");
    let (status, body) = server.get_with("/api/v1/services", Some("a"), Some(&format!("Bearer {good}")));
    assert_eq!(status, 403, "{body}");
    let expired = jwt(json!({"sub": "mesh/order", "aud": "slo-gate", "exp": exp - 7200, "tenant": "b"}), JWT_KEY);
    let (status, body) = server.get_with("/api/v1/services", None, Some(&format!("Bearer {expired}")));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("expired"), "{body}");
    let forged = jwt(
        json!({"sub": "mesh/order", "aud": "slo-gate", "exp": exp, "tenant": "b"}),
        b"another issuer's key, 32 bytes long!",
    );
    let (status, body) = server.get_with("/api/v1/services", None, Some(&format!("Bearer {forged}")));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("signature"), "{body}");
    // A write as alice to tenant b over OTLP/HTTP: 403 in OTLP's error body, nothing stored.
    let before = server.get_with("/api/v1/stats", Some("b"), Some(&format!("Bearer {BOB}"))).1;
    let response = Client::new()
        .post(server.http_url("/v1/traces"))
        .header("authorization", format!("Bearer {ALICE}"))
        .header("X-Scope-OrgID", "b")
        .header("content-type", "application/json")
        .body(
            json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
            "spanId": "a1a1a1a1a1a1a1a1", "name": "x", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]})
            .to_string(),
        )
        .send()
        .unwrap();
    assert_eq!(response.status(), 403);
    let text = response.text().unwrap();
    assert!(text.contains("\"code\":7") && text.contains("alice"), "{text}");
    std::thread::sleep(Duration::from_millis(200));
    let after = server.get_with("/api/v1/stats", Some("b"), Some(&format!("Bearer {BOB}"))).1;
    assert_eq!(before, after, "nothing stored for tenant b");
}

#[test]
fn a_bad_token_file_stops_the_collector_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("alice a read {}\nbob b read,superuser {}\n", sha(ALICE), sha(BOB))).unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!("[auth]\ntoken_file = {:?}\n", tokens.display().to_string())).unwrap();
    let out = std::process::Command::new(e2e::binary())
        .args(["serve", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = e2e::output_text(&out);
    assert!(text.contains("tokens, line 2: unknown scope \"superuser\""), "{text}");
}

trait GetWith {
    fn get_with(&self, path: &str, tenant: Option<&str>, auth: Option<&str>) -> (u16, String);
}

impl GetWith for Server {
    fn get_with(&self, path: &str, tenant: Option<&str>, auth: Option<&str>) -> (u16, String) {
        api_request(self, reqwest::Method::GET, path, tenant, auth)
    }
}

/// A request to the API as `tenant` (no header when `None`) with `auth` as `Authorization`.
fn api_request(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    tenant: Option<&str>,
    auth: Option<&str>,
) -> (u16, String) {
    let mut request = Client::new().request(method, server.api_url(path));
    if let Some(t) = tenant {
        request = request.header("X-Scope-OrgID", t);
    }
    if let Some(a) = auth {
        request = request.header("authorization", a);
    }
    let response = request.send().unwrap();
    (response.status().as_u16(), response.text().unwrap_or_default())
}

#[test]
fn the_token_file_is_reloaded_when_it_changes_and_a_bad_version_keeps_the_old_tokens() {
    let setup = start();
    let server = &setup.server;
    let tokens = setup.dir.path().join("tokens");
    let alice = format!("Bearer {ALICE}");
    let carol_token = "carol-secret-token-0123456789abcdef";
    let carol = format!("Bearer {carol_token}");
    assert_eq!(server.get_with("/api/v1/services", None, Some(&alice)).0, 200);
    assert_eq!(server.get_with("/api/v1/services", None, Some(&carol)).0, 401);
    // Alice's token revoked, carol's added: without a restart.
    std::fs::write(&tokens, format!("carol a read {}\n", sha(carol_token))).unwrap();
    let reloaded = e2e::eventually(Duration::from_secs(10), || {
        (server.get_with("/api/v1/services", None, Some(&carol)).0 == 200).then_some(())
    });
    assert!(reloaded.is_some(), "carol's token never took effect");
    assert_eq!(server.get_with("/api/v1/services", None, Some(&alice)).0, 401, "alice's token was revoked");
    // A bad new version is refused; the tokens in force stay.
    std::fs::write(&tokens, "carol a read not-a-digest\n").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(server.get_with("/api/v1/services", None, Some(&carol)).0, 200);
}

fn post_with(server: &Server, path: &str, tenant: Option<&str>, auth: Option<&str>) -> (u16, String) {
    api_request(server, reqwest::Method::POST, path, tenant, auth)
}

/// What `token` reads of `tenant` through the native, Prometheus, Tempo, gate and flame-graph
/// APIs, each answer as text, for looking for the tenant's markers in.
fn reads(server: &Server, tenant: &str, token: &str) -> Vec<(String, String)> {
    let auth = format!("Bearer {token}");
    let trace_id = format!("{tenant}0").repeat(16);
    let service = format!("svc-{tenant}-secret");
    [
        "/api/v1/services".to_string(),
        format!("/api/v1/traces/{trace_id}"),
        format!("/api/traces/{trace_id}"),
        "/api/search?tags=&limit=20".to_string(),
        "/api/v1/label/__name__/values".to_string(),
        format!("/api/v1/logs?service={service}"),
        format!("/api/v1/gate/runs?service={service}"),
        "/api/v1/profile-types".to_string(),
    ]
    .into_iter()
    .map(|path| {
        let (status, body) = server.get_with(&path, Some(tenant), Some(&auth));
        (path, format!("{status} {body}"))
    })
    .collect()
}

#[test]
fn an_admin_deletes_its_tenant_and_no_other() {
    let setup = start();
    write_tenant(&setup.server, "a", ALICE);
    write_tenant_b(&setup.server);
    let server = &setup.server;
    let ops = format!("Bearer {OPS_A}");
    // Every read sees each tenant's own data before.
    for (tenant, token) in [("a", ALICE), ("b", BOB)] {
        for (path, answer) in reads(server, tenant, token) {
            if path != "/api/v1/profile-types" {
                assert!(
                    answer.contains(&format!("{tenant}-secret"))
                        || answer.contains(&format!("{tenant}_secret"))
                        || answer.contains(&format!("{tenant}0{tenant}0")),
                    "{tenant} {path}: {answer}"
                );
            }
        }
    }

    // Refused: without a credential, without the scope, for another tenant, with no tenant named.
    let (status, body) = post_with(server, "/api/v1/admin/delete_tenant", Some("a"), None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = post_with(server, "/api/v1/admin/delete_tenant", Some("a"), Some(&format!("Bearer {ALICE}")));
    assert_eq!(status, 403, "alice writes and reads a, but may not delete it: {body}");
    let (status, body) = post_with(server, "/api/v1/admin/delete_tenant", Some("b"), Some(&ops));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains(r#"may not administer tenant \"b\""#), "{body}");
    let (status, body) = post_with(server, "/api/v1/admin/delete_tenant", None, Some(&ops));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("X-Scope-OrgID"), "{body}");
    let (status, body) = server.get_with("/api/v1/admin/delete_tenant", Some("a"), Some(&ops));
    assert_eq!(status, 405, "only POST deletes: {body}");
    // Nothing was deleted by the refused requests.
    let (_, services) = server.get_with("/api/v1/services", Some("a"), Some(&format!("Bearer {ALICE}")));
    assert!(services.contains("svc-a-secret"), "{services}");

    let (status, body) = post_with(server, "/api/v1/admin/delete_tenant", Some("a"), Some(&ops));
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["tenant"], "a", "{body}");
    let deleted = &answer["deleted"];
    assert!(deleted["rows_deleted"].as_u64().unwrap() >= 4, "spans, a gauge point, a log line, samples: {body}");
    assert!(deleted["parts_deleted"].as_u64().unwrap() + deleted["parts_rewritten"].as_u64().unwrap() >= 3, "{body}");
    assert!(deleted["series_segments_deleted"].as_u64().unwrap() >= 1, "{body}");
    assert!(deleted["other_files_deleted"].as_u64().unwrap() >= 1, "the gate history: {body}");

    let check = |server: &Server| {
        for (path, answer) in reads(server, "a", ALICE) {
            if path.contains("/traces/") {
                assert!(answer.starts_with("404 "), "{path}: {answer}");
                continue;
            }
            assert!(
                !answer.contains("a-secret") && !answer.contains("a_secret") && !answer.contains("a0a0a0"),
                "{path}: {answer}"
            );
        }
        for (path, answer) in reads(server, "b", BOB) {
            if path != "/api/v1/profile-types" {
                assert!(
                    answer.contains("b-secret") || answer.contains("b_secret") || answer.contains("b0b0b0"),
                    "b {path}: {answer}"
                );
            }
        }
        let (_, types) = server.get_with("/api/v1/profile-types", Some("a"), Some(&format!("Bearer {ALICE}")));
        let (_, b_types) = server.get_with("/api/v1/profile-types", Some("b"), Some(&format!("Bearer {BOB}")));
        assert!(!types.contains("cpu") && b_types.contains("cpu"), "{types} / {b_types}");
    };
    check(server);
    assert!(!setup.dir.path().join("data/gate/a").exists());
    assert!(setup.dir.path().join("data/gate/b").exists());
    let (_, metrics) = server.get_with("/metrics", None, Some(&ops));
    assert!(metrics.contains("slo_gate_tenants_deleted_total 1"), "{metrics}");
    assert!(
        metrics.contains(r#"kind="token",principal="ops-a",tenant="a",scope="admin",outcome="allowed""#),
        "the deletion is in the audit counters"
    );

    // After a restart: still gone, the other tenant still whole.
    let Setup { server, dir } = setup;
    server.stop();
    let config = dir.path().join("collector.toml");
    let server = Server::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    check(&server);
}
