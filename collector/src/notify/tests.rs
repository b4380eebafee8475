//! Delivery end to end, against receivers served by axum on loopback: exact payloads, retries,
//! timeouts, permanent failures, restarts, a damaged outbox and a full one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use slo_contracts::HumanDuration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;
use crate::config::WebhookFormat;

/// How a receiver answers one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Ok,
    Status(u16),
    RetryAfter(u16, u64),
    /// Answers 200 only after this long (the notifier gives up before).
    Stall(Duration),
}

type Plan = Box<dyn Fn(usize, &str) -> Reply + Send + Sync>;

/// A webhook receiver: answers by `plan(request index, route label)` and keeps what it took.
struct Receiver {
    plan: Plan,
    requests: AtomicUsize,
    /// Every request's arrival time and route label.
    attempts: Mutex<Vec<(Instant, String)>>,
    /// Requests answered 2xx: raw body and headers.
    taken: Mutex<Vec<(String, HeaderMap)>>,
}

impl Receiver {
    fn new(plan: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> Arc<Receiver> {
        Arc::new(Receiver {
            plan: Box::new(plan),
            requests: AtomicUsize::new(0),
            attempts: Mutex::default(),
            taken: Mutex::default(),
        })
    }

    fn taken(&self) -> usize {
        self.taken.lock().unwrap().len()
    }

    fn bodies(&self) -> Vec<String> {
        self.taken.lock().unwrap().iter().map(|(b, _)| b.clone()).collect()
    }

    /// The `route` label of each notification taken, in order.
    fn routes(&self) -> Vec<String> {
        self.bodies().iter().map(|b| route_of(b)).collect()
    }
}

/// The `route` label of the (one) alert of a webhook or Alertmanager v2 body.
fn route_of(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    let alert = if value.is_array() { &value[0] } else { &value["alerts"][0] };
    alert["labels"]["route"].as_str().unwrap_or_default().to_string()
}

async fn handle(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let index = receiver.requests.fetch_add(1, SeqCst);
    let text = String::from_utf8(body.to_vec()).unwrap();
    let route = route_of(&text);
    receiver.attempts.lock().unwrap().push((Instant::now(), route.clone()));
    match (receiver.plan)(index, &route) {
        Reply::Ok => {
            receiver.taken.lock().unwrap().push((text, headers));
            StatusCode::OK.into_response()
        }
        Reply::Status(code) => (StatusCode::from_u16(code).unwrap(), "not now").into_response(),
        Reply::RetryAfter(code, secs) => {
            (StatusCode::from_u16(code).unwrap(), [("retry-after", secs.to_string())], "later").into_response()
        }
        Reply::Stall(wait) => {
            tokio::time::sleep(wait).await;
            StatusCode::OK.into_response()
        }
    }
}

/// Serves `receiver` on `listener` until the handle is aborted.
fn serve(listener: TcpListener, receiver: &Arc<Receiver>) -> JoinHandle<()> {
    let app = Router::new()
        .route("/hook", post(handle))
        .route("/api/v2/alerts", post(handle))
        .with_state(Arc::clone(receiver));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

async fn start_receiver(receiver: &Arc<Receiver>) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve(listener, receiver))
}

/// A loopback address nothing listens on (yet).
async fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap()
}

fn webhook(name: &str, addr: SocketAddr) -> WebhookConfig {
    WebhookConfig {
        name: name.to_string(),
        url: format!("http://{addr}/hook"),
        format: WebhookFormat::Webhook,
        timeout: HumanDuration(Duration::from_secs(2)),
        headers: BTreeMap::new(),
        bearer_token_file: None,
        initial_backoff: HumanDuration(Duration::from_millis(10)),
        max_backoff: HumanDuration(Duration::from_millis(50)),
        tls: None,
    }
}

