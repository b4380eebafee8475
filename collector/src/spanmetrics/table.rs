//! One tenant's series: their cumulative values, found by the hash of their labels, the
//! overflow series past the limits, and what they cost in memory.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::tally::{Tally, Target};
use super::{OVERFLOW_RESERVE, PrehashedMap, SeriesKey, SeriesSnapshot, Settings, Stats, Usage};

/// The cumulative values of one series.
#[derive(Debug, Clone)]
pub(super) struct Counts {
    pub(super) calls: u64,
    pub(super) errors: u64,
    /// One count per bucket, not cumulative; the last one is `+Inf`'s.
    pub(super) buckets: Box<[u64]>,
    pub(super) sum_nanos: u128,
    pub(super) start_unix_nano: u64,
    pub(super) updated_unix_nano: u64,
}

impl Counts {
    fn new(buckets: usize, now: u64) -> Counts {
        Counts {
            calls: 0,
            errors: 0,
            buckets: vec![0; buckets].into_boxed_slice(),
            sum_nanos: 0,
            start_unix_nano: now,
            updated_unix_nano: now,
        }
    }

    fn add(&mut self, calls: u64, errors: u64, sum_nanos: u128, buckets: &[u64], now: u64) {
        self.calls += calls;
        self.errors += errors;
        self.sum_nanos += sum_nanos;
        for (total, n) in self.buckets.iter_mut().zip(buckets) {
            *total += n;
        }
        self.updated_unix_nano = self.updated_unix_nano.max(now);
    }

    fn snapshot(&self, key: Option<Arc<SeriesKey>>) -> SeriesSnapshot {
        SeriesSnapshot {
            key,
            calls: self.calls,
            errors: self.errors,
            bucket_counts: self.buckets.to_vec(),
            sum_seconds: self.sum_nanos as f64 / 1e9,
            start_unix_nano: self.start_unix_nano,
            updated_unix_nano: self.updated_unix_nano,
        }
    }
}

#[derive(Debug)]
struct Series {
    key: Arc<SeriesKey>,
    counts: Counts,
    /// What it was charged in [`Usage`].
    bytes: u64,
}

/// The memory one series holds: its slot in the table, its key (behind an `Arc`, with the
/// text of its values) and its bucket counters. The table's spare capacity comes on top (at
/// most as much again).
fn series_bytes(key: &SeriesKey, buckets: usize) -> u64 {
    let slot = std::mem::size_of::<(u64, Series)>() + 1;
    let key_box = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<SeriesKey>();
    (slot + key_box + buckets * std::mem::size_of::<u64>()) as u64 + key.heap_bytes()
}

/// What the overflow series holds.
fn overflow_bytes(buckets: usize) -> u64 {
    (std::mem::size_of::<Counts>() + buckets * std::mem::size_of::<u64>()) as u64
}

/// One tenant's series.
#[derive(Debug, Default)]
pub(super) struct Table {
    series: PrehashedMap<Series>,
    /// Series whose hash a series in `series` has already (practically never: the hash is a
    /// randomly seeded 64-bit one), looked through one by one.
    collided: Vec<(u64, Series)>,
    overflow: Option<(Counts, u64)>,
}

impl Table {
    /// Series but the overflow one.
    pub(super) fn len(&self) -> usize {
        self.series.len() + self.collided.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0 && self.overflow.is_none()
    }

    /// The key of the series with `hash` whose key `is` the wanted one.
    pub(super) fn find(&self, hash: u64, is: impl Fn(&SeriesKey) -> bool) -> Option<&Arc<SeriesKey>> {
        if let Some(s) = self.series.get(&hash)
            && is(&s.key)
        {
            return Some(&s.key);
        }
        self.collided.iter().find(|(h, s)| *h == hash && is(&s.key)).map(|(_, s)| &s.key)
    }

