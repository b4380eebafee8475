//! Prometheus remote write into slo-gate and Grafana's Prometheus metadata requests
//! (`grafana-wire.md` §1: labels, label values and series by GET and POST form, buildinfo
//! without `features`, rules, metadata), with the bad input each gets and tenant isolation.

use std::time::{SystemTime, UNIX_EPOCH};

use e2e::Server;
use prom::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use serde_json::{Value, json};

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
        samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

/// POSTs a remote-write body; the status and the body text.
fn write(server: &Server, body: Vec<u8>, tenant: Option<&str>, encoding: &str) -> (u16, String) {
    let mut req = reqwest::blocking::Client::new()
        .post(server.api_url("/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if !encoding.is_empty() {
        req = req.header("Content-Encoding", encoding);
    }
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    let resp = req.send().expect("remote write");
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

/// POSTs a form to the API; the status and the JSON body.
fn post_form(server: &Server, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{}={}", e2e::url_encode(k), e2e::url_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let resp = reqwest::blocking::Client::new()
        .post(server.api_url(path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .expect("API request");
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().unwrap()).unwrap_or(Value::Null))
}

fn bad_data(answer: &(u16, Value), says: &str) {
    assert_eq!(answer.0, 400, "{}", answer.1);
    assert_eq!(answer.1["status"], "error", "{}", answer.1);
    assert_eq!(answer.1["errorType"], "bad_data", "{}", answer.1);
    let error = answer.1["error"].as_str().unwrap_or_default();
    assert!(error.contains(says), "{error:?} lacks {says:?}");
}

#[test]
fn remote_write_then_grafanas_metadata_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let request = WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "http_requests_total"), ("job", "api"), ("route", "/a")],
                &[(now_ms - 60_000, 1.0), (now_ms, 5.0)],
            ),
            series(&[("__name__", "http_requests_total"), ("job", "api"), ("route", "/b")], &[(now_ms, 2.0)]),
            series(&[("__name__", "up"), ("job", "node"), ("instance", "h:9100")], &[(now_ms, 1.0)]),
        ],
        metadata: vec![],
    };
    assert_eq!(write(&server, encode(&request), None, "snappy"), (204, String::new()));
    let secret = WriteRequest {
        timeseries: vec![series(&[("__name__", "secret_metric"), ("team", "b")], &[(now_ms, 1.0)])],
        metadata: vec![],
    };
    assert_eq!(write(&server, encode(&secret), Some("team-b"), "snappy").0, 204);

    // Labels: GET, and POST with a form body, as Grafana sends them.
    let (status, labels) = server.get("/api/v1/labels", None);
    assert_eq!(status, 200, "{labels}");
    assert_eq!(labels, json!({"status": "success", "data": ["__name__", "instance", "job", "route"]}));
    let (status, labels) = post_form(&server, "/api/v1/labels", &[("match[]", "up"), ("start", "0")]);
    assert_eq!((status, labels["data"].clone()), (200, json!(["__name__", "instance", "job"])));
    let (status, names) = server.get("/api/v1/label/__name__/values", None);
    assert_eq!((status, names["data"].clone()), (200, json!(["http_requests_total", "up"])));
    let path = format!("/api/v1/label/route/values?match[]={}", e2e::url_encode("http_requests_total{job=~\"a.*\"}"));
    assert_eq!(server.get(&path, None).1["data"], json!(["/a", "/b"]));
    assert_eq!(
        server.get("/api/v1/label/route/values?limit=1", None).1["warnings"],
        json!(["results truncated due to limit 1"])
    );

    // Series: match[] required; GET and POST; several selectors are a union.
    let (status, found) = post_form(&server, "/api/v1/series", &[("match[]", "{route=\"/b\"}"), ("match[]", "up")]);
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        found["data"],
        json!([
            {"__name__": "http_requests_total", "job": "api", "route": "/b"},
            {"__name__": "up", "instance": "h:9100", "job": "node"},
        ])
    );
    // A time range before the samples finds nothing.
    let old = format!("/api/v1/series?match[]=up&start=1000&end={}", (now_ms - 3_600_000) / 1000);
    assert_eq!(server.get(&old, None).1["data"], json!([]));

    // The other tenant's series are its own.
    assert_eq!(server.get("/api/v1/label/__name__/values", Some("team-b")).1["data"], json!(["secret_metric"]));
    assert!(!server.get("/api/v1/label/__name__/values", None).1["data"].to_string().contains("secret"));

    // buildinfo without `features` (Grafana would take a server with features for Mimir).
    let (status, info) = server.get("/api/v1/status/buildinfo", None);
    assert_eq!(status, 200);
    assert_eq!(info["data"]["version"], "2.42.0");
    assert!(info["data"].get("features").is_none(), "{info}");
    assert_eq!(server.get("/api/v1/rules", None).1, json!({"status": "success", "data": {"groups": []}}));
    assert_eq!(server.get("/api/v1/metadata", None).1, json!({"status": "success", "data": {}}));

    // Bad metadata requests: Prometheus's envelope and type.
    bad_data(&server.get("/api/v1/series", None), "no match[] parameter provided");
    bad_data(&server.get("/api/v1/series?match[]=rate(up[5m])", None), "not a series selector");
    bad_data(&server.get("/api/v1/series?match[]=%7Bjob%3D", None), "invalid parameter \"match[]\"");
    bad_data(&server.get("/api/v1/labels?start=20&end=10", None), "end timestamp must not be before start time");
    bad_data(&server.get("/api/v1/labels?start=yesterday", None), "invalid parameter \"start\"");
    bad_data(&server.get("/api/v1/labels?limit=-1", None), "invalid parameter \"limit\"");
    bad_data(&server.get("/api/v1/label/bad-name/values", None), "invalid label name");
    bad_data(&server.get("/api/v1/labels", Some("../etc")), "tenant");
}

