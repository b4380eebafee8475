//! Golden tests of the OpenSLO importer: each `tests/data/openslo/*.yaml` is imported; the
//! contract YAML must equal `<name>.out.yaml`, the diagnostics `<name>.expect` (refresh with
//! `UPDATE_EXPECT=1`), and the contract must read back without errors.

mod common;

use common::{assert_golden, display_name, inputs};
use slo_contracts::{Severity, import_openslo, parse};

#[test]
fn openslo_imports() {
    let files = inputs("openslo");
    assert!(files.len() >= 4);
    for input in files {
        let text = std::fs::read_to_string(&input).expect("read input");
        let name = display_name(&input);
        let (contract, diagnostics) = import_openslo(&name, &text);
        let rendered: String = diagnostics.iter().map(|d| format!("{d}\n")).collect();
        assert_golden(&input.with_extension("expect"), &rendered);
        assert_golden(&input.with_extension("out.yaml"), &contract);
        let (_, problems) = parse(&format!("{name} (imported)"), &contract);
        let errors: Vec<String> =
            problems.iter().filter(|d| d.severity == Severity::Error).map(ToString::to_string).collect();
        assert!(
            contract.is_empty() || errors.is_empty(),
            "{name}: the imported contract does not validate: {errors:#?}"
        );
    }
}
