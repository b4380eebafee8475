//! Grafana's built-in Pyroscope datasource against the real binary: every Connect call the wire
//! notes list (`ProfileTypes`, `LabelNames`/`LabelValues` with `__profile_type__` matchers,
//! `SelectMergeStacktraces` with `max_nodes`, `SelectSeries`, `SelectMergeProfile`, `Diff`,
//! `GetProfileStats`, `Series`, `SelectMergeSpanProfile`), in `application/proto` as Grafana's
//! connect-go client sends them and in Connect JSON as the Profiles app does, over real
//! profiles: the go-dev corpus' CPU profiles pushed as Pyroscope's agents push them, a
//! hand-computed folded profile, and a Go program whose requests label their CPU samples with
//! span ids (`tests/go/spanprofile`), scraped by the collector. Flame graphs are read back by
//! Grafana's `levelsToTree` rules (`e2e::flame`) and checked against the hand computation and
//! against `go tool pprof -top`. Then every bad input, with its Connect code and message.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use e2e::go::{self, GoProcess};
use e2e::pyroscope::querier::*;
use e2e::pyroscope::{LabelPair, push_request};
use e2e::{Server, eventually, manifest_dir};
use prost::Message;
use serde_json::{Value, json};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// Far enough in the future for every profile of the corpus and of the test.
const END_MS: i64 = 4_102_444_800_000; // 2100-01-01

fn url(server: &Server, method: &str) -> String {
    server.api_url(&format!("/querier.v1.QuerierService/{method}"))
}

/// A Connect unary call with a protobuf body, as Grafana's client makes it; the decoded answer,
/// or the status and the Connect error body.
fn call<Resp: Message + Default>(
    server: &Server,
    method: &str,
    req: &impl Message,
    tenant: Option<&str>,
) -> Result<Resp, (u16, Value)> {
    let mut r = reqwest::blocking::Client::new()
        .post(url(server, method))
        .header("Content-Type", "application/proto")
        .header("Connect-Protocol-Version", "1")
        .body(req.encode_to_vec());
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    let resp = r.send().expect("connect call");
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let body = resp.bytes().expect("body");
    if status == 200 {
        assert_eq!(content_type.as_deref(), Some("application/proto"), "{method}: success content type");
        Ok(Resp::decode(body.as_ref()).unwrap_or_else(|e| panic!("{method}: answer does not decode: {e}")))
    } else {
        assert_eq!(content_type.as_deref(), Some("application/json"), "{method}: error content type");
        Err((status, serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(format!("{body:?}")))))
    }
}

fn ok<Resp: Message + Default>(server: &Server, method: &str, req: &impl Message) -> Resp {
    call(server, method, req, None).unwrap_or_else(|e| panic!("{method}: {e:?}"))
}

/// A raw call: any body and content type; status, content type and body.
fn raw(server: &Server, method: &str, content_type: &str, body: Vec<u8>) -> (u16, String, Vec<u8>) {
    let resp = reqwest::blocking::Client::new()
        .post(url(server, method))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .expect("connect call");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, resp.bytes().unwrap().to_vec())
}

/// A Connect JSON call; status and JSON answer.
fn call_json(server: &Server, method: &str, body: Value) -> (u16, Value) {
    let (status, ct, bytes) = raw(server, method, "application/json", body.to_string().into_bytes());
    assert_eq!(ct, "application/json", "{method}");
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{method}: {e}: {bytes:?}")))
}

/// Asserts a Connect error: HTTP status, code, and a message containing `text`.
fn assert_error(result: (u16, Value), status: u16, code: &str, text: &str) {
    let (s, body) = result;
    assert_eq!((s, body["code"].as_str()), (status, Some(code)), "{body}");
    let message = body["message"].as_str().unwrap_or("");
    assert!(message.contains(text), "message {message:?} lacks {text:?}");
}

fn levels(f: &FlameGraph) -> Vec<Vec<i64>> {
    f.levels.iter().map(|l| l.values.clone()).collect()
}

/// Decodes a flame graph by Grafana's rules; stacks by root-first path.
fn tree(f: &FlameGraph) -> e2e::flame::Tree {
    e2e::flame::decode(&f.names, &levels(f), 1).expect("Grafana's levelsToTree accepts the levels")
}

fn corpus(path: &str) -> Vec<u8> {
    std::fs::read(manifest_dir().join("../testdata/corpus/go-dev").join(path)).expect("corpus profile")
}

fn push(server: &Server, service: &str, raw_profile: &[u8], tenant: Option<&str>) {
    let mut r = reqwest::blocking::Client::new()
        .post(server.api_url("/push.v1.PusherService/Push"))
        .header("Content-Type", "application/proto")
        .body(push_request(service, raw_profile).encode_to_vec());
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    let resp = r.send().unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap_or_default());
}

