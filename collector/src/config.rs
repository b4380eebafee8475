//! The collector's configuration: defaults, overridden by an optional TOML file, overridden
//! by command-line flags and environment variables (the `ci` crate maps those onto this).
//!
//! Every field's doc comment is its user documentation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slo_contracts::HumanDuration;

/// Settings of `slo-gate serve`. All listeners default to loopback.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// OTLP/gRPC listener (traces, metrics, logs, profiles services).
    pub otlp_grpc: SocketAddr,
    /// OTLP/HTTP listener (`/v1/traces`, `/v1/metrics`, `/v1/logs`, `/v1development/profiles`).
    pub otlp_http: SocketAddr,
    /// Read/query API, the collector's own `/metrics`, `/healthz` and `/readyz`.
    pub api: SocketAddr,
    /// Where the write-ahead log and the Parquet parts live.
    pub data_dir: PathBuf,
    /// Parts whose newest data is older than this are deleted.
    pub retention: HumanDuration,
    /// Storage tuning: durability, flushing.
    pub storage: StorageConfig,
    /// Request limits.
    pub limits: Limits,
    /// Go pprof endpoints to pull profiles from, one `[[scrape]]` table each (like Parca's
    /// scrape configs). Scraped profiles are stored exactly like a Pyroscope push.
    pub scrape: Vec<ScrapeConfig>,
    /// Connections and request bodies on every listener: what a client may hold before its
    /// request is admitted (the `[server]` table).
    pub server: ServerLimits,
    /// The release gate's run history: who may record runs, and how much is kept.
    pub gate: GateConfig,
    /// Span metrics: RED metrics from SERVER and CONSUMER spans, written as the series the
    /// OpenTelemetry Collector's `spanmetrics` connector makes (the `[span_metrics]` table).
    pub span_metrics: SpanMetricsConfig,
    /// Where anomaly and burn-rate notifications are POSTed, one `[[webhook]]` table each
    /// (see `docs/webhooks.md`). Every notification is kept in an outbox in the data directory
    /// until each webhook has taken it, so none is lost across a restart.
    #[serde(deserialize_with = "unique_webhooks")]
    pub webhook: Vec<WebhookConfig>,
    /// Continuous analysis between releases: dynamic baselines, anomalies, error budgets
    /// (the `[analysis]` table; see [`crate::analysis::AnalysisConfig`]).
    pub analysis: crate::analysis::AnalysisConfig,
    /// TLS on the listeners, and client certificates with SPIFFE IDs (the `[tls]` table; see
    /// [`TlsConfig`] and `docs/tls.md`). Without it every listener speaks plaintext.
    pub tls: Option<TlsConfig>,
    /// Who may read and write which tenant: tokens, JWTs, client certificates' SPIFFE IDs (the
    /// `[auth]` table; see [`crate::auth::AuthConfig`] and `docs/auth.md`).
    pub auth: crate::auth::AuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            otlp_grpc: ([127, 0, 0, 1], 4317).into(),
            otlp_http: ([127, 0, 0, 1], 4318).into(),
            api: ([127, 0, 0, 1], 4040).into(),
            data_dir: PathBuf::from("./data"),
            retention: HumanDuration(Duration::from_secs(14 * 86_400)),
            storage: StorageConfig::default(),
            limits: Limits::default(),
            scrape: Vec::new(),
            server: ServerLimits::default(),
            gate: GateConfig::default(),
            span_metrics: SpanMetricsConfig::default(),
            webhook: Vec::new(),
            analysis: crate::analysis::AnalysisConfig::default(),
            tls: None,
            auth: crate::auth::AuthConfig::default(),
        }
    }
}

/// When a request counts as durable, and so may be acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `fsync` the log after every request before acknowledging it: survives power loss,
    /// costs one disk flush per request.
    Fsync,
    /// Group commit: requests arriving within `group_commit_interval` share one `fsync`;
    /// each is acknowledged only after that flush. Survives power loss. The default.
    Group,
    /// Acknowledge once the record is written to the operating system (no `fsync`): survives
    /// a crash of the collector, not of the machine.
    None,
}

/// Storage settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `fsync`, `group` (default) or `none`; see [`Durability`].
    pub durability: Durability,
    /// With `durability = "group"`: how long the log writer gathers requests before one
    /// `fsync` covers them all.
    pub group_commit_interval: HumanDuration,
    /// The in-memory head is written to Parquet parts at least this often.
    pub flush_interval: HumanDuration,
    /// ... or as soon as its rows hold this many bytes of memory. New data waits (up to
    /// `limits.max_wait_for_flush`) and is then refused (429 / `UNAVAILABLE`, retryable) while
    /// the head holds twice this.
    pub max_head_bytes: u64,
    /// How often retention runs.
    pub retention_interval: HumanDuration,
    /// A tenant with at least this many bytes of rows of one signal and hour in a flush gets a
    /// Parquet part of its own; tenants with less share one part per signal and hour, so a
    /// flush of a thousand small tenants writes a few files, not thousands.
    pub min_tenant_part_bytes: u64,
    /// After start-up, read every Parquet part once in the background and check it against
    /// the checksum recorded when it was written, setting aside the damaged ones. (Parts are
    /// checked whenever a query reads them either way.)
    pub verify_parts_at_start: bool,
    /// `/readyz` fails while the data directory's file system has less than this many bytes
    /// free (and while it is read-only, a write-ahead-log write or a flush is failing, or the
    /// head is so far behind that new data is refused).
    pub min_free_bytes: u64,
    /// The most memory the span indexes hold (a part's trace keys, services, start times,
    /// durations and routes, about 28 bytes per span), kept so trace lookups and searches test
    /// their conditions without opening the parts. The parts a flush writes push out the
    /// indexes kept longest; a part without a kept index is still searched, by reading its
    /// columns. Part of the collector's resident memory, with the head (up to twice
    /// `max_head_bytes`).
    pub span_index_cache_bytes: u64,
    /// The most memory the traces parts' trace keys hold (a filter of about 2.25 bytes per
    /// distinct trace id of a part; the catalog keeps the exact keys on disk). Within it, a lookup by trace id opens only
    /// the parts that hold the trace; the keys of the parts with the oldest rows are released
    /// past it, and a lookup then reads those parts' trace ids (or their cached span index).
    pub trace_key_bytes: u64,
    /// Encryption of Parquet parts at rest (the `[storage.encryption]` table; see
    /// `docs/integrity.md`). Off without it. The write-ahead log, the series segments and the
    /// part catalog are not encrypted.
    pub encryption: Option<EncryptionConfig>,
    /// Background merging of small parts (the `[storage.compaction]` table; see
    /// `docs/compaction.md`).
    pub compaction: CompactionConfig,
    /// Parts shared through S3-compatible object storage (the `[storage.bucket]` table; see
    /// `docs/object-storage.md`). Off without it: the data directory holds everything.
    pub bucket: Option<BucketConfig>,
}

/// `[storage.bucket]`: each collector keeps its write-ahead log, head and parts in its data
/// directory as without it, uploads every part it writes to the bucket with a manifest naming
/// it, and reads the parts other collectors uploaded. Credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web identity and
/// instance metadata, as the AWS SDKs read them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    /// `s3://bucket`, `s3://bucket/prefix`, or for Azure Blob Storage `az://container/prefix`.
    pub url: String,
    /// The S3 endpoint of a store other than AWS (`http://127.0.0.1:8333`, MinIO, SeaweedFS,
    /// Ceph, R2); AWS's regional endpoint without it. With `az://`, the blob service's URL
    /// (`https://<account>.blob.core.windows.net` without it).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    /// Virtual-host-style requests (`bucket.endpoint/key`) instead of path style
    /// (`endpoint/bucket/key`).
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// This collector's name in the bucket (letters, digits, `-`, `_`; at most 64), unique
    /// among the collectors writing it. Without it one is generated at the first start and
    /// kept in `<data-dir>/writer-id`.
    #[serde(default)]
    pub writer_id: Option<String>,
    /// How often the manifests other collectors wrote are listed.
    #[serde(default = "default_bucket_refresh")]
    pub refresh_interval: HumanDuration,
    /// How long one request to the bucket may take before it is abandoned (and retried later).
    #[serde(default = "default_bucket_timeout")]
    pub request_timeout: HumanDuration,
    /// The most bytes of other collectors' parts kept in `<data-dir>/remote` after a query
    /// fetched them; the least recently read go first.
    #[serde(default = "default_bucket_cache_bytes")]
    pub cache_bytes: u64,
    /// How many manifests this collector commits (one per upload pass) before it folds its
    /// manifests into as few as hold its live parts and deletes the rest, so that a start lists
    /// a few manifests per collector, not one per flush.
    #[serde(default = "default_manifest_fold_after")]
    pub manifest_fold_after: u64,
    /// Whether this collector takes part in merging the bucket's parts: one collector per part
    /// directory (tenant) at a time, the holder of its lease, merges every writer's parts there.
    #[serde(default = "default_true")]
    pub compaction: bool,
    /// How long a compaction lease lasts without renewal: a compactor that stops is replaced
    /// this long after its last renewal.
    #[serde(default = "default_compaction_lease")]
    pub compaction_lease: HumanDuration,
    /// How old an object under `parts/` or `series/` that no manifest or compaction-log entry
    /// names must be before the compactors delete it (the output of a merge killed before its
    /// commit, a part uploaded by a collector that crashed before its manifest). At least twice
    /// `compaction_lease` and twice `refresh_interval` + `request_timeout`; an upload pass that
    /// takes half of it uploads its parts again before committing them.
    #[serde(default = "default_orphan_grace")]
    pub orphan_grace: HumanDuration,
    /// How many compaction-log entries come between two checkpoints of the log: a checkpoint
    /// folds the log into a few objects, so a start reads it and the entries after it, not the
    /// whole log. Entries a checkpoint holds are deleted once it is `orphan_grace` old.
    #[serde(default = "default_log_checkpoint_every")]
    pub log_checkpoint_every: u64,
}

