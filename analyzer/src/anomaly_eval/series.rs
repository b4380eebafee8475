//! One series file, `timestamp,value` CSV, read a line at a time so a file of any length streams
//! through in constant memory; the caller reads the lines (bounded by [`MAX_LINE_BYTES`]) and
//! this module says what each one holds, or where and why it is wrong.
//!
//! Choices:
//! - Columns are found by their header names (`timestamp`, `value`, and `anomaly_score` where
//!   the caller takes a precomputed score), case-insensitively; other columns are ignored, so a
//!   Numenta Anomaly Benchmark results file (`timestamp,value,anomaly_score,label,...`) reads as
//!   it is. Fields may be double-quoted as RFC 4180 writes them.
//! - A value that is empty or `NaN` is a missing point: the row is kept (its time still orders
//!   the series and it still gets an output row) and the detector is given NaN, which it skips.
//!   Any other unreadable value, and an infinite one, is an error: it is a broken export, not a
//!   gap.
//! - Times should strictly increase: a causal detector fed out of order would judge a point by
//!   its future, and two rows at one time are two readings of one point that only their writer
//!   can reconcile. Real exports break this anyway — a clock that changes for daylight saving
//!   writes an hour's samples at one time, or goes back an hour (8 of the 58 files of the
//!   Numenta Anomaly Benchmark do) — and refusing the whole file for a dozen rows helps no one
//!   scoring it. So [`Order`] decides: [`Order::Strict`] makes such a row an error naming both
//!   lines; [`Order::Keep`] keeps it, marked with what is wrong ([`Row::disorder`]), for the
//!   caller to write (unscored) and report.
//! - Blank lines are skipped; they are not rows.
//! - The time and value texts are kept exactly as read, so an output row can repeat them and
//!   other tools can join on them.

use std::borrow::Cow;

use super::time::{TimeError, parse_time_ms};

/// Longest line read, in bytes (without its line end): far above any real row, small enough
/// that a file without line ends cannot fill memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The header of a scored output file; [`write_scored_row`] writes its rows.
pub const SCORED_HEADER: &str = "timestamp,value,anomaly_score,expected,lower,upper";

/// Which columns a reader needs besides `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// `value` (to score the series).
    Value,
    /// `anomaly_score` when the file has one (a precomputed score, used as is), else `value`.
    ScoreOrValue,
}

/// A bad line of a series file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct SeriesError {
    /// 1-based line number in the file.
    pub line: usize,
    pub kind: SeriesErrorKind,
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeriesErrorKind {
    #[error("the file is empty: expected a header row naming the timestamp and value columns")]
    Empty,
    #[error("no `{missing}` column in the header (columns: {columns})")]
    MissingColumn { missing: &'static str, columns: String },
    #[error("column `{name}` appears twice in the header")]
    DuplicateColumn { name: String },
    #[error("the row has {found} field(s), but the `{column}` column is field {position}")]
    TooFewFields { found: usize, column: &'static str, position: usize },
    #[error("unterminated quoted field")]
    Unterminated,
    #[error("longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("{0}")]
    Time(TimeError),
    #[error("cannot read {text:?} in column `{column}` as a number (an empty field or NaN is a missing point)")]
    Number { column: &'static str, text: String },
    #[error("{text:?} in column `{column}` is infinite")]
    Infinite { column: &'static str, text: String },
    #[error(
        "timestamp {text:?} is earlier than the previous row's, on line {previous_line}: rows must be in time order"
    )]
    Unsorted { text: String, previous_line: usize },
    #[error("timestamp {text:?} is the same time as line {previous_line}'s: duplicate timestamps")]
    Duplicate { text: String, previous_line: usize },
}

/// How rows whose time is not after every earlier row's are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Such a row is an error ([`SeriesErrorKind::Unsorted`], [`SeriesErrorKind::Duplicate`]).
    Strict,
    /// Such a row is returned with [`Row::disorder`] set.
    Keep,
}

/// Why a row's time is out of order (with [`Order::Keep`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disorder {
    /// At the same time as the latest earlier row, on `previous_line`.
    Duplicate { previous_line: usize },
    /// Before the latest earlier row, on `previous_line`.
    Earlier { previous_line: usize },
}

