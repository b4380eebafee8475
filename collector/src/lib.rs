//! The slo-gate collector: receives OTLP telemetry, makes it durable, and answers queries.
//!
//! The pipeline reads top to bottom in the folder names:
//!
//! * [`receive`] — the OTLP/gRPC and OTLP/HTTP receivers: decode, validate, enforce limits;
//! * [`model`] — the storage rows each signal is converted to (one row per span, metric
//!   point, log record or profile sample), and the way back to OTLP;
//! * [`store`] — write-ahead log, in-memory head, Parquet parts and retention;
//! * [`query`] — the read API served on `--api`.
//!
//! [`history`] keeps the gate's run history, which only holders of a write token ([`auth`])
//! may add to. [`server`] wires them together, serving every listener through [`listener`]
//! (one accept path: connection cap, idle and header timeouts); [`error`] holds the one mapping from failures to HTTP and
//! gRPC status codes, so both transports answer the same failure the same way.

pub mod analysis;
pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod history;
pub mod identity;
pub mod listener;
pub mod model;
pub mod notify;
pub mod query;
pub mod receive;
pub mod server;
pub mod signal;
pub mod spanmetrics;
pub mod store;
pub mod telemetry;
pub mod tenant;
pub mod tls;

pub use config::Config;
pub use server::{Collector, RunningCollector};
