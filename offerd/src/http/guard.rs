//! Authentication of offerd's routes (see [`crate::auth`]) and the checks handlers make.
//!
//! - [`principals`] wraps every route but `/ping` and the agents': with an auth file, a request
//!   without a principal's valid credentials gets 401 (`WWW-Authenticate: Basic
//!   realm="offerd"`, as Marathon answers), a viewer's write 403; the [`Caller`] is handed to
//!   the handler. Without an auth file every caller is [`Caller::Anyone`].
//! - [`agents`] wraps the agents' routes: with the shared `--agent-token` or `[[agent]]`
//!   tokens, a request without one of them gets 401; the [`AgentIdentity`] is handed on.
//! - Both count failures per peer in the [`cairn_http::FailureLimiter`] and answer a peer past
//!   its limit 429 with `Retry-After`, its credentials not looked at. Refusals are logged with
//!   the peer, method and path; what was presented never is.
//! - Handlers check the app-level rights with [`require_change`], [`require_admin`],
//!   [`require_framework`] and [`require_node`] (403 with Marathon's `{"message"}`, logged
//!   with the principal's name).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiError;
use crate::auth::{Access, AgentIdentity, Authenticated, Caller, is_read};

/// What kind of credentials a refused request carried (logged instead of them).
fn presented_kind(headers: &HeaderMap) -> &'static str {
    if cairn_http::basic_credentials(headers).is_some() {
        "basic"
    } else if cairn_http::presented_token(headers).is_some() {
        "token"
    } else if headers.contains_key(header::AUTHORIZATION) {
        "unreadable"
    } else {
        "none"
    }
}

fn show(peer: Option<SocketAddr>) -> String {
    peer.map(|p| p.to_string()).unwrap_or_default()
}

/// The 429 for a peer past its failure limit, if it is.
fn limited(access: &Access, req: &Request) -> Option<Response> {
    let peer = cairn_http::peer_of(req)?;
    let wait = access.limiter().check(peer.ip()).err()?;
    tracing::warn!(%peer, method = %req.method(), path = %req.uri().path(), retry_after_s = cairn_http::retry_after_secs(wait), "refused: too many failed authentications");
    Some(cairn_http::too_many_failures(wait))
}

/// Counts a refused request against its peer: once per distinct `Authorization` value.
fn count_failure(access: &Access, peer: Option<SocketAddr>, req: &Request) {
    if let Some(p) = peer {
        match req.headers().get(axum::http::header::AUTHORIZATION) {
            Some(credential) => access.limiter().failed_with(p.ip(), credential.as_bytes()),
            None => access.limiter().failed(p.ip()),
        }
    }
}

/// Middleware of the principals' routes.
pub async fn principals(
    State(access): State<Arc<Access>>,
    mut req: Request,
    next: Next,
) -> Response {
    if !access.has_auth_file() {
        req.extensions_mut().insert(Caller::Anyone);
        return next.run(req).await;
    }
    if let Some(refused) = limited(&access, &req) {
        return refused;
    }
    let caller = match access.caller(req.headers()) {
        Authenticated::Yes(caller) => caller,
        Authenticated::No => {
            let peer = cairn_http::peer_of(&req);
            count_failure(&access, peer, &req);
            tracing::warn!(peer = %show(peer), method = %req.method(), path = %req.uri().path(), credentials = presented_kind(req.headers()), "refused: not authenticated");
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"offerd\"")],
                axum::Json(json!({
                    "message": "Not Authenticated: send a principal's token (Authorization: Bearer TOKEN) or its user and password (HTTP Basic)"
                })),
            )
                .into_response();
        }
    };
    if caller.reads_only() && !is_read(req.method()) {
        tracing::warn!(principal = caller.name(), method = %req.method(), path = %req.uri().path(), "refused: a viewer may only read");
        return ApiError::Forbidden(format!(
            "Not Authorized to perform this action: {} is a viewer and may only read",
            caller.name()
        ))
        .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Middleware of the agents' routes.
pub async fn agents(State(access): State<Arc<Access>>, mut req: Request, next: Next) -> Response {
    if !access.agents_guarded() {
        req.extensions_mut().insert(AgentIdentity::AnyNode);
        return next.run(req).await;
    }
    if let Some(refused) = limited(&access, &req) {
        return refused;
    }
    match access.agent(req.headers()) {
        Authenticated::Yes(id) => {
            req.extensions_mut().insert(id);
            next.run(req).await
        }
        Authenticated::No => {
            let peer = cairn_http::peer_of(&req);
            count_failure(&access, peer, &req);
            // The peer, so an operator can see (and firewall) who keeps trying.
            tracing::warn!(peer = %show(peer), method = %req.method(), path = %req.uri().path(), "refused: no valid token");
            cairn_http::token_required()
        }
    }
}

/// A handler's [`Caller`], set by [`principals`]. A route outside that layer has none: 500
/// rather than an open door.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::Internal("no caller: the route is not behind authentication".into())
        })
    }
}

/// An agent handler's [`AgentIdentity`], set by [`agents`].
impl<S: Send + Sync> FromRequestParts<S> for AgentIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AgentIdentity>()
            .cloned()
            .ok_or_else(|| {
                ApiError::Internal(
                    "no agent identity: the route is not behind authentication".into(),
                )
            })
    }
}

fn forbidden(caller: &Caller, what: String) -> ApiError {
    tracing::warn!(principal = caller.name(), refused = %what, "refused: not allowed");
    ApiError::Forbidden(format!(
        "Not Authorized to perform this action: {} may not {what}",
        caller.name()
    ))
}

/// 403 unless the caller may change app `app_id`; `action` says what it tried ("delete").
pub fn require_change(caller: &Caller, app_id: &str, action: &str) -> Result<(), ApiError> {
    if caller.may_change(app_id) {
        return Ok(());
    }
    Err(forbidden(caller, format!("{action} {app_id}")))
}

/// 403 unless the caller is an admin (or there is no auth file).
pub fn require_admin(caller: &Caller, action: &str) -> Result<(), ApiError> {
    if caller.is_admin() {
        return Ok(());
    }
    Err(forbidden(caller, format!("{action} (admins only)")))
}

/// 403 unless the caller may act as framework `name` on the offers API.
pub fn require_framework(caller: &Caller, name: &str) -> Result<(), ApiError> {
    if caller.may_act_as_framework(name) {
        return Ok(());
    }
    Err(forbidden(
        caller,
        format!("act as framework {name} (its tasks are the apps /{name}/...)"),
    ))
}

/// 403 unless the agent may act as node `node` (a node-bound token names one node).
pub fn require_node(id: &AgentIdentity, node: &str) -> Result<(), ApiError> {
    if id.may_act_as(node) {
        return Ok(());
    }
    let bound = match id {
        AgentIdentity::Node(n) => n.as_str(),
        AgentIdentity::AnyNode => "",
    };
    tracing::warn!(
        token_node = bound,
        node,
        "refused: an agent token used for another node"
    );
    Err(ApiError::Forbidden(format!(
        "this agent token belongs to node {bound:?}, not {node:?}"
    )))
}