/// Notification `i`: its `route` label is `/r{i}`.
fn alert(i: u32) -> Notification {
    Notification {
        status: AlertStatus::Firing,
        labels: BTreeMap::from([
            ("alertname".to_string(), "LatencyAnomaly".to_string()),
            ("tenant".to_string(), "team-a".to_string()),
            ("route".to_string(), format!("/r{i}")),
        ]),
        annotations: BTreeMap::from([("summary".to_string(), format!("anomaly {i}"))]),
        starts_at_ms: 1_714_564_800_000 + i64::from(i) * 1000,
        ends_at_ms: None,
        generator_url: String::new(),
    }
}

fn routes(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("/r{i}")).collect()
}

/// Polls `check` every 10 ms for up to `secs` seconds.
async fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn counters(telemetry: &Telemetry, name: &str) -> Arc<WebhookCounters> {
    telemetry.notify.webhook(name).unwrap()
}

fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("outbox-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_delivers_each_notification_once_as_alertmanager_webhook_json() {
    let receiver = Receiver::new(|_, _| Reply::Ok);
    let (addr, server) = start_receiver(&receiver).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let mut hook = webhook("oncall", addr);
    hook.bearer_token_file = Some(token);
    hook.headers.insert("X-Scope-OrgID".into(), "team-a".into());
    let telemetry = Arc::new(Telemetry::default());
    let settings = NotifierSettings { external_url: "http://127.0.0.1:4040".into(), ..Default::default() };
    let notifier =
        Notifier::start_with(&dir.path().join("notify"), vec![hook], settings, Arc::clone(&telemetry)).unwrap();

    let labels = BTreeMap::from([
        ("alertname".to_string(), "LatencyAnomaly".to_string()),
        ("route".to_string(), "/checkout".to_string()),
        ("service".to_string(), "checkout".to_string()),
        ("tenant".to_string(), "team-a".to_string()),
    ]);
    let firing = Notification {
        status: AlertStatus::Firing,
        labels: labels.clone(),
        annotations: BTreeMap::from([("summary".to_string(), "P95 of /checkout is 812 ms".to_string())]),
        starts_at_ms: 1_714_564_800_000,
        ends_at_ms: None,
        generator_url: "http://127.0.0.1:4040/api/v1/anomalies?service=checkout".into(),
    };
    let resolved =
        Notification { status: AlertStatus::Resolved, ends_at_ms: Some(1_714_565_130_500), ..firing.clone() };
    notifier.send(firing).await.unwrap();
    notifier.send(resolved).await.unwrap();
    eventually("both are taken", 10, || receiver.taken() == 2).await;
    // Nothing arrives twice.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.requests.load(SeqCst), 2);

    // The fingerprint is prometheus/common's of the four labels (computed independently).
    let expected = |status: &str, ends_at: &str| {
        format!(
            concat!(
                r#"{{"receiver":"oncall","status":"{status}","alerts":[{{"status":"{status}","#,
                r#""labels":{{"alertname":"LatencyAnomaly","route":"/checkout","service":"checkout","tenant":"team-a"}},"#,
                r#""annotations":{{"summary":"P95 of /checkout is 812 ms"}},"#,
                r#""startsAt":"2024-05-01T12:00:00Z","endsAt":"{ends_at}","#,
                r#""generatorURL":"http://127.0.0.1:4040/api/v1/anomalies?service=checkout","fingerprint":"d8caa0f1dbd1da59"}}],"#,
                r#""groupLabels":{{"alertname":"LatencyAnomaly","tenant":"team-a"}},"#,
                r#""commonLabels":{{"alertname":"LatencyAnomaly","route":"/checkout","service":"checkout","tenant":"team-a"}},"#,
                r#""commonAnnotations":{{"summary":"P95 of /checkout is 812 ms"}},"#,
                r#""externalURL":"http://127.0.0.1:4040","version":"4","#,
                r#""groupKey":"{{}}:{{alertname=\"LatencyAnomaly\", tenant=\"team-a\"}}","truncatedAlerts":0}}"#
            ),
            status = status,
            ends_at = ends_at
        )
    };
    let bodies = receiver.bodies();
    assert_eq!(bodies[0], expected("firing", "0001-01-01T00:00:00Z"));
    assert_eq!(bodies[1], expected("resolved", "2024-05-01T12:05:30.5Z"));
    // What a receiver reads back with the same types.
    let message: payload::WebhookMessage = serde_json::from_str(&bodies[1]).unwrap();
    assert_eq!(message.alerts[0].status, AlertStatus::Resolved);
    assert_eq!(message.alerts[0].fingerprint, payload::fingerprint_hex(&labels));

    let headers = receiver.taken.lock().unwrap()[0].1.clone();
    assert_eq!(headers["authorization"], "Bearer s3cret-token");
    assert_eq!(headers["x-scope-orgid"], "team-a");
    assert_eq!(headers["content-type"], "application/json");

    let c = counters(&telemetry, "oncall");
    eventually("the cursor is recorded", 5, || c.queued.load(SeqCst) == 0).await;
    assert_eq!((c.sent.load(SeqCst), c.failed.load(SeqCst), c.retried.load(SeqCst)), (2, 0, 0));
    let metrics = telemetry.render();
    assert!(
        metrics.contains("slo_gate_webhook_notifications_total{webhook=\"oncall\",outcome=\"sent\"} 2\n"),
        "{metrics}"
    );
    assert!(metrics.contains("slo_gate_webhook_queue_length{webhook=\"oncall\"} 0\n"), "{metrics}");
    notifier.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_feeds_alertmanager_v2_alerts_api() {
    let receiver = Receiver::new(|_, _| Reply::Ok);
    let (addr, server) = start_receiver(&receiver).await;
    let dir = tempfile::tempdir().unwrap();
    let mut hook = webhook("am", addr);
    hook.url = format!("http://{addr}/api/v2/alerts");
    hook.format = WebhookFormat::AlertmanagerV2;
    let telemetry = Arc::new(Telemetry::default());
    let notifier = Notifier::start(dir.path(), vec![hook], telemetry).unwrap();
    let mut firing = alert(1);
    firing.generator_url = "http://collector/a/1".into();
    let resolved =
        Notification { status: AlertStatus::Resolved, ends_at_ms: Some(firing.starts_at_ms + 90_000), ..alert(1) };
    notifier.send(firing).await.unwrap();
    notifier.send(resolved).await.unwrap();
    eventually("both are taken", 10, || receiver.taken() == 2).await;
    let labels = r#""labels":{"alertname":"LatencyAnomaly","route":"/r1","tenant":"team-a"},"annotations":{"summary":"anomaly 1"}"#;
    assert_eq!(
        receiver.bodies(),
        [
            format!(r#"[{{{labels},"startsAt":"2024-05-01T12:00:01Z","generatorURL":"http://collector/a/1"}}]"#),
            format!(r#"[{{{labels},"startsAt":"2024-05-01T12:00:01Z","endsAt":"2024-05-01T12:01:31Z"}}]"#),
        ]
    );
    notifier.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_receiver_down_at_first_gets_everything_in_order_once_up() {
    let addr = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Arc::new(Telemetry::default());
    let notifier = Notifier::start(dir.path(), vec![webhook("late", addr)], Arc::clone(&telemetry)).unwrap();
    for i in 0..5 {
        notifier.send(alert(i)).await.unwrap();
    }
    let c = counters(&telemetry, "late");
    eventually("deliveries are retried", 10, || c.retried.load(SeqCst) >= 3).await;
    assert_eq!(c.queued.load(SeqCst), 5);
    let receiver = Receiver::new(|_, _| Reply::Ok);
    let server = serve(TcpListener::bind(addr).await.unwrap(), &receiver);
    eventually("all five are taken", 10, || receiver.taken() == 5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(receiver.routes(), routes(0..5));
    assert_eq!(c.sent.load(SeqCst), 5);
    notifier.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_slow_webhook_is_retried_and_does_not_hold_back_another() {
    // The slow one stalls its first three requests past the timeout.
    let slow = Receiver::new(|n, _| if n < 3 { Reply::Stall(Duration::from_secs(5)) } else { Reply::Ok });
    let fast = Receiver::new(|_, _| Reply::Ok);
    let (slow_addr, slow_server) = start_receiver(&slow).await;
    let (fast_addr, fast_server) = start_receiver(&fast).await;
    let dir = tempfile::tempdir().unwrap();
    let mut slow_hook = webhook("slow", slow_addr);
    slow_hook.timeout = HumanDuration(Duration::from_millis(300));
    let telemetry = Arc::new(Telemetry::default());
    let notifier =
        Notifier::start(dir.path(), vec![slow_hook, webhook("fast", fast_addr)], Arc::clone(&telemetry)).unwrap();
    let started = Instant::now();
    for i in 0..3 {
        notifier.send(alert(i)).await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_millis(500), "send waited for a delivery: {:?}", started.elapsed());
    eventually("the fast webhook takes all three", 5, || fast.taken() == 3).await;
    // Three stalls of 300 ms: the slow one cannot have taken anything yet.
    assert_eq!(slow.taken(), 0, "after {:?}", started.elapsed());
    eventually("the slow webhook takes all three", 10, || slow.taken() == 3).await;
    assert_eq!(slow.routes(), routes(0..3));
    assert_eq!(fast.routes(), routes(0..3));
    let c = counters(&telemetry, "slow");
    assert_eq!(c.retried.load(SeqCst), 3);
    // Every retry was of the first notification, in order.
    assert!(slow.attempts.lock().unwrap()[..4].iter().all(|(_, route)| route == "/r0"));
    notifier.shutdown().await;
    slow_server.abort();
    fast_server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_a_4xx_answer_skips_that_notification_only() {
    let receiver = Receiver::new(|_, route| match route {
        "/r1" => Reply::Status(400),
        "/r3" => Reply::Status(404),
        _ => Reply::Ok,
    });
    let (addr, server) = start_receiver(&receiver).await;
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Arc::new(Telemetry::default());
    let notifier = Notifier::start(dir.path(), vec![webhook("strict", addr)], Arc::clone(&telemetry)).unwrap();
    for i in 0..5 {
        notifier.send(alert(i)).await.unwrap();
    }
    let c = counters(&telemetry, "strict");
    eventually("all five are passed", 10, || c.sent.load(SeqCst) + c.failed.load(SeqCst) == 5).await;
    assert_eq!(receiver.routes(), ["/r0", "/r2", "/r4"]);
    // Each refused notification was tried once, never again.
    assert_eq!(receiver.requests.load(SeqCst), 5);
    assert_eq!((c.sent.load(SeqCst), c.failed.load(SeqCst), c.retried.load(SeqCst)), (3, 2, 0));
    eventually("the queue is empty", 5, || c.queued.load(SeqCst) == 0).await;
    notifier.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_honours_retry_after() {
    let receiver = Receiver::new(|n, _| if n == 0 { Reply::RetryAfter(503, 1) } else { Reply::Ok });
    let (addr, server) = start_receiver(&receiver).await;
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Arc::new(Telemetry::default());
    // The backoff alone would retry within 50 ms.
    let notifier = Notifier::start(dir.path(), vec![webhook("busy", addr)], telemetry).unwrap();
    notifier.send(alert(0)).await.unwrap();
    eventually("it is taken", 10, || receiver.taken() == 1).await;
    let attempts = receiver.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 2);
    let gap = attempts[1].0 - attempts[0].0;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}, not after Retry-After: 1");
    notifier.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_restart_delivers_what_was_not_delivered_and_nothing_twice() {
    let open = Arc::new(AtomicBool::new(false));
    let gate = Arc::clone(&open);
    // Takes /r0 and /r1; the rest only once `open` is set.
    let receiver = Receiver::new(move |_, route| {
        if gate.load(SeqCst) || route == "/r0" || route == "/r1" { Reply::Ok } else { Reply::Status(503) }
    });
    let (addr, server) = start_receiver(&receiver).await;
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Arc::new(Telemetry::default());
    let notifier = Notifier::start(dir.path(), vec![webhook("hook", addr)], Arc::clone(&telemetry)).unwrap();
    for i in 0..5 {
        notifier.send(alert(i)).await.unwrap();
    }
    let c = counters(&telemetry, "hook");
    eventually("two are delivered and recorded", 10, || receiver.taken() == 2 && c.queued.load(SeqCst) == 3).await;
    // One notifier per outbox.
    let second = Notifier::start(dir.path(), vec![webhook("hook", addr)], Arc::clone(&telemetry));
    assert!(matches!(second, Err(NotifyError::Locked { .. })), "{second:?}");
    // Gone mid-queue, without a shutdown. (The receiver opens a moment later, so an attempt
    // the old task had in flight is answered 503: taken, it would be the one duplicate that
    // at-least-once allows, and this test counts exactly.)
    drop(notifier);
    tokio::time::sleep(Duration::from_millis(100)).await;
    open.store(true, SeqCst);
    let notifier = Notifier::start(dir.path(), vec![webhook("hook", addr)], Arc::clone(&telemetry)).unwrap();
    eventually("the other three are delivered", 10, || receiver.taken() == 5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.routes(), routes(0..5));
    // And a third start has nothing left to send.
    notifier.shutdown().await;
    drop(notifier);
    let notifier = Notifier::start(dir.path(), vec![webhook("hook", addr)], Arc::clone(&telemetry)).unwrap();
    assert_eq!(notifier.queued("hook"), Some(0));
    notifier.send(alert(5)).await.unwrap();
    eventually("the next one is delivered", 10, || receiver.taken() == 6).await;
    assert_eq!(receiver.routes(), routes(0..6));
    notifier.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_damaged_outbox_tail_is_cut_with_a_warning_and_the_rest_delivered() {
    let down = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Arc::new(Telemetry::default());
    let notifier = Notifier::start(dir.path(), vec![webhook("hook", down)], Arc::clone(&telemetry)).unwrap();
    for i in 0..3 {
        notifier.send(alert(i)).await.unwrap();
    }
    notifier.shutdown().await;
    drop(notifier);
    // A record cut short after seven bytes, as a crash mid-append leaves it.
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("outbox-"))
        .unwrap();
    let before = std::fs::metadata(&segment).unwrap().len();
    let mut file = std::fs::OpenOptions::new().append(true).open(&segment).unwrap();
    std::io::Write::write_all(&mut file, &[0x40, 0, 0, 0, 0xde, 0xad, 0xbe]).unwrap();
    drop(file);

    let receiver = Receiver::new(|_, _| Reply::Ok);
    let (addr, server) = start_receiver(&receiver).await;
    // Same name, so the same cursor; the receiver has moved.
    let notifier = Notifier::start(dir.path(), vec![webhook("hook", addr)], Arc::clone(&telemetry)).unwrap();
    assert_eq!(telemetry.notify.damaged_bytes.load(SeqCst), 7);
    assert_eq!(std::fs::metadata(&segment).map(|m| m.len()).unwrap_or(before), before);
    eventually("the three intact ones are delivered", 10, || receiver.taken() == 3).await;
    assert_eq!(receiver.routes(), routes(0..3));
    assert!(telemetry.render().contains("slo_gate_webhook_outbox_damaged_bytes_total 7\n"));
    notifier.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_full_outbox_refuses_with_a_clear_error_and_recovers_after_delivery() {
    let addr = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Arc::new(Telemetry::default());
    let settings = NotifierSettings { max_outbox_bytes: 4096, ..Default::default() };
    let notifier =
        Notifier::start_with(dir.path(), vec![webhook("down", addr)], settings, Arc::clone(&telemetry)).unwrap();
    let mut accepted = 0;
    let err = loop {
        match notifier.send(alert(accepted)).await {
            Ok(()) => accepted += 1,
            Err(err) => break err,
        }
        assert!(accepted < 1000, "the outbox never filled");
    };
    assert!(matches!(err, NotifyError::Full { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("outbox is full") && text.contains("of its 4096 bytes"), "{text}");
    assert!(text.contains("webhook \"down\" is furthest behind"), "{text}");
    assert!(accepted >= 10, "only {accepted} fit in 4 KiB");
    assert!(segment_bytes(dir.path()) <= 4096);
    assert_eq!(telemetry.notify.refused.load(SeqCst), 1);
    assert!(telemetry.render().contains("slo_gate_webhook_outbox_refused_total 1\n"));
    // Refusals lose nothing that was accepted: once the webhook is up, all arrive, and the
    // outbox takes new ones again.
    let receiver = Receiver::new(|_, _| Reply::Ok);
    let server = serve(TcpListener::bind(addr).await.unwrap(), &receiver);
    eventually("everything accepted is delivered", 20, || receiver.taken() == accepted as usize).await;
    assert_eq!(receiver.routes(), routes(0..accepted));
    let c = counters(&telemetry, "down");
    eventually("the outbox is compacted", 5, || c.queued.load(SeqCst) == 0).await;
    assert!(segment_bytes(dir.path()) < 4096 / 2, "{} bytes left", segment_bytes(dir.path()));
    notifier.send(alert(accepted)).await.unwrap();
    notifier.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_refuses_bad_notifications_and_bad_webhooks_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Arc::new(Telemetry::default());
    let addr = closed_port().await;
    let mut hook = webhook("hook", addr);
    hook.bearer_token_file = Some(dir.path().join("missing-token"));
    let err = Notifier::start(&dir.path().join("n"), vec![hook], Arc::clone(&telemetry)).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("webhook \"hook\": `bearer_token_file`") && text.contains("missing-token"), "{text}");

    let notifier = Notifier::start(&dir.path().join("n"), vec![webhook("hook", addr)], telemetry).unwrap();
    let mut bad = alert(0);
    bad.labels.remove("tenant");
    bad.labels.insert("bad-name".into(), "x".into());
    bad.status = AlertStatus::Resolved;
    let text = notifier.send(bad).await.unwrap_err().to_string();
    for part in ["label `tenant` is missing", "label name \"bad-name\"", "a resolved notification needs ends_at_ms"] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    let mut backwards = alert(0);
    backwards.ends_at_ms = Some(backwards.starts_at_ms - 1);
    assert!(notifier.send(backwards).await.unwrap_err().to_string().contains("is before starts_at_ms"));
    let mut huge = alert(0);
    huge.annotations.insert("description".into(), "x".repeat(MAX_RECORD_BYTES));
    assert!(matches!(notifier.send(huge).await, Err(NotifyError::TooLarge { .. })));
    assert_eq!(notifier.queued("hook"), Some(0));
    notifier.shutdown().await;
}

/// How fast notifications become durable and reach a local receiver (one `fsync` per send, one
/// cursor rename per delivery). Run with
/// `cb nextest run -p collector --run-ignored only notify_throughput --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn notify_throughput() {
    const N: u32 = 500;
    let receiver = Receiver::new(|_, _| Reply::Ok);
    let (addr, server) = start_receiver(&receiver).await;
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Arc::new(Telemetry::default());
    let notifier = Notifier::start(dir.path(), vec![webhook("hook", addr)], Arc::clone(&telemetry)).unwrap();
    let started = Instant::now();
    for i in 0..N {
        notifier.send(alert(i)).await.unwrap();
    }
    let sent = started.elapsed();
    let record_bytes = serde_json::to_vec(&alert(0)).unwrap().len() + 16;
    eventually("all are delivered", 120, || receiver.taken() == N as usize).await;
    let delivered = started.elapsed();
    println!(
        "{N} notifications: durable in {:.1} ms each ({:.0}/s); all delivered after {:.2} s ({:.0}/s); \
         {record_bytes} bytes per outbox record; outbox in {}",
        sent.as_secs_f64() * 1e3 / f64::from(N),
        f64::from(N) / sent.as_secs_f64(),
        delivered.as_secs_f64(),
        f64::from(N) / delivered.as_secs_f64(),
        dir.path().display(),
    );
    notifier.shutdown().await;
    server.abort();
}

/// Debian's Alertmanager (`apt-get install prometheus-alertmanager`), the real peer of the
/// `alertmanager-v2` format.
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// Kills the child process when dropped, so a failing test leaves no Alertmanager behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Alertmanager takes the `alertmanager-v2` format, and what it then sends its own
/// webhook receiver has the fields, group key and fingerprint slo-gate's `webhook` format has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_real_alertmanager_takes_v2_alerts_and_sends_the_same_webhook_payload() {
    assert!(
        Path::new(ALERTMANAGER).exists(),
        "install Debian's Alertmanager: apt-get install -y prometheus-alertmanager"
    );
    let receiver = Receiver::new(|_, _| Reply::Ok);
    let (sink, server) = start_receiver(&receiver).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: sink\n  group_by: [alertname, tenant]\n  group_wait: 0s\n  group_interval: 1s\n  \
             repeat_interval: 1h\nreceivers:\n  - name: sink\n    webhook_configs:\n      - url: http://{sink}/hook\n        \
             send_resolved: true\n"
        ),
    )
    .unwrap();
    let am = closed_port().await;
    let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
    let _alertmanager = KillOnDrop(
        std::process::Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={am}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let mut hook = webhook("alertmanager", am);
    hook.url = format!("http://{am}/api/v2/alerts");
    hook.format = WebhookFormat::AlertmanagerV2;
    let telemetry = Arc::new(Telemetry::default());
    // Connection refused until Alertmanager listens: retried.
    let notifier = Notifier::start(&dir.path().join("notify"), vec![hook], Arc::clone(&telemetry)).unwrap();
    let firing = Notification { generator_url: "http://collector/anomalies/7".into(), ..alert(7) };
    let resolved = Notification {
        status: AlertStatus::Resolved,
        ends_at_ms: Some(firing.starts_at_ms + 60_000),
        ..firing.clone()
    };
    notifier.send(firing.clone()).await.unwrap();
    let log_text = || std::fs::read_to_string(dir.path().join("alertmanager.log")).unwrap_or_default();
    let mut waited = 0;
    while receiver.taken() == 0 {
        assert!(waited < 3000, "Alertmanager sent nothing in 30 s; its log:\n{}", log_text());
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(
        counters(&telemetry, "alertmanager").failed.load(SeqCst),
        0,
        "Alertmanager refused the alert:\n{}",
        log_text()
    );
    notifier.send(resolved.clone()).await.unwrap();
    eventually("Alertmanager sends the resolution", 30, || {
        receiver.bodies().iter().any(|b| b.contains("\"status\":\"resolved\""))
    })
    .await;

    let bodies = receiver.bodies();
    let theirs: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    let ours = serde_json::to_value(payload::webhook_message(&firing, "sink", "")).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&theirs), keys(&ours), "top-level fields");
    assert_eq!(keys(&theirs["alerts"][0]), keys(&ours["alerts"][0]), "alert fields");
    assert_eq!(theirs["version"], "4");
    for field in ["status", "groupKey", "groupLabels", "commonLabels", "commonAnnotations"] {
        assert_eq!(theirs[field], ours[field], "{field}");
    }
    for field in ["status", "labels", "annotations", "startsAt", "generatorURL", "fingerprint"] {
        assert_eq!(theirs["alerts"][0][field], ours["alerts"][0][field], "alerts[0].{field}");
    }
    let last: serde_json::Value = serde_json::from_str(bodies.last().unwrap()).unwrap();
    let ours = serde_json::to_value(payload::webhook_message(&resolved, "sink", "")).unwrap();
    for field in ["status", "labels", "startsAt", "endsAt", "fingerprint"] {
        assert_eq!(last["alerts"][0][field], ours["alerts"][0][field], "resolved alerts[0].{field}");
    }
    notifier.shutdown().await;
    server.abort();
}