/// One row of a series file. Texts borrow the line.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// The time, unix milliseconds.
    pub time_ms: i64,
    /// The timestamp field as it appears in the line (quotes included, if it had any).
    pub timestamp_raw: &'a str,
    /// The value field as it appears in the line; empty when the file has no `value` column.
    pub value_raw: &'a str,
    /// The value; NaN when missing (or when the file has no `value` column).
    pub value: f64,
    /// The `anomaly_score` column, when the reader takes one; NaN when empty.
    pub score: Option<f64>,
    /// Set when the row's time is not after every earlier row's (only with [`Order::Keep`]).
    pub disorder: Option<Disorder>,
}

/// Reads the rows of one series file, checking their order.
#[derive(Debug)]
pub struct SeriesParser {
    timestamp: usize,
    value: Option<usize>,
    score: Option<usize>,
    /// Field spans of the current line, kept to reuse their allocation.
    spans: Vec<(usize, usize)>,
    order: Order,
    /// Time and line of the latest row so far.
    previous: Option<(i64, usize)>,
}

impl SeriesParser {
    /// Reads the header line (`line` is its 1-based number; a leading byte-order mark is
    /// skipped).
    pub fn new(header: &str, line: usize, needs: Needs) -> Result<SeriesParser, SeriesError> {
        let error = |kind| SeriesError { line, kind };
        let header = header.strip_prefix('\u{feff}').unwrap_or(header);
        if header.trim().is_empty() {
            return Err(error(SeriesErrorKind::Empty));
        }
        let mut spans = Vec::new();
        split_fields(header, &mut spans).map_err(error)?;
        let names: Vec<String> =
            spans.iter().map(|&(a, b)| unquote(&header[a..b]).trim().to_ascii_lowercase()).collect();
        for (i, name) in names.iter().enumerate() {
            if !name.is_empty() && names[..i].contains(name) {
                return Err(error(SeriesErrorKind::DuplicateColumn { name: name.clone() }));
            }
        }
        let find = |wanted: &str| names.iter().position(|n| n == wanted);
        let missing = |missing| error(SeriesErrorKind::MissingColumn { missing, columns: names.join(", ") });
        let timestamp = find("timestamp").ok_or_else(|| missing("timestamp"))?;
        let score = if needs == Needs::ScoreOrValue { find("anomaly_score") } else { None };
        let value = find("value");
        if value.is_none() && score.is_none() {
            return Err(missing("value"));
        }
        Ok(SeriesParser { timestamp, value, score, spans, order: Order::Strict, previous: None })
    }

    /// Takes rows out of time order as `order` says (the default is [`Order::Strict`]).
    pub fn with_order(mut self, order: Order) -> SeriesParser {
        self.order = order;
        self
    }

    /// Whether the rows carry a precomputed `anomaly_score` (then [`Row::score`] is `Some`).
    pub fn has_score(&self) -> bool {
        self.score.is_some()
    }

    /// Reads line number `line` (1-based; its line end already removed): `None` for a blank
    /// line.
    pub fn row<'a>(&mut self, line: usize, text: &'a str) -> Result<Option<Row<'a>>, SeriesError> {
        let error = |kind| SeriesError { line, kind };
        if text.trim().is_empty() {
            return Ok(None);
        }
        split_fields(text, &mut self.spans).map_err(error)?;
        let field = |column: &'static str, index: usize| -> Result<&'a str, SeriesError> {
            match self.spans.get(index) {
                Some(&(a, b)) => Ok(&text[a..b]),
                None => {
                    Err(error(SeriesErrorKind::TooFewFields { found: self.spans.len(), column, position: index + 1 }))
                }
            }
        };
        let timestamp_raw = field("timestamp", self.timestamp)?;
        let value_raw = match self.value {
            Some(i) => field("value", i)?,
            None => "",
        };
        let score_raw = self.score.map(|i| field("anomaly_score", i)).transpose()?;
        let timestamp_text = unquote(timestamp_raw);
        let time_ms = parse_time_ms(&timestamp_text).map_err(|e| error(SeriesErrorKind::Time(e)))?;
        let value = number("value", value_raw).map_err(error)?;
        let score = score_raw.map(|raw| number("anomaly_score", raw)).transpose().map_err(error)?;
        let disorder = match self.previous {
            Some((previous_ms, previous_line)) if time_ms < previous_ms => Some(Disorder::Earlier { previous_line }),
            Some((previous_ms, previous_line)) if time_ms == previous_ms => Some(Disorder::Duplicate { previous_line }),
            _ => None,
        };
        match (disorder, self.order) {
            (None, _) => self.previous = Some((time_ms, line)),
            (Some(_), Order::Keep) => {}
            (Some(Disorder::Earlier { previous_line }), Order::Strict) => {
                let text = timestamp_text.trim().to_string();
                return Err(error(SeriesErrorKind::Unsorted { text, previous_line }));
            }
            (Some(Disorder::Duplicate { previous_line }), Order::Strict) => {
                let text = timestamp_text.trim().to_string();
                return Err(error(SeriesErrorKind::Duplicate { text, previous_line }));
            }
        }
        Ok(Some(Row { time_ms, timestamp_raw, value_raw, value, score, disorder }))
    }
}

