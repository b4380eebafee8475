//! The release gate: an SLO contract evaluated on a candidate build's data, against a
//! baseline build, with the history of previous runs (issue 4; `docs/contracts.md` is the
//! promise this module keeps).
//!
//! [`evaluate`] takes plain values ([`GateInput`]: the contract, each side's spans, metric
//! points and CPU profiles, and the past runs) and returns a [`GateReport`]; [`report`] turns
//! that into the text table, JSON, JUnit XML and Markdown a CI run writes. Like the rest of
//! `analyzer` it does no I/O and reads no clock: the CLI fetches the data and passes the
//! evaluation window in.
//!
//! Design choices, each answering a complaint users have about release gates:
//! - **Relative limits need significance.** `<= +10%` on a p95 fails only when the percentile
//!   is past the limit *and* a one-sided test (Mann-Whitney for latency, the two-proportion or
//!   Fisher test for error rates, a Poisson rate test for throughput) says the candidate moved
//!   *beyond the allowed change* at p < 0.05 (shared among the contract's relative fail
//!   limits): the change must be significant and large enough. Exceeded but not
//!   significant warns, with the p-value in the sentence. The percentile of a few hundred spans
//!   moves by 10% between two runs of one build, and a gate that fails an A/A comparison is a
//!   bug ([`objective`]).
//! - **Inconclusive is never a pass by accident.** Too few samples (`gate.min_samples` per
//!   side), a route that never appears in the data (the finding names the contract line), a
//!   relative limit without baseline data: the objective is inconclusive with its reason, and
//!   `gate.no_data` (fail closed by default) decides what it counts as. Nothing defaults to
//!   pass silently.
//! - **Every verdict explains itself.** Each objective keeps its value, interval, baseline,
//!   p-value, sample counts and a sentence per limit that did not hold; a failed latency
//!   objective also says which attribute values the slow spans share, a CPU regression which
//!   functions got slower ([`GateReport::reasons`] is what a CI log shows first).
//! - **Consecutive failures** ([`history`]): with `consecutive_failures: N` the build's verdict
//!   is still *fail*, but the release is blocked only when the N − 1 runs before it failed too;
//!   a pass in between resets the count.
//! - **Every indicator is judged**, `goroutine_leak` included (`leak.rs`: goroutine clusters
//!   growing in the candidate's processes, per `analyzer::leaks`); none is left out of the
//!   verdict or the score.

mod cpu;
pub mod display;
mod errors;
pub mod history;
pub mod input;
mod latency;
mod leak;
mod metric;
pub mod objective;
pub mod report;
mod score;
mod select;
mod throughput;

pub use display::ValueUnit;
pub use history::{baseline_versions, failure_streak};
pub use input::{GateInput, MetricSample, MetricValue, PastRun, SideData, SpanRecord};
pub use metric::monotonic_increase;
pub use objective::{Level, LimitCheck, ObjectiveResult, SIGNIFICANCE, Samples, per_limit_alpha};

use slo_contracts::{Indicator, Objective};

use crate::compare::Verdict;

/// Why the gate could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// `gate.baseline: last_passing` but no earlier build passed.
    #[error("no passing build in the history yet: run with --baseline VERSION once")]
    NoPassingBuild,
    /// `gate.baseline: { previous: N }` but the history has no other version.
    #[error("no previous build other than {candidate} in the history yet: run with --baseline VERSION once")]
    NoPreviousBuilds {
        /// The candidate version.
        candidate: String,
    },
}

/// The outcome of one gate run.
#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    /// The contract's service.
    pub service: String,
    /// The contract's environment.
    pub environment: Option<String>,
    /// The candidate's versions.
    pub candidate_versions: Vec<String>,
    /// The baseline's versions (empty without a baseline).
    pub baseline_versions: Vec<String>,
    /// One result per objective, in contract order.
    pub objectives: Vec<ObjectiveResult>,
    /// Earned weight over total weight, in percent; `None` when
    /// the total weight is 0.
    pub score: Option<f64>,
    /// This build's verdict: pass, warn or fail (inconclusive only when no objective could be
    /// counted at all).
    pub verdict: Verdict,
    /// Whether the release is blocked (the verdict is fail and `consecutive_failures` builds in
    /// a row failed).
    pub blocked: bool,
    /// Consecutive failing builds including this one (0 when this one did not fail), counted
    /// up to `consecutive_failures`.
    pub failure_streak: u32,
    /// `gate.consecutive_failures` of the contract.
    pub consecutive_failures: u32,
    /// Plain sentences, most important first: objectives that did not pass (key objectives
    /// first, failures before warnings) with their numbers, then the score and blocking.
    pub reasons: Vec<String>,
}

/// Evaluates the contract of `input` on its data.
pub fn evaluate(input: &GateInput<'_>) -> GateReport {
    let contract = input.contract;
    let objectives: Vec<ObjectiveResult> = contract.objectives.iter().map(|o| evaluate_objective(o, input)).collect();
    let outcome = score::outcome(contract, &objectives, input.history);
    GateReport {
        service: contract.service.clone(),
        environment: contract.environment.clone(),
        candidate_versions: input.candidate.versions.clone(),
        baseline_versions: input.baseline.map(|b| b.versions.clone()).unwrap_or_default(),
        objectives,
        score: outcome.score,
        verdict: outcome.verdict,
        blocked: outcome.blocked,
        failure_streak: outcome.failure_streak,
        consecutive_failures: contract.gate.consecutive_failures,
        reasons: outcome.reasons,
    }
}

fn evaluate_objective(objective: &Objective, input: &GateInput<'_>) -> ObjectiveResult {
    let policy = &input.contract.gate;
    let alpha = objective::per_limit_alpha(input.contract);
    let mut result = match &objective.indicator {
        Indicator::Latency { percentile, selector } => {
            latency::evaluate(objective, *percentile, selector, policy, alpha, input)
        }
        Indicator::ErrorRate { selector } => errors::evaluate(objective, selector, policy, alpha, input),
        Indicator::Throughput { selector } => throughput::evaluate(objective, selector, policy, alpha, input),
        Indicator::Metric { .. } | Indicator::MetricRatio { .. } => metric::evaluate(objective, input),
        Indicator::CpuRegression { .. } => cpu::evaluate(objective, input),
        Indicator::GoroutineLeak { .. } => leak::evaluate(objective, input),
    };
    if matches!(objective.indicator, Indicator::Latency { .. })
        && matches!(result.verdict, Verdict::Fail | Verdict::Warn)
    {
        cpu::explain_latency(&mut result, input);
    }
    result.count(policy);
    result
}
