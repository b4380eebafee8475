//! Profile type ids in Pyroscope's form `name:sample_type:unit:period_type:period_unit`, e.g.
//! `process_cpu:cpu:nanoseconds:cpu:nanoseconds` or `memory:inuse_space:bytes:space:bytes`.
//!
//! Pyroscope learns the `name` from whoever pushes or scrapes the profile (the Go endpoint it
//! came from). A stored profile carries no such name, so it is derived from the sample types,
//! with the rule Pyroscope's names follow for Go profiles:
//!
//! | sample types contain | name |
//! |---|---|
//! | `cpu` | `process_cpu` |
//! | `alloc_objects`, `alloc_space`, `inuse_objects` or `inuse_space` | `memory` |
//! | `goroutine` | `goroutine` |
//! | `contentions` or `delay` | `mutex` or `block`, see below |
//! | anything else | the period type, else the first sample type (`threadcreate`) |
//!
//! Go writes mutex and block profiles with identical metadata (sample types
//! `contentions/count` and `delay/nanoseconds`, period type `contentions/count`, period 1), so
//! the period type cannot tell them apart. Their stacks can: the runtime records mutex
//! contention when the lock is *released*, so every mutex sample's innermost frame is an unlock
//! (`sync.(*Mutex).Unlock`, `sync.(*RWMutex).Unlock`/`RUnlock`), while a block sample ends in
//! the call that waited (`sync.(*Mutex).Lock`, `runtime.chanrecv1`, `runtime.selectgo`, ...).
//! The profile is `mutex` when any sample ends in an unlock, else `block` (also for a profile
//! with no samples, where nothing tells them apart).

use super::Profile;

/// The Pyroscope profile name (`process_cpu`, `memory`, `goroutine`, `mutex`, `block`, ...) of
/// a profile; see the module documentation for the rule.
pub fn profile_name(profile: &Profile) -> String {
    let has = |kinds: &[&str]| profile.sample_types.iter().any(|t| kinds.contains(&t.kind.as_str()));
    if has(&["cpu"]) {
        "process_cpu".to_string()
    } else if has(&["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"]) {
        "memory".to_string()
    } else if has(&["goroutine"]) {
        "goroutine".to_string()
    } else if has(&["contentions", "delay"]) {
        let ends_in_unlock = profile.samples.iter().any(|s| {
            profile
                .leaf(s)
                .is_some_and(|leaf| leaf.function.ends_with(".Unlock") || leaf.function.ends_with(".RUnlock"))
        });
        if ends_in_unlock { "mutex" } else { "block" }.to_string()
    } else if let Some(period_type) = profile.period_type.as_ref().filter(|t| !t.kind.is_empty()) {
        period_type.kind.clone()
    } else {
        profile.sample_types.first().map(|t| t.kind.clone()).unwrap_or_default()
    }
}

/// The Pyroscope profile type id of the sample type at `sample_index`, or `None` when the
/// profile has no such sample type. A missing period type leaves its two parts empty.
pub fn profile_type_id(profile: &Profile, sample_index: usize) -> Option<String> {
    let sample_type = profile.sample_types.get(sample_index)?;
    let (period_kind, period_unit) =
        profile.period_type.as_ref().map_or(("", ""), |p| (p.kind.as_str(), p.unit.as_str()));
    Some(format!("{}:{}:{}:{}:{}", profile_name(profile), sample_type.kind, sample_type.unit, period_kind, period_unit))
}
