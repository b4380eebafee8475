//! What each fuzz target does with its input, and the invariants it asserts: one function per
//! target (`fuzz_targets/<name>.rs` only calls it), so an input saved from a crash replays the
//! same code in the normal test suite (`collector/tests/fuzz_regressions.rs` includes this
//! file and feeds it every file of `testdata/fuzz/<target>/`).

use analyzer::leaks::{self, LeakOptions};
use collector::config::Limits;
use collector::model::pprof::{Fallback, SeriesLabels, to_otlp};
use collector::model::{Rows, attrs};
use collector::query::params::{Selector, parse_time};
use collector::receive::pprof_push::{IngestParams, convert_ingest, convert_push, parse_name, wire};
use collector::receive::{ExportRequest, Rejections};
use collector::store::wal::{SegmentScan, scan_segment};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// A fixed "now" for conversions that fall back to the arrival time, so a crash reproduces.
pub const NOW_UNIX_NANO: u64 = 1_764_000_000_000_000_000;

/// The largest decompressed profile the targets let through (the server's default request
/// limit).
pub const MAX_PROFILE_BYTES: u64 = 16 << 20;

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// Every target, by name, for replaying saved inputs.
pub const TARGETS: &[(&str, Target)] = &[
    ("chunk", chunk),
    ("contracts", contracts),
    ("goroutine_dump", goroutine_dump),
    ("grafana_requests", grafana_requests),
    ("otlp_json", otlp_json),
    ("otlp_logs", otlp_logs),
    ("otlp_metrics", otlp_metrics),
    ("otlp_profiles", otlp_profiles),
    ("otlp_traces", otlp_traces),
    ("pprof", pprof),
    ("promql", promql),
    ("pyroscope_ingest", pyroscope_ingest),
    ("pyroscope_push", pyroscope_push),
    ("query_params", query_params),
    ("remote_write", remote_write),
    ("series_index", series_index),
    ("traceql", traceql),
    ("wal_segment", wal_segment),
];

/// OTLP/protobuf trace export requests, as both receivers decode them: by prost, and read in
/// place (`model::span_wire`), which may take a request only when prost decodes it,
/// validation takes every span, and the rows are the same.
pub fn otlp_traces(data: &[u8]) {
    let wire = collector::model::span_wire::Request::read(data)
        .filter(|r| r.acceptable(&Limits::default()))
        .and_then(|r| r.rows());
    match ExportTraceServiceRequest::decode(data) {
        Ok(request) => {
            let mut validated = request.clone();
            let rejections = validated.validate(&Limits::default());
            if let Some(wire) = wire {
                assert!(
                    rejections.items == 0 && rejections.warnings.is_empty(),
                    "read in place: {}",
                    rejections.message()
                );
                let Rows::Spans(rows) = validated.into_rows() else { unreachable!("trace requests become spans") };
                assert!(rows == wire, "rows read in place differ from prost's");
            }
            check_export(request);
        }
        Err(err) => assert!(wire.is_none(), "read in place what prost refuses: {err}"),
    }
}

/// OTLP/protobuf metric export requests.
pub fn otlp_metrics(data: &[u8]) {
    if let Ok(request) = ExportMetricsServiceRequest::decode(data) {
        check_export(request);
    }
}

/// OTLP/protobuf log export requests.
pub fn otlp_logs(data: &[u8]) {
    if let Ok(request) = ExportLogsServiceRequest::decode(data) {
        check_export(request);
    }
}

/// OTLP/protobuf profile export requests.
pub fn otlp_profiles(data: &[u8]) {
    if let Ok(request) = ExportProfilesServiceRequest::decode(data) {
        check_export(request);
    }
}

/// OTLP/JSON export requests of every signal (the first byte picks the signal), as the HTTP
/// receiver decodes them.
pub fn otlp_json(data: &[u8]) {
    let Some((&signal, body)) = data.split_first() else { return };
    match signal % 4 {
        0 => {
            if let Ok(r) = serde_json::from_slice::<ExportTraceServiceRequest>(body) {
                check_export(r);
            }
        }
        1 => {
            if let Ok(r) = serde_json::from_slice::<ExportMetricsServiceRequest>(body) {
                check_export(r);
            }
        }
        2 => {
            if let Ok(r) = serde_json::from_slice::<ExportLogsServiceRequest>(body) {
                check_export(r);
            }
        }
        _ => {
            if let Ok(r) = serde_json::from_slice::<ExportProfilesServiceRequest>(body) {
                check_export(r);
            }
        }
    }
}

