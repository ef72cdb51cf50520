//! Replicas send clients' writes to the leader, as Consul's servers forward writes to theirs.
//!
//! Every replica can commit (the store's compare chain keeps them correct), but replicas that
//! commit at once keep refusing each other's batches: each refusal costs etcd a commit, and the
//! chain moves one batch at a time whoever sends it. With the hot writes (KV, txn, catalog
//! register and deregister) sent to the leader, one writer batches them all. The follower has
//! already authenticated the request; it passes it on as it came (the leader checks the token
//! again against the same shared ACL state), and before relaying the answer it waits until its
//! own state holds the leader's write, so a client reading from the follower next sees it. When
//! there is no leader, the leader is this replica, it serves HTTPS (a follower holds no client
//! certificate for it), or it cannot be reached before anything was sent, the follower commits
//! the write itself.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse as _, Response};

use crate::core::Core;

/// Response header on a leader's answer: the store revision of the state it answered from,
/// which the forwarding follower waits for.
pub const REVISION: HeaderName = HeaderName::from_static("x-cairn-store-revision");
/// Request header marking a forwarded request (never forwarded again).
const FORWARDED: HeaderName = HeaderName::from_static("x-cairn-forwarded");

/// How long a forwarded write may take (a KV PUT waits for one etcd commit).
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long the follower waits to see the leader's write before answering anyway.
const SEE_WRITE: Duration = Duration::from_secs(5);

/// Whether a request is one of the writes sent to the leader.
pub fn forwardable(method: &Method, path: &str) -> bool {
    match *method {
        Method::PUT | Method::DELETE if path.starts_with("/v1/kv/") => true,
        Method::PUT | Method::POST if path == "/v1/txn" => true,
        Method::PUT if path == "/v1/catalog/register" || path == "/v1/catalog/deregister" => true,
        _ => false,
    }
}

/// The HTTP client a follower forwards with (plain HTTP between replicas).
pub fn client() -> Option<reqwest::Client> {
    let tls = cairn_client::TlsOptions::default()
        .client_config(false)
        .ok()?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .timeout(TIMEOUT)
        .build()
        .ok()
}

/// Where a request is answered.
pub enum Route {
    /// Here; `stamp`: a replica's answer carries the store revision it reflects.
    Here { stamp: bool },
    /// A follower's write, sent to this leader.
    Leader(String),
}

/// Whether an authenticated request is answered here or sent to the leader.
pub fn route(core: &Core, req: &Request) -> Route {
    if core.forwarder.is_none() {
        return Route::Here { stamp: false };
    }
    let view = core.leadership.view();
    let to_leader = !view.is_self
        && !view.leader.is_empty()
        && !req.headers().contains_key(FORWARDED)
        && forwardable(req.method(), req.uri().path());
    if to_leader {
        Route::Leader(view.leader)
    } else {
        Route::Here { stamp: true }
    }
}

/// Stamps a replica's own answer with the store revision it reflects.
pub fn stamp(core: &Core, resp: &mut Response) {
    if let Some(rev) = core.published_revision() {
        resp.headers_mut().insert(REVISION, HeaderValue::from(rev));
    }
}

/// Sends a follower's write to `leader` and relays its answer; writes it here when the leader
/// cannot be reached before anything was sent.
pub async fn to_leader(
    core: Arc<Core>,
    req: Request,
    leader: String,
    mut router: axum::Router,
) -> Response {
    let Some(forwarder) = core.forwarder.as_ref() else {
        return answer_here(&mut router, req).await;
    };
    let (parts, body) = req.into_parts();
    // The body was read whole before routing (the front door); this only collects it again.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return super::HttpError::bad_request(e.to_string()).into_response(),
    };
    let path_query = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |pq| pq.as_str());
    let url = format!("http://{leader}{path_query}");
    let mut out = forwarder
        .request(parts.method.clone(), &url)
        .header(FORWARDED, "1")
        .body(bytes.clone());
    for name in [
        axum::http::header::CONTENT_TYPE,
        axum::http::header::AUTHORIZATION,
        super::respond::names::TOKEN,
    ] {
        if let Some(v) = parts.headers.get(&name) {
            out = out.header(name, v);
        }
    }
    match out.send().await {
        Ok(answer) => relay(&core, answer).await,
        Err(e) if e.is_connect() => {
            tracing::debug!(leader = %leader, error = %e, "the leader is unreachable; writing here");
            answer_here(&mut router, Request::from_parts(parts, Body::from(bytes))).await
        }
        Err(e) => super::HttpError::internal(format!(
            "forwarding the write to the leader {leader} failed (it may have been applied): {e}"
        ))
        .into_response(),
    }
}

/// The router's answer to a request this replica serves itself.
async fn answer_here(router: &mut axum::Router, req: Request) -> Response {
    match tower_service::Service::call(router, req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// The leader's answer, once this replica's state holds what it answered from.
async fn relay(core: &Core, answer: reqwest::Response) -> Response {
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return super::HttpError::internal(format!("reading the leader's answer: {e}"))
                .into_response();
        }
    };
    if let Some(rev) = headers
        .get(&REVISION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && let Err(why) = core.caught_up_to(rev, SEE_WRITE).await
    {
        tracing::warn!(error = %why, "answering a forwarded write before this replica has it");
    }
    let mut resp = Response::builder().status(status.as_u16());
    for (name, value) in headers.iter() {
        if name != axum::http::header::CONTENT_LENGTH
            && name != axum::http::header::TRANSFER_ENCODING
            && name != axum::http::header::CONNECTION
        {
            resp = resp.header(name.as_str(), value.as_bytes());
        }
    }
    resp.body(Body::from(body)).unwrap_or_else(|e| {
        super::HttpError::internal(format!("relaying the leader's answer: {e}")).into_response()
    })
}
