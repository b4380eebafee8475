//! The decision itself: [`check`], a layer around each listener's router, and [`Access`],
//! what it decides with (tokens, JWKS, SPIFFE rules, the audit trail), reloaded when its files
//! change.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use tokio::sync::{Semaphore, watch};

use super::audit::{Audit, Event, Outcome};
use super::config::AuthConfig;
use super::gate_tokens::{AuthError, WriteTokens};
use super::jwt::{Jwks, looks_like_jwt};
use super::policy::Policy;
use super::routes::{Family, Need, family, need};
use super::tokens::{BasicCheck, Secret, TokenEntry, Tokens, verify_argon2};
use super::{Grant, Principal, PrincipalKind, Scope, Tenants};
use crate::error::ErrorKind;
use crate::identity::Peer;
use crate::telemetry::Listener;
use crate::tenant::{TENANT_HEADER, Tenant};

/// Why the auth configuration could not be used (a start-up error naming the file or rule).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Tokens(#[from] super::tokens::TokensError),
    #[error("{0}")]
    Jwks(#[from] super::jwt::JwksError),
    #[error("{0}")]
    Policy(String),
}

/// What the layer put in a request it let through: who asked, for which tenant, to do what.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub principal: Arc<Principal>,
    pub tenant: Option<Tenant>,
    pub scope: Option<Scope>,
}

/// Everything access is decided with.
#[derive(Debug)]
pub struct Access {
    required: bool,
    token_file: Option<PathBuf>,
    gate_tokens: WriteTokens,
    tokens: RwLock<Arc<Tokens>>,
    jwt: Option<(super::config::JwtConfig, RwLock<Arc<Jwks>>)>,
    policy: Policy,
    audit: Audit,
    reload_interval: Duration,
    /// argon2 checks running at once (each takes tens of milliseconds of CPU).
    argon2: Semaphore,
    /// Basic-auth credentials that passed an argon2 check, by the SHA-256 of `id:secret`;
    /// emptied on reload.
    argon2_passed: Mutex<HashMap<[u8; 32], usize>>,
}

const ARGON2_REMEMBERED: usize = 1024;

impl Access {
    /// Reads the token file and the JWKS file and compiles the SPIFFE rules; the gate's write
    /// tokens become token principals with `read` and `gate-write` on every tenant.
    pub fn new(config: &AuthConfig, gate_tokens: WriteTokens) -> Result<Access, AccessError> {
        let tokens = load_tokens(config.token_file.as_deref(), &gate_tokens)?;
        let jwt = match &config.jwt {
            Some(jwt) => Some((jwt.clone(), RwLock::new(Arc::new(Jwks::from_file(&jwt.jwks_file)?)))),
            None => None,
        };
        Ok(Access {
            required: config.required,
            token_file: config.token_file.clone(),
            gate_tokens,
            tokens: RwLock::new(Arc::new(tokens)),
            jwt,
            policy: Policy::new(&config.spiffe).map_err(AccessError::Policy)?,
            audit: Audit::new(config.audit_interval.0),
            reload_interval: config.reload_interval.0.max(Duration::from_millis(100)),
            argon2: Semaphore::new(2),
            argon2_passed: Mutex::new(HashMap::new()),
        })
    }