/// A numeric field: NaN when empty or `NaN`.
fn number(column: &'static str, raw: &str) -> Result<f64, SeriesErrorKind> {
    let text = unquote(raw);
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("nan") {
        return Ok(f64::NAN);
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_infinite() => Err(SeriesErrorKind::Infinite { column, text: text.to_string() }),
        Ok(v) => Ok(v),
        Err(_) => Err(SeriesErrorKind::Number { column, text: text.to_string() }),
    }
}

/// The byte spans of a line's comma-separated fields (quotes included).
fn split_fields(line: &str, spans: &mut Vec<(usize, usize)>) -> Result<(), SeriesErrorKind> {
    spans.clear();
    let bytes = line.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut quoted = false;
    while i < bytes.len() {
        match bytes[i] {
            b'"' if quoted && bytes.get(i + 1) == Some(&b'"') => i += 1,
            b'"' if quoted => quoted = false,
            b'"' if line[start..i].trim().is_empty() => quoted = true,
            b',' if !quoted => {
                spans.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if quoted {
        return Err(SeriesErrorKind::Unterminated);
    }
    spans.push((start, bytes.len()));
    Ok(())
}

/// A field's text without its quotes (`""` inside read as one `"`).
fn unquote(raw: &str) -> Cow<'_, str> {
    let trimmed = raw.trim();
    match trimmed.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) if inner.contains("\"\"") => Cow::Owned(inner.replace("\"\"", "\"")),
        Some(inner) => Cow::Borrowed(inner),
        None => Cow::Borrowed(raw),
    }
}

