//! The start-up replay of the write-ahead log, streamed through the head in bounded memory.
//!
//! ```text
//! segment k ─ record by record ─▶ head.active ─ ≥ max_head_bytes? ─▶ freeze(k) ─▶ write_frozen
//!                                                                    (parts, catalog, checkpoint = k,
//!                                                                     segments ≤ k deleted)
//! ```
//!
//! A WAL left by a long disk-full period or a flusher that fell behind can be many times the
//! head's size; held whole in memory at start it could take the process down. So the replay
//! feeds the head segment by segment, and as soon as the head holds `max_head_bytes` at the end
//! of a segment it is written to parts by the flusher's own code (`flush::write_frozen`) before
//! the next segment is read. The checkpoint is a segment number, so these flushes happen at
//! segment boundaries: the head holds at most `max_head_bytes` plus the rows of one segment,
//! and a segment is what the log writer appended between two cuts (`wal::replay_segment_each`).
//! Within a segment each record is decoded into rows and its payload dropped before the next is
//! read. A crash during one of these flushes is the flusher's crash: the checkpoint moves only
//! after the parts and their catalog lines are durable, and parts numbered past it are deleted
//! at the next start, whose replay writes them again.
//!
//! Delta metric points are accumulated in log order as they are read, exactly as the log
//! writer's callers did, whether or not a flush happens in between: a flush moves rows to parts
//! and leaves the running totals alone.
//!
//! A flush that fails during the replay (a full disk, a read-only file system) stops the
//! replay's flushing: its block stays frozen in the head, the remaining segments are replayed
//! into memory as before this module existed, and the flusher thread retries every second once
//! the store runs (writes are refused meanwhile while the head is over twice its size). Nothing
//! acknowledged is lost and the store starts and serves what it holds, but memory is then bounded
//! by the WAL's size, not by `max_head_bytes`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::model::Rows;
use crate::model::prometheus::{DeltaAccumulator, MetadataIndex};

use super::head::Chunk;
use super::{MAX_DELTA_SERIES, MAX_METADATA_FAMILIES, OpenError, Problem, Shared, flush, wal};

/// What the replay leaves for the store it opens.
pub(super) struct Replayed {
    /// The highest segment number present (the checkpoint when there was none after it).
    pub last_seq: u64,
    /// A segment had damage: it should go (be flushed) as soon as the store runs, so the
    /// damage is reported once rather than at every start.
    pub damaged: bool,
    /// Running totals of delta metric points, as the replayed records left them.
    pub deltas: DeltaAccumulator,
    /// What the replayed OTLP metrics said of themselves.
    pub metadata: MetadataIndex,
}

