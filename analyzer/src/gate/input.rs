//! What the gate reads: plain values the CLI fills from a collector's API or a data
//! directory. Nothing here knows where the data came from, and nothing reads a clock: the
//! evaluation window is part of the data.

use crate::compare::Verdict;
use crate::correlate::Attributes;
use crate::flame::Run;
use slo_contracts::Contract;

/// One SERVER span of the service, reduced to what the gate measures.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    /// Start time, unix nanoseconds.
    pub time_unix_nano: u64,
    /// Duration in seconds.
    pub duration_seconds: f64,
    /// The span name (what `span_name` selectors match).
    pub name: String,
    /// `http.route`, when the span has one (what `route` selectors match).
    pub route: Option<String>,
    /// Whether the span is an error: status ERROR or `http.response.status_code >= 500`,
    /// already decided by the caller.
    pub error: bool,
    /// Resource and span attributes flattened to strings (`service.version`, `host.name`,
    /// `http.route`, ...): what attribute correlation looks at.
    pub attributes: Vec<(String, String)>,
}

impl Attributes for SpanRecord {
    fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// One point of a stored metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// The metric name (OTLP or Prometheus).
    pub name: String,
    /// Its labels (attributes).
    pub labels: Vec<(String, String)>,
    /// Time of the point, unix nanoseconds.
    pub time_unix_nano: u64,
    /// The value.
    pub value: MetricValue,
}

/// The value of a metric point.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A gauge reading.
    Gauge(f64),
    /// A cumulative sum; `monotonic` for counters (a drop is a reset), false for
    /// up-down counters.
    Counter {
        /// The cumulative value.
        value: f64,
        /// Whether it only grows (between resets).
        monotonic: bool,
    },
    /// An explicit-bucket histogram (OTLP layout: `counts.len() == bounds.len() + 1`, the
    /// last bucket above the last bound).
    Histogram {
        /// Upper bounds of the buckets, ascending.
        bounds: Vec<f64>,
        /// Observations per bucket (not cumulative across buckets).
        counts: Vec<u64>,
        /// Observations in total.
        count: u64,
        /// Sum of the observations.
        sum: f64,
        /// True when counts accumulate since the series started (Prometheus, OTLP cumulative
        /// temporality); false for per-interval deltas.
        cumulative: bool,
    },
}

/// One side of the comparison (the candidate, or the baseline build or builds).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SideData {
    /// The `service.version`s the data belongs to: one, or several for `previous: N`.
    pub versions: Vec<String>,
    /// The evaluation window `[start, end]`, unix nanoseconds: throughput is counted over it
    /// and metric points outside it are ignored.
    pub window: (u64, u64),
    /// The service's SERVER spans (in its environment, when the contract names one).
    pub spans: Vec<SpanRecord>,
    /// Metric points.
    pub metrics: Vec<MetricSample>,
    /// CPU profiles, grouped by the run (process) that produced them: runs are the replicates of
    /// the CPU comparison (see [`crate::flame::regression`]).
    pub cpu_runs: Vec<Run>,
    /// Allocation profiles (`allocs` or heap: cumulative allocated bytes by allocating stack),
    /// grouped by process: a CPU regression charges the runtime's growth to the code whose
    /// allocation grew ([`crate::flame::attribute_allocations`]).
    pub alloc_runs: Vec<Run>,
    /// Goroutine profiles (snapshots over time), grouped by process: the `goroutine_leak`
    /// objective judges each process's series on its own.
    pub goroutine_runs: Vec<Run>,
}

/// A previous gate run of the same service and environment, as slo-gate's history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    /// The candidate version of that run.
    pub version: String,
    /// When it ran, unix nanoseconds.
    pub time_unix_nano: u64,
    /// The gate's outcome (after `no_data` and scoring).
    pub verdict: Verdict,
    /// Each objective's counted verdict.
    pub objectives: Vec<(String, Verdict)>,
}

/// Everything one evaluation needs.
#[derive(Debug, Clone, Copy)]
pub struct GateInput<'a> {
    /// The validated contract.
    pub contract: &'a Contract,
    /// The candidate build's data.
    pub candidate: &'a SideData,
    /// The baseline's data, when the contract compares with one and it was found.
    pub baseline: Option<&'a SideData>,
    /// Previous runs of this service and environment, newest first, not including this one.
    pub history: &'a [PastRun],
}
