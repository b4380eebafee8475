//! Grafana's Prometheus datasource and other PromQL clients on the API port: the Prometheus HTTP
//! API (`docs/querying/api.md` of Prometheus 2.42; what Grafana sends and how it reads the
//! answers is in Grafana's `pkg/promlib`) over the stored metrics (`series.rs`), PromQL
//! evaluated by `prom::engine` (`eval.rs`).
//!
//! Every endpoint takes its parameters from the query string and, for POST, from an
//! `application/x-www-form-urlencoded` body (Grafana POSTs by default), read through the
//! admission budget within [`MAX_FORM_BYTES`]; repeated keys (`match[]`) are kept. Answers use
//! Prometheus's envelope: `{"status":"success","data":…,"warnings":[…]}`, and on failure
//! `{"status":"error","errorType":…,"error":…}` with Prometheus's status per type ([`PromError`]).
//! The tenant comes from `X-Scope-OrgID` on every request. Work runs on the blocking pool under
//! [`QUERY_TIMEOUT`], bounded by [`MAX_SERIES`] series and [`MAX_SAMPLES`] samples per selector.

pub mod eval;
mod exemplars;
pub mod series;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Method, StatusCode, header};
use promql_parser::label::Matchers;
use serde_json::{Value, json};

use super::ApiState;
use crate::error::QueryError;
use crate::tenant::Tenant;
use series::StoreSource;

/// Longest form body accepted (queries, `match[]` lists).
pub const MAX_FORM_BYTES: usize = 1 << 20;
/// How long one request may work.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Most series one selector may match.
pub const MAX_SERIES: usize = 100_000;
/// Most samples one selector may load (16 bytes each: 800 MB); Prometheus's default
/// `--query.max-samples`.
pub const MAX_SAMPLES: usize = 50_000_000;
/// Most results of `labels`, `label values` and `series` when the request sets no `limit`.
pub const MAX_RESULTS: usize = 1_000_000;
/// The Prometheus version whose API and PromQL semantics are served (`status/buildinfo`).
pub const PROMETHEUS_VERSION: &str = "2.42.0";

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/query", get(eval::query).post(eval::query))
        .route("/api/v1/query_range", get(eval::query_range).post(eval::query_range))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/series", get(series_list).post(series_list))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/query_exemplars", get(exemplars::query_exemplars).post(exemplars::query_exemplars))
}

