//! Who is on the other end of a connection, as far as the transport can tell: which listener it
//! came in on, whether it speaks TLS, and the SPIFFE ID of its client certificate when it
//! presented one that a configured trust bundle verified.
//!
//! `listener::serve` puts one [`Peer`] in the extensions of every request of a connection;
//! `auth` reads it to decide who the caller is. A request without a `Peer` (a router driven
//! in-process, as unit tests do) is a plaintext peer without an identity.
//!
//! SPIFFE IDs follow the SPIFFE ID specification (spiffe/spiffe `standards/SPIFFE-ID.md`,
//! v1.0): `spiffe://<trust domain>/<path>`, the trust domain of lowercase letters, digits,
//! `.`, `-` and `_`; path segments of letters, digits, `.`, `-` and `_`, none empty, none `.`
//! or `..`; no query, fragment, port or user info; at most 2,048 bytes.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::telemetry::Listener;

/// What the transport knows about a request's client.
#[derive(Debug, Clone)]
pub struct Peer {
    pub listener: Listener,
    pub remote: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The SPIFFE ID of the verified client certificate, when the client presented one.
    pub spiffe_id: Option<SpiffeId>,
}

/// A validated SPIFFE ID; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: Arc<str>,
    /// Where the trust domain ends in `id` (the path, if any, starts here).
    domain_end: usize,
}

const SCHEME: &str = "spiffe://";
const MAX_LEN: usize = 2048;

/// Why a URI is not a SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("a SPIFFE ID starts with `spiffe://`")]
    Scheme,
    #[error("a SPIFFE ID is at most {MAX_LEN} bytes long")]
    TooLong,
    #[error("a SPIFFE ID names a trust domain")]
    NoTrustDomain,
    #[error("trust domain {0:?} may hold only lowercase letters, digits, `.`, `-` and `_`")]
    BadTrustDomain(String),
    #[error(
        "path segment {0:?} is empty, `.` or `..`, or holds a character other than letters, digits, `.`, `-` and `_`"
    )]
    BadSegment(String),
    #[error("a SPIFFE ID has no trailing `/`")]
    TrailingSlash,
}

fn trust_domain_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
}

fn segment_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

impl SpiffeId {
    pub fn parse(uri: &str) -> Result<SpiffeId, SpiffeIdError> {
        if uri.len() > MAX_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = uri
            .get(..SCHEME.len())
            .filter(|s| s.eq_ignore_ascii_case(SCHEME))
            .map(|_| &uri[SCHEME.len()..])
            .ok_or(SpiffeIdError::Scheme)?;
        let (domain, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if domain.is_empty() {
            return Err(SpiffeIdError::NoTrustDomain);
        }
        if !domain.bytes().all(trust_domain_char) {
            return Err(SpiffeIdError::BadTrustDomain(domain.to_string()));
        }
        if !path.is_empty() {
            if path.ends_with('/') {
                return Err(SpiffeIdError::TrailingSlash);
            }
            for segment in path[1..].split('/') {
                if segment.is_empty() || segment == "." || segment == ".." || !segment.bytes().all(segment_char) {
                    return Err(SpiffeIdError::BadSegment(segment.to_string()));
                }
            }
        }
        // The scheme is case-insensitive; the ID is kept with it in lowercase.
        let id: Arc<str> = Arc::from(format!("{SCHEME}{rest}"));
        Ok(SpiffeId { domain_end: SCHEME.len() + domain.len(), id })
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// `prod.example` of `spiffe://prod.example/ns/pay/sa/order-service`.
    pub fn trust_domain(&self) -> &str {
        &self.id[SCHEME.len()..self.domain_end]
    }

    /// `/ns/pay/sa/order-service` of `spiffe://prod.example/ns/pay/sa/order-service`; empty for
    /// the ID of a trust domain itself.
    pub fn path(&self) -> &str {
        &self.id[self.domain_end..]
    }

    /// The path's segments (`ns`, `pay`, `sa`, `order-service`).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path().split('/').skip(1)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_are_split_into_trust_domain_and_path() {
        let id = SpiffeId::parse("spiffe://prod.example/ns/pay/sa/order-service").unwrap();
        assert_eq!(id.trust_domain(), "prod.example");
        assert_eq!(id.path(), "/ns/pay/sa/order-service");
        assert_eq!(id.segments().collect::<Vec<_>>(), ["ns", "pay", "sa", "order-service"]);
        let domain = SpiffeId::parse("SPIFFE://td").unwrap();
        assert_eq!((domain.as_str(), domain.trust_domain(), domain.path()), ("spiffe://td", "td", ""));
        assert_eq!(domain.segments().count(), 0);
    }

    #[test]
    fn malformed_spiffe_ids_are_refused_with_the_reason() {
        use SpiffeIdError::*;
        for (uri, err) in [
            ("https://prod.example/a", Scheme),
            ("spiffe:/prod.example", Scheme),
            ("spiffe:///ns", NoTrustDomain),
            ("spiffe://Prod.example/a", BadTrustDomain("Prod.example".into())),
            ("spiffe://prod.example:8443/a", BadTrustDomain("prod.example:8443".into())),
            ("spiffe://user@prod/a", BadTrustDomain("user@prod".into())),
            ("spiffe://prod/a//b", BadSegment(String::new())),
            ("spiffe://prod/a/../b", BadSegment("..".into())),
            ("spiffe://prod/a?x=1", BadSegment("a?x=1".into())),
            ("spiffe://prod/a/", TrailingSlash),
        ] {
            assert_eq!(SpiffeId::parse(uri), Err(err), "{uri}");
        }
        assert_eq!(SpiffeId::parse(&format!("spiffe://td/{}", "a".repeat(MAX_LEN))), Err(TooLong));
    }
}
