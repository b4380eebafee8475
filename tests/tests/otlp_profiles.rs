//! OTLP profiles (v1development) built with the protobuf types, sent over gRPC and HTTP: the
//! stored samples keep their stacks (inlined frames expanded, innermost first), values,
//! types, attributes and trace links; a dictionary that points outside itself is refused.

use e2e::Server;
use e2e::otlp::kv;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::profiles_service_client::ProfilesServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Link, Location, Profile, ProfilesDictionary, ResourceProfiles, Sample,
    ScopeProfiles, Stack, ValueType,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Value, json};

/// A CPU profile: main → handle → (inlined) hash, two samples, one linked to a span.
fn cpu_profile(service: &str) -> ExportProfilesServiceRequest {
    let strings = ["", "cpu", "nanoseconds", "main.main", "main.handle", "main.hash", "main.go", "thread", "worker-1"];
    let s = |x: &str| strings.iter().position(|y| *y == x).unwrap() as i32;
    let dictionary = ProfilesDictionary {
        string_table: strings.iter().map(|x| x.to_string()).collect(),
        function_table: vec![
            Function::default(),
            Function { name_strindex: s("main.main"), filename_strindex: s("main.go"), ..Default::default() },
            Function { name_strindex: s("main.handle"), filename_strindex: s("main.go"), ..Default::default() },
            Function { name_strindex: s("main.hash"), filename_strindex: s("main.go"), ..Default::default() },
        ],
        location_table: vec![
            Location::default(),
            Location { lines: vec![Line { function_index: 1, line: 10, column: 0 }], ..Default::default() },
            // main.hash inlined into main.handle: innermost line first.
            Location {
                lines: vec![
                    Line { function_index: 3, line: 30, column: 0 },
                    Line { function_index: 2, line: 20, column: 0 },
                ],
                ..Default::default()
            },
        ],
        stack_table: vec![
            Stack::default(),
            Stack { location_indices: vec![2, 1] },
            Stack { location_indices: vec![1] },
        ],
        link_table: vec![Link::default(), Link { trace_id: vec![7; 16], span_id: vec![9; 8] }],
        attribute_table: vec![
            KeyValueAndUnit::default(),
            KeyValueAndUnit {
                key_strindex: s("thread"),
                value: Some(AnyValue { value: Some(any_value::Value::StringValueStrindex(s("worker-1"))) }),
                unit_strindex: 0,
            },
        ],
        mapping_table: vec![],
    };
    let profile = Profile {
        sample_type: Some(ValueType { type_strindex: s("cpu"), unit_strindex: s("nanoseconds") }),
        period_type: Some(ValueType { type_strindex: s("cpu"), unit_strindex: s("nanoseconds") }),
        period: 10_000_000,
        time_unix_nano: 1_700_000_000_000_000_000,
        duration_nano: 10_000_000_000,
        profile_id: vec![1; 16],
        samples: vec![
            Sample {
                stack_index: 1,
                values: vec![30_000_000],
                attribute_indices: vec![1],
                link_index: 1,
                ..Default::default()
            },
            Sample { stack_index: 2, values: vec![10_000_000], ..Default::default() },
        ],
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service), kv("service.version", "3.1")],
                ..Default::default()
            }),
            scope_profiles: vec![ScopeProfiles { profiles: vec![profile], ..Default::default() }],
            schema_url: String::new(),
        }],
        dictionary: Some(dictionary),
    }
}

fn check_samples(server: &Server, service: &str) {
    let (status, body) = server.get(&format!("/api/v1/profiles/samples?service={service}"), None);
    assert_eq!(status, 200, "{body}");
    let samples = body["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2, "{body}");
    let hot = samples.iter().find(|s| s["value"] == 30_000_000).expect("hot sample");
    assert_eq!(
        hot["stack"],
        json!([
            {"function": "main.hash", "file": "main.go", "line": 30},
            {"function": "main.handle", "file": "main.go", "line": 20},
            {"function": "main.main", "file": "main.go", "line": 10},
        ])
    );
    assert_eq!(hot["sample_type"], "cpu");
    assert_eq!(hot["sample_unit"], "nanoseconds");
    assert_eq!(hot["period"], 10_000_000);
    assert_eq!(hot["attributes"], json!({"thread": "worker-1"}));
    assert_eq!(hot["trace_id"], hex::encode([7u8; 16]));
    assert_eq!(hot["span_id"], hex::encode([9u8; 8]));
    assert_eq!(hot["service_version"], "3.1");
    let cold = samples.iter().find(|s| s["value"] == 10_000_000).expect("cold sample");
    assert_eq!(cold["stack"], json!([{"function": "main.main", "file": "main.go", "line": 10}]));
    assert_eq!(cold["trace_id"], Value::Null);
}

#[test]
fn otlp_profiles_over_grpc_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = ProfilesServiceClient::connect(server.grpc_url()).await.unwrap();
        let resp = client.export(cpu_profile("prof-grpc")).await.unwrap().into_inner();
        assert_eq!(resp.partial_success, None);

        let mut broken = cpu_profile("prof-broken");
        broken.dictionary.as_mut().unwrap().stack_table[1].location_indices.push(99);
        let err = client.export(broken).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("location index 99 is outside the location table"), "{}", err.message());
    });
    // Close the client's connection now: an idle HTTP/2 connection holds a graceful shutdown.
    drop(rt);
    check_samples(&server, "prof-grpc");

    let resp = reqwest::blocking::Client::new()
        .post(server.http_url("/v1development/profiles"))
        .header("content-type", "application/x-protobuf")
        .body(cpu_profile("prof-http").encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    check_samples(&server, "prof-http");
    assert_eq!(server.items("profiles", None), 4);

    // After a restart the same samples come back from the WAL.
    server.stop();
    let server = Server::start(dir.path(), &[]);
    check_samples(&server, "prof-grpc");
    check_samples(&server, "prof-http");
}
