//! OTLP/HTTP sender: one HTTP/1.1 keep-alive connection per worker.
//!
//! Design choice: hyper's low-level `client::conn::http1` instead of a pooled
//! client, so `--connections N` means exactly N TCP connections, each with
//! one request in flight, like N instrumented processes exporting. The body is
//! the pre-encoded protobuf `Bytes`, cloned per request (a reference-count
//! increment, no copy), or with `--fresh` a patched copy of it (`fresh`). A connection the server closed, or one abandoned after
//! a timeout, is replaced on the next request.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::net::TcpStream;

use crate::driver::Outcome;
use crate::fresh::Bodies;
use crate::tls::ClientTls;

const PROTOBUF: &str = "application/x-protobuf";

/// One worker's HTTP/1.1 connection.
#[derive(Debug)]
pub struct HttpSender {
    addr: SocketAddr,
    host: HeaderValue,
    bodies: Bodies,
    tls: Option<ClientTls>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

async fn open(addr: SocketAddr, tls: Option<&ClientTls>) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let context = || format!("connecting to OTLP/HTTP at {addr} (is the server running?)");
    let Some(tls) = tls else {
        let stream = TcpStream::connect(addr).await.with_context(context)?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.context("HTTP/1.1 handshake")?;
        // Drives the connection until the sender is dropped or the peer closes;
        // errors surface to the sender as failed requests.
        tokio::spawn(connection);
        return Ok(sender);
    };
    let stream = tls.connect(addr).await.with_context(context)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.context("HTTP/1.1 handshake")?;
    tokio::spawn(connection);
    Ok(sender)
}

impl HttpSender {
    /// Opens the connection now (over TLS with `tls`), so connection setup is not timed.
    pub async fn connect(addr: SocketAddr, bodies: Bodies, tls: Option<ClientTls>) -> anyhow::Result<Self> {
        let host = HeaderValue::from_str(&addr.to_string()).context("host header")?;
        let sender = open(addr, tls.as_ref()).await?;
        Ok(Self { addr, host, bodies, tls, sender: Some(sender) })
    }

    /// Drops the connection; the next export opens a new one.
    pub fn reset(&mut self) {
        self.sender = None;
    }

    pub async fn export(&mut self) -> Outcome {
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => match open(self.addr, self.tls.as_ref()).await {
                Ok(sender) => self.sender.insert(sender),
                Err(err) => return Outcome::Failed(format!("http connect: {}", root_cause(&err))),
            },
        };
        if sender.ready().await.is_err() {
            self.sender = None;
            return Outcome::Failed("http connection closed".to_owned());
        }
        let request = Request::post("/v1/traces")
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, PROTOBUF)
            .body(Full::new(self.bodies.next_body()));
        let request = match request {
            Ok(request) => request,
            Err(err) => return Outcome::Failed(format!("http request: {err}")),
        };
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(err) => {
                self.sender = None;
                return Outcome::Failed(format!("http transport: {}", hyper_kind(&err)));
            }
        };
        let status = response.status();
        let is_protobuf =
            response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with(PROTOBUF));
        // Read the whole body so the connection can carry the next request.
        let body = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => {
                self.sender = None;
                return Outcome::Failed(format!("http body: {}", hyper_kind(&err)));
            }
        };
        if !status.is_success() {
            return Outcome::Failed(format!("http {}", status.as_u16()));
        }
        if !is_protobuf || body.is_empty() {
            return Outcome::Ok { rejected_spans: 0 };
        }
        match ExportTraceServiceResponse::decode(body) {
            Ok(decoded) => Outcome::Ok { rejected_spans: crate::otlp_grpc::rejected(&decoded) },
            Err(_) => Outcome::Failed(format!("http {} undecodable response", status.as_u16())),
        }
    }
}

/// A short, low-cardinality label for a hyper error.
fn hyper_kind(err: &hyper::Error) -> String {
    let kind = if err.is_canceled() {
        "canceled"
    } else if err.is_closed() || err.is_incomplete_message() {
        "connection closed"
    } else if err.is_timeout() {
        "timeout"
    } else if err.is_parse() {
        "bad response"
    } else {
        // Usually an I/O error such as a reset: name the innermost cause.
        let mut source: &dyn std::error::Error = err;
        while let Some(next) = source.source() {
            source = next;
        }
        return source.to_string();
    };
    kind.to_owned()
}

fn root_cause(err: &anyhow::Error) -> String {
    err.root_cause().to_string()
}
