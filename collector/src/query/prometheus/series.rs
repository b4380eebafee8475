//! The store as a PromQL source ([`StoreSource`], `prom::model::Queryable`): series from the
//! series segments (`store::series`), and from the head and any metrics part no segment covers
//! yet, translated as they are read (`model::prometheus`).
use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use prom::model::{Labels, Sample, SelectError, Series};
use promql_parser::label::Matchers;

use crate::model::Rows;
use crate::model::prometheus::{Skipped, Translator};
use crate::query::params::Selector;
use crate::store::series::{SegmentIndex, SeriesError, dedup_sorted};
use crate::store::{Store, ms_to_ns};
use crate::tenant::Tenant;

/// Most segments one selection sets aside before it gives up.
const MAX_SET_ASIDE: usize = 1000;

/// Why a selection starts again.
enum Retry {
    /// A segment went away while it was read (compacted, evicted from the bucket cache).
    Changed,
    /// A segment was set aside (damaged, or another collector's that could not be fetched).
    SetAside,
}

/// A tenant's stored metrics as a PromQL source. Each `select` reads what overlaps its range;
/// `max_series` and `max_samples` bound what one call may collect.
#[derive(Debug)]
pub struct StoreSource {
    pub store: Arc<Store>,
    pub tenant: Tenant,
    pub max_series: usize,
    pub max_samples: usize,
    /// When the work must stop.
    pub deadline: Option<std::time::Instant>,
    /// Warnings for the answer (damaged parts, points that have no Prometheus form).
    pub warnings: std::sync::Mutex<BTreeSet<String>>,
}

impl StoreSource {
    /// Every series in `[start_ms, end_ms]` matching `matchers`, samples in time order (one per
    /// timestamp: the last stored wins).
    pub fn series(&self, matchers: &Matchers, start_ms: i64, end_ms: i64) -> Result<Vec<Series>, SelectError> {
        self.select_with(matchers, start_ms, end_ms, true)
    }

    /// The label sets of the series matching `matchers` with samples in `[start_ms, end_ms]`;
    /// segments answer from their indexes alone (a series counts when its time range overlaps).
    pub fn label_sets(&self, matchers: &Matchers, start_ms: i64, end_ms: i64) -> Result<Vec<Labels>, SelectError> {
        Ok(self.select_with(matchers, start_ms, end_ms, false)?.into_iter().map(|s| s.labels).collect())
    }

    fn select_with(
        &self,
        matchers: &Matchers,
        start_ms: i64,
        end_ms: i64,
        with_samples: bool,
    ) -> Result<Vec<Series>, SelectError> {
        // A damaged segment is set aside as it is found, and so is another collector's that
        // cannot be fetched; their parts then answer in their place. Each such retry leaves a
        // segment out, so only retries for segments that went away (compacted) are counted.
        let (mut changed, mut set_aside) = (0, 0);
        while changed < 3 && set_aside < MAX_SET_ASIDE {
            match self.try_series(matchers, start_ms, end_ms, with_samples)? {
                Ok(found) => return Ok(found),
                Err(Retry::Changed) => changed += 1,
                Err(Retry::SetAside) => set_aside += 1,
            }
        }
        Err(SelectError::Failed("series segments kept changing while they were read".into()))
    }

