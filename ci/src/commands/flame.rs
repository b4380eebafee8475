//! `slo-gate flame`: flame graphs and function-level regressions from pprof files.
//!
//! Reads and writes the files; folding, rendering and the statistics are `analyzer::flame`'s.
//! With `--collector`, `flame diff` asks a running collector to compare two versions of a service
//! from its stored profiles, with the same statistics.

use std::io::Write;
use std::path::{Path, PathBuf};

use analyzer::flame::report::{self, DiffSummary};
use analyzer::flame::{self, Normalization, Regression, RegressionOptions, Run, Share, Work, svg};
use analyzer::pprof::{self, Profile, ValueType};
use collector::api::flame::{FlameDiff, ProfileType, ProfileTypes};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use slo_contracts::HumanDuration;

use crate::collector_client::{CollectorClient, CollectorTls, env_token, selector};

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
    /// TLS files of an https:// --collector.
    #[command(flatten)]
    pub tls: CollectorTls,
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
    /// Judge functions on their own code (`self`) or with their callees (`total`).
    #[arg(long, default_value_t = Share::Flat)]
    pub metric: Share,
    /// Print the regressions as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How the builds' CPU is made comparable: auto (CPU per request when the work is known, CPU
    /// per second when the loads look alike, else shares), share, rate (CPU per second of
    /// profiled time) or per-request (ADR 0008).
    #[arg(long, value_enum, default_value_t = NormalizeArg::Auto)]
    pub normalize: NormalizeArg,
    /// Files: the work (requests) the baseline's processes did while their profiles ran, all
    /// together; with --work-candidate, CPU is compared per request.
    #[arg(long, conflicts_with = "collector", requires = "work_candidate")]
    pub work_baseline: Option<f64>,
    /// Files: the work the candidate's processes did while their profiles ran.
    #[arg(long, conflicts_with = "collector", requires = "work_baseline")]
    pub work_candidate: Option<f64>,
    /// What one unit of --work-baseline/--work-candidate is, singular.
    #[arg(long, default_value = "request")]
    pub work_unit: String,
    /// Collector mode: the counter whose increase is the work (e.g. http_requests_total)
    /// [default: the builds' SERVER spans].
    #[arg(long, requires = "collector")]
    pub work_metric: Option<String>,
}

/// `--normalize` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NormalizeArg {
    /// Per request when the work is known, per second when the loads look alike, else shares.
    Auto,
    /// Each function's share of its profile.
    Share,
    /// CPU per second of profiled wall time, per process.
    Rate,
    /// CPU per unit of work.
    PerRequest,
}

