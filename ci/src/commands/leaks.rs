//! `slo-gate leaks FILE_OR_DIR...`: goroutine leaks from snapshot files, as `go tool pprof`
//! works on files. Reads goroutine profiles (gzipped or plain `profile.proto`, e.g. from
//! `/debug/pprof/goroutine`) or `debug=2` / `runtime.Stack(all=true)` text dumps, orders them by
//! the time in each profile or, for text dumps, by `--interval`/`--times`, the time in the file
//! names or plausible modification times (`analyzer::leaks::times`), and runs
//! `analyzer::leaks::detect`. Exit code 1 when a leak is found (so a test job can fail on it),
//! 0 when none, 2 on bad input.
//!
//! Each folder given is one process (run), and the files given directly are one more; counts of
//! different processes are never added up. With one process the report is that process's; with
//! several, each is judged on its own and the same leak in several of them is one finding with
//! each process's rate (`analyzer::leaks::across`), before each process's own report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::UNIX_EPOCH;

use analyzer::leaks::{self, ExplicitTimes, LeakOptions, LeakReport, Snapshot, SnapshotFile, TimeSource, across};
use anyhow::{Context, bail};
use clap::Args;
use slo_contracts::HumanDuration;

/// Flags of `slo-gate leaks`.
#[derive(Debug, Args)]
pub struct LeaksArgs {
    /// Snapshot files, or folders of them (other files in a folder are skipped with a note).
    /// Each folder is one process; the files given directly are one process together.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Smallest growth that counts as a leak, goroutines per minute.
    #[arg(long, default_value_t = 1.0)]
    pub min_growth: f64,
    /// Smallest confidence (0..1) that a cluster grows.
    #[arg(long, default_value_t = 0.99)]
    pub confidence: f64,
    /// Ignore goroutines whose top function is this (repeatable), as goleak's IgnoreTopFunction.
    #[arg(long = "ignore-top")]
    pub ignore_top: Vec<String>,
    /// Ignore goroutines with this function anywhere in their stack (repeatable).
    #[arg(long = "ignore-any")]
    pub ignore_any: Vec<String>,
    /// Tell blocking sites apart by file:line, not only by function.
    #[arg(long)]
    pub keep_file_line: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as JUnit XML to this file (one test case per judged cluster; one
    /// test suite per process when there are several).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Where the snapshots came from, carried into every output (JUnit properties, JSON
    /// `source`): `service=checkout`, `version=1.5.0`, `test=TestCheckout` (which also names the
    /// JUnit suite); repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Text dumps (which record no time) were taken this far apart, in file-name order, e.g.
    /// 5s. Without it or --times, a dump's time comes from its file name
    /// (goroutine-20261126T101500Z.txt, or goroutine-t005.txt: seconds from the first) or from
    /// its modification time when those are at least 1 s apart.
    #[arg(long, conflicts_with = "times")]
    pub interval: Option<HumanDuration>,
    /// The times the text dumps were taken, one per file in file-name order: RFC 3339 times
    /// (2026-11-26T10:15:00Z,...) or seconds from any origin (0,5,10,...). With several
    /// processes, --interval and --times apply to each process's dumps.
    #[arg(long, value_name = "T1,T2,...", value_parser = leaks::times::parse_time_list)]
    pub times: Option<TimeList>,
}

/// The `--times` values, nanoseconds (a name of its own so clap reads one comma-separated
/// value rather than repeated ones).
pub type TimeList = Vec<i64>;

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// The kinds of snapshot file; one run reads one kind, so the same moment is not counted twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pprof,
    Text,
}

/// The snapshot paths of one process: a folder, or the files given directly.
#[derive(Debug)]
struct Process {
    /// The folder as given, or the files' common folder (`files` when they have none).
    id: String,
    paths: Vec<PathBuf>,
}

