//! Compaction through the store as the collector uses it: rows of every signal identical
//! before and after a merge, time-sorted, tenants of shared parts kept apart, encrypted
//! outputs, a crash at each step of a merge, queries in flight, and a simulated day.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::super::crypt::{self, KeyRing};
use super::super::*;
use super::{Stop, pass_stopping};
use crate::config::{CompactionConfig, Durability};
use crate::receive::ExportRequest;

const HOUR: u64 = parts::HOUR_NANOS;

pub(crate) fn settings(min_tenant_part_bytes: u64) -> StoreSettings {
    StoreSettings {
        durability: Durability::Group,
        group_commit_interval: Duration::from_millis(1),
        flush_interval: Duration::from_secs(3600),
        max_head_bytes: 1 << 30,
        retention: Duration::from_secs(3 * 86_400),
        retention_interval: Duration::from_secs(3600),
        min_tenant_part_bytes,
        verify_parts_at_start: false,
        min_free_bytes: 0,
        span_index_cache_bytes: 64 << 20,
        trace_key_bytes: 64 << 20,
    }
}

fn config() -> CompactionConfig {
    CompactionConfig { min_parts: 2, ..CompactionConfig::default() }
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// The start of the hour three hours ago: closed, within retention.
pub(crate) fn past_hour() -> u64 {
    (now() / HOUR - 3) * HOUR
}

pub(crate) fn tenant(id: &str) -> Tenant {
    Tenant::parse(id).unwrap()
}

pub(crate) fn append<R: ExportRequest>(store: &Store, tenant_id: &str, request: R) {
    let payload = Bytes::from(request.encode_to_vec());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(store.append(tenant(tenant_id), payload, request.into_rows())).unwrap();
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        key_strindex: 0,
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() })
}

