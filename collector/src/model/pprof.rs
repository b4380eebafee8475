//! pprof profiles (and Pyroscope's folded text) as OTLP profiles.
//!
//! Design: a pushed pprof is not stored in a format of its own. It is converted into an OTLP
//! `ExportProfilesServiceRequest` (profiles v1development) and handed to the same ingest path
//! as an OTLP export, so validation, the write-ahead log (which replays payloads as OTLP),
//! the head, Parquet parts and every query work unchanged, and there is one storage format.
//!
//! The conversion starts from the analyzer's resolved [`Profile`] (inlined frames already
//! expanded, innermost first), so each frame becomes one OTLP location with one line. A pprof
//! with several sample types (`samples/count` and `cpu/nanoseconds`) becomes one OTLP profile
//! per sample type, all sharing one dictionary; samples whose value is zero for a type are left
//! out of that type's profile, as Pyroscope does. The series labels become resource attributes
//! (`service.name`, `service.version`) and profile attributes (everything else).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use analyzer::pprof::{Frame, Profile, Sample, ValueType};
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::profiles::v1development as otlp;
use opentelemetry_proto::tonic::resource::v1::Resource;

/// The label that names the service, as Pyroscope's agents send it.
pub const SERVICE_NAME_LABEL: &str = "service_name";
/// The labels that name the service's version.
pub const SERVICE_VERSION_LABELS: [&str; 2] = ["service_version", "service.version"];
/// The service name used when neither a label nor an application name gives one.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// The labels of one pushed series, split the way the conversion uses them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeriesLabels {
    /// `service.name` of the resource.
    pub service_name: String,
    /// `service.version` of the resource, when a label gives it.
    pub service_version: Option<String>,
    /// Every other label, in the order given; stored as profile attributes.
    pub attributes: Vec<(String, String)>,
}

impl SeriesLabels {
    /// Splits `labels`; the service name is the `service_name` label, else `app_name`, else
    /// [`UNKNOWN_SERVICE`]. Empty values are dropped.
    pub fn new(app_name: Option<&str>, labels: impl IntoIterator<Item = (String, String)>) -> SeriesLabels {
        let mut out = SeriesLabels::default();
        let mut service_name = None;
        for (key, value) in labels {
            if value.is_empty() {
                continue;
            }
            if key == SERVICE_NAME_LABEL {
                service_name = Some(value);
            } else if SERVICE_VERSION_LABELS.contains(&key.as_str()) {
                out.service_version = Some(value);
            } else if !out.attributes.iter().any(|(k, _)| *k == key) {
                out.attributes.push((key, value));
            }
        }
        out.service_name = service_name
            .or_else(|| app_name.filter(|a| !a.is_empty()).map(str::to_string))
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_string());
        out
    }
}

/// Times to use when the profile itself has none (unix nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fallback {
    pub time_unix_nano: u64,
    pub duration_nano: u64,
}

