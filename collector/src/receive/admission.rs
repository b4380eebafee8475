//! Admission of request bodies: one byte budget for everything the listeners hold in memory
//! on behalf of requests (bodies as they arrive, their decompressed copies), shared by every
//! receiver and the API.
//!
//! Bytes are counted *before* they are buffered: a declared `Content-Length` is reserved whole
//! before the first byte is read (and refused at once when it does not fit), and a body of
//! unknown length takes budget for each frame before the frame is copied. Decompression takes
//! budget for each chunk it writes. What a request took is given back when its [`Reservation`]
//! is dropped, which the handlers do after answering, so the budget bounds what requests hold
//! from the first byte to the answer. A request that does not fit is refused as overloaded
//! (429 / `UNAVAILABLE`, retryable), never queued: queueing would hold its connection and
//! whatever its client sends meanwhile. A body that stops arriving, or takes too long overall,
//! is cut off, which releases its budget.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::BodyExt;

use crate::config::ServerLimits;
use crate::error::ErrorKind;
use crate::telemetry::Telemetry;

/// Why a request body was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: u64, limit: usize },
    #[error(
        "collector is overloaded: request bodies in flight hold {in_use} of {capacity} bytes and this one needs {wanted} more; retry later"
    )]
    Overloaded { wanted: usize, in_use: usize, capacity: usize },
    #[error("request body stalled: no byte arrived for {0:?}")]
    Stalled(Duration),
    #[error("request body did not arrive within {0:?}")]
    TooSlow(Duration),
    #[error("cannot read request body: {0}")]
    Read(String),
    #[error("malformed gzip body: {0}")]
    Gzip(String),
}

impl BodyError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BodyError::TooLarge { .. } => ErrorKind::TooLarge,
            BodyError::Overloaded { .. } => ErrorKind::Overloaded,
            BodyError::Stalled(_) | BodyError::TooSlow(_) => ErrorKind::TimedOut,
            BodyError::Read(_) | BodyError::Gzip(_) => ErrorKind::BadRequest,
        }
    }
}

/// The global budget of bytes held by requests in flight.
#[derive(Debug)]
pub struct Budget {
    capacity: usize,
    used: AtomicUsize,
    telemetry: Arc<Telemetry>,
}

impl Budget {
    pub fn new(capacity: usize, telemetry: Arc<Telemetry>) -> Arc<Budget> {
        telemetry.body_bytes_limit.store(capacity as u64, Ordering::Relaxed);
        Arc::new(Budget { capacity, used: AtomicUsize::new(0), telemetry })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty reservation, to grow as bytes arrive.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation { budget: Arc::clone(self), bytes: 0 }
    }

    fn take(&self, n: usize) -> Result<(), BodyError> {
        let taken = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(n).filter(|&total| total <= self.capacity)
        });
        match taken {
            Ok(_) => {
                self.telemetry.body_bytes_inflight.fetch_add(n as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(in_use) => {
                self.telemetry.body_refused("overloaded");
                Err(BodyError::Overloaded { wanted: n, in_use, capacity: self.capacity })
            }
        }
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.telemetry.body_bytes_inflight.fetch_sub(n as u64, Ordering::Relaxed);
    }
}

