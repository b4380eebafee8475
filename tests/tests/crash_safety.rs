//! Crash safety: batches are sent while the collector is killed with SIGKILL, more than once,
//! with flushes to Parquet parts happening all along (a small head). After each restart on
//! the same data directory, every acknowledged batch is there exactly once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::Server;
use e2e::otlp::{spans_request, trace_id};
use prost::Message;

const SPANS_PER_BATCH: usize = 40;

/// Sends batches from `threads` senders until `stop`; returns the acknowledged batch numbers.
fn load(
    server: &Server,
    first_batch: u64,
    threads: u64,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<u64>>> {
    (0..threads)
        .map(|t| {
            let url = server.http_url("/v1/traces");
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                let mut acked = Vec::new();
                let mut batch = first_batch + t;
                while !stop.load(Ordering::Relaxed) {
                    let body = spans_request("crashy", batch, SPANS_PER_BATCH).encode_to_vec();
                    match client.post(&url).header("content-type", "application/x-protobuf").body(body).send() {
                        Ok(r) if r.status().is_success() => acked.push(batch),
                        // Backpressure: retry the same batch, as OTLP exporters do.
                        Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break, // the server is gone
                    }
                    batch += threads;
                }
                acked
            })
        })
        .collect()
}

fn spans_of(server: &Server, batch: u64) -> usize {
    let (status, body) = server.get(&format!("/api/v1/traces/{}", hex::encode(trace_id(batch))), None);
    if status == 404 {
        return 0;
    }
    assert_eq!(status, 200, "{body}");
    body["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
        .map(|ss| ss["spans"].as_array().unwrap().len())
        .sum()
}

#[test]
fn acknowledged_batches_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--max-head-bytes", "60000", "--flush-interval", "1s"];
    let acked_all = Arc::new(Mutex::new(Vec::new()));
    let mut server = Server::start(dir.path(), &args);
    for round in 0..3u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let senders = load(&server, 1 + round * 1_000_000, 4, Arc::clone(&stop));
        std::thread::sleep(Duration::from_millis(1500));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            acked_all.lock().unwrap().extend(s.join().unwrap());
        }
        server = Server::start(dir.path(), &args);
        let acked = acked_all.lock().unwrap().clone();
        assert!(acked.len() > 20, "round {round}: only {} batches acknowledged", acked.len());
        for &batch in &acked {
            assert_eq!(spans_of(&server, batch), SPANS_PER_BATCH, "round {round}: batch {batch} after restart");
        }
        // Batches in flight at the kill may or may not have been stored, but only whole.
        let items = server.items("traces", None);
        assert_eq!(items % SPANS_PER_BATCH as u64, 0, "a partial batch was stored");
        assert!(items >= (acked.len() * SPANS_PER_BATCH) as u64);
        assert!(items <= ((acked.len() + 4 * (round as usize + 1)) * SPANS_PER_BATCH) as u64, "duplicates: {items}");
    }
    let (_, stats) = server.get("/api/v1/stats", None);
    assert!(stats["signals"]["traces"]["parts"].as_u64().unwrap() > 0, "no flush happened during the load: {stats}");
}

/// A torn last record (as a crash mid-write leaves) is dropped at start-up and the rest of
/// the log is replayed; the server starts and reports it.
#[test]
fn torn_wal_tail_is_dropped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--flush-interval", "1h"]);
    let client = reqwest::blocking::Client::new();
    for batch in 1..=3 {
        let r = client
            .post(server.http_url("/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(spans_request("torn", batch, 5).encode_to_vec())
            .send()
            .unwrap();
        assert!(r.status().is_success());
    }
    server.kill();
    let wal = dir.path().join("wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    // Cut into the middle of the third record.
    let file = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    file.set_len(len - 30).unwrap();
    drop(file);

    let server = Server::start(dir.path(), &["--flush-interval", "1h"]);
    assert_eq!(spans_of(&server, 1), 5);
    assert_eq!(spans_of(&server, 2), 5);
    assert_eq!(spans_of(&server, 3), 0);
    let (_, metrics) = server.get("/metrics", None);
    assert!(metrics.as_str().unwrap().contains("slo_gate_wal_damaged_segments_total 1"));
}
