//! The listeners' TLS: one rustls [`ServerConfig`] per TLS listener, built from the `[tls]`
//! table's PEM files, and swapped when those files change.
//!
//! TLS 1.2 and 1.3 only (rustls's safe defaults), ring as the crypto provider. ALPN offers
//! `h2` and `http/1.1`, except on the OTLP/gRPC listener, which speaks HTTP/2 only and says so.
//!
//! Reload: a task reads the certificate, key and bundle files every `reload_interval` and
//! compares each file's size, modification time and SHA-256 with what it last tried (the
//! digest catches a rewrite within the file system's timestamp granularity). A change is built
//! into new configurations from the bytes that were hashed — never from a second read, which
//! could see a later write — and each listener's `RwLock<Arc<ServerConfig>>` is replaced.
//! The accept path reads the lock once per connection, so a new connection gets the new
//! certificate and an established one keeps the session it has. A set of files that does not
//! build (a half-written file, a key that does not match its certificate) is logged with the
//! file named, counted, and the configuration in use is kept; it is tried again only when the
//! files change again, so a bad file is reported once, not every interval.
//!
//! At start the same build is an error: a bad file stops the collector with the file named.
//!
//! Sessions are not resumed (no session cache, no tickets): a resumed session would carry the
//! client certificate verified at an earlier handshake, possibly under bundles since rotated.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{CertificateError, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ClientAuth, TlsConfig};
use crate::telemetry::{Listener, Telemetry};
use crate::tls::pem::{self, PemError};
use crate::tls::spiffe::{BundleError, SpiffeVerifier, SvidError, TrustDomains};

/// Why the TLS configuration could not be built; every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{path}: the certificate cannot be used: {problem}")]
    Certificate { path: PathBuf, problem: String },
    #[error("{path}: the private key cannot be used: {problem}")]
    Key { path: PathBuf, problem: String },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("cannot build the TLS configuration: {0}")]
    Rustls(String),
}

/// What one file looked like when it was last read: a change in any of these is a change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    sha256: [u8; 32],
}

/// The bytes of every file of a `[tls]` table, as read together.
#[derive(Debug)]
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    /// One per `trust_domains` entry, in its order.
    bundles: Vec<Vec<u8>>,
}

