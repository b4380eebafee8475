//! The continuous analysis end to end, in real time: the real OpenTelemetry Python SDK sends a
//! steady stream of `checkout` requests on `/pay` from four hosts
//! (`tests/python/incident_send.py`) to `slo-gate serve` scoring its span-metric SLIs every
//! second, and a webhook receiver in this process (`e2e::webhook`) takes its Alertmanager
//! notifications.
//!
//! - A latency incident confined to one host is one anomaly of the route's P95 naming the host,
//!   one firing and one resolved notification, and scores and bands PromQL reads.
//! - A fast burn of an error-rate SLO's budget fires the 1h/5m page.
//! - A SIGKILL while an incident is open and its firing notification undelivered loses neither:
//!   the journal still lists the incident, the outbox delivers the firing after the restart, and
//!   the restored baseline resolves the incident.
//!
//! Every wait polls with a deadline. The in-process version of these scenarios, with simulated
//! time, is `collector/src/analysis/tests.rs`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::webhook::Receiver;
use e2e::{Server, eventually};
use serde_json::{Value, json};

/// Alertmanager's `endsAt` of an alert that is still firing (Go's zero time).
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn python() -> PathBuf {
    e2e::python::interpreter(
        "opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http",
    )
}

/// A configuration scoring every second (a small warm-up, so a test's first 25 seconds teach
/// the baselines) and notifying the receiver, retrying quickly.
fn config(dir: &Path, webhook: &str, contracts: Option<&Path>) -> PathBuf {
    let contracts = contracts.map(|c| format!("contracts = ['{}']\n", c.display())).unwrap_or_default();
    let text = format!(
        r#"[span_metrics]
metrics_flush_interval = "1s"

[analysis]
step = "1s"
{contracts}
[analysis.detector]
warmup_points = 8

[[webhook]]
name = "e2e"
url = "{webhook}"
timeout = "2s"
initial_backoff = "100ms"
max_backoff = "500ms"
"#
    );
    let path = dir.join("slo-gate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(data: &Path, config: &Path) -> Server {
    Server::start(data, &["--config", config.to_str().unwrap()])
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A running `incident_send.py`: the phases it announced, its stderr; killed when dropped.
struct Sender {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Sender {
    fn start(python: &Path, server: &Server, protocol: &str, phases: Value) -> Sender {
        let endpoint = match protocol {
            "grpc" => server.grpc_url(),
            _ => format!("http://{}", server.http),
        };
        let mut cmd = Command::new(python);
        cmd.arg(e2e::manifest_dir().join("python/incident_send.py"))
            .args(["--protocol", protocol, "--endpoint", &endpoint, "--phases", &phases.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OTEL_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd.spawn().expect("run incident_send.py");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap().push(value);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Sender { child, lines, stderr }
    }

    /// Waits until phase `i` has started: its start and planned end, unix milliseconds.
    fn phase(&mut self, i: u64) -> (i64, i64) {
        let found = eventually(Duration::from_secs(120), || {
            let lines = self.lines.lock().unwrap();
            lines
                .iter()
                .find(|l| l["phase"] == i)
                .map(|l| (l["start_ms"].as_i64().unwrap(), l["end_ms"].as_i64().unwrap()))
        });
        found.unwrap_or_else(|| {
            let status = self.child.try_wait();
            panic!("phase {i} never started (sender: {status:?}); stderr:\n{}", self.stderr.lock().unwrap())
        })
    }

    /// Waits for the sender to exit and checks it exported every span; its summary line.
    fn finish(mut self) -> Value {
        let status = eventually(Duration::from_secs(120), || self.child.try_wait().unwrap());
        let status = status.expect("the sender did not exit in time");
        // The reader threads see the pipes close right after the exit.
        let summary = eventually(Duration::from_secs(5), || {
            self.lines.lock().unwrap().iter().find(|l| l.get("sent").is_some()).cloned()
        });
        assert!(
            status.success() && summary.is_some(),
            "incident_send.py failed ({status}): {summary:?}\n{}",
            self.stderr.lock().unwrap()
        );
        summary.unwrap()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /api/v1/anomalies` with `params`, as the default tenant.
fn anomalies(server: &Server, params: &str) -> Vec<Value> {
    let (status, body) = server.get(&format!("/api/v1/anomalies{params}"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["truncated"], false, "{body}");
    assert!(body.get("warnings").is_none(), "{body}");
    body["anomalies"].as_array().unwrap().clone()
}

fn sli(anomaly: &Value) -> &str {
    anomaly["series"]["sli"].as_str().unwrap_or("-")
}

/// The notifications the receiver took (answered 200), in order; `all` includes those it
/// refused.
fn notifications(receiver: &Receiver, all: bool) -> Vec<Value> {
    let errors = receiver.errors();
    assert!(errors.is_empty(), "requests the receiver could not read: {errors:?}");
    receiver
        .received()
        .into_iter()
        .filter(|r| all || r.answered == 200)
        .map(|r| {
            assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/alerts"));
            assert_eq!(r.header("content-type"), Some("application/json"));
            r.json.unwrap_or_else(|| panic!("not JSON: {}", String::from_utf8_lossy(&r.body)))
        })
        .collect()
}

/// The one alert of a webhook payload, after checking the payload's Alertmanager fields.
fn alert(message: &Value) -> &Value {
    assert_eq!(message["version"], "4", "{message}");
    assert_eq!(message["receiver"], "e2e", "{message}");
    assert_eq!(message["truncatedAlerts"], 0, "{message}");
    let alerts = message["alerts"].as_array().unwrap_or_else(|| panic!("no alerts: {message}"));
    assert_eq!(alerts.len(), 1, "{message}");
    let alert = &alerts[0];
    assert_eq!(message["status"], alert["status"], "{message}");
    assert_eq!(message["commonLabels"], alert["labels"], "{message}");
    assert_eq!(message["groupLabels"]["alertname"], alert["labels"]["alertname"], "{message}");
    assert_eq!(message["groupLabels"]["tenant"], "anonymous", "{message}");
    for field in ["startsAt", "endsAt", "fingerprint", "annotations"] {
        assert!(!alert[field].is_null(), "no {field}: {message}");
    }
    let labels: BTreeMap<String, String> = serde_json::from_value(alert["labels"].clone()).unwrap();
    assert_eq!(alert["fingerprint"], fingerprint(&labels), "{message}");
    alert
}

/// Alertmanager's fingerprint of a label set (`model.LabelSet.Fingerprint` of
/// prometheus/common): FNV-1a 64 over the names in byte order, each name and value followed by
/// the byte 0xff, as 16 hex digits.
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in labels {
        for b in name.bytes().chain([0xff]).chain(value.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Unix milliseconds as Alertmanager's RFC 3339 (Go's `RFC3339Nano` of a time with millisecond
/// precision: no fraction for a whole second, no trailing zeros), in UTC. The calendar date is
/// Howard Hinnant's `civil_from_days`.
fn rfc3339(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    let fraction = if milli == 0 { String::new() } else { format!(".{milli:03}").trim_end_matches('0').to_string() };
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{fraction}Z")
}

/// An instant PromQL query: each result series' labels and value.
fn query(server: &Server, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let (status, body) = server.get(&format!("/api/v1/query?query={}", e2e::url_encode(promql)), None);
    assert_eq!(status, 200, "{promql}: {body}");
    body["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{promql}: {body}"))
        .iter()
        .map(|r| {
            let labels = serde_json::from_value(r["metric"].clone()).unwrap();
            (labels, r["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

/// Polls until `promql` has a series whose value satisfies `ok`; that series.
fn query_until(server: &Server, promql: &str, ok: impl Fn(f64) -> bool) -> (BTreeMap<String, String>, f64) {
    eventually(Duration::from_secs(20), || query(server, promql).into_iter().find(|(_, v)| ok(*v)))
        .unwrap_or_else(|| panic!("{promql}: no series with the value wanted: {:?}", query(server, promql)))
}

// The issue's scenario with the real SDK in real time: 25 s of steady traffic, 8 s in which
// one host's requests take 300–400 ms instead of 30–80 ms, 20 s of steady traffic again.
#[test]
fn a_latency_incident_on_one_host_is_one_anomaly_one_firing_and_one_resolution() {
    let python = python();
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &receiver.url("/alerts"), None);
    let server = start(&dir.path().join("data"), &config);
    let mut sender = Sender::start(
        &python,
        &server,
        "grpc",
        json!([{"seconds": 25}, {"seconds": 8, "slow_host": "node-3", "slow_ms": [300, 400]}, {"seconds": 20}]),
    );
    let (slow_from, slow_to) = sender.phase(1);
    let (_, traffic_ends) = sender.phase(2);

    // The resolution: six normal steps after the slow ones.
    let resolved = eventually(Duration::from_secs(30), || {
        notifications(&receiver, false)
            .into_iter()
            .find(|n| n["status"] == "resolved" && n["alerts"][0]["labels"]["sli"] == "latency_p95")
    });
    let resolved = resolved.unwrap_or_else(|| {
        panic!("no resolution: {:#?}\nanomalies: {:#?}", notifications(&receiver, true), anomalies(&server, ""))
    });
    // Anything the incident or the steady traffic raises is in by two seconds before the
    // traffic ends (when it stops, the request rate falls to zero: an anomaly of its own).
    let settle = (traffic_ends - 2_000 - now_ms()).max(0);
    std::thread::sleep(Duration::from_millis(settle as u64));
    assert!(now_ms() < traffic_ends, "the test ran too slowly to look before the traffic ended");
    let listed = anomalies(&server, "");
    let received = notifications(&receiver, true);

    // The anomaly: the route's P95, above its band from the first slow step, resolved after
    // the last, naming the host.
    let latency: Vec<&Value> = listed.iter().filter(|a| sli(a) == "latency_p95").collect();
    assert_eq!(latency.len(), 1, "{listed:#?}");
    let a = latency[0];
    let id = a["id"].as_str().unwrap();
    assert_eq!(a["series"]["http_route"], "/pay", "{a}");
    assert_eq!(a["series"]["service_name"], "checkout", "{a}");
    assert_eq!(a["series"]["service_version"], "v1", "{a}");
    assert_eq!((&a["status"], &a["side"]), (&json!("resolved"), &json!("above")), "{a}");
    let (start, end) = (a["start_ms"].as_i64().unwrap(), a["end_ms"].as_i64().unwrap());
    assert!(start > slow_from && start <= slow_from + 3_000, "raised within a step or two of {slow_from}: {a}");
    assert!(end > slow_to && end <= slow_to + 4_000, "resolved from the first normal step after {slow_to}: {a}");
    assert!(a["actual"].as_f64().unwrap() > 0.2 && a["expected"].as_f64().unwrap() < 0.12, "{a}");
    assert!(a["peak_score"].as_f64().unwrap() > 1.0, "{a}");
    let lead = &a["leads"][0];
    assert_eq!((&lead["key"], &lead["value"]), (&json!("host.name"), &json!("node-3")), "{a}");
    assert!(lead["selection_share"].as_f64().unwrap() > 0.9, "{lead}");
    assert!(lead["baseline_share"].as_f64().unwrap() < 0.3, "{lead}");
    let filtered = anomalies(&server, "?service=checkout&status=resolved");
    assert!(filtered.iter().any(|f| f["id"] == id), "{filtered:#?}");
    assert!(anomalies(&server, "?service=billing").is_empty());

    // Its notifications: one firing, then one resolution, of the same alert.
    let mine: Vec<&Value> = received.iter().filter(|n| n["alerts"][0]["labels"]["anomaly_id"] == id).collect();
    let statuses: Vec<&str> = mine.iter().map(|n| n["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["firing", "resolved"], "{mine:#?}");
    assert_eq!(mine[1], &resolved);
    let (firing, resolution) = (alert(mine[0]), alert(mine[1]));
    assert_eq!(firing["fingerprint"], resolution["fingerprint"]);
    assert_eq!(firing["labels"], resolution["labels"]);
    let labels = &firing["labels"];
    for (key, value) in [
        ("alertname", "SLOGateAnomaly"),
        ("tenant", "anonymous"),
        ("sli", "latency_p95"),
        ("http_route", "/pay"),
        ("service_name", "checkout"),
    ] {
        assert_eq!(labels[key], value, "{key}: {labels}");
    }
    assert_eq!(firing["startsAt"], rfc3339(start), "{firing}");
    assert_eq!(resolution["startsAt"], rfc3339(start), "{resolution}");
    assert_eq!(firing["endsAt"], ZERO_TIME, "{firing}");
    assert_eq!(resolution["endsAt"], rfc3339(end), "{resolution}");
    let description = resolution["annotations"]["description"].as_str().unwrap_or_default();
    assert!(description.contains("of slow requests have host.name=node-3"), "{resolution}");
    assert!(
        resolution["annotations"]["summary"].as_str().unwrap().contains("latency_p95 of checkout /pay is above"),
        "{resolution}"
    );

    // Scores and bands are series: PromQL and the points API read them.
    let scores = query(&server, r#"slo_gate_anomaly_score{sli="latency_p95"}"#);
    assert_eq!(scores.len(), 1, "{scores:?}");
    assert_eq!(scores[0].0.get("http_route").map(String::as_str), Some("/pay"), "{scores:?}");
    let peak = query(&server, r#"max_over_time(slo_gate_anomaly_score{sli="latency_p95",http_route="/pay"}[5m])"#);
    assert!(peak.len() == 1 && peak[0].1 > 1.0, "the score left the band during the incident: {peak:?}");
    let upper = query(&server, r#"slo_gate_baseline_upper{sli="latency_p95"}"#);
    let lower = query(&server, r#"slo_gate_baseline_lower{sli="latency_p95"}"#);
    assert!(upper.len() == 1 && lower.len() == 1, "{upper:?} {lower:?}");
    assert!(lower[0].1 < upper[0].1 && upper[0].1 < 0.2, "a band around the normal P95: {lower:?} {upper:?}");
    assert!(!query(&server, r#"slo_gate_baseline_upper{sli="request_rate"}"#).is_empty());
    assert!(!query(&server, "slo_gate_observed").is_empty());
    let (status, body) = server.get("/api/v1/metrics/points?name=slo_gate_anomaly_score&limit=100000", None);
    assert_eq!(status, 200, "{body}");
    let points = body["points"].as_array().unwrap();
    let latency_points: Vec<&Value> = points.iter().filter(|p| p["attributes"]["sli"] == "latency_p95").collect();
    assert!(latency_points.len() > 10, "a point a step: {}", latency_points.len());
    assert!(latency_points.iter().any(|p| p["value"].as_f64().unwrap() > 1.0));
    assert_eq!(latency_points[0]["kind"], "gauge", "{}", latency_points[0]);
    assert_eq!(latency_points[0]["service_name"], "slo-gate", "{}", latency_points[0]);

    let summary = sender.finish();
    assert_eq!(summary["failures"], 0, "{summary}");

    // Last: the steady request rate and the error ratio (no errors) raise nothing, so the
    // incident is the only anomaly and its two notifications the only ones. A count that is
    // the same every step has almost no spread, so this failed while nothing held the
    // request-rate band open: a few milliseconds of step jitter (100.1 against 100
    // requests/s) or one export landing a step late (110 against 100) scored far above 1.
    let others: Vec<String> = listed
        .iter()
        .filter(|a| a["id"] != id)
        .map(|a| {
            let (side, at, score) = (&a["side"], &a["start_ms"], &a["peak_score"]);
            format!("{} {side} at {at}: {} against {} expected, score {score}", sli(a), a["actual"], a["expected"])
        })
        .collect();
    assert!(others.is_empty(), "anomalies besides the incident: {others:#?}");
    assert_eq!(received.len(), 2, "notifications besides the incident's: {received:#?}");
}

// A fast burn: 20% of requests fail for 15 s against a 99.9% target (a burn rate of 200): the
// 1h/5m page fires within seconds, after none fired during the clean traffic before.
#[test]
fn a_fast_burn_of_the_error_budget_fires_the_one_hour_five_minute_page() {
    let python = python();
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let contracts = dir.path().join("contracts");
    std::fs::create_dir_all(&contracts).unwrap();
    std::fs::write(
        contracts.join("checkout.yaml"),
        "apiVersion: slo-gate/v1\nkind: Contract\nservice: checkout\nobjectives:\n  - name: errors\n    \
         error_rate: { route: /pay }\n    fail: \"< 1%\"\n    slo: { target: 99.9%, window: 30d }\n",
    )
    .unwrap();
    let config = config(dir.path(), &receiver.url("/alerts"), Some(&contracts));
    let server = start(&dir.path().join("data"), &config);
    let mut sender =
        Sender::start(&python, &server, "http", json!([{"seconds": 10}, {"seconds": 15, "error_ratio": 0.2}]));
    let (errors_from, _) = sender.phase(1);
    let burn = |n: &Value| n["alerts"][0]["labels"]["alertname"] == "SLOGateBurnRate";
    let before = notifications(&receiver, true);
    assert!(!before.iter().any(burn), "a burn-rate alert before any error: {before:#?}");

    let page = eventually(Duration::from_secs(20), || {
        notifications(&receiver, false).into_iter().find(|n| {
            let labels = &n["alerts"][0]["labels"];
            burn(n) && labels["long_window"] == "1h" && labels["short_window"] == "5m"
        })
    });
    let page = page.unwrap_or_else(|| panic!("no 1h/5m page: {:#?}", notifications(&receiver, true)));
    let fired_after = now_ms() - errors_from;
    let a = alert(&page);
    assert_eq!(a["status"], "firing", "{page}");
    for (key, value) in [
        ("alertname", "SLOGateBurnRate"),
        ("tenant", "anonymous"),
        ("service_name", "checkout"),
        ("objective", "errors"),
        ("severity", "page"),
        ("long_window", "1h"),
        ("short_window", "5m"),
    ] {
        assert_eq!(a["labels"][key], value, "{key}: {page}");
    }
    assert_eq!(a["endsAt"], ZERO_TIME, "{page}");
    let rate = |key: &str| a["annotations"][key].as_str().and_then(|v| v.parse::<f64>().ok());
    assert!(rate("long_burn_rate").is_some_and(|r| r >= 14.4), "{page}");
    assert!(rate("short_burn_rate").is_some_and(|r| r >= 14.4), "{page}");
    assert!(fired_after < 10_000, "fired {fired_after} ms after the errors began");

    // The budget and the burn rates are series.
    let (labels, five_minutes) = query_until(&server, r#"slo_gate_burn_rate{window="5m"}"#, |v| v >= 14.4);
    assert_eq!(labels.get("service_name").map(String::as_str), Some("checkout"), "{labels:?}");
    assert_eq!(labels.get("objective").map(String::as_str), Some("errors"), "{labels:?}");
    assert!(five_minutes < 1000.0, "20% of errors against 0.1% allowed: at most 200, {five_minutes}");
    let windows: Vec<String> =
        query(&server, "slo_gate_burn_rate").into_iter().filter_map(|(l, _)| l.get("window").cloned()).collect();
    for window in ["5m", "30m", "1h", "6h", "3d"] {
        assert!(windows.iter().any(|w| w == window), "{window} in {windows:?}");
    }
    // Overspent: far more than 0.1% of the requests seen failed.
    query_until(&server, "slo_gate_error_budget_remaining", |v| v < 0.0);

    // The error ratio, zero until then, is an anomaly of its own.
    let errors =
        eventually(Duration::from_secs(20), || anomalies(&server, "").into_iter().find(|a| sli(a) == "error_ratio"))
            .unwrap_or_else(|| panic!("no error-ratio anomaly: {:#?}", anomalies(&server, "")));
    assert_eq!(errors["series"]["http_route"], "/pay", "{errors}");
    assert!(errors["start_ms"].as_i64().unwrap() > errors_from, "{errors}");

    let summary = sender.finish();
    let (sent, failed) = (summary["sent"].as_f64().unwrap(), summary["errors"].as_f64().unwrap());
    // 10 s and 15 s of 100 requests a second; every fifth request of the second phase failed.
    assert!(sent == 2500.0 && (failed - 300.0).abs() <= 4.0, "{summary}");
}

// A crash while an incident is open and its firing notification is still in the outbox (the
// receiver refuses it): after the restart on the same data directory, the journal still lists
// the incident, the firing is delivered, and the restored baseline resolves the incident.
#[test]
fn an_incident_open_at_a_crash_is_still_listed_notified_and_resolved_after_the_restart() {
    let python = python();
    let receiver = Receiver::start();
    receiver.answer_with(503);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &receiver.url("/alerts"), None);
    let data = dir.path().join("data");
    let server = start(&data, &config);
    let mut sender = Sender::start(
        &python,
        &server,
        "grpc",
        json!([{"seconds": 25}, {"seconds": 60, "slow_host": "node-3", "slow_ms": [300, 400]}]),
    );
    let (slow_from, _) = sender.phase(1);
    let open = eventually(Duration::from_secs(20), || {
        anomalies(&server, "?status=open").into_iter().find(|a| sli(a) == "latency_p95")
    })
    .unwrap_or_else(|| panic!("no open latency anomaly: {:#?}", anomalies(&server, "")));
    let id = open["id"].as_str().unwrap().to_string();
    assert!(open["start_ms"].as_i64().unwrap() > slow_from, "{open}");
    // The journal records an incident after its firing is in the outbox; the notifier is
    // delivering (in order, so the firing may wait behind earlier notifications), and the
    // receiver has taken nothing.
    let attempted = eventually(Duration::from_secs(20), || (!receiver.received().is_empty()).then_some(()));
    assert!(attempted.is_some(), "the notifier never tried the receiver");
    assert!(notifications(&receiver, false).is_empty(), "the receiver refuses everything");

    drop(sender);
    let killed_at = Instant::now();
    server.kill();
    receiver.answer_with(200);
    let server = start(&data, &config);
    let restarted_in = killed_at.elapsed();

    // The journal still lists the incident, open.
    let listed = anomalies(&server, "");
    let after = listed.iter().find(|a| a["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} lost: {listed:#?}"));
    assert_eq!(after["status"], "open", "{after}");
    assert_eq!(after["start_ms"], open["start_ms"], "{after}");

    // A few more slow seconds, then normal traffic the restored baseline resolves the incident on.
    let mut sender = Sender::start(
        &python,
        &server,
        "grpc",
        json!([{"seconds": 3, "slow_host": "node-3", "slow_ms": [300, 400]}, {"seconds": 15}]),
    );
    let (_, slow_to) = sender.phase(0);
    let mine = |all: bool| -> Vec<Value> {
        notifications(&receiver, all)
            .into_iter()
            .filter(|n| n["alerts"][0]["labels"]["anomaly_id"] == id.as_str())
            .collect()
    };
    let delivered = eventually(Duration::from_secs(40), || {
        let mine = mine(false);
        mine.iter().any(|n| n["status"] == "resolved").then_some(mine)
    })
    .unwrap_or_else(|| panic!("no resolution delivered: {:#?}\n{:#?}", mine(true), anomalies(&server, "")));

    // The firing was not lost: delivered, before the resolution; every copy of the alert (the
    // refused attempts too) has one fingerprint and one start.
    let statuses: Vec<&str> = delivered.iter().map(|n| n["status"].as_str().unwrap()).collect();
    let first_resolution = statuses.iter().position(|s| *s == "resolved").unwrap();
    assert!(statuses[..first_resolution].contains(&"firing"), "firing before resolved: {statuses:?}");
    let attempts = mine(true);
    let fingerprints: Vec<&Value> = attempts.iter().map(|n| &alert(n)["fingerprint"]).collect();
    assert!(fingerprints.windows(2).all(|w| w[0] == w[1]), "{fingerprints:?}");
    let starts: Vec<&Value> = attempts.iter().map(|n| &n["alerts"][0]["startsAt"]).collect();
    assert!(starts.iter().all(|s| **s == json!(rfc3339(open["start_ms"].as_i64().unwrap()))), "{starts:?}");

    // The journal has it resolved, after the slow traffic, with the host named.
    let resolved = eventually(Duration::from_secs(10), || {
        anomalies(&server, "?status=resolved").into_iter().find(|a| a["id"] == id.as_str())
    })
    .unwrap_or_else(|| panic!("{id} not resolved in the journal: {:#?}", anomalies(&server, "")));
    assert!(resolved["end_ms"].as_i64().unwrap() > slow_to, "{resolved}");
    assert_eq!(resolved["leads"][0]["value"], "node-3", "{resolved}");
    let all = anomalies(&server, "");
    let latency: Vec<&Value> = all.iter().filter(|a| sli(a) == "latency_p95").collect();
    assert_eq!(latency.len(), 1, "one incident across the restart, not a second one: {latency:#?}");
    eprintln!("restart took {restarted_in:?}");
    sender.finish();
}
