//! `slo-gate-prom-bench`: slo-gate's Prometheus API against a real Prometheus
//! (`bench/run-prom-bench.sh`). The same deterministic metrics — `--series` series (10,000) over
//! `--hours` hours (6) at one sample every `--interval` seconds (15) — go to both servers by
//! remote write 1.0; each server's ingest is measured (wall time, its CPU time from
//! `/proc/<pid>/stat`, its peak RSS), then Grafana's `query_range` requests over the whole range
//! are timed on both and their answers compared series by series, point by point. Loopback only.
//!
//! The data (`Layout`, `Generator`): every (instance, route) pair serves requests counted by
//! `http_requests_total{method,status}` (GET/POST × 200/500) and observed by the classic
//! histogram `http_request_duration_seconds` (Prometheus's default buckets; `_count` is the sum
//! of the pair's four counters and equals the `+Inf` bucket); instances restart now and then,
//! resetting all their counters and histograms at once. `worker_queue_length` gauges fill the
//! series count up exactly. Everything is drawn from SplitMix64 with a fixed seed and the samples
//! end at `--end` (default: now, rounded down to the hour), so both phases and both servers see
//! the same values.
//!
//! Remote write: the bodies are built and snappy-compressed before the clock starts. Time is cut
//! into windows of `--steps-per-request` steps, and the series into `--in-flight` shards; the
//! shards of one window are sent at once on their own connections and the next window starts
//! when all are acknowledged. So every series gets its samples in time order, as Prometheus's
//! head requires (a sample older than the newest of its series is refused, and two requests in
//! flight over the same series could land in either order).
//!
//! `--phase ingest` writes its measurements to `--state`; `--phase query` reads them back to
//! print one table, so the script can restart slo-gate in between and the queries read what it
//! stored, not only its in-memory head. `--phase all` does both against the same processes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bench::seeded::{next, percentile, uniform};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prom::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
use serde::{Deserialize, Serialize};

// The `/proc` readers of `slo-gate-load`, shared rather than copied; this binary uses only
// `snapshot` and `wait_until_idle` of them.
#[allow(dead_code)]
#[path = "../procfs.rs"]
mod procfs;

#[derive(Debug, Parser)]
#[command(name = "slo-gate-prom-bench", about = "Prometheus remote write and query_range: slo-gate against Prometheus")]
struct Args {
    #[arg(long, value_enum, default_value_t = Phase::All)]
    phase: Phase,
    /// slo-gate's API, `http://127.0.0.1:PORT` (`--api` of `slo-gate serve`).
    #[arg(long, value_name = "URL")]
    slo_gate: String,
    /// Prometheus, `http://127.0.0.1:PORT` (started with `--web.enable-remote-write-receiver`).
    #[arg(long, value_name = "URL")]
    prometheus: String,
    /// slo-gate's process id, for its CPU time and memory.
    #[arg(long)]
    slo_gate_pid: u32,
    /// Prometheus's process id, for its CPU time and memory.
    #[arg(long)]
    prometheus_pid: u32,
    /// Series written (exactly).
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Hours of samples, ending at `--end`.
    #[arg(long, default_value_t = 6)]
    hours: u64,
    /// Seconds between two samples of a series.
    #[arg(long, default_value_t = 15)]
    interval: u64,
    /// Most `route` values (fewer when `--series` is too small for them).
    #[arg(long, default_value_t = 25)]
    routes: usize,
    /// Where the samples end (unix seconds); default now, rounded down to the hour. Give both
    /// phases the same value.
    #[arg(long)]
    end: Option<i64>,
    #[arg(long, default_value_t = 0x5107_6a7e)]
    seed: u64,
    /// Consecutive steps of each series in one remote-write request.
    #[arg(long, default_value_t = 4)]
    steps_per_request: usize,
    /// Remote-write requests in flight (each over its own shard of the series).
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Timed calls per query and server (after one untimed call).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Longest wait, after the last acknowledgement, for a server's CPU to go idle.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    settle: u64,
    /// Where `--phase ingest` leaves its measurements for `--phase query`.
    #[arg(long)]
    state: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    /// Ingest, then query the same processes.
    All,
    Ingest,
    Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    SloGate,
    Prometheus,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::SloGate => "slo-gate",
            Server::Prometheus => "Prometheus",
        }
    }
}

/// A server under test: where it listens and which process it is.
#[derive(Debug, Clone, Copy)]
struct Target {
    server: Server,
    addr: SocketAddr,
    pid: u32,
}

