//! Recursive descent over the tokens, one function per grammar rule of `docs/traceql.md`.
//!
//! Every rule that can nest (`(`, `{`, `!`) goes through `enter`, which refuses depth beyond
//! `limits::MAX_DEPTH` before recursing, so hostile nesting is an error, never a stack overflow.
//! Types are checked where they are known statically (intrinsics and literals), so `{ name > 3 }`
//! is refused here instead of silently matching nothing.

use regex::RegexBuilder;

use crate::ast::{AggFunc, CmpOp, Cond, Field, Num, Operand, Pipeline, SetExpr, Stage, Static};
use crate::error::{ParseError, limits};
use crate::lex::{Tok, Token, tokenize};
use crate::model::{SpanKind, SpanStatus};

pub(crate) fn parse(text: &str) -> Result<Pipeline, ParseError> {
    if text.len() > limits::MAX_QUERY_BYTES {
        return Err(ParseError::TooLong { len: text.len(), limit: limits::MAX_QUERY_BYTES });
    }
    parse_any_length(text)
}

fn parse_any_length(text: &str) -> Result<Pipeline, ParseError> {
    let mut parser = Parser { toks: tokenize(text)?, pos: 0, depth: 0, conditions: 0, regexes: 0 };
    let pipeline = parser.pipeline()?;
    let end = parser.peek();
    match &end.tok {
        Tok::Eof => Ok(pipeline),
        Tok::RBrace => Err(ParseError::Unmatched { close: "}", offset: end.start }),
        Tok::RParen => Err(ParseError::Unmatched { close: ")", offset: end.start }),
        other => Err(ParseError::Expected {
            expected: "end of query or \"|\" (parenthesize a pipeline to combine it)",
            found: other.describe(),
            offset: end.start,
        }),
    }
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    conditions: usize,
    regexes: usize,
}

/// An operand as written, with `nil` kept apart (it is only valid in `field != nil`).
enum Term {
    Operand(Operand),
    Nil,
}

/// What is known of an operand's type before evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Num,
    Bool,
    Status,
    Kind,
    /// An attribute: its type is only known per span.
    Unknown,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Num => "a number or duration",
            Ty::Bool => "a boolean",
            Ty::Status => "a status",
            Ty::Kind => "a kind",
            Ty::Unknown => "an attribute",
        }
    }
}

