//! `ProfileTypes`, `LabelNames`, `LabelValues`, `Series` and `GetProfileStats`: what Grafana's
//! query editor and the Profiles Drilldown app list.
//!
//! A stored profile's labels, as Pyroscope names them (`pkg/model/labels.go`): `__name__` (the
//! profile name), `__profile_type__` (the full id), `__type__`, `__unit__`, `__period_type__`,
//! `__period_unit__`, `service_name`, `service_version` when the resource has one, and every
//! text attribute of the profile and its samples, except the span labels (`span_id`,
//! `profile_id`, `trace_id`), which Pyroscope keeps on stack traces rather than series. Every
//! selector reads the same labels ([`label_value`]).

use std::collections::{BTreeMap, BTreeSet};

use analyzer::pprof::ProfileTypeId;
use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::proto::{
    GetProfileStatsRequest, GetProfileStatsResponse, LabelNamesRequest, LabelNamesResponse, LabelPair,
    LabelValuesRequest, LabelValuesResponse, Labels, ProfileType, ProfileTypesRequest, ProfileTypesResponse,
    SeriesRequest, SeriesResponse,
};
use super::select::{RowLabels, scan};
use super::{Ctx, PyroscopeError, Range};
use crate::model::{ProfileRow, attrs};
use crate::query::params::Selector;
use crate::query::profiles::{NAME_LABEL, PROFILE_TYPE_LABEL, label};
use crate::signal::Signal;

/// Most label names, label values or label sets one answer lists.
pub const MAX_LISTED: usize = 10_000;

/// Labels that tie samples to spans: never series labels.
pub const SPAN_LABELS: [&str; 3] = ["span_id", "profile_id", "trace_id"];

/// The labels every profile has, from its type and resource.
const RESERVED: [&str; 7] =
    [NAME_LABEL, PROFILE_TYPE_LABEL, "__type__", "__unit__", "__period_type__", "__period_unit__", "service_name"];

/// The value of label `key` of a row: Pyroscope's reserved labels from the type, then as the
/// other profile APIs read labels ([`label`]: service from the resource, the rest from the
/// sample's and profile's attributes).
pub fn label_value<'a>(
    row: &'a ProfileRow,
    attributes: &'a [KeyValue],
    id: &'a ProfileTypeId,
    id_text: &'a str,
    key: &str,
) -> Option<&'a str> {
    match key {
        "__type__" => Some(&id.sample_type),
        "__unit__" => Some(&id.sample_unit),
        "__period_type__" => Some(&id.period_type),
        "__period_unit__" => Some(&id.period_unit),
        _ => label(row, attributes, id, id_text, key),
    }
}

/// Every label of a row with its value, sorted by name.
fn all_labels(l: &RowLabels<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in RESERVED.into_iter().chain(["service_version"]) {
        if let Some(v) = l.get(name).filter(|v| !v.is_empty()) {
            out.insert(name.to_string(), v.to_string());
        }
    }
    for kv in l.attributes {
        if SPAN_LABELS.contains(&kv.key.as_str()) || out.contains_key(&kv.key) {
            continue;
        }
        if let Some(v) = kv.value.as_ref().and_then(attrs::as_text).filter(|v| !v.is_empty()) {
            out.insert(kv.key.clone(), v.to_string());
        }
    }
    out
}

/// The selectors of a `matchers` list; none selects everything.
fn selectors(matchers: &[String]) -> Result<Vec<Selector>, PyroscopeError> {
    if matchers.len() > 100 {
        return Err(PyroscopeError::InvalidArgument(format!("{} matchers; at most 100 are accepted", matchers.len())));
    }
    Ok(matchers.iter().map(|m| Selector::parse("matchers", Some(m))).collect::<Result<_, _>>()?)
}

/// The one `service_name` every selector requires, for pruning.
fn service_of(selectors: &[Selector]) -> Option<String> {
    let mut required = selectors.iter().map(|s| s.required("service_name"));
    let first = required.next()??;
    required.all(|s| s == Some(first)).then(|| first.to_string())
}

fn truncated(ctx: &mut Ctx, what: &str) {
    ctx.warnings.push(format!("more than {MAX_LISTED} {what}; the first {MAX_LISTED} in order are listed"));
}

/// `ProfileTypes`: every profile type with data in the range (all data when unset).
pub fn profile_types(ctx: &mut Ctx, req: ProfileTypesRequest) -> Result<ProfileTypesResponse, PyroscopeError> {
    let range = Range::optional(req.start, req.end)?;
    let mut types: BTreeMap<String, ProfileTypeId> = BTreeMap::new();
    scan(
        ctx,
        range,
        None,
        |l| {
            if !types.contains_key(l.id_text) {
                types.insert(l.id_text.to_string(), l.id.clone());
            }
            None::<()>
        },
        |_, ()| {},
    )?;
    let profile_types = types
        .into_iter()
        .map(|(id, t)| ProfileType {
            id,
            name: t.name,
            sample_type: t.sample_type,
            sample_unit: t.sample_unit,
            period_type: t.period_type,
            period_unit: t.period_unit,
        })
        .collect();
    Ok(ProfileTypesResponse { profile_types })
}

