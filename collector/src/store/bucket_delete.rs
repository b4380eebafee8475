//! Tenant deletion in a shared bucket (`docs/tenant-deletion.md`).
//!
//! ```text
//! deletions/<tenant>/<ms>-<writer>.json              the request, created by the collector asked
//! deletions/<tenant>/<ms>-<writer>.done-own.json     the tenant directory's compactor removed its
//!                                                    parts and every writer's series segments
//! deletions/<tenant>/<ms>-<writer>.done-shared.json  `@shared`'s compactor wrote the shared parts
//!                                                    again without it; {"masked":[…]}: shared
//!                                                    parts it could not (see below)
//! ```
//!
//! While a request lacks either `done` object, every collector leaves all of the tenant's
//! objects in the bucket out of its reads, its own committed parts included. Each collector,
//! when its sync pass first lists a request, deletes the tenant from its own data directory
//! (`store::delete`), which its uploader turns into removals of its own objects, and remembers
//! the request in `<data-dir>/bucket-deletions.log`. Parts it shares with other tenants that
//! are committed already it leaves as they are (it waits for its uploader to commit them
//! first): a committed part is replaced only through the compaction log, so two outputs of one
//! part never both stay. Once the request is older than a flush interval and two listings, so
//! live writers have done their part, the compactors finish the rest: the tenant directory's
//! removes what is left of it (objects of writers that are gone, outputs of merges), `@shared`'s
//! writes every shared part holding it again without it — a metrics part in its writer's name,
//! covered by that writer's segments of the other tenants (`bucket::compact`) — and each writer
//! drops its copies as it applies those entries.
//!
//! Shared parts that cannot be written again (unreadable, or metrics no segment covers) are
//! *masked*: named in the `done-shared` object, and every reader leaves the tenant's rows in
//! them out, for good. Masked parts are never merged, which would carry those rows into an
//! output nobody masks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::tenant::Tenant;

use super::{Bucket, RequestError, now_ms};

/// Where the requests and their `done` objects are, under the bucket's prefix.
pub(crate) const DIR: &str = "deletions";
/// The requests this collector applied to its data directory.
const APPLIED_LOG: &str = "bucket-deletions.log";
/// Largest `done-shared` object read.
const MAX_DONE_BYTES: u64 = 16 << 20;

/// Which compactor's part of a deletion a `done` object records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Part {
    /// The tenant's directory: its parts and every writer's series segments of it.
    Own,
    /// `@shared`: the shared parts holding the tenant.
    Shared,
}

impl Part {
    fn suffix(self) -> &'static str {
        match self {
            Part::Own => ".done-own.json",
            Part::Shared => ".done-shared.json",
        }
    }
}

/// One object under `deletions/`, from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub tenant: Tenant,
    /// `deletions/<tenant>/<ms>-<writer>`: the request's name without `.json`.
    pub stem: String,
    pub unix_ms: u64,
    /// `None`: the request itself.
    pub done: Option<Part>,
}

/// Parses a name under `deletions/`; `None` for anything else.
pub(crate) fn parse(name: &str) -> Option<Entry> {
    let rest = name.strip_prefix(DIR)?.strip_prefix('/')?;
    let (tenant, file) = rest.split_once('/')?;
    let tenant = Tenant::parse(tenant).ok()?;
    let (file, done) = [Part::Own, Part::Shared]
        .into_iter()
        .find_map(|p| file.strip_suffix(p.suffix()).map(|f| (f, Some(p))))
        .or_else(|| file.strip_suffix(".json").map(|f| (f, None)))?;
    let (ms, writer) = file.split_once('-')?;
    let valid = ms.len() == 13
        && ms.bytes().all(|b| b.is_ascii_digit())
        && !writer.is_empty()
        && writer.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then_some(())?;
    let stem = format!("{DIR}/{}/{file}", tenant.as_str());
    Some(Entry { tenant, stem, unix_ms: ms.parse().ok()?, done })
}

/// The name of a `done` object of the request `stem`.
pub(crate) fn done_name(stem: &str, part: Part) -> String {
    format!("{stem}{}", part.suffix())
}

