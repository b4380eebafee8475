//! The Python interpreter the end-to-end tests run real Python clients and decoders with: the
//! OpenTelemetry SDK's exporters, the `pyroscope-io` agent, `opentelemetry-proto`'s generated
//! types, PyYAML (`tests/python/requirements.txt`).

use std::path::PathBuf;
use std::process::Command;

/// How to get the Python side, said by every failure that is about its absence.
pub const INSTALL: &str = "python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt";

/// `SLO_GATE_PYTHON`, else the repository's `.venv`, after checking that it runs and can
/// import every module of `imports` (comma-separated, as in a Python `import` statement).
/// Panics with the install command otherwise: a missing peer fails the test, never skips it.
pub fn interpreter(imports: &str) -> PathBuf {
    let root = crate::manifest_dir().join("..");
    let python =
        std::env::var_os("SLO_GATE_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".venv/bin/python"));
    match Command::new(&python).args(["-c", &format!("import {imports}")]).output() {
        Err(err) => panic!(
            "cannot run the Python interpreter {} ({err}); from the repository root run `{INSTALL}` \
             (or point SLO_GATE_PYTHON at a Python that can import {imports})",
            python.display()
        ),
        Ok(out) if !out.status.success() => panic!(
            "{} cannot import {imports}:\n{}\nfrom the repository root run `{INSTALL}`",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => python,
    }
}
