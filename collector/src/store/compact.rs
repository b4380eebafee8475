//! Compaction: the small parts of one directory (tenant or `@shared`, signal, hour) merged
//! into fewer, larger parts sorted by time (within each service slice, for the signals written
//! in slices), in the background, once the hour no longer takes
//! flushes (`docs/compaction.md`).
//!
//! A flush writes one part per tenant (or one shared by the small tenants) per signal and hour,
//! so a day of flushes every 30 s is thousands of files, each opened by every query over its
//! hour. A merge reads a batch of them (at most `max_input_bytes` on disk and `max_input_rows`
//! rows, and only until the rows read hold `max_input_memory_bytes`, so its memory is
//! bounded), sorts each tenant's rows by time and writes them as one
//! part with [`parts::write_part`], the writer the flusher uses: the output has the same
//! per-tenant summary, trace keys, service slices, checksums and encryption as a flushed part.
//!
//! Crash safety comes from the order of durable steps, each one a catalog line or an fsynced
//! file (`store::catalog` holds the start-up half):
//!
//! ```text
//! 1. catalog: {"op":"merging","output":N}        a start deletes N if step 3 is missing
//! 2. write N (temp file, fsync, rename, fsync dir)
//! 3. catalog: {"op":"replace","inputs":[..],"output":{..N..}}    the commit point, one line
//! 4. swap the inputs for N in the state, then delete the inputs' files
//! ```
//!
//! A crash before 3 leaves the inputs in force and N deleted at the next start; after 3, the
//! next start deletes whatever inputs are left. No row is lost or stored twice at any point.
//!
//! Queries in flight hold `Arc<PartMeta>`s of the inputs in their snapshot: an input's file is
//! deleted only once nothing but the compactor holds its meta (or after [`GRACE`]), so they keep
//! reading it, while queries started after step 4 see N alone. Span indexes cached under an
//! input's name are dropped at step 4, and a name removed is given to an output again only
//! once its file is deleted and no query holds the part it named (a merge into a directory
//! that every flush writes to would otherwise run out of names), so no cache keyed by name
//! can answer for a different file.
//!
//! The name of N is a number not used in its directory, at most the WAL checkpoint (so the
//! start-up rule "parts numbered past the checkpoint belong to an unfinished flush" never
//! touches it, and no later flush can take it). Its catalog `seq` is the newest input's, or
//! for metrics parts one that the tenants' series segments cover (`store::series`): a
//! PromQL query reads a metrics part directly only when no segment covers its `seq`, so the
//! output must be covered exactly when its inputs were, or its samples would be missing or
//! counted twice. A batch of metrics parts whose tenants no single segment covers (their
//! hour's segments not merged yet) waits.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::CompactionConfig;
use crate::model::{Row, Rows};
use crate::signal::Signal;
use crate::tenant::Tenant;

use super::Shared;
use super::error::StoreError;
use super::parts::{self, PartError, PartMeta};
use super::series::SegmentMeta;

/// Longest an input's file waits for the queries holding it before it is deleted anyway (a
/// query still reading it then finds it gone and skips it, as after retention).
pub const GRACE: Duration = Duration::from_secs(600);

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Merges committed.
    pub merges: u64,
    /// Parts replaced, their bytes on disk, and the bytes of the parts written for them.
    pub parts_in: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Rows moved.
    pub rows: u64,
    /// Merges given up (an input damaged, locked or deleted meanwhile); retried next pass.
    pub abandoned: u64,
}

/// Where a test stops a merge, as a crash there would (nothing after it is done).
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// After the `merging` line.
    Begun,
    /// After the output file is durable.
    OutputWritten,
    /// After the `replace` line and the swap in the state.
    Replaced,
    /// After the first input's file is deleted.
    FirstInputDeleted,
}

/// The compactor's own state, one per store; its lock makes merges take turns (and a tenant
/// deletion, `store::delete`, takes its turn with them).
#[derive(Debug, Default)]
pub(crate) struct Compactor {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    /// Inputs of committed merges whose files wait for their readers, and since when.
    graveyard: Vec<(Arc<PartMeta>, Instant)>,
    /// Names removed by merges (and tenant deletions) in this process whose parts a query may
    /// still hold: not given to an output until the part is reaped with no query holding it.
    retired: HashSet<String>,
    /// Parts that could not be opened (their key is missing): left out of merges.
    locked: HashSet<String>,
}

