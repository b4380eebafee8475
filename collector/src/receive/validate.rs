//! Per-item validation. An invalid item is removed from the request and counted; the rest of
//! the request is stored (OTLP partial success). Each message says which item, where, and why,
//! e.g. `resource 0, scope 1, span 3: trace_id is 15 bytes; must be 16 and not all zero`.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::Exemplar;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::profiles::v1development::{Profile, ProfilesDictionary};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};

use super::depth::{self, StackCutter};
use crate::config::{Limits, MAX_ATTRIBUTE_DEPTH};

/// The reasons the first few rejected items were rejected; every rejection is counted.
const KEPT_REASONS: usize = 3;

/// What validation removed from a request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rejections {
    pub items: u64,
    /// What kind of item (`spans`, `data points`, ...), for the message.
    pub noun: &'static str,
    pub reasons: Vec<String>,
    /// Problems that did not reject anything but the client should hear about.
    pub warnings: Vec<String>,
    /// Reasons not kept in `reasons` (one reason can stand for many items: a resource's).
    pub reasons_left_out: u64,
}

impl Rejections {
    pub(crate) fn new(noun: &'static str) -> Rejections {
        Rejections { noun, ..Default::default() }
    }

    /// Rejects the `items` under a resource or scope with one reason; nothing when there are none.
    fn reject_all(&mut self, items: u64, reason: impl FnOnce() -> String) {
        if items > 0 {
            self.reject(items, reason);
        }
    }

    fn reject(&mut self, items: u64, reason: impl FnOnce() -> String) {
        self.items += items;
        if self.reasons.len() < KEPT_REASONS {
            self.reasons.push(reason());
        } else {
            self.reasons_left_out += 1;
        }
    }

    /// The human message for the partial-success or 400 answer: the rejections, then the
    /// warnings.
    pub fn message(&self) -> String {
        if self.items == 0 {
            return self.warnings.join("; ");
        }
        let mut msg = format!("{} {} rejected: {}", self.items, self.noun, self.reasons.join("; "));
        if self.reasons_left_out > 0 {
            msg.push_str("; ...");
        }
        for warning in &self.warnings {
            msg.push_str("; ");
            msg.push_str(warning);
        }
        msg
    }
}

pub(crate) fn id_problem(name: &str, id: &[u8], len: usize, optional: bool) -> Option<String> {
    if optional && id.is_empty() {
        return None;
    }
    if id.len() != len {
        return Some(format!("{name} is {} bytes; must be {len}", id.len()));
    }
    if !optional && id.iter().all(|b| *b == 0) {
        return Some(format!("{name} is all zero"));
    }
    None
}

pub(crate) fn too_many_attributes(n: usize, limits: &Limits) -> Option<String> {
    (n > limits.max_attributes_per_item)
        .then(|| format!("{n} attributes; the limit is {}", limits.max_attributes_per_item))
}

/// The attribute nesting limit in force: the configured one, never above what storage reads back.
pub(crate) fn attribute_depth(limits: &Limits) -> usize {
    limits.max_attribute_depth.min(MAX_ATTRIBUTE_DEPTH)
}

/// Why a resource's attributes reject every item under it.
pub(crate) fn resource_problem(resource: Option<&Resource>, depth: usize) -> Option<String> {
    resource.and_then(|r| depth::attributes_problem(&r.attributes, depth)).map(|p| format!("resource {p}"))
}

/// Why a scope's attributes reject every item under it.
pub(crate) fn scope_problem(scope: Option<&InstrumentationScope>, depth: usize) -> Option<String> {
    scope.and_then(|s| depth::attributes_problem(&s.attributes, depth)).map(|p| format!("scope {p}"))
}

/// The first attribute list of `lists` (named by the first element) nesting too deep.
fn lists_problem<'a>(what: &str, lists: impl IntoIterator<Item = &'a [KeyValue]>, depth: usize) -> Option<String> {
    lists
        .into_iter()
        .enumerate()
        .find_map(|(i, attrs)| depth::attributes_problem(attrs, depth).map(|p| format!("{what} {i} {p}")))
}

fn span_problem(span: &Span, depth: usize) -> Option<String> {
    depth::attributes_problem(&span.attributes, depth)
        .or_else(|| events_links_problem(&span.events, &span.links, depth))
}

