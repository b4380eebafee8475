//! OTLP/gRPC sender: one tonic channel (one HTTP/2 connection) per worker.
//!
//! Design choice: the request goes out through a raw-bytes codec instead of
//! the generated `TraceServiceClient` with its prost codec. The generated
//! client would need the request struct cloned and re-encoded on every call,
//! which costs the client more CPU than the copy of the pre-encoded bytes
//! into tonic's frame buffer done here; on a 2-core machine that CPU is taken
//! from the server being measured. The call is the same one the generated
//! client makes (`tonic::client::Grpc::unary` on the same method path), and
//! the response is still decoded as `ExportTraceServiceResponse` so partial
//! success (rejected spans) is counted.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::{BufMut, Bytes};
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::Status;
use tonic::client::Grpc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};

use crate::driver::Outcome;
use crate::fresh::Bodies;
use crate::tls::{ClientTls, GrpcTlsConnector};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Sends already-encoded protobuf bytes; decodes the export response.
#[derive(Debug, Clone, Copy, Default)]
struct RawExportCodec;

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
struct ResponseDecoder;

impl Codec for RawExportCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ResponseDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|err| Status::internal(format!("decoding export response: {err}")))
    }
}

/// One worker's gRPC connection.
#[derive(Debug)]
pub struct GrpcSender {
    client: Grpc<Channel>,
    bodies: Bodies,
}

impl GrpcSender {
    /// Opens the HTTP/2 connection now (over TLS with `tls`), so connection setup is not timed.
    pub async fn connect(addr: SocketAddr, bodies: Bodies, tls: Option<&ClientTls>) -> anyhow::Result<Self> {
        let endpoint =
            Endpoint::from_shared(format!("http://{addr}")).context("building gRPC endpoint")?.tcp_nodelay(true);
        let channel = match tls {
            None => endpoint.connect().await,
            Some(tls) => endpoint.connect_with_connector(GrpcTlsConnector { addr, tls: tls.clone() }).await,
        }
        .with_context(|| format!("connecting to OTLP/gRPC at {addr} (is the server running?)"))?;
        Ok(Self { client: Grpc::new(channel), bodies })
    }

    pub async fn export(&mut self) -> Outcome {
        if let Err(err) = self.client.ready().await {
            return Outcome::Failed(format!("grpc not ready: {err}"));
        }
        let request = tonic::Request::new(self.bodies.next_body());
        let path = PathAndQuery::from_static(EXPORT_PATH);
        match self.client.unary(request, path, RawExportCodec).await {
            Ok(response) => Outcome::Ok { rejected_spans: rejected(response.get_ref()) },
            Err(status) => Outcome::Failed(format!("grpc {:?}", status.code())),
        }
    }
}

/// Spans the server says it dropped (OTLP partial success).
pub fn rejected(response: &ExportTraceServiceResponse) -> u64 {
    response.partial_success.as_ref().map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
}
