//! `drop_frames` / `keep_frames`: the producer's own list of uninteresting frames, applied while
//! decoding with the semantics of pprof's `Profile.Prune` (what `go tool pprof` does to every
//! profile it reads), so our flat and cumulative values stay equal to pprof's.
//!
//! The rules, from pprof's documentation and behaviour:
//! - both fields are regular expressions matched against the *whole* function name, after a
//!   simplification that removes a C++ argument list: the name is cut at its first `(` unless that
//!   `(` starts `(anonymous namespace)` or `operator()` (so a Go method `main.(*T).m` is matched as
//!   `main.`, exactly as pprof does);
//! - a frame is dropped when it matches `drop_frames` and does not match `keep_frames`; the frames
//!   it calls go with it (the dropped frame's *callees*), and its callers stay;
//! - inside one location (a call with inlined frames), the outermost matching line decides: the
//!   lines inner to and including it go; when that is the outermost line, the whole location goes;
//! - a stack is cut at the first such location seen from the root, but never before the first
//!   frame that does not match, so a stack that matches from its root on keeps everything.
//!
//! Rust's `regex` and Go's RE2 accept the same syntax for everything a profile producer writes;
//! a pattern Rust refuses is a [`DecodeError::FrameRegex`], as pprof refuses it too.

use std::collections::HashMap;

use regex::Regex;

use super::{DecodeError, Frame};

/// What pruning does to one location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LocationCut {
    /// No frame of the location matches.
    Keep,
    /// Its outermost frame matches: a stack reaching it from a kept caller ends above it.
    Whole,
    /// An inner frame matches: the location keeps only its frames outer to the match, and a
    /// stack reaching it from a kept caller ends with it.
    Beneath,
}

/// The compiled `drop_frames` / `keep_frames` pair of one profile.
#[derive(Debug)]
pub(super) struct Pruner {
    drop: Regex,
    keep: Option<Regex>,
    cache: HashMap<String, bool>,
}

impl Pruner {
    /// `None` when the profile sets no `drop_frames` (`keep_frames` alone does nothing).
    pub(super) fn new(drop: Option<&str>, keep: Option<&str>) -> Result<Option<Pruner>, DecodeError> {
        let Some(drop) = drop else { return Ok(None) };
        let compile = |field: &'static str, pattern: &str| {
            Regex::new(&format!("^(?:{pattern})$")).map_err(|e| DecodeError::FrameRegex {
                field,
                pattern: pattern.to_string(),
                reason: e.to_string(),
            })
        };
        let drop = compile("drop_frames", drop)?;
        let keep = keep.map(|k| compile("keep_frames", k)).transpose()?;
        Ok(Some(Pruner { drop, keep, cache: HashMap::new() }))
    }

    fn drops(&mut self, function: &str) -> bool {
        if let Some(&hit) = self.cache.get(function) {
            return hit;
        }
        let name = simplify(function);
        let hit = self.drop.is_match(name) && !self.keep.as_ref().is_some_and(|k| k.is_match(name));
        self.cache.insert(function.to_string(), hit);
        hit
    }

    /// Cuts one location's frames (innermost first) and says how stacks through it are cut.
    pub(super) fn cut_location(&mut self, frames: &mut Vec<Frame>) -> LocationCut {
        let outermost_match =
            (0..frames.len()).rev().find(|&i| !frames[i].function.is_empty() && self.drops(&frames[i].function));
        match outermost_match {
            None => LocationCut::Keep,
            Some(i) if i + 1 == frames.len() => LocationCut::Whole,
            Some(i) => {
                frames.drain(..=i);
                LocationCut::Beneath
            }
        }
    }
}

/// The range of a sample's `len` locations (innermost first) that stays, given how pruning cuts
/// the location at each position.
pub(super) fn cut_stack(len: usize, cut: impl Fn(usize) -> LocationCut) -> std::ops::Range<usize> {
    let mut found_kept = false;
    for i in (0..len).rev() {
        match cut(i) {
            LocationCut::Keep => found_kept = true,
            _ if !found_kept => {}
            LocationCut::Whole => return i + 1..len,
            LocationCut::Beneath => return i..len,
        }
    }
    0..len
}

/// The function name without a C++ argument list (see the module docs).
fn simplify(function: &str) -> &str {
    const RESERVED: [&str; 2] = ["(anonymous namespace)", "operator()"];
    let name = function.strip_prefix('.').unwrap_or(function);
    let mut from = 0;
    while let Some(offset) = name[from..].find(['(', 'o']) {
        let at = from + offset;
        let rest = &name[at..];
        if let Some(reserved) = RESERVED.iter().find(|r| rest.starts_with(*r)) {
            from = at + reserved.len();
        } else if rest.starts_with('(') {
            return &name[..at];
        } else {
            from = at + 1;
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplify_cuts_the_argument_list_but_not_reserved_names() {
        for (input, expect) in [
            ("main.main", "main.main"),
            ("main.(*stats).record", "main."),
            ("foo::bar(int, char)", "foo::bar"),
            ("(anonymous namespace)::f(int)", "(anonymous namespace)::f"),
            ("Foo::operator()(int)", "Foo::operator()"),
            (".ppc.entry", "ppc.entry"),
            ("runtime.goexit", "runtime.goexit"),
        ] {
            assert_eq!(simplify(input), expect, "{input}");
        }
    }

    fn frames(names: &[&str]) -> Vec<Frame> {
        names.iter().map(|n| Frame { function: (*n).into(), ..Default::default() }).collect()
    }

    #[test]
    fn location_cut_uses_the_outermost_match() {
        let mut p = Pruner::new(Some("malloc|free"), Some("free")).expect("valid").expect("some");
        let mut f = frames(&["inner", "malloc", "outer"]);
        assert_eq!(p.cut_location(&mut f), LocationCut::Beneath);
        assert_eq!(f, frames(&["outer"]));
        let mut f = frames(&["inner", "malloc"]);
        assert_eq!(p.cut_location(&mut f), LocationCut::Whole);
        let mut f = frames(&["free", "main"]);
        assert_eq!(p.cut_location(&mut f), LocationCut::Keep, "keep_frames wins");
        let mut f = frames(&["mallocx", "main"]);
        assert_eq!(p.cut_location(&mut f), LocationCut::Keep, "whole-name match only");
    }

    #[test]
    fn stacks_are_cut_below_the_first_kept_frame() {
        use LocationCut::*;
        let cuts = |ids: &[usize], kinds: &[LocationCut]| -> Vec<usize> {
            ids[cut_stack(ids.len(), |at| kinds[ids[at]])].to_vec()
        };
        // ids are indices into `kinds`; stacks innermost first.
        let kinds = [Keep, Whole, Keep, Beneath, Whole];
        assert_eq!(cuts(&[0, 1, 2], &kinds), vec![2], "whole location and its callees go");
        assert_eq!(cuts(&[0, 3, 2], &kinds), vec![3, 2], "a partly cut location stays");
        assert_eq!(cuts(&[0, 2, 4], &kinds), vec![0, 2, 4], "matches at the root stay");
        assert_eq!(cuts(&[1, 4], &kinds), vec![1, 4], "a stack of matches stays whole");
    }

    #[test]
    fn bad_patterns_name_the_field() {
        let err = Pruner::new(Some("ok"), Some("(")).expect_err("bad keep");
        assert!(err.to_string().contains("keep_frames"), "{err}");
        assert!(Pruner::new(None, Some("x")).expect("no drop").is_none());
    }
}
