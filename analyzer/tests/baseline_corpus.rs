//! The baseline detector on the labelled synthetic corpus (`analyzer::baseline::synthetic`),
//! with the default configuration and the corpus's context rules (the batch job's nightly run
//! exempt): most incidents found, early, few false alarms, none where the corpus says nothing
//! may alarm (the batch job's peak, right after a gap or a counter reset). The per-category
//! table is `cargo run -p analyzer --release --example baseline_corpus`.

use analyzer::baseline::Config;
use analyzer::baseline::synthetic::{LabelledSeries, context_rules, corpus, evaluate};

#[test]
fn the_corpus_is_found_early_with_few_false_alarms() {
    let series = corpus(1);
    let rules = context_rules();
    let (mut incidents, mut found, mut points, mut false_alarms) = (0, 0, 0, 0);
    let mut delays: Vec<usize> = Vec::new();
    let mut report = String::new();
    for s in &series {
        let eval = evaluate(s, &Config::default(), &rules);
        assert_eq!(eval.quiet_alarms, 0, "{}: an alarm where nothing may alarm", s.name);
        incidents += s.incidents.len();
        found += eval.delays.iter().flatten().count();
        points += eval.points;
        false_alarms += eval.false_alarms;
        for (incident, delay) in s.incidents.iter().zip(&eval.delays) {
            match incident.kind {
                // A slow drift is not far from its start anywhere near its start.
                "drift" => {}
                // A change of variance shows in the spread of the last 8 points: within two such
                // windows.
                "variance" => assert!(delay.is_none_or(|d| d <= 16), "{}: {delay:?}", s.name),
                _ => delays.extend(delay),
            }
        }
        report.push_str(&format!("{}: {:?}, {} false\n", s.name, eval.delays, eval.false_alarms));
    }
    let share = found as f64 / incidents as f64;
    assert!(share >= 0.9, "found {found} of {incidents}\n{report}");
    let per_10k = 1e4 * false_alarms as f64 / points as f64;
    assert!(per_10k <= 1.0, "{false_alarms} false alarms in {points} points\n{report}");
    // Everything else is found within a few points of its start: the alarm is on the first point
    // outside the band, or on the second when one point alone is not far enough out.
    delays.sort_unstable();
    assert!(delays.iter().all(|&d| d <= 3), "delays {delays:?}\n{report}");
}

/// The batch job's nightly peak, 4 times its daytime load, raises nothing under its context
/// rule; without the rule the same series alarms at night, so the rule is what makes it normal.
#[test]
fn the_batch_jobs_nightly_peak_is_normal_only_under_its_rule() {
    let batch: LabelledSeries = corpus(1).into_iter().find(|s| s.category == "batch_job").expect("a batch job");
    let with_rule = evaluate(&batch, &Config::default(), &context_rules());
    assert_eq!(with_rule.quiet_alarms, 0);
    assert_eq!(with_rule.false_alarms, 0);
    let without = evaluate(&batch, &Config::default(), &Default::default());
    assert!(without.quiet_alarms > 0, "{without:?}");
}
