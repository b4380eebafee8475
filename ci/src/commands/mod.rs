//! One module per subcommand.

pub mod anomalies;
pub mod certs;
pub mod check;
pub mod contracts;
pub mod demo;
pub mod flame;
pub mod leaks;
pub mod serve;
pub mod tokens;
