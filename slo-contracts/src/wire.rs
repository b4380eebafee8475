//! The contract file as written: serde + schemars types whose doc comments are the user
//! documentation and become the JSON Schema's descriptions ([`crate::json_schema`]).
//!
//! These types describe the file; they are not how it is read. The validator
//! ([`crate::parse`]) walks a position-keeping YAML tree so it can report every problem with
//! its line and column, which serde cannot. To keep the two from drifting, the keys the
//! validator accepts are listed in [`keys`] next to these types, and a test checks that each
//! list equals the properties of the matching schema object, both ways, and that the schema
//! accepts every valid example contract.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An SLO contract for one service: what `slo-gate check` evaluates against a candidate
/// build. A file may hold several contracts as separate YAML documents (`---`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "slo-gate contract")]
pub struct ContractFile {
    /// Version of the contract format; `slo-gate/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// Always `Contract`.
    pub kind: ContractKind,
    /// The service, matched on the resource attribute `service.name`.
    pub service: String,
    /// The deployment environment, matched on `deployment.environment.name` (or the older
    /// `deployment.environment`). Omit it to match every environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// How objective results become a verdict. Every field has a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
    /// What is measured and the limits. At least one; names unique within the contract.
    #[schemars(length(min = 1))]
    pub objectives: Vec<Objective>,
}

/// The contract format's version.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    /// Version 1.
    #[serde(rename = "slo-gate/v1")]
    V1,
}

/// The document kind.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
pub enum ContractKind {
    /// An SLO contract.
    Contract,
}

/// The gate policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// The build the candidate is compared with: `last_passing`, `{ version: "1.4.2" }` or
    /// `{ previous: 3 }` (the previous 3 builds aggregated). Required by relative limits
    /// such as `<= +10%`; omit it to use absolute limits only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// Fewest samples per side (baseline and candidate) for a conclusive result; below it an
    /// objective is inconclusive and `no_data` decides. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// Block the release only after this many consecutive failing candidate builds
    /// (history kept by slo-gate). Default 1: the first failure blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub consecutive_failures: Option<u32>,
    /// What an objective without (enough) data counts as: `fail` (default: fail closed),
    /// `warn` or `pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<NoData>,
    /// Total-score thresholds in percent of the total weight (pass earns an objective's
    /// weight, warn half of it, fail nothing). Without them every objective must pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<Score>,
}

/// Which build the candidate is compared with.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Baseline {
    /// `last_passing`: the most recent build that passed the gate.
    Keyword(BaselineKeyword),
    /// A named build.
    Version(VersionBaseline),
    /// The previous N builds, aggregated.
    Previous(PreviousBaseline),
}

/// A baseline named by a keyword.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
pub enum BaselineKeyword {
    /// The most recent build that passed the gate.
    #[serde(rename = "last_passing")]
    LastPassing,
}

/// A baseline named by its version.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionBaseline {
    /// The baseline build's `service.version`.
    pub version: Scalar,
}

/// A baseline made of the previous builds.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviousBaseline {
    /// How many previous builds to aggregate (at least 1).
    #[schemars(range(min = 1))]
    pub previous: u32,
}

/// What missing or insufficient data means.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NoData {
    /// The objective fails (fail closed).
    Fail,
    /// The objective warns.
    Warn,
    /// The objective passes.
    Pass,
}

/// Total-score thresholds, percent of the total weight.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Score {
    /// A score at or above this passes the gate (0 to 100).
    #[schemars(range(min = 0, max = 100))]
    pub pass: f64,
    /// A score at or above this, below `pass`, warns; below it the gate fails (0 to `pass`).
    #[schemars(range(min = 0, max = 100))]
    pub warn: f64,
}

