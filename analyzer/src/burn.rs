//! Error budgets and multi-window, multi-burn-rate alerts for one SLO (a contract objective's
//! `slo:` block): a [`BudgetTracker`] is fed each evaluation step's good and total event counts
//! and answers the budget left over the compliance window, the burn rate over 5m, 30m, 1h, 6h
//! and 3d, and alert transitions.
//!
//! Definitions (Beyer et al., *The Site Reliability Workbook*, ch. 5 "Alerting on SLOs"): with
//! target `T`, a window's burn rate is its bad ratio over the allowed one,
//! `(bad / total) / (1 - T)`; 1 spends the budget exactly over the compliance window. The budget
//! remaining is `1 - bad / ((1 - T) × total)` over the compliance window, i.e. one minus that
//! window's burn rate; it goes negative once more than the budget is spent. The alerts are the
//! workbook's table 5-8 (`slo_contracts::WORKBOOK_BURN_ALERTS`): a page while the 1h and 5m
//! burn rates are both at least 14.4, a page while 6h and 30m are at least 6, a ticket while
//! 3d and 6h are at least 1. The long window says enough budget went, the short one makes the
//! alert resolve within minutes of the burning stopping.
//!
//! Choices:
//! - **Bounded memory, fixed resolution.** Counts go into two rings of buckets: one-minute
//!   buckets for the last 6 hours and one-hour buckets for the compliance window, so a tracker
//!   holds `(360 + ⌈window / 1h⌉) × 16` bytes of counts whatever the traffic (17 KiB for 30
//!   days, 159 KiB for the longest window, 400 days). A window of length `W` is read from the
//!   finest ring that spans it, as its last `⌈W / r⌉` buckets, the newest one partly elapsed:
//!   it holds between `W - r` and `W` of data (`r` one minute up to 6h, one hour above). The
//!   5m window therefore holds 4 to 5 minutes, the 3d window 71 to 72 hours, a 30-day budget
//!   29 days 23 hours to 30 days: a ratio is unbiased under steady traffic, and a budget
//!   misses at most the events of its oldest hour (1/720 of a 30-day window).
//! - **Counts are attributed to the instant given**: a step's delta reported at `time_ms` goes
//!   into the buckets holding `time_ms`. Report each step's counts at its end.
//! - **Gaps.** A window without events has no burn rate (`None`: nothing to divide), and it
//!   counts as 0 for alerts, so an alert resolves when traffic stops. The budget of a
//!   compliance window without events is `None` too. Call [`BudgetTracker::step`] (or
//!   [`BudgetTracker::evaluate`]) at every evaluation step, with zero counts when there was no
//!   traffic, so the windows move on and alerts resolve.
//! - **Time never goes backwards.** A record older than the newest time seen is ignored and
//!   counted ([`BudgetStatus::ignored_records`]); an evaluation at an earlier time is made at
//!   the newest time seen.
//! - **Huge counts saturate** at `u64::MAX` instead of wrapping.
//! - **Data shorter than the window.** Until the tracker has seen a whole compliance window,
//!   the budget is over what it has seen, and [`BudgetStatus::partial_window`] says so.
//! - **Alerts are state transitions**: one [`AlertEvent`] when an alert starts firing and one
//!   when it resolves, per episode, not one per step. A burn rate exactly at the threshold
//!   fires (compared with a relative tolerance of 1e-9, so 0.1% errors on a 99.9% target is a
//!   burn rate of 1 despite `1 - 0.999` not being 0.001 in floating point).
//! - **Restarts continue**: the tracker is serde-serialisable, firing alerts included; a
//!   restored state is checked (ring sizes, target, window) and refused with a
//!   [`ConfigError`] rather than trusted.
//!
//! [`good_at_most`] turns a latency histogram's cumulative bucket counts into good events for
//! a latency SLO's threshold.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use slo_contracts::{AlertSeverity, BurnAlert, HumanDuration, Slo, WORKBOOK_BURN_ALERTS};

/// One minute, the resolution of windows up to [`FINE_SPAN_MS`].
pub const MINUTE_MS: u64 = 60_000;
/// One hour, the resolution of longer windows (the 3d burn rate, the compliance window).
pub const HOUR_MS: u64 = 3_600_000;
/// How far back one-minute buckets reach: the 6h window, the longest burn-rate window that
/// needs minutes (its alert's short window is 30m, the 3d alert's is 6h).
pub const FINE_SPAN_MS: u64 = 6 * HOUR_MS;
/// The windows a status reports burn rates for: every window of the workbook's alerts.
pub const BURN_RATE_WINDOWS_MS: [u64; 5] = [5 * MINUTE_MS, 30 * MINUTE_MS, HOUR_MS, 6 * HOUR_MS, 72 * HOUR_MS];

