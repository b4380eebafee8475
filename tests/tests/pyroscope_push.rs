//! Pyroscope-compatible pprof push against the real collector: the corpus CPU profile pushed
//! through the legacy `/ingest` (raw body and the Go agent's multipart form) and the connect
//! `PusherService/Push` (protobuf, gzip and Connect JSON) comes back from
//! `/api/v1/profiles/samples` with exactly the per-function flat and cum totals
//! `go tool pprof -top` computes (`analyzer::pprof::flat_and_cum`); bad pushes get 400 with a
//! message; the real `pyroscope-io` Python agent's pushes are stored with its function names.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use e2e::Server;
use e2e::pyroscope::push_request;
use prost::Message;
use serde_json::Value;

fn corpus() -> (Vec<u8>, analyzer::pprof::Profile) {
    let path = e2e::manifest_dir().join("../testdata/corpus/go-dev/fast/cpu-10s.pb.gz");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let profile = analyzer::pprof::decode(&bytes).expect("corpus profile decodes");
    (bytes, profile)
}

/// Stored samples of `service` (as `tenant`).
fn samples(server: &Server, service: &str, tenant: Option<&str>) -> Vec<Value> {
    let (status, body) = server.get(&format!("/api/v1/profiles/samples?service={service}&limit=10000000"), tenant);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["truncated"], false);
    body["samples"].as_array().cloned().unwrap_or_default()
}

/// `(flat, cum)` per function of the stored samples of one sample type, with pprof's rule.
fn totals(samples: &[Value], sample_type: &str) -> BTreeMap<String, (i64, i64)> {
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s["sample_type"] == sample_type) {
        let value = s["value"].as_i64().unwrap();
        let names: Vec<String> =
            s["stack"].as_array().unwrap().iter().map(|f| f["function"].as_str().unwrap().to_string()).collect();
        let mut seen = HashSet::new();
        for name in &names {
            if seen.insert(name) {
                totals.entry(name.clone()).or_default().1 += value;
            }
        }
        if let Some(leaf) = names.first() {
            totals.entry(leaf.clone()).or_default().0 += value;
        }
    }
    totals
}

fn check_like_pprof(server: &Server, service: &str, tenant: Option<&str>, profile: &analyzer::pprof::Profile) {
    let stored = samples(server, service, tenant);
    assert!(!stored.is_empty(), "nothing stored for {service}");
    assert_eq!(stored[0]["service_version"], "2.0.1", "{}", stored[0]);
    for (index, sample_type) in profile.sample_types.iter().enumerate() {
        let expected = analyzer::pprof::flat_and_cum(profile, index).unwrap();
        let got = totals(&stored, &sample_type.kind);
        assert_eq!(got, expected, "{service}: per-function totals of {}", sample_type.kind);
        let unit = stored.iter().find(|s| s["sample_type"] == sample_type.kind.as_str()).unwrap();
        assert_eq!(unit["sample_unit"], sample_type.unit.as_str());
    }
}

fn post(server: &Server, path: &str, content_type: &str, tenant: Option<&str>, body: Vec<u8>) -> (u16, String) {
    post_with(server, path, content_type, tenant, None, body)
}

