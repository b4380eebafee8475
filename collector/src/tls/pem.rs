//! Certificates and private keys from PEM files. Every error names the file and says what was
//! wrong with it, so a bad file is found at start (or refused at reload) rather than at the
//! first handshake.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Largest PEM file read: certificate chains and bundles are kilobytes; a file far larger is
/// not one.
pub const MAX_PEM_BYTES: u64 = 4 << 20;

/// Why a PEM file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is {size} bytes; a PEM file of certificates or a key is at most {MAX_PEM_BYTES}")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path} is not valid PEM: {problem}")]
    Malformed { path: PathBuf, problem: String },
    #[error("{path} holds no {what} (expected a `-----BEGIN {what}-----` block)")]
    Missing { path: PathBuf, what: &'static str },
}

/// The bytes of a PEM file, bounded by [`MAX_PEM_BYTES`].
pub fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    let read_err = |source| PemError::Read { path: path.to_path_buf(), source };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_PEM_BYTES {
        return Err(PemError::TooLarge { path: path.to_path_buf(), size });
    }
    std::fs::read(path).map_err(read_err)
}

/// Every certificate of a PEM file, in file order (a chain is leaf first); at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    certificates_of(path, &read(path)?)
}

/// [`certificates`] of bytes already read from `path`.
pub fn certificates_of(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Malformed { path: path.to_path_buf(), problem: e.to_string() })?;
    if certs.is_empty() {
        return Err(PemError::Missing { path: path.to_path_buf(), what: "CERTIFICATE" });
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    private_key_of(path, &read(path)?)
}

/// [`private_key`] of bytes already read from `path`.
pub fn private_key_of(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            PemError::Missing { path: path.to_path_buf(), what: "PRIVATE KEY" }
        }
        other => PemError::Malformed { path: path.to_path_buf(), problem: other.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_files_are_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let good_cert = dir.path().join("cert.pem");
        let good_key = dir.path().join("key.pem");
        std::fs::write(&good_cert, cert.pem()).unwrap();
        std::fs::write(&good_key, key.serialize_pem()).unwrap();
        assert_eq!(certificates(&good_cert).unwrap().len(), 1);
        assert!(private_key(&good_key).is_ok());

        // A key file given as the certificate, and the other way round.
        let err = certificates(&good_key).unwrap_err().to_string();
        assert!(err.contains("key.pem") && err.contains("no CERTIFICATE"), "{err}");
        let err = private_key(&good_cert).unwrap_err().to_string();
        assert!(err.contains("cert.pem") && err.contains("no PRIVATE KEY"), "{err}");

        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n").unwrap();
        let err = certificates(&broken).unwrap_err().to_string();
        assert!(err.contains("broken.pem") && err.contains("not valid PEM"), "{err}");

        let err = certificates(&dir.path().join("absent.pem")).unwrap_err().to_string();
        assert!(err.contains("absent.pem") && err.starts_with("cannot read"), "{err}");
    }
}
