//! The flusher thread: turns frozen head blocks into Parquet parts, advances the WAL
//! checkpoint, deletes flushed segments, and applies retention.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::model::prometheus::{BatchSeries, SeriesBatch};
use crate::model::{Row, Rows};
use crate::signal::Signal;
use crate::tenant::Tenant;

use super::Shared;
use super::compact::Compactor;
use super::delete::{self, TenantDeletion};
use super::error::StoreError;
use super::head::Block;
use super::parts::{self, PartMeta};
use super::series::{self, SegmentMeta};
use super::writer::Op;

const RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) enum Request {
    /// The head is over its size.
    Full,
    /// Flush everything now and answer when done.
    Now(SyncSender<Result<(), StoreError>>),
    /// Flush everything now, then delete the tenant (`store::delete`), and answer when done.
    DeleteTenant(Tenant, SyncSender<Result<TenantDeletion, StoreError>>),
    Shutdown,
}

/// Has the flusher delete `tenant` (after a flush) and waits for its answer.
pub(crate) fn delete_tenant(flusher: &SyncSender<Request>, tenant: &Tenant) -> Result<TenantDeletion, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    flusher.send(Request::DeleteTenant(tenant.clone(), tx)).map_err(|_| StoreError::Stopped("flusher"))?;
    rx.recv().unwrap_or(Err(StoreError::Stopped("flusher")))
}

