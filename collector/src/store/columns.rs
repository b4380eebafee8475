//! Rows ↔ polars columns: the schema of a Parquet part.
//!
//! Design: a value many rows share (a tenant, a resource with its attributes, an
//! instrumentation scope, a metric's descriptor, a profile's type and id, a stack, a profile
//! sample's attribute set) is written once per part, not once per row. Each row carries a
//! small integer id (`resource_id`, `scope_id`, ...), and the shared value's columns are set
//! only on the first row that uses the id and null on every other row ("sparse dictionary
//! columns"). Parquet stores those nulls in a few bits, and — what matters more — building
//! the columns costs memory for each distinct value once, where copying a 5,000-attribute
//! resource into each of 5,000 rows cost gigabytes during a flush. A reader walks the rows in
//! order and keeps the values it has seen by id. Ids are assigned by `Arc` identity in the
//! head, where rows of one request share one `Arc`.
//!
//! Every row names its tenant (`tenant_id`, with the tenant's name as a sparse column), so a
//! part may hold several tenants' rows (see `store::flush`: small groups share a part), and a
//! reader keeps only the rows of the tenant it reads for, whatever file it was given.
//!
//! Parts written before this layout (one string per row for every shared value, one tenant per
//! part named by its directory) are still read: they have no `resource_id` column.
//!
//! Metrics, logs and profile parts are also cut into **service slices**: their rows are
//! ordered by tenant and `service.name` (time order kept within each), and every id starts
//! afresh at a slice's first row, so one slice decodes on its own. The catalog records each
//! slice's rows ([`Slice`]); a query for one service decodes only the row groups its slice
//! overlaps (`parts::read_part_slice`, `parts::read_part_narrowed`) instead of every service's
//! rows of the hour, and a slice of a row group's rows or more has row groups of its own, so
//! their time statistics narrow it further. Row groups still hold about [`FRAME_ROWS`] rows —
//! small slices share one — since every column chunk costs its own decompression context to
//! read. Read whole, such a part decodes as any other: a slice's first
//! rows simply define their ids again.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use polars::prelude::*;
use polars_arrow::array::{BinaryViewArray, MutableBinaryViewArray, Utf8ViewArray, View};
use polars_buffer::Buffer;

use crate::model::metric::{MetricDescriptor, MetricKind};
use crate::model::profile::ProfileInfo;
use crate::model::text::Text;
use crate::model::{LogRow, MetricRow, ProfileRow, ResourceColumns, Rows, ScopeColumns, SpanRow};
use crate::signal::Signal;
use crate::tenant::Tenant;

fn col<T, P>(name: &str, values: T) -> Column
where
    Series: NamedFrom<T, P>,
    P: ?Sized,
{
    Column::new(name.into(), values)
}

/// Lowercase hex of an id; `hex::encode` goes through `char`s and was a visible share of
/// flush time.
pub(crate) fn hex_id(id: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(id.len() * 2);
    for b in id {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    // Only ASCII hex digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

fn ptr<T: ?Sized>(value: &Arc<T>) -> usize {
    Arc::as_ptr(value) as *const () as usize
}

/// Ids for shared values, by `Arc` identity, in order of first appearance. Keyed by address
/// (not by anything a client chooses), so the fast hasher: SipHash was a visible share of the
/// flush.
#[derive(Default)]
struct Ids(HashMap<usize, u32, foldhash::fast::RandomState>);

impl Ids {
    /// The value's id, and whether this is its first row.
    fn id(&mut self, key: usize) -> (u32, bool) {
        let next = self.0.len() as u32;
        match self.0.entry(key) {
            Entry::Occupied(e) => (*e.get(), false),
            Entry::Vacant(e) => {
                e.insert(next);
                (next, true)
            }
        }
    }
}

/// Rows per frame handed to the Parquet writer: the columns of one frame are built, written as
/// a row group and dropped before the next, so a flush holds the columns of this many rows at a
/// time rather than of the whole part.
pub(crate) const FRAME_ROWS: usize = 16_384;

/// A service slice of a metrics, logs or profiles part: the rows of one tenant and one
/// `service.name` (`None`: rows without one), contiguous, with ids of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub tenant: Tenant,
    pub service: Option<String>,
    /// The slice's first row in the part.
    pub first_row: u64,
    pub rows: u64,
}

/// The rows of one signal for several tenants, as frames of about [`FRAME_ROWS`] rows passed
/// to `sink` in order. Shared values keep their ids from one frame to the next, so each is
/// written once per part — except that metric, log and profile rows are written in service
/// slices (module docs), which are returned.
pub(crate) fn to_frames(
    signal: Signal,
    groups: &[(&Tenant, &Rows)],
    mut sink: impl FnMut(DataFrame) -> PolarsResult<()>,
) -> PolarsResult<Vec<Slice>> {
    macro_rules! rows_of {
        ($variant:ident) => {
            groups
                .iter()
                .flat_map(|(t, r)| match r {
                    Rows::$variant(v) => v.iter().map(|row| (*t, row)).collect::<Vec<_>>(),
                    _ => Vec::new(),
                })
                .collect::<Vec<_>>()
        };
    }
    match signal {
        Signal::Traces => {
            let rows = rows_of!(Spans);
            let mut common = CommonBuilder::default();
            for chunk in rows.chunks(FRAME_ROWS) {
                common.reserve(chunk.len());
                for (tenant, row) in chunk {
                    common.push(tenant, (&row.resource, &row.scope));
                }
                let rows: Vec<&SpanRow> = chunk.iter().map(|(_, r)| *r).collect();
                let mut frame = spans_columns(&rows);
                frame.extend(common.take());
                sink(DataFrame::new(rows.len(), frame)?)?;
            }
            Ok(Vec::new())
        }
        Signal::Metrics => service_slices(rows_of!(Metrics), metrics_columns, sink),
        Signal::Logs => service_slices(rows_of!(Logs), |rows, _: &mut ()| logs_columns(rows), sink),
        Signal::Profiles => service_slices(rows_of!(Profiles), profiles_columns, sink),
    }
}

/// A row written in service slices: its resource and scope.
trait Sliced {
    fn shared(&self) -> Shared<'_>;
}

macro_rules! sliced {
    ($($row:ty),*) => {$(
        impl Sliced for $row {
            fn shared(&self) -> Shared<'_> {
                (&self.resource, &self.scope)
            }
        }
    )*};
}
sliced!(MetricRow, LogRow, ProfileRow);

fn service_of<R: crate::model::Row>(row: &R) -> Option<&str> {
    row.key().service_name.map(|s| &**s)
}

/// Rows as service slices (module docs): ordered by tenant and service (a stable sort, so time
/// order stays), each slice's columns built with fresh ids (`I`, the signal's own besides the
/// resource and scope ones), and written in frames of [`FRAME_ROWS`] to [`2 * FRAME_ROWS`)
/// rows: a slice of at least [`FRAME_ROWS`] rows in frames of its own, smaller ones sharing
/// frames (the frame before a slice of its own may be smaller).
fn service_slices<R: Sliced + crate::model::Row, I: Default>(
    mut rows: Vec<(&Tenant, &R)>,
    columns: impl Fn(&[&R], &mut I) -> Vec<Column>,
    mut sink: impl FnMut(DataFrame) -> PolarsResult<()>,
) -> PolarsResult<Vec<Slice>> {
    rows.sort_by(|(ta, a), (tb, b)| ta.as_str().cmp(tb.as_str()).then_with(|| service_of(*a).cmp(&service_of(*b))));
    let mut slices = Vec::new();
    let mut first_row = 0usize;
    let mut pending: Option<DataFrame> = None;
    for slice in rows.chunk_by(|(ta, a), (tb, b)| ta == tb && service_of(*a) == service_of(*b)) {
        let (tenant, row) = slice[0];
        let mut common = CommonBuilder::default();
        let mut ids = I::default();
        // A slice of a frame's rows or more has row groups of its own (the last one takes the
        // remainder), so their time statistics are the slice's; smaller slices share frames.
        let own = slice.len() >= FRAME_ROWS;
        let mut chunks: Vec<&[(&Tenant, &R)]> = slice.chunks(FRAME_ROWS).collect();
        if own && slice.len() % FRAME_ROWS != 0 {
            let tail = chunks.len() - 2;
            chunks.truncate(tail);
            chunks.push(&slice[tail * FRAME_ROWS..]);
        }
        if own && let Some(mut frame) = pending.take() {
            frame.rechunk_mut();
            sink(frame)?;
        }
        for chunk in chunks {
            common.reserve(chunk.len());
            for (tenant, row) in chunk {
                common.push(tenant, row.shared());
            }
            let rows: Vec<&R> = chunk.iter().map(|(_, r)| *r).collect();
            let mut frame = columns(&rows, &mut ids);
            frame.extend(common.take());
            let frame = DataFrame::new(rows.len(), frame)?;
            if own {
                sink(frame)?;
                continue;
            }
            let mut frame = match pending.take() {
                None => frame,
                Some(mut earlier) => {
                    earlier.vstack_mut_owned(frame)?;
                    earlier
                }
            };
            if frame.height() >= FRAME_ROWS {
                frame.rechunk_mut();
                sink(frame)?;
            } else {
                pending = Some(frame);
            }
        }
        slices.push(Slice {
            tenant: tenant.clone(),
            service: service_of(row).map(str::to_string),
            first_row: first_row as u64,
            rows: slice.len() as u64,
        });
        first_row += slice.len();
    }
    if let Some(mut frame) = pending {
        frame.rechunk_mut();
        sink(frame)?;
    }
    Ok(slices)
}

