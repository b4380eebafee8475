//! Continuous analysis in `slo-gate serve`: between releases, every step scores each
//! service's span-metric SLIs and the watched metric queries against their dynamic baselines
//! (`analyzer::baseline`), records each incident in a durable journal ([`journal`]) with the
//! attribute values its requests share ([`leads`]), notifies the webhooks, and writes the
//! scores and bands back as metric series so Grafana can plot them.
//!
//! The pipeline of one step ([`Analysis::step`], on the blocking pool):
//!
//! 1. per tenant, the span metrics' cumulative totals are differenced against the previous
//!    step's ([`sli`]): request rate, error ratio and P95 per service, route and version;
//! 2. each watched PromQL query is evaluated at the step's time;
//! 3. each value goes to its series' `analyzer::baseline::Detector` (configured by
//!    `[analysis.detector]` and the context rules that match the series' labels); an incident
//!    that opens or resolves is written to the journal first, then handed to the notifier;
//! 4. the scores, bands and observed values are returned as OTLP gauges, which the loop
//!    stores through the ordinary ingest path (`slo_gate_anomaly_score`,
//!    `slo_gate_baseline_lower`, `slo_gate_baseline_upper`, `slo_gate_baseline_expected`,
//!    `slo_gate_observed`).
//!
//! Every detector's state is kept in `<data-dir>/analysis/state.json` (written whenever an
//! incident opens or resolves, every `state_interval`, and at shutdown; atomically), so a
//! restart continues the baselines instead of learning them again. A series of a new
//! `service.version` starts from the baseline of the route's previous version, so a release
//! that makes a route slower is judged against how the route behaved before it.

pub mod budgets;
pub mod config;
pub mod journal;
pub mod leads;
pub mod sli;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use analyzer::baseline::{Detector, Direction, Incident, Scored};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::{Deserialize, Serialize};

use crate::api::anomalies::{Anomaly, AnomalyStatus, Side};
use crate::notify::{AlertStatus, Notification, Notifier};
use crate::spanmetrics::SpanMetrics;
use crate::store::Store;
use crate::tenant::Tenant;
pub use config::{AnalysisConfig, Watch};
use journal::Journal;

/// The `sli` label of the span-metric series.
pub const REQUEST_RATE: &str = "request_rate";
pub const ERROR_RATIO: &str = "error_ratio";
pub const LATENCY_P95: &str = "latency_p95";

/// Spans a lead search reads at most.
const MAX_LEAD_SPANS: usize = 50_000;
/// Leads kept per incident.
const MAX_LEADS: usize = 5;
/// Steps before an incident whose requests the anomalous ones are compared with.
const LEAD_LOOKBACK_STEPS: i64 = 10;

/// The analysis's figures on `/metrics`.
#[derive(Debug, Default)]
pub struct AnalysisMetrics {
    steps: std::sync::atomic::AtomicU64,
    step_nanos: std::sync::atomic::AtomicU64,
    series: std::sync::atomic::AtomicU64,
    opened: std::sync::atomic::AtomicU64,
    resolved: std::sync::atomic::AtomicU64,
    burn_alerts: std::sync::atomic::AtomicU64,
    warnings: std::sync::atomic::AtomicU64,
}

impl AnalysisMetrics {
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let secs = self.step_nanos.load(Relaxed) as f64 / 1e9;
        for (name, kind, help, value) in [
            ("slo_gate_analysis_steps_total", "counter", "Analysis steps run.", self.steps.load(Relaxed).to_string()),
            ("slo_gate_analysis_step_seconds_total", "counter", "Time spent in analysis steps.", secs.to_string()),
            (
                "slo_gate_analysis_series",
                "gauge",
                "Series the analysis scores, over all tenants.",
                self.series.load(Relaxed).to_string(),
            ),
            (
                "slo_gate_anomalies_opened_total",
                "counter",
                "Incidents the analysis opened.",
                self.opened.load(Relaxed).to_string(),
            ),
            (
                "slo_gate_anomalies_resolved_total",
                "counter",
                "Incidents the analysis resolved.",
                self.resolved.load(Relaxed).to_string(),
            ),
            (
                "slo_gate_burn_rate_alert_transitions_total",
                "counter",
                "Burn-rate alerts that fired or resolved.",
                self.burn_alerts.load(Relaxed).to_string(),
            ),
            (
                "slo_gate_analysis_warnings_total",
                "counter",
                "Problems of analysis steps (a failed watch query, the series limit, a journal or outbox write).",
                self.warnings.load(Relaxed).to_string(),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
    }
}

/// One scored series.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tracked {
    labels: BTreeMap<String, String>,
    detector: Detector,
    /// The incident in progress.
    open: Option<Anomaly>,
    /// The last step that gave the series a point.
    last_ms: i64,
}

