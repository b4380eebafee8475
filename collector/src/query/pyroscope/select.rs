//! The scan every method shares, and the merged flame graph (`SelectMergeStacktraces`), the
//! merged pprof profile (`SelectMergeProfile`) and the diff (`Diff`).
//!
//! Design: a query reads only the head chunks and parts whose time range overlaps the request's
//! and, when the selector requires one `service_name`, whose service list holds it (part
//! metadata has both, so pruned parts are never opened). Rows of one pushed profile share their
//! attribute text, resource and profile fields (`Arc`s), so what a selector decides is decided
//! once per distinct triple ([`Memo`]), not per row; the `Arc`s are kept while the memo lives,
//! so a pointer is never reused by another value during the scan. Values are summed per stored
//! stack the same way, and each distinct stack's JSON is decoded once at the end.

use std::collections::HashMap;
use std::sync::Arc;

use analyzer::flame::{FlameGraphDiff, FlameGraphLevels, Folded};
use analyzer::pprof::ProfileTypeId;
use analyzer::pprof::proto as pprof;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use serde::Deserialize;

use super::labels::label_value;
use super::proto::{self, DiffRequest, SelectMergeProfileRequest, SelectMergeStacktracesRequest};
use super::{Ctx, MergedProfile, PyroscopeError, Range, max_nodes};
use crate::model::{ProfileRow, ResourceColumns, Rows, attrs, profile::ProfileInfo};
use crate::query::params::Selector;
use crate::query::profiles::{clean, type_id};
use crate::signal::Signal;
use crate::store::Snapshot;

/// What a selector can read of a row: its labels, resolved once per distinct profile.
pub struct RowLabels<'a> {
    pub row: &'a ProfileRow,
    pub attributes: &'a [KeyValue],
    pub id: &'a ProfileTypeId,
    pub id_text: &'a str,
}

impl<'a> RowLabels<'a> {
    /// The value of label `key` (see [`label_value`]).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        label_value(self.row, self.attributes, self.id, self.id_text, key)
    }

    pub fn matches(&self, selector: &Selector) -> bool {
        selector.matches(|k| self.get(k))
    }

    pub fn matches_any(&self, selectors: &[Selector]) -> bool {
        selectors.is_empty() || selectors.iter().any(|s| self.matches(s))
    }
}

/// Maps keyed by pointers and stored texts: stored stack texts are hashed for every distinct
/// stack of a scan, and std's SipHash over kilobytes of text was most of a large query's time.
/// Keys are pointers or stored texts; a collision costs time, never a wrong answer.
pub type Fast = analyzer::hash::FastHash;

type MemoKey = (usize, usize, usize);

fn ptr<T: ?Sized>(v: &Arc<T>) -> usize {
    Arc::as_ptr(v).cast::<()>() as usize
}

/// What a classifier decided for each distinct (attributes, resource, profile) of the scan.
struct Memo<V> {
    map: HashMap<MemoKey, (Option<V>, Keep), Fast>,
}

/// The values a memo key points at, held so no other value can take their address.
#[allow(dead_code)]
struct Keep(Arc<str>, Arc<ResourceColumns>, Arc<ProfileInfo>);