fn default_true() -> bool {
    true
}

impl BucketConfig {
    /// The bucket at `url` with every other key at its default.
    pub fn new(url: impl Into<String>) -> BucketConfig {
        BucketConfig {
            url: url.into(),
            endpoint: None,
            region: default_region(),
            virtual_hosted_style: false,
            writer_id: None,
            refresh_interval: default_bucket_refresh(),
            request_timeout: default_bucket_timeout(),
            cache_bytes: default_bucket_cache_bytes(),
            manifest_fold_after: default_manifest_fold_after(),
            compaction: true,
            compaction_lease: default_compaction_lease(),
            orphan_grace: default_orphan_grace(),
            log_checkpoint_every: default_log_checkpoint_every(),
        }
    }
}

fn default_manifest_fold_after() -> u64 {
    200
}

fn default_log_checkpoint_every() -> u64 {
    1000
}

fn default_compaction_lease() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

fn default_orphan_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(24 * 3600))
}

fn default_bucket_cache_bytes() -> u64 {
    1 << 30
}

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_bucket_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

fn default_bucket_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// `[storage.compaction]`: the small parts of each tenant (or of the shared small tenants),
/// signal and hour are merged into larger, time-sorted parts once the hour no longer takes
/// flushes, one merge at a time, on a thread of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Merge parts at all.
    pub enabled: bool,
    /// A directory (tenant or shared, signal, hour) is merged once it holds at least this many
    /// parts smaller than `target_part_bytes`.
    pub min_parts: usize,
    /// Parts this large (bytes on disk) are left alone; a merge stops adding inputs once they
    /// reach it.
    pub target_part_bytes: u64,
    /// Most bytes on disk one merge reads.
    pub max_input_bytes: u64,
    /// Most rows one merge reads. A merge holds its inputs' rows in memory (a few hundred
    /// bytes per span, less for other rows), so this bounds its memory.
    pub max_input_rows: u64,
    /// Most memory the rows one merge has read hold (as the head counts them): a merge stops
    /// reading inputs once they reach it (having read at least two), and the rest wait for the
    /// next merge.
    pub max_input_memory_bytes: u64,
    /// How often the compactor looks for parts to merge.
    pub interval: HumanDuration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            enabled: true,
            min_parts: 4,
            target_part_bytes: 64 << 20,
            max_input_bytes: 64 << 20,
            max_input_rows: 250_000,
            max_input_memory_bytes: 64 << 20,
            interval: HumanDuration(Duration::from_secs(300)),
        }
    }
}

/// `[storage.encryption]`: each part is encrypted with AES-256-GCM under a fresh data key,
/// itself wrapped by the key file's current key (envelope encryption).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// A file of `key-id base64-of-32-bytes` lines (`#` comments). The last key encrypts new
    /// parts; the others are kept to read parts written with them. To rotate, append a key
    /// and restart: no part is rewritten.
    pub key_file: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            durability: Durability::Group,
            group_commit_interval: HumanDuration(Duration::from_millis(5)),
            flush_interval: HumanDuration(Duration::from_secs(30)),
            max_head_bytes: 32 << 20,
            retention_interval: HumanDuration(Duration::from_secs(300)),
            min_tenant_part_bytes: 1 << 20,
            verify_parts_at_start: true,
            min_free_bytes: 64 << 20,
            span_index_cache_bytes: 32 << 20,
            trace_key_bytes: 16 << 20,
            encryption: None,
            compaction: CompactionConfig::default(),
            bucket: None,
        }
    }
}

/// Limits on what one request may carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted, after decompression, in bytes (413 / `RESOURCE_EXHAUSTED`).
    pub max_request_bytes: usize,
    /// Items (spans, data points, log records, profiles) with more attributes than this are
    /// rejected and counted in the response's partial success.
    pub max_attributes_per_item: usize,
    /// Export requests being processed at once; more are answered 429 / `UNAVAILABLE` with
    /// `Retry-After`.
    pub max_inflight_requests: usize,
    /// A request whose stored rows would take more than this many times its own (decoded,
    /// uncompressed) size in memory is refused (413 / `RESOURCE_EXHAUSTED`). Real telemetry
    /// takes 2–10 times; a request of nearly empty items, or of items sharing one large value
    /// that storage would copy, can take hundreds.
    pub max_memory_expansion: u64,
    /// Deepest nesting of `arrayValue` and `kvlistValue` accepted in an attribute value (or a
    /// log body): a plain value nests 0 levels, `[1, 2]` one, `[[1], 2]` two. An item (span, data
    /// point, log record, profile) with a deeper value anywhere — its own attributes, its
    /// events', links' or exemplars' attributes, its log body, the profile dictionary
    /// attributes it refers to — is rejected and counted in the response's partial success; a
    /// resource or scope with one rejects every item under it. Default 16; at most 30.
    ///
    /// Why 30: values are stored as OTLP/JSON text, which is read back with `serde_json`,
    /// whose parser refuses more than 127 levels of nesting. A scalar attribute in a stored
    /// list takes 3 levels (`[{"value":{"stringValue":..}}]`), each `kvlistValue` level 4 more
    /// (`{"kvlistValue":{"values":[{"key":..,"value":..}]}}`; an `arrayValue` level takes 3),
    /// and span events, links and exemplars wrap their attribute lists in 2 more (the list and
    /// the event object): 5 + 4 × 30 = 125 ≤ 127, while 31 levels would be 129 and could be
    /// acknowledged but never read back. The same depth re-encoded as OTLP protobuf (the WAL,
    /// the Tempo API) stays under prost's nesting limit of 100 messages (7 + 3 × 30 = 97). The
    /// default leaves room for answers that wrap values further: in the OTLP/JSON of
    /// `/api/v1/traces/{id}` a span event's attribute starts 12 levels down, 12 + 4 × 16 = 76.
    #[serde(deserialize_with = "attribute_depth")]
    pub max_attribute_depth: usize,
    /// Frames kept of a profile stack (inlined frames count one each); a deeper stack keeps its
    /// outermost (root) frames and the innermost ones are replaced by one frame named
    /// `[N frames truncated]`, so flame graphs show where and how much was cut. Rejects nothing:
    /// the response's partial success carries a warning naming the profiles. This is what
    /// Pyroscope's `validation.max-profile-stacktrace-depth` does, with the same default of
    /// 1000; 0 keeps every frame.
    pub max_stack_depth: usize,
    /// How long a write that finds the head full (twice `storage.max_head_bytes` waiting for
    /// the flusher) waits for room before it is refused with 429 / `UNAVAILABLE`. The wait
    /// comes before the body is read, so waiting requests hold no memory; a flush that stalls
    /// for less than this costs latency instead of refused exports, and one that falls behind
    /// for longer (a disk slower than the load, a failing flush) still pushes back. Default
    /// `2s` (OpenTelemetry exporters time out after 10 s); `0s` refuses at once.
    pub max_wait_for_flush: HumanDuration,
}

/// The largest [`Limits::max_attribute_depth`] whose values can be read back from storage (see
/// that field for the arithmetic).
pub const MAX_ATTRIBUTE_DEPTH: usize = 30;

fn attribute_depth<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let depth = usize::deserialize(d)?;
    check_attribute_depth(depth).map_err(serde::de::Error::custom)
}

/// `depth` if it is at most [`MAX_ATTRIBUTE_DEPTH`].
pub fn check_attribute_depth(depth: usize) -> Result<usize, String> {
    if depth > MAX_ATTRIBUTE_DEPTH {
        return Err(format!(
            "max_attribute_depth {depth} is above {MAX_ATTRIBUTE_DEPTH}, the deepest nesting stored attributes can be read back with"
        ));
    }
    Ok(depth)
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 16 << 20,
            max_attributes_per_item: 128,
            max_inflight_requests: 1024,
            max_memory_expansion: 32,
            max_attribute_depth: 16,
            max_stack_depth: 1000,
            max_wait_for_flush: HumanDuration(Duration::from_secs(2)),
        }
    }
}

