//! Turns the query text into tokens with their byte offsets. Token shapes are recognised with
//! `winnow`; the lexer itself is a loop (no recursion), so its cost is linear in the text.
//!
//! Operators that TraceQL has but this crate refuses (`!>>`, `&>`, `~`, arithmetic…) are still
//! lexed, so the parser can name them in its error instead of stumbling on a stray character.

use winnow::Parser;
use winnow::combinator::{alt, opt};
use winnow::token::take_while;

use crate::ast::Scope;
use crate::error::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Pipe,
    OrOr,
    AndAnd,
    Not,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Re,
    NotRe,
    GtGt,
    LtLt,
    Tilde,
    /// A structural operator TraceQL has and this crate refuses (`!>`, `&>>`, …).
    Refused(&'static str),
    /// `+ - * / % ^`: TraceQL arithmetic, refused.
    Arith(&'static str),
    Str(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    /// A bare word: keyword, intrinsic (`name`, `span:name`) or an unknown dotted name.
    Word(String),
    Attr {
        scope: Scope,
        name: String,
    },
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Eof => "end of query".to_string(),
            Tok::Str(_) => "a string".to_string(),
            Tok::Int(_) | Tok::Float(_) => "a number".to_string(),
            Tok::Duration(_) => "a duration".to_string(),
            Tok::Word(w) => format!("\"{w}\""),
            Tok::Attr { .. } => "an attribute".to_string(),
            other => format!("\"{}\"", other.symbol()),
        }
    }

    pub(crate) fn symbol(&self) -> &'static str {
        match self {
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Comma => ",",
            Tok::Pipe => "|",
            Tok::OrOr => "||",
            Tok::AndAnd => "&&",
            Tok::Not => "!",
            Tok::Eq => "=",
            Tok::Ne => "!=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Re => "=~",
            Tok::NotRe => "!~",
            Tok::GtGt => ">>",
            Tok::LtLt => "<<",
            Tok::Tilde => "~",
            Tok::Refused(s) | Tok::Arith(s) => s,
            _ => "",
        }
    }

    /// Whether the token can end an operand (then a following `-` is a minus, not a sign).
    fn ends_operand(&self) -> bool {
        matches!(
            self,
            Tok::RParen
                | Tok::RBrace
                | Tok::Str(_)
                | Tok::Int(_)
                | Tok::Float(_)
                | Tok::Duration(_)
                | Tok::Word(_)
                | Tok::Attr { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) start: usize,
}

/// The whole text as tokens, ending with `Tok::Eof`.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut input = text;
    let mut out: Vec<Token> = Vec::new();
    loop {
        let _ = take_while(0.., char::is_whitespace).parse_next(&mut input).map_err(no_ws)?;
        let start = text.len() - input.len();
        let Some(c) = input.chars().next() else {
            out.push(Token { tok: Tok::Eof, start });
            return Ok(out);
        };
        let signed_number = c == '-'
            && input[1..].starts_with(|d: char| d.is_ascii_digit())
            && !out.last().is_some_and(|t| t.tok.ends_operand());
        let tok = if c.is_ascii_digit() || signed_number {
            number(&mut input, text)?
        } else if c == '"' {
            input = &input[1..];
            Tok::Str(quoted(&mut input, text, start)?)
        } else if c == '`' {
            raw_string(&mut input, start)?
        } else if c == '.' {
            input = &input[1..];
            Tok::Attr { scope: Scope::Any, name: attr_name(&mut input, text, start)? }
        } else if c.is_ascii_alphabetic() || c == '_' {
            word(&mut input, text, start)?
        } else if let Ok(tok) = punct.parse_next(&mut input) {
            tok
        } else {
            return Err(ParseError::UnexpectedChar { found: c, offset: start });
        };
        out.push(Token { tok, start });
    }
}

fn no_ws(_: winnow::error::ContextError) -> ParseError {
    // `take_while(0..)` cannot fail on a complete `&str`.
    ParseError::Expected { expected: "whitespace", found: String::new(), offset: 0 }
}

