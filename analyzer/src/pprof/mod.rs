//! pprof profiles: decoding `profile.proto` (gzipped or not) into a resolved domain [`Profile`].
//!
//! Design: the wire types in [`proto`] mirror the spec and are read only here. [`decode`] resolves
//! every string index and id once, so the rest of the analyzer works on plain values (function
//! names, [`Frame`]s, labels) and never meets a dangling id: a bad reference is a
//! [`DecodeError`] naming the sample or location, never a panic. Locations are expanded the way
//! `go tool pprof` does: a location with several lines (inlined calls) becomes several frames,
//! innermost first, and the profile's `drop_frames`/`keep_frames` are applied as pprof applies
//! them. Each location's frames are built once; a sample is a list of location indices, and
//! [`Profile::stack`] walks its frames (as pprof's own `Sample.Location` points at shared
//! locations), so decoding costs per location, not per sample frame. Only `profile.proto` is
//! read; the legacy text and binary formats that predate it are recognised and rejected with
//! [`DecodeError::Legacy`].

pub mod profile_type;
pub mod proto;
mod prune;
mod top;

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use prost::Message;

pub use profile_type::{BadProfileTypeId, ProfileTypeId, profile_name, profile_type_id};

use crate::hash::FastHash;
pub use top::{SampleIndexOutOfRange, flat_and_cum};

/// Largest decompressed size [`decode`] accepts, so a small gzip bomb cannot exhaust memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = 256 * 1024 * 1024;

/// Why bytes could not be decoded as a pprof profile.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input has no bytes at all.
    #[error("empty input: a profile has at least a string table")]
    Empty,
    /// The input starts like gzip but does not gunzip.
    #[error("gzip stream is corrupt: {0}")]
    Gzip(#[source] std::io::Error),
    /// The gunzipped profile is larger than the limit.
    #[error("decompressed profile exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The input is one of the formats that predate `profile.proto`.
    #[error("legacy (pre-proto) profile format is not supported ({format}); convert it with `go tool pprof -proto`")]
    Legacy {
        /// What the input looks like.
        format: &'static str,
    },
    /// The input is not a protobuf `perftools.profiles.Profile`.
    #[error("not a valid profile.proto message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The string table does not start with the empty string.
    #[error("string_table[0] must be the empty string, found {found:?}")]
    StringTableStart {
        /// The first entry found.
        found: String,
    },
    /// A string index is outside the string table.
    #[error("{what} refers to string index {index}, but the string table has {len} entries")]
    StringIndex {
        /// Which field holds the index, e.g. `function 3 name`.
        what: String,
        /// The index.
        index: i64,
        /// Size of the string table.
        len: usize,
    },
    /// A mapping, location or function has id 0 (reserved for "none") or repeats an id.
    #[error("{table} id {id} is {problem}")]
    BadId {
        /// `mapping`, `location` or `function`.
        table: &'static str,
        /// The id.
        id: u64,
        /// `reserved` or `duplicated`.
        problem: &'static str,
    },
    /// A sample refers to a location id that is not in the location table.
    #[error("sample {sample} refers to location id {location_id}, which is not in the location table")]
    MissingLocation {
        /// Index of the sample in the profile.
        sample: usize,
        /// The unknown id.
        location_id: u64,
    },
    /// A location refers to a function id that is not in the function table.
    #[error(
        "location {location_id} line {line} refers to function id {function_id}, which is not in the function table"
    )]
    MissingFunction {
        /// The location's id.
        location_id: u64,
        /// Index of the line within the location.
        line: usize,
        /// The unknown id.
        function_id: u64,
    },
    /// A location refers to a mapping id that is not in the mapping table.
    #[error("location {location_id} refers to mapping id {mapping_id}, which is not in the mapping table")]
    MissingMapping {
        /// The location's id.
        location_id: u64,
        /// The unknown id.
        mapping_id: u64,
    },
    /// `drop_frames` or `keep_frames` is not a valid regular expression.
    #[error("{field} {pattern:?} is not a valid regular expression: {reason}")]
    FrameRegex {
        /// `drop_frames` or `keep_frames`.
        field: &'static str,
        /// The pattern.
        pattern: String,
        /// What the regular-expression compiler said.
        reason: String,
    },
    /// A sample has a different number of values than the profile has sample types.
    #[error("sample {sample} has {values} values, but the profile declares {sample_types} sample types")]
    ValueCount {
        /// Index of the sample in the profile.
        sample: usize,
        /// Number of values of the sample.
        values: usize,
        /// Number of sample types.
        sample_types: usize,
    },
}

