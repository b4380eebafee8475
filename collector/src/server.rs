//! Starts the collector: opens the store, binds the three listeners, serves until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::listener::{self, ConnSettings, Connections};
use crate::query::{self, ApiState};
use crate::receive::admission::Admission;
use crate::receive::{Ingest, otlp_grpc, otlp_http};
use crate::store::{Store, StoreSettings};
use crate::telemetry::{Listener, Telemetry};

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot open storage: {0}")]
    Store(#[from] crate::store::OpenError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The collector, before it runs.
#[derive(Debug)]
pub struct Collector;

/// A running collector: its bound addresses, and the handle to stop it.
#[derive(Debug)]
pub struct RunningCollector {
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub api: SocketAddr,
    pub store: Arc<Store>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { what, addr, source })
}

impl Collector {
    /// Opens the store (replaying the WAL), binds every listener, and starts serving.
    pub async fn start(config: Config) -> Result<RunningCollector, StartError> {
        if config.server.max_inflight_body_bytes < config.limits.max_request_bytes {
            return Err(StartError::Config(format!(
                "server.max_inflight_body_bytes ({}) is smaller than limits.max_request_bytes ({}): the largest request could never be taken",
                config.server.max_inflight_body_bytes, config.limits.max_request_bytes
            )));
        }
        let grpc_listener = bind("OTLP/gRPC", config.otlp_grpc).await?;
        let http_listener = bind("OTLP/HTTP", config.otlp_http).await?;
        let api_listener = bind("API", config.api).await?;
        let addr = |l: &TcpListener, fallback| l.local_addr().unwrap_or(fallback);
        let (otlp_grpc, otlp_http, api) = (
            addr(&grpc_listener, config.otlp_grpc),
            addr(&http_listener, config.otlp_http),
            addr(&api_listener, config.api),
        );

        let telemetry = Arc::new(Telemetry::default());
        let settings = StoreSettings::new(&config.storage, config.retention.0);
        let data_dir = config.data_dir.clone();
        let store_telemetry = Arc::clone(&telemetry);
        let store =
            tokio::task::spawn_blocking(move || Store::open(&data_dir, settings, store_telemetry)).await.map_err(
                |e| crate::store::OpenError::Io { path: config.data_dir.clone(), source: std::io::Error::other(e) },
            )??;
        let store = Arc::new(store);
        let admission = Admission::new(&config.server, Arc::clone(&telemetry));
        let connections =
            Connections::new(config.server.connection_cap(listener::raise_fd_limit()), Arc::clone(&telemetry));
        let ingest = Arc::new(Ingest::new(Arc::clone(&store), config.limits.clone(), telemetry, admission));

        let (shutdown, _) = watch::channel(false);
        let mut tasks = Vec::new();
        let api_router = query::router(ApiState {
            store: Arc::clone(&store),
            ingest: Arc::clone(&ingest),
            data_dir: config.data_dir.clone(),
            runs_lock: Arc::default(),
        });
        for (tcp, which, router, http2_only) in [
            (grpc_listener, Listener::OtlpGrpc, otlp_grpc::router(Arc::clone(&ingest)), true),
            (http_listener, Listener::OtlpHttp, otlp_http::router(Arc::clone(&ingest)), false),
            (api_listener, Listener::Api, api_router, false),
        ] {
            let settings = ConnSettings::new(&config.server, http2_only);
            let serve = listener::serve(tcp, which, router, Arc::clone(&connections), settings, shutdown.subscribe());
            tasks.push(tokio::spawn(serve));
        }
        // pprof scraping: one task per (target, profile), stopped by `shutdown`.
        tasks.extend(crate::receive::pprof_scrape::start(&config.scrape, Arc::clone(&ingest), &shutdown));
        Ok(RunningCollector { otlp_grpc, otlp_http, api, store, shutdown, tasks })
    }
}

impl RunningCollector {
    /// Stops accepting, lets requests in progress finish (up to `grace`), and closes the store.
    pub async fn stop(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace, futures_join(self.tasks)).await;
        let store = self.store;
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}
