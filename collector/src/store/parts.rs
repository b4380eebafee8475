//! Parquet parts: the columnar, long-term form of the data (schema in `store::columns`).
//!
//! A part holds the rows of one signal and one hour (by the rows' own time), cut from one
//! frozen head block, either of one tenant or of several small ones:
//!
//! ```text
//! parts/<tenant>/<signal>/<YYYY-MM-DDTHH>/<wal-seq>.parquet    one tenant
//! parts/@shared/<signal>/<YYYY-MM-DDTHH>/<wal-seq>.parquet     tenants with little data
//! ```
//!
//! (`@` cannot start a tenant id, so the shared directory never meets a tenant's.) The WAL
//! sequence number in the name ties a part to the checkpoint: a part numbered past the
//! checkpoint belongs to a flush that did not finish and is deleted on start-up (its rows are
//! replayed from the WAL instead), so no row is ever stored twice.
//!
//! Every part's size, CRC-32 and SHA-256 are recorded in the catalog (`store::catalog`) when
//! it is written; a read checks the size and the SHA-256 before the bytes reach the Parquet
//! decoder, so a damaged or edited file is caught as such rather than decoded into wrong rows.
//! The SHA-256 is what makes a part tamper-evident: a CRC-32 catches accidents but can be
//! forged to match in a few lines. Catalog entries written before SHA-256s were recorded are
//! checked against their CRC-32 until the start-up verification pass records their SHA-256
//! (`Store::open`). Names in errors are relative to the data directory: they reach API
//! clients, who have no business knowing where it is.
//!
//! With `[storage.encryption]`, a part's Parquet bytes are sealed (`store::crypt`) before they
//! are written; the size and digests are of the bytes on disk, so verifying a part needs no
//! key, and a read opens the verified bytes with the key the part names.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::hash::Hash;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::*;
use polars_arrow::array::{BinaryViewArrayGeneric, ViewType};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Rows;
use crate::signal::Signal;
use crate::tenant::Tenant;

use super::columns;
use super::crypt::{self, KeyRing};
pub use super::trace_keys::TraceKeys;
use super::wal::sync_dir;

/// The directory of parts that hold several tenants.
pub const SHARED_DIR: &str = "@shared";
/// Where parts live under the data directory.
pub const PARTS_DIR: &str = "parts";

/// What a part holds of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRows {
    pub tenant: Tenant,
    pub rows: u64,
    pub min_time: u64,
    pub max_time: u64,
    /// `(service.name, service.version)` pairs present.
    pub services: BTreeSet<(String, Option<String>)>,
    /// Traces parts: the first 8 bytes of every trace id of the tenant's spans, sorted, so a
    /// lookup by trace id opens only the parts that may hold it; held in memory within a
    /// budget (`store::trace_keys`).
    pub trace_keys: TraceKeys,
    /// Metrics, logs and profiles parts: the tenant's service slices (`store::columns`), in row
    /// order. Empty for traces and for parts written before slices, which are read whole.
    pub slices: Vec<ServiceSlice>,
}

/// The rows of one `service.name` (`None`: rows without one) in a metrics, logs or profiles
/// part: contiguous, decodable on their own (ids start afresh at the first row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSlice {
    pub service: Option<String>,
    pub first_row: u64,
    pub rows: u64,
}

/// What the catalog knows of a part without reading it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartMeta {
    /// Path relative to the data directory, with `/` separators: the part's name in messages.
    pub name: String,
    /// Where the file is. Never shown to clients.
    pub path: PathBuf,
    pub signal: Signal,
    pub seq: u64,
    pub size: u64,
    pub crc32: u32,
    /// SHA-256 of the file's bytes; `None` in catalog entries written before it was recorded,
    /// which are checked against their CRC-32 instead.
    pub sha256: Option<[u8; 32]>,
    /// The keys that open the part if it is encrypted (the store's key file, if configured).
    pub keys: Option<Arc<KeyRing>>,
    /// The tenants of the part, sorted.
    pub tenants: Vec<TenantRows>,
    /// The bucket a part of another collector is read from (`store::bucket`), fetched into
    /// `path` on first read; `None` for the collector's own parts.
    pub remote: Option<super::bucket::Remote>,
}

impl PartMeta {
    /// What the part holds of `tenant`, if anything.
    pub fn of(&self, tenant: &Tenant) -> Option<&TenantRows> {
        self.tenants.iter().find(|t| &t.tenant == tenant)
    }

    /// The newest row of any tenant (retention).
    pub fn max_time(&self) -> u64 {
        self.tenants.iter().map(|t| t.max_time).max().unwrap_or(0)
    }

    /// Whether the part may hold spans of `trace_id` for `tenant` (false positives are possible).
    pub fn may_hold_trace(&self, tenant: &Tenant, trace_id: &[u8; 16]) -> bool {
        match self.of(tenant) {
            None => false,
            Some(t) => self.signal != Signal::Traces || t.trace_keys.may_hold(trace_key(trace_id)),
        }
    }
}

/// The lookup key of a trace id in [`TenantRows::trace_keys`].
pub fn trace_key(trace_id: &[u8; 16]) -> u64 {
    u64::from_be_bytes(trace_id[..8].try_into().expect("8 bytes"))
}

/// Failures reading or writing parts. Parts are named relative to the data directory.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("part {part}: {source}")]
    Io { part: String, source: io::Error },
    /// The file is not what was written: wrong size or checksum, or it does not decode.
    #[error("part {part} is damaged: {why}")]
    Damaged { part: String, why: String },
    #[error("part {part}: cannot encode: {source}")]
    Encode { part: String, source: PolarsError },
    /// The part is encrypted with a key the key file does not hold (or no key file is
    /// configured). Not damage: it is not set aside, and reads again once the key is back.
    #[error("part {part} cannot be decrypted: {why}")]
    Key { part: String, why: String },
    #[error("part {part}: cannot encrypt: {why}")]
    Encrypt { part: String, why: String },
    /// Another collector's part that cannot be fetched from the bucket now (unreachable, an
    /// error answer). Not damage: it is read again by the next query.
    #[error("part {part} cannot be read from the bucket: {why}")]
    Unavailable { part: String, why: String },
}

impl PartError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, PartError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// One hour, the span of a part's (and a series segment's) directory.
pub const HOUR_NANOS: u64 = 3_600_000_000_000;

/// The hour directory name of a time, e.g. `2026-11-26T07`.
pub fn hour_dir(time_unix_nano: u64) -> String {
    let hours = time_unix_nano / HOUR_NANOS;
    let (y, m, d) = civil_from_days((hours / 24) as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}", hours % 24)
}

/// Start of the hour a directory name stands for, in unix nanoseconds.
pub fn hour_start(dir: &str) -> Option<u64> {
    let (date, hour) = dir.split_once('T')?;
    let mut it = date.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    let h: u64 = hour.parse().ok()?;
    let days = days_from_civil(y, m, d);
    u64::try_from(days).ok().map(|days| (days * 24 + h) * HOUR_NANOS)
}

// Howard Hinnant's proleptic Gregorian calendar algorithms ("chrono-Compatible Low-Level Date
// Algorithms").
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The relative name of a part file.
pub fn part_name(dir: &str, signal: Signal, hour: &str, seq: u64) -> String {
    format!("{PARTS_DIR}/{dir}/{signal}/{hour}/{seq:020}.parquet")
}

