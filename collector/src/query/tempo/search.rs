//! TraceQL search: `GET /api/search` (and the streaming gRPC `Search`, [`super::grpc`]).
//!
//! The query is parsed by the `traceql` crate (legacy `tags=`/`minDuration`/`maxDuration` are
//! turned into one TraceQL filter first, as Grafana's migration does). Two evaluation paths:
//!
//! * **Span by span** ([`traceql::Query::span_local`]: a union of filters reading no
//!   trace-level field — what Grafana's search builder writes). Every hint then holds for each
//!   selected span, so parts lacking a hinted service are skipped (catalog metadata), and a
//!   span is only turned into a `traceql` value when its own service and duration pass the
//!   hints. Parts are read newest first, a part's spans newest first in batches, and reading
//!   stops once `limit` traces are found and the next part or batch holds nothing newer than
//!   them. The found traces' root, start, duration and
//!   per-service counts are then read by trace id ([`super::trace::collect`]).
//! * **Whole traces** (structural operators, `&&` between span sets, aggregates, trace-level
//!   intrinsics). A first pass keeps a small summary per trace (services present, longest
//!   span, start) and drops the traces that cannot meet the hints; the remaining candidates,
//!   newest first, are read whole by trace id in batches and evaluated until `limit` match.
//!
//! Both paths skip parts outside `start`/`end` (catalog time ranges), hold at most
//! [`MAX_TRACKED_TRACES`] trace summaries and stop at the query's deadline. Results are sorted
//! most recent first.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde::Deserialize;

use super::proto::{SearchMetrics, SearchResponse, ServiceStats, Span as TempoSpan, SpanSet, TraceSearchMetadata};
use super::trace::{collect, keys_of};
use super::{Deadline, QUERY_TIMEOUT, TempoError, TimeRange, blocking, bounded};
use crate::model::{ResourceColumns, SpanRow, attrs};
use crate::query::{ApiState, tenant, warning_headers};
use crate::signal::Signal;
use crate::store::span_index::IndexedSpan;
use crate::store::{ScanReport, Snapshot, SpanProbe, Store};
use crate::tenant::Tenant;

/// Traces per answer when `limit` is absent (Grafana's default too).
pub const DEFAULT_LIMIT: usize = 20;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 5_000;
/// Spans per span set when `spss` is absent.
pub const DEFAULT_SPSS: usize = 3;
/// The largest `spss` accepted.
pub const MAX_SPSS: usize = 1_000;
/// Trace summaries a search holds at most; past it the search answers from what it read.
pub const MAX_TRACKED_TRACES: usize = 1_000_000;
/// Spans read to describe the found traces, at most (shared among them).
const MAX_DESCRIBE_SPANS: usize = 500_000;
/// Spans of one candidate trace evaluated, at most (whole-trace path).
const MAX_EVAL_TRACE_SPANS: usize = 50_000;
/// Attributes shown per matched span.
const MAX_SPAN_ATTRIBUTES: usize = 16;
/// What Tempo names a trace whose root span it has not seen.
const NO_ROOT: &str = "<root span not yet received>";

