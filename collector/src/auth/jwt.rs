//! JWTs as bearer tokens (`[auth.jwt]`): verified against the keys of a JWKS file (RFC 7517),
//! the key chosen by the header's `kid` (or the only key), the algorithm the key's own, never
//! the one the token asks for — so a token cannot pick `none` or turn a public key into an
//! HMAC secret. `exp` and `sub` are required; `iss` and `aud` are checked when configured.
//! The principal is `sub`, its tenants the tenant claim, its scopes the scope claim.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::config::JwtConfig;
use super::{Grant, Principal, PrincipalKind, Scope, Scopes, Tenants};
use crate::tenant::Tenant;

/// Largest JWKS file read, and longest token looked at.
pub const MAX_JWKS_BYTES: u64 = 1 << 20;
pub const MAX_TOKEN_BYTES: usize = 16 << 10;

/// The keys of a JWKS file.
pub struct Jwks {
    keys: Vec<Key>,
}

struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jwks({} keys)", self.keys.len())
    }
}

/// Why a JWKS file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read the JWKS file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the JWKS file {path} is {size} bytes; at most {MAX_JWKS_BYTES} are read")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("the JWKS file {path} is not a JSON Web Key Set: {problem}")]
    Malformed { path: PathBuf, problem: String },
    #[error("the JWKS file {path}, key {index}{kid}: {problem}")]
    Key { path: PathBuf, index: usize, kid: String, problem: String },
    #[error("the JWKS file {path} holds no key")]
    Empty { path: PathBuf },
}

/// Why a JWT was refused (said to the client: nothing here reveals a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the JWT is malformed: {0}")]
    Malformed(String),
    #[error("the JWT names key {0:?}, which the JWKS file does not hold")]
    UnknownKey(String),
    #[error("the JWT names no key (`kid`) and the JWKS file holds several")]
    NoKeyId,
    #[error("the JWT is signed with {got:?} but its key is for {want:?}")]
    WrongAlgorithm { got: Algorithm, want: Algorithm },
    #[error("the JWT's signature does not verify")]
    BadSignature,
    #[error("the JWT has expired")]
    Expired,
    #[error("the JWT is not valid yet (`nbf`)")]
    NotYetValid,
    #[error("the JWT's issuer is not the configured one")]
    WrongIssuer,
    #[error("the JWT's audience does not include the configured one")]
    WrongAudience,
    #[error("the JWT lacks the required claim {0:?}")]
    MissingClaim(String),
    #[error("the JWT's claim {claim:?} {problem}")]
    BadClaim { claim: String, problem: String },
}

impl Jwks {
    pub fn from_file(path: &Path) -> Result<Jwks, JwksError> {
        let read_err = |source| JwksError::Read { path: path.to_path_buf(), source };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge { path: path.to_path_buf(), size });
        }
        let text = std::fs::read(path).map_err(read_err)?;
        Jwks::from_json(path, &text)
    }

    /// The keys of a JWKS document read from `path` (named in errors).
    pub fn from_json(path: &Path, text: &[u8]) -> Result<Jwks, JwksError> {
        let set: JwkSet = serde_json::from_slice(text)
            .map_err(|e| JwksError::Malformed { path: path.to_path_buf(), problem: e.to_string() })?;
        if set.keys.is_empty() {
            return Err(JwksError::Empty { path: path.to_path_buf() });
        }
        let keys = set
            .keys
            .iter()
            .enumerate()
            .map(|(index, jwk)| {
                Key::new(jwk).map_err(|problem| JwksError::Key {
                    path: path.to_path_buf(),
                    index,
                    kid: jwk.common.key_id.as_ref().map(|k| format!(" ({k:?})")).unwrap_or_default(),
                    problem,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Jwks { keys })
    }

    /// Verifies a token and returns its principal.
    pub fn verify(&self, token: &str, config: &JwtConfig) -> Result<Principal, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Malformed(format!("longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or_else(|| JwtError::UnknownKey(kid.clone()))?,
            None => match &self.keys[..] {
                [only] => only,
                _ => return Err(JwtError::NoKeyId),
            },
        };
        if header.alg != key.algorithm {
            return Err(JwtError::WrongAlgorithm { got: header.alg, want: key.algorithm });
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = config.leeway.0.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => JwtError::BadSignature,
                    K::ExpiredSignature => JwtError::Expired,
                    K::ImmatureSignature => JwtError::NotYetValid,
                    K::InvalidIssuer => JwtError::WrongIssuer,
                    K::InvalidAudience => JwtError::WrongAudience,
                    K::MissingRequiredClaim(c) => JwtError::MissingClaim(c.clone()),
                    other => JwtError::Malformed(format!("{other:?}")),
                }
            })?;
        principal(&data.claims, config)
    }
}

