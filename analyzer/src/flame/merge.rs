//! Folding profiles into root-first stacks: the input of every flame graph.
//!
//! A sample's stack is innermost first in pprof; folded stacks are root first, one frame per
//! function name ([`Frame::display_name`], inlined frames already expanded by the decoder).
//! Values of identical stacks are summed, across samples and across profiles. A frame name that
//! contains `;` or a line break would corrupt the folded format, so those characters become `:`
//! and a space. A sample with an empty stack is kept under a single `<unknown>` frame so totals
//! still add up.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use super::FlameError;
use crate::hash::FastHash;
use crate::pprof::{DecodeError, Decoder, Frame, Profile, ValueType};

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
        let mut folder = Folder::default();
        folder.add_profile(profile, sample_index);
        folder.into_folded(self);
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

/// Folding state of a merge: frame names and stacks interned as small integers, so the stacks
/// of many profiles are summed by hashing `u32` sequences, and strings are built once per
/// distinct name and, at the end, once per distinct stack.
#[derive(Debug, Default)]
struct Folder {
    names: Vec<String>,
    name_ids: HashMap<String, u32, FastHash>,
    /// Root-first stacks of name ids with their summed values.
    stacks: HashMap<Vec<u32>, i64, FastHash>,
}

impl Folder {
    fn intern(&mut self, name: Cow<'_, str>) -> u32 {
        if let Some(&id) = self.name_ids.get(name.as_ref()) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct frame names");
        self.names.push(name.to_string());
        self.name_ids.insert(name.into_owned(), id);
        id
    }

    fn add_profile(&mut self, profile: &Profile, sample_index: usize) {
        // Each location's frames are named once per profile: `spans[l]` is the range of
        // `location_names` holding location l's name ids, innermost first.
        let mut spans: Vec<Option<(u32, u32)>> = vec![None; profile.locations.len()];
        let mut location_names: Vec<u32> = Vec::new();
        let mut key: Vec<u32> = Vec::new();
        for sample in &profile.samples {
            let Some(&value) = sample.values.get(sample_index) else { continue };
            if value == 0 {
                continue;
            }
            key.clear();
            for &l in sample.locations.iter().rev() {
                let Some(location) = profile.locations.get(l as usize) else { continue };
                let (start, end) = match spans[l as usize] {
                    Some(span) => span,
                    None => {
                        let start = location_names.len() as u32;
                        for frame in &location.frames {
                            let id = self.intern(frame_name(frame));
                            location_names.push(id);
                        }
                        let span = (start, location_names.len() as u32);
                        spans[l as usize] = Some(span);
                        span
                    }
                };
                key.extend(location_names[start as usize..end as usize].iter().rev());
            }
            if key.is_empty() {
                key.push(self.intern(Cow::Borrowed("<unknown>")));
            }
            match self.stacks.get_mut(key.as_slice()) {
                Some(sum) => *sum = sum.saturating_add(value),
                None => {
                    self.stacks.insert(key.clone(), value);
                }
            }
        }
    }

    /// Adds the interned stacks to `folded`.
    fn into_folded(self, folded: &mut Folded) {
        for (stack, value) in self.stacks {
            folded.add(stack.iter().map(|&i| self.names[i as usize].clone()).collect(), value);
        }
    }
}

/// The folded name of a frame: [`Frame::display_name`] without the folded format's separators.
fn frame_name(frame: &Frame) -> Cow<'_, str> {
    let name: Cow<'_, str> =
        if frame.function.is_empty() { Cow::Owned(frame.display_name()) } else { Cow::Borrowed(&frame.function) };
    if name.contains([';', '\n', '\r']) { Cow::Owned(name.replace(';', ":").replace(['\n', '\r'], " ")) } else { name }
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
    /// How long the profile ran, in seconds (0 when it does not say).
    pub duration_seconds: f64,
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
        out.push(FoldedProfile {
            folded,
            events: sampled_events(profile, index),
            type_name,
            duration_seconds: profile.duration_nanos.max(0) as f64 / 1e9,
        });
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
    folder: Folder,
    /// The sample type of the first profile.
    sample_type: Option<ValueType>,
    added: usize,
}

impl Merger {
    /// A merger for the sample type `kind` (each profile's default when `None`).
    pub fn new(kind: Option<&str>) -> Self {
        Merger { kind: kind.map(str::to_string), ..Merger::default() }
    }

    /// Adds `profile`; it must measure the same type and unit as the first one.
    pub fn add(&mut self, profile: &Profile) -> Result<(), FlameError> {
        self.add_at(profile, self.added)
    }

    /// [`Merger::add`] naming the profile `position` in errors.
    fn add_at(&mut self, profile: &Profile, position: usize) -> Result<(), FlameError> {
        let index = sample_index(profile, self.kind.as_deref(), position)?;
        let t = &profile.sample_types[index];
        match &self.sample_type {
            Some(first) if first != t => {
                return Err(FlameError::TypeMismatch {
                    profile: position,
                    expected: format!("{}/{}", first.kind, first.unit),
                    found: format!("{}/{}", t.kind, t.unit),
                });
            }
            Some(_) => {}
            None => self.sample_type = Some(t.clone()),
        }
        self.folder.add_profile(profile, index);
        self.added += 1;
        Ok(())
    }

