//! Fresh trace ids, span ids and timestamps in every request, without re-encoding.
//!
//! Replaying one request byte for byte flatters a columnar store: a dictionary-encoded
//! column of ids that repeat every request compresses to almost nothing, and every span
//! lands at the same instant. With `--fresh` each request carries new ids and times near
//! "now", as a fleet of instrumented services would send.
//!
//! Design choice: the request is still encoded once. In protobuf, `bytes` fields of a fixed
//! length (trace id 16, span id 8, parent span id 8) and `fixed64` fields (start and end
//! times) occupy the same bytes whatever their value, so [`Template::new`] walks the encoded
//! request once and records where those values sit; each send copies the template and
//! overwrites them in place ([`FreshBodies::next_body`]). That costs a copy and a few
//! multiplications per span, where re-encoding would cost the client (which shares the
//! cores with the server being measured) far more.
//!
//! Uniqueness is by construction, not by chance: every id is a bijective mix of a counter,
//! and each connection counts in its own range, so no two ids of one kind in one run are the
//! same. The low half of a trace id is random (per-connection xorshift), and the mixing keys
//! come from the run's start time, so two runs against one server do not collide either.
//! Spans of one trace in the template get one fresh trace id per request, and a parent span
//! id pointing at a span of the same request gets that span's fresh id, so parent/child
//! links stay consistent. Times move by the wall-clock time elapsed since the template was
//! encoded, so the stored data spans the run as real traffic would.

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::payload::XorShift;

/// Field numbers of the OTLP trace messages the walk goes through
/// (opentelemetry/proto/trace/v1/trace.proto and the trace service's request).
mod field {
    pub const REQUEST_RESOURCE_SPANS: u32 = 1;
    pub const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
    pub const SCOPE_SPANS_SPANS: u32 = 2;
    pub const SPAN_TRACE_ID: u32 = 1;
    pub const SPAN_SPAN_ID: u32 = 2;
    pub const SPAN_PARENT_SPAN_ID: u32 = 4;
    pub const SPAN_START_TIME: u32 = 7;
    pub const SPAN_END_TIME: u32 = 8;
    pub const SPAN_EVENTS: u32 = 11;
    pub const SPAN_LINKS: u32 = 13;
}

/// Bits of an id counter that belong to one connection; the connection's index is above.
const CONNECTION_SHIFT: u32 = 40;

/// The SplitMix64 finalizer. Each step (xor with a right shift of itself, multiplication by
/// an odd constant) is invertible, so the whole is a bijection on `u64`: distinct counters
/// give distinct ids, which is what makes the ids unique without a set to check them against.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One value of a protobuf field, with where it sits in the buffer.
#[derive(Debug, Clone)]
enum Value {
    Varint,
    /// The offset of the 8 little-endian bytes.
    Fixed64(usize),
    Fixed32,
    /// The range of the payload (not of its length prefix).
    Len(Range<usize>),
}

fn read_varint(buf: &[u8], pos: &mut usize) -> anyhow::Result<u64> {
    let start = *pos;
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = buf.get(*pos) else { bail!("varint at byte {start} runs past the end") };
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("varint at byte {start} is longer than 10 bytes")
}

/// Calls `visit(field number, value)` for each field of the message in `buf[range]`.
fn for_each_field(
    buf: &[u8],
    range: Range<usize>,
    mut visit: impl FnMut(u32, Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut pos = range.start;
    while pos < range.end {
        let key_at = pos;
        let key = read_varint(buf, &mut pos)?;
        let number = u32::try_from(key >> 3).with_context(|| format!("field number too large at byte {key_at}"))?;
        let value = match key & 7 {
            0 => {
                read_varint(buf, &mut pos)?;
                Value::Varint
            }
            1 => {
                let at = pos;
                pos += 8;
                Value::Fixed64(at)
            }
            2 => {
                let len = read_varint(buf, &mut pos)?;
                let len = usize::try_from(len).with_context(|| format!("length too large at byte {key_at}"))?;
                let start = pos;
                pos = pos.checked_add(len).with_context(|| format!("length too large at byte {key_at}"))?;
                Value::Len(start..pos)
            }
            5 => {
                pos += 4;
                Value::Fixed32
            }
            other => bail!("wire type {other} (groups are not used by OTLP) at byte {key_at}"),
        };
        ensure!(pos <= range.end, "field {number} at byte {key_at} runs past the end of its message");
        visit(number, value)?;
    }
    Ok(())
}

/// Where a span's parent span id points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parent {
    /// A span of the same request (its index): the parent gets that span's fresh id.
    InRequest(usize),
    /// A span outside the request: a fresh random id each request.
    Remote,
}

