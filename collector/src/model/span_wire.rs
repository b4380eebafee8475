//! OTLP trace export requests read straight from their protobuf bytes into span rows.
//!
//! The common case of the ingest path — a valid `ExportTraceServiceRequest` in protobuf — was
//! decoded by prost into owned structs (a `String` for every attribute key and value, a `Vec`
//! for every id), validated, tallied by span metrics, then copied into rows and their JSON
//! text; decoding and copying were a third of the collector's CPU under load, most of it in the
//! allocator. Here the request is read once: ids and strings are borrowed from its bytes,
//! validated and tallied there, and the attributes are written from them as the stored
//! OTLP/JSON text. Only what is rare or comes once per request — resources, scopes, events,
//! links, nested attribute values — still goes through prost.
//!
//! Design: this reader takes only what it can handle exactly as the prost path would. Anything
//! else — a field it does not expect, a singular field sent twice, a wire type that does not
//! match, text that is not UTF-8, malformed bytes, or an item validation would refuse — makes
//! [`Request::read`] or [`Request::acceptable`] answer no, and the caller decodes the request
//! with prost as before (`receive::Ingest::export_protobuf`), whose decoder and validation say
//! what is wrong. A test compares both paths on generated requests, valid and damaged.
//!
//! Field numbers: `opentelemetry/proto/collector/trace/v1/trace_service.proto`,
//! `trace/v1/trace.proto` and `common/v1/common.proto` of OTLP 1.x, as `opentelemetry-proto`
//! 0.33 ships them.

use std::ops::Range;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use prost::Message;

use super::attrs::{self, Scalar};
use super::text::{Pending, Sealed, Text, TextBuf};
use super::{ResourceColumns, ScopeColumns, SpanRow};
use crate::config::Limits;
use crate::receive::validate;
use crate::spanmetrics::{Attr, CountedSpan};

/// A field's value as it is on the wire.
#[derive(Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of one message, in order. Every method answers `None` for bytes this reader does
/// not take (see the module docs).
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn of(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf }
    }

    fn done(&self) -> bool {
        self.buf.is_empty()
    }

    fn varint(&mut self) -> Option<u64> {
        // Most varints on the wire — field keys, lengths of names, ids and attributes — are
        // one byte.
        if let Some(&b) = self.buf.first()
            && b < 0x80
        {
            self.buf = &self.buf[1..];
            return Some(u64::from(b));
        }
        let mut value = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && b > 1 {
                return None;
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    /// The next field's number and value.
    fn field(&mut self) -> Option<(u32, Field<'a>)> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).ok().filter(|n| *n > 0)?;
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                Field::Bytes(self.take(len)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
            // Groups (3, 4) and the undefined types.
            _ => return None,
        };
        Some((number, value))
    }
}

fn bytes(f: Field<'_>) -> Option<&[u8]> {
    match f {
        Field::Bytes(b) => Some(b),
        _ => None,
    }
}

fn text(f: Field<'_>) -> Option<&str> {
    std::str::from_utf8(bytes(f)?).ok()
}

fn varint(f: Field<'_>) -> Option<u64> {
    match f {
        Field::Varint(v) => Some(v),
        _ => None,
    }
}

/// Sets a singular field once; a second occurrence (which protobuf merges) is not taken.
fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

/// An attribute's value as read from the wire.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    /// A `KeyValue` without its value field.
    Absent,
    /// An `AnyValue` with none of its fields set.
    Empty,
    Scalar(Scalar<'a>),
    /// Bytes, an array, a map, a string-table reference, or a non-finite double: the raw
    /// `AnyValue`, decoded by prost where it is needed.
    Nested(&'a [u8]),
}

impl<'a> Value<'a> {
    fn read(buf: &'a [u8]) -> Option<Value<'a>> {
        let mut fields = Fields::of(buf);
        if fields.done() {
            return Some(Value::Empty);
        }
        let (number, field) = fields.field()?;
        // A second field is another member of the oneof, which protobuf lets win.
        if !fields.done() {
            return None;
        }
        let scalar = match number {
            1 => Scalar::Str(text(field)?),
            2 => Scalar::Bool(varint(field)? != 0),
            3 => Scalar::Int(varint(field)? as i64),
            4 => match field {
                Field::Fixed64(bits) if f64::from_bits(bits).is_finite() => Scalar::Double(f64::from_bits(bits)),
                Field::Fixed64(_) => return Some(Value::Nested(buf)),
                _ => return None,
            },
            5..=7 => {
                bytes(field)?;
                return Some(Value::Nested(buf));
            }
            8 => {
                varint(field)?;
                return Some(Value::Nested(buf));
            }
            _ => return None,
        };
        Some(Value::Scalar(scalar))
    }

    /// The value as `attrs::find` gives it: `None` for an absent value.
    fn any(self) -> Option<Option<AnyValue>> {
        match self {
            Value::Absent => Some(None),
            Value::Empty => Some(Some(AnyValue { value: None })),
            Value::Scalar(_) => None,
            Value::Nested(raw) => AnyValue::decode(raw).ok().map(Some),
        }
    }
}

/// One attribute: its key, its value and its `KeyValue` bytes.
#[derive(Debug, Clone, Copy)]
struct Attribute<'a> {
    key: &'a str,
    value: Value<'a>,
    raw: &'a [u8],
}

impl<'a> Attribute<'a> {
    fn read(raw: &'a [u8]) -> Option<Attribute<'a>> {
        let mut fields = Fields::of(raw);
        let (mut key, mut value) = (None, None);
        while !fields.done() {
            match fields.field()? {
                (1, f) => once(&mut key, text(f))?,
                (2, f) => once(&mut value, bytes(f).and_then(Value::read))?,
                // `key_strindex` (profiles only) and anything newer.
                _ => return None,
            }
        }
        Some(Attribute { key: key.unwrap_or(""), value: value.unwrap_or(Value::Absent), raw })
    }

    fn scalar(&self) -> Option<Scalar<'a>> {
        match self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }
}

/// One span, borrowed from the request.
#[derive(Debug)]
struct Span<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent_span_id: &'a [u8],
    trace_state: &'a str,
    flags: u32,
    name: &'a str,
    kind: i32,
    start: u64,
    end: u64,
    /// Its attributes in [`Request::attributes`].
    attributes: Range<usize>,
    /// Whether any attribute is not a plain value (its depth must be checked, its text
    /// written through prost's types).
    nested: bool,
    dropped_attributes_count: u32,
    events: Vec<Event>,
    dropped_events_count: u32,
    links: Vec<Link>,
    dropped_links_count: u32,
    status_code: i32,
    status_message: &'a str,
}

/// The spans of one scope.
#[derive(Debug)]
struct Scope<'a> {
    scope: Option<InstrumentationScope>,
    schema_url: &'a str,
    spans: Range<usize>,
}