/// `http://127.0.0.1:PORT` (a trailing `/` allowed) as a loopback address.
fn loopback(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let addr: SocketAddr =
        rest.trim_end_matches('/').parse().with_context(|| format!("{url}: expected http://IP:PORT"))?;
    if !addr.ip().is_loopback() {
        bail!("{url}: the benchmark only sends to loopback addresses");
    }
    Ok(addr)
}

// ---- the data --------------------------------------------------------------------------------

/// Prometheus's default histogram buckets (`prometheus.DefBuckets`), then `+Inf`.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Series of one (instance, route) pair: four counters, the buckets with `+Inf`, `_sum`, `_count`.
const PER_PAIR: usize = 4 + BUCKETS.len() + 1 + 2;
/// `http_requests_total`'s (method, status) per pair, and each one's share of the pair's traffic.
const OUTCOMES: [(&str, &str, f64); 4] =
    [("GET", "200", 1.0), ("GET", "500", 0.01), ("POST", "200", 0.3), ("POST", "500", 0.005)];
/// Log-normal spread of latencies around a route's median.
const SIGMA: f64 = 0.8;
/// An instance restarts (all its counters reset) about once every 960 steps: 4 h at 15 s.
const RESTART_EVERY: f64 = 960.0;
const ROUTES: [&str; 40] = [
    "/",
    "/login",
    "/logout",
    "/healthz",
    "/search",
    "/cart",
    "/cart/items",
    "/cart/items/:id",
    "/checkout",
    "/checkout/confirm",
    "/orders",
    "/orders/:id",
    "/orders/:id/items",
    "/orders/:id/cancel",
    "/products",
    "/products/:id",
    "/products/:id/reviews",
    "/products/:id/images",
    "/categories",
    "/categories/:id",
    "/users",
    "/users/:id",
    "/users/:id/addresses",
    "/users/:id/payment-methods",
    "/recommendations",
    "/inventory/:sku",
    "/shipping/quote",
    "/payments",
    "/payments/:id",
    "/payments/:id/refund",
    "/coupons/:code",
    "/wishlist",
    "/wishlist/items/:id",
    "/notifications",
    "/sessions",
    "/static/*",
    "/api/v1/feed",
    "/api/v1/track",
    "/admin/reports",
    "/admin/users/:id",
];

/// How `--series` series are made up.
#[derive(Debug, Clone, Copy)]
struct Layout {
    routes: usize,
    instances: usize,
    /// `instances × routes`, each with [`PER_PAIR`] series.
    pairs: usize,
    /// `worker_queue_length` series, after the pairs' series.
    gauges: usize,
    series: usize,
}

impl Layout {
    /// About 90% of the series in (instance, route) pairs, the rest gauges.
    fn new(series: usize, routes: usize) -> anyhow::Result<Layout> {
        let target = (series / 20).max(1);
        let routes = routes.clamp(1, ROUTES.len()).min(target);
        let instances = (target / routes).max(1);
        let pairs = routes * instances;
        if pairs * PER_PAIR > series {
            bail!("--series {series} is too few: one instance and route alone make {PER_PAIR} series");
        }
        Ok(Layout { routes, instances, pairs, gauges: series - pairs * PER_PAIR, series })
    }