/// Reads the tenant's profile rows in `range` (and of `service`, when given) and calls
/// `classify` once per distinct profile labels, then `each` on every row whose labels it
/// accepted and whose time is in `range`.
pub fn scan<V>(
    ctx: &mut Ctx,
    range: Range,
    service: Option<&str>,
    mut classify: impl FnMut(&RowLabels<'_>) -> Option<V>,
    mut each: impl FnMut(&ProfileRow, &V),
) -> Result<(), PyroscopeError> {
    let snapshot = ctx.state.store.snapshot(&ctx.tenant, Signal::Profiles);
    let wanted = |services: &std::collections::BTreeSet<(String, Option<String>)>| {
        service.is_none_or(|s| services.iter().any(|(name, _)| name == s))
    };
    let chunks: Vec<_> =
        snapshot.chunks.into_iter().filter(|c| range.overlaps(c.min_time, c.max_time) && wanted(&c.services)).collect();
    let parts: Vec<_> = snapshot
        .parts
        .into_iter()
        .filter(|p| p.of(&ctx.tenant).is_some_and(|t| range.overlaps(t.min_time, t.max_time) && wanted(&t.services)))
        .collect();
    let mut memo: Memo<V> = Memo { map: HashMap::default() };
    let mut on_rows = |rows: &Rows| {
        let Rows::Profiles(rows) = rows else { return };
        for row in rows {
            if !range.contains(row.time_unix_nano) {
                continue;
            }
            if let Some(s) = service
                && row.resource.service_name.as_deref() != Some(s)
            {
                continue;
            }
            let key = (ptr(&row.attributes), ptr(&row.resource), ptr(&row.profile));
            let entry = memo.map.entry(key).or_insert_with(|| {
                let attributes = attrs::decode_lossy(&row.attributes);
                let id = type_id(row, &attributes);
                let id_text = id.to_string();
                let labels = RowLabels { row, attributes: &attributes, id: &id, id_text: &id_text };
                let v = classify(&labels);
                (v, Keep(Arc::clone(&row.attributes), Arc::clone(&row.resource), Arc::clone(&row.profile)))
            });
            if let Some(v) = &entry.0 {
                each(row, v);
            }
        }
    };
    for chunk in &chunks {
        ctx.deadline.check()?;
        on_rows(&chunk.rows);
    }
    for part in parts {
        ctx.deadline.check()?;
        let cached = match service {
            Some(service) => super::cache::service_rows(&part, &ctx.tenant, service),
            None => super::cache::rows(&part, &ctx.tenant),
        };
        if let Some(rows) = cached {
            on_rows(&rows);
            continue;
        }
        // Not readable: the store reads it again, sets a damaged part aside and says so.
        let one = Snapshot { tenant: ctx.tenant.clone(), chunks: Vec::new(), parts: vec![part] };
        let report = ctx.state.store.scan(&one, &mut on_rows).map_err(crate::error::QueryError::from)?;
        ctx.warnings.extend(report.warnings);
    }
    Ok(())
}

/// Values summed per stored stack (keyed by the stack text's address; the `Arc` is held).
#[derive(Default)]
pub struct StackSums {
    sums: HashMap<usize, (Arc<str>, i64), Fast>,
}

impl StackSums {
    pub fn add(&mut self, row: &ProfileRow) {
        if row.value == 0 {
            return;
        }
        let entry = self.sums.entry(ptr(&row.stack)).or_insert_with(|| (Arc::clone(&row.stack), 0));
        entry.1 = entry.1.saturating_add(row.value);
    }

    /// Root-first function names with their summed values, each distinct stack decoded once.
    pub fn into_folded(self) -> Folded {
        let mut by_text: HashMap<Arc<str>, i64, Fast> =
            HashMap::with_capacity_and_hasher(self.sums.len(), Fast::default());
        for (text, value) in self.sums.into_values() {
            let sum = by_text.entry(text).or_insert(0);
            *sum = sum.saturating_add(value);
        }
        let mut folded = Folded::new();
        for (text, value) in by_text {
            folded.add(stack_names(&text), value);
        }
        folded
    }
}

/// The part of a stored frame a flame graph needs.
#[derive(Deserialize)]
struct StoredFrame<'a> {
    #[serde(borrow)]
    function: std::borrow::Cow<'a, str>,
}

/// A stored stack (JSON frames, innermost first) as root-first names; unreadable or empty
/// stacks are one `<unknown>` frame.
pub fn stack_names(text: &str) -> Vec<String> {
    let frames = serde_json::from_str::<Vec<StoredFrame<'_>>>(text).unwrap_or_default();
    let mut names: Vec<String> = frames
        .iter()
        .rev()
        .map(|f| if f.function.is_empty() { "<unknown>".to_string() } else { clean(&f.function) })
        .collect();
    if names.is_empty() {
        names.push("<unknown>".to_string());
    }
    names
}

/// The profile type, selector and range of a select request, validated.
pub struct Select {
    pub kind: ProfileTypeId,
    pub selector: Selector,
    pub range: Range,
    /// The one `service_name` every match must have, for pruning.
    pub service: Option<String>,
}

impl Select {
    pub fn new(profile_type: &str, label_selector: &str, start: i64, end: i64) -> Result<Select, PyroscopeError> {
        let range = Range::required(start, end)?;
        let kind: ProfileTypeId = profile_type.trim().parse().map_err(|e| {
            PyroscopeError::InvalidArgument(format!(
                "profile_typeID {:?}: {e}",
                profile_type.chars().take(100).collect::<String>()
            ))
        })?;
        let selector = Selector::parse("label_selector", Some(label_selector))?;
        let service = selector.required("service_name").map(str::to_string);
        Ok(Select { kind, selector, range, service })
    }

    /// Whether a row's labels are of this type and match the selector.
    pub fn accepts(&self, labels: &RowLabels<'_>) -> bool {
        let p = &labels.row.profile;
        *p.sample_type == *self.kind.sample_type
            && *p.sample_unit == *self.kind.sample_unit
            && *p.period_type == *self.kind.period_type
            && *p.period_unit == *self.kind.period_unit
            && labels.id.name == self.kind.name
            && labels.matches(&self.selector)
    }

