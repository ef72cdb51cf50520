//! A request body with bounds: a size cap, a stall timeout (no bytes for a while) and a
//! whole-body deadline. The first bound crossed ends the body with an error the handler sees as
//! any read error, and is recorded in a [`Verdict`] the serving loop reads to answer 413 or 408
//! itself and close the connection, whatever the handler made of the error.
//!
//! A body that arrives with its head (most small writes) never starts a timer nor reads the
//! clock: both happen only when the body has to wait for the client.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The bounds on one request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyBounds {
    /// Most bytes a body may have.
    pub max_bytes: u64,
    /// Longest wait for the next bytes.
    pub stall: Duration,
    /// Longest time for the whole body, from its first wait.
    pub total: Duration,
}

/// Why a body was cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    #[error("request body stalled: no bytes for {0:?}")]
    Stalled(Duration),
    #[error("request body not complete within {0:?}")]
    TooSlow(Duration),
}

impl Refusal {
    /// 413 for a body too large, 408 for one too slow.
    pub fn status(self) -> http::StatusCode {
        match self {
            Refusal::TooLarge(_) => http::StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Stalled(_) | Refusal::TooSlow(_) => http::StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn code(self) -> u8 {
        match self {
            Refusal::TooLarge(_) => 1,
            Refusal::Stalled(_) => 2,
            Refusal::TooSlow(_) => 3,
        }
    }
}

/// What became of one request's body, shared between the body and the serving loop.
#[derive(Debug, Default)]
pub struct Verdict(AtomicU8);

impl Verdict {
    fn set(&self, refusal: Refusal) {
        self.0.store(refusal.code(), Ordering::Relaxed);
    }

    /// The refusal, if the body was refused.
    pub fn refusal(&self, bounds: &BodyBounds) -> Option<Refusal> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(Refusal::TooLarge(bounds.max_bytes)),
            2 => Some(Refusal::Stalled(bounds.stall)),
            3 => Some(Refusal::TooSlow(bounds.total)),
            _ => None,
        }
    }
}

/// A body read failed: refused by its bounds, or the connection failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("reading the request body: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A body `B` under [`BodyBounds`].
pub struct GuardedBody<B> {
    inner: B,
    bounds: BodyBounds,
    verdict: Arc<Verdict>,
    read: u64,
    refused: Option<Refusal>,
    /// When the body first had to wait (the whole-body deadline counts from there).
    started: Option<Instant>,
    /// When bytes last came, as seen at the wait after them.
    last_progress: Option<Instant>,
    /// Bytes came since the last wait.
    progressed: bool,
    /// The next deadline, made at the first wait and moved after.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> GuardedBody<B> {
    pub fn new(inner: B, bounds: BodyBounds, verdict: Arc<Verdict>) -> Self {
        GuardedBody {
            inner,
            bounds,
            verdict,
            read: 0,
            refused: None,
            started: None,
            last_progress: None,
            progressed: false,
            timer: None,
        }
    }

    fn refuse<T>(&mut self, refusal: Refusal) -> Poll<Option<Result<T, BodyError>>> {
        self.refused = Some(refusal);
        self.verdict.set(refusal);
        // The timer's slot in the runtime goes now, not when the handler drops the body.
        self.timer = None;
        Poll::Ready(Some(Err(BodyError::Refused(refusal))))
    }

    /// The client has sent nothing new: arm the nearer of the stall and whole-body deadlines.
    fn wait<T>(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, BodyError>>> {
        let now = Instant::now();
        let started = *self.started.get_or_insert(now);
        if self.progressed || self.last_progress.is_none() {
            self.last_progress = Some(now);
            self.progressed = false;
        }
        let stall_at = self.last_progress.unwrap_or(now) + self.bounds.stall;
        let total_at = started + self.bounds.total;
        let (deadline, refusal) = if stall_at < total_at {
            (stall_at, Refusal::Stalled(self.bounds.stall))
        } else {
            (total_at, Refusal::TooSlow(self.bounds.total))
        };
        if now >= deadline {
            return self.refuse(refusal);
        }
        let timer = match &mut self.timer {
            Some(timer) => {
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        if timer.as_mut().poll(cx).is_ready() {
            return self.refuse(refusal);
        }
        Poll::Pending
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(refusal) = this.refused {
            return Poll::Ready(Some(Err(BodyError::Refused(refusal))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len() as u64);
                    if this.read > this.bounds.max_bytes {
                        return this.refuse(Refusal::TooLarge(this.bounds.max_bytes));
                    }
                }
                this.progressed = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Read(e.into())))),
            Poll::Ready(None) => {
                this.timer = None;
                Poll::Ready(None)
            }
            Poll::Pending => this.wait(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.refused.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Chunk, channel_body};
    use http_body_util::BodyExt;

    const BOUNDS: BodyBounds = BodyBounds {
        max_bytes: 10,
        stall: Duration::from_secs(2),
        total: Duration::from_secs(5),
    };

    fn data(n: usize) -> Chunk {
        Ok(Frame::data(Bytes::from(vec![b'x'; n])))
    }

    #[tokio::test]
    async fn a_body_within_bounds_is_read_whole() {
        let (tx, body) = channel_body();
        let verdict = Arc::new(Verdict::default());
        tx.send(data(4)).await.unwrap();
        tx.send(data(6)).await.unwrap();
        drop(tx);
        let guarded = GuardedBody::new(body, BOUNDS, verdict.clone());
        let bytes = guarded.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 10);
        assert_eq!(verdict.refusal(&BOUNDS), None);
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_as_too_large() {
        let (tx, body) = channel_body();
        let verdict = Arc::new(Verdict::default());
        tx.send(data(6)).await.unwrap();
        tx.send(data(6)).await.unwrap();
        let guarded = GuardedBody::new(body, BOUNDS, verdict.clone());
        let err = guarded.collect().await.unwrap_err();
        assert!(
            matches!(err, BodyError::Refused(Refusal::TooLarge(10))),
            "{err}"
        );
        assert_eq!(verdict.refusal(&BOUNDS), Some(Refusal::TooLarge(10)));
        assert_eq!(Refusal::TooLarge(10).status(), 413);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_refused_after_the_stall_timeout() {
        let (tx, body) = channel_body();
        let verdict = Arc::new(Verdict::default());
        tx.send(data(1)).await.unwrap();
        let guarded = GuardedBody::new(body, BOUNDS, verdict.clone());
        let started = Instant::now();
        let err = guarded.collect().await.unwrap_err();
        assert!(
            matches!(err, BodyError::Refused(Refusal::Stalled(_))),
            "{err}"
        );
        assert_eq!(started.elapsed(), BOUNDS.stall);
        assert_eq!(Refusal::Stalled(BOUNDS.stall).status(), 408);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_is_refused_at_the_whole_body_deadline() {
        let (tx, body) = channel_body();
        let verdict = Arc::new(Verdict::default());
        let bounds = BodyBounds {
            max_bytes: 1000,
            ..BOUNDS
        };
        // One byte a second: never stalled, never complete.
        let feeder = tokio::spawn(async move {
            while tx.send(data(1)).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let guarded = GuardedBody::new(body, bounds, verdict.clone());
        let started = Instant::now();
        let err = guarded.collect().await.unwrap_err();
        assert!(
            matches!(err, BodyError::Refused(Refusal::TooSlow(_))),
            "{err}"
        );
        assert_eq!(
            verdict.refusal(&bounds),
            Some(Refusal::TooSlow(bounds.total))
        );
        assert!(started.elapsed() >= bounds.total);
        feeder.abort();
    }
}
