//! The baseline detector case by case: gaps, irregular sampling, NaN and out-of-order points,
//! counters and their resets, direction, one alarm per incident, re-baselining, exempt windows,
//! the mixture model, bad configurations and damaged state.

use analyzer::baseline::synthetic::Rng;
use analyzer::baseline::{
    Config, ConfigError, ContextRules, Detector, Direction, ExemptWindow, Incident, Model, Scored, probability,
};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Monday 2026-01-05 00:00 UTC.
const START: i64 = 1_767_571_200_000;

/// `days` of Gaussian noise (σ = 2) around 100 every `step`.
fn noise(seed: u64, days: i64, step: i64) -> Vec<(i64, f64)> {
    let mut rng = Rng(seed);
    (0..days * DAY / step).map(|i| (START + i * step, 100.0 + 2.0 * rng.normal())).collect()
}

fn run(config: Config, points: &[(i64, f64)]) -> Vec<Scored> {
    Detector::new(config).expect("valid configuration").update_all(points.iter().copied())
}

fn alarms_at(scored: &[Scored], points: &[(i64, f64)]) -> Vec<i64> {
    scored.iter().zip(points).filter(|(s, _)| s.alarm).map(|(_, p)| p.0).collect()
}

#[test]
fn warming_up_scores_nothing() {
    let points = noise(1, 1, 5 * MINUTE);
    let scored = run(Config::default(), &points);
    assert!(scored[0].expected.is_nan() && scored[0].score == 0.0);
    assert!(scored[..12].iter().all(|s| s.score == 0.0 && !s.alarm));
    assert!(scored[20..].iter().all(|s| !s.expected.is_nan() && s.lower < s.expected && s.expected < s.upper));
    assert!(scored.iter().all(|s| s.score >= 0.0 && !s.score.is_nan()));
}

#[test]
fn nan_infinities_and_old_points_change_nothing() {
    let points = noise(2, 2, 5 * MINUTE);
    let mut detector = Detector::new(Config::default()).unwrap();
    detector.update_all(points.iter().copied());
    let before = serde_json::to_string(&detector).unwrap();
    let last = points.last().unwrap().0;
    for (t, v) in [
        (last + MINUTE, f64::NAN),
        (last + MINUTE, f64::INFINITY),
        (last + MINUTE, f64::NEG_INFINITY),
        (last, 5.0),
        (last - HOUR, 1e9),
    ] {
        let s = detector.update(t, v);
        assert!(s.ignored && s.score == 0.0 && !s.alarm && s.event.is_none(), "{t} {v}: {s:?}");
    }
    assert_eq!(serde_json::to_string(&detector).unwrap(), before, "an ignored point changed the state");
    assert!(!detector.update(last + MINUTE, 100.0).ignored);
}

#[test]
fn the_first_points_after_a_gap_are_not_anomalous_for_the_gap() {
    // Six hours and then two days without points, the level a little different after each
    // (as a level may move while nobody looks: 3σ, under the band).
    let mut points = noise(3, 6, 5 * MINUTE);
    points.retain(|&(t, _)| !(START + 2 * DAY..START + 2 * DAY + 6 * HOUR).contains(&t));
    points.retain(|&(t, _)| !(START + 3 * DAY..START + 5 * DAY).contains(&t));
    for p in &mut points {
        if p.0 >= START + 5 * DAY {
            p.1 += 6.0;
        }
    }
    let scored = run(Config::default(), &points);
    assert_eq!(alarms_at(&scored, &points), Vec::<i64>::new());
    let after = points.iter().position(|p| p.0 >= START + 5 * DAY).unwrap();
    assert!(scored[after..after + 5].iter().all(|s| s.score < 1.0), "{:?}", &scored[after..after + 5]);
}

#[test]
fn irregular_sampling_finds_the_spike_and_nothing_else() {
    let mut rng = Rng(4);
    let mut points = Vec::new();
    let mut t = START;
    while t < START + 4 * DAY {
        points.push((t, 50.0 + rng.normal()));
        // from 20 seconds to 9 minutes apart
        t += (20_000.0 + rng.unit() * 520_000.0) as i64;
    }
    let spike = points.len() * 3 / 4;
    points[spike].1 += 15.0;
    let scored = run(Config::default(), &points);
    assert_eq!(alarms_at(&scored, &points), vec![points[spike].0]);
}

#[test]
fn one_alarm_per_incident_with_its_start_peak_and_end() {
    let mut points = noise(5, 4, 5 * MINUTE);
    let (from, to) = (START + 3 * DAY, START + 3 * DAY + 2 * HOUR);
    for p in &mut points {
        if (from..to).contains(&p.0) {
            p.1 += if p.0 == from + HOUR { 40.0 } else { 20.0 };
        }
    }
    let scored = run(Config::default(), &points);
    assert_eq!(alarms_at(&scored, &points), vec![from], "one alarm, on the first point");
    let events: Vec<&Incident> = scored.iter().filter_map(|s| s.event.as_ref()).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], &Incident::Opened { start_ms: from });
    let Incident::Resolved { start_ms, end_ms, peak_ms, actual_at_peak, expected_at_peak, peak_score } = events[1]
    else {
        panic!("{events:?}")
    };
    assert_eq!((*start_ms, *end_ms, *peak_ms), (from, to, from + HOUR));
    assert!((actual_at_peak - expected_at_peak - 40.0).abs() < 8.0 && *peak_score > 2.0, "{events:?}");
}

