//! Span metrics: counting, labels, kinds and statuses, buckets, limits, expiry, tenants, and the
//! series the written metrics become.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use slo_contracts::HumanDuration;

use super::tally::Target;
use super::*;
use crate::config::SpanMetricsDimension;
use crate::model::prometheus::Translator;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
/// A fixed "now" for the counting: 2024-01-01T00:00:00Z.
const T0: u64 = 1_704_067_200 * SEC;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), key_strindex: 0 }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

/// A span of `kind` (OTLP number) named `name`, lasting `nanos`, with status `code`.
fn span(name: &str, kind: i32, code: i32, nanos: u64, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: name.into(),
        kind,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + nanos,
        attributes,
        status: (code != 0).then(|| Status { code, message: String::new() }),
        ..Default::default()
    }
}

const SERVER: i32 = 2;
const OK: i32 = 1;
const ERROR: i32 = 2;

fn request(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: resource, ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            schema_url: String::new(),
        }],
    }
}

fn checkout() -> Vec<KeyValue> {
    vec![s("service.name", "checkout"), s("service.version", "1.4.2"), s("deployment.environment.name", "prod")]
}

fn metrics(edit: impl FnOnce(&mut SpanMetricsConfig)) -> SpanMetrics {
    let mut config = SpanMetricsConfig::default();
    edit(&mut config);
    SpanMetrics::new(&config).expect("valid span metrics config")
}

fn tenant(name: &str) -> Tenant {
    Tenant::parse(name).unwrap()
}

/// Counts `request` as stored for `t` at `now`.
fn count(m: &SpanMetrics, t: &Tenant, request: &ExportTraceServiceRequest, now: u64) {
    if let Some(tally) = m.tally(t, request) {
        m.record_at(tally, now);
    }
}

/// A tenant's series as lines `labels calls=.. errors=.. buckets=[..] sum=..`, dimension values
/// by name, for comparing with an expectation.
fn render(m: &SpanMetrics, t: &Tenant) -> String {
    let names: Vec<&str> = m.dimension_names().collect();
    let mut out = String::new();
    for s in m.snapshot(t) {
        let labels = match &s.key {
            None => "overflow".to_string(),
            Some(k) => {
                let mut l = format!("{} {:?} {} {}", k.service, k.span_name, k.kind.as_str(), k.status.as_str());
                for (n, v) in names.iter().zip(k.dimensions.iter()) {
                    if let Some(v) = v {
                        l.push_str(&format!(" {n}={v}"));
                    }
                }
                l
            }
        };
        // Buckets with a count only, as `index:count`.
        let buckets: Vec<String> =
            s.bucket_counts.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| format!("{i}:{n}")).collect();
        out.push_str(&format!(
            "{labels} calls={} errors={} buckets=[{}] sum={}\n",
            s.calls,
            s.errors,
            buckets.join(" "),
            s.sum_seconds
        ));
    }
    out
}

#[track_caller]
fn check(actual: &str, expect: &str) {
    let expect: String = expect.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| format!("{l}\n")).collect();
    assert_eq!(actual, expect, "\nactual:\n{actual}");
}

#[test]
fn server_spans_are_counted_per_label_set_with_their_durations() {
    let m = metrics(|_| {});
    let t = tenant("team-a");
    let route = |r: &str| vec![s("http.route", r)];
    let req = request(
        checkout(),
        vec![
            span("GET /items/{id}", SERVER, 0, 30 * MS, route("/items/{id}")),
            span("GET /items/{id}", SERVER, 0, 700 * MS, route("/items/{id}")),
            span("POST /orders", SERVER, OK, 120 * MS, route("/orders")),
            span("GET /items/{id}", SERVER, 0, 30 * MS, route("/items/{id}")),
        ],
    );
    count(&m, &t, &req, T0);
    count(&m, &t, &req, T0 + SEC);
    // Buckets: 0:2ms 1:4ms 2:6ms 3:8ms 4:10ms 5:50ms 6:100ms 7:200ms 8:400ms 9:800ms 10:1s ...
    check(
        &render(&m, &t),
        r#"
        checkout "GET /items/{id}" SPAN_KIND_SERVER STATUS_CODE_UNSET service.version=1.4.2 deployment.environment=prod http.route=/items/{id} calls=6 errors=0 buckets=[5:4 9:2] sum=1.52
        checkout "POST /orders" SPAN_KIND_SERVER STATUS_CODE_OK service.version=1.4.2 deployment.environment=prod http.route=/orders calls=2 errors=0 buckets=[7:2] sum=0.24
        "#,
    );
    let snapshot = m.snapshot(&t);
    assert!(snapshot.iter().all(|s| s.start_unix_nano == T0 && s.updated_unix_nano == T0 + SEC));
    assert_eq!(m.bounds_seconds().len() + 1, snapshot[0].bucket_counts.len());
}

