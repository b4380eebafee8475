//! Which code's allocation grew between two builds, from their `allocs`/heap profiles, so that
//! grown GC and allocator CPU is charged to the user code that allocates (ADR 0008).
//!
//! Go's `allocs` and `heap` profiles count every allocation since the process started
//! (`alloc_space`, bytes, by the allocating stack: the leaf is the function that called the
//! allocator). A process's allocation *rate* is therefore the difference between two snapshots
//! over the time between them, per function; each side's rate is the mean over its processes, and,
//! when the comparison knows the work, it is also given per unit of work. A function's part of the
//! allocation growth is its growth over the summed growth of the functions that grew, and the
//! runtime's CPU growth is divided between the allocators in those proportions: the GC runs more
//! often the faster the program allocates, so its extra cost is the allocators' doing. (How long a
//! GC cycle takes depends on the live heap rather than the allocation rate; the proportional split
//! is a first-order charge, and the report says "about".)

use std::collections::BTreeMap;

use super::regression::{Comparison, Run};
use super::{Normalization, is_runtime};

/// The sample type of allocated bytes in Go's allocation profiles.
pub const ALLOC_SPACE: &str = "alloc_space";

/// An allocation comparison (module docs).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct AllocationGrowth {
    /// All allocation, bytes per second per process, on the baseline (`None` when it could not
    /// be measured).
    pub baseline_bytes_per_second: Option<f64>,
    /// The same on the candidate.
    pub candidate_bytes_per_second: Option<f64>,
    /// Work per second per process of each side, when the comparison knew it.
    pub work_per_second: (Option<f64>, Option<f64>),
    /// The functions that account for most of the growth (at most three, each at least a tenth of
    /// it), largest first.
    pub allocators: Vec<Allocator>,
    /// Why nothing could be measured, when that is so.
    pub notes: Vec<String>,
}

/// One function's allocation on both sides.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Allocator {
    /// The allocating function (the leaf of the allocation stacks).
    pub function: String,
    /// Bytes per second per process on the baseline.
    pub baseline_bytes_per_second: f64,
    /// On the candidate.
    pub candidate_bytes_per_second: f64,
    /// Bytes per unit of work on the baseline, when the work is known.
    pub baseline_bytes_per_unit: Option<f64>,
    /// On the candidate.
    pub candidate_bytes_per_unit: Option<f64>,
    /// Its part (0..1) of the growth of all functions that grew.
    pub part_of_growth: f64,
    /// The runtime's CPU change charged to it, in the comparison's percentage points.
    pub runtime_pp: f64,
    /// Absent or below a tenth of its candidate rate in the baseline: new allocation.
    pub new: bool,
}

/// Compares the allocation profiles of the two builds' processes, measured as the comparison
/// `cpu` measured CPU (per unit of work when it did, else per second), and charges the
/// runtime's CPU growth of `cpu` to the allocators.
pub fn attribute_allocations(baseline: &[Run], candidate: &[Run], cpu: &Comparison) -> AllocationGrowth {
    let mut out = AllocationGrowth { work_per_second: cpu.work_per_second, ..Default::default() };
    let (b, b_note) = side_rates(baseline, "baseline");
    let (c, c_note) = side_rates(candidate, "candidate");
    out.notes.extend(b_note.into_iter().chain(c_note));
    let (Some(b), Some(c)) = (b, c) else { return out };
    out.baseline_bytes_per_second = Some(b.values().sum());
    out.candidate_bytes_per_second = Some(c.values().sum());
    let per_unit = cpu.normalization == Normalization::PerUnit;
    let (ub, uc) = cpu.work_per_second;
    let measure = |rate: f64, unit: Option<f64>| if per_unit { unit.map_or(rate, |u| rate / u) } else { rate };
    let mut growth: Vec<(&str, f64)> = c
        .iter()
        .map(|(f, &cr)| (f.as_str(), measure(cr, uc) - measure(b.get(f).copied().unwrap_or(0.0), ub)))
        .filter(|&(_, g)| g > 0.0)
        .collect();
    let total: f64 = growth.iter().map(|&(_, g)| g).sum();
    if total <= 0.0 {
        return out;
    }
    growth.sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(y.0)));
    let runtime_pp = cpu.runtime_change.change_pp().max(0.0);
    for &(function, g) in growth.iter().take(3).filter(|&&(_, g)| g >= total / 10.0) {
        let (br, cr) = (b.get(function).copied().unwrap_or(0.0), c[function]);
        out.allocators.push(Allocator {
            function: function.to_string(),
            baseline_bytes_per_second: br,
            candidate_bytes_per_second: cr,
            baseline_bytes_per_unit: ub.map(|u| br / u),
            candidate_bytes_per_unit: uc.map(|u| cr / u),
            part_of_growth: g / total,
            runtime_pp: runtime_pp * g / total,
            new: br < cr / 10.0,
        });
    }
    out
}

/// Mean allocation rate per function over a side's processes, bytes per second; `None` with the
/// reason when no process has two snapshots of allocated bytes at different times.
fn side_rates(runs: &[Run], side: &str) -> (Option<BTreeMap<String, f64>>, Option<String>) {
    let rates: Vec<BTreeMap<String, f64>> = runs.iter().filter_map(run_rates).collect();
    if rates.is_empty() {
        let note = if runs.iter().all(|r| r.profiles.is_empty()) {
            format!("the {side} has no allocation profiles (allocs or heap)")
        } else {
            format!("no {side} process has two allocation snapshots at different times, so no allocation rate")
        };
        return (None, Some(note));
    }
    let mut mean: BTreeMap<String, f64> = BTreeMap::new();
    for r in &rates {
        for (f, v) in r {
            *mean.entry(f.clone()).or_default() += v / rates.len() as f64;
        }
    }
    (Some(mean), None)
}

