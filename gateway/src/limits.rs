//! Bounds on what one S3 client can make the gateway hold or do: the connection limit and the
//! read timeouts of the listener ([`ListenerLimits`]), the request body's idle timeout and
//! aws-chunked chunk size ([`GuardedBody`]), and per-key request rates ([`KeyRateLimiter`],
//! applied by [`RateLimitedAccess`] once the signature holds). Pure bookkeeping and body
//! wrappers: nothing here reads metadata or touches a disk.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use s3s::access::{S3Access, S3AccessContext};
use s3s::S3Result;

/// Connections served at once by default; past it new ones wait in the kernel's backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// A client has this long to send a request head (and, between requests, to start the next
/// one: hyper runs the same timer on an idle keep-alive connection). AWS closes after ~20 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// A request whose body brings no byte for this long fails with `400 RequestTimeout`.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// hyper's read buffer limit per connection: a request head still incomplete at this size is
/// refused (431), so a head that never ends holds at most this plus one read (hyper bounds
/// each read by it too): under 128 KiB. A complete head that arrived in fewer reads may be
/// larger; the listener answers those `RequestHeaderSectionTooLarge`. The head S3 accepts is
/// [`crate::server::MAX_HEADER_SECTION_BYTES`] plus the request line (a key is at most 1024
/// bytes, three times that percent-encoded, plus a presigned query).
pub const MAX_READ_BUF_BYTES: usize = 64 * 1024;
/// XML bodies s3s reads whole (CompleteMultipartUpload, DeleteObjects, tagging, CORS): the
/// largest real one, 10,000 parts with checksums, is about 2 MB. s3s's default is 20 MB.
pub const MAX_XML_BODY_BYTES: usize = 4 * 1024 * 1024;
/// s3s holds a whole aws-chunked chunk before it checks the chunk's signature, and a chunk's
/// declared size may be up to 4 GiB: larger chunks are refused. SDKs send 64 KiB (Java v1:
/// 128 KiB).
pub const MAX_AWS_CHUNK_BYTES: u64 = 8 * 1024 * 1024;

const _: () = assert!(MAX_READ_BUF_BYTES >= 2 * crate::server::MAX_HEADER_SECTION_BYTES);
// hyper refuses a read buffer below its 8 KiB minimum.
const _: () = assert!(MAX_READ_BUF_BYTES >= 8192);

/// The listener's bounds on its clients (`[s3]` in the config file).
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerLimits {
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    /// Requests per second each access key may make (a token bucket holding one second's
    /// worth); None: no limit.
    pub requests_per_sec_per_key: Option<u32>,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            requests_per_sec_per_key: None,
        }
    }
}

/// Why a [`GuardedBody`] failed, where s3s and the write path only see a failed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    /// No byte came for the idle timeout.
    IdleTimeout,
    /// An aws-chunked chunk declared more than [`MAX_AWS_CHUNK_BYTES`].
    ChunkTooLarge,
}

/// Tells the listener, once the service answered, whether the body failed by our limits (the
/// first fault only).
#[derive(Clone, Default)]
pub struct BodyWatch(Arc<OnceLock<BodyFault>>);

impl BodyWatch {
    pub fn fault(&self) -> Option<BodyFault> {
        self.0.get().copied()
    }

