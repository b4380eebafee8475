//! The evaluator's input: one trace as plain values. The collector maps its stored spans to these
//! types; nothing here knows about OTLP or storage.

/// One trace: its spans in any order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    pub spans: Vec<Span>,
}

/// One span with the fields TraceQL can read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Span {
    pub span_id: [u8; 8],
    /// `None` (or an id that is not in the trace) makes this span a root candidate.
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub status: SpanStatus,
    pub status_message: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// Resource attributes (`resource.x`); `service.name` is the service.
    pub resource: Vec<(String, Value)>,
    /// Span attributes (`span.x`).
    pub attributes: Vec<(String, Value)>,
}

impl Span {
    /// `end - start`, 0 when the end is before the start.
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// The resource's `service.name` when it is a string.
    pub fn service_name(&self) -> Option<&str> {
        match lookup(&self.resource, "service.name") {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }
}

/// The first value of `key` in an attribute list.
pub(crate) fn lookup<'a>(attrs: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// OpenTelemetry span kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

/// OpenTelemetry span status code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SpanStatus {
    #[default]
    Unset,
    Ok,
    Error,
}
