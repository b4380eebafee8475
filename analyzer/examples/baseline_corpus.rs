//! The detector on the labelled synthetic corpus (`analyzer::baseline::synthetic`), with the
//! default configuration and the corpus's context rules: per category, the series, points,
//! labelled incidents, how many were found, the median and largest delay from an incident's
//! start to its alarm (in points), and the false alarms (alarms outside every labelled
//! incident; those inside a quiet window — a batch job's peak, the points after a gap or a
//! counter reset — in brackets).
//!
//! `cargo run -p analyzer --release --example baseline_corpus [SEED]` (default seed 1).
//! `VERBOSE=1` adds a line per series; `DUMP=<series name>` writes that series' scored points as
//! CSV (`time,value,expected,lower,upper,score,alarm,model`) instead of the table.

use std::collections::BTreeMap;

use analyzer::baseline::synthetic::{context_rules, corpus, evaluate};
use analyzer::baseline::{Config, Detector};

#[derive(Default)]
struct Row {
    series: usize,
    points: usize,
    incidents: usize,
    delays: Vec<usize>,
    false_alarms: usize,
    quiet_alarms: usize,
}

fn main() {
    let seed = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let verbose = std::env::var_os("VERBOSE").is_some();
    let rules = context_rules();
    let base = Config::default();
    let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
    let mut kinds: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    if let Ok(name) = std::env::var("DUMP") {
        dump(seed, &name, &base);
        return;
    }
    for series in corpus(seed) {
        let eval = evaluate(&series, &base, &rules);
        let row = rows.entry(series.category).or_default();
        row.series += 1;
        row.points += eval.points;
        row.incidents += series.incidents.len();
        row.delays.extend(eval.delays.iter().flatten());
        row.false_alarms += eval.false_alarms;
        row.quiet_alarms += eval.quiet_alarms;
        for (incident, delay) in series.incidents.iter().zip(&eval.delays) {
            let k = kinds.entry(incident.kind).or_default();
            k.0 += 1;
            k.1 += usize::from(delay.is_some());
        }
        if verbose {
            println!(
                "{:<24} {:>6} points, delays {:?}, false alarms {}",
                series.name, eval.points, eval.delays, eval.false_alarms
            );
        }
    }
    println!(
        "{:<14} {:>6} {:>8} {:>9} {:>6} {:>12} {:>9} {:>13}",
        "category", "series", "points", "incidents", "found", "median delay", "max delay", "false alarms"
    );
    let mut total = Row::default();
    for (category, row) in &rows {
        print_row(category, row);
        total.series += row.series;
        total.points += row.points;
        total.incidents += row.incidents;
        total.delays.extend(&row.delays);
        total.false_alarms += row.false_alarms;
        total.quiet_alarms += row.quiet_alarms;
    }
    print_row("all", &total);
    println!(
        "\nfound {:.1}% of incidents; {:.2} false alarms per 10,000 points",
        100.0 * total.delays.len() as f64 / total.incidents.max(1) as f64,
        1e4 * total.false_alarms as f64 / total.points.max(1) as f64
    );
    let by_kind: Vec<String> = kinds.iter().map(|(k, (n, f))| format!("{k} {f}/{n}")).collect();
    println!("by incident kind: {}", by_kind.join(", "));
}

fn print_row(category: &str, row: &Row) {
    let mut d = row.delays.clone();
    d.sort_unstable();
    let median = if d.is_empty() { "-".to_string() } else { d[d.len() / 2].to_string() };
    let max = d.last().map_or("-".to_string(), ToString::to_string);
    println!(
        "{:<14} {:>6} {:>8} {:>9} {:>6} {:>12} {:>9} {:>13}",
        category,
        row.series,
        row.points,
        row.incidents,
        row.delays.len(),
        median,
        max,
        format!("{} ({})", row.false_alarms, row.quiet_alarms)
    );
}

fn dump(seed: u64, name: &str, base: &Config) {
    let rules = context_rules();
    let Some(series) = corpus(seed).into_iter().find(|s| s.name == name) else {
        eprintln!("no series named {name}");
        std::process::exit(2);
    };
    let labels: Vec<(&str, &str)> = series.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut config = rules.config_for(base, &labels);
    config.counter |= series.counter;
    let mut detector = Detector::new(config).expect("valid configuration");
    println!("time,value,expected,lower,upper,score,alarm,model");
    for &(t, v) in &series.points {
        let s = detector.update(t, v);
        if !s.ignored {
            let model = format!("{:?}", detector.chosen_model()).to_lowercase();
            println!("{t},{v},{},{},{},{},{},{model}", s.expected, s.lower, s.upper, s.score, u8::from(s.alarm));
        }
    }
    for i in &series.incidents {
        eprintln!("incident {} {}..{} size {}", i.kind, i.start_ms, i.end_ms, i.size);
    }
}