/// Query parameters of `/api/search` (unknown ones are ignored, as Tempo does).
#[derive(Debug, Default, Deserialize)]
pub struct SearchParams {
    q: Option<String>,
    tags: Option<String>,
    #[serde(rename = "minDuration")]
    min_duration: Option<String>,
    #[serde(rename = "maxDuration")]
    max_duration: Option<String>,
    limit: Option<String>,
    spss: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

/// A validated search.
#[derive(Debug, Clone)]
pub struct Search {
    query: traceql::Query,
    limit: usize,
    spss: usize,
    range: TimeRange,
}

impl Search {
    /// From the HTTP parameters.
    pub fn from_params(p: &SearchParams) -> Result<Search, TempoError> {
        let range = TimeRange::parse(p.start.as_deref(), p.end.as_deref())?;
        let limit = bounded("limit", p.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
        let spss = bounded("spss", p.spss.as_deref(), DEFAULT_SPSS, MAX_SPSS)?;
        let text = query_text(p.q.as_deref(), p.tags.as_deref(), p.min_duration.as_deref(), p.max_duration.as_deref())?;
        Ok(Search { query: traceql::parse(&text)?, limit, spss, range })
    }

    /// From the streaming request's fields.
    pub fn from_request(r: &super::proto::SearchRequest) -> Result<Search, TempoError> {
        let range = TimeRange::from_secs(r.start, r.end)?;
        let limit = bounded("limit", Some(&r.limit.to_string()), DEFAULT_LIMIT, MAX_LIMIT)?;
        let spss = bounded("spss", Some(&r.spans_per_span_set.to_string()), DEFAULT_SPSS, MAX_SPSS)?;
        let text = if !r.query.trim().is_empty() {
            r.query.clone()
        } else {
            let tags: Vec<(String, String)> = r.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let ms = |v: u32| (v > 0).then(|| format!("{v}ms"));
            legacy_query(&tags, ms(r.min_duration_ms).as_deref(), ms(r.max_duration_ms).as_deref())?
        };
        Ok(Search { query: traceql::parse(&text)?, limit, spss, range })
    }
}

/// The TraceQL text of a request: `q` when given, else the legacy parameters as one filter.
fn query_text(q: Option<&str>, tags: Option<&str>, min: Option<&str>, max: Option<&str>) -> Result<String, TempoError> {
    if let Some(q) = q.filter(|q| !q.trim().is_empty()) {
        return Ok(q.to_string());
    }
    let tags = match tags {
        Some(t) => logfmt(t)?,
        None => Vec::new(),
    };
    legacy_query(&tags, min, max)
}

/// Legacy tag search as the TraceQL filter Grafana's migration writes: each `key=value` a
/// condition on one span (`service.name` on the resource, `name` the span name, any other key
/// the span or resource attribute), durations as bounds on the span's duration.
fn legacy_query(tags: &[(String, String)], min: Option<&str>, max: Option<&str>) -> Result<String, TempoError> {
    let mut conds = Vec::new();
    for (key, value) in tags {
        let quoted = quote(value);
        conds.push(match key.as_str() {
            "service.name" => format!("resource.service.name = {quoted}"),
            "name" => format!("name = {quoted}"),
            _ => {
                let field = format!(".{}", quote(key));
                match value.parse::<i64>() {
                    Ok(n) => format!("({field} = {quoted} || {field} = {n})"),
                    Err(_) => format!("{field} = {quoted}"),
                }
            }
        });
    }
    for (param, op, value) in [("minDuration", ">=", min), ("maxDuration", "<=", max)] {
        let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { continue };
        let ok = v.chars().all(|c| c.is_ascii_digit() || ".nsuµμmh".contains(c))
            && v.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            return Err(TempoError::BadRequest(format!(
                "invalid {param} {:?}: expected a duration such as 100ms or 1.5s",
                v.chars().take(40).collect::<String>()
            )));
        }
        conds.push(format!("duration {op} {v}"));
    }
    Ok(format!("{{ {} }}", conds.join(" && ")))
}

/// A TraceQL string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `key=value key2="quoted value"` pairs.
fn logfmt(text: &str) -> Result<Vec<(String, String)>, TempoError> {
    let bad = |why: &str| {
        TempoError::BadRequest(format!("invalid tags {:?}: {why}", text.chars().take(80).collect::<String>()))
    };
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') || key.is_empty() {
            return Err(bad("expected key=value pairs"));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(bad("unterminated quoted value")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(bad("unterminated quoted value")),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
}

/// `GET /api/search`.
pub async fn http(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<SearchParams>,
) -> Result<Response, TempoError> {
    let tenant = tenant(&headers)?;
    let search = Search::from_params(&params)?;
    let store = Arc::clone(&state.store);
    let (answer, warnings) = blocking(move || run(&store, &tenant, &search, &Deadline::after(QUERY_TIMEOUT))).await?;
    let mut response = axum::Json(answer).into_response();
    warning_headers(&mut response, &warnings);
    Ok(response)
}

/// One matched span as the answer shows it.
fn tempo_span(row: &SpanRow) -> TempoSpan {
    let mut attributes = Vec::new();
    if let Some(service) = &row.resource.service_name {
        attributes.push(KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(service.to_string())) }),
            key_strindex: 0,
        });
    }
    attributes.extend(attrs::decode_lossy(&row.attributes).into_iter().take(MAX_SPAN_ATTRIBUTES));
    TempoSpan {
        span_id: hex::encode(row.span_id),
        name: row.name.to_string(),
        start_time_unix_nano: row.start_unix_nano,
        duration_nanos: row.duration_nano(),
        attributes,
    }
}

