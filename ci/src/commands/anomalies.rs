//! `slo-gate anomalies`: the anomaly detector over CSV files, and its evaluation against
//! labelled incidents.
//!
//! `score` streams a `timestamp,value` series through one detector in file order (causal: a
//! row's score depends only on the rows before it) and writes one output row per input row.
//! `eval` scores every CSV file under a folder (or takes a file's own `anomaly_score` column,
//! so other detectors' outputs can be compared) and reports how the detections match a labels
//! file in the Numenta Anomaly Benchmark's forms.
//!
//! This module reads lines and files and writes them; what a line means, the detector and the
//! metrics are `analyzer::anomaly_eval`'s and `analyzer::baseline`'s. A bad input is an error
//! naming the file and line (exit code 2), and `score` writes its output to a temporary file
//! beside the destination, renamed over it only once every row is written, so a failed run
//! leaves no partial file behind.
//!
//! Rows whose time repeats or precedes an earlier row's are the exception: real exports have
//! them around daylight-saving changes (8 of the Numenta Anomaly Benchmark's 58 files), so by
//! default they are kept — written with score 0 and an empty band, not shown to the detector —
//! and reported on standard error with their lines; `--strict-order` makes them errors.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use analyzer::anomaly_eval::{
    self, Disorder, EvalOptions, Evaluation, Labels, MAX_LINE_BYTES, Needs, Order, SCORED_HEADER, ScoreSource,
    SeriesError, SeriesErrorKind, SeriesParser,
};
use analyzer::baseline::{self, Config, Detector};
use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};

/// Largest labels or detector configuration file read (both are a few kilobytes in practice).
const MAX_SMALL_FILE_BYTES: u64 = 64 << 20;

/// Subcommands of `slo-gate anomalies`.
#[derive(Debug, Subcommand)]
pub enum AnomaliesCommand {
    /// Score a `timestamp,value` CSV series: one output row per input row,
    /// `timestamp,value,anomaly_score,expected,lower,upper`.
    Score(ScoreArgs),
    /// Evaluate detections against labelled incidents: precision, recall, F1, detection delay
    /// and the Numenta Anomaly Benchmark's window score, per file and in total.
    Eval(EvalArgs),
}

/// Flags of `slo-gate anomalies score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The series: CSV with a header row naming a `timestamp` and a `value` column (other
    /// columns are ignored), rows in time order. Timestamps: RFC 3339, `YYYY-MM-DD HH:MM:SS[.f]`
    /// (UTC) or unix seconds. An empty or NaN value is a missing point (it gets a row, the
    /// detector skips it). `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write the scored rows (replaced only when all are written). `-` writes standard
    /// output.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Write a probability-like score in [0, 1] as `anomaly_score` (at least 0.5 exactly on the
    /// first point of each incident) instead of the raw score (above 1 outside the band).
    #[arg(long)]
    pub probability: bool,
    /// The detector's settings: a TOML file (JSON when it ends in `.json`) of
    /// `analyzer::baseline::Config` keys (`model`, `band`, `direction`, ...; unknown keys are
    /// refused). Without it, the defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Refuse a file with a row whose time repeats or precedes an earlier row's (exit code 2).
    /// Without it such rows are written with score 0, not scored, and reported.
    #[arg(long)]
    pub strict_order: bool,
}

/// Flags of `slo-gate anomalies eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Folder of series CSV files, searched recursively. A file with an `anomaly_score` column is
    /// taken as scored already; the others are scored by the detector (probability scores).
    #[arg(long, value_name = "DIR")]
    pub input: PathBuf,
    /// Labels: a JSON object keyed by each file's path relative to DIR (`/`-separated), mapping
    /// to a list of windows `[[start, end], ...]` (NAB's combined_windows.json) or of anomaly
    /// times (NAB's combined_labels.json; windows are built around them as NAB does).
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// The detector's settings, as for `anomalies score`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A point is a detection when its score is at least this. The detector's probability
    /// scores reach 0.5 exactly on the first point of each incident.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// Share of each file's first points not scored while a detector learns (NAB's
    /// probationary period: 0.15, at most 750 points).
    #[arg(long, default_value_t = 0.15)]
    pub probation: f64,
    /// Refuse a file with a row whose time repeats or precedes an earlier row's (exit code 2).
    /// Without it such rows score 0 (or keep their own anomaly_score) at the latest earlier
    /// time, and are reported.
    #[arg(long)]
    pub strict_order: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `slo-gate anomalies`.
