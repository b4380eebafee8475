//! Metamorphic tests of the baseline detector: what must not change the answer.
//! - Multiplying a series by a positive constant (and `min_deviation` with it) moves no alarm
//!   and no score: the detector has no absolute threshold of its own.
//! - Feeding the same points in batches of any size gives the same scores.
//! - Serialising the detector midway (a restart) and continuing gives bit-identical output.
//!
//! Every model is exercised, on series of the synthetic corpus that have seasonality, gaps,
//! irregular sampling, NaNs, counters and incidents.

use analyzer::baseline::synthetic::{LabelledSeries, corpus};
use analyzer::baseline::{Config, Detector, Model, Scored};

fn series() -> Vec<LabelledSeries> {
    let wanted =
        ["spikes-daily-1m", "gaps-5m", "irregular-jitter", "requests-counter-1m", "weekly-traffic-5m", "variance-5m"];
    corpus(3).into_iter().filter(|s| wanted.contains(&s.name.as_str())).collect()
}

fn configs(s: &LabelledSeries) -> Vec<Config> {
    [Model::Auto, Model::Flat, Model::Daily, Model::Seasonal, Model::Mixture]
        .into_iter()
        .map(|model| Config { model, counter: s.counter, ..Config::default() })
        .collect()
}

fn run(config: &Config, points: &[(i64, f64)]) -> Vec<Scored> {
    Detector::new(config.clone()).expect("valid configuration").update_all(points.iter().copied())
}

/// Equal to the bit, NaN equal to NaN.
fn same(a: &Scored, b: &Scored) -> bool {
    let bits = |s: &Scored| [s.score, s.expected, s.lower, s.upper].map(f64::to_bits);
    bits(a) == bits(b) && a.alarm == b.alarm && a.ignored == b.ignored && a.event == b.event
}

#[test]
fn scaling_a_series_moves_no_alarm() {
    let mut alarms = 0;
    for s in series() {
        for config in configs(&s) {
            let base = run(&config, &s.points);
            alarms += base.iter().filter(|x| x.alarm).count();
            for factor in [1000.0, 0.001, 3.7] {
                let scaled_points: Vec<(i64, f64)> = s.points.iter().map(|&(t, v)| (t, v * factor)).collect();
                let scaled = run(&config, &scaled_points);
                for (i, (a, b)) in base.iter().zip(&scaled).enumerate() {
                    let at = format!("{} {:?} ×{factor} point {i}", s.name, config.model);
                    assert_eq!(a.alarm, b.alarm, "{at}: {a:?} vs {b:?}");
                    assert!((a.score - b.score).abs() <= 1e-6 * a.score.max(1.0), "{at}: {a:?} vs {b:?}");
                    let close = |x: f64, y: f64| {
                        (x.is_nan() && y.is_nan()) || (x * factor - y).abs() <= 1e-6 * y.abs().max(factor)
                    };
                    assert!(close(a.expected, b.expected) && close(a.upper, b.upper), "{at}: {a:?} vs {b:?}");
                }
            }
        }
    }
    assert!(alarms > 20, "the test needs alarms to move: {alarms}");
}

#[test]
fn scaling_keeps_alarms_with_a_minimum_deviation_scaled_too() {
    let s = series().into_iter().find(|s| s.name == "spikes-daily-1m").expect("series");
    let config = Config { min_deviation: 35.0, ..Config::default() };
    let base = run(&config, &s.points);
    let scaled_points: Vec<(i64, f64)> = s.points.iter().map(|&(t, v)| (t, v * 40.0)).collect();
    let scaled = run(&Config { min_deviation: 35.0 * 40.0, ..config.clone() }, &scaled_points);
    let alarms = |r: &[Scored]| r.iter().enumerate().filter(|(_, s)| s.alarm).map(|(i, _)| i).collect::<Vec<_>>();
    assert!(!alarms(&base).is_empty());
    assert_eq!(alarms(&base), alarms(&scaled));
    // The minimum deviation does something: without it there are more alarms.
    assert!(alarms(&run(&Config::default(), &s.points)).len() > alarms(&base).len());
}

#[test]
fn batch_sizes_do_not_matter() {
    for s in series() {
        for config in configs(&s) {
            let whole = run(&config, &s.points);
            for size in [1, 7, 500] {
                let mut detector = Detector::new(config.clone()).unwrap();
                let mut batched = Vec::new();
                for chunk in s.points.chunks(size) {
                    batched.extend(detector.update_all(chunk.iter().copied()));
                }
                assert_eq!(batched.len(), whole.len());
                let first_difference = whole.iter().zip(&batched).position(|(a, b)| !same(a, b));
                assert_eq!(first_difference, None, "{} {:?} in batches of {size}", s.name, config.model);
            }
        }
    }
}

#[test]
fn a_restart_continues_exactly() {
    for s in series() {
        for config in configs(&s) {
            let whole = run(&config, &s.points);
            let mut detector = Detector::new(config.clone()).unwrap();
            let mut restarted = Vec::new();
            for (i, chunk) in s.points.chunks(997).enumerate() {
                restarted.extend(detector.update_all(chunk.iter().copied()));
                let json = serde_json::to_string(&detector).expect("serialises");
                detector = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{} restart {i}: {e}", s.name));
            }
            let first_difference = whole.iter().zip(&restarted).position(|(a, b)| !same(a, b));
            assert_eq!(first_difference, None, "{} {:?}", s.name, config.model);
        }
    }
}