/// The background thread: a pass every `interval`, until the store closes.
pub(crate) fn run(shared: Arc<Shared>, compactor: Arc<Compactor>, config: CompactionConfig) {
    let step = Duration::from_millis(100);
    let mut last = Instant::now();
    while !shared.closing.load(Relaxed) {
        std::thread::sleep(step);
        if last.elapsed() < config.interval.0 {
            // Inputs waiting for their readers go as soon as the readers are done.
            compactor.lock().reap(false);
            continue;
        }
        last = Instant::now();
        match pass(&shared, &compactor, &config, now_unix_nano()) {
            Ok(report) if report.merges > 0 => tracing::info!(?report, "compacted parts"),
            Ok(_) => {}
            Err(err) => {
                shared.telemetry.compaction_failures.fetch_add(1, Relaxed);
                tracing::error!(%err, "compaction failed; the parts stay as they are, will retry");
            }
        }
    }
    compactor.lock().reap(false);
}

fn now_unix_nano() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Compactor {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Deletes the files of replaced inputs nobody reads any more (or, with `all`, every one).
    /// The name of one that no query held is free for outputs again: a query holding a part's
    /// meta would read another file under its name and take it for damage.
    pub(crate) fn reap(&mut self, all: bool) {
        let mut released = Vec::new();
        self.graveyard.retain(|(part, since)| {
            let held = Arc::strong_count(part) > 1;
            if !all && held && since.elapsed() < GRACE {
                return true;
            }
            delete_input(part);
            if !held {
                released.push(part.name.clone());
            }
            false
        });
        for name in released {
            self.retired.remove(&name);
        }
    }

    /// Takes a part out for good whose file is deleted already (tenant deletion): its name
    /// waits, as a merged input's does, until no query holds it.
    pub(crate) fn bury(&mut self, part: Arc<PartMeta>) {
        self.retired.insert(part.name.clone());
        self.graveyard.push((part, Instant::now()));
    }
}

fn delete_input(part: &PartMeta) {
    match std::fs::remove_file(&part.path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Left for the next start, which deletes inputs named by a `replace` line.
        Err(err) => tracing::warn!(part = %part.name, %err, "cannot delete a merged part; deleted at the next start"),
    }
}

/// One pass: every closed hour's directories with at least `min_parts` small parts, merged
/// in batches, one merge at a time.
pub(crate) fn pass(
    shared: &Shared,
    compactor: &Compactor,
    config: &CompactionConfig,
    now_unix_nano: u64,
) -> Result<CompactionReport, StoreError> {
    pass_until(shared, compactor, config, now_unix_nano, None)
}

#[cfg(test)]
pub(crate) fn pass_stopping(
    shared: &Shared,
    compactor: &Compactor,
    config: &CompactionConfig,
    now_unix_nano: u64,
    stop: Stop,
) -> Result<CompactionReport, StoreError> {
    pass_until(shared, compactor, config, now_unix_nano, Some(stop))
}

type StopAt = Option<Stop>;

fn pass_until(
    shared: &Shared,
    compactor: &Compactor,
    config: &CompactionConfig,
    now_unix_nano: u64,
    stop: StopAt,
) -> Result<CompactionReport, StoreError> {
    let mut inner = compactor.lock();
    inner.reap(false);
    let mut report = CompactionReport::default();
    let (parts, segments) = {
        let state = shared.read();
        (state.parts.clone(), state.series.clone())
    };
    shared.telemetry.parts.store(parts.len() as u64, Relaxed);
    // With a shared bucket, parts are merged there by the directory's compactor
    // (`bucket::compact`), once committed; merging them here too could commit one part's rows
    // in two merges.
    let parts: Vec<Arc<PartMeta>> = match shared.bucket {
        Some(_) => Vec::new(),
        None => parts,
    };
    let batches = plan(&parts, &segments, config, &inner.locked, shared.settings.flush_interval, now_unix_nano);
    // The pass's own references to parts must not keep the inputs' files from being deleted.
    drop((parts, segments));
    for batch in batches {
        if shared.closing.load(Relaxed) {
            break;
        }
        take_turns_with_the_flusher(shared);
        match merge(shared, &mut inner, &batch, config.max_input_memory_bytes, stop, None)? {
            Some(done) => {
                report.merges += 1;
                report.parts_in += done.parts_in;
                report.bytes_in += done.bytes_in;
                report.bytes_out += done.bytes_out;
                report.rows += done.rows;
                let t = &shared.telemetry;
                t.compactions.fetch_add(1, Relaxed);
                t.compaction_bytes.fetch_add(done.bytes_in, Relaxed);
                t.compaction_parts.fetch_add(done.parts_in, Relaxed);
            }
            None => report.abandoned += 1,
        }
        if stop.is_some() {
            break;
        }
    }
    inner.reap(false);
    shared.telemetry.parts.store(shared.read().parts.len() as u64, Relaxed);
    Ok(report)
}

