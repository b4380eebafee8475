//! `slo-gate check`: the release gate. Reads the service's contract, loads the candidate's and
//! the baseline's data from a collector's API (or from a data directory, through an in-process
//! collector on loopback), evaluates with `analyzer::gate`, prints the report, writes the JSON,
//! JUnit, Markdown and artifact files, records the run in the collector's history, and exits
//! 0 (pass), 1 (release blocked) or 2 (error: bad contract, unreachable collector, no such
//! service).
//!
//! Design: one data path. `--data-dir` does not read Parquet parts itself; it opens the store
//! with the collector's own code (taking the data directory's lock, so it refuses a directory a
//! running collector owns) and talks to it over the same HTTP API as `--collector`, so the two
//! sources cannot disagree.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use analyzer::flame::Run;
use analyzer::gate::{self, GateInput, GateReport, MetricSample, MetricValue, PastRun, SideData, SpanRecord};
use analyzer::pprof::Profile;
use anyhow::{Context, bail};
use clap::Args;
use collector::api::gate::{
    GateMetrics, GateProfiles, GateSpans, MetricPoint, Recorded, Run as GateRun, RunObjective, RunsAnswer,
};
use collector::api::native::Services;
use serde_json::{Value, json};
use slo_contracts::{Contract, HumanDuration, Indicator};

use crate::collector_client::{CollectorClient, CollectorTls, WriteToken, selector};

/// Flags of `slo-gate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Contract files or folders (*.yaml, *.yml).
    #[arg(long, required = true, num_args = 1..)]
    pub contracts: Vec<PathBuf>,
    /// The service to gate (`service.name`); its contract must be among --contracts.
    #[arg(long)]
    pub service: String,
    /// The candidate build (`service.version`).
    #[arg(long)]
    pub candidate: String,
    /// The baseline: a version, or `last-passing`; overrides the contract's `gate.baseline`.
    #[arg(long)]
    pub baseline: Option<String>,
    /// The environment (`deployment.environment.name`); selects the contract and the data.
    #[arg(long)]
    pub environment: Option<String>,
    /// Only data from the last DURATION (e.g. 30m).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub since: Option<HumanDuration>,
    /// Start of the window, unix seconds.
    #[arg(long)]
    pub from: Option<u64>,
    /// End of the window, unix seconds.
    #[arg(long)]
    pub to: Option<u64>,
    /// Read from a running collector's API (its --api URL, e.g. http://127.0.0.1:4040).
    #[arg(long, conflicts_with = "data_dir", required_unless_present = "data_dir")]
    pub collector: Option<String>,
    /// TLS files of an https:// --collector.
    #[command(flatten)]
    pub tls: CollectorTls,
    /// Read a collector's data directory directly (no collector may be running on it).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Tenant (X-Scope-OrgID).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the report as JUnit XML (one test case per objective) to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write the report as Markdown to this file (it is also appended to $GITHUB_STEP_SUMMARY
    /// when that is set).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write artifacts here: the differential flame graph, the slow-span correlation, the report.
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
    /// Do not record this run in the history (`last_passing`, `consecutive_failures`).
    #[arg(long)]
    pub no_record: bool,
    /// The bearer token in this file (its first line that is not blank or a `#` comment) is
    /// sent with every request: a token of the collector's `[auth] token_file` with the `read`
    /// and `gate-write` scopes on the tenant (read only with --no-record), or one of its
    /// `--gate-token-file` tokens. Default: the SLO_GATE_TOKEN environment variable. Not
    /// needed with --data-dir, nor with --no-record against a collector without `[auth]`.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The write token, given in the process (`slo-gate demo` shares its in-process
    /// collector's generated token this way).
    #[arg(skip)]
    pub write_token: Option<WriteToken>,
}

/// The environment variable `slo-gate check` reads the collector's write token from.
pub const TOKEN_ENV: &str = "SLO_GATE_TOKEN";

/// The write token to record the run with: given in the process, else from `--token-file`,
/// else from `SLO_GATE_TOKEN`.
fn write_token(args: &CheckArgs) -> anyhow::Result<Option<WriteToken>> {
    if let Some(token) = &args.write_token {
        return Ok(Some(token.clone()));
    }
    if let Some(path) = &args.token_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the token file {}", path.display()))?;
        let token = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
        return match token {
            Some(token) => Ok(Some(WriteToken(token.to_string()))),
            None => bail!("the token file {} holds no token", path.display()),
        };
    }
    Ok(std::env::var(TOKEN_ENV).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).map(WriteToken))
}

