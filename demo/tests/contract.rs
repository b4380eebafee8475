//! The bundled contract is valid and says what the demo needs.

use slo_contracts::{Baseline, NoData};

#[test]
fn bundled_contract_validates_without_diagnostics() {
    let (contracts, diagnostics) = slo_contracts::parse("demo/contract.yaml", demo::contract_yaml());
    let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert!(text.is_empty(), "diagnostics:\n{}", text.join("\n"));
    assert_eq!(contracts.len(), 1);
    let contract = &contracts[0];
    assert_eq!(contract.service, demo::SERVICE);
    assert_eq!(contract.environment.as_deref(), Some(demo::ENVIRONMENT));
    assert_eq!(contract.gate.baseline, Some(Baseline::Version(demo::Build::Baseline.version().to_string())));
    assert_eq!(contract.gate.min_samples, 100);
    assert_eq!(contract.gate.no_data, NoData::Fail);
    let names: Vec<&str> = contract.objectives.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["checkout-latency", "cart-latency", "checkout-errors", "checkout-throughput", "cpu"]);
    let key: Vec<&str> = contract.objectives.iter().filter(|o| o.key).map(|o| o.name.as_str()).collect();
    assert_eq!(key, ["checkout-latency"]);
}
