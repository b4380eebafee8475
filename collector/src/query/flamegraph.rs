//! The profile query API: `/api/v1/profile-types`, `/api/v1/flamegraph` and
//! `/api/v1/flamegraph/diff`, in Pyroscope's vocabulary (profile type ids
//! `name:sample_type:unit:period_type:period_unit`, label selectors `{service_name="x"}`).
//!
//! Design: stored profile rows carry one sample value each with its resolved stack (innermost
//! first), so a flame graph needs no pprof decoding: matching rows are folded straight into
//! [`analyzer::flame::Folded`] (root-first function names, summed values), and every output —
//! Grafana's nested JSON, folded text, inferno's SVG — is rendered from that one map, sorted, so
//! the same data always gives the same bytes. The regression comparison needs the individual
//! profiles of each side (its significance test uses the spread between profiles), so for the
//! diff the rows are grouped by `profile_id` back into one [`analyzer::pprof::Profile`] per
//! pushed profile and handed to [`analyzer::flame::detect_regressions`] unchanged.
//!
//! The profile name is the `__name__` attribute Pyroscope pushes carry; for profiles without it
//! (OTLP pushes) it is derived from the sample type as `analyzer::pprof::profile_name` does.
//! Selectors accept only `=` matchers; `service_name` and `service_version` match the resource,
//! every other label the sample's and profile's attributes. Every handler is scoped by the
//! `X-Scope-OrgID` tenant.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiState, blocking, tenant};
use crate::error::QueryError;
use crate::model::profile::Frame;
use crate::model::{ProfileRow, Rows, attrs};
use crate::signal::Signal;
use crate::tenant::Tenant;
use analyzer::flame::{self, Folded, Metric, Regression, RegressionOptions, Share};

/// The attribute Pyroscope pushes name the profile with.
const NAME_LABEL: &str = "__name__";

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/profile-types", get(profile_types))
        .route("/api/v1/flamegraph", get(flamegraph))
        .route("/api/v1/flamegraph/diff", get(flamegraph_diff))
        .route("/api/v1/gate/profiles", get(gate_profiles))
        .route("/api/v1/leaks", get(leaks))
}

/// Scans the tenant's profile rows, calling `f` on each.
fn scan_profiles(state: &ApiState, tenant: &Tenant, mut f: impl FnMut(&ProfileRow)) -> Result<(), QueryError> {
    let snapshot = state.store.snapshot(tenant, Signal::Profiles);
    state
        .store
        .scan(&snapshot, |rows| {
            if let Rows::Profiles(rows) = rows {
                rows.iter().for_each(&mut f);
            }
        })
        .map_err(|e| QueryError::Storage(e.to_string()))
}

/// Pyroscope's profile name for a sample type, when the profile does not carry `__name__`.
fn derived_name(sample_type: &str) -> String {
    match sample_type {
        "cpu" => "process_cpu".to_string(),
        t if t.starts_with("alloc_") || t.starts_with("inuse_") => "memory".to_string(),
        "goroutine" | "goroutines" => "goroutine".to_string(),
        t => t.to_string(),
    }
}

/// The profile type id of a row and its decoded attributes.
fn type_id(row: &ProfileRow, attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> String {
    let name = attrs::find(attributes, NAME_LABEL)
        .and_then(attrs::as_text)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| derived_name(&row.sample_type));
    format!("{name}:{}:{}:{}:{}", row.sample_type, row.sample_unit, row.period_type, row.period_unit)
}

