//! The one accept path of all three listeners (OTLP/gRPC, OTLP/HTTP, API): one connection cap
//! over all of them, one idle timeout, HTTP/1 header and HTTP/2 keep-alive timeouts, and
//! graceful shutdown.
//!
//! A connection over the cap is accepted and closed at once rather than left in the kernel's
//! backlog: the client learns immediately that it should back off and retry (an OTLP exporter
//! does), the backlog stays short so that a slot freed by the idle timeout goes to a client
//! that is still waiting for it, and the refusal can be counted. The cap stays below the
//! file-descriptor limit, so accepting (and refusing) never fails for want of a descriptor,
//! and the store keeps the descriptors it needs for parts and the write-ahead log.
//!
//! Idle is counted in requests, not bytes: a connection with no request in progress for
//! `idle_timeout` is closed whatever it sends meanwhile (headers trickling in, HTTP/2 pings),
//! so neither silent sockets nor slow headers nor pinging HTTP/2 clients can hold a slot.
//! Bodies that stall while a request is in progress are the body timeouts' business
//! ([`crate::receive::admission`]).
//!
//! TLS (when `[tls]` names the listener) sits between the socket and the idle watch: the
//! handshake has its own deadline (`header_read_timeout`), and idleness is counted in
//! requests over the decrypted stream exactly as over plaintext.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::ServerLimits;
use crate::identity::Peer;
use crate::telemetry::{Listener, Telemetry};
use crate::tls::server::ServerTls;

/// HTTP/2 flow-control windows sized for large export requests: with the 64 KiB defaults a
/// 160 KB request waits for window updates round trip after round trip.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;
/// The largest HTTP/2 frame a client may send: a 512-span export (~150 KB) arrives as one
/// DATA frame instead of ten of the default 16 KiB, which took 4 % off the receiving threads'
/// CPU per span in `bench/run-otlp-bench.sh`. A partial frame is held whole before it is
/// parsed, so this bounds what an idle connection can hold outside the in-flight body budget
/// (below HTTP/1's read buffer of 400 KiB), and idle connections are closed.
const MAX_FRAME: u32 = 256 << 10;

/// The connection cap shared by every listener.
#[derive(Debug)]
pub struct Connections {
    cap: usize,
    open: AtomicUsize,
    telemetry: Arc<Telemetry>,
}

impl Connections {
    pub fn new(cap: usize, telemetry: Arc<Telemetry>) -> Arc<Connections> {
        telemetry.connections_limit.store(cap as u64, Ordering::Relaxed);
        Arc::new(Connections { cap, open: AtomicUsize::new(0), telemetry })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    fn try_open(self: &Arc<Self>, listener: Listener) -> Option<Slot> {
        let opened = self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.cap).then_some(n + 1));
        if opened.is_err() {
            self.telemetry.connection_refused(listener);
            return None;
        }
        self.telemetry.connection_opened(listener);
        Some(Slot { connections: Arc::clone(self), listener })
    }
}

/// One open connection's place under the cap; freed when dropped.
#[derive(Debug)]
struct Slot {
    connections: Arc<Connections>,
    listener: Listener,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
        self.connections.telemetry.connection_closed(self.listener);
    }
}

/// Raises the soft limit on open files to the hard limit where the system allows it, and
/// returns the limit then in force (1,024, the usual default, when it cannot be read).
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if hard > soft && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        tracing::debug!(from = soft, to = hard, "raised the open-file limit");
        return hard;
    }
    soft
}

/// How one listener serves its connections.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub idle_timeout: Duration,
    pub header_read_timeout: Duration,
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
    /// Speak HTTP/2 only (gRPC); otherwise HTTP/1.1 and HTTP/2 are told apart by the preface.
    pub http2_only: bool,
}

impl ConnSettings {
    pub fn new(limits: &ServerLimits, http2_only: bool) -> ConnSettings {
        ConnSettings {
            idle_timeout: limits.idle_timeout.0,
            header_read_timeout: limits.header_read_timeout.0,
            http2_keepalive_interval: limits.http2_keepalive_interval.0,
            http2_keepalive_timeout: limits.http2_keepalive_timeout.0,
            http2_only,
        }
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .keep_alive_interval(self.http2_keepalive_interval)
            .keep_alive_timeout(self.http2_keepalive_timeout);
        if self.http2_only { builder.http2_only() } else { builder }
    }
}

