//! The pprof decoder against the shared corpus (`testdata/corpus/`):
//! every gzipped `profile.proto` decodes, every legacy-format file gets the legacy error, and
//! for every proto file and every sample type, flat and cum per function equal what
//! `go tool pprof -top` prints. The test runs `go tool pprof` itself; without Go it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use analyzer::pprof::{self, DecodeError, Profile};

/// The package's directory: where cargo runs this test from now (`CARGO_MANIFEST_DIR` at run
/// time), not where it was compiled, so a test binary built from another checkout of the same
/// sources with a shared target directory still reads this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
}

fn corpus() -> std::path::PathBuf {
    manifest_dir().join("../testdata/corpus")
}

/// Every file under `dir`, sorted, so failures are reported in a stable order.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() { pending.push(path) } else { out.push(path) }
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The gzipped profile.proto files of the corpus (recognised by the gzip magic).
fn proto_files() -> Vec<PathBuf> {
    files_under(&corpus()).into_iter().filter(|p| read(p).starts_with(&[0x1f, 0x8b])).collect()
}

fn name(path: &Path) -> String {
    path.strip_prefix(corpus()).unwrap_or(path).display().to_string()
}

fn decode(path: &Path) -> Profile {
    pprof::decode(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", name(path)))
}

#[test]
fn every_gzipped_proto_decodes() {
    let files = proto_files();
    // 3 from google/pprof, 15 in each of the 3 go-dev runs.
    assert_eq!(files.len(), 48, "{files:#?}");
    for path in &files {
        let profile = decode(path);
        assert!(!profile.sample_types.is_empty(), "{}: no sample types", name(path));
    }
}

/// Facts the corpus READMEs state about each file.
#[test]
fn decoded_profiles_match_the_readmes() {
    let check = |file: &str, types: &str, samples: usize, type_id: &str| {
        let profile = decode(&corpus().join(file));
        let got: Vec<String> = profile.sample_types.iter().map(|t| format!("{}/{}", t.kind, t.unit)).collect();
        assert_eq!(got.join(" "), types, "{file}");
        assert_eq!(profile.samples.len(), samples, "{file}");
        let index = profile.default_sample_index().expect("a sample type");
        assert_eq!(pprof::profile_type_id(&profile, index).map(|t| t.to_string()).as_deref(), Some(type_id), "{file}");
    };
    check(
        "pprof/internal/report/testdata/sample.cpu",
        "samples/count cpu/nanoseconds",
        76,
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
    );
    // The file holds 52 sample records; the README's 50 is what `go tool pprof -raw` shows after
    // merging records with the same stack, as pprof does whenever it loads a profile.
    check(
        "pprof/internal/driver/testdata/cppbench.cpu_no_samples_type",
        "cpu/nanoseconds",
        52,
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
    );
    let cppbench = decode(&corpus().join("pprof/internal/driver/testdata/cppbench.cpu_no_samples_type"));
    let mut stacks: Vec<Vec<&pprof::Frame>> = Vec::new();
    for sample in &cppbench.samples {
        let stack: Vec<&pprof::Frame> = cppbench.stack(sample).collect();
        if !stacks.contains(&stack) {
            stacks.push(stack);
        }
    }
    assert_eq!(stacks.len(), 50);
    // The only corpus profile with drop_frames. It is not symbolized, so pprof's pruning (which
    // matches function names) changes nothing and flat_and_cum, which does not prune, still
    // matches `go tool pprof` on it.
    let drop = cppbench.drop_frames.as_deref().unwrap_or_default();
    assert!(drop.starts_with("ProfileData::Add|ProfileData::prof_handler|"), "{drop}");
    assert!(cppbench.samples.iter().flat_map(|s| cppbench.stack(s)).all(|f| f.function.is_empty()));
    check(
        "pprof/internal/driver/testdata/go.nomappings.crash",
        "alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes",
        2,
        "memory:inuse_space:bytes:space:bytes",
    );
    let go_dev = |file: &str, types: &str, type_id: &str| {
        for run in ["fast", "slow", "fast-rerun"] {
            let path = corpus().join("go-dev").join(run).join(file);
            let profile = decode(&path);
            let got: Vec<String> = profile.sample_types.iter().map(|t| format!("{}/{}", t.kind, t.unit)).collect();
            assert_eq!(got.join(" "), types, "{run}/{file}");
            let index = profile.default_sample_index().expect("a sample type");
            assert_eq!(
                pprof::profile_type_id(&profile, index).map(|t| t.to_string()).as_deref(),
                Some(type_id),
                "{run}/{file}"
            );
        }
    };
    let heap = "alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes";
    go_dev("cpu-10s.pb.gz", "samples/count cpu/nanoseconds", "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
    go_dev("heap.pb.gz", heap, "memory:inuse_space:bytes:space:bytes");
    go_dev("allocs.pb.gz", heap, "memory:alloc_space:bytes:space:bytes");
    go_dev("goroutine-t40.pb.gz", "goroutine/count", "goroutine:goroutine:count:goroutine:count");
    go_dev("mutex.pb.gz", "contentions/count delay/nanoseconds", "mutex:delay:nanoseconds:contentions:count");
    go_dev("block.pb.gz", "contentions/count delay/nanoseconds", "block:delay:nanoseconds:contentions:count");
    go_dev("threadcreate.pb.gz", "threadcreate/count", "threadcreate:threadcreate:count:threadcreate:count");

    // The leak the go-dev README describes: 40 goroutines parked in main.closeWhenDone at t=40 s.
    let goroutines = decode(&corpus().join("go-dev/fast/goroutine-t40.pb.gz"));
    let top = pprof::flat_and_cum(&goroutines, 0).expect("goroutine sample type");
    assert_eq!(top.get("main.closeWhenDone").map(|&(_, cum)| cum), Some(40));
    assert_eq!(top.get("main.collectResults").map(|&(_, cum)| cum), Some(40));
}

#[test]
fn legacy_formats_get_the_legacy_error() {
    let dir = corpus().join("pprof/profile/testdata");
    let legacy: Vec<PathBuf> =
        files_under(&dir).into_iter().filter(|p| p.extension().is_none_or(|e| e != "string")).collect();
    // go.crc32.cpu, gobench.{cpu,heap}, go.godoc.thread, cppbench.{cpu,heap,growth,contention,thread},
    // java.{cpu,heap,contention}.
    assert_eq!(legacy.len(), 12, "{legacy:#?}");
    for path in &legacy {
        match pprof::decode(&read(path)) {
            Err(err @ DecodeError::Legacy { .. }) => {
                assert!(err.to_string().contains("legacy (pre-proto) profile format is not supported"), "{err}")
            }
            other => panic!("{}: expected the legacy error, got {other:?}", name(path)),
        }
    }
}

/// Runs `go tool pprof -top` on `path` for one sample index and parses its table.
///
/// `-unit=ns` makes pprof print every value unscaled: nanoseconds stay nanoseconds, bytes stay
/// bytes (`123B`) and counts get a meaningless `ns` suffix, so the numbers are exact integers
/// rather than rounded `1.2s`. `-nodefraction=0 -edgefraction=0 -nodecount=…` keep every node;
/// `-symbolize=none` stops pprof from looking for the profiled binaries.
fn go_pprof_top(go: &GoEnv, path: &Path, sample_index: usize) -> BTreeMap<String, (i64, i64)> {
    let output = go
        .command()
        .args(["tool", "pprof", "-symbolize=none", "-top", "-nodecount=1000000", "-nodefraction=0"])
        .args(["-edgefraction=0", "-unit=ns"])
        .arg(format!("-sample_index={sample_index}"))
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("run go tool pprof: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "go tool pprof failed on {} -sample_index={sample_index}: {}\n{stdout}",
        name(path),
        String::from_utf8_lossy(&output.stderr)
    );
    parse_top(&stdout).unwrap_or_else(|e| panic!("{} -sample_index={sample_index}: {e}\n{stdout}", name(path)))
}

/// Parses the rows of `go tool pprof -top`: `flat flat% sum% cum cum% name`.
fn parse_top(text: &str) -> Result<BTreeMap<String, (i64, i64)>, String> {
    let mut lines = text.lines();
    lines.by_ref().find(|l| l.split_whitespace().next() == Some("flat")).ok_or("no table header")?;
    let mut table: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for line in lines {
        let mut rest = line;
        let mut columns = Vec::new();
        for _ in 0..5 {
            rest = rest.trim_start();
            let end = rest.find(char::is_whitespace).ok_or_else(|| format!("short row {line:?}"))?;
            columns.push(&rest[..end]);
            rest = &rest[end..];
        }
        // pprof marks a node inlined at some or all call sites; the name is what precedes that.
        let name = rest.trim();
        let function =
            name.strip_suffix(" (inline)").or_else(|| name.strip_suffix(" (partial-inline)")).unwrap_or(name);
        let entry = table.entry(function.to_string()).or_default();
        entry.0 += exact(columns[0])?;
        entry.1 += exact(columns[3])?;
    }
    Ok(table)
}

/// An unscaled pprof value such as `2930000000ns`, `1024B` or `0`.
fn exact(value: &str) -> Result<i64, String> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    digits.parse().map_err(|_| format!("value {value:?} is not an exact integer"))
}

/// A `go` command isolated from the machine: caches and temp files in a temp dir, no network.
struct GoEnv {
    dir: tempfile::TempDir,
}

impl GoEnv {
    fn new() -> GoEnv {
        let env = GoEnv { dir: tempfile::tempdir().expect("temp dir") };
        match env.command().arg("version").output() {
            Ok(out) if out.status.success() => env,
            _ => panic!(
                "this test compares with `go tool pprof`, and `go` is not installed: run `apt-get install -y golang-go`"
            ),
        }
    }

    fn command(&self) -> Command {
        let dir = self.dir.path();
        let mut cmd = Command::new("go");
        cmd.env("GOCACHE", dir.join("gocache"))
            .env("GOPATH", dir.join("gopath"))
            .env("PPROF_TMPDIR", dir.join("pprof"))
            .env("HOME", dir)
            .env("GOFLAGS", "")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOTELEMETRY", "off")
            .env_remove("PPROF_BINARY_PATH");
        cmd
    }
}

#[test]
fn flat_and_cum_match_go_tool_pprof() {
    let go = GoEnv::new();
    let mut checked = 0;
    let files = proto_files();
    for path in &files {
        let profile = decode(path);
        for index in 0..profile.sample_types.len() {
            let ours = pprof::flat_and_cum(&profile, index).expect("index in range");
            let theirs = go_pprof_top(&go, path, index);
            assert_eq!(ours, theirs, "{} sample type {index} ({:?})", name(path), profile.sample_types[index]);
            checked += 1;
        }
    }
    // 48 files: sample.cpu 2, cppbench 1, nomappings 4; per go-dev run 9 goroutine + cpu 2 +
    // heap 4 + allocs 4 + mutex 2 + block 2 + threadcreate 1 = 24.
    assert_eq!(checked, 2 + 1 + 4 + 3 * 24);
}

/// `drop_frames`/`keep_frames` set on real profiles: our pruned flat and cum equal what
/// `go tool pprof` prints after its own pruning. The patterns cover a whole-location match, a
/// match on an inlined line (a location cut partway), a method name (pprof matches `main.(*T).m`
/// as `main.`), a match at the root (which prunes nothing), and `keep_frames` overriding a drop.
#[test]
fn drop_and_keep_frames_match_go_tool_pprof() {
    use prost::Message;
    let go = GoEnv::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: [(&str, &str, Option<&str>); 7] = [
        ("go-dev/slow/cpu-10s.pb.gz", "encoding/json\\..*", None),
        ("go-dev/slow/cpu-10s.pb.gz", "runtime\\..*", Some("runtime\\.(mallocgc|memmove)")),
        ("go-dev/slow/cpu-10s.pb.gz", "main\\.", None),
        ("go-dev/slow/cpu-10s.pb.gz", "runtime\\.goexit|main\\.fetchBatch\\.func1", None),
        ("go-dev/fast/allocs.pb.gz", "reflect\\..*|strconv\\..*", None),
        ("pprof/internal/report/testdata/sample.cpu", "math\\.Abs|runtime\\.add", None),
        ("pprof/internal/report/testdata/sample.cpu", "runtime\\.", None),
    ];
    for (i, (file, drop, keep)) in cases.iter().enumerate() {
        let path = corpus().join(file);
        let raw = {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(read(&path).as_slice()), &mut out)
                .expect("gunzip");
            out
        };
        let mut wire = pprof::proto::Profile::decode(raw.as_slice()).expect("proto");
        wire.string_table.push(drop.to_string());
        wire.drop_frames = wire.string_table.len() as i64 - 1;
        if let Some(keep) = keep {
            wire.string_table.push(keep.to_string());
            wire.keep_frames = wire.string_table.len() as i64 - 1;
        }
        let pruned = dir.path().join(format!("case{i}.pb"));
        std::fs::write(&pruned, wire.encode_to_vec()).expect("write");
        let ours_before = pprof::flat_and_cum(&decode(&path), 0).expect("index");
        let profile = decode(&pruned);
        for index in 0..profile.sample_types.len() {
            let ours = pprof::flat_and_cum(&profile, index).expect("index");
            let theirs = go_pprof_top(&go, &pruned, index);
            assert_eq!(ours, theirs, "{file} drop {drop:?} keep {keep:?} sample type {index}");
        }
        // The root-only pattern prunes nothing (pprof never cuts above the first kept frame); every
        // other pattern must change something, or the case tests nothing.
        let ours_after = pprof::flat_and_cum(&profile, 0).expect("index");
        let root_only = drop.starts_with("runtime\\.goexit");
        assert_eq!(ours_before == ours_after, root_only, "{file} drop {drop:?}: pruned nothing or something");
    }
}

#[test]
fn invalid_drop_frames_is_a_decode_error() {
    use prost::Message;
    let wire = pprof::proto::Profile {
        string_table: vec![String::new(), "main.(".to_string()],
        drop_frames: 1,
        ..Default::default()
    };
    let err = pprof::decode(&wire.encode_to_vec()).expect_err("bad regex");
    assert!(matches!(err, DecodeError::FrameRegex { field: "drop_frames", .. }), "{err}");
}
