//! One goroutine snapshot, from either input form: a pprof goroutine profile (one sample per
//! distinct stack, with a count; no wait state, no creator) or a `debug=2` /
//! `runtime.Stack(all=true)` text dump (one block per goroutine with its state, minutes
//! waiting and `created by`). Both become the same [`Snapshot`] so everything downstream is
//! blind to the source. Text parsing keeps every frame as written; normalisation is
//! `normalize.rs`'s job.

use crate::pprof::Profile;

/// The goroutines alive at one moment, grouped by stack.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// When the snapshot was taken (unix nanoseconds; 0 when unknown).
    pub time_unix_nano: i64,
    /// Goroutine groups; a text dump yields one group per goroutine with `count == 1`.
    pub goroutines: Vec<GoroutineGroup>,
}

/// Goroutines sharing one stack (and, for text dumps, one header).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GoroutineGroup {
    /// How many goroutines have this stack.
    pub count: u64,
    /// Frames, innermost first.
    pub stack: Vec<StackFrame>,
    /// The state in the text header (`chan receive`, `semacquire`, `running`, ...).
    pub wait_reason: Option<String>,
    /// The `N minutes` of the text header.
    pub wait_minutes: Option<u64>,
    /// The function named by `created by F`.
    pub created_by: Option<String>,
}

/// One frame of a goroutine stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StackFrame {
    /// Fully qualified function name, e.g. `sync.(*WaitGroup).Wait`.
    pub function: String,
    /// Source file as the runtime reports it (may be empty).
    pub file: String,
    /// Source line (0 when unknown).
    pub line: u64,
}

impl Snapshot {
    /// Total goroutines in the snapshot.
    pub fn total(&self) -> u64 {
        self.goroutines.iter().map(|g| g.count).sum()
    }
}

/// Converts a decoded goroutine profile. The count of each sample is its first value (the
/// goroutine profile has the single sample type `goroutine/count`); samples with a count of 0
/// or below are dropped.
pub fn from_pprof(profile: &Profile) -> Snapshot {
    let index = profile.default_sample_index().unwrap_or(0);
    let goroutines = profile
        .samples
        .iter()
        .filter_map(|s| {
            let count = *s.values.get(index).or(s.values.first())?;
            if count <= 0 {
                return None;
            }
            let stack = profile
                .stack(s)
                .map(|f| StackFrame {
                    function: f.function.to_string(),
                    file: f.file.to_string(),
                    line: u64::try_from(f.line).unwrap_or(0),
                })
                .collect();
            Some(GoroutineGroup { count: count as u64, stack, ..GoroutineGroup::default() })
        })
        .collect();
    Snapshot { time_unix_nano: profile.time_nanos, goroutines }
}

/// Why a text dump could not be read; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: malformed goroutine header: {text}")]
    BadHeader { line: usize, text: String },
    #[error("line {line}: expected a function call, found: {text}")]
    BadFrame { line: usize, text: String },
    #[error("line {line}: expected a tab-indented file:line after the frame, found: {text}")]
    BadLocation { line: usize, text: String },
    #[error("line {line}: frame without its file:line (truncated dump?)")]
    Truncated { line: usize },
    #[error("line {line}: goroutine has no frames")]
    EmptyStack { line: usize },
    #[error("no goroutine found in the dump")]
    Empty,
}

