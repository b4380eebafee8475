//! The `slo-gate` command line. `main.rs` only calls [`run`]; each subcommand lives in its own
//! module under `commands/` and calls into the library crates.

pub mod collector_client;
pub mod commands;

use std::process::ExitCode;

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
    Serve(Box<commands::serve::ServeArgs>),
    /// Flame graphs and function-level regressions from pprof files.
    #[command(subcommand)]
    Flame(commands::flame::FlameCommand),
    /// The release gate: evaluate a service's SLO contract on a candidate build; exit code 0
    /// pass, 1 release blocked, 2 error.
    Check(Box<commands::check::CheckArgs>),
    /// A blocked release in under a minute: an in-process collector, an instrumented service in
    /// a baseline and a slower candidate build, and the gate.
    Demo(commands::demo::DemoArgs),
    /// Goroutine leaks from goroutine profiles or text dumps taken over time; exit code 1 when
    /// a leak is found.
    Leaks(commands::leaks::LeaksArgs),
    /// SLO contracts: validate them, print their JSON Schema, import OpenSLO.
    #[command(subcommand)]
    Contracts(commands::contracts::ContractsCommand),
    /// Anomaly scores of CSV series files, and their evaluation against labelled incidents.
    #[command(subcommand)]
    Anomalies(commands::anomalies::AnomaliesCommand),
    /// Throw-away certificates for TLS and mTLS: a CA for one SPIFFE trust domain, a server
    /// certificate, SPIFFE client certificates.
    #[command(subcommand)]
    Certs(commands::certs::CertsCommand),
    /// Tokens for `[auth] token_file`: a fresh secret and the line that grants it.
    #[command(subcommand)]
    Tokens(commands::tokens::TokensCommand),
}

/// Parses the command line and runs the subcommand: `Ok` with its exit code (0, or 1 for a
/// blocked release), `Err` for an error (the caller exits with 2).
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let success = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Serve(args) => success(commands::serve::run(*args)),
        Command::Flame(command) => success(commands::flame::run(command)),
        Command::Check(args) => commands::check::run(*args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Leaks(args) => commands::leaks::run(args),
        Command::Contracts(command) => success(commands::contracts::run(command)),
        Command::Anomalies(command) => success(commands::anomalies::run(command)),
        Command::Tokens(command) => success(commands::tokens::run(command)),
        Command::Certs(command) => success(commands::certs::run(command)),
    }
}

/// An error and its causes as one line for the operator: each cause after the context that
/// wraps it, except a cause whose text the line already holds (many errors name their cause in
/// their own message, and `{:#}` then printed it twice or three times).
pub fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    // `slo-gate serve` with a missing token file printed "cannot read the token file F: No such
    // file or directory (os error 2)" three times over.
    #[test]
    fn an_error_names_each_cause_once() {
        let missing = std::path::Path::new("/nonexistent/gate-tokens");
        let tokens = collector::auth::WriteTokens::from_file(missing).unwrap_err();
        let err = anyhow::Error::from(collector::server::StartError::Tokens(tokens));
        let text = error_text(&err);
        assert_eq!(text.matches("cannot read the token file").count(), 1, "{text}");
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
        assert!(text.contains("/nonexistent/gate-tokens"), "{text}");
        // Context and a cause that does not repeat it are both kept, in order.
        let wrapped = anyhow::anyhow!("disk full").context("flush part 7");
        assert_eq!(error_text(&wrapped), "flush part 7: disk full");
    }
}
