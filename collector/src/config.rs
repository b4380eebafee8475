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
    /// The release gate's run history: who may record runs, and how much is kept.
    pub gate: GateConfig,
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
            gate: GateConfig::default(),
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
    /// ... or as soon as it holds this many bytes of encoded OTLP.
    pub max_head_bytes: u64,
    /// How often retention runs.
    pub retention_interval: HumanDuration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            durability: Durability::Group,
            group_commit_interval: HumanDuration(Duration::from_millis(5)),
            flush_interval: HumanDuration(Duration::from_secs(30)),
            max_head_bytes: 12 << 20,
            retention_interval: HumanDuration(Duration::from_secs(300)),
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
    /// Export requests being processed at once; more are answered 503 / `UNAVAILABLE`.
    pub max_inflight_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_request_bytes: 16 << 20, max_attributes_per_item: 128, max_inflight_requests: 1024 }
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
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawScrapeConfig", into = "RawScrapeConfig")]
pub struct ScrapeConfig {
    /// `host:port` or base URLs (`http://host:port` or `http://host:port/prefix`); the
    /// profiles are fetched from `<base>/debug/pprof/<profile>`.
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
        Ok(ScrapeConfig {
            targets: raw.targets,
            labels: raw.labels,
            interval: raw.interval,
            profiles: raw.profiles,
            cpu_seconds: raw.cpu_seconds,
            timeout: raw.timeout,
            tenant: raw.tenant,
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
        }
    }
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
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
    }
}
