//! `slo-gate-read-bench`: whether a narrow read costs what it selects or what is stored
//! (`bench/run-read-bench.sh`). Writes `--days` days of closed hours to a running
//! `slo-gate serve` — every hour `--spans-per-hour` spans (traces of 10 spans over `--services`
//! services) over OTLP/HTTP, a gauge of `--series` series with one point a minute over
//! OTLP/HTTP, and a CPU profile per service every 15 minutes (a copy of a real pprof file with
//! its time set) through Pyroscope's `/ingest` — waits until all of it is in Parquet parts and
//! compaction has settled, then times, over the last closed hour, the reads Grafana and
//! `slo-gate check` make: trace by id (Tempo), TraceQL searches (one service's route, and `{}`
//! as Grafana's search sends it by default), `/api/v1/metrics/points`,
//! PromQL `query_range`, and the flame graph of one service. Run with 1 and with 7 days, the
//! times should be the same: every read is pruned to the hour it asks for. Loopback only.
//!
//! The data is deterministic (SplitMix64 from a fixed seed and the hour).

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use analyzer::pprof::proto;
use anyhow::{Context, bail};
use bench::http1::{connect, get, hex, memory, post_retrying, report, url_encode};
use bench::pprof_file::read_profile;
use bench::seeded::{kv, kv_int, next};
use clap::Parser;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

#[derive(Debug, Clone, Parser)]
struct Args {
    /// The collector's OTLP/HTTP address.
    #[arg(long)]
    otlp_http: SocketAddr,
    /// The collector's API address (Pyroscope ingest and every query).
    #[arg(long)]
    api: SocketAddr,
    /// The collector's process id, for its memory.
    #[arg(long)]
    pid: u32,
    /// Days of closed hours to store before the reads.
    #[arg(long, default_value_t = 1)]
    days: u64,
    #[arg(long, default_value_t = 20_000)]
    spans_per_hour: usize,
    #[arg(long, default_value_t = 4)]
    services: usize,
    /// Series of the gauge (one point a minute each).
    #[arg(long, default_value_t = 20)]
    series: usize,
    /// A real pprof CPU profile (gzipped or not) to push, one copy per service every 15 min.
    #[arg(long)]
    profile: PathBuf,
    /// Timed runs per read.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Time the reads on this collector's API instead (one sharing a bucket with the one
    /// written to, `[storage.bucket]`): it is waited for until it lists everything written.
    #[arg(long, requires = "read_pid")]
    read_api: Option<SocketAddr>,
    /// The process id of the `--read-api` collector.
    #[arg(long)]
    read_pid: Option<u32>,
}

const SPANS_PER_TRACE: usize = 10;
const TRACES_PER_REQUEST: usize = 100;
const GAUGE: &str = "bench_queue_depth";
const PROFILES_PER_HOUR: u64 = 4;
const HOUR_NS: u64 = 3_600_000_000_000;

/// The id of trace `i` of the hour starting at `hour_ns`.
fn trace_id(hour_ns: u64, i: usize) -> [u8; 16] {
    let mut s = hour_ns ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next(&mut s).to_be_bytes());
    id[8..].copy_from_slice(&next(&mut s).to_be_bytes());
    id
}

fn resource(service: usize) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", &format!("svc-{service}")), kv("service.version", "1.0.0")],
        ..Default::default()
    })
}

