//! `slo-gate-leaks-bench`: wall time and peak RSS of goroutine-leak detection at scale, on inputs
//! built in memory (driver script `bench/run-leaks-bench.sh`).
//!
//! Phase 1 (one big snapshot): a gzipped pprof goroutine profile of `--goroutines` goroutines
//! over `--stacks` distinct stacks (8–20 frames; the runtime's parking frames on top, distinct
//! user functions below, counts skewed so a few stacks hold most goroutines), taken through
//! the path `slo-gate leaks` takes: `pprof::decode` → `leaks::from_pprof` → `leaks::detect`.
//! Phase 2 (the trend): `--snapshots` snapshots of `--clusters` blocking sites (two call paths
//! each), of which `--growing` grow and the rest stay flat with noise, through `leaks::detect`.
//!
//! Deterministic: the same flags build the same inputs. Peak RSS is the kernel's high-water
//! mark (`VmHWM`), reset before each phase through `/proc/self/clear_refs` so each phase reports
//! its own peak (inputs included); read from `/proc` rather than `getrusage` because the
//! workspace forbids `unsafe`.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use analyzer::leaks::{self, GoroutineGroup, LeakOptions, Snapshot, StackFrame};
use analyzer::pprof::{self, proto};
use anyhow::{Context, bail, ensure};
use bench::seeded::Rng;
use clap::Parser;
use prost::Message;

// The allocator of the `slo-gate` binary: allocation is a large part of clustering.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Goroutines in the big profile (phase 1).
    #[arg(long, default_value_t = 1_000_000)]
    goroutines: u64,
    /// Distinct stacks in the big profile.
    #[arg(long, default_value_t = 10_000)]
    stacks: usize,
    /// Snapshots in the trend phase (phase 2), 15 s apart.
    #[arg(long, default_value_t = 1_000)]
    snapshots: usize,
    /// Blocking sites per snapshot in phase 2.
    #[arg(long, default_value_t = 300)]
    clusters: usize,
    /// How many of those sites leak.
    #[arg(long, default_value_t = 12)]
    growing: usize,
}

/// The runtime frames a parked goroutine shows on top (innermost first), by wait kind.
const PARKING: &[&[&str]] = &[
    &["runtime.gopark", "runtime.chanrecv", "runtime.chanrecv2"],
    &["runtime.gopark", "runtime.chanrecv", "runtime.chanrecv1"],
    &["runtime.gopark", "runtime.selectgo"],
    &["runtime.gopark", "runtime.chansend", "runtime.chansend1"],
    &[
        "runtime.gopark",
        "runtime.goparkunlock",
        "runtime.semacquire1",
        "sync.runtime_Semacquire",
        "sync.(*WaitGroup).Wait",
    ],
    &[
        "runtime.gopark",
        "runtime.goparkunlock",
        "runtime.semacquire1",
        "sync.runtime_SemacquireMutex",
        "sync.(*Mutex).lockSlow",
        "sync.(*Mutex).Lock",
    ],
    &[
        "runtime.gopark",
        "runtime.netpollblock",
        "internal/poll.runtime_pollWait",
        "internal/poll.(*pollDesc).wait",
        "internal/poll.(*pollDesc).waitRead",
        "internal/poll.(*FD).Read",
        "net.(*netFD).Read",
        "net.(*conn).Read",
    ],
    &["runtime.gopark", "time.Sleep"],
];

const PACKAGES: &[&str] = &[
    "github.com/acme/shop/checkout",
    "github.com/acme/shop/cart",
    "github.com/acme/shop/search",
    "github.com/acme/shop/internal/store",
    "github.com/acme/shop/internal/queue",
    "main",
];

