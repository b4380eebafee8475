//! `deploy/grafana/`: the datasource provisioning a user copies into Grafana (Tempo, Pyroscope,
//! Prometheus). Read with a YAML
//! parser we did not write (PyYAML), checked for what Grafana needs of it (the built-in types,
//! URLs without a trailing slash, traces-to-profiles naming the Pyroscope datasource and a
//! CPU profile type slo-gate stores), and then each datasource's "Save & test" request is sent
//! to a running collector exactly where the file points, with the header the file configures.

use std::process::Command;

use e2e::Server;
use serde_json::Value;

/// The provisioning file as JSON.
fn provisioning() -> Value {
    let path = e2e::manifest_dir().join("../deploy/grafana/provisioning/datasources/slo-gate.yaml");
    let python = e2e::python::interpreter("yaml");
    let out = Command::new(python)
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(&path)
        .output()
        .expect("run PyYAML");
    assert!(out.status.success(), "{} is not YAML: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("PyYAML's JSON")
}

fn datasource<'a>(file: &'a Value, kind: &str) -> &'a Value {
    let list = file["datasources"].as_array().expect("a `datasources` list");
    let found: Vec<&Value> = list.iter().filter(|d| d["type"] == kind).collect();
    assert_eq!(found.len(), 1, "one datasource of type {kind}: {file:#}");
    found[0]
}

/// The header a datasource sends (`httpHeaderName1` / `httpHeaderValue1`).
fn header(ds: &Value) -> (String, String) {
    let name = ds["jsonData"]["httpHeaderName1"].as_str().expect("httpHeaderName1").to_string();
    let value = ds["secureJsonData"]["httpHeaderValue1"].as_str().expect("httpHeaderValue1").to_string();
    (name, value)
}

#[test]
fn the_provisioned_datasources_point_at_endpoints_that_answer() {
    let file = provisioning();
    assert_eq!(file["apiVersion"], 1);
    let tempo = datasource(&file, "tempo");
    let pyroscope = datasource(&file, "grafana-pyroscope-datasource");
    let prometheus = datasource(&file, "prometheus");
    assert_eq!(prometheus["jsonData"]["httpMethod"], "POST", "Grafana's default method, spelled out");
    for ds in [tempo, pyroscope, prometheus] {
        let url = ds["url"].as_str().expect("url");
        // Grafana appends `/api/...` and `/querier.v1...` as text: a trailing slash doubles it.
        assert!(!url.ends_with('/'), "{url} ends with a slash");
        assert_eq!(url, "http://127.0.0.1:4040", "slo-gate serve's default --api address");
        assert_eq!(header(ds).0, "X-Scope-OrgID");
    }
    let to_profiles = &tempo["jsonData"]["tracesToProfiles"];
    assert_eq!(to_profiles["datasourceUid"], pyroscope["uid"], "traces to profiles names the Pyroscope datasource");
    let profile_type = to_profiles["profileTypeId"].as_str().expect("profileTypeId");
    assert_eq!(
        profile_type.parse::<analyzer::pprof::ProfileTypeId>().map(|t| t.to_string()).as_deref(),
        Ok(analyzer::pprof::profile_type::CPU),
        "the CPU profile type slo-gate stores from Go's CPU profiles"
    );

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // Where the file points, on this test's port.
    let at = |ds: &Value, path: &str| {
        format!("{}{path}", ds["url"].as_str().unwrap().replace("127.0.0.1:4040", &server.api.to_string()))
    };
    let client = reqwest::blocking::Client::new();

    // Tempo's Save & test (`GET /api/echo`) and its init (`/api/status/buildinfo`, `version`).
    let (name, value) = header(tempo);
    let echo = client.get(at(tempo, "/api/echo")).header(&name, &value).send().expect("echo");
    assert_eq!(echo.status(), 200);
    assert_eq!(echo.text().unwrap().trim(), "echo");
    let info: Value =
        client.get(at(tempo, "/api/status/buildinfo")).header(&name, &value).send().unwrap().json().unwrap();
    assert!(info["version"].as_str().is_some_and(|v| !v.is_empty()), "{info}");

    // Pyroscope's Save & test: `ProfileTypes` over Connect, as its client sends it.
    let (name, value) = header(pyroscope);
    let types = client
        .post(at(pyroscope, "/querier.v1.QuerierService/ProfileTypes"))
        .header(&name, &value)
        .header("Content-Type", "application/json")
        .header("Connect-Protocol-Version", "1")
        .body(r#"{"start":"1000","end":"4000"}"#)
        .send()
        .expect("ProfileTypes");
    assert_eq!(types.status(), 200);
    assert_eq!(types.headers()["content-type"], "application/json");
    let body: Value = types.json().unwrap();
    assert!(body.is_object(), "{body}");

    // Prometheus's Save & test: `1+1` at time=4 by POST form, then buildinfo without `features`.
    let (name, value) = header(prometheus);
    let health: Value = client
        .post(at(prometheus, "/api/v1/query"))
        .header(&name, &value)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("query=1%2B1&time=4")
        .send()
        .expect("health check")
        .json()
        .unwrap();
    assert_eq!(health, serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}}));
    let info: Value =
        client.get(at(prometheus, "/api/v1/status/buildinfo")).header(&name, &value).send().unwrap().json().unwrap();
    assert_eq!(info["data"]["version"], prometheus["jsonData"]["prometheusVersion"], "{info}");
    assert!(info["data"].get("features").is_none(), "{info}");
}

