//! A shared secret guarding routes only trusted peers may call: offerd's agent routes (only a
//! taskrun agent holding the cluster's agent token may register, poll for tasks and report
//! their status) and taskrun's own API. The secret arrives as `Authorization: Bearer TOKEN` or
//! as Consul's `X-Consul-Token`; it is compared in constant time and never logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq as _;

/// `--agent-token`, the same on `offerd serve` and `taskrun agent`.
#[derive(clap::Args, Clone)]
pub struct AgentTokenArgs {
    /// The cluster's agent token: offerd requires it to register, poll for tasks and report
    /// status; a taskrun agent presents it to offerd and requires it on its own API. Without
    /// it any client may act as an agent
    #[arg(
        long,
        env = "CAIRN_AGENT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub agent_token: Option<String>,
}

impl AgentTokenArgs {
    /// The guard it sets (`None`: unset or empty).
    pub fn secret(&self) -> Option<SharedSecret> {
        self.agent_token.as_deref().and_then(SharedSecret::new)
    }
}

impl std::fmt::Debug for AgentTokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.agent_token.as_ref().map(|_| "<hidden>");
        f.debug_struct("AgentTokenArgs")
            .field("agent_token", &shown)
            .finish()
    }
}

/// Consul's token header, which cairn's clients already send.
const CONSUL_TOKEN: &str = "x-consul-token";

/// The token a guarded route requires.
#[derive(Clone)]
pub struct SharedSecret(Arc<[u8]>);

impl SharedSecret {
    /// The secret, or `None` for an empty one (no guard).
    pub fn new(token: &str) -> Option<SharedSecret> {
        (!token.is_empty()).then(|| SharedSecret(token.as_bytes().into()))
    }

    /// Whether the request's headers present this secret.
    pub fn presented_in(&self, headers: &HeaderMap) -> bool {
        presented_token(headers).is_some_and(|t| bool::from(t.ct_eq(&self.0)))
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(<hidden>)")
    }
}

/// The token a request presents: `Authorization: Bearer`, else `X-Consul-Token`.
fn presented_token(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        let scheme = b"bearer ";
        if v.len() > scheme.len() && v[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&v[scheme.len()..]);
        }
    }
    headers.get(CONSUL_TOKEN).map(|v| v.as_bytes())
}

/// Middleware (`axum::middleware::from_fn_with_state`): 401 unless the request presents the
/// secret. The refusal is logged with the method and path, never with what was presented.
pub async fn require_secret(
    State(secret): State<SharedSecret>,
    req: Request,
    next: Next,
) -> Response {
    if secret.presented_in(req.headers()) {
        return next.run(req).await;
    }
    // The peer, so an operator can see (and firewall) who keeps trying.
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    tracing::warn!(%peer, method = %req.method(), path = %req.uri().path(), "refused: no valid token");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({
            "message": "a valid token is required (Authorization: Bearer TOKEN or X-Consul-Token)"
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_tokens() {
        let secret = SharedSecret::new("s3cret").expect("non-empty");
        let cases: [(&[(&str, &str)], bool); 7] = [
            (&[], false),
            (&[("authorization", "Bearer s3cret")], true),
            (&[("authorization", "bearer s3cret")], true),
            (&[("authorization", "Bearer s3cre")], false),
            (&[("authorization", "Basic czNjcmV0")], false),
            (&[("x-consul-token", "s3cret")], true),
            (&[("x-consul-token", "s3cret-and-more")], false),
        ];
        for (headers, want) in cases {
            let mut map = HeaderMap::new();
            for (k, v) in headers {
                map.insert(*k, v.parse().unwrap());
            }
            assert_eq!(secret.presented_in(&map), want, "{headers:?}");
        }
        assert!(SharedSecret::new("").is_none());
        assert_eq!(format!("{secret:?}"), "SharedSecret(<hidden>)");
    }
}
