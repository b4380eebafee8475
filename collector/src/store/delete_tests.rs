//! Tenant deletion through the store: every signal of the tenant gone from its own parts, from
//! the parts it shared (written again without it), from the series segments and the tenant's
//! directories, the other tenants' rows untouched, across a restart, and a deletion that a
//! crash interrupted, or that a stop ended while it waited for the bucket, finished at the
//! next start.

use std::path::Path;
use std::sync::Arc;

use futures_util::stream::BoxStream;
use object_store::path::Path as Key;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};

use super::super::compact::tests::{append, dump, gauges, key_file, logs, past_hour, profile, settings, spans, tenant};
use super::super::crypt::KeyRing;
use super::super::*;

const SIGNALS: [Signal; 4] = [Signal::Traces, Signal::Metrics, Signal::Logs, Signal::Profiles];

/// `gone` writes every signal, its spans enough for parts of its own; `small` writes a little
/// of every signal, so its logs, metrics and profiles share parts with `gone`'s.
fn ingest(store: &Store, hour: u64, flush: u8) {
    let many: Vec<u64> = (0..200).map(|i| hour + (u64::from(flush) * 600 + i) * 1_000_000_000).collect();
    let few: Vec<u64> = many[..5].to_vec();
    append(store, "gone", spans(2, flush, &many));
    append(store, "gone", gauges("gone-api", &few));
    append(store, "gone", logs("gone-web", &few));
    append(store, "gone", profile(few[0], "gone-checkout"));
    append(store, "small", spans(3, flush, &few));
    append(store, "small", gauges("api", &few));
    append(store, "small", logs("web", &few));
    append(store, "small", profile(few[1], "checkout"));
}

fn dumps(store: &Store, tenant_id: &str) -> Vec<Vec<String>> {
    SIGNALS.iter().map(|s| dump(store, tenant_id, *s)).collect()
}

/// Files under `dir`, relative to it.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The tenant's own files beside its parts: gate history, anomaly journal, a quarantined part.
fn tenant_files(data: &Path, tenant_id: &str) {
    for file in [
        format!("gate/{tenant_id}/runs.jsonl"),
        format!("analysis/{tenant_id}/anomalies.log"),
        format!("quarantine/parts/{tenant_id}/traces/x/000001.parquet"),
    ] {
        let path = data.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "rows of the tenant").unwrap();
    }
}

#[test]
fn a_deleted_tenant_leaves_every_signal_and_every_file_and_the_others_stay() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = Some(Arc::new(KeyRing::load(&key_file(dir.path())).unwrap()));
    let open = || Store::open_with_keys(&data, settings(20_000), Arc::default(), keys.clone()).unwrap();
    let store = open();
    let hour = past_hour();
    for flush in 0..2 {
        ingest(&store, hour, flush);
        store.flush().unwrap();
    }
    // Acknowledged, still in the head and the WAL: deleted too.
    ingest(&store, hour, 2);
    tenant_files(&data, "gone");
    tenant_files(&data, "small");
    let small = dumps(&store, "small");
    let gone = dumps(&store, "gone");
    assert!(gone.iter().all(|rows| !rows.is_empty()) && small.iter().all(|rows| !rows.is_empty()));
    assert_eq!(gone[0].len(), 600);
    let own = |store: &Store| {
        store.shared.read().parts.iter().filter(|p| p.tenants.iter().all(|t| t.tenant.as_str() == "gone")).count()
    };
    let mixed = |store: &Store| store.shared.read().parts.iter().filter(|p| p.tenants.len() > 1).count();
    let (own_before, mixed_before) = (own(&store), mixed(&store));
    assert!(own_before >= 2 && mixed_before >= 3, "{own_before} own, {mixed_before} shared parts");

    let report = store.delete_tenant(&tenant("gone")).unwrap();
    // The third ingest was flushed first: its parts were deleted too.
    assert!(report.parts_deleted as usize > own_before, "{own_before} before: {report:?}");
    assert!(report.parts_rewritten as usize > mixed_before, "{mixed_before} before: {report:?}");
    assert!(report.series_segments_deleted >= 1, "{report:?}");
    assert_eq!(report.other_files_deleted, 3, "{report:?}");
    assert!(report.rows_deleted >= 600 + 15, "{report:?}");

    let check = |store: &Store| {
        for (signal, rows) in SIGNALS.iter().zip(dumps(store, "gone")) {
            assert!(rows.is_empty(), "{signal}: {} rows of the deleted tenant", rows.len());
        }
        assert_eq!(dumps(store, "small"), small, "the other tenant's rows are untouched");
        let series = store.series_snapshot(&tenant("gone"), 0, i64::MAX);
        assert!(series.segments.is_empty() && series.parts.is_empty() && series.chunks.is_empty());
        assert!(!store.series_snapshot(&tenant("small"), 0, i64::MAX).segments.is_empty());
        assert!(store.shared.read().parts.iter().all(|p| p.of(&tenant("gone")).is_none()));
        let on_disk = files(&data);
        let left: Vec<&String> = on_disk.iter().filter(|f| f.contains("gone")).collect();
        assert!(left.is_empty(), "files of the deleted tenant left: {left:?}");
        assert!(on_disk.iter().any(|f| f == "gate/small/runs.jsonl"), "{on_disk:?}");
        // The files of the shared parts written again are gone, not only out of the catalog.
        let mut live: Vec<String> = store.shared.read().parts.iter().map(|p| p.name.clone()).collect();
        live.sort();
        let parts_on_disk: Vec<String> = on_disk.iter().filter(|f| f.starts_with("parts/")).cloned().collect();
        assert_eq!(parts_on_disk, live);
        assert!(!data.join(delete::DELETING_DIR).join("gone").exists());
    };
    check(&store);
    assert_eq!(store.telemetry().tenants_deleted.load(std::sync::atomic::Ordering::Relaxed), 1);
    drop(store);
    // The shared parts' old files are gone from the disk: nothing of the tenant to find again.
    let store = open();
    check(&store);

    // A tenant deleted can write again; its new rows are kept.
    append(&store, "gone", spans(2, 9, &[hour + 1]));
    store.flush().unwrap();
    assert_eq!(dump(&store, "gone", Signal::Traces).len(), 1);
    // Deleting a tenant that has nothing deletes nothing and is not an error.
    assert_eq!(store.delete_tenant(&tenant("never")).unwrap(), delete::TenantDeletion::default());
}

