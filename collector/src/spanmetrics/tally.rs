//! Counting one request's spans, before the store has it: the counts of each distinct label
//! set of the request, with the series each one goes to.
//!
//! Two steps, so that the tenant's table is locked once per request and never per span:
//! first every span is counted into the request's own small list of label sets, its label
//! values borrowed from the request (a hash, a lookup, a comparison — no allocation, except
//! for a value that is not a string, written once into a reused buffer); then each distinct
//! label set is resolved against the tenant's table, where a known one costs a reference
//! count and only a new one is copied out of the request. The resolved tally owns what it
//! holds, so the request can become rows and go to the store; [`SpanMetrics::record`] adds it
//! once the store has acknowledged it.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::Span;

use super::{PrehashedMap, SeriesKey, SpanKind, SpanMetrics, StatusCode, now_unix_nano};
use crate::tenant::Tenant;

/// A request's spans, counted per series, for [`SpanMetrics::record`].
#[derive(Debug)]
pub struct Tally {
    pub(super) tenant: Tenant,
    pub(super) entries: Vec<Entry>,
    /// `entries.len()` runs of one count per bucket (the bounds and `+Inf`).
    pub(super) bucket_counts: Vec<u64>,
}

impl Tally {
    /// Spans counted.
    pub fn spans(&self) -> u64 {
        self.entries.iter().map(|e| e.calls).sum()
    }
}

/// The spans of one label set of a request.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) hash: u64,
    pub(super) target: Target,
    pub(super) calls: u64,
    pub(super) errors: u64,
    pub(super) sum_nanos: u128,
}

/// Where an entry's spans are counted.
#[derive(Debug)]
pub(super) enum Target {
    Series(Arc<SeriesKey>),
    /// The tenant's overflow series: a limit was reached when the label set was resolved.
    Overflow,
}

/// A label value as the tally holds it: borrowed from the request or the settings, or written
/// into the tally's buffer (values that are not strings), or missing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Text<'a> {
    Borrowed(&'a str),
    Written(u32, u32),
    Absent,
}

impl<'a> Text<'a> {
    fn get<'s>(self, written: &'s str) -> Option<&'s str>
    where
        'a: 's,
    {
        match self {
            Text::Borrowed(s) => Some(s),
            Text::Written(from, to) => Some(&written[from as usize..to as usize]),
            Text::Absent => None,
        }
    }
}

/// One distinct label set of the request while it is counted.
#[derive(Debug)]
struct Local<'a> {
    hash: u64,
    service: &'a str,
    span_name: &'a str,
    kind: SpanKind,
    status: StatusCode,
    /// Where its dimension values start in `Counting::texts`.
    texts: usize,
    calls: u64,
    errors: u64,
    sum_nanos: u128,
}

/// The state of counting one request.
#[derive(Debug)]
struct Counting<'a> {
    locals: Vec<Local<'a>>,
    by_hash: PrehashedMap<u32>,
    /// Every local's dimension values, `dimensions` per local.
    texts: Vec<Text<'a>>,
    bucket_counts: Vec<u64>,
    written: String,
}

/// An attribute's value as the tally reads it, from a decoded request or straight from its
/// protobuf bytes (`model::span_wire`).
#[derive(Debug, Clone)]
pub(crate) enum Attr<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// Bytes, an array or a map.
    Other(std::borrow::Cow<'a, AnyValue>),
    /// An attribute without a value, or with a profile string-table reference (meaningless in
    /// a span).
    Empty,
}

impl<'a> Attr<'a> {
    pub(crate) fn of(value: Option<&'a AnyValue>) -> Attr<'a> {
        match value.and_then(|v| v.value.as_ref().map(|inner| (v, inner))) {
            None => Attr::Empty,
            Some((_, Value::StringValue(s))) => Attr::Str(s),
            Some((_, Value::BoolValue(b))) => Attr::Bool(*b),
            Some((_, Value::IntValue(i))) => Attr::Int(*i),
            Some((_, Value::DoubleValue(d))) => Attr::Double(*d),
            Some((v, Value::BytesValue(_) | Value::ArrayValue(_) | Value::KvlistValue(_))) => {
                Attr::Other(std::borrow::Cow::Borrowed(v))
            }
            Some((_, Value::StringValueStrindex(_))) => Attr::Empty,
        }
    }
}

/// One span as the tally reads it.
pub(crate) trait CountedSpan<'a> {
    /// OTLP `SpanKind` number.
    fn kind(&self) -> i32;
    /// OTLP `Status.code` number.
    fn status_code(&self) -> i32;
    fn name(&self) -> &'a str;
    fn duration_nanos(&self) -> u64;
    /// The first attribute named `key`: `None` when there is none.
    fn attribute(&self, key: &str) -> Option<Attr<'a>>;
}

