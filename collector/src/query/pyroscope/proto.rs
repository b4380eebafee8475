//! The messages of Pyroscope's query API, written by hand from the field numbers published in
//! grafana/pyroscope's `api/querier/v1/querier.proto` and `api/types/v1/types.proto` (at
//! 3fe6a457, the numbering stable since phlare v0.x; see the wire notes), and the pprof
//! `google.v1.Profile` ([`analyzer::pprof::proto`]). Nothing here is generated from or copied
//! out of Pyroscope's sources.
//!
//! Each message is both a `prost::Message` (`application/proto`) and a serde type whose field
//! names are the proto3 JSON names (`lowerCamelCase` of the proto names: `profileTypeID`,
//! `labelSelector`, `maxNodes`, `labelsSet`, ...) for Connect JSON (`application/json`). As
//! `protojson` does, 64-bit integers are written as JSON strings and read from strings or
//! numbers, the original proto field names are accepted too, enums are read from their number or
//! their name, and unknown fields are ignored (connect-go's JSON codec discards them).
//! proto3 `optional` fields are `Option`s.

use serde::{Deserialize, Serialize};

// ---- types.v1 -----------------------------------------------------------------------------

/// `types.v1.LabelPair`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `types.v1.ProfileType` (there is no field 3).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileType {
    #[prost(string, tag = "1")]
    #[serde(rename = "ID", alias = "id")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "4")]
    #[serde(rename = "sampleType", alias = "sample_type")]
    pub sample_type: String,
    #[prost(string, tag = "5")]
    #[serde(rename = "sampleUnit", alias = "sample_unit")]
    pub sample_unit: String,
    #[prost(string, tag = "6")]
    #[serde(rename = "periodType", alias = "period_type")]
    pub period_type: String,
    #[prost(string, tag = "7")]
    #[serde(rename = "periodUnit", alias = "period_unit")]
    pub period_unit: String,
}

/// `types.v1.Labels`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Labels {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
}

/// `types.v1.Series`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Series {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    pub points: Vec<Point>,
}

/// `types.v1.Point` (annotations = 3 and exemplars = 4 are never filled).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Point {
    #[prost(double, tag = "1")]
    #[serde(with = "json::double")]
    pub value: f64,
    /// Unix milliseconds.
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub timestamp: i64,
}

/// `types.v1.LabelValuesRequest` (times in unix milliseconds).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelValuesRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, repeated, tag = "2")]
    pub matchers: Vec<String>,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub end: i64,
}

/// `types.v1.LabelValuesResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelValuesResponse {
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
}

/// `types.v1.LabelNamesRequest` (times in unix milliseconds).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelNamesRequest {
    #[prost(string, repeated, tag = "1")]
    pub matchers: Vec<String>,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub end: i64,
}

/// `types.v1.LabelNamesResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelNamesResponse {
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
}

/// `types.v1.GetProfileStatsRequest` (empty).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct GetProfileStatsRequest {}

/// `types.v1.GetProfileStatsResponse` (times in unix milliseconds).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct GetProfileStatsResponse {
    #[prost(bool, tag = "1")]
    #[serde(rename = "dataIngested", alias = "data_ingested")]
    pub data_ingested: bool,
    #[prost(int64, tag = "2")]
    #[serde(rename = "oldestProfileTime", alias = "oldest_profile_time", with = "json::int64")]
    pub oldest_profile_time: i64,
    #[prost(int64, tag = "3")]
    #[serde(rename = "newestProfileTime", alias = "newest_profile_time", with = "json::int64")]
    pub newest_profile_time: i64,
}

/// `types.v1.StackTraceSelector` (`call_site` = 1, `go_pgo` = 2): read so that requests carrying
/// it decode, not applied.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct StackTraceSelector {
    #[prost(message, repeated, tag = "1")]
    #[serde(rename = "callSite", alias = "call_site")]
    pub call_site: Vec<Location>,
}