#[test]
fn bad_remote_write_bodies_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let good =
        WriteRequest { timeseries: vec![series(&[("__name__", "m"), ("a", "1")], &[(1_000, 1.0)])], metadata: vec![] };
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("protobuf without snappy", prost::Message::encode_to_vec(&good), "snappy", 400, "not snappy"),
        (
            "snappy of garbage",
            snap_compress(b"\xff\xff\xff\xff\x0f not protobuf"),
            "snappy",
            400,
            "not a remote-write WriteRequest",
        ),
        ("no Content-Encoding", encode(&good), "", 415, "snappy"),
        ("gzip encoding", encode(&good), "gzip", 415, "snappy"),
        (
            "a series without a name",
            encode(&WriteRequest { timeseries: vec![series(&[("job", "x")], &[(1_000, 1.0)])], metadata: vec![] }),
            "snappy",
            400,
            "no metric name",
        ),
        (
            "an invalid label name",
            encode(&WriteRequest {
                timeseries: vec![series(&[("__name__", "m"), ("a-b", "x")], &[(1_000, 1.0)])],
                metadata: vec![],
            }),
            "snappy",
            400,
            "invalid label name",
        ),
        (
            "a native histogram",
            encode(&WriteRequest {
                timeseries: vec![TimeSeries { histograms: vec![vec![8, 1]], ..series(&[("__name__", "h")], &[]) }],
                metadata: vec![],
            }),
            "snappy",
            400,
            "native histograms are not supported",
        ),
    ];
    for (what, body, encoding, status, says) in cases {
        let (got, text) = write(&server, body, None, encoding);
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(says), "{what}: {text:?} lacks {says:?}");
    }
    // A body announcing more than the request limit (4 MiB by default) after decompression is
    // refused from its header, before it is decompressed.
    let mut huge = Vec::new();
    let mut n = 64u64 << 20;
    while n >= 0x80 {
        huge.push((n as u8) | 0x80);
        n >>= 7;
    }
    huge.push(n as u8);
    huge.extend_from_slice(&[0; 16]);
    let (status, text) = write(&server, huge, None, "snappy");
    assert_eq!(status, 413, "{text}");
    assert_eq!(server.items("metrics", None), 0, "nothing of a refused request is stored");
    assert_eq!(write(&server, encode(&good), None, "snappy").0, 204);
    assert_eq!(server.items("metrics", None), 1);

    // As Prometheus's head: a sample older than its series' newest, or at the newest's time
    // with another value, makes the whole request a 400 (a sender drops it, no retry); an
    // exact duplicate is accepted.
    let body = |samples: &[(i64, f64)]| {
        encode(&WriteRequest {
            timeseries: vec![
                series(&[("__name__", "other")], &[(5_000, 1.0)]),
                series(&[("__name__", "m"), ("a", "1")], samples),
            ],
            metadata: vec![],
        })
    };
    for (what, samples, says) in [
        ("an out-of-order sample", &[(500, 1.0)][..], "out of order sample (series 1, timestamp 500)"),
        ("a conflicting duplicate", &[(1_000, 2.0)][..], "duplicate sample for timestamp (series 1, timestamp 1000)"),
        ("samples out of order in one series", &[(3_000, 1.0), (2_000, 1.0)][..], "out of order sample"),
    ] {
        let (status, text) = write(&server, body(samples), None, "snappy");
        assert_eq!(status, 400, "{what}: {text}");
        assert!(text.contains(says), "{what}: {text:?} lacks {says:?}");
        assert_eq!(server.items("metrics", None), 1, "{what}: nothing of the request is stored");
    }
    assert_eq!(write(&server, body(&[(1_000, 1.0), (2_000, 2.0)]), None, "snappy").0, 204);
    assert_eq!(server.items("metrics", None), 4);
}

