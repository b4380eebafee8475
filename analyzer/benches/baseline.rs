//! Throughput of the baseline detector (`analyzer::baseline`): points scored per second on one
//! core, for the default model (`auto`, which runs the flat, daily and time-of-week candidates
//! side by side) on a seasonal 1-minute series and an irregular 5-minute one, and for the
//! mixture model. Each iteration scores a whole pre-generated series with a fresh detector, so
//! the numbers include warm-up, hour completions and model choices as they come.
//!
//! `cargo bench -p analyzer --bench baseline`. The memory one series holds after 14+ days of
//! 1- and 5-minute points is printed first (`memory_bytes()`).

use std::hint::black_box;

use analyzer::baseline::synthetic::Rng;
use analyzer::baseline::{Config, Detector, Model};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const DAY: i64 = 86_400_000;

/// A daily curve with noise and a few spikes, every `step_ms` (jittered when `jitter`).
fn series(days: i64, step_ms: i64, jitter: bool, seed: u64) -> Vec<(i64, f64)> {
    let mut rng = Rng(seed);
    let start = 1_767_571_200_000;
    let mut out = Vec::new();
    let mut t = start;
    while t < start + days * DAY {
        let phase = ((t - start) % DAY) as f64 / DAY as f64 * std::f64::consts::TAU;
        let mut v = 100.0 + 40.0 * phase.sin() + 3.0 * rng.normal();
        if rng.unit() < 0.001 {
            v += 60.0;
        }
        let at = if jitter { t + (rng.range(-0.4, 0.4) * step_ms as f64) as i64 } else { t };
        out.push((at, v));
        t += step_ms;
    }
    out
}

fn run(config: &Config, points: &[(i64, f64)]) -> usize {
    let mut detector = Detector::new(config.clone()).expect("valid configuration");
    let mut alarms = 0;
    for &(t, v) in points {
        alarms += usize::from(detector.update(t, v).alarm);
    }
    alarms
}

fn memory_report() {
    for (label, step, model) in [
        ("auto, 1-minute points, 15 days", 60_000, Model::Auto),
        ("auto, 5-minute points, 15 days", 300_000, Model::Auto),
        ("mixture, 1-minute points, 15 days", 60_000, Model::Mixture),
        ("mixture, 5-minute points, 15 days", 300_000, Model::Mixture),
    ] {
        let mut detector = Detector::new(Config { model, ..Config::default() }).expect("valid configuration");
        for (t, v) in series(15, step, false, 7) {
            detector.update(t, v);
        }
        println!("memory per series, {label}: {} bytes", detector.memory_bytes());
    }
}

fn bench(c: &mut Criterion) {
    memory_report();
    let minute = series(7, 60_000, false, 1);
    let irregular = series(14, 300_000, true, 2);
    let auto = Config::default();
    let mixture = Config { model: Model::Mixture, ..Config::default() };
    let mut group = c.benchmark_group("baseline");
    group.sample_size(10);
    for (name, config, points) in [
        ("auto/1m-7d", &auto, &minute),
        ("auto/5m-irregular-14d", &auto, &irregular),
        ("mixture/1m-7d", &mixture, &minute),
    ] {
        group.throughput(Throughput::Elements(points.len() as u64));
        group.bench_function(name, |b| b.iter(|| run(black_box(config), black_box(points))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