/// A decoded profile with every string and id resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    /// What each entry of [`Sample::values`] measures, in order.
    pub sample_types: Vec<ValueType>,
    /// The type (`ValueType::kind`) a viewer shows by default, when the profile names one.
    pub default_sample_type: Option<String>,
    /// What an event of the sampling period is.
    pub period_type: Option<ValueType>,
    /// Number of `period_type` events between samples.
    pub period: i64,
    /// Time of collection, unix nanoseconds (0 when unknown).
    pub time_nanos: i64,
    /// Duration of the collection, nanoseconds (0 when unknown).
    pub duration_nanos: i64,
    /// Regular expression of frames the producer wants dropped, with their callees; already
    /// applied to [`Profile::samples`] by [`decode`], as `go tool pprof` applies it.
    pub drop_frames: Option<String>,
    /// Regular expression of frames kept despite `drop_frames`.
    pub keep_frames: Option<String>,
    /// Free-form comments.
    pub comments: Vec<String>,
    /// Documentation URL for the profile's type.
    pub doc_url: Option<String>,
    /// The locations samples go through, each expanded into its frames. Samples refer to them by
    /// index, so a location's frames are built once however many samples pass through it.
    pub locations: Vec<Location>,
    /// The samples, in file order.
    pub samples: Vec<Sample>,
}

impl Profile {
    /// Index of the sample type a viewer shows by default: the last one named
    /// `default_sample_type`, else the last sample type (as `go tool pprof` chooses).
    pub fn default_sample_index(&self) -> Option<usize> {
        if let Some(default) = &self.default_sample_type
            && let Some(i) = self.sample_types.iter().rposition(|t| &t.kind == default)
        {
            return Some(i);
        }
        self.sample_types.len().checked_sub(1)
    }

    /// The stack of `sample`, innermost frame first: the frames of its locations in order, each
    /// location's inlined frames innermost first. A location index outside
    /// [`Profile::locations`] (which [`decode`] never produces) contributes no frame.
    pub fn stack<'a>(&'a self, sample: &'a Sample) -> impl DoubleEndedIterator<Item = &'a Frame> + Clone + 'a {
        sample.locations.iter().flat_map(move |&i| self.locations.get(i as usize).map_or(&[][..], |l| &l.frames[..]))
    }

    /// The leaf (innermost frame) of `sample`'s stack.
    pub fn leaf<'a>(&'a self, sample: &'a Sample) -> Option<&'a Frame> {
        self.stack(sample).next()
    }
}

/// A location: a program counter and the frames it stands for (several when calls were inlined
/// into it), innermost first, after the profile's `drop_frames` cut. Never empty: an
/// unsymbolized location has one frame without a function name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The frames, innermost first.
    pub frames: Vec<Frame>,
}

/// Builds [`Profile::locations`] for profiles made from frames rather than decoded (folded text,
/// stored rows, tests): each distinct frame becomes one location.
#[derive(Debug, Default)]
pub struct LocationTable {
    locations: Vec<Location>,
    index: HashMap<Frame, u32>,
}

impl LocationTable {
    /// The location indices of `frames` (innermost first), adding the frames not seen yet.
    pub fn stack(&mut self, frames: impl IntoIterator<Item = Frame>) -> Vec<u64> {
        frames
            .into_iter()
            .map(|frame| match self.index.get(&frame) {
                Some(&i) => u64::from(i),
                None => {
                    let i = u32::try_from(self.locations.len()).expect("fewer than 2^32 distinct frames");
                    self.locations.push(Location { frames: vec![frame.clone()] });
                    self.index.insert(frame, i);
                    u64::from(i)
                }
            })
            .collect()
    }

    /// The locations, for [`Profile::locations`].
    pub fn finish(self) -> Vec<Location> {
        self.locations
    }
}

impl Profile {
    /// A profile of `sample_types` whose samples are given as stacks of frames (innermost
    /// first) with one value per sample type; the locations are built with [`LocationTable`].
    pub fn from_stacks(
        sample_types: Vec<ValueType>,
        stacks: impl IntoIterator<Item = (Vec<Frame>, Vec<i64>)>,
    ) -> Profile {
        let mut table = LocationTable::default();
        let samples = stacks
            .into_iter()
            .map(|(frames, values)| Sample { locations: table.stack(frames), values, ..Sample::default() })
            .collect();
        Profile { sample_types, locations: table.finish(), samples, ..Profile::default() }
    }
}

