//! `slo-gate anomalies score` and `anomalies eval`, run as the built binary on generated files:
//! a spike is flagged once and every input row gets its output row with its timestamp as
//! written; each kind of bad input exits 2 naming the file and line and leaves no output
//! behind; an evaluation over a small labelled folder (both NAB label forms, a file with its own
//! `anomaly_score` column, a file and a label key that do not match) gives the counts and NAB
//! scores computed here by hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use analyzer::anomaly_eval::format_time_ms;
use serde_json::Value;

const BASE_MS: i64 = 1_397_114_100_000; // 2014-04-10T07:15:00Z
const STEP_MS: i64 = 300_000;

fn slo_gate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slo-gate")).args(args).output().expect("run slo-gate")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Noise in [-1, 1) from a fixed seed (xorshift).
fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

/// A time as NAB's files write them: `2014-04-10 07:15:00.000000`.
fn nab_time(ms: i64) -> String {
    let rfc = format_time_ms(ms);
    format!("{}.000000", rfc.trim_end_matches('Z').replace('T', " "))
}

/// `n` points 5 min apart around 10 with bounded noise, `spike` added at each index given.
fn series(n: usize, seed: u64, spikes: &[usize]) -> Vec<(String, f64)> {
    noise(n, seed)
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let v = 10.0 + e + if spikes.contains(&i) { 50.0 } else { 0.0 };
            (nab_time(BASE_MS + i as i64 * STEP_MS), v)
        })
        .collect()
}

fn write_series(path: &Path, rows: &[(String, f64)]) {
    let mut csv = String::from("timestamp,value\n");
    for (t, v) in rows {
        csv.push_str(&format!("{t},{v}\n"));
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, csv).unwrap();
}

fn rows_of(csv: &str) -> Vec<Vec<String>> {
    csv.lines().map(|l| l.split(',').map(str::to_string).collect()).collect()
}

#[test]
fn a_spike_is_flagged_once_and_every_row_is_written_as_read() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("series.csv");
    let rows = series(600, 7, &[450]);
    write_series(&input, &rows);
    for (flag, threshold) in [(None, 1.0), (Some("--probability"), 0.5)] {
        let output = dir.path().join("scored.csv");
        let mut args =
            vec!["anomalies", "score", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()];
        args.extend(flag);
        let out = slo_gate(&args);
        assert!(out.status.success(), "{flag:?}: {}", text(&out.stderr));
        let scored = rows_of(&std::fs::read_to_string(&output).unwrap());
        assert_eq!(scored[0], ["timestamp", "value", "anomaly_score", "expected", "lower", "upper"]);
        assert_eq!(scored.len(), rows.len() + 1, "{flag:?}: one row per input row");
        for (row, (t, v)) in scored[1..].iter().zip(&rows) {
            assert_eq!((&row[0], &row[1]), (t, &v.to_string()), "{flag:?}: texts as read");
        }
        let flagged: Vec<usize> = scored[1..]
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                let s: f64 = r[2].parse().unwrap();
                if flag.is_some() { s >= threshold } else { s > threshold }
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(flagged, [450], "{flag:?}: the spike, once");
        let last = &scored[scored.len() - 1];
        let (lower, upper): (f64, f64) = (last[4].parse().unwrap(), last[5].parse().unwrap());
        assert!(lower < 10.0 && 10.0 < upper, "a band around the level: {last:?}");
        assert!(scored[1][3].is_empty(), "no expected value before any history: {:?}", scored[1]);
    }
}