/// One process's allocation rate per function between its first and last snapshot; `None` when
/// it has fewer than two at different times, or a count went down (the process restarted).
fn run_rates(run: &Run) -> Option<BTreeMap<String, f64>> {
    let mut snapshots: Vec<(i64, BTreeMap<String, i64>)> = run
        .profiles
        .iter()
        .filter_map(|p| {
            let index = p.sample_types.iter().position(|t| t.kind == ALLOC_SPACE)?;
            let mut by_function: BTreeMap<String, i64> = BTreeMap::new();
            for s in &p.samples {
                let leaf = p.leaf(s).map_or("<unknown>", |f| &f.function);
                let v = s.values.get(index).copied().unwrap_or(0).max(0);
                let e = by_function.entry(leaf.to_string()).or_default();
                *e = e.saturating_add(v);
            }
            Some((p.time_nanos, by_function))
        })
        .collect();
    snapshots.sort_by_key(|(t, _)| *t);
    let (first, last) = (snapshots.first()?, snapshots.last()?);
    let seconds = (last.0 - first.0) as f64 / 1e9;
    if seconds <= 0.0 {
        return None;
    }
    let mut rates = BTreeMap::new();
    for (f, &v) in &last.1 {
        let before = first.1.get(f).copied().unwrap_or(0);
        if v < before {
            return None;
        }
        // The runtime's own allocations (goroutine stacks) are not the program's doing.
        if !is_runtime(f) {
            rates.insert(f.clone(), (v - before) as f64 / seconds);
        }
    }
    Some(rates)
}

/// `52 MB`, `340 KB`, `12 B`: decimal units, as `go tool pprof` prints sizes.
pub fn bytes(n: f64) -> String {
    let (value, unit) = match n.abs() {
        x if x >= 1e9 => (n / 1e9, "GB"),
        x if x >= 1e6 => (n / 1e6, "MB"),
        x if x >= 1e3 => (n / 1e3, "KB"),
        _ => (n, "B"),
    };
    if value.abs() >= 100.0 || unit == "B" { format!("{value:.0} {unit}") } else { format!("{value:.1} {unit}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pprof::{Frame, Profile, ValueType};

    /// A cumulative allocation snapshot at `seconds` with bytes by allocating function.
    fn snapshot(seconds: i64, by_function: &[(&str, i64)]) -> Profile {
        let vt = |kind: &str| ValueType { kind: kind.into(), unit: "bytes".into() };
        let stacks = by_function.iter().map(|&(f, v)| {
            let frames = [f, "main.main"].map(|f| Frame { function: f.into(), ..Default::default() });
            (frames.to_vec(), vec![v, v / 2])
        });
        Profile {
            time_nanos: seconds * 1_000_000_000,
            ..Profile::from_stacks(vec![vt(ALLOC_SPACE), vt("inuse_space")], stacks)
        }
    }

    fn comparison(runtime_pp: f64, work: (Option<f64>, Option<f64>)) -> Comparison {
        let mut c = crate::flame::regression::tests::empty_comparison();
        c.runtime_change.candidate_pct = runtime_pp;
        c.work_per_second = work;
        c.normalization = if work.0.is_some() { Normalization::PerUnit } else { Normalization::Rate };
        c
    }

    #[test]
    fn the_new_allocator_gets_the_runtime_growth() {
        let base =
            vec![Run::new("b1", vec![snapshot(0, &[("main.encode", 1000)]), snapshot(10, &[("main.encode", 11_000)])])];
        let cand = vec![Run::new(
            "c1",
            vec![
                snapshot(0, &[("main.encode", 0), ("main.refreshCache", 0)]),
                snapshot(
                    10,
                    &[("main.encode", 10_000), ("main.refreshCache", 500_000_000), ("runtime.malg", 9_000_000)],
                ),
            ],
        )];
        let found = attribute_allocations(&base, &cand, &comparison(20.0, (Some(100.0), Some(100.0))));
        assert_eq!(found.allocators.len(), 1, "{found:#?}");
        let a = &found.allocators[0];
        assert_eq!(a.function, "main.refreshCache");
        assert!(a.new && (a.candidate_bytes_per_second - 5e7).abs() < 1.0, "{a:#?}");
        assert_eq!(a.candidate_bytes_per_unit, Some(5e5));
        assert!((a.runtime_pp - 20.0).abs() < 1e-9, "{a:#?}");
        assert_eq!(found.baseline_bytes_per_second, Some(1000.0));
        assert_eq!(bytes(5e7), "50.0 MB");
        assert_eq!(bytes(5e5), "500 KB");
    }

    #[test]
    fn one_snapshot_or_a_restart_gives_no_rate_and_says_so() {
        let one = vec![Run::new("b1", vec![snapshot(0, &[("main.f", 10)])])];
        let restarted = vec![Run::new("c1", vec![snapshot(0, &[("main.f", 10)]), snapshot(5, &[("main.f", 5)])])];
        let found = attribute_allocations(&one, &restarted, &comparison(5.0, (None, None)));
        assert!(found.allocators.is_empty());
        assert_eq!(
            found.notes,
            [
                "no baseline process has two allocation snapshots at different times, so no allocation rate",
                "no candidate process has two allocation snapshots at different times, so no allocation rate"
            ]
        );
        let found = attribute_allocations(&[], &restarted, &comparison(5.0, (None, None)));
        assert_eq!(found.notes[0], "the baseline has no allocation profiles (allocs or heap)");
    }
}
