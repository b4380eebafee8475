//! `slo-gate demo`: a blocked release, with its reasons, in under a minute.
//!
//! Starts a collector in this process on free loopback ports (data in a temporary directory
//! unless `--data-dir` is given), runs the `demo` crate's instrumented HTTP service — real
//! OpenTelemetry SDK, real CPU profiles — first as the baseline build 1.0.0 and then as the
//! candidate 1.1.0 (slower checkout, more errors, a CPU-heavier pricing function), and runs
//! `slo-gate check` with the bundled contract against it, exactly as CI would.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use demo::{Build, DemoTargets};
use slo_contracts::HumanDuration;

/// Flags of `slo-gate demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long each build serves load.
    #[arg(long, default_value = "15s")]
    pub duration: HumanDuration,
    /// Keep the collector's data here (default: a temporary directory, deleted at the end).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write the gate's reports here (JSON, JUnit, Markdown, the differential flame graph).
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
}

/// Runs the demo; the exit code is the gate's (1: the candidate was blocked, as intended).
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.path().join("data"));
    let (runtime, running, token) = super::check::start_local_collector(&data_dir)?;
    // Not locked: the collector serving in this process must never wait for this thread.
    let out = &mut std::io::stdout();
    writeln!(
        out,
        "collector: OTLP gRPC {}, API http://{} (data in {})",
        running.otlp_grpc,
        running.api,
        data_dir.display()
    )?;
    let targets = DemoTargets { otlp_grpc: running.otlp_grpc, api: running.api };
    let result = (|| -> anyhow::Result<ExitCode> {
        for build in [Build::Baseline, Build::Candidate] {
            writeln!(out, "\nrunning {} build {} for {}...", demo::SERVICE, build.version(), args.duration)?;
            out.flush()?;
            let stats = demo::run_build(build, &targets, args.duration.0)
                .with_context(|| format!("the {} build failed", build.version()))?;
            let routes: Vec<String> = stats.per_route.iter().map(|(route, n)| format!("{route} {n}")).collect();
            writeln!(
                out,
                "  {} requests ({} errors; {}), {} CPU profiles pushed",
                stats.requests,
                stats.errors,
                routes.join(", "),
                stats.profiles_pushed
            )?;
        }
        let contracts = temp.path().join("contracts");
        std::fs::create_dir_all(&contracts)?;
        std::fs::write(contracts.join("demo-checkout.yaml"), demo::contract_yaml())?;
        writeln!(
            out,
            "\n$ slo-gate check --collector http://{} --contracts demo-checkout.yaml --service {} --environment {} --candidate 1.1.0\n",
            running.api,
            demo::SERVICE,
            demo::ENVIRONMENT
        )?;
        out.flush()?;
        let artifacts = args.artifacts.clone();
        let check = super::check::CheckArgs {
            contracts: vec![contracts],
            service: demo::SERVICE.to_string(),
            candidate: Build::Candidate.version().to_string(),
            baseline: None,
            environment: Some(demo::ENVIRONMENT.to_string()),
            since: None,
            from: None,
            to: None,
            collector: Some(format!("http://{}", running.api)),
            tls: Default::default(),
            data_dir: None,
            tenant: None,
            json: artifacts.as_ref().map(|d| d.join("gate.json")),
            junit: artifacts.as_ref().map(|d| d.join("junit.xml")),
            markdown: artifacts.as_ref().map(|d| d.join("gate.md")),
            artifacts: artifacts.clone(),
            no_record: false,
            token_file: None,
            write_token: Some(crate::collector_client::WriteToken(token.clone())),
        };
        super::check::run(check)
    })();
    runtime.block_on(running.stop(Duration::from_secs(5)));
    result
}
