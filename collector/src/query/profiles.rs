//! Stored profile rows, read for every profile API (ours, the gate's, leaks, Pyroscope's).
//!
//! Design: stored profile rows carry one sample value each with its resolved stack (innermost
//! first), so a flame graph needs no pprof decoding: matching rows are folded straight into
//! [`analyzer::flame::Folded`] (root-first function names, summed values). Comparisons need the
//! individual profiles of each side (their significance tests use the spread between profiles),
//! so rows can also be grouped by `profile_id` back into one [`analyzer::pprof::Profile`] per
//! pushed or scraped profile (`profiles`). Each distinct stored stack is decoded once and
//! shared by every row that has it.
//!
//! The profile name is the `__name__` attribute Pyroscope pushes carry; for profiles without it
//! (OTLP pushes, scrapes) it is derived from the sample type as `analyzer::pprof::profile_name`
//! does. Selectors ([`params::Selector`]) read `service_name` and `service_version` from the
//! resource, `__profile_type__` and `__name__` from the type, every other label from the
//! sample's and profile's attributes. Every read is scoped to one tenant.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use analyzer::flame::Folded;
use analyzer::pprof::ProfileTypeId;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use serde::Deserialize;

use super::ApiState;
use super::params::{self, Selector};
use crate::error::QueryError;
use crate::model::{ProfileRow, Rows, attrs};
use crate::signal::Signal;
use crate::tenant::Tenant;

/// The attribute Pyroscope pushes name the profile with.
pub(crate) const NAME_LABEL: &str = "__name__";

/// The label Pyroscope's selectors name the profile type with.
pub(crate) const PROFILE_TYPE_LABEL: &str = "__profile_type__";

/// Scans the tenant's profile rows, calling `f` on each.
pub(crate) fn scan_profiles(
    state: &ApiState,
    tenant: &Tenant,
    f: impl FnMut(&ProfileRow),
) -> Result<crate::store::ScanReport, QueryError> {
    scan_profiles_in(state, tenant, None, None, f)
}

/// [`scan_profiles`] of the chunks and parts that may hold rows in `[from, to]` (the rows
/// outside are still handed to `f`, which filters them).
pub(crate) fn scan_profiles_in(
    state: &ApiState,
    tenant: &Tenant,
    from: Option<u64>,
    to: Option<u64>,
    mut f: impl FnMut(&ProfileRow),
) -> Result<crate::store::ScanReport, QueryError> {
    let mut snapshot = state.store.snapshot(tenant, Signal::Profiles);
    super::prune_snapshot(&mut snapshot, from, to, None);
    state
        .store
        .scan(&snapshot, |rows| {
            if let Rows::Profiles(rows) = rows {
                rows.iter().for_each(&mut f);
            }
        })
        .map_err(QueryError::from)
}

/// Pyroscope's profile name for a sample type, when the profile does not carry `__name__`.
fn derived_name(sample_type: &str) -> String {
    match sample_type {
        "cpu" => "process_cpu".to_string(),
        t if t.starts_with("alloc_") || t.starts_with("inuse_") => "memory".to_string(),
        "goroutine" | "goroutines" => "goroutine".to_string(),
        t => t.to_string(),
    }
}

/// The profile type id of a row and its decoded attributes.
pub(crate) fn type_id(row: &ProfileRow, attributes: &[KeyValue]) -> ProfileTypeId {
    let name = attrs::find(attributes, NAME_LABEL)
        .and_then(attrs::as_text)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| derived_name(&row.profile.sample_type));
    ProfileTypeId {
        name,
        sample_type: row.profile.sample_type.to_string(),
        sample_unit: row.profile.sample_unit.to_string(),
        period_type: row.profile.period_type.to_string(),
        period_unit: row.profile.period_unit.to_string(),
    }
}

