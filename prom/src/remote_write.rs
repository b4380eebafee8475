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
    let raw = decompress(body, max_decompressed)?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// Decompresses a remote-write body for [`walk`], refusing before allocating when its snappy
/// header announces more than `max_decompressed` bytes.
pub fn decompress(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, DecodeError> {
    let size = decompressed_len(body)?;
    if size > max_decompressed {
        return Err(DecodeError::TooLarge { size, limit: max_decompressed });
    }
    snap::raw::Decoder::new().decompress_vec(body).map_err(|e| DecodeError::Snappy(e.to_string()))
}

/// One series of a request, as [`walk`] finds it: borrowed from the request's bytes.
#[derive(Debug, Default)]
pub struct SeriesView<'a> {
    /// The labels in the order sent (a later label of the same name is kept as sent).
    pub labels: Vec<(&'a str, &'a str)>,
    pub samples: Vec<Sample>,
    pub exemplars: usize,
    /// Native histograms (field 4), which are not decoded.
    pub histograms: usize,
}

/// What [`walk`] stopped on: the bytes, or what the visitor said.
#[derive(Debug, PartialEq, Eq)]
pub enum WalkError<E> {
    Decode(DecodeError),
    Visitor(E),
}

/// Walks a decompressed `WriteRequest` series by series without building it: labels are
/// borrowed from `raw`, so a series costs no allocation once the scratch vectors have grown.
/// Accepts exactly what [`WriteRequest::decode`] accepts (the same wire types, UTF-8 strings,
/// unknown fields and groups skipped, prost's nesting limit of 100), exemplars and metadata
/// checked and skipped; `visit` sees each series in order and may stop the walk with an error.
pub fn walk<'a, E>(raw: &'a [u8], mut visit: impl FnMut(&SeriesView<'a>) -> Result<(), E>) -> Result<(), WalkError<E>> {
    let bad = |what: String| WalkError::Decode(DecodeError::Protobuf(what));
    let mut r = Wire { bytes: raw, at: 0 };
    let mut view = SeriesView::default();
    while !r.done() {
        let (tag, wire) = r.key().map_err(bad)?;
        match tag {
            1 => {
                let body = r.message(wire, LIMIT).map_err(bad)?;
                series(body, LIMIT - 1, &mut view).map_err(bad)?;
                visit(&view).map_err(WalkError::Visitor)?;
            }
            3 => {
                let body = r.message(wire, LIMIT).map_err(bad)?;
                metadata(body, LIMIT - 1).map_err(bad)?;
            }
            _ => r.skip(wire, tag, LIMIT).map_err(bad)?,
        }
    }
    Ok(())
}

/// prost's nesting limit (`RECURSION_LIMIT`).
const LIMIT: u32 = 100;
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const DELIMITED: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

fn series<'a>(bytes: &'a [u8], depth: u32, view: &mut SeriesView<'a>) -> Result<(), String> {
    view.labels.clear();
    view.samples.clear();
    view.exemplars = 0;
    view.histograms = 0;
    let mut r = Wire { bytes, at: 0 };
    while !r.done() {
        let (tag, wire) = r.key()?;
        match tag {
            1 => view.labels.push(label(r.message(wire, depth)?, depth - 1)?),
            2 => view.samples.push(sample(r.message(wire, depth)?, depth - 1)?),
            3 => {
                exemplar(r.message(wire, depth)?, depth - 1)?;
                view.exemplars += 1;
            }
            4 => {
                r.expect(wire, DELIMITED)?;
                r.delimited()?;
                view.histograms += 1;
            }
            _ => r.skip(wire, tag, depth)?,
        }
    }
    Ok(())
}

fn label(bytes: &[u8], depth: u32) -> Result<(&str, &str), String> {
    let (mut name, mut value) = ("", "");
    let mut r = Wire { bytes, at: 0 };
    while !r.done() {
        let (tag, wire) = r.key()?;
        match tag {
            1 => name = r.string(wire)?,
            2 => value = r.string(wire)?,
            _ => r.skip(wire, tag, depth)?,
        }
    }
    Ok((name, value))
}

