//! What every request goes through before and after its route: counting, the `dc` and
//! enterprise checks, the body read whole and bounded, the token resolved into its caller
//! (and the route's right checked), a follower's writes sent to the leader, and on the way back
//! the store revision stamped, errors counted and Consul's default ACL policy header added.
//!
//! A service around the router rather than three `from_fn` layers inside it: a layer boxes its
//! own future, a second boxed `Next` and a route per layer, about 6 KB that a parked blocking
//! query held for its whole wait. Here a request without a body that stays on this replica (every
//! read) costs no allocation: the checks run when the request arrives, and its future is the
//! router's plus what the answer's headers need. Bodies and forwarded writes take a boxed path.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use tower_service::Service;

use super::{
    HttpError, RESTORES, body_limit, closing, forward, guard, local_datacenter, open_source,
    request_token, too_large, with_policy,
};
use crate::core::Core;

/// The router behind the front door (one per process; cloned per connection: two `Arc`s).
#[derive(Clone)]
pub struct Front {
    router: Router,
    core: Arc<Core>,
}

impl Front {
    pub fn new(router: Router, core: Arc<Core>) -> Self {
        Front { router, core }
    }
}

type Boxed = Pin<Box<dyn Future<Output = Response> + Send>>;

/// A request's answer on its way back through the front door.
pub struct FrontFuture {
    stage: Stage,
    core: Arc<Core>,
    /// Stamp the answer with the store revision (a replica's own answer, not a relayed one).
    stamp: bool,
}

enum Stage {
    /// Routed when it arrived: the router's own future, unboxed.
    Routed(RouteFuture<Infallible>),
    /// Answered before routing (a refused request).
    Answered(Option<Response>),
    /// A body read first, or a write sent to the leader.
    Boxed(Boxed),
}

// The router's future is polled in place.
const _: fn() = || {
    fn unpin<T: Unpin>() {}
    unpin::<RouteFuture<Infallible>>();
};

impl Future for FrontFuture {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut resp = match &mut this.stage {
            Stage::Routed(f) => match Pin::new(f).poll(cx) {
                Poll::Ready(Ok(resp)) => resp,
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => return Poll::Pending,
            },
            Stage::Answered(resp) => resp
                .take()
                .expect("a FrontFuture is not polled after it is ready"),
            Stage::Boxed(f) => match f.as_mut().poll(cx) {
                Poll::Ready(resp) => resp,
                Poll::Pending => return Poll::Pending,
            },
        };
        if this.stamp {
            forward::stamp(&this.core, &mut resp);
        }
        Poll::Ready(Ok(finish(&this.core, resp)))
    }
}

/// Every answer: errors counted, Consul's default ACL policy sent.
fn finish(core: &Core, resp: Response) -> Response {
    if resp.status().is_client_error() || resp.status().is_server_error() {
        core.metrics.http_errors.fetch_add(1, Relaxed);
    }
    with_policy(resp, core.acl.config.default_policy)
}

impl Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = FrontFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> FrontFuture {
        let core = self.core.clone();
        core.metrics.http_requests.fetch_add(1, Relaxed);
        let (stage, stamp) = if let Err(e) =
            local_datacenter(&req, &core.config.datacenter).and_then(|()| open_source(&req))
        {
            (Stage::Answered(Some(e.into_response())), false)
        } else if axum::body::HttpBody::size_hint(req.body()).exact() == Some(0) {
            // A request that has no body (most reads) goes through as it is.
            dispatch(&core, &mut self.router, req)
        } else {
            let body = with_body(core.clone(), self.router.clone(), req);
            (Stage::Boxed(Box::pin(body)), false)
        };
        FrontFuture { stage, core, stamp }
    }
}

/// A request with its body read (or without one): authenticated, then routed here or sent to
/// the leader. Returns the stage and whether its answer is stamped with the store revision.
fn dispatch(core: &Arc<Core>, router: &mut Router, mut req: Request) -> (Stage, bool) {
    if let Some(refused) = authenticate(core, &mut req) {
        return (Stage::Answered(Some(refused)), false);
    }
    match forward::route(core, &req) {
        forward::Route::Here { stamp } => (Stage::Routed(router.call(req)), stamp),
        forward::Route::Leader(leader) => {
            let sent = forward::to_leader(core.clone(), req, leader, router.clone());
            (Stage::Boxed(Box::pin(sent)), false)
        }
    }
}

/// How far over its limit a declared body may be and still be read (and dropped) before its
/// 413, so that the client sees the answer rather than a reset.
const DRAIN_BEFORE_REFUSING: u64 = 1024 * 1024;

