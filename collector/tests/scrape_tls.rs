//! pprof scrapes over `https://`: a collector in this process scrapes an HTTPS pprof endpoint
//! served by the test (rustls + hyper, certificates made here with rcgen) that requires a
//! client certificate from the test's CA and a bearer token, and serves a real Go heap profile
//! from `testdata/corpus/`. The server's certificate names `pprof.internal` only, so the
//! targets (by IP) reach it through `server_name`.
//!
//! Four `[[scrape]]` tables point at the same server under different path prefixes: one with
//! everything right, whose profiles are stored and readable through the API; one trusting
//! another CA, one without a client certificate, and one with a wrong token, each of which
//! fails, is counted in `slo_gate_scrapes_total` with its outcome, and stores nothing, while
//! the collector goes on serving.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const TOKEN: &str = "scrape-token-0123456789abcdef";

/// A CA and the files of a certificate it signed.
struct Pki {
    ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki { ca_pem: issuer.pem(), issuer }
    }

    /// A leaf certificate for `names`, as (certificate PEM, key PEM).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// What the pprof server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
}

/// An HTTPS server on loopback that requires a client certificate signed by `clients` and
/// answers `GET <prefix>/debug/pprof/heap` with `profile` when the bearer token is right
/// (401 otherwise). Returns its address, the requests it answered and the count of refused
/// handshakes.
async fn pprof_server(
    server_pki: &Pki,
    clients: &Pki,
    profile: Bytes,
) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>, Arc<Mutex<u64>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(clients.ca_pem.as_bytes()).unwrap()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider)).build().unwrap();
    let (cert, key) = server_pki.leaf(&["pprof.internal"]);
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0u64));
    let (seen_in, refused_in) = (Arc::clone(&seen), Arc::clone(&refused));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, seen, refused, profile) =
                (acceptor.clone(), Arc::clone(&seen_in), Arc::clone(&refused_in), profile.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    *refused.lock().unwrap() += 1;
                    return;
                };
                assert!(tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty()), "a verified client");
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (seen, profile) = (Arc::clone(&seen), profile.clone());
                    async move {
                        let path = request.uri().path().to_string();
                        let authorization = request
                            .headers()
                            .get(http::header::AUTHORIZATION)
                            .map(|v| v.to_str().unwrap_or("").to_string());
                        seen.lock().unwrap().push(Seen { path: path.clone(), authorization: authorization.clone() });
                        let answer = if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
                            Response::builder()
                                .status(StatusCode::UNAUTHORIZED)
                                .body(Full::new(Bytes::from("no token")))
                        } else if path.ends_with("/debug/pprof/heap") {
                            Response::builder().body(Full::new(profile))
                        } else {
                            Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::new()))
                        };
                        Ok::<_, std::convert::Infallible>(answer.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    (addr, seen, refused)
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client.get(format!("http://{addr}{path}").parse().unwrap()).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The services that have profiles of any type.
async fn services_with_profiles(api: SocketAddr) -> Vec<String> {
    let (status, body) = get(api, "/api/v1/profile-types").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut services: Vec<String> = json["profile_types"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["services"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    services.sort();
    services.dedup();
    services
}

/// `slo_gate_scrapes_total` of `target`'s heap scrapes with `outcome`.
fn scrapes(metrics: &str, target: &str, outcome: &str) -> u64 {
    let labels = format!("target=\"{target}\",profile=\"heap\",outcome=\"{outcome}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("slo_gate_scrapes_total{") && l.contains(&labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_scraped_over_mtls_and_bad_tls_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, clients, stranger) = (Pki::new("server CA"), Pki::new("client CA"), Pki::new("another CA"));
    let profile =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus/go-dev/fast/heap.pb.gz"))
            .expect("the corpus heap profile");
    let (addr, seen, refused) = pprof_server(&servers, &clients, Bytes::from(profile)).await;

    let ca = write(dir.path(), "server-ca.pem", &servers.ca_pem);
    let other_ca = write(dir.path(), "other-ca.pem", &stranger.ca_pem);
    let (cert, key) = clients.leaf(&["scraper.internal"]);
    let cert = write(dir.path(), "client.pem", &cert);
    let key = write(dir.path(), "client-key.pem", &key);
    let token = write(dir.path(), "token", &format!("{TOKEN}\n"));
    let wrong_token = write(dir.path(), "wrong-token", "not-the-token-0123456789");
    let table = |prefix: &str, service: &str, tls: String, token: &Path| {
        format!(
            "[[scrape]]\ntargets = [\"https://{addr}/{prefix}\"]\nlabels = {{ service_name = \"{service}\" }}\n\
             interval = \"300ms\"\nprofiles = [\"heap\"]\ntimeout = \"2s\"\nbearer_token_file = {token:?}\ntls = {{ {tls} }}\n"
        )
    };
    let full = format!("ca_file = {ca:?}, cert_file = {cert:?}, key_file = {key:?}, server_name = \"pprof.internal\"");
    let toml = [
        table("good", "tls-good", full.clone(), &token),
        table(
            "wrongca",
            "tls-wrong-ca",
            format!(
                "ca_file = {other_ca:?}, cert_file = {cert:?}, key_file = {key:?}, server_name = \"pprof.internal\""
            ),
            &token,
        ),
        table("nocert", "tls-no-cert", format!("ca_file = {ca:?}, server_name = \"pprof.internal\""), &token),
        table("badtoken", "tls-bad-token", full, &wrong_token),
    ]
    .concat();
    let mut config = collector::config::Config::from_toml(&toml).unwrap();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    (config.otlp_grpc, config.otlp_http, config.api) = (loopback, loopback, loopback);
    config.data_dir = dir.path().join("data");
    config.analysis.enabled = false;
    let running = collector::Collector::start(config).await.unwrap();

    let target = |prefix: &str| format!("https://{addr}/{prefix}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let (_, metrics) = get(running.api, "/metrics").await;
        let ok = scrapes(&metrics, &target("good"), "ok") >= 2;
        let failed = scrapes(&metrics, &target("wrongca"), "connect") >= 2
            && scrapes(&metrics, &target("nocert"), "connect") + scrapes(&metrics, &target("nocert"), "http_error")
                >= 2
            && scrapes(&metrics, &target("badtoken"), "http_error") >= 2;
        if (ok && failed) || tokio::time::Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let counted: Vec<&str> = metrics.lines().filter(|l| l.starts_with("slo_gate_scrapes_total")).collect();
    assert!(scrapes(&metrics, &target("good"), "ok") >= 2, "{counted:#?}");
    assert_eq!(scrapes(&metrics, &target("good"), "connect"), 0, "{counted:#?}");
    assert!(scrapes(&metrics, &target("wrongca"), "connect") >= 2, "the server's CA is not trusted: {counted:#?}");
    assert_eq!(scrapes(&metrics, &target("wrongca"), "ok"), 0, "{counted:#?}");
    assert!(scrapes(&metrics, &target("badtoken"), "http_error") >= 2, "401 for the wrong token: {counted:#?}");
    // Without a client certificate the server refuses the handshake; with TLS 1.3 the client
    // may learn it only when it reads the answer.
    let no_cert = scrapes(&metrics, &target("nocert"), "connect") + scrapes(&metrics, &target("nocert"), "http_error");
    assert!(no_cert >= 2 && scrapes(&metrics, &target("nocert"), "ok") == 0, "{counted:#?}");
    assert!(*refused.lock().unwrap() >= 2, "the server refused handshakes without a client certificate");

    // Only the good table's requests reached the handler with the token; nothing came from the
    // stranger-CA or certificate-less tables, whose handshakes failed.
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|s| s.path == "/good/debug/pprof/heap"
                && s.authorization.as_deref() == Some(&format!("Bearer {TOKEN}")))
    );
    assert!(!seen.iter().any(|s| s.path.starts_with("/wrongca/") || s.path.starts_with("/nocert/")), "{seen:?}");
    assert!(
        seen.iter().any(|s| s.path.starts_with("/badtoken/")
            && s.authorization.as_deref() == Some("Bearer not-the-token-0123456789"))
    );

    // The good table's profile is stored and readable; the failed ones stored nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let services = loop {
        let services = services_with_profiles(running.api).await;
        if services.iter().any(|s| s == "tls-good") || tokio::time::Instant::now() > deadline {
            break services;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(services, ["tls-good"], "only the verified scrape is stored");
    let (_, types) = get(running.api, "/api/v1/profile-types").await;
    let types: serde_json::Value = serde_json::from_str(&types).unwrap();
    let id = types["profile_types"].as_array().unwrap()[0]["id"].as_str().unwrap().replace(':', "%3A");
    let (status, folded) = get(
        running.api,
        &format!("/api/v1/flamegraph?type={id}&format=folded&selector=%7Bservice_name%3D%22tls-good%22%7D"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{folded}");
    assert!(folded.lines().count() > 3 && folded.contains(';'), "a flame graph of the scraped heap: {folded}");

    // The collector is fine: its readiness holds after all those failures.
    let (status, body) = get(running.api, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    running.stop(Duration::from_secs(5)).await;
}

#[test]
fn bad_tls_files_stop_the_start_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_cert = write(dir.path(), "not-a-cert.pem", "hello\n");
    let text = format!("[[scrape]]\ntargets = [\"https://127.0.0.1:1\"]\ntls = {{ ca_file = {not_a_cert:?} }}\n");
    let err = collector::config::Config::from_toml(&text).unwrap_err().to_string();
    assert!(err.contains("not-a-cert.pem") && err.contains("no CERTIFICATE"), "{err}");

    let pki = Pki::new("ca");
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    let (cert, _) = pki.leaf(&["x"]);
    let cert = write(dir.path(), "c.pem", &cert);
    let text = format!(
        "[[scrape]]\ntargets = [\"https://127.0.0.1:1\"]\ntls = {{ ca_file = {ca:?}, cert_file = {cert:?}, key_file = {cert:?} }}\n"
    );
    let err = collector::config::Config::from_toml(&text).unwrap_err().to_string();
    assert!(err.contains("c.pem") && err.contains("no PRIVATE KEY"), "{err}");

    let empty = write(dir.path(), "empty-token", "  \n");
    let text = format!("[[scrape]]\ntargets = [\"127.0.0.1:1\"]\nbearer_token_file = {empty:?}\n");
    let err = collector::config::Config::from_toml(&text).unwrap_err().to_string();
    assert!(err.contains("empty-token is empty"), "{err}");
}