/// Limits on connections and on request bodies in flight, shared by all three listeners
/// (OTLP/gRPC, OTLP/HTTP and the API), so that neither idle sockets nor bodies sent slowly or
/// held open can exhaust the process's file descriptors or memory.
///
/// ```toml
/// [server]
/// max_connections = 4000
/// max_inflight_body_bytes = 134217728
/// idle_timeout = "60s"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// Open connections over all listeners. A connection over the cap is accepted and closed
    /// at once, and counted in `slo_gate_connections_refused_total`. Default: the process's
    /// file-descriptor limit (`RLIMIT_NOFILE`, whose soft value is raised to the hard one at
    /// start) minus `fd_reserve`, and at least a quarter of that limit.
    pub max_connections: Option<usize>,
    /// File descriptors kept for everything but client connections when `max_connections` is
    /// derived from the limit: Parquet parts read by queries and written by flushes,
    /// write-ahead-log segments, outgoing pprof scrapes, the runtime's own.
    pub fd_reserve: usize,
    /// Bytes of request bodies held at once over all requests and listeners: counted as they
    /// arrive (a declared `Content-Length` is reserved whole before any byte is read), with
    /// their decompressed copies, until the request is answered. A request that would pass
    /// it is refused as overloaded (429 / `UNAVAILABLE`, with `Retry-After`). Must be at least
    /// `limits.max_request_bytes`.
    pub max_inflight_body_bytes: usize,
    /// An HTTP/1 request whose headers have not all arrived this long after its first byte
    /// is cut off.
    pub header_read_timeout: HumanDuration,
    /// A connection with no request in progress for this long is closed (keep-alive idle,
    /// and sockets that never send a request); so is one whose answer the client has not read
    /// for this long.
    pub idle_timeout: HumanDuration,
    /// A request body that delivers no byte for this long is cut off (408 /
    /// `DEADLINE_EXCEEDED`) and its bytes released.
    pub body_progress_timeout: HumanDuration,
    /// A request body that has not fully arrived this long after the request started is cut
    /// off, however steadily it trickles in.
    pub body_timeout: HumanDuration,
    /// HTTP/2 connections are pinged after this long without a frame from the client ...
    pub http2_keepalive_interval: HumanDuration,
    /// ... and closed when the ping is not answered within this long.
    pub http2_keepalive_timeout: HumanDuration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: None,
            fd_reserve: 256,
            max_inflight_body_bytes: 128 << 20,
            header_read_timeout: HumanDuration(Duration::from_secs(10)),
            idle_timeout: HumanDuration(Duration::from_secs(60)),
            body_progress_timeout: HumanDuration(Duration::from_secs(15)),
            body_timeout: HumanDuration(Duration::from_secs(60)),
            http2_keepalive_interval: HumanDuration(Duration::from_secs(30)),
            http2_keepalive_timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

impl ServerLimits {
    /// The connection cap for a process whose file-descriptor limit is `fd_limit`.
    pub fn connection_cap(&self, fd_limit: u64) -> usize {
        match self.max_connections {
            Some(n) => n.max(1),
            None => {
                let limit = usize::try_from(fd_limit).unwrap_or(usize::MAX);
                limit.saturating_sub(self.fd_reserve).max(limit / 4).max(1)
            }
        }
    }
}

/// The `[gate]` table: the history of `slo-gate check` runs, which `baseline: last_passing`
/// and `consecutive_failures` read.
///
/// ```toml
/// [gate]
/// token_file = "/etc/slo-gate/gate-tokens"
/// max_runs = 500
/// retention = "90d"
/// max_history_bytes = 8388608
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// File of write tokens, one per line (surrounding spaces trimmed; blank lines and lines
    /// starting with `#` skipped; each at least 16 printable characters, e.g.
    /// `openssl rand -hex 32`). `slo-gate check` records a run only by presenting one of them
    /// (`SLO_GATE_TOKEN` or `--token-file`). Without this file the collector refuses to record
    /// runs (403), so no anonymous client can write a verdict. Flag: `--gate-token-file`.
    pub token_file: Option<PathBuf>,
    /// Runs kept per service and environment, newest first. Default 500.
    pub max_runs: usize,
    /// Runs older than this are dropped. Default `90d`.
    pub retention: HumanDuration,
    /// A tenant's history file is compacted (only the runs `max_runs` and `retention` keep,
    /// rewritten crash-safely) when it grows past this many bytes; it never holds more than
    /// this plus one run. Default 8 MiB.
    pub max_history_bytes: u64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            token_file: None,
            max_runs: 500,
            retention: HumanDuration(Duration::from_secs(90 * 86_400)),
            max_history_bytes: 8 << 20,
        }
    }
}

impl GateConfig {
    /// The history settings these keys describe.
    pub fn history_settings(&self) -> crate::history::HistorySettings {
        crate::history::HistorySettings {
            max_runs: self.max_runs.max(1),
            retention: self.retention.0,
            max_bytes: self.max_history_bytes,
        }
    }
}

/// The profiles a Go program serves under `/debug/pprof/`.
pub const SCRAPE_PROFILES: [&str; 6] = ["profile", "heap", "allocs", "goroutine", "mutex", "block"];

/// One `[[scrape]]` table: Go `net/http/pprof` endpoints pulled on an interval.
///
/// ```toml
/// [[scrape]]
/// targets = ["127.0.0.1:6060", "http://10.0.0.7:8080/"]
/// labels = { service_name = "checkout", service_version = "1.4.2" }
/// interval = "15s"
/// profiles = ["profile", "heap", "goroutine"]
/// cpu_seconds = 10
///
/// [[scrape]]
/// targets = ["https://10.0.0.8:6060"]
/// bearer_token_file = "/etc/slo-gate/pprof-token"
/// tls = { ca_file = "/etc/slo-gate/ca.pem", cert_file = "/etc/slo-gate/client.pem", key_file = "/etc/slo-gate/client-key.pem", server_name = "checkout.internal" }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawScrapeConfig", into = "RawScrapeConfig")]
pub struct ScrapeConfig {
    /// `host:port` or base URLs (`http://host:port`, `https://host:port`, with an optional
    /// path prefix); the profiles are fetched from `<base>/debug/pprof/<profile>`. `host:port`
    /// means `http://host:port`; `https://` targets need `tls` with `ca_file` (or
    /// `insecure_skip_verify`).
    pub targets: Vec<String>,
    /// Labels of every profile scraped here: `service_name` becomes the service, and
    /// `service_version` its version; others are stored as profile attributes.
    pub labels: BTreeMap<String, String>,
    /// How often each profile of each target is fetched. Default `15s`.
    pub interval: HumanDuration,
    /// Which profiles to fetch: any of `profile` (CPU, `/debug/pprof/profile?seconds=N`),
    /// `heap`, `allocs`, `goroutine`, `mutex`, `block`. Default: all of them.
    pub profiles: Vec<String>,
    /// Length of a CPU profile in seconds (`?seconds=`). Default 10; must be shorter than
    /// `interval`.
    pub cpu_seconds: u64,
    /// How long one fetch may take. Default: `interval` (for the CPU profile,
    /// `cpu_seconds` plus this).
    pub timeout: Option<HumanDuration>,
    /// Tenant the profiles are stored under. Default `anonymous`.
    pub tenant: Option<String>,
    /// TLS of `https://` targets, with the keys of Prometheus's scrape `tls_config` (which is
    /// also accepted as this key's name): `ca_file`, `cert_file` and `key_file` (a client
    /// certificate, for targets that require one), `server_name`, `insecure_skip_verify`
    /// (see [`crate::tls::client::ClientTls`]). The files are read at start; a bad one stops
    /// the start with an error naming it.
    pub tls: Option<crate::tls::client::ClientTls>,
    /// A file holding a bearer token sent as `Authorization: Bearer <token>` with every scrape
    /// of these targets (Prometheus's `bearer_token_file`); surrounding whitespace is trimmed.
    /// Read at start (an unreadable or empty file is an error then) and again whenever the
    /// file changes, so a rotated token is picked up without a restart.
    pub bearer_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScrapeConfig {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default = "default_scrape_interval")]
    interval: HumanDuration,
    #[serde(default = "default_scrape_profiles")]
    profiles: Vec<String>,
    #[serde(default = "default_cpu_seconds")]
    cpu_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, alias = "tls_config", skip_serializing_if = "Option::is_none")]
    tls: Option<crate::tls::client::ClientTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bearer_token_file: Option<PathBuf>,
}

fn default_scrape_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(15))
}

fn default_scrape_profiles() -> Vec<String> {
    SCRAPE_PROFILES.iter().map(|p| p.to_string()).collect()
}

