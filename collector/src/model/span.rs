//! Spans as rows, and rows back to OTLP traces.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, TracesData};

use super::text::Text;
use super::{ResourceColumns, Row, RowKey, ScopeColumns, attrs};

/// One span. Ids are raw bytes; `parent_span_id` is `None` for a root span. Texts are ranges
/// of one buffer per request when the receiver built the row ([`Text`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRow {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub trace_state: Text,
    pub flags: u32,
    pub name: Text,
    /// OTLP `SpanKind` number (2 = SERVER).
    pub kind: i32,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// OTLP `Status.code` number (2 = ERROR).
    pub status_code: i32,
    pub status_message: Text,
    pub http_route: Option<Text>,
    pub http_status_code: Option<i64>,
    /// OTLP/JSON of the span attributes.
    pub attributes: Text,
    pub dropped_attributes_count: u32,
    /// OTLP/JSON of the events.
    pub events: Text,
    pub dropped_events_count: u32,
    /// OTLP/JSON of the links.
    pub links: Text,
    pub dropped_links_count: u32,
    pub resource: Arc<ResourceColumns>,
    pub scope: Arc<ScopeColumns>,
}

impl SpanRow {
    pub fn duration_nano(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }
}

impl Row for SpanRow {
    fn key(&self) -> RowKey<'_> {
        RowKey {
            time_unix_nano: self.start_unix_nano,
            service_name: self.resource.service_name.as_ref(),
            service_version: self.resource.service_version.as_ref(),
        }
    }
}

/// A request of `spans` under one resource and one scope, both empty: what tests send.
#[cfg(test)]
pub(crate) fn one_scope_request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// Flattens a validated request (ids of the right length) into rows.
pub fn rows_from_request(request: ExportTraceServiceRequest) -> Vec<SpanRow> {
    let mut rows = Vec::with_capacity(crate::receive::validate::count_spans(&request) as usize);
    for rs in request.resource_spans {
        let resource = Arc::new(ResourceColumns::from_otlp(rs.resource.as_ref(), &rs.schema_url));
        for ss in rs.scope_spans {
            let scope = Arc::new(ScopeColumns::from_otlp(ss.scope.as_ref(), &ss.schema_url));
            for span in ss.spans {
                rows.push(row_from_span(span, &resource, &scope));
            }
        }
    }
    rows
}

fn row_from_span(span: Span, resource: &Arc<ResourceColumns>, scope: &Arc<ScopeColumns>) -> SpanRow {
    let http_route = attrs::find(&span.attributes, "http.route").and_then(attrs::as_text).map(Text::from);
    let http_status_code = attrs::find(&span.attributes, "http.response.status_code")
        .or_else(|| attrs::find(&span.attributes, "http.status_code"))
        .and_then(attrs::as_i64);
    let (status_code, status_message) = match span.status {
        Some(s) => (s.code, s.message),
        None => (0, String::new()),
    };
    let (trace_state, name, status_message) =
        (Text::from(span.trace_state), Text::from(span.name), Text::from(status_message));
    SpanRow {
        trace_id: span.trace_id.as_slice().try_into().unwrap_or([0; 16]),
        span_id: span.span_id.as_slice().try_into().unwrap_or([0; 8]),
        parent_span_id: span.parent_span_id.as_slice().try_into().ok(),
        trace_state,
        flags: span.flags,
        name,
        kind: span.kind,
        start_unix_nano: span.start_time_unix_nano,
        end_unix_nano: span.end_time_unix_nano,
        status_code,
        status_message,
        http_route,
        http_status_code,
        attributes: attrs::encode(&span.attributes).into(),
        dropped_attributes_count: span.dropped_attributes_count,
        events: attrs::encode_json(&span.events).into(),
        dropped_events_count: span.dropped_events_count,
        links: attrs::encode_json(&span.links).into(),
        dropped_links_count: span.dropped_links_count,
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
    }
}

/// Rows back to OTLP, grouped by resource and scope, spans ordered by start time then id so
/// the answer is deterministic whichever storage tier each span came from.
/// The same value: one allocation, or equal contents.
fn same<T: PartialEq>(a: &T, b: &T) -> bool {
    std::ptr::eq(a, b) || a == b
}

pub fn to_traces_data<'a>(rows: impl IntoIterator<Item = &'a SpanRow>) -> TracesData {
    let mut rows: Vec<&SpanRow> = rows.into_iter().collect();
    rows.sort_by_key(|r| (r.start_unix_nano, r.span_id));
    // Resources and scopes are grouped by their stored form and decoded once each: a trace of
    // 5,000 spans under one 5,000-attribute resource decodes that resource once, not 5,000 times.
    let mut out: Vec<ResourceSpans> = Vec::new();
    let mut resources: Vec<(&ResourceColumns, Vec<&ScopeColumns>)> = Vec::new();
    for row in rows {
        let r = match resources.iter().position(|(res, _)| same(*res, &*row.resource)) {
            Some(r) => r,
            None => {
                out.push(ResourceSpans {
                    resource: Some(row.resource.to_otlp()),
                    scope_spans: Vec::new(),
                    schema_url: row.resource.schema_url.to_string(),
                });
                resources.push((&row.resource, Vec::new()));
                out.len() - 1
            }
        };
        let (_, scopes) = &mut resources[r];
        let rs = &mut out[r];
        let s = match scopes.iter().position(|sc| same(*sc, &*row.scope)) {
            Some(s) => s,
            None => {
                rs.scope_spans.push(ScopeSpans {
                    scope: Some(row.scope.to_otlp()),
                    spans: Vec::new(),
                    schema_url: row.scope.schema_url.to_string(),
                });
                scopes.push(&row.scope);
                rs.scope_spans.len() - 1
            }
        };
        rs.scope_spans[s].spans.push(span_from_row(row));
    }
    TracesData { resource_spans: out }
}

fn span_from_row(row: &SpanRow) -> Span {
    Span {
        trace_id: row.trace_id.to_vec(),
        span_id: row.span_id.to_vec(),
        trace_state: row.trace_state.to_string(),
        parent_span_id: row.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: row.flags,
        name: row.name.to_string(),
        kind: row.kind,
        start_time_unix_nano: row.start_unix_nano,
        end_time_unix_nano: row.end_unix_nano,
        attributes: attrs::decode_lossy(&row.attributes),
        dropped_attributes_count: row.dropped_attributes_count,
        events: attrs::decode_json(&row.events).unwrap_or_default(),
        dropped_events_count: row.dropped_events_count,
        links: attrs::decode_json(&row.links).unwrap_or_default(),
        dropped_links_count: row.dropped_links_count,
        status: (row.status_code != 0 || !row.status_message.is_empty())
            .then(|| Status { message: row.status_message.to_string(), code: row.status_code }),
    }
}
