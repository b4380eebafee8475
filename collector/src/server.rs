//! Starts the collector: opens the store, binds the three listeners, serves until shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use http::StatusCode;
use tower::ServiceExt;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{Access, WriteTokens};
use crate::config::Config;
use crate::history::History;
use crate::listener::{self, ConnSettings, Connections};
use crate::query::{self, ApiState};
use crate::receive::admission::Admission;
use crate::receive::{Ingest, otlp_grpc, otlp_http};
use crate::spanmetrics::SpanMetrics;
use crate::store::{Store, StoreSettings};
use crate::telemetry::{Listener, Telemetry};
use crate::tls::server::ServerTls;

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot open storage: {0}")]
    Store(#[from] crate::store::OpenError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Tokens(#[from] crate::auth::TokenFileError),
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::access::AccessError),
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::server::TlsError),
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
    /// The span metrics of stored spans, when they are on (`[span_metrics]`).
    pub span_metrics: Option<Arc<SpanMetrics>>,
    ingest: Arc<Ingest>,
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
        if config.server.max_inflight_body_bytes < config.limits.max_request_bytes {
            return Err(StartError::Config(format!(
                "server.max_inflight_body_bytes ({}) is smaller than limits.max_request_bytes ({}): the largest request could never be taken",
                config.server.max_inflight_body_bytes, config.limits.max_request_bytes
            )));
        }
        config.analysis.validate().map_err(StartError::Config)?;
        // Tokens, JWKS and SPIFFE rules are read before any listener serves: a bad one is a
        // start-up error naming the file and line or rule.
        let access = Arc::new(Access::new(&config.auth, tokens)?);
        let span_metrics = match config.span_metrics.enabled {
            true => Some(Arc::new(SpanMetrics::new(&config.span_metrics).map_err(StartError::Config)?)),
            false => None,
        };
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
        let connections =
            Connections::new(config.server.connection_cap(listener::raise_fd_limit()), Arc::clone(&telemetry));
        // TLS files are read and checked before any listener serves: a bad one is a start-up
        // error naming it.
        let tls = match &config.tls {
            Some(tls) => Some(Arc::new(ServerTls::load(tls, Arc::clone(&telemetry))?)),
            None => None,
        };
        let (shutdown, _) = watch::channel(false);
        let mut tasks = Vec::new();

        // Every listener serves from now on: until the store is open (the WAL replayed), with
        // answers saying so (`/healthz` 200, `/readyz` and everything else 503), then with
        // the real routers.
        let phases: Vec<Arc<OnceLock<Router>>> = (0..3).map(|_| Arc::default()).collect();
        for ((tcp, which, http2_only), phase) in [
            (grpc_listener, Listener::OtlpGrpc, true),
            (http_listener, Listener::OtlpHttp, false),
            (api_listener, Listener::Api, false),
        ]
        .into_iter()
        .zip(&phases)
        {
            let settings = ConnSettings::new(&config.server, http2_only);
            let router = starting(Arc::clone(phase), http2_only);
            let serve = listener::serve(
                tcp,
                which,
                router,
                Arc::clone(&connections),
                settings,
                tls.clone(),
                shutdown.subscribe(),
            );
            tasks.push(tokio::spawn(serve));
        }
        if let Some(tls) = &tls {
            tasks.push(Arc::clone(tls).start_reload(shutdown.subscribe()));
        }

        let settings = StoreSettings::new(&config.storage, config.retention.0);
        let data_dir = config.data_dir.clone();
        let store_telemetry = Arc::clone(&telemetry);
        let storage = config.storage.clone();
        let opened =
            tokio::task::spawn_blocking(move || Store::open_configured(&data_dir, settings, store_telemetry, &storage))
                .await
                .map_err(|e| crate::store::OpenError::Io {
                    path: config.data_dir.clone(),
                    source: std::io::Error::other(e),
                })
                .and_then(|r| r);
        let store = match opened {
            Ok(store) => Arc::new(store),
            Err(err) => {
                let _ = shutdown.send(true);
                futures_join(tasks).await;
                return Err(err.into());
            }
        };
        if let Err(err) = store.start_compaction(&config.storage.compaction) {
            tracing::error!(%err, "cannot start the compaction thread; parts are not merged");
        }
        let admission = Admission::new(&config.server, Arc::clone(&telemetry));
        let mut ingest = Ingest::new(Arc::clone(&store), config.limits.clone(), Arc::clone(&telemetry), admission);
        if let Some(metrics) = &span_metrics {
            ingest = ingest.with_span_metrics(Arc::clone(metrics));
        }
        let ingest = Arc::new(ingest);
        let journal = Arc::new(crate::analysis::journal::Journal::new(
            &config.data_dir,
            crate::analysis::journal::JournalSettings { retention: config.retention.0, max_bytes: 16 << 20 },
        ));
        let analysis_slot: Arc<std::sync::OnceLock<Arc<crate::analysis::Analysis>>> = Arc::default();
        // A deleted tenant's span metrics and analysis state are forgotten after every deletion:
        // one asked of this collector, or one it applies because another was asked (a bucket).
        {
            let (metrics, analysis) = (span_metrics.clone(), Arc::clone(&analysis_slot));
            store.on_tenant_deleted(Box::new(move |tenant| {
                if let Some(metrics) = &metrics {
                    metrics.forget(tenant);
                }
                match analysis.get() {
                    Some(analysis) => analysis.forget(tenant),
                    None => Ok(()),
                }
            }));
        }
        let api_router = query::router(ApiState {
            store: Arc::clone(&store),
            ingest: Arc::clone(&ingest),
            history: Arc::new(History::new(&config.data_dir, config.gate.history_settings())),
            access: Arc::clone(&access),
            journal: Arc::clone(&journal),
            analysis: Arc::clone(&analysis_slot),
        })
        // Pyroscope's agents and Prometheus's remote write push to the port its API is served on.
        .merge(crate::receive::pprof_push::router(Arc::clone(&ingest)))
        .merge(crate::receive::remote_write::router(Arc::clone(&ingest)));
        // Every request of every listener passes the access check first (`auth::access::check`),
        // fallbacks included: the real router is the fallback of the router the layer wraps.
        for (phase, (router, which)) in phases.iter().zip([
            (otlp_grpc::router(Arc::clone(&ingest)), Listener::OtlpGrpc),
            (otlp_http::router(Arc::clone(&ingest)), Listener::OtlpHttp),
            (api_router, Listener::Api),
        ]) {
            let checked = Router::new()
                .fallback_service(router)
                .layer(axum::middleware::from_fn_with_state((Arc::clone(&access), which), crate::auth::access::check));
            let _ = phase.set(checked);
        }
        tasks.push(Arc::clone(&access).start_reload(shutdown.subscribe()));
        // pprof scraping: one task per (target, profile), stopped by `shutdown`.
        tasks.extend(crate::receive::pprof_scrape::start(&config.scrape, Arc::clone(&ingest), &shutdown));
        // Span metrics are written every `metrics_flush_interval`, and once more by `stop`.
        if let Some(metrics) = &span_metrics {
            tasks.push(crate::spanmetrics::start(Arc::clone(metrics), Arc::clone(&ingest), shutdown.subscribe()));
        }
        // Continuous analysis: dynamic baselines of the span-metric SLIs and watched queries,
        // error budgets of the contracts' SLOs; what it finds goes to the webhooks through the
        // notifier's durable outbox.
        if config.analysis.enabled {
            let started = crate::notify::Notifier::start_with(
                &config.data_dir.join("notify"),
                config.webhook.clone(),
                crate::notify::NotifierSettings { external_url: format!("http://{api}"), ..Default::default() },
                telemetry,
            )
            .map_err(|e| StartError::Config(e.to_string()))
            .and_then(|notifier| {
                crate::analysis::Analysis::open(
                    config.analysis.clone(),
                    &config.data_dir,
                    Arc::clone(&store),
                    span_metrics.clone(),
                    Arc::clone(&journal),
                    Some(Arc::new(notifier)),
                )
                .map_err(StartError::Config)
            });
            match started {
                Ok(analysis) => {
                    let analysis = Arc::new(analysis);
                    let _ = analysis_slot.set(Arc::clone(&analysis));
                    tasks.push(crate::analysis::start(analysis, Arc::clone(&ingest), shutdown.subscribe()))
                }
                Err(err) => {
                    let _ = shutdown.send(true);
                    futures_join(tasks).await;
                    let _ = tokio::task::spawn_blocking(move || store.close()).await;
                    return Err(err);
                }
            }
        }
        Ok(RunningCollector { otlp_grpc, otlp_http, api, store, span_metrics, ingest, shutdown, tasks })
    }
}