/// Why a span's events or links refuse it.
pub(crate) fn events_links_problem(events: &[Event], links: &[Link], depth: usize) -> Option<String> {
    lists_problem("event", events.iter().map(|e| e.attributes.as_slice()), depth)
        .or_else(|| lists_problem("link", links.iter().map(|l| l.attributes.as_slice()), depth))
}

fn point_problem(attributes: &[KeyValue], exemplars: &[Exemplar], limits: &Limits) -> Option<String> {
    let depth = attribute_depth(limits);
    too_many_attributes(attributes.len(), limits)
        .or_else(|| depth::attributes_problem(attributes, depth))
        .or_else(|| lists_problem("exemplar", exemplars.iter().map(|e| e.filtered_attributes.as_slice()), depth))
}

pub fn count_spans(r: &ExportTraceServiceRequest) -> u64 {
    r.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len() as u64).sum()
}

pub fn traces(r: &mut ExportTraceServiceRequest, limits: &Limits) -> Rejections {
    let mut rej = Rejections::new("spans");
    let depth = attribute_depth(limits);
    for (ri, rs) in r.resource_spans.iter_mut().enumerate() {
        if let Some(p) = resource_problem(rs.resource.as_ref(), depth) {
            let n = rs.scope_spans.iter().map(|ss| ss.spans.len() as u64).sum();
            rej.reject_all(n, || format!("resource {ri}: {p}"));
            rs.scope_spans.clear();
            continue;
        }
        for (si, ss) in rs.scope_spans.iter_mut().enumerate() {
            if let Some(p) = scope_problem(ss.scope.as_ref(), depth) {
                rej.reject_all(ss.spans.len() as u64, || format!("resource {ri}, scope {si}: {p}"));
                ss.spans.clear();
                continue;
            }
            let mut index = 0;
            ss.spans.retain(|span| {
                let i = index;
                index += 1;
                let problem = id_problem("trace_id", &span.trace_id, 16, false)
                    .or_else(|| id_problem("span_id", &span.span_id, 8, false))
                    .or_else(|| id_problem("parent_span_id", &span.parent_span_id, 8, true))
                    .or_else(|| too_many_attributes(span.attributes.len(), limits))
                    .or_else(|| span_problem(span, depth));
                match problem {
                    None => true,
                    Some(p) => {
                        rej.reject(1, || format!("resource {ri}, scope {si}, span {i}: {p}"));
                        false
                    }
                }
            });
        }
    }
    rej
}

pub fn count_points(r: &ExportMetricsServiceRequest) -> u64 {
    r.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| points(m.data.as_ref()).max(1))
        .sum()
}

fn points(data: Option<&Data>) -> u64 {
    (match data {
        None => 0,
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
    }) as u64
}

