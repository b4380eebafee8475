//! `slo-gate check` end to end against the real collector: SERVER spans of three builds of a
//! service are sent over OTLP/HTTP (a baseline 1.0.0, a same-distribution rebuild 1.0.1 and a
//! slower, more error-prone 1.1.0, whose slow spans sit on one host); then the gate runs as CI
//! would run it, and its exit code, report files, history and error handling are checked:
//! - A/A (1.0.1 against 1.0.0) passes with exit 0; the regression (1.1.0) is blocked with exit 1,
//!   the JSON/JUnit/Markdown reports say which objectives failed and why, `$GITHUB_STEP_SUMMARY`
//!   gets the Markdown, and the artifacts hold the slow-span correlation naming the host;
//! - `consecutive_failures: 2` lets the first failure through and blocks the second, from the
//!   history the collector keeps; `--baseline last-passing` finds the last passing build;
//! - `--data-dir` gives the same verdict from the data directory, and refuses a directory a
//!   running collector holds;
//! - a bad contract, an unknown service and an unreachable collector exit with 2 and say why.

use std::path::Path;
use std::process::{Command, Output};

use e2e::Server;
use e2e::otlp::{kv, kv_int, trace_id};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::Value;

const CONTRACT: &str = r#"apiVersion: slo-gate/v1
kind: Contract
service: checkout
environment: staging
gate:
  baseline: { version: "1.0.0" }
  min_samples: 100
objectives:
  - name: checkout-latency
    latency: { percentile: p95, route: /api/checkout }
    fail: ["<= 2s", "<= +10%"]
    key: true
  - name: checkout-errors
    error_rate: { route: /api/checkout }
    fail: ["< 5%", "<= +50%"]
  - name: cart-latency
    latency: { percentile: p95, route: /api/cart }
    fail: "<= +20%"
"#;

/// A SplitMix64 step: deterministic test data.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn uniform(state: &mut u64) -> f64 {
    (next(state) >> 11) as f64 / (1u64 << 53) as f64
}

