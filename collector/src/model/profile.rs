//! OTLP profiles (v1development) as rows: one row per sample value, with its stack resolved
//! from the request's dictionary into frames, innermost first, so a flame graph can be built
//! from rows alone. Stacks, attribute texts and the profile's own fields are shared between
//! rows, so a row costs the same whatever the depth of its stack.
//!
//! Each profile keeps the SHA-256 of what it was built from ([`ProfileInfo::source_sha256`]),
//! so a stored profile can be checked against the file that was pushed. A profile converted
//! from another format (our pprof receivers) carries the digest of the original bytes in the
//! profile attribute [`SOURCE_SHA256_ATTRIBUTE`], which is taken out of its attributes here;
//! for any other OTLP profile it is the digest of the `Profile` message as protobuf encodes it
//! (prost's encoding of the decoded message: the bytes the client sent for it when the client
//! encodes fields in order and sends no unknown fields). The message refers to the request's
//! shared dictionary (function names, stacks) by index, so its digest does not cover the
//! dictionary.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::profiles::v1development::{Profile, ProfilesDictionary};
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ResourceColumns, Row, RowKey, ScopeColumns, attrs};

/// One frame of a stack: a function and where in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub function: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub line: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// What every sample of one profile shares.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileInfo {
    pub profile_time_unix_nano: u64,
    pub duration_nano: u64,
    pub profile_id: [u8; 16],
    pub sample_type: Arc<str>,
    pub sample_unit: Arc<str>,
    pub period_type: Arc<str>,
    pub period_unit: Arc<str>,
    pub period: i64,
    /// SHA-256 of what the profile was built from (module documentation); `None` for rows of
    /// parts written before it was kept.
    pub source_sha256: Option<[u8; 32]>,
}

/// The profile attribute that carries the SHA-256 (64 lowercase hex digits) of the bytes an
/// OTLP profile was converted from. Stored as [`ProfileInfo::source_sha256`], not as an
/// attribute; a value that is not a SHA-256 stays an ordinary attribute.
pub const SOURCE_SHA256_ATTRIBUTE: &str = "slo_gate.source.sha256";

/// The SHA-256 in an attribute value, if it is one (64 hex digits).
fn source_digest(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> Option<[u8; 32]> {
    let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(text)) = value?.value.as_ref()
    else {
        return None;
    };
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest).ok()?;
    Some(digest)
}

/// One value of one sample (samples of one profile with the same stack, attributes, link and
/// time are one row, their values summed, as pprof merges them).
///
/// The stack and the attribute text are shared (`Arc`) by every row that has them, and the
/// profile's own fields by every row of the profile: a profile whose 20,000 samples share one
/// deep stack holds that stack once.
#[derive(Debug, Clone)]
pub struct ProfileRow {
    /// The sample's own timestamp, or the profile's start when the sample has none.
    pub time_unix_nano: u64,
    pub value: i64,
    /// JSON array of [`Frame`]s, innermost first.
    pub stack: Arc<str>,
    /// OTLP/JSON of the sample's attributes, then the profile's.
    pub attributes: Arc<str>,
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
    pub profile: Arc<ProfileInfo>,
    pub resource: Arc<ResourceColumns>,
    pub scope: Arc<ScopeColumns>,
}

impl Row for ProfileRow {
    fn key(&self) -> RowKey<'_> {
        RowKey {
            time_unix_nano: self.time_unix_nano,
            service_name: self.resource.service_name.as_ref(),
            service_version: self.resource.service_version.as_ref(),
        }
    }
}

/// Resolves indices into the dictionary; the request was validated, so an index out of range
/// here resolves to an empty value instead of failing.
struct Dict<'a>(&'a ProfilesDictionary);