    /// Sums the matching rows per stack; `span_filter` (when given) keeps only the rows of
    /// those span ids.
    pub fn fold(&self, ctx: &mut Ctx, spans: Option<&super::span::SpanSet>) -> Result<Folded, PyroscopeError> {
        let mut sums = StackSums::default();
        match spans {
            None => scan(
                ctx,
                self.range,
                self.service.as_deref(),
                |l| self.accepts(l).then_some(()),
                |row, ()| sums.add(row),
            )?,
            Some(spans) => scan(
                ctx,
                self.range,
                self.service.as_deref(),
                |l| self.accepts(l).then(|| super::span::label_span(l)),
                |row, labelled| {
                    if spans.holds(labelled.as_deref(), row.span_id) {
                        sums.add(row)
                    }
                },
            )?,
        }
        Ok(sums.into_folded())
    }
}

/// A flame graph in Pyroscope's message; an empty one is `names=["total"]`, one root of 0, as
/// Pyroscope answers.
pub fn flame_graph(folded: &Folded, max_nodes: usize) -> proto::FlameGraph {
    FlameGraphLevels::from_folded(folded, max_nodes).into()
}

/// `SelectMergeStacktraces`: the merged flame graph of the matching profiles.
pub fn merge_stacktraces(
    ctx: &mut Ctx,
    req: SelectMergeStacktracesRequest,
) -> Result<proto::SelectMergeStacktracesResponse, PyroscopeError> {
    let (select, nodes) = select_of(&req)?;
    let spans =
        if req.span_selector.is_empty() { None } else { Some(super::span::SpanSet::parse(&req.span_selector)?) };
    let folded = select.fold(ctx, spans.as_ref())?;
    Ok(proto::SelectMergeStacktracesResponse { flamegraph: Some(flame_graph(&folded, nodes)) })
}

fn select_of(req: &SelectMergeStacktracesRequest) -> Result<(Select, usize), PyroscopeError> {
    if !matches!(req.format, 0 | 1) {
        return Err(PyroscopeError::InvalidArgument(format!(
            "format {} is not served; only the flame graph (PROFILE_FORMAT_FLAMEGRAPH) is",
            req.format
        )));
    }
    let nodes = max_nodes("max_nodes", req.max_nodes)?;
    Ok((Select::new(&req.profile_type_id, &req.label_selector, req.start, req.end)?, nodes))
}

/// `Diff`: the left (baseline) and right (candidate) flame graphs over their union tree, folded
/// to the left request's `max_nodes`.
pub fn diff(ctx: &mut Ctx, req: DiffRequest) -> Result<proto::DiffResponse, PyroscopeError> {
    let missing = |side: &str| PyroscopeError::InvalidArgument(format!("{side} is required"));
    let left = req.left.ok_or_else(|| missing("left"))?;
    let right = req.right.ok_or_else(|| missing("right"))?;
    let (left_select, nodes) = select_of(&left).map_err(|e| side_error("left", e))?;
    let (right_select, _) = select_of(&right).map_err(|e| side_error("right", e))?;
    let left = left_select.fold(ctx, None)?;
    let right = right_select.fold(ctx, None)?;
    Ok(proto::DiffResponse { flamegraph: Some(FlameGraphDiff::from_folded(&left, &right, nodes).into()) })
}

fn side_error(side: &str, e: PyroscopeError) -> PyroscopeError {
    match e {
        PyroscopeError::InvalidArgument(m) => PyroscopeError::InvalidArgument(format!("{side}: {m}")),
        PyroscopeError::Query(crate::error::QueryError::BadRequest(m)) => {
            PyroscopeError::InvalidArgument(format!("{side}: {m}"))
        }
        e => e,
    }
}

/// `SelectMergeProfile`: the matching profiles merged into one pprof profile of the requested
/// type (one sample per distinct stack, one location per function), truncated to `max_nodes`
/// (default 8192, as for flame graphs): a stack is cut at its first frame that the flame graph
/// of `max_nodes` folds, which becomes `other` (`analyzer::flame::levels::truncate`).
pub fn merge_profile(ctx: &mut Ctx, req: SelectMergeProfileRequest) -> Result<MergedProfile, PyroscopeError> {
    let nodes = max_nodes("max_nodes", req.max_nodes)?;
    let select = Select::new(&req.profile_type_id, &req.label_selector, req.start, req.end)?;
    let mut sums = StackSums::default();
    let mut period = 0i64;
    scan(
        ctx,
        select.range,
        select.service.as_deref(),
        |l| select.accepts(l).then_some(()),
        |row, ()| {
            period = period.max(row.profile.period);
            sums.add(row)
        },
    )?;
    let folded = analyzer::flame::levels::truncate(&sums.into_folded(), nodes);
    let start_ns = i64::try_from(select.range.start).unwrap_or(i64::MAX);
    let end_ns = i64::try_from(select.range.end).unwrap_or(i64::MAX);
    Ok(MergedProfile(to_pprof(&folded, &select.kind, period, start_ns, end_ns.saturating_sub(start_ns))))
}