pub fn metrics(r: &mut ExportMetricsServiceRequest, limits: &Limits) -> Rejections {
    let mut rej = Rejections::new("data points");
    let depth = attribute_depth(limits);
    let count = |m: &opentelemetry_proto::tonic::metrics::v1::Metric| points(m.data.as_ref()).max(1);
    for (ri, rm) in r.resource_metrics.iter_mut().enumerate() {
        if let Some(p) = resource_problem(rm.resource.as_ref(), depth) {
            let n = rm.scope_metrics.iter().flat_map(|sm| &sm.metrics).map(count).sum();
            rej.reject_all(n, || format!("resource {ri}: {p}"));
            rm.scope_metrics.clear();
            continue;
        }
        for (si, sm) in rm.scope_metrics.iter_mut().enumerate() {
            if let Some(p) = scope_problem(sm.scope.as_ref(), depth) {
                rej.reject_all(sm.metrics.iter().map(count).sum(), || format!("resource {ri}, scope {si}: {p}"));
                sm.metrics.clear();
                continue;
            }
            sm.metrics.retain_mut(|m| {
                let at = format!("resource {ri}, scope {si}, metric {:?}", m.name);
                if m.name.is_empty() {
                    rej.reject(points(m.data.as_ref()).max(1), || format!("{at}: metric name is empty"));
                    return false;
                }
                if let Some(p) = depth::attributes_problem(&m.metadata, depth) {
                    rej.reject(points(m.data.as_ref()).max(1), || format!("{at}: metadata {p}"));
                    return false;
                }
                let attr_check =
                    |attrs: &[KeyValue], exemplars: &[Exemplar], i: usize, rej: &mut Rejections| match point_problem(
                        attrs, exemplars, limits,
                    ) {
                        Some(p) => {
                            rej.reject(1, || format!("{at}, point {i}: {p}"));
                            false
                        }
                        None => true,
                    };
                match m.data.as_mut() {
                    None => {
                        // Counted as one item so the client hears about it (the metric had no
                        // points to count).
                        rej.reject(1, || {
                            format!(
                                "{at}: metric has no data (gauge, sum, histogram, exponential histogram or summary)"
                            )
                        });
                        return false;
                    }
                    Some(Data::Gauge(g)) => {
                        let mut i = 0;
                        g.data_points.retain(|p| {
                            i += 1;
                            attr_check(&p.attributes, &p.exemplars, i - 1, &mut rej)
                        });
                    }
                    Some(Data::Sum(s)) => {
                        let mut i = 0;
                        s.data_points.retain(|p| {
                            i += 1;
                            attr_check(&p.attributes, &p.exemplars, i - 1, &mut rej)
                        });
                    }
                    Some(Data::Histogram(h)) => {
                        let mut i = 0;
                        h.data_points.retain(|p| {
                            i += 1;
                            if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
                                rej.reject(1, || {
                                    format!(
                                        "{at}, point {}: {} bucket counts for {} explicit bounds; must be one more",
                                        i - 1,
                                        p.bucket_counts.len(),
                                        p.explicit_bounds.len()
                                    )
                                });
                                return false;
                            }
                            attr_check(&p.attributes, &p.exemplars, i - 1, &mut rej)
                        });
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        let mut i = 0;
                        h.data_points.retain(|p| {
                            i += 1;
                            attr_check(&p.attributes, &p.exemplars, i - 1, &mut rej)
                        });
                    }
                    Some(Data::Summary(s)) => {
                        let mut i = 0;
                        s.data_points.retain(|p| {
                            i += 1;
                            if let Some(q) = p.quantile_values.iter().find(|q| !(0.0..=1.0).contains(&q.quantile)) {
                                rej.reject(1, || {
                                    format!("{at}, point {}: quantile {} is outside [0, 1]", i - 1, q.quantile)
                                });
                                return false;
                            }
                            attr_check(&p.attributes, &[], i - 1, &mut rej)
                        });
                    }
                }
                points(m.data.as_ref()) > 0
            });
        }
    }
    rej
}

pub fn count_logs(r: &ExportLogsServiceRequest) -> u64 {
    r.resource_logs.iter().flat_map(|rl| &rl.scope_logs).map(|sl| sl.log_records.len() as u64).sum()
}

pub fn logs(r: &mut ExportLogsServiceRequest, limits: &Limits) -> Rejections {
    let mut rej = Rejections::new("log records");
    let depth = attribute_depth(limits);
    for (ri, rl) in r.resource_logs.iter_mut().enumerate() {
        if let Some(p) = resource_problem(rl.resource.as_ref(), depth) {
            let n = rl.scope_logs.iter().map(|sl| sl.log_records.len() as u64).sum();
            rej.reject_all(n, || format!("resource {ri}: {p}"));
            rl.scope_logs.clear();
            continue;
        }
        for (si, sl) in rl.scope_logs.iter_mut().enumerate() {
            if let Some(p) = scope_problem(sl.scope.as_ref(), depth) {
                rej.reject_all(sl.log_records.len() as u64, || format!("resource {ri}, scope {si}: {p}"));
                sl.log_records.clear();
                continue;
            }
            let mut index = 0;
            sl.log_records.retain(|rec| {
                let i = index;
                index += 1;
                let problem = id_problem("trace_id", &rec.trace_id, 16, true)
                    .or_else(|| id_problem("span_id", &rec.span_id, 8, true))
                    .or_else(|| too_many_attributes(rec.attributes.len(), limits))
                    .or_else(|| depth::attributes_problem(&rec.attributes, depth))
                    .or_else(|| depth::value_problem("body", rec.body.as_ref(), depth));
                match problem {
                    None => true,
                    Some(p) => {
                        rej.reject(1, || format!("resource {ri}, scope {si}, log record {i}: {p}"));
                        false
                    }
                }
            });
        }
    }
    rej
}