/// The patchable places of one span in the encoded template.
#[derive(Debug, Clone)]
struct SpanSlots {
    /// Index of the span's trace among the template's distinct trace ids.
    trace: usize,
    trace_id_at: usize,
    span_id_at: usize,
    parent: Option<(usize, Parent)>,
    start_at: usize,
    end_at: usize,
    start: u64,
    end: u64,
}

/// A span's ids as the template holds them, to find its trace and its parent.
#[derive(Debug, Clone, Copy)]
struct TemplateIds {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
}

/// The encoded request and where its ids and times sit.
#[derive(Debug)]
pub struct Template {
    bytes: Bytes,
    encoded_at_unix_nano: u64,
    traces: usize,
    spans: Vec<SpanSlots>,
}

fn fixed_len(range: &Range<usize>, what: &str, len: usize, span: usize) -> anyhow::Result<usize> {
    ensure!(range.len() == len, "span {span}: {what} is {} bytes, not {len}", range.len());
    Ok(range.start)
}

fn read_fixed64(buf: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(word)
}

impl Template {
    /// Walks an encoded `ExportTraceServiceRequest` whose times were chosen relative to
    /// `encoded_at_unix_nano`. Every span must carry a 16-byte trace id, an 8-byte span id
    /// and non-zero start and end times (protobuf omits zeros, which leaves no bytes to
    /// overwrite); spans with events or links are refused, since their times and ids would
    /// not move with the span's.
    pub fn new(bytes: Bytes, encoded_at_unix_nano: u64) -> anyhow::Result<Self> {
        let buf = &bytes[..];
        let mut spans = Vec::new();
        let mut ids: Vec<TemplateIds> = Vec::new();
        for_each_field(buf, 0..buf.len(), |number, value| {
            let Value::Len(resource_spans) = value else { return Ok(()) };
            if number != field::REQUEST_RESOURCE_SPANS {
                return Ok(());
            }
            for_each_field(buf, resource_spans, |number, value| {
                let Value::Len(scope_spans) = value else { return Ok(()) };
                if number != field::RESOURCE_SPANS_SCOPE_SPANS {
                    return Ok(());
                }
                for_each_field(buf, scope_spans, |number, value| {
                    let Value::Len(span) = value else { return Ok(()) };
                    if number != field::SCOPE_SPANS_SPANS {
                        return Ok(());
                    }
                    let index = spans.len();
                    let (slots, id) = Self::span(buf, span, index)?;
                    spans.push(slots);
                    ids.push(id);
                    Ok(())
                })
            })
        })
        .context("walking the encoded export request")?;
        ensure!(!spans.is_empty(), "the request holds no span");

        // Spans with one trace id share a trace; a parent id found among that trace's span
        // ids in this request is a link to keep.
        let mut traces: HashMap<[u8; 16], usize> = HashMap::new();
        let mut by_span_id: HashMap<([u8; 16], [u8; 8]), usize> = HashMap::new();
        for (index, id) in ids.iter().enumerate() {
            let next = traces.len();
            spans[index].trace = *traces.entry(id.trace_id).or_insert(next);
            by_span_id.insert((id.trace_id, id.span_id), index);
        }
        for (index, id) in ids.iter().enumerate() {
            if let (Some(parent_id), Some((at, _))) = (id.parent_span_id, spans[index].parent) {
                let parent =
                    by_span_id.get(&(id.trace_id, parent_id)).map_or(Parent::Remote, |&p| Parent::InRequest(p));
                spans[index].parent = Some((at, parent));
            }
        }
        let traces = traces.len();
        Ok(Self { bytes, encoded_at_unix_nano, traces, spans })
    }