type Shared<'a> = (&'a Arc<ResourceColumns>, &'a Arc<ScopeColumns>);

#[derive(Default)]
struct CommonBuilder<'a> {
    /// The previous row's tenant (by address), resource and scope and their ids: the rows of
    /// one request follow each other with the same three, and are given the ids again without
    /// a lookup.
    last: Option<(usize, usize, usize, [u32; 3])>,
    tenants: HashMap<&'a str, u32, foldhash::quality::RandomState>,
    resources: Ids,
    scopes: Ids,
    tenant_id: Vec<u32>,
    tenant: Vec<Option<&'a str>>,
    resource_id: Vec<u32>,
    service_name: Vec<Option<&'a str>>,
    service_version: Vec<Option<&'a str>>,
    environment: Vec<Option<&'a str>>,
    res_attrs: Vec<Option<&'a str>>,
    res_dropped: Vec<Option<u32>>,
    res_schema: Vec<Option<&'a str>>,
    scope_id: Vec<u32>,
    scope_name: Vec<Option<&'a str>>,
    scope_version: Vec<Option<&'a str>>,
    scope_attrs: Vec<Option<&'a str>>,
    scope_schema: Vec<Option<&'a str>>,
}

impl<'a> CommonBuilder<'a> {
    fn push(&mut self, tenant: &'a Tenant, (resource, scope): Shared<'a>) {
        let keys = (tenant as *const Tenant as usize, ptr(resource), ptr(scope));
        if let Some((t, r, s, [tid, rid, sid])) = self.last
            && (t, r, s) == keys
        {
            self.push_again(tid, rid, sid);
            return;
        }
        let next = self.tenants.len() as u32;
        let (tid, first) = match self.tenants.entry(tenant.as_str()) {
            Entry::Occupied(e) => (*e.get(), false),
            Entry::Vacant(e) => (*e.insert(next), true),
        };
        self.tenant_id.push(tid);
        self.tenant.push(first.then_some(tenant.as_str()));

        let (rid, first) = self.resources.id(ptr(resource));
        self.resource_id.push(rid);
        let r = first.then_some(&**resource);
        self.service_name.push(r.and_then(|r| r.service_name.as_deref()));
        self.service_version.push(r.and_then(|r| r.service_version.as_deref()));
        self.environment.push(r.and_then(|r| r.deployment_environment.as_deref()));
        self.res_attrs.push(r.map(|r| &*r.attributes));
        self.res_dropped.push(r.map(|r| r.dropped_attributes_count));
        self.res_schema.push(r.map(|r| &*r.schema_url));

        let (sid, first) = self.scopes.id(ptr(scope));
        self.scope_id.push(sid);
        let s = first.then_some(&**scope);
        self.scope_name.push(s.map(|s| &*s.name));
        self.scope_version.push(s.map(|s| &*s.version));
        self.scope_attrs.push(s.map(|s| &*s.attributes));
        self.scope_schema.push(s.map(|s| &*s.schema_url));
        self.last = Some((keys.0, keys.1, keys.2, [tid, rid, sid]));
    }

    /// The text columns set on a shared value's first row only.
    fn sparse_texts(&mut self) -> [&mut Vec<Option<&'a str>>; 10] {
        [
            &mut self.tenant,
            &mut self.service_name,
            &mut self.service_version,
            &mut self.environment,
            &mut self.res_attrs,
            &mut self.res_schema,
            &mut self.scope_name,
            &mut self.scope_version,
            &mut self.scope_attrs,
            &mut self.scope_schema,
        ]
    }

    /// Room for `rows` more rows in every column.
    fn reserve(&mut self, rows: usize) {
        for ids in [&mut self.tenant_id, &mut self.resource_id, &mut self.scope_id] {
            ids.reserve(rows);
        }
        for column in self.sparse_texts() {
            column.reserve(rows);
        }
        self.res_dropped.reserve(rows);
    }

    /// A row whose tenant, resource and scope all appeared before: ids only.
    fn push_again(&mut self, tid: u32, rid: u32, sid: u32) {
        self.tenant_id.push(tid);
        self.resource_id.push(rid);
        self.scope_id.push(sid);
        for column in self.sparse_texts() {
            column.push(None);
        }
        self.res_dropped.push(None);
    }

    /// The columns of the rows pushed since the last call; the ids assigned so far stay.
    fn take(&mut self) -> Vec<Column> {
        use std::mem::take;
        vec![
            col("tenant_id", take(&mut self.tenant_id)),
            col("tenant", take(&mut self.tenant)),
            col("resource_id", take(&mut self.resource_id)),
            col("service_name", take(&mut self.service_name)),
            col("service_version", take(&mut self.service_version)),
            col("deployment_environment", take(&mut self.environment)),
            col("resource_attributes", take(&mut self.res_attrs)),
            col("resource_dropped_attributes_count", take(&mut self.res_dropped)),
            col("resource_schema_url", take(&mut self.res_schema)),
            col("scope_id", take(&mut self.scope_id)),
            col("scope_name", take(&mut self.scope_name)),
            col("scope_version", take(&mut self.scope_version)),
            col("scope_attributes", take(&mut self.scope_attrs)),
            col("scope_schema_url", take(&mut self.scope_schema)),
        ]
    }
}

/// Ids of one width as a binary column, their bytes written into one buffer (an allocation
/// per id was a visible share of the flush); values are views into that buffer. Parts store
/// ids as bytes, not as hex text: half the bytes to encode and compress, no hex to write or
/// parse (parts written before hold hex text, which [`Cols::ids_of`] still reads).
struct IdColumn<const N: usize> {
    bytes: Vec<u8>,
    /// Whether each row has an id.
    present: Vec<bool>,
}

impl<const N: usize> IdColumn<N> {
    fn with_capacity(rows: usize) -> IdColumn<N> {
        IdColumn { bytes: Vec::with_capacity(rows * N), present: Vec::with_capacity(rows) }
    }

    fn new<'a>(ids: impl ExactSizeIterator<Item = Option<&'a [u8; N]>>) -> IdColumn<N> {
        let mut column = IdColumn::with_capacity(ids.len());
        ids.for_each(|id| column.push(id));
        column
    }

    fn push(&mut self, id: Option<&[u8; N]>) {
        self.present.push(id.is_some());
        if let Some(id) = id {
            self.bytes.extend_from_slice(id);
        }
    }

    /// A column of the ids, null where a row has none.
    fn column(self, name: &str) -> Column {
        let mut array = MutableBinaryViewArray::<[u8]>::with_capacity(self.present.len());
        let buffer = Buffer::from_vec(self.bytes);
        let buffers = std::slice::from_ref(&buffer);
        let mut at = 0;
        for present in self.present {
            if present {
                array.push_view(View::new_from_bytes(&buffer[at..at + N], 0, at as u32), buffers);
                at += N;
            } else {
                array.push_null();
            }
        }
        let array: BinaryViewArray = array.freeze();
        BinaryChunked::with_chunk(name.into(), array).into_series().into()
    }
}

/// A string column of views into the buffers that already hold the values (`model::text`),
/// instead of a copy of every value as polars makes from `&str`s. A frame's long values point
/// into as many buffers as it has requests (a few dozen), each wrapped for polars once; values
/// of up to 12 bytes live in their views, as polars would put them. A value in a small buffer
/// (a row read back from a part has one of its own, as has a text the prost path built) is
/// copied: wrapping a buffer per row would cost more than the copy.
struct TextColumn(MutableBinaryViewArray<str>);

/// The smallest text buffer a column shares rather than copies from: a request of a few spans.
const SHARED_BUFFER_BYTES: usize = 4096;

impl TextColumn {
    fn with_capacity(rows: usize) -> TextColumn {
        TextColumn(MutableBinaryViewArray::with_capacity(rows))
    }

    fn push(&mut self, text: Option<&Text>, buffers: &mut TextBuffers) {
        let Some(text) = text else {
            self.0.push_null();
            return;
        };
        let shared = text.buffer().and_then(|(buf, start)| Some((buf, u32::try_from(start).ok()?)));
        let bytes = text.bytes();
        match shared {
            Some((buf, start)) if bytes.len() > View::MAX_INLINE_SIZE as usize && buf.len() >= SHARED_BUFFER_BYTES => {
                let view = View::new_from_bytes(bytes, 0, start);
                self.0.push_view(view, std::slice::from_ref(buffers.of(buf)));
            }
            _ => self.0.push_value(text.as_str()),
        }
    }

    fn finish(self, name: &str) -> Column {
        string_column(name, self.0)
    }
}

fn string_column(name: &str, array: MutableBinaryViewArray<str>) -> Column {
    let array: Utf8ViewArray = array.freeze();
    StringChunked::with_chunk(name.into(), array).into_series().into()
}

/// The text buffers of a frame's rows as polars buffers, by address (the rows hold the buffers
/// while the frame is built, so an address names one buffer).
#[derive(Default)]
struct TextBuffers {
    last: Option<(usize, Buffer<u8>)>,
    seen: HashMap<usize, Buffer<u8>, foldhash::fast::RandomState>,
}

