//! Clusters of goroutines blocked at the same point.
//!
//! Two steps (ADR 0005): goroutines with identical normalised stacks share a fingerprint;
//! fingerprints that block at the same *site* — the same wait reason in the same user frame
//! (function, plus `file:line` when kept) — form one cluster, whatever call path led there.
//! The site is what a fix changes, so it is what a finding names; a similarity measure over
//! whole stacks (SimHash, edit distance) would instead merge distinct blocking points reached
//! through long shared paths and split one point reached through paths of different depth.

use crate::hash::FastHash;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::LeakOptions;
use super::annotate::{self, RootCause, WaitReason};
use super::normalize::{self, Fingerprint, NormalizeOptions, normalize_function};
use super::snapshot::{GoroutineGroup, Snapshot, StackFrame};

/// Where a cluster blocks: its identity across snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterKey {
    /// The user frame where the goroutines block (normalised function name).
    pub blocking_function: String,
    /// Its `file:line`, when [`LeakOptions::keep_file_line`] is set.
    pub blocking_location: Option<(String, u64)>,
    /// What they wait for.
    pub wait_reason: WaitReason,
}

impl std::fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]", self.blocking_function, self.wait_reason)?;
        if let Some((file, line)) = &self.blocking_location {
            write!(f, " at {file}:{line}")?;
        }
        Ok(())
    }
}

/// One distinct normalised stack inside a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct StackVariant {
    pub fingerprint: Fingerprint,
    pub count: u64,
    /// A full stack as received (innermost first), shared by the variant in every snapshot of a
    /// series.
    pub stack: Arc<[StackFrame]>,
    pub created_by: Option<String>,
}

/// Goroutines of one snapshot blocked at one site.
#[derive(Debug, Clone, PartialEq)]
pub struct StackCluster {
    pub key: ClusterKey,
    pub count: u64,
    pub root_cause: RootCause,
    /// Distinct stacks, largest first (ties by fingerprint).
    pub variants: Vec<StackVariant>,
}

impl StackCluster {
    /// The most common creator among the variants.
    pub fn created_by(&self) -> Option<&str> {
        let mut by: BTreeMap<&str, u64> = BTreeMap::new();
        for v in &self.variants {
            if let Some(c) = v.created_by.as_deref() {
                *by.entry(c).or_default() += v.count;
            }
        }
        by.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))).map(|(c, _)| c)
    }
}

/// The clusters of one snapshot, and what was left out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Clustering {
    /// Sorted by key.
    pub clusters: Vec<StackCluster>,
    /// Goroutines owned by the runtime (GC workers, finalizers, signal loop, ...).
    pub runtime_owned: u64,
    /// Goroutines dropped by the user's ignore rules.
    pub ignored: u64,
    /// Goroutines reported without a stack (a pprof sample with no locations).
    pub no_stack: u64,
}

/// Whether the user's ignore rules drop a group: its top frame (after the runtime's parking
/// frames, as goleak's `IgnoreTopFunction` sees it) or any frame is listed.
fn ignored(group: &GoroutineGroup, options: &LeakOptions) -> bool {
    if options.ignore_top_functions.is_empty() && options.ignore_any_functions.is_empty() {
        return false;
    }
    let top = group.stack.iter().find(|f| !normalize::is_runtime(&f.function)).or(group.stack.first());
    let top_hit =
        top.is_some_and(|f| options.ignore_top_functions.iter().any(|i| *i == normalize_function(&f.function)));
    top_hit
        || group
            .stack
            .iter()
            .any(|f| options.ignore_any_functions.iter().any(|i| *i == normalize_function(&f.function)))
}

#[derive(Debug, Clone)]
struct Annotated {
    key: ClusterKey,
    root_cause: RootCause,
}

/// What [`cluster`] decided about a stack, kept across the snapshots of one series
/// ([`ClusterMemo`]): a goroutine leak shows the same few hundred stacks in every snapshot.
#[derive(Debug, Clone)]
enum Decision {
    RuntimeOwned,
    Ignored,
    Keep(Annotated, Arc<[StackFrame]>),
}

