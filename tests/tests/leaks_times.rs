//! When `slo-gate leaks` takes goroutine `debug=2` text dumps (which carry no time) to have been
//! taken (issue 11 #15): dumps copied with `cp`, checked out from git or downloaded from CI
//! artifacts have modification times that are not their capture times, so a 1/s leak read as
//! 31,250/min, or all the dumps as one snapshot. Times come from `--interval`/`--times`, a
//! timestamp in the file name, or modification times only when they are plausible; otherwise
//! the command says what to pass.
//!
//! The dumps are the `go-dev` corpus' nine `debug=2` snapshots of its leaking program, taken 5 s
//! apart (`testdata/corpus/go-dev/fast`, see its README): two stacks grow at about 60/min.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// The corpus' dumps in time order.
fn corpus_dumps() -> Vec<PathBuf> {
    let dir = e2e::manifest_dir().join("../testdata/corpus/go-dev/fast");
    (0..=40).step_by(5).map(|t| dir.join(format!("goroutine-t{t:02}.debug2.txt"))).collect()
}

/// Copies the dumps into a new folder under the names `name(i)`, with modification times
/// `mtime(i)`.
fn copy_dumps(
    root: &Path,
    folder: &str,
    name: impl Fn(usize) -> String,
    mtime: impl Fn(usize) -> SystemTime,
) -> PathBuf {
    let dir = root.join(folder);
    std::fs::create_dir_all(&dir).unwrap();
    for (i, src) in corpus_dumps().iter().enumerate() {
        let dst = dir.join(name(i));
        std::fs::copy(src, &dst).unwrap();
        File::options().write(true).open(&dst).unwrap().set_modified(mtime(i)).unwrap();
    }
    dir
}

fn leaks(args: &[&str], dir: &Path) -> Output {
    Command::new(e2e::binary()).arg("leaks").args(args).arg(dir).output().expect("run slo-gate leaks")
}

/// The two corpus leaks at about 60/min each (what 5 s between dumps gives).
fn assert_two_leaks_at_60_per_minute(out: &Output, what: &str) {
    assert_eq!(out.status.code(), Some(1), "{what}: {}", e2e::output_text(out));
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {}", e2e::output_text(out)));
    let findings = report["findings"].as_array().unwrap();
    let mut functions: Vec<&str> = findings.iter().map(|f| f["blocking_function"].as_str().unwrap()).collect();
    functions.sort_unstable();
    assert_eq!(functions, ["main.closeWhenDone", "main.collectResults"], "{what}: {report:#}");
    for f in findings {
        let rate = f["growth_per_minute"].as_f64().unwrap();
        assert!((40.0..80.0).contains(&rate), "{what}: about 60/min, got {rate}: {report:#}");
    }
}

fn plain_name(i: usize) -> String {
    format!("dump-{}.txt", ["a", "b", "c", "d", "e", "f", "g", "h", "i"][i])
}

// issue 11 #15: after `cp` the dumps' modification times are milliseconds apart: the command
// refuses to guess and says what to pass; with `--interval` the leaks have their real rate.
#[test]
fn copied_dumps_need_their_interval() {
    let root = tempfile::tempdir().unwrap();
    let base = SystemTime::now() - Duration::from_secs(60);
    let dir = copy_dumps(root.path(), "copied", plain_name, |i| base + Duration::from_millis(80 * i as u64));
    let out = leaks(&["--json"], &dir);
    assert_eq!(out.status.code(), Some(2), "a guess from copy times: {}", e2e::output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in ["modification times", "--interval", "--times", "goroutine-20261126T101500Z.txt"] {
        assert!(stderr.contains(needle), "the error names {needle:?}: {}", e2e::output_text(&out));
    }
    assert_two_leaks_at_60_per_minute(&leaks(&["--json", "--interval", "5s"], &dir), "--interval 5s");
    let times = "2026-11-26T10:15:00Z,2026-11-26T10:15:05Z,2026-11-26T10:15:10Z,2026-11-26T10:15:15Z,\
                 2026-11-26T10:15:20Z,2026-11-26T10:15:25Z,2026-11-26T10:15:30Z,2026-11-26T10:15:35Z,2026-11-26T10:15:40Z";
    assert_two_leaks_at_60_per_minute(&leaks(&["--json", "--times", times], &dir), "--times");
    let out = leaks(&["--json", "--times", "2026-11-26T10:15:00Z,2026-11-26T10:15:05Z"], &dir);
    assert_eq!(out.status.code(), Some(2), "two times for nine dumps: {}", e2e::output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("9"), "{}", e2e::output_text(&out));
}

// issue 11 #15: a git checkout gives every dump the same modification time: an error, not
// "1 snapshot, no leaks".
#[test]
fn checked_out_dumps_with_one_time_are_an_error() {
    let root = tempfile::tempdir().unwrap();
    let when = SystemTime::now() - Duration::from_secs(60);
    let dir = copy_dumps(root.path(), "checkout", plain_name, |_| when);
    let out = leaks(&["--json"], &dir);
    assert_eq!(out.status.code(), Some(2), "{}", e2e::output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interval"), "{}", e2e::output_text(&out));
}

// issue 11 #15: a timestamp in the file name wins over modification times, absolute
// (`goroutine-20261126T101500Z.txt`) or as seconds from the first (`goroutine-t005.txt`).
#[test]
fn times_in_file_names_are_used() {
    let root = tempfile::tempdir().unwrap();
    let when = SystemTime::now() - Duration::from_secs(60);
    let absolute =
        copy_dumps(root.path(), "absolute", |i| format!("goroutine-20261126T1015{:02}Z.txt", 5 * i), |_| when);
    assert_two_leaks_at_60_per_minute(&leaks(&["--json"], &absolute), "absolute names");
    let relative = copy_dumps(root.path(), "relative", |i| format!("goroutine-t{:03}.txt", 5 * i), |_| when);
    assert_two_leaks_at_60_per_minute(&leaks(&["--json"], &relative), "offset names");
}

// Dumps saved as they were taken, 5 s apart, keep usable modification times.
#[test]
fn plausible_modification_times_are_used() {
    let root = tempfile::tempdir().unwrap();
    let base = SystemTime::now() - Duration::from_secs(600);
    let dir = copy_dumps(root.path(), "saved", plain_name, |i| base + Duration::from_secs(5 * i as u64));
    assert_two_leaks_at_60_per_minute(&leaks(&["--json"], &dir), "modification times 5 s apart");
}