pub fn count_profiles(r: &ExportProfilesServiceRequest) -> u64 {
    r.resource_profiles.iter().flat_map(|rp| &rp.scope_profiles).map(|sp| sp.profiles.len() as u64).sum()
}

fn index_ok(i: i32, len: usize) -> bool {
    usize::try_from(i).is_ok_and(|i| i < len)
}

/// The dictionary attributes whose values nest deeper than `depth`, by index, with their depth.
fn deep_attributes(d: &ProfilesDictionary, depth: usize) -> HashMap<i32, usize> {
    d.attribute_table
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let found = a.value.as_ref().map_or(0, depth::value_depth);
            (found > depth).then(|| (i32::try_from(i).unwrap_or(i32::MAX), found))
        })
        .collect()
}

/// Why a profile or sample referring to `indices` is refused: the first one naming a
/// dictionary attribute in `deep`.
fn deep_reference(indices: &[i32], deep: &HashMap<i32, usize>, d: &ProfilesDictionary, limit: usize) -> Option<String> {
    let (index, found) = indices.iter().find_map(|i| deep.get(i).map(|&found| (*i, found)))?;
    let key = usize::try_from(index)
        .ok()
        .and_then(|i| d.attribute_table.get(i))
        .and_then(|a| d.string_table.get(usize::try_from(a.key_strindex).ok()?))
        .map_or("", String::as_str);
    Some(format!(
        "attribute index {index} ({key:?}) nests {found} levels of arrayValue/kvlistValue; the limit is {limit}"
    ))
}

/// Every dictionary reference of a profile must resolve.
fn profile_problem(p: &Profile, d: &ProfilesDictionary, limits: &Limits, deep: &HashMap<i32, usize>) -> Option<String> {
    let depth = attribute_depth(limits);
    let strings = d.string_table.len();
    for vt in [&p.sample_type, &p.period_type].into_iter().flatten() {
        if !index_ok(vt.type_strindex, strings) || !index_ok(vt.unit_strindex, strings) {
            return Some("sample or period type names a string outside the string table".into());
        }
    }
    if let Some(bad) = p.attribute_indices.iter().find(|&&a| !index_ok(a, d.attribute_table.len())) {
        return Some(format!(
            "attribute index {bad} is outside the attribute table ({} entries)",
            d.attribute_table.len()
        ));
    }
    if let Some(p) = too_many_attributes(p.attribute_indices.len(), limits) {
        return Some(p);
    }
    if let Some(p) = deep_reference(&p.attribute_indices, deep, d, depth) {
        return Some(p);
    }
    for (si, s) in p.samples.iter().enumerate() {
        if !index_ok(s.stack_index, d.stack_table.len()) {
            return Some(format!(
                "sample {si}: stack index {} is outside the stack table ({} entries)",
                s.stack_index,
                d.stack_table.len()
            ));
        }
        if s.link_index != 0 && !index_ok(s.link_index, d.link_table.len()) {
            return Some(format!("sample {si}: link index {} is outside the link table", s.link_index));
        }
        if let Some(bad) = s.attribute_indices.iter().find(|&&a| !index_ok(a, d.attribute_table.len())) {
            return Some(format!("sample {si}: attribute index {bad} is outside the attribute table"));
        }
        if let Some(p) = deep_reference(&s.attribute_indices, deep, d, depth) {
            return Some(format!("sample {si}: {p}"));
        }
        if !s.timestamps_unix_nano.is_empty() && s.timestamps_unix_nano.len() != s.values.len() {
            return Some(format!(
                "sample {si}: {} timestamps for {} values; must be as many",
                s.timestamps_unix_nano.len(),
                s.values.len()
            ));
        }
    }
    None
}

