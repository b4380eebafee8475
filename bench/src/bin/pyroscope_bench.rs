//! Pyroscope query benchmark (issue 13): `slo-gate-pyroscope-bench` pushes CPU profiles of
//! `--services` services every `--interval` over `--hours` (default 20 services × 2 h, one
//! profile per service every 50 s = 2,880 profiles, each a copy of one of the given real pprof files — the go-dev corpus' 10 s CPU
//! profiles — with its time set and every sample's value redrawn between 50% and 150%) to a
//! running `slo-gate serve` through Pyroscope's `PusherService/Push`, then times the Connect
//! calls Grafana makes: `SelectMergeStacktraces` for one service over the last hour and
//! `SelectSeries` at 15 s steps (one service over the last hour, and every service grouped by
//! `service_name` over both hours), reporting p50 and p95 of `--runs` calls each.
//! `--phase query` skips the push (to time again once the head was flushed to parts);
//! `bench/run-pyroscope-bench.sh` runs both phases against a fresh collector.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use analyzer::pprof::proto;
use anyhow::{Context, bail};
use bench::pprof_file::read_profile;
use bench::seeded::{Rng, percentile};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::Request;
use http::header::{CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prost::Message;

#[derive(Parser)]
#[command(about = "Pyroscope query API benchmark against a running slo-gate serve")]
struct Cli {
    /// The collector's API address (`--api` of `slo-gate serve`).
    #[arg(long)]
    api: SocketAddr,
    #[arg(long, value_enum, default_value_t = Phase::All)]
    phase: Phase,
    #[arg(long, default_value_t = 20)]
    services: usize,
    #[arg(long, default_value_t = 2)]
    hours: u64,
    /// Seconds between two profiles of one service.
    #[arg(long, default_value_t = 50)]
    interval: u64,
    /// Timed calls per query.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Where the profiles end (unix seconds); default now, rounded down to the interval. Pass the
    /// same value to `--phase query` as to the push.
    #[arg(long)]
    end: Option<u64>,
    /// Real gzipped pprof CPU profiles to draw from.
    #[arg(required = true)]
    from: Vec<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    /// Push, then query.
    All,
    Push,
    Query,
}

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

// ---- the wire messages used (Pyroscope's push.v1 / querier.v1 field numbers) -----------------

#[derive(Clone, PartialEq, Message)]
struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    series: Vec<RawProfileSeries>,
}

#[derive(Clone, PartialEq, Message)]
struct RawProfileSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<RawSample>,
}

#[derive(Clone, PartialEq, Message)]
struct RawSample {
    #[prost(bytes = "vec", tag = "1")]
    raw_profile: Vec<u8>,
    #[prost(string, tag = "2")]
    id: String,
}

#[derive(Clone, PartialEq, Message)]
struct LabelPair {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct SelectMergeStacktracesRequest {
    #[prost(string, tag = "1")]
    profile_type_id: String,
    #[prost(string, tag = "2")]
    label_selector: String,
    #[prost(int64, tag = "3")]
    start: i64,
    #[prost(int64, tag = "4")]
    end: i64,
    #[prost(int64, optional, tag = "5")]
    max_nodes: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct SelectMergeStacktracesResponse {
    #[prost(message, optional, tag = "1")]
    flamegraph: Option<FlameGraph>,
}

#[derive(Clone, PartialEq, Message)]
struct FlameGraph {
    #[prost(string, repeated, tag = "1")]
    names: Vec<String>,
    #[prost(int64, tag = "3")]
    total: i64,
}

#[derive(Clone, PartialEq, Message)]
struct SelectSeriesRequest {
    #[prost(string, tag = "1")]
    profile_type_id: String,
    #[prost(string, tag = "2")]
    label_selector: String,
    #[prost(int64, tag = "3")]
    start: i64,
    #[prost(int64, tag = "4")]
    end: i64,
    #[prost(string, repeated, tag = "5")]
    group_by: Vec<String>,
    #[prost(double, tag = "6")]
    step: f64,
}

#[derive(Clone, PartialEq, Message)]
struct SelectSeriesResponse {
    #[prost(message, repeated, tag = "1")]
    series: Vec<Series>,
}

#[derive(Clone, PartialEq, Message)]
struct Series {
    #[prost(message, repeated, tag = "2")]
    points: Vec<Point>,
}

#[derive(Clone, PartialEq, Message)]
struct Point {
    #[prost(double, tag = "1")]
    value: f64,
}

// ---- HTTP ------------------------------------------------------------------------------------

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

    async fn post(&mut self, path: &str, body: Vec<u8>) -> anyhow::Result<Bytes> {
        if self.sender.is_closed() {
            *self = Client::connect(self.addr).await?;
        }
        self.sender.ready().await?;
        let request = Request::post(path)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/proto")
            .body(Full::new(Bytes::from(body)))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }
}

// ---- profiles --------------------------------------------------------------------------------

async fn time_calls(
    client: &mut Client,
    name: &str,
    path: &str,
    body: Vec<u8>,
    runs: usize,
    check: impl Fn(&Bytes) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    // The first call is timed apart (nothing of the range decoded yet); its answer is checked.
    let started = Instant::now();
    let first = client.post(path, body.clone()).await?;
    let cold = started.elapsed();
    let what = check(&first)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        client.post(path, body.clone()).await?;
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "{name:<58} first {:>8.1} ms  then p50 {:>8.1} ms  p95 {:>8.1} ms  max {:>8.1} ms  ({what})",
        cold.as_secs_f64() * 1e3,
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.95).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let interval = cli.interval.max(1);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let end = cli.end.unwrap_or(now / interval * interval);
    let start = end - cli.hours * 3600;
    let mut client = Client::connect(cli.api).await?;

