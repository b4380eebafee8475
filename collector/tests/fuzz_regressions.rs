//! Every input a fuzz target crashed on (`testdata/fuzz/<target>/`), replayed through the same
//! code the target runs (`fuzz/src/lib.rs`, included here), so a fixed crash stays fixed in the
//! normal test suite. `docs/fuzzing.md` lists what each input found.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz;

/// The package's directory: where cargo runs this test from now (`CARGO_MANIFEST_DIR` at run
/// time), not where it was compiled, so a test binary built from another checkout of the same
/// sources with a shared target directory still reads this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
}

#[test]
fn saved_fuzz_inputs_pass_their_targets() {
    let root = manifest_dir().join("../testdata/fuzz");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&root).expect("testdata/fuzz") {
        let dir = entry.unwrap().path();
        let target = dir.file_name().unwrap().to_string_lossy().into_owned();
        let run = fuzz::TARGETS
            .iter()
            .find(|(name, _)| *name == target)
            .unwrap_or_else(|| panic!("testdata/fuzz/{target} names no fuzz target"))
            .1;
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            // A panic names the input.
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(result.is_ok(), "testdata/fuzz/{target}/{} fails", file.file_name().unwrap().to_string_lossy());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no saved fuzz input under {}", root.display());
}