/// Converts a resolved pprof profile and its series labels into one OTLP export request.
/// `profile_key` seeds the profile ids (e.g. the raw bytes or the agent's sample id), so the
/// same push gets the same ids.
pub fn to_otlp(
    profile: &Profile,
    labels: &SeriesLabels,
    fallback: Fallback,
    profile_key: &[u8],
) -> ExportProfilesServiceRequest {
    let mut dict = DictBuilder::default();
    let time_unix_nano = u64::try_from(profile.time_nanos).ok().filter(|&t| t > 0).unwrap_or(fallback.time_unix_nano);
    let duration_nano = u64::try_from(profile.duration_nanos).ok().filter(|&d| d > 0).unwrap_or(fallback.duration_nano);
    let period_type = profile.period_type.as_ref().map(|t| dict.value_type(t));
    let profile_attributes: Vec<i32> =
        labels.attributes.iter().map(|(k, v)| dict.attribute(k, string_value(v.clone()), "")).collect();

    // Stacks and sample attributes are shared by every sample type's profile. Samples with the
    // same stack and labels are one sample, their values summed (as `pprof -proto` merges
    // them), so a profile repeating one sample a million times converts to one sample.
    // (stack index, attribute indices) → summed values per sample type.
    type Key = (i32, Vec<i32>);
    let mut merged: Vec<(Key, Vec<i64>)> = Vec::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    for s in &profile.samples {
        let key = dict.sample(profile, s);
        match index.get(&key) {
            Some(&at) => {
                for (sum, v) in merged[at].1.iter_mut().zip(&s.values) {
                    *sum = sum.saturating_add(*v);
                }
            }
            None => {
                index.insert(key.clone(), merged.len());
                let mut values = s.values.clone();
                values.resize(profile.sample_types.len(), 0);
                merged.push((key, values));
            }
        }
    }
    drop(index);
    let mut profiles = Vec::with_capacity(profile.sample_types.len());
    for (index, sample_type) in profile.sample_types.iter().enumerate() {
        let sample_type = Some(dict.value_type(sample_type));
        let otlp_samples = merged
            .iter()
            .filter_map(|((stack_index, attribute_indices), values)| {
                let value = values.get(index).copied().filter(|&v| v != 0)?;
                Some(otlp::Sample {
                    stack_index: *stack_index,
                    attribute_indices: attribute_indices.clone(),
                    link_index: 0,
                    values: vec![value],
                    timestamps_unix_nano: Vec::new(),
                })
            })
            .collect();
        profiles.push(otlp::Profile {
            sample_type,
            samples: otlp_samples,
            time_unix_nano,
            duration_nano,
            period_type,
            period: profile.period,
            profile_id: profile_id(profile_key, time_unix_nano, index),
            dropped_attributes_count: 0,
            original_payload_format: String::new(),
            original_payload: Vec::new(),
            attribute_indices: profile_attributes.clone(),
        });
    }

    let mut resource_attributes = vec![key_value("service.name", &labels.service_name)];
    if let Some(version) = &labels.service_version {
        resource_attributes.push(key_value("service.version", version));
    }
    ExportProfilesServiceRequest {
        resource_profiles: vec![otlp::ResourceProfiles {
            resource: Some(Resource {
                attributes: resource_attributes,
                dropped_attributes_count: 0,
                entity_refs: vec![],
            }),
            scope_profiles: vec![otlp::ScopeProfiles { scope: None, profiles, schema_url: String::new() }],
            schema_url: String::new(),
        }],
        dictionary: Some(dict.finish()),
    }
}

/// Records in every profile of `request` (as [`crate::model::profile::SOURCE_SHA256_ATTRIBUTE`])
/// the SHA-256 of `source`, the bytes it was converted from — a pushed or scraped pprof as it
/// arrived, before its own gzip is undone —, so the stored profile can be checked against them.
pub fn record_source(request: &mut ExportProfilesServiceRequest, source: &[u8]) {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(source));
    let dict = request.dictionary.get_or_insert_with(Default::default);
    if dict.string_table.is_empty() {
        dict.string_table.push(String::new());
    }
    let key_strindex = next(dict.string_table.len());
    dict.string_table.push(crate::model::profile::SOURCE_SHA256_ATTRIBUTE.to_string());
    let index = next(dict.attribute_table.len().max(1));
    if dict.attribute_table.is_empty() {
        dict.attribute_table.push(otlp::KeyValueAndUnit::default());
    }
    dict.attribute_table.push(otlp::KeyValueAndUnit {
        key_strindex,
        value: Some(string_value(digest)),
        unit_strindex: 0,
    });
    for profile in
        request.resource_profiles.iter_mut().flat_map(|rp| &mut rp.scope_profiles).flat_map(|sp| &mut sp.profiles)
    {
        profile.attribute_indices.push(index);
    }
}

fn key_value(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(string_value(value.to_string())), key_strindex: 0 }
}

fn string_value(value: String) -> AnyValue {
    AnyValue { value: Some(any_value::Value::StringValue(value)) }
}

fn profile_id(key: &[u8], time: u64, index: usize) -> Vec<u8> {
    let half = |salt: u64| {
        let mut h = DefaultHasher::new();
        (salt, key, time, index).hash(&mut h);
        h.finish().to_be_bytes()
    };
    let mut id = Vec::with_capacity(16);
    id.extend_from_slice(&half(0x5107_6a7e));
    id.extend_from_slice(&half(0x9f0f_11ed));
    id
}

