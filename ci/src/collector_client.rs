//! A blocking client of a running collector's HTTP API, for the commands that take
//! `--collector URL` (`flame diff`, `check`).
//!
//! Every failure says which collector and which request: an unreachable collector and an error
//! answer are different messages, and an error answer carries the collector's own `error` text
//! (its 400s name the bad parameter).
//!
//! An `https://` collector is reached through ureq's rustls: its certificate is checked against
//! `--ca-file` when given (a private CA, as `slo-gate certs` makes), else against the public
//! web PKI roots built into ureq; `--cert-file`/`--key-file` present a client certificate to a
//! collector that requires one (mTLS). The files are read before the first request, with errors
//! naming them. A token (`SLO_GATE_TOKEN`) goes with every request, reads included, since a
//! collector with `[auth] required = true` refuses anonymous reads.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

/// How long one request may take, connection included: a CI step must not hang on a dead host.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A collector's write token; `Debug` never prints it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WriteToken(pub String);

impl std::fmt::Debug for WriteToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteToken(<redacted>)")
    }
}

/// The environment variable holding the collector token (`Authorization: Bearer`).
pub const TOKEN_ENV: &str = "SLO_GATE_TOKEN";

/// The token of [`TOKEN_ENV`], if set and not blank.
pub fn env_token() -> Option<WriteToken> {
    std::env::var(TOKEN_ENV).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).map(WriteToken)
}

/// TLS files for an `https://` collector: the flags of every command that takes `--collector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct CollectorTls {
    /// https:// collector: PEM file of the CA that signed its certificate [default: the public
    /// web PKI roots]
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// https:// collector that requires client certificates (mTLS): PEM file of this client's
    /// certificate (leaf first); needs --key-file
    #[arg(long, value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the private key of --cert-file
    #[arg(long, value_name = "FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
}

impl CollectorTls {
    fn is_empty(&self) -> bool {
        *self == CollectorTls::default()
    }

    /// ureq's TLS settings from the files, each read now and named in any error.
    fn ureq_config(&self) -> anyhow::Result<ureq::tls::TlsConfig> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let mut config = TlsConfig::builder();
        if let Some(path) = &self.ca_file {
            let certs = collector::tls::pem::certificates(path).context("--ca-file")?;
            let certs: Vec<Certificate<'static>> =
                certs.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect();
            config = config.root_certs(RootCerts::new_with_certs(&certs));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = collector::tls::pem::certificates(cert).context("--cert-file")?;
                let chain: Vec<Certificate<'static>> =
                    chain.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect();
                let key_pem = collector::tls::pem::read(key).context("--key-file")?;
                // Parsed by our reader first, for an error that names the file.
                collector::tls::pem::private_key_of(key, &key_pem).context("--key-file")?;
                let key = PrivateKey::from_pem(&key_pem)
                    .with_context(|| format!("--key-file {}: not a private key ureq can use", key.display()))?;
                config = config.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
            }
            (None, None) => {}
            _ => bail!("--cert-file and --key-file go together"),
        }
        Ok(config.build())
    }
}

/// The HTTP API of one collector, for one tenant.
#[derive(Debug)]
pub struct CollectorClient {
    agent: ureq::Agent,
    base: String,
    tenant: Option<String>,
    /// The token sent as `Authorization: Bearer` with every request.
    token: Option<WriteToken>,
}

impl CollectorClient {
    /// A client of the collector at `url` (`http://host:port`, the `--api` address), scoped to
    /// `tenant` (sent as `X-Scope-OrgID`) when given.
    pub fn new(url: &str, tenant: Option<String>) -> anyhow::Result<Self> {
        Self::with_tls(url, tenant, &CollectorTls::default())
    }

