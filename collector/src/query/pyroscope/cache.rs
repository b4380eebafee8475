//! Decoded profile parts, kept between queries.
//!
//! Grafana asks the same questions again and again (a dashboard refreshes, the query editor
//! autocompletes, a flame graph and its time series are two calls over the same range), and
//! Parquet parts never change once written. Decoding a part's rows costs far more than reading
//! them, so the rows of recently read profile parts are kept, for each tenant, keyed by the
//! part's file path, size and checksum (a path can only be reused by a different file, which
//! has another checksum or size). The cache is bounded by the rows it holds
//! ([`MAX_CACHED_ROWS`]) and drops the least recently used parts past it. A part that fails
//! to read is never cached: the read is done again through [`crate::store::Store::scan`], which
//! sets a damaged part aside and reports it. Rows of one read with the same stack text share one
//! `Arc` (the part decoder allocates each text once), so queries sum stacks by address.
//!
//! A query for one service reads only that service's slice of a part ([`service_rows`],
//! `store::parts::read_part_slice`), cached under the service; a part read whole, when it is
//! cached, answers for every service.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crate::model::Rows;
use crate::store::parts::{PartMeta, read_part, read_part_slice};
use crate::tenant::Tenant;

/// Most profile rows the cache holds: about 110 bytes each beside the stacks and attribute texts
/// they share, so at most about 450 MB; 4M rows are two hours of 20 services' CPU profiles
/// taken every 15 s.
pub const MAX_CACHED_ROWS: usize = 4_000_000;

/// A part (path, size, checksum), a tenant, and the service of a slice (`None`: the whole part).
type Key = (PathBuf, u64, u32, Tenant, Option<String>);

#[derive(Default)]
struct Cache {
    parts: HashMap<Key, (Arc<Rows>, u64)>,
    rows: usize,
    tick: u64,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Cache::default()))
}

fn len(rows: &Rows) -> usize {
    match rows {
        Rows::Profiles(r) => r.len(),
        _ => 0,
    }
}

fn key(part: &PartMeta, tenant: &Tenant, service: Option<&str>) -> Key {
    (part.path.clone(), part.size, part.crc32, tenant.clone(), service.map(str::to_string))
}

/// The cached rows under `key`, marked as used now.
fn cached(key: &Key) -> Option<Arc<Rows>> {
    let mut c = cache().lock().ok()?;
    c.tick += 1;
    let tick = c.tick;
    let entry = c.parts.get_mut(key)?;
    entry.1 = tick;
    Some(Arc::clone(&entry.0))
}

/// The tenant's rows of `part`, from the cache or read now; `None` when the part could not be
/// read (the caller reads it through the store, which reports why).
pub fn rows(part: &PartMeta, tenant: &Tenant) -> Option<Arc<Rows>> {
    let key = key(part, tenant, None);
    if let Some(rows) = cached(&key) {
        return Some(rows);
    }
    let rows = read_part(part, tenant).ok()?;
    Some(insert(key, rows))
}

/// The tenant's rows of `part` that may be of `service`: its service slice, or the whole part
/// when it is cached or has no slices (the caller still filters by service). `None` when the
/// part could not be read, as for [`rows`].
pub fn service_rows(part: &PartMeta, tenant: &Tenant, service: &str) -> Option<Arc<Rows>> {
    if let Some(rows) = cached(&key(part, tenant, None)) {
        return Some(rows);
    }
    let key = key(part, tenant, Some(service));
    if let Some(rows) = cached(&key) {
        return Some(rows);
    }
    match read_part_slice(part, tenant, Some(service)).ok()? {
        Some(rows) => Some(insert(key, rows)),
        None => rows(part, tenant),
    }
}

/// Caches freshly read rows (when they are few enough) and answers them.
fn insert(key: Key, rows: Rows) -> Arc<Rows> {
    let rows = Arc::new(rows);
    let n = len(&rows);
    if n <= MAX_CACHED_ROWS / 4
        && let Ok(mut c) = cache().lock()
    {
        while c.rows + n > MAX_CACHED_ROWS {
            let Some(oldest) = c.parts.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()) else { break };
            if let Some((old, _)) = c.parts.remove(&oldest) {
                c.rows -= len(&old);
            }
        }
        let tick = c.tick;
        if c.parts.insert(key, (Arc::clone(&rows), tick)).is_none() {
            c.rows += n;
        }
    }
    rows
}