/// Replays every segment after `checkpoint` into `shared`'s head (deleting the segments at or
/// before it), flushing to parts whenever the head reaches `max_head_bytes` at a segment's end.
pub(super) fn replay(shared: &Shared, checkpoint: u64) -> Result<Replayed, OpenError> {
    let io = |path: std::path::PathBuf| move |source| OpenError::Io { path, source };
    let wal = &shared.wal;
    let telemetry = &shared.telemetry;
    let limit = shared.settings.max_head_bytes;
    let mut out = Replayed {
        last_seq: checkpoint,
        damaged: false,
        deltas: DeltaAccumulator::new(MAX_DELTA_SERIES),
        metadata: MetadataIndex::new(MAX_METADATA_FAMILIES),
    };
    let started = std::time::Instant::now();
    let (mut segments, mut records, mut bytes, mut flushes, mut parts) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut peak = shared.read().head.bytes();
    let mut flushing = true;
    for seq in wal.segments().map_err(io(wal.dir().to_path_buf()))? {
        out.last_seq = out.last_seq.max(seq);
        let path = wal.segment_path(seq);
        if seq <= checkpoint {
            std::fs::remove_file(&path).map_err(io(path))?;
            continue;
        }
        bytes += std::fs::metadata(&path).map_err(io(path.clone()))?.len();
        segments += 1;
        let mut kept = 0u64;
        let scan = {
            let mut state = shared.write();
            let (deltas, metadata) = (&mut out.deltas, &mut out.metadata);
            wal.replay_segment_each(seq, |record| {
                kept += 1;
                let tenant = record.tenant;
                let rows = match record.format {
                    wal::Format::Otlp => crate::model::decode_rows(record.signal, &record.payload),
                    wal::Format::RemoteWrite => {
                        crate::model::prometheus::series_from_remote_write(&record.payload).map(Rows::Series)
                    }
                };
                drop(record.payload);
                match rows {
                    Ok(rows) => {
                        let bytes = rows.memory_bytes();
                        // Delta points are accumulated again, in log order, from the totals of
                        // this start (a restart is a counter reset to their series).
                        if let Rows::Metrics(points) = &rows {
                            metadata.record(&tenant, points);
                            if let Some(batch) = deltas.accumulate(&tenant, points) {
                                let batch = Rows::Series(batch);
                                let bytes = batch.memory_bytes();
                                state.head.active.push(Arc::new(Chunk::new(tenant.clone(), batch, bytes)));
                            }
                        }
                        state.head.active.push(Arc::new(Chunk::new(tenant, rows, bytes)));
                        peak = peak.max(state.head.bytes());
                    }
                    Err(err) => tracing::error!(segment = seq, %err, "WAL record does not decode; skipped"),
                }
                telemetry.wal_replayed_records.fetch_add(1, Relaxed);
            })
            .map_err(io(path))?
        };
        records += kept;
        if let Some(damage) = &scan.damage {
            tracing::warn!(
                segment = seq,
                %damage,
                kept,
                skipped_records = scan.skipped_records,
                skipped_bytes = scan.skipped_bytes,
                "WAL segment damaged; kept every intact record"
            );
            telemetry.wal_damaged_segments.fetch_add(1, Relaxed);
            telemetry.wal_skipped_records.fetch_add(scan.skipped_records, Relaxed);
            telemetry.wal_skipped_bytes.fetch_add(scan.skipped_bytes, Relaxed);
            out.damaged = true;
        }
        telemetry.wal_replay_head_peak_bytes.fetch_max(peak, Relaxed);
        if !flushing || shared.read().head.active.bytes < limit {
            continue;
        }
        // The head holds exactly the rows of the segments up to `seq`: freeze it as ending
        // there and write it as the flusher would, before reading the next segment.
        shared.write().head.freeze(seq);
        let written = telemetry.parts_written.load(Relaxed);
        match flush::write_frozen(shared) {
            Ok(_) => {
                flushes += 1;
                parts += telemetry.parts_written.load(Relaxed) - written;
                telemetry.wal_replay_flushes.fetch_add(1, Relaxed);
                if out.damaged {
                    // Flushed and deleted: its damage is not found again at the next start.
                    out.damaged = false;
                }
            }
            Err(err) => {
                flushing = false;
                telemetry.flush_failures.fetch_add(1, Relaxed);
                shared.set_problem(Problem::Flush, Some(err.to_string()));
                tracing::error!(
                    %err,
                    segment = seq,
                    "flush during WAL replay failed; the rest of the WAL is replayed into memory and the flusher retries"
                );
            }
        }
    }
    let head = shared.read().head.bytes();
    telemetry.head_bytes.store(shared.read().head.active.bytes, Relaxed);
    telemetry.head_items.store(shared.read().head.active.items, Relaxed);
    if segments > 0 {
        tracing::info!(
            segments,
            records,
            bytes,
            flushes,
            parts,
            head_bytes = head,
            head_peak_bytes = peak,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "write-ahead log replayed"
        );
    }
    telemetry.wal_replayed_bytes.fetch_add(bytes, Relaxed);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    use super::super::{Store, StoreSettings};
    use crate::config::Durability;
    use crate::model::Rows;
    use crate::receive::ExportRequest;
    use crate::signal::Signal;
    use crate::telemetry::Telemetry;
    use crate::tenant::Tenant;

    const SMALL_HEAD: u64 = 64 << 10;

    fn settings(max_head_bytes: u64) -> StoreSettings {
        StoreSettings {
            durability: Durability::Group,
            group_commit_interval: Duration::from_millis(1),
            flush_interval: Duration::from_secs(3600),
            max_head_bytes,
            retention: Duration::from_secs(2 * 86_400),
            retention_interval: Duration::from_secs(3600),
            min_tenant_part_bytes: 1 << 20,
            verify_parts_at_start: false,
            min_free_bytes: 0,
            span_index_cache_bytes: 64 << 20,
            trace_key_bytes: 64 << 20,
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    }

    /// `n` spans whose trace ids are the numbers `first..first + n`.
    fn request(first: u128, n: u128, at: u64) -> ExportTraceServiceRequest {
        let spans = (first..first + n)
            .map(|id| Span {
                trace_id: id.to_be_bytes().to_vec(),
                span_id: vec![7; 8],
                name: format!("GET /items/{}", id % 17),
                start_time_unix_nano: at,
                end_time_unix_nano: at + 1_000,
                attributes: vec![KeyValue {
                    key: "http.route".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue("/items/{id}".into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    /// What [`write_wal`] wrote: spans in all, and the head memory of its largest segment.
    struct Written {
        spans: u128,
        head_bytes: u64,
        largest_segment_bytes: u64,
    }

    /// Fills the WAL alone (no parts): each of `rounds` starts of a store whose head is too
    /// large to flush appends `requests` requests of `spans` spans into the segment that start
    /// created, and closes (which does not flush).
    fn write_wal(dir: &Path, rounds: usize, requests: usize, spans: u128) -> Written {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let tenant = Tenant::parse("a").unwrap();
        let at = now();
        let mut written = Written { spans: 0, head_bytes: 0, largest_segment_bytes: 0 };
        for _ in 0..rounds {
            let store = Store::open(dir, settings(1 << 40), Default::default()).unwrap();
            let mut segment = 0;
            for _ in 0..requests {
                let req = request(written.spans, spans, at);
                written.spans += spans;
                let payload = Bytes::from(req.encode_to_vec());
                let rows = req.into_rows();
                segment += rows.memory_bytes();
                rt.block_on(store.append(tenant.clone(), payload, rows)).unwrap();
            }
            written.head_bytes += segment;
            written.largest_segment_bytes = written.largest_segment_bytes.max(segment);
            store.close();
        }
        assert!(parts_on_disk(dir).is_empty(), "the writing stores flushed nothing");
        written
    }

    fn parts_on_disk(dir: &Path) -> Vec<std::path::PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "parquet") {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&dir.join("parts"), &mut out);
        out
    }

    /// Every span the store answers, head and parts, by trace id, sorted (duplicates kept).
    fn span_ids(store: &Store) -> Vec<u128> {
        let snap = store.snapshot(&Tenant::parse("a").unwrap(), Signal::Traces);
        let mut ids = Vec::new();
        let report = store
            .scan(&snap, |rows| {
                if let Rows::Spans(s) = rows {
                    ids.extend(s.iter().map(|s| u128::from_be_bytes(s.trace_id)));
                }
            })
            .unwrap();
        assert!(report.warnings.is_empty(), "{report:?}");
        ids.sort_unstable();
        ids
    }

    fn assert_each_once(store: &Store, spans: u128) {
        let ids = span_ids(store);
        assert_eq!(ids.len() as u128, spans, "spans answered");
        assert!(ids.iter().copied().eq(0..spans), "every span exactly once");
    }

    /// The WAL's segments on disk.
    fn segments(dir: &Path) -> Vec<u64> {
        super::super::wal::WalDir::open(dir.join("wal")).unwrap().segments().unwrap()
    }

    #[test]
    fn a_wal_many_times_the_head_is_replayed_through_parts_in_bounded_memory() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_wal(dir.path(), 16, 4, 25);
        assert!(
            written.head_bytes >= 8 * SMALL_HEAD,
            "the WAL holds {} bytes of rows, not 8 heads of {SMALL_HEAD}",
            written.head_bytes
        );
        assert!(written.largest_segment_bytes < SMALL_HEAD, "a segment is smaller than the head");
        assert_eq!(segments(dir.path()).len(), 16);

        let telemetry = std::sync::Arc::new(Telemetry::default());
        let store = Store::open(dir.path(), settings(SMALL_HEAD), telemetry.clone()).unwrap();
        assert_each_once(&store, written.spans);
        let peak = telemetry.wal_replay_head_peak_bytes.load(Relaxed);
        assert!(
            peak <= SMALL_HEAD + written.largest_segment_bytes,
            "the head held {peak} bytes during the replay: over {SMALL_HEAD} plus a segment of {}",
            written.largest_segment_bytes
        );
        assert!(peak * 4 < written.head_bytes, "peak {peak} of {} replayed", written.head_bytes);
        let flushes = telemetry.wal_replay_flushes.load(Relaxed);
        assert!(flushes >= 4, "{flushes} flushes during the replay");
        assert!(telemetry.parts_written.load(Relaxed) >= flushes);
        assert_eq!(telemetry.wal_replayed_records.load(Relaxed), 16 * 4);
        assert!(telemetry.wal_replayed_bytes.load(Relaxed) > 0);
        let stats = store.stats(&Tenant::parse("a").unwrap());
        let traces = &stats.iter().find(|(s, _)| *s == Signal::Traces).unwrap().1;
        assert!(traces.in_parts > 0 && traces.in_head < traces.in_parts, "{traces:?}");
        assert_eq!(traces.items as u128, written.spans);
        // Flushed segments are gone: what is left is the unflushed tail and this run's segment.
        let left = segments(dir.path());
        assert!(left.len() < 16 / 2, "segments left: {left:?}");
        store.close();

        // The next start reads parts and the short WAL tail: still each span once.
        let store = Store::open(dir.path(), settings(SMALL_HEAD), Default::default()).unwrap();
        assert_each_once(&store, written.spans);
    }

    /// Makes every checkpoint write fail after its parts and catalog lines are written — the
    /// moment a crash or a full disk would stop a flush — by putting a directory where the
    /// checkpoint's temporary file goes.
    fn block_checkpoints(dir: &Path) -> std::path::PathBuf {
        let blocker = dir.join("wal").join("checkpoint.tmp");
        std::fs::create_dir_all(&blocker).unwrap();
        blocker
    }

    #[test]
    fn a_replay_flush_that_dies_before_its_checkpoint_loses_and_duplicates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_wal(dir.path(), 12, 4, 25);
        let blocker = block_checkpoints(dir.path());
        {
            let telemetry = std::sync::Arc::new(Telemetry::default());
            let store = Store::open(dir.path(), settings(SMALL_HEAD), telemetry.clone()).unwrap();
            assert_eq!(telemetry.wal_replay_flushes.load(Relaxed), 0);
            assert!(telemetry.flush_failures.load(Relaxed) >= 1);
            assert!(!parts_on_disk(dir.path()).is_empty(), "the failed flush wrote its parts");
            // Gone without flushing: what is on disk is parts past the checkpoint, and the WAL.
            drop(store);
        }
        std::fs::remove_dir(&blocker).unwrap();
        let telemetry = std::sync::Arc::new(Telemetry::default());
        let store = Store::open(dir.path(), settings(SMALL_HEAD), telemetry.clone()).unwrap();
        assert_each_once(&store, written.spans);
        assert!(telemetry.wal_replay_flushes.load(Relaxed) >= 2, "the replay flushed again");
        store.close();
        let store = Store::open(dir.path(), settings(SMALL_HEAD), Default::default()).unwrap();
        assert_each_once(&store, written.spans);
    }

    #[test]
    fn a_store_whose_replay_cannot_flush_starts_serves_and_flushes_once_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_wal(dir.path(), 12, 4, 25);
        let blocker = block_checkpoints(dir.path());
        let telemetry = std::sync::Arc::new(Telemetry::default());
        let store = Store::open(dir.path(), settings(SMALL_HEAD), telemetry.clone()).unwrap();
        // Everything replayed into memory and answered; the store is not ready (the head is over
        // twice its size, and the flush failed).
        assert_each_once(&store, written.spans);
        assert!(store.readiness().is_err());
        assert!(telemetry.flush_failures.load(Relaxed) >= 1);
        assert_eq!(telemetry.wal_replay_flushes.load(Relaxed), 0);
        let kept = segments(dir.path());
        assert!((1..=12).all(|s| kept.contains(&s)), "every replayed segment kept: {kept:?}");

        // The disk has room again: the flusher's retry writes the head out.
        std::fs::remove_dir(&blocker).unwrap();
        let tenant = Tenant::parse("a").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let flushed = loop {
            let stats = store.stats(&tenant);
            let traces = &stats.iter().find(|(s, _)| *s == Signal::Traces).unwrap().1;
            // The flusher clears its failure once the flush has returned.
            let done = traces.in_head == 0 && store.readiness().is_ok();
            if done || std::time::Instant::now() > deadline {
                break done;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(flushed, "the flusher did not write the replayed head once it could: {:?}", store.readiness());
        assert_each_once(&store, written.spans);
        store.close();
        let store = Store::open(dir.path(), settings(SMALL_HEAD), Default::default()).unwrap();
        assert_each_once(&store, written.spans);
    }
}
