//! `google.rpc.Status`, the body of an OTLP/HTTP error response.
//!
//! Written from the published message definition (googleapis, `google/rpc/status.proto`:
//! `int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3;`); the
//! details are never sent, so field 3 is left out.

/// The error body OTLP/HTTP sends, in protobuf or JSON as the request was.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    /// A `google.rpc.Code` value (the gRPC status code number).
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}
