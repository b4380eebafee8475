//! `slo-gate flame`: flame graphs and function-level regressions from pprof files.
//!
//! Reads and writes the files; folding, rendering and the statistics are `analyzer::flame`'s.
//! With `--collector`, `flame diff` asks a running collector to compare two versions of a service
//! from its stored profiles, with the same statistics.

use std::io::Write;
use std::path::{Path, PathBuf};

use analyzer::flame::{self, Metric, Regression, RegressionOptions, Run, svg};
use analyzer::pprof::{self, Profile, ValueType};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use slo_contracts::HumanDuration;

use crate::collector_client::{CollectorClient, selector};

/// Subcommands of `slo-gate flame`.
#[derive(Debug, Subcommand)]
pub enum FlameCommand {
    /// Merge profiles of one type and draw them as one flame graph (or write folded stacks).
    Render(RenderArgs),
    /// Compare baseline and candidate profiles: differential flame graph and regressed functions.
    Diff(Box<DiffArgs>),
}

/// Flags of `slo-gate flame render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// pprof files (gzipped or plain profile.proto), all of one type.
    #[arg(required = true)]
    pub profiles: Vec<PathBuf>,
    /// Output file: SVG, or folded stacks with --folded.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Write folded stacks (`root;child;leaf value`) instead of an SVG.
    #[arg(long)]
    pub folded: bool,
    /// Sample type to draw (cpu, alloc_space, inuse_space, ...) [default: the profile's default].
    #[arg(long = "type")]
    pub sample_type: Option<String>,
    /// Title of the SVG [default: the sample type].
    #[arg(long)]
    pub title: Option<String>,
}

/// Flags of `slo-gate flame diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Baseline runs: a pprof file is one run (one process profiled once), a directory is one run
    /// whose files are profiles of one process. Runs are the replicates of the significance test:
    /// give two or more per side, or it cannot tell a change from the difference between two
    /// processes of one build.
    #[arg(long, num_args = 1.., required_unless_present = "collector", conflicts_with = "collector")]
    pub baseline: Vec<PathBuf>,
    /// Candidate runs: pprof files or directories of them, as for --baseline.
    #[arg(long, num_args = 1.., required_unless_present = "collector", conflicts_with = "collector")]
    pub candidate: Vec<PathBuf>,
    /// Compare profiles stored in a running collector (its --api URL, e.g. http://127.0.0.1:4040)
    /// instead of files; needs --service, --baseline-version and --candidate-version.
    #[arg(long, requires_all = ["service", "baseline_version", "candidate_version"])]
    pub collector: Option<String>,
    /// Collector mode: the service (`service.name`).
    #[arg(long)]
    pub service: Option<String>,
    /// Collector mode: the baseline build (`service.version`).
    #[arg(long)]
    pub baseline_version: Option<String>,
    /// Collector mode: the candidate build (`service.version`).
    #[arg(long)]
    pub candidate_version: Option<String>,
    /// Collector mode: tenant (sent as X-Scope-OrgID).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Collector mode: only profiles from the last DURATION (e.g. 30m, 2h).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub since: Option<HumanDuration>,
    /// Collector mode: start of the window (unix seconds or RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Collector mode: end of the window (unix seconds or RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// Differential flame graph SVG to write (red: larger share in the candidate).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Write differential folded stacks (`stack before after`) to this file (files only).
    #[arg(long, conflicts_with = "collector")]
    pub folded: Option<PathBuf>,
    /// Sample type to compare (cpu, alloc_space, ...) [default: the profile's default]; against a
    /// collector, a profile type id such as process_cpu:cpu:nanoseconds:cpu:nanoseconds, or a
    /// sample type that the service has exactly one profile type for [default: cpu].
    #[arg(long = "type")]
    pub sample_type: Option<String>,
    /// Show at most this many regressed functions.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Smallest increase of a function's share worth reporting, in percentage points.
    #[arg(long, default_value_t = 1.0)]
    pub min_change: f64,
    /// Smallest confidence that the share grew (0..1).
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Judge functions on their own code (self) or with their callees (total).
    #[arg(long, value_enum, default_value_t = MetricArg::SelfShare)]
    pub metric: MetricArg,
    /// Print the regressions as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--metric` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricArg {
    /// The function's own code.
    #[value(name = "self")]
    SelfShare,
    /// The function and its callees.
    #[value(name = "total")]
    TotalShare,
}

