//! `GET /api/v1/anomalies`: the anomalies the continuous analysis found
//! ([`crate::analysis`]), one record per incident.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Whether an incident is still going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnomalyStatus {
    Open,
    Resolved,
}

/// Which side of the band an incident's peak lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Above,
    Below,
}

/// One attribute value over-represented among the anomalous window's requests (the gate's
/// BubbleUp correlation), e.g. 78% of slow spans have `host.name=node-3` against 2% of the
/// others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub key: String,
    pub value: String,
    /// Share of the anomalous requests that have the value, in [0, 1].
    pub selection_share: f64,
    /// Share of the other requests that have it.
    pub baseline_share: f64,
    /// Holm-adjusted p-value of the over-representation.
    pub p_value: f64,
    /// The sentence a person reads.
    pub sentence: String,
}

/// One incident on one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Stable for the incident: the same id in the `open` and `resolved` records and in the
    /// webhook notifications (their `fingerprint` label set includes it).
    pub id: String,
    /// The series: `sli` (`request_rate`, `error_ratio`, `latency_p95`) with `service_name`,
    /// `http_route`, `service_version` for span-metric SLIs; a watched query's `watch` name
    /// with the result's labels for metric selectors.
    pub series: BTreeMap<String, String>,
    /// `service_name` of the series, when it has one (what `?service=` filters on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub status: AnomalyStatus,
    /// The first anomalous point, unix milliseconds.
    pub start_ms: i64,
    /// The first normal point after the incident (unix milliseconds), once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
    /// The highest anomaly score so far (> 1 is outside the band).
    pub peak_score: f64,
    pub peak_ms: i64,
    pub side: Side,
    /// The baseline's expected value at the peak.
    pub expected: f64,
    /// The observed value at the peak.
    pub actual: f64,
    /// Attribute values over-represented among the anomalous requests, strongest first
    /// (empty when the series has no spans behind it or nothing stands out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leads: Vec<Lead>,
}

/// The answer of `GET /api/v1/anomalies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomaliesAnswer {
    /// Newest start first.
    pub anomalies: Vec<Anomaly>,
    /// More matched than `limit`.
    #[serde(default)]
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reads_back() {
        let answer = AnomaliesAnswer {
            anomalies: vec![Anomaly {
                id: "a1".into(),
                series: BTreeMap::from([("sli".into(), "latency_p95".into())]),
                service: Some("checkout".into()),
                status: AnomalyStatus::Resolved,
                start_ms: 1,
                end_ms: Some(2),
                peak_score: 4.5,
                peak_ms: 1,
                side: Side::Above,
                expected: 0.1,
                actual: 0.9,
                leads: vec![Lead {
                    key: "host.name".into(),
                    value: "node-3".into(),
                    selection_share: 0.78,
                    baseline_share: 0.02,
                    p_value: 1e-9,
                    sentence: "78% of slow spans have host.name=node-3, against 2% of the others".into(),
                }],
            }],
            truncated: false,
            warnings: vec![],
        };
        let text = serde_json::to_string(&answer).unwrap();
        assert!(text.contains(r#""status":"resolved""#), "{text}");
        assert_eq!(serde_json::from_str::<AnomaliesAnswer>(&text).unwrap(), answer);
    }
}