impl<'a> CountedSpan<'a> for &'a Span {
    fn kind(&self) -> i32 {
        self.kind
    }
    fn status_code(&self) -> i32 {
        self.status.as_ref().map_or(0, |s| s.code)
    }
    fn name(&self) -> &'a str {
        &self.name
    }
    fn duration_nanos(&self) -> u64 {
        self.end_time_unix_nano.saturating_sub(self.start_time_unix_nano)
    }
    fn attribute(&self, key: &str) -> Option<Attr<'a>> {
        find(&self.attributes, key)
    }
}

fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<Attr<'a>> {
    attributes.iter().find(|kv| kv.key == key).map(|kv| Attr::of(kv.value.as_ref()))
}

/// An attribute as text: a string as it is, `true`/`false`, numbers as Go's `AsString`
/// (which the connector keys series with) prints them, bytes as base64, arrays and maps as
/// JSON; an attribute without a value is the empty string.
fn text<'a>(attr: Option<Attr<'a>>, written: &mut String) -> Text<'a> {
    let from = written.len() as u32;
    match attr {
        None => return Text::Absent,
        Some(Attr::Empty) => return Text::Borrowed(""),
        Some(Attr::Str(s)) => return Text::Borrowed(s),
        Some(Attr::Bool(b)) => return Text::Borrowed(if b { "true" } else { "false" }),
        Some(Attr::Int(i)) => {
            let _ = write!(written, "{i}");
        }
        Some(Attr::Double(d)) => {
            let _ = write!(written, "{d}");
        }
        Some(Attr::Other(any)) => match &any.value {
            Some(Value::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode_string(b, written),
            _ => {
                let _ = write!(written, "{}", crate::model::attrs::plain_value(&any));
            }
        },
    }
    Text::Written(from, written.len() as u32)
}

