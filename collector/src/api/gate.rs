//! What `slo-gate check` reads from `/api/v1/gate/*` and the runs it records there.
//!
//! Spans come column by column ([`GateSpans`]): one entry per SERVER span of one build in each
//! column, with dictionaries for the repeated strings (names, routes, attribute sets), so a
//! million spans are tens of megabytes of numbers rather than a million JSON objects repeating
//! the same keys. Metric points ([`GateMetrics`]) and profiles ([`GateProfiles`]) come as
//! records; runs ([`Run`]) are validated before they are recorded.

use std::time::Duration;

use analyzer::compare::Verdict;
use serde::{Deserialize, Serialize};

use crate::error::QueryError;

/// `GET /api/v1/gate/spans`: the SERVER spans of one build, column by column. Every column has
/// one entry per span, in time order; `name`, `route` and `attributes` index the dictionaries.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GateSpans {
    /// Matching spans, before `limit`.
    pub total: usize,
    /// Whether `limit` cut the answer.
    pub truncated: bool,
    /// Spans per `http.route` of the build, over all matching spans.
    #[serde(default)]
    pub routes: std::collections::BTreeMap<String, u64>,
    /// Span names.
    pub names: Vec<String>,
    /// `http.route` values.
    pub route_values: Vec<String>,
    /// A resource's attributes and a span's own, merged (the span's win), as sorted pairs.
    pub attribute_sets: Vec<Vec<(String, String)>>,
    pub time_unix_nano: Vec<u64>,
    pub duration_seconds: Vec<f64>,
    /// Index into `names`.
    pub name: Vec<u32>,
    /// Index into `route_values`, when the span has a route.
    pub route: Vec<Option<u32>>,
    /// Status `ERROR` or an HTTP status of 500 and up.
    pub error: Vec<bool>,
    /// Index into `attribute_sets`.
    pub attributes: Vec<u32>,
    /// Parts that could not be read (damaged and set aside): the spans they held are missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl GateSpans {
    /// Checks that every column has one entry per span and every index names a dictionary
    /// entry, so a reader can index without checking again.
    pub fn check(&self) -> Result<(), String> {
        let n = self.time_unix_nano.len();
        let lengths =
            [self.duration_seconds.len(), self.name.len(), self.route.len(), self.error.len(), self.attributes.len()];
        if lengths.iter().any(|&len| len != n) {
            return Err(format!("its columns have different lengths ({n} times, others {lengths:?})"));
        }
        if let Some(id) = self.name.iter().find(|&&id| id as usize >= self.names.len()) {
            return Err(format!("a span names name {id} of {}", self.names.len()));
        }
        if let Some(id) = self.route.iter().flatten().find(|&&id| id as usize >= self.route_values.len()) {
            return Err(format!("a span names route {id} of {}", self.route_values.len()));
        }
        if let Some(id) = self.attributes.iter().find(|&&id| id as usize >= self.attribute_sets.len()) {
            return Err(format!("a span names attribute set {id} of {}", self.attribute_sets.len()));
        }
        Ok(())
    }
}

/// `GET /api/v1/gate/metrics`: stored metric points of one build, in time order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GateMetrics {
    pub samples: Vec<MetricPoint>,
    /// Matching points, before `limit`.
    pub total: usize,
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One stored metric point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub name: String,
    /// `gauge`, `sum`, `histogram`, `exponential_histogram`, `summary`.
    pub kind: String,
    /// OTLP aggregation temporality: 1 delta, 2 cumulative, 0 unspecified (gauges).
    pub temporality: i32,
    pub is_monotonic: bool,
    pub start_time_unix_nano: u64,
    pub time_unix_nano: u64,
    /// The point's attributes as text.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The value of a gauge or sum.
    pub value: Option<f64>,
    /// Observations of a histogram or summary.
    pub count: Option<u64>,
    /// Their sum.
    pub sum: Option<f64>,
    /// The OTLP data point in OTLP/JSON, for the kinds with more than one number.
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

/// A histogram's buckets, read from a [`MetricPoint`]'s OTLP/JSON detail.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HistogramBuckets {
    #[serde(rename = "explicitBounds", default)]
    pub bounds: Vec<f64>,
    /// OTLP/JSON writes 64-bit counts as strings; both forms are read.
    #[serde(rename = "bucketCounts", default, deserialize_with = "u64_or_string::vec")]
    pub counts: Vec<u64>,
}

