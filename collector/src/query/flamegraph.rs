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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
fn scan_profiles(
    state: &ApiState,
    tenant: &Tenant,
    mut f: impl FnMut(&ProfileRow),
) -> Result<crate::store::ScanReport, QueryError> {
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
        .unwrap_or_else(|| derived_name(&row.profile.sample_type));
    format!(
        "{name}:{}:{}:{}:{}",
        row.profile.sample_type, row.profile.sample_unit, row.profile.period_type, row.profile.period_unit
    )
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
                row.profile.sample_type,
                row.profile.sample_unit,
                row.profile.period_type,
                row.profile.period_unit,
                row.attributes
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
    /// Function names, innermost first, shared by every row with the same stack.
    stack: SharedStack,
    /// The run (process) the profile came from: the value of the run label, or empty.
    run: Arc<str>,
    /// When the profile was taken.
    profile_time_unix_nano: u64,
}

/// A function name, shared by every stack it appears in.
type Name = Arc<str>;

/// A decoded stack (function names, innermost first), decoded once per distinct stored stack
/// and shared by every row that has it: 20,000 samples of one 1,000-frame stack cost one stack.
type SharedStack = Arc<[Name]>;

/// Decodes stored stacks (JSON arrays of frames), each distinct text once, interning names.
#[derive(Default)]
struct StackCache {
    stacks: HashMap<Box<str>, SharedStack>,
    names: HashSet<Name>,
}

/// The part of a stored frame a flame graph needs.
#[derive(Deserialize)]
struct StoredFrame<'a> {
    #[serde(borrow)]
    function: std::borrow::Cow<'a, str>,
}

impl StackCache {
    fn get(&mut self, text: &str) -> SharedStack {
        if let Some(stack) = self.stacks.get(text) {
            return Arc::clone(stack);
        }
        let frames = serde_json::from_str::<Vec<StoredFrame<'_>>>(text).unwrap_or_default();
        let stack: SharedStack = frames
            .iter()
            .map(|f| {
                let name = if f.function.is_empty() { "<unknown>" } else { &f.function };
                match self.names.get(name) {
                    Some(n) => Arc::clone(n),
                    None => {
                        let n: Name = Arc::from(name);
                        self.names.insert(Arc::clone(&n));
                        n
                    }
                }
            })
            .collect();
        self.stacks.insert(text.into(), Arc::clone(&stack));
        stack
    }
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
    let mut stacks = StackCache::default();
    let mut decoded: HashMap<Box<str>, Vec<opentelemetry_proto::tonic::common::v1::KeyValue>> = HashMap::new();
    let mut resources: HashMap<Arc<str>, Vec<opentelemetry_proto::tonic::common::v1::KeyValue>> = HashMap::new();
    let run_labels: Vec<&str> = match &filter.run_label {
        Some(label) => vec![label.as_str()],
        None => RUN_LABELS.to_vec(),
    };
    scan_profiles(state, tenant, |row| {
        let k = &filter.kind;
        if *row.profile.sample_type != *k.sample_type
            || *row.profile.sample_unit != *k.sample_unit
            || *row.profile.period_type != *k.period_type
            || *row.profile.period_unit != *k.period_unit
            || filter.from.is_some_and(|f| row.time_unix_nano < f)
            || filter.to.is_some_and(|t| row.time_unix_nano > t)
        {
            return;
        }
        let attributes_text: &str = &row.attributes;
        if !decoded.contains_key(attributes_text) {
            decoded.insert(attributes_text.into(), attrs::decode_lossy(attributes_text));
        }
        let Some(attributes) = decoded.get(attributes_text) else { return };
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
            let stack = stacks.get(&row.stack);
            let period = if k.sample_unit == k.period_unit { row.profile.period.max(0) } else { 0 };
            let resource = resources
                .entry(row.resource.attributes.clone())
                .or_insert_with(|| attrs::decode_lossy(&row.resource.attributes));
            let run = run_labels
                .iter()
                .find_map(|key| attrs::find(attributes, key).or_else(|| attrs::find(resource, key)))
                .and_then(attrs::as_text)
                .map_or_else(|| Arc::from(""), Arc::from);
            out.push(Matched {
                profile_id: row.profile.profile_id,
                value: row.value,
                period,
                stack,
                run,
                profile_time_unix_nano: row.profile.profile_time_unix_nano,
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
    // Rows of one stack share one `Arc` (see `StackCache`): sum their values first, so each
    // distinct stack is turned into names once, not once per row.
    let mut sums: HashMap<*const Name, (&SharedStack, i64)> = HashMap::new();
    for r in rows {
        if r.value == 0 {
            continue;
        }
        let sum = sums.entry(Arc::as_ptr(&r.stack).cast::<Name>()).or_insert((&r.stack, 0));
        sum.1 = sum.1.saturating_add(r.value);
    }
    let mut folded = Folded::new();
    for (stack, value) in sums.into_values() {
        let mut names: Vec<String> = stack.iter().rev().map(|n| clean(n)).collect();
        if names.is_empty() {
            names.push("<unknown>".to_string());
        }
        folded.add(names, value);
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
                let frames =
                    r.stack.iter().map(|f| analyzer::pprof::Frame { function: Arc::clone(f), ..Default::default() });
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
        _ => json_text(tree(&folded)),
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
    let summary = json!({
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
    });
    // The flame graph nests one level per frame: written as text (see `Trie`) and appended as
    // the object's last member, never built as a `serde_json::Value`.
    let mut text = summary.to_string();
    text.pop();
    text.push_str(",\"flamegraph\":");
    text.push_str(&diff_tree(&base_folded, &cand_folded));
    text.push('}');
    Ok(json_text(text))
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
