//! The native flame-graph API: `/api/v1/profile-types`, `/api/v1/flamegraph` and
//! `/api/v1/flamegraph/diff`, in Pyroscope's vocabulary (profile type ids
//! `name:sample_type:unit:period_type:period_unit`, label selectors `{service_name="x"}`).
//!
//! Every output — Grafana's nested JSON, folded text, inferno's SVG — is rendered from one
//! folded map ([`super::profiles`]), sorted, so the same data always gives the same bytes; the
//! diff hands each side's individual profiles to [`analyzer::flame::detect_regressions`].
//! Every handler is scoped by the `X-Scope-OrgID` tenant.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, header};
use serde::Deserialize;

use super::params::{self, Selector, format_param};
use super::profiles::{Filter, Matched, collect_reported, fold, profiles, scan_profiles, type_id};
use super::work::{WorkSource, work_in_window};
use super::{ApiState, blocking, tenant, warning_headers};
use crate::api::flame::{FlameDiff, FunctionChange, LoadComparison, ProfileType, ProfileTypes, RuntimeShare, Sides};
use crate::error::QueryError;
use crate::model::attrs;
use analyzer::flame::{self, Folded, Normalization, RegressionOptions};
use analyzer::pprof::ProfileTypeId;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/profile-types", get(profile_types))
        .route("/api/v1/flamegraph", get(flamegraph))
        .route("/api/v1/flamegraph/diff", get(flamegraph_diff))
}

async fn profile_types(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<ProfileTypes>, QueryError> {
    let tenant = tenant(&headers)?;
    let tenant_name = tenant.as_str().to_string();
    let types = blocking(move || {
        let mut types: BTreeMap<String, (ProfileTypeId, BTreeSet<String>)> = BTreeMap::new();
        // Rows of one profile share their attributes text; decode each distinct text once.
        let mut cache: HashMap<String, ProfileTypeId> = HashMap::new();
        scan_profiles(&state, &tenant, |row| {
            let key = format!(
                "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
                row.profile.sample_type,
                row.profile.sample_unit,
                row.profile.period_type,
                row.profile.period_unit,
                row.attributes
            );
            let id = cache.entry(key).or_insert_with(|| type_id(row, &attrs::decode_lossy(&row.attributes)));
            let (_, services) = types.entry(id.to_string()).or_insert_with(|| (id.clone(), BTreeSet::new()));
            if let Some(s) = row.resource.service_name.as_deref() {
                services.insert(s.to_string());
            }
        })?;
        Ok(types)
    })
    .await?;
    let profile_types = types
        .into_iter()
        .map(|(id, (parsed, services))| ProfileType {
            name: parsed.name,
            sample_type: parsed.sample_type,
            sample_unit: parsed.sample_unit,
            period_type: parsed.period_type,
            period_unit: parsed.period_unit,
            services: services.into_iter().collect(),
            id,
        })
        .collect();
    Ok(Json(ProfileTypes { tenant: tenant_name, profile_types }))
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
    /// Diff only: `auto` (default), `share`, `rate` or `per_request` (ADR 0008).
    normalize: Option<String>,
    /// Diff only: the counter whose increase is the work done, for CPU per request; default the
    /// builds' SERVER spans.
    work_metric: Option<String>,
}

/// Grafana's nested flame graph as JSON text: from a root named `total`, nodes
/// `{"name","value","self","children":[...]}` with children sorted by name.
fn tree(folded: &Folded) -> String {
    let trie = Trie::build(folded.stacks().iter().map(|(stack, &value)| (stack.as_slice(), [value])));
    trie.to_json(&[("value", "self")])
}

/// The nested differential flame graph as JSON text: `value`/`self` are the baseline's, and
/// `valueRight`/`selfRight` the candidate's, as Grafana's diff flame-graph frame names them.
fn diff_tree(baseline: &Folded, candidate: &Folded) -> String {
    let mut both: BTreeMap<&[String], [i64; 2]> = BTreeMap::new();
    for (side, folded) in [baseline, candidate].into_iter().enumerate() {
        for (stack, &value) in folded.stacks() {
            let sum = &mut both.entry(stack.as_slice()).or_default()[side];
            *sum = sum.saturating_add(value);
        }
    }
    Trie::build(both.into_iter()).to_json(&[("value", "self"), ("valueRight", "selfRight")])
}

/// A flame graph's call tree with `N` values per node (one per side), in an arena.
///
/// Design: stacks come in sorted order, so the stacks sharing a prefix are adjacent and each
/// new stack shares with the tree built so far exactly its common prefix with the previous
/// stack. The tree is built by comparing neighbours, and its nodes are created in depth-first
/// pre-order with children in name order, which is the order the JSON lists them in. So the
/// arena is a flat vector written front to back with a depth counter: nothing recurses, however
/// deep the stacks (stored profiles may predate `max_stack_depth`, or it may be set high), and
/// dropping it frees one vector.
struct Trie<'a, const N: usize> {
    /// Pre-order; `nodes[0]` is the root (`total`, depth 0).
    nodes: Vec<TrieNode<'a, N>>,
}