    fn get_mut(&mut self, hash: u64, key: &Arc<SeriesKey>) -> Option<&mut Series> {
        let is = |s: &Series| Arc::ptr_eq(&s.key, key) || s.key == *key;
        if let Some(s) = self.series.get_mut(&hash)
            && is(s)
        {
            return Some(s);
        }
        self.collided.iter_mut().find(|(h, s)| *h == hash && is(s)).map(|(_, s)| s)
    }

    /// Adds a tally's counts: to its series, made when new and the limits allow, else to the
    /// overflow series.
    pub(super) fn add(&mut self, tally: &Tally, now: u64, settings: &Settings, usage: &Usage, stats: &Stats) {
        let buckets = settings.bounds_nanos.len() + 1;
        let mut overflowed = 0u64;
        let mut dropped = 0u64;
        for (e, counts) in tally.entries.iter().zip(tally.bucket_counts.chunks_exact(buckets)) {
            if let Target::Series(key) = &e.target {
                if let Some(s) = self.get_mut(e.hash, key) {
                    s.counts.add(e.calls, e.errors, e.sum_nanos, counts, now);
                    continue;
                }
                let bytes = series_bytes(key, buckets);
                if self.len() < settings.tenant_limit && usage.reserve(bytes, settings.max_series, settings.max_bytes) {
                    let mut c = Counts::new(buckets, now);
                    c.add(e.calls, e.errors, e.sum_nanos, counts, now);
                    let series = Series { key: Arc::clone(key), counts: c, bytes };
                    match self.series.entry(e.hash) {
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert(series);
                        }
                        std::collections::hash_map::Entry::Occupied(_) => self.collided.push((e.hash, series)),
                    }
                    continue;
                }
            }
            if self.overflow.is_none() {
                let bytes = overflow_bytes(buckets);
                // Past the global bounds too, within a reserve, so a tenant's spans are counted
                // somewhere; past the reserve they are not counted at all.
                let reserve_bytes = OVERFLOW_RESERVE as u64 * bytes;
                if usage.reserve(bytes, settings.max_series + OVERFLOW_RESERVE, settings.max_bytes + reserve_bytes) {
                    self.overflow = Some((Counts::new(buckets, now), bytes));
                } else {
                    dropped += e.calls;
                    continue;
                }
            }
            if let Some((overflow, _)) = &mut self.overflow {
                overflow.add(e.calls, e.errors, e.sum_nanos, counts, now);
                overflowed += e.calls;
            }
        }
        stats.spans.fetch_add(tally.spans() - dropped, Relaxed);
        if overflowed > 0 {
            stats.overflowed_spans.fetch_add(overflowed, Relaxed);
        }
        if dropped > 0 {
            stats.dropped_spans.fetch_add(dropped, Relaxed);
        }
    }

    /// Drops the series last updated at or before `cutoff` (the connector drops a series once
    /// `expiration` has passed since its last span); the series and bytes released.
    pub(super) fn expire(&mut self, cutoff: u64) -> (u64, u64) {
        let (mut series, mut bytes) = (0u64, 0u64);
        let mut keep = |s: &Series| {
            let fresh = s.counts.updated_unix_nano > cutoff;
            if !fresh {
                series += 1;
                bytes += s.bytes;
            }
            fresh
        };
        self.series.retain(|_, s| keep(s));
        self.collided.retain(|(_, s)| keep(s));
        if let Some((overflow, b)) = &self.overflow
            && overflow.updated_unix_nano <= cutoff
        {
            series += 1;
            bytes += b;
            self.overflow = None;
        }
        (series, bytes)
    }

    /// Every series' values, sorted by key, the overflow series last.
    pub(super) fn snapshot(&self) -> Vec<SeriesSnapshot> {
        let mut out: Vec<SeriesSnapshot> = self
            .series
            .values()
            .chain(self.collided.iter().map(|(_, s)| s))
            .map(|s| s.counts.snapshot(Some(Arc::clone(&s.key))))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some((overflow, _)) = &self.overflow {
            out.push(overflow.snapshot(None));
        }
        out
    }
}