async fn profile_types(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<Value>, QueryError> {
    let tenant = tenant(&headers)?;
    let tenant_name = tenant.as_str().to_string();
    let types = blocking(move || {
        let mut types: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // Rows of one profile share their attributes text; decode each distinct text once.
        let mut cache: HashMap<String, String> = HashMap::new();
        scan_profiles(&state, &tenant, |row| {
            let key = format!(
                "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
                row.sample_type, row.sample_unit, row.period_type, row.period_unit, row.attributes
            );
            let id = cache.entry(key).or_insert_with(|| type_id(row, &attrs::decode_lossy(&row.attributes))).clone();
            let services = types.entry(id).or_default();
            if let Some(s) = row.resource.service_name.as_deref() {
                services.insert(s.to_string());
            }
        })?;
        Ok(types)
    })
    .await?;
    let list: Vec<Value> = types
        .into_iter()
        .map(|(id, services)| {
            let mut parts = id.splitn(5, ':');
            let mut next = || parts.next().unwrap_or("").to_string();
            let (name, sample_type, sample_unit, period_type, period_unit) = (next(), next(), next(), next(), next());
            json!({
                "id": id,
                "name": name,
                "sample_type": sample_type,
                "sample_unit": sample_unit,
                "period_type": period_type,
                "period_unit": period_unit,
                "services": services,
            })
        })
        .collect();
    Ok(Json(json!({ "tenant": tenant_name, "profile_types": list })))
}

/// A parsed `name:sample_type:unit:period_type:period_unit`.
#[derive(Debug, Clone)]
struct TypeId {
    name: String,
    sample_type: String,
    sample_unit: String,
    period_type: String,
    period_unit: String,
}

fn parse_type(id: Option<&str>) -> Result<TypeId, QueryError> {
    let id = id.map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| {
        QueryError::BadRequest(
            "parameter `type` is required (name:sample_type:unit:period_type:period_unit, see /api/v1/profile-types)"
                .into(),
        )
    })?;
    let parts: Vec<&str> = id.split(':').collect();
    if parts.len() != 5 || parts[..3].iter().any(|p| p.is_empty()) {
        return Err(QueryError::BadRequest(format!(
            "parameter `type` {id:?} is not name:sample_type:unit:period_type:period_unit"
        )));
    }
    Ok(TypeId {
        name: parts[0].to_string(),
        sample_type: parts[1].to_string(),
        sample_unit: parts[2].to_string(),
        period_type: parts[3].to_string(),
        period_unit: parts[4].to_string(),
    })
}

/// `=` label matchers of a selector.
pub type Selector = Vec<(String, String)>;

/// Parses `{key="value",key2="value2"}` (`=` matchers only). `param` names the parameter in errors.
pub fn parse_selector(param: &str, text: Option<&str>) -> Result<Selector, QueryError> {
    let text = text.map(str::trim).unwrap_or("");
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |why: &str| {
        QueryError::BadRequest(format!(
            "parameter `{param}` {:?} is not a selector like {{service_name=\"x\"}}: {why}",
            text.chars().take(200).collect::<String>()
        ))
    };
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| bad("it must start with `{` and end with `}`"))?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                key.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("expected a label name"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(bad("expected `=` after a label name"));
        }
        match chars.peek() {
            Some('~') => return Err(bad("only `=` matchers are supported")),
            Some('=') => return Err(bad("`==` is not a matcher; use `=`")),
            _ => {}
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('"') {
            return Err(bad("expected a double-quoted value"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(bad("unterminated quoted value")),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(c) => value.push(c),
                    None => return Err(bad("unterminated quoted value")),
                },
                Some(c) => value.push(c),
            }
        }
        out.push((key, value));
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(_) => return Err(bad("expected `,` between matchers")),
        }
    }
    Ok(out)
}

/// Unix seconds (fractions allowed) or an RFC 3339 time, as unix nanoseconds: the one reader
/// of every time parameter of the API. RFC 3339 is read by `jiff`, which refuses impossible
/// dates, times and offsets (February 30, `+99:99`); it also takes the ISO 8601 forms Temporal
/// allows (seconds left out, an offset without its colon).
pub fn parse_time(param: &str, text: Option<&str>) -> Result<Option<u64>, QueryError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    let bad = || {
        QueryError::BadRequest(format!(
            "parameter `{param}` {:?} is neither unix seconds nor an RFC 3339 time",
            text.chars().take(100).collect::<String>()
        ))
    };
    if let Ok(secs) = text.parse::<u64>() {
        return secs.checked_mul(1_000_000_000).map(Some).ok_or_else(bad);
    }
    if let Ok(secs) = text.parse::<f64>() {
        if secs.is_finite() && (0.0..1.8e10).contains(&secs) {
            return Ok(Some((secs * 1e9) as u64));
        }
        return Err(bad());
    }
    // jiff reads offsets up to ±25:59 (Temporal's range) and bracketed annotations; RFC 3339's
    // offset hours stop at 23 and it has no annotations (the `+24:00` case of the test below).
    let offset_hours = text.get(10..).and_then(|t| t.rfind(['+', '-']).map(|i| &t[i + 1..]));
    let hours_ok = |h: &str| h.get(..2).and_then(|h| h.parse::<u8>().ok()).is_some_and(|h| h <= 23);
    if text.contains('[') || offset_hours.is_some_and(|h| !hours_ok(h)) {
        return Err(bad());
    }
    let time: jiff::Timestamp = text.parse().map_err(|_| bad())?;
    u64::try_from(time.as_nanosecond()).map(Some).map_err(|_| bad())
}

