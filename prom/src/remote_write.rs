//! Prometheus remote write 1.0: a `WriteRequest` protobuf, snappy block-compressed, POSTed with
//! `Content-Encoding: snappy` and `Content-Type: application/x-protobuf`.
//!
//! The messages are written here from the field numbers of Prometheus's `prompb/remote.proto`
//! and `prompb/types.proto` (remote write specification 1.0, as served by Prometheus 2.42):
//! `WriteRequest { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }`,
//! `TimeSeries { repeated Label labels = 1; repeated Sample samples = 2; repeated Exemplar
//! exemplars = 3; repeated Histogram histograms = 4; }`, `Label { string name = 1; string value =
//! 2; }`, `Sample { double value = 1; int64 timestamp = 2; }`, `Exemplar { repeated Label labels
//! = 1; double value = 2; int64 timestamp = 3; }`, `MetricMetadata { MetricType type = 1; string
//! metric_family_name = 2; string help = 4; string unit = 5; }`. Native histograms (field 4) are
//! kept as raw bytes only so that a request carrying them can be refused by name.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histograms, undecoded.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct MetricMetadata {
    /// `MetricType`: 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gauge histogram, 5 summary,
    /// 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// What is wrong with a remote-write body (every one is the sender's fault: HTTP 400, which
/// Prometheus does not retry).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the body is not snappy block-compressed: {0}")]
    Snappy(String),
    #[error("the body decompresses to {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("the body is not a remote-write WriteRequest protobuf: {0}")]
    Protobuf(String),
}

/// The size a snappy body announces it decompresses to (read from its header, so a caller can
/// account for the memory before [`decode`] allocates it).
pub fn decompressed_len(body: &[u8]) -> Result<usize, DecodeError> {
    snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))
}

/// Decodes a remote-write body, refusing before allocating when its snappy header announces
/// more than `max_decompressed` bytes.
pub fn decode(body: &[u8], max_decompressed: usize) -> Result<WriteRequest, DecodeError> {
    let size = decompressed_len(body)?;
    if size > max_decompressed {
        return Err(DecodeError::TooLarge { size, limit: max_decompressed });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// Encodes a request as a sender does (protobuf, then snappy).
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).expect("snappy compresses any input")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label { name: "__name__".into(), value: "http_requests_total".into() },
                    Label { name: "job".into(), value: "api".into() },
                ],
                samples: vec![Sample { value: 1.5, timestamp: 1_000 }, Sample { value: f64::NAN, timestamp: 2_000 }],
                exemplars: vec![],
                histograms: vec![],
            }],
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "http_requests_total".into(),
                help: "Requests.".into(),
                unit: String::new(),
            }],
        }
    }

    #[test]
    fn round_trips_and_field_numbers() {
        let r = request();
        let back = decode(&encode(&r), 1 << 20).unwrap();
        assert_eq!(back.timeseries[0].labels, r.timeseries[0].labels);
        assert!(back.timeseries[0].samples[1].value.is_nan());
        assert_eq!(back.metadata, r.metadata);
        // Sample { value = 1 (fixed64), timestamp = 2 (varint) }.
        let sample = Sample { value: 1.0, timestamp: 3 }.encode_to_vec();
        assert_eq!(sample, [0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 3]);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let raw = request().encode_to_vec();
        assert!(matches!(decode(&raw, 1 << 20), Err(DecodeError::Snappy(_)) | Err(DecodeError::Protobuf(_))));
        let not_proto = snap::raw::Encoder::new().compress_vec(b"\xff\xff\xff\xff garbage").unwrap();
        assert!(matches!(decode(&not_proto, 1 << 20), Err(DecodeError::Protobuf(_))));
        let big = encode(&request());
        assert!(matches!(decode(&big, 10), Err(DecodeError::TooLarge { limit: 10, .. })));
        assert!(matches!(decode(b"", 10), Err(DecodeError::Snappy(_))));
    }
}
