//! Azure Blob Storage for the object-storage tests: Azurite's blob service (`azurite-blob`,
//! from npm: `npm install -g azurite@3.37.0`, which `.ci/run` does) on a loopback port chosen at
//! run time, with its own data directory, and its well-known development account, whose
//! requests must be signed (SharedKey). Containers are created with the Python
//! `azure-storage-blob` client of `tests/python/requirements.txt` (`object_store` has no
//! container operations). Killed on drop; it stays in the test's process group, so a run ended
//! by nextest or Ctrl-C ends it too.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's development account and its published key (the same in every Azurite).
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Azurite blob service; killed on drop.
#[derive(Debug)]
pub struct Azurite {
    child: Child,
    port: u16,
    /// Holds the service's data and `azurite.log`.
    dir: tempfile::TempDir,
}

impl Azurite {
    /// Starts the blob service on a free port and an empty data directory, and waits until it
    /// answers.
    pub fn start() -> Azurite {
        let azurite = binary();
        let dir = tempfile::Builder::new().prefix("azurite").tempdir().expect("create the Azurite dir");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let log = File::create(dir.path().join("azurite.log")).expect("create azurite.log");
        let child = Command::new(&azurite)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--skipApiVersionCheck", "--location"])
            .arg(dir.path())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", azurite.display()));
        let server = Azurite { child, port, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Azurite did not listen within {START_TIMEOUT:?}: {}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `http://127.0.0.1:<port>`: the blob service, path-style (`/<account>/<container>/<blob>`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment under which `object_store` (and so the collector) uses this Azurite
    /// with its development account.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [("AZURE_STORAGE_USE_EMULATOR", "true".to_string()), ("AZURITE_BLOB_STORAGE_URL", self.url())]
    }

    /// Creates container `name`.
    pub fn create_container(&self, name: &str) {
        let python = crate::python::interpreter("azure.storage.blob");
        let connection = format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={}/{ACCOUNT};",
            self.url()
        );
        let script = "import sys\nfrom azure.storage.blob import BlobServiceClient\n\
                      BlobServiceClient.from_connection_string(sys.argv[1]).create_container(sys.argv[2])\n";
        let out = Command::new(python).args(["-c", script, &connection, name]).output().expect("run Python");
        assert!(out.status.success(), "create container {name}: {}", crate::output_text(&out));
    }

    /// The service's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `SLO_GATE_AZURITE`, else `azurite-blob` on the `PATH`. Panics with the install command when
/// it is missing: a missing peer fails the test, never skips it.
pub fn binary() -> PathBuf {
    let azurite = std::env::var_os("SLO_GATE_AZURITE").map(PathBuf::from).unwrap_or_else(|| "azurite-blob".into());
    let runs = Command::new(&azurite).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        runs.is_ok_and(|s| s.success()),
        "cannot run Azurite's `azurite-blob` ({}): run `npm install -g azurite@3.37.0` (.ci/run does), \
         or point SLO_GATE_AZURITE at it",
        azurite.display()
    );
    azurite
}
