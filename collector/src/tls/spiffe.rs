//! Client certificates as SPIFFE X.509-SVIDs (spiffe/spiffe `standards/X509-SVID.md`): the
//! leaf names its workload by exactly one URI SAN, a SPIFFE ID, and is not a CA; the chain is
//! verified against the CA bundle of the ID's own trust domain, never against another's.
//!
//! Why one webpki verifier per trust domain rather than one over every bundle: a single root
//! store would accept `spiffe://prod.example/...` signed by the CA of `staging.example`, since
//! any configured root would do; a trust domain's CA may only vouch for its own IDs. So the
//! leaf is read first (x509-parser), its trust domain picks the bundle, and rustls's
//! [`WebPkiClientVerifier`] built for that bundle alone checks the chain, the validity period
//! and the `clientAuth` purpose. The verifiers are built once per configuration (at start and
//! at each reload), not per handshake.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore, SignatureScheme};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::identity::{SpiffeId, SpiffeIdError};

/// Why a client certificate is not an acceptable X.509-SVID. Carried inside the handshake's
/// [`rustls::Error`] so that refusals can be counted by reason.
#[derive(Debug, thiserror::Error)]
pub enum SvidError {
    #[error("the client certificate cannot be parsed: {0}")]
    Parse(String),
    #[error("the client certificate is a CA certificate; an X.509-SVID leaf is not")]
    Ca,
    #[error("the client certificate may sign certificates or CRLs; an X.509-SVID leaf may not")]
    SigningKeyUsage,
    #[error("the client certificate has no URI SAN; an X.509-SVID has exactly one, its SPIFFE ID")]
    NoUri,
    #[error("the client certificate has {0} URI SANs; an X.509-SVID has exactly one")]
    ManyUris(usize),
    #[error("the client certificate's URI SAN {uri:?} is not a SPIFFE ID: {source}")]
    NotSpiffe { uri: String, source: SpiffeIdError },
    #[error("trust domain {0:?} of the client certificate has no configured bundle")]
    UnknownTrustDomain(String),
}

impl SvidError {
    /// The bounded label of `slo_gate_tls_handshake_failures_total` this refusal counts under.
    pub fn reason(&self) -> &'static str {
        match self {
            SvidError::UnknownTrustDomain(_) => "unknown_trust_domain",
            _ => "not_svid",
        }
    }

    pub(crate) fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

/// The SPIFFE ID of an X.509-SVID leaf certificate, after the checks on the leaf itself (the
/// chain is not verified here).
pub fn svid_id(leaf: &CertificateDer<'_>) -> Result<SpiffeId, SvidError> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).map_err(|e| SvidError::Parse(e.to_string()))?;
    let constraints = cert.basic_constraints().map_err(|e| SvidError::Parse(e.to_string()))?;
    if constraints.is_some_and(|c| c.value.ca) {
        return Err(SvidError::Ca);
    }
    if let Some(usage) = cert.key_usage().map_err(|e| SvidError::Parse(e.to_string()))?
        && (usage.value.key_cert_sign() || usage.value.crl_sign())
    {
        return Err(SvidError::SigningKeyUsage);
    }
    let uris = uris_of(&cert)?;
    let [uri] = uris.as_slice() else {
        return Err(if uris.is_empty() { SvidError::NoUri } else { SvidError::ManyUris(uris.len()) });
    };
    SpiffeId::parse(uri).map_err(|source| SvidError::NotSpiffe { uri: uri.to_string(), source })
}

/// The URI SANs of any certificate (a CA's names its trust domain, `spiffe://prod.example`).
pub fn uri_sans(cert: &CertificateDer<'_>) -> Result<Vec<String>, SvidError> {
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).map_err(|e| SvidError::Parse(e.to_string()))?;
    Ok(uris_of(&cert)?.into_iter().map(str::to_string).collect())
}

fn uris_of<'a>(cert: &'a X509Certificate<'_>) -> Result<Vec<&'a str>, SvidError> {
    let sans = cert.subject_alternative_name().map_err(|e| SvidError::Parse(e.to_string()))?;
    Ok(sans
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect())
}

/// The SPIFFE ID of the client certificate of a finished handshake, for the connection's
/// `Peer`; `None` when the client presented no certificate.
pub fn spiffe_id_of(connection: &ServerConnection) -> Option<SpiffeId> {
    let leaf = connection.peer_certificates()?.first()?;
    svid_id(leaf).ok()
}

