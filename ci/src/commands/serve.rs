//! `slo-gate serve`: configuration from defaults, then `--config FILE`, then flags and
//! `SLO_GATE_*` environment variables; runs until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use collector::config::{BucketConfig, ClientAuth, Config, Durability, TlsConfig};
use collector::{Collector, RunningCollector};
use slo_contracts::HumanDuration;

/// Flags of `slo-gate serve`; each overrides the same key of the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file; flags and environment variables override its keys.
    #[arg(long, env = "SLO_GATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, env = "SLO_GATE_OTLP_GRPC")]
    pub otlp_grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long, env = "SLO_GATE_OTLP_HTTP")]
    pub otlp_http: Option<SocketAddr>,
    /// Query API listen address [default: 127.0.0.1:4040].
    #[arg(long, env = "SLO_GATE_API")]
    pub api: Option<SocketAddr>,
    /// Data directory for the write-ahead log and Parquet parts [default: ./data].
    #[arg(long, env = "SLO_GATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Delete data older than this, e.g. 14d, 36h [default: 14d].
    #[arg(long, env = "SLO_GATE_RETENTION")]
    pub retention: Option<HumanDuration>,
    /// When a request is acknowledged: fsync (each request), group (shared fsync), none.
    #[arg(long, env = "SLO_GATE_DURABILITY", value_parser = parse_durability)]
    pub durability: Option<Durability>,
    /// Group-commit window with --durability group [default: 5ms].
    #[arg(long, env = "SLO_GATE_GROUP_COMMIT_INTERVAL")]
    pub group_commit_interval: Option<HumanDuration>,
    /// Write the in-memory head to Parquet parts at least this often [default: 30s].
    #[arg(long, env = "SLO_GATE_FLUSH_INTERVAL")]
    pub flush_interval: Option<HumanDuration>,
    /// ... or when its rows hold this many bytes of memory [default: 33554432].
    #[arg(long, env = "SLO_GATE_MAX_HEAD_BYTES")]
    pub max_head_bytes: Option<u64>,
    /// Memory the span indexes kept for trace lookups and searches may hold [default:
    /// 33554432].
    #[arg(long, env = "SLO_GATE_SPAN_INDEX_CACHE_BYTES")]
    pub span_index_cache_bytes: Option<u64>,
    /// Memory the traces parts' trace keys may hold; past it the oldest parts' keys are
    /// released and lookups read those parts' trace ids [default: 16777216].
    #[arg(long, env = "SLO_GATE_TRACE_KEY_BYTES")]
    pub trace_key_bytes: Option<u64>,
    /// Largest request body, after decompression [default: 16777216].
    #[arg(long, env = "SLO_GATE_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Items with more attributes are rejected [default: 128].
    #[arg(long, env = "SLO_GATE_MAX_ATTRIBUTES_PER_ITEM")]
    pub max_attributes_per_item: Option<usize>,
    /// How long a write that finds the head full waits for the flusher before it is refused
    /// with 429 / UNAVAILABLE [default: 2s; 0s refuses at once].
    #[arg(long, env = "SLO_GATE_MAX_WAIT_FOR_FLUSH")]
    pub max_wait_for_flush: Option<HumanDuration>,
    /// Export requests processed at once; more get 503 [default: 1024].
    #[arg(long, env = "SLO_GATE_MAX_INFLIGHT_REQUESTS")]
    pub max_inflight_requests: Option<usize>,
    /// Open connections over all listeners; more are closed at once [default: the open-file
    /// limit less `server.fd_reserve`].
    #[arg(long, env = "SLO_GATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Bytes of request bodies held at once over all requests; more get 429 [default: 134217728].
    #[arg(long, env = "SLO_GATE_MAX_INFLIGHT_BODY_BYTES")]
    pub max_inflight_body_bytes: Option<usize>,
    /// Items with attribute values nested deeper (arrayValue/kvlistValue levels) are rejected
    /// [default: 16, at most 30].
    #[arg(long, env = "SLO_GATE_MAX_ATTRIBUTE_DEPTH", value_parser = parse_attribute_depth)]
    pub max_attribute_depth: Option<usize>,
    /// Profile stacks deeper than this many frames keep their outermost frames; 0 keeps all
    /// [default: 1000].
    #[arg(long, env = "SLO_GATE_MAX_STACK_DEPTH")]
    pub max_stack_depth: Option<usize>,
    /// File of write tokens (one per line) that `slo-gate check` must present to record a
    /// gate run; without it recording runs is refused.
    #[arg(long, env = "SLO_GATE_GATE_TOKEN_FILE", value_name = "FILE")]
    pub gate_token_file: Option<PathBuf>,
    /// TLS on every listener with this certificate chain (PEM, leaf first); with --tls-key.
    /// Reloaded when the file changes.
    #[arg(long, env = "SLO_GATE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "SLO_GATE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle verifying client certificates of one SPIFFE trust domain, e.g.
    /// prod.example=ca.pem (repeatable; comma-separated in the environment variable).
    #[arg(long, env = "SLO_GATE_TLS_CLIENT_CA", value_name = "TRUST_DOMAIN=FILE", value_delimiter = ',', value_parser = parse_client_ca)]
    pub tls_client_ca: Vec<(String, PathBuf)>,
    /// Client certificates: none, optional (verified when presented) or required [default:
    /// none].
    #[arg(long, env = "SLO_GATE_TLS_CLIENT_AUTH", value_name = "MODE", value_parser = parse_client_auth)]
    pub tls_client_auth: Option<ClientAuth>,
    /// Share parts through this S3-compatible bucket, s3://bucket[/prefix] (the
    /// `[storage.bucket]` table; docs/object-storage.md). Credentials come from the AWS
    /// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
    #[arg(long, env = "SLO_GATE_BUCKET_URL", value_name = "URL")]
    pub bucket_url: Option<String>,
    /// The bucket's S3 endpoint, for stores other than AWS (MinIO, SeaweedFS, Ceph, R2).
    #[arg(long, env = "SLO_GATE_BUCKET_ENDPOINT", value_name = "URL")]
    pub bucket_endpoint: Option<String>,
    /// The bucket's region [default: us-east-1].
    #[arg(long, env = "SLO_GATE_BUCKET_REGION")]
    pub bucket_region: Option<String>,
    /// This collector's name in the bucket [default: generated once, kept in the data
    /// directory].
    #[arg(long, env = "SLO_GATE_BUCKET_WRITER_ID")]
    pub bucket_writer_id: Option<String>,
}

