//! Context rules: which series get which settings, chosen by their labels.
//!
//! A nightly batch job's CPU peak is its normal, and only the people who run it know that. A
//! rule matches a series' labels as Prometheus selectors do (exact values or fully anchored
//! regular expressions; a missing label has the value `""`) and overrides any key of the
//! [`Config`]. Rules apply in order, so a later rule refines an earlier one.
//!
//! ```toml
//! [[rules]]
//! match = { job = "etl-batch" }
//! set = { exempt = [{ start = "01:00", end = "03:00" }] }
//!
//! [[rules]]
//! match_re = { route = "/admin/.*" }
//! set = { model = "flat", direction = "above" }
//! ```
//!
//! Deserialising validates: a bad regular expression or an override that would make an invalid
//! configuration is an error naming `rules[i]` and the key.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::config::{Config, ConfigError, Direction, ExemptWindow, Model};

/// Label matchers → configuration overrides. Build it by deserialising (TOML or JSON) or with
/// [`ContextRules::new`]; both validate.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(try_from = "RulesWire", into = "RulesWire")]
pub struct ContextRules {
    rules: Vec<CompiledRule>,
}

/// One rule as written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextRule {
    /// Labels that must have exactly these values.
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub match_exact: BTreeMap<String, String>,
    /// Labels whose values must match these regular expressions (whole value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_re: BTreeMap<String, String>,
    /// What the rule changes.
    #[serde(default)]
    pub set: ConfigOverride,
}

/// Any key of [`Config`]; the ones given replace the base configuration's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Model>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_deviation: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_relative_deviation: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mixture_sigmas: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spike_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistence: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_points: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refractory_points: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refractory_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebaseline_points: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebaseline_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_points: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_intervals: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<bool>,
    /// Replaces the base configuration's exempt windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exempt: Option<Vec<ExemptWindow>>,
}

impl ConfigOverride {
    /// `base` with this override's keys replaced.
    pub fn apply(&self, base: &Config) -> Config {
        let mut c = base.clone();
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field {
                    c.$field = v.clone();
                }
            )*};
        }
        set!(
            model,
            direction,
            history_days,
            band,
            min_deviation,
            min_relative_deviation,
            mixture_sigmas,
            spike_score,
            persistence,
            hysteresis,
            close_points,
            refractory_points,
            refractory_ms,
            rebaseline_points,
            rebaseline_ms,
            warmup_points,
            gap_intervals,
            counter,
            exempt
        );
        c
    }
}

