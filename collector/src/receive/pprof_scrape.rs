//! Pull ingestion of Go `net/http/pprof` endpoints, configured by `[[scrape]]` tables (like
//! Parca's scrape configs).
//!
//! Design: one tokio task per (target, profile kind), each on its own interval. A target that
//! hangs or refuses connections therefore only delays its own tasks, never another target's
//! or another profile's (a 10 s CPU profile does not hold back the heap profile). All tasks
//! of one `[[scrape]]` table share one hyper client (and so its connection pool and its TLS
//! settings); every fetch is bounded by a timeout.
//! A fetched body (a gzipped pprof) takes exactly the Pyroscope push path: decoded by
//! `analyzer::pprof`, converted by [`crate::model::pprof::to_otlp`] with the configured labels
//! plus `__name__` (Pyroscope's profile name) and `instance` (the target), and stored through
//! [`Ingest::export`]. Each scrape's outcome is logged on failure and counted in
//! `slo_gate_scrapes_total{target, profile, outcome}`. Tasks end when the server's shutdown
//! signal is raised.
//!
//! `https://` targets go through rustls ([`crate::tls::client`]) with the table's `tls`
//! settings (CA, client certificate for mTLS, server name), and a `bearer_token_file` is sent
//! as `Authorization: Bearer`; the token is re-read when its file changes (size or modification
//! time), so a rotated token needs no restart, and a file that cannot be read then keeps the
//! last good token rather than scraping without one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::Ingest;
use crate::config::{SCRAPE_PROFILES, ScrapeConfig};
use crate::model::pprof::{Fallback, SeriesLabels, to_otlp};
use crate::tenant::Tenant;
use crate::tls::client::{ClientTls, HttpsClient};

type HttpClient = HttpsClient<Empty<Bytes>>;

/// Largest bearer token file read: a token is at most a few kilobytes (a JWT).
const MAX_TOKEN_BYTES: u64 = 64 << 10;

/// Why a bearer token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("`bearer_token_file` {path}: cannot read it: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("`bearer_token_file` {path} is {size} bytes; a token file is at most {MAX_TOKEN_BYTES}")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("`bearer_token_file` {path} is empty")]
    Empty { path: PathBuf },
    #[error("`bearer_token_file` {path}: the token has characters a header cannot carry")]
    NotHeader { path: PathBuf },
}

/// The `Authorization: Bearer` value from a token file (surrounding whitespace trimmed), marked
/// sensitive so it is never logged.
pub fn read_token(path: &Path) -> Result<HeaderValue, TokenFileError> {
    let read_err = |source| TokenFileError::Read { path: path.to_path_buf(), source };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > MAX_TOKEN_BYTES {
        return Err(TokenFileError::TooLarge { path: path.to_path_buf(), size });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenFileError::Empty { path: path.to_path_buf() });
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| TokenFileError::NotHeader { path: path.to_path_buf() })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A bearer token file, re-read when its size or modification time changes.
#[derive(Debug)]
struct TokenFile {
    path: PathBuf,
    /// The file's (modification time, size) when `value` was read, and the value.
    state: Mutex<(Option<(SystemTime, u64)>, HeaderValue)>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
}

impl TokenFile {
    fn open(path: &Path) -> Result<TokenFile, TokenFileError> {
        let stamp = stamp(path);
        let value = read_token(path)?;
        Ok(TokenFile { path: path.to_path_buf(), state: Mutex::new((stamp, value)) })
    }

    /// The current token: re-read if the file changed since; the last good one if it cannot be.
    fn current(&self) -> HeaderValue {
        let now = stamp(&self.path);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now.is_some() && now != state.0 {
            match read_token(&self.path) {
                Ok(value) => {
                    tracing::info!(file = %self.path.display(), "scrape bearer token re-read");
                    *state = (now, value);
                }
                Err(e) => tracing::warn!("{e}; the previous token is kept"),
            }
        }
        state.1.clone()
    }
}

/// Why `target` cannot be scraped with `tls`, if it cannot: a URL that does not parse, a
/// scheme other than http and https, or `https://` without a way to trust the server.
pub fn check_target(target: &str, tls: Option<&ClientTls>) -> Result<(), String> {
    let uri = profile_uri(target, "heap", 1)?;
    match uri.scheme_str() {
        Some("http") => Ok(()),
        Some("https") => tls.cloned().unwrap_or_default().check(true).map_err(|e| e.to_string()),
        other => Err(format!("scheme {:?} is not supported; use http:// or https://", other.unwrap_or(""))),
    }
}

/// How one scrape ended; the `outcome` label of `slo_gate_scrapes_total`.
#[derive(Debug)]
enum Failure {
    HttpError(String),
    Timeout,
    Connect(String),
    Decode(String),
    Store(String),
}

