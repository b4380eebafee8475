//! Attribute lists as stored: the OTLP/JSON text of a `KeyValue` list (empty text for an
//! empty list), plus lookups of single values for the first-class columns.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

/// OTLP/JSON of an attribute list; the empty string for no attributes.
///
/// Written by hand for the common values (it runs for every span on the ingest path, where
/// serde's generic serialiser was a tenth of the CPU); the rare ones (non-finite doubles,
/// empty values, dictionary references) go through serde. Both write the same text.
pub fn encode(attrs: &[KeyValue]) -> String {
    if attrs.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(attrs.len() * 48);
    if write_list(&mut out, attrs) {
        return out;
    }
    // Serialising these proto types to a String cannot fail: they hold no maps with
    // non-string keys and no custom serialisers that error.
    serde_json::to_string(&storable(attrs)).unwrap_or_default()
}

/// The list with the values that cannot be stored as themselves made empty, so the stored text
/// reads back as itself (both found by fuzzing; issue 11):
/// - a `string_value_strindex` points into a profile's string table: OTLP asks receivers of
///   the other signals to treat it as empty (the profiles conversion resolves the ones it
///   knows before encoding), and serde would write a field that reads back as empty;
/// - a NaN or infinite double: JSON has none, serde writes `null`, and the OTLP/JSON reader
///   takes no string form for them, so it read back as empty anyway.
fn storable(attrs: &[KeyValue]) -> Vec<KeyValue> {
    fn clean(value: &AnyValue) -> AnyValue {
        AnyValue {
            value: match &value.value {
                Some(Value::StringValueStrindex(_)) => None,
                Some(Value::DoubleValue(d)) if !d.is_finite() => None,
                Some(Value::ArrayValue(a)) => {
                    Some(Value::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: a.values.iter().map(clean).collect(),
                    }))
                }
                Some(Value::KvlistValue(kv)) => {
                    Some(Value::KvlistValue(opentelemetry_proto::tonic::common::v1::KeyValueList {
                        values: storable(&kv.values),
                    }))
                }
                other => other.clone(),
            },
        }
    }
    attrs.iter().map(|kv| KeyValue { value: kv.value.as_ref().map(clean), ..kv.clone() }).collect()
}

/// Appends `[{"key":..,"value":{..}},..]`; false when a value needs serde.
fn write_list(out: &mut String, attrs: &[KeyValue]) -> bool {
    out.push('[');
    for (i, kv) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"key\":");
        write_str(out, &kv.key);
        out.push_str(",\"value\":");
        match &kv.value {
            Some(v) if write_value(out, v) => {}
            _ => return false,
        }
        if kv.key_strindex != 0 {
            return false;
        }
        out.push('}');
    }
    out.push(']');
    true
}

/// A plain attribute value, borrowed: what [`encode_scalars`] writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    /// Finite only: the others are written through serde (see [`storable`]).
    Double(f64),
}

/// Appends what [`encode`] writes for a list of plain attributes, from borrowed keys and
/// values (the protobuf reader of `model::span_wire`), without building `KeyValue`s.
pub(crate) fn encode_scalars<'a>(out: &mut String, attrs: impl ExactSizeIterator<Item = (&'a str, Scalar<'a>)>) {
    if attrs.len() == 0 {
        return;
    }
    out.push('[');
    for (i, (key, value)) in attrs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"key\":");
        write_str(out, key);
        out.push_str(",\"value\":");
        write_scalar(out, value);
        out.push('}');
    }
    out.push(']');
}

/// Appends `{"stringValue":..}` and the like; true, for [`write_value`]'s sake.
fn write_scalar(out: &mut String, value: Scalar<'_>) -> bool {
    use std::fmt::Write as _;
    match value {
        Scalar::Str(s) => {
            out.push_str("{\"stringValue\":");
            write_str(out, s);
        }
        Scalar::Bool(b) => out.push_str(if b { "{\"boolValue\":true" } else { "{\"boolValue\":false" }),
        Scalar::Int(i) => {
            let _ = write!(out, "{{\"intValue\":\"{i}\"");
        }
        Scalar::Double(d) => {
            // serde_json's float formatting, so both paths write the same text.
            out.push_str("{\"doubleValue\":");
            out.push_str(&serde_json::Number::from_f64(d).map(|n| n.to_string()).unwrap_or_default());
        }
    }
    out.push('}');
    true
}