#[derive(Debug, Deserialize)]
struct FlameParams {
    #[serde(rename = "type")]
    profile_type: Option<String>,
    selector: Option<String>,
    baseline: Option<String>,
    candidate: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
    /// Diff only: smallest share increase worth reporting, in percentage points.
    min_change: Option<f64>,
    /// Diff only: smallest confidence (0..1) that a share grew.
    confidence: Option<f64>,
    /// Diff only: `self` or `total` share.
    metric: Option<String>,
    /// Diff and gate profiles: the label that tells runs (processes) apart; default
    /// [`RUN_LABELS`].
    run_label: Option<String>,
}

/// Labels that name the run (process) a profile came from, in the order they are tried: the
/// scrape target (`instance`, which scraping adds), OpenTelemetry's `service.instance.id`, then
/// what Pyroscope agents commonly tag. Profiles with none of them form one run.
const RUN_LABELS: [&str; 5] = ["instance", "service.instance.id", "service_instance_id", "pod", "hostname"];

/// What a scan keeps of a matching row.
struct Matched {
    profile_id: [u8; 16],
    value: i64,
    /// The profile's sampling period, in the sample type's unit when [`Filter::kind`] has
    /// `sample_unit == period_unit` (CPU time), else 0.
    period: i64,
    /// Function names, innermost first.
    stack: Vec<String>,
    /// The run (process) the profile came from: the value of the run label, or empty.
    run: Arc<str>,
    /// When the profile was taken.
    profile_time_unix_nano: u64,
}

/// Everything that decides whether a row matches, besides the selector.
#[derive(Debug, Clone)]
struct Filter {
    kind: TypeId,
    from: Option<u64>,
    to: Option<u64>,
    /// The label naming a profile's run, when the request chose one.
    run_label: Option<String>,
}

/// The rows of `tenant` matching `filter` and each of `selectors`, one list per selector.
fn collect(
    state: &ApiState,
    tenant: &Tenant,
    filter: &Filter,
    selectors: &[Selector],
) -> Result<Vec<Vec<Matched>>, QueryError> {
    let mut out: Vec<Vec<Matched>> = selectors.iter().map(|_| Vec::new()).collect();
    let mut stacks: HashMap<String, Vec<String>> = HashMap::new();
    let mut decoded: HashMap<String, Vec<opentelemetry_proto::tonic::common::v1::KeyValue>> = HashMap::new();
    let mut resources: HashMap<Arc<str>, Vec<opentelemetry_proto::tonic::common::v1::KeyValue>> = HashMap::new();
    let run_labels: Vec<&str> = match &filter.run_label {
        Some(label) => vec![label.as_str()],
        None => RUN_LABELS.to_vec(),
    };
    scan_profiles(state, tenant, |row| {
        let k = &filter.kind;
        if *row.sample_type != *k.sample_type
            || *row.sample_unit != *k.sample_unit
            || *row.period_type != *k.period_type
            || *row.period_unit != *k.period_unit
            || filter.from.is_some_and(|f| row.time_unix_nano < f)
            || filter.to.is_some_and(|t| row.time_unix_nano > t)
        {
            return;
        }
        let attributes = decoded.entry(row.attributes.clone()).or_insert_with(|| attrs::decode_lossy(&row.attributes));
        if type_id(row, attributes).split(':').next() != Some(k.name.as_str()) {
            return;
        }
        for (selector, out) in selectors.iter().zip(out.iter_mut()) {
            let matches = selector.iter().all(|(key, want)| match key.as_str() {
                "service_name" | "service.name" => row.resource.service_name.as_deref() == Some(want.as_str()),
                "service_version" | "service.version" => row.resource.service_version.as_deref() == Some(want.as_str()),
                _ => attrs::find(attributes, key).and_then(attrs::as_text) == Some(want.as_str()),
            });
            if !matches {
                continue;
            }
            let stack = stacks
                .entry(row.stack.clone())
                .or_insert_with(|| {
                    serde_json::from_str::<Vec<Frame>>(&row.stack)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|f| if f.function.is_empty() { "<unknown>".to_string() } else { f.function })
                        .collect()
                })
                .clone();
            let period = if k.sample_unit == k.period_unit { row.period.max(0) } else { 0 };
            let resource = resources
                .entry(row.resource.attributes.clone())
                .or_insert_with(|| attrs::decode_lossy(&row.resource.attributes));
            let run = run_labels
                .iter()
                .find_map(|key| attrs::find(attributes, key).or_else(|| attrs::find(resource, key)))
                .and_then(attrs::as_text)
                .map_or_else(|| Arc::from(""), Arc::from);
            out.push(Matched {
                profile_id: row.profile_id,
                value: row.value,
                period,
                stack,
                run,
                profile_time_unix_nano: row.profile_time_unix_nano,
            });
        }
    })?;
    Ok(out)
}