pub fn run(command: AnomaliesCommand) -> anyhow::Result<()> {
    match command {
        AnomaliesCommand::Score(args) => score(&args),
        AnomaliesCommand::Eval(args) => eval(&args),
    }
}

fn score(args: &ScoreArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    let mut detector = Detector::new(config).map_err(|e| config_error(args.config.as_deref(), e))?;
    let (name, input) = open_input(&args.input)?;
    let mut lines = Lines::new(input);
    let mut sink = Sink::create(&args.output)?;
    let at = |e: SeriesError| anyhow!("{name}: {e}");
    let mut parser = header(&mut lines, &name, Needs::Value, order(args.strict_order))?;
    let mut disorder = DisorderNote::default();
    let output_name = sink.name();
    let write_error = |e: io::Error| anyhow!("cannot write {output_name}: {e}");
    let out = sink.writer();
    writeln!(out, "{SCORED_HEADER}").map_err(write_error)?;
    let mut text = String::with_capacity(256);
    while let Some((line, content)) = lines.next_line().with_context(|| format!("cannot read {name}"))? {
        let content = content.map_err(|kind| at(SeriesError { line, kind }))?;
        let Some(row) = parser.row(line, content).map_err(at)? else { continue };
        text.clear();
        if let Some(d) = row.disorder {
            disorder.add(line, d);
            anomaly_eval::write_scored_row(&mut text, &row, 0.0, f64::NAN, f64::NAN, f64::NAN);
        } else {
            let scored = detector.update(row.time_ms, row.value);
            let score = if args.probability { baseline::probability(&scored) } else { scored.score };
            anomaly_eval::write_scored_row(&mut text, &row, score, scored.expected, scored.lower, scored.upper);
        }
        out.write_all(text.as_bytes()).map_err(write_error)?;
    }
    sink.finish()?;
    disorder.warn(&name, "written with score 0, not scored");
    Ok(())
}

fn order(strict: bool) -> Order {
    if strict { Order::Strict } else { Order::Keep }
}

/// Reads the header line of file `name` into a parser.
fn header(lines: &mut Lines, name: &str, needs: Needs, order: Order) -> anyhow::Result<SeriesParser> {
    let at = |e: SeriesError| anyhow!("{name}: {e}");
    let (line, header) = lines.next_line().with_context(|| format!("cannot read {name}"))?.unwrap_or((1, Ok("")));
    let header = header.map_err(|kind| at(SeriesError { line, kind }))?;
    Ok(SeriesParser::new(header, line, needs).map_err(at)?.with_order(order))
}

/// The rows of a file whose time repeats or precedes an earlier row's.
#[derive(Debug, Default)]
struct DisorderNote {
    duplicates: usize,
    earlier: usize,
    /// The first few of their lines.
    lines: Vec<usize>,
}

impl DisorderNote {
    const LINES_SHOWN: usize = 5;

    fn add(&mut self, line: usize, disorder: Disorder) {
        match disorder {
            Disorder::Duplicate { .. } => self.duplicates += 1,
            Disorder::Earlier { .. } => self.earlier += 1,
        }
        if self.lines.len() < Self::LINES_SHOWN {
            self.lines.push(line);
        }
    }

    /// Says on standard error what was found in file `name` and what was `done` with it.
    fn warn(&self, name: &str, done: &str) {
        let total = self.duplicates + self.earlier;
        if total == 0 {
            return;
        }
        let lines: Vec<String> = self.lines.iter().map(usize::to_string).collect();
        let more = if total > self.lines.len() { ", ..." } else { "" };
        eprintln!(
            "slo-gate: warning: {name}: {} row(s) at the same time as an earlier row and {} row(s) before one \
             (lines {}{more}): {done}; --strict-order refuses such files",
            self.duplicates,
            self.earlier,
            lines.join(", ")
        );
    }
}

fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    if !args.threshold.is_finite() {
        bail!("--threshold must be a number, got {}", args.threshold);
    }
    if !(0.0..1.0).contains(&args.probation) {
        bail!("--probation must be at least 0 and below 1, got {}", args.probation);
    }
    let config = load_config(args.config.as_deref())?;
    Detector::new(config.clone()).map_err(|e| config_error(args.config.as_deref(), e))?;
    let labels = read_small(&args.labels)?;
    let labels: Labels = anomaly_eval::parse_labels(&labels).map_err(|e| anyhow!("{}: {e}", args.labels.display()))?;
    let files = csv_files(&args.input)?;
    if files.is_empty() {
        bail!("no .csv files under {}", args.input.display());
    }
    let options =
        EvalOptions { threshold: args.threshold, probation_fraction: args.probation, ..EvalOptions::default() };
    let mut evaluation = Evaluation::new(&labels, options);
    for (key, path) in files {
        let (times, scores, source) = read_scores(&path, &config, order(args.strict_order))?;
        let detections = evaluation.detections(&scores);
        evaluation.add_file(&key, &times, &detections, source);
    }
    let report = evaluation.finish();
    let text = if args.json {
        serde_json::to_string_pretty(&report).context("cannot write the report as JSON")? + "\n"
    } else {
        anomaly_eval::render_text(&report)
    };
    io::stdout().lock().write_all(text.as_bytes()).context("cannot write the report")
}

/// The times and scores of one file: its `anomaly_score` column when it has one, else the
/// detector's probability scores of its values. A row out of time order (kept with
/// [`Order::Keep`]) is placed at the latest earlier time, so the times never decrease, and is
/// not scored by the detector (score 0).
fn read_scores(path: &Path, config: &Config, order: Order) -> anyhow::Result<(Vec<i64>, Vec<f64>, ScoreSource)> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("cannot open {name}"))?;
    let mut lines = Lines::new(Box::new(BufReader::with_capacity(1 << 16, file)));
    let at = |e: SeriesError| anyhow!("{name}: {e}");
    let mut parser = header(&mut lines, &name, Needs::ScoreOrValue, order)?;
    let mut disorder = DisorderNote::default();
    let source = if parser.has_score() { ScoreSource::AnomalyScoreColumn } else { ScoreSource::Detector };
    // Validated by the caller.
    let mut detector = Detector::new(config.clone()).map_err(|e| anyhow!("{e}"))?;
    let (mut times, mut scores) = (Vec::new(), Vec::new());
    while let Some((line, content)) = lines.next_line().with_context(|| format!("cannot read {name}"))? {
        let content = content.map_err(|kind| at(SeriesError { line, kind }))?;
        let Some(row) = parser.row(line, content).map_err(at)? else { continue };
        times.push(times.last().map_or(row.time_ms, |&t: &i64| t.max(row.time_ms)));
        if let Some(d) = row.disorder {
            disorder.add(line, d);
        }
        scores.push(match (row.score, row.disorder) {
            (Some(score), _) => score,
            (None, Some(_)) => 0.0,
            (None, None) => baseline::probability(&detector.update(row.time_ms, row.value)),
        });
    }
    let done = match source {
        ScoreSource::AnomalyScoreColumn => "kept at the latest earlier row's time",
        ScoreSource::Detector => "kept at the latest earlier row's time with score 0, not scored",
    };
    disorder.warn(&name, done);
    Ok((times, scores, source))
}

