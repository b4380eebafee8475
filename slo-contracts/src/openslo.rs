//! Import of OpenSLO v1 `SLO` documents (`apiVersion: openslo/v1`) into a contract, so teams
//! that already keep OpenSLO files can gate releases with them.
//!
//! OpenSLO describes error budgets over a time window; a release gate judges one candidate
//! run, and a contract objective's `slo` block keeps the budget over the window for the
//! analyzer's burn-rate alerts. The mapping keeps what means the same thing in both and
//! reports the rest as diagnostics naming the document and the field, never dropping
//! anything silently:
//!
//! - `ratioMetric` with `good` (or `bad`) and `total` → a `metric: { ratio: ... }` objective
//!   with `>= target` (or `<= 1 - target` for `bad`); `raw` with `rawType` → a `metric`
//!   objective averaging the precomputed ratio.
//! - `thresholdMetric` with an objective's `op`/`value`/`target` → a `metric` objective on the
//!   quantile of the samples that `target` implies (`lt 500` at target 0.99 means 99% of the
//!   samples are below 500: `aggregation: p99`, `fail: "< 500"`; for `gt`/`gte` the
//!   `(1 - target)` quantile must be above the value).
//! - Queries must be plain Prometheus selectors `name{label="value", ...}` (equality
//!   matchers only); anything else (functions, regex matchers, other query languages) is an
//!   error for that objective.
//! - `indicatorRef` is resolved against `kind: SLI` documents in the same input.
//! - `timeWindow` with an objective's `target` → the contract objective's `slo` block
//!   (`slo: { target, window }`), for ratio objectives over counters: only they count good
//!   and total events, which an error budget needs. Shorthands in minutes, hours, days and
//!   weeks carry over as written; `M`, `Q` and `Y` have no fixed length and are read as 30,
//!   90 and 365 days, with a warning; a calendar-aligned window becomes a rolling one, with a
//!   warning. A window the other objectives cannot use is a warning naming them.
//! - `Timeslices` budgeting, `alertPolicies` and documents of other kinds have no
//!   counterpart: each is a warning.
//!
//! SLOs of the same `spec.service` become one contract (one YAML document per service).

use crate::diagnostic::Diagnostic;
use crate::emit::{Entry, Out, write};
use crate::model::{MetricSelector, Slo};
use crate::yaml::{self, Kind, Node, Scalar};

/// Converts the OpenSLO v1 documents of one file into contract YAML (one document per
/// service, `---`-separated; empty when nothing could be converted), with a diagnostic for
/// everything that could not be expressed. Never panics.
pub fn import_openslo(file: &str, text: &str) -> (String, Vec<Diagnostic>) {
    let (documents, syntax_error) = yaml::load(file, text);
    let mut importer = Importer { file, diags: Vec::new(), services: Vec::new() };
    let roots: Vec<&Node> = documents.iter().filter_map(|d| d.root.as_ref()).filter(|r| !r.is_null()).collect();
    let slis: Vec<(&str, &Node)> = roots
        .iter()
        .filter(|r| text_at(r, &["kind"]) == Some("SLI"))
        .filter_map(|r| Some((text_at(r, &["metadata", "name"])?, *r)))
        .collect();
    for root in &roots {
        importer.document(root, &slis);
    }
    importer.diags.extend(syntax_error);
    crate::diagnostic::sort(&mut importer.diags);
    let mut out = String::new();
    for (i, (service, objectives)) in importer.services.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&format!("# Imported from {file} (OpenSLO v1) by slo-gate.\n"));
        let contract = Out::Map(vec![
            Entry::new("apiVersion", Out::Raw(crate::API_VERSION.to_string())),
            Entry::new("kind", Out::Raw("Contract".to_string())),
            Entry::new("service", Out::Str(service)),
            Entry::new("objectives", Out::Seq(objectives)),
        ]);
        write(&contract, 0, &mut out);
    }
    (out, importer.diags)
}