/// Relative tolerance of the burn-rate comparisons (see the module documentation).
const TOLERANCE: f64 = 1e-9;
/// Version of the serialised state, so a future layout can tell an old one apart.
const STATE_VERSION: u32 = 1;

/// A multi-window burn-rate alert in milliseconds, as a tracker keeps and reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    /// Page or ticket.
    pub severity: AlertSeverity,
    /// The long window, in milliseconds.
    pub long_window_ms: u64,
    /// The short window, in milliseconds.
    pub short_window_ms: u64,
    /// The burn rate both windows must reach.
    pub burn_rate: f64,
}

impl AlertRule {
    /// `1h/5m page at 14.4×`.
    pub fn describe(&self) -> String {
        format!(
            "{}/{} {} at {}×",
            window_label(self.long_window_ms),
            window_label(self.short_window_ms),
            self.severity,
            self.burn_rate
        )
    }
}

impl From<&BurnAlert> for AlertRule {
    fn from(alert: &BurnAlert) -> Self {
        AlertRule {
            severity: alert.severity,
            long_window_ms: duration_ms(alert.long_window),
            short_window_ms: duration_ms(alert.short_window),
            burn_rate: alert.burn_rate,
        }
    }
}

/// The workbook's three alerts (`slo_contracts::WORKBOOK_BURN_ALERTS`) as rules.
pub fn workbook_rules() -> Vec<AlertRule> {
    WORKBOOK_BURN_ALERTS.iter().map(AlertRule::from).collect()
}

/// `300000` → `5m`, `259200000` → `3d`: a window as the `window` label of a burn-rate series.
pub fn window_label(window_ms: u64) -> String {
    HumanDuration(Duration::from_millis(window_ms)).to_string()
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Why a tracker could not be made, or a saved one restored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The target is not strictly between 0 and 1.
    #[error("SLO target {0} is not strictly between 0 and 1")]
    Target(f64),
    /// The compliance window is outside what a tracker keeps.
    #[error("compliance window {} is outside 1h to 400d", window_label(*.0))]
    Window(u64),
    /// An alert rule cannot be evaluated.
    #[error("alert rule {index} ({rule}): {why}")]
    Rule {
        /// Its position in the rules given.
        index: usize,
        /// The rule, described.
        rule: String,
        /// What is wrong with it.
        why: String,
    },
    /// A saved state that does not describe a tracker (damaged, or from another layout).
    #[error("saved burn-rate state is not usable: {0}")]
    State(String),
}

/// Why a record was refused (nothing of it is kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// More good events than events.
    #[error("at {time_ms} ms: {good} good events out of {total}; good events cannot exceed all events")]
    GoodAboveTotal {
        /// The record's time.
        time_ms: u64,
        /// Its good events.
        good: u64,
        /// Its events.
        total: u64,
    },
}

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recorded {
    /// Counted.
    Added,
    /// Older than the newest time already seen, so ignored (time does not go backwards).
    IgnoredOlder {
        /// The newest time seen.
        newest_ms: u64,
    },
}

/// One ring of fixed-width buckets: `good[i]` and `total[i]` hold bucket number `n` (time /
/// resolution) at `i = n % len`, for the `len` buckets up to `head`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ring {
    resolution_ms: u64,
    /// The newest bucket number written or moved to; `None` before the first record.
    head: Option<u64>,
    good: Vec<u64>,
    total: Vec<u64>,
}

impl Ring {
    fn new(resolution_ms: u64, len: usize) -> Self {
        Ring { resolution_ms, head: None, good: vec![0; len], total: vec![0; len] }
    }

    fn len(&self) -> u64 {
        self.good.len() as u64
    }

    fn slot(&self, bucket: u64) -> usize {
        // The remainder is below len, which is a usize.
        usize::try_from(bucket % self.len()).unwrap_or(0)
    }

    /// Moves the head to `bucket`, clearing the buckets it passes over.
    fn advance(&mut self, bucket: u64) {
        let Some(head) = self.head else {
            self.head = Some(bucket);
            return;
        };
        if bucket <= head {
            return;
        }
        if bucket - head >= self.len() {
            self.good.fill(0);
            self.total.fill(0);
        } else {
            for b in head + 1..=bucket {
                let slot = self.slot(b);
                self.good[slot] = 0;
                self.total[slot] = 0;
            }
        }
        self.head = Some(bucket);
    }

