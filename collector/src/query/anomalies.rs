//! `GET /api/v1/anomalies?from=&to=&service=&status=&limit=`: the incidents the continuous
//! analysis ([`crate::analysis`]) recorded for the tenant, newest start first.
//!
//! An incident is in the answer when it overlaps `[from, to]` (an open one lasts until now);
//! `service` keeps those of one `service_name`, `status` those `open` or `resolved`. The
//! answer holds at most `limit` incidents (default 1,000, at most 10,000) and says when it
//! was cut. A journal line that could not be read is a warning in the answer, never a failure.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use http::HeaderMap;
use serde::Deserialize;

use super::params::parse_time;
use super::{ApiState, blocking, tenant};
use crate::api::anomalies::{AnomaliesAnswer, AnomalyStatus};
use crate::error::QueryError;

const DEFAULT_LIMIT: usize = 1_000;
const MAX_LIMIT: usize = 10_000;

pub fn router() -> Router<ApiState> {
    Router::new().route("/api/v1/anomalies", get(anomalies))
}

#[derive(Debug, Deserialize)]
struct Params {
    from: Option<String>,
    to: Option<String>,
    service: Option<String>,
    status: Option<String>,
    limit: Option<String>,
}

async fn anomalies(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Result<Json<AnomaliesAnswer>, QueryError> {
    let tenant = tenant(&headers)?;
    let ms = |ns: Option<u64>| ns.map(|ns| i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX));
    let from = ms(parse_time("from", params.from.as_deref())?).unwrap_or(i64::MIN);
    let to = ms(parse_time("to", params.to.as_deref())?).unwrap_or(i64::MAX);
    if from > to {
        return Err(QueryError::BadRequest("parameter `from` is after `to`".into()));
    }
    let status = match params.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some("open") => Some(AnomalyStatus::Open),
        Some("resolved") => Some(AnomalyStatus::Resolved),
        Some(other) => {
            return Err(QueryError::BadRequest(format!(
                "parameter `status` {:?} is neither `open` nor `resolved`",
                other.chars().take(100).collect::<String>()
            )));
        }
    };
    let limit = match params.limit.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(QueryError::BadRequest(format!(
                    "parameter `limit` must be a whole number from 1 to {MAX_LIMIT}"
                )));
            }
        },
    };
    let service = params.service.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let journal = std::sync::Arc::clone(&state.journal);
    let answer = blocking(move || {
        let read = journal.read(&tenant).map_err(|e| QueryError::Internal(e.to_string()))?;
        let mut found: Vec<_> = read
            .anomalies
            .into_iter()
            .filter(|a| a.start_ms <= to && a.end_ms.unwrap_or(i64::MAX) >= from)
            .filter(|a| service.as_deref().is_none_or(|s| a.service.as_deref() == Some(s)))
            .filter(|a| status.is_none_or(|s| a.status == s))
            .collect();
        found.sort_by(|a, b| b.start_ms.cmp(&a.start_ms).then_with(|| a.id.cmp(&b.id)));
        let truncated = found.len() > limit;
        found.truncate(limit);
        Ok(AnomaliesAnswer { anomalies: found, truncated, warnings: read.warnings })
    })
    .await?;
    Ok(Json(answer))
}
