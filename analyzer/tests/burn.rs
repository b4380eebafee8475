//! Error budgets and burn-rate alerts (`analyzer::burn`) on simulated traffic whose budgets,
//! burn rates and alert times are worked out by hand in the comments.
//!
//! Steps are one minute apart, each reported half-way through its minute, so every step's
//! counts land in their own one-minute bucket and a window of `n` minutes holds exactly the
//! last `n` steps; hours start at minute multiples of 60 (the start `T0` is on an hour).

use analyzer::burn::{
    AlertEvent, AlertState, BudgetTracker, ConfigError, HOUR_MS, MINUTE_MS, RecordError, Recorded, Step, good_at_most,
};
use slo_contracts::AlertSeverity;

const T0: u64 = 20_000 * HOUR_MS;
const DAY_MS: u64 = 24 * HOUR_MS;

/// The instant of step `i`: half-way through minute `i` after `T0`.
fn at(i: u64) -> u64 {
    T0 + i * MINUTE_MS + MINUTE_MS / 2
}

/// Feeds steps `from..from + count`, each with `total` events of which `bad` are bad, and
/// returns the alert events with the step each came at.
fn feed(tracker: &mut BudgetTracker, from: u64, count: u64, total: u64, bad: u64) -> Vec<(u64, AlertEvent)> {
    let mut events = Vec::new();
    for i in from..from + count {
        let step = tracker.step(at(i), total - bad, total).expect("valid counts");
        events.extend(step.events.into_iter().map(|e| (i, e)));
    }
    events
}

fn close(actual: Option<f64>, expected: f64) -> bool {
    actual.is_some_and(|a| (a - expected).abs() <= 1e-9 * expected.abs().max(1.0))
}

#[track_caller]
fn assert_close(actual: Option<f64>, expected: f64) {
    assert!(close(actual, expected), "expected {expected}, got {actual:?}");
}

fn summary(events: &[(u64, AlertEvent)]) -> Vec<(u64, AlertState, String)> {
    events.iter().map(|(i, e)| (*i, e.state, e.rule.describe())).collect()
}

#[test]
fn budget_and_burn_rates_by_hand() {
    let mut tracker = BudgetTracker::new(0.999, 30 * DAY_MS).expect("valid");
    // Hour 0: 1000 requests a minute, all good. Hour 1: one bad request a minute.
    assert!(feed(&mut tracker, 0, 60, 1000, 0).is_empty());
    assert!(feed(&mut tracker, 60, 60, 1000, 1).is_empty());
    let status = tracker.status(at(119));
    // Over the window: 60 bad of 120,000; the budget allows 0.1% = 120, half of it is spent.
    assert_eq!((status.good, status.total), (119_940, 120_000));
    assert_close(status.budget_remaining, 0.5);
    // The last 5m, 30m and 1h are all in hour 1: 0.1% bad, a burn rate of exactly 1.
    for window in [5 * MINUTE_MS, 30 * MINUTE_MS, HOUR_MS] {
        assert_close(status.burn_rate(window), 1.0);
    }
    // 6h (minute buckets) and 3d (hour buckets) hold both hours: 60 of 120,000, half the rate.
    assert_close(status.burn_rate(6 * HOUR_MS), 0.5);
    assert_close(status.burn_rate(3 * DAY_MS), 0.5);
    let windows: Vec<&str> = status.burn_rates.iter().map(|w| w.window.as_str()).collect();
    assert_eq!(windows, ["5m", "30m", "1h", "6h", "3d"]);
    // Two hours of a 30-day window were seen: the budget is over them, and the status says so.
    assert!(status.partial_window);
    assert_eq!(status.seen_ms, 119 * MINUTE_MS);
    assert_eq!(
        status.note().as_deref(),
        Some("budget over the 1h59m seen of a 30d window: data starts later than the window")
    );
    // Then a bad minute, 200 of 1000: 260 bad of 121,000 against an allowance of 121 is
    // 1 - 260/121 = -1.1487...: more than the budget is spent.
    tracker.step(at(120), 800, 1000).expect("valid");
    let status = tracker.status(at(120));
    assert_close(status.budget_remaining, 1.0 - 260.0 / 121.0);
    // The 5m window: minutes 116..=120, 4 + 200 bad of 5000: (204/5000)/0.001 = 40.8.
    assert_close(status.burn_rate(5 * MINUTE_MS), 40.8);
}