impl Files {
    fn read(config: &TlsConfig) -> (Result<Files, PemError>, Vec<Option<Stamp>>) {
        let paths: Vec<&Path> = [&config.cert_file, &config.key_file]
            .into_iter()
            .chain(config.trust_domains.values())
            .map(|p| p.as_path())
            .collect();
        let mut stamps = Vec::with_capacity(paths.len());
        let mut bytes = Vec::with_capacity(paths.len());
        let mut first_error = None;
        for path in paths {
            match read_stamped(path) {
                Ok((b, stamp)) => {
                    stamps.push(Some(stamp));
                    bytes.push(b);
                }
                Err(e) => {
                    stamps.push(None);
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return (Err(e), stamps);
        }
        let mut bytes = bytes.into_iter();
        let (cert, key) = (bytes.next().unwrap_or_default(), bytes.next().unwrap_or_default());
        (Ok(Files { cert, key, bundles: bytes.collect() }), stamps)
    }
}

fn read_stamped(path: &Path) -> Result<(Vec<u8>, Stamp), PemError> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let bytes = pem::read(path)?;
    let stamp = Stamp { len: bytes.len() as u64, modified, sha256: Sha256::digest(&bytes).into() };
    Ok((bytes, stamp))
}

/// The server configuration of each TLS listener (`None` for a plaintext one), indexed by
/// [`Listener`].
type Built = [Option<Arc<ServerConfig>>; 3];

/// The end of the leaf certificate's validity, in seconds since the epoch.
fn not_after(config: &TlsConfig, leaf: &rustls::pki_types::CertificateDer<'_>) -> Result<i64, TlsError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| TlsError::Certificate { path: config.cert_file.clone(), problem: e.to_string() })?;
    Ok(cert.validity().not_after.timestamp())
}

fn build(config: &TlsConfig, files: &Files, provider: &Arc<CryptoProvider>) -> Result<(Built, i64), TlsError> {
    let chain = pem::certificates_of(&config.cert_file, &files.cert)?;
    let expires = not_after(config, &chain[0])?;
    let key = pem::private_key_of(&config.key_file, &files.key)?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key { path: config.key_file.clone(), problem: e.to_string() })?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch { cert: config.cert_file.clone(), key: config.key_file.clone() });
        }
        Err(e) => return Err(TlsError::Certificate { path: config.cert_file.clone(), problem: e.to_string() }),
    }
    let resolver = Arc::new(SingleCertAndKey::from(certified));

    let mut bundles = Vec::with_capacity(files.bundles.len());
    for ((domain, path), bytes) in config.trust_domains.iter().zip(&files.bundles) {
        bundles.push((domain.clone(), path.clone(), pem::certificates_of(path, bytes)?));
    }
    let domains = Arc::new(TrustDomains::new(&bundles, provider)?);

    let mut built: Built = Default::default();
    for listener in Listener::ALL {
        if !config.serves(listener.as_str()) {
            continue;
        }
        let verifier: Arc<dyn ClientCertVerifier> = match config.client_auth_of(listener.as_str()) {
            ClientAuth::None => WebPkiClientVerifier::no_client_auth(),
            ClientAuth::Optional => Arc::new(SpiffeVerifier::new(Arc::clone(&domains), false)),
            ClientAuth::Required => Arc::new(SpiffeVerifier::new(Arc::clone(&domains), true)),
        };
        let mut server = ServerConfig::builder_with_provider(Arc::clone(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver.clone());
        // No session resumption: every connection verifies the client's certificate at its
        // own handshake, against the bundles in force then, so an expired or re-issued
        // certificate, or a bundle rotated by a reload, is never bypassed by a resumed session.
        // OTLP exporters hold their connections, so the full handshakes cost little.
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        server.alpn_protocols = match listener {
            Listener::OtlpGrpc => vec![b"h2".to_vec()],
            Listener::OtlpHttp | Listener::Api => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        built[listener as usize] = Some(Arc::new(server));
    }
    Ok((built, expires))
}

/// The listeners' TLS configurations in force, and what is needed to reload them.
#[derive(Debug)]
pub struct ServerTls {
    config: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: [Option<RwLock<Arc<ServerConfig>>>; 3],
    /// The stamps of the files last tried, loaded or refused.
    tried: Mutex<Vec<Option<Stamp>>>,
    telemetry: Arc<Telemetry>,
}

/// What one look at the files found.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    Loaded,
    /// The files changed but do not build; the configuration in use is kept.
    Refused(TlsError),
}

impl ServerTls {
    /// Reads and builds the `[tls]` table's files; any problem is an error naming the file.
    pub fn load(config: &TlsConfig, telemetry: Arc<Telemetry>) -> Result<ServerTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (files, stamps) = Files::read(config);
        let (built, expires) = build(config, &files?, &provider)?;
        telemetry.tls.enabled.store(true, Relaxed);
        telemetry.tls.set_certificate_expiry(&config.cert_file, expires);
        Ok(ServerTls {
            config: config.clone(),
            provider,
            current: built.map(|c| c.map(RwLock::new)),
            tried: Mutex::new(stamps),
            telemetry,
        })
    }

    /// The configuration a new connection on `listener` gets, or `None` if it is plaintext.
    pub fn current(&self, listener: Listener) -> Option<Arc<ServerConfig>> {
        let lock = self.current[listener as usize].as_ref()?;
        Some(Arc::clone(&lock.read().unwrap_or_else(|e| e.into_inner())))
    }

    /// Whether `listener` speaks TLS.
    pub fn serves(&self, listener: Listener) -> bool {
        self.current[listener as usize].is_some()
    }

    /// Looks at the files once; rebuilds and swaps the configurations if they changed.
    pub fn reload(&self) -> Reload {
        let (files, stamps) = Files::read(&self.config);
        {
            let mut tried = self.tried.lock().unwrap_or_else(|e| e.into_inner());
            if *tried == stamps {
                return Reload::Unchanged;
            }
            *tried = stamps;
        }
        let built = files.map_err(TlsError::from).and_then(|files| build(&self.config, &files, &self.provider));
        match built {
            Ok((built, expires)) => {
                self.telemetry.tls.set_certificate_expiry(&self.config.cert_file, expires);
                for (slot, new) in self.current.iter().zip(built) {
                    if let (Some(slot), Some(new)) = (slot, new) {
                        *slot.write().unwrap_or_else(|e| e.into_inner()) = new;
                    }
                }
                self.telemetry.tls.reloads.fetch_add(1, Relaxed);
                tracing::info!(cert = %self.config.cert_file.display(), "reloaded the TLS certificates");
                Reload::Loaded
            }
            Err(err) => {
                self.telemetry.tls.reload_failures.fetch_add(1, Relaxed);
                tracing::error!(%err, "TLS files changed but cannot be loaded; new connections keep the previous certificates");
                Reload::Refused(err)
            }
        }
    }

    /// Looks at the files every `reload_interval` until `stop` turns true.
    pub fn start_reload(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let interval = self.config.reload_interval.0;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(interval) => {}
                }
                let tls = Arc::clone(&self);
                let _ = tokio::task::spawn_blocking(move || tls.reload()).await;
            }
        })
    }
}

