//! The log writer thread: appends records, makes them durable, inserts their rows into the
//! head in log order, acknowledges, and performs cuts between batches.
//!
//! Group commit: with `durability = "group"`, the thread gathers requests for up to
//! `group_commit_interval` (or 4 MiB) after the first one arrives, then one write and one
//! `fsync` cover the whole batch.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Instant;

use bytes::Bytes;

use crate::config::Durability;
use crate::error::IngestError;
use crate::signal::Signal;
use crate::tenant::Tenant;

use super::head::Chunk;
use super::wal::{Format, Segment, encode_record};
use super::{Shared, flush};

const MAX_BATCH_BYTES: usize = 4 << 20;

pub(crate) enum Op {
    Append {
        tenant: Tenant,
        signal: Signal,
        format: Format,
        payload: Bytes,
        chunk: Arc<Chunk>,
        /// A second chunk the record makes visible with the first (the cumulative series of
        /// delta metric points).
        also: Option<Arc<Chunk>>,
        done: tokio::sync::oneshot::Sender<Result<(), IngestError>>,
    },
    /// Seal the current segment and freeze the head as ending at it; answers the sealed
    /// segment's number, or `None` when there was nothing to cut.
    Cut {
        done: std::sync::mpsc::SyncSender<Result<Option<u64>, super::error::StoreError>>,
    },
    Shutdown,
}

struct Pending {
    chunk: Arc<Chunk>,
    also: Option<Arc<Chunk>>,
    done: tokio::sync::oneshot::Sender<Result<(), IngestError>>,
}

struct Writer {
    shared: Arc<Shared>,
    segment: Segment,
    buf: Vec<u8>,
    pending: Vec<Pending>,
    flush_tx: SyncSender<flush::Request>,
}

pub(crate) fn run(shared: Arc<Shared>, segment: Segment, rx: Receiver<Op>, flush_tx: SyncSender<flush::Request>) {
    let durability = shared.settings.durability;
    let window = shared.settings.group_commit_interval;
    let mut w = Writer { shared, segment, buf: Vec::new(), pending: Vec::new(), flush_tx };
    loop {
        let Ok(first) = rx.recv() else { break };
        let mut ops = vec![first];
        if durability == Durability::Group && !window.is_zero() && matches!(ops[0], Op::Append { .. }) {
            let deadline = Instant::now() + window;
            let mut bytes = 0usize;
            while bytes < MAX_BATCH_BYTES {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(op) => {
                        if let Op::Append { payload, .. } = &op {
                            bytes += payload.len();
                        }
                        let barrier = !matches!(op, Op::Append { .. });
                        ops.push(op);
                        if barrier {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        } else {
            while let Ok(op) = rx.try_recv() {
                ops.push(op);
                if ops.len() >= 1024 {
                    break;
                }
            }
        }
        for op in ops {
            match op {
                Op::Append { tenant, signal, format, payload, chunk, also, done } => {
                    encode_record(&mut w.buf, &tenant, signal, format, &payload);
                    w.pending.push(Pending { chunk, also, done });
                    if durability == Durability::Fsync || w.buf.len() >= MAX_BATCH_BYTES {
                        w.commit();
                    }
                }
                Op::Cut { done } => {
                    w.commit();
                    let _ = done.send(w.cut());
                }
                Op::Shutdown => {
                    w.commit();
                    return;
                }
            }
        }
        w.commit();
    }
    w.commit();
}

impl Writer {
    /// Writes the pending batch, syncs it as the durability asks, then makes its rows visible
    /// and acknowledges; on failure acknowledges nothing and leaves no trace in the log.
    fn commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let telemetry = &self.shared.telemetry;
        let result = self.segment.append(&self.buf).and_then(|()| {
            if self.shared.settings.durability == Durability::None {
                Ok(())
            } else {
                telemetry.wal_fsyncs.fetch_add(1, Relaxed);
                self.segment.sync()
            }
        });
        let pending = std::mem::take(&mut self.pending);
        match result {
            Ok(()) => {
                self.shared.set_problem(super::Problem::Wal, None);
                telemetry.wal_records.fetch_add(pending.len() as u64, Relaxed);
                telemetry.wal_bytes.fetch_add(self.buf.len() as u64, Relaxed);
                let (head_bytes, head_items) = {
                    let mut state = self.shared.write();
                    for p in &pending {
                        state.head.active.push(Arc::clone(&p.chunk));
                        if let Some(also) = &p.also {
                            state.head.active.push(Arc::clone(also));
                        }
                    }
                    (state.head.active.bytes, state.head.active.items)
                };
                telemetry.head_bytes.store(head_bytes, Relaxed);
                telemetry.head_items.store(head_items, Relaxed);
                for p in pending {
                    let _ = p.done.send(Ok(()));
                }
                if head_bytes >= self.shared.settings.max_head_bytes {
                    // A full queue means a flush is already asked for.
                    let _ = self.flush_tx.try_send(flush::Request::Full);
                }
            }
            Err(err) => {
                telemetry.wal_write_errors.fetch_add(1, Relaxed);
                tracing::error!(%err, segment = self.segment.seq, "write-ahead log write failed");
                let msg = format!("write-ahead log write failed: {err}");
                self.shared.set_problem(super::Problem::Wal, Some(msg.clone()));
                for p in pending {
                    let _ = p.done.send(Err(IngestError::Storage(msg.clone())));
                }
            }
        }
        self.buf.clear();
    }

    fn cut(&mut self) -> Result<Option<u64>, super::error::StoreError> {
        use super::error::StoreError;
        if self.shared.read().head.active.is_empty() {
            return Ok(None);
        }
        self.segment.sync().map_err(StoreError::io(format!("sync WAL segment {}", self.segment.seq)))?;
        let next = self
            .shared
            .wal
            .create_segment(self.segment.seq + 1)
            .map_err(StoreError::io(format!("create WAL segment {}", self.segment.seq + 1)))?;
        let sealed = std::mem::replace(&mut self.segment, next).seq;
        self.shared.write().head.freeze(sealed);
        self.shared.telemetry.head_bytes.store(0, Relaxed);
        self.shared.telemetry.head_items.store(0, Relaxed);
        Ok(Some(sealed))
    }
}