/// One build's spans: `n` per route, latency log-normal around `median_ms` (×`slow` on
/// /api/checkout when `slow > 1`, only on host node-3), errors with probability `error_rate`.
fn build_request(version: &str, seed: u64, n: usize, slow: f64, error_rate: f64) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut state = seed;
    let mut spans = Vec::new();
    for i in 0..n {
        for (route, median_ms) in [("/api/checkout", 120.0), ("/api/cart", 30.0)] {
            // Box-Muller normal, for a log-normal latency with sigma 0.3.
            let (u1, u2) = (uniform(&mut state).max(1e-12), uniform(&mut state));
            let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let host = format!("node-{}", next(&mut state) % 4);
            let mut ms = median_ms * (0.3 * normal).exp();
            if route == "/api/checkout" && host == "node-3" {
                ms *= slow;
            }
            let error = route == "/api/checkout" && uniform(&mut state) < error_rate;
            let start = now - (n - i) as u64 * 10_000_000;
            spans.push(Span {
                trace_id: trace_id(seed ^ (i as u64 + 1)),
                span_id: (spans.len() as u64 + 1).to_be_bytes().to_vec(),
                name: format!("{} {route}", if route == "/api/checkout" { "POST" } else { "GET" }),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + (ms * 1e6) as u64,
                attributes: vec![
                    kv("http.route", route),
                    kv_int("http.response.status_code", if error { 503 } else { 200 }),
                    kv("host.name", &host),
                ],
                status: error.then(|| Status { code: 2, message: "upstream failed".into() }),
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "checkout"),
                    kv("service.version", version),
                    kv("deployment.environment.name", "staging"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn send(server: &Server, request: &ExportTraceServiceRequest) {
    let resp = reqwest::blocking::Client::new()
        .post(server.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .expect("send spans");
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap_or_default());
}

fn check(contracts: &Path, source: &[&str], args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(e2e::binary());
    cmd.arg("check").arg("--contracts").arg(contracts).args(["--service", "checkout", "--environment", "staging"]);
    cmd.args(source).args(args).env_remove("GITHUB_STEP_SUMMARY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run slo-gate check")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
        .expect("JSON report")
}

#[test]
fn gate_blocks_the_regression_passes_a_a_and_explains_why() {
    let dir = tempfile::tempdir().unwrap();
    let contracts = dir.path().join("contracts");
    std::fs::create_dir_all(&contracts).unwrap();
    std::fs::write(contracts.join("checkout.yaml"), CONTRACT).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    send(&server, &build_request("1.0.0", 1, 600, 1.0, 0.005));
    send(&server, &build_request("1.0.1", 2, 600, 1.0, 0.005));
    send(&server, &build_request("1.1.0", 3, 600, 2.5, 0.04));
    let api = server.api_url("");
    let collector = ["--collector", api.as_str()];

    // A/A: the rebuild passes.
    let same = check(&contracts, &collector, &["--candidate", "1.0.1"], &[]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    assert!(String::from_utf8_lossy(&same.stdout).contains("GATE PASSED"), "{}", text(&same));

    // The regression is blocked, with reports that say why.
    let out_dir = dir.path().join("out");
    let summary = dir.path().join("step-summary.md");
    std::fs::write(&summary, "# earlier step\n").unwrap();
    let (json, junit, markdown, artifacts) =
        (out_dir.join("gate.json"), out_dir.join("junit.xml"), out_dir.join("gate.md"), out_dir.join("artifacts"));
    let blocked = check(
        &contracts,
        &collector,
        &[
            "--candidate",
            "1.1.0",
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--markdown",
            markdown.to_str().unwrap(),
            "--artifacts",
            artifacts.to_str().unwrap(),
        ],
        &[("GITHUB_STEP_SUMMARY", &summary)],
    );
    assert_eq!(blocked.status.code(), Some(1), "{}", text(&blocked));
    let stdout = String::from_utf8_lossy(&blocked.stdout);
    assert!(stdout.contains("checkout-latency") && stdout.contains("release blocked"), "{}", text(&blocked));
    let report = read_json(&json);
    assert_eq!(report["blocked"], true, "{report:#}");
    let objective = |name: &str| {
        report["objectives"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing: {report:#}"))
    };
    assert_eq!(objective("checkout-latency")["verdict"], "fail", "{report:#}");
    assert_eq!(objective("checkout-errors")["verdict"], "fail", "{report:#}");
    assert_eq!(objective("cart-latency")["verdict"], "pass", "{report:#}");
    let junit_text = std::fs::read_to_string(&junit).unwrap();
    assert!(junit_text.contains("<testsuite") && junit_text.matches("<testcase").count() == 3, "{junit_text}");
    assert_eq!(junit_text.matches("<failure").count(), 2, "{junit_text}");
    let md = std::fs::read_to_string(&markdown).unwrap();
    assert!(md.contains("checkout-latency"), "{md}");
    let step = std::fs::read_to_string(&summary).unwrap();
    assert!(
        step.starts_with("# earlier step\n") && step.contains(&md),
        "the Markdown is appended to $GITHUB_STEP_SUMMARY"
    );
    let correlation = std::fs::read_to_string(artifacts.join("slow-span-correlation.json")).unwrap();
    assert!(correlation.contains("host.name") && correlation.contains("node-3"), "{correlation}");
    assert!(artifacts.join("report.json").exists());

    // Bad input exits with 2 and says what was wrong.
    let unknown = check(&contracts, &collector, &["--candidate", "1.1.0"], &[]);
    assert_eq!(unknown.status.code(), Some(1), "a second run of the same build is judged again");
    let bad_dir = dir.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    std::fs::write(bad_dir.join("checkout.yaml"), CONTRACT.replace("p95, route: /api/cart", "p101, route: /api/cart"))
        .unwrap();
    let bad = check(&bad_dir, &collector, &["--candidate", "1.1.0"], &[]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("checkout.yaml:"), "{}", text(&bad));
    let other = Command::new(e2e::binary())
        .args(["check", "--contracts"])
        .arg(&contracts)
        .args(["--service", "payments", "--candidate", "1", "--collector", &api])
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2), "{}", text(&other));
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("no contract for service \"payments\""),
        "{}",
        text(&other)
    );
    let unreachable = check(&contracts, &["--collector", "http://127.0.0.1:1"], &["--candidate", "1.1.0"], &[]);
    assert_eq!(unreachable.status.code(), Some(2), "{}", text(&unreachable));
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the collector"),
        "{}",
        text(&unreachable)
    );

    // Consecutive failures: with `consecutive_failures: 2` the first failure does not block.
    let lenient = dir.path().join("lenient");
    std::fs::create_dir_all(&lenient).unwrap();
    std::fs::write(
        lenient.join("checkout.yaml"),
        CONTRACT
            .replace("service: checkout\n", "service: checkout-canary\n")
            .replace("  min_samples: 100\n", "  min_samples: 100\n  consecutive_failures: 2\n"),
    )
    .unwrap();
    send(&server, &{
        let mut r = build_request("1.0.0", 1, 600, 1.0, 0.005);
        r.resource_spans[0].resource.as_mut().unwrap().attributes[0] = kv("service.name", "checkout-canary");
        r
    });
    send(&server, &{
        let mut r = build_request("1.1.0", 3, 600, 2.5, 0.04);
        r.resource_spans[0].resource.as_mut().unwrap().attributes[0] = kv("service.name", "checkout-canary");
        r
    });
    let canary = |candidate: &str| {
        let mut cmd = Command::new(e2e::binary());
        cmd.arg("check").arg("--contracts").arg(&lenient);
        cmd.args([
            "--service",
            "checkout-canary",
            "--environment",
            "staging",
            "--candidate",
            candidate,
            "--collector",
            &api,
        ]);
        cmd.env_remove("GITHUB_STEP_SUMMARY").output().unwrap()
    };
    let first = canary("1.1.0");
    assert_eq!(first.status.code(), Some(0), "first failure must not block: {}", text(&first));
    assert!(String::from_utf8_lossy(&first.stdout).contains("1 of 2"), "{}", text(&first));
    let second = canary("1.1.0");
    assert_eq!(second.status.code(), Some(1), "second consecutive failure blocks: {}", text(&second));

    // last-passing: 1.0.1 passed above, so it is the baseline now.
    let last = check(
        &contracts,
        &collector,
        &["--candidate", "1.1.0", "--baseline", "last-passing", "--json", json.to_str().unwrap()],
        &[],
    );
    assert_eq!(last.status.code(), Some(1), "{}", text(&last));
    assert_eq!(read_json(&json)["baseline_versions"], serde_json::json!(["1.0.1"]));

    // --data-dir refuses a directory in use, then reads it once the collector is gone.
    let data_arg = data.to_string_lossy().into_owned();
    let busy = check(&contracts, &["--data-dir", &data_arg], &["--candidate", "1.1.0", "--no-record"], &[]);
    assert_eq!(busy.status.code(), Some(2), "{}", text(&busy));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use by another slo-gate process"), "{}", text(&busy));
    server.stop();
    let offline =
        check(&contracts, &["--data-dir", &data_arg], &["--candidate", "1.1.0", "--json", json.to_str().unwrap()], &[]);
    assert_eq!(offline.status.code(), Some(1), "{}", text(&offline));
    assert_eq!(read_json(&json)["objectives"][0]["verdict"], "fail");
    let offline_aa = check(&contracts, &["--data-dir", &data_arg], &["--candidate", "1.0.1"], &[]);
    assert_eq!(offline_aa.status.code(), Some(0), "{}", text(&offline_aa));
}