/// One tenant's series.
#[derive(Debug, Default, Serialize, Deserialize)]
struct TenantState {
    series: BTreeMap<String, Tracked>,
    /// Not kept across restarts: the span metrics count from zero again after one.
    #[serde(skip)]
    previous: sli::Previous,
    #[serde(skip)]
    last_step_ms: Option<i64>,
    /// Error budgets, by [`budgets::SloObjective::key`].
    #[serde(default)]
    budgets: BTreeMap<String, analyzer::burn::BudgetTracker>,
}

/// What `state.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    tenants: BTreeMap<String, TenantState>,
}

/// The continuous analysis of one collector.
#[derive(Debug)]
pub struct Analysis {
    config: AnalysisConfig,
    state_path: PathBuf,
    store: Arc<Store>,
    span_metrics: Option<Arc<SpanMetrics>>,
    journal: Arc<Journal>,
    notifier: Option<Arc<Notifier>>,
    objectives: Vec<budgets::SloObjective>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    saved: Saved,
    /// When the state was last written (a monotonic instant).
    written: Option<Instant>,
}

/// What one step produced for the loop to store.
#[derive(Debug, Default)]
pub struct StepOutput {
    /// The scores and bands as gauges, per tenant.
    pub exports: Vec<(Tenant, ExportMetricsServiceRequest)>,
    /// Incidents that opened or resolved, each already in the journal.
    pub changed: Vec<(Tenant, Anomaly)>,
    /// Burn-rate alerts that fired or resolved.
    pub alerts: Vec<(Tenant, String, analyzer::burn::AlertEvent)>,
    /// Problems of this step (a watched query that failed, the series limit reached).
    pub warnings: Vec<String>,
}

/// One value to score.
struct Point {
    key: String,
    labels: BTreeMap<String, String>,
    value: f64,
    /// For span-metric SLIs: the spans behind the series, for leads.
    group: Option<sli::Group>,
    sli: Option<&'static str>,
}

