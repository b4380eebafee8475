//! Pyroscope's query API (`querier.v1.QuerierService`) over Connect, so Grafana's built-in
//! Pyroscope datasource (and the Profiles Drilldown app) reads slo-gate's profiles without a
//! plugin.
//!
//! Transport (connect-go's unary protocol, as Grafana's client speaks it): `POST
//! /querier.v1.QuerierService/<Method>` with a raw protobuf body (`application/proto`) or Connect
//! JSON (`application/json`, proto3 JSON names); a success is HTTP 200 with exactly that content
//! type; an error is `{"code","message"}` JSON with the HTTP status Connect assigns to the code
//! ([`Code::http_status`]). An unknown method answers `unimplemented` with 404, as a connect-go
//! server's mux does. Bodies are read through the admission budget ([`MAX_BODY_BYTES`]), gzip
//! (`Content-Encoding`) undone.
//!
//! Design: each method is a plain function from its request message to its response message
//! (`labels.rs`: profile types, label names and values, series, stats; `select.rs`: the merged
//! flame graph, the merged pprof profile, the diff; `series.rs`: time series; `span.rs`: span
//! profiles), run off the async workers with a deadline that every scan checks between batches.
//! The scan (`select::scan`) prunes head chunks and parts by time range and by the service a
//! selector names before reading them, and matches each distinct (attributes, resource, profile)
//! of a batch once rather than once per row; decoded parts are kept between calls (`cache.rs`:
//! parts never change, and Grafana asks about the same range again and again). Damaged parts
//! become `Warning` headers, not failures. Every read is scoped to the `X-Scope-OrgID` tenant.

mod cache;
mod labels;
pub mod proto;
mod select;
mod series;
mod span;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ApiState, tenant, warning_headers};
use crate::error::QueryError;
use crate::tenant::Tenant;

/// Largest request body accepted, in bytes (after gzip): Pyroscope's requests are a selector
/// and a few numbers; a megabyte leaves room for long span selectors.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How long one call may scan before it answers `deadline_exceeded` (or less, when the client's
/// `Connect-Timeout-Ms` asks for less).
pub const SCAN_TIMEOUT: Duration = Duration::from_secs(30);

/// The service's path prefix.
const SERVICE: &str = "querier.v1.QuerierService";

/// The methods served, in the order of the service definition.
pub const METHODS: [&str; 10] = [
    "ProfileTypes",
    "LabelValues",
    "LabelNames",
    "Series",
    "SelectMergeStacktraces",
    "SelectMergeSpanProfile",
    "SelectMergeProfile",
    "SelectSeries",
    "Diff",
    "GetProfileStats",
];

pub fn router() -> Router<ApiState> {
    Router::new().route(&format!("/{SERVICE}/{{method}}"), post(call))
}

/// Connect's error codes (connect-go `code.go`), each with its HTTP status
/// (`connectCodeToHTTP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    DeadlineExceeded,
    Unimplemented,
    Internal,
    Unavailable,
    Unauthenticated,
    PermissionDenied,
    Unknown,
}

impl Code {
    /// The Connect code of a gRPC status code (Connect reuses gRPC's codes under their names).
    pub fn from_grpc(code: tonic::Code) -> Code {
        match code {
            tonic::Code::InvalidArgument => Code::InvalidArgument,
            tonic::Code::NotFound => Code::NotFound,
            tonic::Code::ResourceExhausted => Code::ResourceExhausted,
            tonic::Code::DeadlineExceeded => Code::DeadlineExceeded,
            tonic::Code::Unimplemented => Code::Unimplemented,
            tonic::Code::Internal => Code::Internal,
            tonic::Code::Unavailable => Code::Unavailable,
            tonic::Code::Unauthenticated => Code::Unauthenticated,
            tonic::Code::PermissionDenied => Code::PermissionDenied,
            // Codes no `ErrorKind` maps to.
            _ => Code::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "invalid_argument",
            Code::NotFound => "not_found",
            Code::ResourceExhausted => "resource_exhausted",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::Unauthenticated => "unauthenticated",
            Code::PermissionDenied => "permission_denied",
            Code::Unknown => "unknown",
        }
    }

    pub fn http_status(self) -> StatusCode {
        match self {
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Internal | Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
        }
    }
}