fn ty(operand: &Operand) -> Ty {
    match operand {
        Operand::Field(field) => match field {
            Field::Name | Field::StatusMessage | Field::RootName | Field::RootServiceName => Ty::Str,
            Field::Status => Ty::Status,
            Field::Kind => Ty::Kind,
            Field::Duration | Field::TraceDuration => Ty::Num,
            Field::Attr { .. } => Ty::Unknown,
        },
        Operand::Static(s) => match s {
            Static::Str(_) => Ty::Str,
            Static::Num(_) => Ty::Num,
            Static::Bool(_) => Ty::Bool,
            Static::Status(_) => Ty::Status,
            Static::Kind(_) => Ty::Kind,
        },
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos]
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        &self.toks[(self.pos + ahead).min(self.toks.len() - 1)].tok
    }

    fn bump(&mut self) -> Token {
        let token = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        token
    }

    fn enter(&mut self, offset: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > limits::MAX_DEPTH {
            return Err(ParseError::TooDeep { limit: limits::MAX_DEPTH, offset });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn count_condition(&mut self, offset: usize) -> Result<(), ParseError> {
        self.conditions += 1;
        if self.conditions > limits::MAX_CONDITIONS {
            return Err(ParseError::TooManyConditions { limit: limits::MAX_CONDITIONS, offset });
        }
        Ok(())
    }

    fn expected(&self, expected: &'static str) -> ParseError {
        let token = self.peek();
        ParseError::Expected { expected, found: token.tok.describe(), offset: token.start }
    }

    /// Consumes the closing token of a group opened at `open_offset`.
    fn close(&mut self, close: Tok, open: &'static str, open_offset: usize) -> Result<(), ParseError> {
        let token = self.peek();
        if token.tok == close {
            self.bump();
            return Ok(());
        }
        if token.tok == Tok::Eof {
            return Err(ParseError::Unclosed { open, offset: open_offset });
        }
        Err(ParseError::Expected {
            expected: if close == Tok::RBrace { "\"}\" or an operator" } else { "\")\" or an operator" },
            found: token.tok.describe(),
            offset: token.start,
        })
    }

    // pipeline = set_or { "|" stage }
    fn pipeline(&mut self) -> Result<Pipeline, ParseError> {
        let source = self.set_or()?;
        let mut stages = Vec::new();
        while self.peek().tok == Tok::Pipe {
            self.bump();
            stages.push(self.stage()?);
        }
        Ok(Pipeline { source, stages })
    }

    // set_or = set_and { "||" set_and }
    fn set_or(&mut self) -> Result<SetExpr, ParseError> {
        let mut items = vec![self.set_and()?];
        while self.peek().tok == Tok::OrOr {
            self.bump();
            items.push(self.set_and()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { SetExpr::Or(items) })
    }

    // set_and = structural { "&&" structural }
    fn set_and(&mut self) -> Result<SetExpr, ParseError> {
        let mut items = vec![self.structural()?];
        while self.peek().tok == Tok::AndAnd {
            self.bump();
            items.push(self.structural()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { SetExpr::And(items) })
    }

    // structural = set_primary { (">" | ">>") set_primary }
    fn structural(&mut self) -> Result<SetExpr, ParseError> {
        let mut left = self.set_primary()?;
        loop {
            let token = self.peek().clone();
            let refused = match &token.tok {
                Tok::Gt | Tok::GtGt => None,
                Tok::Lt => Some("<"),
                Tok::LtLt => Some("<<"),
                Tok::Tilde => Some("~"),
                Tok::NotRe => Some("!~"),
                Tok::Refused(op) => Some(*op),
                _ => break,
            };
            if let Some(op) = refused {
                return Err(ParseError::unsupported(op, token.start));
            }
            self.bump();
            let right = self.set_primary()?;
            left = if token.tok == Tok::Gt {
                SetExpr::Child(Box::new(left), Box::new(right))
            } else {
                SetExpr::Descendant(Box::new(left), Box::new(right))
            };
        }
        Ok(left)
    }

    // set_primary = filter | "(" pipeline ")"
    fn set_primary(&mut self) -> Result<SetExpr, ParseError> {
        let token = self.peek().clone();
        match &token.tok {
            Tok::LBrace => Ok(SetExpr::Filter(self.filter()?)),
            Tok::LParen => {
                self.bump();
                self.enter(token.start)?;
                let inner = self.pipeline()?;
                self.close(Tok::RParen, "(", token.start)?;
                self.leave();
                Ok(if inner.stages.is_empty() { inner.source } else { SetExpr::Pipeline(Box::new(inner)) })
            }
            Tok::Word(w) if *self.peek_at(1) == Tok::LParen => {
                Err(ParseError::unsupported(format!("{w}("), token.start))
            }
            _ => Err(self.expected("\"{\" or \"(\"")),
        }
    }

    // filter = "{" [ cond_or ] "}"
    fn filter(&mut self) -> Result<Option<Cond>, ParseError> {
        let open = self.bump();
        self.enter(open.start)?;
        let cond = if self.peek().tok == Tok::RBrace { None } else { Some(self.cond_or()?) };
        self.close(Tok::RBrace, "{", open.start)?;
        self.leave();
        Ok(cond)
    }

    // stage = filter | aggregate cmp_op number
    fn stage(&mut self) -> Result<Stage, ParseError> {
        let token = self.peek().clone();
        match &token.tok {
            Tok::LBrace => Ok(Stage::Filter(self.filter()?)),
            Tok::Word(w) if *self.peek_at(1) == Tok::LParen => {
                let func = match w.as_str() {
                    "count" => AggFunc::Count,
                    "avg" => AggFunc::Avg,
                    "min" => AggFunc::Min,
                    "max" => AggFunc::Max,
                    "sum" => AggFunc::Sum,
                    _ => return Err(ParseError::unsupported(format!("{w}("), token.start)),
                };
                self.aggregate(func, token.start)
            }
            _ => Err(self.expected("\"{\" or an aggregate (count, avg, min, max, sum)")),
        }
    }

    fn aggregate(&mut self, func: AggFunc, start: usize) -> Result<Stage, ParseError> {
        self.bump();
        let open = self.bump();
        let field = if func == AggFunc::Count {
            None
        } else {
            let at = self.peek().start;
            match self.term()? {
                Term::Operand(Operand::Field(field)) => {
                    let t = ty(&Operand::Field(field.clone()));
                    if !matches!(t, Ty::Num | Ty::Unknown) {
                        return Err(ParseError::Type {
                            message: format!("an aggregate needs a numeric field, not {}", t.name()),
                            offset: at,
                        });
                    }
                    Some(field)
                }
                _ => return Err(ParseError::Expected { expected: "a field", found: "a value".into(), offset: at }),
            }
        };
        self.close(Tok::RParen, "(", open.start)?;
        let op_token = self.peek().clone();
        let Some(op) = cmp_op(&op_token.tok) else {
            return Err(self.expected("a comparison operator after the aggregate"));
        };
        self.bump();
        let value_token = self.bump();
        let value = match value_token.tok {
            Tok::Int(i) => Num::Int(i.into()),
            Tok::Duration(d) => Num::Int(d.into()),
            Tok::Float(f) => Num::Float(f),
            other => {
                return Err(ParseError::Expected {
                    expected: "a number or duration",
                    found: other.describe(),
                    offset: value_token.start,
                });
            }
        };
        self.count_condition(start)?;
        Ok(Stage::Aggregate { func, field, op, value })
    }

    // cond_or = cond_and { "||" cond_and }
    fn cond_or(&mut self) -> Result<Cond, ParseError> {
        let mut items = vec![self.cond_and()?];
        while self.peek().tok == Tok::OrOr {
            self.bump();
            items.push(self.cond_and()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Cond::Or(items) })
    }

    // cond_and = cond_unary { "&&" cond_unary }
    fn cond_and(&mut self) -> Result<Cond, ParseError> {
        let mut items = vec![self.cond_unary()?];
        while self.peek().tok == Tok::AndAnd {
            self.bump();
            items.push(self.cond_unary()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Cond::And(items) })
    }

    // cond_unary = "!" cond_unary | "(" cond_or ")" | comparison
    fn cond_unary(&mut self) -> Result<Cond, ParseError> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Not => {
                self.bump();
                self.enter(token.start)?;
                let inner = self.cond_unary()?;
                self.leave();
                Ok(Cond::Not(Box::new(inner)))
            }
            Tok::LParen => {
                self.bump();
                self.enter(token.start)?;
                let inner = self.cond_or()?;
                self.close(Tok::RParen, "(", token.start)?;
                self.leave();
                let next = self.peek();
                if cmp_op(&next.tok).is_some() || matches!(next.tok, Tok::Re | Tok::NotRe | Tok::Arith(_)) {
                    return Err(ParseError::unsupported(format!("(…) {}", next.tok.symbol()), next.start));
                }
                Ok(inner)
            }
            _ => self.comparison(),
        }
    }

    // comparison = term [ cmp_op term | ("=~" | "!~") string ]
    fn comparison(&mut self) -> Result<Cond, ParseError> {
        let start = self.peek().start;
        let lhs = self.term()?;
        let op_token = self.peek().clone();
        if let Some(op) = cmp_op(&op_token.tok) {
            self.bump();
            let rhs_at = self.peek().start;
            let rhs = self.term()?;
            self.count_condition(start)?;
            return build_cmp(lhs, op, rhs, start, op_token.start, rhs_at);
        }
        match op_token.tok {
            Tok::Re | Tok::NotRe => {
                self.bump();
                self.count_condition(start)?;
                self.regex(lhs, op_token.tok == Tok::NotRe, start, op_token.start)
            }
            Tok::Arith(op) => Err(ParseError::unsupported(op, op_token.start)),
            _ => {
                let Term::Operand(operand) = lhs else {
                    return Err(ParseError::Type { message: "nil is not a condition".into(), offset: start });
                };
                let t = ty(&operand);
                if !matches!(t, Ty::Bool | Ty::Unknown) {
                    return Err(self.expected("a comparison operator"));
                }
                self.count_condition(start)?;
                Ok(Cond::Truthy(operand))
            }
        }
    }

    fn regex(&mut self, lhs: Term, negated: bool, start: usize, op_at: usize) -> Result<Cond, ParseError> {
        let Term::Operand(lhs) = lhs else {
            return Err(ParseError::Type { message: "nil cannot match a regular expression".into(), offset: start });
        };
        let t = ty(&lhs);
        if !matches!(t, Ty::Str | Ty::Unknown) {
            return Err(ParseError::Type {
                message: format!("a regular expression matches strings, not {}", t.name()),
                offset: op_at,
            });
        }
        let token = self.bump();
        let Tok::Str(pattern) = token.tok else {
            return Err(ParseError::Type {
                message: format!("a regular expression must be a string literal, found {}", token.tok.describe()),
                offset: token.start,
            });
        };
        self.regexes += 1;
        if self.regexes > limits::MAX_REGEXES {
            return Err(ParseError::TooManyRegexes { limit: limits::MAX_REGEXES, offset: token.start });
        }
        // Fully anchored, as Prometheus and Tempo ≥ 2.7 (grafana/tempo#4329).
        let regex = RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(limits::MAX_REGEX_BYTES)
            .dfa_size_limit(limits::MAX_REGEX_BYTES)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => {
                    ParseError::RegexTooBig { limit: limits::MAX_REGEX_BYTES, offset: token.start }
                }
                other => ParseError::InvalidRegex { message: first_line(&other.to_string()), offset: token.start },
            })?;
        Ok(Cond::Regex { lhs, regex, negated })
    }

    // term = field | static | "nil"
    fn term(&mut self) -> Result<Term, ParseError> {
        let token = self.peek().clone();
        let term = match &token.tok {
            Tok::Str(s) => Term::Operand(Operand::Static(Static::Str(s.clone()))),
            Tok::Int(i) => Term::Operand(Operand::Static(Static::Num(Num::Int((*i).into())))),
            Tok::Duration(d) => Term::Operand(Operand::Static(Static::Num(Num::Int((*d).into())))),
            Tok::Float(f) => Term::Operand(Operand::Static(Static::Num(Num::Float(*f)))),
            Tok::Attr { scope, name } => {
                Term::Operand(Operand::Field(Field::Attr { scope: *scope, name: name.clone() }))
            }
            Tok::Word(w) => word_term(w, token.start)?,
            Tok::Arith("-") => return Err(ParseError::unsupported("-", token.start)),
            _ => return Err(self.expected("a field or a value")),
        };
        self.bump();
        Ok(term)
    }
}

