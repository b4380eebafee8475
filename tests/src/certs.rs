//! Throw-away certificate authorities and certificates for the TLS tests, made with rcgen at
//! run time: nothing is checked in that could expire, and every test gets keys of its own.
//!
//! A [`Ca`] stands for one SPIFFE trust domain's signing authority: it signs the collector's
//! server certificate (`localhost` and `127.0.0.1`, so clients can verify the name they
//! dial) and workload certificates whose only URI SAN is a SPIFFE ID, as X.509-SVIDs are.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
    /// The certificate's DER bytes, to compare with what a TLS peer presented.
    pub der: Vec<u8>,
}

impl Pair {
    /// Writes `<name>.pem` and `<name>-key.pem` into `dir`; their paths, certificate first.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        write(&cert, &self.cert);
        write(&key, &self.key);
        (cert, key)
    }
}

/// A self-signed CA.
pub struct Ca {
    /// The CA certificate, PEM: the trust bundle of its domain.
    pub pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("pem", &self.pem).finish_non_exhaustive()
    }
}

impl Ca {
    /// A new CA whose subject's common name is `name` (e.g. `prod.example CA`).
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .unwrap_or_else(|e| panic!("self-sign the CA {name:?}: {e}"));
        Ca { pem: issuer.pem(), issuer }
    }

    /// Writes the CA certificate to `dir/<name>`; its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        write(&path, &self.pem);
        path
    }

    /// A server certificate for `localhost` (DNS) and `127.0.0.1` (IP address), with a fresh
    /// key: each call gives another serial and key, which is what a rotation looks like.
    pub fn server(&self) -> Pair {
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("server names");
        params.distinguished_name.push(DnType::CommonName, "slo-gate collector");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("sign the server certificate");
        Pair { cert: cert.pem(), key: key.serialize_pem(), der: cert.der().to_vec() }
    }

    /// A workload certificate (client authentication) whose URI SAN is `spiffe_id`, valid now.
    pub fn client(&self, spiffe_id: &str) -> Pair {
        self.client_with(spiffe_id, |_| {})
    }

    /// A workload certificate for `spiffe_id` that expired: valid in 2020 only.
    pub fn expired_client(&self, spiffe_id: &str) -> Pair {
        self.client_with(spiffe_id, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 12, 31);
        })
    }

    /// A workload certificate for `spiffe_id`, with `edit` applied to its parameters before
    /// signing (validity, extra SANs...).
    pub fn client_with(&self, spiffe_id: &str, edit: impl FnOnce(&mut CertificateParams)) -> Pair {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.distinguished_name.push(DnType::CommonName, "workload");
        let uri = spiffe_id.try_into().unwrap_or_else(|e| panic!("{spiffe_id:?} as a URI SAN: {e}"));
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        edit(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap_or_else(|e| panic!("sign {spiffe_id}: {e}"));
        Pair { cert: cert.pem(), key: key.serialize_pem(), der: cert.der().to_vec() }
    }
}

/// Replaces the file at `path` with `text` as certificate managers do: written beside it,
/// then renamed over it, so a reader never sees half a file.
pub fn replace(path: &Path, text: &str) {
    let name = path.file_name().expect("a file name").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.new"));
    write(&tmp, text);
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {} over {}: {e}", tmp.display(), path.display()));
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_certificate_is_new() {
        let ca = Ca::new("test CA");
        let (a, b) = (ca.server(), ca.server());
        assert_ne!(a.der, b.der);
        assert_ne!(a.key, b.key);
        // A DER certificate is a SEQUENCE, and the PEM holds the same bytes.
        assert_eq!(a.der[0], 0x30);
        assert!(a.cert.starts_with("-----BEGIN CERTIFICATE-----"), "{}", a.cert);
    }
}
