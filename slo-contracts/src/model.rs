//! The domain types a validated contract becomes: what `slo-gate check` and the analyzer
//! use. They are separate from the wire types in [`crate::wire`] (which describe the file
//! and generate the JSON Schema) so the file format can grow sugar without touching the
//! gate, and so every value here is already checked: canonical units (latency in seconds,
//! error rates as fractions, throughput per second), defaults filled in, and locations kept
//! for the reports that must point back at the contract.

use std::fmt;
use std::time::Duration;

use crate::diagnostic::Location;

/// The profile type a `cpu_regression` objective reads unless it names another one
/// (Pyroscope's id for Go's CPU profile).
pub const DEFAULT_CPU_PROFILE_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// One service's SLO contract (one YAML document).
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    /// Matched against the resource attribute `service.name`.
    pub service: String,
    /// Matched against `deployment.environment.name` (or the older `deployment.environment`);
    /// `None` matches every environment.
    pub environment: Option<String>,
    /// How the gate decides.
    pub gate: GatePolicy,
    /// What is measured and the limits; at least one, names unique.
    pub objectives: Vec<Objective>,
    /// Where the contract's document starts.
    pub location: Location,
}

/// How the gate turns objective results into a verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct GatePolicy {
    /// What the candidate is compared with; `None` means absolute limits only.
    pub baseline: Option<Baseline>,
    /// Fewest samples per side (baseline and candidate) for a conclusive verdict; below it
    /// the objective is inconclusive and [`GatePolicy::no_data`] decides. Default 100.
    pub min_samples: u64,
    /// The gate blocks a release only after this many consecutive failing candidate builds.
    /// Default 1 (the first failure blocks).
    pub consecutive_failures: u32,
    /// What an objective with no (or too little) data counts as. Default [`NoData::Fail`].
    pub no_data: NoData,
    /// Total-score thresholds; `None` means every objective must pass.
    pub score: Option<ScoreThresholds>,
}

impl Default for GatePolicy {
    fn default() -> Self {
        GatePolicy { baseline: None, min_samples: 100, consecutive_failures: 1, no_data: NoData::Fail, score: None }
    }
}

/// Which build a candidate is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Baseline {
    /// A named build (`service.version`).
    Version(String),
    /// The most recent build that passed the gate (history kept by `slo-gate`).
    LastPassing,
    /// The previous N builds, their data aggregated.
    Previous(u32),
}

/// What missing or insufficient data means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoData {
    /// Fail closed (the default): a gate never passes on data it did not see.
    Fail,
    /// Warn but do not block.
    Warn,
    /// Treat as passing.
    Pass,
}

/// Total-score thresholds in percent of the total weight: an objective that passes earns its
/// weight, one that warns half of it, one that fails nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreThresholds {
    /// A score at or above this passes.
    pub pass: f64,
    /// A score at or above this (and below `pass`) warns; below it fails.
    pub warn: f64,
}

/// One measured quantity and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// Unique within the contract; used in reports.
    pub name: String,
    /// Free text for reports.
    pub description: Option<String>,
    /// What is measured.
    pub indicator: Indicator,
    /// All must hold, else the objective fails. Empty for `cpu_regression` and
    /// `goroutine_leak`, whose limits are their parameters.
    pub fail: Vec<Criterion>,
    /// All must hold, else (when the fail criteria hold) the objective warns.
    pub warn: Vec<Criterion>,
    /// A failing key objective fails the gate whatever the score.
    pub key: bool,
    /// Share in the total score; default 1, never negative.
    pub weight: f64,
    /// For `cpu_regression` and `goroutine_leak`: what a detection means. Always
    /// [`OnViolation::Fail`] for the other indicators (they use `warn:` criteria).
    pub on_violation: OnViolation,
    /// The SLO target and compliance window (`slo:`), for error budgets and burn-rate alerts
    /// between releases; `None` when the objective only gates releases.
    pub slo: Option<Slo>,
    /// Where the objective starts.
    pub location: Location,
}

/// An SLO over a compliance window: "99.9% of requests no slower than 400ms over 30 days".
///
/// A gate criterion judges one candidate run; an SLO counts good and total events over a
/// rolling window and spends an error budget of `(1 - target) × total` bad events, which the
/// analyzer (`analyzer::burn`) turns into the budget remaining and multi-window burn-rate
/// alerts. Only indicators whose events are each good or bad can have one ([`GoodEvents`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// The share of good events, as a fraction strictly between 0 and 1 (`99.9%` is 0.999).
    pub target: f64,
    /// The rolling compliance window, between [`Slo::MIN_WINDOW`] and [`Slo::MAX_WINDOW`].
    pub window: Duration,
    /// Which events are good.
    pub good: GoodEvents,
    /// The burn-rate alerts that fit in [`Slo::window`], in the order of
    /// [`WORKBOOK_BURN_ALERTS`] (an alert whose long window is longer than the compliance
    /// window cannot be evaluated and is left out, with a warning).
    pub alerts: Vec<BurnAlert>,
    /// Where the `slo:` block is.
    pub location: Location,
}