/// Spans with trace ids `[id, flush, 0..]` at the given times.
pub(crate) fn spans(id: u8, flush: u8, times: &[u64]) -> ExportTraceServiceRequest {
    let spans = times
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let mut trace_id = vec![id, flush, (i >> 8) as u8, i as u8];
            trace_id.resize(16, 7);
            Span {
                trace_id,
                span_id: vec![i as u8 + 1; 8],
                name: format!("op{i}"),
                start_time_unix_nano: t,
                end_time_unix_nano: t + 1_000,
                attributes: vec![kv("i", &i.to_string())],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(if id.is_multiple_of(2) { "api" } else { "web" }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

pub(crate) fn gauges(service: &str, times: &[u64]) -> ExportMetricsServiceRequest {
    let data_points = times
        .iter()
        .enumerate()
        .map(|(i, &t)| NumberDataPoint {
            attributes: vec![kv("host", if i % 2 == 0 { "a" } else { "b" })],
            time_unix_nano: t,
            value: Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(service),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue_depth".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub(crate) fn logs(service: &str, times: &[u64]) -> ExportLogsServiceRequest {
    let log_records = times
        .iter()
        .enumerate()
        .map(|(i, &t)| LogRecord {
            time_unix_nano: t,
            severity_number: 9,
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("line {i} at {t}"))) }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// The corpus's Go CPU profile at `time`, for `service`.
pub(crate) fn profile(time: u64, service: &str) -> ExportProfilesServiceRequest {
    use crate::model::pprof::{Fallback, SeriesLabels, record_source, to_otlp};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(dir.join("../testdata/corpus/go-dev/fast/cpu-10s.pb.gz")).unwrap();
    let mut profile = analyzer::pprof::decode(&bytes).unwrap();
    profile.time_nanos = time as i64;
    let labels = SeriesLabels::new(Some(service), [("instance".to_string(), "pod-a".to_string())]);
    let mut request = to_otlp(&profile, &labels, Fallback::default(), &bytes);
    record_source(&mut request, &bytes);
    request
}

/// Every row of a tenant's signal, as text, sorted (a full scan).
pub(crate) fn dump(store: &Store, tenant_id: &str, signal: Signal) -> Vec<String> {
    let snap = store.snapshot(&tenant(tenant_id), signal);
    let mut out = Vec::new();
    let report = store
        .scan(&snap, |rows| match rows {
            Rows::Spans(r) => out.extend(r.iter().map(|x| format!("{x:?}"))),
            Rows::Metrics(r) => out.extend(r.iter().map(|x| format!("{x:?}"))),
            Rows::Logs(r) => out.extend(r.iter().map(|x| format!("{x:?}"))),
            Rows::Profiles(r) => out.extend(r.iter().map(|x| format!("{x:?}"))),
            Rows::Series(_) => {}
        })
        .unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    out.sort();
    out
}

pub(crate) fn parts_of(store: &Store, tenant_id: &str, signal: Signal) -> Vec<Arc<PartMeta>> {
    store.snapshot(&tenant(tenant_id), signal).parts
}

/// Times of a part's rows of one tenant, in row order.
fn times_in_order(part: &PartMeta, tenant_id: &str) -> Vec<u64> {
    let rows = parts::read_part(part, &tenant(tenant_id)).unwrap();
    let mut times = Vec::new();
    rows.for_each_key(|k| times.push(k.time_unix_nano));
    times
}

fn is_sorted(times: &[u64]) -> bool {
    times.windows(2).all(|w| w[0] <= w[1])
}

/// `flushes` flushes of tenant `a`'s rows of every signal, times falling within `hour`
/// and descending from flush to flush (so a merge has to sort them).
fn ingest_every_signal(store: &Store, hour: u64, flushes: u64) {
    for f in 0..flushes {
        let base = hour + (flushes - f) * 60_000_000_000;
        let times: Vec<u64> = (0..20).map(|i| base + (19 - i) * 1_000_000_000).collect();
        append(store, "a", spans(2, f as u8, &times));
        append(store, "a", gauges("api", &times));
        append(store, "a", logs("web", &times));
        append(store, "a", profile(base, if f.is_multiple_of(2) { "checkout" } else { "cart" }));
        store.flush().unwrap();
    }
    // A flush with nothing to write lets the flusher merge the hour's series segments.
    store.flush().unwrap();
}

#[test]
fn every_signal_merges_into_one_time_sorted_part_holding_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let hour = past_hour();
    let store = Store::open(dir.path(), settings(0), Arc::default()).unwrap();
    ingest_every_signal(&store, hour, 6);
    let before: Vec<Vec<String>> = Signal::ALL.iter().map(|&s| dump(&store, "a", s)).collect();
    for signal in Signal::ALL {
        assert_eq!(parts_of(&store, "a", signal).len(), 6, "{signal}");
    }
    let t = tenant("a");
    // PromQL reads the metrics from the series segments, not the parts.
    assert!(store.series_snapshot(&t, 0, i64::MAX).parts.is_empty());

    // The hour is not over yet for a clock inside it: nothing happens.
    let early = store.compact_now(&config(), hour + HOUR / 2).unwrap();
    assert_eq!(early.merges, 0);
    let report = store.compact_now(&config(), now()).unwrap();
    assert_eq!((report.merges, report.parts_in, report.abandoned), (4, 24, 0), "{report:?}");
    assert!(report.bytes_out > 0 && report.rows == before.iter().map(|b| b.len() as u64).sum::<u64>());
    let telemetry = store.telemetry();
    assert_eq!(telemetry.compactions.load(std::sync::atomic::Ordering::Relaxed), 4);
    assert_eq!(telemetry.compaction_parts.load(std::sync::atomic::Ordering::Relaxed), 24);
    assert_eq!(telemetry.compaction_bytes.load(std::sync::atomic::Ordering::Relaxed), report.bytes_in);

    for (signal, rows) in Signal::ALL.iter().zip(&before) {
        let merged = parts_of(&store, "a", *signal);
        assert_eq!(merged.len(), 1, "{signal}");
        assert_eq!(&dump(&store, "a", *signal), rows, "{signal}");
        let of = merged[0].of(&t).unwrap();
        assert_eq!(of.rows, rows.len() as u64);
        if *signal == Signal::Profiles {
            // Time-sorted within each service slice, which decode alone.
            assert_eq!(of.slices.len(), 2, "{:?}", of.slices);
            for slice in &of.slices {
                let rows = parts::read_part_slice(&merged[0], &t, slice.service.as_deref()).unwrap().unwrap();
                let mut times = Vec::new();
                rows.for_each_key(|k| times.push(k.time_unix_nano));
                assert!(is_sorted(&times) && times.len() as u64 == slice.rows);
            }
        } else {
            assert!(is_sorted(&times_in_order(&merged[0], "a")), "{signal}");
        }
        if *signal == Signal::Traces {
            assert_eq!(of.trace_keys.len(), 6 * 20);
            let mut id = [7u8; 16];
            id[..4].copy_from_slice(&[2, 3, 0, 5]);
            assert!(merged[0].may_hold_trace(&t, &id));
        }
    }
    // Still read from the series segments: the merged part is covered as its inputs were.
    assert!(store.series_snapshot(&t, 0, i64::MAX).parts.is_empty());
    // Only the merged files are left on disk.
    let files = parts::list(dir.path()).unwrap();
    assert_eq!(files.len(), 4, "{files:?}");

    // The same after a restart, and nothing more to merge.
    drop(store);
    let store = Store::open(dir.path(), settings(0), Arc::default()).unwrap();
    for (signal, rows) in Signal::ALL.iter().zip(&before) {
        assert_eq!(parts_of(&store, "a", *signal).len(), 1);
        assert_eq!(&dump(&store, "a", *signal), rows, "{signal}");
    }
    assert_eq!(store.compact_now(&config(), now()).unwrap().merges, 0);
}

/// A merge stops reading inputs once their rows hold `max_input_memory_bytes` (after two, so
/// it makes progress): the rest wait for later merges, and every row is there once throughout.
#[test]
fn a_merge_reads_inputs_only_until_their_rows_reach_its_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), settings(0), Arc::default()).unwrap();
    ingest_every_signal(&store, past_hour(), 6);
    let before: Vec<Vec<String>> = Signal::ALL.iter().map(|&s| dump(&store, "a", s)).collect();
    let tight = CompactionConfig { max_input_memory_bytes: 1, ..config() };
    let report = store.compact_now(&tight, now()).unwrap();
    assert_eq!((report.merges, report.parts_in, report.abandoned), (4, 8, 0), "two inputs a merge: {report:?}");
    for (signal, rows) in Signal::ALL.iter().zip(&before) {
        assert_eq!(parts_of(&store, "a", *signal).len(), 5, "{signal}");
        assert_eq!(&dump(&store, "a", *signal), rows, "{signal}");
    }
    // An output takes a free number up to the WAL checkpoint, and the inputs' numbers are
    // not given out again in this process: flushes of the current hour move the checkpoint
    // on between passes, as they do in a collector taking data.
    let mut passes = 1;
    loop {
        append(&store, "b", spans(1, passes, &[now()]));
        store.flush().unwrap();
        if store.compact_now(&tight, now()).unwrap().merges == 0 {
            break;
        }
        passes += 1;
        assert!(passes < 10, "compaction does not converge");
    }
    for (signal, rows) in Signal::ALL.iter().zip(&before) {
        assert_eq!(parts_of(&store, "a", *signal).len(), 1, "{signal}");
        assert_eq!(&dump(&store, "a", *signal), rows, "{signal}");
    }
}

pub(crate) fn key_file(dir: &Path) -> PathBuf {
    use base64::Engine as _;
    let path = dir.join("keys");
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    std::fs::write(&path, format!("k1 {key}\n")).unwrap();
    path
}

#[test]
fn shared_parts_merge_keeping_tenants_apart_and_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = Some(Arc::new(KeyRing::load(&key_file(dir.path())).unwrap()));
    let open = || Store::open_with_keys(&data, settings(1 << 30), Arc::default(), keys.clone()).unwrap();
    let store = open();
    let hour = past_hour();
    for f in 0..5u8 {
        let times: Vec<u64> = (0..10).map(|i| hour + (50 - f as u64 * 10 + i) * 1_000_000_000).collect();
        append(&store, "a", spans(2, f, &times));
        append(&store, "b", spans(3, f, &times));
        store.flush().unwrap();
    }
    let (a, b) = (dump(&store, "a", Signal::Traces), dump(&store, "b", Signal::Traces));
    assert_eq!((a.len(), b.len()), (50, 50));
    assert!(parts_of(&store, "a", Signal::Traces).iter().all(|p| p.name.starts_with("parts/@shared/")));

    let report = store.compact_now(&config(), now()).unwrap();
    assert_eq!((report.merges, report.parts_in), (1, 5));
    let merged = parts_of(&store, "a", Signal::Traces);
    assert_eq!(merged.len(), 1);
    assert!(merged[0].name.starts_with("parts/@shared/traces/"), "{}", merged[0].name);
    assert_eq!(
        merged[0].tenants.iter().map(|t| (t.tenant.as_str(), t.rows)).collect::<Vec<_>>(),
        [("a", 50), ("b", 50)]
    );
    // Sealed with the key ring like a flushed part.
    assert!(crypt::is_sealed(&std::fs::read(&merged[0].path).unwrap()));
    // Each tenant reads its own rows only, by scan and by trace id.
    assert_eq!(dump(&store, "a", Signal::Traces), a);
    assert_eq!(dump(&store, "b", Signal::Traces), b);
    assert!(a.iter().all(|r| r.contains("trace_id: [2,")) && b.iter().all(|r| r.contains("trace_id: [3,")));
    let mut b_trace = [7u8; 16];
    b_trace[..4].copy_from_slice(&[3, 1, 0, 0]);
    assert!(store.trace_snapshot(&tenant("a"), &b_trace).parts.is_empty());
    let snap = store.trace_snapshot(&tenant("b"), &b_trace);
    let mut found = 0;
    store
        .scan_trace_keys(&snap, &std::collections::HashSet::from([parts::trace_key(&b_trace)]), |rows| {
            found += rows.len()
        })
        .unwrap();
    assert!(found >= 1);
    drop(store);
    let store = open();
    assert_eq!(dump(&store, "a", Signal::Traces), a);
    assert_eq!(dump(&store, "b", Signal::Traces), b);
}

