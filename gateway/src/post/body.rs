//! The two streams of a POST object: the request body shared between the form parser and the
//! drain that follows the answer ([`SharedBody`], bounded before the file), and the file's
//! data as the write path reads it ([`FileStream`], failing below the policy's minimum).

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http_body_util::BodyDataStream;

/// Why the file's stream failed, where the write path only sees a failed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFailure {
    /// It ended below the policy's minimum size.
    TooSmall,
    /// The form broke inside the file (not a body that stopped coming).
    Malformed,
}

/// Tells, after the write, how a [`FileStream`] failed.
pub struct FileOutcome(Arc<OnceLock<FileFailure>>);

impl FileOutcome {
    pub fn failure(&self) -> Option<FileFailure> {
        self.0.get().copied()
    }
}

/// The file's data as the write path reads it. Its end is an error when the file is smaller
/// than the policy allows, so the write fails before any commit. The maximum is the write
/// path's own `max_size`.
pub struct FileStream {
    field: multer::Field<'static>,
    bytes: u64,
    min_bytes: u64,
    failure: Arc<OnceLock<FileFailure>>,
}

impl FileStream {
    pub fn new(field: multer::Field<'static>, min_bytes: u64) -> (Self, FileOutcome) {
        let failure = Arc::new(OnceLock::new());
        let outcome = FileOutcome(Arc::clone(&failure));
        let stream = FileStream {
            field,
            bytes: 0,
            min_bytes,
            failure,
        };
        (stream, outcome)
    }
}

impl Stream for FileStream {
    type Item = Result<Bytes, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.field).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.bytes += chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                // A body that stopped coming is an incomplete body; anything else a bad form.
                if !matches!(e, multer::Error::StreamReadFailed(_)) {
                    let _ = this.failure.set(FileFailure::Malformed);
                }
                Poll::Ready(Some(Err(e.to_string())))
            }
            Poll::Ready(None) if this.bytes < this.min_bytes => {
                let _ = this.failure.set(FileFailure::TooSmall);
                // Once: the write path stops at the first error.
                this.min_bytes = 0;
                Poll::Ready(Some(Err(format!(
                    "file of {} bytes is below the policy's minimum",
                    this.bytes
                ))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The request body, shared between multer (which owns a clone while the form is read) and
/// the listener (which drains what is left). Until [`SharedBody::lift_limit`], reading more
/// than `limit_bytes` is an error. The lock is only taken inside a poll, never held across
/// one, and the two users take turns, so it is never contended.
pub struct SharedBody<B>(Arc<Mutex<BodyState<B>>>);

impl<B> Clone for SharedBody<B> {
    fn clone(&self) -> Self {
        SharedBody(Arc::clone(&self.0))
    }
}

struct BodyState<B> {
    data: BodyDataStream<B>,
    read_bytes: u64,
    limit_bytes: u64,
    over_limit: bool,
}

impl<B> SharedBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(body: B, limit_bytes: u64) -> Self {
        SharedBody(Arc::new(Mutex::new(BodyState {
            data: BodyDataStream::new(body),
            read_bytes: 0,
            limit_bytes,
            over_limit: false,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BodyState<B>> {
        self.0.lock().expect("request body lock poisoned")
    }

    pub fn lift_limit(&self) {
        self.state().limit_bytes = u64::MAX;
    }

    /// Whether reading stopped at the limit.
    pub fn over_limit(&self) -> bool {
        self.state().over_limit
    }

    /// Reads the rest of the body and drops it, for at most `linger`; true if it ended.
    pub async fn drain(&self, linger: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + linger;
        loop {
            let next = std::future::poll_fn(|cx| Pin::new(&mut self.state().data).poll_next(cx));
            match tokio::time::timeout_at(deadline, next).await {
                Ok(None) => return true,
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Err(_) => return false,
            }
        }
    }
}

impl<B> Stream for SharedBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = self.state();
        let state = &mut *state;
        if state.over_limit {
            return Poll::Ready(Some(Err(std::io::Error::other("form too large"))));
        }
        match Pin::new(&mut state.data).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                state.read_bytes += chunk.len() as u64;
                if state.read_bytes > state.limit_bytes {
                    state.over_limit = true;
                    return Poll::Ready(Some(Err(std::io::Error::other("form too large"))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