/// Summarises `rows` of one tenant for the catalog.
pub fn tenant_rows(tenant: &Tenant, rows: &[&Rows]) -> TenantRows {
    let mut out = TenantRows {
        tenant: tenant.clone(),
        rows: 0,
        min_time: u64::MAX,
        max_time: 0,
        services: BTreeSet::new(),
        trace_keys: TraceKeys::new(Vec::new()),
        slices: Vec::new(),
    };
    let spans: usize = rows.iter().map(|r| if let Rows::Spans(s) = r { s.len() } else { 0 }).sum();
    let mut trace_keys = Vec::with_capacity(spans);
    let mut last: Option<(*const str, Option<*const str>)> = None;
    for r in rows {
        out.rows += r.len() as u64;
        r.for_each_key(|key| {
            out.min_time = out.min_time.min(key.time_unix_nano);
            out.max_time = out.max_time.max(key.time_unix_nano);
            if let Some(name) = key.service_name {
                let id = (std::sync::Arc::as_ptr(name), key.service_version.map(std::sync::Arc::as_ptr));
                if last != Some(id) {
                    last = Some(id);
                    out.services.insert((name.to_string(), key.service_version.map(|v| v.to_string())));
                }
            }
        });
        if let Rows::Spans(spans) = r {
            trace_keys.extend(spans.iter().map(|s| trace_key(&s.trace_id)));
        }
    }
    trace_keys.sort_unstable();
    trace_keys.dedup();
    // Held for as long as the part's keys stay in memory: sized exactly (an `Arc<[u64]>`).
    out.trace_keys = TraceKeys::new(trace_keys);
    if out.rows == 0 {
        out.min_time = 0;
    }
    out
}

