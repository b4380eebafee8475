//! Attribute lists as stored: the OTLP/JSON text of a `KeyValue` list (empty text for an
//! empty list), plus lookups of single values for the first-class columns.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

/// OTLP/JSON of an attribute list; the empty string for no attributes.
pub fn encode(attrs: &[KeyValue]) -> String {
    if attrs.is_empty() {
        return String::new();
    }
    // Serialising these proto types to a String cannot fail: they hold no maps with
    // non-string keys and no custom serialisers that error.
    serde_json::to_string(attrs).unwrap_or_default()
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
        assert_eq!(encode(&[]), "");
        assert_eq!(decode("").unwrap(), vec![]);
    }
}
