//! The metric series store: stored metric points as Prometheus series, indexed by label and
//! compressed per series, for PromQL.
//!
//! OTLP metric points are kept twice, each copy laid out for its readers: as rows in the
//! Parquet parts (the native API, the gate) and here, translated once to Prometheus series
//! (`model::prometheus`) when a flush writes them. Remote-written samples are kept only here:
//! the flush writes their batches (`model::prometheus::SeriesBatch`) into the same segments
//! (ADR 0009). Per tenant and hour (a *block*) the store
//! holds *segments*, each a file
//! `series/<tenant>/<hour>/<first seq>-<last seq>.sgs` holding the series of the flushes
//! `first..=last` of that block:
//!
//! ```text
//! "SGSERIES"                                      8 bytes
//! chunk of series 0, chunk of series 1, ...       prom::chunk (Gorilla XOR), one per series
//! index                                           symbols; skipped-point counts; per series
//!                                                 (sorted by labels): label symbol pairs,
//!                                                 min/max time, samples, chunk offset, length
//!                                                 and CRC-32
//! footer: index offset u64, index length u64,     24 bytes, little endian
//!         index CRC-32 u32, "SGS1"
//! ```
//!
//! A query reads a segment's index (cached, [`IndexCache`]), finds its series through label
//! postings built from it (an `=` matcher selects by postings, the others filter the
//! candidates' labels) without touching samples, then reads only the chunks of the series it
//! selected, neighbouring chunks coalesced into one read. The flusher compacts the segments of
//! a block into one once its hour is over and the latest flush added nothing to it (or once it
//! holds [`MAX_OPEN_SEGMENTS`]), so a six-hour query opens about six files whatever the flush
//! interval, and a backfill of past hours does not rewrite an hour after every flush.
//!
//! Durability comes from the write-ahead log and the parts: a flush writes a block's segments
//! before it moves the log's checkpoint, and at start-up segments of flushes the checkpoint
//! does not cover are deleted (their rows are replayed from the log and written again). A
//! compaction writes its output under a temporary name, renames it and only then deletes its
//! sources; a segment whose flushes another segment covers is a finished compaction's source
//! and is deleted at start-up, so a crash at any point loses and doubles nothing. A segment
//! that is damaged is set aside in `quarantine/`: the series it held of OTLP metrics are rebuilt
//! from the parts (queries read such parts directly until the flusher has rebuilt it, as they
//! do for a part without a segment, from a data directory older than this store); the
//! remote-written samples it held had no other copy and are missing, which answers say.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prom::model::{Labels, Sample};

use crate::model::metric::MetricRow;
use crate::model::prometheus::{SeriesBatch, Skipped, Translator};
use crate::tenant::Tenant;

use super::wal::sync_dir;

/// Where segments live, under the data directory.
pub const SERIES_DIR: &str = "series";
const MAGIC: &[u8; 8] = b"SGSERIES";
const FOOTER_MAGIC: &[u8; 4] = b"SGS1";
const FOOTER_LEN: u64 = 24;
const EXTENSION: &str = "sgs";
/// A block still being written is compacted once it holds this many segments.
pub const MAX_OPEN_SEGMENTS: usize = 16;
/// Two chunks to read are fetched in one read when at most this many bytes lie between them.
const COALESCE_GAP: u64 = 64 << 10;
/// One hour in milliseconds: a segment's span.
pub const HOUR_MS: i64 = 3_600_000;

/// Failures reading or writing segments; segments are named relative to the data directory.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("series segment {segment}: {source}")]
    Io { segment: String, source: io::Error },
    /// The file is not what was written (size, checksum, structure).
    #[error("series segment {segment} is damaged: {why}")]
    Damaged { segment: String, why: String },
    /// Another collector's segment that cannot be fetched from the bucket now.
    #[error("series segment {segment} cannot be read from the bucket: {why}")]
    Unavailable { segment: String, why: String },
}

impl SeriesError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, SeriesError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// Whether the segment is to be left out of reads (damaged, or another collector's that
    /// cannot be fetched): the answer is made without it and says so.
    pub fn sets_aside(&self) -> bool {
        matches!(self, SeriesError::Damaged { .. } | SeriesError::Unavailable { .. })
    }
}

/// One segment file: a tenant's series of one hour, from the flushes `first_seq..=last_seq`.
#[derive(Debug)]
pub struct SegmentMeta {
    /// Relative to the data directory (for messages).
    pub name: String,
    pub path: PathBuf,
    pub tenant: Tenant,
    /// The hour directory (`parts::hour_dir`).
    pub hour: String,
    /// Start of the hour, unix milliseconds.
    pub hour_start_ms: i64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Where a segment of another collector is fetched from into `path` (`store::bucket`);
    /// `None` for this collector's own.
    pub remote: Option<super::bucket::RemoteSegment>,
}