/// A text buffer lent to polars: its bytes live as long as polars holds the buffer.
struct Lent(Arc<String>);

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl TextBuffers {
    fn of(&mut self, buf: &Arc<String>) -> &Buffer<u8> {
        let key = ptr(buf);
        if self.last.as_ref().is_none_or(|(last, _)| *last != key) {
            let lent = self.seen.entry(key).or_insert_with(|| Buffer::from_owner(Lent(Arc::clone(buf))));
            self.last = Some((key, lent.clone()));
        }
        match &self.last {
            Some((_, buffer)) => buffer,
            None => unreachable!("set above"),
        }
    }
}

/// A text that is almost always empty (trace state, status message, events, links) as a value
/// only when it has one: null costs a bit of the definition levels where an empty value cost
/// four bytes to encode and compress. Read back, null and empty are both the empty text.
fn present(text: &Text) -> Option<&Text> {
    (!text.is_empty()).then_some(text)
}

/// The span columns of a frame, built in one pass over its rows: the rows of a frame do not
/// fit in a core's cache, and building column by column read each row twenty times.
fn spans_columns(rows: &[&SpanRow]) -> Vec<Column> {
    let n = rows.len();
    let mut buffers = TextBuffers::default();
    let (mut trace_id, mut span_id, mut parent_span_id) =
        (IdColumn::<16>::with_capacity(n), IdColumn::<8>::with_capacity(n), IdColumn::<8>::with_capacity(n));
    let [mut trace_state, mut name, mut status_message, mut http_route, mut attributes, mut events, mut links] =
        std::array::from_fn(|_| TextColumn::with_capacity(n));
    let [mut flags, mut dropped_attributes, mut dropped_events, mut dropped_links] =
        std::array::from_fn(|_| Vec::with_capacity(n));
    let [mut start, mut end, mut duration] = std::array::from_fn(|_| Vec::with_capacity(n));
    let [mut kind, mut status_code] = std::array::from_fn(|_| Vec::with_capacity(n));
    let mut http_status = Vec::with_capacity(n);
    for r in rows {
        trace_id.push(Some(&r.trace_id));
        span_id.push(Some(&r.span_id));
        parent_span_id.push(r.parent_span_id.as_ref());
        trace_state.push(present(&r.trace_state), &mut buffers);
        flags.push(r.flags);
        name.push(Some(&r.name), &mut buffers);
        kind.push(r.kind);
        start.push(r.start_unix_nano);
        end.push(r.end_unix_nano);
        duration.push(r.duration_nano());
        status_code.push(r.status_code);
        status_message.push(present(&r.status_message), &mut buffers);
        http_route.push(r.http_route.as_ref(), &mut buffers);
        http_status.push(r.http_status_code);
        attributes.push(Some(&r.attributes), &mut buffers);
        dropped_attributes.push(r.dropped_attributes_count);
        events.push(present(&r.events), &mut buffers);
        dropped_events.push(r.dropped_events_count);
        links.push(present(&r.links), &mut buffers);
        dropped_links.push(r.dropped_links_count);
    }
    vec![
        trace_id.column("trace_id"),
        span_id.column("span_id"),
        parent_span_id.column("parent_span_id"),
        trace_state.finish("trace_state"),
        col("flags", flags),
        name.finish("name"),
        col("kind", kind),
        col("start_time_unix_nano", start),
        col("end_time_unix_nano", end),
        col("duration_nano", duration),
        col("status_code", status_code),
        status_message.finish("status_message"),
        http_route.finish("http_route"),
        col("http_response_status_code", http_status),
        attributes.finish("attributes"),
        col("dropped_attributes_count", dropped_attributes),
        events.finish("events"),
        col("dropped_events_count", dropped_events),
        links.finish("links"),
        col("dropped_links_count", dropped_links),
    ]
}

fn metrics_columns(rows: &[&MetricRow], ids: &mut Ids) -> Vec<Column> {
    let mut metric_id = Vec::with_capacity(rows.len());
    let mut defs: Vec<Option<&MetricDescriptor>> = Vec::with_capacity(rows.len());
    for r in rows {
        let (id, first) = ids.id(ptr(&r.metric));
        metric_id.push(id);
        defs.push(first.then_some(&*r.metric));
    }
    vec![
        col("metric_id", metric_id),
        col("metric_name", defs.iter().map(|d| d.map(|m| &*m.name)).collect::<Vec<_>>()),
        col("metric_description", defs.iter().map(|d| d.map(|m| &*m.description)).collect::<Vec<_>>()),
        col("metric_unit", defs.iter().map(|d| d.map(|m| &*m.unit)).collect::<Vec<_>>()),
        col("metric_metadata", defs.iter().map(|d| d.map(|m| &*m.metadata)).collect::<Vec<_>>()),
        col("kind", rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>()),
        col("temporality", rows.iter().map(|r| r.temporality).collect::<Vec<_>>()),
        col("is_monotonic", rows.iter().map(|r| r.is_monotonic).collect::<Vec<_>>()),
        col("start_time_unix_nano", rows.iter().map(|r| r.start_unix_nano).collect::<Vec<_>>()),
        col("time_unix_nano", rows.iter().map(|r| r.time_unix_nano).collect::<Vec<_>>()),
        col("attributes", rows.iter().map(|r| r.attributes.as_str()).collect::<Vec<_>>()),
        col("flags", rows.iter().map(|r| r.flags).collect::<Vec<_>>()),
        col("value", rows.iter().map(|r| r.value).collect::<Vec<_>>()),
        col("value_int", rows.iter().map(|r| r.value_int).collect::<Vec<_>>()),
        col("count", rows.iter().map(|r| r.count).collect::<Vec<_>>()),
        col("sum", rows.iter().map(|r| r.sum).collect::<Vec<_>>()),
        col("min", rows.iter().map(|r| r.min).collect::<Vec<_>>()),
        col("max", rows.iter().map(|r| r.max).collect::<Vec<_>>()),
        col("detail", rows.iter().map(|r| r.detail.as_str()).collect::<Vec<_>>()),
        col("exemplars", rows.iter().map(|r| r.exemplars.as_str()).collect::<Vec<_>>()),
    ]
}

fn logs_columns(rows: &[&LogRow]) -> Vec<Column> {
    vec![
        col("time_unix_nano", rows.iter().map(|r| r.time_unix_nano).collect::<Vec<_>>()),
        col("observed_time_unix_nano", rows.iter().map(|r| r.observed_unix_nano).collect::<Vec<_>>()),
        col("severity_number", rows.iter().map(|r| r.severity_number).collect::<Vec<_>>()),
        col("severity_text", rows.iter().map(|r| r.severity_text.as_str()).collect::<Vec<_>>()),
        col("body", rows.iter().map(|r| r.body.as_str()).collect::<Vec<_>>()),
        col("attributes", rows.iter().map(|r| r.attributes.as_str()).collect::<Vec<_>>()),
        col("dropped_attributes_count", rows.iter().map(|r| r.dropped_attributes_count).collect::<Vec<_>>()),
        col("flags", rows.iter().map(|r| r.flags).collect::<Vec<_>>()),
        IdColumn::new(rows.iter().map(|r| r.trace_id.as_ref())).column("trace_id"),
        IdColumn::new(rows.iter().map(|r| r.span_id.as_ref())).column("span_id"),
        col("event_name", rows.iter().map(|r| r.event_name.as_str()).collect::<Vec<_>>()),
    ]
}

/// The ids of a profile part's shared values.
#[derive(Default)]
struct ProfileIds {
    profiles: Ids,
    stacks: Ids,
    attributes: Ids,
}

fn profiles_columns(rows: &[&ProfileRow], ids: &mut ProfileIds) -> Vec<Column> {
    let n = rows.len();
    let ProfileIds { profiles, stacks, attributes } = ids;
    let (mut profile_ref, mut stack_id, mut attributes_id) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut profile_def: Vec<Option<&ProfileInfo>> = Vec::with_capacity(n);
    let (mut stack, mut attrs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for r in rows {
        let (id, first) = profiles.id(ptr(&r.profile));
        profile_ref.push(id);
        profile_def.push(first.then_some(&*r.profile));
        let (id, first) = stacks.id(ptr(&r.stack));
        stack_id.push(id);
        stack.push(first.then_some(&*r.stack));
        let (id, first) = attributes.id(ptr(&r.attributes));
        attributes_id.push(id);
        attrs.push(first.then_some(&*r.attributes));
    }
    let def = |f: fn(&ProfileInfo) -> &str| profile_def.iter().map(|d| d.map(f)).collect::<Vec<_>>();
    vec![
        col("time_unix_nano", rows.iter().map(|r| r.time_unix_nano).collect::<Vec<_>>()),
        col("value", rows.iter().map(|r| r.value).collect::<Vec<_>>()),
        col("profile_ref", profile_ref),
        col(
            "profile_time_unix_nano",
            profile_def.iter().map(|d| d.map(|p| p.profile_time_unix_nano)).collect::<Vec<_>>(),
        ),
        col("duration_nano", profile_def.iter().map(|d| d.map(|p| p.duration_nano)).collect::<Vec<_>>()),
        col("profile_id", profile_def.iter().map(|d| d.map(|p| hex_id(&p.profile_id))).collect::<Vec<_>>()),
        col("sample_type", def(|p| &p.sample_type)),
        col("sample_unit", def(|p| &p.sample_unit)),
        col("period_type", def(|p| &p.period_type)),
        col("period_unit", def(|p| &p.period_unit)),
        col("period", profile_def.iter().map(|d| d.map(|p| p.period)).collect::<Vec<_>>()),
        // What the profile was built from (`model::profile`), hex; absent from older parts.
        col(
            "source_sha256",
            profile_def.iter().map(|d| d.and_then(|p| p.source_sha256.map(hex::encode))).collect::<Vec<_>>(),
        ),
        col("stack_id", stack_id),
        col("stack", stack),
        col("attributes_id", attributes_id),
        col("attributes", attrs),
        IdColumn::new(rows.iter().map(|r| r.trace_id.as_ref())).column("trace_id"),
        IdColumn::new(rows.iter().map(|r| r.span_id.as_ref())).column("span_id"),
    ]
}

// ---- reading -------------------------------------------------------------------------------

fn damaged(what: String) -> PolarsError {
    PolarsError::ComputeError(what.into())
}

/// Column access for reading a frame back, with errors naming the column.
struct Cols<'a>(&'a DataFrame);