/// A trust bundle that cannot be used, named by its file.
#[derive(Debug, thiserror::Error)]
#[error("trust bundle {path} of trust domain {domain:?}: {problem}")]
pub struct BundleError {
    pub domain: String,
    pub path: PathBuf,
    pub problem: String,
}

/// One chain verifier per configured trust domain, and the CA names hinted to clients.
#[derive(Debug)]
pub struct TrustDomains {
    verifiers: BTreeMap<String, Arc<dyn ClientCertVerifier>>,
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl TrustDomains {
    /// Verifiers for `bundles`: (trust domain, bundle file, its certificates).
    pub fn new(
        bundles: &[(String, PathBuf, Vec<CertificateDer<'static>>)],
        provider: &Arc<CryptoProvider>,
    ) -> Result<TrustDomains, BundleError> {
        let mut verifiers = BTreeMap::new();
        let mut hints = Vec::new();
        for (domain, path, certs) in bundles {
            let err = |problem: String| BundleError { domain: domain.clone(), path: path.clone(), problem };
            let mut roots = RootCertStore::empty();
            for (i, cert) in certs.iter().enumerate() {
                roots.add(cert.clone()).map_err(|e| err(format!("certificate {} is not a usable CA: {e}", i + 1)))?;
            }
            hints.extend(roots.subjects());
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                .allow_unauthenticated()
                .build()
                .map_err(|e| err(e.to_string()))?;
            verifiers.insert(domain.clone(), verifier);
        }
        Ok(TrustDomains { verifiers, hints, algorithms: provider.signature_verification_algorithms })
    }
}

/// The client-certificate verifier of one listener: SVID checks, then the chain against the
/// bundle of the ID's trust domain. `mandatory` is the listener's `client_auth = "required"`.
#[derive(Debug)]
pub struct SpiffeVerifier {
    domains: Arc<TrustDomains>,
    mandatory: bool,
}

impl SpiffeVerifier {
    pub fn new(domains: Arc<TrustDomains>, mandatory: bool) -> SpiffeVerifier {
        SpiffeVerifier { domains, mandatory }
    }
}

impl ClientCertVerifier for SpiffeVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.domains.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let id = svid_id(end_entity).map_err(SvidError::into_rustls)?;
        let Some(verifier) = self.domains.verifiers.get(id.trust_domain()) else {
            return Err(SvidError::UnknownTrustDomain(id.trust_domain().to_string()).into_rustls());
        };
        verifier.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.domains.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.domains.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.domains.algorithms.supported_schemes()
    }
}

/// Throw-away CAs and certificates for the TLS unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };

    pub(crate) struct Ca {
        pub pem: String,
        pub issuer: Issuer<'static, KeyPair>,
    }