#[test]
fn a_duration_on_a_bound_counts_in_that_bound_bucket() {
    // Prometheus's `le`: bucket i holds bounds[i-1] < d <= bounds[i].
    let m =
        metrics(|c| c.buckets = vec![HumanDuration(Duration::from_millis(2)), HumanDuration(Duration::from_secs(1))]);
    let t = tenant("anonymous");
    let cases = [(0, 0), (2 * MS, 0), (2 * MS + 1, 1), (SEC, 1), (SEC + 1, 2), (3600 * SEC, 2)];
    for (i, (nanos, bucket)) in cases.into_iter().enumerate() {
        let name = format!("case {i}");
        count(&m, &t, &request(checkout(), vec![span(&name, SERVER, 0, nanos, vec![])]), T0);
        let snap = m.snapshot(&t).into_iter().find(|s| s.key.as_ref().is_some_and(|k| *k.span_name == *name)).unwrap();
        let mut expect = vec![0; 3];
        expect[bucket] = 1;
        assert_eq!(snap.bucket_counts, expect, "{nanos} ns");
    }
    // A span that ends before it starts lasted no time (as in the connector).
    let mut backwards = span("backwards", SERVER, 0, 0, vec![]);
    backwards.end_time_unix_nano = T0 - SEC;
    count(&m, &t, &request(checkout(), vec![backwards]), T0);
    let snap =
        m.snapshot(&t).into_iter().find(|s| s.key.as_ref().is_some_and(|k| &*k.span_name == "backwards")).unwrap();
    assert_eq!((snap.bucket_counts[0], snap.sum_seconds), (1, 0.0));
}

#[test]
fn consumer_spans_count_and_client_internal_producer_spans_do_not() {
    let m = metrics(|_| {});
    let t = tenant("anonymous");
    let spans = (0..=6).map(|kind| span(&format!("kind {kind}"), kind, 0, MS, vec![])).collect();
    count(&m, &t, &request(checkout(), spans), T0);
    check(
        &render(&m, &t),
        r#"
        checkout "kind 2" SPAN_KIND_SERVER STATUS_CODE_UNSET service.version=1.4.2 deployment.environment=prod calls=1 errors=0 buckets=[0:1] sum=0.001
        checkout "kind 5" SPAN_KIND_CONSUMER STATUS_CODE_UNSET service.version=1.4.2 deployment.environment=prod calls=1 errors=0 buckets=[0:1] sum=0.001
        "#,
    );
    // `span_kinds` chooses.
    let m = metrics(|c| c.span_kinds = vec![SpanKindName::Client]);
    assert!(m.tally(&t, &request(checkout(), vec![span("s", SERVER, 0, MS, vec![])])).is_none());
    count(&m, &t, &request(checkout(), vec![span("c", 3, 0, MS, vec![])]), T0);
    assert_eq!(m.snapshot(&t)[0].key.as_ref().unwrap().kind, SpanKind::Client);
}

#[test]
fn each_status_code_is_a_series_and_errors_are_the_error_ones() {
    let m = metrics(|c| c.dimensions.clear());
    let t = tenant("anonymous");
    let spans = vec![
        span("op", SERVER, 0, MS, vec![]),
        span("op", SERVER, OK, MS, vec![]),
        span("op", SERVER, ERROR, MS, vec![]),
        span("op", SERVER, ERROR, MS, vec![]),
        // Not a code OTLP defines: unset.
        span("op", SERVER, 7, MS, vec![]),
    ];
    count(&m, &t, &request(checkout(), spans), T0);
    check(
        &render(&m, &t),
        r#"
        checkout "op" SPAN_KIND_SERVER STATUS_CODE_UNSET calls=2 errors=0 buckets=[0:2] sum=0.002
        checkout "op" SPAN_KIND_SERVER STATUS_CODE_OK calls=1 errors=0 buckets=[0:1] sum=0.001
        checkout "op" SPAN_KIND_SERVER STATUS_CODE_ERROR calls=2 errors=2 buckets=[0:2] sum=0.002
        "#,
    );
}

