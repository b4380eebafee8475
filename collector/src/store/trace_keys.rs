//! The trace keys of traces parts (the first 8 bytes of every trace id a part holds of a
//! tenant, sorted, distinct), which let a lookup by trace id open only the parts that may
//! hold it — held in memory within a budget.
//!
//! Every part's keys are written to the catalog with its entry (`store::catalog`), and are in
//! memory, exact, when the part is written or the catalog is read. Once the entry is written
//! [`enforce`] replaces each exact list by a binary fuse filter of 16-bit fingerprints
//! (`xorf::BinaryFuse16`: about 2.25 bytes per key instead of 8, a false "may hold" for about
//! one absent trace in 65,536 — which costs a read of that part, never a wrong answer — and
//! never a false "absent"). Without a bound they would still grow with the traces retained,
//! however little is queried, so the store keeps them for the newest parts only, within
//! `storage.trace_key_bytes` (16 MiB by default, about 7.4 million traces): [`enforce`]
//! releases the filters of the parts with the oldest rows first. A part whose keys were
//! released answers "may hold" for every trace ([`TraceKeys::may_hold`]), and a lookup reads
//! its `trace_id` column (or its cached span index) to find out — slower, never wrong.
//!
//! Keys are still in the catalog on disk, exact; a start reads them all (the catalog is read
//! whole, so for a moment it holds every key exact) and then filters and releases as before.
//! An entry can be written only from exact keys ([`TraceKeys::get`]); the only writer of a
//! catalog entry from a part already in the store, the start-up pass recording a SHA-256,
//! reads the list back from the part when it is no longer exact, so no entry is ever written
//! without the keys it had.

use std::sync::{Arc, Mutex};

use xorf::{BinaryFuse16, Filter};

use super::parts::PartMeta;
use crate::signal::Signal;

/// What one part holds in memory of one tenant's keys.
#[derive(Debug, Clone)]
enum State {
    /// Sorted and distinct: what a new part or the catalog gives.
    Exact(Arc<[u64]>),
    Filter(Arc<BinaryFuse16>),
    Released,
}

/// One tenant's trace keys of one part: exact, as a filter, or released.
#[derive(Debug)]
pub struct TraceKeys {
    held: Mutex<State>,
    /// How many keys there are (also once filtered or released).
    len: usize,
}

impl TraceKeys {
    /// Keys sorted and distinct.
    pub fn new(keys: Vec<u64>) -> TraceKeys {
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]), "trace keys must be sorted and distinct");
        TraceKeys { len: keys.len(), held: Mutex::new(State::Exact(keys.into())) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exact keys; `None` once they were filtered or released.
    pub fn get(&self) -> Option<Arc<[u64]>> {
        match &*self.lock() {
            State::Exact(keys) => Some(Arc::clone(keys)),
            State::Filter(_) | State::Released => None,
        }
    }

    /// Whether the part may hold a trace of this key: true when it does, for about one absent
    /// key in 65,536 once filtered, and for every key once released.
    pub fn may_hold(&self, key: u64) -> bool {
        match &*self.lock() {
            State::Exact(keys) => keys.binary_search(&key).is_ok(),
            State::Filter(filter) => filter.contains(&key),
            State::Released => true,
        }
    }

    /// How many keys the part has of the tenant, held or not.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the keys are still in memory, exact or filtered.
    pub fn is_held(&self) -> bool {
        !matches!(*self.lock(), State::Released)
    }

    /// Memory the held keys take (0 once released).
    pub fn held_bytes(&self) -> u64 {
        held_bytes(&self.lock())
    }

    /// Replaces exact keys by their filter, when it is smaller (a few keys are not); returns
    /// the bytes freed. The filter is built without the lock, so lookups go on meanwhile.
    pub fn filter(&self) -> u64 {
        let State::Exact(keys) = self.lock().clone() else { return 0 };
        let Some(filter) = filter_of(&keys) else { return 0 };
        let mut held = self.lock();
        let before = held_bytes(&held);
        if matches!(*held, State::Exact(_)) {
            *held = State::Filter(Arc::new(filter));
        }
        before - held_bytes(&held)
    }

    /// Drops the keys from memory; returns the bytes freed.
    pub fn release(&self) -> u64 {
        let mut held = self.lock();
        let before = held_bytes(&held);
        *held = State::Released;
        before
    }
}

fn held_bytes(held: &State) -> u64 {
    match held {
        State::Exact(keys) => (keys.len() * size_of::<u64>()) as u64,
        State::Filter(filter) => filter_bytes(filter) as u64,
        State::Released => 0,
    }
}