fn trace_parts_on_disk(data: &Path) -> Vec<String> {
    parts::list(data)
        .unwrap()
        .into_iter()
        .map(|f| match f {
            parts::Found::Part { name, .. } | parts::Found::Unknown { name } => name,
        })
        .collect()
}

/// A crash at each step of a merge (the process stops there; nothing after it runs): the
/// next start has every row exactly once, and the merge then finishes.
#[test]
fn a_crash_at_any_step_of_a_merge_loses_and_duplicates_nothing() {
    for stop in [Stop::Begun, Stop::OutputWritten, Stop::Replaced, Stop::FirstInputDeleted] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), settings(0), Arc::default()).unwrap();
        let hour = past_hour();
        for f in 0..5u8 {
            append(&store, "a", spans(2, f, &[hour + f as u64 * 1_000, hour + 5_000_000]));
            store.flush().unwrap();
        }
        let before = dump(&store, "a", Signal::Traces);
        let inputs: Vec<String> = parts_of(&store, "a", Signal::Traces).iter().map(|p| p.name.clone()).collect();
        pass_stopping(&store.shared, &store.compactor, &config(), now(), stop).unwrap();
        let on_disk = trace_parts_on_disk(dir.path());
        match stop {
            Stop::Begun => assert_eq!(on_disk, inputs),
            Stop::OutputWritten | Stop::Replaced => assert_eq!(on_disk.len(), 6, "{stop:?} {on_disk:?}"),
            Stop::FirstInputDeleted => assert_eq!(on_disk.len(), 5, "{on_disk:?}"),
        }
        // The crash: the store goes without another step (closing writes no catalog line and
        // deletes nothing of the merge's).
        drop(store);

        let store = Store::open(dir.path(), settings(0), Arc::default()).unwrap();
        let after = dump(&store, "a", Signal::Traces);
        assert_eq!(after, before, "{stop:?}");
        let parts = parts_of(&store, "a", Signal::Traces);
        let on_disk = trace_parts_on_disk(dir.path());
        match stop {
            Stop::Begun | Stop::OutputWritten => {
                assert_eq!(on_disk, inputs, "{stop:?}: the unfinished output is deleted");
                assert_eq!(parts.len(), 5);
            }
            Stop::Replaced | Stop::FirstInputDeleted => {
                assert_eq!(parts.len(), 1, "{stop:?}");
                assert_eq!(on_disk, [parts[0].name.clone()], "{stop:?}: the replaced inputs are deleted");
            }
        }
        // The catalog was rewritten without merge lines; the merge completes now if needed.
        let catalog = std::fs::read_to_string(dir.path().join("catalog.log")).unwrap();
        assert!(!catalog.contains("\"op\":\"merging\"") && !catalog.contains("\"op\":\"replace\""), "{catalog}");
        store.compact_now(&config(), now()).unwrap();
        assert_eq!(parts_of(&store, "a", Signal::Traces).len(), 1);
        assert_eq!(dump(&store, "a", Signal::Traces), before, "{stop:?}");
    }
}