/// Reads a request's body whole before routing: a handler that answers without reading the
/// body (a GET with one, a 404, a 405) would otherwise make hyper drop the keep-alive
/// connection under a pooled client's next request.
async fn with_body(core: Arc<Core>, mut router: Router, req: Request) -> Response {
    let limit = body_limit(req.uri().path());
    // Refused when the declared length says so. A body not far over the limit is read and
    // dropped first: the client is still sending it, and a socket closed with unread bytes
    // answers them with a reset that can destroy the 413 before the client reads it (Go's
    // server drains the same way). A larger one is refused unread.
    let declared = axum::body::HttpBody::size_hint(req.body()).exact();
    if let (Some((max, setting)), Some(len)) = (limit, declared)
        && len > max as u64
    {
        if len <= max as u64 + DRAIN_BEFORE_REFUSING {
            // Whatever happens to the rest of the body (the client gone, the server's
            // bounds), the answer is the 413.
            let _ = axum::body::to_bytes(req.into_body(), len as usize).await;
        }
        return closing(too_large(Some(len), max, setting));
    }
    // A closed semaphore cannot happen (it is never closed); going on unbounded is harmless.
    let _restore = match limit {
        None => RESTORES.acquire().await.ok(),
        Some(_) => None,
    };
    let (parts, body) = req.into_parts();
    let max = limit.map_or(usize::MAX, |(max, _)| max);
    let bytes = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(e) => {
            let e = e.into_inner();
            let resp = match limit {
                Some((max, setting))
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some() =>
                {
                    too_large(None, max, setting)
                }
                // A body refused by the server's bounds (answered 408/413 by the serving loop)
                // or a client gone mid-body.
                _ => HttpError::bad_request(format!("request body unreadable: {e}")),
            };
            return closing(resp);
        }
    };
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    let (stage, stamp) = dispatch(&core, &mut router, req);
    let mut resp = match stage {
        Stage::Routed(f) => match f.await {
            Ok(resp) => resp,
            Err(never) => match never {},
        },
        Stage::Answered(resp) => resp.expect("an answer"),
        Stage::Boxed(f) => f.await,
    };
    if stamp {
        forward::stamp(&core, &mut resp);
    }
    resp
}