/// The hand-computed profile: `main;a;b 3`, `main;a 1`, `main;c 2` CPU samples at 100 Hz.
fn push_hand(server: &Server, from_s: i64, tenant: Option<&str>) {
    let mut r = reqwest::blocking::Client::new()
        .post(
            server
                .api_url(&format!("/ingest?name=hand.cpu%7Bregion%3Dus%7D&from={from_s}&format=folded&sampleRate=100")),
        )
        .body("main;a;b 3\nmain;a 1\nmain;c 2\n");
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    let resp = r.send().unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap_or_default());
}

fn merge_request(selector: &str, max_nodes: Option<i64>) -> SelectMergeStacktracesRequest {
    SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: selector.into(),
        start: 1,
        end: END_MS,
        max_nodes,
    }
}

/// `go tool pprof -top` of a profile: flat and cum (nanoseconds) per function.
fn pprof_top(path: &std::path::Path) -> BTreeMap<String, (i64, i64)> {
    let out = Command::new("go")
        .args(["tool", "pprof", "-top", "-nodecount=100000", "-nodefraction=0", "-edgefraction=0", "-unit=ns"])
        .arg(path)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .output()
        .expect("go tool pprof (apt-get install -y golang-go)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let ns = |v: &str| v.trim_end_matches("ns").parse::<i64>().unwrap();
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = f[5..].join(" ");
            let name =
                name.strip_suffix(" (inline)").or_else(|| name.strip_suffix(" (partial-inline)")).unwrap_or(&name);
            let name = name.to_string();
            (name, (ns(f[0]), ns(f[3])))
        })
        .collect()
}