#[test]
fn a_fast_burn_pages_and_the_short_window_resolves_it_within_minutes() {
    let mut tracker = BudgetTracker::new(0.999, 30 * DAY_MS).expect("valid");
    // Three healthy days at 1000 requests a minute, so every window starts full of good traffic.
    let healthy = 3 * 24 * 60;
    assert!(feed(&mut tracker, 0, healthy, 1000, 0).is_empty());
    // Then 2% errors (20 a minute), a burn rate of 20, for an hour. After j burning minutes the
    // 1h window holds 20j bad of 60,000: a burn rate of j/3, which reaches 14.4 at j = 44
    // (the workbook's detection time for 2% errors is 43.2 minutes: 2% of a 30-day budget).
    // The 5m window burns at 20 from j = 5 on. The 6h window reaches only 20·60/360 = 3.3 (< 6)
    // and the 3d window 1200/4,320,000/0.001 = 0.28 (< 1): only the fast page fires.
    let burning = feed(&mut tracker, healthy, 60, 1000, 20);
    assert_eq!(summary(&burning), [(healthy + 43, AlertState::Firing, "1h/5m page at 14.4×".to_string())]);
    let firing = &burning[0].1;
    assert_eq!(firing.severity, AlertSeverity::Page);
    assert_close(firing.long_burn_rate, 44.0 / 3.0);
    assert_close(firing.short_burn_rate, 20.0);
    assert_eq!(firing.since_ms, at(healthy + 43));
    // The burning stops. After s healthy minutes the 5m window burns at 4(5 - s): 16 at s = 1,
    // 12 at s = 2, when the page resolves, though the 1h window still burns at 58/3 = 19.3; on
    // its own it would keep paging until s = 17.
    let after = feed(&mut tracker, healthy + 60, 120, 1000, 0);
    assert_eq!(summary(&after), [(healthy + 61, AlertState::Resolved, "1h/5m page at 14.4×".to_string())]);
    let resolved = &after[0].1;
    assert_close(resolved.short_burn_rate, 12.0);
    assert_close(resolved.long_burn_rate, 58.0 / 3.0);
    assert_eq!(resolved.since_ms, at(healthy + 43));
    // 1200 bad requests of the 4382 minutes × 1000 seen (a partial 30-day window), against an
    // allowance of 0.1% of them, 4382: 27.4% of the budget spent.
    assert_close(resolved.budget_remaining, 1.0 - 1200.0 / 4382.0);
}

#[test]
fn an_outage_fires_every_alert_within_five_minutes() {
    let mut tracker = BudgetTracker::new(0.999, 30 * DAY_MS).expect("valid");
    let healthy = 3 * 24 * 60;
    feed(&mut tracker, 0, healthy, 1000, 0);
    // Every request fails: a burn rate of 1000. After j minutes: 1h burns at 1000j/60 (16.7 at
    // j = 1), 6h at 1000j/360 (8.3 at j = 3), and 3d, read from hour buckets 1..=72 holding
    // 71 healthy hours and j bad minutes, at 1000j·1000/(4,260,000 + 1000j): 1.17 at j = 5.
    let events = feed(&mut tracker, healthy, 10, 1000, 1000);
    assert_eq!(
        summary(&events),
        [
            (healthy, AlertState::Firing, "1h/5m page at 14.4×".to_string()),
            (healthy + 2, AlertState::Firing, "6h/30m page at 6×".to_string()),
            (healthy + 4, AlertState::Firing, "3d/6h ticket at 1×".to_string()),
        ]
    );
    assert_eq!(tracker.status(at(healthy + 9)).firing.len(), 3);
}