/// Writes the rows of each tenant as one part, durably (temp file, fsync, rename, fsync
/// directory), and returns what the catalog records of it. `None` when there are no rows.
///
/// With `keys`, the file holds the Parquet bytes sealed with the current key (`store::crypt`).
pub fn write_part(
    data_dir: &Path,
    name: &str,
    seq: u64,
    signal: Signal,
    groups: &[(&Tenant, Vec<&Rows>)],
    keys: Option<&Arc<KeyRing>>,
) -> Result<Option<PartMeta>, PartError> {
    let mut tenants: Vec<TenantRows> =
        groups.iter().map(|(t, rows)| tenant_rows(t, rows)).filter(|t| t.rows > 0).collect();
    if tenants.is_empty() {
        return Ok(None);
    }
    tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    let path = data_dir.join(name);
    let io_err = |source| PartError::Io { part: name.to_string(), source };
    let flat: Vec<(&Tenant, &Rows)> = groups.iter().flat_map(|(t, rows)| rows.iter().map(move |r| (*t, *r))).collect();
    let encode = |source| PartError::Encode { part: name.to_string(), source };
    let mut bytes = Vec::new();
    let mut writer: Option<PartWriter<&mut Vec<u8>>> = None;
    let mut out = Some(&mut bytes);
    let slices = columns::to_frames(signal, &flat, |df| {
        if writer.is_none()
            && let Some(out) = out.take()
        {
            writer = Some(PartWriter::new(out, signal, df.schema())?);
        }
        match writer.as_mut() {
            Some(w) => w.write(&df),
            None => Ok(()),
        }
    })
    .map_err(encode)?;
    match writer {
        Some(w) => w.finish().map_err(encode)?,
        None => return Ok(None),
    }
    for slice in slices {
        if let Some(t) = tenants.iter_mut().find(|t| t.tenant == slice.tenant) {
            t.slices.push(ServiceSlice { service: slice.service, first_row: slice.first_row, rows: slice.rows });
        }
    }
    if let Some(keys) = keys {
        bytes = keys.seal(name, &bytes).map_err(|why| PartError::Encrypt { part: name.to_string(), why })?;
    }
    let dir = path.parent().unwrap_or(data_dir);
    fs::create_dir_all(dir).map_err(io_err)?;
    let tmp = path.with_extension("parquet.tmp");
    let mut file = File::create(&tmp).map_err(io_err)?;
    file.write_all(&bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    fs::rename(&tmp, &path).map_err(io_err)?;
    sync_dir(dir).map_err(io_err)?;
    Ok(Some(PartMeta {
        name: name.to_string(),
        path,
        signal,
        seq,
        size: bytes.len() as u64,
        crc32: crc32fast::hash(&bytes),
        sha256: Some(sha256(&bytes)),
        keys: keys.cloned(),
        tenants,
        remote: None,
    }))
}

/// Span columns written with plain encoding, never a dictionary: their values are (nearly)
/// all distinct — ids of one span, nanosecond times and durations — so a dictionary would not
/// be kept, and polars would still hash every value to find that out (its writer tries a
/// dictionary for every string and integer column); or they are small integers of a few
/// values (flags, kind, status code, dropped counts, nearly always zero), whose plain values
/// compress to as little as their dictionary keys (35.0 bytes per span either way in
/// `bench/run-otlp-bench.sh`) while polars' pass to find a dictionary and the key encoding
/// cost the flusher 1–6 % more. Other signals' times repeat (every series of a scrape has the
/// same one) and keep polars' choice.
const PLAIN_SPAN_COLUMNS: &[&str] = &[
    "span_id",
    "parent_span_id",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "duration_nano",
    "flags",
    "kind",
    "status_code",
    "dropped_attributes_count",
    "dropped_events_count",
    "dropped_links_count",
];

/// How many leading values of a text column chunk [`text_encoding`] looks at.
const ENCODING_SAMPLE: usize = 1024;

/// The encoding of a text or binary column chunk, chosen from its first [`ENCODING_SAMPLE`] rows.
/// (Polars' writer decides with a HyperLogLog pass hashing every value, a null as empty text,
/// then builds its dictionary with a second pass hashing every value again: a sixth of the
/// flusher's time on spans.) Plain when the sample is
/// - mostly null (a shared value's sparse column, `store::columns`, has a value on a
///   resource's first row only: its few values are as distinct as the resources, and its nulls
///   cost definition levels, not hashes; a span's trace state, status message, events and
///   links are written null when empty, which they almost always are);
/// - all empty text (plain empty values cost four zero bytes each before compression, which
///   zstd reduces to almost nothing, where a dictionary costs a lookup per row);
/// - over 75 % distinct (trace ids, span attributes, log bodies: a dictionary would not pay);
///
/// otherwise a dictionary ([`dictionary_of`], which falls back to plain if the whole chunk is
/// over 75 % distinct after all). Repeats outside the sample (spans of one trace far apart)
/// are still found by the page compression, within its window.
fn text_encoding<T: ViewType + ?Sized + Hash + Eq>(
    array: &BinaryViewArrayGeneric<T>,
) -> polars_parquet::write::Encoding {
    use polars_parquet::write::Encoding;
    let mut seen: std::collections::HashSet<&T, foldhash::fast::RandomState> = Default::default();
    let (mut rows, mut values) = (0usize, 0usize);
    let mut all_empty = true;
    for value in array.iter().take(ENCODING_SAMPLE) {
        rows += 1;
        if let Some(value) = value {
            values += 1;
            all_empty &= value.to_bytes().is_empty();
            seen.insert(value);
        }
    }
    let mostly_null = values * 8 <= rows;
    let mostly_distinct = seen.len() * 4 > values * 3;
    if mostly_null || all_empty || mostly_distinct { Encoding::Plain } else { Encoding::RleDictionary }
}

/// A column chunk as it is written and its encoding: a text or binary column (ids) as
/// [`text_encoding`] chooses, its dictionary built here ([`dictionary_of`]) — plain if that
/// would not pay —; any other column as `chosen`.
fn encoded(
    array: Box<dyn polars_arrow::array::Array>,
    chosen: &[polars_parquet::write::Encoding],
) -> PolarsResult<(Box<dyn polars_arrow::array::Array>, Vec<polars_parquet::write::Encoding>)> {
    use polars_arrow::array::{BinaryViewArray, Utf8ViewArray};
    if let Some(text) = array.as_any().downcast_ref::<Utf8ViewArray>() {
        return encoded_views(text, chosen);
    }
    if let Some(bytes) = array.as_any().downcast_ref::<BinaryViewArray>() {
        return encoded_views(bytes, chosen);
    }
    Ok((array, chosen.to_vec()))
}

fn encoded_views<T: ViewType + ?Sized + Hash + Eq>(
    array: &BinaryViewArrayGeneric<T>,
    chosen: &[polars_parquet::write::Encoding],
) -> PolarsResult<(Box<dyn polars_arrow::array::Array>, Vec<polars_parquet::write::Encoding>)> {
    use polars_parquet::write::Encoding;
    if chosen != [Encoding::RleDictionary] || text_encoding(array) == Encoding::Plain {
        return Ok((array.clone().boxed(), vec![Encoding::Plain]));
    }
    Ok(match dictionary_of(array)? {
        Some(dictionary) => (Box::new(dictionary), vec![Encoding::RleDictionary]),
        None => (array.clone().boxed(), vec![Encoding::Plain]),
    })
}

/// How many lookups of longer values by view [`dictionary_of`] makes before it judges whether
/// they pay (a quarter of them must find their view).
const VIEW_LOOKUP_TRIAL: usize = 256;

/// A text column chunk as a dictionary and a key per row, built in one pass — polars'
/// writer would estimate the cardinality with a pass hashing every value before building the
/// same dictionary with a second — or `None` when over 75 % of the rows have distinct values,
/// where a dictionary does not pay (polars' threshold). Values are first told apart by their
/// 16-byte views: a view holds a short value whole, and a longer one's length, first bytes,
/// buffer and offset, so equal views are equal values — and the rows of one request share
/// one copy of each name, route and status message (`model::span_wire`), so most rows are
/// found without reading (or hashing) their bytes, which lie scattered over the requests'
/// buffers. Only a view not seen yet is looked up by its text; and once the first
/// [`VIEW_LOOKUP_TRIAL`] lookups of longer values show views rarely repeat (each row holds its
/// own copy of a repeated value: attributes, log bodies), longer values are looked up by text
/// alone — the view lookup was a miss and a new entry per row, half of the dictionary's cost.
fn dictionary_of<T: ViewType + ?Sized + Hash + Eq>(
    text: &BinaryViewArrayGeneric<T>,
) -> PolarsResult<Option<polars_arrow::array::DictionaryArray<u32>>> {
    use polars_arrow::array::{Array, DictionaryArray, MutableBinaryViewArray, PrimitiveArray, View};
    use polars_arrow::datatypes::ArrowDataType;
    use std::collections::hash_map::Entry;
    let mut by_text: HashMap<&T, u32, foldhash::fast::RandomState> = HashMap::default();
    let mut by_view: HashMap<u128, u32, foldhash::fast::RandomState> = HashMap::default();
    let mut values = MutableBinaryViewArray::<T>::new();
    let mut keys = Vec::with_capacity(text.len());
    let mut last: Option<(u128, u32)> = None;
    // Whether longer values are still looked up by view: not once the views have mostly been
    // new ones for values already seen (each row's own copy of a repeated value, where a view
    // lookup only adds a miss and an entry to the text lookup).
    let (mut by_view_pays, mut view_hits, mut view_lookups) = (true, 0usize, 0usize);
    let validity = text.validity();
    for (i, view) in text.views().iter().enumerate() {
        if validity.is_some_and(|v| !v.get_bit(i)) {
            keys.push(0);
            continue;
        }
        let inline = view.length <= View::MAX_INLINE_SIZE;
        let view = view.as_u128();
        // A run of one view (a request's spans of one name) is not even hashed.
        let key = match last.filter(|&(before, _)| before == view) {
            Some((_, key)) => key,
            None => {
                let mut by_value = || {
                    let value = text.value(i);
                    let next = by_text.len() as u32;
                    *by_text.entry(value).or_insert_with(|| {
                        values.push_value(value);
                        next
                    })
                };
                let key = if inline || by_view_pays {
                    view_lookups += usize::from(!inline);
                    match by_view.entry(view) {
                        Entry::Occupied(found) => {
                            view_hits += usize::from(!inline);
                            *found.get()
                        }
                        Entry::Vacant(slot) => *slot.insert(by_value()),
                    }
                } else {
                    by_value()
                };
                if view_lookups == VIEW_LOOKUP_TRIAL && view_hits * 4 < VIEW_LOOKUP_TRIAL {
                    by_view_pays = false;
                }
                last = Some((view, key));
                key
            }
        };
        keys.push(key);
    }
    if by_text.is_empty() || by_text.len() * 4 > text.len() * 3 {
        return Ok(None);
    }
    let keys = PrimitiveArray::new(ArrowDataType::UInt32, keys.into(), validity.cloned());
    let values: BinaryViewArrayGeneric<T> = values.freeze();
    DictionaryArray::try_from_keys(keys, values.boxed(), false).map(Some)
}

/// The zstd level of part pages: 1, not Parquet writers' usual 3. The compression was a tenth
/// of the collector's CPU under load, and on these columns (dictionary- and plain-encoded
/// pages) level 1 wrote no larger parts (35.7 against 36.7 bytes per span in
/// `bench/run-otlp-bench.sh`).
const ZSTD_LEVEL: i32 = 1;

/// A part's Parquet file, one row group per frame, each column encoded as
/// [`PLAIN_SPAN_COLUMNS`] and [`text_encoding`] say or else as polars would (dictionary when it
/// pays), pages compressed with zstd at [`ZSTD_LEVEL`] by one context kept for the whole part:
/// polars' writer makes a context per page, whose allocation and clearing was a tenth of the
/// compression's cost.
struct PartWriter<W: Write> {
    writer: polars_parquet::write::FileWriter<W>,
    fields: Vec<polars_parquet::write::ParquetType>,
    encodings: Vec<Vec<polars_parquet::write::Encoding>>,
    options: polars_parquet::write::WriteOptions,
    zstd: zstd::bulk::Compressor<'static>,
}

impl<W: Write> PartWriter<W> {
    fn new(out: W, signal: Signal, schema: &Schema) -> PolarsResult<PartWriter<W>> {
        use polars_parquet::write::{
            CompressionOptions, Encoding, FileWriter, StatisticsOptions, Version, WriteOptions, ZstdLevel,
            get_dtype_encoding, to_parquet_schema,
        };
        let arrow = schema.to_arrow(CompatLevel::newest());
        let parquet = to_parquet_schema(&arrow)?;
        // The file's metadata names zstd; the pages are compressed here, not by polars.
        let options = WriteOptions {
            statistics: StatisticsOptions::default(),
            version: Version::V1,
            compression: CompressionOptions::Zstd(Some(ZstdLevel::try_new(ZSTD_LEVEL)?)),
            data_page_size: None,
        };
        let encodings: Vec<Vec<Encoding>> = arrow
            .iter_values()
            .map(|field| match signal == Signal::Traces && PLAIN_SPAN_COLUMNS.contains(&field.name.as_str()) {
                true => vec![Encoding::Plain],
                false => get_dtype_encoding(&field.dtype),
            })
            .collect();
        let fields = parquet.fields().to_vec();
        let zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL)
            .map_err(|e| PolarsError::ComputeError(format!("zstd context: {e}").into()))?;
        let writer = FileWriter::new_with_parquet_schema(out, arrow, parquet, options);
        Ok(PartWriter { writer, fields, encodings, options, zstd })
    }

    /// Writes each chunk of `df` as a row group.
    fn write(&mut self, df: &DataFrame) -> PolarsResult<()> {
        use polars_parquet::write::{DynIter, DynStreamingIterator, array_to_columns};
        for batch in df.iter_chunks(CompatLevel::newest(), false) {
            let rows = batch.len() as u64;
            if rows == 0 {
                continue;
            }
            let mut columns = Vec::with_capacity(self.fields.len());
            for ((array, field), chosen) in batch.into_arrays().into_iter().zip(&self.fields).zip(&self.encodings) {
                let (array, encoding) = encoded(array, chosen)?;
                for pages in array_to_columns(array, field.clone(), self.options, &encoding)? {
                    let compressed =
                        pages.map(|page| compress(&mut self.zstd, page?)).collect::<PolarsResult<Vec<_>>>()?;
                    columns.push(compressed);
                }
            }
            let group = DynIter::new(
                columns
                    .into_iter()
                    .map(|pages| Ok(DynStreamingIterator::new(Pages { rest: pages.into_iter(), current: None }))),
            );
            self.writer.write(rows, group)?;
        }
        Ok(())
    }

    /// Writes the footer (with the Arrow schema, as polars' own writer does).
    fn finish(mut self) -> PolarsResult<()> {
        self.writer.end(None)?;
        Ok(())
    }
}