#[test]
fn dimensions_come_from_the_span_then_the_resource_then_their_default() {
    let dim = |name: &str, default: Option<&str>| SpanMetricsDimension {
        name: name.into(),
        default: default.map(str::to_string),
    };
    let m = metrics(|c| {
        c.dimensions = vec![
            dim("region", None),
            dim("http.response.status_code", None),
            dim("tier", Some("free")),
            dim("deployment.environment", None),
        ]
    });
    let t = tenant("anonymous");
    let resource = vec![s("service.name", "api"), s("region", "eu-1"), s("deployment.environment", "staging")];
    let spans = vec![
        // The span's own value wins over the resource's.
        span(
            "a",
            SERVER,
            0,
            MS,
            vec![s("region", "us-2"), kv("http.response.status_code", any_value::Value::IntValue(200))],
        ),
        // The same label set: an integer and its text are one value, as Prometheus labels are.
        span("a", SERVER, 0, MS, vec![s("region", "us-2"), s("http.response.status_code", "200")]),
        // Resource value, no status code at all (no label), the default tier.
        span("b", SERVER, 0, MS, vec![]),
        // Other value types, as text.
        span(
            "c",
            SERVER,
            0,
            MS,
            vec![kv("tier", any_value::Value::BoolValue(true)), kv("region", any_value::Value::DoubleValue(2.5))],
        ),
        // The newer name of the environment attribute on the span beats the resource's old one.
        span("d", SERVER, 0, MS, vec![s("deployment.environment.name", "canary")]),
    ];
    count(&m, &t, &request(resource, spans), T0);
    check(
        &render(&m, &t),
        r#"
        api "a" SPAN_KIND_SERVER STATUS_CODE_UNSET region=us-2 http.response.status_code=200 tier=free deployment.environment=staging calls=2 errors=0 buckets=[0:2] sum=0.002
        api "b" SPAN_KIND_SERVER STATUS_CODE_UNSET region=eu-1 tier=free deployment.environment=staging calls=1 errors=0 buckets=[0:1] sum=0.001
        api "c" SPAN_KIND_SERVER STATUS_CODE_UNSET region=2.5 tier=true deployment.environment=staging calls=1 errors=0 buckets=[0:1] sum=0.001
        api "d" SPAN_KIND_SERVER STATUS_CODE_UNSET region=eu-1 tier=free deployment.environment=canary calls=1 errors=0 buckets=[0:1] sum=0.001
        "#,
    );
}

#[test]
fn spans_without_a_service_name_are_not_counted() {
    let m = metrics(|_| {});
    let t = tenant("anonymous");
    let req = request(vec![s("host.name", "h1")], vec![span("a", SERVER, 0, MS, vec![]), span("b", 3, 0, MS, vec![])]);
    assert!(m.tally(&t, &req).is_none());
    assert_eq!(m.stats.unnamed_service_spans.load(Relaxed), 1, "only the SERVER span is of a counted kind");
}

#[test]
fn nothing_counts_until_the_tally_is_recorded_and_tenants_never_mix() {
    let m = metrics(|_| {});
    let (a, b) = (tenant("team-a"), tenant("team-b"));
    let req = request(checkout(), vec![span("op", SERVER, 0, MS, vec![]); 3]);
    let tally = m.tally(&a, &req).unwrap();
    assert_eq!(tally.spans(), 3);
    assert!(m.snapshot(&a).is_empty(), "a tally is not counted before the store acknowledged it");
    drop(tally);
    assert!(m.snapshot(&a).is_empty(), "a dropped tally (the store refused) is never counted");
    count(&m, &a, &req, T0);
    count(&m, &b, &request(checkout(), vec![span("op", SERVER, 0, MS, vec![])]), T0);
    assert_eq!(m.snapshot(&a)[0].calls, 3);
    assert_eq!(m.snapshot(&b)[0].calls, 1);
    assert_eq!(m.tenants(), vec![a, b]);
}

