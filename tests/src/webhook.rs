//! A webhook receiver for the tests of the collector's notifications: a plain HTTP/1.1 server
//! on a loopback port chosen by the OS, in threads of the test process, that records every
//! request (method, path, headers, body) with the status it answered.
//!
//! It is deliberately small and strict rather than a web framework: requests must carry a
//! `Content-Length` (the collector's client always sends one), kept-alive connections are
//! served request after request, as the collector's pooled client reuses them, and what it
//! cannot read is recorded as an error for the test to assert on instead of being skipped.
//! [`Receiver::answer_with`] makes it refuse everything (e.g. `503`), so a test can hold
//! notifications in the collector's outbox, as a receiver that is down would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Largest body accepted; a notification is at most 1 MiB of JSON.
const MAX_BODY: usize = 4 << 20;
/// Largest request line or header line.
const MAX_LINE: usize = 16 << 10;

/// One request the receiver read, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body as JSON, when it is JSON.
    pub json: Option<Value>,
    /// The status answered: 200, or what [`Receiver::answer_with`] set.
    pub answered: u16,
    /// When it was read.
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    errors: Mutex<Vec<String>>,
    stop: AtomicBool,
    answer: AtomicU16,
}

/// A running receiver; stopped when dropped.
#[derive(Debug)]
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Listens on `127.0.0.1:0`, answering 200 to every well-formed request.
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook receiver");
        let addr = listener.local_addr().expect("receiver address");
        // Non-blocking accept, so the thread notices `stop` without a connection to wake it.
        listener.set_nonblocking(true).expect("non-blocking listener");
        let shared = Arc::new(Shared { answer: AtomicU16::new(200), ..Default::default() });
        let accept_shared = Arc::clone(&shared);
        let thread = std::thread::spawn(move || accept(listener, accept_shared));
        Receiver { addr, shared, thread: Some(thread) }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// From now on, answers every request with `status` (200 to take notifications again).
    pub fn answer_with(&self, status: u16) {
        self.shared.answer.store(status, Ordering::SeqCst);
    }

    /// Every request read so far, in the order read.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What could not be read as an HTTP/1.1 request with a body of known length.
    pub fn errors(&self) -> Vec<String> {
        self.shared.errors.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let shared = Arc::clone(&shared);
                connections.push(std::thread::spawn(move || serve(stream, peer, &shared)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                shared.errors.lock().unwrap_or_else(|e| e.into_inner()).push(format!("accept: {e}"));
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    for c in connections {
        let _ = c.join();
    }
}

/// Serves one connection's requests until the peer closes it, a request cannot be read, or
/// the receiver stops.
fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let error = |what: String| shared.errors.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{peer}: {what}"));
    // A short read timeout lets an idle kept-alive connection notice `stop`.
    if stream.set_nonblocking(false).and_then(|()| stream.set_read_timeout(Some(Duration::from_millis(100)))).is_err() {
        return error("cannot set the connection's read timeout".into());
    }
    let Ok(mut writer) = stream.try_clone() else { return error("cannot clone the connection".into()) };
    let mut reader = BufReader::new(stream);
    loop {
        let request_line = match read_line(&mut reader, shared, true) {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(e) => return error(format!("request line: {e}")),
        };
        let mut parts = request_line.split(' ');
        let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
            let _ = respond(&mut writer, 400, true);
            return error(format!("not an HTTP request line: {request_line:?}"));
        };
        let (method, path) = (method.to_string(), path.to_string());
        if version != "HTTP/1.1" {
            let _ = respond(&mut writer, 505, true);
            return error(format!("{method} {path}: version {version:?}, not HTTP/1.1"));
        }
        let mut headers = Vec::new();
        loop {
            match read_line(&mut reader, shared, false) {
                Ok(Some(line)) if line.is_empty() => break,
                Ok(Some(line)) => match line.split_once(':') {
                    Some((name, value)) => headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string())),
                    None => {
                        let _ = respond(&mut writer, 400, true);
                        return error(format!("{method} {path}: header line without a colon: {line:?}"));
                    }
                },
                Ok(None) => return error(format!("{method} {path}: connection closed inside the headers")),
                Err(e) => return error(format!("{method} {path}: headers: {e}")),
            }
        }
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        if header("transfer-encoding").is_some() {
            let _ = respond(&mut writer, 411, true);
            return error(format!("{method} {path}: a chunked body; this receiver reads Content-Length bodies only"));
        }
        let length = match header("content-length").map(str::parse::<usize>) {
            None => 0,
            Some(Ok(n)) if n <= MAX_BODY => n,
            Some(_) => {
                let _ = respond(&mut writer, 413, true);
                return error(format!(
                    "{method} {path}: Content-Length {:?} is not a size up to {MAX_BODY}",
                    header("content-length")
                ));
            }
        };
        let mut body = vec![0; length];
        if let Err(e) = read_body(&mut reader, &mut body, shared) {
            return error(format!("{method} {path}: body of {length} bytes: {e}"));
        }
        let close = header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let answered = shared.answer.load(Ordering::SeqCst);
        let json = serde_json::from_slice(&body).ok();
        shared.received.lock().unwrap_or_else(|e| e.into_inner()).push(Received {
            method,
            path,
            headers,
            body,
            json,
            answered,
            at: Instant::now(),
        });
        if respond(&mut writer, answered, close).is_err() || close {
            return;
        }
    }
}

