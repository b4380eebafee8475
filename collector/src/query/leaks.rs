//! `GET /api/v1/leaks`: goroutine leak detection over stored goroutine profiles.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::params::Selector;
use super::profiles::{Filter, collect_reported, profiles};
use super::{ApiState, blocking, tenant};
use crate::error::QueryError;
use analyzer::flame;

pub fn router() -> Router<ApiState> {
    Router::new().route("/api/v1/leaks", get(leaks))
}

/// Query of `GET /api/v1/leaks`.
#[derive(Debug, Deserialize)]
struct LeakParams {
    service: Option<String>,
    version: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// The label that tells runs (processes) apart; default [`RUN_LABELS`].
    run_label: Option<String>,
}

/// The goroutine profile type that leak detection reads.
use analyzer::pprof::profile_type::GOROUTINES as GOROUTINE_TYPE;

/// `GET /api/v1/leaks?service=&version=&from=&to=`: goroutine leak detection
/// ([`analyzer::leaks::detect`]) over the stored goroutine profiles of one service (and version),
/// one report per run (process: counts of different processes are never added up) in `runs`,
/// each with the leaking clusters and every cluster's count series over the snapshot times.
/// `findings` groups the leaks of all runs by blocking site ([`analyzer::leaks::across`]): one
/// finding per leak, in how many of the judged processes (`processes` of `of_processes`), the
/// mean rate per process and each process's growth. `leaks` counts those grouped leaks (it used
/// to be the sum of every run's leaking clusters, now `clusters`); `processes` is the number of
/// runs whose growth could be judged.
async fn leaks(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<LeakParams>,
) -> Result<Json<Value>, QueryError> {
    let tenant = tenant(&headers)?;
    let service = params
        .service
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| QueryError::BadRequest("parameter `service` is required".into()))?
        .to_string();
    let filter = Filter::from_params(
        Some(GOROUTINE_TYPE),
        params.from.as_deref(),
        params.to.as_deref(),
        params.run_label.as_deref(),
    )?;
    let kind = filter.kind.clone();
    let mut selector = Selector::equal([("service_name", service.as_str())]);
    if let Some(version) = params.version.as_deref().filter(|v| !v.is_empty()) {
        selector = selector.and_equal("service_version", version);
    }
    let (rows, warnings) = blocking(move || collect_reported(&state, &tenant, &filter, &[selector])).await?;
    let rows = rows.into_iter().next().unwrap_or_default();
    let runs = flame::Run::group(profiles(&rows, &kind).into_iter().map(|(r, p)| (r.to_string(), p)));
    let options = analyzer::leaks::LeakOptions::default();
    let mut answers: Vec<Value> = Vec::with_capacity(runs.len());
    let mut reports: Vec<(String, analyzer::leaks::LeakReport)> = Vec::with_capacity(runs.len());
    for run in &runs {
        let snapshots: Vec<analyzer::leaks::Snapshot> = run.profiles.iter().map(analyzer::leaks::from_pprof).collect();
        let mut report = analyzer::leaks::detect(&snapshots, &options);
        report.source = [
            ("service", Some(service.as_str())),
            ("version", params.version.as_deref()),
            ("run", Some(run.id.as_str())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k.to_string(), v.to_string())))
        .collect();
        let start = snapshots.iter().map(|s| s.time_unix_nano).min().unwrap_or(0);
        answers.push(json!({
            "run": run.id,
            "snapshots": snapshots.len(),
            "start_unix_nano": start,
            "report": analyzer::leaks::report::json(&report),
        }));
        reports.push((run.id.clone(), report));
    }
    let clusters: usize = reports.iter().map(|(_, r)| r.findings.len()).sum();
    let processes = reports.iter().filter(|(_, r)| r.judged).count();
    let findings = analyzer::leaks::group_across_runs(&reports);
    Ok(Json(json!({
        "service": service,
        "version": params.version,
        "type": GOROUTINE_TYPE,
        "leaks": findings.len(),
        "clusters": clusters,
        "processes": processes,
        "findings": findings.iter().map(analyzer::leaks::across::json).collect::<Vec<_>>(),
        "runs": answers,
        // Parts that could not be read (damaged, or sealed with a key the key file lacks).
        "warnings": warnings,
    })))
}