/// Runs `slo-gate check`; `Ok` carries the exit code (0 pass, 1 blocked).
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    // Locked only while the contracts load: a collector in this process (`--data-dir`, `demo`)
    // logs to standard error from its own threads while the gate runs, and a lock held here
    // would stop them at their first line.
    let contracts = super::contracts::load(&args.contracts, &mut std::io::stderr().lock())?;
    let contract = pick_contract(&contracts, &args.service, args.environment.as_deref())?;
    let outcome = match (&args.collector, &args.data_dir) {
        (Some(url), _) => {
            let token = write_token(&args)?;
            if token.is_none() && !args.no_record {
                bail!(
                    "recording this run in the collector's history needs a write token: set {TOKEN_ENV} or \
                     --token-file FILE to one of the tokens of the collector's --gate-token-file, or pass --no-record"
                );
            }
            let client = CollectorClient::with_tls(url, args.tenant.clone(), &args.tls)?.with_token(token);
            gate_with(&client, &contract, &args)?
        }
        (None, Some(dir)) => with_local_collector(dir, |url, token| {
            let client =
                CollectorClient::new(url, args.tenant.clone())?.with_token(Some(WriteToken(token.to_string())));
            gate_with(&client, &contract, &args)
        })?,
        (None, None) => bail!("give --collector URL or --data-dir DIR"),
    };
    Ok(if outcome.blocked { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn pick_contract(contracts: &[Contract], service: &str, environment: Option<&str>) -> anyhow::Result<Contract> {
    let of_service: Vec<&Contract> = contracts.iter().filter(|c| c.service == service).collect();
    let exact = of_service.iter().find(|c| c.environment.as_deref() == environment);
    let any_env = of_service.iter().find(|c| c.environment.is_none());
    match exact.or(any_env) {
        Some(c) => Ok((*c).clone()),
        None if of_service.is_empty() => {
            let known: Vec<&str> = contracts.iter().map(|c| c.service.as_str()).collect();
            bail!("no contract for service {service:?} among the contracts given (they are for: {})", known.join(", "))
        }
        None => bail!(
            "the contracts of service {service:?} are for environments {}, not {}",
            of_service
                .iter()
                .map(|c| format!("{:?}", c.environment.as_deref().unwrap_or("any")))
                .collect::<Vec<_>>()
                .join(", "),
            environment.map(|e| format!("{e:?}")).unwrap_or_else(|| "an unnamed one (give --environment)".into())
        ),
    }
}

/// A collector in this process on free loopback ports, storing under `data_dir`, with the
/// runtime that serves it and the write token generated for it, which only this process
/// knows (used by `--data-dir` and by `slo-gate demo`).
pub(crate) fn start_local_collector(
    data_dir: &std::path::Path,
) -> anyhow::Result<(tokio::runtime::Runtime, collector::RunningCollector, String)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let config = collector::config::Config {
        data_dir: data_dir.to_path_buf(),
        otlp_grpc: loopback,
        otlp_http: loopback,
        api: loopback,
        ..Default::default()
    };
    let (tokens, token) = collector::auth::WriteTokens::generate().context("cannot make a write token")?;
    let running = runtime
        .block_on(collector::Collector::start_with_tokens(config, tokens))
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    Ok((runtime, running, token))
}

/// Opens `dir` with an in-process collector, runs `f` with its API URL and write token, and
/// stops it.
fn with_local_collector<T>(
    dir: &std::path::Path,
    f: impl FnOnce(&str, &str) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let (runtime, running, token) = start_local_collector(dir)?;
    let url = format!("http://{}", running.api);
    let result = f(&url, &token);
    runtime.block_on(running.stop(Duration::from_secs(5)));
    result
}

/// What the command reports back to [`run`].
struct Outcome {
    blocked: bool,
}

fn gate_with(client: &CollectorClient, contract: &Contract, args: &CheckArgs) -> anyhow::Result<Outcome> {
    let history = history(client, contract)?;
    let explicit = args.baseline.as_deref().filter(|b| *b != "last-passing");
    let mut policy = contract.gate.clone();
    if args.baseline.as_deref() == Some("last-passing") {
        policy.baseline = Some(slo_contracts::Baseline::LastPassing);
    }
    let baseline_versions = gate::baseline_versions(&policy, &history, explicit, &args.candidate)?;

    let window = window(args)?;
    // Both sides are loaded at once: each is a scan of the collector's store, and the collector
    // serves them on separate threads (the benchmark's cold check went from 2.6 s towards 2 s).
    let (candidate, baseline) = std::thread::scope(|scope| {
        let baseline = (!baseline_versions.is_empty())
            .then(|| scope.spawn(|| load_side(client, contract, &baseline_versions, window, false)));
        let candidate = load_side(client, contract, std::slice::from_ref(&args.candidate), window, true);
        let baseline = match baseline.map(|h| h.join()) {
            None => None,
            Some(Ok(side)) => Some(side),
            Some(Err(_)) => Some(Err(anyhow::anyhow!("loading the baseline's data panicked"))),
        };
        (candidate, baseline)
    });
    let candidate = candidate?;
    let baseline = baseline.transpose()?;
    let stdout = &mut std::io::stdout();
    if candidate.spans.is_empty()
        && candidate.metrics.is_empty()
        && candidate.cpu_runs.is_empty()
        && candidate.goroutine_runs.is_empty()
    {
        ensure_service_exists(client, &contract.service)?;
        writeln!(
            stdout,
            "no data found for service {:?} version {:?}{}: no SERVER spans, metric points, CPU or goroutine profiles; \
             the contract's no_data policy ({}) decides\n",
            contract.service,
            args.candidate,
            contract.environment.as_deref().map(|e| format!(" in environment {e:?}")).unwrap_or_default(),
            match contract.gate.no_data {
                slo_contracts::NoData::Fail => "fail",
                slo_contracts::NoData::Warn => "warn",
                slo_contracts::NoData::Pass => "pass",
            }
        )?;
    }
    let report =
        gate::evaluate(&GateInput { contract, candidate: &candidate, baseline: baseline.as_ref(), history: &history });

    let stdout = &mut std::io::stdout();
    stdout.write_all(gate::report::text(&report).as_bytes())?;
    write_outputs(&report, args)?;
    if let Some(dir) = &args.artifacts {
        write_artifacts(client, contract, &report, dir, args, window)?;
    }
    if !args.no_record {
        record(client, contract, &report, &args.candidate)?;
    }
    Ok(Outcome { blocked: report.blocked })
}

/// The evaluation window in unix nanoseconds; `None` ends mean "all data of the version".
fn window(args: &CheckArgs) -> anyhow::Result<(Option<u64>, Option<u64>)> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("system clock before 1970")?;
    let secs = |s: u64| s.saturating_mul(1_000_000_000);
    Ok(match (args.since, args.from, args.to) {
        (Some(since), _, _) => (Some(now.saturating_sub(since.0).as_nanos() as u64), None),
        (None, from, to) => {
            if let (Some(f), Some(t)) = (from, to)
                && f > t
            {
                bail!("--from {f} is after --to {t}");
            }
            (from.map(secs), to.map(secs))
        }
    })
}