impl Failure {
    fn outcome(&self) -> &'static str {
        match self {
            Failure::HttpError(_) => "http_error",
            Failure::Timeout => "timeout",
            Failure::Connect(_) => "connect",
            Failure::Decode(_) => "decode",
            Failure::Store(_) => "store",
        }
    }

    fn reason(&self) -> String {
        match self {
            Failure::Timeout => "timed out".to_string(),
            Failure::HttpError(r) | Failure::Connect(r) | Failure::Decode(r) | Failure::Store(r) => r.clone(),
        }
    }
}

/// One (target, profile) to scrape.
struct Job {
    target: String,
    profile: &'static str,
    uri: Result<Uri, String>,
    interval: Duration,
    timeout: Duration,
    cpu_seconds: u64,
    labels: Vec<(String, String)>,
    tenant: Tenant,
    token: Option<Arc<TokenFile>>,
}

/// The base URL of a target: `host:port` gets `http://`; a trailing `/` is dropped.
fn base_url(target: &str) -> String {
    let target = target.trim().trim_end_matches('/');
    if target.contains("://") { target.to_string() } else { format!("http://{target}") }
}

fn profile_uri(target: &str, profile: &str, cpu_seconds: u64) -> Result<Uri, String> {
    let base = base_url(target);
    let url = if profile == "profile" {
        format!("{base}/debug/pprof/profile?seconds={cpu_seconds}")
    } else {
        format!("{base}/debug/pprof/{profile}")
    };
    url.parse::<Uri>().map_err(|e| format!("bad URL {url:?}: {e}"))
}

/// Starts one task per (target, profile) of every scrape config; they stop when `shutdown`
/// becomes `true`.
pub fn start(configs: &[ScrapeConfig], ingest: Arc<Ingest>, shutdown: &watch::Sender<bool>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for config in configs {
        // Both were read when the configuration was parsed; a failure now means a file changed
        // in between, and costs this table only.
        let client: HttpClient = match crate::tls::client::client(config.tls.as_ref()) {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(targets = ?config.targets, "pprof scraping of these targets not started: {e}");
                continue;
            }
        };
        let token = match config.bearer_token_file.as_deref().map(TokenFile::open).transpose() {
            Ok(token) => token.map(Arc::new),
            Err(e) => {
                tracing::error!(targets = ?config.targets, "pprof scraping of these targets not started: {e}");
                continue;
            }
        };
        let tenant = config.tenant.as_deref().and_then(|t| Tenant::parse(t).ok()).unwrap_or_default();
        for target in &config.targets {
            for profile in &config.profiles {
                let Some(profile) = SCRAPE_PROFILES.iter().copied().find(|p| p == profile) else {
                    continue;
                };
                let base_timeout = config.timeout.map(|t| t.0).unwrap_or(config.interval.0);
                let timeout = if profile == "profile" {
                    base_timeout + Duration::from_secs(config.cpu_seconds)
                } else {
                    base_timeout
                };
                let mut labels: Vec<(String, String)> =
                    config.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                if !labels.iter().any(|(k, _)| k == "instance") {
                    labels.push(("instance".to_string(), target.clone()));
                }
                let job = Job {
                    target: target.clone(),
                    profile,
                    uri: profile_uri(target, profile, config.cpu_seconds),
                    interval: config.interval.0,
                    timeout,
                    cpu_seconds: config.cpu_seconds,
                    labels,
                    tenant: tenant.clone(),
                    token: token.clone(),
                };
                let (client, ingest, mut stop) = (client.clone(), Arc::clone(&ingest), shutdown.subscribe());
                tasks.push(tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => {}
                        _ = run(job, client, ingest) => {}
                    }
                }));
            }
        }
    }
    if !tasks.is_empty() {
        tracing::info!(tasks = tasks.len(), "pprof scraping started");
    }
    tasks
}

async fn run(job: Job, client: HttpClient, ingest: Arc<Ingest>) {
    let mut ticker = tokio::time::interval(job.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = match scrape_once(&job, &client, &ingest).await {
            Ok(()) => "ok",
            Err(failure) => {
                tracing::warn!(target = %job.target, profile = job.profile, outcome = failure.outcome(),
                    reason = %failure.reason(), "pprof scrape failed");
                failure.outcome()
            }
        };
        ingest.telemetry().scrape(&job.target, job.profile, outcome);
    }
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
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

async fn fetch(job: &Job, client: &HttpClient, max_bytes: usize) -> Result<Bytes, Failure> {
    let uri = job.uri.clone().map_err(Failure::Connect)?;
    let mut request = Request::get(uri);
    if let Some(token) = &job.token {
        request = request.header(AUTHORIZATION, token.current());
    }
    let request = request.body(Empty::new()).map_err(|e| Failure::Connect(format!("cannot build the request: {e}")))?;
    let response = client.request(request).await.map_err(|e| {
        if e.is_connect() { Failure::Connect(error_chain(&e)) } else { Failure::HttpError(error_chain(&e)) }
    })?;
    let status = response.status();
    if status != StatusCode::OK {
        let body = Limited::new(response.into_body(), 512).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(Failure::HttpError(format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim())));
    }
    Limited::new(response.into_body(), max_bytes)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| Failure::HttpError(format!("reading the body: {e}")))
}