    /// The merged sample type, once a profile was added.
    pub fn sample_type(&self) -> Option<&ValueType> {
        self.sample_type.as_ref()
    }

    /// An empty merger expecting the same sample type as this one.
    fn fork(&self) -> Merger {
        Merger { kind: self.kind.clone(), sample_type: self.sample_type.clone(), ..Merger::default() }
    }

    /// Adds everything `other` (a [`Merger::fork`] of this one) merged.
    fn absorb(&mut self, other: Merger) {
        let Folder { names, stacks, .. } = other.folder;
        let ids: Vec<u32> = names.into_iter().map(|n| self.folder.intern(Cow::Owned(n))).collect();
        for (stack, value) in stacks {
            let stack: Vec<u32> = stack.iter().map(|&i| ids[i as usize]).collect();
            let sum = self.folder.stacks.entry(stack).or_insert(0);
            *sum = sum.saturating_add(value);
        }
        self.added += other.added;
    }

    /// The merged stacks; an error when nothing was added.
    pub fn finish(self) -> Result<Folded, FlameError> {
        if self.added == 0 {
            return Err(FlameError::NoProfiles { side: "input" });
        }
        let mut folded = Folded::new();
        self.folder.into_folded(&mut folded);
        Ok(folded)
    }
}

/// Why [`merge_encoded`] stopped, with the position of the profile.
#[derive(Debug, thiserror::Error)]
pub enum EncodedMergeError<E: std::error::Error + 'static> {
    /// The caller's loader failed for this profile.
    #[error("profile {position}: {source}")]
    Load {
        /// Position of the profile.
        position: usize,
        /// The loader's error.
        source: E,
    },
    /// The bytes are not a profile.
    #[error("profile {position}: {source}")]
    Decode {
        /// Position of the profile.
        position: usize,
        /// Why decoding failed.
        source: DecodeError,
    },
    /// The profile cannot be merged with the others (wrong or missing sample type).
    #[error(transparent)]
    Merge(#[from] FlameError),
}

impl<E: std::error::Error + 'static> EncodedMergeError<E> {
    /// Position of the profile the error is about, when it is about one.
    pub fn position(&self) -> Option<usize> {
        match self {
            EncodedMergeError::Load { position, .. } | EncodedMergeError::Decode { position, .. } => Some(*position),
            EncodedMergeError::Merge(
                FlameError::NoSuchSampleType { profile, .. }
                | FlameError::NoSampleTypes { profile }
                | FlameError::TypeMismatch { profile, .. },
            ) => Some(*profile),
            EncodedMergeError::Merge(FlameError::NoProfiles { .. } | FlameError::Normalize(_)) => None,
        }
    }
}

/// Decodes and merges `count` encoded pprof profiles (gzipped or not) for the sample type `kind`
/// (each profile's default when `None`) on up to `threads` threads. `load(i)` returns the bytes
/// of profile `i`; the caller does the reading, so this stays free of I/O. Profile 0 fixes the
/// sample type; each thread then decodes its share with its own [`Decoder`] into a fork of the
/// merger, holding one decoded profile at a time, and the forks are added up at the end, which
/// gives the same stacks as merging in order (sums are order-independent). On failure the error
/// is the one of the lowest-numbered failing profile, as a sequential merge would report.
/// Returns the merger, finished by the caller ([`Merger::finish`], [`Merger::sample_type`]).
pub fn merge_encoded<E, L>(
    count: usize,
    kind: Option<&str>,
    threads: usize,
    load: L,
) -> Result<Merger, EncodedMergeError<E>>
where
    E: std::error::Error + Send + 'static,
    L: Fn(usize) -> Result<Vec<u8>, E> + Sync,
{
    let add = |merger: &mut Merger, decoder: &mut Decoder, position: usize| -> Result<(), EncodedMergeError<E>> {
        let bytes = load(position).map_err(|source| EncodedMergeError::Load { position, source })?;
        let profile = decoder.decode(&bytes).map_err(|source| EncodedMergeError::Decode { position, source })?;
        drop(bytes);
        Ok(merger.add_at(&profile, position)?)
    };
    let mut merger = Merger::new(kind);
    if count == 0 {
        return Ok(merger);
    }
    add(&mut merger, &mut Decoder::default(), 0)?;
    let threads = threads.clamp(1, count);
    let results: Vec<Result<Merger, EncodedMergeError<E>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let mut fork = merger.fork();
                let add = &add;
                scope.spawn(move || {
                    let mut decoder = Decoder::default();
                    for position in (1 + t..count).step_by(threads) {
                        add(&mut fork, &mut decoder, position)?;
                    }
                    Ok(fork)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let mut first_error: Option<EncodedMergeError<E>> = None;
    for result in results {
        match result {
            Ok(fork) => merger.absorb(fork),
            Err(e) => {
                if first_error.as_ref().is_none_or(|f| e.position() < f.position()) {
                    first_error = Some(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(merger),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(samples: &[(&[&str], i64)]) -> Profile {
        Profile::from_stacks(
            vec![
                ValueType { kind: "samples".into(), unit: "count".into() },
                ValueType { kind: "cpu".into(), unit: "nanoseconds".into() },
            ],
            samples.iter().map(|(leaf_first, v)| {
                (
                    leaf_first.iter().map(|f| Frame { function: (*f).into(), ..Default::default() }).collect(),
                    vec![1, *v],
                )
            }),
        )
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