/// Snappy block compression of arbitrary bytes, through the same encoder senders use.
fn snap_compress(bytes: &[u8]) -> Vec<u8> {
    // A WriteRequest whose encoding is `bytes` does not exist; compress the raw bytes by wrapping
    // them as a literal-only snappy block: varint length, then one literal chunk.
    let mut out = Vec::new();
    let mut n = bytes.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    assert!(bytes.len() <= 60);
    out.push(((bytes.len() - 1) as u8) << 2);
    out.extend_from_slice(bytes);
    out
}

#[test]
fn grafanas_queries_over_remote_written_samples() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // Health check: `1+1` at time=4, POSTed as a form (Grafana's default method).
    let (status, health) = post_form(&server, "/api/v1/query", &[("query", "1+1"), ("time", "4")]);
    assert_eq!(
        (status, health),
        (200, json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}}))
    );

    // A counter every 15 s for 10 minutes, 1 per second, then a staleness marker.
    let base = (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 / 60 - 30) * 60_000;
    let mut samples: Vec<(i64, f64)> = (0..=40).map(|i| (base + i * 15_000, (i * 15) as f64)).collect();
    let stale = f64::from_bits(prom::model::STALE_NAN_BITS);
    samples.push((base + 41 * 15_000, stale));
    let request = WriteRequest {
        timeseries: vec![series(&[("__name__", "http_requests_total"), ("job", "api"), ("route", "/a")], &samples)],
        metadata: vec![],
    };
    assert_eq!(write(&server, encode(&request), None, "snappy").0, 204);
    let at = |secs: i64| ((base / 1000) + secs).to_string();

    // rate over 5 minutes of a counter growing 1/s is 1 (Prometheus's extrapolation inside the data).
    let (status, rate) = post_form(
        &server,
        "/api/v1/query",
        &[("query", "sum by (route) (rate(http_requests_total[5m]))"), ("time", &at(450))],
    );
    assert_eq!(status, 200, "{rate}");
    assert_eq!(rate["data"]["resultType"], "vector");
    assert_eq!(rate["data"]["result"][0]["metric"], json!({"route": "/a"}));
    assert_eq!(rate["data"]["result"][0]["value"][1], "1");
    // Range query with float times and a float step, as Grafana sends it.
    let path = format!(
        "/api/v1/query_range?query={}&start={}.5&end={}&step=60.0",
        e2e::url_encode("http_requests_total"),
        at(0),
        at(600)
    );
    let (status, range) = server.get(&path, None);
    assert_eq!(status, 200, "{range}");
    assert_eq!(range["data"]["resultType"], "matrix");
    let values = range["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 10, "{range}");
    assert_eq!(values[0][1], "0", "the newest sample at or before each step");
    // After the staleness marker the series has no value, though the lookback still covers it.
    let (_, after) = server.get(&format!("/api/v1/query?query=http_requests_total&time={}", at(41 * 15 + 10)), None);
    assert_eq!(after["data"]["result"], json!([]), "{after}");
    let (_, before) = server.get(&format!("/api/v1/query?query=http_requests_total&time={}", at(40 * 15 + 10)), None);
    assert_eq!(before["data"]["result"][0]["value"][1], "600", "{before}");

    // Bad queries: Prometheus's envelope, the position of a parse error.
    bad_data(
        &post_form(&server, "/api/v1/query", &[("query", "sum(rate(x[5m])")]),
        "invalid parameter \"query\": 1:16: parse error: unclosed left parenthesis",
    );
    bad_data(&post_form(&server, "/api/v1/query", &[]), "invalid parameter \"query\"");
    bad_data(
        &server.get(&format!("/api/v1/query_range?query=up&start={}&end={}&step=0", at(0), at(60)), None),
        "zero or negative query resolution step widths are not accepted",
    );
    bad_data(
        &server.get(&format!("/api/v1/query_range?query=up&start={}&end={}&step=1", at(0), at(20_000)), None),
        "exceeded maximum resolution of 11,000 points per timeseries",
    );
    bad_data(
        &server.get("/api/v1/query_range?query=up&start=10&end=5&step=1", None),
        "end timestamp must not be before start time",
    );
    bad_data(&server.get("/api/v1/query?query=up&time=soon", None), "invalid parameter \"time\"");
    // The other tenant sees none of it.
    let (_, other) = server.get(&format!("/api/v1/query?query=http_requests_total&time={}", at(300)), Some("team-b"));
    assert_eq!(other["data"]["result"], json!([]));
}