/// The node at `path` of nested mappings.
fn at<'n>(node: &'n Node, path: &[&str]) -> Option<&'n Node> {
    path.iter().try_fold(node, |node, key| match &node.kind {
        Kind::Map(entries) => entries.iter().find(|(k, _)| k.text() == Some(key)).map(|(_, v)| v),
        _ => None,
    })
}

fn text_at<'n>(node: &'n Node, path: &[&str]) -> Option<&'n str> {
    at(node, path).filter(|n| !n.is_null()).and_then(Node::text)
}

fn number(node: &Node) -> Option<f64> {
    match node.scalar() {
        #[allow(clippy::cast_precision_loss)]
        Some(Scalar::Int(n)) => Some(n as f64),
        Some(Scalar::Float(f)) if f.is_finite() => Some(f),
        _ => None,
    }
}

/// A number as a contract writes it: at most 10 decimals, no trailing zeros.
fn fmt_number(x: f64) -> String {
    let text = format!("{x:.10}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".to_string() } else { text.to_string() }
}

/// `Good experience` → `good-experience`.
fn slug(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            slug.extend(c.to_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_string()
}

/// Whether an objective's OpenSLO target can become a contract `slo.target`.
enum Budget {
    /// Yes: a ratio of event counters with a target strictly between 0 and 1.
    Target(f64),
    /// No, and why (for the warning).
    NoEvents(&'static str),
}

struct Importer<'f> {
    file: &'f str,
    diags: Vec<Diagnostic>,
    /// Contracts being built: service and its objectives, in order of first appearance.
    services: Vec<(String, Vec<Out>)>,
}

/// The document being converted, for messages: `SLO "search-slo"`.
struct Doc {
    label: String,
}

impl Importer<'_> {
    fn error(&mut self, doc: &Doc, node: &Node, field: &str, message: impl Into<String>) {
        let at = node.location(self.file);
        self.diags.push(Diagnostic::error(at, format!("{}: {field}: {}", doc.label, message.into())));
    }

    fn warning(&mut self, doc: &Doc, node: &Node, field: &str, message: impl Into<String>) {
        let at = node.location(self.file);
        self.diags.push(Diagnostic::warning(at, format!("{}: {field}: {}", doc.label, message.into())));
    }

    fn document(&mut self, root: &Node, slis: &[(&str, &Node)]) {
        let kind = text_at(root, &["kind"]).unwrap_or("?");
        let name = text_at(root, &["metadata", "name"]).unwrap_or("?");
        let doc = Doc { label: format!("{kind} {name:?}") };
        match text_at(root, &["apiVersion"]) {
            Some("openslo/v1") => {}
            Some(other) => {
                let node = at(root, &["apiVersion"]).unwrap_or(root);
                self.error(
                    &doc,
                    node,
                    "apiVersion",
                    format!("{other} is not supported; the importer reads openslo/v1"),
                );
                return;
            }
            None => {
                self.error(&doc, root, "apiVersion", "missing; the importer reads openslo/v1 documents");
                return;
            }
        }
        match kind {
            "SLO" => self.slo(root, &doc, slis),
            // Read when an SLO refers to them.
            "SLI" => {}
            other => {
                let node = at(root, &["kind"]).unwrap_or(root);
                self.warning(
                    &doc,
                    node,
                    "kind",
                    format!("{other} documents have no counterpart in a contract; not imported"),
                );
            }
        }
    }

    fn slo(&mut self, root: &Node, doc: &Doc, slis: &[(&str, &Node)]) {
        let Some(spec) = at(root, &["spec"]).filter(|s| matches!(s.kind, Kind::Map(_))) else {
            self.error(doc, root, "spec", "missing");
            return;
        };
        let Some(service) = text_at(spec, &["service"]) else {
            self.error(doc, spec, "spec.service", "missing; a contract needs the service name");
            return;
        };
        let slo_name = text_at(root, &["metadata", "name"]).unwrap_or("slo").to_string();
        let (indicator, indicator_field) = match (at(spec, &["indicator"]), text_at(spec, &["indicatorRef"])) {
            (Some(inline), _) => match at(inline, &["spec"]) {
                Some(spec) => (spec, "spec.indicator.spec".to_string()),
                None => {
                    self.error(doc, inline, "spec.indicator.spec", "missing");
                    return;
                }
            },
            (None, Some(reference)) => match slis.iter().find(|(name, _)| *name == reference) {
                Some((_, sli)) => match at(sli, &["spec"]) {
                    Some(spec) => (spec, format!("SLI {reference:?} spec")),
                    None => {
                        self.error(doc, sli, &format!("SLI {reference:?} spec"), "missing");
                        return;
                    }
                },
                None => {
                    let node = at(spec, &["indicatorRef"]).unwrap_or(spec);
                    self.error(
                        doc,
                        node,
                        "spec.indicatorRef",
                        format!("SLI {reference:?} is not in this input; put its kind: SLI document in the same file"),
                    );
                    return;
                }
            },
            (None, None) => {
                self.error(doc, spec, "spec.indicator", "missing (neither indicator nor indicatorRef)");
                return;
            }
        };
        let window = self.time_window(doc, spec);
        if let Some(method) = at(spec, &["budgetingMethod"])
            && let Some(text) = method.text().filter(|t| *t != "Occurrences" && !t.is_empty())
        {
            self.warning(
                doc,
                method,
                "spec.budgetingMethod",
                format!(
                    "{text} is evaluated as Occurrences: over all events of the candidate's run (and of an slo window), not per time slice"
                ),
            );
        }
        if let Some(policies) = at(spec, &["alertPolicies"]).filter(|n| !n.is_null())
            && !matches!(&policies.kind, Kind::Seq(items) if items.is_empty())
        {
            self.warning(
                doc,
                policies,
                "spec.alertPolicies",
                "not imported: objectives with an slo block get the SRE workbook's multi-window burn-rate alerts",
            );
        }
        let Some(Kind::Seq(objectives)) = at(spec, &["objectives"]).map(|n| &n.kind) else {
            self.error(doc, spec, "spec.objectives", "missing or not a list");
            return;
        };
        let slo_title = text_at(root, &["metadata", "displayName"]).map(str::to_string);
        // Objectives the window could not go with: a warning names them after the loop.
        let mut without_window = Vec::new();
        for (i, objective) in objectives.iter().enumerate() {
            let field = format!("spec.objectives[{i}]");
            let display = text_at(objective, &["displayName"]);
            let name = match (objectives.len(), display) {
                (1, _) => slug(&slo_name),
                (_, Some(display)) if !slug(display).is_empty() => format!("{}-{}", slug(&slo_name), slug(display)),
                _ => format!("{}-{}", slug(&slo_name), i + 1),
            };
            let description = match (&slo_title, display) {
                (Some(title), Some(display)) => Some(format!("{title}: {display}")),
                (Some(title), None) => Some(title.clone()),
                (None, Some(display)) => Some(display.to_string()),
                (None, None) => None,
            };
            let Some((converted, budget)) = self.objective(doc, objective, &field, indicator, &indicator_field) else {
                continue;
            };
            let mut entries = vec![Entry::new("name", Out::Str(name))];
            if let Some(description) = description {
                entries.push(Entry::new("description", Out::Str(description)));
            }
            entries.extend(converted);
            if let Some((window, _)) = &window {
                match budget {
                    Budget::Target(target) => entries.push(Entry::new(
                        "slo",
                        Out::Map(vec![
                            Entry::new("target", Out::Str(format!("{}%", fmt_number(target * 100.0)))),
                            Entry::new("window", Out::Str(window.clone())),
                        ]),
                    )),
                    Budget::NoEvents(why) => without_window.push(format!("{field} ({why})")),
                }
            }
            entries[0].comments.push(format!("from SLO {slo_name}, {field}"));
            self.add(service, entries);
        }
        if let (Some((_, node)), false) = (window, without_window.is_empty()) {
            self.warning(
                doc,
                node,
                "spec.timeWindow",
                format!(
                    "not used by {}: an error budget needs good and total events, which only a ratioMetric \
                     over counters (good or bad, and total) counts",
                    without_window.join(", ")
                ),
            );
        }
    }

    /// The SLO's `timeWindow` as a contract `slo.window` (`2w`, `30d`), with the node it was
    /// read from; `None`, with a warning saying why, when it has no fixed length in range.
    fn time_window<'n>(&mut self, doc: &Doc, spec: &'n Node) -> Option<(String, &'n Node)> {
        let node = at(spec, &["timeWindow"]).filter(|n| !n.is_null())?;
        let item = match &node.kind {
            Kind::Seq(items) => {
                if items.len() > 1 {
                    self.warning(
                        doc,
                        &items[1],
                        "spec.timeWindow",
                        format!("{} windows given; OpenSLO allows one and only the first is used", items.len()),
                    );
                }
                items.first()?
            }
            Kind::Map(_) => node,
            Kind::Scalar { .. } => {
                self.warning(doc, node, "spec.timeWindow", "not a list of windows; not imported");
                return None;
            }
        };
        let field = "spec.timeWindow[0].duration";
        let Some(duration) = at(item, &["duration"]) else {
            self.warning(doc, item, field, "missing; the window is not imported");
            return None;
        };
        let text = duration.text().unwrap_or_default().trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (count, unit) = text.split_at(digits);
        let Some(count) = count.parse::<u64>().ok().filter(|_| unit.chars().count() == 1) else {
            self.warning(
                doc,
                duration,
                field,
                format!("{text:?} is not a duration shorthand such as 28d or 4w; the window is not imported"),
            );
            return None;
        };
        let window = match unit {
            "m" | "h" | "d" | "w" => text.to_string(),
            "M" | "Q" | "Y" => {
                let days = match unit {
                    "M" => 30,
                    "Q" => 90,
                    _ => 365,
                };
                let window = format!("{}d", count.saturating_mul(days));
                self.warning(
                    doc,
                    duration,
                    field,
                    format!("{text} read as {window}: slo-gate's windows are rolling and of a fixed length"),
                );
                window
            }
            other => {
                self.warning(
                    doc,
                    duration,
                    field,
                    format!("unknown unit {other:?} in {text:?} (m, h, d, w, M, Q or Y); the window is not imported"),
                );
                return None;
            }
        };
        let rolling = at(item, &["isRolling"]).and_then(Node::scalar);
        if at(item, &["calendar"]).is_some() || rolling == Some(Scalar::Bool(false)) {
            self.warning(
                doc,
                item,
                "spec.timeWindow[0]",
                format!("calendar-aligned window imported as a rolling window of {window}"),
            );
        }
        match window.parse::<crate::HumanDuration>() {
            Ok(crate::HumanDuration(d)) if (Slo::MIN_WINDOW..=Slo::MAX_WINDOW).contains(&d) => Some((window, node)),
            _ => {
                self.warning(
                    doc,
                    duration,
                    field,
                    format!("{text} is outside the 1h to 400d an SLO window may span; the window is not imported"),
                );
                None
            }
        }
    }

    fn add(&mut self, service: &str, mut entries: Vec<Entry>) {
        let index = match self.services.iter().position(|(s, _)| s == service) {
            Some(index) => index,
            None => {
                self.services.push((service.to_string(), Vec::new()));
                self.services.len() - 1
            }
        };
        let objectives = &mut self.services[index].1;
        // Objective names must be unique within a contract.
        if let Some(Entry { value: Out::Str(name), .. }) = entries.first_mut() {
            let taken = |candidate: &str| {
                objectives.iter().any(|o| matches!(o, Out::Map(e) if matches!(e.first(), Some(Entry { value: Out::Str(n), .. }) if n == candidate)))
            };
            if taken(name) {
                let base = name.clone();
                let mut n = 2;
                while taken(&format!("{base}-{n}")) {
                    n += 1;
                }
                *name = format!("{base}-{n}");
            }
        }
        objectives.push(Out::Map(entries));
    }

    /// The entries (indicator and criteria) of one contract objective, and whether its target
    /// can be an error-budget target.
    fn objective(
        &mut self,
        doc: &Doc,
        objective: &Node,
        field: &str,
        indicator: &Node,
        indicator_field: &str,
    ) -> Option<(Vec<Entry>, Budget)> {
        let target = match (at(objective, &["target"]), at(objective, &["targetPercent"])) {
            (Some(t), None) => number(t).filter(|t| (0.0..=1.0).contains(t)).or_else(|| {
                self.error(
                    doc,
                    t,
                    &format!("{field}.target"),
                    format!("must be a number in [0, 1], got {}", t.describe()),
                );
                None
            })?,
            (None, Some(t)) => number(t).filter(|t| (0.0..=100.0).contains(t)).map(|t| t / 100.0).or_else(|| {
                self.error(
                    doc,
                    t,
                    &format!("{field}.targetPercent"),
                    format!("must be a number in [0, 100], got {}", t.describe()),
                );
                None
            })?,
            (Some(_), Some(t)) => {
                self.error(doc, t, &format!("{field}.targetPercent"), "target and targetPercent exclude each other");
                return None;
            }
            (None, None) => {
                self.error(doc, objective, &format!("{field}.target"), "missing (neither target nor targetPercent)");
                return None;
            }
        };
        if let Some(ratio) = at(indicator, &["ratioMetric"]) {
            let ratio_field = format!("{indicator_field}.ratioMetric");
            if let Some(op) = at(objective, &["op"]).or_else(|| at(objective, &["value"])) {
                self.warning(
                    doc,
                    op,
                    &format!("{field}.op"),
                    "op and value are not used with a ratioMetric; target is",
                );
            }
            let counts_events = at(ratio, &["raw"]).is_none()
                && at(ratio, &["counter"]).and_then(Node::scalar) != Some(Scalar::Bool(false));
            let budget = match (counts_events, target > 0.0 && target < 1.0) {
                (true, true) => Budget::Target(target),
                (false, _) => Budget::NoEvents("a raw ratio or gauges"),
                (true, false) => Budget::NoEvents("a target of 0 or 1"),
            };
            return self.ratio(doc, ratio, &ratio_field, target).map(|entries| (entries, budget));
        }
        if let Some(threshold) = at(indicator, &["thresholdMetric"]) {
            return self
                .threshold(doc, objective, field, threshold, &format!("{indicator_field}.thresholdMetric"), target)
                .map(|entries| (entries, Budget::NoEvents("thresholdMetric")));
        }
        self.error(doc, indicator, indicator_field, "neither ratioMetric nor thresholdMetric");
        None
    }

    fn ratio(&mut self, doc: &Doc, ratio: &Node, field: &str, target: f64) -> Option<Vec<Entry>> {
        if let Some(raw) = at(ratio, &["raw"]) {
            let selector = self.selector(doc, raw, &format!("{field}.raw"))?;
            let (op, limit) = match text_at(ratio, &["rawType"]) {
                Some("success") => (">=", target),
                Some("failure") => ("<=", 1.0 - target),
                _ => {
                    self.error(doc, ratio, &format!("{field}.rawType"), "must be success or failure");
                    return None;
                }
            };
            let mut metric = selector_entries(&selector);
            metric.push(Entry::new("aggregation", Out::Raw("avg".into())));
            return Some(vec![
                Entry::new("metric", Out::Map(metric)),
                Entry::new("fail", Out::Str(format!("{op} {}", fmt_number(limit)))),
            ]);
        }
        let (numerator_key, numerator) = match (at(ratio, &["good"]), at(ratio, &["bad"])) {
            (Some(good), None) => ("good", good),
            (None, Some(bad)) => ("bad", bad),
            _ => {
                self.error(doc, ratio, field, "needs exactly one of good and bad (with total), or raw");
                return None;
            }
        };
        let numerator_selector = self.selector(doc, numerator, &format!("{field}.{numerator_key}"));
        let total = match at(ratio, &["total"]) {
            Some(total) => self.selector(doc, total, &format!("{field}.total")),
            None => {
                self.error(doc, ratio, &format!("{field}.total"), "missing");
                None
            }
        };
        let (numerator_selector, total) = (numerator_selector?, total?);
        let criterion = if numerator_key == "good" {
            format!(">= {}%", fmt_number(target * 100.0))
        } else {
            format!("<= {}%", fmt_number((1.0 - target) * 100.0))
        };
        let mut ratio_out = vec![
            Entry::new(numerator_key, Out::Map(selector_entries(&numerator_selector))),
            Entry::new("total", Out::Map(selector_entries(&total))),
        ];
        if let Some(counter) = at(ratio, &["counter"]) {
            match counter.scalar() {
                Some(Scalar::Bool(false)) => ratio_out.push(Entry::new("counter", Out::Raw("false".into()))),
                Some(Scalar::Bool(true)) => {}
                _ => self.warning(doc, counter, &format!("{field}.counter"), "not a boolean; counters assumed"),
            }
        }
        Some(vec![
            Entry::new("metric", Out::Map(vec![Entry::new("ratio", Out::Map(ratio_out))])),
            Entry::new("fail", Out::Str(criterion)),
        ])
    }

    fn threshold(
        &mut self,
        doc: &Doc,
        objective: &Node,
        field: &str,
        threshold: &Node,
        threshold_field: &str,
        target: f64,
    ) -> Option<Vec<Entry>> {
        let selector = self.selector(doc, threshold, threshold_field);
        let op = match text_at(objective, &["op"]) {
            Some("lt") => Some("<"),
            Some("lte") => Some("<="),
            Some("gt") => Some(">"),
            Some("gte") => Some(">="),
            other => {
                let node = at(objective, &["op"]).unwrap_or(objective);
                let got = other.map_or("nothing".to_string(), |o| format!("{o:?}"));
                self.error(
                    doc,
                    node,
                    &format!("{field}.op"),
                    format!("must be lt, lte, gt or gte with a thresholdMetric, got {got}"),
                );
                None
            }
        };
        let value = match at(objective, &["value"]) {
            Some(v) => number(v).or_else(|| {
                self.error(doc, v, &format!("{field}.value"), format!("must be a number, got {}", v.describe()));
                None
            }),
            None => {
                self.error(
                    doc,
                    objective,
                    &format!("{field}.value"),
                    "missing; a thresholdMetric objective compares with it",
                );
                None
            }
        };
        let (selector, op, value) = (selector?, op?, value?);
        // `target` of the samples must satisfy `op value`: for a ceiling that is the target
        // quantile, for a floor the (1 - target) quantile.
        let quantile = if op.starts_with('<') { target * 100.0 } else { (1.0 - target) * 100.0 };
        let aggregation = if quantile >= 100.0 {
            "max".to_string()
        } else if quantile <= 0.0 {
            "min".to_string()
        } else {
            format!("p{}", fmt_number(quantile))
        };
        let mut metric = selector_entries(&selector);
        metric.push(Entry::new("aggregation", Out::Raw(aggregation)));
        Some(vec![
            Entry::new("metric", Out::Map(metric)),
            Entry::new("fail", Out::Str(format!("{op} {}", fmt_number(value)))),
        ])
    }

    /// The metric selector of a `{ metricSource: { spec: { query } } }` node.
    fn selector(&mut self, doc: &Doc, source: &Node, field: &str) -> Option<MetricSelector> {
        let spec = at(source, &["metricSource", "spec"]);
        let (query, query_field) = match spec {
            Some(spec) if spec.scalar().is_some() && !spec.is_null() => (spec, format!("{field}.metricSource.spec")),
            Some(spec) => match at(spec, &["query"]) {
                Some(query) => (query, format!("{field}.metricSource.spec.query")),
                None => {
                    self.error(
                        doc,
                        spec,
                        &format!("{field}.metricSource.spec.query"),
                        "missing; nothing to read the metric from",
                    );
                    return None;
                }
            },
            None => {
                self.error(
                    doc,
                    source,
                    &format!("{field}.metricSource.spec"),
                    "missing; nothing to read the metric from",
                );
                return None;
            }
        };
        let text = query.text().unwrap_or_default().trim();
        match parse_selector(text) {
            Ok(selector) => Some(selector),
            Err(why) => {
                let source_type =
                    text_at(source, &["metricSource", "type"]).map(|t| format!(" ({t})")).unwrap_or_default();
                self.error(
                    doc,
                    query,
                    &query_field,
                    format!("query{source_type} {text:?} is not a plain metric selector such as name{{label=\"value\"}}: {why}"),
                );
                None
            }
        }
    }
}