struct TrieNode<'a, const N: usize> {
    name: &'a str,
    depth: usize,
    /// Value of the node and everything under it, per side.
    total: [i64; N],
    /// Value of stacks ending at this node, per side.
    own: [i64; N],
}

impl<'a, const N: usize> Trie<'a, N> {
    /// Builds the tree of root-first `stacks`, which must come sorted and without repeats (as
    /// a `BTreeMap` iterates).
    fn build(stacks: impl Iterator<Item = (&'a [String], [i64; N])>) -> Self {
        let mut nodes = vec![TrieNode { name: "total", depth: 0, total: [0; N], own: [0; N] }];
        // `path[d]` is the node at depth `d` of the previous stack.
        let mut path: Vec<usize> = vec![0];
        let mut previous: &[String] = &[];
        for (stack, values) in stacks {
            debug_assert!(previous < stack || previous.is_empty(), "stacks must come sorted");
            let common = previous.iter().zip(stack).take_while(|(a, b)| a == b).count();
            path.truncate(common + 1);
            for (i, name) in stack.iter().enumerate().skip(common) {
                path.push(nodes.len());
                nodes.push(TrieNode { name, depth: i + 1, total: [0; N], own: [0; N] });
            }
            for &node in &path {
                add(&mut nodes[node].total, &values);
            }
            // The root is "total": it has no code of its own.
            if !stack.is_empty() {
                add(&mut nodes[path[stack.len()]].own, &values);
            }
            previous = stack;
        }
        Trie { nodes }
    }

    /// The nested JSON, `labels[i]` naming the total and own value of side `i`.
    fn to_json(&self, labels: &[(&str, &str); N]) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(self.nodes.len() * 64);
        // Depth of the node opened last; its `children` array is open.
        let mut open = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            if i > 0 && node.depth <= open {
                // Close the previous node and its ancestors up to this node's previous sibling.
                for _ in node.depth..=open {
                    out.push_str("]}");
                }
                out.push(',');
            }
            out.push_str("{\"name\":");
            push_json_string(&mut out, node.name);
            for (side, (value, own)) in labels.iter().enumerate() {
                let _ = write!(out, ",\"{value}\":{},\"{own}\":{}", node.total[side], node.own[side]);
            }
            out.push_str(",\"children\":[");
            open = node.depth;
        }
        for _ in 0..=open {
            out.push_str("]}");
        }
        out
    }
}

fn add<const N: usize>(sums: &mut [i64; N], values: &[i64; N]) {
    for (sum, v) in sums.iter_mut().zip(values) {
        *sum = sum.saturating_add(*v);
    }
}

/// Appends `s` as a JSON string literal, escaped as `serde_json` escapes it.
fn push_json_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON answer already written as text.
fn json_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
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

fn filter(params: &FlameParams) -> Result<Filter, QueryError> {
    Filter::from_params(
        params.profile_type.as_deref(),
        params.from.as_deref(),
        params.to.as_deref(),
        params.run_label.as_deref(),
    )
}

