//! Why a query was refused. Every variant carries the byte offset in the query text where the
//! problem starts, so an API can point at it; messages are lowercase without a final period.

/// The limits a query must stay within (hostile input must not cost unbounded time or memory).
pub mod limits {
    /// Longest accepted query text, in bytes.
    pub const MAX_QUERY_BYTES: usize = 16 * 1024;
    /// Deepest nesting of `(`, `{` and `!`.
    pub const MAX_DEPTH: usize = 64;
    /// Most comparisons, bare boolean conditions and aggregate stages in one query.
    pub const MAX_CONDITIONS: usize = 256;
    /// Most regular expressions (`=~`, `!~`) in one query.
    pub const MAX_REGEXES: usize = 32;
    /// Compiled size limit of each regular expression, in bytes.
    pub const MAX_REGEX_BYTES: usize = 1024 * 1024;
}

/// A query that cannot be parsed or is outside what this crate evaluates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("query is {len} bytes long, more than the limit of {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("unsupported TraceQL construct \"{construct}\" at offset {offset}")]
    Unsupported { construct: String, offset: usize },
    #[error("unterminated string starting at offset {offset}")]
    UnterminatedString { offset: usize },
    #[error("invalid escape \"{escape}\" in string at offset {offset}")]
    InvalidEscape { escape: String, offset: usize },
    #[error("unknown intrinsic \"{name}\" at offset {offset}{hint}")]
    UnknownIntrinsic { name: String, offset: usize, hint: &'static str },
    #[error("bad duration unit \"{unit}\" at offset {offset} (units: ns, us, µs, ms, s, m, h)")]
    BadDurationUnit { unit: String, offset: usize },
    #[error("invalid number \"{text}\" at offset {offset}: {reason}")]
    InvalidNumber { text: String, offset: usize, reason: &'static str },
    #[error("unexpected character {found:?} at offset {offset}")]
    UnexpectedChar { found: char, offset: usize },
    #[error("expected {expected}, found {found} at offset {offset}")]
    Expected { expected: &'static str, found: String, offset: usize },
    #[error("unclosed \"{open}\" opened at offset {offset}")]
    Unclosed { open: &'static str, offset: usize },
    #[error("unmatched \"{close}\" at offset {offset}")]
    Unmatched { close: &'static str, offset: usize },
    #[error("type mismatch at offset {offset}: {message}")]
    Type { message: String, offset: usize },
    #[error("nesting deeper than {limit} levels at offset {offset}")]
    TooDeep { limit: usize, offset: usize },
    #[error("more than {limit} conditions, at offset {offset}")]
    TooManyConditions { limit: usize, offset: usize },
    #[error("more than {limit} regular expressions, at offset {offset}")]
    TooManyRegexes { limit: usize, offset: usize },
    #[error("invalid regular expression at offset {offset}: {message}")]
    InvalidRegex { message: String, offset: usize },
    #[error("regular expression at offset {offset} compiles to more than {limit} bytes")]
    RegexTooBig { limit: usize, offset: usize },
}

impl ParseError {
    /// Byte offset in the query text where the problem starts.
    pub fn offset(&self) -> usize {
        match self {
            ParseError::TooLong { limit, .. } => *limit,
            ParseError::Unsupported { offset, .. }
            | ParseError::UnterminatedString { offset }
            | ParseError::InvalidEscape { offset, .. }
            | ParseError::UnknownIntrinsic { offset, .. }
            | ParseError::BadDurationUnit { offset, .. }
            | ParseError::InvalidNumber { offset, .. }
            | ParseError::UnexpectedChar { offset, .. }
            | ParseError::Expected { offset, .. }
            | ParseError::Unclosed { offset, .. }
            | ParseError::Unmatched { offset, .. }
            | ParseError::Type { offset, .. }
            | ParseError::TooDeep { offset, .. }
            | ParseError::TooManyConditions { offset, .. }
            | ParseError::TooManyRegexes { offset, .. }
            | ParseError::InvalidRegex { offset, .. }
            | ParseError::RegexTooBig { offset, .. } => *offset,
        }
    }

    pub(crate) fn unsupported(construct: impl Into<String>, offset: usize) -> Self {
        ParseError::Unsupported { construct: construct.into(), offset }
    }
}