/// Parses a `debug=2` goroutine dump (the same format as `runtime.Stack(buf, true)` and a
/// crash traceback). Lines outside goroutine blocks before the first header (e.g. a `panic:`
/// message) are skipped; inside a block every line must be a frame, a location, a
/// `created by` pair or an elision note. The time is left at 0: text dumps carry none.
pub fn parse_debug2(text: &str) -> Result<Snapshot, ParseError> {
    let mut goroutines = Vec::new();
    // (header line, goroutine, stack reported unavailable)
    let mut current: Option<(usize, GoroutineGroup, bool)> = None;
    // The function line waiting for its location line, and whether it is `created by`.
    let mut pending: Option<(usize, String, bool)> = None;

    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_end_matches('\r');
        if let Some((fn_line, function, is_creator)) = pending.take() {
            let Some(loc) = line.strip_prefix('\t').or_else(|| line.strip_prefix("    ")) else {
                return Err(if line.trim().is_empty() {
                    ParseError::Truncated { line: fn_line }
                } else {
                    ParseError::BadLocation { line: n, text: line.to_string() }
                });
            };
            let (file, line_no) =
                parse_location(loc).ok_or_else(|| ParseError::BadLocation { line: n, text: line.to_string() })?;
            let Some((_, g, _)) = current.as_mut() else {
                // Unreachable: a frame is only pending inside a goroutine block.
                continue;
            };
            if is_creator {
                g.created_by = Some(function);
            } else {
                g.stack.push(StackFrame { function, file, line: line_no });
            }
            continue;
        }
        if line.starts_with("goroutine ") && line.ends_with(':') {
            finish(&mut current, &mut goroutines)?;
            let (reason, minutes) =
                parse_header(line).ok_or_else(|| ParseError::BadHeader { line: n, text: line.to_string() })?;
            current = Some((
                n,
                GoroutineGroup {
                    count: 1,
                    wait_reason: Some(reason),
                    wait_minutes: minutes,
                    ..GoroutineGroup::default()
                },
                false,
            ));
            continue;
        }
        if current.is_none() || line.trim().is_empty() {
            if line.trim().is_empty() {
                finish(&mut current, &mut goroutines)?;
            }
            continue;
        }
        let trimmed = line.trim();
        if trimmed.starts_with("goroutine running on other thread") {
            // A crash traceback cannot show a goroutine running elsewhere; it stays stackless.
            if let Some((_, _, unavailable)) = current.as_mut() {
                *unavailable = true;
            }
            continue;
        }
        if trimmed.starts_with("...") {
            // "...additional frames elided..." / "...N frames elided...".
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("created by ") {
            // Go 1.21+: `created by F in goroutine K`.
            let function = rest.split(" in goroutine ").next().unwrap_or(rest).trim().to_string();
            pending = Some((n, function, true));
            continue;
        }
        let function =
            strip_arguments(trimmed).ok_or_else(|| ParseError::BadFrame { line: n, text: line.to_string() })?;
        pending = Some((n, function, false));
    }
    if let Some((fn_line, _, _)) = pending {
        return Err(ParseError::Truncated { line: fn_line });
    }
    finish(&mut current, &mut goroutines)?;
    if goroutines.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(Snapshot { time_unix_nano: 0, goroutines })
}

fn finish(
    current: &mut Option<(usize, GoroutineGroup, bool)>,
    out: &mut Vec<GoroutineGroup>,
) -> Result<(), ParseError> {
    if let Some((header_line, g, unavailable)) = current.take() {
        if g.stack.is_empty() && !unavailable {
            return Err(ParseError::EmptyStack { line: header_line });
        }
        out.push(g);
    }
    Ok(())
}

/// `goroutine 12 [chan receive, 5 minutes]:`, also with Go 1.23's `gp=... m=...` fields and
/// extra flags such as `locked to thread`. Returns the state and the minutes.
fn parse_header(line: &str) -> Option<(String, Option<u64>)> {
    let rest = line.strip_prefix("goroutine ")?;
    let id_end = rest.find(|c: char| !c.is_ascii_digit())?;
    if id_end == 0 {
        return None;
    }
    let open = rest.find('[')?;
    let close = rest.rfind("]:")?;
    if close < open {
        return None;
    }
    let mut parts = rest[open + 1..close].split(", ");
    let reason = parts.next()?.trim().to_string();
    if reason.is_empty() {
        return None;
    }
    let minutes = parts.find_map(|p| p.strip_suffix(" minutes").and_then(|m| m.trim().parse().ok()));
    Some((reason, minutes))
}

/// `pkg.(*T).m(0x1, {0x2, 0x3}, ...)` → `pkg.(*T).m`: the final balanced parenthesised group
/// is the argument list. `main.main()` keeps an empty one.
fn strip_arguments(line: &str) -> Option<String> {
    if !line.ends_with(')') {
        return None;
    }
    let mut depth = 0usize;
    for (i, c) in line.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    let name = line[..i].trim();
                    return (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| name.to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// `path/to/file.go:123 +0x1e` (the offset and `fp=`/`sp=`/`pc=` fields are optional).
fn parse_location(loc: &str) -> Option<(String, u64)> {
    let loc = loc.trim();
    let head = loc.split(" +0x").next()?.split(" fp=").next()?.trim();
    let (file, line) = head.rsplit_once(':')?;
    let line = line.trim().parse().ok()?;
    Some((file.to_string(), line))
}