/// `LabelNames`: the label names of the profiles matching any of `matchers`, sorted.
pub fn label_names(ctx: &mut Ctx, req: LabelNamesRequest) -> Result<LabelNamesResponse, PyroscopeError> {
    let range = Range::optional(req.start, req.end)?;
    let selectors = selectors(&req.matchers)?;
    let service = service_of(&selectors);
    let mut names: BTreeSet<String> = BTreeSet::new();
    scan(
        ctx,
        range,
        service.as_deref(),
        |l| {
            if l.matches_any(&selectors) {
                for name in all_labels(l).into_keys() {
                    names.insert(name);
                }
            }
            None::<()>
        },
        |_, ()| {},
    )?;
    if names.len() > MAX_LISTED {
        truncated(ctx, "label names");
    }
    Ok(LabelNamesResponse { names: names.into_iter().take(MAX_LISTED).collect() })
}

/// `LabelValues`: the values of label `name` on the profiles matching any of `matchers`.
pub fn label_values(ctx: &mut Ctx, req: LabelValuesRequest) -> Result<LabelValuesResponse, PyroscopeError> {
    if req.name.is_empty() {
        return Err(PyroscopeError::InvalidArgument("name is required".to_string()));
    }
    let range = Range::optional(req.start, req.end)?;
    let selectors = selectors(&req.matchers)?;
    let service = service_of(&selectors);
    let mut values: BTreeSet<String> = BTreeSet::new();
    let span_label = SPAN_LABELS.contains(&req.name.as_str());
    scan(
        ctx,
        range,
        service.as_deref(),
        |l| {
            if !span_label
                && l.matches_any(&selectors)
                && let Some(v) = l.get(&req.name).filter(|v| !v.is_empty())
                && !values.contains(v)
            {
                values.insert(v.to_string());
            }
            None::<()>
        },
        |_, ()| {},
    )?;
    if values.len() > MAX_LISTED {
        truncated(ctx, "label values");
    }
    Ok(LabelValuesResponse { names: values.into_iter().take(MAX_LISTED).collect() })
}

/// `Series`: the distinct label sets of the profiles matching any of `matchers`, each cut to
/// `label_names` when given, sorted.
pub fn series(ctx: &mut Ctx, req: SeriesRequest) -> Result<SeriesResponse, PyroscopeError> {
    let range = Range::optional(req.start, req.end)?;
    let selectors = selectors(&req.matchers)?;
    let service = service_of(&selectors);
    let mut sets: BTreeSet<Vec<(String, String)>> = BTreeSet::new();
    let mut over = false;
    scan(
        ctx,
        range,
        service.as_deref(),
        |l| {
            if l.matches_any(&selectors) {
                let set: Vec<(String, String)> = all_labels(l)
                    .into_iter()
                    .filter(|(k, _)| req.label_names.is_empty() || req.label_names.contains(k))
                    .collect();
                if sets.len() < MAX_LISTED || sets.contains(&set) {
                    sets.insert(set);
                } else {
                    over = true;
                }
            }
            None::<()>
        },
        |_, ()| {},
    )?;
    if over {
        truncated(ctx, "label sets");
    }
    let labels_set = sets
        .into_iter()
        .map(|set| Labels { labels: set.into_iter().map(|(name, value)| LabelPair { name, value }).collect() })
        .collect();
    Ok(SeriesResponse { labels_set })
}

/// `GetProfileStats`: whether the tenant has profiles, and the oldest and newest profile time
/// (unix milliseconds), from the store's metadata alone.
pub fn profile_stats(ctx: &mut Ctx, _req: GetProfileStatsRequest) -> Result<GetProfileStatsResponse, PyroscopeError> {
    let stats = ctx.state.store.stats(&ctx.tenant);
    let profiles = stats.into_iter().find(|(s, _)| *s == Signal::Profiles).map(|(_, s)| s).unwrap_or_default();
    let ms = |ns: Option<u64>| ns.map_or(0, |n| i64::try_from(n / 1_000_000).unwrap_or(i64::MAX));
    Ok(GetProfileStatsResponse {
        data_ingested: profiles.items > 0,
        oldest_profile_time: ms(profiles.oldest_unix_nano),
        newest_profile_time: ms(profiles.newest_unix_nano),
    })
}
