#![allow(dead_code)] // each test crate uses a different part of the helper
//! Golden-file helper shared by the data-driven tests: compares `actual` with the file at
//! `expect_path`, or rewrites it when `UPDATE_EXPECT=1` (as rust-analyzer's `expect-test`).

use std::path::{Path, PathBuf};

/// The package's directory: where cargo runs this test from now (`CARGO_MANIFEST_DIR` at run
/// time), not where it was compiled, so a test binary built from another checkout of the same
/// sources with a shared target directory still reads this checkout's files.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
}

/// The crate's `tests/data` directory.
pub fn data_dir() -> PathBuf {
    manifest_dir().join("tests/data")
}

/// Every file in `tests/data/<dir>` ending with `.yaml`, sorted.
pub fn inputs(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir().join(dir))
        .expect("test data directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml") && !path.to_string_lossy().ends_with(".out.yaml"))
        .collect();
    files.sort();
    files
}

/// The input's name relative to `tests/data`, used as the file name in diagnostics so that
/// golden files do not depend on where the repository is checked out.
pub fn display_name(path: &Path) -> String {
    path.strip_prefix(data_dir()).expect("under tests/data").to_string_lossy().into_owned()
}

/// Asserts that `actual` equals the golden file (or rewrites it with `UPDATE_EXPECT=1`).
pub fn assert_golden(expect_path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        std::fs::write(expect_path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(expect_path)
        .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_EXPECT=1 to create it", expect_path.display()));
    assert!(
        expected == actual,
        "{} differs (run with UPDATE_EXPECT=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}",
        expect_path.display()
    );
}
