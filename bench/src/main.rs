//! `slo-gate-load`: replays one pre-encoded OTLP trace export against an
//! OTLP/gRPC or OTLP/HTTP receiver on loopback, and reports throughput,
//! latency and, with `--pid`, the server's CPU time and memory.
//!
//! Design: the request is built and encoded once (`payload`), so the client
//! spends its CPU on sending, not on protobuf work; this matters on a 2-core
//! machine where the client and the server share the cores. N workers keep
//! one request in flight each on their own connection (`driver`), and the
//! server is measured from `/proc` before and after (`procfs`); "after" is
//! once its CPU has gone idle, so work deferred past the acknowledgement
//! (batching, flushing) is still charged to it. The run is bounded by
//! `--duration` (plus one `--timeout` and at most `--settle`) and
//! `--max-requests`. With `--tls-ca` every connection is TLS (mTLS with
//! `--tls-cert`/`--tls-key`), its handshake done before the timed window.
//! With `--fresh` every request carries new trace and span ids and times near
//! now, patched into a copy of the encoded request (`fresh`), so what a server
//! stores compresses as real traffic would.

mod driver;
mod fresh;
mod otlp_grpc;
mod otlp_http;
mod payload;
mod report;
mod target;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use tokio::time::Instant;

use crate::driver::Limits;
use crate::fresh::{Bodies, FreshBodies, Template};
use crate::report::{Report, RunInfo, ServerUsage};
use crate::target::{Target, parse_loopback};
use bench::procfs::{self, RssSampler};

/// Load generator for OTLP trace ingestion (loopback targets only).
#[derive(Debug, Parser)]
#[command(name = "slo-gate-load", version)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["grpc", "http"])))]
struct Args {
    /// OTLP/gRPC receiver to load, as IP:PORT on loopback (e.g. 127.0.0.1:4317)
    #[arg(long, value_name = "ADDR")]
    grpc: Option<String>,
    /// OTLP/HTTP receiver to load (POST /v1/traces, protobuf), as IP:PORT on loopback
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Spans in the one request that is replayed
    #[arg(long, default_value_t = 512)]
    spans_per_request: usize,
    /// Concurrent connections, each with one request in flight
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds to send for
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    duration: f64,
    /// Stop after this many requests, even before --duration
    #[arg(long)]
    max_requests: Option<u64>,
    /// Seconds before a request counts as failed
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    /// Runtime worker threads for the load generator itself
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed for the generated ids and attribute values
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fresh trace and span ids and timestamps near now in every request, unique across
    /// requests and connections (the default replays one request byte for byte)
    #[arg(long)]
    fresh: bool,
    /// Server process to measure (CPU time and memory from /proc/PID)
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds, at most, to wait after the load for the server's CPU to go
    /// idle; work it does after acknowledging still counts as its CPU time
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    settle: f64,
    /// Print one JSON object on stdout (the human line goes to stderr)
    #[arg(long)]
    json: bool,
    /// Connect over TLS, trusting the CA certificates of this PEM file
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS; needs --tls-key and --tls-ca
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Name the server's certificate must carry [default: the target's IP address]
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    let duration = Duration::try_from_secs_f64(value).with_context(|| format!("{flag} {value} is not a duration"))?;
    if duration.is_zero() {
        bail!("{flag} must be greater than 0");
    }
    Ok(duration)
}

fn target(args: &Args) -> anyhow::Result<Target> {
    match (&args.grpc, &args.http) {
        (Some(addr), None) => Ok(Target::Grpc(parse_loopback(addr).context("--grpc")?)),
        (None, Some(addr)) => Ok(Target::Http(parse_loopback(addr).context("--http")?)),
        _ => bail!("give exactly one of --grpc or --http"),
    }
}

