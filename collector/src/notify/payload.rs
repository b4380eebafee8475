//! The JSON a webhook receives: Alertmanager's webhook payload, or the body of Alertmanager's
//! `POST /api/v2/alerts`.
//!
//! Both are Alertmanager's formats, field for field, so tools written for Alertmanager read
//! slo-gate's notifications unchanged:
//!
//! * the webhook payload is what Alertmanager sends to a `webhook_config` receiver, documented
//!   at <https://prometheus.io/docs/alerting/latest/configuration/#webhook_config> (version
//!   `"4"`: `version`, `groupKey`, `truncatedAlerts`, `status`, `receiver`, `groupLabels`,
//!   `commonLabels`, `commonAnnotations`, `externalURL`, and `alerts[]` of `status`, `labels`,
//!   `annotations`, `startsAt`, `endsAt`, `generatorURL`, `fingerprint`);
//! * a postable alert is one element of the array `POST /api/v2/alerts` takes, documented at
//!   <https://prometheus.io/docs/alerting/latest/clients/> (`labels`, `annotations`, optional
//!   `startsAt`, `endsAt`, `generatorURL`).
//!
//! Times are RFC 3339 in UTC with the fraction Go's `time.RFC3339Nano` would print (none for a
//! whole second, else milliseconds without trailing zeros); a firing alert's unknown end is
//! Go's zero time, `0001-01-01T00:00:00Z`, as Alertmanager writes it.
//!
//! The fingerprint is Alertmanager's: `model.LabelSet.Fingerprint()` of `prometheus/common`,
//! FNV-1a 64 over the label names in byte order, each name and each value followed by the
//! byte `0xff` (which never occurs in UTF-8), printed as 16 lowercase hex digits. It depends on
//! the labels only, so an alert keeps its fingerprint from firing to resolved.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{AlertStatus, Notification};

/// Go's zero `time.Time` as JSON: Alertmanager's `endsAt` of a firing alert with no known end.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The webhook payload's protocol version.
pub const WEBHOOK_VERSION: &str = "4";

/// Alertmanager's webhook payload. Field order is Alertmanager's (its `template.Data` first,
/// then `version`, `groupKey`, `truncatedAlerts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage {
    /// The webhook's configured `name`.
    pub receiver: String,
    /// `firing` when any alert fires, else `resolved` (here: the one alert's status).
    pub status: AlertStatus,
    pub alerts: Vec<WebhookAlert>,
    /// The labels the alerts are grouped by: `alertname` and `tenant`.
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert has (here: all labels of the one alert).
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    /// A link back to the sender (the collector's API), empty when not configured.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub version: String,
    /// Identifies the group: `{}:` and the group labels as Prometheus prints a label set.
    pub group_key: String,
    /// Alerts left out of the payload; slo-gate sends one alert per payload, so always 0.
    pub truncated_alerts: u64,
}

/// One alert of a [`WebhookMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    /// When the alert resolved; [`ZERO_TIME`] while it fires with no known end.
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// See [`fingerprint`].
    pub fingerprint: String,
}

/// One element of the array Alertmanager's `POST /api/v2/alerts` takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// Absent while the alert fires with no known end (Alertmanager then keeps it active for
    /// its `resolve_timeout` after the last time it was sent); the resolution time when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    #[serde(default, rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// Prometheus's fingerprint of a label set (see the module documentation).
pub fn fingerprint(labels: &BTreeMap<String, String>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    // A BTreeMap iterates its keys in byte order, the order Go's sort.Strings gives.
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    hash
}

/// [`fingerprint`] as Alertmanager prints it: 16 lowercase hex digits.
pub fn fingerprint_hex(labels: &BTreeMap<String, String>) -> String {
    format!("{:016x}", fingerprint(labels))
}

/// A Unix time in milliseconds as RFC 3339 in UTC (`2024-05-01T12:00:00.25Z`), or `None` when
/// it is outside the years 1 to 9999 that RFC 3339 can write.
pub fn rfc3339_millis(ms: i64) -> Option<String> {
    // jiff prints the shortest fraction that keeps the value, as Go's RFC3339Nano does.
    if ms < FIRST_SECOND_OF_YEAR_1 * 1000 {
        return None;
    }
    jiff::Timestamp::from_millisecond(ms).ok().map(|t| t.to_string())
}

/// 0001-01-01T00:00:00Z in Unix seconds: the earliest time RFC 3339's four-digit year writes.
const FIRST_SECOND_OF_YEAR_1: i64 = -62_135_596_800;

/// A label set as Prometheus prints one (`{alertname="X", tenant="t"}`): names in order,
/// values quoted with `\\`, `"` and control characters escaped.
pub fn label_set_text(labels: &BTreeMap<String, String>) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// The labels a notification is grouped by, when it has them.
pub const GROUP_BY: [&str; 2] = ["alertname", "tenant"];

