//! The `slo-gate` binary. Exit codes: 0 success, 1 release blocked (`slo-gate check`), 2 error.
//!
//! It runs on the system allocator. mimalloc was used while each span held three or four
//! strings of its own; since a request's span texts share one buffer (`collector::model::text`)
//! it gave the same spans per CPU-second in the OTLP benchmark and kept 35–120 MiB more
//! resident memory (v3 and v2 alike), so it was dropped.

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLO_GATE_LOG").unwrap_or_else(|_| "info,pprof=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match ci::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("slo-gate: error: {}", ci::error_text(&err));
            std::process::ExitCode::from(2)
        }
    }
}
