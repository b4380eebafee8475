//! A YAML tree in which every node keeps its position, built from `saphyr-parser` events.
//!
//! serde_yaml reports only the first problem and forgets positions once a value is built;
//! the validator needs both every node's line and column and the freedom to keep going after
//! a bad value. The tree is deliberately small: scalars keep their text and whether they were
//! quoted (a quoted `"100"` is a string, a plain `100` a number, per the YAML 1.2 core
//! schema), mappings keep their keys in file order, duplicates included, so the validator can
//! report them. Aliases are expanded (with a node budget against "billion laughs" inputs) and
//! nesting is bounded, so no input makes the tree huge or the recursion deep.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};

use crate::diagnostic::{Diagnostic, Location};

/// Deepest nesting accepted; contracts need about six levels.
const MAX_DEPTH: usize = 64;
/// Most nodes one input may expand to (aliases included).
const MAX_NODES: usize = 200_000;

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub line: u32,
    pub column: u32,
}

/// What a [`Node`] holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A scalar's text; `plain` is false when it was quoted or a block scalar.
    Scalar { text: String, plain: bool },
    /// A sequence's items.
    Seq(Vec<Node>),
    /// A mapping's entries in file order, duplicate keys included.
    Map(Vec<(Node, Node)>),
}

/// A scalar's value resolved with the YAML 1.2 core schema.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Node {
    pub fn location(&self, file: &str) -> Location {
        Location::new(file, self.line, self.column)
    }

    /// The resolved value of a scalar; `None` for collections.
    pub fn scalar(&self) -> Option<Scalar<'_>> {
        match &self.kind {
            Kind::Scalar { text, plain: false } => Some(Scalar::Str(text)),
            Kind::Scalar { text, plain: true } => Some(resolve_plain(text)),
            _ => None,
        }
    }

    /// The text of a scalar, whatever its resolved type.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.scalar(), Some(Scalar::Null))
    }

    /// How the node reads in a message: "a mapping", "the number 5", "the string \"x\"".
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a mapping".to_string(),
            Kind::Scalar { text, .. } => match self.scalar() {
                Some(Scalar::Null) => "an empty value".to_string(),
                Some(Scalar::Bool(b)) => format!("the boolean {b}"),
                Some(Scalar::Int(_)) | Some(Scalar::Float(_)) => format!("the number {text}"),
                _ => format!("the string {text:?}"),
            },
        }
    }

    fn count(&self) -> usize {
        1 + match &self.kind {
            Kind::Scalar { .. } => 0,
            Kind::Seq(items) => items.iter().map(Node::count).sum(),
            Kind::Map(entries) => entries.iter().map(|(k, v)| k.count() + v.count()).sum(),
        }
    }
}

fn resolve_plain(text: &str) -> Scalar<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Scalar::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse() {
            Ok(n) => Scalar::Int(n),
            Err(_) => Scalar::Float(text.parse().unwrap_or(f64::INFINITY)),
        };
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(n) = i64::from_str_radix(hex, 16)
    {
        return Scalar::Int(n);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(n) = i64::from_str_radix(oct, 8)
    {
        return Scalar::Int(n);
    }
    let float_chars = text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if float_chars
        && text.bytes().any(|b| b.is_ascii_digit())
        && let Ok(f) = text.parse::<f64>()
    {
        return Scalar::Float(f);
    }
    Scalar::Str(text)
}

/// One YAML document: its root, `None` when the document is empty.
#[derive(Debug)]
pub(crate) struct Document {
    pub root: Option<Node>,
}

/// Every complete document of `text`, and the syntax error that stopped reading, if any.
/// Documents before the error are returned; the one the error is in is not.
pub(crate) fn load(file: &str, text: &str) -> (Vec<Document>, Option<Diagnostic>) {
    let end = End::of(text);
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        match event {
            Ok((event, span)) => {
                let (line, column) = end.clamp(pos(span.start));
                if let Err(message) = builder.on_event(event, line, column) {
                    let at = Location::new(file, line, column);
                    return (builder.documents, Some(Diagnostic::error(at, message)));
                }
            }
            Err(error) => {
                let (line, column) = end.clamp(pos(*error.marker()));
                let message = format!("yaml syntax error: {}", error.info());
                return (builder.documents, Some(Diagnostic::error(Location::new(file, line, column), message)));
            }
        }
    }
    (builder.documents, None)
}

/// Where a text ends: its last line, and the column just past that line's end.
#[derive(Debug, Clone, Copy)]
struct End {
    line: u32,
    column: u32,
}

impl End {
    fn of(text: &str) -> End {
        // YAML's line breaks: LF, CR, CR LF.
        let breaks = text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count();
        let last = text.rsplit(['\n', '\r']).next().unwrap_or("");
        End {
            line: u32::try_from(breaks).unwrap_or(u32::MAX - 1).saturating_add(1),
            column: u32::try_from(last.chars().count()).unwrap_or(u32::MAX - 1).saturating_add(1),
        }
    }

    /// The position itself, or the end of the text when it lies past it: the parser places
    /// what it finds at the end of a text without a final line break (a syntax error, an
    /// empty value) on the line after.
    fn clamp(self, (line, column): (u32, u32)) -> (u32, u32) {
        if line <= self.line { (line, column) } else { (self.line, self.column) }
    }
}

