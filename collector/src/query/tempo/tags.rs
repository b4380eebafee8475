//! Tag names and values: `/api/v2/search/tags` (names by scope), `/api/search/tags` (flat
//! names), `/api/v2/search/tag/<tag>/values` (typed values of a scoped TraceQL identifier,
//! narrowed by `q`) and `/api/search/tag/<tag>/values` (values of an unscoped name as text).
//!
//! Names and values come from the spans whose start meets `start`/`end` (parts outside it are
//! not opened). Outputs are bounded: at most `limit` names per scope or values
//! ([`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and [`MAX_ANSWER_BYTES`] of text; past either the
//! scan stops early.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use serde::{Deserialize, Serialize};

use super::proto::MetadataMetrics;
use super::search::ToModel;
use super::{Deadline, QUERY_TIMEOUT, TempoError, TimeRange, blocking, bounded};
use crate::model::{Rows, SpanRow, attrs};
use crate::query::{ApiState, tenant, warning_headers};
use crate::signal::Signal;
use crate::store::Store;
use crate::store::span_index::IndexedSpan;
use crate::tenant::Tenant;

/// Names per scope, or values, when `limit` is absent (Grafana asks for 5000 names).
pub const DEFAULT_LIMIT: usize = 5_000;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 50_000;
/// Bytes of names or values an answer holds at most.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;
/// Spans read at most per answer, newest parts first (the scan stops after the batch that
/// passes it).
pub const MAX_SCAN_SPANS: usize = 250_000;
/// Longest value kept; longer ones are left out (Tempo skips long values too).
const MAX_VALUE_BYTES: usize = 1024;

/// TraceQL intrinsics this API evaluates, listed under the `intrinsic` scope.
pub const INTRINSICS: [&str; 8] =
    ["duration", "kind", "name", "rootName", "rootServiceName", "status", "statusMessage", "traceDuration"];