fn default_cpu_seconds() -> u64 {
    10
}

impl TryFrom<RawScrapeConfig> for ScrapeConfig {
    type Error = String;

    fn try_from(raw: RawScrapeConfig) -> Result<Self, String> {
        if raw.targets.is_empty() {
            return Err("scrape: `targets` is empty".to_string());
        }
        if let Some(t) = raw.targets.iter().find(|t| t.trim().is_empty()) {
            return Err(format!("scrape: empty target {t:?}"));
        }
        if let Some(bad) = raw.profiles.iter().find(|p| !SCRAPE_PROFILES.contains(&p.as_str())) {
            return Err(format!("scrape: unknown profile {bad:?}; expected one of {}", SCRAPE_PROFILES.join(", ")));
        }
        if raw.interval.0.is_zero() {
            return Err("scrape: `interval` must be longer than 0s".to_string());
        }
        if raw.profiles.iter().any(|p| p == "profile") {
            if raw.cpu_seconds == 0 {
                return Err("scrape: `cpu_seconds` must be at least 1".to_string());
            }
            if Duration::from_secs(raw.cpu_seconds) >= raw.interval.0 {
                return Err(format!(
                    "scrape: `cpu_seconds` ({}) must be shorter than `interval` ({}s)",
                    raw.cpu_seconds,
                    raw.interval.0.as_secs_f64()
                ));
            }
        }
        if raw.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err("scrape: `timeout` must be longer than 0s".to_string());
        }
        if let Some(tenant) = &raw.tenant {
            crate::tenant::Tenant::parse(tenant).map_err(|e| format!("scrape: tenant {tenant:?}: {e}"))?;
        }
        for target in &raw.targets {
            crate::receive::pprof_scrape::check_target(target, raw.tls.as_ref())
                .map_err(|why| format!("scrape: target {target:?}: {why}"))?;
        }
        // Read now, so a bad file stops the start with its name rather than failing every scrape.
        if let Some(tls) = &raw.tls {
            tls.client_config().map_err(|e| format!("scrape: {e}"))?;
        }
        if let Some(path) = &raw.bearer_token_file {
            crate::receive::pprof_scrape::read_token(path).map_err(|e| format!("scrape: {e}"))?;
        }
        Ok(ScrapeConfig {
            targets: raw.targets,
            labels: raw.labels,
            interval: raw.interval,
            profiles: raw.profiles,
            cpu_seconds: raw.cpu_seconds,
            timeout: raw.timeout,
            tenant: raw.tenant,
            tls: raw.tls,
            bearer_token_file: raw.bearer_token_file,
        })
    }
}

impl From<ScrapeConfig> for RawScrapeConfig {
    fn from(c: ScrapeConfig) -> Self {
        RawScrapeConfig {
            targets: c.targets,
            labels: c.labels,
            interval: c.interval,
            profiles: c.profiles,
            cpu_seconds: c.cpu_seconds,
            timeout: c.timeout,
            tenant: c.tenant,
            tls: c.tls,
            bearer_token_file: c.bearer_token_file,
        }
    }
}

/// How a webhook's notifications are encoded (the `format` key of a `[[webhook]]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WebhookFormat {
    /// The JSON Alertmanager POSTs to its webhook receivers (`version: "4"`), one alert per
    /// request, so a receiver written for Alertmanager's `webhook_configs` works unchanged.
    #[default]
    #[serde(rename = "webhook")]
    Webhook,
    /// Alertmanager's own `POST /api/v2/alerts` body (a JSON array of one postable alert), so
    /// a real Alertmanager routes, groups and silences slo-gate's alerts; `url` is then that
    /// Alertmanager's `http://host:9093/api/v2/alerts`.
    #[serde(rename = "alertmanager-v2")]
    AlertmanagerV2,
}

/// One `[[webhook]]` table: an HTTP endpoint every notification (an anomaly opening or
/// resolving, a burn-rate alert firing or resolving) is POSTed to, in order, retried until it
/// answers 2xx (see `docs/webhooks.md`).
///
/// ```toml
/// [[webhook]]
/// name = "oncall"
/// url = "http://alert-router.internal:8080/slo-gate"
/// bearer_token_file = "/etc/slo-gate/oncall-token"
/// headers = { "X-Team" = "payments" }
/// timeout = "10s"
/// initial_backoff = "1s"
/// max_backoff = "5m"
///
/// [[webhook]]
/// name = "pager"
/// url = "https://pager.internal:8443/hook"
/// tls = { ca_file = "/etc/slo-gate/ca.pem", cert_file = "/etc/slo-gate/client.pem", key_file = "/etc/slo-gate/client-key.pem" }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawWebhookConfig", into = "RawWebhookConfig")]
pub struct WebhookConfig {
    /// Names the webhook in logs, in `/metrics` (`webhook` label), in the payload's
    /// `receiver`, and its delivery cursor in the data directory: renaming a webhook makes it
    /// a new one, which starts with the notifications sent after it appeared. Letters, digits,
    /// `_`, `-` and `.`; at most 64 characters; unique.
    pub name: String,
    /// Where to POST: an `http://` or `https://` URL. `https://` needs `tls` with `ca_file`
    /// (or `insecure_skip_verify`): the collector trusts no CA it is not given.
    pub url: String,
    /// `webhook` (default) or `alertmanager-v2`; see [`WebhookFormat`].
    pub format: WebhookFormat,
    /// How long one request may take, from connecting to the answer's status. Default `10s`.
    pub timeout: HumanDuration,
    /// Extra request headers, e.g. `{ "X-Scope-OrgID" = "team-a" }`. `Content-Type`,
    /// `Content-Length`, `Host` and `Transfer-Encoding` are the client's to set.
    pub headers: BTreeMap<String, String>,
    /// A file holding a bearer token, sent as `Authorization: Bearer <token>` (read once at
    /// start, surrounding whitespace trimmed), so the secret stays out of this file. Not
    /// together with an `Authorization` header in `headers`.
    pub bearer_token_file: Option<PathBuf>,
    /// The first retry waits a random time up to this ("full jitter"); each further retry
    /// doubles the bound, up to `max_backoff`. Default `1s`.
    pub initial_backoff: HumanDuration,
    /// The largest bound of the random wait between retries. Default `5m`. A `Retry-After`
    /// answer (408, 429, 5xx) is waited out instead, up to one hour.
    pub max_backoff: HumanDuration,
    /// TLS of an `https://` URL, with the keys of Prometheus's `tls_config` (also accepted as
    /// this key's name): `ca_file`, `cert_file` and `key_file` (a client certificate, for a
    /// receiver that requires one), `server_name`, `insecure_skip_verify` (see
    /// [`crate::tls::client::ClientTls`]). The files are read when the notifier starts; a bad
    /// one stops the start with an error naming it.
    pub tls: Option<crate::tls::client::ClientTls>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhookConfig {
    name: String,
    url: String,
    #[serde(default)]
    format: WebhookFormat,
    #[serde(default = "default_webhook_timeout")]
    timeout: HumanDuration,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bearer_token_file: Option<PathBuf>,
    #[serde(default = "default_initial_backoff")]
    initial_backoff: HumanDuration,
    #[serde(default = "default_max_backoff")]
    max_backoff: HumanDuration,
    #[serde(default, alias = "tls_config", skip_serializing_if = "Option::is_none")]
    tls: Option<crate::tls::client::ClientTls>,
}

fn default_webhook_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

fn default_initial_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

fn default_max_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

/// Headers the HTTP client sets itself; a configured value would contradict the request.
const RESERVED_WEBHOOK_HEADERS: [&str; 4] = ["content-type", "content-length", "host", "transfer-encoding"];

impl TryFrom<RawWebhookConfig> for WebhookConfig {
    type Error = String;