impl SegmentMeta {
    fn new(data_dir: &Path, tenant: Tenant, hour: &str, first_seq: u64, last_seq: u64) -> Option<SegmentMeta> {
        let hour_start_ms = i64::try_from(super::parts::hour_start(hour)? / 1_000_000).ok()?;
        let name = format!("{SERIES_DIR}/{}/{hour}/{first_seq:020}-{last_seq:020}.{EXTENSION}", tenant.as_str());
        Some(SegmentMeta {
            path: data_dir.join(&name),
            name,
            tenant,
            hour: hour.to_string(),
            hour_start_ms,
            first_seq,
            last_seq,
            remote: None,
        })
    }

    /// Another collector's segment, as a bucket manifest names it, fetched into `cache_dir`
    /// on first read. `None` when its hour does not parse.
    pub(crate) fn remote(
        cache_dir: &Path,
        line: &super::catalog::StoredSegment,
        remote: super::bucket::RemoteSegment,
    ) -> Option<SegmentMeta> {
        let hour_start_ms = i64::try_from(super::parts::hour_start(&line.hour)? / 1_000_000).ok()?;
        Some(SegmentMeta {
            path: cache_dir.join(&line.name),
            name: line.name.clone(),
            tenant: line.tenant.clone(),
            hour: line.hour.clone(),
            hour_start_ms,
            first_seq: line.first,
            last_seq: line.last,
            remote: Some(remote),
        })
    }

    /// Whether the segment's hour overlaps `[min_ms, max_ms]`.
    pub fn overlaps(&self, min_ms: i64, max_ms: i64) -> bool {
        self.hour_start_ms <= max_ms && self.hour_start_ms.saturating_add(HOUR_MS) > min_ms
    }

    /// Whether the segment holds what flush `seq` wrote for its tenant and hour.
    pub fn covers(&self, seq: u64) -> bool {
        (self.first_seq..=self.last_seq).contains(&seq)
    }

    /// Whether the segment holds the rows of `part` for its tenant (whose first row is in
    /// hour `hour`): a segment of the part's own writer, of that hour, made from its flush.
    /// A part in the bucket attributed to this collector (its own metrics parts merged there
    /// by a compactor, `bucket::compact`) is covered by this collector's own segments.
    pub fn covers_part(&self, part: &super::parts::PartMeta, hour: &str) -> bool {
        let part_writer = part.remote.as_ref().filter(|r| *r.writer != *r.bucket.writer()).map(|r| &r.writer);
        let same_writer = match (&self.remote, part_writer) {
            (None, None) => true,
            (Some(segment), Some(part)) => segment.writer == *part,
            _ => false,
        };
        same_writer && self.hour == hour && self.covers(part.seq)
    }

    /// Makes sure the file is there to read: another collector's segment is fetched from the
    /// bucket (checked against its manifest) unless it is in the cache.
    fn ensure_local(&self) -> Result<(), SeriesError> {
        match &self.remote {
            Some(remote) => remote.bucket.fetch_segment(self, remote),
            None => Ok(()),
        }
    }

    fn damaged(&self, why: impl Into<String>) -> SeriesError {
        SeriesError::Damaged { segment: self.name.clone(), why: why.into() }
    }

    fn io(&self) -> impl FnOnce(io::Error) -> SeriesError + '_ {
        move |source| SeriesError::Io { segment: self.name.clone(), source }
    }
}

/// Gathers metric rows, translated to series, and remote-written series batches: each series'
/// samples sorted by time, one per timestamp (of two at one time, the later added wins).
#[derive(Debug, Default)]
pub struct SeriesBuilder {
    translator: Translator,
    samples: Vec<Vec<Sample>>,
    /// Series of batches, by label-set allocation (batches of one series share theirs).
    batched: Vec<(Labels, Vec<Sample>)>,
    by_identity: HashMap<usize, usize>,
}

impl SeriesBuilder {
    pub fn add_rows(&mut self, rows: &[MetricRow]) {
        for row in rows {
            let samples = &mut self.samples;
            self.translator.translate(row, |id, sample| {
                let id = id as usize;
                if id >= samples.len() {
                    samples.resize_with(id + 1, Vec::new);
                }
                samples[id].push(sample);
            });
        }
    }

    pub fn add_batch(&mut self, batch: &SeriesBatch) {
        for s in &batch.series {
            // The key stays valid: `batched` keeps a clone of the labels it points at.
            let at = *self.by_identity.entry(s.labels.identity()).or_insert_with(|| {
                self.batched.push((s.labels.clone(), Vec::new()));
                self.batched.len() - 1
            });
            self.batched[at].1.extend_from_slice(&s.samples);
        }
    }