/// Labels that name the run (process) a profile came from, in the order they are tried: the
/// scrape target (`instance`, which scraping adds), OpenTelemetry's `service.instance.id`, then
/// what Pyroscope agents commonly tag. Profiles with none of them form one run.
pub(crate) const RUN_LABELS: [&str; 5] = ["instance", "service.instance.id", "service_instance_id", "pod", "hostname"];

/// What a scan keeps of a matching row.
pub(crate) struct Matched {
    pub(crate) profile_id: [u8; 16],
    pub(crate) value: i64,
    /// The profile's sampling period, in the sample type's unit when [`Filter::kind`] has
    /// `sample_unit == period_unit` (CPU time), else 0.
    pub(crate) period: i64,
    /// Function names, innermost first, shared by every row with the same stack.
    pub(crate) stack: SharedStack,
    /// The run (process) the profile came from: the value of the run label, or empty.
    pub(crate) run: Arc<str>,
    /// When the profile was taken.
    pub(crate) profile_time_unix_nano: u64,
    /// How long it ran (0 when it does not say).
    pub(crate) duration_nano: u64,
    /// SHA-256 of what the profile was built from (`model::profile::ProfileInfo`).
    pub(crate) source_sha256: Option<[u8; 32]>,
}

/// A function name, shared by every stack it appears in.
pub(crate) type Name = Arc<str>;

/// A decoded stack (function names, innermost first), decoded once per distinct stored stack
/// and shared by every row that has it: 20,000 samples of one 1,000-frame stack cost one stack.
pub(crate) type SharedStack = Arc<[Name]>;

/// Decodes stored stacks (JSON arrays of frames), each distinct text once, interning names.
#[derive(Default)]
struct StackCache {
    stacks: HashMap<Box<str>, SharedStack>,
    names: HashSet<Name>,
}

/// The part of a stored frame a flame graph needs.
#[derive(Deserialize)]
struct StoredFrame<'a> {
    #[serde(borrow)]
    function: std::borrow::Cow<'a, str>,
}

impl StackCache {
    fn get(&mut self, text: &str) -> SharedStack {
        if let Some(stack) = self.stacks.get(text) {
            return Arc::clone(stack);
        }
        let frames = serde_json::from_str::<Vec<StoredFrame<'_>>>(text).unwrap_or_default();
        let stack: SharedStack = frames
            .iter()
            .map(|f| {
                let name = if f.function.is_empty() { "<unknown>" } else { &f.function };
                match self.names.get(name) {
                    Some(n) => Arc::clone(n),
                    None => {
                        let n: Name = Arc::from(name);
                        self.names.insert(Arc::clone(&n));
                        n
                    }
                }
            })
            .collect();
        self.stacks.insert(text.into(), Arc::clone(&stack));
        stack
    }
}

/// Everything that decides whether a row matches, besides the selector.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub(crate) kind: ProfileTypeId,
    pub(crate) from: Option<u64>,
    pub(crate) to: Option<u64>,
    /// The label naming a profile's run, when the request chose one.
    pub(crate) run_label: Option<String>,
}

impl Filter {
    /// The filter of a request's `type`, `from`, `to` and `run_label` parameters.
    pub(crate) fn from_params(
        profile_type: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        run_label: Option<&str>,
    ) -> Result<Filter, QueryError> {
        let kind = params::profile_type("type", profile_type)?;
        let from = params::parse_time("from", from)?;
        let to = params::parse_time("to", to)?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(QueryError::BadRequest("parameter `from` is after `to`".into()));
        }
        let run_label = match run_label.map(str::trim) {
            None | Some("") => None,
            Some(label) if label.len() <= 256 && !label.contains(['{', '}', '"', '=']) => Some(label.to_string()),
            Some(label) => {
                return Err(QueryError::BadRequest(format!(
                    "parameter `run_label` {:?} is not a label name",
                    label.chars().take(50).collect::<String>()
                )));
            }
        };
        Ok(Filter { kind, from, to, run_label })
    }
}

