//! Span metrics end to end: spans sent by the real OpenTelemetry Python SDK and its OTLP
//! exporters (`tests/python/span_metrics_send.py`) through `slo-gate serve` become the series
//! the OpenTelemetry Collector's `spanmetrics` connector makes, read back with PromQL
//! (`/api/v1/query`) and as stored points (`/api/v1/metrics/points`): exact counts per route,
//! status and kind, rates and a P95 from the duration histogram, two tenants kept apart, a
//! crash (WAL replay) that neither loses nor double-counts a written point, a restart that
//! starts every series again as a counter reset, and a clean stop that writes the last values.
//! The flush interval is short (config), and every wait polls.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::{Server, eventually};
use serde_json::{Value, json};

fn python() -> PathBuf {
    e2e::python::interpreter(
        "opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http",
    )
}

/// A config file with `[span_metrics]` flushing every `flush` (series never expire).
fn config(dir: &Path, flush: &str) -> PathBuf {
    let path = dir.join(format!("span-metrics-{flush}.toml"));
    let text = format!("[span_metrics]\nmetrics_flush_interval = \"{flush}\"\nmetrics_expiration = \"0\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(data: &Path, config: &Path) -> Server {
    Server::start(data, &["--config", config.to_str().unwrap()])
}

/// `count` spans named `name` of `kind`, lasting `ms`, with `status` and maybe a route.
fn group(name: &str, kind: &str, route: Option<&str>, status: &str, ms: u64, count: u64) -> Value {
    json!({"name": name, "kind": kind, "route": route, "status": status, "duration_ms": ms, "count": count})
}

/// Sends the groups' spans with the Python SDK over `protocol` as `tenant`.
fn send(python: &Path, server: &Server, protocol: &str, tenant: &str, service: &str, groups: &[Value]) {
    let endpoint = match protocol {
        "grpc" => server.grpc_url(),
        _ => format!("http://{}", server.http),
    };
    let mut cmd = Command::new(python);
    cmd.arg(e2e::manifest_dir().join("python/span_metrics_send.py"))
        .args(["--protocol", protocol, "--endpoint", &endpoint, "--tenant", tenant, "--service", service])
        .args(["--version", "1.4.2", "--environment", "e2e", "--spans", &Value::from(groups.to_vec()).to_string()]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().expect("run span_metrics_send.py");
    assert!(out.status.success(), "span_metrics_send.py failed:\n{}", e2e::output_text(&out));
}

/// An instant PromQL query as `tenant`: each result series' labels and value.
fn query(server: &Server, tenant: &str, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let (status, body) = server.get(&format!("/api/v1/query?query={}", e2e::url_encode(promql)), Some(tenant));
    assert_eq!(status, 200, "{promql}: {body}");
    assert_eq!(body["data"]["resultType"], "vector", "{promql}: {body}");
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (labels, r["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

/// The values of `promql` keyed by the value of `label` (`-` where the series lacks it).
fn by(server: &Server, tenant: &str, label: &str, promql: &str) -> BTreeMap<String, f64> {
    query(server, tenant, promql)
        .into_iter()
        .map(|(labels, v)| (labels.get(label).cloned().unwrap_or_else(|| "-".into()), v))
        .collect()
}

/// The one value of `promql`, if it has one.
fn scalar(server: &Server, tenant: &str, promql: &str) -> Option<f64> {
    let result = query(server, tenant, promql);
    assert!(result.len() <= 1, "{promql}: {result:?}");
    result.first().map(|(_, v)| *v)
}

/// Polls until `promql` is `want`.
fn wait_for(server: &Server, tenant: &str, promql: &str, want: f64) {
    let got = eventually(Duration::from_secs(60), || (scalar(server, tenant, promql) == Some(want)).then_some(()));
    assert!(got.is_some(), "{promql} never became {want}: {:?}", scalar(server, tenant, promql));
}

/// The stored points of metric `name` of `tenant`.
fn points(server: &Server, tenant: &str, name: &str) -> Vec<Value> {
    let (status, body) =
        server.get(&format!("/api/v1/metrics/points?name={}&limit=100000", e2e::url_encode(name)), Some(tenant));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["truncated"], false);
    body["points"].as_array().unwrap().clone()
}

/// Each series' newest point, by its `span.name`, `status.code` and `http.route` attributes.
fn newest(points: &[Value]) -> BTreeMap<(String, String, String), Value> {
    let mut out: BTreeMap<(String, String, String), Value> = BTreeMap::new();
    for p in points {
        let a = &p["attributes"];
        let text = |k: &str| a[k].as_str().unwrap_or("-").to_string();
        let key = (text("span.name"), text("status.code"), text("http.route"));
        let newer = out.get(&key).is_none_or(|q| q["time_unix_nano"].as_u64() < p["time_unix_nano"].as_u64());
        if newer {
            out.insert(key, p.clone());
        }
    }
    out
}

fn close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!((actual - expected).abs() <= tolerance, "{what}: {actual}, expected {expected} ± {tolerance}");
}

const ITEMS: &str = "/items/{id}";

#[test]
fn python_spans_become_span_metric_series_that_promql_and_the_points_api_read() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "500ms");
    let data = dir.path().join("data");
    let server = start(&data, &config);

    // Batch A. Counted: SERVER and CONSUMER spans; not counted: CLIENT and INTERNAL ones.
    let batch_a = [
        group("GET /items/{id}", "server", Some(ITEMS), "unset", 30, 20),
        group("POST /orders", "server", Some("/orders"), "ok", 120, 5),
        group("POST /orders", "server", Some("/orders"), "error", 120, 5),
        group("GET inventory", "client", Some(ITEMS), "unset", 10, 10),
        group("load item", "internal", None, "unset", 5, 5),
        group("process order", "consumer", None, "unset", 50, 4),
    ];
    send(&python, &server, "http", "team-a", "checkout", &batch_a);
    send(
        &python,
        &server,
        "grpc",
        "team-b",
        "billing",
        &[group("GET /invoices", "server", Some("/invoices"), "ok", 10, 7)],
    );
    wait_for(&server, "team-a", "sum(traces_span_metrics_calls_total)", 34.0);
    wait_for(&server, "team-b", "sum(traces_span_metrics_calls_total)", 7.0);
    // A few flushes of batch A's values before batch B, so `rate` has samples on both sides.
    std::thread::sleep(Duration::from_secs(2));

    // Batch B: the items route's P95 within it is 0.6 s (the 95th of 100 spans, 90 of them at
    // 30 ms in (0.01, 0.05], 10 at 700 ms in (0.4, 0.8]: 0.4 + 0.4 × 5/10).
    let batch_b = [
        group("GET /items/{id}", "server", Some(ITEMS), "unset", 30, 90),
        group("GET /items/{id}", "server", Some(ITEMS), "unset", 700, 10),
        group("POST /orders", "server", Some("/orders"), "ok", 120, 10),
        group("POST /orders", "server", Some("/orders"), "error", 120, 10),
    ];
    send(&python, &server, "grpc", "team-a", "checkout", &batch_b);
    wait_for(&server, "team-a", "sum(traces_span_metrics_calls_total)", 154.0);
    std::thread::sleep(Duration::from_secs(2));

    // Exact cumulative counts, by route, status and kind.
    let expect = |pairs: &[(&str, f64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>();
    assert_eq!(
        by(&server, "team-a", "http_route", "sum by (http_route) (traces_span_metrics_calls_total)"),
        expect(&[("-", 4.0), ("/items/{id}", 120.0), ("/orders", 30.0)])
    );
    assert_eq!(
        by(&server, "team-a", "status_code", "sum by (status_code) (traces_span_metrics_calls_total)"),
        expect(&[("STATUS_CODE_ERROR", 15.0), ("STATUS_CODE_OK", 15.0), ("STATUS_CODE_UNSET", 124.0)])
    );
    assert_eq!(
        by(&server, "team-a", "span_kind", "sum by (span_kind) (traces_span_metrics_calls_total)"),
        expect(&[("SPAN_KIND_CONSUMER", 4.0), ("SPAN_KIND_SERVER", 150.0)])
    );
    // One series' full label set: the connector's labels, the dimensions, `job` from the resource.
    let errors = query(&server, "team-a", r#"traces_span_metrics_calls_total{status_code="STATUS_CODE_ERROR"}"#);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let labels: Vec<(&str, &str)> = errors[0].0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        labels,
        [
            ("__name__", "traces_span_metrics_calls_total"),
            ("deployment_environment", "e2e"),
            ("http_route", "/orders"),
            ("job", "checkout"),
            ("service_name", "checkout"),
            ("service_version", "1.4.2"),
            ("span_kind", "SPAN_KIND_SERVER"),
            ("span_name", "POST /orders"),
            ("status_code", "STATUS_CODE_ERROR"),
        ]
    );
    assert_eq!(errors[0].1, 15.0);

    // Rates: batch B's increase per route over the window (extrapolated alike for both routes,
    // whose series were written at the same times); the error ratio of /orders.
    let rates = by(&server, "team-a", "http_route", "sum by (http_route) (rate(traces_span_metrics_calls_total[1m]))");
    let (items, orders) = (rates[ITEMS], rates["/orders"]);
    assert!(items > 0.0 && orders > 0.0, "{rates:?}");
    close(items / orders, 100.0 / 20.0, 0.1, "items / orders request rate");
    let ratio = scalar(
        &server,
        "team-a",
        r#"sum(rate(traces_span_metrics_calls_total{http_route="/orders",status_code="STATUS_CODE_ERROR"}[1m])) / sum(rate(traces_span_metrics_calls_total{http_route="/orders"}[1m]))"#,
    )
    .unwrap();
    close(ratio, 0.5, 0.01, "/orders error ratio");
    // P95 of the items route: over batch B by rate, over everything from the cumulative buckets
    // (120 spans, the 114th in (0.4, 0.8]: 0.4 + 0.4 × 4/10).
    let p95 = scalar(
        &server,
        "team-a",
        r#"histogram_quantile(0.95, sum by (le) (rate(traces_span_metrics_duration_seconds_bucket{http_route="/items/{id}"}[1m])))"#,
    )
    .unwrap();
    close(p95, 0.6, 0.02, "P95 by rate");
    let p95_all = scalar(
        &server,
        "team-a",
        r#"histogram_quantile(0.95, sum by (le) (traces_span_metrics_duration_seconds_bucket{http_route="/items/{id}"}))"#,
    )
    .unwrap();
    close(p95_all, 0.56, 1e-9, "P95 of the cumulative buckets");
    let sum = scalar(&server, "team-a", r#"sum(traces_span_metrics_duration_seconds_sum{http_route="/items/{id}"})"#);
    close(sum.unwrap(), 110.0 * 0.03 + 10.0 * 0.7, 1e-9, "duration sum");
    assert_eq!(
        scalar(&server, "team-a", r#"sum(traces_span_metrics_duration_seconds_count{http_route="/items/{id}"})"#),
        Some(120.0)
    );

    // Tenants: each sees its own service only.
    assert_eq!(
        by(&server, "team-a", "service_name", "sum by (service_name) (traces_span_metrics_calls_total)"),
        expect(&[("checkout", 154.0)])
    );
    assert_eq!(
        by(&server, "team-b", "service_name", "sum by (service_name) (traces_span_metrics_calls_total)"),
        expect(&[("billing", 7.0)])
    );
    assert_eq!(scalar(&server, "anonymous", "sum(traces_span_metrics_calls_total)"), None);

    // The stored points: cumulative from one start time per series, exact buckets.
    let durations = points(&server, "team-a", "traces.span.metrics.duration");
    let latest = newest(&durations);
    let items = &latest[&("GET /items/{id}".to_string(), "STATUS_CODE_UNSET".to_string(), ITEMS.to_string())];
    assert_eq!(items["service_name"], "checkout");
    assert_eq!(items["service_version"], "1.4.2");
    assert_eq!(items["kind"], "histogram");
    assert_eq!(items["unit"], "s");
    assert_eq!(items["temporality"], 2);
    assert_eq!(items["count"], 120);
    close(items["sum"].as_f64().unwrap(), 10.3, 1e-9, "stored sum");
    let bounds: Vec<f64> = serde_json::from_value(items["detail"]["explicitBounds"].clone()).unwrap();
    assert_eq!(bounds, [0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0]);
    let counts: Vec<u64> = items["detail"]["bucketCounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok()).unwrap())
        .collect();
    let mut expected = vec![0u64; 17];
    (expected[5], expected[9]) = (110, 10);
    assert_eq!(counts, expected);
    let starts: BTreeSet<u64> = durations
        .iter()
        .filter(|p| p["attributes"]["http.route"] == ITEMS)
        .map(|p| p["start_time_unix_nano"].as_u64().unwrap())
        .collect();
    assert_eq!(starts.len(), 1, "one start time for the series until a restart: {starts:?}");
    let calls = points(&server, "team-b", "traces.span.metrics.calls");
    assert!(!calls.is_empty());
    assert!(calls.iter().all(|p| p["service_name"] == "billing"), "team-b's points are billing's only");

    // A crash: every written point comes back from the write-ahead log once, none twice.
    let before = points(&server, "team-a", "traces.span.metrics.calls");
    let old_start = *starts.iter().next().unwrap();
    server.kill();
    let server = start(&data, &config);
    let after = points(&server, "team-a", "traces.span.metrics.calls");
    let identity = |p: &Value| (p["attributes"].to_string(), p["time_unix_nano"].as_u64().unwrap());
    let after_ids: BTreeMap<_, _> = after.iter().map(|p| (identity(p), p["value_int"].clone())).collect();
    assert_eq!(after_ids.len(), after.len(), "a point is stored twice after the replay");
    for p in &before {
        assert_eq!(after_ids.get(&identity(p)), Some(&p["value_int"]), "lost or changed by the restart: {p}");
    }
    let finals: BTreeMap<String, i64> = newest(&after)
        .into_iter()
        .map(|((name, status, _), p)| (format!("{name} {status}"), p["value_int"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        finals,
        [
            ("GET /items/{id} STATUS_CODE_UNSET", 120),
            ("POST /orders STATUS_CODE_ERROR", 15),
            ("POST /orders STATUS_CODE_OK", 15),
            ("process order STATUS_CODE_UNSET", 4),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    );
    assert_eq!(
        by(&server, "team-a", "http_route", "sum by (http_route) (traces_span_metrics_calls_total)"),
        expect(&[("-", 4.0), ("/items/{id}", 120.0), ("/orders", 30.0)]),
        "the replayed points answer PromQL as before"
    );

    // After the restart a series starts again from zero, with a new start time: a counter
    // reset, which `increase` reads as the new spans only.
    send(
        &python,
        &server,
        "http",
        "team-a",
        "checkout",
        &[group("GET /items/{id}", "server", Some(ITEMS), "unset", 30, 5)],
    );
    wait_for(&server, "team-a", r#"sum(traces_span_metrics_calls_total{http_route="/items/{id}"})"#, 5.0);
    let latest = newest(&points(&server, "team-a", "traces.span.metrics.calls"));
    let items = &latest[&("GET /items/{id}".to_string(), "STATUS_CODE_UNSET".to_string(), ITEMS.to_string())];
    assert_eq!(items["value_int"], 5);
    assert!(items["start_time_unix_nano"].as_u64().unwrap() > old_start, "{items}");
    let increase =
        scalar(&server, "team-a", r#"sum(increase(traces_span_metrics_calls_total{http_route="/items/{id}"}[1m]))"#);
    assert!(increase.is_some_and(|v| v >= 5.0), "the reset is read as an increase of the new spans: {increase:?}");

    // The span metrics' own figures are on `/metrics`: the 5 spans counted since the restart.
    let (status, text) = server.get_text("/metrics");
    assert_eq!(status, 200);
    assert!(text.contains("\nslo_gate_span_metrics_spans_total 5\n"), "{text}");
    assert!(text.contains("# TYPE slo_gate_span_metrics_series gauge"), "{text}");
}

#[test]
fn a_clean_stop_writes_the_values_counted_since_the_last_flush() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    // No flush would come for an hour: only the one at shutdown writes these values.
    let config = config(dir.path(), "1h");
    let data = dir.path().join("data");
    let server = start(&data, &config);
    send(
        &python,
        &server,
        "http",
        "anonymous",
        "checkout",
        &[group("GET /cart", "server", Some("/cart"), "ok", 40, 12)],
    );
    assert_eq!(server.items("traces", None), 12);
    assert!(points(&server, "anonymous", "traces.span.metrics.calls").is_empty(), "flushed before the interval");
    assert!(server.stop().success());
    let server = start(&data, &config);
    let calls = points(&server, "anonymous", "traces.span.metrics.calls");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["value_int"], 12);
    assert_eq!(calls[0]["attributes"]["http.route"], "/cart");
    assert_eq!(scalar(&server, "anonymous", "sum(traces_span_metrics_calls_total)"), Some(12.0));
}