fn first_line(message: &str) -> String {
    // regex's syntax errors are multi-line drawings; keep the last line, which says what is wrong.
    message.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(message).trim().to_string()
}

fn cmp_op(tok: &Tok) -> Option<CmpOp> {
    Some(match tok {
        Tok::Eq => CmpOp::Eq,
        Tok::Ne => CmpOp::Ne,
        Tok::Gt => CmpOp::Gt,
        Tok::Ge => CmpOp::Ge,
        Tok::Lt => CmpOp::Lt,
        Tok::Le => CmpOp::Le,
        _ => return None,
    })
}

fn word_term(word: &str, offset: usize) -> Result<Term, ParseError> {
    let field = |f| Ok(Term::Operand(Operand::Field(f)));
    let value = |s| Ok(Term::Operand(Operand::Static(s)));
    match word {
        "name" | "span:name" => field(Field::Name),
        "status" | "span:status" => field(Field::Status),
        "statusMessage" | "span:statusMessage" => field(Field::StatusMessage),
        "kind" | "span:kind" => field(Field::Kind),
        "duration" | "span:duration" => field(Field::Duration),
        "rootName" | "trace:rootName" => field(Field::RootName),
        "rootServiceName" | "trace:rootService" => field(Field::RootServiceName),
        "traceDuration" | "trace:duration" => field(Field::TraceDuration),
        "true" => value(Static::Bool(true)),
        "false" => value(Static::Bool(false)),
        "nil" => Ok(Term::Nil),
        "ok" => value(Static::Status(SpanStatus::Ok)),
        "error" => value(Static::Status(SpanStatus::Error)),
        "unset" => value(Static::Status(SpanStatus::Unset)),
        "unspecified" => value(Static::Kind(SpanKind::Unspecified)),
        "internal" => value(Static::Kind(SpanKind::Internal)),
        "server" => value(Static::Kind(SpanKind::Server)),
        "client" => value(Static::Kind(SpanKind::Client)),
        "producer" => value(Static::Kind(SpanKind::Producer)),
        "consumer" => value(Static::Kind(SpanKind::Consumer)),
        _ => Err(unknown_word(word, offset)),
    }
}

