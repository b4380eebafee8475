//! Pyroscope-compatible pprof push, served on the API listener so Pyroscope's agents work
//! unchanged:
//!
//! * `POST /push.v1.PusherService/Push` — connect-RPC, `application/proto` or Connect JSON: a
//!   `PushRequest` of label sets and raw (possibly gzipped) pprof bytes. This is what the
//!   `pyroscope-io` Python agent 1.4 and Grafana Alloy send.
//! * `POST /ingest?name=app.cpu{k=v}&from=&until=&sampleRate=&format=pprof|folded` — the legacy
//!   API: a raw pprof body or a `multipart/form-data` body with a `profile` field (Go agent),
//!   or collapsed stacks (`a;b;c 12` per line; the default format).
//!
//! Design: nothing here stores anything itself. Each pushed profile is decoded with
//! [`analyzer::pprof::decode`], converted to an OTLP export request by [`crate::model::pprof`]
//! and handed to [`Ingest::export`], so pushed pprof gets the same validation, write-ahead log,
//! storage and queries as OTLP profiles. A push request is decoded entirely before the first
//! profile is stored, so a malformed request stores nothing.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use prost::Message;
use serde::Deserialize;

use super::Ingest;
use super::admission::Admitted;
use crate::error::{ErrorKind, IngestError};
use crate::model::pprof::{
    Fallback, FoldedError, FoldedKind, SeriesLabels, profile_from_folded, record_source, to_otlp,
};
use crate::tenant::Tenant;

/// Pyroscope's push API, written from the field numbers of `api/push/v1/push.proto` in
/// grafana/pyroscope (v1.x; unchanged since 0.37); `types.v1.LabelPair` is the query API's
/// (`query::pyroscope::proto`).
pub mod wire {
    use serde::Deserialize;

    /// `push.v1.PushRequest`.
    #[derive(Clone, PartialEq, prost::Message, Deserialize)]
    #[serde(default)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub series: Vec<RawProfileSeries>,
    }

    /// `push.v1.RawProfileSeries`.
    #[derive(Clone, PartialEq, prost::Message, Deserialize)]
    #[serde(default)]
    pub struct RawProfileSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<LabelPair>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<RawSample>,
    }

    /// `push.v1.RawSample`.
    #[derive(Clone, PartialEq, prost::Message, Deserialize)]
    #[serde(default)]
    pub struct RawSample {
        /// A pprof profile, gzipped or not. Connect JSON carries it as base64.
        #[prost(bytes = "vec", tag = "1")]
        #[serde(rename = "rawProfile", alias = "raw_profile", deserialize_with = "base64_bytes")]
        pub raw_profile: Vec<u8>,
        /// The agent's id of the profile (a UUID).
        #[prost(string, tag = "2")]
        #[serde(rename = "ID", alias = "id")]
        pub id: String,
    }

    /// `types.v1.LabelPair`, shared with the query API.
    pub use crate::query::pyroscope::proto::LabelPair;

    /// `push.v1.PushResponse` (empty).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushResponse {}

    fn base64_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        use base64::Engine;
        let text = String::deserialize(d)?;
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines
            .iter()
            .find_map(|e| e.decode(text.trim()).ok())
            .ok_or_else(|| serde::de::Error::custom("rawProfile is not base64"))
    }
}

