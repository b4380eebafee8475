//! Pyroscope's push API as its agents send it, for the push tests.

use prost::Message;

/// Pyroscope's `push.v1.PushRequest`, written here from `api/push/v1/push.proto` independently
/// of the collector's copy.
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<RawProfileSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RawProfileSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RawSample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RawSample {
    #[prost(bytes = "vec", tag = "1")]
    pub raw_profile: Vec<u8>,
    #[prost(string, tag = "2")]
    pub id: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One CPU series (`process_cpu`, version 2.0.1, region eu) of `service` with one profile.
pub fn push_request(service: &str, raw: &[u8]) -> PushRequest {
    let label = |name: &str, value: &str| LabelPair { name: name.into(), value: value.into() };
    PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![
                label("__name__", "process_cpu"),
                label("service_name", service),
                label("service_version", "2.0.1"),
                label("region", "eu"),
            ],
            samples: vec![RawSample { raw_profile: raw.to_vec(), id: "0b4e3b2c-1d1f-4f7e-9d0a-3c1b2a4d5e6f".into() }],
        }],
    }
}

/// Pyroscope's query API (`querier.v1` and `types.v1`) as Grafana's client encodes it, written
/// here from the field numbers in the wire notes independently of the collector's copy: only
/// the fields the tests set or read.
pub mod querier {
    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    pub struct ProfileTypesRequest {
        #[prost(int64, tag = "1")]
        pub start: i64,
        #[prost(int64, tag = "2")]
        pub end: i64,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct ProfileTypesResponse {
        #[prost(message, repeated, tag = "1")]
        pub profile_types: Vec<ProfileType>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct ProfileType {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(string, tag = "4")]
        pub sample_type: String,
        #[prost(string, tag = "5")]
        pub sample_unit: String,
        #[prost(string, tag = "6")]
        pub period_type: String,
        #[prost(string, tag = "7")]
        pub period_unit: String,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct LabelNamesRequest {
        #[prost(string, repeated, tag = "1")]
        pub matchers: Vec<String>,
        #[prost(int64, tag = "2")]
        pub start: i64,
        #[prost(int64, tag = "3")]
        pub end: i64,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct LabelValuesRequest {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, repeated, tag = "2")]
        pub matchers: Vec<String>,
        #[prost(int64, tag = "3")]
        pub start: i64,
        #[prost(int64, tag = "4")]
        pub end: i64,
    }

    /// `LabelNamesResponse` and `LabelValuesResponse` (both `repeated string names = 1`).
    #[derive(Clone, PartialEq, Message)]
    pub struct NamesResponse {
        #[prost(string, repeated, tag = "1")]
        pub names: Vec<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct SelectMergeStacktracesRequest {
        #[prost(string, tag = "1")]
        pub profile_type_id: String,
        #[prost(string, tag = "2")]
        pub label_selector: String,
        #[prost(int64, tag = "3")]
        pub start: i64,
        #[prost(int64, tag = "4")]
        pub end: i64,
        #[prost(int64, optional, tag = "5")]
        pub max_nodes: Option<i64>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct SelectMergeStacktracesResponse {
        #[prost(message, optional, tag = "1")]
        pub flamegraph: Option<FlameGraph>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct SelectMergeSpanProfileRequest {
        #[prost(string, tag = "1")]
        pub profile_type_id: String,
        #[prost(string, tag = "2")]
        pub label_selector: String,
        #[prost(string, repeated, tag = "3")]
        pub span_selector: Vec<String>,
        #[prost(int64, tag = "4")]
        pub start: i64,
        #[prost(int64, tag = "5")]
        pub end: i64,
        #[prost(int64, optional, tag = "6")]
        pub max_nodes: Option<i64>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct SelectMergeProfileRequest {
        #[prost(string, tag = "1")]
        pub profile_type_id: String,
        #[prost(string, tag = "2")]
        pub label_selector: String,
        #[prost(int64, tag = "3")]
        pub start: i64,
        #[prost(int64, tag = "4")]
        pub end: i64,
        #[prost(int64, optional, tag = "5")]
        pub max_nodes: Option<i64>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct SelectSeriesRequest {
        #[prost(string, tag = "1")]
        pub profile_type_id: String,
        #[prost(string, tag = "2")]
        pub label_selector: String,
        #[prost(int64, tag = "3")]
        pub start: i64,
        #[prost(int64, tag = "4")]
        pub end: i64,
        #[prost(string, repeated, tag = "5")]
        pub group_by: Vec<String>,
        #[prost(double, tag = "6")]
        pub step: f64,
        #[prost(int32, optional, tag = "7")]
        pub aggregation: Option<i32>,
        #[prost(int64, optional, tag = "9")]
        pub limit: Option<i64>,
        #[prost(int32, tag = "10")]
        pub exemplar_type: i32,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct SelectSeriesResponse {
        #[prost(message, repeated, tag = "1")]
        pub series: Vec<Series>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Series {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<super::LabelPair>,
        #[prost(message, repeated, tag = "2")]
        pub points: Vec<Point>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Point {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct SeriesRequest {
        #[prost(string, repeated, tag = "1")]
        pub matchers: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub label_names: Vec<String>,
        #[prost(int64, tag = "3")]
        pub start: i64,
        #[prost(int64, tag = "4")]
        pub end: i64,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct SeriesResponse {
        #[prost(message, repeated, tag = "2")]
        pub labels_set: Vec<Labels>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Labels {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<super::LabelPair>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct DiffRequest {
        #[prost(message, optional, tag = "1")]
        pub left: Option<SelectMergeStacktracesRequest>,
        #[prost(message, optional, tag = "2")]
        pub right: Option<SelectMergeStacktracesRequest>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct DiffResponse {
        #[prost(message, optional, tag = "1")]
        pub flamegraph: Option<FlameGraphDiff>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct GetProfileStatsResponse {
        #[prost(bool, tag = "1")]
        pub data_ingested: bool,
        #[prost(int64, tag = "2")]
        pub oldest_profile_time: i64,
        #[prost(int64, tag = "3")]
        pub newest_profile_time: i64,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Empty {}

    #[derive(Clone, PartialEq, Message)]
    pub struct FlameGraph {
        #[prost(string, repeated, tag = "1")]
        pub names: Vec<String>,
        #[prost(message, repeated, tag = "2")]
        pub levels: Vec<Level>,
        #[prost(int64, tag = "3")]
        pub total: i64,
        #[prost(int64, tag = "4")]
        pub max_self: i64,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct FlameGraphDiff {
        #[prost(string, repeated, tag = "1")]
        pub names: Vec<String>,
        #[prost(message, repeated, tag = "2")]
        pub levels: Vec<Level>,
        #[prost(int64, tag = "3")]
        pub total: i64,
        #[prost(int64, tag = "4")]
        pub max_self: i64,
        #[prost(int64, tag = "5")]
        pub left_ticks: i64,
        #[prost(int64, tag = "6")]
        pub right_ticks: i64,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Level {
        #[prost(int64, repeated, tag = "1")]
        pub values: Vec<i64>,
    }
}