fn punct(input: &mut &str) -> winnow::Result<Tok> {
    alt((
        alt((
            "!>>".value(Tok::Refused("!>>")),
            "!<<".value(Tok::Refused("!<<")),
            "&>>".value(Tok::Refused("&>>")),
            "&<<".value(Tok::Refused("&<<")),
        )),
        alt((
            "||".value(Tok::OrOr),
            "&&".value(Tok::AndAnd),
            "!=".value(Tok::Ne),
            "!~".value(Tok::NotRe),
            "=~".value(Tok::Re),
            ">=".value(Tok::Ge),
            "<=".value(Tok::Le),
            ">>".value(Tok::GtGt),
            "<<".value(Tok::LtLt),
        )),
        alt((
            "!>".value(Tok::Refused("!>")),
            "!<".value(Tok::Refused("!<")),
            "&>".value(Tok::Refused("&>")),
            "&<".value(Tok::Refused("&<")),
            "&~".value(Tok::Refused("&~")),
        )),
        alt((
            "{".value(Tok::LBrace),
            "}".value(Tok::RBrace),
            "(".value(Tok::LParen),
            ")".value(Tok::RParen),
            ",".value(Tok::Comma),
            "|".value(Tok::Pipe),
        )),
        alt(("!".value(Tok::Not), "=".value(Tok::Eq), ">".value(Tok::Gt), "<".value(Tok::Lt), "~".value(Tok::Tilde))),
        alt((
            "+".value(Tok::Arith("+")),
            "-".value(Tok::Arith("-")),
            "*".value(Tok::Arith("*")),
            "/".value(Tok::Arith("/")),
            "%".value(Tok::Arith("%")),
            "^".value(Tok::Arith("^")),
        )),
    ))
    .parse_next(input)
}

/// At least `min` characters satisfying `pred`, consumed; `None` (nothing consumed) otherwise.
fn run<'i>(input: &mut &'i str, min: usize, pred: impl Fn(char) -> bool) -> Option<&'i str> {
    let taken: winnow::Result<&'i str> = take_while(min.., pred).parse_next(input);
    taken.ok()
}

fn is_attr_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':' | '@' | '#' | '$')
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// A bare word; `span.` and `resource.` start a scoped attribute.
fn word(input: &mut &str, text: &str, start: usize) -> Result<Tok, ParseError> {
    let w: &str = take_while(1.., is_word_char).parse_next(input).map_err(|_: winnow::error::ContextError| {
        ParseError::Expected { expected: "a word", found: String::new(), offset: start }
    })?;
    if let Some(rest) = input.strip_prefix('.') {
        let scope = match w {
            "span" => Some(Scope::Span),
            "resource" => Some(Scope::Resource),
            _ => None,
        };
        if let Some(scope) = scope {
            *input = rest;
            return Ok(Tok::Attr { scope, name: attr_name(input, text, start)? });
        }
        // Keep the dotted rest so that errors name the whole thing (`http.method`, `event.name`).
        let tail = run(input, 0, is_attr_char).unwrap_or_default();
        return Ok(Tok::Word(format!("{w}{tail}")));
    }
    Ok(Tok::Word(w.to_string()))
}

/// The name after `span.`, `resource.` or `.`: plain characters or a quoted string.
fn attr_name(input: &mut &str, text: &str, start: usize) -> Result<String, ParseError> {
    if let Some(rest) = input.strip_prefix('"') {
        *input = rest;
        let name = quoted(input, text, text.len() - input.len() - 1)?;
        if name.is_empty() {
            return Err(ParseError::Expected { expected: "an attribute name", found: "\"\"".into(), offset: start });
        }
        return Ok(name);
    }
    let name = run(input, 0, is_attr_char).unwrap_or_default();
    if name.is_empty() {
        let found = input.chars().next().map_or("end of query".to_string(), |c| format!("{c:?}"));
        return Err(ParseError::Expected { expected: "an attribute name", found, offset: start });
    }
    Ok(name.to_string())
}