/// The spans a query selected in one trace: at most `spss` kept, all counted.
#[derive(Debug, Default)]
struct Matched {
    spans: Vec<TempoSpan>,
    matched: u32,
    /// Earliest start among the matched spans seen (orders traces before they are described).
    first_start: u64,
}

impl Matched {
    fn add(&mut self, row: &SpanRow, spss: usize) {
        if self.matched == 0 || row.start_unix_nano < self.first_start {
            self.first_start = row.start_unix_nano;
        }
        self.matched = self.matched.saturating_add(1);
        if self.spans.len() < spss {
            self.spans.push(tempo_span(row));
        }
    }

    fn span_set(mut self) -> SpanSet {
        self.spans.sort_by(|a, b| (a.start_time_unix_nano, &a.span_id).cmp(&(b.start_time_unix_nano, &b.span_id)));
        SpanSet { spans: self.spans, matched: self.matched }
    }
}

/// Converts stored spans into `traceql` values, decoding each resource once.
#[derive(Debug, Default)]
pub(super) struct ToModel {
    resources: HashMap<usize, Vec<(String, traceql::Value)>>,
}

/// An OTLP attribute value as TraceQL compares it; arrays, maps and bytes are not comparable.
pub(super) fn model_value(value: &AnyValue) -> Option<traceql::Value> {
    Some(match value.value.as_ref()? {
        any_value::Value::StringValue(s) => traceql::Value::Str(s.clone()),
        any_value::Value::IntValue(i) => traceql::Value::Int(*i),
        any_value::Value::DoubleValue(d) => traceql::Value::Float(*d),
        any_value::Value::BoolValue(b) => traceql::Value::Bool(*b),
        _ => return None,
    })
}

pub(super) fn model_attrs(text: &str) -> Vec<(String, traceql::Value)> {
    attrs::decode_lossy(text)
        .into_iter()
        .filter_map(|kv| {
            let v = kv.value.as_ref().and_then(model_value)?;
            Some((kv.key, v))
        })
        .collect()
}

impl ToModel {
    /// Forgets the decoded resources: they are cached by address, valid while the rows they
    /// came from are alive (call between batches).
    pub(super) fn clear(&mut self) {
        self.resources.clear();
    }

    pub(super) fn resource(&mut self, r: &Arc<ResourceColumns>) -> Vec<(String, traceql::Value)> {
        let key = Arc::as_ptr(r) as usize;
        self.resources.entry(key).or_insert_with(|| model_attrs(&r.attributes)).clone()
    }