    fn try_from(raw: RawWebhookConfig) -> Result<Self, String> {
        let name = &raw.name;
        if name.is_empty() || name.len() > 64 {
            return Err(format!("webhook: `name` {name:?} must be 1 to 64 characters"));
        }
        if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
            return Err(format!("webhook: `name` {name:?} has {c:?}; use letters, digits, `_`, `-` and `.`"));
        }
        let uri = check_webhook_url(&raw.url).map_err(|why| format!("webhook {name:?}: `url` {:?}: {why}", raw.url))?;
        raw.tls
            .clone()
            .unwrap_or_default()
            .check(uri.scheme_str() == Some("https"))
            .map_err(|e| format!("webhook {name:?}: {e}"))?;
        for (key, value) in [("timeout", raw.timeout), ("initial_backoff", raw.initial_backoff)] {
            if value.0.is_zero() {
                return Err(format!("webhook {name:?}: `{key}` must be longer than 0s"));
            }
        }
        if raw.max_backoff.0 < raw.initial_backoff.0 {
            return Err(format!(
                "webhook {name:?}: `max_backoff` ({}s) is shorter than `initial_backoff` ({}s)",
                raw.max_backoff.0.as_secs_f64(),
                raw.initial_backoff.0.as_secs_f64()
            ));
        }
        for (header, value) in &raw.headers {
            let parsed = http::HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| format!("webhook {name:?}: `headers`: {header:?} is not a valid header name"))?;
            if RESERVED_WEBHOOK_HEADERS.contains(&parsed.as_str()) {
                return Err(format!(
                    "webhook {name:?}: `headers`: {header:?} is set by the client and cannot be configured"
                ));
            }
            if parsed == http::header::AUTHORIZATION && raw.bearer_token_file.is_some() {
                return Err(format!(
                    "webhook {name:?}: `headers` has {header:?} and `bearer_token_file` is set; keep one"
                ));
            }
            http::HeaderValue::from_str(value).map_err(|_| {
                format!("webhook {name:?}: `headers`: the value of {header:?} is not a valid header value")
            })?;
        }
        Ok(WebhookConfig {
            name: raw.name,
            url: raw.url,
            format: raw.format,
            timeout: raw.timeout,
            headers: raw.headers,
            bearer_token_file: raw.bearer_token_file,
            initial_backoff: raw.initial_backoff,
            max_backoff: raw.max_backoff,
            tls: raw.tls,
        })
    }
}

impl From<WebhookConfig> for RawWebhookConfig {
    fn from(c: WebhookConfig) -> Self {
        RawWebhookConfig {
            name: c.name,
            url: c.url,
            format: c.format,
            timeout: c.timeout,
            headers: c.headers,
            bearer_token_file: c.bearer_token_file,
            initial_backoff: c.initial_backoff,
            max_backoff: c.max_backoff,
            tls: c.tls,
        }
    }
}

/// Why `url` cannot be a webhook's URL, if it cannot: an absolute `http://` or `https://` URL
/// with a host.
pub fn check_webhook_url(url: &str) -> Result<http::Uri, String> {
    let uri = url.parse::<http::Uri>().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("scheme {other:?} is not supported; use http:// or https://")),
        None => return Err("not an absolute URL; expected http[s]://host[:port]/path".to_string()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host".to_string());
    }
    Ok(uri)
}

/// The `[[webhook]]` tables, refused when two share a name (each name keys a delivery cursor).
fn unique_webhooks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<WebhookConfig>, D::Error> {
    let webhooks = Vec::<WebhookConfig>::deserialize(d)?;
    let mut seen = std::collections::BTreeSet::new();
    for w in &webhooks {
        if !seen.insert(w.name.as_str()) {
            return Err(serde::de::Error::custom(format!("two webhooks are named {:?}; names must be unique", w.name)));
        }
    }
    Ok(webhooks)
}

/// The `[span_metrics]` table: request, error and duration metrics computed from every stored
/// SERVER and CONSUMER span at ingest and written every `metrics_flush_interval` as ordinary
/// metric series, named and labelled as the OpenTelemetry Collector's `spanmetrics` connector
/// names them (`traces_span_metrics_calls_total`, `traces_span_metrics_duration_seconds_bucket`,
/// ...; see `docs/span-metrics.md`). Keys that the connector also has keep its names and
/// meaning.
///
/// ```toml
/// [span_metrics]
/// enabled = true
/// dimensions = [{ name = "service.version" }, { name = "deployment.environment" }, { name = "http.route" }]
/// buckets = ["2ms", "4ms", "6ms", "8ms", "10ms", "50ms", "100ms", "200ms", "400ms", "800ms", "1s", "1400ms", "2s", "5s", "10s", "15s"]
/// metrics_flush_interval = "15s"
/// metrics_expiration = "15m"
/// aggregation_cardinality_limit = 10000
/// max_series = 100000
/// max_memory_bytes = 67108864
/// span_kinds = ["SPAN_KIND_SERVER", "SPAN_KIND_CONSUMER"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsConfig {
    /// Off: no span is counted and no span-metric series is written. Default on.
    pub enabled: bool,
    /// Labels besides the four every series has (`service.name`, `span.name`, `span.kind`,
    /// `status.code`), in this order. Each is looked up in the span's attributes, then in its
    /// resource's (the connector's rule); a span without it gets `default`, or no such label
    /// when there is no default. `deployment.environment` is also found under its newer name
    /// `deployment.environment.name`. Values that are not strings are written as text. Every
    /// distinct combination of values is a series of its own, so keep to attributes with few
    /// values (a route template, not a URL path). Default: `service.version`,
    /// `deployment.environment`, `http.route`.
    pub dimensions: Vec<SpanMetricsDimension>,
    /// Upper bounds of the duration histogram's buckets, increasing (a duration equal to a
    /// bound counts in that bucket, as Prometheus's `le` says); a last `+Inf` bucket is
    /// implied. Default: the connector's `2ms 4ms 6ms 8ms 10ms 50ms 100ms 200ms 400ms 800ms 1s
    /// 1400ms 2s 5s 10s 15s`. At most 64.
    pub buckets: Vec<HumanDuration>,
    /// How often each tenant's cumulative values are written to the store. Default `15s`.
    pub metrics_flush_interval: HumanDuration,
    /// A series no span has updated for this long is dropped (and no longer written); if its
    /// spans come back it starts again from zero with a new start time, a counter reset that
    /// `rate` and `increase` handle. `0` keeps series until the process ends. Default `15m`.
    pub metrics_expiration: HumanDuration,
    /// Most series one tenant keeps; a span whose labels would make one more is counted in the
    /// tenant's one overflow series, labelled only `otel_metric_overflow="true"` (the
    /// connector's `aggregation_cardinality_limit`). Default 10,000.
    pub aggregation_cardinality_limit: usize,
    /// Most series kept over all tenants together; past it, new label sets of every tenant go
    /// to that tenant's overflow series. Default 100,000.
    pub max_series: usize,
    /// Most memory the series may hold over all tenants (their label values and counters, as
    /// counted in `slo_gate_span_metrics_memory_bytes`); past it, new label sets go to the
    /// overflow series. Default 64 MiB.
    pub max_memory_bytes: u64,
    /// Which spans are counted, by OTLP span kind. Default `SPAN_KIND_SERVER` and
    /// `SPAN_KIND_CONSUMER`: the spans that stand for a request a service handled; a CLIENT
    /// span is the same request seen by its caller and would count it twice.
    pub span_kinds: Vec<SpanKindName>,
}

/// One `dimensions` entry of `[span_metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanMetricsDimension {
    /// The attribute, e.g. `http.route`; the label is its Prometheus form (`http_route`).
    pub name: String,
    /// The value of spans that have none. Without it, such spans have no such label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// An OTLP span kind as the connector writes it in `span.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpanKindName {
    #[serde(rename = "SPAN_KIND_UNSPECIFIED")]
    Unspecified,
    #[serde(rename = "SPAN_KIND_INTERNAL")]
    Internal,
    #[serde(rename = "SPAN_KIND_SERVER")]
    Server,
    #[serde(rename = "SPAN_KIND_CLIENT")]
    Client,
    #[serde(rename = "SPAN_KIND_PRODUCER")]
    Producer,
    #[serde(rename = "SPAN_KIND_CONSUMER")]
    Consumer,
}

/// The connector's default histogram buckets, in milliseconds.
const SPAN_METRICS_BUCKETS_MS: [u64; 16] =
    [2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000];

/// Most `[span_metrics]` buckets: each one is a counter in every series.
pub const MAX_SPAN_METRICS_BUCKETS: usize = 64;
/// Most `[span_metrics]` dimensions: each one multiplies the series a service can make.
pub const MAX_SPAN_METRICS_DIMENSIONS: usize = 16;

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        let dimension = |name: &str| SpanMetricsDimension { name: name.to_string(), default: None };
        SpanMetricsConfig {
            enabled: true,
            dimensions: vec![
                dimension("service.version"),
                dimension("deployment.environment"),
                dimension("http.route"),
            ],
            buckets: SPAN_METRICS_BUCKETS_MS.iter().map(|ms| HumanDuration(Duration::from_millis(*ms))).collect(),
            metrics_flush_interval: HumanDuration(Duration::from_secs(15)),
            metrics_expiration: HumanDuration(Duration::from_secs(15 * 60)),
            aggregation_cardinality_limit: 10_000,
            max_series: 100_000,
            max_memory_bytes: 64 << 20,
            span_kinds: vec![SpanKindName::Server, SpanKindName::Consumer],
        }
    }
}

