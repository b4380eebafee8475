//! The JSON contracts of the native API (`/api/v1/...`): one `Serialize + Deserialize` type per
//! answer (and per body the API takes), written by the handlers in [`crate::query`] and read by
//! the `slo-gate` command line's client, so both sides agree by construction rather than by a
//! `json!` on one side and `v["field"]` on the other. The round-trip tests beside each type keep
//! every field readable back.
//!
//! Grafana's API families (Tempo, Pyroscope) keep their wire types beside their handlers: their
//! shapes are fixed by those projects, not by us.

pub mod admin;
pub mod anomalies;
pub mod flame;
pub mod gate;
pub mod native;