/// The server's counters after the load and the settle time. The
/// client-side results are kept even if the server died mid-run.
fn measure_after(
    pid: u32,
    ticks: u64,
    before: procfs::Snapshot,
    settle: Duration,
    sampler: Option<RssSampler>,
) -> Option<ServerUsage> {
    let settled = procfs::wait_until_idle(pid, ticks, settle, Duration::from_millis(250), 0.05);
    let max_rss_kib = sampler.map(RssSampler::finish);
    let measured = settled.and_then(|settle| Ok((settle, procfs::snapshot(pid, ticks)?)));
    match measured {
        Ok((settle, after)) => Some(ServerUsage {
            pid,
            before,
            after,
            max_rss_kib: max_rss_kib.unwrap_or(after.rss_kib).max(after.rss_kib),
            settle_seconds: settle.as_secs_f64(),
        }),
        Err(err) => {
            eprintln!("warning: no server measurement after the run: {err:#}");
            None
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = target(&args)?;
    let duration = seconds(args.duration, "--duration")?;
    let timeout = seconds(args.timeout, "--timeout")?;
    let settle = Duration::try_from_secs_f64(args.settle)
        .with_context(|| format!("--settle {} is not a duration", args.settle))?;
    if args.connections == 0 || args.spans_per_request == 0 || args.threads == 0 {
        bail!("--connections, --spans-per-request and --threads must be at least 1");
    }

    let tls = match &args.tls_ca {
        None => None,
        Some(ca) => {
            let name = args.tls_server_name.clone().unwrap_or_else(|| target.addr().ip().to_string());
            let alpn: &[u8] = match target {
                Target::Grpc(_) => b"h2",
                Target::Http(_) => b"http/1.1",
            };
            let cert_and_key = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
            Some(tls::ClientTls::load(ca, cert_and_key, &name, alpn)?)
        }
    };

    let encoded_at = payload::now_unix_nano();
    let request = payload::build_request(args.spans_per_request, args.seed, encoded_at);
    let body = payload::encode(&request);
    drop(request);
    // Connection i of a fresh run sends the bodies of `bodies(i)`; the run's start time keys
    // the ids, so two runs against one server do not repeat each other's.
    let template = match args.fresh {
        true => {
            let template = Template::new(body.clone(), encoded_at).context("preparing --fresh")?;
            anyhow::ensure!(template.spans() == args.spans_per_request, "--fresh found {} spans", template.spans());
            Some(Arc::new(template))
        }
        false => None,
    };
    let bodies = |connection: usize| match &template {
        Some(template) => {
            Bodies::Fresh(Box::new(FreshBodies::new(Arc::clone(template), connection as u64, encoded_at ^ args.seed)))
        }
        None => Bodies::Replay(body.clone()),
    };
    // The compressed size of a request like those sent (one past the last connection, so
    // it is none of the requests sent).
    let request_gzip_bytes = fresh::gzip_len(&bodies(args.connections).next_body())?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ticks = procfs::clock_ticks_per_second();
    let self_pid = std::process::id();

    let server_before = args.pid.map(|pid| procfs::snapshot(pid, ticks)).transpose()?;
    let sampler = args.pid.map(|pid| RssSampler::start(pid, Duration::from_millis(100)));
    let (tally, wall, client_cpu) = runtime.block_on(async {
        let senders = driver::connect_all(target, bodies, args.connections, timeout, tls.as_ref()).await?;
        let client_before = procfs::snapshot(self_pid, ticks).ok();
        let started = Instant::now();
        let limits = Limits { deadline: started + duration, timeout, max_requests: args.max_requests };
        let tally = driver::run(senders, limits).await?;
        let wall = started.elapsed().as_secs_f64();
        let client_cpu = client_before
            .zip(procfs::snapshot(self_pid, ticks).ok())
            .map(|(before, after)| after.cpu_seconds - before.cpu_seconds);
        anyhow::Ok((tally, wall, client_cpu))
    })?;
    drop(runtime);

    let server = match (args.pid, server_before) {
        (Some(pid), Some(before)) => measure_after(pid, ticks, before, settle, sampler),
        _ => None,
    };
    let info = RunInfo {
        target: target.to_string(),
        transport: match (target, tls.is_some()) {
            (_, false) => target.transport(),
            (Target::Grpc(_), true) => "grpc+tls",
            (Target::Http(_), true) => "http+tls",
        },
        connections: args.connections,
        spans_per_request: args.spans_per_request,
        ids: if args.fresh { "fresh" } else { "replay" },
        request_bytes: body.len(),
        request_gzip_bytes,
    };
    let report = Report::new(info, tally, wall, client_cpu, server);
    if args.json {
        eprintln!("{report}");
        println!("{}", serde_json::to_string(&report).context("serializing the report")?);
    } else {
        println!("{report}");
    }
    if report.requests_ok == 0 {
        bail!("no request was accepted");
    }
    Ok(())
}
