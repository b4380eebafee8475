//! The in-memory head: rows whose WAL records are durable but not yet in Parquet parts.
//!
//! Rows arrive as one chunk per accepted request. The active block takes new chunks; a cut
//! freezes it (tagged with the WAL segment it ends at) while a new active block starts, and
//! the flusher turns frozen blocks into parts. Chunks are `Arc`s, so a query takes a snapshot
//! by cloning pointers and scans it without holding any lock.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::model::Rows;
use crate::signal::Signal;
use crate::tenant::Tenant;

/// One accepted request's rows.
#[derive(Debug)]
pub struct Chunk {
    pub tenant: Tenant,
    pub rows: Rows,
    pub min_time: u64,
    pub max_time: u64,
    /// `(service.name, service.version)` pairs present.
    pub services: BTreeSet<(String, Option<String>)>,
    /// Memory the rows hold ([`Rows::memory_bytes`]), which bounds the head.
    pub bytes: u64,
}

impl Chunk {
    pub fn new(tenant: Tenant, rows: Rows, bytes: u64) -> Chunk {
        let mut min_time = u64::MAX;
        let mut max_time = 0;
        let mut services = BTreeSet::new();
        let mut last: Option<(*const str, Option<*const str>)> = None;
        rows.for_each_key(|key| {
            min_time = min_time.min(key.time_unix_nano);
            max_time = max_time.max(key.time_unix_nano);
            if let Some(name) = key.service_name {
                // Rows of one resource share their Arcs: skip the set lookup for repeats.
                let id = (Arc::as_ptr(name), key.service_version.map(Arc::as_ptr));
                if last != Some(id) {
                    last = Some(id);
                    services.insert((name.to_string(), key.service_version.map(|v| v.to_string())));
                }
            }
        });
        Chunk { tenant, rows, min_time, max_time, services, bytes }
    }
}

/// A set of chunks.
#[derive(Debug, Default)]
pub struct Block {
    pub chunks: Vec<Arc<Chunk>>,
    pub bytes: u64,
    pub items: u64,
}

impl Block {
    pub fn push(&mut self, chunk: Arc<Chunk>) {
        self.bytes += chunk.bytes;
        self.items += chunk.rows.len() as u64;
        self.chunks.push(chunk);
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// A block waiting for the flusher, with the last WAL segment its data came from.
#[derive(Debug)]
pub struct Frozen {
    pub seq: u64,
    pub block: Arc<Block>,
}

/// Active and frozen blocks.
#[derive(Debug, Default)]
pub struct Head {
    pub active: Block,
    pub frozen: Vec<Frozen>,
}

impl Head {
    /// Freezes the active block as ending at WAL segment `seq`.
    pub fn freeze(&mut self, seq: u64) {
        if self.active.is_empty() {
            return;
        }
        let block = std::mem::take(&mut self.active);
        self.frozen.push(Frozen { seq, block: Arc::new(block) });
    }

    /// The chunks of one tenant and signal, active and frozen.
    pub fn chunks(&self, tenant: &Tenant, signal: Signal) -> Vec<Arc<Chunk>> {
        self.frozen
            .iter()
            .flat_map(|f| f.block.chunks.iter())
            .chain(self.active.chunks.iter())
            .filter(|c| &c.tenant == tenant && c.rows.signal() == signal)
            .cloned()
            .collect()
    }

    pub fn bytes(&self) -> u64 {
        self.active.bytes + self.frozen.iter().map(|f| f.block.bytes).sum::<u64>()
    }
}