/// A measured quantity, e.g. `cpu` in `nanoseconds`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValueType {
    /// What is measured (`cpu`, `alloc_space`, `goroutine`, ...).
    pub kind: String,
    /// Its unit (`nanoseconds`, `bytes`, `count`, ...).
    pub unit: String,
}

/// One sample: a stack and one value per sample type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sample {
    /// The stack as indices into [`Profile::locations`], innermost first; [`Profile::stack`]
    /// gives its frames. (`u64`, as the wire's location ids are: decoding turns the id list
    /// into the index list in place.)
    pub locations: Vec<u64>,
    /// One value per [`Profile::sample_types`].
    pub values: Vec<i64>,
    /// String labels, `(key, value)`, in file order.
    pub labels: Vec<(String, String)>,
    /// Numeric labels, in file order.
    pub numeric_labels: Vec<NumericLabel>,
}

/// A numeric sample label such as `bytes = 1024`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NumericLabel {
    /// The key.
    pub key: String,
    /// The value.
    pub value: i64,
    /// The unit, empty when not given.
    pub unit: String,
}

/// One frame of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Frame {
    /// Function name; empty when the profile is not symbolized. Shared (`Arc<str>`): every
    /// location of a function refers to the same name, so decoding allocates it once.
    pub function: Arc<str>,
    /// Source file name; empty when unknown.
    pub file: Arc<str>,
    /// Source line; 0 when unknown.
    pub line: i64,
    /// Instruction address of the location (shared by all frames of an inlined location).
    pub address: u64,
    /// File name of the mapping (binary or library) holding the address; empty when unknown.
    pub mapping: Arc<str>,
}

impl Frame {
    /// The name `go tool pprof` shows for this frame at function granularity: the function
    /// name, else `[binary]` (the base name of the mapping), else `<unknown>`.
    pub fn display_name(&self) -> String {
        if !self.function.is_empty() {
            self.function.to_string()
        } else if !self.mapping.is_empty() {
            let trimmed = self.mapping.trim_end_matches('/');
            let base = trimmed.rsplit('/').next().unwrap_or(trimmed);
            format!("[{}]", if base.is_empty() { "/" } else { base })
        } else {
            "<unknown>".to_string()
        }
    }
}

/// Decodes a pprof profile, gzipped or plain `profile.proto`, with the default size limit
/// [`MAX_DECOMPRESSED_BYTES`].
pub fn decode(bytes: &[u8]) -> Result<Profile, DecodeError> {
    Decoder::default().decode(bytes)
}

/// Decodes like [`decode`], refusing more than `max_decompressed` bytes after gunzip.
pub fn decode_with_limit(bytes: &[u8], max_decompressed: u64) -> Result<Profile, DecodeError> {
    Decoder::with_limit(max_decompressed).decode(bytes)
}

/// Decodes like [`decode_with_limit`], but samples with the same locations and labels become one
/// sample with their values summed, as they arrive: memory grows with the distinct samples, not
/// with the samples. For profiles from untrusted senders (a million copies of one sample is a
/// 22 KB gzipped file). Totals, flat and cum values are unchanged; the number of sample records
/// is not kept.
pub fn decode_merged(bytes: &[u8], max_decompressed: u64) -> Result<Profile, DecodeError> {
    let mut decoder = Decoder::with_limit(max_decompressed);
    decoder.merge_samples = true;
    decoder.decode(bytes)
}

/// Decodes profiles one after another, keeping the buffers of the last one (the gunzipped bytes
/// and the wire tables) for the next, so a merge of many profiles does not grow them again for
/// each. Each profile is decoded exactly as [`decode`] does.
#[derive(Debug)]
pub struct Decoder {
    max_decompressed: u64,
    gunzipped: Vec<u8>,
    wire: proto::Profile,
    merge_samples: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::with_limit(MAX_DECOMPRESSED_BYTES)
    }
}

impl Decoder {
    /// A decoder refusing more than `max_decompressed` bytes after gunzip.
    pub fn with_limit(max_decompressed: u64) -> Self {
        Decoder { max_decompressed, gunzipped: Vec::new(), wire: proto::Profile::default(), merge_samples: false }
    }