fn principal(claims: &serde_json::Map<String, serde_json::Value>, config: &JwtConfig) -> Result<Principal, JwtError> {
    use serde_json::Value;
    let bad =
        |claim: &str, problem: &str| JwtError::BadClaim { claim: claim.to_string(), problem: problem.to_string() };
    let sub = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => s.clone(),
        _ => return Err(bad("sub", "is not a non-empty string of at most 1024 bytes")),
    };
    let strings = |claim: &str, split: bool| -> Result<Vec<String>, JwtError> {
        match claims.get(claim) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) if split => Ok(s.split_ascii_whitespace().map(str::to_string).collect()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) if items.len() <= 1000 => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad(claim, "holds a value that is not a string")))
                .collect(),
            Some(_) => Err(bad(claim, "is neither a string nor an array of at most 1000 strings")),
        }
    };
    let tenants = strings(&config.tenant_claim, false)?
        .iter()
        .map(|t| Tenant::parse(t).map_err(|e| bad(&config.tenant_claim, &e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if tenants.is_empty() {
        return Err(JwtError::MissingClaim(config.tenant_claim.clone()));
    }
    let scopes: Scopes = match claims.contains_key(&config.scope_claim) {
        true => strings(&config.scope_claim, true)?.iter().filter_map(|s| Scope::parse(s)).collect(),
        false => config.default_scopes.iter().copied().collect(),
    };
    let home = (tenants.len() == 1).then(|| tenants[0].clone());
    Ok(Principal {
        kind: PrincipalKind::Jwt,
        id: Arc::from(sub),
        grants: vec![Grant { tenants: Tenants::Only(tenants), scopes }],
        home,
    })
}

/// Whether a bearer value has the shape of a JWT (three base64url parts), so that it is
/// verified as one rather than looked up as a token.
pub fn looks_like_jwt(value: &[u8]) -> bool {
    value.starts_with(b"eyJ")
        && value.iter().filter(|b| **b == b'.').count() == 2
        && value.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Key {
    fn new(jwk: &Jwk) -> Result<Key, String> {
        let algorithm = match &jwk.common.key_algorithm {
            Some(alg) => signing_algorithm(*alg)?,
            None => match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    ref other => return Err(format!("curve {other:?} is not supported")),
                },
                AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                AlgorithmParameters::OctetKey(_) => return Err("an HMAC key needs its `alg`".into()),
            },
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        Ok(Key { kid: jwk.common.key_id.clone(), algorithm, key })
    }
}

fn signing_algorithm(alg: KeyAlgorithm) -> Result<Algorithm, String> {
    Ok(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        other => return Err(format!("{other:?} is an encryption algorithm, not a signature one")),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};

    pub(crate) const SECRET: &[u8] = b"an HMAC key of at least 32 bytes for tests";

    pub(crate) fn jwks_file(dir: &Path, kid: &str, secret: &[u8]) -> PathBuf {
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        let path = dir.join(format!("{kid}.jwks.json"));
        std::fs::write(&path, format!(r#"{{"keys":[{{"kty":"oct","kid":"{kid}","alg":"HS256","k":"{k}"}}]}}"#))
            .unwrap();
        path
    }

    pub(crate) fn sign(kid: &str, secret: &[u8], claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    pub(crate) fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn config(path: PathBuf) -> JwtConfig {
        toml::from_str(&format!("jwks_file = {:?}\naudience = \"slo-gate\"", path.display().to_string())).unwrap()
    }

    #[test]
    fn jwts_give_their_subject_tenants_and_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(jwks_file(dir.path(), "k1", SECRET));
        let jwks = Jwks::from_file(&config.jwks_file).unwrap();
        let claims = serde_json::json!({"sub": "order-service", "aud": "slo-gate", "exp": now() + 600,
            "tenant": "pay", "scope": "write openid"});
        let token = sign("k1", SECRET, claims.clone());
        assert!(looks_like_jwt(token.as_bytes()));
        let p = jwks.verify(&token, &config).unwrap();
        assert_eq!(&*p.id, "order-service");
        assert_eq!(p.home, Some(Tenant::parse("pay").unwrap()));
        assert!(p.may(&Tenant::parse("pay").unwrap(), Scope::Write));
        assert!(!p.may(&Tenant::parse("pay").unwrap(), Scope::Read));
    }

    #[test]
    fn expired_foreign_and_forged_jwts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(jwks_file(dir.path(), "k1", SECRET));
        let jwks = Jwks::from_file(&config.jwks_file).unwrap();
        let ok = serde_json::json!({"sub": "s", "aud": "slo-gate", "exp": now() + 600, "tenant": "pay"});
        let with = |patch: serde_json::Value| {
            let mut c = ok.clone();
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = v.clone();
                }
            }
            c
        };
        let check = |token: String, want: JwtError| assert_eq!(jwks.verify(&token, &config).unwrap_err(), want);
        check(sign("k1", SECRET, with(serde_json::json!({"exp": now() - 3600}))), JwtError::Expired);
        check(sign("k1", b"another key of at least 32 bytes, not ours", ok.clone()), JwtError::BadSignature);
        check(sign("k2", SECRET, ok.clone()), JwtError::UnknownKey("k2".into()));
        check(sign("k1", SECRET, with(serde_json::json!({"aud": "other"}))), JwtError::WrongAudience);
        check(sign("k1", SECRET, with(serde_json::json!({"exp": null}))), JwtError::MissingClaim("exp".into()));
        check(sign("k1", SECRET, with(serde_json::json!({"tenant": null}))), JwtError::MissingClaim("tenant".into()));
        check(sign("k1", SECRET, with(serde_json::json!({"nbf": now() + 3600}))), JwtError::NotYetValid);
        assert!(matches!(
            jwks.verify(&sign("k1", SECRET, with(serde_json::json!({"tenant": "a/b"}))), &config),
            Err(JwtError::BadClaim { .. })
        ));
        // `alg: none` with the signature stripped.
        let token = sign("k1", SECRET, ok.clone());
        let payload = token.split('.').nth(1).unwrap();
        let none = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#);
        assert!(jwks.verify(&format!("{none}.{payload}."), &config).is_err());
        // A token signed with HS384 for a key declared HS256.
        let mut header = Header::new(Algorithm::HS384);
        header.kid = Some("k1".into());
        let hs384 = jsonwebtoken::encode(&header, &ok, &EncodingKey::from_secret(SECRET)).unwrap();
        assert!(matches!(jwks.verify(&hs384, &config), Err(JwtError::WrongAlgorithm { .. })));
    }

    #[test]
    fn bad_jwks_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        for (text, problem) in [
            ("{", "not a JSON Web Key Set"),
            (r#"{"keys":[]}"#, "holds no key"),
            (r#"{"keys":[{"kty":"oct","kid":"a","k":"c2VjcmV0"}]}"#, "key 0 (\"a\"): an HMAC key needs its `alg`"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Jwks::from_file(&path).unwrap_err().to_string();
            assert!(err.contains("jwks.json") && err.contains(problem), "{err}");
        }
    }
}