/// The value of label `key` of a profile row, as selectors read it: `service_name` and
/// `service_version` (or their OpenTelemetry spellings) from the resource, Pyroscope's
/// `__profile_type__` and `__name__` from the type, anything else from the sample's and the
/// profile's attributes.
pub(crate) fn label<'a>(
    row: &'a ProfileRow,
    attributes: &'a [KeyValue],
    id: &'a ProfileTypeId,
    id_text: &'a str,
    key: &str,
) -> Option<&'a str> {
    match key {
        "service_name" | "service.name" => row.resource.service_name.as_deref(),
        "service_version" | "service.version" => row.resource.service_version.as_deref(),
        PROFILE_TYPE_LABEL => Some(id_text),
        NAME_LABEL => Some(&id.name),
        _ => attrs::find(attributes, key).and_then(attrs::as_text),
    }
}

/// The rows of `tenant` matching `filter` and each of `selectors`, one list per selector, with
/// the warnings of the scan: parts that could not be read (damaged and set aside, or encrypted
/// with a key the key file lacks), for the answer to say so. Every caller names them in its
/// answer: a flame graph missing a part is never served as if it were whole.
pub(crate) fn collect_reported(
    state: &ApiState,
    tenant: &Tenant,
    filter: &Filter,
    selectors: &[Selector],
) -> Result<(Vec<Vec<Matched>>, Vec<String>), QueryError> {
    let mut out: Vec<Vec<Matched>> = selectors.iter().map(|_| Vec::new()).collect();
    let mut stacks = StackCache::default();
    let mut decoded: HashMap<Box<str>, Vec<KeyValue>> = HashMap::new();
    let mut resources: HashMap<Arc<str>, Vec<KeyValue>> = HashMap::new();
    let run_labels: Vec<&str> = match &filter.run_label {
        Some(label) => vec![label.as_str()],
        None => RUN_LABELS.to_vec(),
    };
    let report = scan_profiles_in(state, tenant, filter.from, filter.to, |row| {
        let k = &filter.kind;
        if *row.profile.sample_type != *k.sample_type
            || *row.profile.sample_unit != *k.sample_unit
            || *row.profile.period_type != *k.period_type
            || *row.profile.period_unit != *k.period_unit
            || filter.from.is_some_and(|f| row.time_unix_nano < f)
            || filter.to.is_some_and(|t| row.time_unix_nano > t)
        {
            return;
        }
        let attributes_text: &str = &row.attributes;
        if !decoded.contains_key(attributes_text) {
            decoded.insert(attributes_text.into(), attrs::decode_lossy(attributes_text));
        }
        let Some(attributes) = decoded.get(attributes_text) else { return };
        let id = type_id(row, attributes);
        if id.name != k.name {
            return;
        }
        let id_text = id.to_string();
        for (selector, out) in selectors.iter().zip(out.iter_mut()) {
            if !selector.matches(|key| label(row, attributes, &id, &id_text, key)) {
                continue;
            }
            let stack = stacks.get(&row.stack);
            let period = if k.counts_in_periods() { row.profile.period.max(0) } else { 0 };
            let resource = resources
                .entry(row.resource.attributes.clone())
                .or_insert_with(|| attrs::decode_lossy(&row.resource.attributes));
            let run = run_labels
                .iter()
                .find_map(|key| attrs::find(attributes, key).or_else(|| attrs::find(resource, key)))
                .and_then(attrs::as_text)
                .map_or_else(|| Arc::from(""), Arc::from);
            out.push(Matched {
                profile_id: row.profile.profile_id,
                value: row.value,
                period,
                stack,
                run,
                profile_time_unix_nano: row.profile.profile_time_unix_nano,
                duration_nano: row.profile.duration_nano,
                source_sha256: row.profile.source_sha256,
            });
        }
    })?;
    Ok((out, report.warnings))
}

