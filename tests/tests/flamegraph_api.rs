//! The profile query API against the real collector: three corpus CPU profiles pushed through
//! Pyroscope's legacy `/ingest` (versions fast, fast, slow) come back as the profile type
//! `process_cpu:cpu:nanoseconds:cpu:nanoseconds`, as a flame graph whose total is the sum of the
//! files' cpu values (JSON, folded text and SVG), and as a diff that ranks `main.sanitizeLabels`
//! (the function the slow build makes slower) first; bad parameters get 400 naming the parameter.

use std::collections::BTreeMap;

use e2e::Server;
use serde_json::Value;

const CPU_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// Pushes the three corpus profiles; returns them decoded.
fn push_corpus(server: &Server) -> Vec<analyzer::pprof::Profile> {
    let mut decoded = Vec::new();
    for (dir, version) in [("fast", "fast"), ("fast-rerun", "fast"), ("slow", "slow")] {
        let path = e2e::manifest_dir().join("../testdata/corpus/go-dev").join(dir).join("cpu-10s.pb.gz");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        decoded.push(analyzer::pprof::decode(&bytes).expect("corpus profile decodes"));
        let name = e2e::url_encode(&format!("jsonsvc.cpu{{service_version={version}}}"));
        let resp = reqwest::blocking::Client::new()
            .post(server.api_url(&format!("/ingest?name={name}&format=pprof")))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .expect("push");
        let status = resp.status().as_u16();
        assert_eq!(status, 200, "{dir}: {}", resp.text().unwrap_or_default());
    }
    decoded
}

fn cpu_index(p: &analyzer::pprof::Profile) -> usize {
    p.sample_types.iter().position(|t| t.kind == "cpu").expect("cpu sample type")
}