impl SpanMetricsConfig {
    /// Every problem of the table, each naming its key.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        // The four labels every series has, the overflow series' label, and the ones the
        // Prometheus translation adds: a dimension may take none of them.
        const TAKEN: [&str; 8] =
            ["service_name", "span_name", "span_kind", "status_code", "otel_metric_overflow", "job", "instance", "le"];
        let mut labels: Vec<(String, &str)> = Vec::new();
        if self.dimensions.len() > MAX_SPAN_METRICS_DIMENSIONS {
            problems.push(format!(
                "span_metrics.dimensions has {} entries; at most {MAX_SPAN_METRICS_DIMENSIONS} are allowed",
                self.dimensions.len()
            ));
        }
        for (i, d) in self.dimensions.iter().enumerate() {
            if d.name.trim().is_empty() {
                problems.push(format!("span_metrics.dimensions[{i}].name is empty"));
                continue;
            }
            let label = span_metrics_label(&d.name);
            if TAKEN.contains(&label.as_str()) {
                problems.push(format!(
                    "span_metrics.dimensions[{i}].name {:?} would be the label {label:?}, which every span-metric series already has",
                    d.name
                ));
            } else if let Some((_, other)) = labels.iter().find(|(l, _)| *l == label) {
                problems.push(format!(
                    "span_metrics.dimensions[{i}].name {:?} would be the label {label:?}, like {other:?} before it",
                    d.name
                ));
            } else {
                labels.push((label, &d.name));
            }
        }
        if self.buckets.is_empty() {
            problems.push("span_metrics.buckets is empty".to_string());
        }
        if self.buckets.len() > MAX_SPAN_METRICS_BUCKETS {
            problems.push(format!(
                "span_metrics.buckets has {} bounds; at most {MAX_SPAN_METRICS_BUCKETS} are allowed",
                self.buckets.len()
            ));
        }
        if self.buckets.first().is_some_and(|b| b.0.is_zero()) {
            problems.push("span_metrics.buckets[0] must be longer than 0s".to_string());
        }
        if let Some(i) = self.buckets.windows(2).position(|w| w[1].0 <= w[0].0) {
            problems.push(format!(
                "span_metrics.buckets must increase: [{}] ({:?}) is not above [{i}] ({:?})",
                i + 1,
                self.buckets[i + 1].0,
                self.buckets[i].0
            ));
        }
        if self.metrics_flush_interval.0 < Duration::from_millis(100) {
            problems.push(format!(
                "span_metrics.metrics_flush_interval must be at least 100ms, not {:?}",
                self.metrics_flush_interval.0
            ));
        }
        if !self.metrics_expiration.0.is_zero() && self.metrics_expiration.0 < self.metrics_flush_interval.0 {
            problems.push(
                "span_metrics.metrics_expiration must not be shorter than span_metrics.metrics_flush_interval (or 0 for never)"
                    .to_string(),
            );
        }
        for (key, value) in
            [("aggregation_cardinality_limit", self.aggregation_cardinality_limit), ("max_series", self.max_series)]
        {
            if value == 0 {
                problems.push(format!("span_metrics.{key} must be at least 1"));
            }
        }
        if self.span_kinds.is_empty() {
            problems.push("span_metrics.span_kinds is empty: no span would be counted".to_string());
        }
        if self.max_memory_bytes < 1 << 20 {
            problems
                .push(format!("span_metrics.max_memory_bytes must be at least 1 MiB, not {}", self.max_memory_bytes));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }
}

/// The Prometheus label an attribute name becomes, as `model::prometheus` translates attribute
/// names (characters outside `[a-zA-Z0-9_]` become `_`; a leading digit gets `key_`).
fn span_metrics_label(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    out
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
}

/// Whether a TLS listener asks its clients for a certificate (`client_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is asked for: TLS protects the connection, tokens (if any) say
    /// who the client is. The default.
    #[default]
    None,
    /// A client certificate is asked for; a client without one is let in without a SPIFFE ID,
    /// one with a certificate that does not verify is refused at the handshake.
    Optional,
    /// A client without a certificate that verifies is refused at the handshake.
    Required,
}

/// The listener names of `[tls]` (`listeners`, `client_auth_per_listener`).
pub const TLS_LISTENERS: [&str; 3] = ["otlp_grpc", "otlp_http", "api"];

/// The `[tls]` table: TLS 1.2 and 1.3 (rustls) on the listeners, with certificates and keys
/// from PEM files that are watched and reloaded, and client certificates verified as SPIFFE
/// X.509-SVIDs against one CA bundle per trust domain.
///
/// ```toml
/// [tls]
/// cert_file = "/etc/slo-gate/server.pem"
/// key_file = "/etc/slo-gate/server-key.pem"
/// client_auth = "required"
/// listeners = ["otlp_grpc", "otlp_http", "api"]
/// reload_interval = "5s"
/// [tls.client_auth_per_listener]
/// api = "optional"
/// [tls.trust_domains]
/// "prod.example" = "/etc/slo-gate/prod-bundle.pem"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawTlsConfig", into = "RawTlsConfig")]
pub struct TlsConfig {
    /// The server's certificate chain (PEM, leaf first).
    pub cert_file: PathBuf,
    /// The private key of the leaf certificate (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
    /// `none` (default), `optional` or `required`; see [`ClientAuth`].
    pub client_auth: ClientAuth,
    /// `client_auth` of single listeners (`otlp_grpc`, `otlp_http`, `api`), e.g. the API
    /// `optional` so that Grafana can come with a token while services need a certificate.
    pub client_auth_per_listener: BTreeMap<String, ClientAuth>,
    /// Which listeners speak TLS (the others stay plaintext). Default: all three.
    pub listeners: Vec<String>,
    /// How often the certificate, key and bundle files are looked at; a change is loaded for
    /// new connections (established ones keep theirs). A file that does not load keeps the
    /// configuration in use and is logged. Default `5s`.
    pub reload_interval: HumanDuration,
    /// CA bundle (PEM) of each SPIFFE trust domain whose clients are accepted: a client
    /// certificate is verified against the bundle of the trust domain of its SPIFFE ID only.
    pub trust_domains: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_auth: ClientAuth,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    client_auth_per_listener: BTreeMap<String, ClientAuth>,
    #[serde(default = "default_tls_listeners")]
    listeners: Vec<String>,
    #[serde(default = "default_reload_interval")]
    reload_interval: HumanDuration,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    trust_domains: BTreeMap<String, PathBuf>,
}

fn default_tls_listeners() -> Vec<String> {
    TLS_LISTENERS.iter().map(|l| l.to_string()).collect()
}

fn default_reload_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

impl TryFrom<RawTlsConfig> for TlsConfig {
    type Error = String;

    fn try_from(raw: RawTlsConfig) -> Result<Self, String> {
        let known = |l: &String| TLS_LISTENERS.contains(&l.as_str());
        let expected = TLS_LISTENERS.join(", ");
        if raw.listeners.is_empty() {
            return Err(format!("tls: `listeners` is empty; name at least one of {expected} (or leave out [tls])"));
        }
        if let Some(bad) = raw.listeners.iter().chain(raw.client_auth_per_listener.keys()).find(|l| !known(l)) {
            return Err(format!("tls: unknown listener {bad:?}; expected one of {expected}"));
        }
        if raw.reload_interval.0.is_zero() {
            return Err("tls: `reload_interval` must be longer than 0s".to_string());
        }
        for domain in raw.trust_domains.keys() {
            match crate::identity::SpiffeId::parse(&format!("spiffe://{domain}")) {
                Ok(id) if id.trust_domain() == domain => {}
                Ok(_) => return Err(format!("tls: trust domain {domain:?} holds a `/`; name the trust domain only")),
                Err(e) => return Err(format!("tls: trust domain {domain:?}: {e}")),
            }
        }
        let config = TlsConfig {
            cert_file: raw.cert_file,
            key_file: raw.key_file,
            client_auth: raw.client_auth,
            client_auth_per_listener: raw.client_auth_per_listener,
            listeners: raw.listeners,
            reload_interval: raw.reload_interval,
            trust_domains: raw.trust_domains,
        };
        if config.trust_domains.is_empty()
            && let Some(l) = TLS_LISTENERS.iter().find(|l| config.client_auth_of(l) != ClientAuth::None)
        {
            return Err(format!(
                "tls: listener {l} asks for client certificates but no [tls.trust_domains] bundle is configured to verify them"
            ));
        }
        Ok(config)
    }
}

impl From<TlsConfig> for RawTlsConfig {
    fn from(c: TlsConfig) -> Self {
        RawTlsConfig {
            cert_file: c.cert_file,
            key_file: c.key_file,
            client_auth: c.client_auth,
            client_auth_per_listener: c.client_auth_per_listener,
            listeners: c.listeners,
            reload_interval: c.reload_interval,
            trust_domains: c.trust_domains,
        }
    }
}

impl TlsConfig {
    /// A configuration of `cert_file` and `key_file` on every listener, without client
    /// certificates (what `--tls-cert` and `--tls-key` alone make).
    pub fn new(cert_file: PathBuf, key_file: PathBuf) -> TlsConfig {
        TlsConfig {
            cert_file,
            key_file,
            client_auth: ClientAuth::None,
            client_auth_per_listener: BTreeMap::new(),
            listeners: default_tls_listeners(),
            reload_interval: default_reload_interval(),
            trust_domains: BTreeMap::new(),
        }
    }

