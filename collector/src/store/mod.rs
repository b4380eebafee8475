//! Durable storage: write-ahead log → in-memory head → Parquet parts, with retention.
//!
//! ```text
//! request ─▶ log writer thread ─ append + fsync (group commit) ─▶ head.active ─▶ ack
//!                 │ cut: seal segment N, freeze head block as "ends at N"
//!                 ▼
//!            flusher thread ─ write parts ─▶ checkpoint = N ─▶ delete segments ≤ N
//! ```
//!
//! One thread owns the log and inserts into the head in log order, right after the records
//! are durable; a cut happens between two batches on that same thread. So a head block always
//! holds exactly the rows of the segments it is tagged with, and deleting those segments
//! after its parts are durable can neither lose nor duplicate a row.
//!
//! Queries see the head (active and frozen blocks) and the parts catalog together, taken
//! under one lock, so a block moving from the head to parts is seen exactly once.

pub mod bucket;
pub mod catalog;
pub mod crypt;
pub mod delete;
pub mod error;
pub mod head;
pub mod parts;
pub mod series;
pub mod span_index;
pub mod trace_keys;
pub mod wal;

mod columns;
pub mod compact;
mod flush;
#[cfg(test)]
mod integrity_tests;
mod replay;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use crate::config::{Durability, StorageConfig};
use crate::error::IngestError;
use crate::model::Rows;
use crate::signal::Signal;
use crate::telemetry::Telemetry;
use crate::tenant::Tenant;

use catalog::Catalog;
pub use error::{NotReady, StoreError};
use head::{Chunk, Head};
use parts::{PartError, PartMeta};

/// Failures opening the store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Another process holds the data directory's lock: two writers would corrupt it.
    #[error(
        "data directory {path} is in use by another slo-gate process (it holds a lock on the directory); stop it, or query it over its API"
    )]
    Locked { path: PathBuf },
    #[error("part catalog in {path}: {source}")]
    Catalog { path: PathBuf, source: std::io::Error },
    /// `[storage.encryption]`'s key file cannot be used.
    #[error(transparent)]
    Keys(#[from] crypt::KeyFileError),
    /// `[storage.bucket]` cannot be used.
    #[error(transparent)]
    Bucket(#[from] bucket::BucketError),
}

/// Storage settings the store needs.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub durability: Durability,
    pub group_commit_interval: Duration,
    pub flush_interval: Duration,
    pub max_head_bytes: u64,
    pub retention: Duration,
    pub retention_interval: Duration,
    pub min_tenant_part_bytes: u64,
    pub verify_parts_at_start: bool,
    pub min_free_bytes: u64,
    /// The most memory the span indexes kept for trace lookups and searches hold.
    pub span_index_cache_bytes: u64,
    /// The most memory the traces parts' trace keys hold (`trace_keys`).
    pub trace_key_bytes: u64,
}

impl StoreSettings {
    pub fn new(storage: &StorageConfig, retention: Duration) -> StoreSettings {
        StoreSettings {
            durability: storage.durability,
            group_commit_interval: storage.group_commit_interval.0,
            flush_interval: storage.flush_interval.0,
            max_head_bytes: storage.max_head_bytes,
            retention,
            retention_interval: storage.retention_interval.0,
            min_tenant_part_bytes: storage.min_tenant_part_bytes,
            verify_parts_at_start: storage.verify_parts_at_start,
            min_free_bytes: storage.min_free_bytes,
            span_index_cache_bytes: storage.span_index_cache_bytes,
            trace_key_bytes: storage.trace_key_bytes,
        }
    }
}

/// What queries see and the writer and flusher change.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub head: Head,
    pub parts: Vec<Arc<PartMeta>>,
    /// Parts other collectors committed to the shared bucket (`bucket`), read like `parts`
    /// but never merged, expired or deleted by this one.
    pub remote: Vec<Arc<PartMeta>>,
    /// Parts of the bucket left out of `remote` because they are past retention: the
    /// directory's compactor removes them from the bucket (`bucket::compact`).
    pub remote_expired: Vec<Arc<PartMeta>>,
    /// The metric series store's segments (`series`), by tenant, hour and first flush.
    pub series: Vec<Arc<series::SegmentMeta>>,
    /// Series segments other collectors committed to the shared bucket, read like `series`;
    /// each covers its own writer's parts only.
    pub remote_series: Vec<Arc<series::SegmentMeta>>,
    /// Segments of the bucket past retention, left out of `remote_series`: the tenant's
    /// compactor removes them from the bucket.
    pub remote_series_expired: Vec<Arc<series::SegmentMeta>>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub state: RwLock<State>,
    pub settings: StoreSettings,
    pub data_dir: PathBuf,
    pub catalog: Catalog,
    pub wal: wal::WalDir,
    pub telemetry: Arc<Telemetry>,
    /// Set by [`Store::close`]; background passes stop early.
    pub closing: std::sync::atomic::AtomicBool,
    /// Set by [`Store::begin_stopping`] as shutdown begins (and by [`Store::close`], before its
    /// last flush): waits that only a running collector finishes (a deletion's wait for the
    /// uploader) give up, so neither the requests in progress nor that flush wait for them.
    pub stopping: std::sync::atomic::AtomicBool,
    /// The last failure of each kind, cleared by the next success (readiness).
    pub problems: std::sync::Mutex<[Option<String>; 2]>,
    /// Search indexes of traces parts, kept after a search first reads them.
    pub span_indexes: span_index::Cache,
    /// Indexes of series segments, kept after a query first reads them.
    pub series_indexes: series::IndexCache,
    /// `[storage.encryption]`: new parts are sealed with its current key, encrypted parts
    /// opened with the key they name.
    pub keys: Option<Arc<crypt::KeyRing>>,
    /// Parts already logged as encrypted with a key the key file lacks (logged once each).
    pub locked: std::sync::Mutex<std::collections::HashSet<String>>,
    /// `[storage.bucket]`: where parts are shared with other collectors.
    pub bucket: Option<Arc<bucket::Bucket>>,
    /// What forgets a deleted tenant's state held outside the store's files (running totals,
    /// span metrics, analysis), run after every deletion however it came: an admin request
    /// to this collector, or one to another that this collector found in the bucket.
    pub on_deleted: ForgetHooks,
}

/// Forgets what a deleted tenant left in memory; an error is a sentence for the answer.
pub type TenantForget = Box<dyn Fn(&Tenant) -> Result<(), String> + Send + Sync>;

/// The [`TenantForget`] hooks of a store.
#[derive(Default)]
pub(crate) struct ForgetHooks(std::sync::Mutex<Vec<TenantForget>>);

impl ForgetHooks {
    fn push(&self, forget: TenantForget) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(forget);
    }
}

impl std::fmt::Debug for ForgetHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ForgetHooks({})", self.0.lock().unwrap_or_else(|e| e.into_inner()).len())
    }
}

/// What can keep the store from taking data.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Problem {
    Wal = 0,
    Flush = 1,
}

impl Shared {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the traces parts' trace keys within `trace_key_bytes` (`trace_keys`), after parts
    /// were added and their catalog entries written. Filters are built outside the store's
    /// lock, over a copy of the part list.
    pub fn hold_trace_keys(&self) {
        let parts = self.read().parts.clone();
        let held = trace_keys::enforce(&parts, self.settings.trace_key_bytes);
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        self.telemetry.trace_key_bytes.store(held.bytes, relaxed);
        self.telemetry.trace_keys_released_parts.store(held.released_parts, relaxed);
    }

    /// Runs every [`Shared::on_deleted`] hook for `tenant`; returns what could not be forgotten.
    pub fn forget_tenant(&self, tenant: &Tenant) -> Vec<String> {
        let hooks = self.on_deleted.0.lock().unwrap_or_else(|e| e.into_inner());
        hooks.iter().filter_map(|forget| forget(tenant).err()).collect()
    }

    /// Wakes the bucket uploader (after new parts, a merge or retention).
    pub fn nudge_bucket(&self) {
        if let Some(b) = &self.bucket {
            b.nudge();
        }
    }

    pub fn set_problem(&self, which: Problem, problem: Option<String>) {
        self.problems.lock().unwrap_or_else(|e| e.into_inner())[which as usize] = problem;
    }

    /// Takes a damaged part out of the store: out of the catalog, its file moved to the
    /// quarantine directory, counted and logged once (by whichever caller finds it first).
    /// Returns the warning to put in answers that would have read it.
    pub fn quarantine(&self, part: &Arc<PartMeta>, err: &PartError) -> String {
        // Whether this call took it out (the first to find the damage).
        let take_out = |list: &mut Vec<Arc<PartMeta>>| {
            let before = list.len();
            list.retain(|p| !Arc::ptr_eq(p, part));
            list.len() < before
        };
        if let Some(remote) = &part.remote {
            // Another collector's part: set aside here, its object left to its writer.
            let first = take_out(&mut self.write().remote);
            self.span_indexes.forget(&part.name);
            remote.bucket.quarantine(part);
            if first {
                self.telemetry.parts_quarantined.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(part = %part.name, %err, "damaged part in the bucket left out; the rest of the store is served");
            }
            return format!(
                "{err} (an object of the shared bucket); it was left out and its data is missing from this answer"
            );
        }
        let first = take_out(&mut self.write().parts);
        self.span_indexes.forget(&part.name);
        if first {
            self.telemetry.parts_quarantined.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(part = %part.name, %err, "damaged part set aside; the rest of the store is served");
            if let Err(e) = catalog::quarantine(&self.data_dir, &part.name) {
                tracing::error!(part = %part.name, %e, "cannot move the damaged part aside");
            }
            if let Err(e) = self.catalog.remove(&part.name) {
                tracing::error!(part = %part.name, %e, "cannot record the damaged part in the catalog");
            }
        }
        format!("{err}; it was set aside and its data is missing from this answer")
    }

