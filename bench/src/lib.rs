//! What the benchmark binaries share: seeded generators, OTLP attribute values and latency
//! percentiles. Loopback-only load generators live in the binaries themselves.

pub mod http1;
pub mod pprof_file;
pub mod procfs;
pub mod seeded;
