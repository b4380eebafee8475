//! Data-driven tests of the contract validator: every `tests/data/{valid,invalid}/*.yaml`
//! is parsed and its diagnostics (and, for valid files, the contracts) compared with the
//! golden `.expect` file beside it. Refresh them with `UPDATE_EXPECT=1 cargo test -p
//! slo-contracts` and review the diff.

mod common;

use std::path::Path;

use common::{assert_golden, display_name, inputs};
use slo_contracts::{Severity, parse, parse_many};

/// Parses `input` and checks the diagnostics (and contracts) against `input.expect`.
/// Returns the number of errors found.
fn check(input: &Path, show_contracts: bool) -> usize {
    let text = std::fs::read_to_string(input).expect("read input");
    let (contracts, diagnostics) = parse(&display_name(input), &text);
    let mut actual = String::new();
    for diagnostic in &diagnostics {
        actual.push_str(&format!("{diagnostic}\n"));
    }
    if show_contracts {
        actual.push_str(&format!("{contracts:#?}\n"));
    }
    assert_golden(&input.with_extension("expect"), &actual);
    diagnostics.iter().filter(|d| d.severity == Severity::Error).count()
}

#[test]
fn valid_contracts() {
    let files = inputs("valid");
    assert!(files.len() >= 5);
    for input in files {
        assert_eq!(check(&input, true), 0, "{} has errors", input.display());
    }
}

#[test]
fn invalid_contracts() {
    let files = inputs("invalid");
    assert!(files.len() >= 15);
    for input in files {
        assert!(check(&input, false) > 0, "{} has no error", input.display());
    }
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let text = std::fs::read_to_string(common::data_dir().join("invalid/many-problems.yaml")).expect("read");
    let (contracts, diagnostics) = parse("many-problems.yaml", &text);
    assert!(contracts.is_empty());
    let messages: Vec<String> = diagnostics.iter().map(|d| d.message.clone()).collect();
    for expected in [
        "unknown key `servce` in a contract",
        "`min_samples` must be a whole number",
        "score.warn (95) is above score.pass (90)",
        "percentile p100 is out of range",
        "latency criteria need a duration",
        "duplicate objective name `latency`",
        "objective has several indicators",
        "weight must not be negative",
        "`aggregation` must be one of",
    ] {
        assert!(messages.iter().any(|m| m.contains(expected)), "missing {expected:?} in {messages:#?}");
    }
    // The relative limit is not reported as "without a baseline": the contract has no gate
    // baseline, so it is; the test pins that it is reported along with everything else.
    assert!(messages.iter().any(|m| m.starts_with("relative limit without a baseline")));
}

#[test]
fn several_contracts_for_one_service_across_files() {
    let contract = |env: &str| {
        format!(
            "apiVersion: slo-gate/v1\nkind: Contract\nservice: checkout\n{env}objectives:\n  - name: l\n    latency: {{ percentile: p95 }}\n    fail: \"<= 1s\"\n"
        )
    };
    let inputs = vec![
        ("a.yaml".to_string(), contract("environment: staging\n")),
        ("b.yaml".to_string(), contract("")),
        ("c.yaml".to_string(), contract("environment: staging\n")),
    ];
    let (contracts, diagnostics) = parse_many(&inputs);
    assert_eq!(contracts.len(), 2);
    let rendered: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "c.yaml:1:1: error: second contract for service `checkout` in environment `staging`\n  hint: the first is at a.yaml:1:1; merge their objectives into one contract"
        ]
    );
}

#[test]
fn an_empty_file_warns() {
    let (contracts, diagnostics) = parse("empty.yaml", "# nothing\n");
    assert!(contracts.is_empty());
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0].severity, Severity::Warning);
}

/// The contracts shown in docs/contracts.md are valid, so the documentation cannot rot.
#[test]
fn documented_examples_are_valid() {
    let docs =
        std::fs::read_to_string(common::data_dir().join("../../../docs/contracts.md")).expect("docs/contracts.md");
    let blocks: Vec<&str> = docs
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .filter(|block| block.contains("apiVersion: slo-gate/v1"))
        .collect();
    assert!(blocks.len() >= 2);
    for block in blocks {
        let (contracts, diagnostics) = parse("docs/contracts.md", block);
        assert!(diagnostics.is_empty() && !contracts.is_empty(), "{block}\n{diagnostics:#?}");
    }
}