    fn add(&mut self, time_ms: u64, good: u64, total: u64) {
        let bucket = time_ms / self.resolution_ms;
        self.advance(bucket);
        let head = self.head.unwrap_or(bucket);
        if bucket + self.len() <= head {
            return; // fell off the ring (cannot happen while time goes forward)
        }
        let slot = self.slot(bucket);
        self.good[slot] = self.good[slot].saturating_add(good);
        self.total[slot] = self.total[slot].saturating_add(total);
    }

    /// Good and total events of the last `⌈window / resolution⌉` buckets up to the one holding
    /// `now_ms`.
    fn sum(&self, now_ms: u64, window_ms: u64) -> (u64, u64) {
        let Some(head) = self.head else { return (0, 0) };
        let buckets = window_ms.div_ceil(self.resolution_ms).max(1);
        let newest = now_ms / self.resolution_ms;
        let oldest = (newest + 1).saturating_sub(buckets).max((head + 1).saturating_sub(self.len()));
        let (mut good, mut total) = (0u64, 0u64);
        for b in oldest..=newest.min(head) {
            let slot = self.slot(b);
            good = good.saturating_add(self.good[slot]);
            total = total.saturating_add(self.total[slot]);
        }
        (good, total)
    }

    fn span_ms(&self) -> u64 {
        self.resolution_ms.saturating_mul(self.len())
    }
}

/// Tracks one SLO's error budget and burn-rate alerts from incremental event counts. See the
/// module documentation for the resolution, gaps and restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TrackerState", into = "TrackerState")]
pub struct BudgetTracker {
    target: f64,
    window_ms: u64,
    rules: Vec<AlertRule>,
    /// The windows burn rates are reported for, shortest first.
    windows_ms: Vec<u64>,
    minutes: Ring,
    hours: Ring,
    first_ms: Option<u64>,
    newest_ms: Option<u64>,
    /// Per rule: since when it fires.
    firing: Vec<Option<u64>>,
    ignored_records: u64,
}

/// The serialised form of a [`BudgetTracker`], checked when read back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackerState {
    version: u32,
    target: f64,
    window_ms: u64,
    rules: Vec<AlertRule>,
    minutes: Ring,
    hours: Ring,
    first_ms: Option<u64>,
    newest_ms: Option<u64>,
    firing: Vec<Option<u64>>,
    ignored_records: u64,
}

impl From<BudgetTracker> for TrackerState {
    fn from(t: BudgetTracker) -> Self {
        TrackerState {
            version: STATE_VERSION,
            target: t.target,
            window_ms: t.window_ms,
            rules: t.rules,
            minutes: t.minutes,
            hours: t.hours,
            first_ms: t.first_ms,
            newest_ms: t.newest_ms,
            firing: t.firing,
            ignored_records: t.ignored_records,
        }
    }
}

impl TryFrom<TrackerState> for BudgetTracker {
    type Error = ConfigError;

    fn try_from(state: TrackerState) -> Result<Self, ConfigError> {
        if state.version != STATE_VERSION {
            return Err(ConfigError::State(format!("version {} (this build reads {STATE_VERSION})", state.version)));
        }
        let mut tracker = BudgetTracker::with_rules(state.target, state.window_ms, &state.rules)?;
        for (name, saved, fresh) in
            [("minutes", &state.minutes, &tracker.minutes), ("hours", &state.hours, &tracker.hours)]
        {
            if saved.resolution_ms != fresh.resolution_ms
                || saved.good.len() != fresh.good.len()
                || saved.total.len() != fresh.total.len()
            {
                return Err(ConfigError::State(format!(
                    "the {name} ring has {} buckets of {} ms, the window needs {} of {} ms",
                    saved.good.len().min(saved.total.len()),
                    saved.resolution_ms,
                    fresh.good.len(),
                    fresh.resolution_ms
                )));
            }
            if saved.good.iter().zip(&saved.total).any(|(g, t)| g > t) {
                return Err(ConfigError::State(format!(
                    "the {name} ring has a bucket with more good events than events"
                )));
            }
        }
        if state.firing.len() != state.rules.len() {
            return Err(ConfigError::State(format!(
                "{} alert states for {} rules",
                state.firing.len(),
                state.rules.len()
            )));
        }
        if let (Some(first), Some(newest)) = (state.first_ms, state.newest_ms)
            && first > newest
        {
            return Err(ConfigError::State(format!("first record at {first} ms is after the newest at {newest} ms")));
        }
        tracker.minutes = state.minutes;
        tracker.hours = state.hours;
        tracker.first_ms = state.first_ms;
        tracker.newest_ms = state.newest_ms;
        tracker.firing = state.firing;
        tracker.ignored_records = state.ignored_records;
        Ok(tracker)
    }
}