/// Traces `first..first + n` of the hour at `hour_ns`: a SERVER root and nine children, each
/// trace in one service, spread evenly over the hour.
fn spans(args: &Args, hour_ns: u64, first: usize, n: usize) -> ExportTraceServiceRequest {
    let traces = args.spans_per_hour / SPANS_PER_TRACE;
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); args.services];
    for i in first..(first + n).min(traces) {
        let mut state = hour_ns ^ i as u64;
        let start = hour_ns + i as u64 * (HOUR_NS / traces as u64);
        let id = trace_id(hour_ns, i);
        let span_id = |j: usize| {
            let mut s = hour_ns ^ ((i as u64) << 8 | j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (next(&mut s) | 1).to_be_bytes().to_vec()
        };
        let root = span_id(0);
        for j in 0..SPANS_PER_TRACE {
            let took = 1_000_000 + next(&mut state) % 200_000_000;
            let route = format!("/r{}", next(&mut state) % 10);
            by_service[i % args.services].push(Span {
                trace_id: id.to_vec(),
                span_id: span_id(j),
                parent_span_id: if j == 0 { Vec::new() } else { root.clone() },
                name: if j == 0 { format!("GET {route}") } else { format!("op-{}", j % 7) },
                kind: if j == 0 { 2 } else { 1 },
                start_time_unix_nano: start + j as u64 * 1_000,
                end_time_unix_nano: start + j as u64 * 1_000 + took,
                attributes: vec![kv("http.route", &route), kv_int("http.response.status_code", 200)],
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(s, spans)| ResourceSpans {
                resource: resource(s),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            })
            .collect(),
    }
}

/// The gauge's points of the hour at `hour_ns`: one a minute for each series.
fn gauge(args: &Args, hour_ns: u64) -> ExportMetricsServiceRequest {
    let resource_metrics = (0..args.services)
        .map(|service| {
            let data_points = (0..args.series)
                .filter(|s| s % args.services == service)
                .flat_map(|s| {
                    (0..60u64).map(move |minute| NumberDataPoint {
                        attributes: vec![kv("instance", &format!("i-{s}"))],
                        time_unix_nano: hour_ns + minute * 60_000_000_000,
                        value: Some(number_data_point::Value::AsDouble(((hour_ns / HOUR_NS + minute) % 97) as f64)),
                        ..Default::default()
                    })
                })
                .collect();
            ResourceMetrics {
                resource: resource(service),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: GAUGE.into(),
                        data: Some(metric::Data::Gauge(Gauge { data_points })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

/// Writes the hours `first_hour_ns + k * HOUR_NS` for every `k` of `hours`.
fn write_hours(
    args: &Args,
    profile: &proto::Profile,
    first_hour_ns: u64,
    hours: impl Iterator<Item = u64>,
) -> anyhow::Result<()> {
    let mut otlp = connect(args.otlp_http)?;
    let mut api = connect(args.api)?;
    let traces = args.spans_per_hour / SPANS_PER_TRACE;
    for k in hours {
        let hour_ns = first_hour_ns + k * HOUR_NS;
        for first in (0..traces).step_by(TRACES_PER_REQUEST) {
            let body = spans(args, hour_ns, first, TRACES_PER_REQUEST).encode_to_vec();
            post_retrying(&mut otlp, args.otlp_http, "/v1/traces", "application/x-protobuf", &body)?;
        }
        let body = gauge(args, hour_ns).encode_to_vec();
        post_retrying(&mut otlp, args.otlp_http, "/v1/metrics", "application/x-protobuf", &body)?;
        for service in 0..args.services {
            for p in 0..PROFILES_PER_HOUR {
                let at = hour_ns + p * (HOUR_NS / PROFILES_PER_HOUR) + service as u64 * 1_000_000_000;
                let mut copy = profile.clone();
                copy.time_nanos = i64::try_from(at)?;
                let from = at / 1_000_000_000;
                let path = format!("/ingest?name=svc-{service}.cpu&from={from}&until={}&format=pprof", from + 10);
                post_retrying(&mut api, args.api, &path, "application/octet-stream", &copy.encode_to_vec())?;
            }
        }
    }
    Ok(())
}

fn stats(api: &mut TcpStream, addr: SocketAddr) -> anyhow::Result<serde_json::Value> {
    let (status, body, _) = get(api, addr, "/api/v1/stats", "application/json")?;
    if status != 200 {
        bail!("/api/v1/stats answered {status}");
    }
    Ok(serde_json::from_slice::<serde_json::Value>(&body)?["signals"].take())
}

/// The value of an unlabelled series of the collector's `/metrics`.
fn telemetry(api: &mut TcpStream, addr: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let (_, body, _) = get(api, addr, "/metrics", "text/plain")?;
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .with_context(|| format!("no {name} in /metrics"))
}

fn ms(t: Duration) -> f64 {
    t.as_secs_f64() * 1e3
}

/// Times `runs` calls of `path` after one first call (reported apart: the one that reads cold
/// parts), whose answer `check` describes.
fn time(
    args: &Args,
    api: &mut TcpStream,
    label: &str,
    path: &str,
    accept: &str,
    check: impl Fn(&[u8]) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let (status, body, first) = get(api, args.api, path, accept)?;
    if status != 200 {
        bail!("{label}: {path} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    let what = format!("{}; first call {:.1} ms", check(&body).with_context(|| format!("{label}: {path}"))?, ms(first));
    let mut times = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        times.push(get(api, args.api, path, accept)?.2);
    }
    report(label, times, &what);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.otlp_http.ip().is_loopback() || !args.api.ip().is_loopback() {
        bail!("--otlp-http and --api must be loopback addresses");
    }
    if args.days == 0 || args.services == 0 || args.spans_per_hour < SPANS_PER_TRACE {
        bail!("--days, --services and --spans-per-hour (at least {SPANS_PER_TRACE}) must be positive");
    }
    let profile = read_profile(&args.profile)?;
    // Closed hours only, ending at the current hour's start: compaction takes closed hours.
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let end_ns = now_ns / HOUR_NS * HOUR_NS;
    let hours = args.days * 24;
    let first_hour_ns = end_ns - hours * HOUR_NS;

    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let (args, profile) = (&args, &profile);
                scope.spawn(move || write_hours(args, profile, first_hour_ns, (w..hours).step_by(2)))
            })
            .collect();
        for w in writers {
            w.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        Ok(())
    })?;
    let total_spans = (args.spans_per_hour / SPANS_PER_TRACE * SPANS_PER_TRACE) as u64 * hours;
    println!(
        "wrote {} days: {total_spans} spans, {} gauge points, {} CPU profiles in {:.1} s",
        args.days,
        args.series as u64 * 60 * hours,
        args.services as u64 * PROFILES_PER_HOUR * hours,
        started.elapsed().as_secs_f64()
    );

    // Everything in parts, and compaction settled: no merge for 15 s (three passes). The part
    // count itself keeps moving: span metrics are flushed into the current hour every 5 s.
    let mut api = connect(args.api)?;
    let waited = Instant::now();
    let (mut merges, mut since) = (-1.0, Instant::now());
    loop {
        if waited.elapsed() > Duration::from_secs(1800) {
            bail!("the store did not settle within 30 minutes: {}", stats(&mut api, args.api)?);
        }
        std::thread::sleep(Duration::from_secs(1));
        let s = stats(&mut api, args.api)?;
        let stored = s["traces"]["items"].as_u64().unwrap_or(0) >= total_spans;
        let flushed = ["traces", "profiles"].iter().all(|k| s[k]["in_head"].as_u64() == Some(0));
        if !(stored && flushed) {
            since = Instant::now();
            continue;
        }
        let now = telemetry(&mut api, args.api, "slo_gate_compactions_total")?;
        if now != merges {
            (merges, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_secs(15) {
            break;
        }
    }
    // And the server idle (under 5% of a core over 2 s), so no work left from the ingest
    // shares the two cores with the timed reads.
    let ticks = bench::procfs::clock_ticks_per_second();
    bench::procfs::wait_until_idle(args.pid, ticks, Duration::from_secs(600), Duration::from_secs(2), 0.05)?;
    let parts = telemetry(&mut api, args.api, "slo_gate_parts")?;
    println!(
        "stored, compacted and idle after {:.1} s more: {parts} parts, {merges} compactions; {}",
        waited.elapsed().as_secs_f64(),
        memory(args.pid)
    );

    // Reads timed first on another collector sharing the bucket, once it lists every item the
    // written one holds and is idle (its first calls fetch parts from the bucket), then on the
    // written one.
    if let (Some(read_api), Some(read_pid)) = (args.read_api, args.read_pid) {
        if !read_api.ip().is_loopback() {
            bail!("--read-api must be a loopback address");
        }
        let written = stats(&mut api, args.api)?;
        let mut reader = connect(read_api)?;
        let waited = Instant::now();
        loop {
            let listed = stats(&mut reader, read_api)?;
            if ["traces", "metrics", "profiles"].iter().all(|k| listed[k]["items"] == written[k]["items"]) {
                break;
            }
            if waited.elapsed() > Duration::from_secs(600) {
                bail!("the reader did not list what was written within 10 minutes: {listed} against {written}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bench::procfs::wait_until_idle(read_pid, ticks, Duration::from_secs(600), Duration::from_secs(2), 0.05)?;
        println!(
            "reads on the reader (--read-api), which listed it all {:.1} s after the store settled; first calls fetch from the bucket",
            waited.elapsed().as_secs_f64()
        );
        let reader_args = Args { api: read_api, pid: read_pid, read_api: None, read_pid: None, ..args.clone() };
        reads(&reader_args, &mut reader, end_ns)?;
        println!("reads on the collector written to (its own disk):");
    }
    reads(&args, &mut api, end_ns)
}

/// Times each read over the last hour before `end_ns` on `args.api`.
fn reads(args: &Args, api: &mut TcpStream, end_ns: u64) -> anyhow::Result<()> {
    let hour_ns = end_ns - HOUR_NS;
    let (from, to) = (hour_ns / 1_000_000_000, end_ns / 1_000_000_000 - 1);
    let traces = args.spans_per_hour / SPANS_PER_TRACE;

    // Trace by id: 50 distinct ids of the hour, each asked twice.
    let mut state = 7u64;
    let mut times = Vec::new();
    let mut first = None;
    for _ in 0..args.runs.max(50) {
        let id = hex(&trace_id(hour_ns, (next(&mut state) % traces as u64) as usize));
        for _ in 0..2 {
            let (status, body, t) = get(api, args.api, &format!("/api/v2/traces/{id}"), "application/protobuf")?;
            if status != 200 {
                bail!("trace {id}: {status} {}", String::from_utf8_lossy(&body));
            }
            first.get_or_insert(t);
            times.push(t);
        }
    }
    let first = format!("first call {:.1} ms", first.map_or(0.0, ms));
    report("trace by id (Tempo /api/v2/traces/<id>)", times, &first);

    let q = url_encode(r#"{resource.service.name="svc-1" && span.http.route="/r3"}"#);
    time(
        args,
        api,
        "TraceQL search, one service, last hour (limit 20)",
        &format!("/api/search?q={q}&limit=20&start={from}&end={to}"),
        "application/json",
        |b| {
            let found = serde_json::from_slice::<serde_json::Value>(b)?["traces"].as_array().map_or(0, Vec::len);
            if found == 0 {
                bail!("no traces found");
            }
            Ok(format!("{found} traces"))
        },
    )?;
    // What Grafana's Tempo search sends by default: every span, the newest 20 traces. A part
    // is read newest first and no further than those need.
    time(
        args,
        api,
        "TraceQL search, every span, last hour (limit 20)",
        &format!("/api/search?q={}&limit=20&start={from}&end={to}", url_encode("{}")),
        "application/json",
        |b| {
            let found = serde_json::from_slice::<serde_json::Value>(b)?["traces"].as_array().map_or(0, Vec::len);
            if found != 20 {
                bail!("{found} traces, expected 20");
            }
            Ok(format!("{found} traces"))
        },
    )?;
    let points_expected = args.series * 60;
    time(
        args,
        api,
        "metric points, last hour (/api/v1/metrics/points)",
        &format!("/api/v1/metrics/points?name={GAUGE}&from={from}&to={to}&limit=100000"),
        "application/json",
        |b| {
            let v: serde_json::Value = serde_json::from_slice(b)?;
            let n = v["points"].as_array().or(v.as_array()).map_or(0, Vec::len);
            if n != points_expected {
                bail!("{n} points, expected {points_expected}");
            }
            Ok(format!("{n} points"))
        },
    )?;
    time(
        args,
        api,
        "PromQL query_range, last hour, step 60 s",
        &format!("/api/v1/query_range?query={}&start={from}&end={to}&step=60", url_encode(&format!("sum({GAUGE})"))),
        "application/json",
        |b| {
            let v: serde_json::Value = serde_json::from_slice(b)?;
            let n = v["data"]["result"][0]["values"].as_array().map_or(0, Vec::len);
            if n == 0 {
                bail!("no values: {v}");
            }
            Ok(format!("{n} values"))
        },
    )?;
    let (_, body, _) = get(api, args.api, "/api/v1/profile-types", "application/json")?;
    let types: serde_json::Value = serde_json::from_slice(&body)?;
    let cpu = types["profile_types"]
        .as_array()
        .and_then(|t| t.iter().find_map(|t| t["id"].as_str().filter(|id| id.contains("cpu"))))
        .with_context(|| format!("no CPU profile type: {types}"))?
        .to_string();
    time(
        args,
        api,
        "flame graph, one service, last hour (/api/v1/flamegraph)",
        &format!(
            "/api/v1/flamegraph?type={}&selector={}&from={from}&to={to}",
            url_encode(&cpu),
            url_encode(r#"{service_name="svc-1"}"#)
        ),
        "application/json",
        |b| {
            let v: serde_json::Value = serde_json::from_slice(b)?;
            let total = v["value"].as_f64().unwrap_or(0.0);
            if total <= 0.0 {
                bail!("empty flame graph");
            }
            Ok(format!("total {total:.3e}"))
        },
    )?;
    println!("after the reads: {}", memory(args.pid));
    Ok(())
}
