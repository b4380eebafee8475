//! Regular expressions as Prometheus (Go's RE2 syntax) reads them, compiled with Rust's
//! `regex`. The two agree except that Go's Perl classes are ASCII-only (`\w` is
//! `[0-9A-Za-z_]`, `\d` `[0-9]`, `\s` `[\t\n\f\r ]`, `\b` an ASCII word boundary) where Rust's
//! are Unicode-aware; `go_syntax` rewrites them into the ASCII classes (found by the comparison
//! test: `{name=~"\\w+"}` matched `"日本"` here, not in Prometheus).

use regex::Regex;

/// `re` with Go's ASCII meaning of `\w \W \d \D \s \S \b \B` spelled out for Rust.
pub(crate) fn go_syntax(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 16);
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(next) = chars.next() else {
            out.push(c);
            break;
        };
        // Nested classes (`[a[0-9]]`) are unions in Rust, so one spelling serves inside and
        // outside brackets.
        match next {
            'w' => out.push_str("[0-9A-Za-z_]"),
            'W' => out.push_str("[^0-9A-Za-z_]"),
            'd' => out.push_str("[0-9]"),
            'D' => out.push_str("[^0-9]"),
            's' => out.push_str("[\\t\\n\\f\\r ]"),
            'S' => out.push_str("[^\\t\\n\\f\\r ]"),
            'b' => out.push_str("(?-u:\\b)"),
            'B' => out.push_str("(?-u:\\B)"),
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}

/// `re` anchored at both ends, as Prometheus anchors matchers and `label_replace` patterns.
pub(crate) fn compile_anchored(re: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{})$", go_syntax(re)))
}

#[cfg(test)]
mod tests {
    use super::compile_anchored;

    #[test]
    fn perl_classes_are_ascii_as_in_go() {
        let w = compile_anchored(r"\w+").unwrap();
        assert!(w.is_match("plain_1"));
        assert!(!w.is_match("日本"));
        assert!(compile_anchored(r"\W+").unwrap().is_match("日本"));
        assert!(compile_anchored(r"[\w]+").unwrap().is_match("ab_9"));
        assert!(!compile_anchored(r"[\w]+").unwrap().is_match("ü"));
        assert!(!compile_anchored(r"\d").unwrap().is_match("٣"));
        assert!(compile_anchored(r"\bplain.*").unwrap().is_match("plain_1"));
        // An escaped backslash is not a class.
        assert!(compile_anchored(r"\\w").unwrap().is_match(r"\w"));
        // Unicode classes keep their meaning.
        assert!(compile_anchored(r"\pL+").unwrap().is_match("ünï"));
    }
}