/// Why a TLS handshake failed, as counted in `slo_gate_tls_handshake_failures_total`.
pub const HANDSHAKE_FAILURE_REASONS: [&str; 9] = [
    "timeout",
    "closed",
    "protocol",
    "server_certificate_refused",
    "no_certificate",
    "expired",
    "untrusted",
    "not_svid",
    "unknown_trust_domain",
];

/// The reason label of a failed handshake's error (`timeout` is the caller's to give).
pub fn handshake_failure_reason(err: &io::Error) -> &'static str {
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return "closed";
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        // The client does not accept the server's certificate: after a reload to a certificate
        // the clients do not trust, this is the series that climbs.
        rustls::Error::AlertReceived(
            rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnsupportedCertificate
            | rustls::AlertDescription::CertificateRevoked
            | rustls::AlertDescription::CertificateExpired
            | rustls::AlertDescription::CertificateUnknown
            | rustls::AlertDescription::UnknownCA,
        ) => "server_certificate_refused",
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => "expired",
            CertificateError::Other(other) => match other.0.downcast_ref::<SvidError>() {
                Some(svid) => svid.reason(),
                None => "untrusted",
            },
            _ => "untrusted",
        },
        _ => "protocol",
    }
}

/// Counters of the listeners' TLS, rendered on `/metrics` once `[tls]` is configured.
#[derive(Debug, Default)]
pub struct TlsMetrics {
    enabled: AtomicBool,
    handshakes: [AtomicU64; 3],
    failures: [[AtomicU64; HANDSHAKE_FAILURE_REASONS.len()]; 3],
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    /// `notAfter` of the server certificate in use, seconds since the epoch.
    certificate_expiry: AtomicI64,
}

impl TlsMetrics {
    pub fn handshake(&self, listener: Listener) {
        self.handshakes[listener as usize].fetch_add(1, Relaxed);
    }

    /// A handshake on `listener` failed for `reason`, one of [`HANDSHAKE_FAILURE_REASONS`].
    pub fn handshake_failed(&self, listener: Listener, reason: &'static str) {
        let protocol = HANDSHAKE_FAILURE_REASONS.iter().position(|r| *r == "protocol").unwrap_or(0);
        let i = HANDSHAKE_FAILURE_REASONS.iter().position(|r| *r == reason).unwrap_or(protocol);
        self.failures[listener as usize][i].fetch_add(1, Relaxed);
    }

