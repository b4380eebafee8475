//! The flusher thread: turns frozen head blocks into Parquet parts, advances the WAL
//! checkpoint, deletes flushed segments, and applies retention.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::model::{Row, Rows};
use crate::signal::Signal;
use crate::tenant::Tenant;

use super::Shared;
use super::head::{Block, Chunk};
use super::parts::{self, PartMeta};
use super::writer::Op;

const RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) enum Request {
    /// The head is over its size.
    Full,
    /// Flush everything now and answer when done.
    Now(SyncSender<Result<(), String>>),
    Shutdown,
}

pub(crate) fn run(shared: Arc<Shared>, writer: SyncSender<Op>, rx: Receiver<Request>) {
    let mut last_retention = Instant::now() - shared.settings.retention_interval;
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
        if let Some(Request::Now(reply)) = request {
            let _ = reply.send(result);
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

/// Cuts the head and writes every frozen block, oldest first.
fn flush(shared: &Shared, writer: &SyncSender<Op>) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    writer.send(Op::Cut { done: tx }).map_err(|_| "log writer has stopped".to_string())?;
    rx.recv().map_err(|_| "log writer has stopped".to_string())??;
    loop {
        let next = shared.read().head.frozen.first().map(|f| (f.seq, Arc::clone(&f.block)));
        let Some((seq, block)) = next else { return Ok(()) };
        let started = Instant::now();
        let metas = write_block(shared, seq, &block)?;
        shared.wal.set_checkpoint(seq).map_err(|e| format!("cannot write WAL checkpoint {seq}: {e}"))?;
        {
            let mut state = shared.write();
            state.head.frozen.retain(|f| f.seq != seq);
            state.parts.extend(metas.into_iter().map(Arc::new));
        }
        shared.wal.remove_through(seq).map_err(|e| format!("cannot delete flushed WAL segments: {e}"))?;
        let t = &shared.telemetry;
        t.flushes.fetch_add(1, Relaxed);
        t.flush_nanos.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        tracing::debug!(seq, items = block.items, "flushed head block");
    }
}

/// Rows to write, by tenant, signal and hour directory, with the chunk each came from.
type Groups<'a> = BTreeMap<(Tenant, Signal, String), Vec<(&'a Rows, &'a Chunk)>>;

/// Groups a block's rows by tenant, signal and hour and writes one part per group.
fn write_block(shared: &Shared, seq: u64, block: &Block) -> Result<Vec<PartMeta>, String> {
    // Chunks whose rows all fall in one hour are written as they are; the others are split.
    let mut split: Vec<(Tenant, Rows)> = Vec::new();
    let mut whole: BTreeMap<(Tenant, Signal, String), Vec<&Arc<Chunk>>> = BTreeMap::new();
    for chunk in &block.chunks {
        if chunk.rows.is_empty() {
            continue;
        }
        let (lo, hi) = (parts::hour_dir(chunk.min_time), parts::hour_dir(chunk.max_time));
        if lo == hi {
            whole.entry((chunk.tenant.clone(), chunk.rows.signal(), lo)).or_default().push(chunk);
        } else {
            for rows in split_by_hour(&chunk.rows) {
                split.push((chunk.tenant.clone(), rows));
            }
        }
    }
    let mut groups: Groups<'_> = BTreeMap::new();
    for (key, chunks) in &whole {
        groups.entry(key.clone()).or_default().extend(chunks.iter().map(|c| (&c.rows, &***c)));
    }
    let split_chunks: Vec<Chunk> = split.into_iter().map(|(tenant, rows)| Chunk::new(tenant, rows, 0)).collect();
    for chunk in &split_chunks {
        let hour = parts::hour_dir(chunk.min_time);
        groups.entry((chunk.tenant.clone(), chunk.rows.signal(), hour)).or_default().push((&chunk.rows, chunk));
    }

    let mut metas = Vec::new();
    for ((tenant, signal, hour), members) in groups {
        let rows: Vec<&Rows> = members.iter().map(|(r, _)| *r).collect();
        let path = parts::write_part(&shared.parts_root, &tenant, &hour, seq, &rows).map_err(|e| e.to_string())?;
        let Some(path) = path else { continue };
        let mut services = BTreeSet::new();
        let (mut min_time, mut max_time, mut n) = (u64::MAX, 0, 0u64);
        for (_, chunk) in &members {
            services.extend(chunk.services.iter().cloned());
            min_time = min_time.min(chunk.min_time);
            max_time = max_time.max(chunk.max_time);
            n += chunk.rows.len() as u64;
        }
        shared.telemetry.parts_written.fetch_add(1, Relaxed);
        shared.telemetry.stored(signal, n);
        let trace_keys = parts::trace_keys(rows.iter().copied());
        metas.push(PartMeta { path, tenant, signal, seq, rows: n, min_time, max_time, services, trace_keys });
    }
    Ok(metas)
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
    }
}

/// Deletes parts whose newest row is older than the retention period; returns how many.
pub(crate) fn apply_retention(shared: &Shared, now_unix_nano: u64) -> Result<usize, String> {
    let cutoff = now_unix_nano.saturating_sub(shared.settings.retention.as_nanos() as u64);
    let expired: Vec<Arc<PartMeta>> = {
        let mut state = shared.write();
        let (old, keep): (Vec<_>, Vec<_>) = state.parts.drain(..).partition(|p| p.max_time < cutoff);
        state.parts = keep;
        old
    };
    for part in &expired {
        match std::fs::remove_file(&part.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot delete {}: {e}", part.path.display())),
        }
        // Remove the hour directory once it is empty; a non-empty one stays.
        if let Some(dir) = part.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        shared.telemetry.parts_deleted_by_retention.fetch_add(1, Relaxed);
    }
    Ok(expired.len())
}
