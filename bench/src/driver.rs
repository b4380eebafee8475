//! The closed-loop load: N workers, each with its own connection and one
//! request in flight, send until the deadline or the request budget.
//!
//! Design choice: closed loop (send, await the answer, send again) rather than
//! a fixed arrival rate. It finds the server's saturated throughput, which is
//! what spans per CPU-second is measured at, and it can never pile up
//! unbounded work on either side. The loop is bounded in time (`deadline`,
//! plus at most one `timeout` for the requests still in flight) and,
//! optionally, in count.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use crate::fresh::Bodies;
use crate::otlp_grpc::GrpcSender;
use crate::otlp_http::HttpSender;
use crate::target::Target;
use crate::tls::ClientTls;

/// What one export request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (HTTP 2xx or gRPC OK); the server may still reject some spans.
    Ok { rejected_spans: u64 },
    /// Not accepted; the label groups failures in the report.
    Failed(String),
}

/// A connection to the target, of either transport.
#[derive(Debug)]
pub enum Sender {
    Grpc(GrpcSender),
    Http(HttpSender),
}

impl Sender {
    pub async fn connect(target: Target, bodies: Bodies, tls: Option<&ClientTls>) -> anyhow::Result<Self> {
        Ok(match target {
            Target::Grpc(addr) => Self::Grpc(GrpcSender::connect(addr, bodies, tls).await?),
            Target::Http(addr) => Self::Http(HttpSender::connect(addr, bodies, tls.cloned()).await?),
        })
    }

    async fn export(&mut self) -> Outcome {
        match self {
            Self::Grpc(sender) => sender.export().await,
            Self::Http(sender) => sender.export().await,
        }
    }

    /// Called after a timeout abandoned a request mid-flight. A gRPC channel
    /// cancels just that stream; an HTTP/1.1 connection is unusable.
    fn reset(&mut self) {
        if let Self::Http(sender) = self {
            sender.reset();
        }
    }
}

/// What the workers saw, merged.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub rejected_spans: u64,
    pub failures: BTreeMap<String, u64>,
    /// Latency of each accepted request, in microseconds.
    pub latencies_us: Vec<u64>,
}

impl Tally {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.rejected_spans += other.rejected_spans;
        for (label, count) in other.failures {
            *self.failures.entry(label).or_default() += count;
        }
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub deadline: Instant,
    pub timeout: Duration,
    pub max_requests: Option<u64>,
}

/// Opens all connections before any load is sent, so setup is not measured.
/// Each connection gets at most `timeout`; connection `i` sends the bodies of `bodies(i)`.
pub async fn connect_all(
    target: Target,
    bodies: impl Fn(usize) -> Bodies,
    connections: usize,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> anyhow::Result<Vec<Sender>> {
    let mut senders = Vec::with_capacity(connections);
    for i in 0..connections {
        let sender = tokio::time::timeout(timeout, Sender::connect(target, bodies(i), tls))
            .await
            .map_err(|_| anyhow::anyhow!("timed out after {timeout:?}"))
            .and_then(|connected| connected)
            .with_context(|| format!("opening connection {} of {connections} to {target}", i + 1))?;
        senders.push(sender);
    }
    Ok(senders)
}

/// Runs every sender on its own task until the limits are reached.
pub async fn run(senders: Vec<Sender>, limits: Limits) -> anyhow::Result<Tally> {
    let issued = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> =
        senders.into_iter().map(|sender| tokio::spawn(worker(sender, limits, Arc::clone(&issued)))).collect();
    let mut total = Tally::default();
    for worker in workers {
        total.merge(worker.await.context("load worker panicked")?);
    }
    Ok(total)
}

async fn worker(mut sender: Sender, limits: Limits, issued: Arc<AtomicU64>) -> Tally {
    let mut tally = Tally::default();
    loop {
        if Instant::now() >= limits.deadline {
            break;
        }
        if let Some(max) = limits.max_requests
            && issued.fetch_add(1, Ordering::Relaxed) >= max
        {
            break;
        }
        let started = Instant::now();
        let outcome = match tokio::time::timeout(limits.timeout, sender.export()).await {
            Ok(outcome) => outcome,
            Err(_) => {
                sender.reset();
                Outcome::Failed("timeout".to_owned())
            }
        };
        match outcome {
            Outcome::Ok { rejected_spans } => {
                tally.ok += 1;
                tally.rejected_spans += rejected_spans;
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally.latencies_us.push(micros);
            }
            Outcome::Failed(label) => {
                *tally.failures.entry(label).or_default() += 1;
                // A server that fails fast would otherwise be hammered in a
                // tight loop and the failure count would mean nothing.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tally
}
