//! One module per subcommand.

pub mod flame;
pub mod serve;
