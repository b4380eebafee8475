//! The demo service answers its routes, and the candidate build measurably does more checkout
//! work (counted in work units, not timed) and concentrates it on node-3.

use std::collections::BTreeMap;
use std::time::Duration;

use demo::Build;
use demo::load::{self, LoadConfig};
use demo::service::{NODE_HEADER, Server, WORK_HEADER};
use demo::telemetry::Telemetry;
use demo::work::{NODES, SLOW_NODE};

/// A service of `build` without exporters, on its own runtime.
struct Running {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    _telemetry: Telemetry,
}

impl Running {
    fn start(build: Build) -> Running {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let telemetry = Telemetry::disabled(build);
        let server = runtime.block_on(Server::start(build, telemetry.instruments())).unwrap();
        Running { runtime, server: Some(server), _telemetry: telemetry }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.as_ref().unwrap().addr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop()).unwrap();
        }
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

#[test]
fn service_answers_every_route() {
    let service = Running::start(Build::Baseline);
    let client = client();

    let health = client.get(service.url("/api/health")).send().unwrap();
    assert_eq!(health.status(), 200);
    assert!(NODES.contains(&health.headers()[NODE_HEADER].to_str().unwrap()));
    assert_eq!(health.text().unwrap(), "ok");

    let cart = client.get(service.url("/api/cart")).send().unwrap();
    assert_eq!(cart.status(), 200);
    let body = cart.text().unwrap();
    assert!(body.starts_with(r#"{"items":"#) && body.contains("subtotal_cents"), "{body}");

    let checkout = client.post(service.url("/api/checkout")).send().unwrap();
    assert!(checkout.status() == 200 || checkout.status() == 500, "{}", checkout.status());
    let work: u64 = checkout.headers()[WORK_HEADER].to_str().unwrap().parse().unwrap();
    assert!(work > 0);

    // Wrong method and unknown path: the router's answers, not a span.
    assert_eq!(client.get(service.url("/api/checkout")).send().unwrap().status(), 405);
    assert_eq!(client.get(service.url("/nope")).send().unwrap().status(), 404);
}

/// Work units per node over `n` sequential checkouts (sequential, so the request sequence and
/// with it every node and cart is the same for both builds).
fn checkout_work(build: Build, n: usize) -> (BTreeMap<String, (u64, u64)>, u64) {
    let service = Running::start(build);
    let client = client();
    let mut per_node: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut failures = 0;
    for _ in 0..n {
        let answer = client.post(service.url("/api/checkout")).send().unwrap();
        if answer.status() == 500 {
            failures += 1;
        } else {
            assert_eq!(answer.status(), 200);
        }
        let node = answer.headers()[NODE_HEADER].to_str().unwrap().to_string();
        let work: u64 = answer.headers()[WORK_HEADER].to_str().unwrap().parse().unwrap();
        let entry = per_node.entry(node).or_default();
        entry.0 += work;
        entry.1 += 1;
    }
    (per_node, failures)
}

#[test]
fn candidate_checkout_does_more_work_concentrated_on_the_slow_node() {
    let (base, _) = checkout_work(Build::Baseline, 200);
    let (cand, _) = checkout_work(Build::Candidate, 200);
    assert_eq!(base.keys().collect::<Vec<_>>(), NODES.iter().collect::<Vec<_>>(), "every node serves");
    // Same request sequence: the same nodes, the same number of checkouts each.
    assert_eq!(base.values().map(|v| v.1).collect::<Vec<_>>(), cand.values().map(|v| v.1).collect::<Vec<_>>());

    let total = |m: &BTreeMap<String, (u64, u64)>| m.values().map(|v| v.0).sum::<u64>() as f64;
    let ratio = total(&cand) / total(&base);
    assert!((2.4..2.8).contains(&ratio), "candidate/baseline work {ratio:.3}");

    for node in NODES {
        let r = cand[node].0 as f64 / base[node].0 as f64;
        if node == SLOW_NODE {
            assert!((3.9..4.1).contains(&r), "{node}: {r:.3}");
        } else {
            assert!((1.9..2.1).contains(&r), "{node}: {r:.3}");
        }
    }
}

#[test]
fn load_reaches_every_route_with_the_mix() {
    let service = Running::start(Build::Candidate);
    let config = LoadConfig { duration: Duration::from_millis(1500), ..LoadConfig::new(Duration::ZERO) };
    let stats = load::run(service.server.as_ref().unwrap().addr(), &config).unwrap();
    let routes: Vec<&str> = stats.iter().map(|s| s.route).collect();
    assert_eq!(routes, ["/api/cart", "/api/checkout", "/api/health"]);
    let checkout = &stats[1];
    let cart = &stats[0];
    assert!(checkout.requests > cart.requests, "checkout is the most frequent route: {stats:?}");
    assert!(stats.iter().all(|s| s.requests > 0 && s.latencies.len() as u64 == s.requests));
    assert!(checkout.work_units > 0 && cart.work_units == 0);
    // Only checkout fails.
    assert_eq!(cart.errors + stats[2].errors, 0);
    assert!(checkout.quantile(0.95).unwrap() >= checkout.quantile(0.5).unwrap());
}
