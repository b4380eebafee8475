//! Bad input: every malformed profile gets an error naming what is wrong, never a panic.

use prost::Message;

use super::proto;
use super::{DecodeError, decode, decode_with_limit, flat_and_cum};

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

/// A valid profile: one cpu sample `main.leaf` (inlined into `main.caller`) ← `main.main`.
fn valid() -> proto::Profile {
    proto::Profile {
        sample_type: vec![proto::ValueType { r#type: 1, unit: 2 }],
        sample: vec![proto::Sample { location_id: vec![1, 2], value: vec![7], label: vec![] }],
        mapping: vec![proto::Mapping { id: 1, filename: 6, ..Default::default() }],
        location: vec![
            proto::Location {
                id: 1,
                mapping_id: 1,
                line: vec![
                    proto::Line { function_id: 1, line: 10, column: 0 },
                    proto::Line { function_id: 2, line: 20, column: 0 },
                ],
                ..Default::default()
            },
            proto::Location {
                id: 2,
                mapping_id: 1,
                line: vec![proto::Line { function_id: 3, line: 30, column: 0 }],
                ..Default::default()
            },
        ],
        function: vec![
            proto::Function { id: 1, name: 3, ..Default::default() },
            proto::Function { id: 2, name: 4, ..Default::default() },
            proto::Function { id: 3, name: 5, ..Default::default() },
        ],
        string_table: strings(&["", "cpu", "nanoseconds", "main.leaf", "main.caller", "main.main", "/bin/app"]),
        ..Default::default()
    }
}

/// Decodes `wire` and compares the error message with `expect` (or `"ok"`).
fn check(wire: &proto::Profile, expect: &str) {
    let got = match decode(&wire.encode_to_vec()) {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expect);
}

#[test]
fn inlined_locations_expand_innermost_first() {
    let profile = decode(&valid().encode_to_vec()).expect("valid");
    let names: Vec<&str> = profile.stack(&profile.samples[0]).map(|f| &*f.function).collect();
    assert_eq!(names, ["main.leaf", "main.caller", "main.main"]);
    let top = flat_and_cum(&profile, 0).expect("index 0");
    assert_eq!(top.get("main.leaf"), Some(&(7, 7)));
    assert_eq!(top.get("main.caller"), Some(&(0, 7)));
    assert_eq!(top.get("main.main"), Some(&(0, 7)));
    assert!(flat_and_cum(&profile, 1).is_err());
}

#[test]
fn recursion_counts_once_in_cum() {
    let mut wire = valid();
    wire.sample[0].location_id = vec![2, 1, 2];
    let profile = decode(&wire.encode_to_vec()).expect("valid");
    let top = flat_and_cum(&profile, 0).expect("index 0");
    assert_eq!(top.get("main.main"), Some(&(7, 7)));
}

#[test]
fn dangling_references_are_errors() {
    check(&valid(), "ok");
    let mut w = valid();
    w.sample[0].location_id.push(9);
    check(&w, "sample 0 refers to location id 9, which is not in the location table");
    let mut w = valid();
    w.location[0].line[1].function_id = 8;
    check(&w, "location 1 line 1 refers to function id 8, which is not in the function table");
    let mut w = valid();
    w.location[1].mapping_id = 4;
    check(&w, "location 2 refers to mapping id 4, which is not in the mapping table");
    let mut w = valid();
    w.function[2].name = 99;
    check(&w, "function 3 name refers to string index 99, but the string table has 7 entries");
    let mut w = valid();
    w.function[2].name = -1;
    check(&w, "function 3 name refers to string index -1, but the string table has 7 entries");
    let mut w = valid();
    w.sample[0].value.push(1);
    check(&w, "sample 0 has 2 values, but the profile declares 1 sample types");
    let mut w = valid();
    w.location[1].id = 1;
    check(&w, "location id 1 is duplicated");
    let mut w = valid();
    w.function[0].id = 0;
    check(&w, "function id 0 is reserved");
    let mut w = valid();
    w.string_table[0] = "x".to_string();
    check(&w, "string_table[0] must be the empty string, found \"x\"");
}

/// A string table entry that is not UTF-8 (a label value here) fails the whole profile with
/// prost's error naming the field; the push handler reports it and keeps the push's other
/// profiles.
#[test]
fn strings_must_be_utf8() {
    let mut w = valid();
    w.string_table.push("k".into());
    w.string_table.push("caf\u{e9}".into());
    w.sample[0].label.push(proto::Label { key: 7, str: 8, ..Default::default() });
    let mut bytes = w.encode_to_vec();
    // "café" in UTF-8 ends in C3 A9; make it Latin-1 (E9) by rewriting the length and bytes.
    let at = bytes.windows(5).position(|b| b == b"caf\xc3\xa9").expect("encoded string") - 1;
    bytes.splice(at..at + 6, [4, b'c', b'a', b'f', 0xe9]);
    let err = decode(&bytes).expect_err("not UTF-8").to_string();
    assert!(err.contains("string_table") && err.contains("UTF-8"), "{err}");
}

#[test]
fn bytes_that_are_not_a_profile() {
    let err = |bytes: &[u8]| decode(bytes).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(err(b""), Err("empty input: a profile has at least a string table".to_string()));
    let legacy = "legacy (pre-proto) profile format is not supported";
    for text in [&b"heap profile: 1: 2 [3: 4] @ heap/1048576\n"[..], b"--- contentionz 1 ---\n", b"hello world"] {
        assert!(err(text).is_err_and(|e| e.starts_with(legacy)), "{:?}", err(text));
    }
    let cpu_header = [0u8, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
    assert!(err(&cpu_header).is_err_and(|e| e.contains("legacy CPU profile, binary")));
    assert!(err(&[0xff, 0xff, 0xff]).is_err_and(|e| e.starts_with("not a valid profile.proto message")));
    assert!(err(&[0x1f, 0x8b, 0x08, 0x00]).is_err_and(|e| e.starts_with("gzip stream is corrupt")));
}

#[test]
fn gunzip_is_capped() {
    use std::io::Write;
    let plain = valid().encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).expect("in-memory write");
    let gz = gz.finish().expect("in-memory gzip");
    assert!(decode(&gz).is_ok());
    let limit = plain.len() as u64 - 1;
    assert!(matches!(decode_with_limit(&gz, limit), Err(DecodeError::TooLarge { limit: l }) if l == limit));
}

// issue 11 #2: a pprof of a million copies of one sample (22 KB gzipped) held a million
// decoded samples twice over; `decode_merged` keeps one per distinct sample.
#[test]
fn merged_decoding_sums_equal_samples_and_keeps_distinct_ones() {
    let mut wire = valid();
    let one = wire.sample[0].clone();
    let other = proto::Sample { location_id: vec![2], value: vec![5], label: vec![] };
    let labelled = proto::Sample { label: vec![proto::Label { key: 1, str: 2, ..Default::default() }], ..one.clone() };
    wire.sample = vec![one.clone(), other.clone(), one.clone(), labelled, one];
    let bytes = wire.encode_to_vec();
    let plain = decode(&bytes).unwrap();
    let merged = super::decode_merged(&bytes, 1 << 20).unwrap();
    assert_eq!(plain.samples.len(), 5);
    assert_eq!(merged.samples.len(), 3);
    assert_eq!(merged.samples[0].values, vec![21]);
    assert_eq!(merged.samples[1].values, vec![5]);
    assert_eq!(flat_and_cum(&plain, 0).unwrap(), flat_and_cum(&merged, 0).unwrap());
    // A sample with a different number of values is still refused.
    let mut wire = valid();
    wire.sample.push(proto::Sample { value: vec![1, 2], ..wire.sample[0].clone() });
    assert!(super::decode_merged(&wire.encode_to_vec(), 1 << 20).is_err());
}