    /// [`CollectorClient::new`] with the TLS files of an `https://` collector.
    pub fn with_tls(url: &str, tenant: Option<String>, tls: &CollectorTls) -> anyhow::Result<Self> {
        let base = url.trim().trim_end_matches('/').to_string();
        let https = base.starts_with("https://");
        if !(base.starts_with("http://") || https) {
            bail!("--collector {url:?} must be an http:// or https:// URL, e.g. http://127.0.0.1:4040");
        }
        if !https && !tls.is_empty() {
            bail!("--ca-file, --cert-file and --key-file are for an https:// collector, and --collector is {url:?}");
        }
        let mut config = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(TIMEOUT));
        if https {
            config = config.tls_config(tls.ureq_config()?);
        }
        let agent: ureq::Agent = config.build().into();
        Ok(Self { agent, base, tenant, token: None })
    }

    /// The same client, sending `token` as `Authorization: Bearer` with every request (reads
    /// too: a collector with `[auth] required = true` refuses anonymous ones).
    #[must_use]
    pub fn with_token(mut self, token: Option<WriteToken>) -> Self {
        self.token = token;
        self
    }

    /// The collector's base URL, as given.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET path?query`, returning the body of a 2xx answer.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        for (key, value) in query {
            request = request.query(*key, value);
        }
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", &format!("Bearer {}", token.0));
        }
        let mut response = request.call().with_context(|| format!("cannot reach the collector at {url}"))?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .with_context(|| format!("cannot read the answer of {url}"))?;
        if !status.is_success() {
            bail!("the collector answered {path} with {status}: {}", error_message(&body));
        }
        Ok(body)
    }

    /// `POST path` with `body` as JSON (and the write token), parsing a 2xx answer as `T`.
    pub fn post_as<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.post(&url).header("content-type", "application/json");
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", &format!("Bearer {}", token.0));
        }
        let body = serde_json::to_vec(body).context("cannot encode the request")?;
        let mut response = request.send(&body[..]).with_context(|| format!("cannot reach the collector at {url}"))?;
        let status = response.status();
        let bytes = response.body_mut().read_to_vec().with_context(|| format!("cannot read the answer of {url}"))?;
        if !status.is_success() {
            bail!("the collector answered {path} with {status}: {}", error_message(&bytes));
        }
        serde_json::from_slice(&bytes).with_context(|| format!("the collector's answer to {path} is not JSON"))
    }

    /// `GET path?query`, parsing a 2xx answer as JSON into `T`. Fields `T` does not name are
    /// skipped without building them, at any depth: a differential flame graph of deep stacks
    /// nests further than `serde_json::Value` may (its recursion limit is 128).
    pub fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<T> {
        let body = self.get(path, query)?;
        serde_json::from_slice(&body).with_context(|| format!("the collector's answer to {path} is not JSON"))
    }
}

/// The `error` of a JSON error answer, else the start of the body.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect())
}