impl Dict<'_> {
    fn string(&self, index: i32) -> &str {
        usize::try_from(index).ok().and_then(|i| self.0.string_table.get(i)).map(String::as_str).unwrap_or("")
    }

    fn attributes(&self, indices: &[i32]) -> Vec<KeyValue> {
        indices
            .iter()
            .filter_map(|&i| self.0.attribute_table.get(usize::try_from(i).ok()?))
            .map(|a| KeyValue {
                key: self.string(a.key_strindex).to_string(),
                value: a.value.clone().map(|mut v| {
                    // Resolve dictionary string references so stored values stand alone.
                    if let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValueStrindex(s)) =
                        v.value
                    {
                        v.value = Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                            self.string(s).to_string(),
                        ));
                    }
                    v
                }),
                key_strindex: 0,
            })
            .collect()
    }

    fn frames(&self, stack_index: i32) -> Vec<Frame> {
        let Some(stack) = usize::try_from(stack_index).ok().and_then(|i| self.0.stack_table.get(i)) else {
            return Vec::new();
        };
        let mut frames = Vec::new();
        for &loc in &stack.location_indices {
            let Some(location) = usize::try_from(loc).ok().and_then(|i| self.0.location_table.get(i)) else {
                continue;
            };
            if location.lines.is_empty() {
                frames.push(Frame { function: format!("0x{:x}", location.address), file: String::new(), line: 0 });
            }
            // `lines` lists inlined frames innermost first, as the stack itself is ordered.
            for line in &location.lines {
                let function = usize::try_from(line.function_index).ok().and_then(|i| self.0.function_table.get(i));
                frames.push(Frame {
                    function: function.map(|f| self.string(f.name_strindex)).unwrap_or("").to_string(),
                    file: function.map(|f| self.string(f.filename_strindex)).unwrap_or("").to_string(),
                    line: line.line,
                });
            }
        }
        frames
    }
}

pub fn rows_from_request(request: ExportProfilesServiceRequest) -> Vec<ProfileRow> {
    let empty = ProfilesDictionary::default();
    let dict = Dict(request.dictionary.as_ref().unwrap_or(&empty));
    // Stacks are resolved once per stack-table entry, for every profile of the request.
    let mut stacks: HashMap<i32, Arc<str>> = HashMap::new();
    // One row per value at most (validation bounded how many): reserved at once, so the rows
    // never sit in two buffers while a growing vector moves them.
    let values = request
        .resource_profiles
        .iter()
        .flat_map(|rp| &rp.scope_profiles)
        .flat_map(|sp| &sp.profiles)
        .flat_map(|p| &p.samples)
        .map(|s| s.values.len())
        .sum();
    let mut rows = Vec::with_capacity(values);
    for rp in &request.resource_profiles {
        let resource = Arc::new(ResourceColumns::from_otlp(rp.resource.as_ref(), &rp.schema_url));
        for sp in &rp.scope_profiles {
            let scope = Arc::new(ScopeColumns::from_otlp(sp.scope.as_ref(), &sp.schema_url));
            for profile in &sp.profiles {
                profile_rows(&dict, profile, &resource, &scope, &mut stacks, &mut rows);
            }
        }
    }
    if rows.len() < rows.capacity() / 2 {
        rows.shrink_to_fit();
    }
    rows
}

fn profile_rows(
    dict: &Dict<'_>,
    profile: &Profile,
    resource: &Arc<ResourceColumns>,
    scope: &Arc<ScopeColumns>,
    stacks: &mut HashMap<i32, Arc<str>>,
    rows: &mut Vec<ProfileRow>,
) {
    let value_type = |vt: &Option<opentelemetry_proto::tonic::profiles::v1development::ValueType>| match vt {
        Some(vt) => (Arc::from(dict.string(vt.type_strindex)), Arc::from(dict.string(vt.unit_strindex))),
        None => (Arc::from(""), Arc::from("")),
    };
    let (sample_type, sample_unit) = value_type(&profile.sample_type);
    let (period_type, period_unit) = value_type(&profile.period_type);
    let mut profile_attributes = dict.attributes(&profile.attribute_indices);
    let carried = profile_attributes
        .iter()
        .position(|a| a.key == SOURCE_SHA256_ATTRIBUTE && source_digest(a.value.as_ref()).is_some());
    let source_sha256 = match carried {
        Some(at) => source_digest(profile_attributes.remove(at).value.as_ref()),
        None => Some(Sha256::digest(profile.encode_to_vec()).into()),
    };
    let info = Arc::new(ProfileInfo {
        profile_time_unix_nano: profile.time_unix_nano,
        duration_nano: profile.duration_nano,
        profile_id: profile.profile_id.as_slice().try_into().unwrap_or([0; 16]),
        sample_type,
        sample_unit,
        period_type,
        period_unit,
        period: profile.period,
        source_sha256,
    });
    // One attribute text per distinct list of attribute indices; rows of identical samples
    // are merged below.
    let mut attribute_texts: HashMap<&[i32], Arc<str>> = HashMap::new();
    let start = rows.len();
    for sample in &profile.samples {
        let stack =
            Arc::clone(stacks.entry(sample.stack_index).or_insert_with(|| {
                Arc::from(serde_json::to_string(&dict.frames(sample.stack_index)).unwrap_or_default())
            }));
        let attributes = Arc::clone(attribute_texts.entry(sample.attribute_indices.as_slice()).or_insert_with(|| {
            let mut attributes = dict.attributes(&sample.attribute_indices);
            attributes.extend(profile_attributes.iter().cloned());
            Arc::from(attrs::encode(&attributes))
        }));
        let link = usize::try_from(sample.link_index).ok().and_then(|i| dict.0.link_table.get(i));
        let trace_id = link.and_then(|l| <[u8; 16]>::try_from(l.trace_id.as_slice()).ok()).filter(|t| *t != [0; 16]);
        let span_id = link.and_then(|l| <[u8; 8]>::try_from(l.span_id.as_slice()).ok()).filter(|s| *s != [0; 8]);
        for (i, &value) in sample.values.iter().enumerate() {
            rows.push(ProfileRow {
                time_unix_nano: sample.timestamps_unix_nano.get(i).copied().unwrap_or(profile.time_unix_nano),
                value,
                stack: Arc::clone(&stack),
                attributes: Arc::clone(&attributes),
                trace_id,
                span_id,
                profile: Arc::clone(&info),
                resource: Arc::clone(resource),
                scope: Arc::clone(scope),
            });
        }
    }
    merge_identical(rows, start);
}