/// The body of a `done-shared` object.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct SharedDone {
    /// Shared parts whose rows of the tenant readers leave out (not written again).
    #[serde(default)]
    pub masked: Vec<String>,
}

/// What readers leave out, as the last listing of `deletions/` found it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Hidden {
    /// Tenants with a request not yet done: every object of theirs in the bucket.
    pub pending: HashSet<Tenant>,
    /// Shared parts whose rows of these tenants are deleted.
    pub masked: HashMap<String, Vec<Tenant>>,
    /// The requests not done, with the parts of them done (for the compactors).
    pub requests: Vec<(Entry, BTreeSet<Part>)>,
    /// Every request listed, by stem.
    listed: BTreeSet<String>,
}

impl Hidden {
    /// Whether a bucket object's rows of `tenant` are deleted.
    pub fn hides(&self, tenant: &Tenant, name: &str) -> bool {
        self.pending.contains(tenant) || self.masked.get(name).is_some_and(|t| t.contains(tenant))
    }
}

/// What the sync thread keeps between listings of `deletions/`: the `done-shared` bodies
/// read, by name.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    masks: BTreeMap<String, Vec<String>>,
}

/// Creates the `done` object `part` of request `stem` (done already is fine).
pub(crate) fn finish(bucket: &Bucket, stem: &str, part: Part, masked: Vec<String>) -> Result<(), RequestError> {
    let body = match part {
        Part::Own => b"{}".to_vec(),
        Part::Shared => serde_json::to_vec(&SharedDone { masked }).map_err(|e| RequestError::Other(e.to_string()))?,
    };
    match bucket.create(&done_name(stem, part), Bytes::from(body)) {
        Ok(()) | Err(RequestError::Exists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates a deletion request for `tenant`; returns its name.
pub(crate) fn request(bucket: &Bucket, tenant: &Tenant) -> Result<String, RequestError> {
    let name = format!("{DIR}/{}/{:013}-{}.json", tenant.as_str(), now_ms(), bucket.writer);
    let body = serde_json::json!({"tenant": tenant.as_str(), "writer": bucket.writer, "unix_ms": now_ms()});
    bucket.create(&name, Bytes::from(body.to_string()))?;
    Ok(name)
}

/// Lists `deletions/`: what readers are to leave out, and the requests this collector has not
/// applied to its data directory yet, oldest first. The caller lists before it applies the
/// manifests and the compaction log, and publishes after: a `done` object is created after
/// the log entry it follows, so the entry is applied by the time the deletion stops hiding.
pub(crate) fn list(bucket: &Bucket, listing: &mut Listing) -> Result<(Hidden, Vec<Entry>), RequestError> {
    let names = bucket.list(DIR, None)?;
    let entries: Vec<Entry> = names.iter().filter_map(|n| parse(n)).collect();
    let mut done: BTreeMap<&str, BTreeSet<Part>> = BTreeMap::new();
    for e in &entries {
        if let Some(part) = e.done {
            done.entry(e.stem.as_str()).or_default().insert(part);
        }
    }
    let mut hidden = Hidden::default();
    for e in entries.iter().filter(|e| e.done.is_none()) {
        hidden.listed.insert(e.stem.clone());
        let parts = done.get(e.stem.as_str());
        if parts.is_none_or(|p| p.len() < 2) {
            hidden.pending.insert(e.tenant.clone());
            hidden.requests.push((e.clone(), parts.cloned().unwrap_or_default()));
        }
        if parts.is_some_and(|p| p.contains(&Part::Shared)) {
            let name = done_name(&e.stem, Part::Shared);
            if !listing.masks.contains_key(&name) {
                let body: SharedDone = match bucket.get(&name, MAX_DONE_BYTES) {
                    Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                        tracing::error!(object = %name, %err, "a tenant deletion's done object does not parse; nothing masked");
                        SharedDone::default()
                    }),
                    Err(RequestError::NotFound) => continue,
                    Err(e) => return Err(e),
                };
                listing.masks.insert(name.clone(), body.masked);
            }
            for part in &listing.masks[&name] {
                hidden.masked.entry(part.clone()).or_default().push(e.tenant.clone());
            }
        }
    }
    let applied = bucket.applied.lock().unwrap_or_else(|e| e.into_inner());
    let unapplied = entries.into_iter().filter(|e| e.done.is_none() && !applied.contains(&e.stem)).collect();
    Ok((hidden, unapplied))
}

/// Publishes what readers leave out, with the tenants of requests this collector made that
/// the listing did not find yet.
pub(crate) fn publish(bucket: &Bucket, mut hidden: Hidden) {
    let mut requested = bucket.requested.lock().unwrap_or_else(|e| e.into_inner());
    requested.retain(|stem, _| !hidden.listed.contains(stem));
    hidden.pending.extend(requested.values().cloned());
    *bucket.hidden.lock().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(hidden);
}

/// Leaves `tenant` out of reads of the bucket's objects at once: this collector made request
/// `stem`, which its next listing may not find yet.
pub(crate) fn hide(bucket: &Bucket, stem: &str, tenant: &Tenant) {
    bucket.requested.lock().unwrap_or_else(|e| e.into_inner()).insert(stem.to_string(), tenant.clone());
    let mut hidden = bucket.hidden.lock().unwrap_or_else(|e| e.into_inner());
    let mut now = (**hidden).clone();
    now.pending.insert(tenant.clone());
    *hidden = std::sync::Arc::new(now);
}

/// The requests this collector applied, from `<data-dir>/bucket-deletions.log` (one stem a
/// line; a torn last line is a request applied again, which deletes nothing more).
pub(crate) fn read_applied(data_dir: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(data_dir.join(APPLIED_LOG))
        .map(|text| text.lines().filter(|l| parse(&format!("{l}.json")).is_some()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Records, durably, that this collector applied request `stem`.
pub(crate) fn record_applied(bucket: &Bucket, data_dir: &Path, stem: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join(APPLIED_LOG))?;
    file.write_all(format!("{stem}\n").as_bytes())?;
    file.sync_data()?;
    bucket.applied.lock().unwrap_or_else(|e| e.into_inner()).insert(stem.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_refuse_what_is_not_a_deletion() {
        assert_eq!(parse("deletions/pay/0001733400000000-a.json"), None, "not 13 digits");
        let request = parse("deletions/pay/1733400000000-writer_1.json").unwrap();
        assert_eq!((request.tenant.as_str(), request.unix_ms, request.done), ("pay", 1_733_400_000_000, None));
        assert_eq!(request.stem, "deletions/pay/1733400000000-writer_1");
        let own = parse(&done_name(&request.stem, Part::Own)).unwrap();
        assert_eq!((own.stem.as_str(), own.done), (request.stem.as_str(), Some(Part::Own)));
        let shared = parse("deletions/pay/1733400000000-writer_1.done-shared.json").unwrap();
        assert_eq!(shared.done, Some(Part::Shared));
        for bad in [
            "deletions/pay/1733400000000-.json",
            "deletions/pay/1733400000000-a/b.json",
            "deletions/../1733400000000-a.json",
            "deletions/pay/173340000000x-a.json",
            "deletions/pay/1733400000000-a.done-other.json",
            "manifests/pay/1733400000000-a.json",
            "deletions/1733400000000-a.json",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn hidden_rows_are_a_pending_tenants_or_a_masked_parts() {
        let (pay, shop) = (Tenant::parse("pay").unwrap(), Tenant::parse("shop").unwrap());
        let hidden = Hidden {
            pending: [pay.clone()].into_iter().collect(),
            masked: [("parts/@shared/metrics/h/a-1-x.parquet".to_string(), vec![shop.clone()])].into_iter().collect(),
            ..Hidden::default()
        };
        assert!(hidden.hides(&pay, "anything"));
        assert!(hidden.hides(&shop, "parts/@shared/metrics/h/a-1-x.parquet"));
        assert!(!hidden.hides(&shop, "parts/@shared/metrics/h/a-2-x.parquet"));
    }
}