fn selector_entries(selector: &MetricSelector) -> Vec<Entry> {
    let mut entries = vec![Entry::new("name", Out::Str(selector.name.clone()))];
    if !selector.matchers.is_empty() {
        let matchers = selector.matchers.iter().map(|(k, v)| Entry::new(k, Out::Str(v.clone()))).collect();
        entries.push(Entry::new("matchers", Out::Map(matchers)));
    }
    entries
}

/// Parses a plain Prometheus selector `name{label="value", ...}` (equality matchers only;
/// `__name__` may give the name). The error says what is not plain about it.
pub fn parse_selector(text: &str) -> Result<MetricSelector, String> {
    let mut rest = text.trim();
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    let mut name = rest[..name_len].to_string();
    rest = rest[name_len..].trim_start();
    let mut matchers = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let label_len = rest
                .char_indices()
                .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())))
                .map_or(rest.len(), |(i, _)| i);
            if label_len == 0 {
                return Err("expected a label name".into());
            }
            let label = rest[..label_len].to_string();
            rest = rest[label_len..].trim_start();
            for op in ["!=", "=~", "!~"] {
                if rest.starts_with(op) {
                    return Err(format!("matcher {label}{op} is not an equality; only label=\"value\" is supported"));
                }
            }
            rest = rest.strip_prefix('=').ok_or("expected = after a label name")?.trim_start();
            let (value, after) = quoted(rest)?;
            rest = after.trim_start();
            if label == "__name__" {
                name = value;
            } else {
                matchers.push((label, value));
            }
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    if !rest.trim().is_empty() {
        return Err(format!("unexpected {:?} (functions, ranges and operators are not supported)", rest.trim()));
    }
    if name.is_empty() {
        return Err("no metric name".into());
    }
    Ok(MetricSelector { name, matchers })
}