    /// The series sorted by labels, and what had no Prometheus form.
    pub fn finish(self) -> (Vec<(Labels, Vec<Sample>)>, Skipped) {
        let (labels, skipped) = self.translator.into_labels();
        let mut all: Vec<(Labels, Vec<Sample>)> = labels
            .into_iter()
            .zip(self.samples.into_iter().chain(std::iter::repeat_with(Vec::new)))
            .chain(self.batched)
            .filter(|(_, samples)| !samples.is_empty())
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        // One label set may come from rows and batches, or from batches of separate label-set
        // allocations (the replay's, or after the receiver's table started afresh).
        let mut out: Vec<(Labels, Vec<Sample>)> = Vec::with_capacity(all.len());
        for (labels, samples) in all {
            match out.last_mut() {
                Some((last, merged)) if *last == labels => merged.extend(samples),
                _ => out.push((labels, samples)),
            }
        }
        for (_, samples) in &mut out {
            *samples = dedup_sorted(std::mem::take(samples));
        }
        (out, skipped)
    }
}

/// Sorts samples by time (stably) and keeps the last of each timestamp.
pub fn dedup_sorted(mut samples: Vec<Sample>) -> Vec<Sample> {
    samples.sort_by_key(|s| s.t);
    let mut kept: Vec<Sample> = Vec::with_capacity(samples.len());
    for s in samples {
        match kept.last_mut() {
            Some(last) if last.t == s.t => *last = s,
            _ => kept.push(s),
        }
    }
    kept
}

/// Writes a segment from series in label order; returns its size in bytes.
fn write_segment(
    meta: &SegmentMeta,
    series: impl IntoIterator<Item = Result<(Labels, Vec<Sample>), SeriesError>>,
    skipped: &Skipped,
) -> Result<u64, SeriesError> {
    let dir = meta.path.parent().expect("segment paths have a directory");
    fs::create_dir_all(dir).map_err(meta.io())?;
    let tmp = meta.path.with_extension("sgs.tmp");
    let file = File::create(&tmp).map_err(meta.io())?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(MAGIC).map_err(meta.io())?;
    let mut offset = MAGIC.len() as u64;
    struct Written {
        labels: Labels,
        min_t: i64,
        max_t: i64,
        samples: u64,
        offset: u64,
        len: u64,
        crc: u32,
    }
    let mut written: Vec<Written> = Vec::new();
    for item in series {
        let (labels, samples) = item?;
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else { continue };
        let (min_t, max_t) = (first.t, last.t);
        let chunk = prom::chunk::encode(&samples).map_err(|e| meta.damaged(format!("cannot encode {labels}: {e}")))?;
        out.write_all(&chunk).map_err(meta.io())?;
        written.push(Written {
            labels,
            min_t,
            max_t,
            samples: samples.len() as u64,
            offset,
            len: chunk.len() as u64,
            crc: crc32fast::hash(&chunk),
        });
        offset += chunk.len() as u64;
    }
    // Symbols: every distinct name and value, numbered in sorted order.
    let mut symbols: HashMap<&str, u32> = HashMap::new();
    for w in &written {
        for (n, v) in w.labels.iter() {
            symbols.entry(n).or_default();
            symbols.entry(v).or_default();
        }
    }
    let mut sorted: Vec<&str> = symbols.keys().copied().collect();
    sorted.sort_unstable();
    for (i, s) in sorted.iter().enumerate() {
        symbols.insert(s, i as u32);
    }
    let mut index = Vec::new();
    put_varint(&mut index, sorted.len() as u64);
    for s in &sorted {
        put_varint(&mut index, s.len() as u64);
        index.extend_from_slice(s.as_bytes());
    }
    put_varint(&mut index, skipped.exponential_histograms);
    put_varint(&mut index, skipped.delta);
    put_varint(&mut index, written.len() as u64);
    for w in &written {
        put_varint(&mut index, w.labels.len() as u64);
        for (n, v) in w.labels.iter() {
            put_varint(&mut index, u64::from(symbols[n]));
            put_varint(&mut index, u64::from(symbols[v]));
        }
        put_varint(&mut index, zigzag(w.min_t));
        put_varint(&mut index, (w.max_t as u64).wrapping_sub(w.min_t as u64));
        put_varint(&mut index, w.samples);
        put_varint(&mut index, w.offset);
        put_varint(&mut index, w.len);
        index.extend_from_slice(&w.crc.to_le_bytes());
    }
    out.write_all(&index).map_err(meta.io())?;
    let mut footer = Vec::with_capacity(FOOTER_LEN as usize);
    footer.extend_from_slice(&offset.to_le_bytes());
    footer.extend_from_slice(&(index.len() as u64).to_le_bytes());
    footer.extend_from_slice(&crc32fast::hash(&index).to_le_bytes());
    footer.extend_from_slice(FOOTER_MAGIC);
    out.write_all(&footer).map_err(meta.io())?;
    let file = out.into_inner().map_err(|e| meta.io()(e.into_error()))?;
    file.sync_all().map_err(meta.io())?;
    fs::rename(&tmp, &meta.path).map_err(meta.io())?;
    sync_dir(dir).map_err(meta.io())?;
    Ok(offset + index.len() as u64 + FOOTER_LEN)
}