/// Resolves the request's token (`X-Consul-Token`, `Authorization: Bearer`, or `?token=`)
/// into the [`Caller`](crate::acl::Caller) handlers check rights against; an unknown or expired
/// token is refused here with Consul's "ACL not found" (the refusal is returned).
fn authenticate(core: &Core, req: &mut Request) -> Option<Response> {
    let secret = request_token(req);
    let peer = cairn_http::peer_of(req);
    // A peer that keeps presenting new unknown tokens is answered 429 without its token being
    // looked at, so guessing costs it time (only while ACLs are on: otherwise tokens are not
    // checked at all). One token retried counts once: a daemon started before its token was
    // created does not lock its host out.
    if core.acl.enabled()
        && secret.is_some()
        && let Some(p) = peer
        && let Err(wait) = core.auth_failures.check(p.ip())
    {
        let secs = cairn_http::retry_after_secs(wait);
        let mut resp = HttpError {
            status: axum::http::StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "too many requests with unknown ACL tokens from this address; retry in {secs}s"
            ),
        }
        .into_response();
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs.into());
        return Some(resp);
    }
    let st = core.current.load();
    match core.acl.resolve(&st, secret.as_deref()) {
        Ok(caller) => {
            if caller.enforced {
                let node = &core.config.node;
                let right = guard::required(req.method(), req.uri().path(), node, &st);
                if let Err(e) = guard::check(&caller, &right, node, &st) {
                    return Some(e.into_response());
                }
            }
            drop(st);
            req.extensions_mut().insert(caller);
            None
        }
        Err(e) => {
            if secret.is_some() {
                let from = peer.map(|p| p.to_string()).unwrap_or_default();
                tracing::warn!(peer = %from, method = %req.method(), path = %req.uri().path(), "request with an unknown ACL token refused");
                if let (Some(p), Some(secret)) = (peer, &secret) {
                    core.auth_failures.failed_with(p.ip(), secret.as_bytes());
                }
            }
            Some(e.into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use axum::body::Body;
    use axum::http::{Method, StatusCode, header};
    use futures::FutureExt as _;

    use super::*;
    use crate::core::Catalog;
    use crate::http::respond::names;
    use crate::test_support::config;

    fn request(method: Method, uri: &str, body: impl Into<Body>) -> Request {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(body.into())
            .expect("a request")
    }

    async fn answer(front: &mut Front, req: Request) -> Response {
        match front.call(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }

    fn index_of(resp: &Response) -> u64 {
        resp.headers()[names::INDEX]
            .to_str()
            .expect("ASCII")
            .parse()
            .expect("a number")
    }

    /// A blocking read parked behind the front door answers when its key changes, not when
    /// another does, with Consul's headers; every answer carries the default ACL policy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parked_read_wakes_on_its_key_only_with_every_header() {
        let c = Catalog::start(config("server")).await.expect("catalog");
        let mut front = super::super::app(c.core.clone());
        let put = answer(&mut front, request(Method::PUT, "/v1/kv/watched", "v1")).await;
        assert_eq!(put.status(), StatusCode::OK);
        let read = answer(
            &mut front,
            request(Method::GET, "/v1/kv/watched", Body::empty()),
        )
        .await;
        assert_eq!(read.status(), StatusCode::OK);
        let index = index_of(&read);

        let uri = format!("/v1/kv/watched?index={index}&wait=60s");
        let mut parked = front.call(request(Method::GET, &uri, Body::empty()));
        assert!((&mut parked).now_or_never().is_none(), "the read parks");
        assert_eq!(c.core.metrics.blocking_waiting.load(Relaxed), 1);

        // Another key's write is applied and published before its answer: the parked read was
        // not woken, and polling it again finds nothing new.
        let other = answer(&mut front, request(Method::PUT, "/v1/kv/other", "x")).await;
        assert_eq!(other.status(), StatusCode::OK);
        assert!(
            (&mut parked).now_or_never().is_none(),
            "another key's write"
        );

        let put = answer(&mut front, request(Method::PUT, "/v1/kv/watched", "v2")).await;
        assert_eq!(put.status(), StatusCode::OK);
        let woken = parked.await.expect("an answer");
        assert_eq!(woken.status(), StatusCode::OK);
        assert!(index_of(&woken) > index);
        assert_eq!(woken.headers()[names::DEFAULT_ACL_POLICY], "allow");
        assert_eq!(woken.headers()[names::KNOWN_LEADER], "true");
        let body = axum::body::to_bytes(woken.into_body(), usize::MAX)
            .await
            .expect("a body");
        let pairs: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(pairs[0]["Key"], "watched");
        assert_eq!(pairs[0]["Value"], "djI=", "v2, base64");
        assert_eq!(c.core.metrics.blocking_waiting.load(Relaxed), 0);
        drop(front);
        c.stop().await;
    }

    /// Refusals before routing, bodies read and bounded, unknown paths: each counted once as a
    /// request and, when it is one, as an error, and each with the default ACL policy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_answer_is_counted_and_carries_the_policy() {
        let c = Catalog::start(config("server")).await.expect("catalog");
        let m = &c.core.metrics;
        let mut front = super::super::app(c.core.clone());
        let (requests, errors) = (m.http_requests.load(Relaxed), m.http_errors.load(Relaxed));
        let cases = [
            (
                request(Method::GET, "/v1/kv/k?dc=elsewhere", Body::empty()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                request(Method::PUT, "/v1/kv/k?ns=team", "v"),
                StatusCode::BAD_REQUEST,
            ),
            (
                request(Method::GET, "/v1/no/such/endpoint", Body::empty()),
                StatusCode::NOT_FOUND,
            ),
            (
                request(
                    Method::PUT,
                    "/v1/kv/big",
                    vec![b'x'; cairn_wire::MAX_KV_VALUE + 1],
                ),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (request(Method::PUT, "/v1/kv/k", "v"), StatusCode::OK),
            (
                request(Method::GET, "/v1/kv/k", Body::empty()),
                StatusCode::OK,
            ),
        ];
        let n = cases.len() as u64;
        let mut failed = 0;
        for (req, status) in cases {
            let what = format!("{} {}", req.method(), req.uri());
            let resp = answer(&mut front, req).await;
            assert_eq!(resp.status(), status, "{what}");
            assert_eq!(resp.headers()[names::DEFAULT_ACL_POLICY], "allow", "{what}");
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                assert_eq!(resp.headers()[header::CONNECTION], "close", "{what}");
            }
            failed += u64::from(status != StatusCode::OK);
        }
        assert_eq!(m.http_requests.load(Relaxed) - requests, n);
        assert_eq!(m.http_errors.load(Relaxed) - errors, failed);
        drop(front);
        c.stop().await;
    }
}
