//! Parts shared through S3-compatible object storage (`[storage.bucket]`; ADR 0011,
//! `docs/object-storage.md`).
//!
//! Each collector keeps its write-ahead log, head, catalog and parts in its data directory
//! exactly as without a bucket. Two threads connect it to the bucket:
//!
//! ```text
//! uploader: local parts ─ not yet uploaded ─▶ PUT parts/…/<writer>-<seq>.parquet
//!           and series  ─ not yet uploaded ─▶ PUT series/…/<writer>-<first>-<last>.sgs
//!           segments      uploaded, gone    ─▶ (after the manifest) DELETE, a grace later
//!                                            ─▶ PUT manifests/<ms>-<writer>-<n>.json (create only)
//!                                            ─▶ <data-dir>/bucket.log += the names committed
//! sync:     LIST manifests/ (after the newest seen, less a window) ─▶ GET the new ones of other
//!           writers ─▶ the store's remote parts and segments (added, removed) ─▶ queries read
//!           them, fetched on first read into <data-dir>/remote/ (a cache within `cache_bytes`)
//! ```
//!
//! Series segments (`store::series`) travel with the parts so that PromQL answers alike on
//! every instance: remote-written samples are kept in segments alone. A segment covers only
//! its own writer's parts (by flush number), so a reader never counts a writer's metrics twice.
//!
//! The uploader does not follow events: each pass compares the store's local parts with the
//! names `bucket.log` says are committed, so a flush, a merge (its output added, its inputs
//! removed, in one manifest) and retention all reach the bucket the same way, and a crash at
//! any step is repaired by the next pass: a part uploaded without its manifest is uploaded
//! again (same key, same bytes), a manifest created without its `bucket.log` line is created
//! again — readers apply manifests by part name, so a part added twice is one part, and a name
//! removed stays removed. Nothing on the write path waits for another collector: manifest names
//! carry the writer's id, and creating one that exists (`PutMode::Create`) only moves to the
//! next number.
//!
//! A collector reads the parts other writers committed and its own from its data directory;
//! on the write path it never deletes or changes another writer's objects. When the bucket
//! cannot be reached the parts stay local (they are already durable there), the readiness answer
//! says how many wait, and the next pass uploads them.
//!
//! Merges across writers and retention in the bucket are the work of one collector per part
//! directory at a time, committed to a compaction log (`bucket_compact.rs`); the sync thread applies
//! the log after the manifests, and a writer hands its own parts that a merge took over to the
//! merge's output (out of its state, catalog and data directory).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
    WriteMultipart,
};
use serde::{Deserialize, Serialize};

use crate::config::BucketConfig;

use super::Shared;
use super::catalog::{self, Manifest};
use super::crypt::KeyRing;
use super::parts::{self, PartError, PartMeta};
use super::series::{self, SegmentMeta, SeriesError};

#[path = "bucket_checkpoint.rs"]
pub(crate) mod checkpoint;
#[path = "bucket_compact.rs"]
pub(crate) mod compact;
#[path = "bucket_delete.rs"]
pub(crate) mod deletions;
#[path = "bucket_gc.rs"]
pub(crate) mod gc;

/// The file of committed names, in the data directory.
const LOG: &str = "bucket.log";
/// Where parts of other writers are fetched to, in the data directory.
pub const CACHE_DIR: &str = "remote";
/// The file keeping a generated writer id, in the data directory.
const WRITER_ID_FILE: &str = "writer-id";
/// Manifests listed again at each refresh, before the newest seen: a writer whose clock is
/// behind by less than this is not missed.
const LIST_WINDOW: Duration = Duration::from_secs(600);
/// Most parts one manifest adds (a long outage leaves many waiting).
const MAX_PARTS_PER_MANIFEST: usize = 1000;
/// Most bytes of manifest lines kept for parts waiting for upload; past it a part's line is
/// made at upload, reading its trace keys back from the part if they were released.
const ENTRY_BYTES: usize = 64 << 20;
/// Largest manifest read (one holds the catalog lines of at most
/// [`MAX_PARTS_PER_MANIFEST`] parts, trace keys included); a larger one is logged and skipped.
const MAX_MANIFEST_BYTES: u64 = 512 << 20;
/// Bytes a part is uploaded in (S3 takes multipart chunks of 5 MiB and more).
const UPLOAD_CHUNK: usize = 8 << 20;
/// How long the objects of removed parts stay, so readers that have not yet listed the
/// manifest removing them still read them.
const DELETE_GRACE: Duration = Duration::from_secs(120);

/// A bucket that cannot be used, named with its endpoint.
#[derive(Debug, thiserror::Error)]
#[error("bucket {url}{at}: {what}")]
pub struct BucketError {
    url: String,
    at: String,
    what: String,
}

/// Where a part of another collector comes from, on its [`PartMeta`]: the bucket (compared
/// by identity) and the writer whose manifest named it.
#[derive(Clone)]
pub struct Remote {
    pub bucket: Arc<Bucket>,
    pub writer: Arc<str>,
}

impl PartialEq for Remote {
    fn eq(&self, other: &Remote) -> bool {
        Arc::ptr_eq(&self.bucket, &other.bucket) && self.writer == other.writer
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({}, {})", self.bucket.url, self.writer)
    }
}

/// Where a series segment of another collector comes from, on its [`SegmentMeta`], and what
/// its object must be (size and SHA-256 from the manifest).
#[derive(Clone, Debug)]
pub struct RemoteSegment {
    pub bucket: Arc<Bucket>,
    pub writer: Arc<str>,
    size: u64,
    sha256: [u8; 32],
}

/// The bucket client of one collector.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// The key prefix inside the bucket (empty for none).
    prefix: String,
    /// `s3://bucket/prefix`, for messages.
    url: String,
    /// ` at <endpoint>`, or empty for AWS.
    at: String,
    writer: String,
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
    refresh: Duration,
    cache_dir: PathBuf,
    cache: Mutex<Cache>,
    cache_bytes: u64,
    keys: Option<Arc<KeyRing>>,
    /// The last manifest number used (`manifests/<ms>-<writer>-<n>`).
    manifest_n: AtomicU64,
    /// Wakes the uploader (after a flush, a merge, retention).
    wake: (Mutex<bool>, Condvar),
    /// What the uploader last found: parts waiting and the error that keeps them waiting.
    status: Mutex<UploadStatus>,
    /// Parts of other writers found damaged: not read again by this process.
    quarantined: Mutex<HashSet<String>>,
    /// The manifest lines of parts not yet uploaded, made when they were written (while their
    /// trace keys are in memory), by bucket name, within [`ENTRY_BYTES`].
    entries: Mutex<Entries>,
    /// The bucket names of this writer's parts committed in its manifests (the uploader's
    /// `bucket.log`), for the compactor: only committed parts are merged in the bucket.
    pub(crate) committed: Mutex<BTreeSet<String>>,
    /// The last compaction-log entry applied to the store's state (`bucket_compact`); set under
    /// the state's write lock, so read under its read lock it matches `State::remote`.
    pub(crate) log_seq: AtomicU64,
    /// Whether this collector takes part in merging the bucket's parts (`compaction`).
    pub(crate) compacts: bool,
    /// How long a compaction lease lasts (`compaction_lease`).
    pub(crate) lease: Duration,
    /// Set when the store closes, once its last flush is done: the uploader's next pass is its
    /// last, so a collector stopped gracefully leaves nothing it acknowledged only on its disk.
    pub(crate) closing: std::sync::atomic::AtomicBool,
    /// Set when a query left out another writer's segment it could not fetch: the next sync
    /// pass that lists the bucket publishes the remote parts and segments again, with it,
    /// even when no manifest is new.
    pub(crate) republish: std::sync::atomic::AtomicBool,
    /// Manifests this collector commits before it folds its manifests into fewer
    /// (`manifest_fold_after`, [`fold_manifests`]).
    fold_after: u64,
    /// What tenant deletions leave out of reads of the bucket's objects (`deletions`), as the
    /// last listing found.
    pub(crate) hidden: Mutex<Arc<deletions::Hidden>>,
    /// The deletion requests this collector applied to its data directory (`deletions`).
    pub(crate) applied: Mutex<BTreeSet<String>>,
    /// Deletion requests this collector made that no listing has found yet, by stem.
    pub(crate) requested: Mutex<BTreeMap<String, crate::tenant::Tenant>>,
    /// How old an object no manifest or log entry names must be before it is garbage
    /// (`orphan_grace`, `gc`).
    pub(crate) orphan_grace: Duration,
    /// Compaction-log entries between two checkpoints of the log (`log_checkpoint_every`,
    /// `checkpoint`).
    pub(crate) checkpoint_every: u64,
    /// Set by the garbage collector: the next sync pass lists every manifest, not only those
    /// after the newest seen less [`LIST_WINDOW`].
    pub(crate) full_listing: std::sync::atomic::AtomicBool,
    /// When the last sync pass that listed every manifest and read every one it had not seen
    /// started (`gc` deletes only what such a pass, started after its listing, left unnamed).
    pub(crate) listed_in_full: Mutex<Option<Instant>>,
    /// Set when a manifest or log entry was skipped as too large or not parsing: the parts it
    /// names are unknown, so nothing is collected as garbage by this process.
    pub(crate) skipped_manifest: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Entries {
    lines: HashMap<String, String>,
    bytes: usize,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("url", &self.url).field("writer", &self.writer).finish()
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // May run on an async worker (the server's shutdown): never block there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Debug, Default, Clone)]
struct UploadStatus {
    waiting: usize,
    error: Option<String>,
}

/// Parts fetched into the cache directory, least recently read first out.
#[derive(Debug, Default)]
struct Cache {
    files: HashMap<String, (u64, u64)>,
    bytes: u64,
    clock: u64,
}

/// Which object store a bucket URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// `s3://bucket/prefix`: S3 and S3-compatible stores.
    S3,
    /// `az://container/prefix`: Azure Blob Storage (and Azurite).
    Azure,
}

/// The scheme, the bucket (or container) and the prefix of `s3://bucket/prefix` or
/// `az://container/prefix`, the prefix without slashes at its ends.
fn parse_url(url: &str) -> Result<(Scheme, String, String), String> {
    let (scheme, rest) = match (url.strip_prefix("s3://"), url.strip_prefix("az://")) {
        (Some(rest), _) => (Scheme::S3, rest),
        (_, Some(rest)) => (Scheme::Azure, rest),
        _ if url.starts_with("gs://") => {
            return Err(format!(
                "{url:?}: Google Cloud Storage is not supported yet (docs/object-storage.md, \"Not yet\"); \
                 s3:// and az:// URLs are"
            ));
        }
        _ => return Err(format!("{url:?} is neither an s3:// nor an az:// URL")),
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{url:?} names no bucket"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|c| c == "." || c == "..") || prefix.contains("//") {
        return Err(format!("{url:?}: the prefix may not hold empty, `.` or `..` components"));
    }
    Ok((scheme, bucket.to_string(), prefix.to_string()))
}

