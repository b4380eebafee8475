//! Blocking HTTP/1.1 on one kept-alive loopback connection, as the query benchmarks use it: no
//! client library between the timer and the collector's answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::seeded::percentile;

/// A TCP connection to `addr` with Nagle off.
pub fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One exchange: writes `head` (request line and headers, ending in a blank line) and `body`,
/// reads one answer with a `content-length`; its status and body.
pub fn exchange(stream: &mut TcpStream, head: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            bail!("the collector closed the connection");
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf);
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .context("no content-length in the answer")?;
    let mut rest = vec![0u8; length];
    stream.read_exact(&mut rest)?;
    Ok((status, rest))
}

/// `GET path` as Grafana sends it, with `Accept: accept`: status, body and the time it took.
pub fn get(
    stream: &mut TcpStream,
    api: SocketAddr,
    path: &str,
    accept: &str,
) -> anyhow::Result<(u16, Vec<u8>, Duration)> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: {api}\r\nAccept: {accept}\r\nUser-Agent: Grafana/12.1.0\r\n\r\n");
    let t = Instant::now();
    let (status, body) = exchange(stream, &head, &[])?;
    Ok((status, body, t.elapsed()))
}

/// `POST path` of `body` as `content_type`, retried (on a new connection, every 200 ms, for up
/// to two minutes) while the collector answers 429/503 or drops the connection under load.
pub fn post_retrying(
    stream: &mut TcpStream,
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut attempts = 0;
    loop {
        match exchange(stream, &head, body) {
            Ok((200..=299, _)) => return Ok(()),
            Ok((429 | 503, _)) | Err(_) if attempts < 600 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(200));
                *stream = connect(addr)?;
            }
            Ok((status, b)) => bail!("{path} answered {status}: {}", String::from_utf8_lossy(&b)),
            Err(e) => return Err(e),
        }
    }
}

/// Prints one timed query's p50, p95 and max.
pub fn report(label: &str, mut times: Vec<Duration>, note: &str) {
    times.sort();
    println!(
        "{label:<58} p50 {:>8.1} ms   p95 {:>8.1} ms   max {:>8.1} ms   (n={}) {note}",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.95).as_secs_f64() * 1e3,
        times.last().map_or(0.0, |t| t.as_secs_f64() * 1e3),
        times.len()
    );
}

/// The resident memory of process `pid` now and at its peak, from `/proc/<pid>/status`.
pub fn memory(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or_else(|| "?".to_string(), |kb| format!("{} MiB", kb / 1024))
    };
    format!("server RSS {} (peak {})", field("VmRSS:"), field("VmHWM:"))
}

/// Percent-encodes a query parameter value.
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

/// Lower-case hex of an id.
pub fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}