/// pprof profiles (gzipped or plain), as pushes, scrapes and `slo-gate flame` read them: decode,
/// then everything a decoded profile is used for — stacks, the profile name and type ids,
/// `-top` values, goroutine snapshots — and the conversion to an OTLP profile, which ingest
/// must accept whole and store.
pub fn pprof(data: &[u8]) {
    let Ok(profile) = analyzer::pprof::decode_with_limit(data, MAX_PROFILE_BYTES) else { return };
    for sample in &profile.samples {
        let _ = profile.stack(sample).count();
    }
    let _ = analyzer::pprof::profile_name(&profile);
    for index in 0..profile.sample_types.len() {
        let _ = analyzer::pprof::profile_type_id(&profile, index);
        let _ = analyzer::pprof::flat_and_cum(&profile, index);
    }
    let _ = leaks::from_pprof(&profile);
    let labels = SeriesLabels::new(Some("app"), [("service_version".to_string(), "1".to_string())]);
    let fallback = Fallback { time_unix_nano: NOW_UNIX_NANO, duration_nano: 0 };
    let rejections = check_export(to_otlp(&profile, &labels, fallback, data));
    assert_eq!(
        rejections.items,
        0,
        "a decoded pprof converts to an OTLP profile ingest refuses: {}",
        rejections.message()
    );
}

/// Goroutine `debug=2` text dumps, as `slo-gate leaks` reads them: parse, then leak detection
/// over two snapshots a minute apart and every report form.
pub fn goroutine_dump(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(snapshot) = leaks::parse_debug2(&text) else { return };
    assert!(!snapshot.goroutines.is_empty(), "a parsed dump has goroutines");
    assert!(snapshot.goroutines.iter().all(|g| g.count == 1), "a dump has one group per goroutine");
    let mut later = snapshot.clone();
    later.time_unix_nano = 60_000_000_000;
    later.goroutines.extend(snapshot.goroutines.iter().cloned());
    let report = leaks::detect(&[snapshot, later], &LeakOptions::default());
    let _ = leaks::report::text(&report);
    let _ = leaks::report::json(&report);
    let _ = leaks::junit::junit(&report);
    // The same bytes as a file name: reading a time from it never panics.
    let _ = leaks::times::time_in_name(&text);
}

/// Pyroscope's connect `PusherService/Push` bodies (the first byte picks protobuf or Connect
/// JSON): every converted profile is accepted by ingest whole and stored.
pub fn pyroscope_push(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else { return };
    let request = if kind & 1 == 0 {
        wire::PushRequest::decode(body).ok()
    } else {
        serde_json::from_slice::<wire::PushRequest>(body).ok()
    };
    let Some(request) = request else { return };
    match convert_push(&request, NOW_UNIX_NANO, MAX_PROFILE_BYTES) {
        Ok(requests) => {
            for r in requests {
                let rejections = check_export(r);
                assert_eq!(rejections.items, 0, "a converted push is refused: {}", rejections.message());
            }
        }
        Err(e) => {
            let _ = (e.to_string(), e.kind());
        }
    }
}

/// Pyroscope's legacy `/ingest`: the query parameters (`name` with its `app.cpu{k=v}` syntax,
/// `from`, `until`, `sampleRate`, `spyName`, `format`), the content type (multipart bodies) and
/// the body (pprof or folded text), split from the input at NUL bytes; the converted request
/// is accepted by ingest whole and stored.
pub fn pyroscope_ingest(data: &[u8]) {
    let mut parts = data.splitn(8, |b| *b == 0);
    let mut text = || parts.next().map(|p| String::from_utf8_lossy(p).into_owned());
    let name = text();
    if let Some(name) = &name {
        let _ = parse_name(name);
    }
    let params =
        IngestParams { name, from: text(), until: text(), sample_rate: text(), spy_name: text(), format: text() };
    let content_type = text().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    match convert_ingest(&params, &content_type, body, NOW_UNIX_NANO, MAX_PROFILE_BYTES) {
        Ok(request) => {
            let rejections = check_export(request);
            assert_eq!(rejections.items, 0, "a converted /ingest is refused: {}", rejections.message());
        }
        Err(e) => {
            let _ = (e.to_string(), e.kind());
        }
    }
}