/// Writes the segment of one flush of one tenant and hour from its metric rows.
pub(crate) fn write_flushed(
    data_dir: &Path,
    tenant: &Tenant,
    hour: &str,
    seq: u64,
    rows: &[&[MetricRow]],
    batches: &[&SeriesBatch],
) -> Result<Arc<SegmentMeta>, SeriesError> {
    let meta = SegmentMeta::new(data_dir, tenant.clone(), hour, seq, seq).ok_or_else(|| SeriesError::Damaged {
        segment: format!("{SERIES_DIR}/{}/{hour}", tenant.as_str()),
        why: "not an hour directory name".into(),
    })?;
    let mut builder = SeriesBuilder::default();
    for r in rows {
        builder.add_rows(r);
    }
    for b in batches {
        builder.add_batch(b);
    }
    let (series, skipped) = builder.finish();
    write_segment(&meta, series.into_iter().map(Ok), &skipped)?;
    Ok(Arc::new(meta))
}

/// One series of a segment's index.
#[derive(Debug, Clone)]
pub struct Entry {
    labels: Box<[(u32, u32)]>,
    pub min_t: i64,
    pub max_t: i64,
    pub samples: u64,
    offset: u64,
    len: u64,
    crc: u32,
}

/// A segment's index, in memory: symbols, series and label postings.
#[derive(Debug)]
pub struct SegmentIndex {
    symbols: Vec<Box<str>>,
    by_symbol: HashMap<Box<str>, u32>,
    entries: Vec<Entry>,
    /// Series ids (ascending) per `(name, value)` symbol pair.
    postings: HashMap<(u32, u32), Vec<u32>>,
    /// Points of the segment's flushes that have no Prometheus form here.
    pub skipped: Skipped,
    bytes: u64,
}

impl SegmentIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, id: u32) -> &Entry {
        &self.entries[id as usize]
    }

    /// The series with label `name` equal to `value` (ascending ids).
    pub fn postings(&self, name: &str, value: &str) -> &[u32] {
        match (self.by_symbol.get(name), self.by_symbol.get(value)) {
            (Some(&n), Some(&v)) => self.postings.get(&(n, v)).map_or(&[], Vec::as_slice),
            _ => &[],
        }
    }

    /// The value of label `name` of series `id`.
    pub fn label(&self, id: u32, name: &str) -> Option<&str> {
        let n = *self.by_symbol.get(name)?;
        let labels = &self.entries[id as usize].labels;
        labels.iter().find(|(k, _)| *k == n).map(|(_, v)| &*self.symbols[*v as usize])
    }

    /// The labels of series `id`.
    pub fn labels(&self, id: u32) -> Labels {
        Labels::new(
            self.entries[id as usize]
                .labels
                .iter()
                .map(|(n, v)| (self.symbols[*n as usize].to_string(), self.symbols[*v as usize].to_string()))
                .collect(),
        )
    }

    /// Approximate memory held.
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }
}

/// Reads and checks a segment's index.
pub fn read_index(meta: &SegmentMeta) -> Result<SegmentIndex, SeriesError> {
    meta.ensure_local()?;
    let file = File::open(&meta.path).map_err(meta.io())?;
    let size = file.metadata().map_err(meta.io())?.len();
    if size < MAGIC.len() as u64 + FOOTER_LEN {
        return Err(meta.damaged(format!("{size} bytes is shorter than a segment's header and footer")));
    }
    let mut magic = [0u8; MAGIC.len()];
    file.read_exact_at(&mut magic, 0).map_err(meta.io())?;
    if &magic != MAGIC {
        return Err(meta.damaged("the file does not start with a segment's magic bytes"));
    }
    let mut footer = [0u8; FOOTER_LEN as usize];
    file.read_exact_at(&mut footer, size - FOOTER_LEN).map_err(meta.io())?;
    if &footer[20..24] != FOOTER_MAGIC {
        return Err(meta.damaged("the footer's magic bytes are wrong"));
    }
    let index_offset = u64::from_le_bytes(footer[0..8].try_into().expect("8 bytes"));
    let index_len = u64::from_le_bytes(footer[8..16].try_into().expect("8 bytes"));
    let index_crc = u32::from_le_bytes(footer[16..20].try_into().expect("4 bytes"));
    if index_offset < MAGIC.len() as u64 || index_offset.checked_add(index_len) != Some(size - FOOTER_LEN) {
        return Err(meta
            .damaged(format!("the footer places the index at {index_offset}+{index_len} in a file of {size} bytes")));
    }
    let mut index = vec![0u8; index_len as usize];
    file.read_exact_at(&mut index, index_offset).map_err(meta.io())?;
    if crc32fast::hash(&index) != index_crc {
        return Err(meta.damaged("the index fails its checksum"));
    }
    parse_index(&index, index_offset).map_err(|why| meta.damaged(why))
}

