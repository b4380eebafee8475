//! Depth limits at ingest, so that nothing that cannot be read back is acknowledged and no query
//! recurses over an untrusted tree: how deeply attribute values nest (they are stored as
//! OTLP/JSON text, which `serde_json` reads back only to 127 levels; see
//! [`Limits::max_attribute_depth`](crate::config::Limits::max_attribute_depth)).
//!
//! Design: the walk is a loop over an explicit stack, never recursion: a value arrives decoded
//! from protobuf or JSON, and a check that recursed over it could be the thing that overflows.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

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

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::metrics::v1::Exemplar;
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
}