#[test]
fn standard_input_and_output_and_missing_values() {
    let mut csv = String::from("value,timestamp,host\n");
    for i in 0..50 {
        let v = if i % 10 == 3 {
            String::new()
        } else if i == 20 {
            "NaN".into()
        } else {
            format!("{}", 5 + i % 3)
        };
        csv.push_str(&format!("{v},{},a\n", 1_397_114_100 + i * 60));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_slo-gate"))
        .args(["anomalies", "score", "--input", "-", "--output", "-", "--probability"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), csv.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let scored = rows_of(&text(&out.stdout));
    assert_eq!(scored.len(), 51);
    assert_eq!(scored[4][..2], ["1397114280".to_string(), String::new()], "a missing value keeps its row");
    assert_eq!(scored[21][1], "NaN");
    assert!(scored[1..].iter().all(|r| (0.0..0.5).contains(&r[2].parse::<f64>().unwrap())), "{scored:?}");
}

#[test]
fn each_bad_input_exits_2_naming_the_line_and_leaves_no_output() {
    let header = "timestamp,value\n";
    let good = "2014-04-10 07:15:00,1\n2014-04-10 07:20:00,2\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "no timestamp column",
            "time,value\n1,1\n".into(),
            "line 1: no `timestamp` column in the header (columns: time, value)",
        ),
        ("no value column", "timestamp,v\n1,1\n".into(), "line 1: no `value` column"),
        ("empty file", String::new(), "line 1: the file is empty"),
        ("unreadable time", format!("{header}{good}yesterday,3\n"), "line 4: cannot read \"yesterday\" as a time"),
        (
            "unreadable value",
            format!("{header}{good}2014-04-10 07:25:00,1,5\n2014-04-10 07:30:00,fast\n"),
            "line 5: cannot read \"fast\" in column `value`",
        ),
        (
            "unsorted",
            format!("{header}{good}2014-04-10 07:17:00,3\n"),
            "line 4: timestamp \"2014-04-10 07:17:00\" is earlier than the previous row's, on line 3",
        ),
        (
            "duplicate",
            format!("{header}{good}2014-04-10T07:20:00Z,3\n"),
            "line 4: timestamp \"2014-04-10T07:20:00Z\" is the same time as line 3's: duplicate timestamps",
        ),
        (
            "short row",
            format!("{header}{good}2014-04-10 07:25:00\n"),
            "line 4: the row has 1 field(s), but the `value` column is field 2",
        ),
        (
            "overlong line",
            format!("{header}{good}2014-04-10 07:25:00,{}\n", "1".repeat(70_000)),
            "line 4: longer than 65536 bytes",
        ),
        ("not UTF-8", format!("{header}{good}"), "line 4: not UTF-8 text"),
    ];
    for (what, csv, message) in cases {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("bad.csv");
        let mut bytes = csv.into_bytes();
        if what == "not UTF-8" {
            bytes.extend_from_slice(b"2014-04-10 07:25:00,\xff\n");
        }
        std::fs::write(&input, bytes).unwrap();
        let output = dir.path().join("scored.csv");
        std::fs::write(&output, "previous results\n").unwrap();
        // --strict-order makes the unsorted and duplicate rows errors; it changes nothing else.
        let (input_arg, output_arg) = (input.to_str().unwrap(), output.to_str().unwrap());
        let out = slo_gate(&["anomalies", "score", "--strict-order", "--input", input_arg, "--output", output_arg]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        let want = format!("{}: {message}", input.display());
        assert!(stderr.contains(&want), "{what}: expected {want:?} in {stderr:?}");
        assert_eq!(std::fs::read_to_string(&output).unwrap(), "previous results\n", "{what}: output untouched");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["bad.csv", "scored.csv"], "{what}: no temporary file left behind");
    }
}

#[test]
fn rows_out_of_time_order_are_kept_unscored_and_reported_by_default() {
    // As NAB's realKnownCause/ec2_request_latency_system_failure.csv writes the spring
    // daylight-saving change (one time repeated) and machine_temperature_system_failure.csv a
    // clock going back.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("dst.csv");
    let mut csv = String::from("timestamp,value\n");
    let mut expect_unscored = Vec::new();
    for i in 0..300usize {
        let minutes = match i {
            100..=103 => 100 * 5,      // 4 rows at the time of row 100: 3 duplicates
            200..=205 => (i - 10) * 5, // 6 rows back at rows 190..=195's times
            _ => i * 5,
        };
        if (101..=103).contains(&i) || (200..=205).contains(&i) {
            expect_unscored.push(i);
        }
        csv.push_str(&format!("{},{}\n", nab_time(BASE_MS + minutes as i64 * 60_000), 10 + i % 3));
    }
    std::fs::write(&input, &csv).unwrap();
    let output = dir.path().join("scored.csv");
    let args = ["anomalies", "score", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()];
    let out = slo_gate(&args);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: 3 row(s) at the same time as an earlier row and 6 row(s) before one (lines 103, 104, 105, 202, 203, ...)",
            input.display()
        )),
        "{stderr}"
    );
    let scored = rows_of(&std::fs::read_to_string(&output).unwrap());
    assert_eq!(scored.len(), 301, "every row written");
    for i in expect_unscored {
        assert_eq!(scored[i + 1][2..], ["0.0", "", "", ""], "row {i} kept unscored");
    }
    assert!(!scored[250][3].is_empty(), "scoring goes on after: {:?}", scored[250]);
    let strict = slo_gate(&[&args[..], &["--strict-order"]].concat());
    assert_eq!(strict.status.code(), Some(2));
    assert!(text(&strict.stderr).contains("line 103: timestamp"), "{}", text(&strict.stderr));
}

