//! Garbage collection of the bucket's part and segment objects that nothing names
//! (ADR 0011, `docs/object-storage.md`).
//!
//! An object under `parts/` or `series/` is live while a manifest or a compaction-log entry
//! names it. Some are never named, or stop being named without being deleted:
//!
//! - the output of a bucket merge whose compactor died between uploading it and creating its
//!   log entry (a merge given up while running deletes its own output);
//! - a part or segment uploaded by a collector that died before its manifest;
//! - the inputs of a merge, or parts past retention, whose remover died within the grace it
//!   leaves readers before deleting them.
//!
//! The compactors collect them, each under the lease of the directory the object is in (a
//! tenant, or `@shared`), in two steps an interval apart:
//!
//! 1. **List** every object under `parts/` and `series/` with when it was written, keep those
//!    written more than `orphan_grace` ago that the collector's view (every writer's manifests
//!    and the log, folded by the sync thread) does not name, and ask the sync thread to list
//!    every manifest once, not only the newest.
//! 2. **Delete**, once such a complete listing has been read *after* step 1 started and at least
//!    the readers' grace ([`DELETE_GRACE`], or `orphan_grace` when shorter) has passed: each
//!    candidate the view still does not name whose object is still as old (a `HEAD` right
//!    before the delete: a collector that restarted uploads its uncommitted parts again).
//!
//! Why nothing live is deleted: a writer names what it uploaded in the same upload pass, and a
//! pass that takes half of `orphan_grace` uploads its parts again instead of naming them
//! (`bucket::upload_pass`); a merge is committed within its lease, at most half of
//! `orphan_grace` (checked at start). So an object older than `orphan_grace` is named by a
//! manifest or log entry created before step 1 listed it, or by none, and a complete listing
//! started after step 1 finds every such manifest. A manifest or log entry that could not be
//! parsed may name anything: while one was skipped, this process collects nothing.
//! What is left: a collector paused between the `HEAD` and the delete of step 2 while the
//! object's writer uploads it again *and* commits it (milliseconds against an upload pass).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::signal::Signal;
use crate::tenant::Tenant;

use super::super::Shared;
use super::super::parts;
use super::super::series;
use super::compact::{Compactor, lease};
use super::{Bucket, DELETE_GRACE, RequestError, now_ms};

/// The garbage collector's state, kept between the compactor's passes.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    /// When step 1 runs next (`None`: at the first pass).
    next: Option<Instant>,
    /// Step 1's candidates, waiting for step 2.
    pending: Option<Pending>,
    /// Whether the last step 1 was skipped for a manifest that did not parse (logged once).
    refused: bool,
}

/// What step 1 found.
#[derive(Debug)]
struct Pending {
    /// When its listing started.
    listed: Instant,
    /// Objects no manifest named, by their directory's lease.
    candidates: BTreeMap<String, Vec<String>>,
}

/// The lease directory of one of our objects — `parts/<dir>/<signal>/<hour>/<file>.parquet` or
/// `series/<tenant>/<hour>/<file>.sgs` — or `None` for any other name, which is left alone.
pub(crate) fn owner(name: &str) -> Option<&str> {
    let hour = |h: &str| parts::hour_start(h).is_some();
    let file = |f: &str, suffix: &str| f.len() > suffix.len() && f.ends_with(suffix) && !f.starts_with('.');
    let dir_ok = |d: &str| d == parts::SHARED_DIR || Tenant::parse(d).is_ok();
    match name.split('/').collect::<Vec<_>>().as_slice() {
        [top, dir, signal, h, f]
            if *top == parts::PARTS_DIR
                && dir_ok(dir)
                && Signal::parse(signal).is_some()
                && hour(h)
                && file(f, ".parquet") =>
        {
            Some(dir)
        }
        [top, tenant, h, f]
            if *top == series::SERIES_DIR && Tenant::parse(tenant).is_ok() && hour(h) && file(f, ".sgs") =>
        {
            Some(tenant)
        }
        _ => None,
    }
}

/// Most candidates one step 1 keeps (the rest wait for the next).
const MAX_CANDIDATES: usize = 100_000;

/// When the last sync pass that listed and read every manifest started.
fn listed_in_full(bucket: &Bucket) -> Option<Instant> {
    *bucket.listed_in_full.lock().unwrap_or_else(|e| e.into_inner())
}

/// How often step 1 runs: a quarter of the grace, within the refresh interval and an hour.
fn interval(bucket: &Bucket) -> Duration {
    (bucket.orphan_grace / 4).clamp(bucket.refresh, Duration::from_secs(3600))
}

/// Every object name the collector's view holds: other writers' parts and segments (live or
/// past retention), the damaged ones set aside, and this writer's own, committed or waiting.
fn named(shared: &Shared, bucket: &Bucket) -> HashSet<String> {
    let mut names: HashSet<String> =
        bucket.committed.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
    names.extend(bucket.quarantined.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned());
    let state = shared.read();
    names.extend(state.remote.iter().chain(&state.remote_expired).map(|p| p.name.clone()));
    names.extend(state.remote_series.iter().chain(&state.remote_series_expired).map(|s| s.name.clone()));
    names.extend(state.parts.iter().map(|p| bucket.bucket_name(p)));
    names.extend(state.series.iter().map(|s| bucket.segment_name(s)));
    names
}