    /// A part that cannot be decrypted with the configured keys: not damaged, so it stays in
    /// the store and the catalog (it reads again once its key is back in the key file); logged
    /// once. Returns the warning for answers that would have read it.
    pub fn locked(&self, part: &PartMeta, err: &PartError) -> String {
        let first = self.locked.lock().unwrap_or_else(|e| e.into_inner()).insert(part.name.clone());
        if first {
            tracing::error!(part = %part.name, %err, "part encrypted with a key the key file does not hold");
        }
        format!("{err}; its data is missing from this answer")
    }
}

/// The warning for another collector's part that could not be fetched from the bucket.
fn unavailable(err: &PartError) -> String {
    format!("{err}; its data is missing from this answer")
}

/// The storage engine of one collector process.
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    writer: SyncSender<writer::Op>,
    flusher: SyncSender<flush::Request>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// The data directory, opened and exclusively locked until [`Store::close`].
    lock: std::sync::Mutex<Option<std::fs::File>>,
    /// Running totals of delta metric points, for their cumulative Prometheus series.
    deltas: Arc<std::sync::Mutex<crate::model::prometheus::DeltaAccumulator>>,
    /// What the OTLP metrics said of themselves, for `/api/v1/metadata`.
    metadata: Arc<std::sync::Mutex<crate::model::prometheus::MetadataIndex>>,
    /// Parts compaction (`compact`): one merge at a time, by its thread or [`Store::compact_now`].
    compactor: Arc<compact::Compactor>,
}

/// Most metric families whose metadata [`Store::metric_metadata`] keeps, over all tenants.
pub const MAX_METADATA_FAMILIES: usize = 100_000;

/// Most series whose delta points [`Store::append_sized`] accumulates at once.
pub const MAX_DELTA_SERIES: usize = 1_000_000;

/// The rows of one tenant and signal visible at one moment: head chunks and part files.
#[derive(Debug)]
pub struct Snapshot {
    pub tenant: Tenant,
    pub chunks: Vec<Arc<Chunk>>,
    pub parts: Vec<Arc<PartMeta>>,
}

/// What [`Store::series_snapshot`] gives a PromQL selection.
#[derive(Debug)]
pub struct SeriesSnapshot {
    pub tenant: Tenant,
    pub chunks: Vec<Arc<Chunk>>,
    pub segments: Vec<Arc<series::SegmentMeta>>,
    pub parts: Vec<Arc<PartMeta>>,
}

/// Unix milliseconds as unix nanoseconds (times before 1970 as 0).
pub fn ms_to_ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

/// What [`Store::scan_spans_where`] shows of a span before building it.
#[derive(Debug, Clone, Copy)]
pub struct SpanProbe<'a> {
    /// `None` where the scan has not read it.
    pub trace_id: Option<[u8; 16]>,
    pub service_name: Option<&'a str>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

/// What a scan could not read: one warning per damaged part, for the answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub warnings: Vec<String>,
}

/// Items, time range and services of one tenant's signal.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SignalStats {
    pub items: u64,
    pub oldest_unix_nano: Option<u64>,
    pub newest_unix_nano: Option<u64>,
    pub in_head: u64,
    pub in_parts: u64,
    pub parts: u64,
}

const WRITER_QUEUE: usize = 4096;

/// Takes the exclusive lock on the data directory: an advisory `flock` on the directory
/// itself, held by the process and released when it exits, however it exits. A second
/// collector or `slo-gate check --data-dir` on a directory in use fails instead of corrupting
/// the WAL. Locking the directory rather than a file in it means no file can be deleted to
/// defeat the lock (a `LOCK` file, once used for this, could be removed while its owner ran,
/// and a second process then locked a new file of the same name).
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, OpenError> {
    let dir = std::fs::File::open(data_dir).map_err(|source| OpenError::Io { path: data_dir.to_path_buf(), source })?;
    match dir.try_lock() {
        Ok(()) => Ok(dir),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::Locked { path: data_dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(source)) => Err(OpenError::Io { path: data_dir.to_path_buf(), source }),
    }
}

/// The spans [`Store::search_part`] reads first: what a search for the newest few traces
/// needs of a part; each later batch is four times larger, up to a row group.
const FIRST_SEARCH_BATCH: usize = 1024;

impl Store {
    /// Opens (or creates) the store under `data_dir`: deletes parts of unfinished flushes,
    /// loads the parts catalog, replays the WAL into the head (writing it to parts whenever it
    /// reaches `max_head_bytes`, so a WAL larger than memory replays: `replay`), and starts the
    /// log writer and flusher threads.
    pub fn open(data_dir: &Path, settings: StoreSettings, telemetry: Arc<Telemetry>) -> Result<Store, OpenError> {
        Store::open_with_keys(data_dir, settings, telemetry, None)
    }

    /// [`Store::open`] with `[storage.encryption]` (`None`: off): its key file is read now (an
    /// error names the file and line), new parts are sealed with its last key, and parts of
    /// any of its keys are read.
    pub fn open_encrypted(
        data_dir: &Path,
        settings: StoreSettings,
        telemetry: Arc<Telemetry>,
        encryption: Option<&crate::config::EncryptionConfig>,
    ) -> Result<Store, OpenError> {
        let keys = match encryption {
            Some(e) => Some(Arc::new(crypt::KeyRing::load(&e.key_file)?)),
            None => None,
        };
        Store::open_with_keys(data_dir, settings, telemetry, keys)
    }

    /// [`Store::open`] with a key ring already read.
    pub fn open_with_keys(
        data_dir: &Path,
        settings: StoreSettings,
        telemetry: Arc<Telemetry>,
        keys: Option<Arc<crypt::KeyRing>>,
    ) -> Result<Store, OpenError> {
        Store::open_inner(data_dir, settings, telemetry, keys, |_: &Path, _| Ok(None))
    }

    /// [`Store::open`] as `[storage]` configures it: with its encryption and its shared
    /// bucket, which is checked before anything else is opened (an unreachable bucket, refused
    /// credentials or a store without conditional writes stop the start with an error naming
    /// the bucket), and whose manifests are listed once before the store answers.
    pub fn open_configured(
        data_dir: &Path,
        settings: StoreSettings,
        telemetry: Arc<Telemetry>,
        storage: &StorageConfig,
    ) -> Result<Store, OpenError> {
        let keys = match &storage.encryption {
            Some(e) => Some(Arc::new(crypt::KeyRing::load(&e.key_file)?)),
            None => None,
        };
        let bucket = |data_dir: &Path, keys: Option<Arc<crypt::KeyRing>>| -> Result<_, OpenError> {
            match &storage.bucket {
                Some(config) => Ok(Some(bucket::Bucket::open(config, data_dir, keys)?)),
                None => Ok(None),
            }
        };
        Store::open_inner(data_dir, settings, telemetry, keys, bucket)
    }

    /// Test builds: [`Store::open`] with a shared bucket over `store`, an object store the test
    /// made (one that fails on purpose), configured otherwise by `config`.
    #[cfg(test)]
    pub(crate) fn open_over_bucket(
        data_dir: &Path,
        settings: StoreSettings,
        store: Arc<dyn object_store::ObjectStore>,
        config: &crate::config::BucketConfig,
    ) -> Result<Store, OpenError> {
        let bucket = |data_dir: &Path, keys: Option<Arc<crypt::KeyRing>>| -> Result<_, OpenError> {
            Ok(Some(bucket::Bucket::over(store, String::new(), "test".into(), config, data_dir, keys)?))
        };
        Store::open_inner(data_dir, settings, Arc::default(), None, bucket)
    }

    fn open_inner(
        data_dir: &Path,
        settings: StoreSettings,
        telemetry: Arc<Telemetry>,
        keys: Option<Arc<crypt::KeyRing>>,
        // The shared bucket, if any: opened once the data directory is locked.
        open_bucket: impl FnOnce(&Path, Option<Arc<crypt::KeyRing>>) -> Result<Option<Arc<bucket::Bucket>>, OpenError>,
    ) -> Result<Store, OpenError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        let lock = lock_data_dir(data_dir)?;
        let bucket = open_bucket(data_dir, keys.clone())?;
        let wal_dir = data_dir.join("wal");
        let wal = wal::WalDir::open(wal_dir.clone()).map_err(io(&wal_dir))?;
        let checkpoint = wal.checkpoint().map_err(io(&wal_dir))?;

        let (catalog, loaded) = Catalog::load(data_dir, checkpoint, keys.as_ref())
            .map_err(|source| OpenError::Catalog { path: data_dir.to_path_buf(), source })?;
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        for damage in &loaded.damage {
            tracing::error!(part = %damage.name, what = %damage.what, "damaged or unknown file in the data directory");
            telemetry.parts_quarantined.fetch_add(1, relaxed);
        }
        for locked in &loaded.locked {
            tracing::error!(part = %locked.name, what = %locked.what, "encrypted part without a catalog entry left out");
        }
        if loaded.bad_lines > 0 {
            tracing::warn!(
                lines = loaded.bad_lines,
                "part catalog lines failed their checksum; their parts were re-read"
            );
        }
        telemetry.parts_adopted.fetch_add(loaded.adopted, relaxed);
        let series_dir = data_dir.join(series::SERIES_DIR);
        let segments = series::load(data_dir, checkpoint).map_err(io(&series_dir))?;
        let state =
            State { parts: loaded.parts.into_iter().map(Arc::new).collect(), series: segments, ..State::default() };