/// `types.v1.Location`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Location {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `types.v1.TimeSeriesAggregationType` values.
pub mod aggregation {
    pub const SUM: i32 = 0;
    pub const AVERAGE: i32 = 1;
    /// Enum value names as `protojson` writes them.
    pub const NAMES: &[(&str, i32)] = &[
        ("TIME_SERIES_AGGREGATION_TYPE_SUM", SUM),
        ("TIME_SERIES_AGGREGATION_TYPE_AVERAGE", AVERAGE),
        ("SUM", SUM),
        ("AVERAGE", AVERAGE),
    ];
}

/// `types.v1.ExemplarType` names (any value is accepted; no exemplars are returned).
pub const EXEMPLAR_TYPE_NAMES: &[(&str, i32)] = &[
    ("EXEMPLAR_TYPE_UNSPECIFIED", 0),
    ("EXEMPLAR_TYPE_NONE", 1),
    ("EXEMPLAR_TYPE_INDIVIDUAL", 2),
    ("EXEMPLAR_TYPE_SPAN", 3),
];

/// `querier.v1.ProfileFormat` names (the flame graph is always answered).
pub const PROFILE_FORMAT_NAMES: &[(&str, i32)] = &[
    ("PROFILE_FORMAT_UNSPECIFIED", 0),
    ("PROFILE_FORMAT_FLAMEGRAPH", 1),
    ("PROFILE_FORMAT_TREE", 2),
    ("PROFILE_FORMAT_DOT", 3),
    ("PROFILE_FORMAT_PPROF", 4),
];

// ---- querier.v1 ---------------------------------------------------------------------------

/// `querier.v1.ProfileTypesRequest` (unix milliseconds; 0 = unset).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileTypesRequest {
    #[prost(int64, tag = "1")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "2")]
    #[serde(with = "json::int64")]
    pub end: i64,
}

/// `querier.v1.ProfileTypesResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfileTypesResponse {
    #[prost(message, repeated, tag = "1")]
    #[serde(rename = "profileTypes", alias = "profile_types")]
    pub profile_types: Vec<ProfileType>,
}

/// `querier.v1.SeriesRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SeriesRequest {
    #[prost(string, repeated, tag = "1")]
    pub matchers: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    #[serde(rename = "labelNames", alias = "label_names")]
    pub label_names: Vec<String>,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub end: i64,
}

/// `querier.v1.SeriesResponse` (field 2; there is no field 1).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SeriesResponse {
    #[prost(message, repeated, tag = "2")]
    #[serde(rename = "labelsSet", alias = "labels_set")]
    pub labels_set: Vec<Labels>,
}

/// `querier.v1.SelectMergeStacktracesRequest`. `format` (6), `profile_id_selector` (8),
/// `async` (9) and `trace_id_selector` (10) are read and ignored, except that a format other
/// than the flame graph is refused.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectMergeStacktracesRequest {
    #[prost(string, tag = "1")]
    #[serde(rename = "profileTypeID", alias = "profile_typeID")]
    pub profile_type_id: String,
    #[prost(string, tag = "2")]
    #[serde(rename = "labelSelector", alias = "label_selector")]
    pub label_selector: String,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub end: i64,
    #[prost(int64, optional, tag = "5")]
    #[serde(
        rename = "maxNodes",
        alias = "max_nodes",
        with = "json::opt_int64",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_nodes: Option<i64>,
    /// `querier.v1.ProfileFormat`.
    #[prost(int32, tag = "6")]
    #[serde(with = "json::profile_format")]
    pub format: i32,
    #[prost(message, optional, tag = "7")]
    #[serde(rename = "stackTraceSelector", alias = "stack_trace_selector", skip_serializing_if = "Option::is_none")]
    pub stack_trace_selector: Option<StackTraceSelector>,
    #[prost(string, repeated, tag = "11")]
    #[serde(rename = "spanSelector", alias = "span_selector")]
    pub span_selector: Vec<String>,
}