/// Why a push was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("bad application name {name:?}: {why}")]
    Name { name: String, why: &'static str },
    #[error("bad query parameter {param}: {why}")]
    Param { param: &'static str, why: String },
    #[error("series {series} sample {sample}: {source}")]
    Pprof { series: usize, sample: usize, source: analyzer::pprof::DecodeError },
    #[error("bad pprof body: {0}")]
    Body(#[from] analyzer::pprof::DecodeError),
    #[error("bad folded body: {}", join(.0))]
    Folded(Vec<FoldedError>),
    #[error("bad multipart body: {0}")]
    Multipart(String),
    #[error("format {0:?} is not supported; use pprof or folded")]
    Format(String),
}

fn join(errors: &[FoldedError]) -> String {
    let mut text: Vec<String> = errors.iter().take(10).map(ToString::to_string).collect();
    if errors.len() > 10 {
        text.push(format!("and {} more", errors.len() - 10));
    }
    text.join("; ")
}

impl PushError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            PushError::Ingest(e) => e.kind(),
            PushError::Format(_) => ErrorKind::UnsupportedMediaType,
            _ => ErrorKind::BadRequest,
        }
    }

    /// The Connect protocol's name of the error code.
    fn connect_code(&self) -> &'static str {
        match self.kind().grpc_code() {
            tonic::Code::InvalidArgument => "invalid_argument",
            tonic::Code::ResourceExhausted => "resource_exhausted",
            tonic::Code::NotFound => "not_found",
            tonic::Code::Unavailable => "unavailable",
            tonic::Code::DeadlineExceeded => "deadline_exceeded",
            _ => "internal",
        }
    }

    fn retry_after(&self, mut response: Response) -> Response {
        if let Some(after) = self.kind().retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
        }
        response
    }

    /// The legacy API's answer: a plain-text message.
    fn into_text_response(self) -> Response {
        let response = (self.kind().http_status(), format!("{self}\n")).into_response();
        self.retry_after(response)
    }

    /// A Connect error: `{"code": ..., "message": ...}` with the matching HTTP status.
    fn into_connect_response(self) -> Response {
        let body = serde_json::json!({ "code": self.connect_code(), "message": self.to_string() });
        let response =
            (self.kind().http_status(), [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        self.retry_after(response)
    }
}

/// The push endpoints, to be merged into the API router.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/ingest", post(ingest_legacy))
        .route("/push.v1.PusherService/Push", post(push))
        .with_state(ingest)
}

fn tenant(headers: &HeaderMap) -> Result<Tenant, PushError> {
    Ok(Tenant::from_headers(headers).map_err(IngestError::from)?)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").trim()
}

/// Reads the body within the size limit, undoing `Content-Encoding: gzip` (and Connect's
/// `Connect-Content-Encoding`), counted against the in-flight budget: the returned
/// reservation holds its bytes until the request is answered.
async fn read_body(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<Admitted, PushError> {
    let encoding = match header_str(headers, "content-encoding") {
        "" => header_str(headers, "connect-content-encoding"),
        e => e,
    };
    let gzip = match encoding.to_ascii_lowercase().as_str() {
        "" | "identity" => false,
        "gzip" => true,
        other => {
            return Err(IngestError::UnsupportedMediaType {
                what: "content encoding",
                value: other.to_string(),
                expected: "use gzip or none",
            }
            .into());
        }
    };
    let limit = ingest.limits().max_request_bytes;
    Ok(ingest.admission().read(headers, body, limit, gzip).await.map_err(IngestError::from)?)
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).unwrap_or(0)
}

async fn store(ingest: &Ingest, tenant: &Tenant, requests: Vec<ExportProfilesServiceRequest>) -> Result<(), PushError> {
    for request in requests {
        ingest.export(tenant.clone(), request, super::Raw::None).await?;
    }
    Ok(())
}

// ---- connect-RPC push ----------------------------------------------------------------------

async fn push(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    let json = match header_str(&headers, "content-type").split(';').next().unwrap_or("").trim() {
        "application/proto" | "application/protobuf" | "application/x-protobuf" => false,
        "application/json" => true,
        other => {
            let err = PushError::Ingest(IngestError::UnsupportedMediaType {
                what: "content type",
                value: other.to_string(),
                expected: "use application/proto or application/json",
            });
            return err.into_connect_response();
        }
    };
    match push_inner(&ingest, &headers, body, json).await {
        Ok(()) if json => ([(header::CONTENT_TYPE, "application/json")], "{}").into_response(),
        Ok(()) => {
            ([(header::CONTENT_TYPE, "application/proto")], wire::PushResponse {}.encode_to_vec()).into_response()
        }
        Err(err) => err.into_connect_response(),
    }
}

async fn push_inner(ingest: &Ingest, headers: &HeaderMap, body: Body, json: bool) -> Result<(), PushError> {
    let tenant = tenant(headers)?;
    ingest.admit().await?;
    let Admitted { bytes: body, held: _held } = read_body(ingest, headers, body).await?;
    let request = if json {
        serde_json::from_slice::<wire::PushRequest>(&body)
            .map_err(|e| IngestError::Malformed { format: "Connect JSON", detail: e.to_string() })?
    } else {
        wire::PushRequest::decode(body)
            .map_err(|e| IngestError::Malformed { format: "protobuf PushRequest", detail: e.to_string() })?
    };
    let requests = convert_push(&request, now_nanos(), ingest.limits().max_request_bytes as u64)?;
    store(ingest, &tenant, requests).await
}