/// Checks the dictionary itself once: every stack, location, line, function and attribute
/// reference resolves. A broken dictionary rejects every profile, since all share it.
fn dictionary_problem(d: &ProfilesDictionary) -> Option<String> {
    let strings = d.string_table.len();
    for (i, stack) in d.stack_table.iter().enumerate() {
        if let Some(bad) = stack.location_indices.iter().find(|&&l| !index_ok(l, d.location_table.len())) {
            return Some(format!(
                "dictionary stack {i}: location index {bad} is outside the location table ({} entries)",
                d.location_table.len()
            ));
        }
    }
    for (i, loc) in d.location_table.iter().enumerate() {
        if loc.mapping_index != 0 && !index_ok(loc.mapping_index, d.mapping_table.len()) {
            return Some(format!(
                "dictionary location {i}: mapping index {} is outside the mapping table",
                loc.mapping_index
            ));
        }
        if let Some(line) = loc.lines.iter().find(|l| !index_ok(l.function_index, d.function_table.len())) {
            return Some(format!(
                "dictionary location {i}: function index {} is outside the function table",
                line.function_index
            ));
        }
    }
    for (i, f) in d.function_table.iter().enumerate() {
        if ![f.name_strindex, f.system_name_strindex, f.filename_strindex].iter().all(|&s| index_ok(s, strings)) {
            return Some(format!(
                "dictionary function {i} names a string outside the string table ({strings} entries)"
            ));
        }
    }
    for (i, a) in d.attribute_table.iter().enumerate() {
        if !index_ok(a.key_strindex, strings) || !index_ok(a.unit_strindex, strings) {
            return Some(format!("dictionary attribute {i} names a string outside the string table"));
        }
    }
    None
}

/// Validates every profile and cuts stacks deeper than [`Limits::max_stack_depth`] (with a
/// warning; see [`StackCutter`]).
pub fn profiles(r: &mut ExportProfilesServiceRequest, limits: &Limits) -> Rejections {
    let mut rej = Rejections::new("profiles");
    let mut dict = r.dictionary.take().unwrap_or_default();
    let dict_problem = dictionary_problem(&dict);
    let depth = attribute_depth(limits);
    let deep = deep_attributes(&dict, depth);
    let mut cutter = StackCutter::new(limits.max_stack_depth);
    // Where stacks were cut (the first few) and in how many profiles.
    let (mut cut, mut cut_profiles) = (Vec::new(), 0usize);
    for (ri, rp) in r.resource_profiles.iter_mut().enumerate() {
        if let Some(p) = resource_problem(rp.resource.as_ref(), depth) {
            let n = rp.scope_profiles.iter().map(|sp| sp.profiles.len() as u64).sum();
            rej.reject_all(n, || format!("resource {ri}: {p}"));
            rp.scope_profiles.clear();
            continue;
        }
        for (si, sp) in rp.scope_profiles.iter_mut().enumerate() {
            if let Some(p) = scope_problem(sp.scope.as_ref(), depth) {
                rej.reject_all(sp.profiles.len() as u64, || format!("resource {ri}, scope {si}: {p}"));
                sp.profiles.clear();
                continue;
            }
            let mut index = 0;
            sp.profiles.retain_mut(|p| {
                let i = index;
                index += 1;
                let problem = dict_problem.clone().or_else(|| profile_problem(p, &dict, limits, &deep));
                if let Some(why) = problem {
                    rej.reject(1, || format!("resource {ri}, scope {si}, profile {i}: {why}"));
                    return false;
                }
                if let Some(t) = cutter.cut_profile(&mut dict, p) {
                    cut_profiles += 1;
                    if cut.len() < KEPT_REASONS {
                        let samples =
                            if t.samples == 1 { "1 sample".to_string() } else { format!("{} samples", t.samples) };
                        cut.push(format!(
                            "resource {ri}, scope {si}, profile {i}: {samples}, up to {} frames dropped",
                            t.most_dropped
                        ));
                    }
                }
                true
            });
        }
    }
    if cut_profiles > 0 {
        let max = limits.max_stack_depth;
        let more = if cut_profiles > cut.len() { "; ..." } else { "" };
        rej.warnings.push(format!(
            "stacks deeper than max_stack_depth ({max} frames) were truncated to their {max} outermost frames \
             under a frame naming how many were dropped: {}{more}",
            cut.join("; ")
        ));
    }
    r.dictionary = Some(dict);
    rej
}
