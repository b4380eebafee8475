//! What each request needs, from its listener, method and path alone — decided before any
//! handler runs — and the envelope its refusal is written in.
//!
//! The rule is default-closed: a path of the API listener that is not named here is a read of
//! a tenant's data, so a route added later is tenant-checked without a line here; writes are
//! named (the OTLP listeners' every path, the push routes, recording gate runs), every path
//! under `/api/v1/admin/` needs the `admin` scope, and only liveness and readiness are open.

use http::{HeaderMap, Method, header};

use super::Scope;
use crate::telemetry::Listener;

/// What a request needs to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: `/healthz`, `/readyz`.
    Open,
    /// Any valid credential (when credentials are required), no tenant: `/metrics`.
    Authenticated,
    /// `scope` for the request's tenant.
    Tenant(Scope),
}

/// Where the admin routes are: each needs the `admin` scope, whatever its method.
pub const ADMIN_PREFIX: &str = "/api/v1/admin/";

/// What the API listener's write routes are.
const API_WRITES: &[&str] = &["/ingest", "/push.v1.PusherService/Push", "/api/v1/write"];

pub fn need(listener: Listener, method: &Method, path: &str) -> Need {
    match listener {
        Listener::OtlpGrpc | Listener::OtlpHttp => match path {
            "/healthz" | "/readyz" => Need::Open,
            _ => Need::Tenant(Scope::Write),
        },
        Listener::Api => match path {
            "/healthz" | "/readyz" => Need::Open,
            "/metrics" => Need::Authenticated,
            "/api/v1/gate/runs" if method == Method::POST => Need::Tenant(Scope::GateWrite),
            // Every method: an admin route is never a read.
            p if p.starts_with(ADMIN_PREFIX) => Need::Tenant(Scope::Admin),
            p if API_WRITES.contains(&p) => Need::Tenant(Scope::Write),
            _ => Need::Tenant(Scope::Read),
        },
    }
}

/// The error envelope of the API family a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// gRPC (OTLP/gRPC, Tempo's streaming search): a `grpc-status` in a 200 answer.
    Grpc,
    /// OTLP/HTTP: a `google.rpc.Status`, protobuf or JSON as the request was.
    OtlpHttp { json: bool },
    /// Connect (Pyroscope's querier and push): `{"code","message"}`.
    Connect,
    /// Prometheus's HTTP API: `{"status":"error","errorType","error"}`.
    Prometheus,
    /// Tempo's API and Prometheus remote write: plain text.
    Text,
    /// Our own API: `{"error"}`.
    Native,
}

const PROMETHEUS: &[&str] = &[
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/query_exemplars",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/metadata",
    "/api/v1/rules",
    "/api/v1/status/buildinfo",
];

pub fn family(listener: Listener, path: &str, headers: &HeaderMap) -> Family {
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or(b"");
    match listener {
        Listener::OtlpGrpc => Family::Grpc,
        Listener::OtlpHttp => Family::OtlpHttp { json: content_type.starts_with(b"application/json") },
        Listener::Api if content_type.starts_with(b"application/grpc") => Family::Grpc,
        Listener::Api => {
            if path.starts_with("/querier.v1.") || path.starts_with("/push.v1.") {
                Family::Connect
            } else if PROMETHEUS.contains(&path) || (path.starts_with("/api/v1/label/") && path.ends_with("/values")) {
                Family::Prometheus
            } else if path == "/api/v1/write"
                || path == "/ingest"
                || (path.starts_with("/api/") && !path.starts_with("/api/v1/"))
            {
                Family::Text
            } else {
                Family::Native
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_named_reads_are_the_default_and_only_health_is_open() {
        let (get, post) = (Method::GET, Method::POST);
        assert_eq!(
            need(Listener::OtlpGrpc, &post, "/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
            Need::Tenant(Scope::Write)
        );
        assert_eq!(need(Listener::OtlpHttp, &post, "/v1/traces"), Need::Tenant(Scope::Write));
        assert_eq!(need(Listener::OtlpHttp, &post, "/anything"), Need::Tenant(Scope::Write));
        assert_eq!(need(Listener::Api, &get, "/healthz"), Need::Open);
        assert_eq!(need(Listener::Api, &get, "/metrics"), Need::Authenticated);
        assert_eq!(need(Listener::Api, &post, "/api/v1/gate/runs"), Need::Tenant(Scope::GateWrite));
        assert_eq!(need(Listener::Api, &get, "/api/v1/gate/runs"), Need::Tenant(Scope::Read));
        assert_eq!(need(Listener::Api, &post, "/api/v1/write"), Need::Tenant(Scope::Write));
        assert_eq!(need(Listener::Api, &post, "/push.v1.PusherService/Push"), Need::Tenant(Scope::Write));
        assert_eq!(need(Listener::Api, &get, "/api/v1/some-route-added-later"), Need::Tenant(Scope::Read));
        assert_eq!(need(Listener::Api, &post, "/api/v1/admin/delete_tenant"), Need::Tenant(Scope::Admin));
        assert_eq!(need(Listener::Api, &get, "/api/v1/admin/delete_tenant"), Need::Tenant(Scope::Admin));
        assert_eq!(need(Listener::Api, &get, "/api/v1/admin/added-later"), Need::Tenant(Scope::Admin));
        assert_eq!(need(Listener::Api, &get, "/healthz/../api/v1/traces/1"), Need::Tenant(Scope::Read));
    }

    #[test]
    fn refusals_use_the_envelope_of_the_api_asked() {
        let none = HeaderMap::new();
        let mut grpc = HeaderMap::new();
        grpc.insert(header::CONTENT_TYPE, "application/grpc".parse().unwrap());
        assert_eq!(family(Listener::Api, "/tempopb.StreamingQuerier/Search", &grpc), Family::Grpc);
        assert_eq!(family(Listener::Api, "/querier.v1.QuerierService/LabelNames", &none), Family::Connect);
        assert_eq!(family(Listener::Api, "/api/v1/query_range", &none), Family::Prometheus);
        assert_eq!(family(Listener::Api, "/api/v1/label/job/values", &none), Family::Prometheus);
        assert_eq!(family(Listener::Api, "/api/search", &none), Family::Text);
        assert_eq!(family(Listener::Api, "/api/v2/traces/abc", &none), Family::Text);
        assert_eq!(family(Listener::Api, "/api/v1/flamegraph", &none), Family::Native);
        assert_eq!(family(Listener::OtlpHttp, "/v1/traces", &none), Family::OtlpHttp { json: false });
    }
}
