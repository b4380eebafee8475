//! OTLP/gRPC: the four `Export` methods, as unary gRPC calls over HTTP/2.
//!
//! The calls are answered here rather than by tonic's generated servers, for three reasons:
//! the request body is read through [`Admission`](super::admission::Admission) like every
//! other body, so its bytes are counted against the in-flight budget as they arrive (tonic
//! buffers the whole message before a service sees it); a gzip message is inflated by the
//! same counted, bounded decoder as on the HTTP path, so a corrupt one is `INVALID_ARGUMENT`
//! and an oversized one `RESOURCE_EXHAUSTED`, as OTLP asks; and a fully valid request goes to
//! the write-ahead log as received, with no re-encoding. The wire types are still
//! `opentelemetry-proto`'s, and the gRPC framing (a compressed flag and a 4-byte big-endian
//! length before each message; `grpc-status` in the trailers) is the protocol's.
//!
//! Tenant from the `x-scope-orgid` metadata key; gzip accepted; answers uncompressed.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, header};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::Status;

use super::admission::{self, Reservation};
use super::otlp_http::outcome_err;
use super::{ExportRequest, Ingest};
use crate::error::IngestError;
use crate::tenant::Tenant;

/// Bytes before each gRPC message: the compressed flag and the message length.
const PREFIX: usize = 5;

/// The four `Export` methods; any other path is `UNIMPLEMENTED`.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route(ExportTraceServiceRequest::GRPC_EXPORT_PATH, post(export::<ExportTraceServiceRequest>))
        .route(ExportMetricsServiceRequest::GRPC_EXPORT_PATH, post(export::<ExportMetricsServiceRequest>))
        .route(ExportLogsServiceRequest::GRPC_EXPORT_PATH, post(export::<ExportLogsServiceRequest>))
        .route(ExportProfilesServiceRequest::GRPC_EXPORT_PATH, post(export::<ExportProfilesServiceRequest>))
        .fallback(|uri: http::Uri| async move {
            Status::unimplemented(format!("no method {}", uri.path())).into_http::<Body>()
        })
        .with_state(ingest)
}

async fn export<R: ExportRequest>(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let tenant = Tenant::from_headers(&headers)?;
        let gzip = gzip_encoded(&headers)?;
        ingest.admit().await?;
        let limit = ingest.limits().max_request_bytes;
        let admitted = ingest.admission().read_grpc(&headers, body, limit.saturating_add(PREFIX)).await?;
        let mut held = admitted.held;
        // `held` keeps the message's bytes counted until the request is answered.
        let message = unframe(admitted.bytes, gzip, limit, &mut held)?;
        let response = ingest.export_protobuf::<R>(tenant, message).await;
        drop(held);
        response
    }
    .await;
    let telemetry = ingest.telemetry();
    match result {
        Ok(response) => {
            telemetry.request("grpc", R::SIGNAL, if response.encoded_len() > 0 { "partial" } else { "ok" });
            ok_response(&response)
        }
        Err(err) => {
            telemetry.request("grpc", R::SIGNAL, outcome_err(&err));
            status_of(&err).into_http::<Body>()
        }
    }
}

/// Whether messages are gzip-compressed (`grpc-encoding`).
fn gzip_encoded(headers: &HeaderMap) -> Result<bool, IngestError> {
    match headers.get("grpc-encoding").map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(e) if e.is_empty() || e == "identity" => Ok(false),
        Some(e) if e == "gzip" => Ok(true),
        Some(other) => Err(IngestError::UnsupportedMediaType {
            what: "grpc-encoding",
            value: other,
            expected: "use gzip or identity",
        }),
    }
}

/// The one message of a unary call's body, inflated (within `limit`, counted in `held`) when
/// its compressed flag is set.
pub fn unframe(body: Bytes, gzip: bool, limit: usize, held: &mut Reservation) -> Result<Bytes, IngestError> {
    let malformed = |detail: String| IngestError::Malformed { format: "gRPC", detail };
    if body.len() < PREFIX {
        return Err(malformed(format!("the body is {} bytes, shorter than a message prefix", body.len())));
    }
    let compressed = match body[0] {
        0 => false,
        1 => true,
        flag => return Err(malformed(format!("compressed flag is {flag}; must be 0 or 1"))),
    };
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if len > limit {
        return Err(IngestError::TooLarge { size: len, limit });
    }
    if body.len() != PREFIX + len {
        return Err(malformed(format!(
            "the message prefix declares {len} bytes but {} follow; a unary call carries exactly one message",
            body.len() - PREFIX
        )));
    }
    let message = body.slice(PREFIX..);
    if !compressed {
        return Ok(message);
    }
    if !gzip {
        return Err(malformed("a compressed message without grpc-encoding".to_string()));
    }
    let inflated = admission::gunzip(&message, limit, held)?;
    drop(message);
    drop(body);
    Ok(inflated)
}

/// A successful answer: the response message in one uncompressed frame, then `grpc-status: 0`.
fn ok_response<M: Message>(message: &M) -> Response {
    let len = message.encoded_len();
    let mut frame = BytesMut::with_capacity(PREFIX + len);
    frame.put_u8(0);
    frame.put_u32(len as u32);
    if message.encode(&mut frame).is_err() {
        return Status::internal("cannot encode the response").into_http::<Body>();
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = Full::new(frame.freeze()).with_trailers(async move { Some(Ok(trailers)) });
    let mut response = Response::new(Body::new(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// The gRPC status for a failure, with `retry-after` metadata for the retryable kinds.
fn status_of(err: &IngestError) -> Status {
    let mut status = err.to_grpc_status();
    if let Some(after) = err.kind().retry_after()
        && let Ok(v) = after.as_secs().to_string().parse()
    {
        status.metadata_mut().insert("retry-after", v);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Telemetry;

    fn frame(flag: u8, message: &[u8]) -> Bytes {
        let mut out = vec![flag];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        Bytes::from(out)
    }

    #[test]
    fn frames_are_checked_and_gzip_inflated_within_the_limit() {
        let budget = admission::Budget::new(1 << 20, Arc::new(Telemetry::default()));
        let mut held = budget.reservation();
        assert_eq!(&unframe(frame(0, b"abc"), false, 100, &mut held).unwrap()[..], b"abc");

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &[9u8; 1000]).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(unframe(frame(1, &gz), true, 1000, &mut held).unwrap().len(), 1000);
        let err = unframe(frame(1, &gz), true, 999, &mut held).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::TooLarge, "{err}");

        // issue 11 minor: a corrupt gzip message was INTERNAL; it is bad input.
        let err = unframe(frame(1, b"not gzip"), true, 1000, &mut held).unwrap_err();
        assert_eq!(err.to_grpc_status().code(), tonic::Code::InvalidArgument);
        assert!(err.to_string().contains("malformed gzip body"), "{err}");

        for (body, what) in [
            (Bytes::from_static(b"\0\0"), "shorter than a message prefix"),
            (frame(2, b"x"), "compressed flag is 2"),
            (frame(1, b"x"), "without grpc-encoding"),
            (Bytes::from_static(b"\0\0\0\0\x09abc"), "declares 9 bytes but 3 follow"),
        ] {
            let err = unframe(body, false, 100, &mut held).unwrap_err();
            assert_eq!(err.to_grpc_status().code(), tonic::Code::InvalidArgument);
            assert!(err.to_string().contains(what), "{err}");
        }
        let err = unframe(frame(0, &[0; 101]), false, 100, &mut held).unwrap_err();
        assert_eq!(err.to_grpc_status().code(), tonic::Code::ResourceExhausted);
    }
}
