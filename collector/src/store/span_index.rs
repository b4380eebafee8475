//! The columns of a traces part that span searches and trace lookups filter on (trace key,
//! service, start, duration, `http.route`, and each row's number), per part and tenant, kept in
//! memory — built when a flush writes the part, for the parts found at start-up (newest first,
//! in the background), or when a search first reads a part the cache had no room for — so
//! searches and trace lookups test those conditions without opening the file.
//!
//! Design: a part never changes once written, so what was read from it (verified against its
//! size and checksum) stays true; an index is dropped when its part leaves the catalog
//! (retention, quarantine). Memory is bounded: indexes take about 28 bytes per span and the
//! cache holds at most [`MAX_CACHE_BYTES`]; past it new indexes are built for one search and
//! not kept. Only the rows that pass the filter are then read whole from the part (see
//! `columns::rows_of`), so a search whose conditions no span of a part meets does not decode
//! that part's strings at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::tenant::Tenant;

/// The most memory the cached indexes hold.
pub const MAX_CACHE_BYTES: usize = 320 << 20;

/// The lookup key of a trace id (its first 8 bytes), as in the catalog's trace-key lists.
pub fn trace_key_of_hex(hex: &str) -> Option<u64> {
    u64::from_str_radix(hex.get(..16)?, 16).ok()
}

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

    fn bytes(&self) -> usize {
        self.len() * (8 + 2 + 8 + 4 + 2 + 2 + 2)
            + self.resources.iter().map(|r| r.attributes.len() + 128).sum::<usize>()
            + self.scopes.iter().map(|s| s.attributes.len() + 96).sum::<usize>()
            + self.rows.as_ref().map_or(0, |r| r.len() * 4)
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
    ids: HashMap<&'a str, u16>,
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

/// The cached indexes by part name and tenant, and the bytes they hold.
type Indexes = (HashMap<(String, Tenant), Arc<SpanIndex>>, usize);

/// Indexes by part name and tenant, bounded in memory.
#[derive(Debug, Default)]
pub struct Cache {
    inner: Mutex<Indexes>,
}

impl Cache {
    pub fn get(&self, part: &str, tenant: &Tenant) -> Option<Arc<SpanIndex>> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.get(&(part.to_string(), tenant.clone())).cloned()
    }

    /// Keeps `index` if it fits; first drops the indexes of parts not in `live`.
    pub fn put(&self, part: &str, tenant: &Tenant, index: Arc<SpanIndex>, live: &dyn Fn(&str) -> bool) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, bytes) = &mut *guard;
        let before = map.len();
        map.retain(|(name, _), _| live(name));
        if map.len() != before {
            *bytes = map.values().map(|i| i.bytes()).sum();
        }
        let size = index.bytes();
        if *bytes + size <= MAX_CACHE_BYTES {
            *bytes += size;
            map.insert((part.to_string(), tenant.clone()), index);
        }
    }

    /// Whether the cache holds as much as it may (within 1 MiB): no further index is kept.
    pub fn is_full(&self) -> bool {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.1 + (1 << 20) >= MAX_CACHE_BYTES
    }

    /// Drops a part's indexes (it was quarantined or deleted).
    pub fn forget(&self, part: &str) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, bytes) = &mut *guard;
        map.retain(|(name, _), _| name != part);
        *bytes = map.values().map(|i| i.bytes()).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let cache = Cache::default();
        let t = Tenant::parse("t").unwrap();
        cache.put("p1", &t, Arc::new(index), &|_| true);
        assert!(cache.get("p1", &t).is_some());
        cache.put("p2", &t, Arc::new(SpanIndex::default()), &|name| name != "p1");
        assert!(cache.get("p1", &t).is_none(), "indexes of parts gone from the catalog are dropped");
        cache.forget("p2");
        assert!(cache.get("p2", &t).is_none());
    }
}
