//! Grafana Tempo's HTTP API (and its streaming gRPC search), so Grafana's built-in Tempo
//! datasource works against `--api` with no plugin: health (`/api/echo`), build info, trace by
//! id (v1 and v2), TraceQL search, tag names and values (v1 and v2), and
//! `tempopb.StreamingQuerier/Search` over HTTP/2 cleartext on the same port.
//!
//! Paths, encodings, status codes and the JSON field names follow Tempo 2.x as Grafana reads it
//! (`docs/` of this repository and the wire reference the project keeps): protobuf for trace by
//! id when Grafana asks for it, proto3 JSON elsewhere, plain-text error bodies.
//!
//! Files: [`proto`] (the hand-written tempopb messages), [`trace`] (trace by id), [`search`]
//! (TraceQL search and its pruning), [`tags`] (tag names and values), [`grpc`] (the streaming
//! search). Errors are [`TempoError`], whose status codes come from [`ErrorKind`] like every
//! other answer of the collector.
//!
//! Every handler reads the tenant from `X-Scope-OrgID`, runs its store scan off the async
//! workers under [`QUERY_TIMEOUT`], and bounds what it holds (limits, output caps, the TraceQL
//! crate's query limits). Parts found damaged during a scan are set aside by the store and
//! named in `Warning` headers; the answer is given from the rest.

pub mod grpc;
pub mod proto;
pub mod search;
pub mod tags;
pub mod trace;

use std::time::{Duration, Instant};

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};

use super::ApiState;
use crate::error::{ErrorKind, QueryError};
use crate::store::Snapshot;

/// The longest a Tempo query may scan before it is abandoned.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The Tempo version reported by `/api/status/buildinfo`. Grafana enables features by it:
/// streaming search needs 2.2.0, TraceQL metrics streaming 2.7.0; 2.6.0 keeps the features this
/// API serves (search, v2 tags, streaming search) and leaves out TraceQL metrics, which it does
/// not.
pub const TEMPO_VERSION: &str = "2.6.0";

/// Why a Tempo request failed. Answered as Tempo does: the status from [`ErrorKind`] and the
/// message as a plain-text body.
#[derive(Debug, thiserror::Error)]
pub enum TempoError {
    /// A parameter is malformed or out of range.
    #[error("{0}")]
    BadRequest(String),
    /// The TraceQL text does not parse; the message names the construct and its offset.
    #[error("invalid TraceQL query: {0}")]
    TraceQl(#[from] traceql::ParseError),
    /// No such trace (the body Tempo answers).
    #[error("trace not found")]
    TraceNotFound,
    /// The scan ran past [`QUERY_TIMEOUT`].
    #[error("query timed out after {}s; narrow the time range or the query", .0.as_secs())]
    Timeout(Duration),
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl From<crate::tenant::TenantError> for TempoError {
    fn from(e: crate::tenant::TenantError) -> Self {
        TempoError::Query(QueryError::Tenant(e))
    }
}

impl From<crate::store::parts::PartError> for TempoError {
    fn from(e: crate::store::parts::PartError) -> Self {
        TempoError::Query(QueryError::Storage(e))
    }
}

impl TempoError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            TempoError::BadRequest(_) | TempoError::TraceQl(_) => ErrorKind::BadRequest,
            TempoError::TraceNotFound => ErrorKind::NotFound,
            // Retryable: the store is busy, the query is not wrong.
            TempoError::Timeout(_) => ErrorKind::Unavailable,
            TempoError::Query(e) => e.kind(),
        }
    }

    /// The gRPC status of the streaming search for this failure.
    pub fn to_grpc_status(&self) -> tonic::Status {
        tonic::Status::new(self.kind().grpc_code(), self.to_string())
    }
}

impl IntoResponse for TempoError {
    fn into_response(self) -> Response {
        let kind = self.kind();
        let mut response =
            (kind.http_status(), [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{self}\n"))
                .into_response();
        if let Some(after) = kind.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, after.as_secs().into());
        }
        response
    }
}

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/echo", get(|| async { "echo" }))
        .route("/api/status/buildinfo", get(buildinfo))
        .route("/api/traces/{trace_id}", get(trace::v1))
        .route("/api/v2/traces/{trace_id}", get(trace::v2))
        .route("/api/search", get(search::http))
        .route("/api/search/tags", get(tags::names_v1))
        .route("/api/v2/search/tags", get(tags::names_v2))
        .route("/api/search/tag/{tag}/values", get(tags::values_v1))
        .route("/api/v2/search/tag/{tag}/values", get(tags::values_v2))
        .route(grpc::SEARCH_PATH, post(grpc::search))
}