    /// One attempt: a [`Retry`] when a segment turned out damaged or unreadable, or went away
    /// (compacted), and the selection must start again from a new snapshot.
    fn try_series(
        &self,
        matchers: &Matchers,
        start_ms: i64,
        end_ms: i64,
        with_samples: bool,
    ) -> Result<Result<Vec<Series>, Retry>, SelectError> {
        let snapshot = self.store.series_snapshot(&self.tenant, start_ms, end_ms);
        let (lo, hi) = (ms_to_ns(start_ms), ms_to_ns(end_ms));
        let selector = Selector::from(matchers.clone());
        let mut found = Found { source: self, series: HashMap::new(), samples: 0, over: None };
        let mut skipped = Skipped::default();

        // Series segments: postings, then only the selected series' chunks.
        let mut chosen = Vec::with_capacity(snapshot.segments.len());
        for segment in &snapshot.segments {
            self.check_deadline()?;
            let index = match self.store.series_index(segment) {
                Ok(index) => index,
                Err(err) if err.is_not_found() => return Ok(Err(Retry::Changed)),
                Err(err) if err.sets_aside() => {
                    self.warn(self.store.drop_damaged_segment(segment, &err));
                    return Ok(Err(Retry::SetAside));
                }
                Err(err) => return Err(SelectError::Failed(err.to_string())),
            };
            skipped.exponential_histograms += index.skipped.exponential_histograms;
            skipped.delta += index.skipped.delta;
            let ids: Vec<u32> = candidates(&selector, &index)
                .into_iter()
                .filter(|&id| {
                    let e = index.entry(id);
                    e.min_t <= end_ms && e.max_t >= start_ms && selector.matches(|name| index.label(id, name))
                })
                .collect();
            if !with_samples {
                for id in ids {
                    found.add(index.labels(id), Vec::new());
                }
                if let Some(over) = found.over.take() {
                    return Err(over);
                }
                continue;
            }
            chosen.push((segment, index, ids));
        }
        // The chosen chunks are decoded on up to `READERS` threads, a segment at a time each,
        // then added in segment order. Samples decoded are counted as they come, so a selection
        // over the limit stops early on every thread.
        let decoded = AtomicUsize::new(found.samples);
        let next = AtomicUsize::new(0);
        let read_one = |k: usize| -> SegmentRead {
            let (segment, index, ids) = &chosen[k];
            let mut out = Vec::new();
            crate::store::series::read_series(segment, index, ids, start_ms, end_ms, |id, samples| {
                let held = decoded.fetch_add(samples.len(), Relaxed) + samples.len();
                out.push((id, samples));
                if held > self.max_samples { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            })?;
            Ok(out)
        };
        let readers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(READERS).min(chosen.len());
        // Each reader takes the next segment not taken, until all are or the limit or the
        // deadline has passed.
        let reader = || {
            let mut mine = Vec::new();
            loop {
                let k = next.fetch_add(1, Relaxed);
                if k >= chosen.len() || decoded.load(Relaxed) > self.max_samples || self.late() {
                    return mine;
                }
                mine.push((k, read_one(k)));
            }
        };
        let parts: Vec<Vec<(usize, SegmentRead)>> = if readers > 1 {
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..readers).map(|_| scope.spawn(reader)).collect();
                // A reader that panicked would leave its segments unread: an error, not a
                // shorter answer.
                workers.into_iter().map(|w| w.join()).collect::<Result<_, _>>()
            })
            .map_err(|_| SelectError::Failed("a series segment reader panicked".into()))?
        } else {
            vec![reader()]
        };
        let mut read: Vec<Option<SegmentRead>> = (0..chosen.len()).map(|_| None).collect();
        for (k, result) in parts.into_iter().flatten() {
            read[k] = Some(result);
        }
        self.check_deadline()?;
        for ((segment, index, _), result) in chosen.iter().zip(read) {
            match result {
                Some(Ok(series)) => {
                    for (id, samples) in series {
                        found.add(index.labels(id), samples);
                    }
                    if let Some(over) = found.over.take() {
                        return Err(over);
                    }
                }
                // Not read: the limit was passed on another thread (`add` says so below).
                None => {}
                Some(Err(err)) if err.is_not_found() => return Ok(Err(Retry::Changed)),
                Some(Err(err)) if err.sets_aside() => {
                    self.warn(self.store.drop_damaged_segment(segment, &err));
                    return Ok(Err(Retry::SetAside));
                }
                Some(Err(err)) => return Err(SelectError::Failed(err.to_string())),
            }
        }
        if decoded.load(Relaxed) > self.max_samples {
            return Err(found.too_many_samples());
        }

        // Head chunks and parts no segment covers yet: rows translated as they are read.
        let rows_snapshot =
            crate::store::Snapshot { tenant: snapshot.tenant, chunks: snapshot.chunks, parts: snapshot.parts };
        // Each distinct label set is matched once; its samples gathered by number, then added.
        let mut translator = Translator::default();
        let mut matched: Vec<Option<bool>> = Vec::new();
        let mut gathered: Vec<Vec<Sample>> = Vec::new();
        let mut held = found.samples;
        // Remote-written series in the head: matched once per label set (batches of one series
        // share it), their samples gathered.
        let mut batch_matched: HashMap<usize, Option<usize>> = HashMap::new();
        let mut batch_gathered: Vec<(Labels, Vec<Sample>)> = Vec::new();
        let report = self
            .store
            .scan(&rows_snapshot, |rows| {
                if found.over.is_none() && self.deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    found.over = Some(SelectError::Timeout);
                }
                let points = match rows {
                    Rows::Metrics(points) => points,
                    Rows::Series(batch) => {
                        for s in &batch.series {
                            if found.over.is_some() {
                                return;
                            }
                            let at = *batch_matched.entry(s.labels.identity()).or_insert_with(|| {
                                selector.matches(|name| s.labels.get(name)).then(|| {
                                    batch_gathered.push((s.labels.clone(), Vec::new()));
                                    batch_gathered.len() - 1
                                })
                            });
                            let Some(at) = at else { continue };
                            let before = batch_gathered[at].1.len();
                            batch_gathered[at].1.extend(s.samples.iter().filter(|x| x.t >= start_ms && x.t <= end_ms));
                            held += batch_gathered[at].1.len() - before;
                            if held > self.max_samples {
                                found.over = Some(found.too_many_samples());
                            }
                        }
                        return;
                    }
                    _ => return,
                };
                for row in points {
                    if found.over.is_some() || row.time_unix_nano < lo || row.time_unix_nano > hi {
                        continue;
                    }
                    let mut wanted = Vec::new();
                    translator.translate(row, |id, sample| wanted.push((id, sample)));
                    for (id, sample) in wanted {
                        let id = id as usize;
                        if id >= matched.len() {
                            matched.resize(id + 1, None);
                            gathered.resize_with(id + 1, Vec::new);
                        }
                        let labels = translator.labels(id as u32);
                        if *matched[id].get_or_insert_with(|| selector.matches(|name| labels.get(name))) {
                            gathered[id].push(sample);
                            held += 1;
                        }
                    }
                    if held > self.max_samples && found.over.is_none() {
                        found.over = Some(found.too_many_samples());
                    }
                }
            })
            .map_err(|e| SelectError::Failed(e.to_string()))?;
        if let Some(over) = found.over {
            return Err(over);
        }
        for (labels, samples) in batch_gathered {
            if !samples.is_empty() {
                found.add(labels, samples);
            }
        }
        if let Some(over) = found.over {
            return Err(over);
        }
        let (labels, translated_skipped) = translator.into_labels();
        skipped.exponential_histograms += translated_skipped.exponential_histograms;
        skipped.delta += translated_skipped.delta;
        for (labels, samples) in labels.into_iter().zip(gathered) {
            if !samples.is_empty() {
                found.add(labels, samples);
            }
        }
        if let Some(over) = found.over {
            return Err(over);
        }
        let mut warnings = report.warnings;
        if skipped.exponential_histograms > 0 {
            warnings.push(format!(
                "{} exponential-histogram points are not queryable as Prometheus series",
                skipped.exponential_histograms
            ));
        }
        if skipped.delta > 0 {
            warnings.push(format!("{} points of delta temporality are not queryable", skipped.delta));
        }
        for w in warnings {
            self.warn(w);
        }
        let mut out: Vec<Series> = found
            .series
            .into_iter()
            .map(|(labels, samples)| Series { labels, samples: dedup_sorted(samples) })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Ok(out))
    }

    /// Whether the deadline has passed.
    fn late(&self) -> bool {
        self.deadline.is_some_and(|d| std::time::Instant::now() >= d)
    }

    fn check_deadline(&self) -> Result<(), SelectError> {
        match self.deadline {
            Some(d) if std::time::Instant::now() >= d => Err(SelectError::Timeout),
            _ => Ok(()),
        }
    }

    fn warn(&self, warning: String) {
        self.warnings.lock().unwrap_or_else(|e| e.into_inner()).insert(warning);
    }
}