/// Every `.csv` file under `dir`, with its key (path relative to `dir`, `/`-separated), sorted
/// by key. Folders are walked with an explicit stack; symbolic links to folders are not
/// followed (a link loop cannot trap the walk).
fn csv_files(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = std::fs::read_dir(&folder).with_context(|| format!("cannot list {}", folder.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", folder.display()))?;
            let path = entry.path();
            let kind = entry.file_type().with_context(|| format!("cannot read {}", path.display()))?;
            if kind.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) && path.is_file() {
                let relative = path.strip_prefix(dir).unwrap_or(&path);
                let key = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                files.push((key, path));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The detector configuration of `--config` (TOML, or JSON for a `.json` file; unknown keys
/// refused, each value validated), or the defaults.
fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let Some(path) = path else { return Ok(Config::default()) };
    let text = read_small(path)?;
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let config: Config = if is_json {
        serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
    } else {
        toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
    };
    config.validate().map_err(|e| config_error(Some(path), e))?;
    Ok(config)
}

fn config_error(path: Option<&Path>, e: baseline::ConfigError) -> anyhow::Error {
    match path {
        Some(path) => anyhow!("{}: {e}", path.display()),
        None => anyhow!("the default detector configuration: {e}"),
    }
}

fn read_small(path: &Path) -> anyhow::Result<String> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_SMALL_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
    if text.len() as u64 > MAX_SMALL_FILE_BYTES {
        bail!("{} is larger than {} MiB", path.display(), MAX_SMALL_FILE_BYTES >> 20);
    }
    Ok(text)
}

fn open_input(path: &Path) -> anyhow::Result<(String, Box<dyn BufRead>)> {
    if path.as_os_str() == "-" {
        return Ok(("<stdin>".to_string(), Box::new(io::stdin().lock())));
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok((path.display().to_string(), Box::new(BufReader::with_capacity(1 << 16, file))))
}

/// A reader's lines, each at most [`MAX_LINE_BYTES`] long (without its `\n` or `\r\n`), read
/// into one reused buffer.
struct Lines {
    reader: Box<dyn BufRead>,
    buffer: Vec<u8>,
    number: usize,
}

impl Lines {
    fn new(reader: Box<dyn BufRead>) -> Lines {
        Lines { reader, buffer: Vec::new(), number: 0 }
    }

    /// The next line and its 1-based number; the line is an error when too long or not UTF-8.
    /// `None` at the end.
    fn next_line(&mut self) -> io::Result<Option<(usize, Result<&str, SeriesErrorKind>)>> {
        self.buffer.clear();
        // Room for the longest line and its `\r\n`; a longer one stops here, unfinished.
        let limit = MAX_LINE_BYTES as u64 + 2;
        let read = (&mut self.reader).take(limit).read_until(b'\n', &mut self.buffer)?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        if self.buffer.last() == Some(&b'\n') {
            self.buffer.pop();
            if self.buffer.last() == Some(&b'\r') {
                self.buffer.pop();
            }
        }
        if self.buffer.len() > MAX_LINE_BYTES {
            return Ok(Some((self.number, Err(SeriesErrorKind::TooLong))));
        }
        Ok(Some((self.number, std::str::from_utf8(&self.buffer).map_err(|_| SeriesErrorKind::NotUtf8))))
    }
}

/// Where scored rows go: a temporary file beside the destination, renamed over it by
/// [`Sink::finish`] (dropped unfinished, it is deleted), or standard output.
enum Sink {
    File { writer: BufWriter<tempfile::NamedTempFile>, target: PathBuf },
    Stdout(BufWriter<io::Stdout>),
}

impl Sink {
    fn create(target: &Path) -> anyhow::Result<Sink> {
        if target.as_os_str() == "-" {
            return Ok(Sink::Stdout(BufWriter::with_capacity(1 << 16, io::stdout())));
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // The scored file is an ordinary output, created as any other file (the umask applies),
        // not owner-only as temporary files are.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let temp = builder.tempfile_in(dir).with_context(|| format!("cannot create a file in {}", dir.display()))?;
        Ok(Sink::File { writer: BufWriter::with_capacity(1 << 16, temp), target: target.to_path_buf() })
    }

    fn name(&self) -> String {
        match self {
            Sink::File { target, .. } => target.display().to_string(),
            Sink::Stdout(_) => "<stdout>".to_string(),
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::File { writer, .. } => writer,
            Sink::Stdout(writer) => writer,
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        let name = self.name();
        match self {
            Sink::File { writer, target } => {
                let temp = writer.into_inner().map_err(|e| anyhow!("cannot write {name}: {}", e.error()))?;
                temp.as_file().sync_all().with_context(|| format!("cannot write {name}"))?;
                temp.persist(&target).map_err(|e| anyhow!("cannot write {name}: {}", e.error))?;
                Ok(())
            }
            Sink::Stdout(mut writer) => writer.flush().with_context(|| format!("cannot write {name}")),
        }
    }
}
