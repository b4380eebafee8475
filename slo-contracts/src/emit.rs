//! A small YAML writer for the contracts the OpenSLO importer produces: block style, keys in
//! the order given, strings quoted whenever a plain scalar could be read as something else.

/// A value to write.
#[derive(Debug, Clone)]
pub(crate) enum Out {
    /// Written as is (numbers, booleans, keywords known to be safe).
    Raw(String),
    /// Text, quoted when needed.
    Str(String),
    /// A mapping; `comment` lines are written above the entry.
    Map(Vec<Entry>),
    /// A sequence.
    Seq(Vec<Out>),
}

/// One mapping entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub value: Out,
    pub comments: Vec<String>,
}

impl Entry {
    pub fn new(key: &str, value: Out) -> Self {
        Entry { key: key.to_string(), value, comments: Vec::new() }
    }
}

/// Writes `out` as a YAML block at `indent` spaces (a mapping or a sequence at the top).
pub(crate) fn write(out: &Out, indent: usize, buf: &mut String) {
    let pad = " ".repeat(indent);
    match out {
        Out::Map(entries) => {
            for entry in entries {
                for comment in &entry.comments {
                    buf.push_str(&format!("{pad}# {comment}\n"));
                }
                buf.push_str(&format!("{pad}{}:", scalar(&entry.key)));
                write_value(&entry.value, indent, buf);
            }
        }
        Out::Seq(items) => {
            for item in items {
                match item {
                    Out::Map(entries) if !entries.is_empty() => {
                        // The first entry's comments go above the dash, the entry on the
                        // dash's line, the rest under it.
                        for comment in &entries[0].comments {
                            buf.push_str(&format!("{pad}# {comment}\n"));
                        }
                        let mut first = entries.clone();
                        first[0].comments.clear();
                        let mut block = String::new();
                        write(&Out::Map(first), indent + 2, &mut block);
                        buf.push_str(&format!("{pad}- "));
                        buf.push_str(block.trim_start());
                    }
                    other => {
                        buf.push_str(&format!("{pad}-"));
                        write_value(other, indent, buf);
                    }
                }
            }
        }
        Out::Raw(_) | Out::Str(_) => write_value(out, indent, buf),
    }
}

fn write_value(value: &Out, indent: usize, buf: &mut String) {
    match value {
        Out::Raw(text) => buf.push_str(&format!(" {text}\n")),
        Out::Str(text) => buf.push_str(&format!(" {}\n", scalar(text))),
        Out::Map(entries) if entries.is_empty() => buf.push_str(" {}\n"),
        Out::Seq(items) if items.is_empty() => buf.push_str(" []\n"),
        Out::Map(_) => {
            buf.push('\n');
            write(value, indent + 2, buf);
        }
        Out::Seq(_) => {
            buf.push('\n');
            write(value, indent + 2, buf);
        }
    }
}

/// `text` as a YAML scalar: plain when it reads back as the same string, else double-quoted.
pub(crate) fn scalar(text: &str) -> String {
    let plain_safe = !text.is_empty()
        && text.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '/' | '.'))
        && !text.starts_with(['-', '.'])
        && text.parse::<f64>().is_err()
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~"
        );
    if plain_safe {
        return text.to_string();
    }
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(scalar("checkout"), "checkout");
        assert_eq!(scalar("/api/checkout"), "/api/checkout");
        assert_eq!(scalar("1.4.2"), "1.4.2");
        assert_eq!(scalar("1.5"), "\"1.5\"");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar(">= 99%"), "\">= 99%\"");
        // An slo block's target and window read back as the same strings.
        assert_eq!(scalar("99.9%"), "\"99.9%\"");
        assert_eq!(scalar("28d"), "28d");
        assert_eq!(scalar("a \"b\""), "\"a \\\"b\\\"\"");
    }

    #[test]
    fn writes_nested_blocks() {
        let out = Out::Map(vec![
            Entry::new("a", Out::Str("x".into())),
            Entry::new(
                "list",
                Out::Seq(vec![Out::Map(vec![
                    Entry::new("name", Out::Str("nm".into())),
                    Entry::new("m", Out::Map(vec![Entry::new("k", Out::Raw("1".into()))])),
                ])]),
            ),
        ]);
        let mut buf = String::new();
        write(&out, 0, &mut buf);
        assert_eq!(buf, "a: x\nlist:\n  - name: nm\n    m:\n      k: 1\n");
    }
}