/// A query holding a snapshot of the inputs still reads them after the merge; their files go
/// once it is done.
#[test]
fn queries_in_flight_keep_reading_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), settings(0), Arc::default()).unwrap();
    let hour = past_hour();
    for f in 0..4u8 {
        append(&store, "a", spans(2, f, &[hour + f as u64]));
        store.flush().unwrap();
    }
    let before = dump(&store, "a", Signal::Traces);
    let held = store.snapshot(&tenant("a"), Signal::Traces);
    assert_eq!(held.parts.len(), 4);
    assert_eq!(store.compact_now(&config(), now()).unwrap().merges, 1);
    let mut rows = Vec::new();
    store.scan(&held, |r| rows.push(r.len())).unwrap();
    assert_eq!(rows.iter().sum::<usize>(), before.len());
    assert_eq!(trace_parts_on_disk(dir.path()).len(), 5);
    drop(held);
    store.compact_now(&config(), now()).unwrap();
    assert_eq!(trace_parts_on_disk(dir.path()).len(), 1);
    assert_eq!(dump(&store, "a", Signal::Traces), before);
}

/// Retention and quarantine act on merged parts as on flushed ones.
#[test]
fn retention_and_quarantine_work_on_merged_parts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), settings(0), Arc::default()).unwrap();
    let hour = past_hour();
    for f in 0..3u8 {
        append(&store, "a", spans(2, f, &[hour + f as u64]));
        append(&store, "a", logs("web", &[hour + f as u64]));
        store.flush().unwrap();
    }
    assert_eq!(store.compact_now(&config(), now()).unwrap().merges, 2);
    // A flipped byte in the merged traces part: a checksum mismatch naming it, set aside.
    let part = Arc::clone(&parts_of(&store, "a", Signal::Traces)[0]);
    let mut bytes = std::fs::read(&part.path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&part.path, bytes).unwrap();
    let snap = store.snapshot(&tenant("a"), Signal::Traces);
    let report = store.scan(&snap, |_| {}).unwrap();
    assert!(report.warnings[0].contains(&part.name) && report.warnings[0].contains("sha256"), "{report:?}");
    assert!(parts_of(&store, "a", Signal::Traces).is_empty());
    assert!(dir.path().join("quarantine").join(&part.name).exists());
    // Retention deletes the merged logs part once its hour is past the period.
    assert_eq!(store.apply_retention(hour + 4 * 86_400 * 1_000_000_000).unwrap(), 1);
    assert!(parts_of(&store, "a", Signal::Logs).is_empty());
    assert!(trace_parts_on_disk(dir.path()).is_empty());
}