/// Decodes every profile of a push request into OTLP requests, failing on the first bad one
/// before anything is stored. A gzipped profile may inflate to at most `max_profile_bytes`.
pub fn convert_push(
    request: &wire::PushRequest,
    now: u64,
    max_profile_bytes: u64,
) -> Result<Vec<ExportProfilesServiceRequest>, PushError> {
    let mut out = Vec::new();
    for (si, series) in request.series.iter().enumerate() {
        let labels = SeriesLabels::new(None, series.labels.iter().map(|l| (l.name.clone(), l.value.clone())));
        for (pi, sample) in series.samples.iter().enumerate() {
            let profile = analyzer::pprof::decode_merged(&sample.raw_profile, max_profile_bytes)
                .map_err(|source| PushError::Pprof { series: si, sample: pi, source })?;
            let key = if sample.id.is_empty() { sample.raw_profile.as_slice() } else { sample.id.as_bytes() };
            let mut otlp = to_otlp(&profile, &labels, Fallback { time_unix_nano: now, duration_nano: 0 }, key);
            // The stored profile keeps the SHA-256 of the pprof bytes as pushed.
            record_source(&mut otlp, &sample.raw_profile);
            out.push(otlp);
        }
    }
    Ok(out)
}

// ---- legacy /ingest ------------------------------------------------------------------------

/// The query parameters of `/ingest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestParams {
    pub name: Option<String>,
    pub from: Option<String>,
    pub until: Option<String>,
    pub sample_rate: Option<String>,
    pub spy_name: Option<String>,
    pub format: Option<String>,
}

async fn ingest_legacy(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    Query(params): Query<IngestParams>,
    body: Body,
) -> Response {
    match ingest_inner(&ingest, &headers, params, body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(err) => err.into_text_response(),
    }
}

async fn ingest_inner(ingest: &Ingest, headers: &HeaderMap, params: IngestParams, body: Body) -> Result<(), PushError> {
    let tenant = tenant(headers)?;
    ingest.admit().await?;
    let Admitted { bytes: body, held: _held } = read_body(ingest, headers, body).await?;
    let content_type = header_str(headers, "content-type").to_string();
    let limit = ingest.limits().max_request_bytes as u64;
    let request = convert_ingest(&params, &content_type, &body, now_nanos(), limit)?;
    store(ingest, &tenant, vec![request]).await
}

