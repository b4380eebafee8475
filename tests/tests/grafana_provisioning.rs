//! `deploy/grafana/`: the datasource provisioning a user copies into Grafana (Tempo, Pyroscope,
//! Prometheus). Read with a YAML
//! parser we did not write (PyYAML), checked for what Grafana needs of it (the built-in types,
//! URLs without a trailing slash, traces-to-profiles naming the Pyroscope datasource and a
//! CPU profile type slo-gate stores), and then each datasource's "Save & test" request is sent
//! to a running collector exactly where the file points, with the header the file configures.

use std::process::Command;

use e2e::Server;
use serde_json::Value;

/// The provisioning file as JSON.
fn provisioning() -> Value {
    let path = e2e::manifest_dir().join("../deploy/grafana/provisioning/datasources/slo-gate.yaml");
    let python = e2e::python::interpreter("yaml");
    let out = Command::new(python)
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(&path)
        .output()
        .expect("run PyYAML");
    assert!(out.status.success(), "{} is not YAML: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("PyYAML's JSON")
}

fn datasource<'a>(file: &'a Value, kind: &str) -> &'a Value {
    let list = file["datasources"].as_array().expect("a `datasources` list");
    let found: Vec<&Value> = list.iter().filter(|d| d["type"] == kind).collect();
    assert_eq!(found.len(), 1, "one datasource of type {kind}: {file:#}");
    found[0]
}

/// The header a datasource sends (`httpHeaderName1` / `httpHeaderValue1`).
fn header(ds: &Value) -> (String, String) {
    let name = ds["jsonData"]["httpHeaderName1"].as_str().expect("httpHeaderName1").to_string();
    let value = ds["secureJsonData"]["httpHeaderValue1"].as_str().expect("httpHeaderValue1").to_string();
    (name, value)
}

#[test]
fn the_provisioned_datasources_point_at_endpoints_that_answer() {
    let file = provisioning();
    assert_eq!(file["apiVersion"], 1);
    let tempo = datasource(&file, "tempo");
    let pyroscope = datasource(&file, "grafana-pyroscope-datasource");
    let prometheus = datasource(&file, "prometheus");
    assert_eq!(prometheus["jsonData"]["httpMethod"], "POST", "Grafana's default method, spelled out");
    for ds in [tempo, pyroscope, prometheus] {
        let url = ds["url"].as_str().expect("url");
        // Grafana appends `/api/...` and `/querier.v1...` as text: a trailing slash doubles it.
        assert!(!url.ends_with('/'), "{url} ends with a slash");
        assert_eq!(url, "http://127.0.0.1:4040", "slo-gate serve's default --api address");
        assert_eq!(header(ds).0, "X-Scope-OrgID");
    }
    let to_profiles = &tempo["jsonData"]["tracesToProfiles"];
    assert_eq!(to_profiles["datasourceUid"], pyroscope["uid"], "traces to profiles names the Pyroscope datasource");
    let profile_type = to_profiles["profileTypeId"].as_str().expect("profileTypeId");
    assert_eq!(
        profile_type.parse::<analyzer::pprof::ProfileTypeId>().map(|t| t.to_string()).as_deref(),
        Ok(analyzer::pprof::profile_type::CPU),
        "the CPU profile type slo-gate stores from Go's CPU profiles"
    );

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // Where the file points, on this test's port.
    let at = |ds: &Value, path: &str| {
        format!("{}{path}", ds["url"].as_str().unwrap().replace("127.0.0.1:4040", &server.api.to_string()))
    };
    let client = reqwest::blocking::Client::new();

    // Tempo's Save & test (`GET /api/echo`) and its init (`/api/status/buildinfo`, `version`).
    let (name, value) = header(tempo);
    let echo = client.get(at(tempo, "/api/echo")).header(&name, &value).send().expect("echo");
    assert_eq!(echo.status(), 200);
    assert_eq!(echo.text().unwrap().trim(), "echo");
    let info: Value =
        client.get(at(tempo, "/api/status/buildinfo")).header(&name, &value).send().unwrap().json().unwrap();
    assert!(info["version"].as_str().is_some_and(|v| !v.is_empty()), "{info}");

    // Pyroscope's Save & test: `ProfileTypes` over Connect, as its client sends it.
    let (name, value) = header(pyroscope);
    let types = client
        .post(at(pyroscope, "/querier.v1.QuerierService/ProfileTypes"))
        .header(&name, &value)
        .header("Content-Type", "application/json")
        .header("Connect-Protocol-Version", "1")
        .body(r#"{"start":"1000","end":"4000"}"#)
        .send()
        .expect("ProfileTypes");
    assert_eq!(types.status(), 200);
    assert_eq!(types.headers()["content-type"], "application/json");
    let body: Value = types.json().unwrap();
    assert!(body.is_object(), "{body}");

    // Prometheus's Save & test: `1+1` at time=4 by POST form, then buildinfo without `features`.
    let (name, value) = header(prometheus);
    let health: Value = client
        .post(at(prometheus, "/api/v1/query"))
        .header(&name, &value)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("query=1%2B1&time=4")
        .send()
        .expect("health check")
        .json()
        .unwrap();
    assert_eq!(health, serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}}));
    let info: Value =
        client.get(at(prometheus, "/api/v1/status/buildinfo")).header(&name, &value).send().unwrap().json().unwrap();
    assert_eq!(info["data"]["version"], prometheus["jsonData"]["prometheusVersion"], "{info}");
    assert!(info["data"].get("features").is_none(), "{info}");
}
