//! Merges and retention across collectors, in the bucket (ADR 0011, `docs/object-storage.md`).
//!
//! Every collector uploads its own parts; merging them is the work of one collector per part
//! directory (a tenant, or `@shared`) at a time, the holder of that directory's lease:
//!
//! ```text
//! leases/<dir>.json          {"owner":…,"expires_unix_ms":…}: taken with a create-only write when
//!                            absent, or with a write conditional on the e-tag read when it has
//!                            expired (or is the taker's own); renewed while there is work
//! compactions/<seq>.json     the compaction log: add and remove lines as in a manifest, each
//!                            entry created with a create-only write at the next number
//! ```
//!
//! The lease saves work: two collectors do not merge the same parts. The log keeps the data
//! right. A compactor merges parts that are live after the entries it has applied, up to `N`,
//! and commits the merge as entry `N + 1`; when another compactor committed `N + 1` first (its
//! successor, or a predecessor whose lease ran out while it was paused), the create is refused
//! and the merge is given up, its output deleted. Two merges of one part can never both be
//! committed, whatever the clocks and pauses. Every collector applies the log in order
//! (`bucket::sync_pass`): the inputs of a merge leave its reads as the output enters them, and a
//! writer whose own parts were merged drops them from its data directory.
//!
//! Metrics parts are merged one writer at a time: PromQL reads a writer's metrics through its
//! own series segments, which cover its parts by flush number (`store::series`), so a part
//! holding several writers' samples could be neither covered nor read beside their segments
//! without counting some twice. A metrics merge takes parts of one writer that one of its
//! committed segments covers, gives the output a flush number in that segment's range (as a
//! local merge does, `compact::covering_seq`), and commits the entry in that writer's name, so
//! every reader takes the output for the writer's part, covered by the same segments; when a
//! segment is damaged, the output is read in its place as its inputs would have been. No
//! collector merges its parts locally while a bucket is configured.
//!
//! The directory's owner also applies retention in the bucket: parts wholly past it are removed
//! by a log entry, and so are other writers' series segments of a tenant (under the lease of the
//! tenant's directory), so what a collector that is gone for good wrote does not stay forever.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::CompactionConfig;
use crate::model::Rows;
use crate::signal::Signal;
use crate::tenant::Tenant;

use super::super::Shared;
use super::super::compact::{InputError, Inputs, covering_seq, directory, plan, read_inputs, sort_by_time};
use super::super::parts::{self, PartMeta};
use super::super::series::SegmentMeta;
use super::{Bucket, DELETE_GRACE, RequestError, catalog, deletions, now_ms};

/// Where the compaction log's entries are, under the bucket's prefix.
pub(crate) const LOG_DIR: &str = "compactions";
/// Where the leases are.
const LEASE_DIR: &str = "leases";
/// Where a merge's output is written before it is uploaded, in the data directory.
const WORK_DIR: &str = "bucket-merge";
/// Largest lease object read.
const MAX_LEASE_BYTES: u64 = 64 << 10;
/// Test builds only: a merge waits this many milliseconds between uploading its output and
/// committing it, so a test can stop or kill the compactor exactly there.
const STALL_ENV: &str = "SLO_GATE_FAULT_BUCKET_MERGE_STALL_MS";

/// The name of log entry `seq`.
pub(crate) fn entry_name(seq: u64) -> String {
    format!("{LOG_DIR}/{seq:012}.json")
}

/// The number of a log entry, from its name.
pub(crate) fn entry_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(LOG_DIR)?.strip_prefix('/')?.strip_suffix(".json")?;
    (digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// A lease object's body.
#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    owner: String,
    expires_unix_ms: u64,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub merges: u64,
    pub parts_in: u64,
    pub expired: u64,
    /// Parts of tenant deletions this compactor finished (`deletions`).
    pub deletions: u64,
    /// Merges given up: an input unreadable, the lease lost, or another compactor's entry first.
    pub abandoned: u64,
}