    fn span(buf: &[u8], range: Range<usize>, index: usize) -> anyhow::Result<(SpanSlots, TemplateIds)> {
        let (mut trace_id_at, mut span_id_at, mut parent_at, mut start_at, mut end_at) = (None, None, None, None, None);
        for_each_field(buf, range, |number, value| {
            match (number, value) {
                (field::SPAN_TRACE_ID, Value::Len(r)) => trace_id_at = Some(fixed_len(&r, "trace_id", 16, index)?),
                (field::SPAN_SPAN_ID, Value::Len(r)) => span_id_at = Some(fixed_len(&r, "span_id", 8, index)?),
                (field::SPAN_PARENT_SPAN_ID, Value::Len(r)) if r.is_empty() => {}
                (field::SPAN_PARENT_SPAN_ID, Value::Len(r)) => {
                    parent_at = Some(fixed_len(&r, "parent_span_id", 8, index)?);
                }
                (field::SPAN_START_TIME, Value::Fixed64(at)) => start_at = Some(at),
                (field::SPAN_END_TIME, Value::Fixed64(at)) => end_at = Some(at),
                (field::SPAN_EVENTS | field::SPAN_LINKS, _) => {
                    bail!("span {index} has events or links, whose times and ids --fresh does not move")
                }
                (
                    field::SPAN_TRACE_ID
                    | field::SPAN_SPAN_ID
                    | field::SPAN_PARENT_SPAN_ID
                    | field::SPAN_START_TIME
                    | field::SPAN_END_TIME,
                    other,
                ) => bail!("span {index}: field {number} has the wrong wire type ({other:?})"),
                _ => {}
            }
            Ok(())
        })
        .with_context(|| format!("span {index}"))?;
        let missing = |what: &str| format!("span {index} has no {what} to overwrite");
        let trace_id_at = trace_id_at.with_context(|| missing("16-byte trace_id"))?;
        let span_id_at = span_id_at.with_context(|| missing("8-byte span_id"))?;
        let start_at = start_at.with_context(|| missing("start_time_unix_nano"))?;
        let end_at = end_at.with_context(|| missing("end_time_unix_nano"))?;
        let mut trace_id = [0u8; 16];
        trace_id.copy_from_slice(&buf[trace_id_at..trace_id_at + 16]);
        let eight = |at: usize| {
            let mut id = [0u8; 8];
            id.copy_from_slice(&buf[at..at + 8]);
            id
        };
        let slots = SpanSlots {
            trace: 0,
            trace_id_at,
            span_id_at,
            parent: parent_at.map(|at| (at, Parent::Remote)),
            start_at,
            end_at,
            start: read_fixed64(buf, start_at),
            end: read_fixed64(buf, end_at),
        };
        Ok((slots, TemplateIds { trace_id, span_id: eight(span_id_at), parent_span_id: parent_at.map(eight) }))
    }

    /// Spans per request.
    pub fn spans(&self) -> usize {
        self.spans.len()
    }
}

/// One connection's source of fresh request bodies.
#[derive(Debug)]
pub struct FreshBodies {
    template: Arc<Template>,
    rng: XorShift,
    /// The next id counter; starts at the connection's own range.
    next_id: u64,
    trace_key: u64,
    span_key: u64,
    /// Per-request scratch: the fresh id of each trace and of each span.
    trace_ids: Vec<[u8; 16]>,
    span_ids: Vec<[u8; 8]>,
}

