//! Property tests for everything that takes bytes from the network or the disk: whatever the
//! bytes, decoding returns a value or an error and never panics; a request that decodes goes
//! through validation and conversion to rows without panicking either (profiles carry index
//! tables that a hostile client can point anywhere).

use bytes::Bytes;
use collector::receive::ExportRequest;
use collector::receive::admission::{Budget, gunzip};
use collector::receive::otlp_http::{Format, decode};
use collector::store::wal::scan_segment;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use proptest::prelude::*;

fn ingest_path<R: ExportRequest>(format: Format, bytes: &[u8]) {
    if let Ok((mut request, _)) = decode::<R>(format, Bytes::copy_from_slice(bytes)) {
        let total = request.item_count();
        let rejections = request.validate(&collector::config::Limits::default());
        assert!(rejections.items <= total.max(rejections.items));
        let _ = request.into_rows();
    }
}

/// Mutations of a valid request reach deeper than random bytes: flip, drop or insert bytes.
fn mutate(mut data: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, op, value) in edits {
        if data.is_empty() {
            data.push(value);
            continue;
        }
        let i = at % data.len();
        match op % 3 {
            0 => data[i] ^= value,
            1 => {
                data.remove(i);
            }
            _ => data.insert(i, value),
        }
    }
    data
}

fn seed_profile() -> Vec<u8> {
    use opentelemetry_proto::tonic::profiles::v1development::*;
    use prost::Message;
    let request = ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![Profile {
                    sample_type: Some(ValueType { type_strindex: 1, unit_strindex: 2 }),
                    samples: vec![Sample { stack_index: 1, values: vec![5], link_index: 1, ..Default::default() }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: Some(ProfilesDictionary {
            string_table: vec!["".into(), "cpu".into(), "ns".into(), "f".into()],
            function_table: vec![Function::default(), Function { name_strindex: 3, ..Default::default() }],
            location_table: vec![
                Location::default(),
                Location { lines: vec![Line { function_index: 1, line: 3, column: 0 }], ..Default::default() },
            ],
            stack_table: vec![Stack::default(), Stack { location_indices: vec![1] }],
            link_table: vec![Link::default(), Link { trace_id: vec![1; 16], span_id: vec![2; 8] }],
            ..Default::default()
        }),
    };
    request.encode_to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_protobuf_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        ingest_path::<ExportTraceServiceRequest>(Format::Protobuf, &bytes);
        ingest_path::<ExportMetricsServiceRequest>(Format::Protobuf, &bytes);
        ingest_path::<ExportLogsServiceRequest>(Format::Protobuf, &bytes);
        ingest_path::<ExportProfilesServiceRequest>(Format::Protobuf, &bytes);
    }

    #[test]
    fn mutated_profiles_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)) {
        ingest_path::<ExportProfilesServiceRequest>(Format::Protobuf, &mutate(seed_profile(), &edits));
    }

    #[test]
    fn arbitrary_json_never_panics(text in "[\\\\{\\\\}\\\\[\\\\]\":,a-zA-Z0-9 ]{0,200}") {
        ingest_path::<ExportTraceServiceRequest>(Format::Json, text.as_bytes());
        ingest_path::<ExportMetricsServiceRequest>(Format::Json, text.as_bytes());
        ingest_path::<ExportLogsServiceRequest>(Format::Json, text.as_bytes());
        ingest_path::<ExportProfilesServiceRequest>(Format::Json, text.as_bytes());
    }

    #[test]
    fn arbitrary_gzip_and_wal_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = gunzip(&bytes, 1 << 20, &mut Budget::new(1 << 21, Default::default()).reservation());
        let mut segment = if bytes.first().is_some_and(|b| b % 2 == 0) { b"SLOGWAL1".to_vec() } else { b"SLOGWAL2".to_vec() };
        segment.extend_from_slice(&bytes);
        let scan = scan_segment(&segment);
        prop_assert!(scan.valid_len as usize <= segment.len());
    }
}