    /// Decodes one gzipped or plain `profile.proto`.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Profile, DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
            gunzip(bytes, self.max_decompressed, &mut self.gunzipped)?;
            self.gunzipped.as_slice()
        } else {
            bytes
        };
        self.wire.clear();
        let merged = if self.merge_samples { merge_streaming(&mut self.wire, raw) } else { self.wire.merge(raw) };
        if let Err(err) = merged {
            return Err(match legacy_format(raw) {
                Some(format) => DecodeError::Legacy { format },
                None => DecodeError::Protobuf(err),
            });
        }
        resolve(&mut self.wire)
    }
}

/// Decodes `raw` into `wire` field by field; each sample (field 2) is decoded alone and merged
/// into an earlier one with the same locations and labels, so equal samples never pile up.
fn merge_streaming(wire: &mut proto::Profile, mut raw: &[u8]) -> Result<(), prost::DecodeError> {
    use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint};
    const SAMPLE_FIELD: u32 = 2;
    // SipHash, not the crate's fast hash: the keys come from the sender.
    let mut index: HashMap<Vec<i64>, usize> = HashMap::new();
    let mut key = Vec::new();
    while !raw.is_empty() {
        let (tag, wire_type) = decode_key(&mut raw)?;
        if tag != SAMPLE_FIELD || wire_type != WireType::LengthDelimited {
            wire.merge_field(tag, wire_type, &mut raw, DecodeContext::default())?;
            continue;
        }
        let mut body_start = raw;
        let len = usize::try_from(decode_varint(&mut body_start)?).unwrap_or(usize::MAX);
        if len > body_start.len() {
            // Truncated: prost's own decoding of the field reports it.
            return wire.merge_field(tag, wire_type, &mut raw, DecodeContext::default());
        }
        raw = body_start;
        let (body, rest) = raw.split_at(len);
        raw = rest;
        let sample = proto::Sample::decode(body)?;
        key.clear();
        // Samples with a different number of values stay apart, for `resolve` to refuse.
        key.push(sample.value.len() as i64);
        key.extend(sample.location_id.iter().map(|&l| l as i64));
        key.push(-1);
        for l in &sample.label {
            key.extend([l.key, l.str, l.num, l.num_unit]);
        }
        match index.get(&key) {
            Some(&at) => {
                let values = &mut wire.sample[at].value;
                if values.len() < sample.value.len() {
                    values.resize(sample.value.len(), 0);
                }
                for (sum, v) in values.iter_mut().zip(&sample.value) {
                    *sum = sum.saturating_add(*v);
                }
            }
            None => {
                index.insert(key.clone(), wire.sample.len());
                wire.sample.push(sample);
            }
        }
    }
    Ok(())
}

/// Gunzips `bytes` into `out` (cleared first), refusing more than `limit` bytes.
fn gunzip(bytes: &[u8], limit: u64, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    out.clear();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit.saturating_add(1))
        .read_to_end(out)
        .map_err(DecodeError::Gzip)?;
    if out.len() as u64 > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(())
}

/// Recognises the formats `go tool pprof` reads besides `profile.proto`. Called only once the
/// bytes failed to decode as protobuf, so a valid profile is never mistaken for one of them.
fn legacy_format(raw: &[u8]) -> Option<&'static str> {
    const TEXT_HEADERS: &[(&str, &str)] = &[
        ("heap profile:", "Go or gperftools heap profile, text"),
        ("heap_v2/", "gperftools heap profile, text"),
        ("--- contention", "contentionz profile, text"),
        ("--- heapz", "Java heapz profile, text"),
        ("--- threadz", "threadz profile, text"),
        ("threadcreate profile:", "Go threadcreate profile, text"),
        ("goroutine profile:", "Go goroutine profile, text"),
        ("--- ", "legacy text profile"),
        ("# ", "legacy text profile"),
    ];
    for (prefix, format) in TEXT_HEADERS {
        if raw.starts_with(prefix.as_bytes()) {
            return Some(format);
        }
    }
    // The legacy binary CPU format (Go runtime/pprof before proto, gperftools, Java) starts with
    // the header words 0 and 3, 32 or 64 bits wide, in either byte order. A protobuf message never
    // starts with a zero byte (field number 0 does not exist).
    for width in [4, 8] {
        if let (Some(first), Some(second)) = (raw.get(..width), raw.get(width..2 * width))
            && first.iter().all(|&b| b == 0)
            && (second.first() == Some(&3) || second.last() == Some(&3))
            && second.iter().filter(|&&b| b != 0).count() == 1
        {
            return Some("legacy CPU profile, binary");
        }
    }
    let head = &raw[..raw.len().min(4096)];
    let printable = head.iter().all(|&b| b == b'\n' || b == b'\r' || b == b'\t' || (0x20..0x7f).contains(&b));
    printable.then_some("text that is not a protobuf")
}

