//! `slo-gate-spans`: writes a service's SERVER spans into a collector over OTLP/HTTP (protobuf),
//! for the `slo-gate check` benchmark (`bench/run-check-bench.sh`). Loopback only.
//!
//! Each version gets `--spans` spans spread over four routes, log-normal durations (median
//! 20–120 ms by route, sigma 0.4), eight hosts, 0.5% errors, start times over the last hour.
//! Deterministic: the same flags send the same spans.

use std::net::SocketAddr;

use anyhow::bail;
use bench::http1::{connect, post_retrying};
use bench::seeded::{kv, kv_int, next, uniform};
use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

#[derive(Debug, Parser)]
struct Args {
    /// The collector's OTLP/HTTP address.
    #[arg(long)]
    otlp_http: SocketAddr,
    /// `service.name`.
    #[arg(long, default_value = "bench-checkout")]
    service: String,
    /// Versions to write, comma-separated.
    #[arg(long, default_value = "1.0.0,1.1.0", value_delimiter = ',')]
    versions: Vec<String>,
    /// Spans per version.
    #[arg(long, default_value_t = 500_000)]
    spans: usize,
    /// Spans per request.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.otlp_http.ip().is_loopback() {
        bail!("--otlp-http must be a loopback address");
    }
    let mut stream = connect(args.otlp_http)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64;
    let routes = [("/api/checkout", 120.0), ("/api/cart", 30.0), ("/api/search", 60.0), ("/api/health", 2.0)];
    let mut state = 42u64;
    let mut sent = 0usize;
    for version in &args.versions {
        let mut left = args.spans;
        while left > 0 {
            let n = left.min(args.batch);
            left -= n;
            let spans: Vec<Span> = (0..n)
                .map(|_| {
                    let (route, median_ms) = routes[(next(&mut state) % 4) as usize];
                    let (u1, u2) = (uniform(&mut state).max(1e-12), uniform(&mut state));
                    let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                    let ms = median_ms * (0.4 * normal).exp();
                    let error = uniform(&mut state) < 0.005;
                    let start = now - (next(&mut state) % 3_600_000_000_000);
                    sent += 1;
                    Span {
                        trace_id: (sent as u128 + 1).to_be_bytes().to_vec(),
                        span_id: (sent as u64 + 1).to_be_bytes().to_vec(),
                        name: format!("GET {route}"),
                        kind: 2,
                        start_time_unix_nano: start,
                        end_time_unix_nano: start + (ms * 1e6) as u64,
                        attributes: vec![
                            kv("http.route", route),
                            kv("http.request.method", "GET"),
                            kv_int("http.response.status_code", if error { 503 } else { 200 }),
                            kv("host.name", &format!("node-{}", next(&mut state) % 8)),
                        ],
                        status: error.then(|| Status { code: 2, message: "failed".into() }),
                        ..Default::default()
                    }
                })
                .collect();
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", &args.service),
                            kv("service.version", version),
                            kv("deployment.environment.name", "bench"),
                        ],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                    ..Default::default()
                }],
            };
            // The collector refuses with 429 while it flushes a full head: retry after a pause.
            let body = request.encode_to_vec();
            post_retrying(&mut stream, args.otlp_http, "/v1/traces", "application/x-protobuf", &body)?;
        }
    }
    println!("sent {sent} spans");
    Ok(())
}
