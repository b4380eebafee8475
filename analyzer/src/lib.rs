//! Pure computation over stored telemetry: SLIs, dynamic baselines, baseline-vs-candidate
//! comparisons, flame graphs, goroutine leaks. It takes values and returns values: no
//! sockets, no files, no clocks (Architecture Invariant, checked in CI).

pub mod anomaly_eval;
pub mod baseline;
pub mod burn;
pub mod compare;
pub mod correlate;
pub mod flame;
pub mod gate;
pub mod hash;
pub mod leaks;
pub mod pprof;
mod xml;
