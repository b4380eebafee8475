//! Trace by id: `GET /api/v2/traces/<id>` (`TraceByIDResponse`) and `GET /api/traces/<id>`
//! (`Trace`, i.e. OTLP `TracesData`), protobuf when the client accepts
//! `application/protobuf` (Grafana does), JSON otherwise.
//!
//! Ids shorter than 32 hex digits (64-bit Jaeger/B3 ids) are left-padded with zeros as Tempo
//! does. The store opens only the parts whose trace-key list holds the id (and that meet
//! `start`/`end` when given). A trace larger than [`MAX_TRACE_SPANS`] is answered partially:
//! v2 says so in `status`/`message`, v1 in a `Warning` header.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use serde::Deserialize;

use super::proto::{TraceByIdMetrics, TraceByIdResponse};
use super::{Deadline, QUERY_TIMEOUT, TempoError, TimeRange, blocking};
use crate::model::{Rows, SpanRow, span};
use crate::query::{ApiState, tenant, warning_headers};
use crate::store::parts::trace_key;
use crate::store::{Snapshot, Store};
use crate::tenant::Tenant;

/// The most spans one trace-by-id answer carries.
pub const MAX_TRACE_SPANS: usize = 100_000;

/// Query parameters of trace by id (others Grafana may add are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct TraceParams {
    start: Option<String>,
    end: Option<String>,
}

/// A trace id as Tempo reads it: 1 to 32 hex digits, left-padded with zeros to 16 bytes.
pub fn parse_trace_id(text: &str) -> Result<[u8; 16], TempoError> {
    let text = text.trim();
    let bad = || {
        TempoError::BadRequest(format!(
            "invalid trace id {:?}: must be 1 to 32 hex digits",
            text.chars().take(64).collect::<String>()
        ))
    };
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let padded = format!("{text:0>32}");
    let mut id = [0u8; 16];
    hex::decode_to_slice(&padded, &mut id).map_err(|_| bad())?;
    Ok(id)
}

/// Whether the client asked for protobuf (`Accept: application/protobuf`).
fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/protobuf") || v.contains("application/x-protobuf"))
}

/// The spans of several traces, read from the head and the parts that may hold them.
#[derive(Debug, Default)]
pub struct Collected {
    pub spans: HashMap<[u8; 16], Vec<SpanRow>>,
    /// Traces cut at `max_spans`.
    pub truncated: HashSet<[u8; 16]>,
    pub warnings: Vec<String>,
    /// Bytes of the parts read.
    pub inspected_bytes: u64,
}

/// Reads every span (at most `max_spans` per trace) of the traces whose key
/// (`parts::trace_key`) is in `keys` and, when `ids` is given, whose id is in `ids`, from
/// `snapshot`: parts are opened only when their trace-key list holds a key, and read only at
/// the rows their span index gives those keys.
pub fn collect(
    store: &Store,
    snapshot: Snapshot,
    keys: &HashSet<u64>,
    ids: Option<&HashSet<[u8; 16]>>,
    max_spans: usize,
    deadline: &Deadline,
) -> Result<Collected, TempoError> {
    let tenant = snapshot.tenant.clone();
    let mut out = Collected {
        inspected_bytes: snapshot
            .parts
            .iter()
            .filter(|p| p.of(&tenant).is_some_and(|t| keys.iter().any(|&k| t.trace_keys.may_hold(k))))
            .map(|p| p.size)
            .sum::<u64>()
            + snapshot.chunks.iter().map(|c| c.bytes).sum::<u64>(),
        ..Collected::default()
    };
    let mut timed_out = false;
    let report = store.scan_trace_keys(&snapshot, keys, |rows| {
        if timed_out || deadline.check().is_err() {
            timed_out = true;
            return;
        }
        let Rows::Spans(spans) = rows else { return };
        for s in spans
            .iter()
            .filter(|s| keys.contains(&trace_key(&s.trace_id)) && ids.is_none_or(|ids| ids.contains(&s.trace_id)))
        {
            let list = out.spans.entry(s.trace_id).or_default();
            if list.len() < max_spans {
                list.push(s.clone());
            } else {
                out.truncated.insert(s.trace_id);
            }
        }
    })?;
    if timed_out {
        deadline.check()?;
    }
    out.warnings = report.warnings;
    Ok(out)
}

/// The keys of some trace ids.
pub fn keys_of(ids: &HashSet<[u8; 16]>) -> HashSet<u64> {
    ids.iter().map(trace_key).collect()
}