#[test]
fn grafana_pyroscope_datasource() {
    let dir = tempfile::tempdir().unwrap();
    // The head is flushed to Parquet parts every second, so the answers are read from the head,
    // from parts, and (asked again) from decoded parts kept in memory, and must not differ.
    let config = dir.path().join("slo-gate.toml");
    // (Retention long enough for the corpus' profiles, taken in November 2026.)
    std::fs::write(&config, "retention = \"3650d\"\n[storage]\nflush_interval = \"1s\"\n").unwrap();
    let config_arg = config.to_string_lossy().into_owned();
    let server = Server::start(&dir.path().join("data"), &["--config", &config_arg]);
    let fast = corpus("fast/cpu-10s.pb.gz");
    let slow = corpus("slow/cpu-10s.pb.gz");
    push(&server, "fast-svc", &fast, None);
    push(&server, "slow-svc", &slow, None);
    // The hand-computed profile ten minutes ago, on a whole minute.
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let hand_from_s = now_s / 60 * 60 - 600;
    push_hand(&server, hand_from_s, None);
    // Another tenant's profile, under a service name of its own.
    push(&server, "secret-svc", &fast, Some("other"));

    // Y1: Save & test (newer Grafana: start=1000, end=4000; 10.x: empty).
    let health: ProfileTypesResponse = ok(&server, "ProfileTypes", &ProfileTypesRequest { start: 1000, end: 4000 });
    assert!(health.profile_types.is_empty());
    let types: ProfileTypesResponse = ok(&server, "ProfileTypes", &ProfileTypesRequest::default());
    let ids: Vec<&str> = types.profile_types.iter().map(|t| t.id.as_str()).collect();
    assert!(ids.contains(&CPU), "{ids:?}");
    let cpu = types.profile_types.iter().find(|t| t.id == CPU).unwrap();
    assert_eq!(
        (
            cpu.name.as_str(),
            cpu.sample_type.as_str(),
            cpu.sample_unit.as_str(),
            cpu.period_type.as_str(),
            cpu.period_unit.as_str()
        ),
        ("process_cpu", "cpu", "nanoseconds", "cpu", "nanoseconds")
    );
    // Y2 with a range.
    let ranged: ProfileTypesResponse = ok(&server, "ProfileTypes", &ProfileTypesRequest { start: 1, end: END_MS });
    assert_eq!(ranged, types);

    // Y3/Y4: the query editor's selectors carry `__profile_type__`.
    let names: NamesResponse = ok(
        &server,
        "LabelNames",
        &LabelNamesRequest { matchers: vec![format!("{{__profile_type__=\"{CPU}\"}}")], start: 1, end: END_MS },
    );
    for reserved in ["__name__", "__profile_type__", "service_name", "region", "service_version"] {
        assert!(names.names.contains(&reserved.to_string()), "{reserved} in {:?}", names.names);
    }
    assert!(names.names.windows(2).all(|w| w[0] < w[1]), "sorted: {:?}", names.names);
    let services = |matchers: Vec<String>| -> Vec<String> {
        let r: NamesResponse = ok(
            &server,
            "LabelValues",
            &LabelValuesRequest { name: "service_name".into(), matchers, start: 1, end: END_MS },
        );
        r.names
    };
    assert_eq!(services(vec![format!("{{__profile_type__=\"{CPU}\"}}")]), ["fast-svc", "hand", "slow-svc"]);
    assert_eq!(services(vec![format!("{{__profile_type__=\"{CPU}\", service_name=~\"s.*\"}}")]), ["slow-svc"]);
    assert_eq!(services(vec!["{region!=\"eu\"}".into()]), ["hand"]);
    assert_eq!(
        services(vec!["{__profile_type__=\"memory:alloc_space:bytes:space:bytes\"}".into()]),
        Vec::<String>::new()
    );
    assert_eq!(services(Vec::new()), ["fast-svc", "hand", "slow-svc"]);
    let regions: NamesResponse = ok(
        &server,
        "LabelValues",
        &LabelValuesRequest { name: "region".into(), matchers: vec!["{}".into()], start: 1, end: END_MS },
    );
    assert_eq!(regions.names, ["eu", "us"]);
    // JSON, as the Profiles app sends it.
    let (status, body) = call_json(
        &server,
        "LabelValues",
        json!({"name": "service_name", "matchers": [format!("{{__profile_type__=\"{CPU}\"}}")], "start": "1", "end": END_MS.to_string()}),
    );
    assert_eq!((status, body.clone()), (200, json!({"names": ["fast-svc", "hand", "slow-svc"]})));
    let (status, body) = call_json(&server, "LabelNames", json!({"matchers": ["{service_name=\"hand\"}"]}));
    assert_eq!(status, 200, "{body}");
    assert!(body["names"].as_array().unwrap().contains(&json!("region")), "{body}");

    // Y5: the hand-computed profile. Folded `main;a;b 3, main;a 1, main;c 2` at 10 ms a sample:
    // total 60 ms; main 60/0; a 40/10 (self first, then b at x = 10 ms); c 20/20; b 30/30.
    let hand: SelectMergeStacktracesResponse =
        ok(&server, "SelectMergeStacktraces", &merge_request("{service_name=\"hand\"}", None));
    let f = hand.flamegraph.expect("flame graph");
    let ms = 1_000_000;
    assert_eq!(f.names, ["total", "main", "a", "c", "b"]);
    assert_eq!(
        levels(&f),
        vec![
            vec![0, 60 * ms, 0, 0],
            vec![0, 60 * ms, 0, 1],
            vec![0, 40 * ms, 10 * ms, 2, 0, 20 * ms, 20 * ms, 3],
            vec![10 * ms, 30 * ms, 30 * ms, 4],
        ]
    );
    assert_eq!((f.total, f.max_self), (60 * ms, 30 * ms));
    let stacks = tree(&f).stacks(0);
    let expected: BTreeMap<Vec<String>, i64> = [("main;a;b", 30), ("main;a", 10), ("main;c", 20)]
        .into_iter()
        .map(|(s, v)| (s.split(';').map(String::from).collect(), v * ms))
        .collect();
    assert_eq!(stacks, expected);
    // The same call in JSON: int64 as strings, proto3 JSON names.
    let (status, body) = call_json(
        &server,
        "SelectMergeStacktraces",
        json!({"profileTypeID": CPU, "labelSelector": "{service_name=\"hand\"}", "start": "1", "end": END_MS.to_string()}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["flamegraph"]["names"], json!(["total", "main", "a", "c", "b"]));
    assert_eq!(body["flamegraph"]["levels"][3]["values"], json!(["10000000", "30000000", "30000000", "4"]));
    assert_eq!(
        (body["flamegraph"]["total"].clone(), body["flamegraph"]["maxSelf"].clone()),
        (json!("60000000"), json!("30000000"))
    );
    // max_nodes 2: only the two widest nodes (main 60, a 40) are kept; c and b fold into "other".
    let small: SelectMergeStacktracesResponse =
        ok(&server, "SelectMergeStacktraces", &merge_request("{service_name=\"hand\"}", Some(2)));
    let small = small.flamegraph.unwrap();
    let names: BTreeSet<&str> = small.names.iter().map(String::as_str).collect();
    assert!(names.contains("other") && !names.contains("b") && !names.contains("c"), "{:?}", small.names);
    assert_eq!(tree(&small).nodes[0].value, [60 * ms]);
    // max_nodes 0 means the default, as in Pyroscope.
    let zero: SelectMergeStacktracesResponse =
        ok(&server, "SelectMergeStacktraces", &merge_request("{service_name=\"hand\"}", Some(0)));
    assert_eq!(zero.flamegraph.unwrap(), f);

    // Y5 on a real profile, against `go tool pprof -top` per function.
    let top = pprof_top(&manifest_dir().join("../testdata/corpus/go-dev/fast/cpu-10s.pb.gz"));
    let merged: SelectMergeStacktracesResponse =
        ok(&server, "SelectMergeStacktraces", &merge_request("{service_name=\"fast-svc\"}", Some(1 << 20)));
    let merged = merged.flamegraph.unwrap();
    let ours = tree(&merged).flat_and_cum(0);
    assert!(!top.is_empty());
    for (function, (flat, cum)) in &top {
        assert_eq!(ours.get(function), Some(&(*flat, *cum)), "{function}: go tool pprof says flat {flat} cum {cum}");
    }
    assert_eq!(merged.total, top.values().map(|v| v.0).sum::<i64>(), "total = sum of flat");

    // SelectMergeProfile: a pprof profile that decodes to the same stacks.
    let merged_profile = |max_nodes: Option<i64>| {
        let req = SelectMergeProfileRequest {
            profile_type_id: CPU.into(),
            label_selector: "{service_name=\"hand\"}".into(),
            start: 1,
            end: END_MS,
            max_nodes,
        };
        let resp = reqwest::blocking::Client::new()
            .post(url(&server, "SelectMergeProfile"))
            .header("Content-Type", "application/proto")
            .body(req.encode_to_vec())
            .send()
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "application/proto");
        analyzer::pprof::decode(&resp.bytes().unwrap()).expect("a pprof profile")
    };
    let profile = merged_profile(None);
    let mut back = analyzer::flame::Folded::new();
    back.add_profile(&profile, 0);
    assert_eq!(back.stacks().clone(), expected);
    assert_eq!((profile.sample_types[0].kind.as_str(), profile.sample_types[0].unit.as_str()), ("cpu", "nanoseconds"));
    // max_nodes 2 keeps main (60) and a (40); b (30, under a) and c (20, under main) are cut
    // to "other" where the flame graph folds them.
    let mut back = analyzer::flame::Folded::new();
    back.add_profile(&merged_profile(Some(2)), 0);
    let truncated: BTreeMap<Vec<String>, i64> = [("main;a", 10), ("main;a;other", 30), ("main;other", 20)]
        .into_iter()
        .map(|(s, v)| (s.split(';').map(String::from).collect(), v * ms))
        .collect();
    assert_eq!(back.stacks().clone(), truncated);
    let (status, body) = call_json(
        &server,
        "SelectMergeProfile",
        json!({"profileTypeID": CPU, "labelSelector": "{service_name=\"hand\"}", "start": "1", "end": END_MS.to_string()}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["stringTable"].as_array().unwrap().contains(&json!("main")), "{body}");
    assert_eq!(body["sample"].as_array().unwrap().len(), 3);

    // Diff: the fast and slow corpus profiles.
    let diff: DiffResponse = ok(
        &server,
        "Diff",
        &DiffRequest {
            left: Some(merge_request("{service_name=\"fast-svc\"}", None)),
            right: Some(merge_request("{service_name=\"slow-svc\"}", None)),
        },
    );
    let d = diff.flamegraph.unwrap();
    let fast_total = merged.total;
    assert_eq!(d.left_ticks, fast_total);
    assert!(d.right_ticks > 0);
    assert_eq!(d.total, d.left_ticks + d.right_ticks);
    assert_eq!(d.names[0], "total");
    assert_eq!(d.levels[0].values, [0, d.left_ticks, 0, 0, d.right_ticks, 0, 0]);
    let dtree = e2e::flame::decode(&d.names, &d.levels.iter().map(|l| l.values.clone()).collect::<Vec<_>>(), 2)
        .expect("both sides nest");
    assert_eq!(dtree.nodes[0].value, [d.left_ticks, d.right_ticks]);
    let (status, body) = call_json(
        &server,
        "Diff",
        json!({"left": {"profileTypeID": CPU, "labelSelector": "{service_name=\"hand\"}", "start": "1", "end": END_MS.to_string()},
               "right": {"profileTypeID": CPU, "labelSelector": "{service_name=\"hand\"}", "start": "1", "end": END_MS.to_string()}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["flamegraph"]["leftTicks"].clone(), body["flamegraph"]["rightTicks"].clone()),
        (json!("60000000"), json!("60000000"))
    );

    // Y7: SelectSeries at 15 s steps, grouped by service.
    let hand_ms = hand_from_s * 1000;
    let series: SelectSeriesResponse = ok(
        &server,
        "SelectSeries",
        &SelectSeriesRequest {
            profile_type_id: CPU.into(),
            label_selector: "{service_name=\"hand\"}".into(),
            start: hand_ms - 60_000,
            end: hand_ms + 60_000,
            group_by: vec!["service_name".into()],
            step: 15.0,
            exemplar_type: 3,
            ..Default::default()
        },
    );
    assert_eq!(series.series.len(), 1);
    assert_eq!(series.series[0].labels, [LabelPair { name: "service_name".into(), value: "hand".into() }]);
    // The profile at `hand_ms` falls on the step boundary at exactly `hand_ms` (start + 4 steps).
    assert_eq!(series.series[0].points, [Point { value: 60.0 * ms as f64, timestamp: hand_ms }]);
    let all: SelectSeriesResponse = ok(
        &server,
        "SelectSeries",
        &SelectSeriesRequest {
            profile_type_id: CPU.into(),
            label_selector: "{}".into(),
            start: 1,
            end: END_MS,
            group_by: vec!["service_name".into()],
            step: 86_400.0 * 365.0,
            limit: Some(2),
            aggregation: Some(1),
            ..Default::default()
        },
    );
    let labels: Vec<&str> = all.series.iter().map(|s| s.labels[0].value.as_str()).collect();
    assert_eq!(labels, ["fast-svc", "slow-svc"], "the two largest by total, sorted by labels");
    let (status, body) = call_json(
        &server,
        "SelectSeries",
        json!({"profileTypeID": CPU, "labelSelector": "{service_name=\"hand\"}", "start": (hand_ms - 60_000).to_string(),
               "end": (hand_ms + 60_000).to_string(), "step": 15, "aggregation": "TIME_SERIES_AGGREGATION_TYPE_SUM",
               "exemplarType": "EXEMPLAR_TYPE_INDIVIDUAL"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["series"][0]["points"][0], json!({"value": 60_000_000.0, "timestamp": hand_ms.to_string()}));
    assert_eq!(body["series"][0]["labels"], json!([]));

    // Series (the Profiles app): label sets cut to the names asked for.
    let sets: SeriesResponse = ok(
        &server,
        "Series",
        &SeriesRequest {
            matchers: vec![format!("{{__profile_type__=\"{CPU}\"}}")],
            label_names: vec!["service_name".into(), "__profile_type__".into()],
            start: 1,
            end: END_MS,
        },
    );
    let got: Vec<Vec<(String, String)>> =
        sets.labels_set.iter().map(|l| l.labels.iter().map(|p| (p.name.clone(), p.value.clone())).collect()).collect();
    let want: Vec<Vec<(String, String)>> = ["fast-svc", "hand", "slow-svc"]
        .iter()
        .map(|s| vec![("__profile_type__".to_string(), CPU.to_string()), ("service_name".to_string(), s.to_string())])
        .collect();
    assert_eq!(got, want);
    let (status, body) =
        call_json(&server, "Series", json!({"labelNames": ["service_name"], "matchers": ["{service_name=\"hand\"}"]}));
    assert_eq!((status, body), (200, json!({"labelsSet": [{"labels": [{"name": "service_name", "value": "hand"}]}]})));

    // GetProfileStats.
    let stats: GetProfileStatsResponse = ok(&server, "GetProfileStats", &Empty {});
    assert!(stats.data_ingested);
    assert!(stats.oldest_profile_time < hand_ms, "the corpus' profiles are older: {stats:?}");
    assert_eq!(stats.newest_profile_time, hand_ms, "{stats:?}");
    let (status, body) = call_json(&server, "GetProfileStats", json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dataIngested"], true);
    assert_eq!(body["newestProfileTime"], hand_ms.to_string());

    // Tenants: the other tenant sees only its own service; ours never sees it.
    let other: NamesResponse = call(
        &server,
        "LabelValues",
        &LabelValuesRequest { name: "service_name".into(), matchers: vec![], start: 1, end: END_MS },
        Some("other"),
    )
    .unwrap();
    assert_eq!(other.names, ["secret-svc"]);
    let hidden: SelectMergeStacktracesResponse =
        ok(&server, "SelectMergeStacktraces", &merge_request("{service_name=\"secret-svc\"}", None));
    assert_eq!(hidden.flamegraph.unwrap().total, 0, "another tenant's profile is never visible");
    let empty_other: SelectMergeStacktracesResponse =
        call(&server, "SelectMergeStacktraces", &merge_request("{service_name=\"hand\"}", None), Some("other"))
            .unwrap();
    let empty_other = empty_other.flamegraph.unwrap();
    assert_eq!((levels(&empty_other), empty_other.names), (vec![vec![0, 0, 0, 0]], vec!["total".to_string()]));
    assert_error(
        call::<NamesResponse>(&server, "LabelNames", &LabelNamesRequest::default(), Some("../etc")).unwrap_err(),
        400,
        "invalid_argument",
        "",
    );

    // Once everything is in parts, the same flame graphs, twice (decoded, then kept).
    eventually(Duration::from_secs(30), || {
        let (_, stats) = server.get("/api/v1/stats", None);
        (stats["signals"]["profiles"]["in_head"] == 0).then_some(())
    })
    .expect("the head is flushed within 30 s");
    for _ in 0..2 {
        let again: SelectMergeStacktracesResponse =
            ok(&server, "SelectMergeStacktraces", &merge_request("{service_name=\"hand\"}", None));
        assert_eq!(again.flamegraph.unwrap(), f, "from parts");
        let again: SelectMergeStacktracesResponse =
            ok(&server, "SelectMergeStacktraces", &merge_request("{service_name=\"fast-svc\"}", Some(1 << 20)));
        assert_eq!(again.flamegraph.unwrap(), merged, "from parts");
    }

    bad_input(&server);
}

/// Every bad input answers its Connect code, the HTTP status Connect gives it, and a message
/// saying what was wrong.
fn bad_input(server: &Server) {
    const METHODS: [&str; 10] = [
        "ProfileTypes",
        "LabelValues",
        "LabelNames",
        "Series",
        "SelectMergeStacktraces",
        "SelectMergeSpanProfile",
        "SelectMergeProfile",
        "SelectSeries",
        "Diff",
        "GetProfileStats",
    ];
    let json_error = |(status, ct, body): (u16, String, Vec<u8>)| {
        assert_eq!(ct, "application/json");
        (status, serde_json::from_slice::<Value>(&body).unwrap())
    };
    for method in METHODS {
        // Field 1 as a varint where every message has a string or a message: a wire-type clash
        // for some, a truncated varint for all.
        let garbage = vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_error(
            json_error(raw(server, method, "application/proto", garbage)),
            400,
            "invalid_argument",
            "malformed protobuf",
        );
        assert_error(
            json_error(raw(server, method, "application/json", b"{\"start\": ".to_vec())),
            400,
            "invalid_argument",
            "malformed JSON",
        );
        assert_error(
            json_error(raw(server, method, "application/json", b"[1,2]".to_vec())),
            400,
            "invalid_argument",
            "malformed JSON",
        );
        assert_error(
            json_error(raw(server, method, "text/plain", b"{}".to_vec())),
            415,
            "unknown",
            "unsupported content type",
        );
    }
    assert_error(
        json_error(raw(server, "NoSuchMethod", "application/proto", Vec::new())),
        404,
        "unimplemented",
        "NoSuchMethod",
    );
    assert_error(
        json_error(raw(server, "SelectHeatmap", "application/proto", Vec::new())),
        404,
        "unimplemented",
        "SelectHeatmap",
    );

    let mut backwards = merge_request("{}", None);
    backwards.start = 2000;
    backwards.end = 1000;
    assert_error(
        call::<Empty>(server, "SelectMergeStacktraces", &backwards, None).unwrap_err(),
        400,
        "invalid_argument",
        "after end",
    );
    assert_error(
        call::<Empty>(server, "LabelNames", &LabelNamesRequest { matchers: vec![], start: 2000, end: 1000 }, None)
            .unwrap_err(),
        400,
        "invalid_argument",
        "after end",
    );
    let mut unset = merge_request("{}", None);
    unset.start = 0;
    unset.end = 0;
    assert_error(
        call::<Empty>(server, "SelectMergeStacktraces", &unset, None).unwrap_err(),
        400,
        "invalid_argument",
        "required",
    );
    let series = |step: f64| SelectSeriesRequest {
        profile_type_id: CPU.into(),
        label_selector: "{}".into(),
        start: 1,
        end: END_MS,
        step,
        ..Default::default()
    };
    assert_error(
        call::<Empty>(server, "SelectSeries", &series(1.0), None).unwrap_err(),
        400,
        "invalid_argument",
        "points per series",
    );
    assert_error(
        call::<Empty>(server, "SelectSeries", &series(0.0), None).unwrap_err(),
        400,
        "invalid_argument",
        "step",
    );
    assert_error(
        call::<Empty>(server, "SelectSeries", &series(-15.0), None).unwrap_err(),
        400,
        "invalid_argument",
        "step",
    );
    assert_error(
        call::<Empty>(server, "SelectMergeStacktraces", &merge_request("{}", Some(-1)), None).unwrap_err(),
        400,
        "invalid_argument",
        "max_nodes must not be negative",
    );
    assert_error(
        call::<Empty>(server, "SelectMergeStacktraces", &merge_request("{}", Some(1 << 30)), None).unwrap_err(),
        400,
        "invalid_argument",
        "exceeds the limit",
    );
    let (status, body) = call_json(
        server,
        "SelectMergeSpanProfile",
        json!({"profileTypeID": CPU, "labelSelector": "{}", "start": "1", "end": "2", "maxNodes": "-5", "spanSelector": ["00f067aa0ba902b7"]}),
    );
    assert_error((status, body), 400, "invalid_argument", "max_nodes must not be negative");
    for selector in ["{service_name=}", "service_name=\"x\"", "{a=\"b\"} + 1", "{a=~\"(\"}"] {
        assert_error(
            call::<Empty>(server, "SelectMergeStacktraces", &merge_request(selector, None), None).unwrap_err(),
            400,
            "invalid_argument",
            "label_selector",
        );
        assert_error(
            call::<Empty>(
                server,
                "LabelNames",
                &LabelNamesRequest { matchers: vec![selector.into()], start: 1, end: END_MS },
                None,
            )
            .unwrap_err(),
            400,
            "invalid_argument",
            "matchers",
        );
    }
    let mut bad_type = merge_request("{}", None);
    bad_type.profile_type_id = "cpu".into();
    assert_error(
        call::<Empty>(server, "SelectMergeStacktraces", &bad_type, None).unwrap_err(),
        400,
        "invalid_argument",
        "profile_typeID",
    );
    assert_error(
        call::<Empty>(
            server,
            "SelectMergeSpanProfile",
            &SelectMergeSpanProfileRequest {
                profile_type_id: CPU.into(),
                label_selector: "{}".into(),
                span_selector: vec!["not-a-span-id".into()],
                start: 1,
                end: END_MS,
                max_nodes: None,
            },
            None,
        )
        .unwrap_err(),
        400,
        "invalid_argument",
        "span_selector",
    );
    assert_error(
        call::<Empty>(server, "Diff", &DiffRequest { left: Some(merge_request("{}", None)), right: None }, None)
            .unwrap_err(),
        400,
        "invalid_argument",
        "right is required",
    );
    // A body over the limit (1 MiB), refused as it is inflated, before it is buffered. Sent
    // gzipped (a few kilobytes on the wire): a 2 MiB plain body races the server's early answer,
    // and the client may see its write cut instead of the answer.
    let huge = LabelNamesRequest { matchers: vec!["x".repeat(2 << 20)], start: 1, end: 2 };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &huge.encode_to_vec()).unwrap();
    let resp = reqwest::blocking::Client::new()
        .post(url(server, "LabelNames"))
        .header("Content-Type", "application/proto")
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .expect("gzipped call");
    let status = resp.status().as_u16();
    assert_error((status, resp.json().expect("Connect error JSON")), 429, "resource_exhausted", "limit");
    // GET is not a Connect unary call.
    let get = reqwest::blocking::get(url(server, "ProfileTypes")).unwrap();
    assert_eq!(get.status().as_u16(), 405);
}

/// Traces to profiles: a Go program labels each request's CPU samples with its own span id
/// (`runtime/pprof.Do`, as otel-profiling-go does); the collector scrapes its CPU profile; the
/// slow route's span ids select the slow route's frames and nothing of the fast route's.
#[test]
fn span_profiles_select_the_cpu_of_the_selected_spans() {
    let dir = tempfile::tempdir().unwrap();
    let bin = go::build(dir.path(), "spanprofile", &go::program("spanprofile"));
    let program = GoProcess::start(&bin, &[]);
    let config = dir.path().join("slo-gate.toml");
    std::fs::write(
        &config,
        format!(
            "[[scrape]]\ntargets = [\"{}\"]\nlabels = {{ service_name = \"spanprofile\" }}\ninterval = \"3s\"\ncpu_seconds = 2\nprofiles = [\"profile\"]\ntimeout = \"10s\"\n",
            program.addr
        ),
    )
    .unwrap();
    let config_arg = config.to_string_lossy().into_owned();
    let server = Server::start(&dir.path().join("data"), &["--config", &config_arg]);

    let span_request = |spans: Vec<String>| SelectMergeSpanProfileRequest {
        profile_type_id: CPU.into(),
        label_selector: "{service_name=\"spanprofile\"}".into(),
        span_selector: spans,
        start: 1,
        end: END_MS,
        max_nodes: None,
    };
    let spans_used = || -> BTreeMap<String, Vec<String>> {
        reqwest::blocking::get(format!("http://{}/spans", program.addr)).unwrap().json().unwrap()
    };
    let function_names = |f: &FlameGraph| -> BTreeSet<String> { f.names.iter().cloned().collect() };
    // Wait until a scraped profile holds samples of both routes' spans.
    let (slow, fast) = eventually(Duration::from_secs(90), || {
        let used = spans_used();
        let slow: SelectMergeStacktracesResponse =
            call(&server, "SelectMergeSpanProfile", &span_request(used["slow"].clone()), None).ok()?;
        let fast: SelectMergeStacktracesResponse =
            call(&server, "SelectMergeSpanProfile", &span_request(used["fast"].clone()), None).ok()?;
        let (slow, fast) = (slow.flamegraph?, fast.flamegraph?);
        (function_names(&slow).contains("main.slowWork") && function_names(&fast).contains("main.fastWork"))
            .then_some((slow, fast))
    })
    .expect("span profiles of both routes within 90 s");
    assert!(
        !function_names(&slow).contains("main.fastWork"),
        "the slow spans' graph holds only slow frames: {:?}",
        slow.names
    );
    assert!(!function_names(&fast).contains("main.slowWork"), "{:?}", fast.names);
    tree(&slow);
    // The whole service's graph holds both, and more than the slow spans alone.
    let all: SelectMergeStacktracesResponse =
        ok(&server, "SelectMergeStacktraces", &merge_request("{service_name=\"spanprofile\"}", None));
    let all = all.flamegraph.unwrap();
    assert!(function_names(&all).contains("main.slowWork") && function_names(&all).contains("main.fastWork"));
    assert!(all.total > slow.total);
    // Span ids nobody used select nothing; JSON works the same.
    let none: SelectMergeStacktracesResponse =
        ok(&server, "SelectMergeSpanProfile", &span_request(vec!["0000000000000001".into()]));
    assert_eq!(none.flamegraph.unwrap().total, 0);
    let used = spans_used();
    let (status, body) = call_json(
        &server,
        "SelectMergeSpanProfile",
        json!({"profileTypeID": CPU, "labelSelector": "{service_name=\"spanprofile\"}", "spanSelector": used["slow"],
               "start": "1", "end": END_MS.to_string(), "maxNodes": "8192"}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["flamegraph"]["names"].as_array().unwrap().contains(&json!("main.slowWork")), "{body}");
    // Span ids are not series labels.
    let names: NamesResponse =
        ok(&server, "LabelNames", &LabelNamesRequest { matchers: vec![], start: 1, end: END_MS });
    assert!(!names.names.contains(&"span_id".to_string()), "{:?}", names.names);
}

/// A damaged part costs that part: the call still answers 200 with what the other data says,
/// and a `Warning` header names the part (relative to the data directory).
#[test]
fn a_damaged_part_is_a_warning_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slo-gate.toml");
    std::fs::write(&config, "retention = \"3650d\"\n[storage]\nflush_interval = \"1s\"\n").unwrap();
    let config_arg = config.to_string_lossy().into_owned();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--config", &config_arg]);
    push(&server, "fast-svc", &corpus("fast/cpu-10s.pb.gz"), None);
    let parts = eventually(Duration::from_secs(30), || {
        let mut found = Vec::new();
        let mut dirs = vec![data.join("parts")];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).ok()?.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "parquet") {
                    found.push(path);
                }
            }
        }
        (!found.is_empty()).then_some(found)
    })
    .expect("a part within 30 s");
    eventually(Duration::from_secs(30), || {
        let (_, stats) = server.get("/api/v1/stats", None);
        (stats["signals"]["profiles"]["in_head"] == 0).then_some(())
    })
    .expect("the head is flushed");
    for part in &parts {
        let len = std::fs::metadata(part).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(part).unwrap().set_len(len - 100).unwrap();
    }
    let resp = reqwest::blocking::Client::new()
        .post(url(&server, "SelectMergeStacktraces"))
        .header("Content-Type", "application/proto")
        .body(merge_request("{service_name=\"fast-svc\"}", None).encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let warnings: Vec<String> =
        resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert!(!warnings.is_empty() && warnings.iter().all(|w| w.contains("parts/")), "{warnings:?}");
    let root = data.to_string_lossy().into_owned();
    assert!(warnings.iter().all(|w| !w.contains(&root)), "no absolute paths: {warnings:?}");
    let f = SelectMergeStacktracesResponse::decode(resp.bytes().unwrap().as_ref()).unwrap().flamegraph.unwrap();
    assert_eq!(f.total, 0, "the damaged part's profiles are lost, nothing else fails");
}