    /// Open access (no credentials configured, none required): what a collector without an
    /// `[auth]` table does.
    pub fn open() -> Access {
        Access::new(&AuthConfig::default(), WriteTokens::default()).unwrap_or_else(|_| unreachable!())
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    fn tokens(&self) -> Arc<Tokens> {
        Arc::clone(&self.tokens.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether anyone at all could be granted `gate-write`.
    fn gate_write_configured(&self) -> bool {
        self.tokens().entries().iter().any(|e| e.grant.scopes.contains(Scope::GateWrite))
            || self.jwt.is_some()
            || !self.policy.is_empty()
    }

    /// Who sent the request: its `Authorization` credential, else its client certificate's
    /// SPIFFE ID, else anonymous when credentials are not required.
    async fn authenticate(
        &self,
        listener: Listener,
        peer: Option<&Peer>,
        headers: &http::HeaderMap,
    ) -> Result<Principal, Refusal> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            return self.credential(value.as_bytes()).await;
        }
        if let Some(id) = peer.and_then(|p| p.spiffe_id.as_ref()) {
            if let Some(principal) = self.policy.principal(id, listener) {
                return Ok(principal);
            }
            if !self.policy.is_empty() || self.required {
                return Err(Refusal::denied(format!(
                    "the client certificate's SPIFFE ID {id} is not allowed on the {} listener",
                    listener.as_str()
                ))
                .by(PrincipalKind::Spiffe, id.as_str()));
            }
        }
        if self.required {
            return Err(Refusal::unauthenticated(CREDENTIAL_REQUIRED));
        }
        Ok(Principal::anonymous())
    }

    async fn credential(&self, value: &[u8]) -> Result<Principal, Refusal> {
        if let Some(secret) = super::gate_tokens::bearer(value) {
            if looks_like_jwt(secret)
                && let Some((config, jwks)) = &self.jwt
            {
                let jwks = Arc::clone(&jwks.read().unwrap_or_else(|e| e.into_inner()));
                let token = std::str::from_utf8(secret).unwrap_or_default();
                return jwks.verify(token, config).map_err(|e| Refusal::unauthenticated(e.to_string()));
            }
            let tokens = self.tokens();
            return match tokens.bearer(secret) {
                Some(i) => Ok(token_principal(&tokens.entries()[i])),
                None => Err(Refusal::unauthenticated(CREDENTIAL_REQUIRED)),
            };
        }
        let Some(encoded) =
            value.split_at_checked(6).filter(|(s, _)| s.eq_ignore_ascii_case(b"basic ")).map(|(_, r)| r.trim_ascii())
        else {
            return Err(Refusal::unauthenticated(CREDENTIAL_REQUIRED));
        };
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default();
        let Some(colon) = decoded.iter().position(|b| *b == b':') else {
            return Err(Refusal::unauthenticated(CREDENTIAL_REQUIRED));
        };
        let (id, secret) = (std::str::from_utf8(&decoded[..colon]).unwrap_or(""), &decoded[colon + 1..]);
        let tokens = self.tokens();
        let index = match tokens.basic(id, secret) {
            BasicCheck::Matched(i) => Some(i),
            BasicCheck::NoMatch => None,
            BasicCheck::Argon2 { entry, phc } => {
                let remembered = super::gate_tokens::digest_bytes(&decoded);
                let known =
                    self.argon2_passed.lock().unwrap_or_else(|e| e.into_inner()).get(&remembered) == Some(&entry);
                if known {
                    Some(entry)
                } else {
                    let _permit =
                        self.argon2.acquire().await.map_err(|_| Refusal::unauthenticated(CREDENTIAL_REQUIRED))?;
                    let secret = secret.to_vec();
                    let ok = tokio::task::spawn_blocking(move || verify_argon2(&phc, &secret)).await.unwrap_or(false);
                    if ok {
                        let mut passed = self.argon2_passed.lock().unwrap_or_else(|e| e.into_inner());
                        if passed.len() >= ARGON2_REMEMBERED {
                            passed.clear();
                        }
                        passed.insert(remembered, entry);
                    }
                    ok.then_some(entry)
                }
            }
        };
        match index {
            Some(i) => Ok(token_principal(&tokens.entries()[i])),
            None => Err(Refusal::unauthenticated(CREDENTIAL_REQUIRED)),
        }
    }

    /// Looks at the token and JWKS files every `reload_interval` and takes a changed file in
    /// (a bad one is logged and the old tokens or keys kept). Returns when `stop` turns true.
    pub fn start_reload(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut seen_tokens = self.token_file.as_deref().map(stamp);
            let mut seen_jwks = self.jwt.as_ref().map(|(c, _)| stamp(&c.jwks_file));
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(self.reload_interval) => {}
                }
                if let Some(path) = &self.token_file {
                    let now = stamp(path);
                    if seen_tokens.as_ref() != Some(&now) {
                        seen_tokens = Some(now);
                        match load_tokens(Some(path), &self.gate_tokens) {
                            Ok(tokens) => {
                                tracing::info!(path = %path.display(), tokens = tokens.len(), "token file reloaded");
                                *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tokens);
                                self.argon2_passed.lock().unwrap_or_else(|e| e.into_inner()).clear();
                            }
                            Err(err) => tracing::error!(%err, "token file not reloaded; the tokens in force stay"),
                        }
                    }
                }
                if let Some((config, jwks)) = &self.jwt {
                    let now = stamp(&config.jwks_file);
                    if seen_jwks.as_ref() != Some(&now) {
                        seen_jwks = Some(now);
                        match Jwks::from_file(&config.jwks_file) {
                            Ok(keys) => {
                                tracing::info!(path = %config.jwks_file.display(), "JWKS file reloaded");
                                *jwks.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                            }
                            Err(err) => tracing::error!(%err, "JWKS file not reloaded; the keys in force stay"),
                        }
                    }
                }
            }
        })
    }
}