    /// Whether the listener named `listener` (`otlp_grpc`, `otlp_http`, `api`) speaks TLS.
    pub fn serves(&self, listener: &str) -> bool {
        self.listeners.iter().any(|l| l == listener)
    }

    /// The `client_auth` of the listener named `listener`, or `none` if it is not a TLS one.
    pub fn client_auth_of(&self, listener: &str) -> ClientAuth {
        if !self.serves(listener) {
            return ClientAuth::None;
        }
        self.client_auth_per_listener.get(listener).copied().unwrap_or(self.client_auth)
    }

    /// The same checks as reading the `[tls]` table (for a configuration made by flags).
    pub fn validate(&self) -> Result<(), String> {
        TlsConfig::try_from(RawTlsConfig::from(self.clone())).map(|_| ())
    }
}

impl Config {
    /// Reads a TOML file; keys it does not set keep their defaults, unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::from_toml(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })
    }

    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_table_parses_with_defaults_and_is_validated() {
        let cfg = Config::from_toml("[tls]\ncert_file = \"s.pem\"\nkey_file = \"k.pem\"\n").unwrap();
        let tls = cfg.tls.unwrap();
        assert_eq!(tls.listeners, ["otlp_grpc", "otlp_http", "api"]);
        assert_eq!((tls.client_auth, tls.reload_interval.0), (ClientAuth::None, Duration::from_secs(5)));
        assert!(Config::default().tls.is_none());

        let cfg = Config::from_toml(
            "[tls]\ncert_file = \"s.pem\"\nkey_file = \"k.pem\"\nclient_auth = \"required\"\nlisteners = [\"otlp_grpc\", \"api\"]\n\
             [tls.client_auth_per_listener]\napi = \"optional\"\n[tls.trust_domains]\n\"prod.example\" = \"b.pem\"\n",
        )
        .unwrap();
        let tls = cfg.tls.unwrap();
        assert_eq!(tls.client_auth_of("otlp_grpc"), ClientAuth::Required);
        assert_eq!(tls.client_auth_of("api"), ClientAuth::Optional);
        assert_eq!(tls.client_auth_of("otlp_http"), ClientAuth::None, "a plaintext listener asks for nothing");
        assert!(!tls.serves("otlp_http"));

        for (table, problem) in [
            ("client_auth = \"sometimes\"", "unknown variant `sometimes`"),
            ("listeners = []", "`listeners` is empty"),
            ("listeners = [\"grpc\"]", "unknown listener \"grpc\""),
            ("client_auth_per_listener = { otlp = \"none\" }", "unknown listener \"otlp\""),
            ("reload_interval = \"0s\"", "`reload_interval` must be longer than 0s"),
            (
                "client_auth = \"optional\"",
                "listener otlp_grpc asks for client certificates but no [tls.trust_domains]",
            ),
            ("trust_domains = { \"Prod.example\" = \"b.pem\" }", "trust domain \"Prod.example\""),
            ("trust_domains = { \"prod.example/ns\" = \"b.pem\" }", "name the trust domain only"),
            ("cert = \"x\"", "unknown field `cert`"),
        ] {
            let text = format!("[tls]\ncert_file = \"s.pem\"\nkey_file = \"k.pem\"\n{table}\n");
            let err = Config::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(problem), "{table}: {err}");
        }
    }

    #[test]
    fn toml_overrides_defaults_and_refuses_typos() {
        let cfg = Config::from_toml(
            "retention = \"7d\"\n[storage]\ndurability = \"fsync\"\n[limits]\nmax_request_bytes = 1024\n",
        )
        .unwrap();
        assert_eq!(cfg.retention.0, Duration::from_secs(7 * 86_400));
        assert_eq!(cfg.storage.durability, Durability::Fsync);
        assert_eq!(cfg.limits.max_request_bytes, 1024);
        assert_eq!(cfg.otlp_grpc, Config::default().otlp_grpc);

        let err = Config::from_toml("[limits]\nmax_request_byte = 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `max_request_byte`"), "{err}");
        let err = Config::from_toml("retention = \"14 days\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown unit"), "{err}");
    }

    #[test]
    fn server_table_parses_and_the_connection_cap_follows_the_descriptor_limit() {
        let cfg = Config::from_toml(
            "[server]\nmax_inflight_body_bytes = 1048576\nidle_timeout = \"2s\"\nbody_progress_timeout = \"500ms\"\n",
        )
        .unwrap();
        assert_eq!(cfg.server.max_inflight_body_bytes, 1 << 20);
        assert_eq!(cfg.server.idle_timeout.0, Duration::from_secs(2));
        assert_eq!(cfg.server.body_progress_timeout.0, Duration::from_millis(500));
        assert_eq!(cfg.server.body_timeout.0, Duration::from_secs(60));
        // Derived: the limit less the reserve, at least a quarter of the limit.
        assert_eq!(cfg.server.connection_cap(1024), 768);
        assert_eq!(cfg.server.connection_cap(65_536), 65_280);
        assert_eq!(cfg.server.connection_cap(256), 64);
        let cfg = Config::from_toml("[server]\nmax_connections = 10\n").unwrap();
        assert_eq!(cfg.server.connection_cap(1024), 10);
        let err = Config::from_toml("[server]\nidle_timout = \"1s\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `idle_timout`"), "{err}");
    }

    #[test]
    fn scrape_tables_parse_with_defaults_and_are_validated() {
        let cfg = Config::from_toml(
            "[[scrape]]\ntargets = [\"127.0.0.1:6060\"]\nlabels = { service_name = \"api\" }\n\
             [[scrape]]\ntargets = [\"http://h:1/x\"]\ninterval = \"2s\"\ncpu_seconds = 1\n\
             profiles = [\"profile\", \"goroutine\"]\ntimeout = \"5s\"\ntenant = \"team-a\"\n",
        )
        .unwrap();
        assert_eq!(cfg.scrape.len(), 2);
        let first = &cfg.scrape[0];
        assert_eq!(first.interval.0, Duration::from_secs(15));
        assert_eq!(first.cpu_seconds, 10);
        assert_eq!(first.profiles, SCRAPE_PROFILES.to_vec());
        assert_eq!(first.labels.get("service_name").map(String::as_str), Some("api"));
        assert_eq!(first.tenant, None);
        let second = &cfg.scrape[1];
        assert_eq!(second.profiles, ["profile", "goroutine"]);
        assert_eq!(second.timeout.map(|t| t.0), Some(Duration::from_secs(5)));
        assert_eq!(second.tenant.as_deref(), Some("team-a"));

        let err = Config::from_toml("[[scrape]]\ntargets = [\"a:1\"]\nprofiles = [\"cpu\"]\n").unwrap_err();
        assert!(err.to_string().contains("unknown profile \"cpu\""), "{err}");
        let err =
            Config::from_toml("[[scrape]]\ntargets = [\"a:1\"]\ninterval = \"5s\"\ncpu_seconds = 5\n").unwrap_err();
        assert!(err.to_string().contains("`cpu_seconds` (5) must be shorter than `interval`"), "{err}");
        let err = Config::from_toml("[[scrape]]\ntargets = [\"a:1\"]\nintervall = \"5s\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `intervall`"), "{err}");

        // https targets: a way to trust the server, files read at parse time and named.
        let err = Config::from_toml("[[scrape]]\ntargets = [\"https://h:1\"]\n").unwrap_err();
        assert!(err.to_string().contains("target \"https://h:1\": tls: an https:// URL needs `ca_file`"), "{err}");
        let err = Config::from_toml("[[scrape]]\ntargets = [\"ftp://h:1\"]\n").unwrap_err();
        assert!(err.to_string().contains("scheme \"ftp\" is not supported"), "{err}");
        let err =
            Config::from_toml("[[scrape]]\ntargets = [\"https://h:1\"]\ntls = { ca_file = \"/nonexistent/ca.pem\" }\n")
                .unwrap_err();
        assert!(err.to_string().contains("cannot read /nonexistent/ca.pem"), "{err}");
        let err = Config::from_toml("[[scrape]]\ntargets = [\"h:1\"]\nbearer_token_file = \"/nonexistent/token\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("`bearer_token_file` /nonexistent/token: cannot read it"), "{err}");
        let err = Config::from_toml(
            "[[scrape]]\ntargets = [\"https://h:1\"]\ntls = { ca_file = \"/ca.pem\", insecure = true }\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `insecure`"), "{err}");
        let cfg = Config::from_toml(
            "[[scrape]]\ntargets = [\"https://h:1\"]\ntls_config = { insecure_skip_verify = true, server_name = \"h.internal\" }\n",
        )
        .unwrap();
        let tls = cfg.scrape[0].tls.as_ref().unwrap();
        assert!(tls.insecure_skip_verify && tls.server_name.as_deref() == Some("h.internal"));
    }

    #[test]
    fn webhook_tables_parse_with_defaults_and_are_validated() {
        let cfg = Config::from_toml(
            "[[webhook]]\nname = \"oncall\"\nurl = \"http://127.0.0.1:9000/hook\"\n\
             [[webhook]]\nname = \"am\"\nurl = \"http://am:9093/api/v2/alerts\"\nformat = \"alertmanager-v2\"\n\
             timeout = \"2s\"\ninitial_backoff = \"100ms\"\nmax_backoff = \"10s\"\n\
             bearer_token_file = \"/run/token\"\nheaders = { \"X-Scope-OrgID\" = \"team-a\" }\n",
        )
        .unwrap();
        assert_eq!(cfg.webhook.len(), 2);
        let first = &cfg.webhook[0];
        assert_eq!(first.format, WebhookFormat::Webhook);
        assert_eq!(first.timeout.0, Duration::from_secs(10));
        assert_eq!((first.initial_backoff.0, first.max_backoff.0), (Duration::from_secs(1), Duration::from_secs(300)));
        assert!(first.headers.is_empty() && first.bearer_token_file.is_none());
        let second = &cfg.webhook[1];
        assert_eq!(second.format, WebhookFormat::AlertmanagerV2);
        assert_eq!(second.timeout.0, Duration::from_secs(2));
        assert_eq!(second.initial_backoff.0, Duration::from_millis(100));
        assert_eq!(second.headers.get("X-Scope-OrgID").map(String::as_str), Some("team-a"));
        assert_eq!(second.bearer_token_file.as_deref(), Some(Path::new("/run/token")));
        assert!(Config::default().webhook.is_empty());
        let https = Config::from_toml(
            "[[webhook]]\nname = \"a\"\nurl = \"https://h:8443/x\"\ntls = { ca_file = \"/ca.pem\", server_name = \"h.internal\" }\n\
             [[webhook]]\nname = \"b\"\nurl = \"https://h/x\"\ntls_config = { insecure_skip_verify = true }\n",
        )
        .unwrap();
        let tls = https.webhook[0].tls.as_ref().unwrap();
        assert_eq!(
            (tls.ca_file.as_deref(), tls.server_name.as_deref()),
            (Some(Path::new("/ca.pem")), Some("h.internal"))
        );
        assert!(https.webhook[1].tls.as_ref().unwrap().insecure_skip_verify, "Prometheus's `tls_config` name");

        let bad =
            |body: &str| Config::from_toml(&format!("[[webhook]]\nname = \"w\"\n{body}")).unwrap_err().to_string();
        for (body, message) in [
            ("url = \"ftp://h/x\"", "webhook \"w\": `url` \"ftp://h/x\": scheme \"ftp\" is not supported"),
            ("url = \"https://h/x\"", "an https:// URL needs `ca_file`"),
            (
                "url = \"https://h/x\"\ntls = { cert_file = \"/c.pem\", ca_file = \"/ca.pem\" }",
                "`cert_file` is set without `key_file`",
            ),
            ("url = \"http://h/\"\ntls = { ca_fil = \"/ca.pem\" }", "unknown field `ca_fil`"),
            ("url = \"/hook\"", "not an absolute URL"),
            ("url = \"http://exa mple/\"", "`url` \"http://exa mple/\": not a URL"),
            ("url = \"http://h/\"\ntimeout = \"0s\"", "`timeout` must be longer than 0s"),
            ("url = \"http://h/\"\ninitial_backoff = \"2s\"\nmax_backoff = \"1s\"", "`max_backoff` (1s) is shorter"),
            ("url = \"http://h/\"\nformat = \"slack\"", "unknown variant `slack`"),
            ("url = \"http://h/\"\nheaders = { \"Content-Type\" = \"text/plain\" }", "is set by the client"),
            ("url = \"http://h/\"\nheaders = { \"Bad Header\" = \"x\" }", "not a valid header name"),
            ("url = \"http://h/\"\nheaders = { Authorization = \"Bearer x\" }\nbearer_token_file = \"/t\"", "keep one"),
            ("url = \"http://h/\"\nretries = 3", "unknown field `retries`"),
        ] {
            let err = bad(body);
            assert!(err.contains(message), "{body}: {err}");
        }
        let err = Config::from_toml("[[webhook]]\nname = \"a/b\"\nurl = \"http://h/\"\n").unwrap_err().to_string();
        assert!(err.contains("`name` \"a/b\" has '/'"), "{err}");
        let err = Config::from_toml("[[webhook]]\nurl = \"http://h/\"\n").unwrap_err().to_string();
        assert!(err.contains("missing field `name`"), "{err}");
        let twice = "[[webhook]]\nname = \"a\"\nurl = \"http://h/\"\n[[webhook]]\nname = \"a\"\nurl = \"http://g/\"\n";
        let err = Config::from_toml(twice).unwrap_err().to_string();
        assert!(err.contains("two webhooks are named \"a\""), "{err}");
    }

    #[test]
    fn attribute_depth_cannot_exceed_what_storage_reads_back() {
        let cfg = Config::from_toml("[limits]\nmax_attribute_depth = 30\nmax_stack_depth = 0\n").unwrap();
        assert_eq!((cfg.limits.max_attribute_depth, cfg.limits.max_stack_depth), (30, 0));
        let err = Config::from_toml("[limits]\nmax_attribute_depth = 31\n").unwrap_err();
        assert!(err.to_string().contains("max_attribute_depth 31 is above 30"), "{err}");
        assert_eq!((Limits::default().max_attribute_depth, Limits::default().max_stack_depth), (16, 1000));
    }

    #[test]
    fn span_metrics_table_parses_and_every_problem_is_reported() {
        let defaults = SpanMetricsConfig::default();
        assert_eq!(defaults.validate(), Ok(()));
        assert_eq!(Config::default().span_metrics, defaults);
        assert_eq!(defaults.buckets.len(), 16);
        assert_eq!(
            (defaults.buckets[0].0, defaults.buckets[15].0),
            (Duration::from_millis(2), Duration::from_secs(15))
        );

        let cfg = Config::from_toml(
            "[span_metrics]\nenabled = false\nmetrics_flush_interval = \"1s\"\nmetrics_expiration = \"0\"\n\
             dimensions = [{ name = \"http.route\" }, { name = \"tier\", default = \"free\" }]\n\
             buckets = [\"100us\", \"1s\"]\nspan_kinds = [\"SPAN_KIND_SERVER\"]\n",
        )
        .unwrap();
        let sm = &cfg.span_metrics;
        assert!(!sm.enabled);
        assert_eq!(sm.metrics_flush_interval.0, Duration::from_secs(1));
        assert!(sm.metrics_expiration.0.is_zero());
        assert_eq!(sm.dimensions[1], SpanMetricsDimension { name: "tier".into(), default: Some("free".into()) });
        assert_eq!(sm.buckets[0].0, Duration::from_micros(100));
        assert_eq!(sm.span_kinds, [SpanKindName::Server]);
        assert_eq!(sm.aggregation_cardinality_limit, 10_000, "keys not set keep their defaults");
        assert_eq!(sm.validate(), Ok(()));

        let err = Config::from_toml("[span_metrics]\nflush_interval = \"1s\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `flush_interval`"), "{err}");
        let err = Config::from_toml("[span_metrics]\nspan_kinds = [\"SERVER\"]\n").unwrap_err();
        assert!(err.to_string().contains("unknown variant `SERVER`"), "{err}");

        let bad = Config::from_toml(
            "[span_metrics]\ndimensions = [{ name = \"http.route\" }, { name = \"http_route\" }, { name = \"span.name\" }, { name = \"\" }]\n\
             buckets = [\"1s\", \"1s\"]\nmetrics_flush_interval = \"10ms\"\naggregation_cardinality_limit = 0\n\
             span_kinds = []\nmax_memory_bytes = 10\n",
        )
        .unwrap();
        let problems = bad.span_metrics.validate().unwrap_err();
        for expected in [
            "span_metrics.dimensions[1].name \"http_route\" would be the label \"http_route\", like \"http.route\" before it",
            "span_metrics.dimensions[2].name \"span.name\" would be the label \"span_name\", which every span-metric series already has",
            "span_metrics.dimensions[3].name is empty",
            "span_metrics.buckets must increase: [1] (1s) is not above [0] (1s)",
            "span_metrics.metrics_flush_interval must be at least 100ms, not 10ms",
            "span_metrics.aggregation_cardinality_limit must be at least 1",
            "span_metrics.span_kinds is empty: no span would be counted",
            "span_metrics.max_memory_bytes must be at least 1 MiB, not 10",
        ] {
            assert!(problems.contains(expected), "missing {expected:?} in {problems}");
        }
        assert_eq!(problems.matches("; ").count(), 7, "{problems}");
    }
}
