//! A full disk: the data directory is a 1 MiB tmpfs. Once the write-ahead log cannot grow,
//! requests get 503 with `Retry-After` and a message naming the cause; nothing acknowledged
//! before is lost, and the collector keeps answering queries.
//!
//! Mounting a tmpfs needs root, which CI and the development machines have.

use std::process::Command;

use e2e::Server;
use e2e::otlp::{spans_request, trace_id};
use prost::Message;

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap().keep();
        let status =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&dir).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "cannot mount a tmpfs at {} (this test needs root to simulate a full disk)",
            dir.display()
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn full_disk_refuses_with_503_and_keeps_what_was_acknowledged() {
    let disk = Tmpfs::mount("1m");
    // The whole disk is 1 MiB: readiness must not wait for free space it will never have.
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[storage]\nmin_free_bytes = 0\n").unwrap();
    let args = ["--flush-interval", "1h", "--config", config.path().to_str().unwrap()];
    let server = Server::start(&disk.0, &args);
    let client = reqwest::blocking::Client::new();
    let mut acked = Vec::new();
    let mut refusal = None;
    for batch in 1..=2000u64 {
        let resp = client
            .post(server.http_url("/v1/traces"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&spans_request("disk", batch, 50)).unwrap())
            .send()
            .unwrap();
        match resp.status().as_u16() {
            200 => acked.push(batch),
            503 => {
                let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                refusal = Some((retry, resp.text().unwrap()));
                break;
            }
            other => panic!("unexpected {other}: {}", resp.text().unwrap()),
        }
    }
    let (retry, body) = refusal.expect("the disk never filled up");
    assert_eq!(retry.as_deref(), Some("5"));
    assert!(
        body.contains("No space left on device") && body.contains("nothing from this request was stored"),
        "{body}"
    );
    assert!(acked.len() > 10, "only {} batches fit", acked.len());

    // Still serving, still answering, nothing acknowledged lost.
    assert_eq!(server.items("traces", None), acked.len() as u64 * 50);
    for &batch in acked.iter().step_by(7) {
        let (status, _) = server.get(&format!("/api/v1/traces/{}", hex::encode(trace_id(batch))), None);
        assert_eq!(status, 200);
    }
    let again = client
        .post(server.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(spans_request("disk", 9999, 50).encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(again.status().as_u16(), 503);

    // After a restart on the same (still full) disk, the log replays completely.
    server.kill();
    let server = Server::start(&disk.0, &args);
    assert_eq!(server.items("traces", None), acked.len() as u64 * 50);
}