impl FreshBodies {
    /// The bodies of connection number `connection` of a run keyed by `run_key` (any value;
    /// different runs should use different keys).
    pub fn new(template: Arc<Template>, connection: u64, run_key: u64) -> Self {
        let traces = template.traces;
        let spans = template.spans.len();
        Self {
            rng: XorShift::new(mix(run_key ^ mix(connection))),
            next_id: connection << CONNECTION_SHIFT,
            trace_key: mix(run_key ^ 0x7472_6163_6500_0000),
            span_key: mix(run_key ^ 0x7370_616e_0000_0000),
            trace_ids: vec![[0; 16]; traces],
            span_ids: vec![[0; 8]; spans],
            template,
        }
    }

    fn next_counter(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A span id that is not all zeros (which OTLP reads as "no id"); the mix of one
    /// counter in 2^64 is zero, and that counter is skipped.
    fn next_span_id(&mut self) -> [u8; 8] {
        loop {
            let id = mix(self.next_counter() ^ self.span_key);
            if id != 0 {
                return id.to_le_bytes();
            }
        }
    }

    /// The template with fresh ids and its times moved by the time elapsed since it was
    /// encoded, to `now_unix_nano`.
    pub fn next_body(&mut self, now_unix_nano: u64) -> Bytes {
        let template = Arc::clone(&self.template);
        // Wrapping arithmetic moves times back as well as forward, should the clock step back.
        let shift = now_unix_nano.wrapping_sub(template.encoded_at_unix_nano);
        for trace in 0..template.traces {
            let high = mix(self.next_counter() ^ self.trace_key);
            // xorshift64* never returns 0, so no trace id is all zeros.
            let low = self.rng.next_u64();
            self.trace_ids[trace][..8].copy_from_slice(&high.to_be_bytes());
            self.trace_ids[trace][8..].copy_from_slice(&low.to_le_bytes());
        }
        for span in 0..template.spans.len() {
            self.span_ids[span] = self.next_span_id();
        }
        let mut body = template.bytes.to_vec();
        for (index, slots) in template.spans.iter().enumerate() {
            body[slots.trace_id_at..slots.trace_id_at + 16].copy_from_slice(&self.trace_ids[slots.trace]);
            body[slots.span_id_at..slots.span_id_at + 8].copy_from_slice(&self.span_ids[index]);
            if let Some((at, parent)) = slots.parent {
                let parent_id = match parent {
                    Parent::InRequest(span) => self.span_ids[span],
                    Parent::Remote => self.next_span_id(),
                };
                body[at..at + 8].copy_from_slice(&parent_id);
            }
            body[slots.start_at..slots.start_at + 8].copy_from_slice(&slots.start.wrapping_add(shift).to_le_bytes());
            body[slots.end_at..slots.end_at + 8].copy_from_slice(&slots.end.wrapping_add(shift).to_le_bytes());
        }
        Bytes::from(body)
    }
}

/// Where each connection's request bodies come from.
#[derive(Debug)]
pub enum Bodies {
    /// The same encoded request every time (a reference-count increment per send).
    Replay(Bytes),
    /// A fresh copy of the template per send.
    Fresh(Box<FreshBodies>),
}

impl Bodies {
    pub fn next_body(&mut self) -> Bytes {
        match self {
            Self::Replay(body) => body.clone(),
            Self::Fresh(fresh) => fresh.next_body(crate::payload::now_unix_nano()),
        }
    }
}

/// The size of `body` gzip-compressed at the default level (6, as OpenTelemetry exporters'
/// `gzip` compression sends it): what the same spans cost on the wire, compressed.
pub fn gzip_len(body: &[u8]) -> anyhow::Result<usize> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 2), Compression::default());
    encoder.write_all(body).context("gzip-compressing a request")?;
    Ok(encoder.finish().context("gzip-compressing a request")?.len())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
    use prost::Message;

    use super::*;
    use crate::payload::{build_request, encode};

    const NOW: u64 = 1_700_000_000_000_000_000;

    fn spans_of(request: &ExportTraceServiceRequest) -> Vec<Span> {
        request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| s.spans.clone()).collect()
    }

    fn decode(body: &Bytes) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(body.clone()).expect("a patched body decodes")
    }

    /// The patched request equals the template except for ids and times: ids fresh, times
    /// moved by exactly the elapsed time, everything else (names, attributes) byte-identical.
    #[test]
    fn only_ids_and_times_change() {
        let request = build_request(64, 3, NOW);
        let template = Arc::new(Template::new(encode(&request), NOW).unwrap());
        assert_eq!(template.spans(), 64);
        let mut bodies = FreshBodies::new(Arc::clone(&template), 0, 42);
        let later = NOW + 7_500_000_000;
        let fresh = decode(&bodies.next_body(later));
        let (before, after) = (spans_of(&request), spans_of(&fresh));
        assert_eq!(before.len(), after.len());
        for (old, new) in before.iter().zip(&after) {
            assert_ne!(old.trace_id, new.trace_id);
            assert_ne!(old.span_id, new.span_id);
            assert_eq!(new.start_time_unix_nano, old.start_time_unix_nano + 7_500_000_000);
            assert_eq!(new.end_time_unix_nano, old.end_time_unix_nano + 7_500_000_000);
            let same_otherwise = Span {
                trace_id: old.trace_id.clone(),
                span_id: old.span_id.clone(),
                start_time_unix_nano: old.start_time_unix_nano,
                end_time_unix_nano: old.end_time_unix_nano,
                ..new.clone()
            };
            assert_eq!(&same_otherwise, old);
        }
        assert_eq!(fresh.resource_spans[0].resource, request.resource_spans[0].resource);
    }

    /// Ids never repeat across requests of one connection nor across connections, and none
    /// is all zeros.
    #[test]
    fn ids_are_unique_across_requests_and_connections() {
        let template = Arc::new(Template::new(encode(&build_request(128, 1, NOW)), NOW).unwrap());
        let (mut trace_ids, mut span_ids) = (HashSet::new(), HashSet::new());
        for connection in 0..4 {
            let mut bodies = FreshBodies::new(Arc::clone(&template), connection, 7);
            for request in 0..25 {
                for span in spans_of(&decode(&bodies.next_body(NOW + request))) {
                    assert_ne!(span.trace_id, vec![0; 16]);
                    assert_ne!(span.span_id, vec![0; 8]);
                    assert!(trace_ids.insert(span.trace_id), "trace id repeated (connection {connection})");
                    assert!(span_ids.insert(span.span_id), "span id repeated (connection {connection})");
                }
            }
        }
        assert_eq!((trace_ids.len(), span_ids.len()), (4 * 25 * 128, 4 * 25 * 128));
    }

    /// The bijection behind uniqueness: distinct inputs, distinct outputs, on a sample
    /// that includes the connection-range boundaries.
    #[test]
    fn mix_is_injective_on_counters() {
        let inputs = (0..10_000u64).chain((0..10_000).map(|i| (1 << CONNECTION_SHIFT) + i));
        let outputs: HashSet<u64> = inputs.map(mix).collect();
        assert_eq!(outputs.len(), 20_000);
    }

    fn linked_request() -> ExportTraceServiceRequest {
        let span = |trace: u8, id: u8, parent: Option<u8>| Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("span {id}"),
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: NOW - 2_000,
            end_time_unix_nano: NOW - 1_000,
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    // Trace 1: root 1 <- 2 <- 3, and 4 whose parent 9 is not in the request.
                    // Trace 2: root 5 <- 6. Span 7 of trace 2 names span 1 of trace 1 as its
                    // parent, which is not a parent within its own trace.
                    spans: vec![
                        span(1, 1, None),
                        span(1, 2, Some(1)),
                        span(1, 3, Some(2)),
                        span(1, 4, Some(9)),
                        span(2, 5, None),
                        span(2, 6, Some(5)),
                        span(2, 7, Some(1)),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn traces_and_parent_links_stay_consistent() {
        let template = Arc::new(Template::new(encode(&linked_request()), NOW).unwrap());
        let mut bodies = FreshBodies::new(template, 3, 1);
        let mut seen_traces = HashSet::new();
        for request in 0..3 {
            let spans = spans_of(&decode(&bodies.next_body(NOW + request)));
            let s = |i: usize| &spans[i];
            // One fresh trace id per template trace.
            assert!([1, 2, 3].iter().all(|&i| s(i).trace_id == s(0).trace_id));
            assert!([5, 6].iter().all(|&i| s(i).trace_id == s(4).trace_id));
            assert_ne!(s(0).trace_id, s(4).trace_id);
            assert!(seen_traces.insert(s(0).trace_id.clone()) && seen_traces.insert(s(4).trace_id.clone()));
            // Links within a trace follow the fresh ids.
            assert!(s(0).parent_span_id.is_empty() && s(4).parent_span_id.is_empty());
            assert_eq!(s(1).parent_span_id, s(0).span_id);
            assert_eq!(s(2).parent_span_id, s(1).span_id);
            assert_eq!(s(5).parent_span_id, s(4).span_id);
            // Parents outside the trace get an id that is no span's of this request.
            for outside in [3, 6] {
                assert_eq!(s(outside).parent_span_id.len(), 8);
                assert!(spans.iter().all(|other| other.span_id != s(outside).parent_span_id));
            }
        }
    }

    #[test]
    fn times_follow_the_clock_both_ways() {
        let template = Arc::new(Template::new(encode(&linked_request()), NOW).unwrap());
        let mut bodies = FreshBodies::new(template, 0, 0);
        let earlier = spans_of(&decode(&bodies.next_body(NOW - 500)));
        assert_eq!(earlier[0].start_time_unix_nano, NOW - 2_500);
        assert_eq!(earlier[0].end_time_unix_nano, NOW - 1_500);
    }

    /// What the walk refuses, each with the span it is about.
    #[test]
    fn unpatchable_templates_are_refused() {
        let check = |edit: fn(&mut Span), expect: &str| {
            let mut request = linked_request();
            edit(&mut request.resource_spans[0].scope_spans[0].spans[2]);
            let err = Template::new(encode(&request), NOW).unwrap_err();
            assert!(format!("{err:#}").contains(expect), "{err:#} does not contain {expect:?}");
        };
        check(|s| s.trace_id.truncate(15), "span 2: trace_id is 15 bytes, not 16");
        check(|s| s.span_id.clear(), "span 2 has no 8-byte span_id to overwrite");
        check(|s| s.parent_span_id.push(0), "span 2: parent_span_id is 9 bytes, not 8");
        check(|s| s.start_time_unix_nano = 0, "span 2 has no start_time_unix_nano to overwrite");
        check(|s| s.events.push(Default::default()), "span 2 has events or links");
        check(|s| s.links.push(Default::default()), "span 2 has events or links");

        let err = Template::new(encode(&ExportTraceServiceRequest::default()), NOW).unwrap_err();
        assert!(err.to_string().contains("no span"), "{err:#}");
        let mut truncated = encode(&linked_request()).to_vec();
        truncated.truncate(truncated.len() - 3);
        let err = Template::new(Bytes::from(truncated), NOW).unwrap_err();
        assert!(format!("{err:#}").contains("runs past the end"), "{err:#}");
    }

    #[test]
    fn gzip_of_fresh_ids_is_larger_than_of_zeros() {
        let zeros = gzip_len(&[0u8; 4096]).unwrap();
        let mut rng = XorShift::new(5);
        let noise: Vec<u8> = (0..512).flat_map(|_| rng.next_u64().to_le_bytes()).collect();
        let random = gzip_len(&noise).unwrap();
        assert!(zeros < 100, "{zeros}");
        assert!(random > 4096, "{random}");
    }
}
