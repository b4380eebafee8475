//! Pull ingestion against a real Go program: a tiny `net/http/pprof` server (built here with
//! `go build`, standard library only) burns CPU in `main.burn`; the collector scrapes it
//! (`[[scrape]]`, CPU profile, goroutines, heap) together with a target on a closed port. The
//! CPU and goroutine profile types appear for the service, the CPU flame graph contains
//! `main.burn`, and `/metrics` counts `ok` scrapes of the live target and `connect` failures of
//! the dead one (which never stalls the live one).

use std::net::SocketAddr;
use std::time::Duration;

use e2e::go::{self, GoProcess};
use e2e::{Server, eventually};

const CPU_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const GOROUTINE_TYPE: &str = "goroutine:goroutine:count:goroutine:count";

const GO_MAIN: &str = r#"package main

import (
	"flag"
	"log"
	"net/http"
	_ "net/http/pprof"
)

var sink uint64

//go:noinline
func burn() {
	x := uint64(1)
	for {
		for i := 0; i < 1000000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		sink = x
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	go burn()
	log.Fatal(http.ListenAndServe(*addr, nil))
}
"#;

#[test]
fn scrapes_a_go_pprof_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let bin = go::build(dir.path(), "scrapetest", GO_MAIN);
    let program = GoProcess::start(&bin, &[]);
    let live = program.addr;
    let dead: SocketAddr = ([127, 0, 0, 1], go::free_port()).into();

    let config = dir.path().join("slo-gate.toml");
    std::fs::write(
        &config,
        format!(
            "[[scrape]]\ntargets = [\"{live}\", \"http://{dead}/\"]\nlabels = {{ service_name = \"scrapetest\", service_version = \"1.0.0\" }}\ninterval = \"2s\"\ncpu_seconds = 1\nprofiles = [\"profile\", \"goroutine\", \"heap\"]\ntimeout = \"5s\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let config_arg = config.to_string_lossy().into_owned();
    let server = Server::start(&data, &["--config", &config_arg]);

    let types = eventually(Duration::from_secs(60), || {
        let (status, body) = server.get("/api/v1/profile-types", None);
        if status != 200 {
            return None;
        }
        let types = body["profile_types"].as_array()?.clone();
        let has = |id: &str| {
            types
                .iter()
                .any(|t| t["id"] == id && t["services"].as_array().is_some_and(|s| s.iter().any(|s| s == "scrapetest")))
        };
        (has(CPU_TYPE) && has(GOROUTINE_TYPE)).then_some(body)
    });
    let (_, last) = server.get("/api/v1/profile-types", None);
    assert!(types.is_some(), "profile types never appeared: {last}");

    let path = format!(
        "/api/v1/flamegraph?type={}&format=folded&selector={}",
        e2e::url_encode(CPU_TYPE),
        e2e::url_encode("{service_name=\"scrapetest\"}")
    );
    let folded = eventually(Duration::from_secs(30), || {
        let (status, body) = server.get_text(&path);
        (status == 200 && body.contains("main.burn")).then_some(body)
    });
    let (status, body) = server.get_text(&path);
    assert!(folded.is_some(), "main.burn not in the CPU flame graph ({status}): {body}");

    let live_ok = format!("target=\"{live}\",profile=\"profile\",outcome=\"ok\"");
    let dead_connect = "outcome=\"connect\"";
    let metrics = eventually(Duration::from_secs(30), || {
        let resp = reqwest::blocking::Client::new().get(server.api_url("/metrics")).send().ok()?;
        let text = resp.text().ok()?;
        let dead_line = text.lines().any(|l| {
            l.starts_with("slo_gate_scrapes_total") && l.contains(&dead.to_string()) && l.contains(dead_connect)
        });
        (text.contains(&live_ok) && dead_line).then_some(text)
    });
    assert!(metrics.is_some(), "scrape counters missing in /metrics");
    server.kill();
}
