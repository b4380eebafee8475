//! Goroutine leak detection over a series of goroutine snapshots (issue 5): the pure core.
//!
//! A snapshot (`snapshot.rs`, from a pprof goroutine profile or a `debug=2` dump) is
//! normalised and fingerprinted (`normalize.rs`), grouped into clusters by blocking site
//! (`cluster.rs`, ADR 0005) and annotated with wait reason, blocking frame and root-cause tag
//! (`annotate.rs`). Each cluster's count series is then tested for growth (`trend.rs`);
//! clusters that grow steadily and are still up at the end are findings, ranked by growth
//! rate. Runtime-owned goroutines and the user's ignore rules never reach a finding. When
//! each snapshot file was taken, for text dumps that record no time, is `times.rs`'s rule.
//! The same leak in several processes of a build is one leak with each process's rate
//! (`across.rs`).

pub mod across;
pub mod annotate;
pub mod cluster;
pub mod junit;
pub mod normalize;
pub mod report;
pub mod snapshot;
pub mod times;
pub mod trend;

use std::collections::BTreeMap;

pub use across::{CrossRunLeak, ProcessGrowth, group_across_runs};
pub use annotate::{RootCause, WaitReason};
pub use cluster::{ClusterKey, StackVariant};
pub use snapshot::{GoroutineGroup, ParseError, Snapshot, StackFrame, from_pprof, parse_debug2};
pub use times::{ExplicitTimes, SnapshotFile, TimeSource, TimesError, resolve_times};
pub use trend::{LeakRule, Trend, TrendError};

/// What counts as a leak, and what to leave out.
#[derive(Debug, Clone, PartialEq)]
pub struct LeakOptions {
    /// Minimum Theil–Sen growth of a cluster, goroutines per minute.
    pub min_growth_per_minute: f64,
    /// Minimum one-sided Mann-Kendall confidence that the count increases.
    pub min_confidence: f64,
    /// Drop goroutines whose top frame (below the runtime's parking frames) is one of these
    /// functions, as goleak's `IgnoreTopFunction`.
    pub ignore_top_functions: Vec<String>,
    /// Drop goroutines with any of these functions anywhere in their stack, as goleak's
    /// `IgnoreAnyFunction`.
    pub ignore_any_functions: Vec<String>,
    /// Keep `file:line` in fingerprints and blocking sites: two blocking lines of one function
    /// become two clusters. Off by default so a rebuild that moves lines keeps cluster identity.
    pub keep_file_line: bool,
}

impl Default for LeakOptions {
    fn default() -> Self {
        LeakOptions {
            min_growth_per_minute: 1.0,
            min_confidence: 0.99,
            ignore_top_functions: Vec::new(),
            ignore_any_functions: Vec::new(),
            keep_file_line: false,
        }
    }
}

/// One cluster followed across all snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSeries {
    pub key: ClusterKey,
    pub root_cause: RootCause,
    /// The most common creator at the snapshot where the cluster was largest.
    pub created_by: Option<String>,
    /// Goroutines in the cluster at each snapshot (in time order; 0 where absent).
    pub counts: Vec<u64>,
    /// `None` with fewer than two snapshots.
    pub trend: Option<Trend>,
    pub is_leak: bool,
    /// The largest stack variant at the snapshot where the cluster was largest (the latest such).
    pub representative: StackVariant,
    /// Distinct fingerprints seen in the cluster over all snapshots.
    pub distinct_stacks: usize,
}

/// Findings created by one function: likely one root cause (e.g. a `WaitGroup` waiter and the
/// receiver on the channel it would close, both started by the same function).
#[derive(Debug, Clone, PartialEq)]
pub struct RelatedFindings {
    pub created_by: String,
    /// Indexes into [`LeakReport::findings`], in rank order.
    pub findings: Vec<usize>,
}

/// The result of [`detect`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LeakReport {
    /// Snapshot times in seconds from the first, in time order.
    pub times_s: Vec<f64>,
    /// Leaking clusters, fastest growth first.
    pub findings: Vec<ClusterSeries>,
    /// Groups of two or more findings with the same creator (text dumps only: pprof goroutine
    /// profiles carry no `created by`), sorted by creator.
    pub related: Vec<RelatedFindings>,
    /// Every cluster, largest at the last snapshot first (ties by key).
    pub clusters: Vec<ClusterSeries>,
    /// All goroutines at each snapshot.
    pub totals: Vec<u64>,
    /// Runtime-owned goroutines at each snapshot.
    pub runtime_owned: Vec<u64>,
    /// Goroutines dropped by ignore rules at each snapshot.
    pub ignored: Vec<u64>,
    /// Goroutines without a stack at each snapshot (not clustered).
    pub no_stack: Vec<u64>,
    /// Whether growth could be judged (at least two snapshots at distinct times).
    pub judged: bool,
    /// What the caller should know about the input (reordering, duplicates, too few snapshots).
    pub notes: Vec<String>,
    /// Where the snapshots came from, as the caller labels them (`service`, `version`, `test`,
    /// a process's `instance`, any label): carried into every output form, empty by default.
    pub source: Vec<(String, String)>,
}

