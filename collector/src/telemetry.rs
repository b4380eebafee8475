//! The collector's own metrics, served on `/metrics` in the Prometheus text format.
//!
//! Plain atomics and one small map: counting must cost nothing next to the work counted.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::signal::Signal;

/// Counters and gauges of one collector process.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// Export requests answered, by (transport, signal, outcome).
    requests: Mutex<BTreeMap<(&'static str, Signal, &'static str), u64>>,
    /// pprof scrapes, by (target, profile, outcome).
    scrapes: Mutex<BTreeMap<(String, &'static str, &'static str), u64>>,
    received_items: [AtomicU64; 4],
    refused_items: [AtomicU64; 4],
    stored_items: [AtomicU64; 4],
    pub wal_records: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub wal_fsyncs: AtomicU64,
    pub wal_write_errors: AtomicU64,
    pub wal_replayed_records: AtomicU64,
    /// Bytes of WAL segments read by the start-up replay.
    pub wal_replayed_bytes: AtomicU64,
    /// Head blocks the start-up replay wrote to parts before the next segment was read.
    pub wal_replay_flushes: AtomicU64,
    /// The most memory the head held during the start-up replay (the replay's bound).
    pub wal_replay_head_peak_bytes: AtomicU64,
    pub wal_damaged_segments: AtomicU64,
    pub wal_skipped_records: AtomicU64,
    pub wal_skipped_bytes: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_failures: AtomicU64,
    /// Writes that found the head full and waited for the flusher (`limits.max_wait_for_flush`).
    pub waits_for_flush: AtomicU64,
    pub flush_nanos: AtomicU64,
    pub parts_written: AtomicU64,
    pub parts_deleted_by_retention: AtomicU64,
    /// Tenant deletions finished (`store::delete`).
    pub tenants_deleted: AtomicU64,
    pub parts_quarantined: AtomicU64,
    /// `[storage.bucket]` (`store::bucket`).
    pub bucket_uploaded_bytes: AtomicU64,
    pub bucket_manifests: AtomicU64,
    pub bucket_errors: AtomicU64,
    /// Merges and retention entries this collector committed to the bucket's compaction log.
    pub bucket_merges: AtomicU64,
    pub bucket_merges_abandoned: AtomicU64,
    /// Objects of the bucket no manifest or log entry named, deleted by this collector.
    pub bucket_orphans_deleted: AtomicU64,
    pub parts_adopted: AtomicU64,
    pub parts_verified: AtomicU64,
    pub series_compactions: AtomicU64,
    /// Parts compaction: merges committed, the parts and bytes they replaced, failed passes,
    /// and the parts in the catalog at the last pass.
    pub compactions: AtomicU64,
    pub compaction_parts: AtomicU64,
    pub compaction_bytes: AtomicU64,
    pub compaction_failures: AtomicU64,
    pub parts: AtomicU64,
    /// Memory the traces parts' trace keys hold, and the traces parts whose keys were released
    /// (`store::trace_keys`).
    pub trace_key_bytes: AtomicU64,
    pub trace_keys_released_parts: AtomicU64,
    pub head_bytes: AtomicU64,
    pub head_items: AtomicU64,
    /// Connections open now, by listener (see [`Listener`]).
    connections_open: [AtomicU64; 3],
    /// Connections accepted and closed at once because the cap was reached, by listener.
    connections_refused: [AtomicU64; 3],
    /// Connections closed after `idle_timeout` without a request, by listener.
    connections_idle_closed: [AtomicU64; 3],
    /// The connection cap over all listeners.
    pub connections_limit: AtomicU64,
    /// Bytes of request bodies held now, and the budget they are counted against.
    pub body_bytes_inflight: AtomicU64,
    pub body_bytes_limit: AtomicU64,
    /// Request bodies refused or cut off, by reason (`overloaded`, `timeout`).
    body_refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Webhook notifications: sent, failed, retried, queued, and the outbox.
    pub notify: crate::notify::NotifyMetrics,
    /// The continuous analysis: steps, series scored, incidents, burn-rate alerts.
    pub analysis: crate::analysis::AnalysisMetrics,
    /// The listeners' TLS: handshakes, refusals by reason, certificate reloads.
    pub tls: crate::tls::server::TlsMetrics,
}