/// Most threads decoding one selection's segments.
const READERS: usize = 4;

/// The selected series of one segment with their samples in range, or why it could not be read.
type SegmentRead = Result<Vec<(u32, Vec<Sample>)>, SeriesError>;

/// Series gathered by one selection, within the source's limits.
struct Found<'a> {
    source: &'a StoreSource,
    series: HashMap<Labels, Vec<Sample>>,
    samples: usize,
    over: Option<SelectError>,
}

impl Found<'_> {
    fn too_many_samples(&self) -> SelectError {
        SelectError::Limit(format!(
            "query processing would load too many samples into memory in query execution (more than {})",
            self.source.max_samples
        ))
    }

    fn add(&mut self, labels: Labels, samples: Vec<Sample>) {
        if self.over.is_some() {
            return;
        }
        self.samples += samples.len();
        if self.samples > self.source.max_samples {
            self.over = Some(self.too_many_samples());
            return;
        }
        if self.series.len() >= self.source.max_series && !self.series.contains_key(&labels) {
            self.over =
                Some(SelectError::Limit(format!("the selector matches more than {} series", self.source.max_series)));
            return;
        }
        self.series.entry(labels).or_default().extend(samples);
    }
}

/// The series of a segment a selector may match: the union over its alternatives of the
/// intersection of the postings of their `=` matchers (every series for an alternative
/// without one). The caller still checks every matcher.
fn candidates(selector: &Selector, index: &SegmentIndex) -> Vec<u32> {
    let groups = selector.equalities();
    if groups.is_empty() || groups.iter().any(Vec::is_empty) {
        return (0..index.len() as u32).collect();
    }
    let mut out: Vec<u32> = Vec::new();
    for group in groups {
        let mut lists: Vec<&[u32]> = group.iter().map(|(n, v)| index.postings(n, v)).collect();
        lists.sort_by_key(|l| l.len());
        let mut ids: Vec<u32> = lists[0].to_vec();
        for other in &lists[1..] {
            ids.retain(|id| other.binary_search(id).is_ok());
        }
        out.extend(ids);
    }
    out.sort_unstable();
    out.dedup();
    out
}

