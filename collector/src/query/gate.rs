//! What `slo-gate check` reads from a collector, and the history of its verdicts:
//! `GET /api/v1/gate/spans`, `GET /api/v1/gate/metrics`, and `GET`/`POST /api/v1/gate/runs`
//! (the profiles it compares come from `/api/v1/gate/profiles`, in [`super::flamegraph`]).
//!
//! Design: the gate's statistics need every span of a build (rank tests, percentiles with
//! intervals, attribute correlation), not pre-aggregated series, so `spans` answers one compact
//! record per SERVER span of one service version — start time, duration in seconds, name, route,
//! whether it is an error (status `ERROR` or `http.response.status_code` >= 500, decided here
//! once), and its resource and span attributes flattened to text — sent column by column with
//! dictionaries for the repeated strings (`SpanColumns`). `runs` keeps one JSON line per
//! gate run in `<data-dir>/gate/<tenant>/runs.jsonl`, appended and fsynced, so `last_passing`
//! baselines and `consecutive_failures` survive restarts of both the collector and CI.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::flamegraph::parse_time;
use super::{ApiState, blocking, tenant};
use crate::error::QueryError;
use crate::model::{ResourceColumns, Rows, attrs};
use crate::signal::Signal;
use crate::tenant::Tenant;

/// OTLP `SpanKind::SPAN_KIND_SERVER`.
const SPAN_KIND_SERVER: i32 = 2;
/// OTLP `Status.code` `STATUS_CODE_ERROR`.
const STATUS_CODE_ERROR: i32 = 2;
/// Most spans one `spans` answer carries unless `limit` says otherwise.
const DEFAULT_SPAN_LIMIT: usize = 500_000;
/// Most runs one `runs` answer carries.
const RUNS_LIMIT: usize = 200;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/gate/spans", get(spans))
        .route("/api/v1/gate/metrics", get(metrics))
        .route("/api/v1/gate/runs", get(list_runs).post(record_run))
}

/// Which rows of one build a gate query reads.
#[derive(Debug, Deserialize)]
struct BuildParams {
    service: Option<String>,
    version: Option<String>,
    environment: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// Metrics only: the metric name.
    name: Option<String>,
    limit: Option<usize>,
}

/// The parsed [`BuildParams`].
#[derive(Debug, Clone)]
struct Build {
    service: String,
    version: String,
    environment: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
}

impl Build {
    fn parse(params: &BuildParams) -> Result<Build, QueryError> {
        let required = |name: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| QueryError::BadRequest(format!("parameter `{name}` is required")))
        };
        let from = parse_time("from", params.from.as_deref())?;
        let to = parse_time("to", params.to.as_deref())?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(QueryError::BadRequest("parameter `from` is after `to`".into()));
        }
        Ok(Build {
            service: required("service", &params.service)?,
            version: required("version", &params.version)?,
            environment: params.environment.as_deref().map(str::trim).filter(|e| !e.is_empty()).map(str::to_string),
            from,
            to,
        })
    }

    fn matches(&self, resource: &ResourceColumns, time_unix_nano: u64) -> bool {
        resource.service_name.as_deref() == Some(self.service.as_str())
            && resource.service_version.as_deref() == Some(self.version.as_str())
            && self.environment.as_deref().is_none_or(|e| resource.deployment_environment.as_deref() == Some(e))
            && self.from.is_none_or(|f| time_unix_nano >= f)
            && self.to.is_none_or(|t| time_unix_nano <= t)
    }
}

/// Attributes as `(key, text)` pairs: strings as they are, other scalars printed, arrays and
/// maps as JSON.
fn flatten(text: &str) -> Vec<(String, String)> {
    let Value::Object(map) = attrs::plain_text(text) else { return Vec::new() };
    map.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect()
}

/// Interns strings into a dictionary, so each distinct one is sent once.
#[derive(Default)]
struct Dictionary {
    index: HashMap<String, u32>,
    values: Vec<String>,
}

impl Dictionary {
    fn id(&mut self, value: &str) -> u32 {
        if let Some(&id) = self.index.get(value) {
            return id;
        }
        let id = self.values.len() as u32;
        self.index.insert(value.to_string(), id);
        self.values.push(value.to_string());
        id
    }
}