/// Events counted over one window, and its burn rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowBurn {
    /// The window, in milliseconds.
    pub window_ms: u64,
    /// The window as a label: `5m`, `30m`, `1h`, `6h`, `3d`.
    pub window: String,
    /// Good events in the window.
    pub good: u64,
    /// Events in the window.
    pub total: u64,
    /// `(bad / total) / (1 - target)`; `None` when the window has no events.
    pub burn_rate: Option<f64>,
}

/// An alert firing now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiringAlert {
    /// The rule.
    pub rule: AlertRule,
    /// When it started firing (the step that found both windows burning).
    pub since_ms: u64,
}

/// The budget and burn rates at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetStatus {
    /// The instant (never before the newest time the tracker has seen).
    pub time_ms: u64,
    /// The SLO target, a fraction.
    pub target: f64,
    /// The compliance window, in milliseconds.
    pub window_ms: u64,
    /// Good events in the compliance window.
    pub good: u64,
    /// Events in the compliance window.
    pub total: u64,
    /// `1 - bad / ((1 - target) × total)` over the compliance window: 1 with nothing spent, 0
    /// when the budget is spent, negative beyond; `None` without events.
    pub budget_remaining: Option<f64>,
    /// How much of the compliance window the tracker has seen (from its first record), at
    /// most the window.
    pub seen_ms: u64,
    /// True while the tracker has seen less than a whole window: the budget is over what was
    /// seen (see [`BudgetStatus::note`]).
    pub partial_window: bool,
    /// Burn rates, shortest window first (windows longer than the compliance window are left
    /// out).
    pub burn_rates: Vec<WindowBurn>,
    /// The alerts firing, in rule order.
    pub firing: Vec<FiringAlert>,
    /// Records ignored because they were older than the newest time seen.
    pub ignored_records: u64,
}

impl BudgetStatus {
    /// The burn rate over a window (`None` when the window is not reported or has no events).
    pub fn burn_rate(&self, window_ms: u64) -> Option<f64> {
        self.burn_rates.iter().find(|w| w.window_ms == window_ms).and_then(|w| w.burn_rate)
    }

    /// What a report should say beside the budget, when anything: that it is over less than
    /// the window, or that there were no events.
    pub fn note(&self) -> Option<String> {
        if self.total == 0 {
            return Some(format!(
                "no events in the last {}: no budget spent or left to report",
                window_label(self.window_ms)
            ));
        }
        self.partial_window.then(|| {
            format!(
                "budget over the {} seen of a {} window: data starts later than the window",
                window_label(self.seen_ms),
                window_label(self.window_ms)
            )
        })
    }
}

/// Whether an alert started or stopped firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Both windows reached the burn rate.
    Firing,
    /// At least one window fell below it.
    Resolved,
}

/// An alert transition: one when an episode starts, one when it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Firing or resolved.
    pub state: AlertState,
    /// Page or ticket (also in `rule`, here for whoever routes the notification).
    pub severity: AlertSeverity,
    /// The rule.
    pub rule: AlertRule,
    /// When the transition was found.
    pub time_ms: u64,
    /// When the episode started (`time_ms` for a firing event).
    pub since_ms: u64,
    /// The burn rate over the long window at `time_ms` (`None`: no events).
    pub long_burn_rate: Option<f64>,
    /// The burn rate over the short window at `time_ms`.
    pub short_burn_rate: Option<f64>,
    /// The budget remaining at `time_ms`.
    pub budget_remaining: Option<f64>,
}

/// What one [`BudgetTracker::step`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Whether the counts were added.
    pub recorded: Recorded,
    /// Budget and burn rates after the step.
    pub status: BudgetStatus,
    /// Alert transitions found at this step.
    pub events: Vec<AlertEvent>,
}

impl BudgetTracker {
    /// A tracker for a contract objective's SLO, with the alerts that fit its window.
    pub fn for_slo(slo: &Slo) -> Result<Self, ConfigError> {
        let rules: Vec<AlertRule> = slo.alerts.iter().map(AlertRule::from).collect();
        BudgetTracker::with_rules(slo.target, duration_ms(slo.window), &rules)
    }

