//! The gate's run history (`POST /api/v1/gate/runs`) is written only by holders of a write
//! token, validated and bounded (issue 11 #8): an anonymous client could record a passing
//! "build" with a time in the future that `baseline: last_passing` then compared against, and
//! fill the disk with runs.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::Server;
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789abcdef";

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn run(version: &str, time_unix_nano: u64, verdict: &str) -> Value {
    json!({
        "service": "checkout",
        "environment": "staging",
        "version": version,
        "time_unix_nano": time_unix_nano,
        "verdict": verdict,
        "blocked": false,
        "objectives": [{ "name": "checkout-latency", "verdict": verdict }],
    })
}

/// `POST /api/v1/gate/runs` with `body`, and `Authorization: Bearer TOKEN` when given.
fn post(server: &Server, body: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::blocking::Client::new()
        .post(server.api_url("/api/v1/gate/runs"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().expect("POST /api/v1/gate/runs");
    (response.status().as_u16(), response.text().unwrap_or_default())
}

fn versions(server: &Server) -> Vec<String> {
    let (status, body) = server.get("/api/v1/gate/runs?service=checkout&environment=staging", None);
    assert_eq!(status, 200, "{body}");
    body["runs"].as_array().unwrap().iter().map(|r| r["version"].as_str().unwrap().to_string()).collect()
}

fn token_file(dir: &Path) -> String {
    let path = dir.join("gate-tokens");
    std::fs::write(&path, format!("# write tokens of slo-gate check\n\n{TOKEN}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

// issue 11 #8: without a configured token nobody can write a verdict, and the answer says how
// to configure one.
#[test]
fn without_a_token_file_runs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let forged = run("6.6.6-evil", now_nanos() + 86_400_000_000_000, "pass").to_string();
    for token in [None, Some(TOKEN)] {
        let (status, body) = post(&server, &forged, token);
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("--gate-token-file"), "the answer says how to configure a token: {body}");
    }
    assert!(versions(&server).is_empty());
}

// issue 11 #8: a forged run (no token, a wrong token) is refused without saying what was wrong
// with the token; with the token, runs from the future, unknown verdicts and oversized runs are
// refused, and a valid run is recorded.
#[test]
fn forged_and_invalid_runs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--gate-token-file", &token_file(dir.path())]);
    let now = now_nanos();
    let forged = run("6.6.6-evil", now + 86_400_000_000_000, "pass").to_string();

    let (missing_status, missing) = post(&server, &forged, None);
    assert_eq!(missing_status, 401, "{missing}");
    let (wrong_status, wrong) = post(&server, &forged, Some("test-token-0123456789abcdeX"));
    assert_eq!(wrong_status, 401, "{wrong}");
    let (short_status, short) = post(&server, &forged, Some("t"));
    assert_eq!(short_status, 401, "{short}");
    assert_eq!(missing, wrong, "the answer does not tell a missing token from a wrong one");
    assert_eq!(wrong, short, "the answer does not tell how close a wrong token was");
    assert!(!wrong.contains(TOKEN) && !wrong.contains("0123456789abcde"), "{wrong}");

    let (status, body) = post(&server, &forged, Some(TOKEN));
    assert_eq!(status, 400, "a run from the future: {body}");
    assert!(body.contains("future"), "{body}");
    let (status, body) = post(&server, &run("1.0.0", now, "maybe").to_string(), Some(TOKEN));
    assert_eq!(status, 400, "an unknown verdict: {body}");
    let mut many = run("1.0.0", now, "pass");
    many["objectives"] =
        (0..5_000).map(|i| json!({ "name": format!("objective-{i}"), "verdict": "pass" })).collect::<Value>();
    let (status, body) = post(&server, &many.to_string(), Some(TOKEN));
    assert!(status == 400 || status == 413, "5,000 objectives: {status} {body}");
    let mut long = run("1.0.0", now, "pass");
    long["version"] = Value::from("v".repeat(100_000));
    let (status, body) = post(&server, &long.to_string(), Some(TOKEN));
    assert!(status == 400 || status == 413, "a 100 KB version: {status} {body}");
    assert!(versions(&server).is_empty(), "nothing was recorded");

    // A run from a moment ago (a clock a little ahead is allowed for) is recorded.
    let (status, body) = post(&server, &run("1.0.0", now + 5_000_000_000, "pass").to_string(), Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(versions(&server), ["1.0.0"]);
}

// issue 11 #8: the history keeps a bounded number of runs per service and environment, and the
// file stays under its configured size whatever is sent.
#[test]
fn history_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slo-gate.toml");
    let tokens = token_file(dir.path());
    std::fs::write(&config, format!("[gate]\ntoken_file = {tokens:?}\nmax_runs = 20\nmax_history_bytes = 65536\n"))
        .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", config.to_str().unwrap()]);
    let start = now_nanos() - 3_600_000_000_000;
    for i in 0..600u64 {
        let (status, body) =
            post(&server, &run(&format!("1.0.{i}"), start + i * 1_000_000_000, "pass").to_string(), Some(TOKEN));
        assert_eq!(status, 200, "run {i}: {body}");
    }
    let kept = versions(&server);
    assert_eq!(kept.len(), 20, "{kept:?}");
    assert_eq!(kept[0], "1.0.599", "newest first: {kept:?}");
    let file = data.join("gate").join("anonymous").join("runs.jsonl");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size <= 65_536, "the history file is {size} bytes");
    // The history survives a restart as it was.
    server.stop();
    std::thread::sleep(Duration::from_millis(100));
    let server = Server::start(&data, &["--config", config.to_str().unwrap()]);
    assert_eq!(versions(&server), kept);
}
