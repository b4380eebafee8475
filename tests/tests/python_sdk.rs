//! The real OpenTelemetry Python SDK and its OTLP exporters (gRPC and HTTP/protobuf) against
//! the real collector.
//!
//! `tests/python/otlp_send.py` sends a known set of spans, metrics and log records and prints
//! a JSON manifest of exactly what it sent; these tests read all of it back through the API
//! and compare every id, attribute, value and count, then restart the collector on the same
//! data directory and compare again. The Python side needs a virtualenv with
//! `tests/python/requirements.txt` installed (see [`e2e::python::INSTALL`]); without it the tests fail
//! rather than skip, so a CI run without Python cannot pass silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::Server;
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    e2e::manifest_dir().join("..")
}

/// The interpreter with the SDK and both exporters.
fn python() -> PathBuf {
    e2e::python::interpreter(
        "opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http",
    )
}

#[derive(Debug, Clone, Copy)]
enum Protocol {
    Grpc,
    Http,
}

/// One run of `otlp_send.py` against `endpoint`; its manifest.
fn send(
    python: &Path,
    protocol: Protocol,
    endpoint: &str,
    service: &str,
    version: &str,
    tenant: Option<&str>,
) -> Value {
    let protocol = match protocol {
        Protocol::Grpc => "grpc",
        Protocol::Http => "http",
    };
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("tests/python/otlp_send.py"))
        .args(["--protocol", protocol, "--endpoint", endpoint, "--service", service, "--version", version])
        // Both exporters are told to compress: real deployments usually do, and it is the
        // path a server most easily gets wrong.
        .args(["--compression", "gzip"]);
    if let Some(t) = tenant {
        cmd.args(["--tenant", t]);
    }
    // OTEL_* variables from the environment would change what the SDK sends (endpoint,
    // temporality, resource, headers): the manifest describes the SDK defaults.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().expect("run otlp_send.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "otlp_send.py --protocol {protocol} failed ({}):\n{stderr}", out.status);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "otlp_send.py printed no JSON manifest ({e}):\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Sends the Python SDK's data over `protocol` as `tenant`, checks all of it through the API,
/// restarts the collector on the same data directory and checks it all again.
fn round_trip(protocol: Protocol, service: &str, version: &str, tenant: Option<&str>) {
    let python = python();
    let dir = tempfile::tempdir().expect("temp data dir");
    // What is stored must be exactly what the SDK sent, so the metric points the collector
    // derives from spans (span metrics, `tests/tests/span_metrics.rs`) are turned off here.
    let config = dir.path().join("no-span-metrics.toml");
    std::fs::write(&config, "[span_metrics]\nenabled = false\n").expect("write the config");
    let args = ["--config", config.to_str().expect("a UTF-8 path")];
    let server = Server::start(dir.path(), &args);
    let endpoint = match protocol {
        Protocol::Grpc => server.grpc_url(),
        Protocol::Http => server.http_url(""),
    };
    let manifest = send(&python, protocol, &endpoint, service, version, tenant);
    assert_eq!(manifest["service"], json!({"name": service, "version": version}));

    // A successful export means the collector accepted the data; it may become readable a
    // moment later, so wait for the counts before checking the contents.
    let expected = expected_items(&manifest);
    let seen = e2e::eventually(Duration::from_secs(15), || {
        let now: BTreeMap<&str, u64> = expected.keys().map(|s| (*s, server.items(s, tenant))).collect();
        (now == expected).then_some(())
    });
    if seen.is_none() {
        let now: BTreeMap<&str, u64> = expected.keys().map(|s| (*s, server.items(s, tenant))).collect();
        panic!("stored items never reached what was sent: expected {expected:?}, stored {now:?}");
    }
    check_all(&server, &manifest, tenant);
    if tenant.is_some() {
        check_invisible(&server, &manifest, None);
    }

    let status = server.stop();
    assert!(status.success(), "slo-gate did not exit cleanly on SIGTERM: {status}");
    // Everything must come back from the data directory alone (WAL replay or parts).
    let server = Server::start(dir.path(), &args);
    check_all(&server, &manifest, tenant);
    if tenant.is_some() {
        check_invisible(&server, &manifest, None);
    }
}