#[test]
fn a_level_that_stays_becomes_the_baseline() {
    let mut points = noise(6, 4, 5 * MINUTE);
    let from = START + 2 * DAY;
    for p in &mut points {
        if p.0 >= from {
            p.1 += 30.0;
        }
    }
    let scored = run(Config::default(), &points);
    assert_eq!(alarms_at(&scored, &points), vec![from]);
    let resolved = scored.iter().zip(&points).find_map(|(s, p)| match s.event {
        Some(Incident::Resolved { end_ms, .. }) => Some((end_ms, p.0)),
        _ => None,
    });
    let (end_ms, at) = resolved.expect("the incident resolves");
    assert_eq!(end_ms, at);
    assert!(at - from >= 4 * HOUR && at - from < 5 * HOUR, "re-baselined after 4 hours, not {}", at - from);
    let last = scored.last().unwrap();
    assert!((last.expected - 130.0).abs() < 2.0 && last.score < 1.0, "{last:?}");
}

#[test]
fn coming_back_after_a_new_normal_is_a_recovery_not_an_incident() {
    let mut points = noise(7, 4, 5 * MINUTE);
    let (from, to) = (START + 2 * DAY, START + 2 * DAY + 6 * HOUR);
    for p in &mut points {
        if (from..to).contains(&p.0) {
            p.1 -= 30.0;
        }
    }
    let scored = run(Config::default(), &points);
    assert_eq!(alarms_at(&scored, &points), vec![from], "the return to 100 raises nothing");
}

#[test]
fn direction_chooses_which_deviations_count() {
    let mut points = noise(8, 3, 5 * MINUTE);
    let (dip, spike) = (points.len() - 100, points.len() - 50);
    points[dip].1 -= 30.0;
    points[spike].1 += 30.0;
    let both = alarms_at(&run(Config::default(), &points), &points);
    let above = alarms_at(&run(Config { direction: Direction::Above, ..Config::default() }, &points), &points);
    let below = alarms_at(&run(Config { direction: Direction::Below, ..Config::default() }, &points), &points);
    assert_eq!(both, vec![points[dip].0, points[spike].0]);
    assert_eq!(above, vec![points[spike].0]);
    assert_eq!(below, vec![points[dip].0]);
}

#[test]
fn a_minimum_deviation_keeps_small_changes_inside() {
    // A quiet series (σ = 0.01) whose 0.2 step is far outside its band but not worth an alarm.
    let mut points: Vec<(i64, f64)> =
        noise(9, 3, 5 * MINUTE).into_iter().map(|(t, v)| (t, 1.0 + (v - 100.0) / 200.0)).collect();
    let n = points.len();
    for p in &mut points[n - 60..] {
        p.1 += 0.2;
    }
    assert_eq!(alarms_at(&run(Config::default(), &points), &points).len(), 1);
    let config = Config { min_deviation: 0.25, ..Config::default() };
    let scored = run(config, &points);
    assert!(scored.iter().all(|s| s.score <= 1.0 && !s.alarm));
    assert!(scored[n - 1].upper - scored[n - 1].expected >= 0.25);
}

#[test]
fn a_counter_is_scored_by_its_rate_and_resets_are_not_anomalies() {
    let mut rng = Rng(10);
    let mut points = Vec::new();
    let mut count = 0.0;
    for i in 0..3 * 24 * 60 {
        let t = START + i * MINUTE;
        let surge = (2 * DAY + 10 * HOUR..2 * DAY + 10 * HOUR + 15 * MINUTE).contains(&(t - START));
        let rate = if surge { 40.0 } else { 20.0 } + rng.normal();
        count += rate * 60.0;
        if i == 1500 || i == 3000 {
            count = rate * 20.0; // restarted 20 s before this scrape
        }
        points.push((t, count.floor()));
    }
    let scored = run(Config { counter: true, ..Config::default() }, &points);
    assert_eq!(alarms_at(&scored, &points), vec![START + 2 * DAY + 10 * HOUR]);
    // The expectation is a rate per second.
    assert!((scored[2000].expected - 20.0).abs() < 1.0, "{:?}", scored[2000]);
    // At a reset nothing is judged; the point after it is normal again.
    assert!(scored[1500].expected.is_nan() && scored[1500].score == 0.0 && !scored[1500].ignored);
    assert!(scored[1502].score < 1.0);
}