/// One matching span while scanning.
struct SpanHit {
    time: u64,
    duration_nano: u64,
    name: u32,
    route: Option<u32>,
    error: bool,
    attributes: u32,
}

/// The `spans` answer, column by column: one array per field, one entry per span, and
/// dictionaries for the repeated strings (names, routes, attribute sets — a resource's
/// attributes and a span's own, merged, span attributes winning). A million spans are then tens
/// of megabytes of numbers rather than a million JSON objects repeating the same keys.
#[derive(Serialize)]
struct SpanColumns {
    total: usize,
    truncated: bool,
    /// Spans per `http.route` of the build, over all matching spans.
    routes: BTreeMap<String, u64>,
    names: Vec<String>,
    route_values: Vec<String>,
    attribute_sets: Vec<Vec<(String, String)>>,
    time_unix_nano: Vec<u64>,
    duration_seconds: Vec<f64>,
    name: Vec<u32>,
    route: Vec<Option<u32>>,
    error: Vec<bool>,
    attributes: Vec<u32>,
    /// Parts that could not be read (damaged and set aside): the spans they held are missing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

async fn spans(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<BuildParams>,
) -> Result<Response, QueryError> {
    let tenant = tenant(&headers)?;
    let build = Build::parse(&params)?;
    let limit = params.limit.unwrap_or(DEFAULT_SPAN_LIMIT);
    let body = blocking(move || {
        let snapshot = state.store.snapshot(&tenant, Signal::Traces);
        let mut hits: Vec<SpanHit> = Vec::new();
        let mut routes: BTreeMap<String, u64> = BTreeMap::new();
        let (mut names, mut route_values) = (Dictionary::default(), Dictionary::default());
        // Attribute sets: resource text → id, span text → id, (resource id, span id) → set. Only
        // the ids are needed here (the set holds the decoded pairs), so no copy of the texts.
        let (mut resources, mut span_attrs): (HashMap<String, u32>, HashMap<String, u32>) = Default::default();
        let intern = |map: &mut HashMap<String, u32>, text: &str| match map.get(text) {
            Some(&id) => id,
            None => {
                let id = map.len() as u32;
                map.insert(text.to_string(), id);
                id
            }
        };
        let mut sets: HashMap<(u32, u32), u32> = HashMap::new();
        let mut attribute_sets: Vec<Vec<(String, String)>> = Vec::new();
        let report = state
            .store
            .scan(&snapshot, |rows| {
                let Rows::Spans(spans) = rows else { return };
                for s in spans.iter().filter(|s| s.kind == SPAN_KIND_SERVER) {
                    if !build.matches(&s.resource, s.start_unix_nano) {
                        continue;
                    }
                    let route = s.http_route.as_deref().map(|r| {
                        *routes.entry(r.to_string()).or_default() += 1;
                        route_values.id(r)
                    });
                    let key = (intern(&mut resources, &s.resource.attributes), intern(&mut span_attrs, &s.attributes));
                    let attributes = *sets.entry(key).or_insert_with(|| {
                        let mut merged: BTreeMap<String, String> =
                            flatten(&s.resource.attributes).into_iter().collect();
                        merged.extend(flatten(&s.attributes));
                        attribute_sets.push(merged.into_iter().collect());
                        attribute_sets.len() as u32 - 1
                    });
                    hits.push(SpanHit {
                        time: s.start_unix_nano,
                        duration_nano: s.duration_nano(),
                        name: names.id(&s.name),
                        route,
                        error: s.status_code == STATUS_CODE_ERROR || s.http_status_code.is_some_and(|c| c >= 500),
                        attributes,
                    });
                }
            })
            .map_err(|e| QueryError::Storage(e.to_string()))?;
        // Time order; ties broken by the other fields so the same data gives the same bytes.
        hits.sort_unstable_by(|a, b| {
            (a.time, a.duration_nano, &names.values[a.name as usize], a.error, a.attributes).cmp(&(
                b.time,
                b.duration_nano,
                &names.values[b.name as usize],
                b.error,
                b.attributes,
            ))
        });
        let total = hits.len();
        hits.truncate(limit);
        let answer = SpanColumns {
            total,
            truncated: total > limit,
            routes,
            time_unix_nano: hits.iter().map(|h| h.time).collect(),
            duration_seconds: hits.iter().map(|h| h.duration_nano as f64 / 1e9).collect(),
            name: hits.iter().map(|h| h.name).collect(),
            route: hits.iter().map(|h| h.route).collect(),
            error: hits.iter().map(|h| h.error).collect(),
            attributes: hits.iter().map(|h| h.attributes).collect(),
            names: names.values,
            route_values: route_values.values,
            attribute_sets,
            warnings: report.warnings,
        };
        serde_json::to_vec(&answer).map_err(|e| QueryError::Storage(format!("cannot encode the spans: {e}")))
    })
    .await?;
    Ok(([(http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn metrics(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<BuildParams>,
) -> Result<Json<Value>, QueryError> {
    let tenant = tenant(&headers)?;
    let build = Build::parse(&params)?;
    let name = params.name.clone().filter(|n| !n.is_empty());
    let limit = params.limit.unwrap_or(DEFAULT_SPAN_LIMIT);
    let samples = blocking(move || {
        let snapshot = state.store.snapshot(&tenant, Signal::Metrics);
        let mut out: Vec<(u64, Value)> = Vec::new();
        let report = state
            .store
            .scan(&snapshot, |rows| {
                let Rows::Metrics(points) = rows else { return };
                for p in points {
                    if !build.matches(&p.resource, p.time_unix_nano)
                        || name.as_deref().is_some_and(|n| n != &*p.metric.name)
                    {
                        continue;
                    }
                    out.push((
                        p.time_unix_nano,
                        json!({
                            "name": &*p.metric.name,
                            "kind": p.kind.as_str(),
                            "temporality": p.temporality,
                            "is_monotonic": p.is_monotonic,
                            "start_time_unix_nano": p.start_unix_nano,
                            "time_unix_nano": p.time_unix_nano,
                            "labels": attrs::plain_text(&p.attributes),
                            "value": p.value_int.map(|i| i as f64).or(p.value),
                            "count": p.count,
                            "sum": p.sum,
                            "detail": if p.detail.is_empty() { Value::Null } else { serde_json::from_str(&p.detail).unwrap_or(Value::Null) },
                        }),
                    ));
                }
            })
            .map_err(|e| QueryError::Storage(e.to_string()))?;
        Ok((out, report.warnings))
    })
    .await?;
    let (mut samples, warnings) = samples;
    samples.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.to_string().cmp(&b.1.to_string())));
    let total = samples.len();
    samples.truncate(limit);
    let mut answer = json!({
        "samples": samples.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "total": total,
        "truncated": total > limit,
    });
    if !warnings.is_empty() {
        answer["warnings"] = json!(warnings);
    }
    Ok(Json(answer))
}

/// One gate run, as `slo-gate check` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub service: String,
    #[serde(default)]
    pub environment: Option<String>,
    pub version: String,
    pub time_unix_nano: u64,
    /// `pass`, `warn`, `fail` or `inconclusive`: this build's outcome.
    pub verdict: String,
    /// Whether the release was blocked.
    #[serde(default)]
    pub blocked: bool,
    /// Per objective: name and verdict.
    #[serde(default)]
    pub objectives: Vec<RunObjective>,
}

/// One objective's verdict in a [`Run`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunObjective {
    pub name: String,
    pub verdict: String,
}

const VERDICTS: [&str; 4] = ["pass", "warn", "fail", "inconclusive"];

impl Run {
    fn validate(&self) -> Result<(), QueryError> {
        let bad = |what: String| Err(QueryError::BadRequest(what));
        if self.service.trim().is_empty() || self.version.trim().is_empty() {
            return bad("a run needs a non-empty `service` and `version`".into());
        }
        for verdict in std::iter::once(&self.verdict).chain(self.objectives.iter().map(|o| &o.verdict)) {
            if !VERDICTS.contains(&verdict.as_str()) {
                return bad(format!("verdict {verdict:?} is not one of {}", VERDICTS.join(", ")));
            }
        }
        Ok(())
    }
}

fn runs_file(data_dir: &Path, tenant: &Tenant) -> PathBuf {
    data_dir.join("gate").join(tenant.as_str()).join("runs.jsonl")
}

/// Every run of `tenant` for `service` (and `environment`, when given), newest first.
fn read_runs(path: &Path, service: &str, environment: Option<&str>) -> Result<Vec<Run>, QueryError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(QueryError::Storage(format!("cannot read {}: {e}", path.display()))),
    };
    let mut runs: Vec<Run> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        // A torn last line (a crash mid-append) is skipped, not fatal.
        .filter_map(|l| serde_json::from_str::<Run>(l).ok())
        .filter(|r| r.service == service && environment.is_none_or(|e| r.environment.as_deref() == Some(e)))
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.time_unix_nano));
    runs.truncate(RUNS_LIMIT);
    Ok(runs)
}