#[test]
fn python_grpc_exporters_round_trip() {
    round_trip(Protocol::Grpc, "py-grpc-svc", "1.2.3", None);
}

#[test]
fn python_http_exporters_round_trip() {
    // A tenant of its own: the default tenant must see none of it.
    round_trip(Protocol::Http, "py-http-svc", "2.0.1", Some("team-python"));
}

/// Items per signal the store must hold: spans, metric points (every point of every export),
/// log records.
fn expected_items(manifest: &Value) -> BTreeMap<&'static str, u64> {
    let spans = array(&manifest["traces"]).iter().map(|t| array(&t["spans"]).len() as u64).sum();
    BTreeMap::from([
        ("traces", spans),
        ("metrics", u64_of(&manifest["exports"]["metrics"]["items"])),
        ("logs", array(&manifest["logs"]).len() as u64),
        ("profiles", 0),
    ])
}

fn check_all(server: &Server, manifest: &Value, tenant: Option<&str>) {
    let expected = expected_items(manifest);
    for (signal, items) in &expected {
        assert_eq!(server.items(signal, tenant), *items, "stored {signal} items");
    }
    check_stats_times(server, manifest, tenant);
    check_services(server, manifest, tenant);
    for t in array(&manifest["traces"]) {
        check_trace(server, manifest, t, tenant);
    }
    for m in array(&manifest["metrics"]) {
        check_metric(server, manifest, m, tenant);
    }
    check_logs(server, manifest, tenant);
}

/// `oldest`/`newest` of traces and logs are the earliest and latest span start and record
/// time sent (metric point times are the SDK's collection times, checked per point).
fn check_stats_times(server: &Server, manifest: &Value, tenant: Option<&str>) {
    let (status, stats) = server.get("/api/v1/stats", tenant);
    assert_eq!(status, 200, "{stats}");
    let starts: Vec<u64> = array(&manifest["traces"])
        .iter()
        .flat_map(|t| array(&t["spans"]).iter().map(|s| u64_of(&s["start_time_unix_nano"])))
        .collect();
    let log_times: Vec<u64> = array(&manifest["logs"]).iter().map(|l| u64_of(&l["time_unix_nano"])).collect();
    for (signal, times) in [("traces", starts), ("logs", log_times)] {
        let s = &stats["signals"][signal];
        assert_eq!(u64_of(&s["oldest_unix_nano"]), *times.iter().min().unwrap(), "oldest {signal}: {stats}");
        assert_eq!(u64_of(&s["newest_unix_nano"]), *times.iter().max().unwrap(), "newest {signal}: {stats}");
    }
}

fn check_services(server: &Server, manifest: &Value, tenant: Option<&str>) {
    let (status, body) = server.get("/api/v1/services", tenant);
    assert_eq!(status, 200, "{body}");
    let service = &manifest["service"];
    assert_eq!(
        body["services"],
        json!([{"name": service["name"], "versions": [service["version"]]}]),
        "services of tenant {tenant:?}"
    );
}

