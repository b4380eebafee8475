//! The analysis step over a real store and real span metrics, with simulated step times.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::*;
use crate::analysis::journal::JournalSettings;
use crate::config::{Durability, Limits, ServerLimits, SpanMetricsConfig};
use crate::receive::admission::Admission;
use crate::receive::{Ingest, Raw};
use crate::store::StoreSettings;
use crate::telemetry::Telemetry;

const STEP_MS: i64 = 60_000;

struct Rig {
    _dir: tempfile::TempDir,
    ingest: Ingest,
    analysis: Analysis,
    journal: Arc<Journal>,
    rt: tokio::runtime::Runtime,
}

fn rig(dir: tempfile::TempDir, config: AnalysisConfig) -> Rig {
    let telemetry = Arc::new(Telemetry::default());
    let settings = StoreSettings {
        durability: Durability::None,
        group_commit_interval: Duration::from_millis(1),
        flush_interval: Duration::from_secs(3600),
        max_head_bytes: 1 << 30,
        retention: Duration::from_secs(30 * 86_400),
        retention_interval: Duration::from_secs(3600),
        min_tenant_part_bytes: 1 << 20,
        verify_parts_at_start: false,
        min_free_bytes: 0,
        span_index_cache_bytes: 64 << 20,
        trace_key_bytes: 64 << 20,
    };
    let store = Arc::new(Store::open(dir.path(), settings, Arc::clone(&telemetry)).unwrap());
    let span_metrics = Arc::new(SpanMetrics::new(&SpanMetricsConfig::default()).unwrap());
    let admission = Admission::new(&ServerLimits::default(), Arc::clone(&telemetry));
    let ingest = Ingest::new(Arc::clone(&store), Limits::default(), telemetry, admission)
        .with_span_metrics(Arc::clone(&span_metrics));
    let journal = Arc::new(Journal::new(
        dir.path(),
        JournalSettings { retention: Duration::from_secs(30 * 86_400), max_bytes: 1 << 20 },
    ));
    let analysis = Analysis::open(config, dir.path(), store, Some(span_metrics), Arc::clone(&journal), None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    Rig { _dir: dir, ingest, analysis, journal, rt }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// A small deterministic generator (SplitMix64), so the test's noise is the same every run.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One step's SERVER spans of `checkout` on four hosts: `calls` requests on `/pay`, lasting
/// 30–60 ms, except those on `node-3` while `slow_host` is set, which last 300–400 ms; `errors`
/// of them (on `node-2`) failed.
fn spans(start_ms: i64, calls: usize, slow_host: bool, errors: usize, noise: &mut Noise) -> ExportTraceServiceRequest {
    let hosts = ["node-1", "node-2", "node-3", "node-4"];
    let resource_spans = hosts
        .iter()
        .enumerate()
        .map(|(h, host)| {
            let spans = (0..calls)
                .filter(|i| i % hosts.len() == h)
                .map(|i| {
                    let slow = slow_host && *host == "node-3";
                    let ms = if slow { 300.0 + 100.0 * noise.next() } else { 30.0 + 30.0 * noise.next() };
                    let start = (start_ms as u64 + (i as u64 * 50)) * 1_000_000;
                    let failed = *host == "node-2" && i / hosts.len() < errors;
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&(start_ms as u64).to_be_bytes());
                    id[8..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
                    Span {
                        trace_id: id.to_vec(),
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: "POST /pay".into(),
                        kind: 2,
                        start_time_unix_nano: start,
                        end_time_unix_nano: start + (ms * 1e6) as u64,
                        attributes: vec![text("http.route", "/pay")],
                        status: Some(Status { code: if failed { 2 } else { 0 }, ..Default::default() }),
                        ..Default::default()
                    }
                })
                .collect();
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        text("service.name", "checkout"),
                        text("service.version", "v1"),
                        text("host.name", host),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn config() -> AnalysisConfig {
    AnalysisConfig { step: slo_contracts::HumanDuration(Duration::from_millis(STEP_MS as u64)), ..Default::default() }
}

/// A minute-aligned start two days ago, so every simulated step lies in the past.
fn start_ms() -> i64 {
    (now_ms() - 2 * 86_400_000) / STEP_MS * STEP_MS
}

fn series<'a>(anomaly: &'a Anomaly, key: &str) -> Option<&'a str> {
    anomaly.series.get(key).map(String::as_str)
}

// The issue's scenario in one process: a latency incident on one route confined to one host
// raises exactly one anomaly, on that route's P95, naming that host, and one resolution; the
// request rate and error ratio, unchanged, raise nothing; scores and bands are gauges.
#[test]
fn a_latency_incident_on_one_host_is_one_anomaly_naming_the_route_and_the_host() {
    let rig = rig(tempfile::tempdir().unwrap(), config());
    let tenant = Tenant::parse("anonymous").unwrap();
    let mut noise = Noise(7);
    let t0 = start_ms();
    let mut exports = 0;
    let mut opened_at = None;
    for step in 0..160i64 {
        let t = t0 + step * STEP_MS;
        let slow = (100..108).contains(&step);
        rig.rt.block_on(rig.ingest.export(tenant.clone(), spans(t, 200, slow, 0, &mut noise), Raw::None)).unwrap();
        let out = rig.analysis.step(t + STEP_MS);
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        exports += out.exports.len();
        for (_, a) in &out.changed {
            if a.status == AnomalyStatus::Open {
                assert!(opened_at.is_none(), "one incident, one anomaly: {a:?}");
                opened_at = Some(step);
            }
        }
    }
    assert!(exports > 100, "each step writes its gauges: {exports}");
    let read = rig.journal.read(&tenant).unwrap();
    assert_eq!(read.anomalies.len(), 1, "{:#?}", read.anomalies);
    let a = &read.anomalies[0];
    assert_eq!(series(a, "sli"), Some(LATENCY_P95));
    assert_eq!(series(a, "http_route"), Some("/pay"));
    assert_eq!(series(a, "service_name"), Some("checkout"));
    assert_eq!(a.status, AnomalyStatus::Resolved);
    let opened_at = opened_at.unwrap();
    assert!((100..=102).contains(&opened_at), "raised early: at step {opened_at}");
    assert!(a.start_ms >= t0 + 100 * STEP_MS && a.start_ms <= t0 + 102 * STEP_MS, "{a:?}");
    assert!(a.end_ms.unwrap() > t0 + 107 * STEP_MS && a.end_ms.unwrap() < t0 + 125 * STEP_MS, "{a:?}");
    assert_eq!(a.side, Side::Above);
    assert!(a.actual > 0.2 && a.expected < 0.1, "{a:?}");
    let lead = a.leads.first().expect("the host is named");
    assert_eq!((lead.key.as_str(), lead.value.as_str()), ("host.name", "node-3"), "{:?}", a.leads);
    assert!(lead.selection_share > 0.9 && lead.baseline_share < 0.3, "{lead:?}");
    assert!(lead.sentence.contains("of slow requests have host.name=node-3"), "{}", lead.sentence);
    let metrics = rig.analysis.store.telemetry().render();
    for line in [
        "slo_gate_anomalies_opened_total 1\n",
        "slo_gate_anomalies_resolved_total 1\n",
        "slo_gate_analysis_steps_total 160\n",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

// The detectors' state is kept across a restart: a restarted analysis scores the next points
// exactly as the one that never stopped.
#[test]
fn a_restart_continues_the_baselines() {
    let tenant = Tenant::parse("anonymous").unwrap();
    let run = |restart_at: Option<i64>| -> Vec<(String, f64)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut rig = rig(dir, config());
        let mut noise = Noise(11);
        let t0 = start_ms();
        let mut scores = Vec::new();
        for step in 0..60i64 {
            let t = t0 + step * STEP_MS;
            if restart_at == Some(step) {
                rig.analysis.save().unwrap();
                // The span metrics keep counting (same process); the analysis is opened anew.
                let span_metrics = rig.analysis.span_metrics.clone();
                rig.analysis = Analysis::open(
                    config(),
                    &path,
                    Arc::clone(&rig.analysis.store),
                    span_metrics,
                    Arc::clone(&rig.journal),
                    None,
                )
                .unwrap();
                // A restarted analysis has no previous totals: the first step only takes them.
                rig.analysis.step(t);
            }
            rig.rt.block_on(rig.ingest.export(tenant.clone(), spans(t, 100, false, 2, &mut noise), Raw::None)).unwrap();
            let out = rig.analysis.step(t + STEP_MS);
            if step == 0 || restart_at == Some(step) {
                continue;
            }
            for (_, request) in &out.exports {
                for m in &request.resource_metrics[0].scope_metrics[0].metrics {
                    if m.name != "slo_gate_anomaly_score" {
                        continue;
                    }
                    let Some(metric::Data::Gauge(g)) = &m.data else { continue };
                    for p in &g.data_points {
                        let sli = p.attributes.iter().find(|kv| kv.key == "sli").unwrap();
                        let Some(number_data_point::Value::AsDouble(v)) = p.value else { continue };
                        scores.push((format!("{step} {sli:?}"), v));
                    }
                }
            }
        }
        scores
    };
    let straight = run(None);
    let restarted = run(Some(30));
    assert!(straight.len() > 50, "{}", straight.len());
    let skip_restart_step = |s: &(String, f64)| !s.0.starts_with("30 ");
    let a: Vec<_> = straight.iter().filter(|s| skip_restart_step(s)).collect();
    let b: Vec<_> = restarted.iter().filter(|s| skip_restart_step(s)).collect();
    assert_eq!(a, b);
}

// A state file that cannot be read costs the baselines, not the collector: it is set aside
// and the analysis starts afresh.
#[test]
fn a_damaged_state_file_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("analysis")).unwrap();
    std::fs::write(dir.path().join("analysis/state.json"), b"{\"tenants\": {\"x\": [1, 2").unwrap();
    let path = dir.path().to_path_buf();
    let rig = rig(dir, config());
    assert_eq!(rig.analysis.series_count(), 0);
    assert!(path.join("analysis/state.json.damaged").exists());
}

// Every problem of the table is reported at once, each naming its key.
#[test]
fn a_wrong_analysis_table_names_each_key() {
    let mut c = config();
    c.step = slo_contracts::HumanDuration(Duration::from_millis(10));
    c.max_series = 0;
    c.watch = vec![
        Watch { name: "q".into(), query: "sum(rate(x[5m]".into(), tenant: "anonymous".into() },
        Watch { name: "q".into(), query: "up".into(), tenant: "bad tenant!".into() },
    ];
    let err = c.validate().unwrap_err();
    for key in [
        "analysis.step",
        "analysis.max_series",
        "analysis.watch[0].query",
        "analysis.watch[1].name",
        "analysis.watch[1].tenant",
    ] {
        assert!(err.contains(key), "{key} in {err}");
    }
}

// A fast burn of an error-rate SLO's budget (10% errors against a 99.9% target: 100×) fires
// the 1h/5m page within minutes, and resolves a few minutes after the errors stop; the
// budget and burn rates are gauges. A slow burn would need the long windows first.
#[test]
fn a_fast_burn_fires_the_one_hour_five_minute_page_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let contracts = dir.path().join("contracts");
    std::fs::create_dir_all(&contracts).unwrap();
    std::fs::write(
        contracts.join("checkout.yaml"),
        "apiVersion: slo-gate/v1\nkind: Contract\nservice: checkout\nobjectives:\n  - name: errors\n    error_rate: { route: /pay }\n    fail: \"< 1%\"\n    slo: { target: 99.9%, window: 30d }\n",
    )
    .unwrap();
    let rig = rig(dir, AnalysisConfig { contracts: vec![contracts], ..config() });
    let tenant = Tenant::parse("anonymous").unwrap();
    let mut noise = Noise(3);
    let t0 = start_ms();
    let mut events = Vec::new();
    let mut budget = None;
    for step in 0..200i64 {
        let t = t0 + step * STEP_MS;
        // 400 requests a minute; from minute 120 to 140, 40 of them (on node-2) fail.
        let errors = if (120..140).contains(&step) { 40 } else { 0 };
        rig.rt
            .block_on(rig.ingest.export(tenant.clone(), spans(t, 400, false, errors, &mut noise), Raw::None))
            .unwrap();
        let out = rig.analysis.step(t + STEP_MS);
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        for (_, key, event) in out.alerts {
            events.push((step, key, event));
        }
        for (_, request) in &out.exports {
            for m in &request.resource_metrics[0].scope_metrics[0].metrics {
                if m.name == "slo_gate_error_budget_remaining"
                    && let Some(metric::Data::Gauge(g)) = &m.data
                    && let Some(number_data_point::Value::AsDouble(v)) = g.data_points[0].value
                {
                    budget = Some(v);
                }
            }
        }
    }
    let pages: Vec<_> = events.iter().filter(|(_, _, e)| e.rule.short_window_ms == 300_000).collect();
    assert_eq!(pages.len(), 2, "one firing, one resolution: {events:#?}");
    let (fired, key, first) = pages[0];
    assert_eq!(key, "checkout/errors");
    assert_eq!(first.state, analyzer::burn::AlertState::Firing);
    assert!((121..=135).contains(fired), "fired within minutes of the burn: step {fired}");
    let (resolved, _, second) = pages[1];
    assert_eq!(second.state, analyzer::burn::AlertState::Resolved);
    assert!((140..=147).contains(resolved), "resolved soon after it stopped: step {resolved}");
    // 800 failed of 80,000: 10× the 80 the budget allows over what was seen.
    let budget = budget.unwrap();
    assert!((-9.5..-8.5).contains(&budget), "{budget}");
}

// A contract that does not validate stops the start with every problem, file and line named.
#[test]
fn a_wrong_contract_stops_the_analysis_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: slo-gate/v1\nkind: Contract\nservice: checkout\nobjectives:\n  - name: errors\n    error_rate: {}\n    fail: \"< 1%\"\n    slo: { target: 120% }\n",
    )
    .unwrap();
    let err = budgets::load(&[file]).unwrap_err();
    assert!(err.contains("bad.yaml:8:"), "{err}");
    let missing = budgets::load(&[dir.path().join("missing.yaml")]).unwrap_err();
    assert!(missing.contains("cannot read") && missing.contains("missing.yaml"), "{missing}");
}