impl<'a> Cols<'a> {
    fn has(&self, name: &str) -> bool {
        self.0.column(name).is_ok()
    }
    fn str(&self, name: &str) -> PolarsResult<Vec<Option<&'a str>>> {
        Ok(self.0.column(name)?.str()?.iter().collect())
    }
    fn u64(&self, name: &str) -> PolarsResult<Vec<Option<u64>>> {
        Ok(self.0.column(name)?.u64()?.iter().collect())
    }
    fn u32(&self, name: &str) -> PolarsResult<Vec<Option<u32>>> {
        Ok(self.0.column(name)?.u32()?.iter().collect())
    }
    fn i32(&self, name: &str) -> PolarsResult<Vec<Option<i32>>> {
        Ok(self.0.column(name)?.i32()?.iter().collect())
    }
    fn i64(&self, name: &str) -> PolarsResult<Vec<Option<i64>>> {
        Ok(self.0.column(name)?.i64()?.iter().collect())
    }
    fn f64(&self, name: &str) -> PolarsResult<Vec<Option<f64>>> {
        Ok(self.0.column(name)?.f64()?.iter().collect())
    }
    fn bool(&self, name: &str) -> PolarsResult<Vec<Option<bool>>> {
        Ok(self.0.column(name)?.bool()?.iter().collect())
    }
    /// A column of trace or span ids of `N` bytes: binary in parts, lowercase hex text in parts
    /// written before ids were stored as bytes (a hex value that is not `N` bytes reads as none).
    fn ids_of<const N: usize>(&self, name: &str) -> PolarsResult<Vec<Option<[u8; N]>>> {
        let column = self.0.column(name)?;
        if column.dtype() == &DataType::String {
            return Ok(column.str()?.iter().map(id_of_hex).collect());
        }
        column
            .binary()?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                None => Ok(None),
                Some(bytes) => bytes
                    .try_into()
                    .map(Some)
                    .map_err(|_| damaged(format!("row {i} of {name} is {} bytes, not {N}", bytes.len()))),
            })
            .collect()
    }
    /// An id column; in parts of the first layout, which have none, every row is its own id.
    fn ids(&self, name: &str, n: usize) -> PolarsResult<Vec<u32>> {
        if !self.has(name) {
            return Ok((0..n as u32).collect());
        }
        self.u32(name)?
            .into_iter()
            .enumerate()
            .map(|(i, id)| id.ok_or_else(|| damaged(format!("row {i} has no {name}"))))
            .collect()
    }
}

/// Values defined on the first row of their id and looked up by id on the others.
struct Dict<T>(Vec<Option<T>>);

impl<T: Clone> Dict<T> {
    fn new() -> Dict<T> {
        Dict(Vec::new())
    }

    /// The value of `id` at row `i`: defined now by `define` when the row carries it.
    fn at(&mut self, what: &str, i: usize, id: u32, define: Option<impl FnOnce() -> T>) -> PolarsResult<T> {
        let id = id as usize;
        if let Some(define) = define {
            if id >= self.0.len() {
                if id > self.0.len() + 1_000_000 {
                    return Err(damaged(format!("row {i}: {what} id {id} is out of range")));
                }
                self.0.resize(id + 1, None);
            }
            self.0[id] = Some(define());
        }
        self.0
            .get(id)
            .and_then(Clone::clone)
            .ok_or_else(|| damaged(format!("row {i} refers to {what} {id} before it is defined")))
    }
}

/// Rebuilds the tenant, resource and scope of each row.
struct Common<'a> {
    tenant_id: Vec<u32>,
    tenant: Vec<Option<&'a str>>,
    tenants: Dict<Option<Tenant>>,
    resource_id: Vec<u32>,
    scope_id: Vec<u32>,
    service_name: Vec<Option<&'a str>>,
    service_version: Vec<Option<&'a str>>,
    environment: Vec<Option<&'a str>>,
    res_attrs: Vec<Option<&'a str>>,
    res_dropped: Vec<Option<u32>>,
    res_schema: Vec<Option<&'a str>>,
    scope_name: Vec<Option<&'a str>>,
    scope_version: Vec<Option<&'a str>>,
    scope_attrs: Vec<Option<&'a str>>,
    scope_schema: Vec<Option<&'a str>>,
    resources: Dict<Arc<ResourceColumns>>,
    scopes: Dict<Arc<ScopeColumns>>,
    /// First layout: the previous row's values, reused when equal.
    legacy: bool,
    /// The tenant of every row of a part of the first layout (named by its directory).
    directory_tenant: Option<Tenant>,
}

impl<'a> Common<'a> {
    fn read(c: &Cols<'a>, n: usize, directory_tenant: Option<&Tenant>) -> PolarsResult<Common<'a>> {
        let legacy = !c.has("resource_id");
        if !c.has("tenant") && directory_tenant.is_none() {
            return Err(damaged("the part names no tenant".into()));
        }
        let tenant = if c.has("tenant") { c.str("tenant")? } else { vec![None; n] };
        Ok(Common {
            tenant_id: if c.has("tenant_id") { c.ids("tenant_id", n)? } else { vec![0; n] },
            tenant,
            tenants: Dict::new(),
            resource_id: c.ids("resource_id", n)?,
            scope_id: c.ids("scope_id", n)?,
            service_name: c.str("service_name")?,
            service_version: c.str("service_version")?,
            environment: c.str("deployment_environment")?,
            res_attrs: c.str("resource_attributes")?,
            res_dropped: c.u32("resource_dropped_attributes_count")?,
            res_schema: c.str("resource_schema_url")?,
            scope_name: c.str("scope_name")?,
            scope_version: c.str("scope_version")?,
            scope_attrs: c.str("scope_attributes")?,
            scope_schema: c.str("scope_schema_url")?,
            resources: Dict::new(),
            scopes: Dict::new(),
            legacy,
            // Only parts of the first layout take their tenant from their directory.
            directory_tenant: if c.has("tenant") { None } else { directory_tenant.cloned() },
        })
    }

    /// The tenant of row `i`.
    fn tenant(&mut self, i: usize) -> PolarsResult<Tenant> {
        if let Some(t) = &self.directory_tenant {
            return Ok(t.clone());
        }
        let define = self.tenant[i].map(|name| move || Tenant::parse(name).ok());
        self.tenants
            .at("tenant", i, self.tenant_id[i], define)?
            .ok_or_else(|| damaged(format!("row {i}: tenant {:?} is not a valid tenant id", self.tenant[i])))
    }

    fn resource_at(&self, i: usize) -> Arc<ResourceColumns> {
        let arc = |v: Option<&str>| Arc::<str>::from(v.unwrap_or(""));
        Arc::new(ResourceColumns {
            service_name: self.service_name[i].map(Arc::from),
            service_version: self.service_version[i].map(Arc::from),
            deployment_environment: self.environment[i].map(Arc::from),
            attributes: arc(self.res_attrs[i]),
            dropped_attributes_count: self.res_dropped[i].unwrap_or(0),
            schema_url: arc(self.res_schema[i]),
        })
    }

    fn scope_at(&self, i: usize) -> Arc<ScopeColumns> {
        let arc = |v: Option<&str>| Arc::<str>::from(v.unwrap_or(""));
        Arc::new(ScopeColumns {
            name: arc(self.scope_name[i]),
            version: arc(self.scope_version[i]),
            attributes: arc(self.scope_attrs[i]),
            schema_url: arc(self.scope_schema[i]),
        })
    }

    fn same_resource(&self, a: usize, b: usize) -> bool {
        self.service_name[a] == self.service_name[b]
            && self.service_version[a] == self.service_version[b]
            && self.environment[a] == self.environment[b]
            && self.res_attrs[a] == self.res_attrs[b]
            && self.res_dropped[a] == self.res_dropped[b]
            && self.res_schema[a] == self.res_schema[b]
    }

    fn same_scope(&self, a: usize, b: usize) -> bool {
        self.scope_name[a] == self.scope_name[b]
            && self.scope_version[a] == self.scope_version[b]
            && self.scope_attrs[a] == self.scope_attrs[b]
            && self.scope_schema[a] == self.scope_schema[b]
    }

    fn at(&mut self, i: usize) -> PolarsResult<(Arc<ResourceColumns>, Arc<ScopeColumns>)> {
        if self.legacy {
            // One value per row; rows of one resource were stored next to each other.
            let resource = match i.checked_sub(1).filter(|&j| self.same_resource(j, i)) {
                Some(j) => self.resources.at("resource", j, j as u32, None::<fn() -> _>)?,
                None => self.resource_at(i),
            };
            let scope = match i.checked_sub(1).filter(|&j| self.same_scope(j, i)) {
                Some(j) => self.scopes.at("scope", j, j as u32, None::<fn() -> _>)?,
                None => self.scope_at(i),
            };
            let (r, s) = (Arc::clone(&resource), Arc::clone(&scope));
            self.resources.at("resource", i, i as u32, Some(move || r))?;
            self.scopes.at("scope", i, i as u32, Some(move || s))?;
            return Ok((resource, scope));
        }
        let resource = match self.res_attrs[i] {
            Some(_) => {
                let r = self.resource_at(i);
                self.resources.at("resource", i, self.resource_id[i], Some(move || r))?
            }
            None => self.resources.at("resource", i, self.resource_id[i], None::<fn() -> _>)?,
        };
        let scope = match self.scope_attrs[i] {
            Some(_) => {
                let s = self.scope_at(i);
                self.scopes.at("scope", i, self.scope_id[i], Some(move || s))?
            }
            None => self.scopes.at("scope", i, self.scope_id[i], None::<fn() -> _>)?,
        };
        Ok((resource, scope))
    }
}

fn id_of_hex<const N: usize>(hex_text: Option<&str>) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(hex_text?, &mut out).ok()?;
    Some(out)
}

