//! The read side, served on `--api`: the native API (`/api/v1/...`) and the collector's own
//! `/metrics`, `/healthz`, `/readyz`. Later Grafana-compatible APIs live beside [`native`].
//! Pyroscope's push endpoints ([`pprof_push`]) are merged in too, since Pyroscope's agents
//! push to the same port its API is served on.

pub mod flamegraph;
pub mod gate;
pub mod native;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};

use crate::error::QueryError;
use crate::receive::{Ingest, pprof_push};
use crate::store::Store;
use crate::tenant::{TENANT_HEADER, Tenant};

/// Everything the API handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    /// The ingest path, for the push endpoints served on the API listener.
    pub ingest: Arc<Ingest>,
    /// The gate's run history.
    pub history: Arc<crate::history::History>,
    /// Who may record gate runs.
    pub write_tokens: Arc<crate::auth::WriteTokens>,
}

impl axum::extract::FromRef<ApiState> for Arc<crate::auth::WriteTokens> {
    fn from_ref(state: &ApiState) -> Self {
        Arc::clone(&state.write_tokens)
    }
}

pub fn router(state: ApiState) -> Router {
    let ingest = Arc::clone(&state.ingest);
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .merge(native::router())
        .merge(flamegraph::router())
        .merge(gate::router())
        .fallback(|uri: http::Uri| async move { (StatusCode::NOT_FOUND, format!("no endpoint at {}\n", uri.path())) })
        .with_state(state)
        .merge(pprof_push::router(ingest))
}

/// The tenant a query reads, from `X-Scope-OrgID` (default `anonymous`).
pub(crate) fn tenant(headers: &http::HeaderMap) -> Result<Tenant, QueryError> {
    Ok(Tenant::from_header(headers.get(TENANT_HEADER).and_then(|v| v.to_str().ok()))?)
}

/// Runs a store scan off the async workers (part reads are blocking file I/O).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, QueryError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| QueryError::Storage(format!("query task failed: {e}")))?
}

async fn metrics(State(state): State<ApiState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.store.telemetry().render())
        .into_response()
}