/// One trace: its resource, scope, and every span field the SDK sent.
fn check_trace(server: &Server, manifest: &Value, expected: &Value, tenant: Option<&str>) {
    let trace_id = str_of(&expected["trace_id"]);
    let (status, data) = server.get(&format!("/api/v1/traces/{trace_id}"), tenant);
    assert_eq!(status, 200, "trace {trace_id}: {data}");
    let mut spans: BTreeMap<String, &Value> = BTreeMap::new();
    for rs in array(&data["resourceSpans"]) {
        assert_eq!(
            plain_attributes(&rs["resource"]["attributes"]),
            manifest["resource"],
            "resource of trace {trace_id}"
        );
        for ss in array(&rs["scopeSpans"]) {
            assert_eq!(ss["scope"]["name"], manifest["scopes"]["traces"], "scope of trace {trace_id}");
            assert_eq!(ss["scope"]["version"], manifest["scopes"]["version"], "scope of trace {trace_id}");
            for span in array(&ss["spans"]) {
                let id = str_of(&span["spanId"]).to_string();
                assert!(spans.insert(id.clone(), span).is_none(), "span {id} twice in trace {trace_id}: {data}");
            }
        }
    }
    let sent = array(&expected["spans"]);
    assert_eq!(spans.len(), sent.len(), "spans of trace {trace_id}: {data}");
    for want in sent {
        let id = str_of(&want["span_id"]);
        let got = spans.get(id).unwrap_or_else(|| panic!("span {id} missing from trace {trace_id}: {data}"));
        let at = format!("span {id} ({}) of trace {trace_id}", want["name"]);
        assert_eq!(got["traceId"], trace_id, "{at}: traceId");
        // A root span has no parent: OTLP/JSON writes an empty id or leaves the field out.
        let parent = got["parentSpanId"].as_str().unwrap_or("");
        assert_eq!(parent, want["parent_span_id"].as_str().unwrap_or(""), "{at}: parentSpanId");
        assert_eq!(got["name"], want["name"], "{at}: name");
        assert_eq!(got["kind"], want["kind"], "{at}: kind");
        assert_eq!(u64_of(&got["startTimeUnixNano"]), u64_of(&want["start_time_unix_nano"]), "{at}: start");
        assert_eq!(u64_of(&got["endTimeUnixNano"]), u64_of(&want["end_time_unix_nano"]), "{at}: end");
        assert_eq!(plain_attributes(&got["attributes"]), want["attributes"], "{at}: attributes");
        // An unset status may be left out entirely.
        let code = got["status"]["code"].as_i64().unwrap_or(0);
        let message = got["status"]["message"].as_str().unwrap_or("");
        assert_eq!(
            (code, message),
            (i64_of(&want["status"]["code"]), str_of(&want["status"]["message"])),
            "{at}: status"
        );

        let events: Vec<Value> = array(&got["events"])
            .iter()
            .map(|e| {
                json!({
                    "name": e["name"],
                    "time_unix_nano": u64_of(&e["timeUnixNano"]),
                    "attributes": plain_attributes(&e["attributes"]),
                })
            })
            .collect();
        assert_eq!(Value::from(events), want["events"], "{at}: events");
        let links: Vec<Value> = array(&got["links"])
            .iter()
            .map(|l| json!({"trace_id": l["traceId"], "span_id": l["spanId"], "attributes": plain_attributes(&l["attributes"])}))
            .collect();
        assert_eq!(Value::from(links), want["links"], "{at}: links");
    }
}

