//! The `slo-gate` binary. Exit codes: 0 success, 1 release blocked (`slo-gate check`), 2 error.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
