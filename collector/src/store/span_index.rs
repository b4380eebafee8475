//! The columns of a traces part that span searches and trace lookups filter on (trace key,
//! service, start, duration, `http.route`, and each row's number), per part and tenant, kept in
//! memory — built when a flush writes the part, for the parts found at start-up (newest first,
//! in the background), or when a search first reads a part the cache had no room for — so
//! searches and trace lookups test those conditions without opening the file.
//!
//! Design: a part never changes once written, so what was read from it (verified against its
//! size and checksum) stays true; an index is dropped when its part leaves the catalog
//! (retention, quarantine). Memory is bounded: indexes take about 28 bytes per span and the
//! cache holds at most `storage.span_index_cache_bytes` (32 MiB by default, about 1.2 million
//! spans). The indexes of the parts a flush writes — the newest data, which most reads ask
//! for — push out the ones kept longest; other indexes are kept only while there is room,
//! and are otherwise built for one search and not kept. Only the rows that pass the filter are then read whole from the part (see
//! `columns::rows_of`), so a search whose conditions no span of a part meets does not decode
//! that part's strings at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::tenant::Tenant;

/// Marks "no value" in [`SpanIndex::service`] and [`SpanIndex::route`].
pub const NONE: u16 = u16::MAX;
/// Marks "a value the index could not keep" (more distinct values than it has ids for).
pub const UNKNOWN: u16 = u16::MAX - 1;

/// One tenant's spans of one part, as columns.
#[derive(Debug, Default)]
pub struct SpanIndex {
    /// Row numbers in the part; `None` when the tenant's spans are all of the part's rows.
    pub rows: Option<Vec<u32>>,
    /// Trace key of each span (`parts::trace_key`: the first 8 bytes of the trace id).
    pub trace_key: Vec<u64>,
    /// Index into `services`, or [`NONE`]/[`UNKNOWN`].
    pub service: Vec<u16>,
    pub services: Vec<Arc<str>>,
    pub start: Vec<u64>,
    /// Whole microseconds, rounded up, saturating (so `start + duration` is never before the end).
    pub duration_us: Vec<u32>,
    /// Index into `routes`, or [`NONE`]/[`UNKNOWN`].
    pub route: Vec<u16>,
    pub routes: Vec<Arc<str>>,
    /// Index into `resources` and `scopes` of each span, so its row is built from the span
    /// columns alone; valid when `dictionaries` (a part with more distinct resources or scopes
    /// than `u16` ids is read with its shared-value columns instead).
    pub resource: Vec<u16>,
    pub scope: Vec<u16>,
    pub resources: Vec<Arc<crate::model::ResourceColumns>>,
    pub scopes: Vec<Arc<crate::model::ScopeColumns>>,
    pub dictionaries: bool,
}

/// What a filter sees of an indexed span.
#[derive(Debug, Clone, Copy)]
pub struct IndexedSpan<'a> {
    /// `None` when the span has no service; `Some(None)` when the index does not know it.
    pub service_name: Option<Option<&'a str>>,
    pub start_unix_nano: u64,
    /// At least the span's end.
    pub end_unix_nano_max: u64,
    /// `http.route`: `None` when the span has none; `Some(None)` when the index does not know it.
    pub http_route: Option<Option<&'a str>>,
}