/// One metric: every series it had, each with exactly one point per export. The SDK's
/// periodic reader sends cumulative values and, since the script flushes once midway and
/// once at shutdown, the collector gets each series twice (the first time with the values
/// recorded so far). The totals in the manifest are what the last point (highest time) of
/// each series must say.
fn check_metric(server: &Server, manifest: &Value, metric: &Value, tenant: Option<&str>) {
    let name = str_of(&metric["name"]);
    let service = str_of(&manifest["service"]["name"]);
    let (status, body) = server.get(&format!("/api/v1/metrics/points?name={name}&service={service}"), tenant);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["truncated"], false, "points of {name}: {body}");
    let exports = u64_of(&manifest["exports"]["metrics"]["calls"]);
    let (started, finished) = (u64_of(&manifest["started_unix_nano"]), u64_of(&manifest["finished_unix_nano"]));

    let mut series: Vec<(Value, Vec<&Value>)> = Vec::new();
    for p in array(&body["points"]) {
        let at = format!("point of {name}: {p}");
        assert_eq!(p["name"], metric["name"], "{at}");
        assert_eq!(p["kind"], metric["kind"], "{at}");
        assert_eq!(p["unit"], metric["unit"], "{at}");
        assert_eq!(p["description"], metric["description"], "{at}");
        assert_eq!(p["temporality"], metric["temporality"], "{at}");
        assert_eq!(p["is_monotonic"], metric["is_monotonic"], "{at}");
        assert_eq!(p["service_name"], manifest["service"]["name"], "{at}");
        assert_eq!(p["service_version"], manifest["service"]["version"], "{at}");
        assert_eq!(p["resource"], manifest["resource"], "{at}");
        let time = u64_of(&p["time_unix_nano"]);
        assert!((started..=finished).contains(&time), "{at}: time outside the script's run [{started}, {finished}]");
        match series.iter_mut().find(|(attrs, _)| *attrs == p["attributes"]) {
            Some((_, points)) => points.push(p),
            None => series.push((p["attributes"].clone(), vec![p])),
        }
    }
    let want_points = array(&metric["points"]);
    assert_eq!(series.len(), want_points.len(), "series of {name}: {body}");

    for want in want_points {
        let attrs = &want["attributes"];
        let at = format!("{name} {attrs}");
        let (_, points) =
            series.iter_mut().find(|(a, _)| a == attrs).unwrap_or_else(|| panic!("{at}: no such series in {body}"));
        assert_eq!(points.len() as u64, exports, "{at}: one point per export expected: {points:?}");
        points.sort_by_key(|p| u64_of(&p["time_unix_nano"]));
        let last = points.last().expect("at least one point");
        // Cumulative series keep one start time across exports.
        if metric["temporality"] == 2 {
            for p in points.iter() {
                assert_eq!(p["start_time_unix_nano"], last["start_time_unix_nano"], "{at}: start time moved");
            }
        }
        match str_of(&metric["kind"]) {
            "sum" => {
                let total = i64_of(&want["value_int"]);
                assert_eq!(last["value_int"], total, "{at}: last value_int: {last}");
                assert_eq!(last["value"].as_f64(), Some(total as f64), "{at}: last value: {last}");
                let values: Vec<i64> = points.iter().map(|p| i64_of(&p["value_int"])).collect();
                assert!(values.is_sorted(), "{at}: a monotonic cumulative sum went down: {values:?}");
            }
            "gauge" => {
                assert_eq!(last["value"].as_f64(), want["value"].as_f64(), "{at}: last value: {last}");
                assert_eq!(last["value_int"], Value::Null, "{at}: a double gauge has no integer value: {last}");
            }
            "histogram" => {
                assert_eq!(last["count"], want["count"], "{at}: count: {last}");
                for field in ["sum", "min", "max"] {
                    assert_eq!(last[field].as_f64(), want[field].as_f64(), "{at}: {field}: {last}");
                }
                let bounds: Vec<f64> = array(&last["detail"]["explicitBounds"]).iter().map(f64_of).collect();
                let want_bounds: Vec<f64> = array(&want["explicit_bounds"]).iter().map(f64_of).collect();
                assert_eq!(bounds, want_bounds, "{at}: explicit bounds: {last}");
                let counts: Vec<u64> = array(&last["detail"]["bucketCounts"]).iter().map(u64_of).collect();
                let want_counts: Vec<u64> = array(&want["bucket_counts"]).iter().map(u64_of).collect();
                assert_eq!(counts, want_counts, "{at}: bucket counts: {last}");
            }
            other => panic!("manifest has a metric kind this test does not know: {other}"),
        }
    }
}