/// The body of a double-quoted string (the opening quote already consumed; `start` is its
/// offset). Escapes as Go's: `\" \\ \n \r \t \' \0 \uXXXX`.
fn quoted(input: &mut &str, text: &str, start: usize) -> Result<String, ParseError> {
    let mut out = String::new();
    let mut chars = input.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                *input = &input[i + 1..];
                return Ok(out);
            }
            '\\' => {
                let esc_offset = text.len() - input.len() + i;
                let Some((_, e)) = chars.next() else { break };
                match e {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '\'' => out.push('\''),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    '0' => out.push('\0'),
                    'u' => {
                        let hex: String = chars.by_ref().take(4).map(|(_, h)| h).collect();
                        let decoded = (hex.len() == 4)
                            .then(|| u32::from_str_radix(&hex, 16).ok())
                            .flatten()
                            .and_then(char::from_u32);
                        match decoded {
                            Some(ch) => out.push(ch),
                            None => {
                                return Err(ParseError::InvalidEscape {
                                    escape: format!("\\u{hex}"),
                                    offset: esc_offset,
                                });
                            }
                        }
                    }
                    other => {
                        return Err(ParseError::InvalidEscape { escape: format!("\\{other}"), offset: esc_offset });
                    }
                }
            }
            c => out.push(c),
        }
    }
    Err(ParseError::UnterminatedString { offset: start })
}

/// A backtick string: raw, no escapes (as Go's raw strings), handy for regular expressions.
fn raw_string(input: &mut &str, start: usize) -> Result<Tok, ParseError> {
    let body = &input[1..];
    match body.find('`') {
        Some(end) => {
            let s = body[..end].to_string();
            *input = &body[end + 1..];
            Ok(Tok::Str(s))
        }
        None => Err(ParseError::UnterminatedString { offset: start }),
    }
}

/// An integer, a decimal float or a duration (`1.5s`, `1m30s`, `-250ms`).
fn number(input: &mut &str, text: &str) -> Result<Tok, ParseError> {
    let start = text.len() - input.len();
    let negative = opt('-').parse_next(input).map_err(internal)?.is_some();
    let mut total: i128 = 0;
    let mut first = true;
    loop {
        let seg_start = text.len() - input.len();
        let int_part = run(input, 1, |c| c.is_ascii_digit())
            .ok_or_else(|| ParseError::BadDurationUnit { unit: String::new(), offset: seg_start })?;
        let frac: Option<&str> = opt(('.', take_while(1.., |c: char| c.is_ascii_digit())).map(|(_, f)| f))
            .parse_next(input)
            .map_err(internal)?;
        let unit_start = text.len() - input.len();
        let unit: &str = take_while(0.., char::is_alphabetic).parse_next(input).map_err(internal)?;
        let literal = &text[start..text.len() - input.len()];
        if first && unit.is_empty() {
            return plain_number(literal, negative, int_part, frac, start);
        }
        first = false;
        if unit.is_empty() {
            let found = input.chars().next().map_or("end of query".to_string(), |c| format!("{c:?}"));
            return Err(ParseError::Expected { expected: "a duration unit", found, offset: unit_start });
        }
        let Some(unit_nanos) = unit_nanos(unit) else {
            return Err(ParseError::BadDurationUnit { unit: unit.to_string(), offset: unit_start });
        };
        let nanos = segment_nanos(int_part, frac, unit_nanos).ok_or_else(|| too_big(literal, start))?;
        total = total.checked_add(nanos).filter(|t| *t <= i64::MAX as i128).ok_or_else(|| too_big(literal, start))?;
        if !input.starts_with(|c: char| c.is_ascii_digit()) {
            let nanos = if negative { -total } else { total };
            return Ok(Tok::Duration(nanos as i64));
        }
    }
}

fn internal(_: winnow::error::ContextError) -> ParseError {
    // Only reachable for parsers that accept empty input; kept total instead of panicking.
    ParseError::Expected { expected: "a number", found: String::new(), offset: 0 }
}

fn too_big(literal: &str, offset: usize) -> ParseError {
    ParseError::InvalidNumber { text: literal.to_string(), offset, reason: "duration out of range" }
}