async fn flamegraph(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<FlameParams>,
) -> Result<Response, QueryError> {
    let tenant = tenant(&headers)?;
    let filter = filter(&params)?;
    let selector = Selector::parse("selector", params.selector.as_deref())?;
    let format = format_param(params.format.as_deref(), &["json", "folded", "svg"])?;
    let unit = filter.kind.sample_unit.clone();
    let title = format!("{} {}", filter.kind.name, filter.kind.sample_type);
    let (folded, scan_warnings) = blocking(move || {
        let (rows, warnings) = collect_reported(&state, &tenant, &filter, &[selector])?;
        Ok((rows.first().map(|r| fold(r)).unwrap_or_default(), warnings))
    })
    .await?;
    // The tree's shape is fixed (and deep): parts the scan could not read are named in
    // `Warning` headers, in every format.
    let mut response = match format.as_str() {
        "folded" => {
            let mut text = folded.lines().join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        "svg" => svg_response(&folded.lines(), title, &unit),
        _ => json_text(tree(&folded)),
    };
    warning_headers(&mut response, &scan_warnings);
    Ok(response)
}

async fn flamegraph_diff(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<FlameParams>,
) -> Result<Response, QueryError> {
    let tenant = tenant(&headers)?;
    let filter = filter(&params)?;
    let baseline = Selector::parse("baseline", params.baseline.as_deref())?;
    let candidate = Selector::parse("candidate", params.candidate.as_deref())?;
    let format = format_param(params.format.as_deref(), &["json", "svg"])?;
    let kind = filter.kind.clone();
    let mut options = regression_options(&params, &kind)?;
    let work_source = work_source(params.work_metric.as_deref())?;
    // Rates read the work too: known loads that differ make CPU per second incomparable.
    let wants_work = options.normalization != Normalization::Share;
    // Allocation profiles charge the runtime's CPU growth to the code that allocates.
    let alloc_kind = params::profile_type("type", Some(ALLOC_TYPE))?;
    let alloc_filter = (kind.sample_type == "cpu").then(|| Filter { kind: alloc_kind.clone(), ..filter.clone() });
    let sides = blocking(move || {
        let selectors = [baseline, candidate];
        let (rows, mut warnings) = collect_reported(&state, &tenant, &filter, &selectors)?;
        let mut work = (None, None);
        if wants_work {
            let window = |rows: &[Matched]| {
                let start = rows.iter().map(|r| r.profile_time_unix_nano).min().unwrap_or(0);
                let end =
                    rows.iter().map(|r| r.profile_time_unix_nano.saturating_add(r.duration_nano)).max().unwrap_or(0);
                (start, end)
            };
            if let [b, c] = rows.as_slice() {
                work.0 = work_in_window(&state, &tenant, &selectors[0], window(b), &work_source)?;
                work.1 = work_in_window(&state, &tenant, &selectors[1], window(c), &work_source)?;
            }
        }
        let allocs = match &alloc_filter {
            Some(f) => {
                let (allocs, more) = collect_reported(&state, &tenant, f, &selectors)?;
                for w in more {
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                }
                allocs
            }
            None => Vec::new(),
        };
        Ok((rows, work, allocs, warnings))
    })
    .await?;
    let (sides, work, allocs, scan_warnings) = sides;
    let (base_rows, cand_rows) = match sides.as_slice() {
        [b, c] => (b, c),
        _ => return Err(QueryError::Internal("the scan answered no sides".into())),
    };
    (options.baseline_work, options.candidate_work) = work;
    let (base_folded, cand_folded) = (fold(base_rows), fold(cand_rows));
    let runs = |rows: &[Matched], kind: &ProfileTypeId| {
        flame::Run::group(profiles(rows, kind).into_iter().map(|(r, p)| (r.to_string(), p)))
    };
    let (base_runs, cand_runs) = (runs(base_rows, &kind), runs(cand_rows, &kind));
    let count = |runs: &[flame::Run]| runs.iter().map(|r| r.profiles.len()).sum::<usize>();
    let comparison = if base_rows.is_empty() || cand_rows.is_empty() {
        None
    } else {
        Some(
            flame::detect_regressions(&base_runs, &cand_runs, &options)
                .map_err(|e| QueryError::BadRequest(e.to_string()))?,
        )
    };
    if format == "svg" {
        let (lines, scale) = match &comparison {
            Some(c) if c.normalization != Normalization::Share => (
                flame::differential_scaled(&base_folded, &cand_folded, c.baseline_scale),
                format!("absolute change, {}", c.measure()),
            ),
            _ => (flame::differential(&base_folded, &cand_folded), "baseline normalised to the candidate total".into()),
        };
        let title = format!("{} {}: baseline → candidate ({scale})", kind.name, kind.sample_type);
        let mut response = svg_response(&lines, title, &kind.sample_unit);
        warning_headers(&mut response, &scan_warnings);
        return Ok(response);
    }
    let comparison = comparison.map(|c| {
        let allocation = match allocs.as_slice() {
            [b, c_rows] => Some(flame::attribute_allocations(&runs(b, &alloc_kind), &runs(c_rows, &alloc_kind), &c)),
            _ => None,
        };
        let explanation = flame::explain::sentences(&c, &c.functions, options.metric, allocation.as_ref());
        (c, allocation, explanation)
    });
    let mut summary = FlameDiff {
        metric: options.metric,
        min_change_pp: options.min_change_pp,
        min_confidence: options.min_confidence,
        regressions: comparison.as_ref().map(|(c, ..)| c.functions.clone()).unwrap_or_default(),
        baseline_profiles: count(&base_runs),
        candidate_profiles: count(&cand_runs),
        baseline_runs: base_runs.len(),
        candidate_runs: cand_runs.len(),
        // Parts that could not be read first: the comparison below is over what remained.
        warnings: scan_warnings
            .iter()
            .cloned()
            .chain(comparison.as_ref().map(|(c, ..)| c.warnings()).unwrap_or_default())
            .collect(),
        baseline_total: base_folded.total(),
        candidate_total: cand_folded.total(),
        ..FlameDiff::default()
    };
    if let Some((c, allocation, explanation)) = comparison {
        summary.normalization = Some(c.normalization.name().to_string());
        summary.unit = Some(c.unit.clone());
        summary.notes = c.notes.clone();
        summary.loads_differ = Some(c.loads_differ);
        summary.load = c.load.as_ref().map(|l| LoadComparison {
            measured_from: match l.measured_from {
                flame::LoadSource::Work => "work",
                flame::LoadSource::Cpu => "cpu",
            }
            .to_string(),
            baseline_per_second: l.baseline_per_second,
            candidate_per_second: l.candidate_per_second,
            ratio: l.ratio,
            comparable: l.comparable(),
        });
        summary.work_per_second = Some(Sides { baseline: c.work_per_second.0, candidate: c.work_per_second.1 });
        summary.runtime = Some(RuntimeShare {
            baseline_pct: c.runtime_change.baseline_pct,
            candidate_pct: c.runtime_change.candidate_pct,
            change_pp: c.runtime_change.change_pp(),
            confidence: c.runtime_change.together.as_ref().map(|t| t.confidence),
            reported: c.runtime_change.reported,
            top: c
                .runtime_change
                .top
                .iter()
                .map(|(f, pp)| FunctionChange { function: f.clone(), change_pp: *pp })
                .collect(),
        });
        summary.allocation = allocation;
        summary.explanation = explanation;
    }
    // The flame graph nests one level per frame: written as text (see `Trie`) and appended as
    // the object's last member, never built as a `serde_json::Value`.
    let mut text =
        serde_json::to_string(&summary).map_err(|e| QueryError::Internal(format!("cannot encode the diff: {e}")))?;
    text.pop();
    text.push_str(",\"flamegraph\":");
    text.push_str(&diff_tree(&base_folded, &cand_folded));
    text.push('}');
    Ok(json_text(text))
}

/// Where the diff API counts the work: a counter named by `work_metric` (at most 200 characters,
/// no control characters), else the builds' SERVER spans.
fn work_source(work_metric: Option<&str>) -> Result<WorkSource, QueryError> {
    Ok(match work_metric.map(str::trim).filter(|m| !m.is_empty()) {
        Some(name) if name.len() > 200 || name.chars().any(char::is_control) => {
            return Err(QueryError::BadRequest("parameter `work_metric` is not a metric name".into()));
        }
        Some(name) => WorkSource::Counter(name.to_string()),
        None => WorkSource::ServerSpans,
    })
}

/// The allocation profile type whose growth is charged with the runtime's CPU growth.
use analyzer::pprof::profile_type::ALLOC_SPACE as ALLOC_TYPE;

/// The regression thresholds of a diff request; defaults are [`RegressionOptions::default`]'s.
fn regression_options(params: &FlameParams, kind: &ProfileTypeId) -> Result<RegressionOptions, QueryError> {
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
    if let Some(text) = params.normalize.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        options.normalization = Normalization::parse(text).ok_or_else(|| {
            QueryError::BadRequest(format!(
                "parameter `normalize` {:?} is not one of auto, share, rate, per_request",
                text.chars().take(50).collect::<String>()
            ))
        })?;
    }
    if let Some(text) = params.metric.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        options.metric = text.parse().map_err(|_| {
            QueryError::BadRequest(format!(
                "parameter `metric` {:?} is not one of self, total",
                text.chars().take(50).collect::<String>()
            ))
        })?;
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn diff_normalization_and_work_parameters_are_checked() {
        let kind: ProfileTypeId = "process_cpu:cpu:nanoseconds:cpu:nanoseconds".parse().unwrap();
        let params = |normalize: &str| -> FlameParams {
            serde_json::from_value(json!({ "normalize": normalize })).expect("params")
        };
        for (text, want) in
            [("auto", Normalization::Auto), ("rate", Normalization::Rate), ("per_request", Normalization::PerUnit)]
        {
            assert_eq!(regression_options(&params(text), &kind).unwrap().normalization, want);
        }
        let err = regression_options(&params("per_second"), &kind).unwrap_err().to_string();
        assert!(
            err.contains("parameter `normalize` \"per_second\" is not one of auto, share, rate, per_request"),
            "{err}"
        );
        assert_eq!(work_source(None).unwrap(), WorkSource::ServerSpans);
        assert_eq!(
            work_source(Some(" http_requests_total ")).unwrap(),
            WorkSource::Counter("http_requests_total".into())
        );
        for bad in ["x".repeat(201), "a\nb".to_string()] {
            let err = work_source(Some(&bad)).unwrap_err().to_string();
            assert!(err.contains("parameter `work_metric` is not a metric name"), "{err}");
        }
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn tree_sums_and_sorts() {
        let mut f = Folded::new();
        f.add(vec!["main".into(), "b".into()], 3);
        f.add(vec!["main".into(), "a".into()], 2);
        f.add(vec!["main".into()], 1);
        let t = parse(&tree(&f));
        assert_eq!(t["value"], 6);
        assert_eq!(t["self"], 0);
        assert_eq!(t["children"][0]["name"], "main");
        assert_eq!(t["children"][0]["self"], 1);
        assert_eq!(t["children"][0]["children"][0]["name"], "a");
        assert_eq!(parse(&tree(&Folded::new())), json!({"name": "total", "value": 0, "self": 0, "children": []}));
    }

    /// The nested tree as the recursive `BTreeMap` construction this module used to build: the
    /// reference the arena must match.
    fn reference(sides: &[&Folded]) -> Value {
        #[derive(Default)]
        struct Node {
            total: Vec<i64>,
            own: Vec<i64>,
            children: BTreeMap<String, Node>,
        }
        fn to_json(name: &str, node: &Node, n: usize) -> Value {
            let mut object = serde_json::Map::new();
            object.insert("name".into(), name.into());
            let labels = [("value", "self"), ("valueRight", "selfRight")];
            for (side, (value, own)) in labels.iter().enumerate().take(n) {
                object.insert(value.to_string(), node.total.get(side).copied().unwrap_or(0).into());
                object.insert(own.to_string(), node.own.get(side).copied().unwrap_or(0).into());
            }
            let children = node.children.iter().map(|(name, c)| to_json(name, c, n)).collect();
            object.insert("children".into(), Value::Array(children));
            Value::Object(object)
        }
        let n = sides.len();
        let mut root = Node { total: vec![0; n], own: vec![0; n], ..Default::default() };
        for (side, folded) in sides.iter().enumerate() {
            for (stack, &value) in folded.stacks() {
                root.total[side] += value;
                let mut node = &mut root;
                for name in stack {
                    node = node.children.entry(name.clone()).or_insert_with(|| Node {
                        total: vec![0; n],
                        own: vec![0; n],
                        ..Default::default()
                    });
                    node.total[side] += value;
                }
                node.own[side] += value;
            }
        }
        to_json("total", &root, n)
    }

    fn folded_strategy() -> impl proptest::strategy::Strategy<Value = Folded> {
        use proptest::prelude::*;
        let stack = proptest::collection::vec(proptest::sample::select(vec!["a", "b", "c", "d\"q"]), 1..6);
        proptest::collection::vec((stack, 1i64..1000), 0..12).prop_map(|stacks| {
            let mut f = Folded::new();
            for (stack, value) in stacks {
                f.add(stack.into_iter().map(str::to_string).collect(), value);
            }
            f
        })
    }

    proptest::proptest! {
        /// The arena written as text is the tree the recursive construction gives, for one side
        /// and for the diff's two.
        #[test]
        fn arena_trees_equal_the_recursive_construction(a in folded_strategy(), b in folded_strategy()) {
            proptest::prop_assert_eq!(parse(&tree(&a)), reference(&[&a]));
            proptest::prop_assert_eq!(parse(&diff_tree(&a, &b)), reference(&[&a, &b]));
        }

        /// Names are escaped as `serde_json` escapes them.
        #[test]
        fn json_strings_are_escaped_like_serde(s in "\\PC*|[\\x00-\\x20\"\\\\]{0,8}") {
            let mut out = String::new();
            push_json_string(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
        }
    }

    /// An object of JSON text: its depth and its string and integer members.
    type FlatObject = (usize, BTreeMap<String, Value>);

    /// Reads JSON text without recursion (an explicit stack of open containers), checking its
    /// syntax, and returns each object's depth and its string and integer members in document
    /// order. For answers too deep for `serde_json::Value`.
    fn flat_objects(text: &str) -> Result<Vec<FlatObject>, String> {
        #[derive(PartialEq)]
        enum Expect {
            Value,
            ValueOrEnd,
            Key,
            KeyOrEnd,
            CommaOrEnd,
        }
        let b = text.as_bytes();
        let mut i = 0;
        // Open containers: `Some((object index, depth))` for an object, `None` for an array.
        let mut open: Vec<Option<(usize, usize)>> = Vec::new();
        let mut objects: Vec<FlatObject> = Vec::new();
        let mut key: Option<String> = None;
        let mut expect = Expect::Value;
        let string_end = |start: usize| -> Result<usize, String> {
            let mut j = start + 1;
            while j < b.len() {
                match b[j] {
                    b'\\' => j += 2,
                    b'"' => return Ok(j + 1),
                    _ => j += 1,
                }
            }
            Err(format!("unterminated string at {start}"))
        };
        loop {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if open.is_empty() && expect == Expect::CommaOrEnd {
                return if i == b.len() { Ok(objects) } else { Err(format!("text after the value at {i}")) };
            }
            let Some(&c) = b.get(i) else { return Err("unexpected end".into()) };
            match expect {
                Expect::Value | Expect::ValueOrEnd => {
                    if expect == Expect::ValueOrEnd && c == b']' {
                        open.pop();
                        i += 1;
                        expect = Expect::CommaOrEnd;
                        continue;
                    }
                    let scalar = match c {
                        b'{' | b'[' => {
                            key = None;
                            if c == b'[' {
                                open.push(None);
                                i += 1;
                                expect = Expect::ValueOrEnd;
                                continue;
                            }
                            // One more than the nearest enclosing object's.
                            let depth = open.iter().rev().find_map(|o| o.map(|(_, d)| d + 1)).unwrap_or(0);
                            objects.push((depth, BTreeMap::new()));
                            open.push(Some((objects.len() - 1, depth)));
                            i += 1;
                            expect = Expect::KeyOrEnd;
                            None
                        }
                        b'"' => {
                            let end = string_end(i)?;
                            let v: Value = serde_json::from_str(&text[i..end]).map_err(|e| e.to_string())?;
                            i = end;
                            Some(v)
                        }
                        _ => {
                            let end = (i..b.len()).find(|&j| !b"-+.eE0123456789".contains(&b[j])).unwrap_or(b.len());
                            let v: i64 = text[i..end].parse().map_err(|e| format!("bad number at {i}: {e}"))?;
                            i = end;
                            Some(Value::from(v))
                        }
                    };
                    if let Some(v) = scalar {
                        if let (Some(Some((o, _))), Some(k)) = (open.last(), key.take()) {
                            objects[*o].1.insert(k, v);
                        }
                        expect = Expect::CommaOrEnd;
                    }
                }
                Expect::Key | Expect::KeyOrEnd => {
                    if expect == Expect::KeyOrEnd && c == b'}' {
                        open.pop();
                        i += 1;
                        expect = Expect::CommaOrEnd;
                        continue;
                    }
                    if c != b'"' {
                        return Err(format!("expected a key at {i}"));
                    }
                    let end = string_end(i)?;
                    key = Some(serde_json::from_str(&text[i..end]).map_err(|e| e.to_string())?);
                    i = end;
                    while i < b.len() && b[i].is_ascii_whitespace() {
                        i += 1;
                    }
                    if b.get(i) != Some(&b':') {
                        return Err(format!("expected `:` at {i}"));
                    }
                    i += 1;
                    expect = Expect::Value;
                }
                Expect::CommaOrEnd => {
                    let top = open.last().copied().flatten();
                    match (c, top.is_some()) {
                        (b',', true) => expect = Expect::Key,
                        (b',', false) => expect = Expect::Value,
                        (b'}', true) | (b']', false) => {
                            open.pop();
                        }
                        _ => return Err(format!("unexpected {:?} at {i}", c as char)),
                    }
                    i += 1;
                }
            }
        }
    }

    #[test]
    fn the_flat_reader_agrees_with_serde_and_refuses_bad_syntax() {
        let text = r#"{"name":"total","value":3,"children":[{"name":"a\"b","value":1,"children":[]},{"name":"c","children":[]}]}"#;
        let objects = flat_objects(text).unwrap();
        let depths: Vec<usize> = objects.iter().map(|(d, _)| *d).collect();
        assert_eq!(depths, [0, 1, 1]);
        assert_eq!(objects[1].1["name"], "a\"b");
        assert_eq!(objects[0].1["value"], 3);
        for bad in [r#"{"a":1"#, r#"{"a":1}}"#, r#"{"a" 1}"#, r#"[1,]"#, r#"[1 2]"#, r#"{"a":[}"#, "", r#"{"a":1,}"#] {
            assert!(flat_objects(bad).is_err(), "{bad}");
        }
    }

    /// A folded stack of `depth` frames `f0` (root) … `f{depth-1}`, plus a short stack beside it.
    fn deep_folded(depth: usize, value: i64) -> Folded {
        let mut f = Folded::new();
        f.add((0..depth).map(|i| format!("f{i}")).collect(), value);
        f.add(vec!["f0".into(), "g".into()], 1);
        f
    }

    /// Runs `f` on a thread with a 256 KiB stack: anything recursing once per frame of a deep
    /// stack overflows it.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new().stack_size(256 << 10).spawn(f).unwrap().join().unwrap()
    }

    // issue 11 #1: the JSON flame graph of a 4,000–10,000-frame stack overflowed the thread's
    // stack and aborted the process (the tree was built, serialised and dropped recursively).
    #[test]
    fn trees_deeper_than_any_limit_are_built_without_recursion() {
        const DEPTH: usize = 100_000;
        let (text, diff) = on_small_stack(|| {
            let (a, b) = (deep_folded(DEPTH, 5), deep_folded(DEPTH, 7));
            (tree(&a), diff_tree(&a, &b))
        });
        let objects = flat_objects(&text).unwrap();
        assert_eq!(objects.len(), DEPTH + 2, "root, the deep stack and g");
        for (i, (depth, members)) in objects.iter().enumerate().skip(1).take(DEPTH) {
            assert_eq!(*depth, i);
            assert_eq!(members["name"], format!("f{}", i - 1));
            let total = if i == 1 { 6 } else { 5 };
            let own = if i == DEPTH { 5 } else { 0 };
            assert_eq!((members["value"].as_i64(), members["self"].as_i64()), (Some(total), Some(own)), "node {i}");
        }
        assert_eq!(objects[0].1["value"], 6);
        assert_eq!((objects[DEPTH + 1].0, &objects[DEPTH + 1].1["name"]), (2, &json!("g")));

        let objects = flat_objects(&diff).unwrap();
        assert_eq!(objects.len(), DEPTH + 2);
        let leaf = &objects[DEPTH].1;
        assert_eq!(leaf["name"], format!("f{}", DEPTH - 1));
        assert_eq!((leaf["self"].as_i64(), leaf["selfRight"].as_i64()), (Some(5), Some(7)));
        assert_eq!((objects[0].1["value"].as_i64(), objects[0].1["valueRight"].as_i64()), (Some(6), Some(8)));
    }
}
