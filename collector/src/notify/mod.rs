//! Durable webhook notifications: the continuous analysis hands each notification (an anomaly
//! opening or resolving, a burn-rate alert firing or resolving) to a [`Notifier`], which POSTs
//! it to every configured webhook in Alertmanager's JSON ([`payload`]), in order, until each
//! has taken it.
//!
//! Design:
//! - **Durable before acknowledged.** [`Notifier::send`] appends the notification to an outbox
//!   in the data directory and `fsync`s it before returning (`outbox.rs`: checksummed records in
//!   segment files, a damaged tail cut at open with a warning). Each webhook has a cursor, the
//!   sequence number it has passed, persisted by an atomic rename after every delivery. At
//!   start, everything after each cursor is delivered again: delivery is at least once, so a
//!   receiver that must not act twice deduplicates by `fingerprint`, `status` and `startsAt`.
//! - **One task per webhook**, taking the notifications one at a time in order. A webhook
//!   that is down or slow delays only its own queue: `send` never waits for a delivery, and the
//!   other webhooks go on. Each request has a timeout; 2xx is delivered; 408, 429, 5xx and
//!   transport errors are retried with exponential backoff and full jitter (a random wait up
//!   to `initial_backoff × 2^attempt`, capped at `max_backoff`), or after `Retry-After` when
//!   the answer has one; any other answer (4xx, a redirect) fails that notification for good —
//!   logged and counted — so one the receiver will never take does not block the queue.
//! - **Bounded.** The outbox holds at most `max_outbox_bytes`. Whole segments are deleted
//!   once every webhook has passed them; while a webhook is behind, its notifications stay, and
//!   when they fill the bound `send` refuses new ones with [`NotifyError::Full`] (naming the
//!   webhook furthest behind, and counted) rather than dropping undelivered ones.
//! - **Tenancy** is a label: every notification carries `tenant` (set by the caller), and
//!   webhooks group by `alertname` and `tenant`.
//!
//! Counters are on `/metrics` through [`NotifyMetrics`] (`slo_gate_webhook_*`).

mod deliver;
mod outbox;
pub mod payload;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::WebhookConfig;
use crate::telemetry::Telemetry;
use deliver::Webhook;
use outbox::Outbox;

pub use outbox::MAX_RECORD_BYTES;

/// Whether an alert is firing or has resolved (Alertmanager's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl std::fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        })
    }
}

/// One notification: an alert as Alertmanager models one. Its labels identify it (the
/// fingerprint is theirs), so a resolution must carry the labels its firing had.
///
/// This is also what the outbox stores, as JSON with these field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub status: AlertStatus,
    /// Must hold `alertname` and `tenant`; names as Prometheus allows them
    /// (`[a-zA-Z_][a-zA-Z0-9_]*`).
    pub labels: BTreeMap<String, String>,
    /// Free text: `summary`, `description`, `runbook_url`, expected vs actual values ...
    pub annotations: BTreeMap<String, String>,
    /// When the alert started, Unix milliseconds.
    pub starts_at_ms: i64,
    /// When it resolved (required when resolved); `None` while it fires with no known end.
    pub ends_at_ms: Option<i64>,
    /// A link to what raised it (the anomaly or the SLO in the collector's API); may be empty.
    pub generator_url: String,
}

/// Labels every notification must carry.
pub const REQUIRED_LABELS: [&str; 2] = ["alertname", "tenant"];

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Notification {
    /// Every reason this notification cannot be sent, `; `-separated.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        for required in REQUIRED_LABELS {
            if self.labels.get(required).is_none_or(|v| v.is_empty()) {
                problems.push(format!("label `{required}` is missing or empty"));
            }
        }
        for (what, names) in [("label", &self.labels), ("annotation", &self.annotations)] {
            for name in names.keys().filter(|n| !is_label_name(n)) {
                problems.push(format!("{what} name {name:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"));
            }
        }
        if payload::rfc3339_millis(self.starts_at_ms).is_none() {
            problems.push(format!("starts_at_ms {} is outside the years 1 to 9999", self.starts_at_ms));
        }
        match self.ends_at_ms {
            None if self.status == AlertStatus::Resolved => {
                problems.push("a resolved notification needs ends_at_ms".to_string());
            }
            Some(end) if end < self.starts_at_ms => {
                problems.push(format!("ends_at_ms {end} is before starts_at_ms {}", self.starts_at_ms));
            }
            Some(end) if payload::rfc3339_millis(end).is_none() => {
                problems.push(format!("ends_at_ms {end} is outside the years 1 to 9999"));
            }
            _ => {}
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }
}

