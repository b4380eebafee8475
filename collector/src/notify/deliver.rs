//! Delivery to one webhook: one task per webhook, one notification at a time, retried until
//! the webhook takes it or refuses it for good.
//!
//! Each webhook has its own hyper client, because each may have its own TLS settings (CA,
//! client certificate, server name) for an `https://` URL; a webhook's connection is reused
//! from one notification to the next either way.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::watch;

use super::{Notification, NotifyError, Shared, payload};
use crate::config::{WebhookConfig, WebhookFormat};

pub(super) type HttpClient = crate::tls::client::HttpsClient<Full<Bytes>>;

/// The longest `Retry-After` waited out; a longer one is cut to this.
const RETRY_AFTER_CEILING: Duration = Duration::from_secs(3600);

/// Bytes of an error answer kept for the log.
const ERROR_BODY_BYTES: usize = 512;

const USER_AGENT_VALUE: &str = concat!("slo-gate/", env!("CARGO_PKG_VERSION"));

/// A webhook ready to send to: its configuration checked, its token and TLS files read.
#[derive(Debug)]
pub(super) struct Webhook {
    pub name: String,
    client: HttpClient,
    uri: Uri,
    format: WebhookFormat,
    timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Webhook {
    pub fn from_config(config: &WebhookConfig) -> Result<Webhook, NotifyError> {
        let fail = |what: String| NotifyError::Config { name: config.name.clone(), what };
        let uri = crate::config::check_webhook_url(&config.url).map_err(|why| fail(format!("`url`: {why}")))?;
        let tls = config.tls.clone().unwrap_or_default();
        tls.check(uri.scheme_str() == Some("https")).map_err(|e| fail(e.to_string()))?;
        let client = crate::tls::client::client(config.tls.as_ref()).map_err(|e| fail(e.to_string()))?;
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| fail(format!("`headers`: {name:?} is not a header name")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| fail(format!("`headers`: the value of {name:?} is not a header value")))?;
            if name == AUTHORIZATION {
                value.set_sensitive(true);
            }
            headers.push((name, value));
        }
        if let Some(path) = &config.bearer_token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| fail(format!("`bearer_token_file` {}: {e}", path.display())))?;
            let token = text.trim();
            if token.is_empty() {
                return Err(fail(format!("`bearer_token_file` {} is empty", path.display())));
            }
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                fail(format!("`bearer_token_file` {}: the token has characters a header cannot carry", path.display()))
            })?;
            value.set_sensitive(true);
            headers.push((AUTHORIZATION, value));
        }
        Ok(Webhook {
            name: config.name.clone(),
            client,
            uri,
            format: config.format,
            timeout: config.timeout.0,
            headers,
            initial_backoff: config.initial_backoff.0,
            max_backoff: config.max_backoff.0,
        })
    }

    /// The request body carrying `notification`.
    fn body(&self, notification: &Notification, external_url: &str) -> Result<Bytes, serde_json::Error> {
        let json = match self.format {
            WebhookFormat::Webhook => {
                serde_json::to_vec(&payload::webhook_message(notification, &self.name, external_url))?
            }
            WebhookFormat::AlertmanagerV2 => serde_json::to_vec(&payload::postable_alerts(notification))?,
        };
        Ok(Bytes::from(json))
    }
}

/// What one attempt came to.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    Delivered,
    /// Refused for good: sending it again would be refused again.
    Permanent(String),
    /// Worth another attempt, after `after` when the answer said so.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

/// Judges an answer: 2xx delivered; 408, 429 and 5xx retried (after `Retry-After`, read at
/// `now`); anything else refused for good.
pub(super) fn judge(status: StatusCode, headers: &HeaderMap, body: &[u8], now: jiff::Timestamp) -> Verdict {
    if status.is_success() {
        return Verdict::Delivered;
    }
    let text = String::from_utf8_lossy(body);
    let reason = format!("HTTP {status}: {}", text.trim());
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS {
        let after = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| retry_after(v, now));
        return Verdict::Retry { reason, after };
    }
    if status.is_redirection() {
        return Verdict::Permanent(format!("{reason} (redirects are not followed; configure the final URL)"));
    }
    Verdict::Permanent(reason)
}

