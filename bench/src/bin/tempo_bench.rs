//! `slo-gate-tempo-bench`: the Tempo API benchmark (`bench/run-tempo-bench.sh`). Writes
//! `--traces` traces of `--spans-per-trace` spans over `--services` services, spread over the
//! last hour, to a running `slo-gate serve` over OTLP/HTTP (protobuf), waits until they are
//! stored, then times Grafana's requests over HTTP: trace by id (`/api/v2/traces/<id>`,
//! `Accept: application/protobuf`) and TraceQL searches with `limit=20` over the hour, and
//! reports p50/p95 and the server's resident memory from `/proc/<pid>/status`. Loopback only.
//!
//! The data is deterministic (SplitMix64, fixed seed): trace `i` starts at `i/traces` of the
//! hour; its root is a SERVER span of service `svc-(i % services)`; every other span has a
//! random earlier parent, a random service, kind SERVER (30%, with `http.route` `/r0`..`/r9`),
//! CLIENT or INTERNAL, and a log-normal duration (median 20 ms, sigma 1.2: about 0.4% of spans
//! last over 500 ms).

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::bail;
use bench::http1::{connect, get, hex, memory, post_retrying, report, url_encode};
use bench::seeded::{kv, kv_int, next, uniform};
use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

#[derive(Debug, Parser)]
struct Args {
    /// The collector's OTLP/HTTP address.
    #[arg(long)]
    otlp_http: SocketAddr,
    /// The collector's API address.
    #[arg(long)]
    api: SocketAddr,
    /// The collector's process id, for its memory.
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value_t = 100_000)]
    traces: usize,
    #[arg(long, default_value_t = 100)]
    spans_per_trace: usize,
    #[arg(long, default_value_t = 20)]
    services: usize,
    /// Traces per OTLP request.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 2)]
    writers: usize,
    /// Timed runs per query.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Skip writing (the store already holds the data of the same flags).
    #[arg(long)]
    no_write: bool,
}

/// Trace `i`'s id.
fn trace_id(i: usize) -> [u8; 16] {
    let mut s = 0x7e57_u64 ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let (a, b) = (next(&mut s), next(&mut s));
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&a.to_be_bytes());
    id[8..].copy_from_slice(&b.to_be_bytes());
    id
}

