//! The workload of `slo-gate demo`: a small instrumented HTTP service, `demo-checkout`, run in a
//! baseline build (1.0.0) and a candidate build (1.1.0), driven with load and profiled, so a
//! newcomer sees the gate block a release for true, explainable reasons.
//!
//! [`run_build`] does one build end to end, in this process:
//!
//! ```text
//!  load::run ──HTTP──▶ service (axum, 127.0.0.1:0) ──OTLP gRPC (spans, metrics)──▶ collector
//!  (4 worker threads)    one SERVER span per request
//!  profile::profile_and_push ──pprof-rs windows of ~3 s──POST /ingest (gzipped pprof)──▶ collector API
//! ```
//!
//! * [`work`] — what a request costs per build: seeded randomness, the fake nodes (`host.name`),
//!   `price_items` (the CPU-heavy function); pure and deterministic.
//! * [`service`] — the axum service and its per-request span and metrics.
//! * [`telemetry`] — the OpenTelemetry SDK providers (batch span processor, periodic metric
//!   reader, OTLP gRPC exporters) and their flush.
//! * [`load`] — the client driving the routes.
//! * [`profile`] — CPU profiles of this process (pprof-rs) pushed Pyroscope-style.
//!
//! What the candidate changes (see [`work::Build`]): `POST /api/checkout` does 2.5× the pricing
//! work on average (2× on most nodes, 4× on `node-3`), so it is both a latency and a CPU
//! regression in `price_items`, and it fails 3% of the time instead of 0.5%; `GET /api/cart` and
//! `GET /api/health` are unchanged. The bundled contract ([`contract_yaml`]) catches all of it.
//!
//! The crate does not start a collector or run the gate: `slo-gate demo` wires those around it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;

pub mod load;
pub mod profile;
pub mod service;
pub mod telemetry;
pub mod work;

pub use work::Build;

/// `service.name` of the demo service.
pub const SERVICE: &str = "demo-checkout";
/// `deployment.environment.name` of the demo service.
pub const ENVIRONMENT: &str = "demo";

/// The bundled SLO contract of the demo service (`demo/contract.yaml`).
pub fn contract_yaml() -> &'static str {
    include_str!("../contract.yaml")
}

/// Where the run sends its telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoTargets {
    /// The collector's OTLP gRPC listener (spans and metrics).
    pub otlp_grpc: SocketAddr,
    /// The collector's API listener (CPU profiles are pushed to `POST /ingest`).
    pub api: SocketAddr,
}

/// What one [`run_build`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    /// Requests sent (each one is a SERVER span, unless it got no answer).
    pub requests: u64,
    /// Requests answered with a non-2xx status, or not answered.
    pub errors: u64,
    /// CPU profiles pushed to the collector.
    pub profiles_pushed: u32,
    /// Requests per route (`http.route`), sorted by route.
    pub per_route: Vec<(String, u64)>,
    /// Client-side P95 latency per route, sorted by route (for a human; the gate reads spans).
    pub p95_per_route: Vec<(String, Duration)>,
}

/// Runs `build` of the demo service for `duration`: starts it on a free loopback port with the
/// OpenTelemetry SDK exporting to `targets.otlp_grpc`, drives load against it while CPU
/// profiles are taken and pushed to `targets.api`, then stops it and flushes every span and
/// metric. Blocking; owns its own tokio runtime (so it must not be called from inside one).
/// Must not run concurrently with another `run_build` in the same process (the CPU profiler is
/// process-wide).
pub fn run_build(build: Build, targets: &DemoTargets, duration: Duration) -> anyhow::Result<RunStats> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("demo-service")
        .enable_all()
        .build()
        .context("starting the demo service's runtime")?;
    let telemetry = {
        let _entered = runtime.enter();
        telemetry::Telemetry::otlp(build, targets.otlp_grpc)?
    };
    let server = runtime.block_on(service::Server::start(build, telemetry.instruments()))?;
    let addr = server.addr();
    // Before any load: the profiler's one-time set-up must not interrupt a busy thread.
    profile::warm_up()?;

    let api = targets.api;
    let (load, profiles) = std::thread::scope(|scope| {
        let profiler = std::thread::Builder::new()
            .name("demo-profiler".into())
            .spawn_scoped(scope, move || profile::profile_and_push(api, build, duration));
        let load = load::run(addr, &load::LoadConfig::new(duration));
        let profiles = match profiler {
            Ok(handle) => handle.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the profiler thread panicked"))),
            Err(e) => Err(anyhow::Error::new(e).context("starting the profiler thread")),
        };
        (load, profiles)
    });

    let stopped = runtime.block_on(server.stop());
    // Flush before reporting any error, so what was recorded is delivered.
    let flushed = telemetry.shutdown();
    drop(runtime);
    let load = load.context("driving load against the demo service")?;
    let profiles_pushed = profiles.context("profiling the demo service")?;
    stopped?;
    flushed.context("flushing the demo service's telemetry")?;

    Ok(RunStats {
        requests: load.iter().map(|r| r.requests).sum(),
        errors: load.iter().map(|r| r.errors).sum(),
        profiles_pushed,
        per_route: load.iter().map(|r| (r.route.to_string(), r.requests)).collect(),
        p95_per_route: load.iter().filter_map(|r| Some((r.route.to_string(), r.quantile(0.95)?))).collect(),
    })
}