/// Stack `i` of the big profile (innermost first, 8–20 frames): parking frames, the blocking
/// user function (one of `stacks / 20` sites), a call path unique to `i`, then the entry frames.
fn big_stack(i: usize, sites: usize, rng: &mut Rng) -> Vec<(String, String, i64)> {
    let site = i % sites;
    let pkg = PACKAGES[site % PACKAGES.len()];
    let file = |pkg: &str, n: usize| format!("/src/{pkg}/file{n}.go");
    let mut frames: Vec<(String, String, i64)> = PARKING[site % PARKING.len()]
        .iter()
        .map(|f| (f.to_string(), format!("/usr/local/go/src/{f}.go"), 100))
        .collect();
    // Some blocking functions are generic instantiations or methods on pointer receivers.
    let blocking = match site % 3 {
        0 => format!("{pkg}.(*Worker{site}).wait"),
        1 => format!("{pkg}.drain{site}[go.shape.int]"),
        _ => format!("{pkg}.consume{site}.func1"),
    };
    frames.push((blocking, file(pkg, site), 40 + (site % 50) as i64));
    // 8..=20 frames in all, and room for the blocking frame, the route and `runtime.goexit`.
    let target = (8 + (i * 7 + site) % 13).max(frames.len() + 2);
    let path = i / sites;
    let mut depth = 0;
    while frames.len() + 2 < target {
        let p = PACKAGES[rng.below(PACKAGES.len() as u64) as usize];
        frames.push((format!("{p}.(*Handler{}).step{depth}", path % 97), file(p, path % 31), 10 + depth as i64));
        depth += 1;
    }
    frames.push((format!("{pkg}.route{path}"), file(pkg, path), 200));
    frames.push(("runtime.goexit".to_string(), "/usr/local/go/src/runtime/asm_amd64.s".to_string(), 1700));
    frames
}

/// Counts for `stacks` stacks summing exactly to `total` (at least 1 each), skewed like a real
/// service: weight `1 / (rank + 1)^0.9` in a shuffled order.
fn counts(stacks: usize, total: u64, rng: &mut Rng) -> Vec<i64> {
    let weights: Vec<f64> = (0..stacks).map(|r| 1.0 / ((r + 1) as f64).powf(0.9)).collect();
    let sum: f64 = weights.iter().sum();
    let spare = total - stacks as u64;
    let mut out: Vec<u64> = weights.iter().map(|w| 1 + (spare as f64 * w / sum) as u64).collect();
    let mut left = total - out.iter().sum::<u64>();
    let mut k = 0;
    while left > 0 {
        out[k % stacks] += 1;
        left -= 1;
        k += 1;
    }
    for i in (1..stacks).rev() {
        out.swap(i, rng.below(i as u64 + 1) as usize);
    }
    out.into_iter().map(|c| c as i64).collect()
}