/// Whether `id` can name a writer in object keys.
fn valid_writer(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The configured writer id, or the one kept in the data directory, or a new one kept there.
fn writer_id(config: &BucketConfig, data_dir: &Path) -> Result<String, String> {
    if let Some(id) = &config.writer_id {
        return if valid_writer(id) {
            Ok(id.clone())
        } else {
            Err(format!("writer_id {id:?}: use 1 to 64 letters, digits, `-` or `_`"))
        };
    }
    let path = data_dir.join(WRITER_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) if valid_writer(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => return Err(format!("{WRITER_ID_FILE} in the data directory does not hold a writer id")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{WRITER_ID_FILE}: {e}")),
    }
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| format!("cannot generate a writer id: {e}"))?;
    let id = format!("w{}", hex::encode(random));
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(id.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        super::wal::sync_dir(data_dir)
    };
    write().map_err(|e| format!("cannot keep the writer id in {WRITER_ID_FILE}: {e}"))?;
    Ok(id)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Makes the errors of opening the bucket of `config`: naming its URL and endpoint.
fn config_error(config: &BucketConfig) -> impl Fn(String) -> BucketError + '_ {
    let at = config.endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
    move |what| BucketError { url: config.url.clone(), at: at.clone(), what }
}

impl Bucket {
    /// Connects to the bucket of `config` and checks that it can be written and honours
    /// create-only writes (a clear error otherwise: unreachable, refused credentials, a store
    /// without conditional writes).
    pub fn open(
        config: &BucketConfig,
        data_dir: &Path,
        keys: Option<Arc<KeyRing>>,
    ) -> Result<Arc<Bucket>, BucketError> {
        let error = config_error(config);
        let (scheme, name, prefix) = parse_url(&config.url).map_err(&error)?;
        let least = (2 * config.compaction_lease.0).max(2 * (config.refresh_interval.0 + config.request_timeout.0));
        if config.orphan_grace.0 < least {
            return Err(error(format!(
                "orphan_grace = \"{}\" is too short: at least \"{}\" (twice compaction_lease, and twice \
                 refresh_interval + request_timeout)",
                config.orphan_grace,
                slo_contracts::HumanDuration(least)
            )));
        }
        let writer = writer_id(config, data_dir).map_err(&error)?;
        let timeout = config.request_timeout.0;
        let options =
            ClientOptions::new().with_timeout(timeout).with_connect_timeout(timeout.min(Duration::from_secs(5)));
        // Failures are retried by the next pass, not for minutes inside one request.
        let retry = RetryConfig { max_retries: 2, retry_timeout: timeout, ..RetryConfig::default() };
        let http = config.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
        let store: Arc<dyn ObjectStore> = match scheme {
            Scheme::S3 => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&name)
                    .with_region(&config.region)
                    .with_virtual_hosted_style_request(config.virtual_hosted_style)
                    .with_client_options(options)
                    .with_retry(retry);
                if let Some(endpoint) = &config.endpoint {
                    builder = builder.with_endpoint(endpoint).with_allow_http(http);
                }
                Arc::new(builder.build().map_err(|e| error(e.to_string()))?)
            }
            // Credentials and the account from `AZURE_STORAGE_*` (Azurite with
            // `AZURE_STORAGE_USE_EMULATOR=true` and `AZURITE_BLOB_STORAGE_URL`).
            Scheme::Azure => {
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_container_name(&name)
                    .with_client_options(options)
                    .with_retry(retry);
                if let Some(endpoint) = &config.endpoint {
                    builder = builder.with_endpoint(endpoint.clone()).with_allow_http(http);
                }
                Arc::new(builder.build().map_err(|e| error(e.to_string()))?)
            }
        };
        Bucket::over(store, prefix, writer, config, data_dir, keys)
    }

    /// [`Bucket::open`] past the client: the bucket of `writer` over `store`, checked to
    /// honour create-only writes.
    pub(super) fn over(
        store: Arc<dyn ObjectStore>,
        prefix: String,
        writer: String,
        config: &BucketConfig,
        data_dir: &Path,
        keys: Option<Arc<KeyRing>>,
    ) -> Result<Arc<Bucket>, BucketError> {
        let at = config.endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
        let error = config_error(config);
        let timeout = config.request_timeout.0;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bucket-io")
            .enable_all()
            .build()
            .map_err(|e| error(format!("cannot start its I/O threads: {e}")))?;
        let cache_dir = data_dir.join(CACHE_DIR);
        // Parts fetched by an earlier run are fetched again when read: the cache starts empty.
        if cache_dir.exists() {
            fs::remove_dir_all(&cache_dir).map_err(|e| error(format!("cannot clear {CACHE_DIR}/: {e}")))?;
        }
        let bucket = Arc::new(Bucket {
            store,
            prefix,
            url: config.url.clone(),
            at: at.clone(),
            writer,
            runtime: Some(runtime),
            timeout,
            refresh: config.refresh_interval.0,
            cache_dir,
            cache: Mutex::new(Cache::default()),
            cache_bytes: config.cache_bytes,
            keys,
            quarantined: Mutex::new(HashSet::new()),
            entries: Mutex::new(Entries::default()),
            manifest_n: AtomicU64::new(0),
            // Read again by the uploader, which logs a failure; a deletion finished at start,
            // before the uploader runs, needs it already (`store::delete`).
            committed: Mutex::new(read_log(data_dir).unwrap_or_default()),
            log_seq: AtomicU64::new(0),
            compacts: config.compaction,
            lease: config.compaction_lease.0,
            closing: std::sync::atomic::AtomicBool::new(false),
            republish: std::sync::atomic::AtomicBool::new(false),
            fold_after: config.manifest_fold_after.max(2),
            hidden: Mutex::new(Arc::default()),
            applied: Mutex::new(deletions::read_applied(data_dir)),
            requested: Mutex::new(BTreeMap::new()),
            orphan_grace: config.orphan_grace.0,
            checkpoint_every: config.log_checkpoint_every.max(1),
            full_listing: std::sync::atomic::AtomicBool::new(false),
            listed_in_full: Mutex::new(None),
            skipped_manifest: std::sync::atomic::AtomicBool::new(false),
            wake: (Mutex::new(false), Condvar::new()),
            status: Mutex::new(UploadStatus::default()),
        });
        bucket.check_conditional_writes().map_err(error)?;
        Ok(bucket)
    }

    pub fn writer(&self) -> &str {
        &self.writer
    }

    pub(crate) fn error(&self, what: String) -> BucketError {
        BucketError { url: self.url.clone(), at: self.at.clone(), what }
    }

    fn key(&self, rest: &str) -> Key {
        if self.prefix.is_empty() { Key::from(rest) } else { Key::from(format!("{}/{rest}", self.prefix)) }
    }

    /// Runs one request on the bucket's threads and waits for it, within the request timeout.
    fn run<T: Send + 'static>(
        &self,
        what: String,
        request: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<T, RequestError> {
        self.run_for(what, self.timeout, request)
    }

    /// [`Bucket::run`] within `timeout`.
    fn run_for<T: Send + 'static>(
        &self,
        what: String,
        timeout: Duration,
        request: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<T, RequestError> {
        let Some(runtime) = &self.runtime else { return Err(RequestError::Other(format!("{what}: closed"))) };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(tokio::time::timeout(timeout, request).await);
        });
        match rx.recv() {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(object_store::Error::NotFound { .. }))) => Err(RequestError::NotFound),
            Ok(Ok(Err(object_store::Error::AlreadyExists { .. }))) => Err(RequestError::Exists),
            Ok(Ok(Err(object_store::Error::Precondition { .. }))) => Err(RequestError::Precondition),
            Ok(Ok(Err(e))) => Err(RequestError::Other(format!("{what}: {e}"))),
            Ok(Err(_)) => Err(RequestError::Other(format!("{what}: no answer within {timeout:?}"))),
            Err(_) => Err(RequestError::Other(format!("{what}: the request was dropped"))),
        }
    }

    /// Creates a probe object twice: the second create must be refused, or writers could
    /// overwrite each other's manifests (and leases could not be held).
    fn check_conditional_writes(&self) -> Result<(), String> {
        let name = format!("probe/{}-{}", self.writer, now_ms());
        let create = |text: &'static str| {
            let (store, key) = (Arc::clone(&self.store), self.key(&name));
            self.run(format!("create {name}"), async move {
                store.put_opts(&key, PutPayload::from_static(text.as_bytes()), PutOptions::from(PutMode::Create)).await
            })
        };
        create("1").map_err(|e| e.to_string())?;
        let second = create("2");
        let (store, key) = (Arc::clone(&self.store), self.key(&name));
        let _ = self.run(format!("delete {name}"), async move { store.delete(&key).await });
        match second {
            Err(RequestError::Exists) => Ok(()),
            Ok(_) => Err("the store overwrote an object a create-only write (If-None-Match: *) named: it does not honour conditional writes, which collectors sharing a bucket need".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A part's name in the bucket: its local name with the writer's id before its number, so
    /// the parts of writers numbering alike never meet, and the start of its checksum after
    /// it, so a local name used again (a merge's output takes a free number) never names
    /// another part's object.
    pub fn bucket_name(&self, meta: &PartMeta) -> String {
        let sum = match meta.sha256 {
            Some(digest) => hex::encode(&digest[..4]),
            None => format!("{:08x}", meta.crc32),
        };
        let local = meta.name.strip_suffix(".parquet").unwrap_or(&meta.name);
        match local.rsplit_once('/') {
            Some((dir, file)) => format!("{dir}/{}-{file}-{sum}.parquet", self.writer),
            None => format!("{}-{local}-{sum}.parquet", self.writer),
        }
    }

    /// A series segment's name in the bucket: its local name with the writer's id before its
    /// flush numbers. Segments are never rewritten under one name (a compaction's output
    /// covers a wider range of flushes), so the name needs no checksum.
    pub fn segment_name(&self, meta: &SegmentMeta) -> String {
        format!(
            "{}/{}/{}/{}-{:020}-{:020}.sgs",
            series::SERIES_DIR,
            meta.tenant.as_str(),
            meta.hour,
            self.writer,
            meta.first_seq,
            meta.last_seq
        )
    }

    /// Uploads a local series segment (sealed first when parts are encrypted: the bucket holds
    /// nothing in plaintext that the data directory's parts would not); returns its manifest
    /// line, or `None` when the file was deleted meanwhile (compacted, expired).
    fn put_segment(&self, meta: &SegmentMeta) -> Result<Option<catalog::StoredSegment>, RequestError> {
        use sha2::Digest as _;
        let name = self.segment_name(meta);
        let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
        let local = |e: io::Error| RequestError::Other(format!("read {}: {e}", meta.name));
        let (size, digest) = match &self.keys {
            Some(keys) => {
                let plain = match fs::read(&meta.path) {
                    Ok(bytes) => bytes,
                    Err(e) if gone(&e) => return Ok(None),
                    Err(e) => return Err(local(e)),
                };
                let sealed = keys.seal(&name, &plain).map_err(RequestError::Other)?;
                let digest = parts::sha256(&sealed);
                (self.put_bytes(&name, sealed)?, digest)
            }
            None => {
                // Hashed as it is read, then uploaded from the file: a segment is never held
                // whole in memory.
                let mut file = match File::open(&meta.path) {
                    Ok(file) => file,
                    Err(e) if gone(&e) => return Ok(None),
                    Err(e) => return Err(local(e)),
                };
                let mut hasher = sha2::Sha256::new();
                let (mut buf, mut size) = (vec![0u8; 1 << 20], 0u64);
                loop {
                    let n = io::Read::read(&mut file, &mut buf).map_err(local)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    size += n as u64;
                }
                let digest: [u8; 32] = hasher.finalize().into();
                match self.put_file(&name, &meta.path, size) {
                    Ok(size) => (size, digest),
                    Err(RequestError::Other(_)) if !meta.path.exists() => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        };
        Ok(Some(catalog::StoredSegment {
            name,
            tenant: meta.tenant.clone(),
            hour: meta.hour.clone(),
            first: meta.first_seq,
            last: meta.last_seq,
            size,
            sha256: hex::encode(digest),
        }))
    }

    /// Uploads `body` as object `name`, in [`UPLOAD_CHUNK`] parts past one chunk.
    fn put_bytes(&self, name: &str, body: Vec<u8>) -> Result<u64, RequestError> {
        let (store, key, size) = (Arc::clone(&self.store), self.key(name), body.len() as u64);
        let timeout = self.timeout + Duration::from_secs(size >> 20);
        self.run_for(format!("upload {name}"), timeout, async move {
            if body.len() <= UPLOAD_CHUNK {
                return store.put(&key, PutPayload::from(body)).await;
            }
            let upload = store.put_multipart(&key).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK);
            for chunk in body.chunks(UPLOAD_CHUNK) {
                writer.wait_for_capacity(2).await?;
                writer.write(chunk);
            }
            writer.finish().await
        })?;
        Ok(size)
    }

    /// Another writer's series segment as its manifest line names it, read from the cache
    /// directory once fetched; `None` when the line's hour or checksum does not parse.
    fn remote_segment(self: &Arc<Self>, line: &catalog::StoredSegment, writer: &Arc<str>) -> Option<SegmentMeta> {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&line.sha256, &mut sha256).ok()?;
        let remote = RemoteSegment { bucket: Arc::clone(self), writer: Arc::clone(writer), size: line.size, sha256 };
        SegmentMeta::remote(&self.cache_dir, line, remote)
    }

    /// Makes another writer's segment readable at its path: fetched from the bucket unless
    /// cached, checked against its manifest's size and SHA-256, decrypted when sealed, and
    /// kept in the cache as plain segment bytes (which checksum every chunk they hold).
    pub(crate) fn fetch_segment(&self, meta: &SegmentMeta, remote: &RemoteSegment) -> Result<(), SeriesError> {
        if let Ok(found) = fs::metadata(&meta.path) {
            self.touch(&meta.name, found.len());
            return Ok(());
        }
        let unavailable = |why: String| SeriesError::Unavailable { segment: meta.name.clone(), why };
        let damaged = |why: String| SeriesError::Damaged { segment: meta.name.clone(), why };
        let bytes = match self.get(&meta.name, remote.size) {
            Ok(bytes) => bytes,
            Err(RequestError::NotFound) => return Err(unavailable("not in the bucket (removed by its writer)".into())),
            Err(e @ RequestError::TooLarge { .. }) => return Err(damaged(format!("the bucket's object is {e}"))),
            Err(e) => return Err(unavailable(self.error(e.to_string()).to_string())),
        };
        if bytes.len() as u64 != remote.size {
            return Err(damaged(format!("{} bytes where {} were written", bytes.len(), remote.size)));
        }
        let found = parts::sha256(&bytes);
        if found != remote.sha256 {
            return Err(damaged(format!(
                "checksum mismatch: sha256 recorded {}, found {}",
                hex::encode(remote.sha256),
                hex::encode(found)
            )));
        }
        let plain = if super::crypt::is_sealed(&bytes) {
            super::crypt::open_with(self.keys.as_deref(), &meta.name, bytes.to_vec())
                .map_err(|e| unavailable(format!("cannot be decrypted: {e}")))?
        } else {
            bytes.to_vec()
        };
        self.keep(&meta.path, &plain).map_err(|e| unavailable(format!("cannot be kept in {CACHE_DIR}/: {e}")))?;
        self.touch(&meta.name, plain.len() as u64);
        Ok(())
    }

    /// Sets a damaged segment of another writer aside: its cached copy deleted, and the segment
    /// left out of this process's reads.
    pub fn quarantine_segment(&self, meta: &SegmentMeta) {
        self.quarantined.lock().unwrap_or_else(|e| e.into_inner()).insert(meta.name.clone());
        self.evict_segment(meta);
    }

    /// Forgets a cached segment (damaged, or removed by its writer).
    pub fn evict_segment(&self, meta: &SegmentMeta) {
        self.forget_cached(&meta.name, &meta.path);
    }

    /// Uploads a local part's file as it is on disk, [`UPLOAD_CHUNK`] bytes at a time (a
    /// multipart upload past one chunk), so an upload holds a few chunks, not the part. Its
    /// checksum is not computed here: every reader checks it against the manifest.
    fn put_part(&self, meta: &PartMeta) -> Result<u64, RequestError> {
        self.put_file(&self.bucket_name(meta), &meta.path, meta.size)
    }

    /// Uploads the file at `path` (`size` bytes) as object `name`, as [`Bucket::put_part`] does.
    pub(crate) fn put_file(&self, name: &str, path: &Path, size: u64) -> Result<u64, RequestError> {
        use tokio::io::AsyncReadExt;
        let (store, key, path) = (Arc::clone(&self.store), self.key(name), path.to_path_buf());
        let local = |e: io::Error| object_store::Error::Generic { store: "local file", source: Box::new(e) };
        // A slow link gets a second per MiB beyond the request timeout.
        let timeout = self.timeout + Duration::from_secs(size >> 20);
        self.run_for(format!("upload {name}"), timeout, async move {
            let mut file = tokio::fs::File::open(&path).await.map_err(local)?;
            if size <= UPLOAD_CHUNK as u64 {
                let mut bytes = Vec::with_capacity(size as usize);
                file.read_to_end(&mut bytes).await.map_err(local)?;
                return store.put(&key, PutPayload::from(bytes)).await;
            }
            let upload = store.put_multipart(&key).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK);
            let mut buf = vec![0u8; UPLOAD_CHUNK];
            loop {
                let n = file.read(&mut buf).await.map_err(local)?;
                if n == 0 {
                    break;
                }
                writer.wait_for_capacity(2).await?;
                writer.write(&buf[..n]);
            }
            writer.finish().await
        })?;
        Ok(size)
    }

    /// Makes the manifest lines of parts just written (flushed, merged), while their trace keys
    /// are in memory, for the upload that follows.
    pub fn remember(&self, metas: &[&PartMeta]) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for meta in metas {
            let renamed = PartMeta { name: self.bucket_name(meta), ..(*meta).clone() };
            let Ok(line) = catalog::add_line(&renamed) else { continue };
            if entries.bytes + line.len() > ENTRY_BYTES {
                return;
            }
            entries.bytes += line.len();
            if let Some(old) = entries.lines.insert(renamed.name, line) {
                entries.bytes -= old.len();
            }
        }
    }

    /// The manifest line of a part (by bucket name) made by [`Bucket::remember`], if kept.
    fn take_line(&self, name: &str) -> Option<String> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let line = entries.lines.remove(name)?;
        entries.bytes -= line.len();
        Some(line)
    }

    /// Creates the next manifest of this writer; returns its name.
    fn commit(&self, added: &[String], removed: &[String]) -> Result<String, RequestError> {
        let body = Bytes::from(
            catalog::manifest_json(&self.writer, added, removed).map_err(|e| RequestError::Other(e.to_string()))?,
        );
        loop {
            let n = self.manifest_n.fetch_add(1, Ordering::Relaxed) + 1;
            let name = format!("manifests/{:013}-{}-{n:06}.json", now_ms(), self.writer);
            let (store, key, body) = (Arc::clone(&self.store), self.key(&name), body.clone());
            let created = self.run(format!("create {name}"), async move {
                store.put_opts(&key, PutPayload::from(body), PutOptions::from(PutMode::Create)).await
            });
            match created {
                Ok(_) => return Ok(name),
                // Taken (a restart within the same millisecond): the next number.
                Err(RequestError::Exists) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn delete(&self, name: &str) -> Result<(), RequestError> {
        let (store, key) = (Arc::clone(&self.store), self.key(name));
        match self.run(format!("delete {name}"), async move { store.delete(&key).await }) {
            Ok(()) | Err(RequestError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The names of the manifests after `offset` (a name under `manifests/`), in order.
    fn list_manifests(&self, offset: Option<&str>) -> Result<Vec<String>, RequestError> {
        self.list("manifests", offset)
    }

    /// Whether manifest `name` is this writer's ([`manifest_writer`]).
    fn is_own_manifest(&self, name: &str) -> bool {
        manifest_writer(name) == Some(self.writer.as_str())
    }

    /// Refuses a writer id that committed to the bucket before, met again over a data
    /// directory that never committed anything (the store calls it for one that holds nothing;
    /// here, one without `bucket.log`): a new or replaced data directory under a configured
    /// `writer_id`. A collector reads its own parts
    /// from its data directory, never through its manifests, so its earlier parts would be
    /// missing from its answers; and its flush numbers start again, so its new series segments
    /// would take the names — and overwrite the objects — of its old ones, and be read as
    /// covering its old metrics parts.
    pub(crate) fn refuse_reused_writer(&self, data_dir: &Path) -> Result<(), BucketError> {
        match fs::symlink_metadata(data_dir.join(LOG)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            _ => return Ok(()),
        }
        let names = self.list_manifests(None).map_err(|e| self.error(e.to_string()))?;
        let Some(earlier) = names.iter().find(|n| self.is_own_manifest(n)) else { return Ok(()) };
        Err(self.error(format!(
            "writer_id {:?} committed to this bucket before ({earlier}), but this data directory holds nothing it \
             committed (a new or replaced data directory): this collector would not read its earlier parts, and its \
             new series segments would overwrite its old ones. Give it a writer_id never used in this bucket, or \
             leave writer_id unset to have one generated",
            self.writer
        )))
    }

    /// Creates object `name` holding `body`, refused (`Exists`) when it exists.
    pub(crate) fn create(&self, name: &str, body: Bytes) -> Result<(), RequestError> {
        let (store, key) = (Arc::clone(&self.store), self.key(name));
        self.run(format!("create {name}"), async move {
            store.put_opts(&key, PutPayload::from(body), PutOptions::from(PutMode::Create)).await
        })
        .map(|_| ())
    }

    /// Writes object `name` holding `body`, whether or not it exists.
    pub(crate) fn put(&self, name: &str, body: Bytes) -> Result<(), RequestError> {
        let (store, key) = (Arc::clone(&self.store), self.key(name));
        self.run(format!("write {name}"), async move { store.put(&key, PutPayload::from(body)).await }).map(|_| ())
    }

    /// Replaces object `name` with `body` only if it is still the version read
    /// (`Precondition` otherwise).
    pub(crate) fn update(&self, name: &str, body: Bytes, version: Version) -> Result<(), RequestError> {
        let (store, key) = (Arc::clone(&self.store), self.key(name));
        let mode = PutMode::Update(UpdateVersion { e_tag: version.e_tag, version: version.version });
        self.run(format!("update {name}"), async move {
            store.put_opts(&key, PutPayload::from(body), PutOptions::from(mode)).await
        })
        .map(|_| ())
    }

    /// An object's bytes (at most `max`) and the version they are, for [`Bucket::update`].
    pub(crate) fn get_versioned(&self, name: &str, max: u64) -> Result<(Bytes, Version), RequestError> {
        let (store, key) = (Arc::clone(&self.store), self.key(name));
        let got = self.run(format!("read {name}"), async move {
            let answer = store.get(&key).await?;
            if answer.meta.size > max {
                return Ok(Err(answer.meta.size));
            }
            let version = Version { e_tag: answer.meta.e_tag.clone(), version: answer.meta.version.clone() };
            answer.bytes().await.map(|b| Ok((b, version)))
        })?;
        got.map_err(|size| RequestError::TooLarge { size, max })
    }

    /// The names of the objects under `dir/` after `offset` (a name under `dir/`), in order.
    pub(crate) fn list(&self, dir: &str, offset: Option<&str>) -> Result<Vec<String>, RequestError> {
        let (store, dir_key) = (Arc::clone(&self.store), self.key(dir));
        let offset = offset.map(|o| self.key(o));
        let strip = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let mut names: Vec<String> = self.run(format!("list {dir}/"), async move {
            let mut stream = match &offset {
                Some(o) => store.list_with_offset(Some(&dir_key), o),
                None => store.list(Some(&dir_key)),
            };
            let mut out = Vec::new();
            while let Some(item) = stream.next().await {
                out.push(item?.location.to_string());
            }
            Ok(out)
        })?;
        for n in &mut names {
            if let Some(rest) = n.strip_prefix(&strip) {
                *n = rest.to_string();
            }
        }
        let under = format!("{dir}/");
        names.retain(|n| n.starts_with(&under) && n.ends_with(".json"));
        names.sort();
        Ok(names)
    }

    /// The objects under `dir/`, whatever their names, that `keep` takes given their name and
    /// when they were last written (Unix milliseconds, by the store's clock), at most `max` of
    /// them: the listing is filtered as it streams, so a large bucket is not held in memory.
    pub(crate) fn list_where(
        &self,
        dir: &str,
        keep: impl Fn(&str, i64) -> bool + Send + 'static,
        max: usize,
    ) -> Result<Vec<String>, RequestError> {
        let (store, dir_key) = (Arc::clone(&self.store), self.key(dir));
        let strip = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let under = format!("{dir}/");
        self.run(format!("list {dir}/"), async move {
            let mut stream = store.list(Some(&dir_key));
            let mut out = Vec::new();
            while let Some(item) = stream.next().await {
                let meta = item?;
                let key = meta.location.to_string();
                let name = key.strip_prefix(&strip).unwrap_or(&key);
                if name.starts_with(&under) && keep(name, meta.last_modified.timestamp_millis()) {
                    out.push(name.to_string());
                    if out.len() >= max {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    /// When object `name` was last written (Unix milliseconds, by the store's clock).
    pub(crate) fn written_ms(&self, name: &str) -> Result<i64, RequestError> {
        let (store, key) = (Arc::clone(&self.store), self.key(name));
        self.run(format!("head {name}"), async move { store.head(&key).await })
            .map(|meta| meta.last_modified.timestamp_millis())
    }

    /// An object's bytes, refused unread past `max` bytes (its size is in the answer's head).
    pub(crate) fn get(&self, name: &str, max: u64) -> Result<Bytes, RequestError> {
        let (store, key) = (Arc::clone(&self.store), self.key(name));
        let got = self.run(format!("read {name}"), async move {
            let answer = store.get(&key).await?;
            if answer.meta.size > max {
                return Ok(Err(answer.meta.size));
            }
            answer.bytes().await.map(Ok)
        })?;
        got.map_err(|size| RequestError::TooLarge { size, max })
    }

    /// The bytes of a part of another writer: from the cache directory when fetched already,
    /// else from the bucket (then kept in the cache, the least recently read parts deleted
    /// past `cache_bytes`). The caller checks them against the manifest's checksum.
    pub fn fetch(&self, meta: &PartMeta) -> Result<Vec<u8>, PartError> {
        let io_error = |source: io::Error| PartError::Io { part: meta.name.clone(), source };
        match fs::read(&meta.path) {
            Ok(bytes) => {
                self.touch(&meta.name, bytes.len() as u64);
                return Ok(bytes);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
        // An object larger than the part its manifest describes is not read: it is damage.
        let bytes = match self.get(&meta.name, meta.size) {
            Ok(bytes) => bytes.to_vec(),
            Err(RequestError::NotFound) => {
                return Err(io_error(io::Error::new(
                    io::ErrorKind::NotFound,
                    "not in the bucket (removed by its writer)",
                )));
            }
            Err(e @ RequestError::TooLarge { .. }) => {
                return Err(PartError::Damaged { part: meta.name.clone(), why: format!("the bucket's object is {e}") });
            }
            Err(e) => {
                return Err(PartError::Unavailable {
                    part: meta.name.clone(),
                    why: self.error(e.to_string()).to_string(),
                });
            }
        };
        if bytes.len() as u64 <= self.cache_bytes {
            // A part that cannot be cached is still answered from memory.
            let _ = self.keep(&meta.path, &bytes).map(|()| self.touch(&meta.name, bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// Moves a file this collector wrote and uploaded as object `name` into the cache, where a
    /// read of that object finds it.
    pub(crate) fn adopt(&self, name: &str, file: &Path, size: u64) -> io::Result<()> {
        let path = self.cache_dir.join(name);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::rename(file, &path)?;
        self.touch(name, size);
        Ok(())
    }

    fn keep(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        // A name of its own per write: two queries fetching one object never share a file.
        let tmp = path.with_extension(format!("tmp{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, path)
    }

    /// Records a read of a cached part and deletes the least recently read past the limit.
    fn touch(&self, name: &str, size: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.clock += 1;
        let clock = cache.clock;
        if let Some(old) = cache.files.insert(name.to_string(), (size, clock)) {
            cache.bytes -= old.0;
        }
        cache.bytes += size;
        // The file just read stays, even alone past the limit: its reader is about to open it.
        while cache.bytes > self.cache_bytes {
            let Some(oldest) = cache
                .files
                .iter()
                .filter(|(n, _)| n.as_str() != name)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            if let Some((size, _)) = cache.files.remove(&oldest) {
                cache.bytes -= size;
            }
            let _ = fs::remove_file(self.cache_dir.join(&oldest));
        }
    }

    /// Sets a damaged part of another writer aside: its cached copy deleted, and the part left
    /// out of this process's reads (the object stays: it is its writer's).
    pub fn quarantine(&self, meta: &PartMeta) {
        self.quarantined.lock().unwrap_or_else(|e| e.into_inner()).insert(meta.name.clone());
        self.evict(meta);
    }

    /// Forgets a cached part (damaged, or removed by its writer).
    pub fn evict(&self, meta: &PartMeta) {
        self.forget_cached(&meta.name, &meta.path);
    }

    fn forget_cached(&self, name: &str, path: &Path) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((size, _)) = cache.files.remove(name) {
            cache.bytes -= size;
        }
        let _ = fs::remove_file(path);
    }

    /// Wakes the uploader.
    pub fn nudge(&self) {
        let (lock, cv) = &self.wake;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_one();
    }

    fn wait(&self, timeout: Duration) {
        let (lock, cv) = &self.wake;
        let mut woken = lock.lock().unwrap_or_else(|e| e.into_inner());
        if !*woken {
            woken = cv.wait_timeout(woken, timeout).unwrap_or_else(|e| e.into_inner()).0;
        }
        *woken = false;
    }

    /// What readiness says of the bucket: `None` when every local part is committed.
    pub fn status(&self) -> Option<String> {
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match (status.waiting, status.error) {
            (0, None) => None,
            (n, None) => Some(format!("{n} parts waiting for upload to bucket {}", self.url)),
            (n, Some(e)) => Some(format!("{n} parts waiting for upload: {e}")),
        }
    }

    fn set_status(&self, waiting: usize, error: Option<String>) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = UploadStatus { waiting, error };
    }
}

/// The version of an object read, for a write conditional on it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Version {
    e_tag: Option<String>,
    version: Option<String>,
}

/// A failed request.
#[derive(Debug)]
pub(crate) enum RequestError {
    NotFound,
    Exists,
    /// The object is no longer the version a conditional write named.
    Precondition,
    /// An object larger than it may be, not read.
    TooLarge {
        size: u64,
        max: u64,
    },
    Other(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::NotFound => f.write_str("not found"),
            RequestError::Exists => f.write_str("exists already"),
            RequestError::Precondition => f.write_str("changed since it was read"),
            RequestError::TooLarge { size, max } => write!(f, "{size} bytes, more than the {max} it may be"),
            RequestError::Other(what) => f.write_str(what),
        }
    }
}

/// The writer of manifest `name`, `manifests/<ms, 13 digits>-<writer>-<n>.json`: everything
/// between the time and the last `-`, since a writer id may hold `-` itself (`c` and `c-1` are
/// two writers).
fn manifest_writer(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("manifests/")?.strip_suffix(".json")?;
    let (ms, rest) = rest.split_at_checked(13)?;
    let (writer, n) = rest.strip_prefix('-')?.rsplit_once('-')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    (digits(ms) && digits(n) && !writer.is_empty()).then_some(writer)
}

/// One line of `bucket.log`: the bucket names of parts committed as added or removed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Committed {
    manifest: String,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
}

/// The bucket names of the parts committed to the bucket, from `bucket.log` (a torn last
/// line is skipped: its manifest is created again, which readers take as a repeat).
fn read_log(data_dir: &Path) -> io::Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let file = match File::open(data_dir.join(LOG)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e),
    };
    for line in io::BufReader::new(file).lines() {
        let Ok(c) = serde_json::from_str::<Committed>(&line?) else { continue };
        names.extend(c.added);
        for r in c.removed {
            names.remove(&r);
        }
    }
    Ok(names)
}

fn append_log(data_dir: &Path, line: &Committed) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(data_dir.join(LOG))?;
    let mut text = serde_json::to_string(line).map_err(io::Error::other)?;
    text.push('\n');
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// Rewrites `bucket.log` as one line of the names committed (at start, so it does not grow
/// with every flush forever).
fn rewrite_log(data_dir: &Path, names: &BTreeSet<String>) -> io::Result<()> {
    let tmp = data_dir.join(format!("{LOG}.tmp"));
    let line = Committed { manifest: String::new(), added: names.iter().cloned().collect(), removed: Vec::new() };
    let mut text = serde_json::to_string(&line).map_err(io::Error::other)?;
    text.push('\n');
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, data_dir.join(LOG))?;
    super::wal::sync_dir(data_dir)
}

/// A local part as its manifest entry names it, its trace keys read back from the part when
/// they were released from memory (`store::trace_keys`).
fn for_manifest(bucket: &Bucket, meta: &PartMeta) -> Result<PartMeta, PartError> {
    let mut out = PartMeta { name: bucket.bucket_name(meta), ..meta.clone() };
    if out.tenants.iter().any(|t| t.trace_keys.get().is_none()) {
        let bytes = parts::read_verified(meta)?;
        let rows = parts::decode(&meta.name, meta.signal, bytes, None, None)?;
        for t in &mut out.tenants {
            if let Some((tenant, r)) = rows.iter().find(|(tenant, _)| tenant == &t.tenant) {
                t.trace_keys = parts::tenant_rows(tenant, &[r]).trace_keys;
            }
        }
    }
    Ok(out)
}

/// The uploader thread: a pass after each nudge and at least every refresh interval, until the
/// store closes (a last pass then).
pub(crate) fn upload_loop(shared: Arc<Shared>, bucket: Arc<Bucket>) {
    let mut committed = match read_log(&shared.data_dir) {
        Ok(names) => names,
        Err(e) => {
            tracing::error!(%e, "cannot read bucket.log; every local part is committed again");
            BTreeSet::new()
        }
    };
    if let Err(e) = rewrite_log(&shared.data_dir, &committed) {
        tracing::error!(%e, "cannot rewrite bucket.log");
    }
    let mut doomed: Vec<(Instant, String)> = Vec::new();
    let mut backoff = Duration::from_millis(500);
    let mut since_fold = 0u64;
    *bucket.committed.lock().unwrap_or_else(|e| e.into_inner()) = committed.clone();
    loop {
        let closing = bucket.closing.load(Ordering::SeqCst);
        let passed = upload_pass(&shared, &bucket, &mut committed, &mut doomed);
        {
            let mut published = bucket.committed.lock().unwrap_or_else(|e| e.into_inner());
            if *published != committed {
                *published = committed.clone();
            }
        }
        match passed {
            Ok(manifests) => {
                backoff = Duration::from_millis(500);
                since_fold += manifests;
                if since_fold >= bucket.fold_after && !closing {
                    match fold_manifests(&bucket) {
                        Ok(folded) => {
                            since_fold = 0;
                            tracing::info!(folded, "folded this collector's manifests in the bucket");
                        }
                        Err(e) => {
                            // Tried again after half as many more manifests.
                            since_fold = bucket.fold_after / 2;
                            tracing::warn!(error = %bucket.error(e.to_string()), "cannot fold this collector's manifests; tried again later");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "bucket upload failed; the parts stay local and are uploaded on the next pass");
                shared.telemetry.bucket_errors.fetch_add(1, Ordering::Relaxed);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        if closing {
            return;
        }
        let now = Instant::now();
        doomed.retain(|(at, name)| *at > now || bucket.delete(name).is_err());
        bucket.wait(if bucket.status().is_some() { backoff } else { bucket.refresh });
    }
}

/// What one upload pass commits of this collector: a part or a series segment.
enum Local {
    Part(Arc<PartMeta>),
    Segment(Arc<SegmentMeta>),
}

impl Local {
    /// The flush that wrote it: parts and segments are committed in the order written.
    fn seq(&self) -> u64 {
        match self {
            Local::Part(p) => p.seq,
            Local::Segment(s) => s.last_seq,
        }
    }
}

/// One upload pass; returns how many manifests it committed.
fn upload_pass(
    shared: &Shared,
    bucket: &Bucket,
    committed: &mut BTreeSet<String>,
    doomed: &mut Vec<(Instant, String)>,
) -> Result<u64, BucketError> {
    // Parts and segments taken under one lock: a segment and the parts it covers are seen as
    // one state (a reader that sees both reads the parts' series from the segment alone).
    let local: Vec<(String, Local)> = {
        let state = shared.read();
        let parts = state.parts.iter().map(|p| (bucket.bucket_name(p), Local::Part(Arc::clone(p))));
        let segments = state.series.iter().map(|s| (bucket.segment_name(s), Local::Segment(Arc::clone(s))));
        parts.chain(segments).collect()
    };
    let current: HashSet<&str> = local.iter().map(|(n, _)| n.as_str()).collect();
    let mut adds: Vec<&(String, Local)> = local.iter().filter(|(n, _)| !committed.contains(n)).collect();
    adds.sort_by_key(|(_, item)| item.seq());
    let removes: Vec<String> = committed.iter().filter(|n| !current.contains(n.as_str())).cloned().collect();
    if adds.is_empty() && removes.is_empty() {
        bucket.set_status(0, None);
        return Ok(0);
    }
    let mut manifests = 0;
    let waiting = adds.len();
    let fail = |e: String| {
        bucket.set_status(waiting, Some(bucket.error(e.clone()).to_string()));
        bucket.error(e)
    };
    let batches: Vec<&[&(String, Local)]> =
        if adds.is_empty() { vec![&[]] } else { adds.chunks(MAX_PARTS_PER_MANIFEST).collect() };
    let last = batches.len() - 1;
    for (i, batch) in batches.into_iter().enumerate() {
        let started = Instant::now();
        let (mut added, mut lines) = (Vec::with_capacity(batch.len()), Vec::with_capacity(batch.len()));
        for (name, item) in batch.iter() {
            let line = match item {
                Local::Part(meta) => match upload_part(shared, bucket, name, meta) {
                    Ok(Some(line)) => line,
                    Ok(None) => continue,
                    Err(e) => return Err(fail(e)),
                },
                Local::Segment(meta) => match bucket.put_segment(meta) {
                    Ok(Some(line)) => {
                        shared.telemetry.bucket_uploaded_bytes.fetch_add(line.size, Ordering::Relaxed);
                        catalog::series_line(&line).map_err(|e| fail(e.to_string()))?
                    }
                    // Deleted locally since the list was taken (compacted, expired): its
                    // removal is the next pass's.
                    Ok(None) => continue,
                    Err(e) => return Err(fail(e.to_string())),
                },
            };
            added.push(name.clone());
            lines.push(line);
        }
        // A merge's output and its inputs' removal in one manifest (the last when a backlog
        // needs several), so readers never see both or neither.
        let removed: Vec<String> = if i == last { removes.clone() } else { Vec::new() };
        // Objects no manifest names are garbage once `orphan_grace` old (`gc`): parts uploaded
        // that long ago are uploaded again by the next pass rather than named now.
        if started.elapsed() > bucket.orphan_grace / 2 {
            return Err(fail(format!(
                "uploading {} objects took {:.0?}, more than half of orphan_grace; they are uploaded again before \
                 a manifest names them",
                added.len(),
                started.elapsed()
            )));
        }
        let name = bucket.commit(&lines, &removed).map_err(|e| fail(e.to_string()))?;
        let line = Committed { manifest: name.clone(), added, removed };
        append_log(&shared.data_dir, &line)
            .map_err(|e| fail(format!("cannot record manifest {name} in {LOG}: {e}")))?;
        committed.extend(line.added.iter().cloned());
        for r in &line.removed {
            committed.remove(r);
            doomed.push((Instant::now() + DELETE_GRACE, r.clone()));
        }
        shared.telemetry.bucket_manifests.fetch_add(1, Ordering::Relaxed);
        manifests += 1;
        tracing::debug!(manifest = %name, added = line.added.len(), removed = line.removed.len(), "committed to the bucket");
    }
    bucket.set_status(0, None);
    Ok(manifests)
}

/// Test builds only: each part upload waits this many milliseconds first, so a test can act
/// while parts wait for upload.
const UPLOAD_STALL_ENV: &str = "SLO_GATE_FAULT_BUCKET_UPLOAD_STALL_MS";

fn stall_upload() {
    if !cfg!(debug_assertions) {
        return;
    }
    if let Some(ms) = std::env::var(UPLOAD_STALL_ENV).ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Uploads one local part and makes its manifest line; `None` when the part was deleted
/// locally since the pass listed it (merged, expired: its removal is the next pass's).
fn upload_part(shared: &Shared, bucket: &Bucket, name: &str, meta: &PartMeta) -> Result<Option<String>, String> {
    stall_upload();
    match bucket.put_part(meta) {
        Ok(bytes) => {
            shared.telemetry.bucket_uploaded_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        Err(RequestError::Other(_)) if !meta.path.exists() => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    match bucket.take_line(name) {
        Some(line) => Ok(Some(line)),
        None => match for_manifest(bucket, meta) {
            Ok(m) => catalog::add_line(&m).map(Some).map_err(|e| e.to_string()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// Most bytes of lines one folded manifest holds; a writer's folded lines go in as many as
/// they need.
const FOLDED_MANIFEST_BYTES: usize = 64 << 20;

/// Folds this writer's manifests into as few as hold its live parts, then deletes the ones
/// folded, so that a collector starting later lists and reads a few manifests per writer, not
/// one per flush since the bucket began.
///
/// The folded manifests are this writer's manifests applied in order (a part added then removed
/// is in neither; a removal of a part added elsewhere is kept), committed as new manifests;
/// a reader that applied the old ones takes them as repeats. They are made by the uploader
/// thread between its passes, so no manifest of this writer is committed meanwhile; a crash
/// before the deletions leaves both, which fold again. Returns how many manifests were folded.
fn fold_manifests(bucket: &Bucket) -> Result<usize, RequestError> {
    let own: Vec<String> = bucket.list_manifests(None)?.into_iter().filter(|n| bucket.is_own_manifest(n)).collect();
    if own.len() < 2 {
        return Ok(0);
    }
    // Part name → its add line, in the order added; names removed whose add was not folded.
    let mut live: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut removed: BTreeSet<String> = BTreeSet::new();
    let mut order = 0u64;
    for name in &own {
        let bytes = match bucket.get(name, MAX_MANIFEST_BYTES) {
            Ok(bytes) => bytes,
            Err(RequestError::NotFound) => continue,
            Err(e) => return Err(e),
        };
        let Some(lines) = catalog::manifest_lines(&bytes) else {
            return Err(RequestError::Other(format!("{name} does not parse: not folded")));
        };
        for line in lines {
            match line {
                catalog::ManifestLine::Add { name, json } => {
                    removed.remove(&name);
                    order += 1;
                    live.entry(name).or_insert((order, json));
                }
                catalog::ManifestLine::Remove { name } => {
                    if live.remove(&name).is_none() {
                        removed.insert(name);
                    }
                }
            }
        }
    }
    let mut adds: Vec<(u64, String)> = live.into_values().collect();
    adds.sort();
    let mut batches: Vec<Vec<String>> = vec![Vec::new()];
    let mut bytes = 0usize;
    for (_, line) in adds {
        if bytes + line.len() > FOLDED_MANIFEST_BYTES && !batches.last().is_some_and(Vec::is_empty) {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += line.len();
        batches.last_mut().expect("one batch at least").push(line);
    }
    let removed: Vec<String> = removed.into_iter().collect();
    let last = batches.len() - 1;
    for (i, batch) in batches.iter().enumerate() {
        let removals: &[String] = if i == last { &removed } else { &[] };
        bucket.commit(batch, removals)?;
    }
    for name in &own {
        bucket.delete(name)?;
    }
    Ok(own.len())
}

/// What the sync thread knows of other writers' parts.
#[derive(Debug, Default)]
pub(crate) struct Remotes {
    /// Manifests applied (or unreadable), by name.
    seen: BTreeSet<String>,
    parts: BTreeMap<String, Arc<PartMeta>>,
    /// Other writers' series segments, by bucket name.
    series: BTreeMap<String, Arc<SegmentMeta>>,
    /// Names a manifest removed: an add of one seen later (out of order) is ignored.
    removed: HashSet<String>,
    /// The last compaction-log entry applied (`compact`).
    log_seq: u64,
    /// This writer's parts merged in the bucket by a compactor, out of the store, whose files
    /// wait for the queries still reading them (as a local merge's inputs do).
    handed_over: Vec<(Arc<PartMeta>, Instant)>,
    /// Tenant deletions requested in the bucket (`deletions`).
    pub(crate) deletions: deletions::Listing,
    /// The flusher, which applies a deletion request to the data directory (`store::delete`);
    /// `None` in the pass at start-up, before the threads run.
    pub(crate) flusher: Option<std::sync::mpsc::SyncSender<super::flush::Request>>,
    /// Set for the pass at start-up of an empty data directory: the deletion requests listed
    /// are recorded as applied, with nothing to delete.
    pub(crate) settle_deletions: bool,
    /// When the last pass that listed every manifest ran: one does at least every
    /// [`FULL_LISTING_EVERY`], so that `seen` and `removed` shed what is gone.
    last_full: Option<Instant>,
}

/// Longest time between two sync passes that list every manifest.
const FULL_LISTING_EVERY: Duration = Duration::from_secs(3600);

/// What applying manifests took out of reads.
#[derive(Debug, Default)]
struct Gone {
    parts: Vec<Arc<PartMeta>>,
    series: Vec<Arc<SegmentMeta>>,
}

impl Remotes {
    /// Applies one manifest of another writer (`tag` marks its parts as read from the bucket,
    /// `segment` makes its series segments): a part or segment added once is one however many
    /// manifests add it, and a name removed stays removed, even when a manifest adding it is
    /// read later. Adds what it removed to `gone`.
    fn apply(
        &mut self,
        manifest: Manifest,
        tag: impl Fn(&mut PartMeta),
        segment: impl Fn(&catalog::StoredSegment) -> Option<SegmentMeta>,
        gone: &mut Gone,
    ) {
        for mut meta in manifest.added {
            if self.removed.contains(&meta.name) || self.parts.contains_key(&meta.name) {
                continue;
            }
            tag(&mut meta);
            self.parts.insert(meta.name.clone(), Arc::new(meta));
        }
        for line in &manifest.series {
            if self.removed.contains(&line.name) || self.series.contains_key(&line.name) {
                continue;
            }
            match segment(line) {
                Some(meta) => {
                    self.series.insert(line.name.clone(), Arc::new(meta));
                }
                None => {
                    tracing::error!(segment = %line.name, "bucket manifest names a segment it does not describe; not read")
                }
            }
        }
        for name in manifest.removed {
            if let Some(meta) = self.parts.remove(&name) {
                gone.parts.push(meta);
            }
            if let Some(meta) = self.series.remove(&name) {
                gone.series.push(meta);
            }
            self.removed.insert(name);
        }
    }

    /// After a listing of every manifest (`listed`, in order): forgets the manifests seen
    /// that are gone (folded by their writers), and the removals of parts and segments whose
    /// hour ended before `cutoff` (Unix nanoseconds; past retention wherever an add of them is
    /// still read), so a long-running reader's memory follows what the bucket holds, not what it
    /// ever held.
    fn forget_gone(&mut self, listed: &[String], cutoff: u64) {
        self.seen.retain(|name| listed.binary_search(name).is_ok());
        self.removed.retain(|name| checkpoint::hour_end(name).is_none_or(|end| end >= cutoff));
    }

    /// Where a listing of the manifests starts: at the beginning when `full` or nothing was
    /// seen yet, else [`LIST_WINDOW`] before the newest manifest seen (writers' clocks differ).
    fn listing_offset(&self, full: bool) -> Option<String> {
        let newest = if full { None } else { self.seen.last() }?;
        let ms: u64 = newest.strip_prefix("manifests/")?.get(..13)?.parse().ok()?;
        Some(format!("manifests/{:013}", ms.saturating_sub(LIST_WINDOW.as_millis() as u64)))
    }

    /// [`Remotes::apply`] for a manifest (or log entry) of `writer` read from `bucket`: its
    /// parts and segments are read from the bucket, as that writer's.
    fn apply_from(&mut self, bucket: &Arc<Bucket>, writer: &str, manifest: Manifest, gone: &mut Gone) {
        let writer: Arc<str> = Arc::from(writer);
        let remote = Remote { bucket: Arc::clone(bucket), writer: Arc::clone(&writer) };
        self.apply(
            manifest,
            |meta| meta.remote = Some(remote.clone()),
            |line| bucket.remote_segment(line, &writer),
            gone,
        );
    }
}

/// Lists the manifests (all of them the first time, when the garbage collector asks and at
/// least every [`FULL_LISTING_EVERY`], then
/// those after the newest seen less [`LIST_WINDOW`]), applies those of other writers not seen yet, and publishes the result as
/// the store's remote parts. Returns how many manifests were applied.
pub(crate) fn sync_pass(shared: &Shared, bucket: &Arc<Bucket>, remotes: &mut Remotes) -> Result<usize, BucketError> {
    // Asked for by the garbage collector (`gc`): every manifest listed, and the pass's start
    // recorded once it has read them all.
    let due = remotes.last_full.is_none_or(|at| at.elapsed() >= FULL_LISTING_EVERY);
    let full = bucket.full_listing.swap(false, Ordering::SeqCst) || remotes.seen.is_empty() || due;
    let started = Instant::now();
    let passed = sync_listed(shared, bucket, remotes, full);
    match &passed {
        Ok(_) if full => *bucket.listed_in_full.lock().unwrap_or_else(|e| e.into_inner()) = Some(started),
        Err(_) if full => bucket.full_listing.store(true, Ordering::SeqCst),
        _ => {}
    }
    passed
}

/// [`sync_pass`], listing every manifest when `full`.
fn sync_listed(shared: &Shared, bucket: &Arc<Bucket>, remotes: &mut Remotes, full: bool) -> Result<usize, BucketError> {
    let (hidden, unapplied) =
        deletions::list(bucket, &mut remotes.deletions).map_err(|e| bucket.error(e.to_string()))?;
    let names =
        bucket.list_manifests(remotes.listing_offset(full).as_deref()).map_err(|e| bucket.error(e.to_string()))?;
    if full {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let keep = shared.settings.retention + checkpoint::REMOVAL_MARGIN;
        remotes.forget_gone(&names, now.saturating_sub(keep.as_nanos() as u64));
        remotes.last_full = Some(Instant::now());
    }
    let mut gone = Gone::default();
    let mut merged_away: HashSet<String> = HashSet::new();
    let mut applied = apply_manifests(bucket, remotes, names, &mut gone)?;
    // The compaction log, in order, every entry (this writer's merges included), from a
    // checkpoint of it at the first pass or when the next entry is gone.
    let entries = checkpoint::apply_log(bucket, remotes, &mut gone, &mut merged_away)?;
    if entries > 0 {
        // The manifests once more: an entry's compactor saw every manifest created before the
        // entry, and so must this reader before it answers from the entry. A merge of a
        // writer's metrics parts relies on the segment that covers them, which a manifest
        // created while this pass listed may have committed.
        let names = bucket.list_manifests(remotes.listing_offset(false).as_deref());
        applied += apply_manifests(bucket, remotes, names.map_err(|e| bucket.error(e.to_string()))?, &mut gone)?;
    }
    applied += entries;
    if applied > 0 || bucket.republish.swap(false, Ordering::SeqCst) {
        let quarantined = bucket.quarantined.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // Parts past retention are left out as the collector's own are deleted.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let cutoff = now.saturating_sub(shared.settings.retention.as_nanos() as u64);
        let (remote, expired): (Vec<Arc<PartMeta>>, Vec<Arc<PartMeta>>) = remotes
            .parts
            .values()
            .filter(|p| !quarantined.contains(&p.name))
            .cloned()
            .partition(|p| p.max_time() >= cutoff);
        let cutoff_ms = i64::try_from(cutoff / 1_000_000).unwrap_or(i64::MAX);
        let (remote_series, expired_series): (Vec<Arc<SegmentMeta>>, Vec<Arc<SegmentMeta>>) = remotes
            .series
            .values()
            .filter(|s| !quarantined.contains(&s.name))
            .cloned()
            .partition(|s| s.hour_start_ms.saturating_add(series::HOUR_MS) > cutoff_ms);
        // This writer's parts a compactor merged leave its reads as the merge enters them.
        let handed: Vec<Arc<PartMeta>> = {
            let mut state = shared.write();
            state.remote = remote;
            state.remote_expired = expired;
            state.remote_series = remote_series;
            state.remote_series_expired = expired_series;
            let (handed, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut state.parts)
                .into_iter()
                .partition(|p| !merged_away.is_empty() && merged_away.contains(&bucket.bucket_name(p)));
            state.parts = keep;
            bucket.log_seq.store(remotes.log_seq, Ordering::SeqCst);
            handed
        };
        for meta in gone.parts {
            shared.span_indexes.forget(&meta.name);
            bucket.evict(&meta);
        }
        for meta in gone.series {
            shared.series_indexes.forget(&meta.name);
            bucket.evict_segment(&meta);
        }
        for part in handed {
            shared.span_indexes.forget(&part.name);
            // Out of the catalog now; a crash before its file is deleted enters the file again
            // at the next start, and the start's listing of the log takes it out again.
            if let Err(e) = shared.catalog.remove(&part.name) {
                tracing::error!(part = %part.name, %e, "cannot record a part merged in the bucket in the catalog");
            }
            remotes.handed_over.push((part, Instant::now()));
        }
        shared.nudge_bucket();
    }
    // Deletions, listed before the manifests (see `deletions::list`): what readers leave
    // out, and the requests this collector has not applied to its own data directory yet.
    deletions::publish(bucket, hidden);
    if std::mem::take(&mut remotes.settle_deletions) {
        for request in &unapplied {
            if let Err(e) = deletions::record_applied(bucket, &shared.data_dir, &request.stem) {
                tracing::error!(request = %request.stem, %e, "cannot record a tenant deletion as applied");
            }
        }
    } else if let Some(flusher) = &remotes.flusher {
        for request in unapplied {
            apply_deletion(shared, bucket, flusher, &request);
        }
    }
    remotes.handed_over.retain(|(part, since)| {
        if Arc::strong_count(part) > 1 && since.elapsed() < super::compact::GRACE {
            return true;
        }
        match fs::remove_file(&part.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(part = %part.name, %e, "cannot delete a part merged in the bucket"),
        }
        false
    });
    Ok(applied)
}

/// Reads and applies the manifests of other writers among `names` not seen yet (`full`
/// listings and partial ones alike). Returns how many were applied.
fn apply_manifests(
    bucket: &Arc<Bucket>,
    remotes: &mut Remotes,
    names: Vec<String>,
    gone: &mut Gone,
) -> Result<usize, BucketError> {
    let mut applied = 0;
    for name in names {
        if remotes.seen.contains(&name) {
            continue;
        }
        if bucket.is_own_manifest(&name) {
            remotes.seen.insert(name);
            continue;
        }
        let bytes = match bucket.get(&name, MAX_MANIFEST_BYTES) {
            Ok(bytes) => bytes,
            // Folded by its writer since the listing: the folded manifests are listed later.
            Err(RequestError::NotFound) => {
                remotes.seen.insert(name);
                continue;
            }
            Err(e @ RequestError::TooLarge { .. }) => {
                tracing::error!(manifest = %name, %e, "bucket manifest too large; its parts are not read");
                bucket.skipped_manifest.store(true, Ordering::SeqCst);
                remotes.seen.insert(name);
                continue;
            }
            Err(e) => return Err(bucket.error(e.to_string())),
        };
        match catalog::manifest_from_json(&bytes, &bucket.cache_dir, bucket.keys.as_ref()) {
            Some((writer, manifest)) => {
                remotes.apply_from(bucket, &writer, manifest, gone);
                applied += 1;
            }
            None => {
                tracing::error!(manifest = %name, "bucket manifest does not parse; its parts are not read");
                bucket.skipped_manifest.store(true, Ordering::SeqCst);
            }
        }
        remotes.seen.insert(name);
    }
    Ok(applied)
}

/// Deletes a tenant that another collector was asked to delete from this one's data
/// directory (its uploader then removes its objects), and records the request as applied; a
/// failure is logged and retried at the next pass.
fn apply_deletion(
    shared: &Shared,
    bucket: &Bucket,
    flusher: &std::sync::mpsc::SyncSender<super::flush::Request>,
    request: &deletions::Entry,
) {
    // Forgotten before and after: counts of its spans taken meanwhile are not written again.
    let forget = |shared: &Shared| shared.forget_tenant(&request.tenant);
    let _ = forget(shared);
    match super::flush::delete_tenant(flusher, &request.tenant) {
        Ok(report) => {
            for warning in forget(shared) {
                tracing::warn!(request = %request.stem, tenant = %request.tenant, %warning, "a deleted tenant's state was not forgotten");
            }
            tracing::info!(request = %request.stem, tenant = %request.tenant, ?report, "tenant deleted as the bucket asks");
            if let Err(e) = deletions::record_applied(bucket, &shared.data_dir, &request.stem) {
                tracing::error!(request = %request.stem, %e, "cannot record a tenant deletion as applied; applied again");
            }
        }
        // The store is closing (a wait for the uploader given up, or the flusher gone): the
        // next start applies it.
        Err(_) if shared.stopping.load(Ordering::Relaxed) => {}
        Err(super::error::StoreError::Stopped(_)) => {}
        Err(e) => tracing::error!(request = %request.stem, %e, "cannot delete the tenant the bucket asks to; retried"),
    }
}

/// The sync thread: a pass every refresh interval until the store closes.
pub(crate) fn sync_loop(shared: Arc<Shared>, bucket: Arc<Bucket>, mut remotes: Remotes) {
    let mut failing = false;
    while !shared.closing.load(Ordering::Relaxed) {
        let started = Instant::now();
        match sync_pass(&shared, &bucket, &mut remotes) {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("bucket manifests listed again");
            }
            Ok(_) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot list the bucket's manifests; answers lack parts committed since");
                }
                failing = true;
                shared.telemetry.bucket_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let rest = bucket.refresh.saturating_sub(started.elapsed());
        // Sleeps in short steps so that closing the store is not held up.
        let until = Instant::now() + rest;
        while Instant::now() < until && !shared.closing.load(Ordering::Relaxed) {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(200)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::Tenant;

    /// A listing of every manifest leaves `seen` with the manifests still there and `removed`
    /// with the names whose hour is not long past retention.
    #[test]
    fn a_full_listing_sheds_manifests_folded_away_and_removals_long_past() {
        let mut remotes = Remotes::default();
        for name in
            ["manifests/0000000000001-a-1.json", "manifests/0000000000002-a-2.json", "manifests/0000000000003-b-1.json"]
        {
            remotes.seen.insert(name.to_string());
        }
        for name in [
            "parts/t/traces/2026-01-01T00/a-1-ab.parquet",
            "series/t/2026-01-01T00/a-1-2.sgs",
            "parts/t/traces/2026-12-01T00/a-2-ab.parquet",
        ] {
            remotes.removed.insert(name.to_string());
        }
        let listed = ["manifests/0000000000003-b-1.json".to_string(), "manifests/0000000000004-a-3.json".to_string()];
        remotes.forget_gone(&listed, parts::hour_start("2026-06-01T00").unwrap());
        assert_eq!(remotes.seen.iter().collect::<Vec<_>>(), ["manifests/0000000000003-b-1.json"]);
        assert_eq!(
            remotes.removed.iter().map(String::as_str).collect::<Vec<_>>(),
            ["parts/t/traces/2026-12-01T00/a-2-ab.parquet"]
        );
    }

    /// A metrics part is read through a series segment of its own writer only: by flush number
    /// and hour, and a part in the bucket in this collector's name (its metrics merged there by
    /// a compactor) through this collector's own segments.
    #[test]
    fn a_metrics_part_is_covered_by_segments_of_its_own_writer_only() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let bucket = Bucket::over(store, String::new(), "a".into(), &BucketConfig::new("s3://b"), dir.path(), None)
            .expect("an in-memory store honours create-only writes");
        let tenant = Tenant::parse("shop").unwrap();
        let hour = "2026-12-01T10";
        let segment = |writer: Option<&str>| SegmentMeta {
            name: format!("series/shop/{hour}/x.sgs"),
            path: dir.path().join("x.sgs"),
            tenant: tenant.clone(),
            hour: hour.to_string(),
            hour_start_ms: 0,
            first_seq: 5,
            last_seq: 9,
            remote: writer.map(|w| RemoteSegment {
                bucket: Arc::clone(&bucket),
                writer: Arc::from(w),
                size: 1,
                sha256: [0; 32],
            }),
        };
        let part = |writer: Option<&str>, seq: u64| PartMeta {
            name: format!("parts/shop/metrics/{hour}/p.parquet"),
            path: dir.path().join("p.parquet"),
            signal: crate::signal::Signal::Metrics,
            seq,
            size: 1,
            crc32: 0,
            sha256: None,
            keys: None,
            tenants: Vec::new(),
            remote: writer.map(|w| Remote { bucket: Arc::clone(&bucket), writer: Arc::from(w) }),
        };
        let own = segment(None);
        assert!(own.covers_part(&part(None, 7), hour));
        assert!(!own.covers_part(&part(None, 10), hour), "another flush");
        assert!(!own.covers_part(&part(None, 7), "2026-12-01T11"), "another hour");
        assert!(own.covers_part(&part(Some("a"), 7), hour), "merged in the bucket in this collector's name");
        assert!(!own.covers_part(&part(Some("b"), 7), hour), "another writer's part");
        let theirs = segment(Some("b"));
        assert!(theirs.covers_part(&part(Some("b"), 9), hour));
        assert!(!theirs.covers_part(&part(Some("a"), 9), hour), "this collector's part");
        assert!(!theirs.covers_part(&part(None, 9), hour), "this collector's part");
        assert!(!segment(Some("c")).covers_part(&part(Some("b"), 9), hour), "a third writer's segment");
    }

    /// Writer ids where one begins the other and a `-` (`c`, `c-1`): each takes only its own
    /// manifests for its own — it folds (and deletes) no other writer's, reads every other
    /// writer's, and is refused over a new data directory only for its own.
    #[test]
    fn a_writer_whose_id_begins_anothers_leaves_the_others_manifests_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let config = BucketConfig::new("s3://b");
        let open = |writer: &str| {
            Bucket::over(Arc::clone(&store), String::new(), writer.into(), &config, dir.path(), None).unwrap()
        };
        let (c, c1) = (open("c"), open("c-1"));
        let removed = ["parts/shop/traces/2026-12-01T10/x.parquet".to_string()];
        let theirs = [c1.commit(&[], &removed).unwrap(), c1.commit(&[], &removed).unwrap()];
        for name in &theirs {
            assert_eq!(manifest_writer(name), Some("c-1"), "{name}");
            assert!(c1.is_own_manifest(name) && !c.is_own_manifest(name), "{name}");
        }
        assert_eq!(fold_manifests(&c).unwrap(), 0, "c has no manifests to fold");
        assert_eq!(c.list_manifests(None).unwrap(), theirs.to_vec(), "c-1's manifests are still there");
        let empty = tempfile::tempdir().unwrap();
        c.refuse_reused_writer(empty.path()).expect("c never committed");
        let refused = c1.refuse_reused_writer(empty.path()).unwrap_err().to_string();
        assert!(refused.contains("writer_id \"c-1\" committed to this bucket before (manifests/"), "{refused}");
        std::fs::write(empty.path().join(LOG), "").unwrap();
        c1.refuse_reused_writer(empty.path()).expect("a data directory that committed before");
        for bad in ["manifests/1796575592775-c.json", "manifests/179657559277-c-000001.json", "manifests/x.json"] {
            assert_eq!(manifest_writer(bad), None, "{bad}");
        }
        assert_eq!(manifest_writer("manifests/1796575592775-a-b-c-1234567.json"), Some("a-b-c"));
    }

    #[test]
    fn urls_name_a_bucket_and_a_clean_prefix() {
        assert_eq!(parse_url("s3://telemetry").unwrap(), (Scheme::S3, "telemetry".into(), String::new()));
        assert_eq!(
            parse_url("s3://telemetry/slo-gate/prod/").unwrap(),
            (Scheme::S3, "telemetry".into(), "slo-gate/prod".into())
        );
        assert_eq!(parse_url("az://logs/slo-gate").unwrap(), (Scheme::Azure, "logs".into(), "slo-gate".into()));
        for bad in ["telemetry", "http://x/y", "s3://", "s3:///p", "s3://b/a/../c", "s3://b/a//c", "gs://b", "az://"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(parse_url("gs://b/p").unwrap_err().contains("Google Cloud Storage is not supported yet"));
    }

    #[test]
    fn writer_ids_are_kept_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let config = |id: Option<&str>| BucketConfig {
            url: "s3://b".into(),
            endpoint: None,
            region: "us-east-1".into(),
            virtual_hosted_style: false,
            writer_id: id.map(str::to_string),
            refresh_interval: slo_contracts::HumanDuration(Duration::from_secs(1)),
            request_timeout: slo_contracts::HumanDuration(Duration::from_secs(1)),
            cache_bytes: 1 << 20,
            manifest_fold_after: 200,
            compaction: true,
            compaction_lease: slo_contracts::HumanDuration(Duration::from_secs(60)),
            orphan_grace: slo_contracts::HumanDuration(Duration::from_secs(3600)),
            log_checkpoint_every: 1000,
        };
        let first = writer_id(&config(None), dir.path()).unwrap();
        assert!(valid_writer(&first));
        assert_eq!(writer_id(&config(None), dir.path()).unwrap(), first, "kept in the data directory");
        assert_eq!(writer_id(&config(Some("collector-a")), dir.path()).unwrap(), "collector-a");
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(writer_id(&config(Some(bad)), dir.path()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_orphan_grace_shorter_than_a_lease_or_an_upload_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let grace = |lease: u64, grace: u64| {
            let mut config = BucketConfig::new("s3://b");
            config.compaction_lease = slo_contracts::HumanDuration(Duration::from_secs(lease));
            config.orphan_grace = slo_contracts::HumanDuration(Duration::from_secs(grace));
            Bucket::open(&config, dir.path(), None).map(|_| ()).map_err(|e| e.to_string())
        };
        // Twice the lease (60 s), twice refresh (10 s) + timeout (30 s): 120 s and 80 s.
        let err = grace(60, 100).unwrap_err();
        assert!(err.contains("orphan_grace = \"1m40s\" is too short: at least \"2m\""), "{err}");
        let err = grace(10, 60).unwrap_err();
        assert!(err.contains("at least \"1m20s\""), "{err}");
    }

    fn part(name: &str) -> PartMeta {
        PartMeta {
            name: name.to_string(),
            path: PathBuf::from(name),
            signal: crate::signal::Signal::Logs,
            seq: 1,
            size: 10,
            crc32: 0,
            sha256: Some([1; 32]),
            keys: None,
            tenants: Vec::new(),
            remote: None,
        }
    }

    fn names(remotes: &Remotes) -> Vec<&str> {
        remotes.parts.keys().map(String::as_str).collect()
    }

    #[test]
    fn manifests_apply_once_by_name_and_a_removal_wins_over_a_late_add() {
        let mut remotes = Remotes::default();
        let manifest = |added: &[&str], removed: &[&str]| Manifest {
            added: added.iter().map(|n| part(n)).collect(),
            series: Vec::new(),
            removed: removed.iter().map(|n| n.to_string()).collect(),
        };
        let apply = |remotes: &mut Remotes, m: Manifest| {
            let mut gone = Gone::default();
            remotes.apply(m, |meta: &mut PartMeta| meta.seq = 99, |_| None, &mut gone);
            gone.parts.iter().map(|p| p.name.clone()).collect::<Vec<_>>()
        };
        assert!(apply(&mut remotes, manifest(&["p/a", "p/b"], &[])).is_empty());
        assert!(remotes.parts.values().all(|p| p.seq == 99), "parts are tagged as remote");
        // Created again after a crash before its log line: still two parts.
        apply(&mut remotes, manifest(&["p/a", "p/b"], &[]));
        assert_eq!(names(&remotes), ["p/a", "p/b"]);
        // A merge: its output and its inputs' removal in one manifest.
        let gone = apply(&mut remotes, manifest(&["p/ab"], &["p/a", "p/b"]));
        assert_eq!(gone, ["p/a", "p/b"]);
        assert_eq!(names(&remotes), ["p/ab"]);
        // The first manifest read again, late (a listing window overlap): nothing comes back.
        apply(&mut remotes, manifest(&["p/a", "p/b"], &[]));
        assert_eq!(names(&remotes), ["p/ab"]);
        // A removal read before the add it undoes.
        apply(&mut remotes, manifest(&[], &["p/c"]));
        apply(&mut remotes, manifest(&["p/c"], &[]));
        assert_eq!(names(&remotes), ["p/ab"]);
    }

    fn segment_line(name: &str, first: u64, last: u64) -> catalog::StoredSegment {
        catalog::StoredSegment {
            name: name.to_string(),
            tenant: Tenant::parse("t").unwrap(),
            hour: "2026-12-05T10".into(),
            first,
            last,
            size: 10,
            sha256: hex::encode([7u8; 32]),
        }
    }

    #[test]
    fn segments_in_manifests_round_trip_apply_once_and_are_removed_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = segment_line("series/t/2026-12-05T10/w-00000000000000000001-00000000000000000001.sgs", 1, 1);
        let ab = segment_line("series/t/2026-12-05T10/w-00000000000000000001-00000000000000000002.sgs", 1, 2);
        let lines = vec![catalog::series_line(&a).unwrap()];
        let json = catalog::manifest_json("w", &lines, &[]).unwrap();
        let (_, manifest) = catalog::manifest_from_json(&json, dir.path(), None).expect("parses");
        assert_eq!(manifest.series, std::slice::from_ref(&a));
        assert!(manifest.added.is_empty());
        // Folding keeps a segment's line as it was.
        let read = catalog::manifest_lines(&json).unwrap();
        assert!(matches!(&read[0], catalog::ManifestLine::Add { name, .. } if name == &a.name));

        // Segments without a bucket are enough to follow adds and removals.
        let make = |line: &catalog::StoredSegment| {
            Some(SegmentMeta {
                name: line.name.clone(),
                path: dir.path().join(&line.name),
                tenant: line.tenant.clone(),
                hour: line.hour.clone(),
                hour_start_ms: 0,
                first_seq: line.first,
                last_seq: line.last,
                remote: None,
            })
        };
        let mut remotes = Remotes::default();
        let mut gone = Gone::default();
        let with = |series: Vec<catalog::StoredSegment>, removed: &[&str]| Manifest {
            added: Vec::new(),
            series,
            removed: removed.iter().map(|n| n.to_string()).collect(),
        };
        remotes.apply(with(vec![a.clone()], &[]), |_| {}, make, &mut gone);
        remotes.apply(with(vec![a.clone()], &[]), |_| {}, make, &mut gone);
        assert_eq!(remotes.series.len(), 1, "a repeated add is one segment");
        // A compaction of the writer's segments: the output in, its sources out, in one manifest.
        remotes.apply(with(vec![ab.clone()], &[&a.name]), |_| {}, make, &mut gone);
        assert_eq!(remotes.series.keys().collect::<Vec<_>>(), [&ab.name]);
        assert_eq!(gone.series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), [a.name.as_str()]);
        // Read again late: what was removed stays removed.
        remotes.apply(with(vec![a.clone()], &[]), |_| {}, make, &mut gone);
        assert_eq!(remotes.series.len(), 1);

        // Lines that would place a segment outside the cache's series directory, or that do
        // not describe one, make the manifest unreadable.
        for bad in [
            segment_line("series/t/2026-12-05T10/../../../x.sgs", 1, 1),
            segment_line("series/u/2026-12-05T10/w-1-1.sgs", 1, 1),
            segment_line("series/t/2026-12-05T10/w-1-1.parquet", 1, 1),
            segment_line("series/t/2026-12-05T10/w-2-1.sgs", 2, 1),
            catalog::StoredSegment { sha256: "zz".into(), ..a.clone() },
            catalog::StoredSegment { hour: "yesterday".into(), name: "series/t/yesterday/w.sgs".into(), ..a.clone() },
        ] {
            let json = catalog::manifest_json("w", &[catalog::series_line(&bad).unwrap()], &[]).unwrap();
            assert!(catalog::manifest_from_json(&json, dir.path(), None).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn manifests_round_trip_their_adds_and_removes_and_refuse_paths_outside_parts() {
        let dir = tempfile::tempdir().unwrap();
        let lines = vec![catalog::add_line(&part("parts/t/logs/h/w-1-ab.parquet")).unwrap()];
        let removed = vec!["parts/t/logs/h/w-0-cd.parquet".to_string()];
        let json = catalog::manifest_json("w\"1", &lines, &removed).unwrap();
        let (writer, manifest) = catalog::manifest_from_json(&json, dir.path(), None).expect("parses");
        assert_eq!(writer, "w\"1");
        assert_eq!(manifest.added.len(), 1);
        assert_eq!(manifest.added[0].name, "parts/t/logs/h/w-1-ab.parquet");
        assert_eq!(manifest.added[0].path, dir.path().join("parts/t/logs/h/w-1-ab.parquet"));
        assert_eq!(manifest.removed, removed);
        let empty = catalog::manifest_json("w", &[], &[]).unwrap();
        assert!(catalog::manifest_from_json(&empty, dir.path(), None).is_some_and(|(_, m)| m.added.is_empty()));
        // A name that would place a fetched part outside the cache directory: not a manifest.
        let outside = vec![catalog::add_line(&part("parts/../../etc/x.parquet")).unwrap()];
        let json = catalog::manifest_json("w", &outside, &[]).unwrap();
        assert!(catalog::manifest_from_json(&json, dir.path(), None).is_none());
    }

    #[test]
    fn a_manifests_lines_read_for_folding_write_the_same_manifest_again() {
        let dir = tempfile::tempdir().unwrap();
        let lines = vec![
            catalog::add_line(&part("parts/t/logs/h/w-1-ab.parquet")).unwrap(),
            catalog::add_line(&part("parts/t/logs/h/w-2-ef.parquet")).unwrap(),
        ];
        let json = catalog::manifest_json("w", &lines, &["parts/t/logs/h/w-0-cd.parquet".to_string()]).unwrap();
        let read = catalog::manifest_lines(&json).expect("parses");
        let adds: Vec<String> = read
            .iter()
            .filter_map(|l| match l {
                catalog::ManifestLine::Add { json, .. } => Some(json.clone()),
                catalog::ManifestLine::Remove { .. } => None,
            })
            .collect();
        assert_eq!(read[2], catalog::ManifestLine::Remove { name: "parts/t/logs/h/w-0-cd.parquet".into() });
        let again = catalog::manifest_json("w", &adds, &["parts/t/logs/h/w-0-cd.parquet".to_string()]).unwrap();
        let (_, first) = catalog::manifest_from_json(&json, dir.path(), None).unwrap();
        let (_, second) = catalog::manifest_from_json(&again, dir.path(), None).unwrap();
        assert_eq!(first.added, second.added);
        assert_eq!(first.removed, second.removed);
        assert!(
            catalog::manifest_lines(b"{\"writer\":\"a\",\"lines\":[{\"op\":\"merging\",\"output\":\"x\"}]}").is_none()
        );
        assert!(catalog::manifest_lines(b"not json").is_none());
    }

    #[test]
    fn the_log_of_committed_names_survives_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let line = |added: &[&str], removed: &[&str]| Committed {
            manifest: "m".into(),
            added: added.iter().map(|s| s.to_string()).collect(),
            removed: removed.iter().map(|s| s.to_string()).collect(),
        };
        append_log(dir.path(), &line(&["a", "b"], &[])).unwrap();
        append_log(dir.path(), &line(&["c"], &["a"])).unwrap();
        let mut f = OpenOptions::new().append(true).open(dir.path().join(LOG)).unwrap();
        f.write_all(b"{\"manifest\":\"x\",\"added\":[\"d").unwrap();
        let names = read_log(dir.path()).unwrap();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["b", "c"]);
        rewrite_log(dir.path(), &read_log(dir.path()).unwrap()).unwrap();
        assert_eq!(read_log(dir.path()).unwrap().into_iter().collect::<Vec<_>>(), ["b", "c"]);
    }
}