/// Merges the rows from `start` on (one profile's) that share time, stack, attributes and
/// trace link into one row with the sum of their values: a client repeating a sample a million
/// times costs one row, not a million. In place, by sorting, so merging needs no memory of its
/// own. A stack or attribute text is one shared value per distinct stack index or attribute
/// list of the request, so comparing the pointers compares those.
fn merge_identical(rows: &mut Vec<ProfileRow>, start: usize) {
    /// Time, stack, attributes, trace link.
    type Key = (u64, *const u8, *const u8, Option<[u8; 16]>, Option<[u8; 8]>);
    fn key(r: &ProfileRow) -> Key {
        (r.time_unix_nano, Arc::as_ptr(&r.stack).cast(), Arc::as_ptr(&r.attributes).cast(), r.trace_id, r.span_id)
    }
    let profile = &mut rows[start..];
    profile.sort_unstable_by_key(key);
    let mut kept = 0;
    for next in 1..profile.len() {
        if key(&profile[kept]) == key(&profile[next]) {
            profile[kept].value = profile[kept].value.saturating_add(profile[next].value);
        } else {
            kept += 1;
            profile.swap(kept, next);
        }
    }
    let len = if profile.is_empty() { start } else { start + kept + 1 };
    rows.truncate(len);
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::profiles::v1development::{
        Function, KeyValueAndUnit, Line, Location, ResourceProfiles, Sample, ScopeProfiles, Stack,
    };

    use super::*;

    /// Two stacks (indices 1 and 2, one frame each), one sample attribute (index 1).
    fn dictionary() -> ProfilesDictionary {
        let location = |function_index| Location {
            lines: vec![Line { function_index, ..Default::default() }],
            ..Default::default()
        };
        ProfilesDictionary {
            string_table: vec![String::new(), "main".into(), "work".into(), "region".into()],
            function_table: vec![
                Function::default(),
                Function { name_strindex: 1, ..Default::default() },
                Function { name_strindex: 2, ..Default::default() },
            ],
            location_table: vec![Location::default(), location(1), location(2)],
            stack_table: vec![
                Stack::default(),
                Stack { location_indices: vec![1] },
                Stack { location_indices: vec![2] },
            ],
            attribute_table: vec![
                KeyValueAndUnit::default(),
                KeyValueAndUnit {
                    key_strindex: 3,
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue("eu".into())) }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn sample(stack_index: i32, attribute_indices: Vec<i32>, value: i64, time: u64) -> Sample {
        Sample {
            stack_index,
            attribute_indices,
            values: vec![value],
            timestamps_unix_nano: vec![time],
            ..Default::default()
        }
    }

    fn request(profiles: Vec<Vec<Sample>>) -> ExportProfilesServiceRequest {
        ExportProfilesServiceRequest {
            resource_profiles: vec![ResourceProfiles {
                scope_profiles: vec![ScopeProfiles {
                    profiles: profiles.into_iter().map(|samples| Profile { samples, ..Default::default() }).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            dictionary: Some(dictionary()),
        }
    }

    fn summary(rows: &[ProfileRow]) -> Vec<(u64, String, String, i64)> {
        let mut out: Vec<_> =
            rows.iter().map(|r| (r.time_unix_nano, r.stack.to_string(), r.attributes.to_string(), r.value)).collect();
        out.sort();
        out
    }

    #[test]
    fn identical_samples_are_one_row_with_their_values_summed() {
        let rows = rows_from_request(request(vec![vec![
            sample(1, vec![], 10, 100),
            sample(2, vec![], 1, 100),
            sample(1, vec![], 5, 100),
            sample(1, vec![1], 7, 100),
            sample(1, vec![], 3, 200),
            sample(1, vec![], i64::MAX, 100),
        ]]));
        let main = r#"[{"function":"main"}]"#.to_string();
        let work = r#"[{"function":"work"}]"#.to_string();
        let eu = r#"[{"key":"region","value":{"stringValue":"eu"}}]"#.to_string();
        assert_eq!(
            summary(&rows),
            vec![
                (100, main.clone(), String::new(), i64::MAX),
                (100, main.clone(), eu, 7),
                (100, work, String::new(), 1),
                (200, main, String::new(), 3),
            ]
        );
    }

    #[test]
    fn profiles_keep_the_digest_of_their_message_or_the_one_they_carry() {
        let mut req = request(vec![vec![sample(1, vec![], 10, 100)], vec![sample(2, vec![], 5, 100)]]);
        let messages: Vec<[u8; 32]> = req.resource_profiles[0].scope_profiles[0]
            .profiles
            .iter()
            .map(|p| Sha256::digest(p.encode_to_vec()).into())
            .collect();
        assert_ne!(messages[0], messages[1]);
        let digests = |rows: &[ProfileRow]| {
            let mut d: Vec<(String, Option<[u8; 32]>)> =
                rows.iter().map(|r| (r.stack.to_string(), r.profile.source_sha256)).collect();
            d.sort();
            d
        };
        let main = r#"[{"function":"main"}]"#.to_string();
        let work = r#"[{"function":"work"}]"#.to_string();
        let rows = rows_from_request(req.clone());
        assert_eq!(digests(&rows), vec![(main.clone(), Some(messages[0])), (work.clone(), Some(messages[1]))]);

        // A carried digest (the first profile) is kept as the digest and not as an attribute;
        // a malformed one (the second) stays an attribute and the message is digested.
        let dict = req.dictionary.as_mut().unwrap();
        dict.string_table.push(SOURCE_SHA256_ATTRIBUTE.into());
        let key = (dict.string_table.len() - 1) as i32;
        for value in ["ab".repeat(32), "not a digest".to_string()] {
            dict.attribute_table.push(KeyValueAndUnit {
                key_strindex: key,
                value: Some(AnyValue { value: Some(any_value::Value::StringValue(value)) }),
                ..Default::default()
            });
        }
        let n = dict.attribute_table.len() as i32;
        let profiles = &mut req.resource_profiles[0].scope_profiles[0].profiles;
        profiles[0].attribute_indices = vec![n - 2];
        profiles[1].attribute_indices = vec![n - 1];
        let second: [u8; 32] = Sha256::digest(profiles[1].encode_to_vec()).into();
        let rows = rows_from_request(req);
        assert_eq!(digests(&rows), vec![(main, Some([0xab; 32])), (work, Some(second))]);
        let attributes: Vec<&str> = rows.iter().map(|r| &*r.attributes).collect();
        assert!(attributes.iter().any(|a| a.contains("not a digest")), "{attributes:?}");
        assert!(!attributes.iter().any(|a| a.contains(&"ab".repeat(32))), "{attributes:?}");
    }

    #[test]
    fn samples_of_different_profiles_are_never_merged() {
        let rows = rows_from_request(request(vec![vec![sample(1, vec![], 10, 100)], vec![sample(1, vec![], 5, 100)]]));
        let mut values: Vec<i64> = rows.iter().map(|r| r.value).collect();
        values.sort();
        assert_eq!(values, vec![5, 10]);
    }
}
