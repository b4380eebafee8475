//! Parquet parts: the columnar, long-term form of the data, written with polars.
//!
//! A part holds the rows of one tenant, one signal and one hour (by the rows' own time), cut
//! from one frozen head block:
//!
//! ```text
//! parts/<tenant>/<signal>/<YYYY-MM-DDTHH>/<wal-seq>.parquet
//! ```
//!
//! The WAL sequence number in the name ties a part to the checkpoint: a part numbered past
//! the checkpoint belongs to a flush that did not finish and is deleted on start-up (its rows
//! are replayed from the WAL instead), so no row is ever stored twice.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::*;

use crate::model::metric::{MetricDescriptor, MetricKind};
use crate::model::{LogRow, MetricRow, ProfileRow, ResourceColumns, Rows, ScopeColumns, SpanRow};
use crate::signal::Signal;
use crate::tenant::Tenant;

use super::wal::sync_dir;

/// What the catalog knows of a part without reading it.
#[derive(Debug, Clone)]
pub struct PartMeta {
    pub path: PathBuf,
    pub tenant: Tenant,
    pub signal: Signal,
    pub seq: u64,
    pub rows: u64,
    pub min_time: u64,
    pub max_time: u64,
    pub services: BTreeSet<(String, Option<String>)>,
    /// Traces parts: the first 8 bytes of every trace id in the part, sorted, so a lookup by
    /// trace id opens only the parts that may hold it.
    pub trace_keys: Vec<u64>,
}

impl PartMeta {
    /// Whether the part may hold spans of `trace_id` (false positives are possible).
    pub fn may_hold_trace(&self, trace_id: &[u8; 16]) -> bool {
        self.signal != Signal::Traces || self.trace_keys.binary_search(&trace_key(trace_id)).is_ok()
    }
}

/// The lookup key of a trace id in [`PartMeta::trace_keys`].
pub fn trace_key(trace_id: &[u8; 16]) -> u64 {
    u64::from_be_bytes(trace_id[..8].try_into().expect("8 bytes"))
}

/// Sorted, deduplicated trace keys of the spans in `rows`.
pub fn trace_keys<'a>(rows: impl IntoIterator<Item = &'a Rows>) -> Vec<u64> {
    let mut keys: Vec<u64> = rows
        .into_iter()
        .flat_map(|r| match r {
            Rows::Spans(spans) => spans.as_slice(),
            _ => &[],
        })
        .map(|s| trace_key(&s.trace_id))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Failures reading or writing parts.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("part {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("part {path}: {source}")]
    Polars { path: PathBuf, source: PolarsError },
}

const HOUR_NANOS: u64 = 3_600_000_000_000;

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

fn time_column(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "start_time_unix_nano",
        _ => "time_unix_nano",
    }
}

/// Writes `rows` as one part, durably (temp file, fsync, rename, fsync directory).
pub fn write_part(
    root: &Path,
    tenant: &Tenant,
    hour: &str,
    seq: u64,
    rows: &[&Rows],
) -> Result<Option<PathBuf>, PartError> {
    let Some(first) = rows.first() else { return Ok(None) };
    let signal = first.signal();
    let dir = root.join(tenant.as_str()).join(signal.as_str()).join(hour);
    let path = dir.join(format!("{seq:020}.parquet"));
    let io_err = |source| PartError::Io { path: path.clone(), source };
    let mut df = to_frame(signal, rows).map_err(|source| PartError::Polars { path: path.clone(), source })?;
    if df.height() == 0 {
        return Ok(None);
    }
    fs::create_dir_all(&dir).map_err(io_err)?;
    let tmp = dir.join(format!("{seq:020}.parquet.tmp"));
    let file = File::create(&tmp).map_err(io_err)?;
    ParquetWriter::new(&file)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(&mut df)
        .map_err(|source| PartError::Polars { path: path.clone(), source })?;
    file.sync_all().map_err(io_err)?;
    fs::rename(&tmp, &path).map_err(io_err)?;
    sync_dir(&dir).map_err(io_err)?;
    Ok(Some(path))
}