impl MetricPoint {
    /// The bucket bounds and counts of a histogram point; `None` for other kinds or a detail
    /// without buckets.
    pub fn histogram(&self) -> Option<HistogramBuckets> {
        if self.kind != "histogram" {
            return None;
        }
        serde_json::from_value(self.detail.clone()?).ok()
    }
}

mod u64_or_string {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Count {
        Number(u64),
        Text(String),
    }

    pub fn vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        Vec::<Count>::deserialize(d)?
            .into_iter()
            .map(|c| match c {
                Count::Number(n) => Ok(n),
                Count::Text(t) => t.parse().map_err(serde::de::Error::custom),
            })
            .collect()
    }
}

/// `GET /api/v1/gate/profiles`: every stored profile of one type that matches, one per pushed
/// or scraped profile.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GateProfiles {
    /// The profile type asked for.
    #[serde(rename = "type")]
    pub profile_type: Option<String>,
    pub profiles: Vec<StoredProfile>,
    /// Parts that could not be read (damaged and set aside, or encrypted with a key the key
    /// file lacks): their profiles are missing from `profiles`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One stored profile: its run (the process it came from), times, sample types and samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredProfile {
    pub run: String,
    pub time_unix_nano: i64,
    pub duration_nanos: i64,
    /// SHA-256 (hex) of what the profile was built from: a pushed or scraped pprof as it
    /// arrived (gzipped if it came gzipped), so `sha256sum profile.pb.gz` checks it; for OTLP
    /// profiles, of the `Profile` message (`docs/integrity.md`). Absent for profiles stored
    /// before digests were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
    pub sample_types: Vec<SampleType>,
    pub samples: Vec<StackSample>,
}

/// A pprof `ValueType`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleType {
    #[serde(rename = "type")]
    pub kind: String,
    pub unit: String,
}

/// One sample: its stack, root last (as pprof lists locations), and one value per sample type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackSample {
    pub stack: Vec<String>,
    pub values: Vec<i64>,
}

impl StoredProfile {
    /// The profile as the analyzer reads it.
    pub fn to_profile(&self) -> analyzer::pprof::Profile {
        use analyzer::pprof::{Frame, Profile, ValueType};
        let sample_types =
            self.sample_types.iter().map(|t| ValueType { kind: t.kind.clone(), unit: t.unit.clone() }).collect();
        let stacks: Vec<(Vec<Frame>, Vec<i64>)> = self
            .samples
            .iter()
            .map(|s| {
                let frames: Vec<Frame> =
                    s.stack.iter().map(|f| Frame { function: f.as_str().into(), ..Default::default() }).collect();
                (frames, s.values.clone())
            })
            .collect();
        Profile {
            time_nanos: self.time_unix_nano,
            duration_nanos: self.duration_nanos,
            ..Profile::from_stacks(sample_types, stacks)
        }
    }

    /// The stored form of `profile` of `run`.
    pub fn from_profile(run: &str, p: &analyzer::pprof::Profile) -> StoredProfile {
        StoredProfile {
            run: run.to_string(),
            time_unix_nano: p.time_nanos,
            duration_nanos: p.duration_nanos,
            source_sha256: None,
            sample_types: p
                .sample_types
                .iter()
                .map(|t| SampleType { kind: t.kind.clone(), unit: t.unit.clone() })
                .collect(),
            samples: p
                .samples
                .iter()
                .map(|s| StackSample {
                    stack: p.stack(s).map(|f| f.function.to_string()).collect(),
                    values: s.values.clone(),
                })
                .collect(),
        }
    }
}

/// One gate run, as `slo-gate check` records it (`POST /api/v1/gate/runs`) and reads it back
/// (`GET`, in [`RunsAnswer`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    pub service: String,
    #[serde(default)]
    pub environment: Option<String>,
    pub version: String,
    pub time_unix_nano: u64,
    /// `pass`, `warn`, `fail` or `inconclusive`: this build's outcome.
    #[serde(with = "verdict_word")]
    pub verdict: Verdict,
    /// Whether the release was blocked.
    #[serde(default)]
    pub blocked: bool,
    /// Per objective: name and verdict.
    #[serde(default)]
    pub objectives: Vec<RunObjective>,
}

/// One objective's verdict in a [`Run`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunObjective {
    pub name: String,
    #[serde(with = "verdict_word")]
    pub verdict: Verdict,
}

