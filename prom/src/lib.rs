//! Prometheus's data model and query language for slo-gate: series of float samples named by
//! label sets ([`model`]) and the remote-write wire format Prometheus servers and agents send
//! ([`remote_write`]). PromQL is evaluated ([`engine`]) over any source of series
//! ([`model::Queryable`]) —
//! the collector's metric store in production, an in-memory set in tests. No I/O: the
//! collector owns the HTTP API, the storage and the clocks. The metric store keeps each
//! series' samples as compressed [`chunk`]s, encoded and decoded here.
//!
//! The reference for every semantic rule is Prometheus 2.42 (Debian's `prometheus` package), the
//! version the tests compare against: lookback delta, staleness markers, range selection closed
//! at both ends, extrapolation of `rate`/`increase`/`delta`, aggregation and vector matching.

pub mod chunk;
pub mod engine;
pub mod model;
pub mod remote_write;