/// Bytes of the budget held by one request; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Reservation {
    /// Takes `n` more bytes, or fails without taking any when the budget cannot spare them.
    pub fn grow(&mut self, n: usize) -> Result<(), BodyError> {
        self.budget.take(n)?;
        self.bytes += n;
        Ok(())
    }

    /// Gives back up to `n` bytes (memory the request no longer holds).
    pub fn shrink(&mut self, n: usize) {
        let n = n.min(self.bytes);
        self.budget.give_back(n);
        self.bytes -= n;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// The budget and the body timeouts: what every handler that buffers a body reads it with.
#[derive(Debug, Clone)]
pub struct Admission {
    budget: Arc<Budget>,
    progress_timeout: Duration,
    total_timeout: Duration,
}

/// A body read whole, with the budget it holds.
#[derive(Debug)]
pub struct Admitted {
    pub bytes: Bytes,
    pub held: Reservation,
}

impl Admission {
    pub fn new(limits: &ServerLimits, telemetry: Arc<Telemetry>) -> Admission {
        Admission {
            budget: Budget::new(limits.max_inflight_body_bytes, telemetry),
            progress_timeout: limits.body_progress_timeout.0,
            total_timeout: limits.body_timeout.0,
        }
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Reads a body of at most `limit` bytes, taking budget before buffering each byte; with
    /// `gzip`, inflates it (to at most `limit` bytes, counted too) and gives back the
    /// compressed bytes.
    pub async fn read(&self, headers: &HeaderMap, body: Body, limit: usize, gzip: bool) -> Result<Admitted, BodyError> {
        let (raw, mut held) = self.read_raw(headers, body, limit).await?;
        if !gzip {
            return Ok(Admitted { bytes: raw, held });
        }
        let raw_held = held.bytes();
        let inflated = gunzip(&raw, limit, &mut held)?;
        drop(raw);
        held.shrink(raw_held);
        Ok(Admitted { bytes: inflated, held })
    }

    /// [`Admission::read`] of a unary gRPC call's body (never gzip as a whole: its message
    /// may be). Without a `content-length`, the buffer is sized by the message prefix of the
    /// first frame (gRPC clients seldom send one), so a large message is not copied from
    /// buffer to doubled buffer as it arrives; the prefix's size is taken from the budget like
    /// a declared length, capped at `limit`.
    pub async fn read_grpc(&self, headers: &HeaderMap, body: Body, limit: usize) -> Result<Admitted, BodyError> {
        let declared = content_length(headers);
        let (bytes, held) =
            read_counted(body, declared, limit, &self.budget, self.progress_timeout, self.total_timeout, true).await?;
        Ok(Admitted { bytes, held })
    }

    async fn read_raw(&self, headers: &HeaderMap, body: Body, limit: usize) -> Result<(Bytes, Reservation), BodyError> {
        read_counted(
            body,
            content_length(headers),
            limit,
            &self.budget,
            self.progress_timeout,
            self.total_timeout,
            false,
        )
        .await
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// Reads `body` into one buffer whose every byte of capacity was taken from `budget` before
/// it was allocated. With `grpc_prefix`, an undeclared body is sized by the gRPC message prefix
/// (a flag byte and a big-endian length) its first frame starts with.
pub async fn read_counted(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    budget: &Arc<Budget>,
    progress_timeout: Duration,
    total_timeout: Duration,
    grpc_prefix: bool,
) -> Result<(Bytes, Reservation), BodyError> {
    let mut sized_by_prefix = !grpc_prefix || declared.is_some();
    let mut held = budget.reservation();
    let mut buf = Vec::new();
    if let Some(len) = declared {
        if len > limit as u64 {
            return Err(BodyError::TooLarge { size: len, limit });
        }
        held.grow(len as usize)?;
        buf.reserve_exact(len as usize);
    }
    let deadline = tokio::time::Instant::now() + total_timeout;
    let mut body = body;
    loop {
        let now = tokio::time::Instant::now();
        let wake = (now + progress_timeout).min(deadline);
        let frame = match tokio::time::timeout_at(wake, body.frame()).await {
            Err(_) => {
                budget.telemetry.body_refused("timeout");
                return Err(if wake >= deadline {
                    BodyError::TooSlow(total_timeout)
                } else {
                    BodyError::Stalled(progress_timeout)
                });
            }
            Ok(None) => break,
            Ok(Some(Err(err))) => return Err(BodyError::Read(err.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        let needed = buf.len() + data.len();
        if needed > limit {
            return Err(BodyError::TooLarge { size: needed as u64, limit });
        }
        if !sized_by_prefix && data.len() >= 5 {
            sized_by_prefix = true;
            let message = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
            grow_counted(&mut buf, message.saturating_add(5).min(limit), limit, &mut held)?;
        }
        grow_counted(&mut buf, needed, limit, &mut held)?;
        buf.extend_from_slice(&data);
    }
    Ok((Bytes::from(buf), held))
}

/// Makes room for `needed` bytes in `buf`, doubling as `Vec` does but never past `limit`,
/// after taking the added capacity from `held`.
fn grow_counted(buf: &mut Vec<u8>, needed: usize, limit: usize, held: &mut Reservation) -> Result<(), BodyError> {
    let capacity = buf.capacity();
    if needed <= capacity {
        return Ok(());
    }
    let target = needed.max(capacity.saturating_mul(2)).max(8 * 1024).min(limit.max(needed));
    held.grow(target - capacity)?;
    buf.reserve_exact(target - buf.len());
    Ok(())
}

/// Inflates a gzip body to at most `limit` bytes, taking budget before each chunk is kept:
/// a small body that inflates past the limit (a "zip bomb") is refused as too large without
/// inflating it all.
pub fn gunzip(data: &[u8], limit: usize, held: &mut Reservation) -> Result<Bytes, BodyError> {
    const CHUNK: usize = 64 * 1024;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut decoder = flate2::read::GzDecoder::new(data);
    loop {
        let n = decoder.read(&mut chunk).map_err(|e| BodyError::Gzip(e.to_string()))?;
        if n == 0 {
            break;
        }
        let needed = out.len() + n;
        if needed > limit {
            return Err(BodyError::TooLarge { size: needed as u64, limit });
        }
        grow_counted(&mut out, needed, limit, held)?;
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn budget(capacity: usize) -> Arc<Budget> {
        Budget::new(capacity, Arc::new(Telemetry::default()))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// A body fed by a channel; it ends when every sender is gone.
    struct ChannelBody {
        rx: tokio::sync::mpsc::Receiver<Bytes>,
        _keep: Option<tokio::sync::mpsc::Sender<Bytes>>,
    }

    impl hyper::body::Body for ChannelBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }

    fn channel_body(rx: tokio::sync::mpsc::Receiver<Bytes>, keep: Option<tokio::sync::mpsc::Sender<Bytes>>) -> Body {
        Body::new(ChannelBody { rx, _keep: keep })
    }

    /// A body that sends `chunks` and then either ends or holds (never ends).
    fn body(chunks: Vec<&'static [u8]>, hold: bool) -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel(chunks.len() + 1);
        for c in chunks {
            tx.try_send(Bytes::from_static(c)).unwrap();
        }
        channel_body(rx, hold.then_some(tx))
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn declared_length_is_reserved_before_reading_and_refused_when_it_does_not_fit() {
        let budget = budget(100);
        let (bytes, held) =
            read_counted(body(vec![b"0123456789"], false), Some(10), 50, &budget, SECOND, SECOND, false).await.unwrap();
        assert_eq!(&bytes[..], b"0123456789");
        assert_eq!((held.bytes(), budget.in_use()), (10, 10));

        // 95 declared would pass the budget with 10 held: refused before a byte is read.
        let err = read_counted(body(vec![], true), Some(95), 1000, &budget, SECOND, SECOND, false).await.unwrap_err();
        assert!(matches!(err, BodyError::Overloaded { wanted: 95, in_use: 10, capacity: 100 }), "{err}");
        assert_eq!(err.kind(), ErrorKind::Overloaded);
        // Over the request limit: too large, whatever the budget.
        let err = read_counted(body(vec![], true), Some(51), 50, &budget, SECOND, SECOND, false).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        drop(held);
        assert_eq!(budget.in_use(), 0);
    }

    /// A gRPC body without `content-length` is buffered at the size its message prefix gives,
    /// counted, instead of growing by doubling; a prefix past the limit reserves the limit.
    #[tokio::test]
    async fn grpc_bodies_are_sized_by_their_message_prefix() {
        let budget = budget(1 << 20);
        let message = vec![7u8; 100_000];
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(&message);
        let framed: &'static [u8] = Box::leak(framed.into_boxed_slice());
        let chunks = framed.chunks(16 * 1024).collect();
        let (bytes, held) =
            read_counted(body(chunks, false), None, 200_000, &budget, SECOND, SECOND, true).await.unwrap();
        assert_eq!(&bytes[..], framed);
        assert_eq!(held.bytes(), 100_005, "one buffer of the prefix's size");
        // Read as any other body, it grows by doubling past its size.
        let chunks = framed.chunks(16 * 1024).collect();
        let (_, doubled) =
            read_counted(body(chunks, false), None, 200_000, &budget, SECOND, SECOND, false).await.unwrap();
        assert!(doubled.bytes() > 100_005, "{}", doubled.bytes());
        // A prefix declaring more than the limit reserves the limit only, and the body is
        // then refused as too large once more than the limit arrives.
        let lying: &'static [u8] = &[0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let (bytes, held) =
            read_counted(body(vec![lying], false), None, 1000, &budget, SECOND, SECOND, true).await.unwrap();
        assert_eq!((bytes.len(), held.bytes()), (8, 1000));
    }

    #[tokio::test]
    async fn undeclared_bodies_take_budget_per_frame_and_give_it_all_back_when_refused() {
        let budget = budget(20 * 1024);
        let mut other = budget.reservation();
        other.grow(4 * 1024).unwrap();
        let chunk: &'static [u8] = &[7u8; 8 * 1024];
        // 8 KiB + 8 KiB fits beside the 4 KiB held elsewhere; the third frame does not.
        let err = read_counted(body(vec![chunk, chunk, chunk], false), None, 1 << 20, &budget, SECOND, SECOND, false)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::Overloaded { .. }), "{err}");
        assert_eq!(budget.in_use(), 4 * 1024, "the refused body's bytes are given back");
        drop(other);
        let (bytes, held) =
            read_counted(body(vec![chunk, chunk], false), None, 1 << 20, &budget, SECOND, SECOND, false).await.unwrap();
        assert_eq!(bytes.len(), 16 * 1024);
        assert!(held.bytes() >= bytes.len() && held.bytes() <= 20 * 1024, "{}", held.bytes());
        drop(held);
        // The limit applies to bodies of unknown length too.
        let err = read_counted(body(vec![chunk, chunk], false), None, 10_000, &budget, SECOND, SECOND, false)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { size: 16384, limit: 10_000 }), "{err}");
    }

    #[tokio::test]
    async fn stalled_and_slow_bodies_are_cut_off_and_release_their_budget() {
        let budget = budget(1 << 20);
        let progress = Duration::from_millis(200);
        let err =
            read_counted(body(vec![b"abc"], true), Some(100), 1000, &budget, progress, Duration::from_secs(60), false)
                .await
                .unwrap_err();
        assert!(matches!(err, BodyError::Stalled(d) if d == progress), "{err}");
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert_eq!(budget.in_use(), 0);

        // A byte every 50 ms never stalls, but the whole body has 600 ms.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            while tx.send(Bytes::from_static(b"x")).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let trickle = channel_body(rx, None);
        let err =
            read_counted(trickle, None, 1000, &budget, progress, Duration::from_millis(600), false).await.unwrap_err();
        assert!(matches!(err, BodyError::TooSlow(_)), "{err}");
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn gzip_output_is_counted_and_bounded() {
        let budget = budget(1 << 20);
        let mut held = budget.reservation();
        let data = vec![3u8; 300_000];
        let out = gunzip(&gzip(&data), 1 << 20, &mut held).unwrap();
        assert_eq!(out.len(), data.len());
        assert!(held.bytes() >= data.len(), "{} bytes held for {} inflated", held.bytes(), data.len());
        drop(held);

        // Inflating past the budget is refused as overload, past the limit as too large.
        let mut held = budget.reservation();
        let bomb = gzip(&vec![0u8; 2 << 20]);
        let err = gunzip(&bomb, 4 << 20, &mut held).unwrap_err();
        assert!(matches!(err, BodyError::Overloaded { .. }), "{err}");
        drop(held);
        let mut held = budget.reservation();
        let err = gunzip(&bomb, 100_000, &mut held).unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 100_000, .. }), "{err}");
        drop(held);
        assert_eq!(budget.in_use(), 0);

        let err = gunzip(b"not gzip", 1000, &mut budget.reservation()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRequest);
        assert!(err.to_string().starts_with("malformed gzip body"), "{err}");
    }

    #[tokio::test]
    async fn admission_inflates_and_gives_back_the_compressed_bytes() {
        let telemetry = Arc::new(Telemetry::default());
        let admission = Admission::new(&ServerLimits::default(), Arc::clone(&telemetry));
        let compressed = gzip(&[5u8; 100_000]);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, compressed.len().into());
        let admitted = admission.read(&headers, Body::from(compressed.clone()), 1 << 20, true).await.unwrap();
        assert_eq!(admitted.bytes.len(), 100_000);
        assert!(admitted.held.bytes() >= 100_000 && admitted.held.bytes() < 100_000 + compressed.len() + 65_536);
        assert_eq!(telemetry.body_bytes_inflight.load(Ordering::Relaxed), admitted.held.bytes() as u64);
        drop(admitted);
        assert_eq!(admission.budget().in_use(), 0);
        assert_eq!(telemetry.body_bytes_inflight.load(Ordering::Relaxed), 0);
    }
}
