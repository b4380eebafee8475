//! TLS client configuration for the connections the collector opens: pprof scrapes and
//! webhooks over `https://`.
//!
//! The keys are those of Prometheus's `tls_config` (`ca_file`, `cert_file`, `key_file`,
//! `server_name`, `insecure_skip_verify`), so a scrape or receiver configuration moves over
//! unchanged. There is no system trust store in this build (no `webpki-roots`, no native
//! roots): a server is trusted only through the `ca_file` given for it, which is also what a
//! private CA or a service mesh needs. Every file is read when the client is built, so a bad
//! file is an error at start naming it, never a failure at the first handshake.
//!
//! rustls with ring is the one crypto provider, chosen explicitly rather than through a
//! process-wide default, so the client works whatever else is linked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};

use super::pem::{self, PemError};

/// TLS settings of an outgoing `https://` connection (a `tls` table of `[[scrape]]` or
/// `[[webhook]]`), with the key names of Prometheus's `tls_config`.
///
/// ```toml
/// tls = { ca_file = "/etc/slo-gate/ca.pem", cert_file = "/etc/slo-gate/client.pem", key_file = "/etc/slo-gate/client-key.pem", server_name = "checkout.internal" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM file of the CA certificate(s) the server's certificate must chain to. Required for
    /// `https://` unless `insecure_skip_verify` is set: the collector has no built-in list of
    /// public CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (leaf first, then intermediates) presented when the
    /// server asks for one (mTLS). Needs `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry (a DNS name or an IP address), and the
    /// SNI sent; default: the host of the URL. For a target addressed by IP whose certificate
    /// names a host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any server certificate (the connection is still encrypted, but anyone in the
    /// path can read it). For tests only; it overrides `ca_file`. Default `false`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Why a TLS client could not be built from a [`ClientTls`].
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("tls: {0}")]
    Pem(#[from] PemError),
    #[error(
        "tls: an https:// URL needs `ca_file` (the CA that signed the server's certificate) or \
         `insecure_skip_verify = true`: the collector has no system trust store"
    )]
    NoRoots,
    #[error("tls: `{given}` is set without `{missing}`; a client certificate needs both")]
    HalfPair { given: &'static str, missing: &'static str },
    #[error("tls: `ca_file` {path}: certificate {index} cannot be a trust anchor: {problem}")]
    BadCa { path: PathBuf, index: usize, problem: String },
    #[error("tls: `cert_file` {cert} with `key_file` {key}: {problem}")]
    ClientCert { cert: PathBuf, key: PathBuf, problem: String },
    #[error("tls: `server_name` {name:?} is neither a DNS name nor an IP address")]
    ServerName { name: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The hyper client used for scrapes and webhooks: `http://` in clear, `https://` through
/// rustls with one [`ClientTls`].
pub type HttpsClient<B> = Client<HttpsConnector<HttpConnector>, B>;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ClientTls {
    /// Checks what can be checked without reading files: a certificate comes with its key, a
    /// `server_name` parses, and an `https://` URL has a way to trust its server.
    pub fn check(&self, https: bool) -> Result<(), ClientTlsError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return Err(ClientTlsError::HalfPair { given: "cert_file", missing: "key_file" }),
            (None, Some(_)) => return Err(ClientTlsError::HalfPair { given: "key_file", missing: "cert_file" }),
            _ => {}
        }
        if let Some(name) = &self.server_name {
            server_name(name)?;
        }
        if https && self.ca_file.is_none() && !self.insecure_skip_verify {
            return Err(ClientTlsError::NoRoots);
        }
        Ok(())
    }

    /// The rustls configuration these settings describe, reading every file they name (TLS 1.2
    /// and 1.3, ring).
    pub fn client_config(&self) -> Result<ClientConfig, ClientTlsError> {
        self.check(true)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = if self.insecure_skip_verify {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider())))
        } else {
            let path = self.ca_file.as_deref().ok_or(ClientTlsError::NoRoots)?;
            builder.with_root_certificates(roots(path)?)
        };
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = pem::certificates(cert)?;
                let private = pem::private_key(key)?;
                builder.with_client_auth_cert(chain, private).map_err(|e| ClientTlsError::ClientCert {
                    cert: cert.clone(),
                    key: key.clone(),
                    problem: e.to_string(),
                })
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }

    /// The name to verify the server's certificate against instead of the URL's host, if set.
    pub fn fixed_server_name(&self) -> Result<Option<ServerName<'static>>, ClientTlsError> {
        self.server_name.as_deref().map(server_name).transpose()
    }
}