    pub(crate) fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { pem, issuer: Issuer::new(params, key) }
    }

    /// (certificate PEM, key PEM) of a server for `localhost` signed by `ca`.
    pub(crate) fn server(ca: &Ca) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        (params.signed_by(&key, &ca.issuer).unwrap().pem(), key.serialize_pem())
    }

    /// (certificate PEM, key PEM) of a client with `uris` as URI SANs, signed by `ca`.
    pub(crate) fn client(ca: &Ca, uris: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "client");
        params.subject_alt_names = uris.iter().map(|u| SanType::URI((*u).try_into().unwrap())).collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        edit(&mut params);
        (params.signed_by(&key, &ca.issuer).unwrap().pem(), key.serialize_pem())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection};

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn the_spiffe_id_of_a_leaf_is_its_one_uri_san() {
        let ca = ca("prod.example CA");
        let (one, _) = client(&ca, &["spiffe://prod.example/ns/pay/sa/order-service"], |_| {});
        assert_eq!(svid_id(&der(&one)).unwrap().as_str(), "spiffe://prod.example/ns/pay/sa/order-service");

        let (none, _) = client(&ca, &[], |_| {});
        assert!(matches!(svid_id(&der(&none)), Err(SvidError::NoUri)));
        let (two, _) = client(&ca, &["spiffe://prod.example/a", "spiffe://prod.example/b"], |_| {});
        assert!(matches!(svid_id(&der(&two)), Err(SvidError::ManyUris(2))));
        let (https, _) = client(&ca, &["https://prod.example/a"], |_| {});
        assert!(matches!(svid_id(&der(&https)), Err(SvidError::NotSpiffe { .. })));
        let (as_ca, _) = client(&ca, &["spiffe://prod.example/a"], |p| {
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
        });
        assert!(matches!(svid_id(&der(&as_ca)), Err(SvidError::Ca)));
        let (signer, _) =
            client(&ca, &["spiffe://prod.example/a"], |p| p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign]);
        assert!(matches!(svid_id(&der(&signer)), Err(SvidError::SigningKeyUsage)));
        assert!(matches!(svid_id(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])), Err(SvidError::Parse(_))));
    }

    /// Runs a handshake between `client` and `server` in memory; the server's side when it
    /// succeeded, the server's error otherwise.
    fn handshake(client: ClientConfig, server: Arc<rustls::ServerConfig>) -> Result<ServerConnection, rustls::Error> {
        let mut client = ClientConnection::new(Arc::new(client), ServerName::try_from("localhost").unwrap()).unwrap();
        let mut server = ServerConnection::new(server).unwrap();
        for _ in 0..20 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            let mut slice = &buf[..];
            while !slice.is_empty() {
                server.read_tls(&mut slice).unwrap();
            }
            server.process_new_packets()?;
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            let mut slice = &buf[..];
            while !slice.is_empty() {
                client.read_tls(&mut slice).unwrap();
            }
            let _ = client.process_new_packets();
            if !server.is_handshaking() && !client.is_handshaking() {
                return Ok(server);
            }
        }
        panic!("handshake did not finish");
    }

    fn server_config(ca: &Ca, domains: &[(&str, &Ca)], mandatory: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let bundles: Vec<_> = domains
            .iter()
            .map(|(d, ca)| (d.to_string(), PathBuf::from(format!("{d}.pem")), vec![der(&ca.pem)]))
            .collect();
        let domains = Arc::new(TrustDomains::new(&bundles, &provider).unwrap());
        let (cert, key) = server(ca);
        Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(Arc::new(SpiffeVerifier::new(domains, mandatory)))
                .with_single_cert(vec![der(&cert)], PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap())
                .unwrap(),
        )
    }

    fn client_config(ca: &Ca, identity: Option<(String, String)>) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(der(&ca.pem)).unwrap();
        let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(vec![der(&cert)], PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap())
                .unwrap(),
            None => builder.with_no_client_auth(),
        }
    }

    #[test]
    fn a_finished_handshake_yields_the_clients_spiffe_id_checked_against_its_own_domain() {
        let prod = ca("prod.example CA");
        let staging = ca("staging.example CA");
        let server = server_config(&prod, &[("prod.example", &prod), ("staging.example", &staging)], false);

        let id = "spiffe://prod.example/ns/pay/sa/order-service";
        let conn = handshake(client_config(&prod, Some(client(&prod, &[id], |_| {}))), Arc::clone(&server)).unwrap();
        assert_eq!(spiffe_id_of(&conn).unwrap().as_str(), id);

        // Optional client auth: no certificate, no ID, but the handshake succeeds.
        let conn = handshake(client_config(&prod, None), Arc::clone(&server)).unwrap();
        assert!(spiffe_id_of(&conn).is_none());

        // A prod ID signed by the staging CA: staging's CA is trusted, but not for prod IDs.
        let forged = client(&staging, &[id], |_| {});
        let err = handshake(client_config(&prod, Some(forged)), Arc::clone(&server)).unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)), "{err:?}");

        // An ID of a trust domain without a bundle.
        let other = client(&prod, &["spiffe://other.example/a"], |_| {});
        let err = handshake(client_config(&prod, Some(other)), Arc::clone(&server)).unwrap_err();
        let rustls::Error::InvalidCertificate(CertificateError::Other(other)) = &err else { panic!("{err:?}") };
        let svid = other.0.downcast_ref::<SvidError>().unwrap();
        assert_eq!(
            svid.to_string(),
            "trust domain \"other.example\" of the client certificate has no configured bundle"
        );

        // Required client auth refuses a client without a certificate.
        let required = server_config(&prod, &[("prod.example", &prod)], true);
        let err = handshake(client_config(&prod, None), required).unwrap_err();
        assert_eq!(err, rustls::Error::NoCertificatesPresented);
    }
}
