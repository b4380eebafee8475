//! `SelectSeries`: a profile type's values over time, per group of labels, as Grafana's
//! Pyroscope datasource draws them in a time-series panel.
//!
//! Semantics follow Pyroscope's (`pkg/model/timeseries/range.go`, per the wire notes): points
//! at `start, start + step, … <= end` (milliseconds); a profile at time `t` counts toward the
//! first point at or after `t`; a point's value is the sum of the values of its profiles (with
//! `aggregation = AVERAGE`, that sum divided by the number of distinct profiles); only steps with
//! data get points. Series are labelled by the `group_by` labels the profiles have (none when
//! `group_by` is empty) and sorted by labels; `limit` keeps the series with the largest totals.
//! `exemplar_type` is accepted whatever its value, and points carry no exemplars.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::proto::{LabelPair, Point, SelectSeriesRequest, SelectSeriesResponse, Series, aggregation};
use super::select::{Select, scan};
use super::{Ctx, PyroscopeError};

/// Most points one series may have: `(end - start) / step + 1` above it is refused (as
/// Prometheus refuses more than 11,000 points per series).
pub const MAX_POINTS: u64 = 11_000;

/// Most distinct series a query may build.
pub const MAX_SERIES: usize = 10_000;

/// Most `group_by` labels.
const MAX_GROUP_BY: usize = 32;

pub fn select_series(ctx: &mut Ctx, req: SelectSeriesRequest) -> Result<SelectSeriesResponse, PyroscopeError> {
    let select = Select::new(&req.profile_type_id, &req.label_selector, req.start, req.end)?;
    if !req.step.is_finite() || req.step < 0.001 {
        return Err(PyroscopeError::InvalidArgument(format!("step must be at least 0.001 seconds, got {}", req.step)));
    }
    let step_ns = (req.step * 1e9).round().min(9.0e18) as u64;
    let span_ns = select.range.end.saturating_sub(select.range.start);
    let points = span_ns / step_ns + 1;
    if points > MAX_POINTS {
        return Err(PyroscopeError::InvalidArgument(format!(
            "step {}s over {} ms gives {points} points per series; at most {MAX_POINTS} are allowed: raise the step",
            req.step,
            (req.end - req.start)
        )));
    }
    if req.group_by.len() > MAX_GROUP_BY {
        return Err(PyroscopeError::InvalidArgument(format!(
            "{} group_by labels; at most {MAX_GROUP_BY} are accepted",
            req.group_by.len()
        )));
    }
    let average = match req.aggregation {
        None | Some(aggregation::SUM) => false,
        Some(aggregation::AVERAGE) => true,
        Some(other) => {
            return Err(PyroscopeError::InvalidArgument(format!("aggregation {other} is neither SUM nor AVERAGE")));
        }
    };
    if req.limit.is_some_and(|l| l < 0) {
        return Err(PyroscopeError::InvalidArgument("limit must not be negative".to_string()));
    }

    // Series by label set; each point summed by (series, step index).
    let mut series_ids: HashMap<Vec<LabelPair>, u32> = HashMap::new();
    let mut series_labels: Vec<Vec<LabelPair>> = Vec::new();
    let mut too_many = false;
    let mut sums: HashMap<(u32, u64), f64> = HashMap::new();
    let mut profiles: HashSet<(u32, u64, [u8; 16])> = HashSet::new();
    let start = select.range.start;
    let group_by = &req.group_by;
    scan(
        ctx,
        select.range,
        select.service.as_deref(),
        |l| {
            if !select.accepts(l) {
                return None;
            }
            let labels: Vec<LabelPair> = group_by
                .iter()
                .filter_map(|name| {
                    l.get(name)
                        .filter(|v| !v.is_empty())
                        .map(|v| LabelPair { name: name.clone(), value: v.to_string() })
                })
                .collect();
            if let Some(&id) = series_ids.get(&labels) {
                return Some(id);
            }
            if series_labels.len() >= MAX_SERIES {
                too_many = true;
                return None;
            }
            let id = series_labels.len() as u32;
            series_labels.push(labels.clone());
            series_ids.insert(labels, id);
            Some(id)
        },
        |row, &id| {
            // The first point at or after the row's time.
            let step = (row.time_unix_nano - start).div_ceil(step_ns);
            *sums.entry((id, step)).or_insert(0.0) += row.value as f64;
            if average {
                profiles.insert((id, step, row.profile.profile_id));
            }
        },
    )?;
    if too_many {
        return Err(PyroscopeError::InvalidArgument(format!(
            "more than {MAX_SERIES} series; group by fewer labels or narrow the selector"
        )));
    }
    let mut counts: HashMap<(u32, u64), u32> = HashMap::new();
    for (id, step, _) in profiles {
        *counts.entry((id, step)).or_insert(0) += 1;
    }
    let start_ms = req.start;
    let step_ms = step_ns as f64 / 1e6;
    let mut points: Vec<BTreeMap<u64, f64>> = vec![BTreeMap::new(); series_labels.len()];
    for ((id, step), sum) in sums {
        if step >= points_len(span_ns, step_ns) {
            continue;
        }
        let value = if average { sum / f64::from(counts.get(&(id, step)).copied().unwrap_or(1).max(1)) } else { sum };
        points[id as usize].insert(step, value);
    }
    let mut series: Vec<(f64, Series)> = series_labels
        .into_iter()
        .zip(points)
        .filter(|(_, p)| !p.is_empty())
        .map(|(labels, p)| {
            let total: f64 = p.values().sum();
            let points = p
                .into_iter()
                .map(|(step, value)| Point { value, timestamp: start_ms + (step as f64 * step_ms).round() as i64 })
                .collect();
            (total, Series { labels, points })
        })
        .collect();
    if let Some(limit) = req.limit.filter(|&l| l > 0)
        && series.len() > limit as usize
    {
        series.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.labels.cmp(&b.1.labels)));
        series.truncate(limit as usize);
    }
    let mut series: Vec<Series> = series.into_iter().map(|(_, s)| s).collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(SelectSeriesResponse { series })
}

/// Number of points from start to end: indices `0..=span / step`.
fn points_len(span_ns: u64, step_ns: u64) -> u64 {
    span_ns / step_ns + 1
}