    /// A tracker with the workbook's alerts that fit in `window_ms` (longer ones cannot be
    /// evaluated and are left out, as the contract validator warns).
    pub fn new(target: f64, window_ms: u64) -> Result<Self, ConfigError> {
        let rules: Vec<AlertRule> = workbook_rules().into_iter().filter(|r| r.long_window_ms <= window_ms).collect();
        BudgetTracker::with_rules(target, window_ms, &rules)
    }

    /// A tracker with its own alert rules: each window at least a minute, the short one no
    /// longer than the long one, the long one within the compliance window, the burn rate
    /// above 0.
    pub fn with_rules(target: f64, window_ms: u64, rules: &[AlertRule]) -> Result<Self, ConfigError> {
        if !(target > 0.0 && target < 1.0) {
            return Err(ConfigError::Target(target));
        }
        if window_ms < duration_ms(Slo::MIN_WINDOW) || window_ms > duration_ms(Slo::MAX_WINDOW) {
            return Err(ConfigError::Window(window_ms));
        }
        for (index, rule) in rules.iter().enumerate() {
            let why = if rule.short_window_ms < MINUTE_MS {
                Some("the short window is under a minute, the finest resolution".to_string())
            } else if rule.short_window_ms > rule.long_window_ms {
                Some("the short window is longer than the long one".to_string())
            } else if rule.long_window_ms > window_ms {
                Some(format!("the long window is longer than the {} compliance window", window_label(window_ms)))
            } else if !(rule.burn_rate.is_finite() && rule.burn_rate > 0.0) {
                Some("the burn rate must be a number above 0".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ConfigError::Rule { index, rule: rule.describe(), why });
            }
        }
        let mut windows_ms: Vec<u64> = BURN_RATE_WINDOWS_MS
            .iter()
            .copied()
            .chain(rules.iter().flat_map(|r| [r.long_window_ms, r.short_window_ms]))
            .filter(|w| *w <= window_ms)
            .collect();
        windows_ms.sort_unstable();
        windows_ms.dedup();
        let fine_len = usize::try_from(FINE_SPAN_MS / MINUTE_MS).unwrap_or(360);
        let coarse_len = usize::try_from(window_ms.div_ceil(HOUR_MS)).map_err(|_| ConfigError::Window(window_ms))?;
        Ok(BudgetTracker {
            target,
            window_ms,
            rules: rules.to_vec(),
            windows_ms,
            minutes: Ring::new(MINUTE_MS, fine_len),
            hours: Ring::new(HOUR_MS, coarse_len),
            first_ms: None,
            newest_ms: None,
            firing: vec![None; rules.len()],
            ignored_records: 0,
        })
    }

    /// The SLO target.
    pub fn target(&self) -> f64 {
        self.target
    }

    /// The compliance window, in milliseconds.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// The alert rules, in the order their events and firing states are reported.
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// Bytes this tracker holds on the heap: the two rings and the rules; fixed at
    /// construction, whatever the traffic.
    pub fn heap_bytes(&self) -> usize {
        let counts = self.minutes.good.capacity()
            + self.minutes.total.capacity()
            + self.hours.good.capacity()
            + self.hours.total.capacity();
        counts * size_of::<u64>()
            + self.rules.capacity() * size_of::<AlertRule>()
            + self.windows_ms.capacity() * size_of::<u64>()
            + self.firing.capacity() * size_of::<Option<u64>>()
    }

    /// Adds the good and total events counted at `time_ms` (a step's delta, reported at the
    /// step's end). A record older than the newest time seen is ignored.
    pub fn record(&mut self, time_ms: u64, good: u64, total: u64) -> Result<Recorded, RecordError> {
        if good > total {
            return Err(RecordError::GoodAboveTotal { time_ms, good, total });
        }
        if let Some(newest_ms) = self.newest_ms
            && time_ms < newest_ms
        {
            self.ignored_records = self.ignored_records.saturating_add(1);
            return Ok(Recorded::IgnoredOlder { newest_ms });
        }
        self.minutes.add(time_ms, good, total);
        self.hours.add(time_ms, good, total);
        self.first_ms.get_or_insert(time_ms);
        self.newest_ms = Some(time_ms);
        Ok(Recorded::Added)
    }

    /// The ring that spans `window_ms` at the finest resolution.
    fn ring(&self, window_ms: u64) -> &Ring {
        if window_ms <= self.minutes.span_ms() { &self.minutes } else { &self.hours }
    }

