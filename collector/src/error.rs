//! Failures of the collector and the one mapping from each to an HTTP status and a gRPC code.
//!
//! The OTLP specification fixes which failures a client may retry: malformed or invalid data
//! never (HTTP 400 / `INVALID_ARGUMENT`), overload always (HTTP 429 or 503 with `Retry-After`
//! / `UNAVAILABLE`). Both receivers and the query API call [`ErrorKind::http_status`] and
//! [`ErrorKind::grpc_code`], so a failure is answered alike whatever transport it came on.

use std::time::Duration;

use http::StatusCode;

/// How a failure is reported to a client; the taxonomy both transports share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request could not be decoded or its content is invalid; retrying will not help.
    BadRequest,
    /// The request body is larger than the configured limit.
    TooLarge,
    /// The body's content type or encoding is not one the endpoint accepts.
    UnsupportedMediaType,
    /// No such endpoint or object.
    NotFound,
    /// The collector is temporarily unable to take the request; retry after a pause.
    Overloaded,
    /// Storage failed (for example a full disk); nothing was acknowledged; retryable.
    Unavailable,
    /// The request body stopped arriving, or took too long to arrive; it was cut off.
    TimedOut,
    /// A write without a valid credential (`auth`).
    Unauthorized,
    /// A write the collector is not configured to take from anyone (`auth`).
    Forbidden,
    /// A fault of the collector itself (a task that panicked, an answer that could not be
    /// encoded): not the client's doing, and not worth retrying.
    Internal,
}

impl ErrorKind {
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::TimedOut => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorKind::BadRequest | ErrorKind::UnsupportedMediaType => tonic::Code::InvalidArgument,
            ErrorKind::TooLarge => tonic::Code::ResourceExhausted,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::Overloaded | ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::TimedOut => tonic::Code::DeadlineExceeded,
            ErrorKind::Unauthorized => tonic::Code::Unauthenticated,
            ErrorKind::Forbidden => tonic::Code::PermissionDenied,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }

    /// How long a client should wait before retrying, for the retryable kinds.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            ErrorKind::Overloaded => Some(Duration::from_secs(1)),
            ErrorKind::Unavailable => Some(Duration::from_secs(5)),
            _ => None,
        }
    }
}

/// Why an export request was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("malformed {format} body: {detail}")]
    Malformed { format: &'static str, detail: String },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("request body is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The request is small but would take far more memory once stored (items sharing one
    /// large value, or many nearly empty items).
    #[error(
        "request of {size} bytes would take {bytes} bytes of memory ({what}); at most {factor} times its size is accepted (limits.max_memory_expansion)"
    )]
    Expands { what: &'static str, bytes: u64, size: u64, factor: u64 },
    #[error("unsupported {what} {value:?}; {expected}")]
    UnsupportedMediaType { what: &'static str, value: String, expected: &'static str },
    #[error("{0}")]
    Tenant(#[from] crate::tenant::TenantError),
    #[error("collector is overloaded: {0}; retry later")]
    Overloaded(String),
    #[error("storage unavailable: {0}; nothing from this request was stored")]
    Storage(String),
    #[error(transparent)]
    Body(#[from] crate::receive::admission::BodyError),
}

impl IngestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            IngestError::Malformed { .. } | IngestError::Invalid(_) | IngestError::Tenant(_) => ErrorKind::BadRequest,
            IngestError::TooLarge { .. } | IngestError::Expands { .. } => ErrorKind::TooLarge,
            IngestError::UnsupportedMediaType { .. } => ErrorKind::UnsupportedMediaType,
            IngestError::Overloaded(_) => ErrorKind::Overloaded,
            IngestError::Storage(_) => ErrorKind::Unavailable,
            IngestError::Body(e) => e.kind(),
        }
    }

    /// The gRPC status for this failure, with `Retry-After` carried as metadata for the
    /// retryable kinds (OTLP/gRPC clients read the standard `RetryInfo` detail; most fall
    /// back to exponential backoff, which `UNAVAILABLE` asks for).
    pub fn to_grpc_status(&self) -> tonic::Status {
        tonic::Status::new(self.kind().grpc_code(), self.to_string())
    }
}

/// Why a query was refused.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("bad query: {0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Tenant(#[from] crate::tenant::TenantError),
    /// A stored part could not be read (retryable: the store is unavailable, not the query bad).
    #[error("storage read failed: {0}")]
    Storage(#[from] crate::store::parts::PartError),
    /// The gate's run history could not be read or written.
    #[error("gate history: {0}")]
    History(#[from] crate::history::HistoryError),
    /// A fault of the collector, not of the query ([`ErrorKind::Internal`]).
    #[error("internal error: {0}")]
    Internal(String),
    /// The store failed while changing data (a full disk); retrying may help.
    #[error("{0}")]
    StoreFailed(String),

    #[error(transparent)]
    Body(#[from] crate::receive::admission::BodyError),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthError),
}

impl QueryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::BadRequest(_) | QueryError::Tenant(_) => ErrorKind::BadRequest,
            QueryError::NotFound(_) => ErrorKind::NotFound,
            QueryError::Storage(_) | QueryError::History(_) => ErrorKind::Unavailable,
            QueryError::Internal(_) => ErrorKind::Internal,
            QueryError::StoreFailed(_) => ErrorKind::Unavailable,
            QueryError::Body(e) => e.kind(),
            QueryError::Auth(crate::auth::AuthError::NotConfigured) => ErrorKind::Forbidden,
            QueryError::Auth(crate::auth::AuthError::Unauthorized) => ErrorKind::Unauthorized,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds_are_the_ones_otlp_names() {
        // OTLP/HTTP: 429, 502, 503, 504 are retryable; everything else is not.
        for kind in [
            ErrorKind::BadRequest,
            ErrorKind::TooLarge,
            ErrorKind::UnsupportedMediaType,
            ErrorKind::NotFound,
            ErrorKind::Overloaded,
            ErrorKind::Unavailable,
            ErrorKind::TimedOut,
            ErrorKind::Unauthorized,
            ErrorKind::Forbidden,
            ErrorKind::Internal,
        ] {
            let retryable = matches!(kind.http_status().as_u16(), 429 | 502 | 503 | 504);
            assert_eq!(retryable, kind.retry_after().is_some(), "{kind:?}");
            assert_eq!(retryable, matches!(kind.grpc_code(), tonic::Code::Unavailable), "{kind:?}");
        }
    }

    // A panicked query task or an answer that could not be encoded used to answer 503 "retry
    // later": a fault of ours is 500 / `INTERNAL`, and not retryable.
    #[test]
    fn internal_errors_are_500_and_not_retryable() {
        let err = QueryError::Internal("query task failed: panicked".into());
        assert_eq!(err.kind().http_status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.kind().grpc_code(), tonic::Code::Internal);
        assert_eq!(err.kind().retry_after(), None);
    }
}