/// Builds the shared OTLP dictionary, interning every table. Index 0 of each table is the
/// zero value, as the OTLP profiles specification asks.
struct DictBuilder {
    dict: otlp::ProfilesDictionary,
    strings: HashMap<String, i32>,
    functions: HashMap<(i32, i32), i32>,
    mappings: HashMap<i32, i32>,
    locations: HashMap<(i32, u64, i32, i64), i32>,
    stacks: HashMap<Vec<i32>, i32>,
    attributes: HashMap<(i32, String, i32), i32>,
}

impl Default for DictBuilder {
    fn default() -> DictBuilder {
        let dict = otlp::ProfilesDictionary {
            mapping_table: vec![otlp::Mapping::default()],
            location_table: vec![otlp::Location::default()],
            function_table: vec![otlp::Function::default()],
            link_table: vec![otlp::Link::default()],
            string_table: vec![String::new()],
            attribute_table: vec![otlp::KeyValueAndUnit::default()],
            stack_table: vec![otlp::Stack::default()],
        };
        DictBuilder {
            dict,
            strings: HashMap::from([(String::new(), 0)]),
            functions: HashMap::new(),
            mappings: HashMap::new(),
            locations: HashMap::new(),
            stacks: HashMap::new(),
            attributes: HashMap::new(),
        }
    }
}

/// Index of the next entry of a table (tables never get near `i32::MAX` entries: a request is
/// bounded by the body size limit).
fn next(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

impl DictBuilder {
    fn string(&mut self, s: &str) -> i32 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = next(self.dict.string_table.len());
        self.dict.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn value_type(&mut self, t: &ValueType) -> otlp::ValueType {
        otlp::ValueType { type_strindex: self.string(&t.kind), unit_strindex: self.string(&t.unit) }
    }

    fn attribute(&mut self, key: &str, value: AnyValue, unit: &str) -> i32 {
        let key_strindex = self.string(key);
        let unit_strindex = self.string(unit);
        let fingerprint = (key_strindex, format!("{:?}", value.value), unit_strindex);
        if let Some(&i) = self.attributes.get(&fingerprint) {
            return i;
        }
        let i = next(self.dict.attribute_table.len());
        self.dict.attribute_table.push(otlp::KeyValueAndUnit { key_strindex, value: Some(value), unit_strindex });
        self.attributes.insert(fingerprint, i);
        i
    }

    fn location(&mut self, frame: &Frame) -> i32 {
        let mapping_index = match &*frame.mapping {
            "" => 0,
            file => {
                let filename_strindex = self.string(file);
                match self.mappings.get(&filename_strindex) {
                    Some(&i) => i,
                    None => {
                        let i = next(self.dict.mapping_table.len());
                        self.dict.mapping_table.push(otlp::Mapping { filename_strindex, ..Default::default() });
                        self.mappings.insert(filename_strindex, i);
                        i
                    }
                }
            }
        };
        // An unsymbolized frame keeps only its address (stored as `0x…`).
        let function_index = if frame.function.is_empty() {
            0
        } else {
            let name = self.string(&frame.function);
            let file = self.string(&frame.file);
            match self.functions.get(&(name, file)) {
                Some(&i) => i,
                None => {
                    let i = next(self.dict.function_table.len());
                    self.dict.function_table.push(otlp::Function {
                        name_strindex: name,
                        system_name_strindex: name,
                        filename_strindex: file,
                        start_line: 0,
                    });
                    self.functions.insert((name, file), i);
                    i
                }
            }
        };
        let key = (mapping_index, frame.address, function_index, frame.line);
        if let Some(&i) = self.locations.get(&key) {
            return i;
        }
        let lines = if function_index == 0 {
            Vec::new()
        } else {
            vec![otlp::Line { function_index, line: frame.line, column: 0 }]
        };
        let i = next(self.dict.location_table.len());
        self.dict.location_table.push(otlp::Location {
            mapping_index,
            address: frame.address,
            lines,
            attribute_indices: Vec::new(),
        });
        self.locations.insert(key, i);
        i
    }

    /// The stack index and attribute indices of a sample.
    fn sample(&mut self, profile: &Profile, sample: &Sample) -> (i32, Vec<i32>) {
        let locations: Vec<i32> = profile.stack(sample).map(|f| self.location(f)).collect();
        let stack = match self.stacks.get(&locations) {
            Some(&i) => i,
            None => {
                let i = next(self.dict.stack_table.len());
                self.dict.stack_table.push(otlp::Stack { location_indices: locations.clone() });
                self.stacks.insert(locations, i);
                i
            }
        };
        let mut attributes: Vec<i32> =
            sample.labels.iter().map(|(k, v)| self.attribute(k, string_value(v.clone()), "")).collect();
        for l in &sample.numeric_labels {
            attributes.push(self.attribute(
                &l.key,
                AnyValue { value: Some(any_value::Value::IntValue(l.value)) },
                &l.unit,
            ));
        }
        (stack, attributes)
    }

    fn finish(self) -> otlp::ProfilesDictionary {
        self.dict
    }
}

/// Why a folded (collapsed stacks) body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldedError {
    #[error("line {line}: expected `frame;frame;... <count>`, found {found:?}")]
    Syntax { line: usize, found: String },
    #[error("line {line}: count {found:?} is not a non-negative integer")]
    Count { line: usize, found: String },
    #[error("sample rate must be positive, got {0}")]
    SampleRate(u32),
}

