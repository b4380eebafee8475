//! Storage rows: the flat, columnar-friendly form of each signal.
//!
//! An OTLP request is a tree (resource → scope → items). Storage flattens it to one row per
//! item (span, metric data point, log record, profile sample), carrying the resource and
//! scope along. Values that are the same for every item of a resource (its attributes, the
//! service name and version) are shared `Arc<str>`s, so a 512-span request holds one copy.
//!
//! Attributes, events, links, exemplars and the other nested parts are kept as their OTLP/JSON
//! text: lossless (types, arrays, maps and bytes survive), readable by any Parquet reader, and
//! turned back into OTLP by [`attrs::decode`]. The attributes queries filter and group on
//! every day (`service.name`, `service.version`, `deployment.environment.name`, `http.route`,
//! `http.response.status_code`) are also first-class columns.

pub mod attrs;
pub mod log;
pub mod metric;
pub mod pprof;
pub mod profile;
pub mod prometheus;
pub mod span;
pub mod span_wire;
pub mod text;

use std::sync::Arc;

pub use log::LogRow;
pub use metric::MetricRow;
pub use profile::ProfileRow;
pub use span::SpanRow;

use crate::signal::Signal;

/// Decodes a stored WAL payload (an OTLP export request of `signal`, as accepted) back into
/// rows: the store's replay, the same conversion the ingest path made.
pub fn decode_rows(signal: Signal, payload: &[u8]) -> Result<Rows, String> {
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        profiles::v1development::ExportProfilesServiceRequest, trace::v1::ExportTraceServiceRequest,
    };
    use prost::Message;
    let decode = |e: prost::DecodeError| e.to_string();
    Ok(match signal {
        Signal::Traces => {
            Rows::Spans(span::rows_from_request(ExportTraceServiceRequest::decode(payload).map_err(decode)?))
        }
        Signal::Metrics => {
            Rows::Metrics(metric::rows_from_request(ExportMetricsServiceRequest::decode(payload).map_err(decode)?))
        }
        Signal::Logs => Rows::Logs(log::rows_from_request(ExportLogsServiceRequest::decode(payload).map_err(decode)?)),
        Signal::Profiles => {
            Rows::Profiles(profile::rows_from_request(ExportProfilesServiceRequest::decode(payload).map_err(decode)?))
        }
    })
}

/// The rows of one accepted request, all of one signal.
#[derive(Debug, Clone)]
pub enum Rows {
    Spans(Vec<SpanRow>),
    Metrics(Vec<MetricRow>),
    Logs(Vec<LogRow>),
    Profiles(Vec<ProfileRow>),
    /// Remote-written samples: metrics kept only as Prometheus series, never as Parquet rows.
    Series(prometheus::SeriesBatch),
}