    fn window(&self, now_ms: u64, window_ms: u64) -> WindowBurn {
        let (good, total) = self.ring(window_ms).sum(now_ms, window_ms);
        WindowBurn { window_ms, window: window_label(window_ms), good, total, burn_rate: self.burn(good, total) }
    }

    fn burn(&self, good: u64, total: u64) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        (total > 0).then(|| (total - good) as f64 / total as f64 / (1.0 - self.target))
    }

    /// Budget and burn rates at `now_ms` (at the newest time seen if that is later).
    pub fn status(&self, now_ms: u64) -> BudgetStatus {
        let now_ms = now_ms.max(self.newest_ms.unwrap_or(0));
        let budget = self.window(now_ms, self.window_ms);
        let seen_ms = self.first_ms.map_or(0, |first| now_ms.saturating_sub(first)).min(self.window_ms);
        BudgetStatus {
            time_ms: now_ms,
            target: self.target,
            window_ms: self.window_ms,
            good: budget.good,
            total: budget.total,
            budget_remaining: budget.burn_rate.map(|burn| 1.0 - burn),
            seen_ms,
            partial_window: seen_ms < self.window_ms,
            burn_rates: self.windows_ms.iter().map(|w| self.window(now_ms, *w)).collect(),
            firing: self
                .rules
                .iter()
                .zip(&self.firing)
                .filter_map(|(rule, since)| since.map(|since_ms| FiringAlert { rule: *rule, since_ms }))
                .collect(),
            ignored_records: self.ignored_records,
        }
    }

    /// Evaluates the alerts at `now_ms` (at the newest time seen if that is later) and returns
    /// their transitions: a firing event when both windows of a rule reach its burn rate and it
    /// was not firing, a resolved event when one falls below while it was.
    pub fn evaluate(&mut self, now_ms: u64) -> Vec<AlertEvent> {
        let now_ms = now_ms.max(self.newest_ms.unwrap_or(0));
        if self.newest_ms.is_some() {
            self.newest_ms = Some(now_ms);
        }
        let mut events = Vec::new();
        let mut budget_remaining = None;
        for (index, rule) in self.rules.clone().iter().enumerate() {
            let long = self.window(now_ms, rule.long_window_ms).burn_rate;
            let short = self.window(now_ms, rule.short_window_ms).burn_rate;
            let reaches = |burn: Option<f64>| burn.unwrap_or(0.0) >= rule.burn_rate * (1.0 - TOLERANCE);
            let burning = reaches(long) && reaches(short);
            let (state, since_ms) = match (self.firing[index], burning) {
                (None, true) => {
                    self.firing[index] = Some(now_ms);
                    (AlertState::Firing, now_ms)
                }
                (Some(since), false) => {
                    self.firing[index] = None;
                    (AlertState::Resolved, since)
                }
                _ => continue,
            };
            let budget = *budget_remaining
                .get_or_insert_with(|| self.window(now_ms, self.window_ms).burn_rate.map(|burn| 1.0 - burn));
            events.push(AlertEvent {
                state,
                severity: rule.severity,
                rule: *rule,
                time_ms: now_ms,
                since_ms,
                long_burn_rate: long,
                short_burn_rate: short,
                budget_remaining: budget,
            });
        }
        events
    }

    /// One evaluation step: records the step's counts at `time_ms`, evaluates the alerts there
    /// and returns the status. A refused record changes nothing (call [`Self::evaluate`] to
    /// still move the alerts on).
    pub fn step(&mut self, time_ms: u64, good: u64, total: u64) -> Result<Step, RecordError> {
        let recorded = self.record(time_ms, good, total)?;
        let events = self.evaluate(time_ms);
        Ok(Step { recorded, status: self.status(time_ms), events })
    }
}

/// Good events read from a latency histogram for a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoodCount {
    /// Observations at most the threshold (estimated unless `exact`).
    pub good: u64,
    /// All observations (the `+Inf` bucket).
    pub total: u64,
    /// True when the threshold is a bucket bound (or its bucket is empty), so no estimate was
    /// needed.
    pub exact: bool,
}