    /// Records the expiry of the certificate now served, and warns when it is already past:
    /// clients will refuse it, but the collector still serves (a renewal may be on its way).
    fn set_certificate_expiry(&self, path: &Path, not_after: i64) {
        self.certificate_expiry.store(not_after, Relaxed);
        let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        if not_after <= now {
            tracing::warn!(cert = %path.display(), not_after, "the server certificate has expired; clients will refuse it");
        }
    }

    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        if !self.enabled.load(Relaxed) {
            return;
        }
        let name = "slo_gate_tls_handshakes_total";
        let _ = writeln!(out, "# HELP {name} TLS handshakes completed, by listener.\n# TYPE {name} counter");
        for listener in Listener::ALL {
            let _ = writeln!(
                out,
                "{name}{{listener=\"{}\"}} {}",
                listener.as_str(),
                self.handshakes[listener as usize].load(Relaxed)
            );
        }
        let name = "slo_gate_tls_handshake_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} TLS handshakes refused or abandoned, by listener and reason.\n# TYPE {name} counter"
        );
        for listener in Listener::ALL {
            for (i, reason) in HANDSHAKE_FAILURE_REASONS.iter().enumerate() {
                let n = self.failures[listener as usize][i].load(Relaxed);
                let _ = writeln!(out, "{name}{{listener=\"{}\",reason=\"{reason}\"}} {n}", listener.as_str());
            }
        }
        let name = "slo_gate_tls_certificate_expiry_timestamp_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} When the server certificate in use expires (its notAfter), in seconds since the epoch.\n# TYPE {name} gauge\n{name} {}",
            self.certificate_expiry.load(Relaxed)
        );
        for (name, help, value) in [
            ("slo_gate_tls_reloads_total", "Changed TLS certificate, key or bundle files loaded.", &self.reloads),
            (
                "slo_gate_tls_reload_failures_total",
                "Changed TLS files that could not be loaded (the previous configuration was kept).",
                &self.reload_failures,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::spiffe::testing::{self, Ca};
    use std::collections::BTreeMap;

    struct Setup {
        dir: tempfile::TempDir,
        ca: Ca,
        config: TlsConfig,
    }

    /// A CA, a server certificate and key, and a `[tls]` table requiring client certificates
    /// of `prod.example` on every listener.
    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = testing::ca("prod.example CA");
        let (cert, key) = testing::server(&ca);
        std::fs::write(dir.path().join("server.pem"), cert).unwrap();
        std::fs::write(dir.path().join("server-key.pem"), key).unwrap();
        std::fs::write(dir.path().join("bundle.pem"), &ca.pem).unwrap();
        let mut config = TlsConfig::new(dir.path().join("server.pem"), dir.path().join("server-key.pem"));
        config.client_auth = ClientAuth::Required;
        config.client_auth_per_listener = BTreeMap::from([("api".to_string(), ClientAuth::Optional)]);
        config.trust_domains = BTreeMap::from([("prod.example".to_string(), dir.path().join("bundle.pem"))]);
        config.validate().unwrap();
        Setup { dir, ca, config }
    }

    fn load_err(config: &TlsConfig) -> String {
        ServerTls::load(config, Arc::default()).unwrap_err().to_string()
    }

    #[test]
    fn every_tls_listener_gets_its_alpn_and_plaintext_ones_none() {
        let s = setup();
        let tls = ServerTls::load(&s.config, Arc::default()).unwrap();
        let grpc = tls.current(Listener::OtlpGrpc).unwrap();
        assert_eq!(grpc.alpn_protocols, [b"h2".to_vec()]);
        let api = tls.current(Listener::Api).unwrap();
        assert_eq!(api.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);

        let mut plain_api = s.config.clone();
        plain_api.listeners = vec!["otlp_grpc".into(), "otlp_http".into()];
        let tls = ServerTls::load(&plain_api, Arc::default()).unwrap();
        assert!(tls.serves(Listener::OtlpHttp) && !tls.serves(Listener::Api) && tls.current(Listener::Api).is_none());
    }

    #[test]
    fn bad_files_at_start_are_errors_naming_the_file() {
        let s = setup();
        let path = |name: &str| s.dir.path().join(name);

        std::fs::write(
            path("garbage-cert.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAK\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let mut c = s.config.clone();
        c.cert_file = path("garbage-cert.pem");
        let err = load_err(&c);
        assert!(err.contains("garbage-cert.pem"), "{err}");

        // DER that is base64 but not a certificate.
        std::fs::write(path("not-x509.pem"), "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n")
            .unwrap();
        c.cert_file = path("not-x509.pem");
        let err = load_err(&c);
        assert!(err.contains("not-x509.pem") && err.contains("certificate cannot be used"), "{err}");

        std::fs::write(path("bad-key.pem"), "-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n")
            .unwrap();
        let mut c = s.config.clone();
        c.key_file = path("bad-key.pem");
        let err = load_err(&c);
        assert!(err.contains("bad-key.pem") && err.contains("private key cannot be used"), "{err}");

        let mut c = s.config.clone();
        c.key_file = path("server.pem");
        let err = load_err(&c);
        assert!(err.contains("server.pem") && err.contains("no PRIVATE KEY"), "{err}");

        let mut c = s.config.clone();
        c.trust_domains.insert("staging.example".into(), path("missing-bundle.pem"));
        let err = load_err(&c);
        assert!(err.contains("missing-bundle.pem") && err.starts_with("cannot read"), "{err}");

        let (_, other_key) = testing::server(&s.ca);
        std::fs::write(path("other-key.pem"), other_key).unwrap();
        let mut c = s.config.clone();
        c.key_file = path("other-key.pem");
        let err = load_err(&c);
        assert!(
            err.contains("other-key.pem") && err.contains("server.pem") && err.contains("does not belong"),
            "{err}"
        );
    }

    #[test]
    fn changed_files_are_reloaded_and_bad_ones_keep_the_configuration_in_use() {
        let s = setup();
        let telemetry = Arc::new(Telemetry::default());
        let tls = ServerTls::load(&s.config, Arc::clone(&telemetry)).unwrap();
        assert!(matches!(tls.reload(), Reload::Unchanged));
        let before = tls.current(Listener::OtlpHttp).unwrap();

        // A new certificate and key, each written beside and renamed over the old file.
        let (cert, key) = testing::server(&s.ca);
        let replace = |name: &str, text: &str| {
            let tmp = s.dir.path().join(format!("{name}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, s.dir.path().join(name)).unwrap();
        };
        replace("server.pem", &cert);
        // Only the certificate is new: it does not match the old key yet.
        let Reload::Refused(err) = tls.reload() else { panic!("a mismatched pair was loaded") };
        assert!(err.to_string().contains("does not belong"), "{err}");
        assert!(Arc::ptr_eq(&before, &tls.current(Listener::OtlpHttp).unwrap()));
        // Refused once, not again while nothing changes.
        assert!(matches!(tls.reload(), Reload::Unchanged));
        replace("server-key.pem", &key);
        assert!(matches!(tls.reload(), Reload::Loaded));
        let after = tls.current(Listener::OtlpHttp).unwrap();
        assert!(!Arc::ptr_eq(&before, &after));

        // A bundle that is no PEM at all.
        replace("bundle.pem", "garbage");
        assert!(matches!(tls.reload(), Reload::Refused(TlsError::Pem(_))));
        let text = telemetry.render();
        assert!(text.contains("slo_gate_tls_reloads_total 1"), "{text}");
        let expiry = not_after(&s.config, &pem::certificates(&s.config.cert_file).unwrap()[0]).unwrap();
        assert!(expiry > 4_000_000_000, "rcgen's default validity runs to the year 4096: {expiry}");
        assert!(text.contains(&format!("slo_gate_tls_certificate_expiry_timestamp_seconds {expiry}\n")), "{text}");
        assert!(text.contains("slo_gate_tls_reload_failures_total 2"), "{text}");
        assert!(Arc::ptr_eq(&after, &tls.current(Listener::OtlpHttp).unwrap()));
    }

    #[test]
    fn handshake_failures_are_counted_by_listener_and_reason() {
        let telemetry = Telemetry::default();
        telemetry.tls.enabled.store(true, Relaxed);
        let io = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        for (err, reason) in [
            (io(rustls::Error::NoCertificatesPresented), "no_certificate"),
            (io(rustls::Error::InvalidCertificate(CertificateError::Expired)), "expired"),
            (io(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)), "untrusted"),
            (io(SvidError::NoUri.into_rustls()), "not_svid"),
            (io(SvidError::UnknownTrustDomain("x".into()).into_rustls()), "unknown_trust_domain"),
            (io(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)), "protocol"),
            (io(rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)), "server_certificate_refused"),
            (io(rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)), "protocol"),
            (io::Error::from(io::ErrorKind::UnexpectedEof), "closed"),
        ] {
            assert_eq!(handshake_failure_reason(&err), reason, "{err}");
            telemetry.tls.handshake_failed(Listener::Api, reason);
        }
        let text = telemetry.render();
        assert!(
            text.contains("slo_gate_tls_handshake_failures_total{listener=\"api\",reason=\"expired\"} 1"),
            "{text}"
        );
        assert!(text.contains("slo_gate_tls_handshake_failures_total{listener=\"otlp_grpc\",reason=\"expired\"} 0"));
        assert!(!Telemetry::default().render().contains("slo_gate_tls_"), "plaintext collectors show no TLS series");
    }
}
