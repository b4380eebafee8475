//! The formats users write by hand, shared by every other crate: this is the leaf of the
//! crate graph and does no I/O (functions take a file name and its text and return values;
//! the `slo-gate` binary reads the files).
//!
//! - [`duration`]: human durations (`420ms`, `30s`, `14d`, `1h30m`), used by the collector's
//!   configuration and by contracts.
//! - SLO contracts (`apiVersion: slo-gate/v1`, `kind: Contract`; see `docs/contracts.md`):
//!   [`parse`] / [`parse_many`] validate contract files and return the domain types of
//!   [`model`] together with every problem found ([`Diagnostic`], with file, line, column
//!   and a hint), never only the first; [`json_schema`] is the JSON Schema generated from the
//!   wire types of [`wire`]; [`import_openslo`] converts OpenSLO v1 `SLO` documents into a
//!   contract.
//! - SLO targets (`slo:` on an objective, [`Slo`]): the target, the compliance window, which
//!   events are good, and the burn-rate alerts that fit the window, for the analyzer's error
//!   budgets (`analyzer::burn`).
//!
//! Why the validator walks a YAML tree by hand instead of deserialising with serde, and how
//! the schema is kept in step with it, is in `docs/adr/0003-contract-validation.md`.

pub mod criterion;
pub mod diagnostic;
pub mod duration;
mod emit;
pub mod model;
pub mod openslo;
pub mod validate;
pub mod wire;
mod yaml;

pub use criterion::{CriterionError, parse_criterion};
pub use diagnostic::{Diagnostic, Location, Severity};
pub use duration::{DurationError, HumanDuration};
pub use model::{
    Aggregation, AlertSeverity, Baseline, Bound, BurnAlert, Contract, CpuNormalize, Criterion, GatePolicy, GoodEvents,
    Indicator, MetricSelector, NoData, Objective, OnViolation, Op, RatioOf, ScoreThresholds, Share, Slo, SpanSelector,
    Unit, WORKBOOK_BURN_ALERTS,
};
pub use openslo::import_openslo;
pub use validate::{API_VERSION, parse, parse_many};
pub use wire::json_schema;