/// What tells a file changed: its length, modification time and content digest.
fn stamp(path: &std::path::Path) -> (u64, Option<SystemTime>, [u8; 32]) {
    let meta = std::fs::metadata(path).ok();
    let bytes = std::fs::read(path).unwrap_or_default();
    (
        meta.as_ref().map_or(0, |m| m.len()),
        meta.and_then(|m| m.modified().ok()),
        super::gate_tokens::digest_bytes(&bytes),
    )
}

fn load_tokens(path: Option<&std::path::Path>, gate_tokens: &WriteTokens) -> Result<Tokens, AccessError> {
    let mut tokens = match path {
        Some(path) => Tokens::from_file(path)?,
        None => Tokens::default(),
    };
    let gate = Grant { tenants: Tenants::All, scopes: [Scope::Read, Scope::GateWrite].into_iter().collect() };
    for (i, digest) in gate_tokens.digests().iter().enumerate() {
        tokens.push(TokenEntry {
            id: format!("gate-token-{}", i + 1),
            grant: gate.clone(),
            secret: Secret::Sha256(*digest),
        });
    }
    Ok(tokens)
}

fn token_principal(entry: &TokenEntry) -> Principal {
    let home = match &entry.grant.tenants {
        Tenants::Only(list) if list.len() == 1 => Some(list[0].clone()),
        _ => None,
    };
    Principal { kind: PrincipalKind::Token, id: Arc::from(entry.id.as_str()), grants: vec![entry.grant.clone()], home }
}

const CREDENTIAL_REQUIRED: &str = "a valid credential is required: a client certificate this collector trusts, \
     `Authorization: Bearer <token>`, or basic auth with a token's id and secret";

/// A refusal, before it is written in its family's envelope.
#[derive(Debug)]
struct Refusal {
    kind: ErrorKind,
    message: String,
    who: Option<(PrincipalKind, String)>,
}

impl Refusal {
    fn unauthenticated(message: impl Into<String>) -> Refusal {
        Refusal { kind: ErrorKind::Unauthorized, message: message.into(), who: None }
    }

    fn denied(message: String) -> Refusal {
        Refusal { kind: ErrorKind::Forbidden, message, who: None }
    }

    fn by(mut self, kind: PrincipalKind, id: &str) -> Refusal {
        self.who = Some((kind, id.to_string()));
        self
    }

    fn outcome(&self) -> Outcome {
        match self.kind {
            ErrorKind::Unauthorized => Outcome::Unauthenticated,
            _ => Outcome::Denied,
        }
    }
}