impl Analysis {
    /// The analysis, with the detectors' state read back from `<data-dir>/analysis/state.json`.
    /// A state file that cannot be read is set aside (`state.json.damaged`) with a warning and
    /// the baselines start afresh: it costs the history, never the collector. Fails when a
    /// contract of `analysis.contracts` cannot be read or is invalid (every problem named).
    pub fn open(
        config: AnalysisConfig,
        data_dir: &std::path::Path,
        store: Arc<Store>,
        span_metrics: Option<Arc<SpanMetrics>>,
        journal: Arc<Journal>,
        notifier: Option<Arc<Notifier>>,
    ) -> Result<Analysis, String> {
        let (objectives, warnings) = budgets::load(&config.contracts)?;
        for w in warnings {
            tracing::warn!("analysis.contracts: {w}");
        }
        let state_path = data_dir.join("analysis").join("state.json");
        let saved = match std::fs::read(&state_path) {
            Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                Ok(saved) => saved,
                Err(err) => {
                    let aside = state_path.with_extension("json.damaged");
                    let _ = std::fs::rename(&state_path, &aside);
                    tracing::warn!(error = %err, "analysis/state.json could not be read: set aside as state.json.damaged, baselines start afresh");
                    Saved::default()
                }
            },
            Err(_) => Saved::default(),
        };
        Ok(Analysis {
            config,
            state_path,
            store,
            span_metrics,
            journal,
            notifier,
            objectives,
            state: Mutex::new(State { saved, written: None }),
        })
    }

    pub fn config(&self) -> &AnalysisConfig {
        &self.config
    }

    /// Series scored, over all tenants.
    pub fn series_count(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.saved.tenants.values().map(|t| t.series.len()).sum()
    }

    /// Scores every series at `now_ms`. Blocking (it may read spans and evaluate queries).
    pub fn step(&self, now_ms: i64) -> StepOutput {
        use std::sync::atomic::Ordering::Relaxed;
        let started = Instant::now();
        let out = self.step_inner(now_ms);
        let m = &self.store.telemetry().analysis;
        m.steps.fetch_add(1, Relaxed);
        m.step_nanos.fetch_add(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX), Relaxed);
        m.series.store(self.series_count() as u64, Relaxed);
        for (_, a) in &out.changed {
            match a.status {
                AnomalyStatus::Open => m.opened.fetch_add(1, Relaxed),
                AnomalyStatus::Resolved => m.resolved.fetch_add(1, Relaxed),
            };
        }
        m.burn_alerts.fetch_add(out.alerts.len() as u64, Relaxed);
        m.warnings.fetch_add(out.warnings.len() as u64, Relaxed);
        out
    }

    fn step_inner(&self, now_ms: i64) -> StepOutput {
        let mut out = StepOutput::default();
        let mut points: BTreeMap<Tenant, Vec<Point>> = BTreeMap::new();
        let mut budget_gauges: BTreeMap<Tenant, Gauges> = BTreeMap::new();
        let mut changed = false;
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        if let Some(span_metrics) = &self.span_metrics {
            let at = sli::Positions::of(span_metrics);
            for tenant in span_metrics.tenants() {
                let ts = state.saved.tenants.entry(tenant.as_str().to_string()).or_default();
                let groups = sli::deltas(&mut ts.previous, span_metrics.snapshot(&tenant), at);
                let Some(last) = ts.last_step_ms.replace(now_ms) else { continue };
                let seconds = (now_ms - last) as f64 / 1000.0;
                if seconds <= 0.0 {
                    continue;
                }
                let bounds = span_metrics.bounds_seconds();
                let gauges = budget_gauges.entry(tenant.clone()).or_default();
                for objective in &self.objectives {
                    let Some((good, total)) = objective.count(&groups, bounds) else { continue };
                    let tracker = match ts.budgets.entry(objective.key()) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => match objective.tracker() {
                            Ok(t) => e.insert(t),
                            Err(err) => {
                                out.warnings.push(err);
                                continue;
                            }
                        },
                    };
                    let time = u64::try_from(now_ms).unwrap_or(0);
                    let step = match tracker.step(time, good, total) {
                        Ok(step) => step,
                        Err(err) => {
                            out.warnings.push(format!("objective {}: {err}", objective.key()));
                            continue;
                        }
                    };
                    gauges.budget(objective, &step.status, now_ms);
                    for event in step.events {
                        changed = true;
                        out.alerts.push((tenant.clone(), objective.key(), event.clone()));
                        self.notify(burn_notification(&tenant, objective, &event), &mut out.warnings);
                    }
                }
                let list = points.entry(tenant.clone()).or_default();
                for (group, delta) in groups {
                    list.extend(self.sli_points(&group, &delta, seconds, bounds));
                }
            }
        }
        for watch in &self.config.watch {
            match self.watch_points(watch, now_ms) {
                Ok((tenant, found)) => points.entry(tenant).or_default().extend(found),
                Err(err) => out.warnings.push(format!("watch {:?}: {err}", watch.name)),
            }
        }
        for (tenant, list) in points {
            let ts = state.saved.tenants.entry(tenant.as_str().to_string()).or_default();
            let mut gauges = budget_gauges.remove(&tenant).unwrap_or_default();
            for point in list {
                if !ts.series.contains_key(&point.key) && ts.series.len() >= self.config.max_series {
                    out.warnings.push(format!(
                        "tenant {tenant}: {} series are scored already (analysis.max_series); {} is not",
                        self.config.max_series, point.key
                    ));
                    continue;
                }
                let tracked = match ts.series.get_mut(&point.key) {
                    Some(t) => t,
                    None => {
                        let detector = self.new_detector(&ts.series, &point);
                        ts.series.entry(point.key.clone()).or_insert(Tracked {
                            labels: point.labels.clone(),
                            detector,
                            open: None,
                            last_ms: now_ms,
                        })
                    }
                };
                tracked.last_ms = now_ms;
                let scored = tracked.detector.update(now_ms, point.value);
                gauges.add(&point.labels, &scored, point.value, now_ms);
                if let Some(anomaly) = self.follow(&tenant, tracked, &point, &scored, now_ms) {
                    changed = true;
                    // The outbox first, then the journal, then the state: a crash in between
                    // sends a notification twice (receivers dedup by fingerprint), never zero times.
                    self.notify(anomaly_notification(&tenant, &anomaly), &mut out.warnings);
                    match self.journal.record(&tenant, &anomaly, now_ms) {
                        Ok(()) => out.changed.push((tenant.clone(), anomaly)),
                        Err(err) => out.warnings.push(err.to_string()),
                    }
                }
            }
            if let Some(request) = gauges.request() {
                out.exports.push((tenant, request));
            }
        }
        // Tenants with budgets but no scored point this step.
        for (tenant, gauges) in budget_gauges {
            if let Some(request) = gauges.request() {
                out.exports.push((tenant, request));
            }
        }
        let due = state.written.is_none_or(|w| w.elapsed() >= self.config.state_interval.0);
        if (changed || due)
            && let Err(err) = self.write_state(state)
        {
            out.warnings.push(err);
        }
        out
    }

    /// Hands a notification to the outbox, when webhooks are configured.
    fn notify(&self, notification: Notification, warnings: &mut Vec<String>) {
        if let Some(notifier) = &self.notifier
            && let Err(err) = notifier.send_blocking(&notification)
        {
            warnings.push(format!("the notification could not be queued: {err}"));
        }
    }

    /// Writes the detectors' state, atomically.
    fn write_state(&self, state: &mut State) -> Result<(), String> {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.state_path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self.state_path.with_extension("json.writing");
            let bytes = serde_json::to_vec(&state.saved).map_err(std::io::Error::other)?;
            {
                let mut file = std::fs::File::create(&tmp)?;
                std::io::Write::write_all(&mut file, &bytes)?;
                file.sync_all()?;
            }
            std::fs::rename(&tmp, &self.state_path)?;
            if let Some(dir) = self.state_path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        state.written = Some(Instant::now());
        write().map_err(|e| format!("cannot write the analysis state analysis/state.json: {e}"))
    }

    /// Forgets a deleted tenant: its baselines, open incidents and error budgets, in memory and
    /// in `state.json`.
    pub fn forget(&self, tenant: &Tenant) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.saved.tenants.remove(tenant.as_str()).is_none() {
            return Ok(());
        }
        self.write_state(&mut state)
    }

    /// Writes the state now (at shutdown).
    pub fn save(&self) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.write_state(&mut state)
    }

    /// The points of one group's SLIs for a step of `seconds`.
    fn sli_points(&self, group: &sli::Group, delta: &sli::Delta, seconds: f64, bounds: &[f64]) -> Vec<Point> {
        let mut out = Vec::with_capacity(3);
        let mut point = |sli: &'static str, value: f64| {
            let mut labels = BTreeMap::from([
                ("sli".to_string(), sli.to_string()),
                ("service_name".to_string(), group.service.clone()),
                ("http_route".to_string(), group.route.clone()),
            ]);
            if !group.version.is_empty() {
                labels.insert("service_version".to_string(), group.version.clone());
            }
            out.push(Point { key: series_key(&labels), labels, value, group: Some(group.clone()), sli: Some(sli) });
        };
        point(REQUEST_RATE, delta.calls as f64 / seconds);
        if delta.calls >= self.config.min_requests.max(1) {
            point(ERROR_RATIO, delta.errors as f64 / delta.calls as f64);
            if let Some(p95) = sli::quantile(0.95, bounds, &delta.buckets) {
                point(LATENCY_P95, p95);
            }
        }
        out
    }

    /// The points of one watched query at `now_ms`.
    fn watch_points(&self, watch: &Watch, now_ms: i64) -> Result<(Tenant, Vec<Point>), String> {
        let tenant = Tenant::parse(&watch.tenant).map_err(|e| e.to_string())?;
        use crate::query::prometheus::{MAX_SAMPLES, MAX_SERIES, QUERY_TIMEOUT};
        let deadline = Some(Instant::now() + QUERY_TIMEOUT);
        let source = crate::query::prometheus::series::StoreSource {
            store: Arc::clone(&self.store),
            tenant: tenant.clone(),
            max_series: MAX_SERIES,
            max_samples: MAX_SAMPLES,
            deadline,
            warnings: Default::default(),
        };
        let options = prom::engine::Options { max_samples: MAX_SAMPLES, deadline, ..prom::engine::Options::default() };
        let value = prom::engine::instant(&watch.query, now_ms, &source, &options).map_err(|e| e.to_string())?;
        let samples: Vec<(prom::model::Labels, f64)> = match value {
            prom::engine::Value::Vector(samples) => samples.into_iter().map(|s| (s.labels, s.v)).collect(),
            prom::engine::Value::Scalar { v, .. } => vec![(prom::model::Labels::default(), v)],
            _ => return Err("the query must give an instant vector or a scalar".into()),
        };
        let points = samples
            .into_iter()
            .map(|(labels, value)| {
                let mut labels: BTreeMap<String, String> =
                    labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                labels.insert("watch".to_string(), watch.name.clone());
                Point { key: series_key(&labels), labels, value, group: None, sli: None }
            })
            .collect();
        Ok((tenant, points))
    }

    /// A detector for a new series: the context rules' configuration for its labels, over the
    /// SLI's own floors (below); a series of
    /// a new version of a route starts from the newest baseline of the route's other versions.
    fn new_detector(&self, series: &BTreeMap<String, Tracked>, point: &Point) -> Detector {
        if point.labels.contains_key("service_version") {
            let same_route = |t: &&Tracked| {
                ["sli", "service_name", "http_route"].iter().all(|k| t.labels.get(*k) == point.labels.get(*k))
                    && t.labels.contains_key("service_version")
            };
            if let Some(before) = series.values().filter(same_route).max_by_key(|t| t.last_ms) {
                return before.detector.clone();
            }
        }
        let mut base = self.config.detector.clone();
        // What a step's SLI cannot tell apart from noise, unless `[analysis.detector]` or a
        // context rule says otherwise: a steady route's request count varies with where the
        // step's boundary falls between export batches (a batch counted one step later moves
        // two points by its size), so the band learnt from a very regular series is too narrow
        // to hold it; one failed request in a step's hundred, or a P95 moved inside its
        // histogram bucket, is not an incident either. Latency and errors are judged upwards.
        match point.sli {
            Some(REQUEST_RATE) if base.min_relative_deviation == 0.0 => base.min_relative_deviation = 0.3,
            Some(ERROR_RATIO) => {
                base.direction = Direction::Above;
                if base.min_deviation == 0.0 {
                    base.min_deviation = 0.01;
                }
            }
            Some(LATENCY_P95) => {
                base.direction = Direction::Above;
                if base.min_relative_deviation == 0.0 {
                    base.min_relative_deviation = 0.1;
                }
            }
            _ => {}
        }
        let labels: Vec<(&str, &str)> = point.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = self.config.context.config_for(&base, &labels);
        // The configuration was validated at start, each rule's overrides too.
        Detector::new(config.clone())
            .or_else(|_| Detector::new(self.config.detector.clone()))
            .unwrap_or_else(|_| Detector::new(analyzer::baseline::Config::default()).expect("the default is valid"))
    }

    /// Keeps the series' incident up to date; returns it when it opened or resolved.
    fn follow(
        &self,
        tenant: &Tenant,
        tracked: &mut Tracked,
        point: &Point,
        scored: &Scored,
        now_ms: i64,
    ) -> Option<Anomaly> {
        if let Some(open) = &mut tracked.open
            && scored.score > open.peak_score
        {
            open.peak_score = scored.score;
            open.peak_ms = now_ms;
            open.expected = scored.expected;
            open.actual = point.value;
            open.side = if point.value >= scored.expected { Side::Above } else { Side::Below };
        }
        match scored.event.as_ref()? {
            Incident::Opened { start_ms } => {
                let mut anomaly = Anomaly {
                    id: anomaly_id(tenant, &point.key, *start_ms),
                    series: tracked.labels.clone(),
                    service: tracked.labels.get("service_name").cloned(),
                    status: AnomalyStatus::Open,
                    start_ms: *start_ms,
                    end_ms: None,
                    peak_score: scored.score,
                    peak_ms: now_ms,
                    side: if point.value >= scored.expected { Side::Above } else { Side::Below },
                    expected: scored.expected,
                    actual: point.value,
                    leads: Vec::new(),
                };
                anomaly.leads = self.leads(tenant, point, &anomaly, now_ms);
                tracked.open = Some(anomaly.clone());
                Some(anomaly)
            }
            Incident::Resolved { start_ms, end_ms, peak_score, peak_ms, expected_at_peak, actual_at_peak } => {
                let mut anomaly = tracked.open.take().unwrap_or_else(|| Anomaly {
                    id: anomaly_id(tenant, &point.key, *start_ms),
                    series: tracked.labels.clone(),
                    service: tracked.labels.get("service_name").cloned(),
                    status: AnomalyStatus::Open,
                    start_ms: *start_ms,
                    end_ms: None,
                    peak_score: 0.0,
                    peak_ms: *peak_ms,
                    side: Side::Above,
                    expected: f64::NAN,
                    actual: f64::NAN,
                    leads: Vec::new(),
                });
                anomaly.status = AnomalyStatus::Resolved;
                anomaly.end_ms = Some(*end_ms);
                if *peak_score >= anomaly.peak_score {
                    anomaly.peak_score = *peak_score;
                    anomaly.peak_ms = *peak_ms;
                    anomaly.expected = *expected_at_peak;
                    anomaly.actual = *actual_at_peak;
                    anomaly.side = if actual_at_peak >= expected_at_peak { Side::Above } else { Side::Below };
                }
                let leads = self.leads(tenant, point, &anomaly, *end_ms);
                if !leads.is_empty() {
                    anomaly.leads = leads;
                }
                Some(anomaly)
            }
        }
    }

    /// The attribute values the incident's requests share (span-metric latency and error
    /// incidents above the band only).
    fn leads(&self, tenant: &Tenant, point: &Point, anomaly: &Anomaly, to_ms: i64) -> Vec<crate::api::anomalies::Lead> {
        let Some(group) = &point.group else { return Vec::new() };
        if anomaly.side != Side::Above {
            return Vec::new();
        }
        let anomalous = match point.sli {
            Some(LATENCY_P95) if anomaly.expected.is_finite() => leads::Anomalous::Slower(anomaly.expected),
            Some(ERROR_RATIO) => leads::Anomalous::Failed,
            _ => return Vec::new(),
        };
        let step_ms = i64::try_from(self.config.step.0.as_millis()).unwrap_or(i64::MAX);
        let ns = |ms: i64| u64::try_from(ms.max(0)).unwrap_or(0).saturating_mul(1_000_000);
        let window = leads::Window {
            service: group.service.clone(),
            route: Some(group.route.clone()),
            from_ns: ns(anomaly.start_ms.saturating_sub(step_ms.saturating_mul(LEAD_LOOKBACK_STEPS + 1))),
            incident_ns: ns(anomaly.start_ms.saturating_sub(step_ms)),
            to_ns: ns(to_ms),
        };
        let (found, warnings) = leads::find(&self.store, tenant, &window, anomalous, MAX_LEAD_SPANS, MAX_LEADS);
        for w in warnings {
            tracing::warn!(tenant = %tenant, "{w}");
        }
        found
    }
}