#[test]
fn a_slow_burn_opens_only_a_ticket_after_days() {
    let mut tracker = BudgetTracker::new(0.999, 30 * DAY_MS).expect("valid");
    let healthy = 3 * 24 * 60;
    feed(&mut tracker, 0, healthy, 4000, 0);
    // 5 errors in 4000 a minute: a burn rate of 1.25, under both pages' rates. At burning
    // minute m = 60q + r (r in 1..=60) the 3d window, buckets of hours, holds 71 whole hours and
    // r minutes: its burn rate is 1.25m / (4260 + r), at least 1 when 75q + r/4 >= 4260, first
    // at q = 57, r = 1: minute 3421 (57 hours in), step healthy + 3420. The 6h window burns
    // at 1.25 long before.
    let events = feed(&mut tracker, healthy, 3600, 4000, 5);
    assert_eq!(summary(&events), [(healthy + 3420, AlertState::Firing, "3d/6h ticket at 1×".to_string())]);
    assert_eq!(events[0].1.severity, AlertSeverity::Ticket);
    assert_close(events[0].1.short_burn_rate, 1.25);
    // Healthy again: after s minutes the 6h window burns at 1.25(360 - s)/360, below 1 from
    // s = 73 on; the ticket resolves then (the 3d window is still above 1).
    let after = feed(&mut tracker, healthy + 3600, 200, 4000, 0);
    assert_eq!(summary(&after), [(healthy + 3600 + 72, AlertState::Resolved, "3d/6h ticket at 1×".to_string())]);
    assert!(after[0].1.long_burn_rate.is_some_and(|b| b > 1.0));
}

#[test]
fn half_the_allowed_rate_never_alerts() {
    let mut tracker = BudgetTracker::new(0.999, 30 * DAY_MS).expect("valid");
    // 2 errors in 4000 a minute, a burn rate of 0.5, for ten days.
    let events = feed(&mut tracker, 0, 10 * 24 * 60, 4000, 2);
    assert!(events.is_empty(), "{:?}", summary(&events));
    let status = tracker.status(at(10 * 24 * 60 - 1));
    assert_close(status.budget_remaining, 0.5);
    for window in &status.burn_rates {
        assert_close(window.burn_rate, 0.5);
    }
    assert!(status.firing.is_empty());
}

#[test]
fn exactly_the_threshold_fires() {
    // 0.1% errors on 99.9% is a burn rate of 1 although 1 - 0.999 is not 0.001 in floating
    // point: with 6h of that and a 3d window of nothing else, the ticket fires.
    let mut tracker = BudgetTracker::new(0.999, 30 * DAY_MS).expect("valid");
    let events = feed(&mut tracker, 0, 360, 1000, 1);
    assert_eq!(summary(&events), [(0, AlertState::Firing, "3d/6h ticket at 1×".to_string())]);
}

#[test]
fn a_restored_tracker_continues_exactly() {
    // Every 997 minutes: half an hour of 20% errors (a burn rate of 40 on 99.5%), half an
    // hour without traffic, then about 0.2% errors.
    fn run(tracker: &mut BudgetTracker, steps: std::ops::Range<u64>) -> Vec<Step> {
        steps
            .map(|i| {
                let (total, bad) = match i % 997 {
                    0..=30 => (2000, 400),
                    31..=60 => (0, 0),
                    n => (1500 + n, n % 7),
                };
                tracker.step(at(i), total - bad, total).expect("valid")
            })
            .collect()
    }
    let mut original = BudgetTracker::new(0.995, 28 * DAY_MS).expect("valid");
    let before: usize = run(&mut original, 0..5000).iter().map(|s| s.events.len()).sum();
    assert!(before >= 2);
    // Saved mid-stream, in the middle of a burst (5000 % 997 = 15), while the fast page fires.
    assert!(!original.status(at(4999)).firing.is_empty());
    let saved = serde_json::to_string(&original).expect("serialise");
    let mut restored: BudgetTracker = serde_json::from_str(&saved).expect("restore");
    assert_eq!(restored, original);
    let (a, b) = (run(&mut original, 5000..9000), run(&mut restored, 5000..9000));
    assert_eq!(serde_json::to_string(&a).expect("json"), serde_json::to_string(&b).expect("json"));
    let transitions: usize = a.iter().map(|s| s.events.len()).sum();
    assert!(transitions >= 2, "the pattern should fire and resolve alerts after the restart");
}

