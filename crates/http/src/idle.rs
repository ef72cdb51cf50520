//! The idle timeout of one connection, kept by a watchdog that sleeps for the whole timeout
//! and looks at the connection only when it wakes.
//!
//! A connection is busy from the moment its request is handed to the application until the
//! response's body is done with (a blocking query, a followed log or an event stream may take
//! far longer than the timeout); otherwise it is idle since its last response ended, or since
//! it was accepted. An idle connection past the timeout is closed, which bounds both a client
//! that never finishes its request head and a kept-alive connection nobody uses.
//!
//! Why not hyper's header-read timeout: hyper arms it afresh each time it starts reading a
//! head, that is after every answer. When a write wakes 10,000 parked blocking queries, that
//! is 10,000 timers inserted at once in the same instant, measurably delaying the answers.
//! Here an answer costs two atomic updates and a clock read; the timer moves once per timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// What the watchdog of one connection reads: requests in flight and when the last one ended.
#[derive(Debug)]
pub(crate) struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    /// When the connection last became idle, in milliseconds since `accepted`.
    idle_since_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn end(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.idle_since_ms.store(ms, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Since when the connection has been idle, or `None` while a request is in flight.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let ms = self.idle_since_ms.load(Ordering::Relaxed);
        Some(self.accepted + Duration::from_millis(ms))
    }
}

/// One request in flight on a connection; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Resolves once the connection has been idle for `timeout`.
pub(crate) async fn idle_for(activity: &Activity, timeout: Duration) {
    let mut deadline = activity.accepted + timeout;
    loop {
        tokio::time::sleep_until(deadline).await;
        match activity.idle_since() {
            // Busy: look again a whole timeout later (it can only become idle after now).
            None => deadline = Instant::now() + timeout,
            Some(since) if since + timeout <= Instant::now() => return,
            Some(since) => deadline = since + timeout,
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until it has ended or is dropped.
    pub struct TrackedBody {
        #[pin]
        inner: axum::body::Body,
        in_flight: Option<InFlight>,
    }
}

impl TrackedBody {
    pub(crate) fn new(inner: axum::body::Body, in_flight: InFlight) -> TrackedBody {
        TrackedBody {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = frame {
            // The body is done with even if hyper keeps the value a while longer.
            this.in_flight.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    const TIMEOUT: Duration = Duration::from_secs(90);

    /// Whether the watchdog fired within `within` from now (time is paused: it advances only
    /// as timers are due).
    async fn fires_within(activity: &Activity, within: Duration) -> bool {
        tokio::time::timeout(within, idle_for(activity, TIMEOUT))
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn an_untouched_connection_is_idle_from_its_accept() {
        let activity = Activity::new();
        let started = Instant::now();
        idle_for(&activity, TIMEOUT).await;
        assert_eq!(started.elapsed(), TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_idle() {
        let activity = Activity::new();
        let request = activity.begin();
        assert!(!fires_within(&activity, TIMEOUT * 10).await);
        drop(request);
        // Idle from the end of the request: the whole timeout again.
        let ended = Instant::now();
        idle_for(&activity, TIMEOUT).await;
        assert!(ended.elapsed() >= TIMEOUT, "{:?}", ended.elapsed());
        assert!(ended.elapsed() < TIMEOUT * 2, "{:?}", ended.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_counts_from_the_last_answer() {
        let activity = Activity::new();
        tokio::time::advance(Duration::from_secs(60)).await;
        drop(activity.begin());
        // 60 s after the accept the connection answered: 90 s from then, not 30.
        assert!(!fires_within(&activity, Duration::from_secs(89)).await);
        assert!(fires_within(&activity, Duration::from_secs(2)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn pipelined_requests_keep_the_connection_busy_until_the_last_ends() {
        let activity = Activity::new();
        let first = activity.begin();
        let second = activity.begin();
        drop(first);
        assert!(!fires_within(&activity, TIMEOUT * 3).await);
        drop(second);
        assert!(fires_within(&activity, TIMEOUT * 2).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_body_is_in_flight_until_it_ends() {
        let activity = Activity::new();
        let (tx, stream) = crate::testing::channel_body();
        let mut body = TrackedBody::new(axum::body::Body::new(stream), activity.begin());
        tx.send(Ok(Frame::data(Bytes::from_static(b"line\n"))))
            .await
            .expect("send");
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(frame.into_data().expect("data"), "line\n");
        // Streaming, with nothing sent for three timeouts: still busy.
        assert!(!fires_within(&activity, TIMEOUT * 3).await);
        drop(tx);
        assert!(body.frame().await.is_none(), "the stream ended");
        // Ended though not yet dropped: idle from here.
        assert!(fires_within(&activity, TIMEOUT * 2).await);
        drop(body);
    }
}
