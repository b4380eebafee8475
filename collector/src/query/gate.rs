//! What `slo-gate check` reads from a collector, and the history of its verdicts:
//! `GET /api/v1/gate/spans`, `GET /api/v1/gate/metrics`, and `GET`/`POST /api/v1/gate/runs`
//! (the profiles it compares come from `/api/v1/gate/profiles`, in [`super::flamegraph`]).
//!
//! Design: the gate's statistics need every span of a build (rank tests, percentiles with
//! intervals, attribute correlation), not pre-aggregated series, so `spans` answers one compact
//! record per SERVER span of one service version — start time, duration in seconds, name, route,
//! whether it is an error (status `ERROR` or `http.response.status_code` >= 500, decided here
//! once), and its resource and span attributes flattened to text — sent column by column with
//! dictionaries for the repeated strings ([`crate::api::gate::GateSpans`]). `runs` is the history of gate runs
//! ([`crate::history`]); recording one needs a write token ([`crate::auth`]) and a valid,
//! bounded run.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::params::{Selector, parse_time};
use super::profiles::{Filter, collect_reported, profiles_with_sources};
use super::{ApiState, blocking, tenant};
use crate::api::gate::{
    GateMetrics, GateProfiles, GateSpans, MAX_RUN_BYTES, MetricPoint, Recorded, Run, RunsAnswer, StoredProfile,
};
use crate::auth::WriteAccess;
use crate::error::QueryError;
use crate::model::{ResourceColumns, Rows, attrs};
use crate::signal::Signal;
use crate::store::parts::Narrow;