#[derive(Debug, Deserialize)]
struct RunsParams {
    service: Option<String>,
    environment: Option<String>,
}

async fn list_runs(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<RunsParams>,
) -> Result<Json<Value>, QueryError> {
    let tenant = tenant(&headers)?;
    let service = params
        .service
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| QueryError::BadRequest("parameter `service` is required".into()))?;
    let environment = params.environment.filter(|e| !e.trim().is_empty());
    let path = runs_file(&state.data_dir, &tenant);
    let runs = blocking(move || read_runs(&path, &service, environment.as_deref())).await?;
    Ok(Json(json!({ "runs": runs })))
}

/// Largest gate run body accepted (what axum's `Bytes` extractor allowed before).
const MAX_RUN_BYTES: usize = 2 << 20;

async fn record_run(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Value>, QueryError> {
    let tenant = tenant(&headers)?;
    let body = state.ingest.admission().read(&headers, body, MAX_RUN_BYTES, false).await?;
    let run: Run = serde_json::from_slice(&body.bytes)
        .map_err(|e| QueryError::BadRequest(format!("the body is not a gate run: {e}")))?;
    run.validate()?;
    let path = runs_file(&state.data_dir, &tenant);
    let lock = std::sync::Arc::clone(&state.runs_lock);
    blocking(move || {
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let storage =
            |e: std::io::Error| QueryError::Storage(format!("cannot record the run in {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(storage)?;
        }
        let mut line = serde_json::to_string(&run).map_err(|e| QueryError::Storage(e.to_string()))?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(storage)?;
        file.write_all(line.as_bytes()).map_err(storage)?;
        file.sync_data().map_err(storage)?;
        Ok(())
    })
    .await?;
    Ok(Json(json!({ "recorded": true })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_filtered_and_newest_first_and_torn_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        let run = |service: &str, env: Option<&str>, t: u64, verdict: &str| {
            serde_json::to_string(&Run {
                service: service.into(),
                environment: env.map(str::to_string),
                version: format!("v{t}"),
                time_unix_nano: t,
                verdict: verdict.into(),
                blocked: false,
                objectives: vec![],
            })
            .unwrap()
        };
        let text = [
            run("a", None, 1, "pass"),
            run("a", Some("prod"), 3, "fail"),
            run("b", None, 2, "pass"),
            run("a", None, 5, "warn"),
        ]
        .join("\n")
            + "\n{\"service\":\"a\",\"vers";
        std::fs::write(&path, text).unwrap();
        let got = read_runs(&path, "a", None).unwrap();
        assert_eq!(got.iter().map(|r| r.time_unix_nano).collect::<Vec<_>>(), vec![5, 3, 1]);
        let prod = read_runs(&path, "a", Some("prod")).unwrap();
        assert_eq!(prod.len(), 1);
        assert!(read_runs(&dir.path().join("none.jsonl"), "a", None).unwrap().is_empty());
    }

    #[test]
    fn runs_are_validated() {
        let mut run = Run {
            service: "a".into(),
            environment: None,
            version: "1".into(),
            time_unix_nano: 1,
            verdict: "maybe".into(),
            blocked: false,
            objectives: vec![],
        };
        assert!(run.validate().unwrap_err().to_string().contains("\"maybe\""));
        run.verdict = "pass".into();
        run.objectives.push(RunObjective { name: "x".into(), verdict: "nope".into() });
        assert!(run.validate().is_err());
        run.objectives[0].verdict = "fail".into();
        assert!(run.validate().is_ok());
    }
}
