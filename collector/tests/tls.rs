//! TLS on the collector's listeners, driven from outside: a collector in this process on
//! loopback ports, certificates made here with rcgen, clients built with rustls and hyper.
//!
//! What is shown: a TLS client gets `/healthz` and a plaintext one gets nothing; the gRPC
//! listener negotiates `h2` only; on a listener that requires client certificates, a client
//! without one, one whose SPIFFE ID is signed by another trust domain's CA, an expired one and
//! ones with two or no URI SANs are refused at the handshake and counted by reason; and a
//! certificate replaced on disk reaches new connections while an HTTP/2 connection opened
//! before goes on answering, and a bad file is counted and changes nothing; a silent client is
//! cut at the handshake deadline and an idle TLS connection at the idle timeout; no session is
//! resumed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use collector::config::{ClientAuth, Config, TlsConfig};
use collector::{Collector, RunningCollector};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use slo_contracts::HumanDuration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A CA of one trust domain.
struct Ca {
    pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { pem: issuer.pem(), issuer }
    }

    /// (certificate PEM, key PEM) of the server: `localhost` and `127.0.0.1`.
    fn server(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }

    /// (certificate PEM, key PEM) of a client with `uris` as its URI SANs.
    fn client(&self, uris: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "workload");
        params.subject_alt_names = uris.iter().map(|u| SanType::URI((*u).try_into().unwrap())).collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        edit(&mut params);
        (params.signed_by(&key, &self.issuer).unwrap().pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes `text` beside `name` and renames it over, as certificate managers do.
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.new"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

const ORDER_SERVICE: &str = "spiffe://prod.example/ns/pay/sa/order-service";

struct Setup {
    dir: tempfile::TempDir,
    prod: Ca,
    staging: Ca,
    running: RunningCollector,
}

/// A collector whose listeners all speak TLS, with client certificates of `prod.example`
/// (and `staging.example`) verified under `client_auth`; the API's client auth is `optional`
/// so the test can read `/metrics` without a certificate.
async fn start(client_auth: ClientAuth, reload_interval: Duration) -> Setup {
    start_with(client_auth, reload_interval, |_| {}).await
}

/// [`start`] with `edit` applied to the configuration.
async fn start_with(client_auth: ClientAuth, reload_interval: Duration, edit: impl FnOnce(&mut Config)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let prod = Ca::new("prod.example CA");
    let staging = Ca::new("staging.example CA");
    let (cert, key) = prod.server();
    let mut tls = TlsConfig::new(write(dir.path(), "server.pem", &cert), write(dir.path(), "server-key.pem", &key));
    tls.client_auth = client_auth;
    tls.client_auth_per_listener = BTreeMap::from([("api".to_string(), ClientAuth::Optional)]);
    tls.reload_interval = HumanDuration(reload_interval);
    tls.trust_domains = BTreeMap::from([
        ("prod.example".to_string(), write(dir.path(), "prod-bundle.pem", &prod.pem)),
        ("staging.example".to_string(), write(dir.path(), "staging-bundle.pem", &staging.pem)),
    ]);
    tls.validate().unwrap();
    let mut config = Config {
        otlp_grpc: "127.0.0.1:0".parse().unwrap(),
        otlp_http: "127.0.0.1:0".parse().unwrap(),
        api: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        tls: Some(tls),
        ..Config::default()
    };
    config.analysis.enabled = false;
    edit(&mut config);
    let running = Collector::start(config).await.unwrap();
    Setup { dir, prod, staging, running }
}

/// A client trusting `ca`, offering `alpn`, with `identity` as its certificate if any.
fn client(ca: &Ca, identity: Option<&(String, String)>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap()).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn connect(connector: &TlsConnector, addr: std::net::SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

/// `GET path` over HTTP/1.1 on a new TLS connection: the status and body, or the error of the
/// handshake or the request (with TLS 1.3 a refused client certificate shows as an alert when
/// the client first reads).
async fn get(connector: &TlsConnector, addr: std::net::SocketAddr, path: &str) -> Result<(StatusCode, String), String> {
    let tls = connect(connector, addr).await.map_err(|e| format!("handshake: {e}"))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::get(path).header("host", "localhost").body(Empty::new()).unwrap();
    let response = send.send_request(request).await.map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn metrics(s: &Setup) -> String {
    let (status, body) = get(&client(&s.prod, None, &[]), s.running.api, "/metrics").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    body
}

/// `/metrics` once `done` holds of it (the server counts a refused handshake just after the
/// client sees the refusal), or after five seconds.
async fn settled(s: &Setup, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics(s).await;
        if done(&text) || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

#[tokio::test]
async fn tls_listeners_answer_tls_clients_only() {
    let s = start(ClientAuth::None, Duration::from_secs(60)).await;
    let anonymous = client(&s.prod, None, &[b"h2", b"http/1.1"]);
    assert_eq!(get(&anonymous, s.running.api, "/healthz").await.unwrap().0, StatusCode::OK);
    // The OTLP/HTTP listener answers over TLS too (it has no `/healthz`: any answer will do).
    assert_eq!(get(&anonymous, s.running.otlp_http, "/healthz").await.unwrap().0, StatusCode::NOT_FOUND);
    // The gRPC listener speaks HTTP/2 only and says so in ALPN.
    let tls = connect(&anonymous, s.running.otlp_grpc).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let api = connect(&anonymous, s.running.api).await.unwrap();
    assert_eq!(api.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // No session is resumed: every connection verifies its client at its own handshake.
    for _ in 0..2 {
        let mut tls = connect(&anonymous, s.running.api).await.unwrap();
        // Read the answer to a request, so that any session ticket sent after the handshake
        // has arrived before the next connection.
        tokio::io::AsyncWriteExt::write_all(
            &mut tls,
            b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut answer).await;
        assert_eq!(tls.get_ref().1.handshake_kind(), Some(rustls::HandshakeKind::Full));
    }
    let http1_only = client(&s.prod, None, &[b"http/1.1"]);
    let api = connect(&http1_only, s.running.api).await.unwrap();
    assert_eq!(api.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // A client that does not trust the server's CA refuses it, and the server counts that.
    let distrustful = client(&s.staging, None, &[]);
    assert!(connect(&distrustful, s.running.otlp_http).await.is_err());
    // A plaintext request to a TLS port gets no HTTP answer.
    let tcp = TcpStream::connect(s.running.api).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request = Request::get("/healthz").header("host", "localhost").body(Empty::new()).unwrap();
    assert!(send.send_request(request).await.is_err(), "a plaintext client was answered");
    let text = settled(&s, |text| {
        counter(text, "slo_gate_tls_handshake_failures_total{listener=\"api\",reason=\"protocol\"}") == 1
    })
    .await;
    assert!(counter(&text, "slo_gate_tls_handshakes_total{listener=\"otlp_grpc\"}") >= 1);
    let refused = "slo_gate_tls_handshake_failures_total{listener=\"otlp_http\",reason=\"server_certificate_refused\"}";
    let text = settled(&s, |text| counter(text, refused) == 1).await;
    assert_eq!(counter(&text, refused), 1);
    drop((tls, api));
    s.running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn client_certificates_are_verified_against_their_own_trust_domain() {
    let s = start(ClientAuth::Required, Duration::from_secs(60)).await;
    let addr = s.running.otlp_http;
    let good = s.prod.client(&[ORDER_SERVICE], |_| {});
    assert_eq!(get(&client(&s.prod, Some(&good), &[]), addr, "/healthz").await.unwrap().0, StatusCode::NOT_FOUND);
    // A staging workload, verified against the staging bundle.
    let staging = s.staging.client(&["spiffe://staging.example/ns/pay/sa/order-service"], |_| {});
    assert_eq!(get(&client(&s.prod, Some(&staging), &[]), addr, "/healthz").await.unwrap().0, StatusCode::NOT_FOUND);

    let refused = [
        ("no certificate", None, "no_certificate"),
        // Claims a prod ID, signed by staging's CA (trusted, but for staging IDs only).
        ("another domain's CA", Some(s.staging.client(&[ORDER_SERVICE], |_| {})), "untrusted"),
        (
            "expired",
            Some(s.prod.client(&[ORDER_SERVICE], |p| {
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
            })),
            "expired",
        ),
        (
            "two URI SANs",
            Some(s.prod.client(&[ORDER_SERVICE, "spiffe://prod.example/ns/shop/sa/cart"], |_| {})),
            "not_svid",
        ),
        ("no URI SAN", Some(s.prod.client(&[], |_| {})), "not_svid"),
        (
            "unconfigured trust domain",
            Some(s.prod.client(&["spiffe://dev.example/ns/pay"], |_| {})),
            "unknown_trust_domain",
        ),
    ];
    for (what, identity, _) in &refused {
        let answer = get(&client(&s.prod, identity.as_ref(), &[]), addr, "/healthz").await;
        assert!(answer.is_err(), "{what}: answered {answer:?}");
    }
    // The collector still serves, and counted each refusal under its reason.
    assert_eq!(get(&client(&s.prod, Some(&good), &[]), addr, "/healthz").await.unwrap().0, StatusCode::NOT_FOUND);
    let series =
        |reason: &str| format!("slo_gate_tls_handshake_failures_total{{listener=\"otlp_http\",reason=\"{reason}\"}}");
    let expected = |reason: &str| refused.iter().filter(|r| r.2 == reason).count() as u64;
    let reasons = ["no_certificate", "untrusted", "expired", "not_svid", "unknown_trust_domain"];
    let text =
        settled(&s, |text| reasons.iter().map(|r| counter(text, &series(r))).sum::<u64>() == refused.len() as u64)
            .await;
    for reason in ["no_certificate", "untrusted", "expired", "not_svid", "unknown_trust_domain"] {
        assert_eq!(counter(&text, &series(reason)), expected(reason), "{reason}");
    }
    s.running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn stalled_handshakes_and_idle_tls_connections_are_closed() {
    let short = HumanDuration(Duration::from_millis(300));
    let s = start_with(ClientAuth::None, Duration::from_secs(60), |c| {
        c.server.header_read_timeout = short;
        c.server.idle_timeout = short;
    })
    .await;
    let mut buf = [0u8; 64];
    // A TCP connection that never says hello is cut after `header_read_timeout`.
    let mut silent = TcpStream::connect(s.running.api).await.unwrap();
    let began = tokio::time::Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut silent, &mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(began.elapsed() >= Duration::from_millis(250), "{:?}", began.elapsed());
    // A TLS connection that sends no request is closed after `idle_timeout`, as plaintext ones are.
    let mut idle = connect(&client(&s.prod, None, &[]), s.running.api).await.unwrap();
    let began = tokio::time::Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut idle, &mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert!(began.elapsed() >= Duration::from_millis(250), "{:?}", began.elapsed());
    let text = settled(&s, |text| {
        counter(text, "slo_gate_tls_handshake_failures_total{listener=\"api\",reason=\"timeout\"}") == 1
            && counter(text, "slo_gate_connections_idle_closed_total{listener=\"api\"}") >= 1
    })
    .await;
    assert_eq!(counter(&text, "slo_gate_tls_handshake_failures_total{listener=\"api\",reason=\"timeout\"}"), 1);
    assert!(counter(&text, "slo_gate_connections_idle_closed_total{listener=\"api\"}") >= 1);
    s.running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_verified_spiffe_id_reaches_the_access_check() {
    let auth = Config::from_toml(
        "[auth]\nrequired = true\n[[auth.spiffe]]\nid = \"spiffe://prod.example/ns/pay/*\"\ntenants = [\"pay\"]\nscopes = [\"read\", \"write\"]\n",
    )
    .unwrap()
    .auth;
    let s = start_with(ClientAuth::Optional, Duration::from_secs(60), |c| c.auth = auth).await;
    let addr = s.running.api;
    // `/metrics` needs an identity when credentials are required: the certificate's SPIFFE ID,
    // admitted by the rule, is one ...
    let pay = s.prod.client(&[ORDER_SERVICE], |_| {});
    assert_eq!(get(&client(&s.prod, Some(&pay), &[]), addr, "/metrics").await.unwrap().0, StatusCode::OK);
    // ... TLS without a certificate is none, and an ID outside every rule is not admitted.
    assert_eq!(get(&client(&s.prod, None, &[]), addr, "/metrics").await.unwrap().0, StatusCode::UNAUTHORIZED);
    let shop = s.prod.client(&["spiffe://prod.example/ns/shop/sa/cart"], |_| {});
    let (status, _) = get(&client(&s.prod, Some(&shop), &[]), addr, "/metrics").await.unwrap();
    assert!(matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), "{status}");
    s.running.stop(Duration::from_secs(5)).await;
}

/// The DER of the server certificate a new connection to `addr` is shown.
async fn server_certificate(connector: &TlsConnector, addr: std::net::SocketAddr) -> Vec<u8> {
    let tls = connect(connector, addr).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_replaced_certificate_reaches_new_connections_and_established_ones_keep_working() {
    let s = start(ClientAuth::Optional, Duration::from_millis(100)).await;
    let connector = client(&s.prod, None, &[b"h2"]);
    let addr = s.running.api;
    let first = CertificateDer::from_pem_slice(std::fs::read(s.dir.path().join("server.pem")).unwrap().as_slice())
        .unwrap()
        .to_vec();
    assert_eq!(server_certificate(&connector, addr).await, first);

    // An HTTP/2 connection opened before the reload.
    let tls = connect(&connector, addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let healthz = || Request::get("https://localhost/healthz").body(Empty::new()).unwrap();
    assert_eq!(h2.send_request(healthz()).await.unwrap().status(), StatusCode::OK);

    let (cert, key) = s.prod.server();
    let second = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap().to_vec();
    replace(s.dir.path(), "server-key.pem", &key);
    replace(s.dir.path(), "server.pem", &cert);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server_certificate(&connector, addr).await != second {
        assert!(tokio::time::Instant::now() < deadline, "the new certificate was not loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The established connection is the same one, still answering.
    h2.ready().await.unwrap();
    assert_eq!(h2.send_request(healthz()).await.unwrap().status(), StatusCode::OK);
    let loaded = counter(&metrics(&s).await, "slo_gate_tls_reloads_total ");
    assert!(loaded >= 1);
    let failures = counter(&metrics(&s).await, "slo_gate_tls_reload_failures_total ");

    // A certificate file replaced by garbage: counted, and nothing changes.
    replace(s.dir.path(), "server.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counter(&metrics(&s).await, "slo_gate_tls_reload_failures_total ") == failures {
        assert!(tokio::time::Instant::now() < deadline, "the bad file was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server_certificate(&connector, addr).await, second);
    assert_eq!(counter(&metrics(&s).await, "slo_gate_tls_reloads_total "), loaded);
    assert_eq!(h2.send_request(healthz()).await.unwrap().status(), StatusCode::OK);
    drop(h2);
    s.running.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn bad_files_stop_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("prod.example CA");
    let (cert, key) = ca.server();
    let cert = write(dir.path(), "server.pem", &cert);
    let mut tls = TlsConfig::new(cert, write(dir.path(), "broken-key.pem", "not a key"));
    tls.trust_domains = BTreeMap::from([("prod.example".to_string(), write(dir.path(), "bundle.pem", &ca.pem))]);
    let config = |tls: TlsConfig| {
        let mut config = Config {
            otlp_grpc: "127.0.0.1:0".parse().unwrap(),
            otlp_http: "127.0.0.1:0".parse().unwrap(),
            api: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("data"),
            tls: Some(tls),
            ..Config::default()
        };
        config.analysis.enabled = false;
        config
    };
    let err = Collector::start(config(tls.clone())).await.unwrap_err().to_string();
    assert!(err.starts_with("tls: ") && err.contains("broken-key.pem"), "{err}");
    tls.key_file = write(dir.path(), "server-key.pem", &key);
    tls.trust_domains.insert("staging.example".to_string(), dir.path().join("absent-bundle.pem"));
    let err = Collector::start(config(tls.clone())).await.unwrap_err().to_string();
    assert!(err.contains("absent-bundle.pem"), "{err}");
    // With the bundle fixed, the same configuration starts.
    tls.trust_domains.remove("staging.example");
    Collector::start(config(tls)).await.unwrap().stop(Duration::from_secs(5)).await;
}
