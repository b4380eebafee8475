//! Bad input never panics: random text and mutations of the valid examples go through the
//! validator and the OpenSLO importer, which must return (diagnostics) rather than panic.

mod common;

use proptest::prelude::*;
use slo_contracts::{import_openslo, parse, parse_many};

fn seeds() -> Vec<String> {
    ["valid", "invalid", "openslo"]
        .iter()
        .flat_map(|dir| common::inputs(dir))
        .map(|path| std::fs::read_to_string(path).expect("read seed"))
        .collect()
}

/// One edit of a seed: delete, insert or replace a range of characters.
fn mutate(seed: &str, at: usize, len: usize, insert: &str) -> String {
    let chars: Vec<char> = seed.chars().collect();
    let at = at % (chars.len() + 1);
    let end = (at + len).min(chars.len());
    chars[..at].iter().chain(insert.chars().collect::<Vec<_>>().iter()).chain(chars[end..].iter()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,300}") {
        let _ = parse("random.yaml", &text);
        let _ = import_openslo("random.yaml", &text);
    }

    #[test]
    fn yamlish_text_never_panics(text in "([ \\-:{}\\[\\],'\"&*!|>#%p0-9a-z\\n.+<=]){0,200}") {
        let _ = parse("yamlish.yaml", &text);
        let _ = import_openslo("yamlish.yaml", &text);
    }

    #[test]
    fn mutated_examples_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<usize>(), 0usize..8, "[ \\-:{}\\[\\],'\"&*\\n.%+0-9a-z<=>]{0,6}"), 1..6),
    ) {
        let seeds = seeds();
        let mut text = seeds[seed.index(seeds.len())].clone();
        for (at, len, insert) in &edits {
            text = mutate(&text, *at, *len, insert);
        }
        let (_, diagnostics) = parse("mutated.yaml", &text);
        for d in &diagnostics {
            prop_assert!(d.location.line >= 1 && d.location.column >= 1, "{d}");
        }
        let _ = parse_many(&[("a.yaml".to_string(), text.clone()), ("b.yaml".to_string(), text.clone())]);
        let _ = import_openslo("mutated.yaml", &text);
    }
}

#[test]
fn deep_nesting_and_alias_bombs_are_refused_without_panicking() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (_, diagnostics) = parse("deep.yaml", &deep);
    assert!(!diagnostics.is_empty());
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        bomb.push_str(&format!("b{i}: &{} [{}]\n", "a", ["*a"; 10].join(", ")));
    }
    let (_, diagnostics) = parse("bomb.yaml", &bomb);
    assert!(!diagnostics.is_empty());
}