impl LeakReport {
    /// Seconds between the first and the last snapshot.
    pub fn span_seconds(&self) -> f64 {
        self.times_s.last().copied().unwrap_or(0.0)
    }
}

/// Finds the goroutine clusters that grow across `snapshots` (any order; sorted by time here).
pub fn detect(snapshots: &[Snapshot], options: &LeakOptions) -> LeakReport {
    let mut report = LeakReport::default();
    let mut order: Vec<usize> = (0..snapshots.len()).collect();
    order.sort_by_key(|&i| snapshots[i].time_unix_nano);
    if order.windows(2).any(|w| w[1] < w[0]) {
        report.notes.push("snapshots were not in time order; they were sorted by time".to_string());
    }
    // Two snapshots at one time cannot both stand; the later one in the input wins.
    let mut kept: Vec<usize> = Vec::with_capacity(order.len());
    for i in order {
        match kept.last_mut() {
            Some(last) if snapshots[*last].time_unix_nano == snapshots[i].time_unix_nano => {
                report.notes.push(format!(
                    "two snapshots share the time {} ns; the later one in the input is kept",
                    snapshots[i].time_unix_nano
                ));
                *last = (*last).max(i);
            }
            _ => kept.push(i),
        }
    }
    let Some(&first) = kept.first() else {
        report.notes.push("no snapshots: growth cannot be judged".to_string());
        return report;
    };
    let t0 = snapshots[first].time_unix_nano;
    report.times_s = kept.iter().map(|&i| (snapshots[i].time_unix_nano - t0) as f64 / 1e9).collect();
    report.judged = kept.len() >= 2;
    if !report.judged {
        report.notes.push("growth cannot be judged from one snapshot".to_string());
    }

    let n = kept.len();
    struct Acc {
        counts: Vec<u64>,
        best: Option<(u64, cluster::StackCluster)>,
        fingerprints: std::collections::BTreeSet<normalize::Fingerprint>,
    }
    let mut by_key: BTreeMap<ClusterKey, Acc> = BTreeMap::new();
    let mut memo = cluster::ClusterMemo::default();
    for (slot, &i) in kept.iter().enumerate() {
        let snapshot = &snapshots[i];
        let clustering = cluster::cluster_with(snapshot, options, &mut memo);
        report.totals.push(snapshot.total());
        report.runtime_owned.push(clustering.runtime_owned);
        report.ignored.push(clustering.ignored);
        report.no_stack.push(clustering.no_stack);
        for c in clustering.clusters {
            if !by_key.contains_key(&c.key) {
                let acc = Acc { counts: vec![0; n], best: None, fingerprints: Default::default() };
                by_key.insert(c.key.clone(), acc);
            }
            let acc = by_key.get_mut(&c.key).expect("inserted above");
            acc.counts[slot] = c.count;
            acc.fingerprints.extend(c.variants.iter().map(|v| v.fingerprint));
            if acc.best.as_ref().is_none_or(|(count, _)| c.count >= *count) {
                acc.best = Some((c.count, c));
            }
        }
    }

    let rule =
        LeakRule { min_growth_per_minute: options.min_growth_per_minute, min_confidence: options.min_confidence };
    let span = report.span_seconds();
    for (key, acc) in by_key {
        let Some((_, best)) = acc.best else { continue };
        let trend = trend::trend(&report.times_s, &acc.counts).ok();
        let is_leak = trend.is_some_and(|t| t.is_leak(span, rule));
        report.clusters.push(ClusterSeries {
            key,
            root_cause: best.root_cause,
            created_by: best.created_by().map(str::to_string),
            counts: acc.counts,
            trend,
            is_leak,
            representative: best.variants[0].clone(),
            distinct_stacks: acc.fingerprints.len(),
        });
    }
    report.clusters.sort_by(|a, b| b.counts.last().cmp(&a.counts.last()).then_with(|| a.key.cmp(&b.key)));
    report.findings = report.clusters.iter().filter(|c| c.is_leak).cloned().collect();
    report.findings.sort_by(|a, b| {
        let rate = |c: &ClusterSeries| c.trend.map_or(0.0, |t| t.growth_per_minute);
        rate(b).total_cmp(&rate(a)).then_with(|| a.key.cmp(&b.key))
    });
    let mut by_creator: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, f) in report.findings.iter().enumerate() {
        if let Some(c) = f.created_by.as_deref() {
            by_creator.entry(c).or_default().push(i);
        }
    }
    report.related = by_creator
        .into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(c, findings)| RelatedFindings { created_by: c.to_string(), findings })
        .collect();
    report
}
