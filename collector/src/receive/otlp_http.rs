//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`, `/v1development/profiles`.
//!
//! Bodies are `application/x-protobuf` or `application/json` (OTLP/JSON), optionally
//! `Content-Encoding: gzip`. Answers follow the OTLP/HTTP specification: 200 with the
//! export response (and `partial_success` when items were rejected), or an error status with
//! a `google.rpc.Status` body in the request's own encoding, and `Retry-After` on 429/503.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::rpc_status::RpcStatus;
use super::{ExportRequest, Ingest};
use crate::error::IngestError;
use crate::tenant::Tenant;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The encoding of a request body, and so of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/v1/traces", post(export::<ExportTraceServiceRequest>))
        .route("/v1/metrics", post(export::<ExportMetricsServiceRequest>))
        .route("/v1/logs", post(export::<ExportLogsServiceRequest>))
        .route("/v1development/profiles", post(export::<ExportProfilesServiceRequest>))
        .fallback(not_found)
        .with_state(ingest)
}

async fn not_found(uri: http::Uri) -> Response {
    let status = RpcStatus {
        code: tonic::Code::NotFound as i32,
        message: format!(
            "no OTLP endpoint at {}; use /v1/traces, /v1/metrics, /v1/logs or /v1development/profiles",
            uri.path()
        ),
    };
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, JSON)], serde_json::to_string(&status).unwrap_or_default())
        .into_response()
}

fn format_of(headers: &HeaderMap) -> Result<Format, IngestError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        PROTOBUF | "application/protobuf" => Ok(Format::Protobuf),
        JSON => Ok(Format::Json),
        _ => Err(IngestError::UnsupportedMediaType {
            what: "content type",
            value: value.to_string(),
            expected: "use application/x-protobuf or application/json",
        }),
    }
}

/// Whether a body is gzip-compressed (`Content-Encoding: gzip`); other encodings are refused
/// before the body is read.
fn gzip_encoded(headers: &HeaderMap) -> Result<bool, IngestError> {
    let encoding = headers.get(header::CONTENT_ENCODING).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match encoding.as_deref().unwrap_or("identity").trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(false),
        "gzip" => Ok(true),
        other => Err(IngestError::UnsupportedMediaType {
            what: "content encoding",
            value: other.to_string(),
            expected: "use gzip or none",
        }),
    }
}

/// Decodes a body of either encoding into an export request; protobuf bodies are returned
/// alongside, to be logged without re-encoding.
pub fn decode<R: ExportRequest>(format: Format, body: Bytes) -> Result<(R, Option<Bytes>), IngestError> {
    match format {
        Format::Protobuf => R::decode(body.clone())
            .map(|r| (r, Some(body)))
            .map_err(|e| IngestError::Malformed { format: "OTLP/protobuf", detail: e.to_string() }),
        Format::Json => serde_json::from_slice::<R>(&body)
            .map(|r| (r, None))
            .map_err(|e| IngestError::Malformed { format: "OTLP/JSON", detail: e.to_string() }),
    }
}

async fn export<R: ExportRequest>(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    let format = format_of(&headers);
    let answer_format = *format.as_ref().unwrap_or(&Format::Json);
    let result = async {
        let format = format?;
        let tenant = Tenant::from_headers(&headers)?;
        let gzip = gzip_encoded(&headers)?;
        ingest.admit().await?;
        // `_held` keeps the body's bytes counted until the request is answered.
        let admitted = ingest.admission().read(&headers, body, ingest.limits().max_request_bytes, gzip).await?;
        let (bytes, _held) = (admitted.bytes, admitted.held);
        if format == Format::Protobuf {
            return ingest.export_protobuf::<R>(tenant, bytes).await;
        }
        let (request, raw) = decode::<R>(format, bytes)?;
        ingest.export(tenant, request, raw.map_or(super::Raw::None, super::Raw::Otlp)).await
    }
    .await;
    let telemetry = ingest.telemetry();
    match result {
        Ok(response) => {
            telemetry.request("http", R::SIGNAL, outcome_ok::<R>(&response));
            encode(StatusCode::OK, answer_format, &response)
        }
        Err(err) => {
            telemetry.request("http", R::SIGNAL, outcome_err(&err));
            error_response(&err, answer_format)
        }
    }
}

fn outcome_ok<R: ExportRequest>(response: &R::Response) -> &'static str {
    // A partial success carries a non-empty field 1; an empty response encodes to nothing.
    if response.encoded_len() > 0 { "partial" } else { "ok" }
}

pub fn outcome_err(err: &IngestError) -> &'static str {
    match err.kind() {
        crate::error::ErrorKind::BadRequest => "invalid",
        crate::error::ErrorKind::TooLarge => "too_large",
        crate::error::ErrorKind::UnsupportedMediaType => "unsupported_media_type",
        crate::error::ErrorKind::NotFound => "not_found",
        crate::error::ErrorKind::Overloaded => "overloaded",
        crate::error::ErrorKind::Unavailable => "unavailable",
        crate::error::ErrorKind::TimedOut => "timed_out",
        crate::error::ErrorKind::Unauthorized => "unauthorized",
        crate::error::ErrorKind::Forbidden => "forbidden",
        crate::error::ErrorKind::Internal => "internal",
    }
}

fn encode<T: Message + serde::Serialize>(status: StatusCode, format: Format, message: &T) -> Response {
    let (content_type, body) = match format {
        Format::Protobuf => (PROTOBUF, message.encode_to_vec()),
        Format::Json => {
            // Proto3 JSON omits unset message fields; serde writes them as `null`.
            let mut value = serde_json::to_value(message).unwrap_or_default();
            if let serde_json::Value::Object(map) = &mut value {
                map.retain(|_, v| !v.is_null());
            }
            (JSON, serde_json::to_vec(&value).unwrap_or_default())
        }
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn error_response(err: &IngestError, format: Format) -> Response {
    let kind = err.kind();
    let status = RpcStatus { code: kind.grpc_code() as i32, message: err.to_string() };
    let mut response = encode(kind.http_status(), format, &status);
    if let Some(after) = kind.retry_after() {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
    }
    response
}
