//! Checkpoints of the compaction log (ADR 0011, `docs/object-storage.md`).
//!
//! The log (`compact`) grows by one entry per merge, retention pass and deletion; without
//! checkpoints every start would list and read all of it. A checkpoint is the log folded up
//! to an entry: the parts its entries added that no later entry removed, and every name they
//! removed. Applied to a reader at any entry before it, it leaves the reader where applying
//! the entries in between would (adds of names removed are ignored by readers, and removals
//! are kept whole), so a start reads the newest checkpoint and the entries after it.
//!
//! ```text
//! checkpoints/<seq>/<writer>-<k>.json   a chunk: a manifest of adds of one writer, or of removals
//! checkpoints/<seq>.json                {"seq":…,"writer":…,"chunks":[{"name":…,"size":…,"sha256":…}]}
//! ```
//!
//! One collector at a time makes them, the holder of the `@log` lease, every
//! `log_checkpoint_every` entries: it reads the previous checkpoint and the entries after it
//! from the bucket, folds them, uploads the chunks, and creates the marker with a create-only
//! write — a checkpoint exists once its marker does, and the chunks are checked against the
//! marker's sizes and SHA-256 when read. Once the newest checkpoint is `orphan_grace` old, the
//! entries it holds and the checkpoints before it are deleted: a compactor cannot be inside a
//! commit that long (it commits within its lease, at most half of `orphan_grace`), so no entry
//! number is created again once deleted. A reader whose next entry is gone, or whose newest
//! checkpoint is damaged, takes the newest readable checkpoint that the entries still present
//! continue.
//!
//! The fold holds the lines of the live parts its sources add in memory, as a writer's fold of
//! its own manifests does (`bucket::fold_manifests`): about the size of the checkpoint.
//! Removals of parts whose hour ended more than a day before retention are dropped from it:
//! such a part is past retention wherever its add is read, and removed again if it is.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::Shared;
use super::super::parts;
use super::catalog::{self, Manifest, ManifestLine};
use super::compact::{self, Compactor, lease};
use super::{Bucket, BucketError, FOLDED_MANIFEST_BYTES, Gone, MAX_MANIFEST_BYTES, Remotes, RequestError, now_ms};

/// Where checkpoints are, under the bucket's prefix.
pub(crate) const DIR: &str = "checkpoints";
/// The lease that makes one collector at a time the checkpointer (no tenant is named so).
pub(crate) const LEASE: &str = "@log";
/// Largest marker read.
const MAX_MARKER_BYTES: u64 = 1 << 20;
/// Test builds only: a checkpoint waits this many milliseconds between uploading its chunks
/// and creating its marker, so a test can kill the checkpointer exactly there.
const STALL_ENV: &str = "SLO_GATE_FAULT_BUCKET_CHECKPOINT_STALL_MS";
/// Removals kept this long past retention.
pub(super) const REMOVAL_MARGIN: Duration = Duration::from_secs(24 * 3600);

/// The marker of the checkpoint at entry `seq`.
pub(crate) fn marker_name(seq: u64) -> String {
    format!("{DIR}/{seq:012}.json")
}

