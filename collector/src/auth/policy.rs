//! `[[auth.spiffe]]` rules: which SPIFFE IDs may use which tenants, on which listeners.
//!
//! A pattern is matched segment by segment, never as a regular expression, so a rule reads as
//! what it admits: `spiffe://prod.example/ns/pay/*` admits every workload under `ns/pay` of the
//! trust domain `prod.example` and nothing of another trust domain, whatever its path.

use super::config::SpiffeRuleConfig;
use super::{Grant, Principal, PrincipalKind, Scopes, Tenants};
use crate::identity::SpiffeId;
use crate::telemetry::Listener;
use crate::tenant::Tenant;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: one segment.
    One,
    /// `*` last: one or more segments.
    Rest,
    /// `{tenant}`: one segment, the tenant.
    Tenant,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct SpiffeRule {
    pattern: String,
    trust_domain: String,
    segments: Vec<Segment>,
    tenants: Vec<Tenant>,
    scopes: Scopes,
    listeners: Vec<Listener>,
}

/// The rules in force.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<SpiffeRule>,
}

impl Policy {
    /// Compiles the rules; an error names the rule (1-based, in file order) and the problem.
    pub fn new(rules: &[SpiffeRuleConfig]) -> Result<Policy, String> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| SpiffeRule::new(r).map_err(|e| format!("[[auth.spiffe]] rule {} ({:?}): {e}", i + 1, r.id)))
            .collect::<Result<_, _>>()?;
        Ok(Policy { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The principal of a verified SPIFFE ID on `listener`: the grants of every rule that
    /// matches, or `None` when none does.
    pub fn principal(&self, id: &SpiffeId, listener: Listener) -> Option<Principal> {
        let mut grants = Vec::new();
        let mut homes: Vec<Tenant> = Vec::new();
        for rule in &self.rules {
            if !rule.listeners.is_empty() && !rule.listeners.contains(&listener) {
                continue;
            }
            let Some(bound) = rule.matches(id) else { continue };
            let tenants = match bound {
                Some(tenant) => vec![tenant],
                None => rule.tenants.clone(),
            };
            if let [one] = &tenants[..]
                && !homes.contains(one)
            {
                homes.push(one.clone());
            }
            grants.push(Grant { tenants: Tenants::Only(tenants), scopes: rule.scopes });
        }
        if grants.is_empty() {
            return None;
        }
        Some(Principal {
            kind: PrincipalKind::Spiffe,
            id: id.as_str().into(),
            grants,
            home: if homes.len() == 1 { homes.pop() } else { None },
        })
    }
}

impl SpiffeRule {
    fn new(config: &SpiffeRuleConfig) -> Result<SpiffeRule, String> {
        let rest = config.id.strip_prefix("spiffe://").ok_or("the pattern starts with `spiffe://`")?;
        let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        // The trust domain is literal: a wildcard there would admit every domain's CA.
        SpiffeId::parse(&format!("spiffe://{domain}")).map_err(|e| format!("trust domain: {e}"))?;
        let parts: Vec<&str> = if path.is_empty() { Vec::new() } else { path.split('/').collect() };
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            segments.push(match *part {
                "*" if i + 1 == parts.len() => Segment::Rest,
                "*" => Segment::One,
                "{tenant}" => Segment::Tenant,
                literal => {
                    SpiffeId::parse(&format!("spiffe://{domain}/{literal}"))
                        .map_err(|e| format!("segment {literal:?}: {e}"))?;
                    Segment::Literal(literal.to_string())
                }
            });
        }
        let binds = segments.iter().filter(|s| **s == Segment::Tenant).count();
        if binds > 1 {
            return Err("`{tenant}` may appear once".into());
        }
        if binds == 1 && !config.tenants.is_empty() {
            return Err("a pattern with `{tenant}` takes its tenant from the ID; drop `tenants`".into());
        }
        if binds == 0 && config.tenants.is_empty() {
            return Err("name the `tenants` this identity may use, or bind one with `{tenant}`".into());
        }
        if config.scopes.is_empty() {
            return Err("`scopes` is empty".into());
        }
        let tenants = config
            .tenants
            .iter()
            .map(|t| Tenant::parse(t).map_err(|e| format!("tenants: {e}")))
            .collect::<Result<_, _>>()?;
        let listeners = config
            .listeners
            .iter()
            .map(|name| {
                Listener::ALL
                    .into_iter()
                    .find(|l| l.as_str() == name)
                    .ok_or_else(|| format!("unknown listener {name:?}; the listeners are otlp_grpc, otlp_http and api"))
            })
            .collect::<Result<_, _>>()?;
        Ok(SpiffeRule {
            pattern: config.id.clone(),
            trust_domain: domain.to_string(),
            segments,
            tenants,
            scopes: config.scopes.iter().copied().collect(),
            listeners,
        })
    }

    /// `None` when the ID does not match; `Some(bound)` when it does, with the tenant bound by
    /// `{tenant}` if the pattern has one (a segment that is no valid tenant id does not match).
    fn matches(&self, id: &SpiffeId) -> Option<Option<Tenant>> {
        if id.trust_domain() != self.trust_domain {
            return None;
        }
        let segments: Vec<&str> = id.segments().collect();
        let mut bound = None;
        let mut at = 0;
        for (i, pattern) in self.segments.iter().enumerate() {
            match pattern {
                Segment::Rest => {
                    debug_assert_eq!(i + 1, self.segments.len());
                    return (segments.len() > at).then_some(bound);
                }
                Segment::One => {}
                Segment::Literal(text) => {
                    if segments.get(at) != Some(&text.as_str()) {
                        return None;
                    }
                }
                Segment::Tenant => bound = Some(Tenant::parse(segments.get(at)?).ok()?),
            }
            if at >= segments.len() {
                return None;
            }
            at += 1;
        }
        (at == segments.len()).then_some(bound)
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    fn rule(id: &str, tenants: &[&str], scopes: &[Scope], listeners: &[&str]) -> SpiffeRuleConfig {
        SpiffeRuleConfig {
            id: id.into(),
            tenants: tenants.iter().map(|s| s.to_string()).collect(),
            scopes: scopes.to_vec(),
            listeners: listeners.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    #[test]
    fn patterns_match_segment_by_segment() {
        let policy = Policy::new(&[
            rule("spiffe://prod.example/ns/pay/*", &["pay"], &[Scope::Write], &["otlp_grpc", "otlp_http"]),
            rule("spiffe://prod.example/ns/{tenant}/sa/reader", &[], &[Scope::Read], &[]),
            rule("spiffe://prod.example/ns/*/sa/ci", &["ci"], &[Scope::GateWrite], &["api"]),
        ])
        .unwrap();
        let pay = Tenant::parse("pay").unwrap();
        let writer =
            policy.principal(&id("spiffe://prod.example/ns/pay/sa/order-service"), Listener::OtlpGrpc).unwrap();
        assert_eq!(writer.home.as_ref(), Some(&pay));
        assert!(writer.may(&pay, Scope::Write) && !writer.may(&pay, Scope::Read));
        assert!(!writer.may(&Tenant::parse("shop").unwrap(), Scope::Write));
        // The rule holds on the OTLP listeners only.
        assert!(policy.principal(&id("spiffe://prod.example/ns/pay/sa/order-service"), Listener::Api).is_none());
        // `ns/pay` itself is not under `ns/pay/*`; another trust domain never matches.
        assert!(policy.principal(&id("spiffe://prod.example/ns/pay"), Listener::OtlpGrpc).is_none());
        assert!(policy.principal(&id("spiffe://dev.example/ns/pay/sa/x"), Listener::OtlpGrpc).is_none());
        // `{tenant}` binds the tenant from the ID.
        let reader = policy.principal(&id("spiffe://prod.example/ns/shop/sa/reader"), Listener::Api).unwrap();
        assert_eq!(reader.home, Some(Tenant::parse("shop").unwrap()));
        assert!(reader.may(&Tenant::parse("shop").unwrap(), Scope::Read));
        assert!(policy.principal(&id("spiffe://prod.example/ns/shop/sa/reader/extra"), Listener::Api).is_none());
        let ci = policy.principal(&id("spiffe://prod.example/ns/build/sa/ci"), Listener::Api).unwrap();
        assert!(ci.may(&Tenant::parse("ci").unwrap(), Scope::GateWrite));
        // Two rules matching one ID: both grants, and no home when they name different tenants.
        let both = Policy::new(&[
            rule("spiffe://td/a/*", &["x"], &[Scope::Read], &[]),
            rule("spiffe://td/*/b", &["y"], &[Scope::Write], &[]),
        ])
        .unwrap()
        .principal(&id("spiffe://td/a/b"), Listener::Api)
        .unwrap();
        assert_eq!(both.grants.len(), 2);
        assert_eq!(both.home, None);
    }

    #[test]
    fn bad_rules_are_refused_naming_the_rule() {
        for (config, problem) in [
            (rule("https://td/x", &["a"], &[Scope::Read], &[]), "starts with `spiffe://`"),
            (rule("spiffe://*/x", &["a"], &[Scope::Read], &[]), "trust domain"),
            (rule("spiffe://td/{tenant}", &["a"], &[Scope::Read], &[]), "drop `tenants`"),
            (rule("spiffe://td/{tenant}/{tenant}", &[], &[Scope::Read], &[]), "once"),
            (rule("spiffe://td/x", &[], &[Scope::Read], &[]), "name the `tenants`"),
            (rule("spiffe://td/x", &["a"], &[], &[]), "`scopes` is empty"),
            (rule("spiffe://td/x", &["a"], &[Scope::Read], &["grpc"]), "unknown listener \"grpc\""),
            (rule("spiffe://td/x y", &["a"], &[Scope::Read], &[]), "segment \"x y\""),
        ] {
            let err = Policy::new(&[config]).unwrap_err();
            assert!(err.starts_with("[[auth.spiffe]] rule 1") && err.contains(problem), "{err}");
        }
    }
}