impl From<NormalizeArg> for Normalization {
    fn from(n: NormalizeArg) -> Self {
        match n {
            NormalizeArg::Auto => Normalization::Auto,
            NormalizeArg::Share => Normalization::Share,
            NormalizeArg::Rate => Normalization::Rate,
            NormalizeArg::PerRequest => Normalization::PerUnit,
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
    let kind = args.sample_type.as_deref();
    // Allocation profiles among CPU profiles are read to charge the runtime's growth.
    let split = kind.is_none_or(|k| k == "cpu");
    let (baseline_runs, baseline_allocs) = split_allocations(read_runs(&args.baseline)?, split);
    let (candidate_runs, candidate_allocs) = split_allocations(read_runs(&args.candidate)?, split);
    let work = |units: Option<f64>| units.map(|units| Work { units, seconds: None, unit: args.work_unit.clone() });
    let options = RegressionOptions {
        sample_type: args.sample_type.clone(),
        min_change_pp: args.min_change,
        min_confidence: args.confidence,
        metric: args.metric,
        normalization: args.normalize.into(),
        baseline_work: work(args.work_baseline),
        candidate_work: work(args.work_candidate),
        ..Default::default()
    };
    let mut comparison =
        flame::detect_regressions(&baseline_runs, &candidate_runs, &options).context("cannot compare the profiles")?;
    comparison.functions.truncate(args.top);
    let allocation = flame::attribute_allocations(&baseline_allocs, &candidate_allocs, &comparison);
    let explanation = flame::explain::sentences(&comparison, &comparison.functions, options.metric, Some(&allocation));
    let all = |runs: Vec<Run>| runs.into_iter().flat_map(|r| r.profiles).collect::<Vec<Profile>>();
    let (baseline, candidate) = (all(baseline_runs), all(candidate_runs));

    if args.output.is_some() || args.folded.is_some() {
        let base = flame::merge(&baseline, kind).context("cannot merge the baseline")?;
        let cand = flame::merge(&candidate, kind).context("cannot merge the candidate")?;
        let absolute = comparison.normalization != Normalization::Share;
        let lines = if absolute {
            flame::differential_scaled(&base, &cand, comparison.baseline_scale)
        } else {
            flame::differential(&base, &cand)
        };
        if let Some(path) = &args.folded {
            let mut text = lines.join("\n");
            text.push('\n');
            write_file(path, text.as_bytes())?;
        }
        if let Some(path) = &args.output {
            if lines.is_empty() {
                bail!("the profiles have no samples with a positive value: nothing to draw");
            }
            let title = if absolute {
                format!("Differential flame graph (absolute change, {})", comparison.measure())
            } else {
                "Differential flame graph (baseline normalised to the candidate total)".to_string()
            };
            let options = svg::SvgOptions { title, count_name: unit_of(&candidate, kind) };
            let mut out = Vec::new();
            svg::render_lines(lines.iter().map(String::as_str), &options, &mut out)
                .context("cannot render the differential flame graph")?;
            write_file(path, &out)?;
        }
    }

    let mut warnings = comparison.notes.clone();
    warnings.extend(comparison.warnings().into_iter().filter(|w| !comparison.notes.contains(w)));
    let summary = DiffSummary {
        baseline: (comparison.baseline.profiles, comparison.baseline.runs),
        candidate: (comparison.candidate.profiles, comparison.candidate.runs),
        warnings,
        normalization: comparison.normalization.name().to_string(),
        measure: comparison.measure(),
        explanation,
    };
    print_regressions(stdout, &comparison.functions, options.metric, args.json, &summary)
}

/// Takes the allocation profiles (`alloc_space`) out of each run when `split`: they are not CPU,
/// but say which code's allocation grew.
fn split_allocations(runs: Vec<Run>, split: bool) -> (Vec<Run>, Vec<Run>) {
    if !split {
        return (runs, Vec::new());
    }
    let is_alloc = |p: &Profile| p.sample_types.iter().any(|t| t.kind == flame::allocation::ALLOC_SPACE);
    let allocs = runs
        .iter()
        .map(|r| Run::new(r.id.clone(), r.profiles.iter().filter(|p| is_alloc(p)).cloned().collect()))
        .filter(|r| !r.profiles.is_empty())
        .collect();
    let cpu = runs
        .into_iter()
        .map(|r| Run::new(r.id, r.profiles.into_iter().filter(|p| !is_alloc(p)).collect()))
        .filter(|r| !r.profiles.is_empty())
        .collect();
    (cpu, allocs)
}

/// Prints the regressions: the JSON lines alone (the caveats go to stderr, where a person sees
/// them), or the text report (`analyzer::flame::report`).
fn print_regressions(
    stdout: &mut impl Write,
    found: &[Regression],
    metric: Share,
    json: bool,
    summary: &DiffSummary,
) -> anyhow::Result<()> {
    if json {
        let lines = report::json_lines(found, metric, &summary.normalization);
        writeln!(stdout, "{}", serde_json::to_string_pretty(&lines)?)?;
        for w in &summary.warnings {
            eprintln!("note: {w}");
        }
    } else {
        write!(stdout, "{}", report::text(found, metric, summary))?;
    }
    Ok(())
}

/// `flame diff --collector`: the collector compares the stored profiles of the two versions
/// (`/api/v1/flamegraph/diff`, the same statistics as for files) and draws the SVG.
fn diff_collector(url: &str, args: &DiffArgs, stdout: &mut impl Write) -> anyhow::Result<()> {
    // SLO_GATE_TOKEN, for a collector whose reads need a token.
    let client = CollectorClient::with_tls(url, args.tenant.clone(), &args.tls)?.with_token(env_token());
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
    diff_query.push(("metric", args.metric.name().into()));
    diff_query.push(("normalize", Normalization::from(args.normalize).name().into()));
    diff_query.extend(args.work_metric.clone().map(|m| ("work_metric", m)));
    let answer: FlameDiff = client.get_as("/api/v1/flamegraph/diff", &diff_query)?;

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
    let mut found = answer.regressions;
    found.truncate(args.top);

    if let Some(path) = &args.output {
        query.push(("format", "svg".into()));
        query.push(("normalize", Normalization::from(args.normalize).name().into()));
        query.extend(args.work_metric.clone().map(|m| ("work_metric", m)));
        let svg = client.get("/api/v1/flamegraph/diff", &query)?;
        write_file(path, &svg)?;
    }
    // Both sides had profiles (checked above), so the collector compared them.
    let normalization =
        answer.normalization.context("the collector's diff has no normalization although both sides have profiles")?;
    let mut warnings = answer.notes.clone();
    warnings.extend(answer.warnings.into_iter().filter(|w| !answer.notes.contains(w)));
    let measure = match Normalization::parse(&normalization) {
        Some(n) => n.per(answer.unit.as_deref().unwrap_or("request")),
        None => "share".to_string(),
    };
    let summary = DiffSummary {
        baseline: (base_count, answer.baseline_runs),
        candidate: (cand_count, answer.candidate_runs),
        warnings,
        normalization,
        measure,
        explanation: answer.explanation,
    };
    print_regressions(stdout, &found, args.metric, args.json, &summary)
}

/// The profile type id for `wanted`: itself when it is an id (`a:b:c:d:e`), else the one type of
/// the service whose sample type is `wanted`.
fn resolve_profile_type(client: &CollectorClient, service: &str, wanted: &str) -> anyhow::Result<String> {
    if wanted.contains(':') {
        return Ok(wanted.to_string());
    }
    let types: ProfileTypes = client.get_as("/api/v1/profile-types", &[])?;
    let of_service: Vec<&ProfileType> =
        types.profile_types.iter().filter(|t| t.services.iter().any(|s| s == service)).collect();
    let matching: Vec<&str> = of_service.iter().filter(|t| t.sample_type == wanted).map(|t| t.id.as_str()).collect();
    match matching.as_slice() {
        [one] => Ok(one.to_string()),
        [] => {
            let known: Vec<&str> = of_service.iter().map(|t| t.id.as_str()).collect();
            bail!(
                "service {service:?} has no profiles with sample type {wanted:?} at {}; it has: {}",
                client.base_url(),
                if known.is_empty() { "no profiles at all".to_string() } else { known.join(", ") }
            )
        }
        many => bail!("sample type {wanted:?} is ambiguous for service {service:?}; give one of: {}", many.join(", ")),
    }
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
            text.starts_with("compared 1 baseline profile from 1 run with 1 candidate profile from 1 run\n"),
            "{text}"
        );
        assert!(text.contains("\nnote: baseline and candidate have one run each"), "{text}");
        // The corpus' slow run ran under more load: shares, saying why (ADR 0008).
        assert!(text.contains("\nnote: shares of each profile: the work is not known and the loads differ"), "{text}");
        let first = text.lines().skip_while(|l| !l.trim_start().starts_with("rank")).nth(1).expect("a row");
        assert!(first.contains("main.sanitizeLabels"), "{text}");
        assert!(text.contains("\n- main.sanitizeLabels self share 42.8% -> 53.2%"), "{text}");
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
    fn work_counts_give_cpu_per_request_for_files() {
        let (fast, slow) = (corpus("fast"), corpus("slow"));
        let args = |extra: &[&str]| {
            let mut all = vec!["--baseline", fast.to_str().unwrap(), "--candidate", slow.to_str().unwrap()];
            all.extend(["--type", "cpu", "--json"]);
            all.extend(extra);
            diff_args(&all)
        };
        let mut out = Vec::new();
        diff(args(&["--work-baseline", "1000", "--work-candidate", "1000"]), &mut out).expect("diff");
        let json: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(json[0]["function"], "main.sanitizeLabels", "{json:#}");
        assert_eq!(json[0]["normalization"], "per_unit", "{json:#}");
        assert_eq!(json[0]["kind"], "slower", "{json:#}");
        // One count without the other is refused by the parser; asking for CPU per request
        // without counts says what is missing.
        assert!(parse(&["--baseline", "a", "--candidate", "b", "--work-baseline", "5"]).is_err());
        let err = diff(args(&["--normalize", "per-request"]), &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("CPU per unit of work needs the work of both builds"), "{err:#}");
        let err = diff(args(&["--work-baseline", "0", "--work-candidate", "5"]), &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("the baseline's work must be a positive number"), "{err:#}");
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