/// One page compressed with the part's zstd context `zstd`, as polars' `compress` would: a
/// version 1 data page or a dictionary page is compressed whole.
fn compress(
    zstd: &mut zstd::bulk::Compressor<'static>,
    page: polars_parquet::write::Page,
) -> PolarsResult<polars_parquet::write::CompressedPage> {
    use polars_parquet::parquet::CowBuffer;
    use polars_parquet::parquet::compression::Compression;
    use polars_parquet::parquet::page::{CompressedDictPage, DataPageHeader};
    use polars_parquet::write::{CompressedDataPage, CompressedPage, Page};
    let zstd_error = |e: io::Error| PolarsError::ComputeError(format!("zstd: {e}").into());
    Ok(match page {
        Page::Data(page) => {
            let DataPageHeader::V1(_) = page.header() else {
                polars_bail!(ComputeError: "a version 2 data page, which parts do not write")
            };
            let compressed = zstd.compress(page.buffer()).map_err(zstd_error)?;
            let num_rows = page.num_rows.unwrap_or_default();
            CompressedPage::Data(CompressedDataPage::new(
                page.header().clone(),
                CowBuffer::Owned(compressed),
                Compression::Zstd,
                page.buffer().len(),
                page.descriptor.clone(),
                num_rows,
            ))
        }
        Page::Dict(page) => {
            let compressed = zstd.compress(&page.buffer).map_err(zstd_error)?;
            CompressedPage::Dict(CompressedDictPage::new(
                CowBuffer::Owned(compressed),
                Compression::Zstd,
                page.buffer.len(),
                page.num_values,
                page.is_sorted,
            ))
        }
    })
}

/// A column chunk's compressed pages, handed to the file writer one at a time.
struct Pages {
    rest: std::vec::IntoIter<polars_parquet::write::CompressedPage>,
    current: Option<polars_parquet::write::CompressedPage>,
}

impl polars_parquet::write::FallibleStreamingIterator for Pages {
    type Item = polars_parquet::write::CompressedPage;
    type Error = PolarsError;

    fn advance(&mut self) -> PolarsResult<()> {
        self.current = self.rest.next();
        Ok(())
    }

    fn get(&self) -> Option<&Self::Item> {
        self.current.as_ref()
    }
}

/// SHA-256 of a part's bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Reads a part's bytes as they are on disk and checks them against the catalog's size and
/// SHA-256 (its CRC-32 for an entry without one). Needs no key: this is the start-up pass.
pub fn read_checked(meta: &PartMeta) -> Result<Vec<u8>, PartError> {
    let bytes = match &meta.remote {
        Some(remote) => remote.bucket.fetch(meta)?,
        None => fs::read(&meta.path).map_err(|source| PartError::Io { part: meta.name.clone(), source })?,
    };
    let damaged = |why: String| PartError::Damaged { part: meta.name.clone(), why };
    if bytes.len() as u64 != meta.size {
        return Err(damaged(format!("{} bytes where {} were written", bytes.len(), meta.size)));
    }
    match meta.sha256 {
        Some(recorded) => {
            let found = sha256(&bytes);
            if found != recorded {
                return Err(damaged(format!(
                    "checksum mismatch: sha256 recorded {}, found {}",
                    hex::encode(recorded),
                    hex::encode(found)
                )));
            }
        }
        None => {
            let found = crc32fast::hash(&bytes);
            if found != meta.crc32 {
                return Err(damaged(format!(
                    "checksum mismatch: crc32 recorded {:08x}, found {found:08x}",
                    meta.crc32
                )));
            }
        }
    }
    Ok(bytes)
}

/// Reads a part's bytes, checked ([`read_checked`]) and decrypted when the part is encrypted:
/// the Parquet bytes.
pub fn read_verified(meta: &PartMeta) -> Result<Vec<u8>, PartError> {
    let bytes = read_checked(meta)?;
    open(&meta.name, meta.keys.as_deref(), bytes)
}

/// The Parquet bytes of a part's file bytes: decrypted with `keys` when they are encrypted,
/// as they are otherwise (parts written before encryption was turned on).
pub fn open(name: &str, keys: Option<&KeyRing>, bytes: Vec<u8>) -> Result<Vec<u8>, PartError> {
    if !crypt::is_sealed(&bytes) {
        return Ok(bytes);
    }
    crypt::open_with(keys, name, bytes).map_err(|err| match err {
        crypt::OpenError::UnknownKey(id) => PartError::Key {
            part: name.to_string(),
            why: match keys {
                Some(keys) => {
                    format!("it is encrypted with key {id:?}, which key file {} does not hold", keys.path().display())
                }
                None => format!("it is encrypted with key {id:?}, and no key file is configured"),
            },
        },
        // Reads verify the file's SHA-256 before this, so the header is as written: the key
        // file's key of that id is another key, a configuration error rather than damage.
        err @ crypt::OpenError::WrongKey(_) => PartError::Key { part: name.to_string(), why: err.to_string() },
        crypt::OpenError::Damaged(why) => PartError::Damaged { part: name.to_string(), why },
    })
}

/// Decodes a part's bytes into rows by tenant (only `only`'s rows when given). A decoder
/// failure, even a panic inside the Parquet reader, is reported as damage, never propagated.
pub fn decode(
    name: &str,
    signal: Signal,
    bytes: Vec<u8>,
    only: Option<&Tenant>,
    directory_tenant: Option<&Tenant>,
) -> Result<Vec<(Tenant, Rows)>, PartError> {
    let damaged = |why: String| PartError::Damaged { part: name.to_string(), why };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let df = ParquetReader::new(std::io::Cursor::new(bytes)).finish()?;
        columns::from_frame(signal, &df, only, directory_tenant)
    }));
    match result {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(err)) => Err(damaged(err.to_string())),
        Err(_) => Err(damaged("the Parquet decoder failed on it".into())),
    }
}