/// Why a call failed; each answers one Connect code.
#[derive(Debug, thiserror::Error)]
pub enum PyroscopeError {
    #[error("{0}")]
    Query(#[from] QueryError),
    /// A request field is out of range or does not parse.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("malformed {format} {message} body: {detail}")]
    Malformed { format: &'static str, message: &'static str, detail: String },
    #[error("no method {0:?} in {SERVICE}; it serves {methods}", methods = METHODS.join(", "))]
    UnknownMethod(String),
    #[error("unsupported content type {0:?}; use application/proto or application/json")]
    ContentType(String),
    #[error("unsupported content encoding {0:?}; use gzip or none")]
    ContentEncoding(String),
    #[error("the query did not finish within {0:?}; narrow the time range or the selector")]
    Deadline(Duration),
}

impl PyroscopeError {
    pub fn code(&self) -> Code {
        match self {
            // Connect's codes are gRPC's: the one mapping of failures (`ErrorKind::grpc_code`).
            PyroscopeError::Query(e) => Code::from_grpc(e.kind().grpc_code()),
            PyroscopeError::InvalidArgument(_) | PyroscopeError::Malformed { .. } => Code::InvalidArgument,
            PyroscopeError::ContentEncoding(_) => Code::Unimplemented,
            PyroscopeError::UnknownMethod(_) => Code::Unimplemented,
            // What a Connect client reads from a 415 without a Connect body (`httpToCode`).
            PyroscopeError::ContentType(_) => Code::Unknown,
            PyroscopeError::Deadline(_) => Code::DeadlineExceeded,
        }
    }

    /// The HTTP status: Connect's for the code, except where a connect-go server answers
    /// otherwise (404 for an unknown method, 415 for a content type it does not speak).
    fn http_status(&self) -> StatusCode {
        match self {
            PyroscopeError::UnknownMethod(_) => StatusCode::NOT_FOUND,
            PyroscopeError::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            e => e.code().http_status(),
        }
    }
}

impl From<crate::tenant::TenantError> for PyroscopeError {
    fn from(e: crate::tenant::TenantError) -> Self {
        PyroscopeError::Query(e.into())
    }
}

impl From<crate::receive::admission::BodyError> for PyroscopeError {
    fn from(e: crate::receive::admission::BodyError) -> Self {
        PyroscopeError::Query(e.into())
    }
}

/// The Connect error body.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

impl IntoResponse for PyroscopeError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code().as_str().to_string(), message: self.to_string() };
        let text = serde_json::to_string(&body).unwrap_or_else(|_| r#"{"code":"internal"}"#.to_string());
        let mut response = (self.http_status(), [(header::CONTENT_TYPE, "application/json")], text).into_response();
        if let PyroscopeError::ContentType(_) = self {
            response
                .headers_mut()
                .insert("accept-post", HeaderValue::from_static("application/proto, application/json"));
        }
        if matches!(self.code(), Code::Unavailable) {
            let after = match &self {
                PyroscopeError::Query(e) => e.kind().retry_after(),
                _ => None,
            };
            if let Some(after) = after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
            }
        }
        response
    }
}

/// The two encodings of a Connect unary call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Proto,
    Json,
}

impl Codec {
    fn from_headers(headers: &HeaderMap) -> Result<Codec, PyroscopeError> {
        let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let media = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "application/proto" => Ok(Codec::Proto),
            "application/json" => Ok(Codec::Json),
            _ => Err(PyroscopeError::ContentType(value.chars().take(100).collect())),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Codec::Proto => "application/proto",
            Codec::Json => "application/json",
        }
    }

    fn decode<T: Message + Default + DeserializeOwned>(
        self,
        message: &'static str,
        bytes: &[u8],
    ) -> Result<T, PyroscopeError> {
        match self {
            Codec::Proto => T::decode(bytes).map_err(|e| PyroscopeError::Malformed {
                format: "protobuf",
                message,
                detail: e.to_string(),
            }),
            // An empty JSON body is the empty message, as connect-go reads it.
            Codec::Json if bytes.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
            // protojson reads a message from an object only (serde would take an array too).
            Codec::Json if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') => {
                Err(PyroscopeError::Malformed { format: "JSON", message, detail: "expected an object".to_string() })
            }
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| PyroscopeError::Malformed {
                format: "JSON",
                message,
                detail: e.to_string(),
            }),
        }
    }
}

/// A response message in both encodings.
pub trait Reply {
    fn to_proto(&self) -> Vec<u8>;
    fn to_json(&self) -> Result<Vec<u8>, serde_json::Error>;
}

macro_rules! reply {
    ($($t:ty),* $(,)?) => {$(
        impl Reply for $t {
            fn to_proto(&self) -> Vec<u8> {
                self.encode_to_vec()
            }
            fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
                serde_json::to_vec(self)
            }
        }
    )*};
}

reply!(
    proto::ProfileTypesResponse,
    proto::LabelNamesResponse,
    proto::LabelValuesResponse,
    proto::SeriesResponse,
    proto::SelectMergeStacktracesResponse,
    proto::SelectMergeSpanProfileResponse,
    proto::SelectSeriesResponse,
    proto::DiffResponse,
    proto::GetProfileStatsResponse,
);