#[test]
fn a_known_label_set_reuses_its_key() {
    let m = metrics(|_| {});
    let t = tenant("anonymous");
    let req = request(checkout(), vec![span("op", SERVER, 0, MS, vec![s("http.route", "/x")])]);
    count(&m, &t, &req, T0);
    let first = m.snapshot(&t)[0].key.clone().unwrap();
    let tally = m.tally(&t, &req).unwrap();
    match &tally.entries[0].target {
        Target::Series(key) => assert!(Arc::ptr_eq(key, &first), "the request's label set was copied again"),
        Target::Overflow => panic!("went to the overflow series"),
    }
}

#[test]
fn label_sets_past_the_tenant_limit_go_to_one_overflow_series() {
    let m = metrics(|c| {
        c.aggregation_cardinality_limit = 2;
        c.dimensions.clear();
    });
    let (a, b) = (tenant("team-a"), tenant("team-b"));
    let spans = |names: &[&str]| names.iter().map(|n| span(n, SERVER, ERROR, MS, vec![])).collect();
    count(&m, &a, &request(checkout(), spans(&["r1", "r2", "r3", "r4"])), T0);
    count(&m, &a, &request(checkout(), spans(&["r1", "r5"])), T0);
    check(
        &render(&m, &a),
        r#"
        checkout "r1" SPAN_KIND_SERVER STATUS_CODE_ERROR calls=2 errors=2 buckets=[0:2] sum=0.002
        checkout "r2" SPAN_KIND_SERVER STATUS_CODE_ERROR calls=1 errors=1 buckets=[0:1] sum=0.001
        overflow calls=3 errors=3 buckets=[0:3] sum=0.003
        "#,
    );
    // The limit is per tenant.
    count(&m, &b, &request(checkout(), spans(&["r3", "r4"])), T0);
    assert_eq!(m.snapshot(&b).len(), 2);
    assert!(m.snapshot(&b).iter().all(|s| s.key.is_some()));
    assert_eq!(m.stats.overflowed_spans.load(Relaxed), 3);
    assert_eq!(m.usage().0, 5, "four series and one overflow series");
}

#[test]
fn the_global_bounds_hold_over_all_tenants() {
    let m = metrics(|c| {
        c.max_series = 3;
        c.dimensions.clear();
    });
    let (a, b) = (tenant("team-a"), tenant("team-b"));
    count(&m, &a, &request(checkout(), vec![span("r1", SERVER, 0, MS, vec![]), span("r2", SERVER, 0, MS, vec![])]), T0);
    count(&m, &b, &request(checkout(), vec![span("r1", SERVER, 0, MS, vec![]), span("r2", SERVER, 0, MS, vec![])]), T0);
    let keys = |t: &Tenant| m.snapshot(t).iter().map(|s| s.key.is_some()).collect::<Vec<_>>();
    assert_eq!(keys(&a), [true, true]);
    assert_eq!(keys(&b), [true, false], "the fourth series overflows: three are allowed over all tenants");
    // Memory too: a bound smaller than one long span name's series overflows it.
    let m = metrics(|c| c.max_memory_bytes = 1 << 20);
    let long = "x".repeat(2 << 20);
    count(
        &m,
        &a,
        &request(checkout(), vec![span(&long, SERVER, 0, MS, vec![]), span("short", SERVER, 0, MS, vec![])]),
        T0,
    );
    let snap = m.snapshot(&a);
    assert_eq!(snap.len(), 2);
    assert_eq!(snap[0].key.as_ref().map(|k| &*k.span_name), Some("short"));
    assert!(snap[1].key.is_none());
    let (series, bytes) = m.usage();
    assert_eq!(series, 2);
    assert!(bytes < 1 << 20, "{bytes} bytes counted");
}

#[test]
fn the_memory_of_a_series_is_counted_and_released() {
    let m = metrics(|_| {});
    let t = tenant("anonymous");
    let route = "/a-route-of-forty-bytes-0123456789abcdef";
    count(&m, &t, &request(checkout(), vec![span("GET", SERVER, 0, MS, vec![s("http.route", route)])]), T0);
    let (series, bytes) = m.usage();
    assert_eq!(series, 1);
    // Slot, key and 17 counters, plus the value texts: a few hundred bytes.
    let texts = ("checkout".len() + "GET".len() + "1.4.2".len() + "prod".len() + route.len()) as u64;
    assert!((texts + 17 * 8..texts + 17 * 8 + 400).contains(&bytes), "{bytes} bytes");
    m.expire(T0 + 16 * 60 * SEC);
    assert_eq!(m.usage(), (0, 0));
}