/// Runs `slo-gate leaks`.
pub fn run(args: LeaksArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.confidence) {
        bail!("--confidence must be between 0 and 1, got {}", args.confidence);
    }
    let stderr = &mut std::io::stderr().lock();
    let explicit = match (&args.interval, &args.times) {
        (Some(d), _) => Some(ExplicitTimes::Interval(d.0)),
        (None, Some(times)) => Some(ExplicitTimes::List(times.clone())),
        (None, None) => None,
    };
    let options = LeakOptions {
        min_growth_per_minute: args.min_growth,
        min_confidence: args.confidence,
        ignore_top_functions: args.ignore_top.clone(),
        ignore_any_functions: args.ignore_any.clone(),
        keep_file_line: args.keep_file_line,
    };
    let processes = processes(&args.paths)?;
    if let [process] = processes.as_slice() {
        let mut snapshots = read(&process.paths, stderr)?;
        set_times(&mut snapshots, explicit.as_ref(), stderr)?;
        let mut report = leaks::detect(&snapshots.into_iter().map(|s| s.2).collect::<Vec<_>>(), &options);
        report.source = args.labels.clone();
        return write_one(&args, &report);
    }
    let mut read_all = Vec::with_capacity(processes.len());
    for process in &processes {
        read_all.push(read(&process.paths, stderr).with_context(|| format!("in {}", process.id))?);
    }
    // --interval and --times are for the processes whose snapshots record no time.
    if explicit.is_some() && !read_all.iter().any(|s| needs_times(s)) {
        bail!("{EXPLICIT_TIMES_NOT_NEEDED}");
    }
    let mut reports: Vec<(String, LeakReport)> = Vec::with_capacity(processes.len());
    for (process, mut snapshots) in processes.iter().zip(read_all) {
        let explicit = explicit.as_ref().filter(|_| needs_times(&snapshots));
        set_times(&mut snapshots, explicit, stderr).with_context(|| format!("in {}", process.id))?;
        let snapshots: Vec<Snapshot> = snapshots.into_iter().map(|s| s.2).collect();
        let mut report = leaks::detect(&snapshots, &options);
        report.source = args.labels.clone();
        report.source.push(("run".to_string(), process.id.clone()));
        reports.push((process.id.clone(), report));
    }
    let found = leaks::group_across_runs(&reports);
    let out = &mut std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&across::report_json(&reports, &found))?)?;
    } else {
        out.write_all(across::text(&reports, &found, args.min_growth).as_bytes())?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, leaks::junit::junit_runs(&reports))
            .with_context(|| format!("cannot write the JUnit report to {}", path.display()))?;
    }
    Ok(if found.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Writes the report of one process, as text or JSON, and its JUnit file.
fn write_one(args: &LeaksArgs, report: &LeakReport) -> anyhow::Result<ExitCode> {
    let out = &mut std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&leaks::report::json(report))?)?;
    } else {
        out.write_all(analyzer::leaks::report::text(report).as_bytes())?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, leaks::junit::junit(report))
            .with_context(|| format!("cannot write the JUnit report to {}", path.display()))?;
    }
    Ok(if report.findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The processes of `paths`: one per folder, in the order given, then one of the files given
/// directly. A process given twice (`a` and `a/`, or a folder and files in it) is an error: its
/// snapshots would count twice.
fn processes(paths: &[PathBuf]) -> anyhow::Result<Vec<Process>> {
    let mut processes: Vec<Process> = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        let is_dir = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.is_dir();
        if is_dir {
            processes.push(Process { id: folder_id(path), paths: vec![path.clone()] });
        } else {
            files.push(path.clone());
        }
    }
    if !files.is_empty() {
        let mut parents = files.iter().map(|f| f.parent().map(folder_id).unwrap_or_default());
        let first = parents.next().unwrap_or_default();
        let id = if !first.is_empty() && parents.all(|p| p == first) { first } else { "files".to_string() };
        processes.push(Process { id, paths: files });
    }
    if processes.len() > 1 {
        for (i, p) in processes.iter().enumerate() {
            if processes[..i].iter().any(|q| q.id == p.id) {
                bail!("{} is given twice: each folder is one process, and the files given directly are one more", p.id);
            }
        }
    }
    Ok(processes)
}