#[test]
fn profile_types_flamegraph_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let profiles = push_corpus(&server);

    // Profile types.
    let (status, body) = server.get("/api/v1/profile-types", None);
    assert_eq!(status, 200, "{body}");
    let types = body["profile_types"].as_array().expect("profile_types");
    let cpu = types.iter().find(|t| t["id"] == CPU_TYPE).unwrap_or_else(|| panic!("{CPU_TYPE} missing: {body}"));
    assert_eq!(cpu["services"], serde_json::json!(["jsonsvc"]));
    let (_, other) = server.get("/api/v1/profile-types", Some("someone-else"));
    assert_eq!(other["profile_types"], serde_json::json!([]), "another tenant's types are visible");

    // JSON flame graph: the total is the sum of the cpu values of the three files.
    let expected_total: i64 = profiles
        .iter()
        .map(|p| {
            let i = cpu_index(p);
            p.samples.iter().map(|s| s.values[i]).sum::<i64>()
        })
        .sum();
    let (status, tree) = server.get(&format!("/api/v1/flamegraph?type={}", e2e::url_encode(CPU_TYPE)), None);
    assert_eq!(status, 200, "{tree}");
    assert_eq!(tree["name"], "total");
    assert_eq!(tree["value"].as_i64(), Some(expected_total), "flame graph total");
    let children = tree["children"].as_array().unwrap();
    let child_sum: i64 = children.iter().map(|c| c["value"].as_i64().unwrap()).sum();
    assert_eq!(child_sum, expected_total);
    let names: Vec<&str> = children.iter().map(|c| c["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "children sorted by name");

    // One version only: the selector narrows to the slow profile.
    let slow = &profiles[2];
    let slow_total: i64 = slow.samples.iter().map(|s| s.values[cpu_index(slow)]).sum();
    let path = format!(
        "/api/v1/flamegraph?type={}&selector={}&from=0&to=4000000000",
        e2e::url_encode(CPU_TYPE),
        e2e::url_encode(r#"{service_name="jsonsvc",service_version="slow"}"#)
    );
    let (status, tree) = server.get(&path, None);
    assert_eq!(status, 200, "{tree}");
    assert_eq!(tree["value"].as_i64(), Some(slow_total));
    // The whole answer, byte for byte: nested nodes sorted by name, as Grafana's flame graph reads.
    e2e::check_golden("flamegraph/slow-cpu.json", &(serde_json::to_string_pretty(&tree).unwrap() + "\n"));
    // The same profile by every kind of matcher PromQL has (and a quoted dotted name).
    for other in [
        r#"{service_name=~"json.*",service_version!="fast",service_version!~"med.*|base"}"#,
        r#"{"service.name"="jsonsvc",service_version=~"s.+"}"#,
    ] {
        let path = format!(
            "/api/v1/flamegraph?type={}&selector={}&from=0&to=4000000000",
            e2e::url_encode(CPU_TYPE),
            e2e::url_encode(other)
        );
        let (status, same) = server.get(&path, None);
        assert_eq!((status, &same), (200, &tree), "{other}");
    }

    // Folded: the function with the largest flat value of the merged files is the top leaf.
    let mut flat: BTreeMap<String, i64> = BTreeMap::new();
    for p in &profiles {
        for (name, (f, _)) in analyzer::pprof::flat_and_cum(p, cpu_index(p)).unwrap() {
            *flat.entry(name).or_default() += f;
        }
    }
    let top = flat.iter().max_by_key(|(n, v)| (**v, std::cmp::Reverse((*n).clone()))).unwrap().0.clone();
    let (status, text) =
        server.get_text(&format!("/api/v1/flamegraph?type={}&format=folded", e2e::url_encode(CPU_TYPE)));
    assert_eq!(status, 200, "{text}");
    let mut leaves: BTreeMap<String, i64> = BTreeMap::new();
    let mut folded_total = 0i64;
    for line in text.lines() {
        let (stack, value) = line.rsplit_once(' ').expect("folded line");
        let value: i64 = value.parse().expect("folded value");
        folded_total += value;
        *leaves.entry(stack.rsplit(';').next().unwrap().to_string()).or_default() += value;
    }
    assert_eq!(folded_total, expected_total);
    let folded_top = leaves.iter().max_by_key(|(n, v)| (**v, std::cmp::Reverse((*n).clone()))).unwrap().0;
    assert_eq!(folded_top, &top, "top self function");
    assert_eq!(leaves[&top], flat[&top]);

    // SVG.
    let (status, svg) = server.get_text(&format!("/api/v1/flamegraph?type={}&format=svg", e2e::url_encode(CPU_TYPE)));
    assert_eq!(status, 200);
    assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);

    // Diff: the slow build's regression is ranked first.
    let diff = format!(
        "/api/v1/flamegraph/diff?type={}&baseline={}&candidate={}",
        e2e::url_encode(CPU_TYPE),
        e2e::url_encode(r#"{service_version="fast"}"#),
        e2e::url_encode(r#"{service_version="slow"}"#)
    );
    let (status, body) = server.get(&diff, None);
    assert_eq!(status, 200, "{body}");
    let regressions = body["regressions"].as_array().expect("regressions");
    assert_eq!(regressions.first().map(|r| &r["function"]), Some(&Value::from("main.sanitizeLabels")), "{body}");
    assert_eq!(body["candidate_total"].as_i64(), Some(slow_total));
    assert_eq!(body["baseline_total"].as_i64().unwrap() + slow_total, expected_total);
    assert_eq!((body["baseline_profiles"].as_u64(), body["candidate_profiles"].as_u64()), (Some(2), Some(1)));
    // The differential tree: `value`/`self` are the baseline's, `valueRight`/`selfRight` the
    // candidate's; its root totals are the sides' totals.
    assert_eq!(body["flamegraph"]["value"], body["baseline_total"]);
    assert_eq!(body["flamegraph"]["valueRight"], body["candidate_total"]);
    let mut summary = body.clone();
    summary.as_object_mut().unwrap().remove("flamegraph");
    e2e::check_golden("flamegraph/diff-fast-vs-slow.json", &(serde_json::to_string_pretty(&summary).unwrap() + "\n"));
    // Thresholds are parameters: a 20 pp minimum change leaves nothing to report.
    let (status, strict) = server.get(&format!("{diff}&min_change=20&metric=total&confidence=0.5"), None);
    assert_eq!(status, 200, "{strict}");
    assert_eq!(
        (strict["regressions"].clone(), strict["metric"].clone()),
        (serde_json::json!([]), Value::from("total"))
    );
    let (status, svg) = server.get_text(&format!("{diff}&format=svg"));
    assert_eq!(status, 200);
    assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"));

    // No data: an empty tree.
    let (status, tree) = server.get(
        &format!(
            "/api/v1/flamegraph?type={}&selector={}",
            e2e::url_encode(CPU_TYPE),
            e2e::url_encode(r#"{service_name="nobody"}"#)
        ),
        None,
    );
    assert_eq!(status, 200, "{tree}");
    assert_eq!(tree["value"], 0);
    assert_eq!(tree["children"], serde_json::json!([]));

    // Bad parameters: 400 naming the parameter.
    for (query, needle) in [
        (
            format!(
                "/api/v1/flamegraph?type={}&selector={}",
                e2e::url_encode(CPU_TYPE),
                e2e::url_encode("{service_name=x")
            ),
            "selector",
        ),
        (
            format!(
                "/api/v1/flamegraph?type={}&selector={}",
                e2e::url_encode(CPU_TYPE),
                e2e::url_encode(r#"{a=~"("}"#) // a regular expression that does not compile
            ),
            "selector",
        ),
        ("/api/v1/flamegraph?type=cpu".to_string(), "type"),
        ("/api/v1/flamegraph".to_string(), "type"),
        (format!("/api/v1/flamegraph?type={}&from=yesterday", e2e::url_encode(CPU_TYPE)), "from"),
        (format!("/api/v1/flamegraph?type={}&format=png", e2e::url_encode(CPU_TYPE)), "format"),
        (
            format!("/api/v1/flamegraph/diff?type={}&baseline={}", e2e::url_encode(CPU_TYPE), e2e::url_encode("nope")),
            "baseline",
        ),
        (format!("/api/v1/flamegraph/diff?type={}&confidence=2", e2e::url_encode(CPU_TYPE)), "confidence"),
        (format!("/api/v1/flamegraph/diff?type={}&min_change=-1", e2e::url_encode(CPU_TYPE)), "min_change"),
        (format!("/api/v1/flamegraph/diff?type={}&metric=flat", e2e::url_encode(CPU_TYPE)), "metric"),
    ] {
        let (status, body) = server.get(&query, None);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].as_str().unwrap_or("").contains(needle), "{query}: {body}");
    }
}

/// Stacks deeper than `serde_json`'s default nesting limit (128; a debug build of an async Rust
/// service has stacks of 150 frames and more) still compare: the diff's JSON flame graph nests
/// one level per frame, and `slo-gate flame diff --collector` reads the regressions without
/// building that tree. Three runs per side (the `instance` label), folded text through `/ingest`.
#[test]
fn flame_diff_cli_reads_the_diff_of_deep_stacks() {
    const DEPTH: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let deep: Vec<String> = (0..DEPTH).map(|i| format!("frame{i}")).collect();
    let deep = deep.join(";");
    let client = reqwest::blocking::Client::new();
    // The candidate's `hot` leaf takes 50% instead of 30%; runs differ by a sample or two.
    for (version, hot) in [("1.0.0", 300), ("1.1.0", 500)] {
        for (run, jitter) in [("a", 0), ("b", 3), ("c", -2)] {
            let body = format!("{deep};hot {}\nmain;idle {}\n", hot + jitter, 1000 - hot - jitter);
            let name = e2e::url_encode(&format!("deep.cpu{{service_version={version},instance={run}}}"));
            let resp = client
                .post(server.api_url(&format!("/ingest?name={name}&sampleRate=100")))
                .header("content-type", "text/plain")
                .body(body)
                .send()
                .expect("push");
            assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap_or_default());
        }
    }

    // The API's answer nests too deep for a default `serde_json::Value`: what the CLI must survive.
    let selector = |v: &str| e2e::url_encode(&format!("{{service_name=\"deep\",service_version=\"{v}\"}}"));
    let (status, raw) = server.get_text(&format!(
        "/api/v1/flamegraph/diff?type={CPU_TYPE}&baseline={}&candidate={}",
        selector("1.0.0"),
        selector("1.1.0")
    ));
    assert_eq!(status, 200, "{raw}");
    let err = serde_json::from_str::<Value>(&raw).expect_err("the diff of 300-frame stacks nests past 128");
    assert!(err.to_string().contains("recursion limit"), "{err}");

    let out = std::process::Command::new(e2e::binary())
        .args(["flame", "diff", "--collector", &server.api_url(""), "--service", "deep"])
        .args(["--baseline-version", "1.0.0", "--candidate-version", "1.1.0", "--json"])
        .output()
        .expect("run slo-gate flame diff");
    assert!(out.status.success(), "flame diff failed: {}", String::from_utf8_lossy(&out.stderr));
    let found: Value = serde_json::from_slice(&out.stdout).expect("JSON regressions");
    let first = &found[0];
    assert_eq!(first["function"], "hot", "{found:#}");
    assert!((first["self"]["change_pp"].as_f64().unwrap() - 20.0).abs() < 0.5, "{first:#}");
    assert!(first["confidence"].as_f64().unwrap() > 0.99, "{first:#}");
}