/// Converts one `/ingest` request (its parameters, content type and body) into OTLP. A gzipped
/// pprof may inflate to at most `max_profile_bytes`.
pub fn convert_ingest(
    params: &IngestParams,
    content_type: &str,
    body: &[u8],
    now: u64,
    max_profile_bytes: u64,
) -> Result<ExportProfilesServiceRequest, PushError> {
    let name = params.name.as_deref().unwrap_or("");
    let parsed = parse_name(name)?;
    let from = params.from.as_deref().map(|v| parse_time("from", v)).transpose()?;
    let until = params.until.as_deref().map(|v| parse_time("until", v)).transpose()?;
    let fallback = Fallback {
        time_unix_nano: from.unwrap_or(now),
        duration_nano: match (from, until) {
            (Some(f), Some(u)) => u.saturating_sub(f),
            _ => 0,
        },
    };
    let multipart = content_type.to_ascii_lowercase().starts_with("multipart/form-data");
    // Pyroscope reads a multipart body without a format as pprof (what the Go agent sends).
    let default_format = if multipart { "pprof" } else { "folded" };
    let format = params.format.as_deref().filter(|f| !f.is_empty()).unwrap_or(default_format).to_ascii_lowercase();
    let profile = match format.as_str() {
        "pprof" => {
            let bytes = if multipart { multipart_field(content_type, body, "profile")? } else { body };
            analyzer::pprof::decode_merged(bytes, max_profile_bytes)?
        }
        "folded" => {
            let text = std::str::from_utf8(body)
                .map_err(|e| IngestError::Malformed { format: "folded", detail: format!("not UTF-8: {e}") })?;
            let kind = match parsed.suffix.as_deref() {
                Some("cpu") | Some("itimer") => {
                    let rate = match params.sample_rate.as_deref() {
                        None | Some("") => 100,
                        Some(v) => v.trim().parse::<u32>().map_err(|_| PushError::Param {
                            param: "sampleRate",
                            why: format!("{v:?} is not a positive integer"),
                        })?,
                    };
                    FoldedKind::Cpu { sample_rate: rate }
                }
                Some(other) => FoldedKind::Count(other.to_string()),
                None => FoldedKind::Count(String::new()),
            };
            profile_from_folded(text, &kind).map_err(PushError::Folded)?
        }
        other => return Err(PushError::Format(other.to_string())),
    };
    let mut labels = parsed.labels;
    if let Some(spy) = params.spy_name.as_deref().filter(|s| !s.is_empty()) {
        labels.push(("pyroscope_spy".to_string(), spy.to_string()));
    }
    // Pyroscope's profile name (`process_cpu`, `memory`, ...), as its ingest adapter sets it.
    if !labels.iter().any(|(k, _)| k == "__name__") {
        labels.push(("__name__".to_string(), analyzer::pprof::profile_name(&profile)));
    }
    let labels = SeriesLabels::new(Some(&parsed.app), labels);
    let mut request = to_otlp(&profile, &labels, fallback, body);
    // The stored profile keeps the SHA-256 of what was pushed: the pprof (a multipart body's
    // `profile` field) or the folded text, as it came (a gzipped pprof still gzipped).
    let source = if multipart && format == "pprof" { multipart_field(content_type, body, "profile")? } else { body };
    record_source(&mut request, source);
    Ok(request)
}

/// A unix time given in seconds, milliseconds, microseconds or nanoseconds, as Pyroscope
/// accepts them; returned in nanoseconds.
fn parse_time(param: &'static str, value: &str) -> Result<u64, PushError> {
    let v: u64 =
        value.trim().parse().map_err(|_| PushError::Param { param, why: format!("{value:?} is not a unix time") })?;
    Ok(match v {
        0..=99_999_999_999 => v.saturating_mul(1_000_000_000),
        100_000_000_000..=99_999_999_999_999 => v.saturating_mul(1_000_000),
        100_000_000_000_000..=99_999_999_999_999_999 => v.saturating_mul(1_000),
        _ => v,
    })
}

/// The profile type suffixes Pyroscope's agents append to the application name.
const SUFFIXES: &[&str] = &[
    "cpu",
    "itimer",
    "wall",
    "alloc_objects",
    "alloc_space",
    "inuse_objects",
    "inuse_space",
    "goroutines",
    "mutex_count",
    "mutex_duration",
    "block_count",
    "block_duration",
    "lock_count",
    "lock_duration",
    "alloc_in_new_tlab_objects",
    "alloc_in_new_tlab_bytes",
];

/// `app.cpu{k=v,...}` taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppName {
    pub app: String,
    /// The profile type suffix (`cpu`, `inuse_space`, ...), when the name has a known one.
    pub suffix: Option<String>,
    pub labels: Vec<(String, String)>,
}

/// Parses Pyroscope's application name syntax `app.cpu{key=value,key2=value2}`. Keys are
/// letters, digits, `_` and `.`; values run to the next `,` or `}` (a `\` escapes one
/// character).
pub fn parse_name(name: &str) -> Result<AppName, PushError> {
    let bad = |why| PushError::Name { name: name.chars().take(200).collect(), why };
    let name = name.trim();
    let (base, rest) = match name.find('{') {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    };
    if base.is_empty() {
        return Err(bad("the application name is empty"));
    }
    if base.contains(['}', ',', '=']) {
        return Err(bad("the application name contains `}`, `,` or `=`"));
    }
    let (app, suffix) = match base.rsplit_once('.') {
        Some((app, suffix)) if !app.is_empty() && SUFFIXES.contains(&suffix) => (app, Some(suffix.to_string())),
        _ => (base, None),
    };
    let mut labels = Vec::new();
    if let Some(rest) = rest {
        let Some(inner) = rest.strip_suffix('}') else {
            return Err(bad("the label set does not end with `}`"));
        };
        let mut chars = inner.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
            if chars.peek().is_none() {
                break;
            }
            let mut key = String::new();
            while let Some(c) = chars.next_if(|c| *c != '=') {
                key.push(c);
            }
            let key = key.trim().to_string();
            if chars.next() != Some('=') {
                return Err(bad("a label has no `=`"));
            }
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                return Err(bad("a label key is empty or has characters other than letters, digits, `_` and `.`"));
            }
            let mut value = String::new();
            while let Some(c) = chars.next_if(|c| *c != ',') {
                if c == '\\' {
                    match chars.next() {
                        Some(escaped) => value.push(escaped),
                        None => return Err(bad("a label value ends with `\\`")),
                    }
                } else if c == '{' || c == '}' {
                    return Err(bad("a label value contains an unescaped brace"));
                } else {
                    value.push(c);
                }
            }
            labels.push((key, value.trim().to_string()));
        }
    }
    Ok(AppName { app: app.to_string(), suffix, labels })
}