/// The layer: `axum::middleware::from_fn_with_state((access, listener), check)` around a
/// listener's whole router.
pub async fn check(
    State((access, listener)): State<(Arc<Access>, Listener)>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let needed = need(listener, request.method(), &path);
    if needed == Need::Open {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<Arc<Peer>>().cloned();
    let remote = peer.as_ref().and_then(|p| p.remote);
    let envelope = family(listener, &path, request.headers());
    let scope = match needed {
        Need::Tenant(scope) => Some(scope),
        _ => None,
    };
    let audit = |kind, principal: &str, tenant: &str, outcome, reason: &str| {
        access.audit.record(Event { listener, kind, principal, tenant, scope, outcome, path: &path, remote, reason })
    };
    let refuse = |refusal: Refusal, tenant: &str| {
        let (kind, who) = refusal.who.clone().unwrap_or((PrincipalKind::Anonymous, String::new()));
        audit(kind, &who, tenant, refusal.outcome(), &refusal.message);
        write_refusal(envelope, refusal.kind, &refusal.message)
    };
    let header_tenant =
        request.headers().get(TENANT_HEADER).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let named = header_tenant.clone().unwrap_or_default();

    // Recording a gate run with nobody able to: the answer says how to configure it.
    if scope == Some(Scope::GateWrite) && !access.gate_write_configured() {
        return refuse(Refusal::denied(AuthError::NotConfigured.to_string()), &named);
    }
    let principal = match access.authenticate(listener, peer.as_deref(), request.headers()).await {
        Ok(principal) => principal,
        Err(mut refusal) => {
            if scope == Some(Scope::GateWrite) && refusal.kind == ErrorKind::Unauthorized {
                refusal.message = AuthError::Unauthorized.to_string();
            }
            return refuse(refusal, &named);
        }
    };
    let who = || Some((principal.kind, principal.id.to_string()));
    let tenant = match scope {
        None => None,
        Some(scope) => {
            let tenant = match Tenant::from_headers(request.headers()) {
                Err(err) => {
                    let refusal = Refusal { kind: ErrorKind::BadRequest, message: err.to_string(), who: who() };
                    return refuse(refusal, &named);
                }
                // An admin action is for the tenant it names, never one implied by a credential.
                Ok(_) if header_tenant.is_none() && scope == Scope::Admin => {
                    let message = "name the tenant in the X-Scope-OrgID header".to_string();
                    let refusal = Refusal { kind: ErrorKind::BadRequest, message, who: who() };
                    return refuse(refusal, &named);
                }
                Ok(_) if header_tenant.is_none() => principal.implied_tenant(scope),
                Ok(tenant) => tenant,
            };
            if !principal.may(&tenant, scope) {
                // Without a credential, the answer is to present one (and says nothing of tenants).
                if principal.kind == PrincipalKind::Anonymous {
                    let message = match scope {
                        Scope::GateWrite => AuthError::Unauthorized.to_string(),
                        _ => CREDENTIAL_REQUIRED.to_string(),
                    };
                    return refuse(Refusal::unauthenticated(message), tenant.as_str());
                }
                let message = format!(
                    "{} {:?} may not {} tenant {:?}",
                    principal.kind.as_str(),
                    &*principal.id,
                    verb(scope),
                    tenant.as_str()
                );
                return refuse(Refusal { kind: ErrorKind::Forbidden, message, who: who() }, tenant.as_str());
            }
            if header_tenant.is_none()
                && principal.kind != PrincipalKind::Anonymous
                && let Ok(value) = HeaderValue::from_str(tenant.as_str())
            {
                request.headers_mut().insert(TENANT_HEADER, value);
            }
            Some(tenant)
        }
    };
    audit(principal.kind, &principal.id, tenant.as_ref().map_or("", Tenant::as_str), Outcome::Allowed, "");
    request.extensions_mut().insert(Authorized { principal: Arc::new(principal), tenant, scope });
    next.run(request).await
}

fn verb(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => "read",
        Scope::Write => "write to",
        Scope::GateWrite => "record gate runs for",
        Scope::Admin => "administer",
    }
}

/// A refusal in the envelope its API family's clients decode.
fn write_refusal(envelope: Family, kind: ErrorKind, message: &str) -> Response {
    let status = kind.http_status();
    let mut response = match envelope {
        Family::Grpc => tonic::Status::new(kind.grpc_code(), message).into_http::<Body>().into_response(),
        Family::OtlpHttp { json } => {
            let body =
                crate::receive::rpc_status::RpcStatus { code: kind.grpc_code() as i32, message: message.to_string() };
            match json {
                true => (
                    status,
                    [(header::CONTENT_TYPE, "application/json")],
                    serde_json::to_string(&body).unwrap_or_default(),
                )
                    .into_response(),
                false => {
                    (status, [(header::CONTENT_TYPE, "application/x-protobuf")], prost::Message::encode_to_vec(&body))
                        .into_response()
                }
            }
        }
        Family::Connect => {
            let code = match kind {
                ErrorKind::Unauthorized => "unauthenticated",
                ErrorKind::Forbidden => "permission_denied",
                _ => "invalid_argument",
            };
            let body = serde_json::json!({ "code": code, "message": message });
            (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
        Family::Prometheus => {
            let error_type = match kind {
                ErrorKind::Unauthorized => "unauthorized",
                ErrorKind::Forbidden => "forbidden",
                _ => "bad_data",
            };
            let body = serde_json::json!({ "status": "error", "errorType": error_type, "error": message });
            (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
        Family::Text => (status, format!("{message}\n")).into_response(),
        Family::Native => {
            let body = serde_json::json!({ "error": message });
            (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
    };
    if kind == ErrorKind::Unauthorized && envelope != Family::Grpc {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"slo-gate\""));
    }
    if envelope == Family::Grpc {
        // gRPC answers are 200 with the status in the trailers-only headers.
        *response.status_mut() = StatusCode::OK;
    }
    response
}

/// Proof that a request may record gate runs. The handler takes it before the body, and it
/// holds only when the layer let the request through with `gate-write`, so a router served
/// without the layer still refuses.
#[derive(Debug, Clone, Copy)]
pub struct WriteAccess;

impl<S: Send + Sync> FromRequestParts<S> for WriteAccess {
    type Rejection = crate::error::QueryError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Authorized>() {
            Some(a) if a.scope == Some(Scope::GateWrite) => Ok(WriteAccess),
            _ => Err(AuthError::Unauthorized.into()),
        }
    }
}