/// One objective: exactly one indicator (`latency`, `error_rate`, `throughput`, `metric`,
/// `cpu_regression` or `goroutine_leak`) and its limits.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = exactly_one_indicator)]
pub struct Objective {
    /// Unique name within the contract, shown in reports.
    pub name: String,
    /// Free text shown in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A latency percentile of the service's SERVER spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// Error spans (status ERROR or `http.response.status_code` >= 500) over all spans.
    /// Criteria: a percentage (`0.1%`) or a fraction (`0.001`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<SpanSelector>,
    /// Spans per second. Criteria: `20/s`, `1200/m`, `20rps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<SpanSelector>,
    /// A stored metric aggregated over the window, or a ratio of two metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
    /// CPU flame-graph regression of the candidate against the baseline. Takes no
    /// `fail`/`warn` criteria: its limits are its parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_regression: Option<CpuRegression>,
    /// Goroutine clusters that keep growing. Takes no `fail`/`warn` criteria.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goroutine_leak: Option<GoroutineLeak>,
    /// Criteria that must all hold, else the objective fails: `OP VALUE` with OP one of
    /// `<`, `<=`, `>`, `>=` and VALUE absolute in the indicator's unit (`420ms`, `0.1%`,
    /// `20/s`, `1000`) or relative to the baseline (`+10%`, `-5%`). One string or a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<Criteria>,
    /// Criteria that must all hold, else (when the fail criteria hold) the objective warns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<Criteria>,
    /// A failing key objective fails the gate on its own, whatever the score. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<bool>,
    /// Share in the total score. Default 1; not negative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub weight: Option<f64>,
    /// For `cpu_regression` and `goroutine_leak` only: `fail` (default) or `warn` when a
    /// regression or leak is found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_violation: Option<OnViolation>,
    /// An SLO over a compliance window, e.g. `{ target: 99.9%, window: 30d, threshold: 400ms }`:
    /// error budget and burn-rate alerts while the service runs, beside the release gate's
    /// criteria. Only for `latency` (with `threshold`), `error_rate` and `metric: { ratio }`
    /// over counters, whose events are each good or bad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
}

/// The indicator keys of an objective, exactly one of which must be present.
pub const INDICATOR_KEYS: [&str; 6] =
    ["latency", "error_rate", "throughput", "metric", "cpu_regression", "goroutine_leak"];

fn exactly_one_indicator(schema: &mut schemars::Schema) {
    let one_of = INDICATOR_KEYS.iter().map(|key| serde_json::json!({ "required": [key] })).collect();
    schema.insert("oneOf".to_string(), serde_json::Value::Array(one_of));
}

/// An SLO: the share of good events to keep over a rolling window.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// The share of good events: a percentage strictly between 0% and 100% (`99.9%`) or a
    /// fraction strictly between 0 and 1 (`0.999`).
    pub target: SloTarget,
    /// The rolling compliance window the error budget is counted over (`30d`, `28d`, `4w`),
    /// from 1h to 400d. Default 30d. Burn-rate alerts whose long window (1h, 6h, 3d) is
    /// longer are not evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub window: Option<String>,
    /// `latency` objectives only, and required there: a span is good when its duration is at
    /// most this (`400ms`, `1.5s`). Exact when it is a bucket bound of the span-metric
    /// duration histogram, interpolated inside the bucket otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(([0-9]+(ns|us|µs|ms|s|m|h|d|w))+|[0-9]+\.[0-9]*(ns|us|µs|ms|s|m|h|d|w))$"))]
    pub threshold: Option<String>,
}

/// An SLO target, written as a percentage or a fraction.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SloTarget {
    /// A percentage, e.g. `99.9%`.
    Percent(#[schemars(regex(pattern = r"^\s*[0-9]+(\.[0-9]+)?\s*%\s*$"))] String),
    /// A fraction, e.g. `0.999`.
    Fraction(#[schemars(range(min = 0, max = 1))] f64),
}

/// A human duration as [`crate::HumanDuration`] reads it (`30d`, `1h30m`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(ns|us|µs|ms|s|m|h|d|w))+$";

/// One criterion or a list of criteria that must all hold.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Criteria {
    /// One criterion, e.g. `"<= 420ms"`.
    One(#[schemars(regex(pattern = CRITERION_PATTERN))] String),
    /// Several criteria, e.g. `["<= 420ms", "<= +10%"]`.
    All(#[schemars(length(min = 1), inner(regex(pattern = CRITERION_PATTERN)))] Vec<String>),
}

/// The shape of a criterion (units are checked by the validator, which knows the indicator).
pub const CRITERION_PATTERN: &str = r"^\s*(<|<=|>|>=)\s*\S+\s*$";

/// A latency objective's indicator.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// `p` and a number strictly between 0 and 100: `p50`, `p95`, `p99`, `p99.9`.
    #[schemars(regex(pattern = r"^p[0-9]+(\.[0-9]+)?$"))]
    pub percentile: String,
    /// Only SERVER spans with this `http.route` (e.g. `/api/checkout`). Excludes `span_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Only spans with this name. Excludes `route`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_name: Option<String>,
}

/// Which spans an `error_rate` or `throughput` objective reads: the service's SERVER spans,
/// narrowed by at most one of `route` and `span_name`. `{}` means all of them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpanSelector {
    /// Only SERVER spans with this `http.route`. Excludes `span_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Only spans with this name. Excludes `route`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_name: Option<String>,
}