/// What a query selects of a part's rows, so that no more of it is decoded than that: the
/// times `[lo, hi]` and, when named, one `service.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Narrow<'a> {
    pub lo: u64,
    pub hi: u64,
    pub service: Option<&'a str>,
}

impl Narrow<'_> {
    /// Every row.
    pub const ALL: Narrow<'static> = Narrow { lo: 0, hi: u64::MAX, service: None };
}

/// Reads one tenant's rows of a part, verified.
pub fn read_part(meta: &PartMeta, tenant: &Tenant) -> Result<Rows, PartError> {
    read_part_narrowed(meta, tenant, &Narrow::ALL)
}

/// Reads one tenant's rows of a part for a query that selects `narrow`, verified: of a metrics
/// or logs part only the service's slice (`store::columns`) is decoded, and of it only the row
/// groups whose time statistics overlap the range (`columns::rows_narrowed`), so rows outside
/// the range may come back and the caller filters; a part without the service's slice for
/// the tenant is not read. Other parts, and parts whose every row is selected, are decoded
/// whole.
pub fn read_part_narrowed(meta: &PartMeta, tenant: &Tenant, narrow: &Narrow<'_>) -> Result<Rows, PartError> {
    let mut slice = None;
    if let (Some(service), Some(of), Signal::Metrics | Signal::Logs) = (narrow.service, meta.of(tenant), meta.signal)
        && !of.slices.is_empty()
    {
        match of.slices.iter().find(|s| s.service.as_deref() == Some(service)) {
            Some(s) => slice = Some((s.first_row as usize, s.rows as usize)),
            None => return Ok(empty(meta.signal)),
        }
    }
    let range = (narrow.lo, narrow.hi);
    let mut rows =
        decode_with(meta, |bytes| match columns::rows_narrowed(bytes, meta.signal, tenant, range, slice)? {
            Some(rows) => Ok(rows),
            None => {
                let df = ParquetReader::new(std::io::Cursor::new(bytes)).finish()?;
                columns::from_frame(meta.signal, &df, Some(tenant), None)
            }
        })?;
    Ok(match rows.pop() {
        Some((_, rows)) => rows,
        None => empty(meta.signal),
    })
}

/// Reads one tenant's profile rows of one service from a profiles part, verified, decoding
/// only that service's slice (`store::columns`): `Ok(None)` when the part has no slices (it
/// was written before them, or holds another signal) and must be read whole; no rows when the
/// tenant has none of the service in it.
pub fn read_part_slice(meta: &PartMeta, tenant: &Tenant, service: Option<&str>) -> Result<Option<Rows>, PartError> {
    let Some(of) = meta.of(tenant) else { return Ok(Some(empty(meta.signal))) };
    if meta.signal != Signal::Profiles || of.slices.is_empty() {
        return Ok(None);
    }
    let Some(slice) = of.slices.iter().find(|s| s.service.as_deref() == service) else {
        return Ok(Some(empty(meta.signal)));
    };
    let (first, len) = (slice.first_row as usize, slice.rows as usize);
    let mut rows = decode_with(meta, |bytes| {
        let df = ParquetReader::new(std::io::Cursor::new(bytes)).with_slice(Some((first, len))).finish()?;
        if df.height() != len {
            return Err(PolarsError::ComputeError(
                format!("service slice at row {first} has {} rows where {len} were written", df.height()).into(),
            ));
        }
        columns::from_frame(meta.signal, &df, Some(tenant), None)
    })?;
    Ok(Some(match rows.pop() {
        Some((_, rows)) => rows,
        None => empty(meta.signal),
    }))
}

/// Reads one tenant's spans of a traces part that `probe` accepts, verified
/// (`columns::spans_where`). Failures are damage, as in [`decode`].
pub fn read_part_spans_where(
    meta: &PartMeta,
    tenant: &Tenant,
    probe: &mut dyn FnMut(&super::SpanProbe<'_>) -> bool,
) -> Result<Vec<crate::model::SpanRow>, PartError> {
    let bytes = read_verified(meta)?;
    let damaged = |why: String| PartError::Damaged { part: meta.name.clone(), why };
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| columns::spans_where(&bytes, tenant, &mut *probe)));
    match result {
        Ok(Ok(spans)) => Ok(spans),
        Ok(Err(err)) => Err(damaged(err.to_string())),
        Err(_) => Err(damaged("the Parquet decoder failed on it".into())),
    }
}

/// Runs a decoder over a part's verified bytes; any failure, even a panic, is damage.
fn decode_with<T>(meta: &PartMeta, f: impl FnOnce(&[u8]) -> PolarsResult<T>) -> Result<T, PartError> {
    decode_bytes(meta, &read_verified(meta)?, f)
}

/// `f` over the Parquet bytes `bytes` of part `meta` (from [`read_verified`]): its error, or a
/// panic of the decoder, is the part's damage.
fn decode_bytes<T>(meta: &PartMeta, bytes: &[u8], f: impl FnOnce(&[u8]) -> PolarsResult<T>) -> Result<T, PartError> {
    let damaged = |why: String| PartError::Damaged { part: meta.name.clone(), why };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(bytes))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(err)) => Err(damaged(err.to_string())),
        Err(_) => Err(damaged("the Parquet decoder failed on it".into())),
    }
}

/// The search index of a tenant's spans in a traces part (`None` for the first layout).
pub fn read_part_index(meta: &PartMeta, tenant: &Tenant) -> Result<Option<super::span_index::SpanIndex>, PartError> {
    decode_with(meta, |bytes| columns::span_index(bytes, tenant))
}

/// The spans at some positions of a part's span index (ascending), read with the index's
/// resource and scope dictionaries when it has them.
pub fn read_part_indexed(
    meta: &PartMeta,
    tenant: &Tenant,
    index: &super::span_index::SpanIndex,
    positions: &[usize],
) -> Result<Vec<crate::model::SpanRow>, PartError> {
    indexed_rows(meta, &read_verified(meta)?, tenant, index, positions)
}

/// [`read_part_indexed`] over the part's Parquet bytes, already read.
fn indexed_rows(
    meta: &PartMeta,
    bytes: &[u8],
    tenant: &Tenant,
    index: &super::span_index::SpanIndex,
    positions: &[usize],
) -> Result<Vec<crate::model::SpanRow>, PartError> {
    if index.dictionaries {
        decode_bytes(meta, bytes, |bytes| columns::rows_of_indexed(bytes, index, positions))
    } else {
        let rows: Vec<usize> = positions.iter().map(|&p| index.row(p)).collect();
        decode_bytes(meta, bytes, |bytes| columns::rows_of(bytes, tenant, &rows))
    }
}

/// The spans at the positions `wanted` of a part's span index, in batches: `batches` gives
/// each batch's positions in turn (any order; each is read in row order), the part's bytes are
/// read and verified once, and `f` gets each batch's rows. `batches` answering `None` ends the
/// reading, so a caller that has what it needs reads no more of the part.
pub fn read_part_indexed_batches<'p>(
    meta: &PartMeta,
    tenant: &Tenant,
    index: &super::span_index::SpanIndex,
    batches: &mut dyn FnMut() -> Option<&'p [usize]>,
    f: &mut dyn FnMut(&[crate::model::SpanRow]),
) -> Result<(), PartError> {
    let bytes = read_verified(meta)?;
    while let Some(batch) = batches() {
        let mut positions = batch.to_vec();
        positions.sort_unstable_by_key(|&p| index.row(p));
        f(&indexed_rows(meta, &bytes, tenant, index, &positions)?);
    }
    Ok(())
}