        let span_indexes =
            span_index::Cache::new(usize::try_from(settings.span_index_cache_bytes).unwrap_or(usize::MAX));
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            settings,
            data_dir: data_dir.to_path_buf(),
            catalog,
            wal,
            telemetry,
            closing: Default::default(),
            stopping: Default::default(),
            problems: Default::default(),
            span_indexes,
            series_indexes: Default::default(),
            keys,
            locked: Default::default(),
            bucket: bucket.clone(),
            on_deleted: ForgetHooks::default(),
        });
        shared.hold_trace_keys();
        // A deletion a crash interrupted is finished before the WAL is replayed: the parts
        // on disk were all flushed before it began (`delete`).
        let compactor: Arc<compact::Compactor> = Arc::default();
        for tenant in delete::unfinished(data_dir) {
            tracing::warn!(%tenant, "finishing the deletion of a tenant that a stop interrupted");
            if let Err(err) = delete::run(&shared, &compactor, &tenant) {
                tracing::error!(%tenant, %err, "cannot finish deleting the tenant; repeat the deletion");
            }
        }
        // Other collectors' parts are listed before the store answers, so a restarted or new
        // instance answers from everything committed.
        let mut remotes = bucket::Remotes::default();
        if let Some(b) = &bucket {
            // A data directory that holds nothing yet has nothing to delete for the deletion
            // requests made before it: they are recorded as applied, not applied to what it
            // takes from now on.
            let empty = {
                let state = shared.read();
                state.parts.is_empty() && state.series.is_empty()
            } && shared.wal.segments().is_ok_and(|s| s.iter().all(|&q| q <= checkpoint));
            remotes.settle_deletions = empty;
            if empty {
                b.refuse_reused_writer(data_dir)?;
            }
            bucket::sync_pass(&shared, b, &mut remotes)?;
        }
        // Replayed before the threads start, flushing as it goes (`replay`), so the head holds
        // about `max_head_bytes` whatever the size of the log.
        let replay::Replayed { last_seq, damaged: wal_damaged, deltas, metadata } =
            replay::replay(&shared, checkpoint)?;
        let (deltas, metadata) = (Arc::new(std::sync::Mutex::new(deltas)), Arc::new(std::sync::Mutex::new(metadata)));
        {
            // Before the sync thread starts: it applies deletions asked of other collectors.
            let (deltas, metadata) = (Arc::clone(&deltas), Arc::clone(&metadata));
            shared.on_deleted.push(Box::new(move |tenant| {
                deltas.lock().unwrap_or_else(|e| e.into_inner()).forget(tenant);
                metadata.lock().unwrap_or_else(|e| e.into_inner()).forget(tenant);
                Ok(())
            }));
        }
        let wal = &shared.wal;
        // A new segment for this run; on a disk too full for one, the newest replayed segment
        // takes the appends (its rows are in the head like the new ones, so a cut still seals
        // exactly the rows it holds), and the collector starts and serves what it has.
        let segment = match wal.create_segment(last_seq + 1) {
            Ok(segment) => segment,
            Err(err) if last_seq > checkpoint && wal.segments().is_ok_and(|s| s.contains(&last_seq)) => {
                tracing::warn!(%err, segment = last_seq, "cannot create a WAL segment; appending to the last one");
                let _ = std::fs::remove_file(wal.segment_path(last_seq + 1));
                wal.reopen_segment(last_seq).map_err(io(&wal_dir))?
            }
            Err(err) => return Err(io(&wal_dir)(err)),
        };

        let (writer_tx, writer_rx) = mpsc::sync_channel(WRITER_QUEUE);
        let (flush_tx, flush_rx) = mpsc::sync_channel(16);
        let writer_thread = {
            let shared = Arc::clone(&shared);
            let flush_tx = flush_tx.clone();
            std::thread::Builder::new()
                .name("slo-gate-wal".into())
                .spawn(move || writer::run(shared, segment, writer_rx, flush_tx))
                .map_err(io(data_dir))?
        };
        let flush_thread = {
            let (shared, compactor) = (Arc::clone(&shared), Arc::clone(&compactor));
            let writer_tx = writer_tx.clone();
            std::thread::Builder::new()
                .name("slo-gate-flush".into())
                .spawn(move || flush::run(shared, compactor, writer_tx, flush_rx))
                .map_err(io(data_dir))?
        };
        // A large replayed head is flushed at once rather than after the first interval, so
        // that the receivers do not refuse data meanwhile.
        // After damage inside a segment, the segment goes as soon as its intact records are
        // in parts, so the damage is reported once rather than at every start.
        // A block left frozen by a replay flush that failed is retried the same way.
        let behind = {
            let state = shared.read();
            !state.head.frozen.is_empty() || state.head.active.bytes >= shared.settings.max_head_bytes
        };
        if wal_damaged || behind {
            let _ = flush_tx.try_send(flush::Request::Full);
        }
        // Every part's checksum is verified once after start-up, in the background, so damage
        // is found and reported even in data nobody queries; then the traces parts are
        // indexed, newest first, while the span-index cache has room.
        let verify_thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("slo-gate-verify".into())
                .spawn(move || {
                    verify_all(&shared);
                    let mut traces: Vec<Arc<PartMeta>> =
                        shared.read().parts.iter().filter(|p| p.signal == Signal::Traces).cloned().collect();
                    traces.sort_by_key(|p| std::cmp::Reverse(p.max_time()));
                    flush::index_traces_parts(&shared, &traces);
                })
                .map_err(io(data_dir))?
        };
        let mut threads = vec![writer_thread, flush_thread, verify_thread];
        if let Some(b) = &bucket {
            let (s, b1) = (Arc::clone(&shared), Arc::clone(b));
            threads.push(
                std::thread::Builder::new()
                    .name("slo-gate-upload".into())
                    .spawn(move || bucket::upload_loop(s, b1))
                    .map_err(io(data_dir))?,
            );
            let (s, b2) = (Arc::clone(&shared), Arc::clone(b));
            let mut remotes = remotes;
            remotes.flusher = Some(flush_tx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("slo-gate-bucket-sync".into())
                    .spawn(move || bucket::sync_loop(s, b2, remotes))
                    .map_err(io(data_dir))?,
            );
        }
        Ok(Store {
            shared,
            writer: writer_tx,
            flusher: flush_tx,
            threads: std::sync::Mutex::new(threads),
            lock: std::sync::Mutex::new(Some(lock)),
            deltas,
            metadata,
            compactor,
        })
    }

    /// Refuses new data while the head holds twice its flush size (the flusher is behind or
    /// failing): memory stays bounded and clients back off and retry.
    pub fn check_capacity(&self) -> Result<(), IngestError> {
        let head_bytes = self.shared.read().head.bytes();
        let limit = self.shared.settings.max_head_bytes.saturating_mul(2);
        if head_bytes > limit {
            return Err(IngestError::Overloaded(format!(
                "{head_bytes} bytes wait to be written to parts (limit {limit})"
            )));
        }
        Ok(())
    }

    /// What readiness adds while the store takes data: parts waiting for the shared bucket
    /// and why (`None` without a bucket, or when everything is uploaded).
    pub fn bucket_status(&self) -> Option<String> {
        self.shared.bucket.as_ref().and_then(|b| b.status())
    }

    /// Whether the store can take data now, and if not, why: the write-ahead log's last write
    /// failed, the last flush failed, the head is so far behind that writes are refused, or the
    /// data directory's file system is read-only or has less than `min_free_bytes` left.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if let Err(IngestError::Overloaded(why)) = self.check_capacity() {
            return Err(NotReady::FlushBehind(why));
        }
        let problems = self.shared.problems.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(p) = problems.into_iter().flatten().next() {
            return Err(NotReady::LastWriteFailed(p));
        }
        match nix::sys::statvfs::statvfs(&self.shared.data_dir) {
            Ok(fs) => {
                if fs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
                    return Err(NotReady::ReadOnly);
                }
                // `fsblkcnt_t` and `c_ulong`: u64 on the 64-bit targets we build for.
                #[allow(clippy::unnecessary_cast)]
                let free = (fs.blocks_available() as u64).saturating_mul(fs.fragment_size() as u64);
                let min = self.shared.settings.min_free_bytes;
                if free < min {
                    return Err(NotReady::DiskFull { free, min });
                }
                Ok(())
            }
            Err(err) => Err(NotReady::FileSystem(err.to_string())),
        }
    }

    /// Makes one request's data durable and visible; returns once it may be acknowledged.
    /// `payload` is the request's OTLP protobuf, which the write-ahead log keeps.
    pub async fn append(&self, tenant: Tenant, payload: Bytes, rows: Rows) -> Result<(), IngestError> {
        let bytes = rows.memory_bytes();
        self.append_sized(tenant, wal::Format::Otlp, payload, rows, bytes).await
    }

    /// [`Store::append`] of a payload in `format`, for rows whose [`Rows::memory_bytes`] the
    /// caller has measured.
    pub async fn append_sized(
        &self,
        tenant: Tenant,
        format: wal::Format,
        payload: Bytes,
        rows: Rows,
        bytes: u64,
    ) -> Result<(), IngestError> {
        // Delta metric points also become the cumulative series Prometheus reads. (A write
        // that fails after this has advanced the totals; its retry, at the same times, is then
        // dropped from the accumulation, so each delta is counted once.)
        let accumulated = match &rows {
            Rows::Metrics(points) => {
                self.metadata.lock().unwrap_or_else(|e| e.into_inner()).record(&tenant, points);
                self.deltas.lock().unwrap_or_else(|e| e.into_inner()).accumulate(&tenant, points)
            }
            _ => None,
        };
        let also = accumulated.map(|batch| {
            let batch = Rows::Series(batch);
            let bytes = batch.memory_bytes();
            Arc::new(Chunk::new(tenant.clone(), batch, bytes))
        });
        let chunk = Arc::new(Chunk::new(tenant.clone(), rows, bytes));
        let (done, wait) = tokio::sync::oneshot::channel();
        let op = writer::Op::Append { tenant, signal: chunk.rows.signal(), format, payload, chunk, also, done };
        match self.writer.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(IngestError::Overloaded("write-ahead log queue is full".into()));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(IngestError::Storage("write-ahead log writer has stopped".into()));
            }
        }
        wait.await.map_err(|_| IngestError::Storage("write-ahead log writer has stopped".into()))?
    }

    /// The metadata of a tenant's OTLP metrics (`model::prometheus::MetadataIndex::get`).
    pub fn metric_metadata(
        &self,
        tenant: &Tenant,
        metric: Option<&str>,
        limit: Option<usize>,
    ) -> std::collections::BTreeMap<String, Vec<crate::model::prometheus::Metadata>> {
        self.metadata.lock().unwrap_or_else(|e| e.into_inner()).get(tenant, metric, limit)
    }

    /// Writes the whole head to parts now and waits for it (tests, shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.flusher.send(flush::Request::Now(tx)).map_err(|_| StoreError::Stopped("flusher"))?;
        rx.recv().map_err(|_| StoreError::Stopped("flusher"))?
    }

    /// Deletes every row of `tenant` acknowledged before the call, with its series segments,
    /// gate history and anomaly journal (`delete`); rows that arrive meanwhile are kept. Runs
    /// on the flusher thread, after a flush, and answers when the files are gone (with a shared
    /// bucket, but for the shared parts committed there, which its compactor writes again).
    pub fn delete_tenant(&self, tenant: &Tenant) -> Result<delete::TenantDeletion, StoreError> {
        // With a shared bucket, the request there comes first: every other collector then
        // leaves the tenant out of its reads and deletes it from its own data directory
        // (`bucket::deletions`). This one applies it at once.
        let request = match &self.shared.bucket {
            Some(bucket) => {
                let name = bucket::deletions::request(bucket, tenant)
                    .map_err(|e| StoreError::Bucket(format!("{}; nothing was deleted", bucket.error(e.to_string()))))?;
                let stem = name.trim_end_matches(".json").to_string();
                bucket::deletions::hide(bucket, &stem, tenant);
                // The sync thread leaves it to this call.
                bucket.applied.lock().unwrap_or_else(|e| e.into_inner()).insert(stem.clone());
                Some((Arc::clone(bucket), name, stem))
            }
            None => None,
        };
        let mut report = match flush::delete_tenant(&self.flusher, tenant) {
            Ok(report) => report,
            Err(e) => {
                if let Some((bucket, _, stem)) = &request {
                    // The sync thread applies it at its next pass.
                    bucket.applied.lock().unwrap_or_else(|e| e.into_inner()).remove(stem);
                }
                return Err(e);
            }
        };
        if let Some((bucket, name, stem)) = request {
            if let Err(e) = bucket::deletions::record_applied(&bucket, &self.shared.data_dir, &stem) {
                tracing::error!(request = %stem, %e, "cannot record a tenant deletion as applied; applied again");
            }
            report.bucket_request = Some(name);
        }
        report.warnings = self.shared.forget_tenant(tenant);
        Ok(report)
    }

    /// Adds a hook run after every deletion of a tenant, however it came (an admin request,
    /// or one to another collector found in the bucket).
    pub fn on_tenant_deleted(&self, forget: TenantForget) {
        self.shared.on_deleted.push(forget);
    }

    /// Runs retention now (tests).
    pub fn apply_retention(&self, now_unix_nano: u64) -> Result<usize, StoreError> {
        flush::apply_retention(&self.shared, now_unix_nano)
    }

    pub fn snapshot(&self, tenant: &Tenant, signal: Signal) -> Snapshot {
        let hides = self.hides(self.hidden(), tenant);
        let state = self.shared.read();
        Snapshot {
            tenant: tenant.clone(),
            chunks: state.head.chunks(tenant, signal),
            parts: state
                .parts
                .iter()
                .map(|p| (p, true))
                .chain(state.remote.iter().map(|p| (p, false)))
                .filter(|(p, own)| p.signal == signal && p.of(tenant).is_some() && !hides(p, *own))
                .map(|(p, _)| Arc::clone(p))
                .collect(),
        }
    }

    /// What deletions in the shared bucket leave out of reads of its objects, if there is one.
    fn hidden(&self) -> Option<Arc<bucket::deletions::Hidden>> {
        let bucket = self.shared.bucket.as_ref()?;
        let hidden = bucket.hidden.lock().unwrap_or_else(|e| e.into_inner());
        (!hidden.pending.is_empty() || !hidden.masked.is_empty()).then(|| Arc::clone(&hidden))
    }

    /// Whether deletions in the shared bucket leave `tenant`'s rows in a part out of reads:
    /// `(part, own)`, `own` for this collector's parts in its data directory, which are
    /// objects of the bucket too once committed (a deletion leaves its committed shared parts
    /// to the bucket's compactor, `store::delete`), under their bucket name.
    fn hides<'a>(
        &self,
        hidden: Option<Arc<bucket::deletions::Hidden>>,
        tenant: &'a Tenant,
    ) -> impl Fn(&PartMeta, bool) -> bool + 'a {
        let bucket = self.shared.bucket.clone();
        move |part: &PartMeta, own: bool| match (&hidden, &bucket) {
            (Some(h), Some(b)) if own => h.hides(tenant, &b.bucket_name(part)),
            (Some(h), _) => h.hides(tenant, &part.name),
            _ => false,
        }
    }

    /// What a PromQL selection over `[min_ms, max_ms]` reads for one tenant, taken under one
    /// lock: the head's metric chunks, the series segments, and the metrics parts that no
    /// segment covers yet (see [`series`]).
    pub fn series_snapshot(&self, tenant: &Tenant, min_ms: i64, max_ms: i64) -> SeriesSnapshot {
        let (lo, hi) = (ms_to_ns(min_ms), ms_to_ns(max_ms));
        let hidden = self.hidden();
        let hides_segment = |name: &str| hidden.as_ref().is_some_and(|h| h.hides(tenant, name));
        let hides = self.hides(hidden.clone(), tenant);
        let state = self.shared.read();
        let segments: Vec<Arc<series::SegmentMeta>> = state
            .series
            .iter()
            .chain(state.remote_series.iter().filter(|s| !hides_segment(&s.name)))
            .filter(|s| &s.tenant == tenant)
            .cloned()
            .collect();
        // A part is covered by a segment of its own writer only (this collector's, or the one
        // that committed both to the bucket).
        let parts = state
            .parts
            .iter()
            .map(|p| (p, true))
            .chain(state.remote.iter().map(|p| (p, false)))
            .filter(|(p, _)| p.signal == Signal::Metrics)
            .filter(|(p, _)| {
                p.of(tenant).is_some_and(|t| {
                    let hour = parts::hour_dir(t.min_time);
                    let covered = segments.iter().any(|s| s.covers_part(p, &hour));
                    t.min_time <= hi && t.max_time >= lo && !covered
                })
            })
            .filter(|(p, own)| !hides(p, *own))
            .map(|(p, _)| Arc::clone(p))
            .collect();
        SeriesSnapshot {
            tenant: tenant.clone(),
            chunks: state
                .head
                .chunks(tenant, Signal::Metrics)
                .into_iter()
                .filter(|c| c.min_time <= hi && c.max_time >= lo)
                .collect(),
            segments: segments.into_iter().filter(|s| s.overlaps(min_ms, max_ms)).collect(),
            parts,
        }
    }

    /// The index of a series segment (cached).
    pub fn series_index(
        &self,
        segment: &series::SegmentMeta,
    ) -> Result<Arc<series::SegmentIndex>, series::SeriesError> {
        self.shared.series_indexes.get(segment)
    }

    /// Takes a damaged series segment out of the store and deletes it: its parts hold the
    /// same data, are read in its place from now on, and rebuild it at the next start.
    /// Returns the warning for answers.
    ///
    /// Another collector's segment (from the bucket) is only left out of this process's reads:
    /// for good when it is damaged, until the next manifest listing when it could not be
    /// fetched. Its object is its writer's.
    pub fn drop_damaged_segment(&self, segment: &Arc<series::SegmentMeta>, err: &series::SeriesError) -> String {
        if let Some(remote) = &segment.remote {
            let first = {
                let mut state = self.shared.write();
                let before = state.remote_series.len();
                state.remote_series.retain(|s| !Arc::ptr_eq(s, segment));
                state.remote_series.len() < before
            };
            self.shared.series_indexes.forget(&segment.name);
            if matches!(err, series::SeriesError::Damaged { .. }) {
                remote.bucket.quarantine_segment(segment);
            } else {
                remote.bucket.republish.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            if first {
                tracing::error!(segment = %segment.name, %err, "series segment of the bucket left out; its parts are read instead");
            }
            return format!(
                "{err} (an object of the shared bucket, written by collector {}); it was left out: what it holds of \
                 OTLP metrics is read from their parts, its remote-written samples are missing from this answer",
                remote.writer
            );
        }
        let first = {
            let mut state = self.shared.write();
            let before = state.series.len();
            state.series.retain(|s| !Arc::ptr_eq(s, segment));
            state.series.len() < before
        };
        self.shared.series_indexes.forget(&segment.name);
        if first {
            tracing::error!(segment = %segment.name, %err, "damaged series segment set aside; its parts are read instead");
            if let Err(e) = catalog::quarantine(&self.shared.data_dir, &segment.name) {
                tracing::error!(segment = %segment.name, %e, "cannot move the damaged series segment aside");
            }
        }
        format!(
            "{err}; it was set aside: what it holds of OTLP metrics is read from their parts, its remote-written \
             samples are missing from this answer"
        )
    }

    /// The head chunks and the parts that may hold spans of one trace.
    pub fn trace_snapshot(&self, tenant: &Tenant, trace_id: &[u8; 16]) -> Snapshot {
        let mut snapshot = self.snapshot(tenant, Signal::Traces);
        snapshot.parts.retain(|p| p.may_hold_trace(tenant, trace_id));
        snapshot
    }

    /// Counts and time range per signal for one tenant.
    pub fn stats(&self, tenant: &Tenant) -> Vec<(Signal, SignalStats)> {
        Signal::ALL
            .into_iter()
            .map(|signal| {
                let snap = self.snapshot(tenant, signal);
                let mut s = SignalStats::default();
                let mut widen = |min: u64, max: u64| {
                    s.oldest_unix_nano = Some(s.oldest_unix_nano.map_or(min, |o| o.min(min)));
                    s.newest_unix_nano = Some(s.newest_unix_nano.map_or(max, |n| n.max(max)));
                };
                let mut in_head = 0;
                for c in &snap.chunks {
                    if !c.rows.is_empty() {
                        widen(c.min_time, c.max_time);
                        in_head += c.rows.len() as u64;
                    }
                }
                let mut in_parts = 0;
                for p in snap.parts.iter().filter_map(|p| p.of(tenant)) {
                    widen(p.min_time, p.max_time);
                    in_parts += p.rows;
                }
                s.in_head = in_head;
                s.in_parts = in_parts;
                s.items = in_head + in_parts;
                s.parts = snap.parts.len() as u64;
                (signal, s)
            })
            .collect()
    }

    /// `(service.name, service.version)` pairs seen in any signal of one tenant.
    pub fn services(&self, tenant: &Tenant) -> std::collections::BTreeSet<(String, Option<String>)> {
        let mut out = std::collections::BTreeSet::new();
        for signal in Signal::ALL {
            let snap = self.snapshot(tenant, signal);
            for c in &snap.chunks {
                out.extend(c.services.iter().cloned());
            }
            for p in snap.parts.iter().filter_map(|p| p.of(tenant)) {
                out.extend(p.services.iter().cloned());
            }
        }
        out
    }

    /// Reads every row of a snapshot, head first, then parts; `f` sees each batch once. A
    /// part deleted by retention since the snapshot was taken is skipped; a damaged part is
    /// set aside (see [`catalog`]) and named in the report's warnings, and the scan goes on.
    /// Only a failure to read a file at all (other than its absence) is an error.
    pub fn scan(&self, snapshot: &Snapshot, f: impl FnMut(&Rows)) -> Result<ScanReport, PartError> {
        self.scan_narrowed(snapshot, &parts::Narrow::ALL, f)
    }

    /// [`Store::scan`] for a query that selects `narrow` (times, and perhaps one service): of
    /// metrics and logs parts only the service's slice and the row groups whose time
    /// statistics overlap the range are decoded ([`parts::read_part_narrowed`]); `f` may still
    /// see rows outside the selection (the head's chunks are passed whole).
    pub fn scan_narrowed(
        &self,
        snapshot: &Snapshot,
        narrow: &parts::Narrow<'_>,
        mut f: impl FnMut(&Rows),
    ) -> Result<ScanReport, PartError> {
        let mut report = ScanReport::default();
        for chunk in &snapshot.chunks {
            f(&chunk.rows);
        }
        for part in &snapshot.parts {
            match parts::read_part_narrowed(part, &snapshot.tenant, narrow) {
                Ok(rows) => f(&rows),
                Err(err) if err.is_not_found() => {}
                Err(err @ PartError::Damaged { .. }) => report.warnings.push(self.shared.quarantine(part, &err)),
                Err(err @ PartError::Key { .. }) => report.warnings.push(self.shared.locked(part, &err)),
                Err(err @ PartError::Unavailable { .. }) => report.warnings.push(unavailable(&err)),
                Err(err) => return Err(err),
            }
        }
        Ok(report)
    }

    /// [`Store::scan`] for the spans of some traces only, by trace key (`parts::trace_key`, the
    /// first 8 bytes of the id; the caller checks whole ids): the head's chunks are passed
    /// whole (the caller filters them); of each part only the rows of those keys are built —
    /// found by its cached span index ([`span_index`]) if a search built one, else by its
    /// `trace_id` column —, and parts whose trace-key list has none of them are not opened
    /// (parts whose list was released from memory are, `trace_keys`). Damage is handled as in [`Store::scan`].
    pub fn scan_trace_keys(
        &self,
        snapshot: &Snapshot,
        keys: &std::collections::HashSet<u64>,
        mut f: impl FnMut(&Rows),
    ) -> Result<ScanReport, PartError> {
        let mut report = ScanReport::default();
        for chunk in &snapshot.chunks {
            f(&chunk.rows);
        }
        for part in &snapshot.parts {
            let Some(of) = part.of(&snapshot.tenant) else { continue };
            if part.signal != Signal::Traces || !keys.iter().any(|&k| of.trace_keys.may_hold(k)) {
                continue;
            }
            // A part a search has indexed is read at its indexed rows; another is not indexed
            // for a lookup (building an index costs more than one lookup): its `trace_id`
            // column is read instead.
            let Some(index) = self.shared.span_indexes.get(&part.name, &snapshot.tenant) else {
                match parts::read_part_trace_keys(part, &snapshot.tenant, keys) {
                    Ok(rows) => f(&Rows::Spans(rows)),
                    Err(err) if err.is_not_found() => {}
                    Err(err @ PartError::Damaged { .. }) => report.warnings.push(self.shared.quarantine(part, &err)),
                    Err(err @ PartError::Key { .. }) => report.warnings.push(self.shared.locked(part, &err)),
                    Err(err @ PartError::Unavailable { .. }) => report.warnings.push(unavailable(&err)),
                    Err(err) => return Err(err),
                }
                continue;
            };
            let wanted: Vec<usize> = (0..index.len()).filter(|&i| keys.contains(&index.trace_key[i])).collect();
            let read = parts::read_part_indexed(part, &snapshot.tenant, &index, &wanted).map(Rows::Spans);
            match read {
                Ok(rows) => f(&rows),
                Err(err) if err.is_not_found() => {}
                Err(err @ PartError::Damaged { .. }) => report.warnings.push(self.shared.quarantine(part, &err)),
                Err(err @ PartError::Key { .. }) => report.warnings.push(self.shared.locked(part, &err)),
                Err(err @ PartError::Unavailable { .. }) => report.warnings.push(unavailable(&err)),
                Err(err) => return Err(err),
            }
        }
        Ok(report)
    }

    /// A traces part's span index for a tenant, cached ([`span_index`]); `None` for parts of
    /// the first layout.
    pub fn part_index(
        &self,
        part: &Arc<PartMeta>,
        tenant: &Tenant,
    ) -> Result<Option<Arc<span_index::SpanIndex>>, PartError> {
        if let Some(index) = self.shared.span_indexes.get(&part.name, tenant) {
            return Ok(Some(index));
        }
        let Some(index) = parts::read_part_index(part, tenant)? else { return Ok(None) };
        let index = Arc::new(index);
        let live: std::collections::HashSet<String> = {
            let state = self.shared.read();
            state.parts.iter().chain(&state.remote).map(|p| p.name.clone()).collect()
        };
        // Kept for the next query, pushing out the index used least recently.
        self.shared.span_indexes.put_newest(&part.name, tenant, Arc::clone(&index), &|name| live.contains(name));
        Ok(Some(index))
    }

    /// Calls `f` with each span of the snapshot that `probe` accepts, head first. `probe` sees
    /// every span (its trace id, service, start and end) before the span is built from a part,
    /// so a refused span costs no copy: a search filters on the cheap columns first, and a
    /// probe that only records what it sees and refuses everything reads a part for the price
    /// of its columns. Damage is handled as in [`Store::scan`].
    pub fn scan_spans_where(
        &self,
        snapshot: &Snapshot,
        probe: &mut dyn FnMut(&SpanProbe<'_>) -> bool,
        mut f: impl FnMut(&crate::model::SpanRow),
    ) -> Result<ScanReport, PartError> {
        let mut report = ScanReport::default();
        for chunk in &snapshot.chunks {
            let Rows::Spans(spans) = &chunk.rows else { continue };
            for row in spans {
                let seen = SpanProbe {
                    trace_id: Some(row.trace_id),
                    service_name: row.resource.service_name.as_deref(),
                    start_unix_nano: row.start_unix_nano,
                    end_unix_nano: row.end_unix_nano,
                };
                if probe(&seen) {
                    f(row);
                }
            }
        }
        for part in snapshot.parts.iter().filter(|p| p.signal == Signal::Traces) {
            match parts::read_part_spans_where(part, &snapshot.tenant, probe) {
                Ok(rows) => rows.iter().for_each(&mut f),
                Err(err) if err.is_not_found() => {}
                Err(err @ PartError::Damaged { .. }) => report.warnings.push(self.shared.quarantine(part, &err)),
                Err(err @ PartError::Key { .. }) => report.warnings.push(self.shared.locked(part, &err)),
                Err(err @ PartError::Unavailable { .. }) => report.warnings.push(unavailable(&err)),
                Err(err) => return Err(err),
            }
        }
        Ok(report)
    }

    /// Searches one traces part through its span index ([`span_index`]): `keep` sees every
    /// span of the tenant in the part by its indexed columns, and only the spans it keeps are
    /// read whole and passed to `f`, newest first (by start time) in batches of a growing
    /// size; before each batch `enough` is asked with the latest start of the spans not read
    /// yet, and answering true ends the part there — a search that has its newest traces reads
    /// no older spans, however many the part holds. The index is built from the part on first
    /// use and cached. Returns the number of spans the part holds for the tenant. Damage is
    /// handled as in [`Store::scan`] (the warning goes in `report`).
    pub fn search_part(
        &self,
        part: &Arc<PartMeta>,
        tenant: &Tenant,
        keep: &mut dyn FnMut(&span_index::IndexedSpan<'_>) -> bool,
        enough: &mut dyn FnMut(u64) -> bool,
        f: &mut dyn FnMut(&crate::model::SpanRow),
        report: &mut ScanReport,
    ) -> Result<u64, PartError> {
        let damage = |err: PartError, report: &mut ScanReport| match err {
            err if err.is_not_found() => Ok(0),
            err @ PartError::Damaged { .. } => {
                report.warnings.push(self.shared.quarantine(part, &err));
                Ok(0)
            }
            err @ PartError::Key { .. } => {
                report.warnings.push(self.shared.locked(part, &err));
                Ok(0)
            }
            err => Err(err),
        };
        let index = match self.part_index(part, tenant) {
            Ok(Some(index)) => index,
            // A part of the first layout: read whole.
            Ok(None) => {
                return match parts::read_part(part, tenant) {
                    Ok(Rows::Spans(spans)) => {
                        spans.iter().for_each(&mut *f);
                        Ok(spans.len() as u64)
                    }
                    Ok(_) => Ok(0),
                    Err(err) => damage(err, report),
                };
            }
            Err(err) => return damage(err, report),
        };
        let mut wanted: Vec<usize> = (0..index.len()).filter(|&i| keep(&index.span(i))).collect();
        wanted.sort_unstable_by_key(|&i| std::cmp::Reverse(index.start[i]));
        // At most a row group's worth of rows at a time: a search that keeps every span of a
        // part holds one batch of built rows, not the part's.
        let (mut rest, mut size) = (&wanted[..], FIRST_SEARCH_BATCH);
        let mut batches = || {
            let newest = index.start[*rest.first()?];
            if enough(newest) {
                return None;
            }
            let (batch, after) = rest.split_at(size.min(rest.len()));
            (rest, size) = (after, (size * 4).min(columns::FRAME_ROWS));
            Some(batch)
        };
        let mut each = |rows: &[crate::model::SpanRow]| rows.iter().for_each(&mut *f);
        match parts::read_part_indexed_batches(part, tenant, &index, &mut batches, &mut each) {
            Ok(()) => Ok(index.len() as u64),
            Err(err) => damage(err, report),
        }
    }

    /// Starts the compaction thread (`compact`) when `config.enabled`; it stops with the store.
    pub fn start_compaction(&self, config: &crate::config::CompactionConfig) -> std::io::Result<()> {
        if !config.enabled {
            return Ok(());
        }
        let (shared, compactor, local) = (Arc::clone(&self.shared), Arc::clone(&self.compactor), config.clone());
        let thread = std::thread::Builder::new()
            .name("slo-gate-compact".into())
            .spawn(move || compact::run(shared, compactor, local))?;
        self.threads.lock().unwrap_or_else(|e| e.into_inner()).push(thread);
        if let Some(bucket) = self.shared.bucket.as_ref().filter(|b| b.compacts) {
            let (shared, bucket, config) = (Arc::clone(&self.shared), Arc::clone(bucket), config.clone());
            let thread = std::thread::Builder::new()
                .name("slo-gate-bucket-compact".into())
                .spawn(move || bucket::compact::run(shared, bucket, config))?;
            self.threads.lock().unwrap_or_else(|e| e.into_inner()).push(thread);
        }
        Ok(())
    }

    /// One compaction pass now, in the calling thread, as if the clock read `now_unix_nano`
    /// (`enabled` is not consulted).
    pub fn compact_now(
        &self,
        config: &crate::config::CompactionConfig,
        now_unix_nano: u64,
    ) -> Result<compact::CompactionReport, StoreError> {
        compact::pass(&self.shared, &self.compactor, config, now_unix_nano)
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.shared.telemetry
    }

    /// Says the collector is stopping, before its requests in progress are waited for: a wait
    /// that only a running collector finishes gives up (a tenant deletion waiting for the
    /// uploader answers at once that the deletion is left to the next start). [`Store::close`]
    /// says it too.
    pub fn begin_stopping(&self) {
        self.shared.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops the threads after the log writer has finished what it was given. The head is
    /// not flushed: the WAL holds it and the next start replays it.
    pub fn close(&self) {
        self.begin_stopping();
        // With a shared bucket the head is flushed (while the log writer still cuts blocks)
        // and uploaded before the collector exits: one scaled in may never start again, and
        // its WAL would hold what it acknowledged. Without one the WAL replays at the next start.
        if self.shared.bucket.is_some() {
            let (tx, rx) = mpsc::sync_channel(1);
            if self.flusher.send(flush::Request::Now(tx)).is_ok()
                && let Ok(Err(err)) = rx.recv()
            {
                tracing::error!(%err, "the last flush before closing failed; the WAL keeps the head for the next start");
            }
        }
        self.shared.closing.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.writer.send(writer::Op::Shutdown);
        let _ = self.flusher.send(flush::Request::Shutdown);
        let mut threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        // The log writer and the flusher first (the head is then in parts), then the bucket's
        // uploader makes its last pass over them, then the rest.
        let rest = threads.split_off(2.min(threads.len()));
        for t in threads {
            let _ = t.join();
        }
        if let Some(bucket) = &self.shared.bucket {
            bucket.closing.store(true, std::sync::atomic::Ordering::SeqCst);
            bucket.nudge();
        }
        for t in rest {
            let _ = t.join();
        }
        // Released only after the threads stopped writing.
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// Checks the size and checksum of every part once, one at a time, setting aside the damaged.
/// The bytes on disk are checked, so this needs no key. A part whose catalog entry predates
/// SHA-256s and whose CRC-32 is right gets the SHA-256 of its file recorded, so later reads
/// check that.
fn verify_all(shared: &Shared) {
    if !shared.settings.verify_parts_at_start {
        return;
    }
    let parts: Vec<Arc<PartMeta>> = shared.read().parts.clone();
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    for part in parts {
        if shared.closing.load(relaxed) {
            return;
        }
        match parts::read_checked(&part) {
            Ok(bytes) if part.sha256.is_none() => record_sha256(shared, &part, &bytes),
            Ok(_) => {}
            Err(err) if err.is_not_found() => {}
            Err(err @ PartError::Damaged { .. }) => {
                shared.quarantine(&part, &err);
            }
            Err(err) => tracing::warn!(part = %part.name, %err, "cannot verify part"),
        }
        shared.telemetry.parts_verified.fetch_add(1, relaxed);
    }
}

/// Records the SHA-256 of a part whose entry has none (`verify_all`), in the catalog and the
/// state, under the state lock: retention and quarantine take a part out of the state before
/// they write its removal, so a part they took out is not entered again here.
///
/// A part whose trace keys were released from memory (`trace_keys`) has them read back from
/// its file first: the line written holds the whole entry.
fn record_sha256(shared: &Shared, part: &Arc<PartMeta>, bytes: &[u8]) {
    let mut meta = PartMeta { sha256: Some(parts::sha256(bytes)), ..PartMeta::clone(part) };
    for t in &mut meta.tenants {
        if t.trace_keys.get().is_some() {
            continue;
        }
        match parts::read_part_trace_key_list(part, &t.tenant) {
            Ok(keys) => t.trace_keys = keys.into(),
            Err(err) => {
                tracing::warn!(part = %part.name, %err, "cannot read the trace keys of a part to record its SHA-256; it stays checked by CRC-32");
                return;
            }
        }
    }
    let meta = Arc::new(meta);
    let mut state = shared.write();
    let Some(at) = state.parts.iter().position(|p| Arc::ptr_eq(p, part)) else { return };
    match shared.catalog.add(std::slice::from_ref(&*meta)) {
        Ok(()) => {
            if let Some(bucket) = &shared.bucket {
                bucket.remember(&[&meta]);
            }
            state.parts[at] = meta;
            drop(state);
            shared.hold_trace_keys();
        }
        Err(err) => {
            tracing::warn!(part = %part.name, %err, "cannot record the SHA-256 of a part; it stays checked by CRC-32")
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive::ExportRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    const HOUR: u64 = 3_600_000_000_000;

    fn settings() -> StoreSettings {
        StoreSettings {
            durability: Durability::Group,
            group_commit_interval: Duration::from_millis(1),
            flush_interval: Duration::from_secs(3600),
            max_head_bytes: 1 << 30,
            retention: Duration::from_secs(2 * 86_400),
            retention_interval: Duration::from_secs(3600),
            min_tenant_part_bytes: 1 << 20,
            verify_parts_at_start: true,
            min_free_bytes: 0,
            span_index_cache_bytes: 64 << 20,
            trace_key_bytes: 64 << 20,
        }
    }

    /// One span per start time, trace ids numbered from `first`.
    fn request(first: u8, starts: &[u64]) -> ExportTraceServiceRequest {
        let spans = starts
            .iter()
            .enumerate()
            .map(|(i, &start)| Span {
                trace_id: vec![first + i as u8; 16],
                span_id: vec![1; 8],
                name: "op".into(),
                start_time_unix_nano: start,
                end_time_unix_nano: start + 10,
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

    fn append(store: &Store, tenant: &str, req: ExportTraceServiceRequest) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let payload = Bytes::from(req.encode_to_vec());
        rt.block_on(store.append(Tenant::parse(tenant).unwrap(), payload, req.into_rows())).unwrap();
    }

    fn span_ids(store: &Store, tenant: &str) -> Vec<u8> {
        let snap = store.snapshot(&Tenant::parse(tenant).unwrap(), Signal::Traces);
        let mut ids = Vec::new();
        store
            .scan(&snap, |rows| {
                if let Rows::Spans(s) = rows {
                    ids.extend(s.iter().map(|s| s.trace_id[0]));
                }
            })
            .unwrap();
        ids.sort_unstable();
        ids
    }

    // issue 11 #11: deleting `<data-dir>/LOCK` while a collector ran let a second one open
    // the same directory; both acknowledged writes and the second's were lost.
    #[test]
    fn a_second_store_on_a_directory_in_use_is_refused_whatever_files_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path(), settings(), Arc::default()).unwrap();
        let _ = std::fs::remove_file(dir.path().join("LOCK"));
        let second = Store::open(dir.path(), settings(), Arc::default());
        assert!(matches!(second, Err(OpenError::Locked { .. })), "{second:?}");
        first.close();
        Store::open(dir.path(), settings(), Arc::default()).expect("free again once the first closed");
    }

    #[test]
    fn head_and_parts_answer_alike_and_retention_drops_old_parts() {
        let dir = tempfile::tempdir().unwrap();
        // Retention runs on the wall clock, so the data is recent.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let store = Store::open(dir.path(), settings(), Arc::default()).unwrap();
        // Three hours of data in one request (split into three parts), and another tenant.
        append(&store, "a", request(1, &[now - 30 * HOUR, now - 2 * HOUR, now]));
        append(&store, "b", request(9, &[now]));
        let before = span_ids(&store, "a");
        assert_eq!(before, vec![1, 2, 3]);
        store.flush().unwrap();
        assert_eq!(span_ids(&store, "a"), before, "parts answer like the head did");
        assert_eq!(span_ids(&store, "b"), vec![9]);
        let stats = store.stats(&Tenant::parse("a").unwrap());
        let traces = &stats[0].1;
        assert_eq!((traces.items, traces.in_head, traces.parts), (3, 0, 3));
        assert_eq!(traces.oldest_unix_nano, Some(now - 30 * HOUR));

        // 20 hours from now, two days of retention reach back 28 hours: the part of 30 hours
        // ago goes, and only it.
        assert_eq!(store.apply_retention(now + 20 * HOUR).unwrap(), 1);
        assert_eq!(span_ids(&store, "a"), vec![2, 3]);
        assert_eq!(span_ids(&store, "b"), vec![9]);
        store.close();

        // A restart reads the catalog back from the part files.
        let store = Store::open(dir.path(), settings(), Arc::default()).unwrap();
        assert_eq!(span_ids(&store, "a"), vec![2, 3]);
        assert!(store.trace_snapshot(&Tenant::parse("a").unwrap(), &[2; 16]).parts.len() == 1);
        assert!(store.trace_snapshot(&Tenant::parse("a").unwrap(), &[7; 16]).parts.is_empty());
    }

    /// A part's spans reach a search newest first whatever order they were written in, in
    /// batches of 1,024 and then four times as many; a search with enough after the first batch
    /// reads no older span.
    #[test]
    fn a_search_reads_a_part_newest_first_and_stops_when_it_has_enough() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let store = Store::open(dir.path(), settings(), Arc::default()).unwrap();
        let n = 6_000u64;
        // Written in a shuffled order of their start times (7,919 is prime to 6,000).
        let spans = (0..n)
            .map(|i| {
                let k = i * 7_919 % n;
                Span {
                    trace_id: [[5u8; 8], k.to_be_bytes()].concat(),
                    span_id: vec![1; 8],
                    name: "op".into(),
                    start_time_unix_nano: now - HOUR + k * 1_000,
                    end_time_unix_nano: now - HOUR + k * 1_000 + 10,
                    ..Default::default()
                }
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        };
        append(&store, "a", request);
        store.flush().unwrap();
        let tenant = Tenant::parse("a").unwrap();
        let snap = store.snapshot(&tenant, Signal::Traces);
        assert_eq!(snap.parts.len(), 1);
        let search = |stop_after: usize| {
            let (read, mut starts, mut asked) = (std::cell::Cell::new(0), Vec::new(), Vec::new());
            let mut report = ScanReport::default();
            let held = store
                .search_part(
                    &snap.parts[0],
                    &tenant,
                    &mut |_| true,
                    &mut |newest| {
                        asked.push(newest);
                        read.get() >= stop_after
                    },
                    &mut |row| {
                        starts.push(row.start_unix_nano);
                        read.set(read.get() + 1);
                    },
                    &mut report,
                )
                .unwrap();
            assert!(report.warnings.is_empty(), "{report:?}");
            assert_eq!(held, n);
            (starts, asked)
        };
        let newest_first: Vec<u64> = (0..n).rev().map(|k| now - HOUR + k * 1_000).collect();
        // Each batch is read in row order; its spans are the next newest.
        let batches = |mut starts: Vec<u64>| {
            let (first, rest) = starts.split_at_mut(1_024.min(n as usize));
            let (second, third) = rest.split_at_mut(4_096.min(rest.len()));
            for batch in [&mut *first, &mut *second, &mut *third] {
                batch.sort_unstable_by(|a, b| b.cmp(a));
            }
            starts
        };

        let (starts, asked) = search(usize::MAX);
        assert!(batches(starts) == newest_first, "every span, a batch at a time, newest first");
        assert_eq!(asked, [newest_first[0], newest_first[1_024], newest_first[1_024 + 4_096]]);

        let (starts, asked) = search(1);
        assert_eq!(starts.len(), 1_024, "the first batch only");
        assert!(batches(starts) == newest_first[..1_024], "the newest spans");
        assert_eq!(asked, [newest_first[0], newest_first[1_024]]);
    }

    #[test]
    fn span_indexes_find_the_rows_of_trace_keys_and_search_conditions() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let store = Store::open(dir.path(), settings(), Arc::default()).unwrap();
        append(&store, "a", request(1, &[now, now + 1, now + 2]));
        append(&store, "b", request(7, &[now]));
        store.flush().unwrap();
        let tenant = Tenant::parse("a").unwrap();
        let snap = store.snapshot(&tenant, Signal::Traces);
        assert_eq!(snap.parts.len(), 1);
        let index = store.part_index(&snap.parts[0], &tenant).unwrap().expect("an index");
        assert_eq!(index.len(), 3, "only tenant a's spans");
        let keys: std::collections::HashSet<u64> = [parts::trace_key(&[2; 16])].into();
        let mut found = Vec::new();
        let report = store
            .scan_trace_keys(&snap, &keys, |rows| {
                if let Rows::Spans(s) = rows {
                    found.extend(s.iter().map(|s| s.trace_id[0]));
                }
            })
            .unwrap();
        assert!(report.warnings.is_empty(), "{report:?}");
        assert_eq!(found, vec![2]);
        let mut kept = Vec::new();
        let mut report = ScanReport::default();
        let n = store
            .search_part(
                &snap.parts[0],
                &tenant,
                &mut |s| s.start_unix_nano > now,
                &mut |_| false,
                &mut |row| kept.push(row.trace_id[0]),
                &mut report,
            )
            .unwrap();
        kept.sort_unstable();
        assert_eq!((n, kept), (3, vec![2, 3]));
    }

    /// Trace keys past `trace_key_bytes` are released, those of the parts with the oldest rows
    /// first; a lookup still finds every trace (it reads the released parts' trace ids), only
    /// an absent trace costs those parts a read; the keys stay in the catalog for a restart.
    #[test]
    fn trace_keys_past_their_budget_are_released_oldest_first_and_every_trace_is_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let tenant = Tenant::parse("a").unwrap();
        // Room for two keys; no span indexes, so a lookup reads the parts' `trace_id` columns.
        let small = StoreSettings { trace_key_bytes: 16, span_index_cache_bytes: 0, ..settings() };
        let telemetry = Arc::new(crate::telemetry::Telemetry::default());
        let store = Store::open(dir.path(), small, Arc::clone(&telemetry)).unwrap();
        // Three flushes, each of two traces in an hour of its own: the newest written first.
        for (first, hours_ago) in [(5u8, 1), (1, 3), (3, 2)] {
            append(&store, "a", request(first, &[now - hours_ago * HOUR, now - hours_ago * HOUR + 1]));
            store.flush().unwrap();
        }
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        assert_eq!(telemetry.trace_key_bytes.load(relaxed), 16);
        assert_eq!(telemetry.trace_keys_released_parts.load(relaxed), 2);
        let snap = store.snapshot(&tenant, Signal::Traces);
        let held: Vec<bool> = {
            let mut parts: Vec<&Arc<PartMeta>> = snap.parts.iter().collect();
            parts.sort_by_key(|p| p.max_time());
            parts.iter().map(|p| p.tenants[0].trace_keys.is_held()).collect()
        };
        assert_eq!(held, [false, false, true], "the newest part's keys are held");

        let lookup = |id: u8| {
            let snap = store.trace_snapshot(&tenant, &[id; 16]);
            let keys: std::collections::HashSet<u64> = [parts::trace_key(&[id; 16])].into();
            let mut found = Vec::new();
            store
                .scan_trace_keys(&snap, &keys, |rows| {
                    if let Rows::Spans(s) = rows {
                        found.extend(s.iter().filter(|s| s.trace_id == [id; 16]).map(|s| s.trace_id[0]));
                    }
                })
                .unwrap();
            (snap.parts.len(), found)
        };
        for id in 1..=6u8 {
            let (_, found) = lookup(id);
            assert_eq!(found, [id], "trace {id}");
        }
        assert_eq!(lookup(5).0, 3, "the released parts may hold any trace");
        assert_eq!(lookup(9), (2, vec![]), "the held keys rule their part out");
        store.close();

        // The catalog kept every key: with room, a restart holds them all again.
        let store = Store::open(dir.path(), settings(), Arc::default()).unwrap();
        assert!(store.trace_snapshot(&tenant, &[9; 16]).parts.is_empty());
        assert_eq!(store.trace_snapshot(&tenant, &[1; 16]).parts.len(), 1);
    }

    /// Keys written to the catalog are held as a filter (a quarter of their size), which
    /// finds every trace of the part and rules out absent ones; a restart reads the exact keys
    /// back from the catalog and filters them again.
    #[test]
    fn trace_keys_are_held_as_a_filter_once_in_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let tenant = Tenant::parse("a").unwrap();
        let trace_id = |i: u32| {
            let mut id = [7u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id
        };
        let mut spans: Vec<Span> = (0..2_000u32)
            .map(|i| Span {
                trace_id: trace_id(i).to_vec(),
                span_id: vec![1; 8],
                name: "op".into(),
                start_time_unix_nano: now - 1_000 + u64::from(i % 1_000),
                end_time_unix_nano: now,
                ..Default::default()
            })
            .collect();
        let only_part_keys = |store: &Store| {
            let snap = store.snapshot(&tenant, Signal::Traces);
            assert_eq!(snap.parts.len(), 1);
            Arc::clone(&snap.parts[0])
        };
        for round in 0..2 {
            let telemetry = Arc::new(crate::telemetry::Telemetry::default());
            let store = Store::open(dir.path(), settings(), Arc::clone(&telemetry)).unwrap();
            if round == 0 {
                append(&store, "a", crate::model::span::one_scope_request(std::mem::take(&mut spans)));
                store.flush().unwrap();
            }
            let part = only_part_keys(&store);
            let keys = &part.tenants[0].trace_keys;
            assert_eq!((keys.len(), keys.get()), (2_000, None), "round {round}: filtered, not exact");
            let held = telemetry.trace_key_bytes.load(std::sync::atomic::Ordering::Relaxed);
            assert!((1..=2_000 * 3).contains(&held), "round {round}: {held} bytes held for 2,000 keys");
            assert_eq!(held, keys.held_bytes());
            for i in (0..2_000).step_by(97) {
                assert_eq!(store.trace_snapshot(&tenant, &trace_id(i)).parts.len(), 1, "round {round}: trace {i}");
            }
            let absent = (2_000..12_000u32).filter(|&i| !store.trace_snapshot(&tenant, &trace_id(i)).parts.is_empty());
            assert!(absent.count() <= 5, "round {round}: absent traces rule the part out");
            store.close();
        }
    }

    #[test]
    fn traces_parts_are_indexed_when_flushed_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let tenant = Tenant::parse("a").unwrap();
        let indexed = |store: &Store| {
            let snap = store.snapshot(&tenant, Signal::Traces);
            assert_eq!(snap.parts.len(), 1);
            store.shared.span_indexes.get(&snap.parts[0].name, &tenant).map(|i| i.len())
        };
        {
            let store = Store::open(dir.path(), settings(), Arc::default()).unwrap();
            append(&store, "a", request(1, &[now, now + 1]));
            store.flush().unwrap();
            assert_eq!(indexed(&store), Some(2), "indexed by the flush");
        }
        let store = Store::open(dir.path(), settings(), Arc::default()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while indexed(&store).is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(indexed(&store), Some(2), "indexed in the background after start-up");
    }

    #[test]
    fn parts_of_an_unfinished_flush_are_replaced_by_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let store = Store::open(dir.path(), settings(), Arc::default()).unwrap();
        append(&store, "a", request(1, &[now]));
        store.flush().unwrap();
        append(&store, "a", request(2, &[now]));
        store.close();
        // A part numbered past the checkpoint, as a crash between writing parts and writing
        // the checkpoint leaves: a copy of the flushed part under the next segment's number.
        let part = std::fs::read_dir(dir.path().join("parts/a/traces").join(parts::hour_dir(now)))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        std::fs::copy(part.path(), part.path().with_file_name(format!("{:020}.parquet", 999))).unwrap();
        let store = Store::open(dir.path(), settings(), Arc::default()).unwrap();
        assert_eq!(span_ids(&store, "a"), vec![1, 2], "no duplicate from the orphan part");
    }

    #[test]
    fn a_data_dir_in_use_is_refused_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), settings(), Arc::default()).unwrap();
        let err = Store::open(dir.path(), settings(), Arc::default()).expect_err("second writer");
        assert!(matches!(err, OpenError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use by another slo-gate process"), "{err}");
        store.close();
        Store::open(dir.path(), settings(), Arc::default()).expect("free again after close");
    }

    /// Regression test: a replayed head over the flush size used to wait a whole flush
    /// interval before being written, refusing data meanwhile.
    #[test]
    fn a_large_replayed_head_is_flushed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let small = StoreSettings { max_head_bytes: 1, ..settings() };
        // A head of one byte flushes as soon as anything arrives; keep the first store from
        // flushing by giving it the default size, then reopen with the small one.
        let store = Store::open(dir.path(), settings(), Arc::default()).unwrap();
        append(&store, "a", request(1, &[now, now]));
        store.close();
        let store = Store::open(dir.path(), small, Arc::default()).unwrap();
        let flushed = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            store.stats(&Tenant::parse("a").unwrap())[0].1.in_parts == 2
        });
        assert!(flushed, "replayed head not flushed at start");
    }

    /// Every signal, every metric point type: what the head answers before a flush, the parts
    /// answer after it, field for field.
    #[test]
    fn every_signal_round_trips_through_parquet() {
        use crate::receive::ExportRequest;
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        use opentelemetry_proto::tonic::metrics::v1::{
            ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
            NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
            exponential_histogram_data_point, metric::Data, number_data_point, summary_data_point,
        };
        use opentelemetry_proto::tonic::resource::v1::Resource;

        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            key_strindex: 0,
        };
        let resource = Some(Resource {
            attributes: vec![kv("service.name", "rt"), kv("service.version", "9")],
            ..Default::default()
        });
        let number = |v| NumberDataPoint {
            attributes: vec![kv("host", "a")],
            time_unix_nano: now,
            value: Some(v),
            ..Default::default()
        };
        let metric =
            |name: &str, data| Metric { name: name.into(), unit: "1".into(), data: Some(data), ..Default::default() };
        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource.clone(),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric(
                            "g",
                            Data::Gauge(Gauge { data_points: vec![number(number_data_point::Value::AsDouble(0.1))] }),
                        ),
                        metric(
                            "s",
                            Data::Sum(Sum {
                                data_points: vec![number(number_data_point::Value::AsInt(-3))],
                                aggregation_temporality: 1,
                                is_monotonic: false,
                            }),
                        ),
                        metric(
                            "h",
                            Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    time_unix_nano: now,
                                    count: 3,
                                    sum: Some(6.5),
                                    bucket_counts: vec![1, 2],
                                    explicit_bounds: vec![2.0],
                                    min: Some(0.5),
                                    max: Some(4.0),
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                            }),
                        ),
                        metric(
                            "e",
                            Data::ExponentialHistogram(ExponentialHistogram {
                                data_points: vec![ExponentialHistogramDataPoint {
                                    time_unix_nano: now,
                                    count: 4,
                                    scale: 3,
                                    zero_count: 1,
                                    positive: Some(exponential_histogram_data_point::Buckets {
                                        offset: -2,
                                        bucket_counts: vec![1, 2],
                                    }),
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                            }),
                        ),
                        metric(
                            "q",
                            Data::Summary(Summary {
                                data_points: vec![SummaryDataPoint {
                                    time_unix_nano: now,
                                    count: 10,
                                    sum: 55.0,
                                    quantile_values: vec![summary_data_point::ValueAtQuantile {
                                        quantile: 0.99,
                                        value: 9.5,
                                    }],
                                    ..Default::default()
                                }],
                            }),
                        ),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource,
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        time_unix_nano: now,
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: Some(AnyValue { value: Some(any_value::Value::StringValue("boom".into())) }),
                        trace_id: vec![3; 16],
                        span_id: vec![4; 8],
                        attributes: vec![kv("k", "v")],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), settings(), Arc::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let tenant = Tenant::parse("rt").unwrap();
        let m = Bytes::from(metrics.encode_to_vec());
        rt.block_on(store.append(tenant.clone(), m, metrics.into_rows())).unwrap();
        let l = Bytes::from(logs.encode_to_vec());
        rt.block_on(store.append(tenant.clone(), l, logs.into_rows())).unwrap();

        let dump = |signal| {
            let snap = store.snapshot(&tenant, signal);
            let mut out = Vec::new();
            store
                .scan(&snap, |rows| match rows {
                    Rows::Metrics(r) => out.extend(r.iter().map(|x| format!("{x:?}"))),
                    Rows::Logs(r) => out.extend(r.iter().map(|x| format!("{x:?}"))),
                    _ => {}
                })
                .unwrap();
            out.sort();
            out
        };
        let (metrics_head, logs_head) = (dump(Signal::Metrics), dump(Signal::Logs));
        assert_eq!(metrics_head.len(), 5);
        assert!(
            metrics_head.iter().any(|r| r.contains("ExponentialHistogram") && r.contains("\\\"offset\\\":-2")),
            "{metrics_head:?}"
        );
        store.flush().unwrap();
        let stats = store.stats(&tenant);
        assert!(stats.iter().all(|(_, s)| s.in_head == 0));
        assert_eq!(dump(Signal::Metrics), metrics_head);
        assert_eq!(dump(Signal::Logs), logs_head);
    }
}
