//! Folding profiles into root-first stacks: the input of every flame graph.
//!
//! A sample's stack is innermost first in pprof; folded stacks are root first, one frame per
//! function name ([`Frame::display_name`], inlined frames already expanded by the decoder).
//! Values of identical stacks are summed, across samples and across profiles. A frame name that
//! contains `;` or a line break would corrupt the folded format, so those characters become `:`
//! and a space. A sample with an empty stack is kept under a single `<unknown>` frame so totals
//! still add up.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::sync::Arc;

use super::FlameError;
use crate::hash::FastHash;
use crate::pprof::{Frame, Profile};

/// Root-first stacks of function names with their summed values for one sample type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folded {
    stacks: BTreeMap<Vec<String>, i64>,
}

impl Folded {
    /// An empty set of stacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the values at `sample_index` of every sample of `profile`. A sample without a value
    /// at that index (which [`crate::pprof::decode`] never produces) is skipped.
    pub fn add_profile(&mut self, profile: &Profile, sample_index: usize) {
        // Samples through the same locations share their frames' `Arc<str>` names, so frames
        // are told apart by pointer and each distinct frame and stack is named once per profile
        // (a 10 s CPU profile has thousands of samples over a few hundred stacks).
        let key = |f: &Frame| {
            let mapping = if f.function.is_empty() { Arc::as_ptr(&f.mapping) as *const u8 as usize } else { 0 };
            (Arc::as_ptr(&f.function) as *const u8 as usize, mapping)
        };
        let mut ids: HashMap<(usize, usize), u32, FastHash> = HashMap::default();
        let mut names: Vec<String> = Vec::new();
        let mut stacks: HashMap<Vec<u32>, i64> = HashMap::new();
        for sample in &profile.samples {
            let Some(&value) = sample.values.get(sample_index) else { continue };
            if value == 0 {
                continue;
            }
            let stack: Vec<u32> = sample
                .stack
                .iter()
                .rev()
                .map(|f| {
                    *ids.entry(key(f)).or_insert_with(|| {
                        names.push(frame_name(f));
                        (names.len() - 1) as u32
                    })
                })
                .collect();
            let entry = stacks.entry(stack).or_insert(0);
            *entry = entry.saturating_add(value);
        }
        for (stack, value) in stacks {
            let mut stack: Vec<String> = stack.iter().map(|&i| names[i as usize].clone()).collect();
            if stack.is_empty() {
                stack.push("<unknown>".to_string());
            }
            self.add(stack, value);
        }
    }

    /// Adds `value` to one root-first stack.
    pub fn add(&mut self, stack: Vec<String>, value: i64) {
        let entry = self.stacks.entry(stack).or_insert(0);
        *entry = entry.saturating_add(value);
    }

    /// Adds every stack of `other`.
    pub fn merge_from(&mut self, other: &Folded) {
        for (stack, &value) in &other.stacks {
            self.add(stack.clone(), value);
        }
    }

    /// Removes leaf frames named `name` and gives their value to the caller, e.g.
    /// `runtime.asyncPreempt`, which Go's GC preemption puts as a leaf under whatever function was
    /// running and which takes self time away from it (see the corpus README).
    pub fn fold_leaf_into_caller(&mut self, name: &str) {
        let hits: Vec<Vec<String>> =
            self.stacks.keys().filter(|s| s.len() > 1 && s.last().is_some_and(|l| l == name)).cloned().collect();
        for mut stack in hits {
            let value = self.stacks.remove(&stack).unwrap_or(0);
            stack.pop();
            self.add(stack, value);
        }
    }

    /// The stacks, root first, with their values, sorted.
    pub fn stacks(&self) -> &BTreeMap<Vec<String>, i64> {
        &self.stacks
    }

    /// Sum of all values.
    pub fn total(&self) -> i64 {
        self.stacks.values().fold(0i64, |acc, &v| acc.saturating_add(v))
    }

    /// Folded lines `root;child;leaf value`, sorted by stack. Stacks whose value is zero or
    /// negative are left out: a flame graph cannot draw them.
    pub fn lines(&self) -> Vec<String> {
        self.stacks.iter().filter(|&(_, &v)| v > 0).map(|(stack, v)| format!("{} {v}", stack.join(";"))).collect()
    }