impl Rows {
    pub fn signal(&self) -> Signal {
        match self {
            Rows::Spans(_) => Signal::Traces,
            Rows::Metrics(_) | Rows::Series(_) => Signal::Metrics,
            Rows::Logs(_) => Signal::Logs,
            Rows::Profiles(_) => Signal::Profiles,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Rows::Spans(r) => r.len(),
            Rows::Metrics(r) => r.len(),
            Rows::Series(b) => b.samples,
            Rows::Logs(r) => r.len(),
            Rows::Profiles(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with the time and service of every row.
    pub fn for_each_key(&self, mut f: impl FnMut(&RowKey<'_>)) {
        fn each<R: Row>(rows: &[R], f: &mut impl FnMut(&RowKey<'_>)) {
            for r in rows {
                f(&r.key())
            }
        }
        match self {
            Rows::Spans(r) => each(r, &mut f),
            Rows::Metrics(r) => each(r, &mut f),
            Rows::Series(b) => {
                for s in b.series.iter().flat_map(|s| &s.samples) {
                    f(&RowKey { time_unix_nano: s.t as u64 * 1_000_000, service_name: None, service_version: None })
                }
            }
            Rows::Logs(r) => each(r, &mut f),
            Rows::Profiles(r) => each(r, &mut f),
        }
    }
}

impl Rows {
    /// An estimate of the memory the rows hold: each row, the text it owns, and each value it
    /// shares with other rows (resource, scope, metric descriptor, profile, stack, attribute
    /// set) once. The head is bounded by this, not by the size of the requests, which a
    /// request whose items share one large value can exceed many times over.
    pub fn memory_bytes(&self) -> u64 {
        let mut shared = SharedValues::default();
        let own: usize = match self {
            Rows::Spans(rows) => rows
                .iter()
                .map(|r| {
                    shared.common(&r.resource, &r.scope);
                    std::mem::size_of_val(r)
                        + r.trace_state.memory_bytes()
                        + r.name.memory_bytes()
                        + r.status_message.memory_bytes()
                        + r.http_route.as_ref().map_or(0, text::Text::memory_bytes)
                        + r.attributes.memory_bytes()
                        + r.events.memory_bytes()
                        + r.links.memory_bytes()
                })
                .sum(),
            Rows::Metrics(rows) => rows
                .iter()
                .map(|r| {
                    shared.common(&r.resource, &r.scope);
                    let m = &r.metric;
                    shared.add(m, m.name.len() + m.description.len() + m.unit.len() + m.metadata.len());
                    std::mem::size_of_val(r) + r.attributes.capacity() + r.detail.capacity() + r.exemplars.capacity()
                })
                .sum(),
            Rows::Logs(rows) => rows
                .iter()
                .map(|r| {
                    shared.common(&r.resource, &r.scope);
                    std::mem::size_of_val(r)
                        + r.severity_text.capacity()
                        + r.body.capacity()
                        + r.attributes.capacity()
                        + r.event_name.capacity()
                })
                .sum(),
            Rows::Profiles(rows) => rows
                .iter()
                .map(|r| {
                    shared.common(&r.resource, &r.scope);
                    let p = &r.profile;
                    let texts = p.sample_type.len() + p.sample_unit.len() + p.period_type.len() + p.period_unit.len();
                    shared.add(p, std::mem::size_of_val(&**p) + texts);
                    shared.add(&r.stack, r.stack.len());
                    shared.add(&r.attributes, r.attributes.len());
                    std::mem::size_of_val(r)
                })
                .sum(),
            Rows::Series(b) => return b.memory_bytes(),
        };
        (own + self.spare_bytes() + shared.bytes) as u64
    }

    /// Room the rows' vector holds beyond its rows.
    fn spare_bytes(&self) -> usize {
        fn spare<T>(v: &Vec<T>) -> usize {
            (v.capacity() - v.len()) * std::mem::size_of::<T>()
        }
        match self {
            Rows::Spans(v) => spare(v),
            Rows::Metrics(v) => spare(v),
            Rows::Logs(v) => spare(v),
            Rows::Profiles(v) => spare(v),
            Rows::Series(_) => 0,
        }
    }
}

/// Shared values already counted, by address.
#[derive(Default)]
struct SharedValues {
    seen: std::collections::HashSet<usize>,
    last: [usize; 2],
    bytes: usize,
}

impl SharedValues {
    /// Counts `bytes` (plus the allocation's header) for `value` unless it was counted.
    fn add<T: ?Sized>(&mut self, value: &Arc<T>, bytes: usize) {
        if self.seen.insert(Arc::as_ptr(value) as *const () as usize) {
            self.bytes += bytes + 2 * std::mem::size_of::<usize>();
        }
    }

    fn common(&mut self, resource: &Arc<ResourceColumns>, scope: &Arc<ScopeColumns>) {
        let key = [Arc::as_ptr(resource) as usize, Arc::as_ptr(scope) as usize];
        // Rows of one resource and scope come together: skip the set for repeats.
        if key == self.last {
            return;
        }
        self.last = key;
        let r = &**resource;
        let text = |v: &Option<Arc<str>>| v.as_ref().map_or(0, |s| s.len());
        self.add(
            resource,
            std::mem::size_of_val(r)
                + r.attributes.len()
                + r.schema_url.len()
                + text(&r.service_name)
                + text(&r.service_version)
                + text(&r.deployment_environment),
        );
        let sc = &**scope;
        self.add(
            scope,
            std::mem::size_of_val(sc) + sc.name.len() + sc.version.len() + sc.attributes.len() + sc.schema_url.len(),
        );
    }
}

/// What every row can say about itself: when it happened and which service sent it.
#[derive(Debug)]
pub struct RowKey<'a> {
    pub time_unix_nano: u64,
    pub service_name: Option<&'a Arc<str>>,
    pub service_version: Option<&'a Arc<str>>,
}

/// A storage row of one signal.
pub trait Row: Sized + Send + Sync + 'static {
    fn key(&self) -> RowKey<'_>;
}

/// The attributes every row of a resource shares, computed once per resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceColumns {
    pub service_name: Option<Arc<str>>,
    pub service_version: Option<Arc<str>>,
    pub deployment_environment: Option<Arc<str>>,
    /// OTLP/JSON of the resource attributes.
    pub attributes: Arc<str>,
    pub dropped_attributes_count: u32,
    pub schema_url: Arc<str>,
}

impl ResourceColumns {
    pub fn from_otlp(
        resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>,
        schema_url: &str,
    ) -> ResourceColumns {
        let Some(resource) = resource else {
            return ResourceColumns { schema_url: Arc::from(schema_url), ..Default::default() };
        };
        let attrs = &resource.attributes;
        let text = |key: &str| attrs::find(attrs, key).and_then(attrs::as_text).map(Arc::from);
        ResourceColumns {
            service_name: text("service.name"),
            service_version: text("service.version"),
            deployment_environment: text("deployment.environment.name").or_else(|| text("deployment.environment")),
            attributes: Arc::from(attrs::encode(attrs)),
            dropped_attributes_count: resource.dropped_attributes_count,
            schema_url: Arc::from(schema_url),
        }
    }

    pub fn to_otlp(&self) -> opentelemetry_proto::tonic::resource::v1::Resource {
        opentelemetry_proto::tonic::resource::v1::Resource {
            attributes: attrs::decode_lossy(&self.attributes),
            dropped_attributes_count: self.dropped_attributes_count,
            entity_refs: Vec::new(),
        }
    }
}

/// The instrumentation scope shared by the rows of one scope block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeColumns {
    pub name: Arc<str>,
    pub version: Arc<str>,
    /// OTLP/JSON of the scope attributes.
    pub attributes: Arc<str>,
    pub schema_url: Arc<str>,
}

impl ScopeColumns {
    pub fn from_otlp(
        scope: Option<&opentelemetry_proto::tonic::common::v1::InstrumentationScope>,
        schema_url: &str,
    ) -> ScopeColumns {
        match scope {
            None => ScopeColumns { schema_url: Arc::from(schema_url), ..Default::default() },
            Some(s) => ScopeColumns {
                name: Arc::from(s.name.as_str()),
                version: Arc::from(s.version.as_str()),
                attributes: Arc::from(attrs::encode(&s.attributes)),
                schema_url: Arc::from(schema_url),
            },
        }
    }

    pub fn to_otlp(&self) -> opentelemetry_proto::tonic::common::v1::InstrumentationScope {
        opentelemetry_proto::tonic::common::v1::InstrumentationScope {
            name: self.name.to_string(),
            version: self.version.to_string(),
            attributes: attrs::decode_lossy(&self.attributes),
            dropped_attributes_count: 0,
        }
    }
}
