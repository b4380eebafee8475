//! The `[auth]` table.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slo_contracts::HumanDuration;

use super::Scope;

/// Who may read and write which tenant (see `docs/auth.md`).
///
/// ```toml
/// [auth]
/// required = true
/// token_file = "/etc/slo-gate/tokens"
///
/// [auth.jwt]
/// jwks_file = "/etc/slo-gate/jwks.json"
/// issuer = "https://issuer.example"
/// audience = "slo-gate"
///
/// [[auth.spiffe]]
/// id = "spiffe://prod.example/ns/{tenant}/sa/*"
/// scopes = ["write"]
/// listeners = ["otlp_grpc", "otlp_http"]
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Every request needs a credential — a client certificate matching an `[[auth.spiffe]]`
    /// rule, a token of `token_file`, a gate token, or a JWT — except `/healthz` and `/readyz`.
    /// Off (the default), a request without one may read and write any tenant, as on a
    /// loopback-only collector; a credential that is presented is still checked and limits the
    /// request to its tenants and scopes.
    pub required: bool,
    /// Tokens with their tenants and scopes, one per line: `id tenants scopes digest` (see
    /// `docs/auth.md`; `slo-gate tokens new` makes a line). Reloaded when it changes.
    pub token_file: Option<PathBuf>,
    /// How often `token_file` and the JWKS file are looked at for changes. Default `5s`.
    pub reload_interval: HumanDuration,
    /// JWTs signed by a key of a JWKS file, as service meshes issue them.
    pub jwt: Option<JwtConfig>,
    /// Which client-certificate SPIFFE IDs may use which tenants, one `[[auth.spiffe]]` each.
    pub spiffe: Vec<SpiffeRuleConfig>,
    /// An allowed (principal, tenant, scope) is logged once per this interval with the number
    /// of its requests; refusals are logged each time (at most 100 lines a second). Default `1m`.
    pub audit_interval: HumanDuration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            required: false,
            token_file: None,
            reload_interval: HumanDuration(Duration::from_secs(5)),
            jwt: None,
            spiffe: Vec::new(),
            audit_interval: HumanDuration(Duration::from_secs(60)),
        }
    }
}

/// The `[auth.jwt]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// A JSON Web Key Set (RFC 7517) of the signers' public keys (RSA, EC P-256/P-384,
    /// Ed25519) or shared HMAC keys; a key's `kid` is matched with the JWT header's.
    pub jwks_file: PathBuf,
    /// When set, the `iss` claim must be this.
    #[serde(default)]
    pub issuer: Option<String>,
    /// When set, the `aud` claim must hold this.
    #[serde(default)]
    pub audience: Option<String>,
    /// The claim naming the tenant(s): a string or an array of strings. Default `tenant`.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// The claim naming the scopes: a space-separated string (OAuth's `scope`) or an array;
    /// names other than `read`, `write` and `gate-write` are ignored. Default `scope`.
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    /// Scopes of a JWT without the scope claim. Default none.
    #[serde(default)]
    pub default_scopes: Vec<Scope>,
    /// Clock difference tolerated on `exp` and `nbf`. Default `30s`.
    #[serde(default = "default_leeway")]
    pub leeway: HumanDuration,
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

fn default_scope_claim() -> String {
    "scope".into()
}

fn default_leeway() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// One `[[auth.spiffe]]` rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpiffeRuleConfig {
    /// A SPIFFE ID pattern: `spiffe://<trust domain>/<segments>`, where a segment `*` matches
    /// any one segment, a last segment `*` any one or more, and `{tenant}` any one segment,
    /// which becomes the tenant the identity may use (and writes to when a request names none).
    pub id: String,
    /// The tenants the matching identities may use (not with `{tenant}`). With one, requests
    /// that name no tenant use it; a request naming another is refused.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// What the matching identities may do.
    pub scopes: Vec<Scope>,
    /// The listeners the rule holds on (`otlp_grpc`, `otlp_http`, `api`). Default all.
    #[serde(default)]
    pub listeners: Vec<String>,
}
