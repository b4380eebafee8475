//! Answers of `query::flamegraph`: the profile types a tenant has and the comparison of two
//! builds' profiles (`/api/v1/flamegraph/diff?format=json`).

use analyzer::flame::{AllocationGrowth, Regression, Share};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/profile-types`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileTypes {
    pub tenant: String,
    pub profile_types: Vec<ProfileType>,
}

/// One profile type (`name:sample_type:sample_unit:period_type:period_unit`) and the services
/// that have profiles of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileType {
    pub id: String,
    pub name: String,
    pub sample_type: String,
    pub sample_unit: String,
    pub period_type: String,
    pub period_unit: String,
    pub services: Vec<String>,
}

/// The JSON form of `GET /api/v1/flamegraph/diff`: what was compared, how, what grew and why.
/// The answer carries the differential flame graph as its last member, `flamegraph` (Grafana's
/// nested tree, written as text by the handler because it nests once per frame); readers that
/// do not need it leave it unread.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FlameDiff {
    /// The share functions were judged on.
    pub metric: Share,
    pub min_change_pp: f64,
    pub min_confidence: f64,
    /// Grown functions, most significant first.
    pub regressions: Vec<Regression>,
    pub baseline_profiles: usize,
    pub candidate_profiles: usize,
    pub baseline_runs: usize,
    pub candidate_runs: usize,
    /// Caveats of the comparison.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Summed sample values of each side's merged profile.
    pub baseline_total: i64,
    pub candidate_total: i64,
    // What the comparison found: present when both sides had profiles. (Members of the
    // answer rather than a nested object, and not `#[serde(flatten)]`, which would buffer the
    // deep `flamegraph` member and hit the JSON nesting limit.)
    /// `share`, `rate` or `per_unit` (ADR 0008).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<String>,
    /// The unit of work (`request`, a counter's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Why the normalization was chosen, and what it could not do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Whether the builds' loads differ by more than the tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loads_differ: Option<bool>,
    /// How the loads compared, when they could be measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadComparison>,
    /// Work per second per process, per side, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_per_second: Option<Sides>,
    /// The language runtime's self CPU on both sides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeShare>,
    /// Allocation growth the runtime's CPU growth is charged to (CPU profiles only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<AllocationGrowth>,
    /// The comparison in sentences (`analyzer::flame::explain`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explanation: Vec<String>,
}

/// The builds' loads (`analyzer::flame::Load`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadComparison {
    /// `work` or `cpu`.
    pub measured_from: String,
    pub baseline_per_second: Option<f64>,
    pub candidate_per_second: Option<f64>,
    /// Candidate load over baseline load.
    pub ratio: f64,
    /// Whether the loads are alike enough for CPU per second.
    pub comparable: bool,
}

/// One number per side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sides {
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
}

/// The runtime's summed self value on both sides (`analyzer::flame::RuntimeChange`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeShare {
    pub baseline_pct: f64,
    pub candidate_pct: f64,
    pub change_pp: f64,
    /// Probability (0..1) that the runtime's functions together grew, from one test of their
    /// summed self value; `None` when it could not be tested.
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Whether the runtime's growth is reported (a line of `explanation`).
    #[serde(default)]
    pub reported: bool,
    /// Its largest contributors, largest first.
    pub top: Vec<FunctionChange>,
}

/// A function's change, in percentage points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionChange {
    pub function: String,
    pub change_pp: f64,
}

#[cfg(test)]
mod tests {
    use analyzer::flame::{ChangeKind, ShareChange};

    use super::*;

    fn diff() -> FlameDiff {
        let share = ShareChange {
            baseline_pct: 1.0,
            candidate_pct: 4.0,
            change_pp: 3.0,
            change_pct: Some(300.0),
            z: 5.0,
            degrees_of_freedom: f64::INFINITY,
            noise_inflation: 1.2,
            confidence: 0.9999,
        };
        FlameDiff {
            metric: Share::Cumulative,
            min_change_pp: 1.0,
            min_confidence: 0.95,
            regressions: vec![Regression {
                function: "main.encode".into(),
                self_share: share.clone(),
                total_share: ShareChange { degrees_of_freedom: 4.0, ..share },
                hottest_path: vec!["main.main".into(), "main.encode".into()],
                confidence: 0.999,
                kind: ChangeKind::NewWork,
            }],
            baseline_profiles: 4,
            candidate_profiles: 5,
            baseline_runs: 2,
            candidate_runs: 2,
            warnings: vec!["few runs".into()],
            baseline_total: 100,
            candidate_total: 130,
            normalization: None,
            unit: None,
            notes: vec![],
            loads_differ: None,
            load: None,
            work_per_second: None,
            runtime: None,
            allocation: None,
            explanation: vec![],
        }
    }

    #[test]
    fn diffs_round_trip_with_and_without_a_comparison() {
        let plain = diff();
        let text = serde_json::to_string(&plain).unwrap();
        assert!(text.contains(r#""metric":"total""#) && !text.contains("normalization"), "{text}");
        assert_eq!(serde_json::from_str::<FlameDiff>(&text).unwrap(), plain);

        let full = FlameDiff {
            normalization: Some("per_unit".into()),
            unit: Some("request".into()),
            notes: vec!["CPU per request".into()],
            loads_differ: Some(true),
            load: Some(LoadComparison {
                measured_from: "work".into(),
                baseline_per_second: Some(10.0),
                candidate_per_second: Some(20.0),
                ratio: 2.0,
                comparable: false,
            }),
            work_per_second: Some(Sides { baseline: Some(10.0), candidate: None }),
            runtime: Some(RuntimeShare {
                baseline_pct: 5.0,
                candidate_pct: 9.0,
                change_pp: 4.0,
                confidence: Some(0.999),
                reported: true,
                top: vec![FunctionChange { function: "runtime.mallocgc".into(), change_pp: 2.5 }],
            }),
            allocation: Some(AllocationGrowth { notes: vec!["no allocation profiles".into()], ..Default::default() }),
            explanation: vec!["main.encode is new work".into()],
            ..diff()
        };
        let mut text = serde_json::to_string(&full).unwrap();
        assert!(
            text.contains(r#""normalization":"per_unit""#) && text.contains(r#""degrees_of_freedom":null"#),
            "{text}"
        );
        // The handler appends the flame graph as the last member; readers skip it, however
        // deep it nests.
        text.pop();
        text.push_str(r#","flamegraph":"#);
        text.push_str(&"[".repeat(10_000));
        text.push_str(&"]".repeat(10_000));
        text.push('}');
        assert_eq!(serde_json::from_str::<FlameDiff>(&text).unwrap(), full);
    }

    #[test]
    fn profile_types_round_trip() {
        let answer = ProfileTypes {
            tenant: "anonymous".into(),
            profile_types: vec![ProfileType {
                id: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
                name: "process_cpu".into(),
                sample_type: "cpu".into(),
                sample_unit: "nanoseconds".into(),
                period_type: "cpu".into(),
                period_unit: "nanoseconds".into(),
                services: vec!["checkout".into()],
            }],
        };
        let text = serde_json::to_string(&answer).unwrap();
        assert_eq!(serde_json::from_str::<ProfileTypes>(&text).unwrap(), answer);
    }
}