#[test]
fn exempt_windows_are_normal_whatever_they_hold() {
    let mut points = noise(11, 4, 5 * MINUTE);
    for p in &mut points {
        let minute = (p.0 - START).rem_euclid(DAY) / MINUTE;
        if (60..150).contains(&minute) {
            p.1 *= 5.0;
        }
    }
    let exempt = vec![ExemptWindow { start: "01:00".into(), end: "02:30".into(), days: vec![] }];
    let scored = run(Config { exempt, ..Config::default() }, &points);
    assert_eq!(alarms_at(&scored, &points), Vec::<i64>::new());
    let inside = points.iter().position(|p| p.0 == START + 2 * DAY + 90 * MINUTE).unwrap();
    assert_eq!(scored[inside].score, 0.0);
    assert!(!alarms_at(&run(Config::default(), &points), &points).is_empty(), "without the window the peaks alarm");
}

#[test]
fn context_rules_give_the_batch_job_its_window() {
    let rules: ContextRules = serde_json::from_str(
        r#"{"rules": [{"match": {"job": "etl-batch"}, "set": {"exempt": [{"start": "01:00", "end": "02:30"}]}}]}"#,
    )
    .unwrap();
    let base = Config::default();
    assert_eq!(rules.config_for(&base, &[("job", "etl-batch"), ("instance", "a")]).exempt.len(), 1);
    assert!(rules.config_for(&base, &[("job", "api")]).exempt.is_empty());
}

#[test]
fn the_mixture_model_knows_two_modes() {
    // A cache: hits at 10 ms, misses at 80 ms, in random order; then one request at 45 ms.
    let mut rng = Rng(12);
    let mut points: Vec<(i64, f64)> = (0..16 * 24 * 12)
        .map(|i| {
            let v = if rng.unit() < 0.3 { 80.0 + 3.0 * rng.normal() } else { 10.0 + rng.normal() };
            (START + i * 5 * MINUTE, v)
        })
        .collect();
    let odd = points.len() - 10;
    points[odd].1 = 45.0;
    let scored = run(Config { model: Model::Mixture, ..Config::default() }, &points);
    let alarms = alarms_at(&scored, &points);
    assert!(alarms.contains(&points[odd].0), "{alarms:?}");
    let after_a_week: Vec<_> = alarms.iter().filter(|&&t| t >= START + 8 * DAY).collect();
    assert_eq!(after_a_week, vec![&points[odd].0], "mode switches are normal once learnt");
    // A flat robust model cannot hold both modes.
    let flat = alarms_at(&run(Config { model: Model::Flat, ..Config::default() }, &points), &points);
    assert!(flat.iter().filter(|&&t| t >= START + 8 * DAY).count() > 1, "{flat:?}");
}

#[test]
fn probability_is_at_least_a_half_exactly_on_alarms() {
    let mut points = noise(13, 3, 5 * MINUTE);
    let n = points.len();
    points[n - 30].1 += 40.0;
    points[n - 300].1 += 25.0;
    for s in run(Config::default(), &points) {
        let p = probability(&s);
        assert!((0.0..=1.0).contains(&p));
        assert_eq!(p >= 0.5, s.alarm, "{s:?} → {p}");
    }
}

#[test]
fn bad_configurations_and_damaged_state_are_errors() {
    let e = Detector::new(Config { band: f64::NAN, ..Config::default() }).unwrap_err();
    assert_eq!(e.to_string(), "band: NaN is not a positive number");
    assert!(matches!(e, ConfigError::Invalid { ref key, .. } if key == "band"));
    let mut detector = Detector::new(Config::default()).unwrap();
    detector.update_all(noise(14, 2, 5 * MINUTE));
    let json = serde_json::to_string(&detector).unwrap();
    let back: Detector = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    // The seasonal ring cut short, the model changed under the state, a tail factor below 1.
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["profile"]["tags"].as_array_mut().unwrap().truncate(5);
    assert!(serde_json::from_value::<Detector>(value).unwrap_err().to_string().contains("hour profile"));
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["config"]["model"] = "mixture".into();
    assert!(serde_json::from_value::<Detector>(value).is_err());
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["tail"] = 0.5.into();
    assert!(serde_json::from_value::<Detector>(value).is_err());
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["config"]["band"] = (-1.0).into();
    assert!(serde_json::from_value::<Detector>(value).unwrap_err().to_string().contains("band"));
}

#[test]
fn two_weeks_of_state_fit_in_16_kib() {
    for (step, model) in
        [(MINUTE, Model::Auto), (5 * MINUTE, Model::Auto), (MINUTE, Model::Mixture), (15_000, Model::Auto)]
    {
        let mut detector = Detector::new(Config { model, ..Config::default() }).unwrap();
        detector.update_all(noise(15, 15, step));
        let bytes = detector.memory_bytes();
        assert!(bytes < 16 * 1024, "{model:?} every {step} ms: {bytes} bytes");
        assert!(bytes > 8 * 1024, "{model:?}: {bytes} bytes is not counting the seasonal state");
    }
}