/// SLO contracts and OpenSLO documents: validation places every diagnostic inside the file,
/// and whatever the OpenSLO importer writes without an error is a contract that validates.
pub fn contracts(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // YAML's line breaks: LF, CR, or CR LF.
    let lines = text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count() + 1;
    let (_, diagnostics) = slo_contracts::parse("contract.yaml", text);
    for d in &diagnostics {
        assert!(d.location.line as usize <= lines, "diagnostic past the end of the file: {d}");
    }
    let (yaml, diagnostics) = slo_contracts::import_openslo("slo.yaml", text);
    if !yaml.is_empty() && !diagnostics.iter().any(|d| d.is_error()) {
        let (contracts, problems) = slo_contracts::parse("imported.yaml", &yaml);
        let errors: Vec<String> = problems.iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
        assert!(errors.is_empty(), "the importer wrote a contract that does not validate: {errors:?}\n{yaml}");
        assert!(!contracts.is_empty(), "the importer wrote no contract:\n{yaml}");
    }
    let _ = text.parse::<slo_contracts::HumanDuration>();
}

/// The query API's label selectors and time parameters: a parsed selector written back with
/// quoting parses to the same matchers; a parsed time reads back the same.
pub fn query_params(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(selector) = Selector::parse("selector", Some(text)) {
        let written = selector.to_string();
        let again = Selector::parse("selector", Some(&written)).expect("a written selector parses");
        assert_eq!(again.to_string(), written, "a selector changes when written and parsed again");
    }
    if let Ok(Some(nanos)) = parse_time("from", Some(text)) {
        let secs = nanos / 1_000_000_000;
        assert_eq!(parse_time("from", Some(&secs.to_string())).ok(), Some(Some(secs * 1_000_000_000)));
    }
}

/// Write-ahead log segments as found on disk after a crash or damage: scanning never claims
/// more valid bytes than there are, and the valid prefix scans again to the same records.
pub fn wal_segment(data: &[u8]) {
    let scan = scan_segment(data);
    let valid = usize::try_from(scan.valid_len).expect("valid length fits");
    assert!(valid <= data.len(), "valid length {valid} past the {} bytes", data.len());
    if scan.damage.is_none() {
        assert_eq!(valid, data.len(), "an undamaged segment is valid to its end");
    }
    let again = scan_segment(&data[..valid]);
    let records = |s: &SegmentScan| -> Vec<(String, &'static str, Vec<u8>)> {
        s.records.iter().map(|r| (r.tenant.as_str().to_string(), r.signal.as_str(), r.payload.to_vec())).collect()
    };
    assert_eq!(records(&again), records(&scan), "the valid prefix scans to other records");
}

/// Runs a decoded request through what `Ingest::export` does before storing it, and checks:
/// validation rejects at most every item; what it accepts converts to rows; the payload the
/// write-ahead log keeps decodes again into as many rows (replay after a crash); and every
/// attribute list stored reads back and writes the same text again (queries decode it).
/// Returns the rejections, for targets whose input should be accepted whole.
pub fn check_export<R: ExportRequest>(mut request: R) -> Rejections {
    let limits = Limits::default();
    let total = request.item_count();
    let rejections = request.validate(&limits);
    assert!(rejections.items <= total, "{} of {total} items rejected", rejections.items);
    if total == 0 || rejections.items == total {
        // Nothing is stored: the answer is an empty success or a 400.
        let _ = rejections.message();
        return rejections;
    }
    let payload = request.encode_to_vec();
    let rows = request.into_rows();
    let replayed = collector::model::decode_rows(R::SIGNAL, &payload).expect("the logged payload replays");
    assert_eq!(replayed.len(), rows.len(), "replay gives another number of rows");
    check_attributes(&rows);
    rejections
}