/// A series' key: its labels as Prometheus prints a label set.
fn series_key(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// An incident's id: FNV-1a 64 of tenant, series and start, in hex — the same incident always
/// gets the same id, so a record written again after a restart replaces the first.
fn anomaly_id(tenant: &Tenant, key: &str, start_ms: i64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tenant.as_str().bytes().chain([0xff]).chain(key.bytes()).chain([0xff]).chain(start_ms.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The gauges of one tenant's step.
#[derive(Default)]
struct Gauges {
    metrics: BTreeMap<&'static str, Vec<NumberDataPoint>>,
}

impl Gauges {
    fn add(&mut self, labels: &BTreeMap<String, String>, scored: &Scored, value: f64, now_ms: i64) {
        let time = u64::try_from(now_ms).unwrap_or(0).saturating_mul(1_000_000);
        let attributes: Vec<KeyValue> = labels.iter().map(|(k, v)| text(k, v)).collect();
        let mut put = |name: &'static str, v: f64| {
            if v.is_finite() {
                self.metrics.entry(name).or_default().push(NumberDataPoint {
                    attributes: attributes.clone(),
                    time_unix_nano: time,
                    value: Some(number_data_point::Value::AsDouble(v)),
                    ..Default::default()
                });
            }
        };
        put("slo_gate_observed", value);
        if scored.expected.is_finite() {
            put("slo_gate_anomaly_score", scored.score);
            put("slo_gate_baseline_expected", scored.expected);
            put("slo_gate_baseline_lower", scored.lower);
            put("slo_gate_baseline_upper", scored.upper);
        }
    }

    fn budget(&mut self, objective: &budgets::SloObjective, status: &analyzer::burn::BudgetStatus, now_ms: i64) {
        let time = u64::try_from(now_ms).unwrap_or(0).saturating_mul(1_000_000);
        let labels = |window: Option<&str>| {
            let mut l = vec![text("service_name", &objective.service), text("objective", &objective.objective)];
            if let Some(w) = window {
                l.push(text("window", w));
            }
            l
        };
        let point = |attributes: Vec<KeyValue>, v: f64| NumberDataPoint {
            attributes,
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        };
        if let Some(v) = status.budget_remaining.filter(|v| v.is_finite()) {
            self.metrics.entry("slo_gate_error_budget_remaining").or_default().push(point(labels(None), v));
        }
        for w in &status.burn_rates {
            if let Some(v) = w.burn_rate.filter(|v| v.is_finite()) {
                self.metrics.entry("slo_gate_burn_rate").or_default().push(point(labels(Some(&w.window)), v));
            }
        }
    }

    fn request(self) -> Option<ExportMetricsServiceRequest> {
        if self.metrics.is_empty() {
            return None;
        }
        let metrics = self
            .metrics
            .into_iter()
            .map(|(name, data_points)| Metric {
                name: name.to_string(),
                description: description(name).to_string(),
                data: Some(metric::Data::Gauge(Gauge { data_points })),
                ..Default::default()
            })
            .collect();
        Some(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue { value: Some(any_value::Value::StringValue("slo-gate".into())) }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope { name: "slo-gate/analysis".into(), ..Default::default() }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
        ..Default::default()
    }
}

fn description(name: &str) -> &'static str {
    match name {
        "slo_gate_error_budget_remaining" => {
            "Share of the SLO's error budget left over its compliance window (negative: overspent)"
        }
        "slo_gate_burn_rate" => {
            "How fast the SLO's error budget burns over the window: 1 spends exactly the budget in the compliance window"
        }
        "slo_gate_anomaly_score" => {
            "How far the series is from its baseline, in band half-widths: above 1 is outside the band"
        }
        "slo_gate_baseline_expected" => "The value the series' baseline expects now",
        "slo_gate_baseline_lower" => "Lower edge of the series' expected band",
        "slo_gate_baseline_upper" => "Upper edge of the series' expected band",
        _ => "The value the analysis scored",
    }
}

/// Runs the analysis every `step` until `shutdown`, storing each step's gauges through the
/// ingest path, then writes the state one last time.
pub fn start(
    analysis: Arc<Analysis>,
    ingest: Arc<crate::receive::Ingest>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(analysis.config.step.0);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => break,
            }
            let this = Arc::clone(&analysis);
            let Ok(out) = tokio::task::spawn_blocking(move || this.step(now_ms())).await else { continue };
            for warning in &out.warnings {
                tracing::warn!("analysis: {warning}");
            }
            for (tenant, anomaly) in &out.changed {
                tracing::info!(tenant = %tenant, id = %anomaly.id, status = ?anomaly.status, series = ?anomaly.series, "anomaly");
            }
            for (tenant, request) in out.exports {
                // The gauges are a view of the state: a step whose write is refused (overload,
                // a full disk) leaves a gap in them, nothing else.
                if let Err(err) = ingest.export(tenant, request, crate::receive::Raw::None).await {
                    tracing::warn!(error = %err, "analysis: the scores of this step could not be stored");
                }
            }
        }
        let this = Arc::clone(&analysis);
        if let Ok(Err(err)) = tokio::task::spawn_blocking(move || this.save()).await {
            tracing::warn!("analysis: {err}");
        }
        // What the webhooks have not taken stays in the outbox for the next start.
        if let Some(notifier) = &analysis.notifier {
            notifier.shutdown().await;
        }
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The notification of an incident opening or resolving.
fn anomaly_notification(tenant: &Tenant, anomaly: &Anomaly) -> Notification {
    let mut labels: BTreeMap<String, String> =
        anomaly.series.iter().filter(|(k, _)| is_label_name(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    labels.insert("alertname".into(), "SLOGateAnomaly".into());
    labels.insert("tenant".into(), tenant.as_str().to_string());
    labels.insert("anomaly_id".into(), anomaly.id.clone());
    let what = anomaly.series.get("sli").or(anomaly.series.get("watch")).cloned().unwrap_or_default();
    let whose = [anomaly.series.get("service_name"), anomaly.series.get("http_route")]
        .into_iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let side = match anomaly.side {
        Side::Above => "above",
        Side::Below => "below",
    };
    let mut annotations = BTreeMap::from([
        ("summary".to_string(), format!("{what} of {whose} is {side} its baseline").trim().to_string()),
        ("expected".to_string(), format_number(anomaly.expected)),
        ("actual".to_string(), format_number(anomaly.actual)),
        ("peak_score".to_string(), format_number(anomaly.peak_score)),
    ]);
    if !anomaly.leads.is_empty() {
        let sentences: Vec<&str> = anomaly.leads.iter().map(|l| l.sentence.as_str()).collect();
        annotations.insert("description".to_string(), sentences.join("; "));
    }
    Notification {
        status: match anomaly.status {
            AnomalyStatus::Open => AlertStatus::Firing,
            AnomalyStatus::Resolved => AlertStatus::Resolved,
        },
        labels,
        annotations,
        starts_at_ms: anomaly.start_ms,
        ends_at_ms: anomaly.end_ms.map(|e| e.max(anomaly.start_ms)),
        generator_url: String::new(),
    }
}

/// The notification of a burn-rate alert firing or resolving.
fn burn_notification(
    tenant: &Tenant,
    objective: &budgets::SloObjective,
    event: &analyzer::burn::AlertEvent,
) -> Notification {
    let rule = &event.rule;
    let long = analyzer::burn::window_label(rule.long_window_ms);
    let short = analyzer::burn::window_label(rule.short_window_ms);
    let labels = BTreeMap::from([
        ("alertname".to_string(), "SLOGateBurnRate".to_string()),
        ("tenant".to_string(), tenant.as_str().to_string()),
        ("service_name".to_string(), objective.service.clone()),
        ("objective".to_string(), objective.objective.clone()),
        ("severity".to_string(), event.severity.name().to_string()),
        ("long_window".to_string(), long.clone()),
        ("short_window".to_string(), short.clone()),
    ]);
    let rate = |r: Option<f64>| r.map_or("no events".to_string(), format_number);
    let mut annotations = BTreeMap::from([
        (
            "summary".to_string(),
            format!(
                "{} of {} burns its error budget at {}x over {long} and {}x over {short} (alert at {}x)",
                objective.objective,
                objective.service,
                rate(event.long_burn_rate),
                rate(event.short_burn_rate),
                format_number(rule.burn_rate)
            ),
        ),
        ("long_burn_rate".to_string(), rate(event.long_burn_rate)),
        ("short_burn_rate".to_string(), rate(event.short_burn_rate)),
    ]);
    if let Some(b) = event.budget_remaining {
        annotations.insert("budget_remaining".to_string(), format_number(b));
    }
    let since = i64::try_from(event.since_ms).unwrap_or(i64::MAX);
    Notification {
        status: match event.state {
            analyzer::burn::AlertState::Firing => AlertStatus::Firing,
            analyzer::burn::AlertState::Resolved => AlertStatus::Resolved,
        },
        labels,
        annotations,
        starts_at_ms: since,
        ends_at_ms: match event.state {
            analyzer::burn::AlertState::Firing => None,
            analyzer::burn::AlertState::Resolved => Some(i64::try_from(event.time_ms).unwrap_or(i64::MAX).max(since)),
        },
        generator_url: String::new(),
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A value for an annotation: up to four significant decimals, no exponent for usual sizes.
fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return "unknown".to_string();
    }
    let text = format!("{v:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