impl From<MetricArg> for Metric {
    fn from(m: MetricArg) -> Self {
        match m {
            MetricArg::SelfShare => Metric::SelfShare,
            MetricArg::TotalShare => Metric::TotalShare,
        }
    }
}

/// Runs `slo-gate flame ...`.
pub fn run(command: FlameCommand) -> anyhow::Result<()> {
    match command {
        FlameCommand::Render(args) => render(args),
        FlameCommand::Diff(args) => diff(*args, &mut std::io::stdout().lock()),
    }
}

fn read_profiles(paths: &[PathBuf]) -> anyhow::Result<Vec<Profile>> {
    let mut decoder = pprof::Decoder::default();
    paths
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            decoder.decode(&bytes).with_context(|| format!("cannot decode {}", path.display()))
        })
        .collect()
}

/// Each path as one run: a file is a run of one profile, a directory a run of all its files
/// (sorted by name).
fn read_runs(paths: &[PathBuf]) -> anyhow::Result<Vec<Run>> {
    paths
        .iter()
        .map(|path| {
            let files = if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .with_context(|| format!("cannot list {}", path.display()))?
                    .map(|e| e.map(|e| e.path()))
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("cannot list {}", path.display()))?;
                files.retain(|f| f.is_file());
                files.sort();
                if files.is_empty() {
                    bail!("{} is a directory without profile files", path.display());
                }
                files
            } else {
                vec![path.clone()]
            };
            Ok(Run::new(path.display().to_string(), read_profiles(&files)?))
        })
        .collect()
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn unit_of(profiles: &[Profile], sample_type: Option<&str>) -> String {
    profiles
        .first()
        .and_then(|p| flame::sample_index(p, sample_type, 0).ok().and_then(|i| p.sample_types.get(i)))
        .map_or_else(|| "samples".to_string(), count_name)
}

/// What a flame graph's values count: the sample type's unit, else its name.
fn count_name(t: &ValueType) -> String {
    if t.unit.is_empty() { t.kind.clone() } else { t.unit.clone() }
}

fn render(args: RenderArgs) -> anyhow::Result<()> {
    // Decoded and folded on every core, one decoded profile per thread at a time: a thousand
    // profiles merge in the memory of a few.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let paths = &args.profiles;
    let merger = flame::merge_encoded(paths.len(), args.sample_type.as_deref(), threads, |i| std::fs::read(&paths[i]))
        .map_err(|e| {
            let path = e.position().and_then(|i| paths.get(i)).map_or(String::new(), |p| p.display().to_string());
            match e {
                flame::EncodedMergeError::Load { source, .. } => anyhow::anyhow!("cannot read {path}: {source}"),
                flame::EncodedMergeError::Decode { source, .. } => anyhow::anyhow!("cannot decode {path}: {source}"),
                flame::EncodedMergeError::Merge(source) => anyhow::anyhow!("cannot merge {path}: {source}"),
            }
        })?;
    let count_name = merger.sample_type().map(count_name);
    let folded = merger.finish().context("cannot merge the profiles")?;
    let mut out = Vec::new();
    if args.folded {
        folded.write_folded(&mut out).context("cannot write folded stacks")?;
    } else {
        if folded.lines().is_empty() {
            bail!("the profiles have no samples with a positive value: nothing to draw");
        }
        let options = svg::SvgOptions {
            title: args
                .title
                .unwrap_or_else(|| format!("{} flame graph", args.sample_type.as_deref().unwrap_or("profile"))),
            count_name: count_name.unwrap_or_else(|| "samples".to_string()),
        };
        svg::render(&folded, &options, &mut out).context("cannot render the flame graph")?;
    }
    write_file(&args.output, &out)
}