#[test]
fn a_deletion_a_crash_interrupted_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let open = || Store::open(&data, settings(20_000), Arc::default()).unwrap();
    let store = open();
    let hour = past_hour();
    ingest(&store, hour, 0);
    store.flush().unwrap();
    let small = dumps(&store, "small");
    // The deletion began (its marker is durable) and stopped before deleting anything;
    // then rows arrived, acknowledged and only in the WAL.
    delete::begin(&data, &tenant("gone")).unwrap();
    append(&store, "gone", spans(2, 7, &[hour + 5, hour + 6]));
    store.close();
    drop(store);

    let store = open();
    // Everything flushed before the deletion began is gone; the rows after it are kept.
    let traces = dump(&store, "gone", Signal::Traces);
    assert_eq!(traces.len(), 2, "{traces:?}");
    for signal in [Signal::Metrics, Signal::Logs, Signal::Profiles] {
        assert!(dump(&store, "gone", signal).is_empty(), "{signal}");
    }
    assert_eq!(dumps(&store, "small"), small);
    assert!(!data.join(delete::DELETING_DIR).join("gone").exists());
    assert_eq!(store.telemetry().tenants_deleted.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// An in-memory bucket that refuses writes under `parts/` while `refuse` is set, as a bucket
/// that fails every upload; the deletion's request (under `deletions/`) is still created.
#[derive(Debug, Default)]
struct PartsRefused {
    inner: object_store::memory::InMemory,
    refuse: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for PartsRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PartsRefused({})", self.inner)
    }
}

impl PartsRefused {
    fn check(&self, location: &Key) -> object_store::Result<()> {
        if self.refuse.load(std::sync::atomic::Ordering::SeqCst) && location.as_ref().starts_with("parts/") {
            return Err(object_store::Error::Generic { store: "test", source: "writes under parts/ refused".into() });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ObjectStore for PartsRefused {
    async fn put_opts(&self, location: &Key, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Key,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Key, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Key>>,
    ) -> BoxStream<'static, object_store::Result<Key>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Key>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Key>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Key, to: &Key, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A collector asked to stop while a deletion waits for its uploader (the bucket refusing
/// every part) stops at once: the deletion gives up saying so, nothing of the tenant is
/// deleted, and the collector deletes it when it starts again and the parts go up.
#[test]
fn a_stop_ends_a_deletions_wait_for_the_bucket_and_the_next_start_deletes_the_tenant() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bucket = Arc::new(PartsRefused::default());
    bucket.refuse.store(true, SeqCst);
    let mut config = crate::config::BucketConfig::new("s3://test");
    config.refresh_interval = slo_contracts::HumanDuration(Duration::from_millis(200));
    let open = || {
        let store: Arc<dyn ObjectStore> = bucket.clone();
        Arc::new(Store::open_over_bucket(&data, settings(20_000), store, &config).unwrap())
    };
    let store = open();
    let hour = past_hour();
    ingest(&store, hour, 0);
    store.flush().unwrap();
    let (gone, small) = (dumps(&store, "gone"), dumps(&store, "small"));
    assert!(gone.iter().all(|rows| !rows.is_empty()), "every signal of gone stored: {gone:?}");
    assert!(store.bucket_status().is_some(), "the parts wait for the bucket");

    let deleting = std::thread::spawn({
        let store = Arc::clone(&store);
        move || store.delete_tenant(&tenant("gone"))
    });
    // The request is created in the bucket, then the deletion waits for the parts.
    let requested = || {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let listed = runtime.block_on(async {
            use futures_util::StreamExt;
            ObjectStore::list(&*bucket, Some(&"deletions".into())).collect::<Vec<_>>().await
        });
        !listed.is_empty()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !requested() {
        assert!(Instant::now() < deadline, "no deletion request in the bucket");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    store.close();
    let err = deleting.join().unwrap().expect_err("the deletion cannot finish while the parts wait").to_string();
    assert!(err.contains("is stopping; nothing was deleted here"), "{err}");
    assert!(err.contains("\"gone\""), "{err}");
    drop(store);
    // Nothing was deleted (read without the bucket, which hides a tenant being deleted).
    let local = Store::open(&data, settings(20_000), Arc::default()).unwrap();
    assert_eq!(dumps(&local, "gone"), gone);
    assert!(!data.join(delete::DELETING_DIR).join("gone").exists());
    local.close();
    drop(local);

    // The next start, with the bucket taking parts again, deletes it.
    bucket.refuse.store(false, SeqCst);
    let store = open();
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.telemetry().tenants_deleted.load(SeqCst) == 0 {
        assert!(Instant::now() < deadline, "gone not deleted at the next start");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dumps(&store, "gone").iter().all(Vec::is_empty), "{:?}", dumps(&store, "gone"));
    assert_eq!(dumps(&store, "small"), small);
    store.close();
}