/// One CRLF-terminated line without its terminator; `None` when the peer closed the
/// connection before it (cleanly only `between_requests`) or the receiver stops.
fn read_line(
    reader: &mut BufReader<TcpStream>,
    shared: &Shared,
    between_requests: bool,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        match reader.by_ref().take((MAX_LINE + 2 - line.len()) as u64).read_until(b'\n', &mut line) {
            Ok(0) if line.is_empty() && between_requests => return Ok(None),
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed mid-line")),
            Ok(_) if line.ends_with(b"\n") => break,
            Ok(_) if line.len() >= MAX_LINE => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a line longer than {MAX_LINE} bytes"),
                ));
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            // A peer that dies between requests resets a kept-alive connection it had unread
            // bytes on: the connection is over, no request was lost.
            Err(e) if line.is_empty() && between_requests && e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    let text = String::from_utf8(line)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "a line that is not UTF-8"))?;
    Ok(Some(text.trim_end_matches('\n').trim_end_matches('\r').to_string()))
}

fn read_body(reader: &mut BufReader<TcpStream>, body: &mut [u8], shared: &Shared) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < body.len() {
        if shared.stop.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("the receiver stopped"));
        }
        match reader.read(&mut body[filled..]) {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed mid-body")),
            Ok(n) => filled += n,
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted)
}

fn respond(writer: &mut TcpStream, status: u16, close: bool) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    };
    let connection = if close { "Connection: close\r\n" } else { "" };
    write!(writer, "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n{connection}\r\n")?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Kept-alive requests on one connection are each recorded with their JSON body, and
    // the answer set by `answer_with` is what the client gets.
    #[test]
    fn records_kept_alive_requests_and_answers_as_told() {
        let receiver = Receiver::start();
        let client = reqwest::blocking::Client::new();
        let first = client.post(receiver.url("/alerts")).body(r#"{"status":"firing"}"#).send().unwrap();
        assert_eq!(first.status().as_u16(), 200);
        receiver.answer_with(503);
        let second = client.post(receiver.url("/alerts")).body("not json").send().unwrap();
        assert_eq!(second.status().as_u16(), 503);
        let got = receiver.received();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!((got[0].method.as_str(), got[0].path.as_str(), got[0].answered), ("POST", "/alerts", 200));
        assert_eq!(got[0].json.as_ref().unwrap()["status"], "firing");
        assert_eq!(got[0].header("content-length"), Some("19"));
        assert_eq!(
            (got[1].answered, got[1].json.is_none(), got[1].body.as_slice()),
            (503, true, b"not json".as_slice())
        );
        assert!(receiver.errors().is_empty(), "{:?}", receiver.errors());
    }

    // A sender killed between requests of a kept-alive connection resets it (the kernel sends
    // RST when a socket closes with unread bytes): that ends the connection like a close, it is
    // not a request the receiver could not read. A reset in the middle of a request still is.
    #[test]
    fn a_reset_between_requests_is_a_close_and_mid_request_an_error() {
        let receiver = Receiver::start();
        let mut stream = TcpStream::connect(receiver.addr).unwrap();
        stream.write_all(b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        // The answer is left unread, so closing the socket resets the connection.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while receiver.received().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        drop(stream);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(receiver.received().len(), 1);
        assert!(receiver.errors().is_empty(), "{:?}", receiver.errors());

        let mut stream = TcpStream::connect(receiver.addr).unwrap();
        stream.write_all(b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        while receiver.received().len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        stream.write_all(b"POST /alerts HTTP/1.1\r\nHost: x\r\nCont").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(stream);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while receiver.errors().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let errors = receiver.errors();
        assert!(errors.len() == 1 && errors[0].contains("POST /alerts: headers:"), "{errors:?}");
    }

    // A body without a Content-Length it can read is refused and recorded as an error, not
    // taken for an empty notification.
    #[test]
    fn a_chunked_body_is_an_error() {
        let receiver = Receiver::start();
        let mut stream = TcpStream::connect(receiver.addr).unwrap();
        stream
            .write_all(b"POST /alerts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 411 "), "{answer}");
        assert!(receiver.received().is_empty());
        let errors = receiver.errors();
        assert!(errors.len() == 1 && errors[0].contains("chunked"), "{errors:?}");
    }
}
