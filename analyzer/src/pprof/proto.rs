//! Wire types of pprof's `profile.proto` (package `perftools.profiles`), written by hand from the
//! published field numbers of the spec at github.com/google/pprof, `proto/profile.proto`.
//!
//! These are the bytes as sent: every string is an index into `string_table`, every reference
//! is an id into another table. [`super::decode`] resolves them into the domain
//! [`super::Profile`]; nothing else should read these structs.
//!
//! Field numbers (spec):
//! - `Profile`: sample_type=1, sample=2, mapping=3, location=4, function=5, string_table=6,
//!   drop_frames=7, keep_frames=8, time_nanos=9, duration_nanos=10, period_type=11, period=12,
//!   comment=13, default_sample_type=14, doc_url=15
//! - `ValueType`: type=1, unit=2
//! - `Sample`: location_id=1 (packed uint64), value=2 (packed int64), label=3
//! - `Label`: key=1, str=2, num=3, num_unit=4
//! - `Mapping`: id=1, memory_start=2, memory_limit=3, file_offset=4, filename=5, build_id=6,
//!   has_functions=7, has_filenames=8, has_line_numbers=9, has_inline_frames=10
//! - `Location`: id=1, mapping_id=2, address=3, line=4, is_folded=5
//! - `Line`: function_id=1, line=2, column=3
//! - `Function`: id=1, name=2, system_name=3, filename=4, start_line=5

/// A whole profile as encoded on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// What each entry of `Sample::value` measures, in order.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The recorded samples.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Binaries and libraries the addresses belong to.
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    /// Program locations referred to by samples.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions referred to by location lines.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// All strings of the profile; entry 0 must be `""`.
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// String index of a regular expression: frames matching it (and their callees) are dropped.
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    /// String index of a regular expression: frames matching it are kept despite `drop_frames`.
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    /// Time of collection, unix nanoseconds.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// Duration of the collection, nanoseconds.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// What an event of the sampling period is.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// Number of events between samples.
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// String indices of free-form comments.
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// String index of the type (`ValueType::type`) a viewer shows by default.
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
    /// String index of a documentation URL for the profile's type.
    #[prost(int64, tag = "15")]
    pub doc_url: i64,
}

/// A measured quantity: `type` and `unit` are string indices (e.g. `cpu`, `nanoseconds`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    /// String index of the type.
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// String index of the unit.
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// One sample: a stack (location ids, leaf first) with one value per sample type.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Location ids, innermost (leaf) first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per `Profile::sample_type`.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels attached to the sample.
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// A sample label: a string value (`str`) or a numeric one (`num`, optionally with `num_unit`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// String index of the key.
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// String index of the value, 0 for a numeric label.
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// Numeric value.
    #[prost(int64, tag = "3")]
    pub num: i64,
    /// String index of the unit of `num`.
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// A mapped binary or library.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    /// Unique non-zero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Start address of the mapping.
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    /// End address of the mapping.
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    /// Offset in the file of `memory_start`.
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// String index of the file name of the binary.
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// String index of the build id.
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    /// Whether the locations of this mapping carry function names.
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    /// Whether they carry file names.
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    /// Whether they carry line numbers.
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    /// Whether they carry inlined frames.
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// A program location: an address, and the source lines at it (innermost inlined first).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    /// Unique non-zero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Id of the mapping holding `address`, 0 when unknown.
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// Instruction address.
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Source lines; the last one is the caller into which the earlier ones were inlined.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    /// Whether several frames were folded into this one.
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// A source line of a location.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    /// Id of the function, 0 when unknown.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Line number, 0 when unknown.
    #[prost(int64, tag = "2")]
    pub line: i64,
    /// Column number, 0 when unknown.
    #[prost(int64, tag = "3")]
    pub column: i64,
}

/// A function.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    /// Unique non-zero id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// String index of the human-readable name.
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// String index of the system name (e.g. the mangled C++ name).
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// String index of the source file name.
    #[prost(int64, tag = "4")]
    pub filename: i64,
    /// First line of the function in the source file.
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}