/// The OTLP histogram `http.server.request.duration` (semantic conventions) of one service
/// instance (one per version, as a release brings new pods) at 15 s steps over
/// `[from_ns, to_ns)`: routes `/a` (200s) and `/b` (200s and 500s).
fn http_server_durations(from_ns: u64, to_ns: u64, version: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Exemplar, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
        exemplar, metric,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        key_strindex: 0,
    };
    let mut points = Vec::new();
    for (route, status, per_step) in [("/a", "200", 10u64), ("/b", "200", 6), ("/b", "500", 2)] {
        let mut n = 0u64;
        let mut t = from_ns;
        while t < to_ns {
            n += per_step;
            // Buckets: ≤0.05 s, ≤0.25 s, ≤1 s, more; half fast, a third medium, the rest slow.
            let (fast, medium) = (n / 2, n / 3);
            points.push(HistogramDataPoint {
                attributes: vec![kv("http.route", route), kv("http.response.status_code", status)],
                start_time_unix_nano: from_ns,
                time_unix_nano: t,
                count: n,
                sum: Some(n as f64 * 0.2),
                bucket_counts: vec![fast, medium, n - fast - medium, 0],
                explicit_bounds: vec![0.05, 0.25, 1.0],
                // One slow request's trace per point.
                exemplars: vec![Exemplar {
                    time_unix_nano: t - 1_000_000_000,
                    trace_id: vec![(t / 15_000_000_000 % 251) as u8; 16],
                    span_id: vec![7; 8],
                    value: Some(exemplar::Value::AsDouble(0.8)),
                    ..Default::default()
                }],
                ..Default::default()
            });
            t += 15_000_000_000;
        }
    }
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "shop"),
                    kv("service.instance.id", &format!("pod-{version}")),
                    kv("service.version", version),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "http.server.request.duration".into(),
                    unit: "s".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    prost::Message::encode_to_vec(&request)
}

/// The samples of a Prometheus text exposition (`name{a="b"} value`), as a Prometheus agent
/// scraping it would remote-write them at `t_ms`.
fn exposition_to_series(text: &str, t_ms: i64) -> Vec<prom::remote_write::TimeSeries> {
    use prom::remote_write::{Label, Sample, TimeSeries};
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut pairs = vec![
            Label { name: "__name__".into(), value: name.into() },
            Label { name: "job".into(), value: "slo-gate".into() },
        ];
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("label=value");
            pairs.push(Label { name: k.into(), value: v.trim_matches('"').into() });
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line:?}"));
        out.push(TimeSeries { labels: pairs, samples: vec![Sample { value, timestamp: t_ms }], ..Default::default() });
    }
    out
}

