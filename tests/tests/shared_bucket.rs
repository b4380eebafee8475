//! Collectors sharing one S3 bucket (`[storage.bucket]`), against a real S3 server (SeaweedFS,
//! `e2e::seaweed`): two collectors take data and a third takes none; each answers for all of
//! it. A collector killed with SIGKILL mid-load and restarted loses and doubles nothing that
//! was acknowledged, its merges (compaction runs every 200 ms on a past hour) included. The
//! bucket away during ingest costs nothing acknowledged: the parts wait locally, `/readyz`
//! says so, and uploads resume. An unreachable bucket or refused credentials stop the start
//! with an error naming the bucket, and a damaged part in the bucket costs that part, with a
//! warning naming it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::Server;
use e2e::otlp::{kv, trace_id};
use e2e::seaweed::Seaweed;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const SPANS_PER_BATCH: u64 = 10;
const HOUR: u64 = 3_600_000_000_000;
const BUCKET: &str = "telemetry";

/// A collector's config: flushes and merges every 200 ms, the bucket listed every 300 ms.
fn config(dir: &Path, name: &str, endpoint: &str, writer: &str) -> PathBuf {
    config_flushing(dir, name, endpoint, writer, "200ms")
}

fn config_flushing(dir: &Path, name: &str, endpoint: &str, writer: &str, flush: &str) -> PathBuf {
    config_with(dir, name, endpoint, writer, flush, "")
}

/// [`config_flushing`] with more `[storage.bucket]` lines. The compaction log is
/// checkpointed every three entries unless they say otherwise, so every test here runs
/// with checkpoints being made.
fn config_with(dir: &Path, name: &str, endpoint: &str, writer: &str, flush: &str, bucket: &str) -> PathBuf {
    let checkpoints = if bucket.contains("log_checkpoint_every") { "" } else { "log_checkpoint_every = 3\n" };
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "retention = \"7d\"\n[storage]\nflush_interval = \"{flush}\"\n\
         [storage.compaction]\nmin_parts = 2\ninterval = \"200ms\"\n\
         [storage.bucket]\nurl = \"s3://{BUCKET}/slo-gate\"\nendpoint = \"{endpoint}\"\nwriter_id = \"{writer}\"\n\
         refresh_interval = \"300ms\"\nrequest_timeout = \"5s\"\n{checkpoints}{bucket}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn start(seaweed: &Seaweed, dir: &Path, name: &str) -> Server {
    start_with(seaweed, dir, name, "", &[])
}

/// A collector with more `[storage.bucket]` lines and environment.
fn start_with(seaweed: &Seaweed, dir: &Path, name: &str, bucket: &str, env: &[(&str, &str)]) -> Server {
    let cfg = config_with(dir, name, &seaweed.endpoint(), name, "200ms", bucket);
    let mut all = vec![("AWS_ACCESS_KEY_ID", seaweed.access_key()), ("AWS_SECRET_ACCESS_KEY", seaweed.secret_key())];
    all.extend_from_slice(env);
    Server::start_with_env(&dir.join(format!("{name}-data")), &["--config", cfg.to_str().unwrap()], &all)
}

/// Batch `batch`: one trace of `SPANS_PER_BATCH` spans (ids 1..), three or four hours ago
/// (alternately, so each hour's parts leave numbers free for merges), so the collector's merges
/// take its parts at once.
fn batch_request(batch: u64) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let start = (now / HOUR - 3 - batch % 2) * HOUR + (batch % 3000) * 1_000_000_000;
    e2e::otlp::batch_request("shared", batch, SPANS_PER_BATCH, start)
}

