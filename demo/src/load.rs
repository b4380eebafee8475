//! The load client: a few workers (threads with a blocking HTTP client), each looping over
//! randomly chosen routes with a short pause between requests, for a fixed duration.
//!
//! The mix is 55% `POST /api/checkout`, 35% `GET /api/cart`, 10% `GET /api/health`, and each
//! worker pauses [`LoadConfig::pause`] between requests, so the service and the collector it
//! shares the machine with are busy but not saturated (a saturated CPU would make every route
//! slower and blur the story). At the defaults a 15 s run sends several thousand requests:
//! every route gets far more than the contract's 100 samples.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};

use crate::work::SplitMix64;

/// The routes the client drives, with their share of requests in percent.
pub const MIX: [(Route, u64); 3] = [(Route::Checkout, 55), (Route::Cart, 35), (Route::Health, 10)];

/// A route of the demo service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    Cart,
    Checkout,
    Health,
}

impl Route {
    /// The `http.route`.
    pub fn path(self) -> &'static str {
        match self {
            Route::Cart => "/api/cart",
            Route::Checkout => "/api/checkout",
            Route::Health => "/api/health",
        }
    }

    fn pick(rng: &mut SplitMix64) -> Route {
        let mut roll = rng.below(100);
        for (route, share) in MIX {
            if roll < share {
                return route;
            }
            roll -= share;
        }
        Route::Health
    }
}

/// How hard to drive the service.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Concurrent workers.
    pub workers: usize,
    /// Pause of a worker between two requests.
    pub pause: Duration,
    /// How long to send requests.
    pub duration: Duration,
    /// Seed of the route choices.
    pub seed: u64,
}

impl LoadConfig {
    /// 4 workers pausing 5 ms, for `duration`.
    pub fn new(duration: Duration) -> LoadConfig {
        LoadConfig { workers: 4, pause: Duration::from_millis(5), duration, seed: 0x10AD }
    }
}

/// What the client saw, per route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteStats {
    pub route: &'static str,
    /// Requests sent.
    pub requests: u64,
    /// Answers other than 2xx, and requests that got no answer.
    pub errors: u64,
    /// Sum of the `x-demo-work-units` headers (checkout only).
    pub work_units: u64,
    /// Client-side latencies of the answered requests, sorted.
    pub latencies: Vec<Duration>,
}

impl RouteStats {
    /// The `q` quantile (nearest rank) of the client-side latencies.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        Some(self.latencies[rank - 1])
    }
}

/// Drives the service at `addr` as `config` says and returns per-route statistics, sorted by
/// route. Fails only when the client cannot be built or no request at all was answered.
pub fn run(addr: SocketAddr, config: &LoadConfig) -> anyhow::Result<Vec<RouteStats>> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .context("building the load client")?;
    let deadline = Instant::now() + config.duration;
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for worker in 0..config.workers {
            let client = client.clone();
            let results = &results;
            let seed = config.seed ^ (worker as u64).wrapping_mul(0xA24B_AED4_963E_E407);
            scope.spawn(move || {
                let stats = worker_loop(&client, addr, deadline, config.pause, seed);
                results.lock().unwrap_or_else(|e| e.into_inner()).push(stats);
            });
        }
    });
    let mut merged: Vec<RouteStats> = Vec::new();
    for stats in results.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().flatten() {
        match merged.iter_mut().find(|m| m.route == stats.route) {
            Some(m) => {
                m.requests += stats.requests;
                m.errors += stats.errors;
                m.work_units += stats.work_units;
                m.latencies.extend(stats.latencies);
            }
            None => merged.push(stats),
        }
    }
    merged.sort_by_key(|m| m.route);
    for m in &mut merged {
        m.latencies.sort();
    }
    let answered: usize = merged.iter().map(|m| m.latencies.len()).sum();
    if answered == 0 {
        return Err(anyhow!("the demo service at {addr} answered no request"));
    }
    Ok(merged)
}

fn worker_loop(
    client: &reqwest::blocking::Client,
    addr: SocketAddr,
    deadline: Instant,
    pause: Duration,
    seed: u64,
) -> Vec<RouteStats> {
    let mut rng = SplitMix64::new(seed);
    let mut stats: Vec<RouteStats> =
        MIX.iter().map(|(r, _)| RouteStats { route: r.path(), ..RouteStats::default() }).collect();
    while Instant::now() < deadline {
        let route = Route::pick(&mut rng);
        let url = format!("http://{addr}{}", route.path());
        let request = match route {
            Route::Checkout => client.post(&url),
            Route::Cart | Route::Health => client.get(&url),
        };
        let started = Instant::now();
        let answer = request.send();
        let elapsed = started.elapsed();
        let Some(entry) = stats.iter_mut().find(|s| s.route == route.path()) else { continue };
        entry.requests += 1;
        match answer {
            Ok(response) => {
                entry.latencies.push(elapsed);
                if !response.status().is_success() {
                    entry.errors += 1;
                }
                entry.work_units += response
                    .headers()
                    .get(crate::service::WORK_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                // Read the body so the connection is reused.
                let _ = response.bytes();
            }
            Err(_) => entry.errors += 1,
        }
        std::thread::sleep(pause);
    }
    stats
}