fn plain_number(
    literal: &str,
    negative: bool,
    int_part: &str,
    frac: Option<&str>,
    offset: usize,
) -> Result<Tok, ParseError> {
    let sign = if negative { "-" } else { "" };
    match frac {
        None => format!("{sign}{int_part}").parse::<i64>().map(Tok::Int).map_err(|_| ParseError::InvalidNumber {
            text: literal.to_string(),
            offset,
            reason: "integer out of range",
        }),
        Some(f) => format!("{sign}{int_part}.{f}")
            .parse::<f64>()
            .map(Tok::Float)
            .map_err(|_| ParseError::InvalidNumber { text: literal.to_string(), offset, reason: "not a float" }),
    }
}

/// Go's `time.ParseDuration` units.
fn unit_nanos(unit: &str) -> Option<i128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// `int.frac` units in nanoseconds, the fraction truncated to whole nanoseconds.
fn segment_nanos(int_part: &str, frac: Option<&str>, unit: i128) -> Option<i128> {
    let whole: i128 = int_part.parse().ok()?;
    let mut nanos = whole.checked_mul(unit)?;
    if let Some(f) = frac {
        // Digits past the 18th cannot change a whole nanosecond of an hour.
        let digits = &f[..f.len().min(18)];
        let value: i128 = digits.parse().ok()?;
        let scale = 10i128.pow(digits.len() as u32);
        nanos = nanos.checked_add(value * unit / scale)?;
    }
    (nanos <= i64::MAX as i128).then_some(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        tokenize(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn durations_follow_go() {
        let cases = [
            ("1ns", 1),
            ("1.5s", 1_500_000_000),
            ("1m30s", 90_000_000_000),
            ("250µs", 250_000),
            ("250μs", 250_000),
            ("2us", 2_000),
            ("1h", 3_600_000_000_000),
            ("-100ms", -100_000_000),
            ("0.000000001s", 1),
        ];
        for (text, nanos) in cases {
            assert_eq!(toks(text), vec![Tok::Duration(nanos), Tok::Eof], "{text}");
        }
    }

    #[test]
    fn bad_units_are_named() {
        assert_eq!(tokenize("10xs").unwrap_err(), ParseError::BadDurationUnit { unit: "xs".into(), offset: 2 });
        assert_eq!(
            tokenize("1m30").unwrap_err(),
            ParseError::Expected { expected: "a duration unit", found: "end of query".into(), offset: 4 }
        );
        assert!(matches!(tokenize("9999999999h").unwrap_err(), ParseError::InvalidNumber { .. }));
    }

    #[test]
    fn numbers_and_minus() {
        assert_eq!(toks("-3 2.5"), vec![Tok::Int(-3), Tok::Float(2.5), Tok::Eof]);
        // After an operand, `-` is arithmetic (refused later), not a sign.
        assert_eq!(toks("2 -3"), vec![Tok::Int(2), Tok::Arith("-"), Tok::Int(3), Tok::Eof]);
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(toks(r#""a\"b\\c\n\u00e9""#), vec![Tok::Str("a\"b\\c\né".into()), Tok::Eof]);
        assert_eq!(toks(r"`\d+`"), vec![Tok::Str(r"\d+".into()), Tok::Eof]);
        assert_eq!(tokenize(r#""abc"#).unwrap_err(), ParseError::UnterminatedString { offset: 0 });
        assert_eq!(tokenize(r#" "\d""#).unwrap_err(), ParseError::InvalidEscape { escape: r"\d".into(), offset: 2 });
    }

    #[test]
    fn attributes_and_words() {
        assert_eq!(
            toks(r#"span."foo bar" resource.service.name .http.status_code span:name http.url"#),
            vec![
                Tok::Attr { scope: Scope::Span, name: "foo bar".into() },
                Tok::Attr { scope: Scope::Resource, name: "service.name".into() },
                Tok::Attr { scope: Scope::Any, name: "http.status_code".into() },
                Tok::Word("span:name".into()),
                Tok::Word("http.url".into()),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn operators_longest_first() {
        assert_eq!(
            toks("!>> >> > >= != !~ =~ &> &&"),
            vec![
                Tok::Refused("!>>"),
                Tok::GtGt,
                Tok::Gt,
                Tok::Ge,
                Tok::Ne,
                Tok::NotRe,
                Tok::Re,
                Tok::Refused("&>"),
                Tok::AndAnd,
                Tok::Eof
            ]
        );
    }
}