fn diff(args: DiffArgs, stdout: &mut impl Write) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.confidence) {
        bail!("--confidence must be between 0 and 1, got {}", args.confidence);
    }
    if let Some(url) = &args.collector {
        return diff_collector(url, &args, stdout);
    }
    let baseline_runs = read_runs(&args.baseline)?;
    let candidate_runs = read_runs(&args.candidate)?;
    let kind = args.sample_type.as_deref();
    let options = RegressionOptions {
        sample_type: args.sample_type.clone(),
        min_change_pp: args.min_change,
        min_confidence: args.confidence,
        metric: args.metric.into(),
        ..Default::default()
    };
    let mut comparison =
        flame::detect_regressions(&baseline_runs, &candidate_runs, &options).context("cannot compare the profiles")?;
    comparison.functions.truncate(args.top);
    let all = |runs: Vec<Run>| runs.into_iter().flat_map(|r| r.profiles).collect::<Vec<Profile>>();
    let (baseline, candidate) = (all(baseline_runs), all(candidate_runs));

    if args.output.is_some() || args.folded.is_some() {
        let base = flame::merge(&baseline, kind).context("cannot merge the baseline")?;
        let cand = flame::merge(&candidate, kind).context("cannot merge the candidate")?;
        let lines = flame::differential(&base, &cand);
        if let Some(path) = &args.folded {
            let mut text = lines.join("\n");
            text.push('\n');
            write_file(path, text.as_bytes())?;
        }
        if let Some(path) = &args.output {
            if lines.is_empty() {
                bail!("the profiles have no samples with a positive value: nothing to draw");
            }
            let options = svg::SvgOptions {
                title: "Differential flame graph (baseline normalised to the candidate total)".to_string(),
                count_name: unit_of(&candidate, kind),
            };
            let mut out = Vec::new();
            svg::render_lines(lines.iter().map(String::as_str), &options, &mut out)
                .context("cannot render the differential flame graph")?;
            write_file(path, &out)?;
        }
    }

    let summary = Summary {
        baseline: (comparison.baseline.profiles, comparison.baseline.runs),
        candidate: (comparison.candidate.profiles, comparison.candidate.runs),
        warnings: comparison.warnings(),
    };
    print_regressions(stdout, &comparison.functions, options.metric, args.json, &summary)
}

/// What the comparison rested on: `(profiles, runs)` per side, and its caveats.
struct Summary {
    baseline: (usize, usize),
    candidate: (usize, usize),
    warnings: Vec<String>,
}

fn print_regressions(
    stdout: &mut impl Write,
    found: &[Regression],
    metric: Metric,
    json: bool,
    summary: &Summary,
) -> anyhow::Result<()> {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if json {
        let json = serde_json::Value::Array(found.iter().map(|r| to_json(r, metric)).collect());
        writeln!(stdout, "{}", serde_json::to_string_pretty(&json)?)?;
        // The JSON is the regressions alone; the caveats go where a person sees them.
        for w in &summary.warnings {
            eprintln!("note: {w}");
        }
    } else {
        let ((bp, br), (cp, cr)) = (summary.baseline, summary.candidate);
        writeln!(
            stdout,
            "compared {} from {} with {} from {}",
            plural(bp, "baseline profile"),
            plural(br, "run"),
            plural(cp, "candidate profile"),
            plural(cr, "run")
        )?;
        for w in &summary.warnings {
            writeln!(stdout, "note: {w}")?;
        }
        write_table(stdout, found, metric)?;
    }
    Ok(())
}