/// Why a histogram could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistogramError {
    /// The counts do not match the bounds.
    #[error("{bounds} bucket bounds need {} cumulative counts (the last for +Inf), got {counts}", bounds + 1)]
    Length {
        /// Finite bounds given.
        bounds: usize,
        /// Counts given.
        counts: usize,
    },
    /// A bound that is not finite or not above the one before it.
    #[error("bucket bound {index} ({value}) is not finite and above the bound before it")]
    Bound {
        /// Its position.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// A cumulative count below the one before it.
    #[error("cumulative count {index} ({value}) is below the count before it ({previous})")]
    NotCumulative {
        /// Its position.
        index: usize,
        /// Its value.
        value: u64,
        /// The count before it.
        previous: u64,
    },
    /// A threshold that is not a finite number.
    #[error("threshold {0} is not a finite number")]
    Threshold(f64),
}

/// Good events for a latency SLO: how many observations of an explicit-bucket histogram are at
/// most `threshold`, from its cumulative counts (`cumulative[i]` observations at most
/// `bounds[i]`, Prometheus's `le` buckets; one more count at the end for `+Inf`, the total).
///
/// Exact when `threshold` is a bound (compared with a relative tolerance of 1e-9, so `0.4`
/// matches a bound written `400ms`). Otherwise the observations of the bucket holding it are
/// assumed spread evenly over the bucket and interpolated linearly, as Prometheus's
/// `histogram_quantile` assumes (the first bucket starts at 0 when its bound is above 0), and
/// rounded to the nearest whole event. Above the last finite bound nothing can be
/// interpolated: the count at the last bound is returned, an underestimate, not exact.
/// Non-cumulative counts (OTLP's `bucket_counts`) can be summed with [`cumulate`] first.
pub fn good_at_most(bounds: &[f64], cumulative: &[u64], threshold: f64) -> Result<GoodCount, HistogramError> {
    if cumulative.len() != bounds.len() + 1 {
        return Err(HistogramError::Length { bounds: bounds.len(), counts: cumulative.len() });
    }
    for (index, value) in bounds.iter().copied().enumerate() {
        if !value.is_finite() || (index > 0 && value <= bounds[index - 1]) {
            return Err(HistogramError::Bound { index, value });
        }
    }
    for index in 1..cumulative.len() {
        if cumulative[index] < cumulative[index - 1] {
            return Err(HistogramError::NotCumulative {
                index,
                value: cumulative[index],
                previous: cumulative[index - 1],
            });
        }
    }
    if !threshold.is_finite() {
        return Err(HistogramError::Threshold(threshold));
    }
    let total = cumulative[bounds.len()];
    let Some(index) = bounds.iter().position(|b| *b >= threshold || (b - threshold).abs() <= TOLERANCE * b.abs())
    else {
        let good = bounds.len().checked_sub(1).map_or(0, |last| cumulative[last]);
        return Ok(GoodCount { good, total, exact: good == total });
    };
    let upper = bounds[index];
    let (lower, below) = if index == 0 { (0.0f64.min(upper), 0) } else { (bounds[index - 1], cumulative[index - 1]) };
    let in_bucket = cumulative[index] - below;
    if (upper - threshold).abs() <= TOLERANCE * upper.abs() || in_bucket == 0 {
        let good = if (upper - threshold).abs() <= TOLERANCE * upper.abs() { cumulative[index] } else { below };
        return Ok(GoodCount { good, total, exact: true });
    }
    if threshold <= lower {
        return Ok(GoodCount { good: below, total, exact: false });
    }
    let share = (threshold - lower) / (upper - lower);
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let interpolated = ((in_bucket as f64 * share).round() as u64).min(in_bucket);
    Ok(GoodCount { good: below + interpolated, total, exact: false })
}