/// Every attribute text of the rows reads back and re-encodes to itself.
pub fn check_attributes(rows: &Rows) {
    match rows {
        Rows::Spans(rows) => rows.iter().for_each(|r| {
            roundtrip("span attributes", &r.attributes);
            roundtrip("resource attributes", &r.resource.attributes);
            roundtrip("scope attributes", &r.scope.attributes);
        }),
        Rows::Metrics(rows) => rows.iter().for_each(|r| {
            roundtrip("point attributes", &r.attributes);
            roundtrip("resource attributes", &r.resource.attributes);
            roundtrip("scope attributes", &r.scope.attributes);
        }),
        Rows::Logs(rows) => rows.iter().for_each(|r| {
            roundtrip("log attributes", &r.attributes);
            roundtrip("resource attributes", &r.resource.attributes);
            roundtrip("scope attributes", &r.scope.attributes);
        }),
        Rows::Profiles(rows) => rows.iter().for_each(|r| {
            roundtrip("sample attributes", &r.attributes);
            roundtrip("resource attributes", &r.resource.attributes);
            roundtrip("scope attributes", &r.scope.attributes);
        }),
        // Remote-written series hold labels, no attribute text.
        Rows::Series(_) => {}
    }
}

fn roundtrip(what: &str, text: &str) {
    let decoded = match attrs::decode(text) {
        Ok(decoded) => decoded,
        Err(e) => panic!("{what} {text:?} do not read back: {e}"),
    };
    assert_eq!(attrs::encode(&decoded), text, "{what} change when read back and written again");
}

/// Three small traces TraceQL queries are evaluated over: a frontend calling a slow, failing
/// backend; one service alone; a trace whose parent is missing (two root candidates).
fn traceql_traces() -> Vec<traceql::Trace> {
    use traceql::{Span, SpanKind, SpanStatus, Trace, Value};
    let span = |id: u8, parent: Option<u8>, service: &str, name: &str, start: u64, end: u64| Span {
        span_id: [id; 8],
        parent_span_id: parent.map(|p| [p; 8]),
        name: name.into(),
        kind: if parent.is_none() { SpanKind::Server } else { SpanKind::Client },
        status: if name.contains("fail") { SpanStatus::Error } else { SpanStatus::Unset },
        status_message: String::new(),
        start_unix_nano: start,
        end_unix_nano: end,
        resource: vec![("service.name".into(), Value::Str(service.into()))],
        attributes: vec![
            ("http.route".into(), Value::Str(format!("/{name}"))),
            ("http.response.status_code".into(), Value::Int(if name.contains("fail") { 500 } else { 200 })),
        ],
    };
    vec![
        Trace {
            spans: vec![
                span(1, None, "frontend", "GET /cart", 0, 900_000_000),
                span(2, Some(1), "backend", "fail query", 100_000_000, 800_000_000),
                span(3, Some(2), "db", "select", 200_000_000, 210_000_000),
            ],
        },
        Trace { spans: vec![span(4, None, "backend", "cron", 0, 5_000_000_000)] },
        Trace { spans: vec![span(5, Some(9), "frontend", "orphan", 10, 20), span(6, Some(5), "db", "select", 11, 19)] },
    ]
}

/// TraceQL from users (Grafana's search box): parsing and evaluating any text never panics, and
/// the pruning hints a store relies on never exclude a trace the query matches.
pub fn traceql(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(query) = traceql::parse(text) else { return };
    let hints = query.hints();
    let _ = query.span_local();
    for trace in traceql_traces() {
        if query.matches(&trace).is_none() {
            continue;
        }
        for name in &hints.service_names {
            assert!(trace.spans.iter().any(|s| s.service_name() == Some(name)), "{text}: service hint {name}");
        }
        if let Some(root) = &hints.root_service_name {
            let at = traceql::root_span(&trace).expect("a matching trace with a root hint has a root");
            assert_eq!(trace.spans[at].service_name(), Some(root.as_str()), "{text}: root service hint");
        }
        if let Some(min) = hints.min_span_duration_nanos {
            assert!(trace.spans.iter().any(|s| s.duration_nanos() >= min), "{text}: duration hint {min}");
        }
    }
}

