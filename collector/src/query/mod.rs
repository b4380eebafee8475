//! The read side, served on `--api`: the native API (`/api/v1/...`), the gate's routes, and the
//! collector's own `/metrics`, `/healthz`, `/readyz`; Grafana-compatible API families live
//! beside [`native`], one module each: Tempo's in [`tempo`], Pyroscope's in [`pyroscope`]. The wire types of our own API are in [`crate::api`].
//! (Pyroscope's push endpoints share the port, since Pyroscope's agents push to the port its
//! API is served on; `server.rs` mounts them from `receive::pprof_push`.)

pub mod admin;
pub mod anomalies;
pub mod flamegraph;
pub mod gate;
pub mod leaks;
pub mod native;
pub mod params;
pub mod profiles;
pub mod prometheus;
pub mod pyroscope;
pub mod tempo;
pub mod work;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};

use crate::error::QueryError;
use crate::receive::Ingest;
use crate::store::Store;
use crate::tenant::Tenant;

/// Everything the API handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    /// The ingest path, for the push endpoints served on the API listener.
    pub ingest: Arc<Ingest>,
    /// The gate's run history.
    pub history: Arc<crate::history::History>,
    /// Who may do what (the access layer's state; its audit counters are on `/metrics`).
    pub access: Arc<crate::auth::Access>,
    /// The incidents the continuous analysis found.
    pub journal: Arc<crate::analysis::journal::Journal>,
    /// The continuous analysis, once started (`[analysis] enabled`): a tenant deletion makes
    /// it forget the tenant.
    pub analysis: Arc<std::sync::OnceLock<Arc<crate::analysis::Analysis>>>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(native::router())
        .merge(admin::router())
        .merge(anomalies::router())
        .merge(flamegraph::router())
        .merge(gate::router())
        .merge(leaks::router())
        .merge(prometheus::router())
        .merge(pyroscope::router())
        .merge(tempo::router())
        .fallback(|uri: http::Uri| async move { (StatusCode::NOT_FOUND, format!("no endpoint at {}\n", uri.path())) })
        .with_state(state)
}

/// The tenant a query reads, from `X-Scope-OrgID` (default `anonymous`; a value outside the
/// allowed set is refused, never read as the default).
pub(crate) fn tenant(headers: &http::HeaderMap) -> Result<Tenant, QueryError> {
    Ok(Tenant::from_headers(headers)?)
}

/// Keeps the head chunks and parts of `snapshot` that may hold rows of its tenant in
/// `[from, to]` (unix nanoseconds, inclusive; `None`: unbounded) and, with `service`, of that
/// `service.name` — from the times and services each chunk and each part's catalog entry
/// records, so a query over one hour of one service opens that hour's parts of that service,
/// however much else is stored.
pub(crate) fn prune_snapshot(
    snapshot: &mut crate::store::Snapshot,
    from: Option<u64>,
    to: Option<u64>,
    service: Option<&str>,
) {
    let (lo, hi) = (from.unwrap_or(0), to.unwrap_or(u64::MAX));
    let keep = |min: u64, max: u64, services: &std::collections::BTreeSet<(String, Option<String>)>| {
        max >= lo && min <= hi && service.is_none_or(|s| services.iter().any(|(name, _)| name == s))
    };
    snapshot.chunks.retain(|c| keep(c.min_time, c.max_time, &c.services));
    let tenant = snapshot.tenant.clone();
    snapshot.parts.retain(|p| p.of(&tenant).is_some_and(|t| keep(t.min_time, t.max_time, &t.services)));
}

/// Runs a store scan off the async workers (part reads are blocking file I/O).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, QueryError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| QueryError::Internal(format!("query task failed: {e}")))?
}

/// Adds one `Warning` header (RFC 9111 code 299, "miscellaneous persistent warning") per
/// warning of a scan, for answers whose body has no place for them.
pub(crate) fn warning_headers(response: &mut Response, warnings: &[String]) {
    for w in warnings {
        let text = w.replace(['"', '\\', '\n', '\r'], " ");
        if let Ok(value) = http::HeaderValue::from_str(&format!("299 slo-gate \"{text}\"")) {
            response.headers_mut().append(http::header::WARNING, value);
        }
    }
}

/// Readiness: 200 when the collector can take data, 503 with the reason when it cannot (the
/// store's [`crate::store::Store::readiness`]; while the WAL replays at start-up the listener
/// answers 503 before this handler exists). `/healthz` is liveness only.
async fn readyz(State(state): State<ApiState>) -> Response {
    match state.store.readiness() {
        // Data is taken and kept locally while the bucket is away: ready, and saying so.
        Ok(()) => match state.store.bucket_status() {
            Some(bucket) => format!("ready; {bucket}\n").into_response(),
            None => "ready\n".into_response(),
        },
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let mut text = state.store.telemetry().render();
    if let Some(span_metrics) = state.ingest.span_metrics() {
        span_metrics.render_telemetry(&mut text);
    }
    state.access.audit().render(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}
