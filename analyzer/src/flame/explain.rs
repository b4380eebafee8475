//! The sentences a CPU comparison is reported in, shared by `slo-gate flame diff`, the diff API
//! and the gate: the functions that got slower first, then new work, then the runtime's growth
//! charged to the code that allocates (ADR 0008).

use super::allocation::{AllocationGrowth, bytes};
use super::regression::{ChangeKind, Comparison, Regression, Share};
use super::{Normalization, is_runtime};
use crate::compare::format::share;

/// Functions named per kind of change.
const TOP: usize = 3;

/// What `pct` values are a percentage of: `of the baseline's CPU per request`.
pub fn of_what(c: &Comparison) -> String {
    match c.normalization {
        Normalization::Share | Normalization::Auto => "of the profile".to_string(),
        n => format!("of the baseline's {}", n.per(&c.unit)),
    }
}

/// The lines of a report: at most three functions that got slower (largest change first), at
/// most three with new work, and one line for the runtime when it grew, naming its allocators
/// when `allocation` found them. `found` are the reported functions (from
/// [`super::detect_regressions`]).
pub fn sentences(
    c: &Comparison,
    found: &[Regression],
    metric: Share,
    allocation: Option<&AllocationGrowth>,
) -> Vec<String> {
    let mut out = Vec::new();
    for kind in [ChangeKind::Slower, ChangeKind::NewWork] {
        out.extend(found.iter().filter(|r| r.kind == kind).take(TOP).map(|r| function(c, r, metric)));
    }
    if c.runtime_change.reported || found.iter().any(|r| r.kind == ChangeKind::Runtime) {
        out.push(runtime(c, allocation));
    }
    out
}

/// One function in a sentence. Shares keep the form `f self share 4.0% -> 9.0% (+5.0 pp,
/// confidence 99.9%), hottest path …`; rates and per-unit costs lead with the relative change:
/// `f +31% CPU per request (self 40.9% -> 53.6% of the baseline's CPU per request, +12.7 pp,
/// confidence 99.9%), hottest path …`.
pub fn function(c: &Comparison, r: &Regression, metric: Share) -> String {
    let s = r.share(metric);
    let which = metric.name();
    let new = if r.kind == ChangeKind::NewWork { "new work: " } else { "" };
    let path = short_path(&r.hottest_path);
    match c.normalization {
        Normalization::Share | Normalization::Auto => format!(
            "{new}{} {which} share {:.1}% -> {:.1}% ({:+.1} pp, confidence {}), hottest path {path}",
            r.function,
            s.baseline_pct,
            s.candidate_pct,
            s.change_pp,
            share(r.confidence),
        ),
        n => {
            // With the shift of all shared code taken out (ADR 0008), the change is beyond it.
            let beyond = match c.common_shift {
                Some(shift) if (shift - 1.0).abs() >= 0.05 => {
                    format!(" beyond the {:+.0}% of all shared code", (shift - 1.0) * 100.0)
                }
                _ => String::new(),
            };
            let relative = match s.change_pct {
                Some(p) if r.kind != ChangeKind::NewWork => format!(" {p:+.0}% {}{beyond}", n.per(&c.unit)),
                _ => String::new(),
            };
            format!(
                "{new}{}{relative} ({which} {:.1}% -> {:.1}% {}, {:+.1} pp, confidence {}), hottest path {path}",
                r.function,
                s.baseline_pct,
                s.candidate_pct,
                of_what(c),
                s.change_pp,
                share(r.confidence),
            )
        }
    }
}

/// The runtime's line: its summed growth and largest contributors, and who allocates.
fn runtime(c: &Comparison, allocation: Option<&AllocationGrowth>) -> String {
    let rc = &c.runtime_change;
    let top: Vec<String> =
        rc.top.iter().filter(|(_, pp)| *pp > 0.0).take(TOP).map(|(f, pp)| format!("{f} {pp:+.1} pp")).collect();
    let mut line = format!(
        "runtime (GC, allocation, scheduling) {:.1}% -> {:.1}% {} ({:+.1} pp: {})",
        rc.baseline_pct,
        rc.candidate_pct,
        of_what(c),
        rc.change_pp(),
        top.join(", ")
    );
    match allocation {
        Some(a) if !a.allocators.is_empty() => {
            let per_unit = c.normalization == Normalization::PerUnit;
            let named: Vec<String> = a
                .allocators
                .iter()
                .map(|x| {
                    let growth = x.candidate_bytes_per_second - x.baseline_bytes_per_second;
                    let unit = match (per_unit, x.baseline_bytes_per_unit, x.candidate_bytes_per_unit) {
                        (true, Some(b), Some(cu)) => format!(", {} per {}", signed_bytes(cu - b), c.unit),
                        _ => String::new(),
                    };
                    format!(
                        "{} allocation in {} ({}/s per process{unit}) costs about {:+.1} pp of it",
                        if x.new { "new" } else { "more" },
                        x.function,
                        signed_bytes(growth),
                        x.runtime_pp
                    )
                })
                .collect();
            line.push_str("; ");
            line.push_str(&named.join("; "));
        }
        Some(a) if !a.notes.is_empty() => {
            line.push_str(&format!("; the allocating code is not known: {}", a.notes.join("; ")));
        }
        Some(_) => line.push_str("; no function allocates more in the candidate"),
        None => line.push_str("; the allocating code is not known: compare allocs or heap profiles of both builds"),
    }
    line
}

fn signed_bytes(n: f64) -> String {
    if n >= 0.0 { format!("+{}", bytes(n)) } else { format!("-{}", bytes(-n)) }
}

/// The last frames of a call path (`… > caller > function`): runtime and thread-start frames
/// at the root say nothing in a report; the JSON keeps the whole path.
pub fn short_path(path: &[String]) -> String {
    const SHOWN: usize = 4;
    let tail = &path[path.len().saturating_sub(SHOWN)..];
    let prefix = if path.len() > SHOWN { "… > " } else { "" };
    format!("{prefix}{}", tail.join(" > "))
}

/// Whether any reported function is user code that got slower or is new (not only the runtime).
pub fn names_user_code(found: &[Regression]) -> bool {
    found.iter().any(|r| !is_runtime(&r.function))
}