/// Every log record, matched by body; and the one sent inside a span, found by its trace id.
fn check_logs(server: &Server, manifest: &Value, tenant: Option<&str>) {
    let service = str_of(&manifest["service"]["name"]);
    let (status, body) = server.get(&format!("/api/v1/logs?service={service}"), tenant);
    assert_eq!(status, 200, "{body}");
    let got = array(&body["logs"]);
    let sent = array(&manifest["logs"]);
    assert_eq!(got.len(), sent.len(), "log records: {body}");
    for want in sent {
        let record = got
            .iter()
            .find(|r| r["body"] == want["body"])
            .unwrap_or_else(|| panic!("no log record with body {}: {body}", want["body"]));
        let at = format!("log record {}", want["body"]);
        for field in ["severity_number", "severity_text", "attributes", "trace_id", "span_id", "scope_name"] {
            assert_eq!(record[field], want[field], "{at}: {field}: {record}");
        }
        assert_eq!(u64_of(&record["time_unix_nano"]), u64_of(&want["time_unix_nano"]), "{at}: time: {record}");
        assert_eq!(record["service_name"], manifest["service"]["name"], "{at}: {record}");
        assert_eq!(record["service_version"], manifest["service"]["version"], "{at}: {record}");
        assert_eq!(record["resource"], manifest["resource"], "{at}: resource");
    }

    let in_span: Vec<&Value> = sent.iter().filter(|l| !l["trace_id"].is_null()).collect();
    assert!(!in_span.is_empty(), "the manifest has no log record with trace context");
    for want in in_span {
        let trace_id = str_of(&want["trace_id"]);
        let (status, body) = server.get(&format!("/api/v1/logs?service={service}&trace_id={trace_id}"), tenant);
        assert_eq!(status, 200, "{body}");
        let bodies: Vec<&Value> = array(&body["logs"]).iter().map(|r| &r["body"]).collect();
        assert_eq!(bodies, vec![&want["body"]], "logs of trace {trace_id}: {body}");
    }
}

/// What a tenant other than the sender's sees: nothing at all.
fn check_invisible(server: &Server, manifest: &Value, tenant: Option<&str>) {
    for signal in ["traces", "metrics", "logs", "profiles"] {
        assert_eq!(server.items(signal, tenant), 0, "{signal} items leaked to tenant {tenant:?}");
    }
    let (status, body) = server.get("/api/v1/services", tenant);
    assert_eq!((status, &body["services"]), (200, &json!([])), "services leaked to tenant {tenant:?}: {body}");
    for t in array(&manifest["traces"]) {
        let trace_id = str_of(&t["trace_id"]);
        let (status, body) = server.get(&format!("/api/v1/traces/{trace_id}"), tenant);
        assert_eq!(status, 404, "trace {trace_id} visible to tenant {tenant:?}: {body}");
    }
    let service = str_of(&manifest["service"]["name"]);
    for m in array(&manifest["metrics"]) {
        let (status, body) =
            server.get(&format!("/api/v1/metrics/points?name={}&service={service}", str_of(&m["name"])), tenant);
        assert_eq!((status, &body["points"]), (200, &json!([])), "metric points leaked to tenant {tenant:?}");
    }
    let (status, body) = server.get(&format!("/api/v1/logs?service={service}"), tenant);
    assert_eq!((status, &body["logs"]), (200, &json!([])), "log records leaked to tenant {tenant:?}");
}

/// An OTLP/JSON `KeyValue` list as one plain object, the form the manifest uses.
fn plain_attributes(list: &Value) -> Value {
    Value::Object(
        array(list).iter().map(|kv| (str_of(&kv["key"]).to_string(), plain_any_value(&kv["value"]))).collect(),
    )
}

/// An OTLP/JSON `AnyValue` as plain JSON. Integers may be strings (the protobuf JSON mapping
/// writes 64-bit integers as strings) or numbers; both are valid OTLP/JSON.
fn plain_any_value(v: &Value) -> Value {
    let obj = v.as_object().unwrap_or_else(|| panic!("AnyValue is not an object: {v}"));
    let (kind, inner) = obj.iter().next().unwrap_or_else(|| panic!("empty AnyValue: {v}"));
    match kind.as_str() {
        "stringValue" | "boolValue" | "doubleValue" => inner.clone(),
        "intValue" => json!(i64_of(inner)),
        "arrayValue" => array(&inner["values"]).iter().map(plain_any_value).collect(),
        "kvlistValue" => plain_attributes(&inner["values"]),
        other => panic!("AnyValue of a kind the Python SDK does not send here: {other}: {v}"),
    }
}

fn array(v: &Value) -> &[Value] {
    match v {
        Value::Null => &[],
        Value::Array(a) => a,
        other => panic!("expected an array, got {other}"),
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// A 64-bit integer written as a JSON number or as a decimal string.
fn u64_of(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("expected an unsigned integer, got {v}"))
}

fn i64_of(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("expected an integer, got {v}"))
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("expected a number, got {v}"))
}
