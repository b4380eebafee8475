//! Span profiles (traces → profiles): `SelectMergeSpanProfile`, the flame graph of the CPU that
//! the selected spans burned.
//!
//! Where a sample's span comes from: Go programs label their samples with pprof labels
//! `span_id` (Grafana's otel-profiling-go; the legacy name `profile_id` means the same, as
//! Pyroscope renames it), which pushes and scrapes store as sample attributes; OTLP profiles
//! link samples to spans (`Sample.link_index` into the dictionary's links), which rows keep as
//! their `span_id`, and may also carry a `span_id` sample attribute. A sample matches when any of
//! these names a selected span. Span ids are 16 hexadecimal digits, compared case-insensitively.

use std::collections::HashSet;

use super::proto::{SelectMergeSpanProfileRequest, SelectMergeSpanProfileResponse};
use super::select::{RowLabels, Select, flame_graph};
use super::{Ctx, PyroscopeError, max_nodes};

/// Most span ids one request may select.
pub const MAX_SPANS: usize = 10_000;

/// The selected span ids, as 8-byte values.
#[derive(Debug, Default)]
pub struct SpanSet {
    ids: HashSet<[u8; 8]>,
}

/// A 16-hex-digit span id.
fn parse_id(text: &str) -> Option<[u8; 8]> {
    let text = text.trim();
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let n = u64::from_str_radix(text, 16).ok()?;
    Some(n.to_be_bytes())
}

impl SpanSet {
    pub fn parse(ids: &[String]) -> Result<SpanSet, PyroscopeError> {
        if ids.len() > MAX_SPANS {
            return Err(PyroscopeError::InvalidArgument(format!(
                "span_selector has {} span ids; at most {MAX_SPANS} are accepted",
                ids.len()
            )));
        }
        let mut set = SpanSet::default();
        for id in ids {
            let parsed = parse_id(id).ok_or_else(|| {
                PyroscopeError::InvalidArgument(format!(
                    "span_selector: {:?} is not a span id of 16 hexadecimal digits",
                    id.chars().take(40).collect::<String>()
                ))
            })?;
            set.ids.insert(parsed);
        }
        Ok(set)
    }

    /// Whether a sample labelled `labelled` (its `span_id`/`profile_id` label) or linked to
    /// `linked` (its OTLP link) belongs to a selected span.
    pub fn holds(&self, labelled: Option<&str>, linked: Option<[u8; 8]>) -> bool {
        labelled.and_then(parse_id).is_some_and(|id| self.ids.contains(&id))
            || linked.is_some_and(|id| self.ids.contains(&id))
    }
}

/// The span label of a sample: `span_id`, else the legacy `profile_id`.
pub fn label_span(labels: &RowLabels<'_>) -> Option<Box<str>> {
    labels.get("span_id").or_else(|| labels.get("profile_id")).filter(|s| !s.is_empty()).map(Box::from)
}

/// `SelectMergeSpanProfile`: the merged flame graph of the samples of the selected spans. An
/// empty selection answers an empty flame graph.
pub fn merge_span_profile(
    ctx: &mut Ctx,
    req: SelectMergeSpanProfileRequest,
) -> Result<SelectMergeSpanProfileResponse, PyroscopeError> {
    if !matches!(req.format, 0 | 1) {
        return Err(PyroscopeError::InvalidArgument(format!(
            "format {} is not served; only the flame graph (PROFILE_FORMAT_FLAMEGRAPH) is",
            req.format
        )));
    }
    let nodes = max_nodes("max_nodes", req.max_nodes)?;
    let select = Select::new(&req.profile_type_id, &req.label_selector, req.start, req.end)?;
    let spans = SpanSet::parse(&req.span_selector)?;
    let folded = if spans.ids.is_empty() { analyzer::flame::Folded::new() } else { select.fold(ctx, Some(&spans))? };
    Ok(SelectMergeSpanProfileResponse { flamegraph: Some(flame_graph(&folded, nodes)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_ids_are_16_hex_digits() {
        let set = SpanSet::parse(&["00f067aa0ba902b7".into(), "ABCDEF0123456789".into()]).unwrap();
        assert!(set.holds(Some("00F067AA0BA902B7"), None));
        assert!(set.holds(None, Some([0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89])));
        assert!(!set.holds(Some("1111111111111111"), None));
        assert!(!set.holds(Some("not-a-span"), None));
        for bad in ["", "123", "00f067aa0ba902b7aa", "zzzzzzzzzzzzzzzz", "+0f067aa0ba902b7"] {
            assert!(SpanSet::parse(&[bad.to_string()]).is_err(), "{bad:?}");
        }
    }

    /// The span of a sample survives ingest on both paths: a pprof label (`span_id`, or the
    /// legacy `profile_id`), as pushes and scrapes convert them, and an OTLP sample's link.
    #[test]
    fn span_ids_survive_ingest_from_pprof_labels_and_otlp_links() {
        use analyzer::pprof::{Frame, Profile, ValueType};
        use opentelemetry_proto::tonic::profiles::v1development::Link;

        use crate::model::pprof::{Fallback, SeriesLabels, to_otlp};
        use crate::model::{attrs, profile::rows_from_request};
        use crate::query::profiles::type_id;

        let frame = |name: &str| vec![Frame { function: name.into(), ..Default::default() }];
        let cpu = ValueType { kind: "cpu".into(), unit: "nanoseconds".into() };
        let mut profile = Profile::from_stacks(
            vec![cpu],
            [(frame("main.slow"), vec![10]), (frame("main.fast"), vec![5]), (frame("main.linked"), vec![7])],
        );
        profile.samples[0].labels.push(("span_id".into(), "00f067aa0ba902b7".into()));
        profile.samples[1].labels.push(("profile_id".into(), "1111111111111111".into()));
        let mut request = to_otlp(&profile, &SeriesLabels::new(Some("svc"), []), Fallback::default(), b"k");
        let dictionary = request.dictionary.as_mut().unwrap();
        dictionary.link_table.push(Link { trace_id: vec![7; 16], span_id: vec![0x22; 8] });
        let link_index = (dictionary.link_table.len() - 1) as i32;
        let samples = &mut request.resource_profiles[0].scope_profiles[0].profiles[0].samples;
        let linked = samples.iter_mut().find(|s| s.attribute_indices.is_empty()).unwrap();
        linked.link_index = link_index;
        let rejected = crate::receive::validate::profiles(&mut request, &crate::config::Limits::default());
        assert_eq!(rejected.items, 0, "{}", rejected.message());

        let rows = rows_from_request(request);
        let selected = |ids: &[&str]| -> Vec<String> {
            let spans = SpanSet::parse(&ids.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
            let mut out: Vec<String> = rows
                .iter()
                .filter(|row| {
                    let attributes = attrs::decode_lossy(&row.attributes);
                    let id = type_id(row, &attributes);
                    let id_text = id.to_string();
                    let labels = RowLabels { row, attributes: &attributes, id: &id, id_text: &id_text };
                    spans.holds(label_span(&labels).as_deref(), row.span_id)
                })
                .map(|row| row.stack.to_string())
                .collect();
            out.sort();
            out
        };
        assert_eq!(selected(&["00f067aa0ba902b7"]), [r#"[{"function":"main.slow"}]"#]);
        assert_eq!(selected(&["1111111111111111"]), [r#"[{"function":"main.fast"}]"#]);
        assert_eq!(selected(&["2222222222222222"]), [r#"[{"function":"main.linked"}]"#]);
        assert!(selected(&["3333333333333333"]).is_empty());
    }
}