#[test]
fn merges_keep_finding_names_when_every_flush_writes_into_one_hour() {
    // Every flush writes into the same past hour, so every number up to the checkpoint is a
    // flush's: a merge's output can only take the name of an earlier merge's input.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data"), settings(1 << 30), Arc::default()).unwrap();
    let hour = past_hour();
    for round in 0..3u8 {
        for f in 0..4u8 {
            let flush = round * 4 + f;
            let times: Vec<u64> = (0..10).map(|i| hour + (u64::from(flush) * 10 + i) * 1_000_000_000).collect();
            append(&store, "a", spans(2, flush, &times));
            store.flush().unwrap();
        }
        let report = store.compact_now(&config(), now()).unwrap();
        assert_eq!(report.merges, 1, "round {round}: {report:?}");
        assert_eq!(parts_of(&store, "a", Signal::Traces).len(), 1, "round {round}");
    }
    assert_eq!(dump(&store, "a", Signal::Traces).len(), 120);
}

/// A day of ingest, 100 flushes per hour of one tenant's spans, compacted: a few parts per
/// hour. Prints parts and bytes before and after, and the merge throughput.
#[test]
fn a_simulated_day_compacts_to_at_most_two_parts_per_hour() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), settings(0), Arc::default()).unwrap();
    let day_start = (now() / HOUR - 26) * HOUR;
    let (hours, flushes, per_flush) = (24u64, 100u64, 100u64);
    for h in 0..hours {
        for f in 0..flushes {
            let base = day_start + h * HOUR + f * (HOUR / flushes);
            let times: Vec<u64> = (0..per_flush).map(|i| base + i * 1_000_000).collect();
            append(&store, "a", spans((h % 250) as u8, f as u8, &times));
            store.flush().unwrap();
        }
    }
    let before = store.shared.read().parts.clone();
    let bytes_before: u64 = before.iter().map(|p| p.size).sum();
    assert_eq!(before.len() as u64, hours * flushes);
    let count_before = traces_items(&store);

    let started = Instant::now();
    let report = store.compact_now(&config(), now()).unwrap();
    let took = started.elapsed();
    let after = store.shared.read().parts.clone();
    let bytes_after: u64 = after.iter().map(|p| p.size).sum();
    let mut per_hour: std::collections::BTreeMap<String, usize> = Default::default();
    for p in &after {
        *per_hour.entry(p.name.split('/').nth(3).unwrap().to_string()).or_default() += 1;
    }
    println!(
        "simulated day: {} parts, {} bytes before; {} parts, {} bytes after; {} merges of {} bytes in {:.2} s: {:.1} MB/s read, {:.0} rows/s",
        before.len(),
        bytes_before,
        after.len(),
        bytes_after,
        report.merges,
        report.bytes_in,
        took.as_secs_f64(),
        report.bytes_in as f64 / 1e6 / took.as_secs_f64(),
        report.rows as f64 / took.as_secs_f64(),
    );
    assert_eq!(per_hour.len() as u64, hours);
    assert!(per_hour.values().all(|&n| n <= 2), "{per_hour:?}");
    assert!(after.len() <= 48);
    assert_eq!(traces_items(&store), count_before);
    assert_eq!(count_before, hours * flushes * per_flush);
}