#[test]
fn a_restored_tracker_firing_does_not_fire_again() {
    let mut tracker = BudgetTracker::new(0.999, 30 * DAY_MS).expect("valid");
    assert_eq!(feed(&mut tracker, 0, 3, 1000, 1000).len(), 3);
    let mut restored: BudgetTracker =
        serde_json::from_str(&serde_json::to_string(&tracker).expect("json")).expect("restore");
    assert!(feed(&mut restored, 3, 30, 1000, 1000).is_empty());
    assert_eq!(restored.status(at(32)).firing.len(), 3);
}

#[test]
fn a_damaged_state_is_refused() {
    let tracker = BudgetTracker::new(0.999, 30 * DAY_MS).expect("valid");
    let mut state: serde_json::Value = serde_json::to_value(&tracker).expect("json");
    state["hours"]["good"].as_array_mut().expect("array").pop();
    let err = serde_json::from_value::<BudgetTracker>(state).expect_err("refused").to_string();
    assert!(err.contains("the hours ring has 719 buckets of 3600000 ms, the window needs 720"), "{err}");
    let mut state: serde_json::Value = serde_json::to_value(&tracker).expect("json");
    state["target"] = serde_json::json!(1.5);
    let err = serde_json::from_value::<BudgetTracker>(state).expect_err("refused").to_string();
    assert!(err.contains("SLO target 1.5 is not strictly between 0 and 1"), "{err}");
    let mut state: serde_json::Value = serde_json::to_value(&tracker).expect("json");
    state["firing"] = serde_json::json!([]);
    let err = serde_json::from_value::<BudgetTracker>(state).expect_err("refused").to_string();
    assert!(err.contains("0 alert states for 3 rules"), "{err}");
    let mut state: serde_json::Value = serde_json::to_value(&tracker).expect("json");
    state["version"] = serde_json::json!(7);
    let err = serde_json::from_value::<BudgetTracker>(state).expect_err("refused").to_string();
    assert_eq!(err, ConfigError::State("version 7 (this build reads 1)".into()).to_string());
}

#[test]
fn memory_stays_bounded_over_sixty_days() {
    let mut tracker = BudgetTracker::new(0.999, 30 * DAY_MS).expect("valid");
    let at_start = tracker.heap_bytes();
    // (360 minute buckets + 720 hour buckets) × (good, total) × 8 bytes, plus the rules.
    assert!((1080 * 16..1080 * 16 + 1024).contains(&at_start), "{at_start}");
    let mut largest_state = 0;
    // Sixty days of five-minute steps with traffic growing a thousandfold.
    for i in 0..60 * 24 * 12 {
        let total = 100 + i * 10;
        tracker.step(T0 + i * 5 * MINUTE_MS, total - total / 2000, total).expect("valid");
        if i.is_multiple_of(2000) {
            assert_eq!(tracker.heap_bytes(), at_start);
            largest_state = largest_state.max(serde_json::to_string(&tracker).expect("json").len());
        }
    }
    assert_eq!(tracker.heap_bytes(), at_start);
    assert!(largest_state < 40_000, "{largest_state}");
    let status = tracker.status(T0 + (60 * 24 * 12 - 1) * 5 * MINUTE_MS);
    assert!(!status.partial_window);
    assert_eq!(status.seen_ms, 30 * DAY_MS);
    // The budget is over the last 30 days only: 720 hour buckets of 12 steps each.
    let first = 60 * 24 * 12 - 720 * 12;
    let expected: u64 = (first..60 * 24 * 12).map(|i| 100 + i * 10).sum();
    assert_eq!(status.total, expected);
}