#[derive(Clone, Debug)]
struct CompiledRule {
    written: ContextRule,
    regexes: Vec<(String, Regex)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesWire {
    #[serde(default)]
    rules: Vec<ContextRule>,
}

impl TryFrom<RulesWire> for ContextRules {
    type Error = ConfigError;
    fn try_from(wire: RulesWire) -> Result<Self, ConfigError> {
        ContextRules::new(wire.rules)
    }
}

impl From<ContextRules> for RulesWire {
    fn from(rules: ContextRules) -> RulesWire {
        RulesWire { rules: rules.rules.into_iter().map(|r| r.written).collect() }
    }
}

impl ContextRules {
    /// Compiles and validates `rules`: each regular expression compiles, and each override
    /// applied to the default configuration gives a valid one.
    pub fn new(rules: Vec<ContextRule>) -> Result<ContextRules, ConfigError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, rule) in rules.into_iter().enumerate() {
            let mut regexes = Vec::new();
            for (label, pattern) in &rule.match_re {
                // Anchored as Prometheus anchors label matchers: the whole value must match.
                match Regex::new(&format!("^(?:{pattern})$")) {
                    Ok(re) => regexes.push((label.clone(), re)),
                    Err(e) => {
                        return Err(ConfigError::invalid(
                            format!("rules[{i}].match_re.{label}"),
                            format!("{pattern:?} is not a regular expression: {e}"),
                        ));
                    }
                }
            }
            rule.set.apply(&Config::default()).validate().map_err(|e| e.under(&format!("rules[{i}].set")))?;
            compiled.push(CompiledRule { written: rule, regexes });
        }
        Ok(ContextRules { rules: compiled })
    }

    /// The rules as written.
    pub fn rules(&self) -> impl Iterator<Item = &ContextRule> {
        self.rules.iter().map(|r| &r.written)
    }

    /// `base` with the overrides of every rule that matches `labels`, in rule order.
    pub fn config_for(&self, base: &Config, labels: &[(&str, &str)]) -> Config {
        let value = |name: &str| labels.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| *v);
        let mut config = base.clone();
        for rule in &self.rules {
            let exact = rule.written.match_exact.iter().all(|(n, v)| value(n) == v);
            if exact && rule.regexes.iter().all(|(n, re)| re.is_match(value(n))) {
                config = rule.written.set.apply(&config);
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Result<ContextRules, String> {
        serde_json::from_str::<ContextRules>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn matching_rules_apply_in_order() {
        let r = rules(
            r#"{"rules": [
                {"match": {"job": "etl-batch"}, "set": {"model": "daily", "exempt": [{"start": "01:00", "end": "03:00"}]}},
                {"match_re": {"instance": "db-[0-9]+"}, "set": {"direction": "above"}},
                {"match": {"job": "etl-batch", "env": ""}, "set": {"band": 6}}
            ]}"#,
        )
        .unwrap();
        let base = Config::default();
        let etl = r.config_for(&base, &[("job", "etl-batch"), ("instance", "db-12")]);
        assert_eq!(etl.model, Model::Daily);
        assert_eq!(etl.direction, Direction::Above);
        assert_eq!(etl.band, 6.0, "a missing label matches the empty value");
        assert_eq!(etl.exempt.len(), 1);
        let other = r.config_for(&base, &[("job", "api"), ("instance", "db-12x")]);
        assert_eq!(other, base, "regexes are anchored");
        let with_env = r.config_for(&base, &[("job", "etl-batch"), ("env", "prod")]);
        assert_eq!(with_env.band, base.band);
    }

    #[test]
    fn bad_rules_name_the_key() {
        assert!(rules(r#"{"rules": [{"match_re": {"job": "etl-("}}]}"#).unwrap_err().contains("rules[0].match_re.job"));
        let e = rules(r#"{"rules": [{}, {"set": {"band": -1}}]}"#).unwrap_err();
        assert!(e.contains("rules[1].set.band: -1 is not a positive number"), "{e}");
        let e = rules(r#"{"rules": [{"set": {"bnad": 1}}]}"#).unwrap_err();
        assert!(e.contains("unknown field `bnad`"), "{e}");
        let e = rules(r#"{"rules": [{"set": {"exempt": [{"start": "25:00", "end": "01:00"}]}}]}"#).unwrap_err();
        assert!(e.contains("rules[0].set.exempt[0].start"), "{e}");
    }

    /// Every key of `Config` can be overridden: a configuration written out in full reads back
    /// as an override (deny_unknown_fields would refuse a key the override lacks) and applying
    /// it to anything gives the configuration again.
    #[test]
    fn overrides_cover_every_key() {
        let full = Config {
            model: Model::Mixture,
            direction: Direction::Below,
            history_days: 21,
            band: 5.5,
            min_deviation: 2.0,
            min_relative_deviation: 0.1,
            mixture_sigmas: 3.5,
            spike_score: 2.5,
            persistence: 3,
            hysteresis: 0.5,
            close_points: 9,
            refractory_points: 7,
            refractory_ms: 60_000,
            rebaseline_points: 30,
            rebaseline_ms: 3_600_000,
            warmup_points: 20,
            gap_intervals: 30.0,
            counter: true,
            exempt: vec![ExemptWindow { start: "01:00".into(), end: "02:00".into(), days: vec![] }],
        };
        let json = serde_json::to_string(&full).unwrap();
        let o: ConfigOverride = serde_json::from_str(&json).unwrap();
        assert_eq!(o.apply(&Config::default()), full);
    }
}