/// `flame diff --collector`: the collector compares the stored profiles of the two versions
/// (`/api/v1/flamegraph/diff`, the same statistics as for files) and draws the SVG.
fn diff_collector(url: &str, args: &DiffArgs, stdout: &mut impl Write) -> anyhow::Result<()> {
    let client = CollectorClient::new(url, args.tenant.clone())?;
    // clap's `requires_all` guarantees these in collector mode.
    let service = args.service.as_deref().unwrap_or_default();
    let (base_version, cand_version) =
        (args.baseline_version.as_deref().unwrap_or_default(), args.candidate_version.as_deref().unwrap_or_default());
    let profile_type = resolve_profile_type(&client, service, args.sample_type.as_deref().unwrap_or("cpu"))?;
    let mut query = vec![
        ("type", profile_type.clone()),
        ("baseline", selector(&[("service_name", service), ("service_version", base_version)])),
        ("candidate", selector(&[("service_name", service), ("service_version", cand_version)])),
    ];
    if let Some(since) = args.since {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).context("system clock before 1970")?;
        query.push(("from", now.saturating_sub(since.0).as_secs().to_string()));
    }
    query.extend(args.from.clone().map(|f| ("from", f)));
    query.extend(args.to.clone().map(|t| ("to", t)));
    let mut diff_query = query.clone();
    diff_query.push(("format", "json".into()));
    diff_query.push(("min_change", args.min_change.to_string()));
    diff_query.push(("confidence", args.confidence.to_string()));
    diff_query.push(("metric", if args.metric == MetricArg::TotalShare { "total" } else { "self" }.into()));
    let answer: DiffAnswer = client.get_as("/api/v1/flamegraph/diff", &diff_query)?;

    let (base_count, cand_count) = (answer.baseline_profiles, answer.candidate_profiles);
    for (side, version, n) in [("baseline", base_version, base_count), ("candidate", cand_version, cand_count)] {
        if n == 0 {
            bail!(
                "the collector at {} has no {profile_type} profiles of service {service:?} version {version:?} \
                 in the window: nothing to compare as the {side}",
                client.base_url()
            );
        }
    }
    let mut found: Vec<Regression> = answer
        .regressions
        .iter()
        .map(regression_from_json)
        .collect::<Option<_>>()
        .context("the collector's diff has a malformed regression")?;
    found.truncate(args.top);

    if let Some(path) = &args.output {
        query.push(("format", "svg".into()));
        let svg = client.get("/api/v1/flamegraph/diff", &query)?;
        write_file(path, &svg)?;
    }
    let summary = Summary {
        baseline: (base_count, answer.baseline_runs),
        candidate: (cand_count, answer.candidate_runs),
        warnings: answer.warnings,
    };
    print_regressions(stdout, &found, args.metric.into(), args.json, &summary)
}

/// What `flame diff` reads of the collector's JSON diff (`collector::query::flamegraph`); its
/// flame graph is skipped unparsed.
#[derive(Debug, Deserialize)]
struct DiffAnswer {
    regressions: Vec<serde_json::Value>,
    baseline_profiles: usize,
    candidate_profiles: usize,
    baseline_runs: usize,
    candidate_runs: usize,
    #[serde(default)]
    warnings: Vec<String>,
}

/// The profile type id for `wanted`: itself when it is an id (`a:b:c:d:e`), else the one type of
/// the service whose sample type is `wanted`.
fn resolve_profile_type(client: &CollectorClient, service: &str, wanted: &str) -> anyhow::Result<String> {
    if wanted.contains(':') {
        return Ok(wanted.to_string());
    }
    let types = client.get_json("/api/v1/profile-types", &[])?;
    let of_service: Vec<&serde_json::Value> = types["profile_types"]
        .as_array()
        .map(|list| {
            list.iter().filter(|t| t["services"].as_array().is_some_and(|s| s.iter().any(|s| s == service))).collect()
        })
        .unwrap_or_default();
    let matching: Vec<&str> =
        of_service.iter().filter(|t| t["sample_type"] == wanted).filter_map(|t| t["id"].as_str()).collect();
    match matching.as_slice() {
        [one] => Ok(one.to_string()),
        [] => {
            let known: Vec<&str> = of_service.iter().filter_map(|t| t["id"].as_str()).collect();
            bail!(
                "service {service:?} has no profiles with sample type {wanted:?} at {}; it has: {}",
                client.base_url(),
                if known.is_empty() { "no profiles at all".to_string() } else { known.join(", ") }
            )
        }
        many => bail!("sample type {wanted:?} is ambiguous for service {service:?}; give one of: {}", many.join(", ")),
    }
}

