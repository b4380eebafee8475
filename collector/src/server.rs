//! Starts the collector: opens the store, binds the three listeners, serves until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::WriteTokens;
use crate::config::Config;
use crate::history::History;
use crate::query::{self, ApiState};
use crate::receive::Ingest;
use crate::receive::otlp_grpc::{OtlpGrpc, resource_exhausted_for_oversize};
use crate::receive::otlp_http;
use crate::store::{Store, StoreSettings};
use crate::telemetry::Telemetry;

/// HTTP/2 flow-control windows sized for large export requests: with the 64 KiB defaults a
/// 160 KB request waits for window updates round trip after round trip.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot open storage: {0}")]
    Store(#[from] crate::store::OpenError),
    #[error("{0}")]
    Tokens(#[from] crate::auth::TokenFileError),
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
    /// Opens the store (replaying the WAL), binds every listener, and starts serving. The
    /// gate's write tokens are read from `gate.token_file`.
    pub async fn start(config: Config) -> Result<RunningCollector, StartError> {
        let tokens = match &config.gate.token_file {
            Some(path) => WriteTokens::from_file(path)?,
            None => WriteTokens::default(),
        };
        Collector::start_with_tokens(config, tokens).await
    }

    /// [`Collector::start`] with the gate's write tokens given (an in-process collector shares
    /// a generated token with its one client) instead of read from `gate.token_file`.
    pub async fn start_with_tokens(config: Config, tokens: WriteTokens) -> Result<RunningCollector, StartError> {
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
        let ingest = Arc::new(Ingest::new(Arc::clone(&store), config.limits.clone(), telemetry));

        let (shutdown, _) = watch::channel(false);
        let mut tasks = Vec::new();

        // OTLP/gRPC
        {
            let (traces, metrics, logs, profiles) = OtlpGrpc::new(Arc::clone(&ingest)).services();
            let mut stop = shutdown.subscribe();
            let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
            tasks.push(tokio::spawn(async move {
                let result = tonic::transport::Server::builder()
                    .initial_stream_window_size(STREAM_WINDOW)
                    .initial_connection_window_size(CONNECTION_WINDOW)
                    .layer(tower::util::MapResponseLayer::new(resource_exhausted_for_oversize::<tonic::body::Body>))
                    .add_service(traces)
                    .add_service(metrics)
                    .add_service(logs)
                    .add_service(profiles)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(err) = result {
                    tracing::error!(%err, "OTLP/gRPC server stopped");
                }
            }));
        }
        // OTLP/HTTP and the API
        for (listener, router) in [
            (http_listener, otlp_http::router(Arc::clone(&ingest))),
            (
                api_listener,
                query::router(ApiState {
                    store: Arc::clone(&store),
                    ingest: Arc::clone(&ingest),
                    history: Arc::new(History::new(&config.data_dir, config.gate.history_settings())),
                    write_tokens: Arc::new(tokens),
                }),
            ),
        ] {
            let mut stop = shutdown.subscribe();
            tasks.push(tokio::spawn(async move {
                use axum::serve::ListenerExt;
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let result = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(err) = result {
                    tracing::error!(%err, "HTTP server stopped");
                }
            }));
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