/// The folded format cannot carry `;` or line breaks inside a frame name.
fn clean(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

fn fold(rows: &[Matched]) -> Folded {
    let mut folded = Folded::new();
    for r in rows {
        if r.value == 0 {
            continue;
        }
        let mut stack: Vec<String> = r.stack.iter().rev().map(|n| clean(n)).collect();
        if stack.is_empty() {
            stack.push("<unknown>".to_string());
        }
        folded.add(stack, r.value);
    }
    folded
}

/// One pprof profile per stored `profile_id`, with the one sample type of `kind`.
///
/// The significance test needs the number of sampled events behind each profile
/// ([`analyzer::flame::detect_regressions`] reads it from a `count` sample type). Stored rows keep
/// one sample type each, so when the values are measured in the period's unit (CPU nanoseconds
/// sampled every 10 ms) the count is restored as `value / period`, rounded up; otherwise the
/// analyzer falls back to the number of sample records, which is fewer and so more cautious.
fn profiles(rows: &[Matched], kind: &TypeId) -> Vec<(Arc<str>, analyzer::pprof::Profile)> {
    let mut by_id: BTreeMap<[u8; 16], Vec<&Matched>> = BTreeMap::new();
    for r in rows {
        by_id.entry(r.profile_id).or_default().push(r);
    }
    let value_type = |kind: &str, unit: &str| analyzer::pprof::ValueType { kind: kind.into(), unit: unit.into() };
    by_id
        .into_values()
        .map(|rows| {
            let run = rows.first().map_or_else(|| Arc::from(""), |r| r.run.clone());
            let time_nanos = rows.first().map_or(0, |r| i64::try_from(r.profile_time_unix_nano).unwrap_or(i64::MAX));
            let counted = rows.iter().all(|r| r.period > 0);
            let mut sample_types = vec![value_type(&kind.sample_type, &kind.sample_unit)];
            if counted {
                sample_types.push(value_type("samples", "count"));
            }
            let stacks = rows.into_iter().map(|r| {
                let frames = r
                    .stack
                    .iter()
                    .map(|f| analyzer::pprof::Frame { function: f.as_str().into(), ..Default::default() });
                let values =
                    if counted { vec![r.value, (r.value.max(0) + r.period - 1) / r.period] } else { vec![r.value] };
                (frames.collect(), values)
            });
            let profile = analyzer::pprof::Profile {
                time_nanos,
                period_type: Some(value_type(&kind.period_type, &kind.period_unit)),
                ..analyzer::pprof::Profile::from_stacks(sample_types, stacks)
            };
            (run, profile)
        })
        .collect()
}

/// A node of Grafana's nested flame graph JSON.
#[derive(Default)]
struct Node {
    value: i64,
    self_value: i64,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn to_json(&self, name: &str) -> Value {
        let children: Vec<Value> = self.children.iter().map(|(n, c)| c.to_json(n)).collect();
        json!({ "name": name, "value": self.value, "self": self.self_value, "children": children })
    }
}

fn tree(folded: &Folded) -> Value {
    let mut root = Node::default();
    for (stack, &value) in folded.stacks() {
        root.value = root.value.saturating_add(value);
        let mut node = &mut root;
        for name in stack {
            node = node.children.entry(name.clone()).or_default();
            node.value = node.value.saturating_add(value);
        }
        node.self_value = node.self_value.saturating_add(value);
    }
    // The root is "total": it has no code of its own.
    root.self_value = 0;
    root.to_json("total")
}

/// A node of the nested differential flame graph: `value`/`self` are the baseline's, and
/// `valueRight`/`selfRight` the candidate's, as Grafana's diff flame-graph frame names them.
#[derive(Default)]
struct DiffNode {
    left: (i64, i64),
    right: (i64, i64),
    children: BTreeMap<String, DiffNode>,
}

impl DiffNode {
    fn add(&mut self, stack: &[String], value: i64, right: bool) {
        let mut node = self;
        let bump = |n: &mut DiffNode, is_self: bool| {
            let side = if right { &mut n.right } else { &mut n.left };
            side.0 = side.0.saturating_add(value);
            if is_self {
                side.1 = side.1.saturating_add(value);
            }
        };
        bump(node, false);
        for name in stack {
            node = node.children.entry(name.clone()).or_default();
            bump(node, false);
        }
        bump(node, !stack.is_empty());
    }

    fn to_json(&self, name: &str) -> Value {
        let children: Vec<Value> = self.children.iter().map(|(n, c)| c.to_json(n)).collect();
        json!({
            "name": name,
            "value": self.left.0,
            "self": self.left.1,
            "valueRight": self.right.0,
            "selfRight": self.right.1,
            "children": children,
        })
    }
}

fn diff_tree(baseline: &Folded, candidate: &Folded) -> Value {
    let mut root = DiffNode::default();
    for (stack, &value) in baseline.stacks() {
        root.add(stack, value, false);
    }
    for (stack, &value) in candidate.stacks() {
        root.add(stack, value, true);
    }
    root.to_json("total")
}

fn svg_response(lines: &[String], title: String, count_name: &str) -> Response {
    let options = flame::svg::SvgOptions { title, count_name: count_name.to_string() };
    let mut out = Vec::new();
    let rendered = flame::svg::render_lines(lines.iter().map(String::as_str), &options, &mut out);
    if rendered.is_err() && out.is_empty() {
        // Nothing to draw: an empty but valid picture.
        out = br#"<?xml version="1.0" standalone="no"?><svg xmlns="http://www.w3.org/2000/svg" width="1200" height="60"><text x="600" y="30" text-anchor="middle">no samples</text></svg>"#.to_vec();
    }
    ([(header::CONTENT_TYPE, "image/svg+xml")], out).into_response()
}

fn format_param(format: Option<&str>, allowed: &[&str]) -> Result<String, QueryError> {
    let format = format.map(str::trim).filter(|f| !f.is_empty()).unwrap_or("json");
    if allowed.contains(&format) {
        Ok(format.to_string())
    } else {
        Err(QueryError::BadRequest(format!(
            "parameter `format` {:?} is not one of {}",
            format.chars().take(50).collect::<String>(),
            allowed.join(", ")
        )))
    }
}

fn filter(params: &FlameParams) -> Result<Filter, QueryError> {
    let kind = parse_type(params.profile_type.as_deref())?;
    let from = parse_time("from", params.from.as_deref())?;
    let to = parse_time("to", params.to.as_deref())?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(QueryError::BadRequest("parameter `from` is after `to`".into()));
    }
    let run_label = match params.run_label.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(label) if label.len() <= 256 && !label.contains(['{', '}', '"', '=']) => Some(label.to_string()),
        Some(label) => {
            return Err(QueryError::BadRequest(format!(
                "parameter `run_label` {:?} is not a label name",
                label.chars().take(50).collect::<String>()
            )));
        }
    };
    Ok(Filter { kind, from, to, run_label })
}

