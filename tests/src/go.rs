//! Real Go programs for the profiling tests: built here with Debian's `go` (standard library
//! only, no module proxy), started on a free loopback port, killed when the test ends.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Builds the single-file program `main_go` as module `name` under `dir`; returns the binary.
/// Fails with how to install Go when it is missing.
pub fn build(dir: &Path, name: &str, main_go: &str) -> PathBuf {
    let go_available = Command::new("go").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        go_available.is_ok_and(|s| s.success()),
        "the `go` toolchain is needed for this test: apt-get install -y golang-go"
    );
    let src = dir.join(format!("{name}-src"));
    std::fs::create_dir_all(&src).expect("create the Go source dir");
    std::fs::write(src.join("go.mod"), format!("module {name}\n\ngo 1.19\n")).expect("write go.mod");
    std::fs::write(src.join("main.go"), main_go).expect("write main.go");
    let home = dir.join("go-home");
    std::fs::create_dir_all(&home).expect("create the Go home dir");
    let bin = dir.join(name);
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&src)
        .env("HOME", &home)
        .env("GOCACHE", home.join("gocache"))
        .env("GOPATH", home.join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", "0")
        .output()
        .expect("run go build");
    assert!(out.status.success(), "go build of {name} failed: {}", String::from_utf8_lossy(&out.stderr));
    bin
}

/// A running Go program; killed on drop, whichever way the test ends.
#[derive(Debug)]
pub struct GoProcess {
    child: Child,
    /// Where it serves HTTP (`-addr`).
    pub addr: SocketAddr,
}

impl GoProcess {
    /// Starts `bin -addr 127.0.0.1:<free port> args...` and waits until it accepts connections.
    pub fn start(bin: &Path, args: &[&str]) -> GoProcess {
        Self::start_on(bin, ([127, 0, 0, 1], free_port()).into(), args)
    }

    /// Starts `bin -addr <addr> args...` and waits until it accepts connections.
    pub fn start_on(bin: &Path, addr: SocketAddr, args: &[&str]) -> GoProcess {
        Self::spawn(Command::new(bin), bin, addr, args)
    }

    /// Starts `bin -addr <addr> args...` on the CPUs `cpus` only (`taskset -c`, e.g. `"1"`), with
    /// extra environment variables, and waits until it accepts connections.
    pub fn start_pinned(bin: &Path, addr: SocketAddr, cpus: &str, env: &[(&str, &str)], args: &[&str]) -> GoProcess {
        let available = Command::new("taskset").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status();
        assert!(
            available.is_ok_and(|s| s.success()),
            "`taskset` is needed to pin processes to CPUs: apt-get install -y util-linux"
        );
        let mut command = Command::new("taskset");
        command.args(["-c", cpus]).arg(bin).envs(env.iter().copied());
        Self::spawn(command, bin, addr, args)
    }

    fn spawn(mut command: Command, bin: &Path, addr: SocketAddr, args: &[&str]) -> GoProcess {
        let child = command
            .arg("-addr")
            .arg(addr.to_string())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let process = GoProcess { child, addr };
        crate::eventually(Duration::from_secs(20), || TcpStream::connect(addr).ok())
            .unwrap_or_else(|| panic!("{} never listened on {addr}", bin.display()));
        process
    }
}

impl Drop for GoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// The file `tests/go/<name>/main.go` of this repository.
pub fn program(name: &str) -> String {
    let path = crate::manifest_dir().join("go").join(name).join("main.go");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