#[test]
fn series_not_updated_for_the_expiration_are_dropped_and_start_again_from_zero() {
    let m = metrics(|c| c.metrics_expiration = HumanDuration(Duration::from_secs(60)));
    let (a, b) = (tenant("team-a"), tenant("team-b"));
    let req = |name: &str| request(checkout(), vec![span(name, SERVER, 0, MS, vec![])]);
    count(&m, &a, &req("old"), T0);
    count(&m, &a, &req("busy"), T0);
    count(&m, &b, &req("old"), T0);
    count(&m, &a, &req("busy"), T0 + 50 * SEC);
    m.expire(T0 + 60 * SEC);
    let names =
        |t: &Tenant| m.snapshot(t).iter().map(|s| s.key.as_ref().unwrap().span_name.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&a), ["busy"]);
    assert!(m.snapshot(&b).is_empty());
    assert_eq!(m.tenants(), vec![a.clone()], "a tenant without series is dropped");
    assert_eq!(m.stats.expired_series.load(Relaxed), 2);
    // Back: a new series, counting from zero since its new start (a counter reset).
    count(&m, &a, &req("old"), T0 + 70 * SEC);
    let old = m.snapshot(&a).into_iter().find(|s| s.key.as_ref().is_some_and(|k| &*k.span_name == "old")).unwrap();
    assert_eq!((old.calls, old.start_unix_nano), (1, T0 + 70 * SEC));
    // `0` keeps them.
    let m = metrics(|c| c.metrics_expiration = HumanDuration(Duration::ZERO));
    count(&m, &a, &req("old"), T0);
    m.expire(T0 + 365 * 86_400 * SEC);
    assert_eq!(m.snapshot(&a).len(), 1);
}

/// The written metrics, translated as the store translates them for PromQL: `name{labels}
/// value`, sorted.
fn translated(m: &SpanMetrics, t: &Tenant, now: u64) -> String {
    let mut tr = Translator::default();
    let mut samples = Vec::new();
    for request in emit::requests_of(m, t, now) {
        for row in crate::model::metric::rows_from_request(request) {
            tr.translate(&row, |id, sample| samples.push((id, sample)));
        }
    }
    assert!(samples.iter().all(|(_, sample)| sample.t == (now / MS) as i64));
    let lines: std::collections::BTreeSet<String> =
        samples.iter().map(|(id, sample)| format!("{} {}", tr.labels(*id), sample.v)).collect();
    lines.into_iter().map(|l| l + "\n").collect()
}