fn s(v: Option<&str>) -> String {
    v.unwrap_or("").to_string()
}

/// The rows of a frame, grouped by tenant in order of first appearance; only `only`'s rows
/// when it is given. `directory_tenant` names the tenant of a part of the first layout.
pub(crate) fn from_frame(
    signal: Signal,
    df: &DataFrame,
    only: Option<&Tenant>,
    directory_tenant: Option<&Tenant>,
) -> PolarsResult<Vec<(Tenant, Rows)>> {
    from_frame_rows(signal, df, only, directory_tenant, &|_| true)
}

/// [`from_frame`] keeping only the rows `wanted` accepts (the shared values of every row are
/// still walked, since a value is defined on the first row that uses it).
fn from_frame_rows(
    signal: Signal,
    df: &DataFrame,
    only: Option<&Tenant>,
    directory_tenant: Option<&Tenant>,
    wanted: &dyn Fn(usize) -> bool,
) -> PolarsResult<Vec<(Tenant, Rows)>> {
    let c = Cols(df);
    let n = df.height();
    let mut common = Common::read(&c, n, directory_tenant)?;
    let mut tenants: Vec<Tenant> = Vec::new();
    // Row → index into `tenants`, or None when the row is not read.
    let mut keep: Vec<Option<usize>> = Vec::with_capacity(n);
    for i in 0..n {
        let t = common.tenant(i)?;
        if only.is_some_and(|o| *o != t) || !wanted(i) {
            keep.push(None);
            continue;
        }
        let at = match tenants.iter().position(|x| *x == t) {
            Some(at) => at,
            None => {
                tenants.push(t);
                tenants.len() - 1
            }
        };
        keep.push(Some(at));
    }
    let groups = tenants.len();
    let rows: Vec<Rows> = match signal {
        Signal::Traces => spans_from(&c, &keep, groups, &mut common)?.into_iter().map(Rows::Spans).collect(),
        Signal::Metrics => metrics_from(&c, &keep, groups, &mut common)?.into_iter().map(Rows::Metrics).collect(),
        Signal::Logs => logs_from(&c, &keep, groups, &mut common)?.into_iter().map(Rows::Logs).collect(),
        Signal::Profiles => profiles_from(&c, &keep, groups, &mut common)?.into_iter().map(Rows::Profiles).collect(),
    };
    Ok(tenants.into_iter().zip(rows).collect())
}

/// Calls `make` for every kept row (after `common` has seen every row, kept or not, so the
/// shared values defined on rows of other tenants are known) and groups the results.
fn build<R>(
    keep: &[Option<usize>],
    groups: usize,
    common: &mut Common<'_>,
    mut make: impl FnMut(usize, Arc<ResourceColumns>, Arc<ScopeColumns>) -> PolarsResult<Option<R>>,
) -> PolarsResult<Vec<Vec<R>>> {
    let mut out: Vec<Vec<R>> = (0..groups).map(|_| Vec::new()).collect();
    for (i, k) in keep.iter().enumerate() {
        let (resource, scope) = common.at(i)?;
        if let Some(row) = make(i, resource, scope)?
            && let Some(k) = k
        {
            out[*k].push(row);
        }
    }
    Ok(out)
}

fn spans_from(
    c: &Cols<'_>,
    keep: &[Option<usize>],
    groups: usize,
    common: &mut Common<'_>,
) -> PolarsResult<Vec<Vec<SpanRow>>> {
    spans_from_where(c, keep, groups, common, None)
}

/// [`spans_from`] that first shows each kept row to `probe` and builds only the rows it accepts.
fn spans_from_where(
    c: &Cols<'_>,
    keep: &[Option<usize>],
    groups: usize,
    common: &mut Common<'_>,
    mut probe: Option<&mut dyn FnMut(&super::SpanProbe<'_>) -> bool>,
) -> PolarsResult<Vec<Vec<SpanRow>>> {
    let sc = SpanCols::read(c)?;
    build(keep, groups, common, |i, resource, scope| {
        if keep[i].is_none() {
            return Ok(None);
        }
        if let Some(probe) = probe.as_mut() {
            let seen = super::SpanProbe {
                trace_id: sc.trace_id[i],
                service_name: resource.service_name.as_deref(),
                start_unix_nano: sc.start[i].unwrap_or(0),
                end_unix_nano: sc.end[i].unwrap_or(0),
            };
            if !probe(&seen) {
                return Ok(None);
            }
        }
        Ok(Some(sc.row(i, resource, scope)))
    })
}

/// The span columns of a frame, each row turned into a [`SpanRow`] by [`SpanCols::row`].
struct SpanCols<'a> {
    trace_id: Vec<Option<[u8; 16]>>,
    span_id: Vec<Option<[u8; 8]>>,
    parent: Vec<Option<[u8; 8]>>,
    trace_state: Vec<Option<&'a str>>,
    flags: Vec<Option<u32>>,
    name: Vec<Option<&'a str>>,
    kind: Vec<Option<i32>>,
    start: Vec<Option<u64>>,
    end: Vec<Option<u64>>,
    status_code: Vec<Option<i32>>,
    status_message: Vec<Option<&'a str>>,
    route: Vec<Option<&'a str>>,
    http_status: Vec<Option<i64>>,
    attributes: Vec<Option<&'a str>>,
    dropped_attrs: Vec<Option<u32>>,
    events: Vec<Option<&'a str>>,
    dropped_events: Vec<Option<u32>>,
    links: Vec<Option<&'a str>>,
    dropped_links: Vec<Option<u32>>,
}

