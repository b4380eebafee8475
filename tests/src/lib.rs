//! Support for the end-to-end tests: start the real `slo-gate` binary on free loopback ports
//! with its own data directory, read its API, kill it, start it again.

pub mod azurite;
pub mod certs;
pub mod flame;
pub mod go;
pub mod otlp;
pub mod pyroscope;
pub mod python;
pub mod seaweed;
pub mod webhook;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The package's directory: where cargo runs this test from now (`CARGO_MANIFEST_DIR` at run
/// time), not where it was compiled, so a test binary built from another checkout of the same
/// sources with a shared target directory still reads this checkout's files.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
}

/// The `slo-gate` binary built beside this test binary (`cargo test --workspace` and
/// `cargo nextest run --workspace` build it first).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/slo-gate
    let dir = exe.parent().and_then(Path::parent).expect("target profile directory");
    let bin = dir.join("slo-gate");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --workspace --bins` (scripts/test does)",
        bin.display()
    );
    bin
}

/// A running `slo-gate serve` process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub api: SocketAddr,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts the collector on `data_dir` with ports chosen by the OS, and waits until
    /// `/readyz` answers.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Server {
        Server::start_command(Command::new(binary()), data_dir, extra_args)
    }

    /// Like [`Server::start`], with `env` added to the process's environment.
    pub fn start_with_env(data_dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(binary());
        command.envs(env.iter().copied());
        Server::start_command(command, data_dir, extra_args)
    }

    /// Like [`Server::start`], with the process's file-descriptor limit (soft and hard) set to
    /// `nofile` first, as `ulimit -n` does.
    pub fn start_with_fd_limit(data_dir: &Path, extra_args: &[&str], nofile: u32) -> Server {
        let mut command = Command::new("bash");
        command.arg("-c").arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\"")).arg(binary());
        Server::start_command(command, data_dir, extra_args)
    }

    fn start_command(mut command: Command, data_dir: &Path, extra_args: &[&str]) -> Server {
        let mut child = command
            .args(["serve", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--api", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .env("SLO_GATE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start slo-gate serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in the collector's first line: {line:?}"))
        };
        let server = Server {
            grpc: addr("otlp-grpc="),
            http: addr("otlp-http="),
            api: addr("api="),
            child,
            data_dir: data_dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if reqwest::blocking::get(server.api_url("/readyz")).is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "collector not ready within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{}", self.api, path)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// GET on the API as `tenant` (no header when `None`); the status and the JSON body.
    pub fn get(&self, path: &str, tenant: Option<&str>) -> (u16, Value) {
        let mut req = reqwest::blocking::Client::new().get(self.api_url(path));
        if let Some(t) = tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        let resp = req.send().expect("API request");
        let status = resp.status().as_u16();
        let text = resp.text().expect("API body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// GET on the API as the default tenant; the status and the body as text (status 0 and
    /// the error when the request could not be sent).
    pub fn get_text(&self, path: &str) -> (u16, String) {
        match reqwest::blocking::Client::new().get(self.api_url(path)).send() {
            Ok(resp) => (resp.status().as_u16(), resp.text().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    /// Items stored for one signal of one tenant, from `/api/v1/stats`.
    pub fn items(&self, signal: &str, tenant: Option<&str>) -> u64 {
        let (status, stats) = self.get("/api/v1/stats", tenant);
        assert_eq!(status, 200, "{stats}");
        stats["signals"][signal]["items"].as_u64().unwrap_or_else(|| panic!("no items for {signal}: {stats}"))
    }

    /// The span ids of one trace (32 hex digits) as `/api/v1/traces/{id}` answers them, sorted;
    /// none when it answers 404.
    pub fn span_ids(&self, trace_id_hex: &str) -> Vec<String> {
        self.span_ids_of(trace_id_hex, None)
    }

    /// [`Server::span_ids`] as `tenant`.
    pub fn span_ids_of(&self, trace_id_hex: &str, tenant: Option<&str>) -> Vec<String> {
        let (status, body) = self.get(&format!("/api/v1/traces/{trace_id_hex}"), tenant);
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "{body}");
        let mut ids: Vec<String> = body["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
            .flat_map(|ss| ss["spans"].as_array().unwrap())
            .map(|s| s["spanId"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Kills the process with SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process with SIGTERM and waits for it to exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().expect("wait for slo-gate")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter value (unreserved characters stay as they are).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Undoes percent-encoding (as of `grpc-message`); a `%` not followed by two hex digits stays.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    eventually_every(timeout, Duration::from_millis(100), f)
}

/// [`eventually`] polling every `interval`: for a poll that costs the server enough to disturb
/// what the test measures.
pub fn eventually_every<T>(timeout: Duration, interval: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// A finished command's exit code, stdout and stderr, for assertion messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Compares `actual` with the golden file `tests/data/<name>`; `UPDATE_EXPECT=1` rewrites it.
pub fn check_golden(name: &str, actual: &str) {
    let path = manifest_dir().join("data").join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("create golden dir");
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}; create it with UPDATE_EXPECT=1", path.display()));
    assert!(expected == actual, "{name} differs from the golden file; rerun with UPDATE_EXPECT=1 to accept:\n{actual}");
}

/// Sends numbered OTLP/HTTP trace requests (`body(n)`, protobuf) to `url` on a thread of its
/// own, `batches` in order, pausing `pause` after each acknowledged one and resending those
/// refused with 429 or 503 (as an exporter retries), until `stop`, the batches run out or the
/// server is gone; returns the numbers acknowledged.
pub fn send_batches(
    url: String,
    batches: impl Iterator<Item = u64> + Send + 'static,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pause: Duration,
    body: fn(u64) -> Vec<u8>,
) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut acked = Vec::new();
        for batch in batches {
            loop {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return acked;
                }
                let sent = client.post(&url).header("content-type", "application/x-protobuf").body(body(batch)).send();
                match sent {
                    Ok(r) if r.status().is_success() => break,
                    Ok(r) if matches!(r.status().as_u16(), 429 | 503) => std::thread::sleep(Duration::from_millis(50)),
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return acked,
                }
            }
            acked.push(batch);
            std::thread::sleep(pause);
        }
        acked
    })
}

/// SplitMix64: a seeded sequence (kill delays of the crash tests), so a failure names a seed
/// to replay.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