/// Settings of the notifier as a whole (each webhook's are its [`WebhookConfig`]).
#[derive(Debug, Clone)]
pub struct NotifierSettings {
    /// The webhook payload's `externalURL`: a link back to the sender, e.g. the collector's
    /// API address. Empty by default.
    pub external_url: String,
    /// The outbox never holds more than this many bytes; `send` refuses while it is full.
    /// Default 16 MiB: some fifty thousand notifications of 300 bytes, days of a busy
    /// service's alerts with a webhook down. The undelivered ones are also held in memory,
    /// a few times their size on disk.
    pub max_outbox_bytes: u64,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        NotifierSettings { external_url: String::new(), max_outbox_bytes: 16 << 20 }
    }
}

/// Why a notifier could not start, or a notification could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notification refused: {0}")]
    Invalid(String),
    #[error(
        "notification outbox is full: {bytes} of its {max} bytes hold notifications not yet delivered{behind}, \
         and this one needs {need} more; refused until deliveries catch up"
    )]
    Full {
        bytes: u64,
        need: u64,
        max: u64,
        /// ` (webhook "x" is furthest behind)`, or empty.
        behind: String,
    },
    #[error("notification of {bytes} bytes refused: larger than the outbox's record limit of {max} bytes")]
    TooLarge { bytes: u64, max: u64 },
    #[error("notification outbox {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("notification outbox {path} is in use by another notifier (another collector on this data directory?)")]
    Locked { path: PathBuf },
    #[error("webhook {name:?}: {what}")]
    Config { name: String, what: String },
    #[error("the notifier must be started inside a tokio runtime")]
    NoRuntime,
}

/// The counters of every webhook, rendered on `/metrics`.
#[derive(Debug, Default)]
pub struct NotifyMetrics {
    webhooks: Mutex<Vec<Arc<WebhookCounters>>>,
    /// Notifications refused because the outbox was full.
    pub refused: AtomicU64,
    /// Bytes of the outbox's segment files.
    pub outbox_bytes: AtomicU64,
    /// Bytes of damaged outbox found at start and cut or set aside.
    pub damaged_bytes: AtomicU64,
    /// Failed outbox appends (the notification was refused) and cursor writes (the
    /// notification was delivered, and will be again after a restart).
    pub write_errors: AtomicU64,
}

/// The counters of one webhook.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    pub name: String,
    /// Notifications the webhook answered 2xx.
    pub sent: AtomicU64,
    /// Notifications refused for good (a 4xx other than 408 and 429, a redirect).
    pub failed: AtomicU64,
    /// Attempts retried (timeouts, transport errors, 408, 429, 5xx).
    pub retried: AtomicU64,
    /// Notifications in the outbox the webhook has not yet passed.
    pub queued: AtomicU64,
}

impl NotifyMetrics {
    /// The counters of the webhook named `name`, created on first use (a notifier restarted in
    /// the same process goes on counting where the last one stopped).
    fn register(&self, name: &str) -> Arc<WebhookCounters> {
        let mut webhooks = self.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = webhooks.iter().find(|w| w.name == name) {
            return Arc::clone(found);
        }
        let counters = Arc::new(WebhookCounters { name: name.to_string(), ..Default::default() });
        webhooks.push(Arc::clone(&counters));
        counters
    }