impl<'a> SpanCols<'a> {
    fn read(c: &Cols<'a>) -> PolarsResult<SpanCols<'a>> {
        Ok(SpanCols {
            trace_id: c.ids_of("trace_id")?,
            span_id: c.ids_of("span_id")?,
            parent: c.ids_of("parent_span_id")?,
            trace_state: c.str("trace_state")?,
            flags: c.u32("flags")?,
            name: c.str("name")?,
            kind: c.i32("kind")?,
            start: c.u64("start_time_unix_nano")?,
            end: c.u64("end_time_unix_nano")?,
            status_code: c.i32("status_code")?,
            status_message: c.str("status_message")?,
            route: c.str("http_route")?,
            http_status: c.i64("http_response_status_code")?,
            attributes: c.str("attributes")?,
            dropped_attrs: c.u32("dropped_attributes_count")?,
            events: c.str("events")?,
            dropped_events: c.u32("dropped_events_count")?,
            links: c.str("links")?,
            dropped_links: c.u32("dropped_links_count")?,
        })
    }

    fn row(&self, i: usize, resource: Arc<ResourceColumns>, scope: Arc<ScopeColumns>) -> SpanRow {
        let t = |v: &[Option<&'a str>]| v[i].unwrap_or("");
        let [trace_state, name, status_message, route, attributes, events, links] = crate::model::text::texts_of([
            t(&self.trace_state),
            t(&self.name),
            t(&self.status_message),
            t(&self.route),
            t(&self.attributes),
            t(&self.events),
            t(&self.links),
        ]);
        SpanRow {
            trace_id: self.trace_id[i].unwrap_or([0; 16]),
            span_id: self.span_id[i].unwrap_or([0; 8]),
            parent_span_id: self.parent[i],
            trace_state,
            flags: self.flags[i].unwrap_or(0),
            name,
            kind: self.kind[i].unwrap_or(0),
            start_unix_nano: self.start[i].unwrap_or(0),
            end_unix_nano: self.end[i].unwrap_or(0),
            status_code: self.status_code[i].unwrap_or(0),
            status_message,
            http_route: self.route[i].is_some().then_some(route),
            http_status_code: self.http_status[i],
            attributes,
            dropped_attributes_count: self.dropped_attrs[i].unwrap_or(0),
            events,
            dropped_events_count: self.dropped_events[i].unwrap_or(0),
            links,
            dropped_links_count: self.dropped_links[i].unwrap_or(0),
            resource,
            scope,
        }
    }
}

fn metrics_from(
    c: &Cols<'_>,
    keep: &[Option<usize>],
    groups: usize,
    common: &mut Common<'_>,
) -> PolarsResult<Vec<Vec<MetricRow>>> {
    let n = keep.len();
    let (name, description, unit, metadata) =
        (c.str("metric_name")?, c.str("metric_description")?, c.str("metric_unit")?, c.str("metric_metadata")?);
    let legacy = !c.has("metric_id");
    let metric_id = c.ids("metric_id", n)?;
    let (kind, temporality, monotonic) = (c.str("kind")?, c.i32("temporality")?, c.bool("is_monotonic")?);
    let (start, time) = (c.u64("start_time_unix_nano")?, c.u64("time_unix_nano")?);
    let (attributes, flags) = (c.str("attributes")?, c.u32("flags")?);
    let (value, value_int, count) = (c.f64("value")?, c.i64("value_int")?, c.u64("count")?);
    let (sum, min, max) = (c.f64("sum")?, c.f64("min")?, c.f64("max")?);
    let (detail, exemplars) = (c.str("detail")?, c.str("exemplars")?);
    let mut metrics: Dict<Arc<MetricDescriptor>> = Dict::new();
    let descriptor = |i: usize| {
        Arc::new(MetricDescriptor {
            name: Arc::from(name[i].unwrap_or("")),
            description: Arc::from(description[i].unwrap_or("")),
            unit: Arc::from(unit[i].unwrap_or("")),
            metadata: Arc::from(metadata[i].unwrap_or("")),
        })
    };
    let same = |a: usize, b: usize| {
        name[a] == name[b] && description[a] == description[b] && unit[a] == unit[b] && metadata[a] == metadata[b]
    };
    build(keep, groups, common, |i, resource, scope| {
        let metric = if legacy {
            match i.checked_sub(1).filter(|&j| same(j, i)) {
                Some(j) => {
                    let m = metrics.at("metric", j, j as u32, None::<fn() -> _>)?;
                    metrics.at("metric", i, i as u32, Some(move || m))?
                }
                None => metrics.at("metric", i, i as u32, Some(|| descriptor(i)))?,
            }
        } else if name[i].is_some() {
            metrics.at("metric", i, metric_id[i], Some(|| descriptor(i)))?
        } else {
            metrics.at("metric", i, metric_id[i], None::<fn() -> _>)?
        };
        if keep[i].is_none() {
            return Ok(None);
        }
        Ok(Some(MetricRow {
            metric,
            kind: kind[i].and_then(MetricKind::parse).unwrap_or(MetricKind::Gauge),
            temporality: temporality[i].unwrap_or(0),
            is_monotonic: monotonic[i].unwrap_or(false),
            start_unix_nano: start[i].unwrap_or(0),
            time_unix_nano: time[i].unwrap_or(0),
            attributes: s(attributes[i]),
            flags: flags[i].unwrap_or(0),
            value: value[i],
            value_int: value_int[i],
            count: count[i],
            sum: sum[i],
            min: min[i],
            max: max[i],
            detail: s(detail[i]),
            exemplars: s(exemplars[i]),
            resource,
            scope,
        }))
    })
}

fn logs_from(
    c: &Cols<'_>,
    keep: &[Option<usize>],
    groups: usize,
    common: &mut Common<'_>,
) -> PolarsResult<Vec<Vec<LogRow>>> {
    let (time, observed) = (c.u64("time_unix_nano")?, c.u64("observed_time_unix_nano")?);
    let (sev, sev_text, body) = (c.i32("severity_number")?, c.str("severity_text")?, c.str("body")?);
    let (attributes, dropped, flags) = (c.str("attributes")?, c.u32("dropped_attributes_count")?, c.u32("flags")?);
    let (trace_id, span_id, event_name) =
        (c.ids_of::<16>("trace_id")?, c.ids_of::<8>("span_id")?, c.str("event_name")?);
    build(keep, groups, common, |i, resource, scope| {
        if keep[i].is_none() {
            return Ok(None);
        }
        Ok(Some(LogRow {
            time_unix_nano: time[i].unwrap_or(0),
            observed_unix_nano: observed[i].unwrap_or(0),
            severity_number: sev[i].unwrap_or(0),
            severity_text: s(sev_text[i]),
            body: s(body[i]),
            attributes: s(attributes[i]),
            dropped_attributes_count: dropped[i].unwrap_or(0),
            flags: flags[i].unwrap_or(0),
            trace_id: trace_id[i],
            span_id: span_id[i],
            event_name: s(event_name[i]),
            resource,
            scope,
        }))
    })
}

fn profiles_from(
    c: &Cols<'_>,
    keep: &[Option<usize>],
    groups: usize,
    common: &mut Common<'_>,
) -> PolarsResult<Vec<Vec<ProfileRow>>> {
    let n = keep.len();
    let legacy = !c.has("profile_ref");
    let (time, ptime, duration) = (c.u64("time_unix_nano")?, c.u64("profile_time_unix_nano")?, c.u64("duration_nano")?);
    let profile_id = c.str("profile_id")?;
    let (st, su, pt, pu) = (c.str("sample_type")?, c.str("sample_unit")?, c.str("period_type")?, c.str("period_unit")?);
    let (period, value, stack) = (c.i64("period")?, c.i64("value")?, c.str("stack")?);
    let (attributes, trace_id, span_id) =
        (c.str("attributes")?, c.ids_of::<16>("trace_id")?, c.ids_of::<8>("span_id")?);
    let source = if c.has("source_sha256") { c.str("source_sha256")? } else { vec![None; n] };
    let (profile_ref, stack_id, attributes_id) =
        (c.ids("profile_ref", n)?, c.ids("stack_id", n)?, c.ids("attributes_id", n)?);
    let arc = |v: Option<&str>| Arc::<str>::from(v.unwrap_or(""));
    let info = |i: usize| {
        Arc::new(ProfileInfo {
            profile_time_unix_nano: ptime[i].unwrap_or(0),
            duration_nano: duration[i].unwrap_or(0),
            profile_id: id_of_hex(profile_id[i]).unwrap_or([0; 16]),
            sample_type: arc(st[i]),
            sample_unit: arc(su[i]),
            period_type: arc(pt[i]),
            period_unit: arc(pu[i]),
            period: period[i].unwrap_or(0),
            source_sha256: id_of_hex(source[i]),
        })
    };
    let mut profiles: Dict<Arc<ProfileInfo>> = Dict::new();
    let (mut stacks, mut attribute_sets): (Dict<Arc<str>>, Dict<Arc<str>>) = (Dict::new(), Dict::new());
    // Every distinct stack and attribute text is allocated once per read, however many times
    // the part defines it (once per service slice, or once per row in the first layout), so
    // rows with the same stack share one `Arc` and queries can sum stacks by address.
    let mut texts: std::collections::HashSet<Arc<str>, analyzer::hash::FastHash> = Default::default();
    let mut intern = |text: &str| -> Arc<str> {
        match texts.get(text) {
            Some(shared) => Arc::clone(shared),
            None => {
                let shared: Arc<str> = Arc::from(text);
                texts.insert(Arc::clone(&shared));
                shared
            }
        }
    };
    // First layout: everything per row; share what repeats on consecutive rows.
    type Previous = (usize, Arc<ProfileInfo>, Arc<str>, Arc<str>);
    let mut last: Option<Previous> = None;
    build(keep, groups, common, |i, resource, scope| {
        let (profile, stack, attributes) = if legacy {
            let prev = last.as_ref().filter(|_| i > 0);
            let profile = match prev {
                Some((j, p, _, _)) if profile_id[*j] == profile_id[i] && ptime[*j] == ptime[i] && st[*j] == st[i] => {
                    Arc::clone(p)
                }
                _ => info(i),
            };
            let stack = match prev {
                Some((j, _, s, _)) if stack[*j] == stack[i] => Arc::clone(s),
                _ => intern(stack[i].unwrap_or("")),
            };
            let attrs = match prev {
                Some((j, _, _, a)) if attributes[*j] == attributes[i] => Arc::clone(a),
                _ => intern(attributes[i].unwrap_or("")),
            };
            last = Some((i, Arc::clone(&profile), Arc::clone(&stack), Arc::clone(&attrs)));
            (profile, stack, attrs)
        } else {
            let profile = match profile_id[i] {
                Some(_) => profiles.at("profile", i, profile_ref[i], Some(|| info(i)))?,
                None => profiles.at("profile", i, profile_ref[i], None::<fn() -> _>)?,
            };
            let stack = match stack[i] {
                Some(text) => stacks.at("stack", i, stack_id[i], Some(|| intern(text)))?,
                None => stacks.at("stack", i, stack_id[i], None::<fn() -> _>)?,
            };
            let attrs = match attributes[i] {
                Some(text) => attribute_sets.at("attribute set", i, attributes_id[i], Some(|| intern(text)))?,
                None => attribute_sets.at("attribute set", i, attributes_id[i], None::<fn() -> _>)?,
            };
            (profile, stack, attrs)
        };
        if keep[i].is_none() {
            return Ok(None);
        }
        Ok(Some(ProfileRow {
            time_unix_nano: time[i].unwrap_or(0),
            value: value[i].unwrap_or(0),
            stack,
            attributes,
            trace_id: trace_id[i],
            span_id: span_id[i],
            profile,
            resource,
            scope,
        }))
    })
}

/// The columns of the values rows share (tenant, resource, scope), read whole by
/// [`spans_of_traces`] because each value is defined on the first row that uses it.
const COMMON_COLUMNS: [&str; 14] = [
    "tenant_id",
    "tenant",
    "resource_id",
    "service_name",
    "service_version",
    "deployment_environment",
    "resource_attributes",
    "resource_dropped_attributes_count",
    "resource_schema_url",
    "scope_id",
    "scope_name",
    "scope_version",
    "scope_attributes",
    "scope_schema_url",
];

/// The spans of `tenant` whose trace key (the first 8 bytes of the id) is in `keys`, from a
/// traces part without a span index at hand: the `trace_id` column is read first, then only
/// the rows it points at ([`rows_of`]).
pub(crate) fn spans_of_trace_keys(
    bytes: &[u8],
    tenant: &Tenant,
    keys: &std::collections::HashSet<u64>,
) -> PolarsResult<Vec<SpanRow>> {
    let ids =
        ParquetReader::new(std::io::Cursor::new(bytes)).with_columns(Some(vec!["trace_id".to_string()])).finish()?;
    let wanted: Vec<usize> = Cols(&ids)
        .ids_of::<16>("trace_id")?
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_ref().map(super::parts::trace_key).filter(|k| keys.contains(k)).map(|_| i))
        .collect();
    drop(ids);
    rows_of(bytes, tenant, &wanted)
}

/// The spans of `tenant` at the row numbers `wanted` (ascending) of a traces part: the
/// shared-value columns up to the last wanted row (mostly nulls: a value is defined on the
/// first row that uses it), the span columns only over the runs of wanted rows (rows less
/// than a row group apart form one run; the Parquet reader skips the row groups outside), rows
/// built only where wanted.
pub(crate) fn rows_of(bytes: &[u8], tenant: &Tenant, wanted: &[usize]) -> PolarsResult<Vec<SpanRow>> {
    let set: std::collections::HashSet<usize> = wanted.iter().copied().collect();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &row in wanted {
        match runs.last_mut() {
            Some((_, end)) if row <= *end + FRAME_ROWS => *end = row,
            _ => runs.push((row, row)),
        }
    }
    Ok(take_spans(rows_in_runs(bytes, Signal::Traces, tenant, 0, &runs, &|i| set.contains(&i))?))
}

/// Columns of a signal whose values are written on the first row that uses them and referred
/// to by id afterwards (module docs), besides the tenant, resource and scope ones: a read of
/// some rows reads them from the part's first row.
fn shared_columns(signal: Signal) -> &'static [&'static str] {
    match signal {
        Signal::Metrics => &["metric_id", "metric_name", "metric_description", "metric_unit", "metric_metadata"],
        _ => &[],
    }
}