fn traces_items(store: &Store) -> u64 {
    store.stats(&tenant("a")).into_iter().find(|(s, _)| *s == Signal::Traces).map_or(0, |(_, s)| s.items)
}

/// A narrow time range of a compacted (time-sorted) metrics or logs part decodes only the row
/// groups it overlaps (`Store::scan_narrowed`) and finds every row in it: the rows of a full
/// scan in that range, the metric's name included though it is written on the part's first
/// row only.
#[test]
fn a_narrow_time_range_decodes_only_the_row_groups_it_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    let hour = past_hour();
    let store = Store::open(dir.path(), settings(0), Arc::default()).unwrap();
    let (flushes, per_flush, step) = (3u64, 20_000u64, 50_000u64);
    for f in 0..flushes {
        // Interleaved from flush to flush, so the merge sorts them.
        let times: Vec<u64> = (0..per_flush).map(|i| hour + (i * flushes + f) * step).collect();
        append(&store, "a", gauges("api", &times));
        append(&store, "a", logs("web", &times));
        store.flush().unwrap();
    }
    // A flush with nothing to write lets the flusher merge the hour's series segments.
    store.flush().unwrap();
    store.compact_now(&config(), now()).unwrap();
    let total = (flushes * per_flush) as usize;
    let (lo, hi) = (hour + 30_000 * step, hour + 32_000 * step);
    let time_of = |text: &str| -> u64 {
        let at = text.find("time_unix_nano: ").unwrap() + "time_unix_nano: ".len();
        text[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    for signal in [Signal::Metrics, Signal::Logs] {
        assert_eq!(parts_of(&store, "a", signal).len(), 1, "{signal}");
        let snapshot = store.snapshot(&tenant("a"), signal);
        let (mut decoded, mut in_range) = (0, Vec::new());
        let mut keep = |text: String, time: u64| {
            decoded += 1;
            if (lo..=hi).contains(&time) {
                in_range.push(text);
            }
        };
        store
            .scan_narrowed(&snapshot, &parts::Narrow { lo, hi, service: None }, |rows| match rows {
                Rows::Metrics(r) => r.iter().for_each(|x| keep(format!("{x:?}"), x.time_unix_nano)),
                Rows::Logs(r) => r.iter().for_each(|x| keep(format!("{x:?}"), x.time_unix_nano)),
                _ => {}
            })
            .unwrap();
        assert!(decoded <= 2 * columns::FRAME_ROWS && decoded < total, "{signal}: {decoded} of {total} rows decoded");
        in_range.sort();
        let all: Vec<String> =
            dump(&store, "a", signal).into_iter().filter(|t| (lo..=hi).contains(&time_of(t))).collect();
        assert_eq!(in_range.len(), 2_001, "{signal}");
        assert_eq!(in_range, all, "{signal}");
        if signal == Signal::Metrics {
            assert!(in_range.iter().all(|t| t.contains("queue_depth")), "the metric's name is read");
        }
    }
}

/// A listing narrowed by service decodes only that service's slice of a compacted metrics or
/// logs part — every row of it, none of another service — and with a time range only the
/// slice's row groups the range overlaps; a service the part does not hold reads nothing, and
/// a slice the catalog places past the part's rows is damage named by the part, never other
/// rows.
#[test]
fn a_service_decodes_only_its_slice_and_with_a_time_range_only_its_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let hour = past_hour();
    let store = Store::open(dir.path(), settings(0), Arc::default()).unwrap();
    let services = ["api", "db", "web"];
    let (flushes, per_flush, step) = (2u64, 30_000u64, 10_000u64);
    for f in 0..flushes {
        for (k, service) in services.iter().enumerate() {
            // Services interleaved in time, so a time-sorted part would mix them in every row group.
            let times: Vec<u64> = (0..per_flush).map(|i| hour + ((i * flushes + f) * 3 + k as u64) * step).collect();
            append(&store, "a", gauges(service, &times));
            append(&store, "a", logs(service, &times));
        }
        store.flush().unwrap();
    }
    store.flush().unwrap();
    store.compact_now(&config(), now()).unwrap();
    let per_service = (flushes * per_flush) as usize;
    let (lo, hi) = (hour + 60_000 * step, hour + 63_000 * step);
    for signal in [Signal::Metrics, Signal::Logs] {
        let parts = parts_of(&store, "a", signal);
        assert_eq!(parts.len(), 1, "{signal}");
        let slices: Vec<(Option<&str>, u64)> =
            parts[0].of(&tenant("a")).unwrap().slices.iter().map(|s| (s.service.as_deref(), s.rows)).collect();
        let expected: Vec<(Option<&str>, u64)> = services.iter().map(|s| (Some(*s), per_service as u64)).collect();
        assert_eq!(slices, expected, "{signal}");
        let read = |narrow: &parts::Narrow<'_>| -> Vec<(String, u64, Option<String>)> {
            let mut out = Vec::new();
            let snapshot = store.snapshot(&tenant("a"), signal);
            let report = store
                .scan_narrowed(&snapshot, narrow, |rows| match rows {
                    Rows::Metrics(r) => out.extend(r.iter().map(|x| {
                        (format!("{x:?}"), x.time_unix_nano, x.resource.service_name.as_deref().map(str::to_string))
                    })),
                    Rows::Logs(r) => out.extend(r.iter().map(|x| {
                        (format!("{x:?}"), x.time_unix_nano, x.resource.service_name.as_deref().map(str::to_string))
                    })),
                    _ => {}
                })
                .unwrap();
            assert!(report.warnings.is_empty(), "{:?}", report.warnings);
            out
        };
        let all = read(&parts::Narrow::ALL);
        assert_eq!(all.len(), services.len() * per_service, "{signal}");

        // The service alone: exactly its slice.
        let db = read(&parts::Narrow { lo: 0, hi: u64::MAX, service: Some("db") });
        assert_eq!(db.len(), per_service, "{signal}");
        let mut got: Vec<&String> = db.iter().map(|r| &r.0).collect();
        let mut want: Vec<&String> = all.iter().filter(|r| r.2.as_deref() == Some("db")).map(|r| &r.0).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{signal}");

        // The service and a time range: at most the two row groups of the slice it overlaps.
        let narrow = read(&parts::Narrow { lo, hi, service: Some("db") });
        assert!(narrow.len() <= 2 * columns::FRAME_ROWS && narrow.len() < per_service, "{signal}: {}", narrow.len());
        assert!(narrow.iter().all(|r| r.2.as_deref() == Some("db")), "{signal}");
        let mut got: Vec<&String> = narrow.iter().filter(|r| (lo..=hi).contains(&r.1)).map(|r| &r.0).collect();
        let mut want: Vec<&String> =
            all.iter().filter(|r| r.2.as_deref() == Some("db") && (lo..=hi).contains(&r.1)).map(|r| &r.0).collect();
        got.sort();
        want.sort();
        assert_eq!(got.len(), 1_000, "{signal}");
        assert_eq!(got, want, "{signal}");
        if signal == Signal::Metrics {
            assert!(narrow.iter().all(|r| r.0.contains("queue_depth")), "the metric's name is read");
        }

        // A service the part does not hold: nothing read.
        assert!(read(&parts::Narrow { lo: 0, hi: u64::MAX, service: Some("nope") }).is_empty());

        // A slice placed past the part's rows is damage, named by the part.
        let mut wrong = (*parts[0]).clone();
        let of = wrong.tenants.iter_mut().find(|t| t.tenant == tenant("a")).unwrap();
        of.slices[2].rows += 10;
        let err = parts::read_part_narrowed(
            &wrong,
            &tenant("a"),
            &parts::Narrow { lo: 0, hi: u64::MAX, service: Some("web") },
        )
        .unwrap_err();
        assert!(matches!(err, PartError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains(&wrong.name) && err.to_string().contains("past the part"), "{err}");
    }
}