/// One trace's spans, or [`TempoError::TraceNotFound`].
fn find(store: &Arc<Store>, tenant: &Tenant, id: [u8; 16], range: TimeRange) -> Result<Collected, TempoError> {
    let deadline = Deadline::after(QUERY_TIMEOUT);
    let mut snapshot = store.trace_snapshot(tenant, &id);
    range.prune(&mut snapshot);
    let ids = HashSet::from([id]);
    let mut found = collect(store, snapshot, &keys_of(&ids), Some(&ids), MAX_TRACE_SPANS, &deadline)?;
    if let Some(rows) = found.spans.get_mut(&id)
        && range != TimeRange::default()
    {
        rows.retain(|s| range.overlaps(s.start_unix_nano, s.end_unix_nano.max(s.start_unix_nano)));
    }
    if found.spans.get(&id).is_none_or(Vec::is_empty) {
        return Err(TempoError::TraceNotFound);
    }
    Ok(found)
}

async fn lookup(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
    params: &TraceParams,
) -> Result<(TracesData, Collected, [u8; 16]), TempoError> {
    let tenant = tenant(headers)?;
    let id = parse_trace_id(id)?;
    let range = TimeRange::parse(params.start.as_deref(), params.end.as_deref())?;
    let store = Arc::clone(&state.store);
    blocking(move || {
        let mut found = find(&store, &tenant, id, range)?;
        let rows = found.spans.remove(&id).unwrap_or_default();
        Ok((span::to_traces_data(&rows), found, id))
    })
    .await
}

fn protobuf(bytes: Vec<u8>) -> Response {
    let mut response = bytes.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/protobuf"));
    response
}

/// `GET /api/v2/traces/<id>`: `TraceByIDResponse`, its `trace` always set.
pub async fn v2(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<TraceParams>,
) -> Result<Response, TempoError> {
    let (data, found, id) = lookup(&state, &headers, &id, &params).await?;
    let partial = found.truncated.contains(&id);
    let answer = TraceByIdResponse {
        trace: Some(data),
        metrics: Some(TraceByIdMetrics { inspected_bytes: found.inspected_bytes }),
        status: i32::from(partial),
        message: if partial {
            format!("trace has more than {MAX_TRACE_SPANS} spans; the first {MAX_TRACE_SPANS} read are shown")
        } else {
            String::new()
        },
    };
    let mut response =
        if wants_protobuf(&headers) { protobuf(answer.encode_to_vec()) } else { axum::Json(answer).into_response() };
    warning_headers(&mut response, &found.warnings);
    Ok(response)
}

/// `GET /api/traces/<id>`: `tempopb.Trace`, the bytes of OTLP `TracesData` (OTLP/JSON when
/// protobuf is not asked for).
pub async fn v1(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<TraceParams>,
) -> Result<Response, TempoError> {
    let (data, mut found, id) = lookup(&state, &headers, &id, &params).await?;
    if found.truncated.contains(&id) {
        found
            .warnings
            .push(format!("trace has more than {MAX_TRACE_SPANS} spans; the first {MAX_TRACE_SPANS} are shown"));
    }
    let mut response =
        if wants_protobuf(&headers) { protobuf(data.encode_to_vec()) } else { axum::Json(data).into_response() };
    warning_headers(&mut response, &found.warnings);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_left_padded_and_bad_ids_refused() {
        let id = parse_trace_id("abc").unwrap();
        assert_eq!(hex::encode(id), "00000000000000000000000000000abc");
        let jaeger = parse_trace_id("0123456789abcdef").unwrap();
        assert_eq!(hex::encode(jaeger), "00000000000000000123456789abcdef");
        let full = "0123456789ABCDEF0123456789abcdef";
        assert_eq!(hex::encode(parse_trace_id(full).unwrap()), full.to_ascii_lowercase());
        for bad in ["", "xyz", "0123456789abcdef0123456789abcdef0", "12 34", "+1", "0x12"] {
            let err = parse_trace_id(bad).unwrap_err();
            assert!(err.to_string().contains("invalid trace id"), "{bad}: {err}");
        }
    }

    #[test]
    fn protobuf_is_chosen_by_accept() {
        let mut headers = HeaderMap::new();
        assert!(!wants_protobuf(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/protobuf"));
        assert!(wants_protobuf(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_protobuf(&headers));
    }
}