fn sample(bytes: &[u8], depth: u32) -> Result<Sample, String> {
    let mut s = Sample { value: 0.0, timestamp: 0 };
    let mut r = Wire { bytes, at: 0 };
    while !r.done() {
        let (tag, wire) = r.key()?;
        match tag {
            1 => {
                r.expect(wire, FIXED64)?;
                s.value = f64::from_bits(r.fixed64()?);
            }
            2 => {
                r.expect(wire, VARINT)?;
                s.timestamp = r.varint()? as i64;
            }
            _ => r.skip(wire, tag, depth)?,
        }
    }
    Ok(s)
}

fn exemplar(bytes: &[u8], depth: u32) -> Result<(), String> {
    let mut r = Wire { bytes, at: 0 };
    while !r.done() {
        let (tag, wire) = r.key()?;
        match tag {
            1 => {
                label(r.message(wire, depth)?, depth - 1)?;
            }
            2 => {
                r.expect(wire, FIXED64)?;
                r.fixed64()?;
            }
            3 => {
                r.expect(wire, VARINT)?;
                r.varint()?;
            }
            _ => r.skip(wire, tag, depth)?,
        }
    }
    Ok(())
}

fn metadata(bytes: &[u8], depth: u32) -> Result<(), String> {
    let mut r = Wire { bytes, at: 0 };
    while !r.done() {
        let (tag, wire) = r.key()?;
        match tag {
            1 => {
                r.expect(wire, VARINT)?;
                r.varint()?;
            }
            2 | 4 | 5 => {
                r.string(wire)?;
            }
            _ => r.skip(wire, tag, depth)?,
        }
    }
    Ok(())
}

