//! Problems found in a user's file, each with the place it was found and, where we can
//! guess the fix, a hint. Validation collects all of them instead of stopping at the first
//! (as rust-analyzer's parser returns errors beside the tree).

use std::fmt;

/// A position in a user's file: 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Location {
    /// The file name as given to [`crate::parse`] (not opened: this crate does no I/O).
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

impl Location {
    /// A location in `file` at `line:column` (both 1-based).
    pub fn new(file: impl Into<String>, line: u32, column: u32) -> Self {
        Location { file: file.into(), line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The contract cannot be used as written; `slo-gate check` exits with code 2.
    Error,
    /// The contract is usable but probably not what its author meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem in a user's file.
///
/// Displays as `file:line:col: error: message`, followed by `\n  hint: ...` when there is a
/// hint, the form compilers use so editors and CI logs link it to the place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Whether the file is unusable ([`Severity::Error`]) or merely suspicious.
    pub severity: Severity,
    /// Where the problem is.
    pub location: Location,
    /// What is wrong, lowercase, without a final period.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `location`.
    pub fn error(location: Location, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Error, location, message: message.into(), hint: None }
    }

    /// A warning at `location`.
    pub fn warning(location: Location, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, location, message: message.into(), hint: None }
    }

    /// The same diagnostic with a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Whether this is an error (as opposed to a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.severity, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Sorts diagnostics by file, line and column (stable, so problems found at one place keep
/// the order in which they were found): reports are deterministic and read top to bottom.
pub(crate) fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| a.location.cmp(&b.location));
}

/// The known word closest to `unknown`, if one is close enough to be a plausible typo.
pub(crate) fn did_you_mean<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = unknown.to_lowercase();
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&lower, &k.to_lowercase()), *k))
        .filter(|(distance, k)| *distance <= (k.chars().count() / 3).max(1) || lower.replace(['-', ' '], "_") == **k)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_location_severity_and_hint() {
        let d = Diagnostic::error(Location::new("c.yaml", 3, 5), "unknown key `servce`")
            .with_hint("did you mean `service`?");
        assert_eq!(d.to_string(), "c.yaml:3:5: error: unknown key `servce`\n  hint: did you mean `service`?");
    }

    #[test]
    fn suggests_close_words_only() {
        let known = ["service", "environment", "objectives", "min_samples"];
        assert_eq!(did_you_mean("servce", &known), Some("service"));
        assert_eq!(did_you_mean("objective", &known), Some("objectives"));
        assert_eq!(did_you_mean("min-samples", &known), Some("min_samples"));
        assert_eq!(did_you_mean("zzz", &known), None);
    }
}