/// A `Retry-After` value (RFC 9110 §10.2.3: delay seconds, or an HTTP date) as a wait from
/// `now`, at most [`RETRY_AFTER_CEILING`]; `None` when it does not parse.
pub(super) fn retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(value).ok()?;
        let millis = at.as_millisecond().saturating_sub(now.as_millisecond()).max(0);
        Duration::from_millis(millis as u64)
    };
    Some(wait.min(RETRY_AFTER_CEILING))
}

/// Exponential backoff with full jitter: a wait of `unit` (in [0, 1)) times
/// `min(max, initial × 2^attempt)`.
pub(super) fn backoff(initial: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    let bound = initial.checked_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX)).unwrap_or(max).min(max);
    bound.mul_f64(unit.clamp(0.0, 1.0))
}

/// SplitMix64 (Steele, Lea and Flood 2014): jitter needs spread, not secrecy.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Returns when `stop` is raised or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// An error and its sources, `: `-separated (hyper's own message alone says little).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// One POST of `body`, bounded by the webhook's timeout.
async fn attempt(webhook: &Webhook, body: Bytes) -> Verdict {
    let mut request = Request::post(webhook.uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, USER_AGENT_VALUE);
    for (name, value) in &webhook.headers {
        request = request.header(name, value);
    }
    let request = match request.body(Full::new(body)) {
        Ok(request) => request,
        Err(e) => return Verdict::Permanent(format!("cannot build the request: {e}")),
    };
    let exchange = async {
        let response = webhook.client.request(request).await.map_err(|e| error_chain(&e))?;
        let (parts, body) = response.into_parts();
        // Read the answer (a little of it) so the connection can be reused and an error
        // explained; a body that fails to arrive does not undo the status.
        let limit = if parts.status.is_success() { 64 << 10 } else { ERROR_BODY_BYTES };
        let body = Limited::new(body, limit).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        Ok::<_, String>((parts.status, parts.headers, body))
    };
    match tokio::time::timeout(webhook.timeout, exchange).await {
        Err(_) => Verdict::Retry { reason: format!("no answer within {:?}", webhook.timeout), after: None },
        Ok(Err(reason)) => Verdict::Retry { reason, after: None },
        Ok(Ok((status, headers, body))) => judge(status, &headers, &body, jiff::Timestamp::now()),
    }
}