/// Decisions by (fingerprint, header state, creator), shared by the snapshots of one series so
/// each distinct stack is annotated once, not once per snapshot. The fingerprint covers the
/// normalised function names (and `file:line` with `keep_file_line`), which with the header and
/// the creator are everything the decision reads.
#[derive(Debug, Default)]
pub struct ClusterMemo<'a> {
    decided: HashMap<(Fingerprint, Option<&'a str>, Option<&'a str>), Decision, FastHash>,
}

fn annotate_group(group: &GoroutineGroup, options: &LeakOptions) -> Annotated {
    let reason = annotate::wait_reason(group);
    let frame = annotate::blocking_frame(&group.stack);
    let key = ClusterKey {
        blocking_function: frame.map(|f| normalize_function(&f.function)).unwrap_or_default(),
        blocking_location: frame.filter(|_| options.keep_file_line).map(|f| (f.file.clone(), f.line)),
        wait_reason: reason.clone(),
    };
    let root_cause = annotate::root_cause(&reason, &group.stack, group.created_by.as_deref());
    Annotated { key, root_cause }
}

/// Groups identical fingerprints, then merges them by blocking site.
pub fn cluster(snapshot: &Snapshot, options: &LeakOptions) -> Clustering {
    cluster_with(snapshot, options, &mut ClusterMemo::default())
}

/// [`cluster`], remembering each stack's decision in `memo` for the next snapshots of a series.
pub fn cluster_with<'a>(snapshot: &'a Snapshot, options: &LeakOptions, memo: &mut ClusterMemo<'a>) -> Clustering {
    let norm = NormalizeOptions { keep_file_line: options.keep_file_line };
    let mut out = Clustering::default();
    // (fingerprint, header state) → variant index; the header is part of it because a text dump
    // can show one stack both `running` and parked.
    let mut by_fp: HashMap<(Fingerprint, Option<&str>), usize, FastHash> = HashMap::default();
    let mut variants: Vec<(StackVariant, Annotated)> = Vec::new();
    for group in &snapshot.goroutines {
        if group.count == 0 {
            continue;
        }
        if group.stack.is_empty() {
            out.no_stack += group.count;
            continue;
        }
        // One pass over the frames per group (a text dump has a group per goroutine); what to do
        // with the stack is decided once per series.
        let fp = normalize::fingerprint_stack(&group.stack, norm);
        let decision =
            memo.decided.entry((fp, group.wait_reason.as_deref(), group.created_by.as_deref())).or_insert_with(|| {
                if annotate::is_runtime_owned(group) {
                    Decision::RuntimeOwned
                } else if ignored(group, options) {
                    Decision::Ignored
                } else {
                    Decision::Keep(annotate_group(group, options), Arc::from(group.stack.as_slice()))
                }
            });
        let (annotated, stack) = match decision {
            Decision::RuntimeOwned => {
                out.runtime_owned += group.count;
                continue;
            }
            Decision::Ignored => {
                out.ignored += group.count;
                continue;
            }
            Decision::Keep(annotated, stack) => (annotated, stack),
        };
        let slot = *by_fp.entry((fp, group.wait_reason.as_deref())).or_insert_with(|| {
            variants.push((
                StackVariant { fingerprint: fp, count: 0, stack: stack.clone(), created_by: group.created_by.clone() },
                annotated.clone(),
            ));
            variants.len() - 1
        });
        variants[slot].0.count += group.count;
    }
    let mut merged: BTreeMap<ClusterKey, StackCluster> = BTreeMap::new();
    for (variant, ann) in variants {
        let c = merged.entry(ann.key.clone()).or_insert_with(|| StackCluster {
            key: ann.key,
            count: 0,
            root_cause: ann.root_cause,
            variants: Vec::new(),
        });
        c.count += variant.count;
        match c.variants.iter_mut().find(|v| v.fingerprint == variant.fingerprint) {
            Some(v) => v.count += variant.count,
            None => c.variants.push(variant),
        }
    }
    out.clusters = merged
        .into_values()
        .map(|mut c| {
            c.variants.sort_by(|a, b| b.count.cmp(&a.count).then(a.fingerprint.cmp(&b.fingerprint)));
            c
        })
        .collect();
    out
}
