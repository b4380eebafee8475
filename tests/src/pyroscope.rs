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