impl SpanIndex {
    pub fn len(&self) -> usize {
        self.start.len()
    }

    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
    }

    /// The row number in the part of span `i`.
    pub fn row(&self, i: usize) -> usize {
        self.rows.as_ref().map_or(i, |rows| rows[i] as usize)
    }

    /// Memory the index holds, by its columns' capacities (what the cache counts).
    fn bytes(&self) -> usize {
        fn held<T>(v: &Vec<T>) -> usize {
            v.capacity() * size_of::<T>()
        }
        held(&self.trace_key)
            + held(&self.service)
            + held(&self.start)
            + held(&self.duration_us)
            + held(&self.route)
            + held(&self.resource)
            + held(&self.scope)
            + self.rows.as_ref().map_or(0, held)
            + held(&self.resources)
            + held(&self.scopes)
            + held(&self.services)
            + held(&self.routes)
            + self.resources.iter().map(|r| r.attributes.len() + 128).sum::<usize>()
            + self.scopes.iter().map(|s| s.attributes.len() + 96).sum::<usize>()
            + self.services.iter().chain(&self.routes).map(|s| s.len() + 16).sum::<usize>()
    }

    /// Span `i` (a position in the index, not a row number).
    pub fn span(&self, i: usize) -> IndexedSpan<'_> {
        fn text(id: u16, values: &[Arc<str>]) -> Option<Option<&str>> {
            match id {
                NONE => None,
                UNKNOWN => Some(None),
                id => Some(values.get(usize::from(id)).map(|v| &**v)),
            }
        }
        let start = self.start[i];
        IndexedSpan {
            service_name: text(self.service[i], &self.services),
            start_unix_nano: start,
            end_unix_nano_max: start.saturating_add(u64::from(self.duration_us[i]) * 1_000),
            http_route: text(self.route[i], &self.routes),
        }
    }
}

/// Interns strings into `u16` ids, [`UNKNOWN`] past the id space.
#[derive(Debug, Default)]
pub(crate) struct Interner<'a> {
    ids: HashMap<&'a str, u16, foldhash::quality::RandomState>,
    pub values: Vec<Arc<str>>,
}

impl<'a> Interner<'a> {
    pub fn id(&mut self, value: Option<&'a str>) -> u16 {
        let Some(v) = value else { return NONE };
        if let Some(id) = self.ids.get(v) {
            return *id;
        }
        if self.values.len() >= usize::from(UNKNOWN) {
            return UNKNOWN;
        }
        let id = self.values.len() as u16;
        self.values.push(Arc::from(v));
        self.ids.insert(v, id);
        id
    }
}

/// Builds one tenant's [`SpanIndex`] span by span: from a part's decoded columns
/// (`columns::span_index`), or from the rows a flush has just written ([`of_rows`]), so a new
/// part is indexed without reading it back. Resources and scopes get ids by identity (the same
/// `Arc`), as the part writer gives them theirs, so both ways give the same dictionaries.
#[derive(Debug, Default)]
pub(crate) struct Builder<'a> {
    index: SpanIndex,
    rows: Vec<u32>,
    // Hashed per span while a flush writes its parts: foldhash, not SipHash (a visible share
    // of the flush); routes and services are the client's text, hence its seeded quality hash.
    services: HashMap<Arc<str>, u16, foldhash::quality::RandomState>,
    service_of: Vec<u16>,
    routes: Interner<'a>,
    resource_ids: HashMap<usize, u16, foldhash::fast::RandomState>,
    scope_ids: HashMap<usize, u16, foldhash::fast::RandomState>,
}