#[derive(Debug, Default, Deserialize)]
pub struct TagParams {
    scope: Option<String>,
    q: Option<String>,
    limit: Option<String>,
    #[serde(rename = "maxStaleValues")]
    _max_stale_values: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopeTags {
    name: &'static str,
    tags: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TagsV2 {
    scopes: Vec<ScopeTags>,
    metrics: MetadataMetrics,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TagsV1 {
    tag_names: Vec<String>,
    metrics: MetadataMetrics,
}

/// One typed value (`tempopb.TagValue`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TagValue {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ValuesV2 {
    tag_values: Vec<TagValue>,
    metrics: MetadataMetrics,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ValuesV1 {
    tag_values: Vec<String>,
    metrics: MetadataMetrics,
}

/// A set that stops growing at a count or a byte total.
#[derive(Debug)]
struct Bounded<T: Ord> {
    items: BTreeSet<T>,
    bytes: usize,
    limit: usize,
}

impl<T: Ord> Bounded<T> {
    fn new(limit: usize) -> Self {
        Bounded { items: BTreeSet::new(), bytes: 0, limit }
    }
    fn full(&self) -> bool {
        self.items.len() >= self.limit || self.bytes >= MAX_ANSWER_BYTES
    }
    fn insert(&mut self, item: T, len: usize) {
        if !self.full() && self.items.insert(item) {
            self.bytes += len;
        }
    }
}

/// A `q` narrowing the spans: only span-local filters can be applied span by span; any other
/// query (or `{}`) leaves every span in.
fn narrowing(q: Option<&str>) -> Result<Option<traceql::Query>, TempoError> {
    let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) else { return Ok(None) };
    let query = traceql::parse(q)?;
    Ok(query.span_local().then_some(query))
}

/// Calls `f` for each span of the tenant in range that `q` selects, until `f` says stop.
fn each_span(
    store: &Store,
    tenant: &Tenant,
    range: TimeRange,
    q: Option<&traceql::Query>,
    mut f: impl FnMut(&SpanRow) -> bool,
) -> Result<(Vec<String>, u64), TempoError> {
    let deadline = Deadline::after(QUERY_TIMEOUT);
    let mut snapshot = store.snapshot(tenant, Signal::Traces);
    range.prune(&mut snapshot);
    let newest = |p: &Arc<crate::store::parts::PartMeta>| p.of(tenant).map_or(0, |t| t.max_time);
    snapshot.parts.sort_by_key(|p| std::cmp::Reverse(newest(p)));
    let mut bytes = 0;
    let mut to_model = ToModel::default();
    let go = std::cell::Cell::new(true);
    let mut seen = 0usize;
    let mut handle = |row: &SpanRow, to_model: &mut ToModel| {
        if !go.get() || !range.overlaps(row.start_unix_nano, row.end_unix_nano.max(row.start_unix_nano)) {
            return;
        }
        if let Some(q) = q
            && q.matches(&traceql::Trace { spans: vec![to_model.span(row)] }).is_none()
        {
            return;
        }
        bytes += (row.attributes.len() + row.name.len()) as u64;
        go.set(f(row));
    };
    let mut report = crate::store::ScanReport::default();
    for chunk in &snapshot.chunks {
        if let Rows::Spans(spans) = &chunk.rows {
            seen += spans.len();
            spans.iter().for_each(|row| handle(row, &mut to_model));
            // Resources are cached by address: valid while their rows are.
            to_model.clear();
        }
    }
    // Parts newest first, through their span indexes: only the rows in range are built, a
    // row group at a time.
    for part in &snapshot.parts {
        if !go.get() || seen > MAX_SCAN_SPANS {
            break;
        }
        deadline.check()?;
        let mut keep =
            |s: &IndexedSpan<'_>| range.overlaps(s.start_unix_nano, s.end_unix_nano_max.max(s.start_unix_nano));
        let mut each = |row: &SpanRow| handle(row, &mut to_model);
        // Within a part too, reading stops once the values are complete.
        let mut stop = |_newest: u64| !go.get();
        seen += store.search_part(part, tenant, &mut keep, &mut stop, &mut each, &mut report)? as usize;
        to_model.clear();
    }
    if seen > MAX_SCAN_SPANS && go.get() {
        report.warnings.push(format!(
            "tags and values are from the newest {seen} spans in the time range; narrow it to see older ones"
        ));
    }
    Ok((report.warnings, bytes))
}

fn parse_common(p: &TagParams, default: usize) -> Result<(usize, TimeRange, Option<traceql::Query>), TempoError> {
    Ok((
        bounded("limit", p.limit.as_deref(), default, MAX_LIMIT)?,
        TimeRange::parse(p.start.as_deref(), p.end.as_deref())?,
        narrowing(p.q.as_deref())?,
    ))
}

/// Resource and span attribute names, the warnings of damaged parts and the bytes inspected.
type Names = (Bounded<String>, Bounded<String>, Vec<String>, u64);

/// Resource and span attribute names (empty for a scope not asked for).
fn names(
    store: &Store,
    tenant: &Tenant,
    p: &TagParams,
    want_resource: bool,
    want_span: bool,
) -> Result<Names, TempoError> {
    let (limit, range, q) = parse_common(p, DEFAULT_LIMIT)?;
    let mut resource = Bounded::new(limit);
    let mut span = Bounded::new(limit);
    let mut seen_resources: HashSet<usize> = HashSet::new();
    let (warnings, bytes) = each_span(store, tenant, range, q.as_ref(), |row| {
        if want_resource && seen_resources.insert(Arc::as_ptr(&row.resource) as usize) {
            for kv in attrs::decode_lossy(&row.resource.attributes) {
                let len = kv.key.len();
                resource.insert(kv.key, len);
            }
        }
        if want_span && !row.attributes.is_empty() {
            for kv in attrs::decode_lossy(&row.attributes) {
                let len = kv.key.len();
                span.insert(kv.key, len);
            }
        }
        (want_resource && !resource.full()) || (want_span && !span.full())
    })?;
    Ok((resource, span, warnings, bytes))
}

/// `GET /api/v2/search/tags`.
pub async fn names_v2(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(p): Query<TagParams>,
) -> Result<Response, TempoError> {
    let tenant = tenant(&headers)?;
    let scope = p.scope.clone().unwrap_or_default();
    let (want_resource, want_span, want_intrinsic) = match scope.as_str() {
        "" | "all" | "none" => (true, true, true),
        "resource" => (true, false, false),
        "span" => (false, true, false),
        "intrinsic" => (false, false, true),
        other => {
            return Err(TempoError::BadRequest(format!(
                "invalid scope {:?}: expected resource, span, intrinsic or none",
                other.chars().take(40).collect::<String>()
            )));
        }
    };
    let store = Arc::clone(&state.store);
    let (resource, span, warnings, bytes) = if want_resource || want_span {
        blocking(move || names(&store, &tenant, &p, want_resource, want_span)).await?
    } else {
        (Bounded::new(0), Bounded::new(0), Vec::new(), 0)
    };
    let mut scopes = Vec::new();
    if want_resource {
        scopes.push(ScopeTags { name: "resource", tags: resource.items.into_iter().collect() });
    }
    if want_span {
        scopes.push(ScopeTags { name: "span", tags: span.items.into_iter().collect() });
    }
    if want_intrinsic {
        scopes.push(ScopeTags { name: "intrinsic", tags: INTRINSICS.iter().map(|s| s.to_string()).collect() });
    }
    let mut response =
        axum::Json(TagsV2 { scopes, metrics: MetadataMetrics { inspected_bytes: bytes } }).into_response();
    warning_headers(&mut response, &warnings);
    Ok(response)
}

/// `GET /api/search/tags`: resource and span attribute names together.
pub async fn names_v1(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(p): Query<TagParams>,
) -> Result<Response, TempoError> {
    let tenant = tenant(&headers)?;
    let store = Arc::clone(&state.store);
    let (resource, span, warnings, bytes) = blocking(move || names(&store, &tenant, &p, true, true)).await?;
    let mut all: BTreeSet<String> = resource.items;
    all.extend(span.items);
    let mut response = axum::Json(TagsV1 {
        tag_names: all.into_iter().collect(),
        metrics: MetadataMetrics { inspected_bytes: bytes },
    })
    .into_response();
    warning_headers(&mut response, &warnings);
    Ok(response)
}

/// What a tag-values request reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tag {
    Name,
    Status,
    Kind,
    StatusMessage,
    RootName,
    RootServiceName,
    /// An attribute: in the span's list, the resource's, or (unscoped `.x`, v1 names) either.
    Attr {
        span: bool,
        resource: bool,
        key: String,
    },
}

/// A v2 tag: a scoped TraceQL identifier or an intrinsic.
fn parse_v2_tag(tag: &str) -> Result<Tag, TempoError> {
    let attr = |span, resource, key: &str| {
        if key.is_empty() {
            Err(TempoError::BadRequest(format!("invalid tag {tag:?}: the attribute name is empty")))
        } else {
            Ok(Tag::Attr { span, resource, key: key.to_string() })
        }
    };
    match tag {
        "name" | "span:name" => Ok(Tag::Name),
        "status" | "span:status" => Ok(Tag::Status),
        "kind" | "span:kind" => Ok(Tag::Kind),
        "statusMessage" | "span:statusMessage" => Ok(Tag::StatusMessage),
        "rootName" | "trace:rootName" => Ok(Tag::RootName),
        "rootServiceName" | "trace:rootService" => Ok(Tag::RootServiceName),
        _ => {
            if let Some(k) = tag.strip_prefix("span.") {
                attr(true, false, k)
            } else if let Some(k) = tag.strip_prefix("resource.") {
                attr(false, true, k)
            } else if let Some(k) = tag.strip_prefix('.') {
                attr(true, true, k)
            } else {
                Err(TempoError::BadRequest(format!(
                    "invalid tag {:?}: use a scoped attribute (resource.x, span.x, .x) or an intrinsic (name, status, kind, statusMessage, rootName, rootServiceName)",
                    tag.chars().take(80).collect::<String>()
                )))
            }
        }
    }
}

fn typed(value: &AnyValue) -> Option<TagValue> {
    let (kind, value) = match value.value.as_ref()? {
        any_value::Value::StringValue(s) => ("string", s.clone()),
        any_value::Value::IntValue(i) => ("int", i.to_string()),
        any_value::Value::DoubleValue(d) => ("float", d.to_string()),
        any_value::Value::BoolValue(b) => ("bool", b.to_string()),
        _ => return None,
    };
    (value.len() <= MAX_VALUE_BYTES).then_some(TagValue { kind, value })
}

fn keyword(value: &str) -> TagValue {
    TagValue { kind: "keyword", value: value.to_string() }
}

/// The distinct values of `tag`.
fn values(
    store: &Store,
    tenant: &Tenant,
    p: &TagParams,
    tag: Tag,
) -> Result<(Bounded<TagValue>, Vec<String>, u64), TempoError> {
    let (limit, range, q) = parse_common(p, DEFAULT_LIMIT)?;
    let mut out = Bounded::new(limit);
    // Service names without a narrowing query: from the catalog's per-part service sets (of
    // the parts that meet the range) and the head's, without a scan.
    if q.is_none() && tag == (Tag::Attr { span: false, resource: true, key: "service.name".into() }) {
        let mut snapshot = store.snapshot(tenant, Signal::Traces);
        range.prune(&mut snapshot);
        let services = snapshot
            .chunks
            .iter()
            .flat_map(|c| c.services.iter())
            .chain(snapshot.parts.iter().filter_map(|p| p.of(tenant)).flat_map(|t| t.services.iter()));
        for (name, _) in services {
            out.insert(TagValue { kind: "string", value: name.clone() }, name.len());
        }
        return Ok((out, Vec::new(), 0));
    }
    // Root intrinsics need whole traces: the spans without a parent stand for the roots.
    let (warnings, bytes) = each_span(store, tenant, range, q.as_ref(), |row| {
        let mut add = |v: TagValue| {
            let len = v.value.len();
            out.insert(v, len);
        };
        match &tag {
            Tag::Name => add(TagValue { kind: "string", value: row.name.to_string() }),
            Tag::StatusMessage if !row.status_message.is_empty() => {
                add(TagValue { kind: "string", value: row.status_message.to_string() })
            }
            Tag::StatusMessage => {}
            Tag::Status => add(keyword(match row.status_code {
                1 => "ok",
                2 => "error",
                _ => "unset",
            })),
            Tag::Kind => add(keyword(match row.kind {
                1 => "internal",
                2 => "server",
                3 => "client",
                4 => "producer",
                5 => "consumer",
                _ => "unspecified",
            })),
            Tag::RootName if row.parent_span_id.is_none() => {
                add(TagValue { kind: "string", value: row.name.to_string() })
            }
            Tag::RootServiceName if row.parent_span_id.is_none() => {
                if let Some(s) = &row.resource.service_name {
                    add(TagValue { kind: "string", value: s.to_string() });
                }
            }
            Tag::RootName | Tag::RootServiceName => {}
            Tag::Attr { span, resource, key } => {
                let mut found = false;
                if *span && !row.attributes.is_empty() {
                    let list = attrs::decode_lossy(&row.attributes);
                    if let Some(v) = attrs::find(&list, key).and_then(typed) {
                        found = true;
                        add(v);
                    }
                }
                if *resource && !found {
                    if key == "service.name" {
                        if let Some(s) = &row.resource.service_name {
                            add(TagValue { kind: "string", value: s.to_string() });
                        }
                    } else {
                        let list = attrs::decode_lossy(&row.resource.attributes);
                        if let Some(v) = attrs::find(&list, key).and_then(typed) {
                            add(v);
                        }
                    }
                }
            }
        }
        !out.full()
    })?;
    Ok((out, warnings, bytes))
}

/// `GET /api/v2/search/tag/<tag>/values`.
pub async fn values_v2(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(tag): Path<String>,
    Query(p): Query<TagParams>,
) -> Result<Response, TempoError> {
    let tenant = tenant(&headers)?;
    let tag = parse_v2_tag(&tag)?;
    let store = Arc::clone(&state.store);
    let (values, warnings, bytes) = blocking(move || values(&store, &tenant, &p, tag)).await?;
    let mut response = axum::Json(ValuesV2 {
        tag_values: values.items.into_iter().collect(),
        metrics: MetadataMetrics { inspected_bytes: bytes },
    })
    .into_response();
    warning_headers(&mut response, &warnings);
    Ok(response)
}

/// `GET /api/search/tag/<tag>/values`: an unscoped name, looked up on spans then resources.
pub async fn values_v1(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(tag): Path<String>,
    Query(p): Query<TagParams>,
) -> Result<Response, TempoError> {
    let tenant = tenant(&headers)?;
    if tag.is_empty() {
        return Err(TempoError::BadRequest("invalid tag \"\": the name is empty".into()));
    }
    let tag = match tag.as_str() {
        "name" => Tag::Name,
        "status.code" | "status" => Tag::Status,
        "kind" => Tag::Kind,
        _ => Tag::Attr { span: true, resource: true, key: tag },
    };
    let store = Arc::clone(&state.store);
    let (values, warnings, bytes) = blocking(move || values(&store, &tenant, &p, tag)).await?;
    let texts: BTreeSet<String> = values.items.into_iter().map(|v| v.value).collect();
    let mut response = axum::Json(ValuesV1 {
        tag_values: texts.into_iter().collect(),
        metrics: MetadataMetrics { inspected_bytes: bytes },
    })
    .into_response();
    warning_headers(&mut response, &warnings);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_tags_are_scoped_identifiers_or_intrinsics() {
        assert_eq!(parse_v2_tag("name").unwrap(), Tag::Name);
        assert_eq!(
            parse_v2_tag("resource.service.name").unwrap(),
            Tag::Attr { span: false, resource: true, key: "service.name".into() }
        );
        assert_eq!(
            parse_v2_tag(".http.route").unwrap(),
            Tag::Attr { span: true, resource: true, key: "http.route".into() }
        );
        let err = parse_v2_tag("http.route").unwrap_err();
        assert!(err.to_string().contains("scoped attribute"), "{err}");
        assert!(parse_v2_tag("span.").is_err());
    }

    #[test]
    fn bounded_sets_stop_at_count_and_bytes() {
        let mut b = Bounded::new(2);
        b.insert("a".to_string(), 1);
        b.insert("a".to_string(), 1);
        b.insert("b".to_string(), 1);
        b.insert("c".to_string(), 1);
        assert_eq!(b.items.len(), 2);
        let mut b = Bounded::new(100);
        b.insert("x".repeat(10), MAX_ANSWER_BYTES);
        b.insert("y".to_string(), 1);
        assert_eq!(b.items.len(), 1);
    }
}