/// `SelectMergeProfile`'s answer: a pprof profile.
#[derive(Debug)]
pub struct MergedProfile(pub analyzer::pprof::proto::Profile);

impl Reply for MergedProfile {
    fn to_proto(&self) -> Vec<u8> {
        self.0.encode_to_vec()
    }
    fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&proto::pprof_json::Profile::new(&self.0))
    }
}

/// When a call must stop scanning.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    pub fn after(budget: Duration) -> Deadline {
        Deadline { at: Instant::now() + budget, budget }
    }

    pub fn check(&self) -> Result<(), PyroscopeError> {
        if Instant::now() > self.at { Err(PyroscopeError::Deadline(self.budget)) } else { Ok(()) }
    }
}

/// What a method gets besides its request.
#[derive(Debug)]
pub struct Ctx {
    pub state: ApiState,
    pub tenant: Tenant,
    pub deadline: Deadline,
    /// Damaged parts skipped, for the `Warning` headers.
    pub warnings: Vec<String>,
}

async fn call(State(state): State<ApiState>, Path(method): Path<String>, headers: HeaderMap, body: Body) -> Response {
    match dispatch(state, &method, &headers, body).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn dispatch(state: ApiState, method: &str, headers: &HeaderMap, body: Body) -> Result<Response, PyroscopeError> {
    if !METHODS.contains(&method) {
        return Err(PyroscopeError::UnknownMethod(method.chars().take(100).collect()));
    }
    let codec = Codec::from_headers(headers)?;
    let tenant = tenant(headers)?;
    let body = read_body(&state, headers, body).await?;
    let budget = headers
        .get("connect-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(SCAN_TIMEOUT, |ms| SCAN_TIMEOUT.min(Duration::from_millis(ms)));
    let ctx = Ctx { state, tenant, deadline: Deadline::after(budget), warnings: Vec::new() };
    let body = body.bytes;
    match method {
        "ProfileTypes" => run(ctx, codec, "ProfileTypesRequest", body, labels::profile_types).await,
        "LabelNames" => run(ctx, codec, "LabelNamesRequest", body, labels::label_names).await,
        "LabelValues" => run(ctx, codec, "LabelValuesRequest", body, labels::label_values).await,
        "Series" => run(ctx, codec, "SeriesRequest", body, labels::series).await,
        "GetProfileStats" => run(ctx, codec, "GetProfileStatsRequest", body, labels::profile_stats).await,
        "SelectMergeStacktraces" => {
            run(ctx, codec, "SelectMergeStacktracesRequest", body, select::merge_stacktraces).await
        }
        "SelectMergeProfile" => run(ctx, codec, "SelectMergeProfileRequest", body, select::merge_profile).await,
        "Diff" => run(ctx, codec, "DiffRequest", body, select::diff).await,
        "SelectSeries" => run(ctx, codec, "SelectSeriesRequest", body, series::select_series).await,
        "SelectMergeSpanProfile" => {
            run(ctx, codec, "SelectMergeSpanProfileRequest", body, span::merge_span_profile).await
        }
        other => Err(PyroscopeError::UnknownMethod(other.to_string())),
    }
}

/// Reads the body within [`MAX_BODY_BYTES`] through the admission budget, undoing gzip.
async fn read_body(
    state: &ApiState,
    headers: &HeaderMap,
    body: Body,
) -> Result<crate::receive::admission::Admitted, PyroscopeError> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    let gzip = match encoding.to_ascii_lowercase().as_str() {
        "" | "identity" => false,
        "gzip" => true,
        other => return Err(PyroscopeError::ContentEncoding(other.chars().take(50).collect())),
    };
    Ok(state.ingest.admission().read(headers, body, MAX_BODY_BYTES, gzip).await?)
}

/// Decodes the request, runs `method` off the async workers, encodes the answer.
async fn run<Req, Resp>(
    ctx: Ctx,
    codec: Codec,
    message: &'static str,
    body: Bytes,
    method: fn(&mut Ctx, Req) -> Result<Resp, PyroscopeError>,
) -> Result<Response, PyroscopeError>
where
    Req: Message + Default + DeserializeOwned + Send + 'static,
    Resp: Reply + Send + 'static,
{
    let request: Req = codec.decode(message, &body)?;
    drop(body);
    let mut ctx = ctx;
    let (reply, warnings) = tokio::task::spawn_blocking(move || {
        let reply = method(&mut ctx, request)?;
        Ok::<_, PyroscopeError>((reply, ctx.warnings))
    })
    .await
    .map_err(|e| PyroscopeError::Query(QueryError::Internal(format!("query task failed: {e}"))))??;
    let bytes = match codec {
        Codec::Proto => reply.to_proto(),
        Codec::Json => reply
            .to_json()
            .map_err(|e| PyroscopeError::Query(QueryError::Internal(format!("cannot encode the answer: {e}"))))?,
    };
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, codec.content_type())], bytes).into_response();
    warning_headers(&mut response, &warnings);
    Ok(response)
}