/// The delivery task of webhook `i`: from `position` on, each notification in turn, until
/// `stop`.
pub(super) async fn run(shared: Arc<Shared>, i: usize, mut position: u64, mut stop: watch::Receiver<bool>) {
    let webhook = Arc::clone(&shared.webhooks[i]);
    let counters = Arc::clone(&shared.counters[i]);
    let mut appended = shared.appended.subscribe();
    let mut jitter = Jitter(super::random_u64());
    loop {
        // Marked seen before looking, so an append in between wakes the wait below.
        appended.borrow_and_update();
        let Some((seq, notification)) = shared.next_after(position) else {
            tokio::select! {
                changed = appended.changed() => if changed.is_err() { return },
                () = stopped(&mut stop) => return,
            }
            continue;
        };
        let body = match webhook.body(&notification, &shared.external_url) {
            Ok(body) => Some(body),
            Err(e) => {
                tracing::error!(webhook = %webhook.name, seq, "cannot encode the notification: {e}");
                None
            }
        };
        let mut tries: u32 = 0;
        let delivered = loop {
            let Some(body) = body.clone() else { break false };
            let verdict = tokio::select! {
                verdict = attempt(&webhook, body) => verdict,
                () = stopped(&mut stop) => return,
            };
            match verdict {
                Verdict::Delivered => break true,
                Verdict::Permanent(reason) => {
                    tracing::warn!(webhook = %webhook.name, seq, alertname = notification.labels.get("alertname").map(String::as_str).unwrap_or(""),
                        status = %notification.status, %reason, "webhook refused the notification for good; skipped");
                    break false;
                }
                Verdict::Retry { reason, after } => {
                    counters.retried.fetch_add(1, Relaxed);
                    let wait = after
                        .unwrap_or_else(|| backoff(webhook.initial_backoff, webhook.max_backoff, tries, jitter.unit()));
                    tries = tries.saturating_add(1);
                    tracing::warn!(webhook = %webhook.name, seq, attempt = tries, %reason, retry_in = ?wait,
                        "webhook delivery failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stopped(&mut stop) => return,
                    }
                }
            }
        };
        if delivered {
            counters.sent.fetch_add(1, Relaxed);
            if tries > 0 {
                tracing::info!(webhook = %webhook.name, seq, retries = tries, "webhook delivery succeeded after retries");
            }
        } else {
            counters.failed.fetch_add(1, Relaxed);
        }
        position = seq;
        let persist = {
            let shared = Arc::clone(&shared);
            tokio::task::spawn_blocking(move || shared.persist(i, seq))
        };
        match persist.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shared.telemetry.notify.write_errors.fetch_add(1, Relaxed);
                tracing::error!(webhook = %webhook.name, seq, "cannot record the delivery (it will be sent again after a restart): {e}");
            }
            Err(e) => tracing::error!(webhook = %webhook.name, seq, "recording the delivery failed: {e}"),
        }
        shared.handled(i, seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn answers_are_judged_as_alertmanager_judges_them() {
        let none = HeaderMap::new();
        for code in [200, 201, 202, 204] {
            assert_eq!(judge(StatusCode::from_u16(code).unwrap(), &none, b"", now()), Verdict::Delivered, "{code}");
        }
        for code in [408, 429, 500, 502, 503, 504] {
            let verdict = judge(StatusCode::from_u16(code).unwrap(), &none, b"busy", now());
            assert!(
                matches!(&verdict, Verdict::Retry { after: None, reason } if reason.contains("busy")),
                "{code}: {verdict:?}"
            );
        }
        for code in [400, 401, 403, 404, 413, 422, 301, 307] {
            let verdict = judge(StatusCode::from_u16(code).unwrap(), &none, b"no", now());
            assert!(matches!(verdict, Verdict::Permanent(_)), "{code}: {verdict:?}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            judge(StatusCode::TOO_MANY_REQUESTS, &headers, b"", now()),
            Verdict::Retry { reason: "HTTP 429 Too Many Requests: ".into(), after: Some(Duration::from_secs(7)) }
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        assert_eq!(retry_after("120", now()), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now()), Some(Duration::ZERO));
        assert_eq!(retry_after("Wed, 01 May 2024 12:00:30 GMT", now()), Some(Duration::from_secs(30)));
        // A date in the past means now.
        assert_eq!(retry_after("Wed, 01 May 2024 11:00:00 GMT", now()), Some(Duration::ZERO));
        assert_eq!(retry_after("99999999", now()), Some(RETRY_AFTER_CEILING));
        assert_eq!(retry_after("soon", now()), None);
        assert_eq!(retry_after("-5", now()), None);
    }

    /// A CA made here, and a leaf certificate it signs, as PEM files in `dir`.
    struct Pki {
        issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    }

    impl Pki {
        fn new() -> Pki {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            Pki { issuer: rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap() }
        }

        fn leaf(&self, name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &self.issuer);
            (cert.unwrap(), key)
        }
    }

    /// An HTTPS receiver on loopback requiring a client certificate of `clients`; answers 200
    /// and sends each request's body down the channel.
    async fn https_receiver(
        server: &Pki,
        clients: &Pki,
    ) -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Bytes>) {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(clients.issuer.der().clone()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .unwrap();
        let (cert, key) = server.leaf("hooks.internal");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (bodies, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, bodies) = (acceptor.clone(), bodies.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let bodies = bodies.clone();
                        async move {
                            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let _ = bodies.send(body);
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(tls);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        (addr, received)
    }

    fn https_webhook(addr: std::net::SocketAddr, tls: Option<crate::tls::client::ClientTls>) -> WebhookConfig {
        WebhookConfig {
            name: "secure".into(),
            url: format!("https://{addr}/hook"),
            format: WebhookFormat::Webhook,
            timeout: slo_contracts::HumanDuration(Duration::from_secs(5)),
            headers: Default::default(),
            bearer_token_file: None,
            initial_backoff: slo_contracts::HumanDuration(Duration::from_secs(1)),
            max_backoff: slo_contracts::HumanDuration(Duration::from_secs(1)),
            tls,
        }
    }

    #[tokio::test]
    async fn https_webhooks_are_delivered_with_mtls_and_an_untrusted_server_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (servers, clients, stranger) = (Pki::new(), Pki::new(), Pki::new());
        let (addr, mut received) = https_receiver(&servers, &clients).await;
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (cert, key) = clients.leaf("slo-gate.internal");
        let tls = crate::tls::client::ClientTls {
            ca_file: Some(write("ca.pem", servers.issuer.pem())),
            cert_file: Some(write("client.pem", cert.pem())),
            key_file: Some(write("client-key.pem", key.serialize_pem())),
            server_name: Some("hooks.internal".into()),
            insecure_skip_verify: false,
        };
        let webhook = Webhook::from_config(&https_webhook(addr, Some(tls.clone()))).unwrap();
        let body = Bytes::from_static(b"{\"hello\":1}");
        assert_eq!(attempt(&webhook, body.clone()).await, Verdict::Delivered);
        assert_eq!(received.recv().await.unwrap(), body, "the receiver got the body over TLS");

        // A server whose CA is not the configured one: a retryable failure that says why.
        let untrusted =
            crate::tls::client::ClientTls { ca_file: Some(write("other.pem", stranger.issuer.pem())), ..tls.clone() };
        let webhook = Webhook::from_config(&https_webhook(addr, Some(untrusted))).unwrap();
        let verdict = attempt(&webhook, body.clone()).await;
        assert!(matches!(&verdict, Verdict::Retry { reason, .. } if reason.contains("certificate")), "{verdict:?}");
        // Without a client certificate the receiver refuses the handshake.
        let anonymous = crate::tls::client::ClientTls { cert_file: None, key_file: None, ..tls.clone() };
        let webhook = Webhook::from_config(&https_webhook(addr, Some(anonymous))).unwrap();
        assert!(matches!(attempt(&webhook, body.clone()).await, Verdict::Retry { .. }));
        assert!(received.try_recv().is_err(), "nothing reached the receiver without trust both ways");

        // https without a CA is refused when the notifier starts, naming the webhook.
        let err = Webhook::from_config(&https_webhook(addr, None)).unwrap_err().to_string();
        assert!(err.contains("secure") && err.contains("needs `ca_file`"), "{err}");
        let missing = crate::tls::client::ClientTls { ca_file: Some(dir.path().join("absent.pem")), ..tls };
        let err = Webhook::from_config(&https_webhook(addr, Some(missing))).unwrap_err().to_string();
        assert!(err.contains("absent.pem"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(backoff(initial, max, 0, 0.999_999), Duration::from_secs(1).mul_f64(0.999_999));
        assert_eq!(backoff(initial, max, 3, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(initial, max, 20, 0.5), Duration::from_secs(150));
        assert_eq!(backoff(initial, max, 200, 1.0), max);
        assert_eq!(backoff(initial, max, 5, 0.0), Duration::ZERO);
        let mut jitter = Jitter(42);
        let draws: Vec<f64> = (0..1000).map(|_| jitter.unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
    }
}