    /// The counters of the webhook named `name`, if a notifier has started it.
    pub fn webhook(&self, name: &str) -> Option<Arc<WebhookCounters>> {
        self.webhooks.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|w| w.name == name).cloned()
    }

    /// Appends the `slo_gate_webhook_*` families (Prometheus text format) to `out`, when any
    /// webhook is configured.
    pub fn render(&self, out: &mut String) {
        let webhooks = self.webhooks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if webhooks.is_empty() {
            return;
        }
        let name = "slo_gate_webhook_notifications_total";
        let _ = writeln!(
            out,
            "# HELP {name} Notifications each webhook has passed: sent (answered 2xx) or failed (refused for good: a 4xx other than 408 and 429, or a redirect).\n# TYPE {name} counter"
        );
        for w in &webhooks {
            for (outcome, value) in [("sent", &w.sent), ("failed", &w.failed)] {
                let _ = writeln!(out, "{name}{{webhook=\"{}\",outcome=\"{outcome}\"}} {}", w.name, value.load(Relaxed));
            }
        }
        for (name, kind, help, pick) in [
            (
                "slo_gate_webhook_retries_total",
                "counter",
                "Delivery attempts retried: timeouts, connection errors, 408, 429 and 5xx answers.",
                (|w: &WebhookCounters| &w.retried) as fn(&WebhookCounters) -> &AtomicU64,
            ),
            (
                "slo_gate_webhook_queue_length",
                "gauge",
                "Notifications in the outbox the webhook has not yet passed.",
                |w: &WebhookCounters| &w.queued,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for w in &webhooks {
                let _ = writeln!(out, "{name}{{webhook=\"{}\"}} {}", w.name, pick(w).load(Relaxed));
            }
        }
        for (name, kind, help, value) in [
            ("slo_gate_webhook_outbox_bytes", "gauge", "Bytes of the notification outbox.", &self.outbox_bytes),
            (
                "slo_gate_webhook_outbox_refused_total",
                "counter",
                "Notifications refused because the outbox was full of undelivered ones.",
                &self.refused,
            ),
            (
                "slo_gate_webhook_outbox_damaged_bytes_total",
                "counter",
                "Bytes of damaged outbox cut or set aside at start.",
                &self.damaged_bytes,
            ),
            (
                "slo_gate_webhook_outbox_write_errors_total",
                "counter",
                "Failed outbox appends (the notification was refused) and cursor writes (it will be delivered again after a restart).",
                &self.write_errors,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", value.load(Relaxed));
        }
    }
}

/// Sends notifications to the configured webhooks; see the module documentation.
#[derive(Debug)]
pub struct Notifier {
    shared: Arc<Shared>,
    /// Raised by [`Notifier::shutdown`]; dropped with the notifier, which stops the tasks too.
    stop: watch::Sender<bool>,
    /// The delivery tasks, until [`Notifier::shutdown`] waits for them.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Holds the outbox directory's lock while this notifier lives.
    _lock: File,
}

/// What the notifier and its delivery tasks share.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    external_url: String,
    outbox: Mutex<Outbox>,
    queue: Mutex<Queue>,
    /// Bumped after every append, to wake the delivery tasks.
    appended: watch::Sender<u64>,
    /// Each webhook's cursor as last persisted; compaction follows the smallest.
    persisted: Mutex<Vec<u64>>,
    webhooks: Vec<Arc<Webhook>>,
    counters: Vec<Arc<WebhookCounters>>,
    telemetry: Arc<Telemetry>,
    /// Names this notifier's temporary cursor files.
    tag: u64,
}