fn post_with(
    server: &Server,
    path: &str,
    content_type: &str,
    tenant: Option<&str>,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut req =
        reqwest::blocking::Client::new().post(server.api_url(path)).header("content-type", content_type).body(body);
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.send().expect("push request");
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn legacy_ingest_raw_and_multipart() {
    let (bytes, profile) = corpus();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    let name = "ingest-raw.cpu%7Bservice_version%3D2.0.1%2Cregion%3Deu%7D";
    let (status, body) = post(
        &server,
        &format!("/ingest?name={name}&from=1700000000&until=1700000010&format=pprof&spyName=gospy"),
        "application/octet-stream",
        None,
        bytes.clone(),
    );
    assert_eq!(status, 200, "{body}");
    check_like_pprof(&server, "ingest-raw", None, &profile);

    // The Go agent's form: a `profile` field (and others the collector ignores).
    let boundary = "b0undary-slo-gate";
    let mut form = Vec::new();
    write!(
        form,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"sample_type_config\"; filename=\"c.json\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n{{}}\r\n--{boundary}\r\nContent-Disposition: form-data; \
         name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .unwrap();
    form.extend_from_slice(&bytes);
    write!(form, "\r\n--{boundary}--\r\n").unwrap();
    let name = "ingest-form.cpu%7Bservice_version%3D2.0.1%7D";
    let (status, body) = post(
        &server,
        // No `format`: a multipart body is pprof, as Pyroscope reads it.
        &format!("/ingest?name={name}"),
        &format!("multipart/form-data; boundary={boundary}"),
        Some("team-a"),
        form,
    );
    assert_eq!(status, 200, "{body}");
    check_like_pprof(&server, "ingest-form", Some("team-a"), &profile);
    assert!(samples(&server, "ingest-form", None).is_empty(), "another tenant's data is visible");

    // Folded text, the legacy default format: counts × 1e9 / sampleRate nanoseconds.
    let (status, body) = post(
        &server,
        "/ingest?name=folded.cpu&sampleRate=100",
        "text/plain",
        None,
        b"main;work;hash 3\nmain 1\n".to_vec(),
    );
    assert_eq!(status, 200, "{body}");
    let stored = samples(&server, "folded", None);
    let total: i64 = stored.iter().map(|s| s["value"].as_i64().unwrap()).sum();
    assert_eq!(total, 40_000_000, "{stored:?}");
    assert_eq!(totals(&stored, "cpu")["hash"], (30_000_000, 30_000_000));

    // Bad input: 400 (415 for an unknown format) with a message; nothing stored; still up.
    for (query, ct, body, status, needle) in [
        ("/ingest?name=a%7Bk&format=pprof", "application/octet-stream", bytes.clone(), 400, "bad application name"),
        ("/ingest?name=a.cpu&format=pprof", "application/octet-stream", b"not a profile".to_vec(), 400, "pprof"),
        ("/ingest?name=a.cpu&format=pprof", "multipart/form-data; boundary=x", b"--x\r\n".to_vec(), 400, "multipart"),
        ("/ingest?name=a.cpu", "text/plain", b"main;work twelve\n".to_vec(), 400, "line 1"),
        ("/ingest?name=a.cpu&sampleRate=0", "text/plain", b"main 1\n".to_vec(), 400, "sample rate"),
        ("/ingest?name=a.cpu&format=trie", "application/octet-stream", b"x".to_vec(), 415, "trie"),
    ] {
        let (got, text) = post(&server, query, ct, None, body);
        assert_eq!(got, status, "{query}: {text}");
        assert!(text.contains(needle), "{query}: {text}");
    }
    assert!(samples(&server, "a", None).is_empty());
}

#[test]
fn connect_push_protobuf_gzip_and_json() {
    let (bytes, profile) = corpus();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let path = "/push.v1.PusherService/Push";

    let (status, body) =
        post(&server, path, "application/proto", None, push_request("push-proto", &bytes).encode_to_vec());
    assert_eq!(status, 200, "{body}");
    assert!(body.is_empty(), "PushResponse is empty: {body:?}");
    check_like_pprof(&server, "push-proto", None, &profile);

    // The Python agent gzips the whole request (Content-Encoding: gzip).
    let request = gzip(&push_request("push-gzip", &bytes).encode_to_vec());
    let (status, body) = post_with(&server, path, "application/proto", Some("team-b"), Some("gzip"), request);
    assert_eq!(status, 200, "{body}");
    check_like_pprof(&server, "push-gzip", Some("team-b"), &profile);

    // Connect JSON: bytes as base64.
    use base64::Engine;
    let json = serde_json::json!({"series": [{
        "labels": [
            {"name": "__name__", "value": "process_cpu"},
            {"name": "service_name", "value": "push-json"},
            {"name": "service_version", "value": "2.0.1"},
        ],
        "samples": [{"rawProfile": base64::engine::general_purpose::STANDARD.encode(&bytes), "ID": "x"}],
    }]});
    let (status, body) = post(&server, path, "application/json", None, json.to_string().into_bytes());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "{}");
    check_like_pprof(&server, "push-json", None, &profile);

    // Connect errors.
    let (status, body) = post(&server, path, "application/proto", None, b"\xff\xff\xff".to_vec());
    assert_eq!(status, 400, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["code"], "invalid_argument", "{body}");
    let (status, body) =
        post(&server, path, "application/proto", None, push_request("push-bad", b"garbage").encode_to_vec());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("series 0 sample 0"), "{body}");
    let (status, _) = post(&server, path, "text/plain", None, b"x".to_vec());
    assert_eq!(status, 415);
    assert!(samples(&server, "push-bad", None).is_empty());

    // After a restart the pushed profiles come back from the WAL (stored as OTLP).
    server.stop();
    let server = Server::start(dir.path(), &[]);
    check_like_pprof(&server, "push-proto", None, &profile);
    check_like_pprof(&server, "push-json", None, &profile);
}

#[test]
fn python_pyroscope_agent_pushes() {
    let python = e2e::python::interpreter("pyroscope");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let script = e2e::manifest_dir().join("python/pyroscope_agent.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}", server.api))
        .arg("py-agent")
        .arg("5")
        .output()
        .expect("run pyroscope_agent.py");
    assert!(
        out.status.success(),
        "pyroscope_agent.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let found = e2e::eventually(std::time::Duration::from_secs(10), || {
        let stored = samples(&server, "py-agent", None);
        stored
            .iter()
            .any(|s| {
                s["stack"].as_array().is_some_and(|frames| {
                    frames.iter().any(|f| f["function"].as_str().is_some_and(|n| n.contains("slo_gate_burn_cpu")))
                })
            })
            .then_some(stored)
    });
    let stored = found.unwrap_or_else(|| {
        panic!("no stored sample of py-agent has slo_gate_burn_cpu: {:?}", samples(&server, "py-agent", None))
    });
    assert_eq!(stored[0]["service_version"], "9.9.9", "{}", stored[0]);
    assert_eq!(stored[0]["sample_type"], "cpu", "{}", stored[0]);
}

