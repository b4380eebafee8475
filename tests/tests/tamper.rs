//! Tamper evidence with the built binary: a real Go CPU profile pushed through `/ingest` is
//! stored with the SHA-256 of the pprof file as pushed (the one `sha256sum` prints), shown by
//! the profiles APIs; a byte flipped in its Parquet part on disk is reported by the next query
//! (the samples listing, Grafana's flame graph, the gate's profiles) as a checksum mismatch
//! naming the part, the part is set aside, and the rest of the store (spans in their own part)
//! still answers. With `[storage.encryption]`, the parts on disk
//! hold neither the service's name nor a function name of the profile.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::otlp::{spans_request, trace_id};
use e2e::{Server, eventually};
use prost::Message;
use serde_json::Value;

const CPU_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

fn corpus() -> Vec<u8> {
    let path = e2e::manifest_dir().join("../testdata/corpus/go-dev/fast/cpu-10s.pb.gz");
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// What `sha256sum` prints for the file, as a user would check it.
fn sha256sum(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().expect("run sha256sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// A configuration that flushes every 300 ms and keeps the corpus profile (taken years ago)
/// from retention, plus `extra` TOML.
fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("slo-gate.toml");
    let text = format!(
        "retention = \"36500d\"\n[storage]\nflush_interval = \"300ms\"\nverify_parts_at_start = false\n{extra}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Pushes the corpus profile as service `service`.
fn push(server: &Server, service: &str, pprof: &[u8]) {
    let r = reqwest::blocking::Client::new()
        .post(server.api_url(&format!("/ingest?name={service}.cpu&format=pprof")))
        .header("content-type", "application/octet-stream")
        .body(pprof.to_vec())
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{} {}", r.status(), r.text().unwrap_or_default());
}

/// Waits until nothing of `signals` is left in the head.
fn flushed(server: &Server, signals: &[&str]) {
    let done = eventually(Duration::from_secs(20), || {
        let (_, stats) = server.get("/api/v1/stats", None);
        let done =
            |signal: &&str| stats["signals"][signal]["in_head"] == 0 && stats["signals"][signal]["in_parts"] != 0;
        signals.iter().all(done).then_some(())
    });
    assert!(done.is_some(), "not flushed to parts");
}

/// Pushes the corpus profile as `tamper` and 10 spans, and waits until both are in parts.
fn push_and_flush(server: &Server, pprof: &[u8]) {
    let client = reqwest::blocking::Client::new();
    push(server, "tamper", pprof);
    let r = client
        .post(server.http_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(spans_request("tamper", 1, 10).encode_to_vec())
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    flushed(server, &["profiles", "traces"]);
}

/// Flips one byte in the middle of a part; returns its name relative to the data directory.
fn flip_middle_byte(data: &Path, part: &Path) -> String {
    let mut bytes = std::fs::read(part).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(part, &bytes).unwrap();
    part.strip_prefix(data).unwrap().to_str().unwrap().to_string()
}

/// Grafana's flame-graph call (Connect JSON `SelectMergeStacktraces`) for one service: the
/// status, the `Warning` headers and the answer.
fn flame_graph(server: &Server, service: &str) -> (u16, Vec<String>, Value) {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let body = serde_json::json!({
        "profileTypeID": CPU_TYPE,
        "labelSelector": format!("{{service_name=\"{service}\"}}"),
        "start": "1",
        "end": now_ms.to_string(),
    });
    let resp = reqwest::blocking::Client::new()
        .post(server.api_url("/querier.v1.QuerierService/SelectMergeStacktraces"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let warnings = resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    (status, warnings, resp.json().unwrap())
}

fn parts_of(dir: &Path, signal: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else if e.path().extension().is_some_and(|x| x == "parquet") {
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("parts/anonymous").join(signal), &mut out);
    out
}

fn samples(server: &Server) -> (Vec<Value>, Vec<String>) {
    let (status, body) = server.get("/api/v1/profiles/samples?service=tamper&limit=10000000", None);
    assert_eq!(status, 200, "{body}");
    let warnings = body["warnings"].as_array().map(|w| w.iter().map(|w| w.as_str().unwrap().to_string()).collect());
    (body["samples"].as_array().cloned().unwrap_or_default(), warnings.unwrap_or_default())
}

fn spans_of_trace(server: &Server) -> usize {
    let (status, body) = server.get(&format!("/api/v1/traces/{}", hex::encode(trace_id(1))), None);
    assert_eq!(status, 200, "{body}");
    body["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_flipped_byte_in_a_stored_profile_is_a_checksum_error_naming_its_part() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let pprof_file = dir.path().join("cpu-10s.pb.gz");
    std::fs::write(&pprof_file, corpus()).unwrap();
    let digest = sha256sum(&pprof_file);
    let cfg = config(dir.path(), "");
    let server = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    push_and_flush(&server, &corpus());

    // The digest of the pushed file, on every sample and on the gate's profile.
    let (stored, warnings) = samples(&server);
    assert!(!stored.is_empty() && warnings.is_empty(), "{warnings:?}");
    assert!(stored.iter().all(|s| s["source_sha256"] == digest.as_str()), "{}", stored[0]);
    let (status, gate) = server.get(
        &format!(
            "/api/v1/gate/profiles?type={}&selector={}",
            e2e::url_encode(CPU_TYPE),
            e2e::url_encode("{service_name=\"tamper\"}")
        ),
        None,
    );
    assert_eq!(status, 200, "{gate}");
    assert_eq!(gate["profiles"].as_array().map(Vec::len), Some(1), "{gate}");
    assert_eq!(gate["profiles"][0]["source_sha256"], digest.as_str());

    // One byte flipped in the middle of the profiles part.
    let parts = parts_of(&data, "profiles");
    assert_eq!(parts.len(), 1, "{parts:?}");
    let name = flip_middle_byte(&data, &parts[0]);

    let (stored, warnings) = samples(&server);
    assert!(stored.is_empty(), "rows of a damaged part were served");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0];
    assert!(warning.starts_with(&format!("part {name} is damaged: checksum mismatch: sha256 recorded ")), "{warning}");
    assert!(warning.contains(", found ") && warning.contains("set aside"), "{warning}");
    assert!(!warning.contains(data.to_str().unwrap()), "the answer names the data directory: {warning}");
    assert!(data.join("quarantine").join(&name).exists(), "the part was not set aside");

    // The rest of the store answers; the damage is reported once.
    assert_eq!(spans_of_trace(&server), 10);
    assert_eq!(samples(&server), (vec![], vec![]));
    let (_, metrics) = server.get_text("/metrics");
    assert!(metrics.lines().any(|l| l == "slo_gate_parts_quarantined_total 1"), "{metrics}");

    // Grafana's flame graph over a second profile whose part has a flipped byte: 200, nothing
    // from that part, and a `Warning` header that names it and says why. (Flipped before the
    // first query: the Pyroscope API keeps the rows of parts it has read, verified, in memory,
    // and answers from them until they are evicted.)
    push(&server, "flame", &corpus());
    flushed(&server, &["profiles"]);
    let parts = parts_of(&data, "profiles");
    assert_eq!(parts.len(), 1, "{parts:?}");
    let name = flip_middle_byte(&data, &parts[0]);
    let (status, warnings, answer) = flame_graph(&server, "flame");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!("299 slo-gate \"part {name} is damaged: checksum mismatch: sha256 recorded ")),
        "{}",
        warnings[0]
    );
    assert!(answer["flamegraph"]["total"].as_str().is_none_or(|t| t == "0"), "{answer}");

    // The gate's profiles (what `slo-gate check` compares) say so in their `warnings`.
    push(&server, "gate", &corpus());
    flushed(&server, &["profiles"]);
    let parts = parts_of(&data, "profiles");
    assert_eq!(parts.len(), 1, "{parts:?}");
    let name = flip_middle_byte(&data, &parts[0]);
    let (status, gate) = server.get(
        &format!(
            "/api/v1/gate/profiles?type={}&selector={}",
            e2e::url_encode(CPU_TYPE),
            e2e::url_encode("{service_name=\"gate\"}")
        ),
        None,
    );
    assert_eq!(status, 200, "{gate}");
    assert_eq!(gate["profiles"].as_array().map(Vec::len), Some(0), "{gate}");
    let warning = gate["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.starts_with(&format!("part {name} is damaged: checksum mismatch: sha256 recorded ")), "{gate}");

    // The native flame graph (every format) and its diff name the part too: an empty or
    // smaller flame graph is never served as if it were whole.
    push(&server, "native", &corpus());
    flushed(&server, &["profiles"]);
    let parts = parts_of(&data, "profiles");
    assert_eq!(parts.len(), 1, "{parts:?}");
    let name = flip_middle_byte(&data, &parts[0]);
    let expected = format!("part {name} is damaged: checksum mismatch: sha256 recorded ");
    let selector = e2e::url_encode("{service_name=\"native\"}");
    let client = reqwest::blocking::Client::new();
    for (i, format) in ["json", "folded", "svg"].into_iter().enumerate() {
        let resp = client
            .get(server.api_url(&format!(
                "/api/v1/flamegraph?type={}&selector={selector}&format={format}",
                e2e::url_encode(CPU_TYPE)
            )))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{format}");
        let warnings: Vec<String> =
            resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        if i == 0 {
            // The first read finds the damage and sets the part aside.
            assert_eq!(warnings.len(), 1, "{format}: {warnings:?}");
            assert!(warnings[0].starts_with(&format!("299 slo-gate \"{expected}")), "{format}: {}", warnings[0]);
        }
    }
    push(&server, "diff", &corpus());
    flushed(&server, &["profiles"]);
    let parts = parts_of(&data, "profiles");
    assert_eq!(parts.len(), 1, "{parts:?}");
    let name = flip_middle_byte(&data, &parts[0]);
    let side = e2e::url_encode("{service_name=\"diff\"}");
    let (status, diff) = server.get(
        &format!("/api/v1/flamegraph/diff?type={}&baseline={side}&candidate={side}", e2e::url_encode(CPU_TYPE)),
        None,
    );
    assert_eq!(status, 200, "{diff}");
    let warnings: Vec<&str> = diff["warnings"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let prefix = format!("part {name} is damaged: checksum mismatch: sha256 recorded ");
    assert!(warnings.iter().any(|w| w.starts_with(&prefix)), "{diff}");
    assert_eq!(diff["baseline_profiles"], 0, "{diff}");

    assert_eq!(spans_of_trace(&server), 10);
    server.stop();
}

#[test]
fn encrypted_parts_hide_the_profile_and_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "# test key\nk1 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n").unwrap();
    let cfg = config(dir.path(), &format!("[storage.encryption]\nkey_file = {:?}\n", keys.to_str().unwrap()));
    let server = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    push_and_flush(&server, &corpus());
    let (stored, warnings) = samples(&server);
    assert!(!stored.is_empty() && warnings.is_empty(), "{warnings:?}");
    let function = stored[0]["stack"][0]["function"].as_str().unwrap().to_string();
    assert_eq!(spans_of_trace(&server), 10);
    server.stop();

    let contains = |bytes: &[u8], text: &str| bytes.windows(text.len()).any(|w| w == text.as_bytes());
    for part in parts_of(&data, "profiles").into_iter().chain(parts_of(&data, "traces")) {
        let bytes = std::fs::read(&part).unwrap();
        assert!(bytes.starts_with(b"SLOGENC"), "{} is not encrypted", part.display());
        for text in ["tamper", function.as_str()] {
            assert!(!contains(&bytes, text), "{} shows {text:?}", part.display());
        }
    }
    // After a restart the encrypted parts answer as before.
    let server = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(samples(&server).0.len(), stored.len());
    assert_eq!(spans_of_trace(&server), 10);
}