/// A failure in Prometheus's terms (`web/api/v1/api.go`).
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("{0}")]
    BadData(String),
    #[error("{0}")]
    Execution(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

impl PromError {
    fn kind(&self) -> (&'static str, StatusCode) {
        match self {
            PromError::BadData(_) => ("bad_data", StatusCode::BAD_REQUEST),
            PromError::Execution(_) => ("execution", StatusCode::UNPROCESSABLE_ENTITY),
            PromError::Timeout(_) => ("timeout", StatusCode::SERVICE_UNAVAILABLE),
            PromError::Internal(_) => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl From<QueryError> for PromError {
    fn from(e: QueryError) -> PromError {
        match e.kind() {
            crate::error::ErrorKind::BadRequest | crate::error::ErrorKind::TooLarge => {
                PromError::BadData(e.to_string())
            }
            crate::error::ErrorKind::TimedOut => PromError::Timeout(e.to_string()),
            _ => PromError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let (error_type, status) = self.kind();
        let body = json!({"status": "error", "errorType": error_type, "error": self.to_string()});
        (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

/// A success envelope around `data`, with the warnings of the work.
fn success(data: Value, warnings: BTreeSet<String>) -> Response {
    let mut body = json!({"status": "success", "data": data});
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A request's parameters, in order, repeated keys kept.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The query string and, for POST, the form body.
    async fn read(
        state: &ApiState,
        method: &Method,
        headers: &HeaderMap,
        query: Option<String>,
        body: Body,
    ) -> Result<Params, PromError> {
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
        if method == Method::POST {
            let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let media = content_type.split(';').next().unwrap_or("").trim();
            if !media.is_empty() && !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                return Err(PromError::BadData(format!(
                    "unsupported content type {media:?}: POST parameters as application/x-www-form-urlencoded"
                )));
            }
            let admitted = state
                .ingest
                .admission()
                .read(headers, body, MAX_FORM_BYTES, false)
                .await
                .map_err(|e| PromError::BadData(format!("cannot read the form body: {e}")))?;
            pairs.extend(form_urlencoded::parse(&admitted.bytes).into_owned());
        }
        Ok(Params(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A time parameter (unix seconds, fractions allowed, or RFC 3339) in milliseconds.
    fn time_ms(&self, key: &str) -> Result<Option<i64>, PromError> {
        let text = self.get(key);
        let invalid = |why: String| PromError::BadData(format!("invalid parameter {key:?}: {why}"));
        if let Some(t) = text.map(str::trim)
            && let Ok(secs) = t.parse::<f64>()
        {
            if !secs.is_finite() || secs.abs() > 9.2e15 {
                return Err(invalid(format!("cannot parse {t:?} to a valid timestamp")));
            }
            return Ok(Some((secs * 1000.0).round() as i64));
        }
        let nanos = super::params::parse_time(key, text).map_err(|e| invalid(e.to_string()))?;
        Ok(nanos.map(|n| i64::try_from(n / 1_000_000).unwrap_or(i64::MAX)))
    }

    /// `limit`: a non-negative integer, 0 or absent for none.
    fn limit(&self) -> Result<Option<usize>, PromError> {
        match self.get("limit").map(str::trim).filter(|l| !l.is_empty()) {
            None => Ok(None),
            Some(l) => match l.parse::<i64>() {
                Ok(0) => Ok(None),
                Ok(n) if n > 0 => Ok(Some(n as usize)),
                _ => {
                    Err(PromError::BadData(format!("invalid parameter \"limit\": {l:?} is not a non-negative integer")))
                }
            },
        }
    }

    /// The `match[]` selectors (each a vector selector).
    fn matchers(&self) -> Result<Vec<Matchers>, PromError> {
        self.all("match[]")
            .map(|text| {
                let invalid = |why: String| PromError::BadData(format!("invalid parameter \"match[]\": {why}"));
                if text.len() > super::params::MAX_SELECTOR_BYTES {
                    return Err(invalid(format!(
                        "a selector may have at most {} bytes",
                        super::params::MAX_SELECTOR_BYTES
                    )));
                }
                match promql_parser::parser::parse(text).map_err(invalid)? {
                    promql_parser::parser::Expr::VectorSelector(vs) => {
                        let mut matchers = vs.matchers;
                        if let Some(name) = vs.name {
                            matchers = matchers.append(promql_parser::label::Matcher::new(
                                promql_parser::label::MatchOp::Equal,
                                "__name__",
                                &name,
                            ));
                        }
                        Ok(matchers)
                    }
                    _ => Err(invalid(format!("{text:?} is not a series selector"))),
                }
            })
            .collect()
    }
}

fn tenant(headers: &HeaderMap) -> Result<Tenant, PromError> {
    super::tenant(headers).map_err(|e| PromError::BadData(e.to_string()))
}

/// The time range of a metadata request: `start`/`end`, everything when absent.
fn range(params: &Params) -> Result<(i64, i64), PromError> {
    let start = params.time_ms("start")?.unwrap_or(0);
    let end = params.time_ms("end")?.unwrap_or(i64::MAX / 2);
    if end < start {
        return Err(PromError::BadData("end timestamp must not be before start time".into()));
    }
    Ok((start, end))
}

fn source(state: &ApiState, tenant: Tenant) -> StoreSource {
    StoreSource {
        store: Arc::clone(&state.store),
        tenant,
        max_series: MAX_SERIES,
        max_samples: MAX_SAMPLES,
        deadline: Some(Instant::now() + QUERY_TIMEOUT),
        warnings: Default::default(),
    }
}

/// Runs `f` on the blocking pool and turns the source's limits into Prometheus errors.
async fn run<T: Send + 'static>(f: impl FnOnce() -> Result<T, PromError> + Send + 'static) -> Result<T, PromError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| PromError::Internal(format!("query task failed: {e}")))?
}

/// The label sets of the series matching any of `selectors` (all series with none) in range.
fn matching(
    src: &StoreSource,
    selectors: &[Matchers],
    start: i64,
    end: i64,
) -> Result<BTreeSet<prom::model::Labels>, PromError> {
    let all = [Matchers::empty()];
    let selectors = if selectors.is_empty() { &all[..] } else { selectors };
    let mut out = BTreeSet::new();
    for matchers in selectors {
        let found = src.label_sets(matchers, start, end).map_err(|e| match e {
            prom::model::SelectError::Timeout => PromError::Timeout(e.to_string()),
            prom::model::SelectError::Limit(m) => PromError::Execution(m),
            prom::model::SelectError::Failed(m) => PromError::Internal(m),
        })?;
        out.extend(found);
    }
    Ok(out)
}

/// Applies `limit` (or [`MAX_RESULTS`]) and says so in a warning when it cut the answer.
fn limited<T>(items: impl IntoIterator<Item = T>, limit: Option<usize>, warnings: &mut BTreeSet<String>) -> Vec<T> {
    let cap = limit.unwrap_or(MAX_RESULTS);
    let mut items = items.into_iter();
    let out: Vec<T> = items.by_ref().take(cap).collect();
    if items.next().is_some() {
        warnings.insert(format!("results truncated due to limit {cap}"));
    }
    out
}

/// `GET|POST /api/v1/labels`: label names of the matching series.
async fn labels(
    State(state): State<ApiState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    let tenant = tenant(&headers)?;
    let params = Params::read(&state, &method, &headers, query, body).await?;
    let (start, end) = range(&params)?;
    let (selectors, limit) = (params.matchers()?, params.limit()?);
    let src = source(&state, tenant);
    run(move || {
        let names: BTreeSet<String> = matching(&src, &selectors, start, end)?
            .iter()
            .flat_map(|l| l.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>())
            .collect();
        let mut warnings = std::mem::take(&mut *src.warnings.lock().unwrap_or_else(|e| e.into_inner()));
        let names = limited(names, limit, &mut warnings);
        Ok(success(json!(names), warnings))
    })
    .await
}

/// `GET /api/v1/label/<name>/values`: values of one label over the matching series.
async fn label_values(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, PromError> {
    let tenant = tenant(&headers)?;
    let params = Params::read(&state, &Method::GET, &headers, query, Body::empty()).await?;
    let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(PromError::BadData(format!(
            "invalid label name: {:?}",
            name.chars().take(200).collect::<String>()
        )));
    }
    let (start, end) = range(&params)?;
    let (selectors, limit) = (params.matchers()?, params.limit()?);
    let src = source(&state, tenant);
    run(move || {
        let values: BTreeSet<String> =
            matching(&src, &selectors, start, end)?.iter().filter_map(|l| l.get(&name).map(str::to_string)).collect();
        let mut warnings = std::mem::take(&mut *src.warnings.lock().unwrap_or_else(|e| e.into_inner()));
        let values = limited(values, limit, &mut warnings);
        Ok(success(json!(values), warnings))
    })
    .await
}

/// `GET|POST /api/v1/series`: the label sets of the series matching `match[]` (required).
async fn series_list(
    State(state): State<ApiState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    let tenant = tenant(&headers)?;
    let params = Params::read(&state, &method, &headers, query, body).await?;
    let (start, end) = range(&params)?;
    let (selectors, limit) = (params.matchers()?, params.limit()?);
    if selectors.is_empty() {
        return Err(PromError::BadData("no match[] parameter provided".into()));
    }
    let src = source(&state, tenant);
    run(move || {
        let found = matching(&src, &selectors, start, end)?;
        let mut warnings = std::mem::take(&mut *src.warnings.lock().unwrap_or_else(|e| e.into_inner()));
        let found = limited(found, limit, &mut warnings);
        let data: Vec<BTreeMap<&str, &str>> = found.iter().map(|l| l.iter().collect()).collect();
        Ok(success(json!(data), warnings))
    })
    .await
}

/// `GET /api/v1/status/buildinfo`, without `features` so Grafana takes the server for
/// Prometheus (a non-empty `features` means Mimir to it).
async fn buildinfo() -> Response {
    let data = json!({
        "version": PROMETHEUS_VERSION,
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    });
    success(data, BTreeSet::new())
}

/// `GET /api/v1/metadata`: the metadata of the tenant's OTLP metrics by family name
/// (`model::prometheus::MetadataIndex`), optionally of one `metric`, at most `limit` families
/// (Prometheus 2.42's rules: a negative limit is none, 0 answers nothing). Remote write's
/// metadata is not kept, as Prometheus 2.42's receiver does not keep it.
async fn metadata(
    State(state): State<ApiState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    let tenant = tenant(&headers)?;
    let params = Params::read(&state, &method, &headers, query, body).await?;
    let limit = match params.get("limit").map(str::trim).filter(|l| !l.is_empty()) {
        None => None,
        Some(l) => match l.parse::<i64>() {
            Ok(n) => usize::try_from(n).ok(),
            Err(_) => return Err(PromError::BadData("limit must be a number".into())),
        },
    };
    let metric = params.get("metric").filter(|m| !m.is_empty());
    Ok(success(json!(state.store.metric_metadata(&tenant, metric, limit)), BTreeSet::new()))
}

/// `GET /api/v1/rules`: slo-gate evaluates no recording or alerting rules.
async fn rules(headers: HeaderMap) -> Result<Response, PromError> {
    tenant(&headers)?;
    Ok(success(json!({"groups": []}), BTreeSet::new()))
}
