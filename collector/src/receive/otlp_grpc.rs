//! OTLP/gRPC: the four `Export` services, on tonic.
//!
//! The services are written here rather than taken from the generated servers so that the
//! decoder can keep the request's protobuf bytes: a fully valid request goes to the
//! write-ahead log as received, with no re-encoding (as on the HTTP path). The wire types
//! are still `opentelemetry-proto`'s.
//!
//! Tenant from the `x-scope-orgid` metadata key; gzip accepted. Oversized messages are
//! refused by tonic with `OUT_OF_RANGE`, which [`resource_exhausted_for_oversize`] turns
//! into the `RESOURCE_EXHAUSTED` OTLP expects.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::otlp_http::outcome_err;
use super::{ExportRequest, Ingest};
use crate::error::IngestError;
use crate::tenant::{TENANT_HEADER, Tenant};

/// A decoded request with the bytes it was decoded from.
#[derive(Debug)]
pub struct Raw<R> {
    pub request: R,
    pub bytes: Bytes,
}

/// Protobuf codec that keeps the encoded request.
#[derive(Debug)]
pub struct RawCodec<R>(PhantomData<fn() -> R>);

impl<R> Default for RawCodec<R> {
    fn default() -> Self {
        RawCodec(PhantomData)
    }
}

impl<R: ExportRequest> Codec for RawCodec<R> {
    type Encode = R::Response;
    type Decode = Raw<R>;
    type Encoder = ResponseEncoder<R::Response>;
    type Decoder = RawDecoder<R>;

    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder(PhantomData)
    }
}

#[derive(Debug)]
pub struct ResponseEncoder<T>(PhantomData<fn(T)>);

impl<T: Message> Encoder for ResponseEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.encoded_len());
        item.encode(dst).map_err(|e| Status::internal(format!("cannot encode response: {e}")))
    }
}

#[derive(Debug)]
pub struct RawDecoder<R>(PhantomData<fn() -> R>);

impl<R: ExportRequest> Decoder for RawDecoder<R> {
    type Item = Raw<R>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Raw<R>>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        let request = R::decode(bytes.clone())
            .map_err(|e| IngestError::Malformed { format: "OTLP/protobuf", detail: e.to_string() }.to_grpc_status())?;
        Ok(Some(Raw { request, bytes }))
    }
}

/// One OTLP export service (traces, metrics, logs or profiles).
#[derive(Debug)]
pub struct ExportService<R> {
    ingest: Arc<Ingest>,
    _request: PhantomData<fn() -> R>,
}

impl<R> Clone for ExportService<R> {
    fn clone(&self) -> Self {
        ExportService { ingest: Arc::clone(&self.ingest), _request: PhantomData }
    }
}

impl<R: ExportRequest> NamedService for ExportService<R> {
    const NAME: &'static str = R::GRPC_SERVICE;
}

impl<R: ExportRequest> UnaryService<Raw<R>> for ExportService<R> {
    type Response = R::Response;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R::Response>, Status>> + Send>>;

    fn call(&mut self, request: Request<Raw<R>>) -> Self::Future {
        let ingest = Arc::clone(&self.ingest);
        Box::pin(async move {
            let tenant = Tenant::from_header(request.metadata().get(TENANT_HEADER).and_then(|v| v.to_str().ok()));
            let result = match tenant {
                Ok(tenant) => {
                    let Raw { request, bytes } = request.into_inner();
                    ingest.export(tenant, request, Some(bytes)).await
                }
                Err(e) => Err(e.into()),
            };
            let telemetry = ingest.telemetry();
            match result {
                Ok(response) => {
                    telemetry.request("grpc", R::SIGNAL, if response.encoded_len() > 0 { "partial" } else { "ok" });
                    Ok(Response::new(response))
                }
                Err(err) => {
                    telemetry.request("grpc", R::SIGNAL, outcome_err(&err));
                    Err(status_of(&err))
                }
            }
        })
    }
}

impl<R: ExportRequest> tower::Service<http::Request<tonic::body::Body>> for ExportService<R> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            if req.uri().path() != R::GRPC_EXPORT_PATH {
                let status = Status::unimplemented(format!("no method {}", req.uri().path()));
                return Ok(status.into_http());
            }
            if let Err(err) = service.ingest.admit() {
                service.ingest.telemetry().request("grpc", R::SIGNAL, outcome_err(&err));
                return Ok(status_of(&err).into_http());
            }
            let limit = service.ingest.limits().max_request_bytes;
            let mut grpc = Grpc::new(RawCodec::<R>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit);
            Ok(grpc.unary(service, req).await)
        })
    }
}

/// The four services.
#[derive(Debug, Clone)]
pub struct OtlpGrpc {
    ingest: Arc<Ingest>,
}

impl OtlpGrpc {
    pub fn new(ingest: Arc<Ingest>) -> OtlpGrpc {
        OtlpGrpc { ingest }
    }

    fn service<R>(&self) -> ExportService<R> {
        ExportService { ingest: Arc::clone(&self.ingest), _request: PhantomData }
    }

    pub fn services(
        &self,
    ) -> (
        ExportService<ExportTraceServiceRequest>,
        ExportService<ExportMetricsServiceRequest>,
        ExportService<ExportLogsServiceRequest>,
        ExportService<ExportProfilesServiceRequest>,
    ) {
        (self.service(), self.service(), self.service(), self.service())
    }
}

fn status_of(err: &IngestError) -> Status {
    let mut status = err.to_grpc_status();
    if let Some(after) = err.kind().retry_after()
        && let Ok(v) = after.as_secs().to_string().parse()
    {
        status.metadata_mut().insert("retry-after", v);
    }
    status
}

/// Rewrites tonic's `OUT_OF_RANGE` answer to an oversized message into `RESOURCE_EXHAUSTED`.
/// The collector itself never answers `OUT_OF_RANGE`, so no other answer is touched.
pub fn resource_exhausted_for_oversize<B>(mut response: http::Response<B>) -> http::Response<B> {
    let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
    if response.headers().get("grpc-status").is_some_and(|v| v.as_bytes() == out_of_range.as_bytes()) {
        let code = (tonic::Code::ResourceExhausted as i32).to_string();
        if let Ok(v) = http::HeaderValue::from_str(&code) {
            response.headers_mut().insert("grpc-status", v);
        }
    }
    response
}