    pub(super) fn span(&mut self, row: &SpanRow) -> traceql::Span {
        traceql::Span {
            span_id: row.span_id,
            parent_span_id: row.parent_span_id,
            name: row.name.to_string(),
            kind: match row.kind {
                1 => traceql::SpanKind::Internal,
                2 => traceql::SpanKind::Server,
                3 => traceql::SpanKind::Client,
                4 => traceql::SpanKind::Producer,
                5 => traceql::SpanKind::Consumer,
                _ => traceql::SpanKind::Unspecified,
            },
            status: match row.status_code {
                1 => traceql::SpanStatus::Ok,
                2 => traceql::SpanStatus::Error,
                _ => traceql::SpanStatus::Unset,
            },
            status_message: row.status_message.to_string(),
            start_unix_nano: row.start_unix_nano,
            end_unix_nano: row.end_unix_nano,
            resource: self.resource(&row.resource),
            attributes: model_attrs(&row.attributes),
        }
    }
}

/// Counters for the answer's `metrics`.
#[derive(Debug, Default)]
struct Inspected {
    traces: u64,
    spans: u64,
    bytes: u64,
    parts: u64,
    total_parts: u64,
    total_bytes: u64,
}

impl Inspected {
    fn metrics(&self) -> SearchMetrics {
        SearchMetrics {
            inspected_traces: u32::try_from(self.traces).unwrap_or(u32::MAX),
            inspected_bytes: self.bytes,
            total_blocks: u32::try_from(self.total_parts).unwrap_or(u32::MAX),
            completed_jobs: u32::try_from(self.parts).unwrap_or(u32::MAX),
            total_jobs: u32::try_from(self.total_parts).unwrap_or(u32::MAX),
            total_block_bytes: self.total_bytes,
            inspected_spans: self.spans,
        }
    }
}

fn copy(s: &Snapshot) -> Snapshot {
    Snapshot { tenant: s.tenant.clone(), chunks: s.chunks.clone(), parts: s.parts.clone() }
}

/// Runs a search over one tenant's spans; the answer and the warnings of damaged parts.
pub fn run(
    store: &Store,
    tenant: &Tenant,
    search: &Search,
    deadline: &Deadline,
) -> Result<(SearchResponse, Vec<String>), TempoError> {
    let mut snapshot = store.snapshot(tenant, Signal::Traces);
    search.range.prune(&mut snapshot);
    // Newest first, so a search that stops early has the most recent traces.
    let newest = |p: &Arc<crate::store::parts::PartMeta>| p.of(tenant).map_or(0, |t| t.max_time);
    snapshot.parts.sort_by_key(|p| std::cmp::Reverse(newest(p)));
    let mut inspected = Inspected {
        total_parts: snapshot.parts.len() as u64,
        total_bytes: snapshot.parts.iter().map(|p| p.size).sum(),
        ..Inspected::default()
    };
    let mut warnings = Vec::new();
    let found: Vec<([u8; 16], Matched)> = if search.query.span_local() {
        span_by_span(store, &snapshot, search, deadline, &mut inspected, &mut warnings)?
    } else {
        whole_traces(store, &snapshot, search, deadline, &mut inspected, &mut warnings)?
    };
    // Describe the found traces from all their spans in the range.
    let ids: HashSet<[u8; 16]> = found.iter().map(|(id, _)| *id).collect();
    let per_trace = (MAX_DESCRIBE_SPANS / ids.len().max(1)).max(100);
    let described = if ids.is_empty() {
        Default::default()
    } else {
        collect(store, copy(&snapshot), &keys_of(&ids), Some(&ids), per_trace, deadline)?
    };
    warnings.extend(described.warnings.iter().cloned());
    let mut traces: Vec<TraceSearchMetadata> = found
        .into_iter()
        .map(|(id, matched)| describe(id, described.spans.get(&id).map(Vec::as_slice).unwrap_or(&[]), matched))
        .collect();
    traces.sort_by(|a, b| (b.start_time_unix_nano, &b.trace_id).cmp(&(a.start_time_unix_nano, &a.trace_id)));
    traces.truncate(search.limit);
    warnings.sort();
    warnings.dedup();
    Ok((SearchResponse { traces, metrics: Some(inspected.metrics()) }, warnings))
}