    fn job(instance: usize) -> &'static str {
        ["api", "storefront"][instance % 2]
    }

    fn instance(instance: usize) -> String {
        format!("10.1.{}.{}:8080", instance / 200, instance % 200 + 10)
    }

    /// Every series' labels, sorted by name as remote write requires, in series order.
    fn labels(&self) -> Vec<Vec<Label>> {
        let mut out = Vec::with_capacity(self.series);
        let set = |pairs: &[(&str, &str)]| {
            let mut labels: Vec<Label> =
                pairs.iter().map(|(name, value)| Label { name: (*name).into(), value: (*value).into() }).collect();
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            labels
        };
        for pair in 0..self.pairs {
            let (i, route) = (pair / self.routes, ROUTES[pair % self.routes]);
            let (job, instance) = (Self::job(i), Self::instance(i));
            let common = [("job", job), ("instance", instance.as_str()), ("route", route)];
            for (method, status, _) in OUTCOMES {
                let mut l = vec![("__name__", "http_requests_total"), ("method", method), ("status", status)];
                l.extend(common);
                out.push(set(&l));
            }
            let les: Vec<String> = BUCKETS.iter().map(|b| b.to_string()).chain(["+Inf".to_string()]).collect();
            for le in &les {
                let mut l = vec![("__name__", "http_request_duration_seconds_bucket"), ("le", le.as_str())];
                l.extend(common);
                out.push(set(&l));
            }
            for name in ["http_request_duration_seconds_sum", "http_request_duration_seconds_count"] {
                let mut l = vec![("__name__", name)];
                l.extend(common);
                out.push(set(&l));
            }
        }
        for g in 0..self.gauges {
            let i = g % self.instances;
            let (instance, worker) = (Self::instance(i), (g / self.instances).to_string());
            out.push(set(&[
                ("__name__", "worker_queue_length"),
                ("job", Self::job(i)),
                ("instance", &instance),
                ("worker", &worker),
            ]));
        }
        out
    }

    fn describe(&self) -> String {
        format!(
            "{} series = {} http_requests_total ({} instance(s) of job(s) {} × {} routes × GET/POST × 200/500) + {} \
             http_request_duration_seconds_bucket ({} le values with +Inf) + {} _sum + {} _count + {} \
             worker_queue_length gauges",
            self.series,
            self.pairs * OUTCOMES.len(),
            self.instances,
            (0..self.instances.min(2)).map(Self::job).collect::<Vec<_>>().join(", "),
            self.routes,
            self.pairs * (BUCKETS.len() + 1),
            BUCKETS.len() + 1,
            self.pairs,
            self.pairs,
            self.gauges
        )
    }
}