/// Reads a whole part back into rows.
pub fn read_part(path: &Path, signal: Signal) -> Result<Rows, PartError> {
    let polars_err = |source| PartError::Polars { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(|source| PartError::Io { path: path.to_path_buf(), source })?;
    let df = ParquetReader::new(file).finish().map_err(polars_err)?;
    from_frame(signal, &df).map_err(polars_err)
}

/// Reads what the catalog needs of a part: row count, time range, services.
pub fn read_meta(path: &Path, tenant: Tenant, signal: Signal, seq: u64) -> Result<PartMeta, PartError> {
    let polars_err = |source| PartError::Polars { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(|source| PartError::Io { path: path.to_path_buf(), source })?;
    let mut columns = vec![time_column(signal).to_string(), "service_name".into(), "service_version".into()];
    if signal == Signal::Traces {
        columns.push("trace_id".into());
    }
    let df = ParquetReader::new(file).with_columns(Some(columns)).finish().map_err(polars_err)?;
    let times = df.column(time_column(signal)).and_then(|c| c.u64()).map_err(polars_err)?;
    let names = df.column("service_name").and_then(|c| c.str()).map_err(polars_err)?;
    let versions = df.column("service_version").and_then(|c| c.str()).map_err(polars_err)?;
    let mut services = BTreeSet::new();
    for (name, version) in names.iter().zip(versions.iter()) {
        if let Some(name) = name {
            services.insert((name.to_string(), version.map(str::to_string)));
        }
    }
    let mut trace_keys = Vec::new();
    if signal == Signal::Traces {
        let ids = df.column("trace_id").and_then(|c| c.str()).map_err(polars_err)?;
        trace_keys = ids.iter().filter_map(|t| id::<16>(t)).map(|t| trace_key(&t)).collect();
        trace_keys.sort_unstable();
        trace_keys.dedup();
    }
    Ok(PartMeta {
        trace_keys,
        path: path.to_path_buf(),
        tenant,
        signal,
        seq,
        rows: df.height() as u64,
        min_time: times.min().unwrap_or(0),
        max_time: times.max().unwrap_or(0),
        services,
    })
}

/// A part file found on disk.
#[derive(Debug)]
pub struct PartFile {
    pub tenant: Tenant,
    pub signal: Signal,
    pub seq: u64,
    pub path: PathBuf,
}

/// Lists every part under `root`, sorted by path; removes leftover temporary files of
/// interrupted writes as it goes.
pub fn list_parts(root: &Path) -> io::Result<Vec<PartFile>> {
    let mut out = Vec::new();
    if !root.exists() {
        return Ok(out);
    }
    for tenant_entry in fs::read_dir(root)? {
        let tenant_entry = tenant_entry?;
        let Ok(tenant) = Tenant::parse(&tenant_entry.file_name().to_string_lossy()) else { continue };
        for signal_entry in fs::read_dir(tenant_entry.path())? {
            let signal_entry = signal_entry?;
            let Some(signal) = Signal::parse(&signal_entry.file_name().to_string_lossy()) else { continue };
            for hour_entry in fs::read_dir(signal_entry.path())? {
                let hour_entry = hour_entry?;
                for file in fs::read_dir(hour_entry.path())? {
                    let path = file?.path();
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    if name.ends_with(".tmp") {
                        fs::remove_file(&path)?;
                    } else if let Some(seq) = name.strip_suffix(".parquet").and_then(|s| s.parse().ok()) {
                        out.push(PartFile { tenant: tenant.clone(), signal, seq, path });
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

// ---- rows <-> columns ----------------------------------------------------------------------

fn col<T, P>(name: &str, values: T) -> Column
where
    Series: NamedFrom<T, P>,
    P: ?Sized,
{
    Column::new(name.into(), values)
}

/// Lowercase hex of an id; `hex::encode` goes through `char`s and was a visible share of
/// flush time.
fn hex_id(id: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(id.len() * 2);
    for b in id {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    // Only ASCII hex digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

fn opt_str(v: &Option<Arc<str>>) -> Option<&str> {
    v.as_deref()
}

/// Columns every signal has: service, resource and scope.
fn common_columns<'a>(n: usize, items: impl Iterator<Item = (&'a ResourceColumns, &'a ScopeColumns)>) -> Vec<Column> {
    let mut service_name = Vec::with_capacity(n);
    let mut service_version = Vec::with_capacity(n);
    let mut environment = Vec::with_capacity(n);
    let mut res_attrs = Vec::with_capacity(n);
    let mut res_dropped = Vec::with_capacity(n);
    let mut res_schema = Vec::with_capacity(n);
    let mut scope_name = Vec::with_capacity(n);
    let mut scope_version = Vec::with_capacity(n);
    let mut scope_attrs = Vec::with_capacity(n);
    let mut scope_schema = Vec::with_capacity(n);
    for (r, s) in items {
        service_name.push(opt_str(&r.service_name));
        service_version.push(opt_str(&r.service_version));
        environment.push(opt_str(&r.deployment_environment));
        res_attrs.push(&*r.attributes);
        res_dropped.push(r.dropped_attributes_count);
        res_schema.push(&*r.schema_url);
        scope_name.push(&*s.name);
        scope_version.push(&*s.version);
        scope_attrs.push(&*s.attributes);
        scope_schema.push(&*s.schema_url);
    }
    vec![
        col("service_name", service_name),
        col("service_version", service_version),
        col("deployment_environment", environment),
        col("resource_attributes", res_attrs),
        col("resource_dropped_attributes_count", res_dropped),
        col("resource_schema_url", res_schema),
        col("scope_name", scope_name),
        col("scope_version", scope_version),
        col("scope_attributes", scope_attrs),
        col("scope_schema_url", scope_schema),
    ]
}

fn frame(mut columns: Vec<Column>, common: Vec<Column>, n: usize) -> PolarsResult<DataFrame> {
    columns.extend(common);
    DataFrame::new(n, columns)
}

fn to_frame(signal: Signal, chunks: &[&Rows]) -> PolarsResult<DataFrame> {
    match signal {
        Signal::Traces => {
            let rows: Vec<&SpanRow> = chunks
                .iter()
                .flat_map(|r| match r {
                    Rows::Spans(v) => v.as_slice(),
                    _ => &[],
                })
                .collect();
            spans_frame(&rows)
        }
        Signal::Metrics => {
            let rows: Vec<&MetricRow> = chunks
                .iter()
                .flat_map(|r| match r {
                    Rows::Metrics(v) => v.as_slice(),
                    _ => &[],
                })
                .collect();
            metrics_frame(&rows)
        }
        Signal::Logs => {
            let rows: Vec<&LogRow> = chunks
                .iter()
                .flat_map(|r| match r {
                    Rows::Logs(v) => v.as_slice(),
                    _ => &[],
                })
                .collect();
            logs_frame(&rows)
        }
        Signal::Profiles => {
            let rows: Vec<&ProfileRow> = chunks
                .iter()
                .flat_map(|r| match r {
                    Rows::Profiles(v) => v.as_slice(),
                    _ => &[],
                })
                .collect();
            profiles_frame(&rows)
        }
    }
}

fn spans_frame(rows: &[&SpanRow]) -> PolarsResult<DataFrame> {
    let n = rows.len();
    let columns = vec![
        col("trace_id", rows.iter().map(|r| hex_id(&r.trace_id)).collect::<Vec<_>>()),
        col("span_id", rows.iter().map(|r| hex_id(&r.span_id)).collect::<Vec<_>>()),
        col("parent_span_id", rows.iter().map(|r| r.parent_span_id.map(|p| hex_id(&p))).collect::<Vec<_>>()),
        col("trace_state", rows.iter().map(|r| r.trace_state.as_str()).collect::<Vec<_>>()),
        col("flags", rows.iter().map(|r| r.flags).collect::<Vec<_>>()),
        col("name", rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>()),
        col("kind", rows.iter().map(|r| r.kind).collect::<Vec<_>>()),
        col("start_time_unix_nano", rows.iter().map(|r| r.start_unix_nano).collect::<Vec<_>>()),
        col("end_time_unix_nano", rows.iter().map(|r| r.end_unix_nano).collect::<Vec<_>>()),
        col("duration_nano", rows.iter().map(|r| r.duration_nano()).collect::<Vec<_>>()),
        col("status_code", rows.iter().map(|r| r.status_code).collect::<Vec<_>>()),
        col("status_message", rows.iter().map(|r| r.status_message.as_str()).collect::<Vec<_>>()),
        col("http_route", rows.iter().map(|r| r.http_route.as_deref()).collect::<Vec<_>>()),
        col("http_response_status_code", rows.iter().map(|r| r.http_status_code).collect::<Vec<_>>()),
        col("attributes", rows.iter().map(|r| r.attributes.as_str()).collect::<Vec<_>>()),
        col("dropped_attributes_count", rows.iter().map(|r| r.dropped_attributes_count).collect::<Vec<_>>()),
        col("events", rows.iter().map(|r| r.events.as_str()).collect::<Vec<_>>()),
        col("dropped_events_count", rows.iter().map(|r| r.dropped_events_count).collect::<Vec<_>>()),
        col("links", rows.iter().map(|r| r.links.as_str()).collect::<Vec<_>>()),
        col("dropped_links_count", rows.iter().map(|r| r.dropped_links_count).collect::<Vec<_>>()),
    ];
    let common = common_columns(n, rows.iter().map(|r| (&*r.resource, &*r.scope)));
    frame(columns, common, n)
}

fn metrics_frame(rows: &[&MetricRow]) -> PolarsResult<DataFrame> {
    let n = rows.len();
    let columns = vec![
        col("metric_name", rows.iter().map(|r| &*r.metric.name).collect::<Vec<_>>()),
        col("metric_description", rows.iter().map(|r| &*r.metric.description).collect::<Vec<_>>()),
        col("metric_unit", rows.iter().map(|r| &*r.metric.unit).collect::<Vec<_>>()),
        col("metric_metadata", rows.iter().map(|r| &*r.metric.metadata).collect::<Vec<_>>()),
        col("kind", rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>()),
        col("temporality", rows.iter().map(|r| r.temporality).collect::<Vec<_>>()),
        col("is_monotonic", rows.iter().map(|r| r.is_monotonic).collect::<Vec<_>>()),
        col("start_time_unix_nano", rows.iter().map(|r| r.start_unix_nano).collect::<Vec<_>>()),
        col("time_unix_nano", rows.iter().map(|r| r.time_unix_nano).collect::<Vec<_>>()),
        col("attributes", rows.iter().map(|r| r.attributes.as_str()).collect::<Vec<_>>()),
        col("flags", rows.iter().map(|r| r.flags).collect::<Vec<_>>()),
        col("value", rows.iter().map(|r| r.value).collect::<Vec<_>>()),
        col("value_int", rows.iter().map(|r| r.value_int).collect::<Vec<_>>()),
        col("count", rows.iter().map(|r| r.count).collect::<Vec<_>>()),
        col("sum", rows.iter().map(|r| r.sum).collect::<Vec<_>>()),
        col("min", rows.iter().map(|r| r.min).collect::<Vec<_>>()),
        col("max", rows.iter().map(|r| r.max).collect::<Vec<_>>()),
        col("detail", rows.iter().map(|r| r.detail.as_str()).collect::<Vec<_>>()),
        col("exemplars", rows.iter().map(|r| r.exemplars.as_str()).collect::<Vec<_>>()),
    ];
    let common = common_columns(n, rows.iter().map(|r| (&*r.resource, &*r.scope)));
    frame(columns, common, n)
}

fn logs_frame(rows: &[&LogRow]) -> PolarsResult<DataFrame> {
    let n = rows.len();
    let columns = vec![
        col("time_unix_nano", rows.iter().map(|r| r.time_unix_nano).collect::<Vec<_>>()),
        col("observed_time_unix_nano", rows.iter().map(|r| r.observed_unix_nano).collect::<Vec<_>>()),
        col("severity_number", rows.iter().map(|r| r.severity_number).collect::<Vec<_>>()),
        col("severity_text", rows.iter().map(|r| r.severity_text.as_str()).collect::<Vec<_>>()),
        col("body", rows.iter().map(|r| r.body.as_str()).collect::<Vec<_>>()),
        col("attributes", rows.iter().map(|r| r.attributes.as_str()).collect::<Vec<_>>()),
        col("dropped_attributes_count", rows.iter().map(|r| r.dropped_attributes_count).collect::<Vec<_>>()),
        col("flags", rows.iter().map(|r| r.flags).collect::<Vec<_>>()),
        col("trace_id", rows.iter().map(|r| r.trace_id.map(|t| hex_id(&t))).collect::<Vec<_>>()),
        col("span_id", rows.iter().map(|r| r.span_id.map(|s| hex_id(&s))).collect::<Vec<_>>()),
        col("event_name", rows.iter().map(|r| r.event_name.as_str()).collect::<Vec<_>>()),
    ];
    let common = common_columns(n, rows.iter().map(|r| (&*r.resource, &*r.scope)));
    frame(columns, common, n)
}

fn profiles_frame(rows: &[&ProfileRow]) -> PolarsResult<DataFrame> {
    let n = rows.len();
    let columns = vec![
        col("time_unix_nano", rows.iter().map(|r| r.time_unix_nano).collect::<Vec<_>>()),
        col("profile_time_unix_nano", rows.iter().map(|r| r.profile_time_unix_nano).collect::<Vec<_>>()),
        col("duration_nano", rows.iter().map(|r| r.duration_nano).collect::<Vec<_>>()),
        col("profile_id", rows.iter().map(|r| hex_id(&r.profile_id)).collect::<Vec<_>>()),
        col("sample_type", rows.iter().map(|r| &*r.sample_type).collect::<Vec<_>>()),
        col("sample_unit", rows.iter().map(|r| &*r.sample_unit).collect::<Vec<_>>()),
        col("period_type", rows.iter().map(|r| &*r.period_type).collect::<Vec<_>>()),
        col("period_unit", rows.iter().map(|r| &*r.period_unit).collect::<Vec<_>>()),
        col("period", rows.iter().map(|r| r.period).collect::<Vec<_>>()),
        col("value", rows.iter().map(|r| r.value).collect::<Vec<_>>()),
        col("stack", rows.iter().map(|r| r.stack.as_str()).collect::<Vec<_>>()),
        col("attributes", rows.iter().map(|r| r.attributes.as_str()).collect::<Vec<_>>()),
        col("trace_id", rows.iter().map(|r| r.trace_id.map(|t| hex_id(&t))).collect::<Vec<_>>()),
        col("span_id", rows.iter().map(|r| r.span_id.map(|s| hex_id(&s))).collect::<Vec<_>>()),
    ];
    let common = common_columns(n, rows.iter().map(|r| (&*r.resource, &*r.scope)));
    frame(columns, common, n)
}

/// Column access for reading a frame back, with errors naming the column.
struct Cols<'a>(&'a DataFrame);

impl<'a> Cols<'a> {
    fn str(&self, name: &str) -> PolarsResult<Vec<Option<&'a str>>> {
        Ok(self.0.column(name)?.str()?.iter().collect())
    }
    fn u64(&self, name: &str) -> PolarsResult<Vec<Option<u64>>> {
        Ok(self.0.column(name)?.u64()?.iter().collect())
    }
    fn u32(&self, name: &str) -> PolarsResult<Vec<Option<u32>>> {
        Ok(self.0.column(name)?.u32()?.iter().collect())
    }
    fn i32(&self, name: &str) -> PolarsResult<Vec<Option<i32>>> {
        Ok(self.0.column(name)?.i32()?.iter().collect())
    }
    fn i64(&self, name: &str) -> PolarsResult<Vec<Option<i64>>> {
        Ok(self.0.column(name)?.i64()?.iter().collect())
    }
    fn f64(&self, name: &str) -> PolarsResult<Vec<Option<f64>>> {
        Ok(self.0.column(name)?.f64()?.iter().collect())
    }
    fn bool(&self, name: &str) -> PolarsResult<Vec<Option<bool>>> {
        Ok(self.0.column(name)?.bool()?.iter().collect())
    }
}

/// Rebuilds the shared resource and scope of each row, reusing the previous row's `Arc`s
/// when they are equal (rows of one resource are stored next to each other).
struct Common<'a> {
    service_name: Vec<Option<&'a str>>,
    service_version: Vec<Option<&'a str>>,
    environment: Vec<Option<&'a str>>,
    res_attrs: Vec<Option<&'a str>>,
    res_dropped: Vec<Option<u32>>,
    res_schema: Vec<Option<&'a str>>,
    scope_name: Vec<Option<&'a str>>,
    scope_version: Vec<Option<&'a str>>,
    scope_attrs: Vec<Option<&'a str>>,
    scope_schema: Vec<Option<&'a str>>,
    last: Option<(usize, Arc<ResourceColumns>, Arc<ScopeColumns>)>,
}

impl<'a> Common<'a> {
    fn read(c: &Cols<'a>) -> PolarsResult<Common<'a>> {
        Ok(Common {
            service_name: c.str("service_name")?,
            service_version: c.str("service_version")?,
            environment: c.str("deployment_environment")?,
            res_attrs: c.str("resource_attributes")?,
            res_dropped: c.u32("resource_dropped_attributes_count")?,
            res_schema: c.str("resource_schema_url")?,
            scope_name: c.str("scope_name")?,
            scope_version: c.str("scope_version")?,
            scope_attrs: c.str("scope_attributes")?,
            scope_schema: c.str("scope_schema_url")?,
            last: None,
        })
    }

    fn same(&self, a: usize, b: usize) -> bool {
        self.service_name[a] == self.service_name[b]
            && self.service_version[a] == self.service_version[b]
            && self.environment[a] == self.environment[b]
            && self.res_attrs[a] == self.res_attrs[b]
            && self.res_dropped[a] == self.res_dropped[b]
            && self.res_schema[a] == self.res_schema[b]
            && self.scope_name[a] == self.scope_name[b]
            && self.scope_version[a] == self.scope_version[b]
            && self.scope_attrs[a] == self.scope_attrs[b]
            && self.scope_schema[a] == self.scope_schema[b]
    }

    fn at(&mut self, i: usize) -> (Arc<ResourceColumns>, Arc<ScopeColumns>) {
        if let Some((j, r, s)) = &self.last
            && self.same(*j, i)
        {
            return (Arc::clone(r), Arc::clone(s));
        }
        let arc = |v: Option<&str>| Arc::<str>::from(v.unwrap_or(""));
        let resource = Arc::new(ResourceColumns {
            service_name: self.service_name[i].map(Arc::from),
            service_version: self.service_version[i].map(Arc::from),
            deployment_environment: self.environment[i].map(Arc::from),
            attributes: arc(self.res_attrs[i]),
            dropped_attributes_count: self.res_dropped[i].unwrap_or(0),
            schema_url: arc(self.res_schema[i]),
        });
        let scope = Arc::new(ScopeColumns {
            name: arc(self.scope_name[i]),
            version: arc(self.scope_version[i]),
            attributes: arc(self.scope_attrs[i]),
            schema_url: arc(self.scope_schema[i]),
        });
        self.last = Some((i, Arc::clone(&resource), Arc::clone(&scope)));
        (resource, scope)
    }
}

fn id<const N: usize>(hex_text: Option<&str>) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(hex_text?, &mut out).ok()?;
    Some(out)
}

fn s(v: Option<&str>) -> String {
    v.unwrap_or("").to_string()
}

fn from_frame(signal: Signal, df: &DataFrame) -> PolarsResult<Rows> {
    let c = Cols(df);
    let mut common = Common::read(&c)?;
    let n = df.height();
    Ok(match signal {
        Signal::Traces => {
            let (trace_id, span_id, parent) = (c.str("trace_id")?, c.str("span_id")?, c.str("parent_span_id")?);
            let (trace_state, flags, name, kind) =
                (c.str("trace_state")?, c.u32("flags")?, c.str("name")?, c.i32("kind")?);
            let (start, end) = (c.u64("start_time_unix_nano")?, c.u64("end_time_unix_nano")?);
            let (status_code, status_message) = (c.i32("status_code")?, c.str("status_message")?);
            let (route, http_status) = (c.str("http_route")?, c.i64("http_response_status_code")?);
            let (attributes, dropped_attrs) = (c.str("attributes")?, c.u32("dropped_attributes_count")?);
            let (events, dropped_events) = (c.str("events")?, c.u32("dropped_events_count")?);
            let (links, dropped_links) = (c.str("links")?, c.u32("dropped_links_count")?);
            Rows::Spans(
                (0..n)
                    .map(|i| {
                        let (resource, scope) = common.at(i);
                        SpanRow {
                            trace_id: id(trace_id[i]).unwrap_or([0; 16]),
                            span_id: id(span_id[i]).unwrap_or([0; 8]),
                            parent_span_id: id(parent[i]),
                            trace_state: s(trace_state[i]),
                            flags: flags[i].unwrap_or(0),
                            name: s(name[i]),
                            kind: kind[i].unwrap_or(0),
                            start_unix_nano: start[i].unwrap_or(0),
                            end_unix_nano: end[i].unwrap_or(0),
                            status_code: status_code[i].unwrap_or(0),
                            status_message: s(status_message[i]),
                            http_route: route[i].map(str::to_string),
                            http_status_code: http_status[i],
                            attributes: s(attributes[i]),
                            dropped_attributes_count: dropped_attrs[i].unwrap_or(0),
                            events: s(events[i]),
                            dropped_events_count: dropped_events[i].unwrap_or(0),
                            links: s(links[i]),
                            dropped_links_count: dropped_links[i].unwrap_or(0),
                            resource,
                            scope,
                        }
                    })
                    .collect(),
            )
        }
        Signal::Metrics => {
            let (name, description, unit, metadata) =
                (c.str("metric_name")?, c.str("metric_description")?, c.str("metric_unit")?, c.str("metric_metadata")?);
            let (kind, temporality, monotonic) = (c.str("kind")?, c.i32("temporality")?, c.bool("is_monotonic")?);
            let (start, time) = (c.u64("start_time_unix_nano")?, c.u64("time_unix_nano")?);
            let (attributes, flags) = (c.str("attributes")?, c.u32("flags")?);
            let (value, value_int, count) = (c.f64("value")?, c.i64("value_int")?, c.u64("count")?);
            let (sum, min, max) = (c.f64("sum")?, c.f64("min")?, c.f64("max")?);
            let (detail, exemplars) = (c.str("detail")?, c.str("exemplars")?);
            let mut last_metric: Option<(usize, Arc<MetricDescriptor>)> = None;
            Rows::Metrics(
                (0..n)
                    .map(|i| {
                        let (resource, scope) = common.at(i);
                        let metric = match &last_metric {
                            Some((j, m))
                                if name[*j] == name[i]
                                    && description[*j] == description[i]
                                    && unit[*j] == unit[i]
                                    && metadata[*j] == metadata[i] =>
                            {
                                Arc::clone(m)
                            }
                            _ => {
                                let m = Arc::new(MetricDescriptor {
                                    name: Arc::from(name[i].unwrap_or("")),
                                    description: Arc::from(description[i].unwrap_or("")),
                                    unit: Arc::from(unit[i].unwrap_or("")),
                                    metadata: Arc::from(metadata[i].unwrap_or("")),
                                });
                                last_metric = Some((i, Arc::clone(&m)));
                                m
                            }
                        };
                        MetricRow {
                            metric,
                            kind: kind[i].and_then(MetricKind::parse).unwrap_or(MetricKind::Gauge),
                            temporality: temporality[i].unwrap_or(0),
                            is_monotonic: monotonic[i].unwrap_or(false),
                            start_unix_nano: start[i].unwrap_or(0),
                            time_unix_nano: time[i].unwrap_or(0),
                            attributes: s(attributes[i]),
                            flags: flags[i].unwrap_or(0),
                            value: value[i],
                            value_int: value_int[i],
                            count: count[i],
                            sum: sum[i],
                            min: min[i],
                            max: max[i],
                            detail: s(detail[i]),
                            exemplars: s(exemplars[i]),
                            resource,
                            scope,
                        }
                    })
                    .collect(),
            )
        }
        Signal::Logs => {
            let (time, observed) = (c.u64("time_unix_nano")?, c.u64("observed_time_unix_nano")?);
            let (sev, sev_text, body) = (c.i32("severity_number")?, c.str("severity_text")?, c.str("body")?);
            let (attributes, dropped, flags) =
                (c.str("attributes")?, c.u32("dropped_attributes_count")?, c.u32("flags")?);
            let (trace_id, span_id, event_name) = (c.str("trace_id")?, c.str("span_id")?, c.str("event_name")?);
            Rows::Logs(
                (0..n)
                    .map(|i| {
                        let (resource, scope) = common.at(i);
                        LogRow {
                            time_unix_nano: time[i].unwrap_or(0),
                            observed_unix_nano: observed[i].unwrap_or(0),
                            severity_number: sev[i].unwrap_or(0),
                            severity_text: s(sev_text[i]),
                            body: s(body[i]),
                            attributes: s(attributes[i]),
                            dropped_attributes_count: dropped[i].unwrap_or(0),
                            flags: flags[i].unwrap_or(0),
                            trace_id: id(trace_id[i]),
                            span_id: id(span_id[i]),
                            event_name: s(event_name[i]),
                            resource,
                            scope,
                        }
                    })
                    .collect(),
            )
        }
        Signal::Profiles => {
            let (time, ptime, duration) =
                (c.u64("time_unix_nano")?, c.u64("profile_time_unix_nano")?, c.u64("duration_nano")?);
            let profile_id = c.str("profile_id")?;
            let (st, su, pt, pu) =
                (c.str("sample_type")?, c.str("sample_unit")?, c.str("period_type")?, c.str("period_unit")?);
            let (period, value, stack) = (c.i64("period")?, c.i64("value")?, c.str("stack")?);
            let (attributes, trace_id, span_id) = (c.str("attributes")?, c.str("trace_id")?, c.str("span_id")?);
            Rows::Profiles(
                (0..n)
                    .map(|i| {
                        let (resource, scope) = common.at(i);
                        let arc = |v: Option<&str>| Arc::<str>::from(v.unwrap_or(""));
                        ProfileRow {
                            time_unix_nano: time[i].unwrap_or(0),
                            profile_time_unix_nano: ptime[i].unwrap_or(0),
                            duration_nano: duration[i].unwrap_or(0),
                            profile_id: id(profile_id[i]).unwrap_or([0; 16]),
                            sample_type: arc(st[i]),
                            sample_unit: arc(su[i]),
                            period_type: arc(pt[i]),
                            period_unit: arc(pu[i]),
                            period: period[i].unwrap_or(0),
                            value: value[i].unwrap_or(0),
                            stack: s(stack[i]),
                            attributes: s(attributes[i]),
                            trace_id: id(trace_id[i]),
                            span_id: id(span_id[i]),
                            resource,
                            scope,
                        }
                    })
                    .collect(),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_match_the_hex_crate() {
        let id = [0u8, 1, 0x7f, 0x80, 0xab, 0xff];
        assert_eq!(hex_id(&id), hex::encode(id));
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
}
