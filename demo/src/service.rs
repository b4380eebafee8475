//! The demo HTTP service (axum on `127.0.0.1:0`) and its instrumentation.
//!
//! Routes:
//! * `GET /api/cart` — fast: sums a small cart ([`work::cart_summary`]);
//! * `POST /api/checkout` — real CPU work: prices a cart of a few KB with
//!   [`work::price_items`] on the blocking pool, then "charges" it, which fails with a 500 at the
//!   build's error rate;
//! * `GET /api/health` — answers `ok`.
//!
//! One middleware wraps every matched route and records, per request, one SERVER span named
//! `"{method} {route}"` with `http.route`, `http.request.method`, `http.response.status_code`
//! and `host.name` (the fake node serving it), status Error on 5xx, plus the request counter and
//! duration histogram. The node, the cart and the failure draw come from a per-request
//! generator seeded by the request's sequence number, so a run is reproducible up to the
//! order in which concurrent requests arrive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::telemetry::Instruments;
use crate::work::{self, Build, NODES, SplitMix64};

/// Header of every answer naming the node that served it (handy when poking the service).
pub const NODE_HEADER: &str = "x-demo-node";
/// Header of a checkout answer with the work units `price_items` spent.
pub const WORK_HEADER: &str = "x-demo-work-units";

struct AppState {
    build: Build,
    instruments: Instruments,
    sequence: AtomicU64,
}

/// What the middleware decided for one request, read by the handler.
#[derive(Debug, Clone, Copy)]
struct RequestCtx {
    node: &'static str,
    seed: u64,
}

/// The router of one build, instrumented with `instruments`.
pub fn router(build: Build, instruments: Instruments) -> Router {
    let state = Arc::new(AppState { build, instruments, sequence: AtomicU64::new(0) });
    Router::new()
        .route("/api/cart", get(cart))
        .route("/api/checkout", post(checkout))
        .route("/api/health", get(health))
        // route_layer: runs after routing, so `MatchedPath` is known and unmatched paths get no span.
        .route_layer(middleware::from_fn_with_state(state.clone(), instrument))
        .with_state(state)
}

/// A running service.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds `127.0.0.1:0` and serves `build` on the current tokio runtime.
    pub async fn start(build: Build, instruments: Instruments) -> anyhow::Result<Server> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the demo service")?;
        let addr = listener.local_addr().context("reading the demo service's address")?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = router(build, instruments);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Server { addr, shutdown, task })
    }

    /// Where the service listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server to end.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.task.await.context("the demo service task panicked")?.context("serving the demo service")
    }
}

async fn instrument(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => path.as_str().to_string(),
        None => request.uri().path().to_string(),
    };
    let method = request.method().as_str().to_string();
    let sequence = state.sequence.fetch_add(1, Ordering::Relaxed);
    let mut rng = SplitMix64::new(state.build.seed() ^ sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let ctx = RequestCtx { node: NODES[rng.below(NODES.len() as u64) as usize], seed: rng.next_u64() };
    request.extensions_mut().insert(ctx);

    let tracer = &state.instruments.tracer;
    let mut span = tracer
        .span_builder(format!("{method} {route}"))
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.route", route.clone()),
            KeyValue::new("http.request.method", method.clone()),
            KeyValue::new("host.name", ctx.node),
        ])
        .start(tracer);

    let mut response = next.run(request).await;

    let status = response.status().as_u16();
    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
    if status >= 500 {
        span.set_status(Status::error(format!("HTTP {status}")));
    }
    span.end();
    let attributes = [
        KeyValue::new("http.route", route),
        KeyValue::new("http.request.method", method),
        KeyValue::new("http.response.status_code", i64::from(status)),
    ];
    state.instruments.requests.add(1, &attributes);
    state.instruments.duration.record(started.elapsed().as_secs_f64(), &attributes);
    if let Ok(value) = header::HeaderValue::from_str(ctx.node) {
        response.headers_mut().insert(NODE_HEADER, value);
    }
    response
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn cart(axum::Extension(ctx): axum::Extension<RequestCtx>) -> Response {
    let items = work::cart(&mut SplitMix64::new(ctx.seed));
    let (cents, count) = work::cart_summary(&items);
    json(StatusCode::OK, format!(r#"{{"items":{count},"subtotal_cents":{cents}}}"#))
}

async fn checkout(State(state): State<Arc<AppState>>, axum::Extension(ctx): axum::Extension<RequestCtx>) -> Response {
    let build = state.build;
    // CPU work belongs on the blocking pool, not on the runtime's workers.
    let outcome = tokio::task::spawn_blocking(move || {
        let items = work::cart(&mut SplitMix64::new(ctx.seed));
        let priced = work::price_items(&items, build.pricing_rounds(ctx.node));
        (priced, work::checkout_fails(build, ctx.seed))
    })
    .await;
    let (priced, failed) = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return json(StatusCode::INTERNAL_SERVER_ERROR, format!(r#"{{"error":"pricing failed: {e}"}}"#)),
    };
    let mut response = if failed {
        json(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":"payment backend unavailable"}"#.to_string())
    } else {
        json(StatusCode::OK, format!(r#"{{"total_cents":{},"quote":"{:016x}"}}"#, priced.total_cents, priced.digest))
    };
    response.headers_mut().insert(WORK_HEADER, header::HeaderValue::from(priced.work_units));
    response
}

async fn health() -> &'static str {
    "ok"
}