fn write_value(out: &mut String, value: &AnyValue) -> bool {
    match &value.value {
        Some(Value::StringValue(s)) => return write_scalar(out, Scalar::Str(s)),
        Some(Value::BoolValue(b)) => return write_scalar(out, Scalar::Bool(*b)),
        Some(Value::IntValue(i)) => return write_scalar(out, Scalar::Int(*i)),
        Some(Value::DoubleValue(d)) if d.is_finite() => return write_scalar(out, Scalar::Double(*d)),
        Some(Value::BytesValue(b)) => {
            use base64::Engine as _;
            out.push_str("{\"bytesValue\":\"");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push('"');
        }
        Some(Value::ArrayValue(a)) => {
            out.push_str("{\"arrayValue\":{\"values\":[");
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !write_value(out, v) {
                    return false;
                }
            }
            out.push_str("]}");
        }
        Some(Value::KvlistValue(kv)) => {
            out.push_str("{\"kvlistValue\":{\"values\":");
            if !write_list(out, &kv.values) {
                return false;
            }
            out.push('}');
        }
        // A profile string-table reference outside a profile, a non-finite double: empty
        // (see `storable`).
        Some(Value::StringValueStrindex(_)) => out.push('{'),
        Some(Value::DoubleValue(d)) if !d.is_finite() => out.push('{'),
        _ => return false,
    }
    out.push('}');
    true
}

/// A JSON string literal, escaped as serde_json escapes it. The text between escapes is
/// copied whole; the next byte to escape is found eight bytes at a time ([`next_escape`]):
/// escaping byte by byte was 4% of the server's CPU under the ingest benchmark.
fn write_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(i) = next_escape(bytes, start) {
        let escape = match bytes[i] {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            _ => "",
        };
        // `i` is an ASCII byte, so a char boundary.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", bytes[i]);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The first byte at or after `from` that a JSON string escapes: a control byte, `"` or `\`.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether any byte of `w` is below `n` (n <= 0x80), exactly: the "hasless" trick of Sean
    // Anderson's Bit Twiddling Hacks; a byte equal to `c` is a zero byte of `w ^ c`.
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH != 0;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
        if below(w, 0x20) || below(w ^ (ONES * u64::from(b'"')), 1) || below(w ^ (ONES * u64::from(b'\\')), 1) {
            break;
        }
        i += 8;
    }
    bytes.get(i..)?.iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\').map(|at| i + at)
}

/// Any serialisable OTLP part (events, links, exemplars, a body) as OTLP/JSON; empty when
/// the part is empty.
pub fn encode_json<T: serde::Serialize>(value: &[T]) -> String {
    if value.is_empty() {
        return String::new();
    }
    serde_json::to_string(value).unwrap_or_default()
}

/// Parses what [`encode`] wrote.
pub fn decode(text: &str) -> Result<Vec<KeyValue>, serde_json::Error> {
    decode_json(text)
}

pub fn decode_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<T>, serde_json::Error> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(text)
}

/// [`decode`] for text this process wrote itself; a value that does not parse (which would
/// mean a damaged part file) yields no attributes rather than failing the whole query.
pub fn decode_lossy(text: &str) -> Vec<KeyValue> {
    decode(text).unwrap_or_else(|err| {
        tracing::warn!(%err, "stored attribute list does not parse; returning none");
        Vec::new()
    })
}

pub fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref())
}

/// A scalar value as text (strings as they are, numbers and booleans printed).
pub fn as_text(value: &AnyValue) -> Option<&str> {
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    }
}

/// An integer value, also from a string holding one (some SDKs send status codes as text).
pub fn as_i64(value: &AnyValue) -> Option<i64> {
    match value.value.as_ref()? {
        Value::IntValue(i) => Some(*i),
        Value::StringValue(s) => s.parse().ok(),
        Value::DoubleValue(d) if d.fract() == 0.0 => Some(*d as i64),
        _ => None,
    }
}

/// Number of attributes an item carries, counting nested map entries, for the limit check.
pub fn count(attrs: &[KeyValue]) -> usize {
    attrs.len()
}

