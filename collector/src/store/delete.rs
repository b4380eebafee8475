//! Deleting a tenant: every row of it the store holds, its series segments, gate history and
//! anomaly journal, gone from the data directory (`docs/tenant-deletion.md`).
//!
//! ```text
//! flusher thread: cut + flush ─▶ deleting/<tenant> (fsync) ─▶ own parts: catalog line, file
//!                                    │                      ─▶ shared parts: rewritten without it
//!                                    │                      ─▶ series segments, gate/, analysis/
//!                                    └──────────── removed last ◀──────────────────────────────┘
//! ```
//!
//! It runs on the flusher thread, right after a flush: every row acknowledged before the
//! request is then in parts, and no flush, series-segment merge or retention pass runs while
//! it does; it holds the compactor's lock, so no merge does either. Rows that arrive meanwhile
//! wait in the head and are kept.
//!
//! Crash safety comes from the marker `deleting/<tenant>`, made durable before anything is
//! deleted and removed after everything is: a start that finds one runs the deletion again
//! before the WAL is replayed. Every part on disk then was flushed before the interrupted
//! deletion began (the flusher was busy with it), so deleting them all again deletes exactly
//! what the request asked, and the replayed WAL holds only rows that arrived after it. Each
//! step is one the retention and compaction already make crash-safe: a part leaves the catalog
//! before its file goes, a shared part is rewritten as a merge of one input.
//!
//! With a shared bucket, parts the tenant shares with other tenants that are committed there
//! are left as they are, to the bucket's compactor (`left_to_the_bucket`); the deletion
//! waits for the uploader to commit them all before it begins (`await_upload`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

pub use crate::api::admin::TenantDeletion;
use crate::signal::Signal;
use crate::tenant::Tenant;

use super::Shared;
use super::compact::{self, Compactor};
use super::error::StoreError;
use super::flush;
use super::parts::PartMeta;
use super::series::SegmentMeta;
use super::wal::sync_dir;

/// Where a deletion in progress is recorded, under the data directory: one empty file per
/// tenant.
pub const DELETING_DIR: &str = "deleting";

/// The directories of one tenant's files other than parts and segments, under the data
/// directory: `<dir>/<tenant>/` (the gate history, the anomaly journal) and what the
/// quarantine set aside of its own parts and segments.
const TENANT_DIRS: &[&str] = &["gate", "analysis", "quarantine/parts", "quarantine/series"];

/// Test builds only: a deletion waits this many milliseconds after each of its steps, so a
/// test can kill the process at each of them.
const STALL_ENV: &str = "SLO_GATE_FAULT_DELETE_STALL_MS";

fn stall(step: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    if let Some(ms) = std::env::var(STALL_ENV).ok().and_then(|v| v.parse::<u64>().ok()) {
        tracing::info!(ms, step, "tenant deletion stalling ({STALL_ENV})");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// The most memory the rows one rewrite of shared parts reads may hold (as a merge's
/// `max_input_memory_bytes`, whose default it is).
const REWRITE_MEMORY: u64 = 64 << 20;

/// Records, durably, that `tenant` is being deleted.
pub(crate) fn begin(data_dir: &Path, tenant: &Tenant) -> Result<(), StoreError> {
    let dir = data_dir.join(DELETING_DIR);
    let action = || format!("record the deletion of tenant {:?}", tenant.as_str());
    std::fs::create_dir_all(&dir).map_err(StoreError::io(action()))?;
    let file = std::fs::File::create(dir.join(tenant.as_str())).map_err(StoreError::io(action()))?;
    file.sync_all().map_err(StoreError::io(action()))?;
    sync_dir(&dir).map_err(StoreError::io(action()))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent).map_err(StoreError::io(action()))?;
    }
    Ok(())
}

/// The tenants whose deletion a crash interrupted.
pub(crate) fn unfinished(data_dir: &Path) -> Vec<Tenant> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(DELETING_DIR)) else { return Vec::new() };
    let mut tenants: Vec<Tenant> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| Tenant::parse(n).ok()))
        .collect();
    tenants.sort();
    tenants
}