fn time_params(window: (Option<u64>, Option<u64>)) -> Vec<(&'static str, String)> {
    // The API takes unix seconds (or RFC 3339); nanosecond precision is not needed here.
    let mut out = Vec::new();
    if let Some(f) = window.0 {
        out.push(("from", (f / 1_000_000_000).to_string()));
    }
    if let Some(t) = window.1 {
        out.push(("to", t.div_ceil(1_000_000_000).to_string()));
    }
    out
}

/// Loads the data of `versions` (aggregated) that the contract's objectives read. Span
/// attributes are kept only `with_attributes` (the candidate: attribute correlation looks at
/// its slow spans), which halves the memory of a check over millions of spans.
fn load_side(
    client: &CollectorClient,
    contract: &Contract,
    versions: &[String],
    window: (Option<u64>, Option<u64>),
    with_attributes: bool,
) -> anyhow::Result<SideData> {
    let mut side = SideData { versions: versions.to_vec(), ..Default::default() };
    let needs = |f: fn(&Indicator) -> bool| contract.objectives.iter().any(|o| f(&o.indicator));
    // A cpu_regression counts the SERVER spans as the work done (CPU per request, ADR 0008)
    // unless it names a counter or compares shares.
    let span_objectives = needs(|i| {
        matches!(i, Indicator::Latency { .. } | Indicator::ErrorRate { .. } | Indicator::Throughput { .. })
            || matches!(i, Indicator::CpuRegression { normalize, work: None, .. }
                if !matches!(normalize, slo_contracts::CpuNormalize::Share))
    });
    let metric_names: Vec<String> = {
        let mut names: Vec<String> = contract
            .objectives
            .iter()
            .flat_map(|o| match &o.indicator {
                Indicator::Metric { name, .. } => vec![name.clone()],
                Indicator::MetricRatio { numerator, total, .. } => vec![numerator.name.clone(), total.name.clone()],
                Indicator::CpuRegression { work: Some(work), .. } => vec![work.name.clone()],
                _ => Vec::new(),
            })
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let mut cpu_types: Vec<String> = contract
        .objectives
        .iter()
        .filter_map(|o| match &o.indicator {
            Indicator::CpuRegression { profile_type, .. } => Some(profile_type.clone()),
            _ => None,
        })
        .collect();
    // A failed latency objective names the functions whose CPU share grew, when there are CPU
    // profiles: load them even without a cpu_regression objective.
    if cpu_types.is_empty() && needs(|i| matches!(i, Indicator::Latency { .. })) {
        cpu_types.push(slo_contracts::model::DEFAULT_CPU_PROFILE_TYPE.to_string());
    }
    cpu_types.sort();
    cpu_types.dedup();
    let leak_objective = needs(|i| matches!(i, Indicator::GoroutineLeak { .. }));

    for version in versions {
        let mut query = vec![("service", contract.service.clone()), ("version", version.clone())];
        if let Some(env) = &contract.environment {
            query.push(("environment", env.clone()));
        }
        query.extend(time_params(window));
        if span_objectives {
            let columns: GateSpans = client.get_as("/api/v1/gate/spans", &query)?;
            if columns.truncated {
                tracing::warn!(
                    version,
                    total = columns.total,
                    "more spans than one answer carries; the gate reads the first ones"
                );
            }
            append_spans(columns, &mut side.spans, with_attributes)
                .context("the collector's span answer is inconsistent")?;
        }
        for name in &metric_names {
            let mut q = query.clone();
            q.push(("name", name.clone()));
            let answer: GateMetrics = client.get_as("/api/v1/gate/metrics", &q)?;
            for w in &answer.warnings {
                eprintln!("warning: the collector could not read all of its data: {w}");
            }
            side.metrics.extend(answer.samples.iter().filter_map(metric_sample));
        }
        for profile_type in &cpu_types {
            side.cpu_runs.extend(profile_runs(client, profile_type, &contract.service, version, window)?);
        }
        if needs(|i| matches!(i, Indicator::CpuRegression { .. })) {
            side.alloc_runs.extend(profile_runs(client, ALLOC_PROFILE_TYPE, &contract.service, version, window)?);
        }
        if leak_objective {
            side.goroutine_runs.extend(profile_runs(
                client,
                GOROUTINE_PROFILE_TYPE,
                &contract.service,
                version,
                window,
            )?);
        }
    }
    let times = side.spans.iter().map(|s| s.time_unix_nano).chain(side.metrics.iter().map(|m| m.time_unix_nano));
    let (lo, hi) = times.fold((u64::MAX, 0), |(lo, hi), t| (lo.min(t), hi.max(t)));
    side.window = (window.0.unwrap_or(if lo == u64::MAX { 0 } else { lo }), window.1.unwrap_or(hi));
    if window.1.is_none() && window.0.is_some() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(hi);
        side.window.1 = now;
    }
    Ok(side)
}

