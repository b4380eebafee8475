//! The collector's configuration: defaults, overridden by an optional TOML file, overridden
//! by command-line flags and environment variables (the `ci` crate maps those onto this).
//!
//! Every field's doc comment is its user documentation.

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
}
