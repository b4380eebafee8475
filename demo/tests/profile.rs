//! Real CPU profiles of the running service: pprof-rs output decodes with the analyzer, has Go's
//! CPU sample types (so the collector derives `process_cpu:cpu:nanoseconds:cpu:nanoseconds`),
//! names `price_items`, and is pushed the way the collector's `/ingest` reads it.
//!
//! One test only: the profiler is process-wide, so two profiling tests must not run at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::post;
use demo::Build;
use demo::load::{self, LoadConfig};
use demo::profile::{self, CpuProfile};
use demo::service::Server;
use demo::telemetry::Telemetry;

type Pushed = Arc<Mutex<Vec<(HashMap<String, String>, Option<String>, Vec<u8>)>>>;

/// An `/ingest` stand-in that records what it is sent.
async fn sink(
    State(pushed): State<Pushed>,
    Query(params): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> &'static str {
    let content_type = headers.get("content-type").map(|v| v.to_str().unwrap().to_string());
    pushed.lock().unwrap().push((params, content_type, body.to_vec()));
    "ok"
}

fn profile_under_load(runtime: &tokio::runtime::Runtime, build: Build) -> CpuProfile {
    let telemetry = Telemetry::disabled(build);
    let server = runtime.block_on(Server::start(build, telemetry.instruments())).unwrap();
    let addr = server.addr();
    let config = LoadConfig { duration: Duration::from_secs(3), ..LoadConfig::new(Duration::ZERO) };
    let profile = std::thread::scope(|scope| {
        let load = scope.spawn(|| load::run(addr, &config).unwrap());
        std::thread::sleep(Duration::from_millis(300));
        let profile = profile::profile_for(Duration::from_millis(2500)).unwrap();
        load.join().unwrap();
        profile
    });
    runtime.block_on(server.stop()).unwrap();
    profile
}

#[test]
fn cpu_profile_has_go_sample_types_names_price_items_and_pushes() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    profile::warm_up().unwrap();
    let cpu = profile_under_load(&runtime, Build::Candidate);

    let decoded = analyzer::pprof::decode(&cpu.pprof_gz).expect("pprof-rs output decodes");
    let types: Vec<(&str, &str)> = decoded.sample_types.iter().map(|t| (t.kind.as_str(), t.unit.as_str())).collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    let period = decoded.period_type.as_ref().expect("period type");
    assert_eq!((period.kind.as_str(), period.unit.as_str()), ("cpu", "nanoseconds"));
    assert_eq!(decoded.period, 10_000_000, "100 Hz");
    assert_eq!(
        analyzer::pprof::profile_type_id(&decoded, 1).map(|t| t.to_string()).as_deref(),
        Some("process_cpu:cpu:nanoseconds:cpu:nanoseconds")
    );
    assert!(decoded.time_nanos > 0 && decoded.duration_nanos > 0);

    let samples: i64 = decoded.samples.iter().map(|s| s.values[0]).sum();
    let in_price_items: i64 = decoded
        .samples
        .iter()
        .filter(|s| decoded.stack(s).any(|f| f.function.ends_with("price_items")))
        .map(|s| s.values[0])
        .sum();
    let names: Vec<&str> = decoded.samples.iter().flat_map(|s| decoded.stack(s).map(|f| &*f.function)).collect();
    assert!(samples > 10, "too few samples: {samples}");
    assert!(in_price_items > 0, "price_items not in the profile; frames: {names:?}");
    // The leaf of a price_items sample is price_items itself (self time), not only a caller.
    assert!(
        decoded.samples.iter().any(|s| decoded.leaf(s).is_some_and(|f| f.function.ends_with("price_items"))),
        "price_items has no self time"
    );
    // Whole stacks, not just leaves: price_items is seen under the checkout handler.
    assert!(
        decoded.samples.iter().any(|s| {
            let names: Vec<&str> = decoded.stack(s).map(|f| &*f.function).collect();
            names.first().is_some_and(|f| f.ends_with("price_items"))
                && names.iter().any(|f| f.starts_with("demo::service::checkout"))
        }),
        "no price_items stack reaches the checkout handler"
    );
    // One function per location and no line: pprof-rs counts a stack's samples by the function
    // each frame is in and keeps only the first sample's addresses, whose inlined frames and
    // lines would be given to all of them.
    for location in &decoded.locations {
        assert_eq!(location.frames.len(), 1, "inlined frames kept: {:?}", location.frames);
        assert_eq!(location.frames[0].line, 0, "a line kept: {:?}", location.frames);
    }
    eprintln!("{samples} samples, {in_price_items} in price_items");

    // Push it to a stand-in of the collector's /ingest.
    let pushed: Pushed = Arc::default();
    let app = axum::Router::new().route("/ingest", post(sink)).with_state(pushed.clone());
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let api = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    profile::push(&client, api, Build::Candidate, &cpu).unwrap();
    let pushed = pushed.lock().unwrap();
    assert_eq!(pushed.len(), 1);
    let (params, content_type, body) = &pushed[0];
    assert_eq!(params["name"], "demo-checkout.cpu{service_version=1.1.0,deployment_environment=demo}");
    assert_eq!(params["format"], "pprof");
    let (from, until): (u64, u64) = (params["from"].parse().unwrap(), params["until"].parse().unwrap());
    assert!(from > 1_600_000_000 && until > from, "{from}..{until}");
    assert_eq!(content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(body, &cpu.pprof_gz);
}