/// The OTLP request holding traces `first..first+n`.
fn request(args: &Args, hour_start: u64, first: usize, n: usize) -> ExportTraceServiceRequest {
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); args.services];
    for i in first..(first + n).min(args.traces) {
        let mut state = i as u64 ^ 0x5eed;
        let start = hour_start + (i as u64 * 3_600_000_000_000) / args.traces as u64;
        let mut starts = Vec::with_capacity(args.spans_per_trace);
        for j in 0..args.spans_per_trace {
            let (u1, u2) = (uniform(&mut state).max(1e-12), uniform(&mut state));
            let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let mut ms = 20.0 * (1.2 * normal).exp();
            let (service, parent, kind) = if j == 0 {
                ms = ms.max(100.0) * 3.0;
                (i % args.services, None, 2)
            } else {
                let parent = (next(&mut state) % j as u64) as usize;
                let kind = match next(&mut state) % 10 {
                    0..=2 => 2,
                    3..=6 => 3,
                    _ => 1,
                };
                ((next(&mut state) % args.services as u64) as usize, Some(parent), kind)
            };
            let span_start = match parent {
                Some(p) => starts[p] + next(&mut state) % 5_000_000,
                None => start,
            };
            starts.push(span_start);
            let route = format!("/r{}", next(&mut state) % 10);
            let mut attributes = vec![kv_int("http.response.status_code", 200)];
            if kind == 2 {
                attributes.push(kv("http.route", &route));
            }
            let span_id = ((i as u64) << 16 | j as u64).wrapping_add(1).to_be_bytes().to_vec();
            by_service[service].push(Span {
                trace_id: trace_id(i).to_vec(),
                span_id,
                parent_span_id: parent
                    .map(|p| ((i as u64) << 16 | p as u64).wrapping_add(1).to_be_bytes().to_vec())
                    .unwrap_or_default(),
                name: if kind == 2 { format!("GET {route}") } else { format!("op-{}", j % 7) },
                kind,
                start_time_unix_nano: span_start,
                end_time_unix_nano: span_start + (ms * 1e6) as u64,
                attributes,
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .enumerate()
            .filter(|(_, spans)| !spans.is_empty())
            .map(|(s, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &format!("svc-{s}")), kv("service.version", "1.0.0")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            })
            .collect(),
    }
}

fn write(args: &Args, hour_start: u64) -> anyhow::Result<()> {
    let batches: Vec<usize> = (0..args.traces).step_by(args.batch).collect();
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..args.writers)
            .map(|w| {
                let mine: Vec<usize> = batches.iter().copied().skip(w).step_by(args.writers).collect();
                scope.spawn(move || -> anyhow::Result<()> {
                    let mut stream = connect(args.otlp_http)?;
                    for first in mine {
                        let body = request(args, hour_start, first, args.batch).encode_to_vec();
                        // 429/503 while the head is flushed: backed off and retried.
                        post_retrying(&mut stream, args.otlp_http, "/v1/traces", "application/x-protobuf", &body)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        Ok(())
    })?;
    let spans = args.traces * args.spans_per_trace;
    let secs = started.elapsed().as_secs_f64();
    println!("wrote {spans} spans in {secs:.1} s ({:.0} spans/s)", spans as f64 / secs);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.otlp_http.ip().is_loopback() || !args.api.ip().is_loopback() {
        bail!("--otlp-http and --api must be loopback addresses");
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64;
    let hour_start = (now - 3_600_000_000_000) / 1_000_000_000 * 1_000_000_000;
    if !args.no_write {
        write(&args, hour_start)?;
    }
    let total = (args.traces * args.spans_per_trace) as u64;
    let mut api = connect(args.api)?;
    for _ in 0..1200 {
        let (_, body, _) = get(&mut api, args.api, "/api/v1/stats", "application/json")?;
        let stats: serde_json::Value = serde_json::from_slice(&body)?;
        if stats["signals"]["traces"]["items"].as_u64().unwrap_or(0) >= total {
            println!("stored: {}", stats["signals"]["traces"]);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("after writing: {}", memory(args.pid));

    // Trace by id, as Grafana asks for it: distinct ids, then the same ids again; once more
    // after the searches, which build the parts' span indexes.
    lookups(&args, &mut api, "first lookup of each id")?;
    lookups(&args, &mut api, "same ids again")?;

    // Searches over the hour, warm: one untimed run first.
    let (start, end) = (hour_start / 1_000_000_000, hour_start / 1_000_000_000 + 3600);
    for q in [
        r#"{resource.service.name="svc-3" && span.http.route="/r3" && duration > 500ms}"#,
        r#"{resource.service.name="svc-3" && duration > 500ms}"#,
        "{}",
        r#"{resource.service.name="svc-3"} > {span.http.route="/r3" && duration > 500ms}"#,
    ] {
        let path = format!("/api/search?q={}&limit=20&spss=3&start={start}&end={end}", url_encode(q));
        let (status, body, took) = get(&mut api, args.api, &path, "application/json")?;
        if status != 200 {
            println!(
                "search {q:<52} answered {status} after {:.1} s: {}",
                took.as_secs_f64(),
                String::from_utf8_lossy(&body).trim()
            );
            continue;
        }
        let answer: serde_json::Value = serde_json::from_slice(&body)?;
        let found = answer["traces"].as_array().map_or(0, Vec::len);
        let mut times = Vec::new();
        for _ in 0..args.runs {
            times.push(get(&mut api, args.api, &path, "application/json")?.2);
        }
        report(&format!("search {q}"), times, &format!("{found} traces; metrics {}", answer["metrics"]));
        println!("    {}", memory(args.pid));
    }
    lookups(&args, &mut api, "same ids, parts indexed by the searches")?;

    // Autocomplete: tag names and service values over the hour.
    for path in [
        format!("/api/v2/search/tags?start={start}&end={end}"),
        format!("/api/v2/search/tag/resource.service.name/values?start={start}&end={end}"),
        format!("/api/v2/search/tag/span.http.route/values?start={start}&end={end}"),
    ] {
        let (status, body, _) = get(&mut api, args.api, &path, "application/json")?;
        if status != 200 {
            println!("{path} answered {status}: {}", String::from_utf8_lossy(&body).trim());
            continue;
        }
        let mut times = Vec::new();
        for _ in 0..args.runs.min(5) {
            times.push(get(&mut api, args.api, &path, "application/json")?.2);
        }
        report(&format!("GET {}", path.split('?').next().unwrap_or(&path)), times, &format!("{} bytes", body.len()));
    }
    println!("after queries: {}", memory(args.pid));
    Ok(())
}

/// Times trace-by-id lookups of 50 (or `--runs`) ids drawn with a fixed seed.
fn lookups(args: &Args, api: &mut TcpStream, pass: &str) -> anyhow::Result<()> {
    let mut state = 99u64;
    let mut times = Vec::new();
    for _ in 0..args.runs.max(50) {
        let i = (next(&mut state) % args.traces as u64) as usize;
        let (status, body, t) =
            get(api, args.api, &format!("/api/v2/traces/{}", hex(&trace_id(i))), "application/protobuf")?;
        if status != 200 {
            bail!("trace {i}: {status} {}", String::from_utf8_lossy(&body));
        }
        times.push(t);
    }
    report(&format!("GET /api/v2/traces/<id> protobuf, {pass}"), times, "");
    println!("    {}", memory(args.pid));
    Ok(())
}
