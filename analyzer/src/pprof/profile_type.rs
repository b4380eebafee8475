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

/// A Pyroscope profile type id, `name:sample_type:sample_unit:period_type:period_unit`
/// (`process_cpu:cpu:nanoseconds:cpu:nanoseconds`): the one type every API and the CLI read and
/// write these ids with. The period parts may be empty (a profile without a period type); the
/// first three may not.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileTypeId {
    /// `process_cpu`, `memory`, `goroutine`, ... ([`profile_name`]).
    pub name: String,
    pub sample_type: String,
    pub sample_unit: String,
    pub period_type: String,
    pub period_unit: String,
}

/// The CPU time profile Go's `/debug/pprof/profile` gives.
pub const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// Bytes allocated, from Go's `allocs` and `heap` profiles.
pub const ALLOC_SPACE: &str = "memory:alloc_space:bytes:space:bytes";
/// Goroutine counts, from Go's `goroutine` profile.
pub const GOROUTINES: &str = "goroutine:goroutine:count:goroutine:count";

impl ProfileTypeId {
    /// Whether sample values are measured in the period's unit (CPU time sampled every 10 ms),
    /// so that a value divided by the period counts sampled events.
    pub fn counts_in_periods(&self) -> bool {
        self.sample_unit == self.period_unit
    }
}

impl std::fmt::Display for ProfileTypeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}:{}:{}", self.name, self.sample_type, self.sample_unit, self.period_type, self.period_unit)
    }
}

/// Why a text is not a profile type id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a profile type id name:sample_type:sample_unit:period_type:period_unit")]
pub struct BadProfileTypeId {
    /// The text, cut to 200 characters.
    pub text: String,
}

impl std::str::FromStr for ProfileTypeId {
    type Err = BadProfileTypeId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadProfileTypeId { text: text.chars().take(200).collect() };
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            [name, sample_type, sample_unit, period_type, period_unit]
                if !name.is_empty() && !sample_type.is_empty() && !sample_unit.is_empty() =>
            {
                Ok(ProfileTypeId {
                    name: name.to_string(),
                    sample_type: sample_type.to_string(),
                    sample_unit: sample_unit.to_string(),
                    period_type: period_type.to_string(),
                    period_unit: period_unit.to_string(),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// The Pyroscope profile type id of the sample type at `sample_index`, or `None` when the
/// profile has no such sample type. A missing period type leaves its two parts empty.
pub fn profile_type_id(profile: &Profile, sample_index: usize) -> Option<ProfileTypeId> {
    let sample_type = profile.sample_types.get(sample_index)?;
    let (period_type, period_unit) =
        profile.period_type.as_ref().map_or((String::new(), String::new()), |p| (p.kind.clone(), p.unit.clone()));
    Some(ProfileTypeId {
        name: profile_name(profile),
        sample_type: sample_type.kind.clone(),
        sample_unit: sample_type.unit.clone(),
        period_type,
        period_unit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_as_written() {
        for text in [CPU, ALLOC_SPACE, GOROUTINES, "threadcreate:threadcreate:count::"] {
            let id: ProfileTypeId = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
        }
        assert!(CPU.parse::<ProfileTypeId>().unwrap().counts_in_periods());
        for bad in ["", "a:b:c:d", "a:b:c:d:e:f", ":cpu:nanoseconds:cpu:nanoseconds", "a::c:d:e"] {
            assert!(bad.parse::<ProfileTypeId>().is_err(), "{bad}");
        }
    }
}
