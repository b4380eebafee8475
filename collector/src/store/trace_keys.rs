//! The trace keys of traces parts (the first 8 bytes of every trace id a part holds of a
//! tenant, sorted, distinct), which let a lookup by trace id open only the parts that may
//! hold it — held in memory within a budget.
//!
//! Every part's keys are written to the catalog with its entry (`store::catalog`), and are in
//! memory when the part is written or the catalog is read. Without a bound they would cost 8
//! bytes per distinct trace per part for as long as the part is stored: memory growing with
//! the data retained, however little is queried. So the store keeps them for the newest parts
//! only, within `storage.trace_key_bytes` (64 MiB by default, about 8.4 million keys):
//! [`enforce`] releases the keys of the parts with the oldest rows first. A part whose keys
//! were released answers "may hold" for every trace ([`TraceKeys::may_hold`]), and a lookup
//! reads its `trace_id` column (or its cached span index) to find out — slower, never wrong.
//!
//! Released keys are still in the catalog on disk; a start reads them all (the catalog is
//! read whole, so for a moment it holds every key) and then releases past the budget as
//! before. The only writer
//! of a catalog entry from a part already in the store, the start-up pass recording a
//! SHA-256, reads a released list back from the part first ([`TraceKeys::get`] is `None`), so
//! no entry is ever written without the keys it had.

use std::sync::{Arc, Mutex};

use super::parts::PartMeta;
use crate::signal::Signal;

/// One tenant's trace keys of one part, or the fact that they were released.
#[derive(Debug)]
pub struct TraceKeys {
    held: Mutex<Option<Arc<[u64]>>>,
    /// How many keys there are (also once released).
    len: usize,
}

impl TraceKeys {
    /// Keys sorted and distinct.
    pub fn new(keys: Vec<u64>) -> TraceKeys {
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]), "trace keys must be sorted and distinct");
        TraceKeys { len: keys.len(), held: Mutex::new(Some(keys.into())) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<[u64]>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The keys, `None` once released.
    pub fn get(&self) -> Option<Arc<[u64]>> {
        self.lock().clone()
    }

    /// Whether the part may hold a trace of this key: true when it does, and when its keys
    /// were released.
    pub fn may_hold(&self, key: u64) -> bool {
        self.lock().as_ref().is_none_or(|keys| keys.binary_search(&key).is_ok())
    }

    /// How many keys the part has of the tenant, held or not.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Memory the held keys take (0 once released).
    pub fn held_bytes(&self) -> u64 {
        if self.lock().is_some() { (self.len * size_of::<u64>()) as u64 } else { 0 }
    }

    /// Drops the keys from memory; returns the bytes freed.
    pub fn release(&self) -> u64 {
        match self.lock().take() {
            Some(keys) => (keys.len() * size_of::<u64>()) as u64,
            None => 0,
        }
    }
}

impl Clone for TraceKeys {
    fn clone(&self) -> TraceKeys {
        TraceKeys { held: Mutex::new(self.get()), len: self.len }
    }
}

impl PartialEq for TraceKeys {
    fn eq(&self, other: &TraceKeys) -> bool {
        self.len == other.len && self.get() == other.get()
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

/// Releases the keys of the traces parts with the oldest rows until the keys held take at
/// most `budget` bytes; the newest parts' keys stay, as the traces most looked up are recent.
pub fn enforce(parts: &[Arc<PartMeta>], budget: u64) -> Held {
    let mut traces: Vec<&Arc<PartMeta>> = parts.iter().filter(|p| p.signal == Signal::Traces).collect();
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
    let released_parts = traces
        .iter()
        .filter(|p| p.tenants.iter().any(|t| !t.trace_keys.is_empty() && t.trace_keys.get().is_none()))
        .count() as u64;
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
}