/// A cursor over protobuf wire bytes.
struct Wire<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Wire<'a> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.bytes.get(self.at) else {
                return Err(format!("a varint runs past the end at byte {}", self.at));
            };
            self.at += 1;
            if i == 9 && b > 1 {
                return Err(format!("a varint runs past 64 bits at byte {}", self.at - 1));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(format!("a varint runs past 64 bits at byte {}", self.at - 1))
    }

    /// A field key: its number and wire type.
    fn key(&mut self) -> Result<(u32, u8), String> {
        let at = self.at;
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(format!("invalid field key {key} at byte {at}"));
        }
        let wire = (key & 7) as u8;
        if wire > FIXED32 {
            return Err(format!("invalid wire type {wire} at byte {at}"));
        }
        let tag = (key as u32) >> 3;
        if tag == 0 {
            return Err(format!("invalid field number 0 at byte {at}"));
        }
        Ok((tag, wire))
    }

    fn expect(&self, wire: u8, want: u8) -> Result<(), String> {
        if wire == want {
            Ok(())
        } else {
            Err(format!("invalid wire type {wire} (expected {want}) before byte {}", self.at))
        }
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], String> {
        let left = (self.bytes.len() - self.at) as u64;
        if len > left {
            return Err(format!("a field of {len} bytes at byte {} runs past the {left} bytes left", self.at));
        }
        let out = &self.bytes[self.at..self.at + len as usize];
        self.at += len as usize;
        Ok(out)
    }

    fn delimited(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()?;
        self.take(len)
    }

    fn fixed64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn string(&mut self, wire: u8) -> Result<&'a str, String> {
        self.expect(wire, DELIMITED)?;
        let at = self.at;
        std::str::from_utf8(self.delimited()?).map_err(|_| format!("the string at byte {at} is not UTF-8"))
    }

    /// A nested message's bytes; `depth` is what nesting is left, as prost counts it.
    fn message(&mut self, wire: u8, depth: u32) -> Result<&'a [u8], String> {
        self.expect(wire, DELIMITED)?;
        if depth == 0 {
            return Err("messages nest too deeply".into());
        }
        self.delimited()
    }

    /// Skips an unknown field, groups included (prost's `skip_field`).
    fn skip(&mut self, wire: u8, tag: u32, depth: u32) -> Result<(), String> {
        if depth == 0 {
            return Err("fields nest too deeply".into());
        }
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            FIXED32 => self.take(4).map(drop),
            DELIMITED => self.delimited().map(drop),
            START_GROUP => loop {
                let (inner, inner_wire) = self.key()?;
                if inner_wire == END_GROUP {
                    if inner != tag {
                        return Err(format!("group {tag} ends with the end of group {inner}"));
                    }
                    return Ok(());
                }
                self.skip(inner_wire, inner, depth - 1)?;
            },
            _ => Err(format!("an unexpected end of group {tag} before byte {}", self.at)),
        }
    }
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

    /// A series as owned values: labels, (time, value bits), exemplars, histograms.
    type Owned = (Vec<(String, String)>, Vec<(i64, u64)>, usize, usize);

    /// What [`walk`] sees of a decompressed body.
    fn walked(raw: &[u8]) -> Result<Vec<Owned>, String> {
        let mut out = Vec::new();
        walk(raw, |s| {
            out.push((
                s.labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
                s.samples.iter().map(|x| (x.timestamp, x.value.to_bits())).collect(),
                s.exemplars,
                s.histograms,
            ));
            Ok::<(), ()>(())
        })
        .map_err(|e| format!("{e:?}"))?;
        Ok(out)
    }

    fn decoded(raw: &[u8]) -> Result<Vec<Owned>, String> {
        let r = WriteRequest::decode(raw).map_err(|e| e.to_string())?;
        Ok(r.timeseries
            .into_iter()
            .map(|t| {
                (
                    t.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                    t.samples.iter().map(|x| (x.timestamp, x.value.to_bits())).collect(),
                    t.exemplars.len(),
                    t.histograms.len(),
                )
            })
            .collect())
    }

    #[test]
    fn the_walk_sees_what_prost_decodes_and_refuses_what_it_refuses() {
        let mut r = request();
        r.timeseries[0].exemplars.push(Exemplar {
            labels: vec![Label { name: "trace_id".into(), value: "ab".into() }],
            value: 1.0,
            timestamp: 5,
        });
        r.timeseries.push(TimeSeries {
            labels: vec![Label { name: "__name__".into(), value: "up".into() }],
            samples: vec![Sample { value: -0.0, timestamp: -7 }],
            exemplars: vec![],
            histograms: vec![vec![1, 2, 3]],
        });
        let mut raw = r.encode_to_vec();
        assert_eq!(walked(&raw).unwrap(), decoded(&raw).unwrap());
        // Unknown fields of every wire type, a group holding a group, are skipped alike.
        raw.extend_from_slice(&[0x78, 5, 0x81, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0x8a, 1, 2, b'h', b'i', 0x95, 1, 0, 0, 0, 0]);
        raw.extend_from_slice(&[0x9b, 1, 0xa3, 1, 0x08, 1, 0xa4, 1, 0x9c, 1]);
        assert_eq!(walked(&raw).unwrap(), decoded(&raw).unwrap());
        // Each is refused by both: a truncated body, a wrong wire type for a label, a label
        // value that is not UTF-8, an end of group without its start, a mismatched group end,
        // field number 0, a ten-byte varint past 64 bits.
        let label_bytes = |name: &[u8]| {
            let mut l = vec![0x0a, name.len() as u8];
            l.extend_from_slice(name);
            let mut t = vec![0x0a, l.len() as u8];
            t.extend_from_slice(&l);
            let mut w = vec![0x0a, t.len() as u8];
            w.extend_from_slice(&t);
            w
        };
        let bad: Vec<Vec<u8>> = vec![
            raw[..raw.len() - 3].to_vec(),
            vec![0x0a, 2, 0x08, 1],
            label_bytes(b"\xff\xfe"),
            vec![0x7c],
            vec![0x7b, 0x84, 1],
            vec![0x02, 0],
            vec![0x78, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00],
        ];
        for b in &bad {
            assert!(decoded(b).is_err() && walked(b).is_err(), "{b:x?}: {:?} / {:?}", decoded(b), walked(b));
        }
        assert_eq!(walked(&label_bytes(b"job")).unwrap(), decoded(&label_bytes(b"job")).unwrap());
        // A ten-byte varint whose last byte is 1 is the largest there is: taken by both.
        let widest = [0x78, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(walked(&widest).is_ok() && decoded(&widest).is_ok());
        // Groups nested past prost's limit are refused by both; just under it, accepted by both.
        let nested = |n: usize| {
            let mut b = vec![0x7b; n];
            b.extend(std::iter::repeat_n(0x7c, n));
            b
        };
        for n in [98, 99, 100, 101] {
            assert_eq!(walked(&nested(n)).is_ok(), decoded(&nested(n)).is_ok(), "{n} nested groups");
        }
        // The visitor's error stops the walk.
        let mut seen = 0;
        let stopped = walk(&r.encode_to_vec(), |_| {
            seen += 1;
            Err("enough")
        });
        assert_eq!((stopped, seen), (Err(WalkError::Visitor("enough")), 1));
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
