//! Flat and cumulative totals per function, with exactly the semantics of `go tool pprof -top`
//! at its default granularity (`functions`).
//!
//! pprof builds one node per function name (unsymbolized frames fall back to `[binary]` or
//! `<unknown>`, see [`Frame::display_name`]). A sample adds its value to the *flat* total of its
//! innermost frame and to the *cum* total of every distinct node on its stack, once per sample
//! even when the function recurses. Nodes whose flat and cum are both zero are not shown.
//! The profile's `drop_frames`/`keep_frames` are already applied by the decoder.

use std::collections::{BTreeMap, HashSet};

use super::{Frame, Profile};

/// The requested sample index does not exist in the profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sample index {index} is out of range: the profile has {sample_types} sample types")]
pub struct SampleIndexOutOfRange {
    /// The requested index.
    pub index: usize,
    /// Number of sample types of the profile.
    pub sample_types: usize,
}

/// `(flat, cum)` per function name for the sample type at `sample_index`, as
/// `go tool pprof -top -sample_index=N` computes them.
pub fn flat_and_cum(
    profile: &Profile,
    sample_index: usize,
) -> Result<BTreeMap<String, (i64, i64)>, SampleIndexOutOfRange> {
    if sample_index >= profile.sample_types.len() {
        return Err(SampleIndexOutOfRange { index: sample_index, sample_types: profile.sample_types.len() });
    }
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    for sample in &profile.samples {
        // `decode` guarantees one value per sample type.
        let Some(&value) = sample.values.get(sample_index) else { continue };
        if value == 0 {
            continue;
        }
        seen.clear();
        for name in profile.stack(sample).map(Frame::display_name) {
            if seen.insert(name.clone()) {
                let entry = totals.entry(name).or_default();
                entry.1 = entry.1.wrapping_add(value);
            }
        }
        if let Some(leaf) = profile.leaf(sample) {
            let entry = totals.entry(leaf.display_name()).or_default();
            entry.0 = entry.0.wrapping_add(value);
        }
    }
    totals.retain(|_, &mut (flat, cum)| flat != 0 || cum != 0);
    Ok(totals)
}