// The `[analysis]` table as the documentation writes it reads into the configuration, context
// rules included, and a detector key that does not exist is refused by name.
#[test]
fn the_documented_analysis_table_reads() {
    let text = r#"
[analysis]
step = "30s"
contracts = ["contracts/"]

[analysis.detector]
band = 5.0

[[analysis.context.rules]]
match = { job = "etl-batch" }
set = { model = "seasonal" }

[[analysis.watch]]
name = "queue-depth"
query = 'sum by (queue) (rabbitmq_queue_messages_ready)'
"#;
    let config: crate::config::Config = toml::from_str(text).unwrap();
    let a = &config.analysis;
    assert_eq!(a.step.0, Duration::from_secs(30));
    assert_eq!(a.detector.band, 5.0);
    assert_eq!(a.watch[0].tenant, "anonymous");
    a.validate().unwrap();
    let batch = a.context.config_for(&a.detector, &[("job", "etl-batch")]);
    assert_eq!(batch.model, analyzer::baseline::Model::Seasonal);
    let err = toml::from_str::<crate::config::Config>("[analysis.detector]\nbandwidth = 3.0\n").unwrap_err();
    assert!(err.to_string().contains("bandwidth"), "{err}");
}

// The configuration file the README shows reads as it is written (every table, the span
// metrics, analysis and webhook ones included), so the README stays true.
#[test]
fn the_readme_configuration_reads() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = &readme[readme.find("## Configuration").expect("a Configuration section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let config: crate::config::Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    assert_eq!(config.analysis.watch.len(), 1);
    assert_eq!(config.webhook.len(), 1);
    assert!(config.auth.required && config.auth.token_file.is_some(), "{:?}", config.auth);
    assert!(config.tls.is_some());
    config.analysis.detector.validate().unwrap();
}

// A perfectly regular route (the same count every step) whose export batch once lands a step
// late (170 then 230 instead of 200, 200) is not an incident: the learnt band of a regular
// series is nearly zero wide, and a step boundary between batches is counting noise, not a
// change in traffic. Halving the traffic is one.
#[test]
fn a_batch_landing_one_step_late_on_a_steady_route_is_no_anomaly() {
    let rig = rig(tempfile::tempdir().unwrap(), config());
    let tenant = Tenant::parse("anonymous").unwrap();
    let mut noise = Noise(5);
    let t0 = start_ms();
    for step in 0..100i64 {
        let t = t0 + step * STEP_MS;
        let calls = match step {
            60 => 170,
            61 => 230,
            80..=90 => 100,
            _ => 200,
        };
        rig.rt.block_on(rig.ingest.export(tenant.clone(), spans(t, calls, false, 0, &mut noise), Raw::None)).unwrap();
        rig.analysis.step(t + STEP_MS);
    }
    let read = rig.journal.read(&tenant).unwrap();
    let rate: Vec<_> = read.anomalies.iter().filter(|a| series(a, "sli") == Some(REQUEST_RATE)).collect();
    assert_eq!(rate.len(), 1, "{rate:#?}");
    assert!(rate[0].start_ms >= t0 + 80 * STEP_MS, "{:?}", rate[0]);
    assert_eq!(rate[0].side, Side::Below);
}

// A watched PromQL query is scored like the SLIs: each result series is a series of its own,
// labelled with the watch's name, read from the tenant the watch names (and no other).
#[test]
fn a_watched_query_scores_each_result_series() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest as Metrics;
    let watch = Watch { name: "queues".into(), query: "sum by (queue) (queue_depth)".into(), tenant: "team-a".into() };
    let rig = rig(tempfile::tempdir().unwrap(), AnalysisConfig { watch: vec![watch], ..config() });
    let t0 = start_ms();
    let gauge = |t: i64, queue: &str, v: f64| Metric {
        name: "queue_depth".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                attributes: vec![text("queue", queue)],
                time_unix_nano: t as u64 * 1_000_000,
                value: Some(number_data_point::Value::AsDouble(v)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    };
    let mut scored = BTreeMap::<String, usize>::new();
    for step in 0..40i64 {
        let t = t0 + step * STEP_MS;
        for tenant in ["team-a", "team-b"] {
            let request = Metrics {
                resource_metrics: vec![ResourceMetrics {
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![gauge(t, "orders", 10.0 + (step % 3) as f64), gauge(t, "mail", 3.0)],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            rig.rt.block_on(rig.ingest.export(Tenant::parse(tenant).unwrap(), request, Raw::None)).unwrap();
        }
        let out = rig.analysis.step(t + 1);
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        for (tenant, request) in &out.exports {
            assert_eq!(tenant.as_str(), "team-a", "only the watch's tenant is read");
            for m in &request.resource_metrics[0].scope_metrics[0].metrics {
                let Some(metric::Data::Gauge(g)) = &m.data else { continue };
                for p in g.data_points.iter().filter(|_| m.name == "slo_gate_observed") {
                    let label =
                        |k: &str| p.attributes.iter().find(|kv| kv.key == k).map(|kv| format!("{:?}", kv.value));
                    assert!(label("watch").is_some_and(|w| w.contains("queues")), "{p:?}");
                    *scored.entry(label("queue").unwrap_or_default()).or_default() += 1;
                }
            }
        }
    }
    assert_eq!(scored.len(), 2, "{scored:?}");
    assert!(scored.values().all(|&n| n >= 39), "{scored:?}");
    assert_eq!(rig.analysis.series_count(), 2);
}