/// `querier.v1.SelectMergeStacktracesResponse` (only `flamegraph` = 1 is answered).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectMergeStacktracesResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flamegraph: Option<FlameGraph>,
}

/// `querier.v1.SelectMergeSpanProfileRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectMergeSpanProfileRequest {
    #[prost(string, tag = "1")]
    #[serde(rename = "profileTypeID", alias = "profile_typeID")]
    pub profile_type_id: String,
    #[prost(string, tag = "2")]
    #[serde(rename = "labelSelector", alias = "label_selector")]
    pub label_selector: String,
    #[prost(string, repeated, tag = "3")]
    #[serde(rename = "spanSelector", alias = "span_selector")]
    pub span_selector: Vec<String>,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "5")]
    #[serde(with = "json::int64")]
    pub end: i64,
    #[prost(int64, optional, tag = "6")]
    #[serde(
        rename = "maxNodes",
        alias = "max_nodes",
        with = "json::opt_int64",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_nodes: Option<i64>,
    /// `querier.v1.ProfileFormat`.
    #[prost(int32, tag = "7")]
    #[serde(with = "json::profile_format")]
    pub format: i32,
}

/// `querier.v1.SelectMergeSpanProfileResponse` (only `flamegraph` = 1 is answered).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectMergeSpanProfileResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flamegraph: Option<FlameGraph>,
}

/// `querier.v1.SelectMergeProfileRequest`; the answer is a pprof `google.v1.Profile`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectMergeProfileRequest {
    #[prost(string, tag = "1")]
    #[serde(rename = "profileTypeID", alias = "profile_typeID")]
    pub profile_type_id: String,
    #[prost(string, tag = "2")]
    #[serde(rename = "labelSelector", alias = "label_selector")]
    pub label_selector: String,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub end: i64,
    #[prost(int64, optional, tag = "5")]
    #[serde(
        rename = "maxNodes",
        alias = "max_nodes",
        with = "json::opt_int64",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_nodes: Option<i64>,
    #[prost(message, optional, tag = "6")]
    #[serde(rename = "stackTraceSelector", alias = "stack_trace_selector", skip_serializing_if = "Option::is_none")]
    pub stack_trace_selector: Option<StackTraceSelector>,
}

/// `querier.v1.SelectSeriesRequest` (`stack_trace_selector` = 8 is not read).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectSeriesRequest {
    #[prost(string, tag = "1")]
    #[serde(rename = "profileTypeID", alias = "profile_typeID")]
    pub profile_type_id: String,
    #[prost(string, tag = "2")]
    #[serde(rename = "labelSelector", alias = "label_selector")]
    pub label_selector: String,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub start: i64,
    #[prost(int64, tag = "4")]
    #[serde(with = "json::int64")]
    pub end: i64,
    #[prost(string, repeated, tag = "5")]
    #[serde(rename = "groupBy", alias = "group_by")]
    pub group_by: Vec<String>,
    /// Seconds.
    #[prost(double, tag = "6")]
    #[serde(with = "json::double")]
    pub step: f64,
    /// `types.v1.TimeSeriesAggregationType`.
    #[prost(int32, optional, tag = "7")]
    #[serde(with = "json::opt_aggregation", skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<i32>,
    #[prost(int64, optional, tag = "9")]
    #[serde(with = "json::opt_int64", skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `types.v1.ExemplarType`: accepted whatever its value; points carry no exemplars.
    #[prost(int32, tag = "10")]
    #[serde(rename = "exemplarType", alias = "exemplar_type", with = "json::exemplar_type")]
    pub exemplar_type: i32,
}

/// `querier.v1.SelectSeriesResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SelectSeriesResponse {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<Series>,
}