/// What the samples of a folded body count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoldedKind {
    /// CPU samples taken `sample_rate` times a second; values become nanoseconds.
    Cpu { sample_rate: u32 },
    /// Plain counts of the named type (`alloc_objects`, `goroutines`, ...).
    Count(String),
}

/// Reads collapsed stacks (`root;child;leaf 12` per line, as Brendan Gregg's `stackcollapse`
/// and Pyroscope's legacy `format=folded` write them) into a profile. Every bad line is
/// reported with its number; blank lines are skipped.
pub fn profile_from_folded(text: &str, kind: &FoldedKind) -> Result<Profile, Vec<FoldedError>> {
    let (sample_type, period_type, period, scale) = match kind {
        FoldedKind::Cpu { sample_rate } => {
            if *sample_rate == 0 {
                return Err(vec![FoldedError::SampleRate(0)]);
            }
            let period = 1_000_000_000 / i64::from(*sample_rate);
            let vt = ValueType { kind: "cpu".into(), unit: "nanoseconds".into() };
            (vt.clone(), Some(vt), period, period)
        }
        FoldedKind::Count(name) => {
            let vt =
                ValueType { kind: if name.is_empty() { "samples".into() } else { name.clone() }, unit: "count".into() };
            (vt.clone(), Some(vt), 1, 1)
        }
    };
    let mut errors = Vec::new();
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() {
            continue;
        }
        let Some((stack, count)) = line.rsplit_once(' ') else {
            errors.push(FoldedError::Syntax { line: line_no, found: truncate(line) });
            continue;
        };
        let Ok(count) = count.trim().parse::<i64>().map_err(|_| ()).and_then(|c| if c < 0 { Err(()) } else { Ok(c) })
        else {
            errors.push(FoldedError::Count { line: line_no, found: truncate(count) });
            continue;
        };
        let stack: Vec<Frame> = stack
            .trim()
            .split(';')
            .rev()
            .filter(|f| !f.is_empty())
            .map(|f| Frame { function: f.to_string().into(), ..Default::default() })
            .collect();
        if stack.is_empty() {
            errors.push(FoldedError::Syntax { line: line_no, found: truncate(line) });
            continue;
        }
        samples.push((stack, vec![count.saturating_mul(scale)]));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Profile { period_type, period, ..Profile::from_stacks(vec![sample_type], samples) })
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    /// The package's directory: where cargo runs this test from now (`CARGO_MANIFEST_DIR` at run
    /// time), not where it was compiled, so a test binary built from another checkout of the same
    /// sources with a shared target directory still reads this checkout's files.
    fn manifest_dir() -> std::path::PathBuf {
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
    }

    use std::collections::BTreeMap;

    use super::*;
    use crate::model::profile::{Frame as RowFrame, rows_from_request};

    /// Flat and cum per function, from stored rows of one sample type.
    fn totals(rows: &[crate::model::ProfileRow], sample_type: &str) -> BTreeMap<String, (i64, i64)> {
        let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for row in rows.iter().filter(|r| &*r.profile.sample_type == sample_type) {
            let frames: Vec<RowFrame> = serde_json::from_str(&row.stack).unwrap();
            let mut seen = std::collections::HashSet::new();
            for f in &frames {
                if seen.insert(f.function.clone()) {
                    totals.entry(f.function.clone()).or_default().1 += row.value;
                }
            }
            if let Some(leaf) = frames.first() {
                totals.entry(leaf.function.clone()).or_default().0 += row.value;
            }
        }
        totals
    }

    #[test]
    fn corpus_cpu_profile_keeps_per_function_totals() {
        let path = manifest_dir().join("../testdata/corpus/go-dev/fast/cpu-10s.pb.gz");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let profile = analyzer::pprof::decode(&bytes).unwrap();
        let labels = SeriesLabels::new(
            Some("app"),
            [
                ("service_name".into(), "svc".into()),
                ("service_version".into(), "1.2".into()),
                ("env".into(), "ci".into()),
            ],
        );
        let mut request = to_otlp(&profile, &labels, Fallback::default(), &bytes);
        record_source(&mut request, &bytes);
        let rejections = crate::receive::validate::profiles(&mut request, &crate::config::Limits::default());
        assert_eq!(rejections.items, 0, "{}", rejections.message());
        // What the write-ahead log replays (the request's encoding) gives the same rows.
        let replayed = rows_from_request(prost::Message::decode(&*prost::Message::encode_to_vec(&request)).unwrap());
        let rows = rows_from_request(request);
        assert!(!rows.is_empty());
        // Every profile keeps the SHA-256 of the gzipped pprof as it came, not as an attribute.
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        assert!(rows.iter().chain(&replayed).all(|r| r.profile.source_sha256 == Some(digest)));
        assert!(!rows[0].attributes.contains("sha256"), "{}", rows[0].attributes);
        assert_eq!(rows[0].resource.service_name.as_deref(), Some("svc"));
        assert_eq!(rows[0].resource.service_version.as_deref(), Some("1.2"));
        assert!(rows[0].attributes.contains("env"), "{}", rows[0].attributes);
        for (index, sample_type) in profile.sample_types.iter().enumerate() {
            let expected = analyzer::pprof::flat_and_cum(&profile, index).unwrap();
            assert_eq!(totals(&rows, &sample_type.kind), expected, "sample type {}", sample_type.kind);
        }
    }

    #[test]
    fn folded_cpu_counts_become_nanoseconds() {
        let p =
            profile_from_folded("main;work;hash 3\n\nmain;idle 1\n", &FoldedKind::Cpu { sample_rate: 100 }).unwrap();
        assert_eq!(p.sample_types[0].kind, "cpu");
        assert_eq!(p.period, 10_000_000);
        assert_eq!(p.samples[0].values, vec![30_000_000]);
        let names: Vec<_> = p.stack(&p.samples[0]).map(|f| &*f.function).collect();
        assert_eq!(names, ["hash", "work", "main"]);
    }

    #[test]
    fn folded_reports_every_bad_line() {
        let errors =
            profile_from_folded("a;b x\nnospace\na 1\n;; 2\nc -1", &FoldedKind::Count("x".into())).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert_eq!(errors[0], FoldedError::Count { line: 1, found: "x".into() });
        assert_eq!(errors[1], FoldedError::Syntax { line: 2, found: "nospace".into() });
        assert!(profile_from_folded("a 1", &FoldedKind::Cpu { sample_rate: 0 }).is_err());
    }

    #[test]
    fn labels_pick_the_service() {
        let l = SeriesLabels::new(Some("app"), [("__name__".into(), "process_cpu".into())]);
        assert_eq!(l.service_name, "app");
        assert_eq!(l.attributes, vec![("__name__".to_string(), "process_cpu".to_string())]);
        assert_eq!(SeriesLabels::new(None, []).service_name, UNKNOWN_SERVICE);
    }
}