/// Running sums of per-bucket counts (OTLP's explicit-bucket `bucket_counts`), saturating:
/// the cumulative counts [`good_at_most`] reads.
pub fn cumulate(bucket_counts: &[u64]) -> Vec<u64> {
    bucket_counts
        .iter()
        .scan(0u64, |sum, c| {
            *sum = sum.saturating_add(*c);
            Some(*sum)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sums_the_last_buckets_and_clears_what_it_passes() {
        let mut ring = Ring::new(MINUTE_MS, 5);
        for minute in 0..5 {
            ring.add(minute * MINUTE_MS + 1, minute, 10);
        }
        assert_eq!(ring.sum(4 * MINUTE_MS, 5 * MINUTE_MS), (10, 50));
        assert_eq!(ring.sum(4 * MINUTE_MS, 2 * MINUTE_MS), (7, 20));
        // A partial window rounds up to whole buckets.
        assert_eq!(ring.sum(4 * MINUTE_MS, 90_000), (7, 20));
        // Two minutes later, with nothing recorded, the window has moved past two buckets.
        assert_eq!(ring.sum(6 * MINUTE_MS, 5 * MINUTE_MS), (9, 30));
        // A record after a gap longer than the ring clears everything else.
        ring.add(100 * MINUTE_MS, 1, 1);
        assert_eq!(ring.sum(100 * MINUTE_MS, 5 * MINUTE_MS), (1, 1));
        ring.add(101 * MINUTE_MS, u64::MAX, u64::MAX);
        ring.add(101 * MINUTE_MS, 5, 5);
        assert_eq!(ring.sum(101 * MINUTE_MS, 5 * MINUTE_MS), (u64::MAX, u64::MAX));
    }

    #[test]
    fn interpolates_inside_a_bucket_and_is_exact_on_bounds() {
        let bounds = [0.1, 0.2, 0.4, 0.8];
        let cumulative = [10, 30, 70, 90, 100];
        let check = |threshold: f64, good: u64, exact: bool| {
            assert_eq!(
                good_at_most(&bounds, &cumulative, threshold),
                Ok(GoodCount { good, total: 100, exact }),
                "{threshold}"
            );
        };
        check(0.4, 70, true);
        check(0.2, 30, true);
        // 0.42 lies in (0.4, 0.8]: 70 + 20 × 0.02 / 0.4 = 71.
        check(0.42, 71, false);
        check(0.6, 80, false);
        // The first bucket starts at 0: 10 × 0.05 / 0.1 = 5.
        check(0.05, 5, false);
        // Above the last bound: the count at the last bound, not exact.
        check(2.0, 90, false);
        check(0.0, 0, false);
        assert_eq!(
            good_at_most(&[0.1, 0.2], &[5, 5, 9], 0.15),
            Ok(GoodCount { good: 5, total: 9, exact: true }),
            "an empty bucket needs no estimate"
        );
        assert_eq!(good_at_most(&[], &[7], 1.0), Ok(GoodCount { good: 0, total: 7, exact: false }));
    }

    #[test]
    fn bad_histograms_say_what_and_where() {
        assert_eq!(good_at_most(&[0.1], &[1], 0.1), Err(HistogramError::Length { bounds: 1, counts: 1 }));
        assert_eq!(good_at_most(&[0.2, 0.1], &[1, 2, 3], 0.1), Err(HistogramError::Bound { index: 1, value: 0.1 }));
        assert_eq!(
            good_at_most(&[0.1, f64::NAN], &[1, 2, 3], 0.1).map_err(|e| e.to_string()),
            Err("bucket bound 1 (NaN) is not finite and above the bound before it".to_string())
        );
        assert_eq!(
            good_at_most(&[0.1, 0.2], &[5, 3, 9], 0.1),
            Err(HistogramError::NotCumulative { index: 1, value: 3, previous: 5 })
        );
        assert_eq!(good_at_most(&[0.1], &[1, 2], f64::INFINITY), Err(HistogramError::Threshold(f64::INFINITY)));
        assert_eq!(cumulate(&[1, 2, u64::MAX, 4]), vec![1, 3, u64::MAX, u64::MAX]);
    }

    #[test]
    fn configuration_errors() {
        assert_eq!(BudgetTracker::new(1.0, HOUR_MS).err(), Some(ConfigError::Target(1.0)));
        assert_eq!(
            BudgetTracker::new(f64::NAN, HOUR_MS).err().map(|e| e.to_string()),
            Some("SLO target NaN is not strictly between 0 and 1".into())
        );
        assert_eq!(BudgetTracker::new(0.99, 30 * MINUTE_MS).err(), Some(ConfigError::Window(30 * MINUTE_MS)));
        let rule = AlertRule {
            severity: AlertSeverity::Page,
            long_window_ms: 6 * HOUR_MS,
            short_window_ms: 30 * MINUTE_MS,
            burn_rate: 6.0,
        };
        let err = BudgetTracker::with_rules(0.99, 2 * HOUR_MS, &[rule]).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("alert rule 0 (6h/30m page at 6×): the long window is longer than the 2h compliance window")
        );
        // The workbook's rules that fit: a 2h window keeps the 1h/5m page only.
        let tracker = BudgetTracker::new(0.99, 2 * HOUR_MS).expect("valid");
        assert_eq!(tracker.rules().len(), 1);
        assert_eq!(
            tracker.status(0).burn_rates.iter().map(|w| w.window.as_str()).collect::<Vec<_>>(),
            ["5m", "30m", "1h"]
        );
    }
}
