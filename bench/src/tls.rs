//! TLS (and mTLS) for the load: `--tls-ca FILE [--tls-cert FILE --tls-key FILE]
//! [--tls-server-name NAME]`.
//!
//! Design choice: each worker's connection is a TCP stream wrapped by tokio-rustls before the
//! HTTP/1.1 or HTTP/2 handshake, with one shared rustls `ClientConfig`, so the load is the same
//! closed loop with the same connection count as in plaintext and the difference measured is
//! the encryption (and the handshakes, once per connection, outside the timed window). ALPN
//! offers `h2` for gRPC and `http/1.1` for OTLP/HTTP, as the OpenTelemetry exporters do.
//! Sessions are not resumed across connections, so every connection pays a full handshake.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, bail};
use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The TLS side of every connection of one run.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

fn certificates(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{flag} {}: not a readable PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!("{flag} {} holds no CERTIFICATE", path.display());
    }
    Ok(certs)
}

impl ClientTls {
    /// Trusts the CA certificates of `ca`, presents `cert`/`key` when both are given (mTLS),
    /// and checks the server's certificate against `server_name`.
    pub fn load(
        ca: &Path,
        cert_and_key: Option<(&Path, &Path)>,
        server_name: &str,
        alpn: &[u8],
    ) -> anyhow::Result<ClientTls> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca, "--tls-ca")? {
            roots.add(cert).with_context(|| format!("--tls-ca {}: not a CA certificate", ca.display()))?;
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS protocol versions")?
            .with_root_certificates(roots);
        let mut config = match cert_and_key {
            Some((cert, key)) => {
                let chain = certificates(cert, "--tls-cert")?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("--tls-key {}: not a readable PEM private key", key.display()))?;
                builder.with_client_auth_cert(chain, key).context("--tls-cert with --tls-key")?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        let server_name = ServerName::try_from(server_name.to_owned())
            .with_context(|| format!("--tls-server-name {server_name:?} is not a DNS name or an IP address"))?;
        Ok(ClientTls { config: Arc::new(config), server_name })
    }

    /// Connects to `addr` and completes the TLS handshake.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        tokio_rustls::TlsConnector::from(Arc::clone(&self.config)).connect(self.server_name.clone(), tcp).await
    }
}

/// A connector for tonic's channel that dials `addr` over TLS, whatever the URI says (the URI
/// still names the `:authority`).
#[derive(Debug, Clone)]
pub struct GrpcTlsConnector {
    pub addr: SocketAddr,
    pub tls: ClientTls,
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

impl tonic::codegen::Service<Uri> for GrpcTlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (addr, tls) = (self.addr, self.tls.clone());
        Box::pin(async move { tls.connect(addr).await.map(TokioIo::new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_name_their_flag() {
        let dir = std::env::temp_dir().join(format!("slo-gate-load-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not pem at all\n").unwrap();
        let err = |ca: &Path| format!("{:#}", ClientTls::load(ca, None, "127.0.0.1", b"h2").unwrap_err());
        let e = err(&dir.join("absent.pem"));
        assert!(e.contains("--tls-ca") && e.contains("absent.pem"), "{e}");
        let e = err(&garbage);
        assert!(e.contains("--tls-ca") && e.contains("holds no CERTIFICATE"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