/// A normal deviate (Box–Muller).
fn normal(state: &mut u64) -> f64 {
    let (u1, u2) = (uniform(state).max(1e-12), uniform(state));
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The standard normal CDF (Abramowitz & Stegun 7.1.26 for erf, |error| < 1.5e-7: plenty for
/// drawing bucket counts).
fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 { 0.5 * (1.0 + erf) } else { 0.5 * (1.0 - erf) }
}

/// `x` rounded down or up at random, in proportion (so small rates still count now and then).
fn stochastic_round(x: f64, state: &mut u64) -> f64 {
    (x + uniform(state)).floor()
}

/// Produces the value of every series, step after step.
#[derive(Debug)]
struct Generator {
    layout: Layout,
    interval: f64,
    state: u64,
    /// Requests per second of each pair's GET 200.
    rate: Vec<f64>,
    /// Median latency of each route, in seconds.
    median: Vec<f64>,
    /// The current value of every series.
    values: Vec<f64>,
}

impl Generator {
    fn new(layout: Layout, interval: u64, seed: u64) -> Generator {
        let mut state = seed;
        let median: Vec<f64> = (0..layout.routes)
            .map(|r| {
                // Most routes answer in 8-60 ms, one in eight in 150-600 ms.
                let slow = r % 8 == 5;
                let base = if slow { 0.15 } else { 0.008 };
                base * (uniform(&mut state) * if slow { 4f64.ln() } else { 7.5f64.ln() }).exp()
            })
            .collect();
        let route_rate: Vec<f64> = (0..layout.routes).map(|_| 0.2 + 20.0 * uniform(&mut state).powi(2)).collect();
        let rate = (0..layout.pairs)
            .map(|pair| route_rate[pair % layout.routes] * (0.8 + 0.4 * uniform(&mut state)))
            .collect();
        let mut values = vec![0.0; layout.series];
        for v in &mut values[layout.pairs * PER_PAIR..] {
            *v = (next(&mut state) % 10) as f64;
        }
        Generator { layout, interval: interval as f64, state, rate, median, values }
    }

    /// Moves every series one step on and returns all values.
    fn step(&mut self) -> &[f64] {
        let layout = self.layout;
        let s = &mut self.state;
        let restarted: Vec<bool> = (0..layout.instances).map(|_| uniform(s) * RESTART_EVERY < 1.0).collect();
        for pair in 0..layout.pairs {
            let v = &mut self.values[pair * PER_PAIR..(pair + 1) * PER_PAIR];
            if restarted[pair / layout.routes] {
                v.fill(0.0);
            }
            let mut n = 0.0;
            for (k, (_, _, share)) in OUTCOMES.iter().enumerate() {
                let d = stochastic_round(self.rate[pair] * share * self.interval * (0.5 + uniform(s)), s);
                v[k] += d;
                n += d;
            }
            let median = self.median[pair % layout.routes] * (0.25 * normal(s)).exp();
            let buckets = &mut v[OUTCOMES.len()..OUTCOMES.len() + BUCKETS.len() + 1];
            for (b, le) in buckets.iter_mut().zip(BUCKETS) {
                *b += (n * normal_cdf((le / median).ln() / SIGMA)).round();
            }
            buckets[BUCKETS.len()] += n;
            v[PER_PAIR - 2] += n * median * (SIGMA * SIGMA / 2.0).exp();
            v[PER_PAIR - 1] += n;
        }
        for v in &mut self.values[layout.pairs * PER_PAIR..] {
            *v = (*v + (2.0 * normal(s)).round()).clamp(0.0, 200.0);
        }
        &self.values
    }
}

/// The remote-write bodies: `[window][shard]`, snappy-compressed, in time order.
fn bodies(args: &Args, layout: Layout, start_ms: i64) -> anyhow::Result<Vec<Vec<Bytes>>> {
    let labels = layout.labels();
    let steps = steps(args)?;
    let shards = args.in_flight.clamp(1, layout.series);
    let per = args.steps_per_request.max(1);
    let mut generator = Generator::new(layout, args.interval, args.seed);
    let mut out = Vec::with_capacity(steps.div_ceil(per));
    let mut step = 0;
    while step < steps {
        let n = per.min(steps - step);
        let mut samples: Vec<Vec<Sample>> = (0..layout.series).map(|_| Vec::with_capacity(n)).collect();
        for k in 0..n {
            let t = start_ms + (step + k + 1) as i64 * args.interval as i64 * 1000;
            for (series, &value) in samples.iter_mut().zip(generator.step()) {
                series.push(Sample { value, timestamp: t });
            }
        }
        let mut window = Vec::with_capacity(shards);
        let mut samples = samples.into_iter();
        for shard in 0..shards {
            let range = shard * layout.series / shards..(shard + 1) * layout.series / shards;
            let timeseries = labels[range]
                .iter()
                .zip(samples.by_ref())
                .map(|(labels, samples)| TimeSeries {
                    labels: labels.clone(),
                    samples,
                    exemplars: Vec::new(),
                    histograms: Vec::new(),
                })
                .collect();
            window.push(Bytes::from(remote_write::encode(&WriteRequest { timeseries, metadata: Vec::new() })));
        }
        out.push(window);
        step += n;
    }
    Ok(out)
}

/// Samples per series.
fn steps(args: &Args) -> anyhow::Result<usize> {
    if args.interval == 0 || args.hours == 0 {
        bail!("--interval and --hours must be positive");
    }
    Ok((args.hours * 3600 / args.interval) as usize)
}

// ---- HTTP ------------------------------------------------------------------------------------

/// One HTTP/1.1 connection, reopened when the server closed it.
struct Client {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Client { addr, sender })
    }

    /// POSTs `body` to `path` with `headers`; the status and the whole answer.
    async fn post(&mut self, path: &str, headers: &[(&str, &str)], body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        if self.sender.is_closed() {
            *self = Client::connect(self.addr).await?;
        }
        self.sender.ready().await?;
        let mut request =
            Request::post(path).header(HOST, self.addr.to_string()).header(USER_AGENT, "slo-gate-prom-bench");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.sender.send_request(request.body(Full::new(body))?).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Sends every window to `target`, `--in-flight` shards at a time (module docs); the wall time.
async fn write(target: Target, windows: Arc<Vec<Vec<Bytes>>>) -> anyhow::Result<(Duration, u64)> {
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let shards = windows.first().map_or(0, Vec::len);
    let barrier = Arc::new(tokio::sync::Barrier::new(shards));
    let mut clients = Vec::with_capacity(shards);
    for _ in 0..shards {
        clients.push(Client::connect(target.addr).await?);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (shard, mut client) in clients.into_iter().enumerate() {
        let (windows, barrier, retries) = (Arc::clone(&windows), Arc::clone(&barrier), Arc::clone(&retries));
        tasks.spawn(async move {
            for (w, window) in windows.iter().enumerate() {
                let headers = [
                    (CONTENT_ENCODING.as_str(), "snappy"),
                    (CONTENT_TYPE.as_str(), "application/x-protobuf"),
                    ("x-prometheus-remote-write-version", "0.1.0"),
                ];
                // As Prometheus's remote-write queue does: 429 and 5xx are retried with
                // backoff (from 30 ms, doubling, at most 5 s); anything else ends the run.
                let mut backoff = Duration::from_millis(30);
                let (status, body) = loop {
                    let (status, body) =
                        client.post("/api/v1/write", &headers, window[shard].clone()).await.with_context(|| {
                            format!("remote write to {} (window {w}, shard {shard})", target.server.name())
                        })?;
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                    break (status, body);
                };
                if !status.is_success() {
                    bail!(
                        "remote write to {} (window {w}, shard {shard}) answered {status}: {}",
                        target.server.name(),
                        String::from_utf8_lossy(&body).trim()
                    );
                }
                barrier.wait().await;
            }
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.context("a writer task failed").and_then(|r| r) {
            // The other shards wait at the barrier for this one: stop them.
            tasks.abort_all();
            return Err(e);
        }
    }
    Ok((started.elapsed(), retries.load(std::sync::atomic::Ordering::Relaxed)))
}

// ---- ingest ----------------------------------------------------------------------------------

/// What one server's ingest cost.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct IngestCost {
    wall_s: f64,
    /// CPU time from the first request to the last acknowledgement.
    cpu_s: f64,
    /// CPU time until the server went idle after the last acknowledgement.
    settled_cpu_s: f64,
    settle_s: f64,
    /// `VmHWM` once idle.
    hwm_kib: u64,
}

/// What `--phase ingest` leaves for `--phase query`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IngestReport {
    end: i64,
    samples: u64,
    body_bytes: usize,
    requests: usize,
    slo_gate: IngestCost,
    prometheus: IngestCost,
}

async fn ingest_one(args: &Args, target: Target, windows: Arc<Vec<Vec<Bytes>>>) -> anyhow::Result<IngestCost> {
    let ticks = procfs::clock_ticks_per_second();
    let before = procfs::snapshot(target.pid, ticks)?;
    let (wall, retries) = write(target, windows).await?;
    if retries > 0 {
        println!("{}: {retries} remote-write requests answered 429/5xx and retried", target.server.name());
    }
    let acked = procfs::snapshot(target.pid, ticks)?;
    let settle =
        procfs::wait_until_idle(target.pid, ticks, Duration::from_secs(args.settle), Duration::from_secs(1), 0.05)?;
    let idle = procfs::snapshot(target.pid, ticks)?;
    Ok(IngestCost {
        wall_s: wall.as_secs_f64(),
        cpu_s: acked.cpu_seconds - before.cpu_seconds,
        settled_cpu_s: idle.cpu_seconds - before.cpu_seconds,
        settle_s: settle.as_secs_f64(),
        hwm_kib: idle.hwm_kib,
    })
}

async fn ingest(args: &Args, targets: [Target; 2], end: i64) -> anyhow::Result<IngestReport> {
    let layout = Layout::new(args.series, args.routes)?;
    let steps = steps(args)?;
    let start_ms = (end - (args.hours * 3600) as i64) * 1000;
    println!("{}", layout.describe());
    let built = Instant::now();
    let windows = Arc::new(bodies(args, layout, start_ms)?);
    let requests = windows.iter().map(Vec::len).sum();
    let body_bytes = windows.iter().flatten().map(Bytes::len).sum();
    let samples = (layout.series * steps) as u64;
    println!(
        "{steps} samples per series, {samples} samples from {} to {end} (unix s); {} windows of {} steps × {} \
         shards = {requests} requests, {:.1} MB snappy, built in {:.1} s",
        start_ms / 1000 + args.interval as i64,
        windows.len(),
        args.steps_per_request.max(1),
        windows.first().map_or(0, Vec::len),
        body_bytes as f64 / 1e6,
        built.elapsed().as_secs_f64()
    );
    let mut costs = [IngestCost::default(); 2];
    for (cost, target) in costs.iter_mut().zip(targets) {
        *cost = ingest_one(args, target, Arc::clone(&windows)).await?;
        println!(
            "{:<10} ingest {:.1} s wall, {:.1} s CPU ({:.1} s more while settling for {:.0} s), {:.0} samples/CPU-s, \
             peak RSS {} MiB",
            target.server.name(),
            cost.wall_s,
            cost.cpu_s,
            cost.settled_cpu_s - cost.cpu_s,
            cost.settle_s,
            samples as f64 / cost.cpu_s.max(1e-9),
            cost.hwm_kib / 1024
        );
    }
    let [slo_gate, prometheus] = costs;
    Ok(IngestReport { end, samples, body_bytes, requests, slo_gate, prometheus })
}

// ---- queries ---------------------------------------------------------------------------------

const QUERIES: [&str; 2] = [
    "sum by (route) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket[5m])))",
];
const STEPS: [u64; 2] = [15, 60];
/// How many disagreements of one query are printed.
const SHOWN: usize = 5;

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `query_range` answer: each series' labels to its points (milliseconds, value).
type Matrix = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

fn parse_matrix(body: &[u8]) -> anyhow::Result<Matrix> {
    #[derive(Deserialize)]
    struct Answer {
        status: String,
        data: Data,
    }
    #[derive(Deserialize)]
    struct Data {
        #[serde(rename = "resultType")]
        result_type: String,
        result: Vec<SeriesJson>,
    }
    #[derive(Deserialize)]
    struct SeriesJson {
        metric: BTreeMap<String, String>,
        values: Vec<(f64, String)>,
    }
    let answer: Answer = serde_json::from_slice(body).context("the answer is not Prometheus's JSON")?;
    if answer.status != "success" || answer.data.result_type != "matrix" {
        bail!("status {:?}, resultType {:?}", answer.status, answer.data.result_type);
    }
    let mut out = Matrix::new();
    for s in answer.data.result {
        let points = s
            .values
            .into_iter()
            .map(|(t, v)| Ok(((t * 1000.0).round() as i64, v.parse::<f64>().with_context(|| format!("value {v:?}"))?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if out.insert(s.metric.clone(), points).is_some() {
            bail!("series {:?} answered twice", s.metric);
        }
    }
    Ok(out)
}

/// Equal within 1e-9 relative; NaN equals NaN.
fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Every disagreement between slo-gate's answer `a` and Prometheus's `b`.
fn differences(a: &Matrix, b: &Matrix) -> Vec<String> {
    let mut out = Vec::new();
    let keys: BTreeSet<&BTreeMap<String, String>> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let name = show_labels(key);
        let (pa, pb) = match (a.get(key), b.get(key)) {
            (Some(pa), Some(pb)) => (pa, pb),
            (Some(p), None) => {
                out.push(format!("{name}: only slo-gate answers it ({} points)", p.len()));
                continue;
            }
            (None, Some(p)) => {
                out.push(format!("{name}: only Prometheus answers it ({} points)", p.len()));
                continue;
            }
            (None, None) => continue,
        };
        let (ma, mb): (BTreeMap<i64, f64>, BTreeMap<i64, f64>) =
            (pa.iter().copied().collect(), pb.iter().copied().collect());
        let times: BTreeSet<i64> = ma.keys().chain(mb.keys()).copied().collect();
        for t in times {
            let secs = t as f64 / 1000.0;
            match (ma.get(&t), mb.get(&t)) {
                (Some(&va), Some(&vb)) if !same_value(va, vb) => {
                    out.push(format!("{name} at {secs}: slo-gate {va:?}, Prometheus {vb:?}"))
                }
                (Some(&va), None) => out.push(format!("{name} at {secs}: only slo-gate has a point ({va:?})")),
                (None, Some(&vb)) => out.push(format!("{name} at {secs}: only Prometheus has a point ({vb:?})")),
                _ => {}
            }
        }
    }
    out
}

/// One server's timings of one query, or why it failed.
#[derive(Debug)]
struct Timed {
    min: Duration,
    median: Duration,
}

#[derive(Debug)]
struct QueryResult {
    query: &'static str,
    step: u64,
    timings: [Result<Timed, String>; 2],
    series: [usize; 2],
    differences: Option<usize>,
}

/// One `query_range` call: the answer and how long it took.
async fn call(client: &mut Client, form: &str) -> anyhow::Result<(Bytes, Duration)> {
    let headers = [(CONTENT_TYPE.as_str(), "application/x-www-form-urlencoded")];
    let started = Instant::now();
    let (status, answer) = client.post("/api/v1/query_range", &headers, Bytes::from(form.to_string())).await?;
    let took = started.elapsed();
    if !status.is_success() {
        bail!("answered {status}: {}", String::from_utf8_lossy(&answer).trim());
    }
    Ok((answer, took))
}

/// One untimed call (its answer is returned), then `runs` timed ones.
async fn time_query(client: &mut Client, form: &str, runs: usize) -> anyhow::Result<(Matrix, Timed)> {
    let (first, _) = call(client, form).await?;
    let matrix = parse_matrix(&first)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        times.push(call(client, form).await?.1);
    }
    times.sort();
    Ok((matrix, Timed { min: times[0], median: percentile(&times, 0.5) }))
}

async fn queries(args: &Args, targets: [Target; 2], end: i64) -> anyhow::Result<Vec<QueryResult>> {
    let start = end - (args.hours * 3600) as i64;
    let mut clients = [Client::connect(targets[0].addr).await?, Client::connect(targets[1].addr).await?];
    let mut results = Vec::new();
    for query in QUERIES {
        for step in STEPS {
            let form = format!(
                "query={}&start={:.3}&end={:.3}&step={:.3}",
                form_encode(query),
                start as f64,
                end as f64,
                step as f64
            );
            let mut answers = Vec::with_capacity(2);
            let mut timings = Vec::with_capacity(2);
            for (client, target) in clients.iter_mut().zip(targets) {
                match time_query(client, &form, args.runs).await {
                    Ok((matrix, timed)) => {
                        println!(
                            "{:<10} step {step:>2} s  min {:>9.1} ms  median {:>9.1} ms  {} series  {query}",
                            target.server.name(),
                            timed.min.as_secs_f64() * 1e3,
                            timed.median.as_secs_f64() * 1e3,
                            matrix.len()
                        );
                        answers.push(Some(matrix));
                        timings.push(Ok(timed));
                    }
                    Err(e) => {
                        println!("{:<10} step {step:>2} s  FAILED: {e:#}  {query}", target.server.name());
                        answers.push(None);
                        timings.push(Err(format!("{e:#}")));
                    }
                }
            }
            let series = [0, 1].map(|i| answers[i].as_ref().map_or(0, Matrix::len));
            let differences = match (&answers[0], &answers[1]) {
                (Some(a), Some(b)) => {
                    let found = differences(a, b);
                    if found.is_empty() {
                        let points: usize = a.values().map(Vec::len).sum();
                        println!("           answers agree: {} series, {points} points", a.len());
                    } else {
                        println!("           answers DIFFER: {} disagreements; the first:", found.len());
                        for d in found.iter().take(SHOWN) {
                            println!("             {d}");
                        }
                    }
                    Some(found.len())
                }
                _ => None,
            };
            let mut timings = timings.into_iter();
            let timings = [(); 2].map(|_| timings.next().unwrap_or_else(|| Err("not run".into())));
            results.push(QueryResult { query, step, timings, series, differences });
        }
    }
    Ok(results)
}

// ---- the table -------------------------------------------------------------------------------

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 { format!("{:.2}", a / b) } else { "–".into() }
}

fn print_table(args: &Args, ingest: Option<&IngestReport>, results: &[QueryResult], hwm_after: [Option<u64>; 2]) {
    println!();
    println!(
        "| {} series × {} h at {} s | slo-gate | Prometheus | slo-gate / Prometheus |",
        args.series, args.hours, args.interval
    );
    println!("|---|---:|---:|---:|");
    let row = |what: &str, a: f64, b: f64, digits: usize| {
        println!("| {what} | {a:.digits$} | {b:.digits$} | {} |", ratio(a, b));
    };
    if let Some(r) = ingest {
        let (a, b) = (&r.slo_gate, &r.prometheus);
        let n = r.samples as f64;
        println!(
            "| samples written ({} requests, {:.1} MB snappy) | {} | {} | |",
            r.requests,
            r.body_bytes as f64 / 1e6,
            r.samples,
            r.samples
        );
        row("ingest wall time (s)", a.wall_s, b.wall_s, 2);
        row("samples per second (wall)", n / a.wall_s, n / b.wall_s, 0);
        row("server CPU during ingest (s)", a.cpu_s, b.cpu_s, 2);
        row("samples per CPU-second", n / a.cpu_s.max(1e-9), n / b.cpu_s.max(1e-9), 0);
        row("server CPU until idle (s)", a.settled_cpu_s, b.settled_cpu_s, 2);
        row("peak RSS after ingest (MiB, VmHWM)", a.hwm_kib as f64 / 1024.0, b.hwm_kib as f64 / 1024.0, 0);
    }
    for r in results {
        let name = format!("`{}` step {} s", r.query, r.step);
        match &r.timings {
            [Ok(a), Ok(b)] => {
                let ms = |d: Duration| d.as_secs_f64() * 1e3;
                row(&format!("{name}: min (ms)"), ms(a.min), ms(b.min), 1);
                row(&format!("{name}: median (ms)"), ms(a.median), ms(b.median), 1);
            }
            [a, b] => {
                let show = |t: &Result<Timed, String>| match t {
                    Ok(t) => format!("{:.1} ms", t.median.as_secs_f64() * 1e3),
                    Err(e) => format!("error: {}", e.replace('|', "/")),
                };
                println!("| {name}: median | {} | {} | |", show(a), show(b));
            }
        }
        let agree = match r.differences {
            Some(0) => "yes".to_string(),
            Some(n) => format!("**no: {n} disagreements**"),
            None => "not compared".to_string(),
        };
        println!("| {name}: series; answers agree | {} | {} | {agree} |", r.series[0], r.series[1]);
    }
    if let [Some(a), Some(b)] = hwm_after {
        row("peak RSS of the process after queries (MiB, VmHWM)", a as f64 / 1024.0, b as f64 / 1024.0, 0);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let targets = [
        Target { server: Server::SloGate, addr: loopback(&args.slo_gate)?, pid: args.slo_gate_pid },
        Target { server: Server::Prometheus, addr: loopback(&args.prometheus)?, pid: args.prometheus_pid },
    ];
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let end = args.end.unwrap_or(now / 3600 * 3600);

    let ingested = if args.phase == Phase::Query {
        match &args.state {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let report: IngestReport = serde_json::from_str(&text).context("reading the ingest measurements")?;
                if args.end.is_some_and(|e| e != report.end) {
                    bail!("--end {end} is not the end the data was written with ({})", report.end);
                }
                Some(report)
            }
            _ => None,
        }
    } else {
        let report = ingest(&args, targets, end).await?;
        if let Some(path) = &args.state {
            std::fs::write(path, serde_json::to_string_pretty(&report)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Some(report)
    };
    if args.phase == Phase::Ingest {
        return Ok(());
    }
    let end = ingested.as_ref().map_or(end, |r| r.end);
    let results = queries(&args, targets, end).await?;
    let ticks = procfs::clock_ticks_per_second();
    let hwm_after = targets.map(|t| procfs::snapshot(t.pid, ticks).ok().map(|s| s.hwm_kib));
    print_table(&args, ingested.as_ref(), &results, hwm_after);

    let failed = results.iter().filter(|r| r.timings.iter().any(Result::is_err)).count();
    let differ = results.iter().filter(|r| r.differences.is_some_and(|n| n > 0)).count();
    if failed + differ > 0 {
        bail!("{differ} of {} queries answered differently, {failed} failed", results.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_exactly_the_series_asked_for() {
        for (series, routes, instances) in [(10_000, 25, 20), (1_000, 25, 2), (200, 10, 1)] {
            let layout = Layout::new(series, 25).unwrap();
            assert_eq!((layout.routes, layout.instances), (routes, instances), "{series}");
            assert_eq!(layout.labels().len(), series);
        }
        assert!(Layout::new(10, 25).is_err());
    }

    #[test]
    fn histograms_are_cumulative_and_count_the_requests() {
        let layout = Layout::new(1_000, 25).unwrap();
        let mut g = Generator::new(layout, 15, 7);
        for _ in 0..300 {
            let v = g.step().to_vec();
            for pair in v.chunks(PER_PAIR).take(layout.pairs) {
                let buckets = &pair[4..4 + BUCKETS.len() + 1];
                assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
                assert_eq!(buckets[BUCKETS.len()], pair[PER_PAIR - 1]);
                assert_eq!(pair[..4].iter().sum::<f64>(), pair[PER_PAIR - 1]);
            }
        }
    }

    #[test]
    fn normal_cdf_is_close() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((normal_cdf(-1.0) - 0.158_655).abs() < 1e-5);
    }

    #[test]
    fn answers_are_compared_point_by_point() {
        let labels = |route: &str| BTreeMap::from([("route".to_string(), route.to_string())]);
        let a = Matrix::from([(labels("/a"), vec![(1000, 1.0), (2000, f64::NAN)]), (labels("/b"), vec![(1000, 2.0)])]);
        let mut b = a.clone();
        assert!(differences(&a, &b).is_empty());
        b.insert(labels("/a"), vec![(1000, 1.0 + 1e-12), (2000, f64::NAN), (3000, 4.0)]);
        b.remove(&labels("/b"));
        let d = differences(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("at 3: only Prometheus"), "{d:?}");
        assert!(d[1].contains("only slo-gate answers it"), "{d:?}");
    }

    #[test]
    fn answers_parse_as_prometheus_writes_them() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"route":"/"},"values":[[1700000000,"1.5"],[1700000015.5,"NaN"],[1700000030,"+Inf"]]}]}}"#;
        let m = parse_matrix(body).unwrap();
        let points = &m[&BTreeMap::from([("route".to_string(), "/".to_string())])];
        assert_eq!(points[1].0, 1_700_000_015_500);
        assert!(points[1].1.is_nan() && points[2].1 == f64::INFINITY);
    }
}
