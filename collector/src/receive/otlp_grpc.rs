//! OTLP/gRPC: the four `Export` services, on tonic.
//!
//! Tenant from the `x-scope-orgid` metadata key. gzip requests are accepted. Limits: tonic
//! itself refuses messages over `max_request_bytes` (it answers `OUT_OF_RANGE`, which
//! [`resource_exhausted_for_oversize`] turns into the `RESOURCE_EXHAUSTED` OTLP expects).

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::profiles::v1development::profiles_service_server::{
    ProfilesService, ProfilesServiceServer,
};
use opentelemetry_proto::tonic::collector::profiles::v1development::{
    ExportProfilesServiceRequest, ExportProfilesServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::otlp_http::outcome_err;
use super::{ExportRequest, Ingest};
use crate::error::IngestError;
use crate::tenant::{TENANT_HEADER, Tenant};

/// The gRPC side of the receivers; one value serves all four services.
#[derive(Debug, Clone)]
pub struct OtlpGrpc {
    ingest: Arc<Ingest>,
}

impl OtlpGrpc {
    pub fn new(ingest: Arc<Ingest>) -> OtlpGrpc {
        OtlpGrpc { ingest }
    }

    async fn handle<R: ExportRequest>(&self, request: Request<R>) -> Result<Response<R::Response>, Status> {
        let result = async {
            let tenant = Tenant::from_header(request.metadata().get(TENANT_HEADER).and_then(|v| v.to_str().ok()))?;
            self.ingest.export(tenant, request.into_inner(), None).await
        }
        .await;
        let telemetry = self.ingest.telemetry();
        match result {
            Ok(response) => {
                telemetry.request("grpc", R::SIGNAL, "ok");
                Ok(Response::new(response))
            }
            Err(err) => {
                telemetry.request("grpc", R::SIGNAL, outcome_err(&err));
                Err(status_of(&err))
            }
        }
    }

    /// The four services, with the size limit and gzip.
    pub fn services(
        &self,
    ) -> (
        TraceServiceServer<OtlpGrpc>,
        MetricsServiceServer<OtlpGrpc>,
        LogsServiceServer<OtlpGrpc>,
        ProfilesServiceServer<OtlpGrpc>,
    ) {
        let limit = self.ingest.limits().max_request_bytes;
        (
            TraceServiceServer::new(self.clone())
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
            MetricsServiceServer::new(self.clone())
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
            LogsServiceServer::new(self.clone())
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
            ProfilesServiceServer::new(self.clone())
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
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

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.handle(request).await
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.handle(request).await
    }
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.handle(request).await
    }
}

#[tonic::async_trait]
impl ProfilesService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportProfilesServiceRequest>,
    ) -> Result<Response<ExportProfilesServiceResponse>, Status> {
        self.handle(request).await
    }
}