#[test]
fn written_metrics_become_the_connectors_prometheus_series() {
    let m =
        metrics(|c| c.buckets = vec![HumanDuration(Duration::from_millis(100)), HumanDuration(Duration::from_secs(1))]);
    let t = tenant("anonymous");
    let spans = vec![
        span("GET /items/{id}", SERVER, 0, 100 * MS, vec![s("http.route", "/items/{id}")]),
        span("GET /items/{id}", SERVER, 0, 1500 * MS, vec![s("http.route", "/items/{id}")]),
        span("GET /items/{id}", SERVER, ERROR, 300 * MS, vec![s("http.route", "/items/{id}")]),
    ];
    count(&m, &t, &request(checkout(), spans), T0);
    check(
        &translated(&m, &t, T0 + 15 * SEC),
        r#"
        target_info{deployment_environment="prod", job="checkout", service_version="1.4.2"} 1
        traces_span_metrics_calls_total{deployment_environment="prod", http_route="/items/{id}", job="checkout", service_name="checkout", service_version="1.4.2", span_kind="SPAN_KIND_SERVER", span_name="GET /items/{id}", status_code="STATUS_CODE_ERROR"} 1
        traces_span_metrics_calls_total{deployment_environment="prod", http_route="/items/{id}", job="checkout", service_name="checkout", service_version="1.4.2", span_kind="SPAN_KIND_SERVER", span_name="GET /items/{id}", status_code="STATUS_CODE_UNSET"} 2
        traces_span_metrics_duration_seconds_bucket{deployment_environment="prod", http_route="/items/{id}", job="checkout", le="+Inf", service_name="checkout", service_version="1.4.2", span_kind="SPAN_KIND_SERVER", span_name="GET /items/{id}", status_code="STATUS_CODE_ERROR"} 1
        traces_span_metrics_duration_seconds_bucket{deployment_environment="prod", http_route="/items/{id}", job="checkout", le="+Inf", service_name="checkout", service_version="1.4.2", span_kind="SPAN_KIND_SERVER", span_name="GET /items/{id}", status_code="STATUS_CODE_UNSET"} 2
        traces_span_metrics_duration_seconds_bucket{deployment_environment="prod", http_route="/items/{id}", job="checkout", le="0.1", service_name="checkout", service_version="1.4.2", span_kind="SPAN_KIND_SERVER", span_name="GET /items/{id}", status_code="STATUS_CODE_ERROR"} 0
        traces_span_metrics_duration_seconds_bucket{deployment_environment="prod", http_route="/items/{id}", job="checkout", le="0.1", service_name="checkout", service_version="1.4.2", span_kind="SPAN_KIND_SERVER", span_name="GET /items/{id}", status_code="STATUS_CODE_UNSET"} 1
        traces_span_metrics_duration_seconds_bucket{deployment_environment="prod", http_route="/items/{id}", job="checkout", le="1", service_name="checkout", service_version="1.4.2", span_kind="SPAN_KIND_SERVER", span_name="GET /items/{id}", status_code="STATUS_CODE_ERROR"} 1
        traces_span_metrics_duration_seconds_bucket{deployment_environment="prod", http_route="/items/{id}", job="checkout", le="1", service_name="checkout", service_version="1.4.2", span_kind="SPAN_KIND_SERVER", span_name="GET /items/{id}", status_code="STATUS_CODE_UNSET"} 1
        traces_span_metrics_duration_seconds_count{deployment_environment="prod", http_route="/items/{id}", job="checkout", service_name="checkout", service_version="1.4.2", span_kind="SPAN_KIND_SERVER", span_name="GET /items/{id}", status_code="STATUS_CODE_ERROR"} 1
        traces_span_metrics_duration_seconds_count{deployment_environment="prod", http_route="/items/{id}", job="checkout", service_name="checkout", service_version="1.4.2", span_kind="SPAN_KIND_SERVER", span_name="GET /items/{id}", status_code="STATUS_CODE_UNSET"} 2
        traces_span_metrics_duration_seconds_sum{deployment_environment="prod", http_route="/items/{id}", job="checkout", service_name="checkout", service_version="1.4.2", span_kind="SPAN_KIND_SERVER", span_name="GET /items/{id}", status_code="STATUS_CODE_ERROR"} 0.3
        traces_span_metrics_duration_seconds_sum{deployment_environment="prod", http_route="/items/{id}", job="checkout", service_name="checkout", service_version="1.4.2", span_kind="SPAN_KIND_SERVER", span_name="GET /items/{id}", status_code="STATUS_CODE_UNSET"} 1.6
        "#,
    );
}

#[test]
fn the_overflow_series_is_labelled_only_otel_metric_overflow() {
    let m = metrics(|c| {
        c.aggregation_cardinality_limit = 1;
        c.buckets = vec![HumanDuration(Duration::from_secs(1))];
    });
    let t = tenant("anonymous");
    count(&m, &t, &request(checkout(), vec![span("a", SERVER, 0, MS, vec![]), span("b", SERVER, 0, MS, vec![])]), T0);
    let text = translated(&m, &t, T0 + SEC);
    let overflow: Vec<&str> = text.lines().filter(|l| l.contains("otel_metric_overflow")).collect();
    assert_eq!(
        overflow,
        [
            r#"traces_span_metrics_calls_total{otel_metric_overflow="true"} 1"#,
            r#"traces_span_metrics_duration_seconds_bucket{le="+Inf", otel_metric_overflow="true"} 1"#,
            r#"traces_span_metrics_duration_seconds_bucket{le="1", otel_metric_overflow="true"} 1"#,
            r#"traces_span_metrics_duration_seconds_count{otel_metric_overflow="true"} 1"#,
            r#"traces_span_metrics_duration_seconds_sum{otel_metric_overflow="true"} 0.001"#,
        ]
    );
}