/// The scopes of one resource.
#[derive(Debug)]
struct ResourceGroup<'a> {
    resource: Option<Resource>,
    schema_url: &'a str,
    scopes: Vec<Scope<'a>>,
    spans: Range<usize>,
}

/// An `ExportTraceServiceRequest` read in place.
#[derive(Debug, Default)]
pub struct Request<'a> {
    resources: Vec<ResourceGroup<'a>>,
    spans: Vec<Span<'a>>,
    attributes: Vec<Attribute<'a>>,
}

impl<'a> Request<'a> {
    /// Reads a request; `None` when it is not one this reader takes (module docs).
    pub fn read(buf: &'a [u8]) -> Option<Request<'a>> {
        // Vectors sized from the request's length, so they are not regrown span by span (the
        // reallocations were 1.2% of the server's CPU under the ingest benchmark): a span with
        // a few attributes takes a few hundred bytes on the wire, an attribute 20 to 60.
        // Under-guessing costs regrowth, over-guessing a transient allocation about as large
        // as the request.
        let mut request = Request {
            resources: Vec::new(),
            spans: Vec::with_capacity(buf.len() / 256),
            attributes: Vec::with_capacity(buf.len() / 48),
        };
        let mut fields = Fields::of(buf);
        while !fields.done() {
            match fields.field()? {
                (1, f) => request.read_resource_spans(bytes(f)?)?,
                _ => return None,
            }
        }
        Some(request)
    }

    fn read_resource_spans(&mut self, buf: &'a [u8]) -> Option<()> {
        let (mut resource, mut schema_url) = (None, None);
        let mut scopes = Vec::new();
        let first = self.spans.len();
        let mut fields = Fields::of(buf);
        while !fields.done() {
            match fields.field()? {
                (1, f) => once(&mut resource, Resource::decode(bytes(f)?).ok())?,
                (2, f) => scopes.push(self.read_scope_spans(bytes(f)?)?),
                (3, f) => once(&mut schema_url, text(f))?,
                _ => return None,
            }
        }
        let spans = first..self.spans.len();
        self.resources.push(ResourceGroup { resource, schema_url: schema_url.unwrap_or(""), scopes, spans });
        Some(())
    }

    fn read_scope_spans(&mut self, buf: &'a [u8]) -> Option<Scope<'a>> {
        let (mut scope, mut schema_url) = (None, None);
        let first = self.spans.len();
        let mut fields = Fields::of(buf);
        while !fields.done() {
            match fields.field()? {
                (1, f) => once(&mut scope, InstrumentationScope::decode(bytes(f)?).ok())?,
                (2, f) => self.read_span(bytes(f)?)?,
                (3, f) => once(&mut schema_url, text(f))?,
                _ => return None,
            }
        }
        Some(Scope { scope, schema_url: schema_url.unwrap_or(""), spans: first..self.spans.len() })
    }

    fn read_span(&mut self, buf: &'a [u8]) -> Option<()> {
        let (mut trace_id, mut span_id, mut parent, mut trace_state) = (None, None, None, None);
        let (mut flags, mut name, mut kind, mut start, mut end) = (None, None, None, None, None);
        let (mut dropped_attributes, mut dropped_events, mut dropped_links, mut status) = (None, None, None, None);
        let (mut events, mut links) = (Vec::new(), Vec::new());
        let first = self.attributes.len();
        let mut nested = false;
        let mut fields = Fields::of(buf);
        while !fields.done() {
            match fields.field()? {
                (1, f) => once(&mut trace_id, bytes(f))?,
                (2, f) => once(&mut span_id, bytes(f))?,
                (3, f) => once(&mut trace_state, text(f))?,
                (4, f) => once(&mut parent, bytes(f))?,
                (5, f) => once(&mut name, text(f))?,
                (6, f) => once(&mut kind, varint(f).map(|v| v as i32))?,
                (7, Field::Fixed64(v)) => once(&mut start, Some(v))?,
                (8, Field::Fixed64(v)) => once(&mut end, Some(v))?,
                (9, f) => {
                    let attribute = Attribute::read(bytes(f)?)?;
                    nested |= attribute.scalar().is_none();
                    self.attributes.push(attribute);
                }
                (10, f) => once(&mut dropped_attributes, varint(f).map(|v| v as u32))?,
                (11, f) => events.push(Event::decode(bytes(f)?).ok()?),
                (12, f) => once(&mut dropped_events, varint(f).map(|v| v as u32))?,
                (13, f) => links.push(Link::decode(bytes(f)?).ok()?),
                (14, f) => once(&mut dropped_links, varint(f).map(|v| v as u32))?,
                (15, f) => once(&mut status, bytes(f).and_then(read_status))?,
                (16, Field::Fixed32(v)) => once(&mut flags, Some(v))?,
                _ => return None,
            }
        }
        let (status_code, status_message) = status.unwrap_or((0, ""));
        self.spans.push(Span {
            trace_id: trace_id.unwrap_or_default(),
            span_id: span_id.unwrap_or_default(),
            parent_span_id: parent.unwrap_or_default(),
            trace_state: trace_state.unwrap_or(""),
            flags: flags.unwrap_or(0),
            name: name.unwrap_or(""),
            kind: kind.unwrap_or(0),
            start: start.unwrap_or(0),
            end: end.unwrap_or(0),
            attributes: first..self.attributes.len(),
            nested,
            dropped_attributes_count: dropped_attributes.unwrap_or(0),
            events,
            dropped_events_count: dropped_events.unwrap_or(0),
            links,
            dropped_links_count: dropped_links.unwrap_or(0),
            status_code,
            status_message,
        });
        Some(())
    }

    /// Spans in the request.
    pub fn span_count(&self) -> u64 {
        self.spans.len() as u64
    }

    fn attributes_of(&self, span: &Span<'a>) -> &[Attribute<'a>] {
        &self.attributes[span.attributes.clone()]
    }

    /// A span's attributes as prost's types.
    fn decoded(&self, span: &Span<'a>) -> Option<Vec<KeyValue>> {
        self.attributes_of(span).iter().map(|a| KeyValue::decode(a.raw).ok()).collect()
    }

    /// Whether validation (`receive::validate::traces`) would take every span as it is: no
    /// rejection, no warning. When not, the prost path says why.
    pub fn acceptable(&self, limits: &Limits) -> bool {
        let depth = validate::attribute_depth(limits);
        // A resource or scope without spans costs nothing in validation (its problems reject
        // no span), so it is not checked here either.
        let groups_ok = self.resources.iter().filter(|r| !r.spans.is_empty()).all(|r| {
            validate::resource_problem(r.resource.as_ref(), depth).is_none()
                && r.scopes
                    .iter()
                    .filter(|s| !s.spans.is_empty())
                    .all(|s| validate::scope_problem(s.scope.as_ref(), depth).is_none())
        });
        groups_ok
            && self.spans.iter().all(|span| {
                validate::id_problem("trace_id", span.trace_id, 16, false).is_none()
                    && validate::id_problem("span_id", span.span_id, 8, false).is_none()
                    && validate::id_problem("parent_span_id", span.parent_span_id, 8, true).is_none()
                    && validate::too_many_attributes(span.attributes.len(), limits).is_none()
                    && (!span.nested
                        || self
                            .decoded(span)
                            .is_some_and(|kvs| crate::receive::depth::attributes_problem(&kvs, depth).is_none()))
                    && validate::events_links_problem(&span.events, &span.links, depth).is_none()
            })
    }

    /// The spans grouped by resource, as span metrics count them.
    pub fn counted(&self) -> impl Iterator<Item = (&[KeyValue], impl Iterator<Item = Counted<'_, 'a>>)> {
        self.resources.iter().map(move |r| {
            let resource = r.resource.as_ref().map_or(&[][..], |r| r.attributes.as_slice());
            (resource, self.spans[r.spans.clone()].iter().map(move |span| Counted { request: self, span }))
        })
    }

    /// The rows of a request [`Request::acceptable`] said yes to; `None` if a nested attribute
    /// does not decode after all (then the prost path answers).
    pub fn rows(&self) -> Option<Vec<SpanRow>> {
        // Every text of the request's rows goes into one buffer (`model::text`); its size is
        // about the request's (the JSON around each attribute takes at most 40 bytes more than
        // its protobuf: `{"key":"","value":{"doubleValue":}}`; a string grows only by escapes).
        let guess = self.spans.iter().map(|s| s.name.len() + 16).sum::<usize>()
            + self.attributes.iter().map(|a| a.raw.len() + 40).sum::<usize>();
        let mut text = TextBuf::with_capacity(guess);
        // Rows and their texts' ranges apart: the rows' vector is the head's, allocated once at
        // its length (collecting rows out of (row, ranges) pairs would keep the pairs' larger
        // allocation, which the head does not count).
        let mut rows = Vec::with_capacity(self.spans.len());
        let mut ranges = Vec::with_capacity(self.spans.len());
        let mut repeated = Repeated::default();
        for r in &self.resources {
            let resource = Arc::new(ResourceColumns::from_otlp(r.resource.as_ref(), r.schema_url));
            for s in &r.scopes {
                let scope = Arc::new(ScopeColumns::from_otlp(s.scope.as_ref(), s.schema_url));
                for span in &self.spans[s.spans.clone()] {
                    let (row, texts) = self.row(span, &resource, &scope, &mut text, &mut repeated)?;
                    rows.push(row);
                    ranges.push(texts);
                }
            }
        }
        let text = text.seal();
        for (row, texts) in rows.iter_mut().zip(ranges) {
            texts.seal(row, &text);
        }
        Some(rows)
    }

    fn row(
        &self,
        span: &Span<'a>,
        resource: &Arc<ResourceColumns>,
        scope: &Arc<ScopeColumns>,
        text: &mut TextBuf,
        repeated: &mut Repeated<'a>,
    ) -> Option<(SpanRow, Texts)> {
        let attributes = self.attributes_of(span);
        if span.nested {
            text.text().push_str(&attrs::encode(&self.decoded(span)?));
        } else {
            attrs::encode_scalars(
                text.text(),
                attributes.iter().map(|a| (a.key, a.scalar().unwrap_or(Scalar::Str("")))),
            );
        }
        let encoded = text.take()?;
        let find = |key: &str| attributes.iter().find(|a| a.key == key).filter(|a| !matches!(a.value, Value::Absent));
        let http_route = match find("http.route").map(|a| &a.value) {
            Some(Value::Scalar(Scalar::Str(s))) => Some(repeated.push(text, s)?),
            _ => None,
        };
        let http_status_code = match find("http.response.status_code").or_else(|| find("http.status_code")) {
            None => None,
            Some(a) => match a.value {
                Value::Scalar(Scalar::Int(i)) => Some(i),
                Value::Scalar(Scalar::Str(s)) => s.parse().ok(),
                Value::Scalar(Scalar::Double(d)) if d.fract() == 0.0 => Some(d as i64),
                _ => None,
            },
        };
        let texts = Texts {
            trace_state: repeated.push(text, span.trace_state)?,
            name: repeated.push(text, span.name)?,
            status_message: repeated.push(text, span.status_message)?,
            http_route,
            attributes: encoded,
            events: text.push(&attrs::encode_json(&span.events))?,
            links: text.push(&attrs::encode_json(&span.links))?,
        };
        let row = SpanRow {
            trace_id: span.trace_id.try_into().ok()?,
            span_id: span.span_id.try_into().ok()?,
            parent_span_id: span.parent_span_id.try_into().ok(),
            trace_state: Text::default(),
            flags: span.flags,
            name: Text::default(),
            kind: span.kind,
            start_unix_nano: span.start,
            end_unix_nano: span.end,
            status_code: span.status_code,
            status_message: Text::default(),
            http_route: None,
            http_status_code,
            attributes: Text::default(),
            dropped_attributes_count: span.dropped_attributes_count,
            events: Text::default(),
            dropped_events_count: span.dropped_events_count,
            links: Text::default(),
            dropped_links_count: span.dropped_links_count,
            resource: Arc::clone(resource),
            scope: Arc::clone(scope),
        };
        Some((row, texts))
    }
}

/// The texts a request's spans repeat — names, routes, status messages, trace states —
/// written into its [`TextBuf`] once and shared by every row that has them: a batch of an
/// SDK holds a few names for hundreds of spans. Less to copy and keep, and when a flush
/// builds a part's dictionaries (`store::parts`), rows sharing one copy are recognised by
/// where their text is without reading it.
#[derive(Default)]
struct Repeated<'a>(std::collections::HashMap<&'a str, Pending, foldhash::fast::RandomState>);

impl<'a> Repeated<'a> {
    fn push(&mut self, text: &mut TextBuf, value: &'a str) -> Option<Pending> {
        if value.is_empty() {
            return text.push(value);
        }
        if let Some(&range) = self.0.get(value) {
            return Some(range);
        }
        let range = text.push(value)?;
        self.0.insert(value, range);
        Some(range)
    }
}

/// Where a row's texts are in its request's [`TextBuf`], until the buffer is sealed.
struct Texts {
    trace_state: Pending,
    name: Pending,
    status_message: Pending,
    http_route: Option<Pending>,
    attributes: Pending,
    events: Pending,
    links: Pending,
}

impl Texts {
    fn seal(self, row: &mut SpanRow, text: &Sealed) {
        row.trace_state = text.text(self.trace_state);
        row.name = text.text(self.name);
        row.status_message = text.text(self.status_message);
        row.http_route = self.http_route.map(|r| text.text(r));
        row.attributes = text.text(self.attributes);
        row.events = text.text(self.events);
        row.links = text.text(self.links);
    }
}

/// `Status`: the code (3) and the message (2).
fn read_status(buf: &[u8]) -> Option<(i32, &str)> {
    let (mut code, mut message) = (None, None);
    let mut fields = Fields::of(buf);
    while !fields.done() {
        match fields.field()? {
            (2, f) => once(&mut message, text(f))?,
            (3, f) => once(&mut code, varint(f).map(|v| v as i32))?,
            _ => return None,
        }
    }
    Some((code.unwrap_or(0), message.unwrap_or("")))
}

/// A span as span metrics read it.
#[derive(Debug)]
pub struct Counted<'r, 'a> {
    request: &'r Request<'a>,
    span: &'r Span<'a>,
}

impl<'r, 'a: 'r> CountedSpan<'r> for Counted<'r, 'a> {
    fn kind(&self) -> i32 {
        self.span.kind
    }
    fn status_code(&self) -> i32 {
        self.span.status_code
    }
    fn name(&self) -> &'r str {
        self.span.name
    }
    fn duration_nanos(&self) -> u64 {
        self.span.end.saturating_sub(self.span.start)
    }
    fn attribute(&self, key: &str) -> Option<Attr<'r>> {
        let a = self.request.attributes_of(self.span).iter().find(|a| a.key == key)?;
        Some(match a.value {
            Value::Scalar(Scalar::Str(s)) => Attr::Str(s),
            Value::Scalar(Scalar::Bool(b)) => Attr::Bool(b),
            Value::Scalar(Scalar::Int(i)) => Attr::Int(i),
            Value::Scalar(Scalar::Double(d)) => Attr::Double(d),
            // Read again by prost: rare, and written as text by the tally anyway.
            other => match other.any().flatten() {
                Some(AnyValue { value: Some(AnyValueKind::DoubleValue(d)) }) => Attr::Double(d),
                Some(
                    any @ AnyValue {
                        value:
                            Some(
                                AnyValueKind::BytesValue(_)
                                | AnyValueKind::ArrayValue(_)
                                | AnyValueKind::KvlistValue(_),
                            ),
                    },
                ) => Attr::Other(std::borrow::Cow::Owned(any)),
                _ => Attr::Empty,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};
    use proptest::prelude::*;

    use super::*;
    use crate::config::{SpanMetricsConfig, SpanMetricsDimension};
    use crate::receive::ExportRequest;
    use crate::spanmetrics::SpanMetrics;
    use crate::tenant::Tenant;

    fn kv(key: &str, value: Option<AnyValueKind>) -> KeyValue {
        KeyValue { key: key.into(), value: value.map(|v| AnyValue { value: Some(v) }), ..Default::default() }
    }

    /// Attribute values of every kind, the plain ones most often.
    fn value() -> impl Strategy<Value = Option<AnyValueKind>> {
        let leaf = prop_oneof![
            6 => "[a-z/ \"\\\\\u{1}é]{0,12}".prop_map(AnyValueKind::StringValue),
            2 => any::<bool>().prop_map(AnyValueKind::BoolValue),
            2 => any::<i64>().prop_map(AnyValueKind::IntValue),
            2 => prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(200.0)]
                .prop_map(AnyValueKind::DoubleValue),
            1 => proptest::collection::vec(any::<u8>(), 0..6).prop_map(AnyValueKind::BytesValue),
            1 => (0..3i32).prop_map(AnyValueKind::StringValueStrindex),
            1 => Just(AnyValueKind::StringValue("404".into())),
        ];
        let nested = leaf.clone().prop_recursive(3, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(|values| {
                    AnyValueKind::ArrayValue(ArrayValue {
                        values: values.into_iter().map(|v| AnyValue { value: Some(v) }).collect(),
                    })
                }),
                proptest::collection::vec(("[a-c]", inner), 0..3).prop_map(|pairs| {
                    AnyValueKind::KvlistValue(KeyValueList {
                        values: pairs.into_iter().map(|(k, v)| kv(&k, Some(v))).collect(),
                    })
                }),
            ]
        });
        prop_oneof![12 => leaf.prop_map(Some), 1 => nested.prop_map(Some), 1 => Just(None)]
    }

    fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
        let key = prop_oneof![
            "[a-d]",
            Just("http.route".to_string()),
            Just("http.status_code".to_string()),
            Just("http.response.status_code".to_string()),
            Just("region".to_string())
        ];
        proptest::collection::vec((key, value()), 0..6).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| match v {
                    // An empty `AnyValue`, as opposed to none.
                    None if k == "a" => {
                        KeyValue { key: k, value: Some(AnyValue { value: None }), ..Default::default() }
                    }
                    v => kv(&k, v),
                })
                .collect()
        })
    }

    fn span() -> impl Strategy<Value = Span> {
        let id = |n: usize| prop_oneof![20 => proptest::collection::vec(1u8.., n), 1 => proptest::collection::vec(0u8..2, 0..n + 2)];
        (
            (id(16), id(8), prop_oneof![Just(Vec::new()), id(8)], "[a-z=,]{0,6}", any::<u32>(), "[a-zA-Z /]{0,10}"),
            (0..6i32, any::<u64>(), any::<u64>(), attributes(), 0..3u32),
            (proptest::collection::vec(attributes(), 0..2), proptest::collection::vec(attributes(), 0..2)),
            (0..3i32, "[a-z]{0,5}", any::<bool>()),
        )
            .prop_map(
                |(
                    (trace_id, span_id, parent_span_id, trace_state, flags, name),
                    (kind, start, end, attributes, dropped),
                    (events, links),
                    (code, message, has_status),
                )| Span {
                    trace_id,
                    span_id,
                    parent_span_id,
                    trace_state,
                    flags,
                    name,
                    kind,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes,
                    dropped_attributes_count: dropped,
                    events: events
                        .into_iter()
                        .map(|attributes| Event {
                            name: "e".into(),
                            time_unix_nano: 5,
                            attributes,
                            dropped_attributes_count: 1,
                        })
                        .collect(),
                    dropped_events_count: dropped,
                    links: links
                        .into_iter()
                        .map(|attributes| Link {
                            trace_id: vec![7; 16],
                            span_id: vec![8; 8],
                            attributes,
                            ..Default::default()
                        })
                        .collect(),
                    dropped_links_count: 0,
                    status: has_status.then_some(Status { code, message }),
                },
            )
    }

    type Span = opentelemetry_proto::tonic::trace::v1::Span;

    fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
        let resource = (attributes(), prop_oneof![Just(Some("api")), Just(Some("db")), Just(None)]).prop_map(
            |(mut a, service)| {
                if let Some(s) = service {
                    a.insert(0, kv("service.name", Some(AnyValueKind::StringValue(s.into()))));
                }
                Resource { attributes: a, ..Default::default() }
            },
        );
        let scope = proptest::collection::vec(span(), 0..4).prop_map(|spans| ScopeSpans {
            scope: Some(InstrumentationScope { name: "lib".into(), ..Default::default() }),
            spans,
            schema_url: "s".into(),
        });
        proptest::collection::vec((resource, proptest::collection::vec(scope, 1..3)), 0..3).prop_map(|groups| {
            ExportTraceServiceRequest {
                resource_spans: groups
                    .into_iter()
                    .map(|(resource, scope_spans)| ResourceSpans {
                        resource: Some(resource),
                        scope_spans,
                        schema_url: String::new(),
                    })
                    .collect(),
            }
        })
    }

    fn metrics() -> SpanMetrics {
        let config = SpanMetricsConfig {
            dimensions: ["http.response.status_code", "region", "a", "b"]
                .map(|name| SpanMetricsDimension { name: name.into(), default: None })
                .to_vec(),
            ..SpanMetricsConfig::default()
        };
        SpanMetrics::new(&config).unwrap()
    }

    /// What the prost path makes of `bytes`: the rows and the tally (as text) of a request
    /// validation takes whole, or `None`.
    fn by_prost(bytes: &[u8], limits: &Limits, metrics: &SpanMetrics) -> Option<(Vec<SpanRow>, String)> {
        let mut request = ExportTraceServiceRequest::decode(bytes).ok()?;
        let rejections = request.validate(limits);
        if rejections.items > 0 || !rejections.warnings.is_empty() {
            return None;
        }
        let tally = format!("{:?}", metrics.tally(&Tenant::parse("t").unwrap(), &request));
        match request.into_rows() {
            crate::model::Rows::Spans(rows) => Some((rows, tally)),
            _ => None,
        }
    }

    fn by_wire(bytes: &[u8], limits: &Limits, metrics: &SpanMetrics) -> Option<(Vec<SpanRow>, String)> {
        let request = Request::read(bytes)?;
        if !request.acceptable(limits) {
            return None;
        }
        let tally = format!("{:?}", metrics.tally_resources(&Tenant::parse("t").unwrap(), request.counted()));
        Some((request.rows()?, tally))
    }

    fn limits() -> Limits {
        Limits { max_attributes_per_item: 5, max_attribute_depth: 2, ..Limits::default() }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Whatever the wire reader takes, it makes exactly the rows and the span-metrics tally
        /// of the prost path; and it takes every well-formed request validation takes whole
        /// unless an attribute carries a profile key reference (not sent by tracers).
        #[test]
        fn the_wire_reader_and_prost_agree(request in request()) {
            let bytes = request.encode_to_vec();
            let (limits, metrics) = (limits(), metrics());
            let prost = by_prost(&bytes, &limits, &metrics);
            let wire = by_wire(&bytes, &limits, &metrics);
            match (&prost, &wire) {
                (Some(p), Some(w)) => prop_assert_eq!(p, w),
                (None, Some(_)) => prop_assert!(false, "the wire reader took what the prost path refuses"),
                (Some(_), None) => prop_assert!(false, "a valid request fell back to prost"),
                (None, None) => {}
            }
        }

        /// Damaged bytes: the wire reader never takes what prost refuses, and what both take
        /// becomes the same rows.
        #[test]
        fn damaged_requests_are_taken_only_as_prost_takes_them(request in request(), cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4), truncate in any::<bool>()) {
            let mut bytes = request.encode_to_vec();
            prop_assume!(!bytes.is_empty());
            for (at, byte) in cuts {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            if truncate {
                bytes.truncate(bytes.len() / 2);
            }
            let (limits, metrics) = (limits(), metrics());
            if let Some(wire) = by_wire(&bytes, &limits, &metrics) {
                let prost = by_prost(&bytes, &limits, &metrics);
                prop_assert_eq!(prost.as_ref(), Some(&wire));
            }
        }
    }

    fn one_span(edit: impl FnOnce(&mut Span)) -> Vec<u8> {
        let mut span = Span { trace_id: vec![1; 16], span_id: vec![2; 8], name: "GET".into(), ..Default::default() };
        edit(&mut span);
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    // The head is bounded by what `Rows::memory_bytes` counts: the rows' vector was once
    // collected in place out of larger (row, ranges) pairs and kept their allocation, a fifth
    // more than counted.
    /// Names, routes and status messages a request repeats are one copy in its text buffer,
    /// shared by the rows that have them; other texts are each row's own.
    #[test]
    fn a_request_s_repeated_names_and_routes_are_written_once() {
        let spans: Vec<Span> = (0..6u8)
            .map(|i| Span {
                trace_id: vec![i + 1; 16],
                span_id: vec![2; 8],
                name: ["GET /a", "GET /b"][usize::from(i % 2)].into(),
                attributes: vec![kv("http.route", Some(AnyValueKind::StringValue("/items/{id}".into())))],
                status: Some(Status { code: 2, message: "internal error".into() }),
                ..Default::default()
            })
            .collect();
        let bytes = crate::model::span::one_scope_request(spans).encode_to_vec();
        let rows = Request::read(&bytes).unwrap().rows().unwrap();
        let at = |t: &Text| t.buffer().map(|(buf, start)| (Arc::as_ptr(buf), start));
        assert_eq!(rows[0].name, "GET /a");
        assert_eq!(rows[3].name, "GET /b");
        assert_eq!(at(&rows[0].name), at(&rows[2].name));
        assert_eq!(at(&rows[1].name), at(&rows[5].name));
        assert_ne!(at(&rows[0].name), at(&rows[1].name));
        let route = |r: &SpanRow| at(r.http_route.as_ref().unwrap());
        assert!(rows.iter().all(|r| route(r) == route(&rows[0])));
        assert!(rows.iter().all(|r| at(&r.status_message) == at(&rows[0].status_message)));
        assert_eq!(rows[4].status_message, "internal error");
        assert_ne!(at(&rows[0].attributes), at(&rows[1].attributes), "attributes are each row's own");
    }

    #[test]
    fn rows_are_allocated_at_their_count_and_their_texts_share_one_buffer() {
        let spans: Vec<Span> = (0..300u16)
            .map(|i| Span {
                trace_id: [i.to_be_bytes(), [1; 2]].concat().repeat(4),
                span_id: vec![2; 8],
                name: format!("GET /items/{i}"),
                attributes: vec![kv("http.route", Some(AnyValueKind::StringValue("/items/{id}".into())))],
                ..Default::default()
            })
            .collect();
        let bytes = crate::model::span::one_scope_request(spans).encode_to_vec();
        let rows = Request::read(&bytes).unwrap().rows().unwrap();
        assert_eq!((rows.len(), rows.capacity()), (300, 300));
        assert_eq!(rows[7].name, "GET /items/7");
        assert_eq!(rows[7].http_route.as_deref(), Some("/items/{id}"));
        let texts: usize = rows.iter().map(|r| r.name.len() + r.attributes.len() + 11).sum();
        let counted = crate::model::Rows::Spans(rows).memory_bytes() as usize;
        let structs = 300 * size_of::<SpanRow>();
        assert!(counted >= structs + texts && counted < structs + texts + 1_000, "{counted} for {texts} bytes of text");
        let spare = crate::model::Rows::Spans(Vec::with_capacity(10)).memory_bytes() as usize;
        assert!(spare >= 10 * size_of::<SpanRow>(), "a vector's spare room is counted: {spare}");
    }

    /// What the reader leaves to prost, each for the reason its docs give.
    #[test]
    fn what_the_reader_leaves_to_prost() {
        let limits = limits();
        let plain = one_span(|_| {});
        assert!(Request::read(&plain).is_some_and(|r| r.acceptable(&limits)));
        // Validation would refuse: ids, too many attributes, nesting too deep.
        for refused in [
            one_span(|s| s.trace_id = vec![0; 16]),
            one_span(|s| s.span_id = vec![2; 7]),
            one_span(|s| s.parent_span_id = vec![3; 4]),
            one_span(|s| s.attributes = (0..6).map(|i| kv(&i.to_string(), None)).collect()),
            one_span(|s| {
                let deep = (0..4).fold(AnyValueKind::IntValue(1), |v, _| {
                    AnyValueKind::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(v) }] })
                });
                s.attributes = vec![kv("deep", Some(deep))];
            }),
        ] {
            let read = Request::read(&refused).expect("well-formed");
            assert!(!read.acceptable(&limits));
        }
        // Not read at all: a field sent twice (protobuf merges or lets the last win), a field
        // this reader does not know, a string that is not UTF-8, a truncated message.
        let span = Span { trace_id: vec![1; 16], span_id: vec![2; 8], name: "GET".into(), ..Default::default() };
        let mut span_bytes = span.encode_to_vec();
        span_bytes.extend_from_slice(&[0x2a, 1, b'x']); // `name` again
        let scope = [&[0x12, span_bytes.len() as u8][..], &span_bytes].concat();
        let resource = [&[0x12, scope.len() as u8][..], &scope].concat();
        let dup = [&[0x0a, resource.len() as u8][..], &resource].concat();
        assert!(ExportTraceServiceRequest::decode(&dup[..]).is_ok(), "prost takes it");
        assert!(Request::read(&dup).is_none());
        let mut unknown = plain.clone();
        unknown.extend_from_slice(&[0x10, 1]); // field 2 of the request: unknown
        assert!(ExportTraceServiceRequest::decode(&unknown[..]).is_ok(), "prost skips it");
        assert!(Request::read(&unknown).is_none());
        let bad_utf8 = one_span(|s| s.name = "\u{fffe}".into());
        let at = bad_utf8.windows(3).position(|w| w == "\u{fffe}".as_bytes()).unwrap();
        let mut bad = bad_utf8.clone();
        bad[at] = 0xff;
        assert!(ExportTraceServiceRequest::decode(&bad[..]).is_err());
        assert!(Request::read(&bad).is_none());
        assert!(Request::read(&plain[..plain.len() - 1]).is_none());
    }
}