    /// Writes [`Folded::lines`], one per line.
    pub fn write_folded(&self, out: &mut impl Write) -> io::Result<()> {
        for line in self.lines() {
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}

fn frame_name(frame: &Frame) -> String {
    frame.display_name().replace(';', ":").replace(['\n', '\r'], " ")
}

/// The sample index of `kind` (e.g. `cpu`, `alloc_space`) in `profile`, or the profile's default
/// sample type when `kind` is `None`. `position` names the profile in errors.
pub fn sample_index(profile: &Profile, kind: Option<&str>, position: usize) -> Result<usize, FlameError> {
    match kind {
        Some(kind) => {
            profile.sample_types.iter().rposition(|t| t.kind == kind).ok_or_else(|| FlameError::NoSuchSampleType {
                profile: position,
                kind: kind.to_string(),
                available: profile.sample_types.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>().join(", "),
            })
        }
        None => profile.default_sample_index().ok_or(FlameError::NoSampleTypes { profile: position }),
    }
}

/// One profile folded on its own, with the type it was folded for.
pub(crate) struct FoldedProfile {
    pub folded: Folded,
    /// Number of sampled events behind the values (see [`sampled_events`]).
    pub events: f64,
    /// `kind/unit` of the folded sample type.
    pub type_name: String,
}

/// Folds each profile separately for `kind`, checking that all measure the same thing.
pub(crate) fn fold_each<'a>(
    profiles: impl IntoIterator<Item = &'a Profile>,
    kind: Option<&str>,
    side: &'static str,
) -> Result<Vec<FoldedProfile>, FlameError> {
    let mut out: Vec<FoldedProfile> = Vec::new();
    for (position, profile) in profiles.into_iter().enumerate() {
        let index = sample_index(profile, kind, position)?;
        let t = &profile.sample_types[index];
        let type_name = format!("{}/{}", t.kind, t.unit);
        if let Some(first) = out.first()
            && first.type_name != type_name
        {
            return Err(FlameError::TypeMismatch {
                profile: position,
                expected: first.type_name.clone(),
                found: type_name,
            });
        }
        let mut folded = Folded::new();
        folded.add_profile(profile, index);
        out.push(FoldedProfile { folded, events: sampled_events(profile, index), type_name });
    }
    if out.is_empty() {
        return Err(FlameError::NoProfiles { side });
    }
    Ok(out)
}

/// How many sampled events a profile's values stand for, used for the sampling error of a share:
/// the sum of a `count` sample type when the profile has one (Go's CPU profile carries
/// `samples/count` beside `cpu/nanoseconds`), else the number of sample records.
fn sampled_events(profile: &Profile, sample_index: usize) -> f64 {
    let count_index = if profile.sample_types.get(sample_index).is_some_and(|t| t.unit == "count") {
        Some(sample_index)
    } else {
        profile.sample_types.iter().position(|t| t.unit == "count")
    };
    match count_index {
        Some(i) => profile.samples.iter().filter_map(|s| s.values.get(i)).map(|&v| v.max(0) as f64).sum(),
        None => profile.samples.len() as f64,
    }
}

/// Merges `profiles` (all of one type) for the sample type `kind`, or each profile's default sample
/// type when `None`.
pub fn merge(profiles: &[Profile], kind: Option<&str>) -> Result<Folded, FlameError> {
    let mut merger = Merger::new(kind);
    for p in profiles {
        merger.add(p)?;
    }
    merger.finish()
}

/// [`merge`] one profile at a time, so a caller can decode, add and drop each in turn and hold
/// one decoded profile instead of all of them.
#[derive(Debug, Default)]
pub struct Merger {
    kind: Option<String>,
    folded: Folded,
    /// `kind/unit` of the first profile.
    type_name: Option<String>,
    added: usize,
}

impl Merger {
    /// A merger for the sample type `kind` (each profile's default when `None`).
    pub fn new(kind: Option<&str>) -> Self {
        Merger { kind: kind.map(str::to_string), ..Merger::default() }
    }

    /// Adds `profile`; it must measure the same type and unit as the first one.
    pub fn add(&mut self, profile: &Profile) -> Result<(), FlameError> {
        let index = sample_index(profile, self.kind.as_deref(), self.added)?;
        let t = &profile.sample_types[index];
        let type_name = format!("{}/{}", t.kind, t.unit);
        match &self.type_name {
            Some(first) if *first != type_name => {
                return Err(FlameError::TypeMismatch {
                    profile: self.added,
                    expected: first.clone(),
                    found: type_name,
                });
            }
            Some(_) => {}
            None => self.type_name = Some(type_name),
        }
        self.folded.add_profile(profile, index);
        self.added += 1;
        Ok(())
    }

    /// The merged stacks; an error when nothing was added.
    pub fn finish(self) -> Result<Folded, FlameError> {
        if self.added == 0 {
            return Err(FlameError::NoProfiles { side: "input" });
        }
        Ok(self.folded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pprof::{Sample, ValueType};

    fn profile(samples: &[(&[&str], i64)]) -> Profile {
        Profile {
            sample_types: vec![
                ValueType { kind: "samples".into(), unit: "count".into() },
                ValueType { kind: "cpu".into(), unit: "nanoseconds".into() },
            ],
            samples: samples
                .iter()
                .map(|(leaf_first, v)| Sample {
                    stack: leaf_first.iter().map(|f| Frame { function: (*f).into(), ..Default::default() }).collect(),
                    values: vec![1, *v],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Folds `profiles` for `cpu` and compares the folded text with `expect`.
    fn check(profiles: &[Profile], expect: &str) {
        let mut out = Vec::new();
        merge(profiles, Some("cpu")).expect("merge").write_folded(&mut out).expect("write");
        assert_eq!(String::from_utf8(out).expect("utf-8"), expect);
    }

    #[test]
    fn stacks_are_root_first_and_summed() {
        check(&[profile(&[(&["leaf", "main"], 2), (&["leaf", "main"], 3), (&["main"], 1)])], "main 1\nmain;leaf 5\n");
    }

    #[test]
    fn profiles_add_up_and_zero_values_vanish() {
        check(&[profile(&[(&["a", "main"], 2), (&["b", "main"], 0)]), profile(&[(&["a", "main"], 1)])], "main;a 3\n");
    }

    #[test]
    fn separators_in_names_cannot_break_lines() {
        check(&[profile(&[(&["op;er\nator", "main"], 1)])], "main;op:er ator 1\n");
    }

    #[test]
    fn empty_stack_is_kept_as_unknown() {
        check(&[profile(&[(&[], 4)])], "<unknown> 4\n");
    }

    #[test]
    fn default_sample_type_is_the_last() {
        let p = profile(&[(&["main"], 7)]);
        assert_eq!(sample_index(&p, None, 0), Ok(1));
        assert!(matches!(sample_index(&p, Some("alloc_space"), 0), Err(FlameError::NoSuchSampleType { .. })));
        assert_eq!(merge(&[], None), Err(FlameError::NoProfiles { side: "input" }));
    }
}