/// Reads the spans `probe` accepts of one part (or of the head's chunks), counting what was
/// read; `probe` sees every span, `f` the accepted ones.
fn scan_one(
    store: &Store,
    snapshot: Snapshot,
    inspected: &mut Inspected,
    warnings: &mut Vec<String>,
    probe: &mut dyn FnMut(&SpanProbe<'_>) -> bool,
    f: impl FnMut(&SpanRow),
) -> Result<(), TempoError> {
    inspected.parts += snapshot.parts.len() as u64;
    inspected.bytes += snapshot.parts.iter().map(|p| p.size).sum::<u64>();
    inspected.bytes += snapshot.chunks.iter().map(|c| c.bytes).sum::<u64>();
    let mut seen = 0u64;
    let mut counting = |p: &SpanProbe<'_>| {
        seen += 1;
        probe(p)
    };
    let report = store.scan_spans_where(&snapshot, &mut counting, f)?;
    inspected.spans += seen;
    warnings.extend(report.warnings);
    Ok(())
}

/// The per-part (and head) pieces of a snapshot, head first, parts in their order.
fn pieces(snapshot: &Snapshot) -> impl Iterator<Item = (Snapshot, u64)> + '_ {
    let head = Snapshot { tenant: snapshot.tenant.clone(), chunks: snapshot.chunks.clone(), parts: Vec::new() };
    std::iter::once((head, u64::MAX)).chain(snapshot.parts.iter().map(|p| {
        let newest = p.of(&snapshot.tenant).map_or(0, |t| t.max_time);
        (Snapshot { tenant: snapshot.tenant.clone(), chunks: Vec::new(), parts: vec![Arc::clone(p)] }, newest)
    }))
}

fn span_by_span(
    store: &Store,
    snapshot: &Snapshot,
    search: &Search,
    deadline: &Deadline,
    inspected: &mut Inspected,
    warnings: &mut Vec<String>,
) -> Result<Vec<([u8; 16], Matched)>, TempoError> {
    let hints = search.query.hints();
    let mut snapshot = copy(snapshot);
    // Each selected span has every hinted service: parts and chunks without one are skipped.
    if !hints.service_names.is_empty() {
        let has_all = |services: &std::collections::BTreeSet<(String, Option<String>)>| {
            hints.service_names.iter().all(|s| services.iter().any(|(name, _)| name == s))
        };
        let tenant = snapshot.tenant.clone();
        snapshot.chunks.retain(|c| has_all(&c.services));
        snapshot.parts.retain(|p| p.of(&tenant).is_some_and(|t| has_all(&t.services)));
    }
    // Shared by the span callback, which adds to it, and the stop test between a part's batches.
    let found: RefCell<HashMap<[u8; 16], Matched>> = RefCell::new(HashMap::new());
    let mut to_model = ToModel::default();
    for (piece, newest) in pieces(&snapshot) {
        deadline.check()?;
        if enough(&found.borrow(), search.limit, newest) {
            break;
        }
        // The cheap conditions first: a span refused here is never built.
        let mut probe = |p: &SpanProbe<'_>| {
            search.range.overlaps(p.start_unix_nano, p.end_unix_nano.max(p.start_unix_nano))
                && hints
                    .min_span_duration_nanos
                    .is_none_or(|min| p.end_unix_nano.saturating_sub(p.start_unix_nano) >= min)
                && hints.service_names.iter().all(|s| p.service_name == Some(s.as_str()))
        };
        let mut evaluate = |row: &SpanRow| {
            let mut found = found.borrow_mut();
            if found.len() >= MAX_TRACKED_TRACES && !found.contains_key(&row.trace_id) {
                return;
            }
            let trace = traceql::Trace { spans: vec![to_model.span(row)] };
            if search.query.matches(&trace).is_some() {
                found.entry(row.trace_id).or_default().add(row, search.spss);
            }
        };
        match piece.parts.as_slice() {
            // A part: its span index decides which rows are read at all.
            [part] => {
                inspected.parts += 1;
                inspected.bytes += part.size;
                let mut keep = |s: &IndexedSpan<'_>| keeps_indexed(s, search, &hints);
                let mut report = ScanReport::default();
                let mut exact = |row: &SpanRow| {
                    let p = SpanProbe {
                        trace_id: None,
                        service_name: row.resource.service_name.as_deref(),
                        start_unix_nano: row.start_unix_nano,
                        end_unix_nano: row.end_unix_nano,
                    };
                    if probe(&p) {
                        evaluate(row);
                    }
                };
                // The part's spans come newest first: the same test between its batches.
                let mut stop = |newest: u64| enough(&found.borrow(), search.limit, newest);
                inspected.spans +=
                    store.search_part(part, &snapshot.tenant, &mut keep, &mut stop, &mut exact, &mut report)?;
                warnings.extend(report.warnings);
            }
            _ => scan_one(store, piece, inspected, warnings, &mut probe, evaluate)?,
        }
        to_model.clear();
    }
    let found = found.into_inner();
    if found.len() >= MAX_TRACKED_TRACES {
        warnings.push(format!("more than {MAX_TRACKED_TRACES} traces matched; narrow the time range or the query"));
    }
    inspected.traces += found.len() as u64;
    let mut found: Vec<([u8; 16], Matched)> = found.into_iter().collect();
    found.sort_by_key(|(id, m)| std::cmp::Reverse((m.first_start, *id)));
    found.truncate(search.limit);
    Ok(found)
}

