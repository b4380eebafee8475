//! Profiles with very deep stacks against the real collector: a CPU profile whose one stack is
//! 10,000 frames deep, pushed as pprof through Pyroscope's `/ingest` and as an OTLP profile,
//! is stored cut to `max_stack_depth` (its outermost frames, under a frame naming how many were
//! dropped), and every answer a stack reaches (the flame graph as JSON, folded and SVG; the diff
//! as JSON and SVG; the gate's profiles; `slo-gate flame diff --collector`) comes back, before
//! and after a restart, with the server still up.

use e2e::Server;
use opentelemetry_proto::tonic::collector::profiles::v1development::{
    ExportProfilesServiceRequest, ExportProfilesServiceResponse,
};
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, Line, Location, Profile, ProfilesDictionary, ResourceProfiles, Sample, ScopeProfiles, Stack, ValueType,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

const DEPTH: usize = 10_000;
/// The collector's default `max_stack_depth`.
const KEPT: usize = 1_000;
const CPU_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const TOTAL: i64 = 1_000_000_000;

fn frame(i: usize) -> String {
    format!("frame{i}")
}

/// A pprof CPU profile with one sample whose stack is `frame0` (the root) → ... → `frame9999`.
fn deep_pprof() -> Vec<u8> {
    use analyzer::pprof::proto;
    let mut strings = vec![String::new(), "cpu".to_string(), "nanoseconds".to_string()];
    let mut functions = Vec::new();
    let mut locations = Vec::new();
    for i in 0..DEPTH {
        strings.push(frame(i));
        let id = i as u64 + 1;
        functions.push(proto::Function { id, name: strings.len() as i64 - 1, ..Default::default() });
        locations.push(proto::Location {
            id,
            line: vec![proto::Line { function_id: id, line: 1, ..Default::default() }],
            ..Default::default()
        });
    }
    let cpu = proto::ValueType { r#type: 1, unit: 2 };
    proto::Profile {
        sample_type: vec![cpu.clone()],
        // Leaf first, as pprof lists a stack.
        sample: vec![proto::Sample {
            location_id: (1..=DEPTH as u64).rev().collect(),
            value: vec![TOTAL],
            ..Default::default()
        }],
        location: locations,
        function: functions,
        string_table: strings,
        period_type: Some(cpu),
        period: 10_000_000,
        time_nanos: now_nanos() as i64,
        ..Default::default()
    }
    .encode_to_vec()
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// The same profile as OTLP, service `deep` version `otlp`, its stack table entry used by two
/// samples.
fn deep_otlp() -> ExportProfilesServiceRequest {
    let mut string_table = vec![String::new(), "cpu".to_string(), "nanoseconds".to_string()];
    let mut function_table = vec![Function::default()];
    let mut location_table = vec![Location::default()];
    for i in 0..DEPTH {
        string_table.push(frame(i));
        function_table.push(Function { name_strindex: string_table.len() as i32 - 1, ..Default::default() });
        location_table.push(Location {
            lines: vec![Line { function_index: function_table.len() as i32 - 1, line: 1, column: 0 }],
            ..Default::default()
        });
    }
    let cpu = ValueType { type_strindex: 1, unit_strindex: 2 };
    let sample = Sample { stack_index: 1, values: vec![TOTAL / 2], ..Default::default() };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![e2e::otlp::kv("service.name", "deep"), e2e::otlp::kv("service.version", "otlp")],
                ..Default::default()
            }),
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![Profile {
                    sample_type: Some(cpu),
                    period_type: Some(cpu),
                    period: 10_000_000,
                    time_unix_nano: now_nanos(),
                    profile_id: vec![3; 16],
                    samples: vec![sample.clone(), sample],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
        dictionary: Some(ProfilesDictionary {
            string_table,
            function_table,
            location_table,
            // Leaf first.
            stack_table: vec![Stack::default(), Stack { location_indices: (1..=DEPTH as i32).rev().collect() }],
            ..Default::default()
        }),
    }
}

fn selector(version: &str) -> String {
    e2e::url_encode(&format!("{{service_name=\"deep\",service_version=\"{version}\"}}"))
}

/// The folded line the cut stack must come back as.
fn expected_line(value: i64) -> String {
    let mut frames: Vec<String> = (0..KEPT).map(frame).collect();
    frames.push(format!("[{} frames truncated]", DEPTH - KEPT));
    format!("{} {value}", frames.join(";"))
}

/// Every flame-graph answer for the two services, all 200, the cut visible in each.
fn check_answers(server: &Server) {
    let marker = format!("[{} frames truncated]", DEPTH - KEPT);
    for service in ["pprof", "otlp"] {
        let base = format!("/api/v1/flamegraph?type={}&selector={}", e2e::url_encode(CPU_TYPE), selector(service));
        let (status, json) = server.get_text(&base);
        assert_eq!(
            status,
            200,
            "{service} json (status 0: the collector died): {}",
            json.chars().take(300).collect::<String>()
        );
        // Nested one level per frame: deeper than a default `serde_json::Value` reads, so look
        // at the text. Grafana's shape, from the root `total` down to the cut.
        assert!(json.starts_with(r#"{"name":"total","value":1000000000,"self":0,"children":[{"name":"frame0","#));
        assert!(json.contains(&format!(r#"{{"name":"{marker}","value":{TOTAL},"self":{TOTAL},"children":[]}}"#)));
        assert_eq!(json.matches(r#""name":"frame"#).count(), KEPT, "{service}: frames kept");
        assert!(!json.contains(&format!("\"{}\"", frame(KEPT))), "{service}: a dropped frame is in the answer");

        let (status, folded) = server.get_text(&format!("{base}&format=folded"));
        assert_eq!(status, 200, "{service} folded: {folded}");
        assert_eq!(folded, format!("{}\n", expected_line(TOTAL)), "{service}");

        let (status, svg) = server.get_text(&format!("{base}&format=svg"));
        assert_eq!(status, 200, "{service} svg");
        assert!(svg.contains("<svg") && svg.contains(&marker), "{service}: the SVG does not show the cut");
    }

    let diff = format!(
        "/api/v1/flamegraph/diff?type={}&baseline={}&candidate={}",
        e2e::url_encode(CPU_TYPE),
        selector("pprof"),
        selector("otlp")
    );
    let (status, json) = server.get_text(&diff);
    assert_eq!(status, 200, "diff json: {}", json.chars().take(300).collect::<String>());
    assert!(json.contains(&format!(
        r#"{{"name":"{marker}","value":{TOTAL},"self":{TOTAL},"valueRight":{TOTAL},"selfRight":{TOTAL},"children":[]}}"#
    )));
    assert!(json.contains(r#""baseline_total":1000000000"#), "{}", json.chars().take(300).collect::<String>());
    let (status, svg) = server.get_text(&format!("{diff}&format=svg"));
    assert_eq!(status, 200, "diff svg");
    assert!(svg.contains(&marker), "the differential SVG does not show the cut");

    let (status, profiles) = server.get_text(&format!(
        "/api/v1/gate/profiles?type={}&selector={}",
        e2e::url_encode(CPU_TYPE),
        selector("otlp")
    ));
    assert_eq!(status, 200, "gate profiles");
    assert!(profiles.contains(&marker), "the gate's profiles do not show the cut");

    // The command line reads the diff's regressions without building its flame graph.
    let out = std::process::Command::new(e2e::binary())
        .args(["flame", "diff", "--collector", &server.api_url(""), "--service", "deep"])
        .args(["--baseline-version", "pprof", "--candidate-version", "otlp", "--json"])
        .output()
        .expect("run slo-gate flame diff");
    assert!(out.status.success(), "flame diff failed: {}", String::from_utf8_lossy(&out.stderr));

    let (status, health) = server.get_text("/healthz");
    assert_eq!(status, 200, "the collector is down after the flame-graph queries: {health}");
}

// issue 11 #1: a profile with one 4,000–10,000-frame stack made `GET /api/v1/flamegraph` (JSON)
// and `/api/v1/flamegraph/diff` abort the process ("has overflowed its stack"), again after
// every restart since the profile was stored.
#[test]
fn ten_thousand_frame_stacks_are_cut_at_ingest_and_every_answer_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = reqwest::blocking::Client::new();

    let resp = client
        .post(
            server
                .api_url(&format!("/ingest?name={}&format=pprof", e2e::url_encode("deep.cpu{service_version=pprof}"))),
        )
        .header("content-type", "application/octet-stream")
        .body(deep_pprof())
        .send()
        .expect("push pprof");
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap_or_default());

    let resp = client
        .post(server.http_url("/v1development/profiles"))
        .header("content-type", "application/x-protobuf")
        .body(deep_otlp().encode_to_vec())
        .send()
        .expect("export OTLP profile");
    assert_eq!(resp.status().as_u16(), 200);
    let answer = ExportProfilesServiceResponse::decode(resp.bytes().unwrap()).unwrap();

    check_answers(&server);
    let partial = answer.partial_success.expect("a warning about the cut stacks");
    assert_eq!(partial.rejected_profiles, 0, "{}", partial.error_message);
    assert!(
        partial.error_message.contains("resource 0, scope 0, profile 0: 2 samples, up to 9000 frames dropped")
            && partial.error_message.contains("max_stack_depth (1000 frames)"),
        "{}",
        partial.error_message
    );
    // The stored profiles come back cut from the write-ahead log after a restart, and the same
    // queries still answer.
    server.stop();
    let server = Server::start(dir.path(), &[]);
    check_answers(&server);
}
