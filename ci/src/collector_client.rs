//! A blocking client of a running collector's HTTP API, for the commands that take
//! `--collector URL` (`flame diff`, `check`).
//!
//! Every failure says which collector and which request: an unreachable collector and an error
//! answer are different messages, and an error answer carries the collector's own `error` text
//! (its 400s name the bad parameter).

use std::time::Duration;

use anyhow::{Context, bail};

/// How long one request may take, connection included: a CI step must not hang on a dead host.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A collector's write token; `Debug` never prints it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WriteToken(pub String);

impl std::fmt::Debug for WriteToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteToken(<redacted>)")
    }
}

/// The HTTP API of one collector, for one tenant.
#[derive(Debug)]
pub struct CollectorClient {
    agent: ureq::Agent,
    base: String,
    tenant: Option<String>,
    /// The write token sent with writes (`POST`), never with reads.
    token: Option<WriteToken>,
}

impl CollectorClient {
    /// A client of the collector at `url` (`http://host:port`, the `--api` address), scoped to
    /// `tenant` (sent as `X-Scope-OrgID`) when given.
    pub fn new(url: &str, tenant: Option<String>) -> anyhow::Result<Self> {
        let base = url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--collector {url:?} must be an http:// or https:// URL, e.g. http://127.0.0.1:4040");
        }
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(TIMEOUT)).build().into();
        Ok(Self { agent, base, tenant, token: None })
    }

    /// The same client, sending `token` as `Authorization: Bearer` with its writes.
    #[must_use]
    pub fn with_token(mut self, token: Option<WriteToken>) -> Self {
        self.token = token;
        self
    }

    /// The collector's base URL, as given.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET path?query`, returning the body of a 2xx answer.
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        for (key, value) in query {
            request = request.query(*key, value);
        }
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        let mut response = request.call().with_context(|| format!("cannot reach the collector at {url}"))?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .with_context(|| format!("cannot read the answer of {url}"))?;
        if !status.is_success() {
            bail!("the collector answered {path} with {status}: {}", error_message(&body));
        }
        Ok(body)
    }

    /// `POST path` with `body` as JSON (and the write token), parsing a 2xx answer as `T`.
    pub fn post_as<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.post(&url).header("content-type", "application/json");
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", &format!("Bearer {}", token.0));
        }
        let body = serde_json::to_vec(body).context("cannot encode the request")?;
        let mut response = request.send(&body[..]).with_context(|| format!("cannot reach the collector at {url}"))?;
        let status = response.status();
        let bytes = response.body_mut().read_to_vec().with_context(|| format!("cannot read the answer of {url}"))?;
        if !status.is_success() {
            bail!("the collector answered {path} with {status}: {}", error_message(&bytes));
        }
        serde_json::from_slice(&bytes).with_context(|| format!("the collector's answer to {path} is not JSON"))
    }

    /// `GET path?query`, parsing a 2xx answer as JSON into `T`. Fields `T` does not name are
    /// skipped without building them, at any depth: a differential flame graph of deep stacks
    /// nests further than `serde_json::Value` may (its recursion limit is 128).
    pub fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<T> {
        let body = self.get(path, query)?;
        serde_json::from_slice(&body).with_context(|| format!("the collector's answer to {path} is not JSON"))
    }
}

/// The `error` of a JSON error answer, else the start of the body.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect())
}

/// A Pyroscope-style label selector `{k="v",...}` matching the given labels.
pub fn selector(labels: &[(&str, &str)]) -> String {
    let inner: Vec<String> =
        labels.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    // issue 11 #8: the write token is never printed.
    #[test]
    fn debug_output_hides_the_token() {
        let client = CollectorClient::new("http://127.0.0.1:1", None)
            .unwrap()
            .with_token(Some(WriteToken("secret-token-0123456789".into())));
        assert!(!format!("{client:?}").contains("secret-token"), "{client:?}");
    }

    #[test]
    fn selectors_quote_values() {
        assert_eq!(
            selector(&[("service_name", "api"), ("service_version", "1.0 \"rc\"")]),
            r#"{service_name="api",service_version="1.0 \"rc\""}"#
        );
    }

    #[test]
    fn unreachable_collector_names_the_url() {
        // Port 1 on loopback: nothing listens there.
        let client = CollectorClient::new("http://127.0.0.1:1/", None).expect("valid url");
        let err = client.get("/api/v1/services", &[]).expect_err("refused");
        assert!(
            format!("{err:#}").contains("cannot reach the collector at http://127.0.0.1:1/api/v1/services"),
            "{err:#}"
        );
        assert!(CollectorClient::new("127.0.0.1:4040", None).is_err(), "scheme required");
    }
}
