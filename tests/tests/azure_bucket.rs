//! Collectors sharing an Azure Blob Storage container (`url = "az://container/prefix"`),
//! against Azurite (`e2e::azurite`): two collectors take data, killed and restarted mid-load,
//! and a third takes none; each answers for all of it, whole and once, and merges run in the
//! container under leases (create-only writes and writes conditional on the e-tag, which
//! Azure's blob service honours as S3 does).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::Server;
use e2e::azurite::Azurite;
use e2e::otlp::trace_id;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

const SPANS_PER_BATCH: u64 = 10;
const HOUR: u64 = 3_600_000_000_000;
const CONTAINER: &str = "telemetry";

/// A collector on the container: flushes and merges every 200 ms, lists every 300 ms.
fn start(azurite: &Azurite, dir: &Path, name: &str) -> Server {
    let cfg = dir.join(format!("{name}.toml"));
    let text = format!(
        "retention = \"7d\"\n[storage]\nflush_interval = \"200ms\"\n\
         [storage.compaction]\nmin_parts = 2\ninterval = \"200ms\"\n\
         [storage.bucket]\nurl = \"az://{CONTAINER}/slo-gate\"\nwriter_id = \"{name}\"\n\
         refresh_interval = \"300ms\"\nrequest_timeout = \"5s\"\ncompaction_lease = \"3s\"\n"
    );
    std::fs::write(&cfg, text).unwrap();
    let env = azurite.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_with_env(&dir.join(format!("{name}-data")), &["--config", cfg.to_str().unwrap()], &env)
}

/// Batch `batch`: one trace of `SPANS_PER_BATCH` spans, three or four hours ago (so merges take
/// its parts at once).
fn batch_request(batch: u64) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let start = (now / HOUR - 3 - batch % 2) * HOUR + (batch % 3000) * 1_000_000_000;
    e2e::otlp::batch_request("azure", batch, SPANS_PER_BATCH, start)
}

fn send(server: &Server, first: u64, limit: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u64>> {
    let body = |batch| batch_request(batch).encode_to_vec();
    let batches = (first..).take(usize::try_from(limit).unwrap_or(usize::MAX));
    e2e::send_batches(server.http_url("/v1/traces"), batches, stop, Duration::from_millis(30), body)
}

fn counter(server: &Server, name: &str) -> u64 {
    let (_, text) = server.get_text("/metrics");
    let prefix = format!("{name} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse::<u64>().ok()).unwrap_or(0)
}

#[test]
fn collectors_sharing_an_azure_container_answer_for_each_other_and_a_killed_one_loses_nothing() {
    let azurite = Azurite::start();
    azurite.create_container(CONTAINER);
    let dir = tempfile::tempdir().unwrap();
    let a = start(&azurite, dir.path(), "a");
    let b = start(&azurite, dir.path(), "b");
    let reader = start(&azurite, dir.path(), "reader");

    let stop = Arc::new(AtomicBool::new(false));
    let to_a = send(&a, 1_000_000, u64::MAX, Arc::clone(&stop));
    let to_b = send(&b, 2_000_000, 60, Arc::new(AtomicBool::new(false)));
    std::thread::sleep(Duration::from_millis(2_000));
    a.kill();
    stop.store(true, Ordering::Relaxed);
    let mut acked = to_a.join().unwrap();
    let acked_b = to_b.join().unwrap();
    assert!(acked.len() > 10 && acked_b.len() > 10, "{} and {} batches acknowledged", acked.len(), acked_b.len());
    let a = start(&azurite, dir.path(), "a");
    acked.extend(send(&a, 3_000_000, 10, Arc::new(AtomicBool::new(false))).join().unwrap());
    acked.extend(acked_b);

    let mut expected: Vec<String> = (1..=SPANS_PER_BATCH).map(|i| hex::encode(i.to_be_bytes())).collect();
    expected.sort();
    for (who, server) in [("reader", &reader), ("a", &a), ("b", &b)] {
        let mut missing = None;
        let found = e2e::eventually(Duration::from_secs(60), || {
            missing = acked.iter().find(|&&batch| server.span_ids(&hex::encode(trace_id(batch))) != expected).copied();
            missing.is_none().then_some(())
        });
        assert!(found.is_some(), "{who} does not answer batch {missing:?} whole: {}", azurite.log());
    }
    // Whole batches, none twice (the one in flight at the kill may or may not be there).
    let settled = e2e::eventually(Duration::from_secs(30), || {
        let items = reader.items("traces", None);
        (items == a.items("traces", None) && items == b.items("traces", None)).then_some(items)
    });
    let items = settled.expect("the collectors did not settle on one count");
    assert_eq!(items % SPANS_PER_BATCH, 0, "a partial batch was stored");
    assert!(items >= acked.len() as u64 * SPANS_PER_BATCH && items <= (acked.len() as u64 + 1) * SPANS_PER_BATCH);
    // Merges ran in the container, under a lease taken and renewed with conditional writes.
    let merged = e2e::eventually(Duration::from_secs(30), || {
        ([&a, &b, &reader].iter().map(|s| counter(s, "slo_gate_bucket_merges_total")).sum::<u64>() > 0).then_some(())
    });
    assert!(merged.is_some(), "nobody merged in the container");
    for server in [a, b, reader] {
        server.stop();
    }
}

#[test]
fn an_absent_container_stops_the_start_naming_it() {
    let azurite = Azurite::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[storage.bucket]\nurl = \"az://missing/slo-gate\"\nrequest_timeout = \"5s\"\n").unwrap();
    let mut command = std::process::Command::new(e2e::binary());
    command
        .args(["serve", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&cfg);
    for (k, v) in azurite.env() {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert!(!out.status.success());
    let text = e2e::output_text(&out);
    assert!(text.contains("az://missing/slo-gate"), "{text}");
}