fn server_name(name: &str) -> Result<ServerName<'static>, ClientTlsError> {
    let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    ServerName::try_from(bare.to_string()).map_err(|_| ClientTlsError::ServerName { name: name.to_string() })
}

/// Every certificate of `path` as a trust anchor.
fn roots(path: &Path) -> Result<RootCertStore, ClientTlsError> {
    let mut store = RootCertStore::empty();
    for (index, cert) in pem::certificates(path)?.into_iter().enumerate() {
        store.add(cert).map_err(|e| ClientTlsError::BadCa {
            path: path.to_path_buf(),
            index: index + 1,
            problem: e.to_string(),
        })?;
    }
    Ok(store)
}

/// A connector speaking `http://` in clear and `https://` with `tls` (HTTP/1.1). Without
/// `tls`, `https://` URLs fail at the handshake (nothing is trusted); configuration checks
/// refuse them before that ([`ClientTls::check`]).
pub fn connector(tls: Option<&ClientTls>) -> Result<HttpsConnector<HttpConnector>, ClientTlsError> {
    let (config, name) = match tls {
        Some(tls) => (tls.client_config()?, tls.fixed_server_name()?),
        None => (
            ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
            None,
        ),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let builder = HttpsConnectorBuilder::new().with_tls_config(config).https_or_http();
    let builder = match name {
        Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
        None => builder,
    };
    Ok(builder.enable_http1().wrap_connector(http))
}

/// A pooled hyper client over [`connector`].
pub fn client<B>(tls: Option<&ClientTls>) -> Result<HttpsClient<B>, ClientTlsError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    Ok(Client::builder(TokioExecutor::new()).build(connector(tls)?))
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake's signatures are
/// still checked, so the connection is at least bound to the key the server showed.
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn settings_are_checked_before_any_file_is_read() {
        let https = |tls: ClientTls| tls.check(true).map_err(|e| e.to_string());
        let err = https(ClientTls::default()).unwrap_err();
        assert!(err.contains("needs `ca_file`") && err.contains("insecure_skip_verify"), "{err}");
        assert!(ClientTls::default().check(false).is_ok(), "plain http needs nothing");
        assert!(https(ClientTls { insecure_skip_verify: true, ..Default::default() }).is_ok());
        let err =
            https(ClientTls { ca_file: Some("ca.pem".into()), cert_file: Some("c.pem".into()), ..Default::default() })
                .unwrap_err();
        assert!(err.contains("`cert_file` is set without `key_file`"), "{err}");
        let err =
            https(ClientTls { ca_file: Some("ca.pem".into()), key_file: Some("k.pem".into()), ..Default::default() })
                .unwrap_err();
        assert!(err.contains("`key_file` is set without `cert_file`"), "{err}");
        let err = https(ClientTls {
            ca_file: Some("ca.pem".into()),
            server_name: Some("not a name".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("\"not a name\" is neither"), "{err}");
        for name in ["checkout.internal", "127.0.0.1", "[::1]"] {
            let tls = ClientTls { server_name: Some(name.into()), ..Default::default() };
            assert!(tls.fixed_server_name().unwrap().is_some(), "{name}");
        }
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let cert_file = write(dir.path(), "client.pem", &cert.pem());
        let key_file = write(dir.path(), "client-key.pem", &key.serialize_pem());
        let other_key = write(dir.path(), "other-key.pem", &rcgen::KeyPair::generate().unwrap().serialize_pem());
        let ca = |path: &Path| ClientTls { ca_file: Some(path.to_path_buf()), ..Default::default() };
        let err = |tls: ClientTls| tls.client_config().unwrap_err().to_string();

        assert!(ca(&cert_file).client_config().is_ok());
        let mtls = ClientTls { cert_file: Some(cert_file.clone()), key_file: Some(key_file.clone()), ..ca(&cert_file) };
        assert!(mtls.client_config().is_ok());

        let e = err(ca(&dir.path().join("absent.pem")));
        assert!(e.contains("absent.pem") && e.contains("cannot read"), "{e}");
        let e = err(ca(&key_file));
        assert!(e.contains("client-key.pem") && e.contains("no CERTIFICATE"), "{e}");
        let garbage =
            write(dir.path(), "garbage.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let e = err(ca(&garbage));
        assert!(e.contains("garbage.pem") && e.contains("certificate 1 cannot be a trust anchor"), "{e}");
        let e = err(ClientTls { key_file: Some(cert_file.clone()), ..mtls.clone() });
        assert!(e.contains("client.pem") && e.contains("no PRIVATE KEY"), "{e}");
        let e = err(ClientTls { key_file: Some(other_key), ..mtls.clone() });
        assert!(e.contains("other-key.pem"), "a key that is not the certificate's: {e}");
    }
}