/// Waits (up to a flush interval) while the flusher has blocks to write: a merge competes with
/// it for the disk, and the flusher's work is what keeps ingest from being refused.
fn take_turns_with_the_flusher(shared: &Shared) {
    let started = Instant::now();
    while !shared.read().head.frozen.is_empty()
        && started.elapsed() < shared.settings.flush_interval
        && !shared.closing.load(Relaxed)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The parts' directory (tenant or `@shared`), signal and hour, from its name.
pub(crate) fn directory(name: &str) -> Option<(&str, &str, &str)> {
    let mut it = name.split('/');
    let (_, dir, signal, hour) = (it.next()?, it.next()?, it.next()?, it.next()?);
    Some((dir, signal, hour))
}

/// Batches to merge: per directory of a closed hour, the parts smaller than the target, oldest
/// first, cut into batches within the input bounds.
pub(crate) fn plan(
    parts: &[Arc<PartMeta>],
    segments: &[Arc<SegmentMeta>],
    config: &CompactionConfig,
    locked: &HashSet<String>,
    flush_interval: Duration,
    now_unix_nano: u64,
) -> Vec<Vec<Arc<PartMeta>>> {
    let grace = flush_interval.as_nanos() as u64;
    let mut dirs: BTreeMap<(&str, &str, &str), Vec<&Arc<PartMeta>>> = BTreeMap::new();
    for part in parts {
        let Some(key @ (_, _, hour)) = directory(&part.name) else { continue };
        let closed = parts::hour_start(hour).is_some_and(|start| start + parts::HOUR_NANOS + grace <= now_unix_nano);
        if closed && part.size < config.target_part_bytes && !locked.contains(&part.name) {
            dirs.entry(key).or_default().push(part);
        }
    }
    let mut batches = Vec::new();
    for (_, mut small) in dirs {
        if small.len() < config.min_parts.max(2) {
            continue;
        }
        small.sort_by(|a, b| (a.seq, &a.name).cmp(&(b.seq, &b.name)));
        let mut batch: Vec<Arc<PartMeta>> = Vec::new();
        let (mut bytes, mut rows) = (0u64, 0u64);
        for part in small {
            let part_rows: u64 = part.tenants.iter().map(|t| t.rows).sum();
            let full = !batch.is_empty()
                && (bytes + part.size > config.max_input_bytes || rows + part_rows > config.max_input_rows);
            if full {
                batches.push(std::mem::take(&mut batch));
                (bytes, rows) = (0, 0);
            }
            if part.signal == Signal::Metrics && !batch.is_empty() {
                let mut with = batch.clone();
                with.push(Arc::clone(part));
                if covering_seq(&with, segments, None).is_none() {
                    // Another series segment's flushes: this part starts the next batch.
                    batches.push(std::mem::take(&mut batch));
                    (bytes, rows) = (0, 0);
                }
            }
            bytes += part.size;
            rows += part_rows;
            batch.push(Arc::clone(part));
            if bytes >= config.target_part_bytes {
                batches.push(std::mem::take(&mut batch));
                (bytes, rows) = (0, 0);
            }
        }
        batches.push(batch);
    }
    batches.retain(|b| b.len() >= 2 && (b[0].signal != Signal::Metrics || covering_seq(b, segments, None).is_some()));
    batches
}

/// For a batch of metrics parts: a `seq` that, for every tenant of the batch (but `without`,
/// whose rows are left out), one series
/// segment covers together with every input holding that tenant, so the output is read from
/// the segments exactly as the inputs were. `None` when there is none.
pub(crate) fn covering_seq(
    batch: &[Arc<PartMeta>],
    segments: &[Arc<SegmentMeta>],
    without: Option<&Tenant>,
) -> Option<u64> {
    let mut seqs: BTreeMap<&Tenant, Vec<u64>> = BTreeMap::new();
    let mut hour = None;
    for part in batch {
        hour = hour.or_else(|| directory(&part.name).map(|(_, _, h)| h));
        for t in part.tenants.iter().filter(|t| Some(&t.tenant) != without) {
            seqs.entry(&t.tenant).or_default().push(part.seq);
        }
    }
    let hour = hour?;
    let (mut lo, mut hi) = (0u64, u64::MAX);
    for (tenant, seqs) in seqs {
        let segment =
            segments.iter().find(|s| &s.tenant == tenant && s.hour == hour && seqs.iter().all(|&q| s.covers(q)))?;
        lo = lo.max(segment.first_seq);
        hi = hi.min(segment.last_seq);
    }
    let newest = batch.iter().map(|p| p.seq).max()?;
    (lo <= hi).then(|| newest.clamp(lo, hi))
}

/// What a committed merge moved.
struct Done {
    parts_in: u64,
    bytes_in: u64,
    bytes_out: u64,
    rows: u64,
}

/// Writes parts of one directory that hold other tenants' rows too again without `tenant`'s,
/// merged into one as a compaction would (tenant deletion, `store::delete`): the same crash
/// safety, memory bound and series-segment cover, the inputs' files deleted once the queries
/// reading them are done. Returns how many of `batch`'s first parts were replaced; `None` when
/// none was (an input could not be read — a damaged one is quarantined, as a merge would —, no
/// series segment covers the batch, or no part name is free).
pub(crate) fn rewrite_without(
    shared: &Shared,
    inner: &mut Inner,
    batch: &[Arc<PartMeta>],
    max_memory: u64,
    tenant: &Tenant,
) -> Result<Option<usize>, StoreError> {
    Ok(merge(shared, inner, batch, max_memory, None, Some(tenant))?.map(|done| done.parts_in as usize))
}

/// Merges one batch, or its oldest inputs whose rows take `max_memory` bytes in memory;
/// `None` when it was given up (see [`CompactionReport::abandoned`]). With `without`, that
/// tenant's rows are left out of the output ([`rewrite_without`]).
fn merge(
    shared: &Shared,
    inner: &mut Inner,
    batch: &[Arc<PartMeta>],
    max_memory: u64,
    stop: StopAt,
    without: Option<&Tenant>,
) -> Result<Option<Done>, StoreError> {
    let first = &batch[0];
    let signal = first.signal;
    let Some((dir, _, hour)) = directory(&first.name) else { return Ok(None) };
    let directory_tenant = Tenant::parse(dir).ok();

    let Inputs { mut by_tenant, rows: rows_in, taken } = match read_inputs(batch, max_memory, directory_tenant.as_ref())
    {
        Ok(inputs) => inputs,
        Err(InputError::Unreadable(i, err)) => {
            give_up(shared, inner, &batch[i], &err);
            return Ok(None);
        }
        Err(InputError::OtherSignal(i)) => {
            tracing::error!(part = %batch[i].name, "a merge input decoded as another signal; merge given up");
            return Ok(None);
        }
    };
    let batch = &batch[..taken];
    let expected: u64 = batch.iter().flat_map(|p| p.tenants.iter().map(|t| t.rows)).sum();
    if rows_in != expected {
        tracing::error!(rows_in, expected, directory = %format!("{dir}/{signal}/{hour}"), "merge inputs hold other row counts than the catalog says");
        return Ok(None);
    }
    if let Some(tenant) = without {
        by_tenant.remove(tenant);
        if by_tenant.is_empty() {
            return Ok(None);
        }
    }
    let seq = match signal {
        Signal::Metrics => {
            let segments = shared.read().series.clone();
            match covering_seq(batch, &segments, without) {
                Some(seq) => seq,
                None => return Ok(None),
            }
        }
        _ => batch.iter().map(|p| p.seq).max().unwrap_or(first.seq),
    };
    let Some(name) = output_name(shared, inner, dir, signal, hour, batch)? else {
        tracing::warn!(directory = %format!("{dir}/{signal}/{hour}"), "no free part name to merge into");
        return Ok(None);
    };

    shared.catalog.begin_merge(&name).map_err(StoreError::io(format!("record the merge into {name}")))?;
    if stop == Some(Stop::Begun) {
        return Ok(None);
    }
    for rows in by_tenant.values_mut() {
        sort_by_time(rows);
    }
    let groups: Vec<(&Tenant, Vec<&Rows>)> = by_tenant.iter().map(|(t, r)| (t, vec![r])).collect();
    let written = parts::write_part(&shared.data_dir, &name, seq, signal, &groups, shared.keys.as_ref());
    drop(groups);
    drop(by_tenant);
    let Some(meta) = written? else { return Ok(None) };
    if stop == Some(Stop::OutputWritten) {
        return Ok(None);
    }
    let meta = Arc::new(meta);

    // The commit: under the state lock, so that nothing takes an input out (retention,
    // quarantine) or records it again (the start-up pass's SHA-256) between the check and
    // the line.
    {
        let mut state = shared.write();
        let live = batch.iter().all(|input| state.parts.iter().any(|p| Arc::ptr_eq(p, input)));
        if !live {
            drop(state);
            tracing::info!(output = %name, "a merge input left the store meanwhile; merge given up");
            let _ = std::fs::remove_file(&meta.path);
            return Ok(None);
        }
        let inputs: Vec<&str> = batch.iter().map(|p| p.name.as_str()).collect();
        // On failure the line may or may not be on disk: the output file stays, so either
        // reading of the catalog at the next start is whole (see `store::catalog`).
        shared.catalog.replace(&inputs, &meta).map_err(StoreError::io(format!("record the merge into {name}")))?;
        if let Some(bucket) = &shared.bucket {
            bucket.remember(&[&meta]);
        }
        state.parts.retain(|p| !batch.iter().any(|input| Arc::ptr_eq(p, input)));
        state.parts.push(Arc::clone(&meta));
    }
    shared.nudge_bucket();
    for input in batch {
        shared.span_indexes.forget(&input.name);
        inner.retired.insert(input.name.clone());
    }
    if stop == Some(Stop::Replaced) {
        return Ok(Some(done(batch, &meta, rows_in)));
    }
    if signal == Signal::Traces {
        shared.hold_trace_keys();
        super::flush::index_traces_parts(shared, std::slice::from_ref(&meta));
    }
    let now = Instant::now();
    if stop == Some(Stop::FirstInputDeleted) {
        delete_input(&batch[0]);
        return Ok(Some(done(batch, &meta, rows_in)));
    }
    inner.graveyard.extend(batch.iter().map(|p| (Arc::clone(p), now)));
    inner.reap(false);
    Ok(Some(done(batch, &meta, rows_in)))
}

/// The rows a merge read from its inputs.
pub(crate) struct Inputs {
    /// Every tenant's rows.
    pub by_tenant: BTreeMap<Tenant, Rows>,
    /// How many rows in all.
    pub rows: u64,
    /// How many of the batch's inputs were read (the first ones).
    pub taken: usize,
}

/// Why a merge's inputs could not be read: the input at this index of the batch.
pub(crate) enum InputError {
    Unreadable(usize, PartError),
    /// It decoded as another signal than the batch's first input.
    OtherSignal(usize),
}

/// Every tenant's rows of a batch's inputs, read oldest first until they hold `max_memory`
/// (at least two inputs, so every merge makes progress); the inputs not read stay for the next
/// merge. `tenant` is the directory's tenant (`None` for `@shared`). Local merges and the
/// bucket's (`bucket::compact`) both read their inputs here.
pub(crate) fn read_inputs(
    batch: &[Arc<PartMeta>],
    max_memory: u64,
    tenant: Option<&Tenant>,
) -> Result<Inputs, InputError> {
    let signal = batch.first().map_or(Signal::Traces, |p| p.signal);
    let mut inputs = Inputs { by_tenant: BTreeMap::new(), rows: 0, taken: 0 };
    let mut memory = 0u64;
    for (i, part) in batch.iter().enumerate() {
        if inputs.taken >= 2 && memory >= max_memory {
            break;
        }
        let rows = parts::read_verified(part)
            .and_then(|bytes| parts::decode(&part.name, signal, bytes, None, tenant))
            .map_err(|err| InputError::Unreadable(i, err))?;
        for (tenant, rows) in rows {
            inputs.rows += rows.len() as u64;
            memory += rows.memory_bytes();
            match inputs.by_tenant.get_mut(&tenant) {
                Some(into) => {
                    if !append(into, rows) {
                        return Err(InputError::OtherSignal(i));
                    }
                }
                None => {
                    inputs.by_tenant.insert(tenant, rows);
                }
            }
        }
        inputs.taken += 1;
    }
    Ok(inputs)
}

fn done(batch: &[Arc<PartMeta>], meta: &PartMeta, rows: u64) -> Done {
    Done { parts_in: batch.len() as u64, bytes_in: batch.iter().map(|p| p.size).sum(), bytes_out: meta.size, rows }
}

/// An input that cannot be read ends its merge: a damaged one is set aside as a query would
/// do, one encrypted with a missing key is left out of merges, one deleted meanwhile
/// (retention) needs nothing.
fn give_up(shared: &Shared, inner: &mut Inner, part: &Arc<PartMeta>, err: &PartError) {
    match err {
        PartError::Damaged { .. } => {
            shared.quarantine(part, err);
        }
        PartError::Key { .. } => {
            inner.locked.insert(part.name.clone());
            shared.locked(part, err);
        }
        err if err.is_not_found() => {}
        err => tracing::warn!(%err, "cannot read a part to merge it; left as it is"),
    }
}

/// A part name in the inputs' directory that no file has, no live or removed part had in
/// this process, and at most the WAL checkpoint: searched down from the newest input, then up
/// to the checkpoint.
fn output_name(
    shared: &Shared,
    inner: &Inner,
    dir: &str,
    signal: Signal,
    hour: &str,
    batch: &[Arc<PartMeta>],
) -> Result<Option<String>, StoreError> {
    let checkpoint = shared.wal.checkpoint().map_err(StoreError::io("read the WAL checkpoint"))?;
    let newest = batch.iter().map(|p| p.seq).max().unwrap_or(0).min(checkpoint);
    let live: HashSet<String> = shared.read().parts.iter().map(|p| p.name.clone()).collect();
    let free = |n: u64| {
        let name = parts::part_name(dir, signal, hour, n);
        let taken = live.contains(&name)
            || inner.retired.contains(&name)
            || inner.graveyard.iter().any(|(p, _)| p.name == name)
            || shared.data_dir.join(&name).exists();
        (!taken).then_some(name)
    };
    Ok((0..=newest).rev().chain(newest + 1..=checkpoint).find_map(free))
}

/// Adds `more` to `into`; false when they are rows of different signals.
fn append(into: &mut Rows, more: Rows) -> bool {
    match (into, more) {
        (Rows::Spans(a), Rows::Spans(b)) => a.extend(b),
        (Rows::Metrics(a), Rows::Metrics(b)) => a.extend(b),
        (Rows::Logs(a), Rows::Logs(b)) => a.extend(b),
        (Rows::Profiles(a), Rows::Profiles(b)) => a.extend(b),
        _ => return false,
    }
    true
}

/// Orders rows by their time (stable: rows of one time keep their order).
pub(crate) fn sort_by_time(rows: &mut Rows) {
    fn sort<R: Row>(rows: &mut [R]) {
        rows.sort_by_key(|r| r.key().time_unix_nano);
    }
    match rows {
        Rows::Spans(r) => sort(r),
        Rows::Metrics(r) => sort(r),
        Rows::Logs(r) => sort(r),
        Rows::Profiles(r) => sort(r),
        Rows::Series(_) => {}
    }
}

#[cfg(test)]
#[path = "compact_tests.rs"]
pub(crate) mod tests;
