//! Error budgets of the loaded contracts' SLO targets (`slo:` on an objective), counted from
//! the span metrics every step and judged by `analyzer::burn` (multi-window, multi-burn-rate
//! alerts of the SRE workbook).
//!
//! An objective's events are the SERVER and CONSUMER spans of its contract's service, on its
//! route (`http.route`, or the span name when the spans have no route) when the selector names
//! one: a latency objective's good events are the spans no slower than its threshold (read
//! from the duration histogram, exactly when the threshold is a bucket bound), an error-rate
//! objective's the spans that are not errors. The span metrics carry no environment, so an
//! objective counts the service's spans of every environment. Ratio objectives over metric
//! counters are not counted here (a warning at start says so).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use analyzer::burn;
use slo_contracts::model::{GoodEvents, Indicator, Slo};

use super::sli::{Delta, Group};

/// One contract objective with an SLO target.
#[derive(Debug, Clone)]
pub struct SloObjective {
    pub service: String,
    pub objective: String,
    /// Only spans of this route (or span name) count; all the service's when `None`.
    pub route: Option<String>,
    pub slo: Slo,
}

impl SloObjective {
    /// The key its tracker is kept under, per tenant.
    pub fn key(&self) -> String {
        format!("{}/{}", self.service, self.objective)
    }

    /// A fresh tracker for it.
    pub fn tracker(&self) -> Result<burn::BudgetTracker, String> {
        burn::BudgetTracker::for_slo(&self.slo).map_err(|e| format!("objective {}: {e}", self.key()))
    }

    /// Good and total events of one step, from the tenant's groups; `None` when no group is
    /// the objective's service (the tenant does not run it).
    pub fn count(&self, groups: &BTreeMap<Group, Delta>, bounds: &[f64]) -> Option<(u64, u64)> {
        let mut found = false;
        let (mut good, mut total) = (0u64, 0u64);
        for (group, delta) in groups {
            if group.service != self.service || self.route.as_deref().is_some_and(|r| r != group.route) {
                continue;
            }
            found = true;
            let g = match self.slo.good {
                GoodEvents::DurationAtMost { seconds } => {
                    let cumulative = burn::cumulate(&delta.buckets);
                    burn::good_at_most(bounds, &cumulative, seconds).map(|c| c.good).unwrap_or(0)
                }
                GoodEvents::NotError => delta.calls.saturating_sub(delta.errors),
                GoodEvents::Ratio => continue,
            };
            good = good.saturating_add(g.min(delta.calls));
            total = total.saturating_add(delta.calls);
        }
        found.then_some((good, total))
    }
}

/// The objectives with an SLO target in `paths` (contract files, or directories whose
/// `.yaml`/`.yml` files are read, sorted by name), and warnings for those that cannot be
/// counted from span metrics. Every error of every file is reported, with file, line and
/// column, as `slo-gate contracts validate` reports them.
pub fn load(paths: &[PathBuf]) -> Result<(Vec<SloObjective>, Vec<String>), String> {
    let mut inputs = Vec::new();
    for path in paths {
        for file in files(path)? {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read the contract {}: {e}", file.display()))?;
            inputs.push((file.display().to_string(), text));
        }
    }
    let (contracts, diagnostics) = slo_contracts::parse_many(&inputs);
    let errors: Vec<String> = diagnostics.iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
    if !errors.is_empty() {
        return Err(format!("analysis.contracts: {}", errors.join("; ")));
    }
    let mut warnings: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
    let mut objectives = Vec::new();
    for contract in contracts {
        for objective in contract.objectives {
            let Some(slo) = objective.slo else { continue };
            let selector = match &objective.indicator {
                Indicator::Latency { selector, .. } | Indicator::ErrorRate { selector } => selector,
                _ => {
                    warnings.push(format!(
                        "{}: the SLO of objective {:?} of {} is over metric counters, which the continuous analysis does not count yet; it has no error budget",
                        slo.location, objective.name, contract.service
                    ));
                    continue;
                }
            };
            let route = selector.route.as_ref().or(selector.span_name.as_ref()).map(|(r, _)| r.clone());
            objectives.push(SloObjective { service: contract.service.clone(), objective: objective.name, route, slo });
        }
    }
    Ok((objectives, warnings))
}

fn files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("analysis.contracts: cannot read {}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(path).map_err(|e| format!("analysis.contracts: cannot list {}: {e}", path.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("analysis.contracts: cannot list {}: {e}", path.display()))?;
        let p = entry.path();
        if p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            found.push(p);
        }
    }
    found.sort();
    Ok(found)
}