impl Slo {
    /// The shortest compliance window: the shortest burn-rate alert looks at the last hour.
    pub const MIN_WINDOW: Duration = Duration::from_secs(3_600);
    /// The longest compliance window, a little over a year (bounds the analyzer's memory).
    pub const MAX_WINDOW: Duration = Duration::from_secs(400 * 86_400);
    /// The window when `slo.window` is not written, the SRE workbook's 30 days.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 86_400);

    /// The error budget as a fraction of the events: `1 - target`.
    pub fn error_budget(&self) -> f64 {
        1.0 - self.target
    }
}

/// Which events an SLO counts as good, and so how good and total counts are read from the
/// span metrics (calls, errors and the duration histogram of the objective's spans, as the
/// OpenTelemetry Collector's spanmetrics connector derives them) or from the ratio's counters.
#[derive(Debug, Clone, PartialEq)]
pub enum GoodEvents {
    /// `latency` objectives: a span is good when its duration is at most `seconds`. Total:
    /// the spans (the duration histogram's count); good: the histogram's cumulative count at
    /// the bucket bound `seconds`, interpolated inside its bucket when `seconds` is not a
    /// bound (`analyzer::burn::good_at_most`).
    DurationAtMost {
        /// The threshold, in seconds (above 0).
        seconds: f64,
    },
    /// `error_rate` objectives: a span is good when it is not an error (status ERROR or
    /// `http.response.status_code` >= 500). Total: the calls; good: calls - error calls.
    NotError,
    /// `metric: { ratio: ... }` objectives over counters: good is the increase of the `good`
    /// counter (or total minus the increase of the `bad` counter), total the increase of
    /// `total`.
    Ratio,
}

impl GoodEvents {
    /// How a good event reads in a report: `spans no slower than 0.4s`.
    pub fn describe(&self) -> String {
        match self {
            GoodEvents::DurationAtMost { seconds } => format!("spans no slower than {seconds}s"),
            GoodEvents::NotError => "spans that are not errors".to_string(),
            GoodEvents::Ratio => "events counted good by the ratio".to_string(),
        }
    }
}

/// The upper bounds, in seconds, of the span-metric duration histogram's default buckets (the
/// OpenTelemetry Collector spanmetrics connector's defaults: 2ms .. 15s). A latency SLO whose
/// threshold is one of them counts good spans exactly; another threshold is interpolated.
pub const DEFAULT_SPAN_METRIC_BUCKETS: [f64; 16] =
    [0.002, 0.004, 0.006, 0.008, 0.010, 0.050, 0.100, 0.200, 0.400, 0.800, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0];

/// How urgent a burn-rate alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    /// Wake someone up: the budget burns fast enough to be gone within days.
    Page,
    /// Look at it during working hours.
    Ticket,
}

impl AlertSeverity {
    /// `page` or `ticket`.
    pub fn name(self) -> &'static str {
        match self {
            AlertSeverity::Page => "page",
            AlertSeverity::Ticket => "ticket",
        }
    }
}

impl fmt::Display for AlertSeverity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A multi-window burn-rate alert: it fires while the burn rate over both the long and the
/// short window is at least `burn_rate`. The long window makes it significant (enough budget
/// spent), the short one makes it stop soon after the burning stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnAlert {
    /// Page or ticket.
    pub severity: AlertSeverity,
    /// The long window (e.g. 1h).
    pub long_window: Duration,
    /// The short window (e.g. 5m), a twelfth of the long one in the workbook.
    pub short_window: Duration,
    /// The burn rate both windows must reach: bad ratio / (1 - target).
    pub burn_rate: f64,
}

/// The SRE workbook's multi-window, multi-burn-rate alerts (Beyer et al., *The Site
/// Reliability Workbook*, ch. 5 "Alerting on SLOs", table 5-8). On a 30-day window they fire
/// when 2% of the budget is spent in an hour, 5% in six hours, 10% in three days; on another
/// window the same burn rates spend `burn_rate × long window / window` of the budget.
pub const WORKBOOK_BURN_ALERTS: [BurnAlert; 3] = [
    BurnAlert {
        severity: AlertSeverity::Page,
        long_window: Duration::from_secs(3_600),
        short_window: Duration::from_secs(300),
        burn_rate: 14.4,
    },
    BurnAlert {
        severity: AlertSeverity::Page,
        long_window: Duration::from_secs(6 * 3_600),
        short_window: Duration::from_secs(1_800),
        burn_rate: 6.0,
    },
    BurnAlert {
        severity: AlertSeverity::Ticket,
        long_window: Duration::from_secs(3 * 86_400),
        short_window: Duration::from_secs(6 * 3_600),
        burn_rate: 1.0,
    },
];