/// A folder as the user wrote it, without trailing slashes (`.` for the current folder).
fn folder_id(path: &Path) -> String {
    let text = path.to_string_lossy();
    let trimmed = text.trim_end_matches('/');
    if trimmed.is_empty() && text.starts_with('/') {
        "/".to_string()
    } else if trimmed.is_empty() {
        ".".to_string()
    } else {
        trimmed.to_string()
    }
}

/// One process's snapshots from `paths` (files, or folders of them), without times yet for text
/// dumps ([`set_times`]).
fn read(paths: &[PathBuf], stderr: &mut impl Write) -> anyhow::Result<Vec<(Kind, PathBuf, Snapshot)>> {
    let mut snapshots: Vec<(Kind, PathBuf, Snapshot)> = Vec::new();
    for path in paths {
        let is_dir = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.is_dir();
        for file in files(path)? {
            match read_snapshot(&file) {
                Ok(Some((kind, snapshot))) => snapshots.push((kind, file, snapshot)),
                // In a folder, other profiles and files are expected (a pprof folder has CPU
                // and heap profiles too); named explicitly, they are an error.
                Ok(None) if is_dir => writeln!(stderr, "skipping {}: not a goroutine snapshot", file.display())?,
                Ok(None) => bail!("{} is not a goroutine profile or a goroutine text dump", file.display()),
                Err(err) => return Err(err),
            }
        }
    }
    if snapshots.is_empty() {
        bail!("no goroutine snapshots found");
    }
    if snapshots.iter().any(|s| s.0 == Kind::Pprof) && snapshots.iter().any(|s| s.0 == Kind::Text) {
        bail!(
            "both goroutine profiles and text dumps were given; they usually record the same moments, \
             so read one kind per run (give the *.pb.gz files or the text dumps)"
        );
    }
    Ok(snapshots)
}

/// `path` itself, or the files under it, sorted.
fn files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))? {
        let p = entry.with_context(|| format!("cannot list {}", path.display()))?.path();
        if p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Sets the snapshots' times: goroutine profiles keep the time they record; text dumps (and
/// profiles without a time) take theirs from `explicit`, their file names or their
/// modification times, as `analyzer::leaks::times` decides.
fn set_times(
    snapshots: &mut [(Kind, PathBuf, Snapshot)],
    explicit: Option<&ExplicitTimes>,
    stderr: &mut impl Write,
) -> anyhow::Result<()> {
    if !needs_times(snapshots) {
        if explicit.is_some() {
            bail!("{EXPLICIT_TIMES_NOT_NEEDED}");
        }
        return Ok(());
    }
    let files: Vec<SnapshotFile> = snapshots
        .iter()
        .map(|(_, path, _)| SnapshotFile {
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            modified_unix_nano: modified(path),
        })
        .collect();
    let (times, source) = leaks::resolve_times(&files, explicit)?;
    if source == TimeSource::ModificationTimes {
        writeln!(stderr, "note: the snapshots' times are their files' modification times")?;
    }
    for ((_, _, snapshot), time) in snapshots.iter_mut().zip(times) {
        snapshot.time_unix_nano = time;
    }
    Ok(())
}

/// Whether some of `snapshots` record no time: text dumps, or profiles without one.
fn needs_times(snapshots: &[(Kind, PathBuf, Snapshot)]) -> bool {
    !snapshots.iter().all(|(kind, _, s)| *kind == Kind::Pprof && s.time_unix_nano != 0)
}

const EXPLICIT_TIMES_NOT_NEEDED: &str =
    "--interval and --times are for text dumps; these goroutine profiles record their own times";

fn modified(path: &Path) -> Option<i64> {
    let since_epoch = std::fs::metadata(path).and_then(|m| m.modified()).ok()?.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_nanos()).ok()
}