/// A tenant's spans of the traces with keys `keys` in a traces part, without its span index.
pub fn read_part_trace_keys(
    meta: &PartMeta,
    tenant: &Tenant,
    keys: &std::collections::HashSet<u64>,
) -> Result<Vec<crate::model::SpanRow>, PartError> {
    decode_with(meta, |bytes| columns::spans_of_trace_keys(bytes, tenant, keys))
}

/// A tenant's trace keys of a traces part, read from its file (sorted, distinct): what
/// [`tenant_rows`] recorded when it was written.
pub fn read_part_trace_key_list(meta: &PartMeta, tenant: &Tenant) -> Result<Vec<u64>, PartError> {
    let mut keys = match read_part_index(meta, tenant)? {
        Some(index) => index.trace_key,
        None => match read_part(meta, tenant)? {
            Rows::Spans(spans) => spans.iter().map(|s| trace_key(&s.trace_id)).collect(),
            _ => Vec::new(),
        },
    };
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

fn empty(signal: Signal) -> Rows {
    match signal {
        Signal::Traces => Rows::Spans(Vec::new()),
        Signal::Metrics => Rows::Metrics(Vec::new()),
        Signal::Logs => Rows::Logs(Vec::new()),
        Signal::Profiles => Rows::Profiles(Vec::new()),
    }
}

/// A file found under `parts/`.
#[derive(Debug)]
pub enum Found {
    /// A part: its name, signal, sequence number, and the tenant its directory names (`None`
    /// for the shared directory).
    Part { name: String, signal: Signal, seq: u64, tenant: Option<Tenant> },
    /// Anything else, by name.
    Unknown { name: String },
}

/// Lists everything under `<data_dir>/parts`, sorted by name; removes leftover temporary files
/// of interrupted writes as it goes.
pub fn list(data_dir: &Path) -> io::Result<Vec<Found>> {
    let root = data_dir.join(PARTS_DIR);
    let mut out = Vec::new();
    if !root.exists() {
        return Ok(out);
    }
    let name_of = |e: &fs::DirEntry| e.file_name().to_string_lossy().into_owned();
    for tenant_entry in fs::read_dir(&root)? {
        let tenant_entry = tenant_entry?;
        let tenant_dir = name_of(&tenant_entry);
        let tenant = if tenant_dir == SHARED_DIR { None } else { Tenant::parse(&tenant_dir).ok() };
        if !tenant_entry.file_type()?.is_dir() || (tenant.is_none() && tenant_dir != SHARED_DIR) {
            out.push(Found::Unknown { name: format!("{PARTS_DIR}/{tenant_dir}") });
            continue;
        }
        for signal_entry in fs::read_dir(tenant_entry.path())? {
            let signal_entry = signal_entry?;
            let signal_dir = name_of(&signal_entry);
            let Some(signal) = Signal::parse(&signal_dir).filter(|_| signal_entry.path().is_dir()) else {
                out.push(Found::Unknown { name: format!("{PARTS_DIR}/{tenant_dir}/{signal_dir}") });
                continue;
            };
            for hour_entry in fs::read_dir(signal_entry.path())? {
                let hour_entry = hour_entry?;
                let hour = name_of(&hour_entry);
                let hour_name = format!("{PARTS_DIR}/{tenant_dir}/{signal_dir}/{hour}");
                if !hour_entry.file_type()?.is_dir() || hour_start(&hour).is_none() {
                    out.push(Found::Unknown { name: hour_name });
                    continue;
                }
                for file in fs::read_dir(hour_entry.path())? {
                    let file = file?;
                    let file_name = name_of(&file);
                    let name = format!("{hour_name}/{file_name}");
                    if file_name.ends_with(".tmp") {
                        fs::remove_file(file.path())?;
                    } else if let Some(seq) = file_name
                        .strip_suffix(".parquet")
                        .filter(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse().ok())
                    {
                        out.push(Found::Part { name, signal, seq, tenant: tenant.clone() });
                    } else {
                        out.push(Found::Unknown { name });
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| found_name(a).cmp(found_name(b)));
    Ok(out)
}

fn found_name(f: &Found) -> &str {
    match f {
        Found::Part { name, .. } | Found::Unknown { name } => name,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trace_keys_are_sorted_distinct_and_sized_exactly() {
        use crate::model::span;
        use opentelemetry_proto::tonic::trace::v1::Span;
        // Three chunks of 100 spans over 150 traces: the keys are held exactly (no slack of a
        // vector grown chunk by chunk) for as long as they stay in memory.
        let chunk = |first: u8| {
            let spans = (0..100u8)
                .map(|i| Span {
                    trace_id: [first.wrapping_add(i / 2), 9, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8].to_vec(),
                    span_id: [i, 1, 1, 1, 1, 1, 1, 1].to_vec(),
                    name: "GET".into(),
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_000_001_000,
                    ..Default::default()
                })
                .collect();
            Rows::Spans(span::rows_from_request(span::one_scope_request(spans)))
        };
        let chunks = [chunk(0), chunk(50), chunk(100)];
        let summary = tenant_rows(&Tenant::default(), &chunks.iter().collect::<Vec<_>>());
        assert_eq!(summary.rows, 300);
        let keys = summary.trace_keys.get().expect("held");
        assert_eq!(keys.len(), 150);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(summary.trace_keys.held_bytes(), 150 * 8);
    }

    use super::*;

    /// Ids of one span, times, durations and the span's small integers (kind, status code,
    /// dropped counts) are written plain — never a dictionary, even for durations of few
    /// values, where polars would choose one —, as are text columns whose first rows are mostly
    /// null (a resource's values; events and links, null when empty) or mostly distinct
    /// (attributes); repeated names and trace ids still get their dictionary; the part reads
    /// back as written.
    #[test]
    fn distinct_columns_are_plain_and_repeated_ones_dictionary_encoded() {
        use crate::model::span;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        use opentelemetry_proto::tonic::trace::v1::Span;
        let spans = (0..5_000u64)
            .map(|i| Span {
                trace_id: [[7u8; 8], (i / 4).to_be_bytes()].concat(),
                attributes: vec![KeyValue {
                    key: "url.path".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("/orders/{i}"))) }),
                    ..Default::default()
                }],
                span_id: (i + 1).to_be_bytes().to_vec(),
                parent_span_id: i.to_be_bytes().to_vec(),
                name: ["GET /a", "GET /b"][i as usize % 2].into(),
                start_time_unix_nano: 1_700_000_000_000_000_000 + i * 1_000_003,
                end_time_unix_nano: 1_700_000_000_000_000_000 + i * 1_000_003 + i % 977 * 1_000,
                ..Default::default()
            })
            .collect();
        let rows = Rows::Spans(span::rows_from_request(span::one_scope_request(spans)));
        let dir = tempfile::tempdir().unwrap();
        let tenant = Tenant::default();
        let meta =
            write_part(dir.path(), "p.parquet", 1, Signal::Traces, &[(&tenant, vec![&rows])], None).unwrap().unwrap();
        let bytes = fs::read(&meta.path).unwrap();
        let footer = polars_parquet::read::read_metadata(&mut std::io::Cursor::new(&bytes)).unwrap();
        let dictionary = |column: &str| {
            let chunk = footer.row_groups[0].columns_under_root_iter(column).unwrap().next().unwrap();
            chunk.dictionary_page_offset().is_some()
        };
        for plain in [
            "span_id",
            "parent_span_id",
            "kind",
            "status_code",
            "dropped_attributes_count",
            "start_time_unix_nano",
            "end_time_unix_nano",
            "duration_nano",
            "attributes",
            "events",
            "links",
            "trace_state",
            "service_name",
            "resource_attributes",
            "scope_name",
        ] {
            assert!(!dictionary(plain), "{plain} has a dictionary");
        }
        for repeated in ["name", "trace_id"] {
            assert!(dictionary(repeated), "{repeated} has no dictionary");
        }
        let Rows::Spans(written) = &rows else { unreachable!() };
        let Rows::Spans(back) = read_part(&meta, &tenant).unwrap() else { panic!("no spans read") };
        assert_eq!(format!("{back:?}"), format!("{written:?}"));
    }

    /// Parts written while ids were stored as lowercase hex text read back as they always did:
    /// the rows, the span index's trace keys and a lookup by trace key. The part here is
    /// rewritten with the id columns as hex, as those parts have them.
    #[test]
    fn parts_with_hex_text_ids_read_back_as_before() {
        use opentelemetry_proto::tonic::trace::v1::Span;
        let spans: Vec<Span> = (0..40u64)
            .map(|i| Span {
                trace_id: [[(i % 4) as u8 + 1; 8], [0xab; 8]].concat(),
                span_id: (i + 1).to_be_bytes().to_vec(),
                // Every fourth span is a root.
                parent_span_id: if i % 4 == 0 { Vec::new() } else { i.to_be_bytes().to_vec() },
                name: "GET /a".into(),
                start_time_unix_nano: 1_700_000_000_000_000_000 + i * 1_000,
                end_time_unix_nano: 1_700_000_000_000_000_000 + i * 1_000 + 500,
                ..Default::default()
            })
            .collect();
        let rows = Rows::Spans(crate::model::span::rows_from_request(crate::model::span::one_scope_request(spans)));
        let dir = tempfile::tempdir().unwrap();
        let tenant = Tenant::default();
        let mut meta =
            write_part(dir.path(), "p.parquet", 1, Signal::Traces, &[(&tenant, vec![&rows])], None).unwrap().unwrap();
        let mut df = ParquetReader::new(std::io::Cursor::new(fs::read(&meta.path).unwrap())).finish().unwrap();
        for name in ["trace_id", "span_id", "parent_span_id"] {
            let bytes = df.column(name).unwrap().binary().unwrap().clone();
            let hex: StringChunked = bytes.iter().map(|v| v.map(hex::encode)).collect();
            df.replace(name, hex.with_name(name.into()).into_series().into()).unwrap();
        }
        ParquetWriter::new(File::create(&meta.path).unwrap()).finish(&mut df).unwrap();
        let bytes = fs::read(&meta.path).unwrap();
        (meta.size, meta.crc32, meta.sha256) = (bytes.len() as u64, crc32fast::hash(&bytes), Some(sha256(&bytes)));
        let ids = ParquetReader::new(std::io::Cursor::new(&bytes))
            .with_columns(Some(vec!["trace_id".into()]))
            .finish()
            .unwrap();
        assert_eq!(ids.column("trace_id").unwrap().dtype(), &DataType::String, "the part holds hex text");

        let Rows::Spans(written) = &rows else { unreachable!() };
        let Rows::Spans(back) = read_part(&meta, &tenant).unwrap() else { panic!("no spans read") };
        assert_eq!(&back, written);
        assert_eq!(back.iter().filter(|r| r.parent_span_id.is_none()).count(), 10);
        let index = read_part_index(&meta, &tenant).unwrap().expect("an index");
        let expected: Vec<u64> = written.iter().map(|r| trace_key(&r.trace_id)).collect();
        let mut keys = index.trace_key.clone();
        keys.sort_unstable();
        let mut sorted = expected.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        let wanted = std::collections::HashSet::from([trace_key(&written[1].trace_id)]);
        let found = read_part_trace_keys(&meta, &tenant, &wanted).unwrap();
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|r| r.trace_id == written[1].trace_id));
    }

    /// A dictionary holds each value once whether its rows share one copy (equal views) or
    /// each have their own (looked up by text); nulls stay null; a chunk of mostly distinct
    /// values gets none.
    #[test]
    fn a_dictionary_keys_equal_values_alike_however_they_are_stored() {
        use polars_arrow::array::{MutableBinaryViewArray, Utf8ViewArray};
        let long = "GET /api/orders/{id}";
        let shared = polars_buffer::Buffer::from_vec(long.as_bytes().to_vec());
        let shared_view = polars_arrow::array::View::new_from_bytes(long.as_bytes(), 0, 0);
        let mut column = MutableBinaryViewArray::<str>::new();
        column.push_view(shared_view, std::slice::from_ref(&shared));
        column.push_value(long); // its own copy
        column.push_null();
        column.push_value("GET /");
        column.push_view(shared_view, std::slice::from_ref(&shared));
        column.push_value("GET /");
        column.push_value(long);
        column.push_value("");
        let column: Utf8ViewArray = column.freeze();
        let dictionary = dictionary_of(&column).unwrap().expect("a dictionary");
        let keys: Vec<Option<u32>> = dictionary.keys().iter().map(|k| k.copied()).collect();
        assert_eq!(keys, [Some(0), Some(0), None, Some(1), Some(0), Some(1), Some(0), Some(2)]);
        let values = dictionary.values().as_any().downcast_ref::<Utf8ViewArray>().unwrap();
        assert_eq!(values.values_iter().collect::<Vec<_>>(), [long, "GET /", ""]);

        let distinct: Utf8ViewArray =
            MutableBinaryViewArray::<str>::from_values_iter((0..100).map(|i| format!("/orders/{i}"))).freeze();
        assert!(dictionary_of(&distinct).unwrap().is_none());
    }

    /// Past the view trial, a column whose rows each hold their own copy of a few long values
    /// is keyed by text alone, and still gets each value once; short values and values shared
    /// by view after the trial are keyed alike.
    #[test]
    fn a_dictionary_of_own_copies_past_the_view_trial_keys_by_text() {
        use polars_arrow::array::{MutableBinaryViewArray, Utf8ViewArray};
        let long = ["{\"key\":\"user.id\",\"value\":\"user-1\"}", "{\"key\":\"user.id\",\"value\":\"user-2\"}"];
        let shared = polars_buffer::Buffer::from_vec(long[1].as_bytes().to_vec());
        let shared_view = polars_arrow::array::View::new_from_bytes(long[1].as_bytes(), 0, 0);
        let mut column = MutableBinaryViewArray::<str>::new();
        let mut expected = Vec::new();
        for i in 0..3 * VIEW_LOOKUP_TRIAL {
            match i % 5 {
                4 => {
                    column.push_value("short");
                    expected.push(Some(2));
                }
                3 if i > VIEW_LOOKUP_TRIAL => {
                    column.push_view(shared_view, std::slice::from_ref(&shared));
                    expected.push(Some(1));
                }
                n => {
                    column.push_value(long[n % 2]);
                    expected.push(Some(n as u32 % 2));
                }
            }
        }
        let column: Utf8ViewArray = column.freeze();
        let dictionary = dictionary_of(&column).unwrap().expect("a dictionary");
        let keys: Vec<Option<u32>> = dictionary.keys().iter().map(|k| k.copied()).collect();
        assert_eq!(keys, expected);
        let values = dictionary.values().as_any().downcast_ref::<Utf8ViewArray>().unwrap();
        assert_eq!(values.values_iter().collect::<Vec<_>>(), [long[0], long[1], "short"]);
    }

    #[test]
    fn hour_dirs_round_trip() {
        // 2026-11-26T07:18:41Z
        let t = 1_795_677_521u64 * 1_000_000_000;
        assert_eq!(hour_dir(t), "2026-11-26T07");
        assert_eq!(hour_start("2026-11-26T07"), Some(t - (18 * 60 + 41) * 1_000_000_000));
        assert_eq!(hour_dir(0), "1970-01-01T00");
        assert_eq!(hour_start("2024-02-29T23").map(hour_dir).as_deref(), Some("2024-02-29T23"));
        assert_eq!(hour_start("garbage"), None);
    }

    use std::sync::Arc;

    use crate::model::profile::ProfileInfo;
    use crate::model::{ProfileRow, ResourceColumns, ScopeColumns};

    fn resource(service: Option<&str>) -> Arc<ResourceColumns> {
        Arc::new(ResourceColumns {
            service_name: service.map(Arc::from),
            service_version: Some(Arc::from("1.0")),
            deployment_environment: None,
            attributes: Arc::from(format!("[{{\"key\":\"service.name\",\"value\":\"{service:?}\"}}]")),
            dropped_attributes_count: 0,
            schema_url: Arc::from(""),
        })
    }

    /// What a row says, comparable.
    type Said = (u64, i64, String, String, Option<String>, [u8; 16], Option<[u8; 32]>);

    fn said(rows: &Rows) -> Vec<Said> {
        let Rows::Profiles(rows) = rows else { panic!("not profile rows") };
        rows.iter()
            .map(|r| {
                let service = r.resource.service_name.as_deref().map(str::to_string);
                (
                    r.time_unix_nano,
                    r.value,
                    r.stack.to_string(),
                    r.attributes.to_string(),
                    service,
                    r.profile.profile_id,
                    r.profile.source_sha256,
                )
            })
            .collect()
    }

    /// Rows of three services (one unnamed) interleaved in time, sharing stacks, profiles and a
    /// scope across services, so every id a slice uses was first used by another slice.
    fn interleaved(n: usize, salt: i64) -> Vec<ProfileRow> {
        let resources = [resource(Some("checkout")), resource(None), resource(Some("api"))];
        let stacks: Vec<Arc<str>> = (0..7).map(|i| Arc::from(format!("[\"frame{i}\"]"))).collect();
        let scope = Arc::new(ScopeColumns {
            name: Arc::from("pprof"),
            version: Arc::from(""),
            attributes: Arc::from("[]"),
            schema_url: Arc::from(""),
        });
        let profiles: Vec<Arc<ProfileInfo>> = (0..3u8)
            .map(|i| {
                Arc::new(ProfileInfo {
                    profile_time_unix_nano: 1_000 * i as u64,
                    duration_nano: 10_000_000_000,
                    profile_id: [i + 1; 16],
                    sample_type: Arc::from("cpu"),
                    sample_unit: Arc::from("nanoseconds"),
                    period_type: Arc::from("cpu"),
                    period_unit: Arc::from("nanoseconds"),
                    period: 10_000_000,
                    source_sha256: (i != 1).then_some([i * 40 + 1; 32]),
                })
            })
            .collect();
        (0..n)
            .map(|i| ProfileRow {
                time_unix_nano: 1_000_000 + i as u64,
                value: i as i64 * 3 + salt,
                stack: Arc::clone(&stacks[i % stacks.len()]),
                attributes: Arc::from("[]"),
                trace_id: None,
                span_id: (i % 5 == 0).then_some([i as u8; 8]),
                profile: Arc::clone(&profiles[i / 11 % profiles.len()]),
                resource: Arc::clone(&resources[i % resources.len()]),
                scope: Arc::clone(&scope),
            })
            .collect()
    }

    #[test]
    fn profile_parts_are_cut_in_service_slices_that_decode_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Tenant::parse("team-a").unwrap(), Tenant::parse("team-b").unwrap());
        // More rows than one frame, so a slice spans several row groups.
        let (rows_a, rows_b) =
            (Rows::Profiles(interleaved(columns::FRAME_ROWS * 2 + 100, 0)), Rows::Profiles(interleaved(500, 7)));
        let name = part_name(SHARED_DIR, Signal::Profiles, "2026-12-03T08", 1);
        let meta =
            write_part(dir.path(), &name, 1, Signal::Profiles, &[(&a, vec![&rows_a]), (&b, vec![&rows_b])], None)
                .unwrap()
                .unwrap();

        // Slices of both tenants tile the part, in (tenant, service) order.
        let tiles: Vec<(u64, u64)> =
            meta.tenants.iter().flat_map(|t| t.slices.iter().map(|s| (s.first_row, s.rows))).collect();
        let mut next = 0;
        for (first, rows) in &tiles {
            assert_eq!(*first, next, "{tiles:?}");
            next += rows;
        }
        assert_eq!(next, meta.tenants.iter().map(|t| t.rows).sum::<u64>());
        for (tenant, rows) in [(&a, &rows_a), (&b, &rows_b)] {
            let of = meta.of(tenant).unwrap();
            let services: Vec<Option<&str>> = of.slices.iter().map(|s| s.service.as_deref()).collect();
            assert_eq!(services, [None, Some("api"), Some("checkout")]);
            let all = said(rows);
            for service in services {
                let slice = read_part_slice(&meta, tenant, service).unwrap().expect("a part with slices");
                let expected: Vec<Said> = all.iter().filter(|r| r.4.as_deref() == service).cloned().collect();
                assert_eq!(said(&slice), expected, "{tenant} {service:?}");
            }
            // Read whole, the part holds the same rows, ordered by service.
            let mut expected = all.clone();
            expected.sort_by(|x, y| x.4.cmp(&y.4));
            assert_eq!(said(&read_part(&meta, tenant).unwrap()), expected);
            let none = read_part_slice(&meta, tenant, Some("payments")).unwrap().expect("a part with slices");
            assert!(said(&none).is_empty());
        }
        // A tenant the part does not hold has no rows in it.
        let c = Tenant::parse("team-c").unwrap();
        assert!(said(&read_part_slice(&meta, &c, Some("api")).unwrap().unwrap()).is_empty());

        // A slice that does not start where its ids are defined is damage, never other rows.
        let mut wrong = meta.clone();
        wrong.tenants[0].slices[1].first_row += 1;
        let err = read_part_slice(&wrong, &a, Some("api")).unwrap_err();
        assert!(matches!(err, PartError::Damaged { .. }), "{err}");
        let mut wrong = meta.clone();
        wrong.tenants[1].slices[2].rows += 10;
        let err = read_part_slice(&wrong, &b, Some("checkout")).unwrap_err();
        assert!(err.to_string().contains("rows where"), "{err}");

        // Parts written before slices are read whole.
        let mut old = meta.clone();
        old.tenants.iter_mut().for_each(|t| t.slices.clear());
        assert!(read_part_slice(&old, &a, Some("api")).unwrap().is_none());
    }
}
