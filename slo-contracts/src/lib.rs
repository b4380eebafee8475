//! The formats users write by hand, shared by every other crate: this is the leaf of the
//! crate graph and does no I/O.
//!
//! For now it holds the human duration syntax (`420ms`, `30s`, `14d`, `1h30m`) that both
//! the collector's configuration and the SLO contracts use.

pub mod duration;

pub use duration::{DurationError, HumanDuration};