/// `querier.v1.DiffRequest`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct DiffRequest {
    #[prost(message, optional, tag = "1")]
    pub left: Option<SelectMergeStacktracesRequest>,
    #[prost(message, optional, tag = "2")]
    pub right: Option<SelectMergeStacktracesRequest>,
}

/// `querier.v1.DiffResponse`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct DiffResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flamegraph: Option<FlameGraphDiff>,
}

/// `querier.v1.FlameGraph`: `levels` of `[x_delta, total, self, name_index]` per node.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct FlameGraph {
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub levels: Vec<Level>,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub total: i64,
    #[prost(int64, tag = "4")]
    #[serde(rename = "maxSelf", alias = "max_self", with = "json::int64")]
    pub max_self: i64,
}

/// `querier.v1.FlameGraphDiff`: 7 values per node.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct FlameGraphDiff {
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub levels: Vec<Level>,
    #[prost(int64, tag = "3")]
    #[serde(with = "json::int64")]
    pub total: i64,
    #[prost(int64, tag = "4")]
    #[serde(rename = "maxSelf", alias = "max_self", with = "json::int64")]
    pub max_self: i64,
    #[prost(int64, tag = "5")]
    #[serde(rename = "leftTicks", with = "json::int64")]
    pub left_ticks: i64,
    #[prost(int64, tag = "6")]
    #[serde(rename = "rightTicks", with = "json::int64")]
    pub right_ticks: i64,
}

/// `querier.v1.Level` (packed, as proto3 repeated scalars are).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Level {
    #[prost(int64, repeated, tag = "1")]
    #[serde(with = "json::int64_list")]
    pub values: Vec<i64>,
}

impl From<analyzer::flame::FlameGraphLevels> for FlameGraph {
    fn from(f: analyzer::flame::FlameGraphLevels) -> FlameGraph {
        FlameGraph {
            names: f.names,
            levels: f.levels.into_iter().map(|values| Level { values }).collect(),
            total: f.total,
            max_self: f.max_self,
        }
    }
}

impl From<analyzer::flame::FlameGraphDiff> for FlameGraphDiff {
    fn from(f: analyzer::flame::FlameGraphDiff) -> FlameGraphDiff {
        FlameGraphDiff {
            names: f.names,
            levels: f.levels.into_iter().map(|values| Level { values }).collect(),
            total: f.total,
            max_self: f.max_self,
            left_ticks: f.left_ticks,
            right_ticks: f.right_ticks,
        }
    }
}

// ---- google.v1.Profile as proto3 JSON -------------------------------------------------------