async fn scrape_once(job: &Job, client: &HttpClient, ingest: &Ingest) -> Result<(), Failure> {
    let started = now_nanos();
    let max_bytes = ingest.limits().max_request_bytes;
    let body =
        tokio::time::timeout(job.timeout, fetch(job, client, max_bytes)).await.map_err(|_| Failure::Timeout)??;
    let profile = analyzer::pprof::decode_with_limit(&body, max_bytes as u64)
        .map_err(|e| Failure::Decode(format!("not a pprof profile: {e}")))?;
    let mut labels = job.labels.clone();
    labels.retain(|(k, _)| k != "__name__");
    labels.push(("__name__".to_string(), analyzer::pprof::profile_name(&profile)));
    let labels = SeriesLabels::new(None, labels);
    let duration_nano = if job.profile == "profile" { job.cpu_seconds.saturating_mul(1_000_000_000) } else { 0 };
    let mut request = to_otlp(&profile, &labels, Fallback { time_unix_nano: started, duration_nano }, &body);
    // The stored profile keeps the SHA-256 of the body as the target sent it.
    crate::model::pprof::record_source(&mut request, &body);
    ingest.export(job.tenant.clone(), request, super::Raw::None).await.map_err(|e| Failure::Store(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The package's directory: where cargo runs this test from now (`CARGO_MANIFEST_DIR` at run
    /// time), not where it was compiled, so a test binary built from another checkout of the same
    /// sources with a shared target directory still reads this checkout's files.
    fn manifest_dir() -> std::path::PathBuf {
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
    }

    use super::*;

    #[test]
    fn urls_from_targets() {
        assert_eq!(
            profile_uri("127.0.0.1:6060", "heap", 10).unwrap().to_string(),
            "http://127.0.0.1:6060/debug/pprof/heap"
        );
        assert_eq!(
            profile_uri("http://h:1/app/", "profile", 3).unwrap().to_string(),
            "http://h:1/app/debug/pprof/profile?seconds=3"
        );
        assert!(profile_uri("bad host:1", "heap", 1).is_err());
    }

    #[test]
    fn https_targets_need_a_way_to_trust_the_server() {
        let ca = ClientTls { ca_file: Some("/ca.pem".into()), ..Default::default() };
        assert_eq!(check_target("127.0.0.1:6060", None), Ok(()));
        assert_eq!(check_target("https://h:6060/app", Some(&ca)), Ok(()));
        assert_eq!(
            profile_uri("https://h:6060/app/", "heap", 1).unwrap().to_string(),
            "https://h:6060/app/debug/pprof/heap"
        );
        let err = check_target("https://h:6060", None).unwrap_err();
        assert!(err.contains("needs `ca_file`"), "{err}");
        let err = check_target("ftp://h:21/", Some(&ca)).unwrap_err();
        assert!(err.contains("scheme \"ftp\" is not supported"), "{err}");
    }

    #[test]
    fn a_rotated_token_is_read_again_and_a_vanished_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first-token\n").unwrap();
        let token = TokenFile::open(&path).unwrap();
        assert_eq!(token.current(), "Bearer first-token");
        assert!(token.current().is_sensitive());
        // A different size is a change even where modification times are coarse.
        std::fs::write(&path, "the-second-token").unwrap();
        assert_eq!(token.current(), "Bearer the-second-token");
        std::fs::write(&path, "   \n").unwrap();
        assert_eq!(token.current(), "Bearer the-second-token", "an empty file keeps the last good token");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(token.current(), "Bearer the-second-token");
        let err = TokenFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("cannot read it"), "{err}");
    }

    // issue 11 #15: a scraped goroutine profile that records no time (a `debug=2`-era or
    // hand-made one) is stored at the scrape's time, never at 0 or a file's time.
    #[test]
    fn a_scraped_profile_without_a_time_is_stored_at_the_scrape_time() {
        let path = manifest_dir().join("../testdata/corpus/go-dev/fast/goroutine-t05.pb.gz");
        let mut profile = analyzer::pprof::decode(&std::fs::read(path).unwrap()).unwrap();
        let recorded = u64::try_from(profile.time_nanos).unwrap();
        assert!(recorded > 0);
        let started = 1_764_000_000_000_000_000;
        let labels = SeriesLabels::new(Some("app"), []);
        let time = |profile: &analyzer::pprof::Profile| {
            let request = to_otlp(profile, &labels, Fallback { time_unix_nano: started, duration_nano: 0 }, b"k");
            request.resource_profiles[0].scope_profiles[0].profiles[0].time_unix_nano
        };
        assert_eq!(time(&profile), recorded, "the profile's own time wins");
        profile.time_nanos = 0;
        assert_eq!(time(&profile), started);
    }
}