/// One part directory's parts in a pass.
#[derive(Default)]
struct Directory {
    /// Names of the parts and series segments wholly past retention.
    expired: Vec<String>,
    /// The others, but metrics, unreadable and masked parts.
    mergeable: Vec<Arc<PartMeta>>,
    /// Metrics parts (not unreadable or masked), by writer: merged one writer at a time.
    metrics: BTreeMap<Arc<str>, Vec<Arc<PartMeta>>>,
}

/// Every writer's committed series segments in a pass, by writer (this collector's own
/// under its id): what covers its metrics parts.
type Segments = BTreeMap<Arc<str>, Vec<Arc<SegmentMeta>>>;

/// The writer whose part `part` is, for a collector with id `own`: the one whose manifest or
/// log entry named it (`Remote::writer`), or this collector for its own.
fn writer_of(part: &PartMeta, own: &str) -> Arc<str> {
    part.remote.as_ref().map_or_else(|| Arc::from(own), |r| Arc::clone(&r.writer))
}

/// The compactor's own state, kept between passes.
#[derive(Debug, Default)]
pub(crate) struct Compactor {
    /// Leases this collector holds, by directory, and until when by its own clock (counted
    /// from before the request that took them).
    held: BTreeMap<String, Instant>,
    /// The last entry this compactor committed: the next pass waits until the store has applied
    /// it, so it never plans from a view without its own merges.
    committed_seq: u64,
    /// Objects of merged or expired parts, deleted a grace after their entry.
    doomed: Vec<(Instant, String)>,
    /// Parts that could not be read for a merge: left out of later merges.
    unreadable: HashSet<String>,
}

impl Compactor {
    /// Whether the lease of `dir` is not held, or ends within `margin` by this collector's clock.
    pub(super) fn lease_ends_within(&self, dir: &str, margin: Duration) -> bool {
        self.held.get(dir).is_none_or(|until| *until < Instant::now() + margin)
    }
}

