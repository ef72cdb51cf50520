//! One connection: hyper's HTTP/1 connection over the application's service, each request's
//! body under [`BodyBounds`], the idle timeout ([`crate::idle`]), and the connection's part in a
//! graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, header};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::Limits;
use crate::body::{BodyBounds, GuardedBody, Refusal, Verdict};
use crate::idle::{self, Activity, InFlight, TrackedBody};

/// What the application gives for one connection: an axum service (a `Router`, or a wrapper of
/// one that knows the peer). It is called without `poll_ready`, as hyper services are: it must
/// always be ready, as axum's routers are.
pub trait AppService:
    Service<Request<Body>, Response = Response, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<S> AppService for S where
    S: Service<Request<Body>, Response = Response, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// The connection settings every connection shares. hyper's own header-read timeout is off:
/// each connection's idle watchdog bounds slow heads and idle keep-alive instead.
pub(crate) fn builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    b.header_read_timeout(None).keep_alive(true);
    b
}

/// Serves one accepted connection until it ends, holding its slot under the cap.
pub(crate) async fn run<S: AppService, T>(
    builder: Arc<http1::Builder>,
    stream: T,
    service: ConnService<S>,
    slot: OwnedSemaphorePermit,
    graceful: CancellationToken,
    hard: CancellationToken,
) where
    // A TCP stream, or a TLS stream over one (crate::tls).
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let idle_timeout = service.idle_timeout;
    let activity = service.activity.clone();
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        // Dropping the connection closes it.
        () = idle::idle_for(&activity, idle_timeout) => Ok(()),
        () = graceful.cancelled() => {
            // Idle connections close now; a request in progress is answered first.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                () = hard.cancelled() => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and malformed requests are the client's business.
        tracing::debug!(error = %e, "connection ended");
    }
    drop(slot);
}

/// The hyper service of one connection: bounds each request's body, answers a refused
/// body's request with 413 or 408 and `Connection: close`, and keeps each request in flight
/// for the idle watchdog until its response body ends.
pub(crate) struct ConnService<S> {
    app: S,
    /// The client's address, handed to the application as axum's `ConnectInfo` on each request.
    peer: std::net::SocketAddr,
    bounds: BodyBounds,
    idle_timeout: Duration,
    activity: Arc<Activity>,
}

impl<S> ConnService<S> {
    pub(crate) fn new(app: S, peer: std::net::SocketAddr, limits: &Limits) -> Self {
        ConnService {
            app,
            peer,
            bounds: limits.body,
            idle_timeout: limits.idle_timeout,
            activity: Activity::new(),
        }
    }
}

type Answer = Result<Response<TrackedBody>, Infallible>;

impl<S: AppService> hyper::service::Service<Request<Incoming>> for ConnService<S> {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Either<std::future::Ready<Answer>, Respond<S::Future>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let bounds = self.bounds;
        let in_flight = self.activity.begin();
        // A declared length past the cap is refused before a byte of the body is read.
        if req.body().size_hint().lower() > bounds.max_bytes {
            let resp = refused(Refusal::TooLarge(bounds.max_bytes));
            return Either::Left(std::future::ready(Ok(tracked(resp, in_flight))));
        }
        // Requests without a body (most reads) go through as they are.
        let (req, verdict) = if req.body().is_end_stream() {
            (req.map(Body::new), None)
        } else {
            let verdict = Arc::new(Verdict::default());
            let guarded = req.map(|b| Body::new(GuardedBody::new(b, bounds, verdict.clone())));
            (guarded, Some(verdict))
        };
        // As tower's services are called: a fresh clone per request (a Router is an Arc).
        let mut app = self.app.clone();
        Either::Right(Respond {
            inner: app.call(req),
            verdict,
            bounds,
            in_flight: Some(in_flight),
        })
    }
}

pin_project_lite::pin_project! {
    /// The application's answer, unless the request's body was refused.
    pub struct Respond<F> {
        #[pin]
        inner: F,
        verdict: Option<Arc<Verdict>>,
        bounds: BodyBounds,
        in_flight: Option<InFlight>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Respond<F> {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Poll::Ready(Ok(resp)) = this.inner.poll(cx) else {
            return Poll::Pending;
        };
        let refusal = this.verdict.as_ref().and_then(|v| v.refusal(this.bounds));
        let resp = match refusal {
            Some(refusal) => refused(refusal),
            None => resp,
        };
        let in_flight = this
            .in_flight
            .take()
            .expect("a Respond future is not polled after it is ready");
        Poll::Ready(Ok(tracked(resp, in_flight)))
    }
}

/// The response with its body holding the request in flight.
fn tracked(resp: Response, in_flight: InFlight) -> Response<TrackedBody> {
    resp.map(|body| TrackedBody::new(body, in_flight))
}

/// The answer to a refused body: the status, the reason as plain text, and the connection
/// closed (the rest of the body is never read).
fn refused(refusal: Refusal) -> Response {
    let mut resp = (refusal.status(), format!("{refusal}\n")).into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}
