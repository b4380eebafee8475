//! The validator: walks the position-keeping YAML tree (`yaml.rs`) and builds the
//! domain types ([`crate::model`]), reporting every problem it meets instead of stopping at
//! the first. Each mapping is checked against the key list of its wire type
//! ([`crate::wire::keys`]), so unknown keys are errors (serde's `deny_unknown_fields`, with a
//! "did you mean" hint) and the accepted keys cannot drift from the JSON Schema unnoticed.
//!
//! A contract with an error is left out of the result; its diagnostics say why. Warnings
//! (e.g. a warn limit looser than the fail limit) keep the contract.

use std::collections::HashMap;

use crate::criterion::{duration_seconds, number, parse_criterion};
use crate::diagnostic::{self, Diagnostic, Location, Severity, did_you_mean};
use crate::duration::HumanDuration;
use crate::model::{
    Aggregation, Baseline, Bound, Contract, CpuNormalize, Criterion, DEFAULT_CPU_PROFILE_TYPE,
    DEFAULT_SPAN_METRIC_BUCKETS, GatePolicy, GoodEvents, Indicator, MetricSelector, NoData, Objective, OnViolation,
    RatioOf, ScoreThresholds, Share, Slo, SpanSelector, Unit, WORKBOOK_BURN_ALERTS,
};
use crate::wire::{INDICATOR_KEYS, keys};
use crate::yaml::{self, Kind, Node, Scalar};

/// The only `apiVersion` this version reads.
pub const API_VERSION: &str = "slo-gate/v1";

/// Reads every contract in one file (one per YAML document).
///
/// Returns the contracts without errors and every diagnostic, sorted by position. Never
/// panics, whatever `text` holds. Several contracts for the same service and environment in
/// the file are an error; use [`parse_many`] to check that across files too.
pub fn parse(file: &str, text: &str) -> (Vec<Contract>, Vec<Diagnostic>) {
    parse_many(&[(file.to_string(), text.to_string())])
}

/// Reads the contracts of several files, given as `(file name, text)`, and checks them
/// against each other: two contracts for the same service and environment are an error
/// (the second one is left out). Diagnostics come in input order, then by position.
pub fn parse_many(inputs: &[(String, String)]) -> (Vec<Contract>, Vec<Diagnostic>) {
    let mut contracts = Vec::new();
    let mut diagnostics = Vec::new();
    for (file, text) in inputs {
        let (mut found, mut diags) = parse_file(file, text);
        contracts.append(&mut found);
        diagnostics.append(&mut diags);
    }
    let contracts = drop_duplicates(contracts, &mut diagnostics);
    let order: HashMap<&str, usize> = inputs.iter().enumerate().rev().map(|(i, (f, _))| (f.as_str(), i)).collect();
    diagnostics.sort_by_key(|d| {
        (order.get(d.location.file.as_str()).copied().unwrap_or(usize::MAX), d.location.line, d.location.column)
    });
    (contracts, diagnostics)
}

fn parse_file(file: &str, text: &str) -> (Vec<Contract>, Vec<Diagnostic>) {
    let (documents, syntax_error) = yaml::load(file, text);
    let mut walker = Walker { file, diags: Vec::new(), baseline_written: false };
    let mut contracts = Vec::new();
    let mut seen_document = false;
    for document in &documents {
        let Some(root) = document.root.as_ref().filter(|root| !root.is_null()) else { continue };
        seen_document = true;
        if let Some(contract) = walker.contract(root) {
            contracts.push(contract);
        }
    }
    let mut diags = walker.diags;
    match syntax_error {
        Some(error) => diags.push(error),
        None if !seen_document => diags.push(
            Diagnostic::warning(Location::new(file, 1, 1), "file holds no contract")
                .with_hint("a contract starts with apiVersion: slo-gate/v1 and kind: Contract"),
        ),
        None => {}
    }
    diagnostic::sort(&mut diags);
    (contracts, diags)
}

fn drop_duplicates(contracts: Vec<Contract>, diags: &mut Vec<Diagnostic>) -> Vec<Contract> {
    let mut first: HashMap<(String, Option<String>), Location> = HashMap::new();
    let mut kept = Vec::new();
    for contract in contracts {
        let key = (contract.service.clone(), contract.environment.clone());
        if let Some(at) = first.get(&key) {
            let env = match &contract.environment {
                Some(env) => format!("environment `{env}`"),
                None => "every environment".to_string(),
            };
            diags.push(
                Diagnostic::error(
                    contract.location.clone(),
                    format!("second contract for service `{}` in {env}", contract.service),
                )
                .with_hint(format!("the first is at {at}; merge their objectives into one contract")),
            );
            continue;
        }
        first.insert(key, contract.location.clone());
        kept.push(contract);
    }
    kept
}

/// The entries of one mapping whose keys were accepted, with the mapping node itself.
struct Fields<'n> {
    map: &'n Node,
    what: &'static str,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
    /// Known keys that unknown keys were taken for ("did you mean").
    suggested: Vec<&'static str>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, _, v)| *v)
    }

    fn key_node(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, k, _)| *k)
    }
}

struct Walker<'f> {
    file: &'f str,
    diags: Vec<Diagnostic>,
    /// Whether the contract being read has `gate.baseline` (even a wrong one: a bad
    /// baseline is reported once, not again at every relative limit).
    baseline_written: bool,
}