/// Whether `found` holds `limit` traces all newer than `newest`, the latest start of the spans
/// not read yet: they can only add older traces (or older spans to these), so reading stops.
fn enough(found: &HashMap<[u8; 16], Matched>, limit: usize, newest: u64) -> bool {
    if found.len() < limit {
        return false;
    }
    let mut starts: Vec<u64> = found.values().map(|m| m.first_start).collect();
    starts.sort_unstable_by(|a, b| b.cmp(a));
    starts.get(limit - 1).is_some_and(|&kth| newest < kth)
}

/// Whether an indexed span may be selected by a span-local query, by its hints: in range, long
/// enough, of every hinted service, with every hinted `http.route` (the one span attribute the
/// index keeps). Values the index does not know pass; the span is then checked exactly.
fn keeps_indexed(s: &IndexedSpan<'_>, search: &Search, hints: &traceql::Hints) -> bool {
    let known_equal = |value: Option<Option<&str>>, want: &str| match value {
        None => false,
        Some(None) => true,
        Some(Some(v)) => v == want,
    };
    search.range.overlaps(s.start_unix_nano, s.end_unix_nano_max.max(s.start_unix_nano))
        && hints.min_span_duration_nanos.is_none_or(|min| s.end_unix_nano_max.saturating_sub(s.start_unix_nano) >= min)
        && hints.service_names.iter().all(|n| known_equal(s.service_name, n))
        && hints
            .span_string_attributes
            .iter()
            .filter(|(k, _)| k == "http.route")
            .all(|(_, v)| known_equal(s.http_route, v))
}

/// What the first pass of the whole-trace path keeps of a trace.
#[derive(Debug, Default)]
struct Summary {
    start: u64,
    /// Bit `i`: the trace has a span of the `i`-th hinted service (the first 64).
    services: u64,
    longest: u64,
}