/// A Pyroscope-style label selector `{k="v",...}` matching the given labels.
pub fn selector(labels: &[(&str, &str)]) -> String {
    let inner: Vec<String> =
        labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 11 #8: the write token is never printed.
    #[test]
    fn debug_output_hides_the_token() {
        let client = CollectorClient::new("http://127.0.0.1:1", None)
            .unwrap()
            .with_token(Some(WriteToken("secret-token-0123456789".into())));
        assert!(!format!("{client:?}").contains("secret-token"), "{client:?}");
    }

    /// A CA made here and a leaf it signs for `names` (DNS names, IP addresses or a SPIFFE
    /// URI), as (certificate PEM, key PEM).
    fn leaf(issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for name in names {
            params.subject_alt_names.push(match name.parse::<std::net::IpAddr>() {
                Ok(ip) => rcgen::SanType::IpAddress(ip),
                Err(_) if name.starts_with("spiffe://") => rcgen::SanType::URI(name.to_string().try_into().unwrap()),
                Err(_) => rcgen::SanType::DnsName(name.to_string().try_into().unwrap()),
            });
        }
        (params.signed_by(&key, issuer).unwrap().pem(), key.serialize_pem())
    }

    fn ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
    }

    /// An https collector in this process that requires a client certificate of trust domain
    /// `ci.example`: `--ca-file` and `--cert-file`/`--key-file` reach it; without the client
    /// certificate, or trusting another CA, the client fails with a message naming the URL.
    #[test]
    fn https_collector_with_mtls() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (servers, clients, stranger) = (ca(), ca(), ca());
        let (server_cert, server_key) = leaf(&servers, &["127.0.0.1", "localhost"]);
        let (client_cert, client_key) = leaf(&clients, &["spiffe://ci.example/runner"]);
        let server_ca = write("server-ca.pem", &servers.pem());
        let other_ca = write("other-ca.pem", &stranger.pem());
        let bundle = write("bundle.pem", &clients.pem());
        let (cert_file, key_file) = (write("server.pem", &server_cert), write("server-key.pem", &server_key));
        let tls = CollectorTls {
            ca_file: Some(server_ca.clone()),
            cert_file: Some(write("client.pem", &client_cert)),
            key_file: Some(write("client-key.pem", &client_key)),
        };
        let mut config = collector::config::Config::from_toml(&format!(
            "[tls]\ncert_file = {cert_file:?}\nkey_file = {key_file:?}\nclient_auth = \"required\"\nlisteners = [\"api\"]\n\
             [tls.trust_domains]\n\"ci.example\" = {bundle:?}\n[analysis]\nenabled = false\n"
        ))
        .unwrap();
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        (config.otlp_grpc, config.otlp_http, config.api) = (loopback, loopback, loopback);
        config.data_dir = dir.path().join("data");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let running = runtime.block_on(collector::Collector::start(config)).unwrap();
        let url = format!("https://127.0.0.1:{}", running.api.port());

        let client = CollectorClient::with_tls(&url, None, &tls).unwrap();
        let body = client.get("/api/v1/services", &[]).expect("mTLS request");
        assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());

        let anonymous = CollectorTls { cert_file: None, key_file: None, ..tls.clone() };
        let err = CollectorClient::with_tls(&url, None, &anonymous).unwrap().get("/api/v1/services", &[]).unwrap_err();
        assert!(format!("{err:#}").contains(&format!("cannot reach the collector at {url}")), "{err:#}");
        let untrusting = CollectorTls { ca_file: Some(other_ca), ..tls.clone() };
        let err = CollectorClient::with_tls(&url, None, &untrusting).unwrap().get("/api/v1/services", &[]).unwrap_err();
        assert!(format!("{err:#}").to_lowercase().contains("certificate"), "{err:#}");
        // Plain http to the TLS port is not answered.
        let plain = format!("http://127.0.0.1:{}", running.api.port());
        assert!(CollectorClient::new(&plain, None).unwrap().get("/api/v1/services", &[]).is_err());
        runtime.block_on(running.stop(Duration::from_secs(5)));
    }

    #[test]
    fn tls_files_are_checked_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let err = CollectorClient::with_tls(
            "https://127.0.0.1:1",
            None,
            &CollectorTls { ca_file: Some(dir.path().join("absent.pem")), ..Default::default() },
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("--ca-file: cannot read") && format!("{err:#}").contains("absent.pem"));
        let not_a_key = dir.path().join("cert.pem");
        let issuer = ca();
        std::fs::write(&not_a_key, issuer.pem()).unwrap();
        let err = CollectorClient::with_tls(
            "https://127.0.0.1:1",
            None,
            &CollectorTls { ca_file: None, cert_file: Some(not_a_key.clone()), key_file: Some(not_a_key.clone()) },
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("--key-file") && format!("{err:#}").contains("no PRIVATE KEY"), "{err:#}");
        let err = CollectorClient::with_tls(
            "http://127.0.0.1:1",
            None,
            &CollectorTls { ca_file: Some(not_a_key), ..Default::default() },
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("for an https:// collector"), "{err:#}");
    }

    /// The token goes with reads too, for a collector whose reads need one.
    #[test]
    fn the_token_is_sent_with_reads() {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut stream = stream;
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}").unwrap();
            head
        });
        let client = CollectorClient::new(&format!("http://{addr}"), Some("team-a".into()))
            .unwrap()
            .with_token(Some(WriteToken("read-token-0123456789".into())));
        client.get("/api/v1/services", &[]).unwrap();
        let head = server.join().unwrap().to_lowercase();
        assert!(head.contains("authorization: bearer read-token-0123456789"), "{head}");
        assert!(head.contains("x-scope-orgid: team-a"), "{head}");
    }

    #[test]
    fn selectors_quote_values() {
        assert_eq!(
            selector(&[("service_name", "api"), ("service_version", "1.0 \"rc\"")]),
            r#"{service_name="api",service_version="1.0 \"rc\""}"#
        );
    }

    #[test]
    fn unreachable_collector_names_the_url() {
        // Port 1 on loopback: nothing listens there.
        let client = CollectorClient::new("http://127.0.0.1:1/", None).expect("valid url");
        let err = client.get("/api/v1/services", &[]).expect_err("refused");
        assert!(
            format!("{err:#}").contains("cannot reach the collector at http://127.0.0.1:1/api/v1/services"),
            "{err:#}"
        );
        assert!(CollectorClient::new("127.0.0.1:4040", None).is_err(), "scheme required");
    }
}
