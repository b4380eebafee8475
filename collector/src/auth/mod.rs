//! Who may do what with which tenant's data, decided once per request for every listener.
//!
//! A request's caller is a [`Principal`]: the holder of a token from the token file
//! (`Authorization: Bearer <secret>`, or HTTP basic auth with the token's id as the user —
//! what Grafana's datasources send), the subject of a JWT signed by a key of the configured
//! JWKS file, the SPIFFE ID of a client certificate that TLS verified (`crate::tls`), or,
//! when `[auth] required` is off, an anonymous caller with today's open access. Each
//! principal holds [`Grant`]s: the tenants it may use and, for them, its [`Scopes`] (`read`,
//! `write`, `gate-write`).
//!
//! [`access::check`] is the one place the decision is made: a layer around each listener's
//! router that classifies the request ([`routes::need`]), authenticates the caller, settles
//! the tenant (the one `X-Scope-OrgID` names, or the principal's own when it names none — the
//! header is then set, so handlers keep reading the tenant from it) and refuses with 401 /
//! `UNAUTHENTICATED` or 403 / `PERMISSION_DENIED` in the envelope of the API family asked,
//! before any handler or body is touched, so a refused write stores nothing. Because the
//! layer wraps the whole router, a route added later is checked without doing anything, and
//! `collector/tests/tenant_isolation.rs` enumerates every route to keep it so.
//!
//! Secrets are kept only as digests (SHA-256 for high-entropy tokens, argon2 for passwords),
//! compared in constant time, never logged; every decision is audited ([`audit`]).

pub mod access;
pub mod audit;
pub mod config;
pub mod gate_tokens;
pub mod jwt;
pub mod policy;
pub mod routes;
pub mod tokens;

use std::fmt;
use std::sync::Arc;

pub use access::{Access, Authorized, WriteAccess};
pub use config::AuthConfig;
pub use gate_tokens::{AuthError, MIN_TOKEN_LEN, TokenFileError, TokenProblem, WriteTokens};

use crate::tenant::{DEFAULT_TENANT, Tenant};

/// The SHA-256 of a token, as the token file's `sha256:` digests hold it.
pub fn digest(token: &[u8]) -> [u8; 32] {
    gate_tokens::digest_bytes(token)
}

/// What a request does with a tenant's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Every query API (native, gate reads, Grafana's Prometheus, Tempo and Pyroscope APIs).
    Read,
    /// OTLP exports, Pyroscope pushes, remote write.
    Write,
    /// Recording gate runs (`POST /api/v1/gate/runs`), which decide later releases.
    GateWrite,
    /// The admin routes (`/api/v1/admin/...`): deleting a tenant's data. Never implied: an
    /// anonymous caller and the gate's bare tokens do not hold it.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::GateWrite, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::GateWrite => "gate-write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |bits, s| bits | s.bit()))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Scope::ALL.into_iter().filter(|s| self.contains(*s)).map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// The tenants a grant covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    /// Every tenant (`*` in the token file).
    All,
    /// These tenants only.
    Only(Vec<Tenant>),
}

impl Tenants {
    pub fn contains(&self, tenant: &Tenant) -> bool {
        match self {
            Tenants::All => true,
            Tenants::Only(list) => list.contains(tenant),
        }
    }
}

/// Some tenants, and what may be done with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub tenants: Tenants,
    pub scopes: Scopes,
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// No credential, accepted because `[auth] required` is off.
    Anonymous,
    /// A token of the token file (bearer or basic auth), or a gate write token.
    Token,
    /// A JWT verified against the JWKS file.
    Jwt,
    /// A client certificate's SPIFFE ID.
    Spiffe,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Anonymous => "anonymous",
            PrincipalKind::Token => "token",
            PrincipalKind::Jwt => "jwt",
            PrincipalKind::Spiffe => "spiffe",
        }
    }
}

/// A caller and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The token id, the JWT's `sub`, the SPIFFE ID, or `anonymous`; safe to log.
    pub id: Arc<str>,
    pub grants: Vec<Grant>,
    /// The tenant of a request that names none, when the principal's identity decides it
    /// (a token or SPIFFE rule with one tenant, a `{tenant}` bound from a SPIFFE ID).
    pub home: Option<Tenant>,
}

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            kind: PrincipalKind::Anonymous,
            id: Arc::from(DEFAULT_TENANT),
            grants: vec![Grant { tenants: Tenants::All, scopes: [Scope::Read, Scope::Write].into_iter().collect() }],
            home: None,
        }
    }

    /// Whether the principal may do `scope` with `tenant`'s data.
    pub fn may(&self, tenant: &Tenant, scope: Scope) -> bool {
        self.grants.iter().any(|g| g.scopes.contains(scope) && g.tenants.contains(tenant))
    }

    /// Whether the principal holds `scope` for any tenant.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.grants.iter().any(|g| g.scopes.contains(scope))
    }

    /// The tenant of a request that names none: the principal's home, else the one tenant its
    /// grants for `scope` name, else (several or all tenants) the default tenant.
    pub fn implied_tenant(&self, scope: Scope) -> Tenant {
        if let Some(home) = &self.home {
            return home.clone();
        }
        let mut only: Option<&Tenant> = None;
        for grant in self.grants.iter().filter(|g| g.scopes.contains(scope)) {
            match &grant.tenants {
                Tenants::All => return Tenant::default(),
                Tenants::Only(list) => {
                    for t in list {
                        match only {
                            None => only = Some(t),
                            Some(o) if o == t => {}
                            Some(_) => return Tenant::default(),
                        }
                    }
                }
            }
        }
        only.cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Tenant {
        Tenant::parse(s).unwrap()
    }

    #[test]
    fn grants_decide_tenant_and_scope_together() {
        let p = Principal {
            kind: PrincipalKind::Token,
            id: "ci".into(),
            grants: vec![
                Grant { tenants: Tenants::Only(vec![t("pay")]), scopes: [Scope::Write].into_iter().collect() },
                Grant { tenants: Tenants::Only(vec![t("shop")]), scopes: [Scope::Read].into_iter().collect() },
            ],
            home: None,
        };
        assert!(p.may(&t("pay"), Scope::Write));
        assert!(!p.may(&t("pay"), Scope::Read), "a write grant for pay is not a read grant");
        assert!(p.may(&t("shop"), Scope::Read));
        assert!(!p.may(&t("shop"), Scope::Write));
        assert!(!p.may(&t("anonymous"), Scope::Read));
        assert_eq!(p.implied_tenant(Scope::Write), t("pay"));
        assert_eq!(p.implied_tenant(Scope::Read), t("shop"));
        assert_eq!(p.implied_tenant(Scope::GateWrite), t("anonymous"));
        let anonymous = Principal::anonymous();
        assert!(anonymous.may(&t("x"), Scope::Write) && !anonymous.has_scope(Scope::GateWrite));
        assert!(!anonymous.has_scope(Scope::Admin), "deleting data is never open");
        assert_eq!(Scope::parse("admin"), Some(Scope::Admin));
        assert_eq!(format!("{}", [Scope::GateWrite, Scope::Read].into_iter().collect::<Scopes>()), "read,gate-write");
    }
}