/// The folded format cannot carry `;` or line breaks inside a frame name.
pub(crate) fn clean(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

pub(crate) fn fold(rows: &[Matched]) -> Folded {
    // Rows of one stack share one `Arc` (see `StackCache`): sum their values first, so each
    // distinct stack is turned into names once, not once per row.
    let mut sums: HashMap<*const Name, (&SharedStack, i64)> = HashMap::new();
    for r in rows {
        if r.value == 0 {
            continue;
        }
        let sum = sums.entry(Arc::as_ptr(&r.stack).cast::<Name>()).or_insert((&r.stack, 0));
        sum.1 = sum.1.saturating_add(r.value);
    }
    let mut folded = Folded::new();
    for (stack, value) in sums.into_values() {
        let mut names: Vec<String> = stack.iter().rev().map(|n| clean(n)).collect();
        if names.is_empty() {
            names.push("<unknown>".to_string());
        }
        folded.add(names, value);
    }
    folded
}

/// One pprof profile per stored `profile_id`, with the one sample type of `kind`.
///
/// The significance test needs the number of sampled events behind each profile
/// ([`analyzer::flame::detect_regressions`] reads it from a `count` sample type). Stored rows keep
/// one sample type each, so when the values are measured in the period's unit (CPU nanoseconds
/// sampled every 10 ms) the count is restored as `value / period`, rounded up; otherwise the
/// analyzer falls back to the number of sample records, which is fewer and so more cautious.
pub(crate) fn profiles(rows: &[Matched], kind: &ProfileTypeId) -> Vec<(Arc<str>, analyzer::pprof::Profile)> {
    profiles_with_sources(rows, kind).into_iter().map(|(run, _, profile)| (run, profile)).collect()
}

/// [`profiles`], each with the SHA-256 of what it was built from.
pub(crate) fn profiles_with_sources(
    rows: &[Matched],
    kind: &ProfileTypeId,
) -> Vec<(Arc<str>, Option<[u8; 32]>, analyzer::pprof::Profile)> {
    let mut by_id: BTreeMap<[u8; 16], Vec<&Matched>> = BTreeMap::new();
    for r in rows {
        by_id.entry(r.profile_id).or_default().push(r);
    }
    let value_type = |kind: &str, unit: &str| analyzer::pprof::ValueType { kind: kind.into(), unit: unit.into() };
    by_id
        .into_values()
        .map(|rows| {
            let run = rows.first().map_or_else(|| Arc::from(""), |r| r.run.clone());
            let source_sha256 = rows.first().and_then(|r| r.source_sha256);
            let time_nanos = rows.first().map_or(0, |r| i64::try_from(r.profile_time_unix_nano).unwrap_or(i64::MAX));
            let duration_nanos = rows.first().map_or(0, |r| i64::try_from(r.duration_nano).unwrap_or(i64::MAX));
            let counted = rows.iter().all(|r| r.period > 0);
            let mut sample_types = vec![value_type(&kind.sample_type, &kind.sample_unit)];
            if counted {
                sample_types.push(value_type("samples", "count"));
            }
            let stacks = rows.into_iter().map(|r| {
                let frames =
                    r.stack.iter().map(|f| analyzer::pprof::Frame { function: Arc::clone(f), ..Default::default() });
                let values =
                    if counted { vec![r.value, (r.value.max(0) + r.period - 1) / r.period] } else { vec![r.value] };
                (frames.collect(), values)
            });
            let profile = analyzer::pprof::Profile {
                time_nanos,
                duration_nanos,
                period_type: Some(value_type(&kind.period_type, &kind.period_unit)),
                ..analyzer::pprof::Profile::from_stacks(sample_types, stacks)
            };
            (run, source_sha256, profile)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_and_names_derive() {
        let t = params::profile_type("type", Some("process_cpu:cpu:nanoseconds:cpu:nanoseconds")).unwrap();
        assert_eq!((t.name.as_str(), t.sample_type.as_str()), ("process_cpu", "cpu"));
        assert!(params::profile_type("type", Some("cpu")).unwrap_err().to_string().contains("`type`"));
        assert!(params::profile_type("type", None).is_err());
        assert_eq!(derived_name("alloc_space"), "memory");
        assert_eq!(derived_name("wall"), "wall");
    }
}