/// The request bodies Grafana's Pyroscope datasource (Connect, protobuf or JSON) and Tempo's
/// streaming search (gRPC, protobuf) send: any bytes decode or are refused without a panic, and
/// what decodes encodes and decodes again to the same bytes.
pub fn grafana_requests(data: &[u8]) {
    use collector::query::pyroscope::proto as py;
    use collector::query::tempo::proto as tempo;

    // Compared by their encodings: a double field may hold NaN, which equals nothing.
    fn round_trip<M: Message + Default>(data: &[u8]) {
        if let Ok(message) = M::decode(data) {
            let bytes = message.encode_to_vec();
            let again = M::decode(bytes.as_slice()).expect("an encoded message decodes");
            assert_eq!(again.encode_to_vec(), bytes, "a message changes when encoded and decoded again");
        }
    }
    fn from_json<M: serde::de::DeserializeOwned>(data: &[u8]) {
        let _ = serde_json::from_slice::<M>(data);
    }
    round_trip::<py::ProfileTypesRequest>(data);
    round_trip::<py::LabelNamesRequest>(data);
    round_trip::<py::LabelValuesRequest>(data);
    round_trip::<py::SeriesRequest>(data);
    round_trip::<py::SelectMergeStacktracesRequest>(data);
    round_trip::<py::SelectMergeSpanProfileRequest>(data);
    round_trip::<py::SelectMergeProfileRequest>(data);
    round_trip::<py::SelectSeriesRequest>(data);
    round_trip::<py::DiffRequest>(data);
    round_trip::<tempo::SearchRequest>(data);
    from_json::<py::ProfileTypesRequest>(data);
    from_json::<py::LabelNamesRequest>(data);
    from_json::<py::LabelValuesRequest>(data);
    from_json::<py::SeriesRequest>(data);
    from_json::<py::SelectMergeStacktracesRequest>(data);
    from_json::<py::SelectMergeSpanProfileRequest>(data);
    from_json::<py::SelectMergeProfileRequest>(data);
    from_json::<py::SelectSeriesRequest>(data);
    from_json::<py::DiffRequest>(data);
}

/// A few series for PromQL to evaluate over: a counter with a reset, a gauge with a stale
/// marker, a classic histogram, in-memory.
fn prom_series() -> prom::model::MemSource {
    use prom::model::{Labels, Sample, Series};
    let labels =
        |pairs: &[(&str, &str)]| Labels::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let points = |f: &dyn Fn(i64) -> f64| (0..40).map(|i| Sample { t: i * 15_000, v: f(i) }).collect::<Vec<_>>();
    let mut series = vec![
        Series {
            labels: labels(&[("__name__", "reqs_total"), ("job", "a")]),
            samples: points(&|i| ((i % 25) * 3) as f64),
        },
        Series {
            labels: labels(&[("__name__", "temp"), ("job", "b")]),
            samples: points(&|i| if i == 30 { f64::from_bits(prom::model::STALE_NAN_BITS) } else { (i as f64).sin() }),
        },
    ];
    for (le, share) in [("0.1", 1.0), ("1", 3.0), ("+Inf", 4.0)] {
        series.push(Series {
            labels: labels(&[("__name__", "lat_bucket"), ("le", le)]),
            samples: points(&|i| share * i as f64),
        });
    }
    prom::model::MemSource(series)
}

/// PromQL from users (Grafana's query editor, dashboards): any text is evaluated or refused
/// without a panic, as an instant and as a range query, within a deadline; a range query's
/// answer has at most one sample per step for each series.
pub fn promql(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let source = prom_series();
    let opts = prom::engine::Options {
        max_samples: 100_000,
        deadline: Some(std::time::Instant::now() + std::time::Duration::from_millis(200)),
        ..Default::default()
    };
    let _ = prom::engine::instant(text, 300_000, &source, &opts);
    if let Ok(series) = prom::engine::range(text, 0, 600_000, 60_000, &source, &opts) {
        for s in &series {
            assert!(s.samples.len() <= 11, "{text}: {} samples for 11 steps", s.samples.len());
            assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t), "{text}: samples out of order");
        }
    }
}

