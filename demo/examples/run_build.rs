//! Runs the baseline and then the candidate build against a running collector, e.g.
//!
//! ```sh
//! slo-gate serve --data-dir /tmp/d --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 --api 127.0.0.1:0
//! cargo run -p demo --example run_build -- <otlp-grpc addr> <api addr> [seconds per build]
//! ```

use std::time::{Duration, Instant};

use demo::{Build, DemoTargets, run_build};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [grpc, api, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: run_build <otlp-grpc addr> <api addr> [seconds per build]");
    };
    let seconds: u64 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(15);
    let targets = DemoTargets { otlp_grpc: grpc.parse()?, api: api.parse()? };
    for build in [Build::Baseline, Build::Candidate] {
        let started = Instant::now();
        let stats = run_build(build, &targets, Duration::from_secs(seconds))?;
        println!("{build:?} {} in {:.1?}: {stats:?}", build.version(), started.elapsed());
    }
    Ok(())
}