/// The three listeners, as labelled in the connection metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    OtlpGrpc = 0,
    OtlpHttp = 1,
    Api = 2,
}

impl Listener {
    pub const ALL: [Listener; 3] = [Listener::OtlpGrpc, Listener::OtlpHttp, Listener::Api];

    pub fn as_str(self) -> &'static str {
        match self {
            Listener::OtlpGrpc => "otlp_grpc",
            Listener::OtlpHttp => "otlp_http",
            Listener::Api => "api",
        }
    }
}

fn idx(signal: Signal) -> usize {
    signal as usize
}

impl Telemetry {
    pub fn request(&self, transport: &'static str, signal: Signal, outcome: &'static str) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((transport, signal, outcome)).or_default() += 1;
    }

    /// One pprof scrape of `target`'s `profile` ended with `outcome` (`ok`, `http_error`,
    /// `timeout`, `connect`, `decode`, `store`).
    pub fn scrape(&self, target: &str, profile: &'static str, outcome: &'static str) {
        let mut map = self.scrapes.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((target.to_string(), profile, outcome)).or_default() += 1;
    }

    /// Items that arrived in well-formed requests (accepted or refused).
    pub fn received(&self, signal: Signal, n: u64) {
        self.received_items[idx(signal)].fetch_add(n, Relaxed);
    }

    /// Items refused: rejected by validation or dropped with a failed request.
    pub fn refused(&self, signal: Signal, n: u64) {
        self.refused_items[idx(signal)].fetch_add(n, Relaxed);
    }

    /// Items written to Parquet parts.
    pub fn stored(&self, signal: Signal, n: u64) {
        self.stored_items[idx(signal)].fetch_add(n, Relaxed);
    }

    /// A connection was accepted on `listener` and is now open.
    pub fn connection_opened(&self, listener: Listener) {
        self.connections_open[listener as usize].fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self, listener: Listener) {
        self.connections_open[listener as usize].fetch_sub(1, Relaxed);
    }

    /// A connection was accepted on `listener` and closed at once: the cap was reached.
    pub fn connection_refused(&self, listener: Listener) {
        self.connections_refused[listener as usize].fetch_add(1, Relaxed);
    }

    /// A connection on `listener` was closed for having no request for `idle_timeout`.
    pub fn connection_idle_closed(&self, listener: Listener) {
        self.connections_idle_closed[listener as usize].fetch_add(1, Relaxed);
    }

    /// A request body was refused or cut off for `reason` (`overloaded`, `timeout`).
    pub fn body_refused(&self, reason: &'static str) {
        *self.body_refused.lock().unwrap_or_else(|e| e.into_inner()).entry(reason).or_default() += 1;
    }

    /// The Prometheus text exposition of every figure.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            name.to_string()
        };
        let requests_name = family(
            "slo_gate_export_requests_total",
            "counter",
            "OTLP export requests answered, by transport, signal and outcome.",
        );
        let mut body = String::new();
        for ((transport, signal, outcome), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                body,
                "{requests_name}{{transport=\"{transport}\",signal=\"{signal}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str(&body);
        let scrapes = self.scrapes.lock().unwrap_or_else(|e| e.into_inner());
        if !scrapes.is_empty() {
            let name = "slo_gate_scrapes_total";
            let _ =
                writeln!(out, "# HELP {name} pprof scrapes, by target, profile and outcome.\n# TYPE {name} counter");
            for ((target, profile, outcome), n) in scrapes.iter() {
                let target = escape_label(target);
                let _ = writeln!(out, "{name}{{target=\"{target}\",profile=\"{profile}\",outcome=\"{outcome}\"}} {n}");
            }
        }
        drop(scrapes);
        for (name, help, values) in [
            (
                "slo_gate_received_items_total",
                "Items (spans, data points, log records, profiles) received in well-formed requests.",
                &self.received_items,
            ),
            (
                "slo_gate_refused_items_total",
                "Items refused by validation or with a failed request.",
                &self.refused_items,
            ),
            ("slo_gate_stored_items_total", "Items written to Parquet parts.", &self.stored_items),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for signal in Signal::ALL {
                let _ = writeln!(out, "{name}{{signal=\"{signal}\"}} {}", values[idx(signal)].load(Relaxed));
            }
        }
        for (name, kind, help, value) in [
            ("slo_gate_wal_records_total", "counter", "Records appended to the write-ahead log.", &self.wal_records),
            ("slo_gate_wal_bytes_total", "counter", "Bytes appended to the write-ahead log.", &self.wal_bytes),
            ("slo_gate_wal_fsyncs_total", "counter", "fsync calls on write-ahead-log segments.", &self.wal_fsyncs),
            (
                "slo_gate_wal_write_errors_total",
                "counter",
                "Failed write-ahead-log writes (nothing of those requests was acknowledged).",
                &self.wal_write_errors,
            ),
            (
                "slo_gate_wal_replayed_records_total",
                "counter",
                "Records replayed from the write-ahead log at start-up.",
                &self.wal_replayed_records,
            ),
            (
                "slo_gate_wal_replayed_bytes_total",
                "counter",
                "Bytes of write-ahead-log segments read at start-up.",
                &self.wal_replayed_bytes,
            ),
            (
                "slo_gate_wal_replay_flushes_total",
                "counter",
                "Head blocks written to parts during the start-up replay, each before the next segment was read.",
                &self.wal_replay_flushes,
            ),
            (
                "slo_gate_wal_replay_head_peak_bytes",
                "gauge",
                "The most memory rows held in the head during the start-up replay.",
                &self.wal_replay_head_peak_bytes,
            ),
            (
                "slo_gate_wal_damaged_segments_total",
                "counter",
                "Segments found damaged at start-up (a torn tail, or damaged records inside).",
                &self.wal_damaged_segments,
            ),
            (
                "slo_gate_wal_skipped_records_total",
                "counter",
                "Damaged write-ahead-log records skipped at start-up (every intact record around them was kept).",
                &self.wal_skipped_records,
            ),
            (
                "slo_gate_wal_skipped_bytes_total",
                "counter",
                "Bytes of write-ahead log skipped at start-up while looking for the next intact record.",
                &self.wal_skipped_bytes,
            ),
            ("slo_gate_flushes_total", "counter", "Head blocks written to Parquet parts.", &self.flushes),
            (
                "slo_gate_flush_failures_total",
                "counter",
                "Failed flushes (retried; the data stays in the WAL and the head).",
                &self.flush_failures,
            ),
            (
                "slo_gate_ingest_waits_for_flush_total",
                "counter",
                "Writes that found the head full and waited for the flusher to make room (refused if it did not within limits.max_wait_for_flush).",
                &self.waits_for_flush,
            ),
            ("slo_gate_parts_written_total", "counter", "Parquet parts written.", &self.parts_written),
            (
                "slo_gate_retention_deleted_parts_total",
                "counter",
                "Parquet parts deleted by retention.",
                &self.parts_deleted_by_retention,
            ),
            (
                "slo_gate_tenants_deleted_total",
                "counter",
                "Tenant deletions finished (POST /api/v1/admin/delete_tenant, or resumed at a start).",
                &self.tenants_deleted,
            ),
            (
                "slo_gate_parts_quarantined_total",
                "counter",
                "Damaged, missing or unknown files found in the data directory and set aside (each reported once).",
                &self.parts_quarantined,
            ),
            (
                "slo_gate_bucket_uploaded_bytes_total",
                "counter",
                "Bytes of parts uploaded to the shared bucket ([storage.bucket]).",
                &self.bucket_uploaded_bytes,
            ),
            (
                "slo_gate_bucket_manifests_total",
                "counter",
                "Manifests this collector committed to the shared bucket.",
                &self.bucket_manifests,
            ),
            (
                "slo_gate_bucket_merges_total",
                "counter",
                "Merges this collector committed to the shared bucket's compaction log, as the holder of a directory's lease.",
                &self.bucket_merges,
            ),
            (
                "slo_gate_bucket_merges_abandoned_total",
                "counter",
                "Bucket merges given up: an input unreadable, the lease lost, or another compactor's log entry first.",
                &self.bucket_merges_abandoned,
            ),
            (
                "slo_gate_bucket_orphans_deleted_total",
                "counter",
                "Objects under parts/ and series/ in the bucket that no manifest or compaction-log entry named, deleted once older than orphan_grace.",
                &self.bucket_orphans_deleted,
            ),
            (
                "slo_gate_bucket_errors_total",
                "counter",
                "Failed passes of the bucket's uploader or manifest listing (retried).",
                &self.bucket_errors,
            ),
            (
                "slo_gate_parts_adopted_total",
                "counter",
                "Parts found on disk without a catalog entry and entered after they decoded.",
                &self.parts_adopted,
            ),
            (
                "slo_gate_parts_verified_total",
                "counter",
                "Parts whose checksum the start-up verification pass has checked.",
                &self.parts_verified,
            ),
            (
                "slo_gate_series_compactions_total",
                "counter",
                "Merges of a tenant's series segments of one hour into one (the PromQL store).",
                &self.series_compactions,
            ),
            (
                "slo_gate_compactions_total",
                "counter",
                "Merges of small Parquet parts of one directory (tenant or shared, signal, hour) into one.",
                &self.compactions,
            ),
            (
                "slo_gate_compaction_parts_total",
                "counter",
                "Parquet parts replaced by compaction merges.",
                &self.compaction_parts,
            ),
            (
                "slo_gate_compaction_bytes_total",
                "counter",
                "Bytes on disk of the Parquet parts compaction merges read and replaced.",
                &self.compaction_bytes,
            ),
            (
                "slo_gate_compaction_failures_total",
                "counter",
                "Compaction passes that failed (the parts stay as they were; retried).",
                &self.compaction_failures,
            ),
            ("slo_gate_parts", "gauge", "Parquet parts in the catalog, as of the last compaction pass.", &self.parts),
            (
                "slo_gate_trace_key_bytes",
                "gauge",
                "Memory held by the trace keys of traces parts (bounded by storage.trace_key_bytes).",
                &self.trace_key_bytes,
            ),
            (
                "slo_gate_trace_keys_released_parts",
                "gauge",
                "Traces parts whose trace keys were released from memory (a lookup reads their trace ids).",
                &self.trace_keys_released_parts,
            ),
            ("slo_gate_head_bytes", "gauge", "Memory held by rows in the in-memory head.", &self.head_bytes),
            ("slo_gate_head_items", "gauge", "Items held in the in-memory head.", &self.head_items),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", value.load(Relaxed));
        }
        for (name, help, values) in [
            ("slo_gate_connections_open", "Connections open now, by listener.", &self.connections_open),
            (
                "slo_gate_connections_refused_total",
                "Connections accepted and closed at once because the connection cap was reached, by listener.",
                &self.connections_refused,
            ),
            (
                "slo_gate_connections_idle_closed_total",
                "Connections closed by the server after the idle timeout, by listener.",
                &self.connections_idle_closed,
            ),
        ] {
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for listener in Listener::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{listener=\"{}\"}} {}",
                    listener.as_str(),
                    values[listener as usize].load(Relaxed)
                );
            }
        }
        for (name, help, value) in [
            ("slo_gate_connections_limit", "The cap on open connections over all listeners.", &self.connections_limit),
            (
                "slo_gate_body_bytes_inflight",
                "Bytes of request bodies (and their decompressed copies) held by requests in flight.",
                &self.body_bytes_inflight,
            ),
            (
                "slo_gate_body_bytes_limit",
                "The budget of request body bytes in flight (server.max_inflight_body_bytes).",
                &self.body_bytes_limit,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}", value.load(Relaxed));
        }
        {
            let name = "slo_gate_body_refused_total";
            let _ = writeln!(
                out,
                "# HELP {name} Request bodies refused because the in-flight budget was spent (overloaded) or cut off because they stalled or were too slow (timeout).\n# TYPE {name} counter"
            );
            let refused = self.body_refused.lock().unwrap_or_else(|e| e.into_inner());
            for reason in ["overloaded", "timeout"] {
                let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", refused.get(reason).copied().unwrap_or(0));
            }
        }
        self.notify.render(&mut out);
        self.analysis.render(&mut out);
        self.tls.render(&mut out);
        let secs = self.flush_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "# HELP slo_gate_flush_seconds_total Time spent writing parts.\n# TYPE slo_gate_flush_seconds_total counter\nslo_gate_flush_seconds_total {secs}"
        );
        out
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