/// The rows of `tenant` in the runs `runs` (first and last row, inclusive, ascending, none
/// before `base`) of a part, built where `wanted`: the shared-value columns are read from
/// `base` — the part's first row, or the first of a service slice, where its ids are defined
/// afresh — up to the last run's end, the others over the runs only (the Parquet reader skips
/// the row groups outside them). A part of the first layout (no shared-value ids) is read whole.
fn rows_in_runs(
    bytes: &[u8],
    signal: Signal,
    tenant: &Tenant,
    base: usize,
    runs: &[(usize, usize)],
    wanted: &dyn Fn(usize) -> bool,
) -> PolarsResult<Vec<(Tenant, Rows)>> {
    let reader = || ParquetReader::new(std::io::Cursor::new(bytes));
    let Some(&(_, last)) = runs.last() else { return Ok(Vec::new()) };
    let schema = reader().schema()?;
    let names: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
    if !names.iter().any(|n| n == "resource_id") {
        let df = reader().finish()?;
        return from_frame_rows(signal, &df, Some(tenant), None, wanted);
    }
    let (common, own): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|n| COMMON_COLUMNS.contains(&n.as_str()) || shared_columns(signal).contains(&n.as_str()));
    let height = last + 1 - base;
    let shared = reader().with_columns(Some(common)).with_slice(Some((base, height))).finish()?;
    if shared.height() != height {
        return Err(damaged(format!("rows {base} to {last} were asked of a part of {} rows", base + shared.height())));
    }
    let mut padded: Vec<Series> = Vec::new();
    let mut at = base;
    for &(first, end) in runs {
        let part = reader().with_columns(Some(own.clone())).with_slice(Some((first, end + 1 - first))).finish()?;
        if padded.is_empty() {
            padded = part.columns().iter().map(|c| Series::full_null(c.name().clone(), 0, c.dtype())).collect();
        }
        for (out, c) in padded.iter_mut().zip(part.columns()) {
            // Rows between runs are never read (`wanted` skips them): nulls stand in.
            out.append(&Series::full_null(c.name().clone(), first - at, c.dtype()))?;
            out.append(c.as_materialized_series())?;
        }
        at = end + 1;
    }
    let mut columns: Vec<Column> = shared.into_columns();
    columns.extend(padded.into_iter().map(Column::from));
    let df = DataFrame::new(height, columns)?;
    from_frame_rows(signal, &df, Some(tenant), None, &|i| wanted(base + i))
}

/// The rows of `tenant` in a metrics or logs part that may fall in the times `[lo, hi]` and,
/// when `slice` names a service slice (its first row and row count), in that slice: only the
/// row groups whose `time_unix_nano` statistics overlap the range are decoded, and of those
/// only the slice's rows (a compacted part is sorted by time within each slice, and a flushed
/// one holds a slice's rows in arrival order, so a narrow range is a few row groups); rows
/// outside the range may be among them (the caller filters). `None` when that is every row of
/// the part: read it whole.
pub(crate) fn rows_narrowed(
    bytes: &[u8],
    signal: Signal,
    tenant: &Tenant,
    (lo, hi): (u64, u64),
    slice: Option<(usize, usize)>,
) -> PolarsResult<Option<Vec<(Tenant, Rows)>>> {
    if !matches!(signal, Signal::Metrics | Signal::Logs) || ((lo, hi) == (0, u64::MAX) && slice.is_none()) {
        return Ok(None);
    }
    let meta = polars_parquet::read::read_metadata(&mut std::io::Cursor::new(bytes))?;
    let total: usize = meta.row_groups.iter().map(|g| g.num_rows()).sum();
    let (from, to) = match slice {
        Some((_, 0)) => return Ok(Some(Vec::new())),
        Some((first, rows)) if first.checked_add(rows).is_some_and(|end| end <= total) => (first, first + rows - 1),
        Some((first, rows)) => {
            return Err(damaged(format!(
                "service slice of {rows} rows at row {first} is past the part's {total} rows"
            )));
        }
        None => (0, total.saturating_sub(1)),
    };
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut first = 0;
    for group in &meta.row_groups {
        let rows = group.num_rows();
        let (a, b) = (first.max(from), (first + rows).saturating_sub(1).min(to));
        first += rows;
        if rows == 0 || a > b {
            continue;
        }
        let stats = group
            .columns_under_root_iter("time_unix_nano")
            .and_then(|mut c| c.next())
            .and_then(|c| c.statistics(&meta.footer_buf))
            .transpose()?;
        // Times are u64 written as INT64; one past i64::MAX (never a real time) says nothing,
        // and a row group without statistics may hold any time.
        let range = match stats {
            Some(polars_parquet::parquet::statistics::Statistics::Int64(s)) => s
                .min_value
                .zip(s.max_value)
                .and_then(|(min, max)| Some((u64::try_from(min).ok()?, u64::try_from(max).ok()?))),
            _ => None,
        };
        if range.is_none_or(|(min, max)| max >= lo && min <= hi) {
            match runs.last_mut() {
                Some((_, end)) if *end + 1 == a => *end = b,
                _ => runs.push((a, b)),
            }
        }
    }
    if runs.len() == 1 && runs[0] == (0, total.saturating_sub(1)) {
        return Ok(None);
    }
    let wanted = |i: usize| runs.iter().any(|&(a, b)| a <= i && i <= b);
    rows_in_runs(bytes, signal, tenant, from, &runs, &wanted).map(Some)
}

/// The spans at the index positions `positions` (ascending) of a part whose index holds the
/// resource and scope of each span (`SpanIndex::dictionaries`): only the span columns are read,
/// over the runs of wanted rows (rows less than a row group apart form one run).
pub(crate) fn rows_of_indexed(
    bytes: &[u8],
    index: &super::span_index::SpanIndex,
    positions: &[usize],
) -> PolarsResult<Vec<SpanRow>> {
    let reader = || ParquetReader::new(std::io::Cursor::new(bytes));
    let schema = reader().schema()?;
    let own: Vec<String> =
        schema.iter_names().filter(|n| !COMMON_COLUMNS.contains(&n.as_str())).map(|n| n.to_string()).collect();
    let mut runs: Vec<(usize, usize, Vec<usize>)> = Vec::new();
    for &p in positions {
        let row = index.row(p);
        match runs.last_mut() {
            Some((_, end, members)) if row <= *end + FRAME_ROWS => {
                *end = row;
                members.push(p);
            }
            _ => runs.push((row, row, vec![p])),
        }
    }
    let mut out = Vec::with_capacity(positions.len());
    for (first, end, members) in runs {
        let df = reader().with_columns(Some(own.clone())).with_slice(Some((first, end + 1 - first))).finish()?;
        let c = Cols(&df);
        let sc = SpanCols::read(&c)?;
        for p in members {
            let resource = index.resources.get(usize::from(index.resource[p])).cloned();
            let scope = index.scopes.get(usize::from(index.scope[p])).cloned();
            let (Some(resource), Some(scope)) = (resource, scope) else {
                return Err(damaged(format!("row {}: no resource or scope in the index", index.row(p))));
            };
            out.push(sc.row(index.row(p) - first, resource, scope));
        }
    }
    Ok(out)
}