impl prom::model::Queryable for StoreSource {
    fn select(&self, matchers: &Matchers, start_ms: i64, end_ms: i64) -> Result<Vec<Series>, SelectError> {
        self.series(matchers, start_ms, end_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Durability;
    use crate::receive::ExportRequest;
    use crate::store::StoreSettings;
    use prom::remote_write::{Label, TimeSeries, WriteRequest};
    use prost::Message;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// 2026-01-01T00:00:00Z, in milliseconds.
    const BASE: i64 = 1_767_225_600_000;
    const HOUR: i64 = 3_600_000;

    fn open(dir: &std::path::Path) -> Arc<Store> {
        let settings = StoreSettings {
            durability: Durability::Group,
            group_commit_interval: Duration::from_millis(1),
            flush_interval: Duration::from_secs(3600),
            max_head_bytes: 1 << 30,
            retention: Duration::from_secs(1 << 40),
            retention_interval: Duration::from_secs(3600),
            min_tenant_part_bytes: 1 << 20,
            verify_parts_at_start: false,
            min_free_bytes: 0,
            span_index_cache_bytes: 64 << 20,
            trace_key_bytes: 64 << 20,
        };
        Arc::new(Store::open(dir, settings, Default::default()).unwrap())
    }

    type Expected = BTreeMap<Labels, Vec<(i64, u64)>>;

    /// 12 series (`up` gauges and a `reqs_total` counter with resets), one sample per 15 s over
    /// `[from, to)`, written by remote write; returns what was written.
    fn write(store: &Store, tenant: &Tenant, from: i64, to: i64, expected: &mut Expected) {
        let mut timeseries = Vec::new();
        for i in 0..12 {
            let name = if i % 3 == 0 { "reqs_total" } else { "up" };
            let pairs =
                [("__name__", name.to_string()), ("job", format!("job-{}", i % 2)), ("instance", format!("i-{i}"))];
            let labels = Labels::new(pairs.iter().map(|(n, v)| (n.to_string(), v.clone())).collect());
            let samples: Vec<prom::remote_write::Sample> = (from..to)
                .step_by(15_000)
                .map(|t| {
                    let v = if name == "up" { ((t / 15_000) % 7) as f64 * 0.5 } else { ((t / 15_000) % 100) as f64 };
                    expected.entry(labels.clone()).or_default().push((t, v.to_bits()));
                    prom::remote_write::Sample { value: v, timestamp: t }
                })
                .collect();
            timeseries.push(TimeSeries {
                labels: pairs.iter().map(|(n, v)| Label { name: n.to_string(), value: v.clone() }).collect(),
                samples,
                ..Default::default()
            });
        }
        // Half the series as remote write stores them (straight to the series store), half
        // as metric rows, as remote write stored them before.
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let rows: Vec<TimeSeries> = timeseries.iter().step_by(2).cloned().collect();
        let series: Vec<TimeSeries> = timeseries.into_iter().skip(1).step_by(2).collect();
        let request =
            crate::model::prometheus::otlp_from_remote_write(WriteRequest { timeseries: rows, metadata: Vec::new() })
                .unwrap();
        let payload = bytes::Bytes::from(request.encode_to_vec());
        rt.block_on(store.append(tenant.clone(), payload, request.into_rows())).unwrap();
        let body =
            bytes::Bytes::from(prom::remote_write::encode(&WriteRequest { timeseries: series, metadata: Vec::new() }));
        let batch = crate::model::prometheus::series_from_remote_write(&body).unwrap();
        let memory = batch.memory_bytes();
        let format = crate::store::wal::Format::RemoteWrite;
        rt.block_on(store.append_sized(tenant.clone(), format, body, Rows::Series(batch), memory)).unwrap();
    }

    fn source(store: &Arc<Store>, tenant: &Tenant) -> StoreSource {
        StoreSource {
            store: Arc::clone(store),
            tenant: tenant.clone(),
            max_series: 1000,
            max_samples: 1_000_000,
            deadline: None,
            warnings: Default::default(),
        }
    }

    /// The matchers of a selector, its metric name included, as the engine asks for them.
    fn matchers(selector: &str) -> Matchers {
        prom::engine::selectors(selector).unwrap().remove(0)
    }

    /// What `selector` selects in `[from, to]`, as (labels, [(t, value bits)]).
    fn select(src: &StoreSource, selector: &str, from: i64, to: i64) -> Expected {
        src.series(&matchers(selector), from, to)
            .unwrap()
            .into_iter()
            .map(|s| (s.labels, s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect()))
            .collect()
    }

    fn want(expected: &Expected, name: &str, job: Option<&str>, from: i64, to: i64) -> Expected {
        expected
            .iter()
            .filter(|(l, _)| l.get("__name__") == Some(name) && job.is_none_or(|j| l.get("job") == Some(j)))
            .map(|(l, s)| (l.clone(), s.iter().copied().filter(|(t, _)| (from..=to).contains(t)).collect::<Vec<_>>()))
            .filter(|(_, s)| !s.is_empty())
            .collect()
    }

    /// Points of a delta sum, OTLP-encoded as a client sends them: `(seconds after BASE, value)`.
    fn delta_request(
        points: &[(i64, f64)],
    ) -> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        use opentelemetry_proto::tonic::metrics::v1::{
            Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
        };
        use opentelemetry_proto::tonic::resource::v1::Resource;
        let data_points = points
            .iter()
            .map(|&(secs, v)| NumberDataPoint {
                start_time_unix_nano: ((BASE + (secs - 10) * 1000) * 1_000_000) as u64,
                time_unix_nano: ((BASE + secs * 1000) * 1_000_000) as u64,
                value: Some(number_data_point::Value::AsDouble(v)),
                ..Default::default()
            })
            .collect();
        let service = KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue("api".into())) }),
            key_strindex: 0,
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource { attributes: vec![service], ..Default::default() }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "requests".into(),
                        data: Some(Data::Sum(Sum { data_points, aggregation_temporality: 1, is_monotonic: true })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// Delta points are read as the cumulative series their running totals make, from the head,
    /// from segments and after a replay of the log; a restart starts the totals again, which
    /// PromQL reads as a counter reset.
    #[test]
    fn delta_sums_are_queried_as_cumulative_counters() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = Tenant::parse("team-a").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let append = |store: &Store, points: &[(i64, f64)]| {
            let request = delta_request(points);
            let payload = bytes::Bytes::from(request.encode_to_vec());
            rt.block_on(store.append(tenant.clone(), payload, request.into_rows())).unwrap();
        };
        let totals = |store: &Arc<Store>| -> Vec<(i64, f64)> {
            let src = source(store, &tenant);
            let found = src.series(&matchers("requests_total"), BASE, BASE + HOUR).unwrap();
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].labels.to_string(), r#"requests_total{job="api"}"#);
            assert!(src.warnings.into_inner().unwrap().is_empty());
            found[0].samples.iter().map(|s| ((s.t - BASE) / 1000, s.v)).collect()
        };
        let store = open(dir.path());
        append(&store, &[(10, 2.0), (20, 3.0)]);
        append(&store, &[(30, 1.0)]);
        // From the head, then from the log's replay after a restart, then from a segment.
        assert_eq!(totals(&store), [(10, 2.0), (20, 5.0), (30, 6.0)]);
        drop(store);
        let store = open(dir.path());
        assert_eq!(totals(&store), [(10, 2.0), (20, 5.0), (30, 6.0)]);
        store.flush().unwrap();
        assert_eq!(totals(&store), [(10, 2.0), (20, 5.0), (30, 6.0)]);
        // A point at or before the newest is not accumulated again.
        append(&store, &[(30, 9.0), (40, 4.0)]);
        assert_eq!(totals(&store)[3..], [(40, 10.0)]);
        store.flush().unwrap();
        drop(store);
        // After a restart with nothing left in the log, the totals start again: a reset.
        let store = open(dir.path());
        append(&store, &[(50, 1.0)]);
        assert_eq!(totals(&store)[3..], [(40, 10.0), (50, 1.0)]);
        // `increase` over the reset: 3 + 1 + 4, then 1 after the reset, over the 40 s between
        // the first and last sample, extrapolated as Prometheus does: 5 s to the window's end,
        // and at the start only to where the counter would have been zero (40 × 2/9 s).
        let increase = prom::engine::instant(
            "increase(requests_total[1m])",
            BASE + 55_000,
            &source(&store, &tenant),
            &Default::default(),
        );
        match increase {
            Ok(prom::engine::Value::Vector(v)) if v.len() == 1 => {
                assert!((v[0].v - 9.0 * (40.0 + 5.0 + 40.0 * 2.0 / 9.0) / 40.0).abs() < 1e-9, "{v:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// Takes out of `expected` the samples in `[from, to)` that [`write`] sent as remote write
    /// does (the series of odd instances): those a damaged segment takes with it.
    fn lose_remote_written(expected: &mut Expected, from: i64, to: i64) {
        for (labels, samples) in expected.iter_mut() {
            let instance: usize = labels.get("instance").unwrap()[2..].parse().unwrap();
            if instance % 2 == 1 {
                samples.retain(|(t, _)| *t < from || *t >= to);
            }
        }
    }

    /// The answers are the same from the head, from per-flush segments, from compacted
    /// segments, after a restart, with a damaged segment, and from rebuilt segments.
    #[test]
    fn series_answer_alike_from_head_segments_compaction_damage_and_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = Tenant::parse("team-a").unwrap();
        let mut expected = Expected::new();
        let store = open(dir.path());
        let check = |store: &Arc<Store>, expected: &Expected| {
            let src = source(store, &tenant);
            let (from, to) = (BASE + HOUR / 2, BASE + 3 * HOUR - 60_000);
            assert_eq!(select(&src, r#"up{job="job-1"}"#, from, to), want(expected, "up", Some("job-1"), from, to));
            assert_eq!(select(&src, r#"{__name__=~"reqs.*"}"#, from, to), want(expected, "reqs_total", None, from, to));
            assert_eq!(
                select(&src, r#"up{job!="job-1"}"#, 0, i64::MAX / 2),
                want(expected, "up", Some("job-0"), 0, i64::MAX)
            );
            let sets = src.label_sets(&matchers("up"), from, to).unwrap();
            assert_eq!(sets.len(), 8, "{sets:?}");
            assert!(src.label_sets(&matchers("up"), BASE - 2 * HOUR, BASE - HOUR).unwrap().is_empty());
            src.warnings.into_inner().unwrap()
        };
        // Six flushes, two per hour; before the last, its rows are read from the head.
        for k in 0..6 {
            write(&store, &tenant, BASE + k * HOUR / 2, BASE + (k + 1) * HOUR / 2, &mut expected);
            if k == 5 {
                assert!(!store.series_snapshot(&tenant, BASE, BASE + 3 * HOUR).chunks.is_empty());
                check(&store, &expected);
            }
            store.flush().unwrap();
        }
        // The hours are over: each hour's two segments were merged into one (the last hour's
        // by a flush that wrote nothing).
        store.flush().unwrap();
        let snap = store.series_snapshot(&tenant, BASE, BASE + 3 * HOUR);
        assert_eq!(snap.segments.len(), 3, "{:?}", snap.segments);
        assert!(snap.segments.iter().all(|s| s.last_seq > s.first_seq), "{:?}", snap.segments);
        assert!(snap.parts.is_empty() && snap.chunks.is_empty());
        assert!(check(&store, &expected).is_empty());
        drop(store);

        let store = open(dir.path());
        assert!(check(&store, &expected).is_empty());
        // Damage the chunks of the second hour's segment: the answer comes from its parts.
        let segment = Arc::clone(&store.series_snapshot(&tenant, BASE + HOUR, BASE + HOUR).segments[0]);
        let mut bytes = std::fs::read(&segment.path).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(&segment.path, &bytes).unwrap();
        // The damaged chunk (the segment's first, a `reqs_total` series) is found by a query
        // that reads it; the segment is set aside, and its remote-written samples, which had no
        // other copy, are gone from then on.
        let warnings = {
            let src = source(&store, &tenant);
            select(&src, "reqs_total", BASE, BASE + 3 * HOUR);
            src.warnings.into_inner().unwrap()
        };
        assert!(warnings.iter().any(|w| w.contains(&segment.name) && w.contains("damaged")), "{warnings:?}");
        lose_remote_written(&mut expected, BASE + HOUR, BASE + 2 * HOUR);
        assert!(check(&store, &expected).is_empty());
        assert!(!segment.path.exists());
        assert_eq!(store.series_snapshot(&tenant, BASE + HOUR, BASE + 2 * HOUR - 1).parts.len(), 2);
        drop(store);

        // At the next start the flusher rebuilds the segment from the parts.
        let store = open(dir.path());
        store.flush().unwrap();
        let snap = store.series_snapshot(&tenant, BASE, BASE + 3 * HOUR);
        assert!(snap.parts.is_empty(), "{:?}", snap.parts);
        assert_eq!(snap.segments.len(), 3);
        assert!(check(&store, &expected).is_empty());
        // Another tenant sees none of it.
        let other = source(&store, &Tenant::parse("team-b").unwrap());
        assert!(select(&other, "up", 0, i64::MAX / 2).is_empty());
    }
    /// A segment found damaged while its hour is being compacted is set aside (its parts answer
    /// in its place) and the compaction of the rest goes on at the next flush; of the answer,
    /// only the remote-written samples the damaged segment held are missing.
    #[test]
    fn compaction_deletes_a_damaged_source_and_its_parts_answer() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = Tenant::parse("team-a").unwrap();
        let mut expected = Expected::new();
        let store = open(dir.path());
        write(&store, &tenant, BASE, BASE + HOUR / 3, &mut expected);
        store.flush().unwrap();
        let first = Arc::clone(&store.series_snapshot(&tenant, BASE, BASE + HOUR).segments[0]);
        let mut bytes = std::fs::read(&first.path).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(&first.path, &bytes).unwrap();
        // The second flush of the (long closed) hour writes a second segment; the next flush,
        // which writes nothing, compacts the two: the first is found damaged and set aside.
        write(&store, &tenant, BASE + HOUR / 3, BASE + 2 * HOUR / 3, &mut expected);
        store.flush().unwrap();
        assert_eq!(store.series_snapshot(&tenant, BASE, BASE + HOUR).segments.len(), 2);
        store.flush().unwrap();
        assert!(!first.path.exists());
        assert!(dir.path().join("quarantine").join(&first.name).exists());
        // Its remote-written samples had no other copy.
        lose_remote_written(&mut expected, BASE, BASE + HOUR / 3);
        let snap = store.series_snapshot(&tenant, BASE, BASE + HOUR);
        assert_eq!(snap.segments.len(), 1, "{:?}", snap.segments);
        assert_ne!(snap.segments[0].name, first.name);
        assert_eq!(snap.parts.len(), 1, "the damaged segment's part is read in its place");
        let src = source(&store, &tenant);
        let (from, to) = (BASE, BASE + HOUR);
        assert_eq!(select(&src, "up", from, to), want(&expected, "up", None, from, to));
        assert_eq!(select(&src, "reqs_total", from, to), want(&expected, "reqs_total", None, from, to));
    }
    /// A selection over several segments (decoded on several threads) answers within the sample
    /// limit exactly as one thread would, and is refused one sample past it.
    #[test]
    fn segments_read_in_parallel_keep_the_sample_limit() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = Tenant::parse("team-a").unwrap();
        let mut expected = Expected::new();
        let store = open(dir.path());
        for k in 0..4 {
            write(&store, &tenant, BASE + k * HOUR, BASE + k * HOUR + HOUR / 4, &mut expected);
            store.flush().unwrap();
        }
        assert_eq!(store.series_snapshot(&tenant, BASE, BASE + 4 * HOUR).segments.len(), 4);
        let (from, to) = (BASE, BASE + 4 * HOUR);
        let all = want(&expected, "up", None, from, to);
        let total: usize = all.values().map(Vec::len).sum();
        let limited = |max_samples: usize| StoreSource { max_samples, ..source(&store, &tenant) };
        assert_eq!(select(&limited(total), "up", from, to), all);
        match limited(total - 1).series(&matchers("up"), from, to) {
            Err(SelectError::Limit(m)) => assert!(m.contains("too many samples"), "{m}"),
            other => panic!("one sample past the limit: {other:?}"),
        }
    }
}
