//! Stack normalisation and fingerprints. A normalised stack is the list of function names
//! (and, if asked, `file:line`) with everything that varies between two goroutines parked at
//! the same place removed: argument values, addresses, `+0x` offsets, goroutine ids, and the
//! runtime's own parking frames at the top (`runtime.gopark`, `runtime.chanrecv2`, ...). The
//! last matters because a `debug=2` dump hides those frames while a pprof profile keeps them:
//! stripping them makes both forms of the same goroutine share one fingerprint. What they said
//! is kept as the wait reason (`annotate.rs`) before they are dropped.
//!
//! The fingerprint is a 64-bit hash of the normalised frames defined in this crate (a word at a
//! time, FxHash's mixing): stable across runs, platforms and Rust versions (unlike `std`'s
//! `DefaultHasher`), so it can be stored and compared.

use std::hash::Hasher;

use super::snapshot::StackFrame;
use crate::hash::FxHasher;

/// A normalised frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NormalFrame {
    /// Function name without arguments or generic type arguments' values.
    pub function: String,
    /// `file:line`, kept only when [`NormalizeOptions::keep_file_line`] is set.
    pub location: Option<(String, u64)>,
}

/// How much of a frame identifies a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NormalizeOptions {
    /// Keep `file:line` in each frame (two blocking lines in one function stay apart).
    pub keep_file_line: bool,
}

/// A stable 64-bit stack fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Whether `function` belongs to the Go runtime proper (`runtime.`, not `runtime/pprof.`).
pub fn is_runtime(function: &str) -> bool {
    function.starts_with("runtime.")
}

/// Cleans one function name as written in a text dump or a profile: drops an argument list
/// left on it, a `{...}`-style address suffix, and the `[...]` of generic instantiations
/// (`main.f[...]` in tracebacks, `main.f[go.shape.int]` in profiles).
pub fn normalize_function(function: &str) -> String {
    let mut out = String::with_capacity(function.len());
    normalize_function_into(function, &mut out);
    out
}

/// [`normalize_function`] appended to `out`, so a caller normalising many names reuses one buffer.
fn normalize_function_into(function: &str, out: &mut String) {
    let mut name = function.trim();
    if name.ends_with(')') {
        // An argument list is a final group that does not start a method receiver `(*T)`.
        if let Some(open) = name.rfind('(')
            && !name[open..].starts_with("(*")
            && open > 0
            && !name[..open].ends_with('.')
        {
            name = &name[..open];
        }
    }
    if !name.contains('[') && !name.contains(']') {
        out.push_str(name);
        return;
    }
    let mut depth = 0usize;
    for c in name.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
}

/// Normalises a stack (innermost first): drops the runtime's parking frames at the top, cleans
/// function names, keeps `file:line` if asked. A stack made only of runtime frames is kept
/// whole (it is a runtime goroutine; `annotate.rs` recognises it by those frames).
pub fn normalize(stack: &[StackFrame], options: NormalizeOptions) -> Vec<NormalFrame> {
    let start = stack.iter().position(|f| !is_runtime(&f.function)).unwrap_or(0);
    stack[start..]
        .iter()
        .map(|f| NormalFrame {
            function: normalize_function(&f.function),
            location: options.keep_file_line.then(|| (f.file.clone(), f.line)),
        })
        .collect()
}

/// The fingerprint of normalised frames: a 64-bit word-at-a-time hash (FxHash's mixing) of
/// each frame with separators, so `a.b|c` ≠ `a|b.c`.
pub fn fingerprint(frames: &[NormalFrame]) -> Fingerprint {
    let mut h = StackHash::new();
    for f in frames {
        h.frame(&f.function, f.location.as_ref().map(|(file, line)| (file.as_str(), *line)));
    }
    h.finish()
}

/// `fingerprint(&normalize(stack, options))` without building the normalised stack: the
/// clustering hot path, once per distinct stack of every snapshot.
pub fn fingerprint_stack(stack: &[StackFrame], options: NormalizeOptions) -> Fingerprint {
    let start = stack.iter().position(|f| !is_runtime(&f.function)).unwrap_or(0);
    let mut h = StackHash::new();
    let mut name = String::new();
    for f in &stack[start..] {
        name.clear();
        normalize_function_into(&f.function, &mut name);
        h.frame(&name, options.keep_file_line.then_some((f.file.as_str(), f.line)));
    }
    h.finish()
}

/// The fingerprint hash over frames as [`fingerprint`] defines them: a word-at-a-time
/// multiply-rotate hash (FxHash's mixing, [`crate::hash::FxHasher`]) with a separator after each
/// part, so `a.b|c` ≠ `a|b.c`. Defined in this crate, so stable across runs and platforms.
struct StackHash(FxHasher);

impl StackHash {
    fn new() -> Self {
        StackHash(FxHasher::default())
    }

    fn frame(&mut self, function: &str, location: Option<(&str, u64)>) {
        self.0.write(function.as_bytes());
        if let Some((file, line)) = location {
            self.0.write_u8(0x1f);
            self.0.write(file.as_bytes());
            self.0.write_u64(line);
        }
        self.0.write_u8(0x1e);
    }

    fn finish(&self) -> Fingerprint {
        Fingerprint(self.0.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, line: u64) -> StackFrame {
        StackFrame { function: function.to_string(), file: "/app/main.go".to_string(), line }
    }

    #[test]
    fn streamed_fingerprint_equals_the_fingerprint_of_the_normalised_stack() {
        let stacks = [
            vec![frame("runtime.gopark", 1), frame("runtime.chanrecv2", 2), frame("main.f(0x1, {0x2})", 3)],
            vec![frame("main.(*T[...]).f", 4), frame(" main.g[go.shape.int] ", 5), frame("main.h.func1()", 6)],
            vec![frame("runtime.gopark", 1), frame("runtime.gcBgMarkWorker", 2)],
            vec![frame("pkg.(*T).m", 7), frame("pkg.(*T).m(...)", 7), frame("π.ünïcode[é]", 8)],
            vec![],
        ];
        for stack in &stacks {
            for keep_file_line in [false, true] {
                let options = NormalizeOptions { keep_file_line };
                assert_eq!(fingerprint_stack(stack, options), fingerprint(&normalize(stack, options)), "{stack:?}");
            }
        }
    }
}