/// The search index of `tenant`'s spans in a traces part (`store::span_index`), from the
/// columns it needs only; `None` for parts of the first layout (searched by reading them).
pub(crate) fn span_index(bytes: &[u8], tenant: &Tenant) -> PolarsResult<Option<super::span_index::SpanIndex>> {
    let mut columns: Vec<&str> = vec!["trace_id", "start_time_unix_nano", "end_time_unix_nano", "http_route"];
    columns.extend(COMMON_COLUMNS);
    let reader = || ParquetReader::new(std::io::Cursor::new(bytes));
    let schema = reader().schema()?;
    if !schema.iter_names().any(|n| n.as_str() == "resource_id") {
        return Ok(None);
    }
    // In the file's order: the reader names projected columns by position.
    let projection: Vec<String> =
        schema.iter_names().filter(|n| columns.contains(&n.as_str())).map(|n| n.to_string()).collect();
    let df = reader().with_columns(Some(projection)).finish()?;
    let c = Cols(&df);
    let n = df.height();
    let mut common = Common::read(&c, n, None)?;
    let (start, end, route) = (c.u64("start_time_unix_nano")?, c.u64("end_time_unix_nano")?, c.str("http_route")?);
    let trace_id = c.ids_of::<16>("trace_id")?;
    let mut builder = super::span_index::Builder::new();
    for i in 0..n {
        // Every row is walked: shared values are defined on the first row that uses them.
        let t = common.tenant(i)?;
        let (resource, scope) = common.at(i)?;
        if t != *tenant {
            continue;
        }
        let trace_key = trace_id[i].as_ref().map_or(0, super::parts::trace_key);
        builder.push(i, &resource, &scope, trace_key, start[i].unwrap_or(0), end[i].unwrap_or(0), route[i]);
    }
    let index = builder.finish(n);
    Ok(Some(index))
}

/// The spans of `tenant` in a traces part that `probe` accepts; a row `probe` refuses is never
/// built (its strings are not copied), so a filter on service, time or duration costs little
/// per refused row.
pub(crate) fn spans_where(
    bytes: &[u8],
    tenant: &Tenant,
    probe: &mut dyn FnMut(&super::SpanProbe<'_>) -> bool,
) -> PolarsResult<Vec<SpanRow>> {
    let df = ParquetReader::new(std::io::Cursor::new(bytes)).finish()?;
    let c = Cols(&df);
    let n = df.height();
    let mut common = Common::read(&c, n, None)?;
    let mut keep: Vec<Option<usize>> = Vec::with_capacity(n);
    for i in 0..n {
        keep.push((common.tenant(i)? == *tenant).then_some(0));
    }
    Ok(spans_from_where(&c, &keep, 1, &mut common, Some(probe))?.into_iter().flatten().collect())
}

fn take_spans(groups: Vec<(Tenant, Rows)>) -> Vec<SpanRow> {
    groups
        .into_iter()
        .flat_map(|(_, rows)| match rows {
            Rows::Spans(spans) => spans,
            _ => Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_columns_hold_each_rows_id_or_null_and_read_back_as_hex_did() {
        let ids = [Some([0xab_u8, 0x01]), None, Some([0xff, 0x10])];
        let column = IdColumn::new(ids.iter().map(Option::as_ref)).column("id");
        let values: Vec<Option<&[u8]>> = column.binary().unwrap().iter().collect();
        assert_eq!(values, [Some(&[0xab, 0x01][..]), None, Some(&[0xff, 0x10][..])]);
        let all = IdColumn::new([[1u8, 2], [3, 4]].iter().map(Some)).column("id");
        assert_eq!(all.null_count(), 0);
        let df = DataFrame::new(3, vec![column]).unwrap();
        assert_eq!(Cols(&df).ids_of::<2>("id").unwrap(), ids);
        // Parts written before hold lowercase hex text; a value that is not an id of the
        // column's width reads as none, as it always did.
        let old = col("id", [Some("ab01"), None, Some("ff10")]);
        assert_eq!(Cols(&DataFrame::new(3, vec![old]).unwrap()).ids_of::<2>("id").unwrap(), ids);
        let odd = col("id", [Some("ab0"), Some("zz01"), Some("ab01ff")]);
        assert_eq!(Cols(&DataFrame::new(3, vec![odd]).unwrap()).ids_of::<2>("id").unwrap(), [None, None, None]);
        // A binary id of the wrong width is damage, said with its column and row.
        let wrong = IdColumn::new([[1u8, 2, 3]].iter().map(Some)).column("id");
        let err = Cols(&DataFrame::new(1, vec![wrong]).unwrap()).ids_of::<2>("id").unwrap_err();
        assert!(err.to_string().contains("row 0 of id is 3 bytes, not 2"), "{err}");
    }

    #[test]
    fn text_columns_are_views_into_the_rows_buffers() {
        use crate::model::text::TextBuf;
        let mut buf = TextBuf::default();
        let long = buf.push("GET /api/v1/checkout/{id}").unwrap();
        let short = buf.push("GET /").unwrap();
        let empty = buf.push("").unwrap();
        let accents = buf.push("réservation 😀 échouée").unwrap();
        // A request's worth of other texts.
        buf.push(&"x".repeat(SHARED_BUFFER_BYTES)).unwrap();
        let sealed = buf.seal();
        let (long, short, empty, accents) =
            (sealed.text(long), sealed.text(short), sealed.text(empty), sealed.text(accents));
        let own = Text::from("a text with a small buffer of its own".to_string());
        let texts = [Some(&long), Some(&short), None, Some(&empty), Some(&accents), Some(&own), Some(&long)];
        let mut buffers = TextBuffers::default();
        let mut column = TextColumn::with_capacity(texts.len());
        texts.iter().for_each(|t| column.push(*t, &mut buffers));
        let column = column.finish("t");
        let values: Vec<Option<&str>> = column.str().unwrap().iter().collect();
        let expected: Vec<Option<String>> = texts.iter().map(|t| t.map(Text::to_string)).collect();
        assert_eq!(values, expected.iter().map(Option::as_deref).collect::<Vec<_>>());
        let arrays: Vec<_> = column.str().unwrap().downcast_iter().collect();
        assert_eq!(arrays.len(), 1);
        let data = arrays[0].data_buffers();
        // The request's buffer, shared once and not copied, and polars' own buffer with the
        // copy of the small text; the short and empty values are inlined in their views.
        assert_eq!(data.len(), 2, "{data:?}");
        assert_eq!(data[0].as_ptr(), long.buffer().unwrap().0.as_ptr());
        assert_eq!(&data[1][..], own.as_bytes());
        // The column holds the buffers: dropping the rows' texts leaves its values readable.
        drop((long, short, empty, accents, own, sealed));
        let again: Vec<Option<String>> = column.str().unwrap().iter().map(|v| v.map(str::to_string)).collect();
        assert_eq!(again, expected);
    }

    /// Trace state, status message, events and links are written as nulls when empty (almost
    /// always) and read back as the empty text; values are kept.
    #[test]
    fn empty_span_texts_are_nulls_that_read_back_empty() {
        use crate::model::span::{one_scope_request, rows_from_request};
        use opentelemetry_proto::tonic::trace::v1::{Span, Status, span::Event};
        let spans = vec![
            Span {
                trace_id: vec![1; 16],
                span_id: vec![1; 8],
                name: "a".into(),
                trace_state: "k=v".into(),
                status: Some(Status { code: 2, message: "boom".into() }),
                events: vec![Event { name: "retry".into(), ..Default::default() }],
                ..Default::default()
            },
            Span { trace_id: vec![1; 16], span_id: vec![2; 8], name: "b".into(), ..Default::default() },
        ];
        let rows = rows_from_request(one_scope_request(spans));
        let columns = spans_columns(&rows.iter().collect::<Vec<_>>());
        let nulls = |name: &str| columns.iter().find(|c| c.name() == name).unwrap().null_count();
        assert_eq!([nulls("trace_state"), nulls("status_message"), nulls("events"), nulls("links")], [1, 1, 1, 2]);
        assert_eq!(nulls("name"), 0);
        let df = DataFrame::new(2, columns).unwrap();
        let cols = SpanCols::read(&Cols(&df)).unwrap();
        for (i, written) in rows.iter().enumerate() {
            let back = cols.row(i, Arc::clone(&written.resource), Arc::clone(&written.scope));
            assert_eq!(&back, written);
        }
        assert_eq!(rows[1].events, "");
    }

    #[test]
    fn hex_ids_match_the_hex_crate() {
        let id = [0u8, 1, 0x7f, 0x80, 0xab, 0xff];
        assert_eq!(hex_id(&id), hex::encode(id));
    }
}