/// Appends the collector's span columns as records. With attributes, the keys whose value is
/// the same in every attribute set (service.name, the version, the environment...) are left
/// out: they cannot tell slow spans from fast ones, and leaving them out saves memory per span.
fn append_spans(spans: GateSpans, out: &mut Vec<SpanRecord>, with_attributes: bool) -> anyhow::Result<()> {
    for w in &spans.warnings {
        eprintln!("warning: the collector could not read all of its data: {w}");
    }
    spans.check().map_err(|e| anyhow::anyhow!(e))?;
    let n = spans.time_unix_nano.len();
    let sets: Vec<Vec<(String, String)>> = if with_attributes {
        let mut constant: std::collections::BTreeMap<&str, Option<&str>> = std::collections::BTreeMap::new();
        for set in &spans.attribute_sets {
            for (k, v) in set {
                constant
                    .entry(k.as_str())
                    .and_modify(|c| {
                        if *c != Some(v.as_str()) {
                            *c = None;
                        }
                    })
                    .or_insert(Some(v.as_str()));
            }
        }
        let varying = |k: &str| {
            spans.attribute_sets.len() == 1
                || constant.get(k).is_some_and(|c| c.is_none())
                || spans.attribute_sets.iter().any(|s| !s.iter().any(|(key, _)| key == k))
        };
        spans.attribute_sets.iter().map(|set| set.iter().filter(|(k, _)| varying(k)).cloned().collect()).collect()
    } else {
        Vec::new()
    };
    out.reserve(n);
    for i in 0..n {
        let lookup = |list: &[String], id: u32| list.get(id as usize).cloned();
        out.push(SpanRecord {
            time_unix_nano: spans.time_unix_nano[i],
            duration_seconds: spans.duration_seconds[i],
            name: lookup(&spans.names, spans.name[i]).context("a span names an unknown name")?,
            route: match spans.route[i] {
                Some(id) => Some(lookup(&spans.route_values, id).context("a span names an unknown route")?),
                None => None,
            },
            error: spans.error[i],
            attributes: if with_attributes {
                sets.get(spans.attributes[i] as usize).cloned().context("a span names an unknown attribute set")?
            } else {
                Vec::new()
            },
        });
    }
    Ok(())
}