fn pos(marker: Marker) -> (u32, u32) {
    let line = u32::try_from(marker.line()).unwrap_or(u32::MAX).max(1);
    let column = u32::try_from(marker.col()).unwrap_or(u32::MAX - 1).saturating_add(1);
    (line, column)
}

#[derive(Debug)]
enum Frame {
    Seq { items: Vec<Node>, line: u32, column: u32, anchor: usize },
    Map { entries: Vec<(Node, Node)>, key: Option<Node>, line: u32, column: u32, anchor: usize },
}

#[derive(Debug, Default)]
struct Builder {
    documents: Vec<Document>,
    root: Option<Node>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl Builder {
    /// Takes one event, which starts at `line` and `column`.
    fn on_event(&mut self, event: Event<'_>, line: u32, column: u32) -> Result<(), String> {
        match event {
            Event::DocumentStart(_) => {
                self.root = None;
                self.anchors.clear();
            }
            Event::DocumentEnd => self.documents.push(Document { root: self.root.take() }),
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                self.complete(Node { kind: Kind::Scalar { text: text.into_owned(), plain }, line, column }, anchor)?;
            }
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id) else {
                    return Err("yaml alias refers to an unknown anchor".to_string());
                };
                let node = Node { line, column, ..node.clone() };
                self.complete(node, 0)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.push(Frame::Seq { items: Vec::new(), line, column, anchor })?;
            }
            Event::MappingStart(anchor, _) => {
                self.push(Frame::Map { entries: Vec::new(), key: None, line, column, anchor })?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { items, line, column, anchor }) => {
                        (Node { kind: Kind::Seq(items), line, column }, anchor)
                    }
                    Some(Frame::Map { entries, line, column, anchor, .. }) => {
                        (Node { kind: Kind::Map(entries), line, column }, anchor)
                    }
                    None => return Ok(()),
                };
                self.complete(node, anchor)?;
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
        }
        Ok(())
    }

    fn push(&mut self, frame: Frame) -> Result<(), String> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(format!("yaml nested deeper than {MAX_DEPTH} levels"));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), String> {
        self.nodes = self.nodes.saturating_add(node.count());
        if self.nodes > MAX_NODES {
            return Err(format!("yaml expands to more than {MAX_NODES} nodes (through aliases?)"));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        let (docs, err) = load("t.yaml", text);
        assert!(err.is_none(), "{err:?}");
        docs.into_iter().next().and_then(|d| d.root).expect("a root")
    }

    #[test]
    fn positions_are_one_based() {
        let node = root("a: 1\nbb:\n  - x\n");
        let Kind::Map(entries) = &node.kind else { panic!() };
        assert_eq!((node.line, node.column), (1, 1));
        assert_eq!((entries[1].0.line, entries[1].0.column), (2, 1));
        let Kind::Seq(items) = &entries[1].1.kind else { panic!() };
        assert_eq!((items[0].line, items[0].column), (3, 5));
    }

    #[test]
    fn core_schema_scalars() {
        assert_eq!(resolve_plain("100"), Scalar::Int(100));
        assert_eq!(resolve_plain("-2"), Scalar::Int(-2));
        assert_eq!(resolve_plain("0.5"), Scalar::Float(0.5));
        assert_eq!(resolve_plain("1e3"), Scalar::Float(1000.0));
        assert_eq!(resolve_plain("~"), Scalar::Null);
        assert_eq!(resolve_plain("true"), Scalar::Bool(true));
        assert_eq!(resolve_plain("yes"), Scalar::Str("yes"));
        assert_eq!(resolve_plain("420ms"), Scalar::Str("420ms"));
        assert_eq!(resolve_plain("inf"), Scalar::Str("inf"));
        assert_eq!(root("'100'").scalar(), Some(Scalar::Str("100")));
    }

    #[test]
    fn several_documents_and_syntax_errors() {
        let (docs, err) = load("t.yaml", "a: 1\n---\nb: 2\n---\nc: [\n");
        assert_eq!(docs.len(), 2);
        assert!(err.expect("an error").message.starts_with("yaml syntax error"));
    }

    // Found by fuzzing (`testdata/fuzz/contracts/error-past-the-last-line`): an unterminated
    // flow mapping on the last line, without a final line break, made the parser report the
    // error on a line after the file's end.
    #[test]
    fn a_syntax_error_at_the_end_is_placed_on_the_last_line() {
        let text = "a: b\nc: d\ne::M L {H";
        let (_, err) = load("t.yaml", text);
        let at = err.expect("an error").location;
        assert_eq!((at.line, at.column), (3, 10), "{at}");
        let (_, err) = load("t.yaml", "a: [\r\r");
        let at = err.expect("an error").location;
        assert!(at.line <= 3, "{at}");
        // `testdata/fuzz/contracts/empty-key-past-the-last-line`: the empty key of `?  ` was
        // placed on line 2 of a one-line file.
        let (docs, err) = load("t.yaml", "?  ");
        assert!(err.is_none(), "{err:?}");
        let Some(Node { kind: Kind::Map(entries), .. }) = &docs[0].root else { panic!("{docs:?}") };
        assert_eq!((entries[0].0.line, entries[0].0.column), (1, 4));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
        }
        let (_, err) = load("t.yaml", &text);
        assert!(err.expect("an error").message.contains("more than"));
    }
}