/// A metric objective's indicator: either `name` (+ `matchers`) and `aggregation`, or
/// `ratio`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// The metric name as stored (OTLP or Prometheus name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Label (attribute) equality matchers, e.g. `{ queue: orders }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matchers: Option<BTreeMap<String, Scalar>>,
    /// How the window's samples become one value: `avg`, `min`, `max`, `sum`, `last`,
    /// `rate` (per-second increase of a counter) or a quantile `p50`..`p99.9` (of a
    /// histogram's observations, or of a gauge's samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(avg|min|max|sum|last|rate|p[0-9]+(\.[0-9]+)?)$"))]
    pub aggregation: Option<String>,
    /// A ratio of two metrics, as a fraction: `good / total` or `bad / total`. Criteria are
    /// percentages or fractions, like `error_rate`'s. Excludes `name`, `matchers` and
    /// `aggregation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<Ratio>,
}

/// A ratio of two metrics.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ratio {
    /// The good events (numerator). Excludes `bad`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good: Option<MetricSelector>,
    /// The bad events (numerator). Excludes `good`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad: Option<MetricSelector>,
    /// All events (denominator).
    pub total: MetricSelector,
    /// True (default) when both are monotonic counters, whose increase over the window is
    /// used; false for gauges, whose average is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<bool>,
}

/// A metric name and label equality matchers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricSelector {
    /// The metric name.
    pub name: String,
    /// Label (attribute) equality matchers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matchers: Option<BTreeMap<String, Scalar>>,
}

/// A YAML scalar used as text (label values, versions): `orders`, `"500"` or `500`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    /// Text.
    Text(String),
    /// A number, used as written.
    Number(f64),
    /// A boolean, used as `true`/`false`.
    Bool(bool),
}

/// A CPU flame-graph regression limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuRegression {
    /// Pyroscope-style profile type id. Default
    /// `process_cpu:cpu:nanoseconds:cpu:nanoseconds` (Go's CPU profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_type: Option<String>,
    /// Smallest growth of a function's share of the profile, in percentage points, that
    /// counts as a regression. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub min_change: Option<f64>,
    /// Confidence required for a growth to count, strictly between 0 and 1. Default 0.95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub confidence: Option<f64>,
    /// `self` (default: time in the function itself) or `total` (with its callees).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<Share>,
    /// How the builds' CPU is made comparable: `auto` (default: CPU per request when the work
    /// is known, CPU per second when the loads look alike, else shares), `share`, `rate` or
    /// `per_request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalize>,
    /// The counter whose increase is the work done, for CPU per request. Default: the service's
    /// SERVER spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<MetricSelector>,
}

/// How a CPU regression makes the builds' CPU comparable.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Per request when known, per second when the loads look alike, else shares.
    Auto,
    /// Share of each profile.
    Share,
    /// CPU per second of profiled time.
    Rate,
    /// CPU per unit of work.
    PerRequest,
}

/// Which share of a function is compared.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Share {
    /// Self time (pprof's flat).
    #[serde(rename = "self")]
    SelfTime,
    /// Total time (pprof's cum).
    Total,
}

/// A goroutine-leak rule over the candidate's goroutine profiles.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GoroutineLeak {
    /// A goroutine cluster (same stack) growing faster than this many goroutines per minute
    /// leaks. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_growth_per_minute: Option<f64>,
    /// Growth must be seen over at least this long (`2m`, `1h30m`). Default `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub min_duration: Option<String>,
}

/// What a detected regression or leak does to the objective.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnViolation {
    /// The objective fails.
    Fail,
    /// The objective warns.
    Warn,
}