/// The compaction thread of a collector sharing a bucket: a pass every refresh interval.
pub(crate) fn run(shared: Arc<Shared>, bucket: Arc<Bucket>, config: CompactionConfig) {
    let mut compactor = Compactor::default();
    let mut collector = super::gc::Collector::default();
    let mut checkpointer = super::checkpoint::Checkpointer::default();
    let mut failing = false;
    while !shared.closing.load(Ordering::Relaxed) {
        let until = Instant::now() + bucket.refresh;
        while Instant::now() < until && !shared.closing.load(Ordering::Relaxed) {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(200)));
        }
        if shared.closing.load(Ordering::Relaxed) {
            break;
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        match pass(&shared, &bucket, &config, &mut compactor, now) {
            Ok(report) => {
                failing = false;
                shared.telemetry.bucket_merges.fetch_add(report.merges, Ordering::Relaxed);
                shared.telemetry.bucket_merges_abandoned.fetch_add(report.abandoned, Ordering::Relaxed);
                if report != Report::default() {
                    tracing::info!(?report, "compacted parts in the bucket");
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "bucket compaction failed; retried at the next pass");
                }
                failing = true;
                shared.telemetry.bucket_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        match super::gc::pass(&shared, &bucket, &mut compactor, &mut collector) {
            Ok(found) => {
                if found > 0 {
                    tracing::info!(found, "objects in the bucket no manifest names; deleted after a full listing");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "bucket garbage collection failed; retried at the next pass");
                shared.telemetry.bucket_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        match super::checkpoint::pass(&shared, &bucket, &mut compactor, &mut checkpointer) {
            Ok(report) if report != super::checkpoint::Report::default() => {
                tracing::info!(?report, "checkpointed the compaction log");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "checkpointing the compaction log failed; retried at the next pass");
                shared.telemetry.bucket_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let now = Instant::now();
        compactor.doomed.retain(|(at, name)| *at > now || bucket.delete(name).is_err());
    }
}

/// One pass: for every directory with parts to merge or past retention, its lease, then an
/// entry removing the expired parts and one entry per merge.
pub(crate) fn pass(
    shared: &Shared,
    bucket: &Bucket,
    config: &CompactionConfig,
    compactor: &mut Compactor,
    now_unix_nano: u64,
) -> Result<Report, String> {
    let mut report = Report::default();
    // The parts every reader sees: other writers' and the log's outputs, and this writer's
    // committed ones under their bucket names, with the log entry that view stands at.
    let (parts, expired_series, segments, covering, log_seq) = {
        let state = shared.read();
        let committed = bucket.committed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // What covers metrics parts: other writers' segments as their manifests name them,
        // and this writer's own once committed (as readers elsewhere see them).
        let mut covering = Segments::new();
        for s in &state.remote_series {
            if let Some(remote) = &s.remote {
                covering.entry(Arc::clone(&remote.writer)).or_default().push(Arc::clone(s));
            }
        }
        let own: Arc<str> = Arc::from(bucket.writer.as_str());
        for s in state.series.iter().filter(|s| committed.contains(&bucket.segment_name(s))) {
            covering.entry(Arc::clone(&own)).or_default().push(Arc::clone(s));
        }
        let mut parts: Vec<Arc<PartMeta>> = state.remote.iter().chain(&state.remote_expired).cloned().collect();
        for p in &state.parts {
            let name = bucket.bucket_name(p);
            if committed.contains(&name) {
                parts.push(Arc::new(PartMeta { name, ..(**p).clone() }));
            }
        }
        let expired_series: Vec<(String, String)> =
            state.remote_series_expired.iter().map(|s| (s.tenant.as_str().to_string(), s.name.clone())).collect();
        // Every segment in the bucket, by tenant (for deletions).
        let own = state.series.iter().map(|s| (s.tenant.clone(), bucket.segment_name(s)));
        let segments: Vec<(Tenant, String)> = state
            .remote_series
            .iter()
            .chain(&state.remote_series_expired)
            .map(|s| (s.tenant.clone(), s.name.clone()))
            .chain(own.filter(|(_, name)| committed.contains(name)))
            .collect();
        (parts, expired_series, segments, covering, bucket.log_seq.load(Ordering::SeqCst))
    };
    if log_seq < compactor.committed_seq {
        return Ok(report);
    }
    // Tenant deletions first; the deleted tenants' parts are not merged meanwhile.
    let mut seq = log_seq;
    let requests = bucket.hidden.lock().unwrap_or_else(|e| e.into_inner()).requests.clone();
    let settle_ms = (shared.settings.flush_interval + 2 * bucket.refresh).as_millis() as u64;
    for (request, done) in requests.iter().filter(|(r, _)| now_ms().saturating_sub(r.unix_ms) >= settle_ms) {
        if shared.closing.load(Ordering::Relaxed) {
            break;
        }
        let carried =
            finish_deletion(shared, bucket, config, compactor, request, done, &parts, &segments, &covering, &mut seq)?;
        report.deletions += u64::from(carried);
    }
    let deleting: HashSet<&Tenant> = requests.iter().map(|(r, _)| &r.tenant).collect();
    // Parts whose rows of a deleted tenant every reader leaves out: a merge would carry those
    // rows into an output nobody masks, so they are not merged.
    let masked: HashSet<String> =
        bucket.hidden.lock().unwrap_or_else(|e| e.into_inner()).masked.keys().cloned().collect();
    let cutoff = now_unix_nano.saturating_sub(shared.settings.retention.as_nanos() as u64);
    let mut dirs: BTreeMap<String, Directory> = BTreeMap::new();
    for part in parts {
        if part.tenants.iter().any(|t| deleting.contains(&t.tenant)) {
            continue;
        }
        let Some((dir, _, _)) = directory(&part.name) else { continue };
        let d = dirs.entry(dir.to_string()).or_default();
        if part.max_time() < cutoff {
            d.expired.push(part.name.clone());
        } else if compactor.unreadable.contains(&part.name) || masked.contains(&part.name) {
            continue;
        } else if part.signal == Signal::Metrics {
            d.metrics.entry(writer_of(&part, &bucket.writer)).or_default().push(part);
        } else {
            d.mergeable.push(part);
        }
    }
    // Other writers' series segments past retention, by their tenant's directory.
    for (tenant, name) in expired_series {
        dirs.entry(tenant).or_default().expired.push(name);
    }
    // An hour takes new parts while flushes still write into it and until they are uploaded.
    let settle = shared.settings.flush_interval + bucket.refresh;
    for (dir, Directory { expired, mergeable, metrics }) in dirs {
        let mut batches = plan(&mergeable, &[], config, &HashSet::new(), settle, now_unix_nano);
        for (writer, parts) in &metrics {
            let segments = covering.get(writer).map_or(&[][..], Vec::as_slice);
            batches.extend(plan(parts, segments, config, &HashSet::new(), settle, now_unix_nano));
        }
        if expired.is_empty() && batches.is_empty() {
            continue;
        }
        if !lease(bucket, compactor, &dir)? {
            continue;
        }
        if !expired.is_empty() {
            match remove(bucket, compactor, &dir, &mut seq, &expired)? {
                true => report.expired += expired.len() as u64,
                false => {
                    report.abandoned += 1;
                    break;
                }
            }
        }
        for batch in batches {
            if shared.closing.load(Ordering::Relaxed) {
                break;
            }
            match merge(
                shared,
                bucket,
                compactor,
                &dir,
                &batch,
                &covering,
                config.max_input_memory_bytes,
                seq + 1,
                None,
            )? {
                Some(inputs) => {
                    seq += 1;
                    report.merges += 1;
                    report.parts_in += inputs.len() as u64;
                    let at = Instant::now() + DELETE_GRACE;
                    compactor.doomed.extend(inputs.into_iter().map(|n| (at, n)));
                }
                None => {
                    report.abandoned += 1;
                    break;
                }
            }
        }
    }
    compactor.committed_seq = compactor.committed_seq.max(seq);
    Ok(report)
}

/// Finishes this compactor's parts of a tenant deletion (`bucket::deletions`): under the lease
/// of the tenant's directory, a log entry removing its parts and every writer's series
/// segments of it, then `done-own`; under the lease of `@shared`, each shared part holding it
/// written again without it (a merge of one input; a metrics part's in its writer's name,
/// covered by that writer's segments of the other tenants), or removed when it held nothing
/// else, or masked when it cannot be written again (unreadable, or a metrics part no segment
/// covers), then `done-shared` naming the masked ones. Returns how many parts of the deletion
/// it finished.
///
/// Every shared part in the bucket is this compactor's to write again, live writers' too: a
/// writer never writes again a part it committed (`store::delete`), so no second output can
/// stay beside this one.
#[allow(clippy::too_many_arguments)]
fn finish_deletion(
    shared: &Shared,
    bucket: &Bucket,
    config: &CompactionConfig,
    compactor: &mut Compactor,
    request: &deletions::Entry,
    done: &std::collections::BTreeSet<deletions::Part>,
    parts: &[Arc<PartMeta>],
    segments: &[(Tenant, String)],
    covering: &Segments,
    seq: &mut u64,
) -> Result<u32, String> {
    let tenant = &request.tenant;
    let mut finished = 0;
    if !done.contains(&deletions::Part::Own) && lease(bucket, compactor, tenant.as_str())? {
        let mut names: Vec<String> = parts
            .iter()
            .filter(|p| directory(&p.name).is_some_and(|(dir, _, _)| dir == tenant.as_str()))
            .map(|p| p.name.clone())
            .collect();
        names.extend(segments.iter().filter(|(t, _)| t == tenant).map(|(_, n)| n.clone()));
        if !names.is_empty() && !remove(bucket, compactor, tenant.as_str(), seq, &names)? {
            return Ok(finished);
        }
        deletions::finish(bucket, &request.stem, deletions::Part::Own, Vec::new())
            .map_err(|e| bucket.error(e.to_string()).to_string())?;
        tracing::info!(%tenant, removed = names.len(), "removed a deleted tenant's objects from the bucket");
        finished += 1;
    }
    if !done.contains(&deletions::Part::Shared) && lease(bucket, compactor, parts::SHARED_DIR)? {
        let holding: Vec<&Arc<PartMeta>> = parts
            .iter()
            .filter(|p| {
                directory(&p.name).is_some_and(|(dir, _, _)| dir == parts::SHARED_DIR) && p.of(tenant).is_some()
            })
            .collect();
        let (mut masked, mut alone) = (Vec::new(), Vec::new());
        for part in holding {
            if part.tenants.len() == 1 {
                alone.push(part.name.clone());
            } else {
                let one = std::slice::from_ref(part);
                match merge(
                    shared,
                    bucket,
                    compactor,
                    parts::SHARED_DIR,
                    one,
                    covering,
                    config.max_input_memory_bytes,
                    *seq + 1,
                    Some(tenant),
                )? {
                    Some(inputs) => {
                        *seq += 1;
                        let at = Instant::now() + DELETE_GRACE;
                        compactor.doomed.extend(inputs.into_iter().map(|n| (at, n)));
                    }
                    // The lease ran out or another compactor committed first: the next pass.
                    None if !compactor.held.contains_key(parts::SHARED_DIR) => return Ok(finished),
                    None => {
                        tracing::warn!(part = %part.name, %tenant, "cannot write a shared part again without a deleted tenant; its rows of it are masked");
                        masked.push(part.name.clone());
                    }
                }
            }
        }
        if !alone.is_empty() && !remove(bucket, compactor, parts::SHARED_DIR, seq, &alone)? {
            return Ok(finished);
        }
        tracing::info!(%tenant, masked = masked.len(), "wrote the bucket's shared parts again without a deleted tenant");
        deletions::finish(bucket, &request.stem, deletions::Part::Shared, masked)
            .map_err(|e| bucket.error(e.to_string()).to_string())?;
        finished += 1;
    }
    Ok(finished)
}

/// Takes or renews the lease of `dir`; false when another collector holds it.
pub(super) fn lease(bucket: &Bucket, compactor: &mut Compactor, dir: &str) -> Result<bool, String> {
    if !bucket.compacts {
        return Ok(false);
    }
    // Renewed once half of it has passed.
    if compactor.held.get(dir).is_some_and(|until| *until > Instant::now() + bucket.lease / 2) {
        return Ok(true);
    }
    let name = format!("{LEASE_DIR}/{dir}.json");
    let started = Instant::now();
    let now = now_ms();
    let body = Lease { owner: bucket.writer.clone(), expires_unix_ms: now + bucket.lease.as_millis() as u64 };
    let body = Bytes::from(serde_json::to_vec(&body).map_err(|e| e.to_string())?);
    let taken = match bucket.get_versioned(&name, MAX_LEASE_BYTES) {
        Err(RequestError::NotFound) => bucket.create(&name, body),
        Ok((bytes, version)) => {
            // A lease that does not parse is taken as expired: it holds nobody.
            let current: Option<Lease> = serde_json::from_slice(&bytes).ok();
            let free = current.as_ref().is_none_or(|l| l.owner == bucket.writer || l.expires_unix_ms < now);
            if !free {
                compactor.held.remove(dir);
                return Ok(false);
            }
            bucket.update(&name, body, version)
        }
        Err(e @ RequestError::TooLarge { .. }) => return Err(bucket.error(format!("lease {name}: {e}")).to_string()),
        Err(e) => return Err(bucket.error(e.to_string()).to_string()),
    };
    match taken {
        Ok(()) => {
            if !compactor.held.contains_key(dir) {
                tracing::info!(directory = %dir, "took the bucket compaction lease");
            }
            compactor.held.insert(dir.to_string(), started + bucket.lease);
            Ok(true)
        }
        // Another collector took it between the read and the write.
        Err(RequestError::Exists | RequestError::Precondition) => {
            compactor.held.remove(dir);
            Ok(false)
        }
        Err(e) => Err(bucket.error(e.to_string()).to_string()),
    }
}

/// Commits log entry `seq + 1` removing `names` (under the lease of `dir`) and has their
/// objects deleted a grace later; false, with nothing done, when the commit was refused.
fn remove(
    bucket: &Bucket,
    compactor: &mut Compactor,
    dir: &str,
    seq: &mut u64,
    names: &[String],
) -> Result<bool, String> {
    let body = catalog::manifest_json(&bucket.writer, &[], names).map_err(|e| e.to_string())?;
    if !commit(bucket, compactor, dir, *seq + 1, body)? {
        return Ok(false);
    }
    *seq += 1;
    let at = Instant::now() + DELETE_GRACE;
    compactor.doomed.extend(names.iter().map(|n| (at, n.clone())));
    Ok(true)
}

/// Creates log entry `seq` while the lease of `dir` still has a margin left; false when the
/// lease ran out or another compactor created that entry first.
fn commit(bucket: &Bucket, compactor: &mut Compactor, dir: &str, seq: u64, body: Vec<u8>) -> Result<bool, String> {
    let margin = (bucket.lease / 4).min(Duration::from_secs(10));
    if compactor.lease_ends_within(dir, margin) {
        compactor.held.remove(dir);
        tracing::warn!(directory = %dir, "the bucket compaction lease ran out before the commit; given up");
        return Ok(false);
    }
    match bucket.create(&entry_name(seq), Bytes::from(body)) {
        Ok(()) => Ok(true),
        Err(RequestError::Exists) => {
            tracing::warn!(directory = %dir, entry = seq, "another compactor committed this log entry first; given up");
            compactor.held.remove(dir);
            Ok(false)
        }
        Err(e) => Err(bucket.error(e.to_string()).to_string()),
    }
}

/// Merges one batch (its oldest inputs within `max_memory`) into one part, uploads it and
/// commits it as log entry `seq`. Returns the inputs' names, or `None` when given up.
///
/// A batch of metrics parts is one writer's, and the output is that writer's: its flush
/// number one that a segment of the writer in `covering` covers with all the inputs, its
/// entry in the writer's name. Without such a segment the merge is given up.
#[allow(clippy::too_many_arguments)]
fn merge(
    shared: &Shared,
    bucket: &Bucket,
    compactor: &mut Compactor,
    dir: &str,
    batch: &[Arc<PartMeta>],
    covering: &Segments,
    max_memory: u64,
    seq: u64,
    without: Option<&Tenant>,
) -> Result<Option<Vec<String>>, String> {
    let first = &batch[0];
    let signal = first.signal;
    let Some((_, signal_dir, hour)) = directory(&first.name) else { return Ok(None) };
    let owner = writer_of(first, &bucket.writer);
    let segments = covering.get(&owner).map_or(&[][..], Vec::as_slice);
    if signal == Signal::Metrics {
        if batch.iter().any(|p| writer_of(p, &bucket.writer) != owner) {
            tracing::error!(directory = %dir, "a bucket merge of metrics parts of several writers was planned; given up");
            return Ok(None);
        }
        if covering_seq(batch, segments, without).is_none() {
            return Ok(None);
        }
    }
    let directory_tenant = Tenant::parse(dir).ok();
    let Inputs { mut by_tenant, rows: rows_in, taken } = match read_inputs(batch, max_memory, directory_tenant.as_ref())
    {
        Ok(inputs) => inputs,
        // Merged or expired since the view was taken (this writer's own part handed over):
        // the next pass plans from the log's newer state.
        Err(InputError::Unreadable(_, err)) if err.is_not_found() => return Ok(None),
        Err(InputError::Unreadable(i, err)) => {
            tracing::error!(part = %batch[i].name, %err, "cannot read a part to merge it in the bucket; left out of merges");
            compactor.unreadable.insert(batch[i].name.clone());
            return Ok(None);
        }
        Err(InputError::OtherSignal(i)) => {
            compactor.unreadable.insert(batch[i].name.clone());
            return Ok(None);
        }
    };
    let batch = &batch[..taken];
    let expected: u64 = batch.iter().flat_map(|p| p.tenants.iter().map(|t| t.rows)).sum();
    if rows_in != expected {
        tracing::error!(rows_in, expected, directory = %dir, "bucket merge inputs hold other row counts than their manifests say");
        compactor.unreadable.extend(batch.iter().map(|p| p.name.clone()));
        return Ok(None);
    }
    // A deleted tenant's rows are left out (`finish_deletion`).
    if let Some(tenant) = without {
        by_tenant.remove(tenant);
    }
    for rows in by_tenant.values_mut() {
        sort_by_time(rows);
    }
    let work = shared.data_dir.join(WORK_DIR);
    let stem = format!("{}/{dir}/{signal_dir}/{hour}/{}-m{}", parts::PARTS_DIR, bucket.writer, now_ms());
    let seq_of_output = match signal {
        // The inputs read are the first of the batch: covered by the same segments.
        Signal::Metrics => match covering_seq(batch, segments, without) {
            Some(seq) => seq,
            None => return Ok(None),
        },
        _ => batch.iter().map(|p| p.seq).max().unwrap_or(first.seq),
    };
    // Merges of metrics parts are their writer's (see the module's documentation); the rest
    // are the compactor's.
    let entry_writer = if signal == Signal::Metrics { &*owner } else { bucket.writer.as_str() };
    let groups: Vec<(&Tenant, Vec<&Rows>)> = by_tenant.iter().map(|(t, r)| (t, vec![r])).collect();
    let written =
        parts::write_part(&work, &format!("{stem}.parquet"), seq_of_output, signal, &groups, shared.keys.as_ref());
    drop(groups);
    drop(by_tenant);
    let meta = match written {
        Ok(Some(meta)) => meta,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("write the merge of {dir}/{signal_dir}/{hour}: {e}")),
    };
    let sum = meta.sha256.map_or_else(|| format!("{:08x}", meta.crc32), |d| hex::encode(&d[..4]));
    let output = PartMeta { name: format!("{stem}-{sum}.parquet"), ..meta };
    let discard = |file: &Path| {
        let _ = std::fs::remove_file(file);
    };
    if let Err(e) = bucket.put_file(&output.name, &output.path, output.size) {
        discard(&output.path);
        return Err(bucket.error(e.to_string()).to_string());
    }
    stall();
    let inputs: Vec<String> = batch.iter().map(|p| p.name.clone()).collect();
    let line = catalog::add_line(&output).map_err(|e| e.to_string())?;
    let body = catalog::manifest_json(entry_writer, &[line], &inputs).map_err(|e| e.to_string())?;
    match commit(bucket, compactor, dir, seq, body) {
        Ok(true) => {
            // Kept as the cached copy of its object: the log's reader finds it there.
            if let Err(e) = bucket.adopt(&output.name, &output.path, output.size) {
                tracing::debug!(%e, "merge output not kept in the cache");
                discard(&output.path);
            }
            tracing::info!(output = %output.name, inputs = inputs.len(), entry = seq, "merged parts in the bucket");
            Ok(Some(inputs))
        }
        Ok(false) => {
            discard(&output.path);
            let _ = bucket.delete(&output.name);
            Ok(None)
        }
        // The entry may have been created: the object stays (an orphan if it was not).
        Err(e) => {
            discard(&output.path);
            Err(e)
        }
    }
}

/// Test builds only (see [`STALL_ENV`]).
fn stall() {
    if !cfg!(debug_assertions) {
        return;
    }
    if let Some(ms) = std::env::var(STALL_ENV).ok().and_then(|v| v.parse::<u64>().ok()) {
        tracing::info!(ms, "bucket merge output uploaded; stalling before the commit ({STALL_ENV})");
        std::thread::sleep(Duration::from_millis(ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_are_numbered_in_name_order() {
        assert_eq!(entry_name(7), "compactions/000000000007.json");
        assert_eq!(entry_seq(&entry_name(7)), Some(7));
        assert!(entry_name(9) < entry_name(10));
        for bad in ["compactions/7.json", "compactions/00000000000x.json", "manifests/000000000007.json"] {
            assert_eq!(entry_seq(bad), None, "{bad}");
        }
    }
}