/// The answer to `GET /api/v1/gate/runs`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunsAnswer {
    pub runs: Vec<Run>,
}

/// The answer to `POST /api/v1/gate/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub recorded: bool,
}

/// A verdict as its lowercase word (`Verdict`'s `Display` and `FromStr`).
mod verdict_word {
    use analyzer::compare::Verdict;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(verdict: &Verdict, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(verdict.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Verdict, D::Error> {
        let word = std::borrow::Cow::<str>::deserialize(d)?;
        word.parse().map_err(serde::de::Error::custom)
    }
}

/// Largest `POST /api/v1/gate/runs` body; a run of the largest contract is a few kilobytes.
pub const MAX_RUN_BYTES: usize = 64 * 1024;
/// Longest service, environment, version or objective name in a run, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Most objectives in one run.
pub const MAX_OBJECTIVES: usize = 256;
/// How far in the future a run's time may be: the recording machine's clock may be ahead.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

impl Run {
    /// Checks a run before it is recorded at `now_unix_nano`; every problem is reported.
    pub fn validate(&self, now_unix_nano: u64) -> Result<(), QueryError> {
        let mut problems = Vec::new();
        let mut name = |what: &str, value: &str, required: bool| {
            if required && value.trim().is_empty() {
                problems.push(format!("`{what}` is empty"));
            } else if value.len() > MAX_NAME_BYTES {
                problems.push(format!("`{what}` is {} bytes; at most {MAX_NAME_BYTES} are allowed", value.len()));
            }
        };
        name("service", &self.service, true);
        name("version", &self.version, true);
        name("environment", self.environment.as_deref().unwrap_or(""), false);
        for o in &self.objectives {
            name("objectives[].name", &o.name, true);
        }
        let latest = now_unix_nano.saturating_add(MAX_CLOCK_SKEW.as_nanos() as u64);
        if self.time_unix_nano == 0 {
            problems.push("`time_unix_nano` is 0".to_string());
        } else if self.time_unix_nano > latest {
            problems.push(format!(
                "`time_unix_nano` is {:.0} s in the future (at most {} s of clock difference is allowed)",
                (self.time_unix_nano - now_unix_nano) as f64 / 1e9,
                MAX_CLOCK_SKEW.as_secs()
            ));
        }
        if self.objectives.len() > MAX_OBJECTIVES {
            problems.push(format!("{} objectives; at most {MAX_OBJECTIVES} are allowed", self.objectives.len()));
        }
        if problems.is_empty() {
            return Ok(());
        }
        problems.dedup();
        Err(QueryError::BadRequest(format!("invalid gate run: {}", problems.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_000_000_000_000_000;

    fn run() -> Run {
        Run {
            service: "checkout".into(),
            environment: Some("staging".into()),
            version: "1.0.0".into(),
            time_unix_nano: NOW,
            verdict: Verdict::Pass,
            blocked: false,
            objectives: vec![RunObjective { name: "latency".into(), verdict: Verdict::Fail }],
        }
    }

    #[test]
    fn runs_round_trip_with_verdict_words() {
        let text = serde_json::to_string(&RunsAnswer { runs: vec![run()] }).unwrap();
        assert!(text.contains(r#""verdict":"pass""#) && text.contains(r#""verdict":"fail""#), "{text}");
        assert_eq!(serde_json::from_str::<RunsAnswer>(&text).unwrap().runs, vec![run()]);
        let bad = text.replace(r#""verdict":"pass""#, r#""verdict":"maybe""#);
        let err = serde_json::from_str::<RunsAnswer>(&bad).unwrap_err().to_string();
        assert!(err.contains("\"maybe\" is not a verdict"), "{err}");
    }

    // issue 11 #8: a run from the future, with empty or oversized names or too many objectives
    // is refused, with every problem named.
    #[test]
    fn runs_are_validated() {
        assert!(run().validate(NOW).is_ok());
        let mut ahead = run();
        ahead.time_unix_nano = NOW + MAX_CLOCK_SKEW.as_nanos() as u64;
        assert!(ahead.validate(NOW).is_ok(), "a clock a little ahead is allowed for");
        ahead.time_unix_nano += 1_000_000_000;
        assert!(ahead.validate(NOW).unwrap_err().to_string().contains("in the future"));
        let mut bad = run();
        bad.service = " ".into();
        bad.version = "v".repeat(MAX_NAME_BYTES + 1);
        bad.objectives = vec![RunObjective { name: String::new(), verdict: Verdict::Pass }; MAX_OBJECTIVES + 1];
        let err = bad.validate(NOW).unwrap_err().to_string();
        for needle in ["`service` is empty", "`version` is 257 bytes", "`objectives[].name` is empty", "257 objectives"]
        {
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn spans_round_trip_and_are_checked() {
        let spans = GateSpans {
            total: 3,
            truncated: true,
            routes: [("/pay".to_string(), 3)].into(),
            names: vec!["GET /pay".into()],
            route_values: vec!["/pay".into()],
            attribute_sets: vec![vec![("k8s.pod".into(), "a".into())]],
            time_unix_nano: vec![1, 2],
            duration_seconds: vec![0.5, 0.25],
            name: vec![0, 0],
            route: vec![Some(0), None],
            error: vec![false, true],
            attributes: vec![0, 0],
            warnings: vec!["part 7 was damaged".into()],
        };
        let back: GateSpans = serde_json::from_str(&serde_json::to_string(&spans).unwrap()).unwrap();
        assert_eq!(back, spans);
        assert_eq!(back.check(), Ok(()));
        let mut bad = spans.clone();
        bad.route[1] = Some(4);
        assert_eq!(bad.check(), Err("a span names route 4 of 1".into()));
        bad.error.pop();
        assert!(bad.check().unwrap_err().contains("different lengths"));
    }

    #[test]
    fn metric_points_round_trip_and_histograms_read_string_counts() {
        let point = MetricPoint {
            name: "http.server.duration".into(),
            kind: "histogram".into(),
            temporality: 2,
            is_monotonic: false,
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            labels: [("route".to_string(), "/pay".to_string())].into(),
            value: None,
            count: Some(3),
            sum: Some(1.5),
            detail: Some(serde_json::json!({ "explicitBounds": [0.1, 1.0], "bucketCounts": ["1", 2, "0"] })),
        };
        let answer = GateMetrics { samples: vec![point.clone()], total: 1, truncated: false, warnings: vec![] };
        let back: GateMetrics = serde_json::from_str(&serde_json::to_string(&answer).unwrap()).unwrap();
        assert_eq!(back, answer);
        assert_eq!(point.histogram(), Some(HistogramBuckets { bounds: vec![0.1, 1.0], counts: vec![1, 2, 0] }));
        assert_eq!(MetricPoint { kind: "gauge".into(), ..point }.histogram(), None);
    }

    #[test]
    fn profiles_round_trip_into_the_analyzer_profile() {
        use analyzer::pprof::{Frame, Profile, ValueType};
        let frames =
            |names: &[&str]| names.iter().map(|n| Frame { function: (*n).into(), ..Default::default() }).collect();
        let profile = Profile {
            time_nanos: 5,
            duration_nanos: 10_000_000_000,
            ..Profile::from_stacks(
                vec![ValueType { kind: "cpu".into(), unit: "nanoseconds".into() }],
                vec![(frames(&["main.leaf", "main.main"]), vec![7]), (frames(&["main.main"]), vec![3])],
            )
        };
        let stored =
            StoredProfile { source_sha256: Some("5e".repeat(32)), ..StoredProfile::from_profile("pod-a", &profile) };
        assert_eq!(stored.samples[0].stack, ["main.leaf", "main.main"]);
        let answer = GateProfiles {
            profile_type: Some("process_cpu:cpu:nanoseconds:cpu:nanoseconds".into()),
            profiles: vec![stored],
            warnings: vec!["part 3 was damaged".into()],
        };
        let text = serde_json::to_string(&answer).unwrap();
        assert!(text.starts_with(r#"{"type":"process_cpu"#), "{text}");
        assert!(text.contains(&format!(r#""source_sha256":"{}""#, "5e".repeat(32))), "{text}");
        let back: GateProfiles = serde_json::from_str(&text).unwrap();
        assert_eq!(back, answer);
        let again = back.profiles[0].to_profile();
        assert_eq!((again.time_nanos, again.duration_nanos, again.samples.len()), (5, 10_000_000_000, 2));
        assert_eq!(
            again.stack(&again.samples[0]).map(|f| f.function.to_string()).collect::<Vec<_>>(),
            ["main.leaf", "main.main"]
        );
    }
}