/// The webhook payload carrying `notification` to the webhook named `receiver`.
///
/// The notification must have been validated (`Notification::validate`): its times are then
/// writable, and a resolved one has an end.
pub fn webhook_message(notification: &Notification, receiver: &str, external_url: &str) -> WebhookMessage {
    let group_labels: BTreeMap<String, String> = notification
        .labels
        .iter()
        .filter(|(k, _)| GROUP_BY.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let alert = WebhookAlert {
        status: notification.status,
        labels: notification.labels.clone(),
        annotations: notification.annotations.clone(),
        starts_at: rfc3339_millis(notification.starts_at_ms).unwrap_or_else(|| ZERO_TIME.to_string()),
        ends_at: notification.ends_at_ms.and_then(rfc3339_millis).unwrap_or_else(|| ZERO_TIME.to_string()),
        generator_url: notification.generator_url.clone(),
        fingerprint: fingerprint_hex(&notification.labels),
    };
    WebhookMessage {
        receiver: receiver.to_string(),
        status: notification.status,
        alerts: vec![alert],
        group_key: format!("{{}}:{}", label_set_text(&group_labels)),
        group_labels,
        common_labels: notification.labels.clone(),
        common_annotations: notification.annotations.clone(),
        external_url: external_url.to_string(),
        version: WEBHOOK_VERSION.to_string(),
        truncated_alerts: 0,
    }
}

/// The `POST /api/v2/alerts` body carrying `notification`: an array of one alert.
pub fn postable_alerts(notification: &Notification) -> Vec<PostableAlert> {
    vec![PostableAlert {
        labels: notification.labels.clone(),
        annotations: notification.annotations.clone(),
        starts_at: rfc3339_millis(notification.starts_at_ms),
        // A resolved alert's end resolves it in Alertmanager; a firing one with a known end
        // is sent with it, and Alertmanager resolves it then.
        ends_at: notification.ends_at_ms.and_then(rfc3339_millis),
        generator_url: Some(notification.generator_url.clone()).filter(|u| !u.is_empty()),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn fingerprints_match_prometheus_common() {
        // The expected values are the test vectors of prometheus/common's model/signature_test.go
        // (TestMetricToFingerprint, BenchmarkMetricToFingerprintSingle/Triple), which
        // Alertmanager's alert fingerprints are computed by.
        assert_eq!(fingerprint(&BTreeMap::new()), 14_695_981_039_346_656_037);
        assert_eq!(
            fingerprint(&labels(&[("name", "garland, briggs"), ("fear", "love is not enough")])),
            5_799_056_148_416_392_346
        );
        assert_eq!(fingerprint(&labels(&[("first-label", "first-label-value")])), 5_146_282_821_936_882_169);
        assert_eq!(
            fingerprint(&labels(&[
                ("first-label", "first-label-value"),
                ("second-label", "second-label-value"),
                ("third-label", "third-label-value")
            ])),
            13_843_036_195_897_128_121
        );
        assert_eq!(fingerprint_hex(&BTreeMap::new()), "cbf29ce484222325");
        // The separator keeps a shifted boundary between name and value from colliding.
        assert_ne!(fingerprint(&labels(&[("ab", "c")])), fingerprint(&labels(&[("a", "bc")])));
    }

    #[test]
    fn times_print_as_go_prints_rfc3339_nano() {
        assert_eq!(rfc3339_millis(1_675_688_925_828).as_deref(), Some("2023-02-06T13:08:45.828Z"));
        assert_eq!(rfc3339_millis(1_675_688_925_000).as_deref(), Some("2023-02-06T13:08:45Z"));
        assert_eq!(rfc3339_millis(1_675_688_925_250).as_deref(), Some("2023-02-06T13:08:45.25Z"));
        assert_eq!(rfc3339_millis(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(rfc3339_millis(FIRST_SECOND_OF_YEAR_1 * 1000).as_deref(), Some(ZERO_TIME));
        assert_eq!(rfc3339_millis(FIRST_SECOND_OF_YEAR_1 * 1000 - 1), None);
        assert_eq!(rfc3339_millis(i64::MAX), None);
    }

    #[test]
    fn label_sets_print_as_prometheus_prints_them() {
        assert_eq!(label_set_text(&BTreeMap::new()), "{}");
        assert_eq!(
            label_set_text(&labels(&[("tenant", "a\"b"), ("alertname", "Slow\\Route\n")])),
            "{alertname=\"Slow\\\\Route\\n\", tenant=\"a\\\"b\"}"
        );
    }
}