/// `deploy/grafana/dashboards/*.json`: every panel queries the provisioned Prometheus
/// datasource, and every query (with Grafana's `$__rate_interval` and the dashboard's
/// `$service` variable filled in as Grafana fills them) parses and runs as a range query; the
/// HTTP and collector panels show data from OTLP metrics and from slo-gate's own `/metrics`
/// remote-written back, as a Prometheus agent would; the variable's `label_values` query runs.
#[test]
fn the_dashboard_panels_parse_and_run() {
    let file = provisioning();
    let uid = datasource(&file, "prometheus")["uid"].as_str().expect("uid").to_string();
    let path = e2e::manifest_dir().join("../deploy/grafana/dashboards/slo-gate-red.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = reqwest::blocking::Client::new();
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (from_s, to_s) = (now_s - 600, now_s);
    for (version, range) in [("v1", (from_s, from_s + 300)), ("v2", (from_s + 300, to_s))] {
        let body = http_server_durations(range.0 * 1_000_000_000, range.1 * 1_000_000_000, version);
        let sent = client
            .post(server.http_url("/v1/metrics"))
            .header("Content-Type", "application/x-protobuf")
            .body(body)
            .send()
            .expect("OTLP export");
        assert_eq!(sent.status(), 200);
    }
    for t in [to_s - 120, to_s - 60, to_s] {
        let (status, text) = server.get_text("/metrics");
        assert_eq!(status, 200);
        let request = prom::remote_write::WriteRequest {
            timeseries: exposition_to_series(&text, t as i64 * 1000),
            metadata: Vec::new(),
        };
        let sent = client
            .post(server.api_url("/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(prom::remote_write::encode(&request))
            .send()
            .expect("remote write");
        assert_eq!(sent.status(), 204, "{}", sent.text().unwrap_or_default());
    }

    // Grafana's metric help (`/api/v1/metadata`): the OTLP histogram's family, typed as the
    // translation types it; `limit`, `metric` as Prometheus 2.42 reads them.
    let metadata = |query: &str| -> (u16, Value) {
        let resp = client.get(server.api_url(&format!("/api/v1/metadata{query}"))).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap())
    };
    let family = "http_server_request_duration_seconds";
    assert_eq!(
        metadata(&format!("?metric={family}")).1["data"],
        serde_json::json!({family: [{"type": "histogram", "help": "", "unit": "seconds"}]})
    );
    assert!(metadata("").1["data"].get(family).is_some());
    assert_eq!(metadata("?limit=0").1["data"], serde_json::json!({}));
    assert_eq!(metadata("?metric=nothing_like_it").1["data"], serde_json::json!({}));
    let (status, refused) = metadata("?limit=many");
    assert_eq!((status, refused["errorType"].as_str()), (400, Some("bad_data")), "{refused}");

    // The `$service` variable: `label_values(target_info, job)` is a label-values request.
    let values: Value =
        client.get(server.api_url("/api/v1/label/job/values?match[]=target_info")).send().unwrap().json().unwrap();
    assert_eq!(values["data"], serde_json::json!(["shop"]), "{values}");

    let mut section = String::new();
    let mut ran = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default();
        if panel["type"] == "row" {
            section = title.to_string();
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], uid.as_str(), "{title}: the provisioned Prometheus datasource");
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["datasource"]["uid"], uid.as_str(), "{title}");
            let expr = target["expr"].as_str().expect("expr");
            let query = expr.replace("$__rate_interval", "1m").replace("$service", ".*");
            let form = format!("query={}&start={from_s}&end={to_s}&step=15", e2e::url_encode(&query));
            let answer: Value = client
                .post(server.api_url("/api/v1/query_range"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(answer["status"], "success", "{title}: {query}: {answer}");
            if target["exemplar"] == true {
                // Grafana's exemplar request for the same query and range.
                let exemplars: Value = client
                    .get(server.api_url(&format!(
                        "/api/v1/query_exemplars?query={}&start={from_s}&end={to_s}",
                        e2e::url_encode(&query)
                    )))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                let series = exemplars["data"].as_array().unwrap_or_else(|| panic!("{title}: {exemplars}"));
                assert!(!series.is_empty(), "{title}: no exemplars: {exemplars}");
                for s in series {
                    assert_eq!(s["seriesLabels"]["le"], "1", "the 0.8 s exemplars sit in the ≤1 s bucket: {s}");
                    let first = &s["exemplars"][0];
                    assert_eq!(first["labels"]["span_id"], "0707070707070707", "{s}");
                    assert_eq!(first["value"], "0.8", "{s}");
                    assert!(first["timestamp"].as_f64().is_some_and(|t| t >= from_s as f64 && t <= to_s as f64), "{s}");
                }
            }
            let result = answer["data"]["result"].as_array().expect("result");
            let has_values = result.iter().any(|s| {
                s["values"].as_array().is_some_and(|v| v.iter().any(|p| p[1].as_str().is_some_and(|x| x != "NaN")))
            });
            // Span metrics come from traces (not written here); the other panels show data.
            if !section.starts_with("Span metrics") {
                assert!(has_values, "{title}: {query} returned no values: {answer}");
            }
            ran += 1;
        }
    }
    assert!(ran >= 12, "{ran} queries");
}
