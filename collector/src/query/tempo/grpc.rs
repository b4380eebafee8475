//! `tempopb.StreamingQuerier/Search`: the server-streaming gRPC search Grafana uses when
//! streaming is enabled in the Tempo datasource. It dials the API port with HTTP/2 cleartext
//! (prior knowledge), which the API listener's auto builder accepts.
//!
//! Framed by hand as `receive::otlp_grpc` does (a compressed flag and a 4-byte length before
//! each message, `grpc-status` in the trailers), so the request body goes through the
//! admission budget with a small limit ([`MAX_REQUEST_BYTES`]) and timeouts. The search runs
//! once, within [`super::QUERY_TIMEOUT`] or the client's `grpc-timeout` if shorter, and its
//! whole answer is sent as one `SearchResponse` message; Grafana appends the traces of every
//! message and keeps the last `metrics`, so one message is a complete stream. Failures are
//! trailers-only responses with the status [`super::TempoError`] maps to.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::{BufMut, BytesMut};
use http::{HeaderMap, HeaderValue, header};
use http_body_util::{BodyExt, Full};
use prost::Message;

use super::proto::{SearchRequest, SearchResponse};
use super::search::{Search, run};
use super::{Deadline, QUERY_TIMEOUT, TempoError, blocking};
use crate::query::ApiState;
use crate::receive::otlp_grpc::unframe;
use crate::tenant::Tenant;

/// The method's path.
pub const SEARCH_PATH: &str = "/tempopb.StreamingQuerier/Search";
/// The largest request message accepted (a query is at most 16 KiB).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// `grpc-timeout` (`<digits><unit>`, units `H M S m u n`), when present and valid.
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The streaming search.
pub async fn search(State(state): State<ApiState>, headers: HeaderMap, body: Body) -> Response {
    match answer(&state, &headers, body).await {
        Ok(message) => stream_of_one(&message),
        Err(err) => err.to_grpc_status().into_http::<Body>(),
    }
}

async fn answer(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<SearchResponse, TempoError> {
    let bad = |m: String| TempoError::BadRequest(m);
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/grpc") {
        return Err(bad(format!("content-type {content_type:?} is not application/grpc")));
    }
    let tenant = Tenant::from_headers(headers)?;
    let gzip = match headers.get("grpc-encoding").and_then(|v| v.to_str().ok()).map(str::trim) {
        None | Some("" | "identity") => false,
        Some("gzip") => true,
        Some(other) => return Err(bad(format!("unsupported grpc-encoding {other:?}; use gzip or identity"))),
    };
    let admitted = state
        .ingest
        .admission()
        .read(headers, body, MAX_REQUEST_BYTES + 5, false)
        .await
        .map_err(|e| TempoError::Query(e.into()))?;
    let mut held = admitted.held;
    let message = unframe(admitted.bytes, gzip, MAX_REQUEST_BYTES, &mut held).map_err(|e| bad(e.to_string()))?;
    let request = SearchRequest::decode(message).map_err(|e| bad(format!("malformed SearchRequest: {e}")))?;
    drop(held);
    let search = Search::from_request(&request)?;
    let budget = grpc_timeout(headers).map_or(QUERY_TIMEOUT, |t| t.min(QUERY_TIMEOUT));
    let store = Arc::clone(&state.store);
    let (response, warnings) = blocking(move || run(&store, &tenant, &search, &Deadline::after(budget))).await?;
    for w in warnings {
        tracing::warn!(warning = %w, "tempo streaming search read around damaged data");
    }
    Ok(response)
}

/// One response message, then `grpc-status: 0`.
fn stream_of_one(message: &SearchResponse) -> Response {
    let len = message.encoded_len();
    let mut frame = BytesMut::with_capacity(5 + len);
    frame.put_u8(0);
    frame.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    if message.encode(&mut frame).is_err() {
        return tonic::Status::internal("cannot encode the response").into_http::<Body>();
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = Full::new(frame.freeze()).with_trailers(async move { Some(Ok(trailers)) });
    let mut response = Response::new(Body::new(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_with_their_units() {
        let mut h = HeaderMap::new();
        assert_eq!(grpc_timeout(&h), None);
        for (text, expect) in [
            ("5S", Some(Duration::from_secs(5))),
            ("250m", Some(Duration::from_millis(250))),
            ("1H", Some(Duration::from_secs(3600))),
            ("10x", None),
            ("S", None),
            ("123456789S", None),
        ] {
            h.insert("grpc-timeout", HeaderValue::from_static(text));
            assert_eq!(grpc_timeout(&h), expect, "{text}");
        }
    }
}