/// Parses an index region (whose chunks end at `chunks_end`), trusting none of it: every count
/// is checked against the bytes left before anything is reserved, every symbol id and chunk
/// position against what exists. Says what is wrong and at which byte.
pub fn parse_index(bytes: &[u8], chunks_end: u64) -> Result<SegmentIndex, String> {
    let mut r = Reader { bytes, at: 0 };
    let nsym = r.count(1, "symbols")?;
    let mut symbols: Vec<Box<str>> = Vec::with_capacity(nsym);
    let mut by_symbol: HashMap<Box<str>, u32> = HashMap::with_capacity(nsym);
    for i in 0..nsym {
        let len = r.count(1, "symbol bytes")?;
        let raw = r.take(len)?;
        let s: Box<str> = std::str::from_utf8(raw).map_err(|_| format!("symbol {i} is not UTF-8"))?.into();
        if let Some(first) = by_symbol.insert(s.clone(), i as u32) {
            return Err(format!("symbol {i} repeats symbol {first}"));
        }
        symbols.push(s);
    }
    let skipped = Skipped { exponential_histograms: r.varint()?, delta: r.varint()? };
    let nseries = r.count(8, "series")?;
    let mut entries = Vec::with_capacity(nseries);
    let mut postings: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
    let sym = |id: u64| -> Result<u32, String> {
        if id < nsym as u64 { Ok(id as u32) } else { Err(format!("symbol {id} of {nsym} does not exist")) }
    };
    for id in 0..nseries {
        let nlabels = r.count(2, "labels")?;
        let mut labels = Vec::with_capacity(nlabels);
        for _ in 0..nlabels {
            let pair = (sym(r.varint()?)?, sym(r.varint()?)?);
            // Symbols are sorted and labels sorted by name, so name ids strictly ascend.
            if labels.last().is_some_and(|(n, _)| *n >= pair.0) {
                return Err(format!("series {id}'s label names are repeated or out of order"));
            }
            postings.entry(pair).or_default().push(id as u32);
            labels.push(pair);
        }
        let min_t = unzigzag(r.varint()?);
        let max_t = (min_t as u64).wrapping_add(r.varint()?) as i64;
        let samples = r.varint()?;
        let offset = r.varint()?;
        let len = r.varint()?;
        let crc = u32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
        if offset < MAGIC.len() as u64 || offset.checked_add(len).is_none_or(|end| end > chunks_end) {
            return Err(format!("series {id}'s chunk at {offset}+{len} lies outside the chunk region"));
        }
        if max_t < min_t {
            return Err(format!("series {id} ends before it starts"));
        }
        entries.push(Entry { labels: labels.into(), min_t, max_t, samples, offset, len, crc });
    }
    if r.at != bytes.len() {
        return Err(format!("{} bytes follow the index", bytes.len() - r.at));
    }
    let bytes = bytes.len() as u64 * 3 + entries.len() as u64 * 64;
    Ok(SegmentIndex { symbols, by_symbol, entries, postings, skipped, bytes })
}

/// Reads the chunks of series `ids` of a segment and calls `f` with each series' samples in
/// `[min_t, max_t]` (skipping series with none), until `f` breaks. Chunks close together are
/// read at once.
pub fn read_series(
    meta: &SegmentMeta,
    index: &SegmentIndex,
    ids: &[u32],
    min_t: i64,
    max_t: i64,
    f: impl FnMut(u32, Vec<Sample>) -> ControlFlow<()>,
) -> Result<(), SeriesError> {
    meta.ensure_local()?;
    let file = File::open(&meta.path).map_err(meta.io())?;
    read_series_from(&file, meta, index, ids, min_t, max_t, f)
}