fn parse_client_ca(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((domain, file)) if !domain.is_empty() && !file.is_empty() => Ok((domain.to_string(), PathBuf::from(file))),
        _ => Err(format!("{s:?} is not TRUST_DOMAIN=FILE, e.g. prod.example=ca.pem")),
    }
}

fn parse_client_auth(s: &str) -> Result<ClientAuth, String> {
    match s {
        "none" => Ok(ClientAuth::None),
        "optional" => Ok(ClientAuth::Optional),
        "required" => Ok(ClientAuth::Required),
        other => Err(format!("{other:?} is not a client auth mode; use none, optional or required")),
    }
}

fn parse_attribute_depth(s: &str) -> Result<usize, String> {
    let depth = s.parse::<usize>().map_err(|e| format!("{s:?} is not a number of levels: {e}"))?;
    collector::config::check_attribute_depth(depth)
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "fsync" => Ok(Durability::Fsync),
        "group" => Ok(Durability::Group),
        "none" => Ok(Durability::None),
        other => Err(format!("{other:?} is not a durability; use fsync, group or none")),
    }
}

impl ServeArgs {
    /// The configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut cfg = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! set {
            ($($flag:ident => $($field:ident).+),* $(,)?) => {
                $(if let Some(v) = self.$flag.clone() { cfg.$($field).+ = v; })*
            };
        }
        set!(
            otlp_grpc => otlp_grpc,
            otlp_http => otlp_http,
            api => api,
            data_dir => data_dir,
            retention => retention,
            durability => storage.durability,
            group_commit_interval => storage.group_commit_interval,
            flush_interval => storage.flush_interval,
            max_head_bytes => storage.max_head_bytes,
            span_index_cache_bytes => storage.span_index_cache_bytes,
            trace_key_bytes => storage.trace_key_bytes,
            max_request_bytes => limits.max_request_bytes,
            max_attributes_per_item => limits.max_attributes_per_item,
            max_inflight_requests => limits.max_inflight_requests,
            max_inflight_body_bytes => server.max_inflight_body_bytes,
            max_attribute_depth => limits.max_attribute_depth,
            max_stack_depth => limits.max_stack_depth,
            max_wait_for_flush => limits.max_wait_for_flush,
        );
        if let Some(n) = self.max_connections {
            cfg.server.max_connections = Some(n);
        }
        if let Some(path) = &self.gate_token_file {
            cfg.gate.token_file = Some(path.clone());
        }
        self.apply_tls(&mut cfg)?;
        self.apply_bucket(&mut cfg)?;
        Ok(cfg)
    }

    /// The `--bucket-*` flags over the `[storage.bucket]` table: `--bucket-url` makes it (or
    /// replaces its URL); the others need one or the other.
    fn apply_bucket(&self, cfg: &mut Config) -> anyhow::Result<()> {
        let mut bucket = match (cfg.storage.bucket.take(), &self.bucket_url) {
            (Some(mut bucket), Some(url)) => {
                bucket.url = url.clone();
                bucket
            }
            (Some(bucket), None) => bucket,
            (None, Some(url)) => BucketConfig::new(url.clone()),
            (None, None) => {
                let others =
                    self.bucket_endpoint.is_some() || self.bucket_region.is_some() || self.bucket_writer_id.is_some();
                anyhow::ensure!(
                    !others,
                    "--bucket-endpoint, --bucket-region and --bucket-writer-id need --bucket-url (or a [storage.bucket] table in --config)"
                );
                return Ok(());
            }
        };
        if let Some(endpoint) = &self.bucket_endpoint {
            bucket.endpoint = Some(endpoint.clone());
        }
        if let Some(region) = &self.bucket_region {
            bucket.region = region.clone();
        }
        if let Some(writer) = &self.bucket_writer_id {
            bucket.writer_id = Some(writer.clone());
        }
        cfg.storage.bucket = Some(bucket);
        Ok(())
    }
}