/// Tempo's build info; Grafana reads `version` to decide which features to offer.
async fn buildinfo() -> Response {
    let body = serde_json::json!({
        "version": TEMPO_VERSION,
        "revision": concat!("slo-gate-", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// A closed time range in unix nanoseconds; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub start: Option<u64>,
    pub end: Option<u64>,
}

impl TimeRange {
    /// `start`/`end` parameters (unix seconds, as Grafana sends them; RFC 3339 accepted too).
    /// `0` is "not given", as in Tempo. `start` after `end` is refused.
    pub fn parse(start: Option<&str>, end: Option<&str>) -> Result<TimeRange, TempoError> {
        let time =
            |name, text| super::params::parse_time(name, text).map(|t| t.filter(|t| *t > 0)).map_err(TempoError::from);
        let range = TimeRange { start: time("start", start)?, end: time("end", end)? };
        range.check()?;
        Ok(range)
    }

    /// From whole unix seconds (the gRPC request); 0 is "not given".
    pub fn from_secs(start: u32, end: u32) -> Result<TimeRange, TempoError> {
        let ns = |s: u32| (s > 0).then(|| u64::from(s) * 1_000_000_000);
        let range = TimeRange { start: ns(start), end: ns(end) };
        range.check()?;
        Ok(range)
    }

    fn check(&self) -> Result<(), TempoError> {
        if let (Some(s), Some(e)) = (self.start, self.end)
            && s > e
        {
            return Err(TempoError::BadRequest(format!(
                "invalid start {} and end {}: start is after end",
                s / 1_000_000_000,
                e / 1_000_000_000
            )));
        }
        Ok(())
    }

    /// Whether `[min, max]` meets the range.
    pub fn overlaps(&self, min: u64, max: u64) -> bool {
        self.start.is_none_or(|s| max >= s) && self.end.is_none_or(|e| min <= e)
    }

    /// Keeps the head chunks and parts whose rows' times meet the range (row times are span
    /// start times).
    pub fn prune(&self, snapshot: &mut Snapshot) {
        if *self == TimeRange::default() {
            return;
        }
        snapshot.chunks.retain(|c| self.overlaps(c.min_time, c.max_time));
        let tenant = snapshot.tenant.clone();
        snapshot.parts.retain(|p| p.of(&tenant).is_some_and(|t| self.overlaps(t.min_time, t.max_time)));
    }
}

/// When a query started and when it must stop.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    pub fn after(budget: Duration) -> Deadline {
        Deadline { at: Instant::now() + budget, budget }
    }

    /// An error once the deadline has passed.
    pub fn check(&self) -> Result<(), TempoError> {
        if Instant::now() >= self.at { Err(TempoError::Timeout(self.budget)) } else { Ok(()) }
    }
}

/// Runs a blocking scan off the async workers, as [`super::blocking`] does, with Tempo errors.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TempoError> + Send + 'static,
) -> Result<T, TempoError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TempoError::Query(QueryError::Internal(format!("query task failed: {e}"))))?
}

/// A positive integer parameter with a default and a ceiling (0 or absent is the default, as
/// Tempo reads it); over the ceiling is refused rather than silently cut.
pub fn bounded(name: &str, text: Option<&str>, default: usize, max: usize) -> Result<usize, TempoError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(default) };
    let value: usize = text.parse().map_err(|_| {
        TempoError::BadRequest(format!(
            "invalid {name} {:?}: must be a non-negative integer",
            text.chars().take(40).collect::<String>()
        ))
    })?;
    match value {
        0 => Ok(default),
        v if v > max => Err(TempoError::BadRequest(format!("invalid {name} {v}: at most {max} is allowed"))),
        v => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ranges_and_bounded_parameters() {
        assert_eq!(
            TimeRange::parse(Some("10"), Some("20")).unwrap(),
            TimeRange { start: Some(10_000_000_000), end: Some(20_000_000_000) }
        );
        assert_eq!(TimeRange::parse(Some("0"), None).unwrap(), TimeRange::default());
        let err = TimeRange::parse(Some("30"), Some("20")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        assert!(err.to_string().contains("start is after end"), "{err}");
        assert!(TimeRange::parse(Some("yesterday"), None).is_err());
        assert_eq!(bounded("limit", None, 20, 100).unwrap(), 20);
        assert_eq!(bounded("limit", Some("0"), 20, 100).unwrap(), 20);
        assert_eq!(bounded("limit", Some("7"), 20, 100).unwrap(), 7);
        assert!(bounded("limit", Some("101"), 20, 100).unwrap_err().to_string().contains("at most 100"));
        assert!(bounded("limit", Some("-1"), 20, 100).is_err());
    }

    #[test]
    fn errors_map_to_tempo_statuses() {
        assert_eq!(TempoError::TraceNotFound.kind().http_status(), StatusCode::NOT_FOUND);
        assert_eq!(TempoError::BadRequest("x".into()).kind().http_status(), StatusCode::BAD_REQUEST);
        let parse = traceql::parse("{ name = }").unwrap_err();
        assert_eq!(TempoError::from(parse).kind().grpc_code(), tonic::Code::InvalidArgument);
        assert_eq!(TempoError::Timeout(QUERY_TIMEOUT).kind().http_status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