/// A gzipped `profile.proto` goroutine profile, as `/debug/pprof/goroutine` serves it.
fn big_profile(args: &Args) -> anyhow::Result<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut strings: Vec<String> = vec![String::new()];
    let mut string_ids: HashMap<String, i64> = HashMap::new();
    let mut intern = |s: &str| -> i64 {
        if let Some(&id) = string_ids.get(s) {
            return id;
        }
        strings.push(s.to_string());
        let id = strings.len() as i64 - 1;
        string_ids.insert(s.to_string(), id);
        id
    };
    let mut functions: Vec<proto::Function> = Vec::new();
    let mut function_ids: HashMap<String, u64> = HashMap::new();
    let mut locations: Vec<proto::Location> = Vec::new();
    let mut location_ids: HashMap<(String, i64), u64> = HashMap::new();
    let sites = (args.stacks / 20).max(1);
    let counts = counts(args.stacks, args.goroutines, &mut rng);
    let mut samples = Vec::with_capacity(args.stacks);
    for (i, &count) in counts.iter().enumerate() {
        let mut location_id = Vec::new();
        for (function, file, line) in big_stack(i, sites, &mut rng) {
            let key = (function.clone(), line);
            let id = match location_ids.get(&key) {
                Some(&id) => id,
                None => {
                    let function_id = match function_ids.get(&function) {
                        Some(&id) => id,
                        None => {
                            let id = functions.len() as u64 + 1;
                            let name = intern(&function);
                            functions.push(proto::Function {
                                id,
                                name,
                                system_name: name,
                                filename: intern(&file),
                                start_line: line - 5,
                            });
                            function_ids.insert(function.clone(), id);
                            id
                        }
                    };
                    let id = locations.len() as u64 + 1;
                    locations.push(proto::Location {
                        id,
                        mapping_id: 1,
                        address: 0x40_0000 + id * 0x40,
                        line: vec![proto::Line { function_id, line, column: 0 }],
                        is_folded: false,
                    });
                    location_ids.insert(key, id);
                    id
                }
            };
            location_id.push(id);
        }
        samples.push(proto::Sample { location_id, value: vec![count], label: Vec::new() });
    }
    let goroutine = intern("goroutine");
    let count = intern("count");
    let binary = intern("/app/shop");
    let profile = proto::Profile {
        sample_type: vec![proto::ValueType { r#type: goroutine, unit: count }],
        sample: samples,
        mapping: vec![proto::Mapping {
            id: 1,
            memory_start: 0x40_0000,
            memory_limit: 0x4000_0000,
            filename: binary,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            ..Default::default()
        }],
        location: locations,
        function: functions,
        string_table: strings,
        time_nanos: 1_764_000_000_000_000_000,
        period_type: Some(proto::ValueType { r#type: goroutine, unit: count }),
        period: 1,
        ..Default::default()
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&profile.encode_to_vec())?;
    Ok(gz.finish()?)
}

/// Phase 2's snapshots: each site has two call paths (a 70/30 split); growing sites gain
/// 2–6 goroutines a minute, the others wander around a base with noise (some bursts).
fn trend_snapshots(args: &Args) -> Vec<Snapshot> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let frame = |function: String, line: u64| StackFrame { function, file: "/src/app.go".to_string(), line };
    let stacks: Vec<[Vec<StackFrame>; 2]> = (0..args.clusters)
        .map(|c| {
            let pkg = PACKAGES[c % PACKAGES.len()];
            let path = |p: usize| {
                let mut s: Vec<StackFrame> =
                    PARKING[c % PARKING.len()].iter().map(|f| frame(f.to_string(), 100)).collect();
                s.push(frame(format!("{pkg}.(*Worker{c}).wait"), 40));
                for d in 0..(4 + (c + p) % 8) {
                    s.push(frame(format!("{pkg}.path{p}.step{d}"), 10));
                }
                s.push(frame("runtime.goexit".to_string(), 1700));
                s
            };
            [path(0), path(1)]
        })
        .collect();
    let bases: Vec<u64> = (0..args.clusters).map(|_| 5 + rng.below(200)).collect();
    let slopes: Vec<f64> =
        (0..args.clusters).map(|c| if c < args.growing { 2.0 + (c % 5) as f64 } else { 0.0 }).collect();
    (0..args.snapshots)
        .map(|i| {
            let minutes = i as f64 * 0.25;
            let mut goroutines = Vec::with_capacity(2 * args.clusters);
            for (c, pair) in stacks.iter().enumerate() {
                let noise = rng.below(11) as f64 - 5.0;
                let burst = if rng.below(200) == 0 { 50.0 } else { 0.0 };
                let count = (bases[c] as f64 + slopes[c] * minutes + noise + burst).max(0.0) as u64;
                let first = count * 7 / 10;
                for (stack, n) in pair.iter().zip([first, count - first]) {
                    if n > 0 {
                        goroutines.push(GoroutineGroup { count: n, stack: stack.clone(), ..Default::default() });
                    }
                }
            }
            Snapshot { time_unix_nano: 1_764_000_000_000_000_000 + i as i64 * 15_000_000_000, goroutines }
        })
        .collect()
}

/// Resets the kernel's peak-RSS mark of this process (Linux ≥ 4.0); false when not allowed.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `VmHWM` of this process, in KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    status_kib("VmHWM:")
}

/// A `kB` field of `/proc/self/status` (`VmHWM:`, `VmRSS:`).
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let line =
        status.lines().find(|l| l.starts_with(field)).with_context(|| format!("no {field} in /proc/self/status"))?;
    line.split_whitespace()
        .nth(1)
        .with_context(|| format!("malformed {field}"))?
        .parse()
        .with_context(|| format!("malformed {field}"))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.goroutines >= args.stacks as u64, "--goroutines must be at least --stacks");
    ensure!(args.growing <= args.clusters, "--growing must be at most --clusters");
    let options = LeakOptions::default();
    let per_phase_peak = reset_peak_rss();
    if !per_phase_peak {
        eprintln!("note: /proc/self/clear_refs is not writable; peak RSS is the process's peak so far");
    }

    // Phase 1: one profile of a million goroutines.
    let bytes = big_profile(&args)?;
    reset_peak_rss();
    let start = Instant::now();
    let profile = pprof::decode(&bytes)?;
    let decoded = start.elapsed();
    if pprof::profile_name(&profile) != "goroutine" {
        bail!("the built profile is not recognised as a goroutine profile");
    }
    let snapshot = leaks::from_pprof(&profile);
    let converted = start.elapsed();
    let report = leaks::detect(std::slice::from_ref(&snapshot), &options);
    let total = start.elapsed();
    let peak = peak_rss_kib()?;
    let frames: usize = profile.samples.iter().map(|s| profile.stack(s).count()).sum();
    ensure!(report.totals == [args.goroutines], "the snapshot holds {:?} goroutines", report.totals);
    println!(
        "phase 1 profile: {} goroutines, {} stacks ({} frames), {} clusters; gzipped profile {} KiB",
        args.goroutines,
        profile.samples.len(),
        frames,
        report.clusters.len(),
        bytes.len() / 1024
    );
    println!(
        "phase 1 profile: wall {}  (decode {}, from_pprof {}, cluster+detect {})  peak RSS {} MiB",
        ms(total),
        ms(decoded),
        ms(converted - decoded),
        ms(total - converted),
        peak / 1024
    );
    drop((report, snapshot, profile, bytes));

    // Phase 2: the trend over many snapshots.
    let snapshots = trend_snapshots(&args);
    let inputs = status_kib("VmRSS:")?;
    reset_peak_rss();
    let start = Instant::now();
    let report = leaks::detect(&snapshots, &options);
    let total = start.elapsed();
    let peak = peak_rss_kib()?;
    // Where the time goes: clustering every snapshot (sharing decisions across the series, as
    // `detect` does), and the trend of every series alone.
    let start = Instant::now();
    let mut memo = leaks::cluster::ClusterMemo::default();
    for s in &snapshots {
        std::hint::black_box(leaks::cluster::cluster_with(s, &options, &mut memo));
    }
    let clustering = start.elapsed();
    let start = Instant::now();
    for c in &report.clusters {
        std::hint::black_box(leaks::trend::trend(&report.times_s, &c.counts).ok());
    }
    let trends = start.elapsed();
    let leaking: Vec<String> = report.findings.iter().map(|f| f.key.blocking_function.clone()).collect();
    println!(
        "phase 2 trend: {} snapshots x {} clusters ({} groups), {} leaks found ({} growing)",
        snapshots.len(),
        report.clusters.len(),
        snapshots.iter().map(|s| s.goroutines.len()).sum::<usize>(),
        leaking.len(),
        args.growing
    );
    println!(
        "phase 2 trend: wall {}  (of which clustering ~{}, trends ~{})  peak RSS {} MiB (the snapshots alone {} MiB)",
        ms(total),
        ms(clustering),
        ms(trends),
        peak / 1024,
        inputs / 1024
    );
    let expected: Vec<String> =
        (0..args.growing).map(|c| format!("{}.(*Worker{c}).wait", PACKAGES[c % PACKAGES.len()])).collect();
    let mut found = leaking.clone();
    found.sort();
    let mut want = expected;
    want.sort();
    if found != want {
        println!("warning: leaks found {found:?}, expected {want:?}");
    }
    println!("process peak RSS {} MiB", peak_rss_kib()? / 1024);
    Ok(())
}