/// A goroutine snapshot from `file`, `None` when the file is another kind of file. Text dumps
/// get their times later ([`set_times`]).
fn read_snapshot(file: &Path) -> anyhow::Result<Option<(Kind, Snapshot)>> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    if bytes.starts_with(b"goroutine ") {
        let text = String::from_utf8_lossy(&bytes);
        let snapshot =
            leaks::parse_debug2(&text).with_context(|| format!("{} is not a valid goroutine dump", file.display()))?;
        return Ok(Some((Kind::Text, snapshot)));
    }
    let Ok(profile) = analyzer::pprof::decode(&bytes) else { return Ok(None) };
    if analyzer::pprof::profile_name(&profile) != "goroutine" {
        return Ok(None);
    }
    Ok(Some((Kind::Pprof, leaks::from_pprof(&profile))))
}

#[cfg(test)]
mod tests {
    /// The package's directory: where cargo runs this test from now (`CARGO_MANIFEST_DIR` at run
    /// time), not where it was compiled, so a test binary built from another checkout of the same
    /// sources with a shared target directory still reads this checkout's files.
    fn manifest_dir() -> std::path::PathBuf {
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
    }

    use super::*;

    fn corpus(run: &str) -> PathBuf {
        manifest_dir().join("../testdata/corpus/go-dev").join(run)
    }

    fn args(paths: Vec<PathBuf>) -> LeaksArgs {
        LeaksArgs {
            paths,
            min_growth: 1.0,
            confidence: 0.99,
            ignore_top: Vec::new(),
            ignore_any: Vec::new(),
            keep_file_line: false,
            json: false,
            junit: None,
            labels: Vec::new(),
            interval: None,
            times: None,
        }
    }

    #[test]
    fn corpus_profiles_in_a_folder_find_the_two_leaks() {
        // The folder holds CPU, heap and other profiles and the text dumps too: mixing kinds is
        // refused, so give the goroutine profiles.
        let dir = corpus("fast");
        let profiles: Vec<PathBuf> = files(&dir)
            .unwrap()
            .into_iter()
            .filter(|p| {
                p.file_name().unwrap().to_string_lossy().starts_with("goroutine-t")
                    && p.extension().is_some_and(|e| e == "gz")
            })
            .collect();
        assert_eq!(profiles.len(), 9);
        assert_eq!(run(args(profiles)).unwrap(), ExitCode::from(1));
        let err = run(args(vec![dir])).expect_err("both kinds in one folder");
        assert!(err.to_string().contains("both goroutine profiles and text dumps"), "{err}");
    }