pub(crate) fn run(shared: Arc<Shared>, compactor: Arc<Compactor>, writer: SyncSender<Op>, rx: Receiver<Request>) {
    let mut last_retention = Instant::now() - shared.settings.retention_interval;
    backfill_series(&shared);
    compact_series(&shared, now_unix_nano(), false);
    loop {
        // Blocks left frozen by a failed flush are retried every second, not every interval:
        // while they wait, the head only grows and the receivers start refusing data.
        let wait = if shared.read().head.frozen.is_empty() {
            shared.settings.flush_interval
        } else {
            shared.settings.flush_interval.min(RETRY_INTERVAL)
        };
        let request = match rx.recv_timeout(wait) {
            Ok(Request::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
        };
        let result = flush(&shared, &writer);
        if let Err(err) = &result {
            shared.telemetry.flush_failures.fetch_add(1, Relaxed);
            tracing::error!(%err, "flush failed; data stays in the WAL and the head, will retry");
        }
        shared.set_problem(super::Problem::Flush, result.as_ref().err().map(ToString::to_string));
        if let Ok(wrote) = result {
            compact_series(&shared, now_unix_nano(), wrote);
        }
        let result = result.map(drop);
        match request {
            Some(Request::Now(reply)) => {
                let _ = reply.send(result);
            }
            // Only once every row acknowledged before the request is in parts.
            Some(Request::DeleteTenant(tenant, reply)) => {
                let deleted = result
                    .and_then(|()| delete::await_upload(&shared, &tenant))
                    .and_then(|()| delete::begin(&shared.data_dir, &tenant))
                    .and_then(|()| delete::run(&shared, &compactor, &tenant));
                let _ = reply.send(deleted);
            }
            _ => {}
        }
        if last_retention.elapsed() >= shared.settings.retention_interval {
            last_retention = Instant::now();
            if let Err(err) = apply_retention(&shared, now_unix_nano()) {
                tracing::error!(%err, "retention failed");
            }
        }
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Cuts the head and writes every frozen block, oldest first; says whether there was any.
fn flush(shared: &Shared, writer: &SyncSender<Op>) -> Result<bool, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    writer.send(Op::Cut { done: tx }).map_err(|_| StoreError::Stopped("log writer"))?;
    rx.recv().map_err(|_| StoreError::Stopped("log writer"))??;
    write_frozen(shared)
}

/// Writes every frozen block, oldest first, each followed by its checkpoint and the deletion
/// of its segments; says whether there was any. The start-up replay calls it too, before the
/// threads exist, so the parts it writes are made exactly as the flusher's.
pub(crate) fn write_frozen(shared: &Shared) -> Result<bool, StoreError> {
    let mut wrote = false;
    loop {
        let next = shared.read().head.frozen.first().map(|f| (f.seq, Arc::clone(&f.block)));
        let Some((seq, block)) = next else { return Ok(wrote) };
        wrote = true;
        let started = Instant::now();
        let (metas, segments) = write_block(shared, seq, &block)?;
        let metas: Vec<Arc<PartMeta>> = metas.into_iter().map(Arc::new).collect();
        shared.wal.set_checkpoint(seq).map_err(StoreError::io(format!("write WAL checkpoint {seq}")))?;
        {
            let mut state = shared.write();
            state.head.frozen.retain(|f| f.seq != seq);
            state.parts.extend(metas.iter().cloned());
            state.series.extend(segments);
        }
        shared.nudge_bucket();
        shared.wal.remove_through(seq).map_err(StoreError::io("delete flushed WAL segments"))?;
        if metas.iter().any(|m| m.signal == Signal::Traces) {
            shared.hold_trace_keys();
        }
        let t = &shared.telemetry;
        t.flushes.fetch_add(1, Relaxed);
        t.flush_nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        tracing::debug!(seq, items = block.items, "flushed head block");
        index_traces_parts(shared, &metas);
    }
}

/// Builds the span index (`store::span_index`) of each tenant of the given traces parts that
/// has none yet, while the cache has room, so a trace lookup or a search finds them indexed
/// instead of reading their `trace_id` columns. Called for the parts a flush just wrote (their
/// files are still in the page cache) and, newest first, for the parts found at start-up. A
/// part that cannot be read is left to the reads that will report and quarantine it.
pub(crate) fn index_traces_parts(shared: &Shared, parts: &[Arc<PartMeta>]) {
    for part in parts.iter().filter(|p| p.signal == Signal::Traces) {
        for t in &part.tenants {
            if shared.span_indexes.is_full() || shared.closing.load(Relaxed) {
                return;
            }
            if shared.span_indexes.get(&part.name, &t.tenant).is_some() {
                continue;
            }
            match parts::read_part_index(part, &t.tenant) {
                Ok(Some(index)) => {
                    let live: std::collections::HashSet<String> =
                        shared.read().parts.iter().map(|p| p.name.clone()).collect();
                    shared.span_indexes.put(&part.name, &t.tenant, Arc::new(index), &|name| live.contains(name));
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(%err, "cannot index a traces part; its reads will say why"),
            }
        }
    }
}

/// Indexes a traces part just written from the rows it was written from, so that neither the
/// flush nor the first search reads it back to index it (`index_traces_parts` then finds it
/// indexed).
fn cache_span_indexes(shared: &Shared, name: &str, members: &Members<'_>) {
    let live: std::collections::HashSet<String> = shared.read().parts.iter().map(|p| p.name.clone()).collect();
    for (tenant, index) in super::span_index::of_rows(members) {
        shared.span_indexes.put_newest(name, &tenant, Arc::new(index), &|n| n == name || live.contains(n));
    }
}

/// One tenant's rows of one signal and hour in a block: the rows that go to parts and the
/// memory they hold, and the remote-written series batches, which go to the series store alone.
#[derive(Default)]
struct Group<'a> {
    rows: Vec<&'a Rows>,
    bytes: u64,
    batches: Vec<&'a SeriesBatch>,
}

impl<'a> Group<'a> {
    fn add(&mut self, rows: &'a Rows, bytes: u64) {
        match rows {
            Rows::Series(batch) => self.batches.push(batch),
            rows => {
                self.rows.push(rows);
                self.bytes += bytes;
            }
        }
    }
}

/// The tenants of one part and their rows.
type Members<'a> = Vec<(&'a Tenant, Vec<&'a Rows>)>;

/// Groups a block's rows by signal, hour and tenant and writes them as parts: a tenant with
/// at least `min_tenant_part_bytes` of rows in an hour gets a part of its own, and the other
/// tenants of that signal and hour share one part. A flush of many small tenants so writes a
/// few files per signal and hour instead of one per tenant. Metric rows are also written, with
/// the remote-written series, as one series segment per tenant and hour (`series`). The parts
/// are entered in the catalog, and the segments are on disk, before the caller moves the
/// checkpoint.
fn write_block(shared: &Shared, seq: u64, block: &Block) -> Result<(Vec<PartMeta>, Vec<Arc<SegmentMeta>>), StoreError> {
    // Chunks whose rows all fall in one hour are written as they are; the others are split.
    let mut split: Vec<(Tenant, Rows)> = Vec::new();
    let mut groups: BTreeMap<(Signal, String), BTreeMap<Tenant, Group<'_>>> = BTreeMap::new();
    for chunk in &block.chunks {
        if chunk.rows.is_empty() {
            continue;
        }
        let (lo, hi) = (parts::hour_dir(chunk.min_time), parts::hour_dir(chunk.max_time));
        if lo == hi {
            let group = groups.entry((chunk.rows.signal(), lo)).or_default().entry(chunk.tenant.clone()).or_default();
            group.add(&chunk.rows, chunk.bytes);
        } else {
            for rows in split_by_hour(&chunk.rows) {
                split.push((chunk.tenant.clone(), rows));
            }
        }
    }
    let split_bytes: Vec<u64> = split.iter().map(|(_, rows)| rows.memory_bytes()).collect();
    for ((tenant, rows), bytes) in split.iter().zip(split_bytes) {
        let mut hour = String::new();
        rows.for_each_key(|k| {
            if hour.is_empty() {
                hour = parts::hour_dir(k.time_unix_nano);
            }
        });
        let group = groups.entry((rows.signal(), hour)).or_default().entry(tenant.clone()).or_default();
        group.add(rows, bytes);
    }

    let threshold = shared.settings.min_tenant_part_bytes;
    let mut metas = Vec::new();
    let mut segments = Vec::new();
    for ((signal, hour), tenants) in &groups {
        if *signal == Signal::Metrics {
            for (tenant, group) in tenants {
                let rows: Vec<&[crate::model::metric::MetricRow]> = group
                    .rows
                    .iter()
                    .filter_map(|r| match r {
                        Rows::Metrics(m) => Some(m.as_slice()),
                        _ => None,
                    })
                    .collect();
                segments.push(series::write_flushed(&shared.data_dir, tenant, hour, seq, &rows, &group.batches)?);
                let samples: usize = group.batches.iter().map(|b| b.samples).sum();
                shared.telemetry.stored(Signal::Metrics, samples as u64);
            }
        }
        let (own, small): (Vec<_>, Vec<_>) =
            tenants.iter().filter(|(_, group)| !group.rows.is_empty()).partition(|(_, group)| group.bytes >= threshold);
        let mut files: Vec<(String, Members<'_>)> = Vec::new();
        for (tenant, group) in own {
            files.push((parts::part_name(tenant.as_str(), *signal, hour, seq), vec![(tenant, group.rows.clone())]));
        }
        match small.len() {
            0 => {}
            1 => {
                let (tenant, group) = small[0];
                files.push((parts::part_name(tenant.as_str(), *signal, hour, seq), vec![(tenant, group.rows.clone())]));
            }
            _ => files.push((
                parts::part_name(parts::SHARED_DIR, *signal, hour, seq),
                small.iter().map(|(tenant, group)| (*tenant, group.rows.clone())).collect(),
            )),
        }
        for (name, members) in files {
            let Some(meta) = parts::write_part(&shared.data_dir, &name, seq, *signal, &members, shared.keys.as_ref())?
            else {
                continue;
            };
            shared.telemetry.parts_written.fetch_add(1, Relaxed);
            shared.telemetry.stored(*signal, meta.tenants.iter().map(|t| t.rows).sum());
            if *signal == Signal::Traces {
                cache_span_indexes(shared, &name, &members);
            }
            metas.push(meta);
        }
    }
    shared.catalog.add(&metas).map_err(StoreError::io("record parts in the catalog"))?;
    if let Some(bucket) = &shared.bucket {
        bucket.remember(&metas.iter().collect::<Vec<_>>());
    }
    Ok((metas, segments))
}

/// Writes the series segment of every metrics part that no segment covers (a data directory
/// from before the series store, or a segment deleted as damaged), from the part's rows.
/// Until then queries read such parts directly. A part that cannot be read is left to the
/// reads that will report and set it aside.
fn backfill_series(shared: &Shared) {
    let (parts, segments) = {
        let state = shared.read();
        (state.parts.clone(), state.series.clone())
    };
    for part in parts.iter().filter(|p| p.signal == Signal::Metrics) {
        for t in &part.tenants {
            if shared.closing.load(Relaxed) {
                return;
            }
            let hour = parts::hour_dir(t.min_time);
            if segments.iter().any(|s| s.tenant == t.tenant && s.hour == hour && s.covers(part.seq)) {
                continue;
            }
            let written = match parts::read_part(part, &t.tenant) {
                Ok(Rows::Metrics(rows)) => {
                    series::write_flushed(&shared.data_dir, &t.tenant, &hour, part.seq, &[&rows], &[])
                }
                Ok(_) => continue,
                Err(err) => {
                    tracing::warn!(part = %part.name, %err, "cannot read a metrics part to build its series");
                    continue;
                }
            };
            match written {
                Ok(segment) => {
                    tracing::info!(segment = %segment.name, "series segment built from a part");
                    shared.write().series.push(segment);
                }
                Err(err) => tracing::error!(part = %part.name, %err, "cannot write the series segment of a part"),
            }
        }
    }
}

/// Merges the segments of each block (tenant and hour) into one once its hour is over and
/// the latest flush (`just_wrote`: the one that just ran wrote something) added nothing to it,
/// or once it holds `series::MAX_OPEN_SEGMENTS`, so a query opens one file per hour. A block
/// still being written — a backfill of past hours, late samples — is so merged once when its
/// writes move on, not rewritten whole after every flush. A failure leaves the sources as they
/// are (a damaged source is set aside: the parts it was built from, if any, replace it).
fn compact_series(shared: &Shared, now_unix_nano: u64, just_wrote: bool) {
    let grace = shared.settings.flush_interval.as_nanos() as u64;
    let mut blocks: BTreeMap<(Tenant, String), Vec<Arc<SegmentMeta>>> = BTreeMap::new();
    let mut newest = 0;
    for s in shared.read().series.iter() {
        newest = newest.max(s.last_seq);
        blocks.entry((s.tenant.clone(), s.hour.clone())).or_default().push(Arc::clone(s));
    }
    for ((_, hour), sources) in blocks {
        let closed = parts::hour_start(&hour).is_some_and(|start| start + parts::HOUR_NANOS + grace <= now_unix_nano);
        let written_last = just_wrote && sources.iter().any(|s| s.last_seq == newest);
        let full = sources.len() >= series::MAX_OPEN_SEGMENTS;
        if sources.len() < 2 || !((closed && !written_last) || full) {
            continue;
        }
        if shared.closing.load(Relaxed) {
            return;
        }
        merge_segments(shared, sources);
    }
}

/// Merges one tenant's segments of one hour into one (`series::compact`), the sources' files
/// deleted; a damaged source is quarantined instead and the merge waits for the next pass.
pub(crate) fn merge_segments(shared: &Shared, mut sources: Vec<Arc<SegmentMeta>>) {
    sources.sort_by_key(|s| s.first_seq);
    match series::compact(&shared.data_dir, &shared.series_indexes, &sources) {
        Ok(merged) => {
            {
                let mut state = shared.write();
                state.series.retain(|s| !sources.iter().any(|o| Arc::ptr_eq(s, o)));
                state.series.push(merged);
            }
            for s in &sources {
                shared.series_indexes.forget(&s.name);
                if let Err(err) = std::fs::remove_file(&s.path) {
                    tracing::warn!(segment = %s.name, %err, "cannot delete a compacted series segment");
                }
            }
            shared.telemetry.series_compactions.fetch_add(1, Relaxed);
        }
        Err(series::SeriesError::Damaged { segment, why }) => {
            let damaged = sources.iter().find(|s| s.name == segment);
            tracing::error!(%segment, %why, "series compaction found a damaged segment");
            if let Some(s) = damaged {
                shared.write().series.retain(|o| !Arc::ptr_eq(o, s));
                shared.series_indexes.forget(&s.name);
                if let Err(err) = super::catalog::quarantine(&shared.data_dir, &s.name) {
                    tracing::error!(segment = %s.name, %err, "cannot move the damaged series segment aside");
                }
            }
        }
        Err(err) => tracing::error!(%err, "series compaction failed; will retry"),
    }
}

fn split_by_hour(rows: &Rows) -> Vec<Rows> {
    fn split<R: Row + Clone>(rows: &[R], wrap: fn(Vec<R>) -> Rows) -> Vec<Rows> {
        let mut by_hour: BTreeMap<String, Vec<R>> = BTreeMap::new();
        for r in rows {
            by_hour.entry(parts::hour_dir(r.key().time_unix_nano)).or_default().push(r.clone());
        }
        by_hour.into_values().map(wrap).collect()
    }
    match rows {
        Rows::Spans(r) => split(r, Rows::Spans),
        Rows::Metrics(r) => split(r, Rows::Metrics),
        Rows::Logs(r) => split(r, Rows::Logs),
        Rows::Profiles(r) => split(r, Rows::Profiles),
        Rows::Series(batch) => split_batch(batch).into_iter().map(Rows::Series).collect(),
    }
}

/// A batch's samples by hour, each hour's series in the batch's order (a series whose samples
/// cross an hour is in both); the batch's own label text is counted in the first.
fn split_batch(batch: &SeriesBatch) -> Vec<SeriesBatch> {
    let mut by_hour: BTreeMap<i64, SeriesBatch> = BTreeMap::new();
    for s in &batch.series {
        for sample in &s.samples {
            let hour = by_hour.entry(sample.t.div_euclid(series::HOUR_MS)).or_default();
            hour.samples += 1;
            match hour.series.last_mut() {
                Some(last) if last.labels.identity() == s.labels.identity() => last.samples.push(*sample),
                _ => hour.series.push(BatchSeries { labels: s.labels.clone(), samples: vec![*sample] }),
            }
        }
    }
    let mut out: Vec<SeriesBatch> = by_hour.into_values().collect();
    if let Some(first) = out.first_mut() {
        first.label_bytes = batch.label_bytes;
    }
    out
}

/// Deletes parts whose newest row is older than the retention period; returns how many.
pub(crate) fn apply_retention(shared: &Shared, now_unix_nano: u64) -> Result<usize, StoreError> {
    let cutoff = now_unix_nano.saturating_sub(shared.settings.retention.as_nanos() as u64);
    let expired: Vec<Arc<PartMeta>> = {
        let mut state = shared.write();
        let (old, keep): (Vec<_>, Vec<_>) = state.parts.drain(..).partition(|p| p.max_time() < cutoff);
        state.parts = keep;
        // Other collectors' parts leave this one's reads; the bucket's compactor removes them.
        let (expired, live): (Vec<_>, Vec<_>) =
            std::mem::take(&mut state.remote).into_iter().partition(|p| p.max_time() < cutoff);
        state.remote = live;
        state.remote_expired.extend(expired);
        old
    };
    if !expired.is_empty() {
        shared.nudge_bucket();
    }
    let cutoff_ms = i64::try_from(cutoff / 1_000_000).unwrap_or(i64::MAX);
    let expired_series: Vec<Arc<SegmentMeta>> = {
        let mut state = shared.write();
        let past = |s: &Arc<SegmentMeta>| s.hour_start_ms.saturating_add(series::HOUR_MS) <= cutoff_ms;
        let (old, keep): (Vec<_>, Vec<_>) = state.series.drain(..).partition(past);
        state.series = keep;
        // Other collectors' segments leave this one's reads; the bucket's compactor removes them.
        let (expired, live): (Vec<_>, Vec<_>) = std::mem::take(&mut state.remote_series).into_iter().partition(past);
        state.remote_series = live;
        state.remote_series_expired.extend(expired);
        old
    };
    for segment in &expired_series {
        shared.series_indexes.forget(&segment.name);
        match std::fs::remove_file(&segment.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(format!("delete {}", segment.name))(e)),
        }
        if let Some(dir) = segment.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    for part in &expired {
        // Out of the catalog first: a crash before the file is gone leaves a file that is
        // entered again at start-up and expires again, never an entry without its file.
        shared.catalog.remove(&part.name).map_err(StoreError::io(format!("record retention of {}", part.name)))?;
        match std::fs::remove_file(&part.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(format!("delete {}", part.name))(e)),
        }
        // Remove the hour directory once it is empty; a non-empty one stays.
        if let Some(dir) = part.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        shared.telemetry.parts_deleted_by_retention.fetch_add(1, Relaxed);
    }
    Ok(expired.len())
}
