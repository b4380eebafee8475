//! OTLP profiles (v1development) as rows: one row per sample value, with its stack resolved
//! from the request's dictionary into frames, innermost first, so a flame graph can be built
//! from rows alone. Stacks, attribute texts and the profile's own fields are shared between
//! rows, so a row costs the same whatever the depth of its stack.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::profiles::v1development::{Profile, ProfilesDictionary};
use serde::{Deserialize, Serialize};

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
    let mut rows = Vec::new();
    for rp in &request.resource_profiles {
        let resource = Arc::new(ResourceColumns::from_otlp(rp.resource.as_ref(), &rp.schema_url));
        for sp in &rp.scope_profiles {
            let scope = Arc::new(ScopeColumns::from_otlp(sp.scope.as_ref(), &sp.schema_url));
            for profile in &sp.profiles {
                profile_rows(&dict, profile, &resource, &scope, &mut stacks, &mut rows);
            }
        }
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
    let info = Arc::new(ProfileInfo {
        profile_time_unix_nano: profile.time_unix_nano,
        duration_nano: profile.duration_nano,
        profile_id: profile.profile_id.as_slice().try_into().unwrap_or([0; 16]),
        sample_type,
        sample_unit,
        period_type,
        period_unit,
        period: profile.period,
    });
    let profile_attributes = dict.attributes(&profile.attribute_indices);
    // One attribute text per distinct list of attribute indices, and one row per distinct
    // (stack, attributes, link, time): a hostile client repeating a sample a million times
    // costs one row, not a million.
    let mut attribute_texts: HashMap<&[i32], Arc<str>> = HashMap::new();
    let mut merged: HashMap<(i32, &[i32], i32, u64), usize> = HashMap::new();
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
            let time_unix_nano = sample.timestamps_unix_nano.get(i).copied().unwrap_or(profile.time_unix_nano);
            let key = (sample.stack_index, sample.attribute_indices.as_slice(), sample.link_index, time_unix_nano);
            match merged.get(&key) {
                Some(&at) => rows[at].value = rows[at].value.saturating_add(value),
                None => {
                    merged.insert(key, rows.len());
                    rows.push(ProfileRow {
                        time_unix_nano,
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
        }
    }
}