async fn flamegraph(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<FlameParams>,
) -> Result<Response, QueryError> {
    let tenant = tenant(&headers)?;
    let filter = filter(&params)?;
    let selector = parse_selector("selector", params.selector.as_deref())?;
    let format = format_param(params.format.as_deref(), &["json", "folded", "svg"])?;
    let unit = filter.kind.sample_unit.clone();
    let title = format!("{} {}", filter.kind.name, filter.kind.sample_type);
    let folded = blocking(move || {
        let rows = collect(&state, &tenant, &filter, &[selector])?;
        Ok(rows.first().map(|r| fold(r)).unwrap_or_default())
    })
    .await?;
    Ok(match format.as_str() {
        "folded" => {
            let mut text = folded.lines().join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        "svg" => svg_response(&folded.lines(), title, &unit),
        _ => Json(tree(&folded)).into_response(),
    })
}

fn share_json(s: &Share) -> Value {
    json!({
        "baseline_pct": s.baseline_pct,
        "candidate_pct": s.candidate_pct,
        "change_pp": s.change_pp,
        "z": s.z,
        // `null` for a z-test (one run per side): JSON has no infinity.
        "degrees_of_freedom": s.degrees_of_freedom.is_finite().then_some(s.degrees_of_freedom),
        "noise_inflation": s.noise_inflation,
        "confidence": s.confidence,
    })
}

fn regression_json(r: &Regression) -> Value {
    json!({
        "function": r.function,
        "self_share": share_json(&r.self_share),
        "total_share": share_json(&r.total_share),
        "hottest_path": r.hottest_path,
        "confidence": r.confidence,
    })
}

async fn flamegraph_diff(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<FlameParams>,
) -> Result<Response, QueryError> {
    let tenant = tenant(&headers)?;
    let filter = filter(&params)?;
    let baseline = parse_selector("baseline", params.baseline.as_deref())?;
    let candidate = parse_selector("candidate", params.candidate.as_deref())?;
    let format = format_param(params.format.as_deref(), &["json", "svg"])?;
    let kind = filter.kind.clone();
    let options = regression_options(&params, &kind)?;
    let sides = blocking(move || collect(&state, &tenant, &filter, &[baseline, candidate])).await?;
    let (base_rows, cand_rows) = match sides.as_slice() {
        [b, c] => (b, c),
        _ => return Err(QueryError::Storage("query returned no sides".into())),
    };
    let (base_folded, cand_folded) = (fold(base_rows), fold(cand_rows));
    if format == "svg" {
        let lines = flame::differential(&base_folded, &cand_folded);
        let title = format!("{} {}: baseline → candidate", kind.name, kind.sample_type);
        return Ok(svg_response(&lines, title, &kind.sample_unit));
    }
    let runs = |rows: &[Matched]| flame::Run::group(profiles(rows, &kind).into_iter().map(|(r, p)| (r.to_string(), p)));
    let (base_runs, cand_runs) = (runs(base_rows), runs(cand_rows));
    let count = |runs: &[flame::Run]| runs.iter().map(|r| r.profiles.len()).sum::<usize>();
    let (regressions, warnings): (Vec<Value>, Vec<String>) = if base_rows.is_empty() || cand_rows.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let comparison = flame::detect_regressions(&base_runs, &cand_runs, &options)
            .map_err(|e| QueryError::BadRequest(e.to_string()))?;
        (comparison.functions.iter().map(regression_json).collect(), comparison.warnings())
    };
    Ok(Json(json!({
        "metric": match options.metric { Metric::SelfShare => "self", Metric::TotalShare => "total" },
        "min_change_pp": options.min_change_pp,
        "min_confidence": options.min_confidence,
        "regressions": regressions,
        "baseline_profiles": count(&base_runs),
        "candidate_profiles": count(&cand_runs),
        "baseline_runs": base_runs.len(),
        "candidate_runs": cand_runs.len(),
        "warnings": warnings,
        "baseline_total": base_folded.total(),
        "candidate_total": cand_folded.total(),
        "flamegraph": diff_tree(&base_folded, &cand_folded),
    }))
    .into_response())
}