/// Pushes the corpus' nine goroutine profiles of `folder` (`testdata/corpus/go-dev/<folder>`) as
/// service `leaky` 1.0.0, process `instance`.
fn push_goroutine_profiles(server: &Server, folder: &str, instance: &str) {
    let corpus = e2e::manifest_dir().join("../testdata/corpus/go-dev").join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("goroutine-t")
                && p.to_string_lossy().ends_with(".pb.gz")
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 9, "{files:?}");
    let name = format!("leaky.goroutines%7Bservice_version%3D1.0.0%2Cinstance%3D{instance}%7D");
    for file in &files {
        let (status, body) = post(
            server,
            &format!("/ingest?name={name}&format=pprof"),
            "application/octet-stream",
            None,
            std::fs::read(file).unwrap(),
        );
        assert_eq!(status, 200, "{}: {body}", file.display());
    }
}

/// Goroutine profiles pushed over time are judged for leaks on `GET /api/v1/leaks`: the corpus'
/// leaking program (`go-dev/fast`, nine snapshots over 40 s) has two clusters that grow by about
/// one goroutine a second; each process's series is judged on its own.
#[test]
fn pushed_goroutine_profiles_are_judged_for_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    push_goroutine_profiles(&server, "fast", "pod-a");
    let (status, answer) = server.get("/api/v1/leaks?service=leaky&version=1.0.0", None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["leaks"], 2, "{answer:#}");
    assert!(answer["findings"].as_array().unwrap().iter().all(|f| f["of_processes"] == 1), "{answer:#}");
    let run = &answer["runs"][0];
    assert_eq!((run["run"].as_str(), run["snapshots"].as_u64()), (Some("pod-a"), Some(9)), "{answer:#}");
    // The report says where its snapshots came from.
    let source = &run["report"]["source"];
    assert_eq!(
        (&source["service"], &source["version"], &source["run"]),
        (&"leaky".into(), &"1.0.0".into(), &"pod-a".into())
    );
    let mut leaking: Vec<&str> = run["report"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["blocking_function"].as_str().unwrap())
        .collect();
    leaking.sort();
    assert_eq!(leaking, ["main.closeWhenDone", "main.collectResults"]);
    // Every cluster carries its count series over the snapshot times, for a dashboard.
    let times = run["report"]["times_s"].as_array().unwrap().len();
    assert!(
        run["report"]["clusters"].as_array().unwrap().iter().all(|c| c["counts"].as_array().unwrap().len() == times)
    );

    let (status, answer) = server.get("/api/v1/leaks?version=1.0.0", None);
    assert_eq!(status, 400, "{answer}");
}

// Issue 12: the same leak in two processes of one build is one finding with each process's rate,
// not one finding per process.
#[test]
fn a_leak_in_two_pushed_processes_is_one_finding() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // Two runs of the corpus' leaking program: the same two leaks in each.
    push_goroutine_profiles(&server, "fast", "pod-a");
    push_goroutine_profiles(&server, "fast-rerun", "pod-b");
    let (status, answer) = server.get("/api/v1/leaks?service=leaky&version=1.0.0", None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["leaks"], &answer["clusters"], &answer["processes"]),
        (&2.into(), &4.into(), &2.into()),
        "{answer:#}"
    );
    // Runs come in the order the store gives them, not in push order.
    let mut runs: Vec<&str> = answer["runs"].as_array().unwrap().iter().map(|r| r["run"].as_str().unwrap()).collect();
    runs.sort_unstable();
    assert_eq!(runs, ["pod-a", "pod-b"], "{answer:#}");
    let findings = answer["findings"].as_array().unwrap();
    let mut leaking: Vec<&str> = findings.iter().map(|f| f["blocking_function"].as_str().unwrap()).collect();
    leaking.sort();
    assert_eq!(leaking, ["main.closeWhenDone", "main.collectResults"], "{answer:#}");
    for f in findings {
        assert_eq!((&f["processes"], &f["of_processes"]), (&2.into(), &2.into()), "{f:#}");
        let mut per_process: Vec<&str> =
            f["runs"].as_array().unwrap().iter().map(|r| r["run"].as_str().unwrap()).collect();
        per_process.sort_unstable();
        assert_eq!(per_process, ["pod-a", "pod-b"], "{f:#}");
        // About one goroutine a second in each process.
        let mean = f["per_minute_per_process"].as_f64().unwrap();
        assert!((40.0..90.0).contains(&mean), "{f:#}");
        for r in f["runs"].as_array().unwrap() {
            assert!((40.0..90.0).contains(&r["per_minute"].as_f64().unwrap()), "{r:#}");
            assert!(r["last"].as_u64().unwrap() > r["first"].as_u64().unwrap(), "{r:#}");
            assert!(r["seconds"].as_f64().unwrap() >= 30.0 && r["confidence"].as_f64().unwrap() >= 0.99, "{r:#}");
        }
    }
}