/// An `AnyValue` as plain JSON (strings, numbers, booleans, arrays, objects; bytes as
/// base64), for API answers people read.
pub fn plain_value(value: &AnyValue) -> serde_json::Value {
    use base64::Engine as _;
    match &value.value {
        None => serde_json::Value::Null,
        Some(Value::StringValue(s)) => s.clone().into(),
        Some(Value::BoolValue(b)) => (*b).into(),
        Some(Value::IntValue(i)) => (*i).into(),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(serde_json::Value::Null, Into::into),
        Some(Value::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b).into(),
        Some(Value::ArrayValue(a)) => a.values.iter().map(plain_value).collect(),
        Some(Value::KvlistValue(kv)) => plain(&kv.values),
        Some(Value::StringValueStrindex(i)) => (*i).into(),
    }
}

/// An attribute list as one plain JSON object.
pub fn plain(attrs: &[KeyValue]) -> serde_json::Value {
    serde_json::Value::Object(
        attrs
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(serde_json::Value::Null, plain_value)))
            .collect(),
    )
}

/// Stored attribute text as one plain JSON object.
pub fn plain_text(text: &str) -> serde_json::Value {
    plain(&decode_lossy(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), key_strindex: 0 }
    }

    #[test]
    fn fast_path_escapes_like_serde() {
        for s in ["plain", "quote\" back\\ slash", "nl\n cr\r tab\t", "ctl\u{1}\u{8}\u{c}\u{1f}", "ünïcode ✓", ""] {
            let attrs = vec![kv(s, Value::StringValue(s.into())), kv("d", Value::DoubleValue(0.1 + 0.2))];
            assert_eq!(encode(&attrs), serde_json::to_string(&attrs).unwrap());
        }
        // Non-finite doubles and profile string-table references are stored empty, which is
        // what they read back as (issue 11, found by fuzzing), on both paths.
        for odd in [Value::DoubleValue(f64::NAN), Value::DoubleValue(f64::NEG_INFINITY), Value::StringValueStrindex(3)]
        {
            let fast = vec![kv("x", odd.clone())];
            assert_eq!(encode(&fast), r#"[{"key":"x","value":{}}]"#);
            let serde_path = vec![kv("x", odd), KeyValue { key_strindex: 1, ..kv("y", Value::BoolValue(true)) }];
            let text = encode(&serde_path);
            assert!(text.starts_with(r#"[{"key":"x","value":{}}"#), "{text}");
            assert_eq!(encode(&decode(&text).unwrap()), text);
        }
    }

    proptest::proptest! {
        /// The hand-written encoder and serde agree on any key, string, integer and double.
        #[test]
        fn fast_path_equals_serde(key in ".{0,12}", s in ".{0,24}", i in proptest::num::i64::ANY, d in proptest::num::f64::NORMAL) {
            let attrs = vec![kv(&key, Value::StringValue(s)), kv("i", Value::IntValue(i)), kv("d", Value::DoubleValue(d))];
            let text = encode(&attrs);
            proptest::prop_assert_eq!(&text, &serde_json::to_string(&attrs).unwrap());
            proptest::prop_assert_eq!(decode(&text).unwrap(), attrs);
        }
    }

    proptest::proptest! {
        /// Strings dense in bytes to escape, at every offset of the eight-byte scan.
        #[test]
        fn escapes_anywhere_in_a_string_like_serde(s in "[a\"\\\\\\n\u{0}\u{1f}\u{7f}é ]{0,40}") {
            let mut out = String::new();
            write_str(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
        }
    }

    #[test]
    fn round_trip_keeps_every_type() {
        let attrs = vec![
            kv("s", Value::StringValue("x".into())),
            kv("i", Value::IntValue(-7)),
            kv("d", Value::DoubleValue(1.0)),
            kv("b", Value::BoolValue(true)),
            kv("bytes", Value::BytesValue(vec![0, 255])),
            kv("arr", Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::IntValue(1)) }] })),
            kv("map", Value::KvlistValue(KeyValueList { values: vec![kv("k", Value::BoolValue(false))] })),
        ];
        let text = encode(&attrs);
        assert_eq!(decode(&text).unwrap(), attrs, "{text}");
        assert_eq!(text, serde_json::to_string(&attrs).unwrap(), "the fast path writes what serde writes");
        assert_eq!(encode(&[]), "");
        assert_eq!(decode("").unwrap(), vec![]);
    }
}