    if cli.phase != Phase::Query {
        let sources: Vec<proto::Profile> = cli.from.iter().map(|p| read_profile(p)).collect::<anyhow::Result<_>>()?;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let started = Instant::now();
        let (mut count, mut bytes) = (0usize, 0usize);
        let mut t = start + interval;
        while t <= end {
            for service in 0..cli.services {
                let mut profile = sources[count % sources.len()].clone();
                profile.time_nanos = i64::try_from(t * 1_000_000_000)?;
                profile.duration_nanos = 10_000_000_000;
                for sample in &mut profile.sample {
                    for v in &mut sample.value {
                        *v = *v * (50 + (rng.next_u64() % 101) as i64) / 100;
                    }
                }
                let raw = profile.encode_to_vec();
                let label = |name: &str, value: String| LabelPair { name: name.into(), value };
                let request = PushRequest {
                    series: vec![RawProfileSeries {
                        labels: vec![
                            label("__name__", "process_cpu".into()),
                            label("service_name", format!("svc-{service:02}")),
                            label("pod", format!("svc-{service:02}-0")),
                        ],
                        samples: vec![RawSample { raw_profile: raw, id: format!("{service}-{t}") }],
                    }],
                };
                let body = request.encode_to_vec();
                bytes += body.len();
                client.post("/push.v1.PusherService/Push", body).await.context("push")?;
                count += 1;
            }
            t += interval;
        }
        println!(
            "pushed {count} profiles ({:.1} MB of pprof) for {} services over {} h in {:.1} s (end={end})",
            bytes as f64 / 1e6,
            cli.services,
            cli.hours,
            started.elapsed().as_secs_f64()
        );
    }
    if cli.phase == Phase::Push {
        return Ok(());
    }

    let last_hour = ((end - 3600) as i64 * 1000, end as i64 * 1000);
    // A service in the middle of the list.
    let service = format!("svc-{:02}", cli.services / 2);
    let one = format!("{{service_name=\"{service}\"}}");
    let merge = SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: one.clone(),
        start: last_hour.0,
        end: last_hour.1,
        max_nodes: None,
    };
    time_calls(
        &mut client,
        &format!("SelectMergeStacktraces {service}, last hour"),
        "/querier.v1.QuerierService/SelectMergeStacktraces",
        merge.encode_to_vec(),
        cli.runs,
        |b| {
            let f = SelectMergeStacktracesResponse::decode(b.as_ref())?.flamegraph.context("no flame graph")?;
            if f.total == 0 {
                bail!("empty flame graph");
            }
            Ok(format!("{} names, total {:.1} s CPU", f.names.len(), f.total as f64 / 1e9))
        },
    )
    .await?;
    let series = |selector: &str, range: (i64, i64), group_by: Vec<String>| SelectSeriesRequest {
        profile_type_id: CPU.into(),
        label_selector: selector.into(),
        start: range.0,
        end: range.1,
        group_by,
        step: 15.0,
    };
    let describe = |b: &Bytes| -> anyhow::Result<String> {
        let r = SelectSeriesResponse::decode(b.as_ref())?;
        let points: usize = r.series.iter().map(|s| s.points.len()).sum();
        if points == 0 {
            bail!("no points");
        }
        Ok(format!("{} series, {points} points", r.series.len()))
    };
    time_calls(
        &mut client,
        &format!("SelectSeries {service}, last hour, step 15 s"),
        "/querier.v1.QuerierService/SelectSeries",
        series(&one, last_hour, vec![]).encode_to_vec(),
        cli.runs,
        describe,
    )
    .await?;
    time_calls(
        &mut client,
        "SelectSeries all services by service_name, 2 h, step 15 s",
        "/querier.v1.QuerierService/SelectSeries",
        series("{}", (start as i64 * 1000, end as i64 * 1000), vec!["service_name".into()]).encode_to_vec(),
        cli.runs,
        describe,
    )
    .await?;
    let all_merge = SelectMergeStacktracesRequest {
        label_selector: "{}".into(),
        start: start as i64 * 1000,
        end: end as i64 * 1000,
        ..merge
    };
    time_calls(
        &mut client,
        "SelectMergeStacktraces all services, 2 h (worst case)",
        "/querier.v1.QuerierService/SelectMergeStacktraces",
        all_merge.encode_to_vec(),
        cli.runs.min(5),
        |b| {
            let f = SelectMergeStacktracesResponse::decode(b.as_ref())?.flamegraph.context("no flame graph")?;
            Ok(format!("{} names, total {:.1} s CPU", f.names.len(), f.total as f64 / 1e9))
        },
    )
    .await?;
    Ok(())
}