/// Folded stacks as a pprof profile: functions and locations numbered from 1 in order of first
/// appearance, sample stacks leaf first.
pub fn to_pprof(
    folded: &Folded,
    kind: &ProfileTypeId,
    period: i64,
    time_nanos: i64,
    duration_nanos: i64,
) -> pprof::Profile {
    let mut strings: Vec<String> = vec![String::new()];
    let mut string_ids: HashMap<String, i64> = HashMap::new();
    let mut intern = |s: &str, strings: &mut Vec<String>| -> i64 {
        if let Some(&i) = string_ids.get(s) {
            return i;
        }
        let i = strings.len() as i64;
        strings.push(s.to_string());
        string_ids.insert(s.to_string(), i);
        i
    };
    let mut value_type = |t: &str, u: &str, strings: &mut Vec<String>| pprof::ValueType {
        r#type: intern(t, strings),
        unit: intern(u, strings),
    };
    let sample_type = value_type(&kind.sample_type, &kind.sample_unit, &mut strings);
    let period_type = value_type(&kind.period_type, &kind.period_unit, &mut strings);
    let mut function_ids: HashMap<&str, u64> = HashMap::new();
    let mut functions: Vec<pprof::Function> = Vec::new();
    let mut locations: Vec<pprof::Location> = Vec::new();
    let mut samples = Vec::with_capacity(folded.stacks().len());
    let mut name_ids: Vec<(String, i64)> = Vec::new();
    for (stack, &value) in folded.stacks() {
        if value <= 0 {
            continue;
        }
        let mut location_id = Vec::with_capacity(stack.len());
        for name in stack.iter().rev() {
            let id = match function_ids.get(name.as_str()) {
                Some(&id) => id,
                None => {
                    let id = functions.len() as u64 + 1;
                    name_ids.push((name.clone(), id as i64));
                    functions.push(pprof::Function { id, name: 0, system_name: 0, filename: 0, start_line: 0 });
                    locations.push(pprof::Location {
                        id,
                        mapping_id: 0,
                        address: 0,
                        line: vec![pprof::Line { function_id: id, line: 0, column: 0 }],
                        is_folded: false,
                    });
                    function_ids.insert(name.as_str(), id);
                    id
                }
            };
            location_id.push(id);
        }
        samples.push(pprof::Sample { location_id, value: vec![value], label: Vec::new() });
    }
    for (name, id) in name_ids {
        let s = intern(&name, &mut strings);
        if let Some(f) = functions.get_mut((id - 1) as usize) {
            f.name = s;
            f.system_name = s;
        }
    }
    pprof::Profile {
        sample_type: vec![sample_type],
        sample: samples,
        location: locations,
        function: functions,
        string_table: strings,
        time_nanos,
        duration_nanos,
        period_type: Some(period_type),
        period,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_decode_root_first() {
        assert_eq!(stack_names(r#"[{"function":"leaf"},{"function":"main"}]"#), ["main", "leaf"]);
        assert_eq!(stack_names("not json"), ["<unknown>"]);
        assert_eq!(stack_names(r#"[{"function":""}]"#), ["<unknown>"]);
    }

    #[test]
    fn merged_pprof_decodes_back_to_the_same_stacks() {
        let mut folded = Folded::new();
        folded.add(vec!["main".into(), "work".into()], 30);
        folded.add(vec!["main".into()], 10);
        let kind: ProfileTypeId = "process_cpu:cpu:nanoseconds:cpu:nanoseconds".parse().unwrap();
        let p = to_pprof(&folded, &kind, 10_000_000, 1, 2);
        let bytes = prost::Message::encode_to_vec(&p);
        let decoded = analyzer::pprof::decode(&bytes).unwrap();
        let mut back = Folded::new();
        back.add_profile(&decoded, 0);
        assert_eq!(back, folded);
        assert_eq!(decoded.sample_types[0].kind, "cpu");
        assert_eq!(decoded.period, 10_000_000);
    }

    #[test]
    fn empty_flame_graph_is_pyroscopes() {
        let f = flame_graph(&Folded::new(), 8192);
        assert_eq!(f.names, ["total"]);
        assert_eq!(f.levels.len(), 1);
        assert_eq!(f.levels[0].values, [0, 0, 0, 0]);
    }
}
