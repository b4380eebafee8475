//! What the gate's history decides: which builds are the baseline, and whether a failing
//! build blocks the release yet.
//!
//! `consecutive_failures: N` tolerates a flaky environment without letting a real regression
//! through: this build blocks only when it fails *and* the N − 1 runs before it (newest first,
//! whatever their version) failed too. Any run that did not fail breaks the streak, so a pass
//! in between starts the count again. A warning never blocks.

use slo_contracts::{Baseline, GatePolicy};

use super::GateError;
use super::input::PastRun;
use crate::compare::Verdict;

/// The baseline versions to load: `explicit` (the `--baseline` flag) wins; then the contract's
/// `gate.baseline`: a named version, the newest run in `history` that passed (a warning passes)
/// with a version other than `candidate`, or the `n` newest distinct versions other than
/// `candidate`. No `gate.baseline` and no flag: no baseline (absolute limits only).
pub fn baseline_versions(
    policy: &GatePolicy,
    history: &[PastRun],
    explicit: Option<&str>,
    candidate: &str,
) -> Result<Vec<String>, GateError> {
    if let Some(version) = explicit {
        return Ok(vec![version.to_string()]);
    }
    match &policy.baseline {
        None => Ok(Vec::new()),
        Some(Baseline::Version(v)) => Ok(vec![v.clone()]),
        Some(Baseline::LastPassing) => history
            .iter()
            .find(|run| run.version != candidate && matches!(run.verdict, Verdict::Pass | Verdict::Warn))
            .map(|run| vec![run.version.clone()])
            .ok_or(GateError::NoPassingBuild),
        Some(Baseline::Previous(n)) => {
            let mut versions: Vec<String> = Vec::new();
            for run in history {
                if versions.len() == *n as usize {
                    break;
                }
                if run.version != candidate && !versions.contains(&run.version) {
                    versions.push(run.version.clone());
                }
            }
            if versions.is_empty() {
                return Err(GateError::NoPreviousBuilds { candidate: candidate.to_string() });
            }
            Ok(versions)
        }
    }
}

/// How many consecutive builds, this one included, failed the gate (counting at most
/// `needed`): 0 when this one did not fail.
pub fn failure_streak(this_build: Verdict, history: &[PastRun], needed: u32) -> u32 {
    if this_build != Verdict::Fail {
        return 0;
    }
    let before =
        history.iter().take(needed.saturating_sub(1) as usize).take_while(|r| r.verdict == Verdict::Fail).count();
    1 + before as u32
}
