//! The admin routes, each needing the `admin` scope for the tenant that `X-Scope-OrgID` names
//! (`auth::routes`; the tenant is never implied by the credential). The scope is never held
//! by an anonymous caller or the gate's bare tokens: a token, JWT or SPIFFE rule must grant it.
//!
//! `POST /api/v1/admin/delete_tenant` deletes every row of the tenant acknowledged before the
//! request, on every signal, with its series segments, gate history, anomaly journal, span
//! metrics and analysis state, and answers what it removed (`docs/tenant-deletion.md`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use http::HeaderMap;

use super::{ApiState, blocking, tenant};
use crate::api::admin::TenantDeleted;
use crate::error::QueryError;
use crate::store::StoreError;

pub fn router() -> Router<ApiState> {
    Router::new().route("/api/v1/admin/delete_tenant", post(delete_tenant))
}

async fn delete_tenant(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<TenantDeleted>, QueryError> {
    let tenant = tenant(&headers)?;
    // Forgotten before, and after by the store's hooks: counts of its deleted spans are never
    // written again.
    if let Some(span_metrics) = state.ingest.span_metrics() {
        span_metrics.forget(&tenant);
    }
    let (store, who) = (state.store.clone(), tenant.clone());
    // Off the async workers, and carried to the end even if the client goes away.
    let deleted = blocking(move || {
        store.delete_tenant(&who).map_err(|err| match err {
            StoreError::Bucket(why) => QueryError::StoreFailed(why),
            err => QueryError::StoreFailed(format!(
                "the deletion of tenant {:?} stopped: {err}; what it deleted stays deleted, the rest is deleted when the request is repeated or at the next start",
                who.as_str()
            )),
        })
    })
    .await?;
    // Span metrics and analysis state were forgotten by the store's hooks (`server`), as on
    // every collector that applies the deletion.
    let mut deleted = deleted;
    let warnings = std::mem::take(&mut deleted.warnings);
    tracing::warn!(%tenant, ?deleted, "tenant deleted by an admin request");
    Ok(Json(TenantDeleted { tenant: tenant.as_str().to_string(), deleted, warnings }))
}