/// Remote-write bodies from Prometheus senders: any bytes decompress or are refused (never past
/// the size limit); the receiver's in-place walk (`prom::remote_write::walk`) accepts exactly
/// what prost's decoding of the `WriteRequest` accepts and sees the same series; a body the
/// receiver's series table admits is admitted whole, and replays from the log (as the store
/// replays it) to the same series and samples.
pub fn remote_write(data: &[u8]) {
    use prost::Message;
    let Ok(raw) = prom::remote_write::decompress(data, 1 << 20) else { return };
    let decoded = prom::remote_write::WriteRequest::decode(raw.as_slice());
    let mut walked = Vec::new();
    let walk = prom::remote_write::walk(&raw, |s| {
        walked.push((
            s.labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>(),
            s.samples.iter().map(|x| (x.timestamp, x.value.to_bits())).collect::<Vec<_>>(),
            s.exemplars,
            s.histograms,
        ));
        Ok::<(), ()>(())
    });
    let request = match (decoded, walk) {
        (Ok(request), Ok(())) => request,
        (Err(_), Err(_)) => return,
        (d, w) => panic!("prost says {:?}, the walk says {w:?}", d.map(|_| ())),
    };
    let expected: Vec<_> = request
        .timeseries
        .iter()
        .map(|t| {
            (
                t.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect::<Vec<_>>(),
                t.samples.iter().map(|x| (x.timestamp, x.value.to_bits())).collect::<Vec<_>>(),
                t.exemplars.len(),
                t.histograms.len(),
            )
        })
        .collect();
    assert_eq!(walked, expected, "the walk sees other series than prost decodes");

    let table = collector::receive::remote_write::SeriesTable::new(1 << 20, 1 << 30);
    let tenant = collector::tenant::Tenant::parse("fuzz").expect("a valid tenant");
    let Ok((batch, _)) = table.admit(&tenant, &raw, usize::MAX) else { return };
    let samples: usize = request.timeseries.iter().map(|t| t.samples.len()).sum();
    assert_eq!(batch.samples, samples, "every sample of an admitted request is kept");
    assert_eq!(batch.series.len(), request.timeseries.len(), "every series of an admitted request is kept");
    let replayed = collector::model::prometheus::series_from_remote_write(data).expect("an admitted body replays");
    let view = |b: &collector::model::prometheus::SeriesBatch| -> Vec<(String, Vec<(i64, u64)>)> {
        b.series
            .iter()
            .map(|s| (s.labels.to_string(), s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect()))
            .collect()
    };
    assert_eq!(view(&replayed), view(&batch), "the replay gives other series than the ingest");
}

/// Metric-store sample chunks (`prom::chunk`), two ways from the same bytes.
///
/// As a chunk: decoded or refused without a panic; what decodes has strictly increasing times,
/// encodes again, and that chunk decodes to the same samples bit for bit, in full and in ranges.
///
/// As samples to encode: a start time (8 bytes), then (time step, value bits) pairs of 8 + 8
/// bytes, little-endian; each step moves the time from the previous one (a step past the i64
/// range is skipped). The writer refuses exactly the times that do not come after the last
/// sample it took; the chunk it writes decodes to the samples it took, bit for bit, in full and
/// in ranges, and is refused without its last byte.
pub fn chunk(data: &[u8]) {
    use prom::chunk::{self, ChunkError, ChunkWriter};
    use prom::model::Sample;

    if let Ok(samples) = chunk::decode(data) {
        assert!(samples.windows(2).all(|w| w[0].t < w[1].t), "decoded times do not increase");
        let again = chunk::encode(&samples).expect("decoded samples encode");
        check_chunk(&again, &samples);
    }

    let Some((start, pairs)) = data.split_first_chunk::<8>() else { return };
    let mut t = i64::from_le_bytes(*start);
    let mut writer = ChunkWriter::new();
    let mut taken: Vec<Sample> = Vec::new();
    for pair in pairs.chunks_exact(16) {
        let (step, bits) = pair.split_at(8);
        let step = i64::from_le_bytes(step.try_into().expect("8 bytes"));
        let v = f64::from_bits(u64::from_le_bytes(bits.try_into().expect("8 bytes")));
        let Some(next) = t.checked_add(step) else { continue };
        t = next;
        let result = writer.append(t, v);
        match taken.last() {
            Some(last) if t <= last.t => {
                assert!(matches!(result, Err(ChunkError::OutOfOrder { .. })), "t={t} after {}: {result:?}", last.t)
            }
            _ => {
                result.expect("a later time is taken");
                taken.push(Sample { t, v });
            }
        }
    }
    assert_eq!(writer.len(), taken.len());
    assert_eq!(writer.min_t(), taken.first().map(|s| s.t));
    assert_eq!(writer.max_t(), taken.last().map(|s| s.t));
    let bytes = writer.finish();
    check_chunk(&bytes, &taken);
    assert!(chunk::decode(&bytes[..bytes.len() - 1]).is_err(), "a chunk without its last byte decodes");
}