impl RunningCollector {
    /// Stops accepting, lets requests in progress finish (up to `grace`), and closes the store.
    pub async fn stop(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        // A deletion waiting for the bucket answers now, not after the grace.
        self.store.begin_stopping();
        let _ = tokio::time::timeout(grace, futures_join(self.tasks)).await;
        // The listeners are done: the span metrics now hold every stored span; write them.
        if let Some(metrics) = &self.span_metrics {
            let _ = tokio::time::timeout(grace, metrics.flush(&self.ingest)).await;
        }
        let store = self.store;
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}

/// The router of a listener while the store opens: hands each request to the real router once
/// it is set; until then answers that the collector is starting (gRPC: `UNAVAILABLE`).
fn starting(phase: Arc<OnceLock<Router>>, grpc: bool) -> Router {
    Router::new().fallback(move |request: Request| {
        let phase = Arc::clone(&phase);
        async move {
            if let Some(router) = phase.get() {
                return match router.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
            }
            const WHY: &str = "starting: the write-ahead log is being replayed; retry shortly";
            if grpc {
                let mut response = tonic::Status::unavailable(WHY).into_http::<axum::body::Body>();
                response.headers_mut().insert("retry-after", http::HeaderValue::from_static("1"));
                return response.into_response();
            }
            if request.uri().path() == "/healthz" {
                return "ok\n".into_response();
            }
            (StatusCode::SERVICE_UNAVAILABLE, [(http::header::RETRY_AFTER, "1")], format!("{WHY}\n")).into_response()
        }
    })
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}