/// Deletes everything of `tenant` in the store's parts, segments and tenant directories, then
/// the marker [`begin`] made. The caller flushed first.
pub(crate) fn run(shared: &Shared, compactor: &Compactor, tenant: &Tenant) -> Result<TenantDeletion, StoreError> {
    let mut inner = compactor.lock();
    let mut report = TenantDeletion::default();
    stall("marker made");

    // Parts: the tenant's own are deleted, the ones it shares rewritten without it — but for
    // those in a shared bucket already, which only the bucket's compactor writes again.
    let (own, mixed): (Vec<Arc<PartMeta>>, Vec<Arc<PartMeta>>) = {
        let state = shared.read();
        state.parts.iter().filter(|p| p.of(tenant).is_some()).cloned().partition(|p| p.tenants.len() == 1)
    };
    let (mixed, left) = left_to_the_bucket(shared, mixed);
    report.parts_left_to_the_bucket = left as u64;
    let traces = own.iter().chain(&mixed).any(|p| p.signal == Signal::Traces);
    {
        let mut state = shared.write();
        let gone: std::collections::HashSet<*const PartMeta> = own.iter().map(Arc::as_ptr).collect();
        state.parts.retain(|p| !gone.contains(&Arc::as_ptr(p)));
    }
    for part in &own {
        // Out of the catalog first: a crash before the file is gone leaves a file the next
        // start adopts, and this deletion, run again at that start, deletes it.
        shared.catalog.remove(&part.name).map_err(StoreError::io(format!("record the deletion of {}", part.name)))?;
        remove_file(&part.path, &part.name)?;
        shared.span_indexes.forget(&part.name);
        report.parts_deleted += 1;
        report.part_bytes_deleted += part.size;
        report.rows_deleted += part.of(tenant).map_or(0, |t| t.rows);
    }
    for part in own {
        inner.bury(part);
    }
    stall("own parts deleted");
    // Per directory (signal and hour), oldest first, merged into as few parts as the merge
    // bounds allow; a batch that cannot be merged whole (no series segment covers it, an
    // input unreadable) goes one part at a time.
    let mut dirs: BTreeMap<(String, String, String), Vec<Arc<PartMeta>>> = BTreeMap::new();
    for part in mixed {
        let (d, s, h) = compact::directory(&part.name).unwrap_or(("", "", ""));
        dirs.entry((d.to_string(), s.to_string(), h.to_string())).or_default().push(part);
    }
    // A merge of metrics parts needs one series segment of each tenant covering all of its
    // inputs: the other tenants' segments of those hours are merged first, as the flusher
    // merges a closed hour's.
    for ((_, signal, hour), parts) in &dirs {
        if signal != Signal::Metrics.as_str() {
            continue;
        }
        let others: std::collections::BTreeSet<&Tenant> =
            parts.iter().flat_map(|p| p.tenants.iter().map(|t| &t.tenant)).filter(|t| *t != tenant).collect();
        for other in others {
            let sources: Vec<Arc<SegmentMeta>> =
                shared.read().series.iter().filter(|s| &s.tenant == other && s.hour == *hour).cloned().collect();
            if sources.len() > 1 {
                flush::merge_segments(shared, sources);
            }
        }
    }
    for mut left in dirs.into_values() {
        left.sort_by(|a, b| (a.seq, &a.name).cmp(&(b.seq, &b.name)));
        while !left.is_empty() {
            let rows = |parts: &[Arc<PartMeta>]| parts.iter().map(|p| p.of(tenant).map_or(0, |t| t.rows)).sum::<u64>();
            let done = match compact::rewrite_without(shared, &mut inner, &left, REWRITE_MEMORY, tenant)? {
                Some(n) => Some(n),
                None if left.len() > 1 => {
                    compact::rewrite_without(shared, &mut inner, &left[..1], REWRITE_MEMORY, tenant)?
                }
                None => None,
            };
            if let Some(n) = done {
                report.parts_rewritten += n as u64;
                report.rows_deleted += rows(&left[..n]);
                left.drain(..n);
                // The replaced parts' names are free again once no query holds them.
                inner.reap(false);
                stall("shared parts written again");
                continue;
            }
            let part = left.remove(0);
            if shared.read().parts.iter().any(|p| Arc::ptr_eq(p, &part)) {
                return Err(StoreError::io(format!("write {} again without tenant {:?}", part.name, tenant.as_str()))(
                    std::io::Error::other("it could not be merged (see the log)"),
                ));
            }
            // Damaged: the read set it aside, whole. The tenant's rows in it go with it; the
            // others' could not be read anyway.
            let set_aside = Path::new(super::catalog::QUARANTINE_DIR).join(&part.name);
            remove_file(&shared.data_dir.join(&set_aside), &set_aside.to_string_lossy())?;
            report.rows_deleted += rows(std::slice::from_ref(&part));
        }
    }
    // The rewritten parts' old files go now, but for those a query is still reading (they go
    // when it is done, or after `compact::GRACE`).
    inner.reap(false);
    if traces {
        shared.hold_trace_keys();
    }
    shared.telemetry.parts.store(shared.read().parts.len() as u64, Relaxed);

    // Series segments: each holds one tenant.
    let segments: Vec<Arc<SegmentMeta>> = {
        let mut state = shared.write();
        let (gone, keep) = state.series.drain(..).partition(|s| &s.tenant == tenant);
        state.series = keep;
        gone
    };
    for segment in &segments {
        shared.series_indexes.forget(&segment.name);
        remove_file(&segment.path, &segment.name)?;
        report.series_segments_deleted += 1;
    }

    stall("series segments deleted");
    for dir in TENANT_DIRS {
        let path = shared.data_dir.join(dir).join(tenant.as_str());
        report.other_files_deleted += remove_tree(&path, &format!("{dir}/{tenant}"))?;
    }

    let marker = shared.data_dir.join(DELETING_DIR).join(tenant.as_str());
    std::fs::remove_file(&marker).map_err(StoreError::io(format!("delete {DELETING_DIR}/{tenant}")))?;
    shared.telemetry.tenants_deleted.fetch_add(1, Relaxed);
    tracing::info!(%tenant, ?report, "tenant deleted");
    Ok(report)
}