impl ServeArgs {
    /// The `--tls-*` flags over the `[tls]` table: the certificate and key flags make (or
    /// replace the files of) the table; bundles are added to its trust domains.
    fn apply_tls(&self, cfg: &mut Config) -> anyhow::Result<()> {
        let any = self.tls_cert.is_some()
            || self.tls_key.is_some()
            || !self.tls_client_ca.is_empty()
            || self.tls_client_auth.is_some();
        if !any {
            return Ok(());
        }
        let tls = match (cfg.tls.take(), &self.tls_cert, &self.tls_key) {
            (Some(mut tls), cert, key) => {
                if let Some(cert) = cert {
                    tls.cert_file = cert.clone();
                }
                if let Some(key) = key {
                    tls.key_file = key.clone();
                }
                tls
            }
            (None, Some(cert), Some(key)) => TlsConfig::new(cert.clone(), key.clone()),
            (None, _, _) => anyhow::bail!("TLS needs both --tls-cert and --tls-key (or a [tls] table in --config)"),
        };
        let mut tls = tls;
        tls.trust_domains.extend(self.tls_client_ca.iter().cloned());
        if let Some(mode) = self.tls_client_auth {
            tls.client_auth = mode;
        }
        tls.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        cfg.tls = Some(tls);
        Ok(())
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("slo-gate")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
        let running: RunningCollector = Collector::start(config).await?;
        // One line on stdout with the bound addresses, for people and for scripts that start
        // the collector on port 0.
        println!(
            "slo-gate listening otlp-grpc={} otlp-http={} api={} data-dir={}",
            running.otlp_grpc,
            running.otlp_http,
            running.api,
            data_dir.display()
        );
        wait_for_signal().await;
        tracing::info!("shutting down");
        running.stop(Duration::from_secs(10)).await;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> anyhow::Result<Config> {
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))?;
        cli.serve.config()
    }

    #[test]
    fn bucket_flags_make_the_bucket_table() {
        assert!(config(&[]).unwrap().storage.bucket.is_none());
        let cfg = config(&[
            "--bucket-url=s3://telemetry/prod",
            "--bucket-endpoint=http://127.0.0.1:8333",
            "--bucket-writer-id=collector-1",
        ])
        .unwrap();
        let bucket = cfg.storage.bucket.unwrap();
        assert_eq!(bucket.url, "s3://telemetry/prod");
        assert_eq!(bucket.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(bucket.writer_id.as_deref(), Some("collector-1"));
        assert_eq!(bucket.region, "us-east-1");
        assert!(bucket.compaction);
        let err = config(&["--bucket-endpoint=http://127.0.0.1:8333"]).unwrap_err().to_string();
        assert!(err.contains("need --bucket-url"), "{err}");
    }

    #[test]
    fn tls_flags_make_the_tls_table() {
        assert!(config(&[]).unwrap().tls.is_none());
        let cfg = config(&[
            "--tls-cert=s.pem",
            "--tls-key=k.pem",
            "--tls-client-ca",
            "prod.example=prod.pem",
            "--tls-client-ca=staging.example=staging.pem",
            "--tls-client-auth=required",
        ])
        .unwrap();
        let tls = cfg.tls.unwrap();
        assert_eq!((tls.cert_file.to_str(), tls.key_file.to_str()), (Some("s.pem"), Some("k.pem")));
        assert_eq!(tls.client_auth_of("otlp_grpc"), ClientAuth::Required);
        assert_eq!(tls.trust_domains.len(), 2);
        assert_eq!(tls.trust_domains["staging.example"], PathBuf::from("staging.pem"));

        for (args, problem) in [
            (&["--tls-cert=s.pem"][..], "both --tls-cert and --tls-key"),
            (&["--tls-client-auth=required"][..], "both --tls-cert and --tls-key"),
            (&["--tls-cert=s.pem", "--tls-key=k.pem", "--tls-client-auth=required"][..], "no [tls.trust_domains]"),
            (&["--tls-cert=s.pem", "--tls-key=k.pem", "--tls-client-ca=prod.pem"][..], "is not TRUST_DOMAIN=FILE"),
            (&["--tls-cert=s.pem", "--tls-key=k.pem", "--tls-client-auth=sometimes"][..], "not a client auth mode"),
            (&["--tls-cert=s.pem", "--tls-key=k.pem", "--tls-client-ca=Prod=p.pem"][..], "trust domain \"Prod\""),
        ] {
            let err = format!("{:#}", config(args).unwrap_err());
            assert!(err.contains(problem), "{args:?}: {err}");
        }
    }
}