/// Appends one output row (with its line end) to `out`: the time and value texts as read, then
/// the score and band; NaN (the band while the detector warms up) is an empty field, which CSV
/// readers take as missing. Numbers are written in Rust's shortest round-trip form.
pub fn write_scored_row(out: &mut String, row: &Row<'_>, score: f64, expected: f64, lower: f64, upper: f64) {
    use std::fmt::Write;
    out.push_str(row.timestamp_raw);
    out.push(',');
    out.push_str(row.value_raw);
    for v in [score, expected, lower, upper] {
        out.push(',');
        if !v.is_nan() {
            // Writing to a String cannot fail.
            let _ = write!(out, "{v:?}");
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Time, timestamp text, value text, value, score of each row.
    type Parsed = (i64, String, String, f64, Option<f64>);

    fn parse(lines: &[&str], needs: Needs) -> Result<Vec<Parsed>, SeriesError> {
        let mut parser = SeriesParser::new(lines[0], 1, needs)?;
        let mut rows = Vec::new();
        for (i, line) in lines.iter().enumerate().skip(1) {
            if let Some(r) = parser.row(i + 1, line)? {
                rows.push((r.time_ms, r.timestamp_raw.to_string(), r.value_raw.to_string(), r.value, r.score));
            }
        }
        Ok(rows)
    }

    fn kind(lines: &[&str]) -> (usize, SeriesErrorKind) {
        let e = parse(lines, Needs::Value).expect_err("an error");
        (e.line, e.kind)
    }

    #[test]
    fn columns_by_name_extra_ignored_texts_kept() {
        let rows = parse(
            &["label,Value,timestamp", "x,1.5,2014-04-10 07:15:00.000000", "y,,\"1397114400\"", ""],
            Needs::Value,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, 1_397_114_100_000);
        assert_eq!(rows[0].1, "2014-04-10 07:15:00.000000");
        assert_eq!((rows[0].2.as_str(), rows[0].3), ("1.5", 1.5));
        assert_eq!(rows[1].1, "\"1397114400\"");
        assert!(rows[1].3.is_nan(), "an empty value is a missing point");
        assert_eq!(rows[1].4, None);
    }

    #[test]
    fn nan_is_missing_and_quotes_hold_commas() {
        let rows = parse(&["timestamp,value,note", "1,NaN,\"a, \"\"b\"\"\"", "2,nan", "3,-2e3"], Needs::Value).unwrap();
        assert!(rows[0].3.is_nan() && rows[1].3.is_nan());
        assert_eq!(rows[2].3, -2000.0);
    }

    #[test]
    fn score_column_taken_when_asked() {
        let rows = parse(&["timestamp,value,anomaly_score", "1,5,0.7", "2,5,"], Needs::ScoreOrValue).unwrap();
        assert_eq!(rows[0].4, Some(0.7));
        assert!(rows[1].4.unwrap().is_nan());
        let rows = parse(&["timestamp,anomaly_score", "1,0.7"], Needs::ScoreOrValue).unwrap();
        assert_eq!(rows[0].4, Some(0.7));
        let rows = parse(&["timestamp,value,anomaly_score", "1,5,0.7"], Needs::Value).unwrap();
        assert_eq!(rows[0].4, None, "score does not read anomaly_score");
    }

    #[test]
    fn header_problems() {
        assert!(matches!(kind(&["time,value"]), (1, SeriesErrorKind::MissingColumn { missing: "timestamp", .. })));
        assert!(matches!(kind(&["timestamp,val"]), (1, SeriesErrorKind::MissingColumn { missing: "value", .. })));
        assert!(matches!(
            kind(&["timestamp,anomaly_score"]),
            (1, SeriesErrorKind::MissingColumn { missing: "value", .. })
        ));
        assert!(matches!(kind(&["timestamp,value,Value"]), (1, SeriesErrorKind::DuplicateColumn { .. })));
        assert!(matches!(kind(&[""]), (1, SeriesErrorKind::Empty)));
        let e = SeriesParser::new("timestamp,val", 1, Needs::Value).unwrap_err();
        assert_eq!(e.to_string(), "line 1: no `value` column in the header (columns: timestamp, val)");
        assert!(SeriesParser::new("\u{feff}timestamp,value", 1, Needs::Value).is_ok());
    }

    #[test]
    fn row_problems_name_their_line() {
        assert!(matches!(
            kind(&["timestamp,value", "1,1", "two,2"]),
            (3, SeriesErrorKind::Time(TimeError::Unreadable(_)))
        ));
        assert!(matches!(kind(&["timestamp,value", "1,abc"]), (2, SeriesErrorKind::Number { column: "value", .. })));
        assert!(matches!(kind(&["timestamp,value", "1,inf"]), (2, SeriesErrorKind::Infinite { .. })));
        assert!(matches!(
            kind(&["timestamp,value", "1"]),
            (2, SeriesErrorKind::TooFewFields { found: 1, position: 2, .. })
        ));
        assert!(matches!(kind(&["timestamp,value", "\"1,1"]), (2, SeriesErrorKind::Unterminated)));
        assert_eq!(
            kind(&["timestamp,value", "5,1", "", "4,1"]),
            (4, SeriesErrorKind::Unsorted { text: "4".into(), previous_line: 2 })
        );
        assert_eq!(
            kind(&["timestamp,value", "5,1", "5.0001,1"]),
            (3, SeriesErrorKind::Duplicate { text: "5.0001".into(), previous_line: 2 })
        );
        let e = parse(&["timestamp,value", "1,1", "1,2"], Needs::Value).unwrap_err();
        assert_eq!(e.to_string(), "line 3: timestamp \"1\" is the same time as line 2's: duplicate timestamps");
    }

    #[test]
    fn out_of_order_rows_kept_when_asked() {
        // The shape of NAB's daylight-saving rows: a repeated time, then a clock going back.
        let lines = ["timestamp,value", "10,1", "11,1", "11,2", "12,1", "9,1", "12,1", "13,1"];
        let mut parser = SeriesParser::new(lines[0], 1, Needs::Value).unwrap().with_order(Order::Keep);
        let disorder: Vec<Option<Disorder>> =
            lines.iter().enumerate().skip(1).map(|(i, l)| parser.row(i + 1, l).unwrap().unwrap().disorder).collect();
        let (dup, earlier) =
            (|l| Some(Disorder::Duplicate { previous_line: l }), |l| Some(Disorder::Earlier { previous_line: l }));
        assert_eq!(disorder, [None, None, dup(3), None, earlier(5), dup(5), None]);
    }

    #[test]
    fn scored_rows_repeat_the_input_texts() {
        let mut parser = SeriesParser::new("timestamp,value", 1, Needs::Value).unwrap();
        let row = parser.row(2, "\"2014-04-10 07:15:00\", 7").unwrap().unwrap();
        let mut out = String::new();
        write_scored_row(&mut out, &row, 0.25, f64::NAN, f64::NAN, 1e-7);
        assert_eq!(out, "\"2014-04-10 07:15:00\", 7,0.25,,,1e-7\n");
    }
}