/// A regression of the collector's diff answer (see `collector::query::flamegraph`).
fn regression_from_json(v: &serde_json::Value) -> Option<Regression> {
    let share = |s: &serde_json::Value| -> Option<flame::Share> {
        Some(flame::Share {
            baseline_pct: s["baseline_pct"].as_f64()?,
            candidate_pct: s["candidate_pct"].as_f64()?,
            change_pp: s["change_pp"].as_f64()?,
            z: s["z"].as_f64()?,
            // `null` for a z-test: JSON has no infinity.
            degrees_of_freedom: s["degrees_of_freedom"].as_f64().unwrap_or(f64::INFINITY),
            noise_inflation: s["noise_inflation"].as_f64()?,
            confidence: s["confidence"].as_f64()?,
        })
    };
    Some(Regression {
        function: v["function"].as_str()?.to_string(),
        self_share: share(&v["self_share"])?,
        total_share: share(&v["total_share"])?,
        hottest_path: v["hottest_path"]
            .as_array()?
            .iter()
            .map(|f| f.as_str().map(str::to_string))
            .collect::<Option<_>>()?,
        confidence: v["confidence"].as_f64()?,
    })
}

fn to_json(r: &Regression, metric: Metric) -> serde_json::Value {
    let share = |s: &flame::Share| {
        serde_json::json!({
            "baseline_pct": s.baseline_pct,
            "candidate_pct": s.candidate_pct,
            "change_pp": s.change_pp,
            "confidence": s.confidence,
        })
    };
    serde_json::json!({
        "function": r.function,
        "metric": match metric { Metric::SelfShare => "self", Metric::TotalShare => "total" },
        "change_pp": r.share(metric).change_pp,
        "confidence": r.confidence,
        "self": share(&r.self_share),
        "total": share(&r.total_share),
        "hottest_path": r.hottest_path,
    })
}