fn whole_traces(
    store: &Store,
    snapshot: &Snapshot,
    search: &Search,
    deadline: &Deadline,
    inspected: &mut Inspected,
    warnings: &mut Vec<String>,
) -> Result<Vec<([u8; 16], Matched)>, TempoError> {
    let hints = search.query.hints();
    // Summaries by trace key (the first 8 bytes of the id), from the parts' span indexes
    // where they have one, else from a pass that builds no rows.
    let mut summaries: HashMap<u64, Summary> = HashMap::new();
    let mut full = false;
    let hinted: Vec<&str> = hints.service_names.iter().take(64).map(String::as_str).collect();
    let mut note = |key: u64, service: Option<&str>, start: u64, end: u64| {
        if !search.range.overlaps(start, end.max(start)) {
            return;
        }
        let known = summaries.len();
        let s = match summaries.get_mut(&key) {
            Some(s) => s,
            None if known >= MAX_TRACKED_TRACES => {
                full = true;
                return;
            }
            None => summaries.entry(key).or_insert(Summary { start, ..Summary::default() }),
        };
        s.start = s.start.min(start);
        s.longest = s.longest.max(end.saturating_sub(start));
        if let Some(name) = service
            && let Some(i) = hinted.iter().position(|h| *h == name)
        {
            s.services |= 1 << i;
        }
    };
    for (piece, _) in pieces(snapshot) {
        deadline.check()?;
        if let [part] = piece.parts.as_slice() {
            match store.part_index(part, &snapshot.tenant) {
                Ok(Some(index)) => {
                    inspected.parts += 1;
                    inspected.bytes += part.size;
                    inspected.spans += index.len() as u64;
                    for i in 0..index.len() {
                        let s = index.span(i);
                        // An unknown service is kept as none: it only weakens the pruning.
                        note(index.trace_key[i], s.service_name.flatten(), s.start_unix_nano, s.end_unix_nano_max);
                    }
                    continue;
                }
                // A part of the first layout, or one gone or damaged: the scan below reads it,
                // skips it, or sets it aside and says so.
                Ok(None) => {}
                Err(err) if err.is_not_found() || matches!(err, crate::store::parts::PartError::Damaged { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        let mut probe = |p: &SpanProbe<'_>| {
            if let Some(id) = &p.trace_id {
                note(crate::store::parts::trace_key(id), p.service_name, p.start_unix_nano, p.end_unix_nano);
            }
            false
        };
        scan_one(store, piece, inspected, warnings, &mut probe, |_| {})?;
    }
    if full {
        warnings.push(format!("more than {MAX_TRACKED_TRACES} traces in the time range; only the first were searched"));
    }
    // Traces that can meet the hints, newest first.
    let mut candidates: Vec<(u64, u64)> = summaries
        .into_iter()
        .filter(|(_, s)| {
            hints.min_span_duration_nanos.is_none_or(|min| s.longest >= min)
                && s.services.count_ones() as usize == hinted.len()
        })
        .map(|(id, s)| (id, s.start))
        .collect();
    candidates.sort_by_key(|(id, start)| std::cmp::Reverse((*start, *id)));
    let batch = (search.limit * 2).max(64);
    let mut out = Vec::new();
    let mut to_model = ToModel::default();
    for chunk in candidates.chunks(batch) {
        deadline.check()?;
        let keys: HashSet<u64> = chunk.iter().map(|(key, _)| *key).collect();
        let collected = collect(store, copy(snapshot), &keys, None, MAX_EVAL_TRACE_SPANS, deadline)?;
        warnings.extend(collected.warnings.iter().cloned());
        if !collected.truncated.is_empty() {
            warnings.push(format!(
                "{} traces have more than {MAX_EVAL_TRACE_SPANS} spans; only their first spans were searched",
                collected.truncated.len()
            ));
        }
        // Newest first; a key may stand for several traces.
        let mut traces: Vec<(&[u8; 16], &Vec<SpanRow>)> = collected.spans.iter().collect();
        traces.sort_by_key(|(id, rows)| {
            std::cmp::Reverse((rows.iter().map(|r| r.start_unix_nano).min().unwrap_or(0), **id))
        });
        for (id, rows) in traces {
            let rows: Vec<&SpanRow> = rows
                .iter()
                .filter(|r| search.range.overlaps(r.start_unix_nano, r.end_unix_nano.max(r.start_unix_nano)))
                .collect();
            inspected.traces += 1;
            let trace = traceql::Trace { spans: rows.iter().map(|r| to_model.span(r)).collect() };
            let Some(sets) = search.query.matches(&trace) else { continue };
            let mut matched = Matched::default();
            for set in sets {
                for i in set.spans {
                    if let Some(row) = rows.get(i) {
                        matched.add(row, search.spss);
                    }
                }
            }
            out.push((*id, matched));
            if out.len() >= search.limit {
                return Ok(out);
            }
        }
        to_model.clear();
    }
    Ok(out)
}

/// A found trace as the answer lists it: root service and name (the span with no parent in
/// the trace, the earliest if several — as `traceql::root_span` decides), start, duration,
/// spans and errors per service.
fn describe(id: [u8; 16], rows: &[SpanRow], matched: Matched) -> TraceSearchMetadata {
    let ids: HashSet<[u8; 8]> = rows.iter().map(|r| r.span_id).collect();
    let root = rows
        .iter()
        .filter(|r| r.parent_span_id.is_none_or(|p| !ids.contains(&p)))
        .min_by_key(|r| (r.start_unix_nano, r.span_id));
    let start = rows.iter().map(|r| r.start_unix_nano).min().unwrap_or(matched.first_start);
    let end = rows.iter().map(|r| r.end_unix_nano.max(r.start_unix_nano)).max().unwrap_or(start);
    let mut stats: BTreeMap<String, ServiceStats> = BTreeMap::new();
    for r in rows {
        let name = r.resource.service_name.as_deref().unwrap_or("");
        let entry = match stats.get_mut(name) {
            Some(e) => e,
            None => stats.entry(name.to_string()).or_default(),
        };
        entry.span_count = entry.span_count.saturating_add(1);
        if r.status_code == 2 {
            entry.error_count = entry.error_count.saturating_add(1);
        }
    }
    let set = matched.span_set();
    TraceSearchMetadata {
        trace_id: hex::encode(id),
        root_service_name: root
            .map(|r| r.resource.service_name.as_deref().unwrap_or("").to_string())
            .unwrap_or_else(|| NO_ROOT.to_string()),
        root_trace_name: root.map(|r| r.name.to_string()).unwrap_or_default(),
        start_time_unix_nano: start,
        duration_ms: u32::try_from(end.saturating_sub(start) / 1_000_000).unwrap_or(u32::MAX),
        span_set: Some(set.clone()),
        span_sets: vec![set],
        service_stats: stats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_parameters_become_one_traceql_filter() {
        let q = query_text(
            None,
            Some(r#"service.name=shop name="GET /cart" http.status_code=500 note="a \"b\"""#),
            Some("100ms"),
            Some("2s"),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"{ resource.service.name = "shop" && name = "GET /cart" && (."http.status_code" = "500" || ."http.status_code" = 500) && ."note" = "a \"b\"" && duration >= 100ms && duration <= 2s }"#
        );
        traceql::parse(&q).expect("the generated query parses");
        assert_eq!(query_text(None, None, None, None).unwrap(), "{  }");
        assert_eq!(query_text(Some("{ kind = server }"), Some("a=b"), None, None).unwrap(), "{ kind = server }");
        for (tags, min) in [(Some("novalue"), None), (Some("a=\"open"), None), (None, Some("1s} || {true"))] {
            assert!(query_text(None, tags, min, None).is_err(), "{tags:?} {min:?}");
        }
    }

    #[test]
    fn values_convert_as_traceql_compares_them() {
        let v = |x| AnyValue { value: Some(x) };
        assert_eq!(model_value(&v(any_value::Value::IntValue(3))), Some(traceql::Value::Int(3)));
        assert_eq!(model_value(&v(any_value::Value::StringValue("a".into()))), Some(traceql::Value::Str("a".into())));
        assert_eq!(model_value(&v(any_value::Value::BytesValue(vec![1]))), None);
    }
}
