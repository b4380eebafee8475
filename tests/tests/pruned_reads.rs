//! Native listings read only the parts their `from`/`to` can match (issue 17, reads pruned): with
//! metric points and log records of two hours a day apart in parts, a query of the earlier hour
//! answers exactly its rows and does not open the later hour's part — shown by damaging that part
//! first: the narrow query has no warning, the unbounded one reports the damaged part.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::{Server, eventually};
use serde_json::{Value, json};

const HOUR_NS: u64 = 3_600_000_000_000;
const POINTS: u64 = 30;

fn post(server: &Server, path: &str, body: &Value) {
    let r = reqwest::blocking::Client::new().post(server.http_url(path)).json(body).send().unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

/// `POINTS` gauge points and as many log records of service `svc`, one a minute from `start_ns`.
fn send(server: &Server, start_ns: u64, tag: &str) {
    let resource = json!({"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]});
    let points: Vec<Value> = (0..POINTS)
        .map(|i| json!({"timeUnixNano": (start_ns + i * 60_000_000_000).to_string(), "asDouble": i as f64}))
        .collect();
    post(
        server,
        "/v1/metrics",
        &json!({"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": [
            {"name": format!("gauge_{tag}"), "gauge": {"dataPoints": points}}
        ]}]}]}),
    );
    let records: Vec<Value> = (0..POINTS)
        .map(|i| json!({"timeUnixNano": (start_ns + i * 60_000_000_000).to_string(), "body": {"stringValue": format!("{tag} {i}")}}))
        .collect();
    post(
        server,
        "/v1/logs",
        &json!({"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": records}]}]}),
    );
}

/// The part files of `signal` under the data directory, by hour directory.
fn parts(data: &Path, signal: &str) -> Vec<PathBuf> {
    let dir = data.join("parts").join("anonymous").join(signal);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flat_map(|hour| std::fs::read_dir(hour.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

fn damage(part: &Path) {
    let mut bytes = std::fs::read(part).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(part, bytes).unwrap();
}

#[test]
fn a_narrow_listing_opens_only_the_parts_of_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--flush-interval", "1s"]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let (early, late) = (now / HOUR_NS * HOUR_NS - 26 * HOUR_NS, now / HOUR_NS * HOUR_NS - 2 * HOUR_NS);
    send(&server, early, "early");
    send(&server, late, "late");
    eventually(Duration::from_secs(30), || {
        let (_, stats) = server.get("/api/v1/stats", None);
        let s = &stats["signals"];
        (s["metrics"]["in_head"] == 0 && s["logs"]["in_head"] == 0).then_some(())
    })
    .expect("the head written to parts");

    let (from, to) = (early / 1_000_000_000, (early + HOUR_NS) / 1_000_000_000 - 1);
    for (signal, path, key) in [("metrics", "/api/v1/metrics/points", "points"), ("logs", "/api/v1/logs", "logs")] {
        let files = parts(&data, signal);
        assert_eq!(files.len(), 2, "one part per hour: {files:?}");
        damage(&files[1]);

        let (status, narrow) = server.get(&format!("{path}?from={from}&to={to}"), None);
        assert_eq!(status, 200, "{narrow}");
        let rows = narrow[key].as_array().unwrap_or_else(|| panic!("{narrow}"));
        assert_eq!(rows.len() as u64, POINTS, "{narrow}");
        assert!(rows.iter().all(|r| r.to_string().contains("early")), "{narrow}");
        assert!(narrow.get("warnings").is_none(), "the later hour's part was opened: {narrow}");

        let (status, all) = server.get(path, None);
        assert_eq!(status, 200, "{all}");
        let warnings = all["warnings"].to_string();
        assert!(warnings.contains("checksum") || warnings.contains("damaged"), "{all}");
        assert_eq!(all[key].as_array().map(Vec::len), Some(POINTS as usize), "{all}");

        // A range the parts do not reach answers nothing, and opens nothing.
        let (status, none) = server.get(&format!("{path}?from={}&to={}", from - 86_400, to - 86_400), None);
        assert_eq!((status, none[key].as_array().map(Vec::len)), (200, Some(0)), "{none}");
    }
}