impl SpanMetrics {
    /// Counts the spans of `request` (validated: what the store is about to get) for `tenant`;
    /// `None` when none of them is of a counted kind with a service name. Add the result with
    /// [`SpanMetrics::record`] once the store has acknowledged the request.
    pub fn tally<'a>(&'a self, tenant: &Tenant, request: &'a ExportTraceServiceRequest) -> Option<Tally> {
        self.tally_resources(
            tenant,
            request.resource_spans.iter().map(|rs| {
                let resource: &'a [KeyValue] = rs.resource.as_ref().map_or(&[][..], |r| r.attributes.as_slice());
                (resource, rs.scope_spans.iter().flat_map(|ss| &ss.spans))
            }),
        )
    }

    /// [`SpanMetrics::tally`] of spans grouped by resource: each resource's attributes and its
    /// spans, whatever form they were decoded into.
    pub(crate) fn tally_resources<'a, S, I>(
        &'a self,
        tenant: &Tenant,
        resources: impl IntoIterator<Item = (&'a [KeyValue], I)>,
    ) -> Option<Tally>
    where
        S: CountedSpan<'a>,
        I: IntoIterator<Item = S>,
    {
        let settings = &self.settings;
        let dims = settings.dimensions.len();
        let buckets = settings.bounds_nanos.len() + 1;
        let mut c = Counting {
            locals: Vec::new(),
            by_hash: PrehashedMap::default(),
            texts: Vec::new(),
            bucket_counts: Vec::new(),
            written: String::new(),
        };
        let mut resource_texts: Vec<Text<'a>> = Vec::with_capacity(dims);
        let mut span_texts: Vec<Text<'a>> = Vec::with_capacity(dims);
        let mut unnamed = 0u64;
        let mut last: Option<usize> = None;
        for (resource, spans) in resources {
            let service = match resource.iter().find(|kv| kv.key == "service.name") {
                Some(kv) => match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(s)) => Some(s.as_str()),
                    _ => None,
                },
                None => None,
            };
            let Some(service) = service else {
                unnamed +=
                    spans.into_iter().filter(|s| settings.kinds & SpanKind::from_otlp(s.kind()).bit() != 0).count()
                        as u64;
                continue;
            };
            // The resource's value of each dimension, looked up once for all its spans.
            resource_texts.clear();
            for d in &settings.dimensions {
                let mut t = text(find(resource, &d.name), &mut c.written);
                if t == Text::Absent
                    && let Some(alias) = d.alias
                {
                    t = text(find(resource, alias), &mut c.written);
                }
                resource_texts.push(t);
            }
            for span in spans {
                let kind = SpanKind::from_otlp(span.kind());
                if settings.kinds & kind.bit() == 0 {
                    continue;
                }
                let status = StatusCode::from_otlp(span.status_code());
                // Values written for this span are dropped again if its label set is known.
                let mark = c.written.len();
                span_texts.clear();
                for (d, resource_text) in settings.dimensions.iter().zip(&resource_texts) {
                    let mut t = text(span.attribute(&d.name), &mut c.written);
                    if t == Text::Absent
                        && let Some(alias) = d.alias
                    {
                        t = text(span.attribute(alias), &mut c.written);
                    }
                    if t == Text::Absent {
                        t = *resource_text;
                    }
                    if t == Text::Absent
                        && let Some(default) = &d.default
                    {
                        t = Text::Borrowed(default);
                    }
                    span_texts.push(t);
                }
                let written = c.written.as_str();
                let span_name = span.name();
                let hash = self.hash_key(service, span_name, kind, status, span_texts.iter().map(|t| t.get(written)));
                let same = |l: &Local<'_>| {
                    l.hash == hash
                        && l.kind == kind
                        && l.status == status
                        && l.service == service
                        && l.span_name == span_name
                        && c.texts[l.texts..l.texts + dims]
                            .iter()
                            .zip(&span_texts)
                            .all(|(a, b)| a.get(written) == b.get(written))
                };
                // Spans of one label set often come one after another.
                let found = match last.filter(|&i| same(&c.locals[i])) {
                    Some(i) => Some(i),
                    None => match c.by_hash.get(&hash) {
                        Some(&i) if same(&c.locals[i as usize]) => Some(i as usize),
                        Some(_) => c.locals.iter().position(same),
                        None => None,
                    },
                };
                let i = match found {
                    Some(i) => {
                        c.written.truncate(mark);
                        i
                    }
                    None => {
                        let i = c.locals.len();
                        c.by_hash.entry(hash).or_insert(i as u32);
                        c.locals.push(Local {
                            hash,
                            service,
                            span_name,
                            kind,
                            status,
                            texts: c.texts.len(),
                            calls: 0,
                            errors: 0,
                            sum_nanos: 0,
                        });
                        c.texts.extend_from_slice(&span_texts);
                        c.bucket_counts.resize(c.bucket_counts.len() + buckets, 0);
                        i
                    }
                };
                last = Some(i);
                let duration = span.duration_nanos();
                // `le` semantics: a duration equal to a bound counts in that bound's bucket.
                let bucket = settings.bounds_nanos.partition_point(|b| *b < duration);
                let local = &mut c.locals[i];
                local.calls += 1;
                local.errors += u64::from(status == StatusCode::Error);
                local.sum_nanos += u128::from(duration);
                c.bucket_counts[i * buckets + bucket] += 1;
            }
        }
        if unnamed > 0 {
            self.stats.unnamed_service_spans.fetch_add(unnamed, Relaxed);
        }
        if c.locals.is_empty() {
            return None;
        }
        Some(self.resolve(tenant, c))
    }

    /// The series each of the request's label sets goes to, under one lock of the tenant's
    /// table; new label sets are copied out of the request, unless a limit sends them to the
    /// overflow series anyway.
    fn resolve(&self, tenant: &Tenant, c: Counting<'_>) -> Tally {
        let dims = self.settings.dimensions.len();
        let written = c.written.as_str();
        let table = self.table_or_new(tenant);
        let table = table.lock().unwrap_or_else(|e| e.into_inner());
        let full = table.len() >= self.settings.tenant_limit
            || self.usage.series.load(Relaxed) >= self.settings.max_series as u64
            || self.usage.bytes.load(Relaxed) >= self.settings.max_bytes;
        let entries = c
            .locals
            .iter()
            .map(|l| {
                let texts = &c.texts[l.texts..l.texts + dims];
                let known = table.find(l.hash, |k| {
                    k.kind == l.kind
                        && k.status == l.status
                        && *k.service == *l.service
                        && *k.span_name == *l.span_name
                        && k.dimensions.iter().zip(texts).all(|(a, b)| a.as_deref() == b.get(written))
                });
                let target = match known {
                    Some(key) => Target::Series(Arc::clone(key)),
                    None if full => Target::Overflow,
                    None => Target::Series(Arc::new(SeriesKey {
                        service: l.service.into(),
                        span_name: l.span_name.into(),
                        kind: l.kind,
                        status: l.status,
                        dimensions: texts.iter().map(|t| t.get(written).map(Box::from)).collect(),
                    })),
                };
                Entry { hash: l.hash, target, calls: l.calls, errors: l.errors, sum_nanos: l.sum_nanos }
            })
            .collect();
        Tally { tenant: tenant.clone(), entries, bucket_counts: c.bucket_counts }
    }

    /// Adds a request's tally (from [`SpanMetrics::tally`]), once the store has acknowledged
    /// the request: to the tenant's series, made if new, or to its overflow series past the
    /// limits.
    pub fn record(&self, tally: Tally) {
        self.record_at(tally, now_unix_nano());
    }

    pub(super) fn record_at(&self, tally: Tally, now: u64) {
        let table = self.table_or_new(&tally.tenant);
        let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
        table.add(&tally, now, &self.settings, &self.usage, &self.stats);
    }
}
