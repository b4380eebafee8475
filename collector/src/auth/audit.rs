//! The audit trail: who (token id, JWT subject, SPIFFE ID, `anonymous`) read or wrote which
//! tenant, and every refusal, as structured log lines (`target: "slo_gate::audit"`) and
//! counters on `/metrics`.
//!
//! A busy collector takes thousands of exports a second from the same few writers, so an
//! allowed access is logged the first time its (principal, tenant, scope, listener) is seen in
//! each `audit_interval`, with the requests it made in the interval before; the counters have
//! every request. Refusals are logged one by one — they are what an operator looks for — but
//! at most [`DENIED_LINES_PER_SECOND`], the rest counted and summarised, so a hostile client
//! cannot flood the log. Both tables are bounded: past [`MAX_SERIES`] label sets, new ones
//! are counted under `principal="_other_"`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{PrincipalKind, Scope};
use crate::telemetry::Listener;

pub const MAX_SERIES: usize = 2000;
pub const DENIED_LINES_PER_SECOND: u32 = 100;
const OTHER: &str = "_other_";

/// How a request was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Allowed,
    /// No valid credential (401 / `UNAUTHENTICATED`).
    Unauthenticated,
    /// A valid credential without the right to this tenant or scope (403 / `PERMISSION_DENIED`).
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Denied => "denied",
        }
    }
}

/// One decision, as audited.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub listener: Listener,
    pub kind: PrincipalKind,
    /// Who: safe to log (never a secret).
    pub principal: &'a str,
    /// The tenant asked for (empty when none was settled).
    pub tenant: &'a str,
    /// `read`, `write`, `gate-write`, or `-` for `/metrics`.
    pub scope: Option<Scope>,
    pub outcome: Outcome,
    pub path: &'a str,
    pub remote: Option<std::net::SocketAddr>,
    /// Why it was refused.
    pub reason: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    listener: Listener,
    kind: PrincipalKind,
    principal: String,
    tenant: String,
    scope: Option<Scope>,
    outcome: Outcome,
}

#[derive(Debug, Default)]
struct Seen {
    total: u64,
    /// Requests since the last log line, and when that line was written.
    since_logged: u64,
    logged_at: Option<Instant>,
}

#[derive(Debug)]
struct State {
    series: HashMap<Key, Seen>,
    denied_window: Instant,
    denied_lines: u32,
    denied_suppressed: u64,
}

/// The audit trail of one collector.
#[derive(Debug)]
pub struct Audit {
    interval: Duration,
    state: Mutex<State>,
}

impl Audit {
    pub fn new(interval: Duration) -> Audit {
        Audit {
            interval,
            state: Mutex::new(State {
                series: HashMap::new(),
                denied_window: Instant::now(),
                denied_lines: 0,
                denied_suppressed: 0,
            }),
        }
    }

    pub fn record(&self, event: Event<'_>) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = Key {
            listener: event.listener,
            kind: event.kind,
            principal: event.principal.to_string(),
            tenant: event.tenant.to_string(),
            scope: event.scope,
            outcome: event.outcome,
        };
        if state.series.len() >= MAX_SERIES && !state.series.contains_key(&key) {
            key.principal = OTHER.into();
            key.tenant = OTHER.into();
        }
        let seen = state.series.entry(key).or_default();
        seen.total += 1;
        seen.since_logged += 1;
        let scope = event.scope.map_or("-", Scope::as_str);
        let remote = event.remote.map(|r| r.to_string()).unwrap_or_default();
        if event.outcome == Outcome::Allowed {
            if seen.logged_at.is_some_and(|at| now.duration_since(at) < self.interval) {
                return;
            }
            let requests = seen.since_logged;
            seen.since_logged = 0;
            seen.logged_at = Some(now);
            drop(state);
            tracing::info!(
                target: "slo_gate::audit",
                outcome = "allowed",
                principal = event.principal,
                kind = event.kind.as_str(),
                tenant = event.tenant,
                scope,
                listener = event.listener.as_str(),
                remote = remote.as_str(),
                path = event.path,
                requests,
                "access"
            );
            return;
        }
        if now.duration_since(state.denied_window) >= Duration::from_secs(1) {
            if state.denied_suppressed > 0 {
                tracing::warn!(target: "slo_gate::audit", suppressed = state.denied_suppressed,
                    "refusals not logged in the last second (over {DENIED_LINES_PER_SECOND} a second); counted on /metrics");
            }
            state.denied_window = now;
            state.denied_lines = 0;
            state.denied_suppressed = 0;
        }
        if state.denied_lines >= DENIED_LINES_PER_SECOND {
            state.denied_suppressed += 1;
            return;
        }
        state.denied_lines += 1;
        drop(state);
        tracing::warn!(
            target: "slo_gate::audit",
            outcome = event.outcome.as_str(),
            principal = event.principal,
            kind = event.kind.as_str(),
            tenant = event.tenant,
            scope,
            listener = event.listener.as_str(),
            remote = remote.as_str(),
            path = event.path,
            reason = event.reason,
            "refused"
        );
    }

    /// `slo_gate_auth_requests_total` in Prometheus's text format.
    pub fn render(&self, out: &mut String) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines: Vec<String> = state
            .series
            .iter()
            .map(|(k, seen)| {
                format!(
                    "slo_gate_auth_requests_total{{listener=\"{}\",kind=\"{}\",principal=\"{}\",tenant=\"{}\",scope=\"{}\",outcome=\"{}\"}} {}\n",
                    k.listener.as_str(),
                    k.kind.as_str(),
                    escape(&k.principal),
                    escape(&k.tenant),
                    k.scope.map_or("-", Scope::as_str),
                    k.outcome.as_str(),
                    seen.total
                )
            })
            .collect();
        drop(state);
        lines.sort();
        out.push_str("# HELP slo_gate_auth_requests_total Requests by who made them, the tenant and scope asked, and whether they were allowed.\n");
        out.push_str("# TYPE slo_gate_auth_requests_total counter\n");
        for line in lines {
            let _ = write!(out, "{line}");
        }
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(principal: &'a str, tenant: &'a str, outcome: Outcome) -> Event<'a> {
        Event {
            listener: Listener::Api,
            kind: PrincipalKind::Token,
            principal,
            tenant,
            scope: Some(Scope::Read),
            outcome,
            path: "/api/v1/services",
            remote: None,
            reason: "",
        }
    }

    #[test]
    fn counters_have_every_request_and_stay_bounded() {
        let audit = Audit::new(Duration::from_secs(60));
        for _ in 0..3 {
            audit.record(event("ci", "pay", Outcome::Allowed));
        }
        audit.record(event("ci", "shop", Outcome::Denied));
        audit.record(event("we\"ird", "pay", Outcome::Unauthenticated));
        let mut text = String::new();
        audit.render(&mut text);
        assert!(text.contains(r#"principal="ci",tenant="pay",scope="read",outcome="allowed"} 3"#), "{text}");
        assert!(text.contains(r#"principal="ci",tenant="shop",scope="read",outcome="denied"} 1"#), "{text}");
        assert!(text.contains(r#"principal="we\"ird""#), "{text}");
        for i in 0..MAX_SERIES + 10 {
            audit.record(event(&format!("p{i}"), "t", Outcome::Denied));
        }
        let mut text = String::new();
        audit.render(&mut text);
        assert_eq!(text.lines().filter(|l| l.starts_with("slo_gate_auth")).count(), MAX_SERIES + 1);
        assert!(text.contains(r#"principal="_other_",tenant="_other_""#), "{text}");
    }
}