/// The proto3 JSON form of a pprof profile (`google.v1.Profile`, the field names of pprof's
/// `profile.proto` in `lowerCamelCase`), for `SelectMergeProfile` answered in Connect JSON.
/// The binary form is [`analyzer::pprof::proto::Profile`] itself.
pub mod pprof_json {
    use analyzer::pprof::proto;
    use serde::Serialize;

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Profile<'a> {
        sample_type: Vec<ValueType>,
        sample: Vec<Sample<'a>>,
        location: Vec<Location>,
        function: Vec<Function>,
        string_table: &'a [String],
        #[serde(with = "super::json::int64")]
        time_nanos: i64,
        #[serde(with = "super::json::int64")]
        duration_nanos: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        period_type: Option<ValueType>,
        #[serde(with = "super::json::int64")]
        period: i64,
    }

    #[derive(Debug, Serialize)]
    struct ValueType {
        #[serde(with = "super::json::int64")]
        r#type: i64,
        #[serde(with = "super::json::int64")]
        unit: i64,
    }

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Sample<'a> {
        #[serde(serialize_with = "super::json::uint64_list")]
        location_id: &'a [u64],
        #[serde(serialize_with = "super::json::int64_slice")]
        value: &'a [i64],
    }

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Location {
        #[serde(serialize_with = "super::json::uint64")]
        id: u64,
        line: Vec<Line>,
    }

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Line {
        #[serde(serialize_with = "super::json::uint64")]
        function_id: u64,
        #[serde(with = "super::json::int64")]
        line: i64,
    }

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Function {
        #[serde(serialize_with = "super::json::uint64")]
        id: u64,
        #[serde(with = "super::json::int64")]
        name: i64,
        #[serde(with = "super::json::int64")]
        system_name: i64,
    }

    impl<'a> Profile<'a> {
        pub fn new(p: &'a proto::Profile) -> Profile<'a> {
            let vt = |v: &proto::ValueType| ValueType { r#type: v.r#type, unit: v.unit };
            Profile {
                sample_type: p.sample_type.iter().map(vt).collect(),
                sample: p.sample.iter().map(|s| Sample { location_id: &s.location_id, value: &s.value }).collect(),
                location: p
                    .location
                    .iter()
                    .map(|l| Location {
                        id: l.id,
                        line: l.line.iter().map(|x| Line { function_id: x.function_id, line: x.line }).collect(),
                    })
                    .collect(),
                function: p
                    .function
                    .iter()
                    .map(|f| Function { id: f.id, name: f.name, system_name: f.system_name })
                    .collect(),
                string_table: &p.string_table,
                time_nanos: p.time_nanos,
                duration_nanos: p.duration_nanos,
                period_type: p.period_type.as_ref().map(vt),
                period: p.period,
            }
        }
    }
}

/// serde helpers for proto3 JSON's number forms.
pub(crate) mod json {
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::{SerializeSeq, Serializer};
    use std::fmt;

    /// A JSON number or a string holding one (protojson accepts both for 64-bit integers), or
    /// `null`, which protojson reads as the field's default, 0.
    struct IntVisitor;

    impl<'de> Visitor<'de> for IntVisitor {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a 64-bit integer as a number or a string")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom(format!("{v} is out of the int64 range")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            if v.fract() == 0.0 && v.abs() < 9.2e18 {
                Ok(v as i64)
            } else {
                Err(E::custom(format!("{v} is not an integer")))
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
        fn visit_none<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::custom(format!("{:?} is not an integer", v.chars().take(40).collect::<String>())))
        }
    }

    pub mod int64 {
        use super::*;
        pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(v)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
            d.deserialize_any(IntVisitor)
        }
    }

    pub mod opt_int64 {
        use super::*;
        pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.collect_str(v),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
            struct Opt;
            impl<'de> Visitor<'de> for Opt {
                type Value = Option<i64>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a 64-bit integer, or null")
                }
                fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                    d.deserialize_any(IntVisitor).map(Some)
                }
            }
            d.deserialize_option(Opt)
        }
    }

    pub mod int64_list {
        use super::*;
        pub fn serialize<S: Serializer>(v: &[i64], s: S) -> Result<S::Ok, S::Error> {
            int64_slice(&v, s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
            struct Item(i64);
            impl<'de> serde::Deserialize<'de> for Item {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
                    d.deserialize_any(IntVisitor).map(Item)
                }
            }
            let items: Vec<Item> = serde::Deserialize::deserialize(d)?;
            Ok(items.into_iter().map(|i| i.0).collect())
        }
    }

    pub fn int64_slice<S: Serializer>(v: &&[i64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v.iter() {
            seq.serialize_element(&x.to_string())?;
        }
        seq.end()
    }

    pub fn uint64_list<S: Serializer>(v: &&[u64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v.iter() {
            seq.serialize_element(&x.to_string())?;
        }
        seq.end()
    }

    pub fn uint64<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// A double: a JSON number, or a string holding one (protojson's form for NaN and the
    /// infinities, and accepted for any value).
    pub mod double {
        use super::*;
        pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
            if v.is_finite() {
                s.serialize_f64(*v)
            } else if v.is_nan() {
                s.serialize_str("NaN")
            } else if *v > 0.0 {
                s.serialize_str("Infinity")
            } else {
                s.serialize_str("-Infinity")
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = f64;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a number")
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                    Ok(v)
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                    Ok(v as f64)
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                    Ok(v as f64)
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                    match v {
                        "NaN" => Ok(f64::NAN),
                        "Infinity" => Ok(f64::INFINITY),
                        "-Infinity" => Ok(f64::NEG_INFINITY),
                        v => v.trim().parse().map_err(|_| {
                            E::custom(format!("{:?} is not a number", v.chars().take(40).collect::<String>()))
                        }),
                    }
                }
            }
            d.deserialize_any(V)
        }
    }

    /// An enum value: its number, or one of `names`.
    fn enum_value<'de, D: Deserializer<'de>>(
        d: D,
        what: &'static str,
        names: &'static [(&'static str, i32)],
    ) -> Result<i32, D::Error> {
        struct V(&'static str, &'static [(&'static str, i32)]);
        impl Visitor<'_> for V {
            type Value = i32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {} name or number", self.0)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
                i32::try_from(v).map_err(|_| E::custom(format!("{v} is not a {}", self.0)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
                i32::try_from(v).map_err(|_| E::custom(format!("{v} is not a {}", self.0)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<i32, E> {
                self.1.iter().find(|(n, _)| *n == v).map(|&(_, i)| i).ok_or_else(|| {
                    E::custom(format!("{:?} is not a {}", v.chars().take(60).collect::<String>(), self.0))
                })
            }
        }
        d.deserialize_any(V(what, names))
    }

    pub mod profile_format {
        use super::*;
        pub fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_i32(*v)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
            enum_value(d, "ProfileFormat", crate::query::pyroscope::proto::PROFILE_FORMAT_NAMES)
        }
    }

    pub mod exemplar_type {
        use super::*;
        pub fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_i32(*v)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
            enum_value(d, "ExemplarType", crate::query::pyroscope::proto::EXEMPLAR_TYPE_NAMES)
        }
    }

    pub mod opt_aggregation {
        use super::*;
        pub fn serialize<S: Serializer>(v: &Option<i32>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_i32(*v),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
            struct Opt;
            impl<'de> Visitor<'de> for Opt {
                type Value = Option<i32>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a TimeSeriesAggregationType, or null")
                }
                fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                    Ok(None)
                }
                fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                    enum_value(d, "TimeSeriesAggregationType", crate::query::pyroscope::proto::aggregation::NAMES)
                        .map(Some)
                }
            }
            d.deserialize_option(Opt)
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Hand-encoded bytes of a `SelectMergeStacktracesRequest` as connect-go sends it: field 1
    /// (`profile_typeID`), 2, 3, 4 and the optional 5 (`max_nodes`) present even at 0.
    #[test]
    fn select_merge_stacktraces_request_field_numbers() {
        let mut bytes = vec![0x0a, 3, b'a', b':', b'b', 0x12, 2, b'{', b'}', 0x18, 10, 0x20, 20, 0x28, 0];
        let req = SelectMergeStacktracesRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(req.profile_type_id, "a:b");
        assert_eq!(req.label_selector, "{}");
        assert_eq!((req.start, req.end, req.max_nodes), (10, 20, Some(0)));
        bytes.truncate(bytes.len() - 2);
        assert_eq!(SelectMergeStacktracesRequest::decode(bytes.as_slice()).unwrap().max_nodes, None);
        let again = SelectMergeStacktracesRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        assert_eq!(again, req);
    }

    #[test]
    fn profile_type_skips_field_3_and_series_response_uses_field_2() {
        let t = ProfileType { id: "i".into(), name: "n".into(), sample_type: "s".into(), ..Default::default() };
        // 0x0a = field 1, 0x12 = field 2, 0x22 = field 4 (length-delimited).
        assert_eq!(t.encode_to_vec(), vec![0x0a, 1, b'i', 0x12, 1, b'n', 0x22, 1, b's']);
        let r = SeriesResponse { labels_set: vec![Labels::default()] };
        assert_eq!(r.encode_to_vec(), vec![0x12, 0]);
    }

    #[test]
    fn levels_are_packed_and_round_trip() {
        let f = FlameGraph {
            names: vec!["total".into(), "main".into()],
            levels: vec![Level { values: vec![0, 10, 0, 0] }, Level { values: vec![0, 10, 10, 1] }],
            total: 10,
            max_self: 10,
        };
        let bytes = f.encode_to_vec();
        assert_eq!(FlameGraph::decode(bytes.as_slice()).unwrap(), f);
        // Level {values: [0, 10, 0, 0]}: field 1, wire type 2 (packed), 4 bytes.
        assert_eq!(Level { values: vec![0, 10, 0, 0] }.encode_to_vec(), vec![0x0a, 4, 0, 10, 0, 0]);
    }

    #[test]
    fn json_names_and_int64_strings() {
        let f = FlameGraph {
            names: vec!["total".into()],
            levels: vec![Level { values: vec![0, 5, 0, 0] }],
            total: 5,
            max_self: 0,
        };
        let text = serde_json::to_string(&SelectMergeStacktracesResponse { flamegraph: Some(f) }).unwrap();
        assert_eq!(
            text,
            r#"{"flamegraph":{"names":["total"],"levels":[{"values":["0","5","0","0"]}],"total":"5","maxSelf":"0"}}"#
        );
        let t = serde_json::to_value(ProfileType { id: "x".into(), ..Default::default() }).unwrap();
        assert!(t.get("ID").is_some() && t.get("sampleType").is_some() && t.get("periodUnit").is_some(), "{t}");
        let s = serde_json::to_value(SeriesResponse::default()).unwrap();
        assert!(s.get("labelsSet").is_some(), "{s}");
        let d = serde_json::to_value(FlameGraphDiff::default()).unwrap();
        assert!(d.get("leftTicks").is_some() && d.get("rightTicks").is_some(), "{d}");
        let st = serde_json::to_value(GetProfileStatsResponse::default()).unwrap();
        assert_eq!(st["oldestProfileTime"], "0");
    }

    #[test]
    fn json_requests_read_as_protojson_writes_them() {
        let req: SelectSeriesRequest = serde_json::from_str(
            r#"{"profileTypeID":"p","labelSelector":"{}","start":"1000","end":2000,"groupBy":["service_name"],
                "step":15,"aggregation":"TIME_SERIES_AGGREGATION_TYPE_AVERAGE","limit":"3",
                "exemplarType":"EXEMPLAR_TYPE_SPAN","unknownField":true}"#,
        )
        .unwrap();
        assert_eq!((req.start, req.end, req.step, req.aggregation, req.limit), (1000, 2000, 15.0, Some(1), Some(3)));
        assert_eq!(req.exemplar_type, 3);
        assert_eq!(req.group_by, ["service_name"]);
        let snake: SelectMergeStacktracesRequest =
            serde_json::from_str(r#"{"profile_typeID":"p","label_selector":"{}","max_nodes":"16"}"#).unwrap();
        assert_eq!((snake.profile_type_id.as_str(), snake.max_nodes), ("p", Some(16)));
        assert!(serde_json::from_str::<SelectMergeStacktracesRequest>(r#"{"start":"soon"}"#).is_err());
        // protojson reads null as the default: 0 for int64, unset for an optional one.
        let nulls: SelectMergeStacktracesRequest =
            serde_json::from_str(r#"{"profileTypeID":"p","start":null,"end":"5","maxNodes":null}"#).unwrap();
        assert_eq!((nulls.start, nulls.end, nulls.max_nodes), (0, 5, None));
        assert!(serde_json::from_str::<SelectSeriesRequest>(r#"{"aggregation":"MEDIAN"}"#).is_err());
        let back: SelectSeriesRequest = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
        assert_eq!(back, req);
    }
}