/// Splits the parts `tenant` shares with other tenants into those this deletion writes again
/// and how many it leaves: with a shared bucket, those committed there already.
///
/// A part in the bucket changes only through the compaction log (`bucket::compact`), whose
/// entries are created one at a time, each by a compactor that saw the parts it replaces
/// live: two replacements of one part can never both be committed. A writer that wrote its
/// committed part again here and removed it in its next manifest could race a compactor
/// merging it, or writing it again without the tenant, and both outputs would stay, the other
/// tenants' rows in them twice. So the `@shared` compactor writes them again
/// (`bucket::deletions`); readers, this collector too, leave the tenant's rows in them out
/// until then, and this collector drops its copy as the log entry replacing it is applied.
fn left_to_the_bucket(shared: &Shared, mixed: Vec<Arc<PartMeta>>) -> (Vec<Arc<PartMeta>>, usize) {
    let Some(bucket) = &shared.bucket else { return (mixed, 0) };
    let committed = bucket.committed.lock().unwrap_or_else(|e| e.into_inner());
    let (left, mine): (Vec<_>, Vec<_>) = mixed.into_iter().partition(|p| committed.contains(&bucket.bucket_name(p)));
    (mine, left.len())
}

/// Longest a deletion waits for the uploader (see [`await_upload`]).
const UPLOAD_WAIT: Duration = Duration::from_secs(60);

/// With a shared bucket, waits until every part holding `tenant` with other tenants is
/// committed there, so that the deletion leaves them all to the bucket's compactor
/// (`left_to_the_bucket`): a part the uploader is uploading while the deletion wrote it again
/// would be committed and then replaced by this writer. Runs before the deletion begins; an
/// error (the bucket unreachable for [`UPLOAD_WAIT`], or the collector stopping meanwhile)
/// means nothing was deleted.
pub(crate) fn await_upload(shared: &Shared, tenant: &Tenant) -> Result<(), StoreError> {
    let Some(bucket) = &shared.bucket else { return Ok(()) };
    let names: Vec<String> = shared
        .read()
        .parts
        .iter()
        .filter(|p| p.tenants.len() > 1 && p.of(tenant).is_some())
        .map(|p| bucket.bucket_name(p))
        .collect();
    let deadline = Instant::now() + UPLOAD_WAIT;
    // Once: a failing bucket's uploader keeps its back-off.
    shared.nudge_bucket();
    loop {
        let waiting = {
            let committed = bucket.committed.lock().unwrap_or_else(|e| e.into_inner());
            names.iter().filter(|n| !committed.contains(*n)).count()
        };
        if waiting == 0 {
            return Ok(());
        }
        // The collector's last flush waits behind this one on the flusher thread.
        if shared.stopping.load(Relaxed) || shared.closing.load(Relaxed) {
            return Err(StoreError::Bucket(format!(
                "{waiting} parts holding tenant {:?} with other tenants are not in the bucket yet and this collector \
                 is stopping; nothing was deleted here, and it deletes the tenant when it starts again",
                tenant.as_str()
            )));
        }
        if Instant::now() >= deadline {
            let why = bucket.status().unwrap_or_else(|| "the uploader has not committed them".into());
            return Err(StoreError::Bucket(format!(
                "{waiting} parts holding tenant {:?} with other tenants are not in the bucket after {UPLOAD_WAIT:?} \
                 ({why}); nothing was deleted here, and this collector deletes it again at its next listing",
                tenant.as_str()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deletes a file (gone already is fine) and its directory once empty; `name` is relative to
/// the data directory, for the error.
fn remove_file(path: &Path, name: &str) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(format!("delete {name}"))(e)),
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir(dir);
        if let Some(up) = dir.parent() {
            let _ = std::fs::remove_dir(up);
        }
    }
    Ok(())
}

/// Deletes a directory and what it holds; how many files it held.
fn remove_tree(path: &Path, name: &str) -> Result<u64, StoreError> {
    let files = count_files(path);
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(files),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(StoreError::io(format!("delete {name}"))(e)),
    }
}

fn count_files(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
#[path = "delete_tests.rs"]
mod tests;
