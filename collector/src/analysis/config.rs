//! The `[analysis]` table of the configuration.

use std::path::PathBuf;
use std::time::Duration;

use analyzer::baseline;
use serde::{Deserialize, Serialize};
use slo_contracts::HumanDuration;

/// Continuous analysis between releases (`[analysis]`).
///
/// ```toml
/// [analysis]
/// step = "1m"
/// contracts = ["contracts/"]
///
/// [analysis.detector]          # analyzer::baseline::Config, for every series
/// band = 4.0
///
/// [[analysis.context.rules]]   # per-series overrides chosen by labels
/// match = { job = "etl-batch" }
/// set = { model = "seasonal" }
///
/// [[analysis.watch]]
/// name = "queue-depth"
/// query = 'sum by (queue) (rabbitmq_queue_messages_ready)'
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Off: nothing is scored, no anomaly recorded. Default on.
    pub enabled: bool,
    /// How often every series is scored. Default `1m`; at least `1s`.
    pub step: HumanDuration,
    /// A step with fewer requests than this on a route gives no error-ratio or latency point
    /// for it (a ratio over three requests is noise). Default 20.
    pub min_requests: u64,
    /// How often the baselines' state is written to the data directory (it also is whenever
    /// an incident opens or resolves, and at shutdown). Default `5m`.
    pub state_interval: HumanDuration,
    /// The detector of every series unless a context rule says otherwise.
    pub detector: baseline::Config,
    /// Per-series overrides chosen by the series' labels.
    pub context: baseline::ContextRules,
    /// Most series scored per tenant (span-metric SLIs and watched queries together); series
    /// past it are not scored, and a warning is logged once per step. Default 10,000.
    pub max_series: usize,
    /// Contract files or directories of them whose objectives with an SLO target get error
    /// budgets and burn-rate alerts.
    pub contracts: Vec<PathBuf>,
    /// PromQL queries scored like the SLIs, each result series on its own.
    pub watch: Vec<Watch>,
}

/// A PromQL query whose result series are scored every step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    /// Names the query in the anomalies' `watch` label.
    pub name: String,
    /// An instant-vector PromQL expression, evaluated at each step.
    pub query: String,
    /// The tenant whose data it reads. Default `anonymous`.
    #[serde(default = "anonymous")]
    pub tenant: String,
}

fn anonymous() -> String {
    "anonymous".into()
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            enabled: true,
            step: HumanDuration(Duration::from_secs(60)),
            min_requests: 20,
            state_interval: HumanDuration(Duration::from_secs(300)),
            detector: baseline::Config::default(),
            context: baseline::ContextRules::default(),
            max_series: 10_000,
            contracts: Vec::new(),
            watch: Vec::new(),
        }
    }
}

impl AnalysisConfig {
    /// Every problem of the table, each naming its key.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.step.0 < Duration::from_secs(1) {
            problems.push(format!("analysis.step must be at least 1s, not {:?}", self.step.0));
        }
        if self.state_interval.0 < self.step.0 {
            problems.push("analysis.state_interval must not be shorter than analysis.step".to_string());
        }
        if let Err(e) = self.detector.validate() {
            problems.push(format!("analysis.detector: {e}"));
        }
        if self.max_series == 0 {
            problems.push("analysis.max_series must be at least 1".to_string());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, w) in self.watch.iter().enumerate() {
            if w.name.trim().is_empty() {
                problems.push(format!("analysis.watch[{i}].name is empty"));
            } else if !names.insert(w.name.as_str()) {
                problems.push(format!("analysis.watch[{i}].name {:?} is used twice", w.name));
            }
            if let Err(e) = crate::tenant::Tenant::parse(&w.tenant) {
                problems.push(format!("analysis.watch[{i}].tenant: {e}"));
            }
            if let Err(e) = prom::engine::selectors(&w.query) {
                problems.push(format!("analysis.watch[{i}].query: {e}"));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }
}