/// A stored metric point as the gate reads it; kinds the gate does not aggregate (summaries,
/// exponential histograms) are skipped.
fn metric_sample(p: &MetricPoint) -> Option<MetricSample> {
    let cumulative = p.temporality == 2;
    let value = match p.kind.as_str() {
        "gauge" => MetricValue::Gauge(p.value?),
        "sum" if cumulative => MetricValue::Counter { value: p.value?, monotonic: p.is_monotonic },
        // A delta sum per interval reads like a gauge of per-interval increases.
        "sum" => MetricValue::Gauge(p.value?),
        "histogram" => {
            let buckets = p.histogram()?;
            MetricValue::Histogram {
                bounds: buckets.bounds,
                counts: buckets.counts,
                count: p.count.unwrap_or(0),
                sum: p.sum.unwrap_or(0.0),
                cumulative,
            }
        }
        _ => return None,
    };
    Some(MetricSample {
        name: p.name.clone(),
        labels: p.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        time_unix_nano: p.time_unix_nano,
        value,
    })
}

/// The stored profiles of `profile_type` of one version (`/api/v1/gate/profiles`), grouped into
/// runs (processes).
fn profile_runs(
    client: &CollectorClient,
    profile_type: &str,
    service: &str,
    version: &str,
    window: (Option<u64>, Option<u64>),
) -> anyhow::Result<Vec<Run>> {
    let mut q = vec![
        ("type", profile_type.to_string()),
        ("selector", selector(&[("service_name", service), ("service_version", version)])),
    ];
    q.extend(time_params(window));
    let answer: GateProfiles = client.get_as("/api/v1/gate/profiles", &q)?;
    for w in &answer.warnings {
        eprintln!("warning: the collector could not read all of its data: {w}");
    }
    // The same instance may have run several versions (`previous: N`): a run is both.
    let runs = answer.profiles.iter().map(|p| (format!("{version}/{}", p.run), p.to_profile()));
    Ok(Run::group(runs.collect::<Vec<(String, Profile)>>()))
}

/// The allocation profile type whose growth a `cpu_regression` charges the runtime's CPU to.
const ALLOC_PROFILE_TYPE: &str = "memory:alloc_space:bytes:space:bytes";

/// The goroutine profile type the `goroutine_leak` objective reads.
const GOROUTINE_PROFILE_TYPE: &str = "goroutine:goroutine:count:goroutine:count";

/// No data for the candidate: an unknown service is an error (exit 2), a known one is judged
/// by the contract's `no_data` policy.
fn ensure_service_exists(client: &CollectorClient, service: &str) -> anyhow::Result<()> {
    let services: Services = client.get_as("/api/v1/services", &[])?;
    let known: Vec<String> = services.services.into_iter().map(|s| s.name).collect();
    if known.iter().any(|s| s == service) {
        return Ok(());
    }
    bail!(
        "the collector at {} has no data of service {service:?} at all (it knows: {})",
        client.base_url(),
        if known.is_empty() { "no services".to_string() } else { known.join(", ") }
    )
}