/// The regression thresholds of a diff request; defaults are [`RegressionOptions::default`]'s.
fn regression_options(params: &FlameParams, kind: &TypeId) -> Result<RegressionOptions, QueryError> {
    let mut options = RegressionOptions { sample_type: Some(kind.sample_type.clone()), ..RegressionOptions::default() };
    if let Some(min_change) = params.min_change {
        if !(min_change.is_finite() && min_change >= 0.0) {
            return Err(QueryError::BadRequest(format!(
                "parameter `min_change` must be a non-negative number of percentage points, got {min_change}"
            )));
        }
        options.min_change_pp = min_change;
    }
    if let Some(confidence) = params.confidence {
        if !(0.0..=1.0).contains(&confidence) {
            return Err(QueryError::BadRequest(format!(
                "parameter `confidence` must be between 0 and 1, got {confidence}"
            )));
        }
        options.min_confidence = confidence;
    }
    options.metric = match params.metric.as_deref().map(str::trim) {
        None | Some("") | Some("self") => Metric::SelfShare,
        Some("total") => Metric::TotalShare,
        Some(other) => {
            return Err(QueryError::BadRequest(format!(
                "parameter `metric` {:?} is not one of self, total",
                other.chars().take(50).collect::<String>()
            )));
        }
    };
    Ok(options)
}