/// Sends batches from `first` on until `stop`, `limit` batches or the server is gone; returns
/// the acknowledged ones.
fn send(server: &Server, first: u64, limit: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u64>> {
    let body = |batch| batch_request(batch).encode_to_vec();
    let batches = (first..).take(usize::try_from(limit).unwrap_or(usize::MAX));
    e2e::send_batches(server.http_url("/v1/traces"), batches, stop, Duration::from_millis(30), body)
}

/// The span ids of one batch's trace, as a collector answers them (404: none).
fn span_ids(server: &Server, batch: u64) -> Vec<String> {
    server.span_ids(&hex::encode(trace_id(batch)))
}

fn expected_ids() -> Vec<String> {
    let mut ids: Vec<String> = (1..=SPANS_PER_BATCH).map(|i| hex::encode(i.to_be_bytes())).collect();
    ids.sort();
    ids
}

/// Waits until `server` answers every batch of `acked` whole and once; panics naming the
/// first batch that is not.
fn all_found(server: &Server, who: &str, acked: &[u64]) {
    let expected = expected_ids();
    let mut missing = None;
    let found = e2e::eventually(Duration::from_secs(60), || {
        missing = acked.iter().find(|&&b| span_ids(server, b) != expected).copied();
        missing.is_none().then_some(())
    });
    if found.is_none() {
        let b = missing.unwrap();
        panic!("{who}: batch {b} answered as {:?} of {} acknowledged", span_ids(server, b), acked.len());
    }
}

/// A counter of `/metrics`.
fn counter(server: &Server, name: &str) -> u64 {
    let (_, text) = server.get_text("/metrics");
    let prefix = format!("{name} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse::<u64>().ok()).unwrap_or(0)
}

fn ready_text(server: &Server) -> String {
    server.get_text("/readyz").1
}

#[test]
fn collectors_sharing_a_bucket_answer_for_each_other_and_a_killed_one_loses_nothing() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let a = start(&seaweed, dir.path(), "a");
    let b = start(&seaweed, dir.path(), "b");
    let reader = start(&seaweed, dir.path(), "reader");

    // Both collectors take data at once; `a` is killed mid-load and started again.
    let stop = Arc::new(AtomicBool::new(false));
    let to_a = send(&a, 1_000_000, u64::MAX, Arc::clone(&stop));
    let to_b = send(&b, 2_000_000, 80, Arc::new(AtomicBool::new(false)));
    std::thread::sleep(Duration::from_millis(2_500));
    a.kill();
    stop.store(true, Ordering::Relaxed);
    let mut acked_a = to_a.join().unwrap();
    let acked_b = to_b.join().unwrap();
    assert!(acked_a.len() > 10 && acked_b.len() > 10, "{} and {} batches acknowledged", acked_a.len(), acked_b.len());
    let a = start(&seaweed, dir.path(), "a");
    let more = send(&a, 3_000_000, 20, Arc::new(AtomicBool::new(false))).join().unwrap();
    acked_a.extend(more);

    let acked: Vec<u64> = acked_a.iter().chain(&acked_b).copied().collect();
    for (who, server) in [("reader", &reader), ("a", &a), ("b", &b)] {
        all_found(server, who, &acked);
    }
    // Batches in flight at the kill may or may not be stored, but whole and once: the reader's
    // count is the acknowledged batches and at most the one in flight, merges notwithstanding.
    let settled = e2e::eventually(Duration::from_secs(30), || {
        let items = reader.items("traces", None);
        let (a_ready, b_ready) = (ready_text(&a), ready_text(&b));
        (a_ready == "ready\n" && b_ready == "ready\n" && items == a.items("traces", None)).then_some(items)
    });
    let items = settled.unwrap_or_else(|| {
        panic!(
            "uploads did not settle: reader {} spans, a {}, a says {:?}, b says {:?}",
            reader.items("traces", None),
            a.items("traces", None),
            ready_text(&a),
            ready_text(&b)
        )
    });
    assert_eq!(items % SPANS_PER_BATCH, 0, "a partial batch was stored");
    assert!(items >= acked.len() as u64 * SPANS_PER_BATCH, "{items} spans for {} batches", acked.len());
    assert!(
        items <= (acked.len() as u64 + 1) * SPANS_PER_BATCH,
        "duplicates: {items} spans for {} batches",
        acked.len()
    );
    assert_eq!(b.items("traces", None), items);
    // Parts read from the bucket are the writing tenant's only.
    assert_eq!(reader.items("traces", Some("team-b")), 0);
    let other = reader.get(&format!("/api/v1/traces/{}", hex::encode(trace_id(acked[0]))), Some("team-b"));
    assert_eq!(other.0, 404, "{}", other.1);
    // Merges ran meanwhile, in the bucket, by whichever collector held the lease: their log
    // entries replaced parts the readers had listed.
    let merged = e2e::eventually(Duration::from_secs(30), || {
        ([&a, &b, &reader].iter().map(|s| counter(s, "slo_gate_bucket_merges_total")).sum::<u64>() > 0).then_some(())
    });
    assert!(merged.is_some(), "nobody merged in the bucket");
    a.stop();
    b.stop();
    reader.stop();
}

fn logs_request(service: &str, lines: u64) -> ExportLogsServiceRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let log_records = (0..lines)
        .map(|i| LogRecord {
            time_unix_nano: now + i,
            severity_number: 9,
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("{service} line {i}"))) }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
            scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn post_logs(server: &Server, request: &ExportLogsServiceRequest) {
    let response = reqwest::blocking::Client::new()
        .post(server.http_url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// The start of `serve` with a bucket config, expected to fail: its exit status and stderr.
fn failed_start(dir: &Path, name: &str, endpoint: &str, secret: &str, access: &str) -> String {
    let cfg = config(dir, name, endpoint, name);
    let mut child = Command::new(e2e::binary())
        .args(["serve", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.join(format!("{name}-data")))
        .args(["--config", cfg.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", access)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = e2e::eventually(Duration::from_secs(60), || child.try_wait().unwrap());
    let Some(status) = status else {
        let _ = child.kill();
        panic!("{name}: the collector started without its bucket");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{name}: {stderr}");
    stderr
}

/// A `writer_id` that committed to the bucket, configured again over a new data directory (a
/// lost volume, a pod rescheduled onto an empty one), stops the start with an error saying
/// so: a collector reads its own parts from its data directory, so it would miss what it
/// committed before, and its new series segments would overwrite its old ones. Over its own
/// directory the id starts as before; a new id over the new directory reads everything.
#[test]
fn a_writer_id_that_committed_before_is_refused_over_a_new_data_directory() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let a = start(&seaweed, dir.path(), "a");
    let acked = send(&a, 42_000_000, 5, Arc::new(AtomicBool::new(false))).join().unwrap();
    assert_eq!(acked.len(), 5);
    assert!(a.stop().success());

    let elsewhere = tempfile::tempdir().unwrap();
    let stderr = failed_start(elsewhere.path(), "a", &seaweed.endpoint(), seaweed.secret_key(), seaweed.access_key());
    assert!(
        stderr.contains("writer_id \"a\" committed to this bucket before (manifests/")
            && stderr.contains("this data directory holds nothing it committed"),
        "{stderr}"
    );
    assert!(!stderr.contains(&elsewhere.path().display().to_string()), "no absolute paths: {stderr}");

    let a = start(&seaweed, dir.path(), "a");
    all_found(&a, "a", &acked);
    a.stop();
    let b = start(&seaweed, elsewhere.path(), "b");
    all_found(&b, "b", &acked);
    assert_eq!(b.items("traces", None), acked.len() as u64 * SPANS_PER_BATCH, "every span once");
    b.stop();
}

#[test]
fn an_absent_bucket_costs_nothing_acknowledged_and_a_damaged_part_costs_that_part() {
    let mut seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();

    // Refused credentials and an unreachable endpoint stop the start, naming the bucket.
    let wrong = failed_start(dir.path(), "wrong", &seaweed.endpoint(), "not-the-secret", seaweed.access_key());
    assert!(wrong.contains(&format!("bucket s3://{BUCKET}/slo-gate at {}", seaweed.endpoint())), "{wrong}");
    let closed = format!("http://127.0.0.1:{}", e2e::go::free_port());
    let unreachable = failed_start(dir.path(), "away", &closed, seaweed.secret_key(), seaweed.access_key());
    assert!(unreachable.contains(&format!("bucket s3://{BUCKET}/slo-gate at {closed}")), "{unreachable}");

    // The bucket goes away while `a` takes data: acknowledged, kept, and said by readiness.
    let a = start(&seaweed, dir.path(), "a");
    post_logs(&a, &logs_request("checkout", 50));
    seaweed.kill();
    let acked = send(&a, 5_000_000, 30, Arc::new(AtomicBool::new(false))).join().unwrap();
    assert_eq!(acked.len(), 30, "writes refused while the bucket was away");
    let waiting = e2e::eventually(Duration::from_secs(20), || {
        let text = ready_text(&a);
        text.contains("waiting for upload").then_some(text)
    });
    let waiting = waiting.unwrap_or_else(|| panic!("readiness said nothing of the bucket: {:?}", ready_text(&a)));
    assert!(waiting.starts_with("ready; ") && waiting.contains(BUCKET), "{waiting}");
    seaweed.restart();
    let settled = e2e::eventually(Duration::from_secs(60), || (ready_text(&a) == "ready\n").then_some(()));
    assert!(settled.is_some(), "uploads did not resume: {:?}", ready_text(&a));

    // A collector started now reads it all from the bucket.
    let b = start(&seaweed, dir.path(), "b");
    post_logs(&b, &logs_request("payments", 40));
    all_found(&b, "b", &acked);
    let reader = start(&seaweed, dir.path(), "reader");
    all_found(&reader, "reader", &acked);
    let logs = |server: &Server| server.get("/api/v1/logs?limit=1000", None).1;
    let both = e2e::eventually(Duration::from_secs(30), || {
        let answer = logs(&reader);
        (answer["logs"].as_array().map(Vec::len) == Some(90)).then_some(answer)
    });
    assert!(both.is_some(), "the reader lists {}", logs(&reader));

    // `a`'s logs part damaged in the bucket (same length, other bytes): a reader that has not
    // cached it answers `b`'s logs and names the damaged object.
    let damaged = objects(&seaweed, "/a-").into_iter().rfind(|k| k.contains("/logs/"));
    let damaged = damaged.expect("a logs part of a in the bucket");
    damage_object(&seaweed, &damaged);
    let fresh = start(&seaweed, dir.path(), "fresh");
    let answer = logs(&fresh);
    let rows = answer["logs"].as_array().unwrap();
    assert_eq!(rows.len(), 40, "{answer}");
    assert!(rows.iter().all(|r| r.to_string().contains("payments")), "{answer}");
    let warnings = answer["warnings"].to_string();
    let object = damaged.strip_prefix("slo-gate/").unwrap();
    assert!(warnings.contains(object) && warnings.contains("checksum"), "{warnings}");
    assert!(!warnings.contains(&dir.path().display().to_string()), "an absolute path in {warnings}");
    for server in [a, b, reader, fresh] {
        server.stop();
    }
}

/// A part larger than one upload chunk (8 MiB) goes up as a multipart upload and reads back
/// whole on another collector.
#[test]
fn a_part_larger_than_an_upload_chunk_reads_back_from_the_bucket() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    // Flushed every 10 s, so the spans below make one part.
    let cfg = config_flushing(dir.path(), "big", &seaweed.endpoint(), "big", "10s");
    let env = [("AWS_ACCESS_KEY_ID", seaweed.access_key()), ("AWS_SECRET_ACCESS_KEY", seaweed.secret_key())];
    let writer = Server::start_with_env(&dir.path().join("big-data"), &["--config", cfg.to_str().unwrap()], &env);
    let reader = start(&seaweed, dir.path(), "reader");
    // 200,000 spans with 240 hex digits of noise each, in one hour: a part of over 8 MiB.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = || {
        (0..15)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                format!("{state:016x}")
            })
            .collect::<String>()
    };
    let client = reqwest::blocking::Client::new();
    let (requests, per_request) = (40u64, 5_000u64);
    let batch = |r: u64| 9_000_000 + 2 * r;
    for r in 0..requests {
        let mut request = batch_request(batch(r));
        let spans = &mut request.resource_spans[0].scope_spans[0].spans;
        let template = spans[0].clone();
        spans.clear();
        for i in 0..per_request {
            let mut span = template.clone();
            span.span_id = (i + 1).to_be_bytes().to_vec();
            span.attributes = vec![kv("noise", &noise())];
            spans.push(span);
        }
        let body = request.encode_to_vec();
        // Sent again after a 429 (the head full while the flusher catches up), as OTLP
        // exporters retry it.
        let mut tries = 0;
        let response = loop {
            let response = client
                .post(writer.http_url("/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(body.clone())
                .send()
                .unwrap();
            tries += 1;
            if response.status().as_u16() != 429 || tries == 50 {
                break response;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(response.status().is_success(), "{}", response.status());
    }
    let total = requests * per_request;
    let listed = e2e::eventually(Duration::from_secs(120), || {
        (ready_text(&writer) == "ready\n" && reader.items("traces", None) == total).then_some(())
    });
    assert!(listed.is_some(), "the reader lists {} of {total} spans", reader.items("traces", None));
    let store = seaweed.builder(BUCKET).build().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let largest = runtime.block_on(async {
        let prefix = object_store::path::Path::from("slo-gate/parts");
        let mut listing = store.list(Some(&prefix));
        let mut largest = 0;
        while let Some(item) = futures_util::StreamExt::next(&mut listing).await {
            largest = largest.max(item.unwrap().size);
        }
        largest
    });
    assert!(largest > 8 << 20, "the largest part is {largest} bytes: not a multipart upload");
    for r in [0, requests / 2, requests - 1] {
        let (status, body) = reader.get(&format!("/api/v1/traces/{}", hex::encode(trace_id(batch(r)))), None);
        assert_eq!(status, 200, "{body}");
        let spans: usize = body["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
            .map(|ss| ss["spans"].as_array().unwrap().len())
            .sum();
        assert_eq!(spans as u64, per_request, "trace of request {r}");
    }
    writer.stop();
    reader.stop();
}

/// How the first compactor is stopped mid-merge.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Stop {
    /// SIGKILL, then started again.
    Kill,
    /// SIGSTOP until its successor has committed, then SIGCONT: it must give its merge up.
    Pause,
}

/// The objects under `parts/` whose names contain `needle`.
fn objects(seaweed: &Seaweed, needle: &str) -> Vec<String> {
    objects_under(seaweed, "parts", needle)
}

/// The bodies of the lease objects.
fn leases(seaweed: &Seaweed) -> Vec<serde_json::Value> {
    let store = seaweed.builder(BUCKET).build().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    objects_under(seaweed, "leases", "")
        .into_iter()
        .map(|key| {
            let key = object_store::path::Path::from(key);
            let bytes = runtime.block_on(async { store.get(&key).await.unwrap().bytes().await.unwrap() });
            serde_json::from_slice(&bytes).unwrap()
        })
        .collect()
}

/// Writes one object (a key as `objects_under` lists it) again with its middle byte flipped:
/// the same length, other bytes.
fn damage_object(seaweed: &Seaweed, key: &str) {
    let store = seaweed.builder(BUCKET).build().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = object_store::path::Path::from(key);
    runtime.block_on(async {
        let mut bytes = store.get(&key).await.unwrap().bytes().await.unwrap().to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        store.put(&key, PutPayload::from(bytes)).await.unwrap();
    });
}

/// Writes one object (a key as `objects_under` lists it).
fn put_object(seaweed: &Seaweed, key: &str, body: &[u8]) {
    let store = seaweed.builder(BUCKET).build().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = object_store::path::Path::from(key);
    runtime.block_on(async { store.put(&key, PutPayload::from(body.to_vec())).await.unwrap() });
}

/// Whether object `key` (as `objects_under` lists it) is in the bucket.
fn exists(seaweed: &Seaweed, key: &str) -> bool {
    objects_under(seaweed, "", key.strip_prefix("slo-gate/").unwrap()).iter().any(|k| k == key)
}

/// The text of one object (a key as `objects_under` lists it).
fn object_text(seaweed: &Seaweed, key: &str) -> String {
    let store = seaweed.builder(BUCKET).build().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = object_store::path::Path::from(key);
    let bytes = runtime.block_on(async { store.get(&key).await.unwrap().bytes().await.unwrap() });
    String::from_utf8_lossy(&bytes).into_owned()
}

fn objects_under(seaweed: &Seaweed, dir: &str, needle: &str) -> Vec<String> {
    let store = seaweed.builder(BUCKET).build().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let prefix = object_store::path::Path::from(format!("slo-gate/{dir}"));
        let mut listing = store.list(Some(&prefix));
        let mut found = Vec::new();
        while let Some(item) = futures_util::StreamExt::next(&mut listing).await {
            let key = item.unwrap().location.to_string();
            if key.contains(needle) {
                found.push(key);
            }
        }
        found
    })
}

/// Orphans planted beside a killed merge's output: a part and a series segment no manifest
/// names, and an object whose name is not one of ours (kept whatever its age).
struct Planted {
    orphans: Vec<String>,
    foreign: String,
}

fn plant_orphans(seaweed: &Seaweed, output: &str) -> Planted {
    // `slo-gate/parts/<dir>/traces/<hour>/a-m….parquet`
    let (dir, _) = output.rsplit_once('/').unwrap();
    let hour = dir.rsplit('/').next().unwrap();
    let orphans = vec![
        format!("{dir}/ghost-000001-0badcafe.parquet"),
        format!("slo-gate/series/anonymous/{hour}/ghost-{:020}-{:020}.sgs", 1, 2),
    ];
    let foreign = format!("{dir}/notes.txt");
    for key in orphans.iter().chain([&foreign]) {
        put_object(seaweed, key, b"written by nobody's manifest");
    }
    Planted { orphans, foreign }
}

/// `a` takes the lease of the directory and stalls between uploading its merge and committing
/// it (a fault hook of test builds); it is killed or paused there. `b`, started then, takes the
/// lease once it runs out (3 s) and merges `a`'s parts; every acknowledged span is then answered
/// once by `a` (restarted, or resumed and giving its merge up), `b` and a reader. A killed
/// merge's output is named by no log entry: the compactors delete it once it is older than
/// `orphan_grace` (12 s here), with objects planted beside it, and nothing that is named.
fn compactor_stopped_mid_merge(stop: Stop) {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let lease = "compaction_lease = \"3s\"\norphan_grace = \"12s\"\n";
    let stall = [("SLO_GATE_FAULT_BUCKET_MERGE_STALL_MS", "6000")];
    let a = start_with(&seaweed, dir.path(), "a", lease, &stall);
    let acked_a = send(&a, 10_000_000, 20, Arc::new(AtomicBool::new(false))).join().unwrap();
    assert_eq!(acked_a.len(), 20);
    let stalled = e2e::eventually(Duration::from_secs(60), || {
        let outputs = objects(&seaweed, "/a-m");
        (!outputs.is_empty()).then_some(outputs)
    });
    let outputs = stalled.expect("a uploaded no merge output");
    let mut planted = None;
    let a = match stop {
        Stop::Kill => {
            a.kill();
            planted = Some(plant_orphans(&seaweed, &outputs[0]));
            None
        }
        Stop::Pause => {
            signal(&a, "-STOP");
            Some(a)
        }
    };
    let b = start_with(&seaweed, dir.path(), "b", lease, &[]);
    let reader = start_with(&seaweed, dir.path(), "reader", "compaction = false\n", &[]);
    let acked_b = send(&b, 20_000_000, 20, Arc::new(AtomicBool::new(false))).join().unwrap();
    let took_over =
        e2e::eventually(Duration::from_secs(60), || (counter(&b, "slo_gate_bucket_merges_total") > 0).then_some(()));
    assert!(took_over.is_some(), "b never merged after a's lease ran out");
    let held = leases(&seaweed);
    assert!(held.len() == 1 && held[0]["owner"] == "b", "leases: {held:?}");
    let a = match a {
        None => start_with(&seaweed, dir.path(), "a", lease, &[]),
        Some(a) => {
            signal(&a, "-CONT");
            let gave_up = e2e::eventually(Duration::from_secs(30), || {
                (counter(&a, "slo_gate_bucket_merges_abandoned_total") > 0).then_some(())
            });
            assert!(gave_up.is_some(), "a committed its merge after its lease ran out");
            assert_eq!(counter(&a, "slo_gate_bucket_merges_total"), 0);
            // Its output is deleted, not left beside b's merge.
            for output in &outputs {
                let name = output.strip_prefix("slo-gate/").unwrap();
                assert!(objects(&seaweed, name).is_empty(), "{name} was kept");
            }
            a
        }
    };
    if let Some(Planted { orphans, foreign }) = &planted {
        let garbage: Vec<&String> = outputs.iter().chain(orphans).collect();
        let collected =
            e2e::eventually(Duration::from_secs(90), || garbage.iter().all(|key| !exists(&seaweed, key)).then_some(()));
        let left: Vec<&&String> = garbage.iter().filter(|key| exists(&seaweed, key)).collect();
        assert!(collected.is_some(), "objects no manifest names are still in the bucket: {left:?}");
        assert!(exists(&seaweed, foreign), "{foreign} was deleted");
        // Counted as each is deleted (the listing can see one gone just before).
        let deleted = || -> u64 { [&a, &b].iter().map(|s| counter(s, "slo_gate_bucket_orphans_deleted_total")).sum() };
        let counted = e2e::eventually(Duration::from_secs(30), || (deleted() >= garbage.len() as u64).then_some(()));
        assert!(counted.is_some(), "{} orphans counted for {}", deleted(), garbage.len());
    }
    // Everything named stays, though older than the grace by now.
    let acked: Vec<u64> = acked_a.iter().chain(&acked_b).copied().collect();
    for (who, server) in [("reader", &reader), ("a", &a), ("b", &b)] {
        all_found(server, who, &acked);
    }
    let total = acked.len() as u64 * SPANS_PER_BATCH;
    let settled = e2e::eventually(Duration::from_secs(30), || {
        let counts = [reader.items("traces", None), a.items("traces", None), b.items("traces", None)];
        (counts == [total; 3]).then_some(())
    });
    assert!(
        settled.is_some(),
        "{total} spans acknowledged; the reader answers {}, a {}, b {}",
        reader.items("traces", None),
        a.items("traces", None),
        b.items("traces", None)
    );
    // a's parts were merged by b: a no longer holds them in its data directory.
    let a_parts = |server: &Server| counter(server, "slo_gate_parts");
    let handed = e2e::eventually(Duration::from_secs(30), || {
        let after = a_parts(&a);
        (after == 0).then_some(after)
    });
    assert!(handed.is_some(), "a still holds {} parts", a_parts(&a));
    for server in [a, b, reader] {
        server.stop();
    }
}

fn signal(server: &Server, signal: &str) {
    let status = Command::new("kill").args([signal, &server.pid().to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill {signal}");
}

#[test]
fn a_compactor_killed_mid_merge_is_replaced_after_its_lease_and_nothing_is_lost_or_doubled() {
    compactor_stopped_mid_merge(Stop::Kill);
}

#[test]
fn a_paused_compactor_gives_its_merge_up_when_its_successor_committed_first() {
    compactor_stopped_mid_merge(Stop::Pause);
}

/// A manifest that does not parse may name any object: while one is in the bucket, a
/// collector deletes nothing as garbage; once it is gone, a collector started again does.
#[test]
fn a_manifest_that_does_not_parse_stops_the_collection_of_garbage() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let orphan = "slo-gate/parts/anonymous/traces/2026-01-01T00/ghost-000001-0badcafe.parquet".to_string();
    put_object(&seaweed, &orphan, b"named by no manifest");
    let broken = format!("slo-gate/manifests/{:013}-ghost-000001.json", now.as_millis());
    put_object(&seaweed, &broken, b"{\"writer\": \"ghost\", \"added\": [");
    let bucket = "compaction_lease = \"3s\"\norphan_grace = \"12s\"\n";
    let a = start_with(&seaweed, dir.path(), "a", bucket, &[]);
    let acked = send(&a, 40_000_000, 10, Arc::new(AtomicBool::new(false))).join().unwrap();
    assert_eq!(acked.len(), 10);
    // Two graces and more: the orphan would have been deleted by now (as below).
    std::thread::sleep(Duration::from_secs(30));
    assert!(exists(&seaweed, &orphan), "an orphan was deleted while a manifest did not parse");
    assert_eq!(counter(&a, "slo_gate_bucket_orphans_deleted_total"), 0);
    all_found(&a, "a", &acked);
    a.stop();
    let store = seaweed.builder(BUCKET).build().unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { store.delete(&object_store::path::Path::from(broken.as_str())).await.unwrap() });
    let a = start_with(&seaweed, dir.path(), "a", bucket, &[]);
    let collected = e2e::eventually(Duration::from_secs(90), || (!exists(&seaweed, &orphan)).then_some(()));
    assert!(collected.is_some(), "the orphan was not deleted once every manifest parsed");
    // The orphan, and the inputs of the merges of the first run whose deletion its stop cut
    // short (due two minutes after their log entries).
    let counted = e2e::eventually(Duration::from_secs(30), || {
        (counter(&a, "slo_gate_bucket_orphans_deleted_total") >= 1).then_some(())
    });
    assert!(counted.is_some(), "no orphan counted");
    all_found(&a, "a", &acked);
    a.stop();
}

/// A collector that wrote parts and series segments and is gone for good: the compactors
/// remove them from the bucket once they are past retention (the compactor's), for every
/// reader.
#[test]
fn the_compactor_applies_retention_to_the_parts_of_a_writer_that_is_gone() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let gone = start_with(&seaweed, dir.path(), "gone", "compaction = false\n", &[]);
    let acked = send(&gone, 30_000_000, 10, Arc::new(AtomicBool::new(false))).join().unwrap();
    assert_eq!(acked.len(), 10);
    // Remote-written samples of one hour, four hours ago: kept in a series segment alone.
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    remote_write_samples(&gone, "/old", (now_s / 3600 - 4) * 3_600_000, 200);
    let reader = start_with(&seaweed, dir.path(), "reader", "compaction = false\n", &[]);
    all_found(&reader, "reader", &acked);
    let old = [("/old".to_string(), "200".to_string())].into();
    let seen = e2e::eventually(Duration::from_secs(30), || {
        (sample_counts(&reader, "http_requests_total", now_s, "6h") == old).then_some(())
    });
    assert!(seen.is_some(), "the reader counts {:?}", sample_counts(&reader, "http_requests_total", now_s, "6h"));
    gone.stop();
    // The batches are three and four hours old: past a retention of two hours.
    let cfg = config_with(dir.path(), "keeper", &seaweed.endpoint(), "keeper", "200ms", "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("retention = \"7d\"", "retention = \"2h\"");
    std::fs::write(&cfg, text).unwrap();
    let env = [("AWS_ACCESS_KEY_ID", seaweed.access_key()), ("AWS_SECRET_ACCESS_KEY", seaweed.secret_key())];
    let keeper = Server::start_with_env(&dir.path().join("keeper-data"), &["--config", cfg.to_str().unwrap()], &env);
    let removed = e2e::eventually(Duration::from_secs(30), || (reader.items("traces", None) == 0).then_some(()));
    assert!(removed.is_some(), "the reader still answers {} spans", reader.items("traces", None));
    assert_eq!(keeper.items("traces", None), 0);
    let segments_gone = e2e::eventually(Duration::from_secs(30), || {
        sample_counts(&reader, "http_requests_total", now_s, "6h").is_empty().then_some(())
    });
    assert!(
        segments_gone.is_some(),
        "the reader still counts {:?}",
        sample_counts(&reader, "http_requests_total", now_s, "6h")
    );
    let log = objects_under(&seaweed, "compactions", "");
    let removals: String = log.iter().map(|key| object_text(&seaweed, key)).collect();
    let segment_removed = removals.split('"').any(|t| t.starts_with("series/anonymous/") && t.contains("/gone-"));
    assert!(segment_removed, "no compaction log entry removes gone's series segment: {removals}");
    assert_eq!(counter(&keeper, "slo_gate_bucket_merges_total"), 0, "expired parts are removed, not merged");
    keeper.stop();
    reader.stop();
}

/// A collector stopped gracefully (SIGTERM) right after its last acknowledged batch has
/// uploaded everything: its last flush is committed before it exits, so nothing it took stays
/// only on its disk (a collector scaled in may never start again).
#[test]
fn a_collector_stopped_gracefully_leaves_everything_it_acknowledged_in_the_bucket() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    // Flushed every 10 s: the batches are in the head when the stop comes.
    let cfg = config_flushing(dir.path(), "leaving", &seaweed.endpoint(), "leaving", "10s");
    let env = [("AWS_ACCESS_KEY_ID", seaweed.access_key()), ("AWS_SECRET_ACCESS_KEY", seaweed.secret_key())];
    let leaving = Server::start_with_env(&dir.path().join("leaving-data"), &["--config", cfg.to_str().unwrap()], &env);
    let acked = send(&leaving, 40_000_000, 10, Arc::new(AtomicBool::new(false))).join().unwrap();
    assert_eq!(acked.len(), 10);
    assert!(leaving.stop().success());
    let reader = start_with(&seaweed, dir.path(), "reader", "compaction = false\n", &[]);
    all_found(&reader, "reader", &acked);
    assert_eq!(reader.items("traces", None), acked.len() as u64 * SPANS_PER_BATCH);
    reader.stop();
}

/// `version`'s requests to `/api/checkout` as SERVER spans of service `checkout` in `staging`,
/// ending now: `n` spans whose durations spread evenly over `median_ms` ± 40%.
fn checkout_spans(version: &str, n: u64, median_ms: f64, first_trace: u64) -> ExportTraceServiceRequest {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let spans = (0..n)
        .map(|i| {
            let ms = median_ms * (0.6 + 0.8 * ((i * 37) % n) as f64 / n as f64);
            let start = now - (n - i) * 10_000_000;
            Span {
                trace_id: trace_id(first_trace + i),
                span_id: 1u64.to_be_bytes().to_vec(),
                name: "POST /api/checkout".into(),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + (ms * 1e6) as u64,
                attributes: vec![kv("http.route", "/api/checkout"), kv("http.request.method", "POST")],
                ..Default::default()
            }
        })
        .collect();
    let resource = vec![
        kv("service.name", "checkout"),
        kv("service.version", version),
        kv("deployment.environment.name", "staging"),
    ];
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: resource, ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn post_spans(server: &Server, request: &ExportTraceServiceRequest) {
    let response = reqwest::blocking::Client::new()
        .post(server.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// `slo-gate check --collector` against an instance that took none of the data: the baseline
/// went through one collector, the candidates through another, and the reader's verdicts are
/// those of the data (an equal rebuild passes, a twice slower build is blocked).
#[test]
fn the_gate_checks_against_an_instance_that_took_no_data() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let a = start(&seaweed, dir.path(), "a");
    let b = start(&seaweed, dir.path(), "b");
    let tokens = dir.path().join("gate-tokens");
    std::fs::write(&tokens, "shared-bucket-gate-token\n").unwrap();
    let cfg = config(dir.path(), "reader", &seaweed.endpoint(), "reader");
    let env = [("AWS_ACCESS_KEY_ID", seaweed.access_key()), ("AWS_SECRET_ACCESS_KEY", seaweed.secret_key())];
    let reader = Server::start_with_env(
        &dir.path().join("reader-data"),
        &["--config", cfg.to_str().unwrap(), "--gate-token-file", tokens.to_str().unwrap()],
        &env,
    );
    post_spans(&a, &checkout_spans("1.0.0", 300, 100.0, 50_000_000));
    post_spans(&b, &checkout_spans("1.0.1", 300, 100.0, 51_000_000));
    post_spans(&b, &checkout_spans("1.1.0", 300, 200.0, 52_000_000));
    let seen = e2e::eventually(Duration::from_secs(60), || (reader.items("traces", None) == 900).then_some(()));
    assert!(seen.is_some(), "the reader lists {} of 900 spans", reader.items("traces", None));
    let contracts = dir.path().join("contracts");
    std::fs::create_dir_all(&contracts).unwrap();
    std::fs::write(
        contracts.join("checkout.yaml"),
        "apiVersion: slo-gate/v1\nkind: Contract\nservice: checkout\nenvironment: staging\n\
         gate:\n  baseline: { version: \"1.0.0\" }\n  min_samples: 100\n  no_data: fail\n\
         objectives:\n  - name: checkout-latency\n    latency: { percentile: p95, route: /api/checkout }\n\
         \x20   fail: \"<= +20%\"\n",
    )
    .unwrap();
    let check = |candidate: &str| {
        Command::new(e2e::binary())
            .args(["check", "--contracts", contracts.to_str().unwrap(), "--service", "checkout"])
            .args(["--environment", "staging", "--collector", &reader.api_url(""), "--candidate", candidate])
            .env("SLO_GATE_TOKEN", "shared-bucket-gate-token")
            .env_remove("GITHUB_STEP_SUMMARY")
            .output()
            .unwrap()
    };
    let same = check("1.0.1");
    assert_eq!(same.status.code(), Some(0), "{}", e2e::output_text(&same));
    let slower = check("1.1.0");
    assert_eq!(slower.status.code(), Some(1), "{}", e2e::output_text(&slower));
    assert!(e2e::output_text(&slower).contains("checkout-latency"), "{}", e2e::output_text(&slower));
    for server in [a, b, reader] {
        server.stop();
    }
}

/// The objects under `manifests/` of writer `writer`.
fn manifests_of(seaweed: &Seaweed, writer: &str) -> Vec<String> {
    let needle = format!("-{writer}-");
    let store = seaweed.builder(BUCKET).build().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let prefix = object_store::path::Path::from("slo-gate/manifests");
        let mut listing = store.list(Some(&prefix));
        let mut found = Vec::new();
        while let Some(item) = futures_util::StreamExt::next(&mut listing).await {
            let key = item.unwrap().location.to_string();
            if key.contains(&needle) {
                found.push(key);
            }
        }
        found
    })
}

/// A collector folds its manifests (here after every 4): the bucket keeps a few per writer,
/// not one per flush, and collectors that applied the old ones and collectors started after
/// the fold answer every acknowledged span once, merges in the bucket included.
#[test]
fn folded_manifests_leave_every_reader_with_every_part_once() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let writer = start_with(&seaweed, dir.path(), "w", "manifest_fold_after = 4\n", &[]);
    let early = start_with(&seaweed, dir.path(), "early", "compaction = false\n", &[]);
    let mut acked = Vec::new();
    for round in 0..6u64 {
        acked.extend(send(&writer, 60_000_000 + round * 100, 6, Arc::new(AtomicBool::new(false))).join().unwrap());
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(acked.len(), 36);
    let total = acked.len() as u64 * SPANS_PER_BATCH;
    let settled = e2e::eventually(Duration::from_secs(60), || {
        let manifests = manifests_of(&seaweed, "w");
        (ready_text(&writer) == "ready\n" && manifests.len() <= 4).then_some(manifests)
    });
    let committed = counter(&writer, "slo_gate_bucket_manifests_total");
    assert!(settled.is_some(), "{committed} manifests committed, {:?} in the bucket", manifests_of(&seaweed, "w"));
    assert!(committed > 8, "only {committed} manifests committed: nothing to fold");
    let late = start_with(&seaweed, dir.path(), "late", "compaction = false\n", &[]);
    for (who, server) in [("early", &early), ("late", &late), ("w", &writer)] {
        all_found(server, who, &acked);
        let counted =
            e2e::eventually(Duration::from_secs(30), || (server.items("traces", None) == total).then_some(()));
        assert!(counted.is_some(), "{who} answers {} of {total} spans", server.items("traces", None));
    }
    for server in [writer, early, late] {
        server.stop();
    }
}

/// A remote-written counter `http_requests_total{job="api",route}`: 600 samples 15 s apart,
/// from `base_ms`, over three hour blocks.
fn remote_write(server: &Server, route: &str, base_ms: i64) {
    remote_write_samples(server, route, base_ms, 600);
}

/// `n` samples of the counter `http_requests_total{job="api",route}`, 15 s apart from `base_ms`.
fn remote_write_samples(server: &Server, route: &str, base_ms: i64, n: i64) {
    use prom::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
    let labels = [("__name__", "http_requests_total"), ("job", "api"), ("route", route)];
    let request = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
            samples: (0..n).map(|i| Sample { value: (i * 15) as f64, timestamp: base_ms + i * 15_000 }).collect(),
            exemplars: vec![],
            histograms: vec![],
        }],
        metadata: vec![],
    };
    let response = reqwest::blocking::Client::new()
        .post(server.api_url("/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(encode(&request))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
}

/// An OTLP gauge `queue.depth` of service `worker`: 40 points a minute apart from `base_ms`.
fn post_gauge(server: &Server, base_ms: i64) {
    post_gauge_of(server, "worker", base_ms);
}

/// [`post_gauge`] of `service`.
fn post_gauge_of(server: &Server, service: &str, base_ms: i64) {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics};
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    let data_points = (0..40)
        .map(|i| NumberDataPoint {
            time_unix_nano: (base_ms + i * 60_000) as u64 * 1_000_000,
            value: Some(number_data_point::Value::AsInt(i)),
            ..Default::default()
        })
        .collect();
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let response = reqwest::blocking::Client::new()
        .post(server.http_url("/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// An instant query at `time` (unix seconds): the whole answer.
fn instant(server: &Server, query: &str, time: i64) -> serde_json::Value {
    let (status, answer) = server.get(&format!("/api/v1/query?query={}&time={time}", e2e::url_encode(query)), None);
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The samples of each series over the `range` before `time`, by `route` (or by `job` for
/// series without one): `count_over_time` at `time`.
fn sample_counts(server: &Server, metric: &str, time: i64, range: &str) -> std::collections::BTreeMap<String, String> {
    let answer = instant(server, &format!("count_over_time({metric}[{range}])"), time);
    let result = answer["data"]["result"].as_array().cloned().unwrap_or_default();
    result
        .iter()
        .map(|s| {
            let key = s["metric"].get("route").or_else(|| s["metric"].get("job")).and_then(|v| v.as_str());
            (key.unwrap_or_default().to_string(), s["value"][1].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// Remote-written series and OTLP metrics of two collectors: PromQL answers alike on either
/// writer and on a reader, each sample once (every writer's series segments are in the bucket,
/// and a writer's parts are read through its segments, never beside them). Segments damaged in
/// the bucket are left out with a warning naming them; the other writer's series still answer,
/// and the damaged writer's OTLP metrics are read from its parts.
#[test]
fn promql_answers_alike_on_every_collector_sharing_a_bucket() {
    let mut seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let a = start(&seaweed, dir.path(), "a");
    let b = start(&seaweed, dir.path(), "b");
    let reader = start_with(&seaweed, dir.path(), "reader", "compaction = false\n", &[]);
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let base_ms = (now_s / 60 - 150) * 60_000;
    remote_write(&a, "/a", base_ms);
    remote_write(&b, "/b", base_ms);
    post_gauge(&a, base_ms);
    let expected: std::collections::BTreeMap<String, String> =
        [("/a".to_string(), "600".to_string()), ("/b".to_string(), "600".to_string())].into();
    let gauge: std::collections::BTreeMap<String, String> = [("worker".to_string(), "40".to_string())].into();
    for (name, server) in [("a", &a), ("b", &b), ("reader", &reader)] {
        let settled = e2e::eventually(Duration::from_secs(60), || {
            (sample_counts(server, "http_requests_total", now_s, "3h") == expected
                && sample_counts(server, "queue_depth", now_s, "3h") == gauge)
                .then_some(())
        });
        assert!(
            settled.is_some(),
            "{name} counts {:?} and {:?}",
            sample_counts(server, "http_requests_total", now_s, "3h"),
            sample_counts(server, "queue_depth", now_s, "3h")
        );
    }
    // A range query as Grafana sends it: the same answer everywhere.
    let range = |server: &Server| {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={now_s}&step=60",
            e2e::url_encode("sum by (route) (rate(http_requests_total[5m]))"),
            base_ms / 1000
        );
        server.get(&path, None).1
    };
    let on_a = range(&a);
    assert_eq!(on_a["data"]["result"].as_array().map(Vec::len), Some(2), "{on_a}");
    assert_eq!(range(&b), on_a);
    assert_eq!(range(&reader), on_a);

    // Every series segment of `a` damaged in the bucket (same length, other bytes), once its
    // closed hours' segments have been compacted and committed.
    std::thread::sleep(Duration::from_secs(3));
    let damaged = objects_under(&seaweed, "series", "/a-");
    assert!(!damaged.is_empty(), "no series segment of a in the bucket");
    for key in &damaged {
        damage_object(&seaweed, key);
    }
    let fresh = start_with(&seaweed, dir.path(), "fresh", "compaction = false\n", &[]);
    let answer = instant(&fresh, "count_over_time(http_requests_total[3h])", now_s);
    let warnings = answer["warnings"].to_string();
    let named = damaged.iter().any(|key| warnings.contains(key.strip_prefix("slo-gate/").unwrap()));
    assert!(named, "no warning names a damaged object: {answer}");
    assert!(warnings.contains("checksum") && warnings.contains("written by collector a"), "{warnings}");
    assert!(!warnings.contains(&dir.path().display().to_string()), "an absolute path in {warnings}");
    let counts = sample_counts(&fresh, "http_requests_total", now_s, "3h");
    assert_eq!(counts.get("/b").map(String::as_str), Some("600"), "{counts:?}");
    assert_eq!(counts.get("/a"), None, "a's remote-written samples were only in its segments: {counts:?}");
    assert_eq!(sample_counts(&fresh, "queue_depth", now_s, "3h"), gauge, "a's OTLP metrics come from its parts");

    // The bucket away while a reader that has listed it all but fetched nothing answers: the
    // answer names what could not be fetched; once the bucket is back it answers whole again,
    // though nothing new was committed meanwhile.
    let cold = start_with(&seaweed, dir.path(), "cold", "compaction = false\n", &[]);
    seaweed.kill();
    let away = instant(&cold, "count_over_time(http_requests_total[3h])", now_s);
    assert!(away["warnings"].to_string().contains("cannot be read from the bucket"), "{away}");
    seaweed.restart();
    let back = e2e::eventually(Duration::from_secs(60), || {
        let counts = sample_counts(&cold, "http_requests_total", now_s, "3h");
        (counts.get("/b").map(String::as_str) == Some("600")).then_some(())
    });
    assert!(back.is_some(), "cold counts {:?}", sample_counts(&cold, "http_requests_total", now_s, "3h"));
    for server in [a, b, reader, fresh, cold] {
        server.stop();
    }
}

/// The compaction log's entries that add metrics parts: (the entry's writer, the names it
/// adds, the names it removes).
fn metrics_merges(seaweed: &Seaweed) -> Vec<(String, Vec<String>, Vec<String>)> {
    let mut merges = Vec::new();
    for key in objects_under(seaweed, "compactions", ".json") {
        let entry: serde_json::Value = serde_json::from_str(&object_text(seaweed, &key)).unwrap();
        let names = |op: &str| -> Vec<String> {
            let lines = entry["lines"].as_array().cloned().unwrap_or_default();
            lines.iter().filter(|l| l["op"] == op).filter_map(|l| l["name"].as_str().map(str::to_string)).collect()
        };
        let added = names("add");
        if added.iter().any(|n| n.contains("/metrics/")) {
            merges.push((entry["writer"].as_str().unwrap_or_default().to_string(), added, names("remove")));
        }
    }
    merges
}

/// The metrics part files in a data directory.
fn local_metrics_parts(data_dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![data_dir.join("parts")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.components().any(|c| c.as_os_str() == "metrics") {
                found.push(path);
            }
        }
    }
    found
}

/// Metrics parts are merged in the bucket too, one writer's at a time: the compactor commits
/// the merge in the writer's name, so every instance reads the output through that writer's
/// series segments as it read the inputs (the writer itself through its own), and the writer
/// drops its merged parts from its data directory. With the writer's segments damaged, a
/// reader reads the merged output in their place: every sample still answered.
#[test]
fn metrics_parts_are_merged_in_the_bucket_one_writer_at_a_time() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let a = start(&seaweed, dir.path(), "a");
    let b = start(&seaweed, dir.path(), "b");
    let reader = start_with(&seaweed, dir.path(), "reader", "compaction = false\n", &[]);
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let base_ms = (now_s / 60 - 150) * 60_000;
    // Four requests to each writer, each flushed into parts of its own: 160 samples a service.
    for k in 0..4 {
        post_gauge_of(&a, "worker-a", base_ms + k * 15_000);
        post_gauge_of(&b, "worker-b", base_ms + k * 15_000);
        std::thread::sleep(Duration::from_millis(500));
    }
    let merged = e2e::eventually(Duration::from_secs(90), || {
        let merges = metrics_merges(&seaweed);
        let by = |w: &str| merges.iter().any(|(writer, _, _)| writer == w);
        (by("a") && by("b")).then_some(merges)
    });
    let merges = merged.unwrap_or_else(|| panic!("no metrics merges of both writers: {:?}", metrics_merges(&seaweed)));
    // Each merge takes one writer's parts: its flushed ones (`<writer>-<flush>-…`), or outputs
    // of earlier merges in its name (named after the compactor that made them).
    let mut whose: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for (writer, added, removed) in &merges {
        assert!(removed.len() >= 2, "a merge of one part: {removed:?}");
        for name in removed {
            let file = name.rsplit('/').next().unwrap();
            let flushed =
                file.strip_prefix(&format!("{writer}-")).is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
            let merged_by = whose.get(name.as_str()).copied();
            assert!(
                merged_by == Some(writer.as_str()) || (merged_by.is_none() && flushed),
                "{writer}'s merge took {name}"
            );
            assert!(name.contains("/metrics/"), "{name} merged with metrics parts");
        }
        assert_eq!(added.len(), 1, "{added:?}");
        whose.insert(&added[0], writer);
    }
    let expected: std::collections::BTreeMap<String, String> =
        [("worker-a".to_string(), "160".to_string()), ("worker-b".to_string(), "160".to_string())].into();
    let settled = |name: &str, server: &Server| {
        let ok = e2e::eventually(Duration::from_secs(60), || {
            (sample_counts(server, "queue_depth", now_s, "3h") == expected).then_some(())
        });
        assert!(ok.is_some(), "{name} counts {:?}", sample_counts(server, "queue_depth", now_s, "3h"));
    };
    for (name, server) in [("a", &a), ("b", &b), ("reader", &reader)] {
        settled(name, server);
    }
    // The writers handed their merged parts over: their data directories keep none of them.
    for name in ["a", "b"] {
        let data = dir.path().join(format!("{name}-data"));
        let gone = e2e::eventually(Duration::from_secs(60), || local_metrics_parts(&data).is_empty().then_some(()));
        assert!(gone.is_some(), "{name} keeps {:?}", local_metrics_parts(&data));
    }
    // Restarted, a reads its merged parts from the bucket through its own segments.
    a.stop();
    let a = start(&seaweed, dir.path(), "a");
    settled("a restarted", &a);

    // Every series segment of `a` damaged in the bucket: a new reader leaves them out and reads
    // a's merged metrics parts in their place.
    let damaged = objects_under(&seaweed, "series", "/a-");
    assert!(!damaged.is_empty(), "no series segment of a in the bucket");
    for key in &damaged {
        damage_object(&seaweed, key);
    }
    let fresh = start_with(&seaweed, dir.path(), "fresh", "compaction = false\n", &[]);
    let answer = instant(&fresh, "count_over_time(queue_depth[3h])", now_s);
    assert!(answer["warnings"].to_string().contains("written by collector a"), "{answer}");
    settled("fresh", &fresh);
    for server in [a, b, reader, fresh] {
        server.stop();
    }
}

const ADMIN: &str = "ops-secret-token-0123456789abcdef0123";

/// `[auth]` lines giving `ADMIN` the admin scope for every tenant (sending and reading need
/// no credential), after the bucket's own lines.
fn admin_auth(dir: &Path, bucket: &str) -> String {
    use sha2::Digest;
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("ops * admin sha256:{}\n", hex::encode(sha2::Sha256::digest(ADMIN.as_bytes()))))
        .unwrap();
    format!("{bucket}[auth]\ntoken_file = {:?}\n", tokens.display().to_string())
}

/// `POST /api/v1/admin/delete_tenant` for `tenant` to `server`, as the admin: the answer's
/// body, after checking it is a 200.
fn delete_tenant(server: &Server, tenant: &str) -> String {
    let response = reqwest::blocking::Client::new()
        .post(server.api_url("/api/v1/admin/delete_tenant"))
        .header("X-Scope-OrgID", tenant)
        .header("authorization", format!("Bearer {ADMIN}"))
        .send()
        .unwrap();
    let status = response.status();
    let body = response.text().unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// Batch `batch` of `tenant`'s spans (`batch_request`) and a gauge `deleted_probe` of 10
/// points over the last 30 minutes, sent to `server`.
fn post_tenant(server: &Server, tenant: &str, batch: u64) {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics};
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let data_points = (0..10)
        .map(|i| NumberDataPoint {
            time_unix_nano: (now_ms - 1_800_000 + i * 60_000) * 1_000_000,
            value: Some(number_data_point::Value::AsInt(i as i64)),
            ..Default::default()
        })
        .collect();
    let gauge = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: vec![kv("service.name", "probe")], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "deleted_probe".into(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let client = reqwest::blocking::Client::new();
    for (path, body) in [("/v1/traces", batch_request(batch).encode_to_vec()), ("/v1/metrics", gauge.encode_to_vec())] {
        let response = client
            .post(server.http_url(path))
            .header("content-type", "application/x-protobuf")
            .header("X-Scope-OrgID", tenant)
            .body(body)
            .send()
            .unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
    }
}

/// How many `traces_span_metrics_calls_total` series `server` answers for `tenant` now.
fn span_metric_series(server: &Server, tenant: &str) -> usize {
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let query = format!("/api/v1/query?query={}&time={now_s}", e2e::url_encode("traces_span_metrics_calls_total"));
    let (status, answer) = server.get(&query, Some(tenant));
    assert_eq!(status, 200, "{answer}");
    answer["data"]["result"].as_array().unwrap().len()
}

/// What `server` holds of `tenant`: each batch's trace whole (`true`) or absent (`false`), and
/// the points of `deleted_probe` over the last hour.
fn holds(server: &Server, tenant: &str, batches: &[u64]) -> (Vec<bool>, u64) {
    let expected = expected_ids();
    let traces = batches
        .iter()
        .map(|&b| {
            let ids = server.span_ids_of(&hex::encode(trace_id(b)), Some(tenant));
            assert!(ids.is_empty() || ids == expected, "{tenant} batch {b}: a partial trace {ids:?}");
            !ids.is_empty()
        })
        .collect();
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let query = format!("/api/v1/query?query={}&time={now_s}", e2e::url_encode("count_over_time(deleted_probe[1h])"));
    let (status, answer) = server.get(&query, Some(tenant));
    assert_eq!(status, 200, "{answer}");
    let points = answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"][1].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    (traces, points)
}

/// Tenant deletion in a shared bucket: two tenants small enough to share parts write through
/// two collectors; one collector then stops for good, and the tenant is deleted through the
/// other. Every collector, a reader started before and one started after, answers nothing of
/// it (traces and PromQL) and the other tenant whole; the compactors remove the gone writer's
/// objects of it (its series segments by a log entry), write every writer's shared parts
/// again without it (metrics in their writer's name), and say so in `done` objects. The writer
/// that left, started again, deletes the tenant from its data directory; what the tenant
/// sends afterwards is kept.
#[test]
fn a_tenant_deleted_through_one_collector_leaves_every_collector_and_the_bucket() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    // No collector compacts until the deletion is asked for, so every writer's shared parts
    // are still there, unmerged, when it is.
    let a = start_with(&seaweed, dir.path(), "a", &admin_auth(dir.path(), "compaction = false\n"), &[]);
    let gone_writer = start_with(&seaweed, dir.path(), "b", &admin_auth(dir.path(), "compaction = false\n"), &[]);
    let reader = start_with(&seaweed, dir.path(), "reader", &admin_auth(dir.path(), "compaction = false\n"), &[]);
    // A writer that stays up through the deletion, writing its span metrics every second.
    let stays = format!(
        "{}\n[span_metrics]\nmetrics_flush_interval = \"1s\"\n",
        admin_auth(dir.path(), "compaction = false\n")
    );
    let c = start_with(&seaweed, dir.path(), "c", &stays, &[]);
    let batches: Vec<u64> = (50_000_000..50_000_006).collect();
    for (i, &batch) in batches.iter().enumerate() {
        let server = [&a, &gone_writer, &c][i % 3];
        post_tenant(server, "gone", batch);
        post_tenant(server, "keep", batch);
    }
    let counted = e2e::eventually(Duration::from_secs(30), || (span_metric_series(&c, "gone") > 0).then_some(()));
    assert!(counted.is_some(), "c wrote no span metrics of the tenant");
    let all = (vec![true; batches.len()], 60);
    for (name, server) in [("a", &a), ("reader", &reader)] {
        for tenant in ["gone", "keep"] {
            let seen =
                e2e::eventually(Duration::from_secs(60), || (holds(server, tenant, &batches) == all).then_some(()));
            assert!(seen.is_some(), "{name} holds {:?} of {tenant}", holds(server, tenant, &batches));
        }
    }
    let shared_traces = objects(&seaweed, "@shared/traces/");
    assert!(!shared_traces.is_empty(), "the tenants share parts");
    // The writer `b` leaves for good (everything it took is in the bucket).
    assert!(gone_writer.stop().success());

    let body = delete_tenant(&a, "gone");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let request = answer["deleted"]["bucket_request"].as_str().unwrap().to_string();
    assert!(request.starts_with("deletions/gone/") && request.ends_with("-a.json"), "{body}");
    // The parts it shares with `keep` are in the bucket: left to the bucket's compactor, not
    // written again here (a second output of one part could stay beside the compactor's).
    assert_eq!(answer["deleted"]["parts_rewritten"], 0, "{body}");
    assert!(answer["deleted"]["parts_left_to_the_bucket"].as_u64().unwrap() >= 2, "traces and metrics: {body}");
    let compactor = start_with(&seaweed, dir.path(), "d", &admin_auth(dir.path(), ""), &[]);
    let none = (vec![false; batches.len()], 0);
    // The collector asked answers nothing of the tenant at once, the reader within a listing.
    assert_eq!(holds(&a, "gone", &batches), none);
    let hidden = e2e::eventually(Duration::from_secs(30), || (holds(&reader, "gone", &batches) == none).then_some(()));
    assert!(hidden.is_some(), "the reader holds {:?}", holds(&reader, "gone", &batches));
    assert_eq!(holds(&reader, "keep", &batches), all);
    assert_eq!(holds(&a, "keep", &batches), all);

    // The compactor (d) finishes: both `done` objects, the gone writer's segments of the
    // tenant removed by a log entry, every writer's shared parts written again without it by
    // log entries — metrics in their writer's name —, nothing masked.
    let stem = format!("slo-gate/{}", request.trim_end_matches(".json"));
    let done = e2e::eventually(Duration::from_secs(60), || {
        let names = objects_under(&seaweed, "deletions", "");
        let both =
            names.contains(&format!("{stem}.done-own.json")) && names.contains(&format!("{stem}.done-shared.json"));
        both.then_some(())
    });
    assert!(done.is_some(), "not finished: {:?}", objects_under(&seaweed, "deletions", ""));
    let masked: serde_json::Value =
        serde_json::from_str(&object_text(&seaweed, &format!("{stem}.done-shared.json"))).unwrap();
    assert_eq!(masked["masked"], serde_json::json!([]), "every shared part could be written again");
    let entries: Vec<serde_json::Value> = objects_under(&seaweed, "compactions", "")
        .iter()
        .map(|key| serde_json::from_str(&object_text(&seaweed, key)).unwrap())
        .collect();
    let removed = |writer: Option<&str>| -> Vec<String> {
        let entries = entries.iter().filter(|e| writer.is_none_or(|w| e["writer"] == w));
        let lines = entries.flat_map(|e| e["lines"].as_array().unwrap().iter());
        lines.filter(|l| l["op"] == "remove").map(|l| l["name"].as_str().unwrap().to_string()).collect()
    };
    assert!(
        removed(None).iter().any(|n| n.starts_with("series/gone/") && n.contains("/b-")),
        "no log entry removes b's series segments of the tenant: {entries:?}"
    );
    for (signal, writer, entry_writer) in [
        ("traces", "a", None),
        ("traces", "b", None),
        ("traces", "c", None),
        ("metrics", "a", Some("a")),
        ("metrics", "b", Some("b")),
        ("metrics", "c", Some("c")),
    ] {
        let prefix = format!("parts/@shared/{signal}/");
        assert!(
            removed(entry_writer).iter().any(|n| n.starts_with(&prefix) && n.contains(&format!("/{writer}-"))),
            "no log entry{} writes {writer}'s shared {signal} parts again: {entries:?}",
            entry_writer.map_or(String::new(), |w| format!(" in {w}'s name"))
        );
    }
    // Once done, nothing of it comes back: on the reader, on the collector asked, and on a
    // collector started now; the other tenant is whole everywhere.
    std::thread::sleep(Duration::from_secs(2));
    let fresh = start_with(&seaweed, dir.path(), "fresh", &admin_auth(dir.path(), "compaction = false\n"), &[]);
    for (name, server) in [("a", &a), ("reader", &reader), ("fresh", &fresh), ("c", &c)] {
        assert_eq!(holds(server, "gone", &batches), none, "{name}");
        let whole = e2e::eventually(Duration::from_secs(30), || (holds(server, "keep", &batches) == all).then_some(()));
        assert!(whole.is_some(), "{name} holds {:?} of keep", holds(server, "keep", &batches));
    }
    // The writer that stayed up applied the deletion through the bucket and forgot the
    // tenant's span metrics: none is written again (three of its intervals later), there or
    // anywhere; the other tenant's still are.
    std::thread::sleep(Duration::from_secs(3));
    for (name, server) in [("c", &c), ("a", &a), ("reader", &reader)] {
        assert_eq!(span_metric_series(server, "gone"), 0, "{name} answers span metrics of the deleted tenant");
    }
    assert!(span_metric_series(&c, "keep") > 0);
    assert!(counter(&a, "slo_gate_tenants_deleted_total") >= 1);
    // The writer that left comes back with its data directory: it deletes the tenant there
    // when it first lists the request, and nothing of it comes back anywhere.
    let back = start_with(&seaweed, dir.path(), "b", &admin_auth(dir.path(), "compaction = false\n"), &[]);
    let applied = e2e::eventually(Duration::from_secs(30), || {
        (counter(&back, "slo_gate_tenants_deleted_total") == 1).then_some(())
    });
    assert!(applied.is_some(), "b did not delete the tenant from its data directory");
    std::thread::sleep(Duration::from_secs(2));
    for (name, server) in [("b", &back), ("reader", &reader)] {
        assert_eq!(holds(server, "gone", &batches), none, "{name}");
        assert_eq!(holds(server, "keep", &batches), all, "{name}");
    }
    back.stop();

    // What the tenant sends now is kept, and every collector answers it.
    let after = [60_000_000u64];
    post_tenant(&a, "gone", after[0]);
    for (name, server) in [("a", &a), ("reader", &reader), ("fresh", &fresh)] {
        let kept =
            e2e::eventually(Duration::from_secs(60), || (holds(server, "gone", &after).0 == [true]).then_some(()));
        assert!(kept.is_some(), "{name} lost what the tenant sent after its deletion");
    }
    for server in [a, reader, fresh, c, compactor] {
        server.stop();
    }
}

/// A deletion asked while the collector's parts shared with the tenant wait for upload waits
/// for them to be committed and leaves them to the bucket's compactor: written again here,
/// they would be committed by the uploader already under way, and replaced by this writer
/// afterwards, beside the compactor's replacement.
#[test]
fn a_deletion_waits_for_the_shared_parts_to_be_committed_and_leaves_them_to_the_compactor() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let a = start_with(
        &seaweed,
        dir.path(),
        "a",
        &admin_auth(dir.path(), "compaction = false\n"),
        &[("SLO_GATE_FAULT_BUCKET_UPLOAD_STALL_MS", "1500")],
    );
    post_tenant(&a, "gone", 70_000_000);
    post_tenant(&a, "keep", 70_000_000);
    let started = std::time::Instant::now();
    let body = delete_tenant(&a, "gone");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["deleted"]["parts_rewritten"], 0, "{body}");
    assert!(answer["deleted"]["parts_left_to_the_bucket"].as_u64().unwrap() >= 2, "traces and metrics: {body}");
    assert!(started.elapsed() >= Duration::from_millis(1500), "answered before a part was uploaded: {body}");
    // Nothing of it in a's answers; the other tenant whole.
    assert_eq!(holds(&a, "gone", &[70_000_000]), (vec![false], 0));
    assert_eq!(holds(&a, "keep", &[70_000_000]), (vec![true], 10));
    a.stop();
}

/// A collector asked to stop (SIGTERM) while a deletion waits for its shared parts to be
/// committed answers the deletion at once — a 503 saying it is stopping and nothing was
/// deleted —, rather than after its grace or the wait; it exits, and when it starts again it
/// deletes the tenant.
#[test]
fn a_stop_answers_a_deletion_waiting_for_the_bucket_and_the_next_start_deletes_the_tenant() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let bucket = admin_auth(dir.path(), "compaction = false\n");
    // Every part upload waits 3 s: the parts the deletion waits for are not committed yet
    // when the stop comes.
    let a = start_with(&seaweed, dir.path(), "a", &bucket, &[("SLO_GATE_FAULT_BUCKET_UPLOAD_STALL_MS", "3000")]);
    post_tenant(&a, "gone", 71_000_000);
    post_tenant(&a, "keep", 71_000_000);
    let url = a.api_url("/api/v1/admin/delete_tenant");
    let deleting = std::thread::spawn(move || {
        let response = reqwest::blocking::Client::new()
            .post(url)
            .header("X-Scope-OrgID", "gone")
            .header("authorization", format!("Bearer {ADMIN}"))
            .send()
            .map_err(|e| format!("no answer: {e}"))?;
        Ok::<_, String>((response.status().as_u16(), response.text().unwrap_or_default()))
    });
    let requested = e2e::eventually(Duration::from_secs(30), || {
        (!objects_under(&seaweed, "deletions", "gone").is_empty()).then_some(())
    });
    assert!(requested.is_some(), "no deletion request in the bucket");
    assert!(a.stop().success());
    let (status, body) = deleting.join().unwrap().unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("is stopping; nothing was deleted here"), "{body}");

    let a = start_with(&seaweed, dir.path(), "a", &bucket, &[]);
    let deleted =
        e2e::eventually(Duration::from_secs(60), || (counter(&a, "slo_gate_tenants_deleted_total") >= 1).then_some(()));
    assert!(deleted.is_some(), "the tenant was not deleted at the next start");
    assert_eq!(holds(&a, "gone", &[71_000_000]), (vec![false], 0));
    assert_eq!(holds(&a, "keep", &[71_000_000]), (vec![true], 10));
    a.stop();
}

/// The markers of the compaction log's checkpoints, by the entry each stands at.
fn checkpoint_markers(seaweed: &Seaweed) -> Vec<u64> {
    objects_under(seaweed, "checkpoints", "")
        .iter()
        .filter_map(|key| key.strip_prefix("slo-gate/checkpoints/")?.strip_suffix(".json")?.parse().ok())
        .collect()
}

/// Log entry numbers in the bucket, in order.
fn log_entries(seaweed: &Seaweed) -> Vec<u64> {
    let mut seqs: Vec<u64> = objects_under(seaweed, "compactions", "")
        .iter()
        .filter_map(|k| k.strip_prefix("slo-gate/compactions/")?.strip_suffix(".json")?.parse().ok())
        .collect();
    seqs.sort();
    seqs
}

/// Batch `batch` five or six hours ago (alternately), away from [`batch_request`]'s hours.
fn older_batch_request(batch: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let start = (now / HOUR - 5 - batch % 2) * HOUR + (batch % 3000) * 1_000_000_000;
    e2e::otlp::batch_request("shared", batch, SPANS_PER_BATCH, start).encode_to_vec()
}

/// The compaction log is checkpointed every two entries; once a checkpoint is `orphan_grace`
/// old, the entries it holds are deleted. Batches into two hours are merged first; then
/// batches into two other hours keep the log going until the entries of the first hours'
/// merges are deleted. Collectors started afterwards — a reader, the writer itself — read the
/// newest checkpoint and the entries after it and answer every acknowledged span exactly once
/// (without the checkpoint they miss the first hours' merges, which only deleted entries
/// named). With the newest checkpoint damaged, a start falls back to an older one that the
/// entries still present continue.
#[test]
fn the_compaction_log_is_checkpointed_its_old_entries_deleted_and_starts_read_the_checkpoint() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let lines = "compaction_lease = \"3s\"\norphan_grace = \"11s\"\nlog_checkpoint_every = 2\n";
    let a = start_with(&seaweed, dir.path(), "a", lines, &[]);
    let mut acked = send(&a, 40_000_000, 40, Arc::new(AtomicBool::new(false))).join().unwrap();
    assert_eq!(acked.len(), 40);
    let merged =
        e2e::eventually(Duration::from_secs(60), || (counter(&a, "slo_gate_bucket_merges_total") >= 2).then_some(()));
    assert!(merged.is_some(), "a merged {} times", counter(&a, "slo_gate_bucket_merges_total"));
    // The first hours' last merges are committed by now.
    std::thread::sleep(Duration::from_secs(3));
    let first_hours = *log_entries(&seaweed).last().expect("log entries");
    let stop = Arc::new(AtomicBool::new(false));
    let url = a.http_url("/v1/traces");
    let sender =
        e2e::send_batches(url, 50_000_000.., Arc::clone(&stop), Duration::from_millis(30), older_batch_request);
    let pruned = e2e::eventually(Duration::from_secs(120), || {
        let first_gone = log_entries(&seaweed).first().is_some_and(|&oldest| oldest > first_hours);
        (first_gone && checkpoint_markers(&seaweed).len() >= 2).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    acked.extend(sender.join().unwrap());
    assert!(
        pruned.is_some(),
        "entries of the first hours' merges (up to {first_hours}) still there: checkpoints {:?}, log {:?}",
        checkpoint_markers(&seaweed),
        log_entries(&seaweed)
    );
    a.stop();
    let markers = checkpoint_markers(&seaweed);
    let oldest_entry = log_entries(&seaweed).first().copied().unwrap_or(u64::MAX);
    assert!(oldest_entry > markers[0], "entries from {oldest_entry} kept under checkpoints {markers:?}");

    let total = acked.len() as u64 * SPANS_PER_BATCH;
    let exactly_once = |server: &Server, who: &str| {
        all_found(server, who, &acked);
        let items = server.items("traces", None);
        assert_eq!(items, total, "{who}: {items} spans for {} acknowledged batches", acked.len());
    };
    let reader = start_with(&seaweed, dir.path(), "reader", "compaction = false\n", &[]);
    exactly_once(&reader, "reader");
    reader.stop();

    // The newest checkpoint damaged: an older one and the entries after it answer the same.
    let newest = *markers.last().unwrap();
    let chunks = objects_under(&seaweed, &format!("checkpoints/{newest:012}/"), "");
    assert!(!chunks.is_empty(), "checkpoint {newest} has no chunks");
    damage_object(&seaweed, &chunks[0]);
    let late = start_with(&seaweed, dir.path(), "late", "compaction = false\n", &[]);
    exactly_once(&late, "a reader with the newest checkpoint damaged");
    late.stop();
    let a = start_with(&seaweed, dir.path(), "a", lines, &[]);
    exactly_once(&a, "a, started again");
    a.stop();
}

/// A checkpointer killed between uploading a checkpoint's chunks and creating its marker
/// leaves chunks no marker names: no reader takes them, the collector that holds the `@log`
/// lease next makes the checkpoint again, and the chunks are deleted with the checkpoints
/// before the next one `orphan_grace` old. Nothing acknowledged is lost or doubled.
#[test]
fn a_checkpointer_killed_before_its_marker_leaves_chunks_nobody_reads_and_they_are_deleted() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let lines = "compaction_lease = \"3s\"\norphan_grace = \"11s\"\nlog_checkpoint_every = 2\n";
    let stall = [("SLO_GATE_FAULT_BUCKET_CHECKPOINT_STALL_MS", "60000")];
    let a = start_with(&seaweed, dir.path(), "a", lines, &stall);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send(&a, 60_000_000, 3_000, Arc::clone(&stop));
    // Chunks of a checkpoint whose marker is not there: `a` is stalled before it.
    let unmarked = || -> Vec<String> {
        let keys = objects_under(&seaweed, "checkpoints", "");
        let markers = checkpoint_markers(&seaweed);
        keys.into_iter()
            .filter(|k| {
                let rest = k.strip_prefix("slo-gate/checkpoints/").unwrap_or_default();
                rest.split_once('/').is_some_and(|(seq, _)| seq.parse().is_ok_and(|s: u64| !markers.contains(&s)))
            })
            .collect()
    };
    let stalled = e2e::eventually(Duration::from_secs(60), || {
        let found = unmarked();
        (!found.is_empty()).then_some(found)
    });
    stop.store(true, Ordering::Relaxed);
    let mut acked = sender.join().unwrap();
    let orphans = stalled.expect("a uploaded no checkpoint chunks");
    a.kill();
    assert!(checkpoint_markers(&seaweed).is_empty(), "a marker was created: {:?}", checkpoint_markers(&seaweed));

    // b takes the log's lease once a's has run out, checkpoints, and later deletes a's chunks.
    let b = start_with(&seaweed, dir.path(), "b", lines, &[]);
    let url = b.http_url("/v1/traces");
    let stop = Arc::new(AtomicBool::new(false));
    let sender =
        e2e::send_batches(url, 70_000_000.., Arc::clone(&stop), Duration::from_millis(30), older_batch_request);
    let deleted = e2e::eventually(Duration::from_secs(120), || {
        let gone = orphans.iter().all(|k| !exists(&seaweed, k));
        (gone && !checkpoint_markers(&seaweed).is_empty()).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    acked.extend(sender.join().unwrap());
    assert!(
        deleted.is_some(),
        "a's unmarked chunks {orphans:?}; the checkpoints now {:?}",
        objects_under(&seaweed, "checkpoints", "")
    );
    let a = start_with(&seaweed, dir.path(), "a", lines, &[]);
    let reader = start_with(&seaweed, dir.path(), "reader", "compaction = false\n", &[]);
    let total = acked.len() as u64 * SPANS_PER_BATCH;
    for (who, server) in [("reader", &reader), ("a", &a), ("b", &b)] {
        all_found(server, who, &acked);
        let settled =
            e2e::eventually(Duration::from_secs(30), || (server.items("traces", None) == total).then_some(()));
        assert!(
            settled.is_some(),
            "{who}: {} spans for {} acknowledged batches",
            server.items("traces", None),
            acked.len()
        );
    }
    for server in [a, b, reader] {
        server.stop();
    }
}