/// `bytes` decodes to `samples`, bit for bit, and so do ranges of it: everything, from the
/// second sample to the one before the last, and from just after the first to just before the
/// last.
fn check_chunk(bytes: &[u8], samples: &[prom::model::Sample]) {
    let bits = |s: &[prom::model::Sample]| s.iter().map(|s| (s.t, s.v.to_bits())).collect::<Vec<_>>();
    let decoded = prom::chunk::decode(bytes).expect("an encoded chunk decodes");
    assert_eq!(bits(&decoded), bits(samples), "chunk {bytes:02x?}");
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else { return };
    let second = samples.get(1).unwrap_or(last);
    let before_last = samples.len().checked_sub(2).map_or(first, |i| &samples[i]);
    for (min_t, max_t) in
        [(i64::MIN, i64::MAX), (second.t, before_last.t), (first.t.saturating_add(1), last.t.saturating_sub(1))]
    {
        let mut out = Vec::new();
        prom::chunk::decode_range(bytes, min_t, max_t, &mut out).expect("a range of an encoded chunk decodes");
        let expected: Vec<_> = samples.iter().copied().filter(|s| min_t <= s.t && s.t <= max_t).collect();
        assert_eq!(bits(&out), bits(&expected), "range [{min_t}, {max_t}] of chunk {bytes:02x?}");
    }
}

/// Index regions of the metric series store's segments (`collector::store::series`), as a
/// damaged or hostile file holds them: parsing never panics or over-allocates; an index that
/// parses answers every lookup in bounds, each series is in the postings of each of its labels,
/// and no chunk lies outside the chunk region.
pub fn series_index(data: &[u8]) {
    use collector::store::series::parse_index;
    let Ok(index) = parse_index(data, data.len() as u64) else { return };
    for id in 0..index.len() as u32 {
        let e = index.entry(id);
        assert!(e.min_t <= e.max_t, "series {id} ends before it starts");
        for (name, value) in index.labels(id).iter() {
            assert!(index.postings(name, value).contains(&id), "series {id} missing from {name}={value:?}");
            assert!(index.label(id, name).is_some(), "series {id} has no {name}");
        }
    }
}

/// Credentials as they arrive: the first byte picks the decoder, the rest is its input.
/// - a SPIFFE ID (`identity::SpiffeId::parse`): what parses is well formed and prints back as
///   the input (with the scheme in lower case);
/// - a client certificate's DER (`tls::spiffe::svid_id`): never panics;
/// - a token file's text (`auth::tokens::Tokens::parse`): an error names a line of the input;
/// - a bearer JWT against a fixed HMAC JWKS (`auth::jwt::Jwks::verify`): never panics, and no
///   input that was not signed with the key is accepted.
pub fn credentials(data: &[u8]) {
    use collector::auth::jwt::Jwks;
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 4 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            if let Ok(id) = collector::identity::SpiffeId::parse(text) {
                assert!(id.as_str().eq_ignore_ascii_case(text), "{text:?} → {id}");
                assert!(collector::identity::SpiffeId::parse(id.as_str()).is_ok());
                assert!(!id.trust_domain().is_empty());
            }
        }
        1 => {
            let der = rustls::pki_types::CertificateDer::from(rest.to_vec());
            let _ = collector::tls::spiffe::svid_id(&der);
        }
        2 => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            if let Err((line, _)) = collector::auth::tokens::Tokens::parse(text) {
                assert!(line >= 1 && line <= text.lines().count(), "line {line} of {} lines", text.lines().count());
            }
        }
        _ => {
            let Ok(token) = std::str::from_utf8(rest) else { return };
            let jwks = Jwks::from_json(
                std::path::Path::new("jwks.json"),
                br#"{"keys":[{"kty":"oct","kid":"k","alg":"HS256","k":"ZnV6ei1rZXktZnV6ei1rZXktZnV6ei1rZXktMzJi"}]}"#,
            )
            .expect("the fixed JWKS parses");
            let config: collector::auth::config::JwtConfig =
                toml::from_str("jwks_file = \"jwks.json\"").expect("config");
            // Arbitrary bytes are never a token signed with the key: nothing is accepted.
            assert!(jwks.verify(token, &config).is_err(), "accepted {token:?}");
        }
    }
}
