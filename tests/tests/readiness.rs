//! `/readyz` means ready (issue 11 #16: it always answered "ready", whatever the store's state):
//! it fails while the write-ahead log replays at start-up, while flushes fail, and while the
//! data directory's file system is nearly full; `/healthz` stays liveness throughout.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::otlp::spans_request;
use e2e::{Server, eventually};
use prost::Message;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A collector started with known ports, without waiting for it to be ready.
struct Unready {
    child: Child,
    api: u16,
}

impl Unready {
    fn start(data_dir: &Path, extra: &[&str]) -> Unready {
        let api = free_port();
        let child = Command::new(e2e::binary())
            .args(["serve", "--otlp-grpc", &format!("127.0.0.1:{}", free_port())])
            .args(["--otlp-http", &format!("127.0.0.1:{}", free_port()), "--api", &format!("127.0.0.1:{api}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("SLO_GATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Unready { child, api }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let resp = client.get(format!("http://127.0.0.1:{}{path}", self.api)).send().ok()?;
        Some((resp.status().as_u16(), resp.text().unwrap_or_default()))
    }
}

impl Drop for Unready {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn not_ready_until_the_write_ahead_log_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--flush-interval", "1h", "--durability", "none"]);
    let client = reqwest::blocking::Client::new();
    let batches = 40u64;
    for batch in 1..=batches {
        let body = spans_request("replayed", batch, 5000).encode_to_vec();
        // As an OTLP exporter does, a write refused while the head waits for the flusher
        // (429/503, which a loaded test machine can see) is sent again.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = client
                .post(server.http_url("/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(body.clone())
                .send()
                .unwrap();
            let status = r.status();
            if status.is_success() {
                break;
            }
            assert!(
                matches!(status.as_u16(), 429 | 503) && Instant::now() < deadline,
                "batch {batch}: {status} {}",
                r.text().unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    server.kill();

    let collector = Unready::start(dir.path(), &["--flush-interval", "1h"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "never ready: {seen:?}");
        match collector.get("/readyz") {
            Some((200, _)) => break,
            // While replaying, the collector is alive.
            Some((status, text)) if !seen.iter().any(|(s, _)| *s == status) => {
                assert_eq!(collector.get("/healthz").map(|(s, _)| s), Some(200));
                seen.push((status, text));
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        seen.iter().any(|(s, t)| *s == 503 && t.contains("write-ahead log is being replayed")),
        "/readyz never said it was replaying: {seen:?}"
    );
    let (_, stats) = collector.get("/api/v1/stats").unwrap();
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["signals"]["traces"]["items"], batches * 5000);
}

#[test]
fn not_ready_while_flushes_fail() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--flush-interval", "200ms"]);
    // Parts cannot be written while `parts` is a file.
    std::fs::write(dir.path().join("parts"), b"not a directory").unwrap();
    let r = reqwest::blocking::Client::new()
        .post(server.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(spans_request("stuck", 1, 10).encode_to_vec())
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let why = eventually(Duration::from_secs(20), || {
        let (status, text) = server.get_text("/readyz");
        (status == 503).then_some(text)
    })
    .expect("/readyz kept saying ready while flushes failed");
    assert!(why.contains("not ready") && why.contains("parts"), "{why}");
    assert_eq!(server.get_text("/healthz").0, 200);
    std::fs::remove_file(dir.path().join("parts")).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || (server.get_text("/readyz").0 == 200).then_some(())).is_some(),
        "not ready again after flushes succeed"
    );
}

#[test]
fn not_ready_when_the_disk_is_nearly_full() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slo-gate.toml");
    // More free space than any disk here has: the disk counts as nearly full.
    std::fs::write(&config, "[storage]\nmin_free_bytes = 1125899906842624000\n").unwrap();
    let collector = Unready::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    // Once the store is open: while the WAL replays, `/readyz` says that instead.
    let answer = eventually(Duration::from_secs(30), || match collector.get("/healthz") {
        Some((200, _)) => collector.get("/readyz").filter(|(_, text)| !text.starts_with("starting:")),
        _ => None,
    })
    .expect("the collector never answered");
    assert_eq!(answer.0, 503, "{answer:?}");
    assert!(answer.1.contains("bytes free"), "{answer:?}");
}