impl<'a> Builder<'a> {
    pub fn new() -> Builder<'a> {
        Builder { index: SpanIndex { dictionaries: true, ..SpanIndex::default() }, ..Builder::default() }
    }

    /// Adds the span at row `row` of the part.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        row: usize,
        resource: &Arc<crate::model::ResourceColumns>,
        scope: &Arc<crate::model::ScopeColumns>,
        trace_key: u64,
        start: u64,
        end: u64,
        route: Option<&'a str>,
    ) {
        let index = &mut self.index;
        let r = match self.resource_ids.get(&(Arc::as_ptr(resource) as usize)) {
            Some(r) => *r,
            None if index.resources.len() < usize::from(UNKNOWN) => {
                let r = index.resources.len() as u16;
                self.resource_ids.insert(Arc::as_ptr(resource) as usize, r);
                self.service_of.push(match &resource.service_name {
                    None => NONE,
                    Some(name) => match self.services.get(name) {
                        Some(id) => *id,
                        None if index.services.len() < usize::from(UNKNOWN) => {
                            let id = index.services.len() as u16;
                            self.services.insert(Arc::clone(name), id);
                            index.services.push(Arc::clone(name));
                            id
                        }
                        None => UNKNOWN,
                    },
                });
                index.resources.push(Arc::clone(resource));
                r
            }
            None => {
                index.dictionaries = false;
                UNKNOWN
            }
        };
        let sc = match self.scope_ids.get(&(Arc::as_ptr(scope) as usize)) {
            Some(sc) => *sc,
            None if index.scopes.len() < usize::from(UNKNOWN) => {
                let sc = index.scopes.len() as u16;
                self.scope_ids.insert(Arc::as_ptr(scope) as usize, sc);
                index.scopes.push(Arc::clone(scope));
                sc
            }
            None => {
                index.dictionaries = false;
                UNKNOWN
            }
        };
        let service = match r {
            UNKNOWN => match resource.service_name.as_deref() {
                None => NONE,
                Some(_) => UNKNOWN,
            },
            r => self.service_of[usize::from(r)],
        };
        self.rows.push(row as u32);
        index.trace_key.push(trace_key);
        index.resource.push(r);
        index.scope.push(sc);
        index.service.push(service);
        index.start.push(start);
        index.duration_us.push(u32::try_from(end.saturating_sub(start).div_ceil(1_000)).unwrap_or(u32::MAX));
        index.route.push(self.routes.id(route));
    }

    /// Room for `spans` spans, so the columns are not grown (to up to twice their length) span
    /// by span.
    pub fn with_capacity(spans: usize) -> Builder<'a> {
        let mut builder = Builder::new();
        let index = &mut builder.index;
        builder.rows.reserve_exact(spans);
        index.trace_key.reserve_exact(spans);
        index.service.reserve_exact(spans);
        index.start.reserve_exact(spans);
        index.duration_us.reserve_exact(spans);
        index.route.reserve_exact(spans);
        index.resource.reserve_exact(spans);
        index.scope.reserve_exact(spans);
        builder
    }

    /// The index, for a part of `part_rows` rows, its columns no larger than they need be: a
    /// cached index holds exactly what the cache counts.
    pub fn finish(self, part_rows: usize) -> SpanIndex {
        let mut index = self.index;
        index.routes = self.routes.values;
        let mut rows = self.rows;
        rows.shrink_to_fit();
        index.rows = (rows.len() != part_rows).then_some(rows);
        index.trace_key.shrink_to_fit();
        index.service.shrink_to_fit();
        index.start.shrink_to_fit();
        index.duration_us.shrink_to_fit();
        index.route.shrink_to_fit();
        index.resource.shrink_to_fit();
        index.scope.shrink_to_fit();
        index.resources.shrink_to_fit();
        index.scopes.shrink_to_fit();
        index.services.shrink_to_fit();
        index.routes.shrink_to_fit();
        index
    }
}

/// The index of each tenant of a traces part, from the rows it was written from (`members`,
/// in the writer's order: the part's rows are their spans in this order).
pub(crate) fn of_rows(members: &[(&Tenant, Vec<&crate::model::Rows>)]) -> Vec<(Tenant, SpanIndex)> {
    let spans = |rows: &[&crate::model::Rows]| -> usize {
        rows.iter()
            .map(|r| match r {
                crate::model::Rows::Spans(v) => v.len(),
                _ => 0,
            })
            .sum()
    };
    let part_rows: usize = members.iter().map(|(_, rows)| spans(rows)).sum();
    let mut out = Vec::with_capacity(members.len());
    let mut row = 0;
    for (tenant, rows) in members {
        let mut builder = Builder::with_capacity(spans(rows));
        for r in rows {
            let crate::model::Rows::Spans(v) = r else { continue };
            for span in v {
                builder.push(
                    row,
                    &span.resource,
                    &span.scope,
                    super::parts::trace_key(&span.trace_id),
                    span.start_unix_nano,
                    span.end_unix_nano,
                    span.http_route.as_deref(),
                );
                row += 1;
            }
        }
        out.push(((*tenant).clone(), builder.finish(part_rows)));
    }
    out
}