/// What a detected CPU regression or goroutine leak does to the objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnViolation {
    /// The objective fails.
    Fail,
    /// The objective warns.
    Warn,
}

/// What an objective measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Indicator {
    /// A percentile of the duration of the selected SERVER spans, in seconds.
    Latency {
        /// E.g. 95.0 for `p95`, 99.9 for `p99.9`; strictly between 0 and 100.
        percentile: f64,
        /// Which spans.
        selector: SpanSelector,
    },
    /// Error spans (status ERROR or `http.response.status_code` >= 500) over all selected
    /// spans, as a fraction.
    ErrorRate {
        /// Which spans.
        selector: SpanSelector,
    },
    /// Selected spans per second.
    Throughput {
        /// Which spans.
        selector: SpanSelector,
    },
    /// A stored metric, aggregated over the evaluation window, in its own unit.
    Metric {
        /// The metric name.
        name: String,
        /// Label (attribute) equality matchers, in file order.
        matchers: Vec<(String, String)>,
        /// How the samples in the window become one value.
        aggregation: Aggregation,
    },
    /// A ratio of two metrics over the window, as a fraction: `numerator / total`.
    MetricRatio {
        /// The good (or bad, see `counts`) events.
        numerator: MetricSelector,
        /// Whether the numerator counts good or bad events.
        counts: RatioOf,
        /// All events.
        total: MetricSelector,
        /// True when both are monotonic counters (their increase over the window is used);
        /// false for gauges (their average is used).
        counter: bool,
    },
    /// A CPU flame-graph regression of the candidate against the baseline.
    CpuRegression {
        /// Pyroscope-style profile type id.
        profile_type: String,
        /// Smallest growth of a function's share, in percentage points, that counts.
        min_change_pp: f64,
        /// Confidence required for a growth to count, in (0, 1).
        confidence: f64,
        /// Which share of a function is compared.
        share: Share,
        /// How the builds' CPU is made comparable.
        normalize: CpuNormalize,
        /// The counter whose increase is the work done (`http_requests_total`); `None`: the
        /// service's SERVER spans.
        work: Option<MetricSelector>,
    },
    /// Goroutines that keep growing in the candidate's goroutine profiles.
    GoroutineLeak {
        /// A cluster growing faster than this (goroutines per minute) leaks.
        max_growth_per_minute: f64,
        /// Growth must last at least this long to count.
        min_duration: Duration,
    },
}

impl Indicator {
    /// The unit of the values the criteria compare, `None` for indicators without criteria.
    pub fn unit(&self) -> Option<Unit> {
        match self {
            Indicator::Latency { .. } => Some(Unit::Seconds),
            Indicator::ErrorRate { .. } | Indicator::MetricRatio { .. } => Some(Unit::Ratio),
            Indicator::Throughput { .. } => Some(Unit::PerSecond),
            Indicator::Metric { .. } => Some(Unit::Raw),
            Indicator::CpuRegression { .. } | Indicator::GoroutineLeak { .. } => None,
        }
    }

    /// The indicator's key in the contract file (`latency`, `error_rate`, ...).
    pub fn key(&self) -> &'static str {
        match self {
            Indicator::Latency { .. } => "latency",
            Indicator::ErrorRate { .. } => "error_rate",
            Indicator::Throughput { .. } => "throughput",
            Indicator::Metric { .. } | Indicator::MetricRatio { .. } => "metric",
            Indicator::CpuRegression { .. } => "cpu_regression",
            Indicator::GoroutineLeak { .. } => "goroutine_leak",
        }
    }
}

/// Which spans a span indicator reads: the service's SERVER spans, narrowed by at most one
/// of `route` (`http.route`) or `span_name`. Both `None` means all of them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanSelector {
    /// `http.route` of the SERVER spans, with where it was written so the gate can report
    /// "route never appears in the data" at the right line.
    pub route: Option<(String, Location)>,
    /// The span name, with where it was written.
    pub span_name: Option<(String, Location)>,
}

/// A metric name and label equality matchers.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSelector {
    /// The metric name.
    pub name: String,
    /// Label equality matchers, in file order.
    pub matchers: Vec<(String, String)>,
}

/// Whether a ratio's numerator counts good or bad events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatioOf {
    /// `good / total`.
    Good,
    /// `bad / total`.
    Bad,
}

/// How a metric's samples in the window become one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregation {
    /// Mean of the samples.
    Avg,
    /// Smallest sample.
    Min,
    /// Largest sample.
    Max,
    /// Sum of the samples.
    Sum,
    /// The newest sample.
    Last,
    /// Per-second increase of a counter over the window.
    Rate,
    /// A quantile in percent (e.g. 99.0): of the observations for a histogram, of the
    /// samples for a gauge.
    Percentile(f64),
}