    #[test]
    fn junit_report_has_the_two_corpus_leaks_as_failures() {
        let dir = tempfile::tempdir().unwrap();
        let junit = dir.path().join("leaks.xml");
        let profiles: Vec<PathBuf> = files(&corpus("fast"))
            .unwrap()
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("goroutine-t"))
            .filter(|p| p.extension().is_some_and(|e| e == "gz"))
            .collect();
        let labels =
            vec![("test".to_string(), "TestFetchBatch".to_string()), ("version".to_string(), "1.0.0".to_string())];
        let exit = run(LeaksArgs { junit: Some(junit.clone()), labels, ..args(profiles) }).unwrap();
        assert_eq!(exit, ExitCode::from(1));
        let xml = std::fs::read_to_string(&junit).unwrap();
        let mut failed: Vec<&str> = xml
            .lines()
            .filter(|l| l.trim_start().starts_with("<failure "))
            .map(|l| l.split("message=\"").nth(1).and_then(|m| m.split(' ').next()).unwrap_or(""))
            .collect();
        failed.sort_unstable();
        assert_eq!(failed, ["main.closeWhenDone", "main.collectResults"], "{xml}");
        // The test name names the suite; every label is a property.
        assert!(xml.contains("<testsuite name=\"goroutine leaks: TestFetchBatch\""), "{xml}");
        assert!(xml.contains("<property name=\"version\" value=\"1.0.0\"/>"), "{xml}");
        assert!(xml.contains(" failures=\"2\" errors=\"0\" skipped=\"0\">"), "{xml}");
        assert_eq!(xml.matches("<failure ").count(), 2, "{xml}");
        assert_eq!(xml.matches("</failure>").count(), 2, "{xml}");
    }

    /// Copies the corpus run's files whose names start with `prefix` and end with `suffix` into
    /// `dir`.
    fn copy(run: &str, prefix: &str, suffix: &str, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for file in files(&corpus(run)).unwrap() {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(prefix) && name.ends_with(suffix) {
                std::fs::copy(&file, dir.join(name)).unwrap();
            }
        }
    }

    #[test]
    fn each_folder_is_a_process_and_the_files_given_are_one_more() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        copy("fast", "goroutine-t", ".pb.gz", &a);
        copy("fast-rerun", "goroutine-t", ".pb.gz", &b);
        let ids = |paths: &[PathBuf]| processes(paths).unwrap().into_iter().map(|p| p.id).collect::<Vec<_>>();
        let slash = PathBuf::from(format!("{}/", b.display()));
        assert_eq!(ids(&[a.clone(), slash]), [a.display().to_string(), b.display().to_string()]);
        let some = files(&b).unwrap();
        assert_eq!(
            ids(&[some[0].clone(), a.clone(), some[1].clone()]),
            [a.display().to_string(), b.display().to_string()]
        );
        assert_eq!(ids(&[some[0].clone(), a.join("goroutine-t00.pb.gz")]), ["files"]);
        // A file named without a folder is in the current one.
        assert_eq!(folder_id(Path::new("goroutine-t00.pb.gz").parent().unwrap()), ".");
        assert_eq!(folder_id(Path::new("/")), "/");

        assert_eq!(run(args(vec![a.clone(), b.clone()])).unwrap(), ExitCode::from(1));
        let junit = dir.path().join("leaks.xml");
        let json = LeaksArgs { json: true, junit: Some(junit.clone()), ..args(vec![a.clone(), b.clone()]) };
        assert_eq!(run(json).unwrap(), ExitCode::from(1));
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert_eq!(xml.matches("<testsuite ").count(), 2, "{xml}");
        assert!(xml.contains(&format!("<testsuite name=\"goroutine leaks ({})\"", b.display())), "{xml}");

        // A process given twice would count its snapshots twice.
        let err = run(args(vec![a.clone(), b.clone(), a.join("goroutine-t00.pb.gz")])).expect_err("a twice");
        assert!(
            err.to_string()
                .ends_with("is given twice: each folder is one process, and the files given directly are one more"),
            "{err}"
        );
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let err = run(args(vec![a.clone(), empty.clone()])).expect_err("empty folder");
        assert_eq!(format!("{err:#}"), format!("in {}: no goroutine snapshots found", empty.display()));
    }

    #[test]
    fn interval_is_for_the_processes_of_text_dumps() {
        let dir = tempfile::tempdir().unwrap();
        let (profiles, dumps) = (dir.path().join("profiles"), dir.path().join("dumps"));
        copy("fast", "goroutine-t", ".pb.gz", &profiles);
        copy("slow", "goroutine-t", ".txt", &dumps);
        for file in files(&dumps).unwrap() {
            // No time in the name: the interval is what times them.
            let name = file.file_name().unwrap().to_string_lossy().replace("goroutine-t", "dump-");
            std::fs::rename(&file, dumps.join(name)).unwrap();
        }
        let interval = |paths: Vec<PathBuf>| LeaksArgs { interval: Some("5s".parse().unwrap()), ..args(paths) };
        assert_eq!(run(interval(vec![profiles.clone(), dumps.clone()])).unwrap(), ExitCode::from(1));
        let rerun = dir.path().join("rerun");
        copy("fast-rerun", "goroutine-t", ".pb.gz", &rerun);
        let err = run(interval(vec![profiles.clone(), rerun])).expect_err("profiles only");
        assert!(err.to_string().starts_with("--interval and --times are for text dumps"), "{err}");
    }

    #[test]
    fn a_named_non_goroutine_file_is_an_error() {
        let err = run(args(vec![corpus("fast").join("cpu-10s.pb.gz")])).expect_err("cpu profile");
        assert!(err.to_string().contains("not a goroutine profile"), "{err}");
    }
}