#[test]
fn written_points_are_cumulative_from_each_series_start() {
    let m = metrics(|_| {});
    let t = tenant("anonymous");
    count(&m, &t, &request(checkout(), vec![span("op", SERVER, 0, MS, vec![])]), T0);
    count(&m, &t, &request(checkout(), vec![span("op", SERVER, 0, MS, vec![])]), T0 + 20 * SEC);
    let requests = emit::requests_of(&m, &t, T0 + 30 * SEC);
    assert_eq!(requests.len(), 1);
    let rows = crate::model::metric::rows_from_request(requests[0].clone());
    assert_eq!(rows.len(), 2, "one calls point, one duration point");
    for row in &rows {
        assert_eq!((row.start_unix_nano, row.time_unix_nano, row.temporality), (T0, T0 + 30 * SEC, 2));
        assert_eq!(row.resource.service_name.as_deref(), Some("checkout"));
        assert_eq!(row.resource.service_version.as_deref(), Some("1.4.2"));
        assert_eq!(row.resource.deployment_environment.as_deref(), Some("prod"));
    }
    assert!(rows.iter().any(|r| r.is_monotonic && r.value_int == Some(2)));
    assert!(rows.iter().any(|r| r.count == Some(2) && r.sum == Some(0.002) && &*r.metric.unit == "s"));
}

#[test]
fn a_tenant_with_many_series_is_written_in_several_requests() {
    let m = metrics(|c| c.dimensions.clear());
    let t = tenant("anonymous");
    let spans = (0..1200).map(|i| span(&format!("op {i}"), SERVER, 0, MS, vec![])).collect();
    count(&m, &t, &request(checkout(), spans), T0);
    let requests = emit::requests_of(&m, &t, T0 + SEC);
    assert_eq!(requests.len(), 3);
    let points: u64 = requests.iter().map(emit::count_points).sum();
    assert_eq!(points, 2 * 1200);
}

#[test]
fn flushes_never_write_two_values_at_one_millisecond() {
    let m = metrics(|_| {});
    assert_eq!(m.flush_time(T0), T0);
    assert_eq!(m.flush_time(T0), T0 + MS);
    assert_eq!(m.flush_time(T0 + 5 * SEC), T0 + 5 * SEC);
}

mod through_the_store {
    use super::*;
    use crate::config::{Durability, Limits, ServerLimits};
    use crate::model::Rows;
    use crate::receive::admission::Admission;
    use crate::receive::{Ingest, Raw};
    use crate::signal::Signal;
    use crate::store::{Store, StoreSettings};
    use crate::telemetry::Telemetry;

    fn ingest(dir: &std::path::Path, limits: Limits) -> (Arc<Store>, Ingest) {
        let telemetry = Arc::new(Telemetry::default());
        let settings = StoreSettings {
            durability: Durability::None,
            group_commit_interval: Duration::from_millis(1),
            flush_interval: Duration::from_secs(3600),
            max_head_bytes: 1 << 30,
            retention: Duration::from_secs(86_400),
            retention_interval: Duration::from_secs(3600),
            min_tenant_part_bytes: 1 << 20,
            verify_parts_at_start: false,
            min_free_bytes: 0,
            span_index_cache_bytes: 64 << 20,
            trace_key_bytes: 64 << 20,
        };
        let store = Arc::new(Store::open(dir, settings, Arc::clone(&telemetry)).unwrap());
        let admission = Admission::new(&ServerLimits::default(), Arc::clone(&telemetry));
        let ingest =
            Ingest::new(Arc::clone(&store), limits, telemetry, admission).with_span_metrics(Arc::new(metrics(|_| {})));
        (store, ingest)
    }