/// The cached indexes by part name and tenant, each with the order it was kept in; the bytes
/// they hold; the next order number.
type Indexes = (HashMap<(String, Tenant), (Arc<SpanIndex>, u64)>, usize, u64);

/// Indexes by part name and tenant, bounded in memory.
#[derive(Debug)]
pub struct Cache {
    inner: Mutex<Indexes>,
    limit: usize,
}

impl Cache {
    /// A cache of at most `limit` bytes of indexes.
    pub fn new(limit: usize) -> Cache {
        Cache { inner: Mutex::default(), limit }
    }

    /// The index of a part for a tenant, if kept; it becomes the most recently used.
    pub fn get(&self, part: &str, tenant: &Tenant) -> Option<Arc<SpanIndex>> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, _, next) = &mut *guard;
        let (index, used) = map.get_mut(&(part.to_string(), tenant.clone()))?;
        *used = *next;
        *next += 1;
        Some(Arc::clone(index))
    }

    /// Keeps `index` if it fits without dropping another (indexing ahead of any query); first
    /// drops the indexes of parts not in `live`.
    pub fn put(&self, part: &str, tenant: &Tenant, index: Arc<SpanIndex>, live: &dyn Fn(&str) -> bool) {
        self.insert(part, tenant, index, live, false);
    }

    /// Keeps `index` (of a part just written, or one a query needs now), dropping the least
    /// recently used indexes to make room; first drops the indexes of parts not in `live`. An
    /// index larger than the whole cache is not kept.
    pub fn put_newest(&self, part: &str, tenant: &Tenant, index: Arc<SpanIndex>, live: &dyn Fn(&str) -> bool) {
        self.insert(part, tenant, index, live, true);
    }

    fn insert(&self, part: &str, tenant: &Tenant, index: Arc<SpanIndex>, live: &dyn Fn(&str) -> bool, evict: bool) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, bytes, next) = &mut *guard;
        let before = map.len();
        map.retain(|(name, _), _| live(name));
        if map.len() != before {
            *bytes = map.values().map(|(i, _)| i.bytes()).sum();
        }
        let size = index.bytes();
        if evict && size <= self.limit && *bytes + size > self.limit {
            let mut kept: Vec<(u64, (String, Tenant))> =
                map.iter().map(|(k, (_, order))| (*order, k.clone())).collect();
            kept.sort_unstable_by_key(|(order, _)| *order);
            for (_, key) in kept {
                if *bytes + size <= self.limit {
                    break;
                }
                if let Some((old, _)) = map.remove(&key) {
                    *bytes -= old.bytes();
                }
            }
        }
        if *bytes + size <= self.limit {
            *bytes += size;
            map.insert((part.to_string(), tenant.clone()), (index, *next));
            *next += 1;
        }
    }

    /// Whether the cache holds as much as it may (within 1 MiB): no further index is kept
    /// unless it pushes another out ([`Cache::put_newest`]).
    pub fn is_full(&self) -> bool {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.1 + (1 << 20) >= self.limit
    }

    /// Drops a part's indexes (it was quarantined or deleted).
    pub fn forget(&self, part: &str) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, bytes, _) = &mut *guard;
        map.retain(|(name, _), _| name != part);
        *bytes = map.values().map(|(i, _)| i.bytes()).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spans of two services and routes over a few resources and traces.
    fn spans(tenant_mark: u8, n: usize) -> crate::model::Rows {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
            key_strindex: 0,
        };
        let resource_spans = (0..3u8)
            .map(|r| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", if r == 2 { "b" } else { "a" }), kv("host", &r.to_string())],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: (0..n)
                        .map(|i| Span {
                            trace_id: [tenant_mark, r, i as u8, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8].to_vec(),
                            span_id: [r, i as u8, 1, 1, 1, 1, 1, 1].to_vec(),
                            name: "GET".into(),
                            kind: 2,
                            start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64 * 1_000,
                            end_time_unix_nano: 1_700_000_000_000_000_000 + i as u64 * 1_000 + 1_500 * (i as u64 + 1),
                            attributes: if i % 2 == 0 { vec![kv("http.route", "/r/{id}")] } else { vec![] },
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        crate::model::Rows::Spans(crate::model::span::rows_from_request(ExportTraceServiceRequest { resource_spans }))
    }

    fn described(index: &SpanIndex) -> String {
        let names = |v: &[Arc<crate::model::ResourceColumns>]| -> Vec<String> {
            v.iter().map(|r| format!("{:?} {}", r.service_name, r.attributes)).collect()
        };
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {}",
            index.rows,
            index.trace_key,
            index.service,
            index.services,
            index.start,
            index.duration_us,
            index.route,
            index.routes,
            index.resource,
            index.scope,
            names(&index.resources),
            index.dictionaries
        )
    }

    // A flush indexes the part it writes from the rows it wrote: the index must be the one a
    // read of the part builds, row numbers included, for each tenant of a shared part.
    #[test]
    fn the_index_of_the_written_rows_is_the_index_of_the_part() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Tenant::parse("a").unwrap(), Tenant::parse("b").unwrap());
        let (ra, rb, ra2) = (spans(1, 5), spans(2, 3), spans(3, 2));
        let members = vec![(&a, vec![&ra, &ra2]), (&b, vec![&rb])];
        let name = super::super::parts::part_name("@shared", crate::signal::Signal::Traces, "2023-11-14T22", 1);
        let meta = super::super::parts::write_part(dir.path(), &name, 1, crate::signal::Signal::Traces, &members, None)
            .unwrap()
            .unwrap();
        let built = of_rows(&members);
        assert_eq!(built.len(), 2);
        for (tenant, index) in &built {
            let read = super::super::parts::read_part_index(&meta, tenant).unwrap().unwrap();
            assert_eq!(described(index), described(&read), "tenant {tenant}");
        }
        assert_eq!(built[0].1.len(), 21);
        assert_eq!(built[1].1.row(0), 21, "tenant b's spans follow a's in the part");
    }

    // The cache bounds its memory by `SpanIndex::bytes`: an index built span by span held up
    // to twice what its columns' lengths said (Vec growth), which the cache did not count.
    #[test]
    fn an_index_holds_no_spare_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Tenant::parse("a").unwrap(), Tenant::parse("b").unwrap());
        let (ra, rb) = (spans(1, 5), spans(2, 3));
        let members = vec![(&a, vec![&ra]), (&b, vec![&rb])];
        let name = super::super::parts::part_name("@shared", crate::signal::Signal::Traces, "2023-11-14T22", 1);
        let meta = super::super::parts::write_part(dir.path(), &name, 1, crate::signal::Signal::Traces, &members, None)
            .unwrap()
            .unwrap();
        let read = super::super::parts::read_part_index(&meta, &b).unwrap().unwrap();
        for (how, index) in of_rows(&members).iter().map(|(_, i)| ("built", i)).chain([("read", &read)]) {
            let n = index.len();
            assert!(n > 0);
            let columns = [
                index.trace_key.capacity(),
                index.service.capacity(),
                index.start.capacity(),
                index.duration_us.capacity(),
                index.route.capacity(),
                index.resource.capacity(),
                index.scope.capacity(),
            ];
            assert_eq!(columns, [n; 7], "{how}: capacity of each column of {n} spans");
            assert!(index.rows.as_ref().is_none_or(|r| r.capacity() == n), "{how}");
        }
    }

    #[test]
    fn spans_read_back_with_conservative_ends_and_unknowns() {
        let mut services = Interner::default();
        let index = SpanIndex {
            rows: Some(vec![0, 5]),
            trace_key: vec![1, 2],
            service: vec![services.id(Some("a")), UNKNOWN],
            services: services.values,
            start: vec![100, 200],
            duration_us: vec![2, 0],
            route: vec![NONE, 0],
            routes: vec![Arc::from("/r")],
            ..SpanIndex::default()
        };
        let s = index.span(0);
        assert_eq!(
            (s.service_name, s.start_unix_nano, s.end_unix_nano_max, s.http_route),
            (Some(Some("a")), 100, 2_100, None)
        );
        let s = index.span(1);
        assert_eq!((s.service_name, s.http_route), (Some(None), Some(Some("/r"))));
        let cache = Cache::new(1 << 20);
        let t = Tenant::parse("t").unwrap();
        cache.put("p1", &t, Arc::new(index), &|_| true);
        assert!(cache.get("p1", &t).is_some());
        cache.put("p2", &t, Arc::new(SpanIndex::default()), &|name| name != "p1");
        assert!(cache.get("p1", &t).is_none(), "indexes of parts gone from the catalog are dropped");
        cache.forget("p2");
        assert!(cache.get("p2", &t).is_none());
    }

    /// An index of `n` spans.
    fn of_spans(n: usize) -> Arc<SpanIndex> {
        Arc::new(SpanIndex {
            trace_key: vec![0; n],
            service: vec![NONE; n],
            start: vec![0; n],
            duration_us: vec![0; n],
            route: vec![NONE; n],
            resource: vec![0; n],
            scope: vec![0; n],
            ..SpanIndex::default()
        })
    }

    /// The cache never holds more than its limit; a flush's indexes push out the least
    /// recently used, indexes built ahead of any query are kept only while there is room.
    #[test]
    fn the_newest_indexes_push_out_the_oldest_within_the_limit() {
        let one = of_spans(1000).bytes();
        let cache = Cache::new(3 * one);
        let t = Tenant::parse("t").unwrap();
        let all = |_: &str| true;
        for part in ["p1", "p2", "p3"] {
            cache.put_newest(part, &t, of_spans(1000), &all);
        }
        assert!(cache.is_full());
        cache.put("old", &t, of_spans(1000), &all);
        assert!(cache.get("old", &t).is_none(), "no room: a read's index is not kept");
        cache.put_newest("p4", &t, of_spans(1000), &all);
        assert!(cache.get("p1", &t).is_none(), "the index used least recently made room");
        for part in ["p2", "p3", "p4"] {
            assert!(cache.get(part, &t).is_some(), "{part}");
        }
        cache.put_newest("p5", &t, of_spans(2000), &all);
        assert!(cache.get("p2", &t).is_none() && cache.get("p3", &t).is_none());
        assert!(cache.get("p4", &t).is_some() && cache.get("p5", &t).is_some());
        cache.put_newest("huge", &t, of_spans(4000), &all);
        assert!(cache.get("huge", &t).is_none(), "larger than the whole cache: not kept, nothing pushed out");
        assert!(cache.get("p4", &t).is_some() && cache.get("p5", &t).is_some());
        let held: usize = ["p4", "p5"].iter().map(|p| cache.get(p, &t).unwrap().bytes()).sum();
        assert!(held <= 3 * one);
    }

    /// A full cache does not freeze: the index a query needs (a part a search opens) pushes
    /// out the one used least recently, and an index in use stays — with seven days of
    /// compacted hours the last hour's index was otherwise rebuilt by every search.
    #[test]
    fn a_query_s_index_pushes_out_the_least_recently_used() {
        let one = of_spans(1000).bytes();
        let cache = Cache::new(3 * one);
        let t = Tenant::parse("t").unwrap();
        let all = |_: &str| true;
        for part in ["h1", "h2", "h3"] {
            cache.put(part, &t, of_spans(1000), &all);
        }
        assert!(cache.is_full());
        // h1 is searched; then a search needs the last hour's index.
        assert!(cache.get("h1", &t).is_some());
        cache.put_newest("last", &t, of_spans(1000), &all);
        assert!(cache.get("last", &t).is_some(), "kept for the next search");
        assert!(cache.get("h2", &t).is_none(), "the least recently used made room");
        assert!(cache.get("h1", &t).is_some() && cache.get("h3", &t).is_some());
    }
}
