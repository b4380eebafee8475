//! The PromQL engine alone, over series in memory: the two Grafana queries of the Prometheus
//! benchmark (`bench/run-prom-bench.sh`, which adds the store and HTTP and runs Prometheus
//! beside it) over the same shape of data, so the engine's share of a `query_range` is known.
//!
//! `cargo bench -p prom --bench engine` (env `PAIRS`, default 500: each (instance, route) pair
//! has four `http_requests_total` series and twelve histogram buckets; `HOURS`, default 6, of
//! samples every 15 s; `RUNS`, default 3; `THREADS`, default the engine's, at most the cores
//! and 4). Prints the median and fastest wall time per query and step, and the series and
//! points answered.

use std::time::Instant;

use prom::engine::{Options, range};
use prom::model::{Labels, MemSource, Sample, Series};

const BUCKETS: [&str; 12] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
const QUERIES: [&str; 2] = [
    "sum by (route) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket[5m])))",
];
const INTERVAL_MS: i64 = 15_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// SplitMix64: the same data on every run.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Counters of `pairs` (instance, route) pairs over `points` steps: requests by method and
/// status, and a latency histogram whose buckets grow by shares of the requests.
fn data(pairs: usize, points: usize) -> Vec<Series> {
    let mut state = 42u64;
    let mut out = Vec::new();
    for pair in 0..pairs {
        let (instance, route) = (format!("10.1.0.{}:8080", pair / 20), format!("/route/{}", pair % 20));
        let common = [("job", "api".to_string()), ("instance", instance), ("route", route)];
        let series = |name: &str, extra: &[(&str, &str)]| {
            let mut pairs: Vec<(String, String)> = vec![("__name__".into(), name.into())];
            pairs.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
            pairs.extend(common.iter().map(|(n, v)| (n.to_string(), v.clone())));
            Labels::new(pairs)
        };
        let mut sets = Vec::new();
        for (method, status) in [("GET", "200"), ("GET", "500"), ("POST", "200"), ("POST", "500")] {
            sets.push(series("http_requests_total", &[("method", method), ("status", status)]));
        }
        for le in BUCKETS {
            sets.push(series("http_request_duration_seconds_bucket", &[("le", le)]));
        }
        let mut values = vec![0.0f64; sets.len()];
        let mut samples: Vec<Vec<Sample>> = vec![Vec::with_capacity(points); sets.len()];
        for k in 0..points {
            let t = k as i64 * INTERVAL_MS;
            let n = (next(&mut state) % 200) as f64;
            for (i, v) in values.iter_mut().enumerate() {
                *v += if i < 4 { n / (i + 1) as f64 } else { (n * (i - 3) as f64 / 12.0).round() };
                samples[i].push(Sample { t, v: *v });
            }
        }
        out.extend(sets.into_iter().zip(samples).map(|(labels, samples)| Series { labels, samples }));
    }
    out
}

fn main() {
    let (pairs, hours, runs) = (env("PAIRS", 500), env("HOURS", 6), env("RUNS", 3).max(1));
    let opts = Options { threads: env("THREADS", Options::default().threads).max(1), ..Options::default() };
    let points = hours * 3_600_000 / INTERVAL_MS as usize;
    let source = MemSource(data(pairs, points));
    let end = (points as i64 - 1) * INTERVAL_MS;
    println!("{} series × {points} samples every 15 s; {} thread(s); {runs} runs each", source.0.len(), opts.threads);
    for query in QUERIES {
        for step_s in [15i64, 60] {
            let mut times = Vec::new();
            let mut answered = (0, 0);
            for _ in 0..runs {
                let started = Instant::now();
                let result = range(query, 0, end, step_s * 1000, &source, &opts).expect(query);
                times.push(started.elapsed().as_secs_f64() * 1e3);
                answered = (result.len(), result.iter().map(|s| s.samples.len()).sum::<usize>());
            }
            times.sort_by(f64::total_cmp);
            println!(
                "step {step_s:>2} s  median {:>8.1} ms  min {:>8.1} ms  {} series {} points  {query}",
                times[times.len() / 2],
                times[0],
                answered.0,
                answered.1
            );
        }
    }
}