/// The notifications some webhook has not passed yet, oldest first, and where each webhook is.
#[derive(Debug)]
struct Queue {
    records: VecDeque<(u64, Arc<Notification>)>,
    /// Per webhook: the sequence number it has passed (delivered or failed for good).
    handled: Vec<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Notifier {
    /// [`Notifier::start_with`] the default [`NotifierSettings`].
    pub fn start(dir: &Path, webhooks: Vec<WebhookConfig>, telemetry: Arc<Telemetry>) -> Result<Notifier, NotifyError> {
        Notifier::start_with(dir, webhooks, NotifierSettings::default(), telemetry)
    }

    /// Opens the outbox in `dir` (created if missing; one notifier at a time), reads each
    /// webhook's `bearer_token_file`, and spawns one delivery task per webhook on the current
    /// tokio runtime, which first delivers what the outbox holds past that webhook's cursor.
    /// A webhook seen for the first time starts after the notifications already in the
    /// outbox; the cursors of webhooks no longer configured are deleted.
    pub fn start_with(
        dir: &Path,
        webhooks: Vec<WebhookConfig>,
        settings: NotifierSettings,
        telemetry: Arc<Telemetry>,
    ) -> Result<Notifier, NotifyError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NotifyError::NoRuntime)?;
        let webhooks = webhooks.iter().map(Webhook::from_config).collect::<Result<Vec<_>, _>>()?;
        for (i, w) in webhooks.iter().enumerate() {
            if webhooks[..i].iter().any(|o| o.name == w.name) {
                return Err(NotifyError::Config { name: w.name.clone(), what: "two webhooks have this name".into() });
            }
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| NotifyError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_file = lock_dir(dir)?;
        let (mut outbox, recovered) = Outbox::open(dir, settings.max_outbox_bytes).map_err(io(dir))?;
        let metrics = &telemetry.notify;
        for line in &recovered.damage {
            tracing::warn!(outbox = %dir.display(), "damaged notification outbox: {line}");
        }
        metrics.damaged_bytes.fetch_add(recovered.damaged_bytes, Relaxed);

        let (cursors, stale) = outbox::list_cursors(dir).map_err(io(dir))?;
        for path in stale {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        if let Some(ahead) = cursors.iter().filter_map(|(_, c)| c.as_ref().ok()).max() {
            outbox.continue_after(*ahead);
        }
        let last = outbox.last_seq();
        let tag = random_u64();
        let mut positions = Vec::with_capacity(webhooks.len());
        for w in &webhooks {
            let position = match cursors.iter().find(|(name, _)| *name == w.name) {
                Some((_, Ok(seq))) => *seq,
                Some((_, Err(text))) => {
                    tracing::warn!(webhook = %w.name, cursor = %text,
                        "webhook cursor does not parse; delivering every notification the outbox holds again");
                    outbox::write_cursor(dir, &w.name, 0, tag).map_err(io(dir))?;
                    0
                }
                None => {
                    // Persisted now: a crash before its first delivery must not move it on.
                    outbox::write_cursor(dir, &w.name, last, tag).map_err(io(dir))?;
                    last
                }
            };
            positions.push(position);
        }
        for (name, _) in cursors.iter().filter(|(name, _)| !webhooks.iter().any(|w| w.name == *name)) {
            tracing::info!(webhook = %name, "webhook no longer configured; its cursor is deleted");
            let path = outbox::cursor_path(dir, name);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        let passed = positions.iter().copied().min().unwrap_or(last);
        for failure in outbox.compact(passed) {
            tracing::warn!(outbox = %dir.display(), "{failure}");
        }
        metrics.outbox_bytes.store(outbox.bytes(), Relaxed);
        let records =
            recovered.records.into_iter().filter(|(seq, _)| *seq > passed).map(|(seq, n)| (seq, Arc::new(n))).collect();
        let counters: Vec<_> = webhooks.iter().map(|w| metrics.register(&w.name)).collect();
        let (appended, _) = watch::channel(last);
        let webhooks: Vec<Arc<Webhook>> = webhooks.into_iter().map(Arc::new).collect();
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            external_url: settings.external_url,
            outbox: Mutex::new(outbox),
            queue: Mutex::new(Queue { records, handled: positions.clone() }),
            appended,
            persisted: Mutex::new(positions.clone()),
            webhooks,
            counters,
            telemetry,
            tag,
        });
        shared.update_gauges(&lock(&shared.queue));
        let (stop, _) = watch::channel(false);
        let tasks = (0..shared.webhooks.len())
            .map(|i| {
                let task = deliver::run(Arc::clone(&shared), i, positions[i], stop.subscribe());
                runtime.spawn(task)
            })
            .collect();
        if !shared.webhooks.is_empty() {
            let pending = lock(&shared.queue).records.len();
            tracing::info!(webhooks = shared.webhooks.len(), pending, outbox = %dir.display(), "webhook notifications started");
        }
        Ok(Notifier { shared, stop, tasks: Mutex::new(tasks), _lock: lock_file })
    }

    /// Makes `notification` durable in the outbox (appended and `fsync`ed) and queues it for
    /// every webhook; returns once it is durable, never waiting for a delivery. Refused when it
    /// is invalid ([`Notification::validate`]), too large, or the outbox is full. Without any
    /// webhook configured it is accepted and dropped.
    ///
    /// Blocks for one `fsync`; from async code use [`Notifier::send`].
    pub fn send_blocking(&self, notification: &Notification) -> Result<(), NotifyError> {
        self.shared.send(notification)
    }

    /// [`Notifier::send_blocking`] on the blocking thread pool.
    pub async fn send(&self, notification: Notification) -> Result<(), NotifyError> {
        let shared = Arc::clone(&self.shared);
        let dir = shared.dir.clone();
        tokio::task::spawn_blocking(move || shared.send(&notification))
            .await
            .map_err(|e| NotifyError::Io { path: dir, source: std::io::Error::other(e) })?
    }

    /// Notifications the webhook named `webhook` has not passed yet.
    pub fn queued(&self, webhook: &str) -> Option<u64> {
        let i = self.shared.webhooks.iter().position(|w| w.name == webhook)?;
        Some(self.shared.counters[i].queued.load(Relaxed))
    }

