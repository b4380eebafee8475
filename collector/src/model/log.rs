//! Log records as rows.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

use super::{ResourceColumns, Row, RowKey, ScopeColumns, attrs};

/// One log record.
#[derive(Debug, Clone)]
pub struct LogRow {
    /// When the event happened; the observed time when the record carries none.
    pub time_unix_nano: u64,
    pub observed_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: String,
    /// OTLP/JSON of the body `AnyValue`; empty when the record has no body.
    pub body: String,
    pub attributes: String,
    pub dropped_attributes_count: u32,
    pub flags: u32,
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
    pub event_name: String,
    pub resource: Arc<ResourceColumns>,
    pub scope: Arc<ScopeColumns>,
}

impl Row for LogRow {
    fn key(&self) -> RowKey<'_> {
        RowKey {
            time_unix_nano: self.time_unix_nano,
            service_name: self.resource.service_name.as_ref(),
            service_version: self.resource.service_version.as_ref(),
        }
    }
}

pub fn rows_from_request(request: ExportLogsServiceRequest) -> Vec<LogRow> {
    let mut rows = Vec::with_capacity(crate::receive::validate::count_logs(&request) as usize);
    for rl in request.resource_logs {
        let resource = Arc::new(ResourceColumns::from_otlp(rl.resource.as_ref(), &rl.schema_url));
        for sl in rl.scope_logs {
            let scope = Arc::new(ScopeColumns::from_otlp(sl.scope.as_ref(), &sl.schema_url));
            for r in sl.log_records {
                rows.push(LogRow {
                    time_unix_nano: if r.time_unix_nano != 0 { r.time_unix_nano } else { r.observed_time_unix_nano },
                    observed_unix_nano: r.observed_time_unix_nano,
                    severity_number: r.severity_number,
                    severity_text: r.severity_text,
                    body: r.body.as_ref().map(|b| serde_json::to_string(b).unwrap_or_default()).unwrap_or_default(),
                    attributes: attrs::encode(&r.attributes),
                    dropped_attributes_count: r.dropped_attributes_count,
                    flags: r.flags,
                    trace_id: r.trace_id.as_slice().try_into().ok().filter(|t| *t != [0; 16]),
                    span_id: r.span_id.as_slice().try_into().ok().filter(|s| *s != [0; 8]),
                    event_name: r.event_name,
                    resource: Arc::clone(&resource),
                    scope: Arc::clone(&scope),
                });
            }
        }
    }
    rows
}