/// The keys the validator accepts in each mapping, one list per wire type above (checked
/// against the generated schema by a test).
pub mod keys {
    /// [`super::ContractFile`].
    pub const CONTRACT: &[&str] = &["apiVersion", "kind", "service", "environment", "gate", "objectives"];
    /// [`super::Gate`].
    pub const GATE: &[&str] = &["baseline", "min_samples", "consecutive_failures", "no_data", "score"];
    /// [`super::VersionBaseline`] and [`super::PreviousBaseline`] (one of them).
    pub const BASELINE: &[&str] = &["version", "previous"];
    /// [`super::Score`].
    pub const SCORE: &[&str] = &["pass", "warn"];
    /// [`super::Objective`].
    pub const OBJECTIVE: &[&str] = &[
        "name",
        "description",
        "latency",
        "error_rate",
        "throughput",
        "metric",
        "cpu_regression",
        "goroutine_leak",
        "fail",
        "warn",
        "key",
        "weight",
        "on_violation",
        "slo",
    ];
    /// [`super::Slo`].
    pub const SLO: &[&str] = &["target", "window", "threshold"];
    /// [`super::Latency`].
    pub const LATENCY: &[&str] = &["percentile", "route", "span_name"];
    /// [`super::SpanSelector`].
    pub const SPAN_SELECTOR: &[&str] = &["route", "span_name"];
    /// [`super::Metric`].
    pub const METRIC: &[&str] = &["name", "matchers", "aggregation", "ratio"];
    /// [`super::Ratio`].
    pub const RATIO: &[&str] = &["good", "bad", "total", "counter"];
    /// [`super::MetricSelector`].
    pub const METRIC_SELECTOR: &[&str] = &["name", "matchers"];
    /// [`super::CpuRegression`].
    pub const CPU_REGRESSION: &[&str] = &["profile_type", "min_change", "confidence", "share", "normalize", "work"];
    /// [`super::GoroutineLeak`].
    pub const GOROUTINE_LEAK: &[&str] = &["max_growth_per_minute", "min_duration"];
}

/// The JSON Schema (draft 2020-12) of a contract document, generated from [`ContractFile`];
/// the doc comments above are its descriptions. Point editors at it (e.g. the YAML language
/// server's `# yaml-language-server: $schema=...`) for completion and validation.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(ContractFile).to_value()
}

#[cfg(test)]
mod tests {
    /// The package's directory: where cargo runs this test from now (`CARGO_MANIFEST_DIR` at run
    /// time), not where it was compiled, so a test binary built from another checkout of the same
    /// sources with a shared target directory still reads this checkout's files.
    fn manifest_dir() -> std::path::PathBuf {
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
    }

    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::yaml::{self, Kind, Node, Scalar as YamlScalar};