/// The service's past runs from the collector's history (`GET /api/v1/gate/runs`).
fn history(client: &CollectorClient, contract: &Contract) -> anyhow::Result<Vec<PastRun>> {
    let mut query = vec![("service", contract.service.clone())];
    if let Some(env) = &contract.environment {
        query.push(("environment", env.clone()));
    }
    let answer: RunsAnswer = client.get_as("/api/v1/gate/runs", &query)?;
    Ok(answer
        .runs
        .into_iter()
        .map(|r| PastRun {
            version: r.version,
            time_unix_nano: r.time_unix_nano,
            verdict: r.verdict,
            objectives: r.objectives.into_iter().map(|o| (o.name, o.verdict)).collect(),
        })
        .collect())
}

/// Records this run in the collector's history (`POST /api/v1/gate/runs`, with the write token).
fn record(client: &CollectorClient, contract: &Contract, report: &GateReport, candidate: &str) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("system clock before 1970")?;
    let run = GateRun {
        service: contract.service.clone(),
        environment: contract.environment.clone(),
        version: candidate.to_string(),
        time_unix_nano: u64::try_from(now.as_nanos()).unwrap_or(u64::MAX),
        verdict: report.verdict,
        blocked: report.blocked,
        objectives: report
            .objectives
            .iter()
            .map(|o| RunObjective { name: o.name.clone(), verdict: o.counted_as })
            .collect(),
    };
    let _: Recorded =
        client.post_as("/api/v1/gate/runs", &run).context("cannot record the run in the collector's history")?;
    Ok(())
}

fn write_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn write_outputs(report: &GateReport, args: &CheckArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        write_file(path, &(serde_json::to_string_pretty(&gate::report::json(report))? + "\n"))?;
    }
    if let Some(path) = &args.junit {
        write_file(path, &gate::report::junit(report))?;
    }
    let markdown = gate::report::markdown(report);
    if let Some(path) = &args.markdown {
        write_file(path, &markdown)?;
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&summary)
            .with_context(|| format!("cannot open $GITHUB_STEP_SUMMARY ({})", PathBuf::from(&summary).display()))?;
        file.write_all(markdown.as_bytes())?;
    }
    Ok(())
}

fn write_artifacts(
    client: &CollectorClient,
    contract: &Contract,
    report: &GateReport,
    dir: &std::path::Path,
    args: &CheckArgs,
    window: (Option<u64>, Option<u64>),
) -> anyhow::Result<()> {
    write_file(&dir.join("report.json"), &(serde_json::to_string_pretty(&gate::report::json(report))? + "\n"))?;
    let correlation: Vec<Value> = report
        .objectives
        .iter()
        .filter(|o| !o.correlation.is_empty())
        .map(|o| {
            json!({
                "objective": o.name,
                "findings": o.correlation.iter().map(|c| json!({
                    "key": c.key, "value": c.value,
                    "slow_pct": c.selection_pct, "others_pct": c.baseline_pct,
                    "difference_pp": c.difference_pp, "adjusted_p_value": c.adjusted_p_value,
                    "sentence": c.sentence(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    write_file(&dir.join("slow-span-correlation.json"), &(serde_json::to_string_pretty(&correlation)? + "\n"))?;
    // The differential flame graph of each CPU objective, baseline against candidate.
    if let Some(base) = report.baseline_versions.first() {
        for o in &contract.objectives {
            let Indicator::CpuRegression { profile_type, .. } = &o.indicator else { continue };
            let mut q = vec![
                ("type", profile_type.clone()),
                ("baseline", selector(&[("service_name", &contract.service), ("service_version", base)])),
                ("candidate", selector(&[("service_name", &contract.service), ("service_version", &args.candidate)])),
                ("format", "svg".to_string()),
            ];
            // The window the data was read in (`--since` is not re-evaluated a moment later).
            q.extend(time_params(window));
            let svg = client.get("/api/v1/flamegraph/diff", &q)?;
            let name = format!(
                "flamegraph-diff-{}.svg",
                o.name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
            );
            std::fs::write(dir.join(&name), svg)
                .with_context(|| format!("cannot write {}", dir.join(&name).display()))?;
        }
    }
    Ok(())
}
