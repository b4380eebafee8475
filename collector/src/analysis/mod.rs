//! Continuous analysis in `slo-gate serve`: between releases, every step scores each
//! service's span-metric SLIs and the watched metric queries against their dynamic baselines
//! (`analyzer::baseline`), keeps the incidents found in a durable journal ([`journal`]), and
//! tracks the error budgets of the loaded contracts' SLO targets.

pub mod journal;