/// `GET /api/v1/gate/profiles?type=&selector=&from=&to=`: every stored profile of the type that
/// matches, one per pushed or scraped profile, as the gate's CPU comparison reads them
/// (`analyzer::flame::detect_regressions` needs the individual profiles of each side).
async fn gate_profiles(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<FlameParams>,
) -> Result<Json<Value>, QueryError> {
    let tenant = tenant(&headers)?;
    let filter = filter(&params)?;
    let selector = parse_selector("selector", params.selector.as_deref())?;
    let kind = filter.kind.clone();
    let rows = blocking(move || collect(&state, &tenant, &filter, &[selector])).await?;
    let rows = rows.into_iter().next().unwrap_or_default();
    let list: Vec<Value> = profiles(&rows, &kind)
        .iter()
        .map(|(run, p)| {
            json!({
                "run": run.as_ref(),
                "time_unix_nano": p.time_nanos,
                "sample_types": p.sample_types.iter().map(|t| json!({ "type": t.kind, "unit": t.unit })).collect::<Vec<_>>(),
                "samples": p.samples.iter().map(|s| json!({
                    "stack": p.stack(s).map(|f| &*f.function).collect::<Vec<_>>(),
                    "values": s.values,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "type": params.profile_type, "profiles": list })))
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
const GOROUTINE_TYPE: &str = "goroutine:goroutine:count:goroutine:count";

/// `GET /api/v1/leaks?service=&version=&from=&to=`: goroutine leak detection
/// ([`analyzer::leaks::detect`]) over the stored goroutine profiles of one service (and version),
/// one report per run (process: counts of different processes are never added up), each with
/// the leaking clusters and every cluster's count series over the snapshot times.
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
    let flame = FlameParams {
        profile_type: Some(GOROUTINE_TYPE.to_string()),
        selector: None,
        baseline: None,
        candidate: None,
        from: params.from.clone(),
        to: params.to.clone(),
        format: None,
        min_change: None,
        confidence: None,
        metric: None,
        run_label: params.run_label.clone(),
    };
    let filter = filter(&flame)?;
    let kind = filter.kind.clone();
    let mut selector: Selector = vec![("service_name".to_string(), service.clone())];
    if let Some(version) = params.version.as_deref().filter(|v| !v.is_empty()) {
        selector.push(("service_version".to_string(), version.to_string()));
    }
    let rows = blocking(move || collect(&state, &tenant, &filter, &[selector])).await?;
    let rows = rows.into_iter().next().unwrap_or_default();
    let runs = flame::Run::group(profiles(&rows, &kind).into_iter().map(|(r, p)| (r.to_string(), p)));
    let options = analyzer::leaks::LeakOptions::default();
    let reports: Vec<Value> = runs
        .iter()
        .map(|run| {
            let snapshots: Vec<analyzer::leaks::Snapshot> =
                run.profiles.iter().map(analyzer::leaks::from_pprof).collect();
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
            json!({
                "run": run.id,
                "snapshots": snapshots.len(),
                "start_unix_nano": start,
                "report": analyzer::leaks::report::json(&report),
            })
        })
        .collect();
    let findings: usize = reports.iter().map(|r| r["report"]["findings"].as_array().map_or(0, Vec::len)).sum();
    Ok(Json(json!({
        "service": service,
        "version": params.version,
        "type": GOROUTINE_TYPE,
        "leaks": findings,
        "runs": reports,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_reject() {
        let s = parse_selector("selector", Some(r#"{service_name="x", service_version="a\"b"}"#)).unwrap();
        assert_eq!(s, vec![("service_name".into(), "x".into()), ("service_version".into(), "a\"b".into())]);
        assert!(parse_selector("selector", Some("{}")).unwrap().is_empty());
        assert!(parse_selector("selector", None).unwrap().is_empty());
        for bad in [r#"service_name="x""#, r#"{service_name=~"x"}"#, r#"{service_name="x"#, "{a=b}", r#"{="x"}"#] {
            let e = parse_selector("selector", Some(bad)).unwrap_err().to_string();
            assert!(e.contains("`selector`"), "{bad}: {e}");
        }
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("from", Some("1700000000")).unwrap(), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_time("from", Some("2023-11-14T22:13:20Z")).unwrap(), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_time("from", Some("2023-11-14T23:13:20.5+01:00")).unwrap(), Some(1_700_000_000_500_000_000));
        assert!(parse_time("to", Some("yesterday")).unwrap_err().to_string().contains("`to`"));
        assert!(parse_time("to", Some("-5")).is_err());
    }

    // issue 11 minor: `from=2020-01-01T00:00:00+99:99` was accepted. Impossible offsets, dates
    // and times are refused; every valid RFC 3339 form is read.
    #[test]
    fn impossible_times_are_refused() {
        for bad in [
            "2020-01-01T00:00:00+99:99",
            "2020-01-01T00:00:00+24:00",
            "2020-01-01T00:00:00-12:60",
            "2021-02-30T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "2020-04-31T12:00:00Z",
            "2020-13-01T00:00:00Z",
            "2020-01-01T24:00:00Z",
            "2020-01-01T23:60:00Z",
            "2020-01-01T00:00:00",
            "2020-01-01",
            "2020-1-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2020-01-01T00:00:00.Z",
        ] {
            assert!(parse_time("from", Some(bad)).is_err(), "{bad} accepted");
        }
        let day = 86_400_000_000_000u64;
        let y2020 = 18_262 * day;
        for (good, nanos) in [
            ("2020-01-01T00:00:00Z", y2020),
            ("2020-01-01t00:00:00z", y2020),
            ("2020-01-01 00:00:00Z", y2020),
            ("2020-01-01T00:00:00+00:00", y2020),
            ("2020-01-01T01:30:00+01:30", y2020),
            ("2019-12-31T10:00:00-14:00", y2020),
            ("2020-02-29T00:00:00Z", y2020 + 59 * day),
            ("2020-01-01T00:00:00.000000001Z", y2020 + 1),
            ("2020-01-01T00:00:00.25Z", y2020 + 250_000_000),
        ] {
            assert_eq!(parse_time("from", Some(good)).unwrap(), Some(nanos), "{good}");
        }
    }

    #[test]
    fn types_parse_and_names_derive() {
        let t = parse_type(Some("process_cpu:cpu:nanoseconds:cpu:nanoseconds")).unwrap();
        assert_eq!((t.name.as_str(), t.sample_type.as_str()), ("process_cpu", "cpu"));
        assert!(parse_type(Some("cpu")).unwrap_err().to_string().contains("`type`"));
        assert!(parse_type(None).is_err());
        assert_eq!(derived_name("alloc_space"), "memory");
        assert_eq!(derived_name("wall"), "wall");
    }

    #[test]
    fn tree_sums_and_sorts() {
        let mut f = Folded::new();
        f.add(vec!["main".into(), "b".into()], 3);
        f.add(vec!["main".into(), "a".into()], 2);
        f.add(vec!["main".into()], 1);
        let t = tree(&f);
        assert_eq!(t["value"], 6);
        assert_eq!(t["self"], 0);
        assert_eq!(t["children"][0]["name"], "main");
        assert_eq!(t["children"][0]["self"], 1);
        assert_eq!(t["children"][0]["children"][0]["name"], "a");
        assert_eq!(tree(&Folded::new())["value"], 0);
    }
}