    /// Stored spans are counted; a span validation rejected and a request the store refused
    /// are not; the flush writes metric points the store reads back for the tenant.
    #[test]
    fn only_stored_spans_count_and_a_flush_stores_their_series() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ingest) = ingest(dir.path(), Limits::default());
        let m = Arc::clone(ingest.span_metrics().unwrap());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let t = tenant("team-a");
        let mut bad = span("op", SERVER, 0, MS, vec![]);
        bad.trace_id = vec![1; 3];
        let req = request(checkout(), vec![span("op", SERVER, 0, MS, vec![]), bad]);
        let response = rt.block_on(ingest.export(t.clone(), req, Raw::None)).unwrap();
        assert_eq!(response.partial_success.map(|p| p.rejected_spans), Some(1));
        assert_eq!(m.snapshot(&t)[0].calls, 1, "the rejected span is not counted");

        // A request refused whole (its rows would take more memory than allowed).
        let (_, strict) = ingest_with_expansion(dir.path().join("strict").as_path());
        let sm = Arc::clone(strict.span_metrics().unwrap());
        let err = rt.block_on(strict.export(
            t.clone(),
            request(checkout(), vec![span("op", SERVER, 0, MS, vec![])]),
            Raw::None,
        ));
        assert!(err.is_err());
        assert!(sm.snapshot(&t).is_empty(), "a refused request is not counted");

        let flushed = rt.block_on(m.flush(&ingest));
        assert_eq!(flushed, Flushed { points: 2, failures: 0 });
        let mut names = Vec::new();
        let snapshot = store.snapshot(&t, Signal::Metrics);
        store
            .scan(&snapshot, |rows| {
                if let Rows::Metrics(rows) = rows {
                    names.extend(
                        rows.iter().map(|r| (r.metric.name.to_string(), r.count.or(r.value_int.map(|v| v as u64)))),
                    );
                }
            })
            .unwrap();
        names.sort();
        assert_eq!(names, [(CALLS_METRIC.to_string(), Some(1)), (DURATION_METRIC.to_string(), Some(1))],);
        let mut others = 0;
        store.scan(&store.snapshot(&tenant("team-b"), Signal::Metrics), |rows| others += rows.len()).unwrap();
        assert_eq!(others, 0, "another tenant's store has none of them");
        let mut text = String::new();
        m.render_telemetry(&mut text);
        assert!(text.contains("slo_gate_span_metrics_written_points_total 2\n"), "{text}");
        assert!(text.contains("slo_gate_span_metrics_spans_total 1\n"), "{text}");
        assert!(text.contains("slo_gate_span_metrics_series 1\n"), "{text}");
    }

    fn ingest_with_expansion(dir: &std::path::Path) -> (Arc<Store>, Ingest) {
        std::fs::create_dir_all(dir).unwrap();
        ingest(dir, Limits { max_memory_expansion: 1, ..Limits::default() })
    }
}

/// The cost of span metrics at ingest next to the conversion every stored span already gets
/// (`model::span::rows_from_request`), on a request shaped like `bench/run-otlp-bench.sh`'s
/// (512 SERVER spans of one service, six routes, 2% errors, six attributes each). Timing, so
/// run it alone and optimised:
/// `cb test --release -p collector --lib spanmetrics::tests::cost -- --ignored --nocapture`.
#[test]
#[ignore = "a timing: run alone, with --release"]
fn cost_per_span_is_small_next_to_the_row_conversion() {
    const ROUTES: [&str; 6] =
        ["/api/orders/{id}", "/api/products/{id}", "/api/orders", "/api/cart", "/api/cart/items/{id}", "/healthz"];
    let spans: Vec<Span> = (0..512u64)
        .map(|i| {
            let route = ROUTES[(i * 7 % 6) as usize];
            let mut s = span(
                &format!("GET {route}"),
                SERVER,
                if i % 50 == 0 { ERROR } else { 0 },
                (1 << (i % 9)) * MS + i * 1000,
                vec![
                    s("http.route", route),
                    s("http.request.method", "GET"),
                    kv("http.response.status_code", any_value::Value::IntValue(200)),
                    s("url.path", &format!("{route}/{i}")),
                    s("server.address", "checkout.internal"),
                    s("user.id", &format!("user-{}", i % 5000)),
                ],
            );
            s.trace_id = (i as u128).to_le_bytes().to_vec();
            s
        })
        .collect();
    let mut resource = checkout();
    resource.push(s("host.name", "bench-host-01"));
    let req = request(resource, spans);
    let m = metrics(|_| {});
    let t = tenant("anonymous");
    let rounds = 2000;
    // Warm: the series exist, as in a steady state.
    count(&m, &t, &req, T0);
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        let tally = m.tally(&t, &req).unwrap();
        m.record_at(tally, T0);
    }
    let counting = started.elapsed().as_nanos() as f64 / (rounds * 512) as f64;
    let started = std::time::Instant::now();
    for _ in 0..rounds / 10 {
        std::hint::black_box(crate::model::span::rows_from_request(req.clone()));
    }
    let converting = started.elapsed().as_nanos() as f64 / (rounds / 10 * 512) as f64;
    eprintln!(
        "span metrics: {counting:.0} ns per span; row conversion (with the request's clone): {converting:.0} ns per span"
    );
    assert_eq!(m.snapshot(&t).iter().map(|s| s.calls).sum::<u64>(), (rounds as u64 + 1) * 512);
    assert!(counting < converting / 4.0, "{counting:.0} ns per span against {converting:.0}");
}