/// [`read_series`] from the segment's file, already open.
fn read_series_from(
    file: &File,
    meta: &SegmentMeta,
    index: &SegmentIndex,
    ids: &[u32],
    min_t: i64,
    max_t: i64,
    mut f: impl FnMut(u32, Vec<Sample>) -> ControlFlow<()>,
) -> Result<(), SeriesError> {
    let mut ids: Vec<u32> = ids.to_vec();
    ids.sort_by_key(|&id| index.entries[id as usize].offset);
    let mut buf = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        // One read for a run of chunks with small gaps.
        let start = index.entries[ids[i] as usize].offset;
        let mut end = start + index.entries[ids[i] as usize].len;
        let mut j = i + 1;
        while j < ids.len() {
            let e = &index.entries[ids[j] as usize];
            if e.offset > end + COALESCE_GAP || e.offset + e.len - start > 64 << 20 {
                break;
            }
            end = end.max(e.offset + e.len);
            j += 1;
        }
        buf.resize((end - start) as usize, 0);
        file.read_exact_at(&mut buf, start).map_err(meta.io())?;
        for &id in &ids[i..j] {
            let e = &index.entries[id as usize];
            let bytes = &buf[(e.offset - start) as usize..(e.offset - start + e.len) as usize];
            if crc32fast::hash(bytes) != e.crc {
                return Err(meta.damaged(format!("the chunk of series {id} fails its checksum")));
            }
            let mut samples = Vec::new();
            prom::chunk::decode_range(bytes, min_t, max_t, &mut samples)
                .map_err(|err| meta.damaged(format!("the chunk of series {id} does not decode: {err}")))?;
            if !samples.is_empty() && f(id, samples).is_break() {
                return Ok(());
            }
        }
        i = j;
    }
    Ok(())
}

/// Segment indexes kept after a query first reads them, up to a memory budget; the least
/// recently used go first.
#[derive(Debug)]
pub struct IndexCache {
    entries: std::sync::Mutex<HashMap<String, (Arc<SegmentIndex>, u64)>>,
    tick: AtomicU64,
    budget: u64,
}

impl Default for IndexCache {
    fn default() -> Self {
        IndexCache { entries: Default::default(), tick: AtomicU64::new(0), budget: 256 << 20 }
    }
}

impl IndexCache {
    /// The index of `meta`, read if not cached.
    pub fn get(&self, meta: &SegmentMeta) -> Result<Arc<SegmentIndex>, SeriesError> {
        let tick = self.tick.fetch_add(1, Relaxed);
        if let Some((index, used)) = self.lock().get_mut(&meta.name) {
            *used = tick;
            return Ok(Arc::clone(index));
        }
        let index = Arc::new(read_index(meta)?);
        let mut entries = self.lock();
        let mut held: u64 = entries.values().map(|(i, _)| i.memory_bytes()).sum();
        while held + index.memory_bytes() > self.budget && !entries.is_empty() {
            let oldest = entries.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone());
            if let Some(k) = oldest
                && let Some((gone, _)) = entries.remove(&k)
            {
                held -= gone.memory_bytes();
            }
        }
        entries.insert(meta.name.clone(), (Arc::clone(&index), tick));
        Ok(index)
    }

    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<SegmentIndex>, u64)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Lists the segments under `<data_dir>/series`. Removes temporary files of interrupted
/// writes, segments of flushes the checkpoint does not cover (their rows come back from the
/// log) and segments another covers (sources of a finished compaction). Other files are left
/// alone and logged.
pub(crate) fn load(data_dir: &Path, checkpoint: u64) -> io::Result<Vec<Arc<SegmentMeta>>> {
    let root = data_dir.join(SERIES_DIR);
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut found: Vec<SegmentMeta> = Vec::new();
    for tenant_entry in fs::read_dir(&root)? {
        let tenant_entry = tenant_entry?;
        let tenant_dir = tenant_entry.file_name().to_string_lossy().into_owned();
        let Some(tenant) = Tenant::parse(&tenant_dir).ok().filter(|_| tenant_entry.path().is_dir()) else {
            tracing::warn!(name = %format!("{SERIES_DIR}/{tenant_dir}"), "unknown file in the series store; left alone");
            continue;
        };
        for hour_entry in fs::read_dir(tenant_entry.path())? {
            let hour_entry = hour_entry?;
            let hour = hour_entry.file_name().to_string_lossy().into_owned();
            if !hour_entry.path().is_dir() || super::parts::hour_start(&hour).is_none() {
                tracing::warn!(name = %format!("{SERIES_DIR}/{tenant_dir}/{hour}"), "unknown file in the series store; left alone");
                continue;
            }
            for file in fs::read_dir(hour_entry.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    fs::remove_file(file.path())?;
                    continue;
                }
                let seqs = name
                    .strip_suffix(".sgs")
                    .and_then(|s| s.split_once('-'))
                    .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
                let Some(meta) = seqs
                    .filter(|(a, b)| a <= b)
                    .and_then(|(a, b)| SegmentMeta::new(data_dir, tenant.clone(), &hour, a, b))
                else {
                    tracing::warn!(name = %format!("{SERIES_DIR}/{tenant_dir}/{hour}/{name}"), "unknown file in the series store; left alone");
                    continue;
                };
                if meta.last_seq > checkpoint {
                    fs::remove_file(&meta.path)?;
                    continue;
                }
                found.push(meta);
            }
        }
    }
    // Sources of a finished compaction: covered by a wider segment of their block.
    let mut keep: Vec<Arc<SegmentMeta>> = Vec::new();
    for m in &found {
        let covered = found.iter().any(|o| {
            o.tenant == m.tenant
                && o.hour == m.hour
                && (o.first_seq, o.last_seq) != (m.first_seq, m.last_seq)
                && o.first_seq <= m.first_seq
                && m.last_seq <= o.last_seq
        });
        if covered {
            fs::remove_file(&m.path)?;
        }
    }
    for m in found {
        if m.path.exists() {
            keep.push(Arc::new(m));
        }
    }
    keep.sort_by(|a, b| (&a.tenant, &a.hour, a.first_seq).cmp(&(&b.tenant, &b.hour, b.first_seq)));
    Ok(keep)
}