/// Which share of a function a CPU regression compares: the one vocabulary of contracts, the
/// analyzer (`analyzer::flame`), the API's `metric=` parameter and `slo-gate flame --metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Share {
    /// Self time (pprof's flat): samples in the function itself. Written `self`.
    #[default]
    Flat,
    /// Total time (pprof's cum): samples in the function and its callees. Written `total`.
    Cumulative,
}

impl Share {
    /// Both, in the order they are listed to people.
    pub const ALL: [Share; 2] = [Share::Flat, Share::Cumulative];

    /// How it is written: `self` or `total`.
    pub fn name(self) -> &'static str {
        match self {
            Share::Flat => "self",
            Share::Cumulative => "total",
        }
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Share {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Share {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Share, D::Error> {
        let word = std::borrow::Cow::<str>::deserialize(d)?;
        word.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Share {
    type Err = String;

    fn from_str(s: &str) -> Result<Share, String> {
        Share::ALL
            .into_iter()
            .find(|share| share.name() == s)
            .ok_or_else(|| format!("{s:?} is not a share: use `self` or `total`"))
    }
}

/// How a `cpu_regression` makes the builds' CPU comparable (ADR 0008). Written `auto`,
/// `share`, `rate`, `per_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuNormalize {
    /// CPU per request when both builds' work is known, CPU per second when their loads look
    /// alike, shares otherwise.
    #[default]
    Auto,
    /// Each function's share of its profile.
    Share,
    /// CPU-seconds per second of profiled time, per process.
    Rate,
    /// CPU per unit of work (request).
    PerRequest,
}

/// The unit of an indicator's values, which criteria are converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Seconds (latency).
    Seconds,
    /// A fraction in [0, 1] (error rate, metric ratio).
    Ratio,
    /// Events per second (throughput).
    PerSecond,
    /// The metric's own unit.
    Raw,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    /// Whether `value op limit`.
    pub fn compare(self, value: f64, limit: f64) -> bool {
        match self {
            Op::Lt => value < limit,
            Op::Le => value <= limit,
            Op::Gt => value > limit,
            Op::Ge => value >= limit,
        }
    }

    /// True for `<` and `<=` (a ceiling), false for floors.
    pub fn is_upper(self) -> bool {
        matches!(self, Op::Lt | Op::Le)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        })
    }
}

/// The value a criterion compares with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// An absolute limit in the indicator's canonical [`Unit`].
    Absolute(f64),
    /// A change relative to the baseline's value, as a fraction: `+10%` is `0.10`, `-5%` is
    /// `-0.05`; the limit is `baseline * (1 + fraction)`.
    Relative(f64),
}

/// One limit, e.g. `<= 420ms` or `<= +10%`.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// The comparison.
    pub op: Op,
    /// What is compared with.
    pub bound: Bound,
    /// The criterion as written, for reports.
    pub text: String,
    /// Where it was written.
    pub location: Location,
}

impl Criterion {
    /// The absolute limit, given the baseline's value; `None` when the bound is relative and
    /// there is no baseline value.
    pub fn limit(&self, baseline: Option<f64>) -> Option<f64> {
        match self.bound {
            Bound::Absolute(limit) => Some(limit),
            Bound::Relative(change) => baseline.map(|b| b * (1.0 + change)),
        }
    }

    /// Whether `value` satisfies the criterion; `None` when it is relative and there is no
    /// baseline value. A NaN value never satisfies it.
    pub fn holds(&self, value: f64, baseline: Option<f64>) -> Option<bool> {
        self.limit(baseline).map(|limit| self.op.compare(value, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn criterion(op: Op, bound: Bound) -> Criterion {
        Criterion { op, bound, text: String::new(), location: Location::default() }
    }

    #[test]
    fn absolute_and_relative_limits() {
        let abs = criterion(Op::Le, Bound::Absolute(0.42));
        assert_eq!(abs.holds(0.42, None), Some(true));
        assert_eq!(abs.holds(0.43, Some(1.0)), Some(false));
        let rel = criterion(Op::Le, Bound::Relative(0.10));
        assert_eq!(rel.holds(1.0, None), None);
        assert_eq!(rel.holds(1.09, Some(1.0)), Some(true));
        assert_eq!(rel.holds(1.11, Some(1.0)), Some(false));
        let floor = criterion(Op::Ge, Bound::Relative(-0.05));
        assert_eq!(floor.holds(95.0, Some(100.0)), Some(true));
        assert_eq!(floor.holds(94.0, Some(100.0)), Some(false));
        assert_eq!(abs.holds(f64::NAN, None), Some(false));
    }
}