#[test]
fn gaps_backwards_time_and_huge_counts() {
    let mut tracker = BudgetTracker::new(0.99, DAY_MS).expect("valid");
    feed(&mut tracker, 0, 10, 100, 100);
    assert_eq!(tracker.status(at(9)).firing.len(), 2, "both pages fit a 1d window and fire");
    // Two hours without a step, then an empty one: the short windows have no events, so no
    // burn rate, and the alerts resolve.
    let step = tracker.step(at(130), 0, 0).expect("valid");
    assert_eq!(step.status.burn_rate(5 * MINUTE_MS), None);
    assert_eq!(step.status.burn_rate(HOUR_MS), None);
    assert_eq!(step.events.iter().filter(|e| e.state == AlertState::Resolved).count(), 2);
    // The budget still holds the outage: 1000 bad of 1000.
    assert_close(step.status.budget_remaining, 1.0 - 1.0 / 0.01);
    // A record from before the newest one is ignored and counted.
    assert_eq!(tracker.record(at(5), 1, 1), Ok(Recorded::IgnoredOlder { newest_ms: at(130) }));
    let status = tracker.status(at(130));
    assert_eq!((status.total, status.ignored_records), (1000, 1));
    // Huge counts saturate rather than wrap.
    tracker.record(at(131), u64::MAX - 1, u64::MAX).expect("valid");
    tracker.record(at(131), u64::MAX, u64::MAX).expect("valid");
    let status = tracker.status(at(131));
    assert_eq!(status.total, u64::MAX);
    assert!(status.budget_remaining.is_some_and(f64::is_finite));
    // More good events than events is refused, saying what and when.
    let err = tracker.record(at(132), 5, 4).expect_err("refused");
    assert_eq!(err, RecordError::GoodAboveTotal { time_ms: at(132), good: 5, total: 4 });
    assert_eq!(
        err.to_string(),
        format!("at {} ms: 5 good events out of 4; good events cannot exceed all events", at(132))
    );
    // No events at all: no budget to report, and a note that says why.
    let empty = BudgetTracker::new(0.99, DAY_MS).expect("valid").status(T0);
    assert_eq!(empty.budget_remaining, None);
    assert_eq!(empty.note().as_deref(), Some("no events in the last 1d: no budget spent or left to report"));
}

#[test]
fn a_contract_slo_becomes_a_tracker_with_the_alerts_that_fit() {
    let contract = "apiVersion: slo-gate/v1\nkind: Contract\nservice: s\nobjectives:\n  - name: e\n    error_rate: {}\n    fail: \"< 1%\"\n    slo: { target: 99.5%, window: 2d }\n";
    let (contracts, _) = slo_contracts::parse("c.yaml", contract);
    let slo = contracts[0].objectives[0].slo.as_ref().expect("slo");
    let tracker = BudgetTracker::for_slo(slo).expect("valid");
    assert_eq!(tracker.target(), 0.995);
    assert_eq!(tracker.window_ms(), 2 * DAY_MS);
    let rules: Vec<String> = tracker.rules().iter().map(|r| r.describe()).collect();
    assert_eq!(rules, ["1h/5m page at 14.4×", "6h/30m page at 6×"]);
}

#[test]
fn latency_histograms_give_good_events_for_a_threshold() {
    // The span-metric default buckets (seconds) and a step's cumulative counts.
    let bounds = slo_contracts::model::DEFAULT_SPAN_METRIC_BUCKETS;
    let cumulative = [0, 0, 1, 3, 10, 200, 500, 800, 950, 990, 995, 997, 998, 999, 1000, 1000, 1000];
    let at_bound = good_at_most(&bounds, &cumulative, 0.4).expect("valid");
    assert_eq!((at_bound.good, at_bound.total, at_bound.exact), (950, 1000, true));
    // 420ms is a twentieth of the way from 400ms to 800ms: 950 + 40 × 0.05 = 952.
    let between = good_at_most(&bounds, &cumulative, 0.42).expect("valid");
    assert_eq!((between.good, between.exact), (952, false));
    let mut tracker = BudgetTracker::new(0.999, 30 * DAY_MS).expect("valid");
    tracker.step(at(0), between.good, between.total).expect("valid");
    // 48 slow of 1000: 4.8%, a burn rate of 48.
    assert_close(tracker.status(at(0)).burn_rate(5 * MINUTE_MS), 48.0);
}
