//! Tenant deletion (`POST /api/v1/admin/delete_tenant`) with the built binary, while two
//! tenants send spans that share parts (both are small: one `@shared` part per flush), the
//! collector flushes and merges every 100 ms:
//! - under load: every batch of the deleted tenant acknowledged before the request is gone,
//!   every one acknowledged after the answer is kept, and every batch of the other tenant is
//!   found whole and once — before and after a restart;
//! - killed with SIGKILL at a seeded point of a deletion (each step stalled 80 ms by the
//!   debug build's `SLO_GATE_FAULT_DELETE_STALL_MS`, so the kills land between different
//!   steps): after the restart the deleted tenant's batches are all there or none (a deletion
//!   that made its marker durable is finished by the start), and the other tenant's are whole
//!   and once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::otlp::trace_id;
use e2e::{Rng, Server};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use reqwest::blocking::Client;

const SPANS_PER_BATCH: u64 = 10;
const HOUR: u64 = 3_600_000_000_000;
const ADMIN: &str = "ops-secret-token-0123456789abcdef0123";
/// The deleted tenant's batches are numbered from here, the kept tenant's from 0.
const GONE_FIRST: u64 = 1_000_000;

/// Flushes and merges every 100 ms; an admin token for every tenant; no credential needed to
/// send or read (the admin scope is never anonymous).
fn config(dir: &Path) -> PathBuf {
    use sha2::Digest;
    let tokens = dir.join("tokens");
    let digest = hex::encode(sha2::Sha256::digest(ADMIN.as_bytes()));
    std::fs::write(&tokens, format!("ops * admin sha256:{digest}\n")).unwrap();
    let path = dir.join("slo-gate.toml");
    let text = format!(
        "retention = \"7d\"\n[storage]\nflush_interval = \"100ms\"\n\
         [storage.compaction]\nmin_parts = 2\ninterval = \"100ms\"\n\
         [auth]\ntoken_file = {:?}\n",
        tokens.display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Batch `batch`: one trace of `SPANS_PER_BATCH` spans (ids 1..), three hours ago, so merges
/// take its parts at once.
fn batch_request(batch: u64) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    e2e::otlp::batch_request(
        "deletion",
        batch,
        SPANS_PER_BATCH,
        (now / HOUR - 3) * HOUR + (batch % 3000) * 1_000_000_000,
    )
}

/// Each acknowledged batch and when its acknowledgement came.
type Acked = Arc<Mutex<Vec<(u64, Instant)>>>;

/// Sends `tenant`'s batches from `first` on, 20 ms apart, until `stop` or the server is gone
/// (requests refused with 429 or 503 are sent again).
fn send(
    server: &Server,
    tenant: &'static str,
    first: u64,
    stop: Arc<AtomicBool>,
) -> (Acked, std::thread::JoinHandle<()>) {
    let acked: Acked = Arc::default();
    let (url, out) = (server.http_url("/v1/traces"), Arc::clone(&acked));
    let thread = std::thread::spawn(move || {
        let client = Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        for batch in first.. {
            loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let sent = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .header("X-Scope-OrgID", tenant)
                    .body(batch_request(batch).encode_to_vec())
                    .send();
                match sent {
                    Ok(r) if r.status().is_success() => break,
                    Ok(r) if matches!(r.status().as_u16(), 429 | 503) => std::thread::sleep(Duration::from_millis(50)),
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return,
                }
            }
            out.lock().unwrap().push((batch, Instant::now()));
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    (acked, thread)
}

/// The span ids `tenant`'s trace of `batch` is answered with, sorted (none for a 404).
fn span_ids(server: &Server, tenant: &str, batch: u64) -> Vec<String> {
    server.span_ids_of(&hex::encode(trace_id(batch)), Some(tenant))
}

fn whole() -> Vec<String> {
    let mut ids: Vec<String> = (1..=SPANS_PER_BATCH).map(|i| hex::encode(i.to_be_bytes())).collect();
    ids.sort();
    ids
}

/// Deletes tenant `gone`; the status and body (status 0 when no answer came).
fn delete(url: &str) -> (u16, String) {
    let sent = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .post(url)
        .header("X-Scope-OrgID", "gone")
        .header("authorization", format!("Bearer {ADMIN}"))
        .send();
    match sent {
        Ok(response) => (response.status().as_u16(), response.text().unwrap_or_default()),
        Err(err) => (0, err.to_string()),
    }
}

fn items(server: &Server, tenant: &str) -> u64 {
    server.items("traces", Some(tenant))
}

#[test]
fn a_tenant_deleted_under_load_loses_what_came_before_and_keeps_what_came_after_and_the_other_tenant_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let data = dir.path().join("data");
    let args = ["--config", cfg.to_str().unwrap()];
    let server = Server::start(&data, &args);
    let stop = Arc::new(AtomicBool::new(false));
    let (kept, keep_sender) = send(&server, "keep", 0, Arc::clone(&stop));
    let (gone, gone_sender) = send(&server, "gone", GONE_FIRST, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(1_500));

    let asked = Instant::now();
    let (status, body) = delete(&server.api_url("/api/v1/admin/delete_tenant"));
    let answered = Instant::now();
    assert_eq!(status, 200, "{body}");
    eprintln!("deleted in {:?}: {body}", answered - asked);
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(answer["deleted"]["parts_rewritten"].as_u64().unwrap() > 0, "the tenants shared parts: {body}");
    std::thread::sleep(Duration::from_millis(1_000));
    stop.store(true, Ordering::Relaxed);
    keep_sender.join().unwrap();
    gone_sender.join().unwrap();

    let gone = gone.lock().unwrap().clone();
    let before: Vec<u64> = gone.iter().filter(|(_, at)| *at < asked).map(|(b, _)| *b).collect();
    let after: Vec<u64> = gone.iter().filter(|(_, at)| *at > answered).map(|(b, _)| *b).collect();
    let kept: Vec<u64> = kept.lock().unwrap().iter().map(|(b, _)| *b).collect();
    assert!(
        before.len() >= 20 && after.len() >= 10 && kept.len() >= 50,
        "{} {} {}",
        before.len(),
        after.len(),
        kept.len()
    );
    let check = |server: &Server, when: &str| {
        for &batch in &before {
            assert_eq!(
                span_ids(server, "gone", batch),
                Vec::<String>::new(),
                "{when}: batch {batch} before the request"
            );
        }
        for &batch in &after {
            assert_eq!(span_ids(server, "gone", batch), whole(), "{when}: batch {batch} after the answer");
        }
        for &batch in &kept {
            assert_eq!(span_ids(server, "keep", batch), whole(), "{when}: the other tenant's batch {batch}");
        }
        // Whole batches only, and none twice.
        assert_eq!(items(server, "keep"), kept.len() as u64 * SPANS_PER_BATCH, "{when}");
        let gone_items = items(server, "gone");
        assert_eq!(gone_items % SPANS_PER_BATCH, 0, "{when}");
        assert!(gone_items <= (gone.len() - before.len()) as u64 * SPANS_PER_BATCH, "{when}: {gone_items}");
    };
    check(&server, "running");
    server.stop();
    let server = Server::start(&data, &args);
    check(&server, "after a restart");
    server.stop();
}

#[test]
fn a_deletion_killed_with_sigkill_is_all_or_nothing_after_the_restart() {
    let mut finished_at_start = 0;
    for seed in 1..=5u64 {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let data = dir.path().join("data");
        let args = ["--config", cfg.to_str().unwrap()];
        let server = Server::start_with_env(&data, &args, &[("SLO_GATE_FAULT_DELETE_STALL_MS", "80")]);
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, keep_sender) = send(&server, "keep", 0, Arc::clone(&stop));
        let (gone, gone_sender) = send(&server, "gone", GONE_FIRST, Arc::clone(&stop));
        std::thread::sleep(Duration::from_millis(2_000));
        stop.store(true, Ordering::Relaxed);
        keep_sender.join().unwrap();
        gone_sender.join().unwrap();

        // The deletion, and a kill a seeded number of milliseconds into it.
        let url = server.api_url("/api/v1/admin/delete_tenant");
        let request = std::thread::spawn(move || delete(&url));
        let delay = Duration::from_millis(Rng(seed).next() % 450);
        std::thread::sleep(delay);
        server.kill();
        let answered = request.join().unwrap().0 == 200;
        let marker = data.join("deleting/gone").exists();
        finished_at_start += u64::from(marker);

        let server = Server::start(&data, &args);
        let gone: Vec<u64> = gone.lock().unwrap().iter().map(|(b, _)| *b).collect();
        let kept: Vec<u64> = kept.lock().unwrap().iter().map(|(b, _)| *b).collect();
        let found = gone.iter().filter(|&&b| span_ids(&server, "gone", b) == whole()).count();
        let what = format!("seed {seed} (kill after {delay:?}, answered: {answered}, marker left: {marker})");
        assert!(found == 0 || found == gone.len(), "{what}: {found} of {} batches of the tenant left", gone.len());
        if answered || marker {
            assert_eq!(found, 0, "{what}");
        }
        for &batch in &kept {
            assert_eq!(span_ids(&server, "keep", batch), whole(), "{what}: the other tenant's batch {batch}");
        }
        assert_eq!(items(&server, "keep"), kept.len() as u64 * SPANS_PER_BATCH, "{what}");
        assert!(!data.join("deleting/gone").exists(), "{what}: the start finished the deletion");
        // Repeated, the deletion finishes whatever the kill left.
        let (status, body) = delete(&server.api_url("/api/v1/admin/delete_tenant"));
        assert_eq!(status, 200, "{what}: {body}");
        assert_eq!(items(&server, "gone"), 0, "{what}");
        server.stop();
    }
    eprintln!("{finished_at_start} of 5 kills left a deletion for the start to finish");
    assert!(finished_at_start >= 2, "the kills did not land inside deletions");
}