/// The content of the form field `field` of a `multipart/form-data` body.
pub fn multipart_field<'a>(content_type: &str, body: &'a [u8], field: &str) -> Result<&'a [u8], PushError> {
    let boundary = content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| PushError::Multipart("no boundary in the content type".into()))?;
    let delimiter = format!("--{boundary}");
    let mut rest = body;
    let start = find(rest, delimiter.as_bytes()).ok_or_else(|| PushError::Multipart("no part delimiter".into()))?;
    rest = &rest[start + delimiter.len()..];
    let next_delimiter = format!("\r\n--{boundary}");
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        let Some(headers_end) = find(rest, b"\r\n\r\n") else {
            return Err(PushError::Multipart("a part has no end of headers".into()));
        };
        let headers = String::from_utf8_lossy(&rest[..headers_end]);
        let content = &rest[headers_end + 4..];
        let Some(end) = find(content, next_delimiter.as_bytes()) else {
            return Err(PushError::Multipart("a part has no closing delimiter".into()));
        };
        if part_name(&headers).as_deref() == Some(field) {
            return Ok(&content[..end]);
        }
        rest = &content[end + next_delimiter.len()..];
    }
    Err(PushError::Multipart(format!("no {field:?} field")))
}

fn part_name(headers: &str) -> Option<String> {
    let disposition = headers.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    disposition.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case("name").then(|| v.trim().trim_matches('"').to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        let n = parse_name("my.app.cpu{env=staging, service_version=1.2}").unwrap();
        assert_eq!(n.app, "my.app");
        assert_eq!(n.suffix.as_deref(), Some("cpu"));
        assert_eq!(
            n.labels,
            vec![("env".to_string(), "staging".to_string()), ("service_version".to_string(), "1.2".to_string())]
        );
        let n = parse_name("plain").unwrap();
        assert_eq!((n.app.as_str(), n.suffix, n.labels.len()), ("plain", None, 0));
        assert_eq!(parse_name(r"a.cpu{k=x\,y}").unwrap().labels[0].1, "x,y");
        assert_eq!(parse_name("a.cpu{}").unwrap().labels.len(), 0);
    }

    #[test]
    fn garbage_names_are_errors_not_panics() {
        for bad in
            ["", "{", "{}", "a{", "a{k}", "a{=v}", "a{k=v", "a{k=v}}", "a{k=\\", "a{k=\\}", "a{k-x=1}", "a}", "é{é=é"]
        {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn multipart_finds_the_profile_field() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"sample_type_config\"\r\n\r\n{}\r\n--XX\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\nPROF\r\nBYTES\r\n--XX--\r\n";
        let field = multipart_field("multipart/form-data; boundary=XX", body, "profile").unwrap();
        assert_eq!(field, b"PROF\r\nBYTES");
        assert!(multipart_field("multipart/form-data; boundary=XX", body, "other").is_err());
        assert!(multipart_field("multipart/form-data", body, "profile").is_err());
        for cut in 0..body.len() {
            let _ = multipart_field("multipart/form-data; boundary=XX", &body[..cut], "profile");
        }
    }

    /// Each way of pushing keeps the SHA-256 of what was pushed: the raw pprof of a Connect
    /// push, the `profile` field of a multipart `/ingest`, a raw `/ingest` body, folded text.
    #[test]
    fn pushed_profiles_keep_the_sha256_of_the_pushed_bytes() {
        use sha2::Digest;
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus/go-dev/fast/cpu-10s.pb.gz");
        let pprof = std::fs::read(path).unwrap();
        let sha = |bytes: &[u8]| -> [u8; 32] { sha2::Sha256::digest(bytes).into() };
        let digests = |request: ExportProfilesServiceRequest| -> Vec<Option<[u8; 32]>> {
            let mut d: Vec<_> =
                crate::model::profile::rows_from_request(request).iter().map(|r| r.profile.source_sha256).collect();
            d.dedup();
            d
        };
        let push = wire::PushRequest {
            series: vec![wire::RawProfileSeries {
                labels: vec![],
                samples: vec![wire::RawSample { raw_profile: pprof.clone(), id: "id-1".into() }],
            }],
        };
        let converted = convert_push(&push, 5, 1 << 24).unwrap();
        assert_eq!(digests(converted.into_iter().next().unwrap()), [Some(sha(&pprof))]);

        let params = IngestParams { name: Some("app.cpu".into()), format: Some("pprof".into()), ..Default::default() };
        let raw = convert_ingest(&params, "application/octet-stream", &pprof, 5, 1 << 24).unwrap();
        assert_eq!(digests(raw), [Some(sha(&pprof))]);
        let mut form = b"--XX\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"p\"\r\n\r\n".to_vec();
        form.extend_from_slice(&pprof);
        form.extend_from_slice(b"\r\n--XX--\r\n");
        let params = IngestParams { name: Some("app.cpu".into()), ..Default::default() };
        let multipart = convert_ingest(&params, "multipart/form-data; boundary=XX", &form, 5, 1 << 24).unwrap();
        assert_eq!(digests(multipart), [Some(sha(&pprof))], "the field's bytes, not the form's");
        let folded = convert_ingest(&params, "text/plain", b"main;work 2\n", 5, 1 << 24).unwrap();
        assert_eq!(digests(folded), [Some(sha(b"main;work 2\n"))]);
    }

    #[test]
    fn times_in_any_unit() {
        let s = 1_700_000_000u64;
        for v in [s, s * 1_000, s * 1_000_000, s * 1_000_000_000] {
            assert_eq!(parse_time("from", &v.to_string()).unwrap(), s * 1_000_000_000);
        }
        assert!(parse_time("from", "yesterday").is_err());
    }

    #[test]
    fn folded_ingest_converts() {
        let params = IngestParams {
            name: Some("shop.cpu{region=eu}".into()),
            sample_rate: Some("100".into()),
            ..Default::default()
        };
        let request = convert_ingest(&params, "text/plain", b"main;work 2\n", 5, 1 << 20).unwrap();
        let rows = crate::model::profile::rows_from_request(request);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].value, 20_000_000);
        assert_eq!(rows[0].resource.service_name.as_deref(), Some("shop"));
        assert_eq!(rows[0].time_unix_nano, 5);
        let bad = IngestParams { format: Some("trie".into()), name: Some("a".into()), ..Default::default() };
        assert!(matches!(convert_ingest(&bad, "", b"", 0, 1 << 20), Err(PushError::Format(_))));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Hostile bytes and names are refused or converted, never a panic.
        #[test]
        fn hostile_input_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            name in proptest::collection::vec(proptest::sample::select(&['a', '.', '{', '}', '=', ',', '\\', ' ', 'é', 'c', 'p', 'u'][..]), 0..24),
        ) {
            let name: String = name.into_iter().collect();
            let _ = parse_name(&name);
            let _ = multipart_field("multipart/form-data; boundary=a", &bytes, "profile");
            for format in ["pprof", "folded"] {
                let params = IngestParams { name: Some(name.clone()), format: Some(format.into()), ..Default::default() };
                let _ = convert_ingest(&params, "multipart/form-data; boundary=a", &bytes, 0, 1 << 20);
                let _ = convert_ingest(&params, "application/octet-stream", &bytes, 0, 1 << 20);
            }
            if let Ok(request) = wire::PushRequest::decode(bytes.as_slice()) {
                let _ = convert_push(&request, 0, 1 << 20);
            }
        }
    }
}