/// OTLP `SpanKind::SPAN_KIND_SERVER`.
pub(crate) const SPAN_KIND_SERVER: i32 = 2;
/// OTLP `Status.code` `STATUS_CODE_ERROR`.
const STATUS_CODE_ERROR: i32 = 2;
/// Most spans one `spans` answer carries unless `limit` says otherwise.
const DEFAULT_SPAN_LIMIT: usize = 500_000;
/// Most runs one `runs` answer carries.
const RUNS_LIMIT: usize = 200;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/gate/profiles", get(gate_profiles))
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
pub(crate) fn flatten(text: &str) -> Vec<(String, String)> {
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

async fn spans(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<BuildParams>,
) -> Result<Response, QueryError> {
    let tenant = tenant(&headers)?;
    let build = Build::parse(&params)?;
    let limit = params.limit.unwrap_or(DEFAULT_SPAN_LIMIT);
    let body = blocking(move || {
        let mut snapshot = state.store.snapshot(&tenant, Signal::Traces);
        super::prune_snapshot(&mut snapshot, build.from, build.to, Some(&build.service));
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
            .map_err(QueryError::from)?;
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
        let answer = GateSpans {
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
        serde_json::to_vec(&answer).map_err(|e| QueryError::Internal(format!("cannot encode the spans: {e}")))
    })
    .await?;
    Ok(([(http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn metrics(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<BuildParams>,
) -> Result<Json<GateMetrics>, QueryError> {
    let tenant = tenant(&headers)?;
    let build = Build::parse(&params)?;
    let name = params.name.clone().filter(|n| !n.is_empty());
    let limit = params.limit.unwrap_or(DEFAULT_SPAN_LIMIT);
    let samples = blocking(move || {
        let mut snapshot = state.store.snapshot(&tenant, Signal::Metrics);
        super::prune_snapshot(&mut snapshot, build.from, build.to, Some(&build.service));
        let mut out: Vec<MetricPoint> = Vec::new();
        let narrow =
            Narrow { lo: build.from.unwrap_or(0), hi: build.to.unwrap_or(u64::MAX), service: Some(&build.service) };
        let report = state
            .store
            .scan_narrowed(&snapshot, &narrow, |rows| {
                let Rows::Metrics(points) = rows else { return };
                for p in points {
                    if !build.matches(&p.resource, p.time_unix_nano)
                        || name.as_deref().is_some_and(|n| n != &*p.metric.name)
                    {
                        continue;
                    }
                    out.push(MetricPoint {
                        name: p.metric.name.to_string(),
                        kind: p.kind.as_str().to_string(),
                        temporality: p.temporality,
                        is_monotonic: p.is_monotonic,
                        start_time_unix_nano: p.start_unix_nano,
                        time_unix_nano: p.time_unix_nano,
                        labels: labels(&p.attributes),
                        value: p.value_int.map(|i| i as f64).or(p.value),
                        count: p.count,
                        sum: p.sum,
                        detail: if p.detail.is_empty() { None } else { serde_json::from_str(&p.detail).ok() },
                    });
                }
            })
            .map_err(QueryError::from)?;
        Ok((out, report.warnings))
    })
    .await?;
    let (mut samples, warnings) = samples;
    // Time order; ties broken by the whole point so the same data gives the same bytes.
    samples.sort_by_cached_key(|p| (p.time_unix_nano, serde_json::to_string(p).unwrap_or_default()));
    let total = samples.len();
    samples.truncate(limit);
    Ok(Json(GateMetrics { samples, total, truncated: total > limit, warnings }))
}

/// A point's attributes as text: strings as they are, other values in JSON.
fn labels(attributes: &str) -> BTreeMap<String, String> {
    match attrs::plain_text(attributes) {
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
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
) -> Result<Json<RunsAnswer>, QueryError> {
    let tenant = tenant(&headers)?;
    let service = params
        .service
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| QueryError::BadRequest("parameter `service` is required".into()))?;
    let environment = params.environment.filter(|e| !e.trim().is_empty());
    let history = Arc::clone(&state.history);
    let mut runs = blocking(move || {
        history.runs(&tenant, &service, environment.as_deref(), now_unix_nano()).map_err(QueryError::from)
    })
    .await?;
    runs.truncate(RUNS_LIMIT);
    Ok(Json(RunsAnswer { runs }))
}

/// Records a run: only with a write token ([`WriteAccess`], checked before the body is read),
/// and only a valid one. The body is read through the admission budget like every other.
async fn record_run(
    State(state): State<ApiState>,
    headers: HeaderMap,
    _write: WriteAccess,
    body: axum::body::Body,
) -> Result<Json<Recorded>, QueryError> {
    let tenant = tenant(&headers)?;
    let body = state.ingest.admission().read(&headers, body, MAX_RUN_BYTES, false).await?;
    let run: Run = serde_json::from_slice(&body.bytes)
        .map_err(|e| QueryError::BadRequest(format!("the body is not a gate run: {e}")))?;
    let now = now_unix_nano();
    run.validate(now)?;
    let history = Arc::clone(&state.history);
    blocking(move || history.record(&tenant, &run, now).map_err(QueryError::from)).await?;
    Ok(Json(Recorded { recorded: true }))
}

/// Query of `GET /api/v1/gate/profiles`.
#[derive(Debug, Deserialize)]
struct ProfileParams {
    #[serde(rename = "type")]
    profile_type: Option<String>,
    selector: Option<String>,
    from: Option<String>,
    to: Option<String>,
    run_label: Option<String>,
}

/// `GET /api/v1/gate/profiles?type=&selector=&from=&to=`: every stored profile of the type that
/// matches, one per pushed or scraped profile, as the gate's CPU comparison reads them
/// (`analyzer::flame::detect_regressions` needs the individual profiles of each side).
async fn gate_profiles(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<ProfileParams>,
) -> Result<Json<GateProfiles>, QueryError> {
    let tenant = tenant(&headers)?;
    let filter = Filter::from_params(
        params.profile_type.as_deref(),
        params.from.as_deref(),
        params.to.as_deref(),
        params.run_label.as_deref(),
    )?;
    let selector = Selector::parse("selector", params.selector.as_deref())?;
    let kind = filter.kind.clone();
    let (rows, warnings) = blocking(move || collect_reported(&state, &tenant, &filter, &[selector])).await?;
    let rows = rows.into_iter().next().unwrap_or_default();
    let list = profiles_with_sources(&rows, &kind)
        .iter()
        .map(|(run, source, p)| StoredProfile {
            source_sha256: source.map(hex::encode),
            ..StoredProfile::from_profile(run, p)
        })
        .collect();
    Ok(Json(GateProfiles { profile_type: params.profile_type, profiles: list, warnings }))
}