fn write_table(out: &mut impl Write, found: &[Regression], metric: Metric) -> std::io::Result<()> {
    let what = match metric {
        Metric::SelfShare => "self",
        Metric::TotalShare => "total",
    };
    if found.is_empty() {
        return writeln!(out, "no function's {what} share grew significantly");
    }
    writeln!(
        out,
        "{:>4}  {:>8} {:>8} {:>9} {:>10}  function / hottest path",
        "rank", "before", "after", "change", "confidence"
    )?;
    for (i, r) in found.iter().enumerate() {
        let s = r.share(metric);
        writeln!(
            out,
            "{:>4}  {:>7.1}% {:>7.1}% {:>+6.1} pp {:>9.1}%  {} ({what})",
            i + 1,
            s.baseline_pct,
            s.candidate_pct,
            s.change_pp,
            r.confidence * 100.0,
            r.function
        )?;
        writeln!(out, "{:>50}{}", "", r.hottest_path.join(" → "))?;
    }
    Ok(())
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
        manifest_dir().join("../testdata/corpus/go-dev").join(run).join("cpu-10s.pb.gz")
    }

    /// `slo-gate flame` as the binary parses it.
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: FlameCommand,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        <Cli as clap::Parser>::try_parse_from(["slo-gate", "diff"].iter().chain(args))
    }

    /// Parses a `slo-gate flame diff ...` command line.
    fn diff_args(args: &[&str]) -> DiffArgs {
        match parse(args).expect("valid command line").command {
            FlameCommand::Diff(args) => *args,
            FlameCommand::Render(_) => unreachable!("parsed `diff`"),
        }
    }

    #[test]
    fn diff_prints_sanitize_labels_first_and_writes_valid_svg() {
        let dir = tempfile::tempdir().expect("tempdir");
        let svg_path = dir.path().join("diff.svg");
        let (fast, slow) = (corpus("fast"), corpus("slow"));
        let args = diff_args(&[
            "--baseline",
            fast.to_str().unwrap(),
            "--candidate",
            slow.to_str().unwrap(),
            "-o",
            svg_path.to_str().unwrap(),
            "--type",
            "cpu",
            "--top",
            "5",
        ]);
        let mut out = Vec::new();
        diff(args, &mut out).expect("diff");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.starts_with("compared 1 baseline profile from 1 run with 1 candidate profile from 1 run\nnote: baseline and candidate have one run each"),
            "{text}"
        );
        let first = text.lines().nth(3).expect("a row");
        assert!(first.contains("main.sanitizeLabels"), "{text}");
        let svg = std::fs::read_to_string(svg_path).expect("svg");
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    }

    fn render_args(profiles: &[&Path], output: &Path, extra: &[&str]) -> RenderArgs {
        let mut args: Vec<&str> = vec!["slo-gate", "render", "-o", output.to_str().unwrap()];
        args.extend(profiles.iter().map(|p| p.to_str().unwrap()));
        args.extend(extra);
        match <Cli as clap::Parser>::try_parse_from(args).expect("valid command line").command {
            FlameCommand::Render(args) => args,
            FlameCommand::Diff(_) => unreachable!("parsed `render`"),
        }
    }

    /// `flame render` merges on every core what a sequential merge gives, draws the unit of the
    /// sample type, and names the file that cannot be read, decoded or merged.
    #[test]
    fn render_merges_files_and_names_the_bad_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runs = ["fast", "slow", "fast-rerun", "slow", "fast"].map(corpus);
        let files: Vec<&Path> = runs.iter().map(PathBuf::as_path).collect();
        let folded_path = dir.path().join("merged.folded");
        render(render_args(&files, &folded_path, &["--folded", "--type", "cpu"])).expect("render folded");
        let decoded = read_profiles(&runs).expect("decode");
        let mut expect = Vec::new();
        flame::merge(&decoded, Some("cpu")).expect("merge").write_folded(&mut expect).expect("write");
        assert_eq!(std::fs::read(&folded_path).expect("folded"), expect);

        let svg_path = dir.path().join("merged.svg");
        render(render_args(&files[..2], &svg_path, &[])).expect("render svg");
        let svg = std::fs::read_to_string(&svg_path).expect("svg");
        assert!(svg.contains("nanoseconds"), "the default sample type (cpu) counts nanoseconds");

        let corrupt = dir.path().join("corrupt.pb.gz");
        std::fs::write(&corrupt, b"\x1f\x8b\x08\x00 not gzip").expect("write");
        let heap = corpus("fast").with_file_name("heap.pb.gz");
        let missing = dir.path().join("missing.pb.gz");
        for (bad, at, expect) in [
            (&corrupt, 3, format!("cannot decode {}: gzip stream is corrupt", corrupt.display())),
            (
                &heap,
                1,
                format!(
                    "cannot merge {}: profile 1 measures inuse_space/bytes, but the first profile measures cpu/nanoseconds",
                    heap.display()
                ),
            ),
            (&missing, 4, format!("cannot read {}: No such file", missing.display())),
        ] {
            let mut with_bad = files.clone();
            with_bad.insert(at, bad.as_path());
            let err = render(render_args(&with_bad, &folded_path, &["--folded"])).expect_err("bad input");
            assert!(format!("{err:#}").starts_with(&expect), "{err:#}");
        }
    }

    #[test]
    fn unreadable_file_is_an_error_naming_it() {
        let slow = corpus("slow");
        let args = diff_args(&["--baseline", "/nonexistent/a.pb.gz", "--candidate", slow.to_str().unwrap(), "--json"]);
        let err = diff(args, &mut Vec::new()).expect_err("missing file");
        assert!(format!("{err:#}").contains("/nonexistent/a.pb.gz"));
    }

    #[test]
    fn collector_mode_needs_the_versions_and_excludes_files() {
        assert!(parse(&["--collector", "http://127.0.0.1:4040", "--service", "s"]).is_err(), "versions missing");
        assert!(
            parse(&[
                "--collector",
                "http://x",
                "--service",
                "s",
                "--baseline-version",
                "1",
                "--candidate-version",
                "2",
                "--baseline",
                "a.pb"
            ])
            .is_err(),
            "files and a collector at once"
        );
        assert!(
            parse(&[
                "--collector",
                "http://x",
                "--service",
                "s",
                "--baseline-version",
                "1",
                "--candidate-version",
                "2"
            ])
            .is_ok()
        );
    }
}