/// One step of the garbage collector, when it is due (see the module's text); returns how
/// many objects step 1 found unnamed and old enough (0 for any other step).
pub(crate) fn pass(
    shared: &Shared,
    bucket: &Bucket,
    compactor: &mut Compactor,
    collector: &mut Collector,
) -> Result<u64, String> {
    let mut found = 0;
    if !bucket.compacts {
        return Ok(found);
    }
    if bucket.skipped_manifest.load(Ordering::SeqCst) {
        if !collector.refused {
            tracing::warn!("a bucket manifest or log entry was skipped: no garbage is collected by this process");
        }
        collector.refused = true;
        collector.pending = None;
        return Ok(found);
    }
    match collector.pending.take() {
        // Step 1 once the view is whole: after a sync pass that listed every manifest.
        None if collector.next.is_none_or(|at| Instant::now() >= at) && listed_in_full(bucket).is_some() => {
            collector.next = Some(Instant::now() + interval(bucket));
            let listed = Instant::now();
            let cutoff = i64::try_from(now_ms().saturating_sub(bucket.orphan_grace.as_millis() as u64)).unwrap_or(0);
            let names = Arc::new(named(shared, bucket));
            let mut candidates: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for top in [parts::PARTS_DIR, series::SERIES_DIR] {
                let names = Arc::clone(&names);
                let keep =
                    move |name: &str, written: i64| written <= cutoff && owner(name).is_some() && !names.contains(name);
                let found = bucket
                    .list_where(top, keep, MAX_CANDIDATES)
                    .map_err(|e| bucket.error(e.to_string()).to_string())?;
                for name in found {
                    if let Some(dir) = owner(&name) {
                        candidates.entry(dir.to_string()).or_default().push(name);
                    }
                }
            }
            found = candidates.values().map(|c| c.len() as u64).sum();
            if found > 0 {
                bucket.full_listing.store(true, Ordering::SeqCst);
                collector.pending = Some(Pending { listed, candidates });
            }
        }
        None => {}
        Some(pending) => {
            let wait = DELETE_GRACE.min(bucket.orphan_grace);
            if listed_in_full(bucket).is_none_or(|at| at < pending.listed) || pending.listed.elapsed() < wait {
                collector.pending = Some(pending);
                return Ok(found);
            }
            delete(shared, bucket, compactor, pending)?;
        }
    }
    Ok(found)
}

/// Step 2: deletes each candidate the view still does not name and whose object is still
/// older than the grace, under its directory's lease.
fn delete(shared: &Shared, bucket: &Bucket, compactor: &mut Compactor, pending: Pending) -> Result<(), String> {
    let names = named(shared, bucket);
    for (dir, candidates) in pending.candidates {
        if shared.closing.load(Ordering::Relaxed) {
            break;
        }
        // Another collector holds it: the garbage is its to collect.
        if !lease(bucket, compactor, &dir)? {
            continue;
        }
        for name in candidates.iter().filter(|n| !names.contains(*n)) {
            let cutoff = i64::try_from(now_ms().saturating_sub(bucket.orphan_grace.as_millis() as u64)).unwrap_or(0);
            match bucket.written_ms(name) {
                Ok(written) if written <= cutoff => {}
                Ok(_) | Err(RequestError::NotFound) => continue,
                Err(e) => return Err(bucket.error(e.to_string()).to_string()),
            }
            bucket.delete(name).map_err(|e| bucket.error(e.to_string()).to_string())?;
            shared.telemetry.bucket_orphans_deleted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(object = %name, directory = %dir, "deleted an object no manifest names (older than orphan_grace)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_part_and_segment_names_of_a_directory_are_ever_collected() {
        assert_eq!(owner("parts/a/traces/2026-12-05T12/w-000001-0badcafe.parquet"), Some("a"));
        assert_eq!(owner("parts/@shared/logs/2026-12-05T12/w-m1764930000000-0badcafe.parquet"), Some("@shared"));
        assert_eq!(owner("series/a/2026-12-05T12/w-00000000000000000001-00000000000000000002.sgs"), Some("a"));
        for other in [
            "manifests/1764930000000-w-1.json",
            "compactions/000000000007.json",
            "leases/a.json",
            "deletions/a/1764930000000-w.json",
            "parts/a/traces/2026-12-05T12/notes.txt",
            "parts/a/traces/2026-12-05T12/.parquet",
            "parts/a/unknown/2026-12-05T12/w-1.parquet",
            "parts/a/traces/hour/w-1.parquet",
            "parts/a/traces/2026120512/w-1.parquet",
            "parts/../traces/2026-12-05T12/w-1.parquet",
            "parts/a/traces/2026-12-05T12/deeper/w-1.parquet",
            "series/a/2026-12-05T12/w-1.parquet",
            "series/@shared/2026-12-05T12/w-1.sgs",
            "other/a/traces/2026-12-05T12/w-1.parquet",
        ] {
            assert_eq!(owner(other), None, "{other}");
        }
    }
}