/// The filter of sorted distinct keys, if it takes less memory than they do.
fn filter_of(keys: &[u64]) -> Option<BinaryFuse16> {
    if keys.is_empty() {
        return None;
    }
    // Construction fails only for duplicate keys (or, with negligible odds, after its retries);
    // the exact list then stays.
    let filter = BinaryFuse16::try_from(keys).ok()?;
    (filter_bytes(&filter) < size_of_val(keys)).then_some(filter)
}

fn filter_bytes(filter: &BinaryFuse16) -> usize {
    size_of_val(&*filter.fingerprints) + size_of::<BinaryFuse16>()
}

impl Clone for TraceKeys {
    fn clone(&self) -> TraceKeys {
        TraceKeys { held: Mutex::new(self.lock().clone()), len: self.len }
    }
}

impl PartialEq for TraceKeys {
    fn eq(&self, other: &TraceKeys) -> bool {
        if self.len != other.len {
            return false;
        }
        match (&*self.lock(), &*other.lock()) {
            (State::Exact(a), State::Exact(b)) => a == b,
            (State::Filter(a), State::Filter(b)) => a.fingerprints == b.fingerprints,
            (State::Released, State::Released) => true,
            _ => false,
        }
    }
}

impl From<Vec<u64>> for TraceKeys {
    fn from(keys: Vec<u64>) -> TraceKeys {
        TraceKeys::new(keys)
    }
}

/// What [`enforce`] left held and released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub bytes: u64,
    /// Traces parts whose keys (of some tenant) are released.
    pub released_parts: u64,
}

/// Replaces exact keys by filters, then releases the keys of the traces parts with the oldest
/// rows until the keys held take at most `budget` bytes; the newest parts' keys stay, as the
/// traces most looked up are recent. Call it only once the parts' catalog entries are
/// written: those need the exact keys.
pub fn enforce(parts: &[Arc<PartMeta>], budget: u64) -> Held {
    let mut traces: Vec<&Arc<PartMeta>> = parts.iter().filter(|p| p.signal == Signal::Traces).collect();
    for t in traces.iter().flat_map(|p| &p.tenants) {
        t.trace_keys.filter();
    }
    let mut held: u64 = traces.iter().flat_map(|p| &p.tenants).map(|t| t.trace_keys.held_bytes()).sum();
    if held > budget {
        traces.sort_by_key(|p| (p.max_time(), p.seq));
        for part in &traces {
            if held <= budget {
                break;
            }
            for t in &part.tenants {
                held -= t.trace_keys.release();
            }
        }
    }
    let released_parts =
        traces.iter().filter(|p| p.tenants.iter().any(|t| !t.trace_keys.is_empty() && !t.trace_keys.is_held())).count()
            as u64;
    Held { bytes: held, released_parts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_keys_may_hold_every_trace() {
        let keys = TraceKeys::new(vec![3, 7, 9]);
        assert!(keys.may_hold(7));
        assert!(!keys.may_hold(8));
        assert_eq!(keys.held_bytes(), 24);
        assert_eq!(keys.release(), 24);
        assert_eq!(keys.release(), 0);
        assert_eq!((keys.held_bytes(), keys.len()), (0, 3));
        assert!(keys.may_hold(8), "a released list cannot say a trace is absent");
        assert_eq!(keys.get(), None);
        let none = TraceKeys::new(Vec::new());
        assert!(!none.may_hold(8));
    }

    #[test]
    fn filtered_keys_hold_every_key_and_rule_out_almost_every_other() {
        let keys: Vec<u64> = (0..100_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        let keys = TraceKeys::new(sorted);
        let exact = keys.held_bytes();
        let freed = keys.filter();
        assert_eq!(keys.held_bytes(), exact - freed);
        assert!(keys.held_bytes() * 3 < exact, "{} bytes filtered against {exact} exact", keys.held_bytes());
        assert_eq!(keys.get(), None, "no longer exact: cannot be written to the catalog");
        assert!(keys.is_held());
        assert_eq!(keys.filter(), 0, "filtered once");
        for i in 0..100_000u64 {
            assert!(keys.may_hold(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1), "key {i}");
        }
        // Even numbers are never keys (all have the low bit set); about 1 in 65,536 passes.
        let false_positives = (0..1_000_000u64).filter(|i| keys.may_hold(i << 1)).count();
        assert!(false_positives < 60, "{false_positives} of 1,000,000 absent keys may be held");
        assert_eq!(keys.release(), exact - freed);
        assert!(!keys.is_held());
        assert!(keys.may_hold(2));
    }

    #[test]
    fn a_few_keys_stay_exact_when_their_filter_would_be_larger() {
        let keys = TraceKeys::new(vec![3, 7, 9]);
        assert_eq!(keys.filter(), 0);
        assert_eq!(keys.get().as_deref(), Some(&[3, 7, 9][..]));
        let none = TraceKeys::new(Vec::new());
        assert_eq!(none.filter(), 0);
        assert!(!none.may_hold(8));
    }
}