/// Accepts connections on `tcp` and serves `router` on each until `stop` turns true; then
/// stops accepting, lets requests in progress finish and returns when every connection of
/// this listener is closed.
///
/// With `tls`, each connection counts under the cap from its accept, then completes a TLS
/// handshake within `header_read_timeout` (in its own task, so a slow handshake holds no one
/// else up) with the configuration in force at its accept; a failed handshake is counted by
/// reason and closes that connection only.
pub async fn serve(
    tcp: TcpListener,
    listener: Listener,
    router: Router,
    connections: Arc<Connections>,
    settings: ConnSettings,
    tls: Option<Arc<ServerTls>>,
    mut stop: watch::Receiver<bool>,
) {
    let builder = Arc::new(settings.builder());
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = tcp.accept() => accepted,
        };
        let stream = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors (which the cap should prevent) or a connection reset
                // before it was accepted: pause, so that a persistent error does not spin.
                tracing::warn!(%err, listener = listener.as_str(), "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (stream, remote) = stream;
        let Some(slot) = connections.try_open(listener) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            router: router.clone(),
            builder: Arc::clone(&builder),
            watcher: graceful.watcher(),
            idle: settings.idle_timeout,
            slot,
        };
        let Some(config) = tls.as_ref().and_then(|tls| tls.current(listener)) else {
            let peer = Peer { listener, remote: Some(remote), tls: false, spiffe_id: None };
            tokio::spawn(conn.serve(stream, peer));
            continue;
        };
        let handshake_timeout = settings.header_read_timeout;
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let telemetry = Arc::clone(&conn.slot.connections.telemetry);
            let handshake = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                handshake = tokio::time::timeout(handshake_timeout, TlsAcceptor::from(config).accept(stream)) => handshake,
            };
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    let reason = crate::tls::server::handshake_failure_reason(&err);
                    telemetry.tls.handshake_failed(listener, reason);
                    tracing::debug!(%err, %remote, reason, listener = listener.as_str(), "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    telemetry.tls.handshake_failed(listener, "timeout");
                    tracing::debug!(%remote, listener = listener.as_str(), "TLS handshake timed out");
                    return;
                }
            };
            telemetry.tls.handshake(listener);
            let spiffe_id = crate::tls::spiffe::spiffe_id_of(stream.get_ref().1);
            conn.serve(stream, Peer { listener, remote: Some(remote), tls: true, spiffe_id }).await;
        });
    }
    drop(tcp);
    graceful.shutdown().await;
}

/// An accepted connection, holding its place under the cap, before it is served.
struct Conn {
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    idle: Duration,
    slot: Slot,
}

impl Conn {
    /// Serves HTTP on `io` (a TCP or TLS stream) until the connection ends.
    async fn serve<I>(self, io: I, peer: Peer)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn { router, builder, watcher, idle, slot } = self;
        let listener = peer.listener;
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(IdleIo::new(io, Arc::clone(&activity), idle));
        let service = Tracked { router, activity: Arc::clone(&activity), peer: Arc::new(peer) };
        let conn = watcher.watch(builder.serve_connection(io, service).into_owned());
        if let Err(err) = conn.await {
            tracing::debug!(%err, listener = listener.as_str(), "connection ended with an error");
        }
        if activity.closed_idle.load(Ordering::Relaxed) {
            slot.connections.telemetry.connection_idle_closed(listener);
        }
        drop(slot);
    }
}

/// Whether a connection has a request in progress, and since when it has had none.
#[derive(Debug)]
struct Activity {
    in_progress: AtomicUsize,
    idle_since: Mutex<Instant>,
    closed_idle: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity { in_progress: AtomicUsize::new(0), idle_since: Mutex::new(Instant::now()), closed_idle: false.into() }
    }

    fn begin(self: &Arc<Self>) -> InProgress {
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        InProgress(Arc::clone(self))
    }

    /// When the connection became idle, or `None` while a request is in progress.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_progress.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(*self.idle_since.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One request in progress, from its headers to the last byte of its answer.
#[derive(Debug)]
struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router, with each request marked in progress until its answer has been sent, and the
/// connection's [`Peer`] in its extensions.
#[derive(Debug, Clone)]
struct Tracked {
    router: Router,
    activity: Arc<Activity>,
    peer: Arc<Peer>,
}

impl hyper::service::Service<http::Request<Incoming>> for Tracked {
    type Response = http::Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        let in_progress = self.activity.begin();
        request.extensions_mut().insert(Arc::clone(&self.peer));
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await.unwrap_or_else(|never| match never {});
            Ok(response.map(|body| TrackedBody { body, _in_progress: in_progress }))
        })
    }
}