/// The write-ahead log keeps a remote-write body as it came (not re-encoded as OTLP): killed
/// before any flush, the collector replays it at start with the same labels, values and
/// staleness markers, per tenant.
#[test]
fn remote_written_samples_survive_a_crash_before_any_flush() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let base = (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 / 60 - 20) * 60_000;
    let stale = f64::from_bits(prom::model::STALE_NAN_BITS);
    let request = WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "jobs_total"), ("job", "batch"), ("queue", "q1")],
                &[(base, 1.0), (base + 15_000, 4.0), (base + 30_000, stale)],
            ),
            series(&[("__name__", "temperature"), ("room", "a b")], &[(base + 15_000, -2.5)]),
        ],
        metadata: vec![],
    };
    assert_eq!(write(&server, encode(&request), Some("t1"), "snappy").0, 204);
    let query = |server: &Server, q: &str, secs: i64| {
        let path = format!("/api/v1/query?query={}&time={}", e2e::url_encode(q), base / 1000 + secs);
        server.get(&path, Some("t1")).1["data"]["result"].clone()
    };
    let before =
        (query(&server, "jobs_total", 20), query(&server, "temperature", 20), query(&server, "jobs_total", 40));
    server.kill();

    let server = Server::start(dir.path(), &[]);
    // Still in the head: replayed from the log, not read from a part.
    let (_, stats) = server.get("/api/v1/stats", Some("t1"));
    assert_eq!(stats["signals"]["metrics"]["in_head"], 4, "{stats}");
    let after = (query(&server, "jobs_total", 20), query(&server, "temperature", 20), query(&server, "jobs_total", 40));
    assert_eq!(after, before);
    assert_eq!(after.0[0]["metric"], json!({"__name__": "jobs_total", "job": "batch", "queue": "q1"}));
    assert_eq!(after.0[0]["value"][1], "4");
    assert_eq!(after.1[0]["value"][1], "-2.5");
    assert_eq!(after.2, json!([]), "the staleness marker ends the series");
    // Another tenant sees none of it.
    let (_, other) = server.get("/api/v1/query?query=jobs_total", Some("t2"));
    assert_eq!(other["data"]["result"], json!([]));
}