/// Merges the segments of one block (in flush order) into one covering all their flushes.
/// Memory: the label sets of the block's series and one series' samples at a time.
pub(crate) fn compact(
    data_dir: &Path,
    cache: &IndexCache,
    sources: &[Arc<SegmentMeta>],
) -> Result<Arc<SegmentMeta>, SeriesError> {
    let first = sources.iter().map(|s| s.first_seq).min().expect("sources");
    let last = sources.iter().map(|s| s.last_seq).max().expect("sources");
    let meta = SegmentMeta::new(data_dir, sources[0].tenant.clone(), &sources[0].hour, first, last)
        .expect("the sources' hour is valid");
    let indexes: Vec<Arc<SegmentIndex>> = sources.iter().map(|s| cache.get(s)).collect::<Result<_, _>>()?;
    let files: Vec<File> = sources.iter().map(|s| File::open(&s.path).map_err(s.io())).collect::<Result<_, _>>()?;
    let mut skipped = Skipped::default();
    let mut union: BTreeMap<Labels, Vec<(usize, u32)>> = BTreeMap::new();
    for (i, index) in indexes.iter().enumerate() {
        skipped.exponential_histograms += index.skipped.exponential_histograms;
        skipped.delta += index.skipped.delta;
        for id in 0..index.len() as u32 {
            union.entry(index.labels(id)).or_default().push((i, id));
        }
    }
    let series = union.into_iter().map(|(labels, at)| {
        let mut samples = Vec::new();
        for (i, id) in at {
            read_series_from(&files[i], &sources[i], &indexes[i], &[id], i64::MIN, i64::MAX, |_, s| {
                samples.extend(s);
                ControlFlow::Continue(())
            })?;
        }
        Ok((labels, dedup_sorted(samples)))
    });
    write_segment(&meta, series, &skipped)?;
    Ok(Arc::new(meta))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.bytes.get(self.at) else {
                return Err(format!("the index ends inside a number at byte {}", self.at));
            };
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("a number runs past 64 bits at byte {}", self.at))
    }

    /// A count of items that take at least `min_bytes` each, checked against what is left.
    fn count(&mut self, min_bytes: usize, what: &str) -> Result<usize, String> {
        let at = self.at;
        let n = self.varint()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(min_bytes as u64) > left {
            return Err(format!("{n} {what} at byte {at} cannot fit in the {left} bytes left"));
        }
        Ok(n as usize)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else { return Err(format!("the index ends inside an item at byte {}", self.at)) };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, points: i64) -> Vec<(Labels, Vec<Sample>)> {
        let mut out: Vec<(Labels, Vec<Sample>)> = (0..n)
            .map(|i| {
                let labels = Labels::new(vec![
                    ("__name__".into(), if i % 2 == 0 { "up".into() } else { "reqs_total".into() }),
                    ("instance".into(), format!("host-{i}")),
                ]);
                let samples = (0..points).map(|k| Sample { t: 1_000 + k * 15_000, v: (i as f64) * k as f64 }).collect();
                (labels, samples)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn meta(dir: &Path, first: u64, last: u64) -> SegmentMeta {
        SegmentMeta::new(dir, Tenant::parse("t1").unwrap(), "1970-01-01T00", first, last).unwrap()
    }

    fn read_all(meta: &SegmentMeta, index: &SegmentIndex, min_t: i64, max_t: i64) -> Vec<(Labels, Vec<Sample>)> {
        let ids: Vec<u32> = (0..index.len() as u32).collect();
        let mut out = Vec::new();
        read_series(meta, index, &ids, min_t, max_t, |id, s| {
            out.push((index.labels(id), s));
            ControlFlow::Continue(())
        })
        .unwrap();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn a_segment_reads_back_its_series_by_postings_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let m = meta(dir.path(), 3, 3);
        let written = series(50, 100);
        write_segment(&m, written.clone().into_iter().map(Ok), &Skipped { exponential_histograms: 2, delta: 1 })
            .unwrap();
        let index = read_index(&m).unwrap();
        assert_eq!(index.len(), 50);
        assert_eq!((index.skipped.exponential_histograms, index.skipped.delta), (2, 1));
        assert_eq!(index.postings("__name__", "up").len(), 25);
        assert_eq!(index.postings("instance", "host-7"), &[index.postings("instance", "host-7")[0]]);
        assert_eq!(index.postings("instance", "nope"), &[] as &[u32]);
        assert_eq!(read_all(&m, &index, i64::MIN, i64::MAX), written);
        // A closed time range keeps both ends.
        let part = read_all(&m, &index, 16_000, 46_000);
        assert!(part.iter().all(|(_, s)| s.iter().map(|s| s.t).eq([16_000, 31_000, 46_000])), "{part:?}");
    }

    #[test]
    fn damage_anywhere_is_reported_never_misread() {
        let dir = tempfile::tempdir().unwrap();
        let m = meta(dir.path(), 1, 1);
        write_segment(&m, series(20, 40).into_iter().map(Ok), &Skipped::default()).unwrap();
        let clean = fs::read(&m.path).unwrap();
        for at in (0..clean.len()).step_by(7) {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x5a;
            fs::write(&m.path, &bytes).unwrap();
            let outcome = read_index(&m).and_then(|index| {
                let ids: Vec<u32> = (0..index.len() as u32).collect();
                read_series(&m, &index, &ids, i64::MIN, i64::MAX, |_, _| ControlFlow::Continue(()))
            });
            match outcome {
                Err(SeriesError::Damaged { segment, .. }) => assert_eq!(segment, m.name),
                other => panic!("a flipped byte at {at} was not found: {other:?}"),
            }
        }
        fs::write(&m.path, &clean[..clean.len() / 2]).unwrap();
        assert!(matches!(read_index(&m), Err(SeriesError::Damaged { .. })));
    }

    /// What a fuzzer found: an index naming one string by two symbols made `postings` miss a
    /// series that has the label. Repeated symbols, and label names repeated or out of order in
    /// a series, are refused as damage (the writer never makes either).
    #[test]
    fn an_index_with_a_repeated_symbol_or_label_is_refused() {
        use base64::Engine as _;
        let found = base64::engine::general_purpose::STANDARD
            .decode("BAhfZWFfX20AABcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXAAAA////AP+MjF0BAgAAAgED0AABCAQAAAAA")
            .unwrap();
        let err = parse_index(&found, found.len() as u64).unwrap_err();
        assert!(err.contains("repeats symbol"), "{err}");
        // Two symbols "a", "b"; one series with label a=b twice.
        let mut twice = vec![2, 1, b'a', 1, b'b', 0, 0, 1, 2, 0, 1, 0, 1];
        twice.extend([0, 0, 1, 4, 1, 0, 0, 0, 0]);
        let err = parse_index(&twice, 100).unwrap_err();
        assert!(err.contains("series 0's label names are repeated or out of order"), "{err}");
    }

    #[test]
    fn compaction_merges_a_block_and_start_up_removes_its_sources() {
        let dir = tempfile::tempdir().unwrap();
        let all = series(10, 60);
        let mut sources = Vec::new();
        for (k, slice) in [(1u64, 0..20usize), (2, 20..40), (4, 40..60)] {
            let m = meta(dir.path(), k, k);
            let part: Vec<_> = all.iter().map(|(l, s)| (l.clone(), s[slice.clone()].to_vec())).collect();
            write_segment(&m, part.into_iter().map(Ok), &Skipped::default()).unwrap();
            sources.push(Arc::new(m));
        }
        let cache = IndexCache::default();
        let merged = compact(dir.path(), &cache, &sources).unwrap();
        assert_eq!((merged.first_seq, merged.last_seq), (1, 4));
        let index = read_index(&merged).unwrap();
        assert_eq!(read_all(&merged, &index, i64::MIN, i64::MAX), all);
        // A crash before the sources were deleted: start-up deletes them, keeps the merge.
        let loaded = load(dir.path(), 4).unwrap();
        assert_eq!(loaded.iter().map(|m| (m.first_seq, m.last_seq)).collect::<Vec<_>>(), vec![(1, 4)]);
        assert!(sources.iter().all(|s| !s.path.exists()));
        // A segment of a flush past the checkpoint is deleted (the log has its rows).
        let unfinished = meta(dir.path(), 5, 5);
        write_segment(&unfinished, series(1, 1).into_iter().map(Ok), &Skipped::default()).unwrap();
        assert_eq!(load(dir.path(), 4).unwrap().len(), 1);
        assert!(!unfinished.path.exists());
    }
}
