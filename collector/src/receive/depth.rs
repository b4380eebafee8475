//! Depth limits at ingest, so that nothing that cannot be read back is acknowledged and no query
//! recurses over an untrusted tree: how deeply attribute values nest (they are stored as
//! OTLP/JSON text, which `serde_json` reads back only to 127 levels; see
//! [`Limits::max_attribute_depth`](crate::config::Limits::max_attribute_depth)), and how deep a
//! profile stack may be ([`StackCutter`]).
//!
//! Design: both walks are loops over explicit stacks, never recursion: a value arrives decoded
//! from protobuf or JSON, and a check that recursed over it could be the thing that overflows.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, Line, Location, Profile, ProfilesDictionary, Stack,
};

/// How many `arrayValue`/`kvlistValue` levels `value` nests: 0 for a plain value, 1 for a list
/// of plain values, and so on. Linear in the size of the value, whatever its shape.
pub fn value_depth(value: &AnyValue) -> usize {
    let mut deepest = 0;
    let mut todo: Vec<(&AnyValue, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = todo.pop() {
        deepest = deepest.max(depth);
        match &value.value {
            Some(Value::ArrayValue(array)) => {
                deepest = deepest.max(depth + 1);
                todo.extend(array.values.iter().map(|v| (v, depth + 1)));
            }
            Some(Value::KvlistValue(list)) => {
                deepest = deepest.max(depth + 1);
                todo.extend(list.values.iter().filter_map(|kv| kv.value.as_ref()).map(|v| (v, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Why an attribute list is refused: its first attribute nesting deeper than `limit`, as
/// `attribute "key" nests 45 levels of arrayValue/kvlistValue; the limit is 16`.
pub fn attributes_problem(attributes: &[KeyValue], limit: usize) -> Option<String> {
    attributes.iter().find_map(|kv| {
        let depth = kv.value.as_ref().map_or(0, value_depth);
        (depth > limit).then(|| nesting(&format!("attribute {:?}", short(&kv.key)), depth, limit))
    })
}

/// Why a single value (a log body) is refused; `what` names it.
pub fn value_problem(what: &str, value: Option<&AnyValue>, limit: usize) -> Option<String> {
    let depth = value.map_or(0, value_depth);
    (depth > limit).then(|| nesting(what, depth, limit))
}

fn nesting(what: &str, depth: usize, limit: usize) -> String {
    format!("{what} nests {depth} levels of arrayValue/kvlistValue; the limit is {limit}")
}

/// A key as it appears in a message: at most 100 characters.
fn short(key: &str) -> String {
    if key.chars().count() <= 100 { key.to_string() } else { key.chars().take(100).chain("…".chars()).collect() }
}

/// The name of the frame that stands for the frames a truncation dropped.
pub fn truncation_frame(dropped: usize) -> String {
    format!("[{dropped} frames truncated]")
}

/// What [`StackCutter::cut_profile`] did to one profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    /// Samples whose stack was cut.
    pub samples: usize,
    /// The most frames cut from one sample.
    pub most_dropped: usize,
}

/// Cuts sample stacks that have more than `max_frames` frames (each line of a location is a
/// frame, a location without lines one frame, as storage counts them) to their `max_frames`
/// outermost frames, below which one frame named by [`truncation_frame`] stands for the rest.
///
/// Pyroscope keeps the same end: its `ValidateProfile` (grafana/pyroscope
/// `pkg/validation/validate.go`) cuts `Sample.LocationId` (leaf first) to its last
/// `MaxProfileStacktraceDepth` entries, i.e. drops the leaves and keeps the root side, so a
/// flame graph keeps its shape from the root and the cut shows at the leaf end of the stack.
///
/// Stack-table entries and locations can be shared by samples of several profiles, so nothing is
/// edited in place: a cut stack is a new entry (one per distinct original stack, however many
/// samples use it), a location cut through its inlined lines is a new location, and the samples
/// are pointed at the copies.
#[derive(Debug)]
pub struct StackCutter {
    max_frames: usize,
    /// Original stack index → (its cut copy, frames dropped); `None` when it is short enough.
    cut: HashMap<i32, Option<(i32, usize)>>,
    /// Frames dropped → the location of the frame that says so.
    markers: HashMap<usize, i32>,
}

fn index(len: usize) -> i32 {
    // Tables come from one request, bounded by the body size: far below i32::MAX entries.
    i32::try_from(len).unwrap_or(i32::MAX)
}

fn frames(location: &Location) -> usize {
    location.lines.len().max(1)
}

impl StackCutter {
    /// A cutter keeping `max_frames` frames of each stack; 0 cuts nothing.
    pub fn new(max_frames: usize) -> StackCutter {
        StackCutter { max_frames, cut: HashMap::new(), markers: HashMap::new() }
    }

    /// Points every sample of `profile` whose stack is too deep at a cut copy, added to `dict`.
    /// `None` when no stack was cut.
    pub fn cut_profile(&mut self, dict: &mut ProfilesDictionary, profile: &mut Profile) -> Option<Truncated> {
        if self.max_frames == 0 {
            return None;
        }
        let mut truncated = Truncated { samples: 0, most_dropped: 0 };
        for sample in &mut profile.samples {
            if let Some((stack_index, dropped)) = self.cut(dict, sample.stack_index) {
                sample.stack_index = stack_index;
                truncated.samples += 1;
                truncated.most_dropped = truncated.most_dropped.max(dropped);
            }
        }
        (truncated.samples > 0).then_some(truncated)
    }

    /// The cut copy of stack `stack_index` and how many frames it drops, or `None` when the
    /// stack is short enough (or does not resolve; validation has rejected those).
    fn cut(&mut self, dict: &mut ProfilesDictionary, stack_index: i32) -> Option<(i32, usize)> {
        if let Some(known) = self.cut.get(&stack_index) {
            return *known;
        }
        let result = self.cut_new(dict, stack_index);
        self.cut.insert(stack_index, result);
        result
    }

    fn cut_new(&mut self, dict: &mut ProfilesDictionary, stack_index: i32) -> Option<(i32, usize)> {
        let stack = dict.stack_table.get(usize::try_from(stack_index).ok()?)?;
        let location = |l: i32| usize::try_from(l).ok().and_then(|l| dict.location_table.get(l));
        let total: usize = stack.location_indices.iter().filter_map(|&l| location(l)).map(frames).sum();
        if total <= self.max_frames {
            return None;
        }
        // Walk from the root (the end of the list) keeping whole locations while they fit.
        let mut kept_frames = 0;
        let mut keep_from = stack.location_indices.len();
        let mut partial: Option<Location> = None;
        for (i, &l) in stack.location_indices.iter().enumerate().rev() {
            let Some(loc) = location(l) else {
                // Unresolvable locations add no frame when stored; keep them as they are.
                keep_from = i;
                continue;
            };
            let room = self.max_frames - kept_frames;
            if frames(loc) <= room {
                kept_frames += frames(loc);
                keep_from = i;
                if kept_frames == self.max_frames {
                    break;
                }
                continue;
            }
            if room > 0 {
                // Inlined lines are listed innermost first: keep the outermost `room` of them.
                let lines = loc.lines[loc.lines.len() - room..].to_vec();
                partial = Some(Location { lines, ..loc.clone() });
                kept_frames += room;
            }
            break;
        }
        let kept_tail = stack.location_indices[keep_from..].to_vec();
        let dropped = total - kept_frames;
        let mut location_indices = Vec::with_capacity(kept_tail.len() + 2);
        location_indices.push(self.marker(dict, dropped));
        if let Some(partial) = partial {
            location_indices.push(index(dict.location_table.len()));
            dict.location_table.push(partial);
        }
        location_indices.extend(kept_tail);
        let new_index = index(dict.stack_table.len());
        dict.stack_table.push(Stack { location_indices });
        Some((new_index, dropped))
    }

    /// The location of the frame standing for `dropped` frames, added to the dictionary once.
    fn marker(&mut self, dict: &mut ProfilesDictionary, dropped: usize) -> i32 {
        if let Some(&l) = self.markers.get(&dropped) {
            return l;
        }
        let name = index(dict.string_table.len());
        dict.string_table.push(truncation_frame(dropped));
        let function_index = index(dict.function_table.len());
        dict.function_table.push(Function {
            name_strindex: name,
            system_name_strindex: name,
            filename_strindex: 0,
            start_line: 0,
        });
        let l = index(dict.location_table.len());
        dict.location_table.push(Location {
            mapping_index: 0,
            address: 0,
            lines: vec![Line { function_index, line: 0, column: 0 }],
            attribute_indices: Vec::new(),
        });
        self.markers.insert(dropped, l);
        l
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::metrics::v1::Exemplar;
    use opentelemetry_proto::tonic::profiles::v1development::{ResourceProfiles, Sample, ScopeProfiles, ValueType};
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, TracesData};
    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::config::{Limits, MAX_ATTRIBUTE_DEPTH};
    use crate::model::attrs;
    use crate::receive::validate;

    fn string(s: &str) -> AnyValue {
        AnyValue { value: Some(Value::StringValue(s.into())) }
    }

    fn kv(key: &str, value: AnyValue) -> KeyValue {
        KeyValue { key: key.into(), value: Some(value), key_strindex: 0 }
    }

    fn array(values: Vec<AnyValue>) -> AnyValue {
        AnyValue { value: Some(Value::ArrayValue(ArrayValue { values })) }
    }

    fn kvlist(values: Vec<KeyValue>) -> AnyValue {
        AnyValue { value: Some(Value::KvlistValue(KeyValueList { values })) }
    }

    /// `levels` kvlistValues one inside the other, the costliest nesting to store.
    fn nested_kvlists(levels: usize) -> AnyValue {
        (0..levels).fold(string("leaf"), |v, i| kvlist(vec![kv(&format!("k{i}"), v)]))
    }

    /// Frees a value without recursing (dropping a deeply nested value recurses once per level).
    fn dismantle(value: AnyValue) {
        let mut todo = vec![value];
        while let Some(mut v) = todo.pop() {
            match v.value.take() {
                Some(Value::ArrayValue(a)) => todo.extend(a.values),
                Some(Value::KvlistValue(l)) => todo.extend(l.values.into_iter().filter_map(|kv| kv.value)),
                _ => {}
            }
        }
    }

    #[test]
    fn depth_counts_container_levels() {
        assert_eq!(value_depth(&string("x")), 0);
        assert_eq!(value_depth(&AnyValue { value: None }), 0);
        assert_eq!(value_depth(&array(vec![])), 1);
        assert_eq!(value_depth(&array(vec![string("a"), array(vec![string("b")])])), 2);
        assert_eq!(value_depth(&kvlist(vec![kv("a", string("x")), kv("b", array(vec![array(vec![])]))])), 3);
        assert_eq!(value_depth(&nested_kvlists(7)), 7);
        let problem = attributes_problem(&[kv("ok", string("x")), kv("deep", nested_kvlists(5))], 4).unwrap();
        assert_eq!(problem, "attribute \"deep\" nests 5 levels of arrayValue/kvlistValue; the limit is 4");
        assert_eq!(attributes_problem(&[kv("deep", nested_kvlists(5))], 5), None);
        assert_eq!(value_problem("body", None, 0), None);
    }

    #[test]
    fn depth_is_measured_without_recursion() {
        let depth = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let value = (0..20_000).fold(string("leaf"), |v, _| array(vec![v]));
                let depth = value_depth(&value);
                dismantle(value);
                depth
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(depth, 20_000);
    }

    /// Every stored form of a value nested `levels` deep: attribute lists, span events and
    /// links, exemplars, a log body. `Err` names the first that does not read back.
    fn stored_forms_read_back(value: &AnyValue) -> Result<(), String> {
        let attributes = vec![kv("v", value.clone())];
        let text = attrs::encode(&attributes);
        if attrs::decode(&text).map_err(|e| format!("attributes: {e}"))? != attributes {
            return Err("attributes changed".into());
        }
        let events = vec![Event { name: "e".into(), attributes: attributes.clone(), ..Default::default() }];
        if attrs::decode_json::<Event>(&attrs::encode_json(&events)).map_err(|e| format!("events: {e}"))? != events {
            return Err("events changed".into());
        }
        let links = vec![Link { attributes: attributes.clone(), ..Default::default() }];
        if attrs::decode_json::<Link>(&attrs::encode_json(&links)).map_err(|e| format!("links: {e}"))? != links {
            return Err("links changed".into());
        }
        let exemplars = vec![Exemplar { filtered_attributes: attributes.clone(), ..Default::default() }];
        let back =
            attrs::decode_json::<Exemplar>(&attrs::encode_json(&exemplars)).map_err(|e| format!("exemplars: {e}"))?;
        if back != exemplars {
            return Err("exemplars changed".into());
        }
        let body = serde_json::to_string(value).map_err(|e| e.to_string())?;
        if serde_json::from_str::<AnyValue>(&body).map_err(|e| format!("body: {e}"))? != *value {
            return Err("body changed".into());
        }
        Ok(())
    }

    /// The arithmetic of `Limits::max_attribute_depth`: at the ceiling, kvlists (the costliest
    /// nesting) read back from every stored form and from protobuf as the WAL and the Tempo API
    /// hold them; one level more does not read back from span events.
    #[test]
    fn the_ceiling_is_the_deepest_nesting_storage_reads_back() {
        let at = nested_kvlists(MAX_ATTRIBUTE_DEPTH);
        stored_forms_read_back(&at).unwrap();
        let err = stored_forms_read_back(&nested_kvlists(MAX_ATTRIBUTE_DEPTH + 1)).unwrap_err();
        assert!(err.starts_with("events:") && err.contains("recursion limit"), "{err}");

        let span = Span {
            events: vec![Event { attributes: vec![kv("v", at.clone())], ..Default::default() }],
            ..Default::default()
        };
        let scope_spans = vec![ScopeSpans { spans: vec![span], ..Default::default() }];
        let resource_spans = vec![ResourceSpans { scope_spans, ..Default::default() }];
        let request = ExportTraceServiceRequest { resource_spans: resource_spans.clone() };
        assert_eq!(ExportTraceServiceRequest::decode(request.encode_to_vec().as_slice()).unwrap(), request);
        let data = TracesData { resource_spans };
        assert_eq!(TracesData::decode(data.encode_to_vec().as_slice()).unwrap(), data);
    }

    fn scalar() -> impl Strategy<Value = AnyValue> {
        prop_oneof![
            ".{0,6}".prop_map(|s| AnyValue { value: Some(Value::StringValue(s)) }),
            any::<i64>().prop_map(|i| AnyValue { value: Some(Value::IntValue(i)) }),
            proptest::num::f64::NORMAL.prop_map(|d| AnyValue { value: Some(Value::DoubleValue(d)) }),
            any::<bool>().prop_map(|b| AnyValue { value: Some(Value::BoolValue(b)) }),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(|b| AnyValue { value: Some(Value::BytesValue(b)) }),
        ]
    }

    /// Values nested 0 to 40 levels (past the ceiling), each level an array or a key-value list
    /// with a few plain siblings, or small bushy trees.
    fn nested_value() -> impl Strategy<Value = AnyValue> {
        let level = (any::<bool>(), proptest::collection::vec(scalar(), 0..3), "[a-z]{0,3}");
        let spine = (0usize..=40, proptest::collection::vec(level, 40), scalar()).prop_map(|(depth, levels, leaf)| {
            levels.into_iter().take(depth).fold(leaf, |inner, (is_array, mut siblings, key)| {
                if is_array {
                    siblings.push(inner);
                    array(siblings)
                } else {
                    let mut values: Vec<KeyValue> =
                        siblings.into_iter().enumerate().map(|(i, v)| kv(&format!("s{i}"), v)).collect();
                    values.push(kv(&key, inner));
                    kvlist(values)
                }
            })
        });
        let bushy = scalar().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(array),
                proptest::collection::vec(("[a-z]{1,3}", inner), 0..4)
                    .prop_map(|kvs| kvlist(kvs.into_iter().map(|(k, v)| kv(&k, v)).collect())),
            ]
        });
        prop_oneof![3 => spine, 1 => bushy]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Whatever validation accepts (at the highest depth limit one may configure) reads
        /// back unchanged from every form storage keeps it in; what it refuses nests deeper.
        #[test]
        fn whatever_validation_accepts_reads_back(value in nested_value(), event in any::<bool>()) {
            let limits = Limits { max_attribute_depth: MAX_ATTRIBUTE_DEPTH, ..Limits::default() };
            let attributes = vec![kv("v", value.clone())];
            let mut span = Span { trace_id: vec![1; 16], span_id: vec![2; 8], ..Default::default() };
            if event {
                span.events.push(Event { attributes: attributes.clone(), ..Default::default() });
            } else {
                span.attributes = attributes.clone();
            }
            let scope_spans = vec![ScopeSpans { spans: vec![span], ..Default::default() }];
            let mut request =
                ExportTraceServiceRequest { resource_spans: vec![ResourceSpans { scope_spans, ..Default::default() }] };
            let rejections = validate::traces(&mut request, &limits);
            if rejections.items == 0 {
                prop_assert_eq!(attrs::decode(&attrs::encode(&attributes)).unwrap(), attributes);
                prop_assert_eq!(stored_forms_read_back(&value), Ok(()));
            } else {
                prop_assert!(value_depth(&value) > MAX_ATTRIBUTE_DEPTH, "{}", rejections.message());
            }
        }
    }

    /// One check per place an `AnyValue` arrives: the item holding a value nested 3 levels is
    /// refused at limit 2 with its location, and the request's other item is kept.
    #[test]
    fn every_place_a_value_arrives_is_checked() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
        use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        use opentelemetry_proto::tonic::metrics::v1::{
            Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
        };
        use opentelemetry_proto::tonic::profiles::v1development::{
            KeyValueAndUnit, Profile, ProfilesDictionary, ResourceProfiles, Sample, ScopeProfiles, Stack,
        };
        use opentelemetry_proto::tonic::resource::v1::Resource;

        let limits = Limits { max_attribute_depth: 2, ..Limits::default() };
        let deep = || vec![kv("d", nested_kvlists(3))];
        let ok = || vec![kv("ok", array(vec![array(vec![string("x")])]))];
        let check = |rejections: validate::Rejections, items: u64, reason: &str| {
            assert_eq!(rejections.items, items, "{}", rejections.message());
            assert_eq!(rejections.reasons, [reason.to_string()]);
        };
        let at = "attribute \"d\" nests 3 levels of arrayValue/kvlistValue; the limit is 2";

        let span = |n: u8| Span { trace_id: vec![1; 16], span_id: vec![n; 8], attributes: ok(), ..Default::default() };
        let traces = |spans: Vec<Span>, scope: Vec<KeyValue>| {
            let scope = Some(InstrumentationScope { attributes: scope, ..Default::default() });
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans { scope, spans, ..Default::default() }],
                    ..Default::default()
                }],
            }
        };
        let mut with_event = span(2);
        with_event.events.push(Event { attributes: deep(), ..Default::default() });
        let mut r = traces(vec![span(1), with_event], vec![]);
        check(validate::traces(&mut r, &limits), 1, &format!("resource 0, scope 0, span 1: event 0 {at}"));
        assert_eq!(r.resource_spans[0].scope_spans[0].spans.len(), 1);
        let mut with_link = span(2);
        with_link.links.push(Link { attributes: deep(), ..Default::default() });
        let mut r = traces(vec![with_link, span(1)], vec![]);
        check(validate::traces(&mut r, &limits), 1, &format!("resource 0, scope 0, span 0: link 0 {at}"));
        let mut r = traces(vec![span(1), span(2)], deep());
        check(validate::traces(&mut r, &limits), 2, &format!("resource 0, scope 0: scope {at}"));

        let point = |attributes: Vec<KeyValue>, exemplar: Vec<KeyValue>| NumberDataPoint {
            attributes,
            exemplars: vec![Exemplar { filtered_attributes: exemplar, ..Default::default() }],
            ..Default::default()
        };
        let metrics = |metadata: Vec<KeyValue>, points: Vec<NumberDataPoint>| ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        metadata,
                        data: Some(Data::Gauge(Gauge { data_points: points })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut r = metrics(vec![], vec![point(ok(), ok()), point(ok(), deep())]);
        check(
            validate::metrics(&mut r, &limits),
            1,
            &format!("resource 0, scope 0, metric \"m\", point 1: exemplar 0 {at}"),
        );
        let mut r = metrics(vec![], vec![point(deep(), ok()), point(ok(), ok())]);
        check(validate::metrics(&mut r, &limits), 1, &format!("resource 0, scope 0, metric \"m\", point 0: {at}"));
        let mut r = metrics(deep(), vec![point(ok(), ok()), point(ok(), ok())]);
        check(validate::metrics(&mut r, &limits), 2, &format!("resource 0, scope 0, metric \"m\": metadata {at}"));

        let record = |attributes: Vec<KeyValue>, body: AnyValue| LogRecord {
            attributes,
            body: Some(body),
            ..Default::default()
        };
        let logs = |records: Vec<LogRecord>, resource: Vec<KeyValue>| ExportLogsServiceRequest {
            resource_logs: vec![
                ResourceLogs {
                    resource: Some(Resource { attributes: resource, ..Default::default() }),
                    scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                    ..Default::default()
                },
                ResourceLogs {
                    scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default()], ..Default::default() }],
                    ..Default::default()
                },
            ],
        };
        let mut r = logs(vec![record(ok(), nested_kvlists(3)), record(deep(), string("x"))], vec![]);
        let rejections = validate::logs(&mut r, &limits);
        assert_eq!(rejections.items, 2);
        assert_eq!(
            rejections.reasons,
            [
                "resource 0, scope 0, log record 0: body nests 3 levels of arrayValue/kvlistValue; the limit is 2"
                    .to_string(),
                format!("resource 0, scope 0, log record 1: {at}")
            ]
        );
        let mut r = logs(vec![record(ok(), string("x")), record(ok(), string("y"))], deep());
        check(validate::logs(&mut r, &limits), 2, &format!("resource 0: resource {at}"));
        assert_eq!(r.resource_logs[1].scope_logs[0].log_records.len(), 1, "the other resource's record is kept");

        // Profiles refer to dictionary attributes: a profile or sample naming a deep one.
        let dictionary = ProfilesDictionary {
            string_table: vec![String::new(), "d".into(), "ok".into()],
            attribute_table: vec![
                KeyValueAndUnit::default(),
                KeyValueAndUnit { key_strindex: 1, value: Some(nested_kvlists(3)), unit_strindex: 0 },
                KeyValueAndUnit { key_strindex: 2, value: Some(string("x")), unit_strindex: 0 },
            ],
            stack_table: vec![Stack::default()],
            ..Default::default()
        };
        let sample =
            |attribute: i32| Sample { attribute_indices: vec![attribute], values: vec![1], ..Default::default() };
        let profiles = vec![
            Profile { attribute_indices: vec![2], samples: vec![sample(2)], ..Default::default() },
            Profile { attribute_indices: vec![2, 1], samples: vec![sample(2)], ..Default::default() },
            Profile { samples: vec![sample(2), sample(1)], ..Default::default() },
        ];
        let mut r = ExportProfilesServiceRequest {
            resource_profiles: vec![ResourceProfiles {
                scope_profiles: vec![ScopeProfiles { profiles, ..Default::default() }],
                ..Default::default()
            }],
            dictionary: Some(dictionary),
        };
        let rejections = validate::profiles(&mut r, &limits);
        let deep_index = "attribute index 1 (\"d\") nests 3 levels of arrayValue/kvlistValue; the limit is 2";
        assert_eq!(
            rejections.reasons,
            [
                format!("resource 0, scope 0, profile 1: {deep_index}"),
                format!("resource 0, scope 0, profile 2: sample 1: {deep_index}")
            ]
        );
        assert_eq!(r.resource_profiles[0].scope_profiles[0].profiles.len(), 1);
    }

    /// A dictionary of functions `f0`..`f{n-1}`, one location each (`f{i}` at location `i + 1`),
    /// plus location `n + 1`: `g` with `h` and `i` inlined into it (lines innermost first).
    fn dictionary(n: usize) -> ProfilesDictionary {
        let mut d = ProfilesDictionary {
            string_table: vec![String::new(), "cpu".into(), "nanoseconds".into()],
            function_table: vec![Function::default()],
            location_table: vec![Location::default()],
            stack_table: vec![Stack::default()],
            ..Default::default()
        };
        let function = |d: &mut ProfilesDictionary, name: &str| {
            d.string_table.push(name.to_string());
            d.function_table.push(Function { name_strindex: index(d.string_table.len() - 1), ..Default::default() });
            Line { function_index: index(d.function_table.len() - 1), line: 0, column: 0 }
        };
        for i in 0..n {
            let line = function(&mut d, &format!("f{i}"));
            d.location_table.push(Location { lines: vec![line], ..Default::default() });
        }
        let lines = ["i", "h", "g"].map(|name| function(&mut d, name)).to_vec();
        d.location_table.push(Location { lines, ..Default::default() });
        d
    }

    fn profile(stacks: &[i32]) -> Profile {
        let cpu = ValueType { type_strindex: 1, unit_strindex: 2 };
        Profile {
            sample_type: Some(cpu),
            samples: stacks.iter().map(|&s| Sample { stack_index: s, values: vec![1], ..Default::default() }).collect(),
            profile_id: vec![1; 16],
            ..Default::default()
        }
    }

    fn request(dictionary: ProfilesDictionary, profiles: Vec<Profile>) -> ExportProfilesServiceRequest {
        ExportProfilesServiceRequest {
            resource_profiles: vec![ResourceProfiles {
                scope_profiles: vec![ScopeProfiles { profiles, ..Default::default() }],
                ..Default::default()
            }],
            dictionary: Some(dictionary),
        }
    }

    /// The stored stacks (function names, innermost first) of every sample, profile by profile.
    fn stored(request: ExportProfilesServiceRequest) -> Vec<Vec<String>> {
        crate::model::profile::rows_from_request(request)
            .iter()
            .map(|row| {
                let frames: Vec<crate::model::profile::Frame> = serde_json::from_str(&row.stack).unwrap();
                frames.into_iter().map(|f| f.function).collect()
            })
            .collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn deep_stacks_keep_their_outermost_frames_and_shared_entries_stay_whole() {
        let mut d = dictionary(6);
        // Stack 1: g(h(i)) inlined at location 7 over f5 … f0 (9 frames). Stack 2: the same
        // inlined location over f0 alone (4 frames). Stack 3: f5 … f0 (6 frames).
        d.stack_table.push(Stack { location_indices: vec![7, 6, 5, 4, 3, 2, 1] });
        d.stack_table.push(Stack { location_indices: vec![7, 1] });
        d.stack_table.push(Stack { location_indices: vec![6, 5, 4, 3, 2, 1] });
        let original = d.clone();
        // Two profiles share stack 1; stack 2 shares the inlined location stack 1 is cut through.
        let mut r = request(d, vec![profile(&[1, 2, 3]), profile(&[1, 1])]);
        let limits = Limits { max_stack_depth: 7, ..Limits::default() };
        let rejections = validate::profiles(&mut r, &limits);
        assert_eq!(rejections.items, 0, "{}", rejections.message());
        assert_eq!(
            rejections.message(),
            "stacks deeper than max_stack_depth (7 frames) were truncated to their 7 outermost frames under a \
             frame naming how many were dropped: resource 0, scope 0, profile 0: 1 sample, up to 2 frames \
             dropped; resource 0, scope 0, profile 1: 2 samples, up to 2 frames dropped"
        );
        let dict = r.dictionary.as_ref().unwrap();
        assert_eq!(dict.stack_table[..4], original.stack_table[..], "entries samples share are not edited");
        assert_eq!(dict.location_table[..8], original.location_table[..], "locations are not edited");
        assert_eq!(dict.stack_table.len(), 5, "one copy for the three samples of stack 1");

        let cut = names(&["[2 frames truncated]", "g", "f5", "f4", "f3", "f2", "f1", "f0"]);
        // The second profile's two samples of stack 1 are stored as one row (their values
        // summed), as samples with the same stack, attributes and time are.
        assert_eq!(
            stored(r),
            [cut.clone(), names(&["i", "h", "g", "f0"]), names(&["f5", "f4", "f3", "f2", "f1", "f0"]), cut]
        );

        // At the limit nothing changes; 0 keeps every frame.
        for max in [9, 0] {
            let mut r = request(original.clone(), vec![profile(&[1, 2])]);
            let limits = Limits { max_stack_depth: max, ..Limits::default() };
            let rejections = validate::profiles(&mut r, &limits);
            assert_eq!(rejections, validate::Rejections { noun: "profiles", ..Default::default() });
            assert_eq!(r.dictionary.as_ref().unwrap(), &original);
        }
    }

    #[test]
    fn a_cut_through_inlined_lines_keeps_the_outer_lines() {
        let mut d = dictionary(1);
        d.stack_table.push(Stack { location_indices: vec![2, 1] });
        let mut r = request(d, vec![profile(&[1])]);
        let rejections = validate::profiles(&mut r, &Limits { max_stack_depth: 2, ..Limits::default() });
        assert_eq!(rejections.items, 0);
        assert_eq!(stored(r), [names(&["[2 frames truncated]", "g", "f0"])]);
    }
}
