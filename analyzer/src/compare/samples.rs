//! The minimum-sample rule: too little data is an inconclusive verdict with its reason, never a
//! pass or a fail by accident.
//!
//! Small samples are where release gates give confident wrong answers (a p99 from 40 requests is
//! their maximum). Every comparison first checks its counts against the contract's minimum; a
//! minimum of 0 still requires one value, because an empty side says nothing.

use std::fmt;

use super::format::thousands;
use super::verdict::Verdict;

/// The counts that fell short of a contract's minimum; [`fmt::Display`] gives the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientSamples {
    /// Candidate count.
    pub candidate: u64,
    /// Baseline count, for comparisons that have a baseline.
    pub baseline: Option<u64>,
    /// The minimum each side needs (at least 1).
    pub min_samples: u64,
    /// What is counted, plural (`spans`, `requests`, `profiles`).
    pub noun: String,
}

impl InsufficientSamples {
    /// Always [`Verdict::Inconclusive`].
    pub fn verdict(&self) -> Verdict {
        Verdict::Inconclusive
    }
}

impl fmt::Display for InsufficientSamples {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut short = Vec::new();
        if self.candidate < self.min_samples {
            short.push(format!("candidate has {} {}", thousands(self.candidate), self.noun));
        }
        if let Some(baseline) = self.baseline.filter(|&b| b < self.min_samples) {
            short.push(format!("baseline has {} {}", thousands(baseline), self.noun));
        }
        write!(f, "{}, the contract needs {}", short.join(" and "), thousands(self.min_samples))
    }
}

/// Checks that the candidate (and the baseline, if there is one) have at least `min_samples`
/// values each (at least 1 whatever `min_samples` says).
pub fn require_min_samples(
    candidate: u64,
    baseline: Option<u64>,
    min_samples: u64,
    noun: &str,
) -> Result<(), InsufficientSamples> {
    let min_samples = min_samples.max(1);
    if candidate >= min_samples && baseline.is_none_or(|b| b >= min_samples) {
        return Ok(());
    }
    Err(InsufficientSamples { candidate, baseline, min_samples, noun: noun.to_string() })
}