    /// A YAML node as JSON, with the core schema's types (what an editor's schema check sees).
    fn to_json(node: &Node) -> Value {
        match &node.kind {
            Kind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries.iter().map(|(k, v)| (k.text().unwrap_or_default().to_string(), to_json(v))).collect(),
            ),
            Kind::Scalar { .. } => match node.scalar() {
                Some(YamlScalar::Null) | None => Value::Null,
                Some(YamlScalar::Bool(b)) => Value::Bool(b),
                Some(YamlScalar::Int(n)) => Value::from(n),
                Some(YamlScalar::Float(f)) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
                Some(YamlScalar::Str(s)) => Value::String(s.to_string()),
            },
        }
    }

    fn example_documents() -> Vec<(String, Value)> {
        let mut dirs = vec!["valid", "openslo"];
        let mut docs = Vec::new();
        for dir in dirs.drain(..) {
            let path = manifest_dir().join("tests/data").join(dir);
            let mut files: Vec<_> =
                std::fs::read_dir(&path).expect("test data").map(|e| e.expect("entry").path()).collect();
            files.sort();
            for file in files {
                let name = file.to_string_lossy().into_owned();
                // Contracts only: the valid examples and the importer's output.
                if !(dir == "valid" && name.ends_with(".yaml") || name.ends_with(".out.yaml")) {
                    continue;
                }
                let text = std::fs::read_to_string(&file).expect("read");
                let (documents, error) = yaml::load(&name, &text);
                assert!(error.is_none(), "{name}: {error:?}");
                docs.extend(
                    documents
                        .iter()
                        .filter_map(|d| d.root.as_ref())
                        .filter(|root| !root.is_null())
                        .map(|root| (name.clone(), to_json(root))),
                );
            }
        }
        docs
    }

    #[test]
    fn the_schema_accepts_every_valid_example() {
        let schema = json_schema();
        let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
        let docs = example_documents();
        assert!(docs.len() >= 8);
        for (file, doc) in docs {
            let errors: Vec<String> =
                validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
            assert!(errors.is_empty(), "{file}: {errors:#?}");
            // And the wire types read them (serde with deny_unknown_fields).
            if let Err(e) = serde_json::from_value::<ContractFile>(doc) {
                panic!("{file}: {e}");
            }
        }
    }

    #[test]
    fn the_schema_rejects_an_unknown_key_and_a_second_indicator() {
        let schema = json_schema();
        let validator = jsonschema::validator_for(&schema).expect("valid schema");
        let base = serde_json::json!({
            "apiVersion": "slo-gate/v1", "kind": "Contract", "service": "s",
            "objectives": [{ "name": "l", "latency": { "percentile": "p95" }, "fail": "<= 1s" }]
        });
        assert!(validator.is_valid(&base));
        let mut typo = base.clone();
        typo["servce"] = "s".into();
        assert!(!validator.is_valid(&typo));
        let mut two = base.clone();
        two["objectives"][0]["error_rate"] = serde_json::json!({});
        assert!(!validator.is_valid(&two));
        let mut slo = base.clone();
        slo["objectives"][0]["slo"] = serde_json::json!({ "target": "99.9%", "window": "30d", "threshold": "400ms" });
        assert!(validator.is_valid(&slo));
        slo["objectives"][0]["slo"]["target"] = serde_json::json!(0.999);
        assert!(validator.is_valid(&slo));
        for (key, bad) in [
            ("windw", serde_json::json!("30d")),
            ("target", serde_json::json!("99.9")),
            ("target", serde_json::json!(99.9)),
            ("window", serde_json::json!("1M")),
        ] {
            let mut typo = slo.clone();
            typo["objectives"][0]["slo"][key] = bad.clone();
            assert!(!validator.is_valid(&typo), "{key}: {bad}");
        }
    }

    fn properties(schema: &Value, definition: Option<&str>) -> BTreeSet<String> {
        let object = match definition {
            Some(name) => &schema["$defs"][name],
            None => schema,
        };
        object["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no properties for {definition:?}"))
            .keys()
            .cloned()
            .collect()
    }

    /// Every key the validator accepts is in the schema and the other way round.
    #[test]
    fn validator_keys_equal_schema_properties() {
        let schema = json_schema();
        let set = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>();
        let pairs: [(&[&str], Option<&str>); 12] = [
            (keys::CONTRACT, None),
            (keys::GATE, Some("Gate")),
            (keys::SCORE, Some("Score")),
            (keys::OBJECTIVE, Some("Objective")),
            (keys::LATENCY, Some("Latency")),
            (keys::SPAN_SELECTOR, Some("SpanSelector")),
            (keys::METRIC, Some("Metric")),
            (keys::RATIO, Some("Ratio")),
            (keys::METRIC_SELECTOR, Some("MetricSelector")),
            (keys::CPU_REGRESSION, Some("CpuRegression")),
            (keys::GOROUTINE_LEAK, Some("GoroutineLeak")),
            (keys::SLO, Some("Slo")),
        ];
        for (keys, definition) in pairs {
            assert_eq!(set(keys), properties(&schema, definition), "{definition:?}");
        }
        let mut baseline = properties(&schema, Some("VersionBaseline"));
        baseline.extend(properties(&schema, Some("PreviousBaseline")));
        assert_eq!(set(keys::BASELINE), baseline);
        for definition in ["Gate", "Score", "Objective", "Latency", "Metric", "Ratio", "CpuRegression", "Slo"] {
            assert_eq!(schema["$defs"][definition]["additionalProperties"], Value::Bool(false), "{definition}");
        }
        assert_eq!(schema["additionalProperties"], Value::Bool(false));
    }

    #[test]
    fn doc_comments_become_descriptions() {
        let schema = json_schema();
        let service = schema["properties"]["service"]["description"].as_str().unwrap_or_default();
        assert!(service.contains("service.name"), "{service}");
        assert!(schema["$defs"]["Objective"]["properties"]["fail"]["description"].is_string());
    }
}