/// Resolves ids and string indices of a wire profile.
/// Values by pprof id: a vector indexed by id when the ids are dense (every pprof writer numbers
/// them 1, 2, 3, …), so the per-frame lookups of a sample are array reads; a hash map otherwise,
/// so a profile with huge or scattered ids costs no more memory than its entries.
enum ById<T> {
    Dense(Vec<Option<T>>),
    Sparse(HashMap<u64, T>),
}

impl<T> ById<T> {
    fn new(ids: impl Iterator<Item = u64> + Clone) -> Self {
        let count = ids.clone().count();
        match ids.max() {
            Some(max) if max <= 4 * count as u64 + 1024 => ById::Dense((0..=max).map(|_| None).collect()),
            _ => ById::Sparse(HashMap::with_capacity(count)),
        }
    }

    fn get(&self, id: u64) -> Option<&T> {
        match self {
            ById::Dense(v) => usize::try_from(id).ok().and_then(|i| v.get(i)).and_then(Option::as_ref),
            ById::Sparse(m) => m.get(&id),
        }
    }

    fn insert(&mut self, id: u64, value: T) {
        match self {
            ById::Dense(v) => {
                if let Some(slot) = usize::try_from(id).ok().and_then(|i| v.get_mut(i)) {
                    *slot = Some(value);
                }
            }
            ById::Sparse(m) => {
                m.insert(id, value);
            }
        }
    }
}