impl Walker<'_> {
    fn loc(&self, node: &Node) -> Location {
        node.location(self.file)
    }

    fn error(&mut self, node: &Node, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(self.loc(node), message));
    }

    fn error_hint(&mut self, node: &Node, message: impl Into<String>, hint: impl Into<String>) {
        self.diags.push(Diagnostic::error(self.loc(node), message).with_hint(hint));
    }

    fn errors(&self) -> usize {
        self.diags.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// The accepted entries of a mapping; unknown and duplicate keys are reported.
    fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &'static str,
        allowed: &'static [&'static str],
    ) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.error(node, format!("{what} must be a mapping, got {}", node.describe()));
            return None;
        };
        let mut fields = Fields { map: node, what, entries: Vec::new(), suggested: Vec::new() };
        let mut seen: HashMap<&str, &Node> = HashMap::new();
        for (key, value) in entries {
            let Some(name) = key.text().filter(|_| !key.is_null()) else {
                self.error(key, format!("keys in {what} must be plain text, got {}", key.describe()));
                continue;
            };
            if let Some(first) = seen.get(name) {
                let hint = format!("first given at line {}; remove one of them", first.line);
                self.error_hint(key, format!("duplicate key `{name}` in {what}"), hint);
                continue;
            }
            seen.insert(name, key);
            match allowed.iter().find(|k| **k == name) {
                Some(known) => fields.entries.push((known, key, value)),
                None => {
                    let hint = match did_you_mean(name, allowed) {
                        Some(close) => {
                            fields.suggested.push(close);
                            format!("did you mean `{close}`?")
                        }
                        None => format!("expected one of: {}", allowed.join(", ")),
                    };
                    self.error_hint(key, format!("unknown key `{name}` in {what}"), hint);
                }
            }
        }
        Some(fields)
    }

    fn require<'n>(&mut self, fields: &Fields<'n>, key: &str) -> Option<&'n Node> {
        let found = fields.get(key);
        if found.is_none() && !fields.suggested.contains(&key) {
            self.error(fields.map, format!("missing required key `{key}` in {}", fields.what));
        }
        found
    }

    fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.scalar() {
            Some(Scalar::Null) | None => {
                self.error(node, format!("`{what}` must be text, got {}", node.describe()));
                None
            }
            Some(_) => {
                let text = node.text().unwrap_or_default().trim().to_string();
                if text.is_empty() {
                    self.error(node, format!("`{what}` must not be empty"));
                    return None;
                }
                Some(text)
            }
        }
    }

    fn uint(&mut self, node: &Node, what: &str) -> Option<u64> {
        match node.scalar() {
            Some(Scalar::Int(n)) if n >= 0 => Some(n.unsigned_abs()),
            _ => {
                self.error(node, format!("`{what}` must be a whole number, at least 0, got {}", node.describe()));
                None
            }
        }
    }

    fn number(&mut self, node: &Node, what: &str) -> Option<f64> {
        match node.scalar() {
            #[allow(clippy::cast_precision_loss)]
            Some(Scalar::Int(n)) => Some(n as f64),
            Some(Scalar::Float(f)) if f.is_finite() => Some(f),
            _ => {
                self.error(node, format!("`{what}` must be a number, got {}", node.describe()));
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.scalar() {
            Some(Scalar::Bool(b)) => Some(b),
            _ => {
                self.error(node, format!("`{what}` must be true or false, got {}", node.describe()));
                None
            }
        }
    }

    fn keyword<'k>(&mut self, node: &Node, what: &str, options: &[&'k str]) -> Option<&'k str> {
        let text = node.text().filter(|_| node.scalar().is_some_and(|s| matches!(s, Scalar::Str(_))));
        if let Some(found) = text.and_then(|t| options.iter().find(|o| **o == t)) {
            return Some(found);
        }
        let message = format!("`{what}` must be one of {}, got {}", options.join(", "), node.describe());
        match text.and_then(|t| did_you_mean(t, options)) {
            Some(close) => self.error_hint(node, message, format!("did you mean `{close}`?")),
            None => self.error(node, message),
        }
        None
    }

    fn contract(&mut self, root: &Node) -> Option<Contract> {
        let errors_before = self.errors();
        if let Kind::Map(entries) = &root.kind
            && let Some((_, value)) = entries.iter().find(|(k, _)| k.text() == Some("apiVersion"))
            && let Some(other) = value.text().filter(|v| v.starts_with("openslo/"))
        {
            // Not a contract at all: one error, not one per OpenSLO key.
            self.error_hint(
                value,
                format!("this is an OpenSLO document (apiVersion {other}), not a slo-gate contract"),
                "convert OpenSLO files with slo-gate's OpenSLO importer",
            );
            return None;
        }
        let fields = self.fields(root, "a contract", keys::CONTRACT)?;
        if let Some(node) = self.require(&fields, "apiVersion") {
            match node.text() {
                Some(API_VERSION) => {}
                _ => self.error_hint(
                    node,
                    format!("unsupported apiVersion: {}", node.describe()),
                    format!("this version of slo-gate reads apiVersion: {API_VERSION}"),
                ),
            }
        }
        if let Some(node) = self.require(&fields, "kind")
            && node.text() != Some("Contract")
        {
            self.error_hint(node, format!("unsupported kind: {}", node.describe()), "write kind: Contract");
        }
        let service = self.require(&fields, "service").and_then(|n| self.text(n, "service"));
        let environment = fields.get("environment").and_then(|n| self.text(n, "environment"));
        let (gate, baseline_written) = match fields.get("gate") {
            Some(node) => self.gate(node),
            None => (GatePolicy::default(), false),
        };
        self.baseline_written = baseline_written;
        let objectives = self.require(&fields, "objectives").and_then(|n| self.objectives(n));
        if self.errors() > errors_before {
            return None;
        }
        Some(Contract { service: service?, environment, gate, objectives: objectives?, location: self.loc(root) })
    }

    fn objectives(&mut self, node: &Node) -> Option<Vec<Objective>> {
        let Kind::Seq(items) = &node.kind else {
            self.error_hint(
                node,
                format!("`objectives` must be a list, got {}", node.describe()),
                "write each objective as a list item starting with `- name: ...`",
            );
            return None;
        };
        if items.is_empty() {
            self.error_hint(node, "the contract has no objectives", "add at least one objective");
            return None;
        }
        let mut objectives = Vec::new();
        let mut names: HashMap<String, u32> = HashMap::new();
        for item in items {
            // Names are compared before the objectives are read, so a duplicate is found
            // even when the first objective has errors of its own.
            let name = match &item.kind {
                Kind::Map(entries) => {
                    entries.iter().find(|(k, _)| k.text() == Some("name")).and_then(|(_, v)| v.text())
                }
                _ => None,
            };
            if let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) {
                if let Some(line) = names.get(name) {
                    let hint = format!("first used at line {line}; objective names must be unique within a contract");
                    self.error_hint(item, format!("duplicate objective name `{name}`"), hint);
                } else {
                    names.insert(name.to_string(), item.line);
                }
            }
            if let Some(objective) = self.objective(item) {
                objectives.push(objective);
            }
        }
        Some(objectives)
    }

    fn objective(&mut self, node: &Node) -> Option<Objective> {
        let errors_before = self.errors();
        let fields = self.fields(node, "an objective", keys::OBJECTIVE)?;
        let name = self.require(&fields, "name").and_then(|n| self.text(n, "name"));
        let description = fields.get("description").and_then(|n| self.text(n, "description"));
        let present: Vec<&str> = INDICATOR_KEYS.iter().copied().filter(|k| fields.get(k).is_some()).collect();
        let mut indicators = Vec::new();
        for key in &present {
            if let Some(value) = fields.get(key) {
                indicators.push(self.indicator(key, value));
            }
        }
        if present.is_empty() && !fields.suggested.iter().any(|s| INDICATOR_KEYS.contains(s)) {
            self.error_hint(
                node,
                "objective has no indicator",
                format!("give exactly one of: {}", INDICATOR_KEYS.join(", ")),
            );
        }
        for extra in present.iter().skip(1) {
            if let Some(key) = fields.key_node(extra) {
                self.error_hint(
                    key,
                    format!("objective has several indicators: `{}` and `{extra}`", present[0]),
                    "split it into one objective per indicator",
                );
            }
        }
        let indicator = indicators.into_iter().next().flatten();
        let mut fail = Vec::new();
        let mut warn = Vec::new();
        // The unit comes from the indicator's key, so criteria are checked even when the
        // indicator's own fields have errors.
        if let Some(first) = present.first().copied() {
            let unit = match first {
                "latency" => Some(Unit::Seconds),
                "error_rate" => Some(Unit::Ratio),
                "throughput" => Some(Unit::PerSecond),
                "metric" => match fields.get("metric").map(|m| &m.kind) {
                    Some(Kind::Map(entries)) if entries.iter().any(|(k, _)| k.text() == Some("ratio")) => {
                        Some(Unit::Ratio)
                    }
                    _ => Some(Unit::Raw),
                },
                _ => None,
            };
            match unit {
                Some(unit) => {
                    if let Some(n) = fields.get("fail") {
                        fail = self.criteria(n, "fail", unit, first);
                    }
                    if let Some(n) = fields.get("warn") {
                        warn = self.criteria(n, "warn", unit, first);
                    }
                    if fields.get("fail").is_none() && fields.get("warn").is_none() {
                        self.error_hint(
                            node,
                            "objective has no criteria",
                            "add fail: (and/or warn:) limits, e.g. fail: \"<= 420ms\"",
                        );
                    }
                    if let Some(key) = fields.key_node("on_violation") {
                        self.error_hint(
                            key,
                            format!("`on_violation` applies only to cpu_regression and goroutine_leak, not {first}"),
                            "use warn: criteria for a warning level",
                        );
                    }
                }
                None => {
                    for criteria in ["fail", "warn"] {
                        if let Some(key) = fields.key_node(criteria) {
                            self.error_hint(
                                key,
                                format!("{first} objectives take no `{criteria}` criteria"),
                                format!(
                                    "their limits are {first}'s own parameters; set on_violation: warn to warn instead of fail"
                                ),
                            );
                        }
                    }
                }
            }
        }
        if !self.baseline_written
            && present.first() == Some(&"cpu_regression")
            && let Some(key) = fields.key_node("cpu_regression")
        {
            self.error_hint(
                key,
                "cpu_regression compares the candidate with a baseline, but gate.baseline is not set",
                "set gate.baseline (last_passing, { version: \"1.4.2\" } or { previous: 3 })",
            );
        }
        if !self.baseline_written {
            for criterion in fail.iter().chain(&warn) {
                if matches!(criterion.bound, Bound::Relative(_)) {
                    self.diags.push(
                        Diagnostic::error(
                            criterion.location.clone(),
                            format!("relative limit without a baseline: {:?}", criterion.text),
                        )
                        .with_hint(
                            "set gate.baseline (last_passing, { version: \"1.4.2\" } or { previous: 3 }), \
                             or use an absolute limit",
                        ),
                    );
                }
            }
        }
        let key = fields.get("key").and_then(|n| self.boolean(n, "key")).unwrap_or(false);
        let weight = match fields.get("weight") {
            Some(n) => match self.number(n, "weight") {
                Some(w) if w < 0.0 => {
                    self.error_hint(
                        n,
                        format!("weight must not be negative, got {w}"),
                        "use 0 to leave it out of the score",
                    );
                    1.0
                }
                Some(w) => w,
                None => 1.0,
            },
            None => 1.0,
        };
        let on_violation =
            match fields.get("on_violation").and_then(|n| self.keyword(n, "on_violation", &["fail", "warn"])) {
                Some("warn") => OnViolation::Warn,
                _ => OnViolation::Fail,
            };
        self.warn_looser_than_fail(&fail, &warn);
        let slo = match (fields.key_node("slo"), fields.get("slo")) {
            (Some(key), Some(value)) => self.slo(key, value, present.first().copied(), &fields),
            _ => None,
        };
        if self.errors() > errors_before {
            return None;
        }
        Some(Objective {
            name: name?,
            description,
            indicator: indicator?,
            fail,
            warn,
            key,
            weight,
            on_violation,
            slo,
            location: self.loc(node),
        })
    }

    /// The `slo:` block of an objective whose first indicator key is `indicator` (`None`
    /// when it has none, which is reported elsewhere). Target, window and threshold are
    /// checked whatever the indicator, so every problem is reported at once.
    fn slo(&mut self, key: &Node, node: &Node, indicator: Option<&str>, objective: &Fields<'_>) -> Option<Slo> {
        let errors_before = self.errors();
        let fields = self.fields(node, "slo", keys::SLO)?;
        let target = self.require(&fields, "target").and_then(|n| self.slo_target(n));
        let window = match fields.get("window") {
            Some(n) => self.slo_window(n),
            None => Some(Slo::DEFAULT_WINDOW),
        };
        let threshold = match fields.get("threshold") {
            Some(n) if indicator == Some("latency") => self.slo_threshold(n),
            _ => None,
        };
        let good = match indicator {
            Some("latency") => match (threshold, fields.get("threshold")) {
                (Some(seconds), _) => Some(GoodEvents::DurationAtMost { seconds }),
                (None, Some(_)) => None,
                (None, None) => {
                    if !fields.suggested.contains(&"threshold") {
                        self.error_hint(
                            node,
                            "a latency SLO needs `threshold`: the duration a good span stays within",
                            "e.g. slo: { target: 99.9%, window: 30d, threshold: 400ms }",
                        );
                    }
                    None
                }
            },
            Some(other) => {
                if let Some(k) = fields.key_node("threshold") {
                    self.error_hint(
                        k,
                        format!("`threshold` applies only to latency SLOs, not {other}"),
                        "remove it: the indicator itself says which events are good",
                    );
                }
                self.slo_good_events(key, other, objective)
            }
            None => None,
        };
        if let (Some(window), Some(_)) = (window, &good) {
            self.warn_unfit_alerts(fields.get("window").unwrap_or(key), window);
        }
        if self.errors() > errors_before {
            return None;
        }
        let window = window?;
        Some(Slo {
            target: target?,
            window,
            good: good?,
            alerts: WORKBOOK_BURN_ALERTS.iter().copied().filter(|a| a.long_window <= window).collect(),
            location: self.loc(node),
        })
    }

    /// Which events are good for an indicator other than latency, or an error saying why
    /// the indicator cannot have an SLO.
    fn slo_good_events(&mut self, key: &Node, indicator: &str, objective: &Fields<'_>) -> Option<GoodEvents> {
        const WHERE: &str = "SLO targets go on latency (with threshold), error_rate and metric ratio objectives";
        match indicator {
            "error_rate" => Some(GoodEvents::NotError),
            "metric" => {
                let ratio = objective.get("metric").and_then(|m| match &m.kind {
                    Kind::Map(entries) => entries.iter().find(|(k, _)| k.text() == Some("ratio")).map(|(_, v)| v),
                    _ => None,
                });
                let gauges = ratio.is_some_and(|r| match &r.kind {
                    Kind::Map(entries) => entries
                        .iter()
                        .any(|(k, v)| k.text() == Some("counter") && v.scalar() == Some(Scalar::Bool(false))),
                    _ => false,
                });
                match (ratio, gauges) {
                    (Some(_), false) => Some(GoodEvents::Ratio),
                    (Some(_), true) => {
                        self.error_hint(
                            key,
                            "an SLO needs good and total events, but this ratio averages gauges (counter: false)",
                            "give the target on a ratio of counters, whose increases count the events",
                        );
                        None
                    }
                    (None, _) => {
                        self.error_hint(
                            key,
                            "an SLO needs good and total events, but an aggregated metric has none",
                            "use metric: { ratio: { good: ..., total: ... } } over counters",
                        );
                        None
                    }
                }
            }
            "throughput" => {
                self.error_hint(key, "throughput has no good or bad events, so it cannot have an SLO target", WHERE);
                None
            }
            other => {
                self.error_hint(
                    key,
                    format!("{other} has no good or bad events, so it cannot have an SLO target"),
                    WHERE,
                );
                None
            }
        }
    }

    /// `99.9%` or `0.999` (also quoted) → 0.999; strictly between 0 and 1.
    fn slo_target(&mut self, node: &Node) -> Option<f64> {
        const HINT: &str = "a target lies strictly between 0% and 100%, e.g. 99.9% or 0.999";
        let text = node.text().filter(|_| !node.is_null()).map(str::trim).unwrap_or_default();
        let (value, percent) = match text.strip_suffix('%') {
            // `99.9e-2` reads as the double nearest 0.999, where 99.9 / 100 would not.
            Some(p) if matches!(node.scalar(), Some(Scalar::Str(_))) => {
                (number(p.trim()).and_then(|_| number(&format!("{}e-2", p.trim()))), true)
            }
            _ => match node.scalar() {
                #[allow(clippy::cast_precision_loss)]
                Some(Scalar::Int(n)) => (Some(n as f64), false),
                Some(Scalar::Float(f)) => (Some(f).filter(|f| f.is_finite()), false),
                // A quoted fraction ("0.999") is text, as the JSON Schema sees it too.
                _ => (None, false),
            },
        };
        match value {
            Some(v) if v > 0.0 && v < 1.0 => Some(v),
            Some(1.0) => {
                self.error_hint(node, format!("SLO target {text} leaves no error budget"), HINT);
                None
            }
            Some(v) if !percent && v > 1.0 && v < 100.0 => {
                self.error_hint(
                    node,
                    format!("SLO target {text} is out of range: a fraction lies strictly between 0 and 1"),
                    format!("write {text}% for a percentage"),
                );
                None
            }
            Some(_) => {
                self.error_hint(node, format!("SLO target {text} is out of range"), HINT);
                None
            }
            None => {
                let hint = if number(text).is_some() {
                    format!("write the fraction without quotes ({text}) or as a percentage")
                } else {
                    HINT.to_string()
                };
                self.error_hint(
                    node,
                    format!(
                        "`target` must be a percentage such as 99.9% or a fraction such as 0.999, got {}",
                        node.describe()
                    ),
                    hint,
                );
                None
            }
        }
    }

    /// A compliance window between [`Slo::MIN_WINDOW`] and [`Slo::MAX_WINDOW`].
    fn slo_window(&mut self, node: &Node) -> Option<std::time::Duration> {
        const HINT: &str = "SLO windows are usually 28d or 30d; from 1h to 400d";
        let parsed =
            node.text().filter(|_| matches!(node.scalar(), Some(Scalar::Str(_)))).map(str::parse::<HumanDuration>);
        match parsed {
            Some(Ok(HumanDuration(d))) if d < Slo::MIN_WINDOW => {
                self.error_hint(
                    node,
                    format!("SLO window {} is too short: at least 1h", HumanDuration(d)),
                    "the shortest burn-rate alert looks at the last hour",
                );
                None
            }
            Some(Ok(HumanDuration(d))) if d > Slo::MAX_WINDOW => {
                self.error_hint(node, format!("SLO window {} is too long: at most 400d", HumanDuration(d)), HINT);
                None
            }
            Some(Ok(HumanDuration(d))) => Some(d),
            Some(Err(e)) => {
                let hint = if node.text().is_some_and(|t| t.ends_with(['M', 'Q', 'Y'])) {
                    "months, quarters and years differ in length: write the window in days, e.g. 30d"
                } else {
                    HINT
                };
                self.error_hint(node, format!("window: {e}"), hint);
                None
            }
            None => {
                self.error_hint(
                    node,
                    format!("`window` must be a duration such as 30d, got {}", node.describe()),
                    HINT,
                );
                None
            }
        }
    }

    /// A latency threshold in seconds, above 0; warns when it is not a bound of the default
    /// span-metric buckets, where good spans can only be estimated.
    fn slo_threshold(&mut self, node: &Node) -> Option<f64> {
        let text = node.text().filter(|_| matches!(node.scalar(), Some(Scalar::Str(_)))).map(str::trim);
        match text.and_then(duration_seconds) {
            Some(seconds) if seconds > 0.0 => {
                let bound = |b: &f64| (b - seconds).abs() <= 1e-9 * b;
                if !DEFAULT_SPAN_METRIC_BUCKETS.iter().any(bound) {
                    let below = DEFAULT_SPAN_METRIC_BUCKETS.iter().rev().find(|b| **b < seconds);
                    let above = DEFAULT_SPAN_METRIC_BUCKETS.iter().find(|b| **b > seconds);
                    let (message, hint) = match (below, above) {
                        (below, Some(above)) => (
                            format!(
                                "threshold {} is not a bound of the default span-metric buckets: good spans are interpolated between {} and {}",
                                text.unwrap_or_default(),
                                seconds_text(below.copied().unwrap_or(0.0)),
                                seconds_text(*above),
                            ),
                            format!(
                                "use a bound ({} or {}) or add {} to the collector's span-metric buckets",
                                seconds_text(below.copied().unwrap_or(0.0)),
                                seconds_text(*above),
                                text.unwrap_or_default()
                            ),
                        ),
                        (_, None) => (
                            format!(
                                "threshold {} is above the default span-metric buckets (the last is 15s): good spans are undercounted as those within 15s",
                                text.unwrap_or_default()
                            ),
                            format!("add {} to the collector's span-metric buckets", text.unwrap_or_default()),
                        ),
                    };
                    self.diags.push(Diagnostic::warning(self.loc(node), message).with_hint(hint));
                }
                Some(seconds)
            }
            Some(_) => {
                self.error_hint(node, "SLO threshold must be above 0", "e.g. threshold: 400ms");
                None
            }
            None => {
                self.error_hint(
                    node,
                    format!("`threshold` must be a duration such as 400ms or 1.5s, got {}", node.describe()),
                    "a span is good when its duration is at most the threshold",
                );
                None
            }
        }
    }

    /// Warns about the burn-rate alerts whose long window does not fit in the compliance
    /// window: they are not evaluated.
    fn warn_unfit_alerts(&mut self, node: &Node, window: std::time::Duration) {
        let unfit: Vec<String> = WORKBOOK_BURN_ALERTS
            .iter()
            .filter(|a| a.long_window > window)
            .map(|a| format!("{}/{} {}", HumanDuration(a.long_window), HumanDuration(a.short_window), a.severity))
            .collect();
        if unfit.is_empty() {
            return;
        }
        let longest = WORKBOOK_BURN_ALERTS.iter().map(|a| a.long_window).max().unwrap_or_default();
        self.diags.push(
            Diagnostic::warning(
                self.loc(node),
                format!(
                    "the {} burn-rate alert{} longer than the {} window and {} not evaluated",
                    unfit.join(" and "),
                    if unfit.len() == 1 { " is" } else { "s are" },
                    HumanDuration(window),
                    if unfit.len() == 1 { "is" } else { "are" },
                ),
            )
            .with_hint(format!("a window of at least {} evaluates all of them", HumanDuration(longest))),
        );
    }

    fn warn_looser_than_fail(&mut self, fail: &[Criterion], warn: &[Criterion]) {
        for w in warn {
            for f in fail {
                let comparable = w.op.is_upper() == f.op.is_upper();
                let looser = match (w.bound, f.bound) {
                    (Bound::Absolute(wv), Bound::Absolute(fv)) | (Bound::Relative(wv), Bound::Relative(fv)) => {
                        if w.op.is_upper() { wv > fv } else { wv < fv }
                    }
                    _ => false,
                };
                if comparable && looser {
                    self.diags.push(
                        Diagnostic::warning(
                            w.location.clone(),
                            format!(
                                "warn limit {:?} is looser than fail limit {:?}: it can never warn",
                                w.text, f.text
                            ),
                        )
                        .with_hint("a warn limit is the stricter one, e.g. warn: \"<= 380ms\" with fail: \"<= 420ms\""),
                    );
                }
            }
        }
    }

    fn criteria(&mut self, node: &Node, what: &str, unit: Unit, indicator: &str) -> Vec<Criterion> {
        let items: Vec<&Node> = match &node.kind {
            Kind::Scalar { .. } if !node.is_null() => vec![node],
            Kind::Seq(items) if items.is_empty() => {
                self.error_hint(
                    node,
                    format!("`{what}` is an empty list"),
                    format!("give at least one criterion or remove `{what}`"),
                );
                return Vec::new();
            }
            Kind::Seq(items) if !items.is_empty() => items.iter().collect(),
            _ => {
                self.error_hint(
                    node,
                    format!("`{what}` must be a criterion or a list of criteria, got {}", node.describe()),
                    format!("e.g. {what}: \"<= 420ms\" or {what}: [\"<= 420ms\", \"<= +10%\"]"),
                );
                return Vec::new();
            }
        };
        let mut criteria = Vec::new();
        for item in items {
            let Some(text) = item.text().filter(|_| !item.is_null()) else {
                self.error(item, format!("a criterion must be text such as \"<= 420ms\", got {}", item.describe()));
                continue;
            };
            match parse_criterion(text, unit, indicator) {
                Ok((op, bound)) => {
                    criteria.push(Criterion { op, bound, text: text.trim().to_string(), location: self.loc(item) })
                }
                Err(error) => {
                    let diagnostic = Diagnostic::error(self.loc(item), error.to_string());
                    self.diags.push(match error.hint() {
                        Some(hint) => diagnostic.with_hint(hint),
                        None => diagnostic,
                    });
                }
            }
        }
        criteria
    }

    fn indicator(&mut self, key: &str, node: &Node) -> Option<Indicator> {
        match key {
            "latency" => {
                let fields = self.fields(node, "latency", keys::LATENCY)?;
                let percentile = self.require(&fields, "percentile").and_then(|n| self.percentile(n, "percentile"));
                let selector = self.span_selector(&fields);
                Some(Indicator::Latency { percentile: percentile?, selector: selector? })
            }
            "error_rate" | "throughput" => {
                let selector = if node.is_null() {
                    Some(SpanSelector::default())
                } else {
                    let what = if key == "error_rate" { "error_rate" } else { "throughput" };
                    let fields = self.fields(node, what, keys::SPAN_SELECTOR)?;
                    self.span_selector(&fields)
                }?;
                Some(if key == "error_rate" {
                    Indicator::ErrorRate { selector }
                } else {
                    Indicator::Throughput { selector }
                })
            }
            "metric" => self.metric(node),
            "cpu_regression" => self.cpu_regression(node),
            "goroutine_leak" => self.goroutine_leak(node),
            _ => None,
        }
    }

    fn span_selector(&mut self, fields: &Fields<'_>) -> Option<SpanSelector> {
        let errors_before = self.errors();
        let mut selector = SpanSelector::default();
        if let Some(n) = fields.get("route") {
            selector.route = self.text(n, "route").map(|r| (r, self.loc(n)));
        }
        if let Some(n) = fields.get("span_name") {
            selector.span_name = self.text(n, "span_name").map(|s| (s, self.loc(n)));
        }
        if let (Some(_), Some(key)) = (fields.get("route"), fields.key_node("span_name")) {
            self.error_hint(key, "`route` and `span_name` exclude each other", "select spans by one of them");
        }
        (self.errors() == errors_before).then_some(selector)
    }

    /// `p95` → 95.0; the number must lie strictly between 0 and 100.
    fn percentile(&mut self, node: &Node, what: &str) -> Option<f64> {
        let text = node.text().filter(|_| matches!(node.scalar(), Some(Scalar::Str(_))));
        let Some(digits) = text.and_then(|t| t.strip_prefix('p')) else {
            let hint = match node.scalar() {
                Some(Scalar::Int(_) | Scalar::Float(_)) => format!("write p{}", node.text().unwrap_or_default()),
                _ => "write p and a number, e.g. p95 or p99.9".to_string(),
            };
            self.error_hint(node, format!("`{what}` must be written like p95, got {}", node.describe()), hint);
            return None;
        };
        let value = digits
            .parse::<f64>()
            .ok()
            .filter(|_| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
        match value {
            Some(p) if p > 0.0 && p < 100.0 => Some(p),
            Some(_) => {
                self.error_hint(
                    node,
                    format!("percentile {} is out of range", text.unwrap_or_default()),
                    "use p50 .. p99.9: a number strictly between 0 and 100 after the p",
                );
                None
            }
            None => {
                self.error_hint(
                    node,
                    format!("`{what}` must be p and a number, got {}", node.describe()),
                    "e.g. p95 or p99.9",
                );
                None
            }
        }
    }

    fn matchers(&mut self, node: &Node) -> Option<Vec<(String, String)>> {
        let Kind::Map(entries) = &node.kind else {
            self.error_hint(
                node,
                format!("`matchers` must be a mapping of label to value, got {}", node.describe()),
                "e.g. matchers: { queue: orders }",
            );
            return None;
        };
        let errors_before = self.errors();
        let mut matchers: Vec<(String, String)> = Vec::new();
        for (key, value) in entries {
            let Some(label) = self.text(key, "matchers") else { continue };
            let Some(value) = self.text(value, &label) else { continue };
            if matchers.iter().any(|(l, _)| *l == label) {
                self.error(key, format!("duplicate key `{label}` in matchers"));
                continue;
            }
            matchers.push((label, value));
        }
        (self.errors() == errors_before).then_some(matchers)
    }

    fn metric(&mut self, node: &Node) -> Option<Indicator> {
        let fields = self.fields(node, "metric", keys::METRIC)?;
        if let Some(ratio) = fields.get("ratio") {
            for key in ["name", "matchers", "aggregation"] {
                if let Some(k) = fields.key_node(key) {
                    self.error_hint(
                        k,
                        format!("`{key}` does not apply to a ratio metric"),
                        "give the metrics inside ratio: good (or bad) and total",
                    );
                }
            }
            return self.ratio(ratio);
        }
        let name = self.require(&fields, "name").and_then(|n| self.text(n, "name"));
        let matchers = match fields.get("matchers") {
            Some(n) => self.matchers(n),
            None => Some(Vec::new()),
        };
        let aggregation = match fields.get("aggregation") {
            Some(n) => self.aggregation(n),
            None => {
                self.error_hint(
                    fields.map,
                    "missing required key `aggregation` in metric",
                    "one of avg, min, max, sum, last, rate, p50 .. p99.9",
                );
                None
            }
        };
        Some(Indicator::Metric { name: name?, matchers: matchers?, aggregation: aggregation? })
    }

    fn aggregation(&mut self, node: &Node) -> Option<Aggregation> {
        const NAMED: [(&str, Aggregation); 6] = [
            ("avg", Aggregation::Avg),
            ("min", Aggregation::Min),
            ("max", Aggregation::Max),
            ("sum", Aggregation::Sum),
            ("last", Aggregation::Last),
            ("rate", Aggregation::Rate),
        ];
        if let Some(text) = node.text()
            && let Some((_, aggregation)) = NAMED.iter().find(|(name, _)| *name == text)
        {
            return Some(*aggregation);
        }
        if node.text().is_some_and(|t| t.starts_with('p')) {
            return self.percentile(node, "aggregation").map(Aggregation::Percentile);
        }
        let names: Vec<&str> = NAMED.iter().map(|(n, _)| *n).collect();
        let message = format!(
            "`aggregation` must be one of avg, min, max, sum, last, rate or p50 .. p99.9, got {}",
            node.describe()
        );
        match node.text().and_then(|t| did_you_mean(t, &names)) {
            Some(close) => self.error_hint(node, message, format!("did you mean `{close}`?")),
            None => self.error(node, message),
        }
        None
    }

    fn ratio(&mut self, node: &Node) -> Option<Indicator> {
        let fields = self.fields(node, "ratio", keys::RATIO)?;
        let (numerator, counts) = match (fields.get("good"), fields.get("bad")) {
            (Some(good), None) => (self.metric_selector(good), RatioOf::Good),
            (None, Some(bad)) => (self.metric_selector(bad), RatioOf::Bad),
            (Some(_), Some(_)) => {
                if let Some(key) = fields.key_node("bad") {
                    self.error_hint(key, "`good` and `bad` exclude each other", "give one numerator: good or bad");
                }
                (None, RatioOf::Good)
            }
            (None, None) => {
                self.error_hint(
                    node,
                    "ratio needs `good` or `bad`",
                    "e.g. good: { name: http_requests_total, matchers: { code: \"200\" } }",
                );
                (None, RatioOf::Good)
            }
        };
        let total = self.require(&fields, "total").and_then(|n| self.metric_selector(n));
        let counter = fields.get("counter").and_then(|n| self.boolean(n, "counter")).unwrap_or(true);
        Some(Indicator::MetricRatio { numerator: numerator?, counts, total: total?, counter })
    }

    fn metric_selector(&mut self, node: &Node) -> Option<MetricSelector> {
        let fields = self.fields(node, "a metric selector", keys::METRIC_SELECTOR)?;
        let name = self.require(&fields, "name").and_then(|n| self.text(n, "name"));
        let matchers = match fields.get("matchers") {
            Some(n) => self.matchers(n),
            None => Some(Vec::new()),
        };
        Some(MetricSelector { name: name?, matchers: matchers? })
    }

    fn cpu_regression(&mut self, node: &Node) -> Option<Indicator> {
        let errors_before = self.errors();
        let mut profile_type = DEFAULT_CPU_PROFILE_TYPE.to_string();
        let mut min_change_pp = 1.0;
        let mut confidence = 0.95;
        let mut share = Share::Flat;
        let mut normalize = CpuNormalize::Auto;
        let mut work = None;
        if !node.is_null() {
            let fields = self.fields(node, "cpu_regression", keys::CPU_REGRESSION)?;
            if let Some(t) = fields.get("profile_type").and_then(|n| self.text(n, "profile_type")) {
                profile_type = t;
            }
            if let Some(n) = fields.get("min_change")
                && let Some(v) = self.number(n, "min_change")
            {
                if v > 0.0 && v <= 100.0 {
                    min_change_pp = v;
                } else {
                    self.error_hint(
                        n,
                        format!("min_change {v} is out of range"),
                        "it is in percentage points of the profile, above 0 and at most 100 (e.g. 2)",
                    );
                }
            }
            if let Some(n) = fields.get("confidence")
                && let Some(v) = self.number(n, "confidence")
            {
                if v > 0.0 && v < 1.0 {
                    confidence = v;
                } else {
                    self.error_hint(
                        n,
                        format!("confidence {v} is out of range"),
                        "use a number strictly between 0 and 1, e.g. 0.95",
                    );
                }
            }
            if let Some(n) = fields.get("share") {
                share = match self.keyword(n, "share", &["self", "total"]) {
                    Some("total") => Share::Cumulative,
                    _ => Share::Flat,
                };
            }
            if let Some(n) = fields.get("normalize") {
                normalize = match self.keyword(n, "normalize", &["auto", "share", "rate", "per_request"]) {
                    Some("share") => CpuNormalize::Share,
                    Some("rate") => CpuNormalize::Rate,
                    Some("per_request") => CpuNormalize::PerRequest,
                    _ => CpuNormalize::Auto,
                };
            }
            if let Some(n) = fields.get("work") {
                work = self.metric_selector(n);
                if work.is_some() && normalize == CpuNormalize::Share {
                    self.error_hint(
                        n,
                        "work is set but normalize is share, which does not use it".to_string(),
                        "remove `work`, or use normalize: per_request (or auto)",
                    );
                }
            }
        }
        (self.errors() == errors_before).then_some(Indicator::CpuRegression {
            profile_type,
            min_change_pp,
            confidence,
            share,
            normalize,
            work,
        })
    }

    fn goroutine_leak(&mut self, node: &Node) -> Option<Indicator> {
        let errors_before = self.errors();
        let mut max_growth_per_minute = 1.0;
        let mut min_duration = std::time::Duration::from_secs(120);
        if !node.is_null() {
            let fields = self.fields(node, "goroutine_leak", keys::GOROUTINE_LEAK)?;
            if let Some(n) = fields.get("max_growth_per_minute")
                && let Some(v) = self.number(n, "max_growth_per_minute")
            {
                if v >= 0.0 {
                    max_growth_per_minute = v;
                } else {
                    self.error(n, format!("max_growth_per_minute must not be negative, got {v}"));
                }
            }
            if let Some(n) = fields.get("min_duration") {
                match n.text().filter(|_| !n.is_null()).map(str::parse::<HumanDuration>) {
                    Some(Ok(HumanDuration(d))) => min_duration = d,
                    Some(Err(e)) => self.error_hint(n, format!("min_duration: {e}"), "e.g. 2m or 1h30m"),
                    None => self.error_hint(
                        n,
                        format!("`min_duration` must be a duration, got {}", n.describe()),
                        "e.g. 2m or 1h30m",
                    ),
                }
            }
        }
        (self.errors() == errors_before).then_some(Indicator::GoroutineLeak { max_growth_per_minute, min_duration })
    }

    /// The gate policy, and whether `baseline` was written (even wrongly: a bad baseline is
    /// reported once, not again at every relative limit).
    fn gate(&mut self, node: &Node) -> (GatePolicy, bool) {
        let mut gate = GatePolicy::default();
        let Some(fields) = self.fields(node, "gate", keys::GATE) else { return (gate, true) };
        let baseline_written = fields.get("baseline").is_some();
        if let Some(n) = fields.get("baseline") {
            gate.baseline = self.baseline(n);
        }
        if let Some(v) = fields.get("min_samples").and_then(|n| self.uint(n, "min_samples")) {
            gate.min_samples = v;
        }
        if let Some(n) = fields.get("consecutive_failures")
            && let Some(v) = self.uint(n, "consecutive_failures")
        {
            match u32::try_from(v) {
                Ok(v) if v >= 1 => gate.consecutive_failures = v,
                _ => self.error_hint(
                    n,
                    format!("consecutive_failures must be at least 1, got {v}"),
                    "1 blocks at the first failing build",
                ),
            }
        }
        if let Some(n) = fields.get("no_data") {
            gate.no_data = match self.keyword(n, "no_data", &["fail", "warn", "pass"]) {
                Some("warn") => NoData::Warn,
                Some("pass") => NoData::Pass,
                _ => NoData::Fail,
            };
        }
        if let Some(n) = fields.get("score") {
            gate.score = self.score(n);
        }
        (gate, baseline_written)
    }

    fn baseline(&mut self, node: &Node) -> Option<Baseline> {
        const FORMS: &str = "use last_passing, { version: \"1.4.2\" } or { previous: 3 }";
        if let Kind::Map(_) = node.kind {
            let fields = self.fields(node, "baseline", keys::BASELINE)?;
            return match (fields.get("version"), fields.get("previous")) {
                (Some(v), None) => self.text(v, "version").map(Baseline::Version),
                (None, Some(p)) => match self.uint(p, "previous").map(u32::try_from) {
                    Some(Ok(n)) if n >= 1 => Some(Baseline::Previous(n)),
                    Some(_) => {
                        self.error_hint(
                            p,
                            "`previous` must be at least 1",
                            "e.g. previous: 3 aggregates the last 3 builds",
                        );
                        None
                    }
                    None => None,
                },
                (Some(_), Some(_)) => {
                    if let Some(key) = fields.key_node("previous") {
                        self.error_hint(key, "`version` and `previous` exclude each other", FORMS);
                    }
                    None
                }
                (None, None) => {
                    if fields.suggested.is_empty() {
                        self.error_hint(node, "baseline needs `version` or `previous`", FORMS);
                    }
                    None
                }
            };
        }
        match node.text().filter(|_| !node.is_null()) {
            Some("last_passing") => Some(Baseline::LastPassing),
            Some(other) => {
                let hint = if did_you_mean(other, &["last_passing"]).is_some() {
                    "did you mean `last_passing`?".to_string()
                } else if other.bytes().any(|b| b.is_ascii_digit()) {
                    format!("to compare with a named build write baseline: {{ version: \"{other}\" }}")
                } else {
                    FORMS.to_string()
                };
                self.error_hint(node, format!("unknown baseline {other:?}"), hint);
                None
            }
            None => {
                self.error_hint(
                    node,
                    format!("`baseline` must be a keyword or a mapping, got {}", node.describe()),
                    FORMS,
                );
                None
            }
        }
    }

    fn score(&mut self, node: &Node) -> Option<ScoreThresholds> {
        let fields = self.fields(node, "score", keys::SCORE)?;
        let percent = |walker: &mut Self, key: &str| {
            let n = walker.require(&fields, key)?;
            let v = walker.number(n, key)?;
            if !(0.0..=100.0).contains(&v) {
                walker.error_hint(
                    n,
                    format!("score.{key} {v} is out of range"),
                    "scores are percentages of the total weight, 0 to 100",
                );
                return None;
            }
            Some(v)
        };
        let pass = percent(self, "pass");
        let warn = percent(self, "warn");
        let (pass, warn) = (pass?, warn?);
        if warn > pass {
            if let Some(n) = fields.get("warn") {
                self.error_hint(
                    n,
                    format!("score.warn ({warn}) is above score.pass ({pass})"),
                    "warn is the lower threshold, e.g. pass: 90, warn: 75",
                );
            }
            return None;
        }
        Some(ScoreThresholds { pass, warn })
    }
}

/// `0.4` → `400ms`, `1.4` → `1.4s`: a bucket bound as a person writes it.
fn seconds_text(seconds: f64) -> String {
    if seconds < 1.0 { format!("{}ms", (seconds * 1000.0).round()) } else { format!("{seconds}s") }
}