    /// Stops the delivery tasks (a request in flight is abandoned, and sent again at the next
    /// start) and waits for them to end. Takes `&self` so a notifier shared in an `Arc` can
    /// be stopped; `send` still makes notifications durable afterwards, for the next start.
    /// (Dropping the notifier stops the tasks too, without waiting.)
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Shared {
    fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        notification.validate().map_err(NotifyError::Invalid)?;
        if self.webhooks.is_empty() {
            return Ok(());
        }
        let metrics = &self.telemetry.notify;
        let mut outbox = lock(&self.outbox);
        let seq = match outbox.append(notification) {
            Ok(seq) => seq,
            Err(NotifyError::Full { bytes, need, max, .. }) => {
                metrics.refused.fetch_add(1, Relaxed);
                let behind =
                    self.furthest_behind().map(|n| format!(" (webhook {n:?} is furthest behind)")).unwrap_or_default();
                let err = NotifyError::Full { bytes, need, max, behind };
                tracing::warn!(
                    alertname = notification.labels.get("alertname").map(String::as_str).unwrap_or(""),
                    "{err}"
                );
                return Err(err);
            }
            Err(err) => {
                if matches!(err, NotifyError::Io { .. }) {
                    metrics.write_errors.fetch_add(1, Relaxed);
                }
                return Err(err);
            }
        };
        metrics.outbox_bytes.store(outbox.bytes(), Relaxed);
        {
            let mut queue = lock(&self.queue);
            queue.records.push_back((seq, Arc::new(notification.clone())));
            self.update_gauges(&queue);
        }
        drop(outbox);
        self.appended.send_modify(|last| *last = (*last).max(seq));
        Ok(())
    }

    /// The name of the webhook with the most notifications still to pass.
    fn furthest_behind(&self) -> Option<String> {
        let queue = lock(&self.queue);
        let (i, _) = queue.handled.iter().enumerate().min_by_key(|(_, seq)| **seq)?;
        Some(self.webhooks[i].name.clone())
    }

    /// Sets every webhook's `queued` gauge from the queue.
    fn update_gauges(&self, queue: &Queue) {
        for (counters, handled) in self.counters.iter().zip(&queue.handled) {
            let done = queue.records.partition_point(|(seq, _)| seq <= handled);
            counters.queued.store((queue.records.len() - done) as u64, Relaxed);
        }
    }

    /// The first notification after `position`.
    fn next_after(&self, position: u64) -> Option<(u64, Arc<Notification>)> {
        let queue = lock(&self.queue);
        let at = queue.records.partition_point(|(seq, _)| *seq <= position);
        queue.records.get(at).map(|(seq, n)| (*seq, Arc::clone(n)))
    }

    /// Webhook `i` has passed `seq`: forgets what every webhook has passed.
    fn handled(&self, i: usize, seq: u64) {
        let mut queue = lock(&self.queue);
        queue.handled[i] = seq;
        let passed = queue.handled.iter().copied().min().unwrap_or(seq);
        while queue.records.front().is_some_and(|(s, _)| *s <= passed) {
            queue.records.pop_front();
        }
        self.update_gauges(&queue);
    }

    /// Persists webhook `i`'s cursor at `seq`, then deletes the segments every webhook has
    /// passed. Blocking.
    fn persist(&self, i: usize, seq: u64) -> std::io::Result<()> {
        outbox::write_cursor(&self.dir, &self.webhooks[i].name, seq, self.tag)?;
        let mut persisted = lock(&self.persisted);
        persisted[i] = seq;
        let passed = persisted.iter().copied().min().unwrap_or(seq);
        let mut outbox = lock(&self.outbox);
        for failure in outbox.compact(passed) {
            tracing::warn!(outbox = %self.dir.display(), "{failure}");
        }
        self.telemetry.notify.outbox_bytes.store(outbox.bytes(), Relaxed);
        Ok(())
    }
}

/// Takes the lock of the outbox directory, so two notifiers never append to one outbox.
fn lock_dir(dir: &Path) -> Result<File, NotifyError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| NotifyError::Io { path: path.clone(), source })?;
    match nix::fcntl::flock(file.as_raw_fd(), nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(()) => Ok(file),
        Err(nix::errno::Errno::EWOULDBLOCK) => Err(NotifyError::Locked { path: dir.to_path_buf() }),
        Err(e) => Err(NotifyError::Io { path, source: std::io::Error::from(e) }),
    }
}

/// 64 random bits from the operating system (a clock-derived value should it have none).
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}