/// The entry a marker stands at, from its name.
pub(crate) fn marker_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(DIR)?.strip_prefix('/')?.strip_suffix(".json")?;
    (digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// The entry a chunk's checkpoint stands at, from the chunk's name.
fn chunk_seq(name: &str) -> Option<u64> {
    let (digits, file) = name.strip_prefix(DIR)?.strip_prefix('/')?.split_once('/')?;
    let ours = !file.is_empty() && !file.contains('/') && file.ends_with(".json");
    (ours && digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// A marker's body.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    seq: u64,
    writer: String,
    chunks: Vec<Chunk>,
}

/// A chunk as its marker names it.
#[derive(Debug, Serialize, Deserialize)]
struct Chunk {
    name: String,
    size: u64,
    sha256: String,
}

/// The log folded: the parts added and not removed since, with their lines and writers, and
/// every name removed.
#[derive(Debug, Default)]
pub(crate) struct Fold {
    live: HashMap<String, (u64, Arc<str>, String)>,
    removed: BTreeSet<String>,
    order: u64,
}

impl Fold {
    /// Folds one entry (or chunk) of `writer` in, as a reader applies it: an add of a name
    /// added already or removed is ignored, a removal takes the name out for good.
    pub(crate) fn apply(&mut self, writer: &str, lines: Vec<ManifestLine>) {
        let writer: Arc<str> = Arc::from(writer);
        for line in lines {
            match line {
                ManifestLine::Add { name, json } => {
                    if !self.removed.contains(&name) && !self.live.contains_key(&name) {
                        self.order += 1;
                        self.live.insert(name, (self.order, Arc::clone(&writer), json));
                    }
                }
                ManifestLine::Remove { name } => {
                    self.live.remove(&name);
                    self.removed.insert(name);
                }
            }
        }
    }

    /// Drops the removals of parts and segments whose hour ended before `cutoff` (Unix
    /// nanoseconds): past retention wherever they are read.
    pub(crate) fn forget_removals_before(&mut self, cutoff: u64) {
        self.removed.retain(|name| hour_end(name).is_none_or(|end| end >= cutoff));
    }

    /// The chunks' bodies: manifests of one writer's adds each, in the order added, then the
    /// removals under `own`, none past `max_bytes` of lines unless one line is.
    pub(crate) fn chunks(self, own: &str, max_bytes: usize) -> Result<Vec<Vec<u8>>, String> {
        let mut by_writer: BTreeMap<Arc<str>, Vec<(u64, String)>> = BTreeMap::new();
        for (_, (order, writer, json)) in self.live {
            by_writer.entry(writer).or_default().push((order, json));
        }
        let mut bodies = Vec::new();
        for (writer, mut adds) in by_writer {
            adds.sort();
            for batch in batches(adds.into_iter().map(|(_, json)| json), |json| json.len(), max_bytes) {
                bodies.push(catalog::manifest_json(&writer, &batch, &[]).map_err(|e| e.to_string())?);
            }
        }
        // A removal's line is its name and some 25 bytes around it.
        for batch in batches(self.removed.into_iter(), |name| name.len() + 25, max_bytes) {
            bodies.push(catalog::manifest_json(own, &[], &batch).map_err(|e| e.to_string())?);
        }
        Ok(bodies)
    }
}

/// `items` in consecutive batches of at most `max` bytes by `size`, none empty.
fn batches<T>(items: impl Iterator<Item = T>, size: impl Fn(&T) -> usize, max: usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let n = size(&item);
        match out.last_mut() {
            Some(batch) if bytes + n <= max => batch.push(item),
            _ => {
                out.push(vec![item]);
                bytes = 0;
            }
        }
        bytes += n;
    }
    out
}

/// When the hour of a part (`parts/<dir>/<signal>/<hour>/<file>`) or segment
/// (`series/<tenant>/<hour>/<file>`) ends, in Unix nanoseconds.
pub(super) fn hour_end(name: &str) -> Option<u64> {
    let hour = match name.split('/').collect::<Vec<_>>().as_slice() {
        [parts::PARTS_DIR, _, _, hour, _] => *hour,
        [super::super::series::SERIES_DIR, _, hour, _] => *hour,
        _ => return None,
    };
    parts::hour_start(hour).map(|start| start + 3_600_000_000_000)
}

/// The checkpoints' markers in the bucket, by the entry they stand at, in order.
fn markers(bucket: &Bucket) -> Result<Vec<u64>, RequestError> {
    Ok(bucket.list(DIR, None)?.iter().filter_map(|n| marker_seq(n)).collect())
}

/// The bytes of checkpoint `seq`'s chunks, each checked against its marker's size and
/// SHA-256, or an error naming what is wrong.
fn chunk_bytes(bucket: &Bucket, seq: u64) -> Result<Vec<(String, Bytes)>, String> {
    let name = marker_name(seq);
    let bytes = bucket.get(&name, MAX_MARKER_BYTES).map_err(|e| format!("{name}: {e}"))?;
    let marker: Marker = serde_json::from_slice(&bytes).map_err(|e| format!("{name} does not parse: {e}"))?;
    if marker.seq != seq {
        return Err(format!("{name} says it stands at entry {}", marker.seq));
    }
    let mut out = Vec::with_capacity(marker.chunks.len());
    for chunk in marker.chunks {
        if chunk_seq(&chunk.name) != Some(seq) {
            return Err(format!("{name} names {:?}, not one of its chunks", chunk.name));
        }
        let bytes = bucket.get(&chunk.name, MAX_MANIFEST_BYTES).map_err(|e| format!("{}: {e}", chunk.name))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if bytes.len() as u64 != chunk.size || digest != chunk.sha256 {
            return Err(format!(
                "{} is damaged: {} bytes with SHA-256 {digest}, not the {} bytes with SHA-256 {} its marker names",
                chunk.name,
                bytes.len(),
                chunk.size,
                chunk.sha256
            ));
        }
        out.push((chunk.name, bytes));
    }
    Ok(out)
}

/// Reads checkpoint `seq` whole, each chunk parsed as a manifest, for a reader.
fn load(bucket: &Bucket, seq: u64) -> Result<Vec<(String, Manifest)>, String> {
    chunk_bytes(bucket, seq)?
        .into_iter()
        .map(|(name, bytes)| {
            catalog::manifest_from_json(&bytes, &bucket.cache_dir, bucket.keys.as_ref())
                .ok_or_else(|| format!("{name} does not parse"))
        })
        .collect()
}

/// Applies the compaction log after the last entry `remotes` applied, in order — from the
/// newest checkpoint the entries present continue when the next entry is gone (or at the
/// first pass) — adding what leaves reads to `gone` and the names removed to `merged_away`.
/// Returns how many entries and checkpoints were applied.
pub(super) fn apply_log(
    bucket: &Arc<Bucket>,
    remotes: &mut Remotes,
    gone: &mut Gone,
    merged_away: &mut HashSet<String>,
) -> Result<usize, BucketError> {
    // Listed from the last entry applied on: when it is gone too, checkpoints may be ahead.
    let offset = (remotes.log_seq > 1).then(|| compact::entry_name(remotes.log_seq - 1));
    let listed = bucket.list(compact::LOG_DIR, offset.as_deref()).map_err(|e| bucket.error(e.to_string()))?;
    let mut entries: Vec<(u64, String)> =
        listed.into_iter().filter_map(|name| compact::entry_seq(&name).map(|seq| (seq, name))).collect();
    let holds_last = remotes.log_seq == 0 || entries.iter().any(|(seq, _)| *seq == remotes.log_seq);
    entries.retain(|(seq, _)| *seq > remotes.log_seq);
    let mut applied = 0;
    let first = entries.first().map(|(seq, _)| *seq);
    let gap = first.map_or(!holds_last, |f| f > remotes.log_seq + 1);
    if gap || remotes.log_seq == 0 {
        let found = markers(bucket).map_err(|e| bucket.error(e.to_string()))?;
        // A checkpoint ahead of this reader that the entries present continue, newest first.
        let usable = found.into_iter().rev().filter(|&c| c > remotes.log_seq && first.is_none_or(|f| c + 1 >= f));
        for seq in usable {
            match load(bucket, seq) {
                Ok(chunks) => {
                    for (writer, manifest) in chunks {
                        merged_away.extend(manifest.removed.iter().cloned());
                        remotes.apply_from(bucket, &writer, manifest, gone);
                    }
                    tracing::info!(
                        checkpoint = seq,
                        after = remotes.log_seq,
                        "applied a checkpoint of the compaction log"
                    );
                    remotes.log_seq = seq;
                    applied += 1;
                    break;
                }
                Err(e) => {
                    tracing::error!(checkpoint = seq, error = %e, "a checkpoint of the compaction log cannot be read; an older one is tried")
                }
            }
        }
        if first.is_some_and(|f| f > remotes.log_seq + 1) {
            // Nothing readable bridges the gap: what the missing entries did is missing here.
            tracing::error!(
                after = remotes.log_seq,
                next = first,
                "compaction log entries are gone and no checkpoint holding them can be read; applying the rest"
            );
            bucket.skipped_manifest.store(true, Ordering::SeqCst);
        }
    }
    for (seq, name) in entries {
        if seq <= remotes.log_seq {
            continue;
        }
        if seq != remotes.log_seq + 1 && remotes.log_seq > 0 {
            tracing::warn!(entry = %name, after = remotes.log_seq, "the compaction log skips entries; applying it in order");
        }
        let bytes = match bucket.get(&name, MAX_MANIFEST_BYTES) {
            Ok(bytes) => bytes,
            // Deleted under a checkpoint since the listing: the next pass starts from it.
            Err(RequestError::NotFound) => break,
            Err(e) => return Err(bucket.error(e.to_string())),
        };
        match catalog::manifest_from_json(&bytes, &bucket.cache_dir, bucket.keys.as_ref()) {
            Some((writer, entry)) => {
                merged_away.extend(entry.removed.iter().cloned());
                remotes.apply_from(bucket, &writer, entry, gone);
            }
            None => {
                tracing::error!(entry = %name, "compaction log entry does not parse; skipped");
                bucket.skipped_manifest.store(true, Ordering::SeqCst);
            }
        }
        remotes.log_seq = seq;
        applied += 1;
    }
    Ok(applied)
}

/// The checkpointer's state, kept between the compactor's passes.
#[derive(Debug, Default)]
pub(crate) struct Checkpointer {
    /// When the old entries and checkpoints are looked at next (`None`: at the first pass).
    next_prune: Option<Instant>,
    /// The newest checkpoint this collector listed: checkpoints are listed again only once the
    /// log is `checkpoint_every` entries past it, or to delete what is old.
    newest: u64,
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// The checkpoint made, by the entry it stands at.
    pub made: Option<u64>,
    /// Log entries, markers and chunks deleted.
    pub deleted: usize,
}

/// Makes a checkpoint when the log this collector applied is `checkpoint_every` entries past
/// the newest, and deletes what the newest checkpoint `orphan_grace` old makes unneeded —
/// both under the `@log` lease.
pub(crate) fn pass(
    shared: &Shared,
    bucket: &Bucket,
    compactor: &mut Compactor,
    checkpointer: &mut Checkpointer,
) -> Result<Report, String> {
    let mut report = Report::default();
    if !bucket.compacts {
        return Ok(report);
    }
    let applied = bucket.log_seq.load(Ordering::SeqCst);
    let prune_due = checkpointer.next_prune.is_none_or(|at| Instant::now() >= at);
    if applied < checkpointer.newest + bucket.checkpoint_every && !prune_due {
        return Ok(report);
    }
    let found = markers(bucket).map_err(|e| bucket.error(e.to_string()).to_string())?;
    let newest = found.last().copied().unwrap_or(0);
    checkpointer.newest = newest;
    let due = applied >= newest + bucket.checkpoint_every;
    if !(due || prune_due && newest > 0) || !lease(bucket, compactor, LEASE)? {
        return Ok(report);
    }
    if due {
        report.made = make(shared, bucket, compactor, &found, applied)?;
        checkpointer.newest = report.made.unwrap_or(newest);
    }
    if prune_due || report.made.is_some() {
        report.deleted = prune(bucket)?;
        checkpointer.next_prune =
            Some(Instant::now() + (bucket.orphan_grace / 4).clamp(bucket.refresh, Duration::from_secs(3600)));
    }
    Ok(report)
}

/// Makes the checkpoint at entry `seq` from the newest readable checkpoint of `found` (none:
/// from the first entry) and the entries after it; `None` when given up (an entry gone, the
/// lease lost, another's marker first).
fn make(
    shared: &Shared,
    bucket: &Bucket,
    compactor: &mut Compactor,
    found: &[u64],
    seq: u64,
) -> Result<Option<u64>, String> {
    let error = |e: String| bucket.error(e).to_string();
    let mut fold = Fold::default();
    let mut previous = 0;
    for &candidate in found.iter().rev().filter(|&&c| c <= seq) {
        match read_previous(bucket, candidate) {
            Ok(chunks) => {
                for (writer, lines) in chunks {
                    fold.apply(&writer, lines);
                }
                previous = candidate;
                break;
            }
            Err(e) => {
                tracing::warn!(checkpoint = candidate, error = %e, "a checkpoint of the compaction log cannot be read; an older one is tried")
            }
        }
    }
    for entry in previous + 1..=seq {
        let name = compact::entry_name(entry);
        let bytes = match bucket.get(&name, MAX_MANIFEST_BYTES) {
            Ok(bytes) => bytes,
            Err(RequestError::NotFound) => {
                tracing::warn!(entry = %name, "a compaction log entry is missing; no checkpoint made");
                return Ok(None);
            }
            Err(e) => return Err(error(format!("{name}: {e}"))),
        };
        let (writer, lines) = catalog::manifest_lines_of(&bytes)
            .ok_or_else(|| error(format!("{name} does not parse: no checkpoint of the log is made past it")))?;
        fold.apply(&writer, lines);
        // Reading a long log takes a while: the lease is renewed as it goes.
        if entry % 64 == 0 && !lease(bucket, compactor, LEASE)? {
            return Ok(None);
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let keep = shared.settings.retention + REMOVAL_MARGIN;
    fold.forget_removals_before(now.saturating_sub(keep.as_nanos() as u64));
    let bodies = fold.chunks(&bucket.writer, FOLDED_MANIFEST_BYTES)?;
    let mut chunks = Vec::with_capacity(bodies.len());
    for (k, body) in bodies.into_iter().enumerate() {
        let name = format!("{DIR}/{seq:012}/{}-{k:04}.json", bucket.writer);
        let chunk = Chunk { name, size: body.len() as u64, sha256: hex::encode(Sha256::digest(&body)) };
        bucket.put(&chunk.name, Bytes::from(body)).map_err(|e| error(format!("{}: {e}", chunk.name)))?;
        chunks.push(chunk);
    }
    let names: Vec<String> = chunks.iter().map(|c| c.name.clone()).collect();
    if cfg!(debug_assertions)
        && let Some(ms) = std::env::var(STALL_ENV).ok().and_then(|v| v.parse::<u64>().ok())
    {
        tracing::info!(ms, checkpoint = seq, "checkpoint chunks uploaded; stalling before the marker ({STALL_ENV})");
        std::thread::sleep(Duration::from_millis(ms));
    }
    let margin = (bucket.lease / 4).min(Duration::from_secs(10));
    if !lease(bucket, compactor, LEASE)? || compactor.lease_ends_within(LEASE, margin) {
        tracing::warn!(checkpoint = seq, "the log's lease ran out before the checkpoint was committed; given up");
        delete_all(bucket, &names);
        return Ok(None);
    }
    let marker = Marker { seq, writer: bucket.writer.clone(), chunks };
    let body = serde_json::to_vec(&marker).map_err(|e| e.to_string())?;
    match bucket.create(&marker_name(seq), Bytes::from(body)) {
        Ok(()) => {
            tracing::info!(checkpoint = seq, previous, chunks = names.len(), "checkpointed the compaction log");
            Ok(Some(seq))
        }
        Err(RequestError::Exists) => {
            delete_all(bucket, &names);
            Ok(None)
        }
        Err(e) => Err(error(format!("{}: {e}", marker_name(seq)))),
    }
}

/// The lines of checkpoint `seq`'s chunks, each checked against its marker, for the next
/// checkpoint.
fn read_previous(bucket: &Bucket, seq: u64) -> Result<Vec<(String, Vec<ManifestLine>)>, String> {
    chunk_bytes(bucket, seq)?
        .into_iter()
        .map(|(name, bytes)| catalog::manifest_lines_of(&bytes).ok_or_else(|| format!("{name} does not parse")))
        .collect()
}

/// Deletes, once the newest checkpoint is `orphan_grace` old, the log entries it holds, the
/// checkpoints before it and chunks of checkpoints before it that no marker names. Returns
/// how many objects it deleted.
fn prune(bucket: &Bucket) -> Result<usize, String> {
    let error = |e: RequestError| bucket.error(e.to_string()).to_string();
    let names = bucket.list(DIR, None).map_err(error)?;
    let found: Vec<u64> = names.iter().filter_map(|n| marker_seq(n)).collect();
    // The newest checkpoint old enough: no compactor can still be creating an entry it holds.
    let mut old = None;
    for &seq in found.iter().rev() {
        let written = bucket.written_ms(&marker_name(seq)).map_err(error)?;
        if now_ms().saturating_sub(u64::try_from(written).unwrap_or(0)) >= bucket.orphan_grace.as_millis() as u64 {
            old = Some(seq);
            break;
        }
    }
    let Some(old) = old else { return Ok(0) };
    let mut doomed: Vec<String> = Vec::new();
    for name in bucket.list(compact::LOG_DIR, None).map_err(error)? {
        if compact::entry_seq(&name).is_some_and(|seq| seq <= old) {
            doomed.push(name);
        }
    }
    // Markers first, so no reader takes a checkpoint whose chunks are going.
    doomed.extend(found.iter().filter(|&&seq| seq < old).map(|&seq| marker_name(seq)));
    doomed.extend(names.iter().filter(|n| chunk_seq(n).is_some_and(|seq| seq < old)).cloned());
    let mut deleted = 0;
    for name in &doomed {
        bucket.delete(name).map_err(error)?;
        deleted += 1;
    }
    if deleted > 0 {
        tracing::info!(
            checkpoint = old,
            deleted,
            "deleted the compaction log entries and checkpoints a checkpoint holds"
        );
    }
    Ok(deleted)
}

/// Deletes `names`, logging what cannot be (the next checkpoint's pruning deletes it).
fn delete_all(bucket: &Bucket, names: &[String]) {
    for name in names {
        if let Err(e) = bucket.delete(name) {
            tracing::warn!(object = %name, %e, "cannot delete a checkpoint chunk given up");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(name: &str) -> ManifestLine {
        ManifestLine::Add { name: name.to_string(), json: format!("{{\"op\":\"add\",\"name\":\"{name}\"}}") }
    }

    fn remove(name: &str) -> ManifestLine {
        ManifestLine::Remove { name: name.to_string() }
    }

    /// Applies one manifest's `lines` as a reader does (`Remotes::apply`): its adds but of
    /// names removed, then its removals.
    fn reader_applies(held: &mut BTreeSet<String>, removed: &mut BTreeSet<String>, lines: &[ManifestLine]) {
        for line in lines {
            if let ManifestLine::Add { name, .. } = line
                && !removed.contains(name)
            {
                held.insert(name.clone());
            }
        }
        for line in lines {
            if let ManifestLine::Remove { name } = line {
                held.remove(name);
                removed.insert(name.clone());
            }
        }
    }

    fn read(bodies: &[Vec<u8>]) -> Vec<(String, Vec<ManifestLine>)> {
        bodies.iter().map(|b| catalog::manifest_lines_of(b).expect("a chunk parses")).collect()
    }

    #[test]
    fn names_of_markers_and_chunks_parse_back_and_nothing_else_does() {
        assert_eq!(marker_name(42), "checkpoints/000000000042.json");
        assert_eq!(marker_seq(&marker_name(42)), Some(42));
        assert_eq!(chunk_seq("checkpoints/000000000042/a-0000.json"), Some(42));
        for bad in [
            "checkpoints/42.json",
            "checkpoints/00000000004x.json",
            "compactions/000000000042.json",
            "checkpoints/000000000042/a-0000.json",
        ] {
            assert_eq!(marker_seq(bad), None, "{bad}");
        }
        for bad in ["checkpoints/000000000042.json", "checkpoints/000000000042/x/a.json", "checkpoints/42/a.json"] {
            assert_eq!(chunk_seq(bad), None, "{bad}");
        }
    }

    /// A reader at any entry that applies the checkpoint stands where applying the entries
    /// after it would have left it.
    #[test]
    fn a_checkpoint_leaves_a_reader_where_the_entries_would() {
        let p = |n: u32| format!("parts/t/traces/2026-12-01T0{n}/w-{n}-ab.parquet");
        let entries: Vec<(&str, Vec<ManifestLine>)> = vec![
            ("a", vec![add(&p(1)), remove(&p(2)), remove(&p(3))]),
            ("b", vec![add(&p(4)), remove(&p(1)), remove(&p(5))]),
            ("a", vec![add(&p(6)), add(&p(4)), add(&p(8))]),
            ("b", vec![remove(&p(6)), add(&p(2))]),
        ];
        let mut fold = Fold::default();
        for (writer, lines) in &entries {
            fold.apply(writer, lines.clone());
        }
        let bodies = fold.chunks("c", 1 << 20).unwrap();
        let chunks = read(&bodies);
        assert_eq!(chunks.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>(), ["a", "b", "c"], "{chunks:?}");
        // Writers' parts the entries did not name (`p(5)` among them), and the log's own.
        let writers: BTreeSet<String> = [p(2), p(3), p(5), p(7)].into();
        let (mut live, mut removed) = (writers.clone(), BTreeSet::new());
        for (_, lines) in &entries {
            reader_applies(&mut live, &mut removed, lines);
        }
        assert_eq!(live, [p(4), p(7), p(8)].into());
        for from in 0..=entries.len() {
            let (mut held, mut gone) = (writers.clone(), BTreeSet::new());
            for (_, lines) in &entries[..from] {
                reader_applies(&mut held, &mut gone, lines);
            }
            for (_, lines) in &chunks {
                reader_applies(&mut held, &mut gone, lines);
            }
            assert_eq!(held, live, "a reader at entry {from}");
            assert_eq!(gone, removed, "a reader at entry {from}");
        }
    }

    #[test]
    fn chunks_stay_within_their_size_and_keep_every_line() {
        let mut fold = Fold::default();
        let names: Vec<String> = (0..50).map(|i| format!("parts/t/logs/2026-12-01T00/w-{i}-ab.parquet")).collect();
        fold.apply("w", names.iter().map(|n| add(n)).collect());
        fold.apply("w", (0..50).map(|i| remove(&format!("parts/t/logs/2026-12-01T00/v-{i}-ab.parquet"))).collect());
        let bodies = fold.chunks("c", 600).unwrap();
        assert!(bodies.len() > 4, "{} chunks", bodies.len());
        let mut adds = Vec::new();
        let mut removes = 0;
        for (writer, lines) in read(&bodies) {
            let bytes: usize = lines
                .iter()
                .map(|l| match l {
                    ManifestLine::Add { json, .. } => json.len(),
                    ManifestLine::Remove { name } => name.len() + 25,
                })
                .sum();
            assert!(bytes <= 600, "{bytes} bytes of lines in a chunk of {writer}");
            for line in lines {
                match line {
                    ManifestLine::Add { name, .. } => adds.push(name),
                    ManifestLine::Remove { .. } => removes += 1,
                }
            }
        }
        assert_eq!(adds, names, "adds in the order added");
        assert_eq!(removes, 50);
    }

    #[test]
    fn removals_of_hours_long_past_are_dropped_and_others_kept() {
        let mut fold = Fold::default();
        fold.apply(
            "w",
            vec![
                remove("parts/t/traces/2026-01-01T00/w-1-ab.parquet"),
                remove("series/t/2026-01-01T00/w-1-2.sgs"),
                remove("parts/t/traces/2026-12-01T00/w-2-ab.parquet"),
                remove("not-ours/x"),
            ],
        );
        let cutoff = parts::hour_start("2026-06-01T00").unwrap();
        fold.forget_removals_before(cutoff);
        let kept: Vec<&str> = fold.removed.iter().map(String::as_str).collect();
        assert_eq!(kept, ["not-ours/x", "parts/t/traces/2026-12-01T00/w-2-ab.parquet"]);
    }
}