/// An answer's body, holding its request in progress until it is sent or dropped.
#[derive(Debug)]
struct TrackedBody {
    body: Body,
    _in_progress: InProgress,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A socket that fails (so that hyper closes the connection) when the connection has had no
/// request in progress for `idle`, or when a write has been blocked for `idle` because the
/// client does not read its answers.
#[derive(Debug)]
struct IdleIo<T> {
    io: T,
    activity: Arc<Activity>,
    idle: Duration,
    read_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    write_blocked_since: Option<Instant>,
}

impl<T> IdleIo<T> {
    fn new(io: T, activity: Arc<Activity>, idle: Duration) -> IdleIo<T> {
        let far = Instant::now() + idle;
        IdleIo {
            io,
            activity,
            idle,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            write_blocked_since: None,
        }
    }

    /// Nothing to read: fails once the connection has been idle for `idle`; otherwise arms
    /// a timer to look again (while a request is in progress, after `idle` from now).
    fn read_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let now = Instant::now();
        let deadline = match self.activity.idle_since() {
            Some(since) => since + self.idle,
            None => now + self.idle,
        };
        if deadline <= now {
            self.activity.closed_idle.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")));
        }
        if self.read_timer.deadline() != deadline {
            self.read_timer.as_mut().reset(deadline);
        }
        let _ = self.read_timer.as_mut().poll(cx);
        Poll::Pending
    }

    fn write_pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let now = Instant::now();
        let deadline = *self.write_blocked_since.get_or_insert(now) + self.idle;
        if deadline <= now {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client does not read its answer")));
        }
        if self.write_timer.deadline() != deadline {
            self.write_timer.as_mut().reset(deadline);
        }
        let _ = self.write_timer.as_mut().poll(cx);
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => this.read_pending(cx),
            ready => ready,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Pending => this.write_pending(cx),
            ready => {
                this.write_blocked_since = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.write_pending(cx),
            ready => {
                this.write_blocked_since = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_open_connections_and_frees_slots() {
        let telemetry = Arc::new(Telemetry::default());
        let connections = Connections::new(2, Arc::clone(&telemetry));
        let a = connections.try_open(Listener::Api).unwrap();
        let _b = connections.try_open(Listener::OtlpGrpc).unwrap();
        assert!(connections.try_open(Listener::OtlpHttp).is_none());
        drop(a);
        assert!(connections.try_open(Listener::OtlpHttp).is_some());
        let text = telemetry.render();
        assert!(text.contains("slo_gate_connections_refused_total{listener=\"otlp_http\"} 1"), "{text}");
        assert!(text.contains("slo_gate_connections_open{listener=\"otlp_grpc\"} 1"), "{text}");
        assert!(text.contains("slo_gate_connections_limit 2"), "{text}");
    }

    /// The server's first SETTINGS frame offers the windows and the frame size above
    /// (RFC 9113 §6.5.2: INITIAL_WINDOW_SIZE is 0x4, MAX_FRAME_SIZE 0x5).
    #[tokio::test]
    async fn http2_settings_offer_large_windows_and_frames() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(1 << 16);
        let settings = ConnSettings::new(&ServerLimits::default(), true);
        let service = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
        });
        let served = tokio::spawn(async move {
            let _ = settings.builder().serve_connection(hyper_util::rt::TokioIo::new(server), service).await;
        });
        let mut client = client;
        // The connection preface and an empty SETTINGS frame.
        client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.unwrap();
        let mut header = [0u8; 9];
        client.read_exact(&mut header).await.unwrap();
        assert_eq!(header[3], 0x4, "the server's first frame is SETTINGS");
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; len];
        client.read_exact(&mut payload).await.unwrap();
        let offered: std::collections::HashMap<u16, u32> = payload
            .chunks_exact(6)
            .map(|p| (u16::from_be_bytes([p[0], p[1]]), u32::from_be_bytes([p[2], p[3], p[4], p[5]])))
            .collect();
        assert_eq!(offered.get(&0x5), Some(&MAX_FRAME), "{offered:?}");
        assert_eq!(offered.get(&0x4), Some(&STREAM_WINDOW), "{offered:?}");
        served.abort();
    }

    #[test]
    fn the_descriptor_limit_is_at_least_the_soft_limit() {
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert!(raise_fd_limit() >= soft);
    }
}