/// Tempo intrinsics and scopes this crate does not evaluate are "unsupported"; anything else is
/// an unknown intrinsic (with a hint when it looks like an attribute without a scope).
fn unknown_word(word: &str, offset: usize) -> ParseError {
    const TEMPO_ONLY: &[&str] = &[
        "parent",
        "childCount",
        "nestedSetLeft",
        "nestedSetRight",
        "nestedSetParent",
        "span:id",
        "span:parentID",
        "span:childCount",
        "trace:id",
    ];
    const TEMPO_SCOPES: &[&str] = &["event", "link", "instrumentation", "scope"];
    if TEMPO_ONLY.contains(&word) {
        return ParseError::unsupported(word, offset);
    }
    if let Some(scope) = TEMPO_SCOPES
        .iter()
        .find(|s| word.strip_prefix(**s).is_some_and(|rest| rest.starts_with('.') || rest.starts_with(':')))
    {
        let sep = &word[scope.len()..scope.len() + 1];
        return ParseError::unsupported(format!("{scope}{sep}"), offset);
    }
    let hint = if word.contains('.') { " (attributes need a scope: span.x, resource.x or .x)" } else { "" };
    ParseError::UnknownIntrinsic { name: word.to_string(), offset, hint }
}

fn build_cmp(lhs: Term, op: CmpOp, rhs: Term, start: usize, op_at: usize, rhs_at: usize) -> Result<Cond, ParseError> {
    let (lhs, rhs) = match (lhs, rhs) {
        (Term::Operand(l), Term::Operand(r)) => (l, r),
        (Term::Nil, Term::Nil) => {
            return Err(ParseError::Type { message: "nil compares only with a field".into(), offset: start });
        }
        (Term::Operand(operand), Term::Nil) | (Term::Nil, Term::Operand(operand)) => {
            let Operand::Field(field) = operand else {
                return Err(ParseError::Type { message: "nil compares only with a field".into(), offset: start });
            };
            return match op {
                CmpOp::Ne => Ok(Cond::Exists(field)),
                // Tempo refuses `= nil` too (grafana/tempo#2879, #5999).
                CmpOp::Eq => Err(ParseError::unsupported("= nil", op_at)),
                _ => Err(ParseError::Type { message: "nil supports only \"!=\"".into(), offset: op_at }),
            };
        }
    };
    let (lt, rt) = (ty(&lhs), ty(&rhs));
    if lt != Ty::Unknown && rt != Ty::Unknown && lt != rt {
        return Err(ParseError::Type {
            message: format!("cannot compare {} with {}", lt.name(), rt.name()),
            offset: rhs_at,
        });
    }
    let ordered = !matches!(op, CmpOp::Eq | CmpOp::Ne);
    if ordered && let Some(t) = [lt, rt].into_iter().find(|t| matches!(t, Ty::Bool | Ty::Status | Ty::Kind)) {
        return Err(ParseError::Type {
            message: format!("{} has no order, only \"=\" and \"!=\"", t.name()),
            offset: op_at,
        });
    }
    Ok(Cond::Cmp { lhs, op, rhs })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The depth limit, not the length limit, is what protects the stack: check it on nesting
    /// far longer than any accepted query.
    #[test]
    fn deep_nesting_beyond_the_length_limit_is_an_error() {
        for text in
            ["(".repeat(100_000), format!("{{ {}true }}", "!".repeat(100_000)), format!("{{ {}", "(".repeat(100_000))]
        {
            let err = parse_any_length(&text).unwrap_err();
            assert!(matches!(err, ParseError::TooDeep { limit: 64, .. }), "{err}");
        }
    }
}
