//! Where the load goes, and the guard that keeps it on this machine.
//!
//! Only literal loopback socket addresses are accepted (127.0.0.0/8 or
//! `[::1]`). Host names are refused rather than resolved, so no resolver
//! configuration can ever send load elsewhere.

use std::fmt;
use std::net::SocketAddr;

use anyhow::{Context, bail};

/// The receiver under load: OTLP/gRPC or OTLP/HTTP (protobuf) at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Grpc(SocketAddr),
    Http(SocketAddr),
}

impl Target {
    pub fn addr(self) -> SocketAddr {
        match self {
            Self::Grpc(addr) | Self::Http(addr) => addr,
        }
    }

    pub fn transport(self) -> &'static str {
        match self {
            Self::Grpc(_) => "grpc",
            Self::Http(_) => "http",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.transport(), self.addr())
    }
}

/// Parses `IP:PORT` and refuses anything that is not a loopback address.
pub fn parse_loopback(text: &str) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = text.trim().parse().with_context(|| {
        format!("'{text}' is not an IP:PORT address (host names are not resolved; use 127.0.0.1:PORT)")
    })?;
    if !addr.ip().is_loopback() {
        bail!("refusing to send load to {addr}: only loopback targets (127.0.0.0/8, [::1]) are allowed");
    }
    if addr.port() == 0 {
        bail!("target {addr} has port 0");
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<&str, &str>) {
        match (parse_loopback(input), expect) {
            (Ok(addr), Ok(want)) => assert_eq!(addr.to_string(), want, "{input}"),
            (Err(err), Err(want)) => {
                let msg = format!("{err:#}");
                assert!(msg.contains(want), "{input}: '{msg}' lacks '{want}'");
            }
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn loopback_only() {
        check("127.0.0.1:4317", Ok("127.0.0.1:4317"));
        check(" 127.1.2.3:80 ", Ok("127.1.2.3:80"));
        check("[::1]:4318", Ok("[::1]:4318"));
        check("10.0.0.1:4317", Err("refusing"));
        check("192.168.1.10:4317", Err("refusing"));
        check("0.0.0.0:4317", Err("refusing"));
        check("[::ffff:127.0.0.1]:4317", Err("refusing"));
        check("[2001:db8::1]:4317", Err("refusing"));
        check("localhost:4317", Err("host names are not resolved"));
        check("127.0.0.1", Err("not an IP:PORT"));
        check("127.0.0.1:0", Err("port 0"));
    }
}