// ---- request fields shared by the methods ---------------------------------------------------

/// Pyroscope's default `max_nodes` (`querier.max-flamegraph-nodes-default`).
pub const DEFAULT_MAX_NODES: i64 = 8192;
/// Pyroscope's ceiling on `max_nodes` (`querier.max-flamegraph-nodes-max`).
pub const MAX_MAX_NODES: i64 = 1 << 20;

/// `max_nodes` as Pyroscope reads it: unset or 0 is the default, above the ceiling is refused;
/// a negative value is refused too (Pyroscope has no meaning for it).
pub fn max_nodes(field: &str, value: Option<i64>) -> Result<usize, PyroscopeError> {
    match value {
        None | Some(0) => Ok(DEFAULT_MAX_NODES as usize),
        Some(n) if n < 0 => Err(PyroscopeError::InvalidArgument(format!(
            "{field} must not be negative, got {n} (0 or unset means the default {DEFAULT_MAX_NODES})"
        ))),
        Some(n) if n > MAX_MAX_NODES => {
            Err(PyroscopeError::InvalidArgument(format!("{field} ({n}) exceeds the limit ({MAX_MAX_NODES})")))
        }
        Some(n) => Ok(n as usize),
    }
}

/// A time range in unix nanoseconds, from Pyroscope's milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    /// Everything.
    pub const ALL: Range = Range { start: 0, end: u64::MAX };

    /// A required range: both set, neither negative, `start <= end`.
    pub fn required(start_ms: i64, end_ms: i64) -> Result<Range, PyroscopeError> {
        if start_ms == 0 && end_ms == 0 {
            return Err(PyroscopeError::InvalidArgument("start and end are required (unix milliseconds)".to_string()));
        }
        Range::optional(start_ms, end_ms)
    }

    /// A range where 0 and 0 mean everything (the label calls of older Grafana send none).
    pub fn optional(start_ms: i64, end_ms: i64) -> Result<Range, PyroscopeError> {
        if start_ms < 0 || end_ms < 0 {
            return Err(PyroscopeError::InvalidArgument(format!(
                "start ({start_ms}) and end ({end_ms}) must not be negative"
            )));
        }
        if start_ms > end_ms && end_ms != 0 {
            return Err(PyroscopeError::InvalidArgument(format!(
                "start ({start_ms}) must not be after end ({end_ms})"
            )));
        }
        let ns = |ms: i64| (ms as u64).saturating_mul(1_000_000);
        let end = if end_ms == 0 { u64::MAX } else { ns(end_ms).saturating_add(999_999) };
        Ok(Range { start: ns(start_ms), end })
    }

    pub fn contains(&self, t: u64) -> bool {
        self.start <= t && t <= self.end
    }

    pub fn overlaps(&self, min: u64, max: u64) -> bool {
        min <= self.end && max >= self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_connect_statuses() {
        let cases = [
            (Code::InvalidArgument, 400),
            (Code::NotFound, 404),
            (Code::ResourceExhausted, 429),
            (Code::DeadlineExceeded, 504),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::Unknown, 500),
        ];
        for (code, status) in cases {
            assert_eq!(code.http_status().as_u16(), status, "{code:?}");
        }
        assert_eq!(PyroscopeError::UnknownMethod("X".into()).http_status(), StatusCode::NOT_FOUND);
        assert_eq!(PyroscopeError::UnknownMethod("X".into()).code(), Code::Unimplemented);
    }

    #[test]
    fn ranges_and_max_nodes() {
        assert!(Range::required(0, 0).is_err());
        assert!(Range::required(2000, 1000).unwrap_err().to_string().contains("after"));
        let r = Range::required(1000, 2000).unwrap();
        assert!(r.contains(1_500_000_000) && r.contains(2_000_999_999) && !r.contains(2_001_000_000));
        assert_eq!(Range::optional(0, 0).unwrap(), Range::ALL);
        assert_eq!(max_nodes("max_nodes", None).unwrap(), 8192);
        assert_eq!(max_nodes("max_nodes", Some(0)).unwrap(), 8192);
        assert_eq!(max_nodes("max_nodes", Some(5)).unwrap(), 5);
        assert!(max_nodes("max_nodes", Some(-1)).is_err());
        assert!(max_nodes("max_nodes", Some(MAX_MAX_NODES + 1)).is_err());
    }
}
