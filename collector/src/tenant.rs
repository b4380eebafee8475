//! Tenants: every stored item belongs to one, named by the `X-Scope-OrgID` header (HTTP) or
//! metadata key (gRPC), as in Grafana's Mimir, Loki, Tempo and Pyroscope.
//!
//! The tenant becomes a directory name under the data directory, so the allowed characters
//! are the ones Grafana's stack allows (letters, digits and `!-_.*'()`), at most 150 bytes,
//! and never `.` or `..`.

use std::fmt;
use std::sync::Arc;

/// The header (and gRPC metadata key) that selects the tenant.
pub const TENANT_HEADER: &str = "x-scope-orgid";
/// The tenant of requests that name none.
pub const DEFAULT_TENANT: &str = "anonymous";
const MAX_LEN: usize = 150;

/// A validated tenant id; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(Arc<str>);

/// Why a tenant id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantError {
    #[error("tenant id is empty")]
    Empty,
    #[error("tenant id is {0} bytes long; at most {MAX_LEN} are allowed")]
    TooLong(usize),
    #[error("tenant id {0:?} is not allowed")]
    Reserved(String),
    #[error("tenant id {id:?} contains {ch:?}; only letters, digits and !-_.*'() are allowed")]
    BadChar { id: String, ch: char },
    #[error("tenant id {0:?} is not UTF-8 text; only letters, digits and !-_.*'() are allowed")]
    NotText(String),
}

impl Tenant {
    pub fn parse(id: &str) -> Result<Tenant, TenantError> {
        if id.is_empty() {
            return Err(TenantError::Empty);
        }
        if id.len() > MAX_LEN {
            return Err(TenantError::TooLong(id.len()));
        }
        if id == "." || id == ".." {
            return Err(TenantError::Reserved(id.to_string()));
        }
        if let Some(ch) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c))) {
            return Err(TenantError::BadChar { id: id.to_string(), ch });
        }
        Ok(Tenant(Arc::from(id)))
    }

    /// The tenant a request names in its `X-Scope-OrgID` header (HTTP) or metadata (gRPC);
    /// no header means [`DEFAULT_TENANT`]. A value outside the allowed set is refused, whatever
    /// its bytes: it never falls back to the default tenant.
    pub fn from_headers(headers: &http::HeaderMap) -> Result<Tenant, TenantError> {
        Tenant::from_header_bytes(headers.get(TENANT_HEADER).map(|v| v.as_bytes()))
    }

    /// The tenant named by an optional header value, as received (header values may carry
    /// any byte but control characters); absent means [`DEFAULT_TENANT`].
    pub fn from_header_bytes(value: Option<&[u8]>) -> Result<Tenant, TenantError> {
        match value {
            None => Ok(Tenant::default()),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => Tenant::parse(text.trim()),
                Err(_) => Err(TenantError::NotText(String::from_utf8_lossy(bytes).into_owned())),
            },
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant(Arc::from(DEFAULT_TENANT))
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Tenant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Tenant {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Tenant::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        assert_eq!(Tenant::from_header_bytes(None).unwrap().as_str(), "anonymous");
        assert_eq!(Tenant::parse("team-a_1.prod").unwrap().as_str(), "team-a_1.prod");
        assert_eq!(Tenant::parse(""), Err(TenantError::Empty));
        assert_eq!(Tenant::parse(".."), Err(TenantError::Reserved("..".into())));
        // A path separator would let a tenant write outside its own directory.
        assert_eq!(Tenant::parse("a/../b"), Err(TenantError::BadChar { id: "a/../b".into(), ch: '/' }));
        assert_eq!(Tenant::parse(&"x".repeat(151)), Err(TenantError::TooLong(151)));
    }

    #[test]
    fn header_values_outside_the_allowed_set_are_refused_not_defaulted() {
        // issue 11 #9: a non-ASCII tenant (`X-Scope-OrgID: é`) was stored as anonymous: the
        // header's `to_str().ok()` turned it into "no header".
        let value = |bytes: &[u8]| Tenant::from_header_bytes(Some(bytes));
        assert_eq!(value("é".as_bytes()), Err(TenantError::BadChar { id: "é".into(), ch: 'é' }));
        assert_eq!(value(&[0xe9]), Err(TenantError::NotText("\u{fffd}".into())));
        assert_eq!(value(b""), Err(TenantError::Empty));
        assert_eq!(value(b"  "), Err(TenantError::Empty));
        assert_eq!(value(b"team a"), Err(TenantError::BadChar { id: "team a".into(), ch: ' ' }));
        assert_eq!(value(b" team-a ").unwrap().as_str(), "team-a");

        let mut headers = http::HeaderMap::new();
        assert_eq!(Tenant::from_headers(&headers).unwrap().as_str(), "anonymous");
        headers.insert(TENANT_HEADER, http::HeaderValue::from_bytes("ü".as_bytes()).unwrap());
        let err = Tenant::from_headers(&headers).unwrap_err();
        assert!(err.to_string().contains("only letters, digits"), "{err}");
        headers.insert(TENANT_HEADER, http::HeaderValue::from_static("team-b"));
        assert_eq!(Tenant::from_headers(&headers).unwrap().as_str(), "team-b");
    }
}
