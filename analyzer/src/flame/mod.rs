//! Flame graphs and function-level regression detection over decoded pprof profiles.
//!
//! Design: everything goes through one representation, [`Folded`]: root-first stacks of function
//! names with their summed values for one sample type (Brendan Gregg's "folded" format, which
//! inferno reads). Merging several profiles is adding their maps, so it is associative and
//! order-independent, and a `BTreeMap` makes every output sorted and deterministic. SVG rendering
//! is inferno's ([`svg`]); differential stacks and regression statistics are computed here
//! ([`regression`]) because they need each side normalised to its own total and the individual
//! profiles of each side, which inferno's differential folding does not keep. No I/O: callers pass
//! decoded profiles and a writer.

pub mod allocation;
pub mod explain;
pub mod levels;
pub mod merge;
pub mod normalize;
pub mod regression;
pub mod report;
pub mod svg;

pub use allocation::{AllocationGrowth, Allocator, attribute_allocations};
pub use levels::{FlameGraphDiff, FlameGraphLevels};
pub use merge::{EncodedMergeError, Folded, Merger, merge, merge_encoded, sample_index};
pub use normalize::{LOAD_TOLERANCE, Load, LoadSource, Normalization, NormalizeError, Work};
pub use regression::{
    ChangeKind, Comparison, Regression, RegressionOptions, Run, RuntimeChange, Share, ShareChange, SideSummary,
    compare_functions, detect_regressions, differential, differential_scaled, is_runtime,
};

/// Why profiles could not be folded or compared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlameError {
    /// The normalization asked for cannot be computed from these profiles.
    #[error(transparent)]
    Normalize(#[from] NormalizeError),
    /// No profile was given where at least one is needed.
    #[error("no profiles given for {side}")]
    NoProfiles {
        /// Which input was empty (`input`, `baseline`, `candidate`).
        side: &'static str,
    },
    /// A profile has no sample type with the requested name.
    #[error("profile {profile} has no sample type {kind:?} (it has: {available})")]
    NoSuchSampleType {
        /// Position of the profile in its input list.
        profile: usize,
        /// The requested sample type.
        kind: String,
        /// The sample types it has, comma-separated.
        available: String,
    },
    /// A profile has no sample types at all, so there is nothing to draw.
    #[error("profile {profile} has no sample types")]
    NoSampleTypes {
        /// Position of the profile in its input list.
        profile: usize,
    },
    /// Profiles of different types (or units) were mixed.
    #[error(
        "profile {profile} measures {found}, but the first profile measures {expected}: merge profiles of one type"
    )]
    TypeMismatch {
        /// Position of the profile in its input list.
        profile: usize,
        /// `kind/unit` of the first profile.
        expected: String,
        /// `kind/unit` of this profile.
        found: String,
    },
}
