//! The `slo-gate` command line. `main.rs` only calls [`run`]; each subcommand lives in its own
//! module under `commands/` and calls into the library crates.

pub mod collector_client;
pub mod commands;

use clap::{Parser, Subcommand};

/// slo-gate: an observability pipeline that blocks releases which would breach their SLO.
#[derive(Debug, Parser)]
#[command(name = "slo-gate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector: OTLP receivers, embedded storage and the query API.
    Serve(commands::serve::ServeArgs),
    /// Flame graphs and function-level regressions from pprof files.
    #[command(subcommand)]
    Flame(commands::flame::FlameCommand),
}

/// Parses the command line and runs the subcommand; the exit code is the caller's to map.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Flame(command) => commands::flame::run(command),
    }
}