    fn set(&self, fault: BodyFault) {
        let _ = self.0.set(fault);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BodyLimitError {
    #[error("no request body bytes for {0:?}")]
    Idle(Duration),
    #[error("an aws-chunked chunk is larger than {limit} bytes")]
    ChunkTooLarge { limit: u64 },
    #[error("request body: {0}")]
    Hyper(#[from] hyper::Error),
}

/// A request body that fails when no byte comes for `idle` while it is being read (time the
/// server spends elsewhere, e.g. waiting on storage nodes, does not count), and, for
/// aws-chunked bodies, when a chunk declares more than [`MAX_AWS_CHUNK_BYTES`]. The failure
/// reaches the write path as a body error, which drops its shard streams (the storage nodes
/// remove their temp files); the listener then answers from the [`BodyWatch`].
pub struct GuardedBody<B> {
    inner: B,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
    chunks: Option<ChunkSizeGuard>,
    watch: BodyWatch,
}

impl<B> GuardedBody<B> {
    pub fn new(inner: B, idle: Duration, aws_chunked: bool) -> (Self, BodyWatch) {
        let watch = BodyWatch::default();
        let body = GuardedBody {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            armed: false,
            chunks: aws_chunked.then(ChunkSizeGuard::default),
            watch: watch.clone(),
        };
        (body, watch)
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = BodyLimitError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyLimitError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.armed = false;
                if let (Some(guard), Some(data)) = (this.chunks.as_mut(), frame.data_ref()) {
                    if guard.feed(data).is_err() {
                        this.watch.set(BodyFault::ChunkTooLarge);
                        return Poll::Ready(Some(Err(BodyLimitError::ChunkTooLarge {
                            limit: MAX_AWS_CHUNK_BYTES,
                        })));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if !this.armed {
                    this.sleep
                        .as_mut()
                        .reset(tokio::time::Instant::now() + this.idle);
                    this.armed = true;
                }
                if this.sleep.as_mut().poll(cx).is_ready() {
                    this.watch.set(BodyFault::IdleTimeout);
                    return Poll::Ready(Some(Err(BodyLimitError::Idle(this.idle))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail when the client takes nothing for `timeout` (a client that
/// stops reading its GET would otherwise hold the connection and its read pipeline forever).
/// Reads are bounded by hyper's header read timeout and [`GuardedBody`].
pub struct WriteTimeoutIo<T> {
    inner: T,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
}

impl<T> WriteTimeoutIo<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        WriteTimeoutIo {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
        }
    }

    /// Called when a write is pending: times out `timeout` after the first pending write
    /// since the last progress.
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<R>> {
        if !self.armed {
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + self.timeout);
            self.armed = true;
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing within the timeout",
            )));
        }
        Poll::Pending
    }

    fn progressed<R>(
        &mut self,
        r: Poll<std::io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<R>> {
        match r {
            Poll::Pending => self.pending(cx),
            ready => {
                self.armed = false;
                ready
            }
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteTimeoutIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteTimeoutIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(r, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progressed(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progressed(r, cx)
    }
}

/// Follows the framing of an aws-chunked body (`<hex size>[;ext]\r\n<data>\r\n` …) only far
/// enough to see each chunk's declared size; s3s parses and verifies the rest.
#[derive(Debug, Default)]
struct ChunkSizeGuard {
    state: ChunkState,
}

#[derive(Debug)]
enum ChunkState {
    /// At the hex size of the next chunk.
    Size { value: u64, digits: usize },
    /// Past the size, to the end of the line.
    Line { size: u64 },
    /// Inside a chunk's data and its closing CRLF.
    Data { remaining: u64 },
    /// After the last (empty) chunk: trailers, bounded by s3s.
    Done,
}

impl Default for ChunkState {
    fn default() -> Self {
        ChunkState::Size {
            value: 0,
            digits: 0,
        }
    }
}

/// A chunk declared more than [`MAX_AWS_CHUNK_BYTES`].
#[derive(Debug, PartialEq, Eq)]
struct ChunkTooLarge;

impl ChunkSizeGuard {
    fn feed(&mut self, mut data: &[u8]) -> Result<(), ChunkTooLarge> {
        while !data.is_empty() {
            match &mut self.state {
                ChunkState::Done => return Ok(()),
                ChunkState::Data { remaining } => {
                    let skip = (*remaining).min(data.len() as u64);
                    *remaining -= skip;
                    data = &data[skip as usize..];
                    if *remaining == 0 {
                        self.state = ChunkState::default();
                    }
                }
                ChunkState::Size { value, digits } => {
                    let b = data[0];
                    match (b as char).to_digit(16) {
                        Some(d) => {
                            *value = *value * 16 + u64::from(d);
                            *digits += 1;
                            if *value > MAX_AWS_CHUNK_BYTES || *digits > 16 {
                                return Err(ChunkTooLarge);
                            }
                            data = &data[1..];
                        }
                        None => {
                            // A malformed size line is s3s's to refuse.
                            self.state = ChunkState::Line { size: *value };
                        }
                    }
                }
                ChunkState::Line { size } => match data.iter().position(|&b| b == b'\n') {
                    Some(at) => {
                        data = &data[at + 1..];
                        self.state = if *size == 0 {
                            ChunkState::Done
                        } else {
                            ChunkState::Data {
                                remaining: *size + 2,
                            }
                        };
                    }
                    None => return Ok(()),
                },
            }
        }
        Ok(())
    }
}

/// A token bucket: `rate` tokens a second, holding at most `burst`. Time comes in as an
/// argument, so it is tested without a clock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Full again: as good as a new bucket, so it need not be remembered.
    fn is_full(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.refill(now, rate, burst);
        self.tokens >= burst
    }

    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
    }
}

/// Buckets remembered at most; past it the full ones are forgotten, and if that is not
/// enough, all (a forgotten key starts with a full bucket: at worst one extra second's worth).
const RATE_LIMITER_MAX_KEYS: usize = 100_000;

/// One token bucket per access key, holding one second's worth of requests.
pub struct KeyRateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl KeyRateLimiter {
    pub fn new(requests_per_sec: u32) -> Self {
        KeyRateLimiter {
            rate: f64::from(requests_per_sec.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` may make one more request now.
    pub fn allow(&self, key: &str, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.rate);
        let mut buckets = self.buckets.lock().expect("rate limiter lock poisoned");
        if let Some(b) = buckets.get_mut(key) {
            return b.try_take(now, rate, burst);
        }
        if buckets.len() >= RATE_LIMITER_MAX_KEYS {
            buckets.retain(|_, b| !b.is_full(now, rate, burst));
            if buckets.len() >= RATE_LIMITER_MAX_KEYS {
                buckets.clear();
            }
        }
        let mut b = TokenBucket::new(burst, now);
        let allowed = b.try_take(now, rate, burst);
        buckets.insert(key.to_string(), b);
        allowed
    }
}

/// s3s's access hook with the per-key rate limit in front: it runs after the signature was
/// verified (a request that only names a key cannot spend that key's budget) and before the
/// operation reads any body. Requests past the limit get `503 SlowDown`.
pub struct RateLimitedAccess<A> {
    pub inner: A,
    pub limiter: Option<Arc<KeyRateLimiter>>,
}

#[async_trait::async_trait]
impl<A: S3Access> S3Access for RateLimitedAccess<A> {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if let (Some(limiter), Some(creds)) = (&self.limiter, cx.credentials()) {
            if !limiter.allow(&creds.access_key, Instant::now()) {
                return Err(crate::error::slow_down());
            }
        }
        self.inner.check(cx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5.0, t0);
        for _ in 0..5 {
            assert!(b.try_take(t0, 5.0, 5.0));
        }
        assert!(!b.try_take(t0, 5.0, 5.0), "burst spent");
        // 5 per second: one token every 200 ms.
        assert!(!b.try_take(t0 + Duration::from_millis(150), 5.0, 5.0));
        assert!(b.try_take(t0 + Duration::from_millis(210), 5.0, 5.0));
        assert!(!b.try_take(t0 + Duration::from_millis(220), 5.0, 5.0));
        // Refills to the burst, never beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(b.try_take(later, 5.0, 5.0));
        }
        assert!(!b.try_take(later, 5.0, 5.0));
    }

    #[test]
    fn rate_limiter_is_per_key() {
        let t0 = Instant::now();
        let l = KeyRateLimiter::new(3);
        assert!((0..3).all(|_| l.allow("a", t0)));
        assert!(!l.allow("a", t0));
        assert!(l.allow("b", t0), "another key has its own bucket");
        assert!(l.allow("a", t0 + Duration::from_millis(400)));
    }

    #[test]
    fn rate_limiter_stays_bounded() {
        let t0 = Instant::now();
        let l = KeyRateLimiter::new(1);
        for i in 0..RATE_LIMITER_MAX_KEYS + 10 {
            l.allow(&format!("k{i}"), t0);
        }
        assert!(l.buckets.lock().expect("lock").len() <= RATE_LIMITER_MAX_KEYS);
    }

    fn check(input: &[&[u8]], expected: Result<(), ChunkTooLarge>) {
        let mut g = ChunkSizeGuard::default();
        let got = input.iter().try_for_each(|piece| g.feed(piece));
        assert_eq!(got, expected, "{input:?}");
    }

    #[test]
    fn chunk_guard_sees_declared_sizes() {
        let sig =
            ";chunk-signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n";
        let ok = format!("10000{sig}{}\r\n0{sig}\r\n", "x".repeat(0x10000));
        check(&[ok.as_bytes()], Ok(()));
        // Split anywhere, even inside the size.
        let (a, b) = ok.as_bytes().split_at(3);
        check(&[a, b], Ok(()));
        // Unsigned chunks with trailers.
        check(
            &[b"4\r\nabcd\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"],
            Ok(()),
        );
        // 8 MiB passes, 8 MiB + 1 and absurd sizes do not, whatever follows.
        check(&[b"800000\r\n"], Ok(()));
        check(&[b"800001\r\n"], Err(ChunkTooLarge));
        check(&[b"8000", b"01;chunk-signature=x"], Err(ChunkTooLarge));
        check(&[b"ffffffff\r\n"], Err(ChunkTooLarge));
        check(&[b"00000000000000000001\r\n"], Err(ChunkTooLarge));
        // A second chunk too large after a good one.
        check(&[b"2\r\nab\r\n900000\r\n"], Err(ChunkTooLarge));
        // After the last chunk nothing is looked at.
        check(&[b"0\r\nffffffffff"], Ok(()));
    }

    #[tokio::test]
    async fn idle_body_fails_and_says_why() {
        use http_body_util::BodyExt;
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, hyper::Error>>(1);
        let inner = http_body_util::StreamBody::new(rx);
        let (body, watch) = GuardedBody::new(inner, Duration::from_millis(200), false);
        let mut body = body;
        let mut tx = tx;
        use futures::SinkExt;
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .await
            .expect("send");
        let f = body.frame().await.expect("frame").expect("data");
        assert_eq!(f.data_ref().map(|d| d.len()), Some(3));
        assert_eq!(watch.fault(), None);
        // Nothing comes: after 200 ms the body fails, and the watch says why.
        let started = tokio::time::Instant::now();
        let err = body.frame().await.expect("an error frame");
        assert!(matches!(err, Err(BodyLimitError::Idle(_))));
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(watch.fault(), Some(BodyFault::IdleTimeout));
        drop(tx);
    }
}