/// A quoted PromQL string at the start of `text`, and the text after it.
fn quoted(text: &str) -> Result<(String, &str), String> {
    let mut chars = text.char_indices();
    let quote = match chars.next() {
        Some((_, q @ ('"' | '\'' | '`'))) => q,
        _ => return Err("expected a quoted label value".into()),
    };
    let mut value = String::new();
    let mut escaped = false;
    for (i, c) in chars {
        if escaped {
            value.push(match c {
                'n' => '\n',
                't' => '\t',
                other => other,
            });
            escaped = false;
        } else if c == '\\' && quote != '`' {
            escaped = true;
        } else if c == quote {
            return Ok((value, &text[i + c.len_utf8()..]));
        } else {
            value.push(c);
        }
    }
    Err("unterminated label value".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_selectors() {
        let s = parse_selector(r#"http_requests_total{code="200", job='web',}"#).expect("plain");
        assert_eq!(s.name, "http_requests_total");
        assert_eq!(s.matchers, vec![("code".into(), "200".into()), ("job".into(), "web".into())]);
        assert_eq!(parse_selector(r#"{__name__="up"}"#).expect("plain").name, "up");
        assert_eq!(parse_selector("up").expect("plain").matchers, vec![]);
        assert!(parse_selector(r#"sum(rate(x{a="b"}[5m]))"#).is_err());
        assert!(parse_selector(r#"x{code=~"5.."}"#).unwrap_err().contains("not an equality"));
        assert!(parse_selector(r#"x{code="5"} / y"#).is_err());
        assert!(parse_selector("sum:trace.hits{*}.as_count()").is_err());
        assert!(parse_selector(r#"x{a="b"#).is_err());
    }

    #[test]
    fn numbers_and_slugs() {
        assert_eq!(fmt_number((1.0 - 0.995) * 100.0), "0.5");
        assert_eq!(fmt_number(0.99 * 100.0), "99");
        assert_eq!(fmt_number(500.0), "500");
        assert_eq!(slug("Good experience!"), "good-experience");
    }
}