#[test]
fn detector_config_unknown_keys_and_bad_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("series.csv");
    write_series(&input, &series(100, 3, &[]));
    let output = dir.path().join("out.csv");
    for (config, message) in
        [(r#"{"band": 5, "bnad": 3}"#, "unknown field `bnad`"), (r#"{"persistence": 0}"#, "persistence")]
    {
        let path = dir.path().join("detector.json");
        std::fs::write(&path, config).unwrap();
        let out = slo_gate(&[
            "anomalies",
            "score",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--config",
            path.to_str().unwrap(),
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}: {stderr}");
        assert!(stderr.contains(&format!("{}: ", path.display())) && stderr.contains(message), "{config}: {stderr}");
        assert!(!output.exists());
    }
    // TOML is read too (any other extension than .json), unknown keys refused alike.
    let path = dir.path().join("detector.toml");
    std::fs::write(&path, "band = 5.0\nbnad = 3\n").unwrap();
    let out = slo_gate(&[
        "anomalies",
        "score",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--config",
        path.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("detector.toml") && stderr.contains("bnad"), "{stderr}");
    let path = dir.path().join("wide.toml");
    std::fs::write(&path, "band = 8.0\ndirection = \"above\"\n").unwrap();
    let out = slo_gate(&[
        "anomalies",
        "score",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--config",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(rows_of(&std::fs::read_to_string(&output).unwrap()).len(), 101);
}

/// NAB's reward for a first detection at index `i` of a window `first..=last`.
fn nab_tp(first: usize, last: usize, i: usize) -> f64 {
    let y = -((last - i + 1) as f64) / (last - first + 1) as f64;
    (-2.5 * y).tanh() / 2.5f64.tanh()
}

struct Corpus {
    dir: tempfile::TempDir,
}

impl Corpus {
    /// `data/a/spiky.csv` (1000 points, spikes at 600 and 800), `data/flat.csv` (1000 points, no
    /// incidents, not in the labels) and `data/other/scored.csv` (its own anomaly_score column:
    /// 0.9 at 500 and 900, 0.97 at 700).
    fn new() -> Corpus {
        let dir = tempfile::tempdir().unwrap();
        write_series(&dir.path().join("data/a/spiky.csv"), &series(1000, 11, &[600, 800]));
        write_series(&dir.path().join("data/flat.csv"), &series(1000, 12, &[]));
        let mut csv = String::from("timestamp,value,anomaly_score,label\n");
        for i in 0..1000 {
            let score = match i {
                500 | 900 => "0.9",
                700 => "0.97",
                _ => "0.1",
            };
            csv.push_str(&format!("{},1,{score},0\n", nab_time(BASE_MS + i * STEP_MS)));
        }
        std::fs::create_dir_all(dir.path().join("data/other")).unwrap();
        std::fs::write(dir.path().join("data/other/scored.csv"), csv).unwrap();
        Corpus { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn at(&self, i: i64) -> String {
        nab_time(BASE_MS + i * STEP_MS)
    }

    fn eval(&self, labels: &str, extra: &[&str]) -> (Option<i32>, String, String) {
        let path = self.dir.path().join("labels.json");
        std::fs::write(&path, labels).unwrap();
        let data = self.data();
        let mut args = vec!["anomalies", "eval", "--input", data.to_str().unwrap(), "--labels", path.to_str().unwrap()];
        args.extend(extra);
        let out = slo_gate(&args);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }

    fn eval_json(&self, labels: &str, extra: &[&str]) -> Value {
        let mut args = vec!["--json"];
        args.extend(extra);
        let (code, stdout, stderr) = self.eval(labels, &args);
        assert_eq!(code, Some(0), "{stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }
}

fn file<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["files"].as_array().unwrap().iter().find(|f| f["file"] == key).unwrap_or_else(|| panic!("{key}: {report:#}"))
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|v| (v - want).abs() < 1e-9)
}

#[test]
fn eval_with_windows_scores_each_file_and_reports_mismatched_keys() {
    let c = Corpus::new();
    let labels = format!(
        r#"{{"a/spiky.csv": [["{}", "{}"], ["{}", "{}"]],
            "other/scored.csv": [["{}", "{}"]],
            "a/missing.csv": []}}"#,
        c.at(600),
        c.at(640),
        c.at(790),
        c.at(830),
        c.at(690),
        c.at(710)
    );
    let report = c.eval_json(&labels, &[]);
    let spiky = file(&report, "a/spiky.csv");
    assert_eq!(spiky["source"], "detector");
    assert_eq!((spiky["incidents"].as_u64(), spiky["detected"].as_u64()), (Some(2), Some(2)), "{spiky:#}");
    assert_eq!(spiky["false_alarms"], 0, "{spiky:#}");
    // Detected at the first point of the first window (NAB: A_TP = 1), ten points into the second.
    let raw = 1.0 + nab_tp(790, 830, 800);
    assert!(close(&spiky["nab"]["standard"]["raw"], raw), "{spiky:#}");
    assert!(close(&spiky["nab"]["standard"]["normalized"], 100.0 * (raw + 2.0) / 4.0), "{spiky:#}");
    assert!(close(&spiky["mean_delay_points"], 5.0) && close(&spiky["mean_delay_seconds"], 1500.0), "{spiky:#}");

    let flat = file(&report, "flat.csv");
    assert_eq!(
        (flat["labelled"].as_bool(), flat["incidents"].as_u64(), flat["false_alarms"].as_u64()),
        (Some(false), Some(0), Some(0))
    );

    // The file's own column at 0.5: 700 detects the window, 500 and 900 are false alarms.
    let scored = file(&report, "other/scored.csv");
    assert_eq!(scored["source"], "anomaly_score_column");
    assert_eq!((scored["detected"].as_u64(), scored["false_alarms"].as_u64()), (Some(1), Some(2)), "{scored:#}");
    // 500 precedes every window: −0.11; 900 is 190 points after a 21-point window: y = 9.5 ≥ 3, −0.11.
    assert!(close(&scored["nab"]["standard"]["raw"], nab_tp(690, 710, 700) - 0.22), "{scored:#}");

    assert_eq!(report["labels_without_file"], serde_json::json!(["a/missing.csv"]));
    assert_eq!(report["files_without_labels"], serde_json::json!(["flat.csv"]));
    let total = &report["total"];
    assert_eq!(
        (total["incidents"].as_u64(), total["detected"].as_u64(), total["false_alarms"].as_u64()),
        (Some(3), Some(3), Some(2))
    );
    assert!(close(&total["precision"], 0.6) && close(&total["recall"], 1.0) && close(&total["f1"], 0.75), "{total:#}");

    // A higher threshold: only 0.97 detects in the scored file; the detector's files are unchanged
    // (their alarms score at least 0.5, here far more).
    let strict = c.eval_json(&labels, &["--threshold", "0.95"]);
    let scored = file(&strict, "other/scored.csv");
    assert_eq!((scored["detected"].as_u64(), scored["false_alarms"].as_u64()), (Some(1), Some(0)));

    // The table.
    let (code, table, stderr) = c.eval(&labels, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let total_row: Vec<&str> = table.lines().find(|l| l.starts_with("TOTAL")).unwrap().split_whitespace().collect();
    assert_eq!(total_row[1..8], ["3000", "3", "3", "2", "0.600", "1.000", "0.750"], "{table}");
    assert!(table.contains("files without labels (evaluated as having no incidents): flat.csv"), "{table}");
    assert!(table.contains("label keys that match no file: a/missing.csv"), "{table}");
}

#[test]
fn eval_with_nab_label_times_builds_centred_windows() {
    let c = Corpus::new();
    // combined_labels.json form. 1000 points, 3 labels: windows of ⌊10% · 1000 / 3⌋ = 33 points,
    // 16 on each side; the one around 100 starts inside the probationary period (150 points) and
    // is dropped.
    let labels = format!(r#"{{"a/spiky.csv": ["{}", "{}", "{}"]}}"#, c.at(100), c.at(600), c.at(800));
    let report = c.eval_json(&labels, &[]);
    let spiky = file(&report, "a/spiky.csv");
    assert_eq!((spiky["incidents"].as_u64(), spiky["detected"].as_u64()), (Some(2), Some(2)), "{spiky:#}");
    assert_eq!(spiky["dropped_windows"][0]["reason"], "probation", "{spiky:#}");
    assert!(close(&spiky["mean_delay_points"], 0.0), "detected at the labelled point: {spiky:#}");
    let raw = 2.0 * nab_tp(584, 616, 600);
    assert!(close(&spiky["nab"]["standard"]["raw"], raw), "{spiky:#}");
    assert!(close(&spiky["nab"]["reward_low_fn_rate"]["normalized"], 100.0 * (raw + 4.0) / 6.0), "{spiky:#}");
}

#[test]
fn eval_of_scored_outputs_matches_eval_of_the_series() {
    // `score --probability` writes an anomaly_score column; evaluating those files must give what
    // evaluating the series with the detector gives.
    let c = Corpus::new();
    let scored_dir = c.dir.path().join("scored");
    std::fs::create_dir_all(scored_dir.join("a")).unwrap();
    for key in ["a/spiky.csv", "flat.csv"] {
        let out = slo_gate(&[
            "anomalies",
            "score",
            "--probability",
            "--input",
            c.data().join(key).to_str().unwrap(),
            "--output",
            scored_dir.join(key).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    std::fs::remove_dir_all(c.data().join("other")).unwrap();
    let labels = format!(r#"{{"a/spiky.csv": ["{}", "{}"]}}"#, c.at(600), c.at(800));
    let direct = c.eval_json(&labels, &[]);
    std::fs::remove_dir_all(c.data()).unwrap();
    std::fs::rename(&scored_dir, c.data()).unwrap();
    let via_files = c.eval_json(&labels, &[]);
    assert_eq!(via_files["total"], direct["total"]);
    assert_eq!(file(&via_files, "a/spiky.csv")["source"], "anomaly_score_column");
}

#[test]
fn eval_bad_inputs_exit_2_with_where() {
    let c = Corpus::new();
    let bad = c.data().join("a/broken.csv");
    std::fs::write(&bad, "timestamp,value\n2014-04-10 07:15:00,1\n2014-04-10 07:15:00,2\n").unwrap();
    let (code, _, stderr) = c.eval("{}", &["--strict-order"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}: line 3: timestamp", bad.display())), "{stderr}");
    // Without --strict-order the duplicate is kept and reported.
    let (code, _, stderr) = c.eval("{}", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("{}: 1 row(s) at the same time as an earlier row", bad.display())), "{stderr}");
    std::fs::write(&bad, "timestamp,value\n2014-04-10 07:15:00,1\n2014-04-10 07:20:00,fast\n").unwrap();
    let (code, _, stderr) = c.eval("{}", &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}: line 3: cannot read \"fast\"", bad.display())), "{stderr}");
    std::fs::remove_file(&bad).unwrap();
    for (labels, message) in [
        (
            r#"{"a/spiky.csv": [["2014-04-10 07:15:00", "soon"]]}"#,
            "\"a/spiky.csv\" entry 0: cannot read \"soon\" as a time",
        ),
        (r#"["a"]"#, "expected an object"),
    ] {
        let (code, _, stderr) = c.eval(labels, &[]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("labels.json: ") && stderr.contains(message), "{stderr}");
    }
}