fn resolve(wire: &mut proto::Profile) -> Result<Profile, DecodeError> {
    let strings = Strings(&wire.string_table);
    if let Some(first) = wire.string_table.first()
        && !first.is_empty()
    {
        return Err(DecodeError::StringTableStart { found: first.clone() });
    }

    let optional = |index: i64, what: &str| -> Result<Option<String>, DecodeError> {
        let s = strings.get(index, || what.to_string())?;
        Ok((!s.is_empty()).then(|| s.to_string()))
    };

    let empty: Arc<str> = Arc::from("");
    let mut mappings: ById<Arc<str>> = ById::new(wire.mapping.iter().map(|m| m.id));
    for m in &wire.mapping {
        check_id("mapping", m.id, mappings.get(m.id).is_some())?;
        mappings.insert(m.id, Arc::from(strings.get(m.filename, || format!("mapping {} filename", m.id))?));
    }
    let mut functions: ById<(Arc<str>, Arc<str>)> = ById::new(wire.function.iter().map(|f| f.id));
    // Many functions share a source file: one `Arc` per file name, by string index.
    let mut files: HashMap<i64, Arc<str>, FastHash> = HashMap::default();
    for f in &wire.function {
        check_id("function", f.id, functions.get(f.id).is_some())?;
        let name = strings.get(f.name, || format!("function {} name", f.id))?;
        let file = match files.get(&f.filename) {
            Some(file) => file.clone(),
            None => {
                let file: Arc<str> = Arc::from(strings.get(f.filename, || format!("function {} filename", f.id))?);
                files.insert(f.filename, file.clone());
                file
            }
        };
        strings.get(f.system_name, || format!("function {} system_name", f.id))?;
        functions.insert(f.id, (Arc::from(name), file));
    }
    let drop_frames = optional(wire.drop_frames, "drop_frames")?;
    let keep_frames = optional(wire.keep_frames, "keep_frames")?;
    let mut pruner = prune::Pruner::new(drop_frames.as_deref(), keep_frames.as_deref())?;
    // Location id → (index into `locations`, how pruning cuts stacks through it).
    let mut location_index: ById<(u32, prune::LocationCut)> = ById::new(wire.location.iter().map(|l| l.id));
    let mut locations = Vec::with_capacity(wire.location.len());
    for loc in &wire.location {
        check_id("location", loc.id, location_index.get(loc.id).is_some())?;
        let mapping = match loc.mapping_id {
            0 => empty.clone(),
            id => match mappings.get(id) {
                Some(mapping) => mapping.clone(),
                None => return Err(DecodeError::MissingMapping { location_id: loc.id, mapping_id: id }),
            },
        };
        let frame = |function: &Arc<str>, file: &Arc<str>, line: i64| Frame {
            function: function.clone(),
            file: file.clone(),
            line,
            address: loc.address,
            mapping: mapping.clone(),
        };
        let mut frames = Vec::with_capacity(loc.line.len().max(1));
        for (i, line) in loc.line.iter().enumerate() {
            let (function, file) = match line.function_id {
                0 => (&empty, &empty),
                id => match functions.get(id) {
                    Some((name, file)) => (name, file),
                    None => return Err(DecodeError::MissingFunction { location_id: loc.id, line: i, function_id: id }),
                },
            };
            frames.push(frame(function, file, line.line));
        }
        if frames.is_empty() {
            frames.push(frame(&empty, &empty, 0));
        }
        let cut = match pruner.as_mut() {
            Some(p) => p.cut_location(&mut frames),
            None => prune::LocationCut::Keep,
        };
        let index = u32::try_from(locations.len()).expect("a profile under 256 MiB has fewer than 2^32 locations");
        location_index.insert(loc.id, (index, cut));
        locations.push(Location { frames });
    }

    let mut samples = Vec::with_capacity(wire.sample.len());
    for (i, s) in wire.sample.iter_mut().enumerate() {
        if s.value.len() != wire.sample_type.len() {
            return Err(DecodeError::ValueCount {
                sample: i,
                values: s.value.len(),
                sample_types: wire.sample_type.len(),
            });
        }
        let kept = match pruner {
            Some(_) => prune::cut_stack(s.location_id.len(), |at| {
                location_index.get(s.location_id[at]).map_or(prune::LocationCut::Keep, |l| l.1)
            }),
            None => 0..s.location_id.len(),
        };
        // The wire's id list becomes the sample's index list in place.
        let mut resolved = std::mem::take(&mut s.location_id);
        for id in &mut resolved {
            match location_index.get(*id) {
                Some(&(index, _)) => *id = u64::from(index),
                None => return Err(DecodeError::MissingLocation { sample: i, location_id: *id }),
            }
        }
        resolved.truncate(kept.end);
        resolved.drain(..kept.start);
        let mut labels = Vec::new();
        let mut numeric_labels = Vec::new();
        for l in &s.label {
            let key = strings.get(l.key, || format!("sample {i} label key"))?.to_string();
            if l.str != 0 {
                let value = strings.get(l.str, || format!("sample {i} label {key:?} value"))?.to_string();
                labels.push((key, value));
            } else {
                let unit = strings.get(l.num_unit, || format!("sample {i} label {key:?} unit"))?.to_string();
                numeric_labels.push(NumericLabel { key, value: l.num, unit });
            }
        }
        samples.push(Sample { locations: resolved, values: std::mem::take(&mut s.value), labels, numeric_labels });
    }

    let value_type = |v: &proto::ValueType, what: &str| -> Result<ValueType, DecodeError> {
        Ok(ValueType {
            kind: strings.get(v.r#type, || format!("{what} type"))?.to_string(),
            unit: strings.get(v.unit, || format!("{what} unit"))?.to_string(),
        })
    };
    Ok(Profile {
        sample_types: wire
            .sample_type
            .iter()
            .enumerate()
            .map(|(i, v)| value_type(v, &format!("sample_type {i}")))
            .collect::<Result<_, _>>()?,
        default_sample_type: optional(wire.default_sample_type, "default_sample_type")?,
        period_type: wire.period_type.as_ref().map(|v| value_type(v, "period_type")).transpose()?,
        period: wire.period,
        time_nanos: wire.time_nanos,
        duration_nanos: wire.duration_nanos,
        drop_frames,
        keep_frames,
        comments: wire
            .comment
            .iter()
            .map(|&c| strings.get(c, || "comment".to_string()).map(str::to_string))
            .collect::<Result<_, _>>()?,
        doc_url: optional(wire.doc_url, "doc_url")?,
        locations,
        samples,
    })
}

fn check_id(table: &'static str, id: u64, seen: bool) -> Result<(), DecodeError> {
    match (id, seen) {
        (0, _) => Err(DecodeError::BadId { table, id, problem: "reserved" }),
        (_, true) => Err(DecodeError::BadId { table, id, problem: "duplicated" }),
        _ => Ok(()),
    }
}

/// The string table; index 0 is `""` even when the table is empty (an empty profile).
struct Strings<'a>(&'a [String]);

impl<'a> Strings<'a> {
    fn get(&self, index: i64, what: impl FnOnce() -> String) -> Result<&'a str, DecodeError> {
        if index == 0 {
            return Ok("");
        }
        usize::try_from(index)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(String::as_str)
            .ok_or_else(|| DecodeError::StringIndex { what: what(), index, len: self.0.len() })
    }
}

#[cfg(test)]
mod tests;
