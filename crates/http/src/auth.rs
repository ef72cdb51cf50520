//! A shared secret guarding routes only trusted peers may call: offerd's agent routes (only a
//! taskrun agent holding the cluster's agent token may register, poll for tasks and report
//! their status) and taskrun's own API. The secret arrives as `Authorization: Bearer TOKEN`, as
//! `Authorization: token=TOKEN` (what DC/OS and the `marathon` Python client send) or as
//! Consul's `X-Consul-Token`; it is compared in constant time and never logged.
//!
//! Failed attempts are counted per peer by a [`FailureLimiter`]: past its limit a peer is
//! answered 429 with `Retry-After` without its token being looked at. The helpers here (the
//! presented token, HTTP Basic credentials, the peer, the 429 answer) are shared with offerd's
//! principals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq as _;

use crate::ratelimit::FailureLimiter;

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

/// A secret (a token, a password): compared in constant time, never shown (`Debug` is
/// `<hidden>`).
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    pub fn new(secret: &str) -> Secret {
        Secret(secret.as_bytes().into())
    }

    /// Whether `presented` is this secret (constant time for equal lengths).
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(presented.ct_eq(&self.0))
    }

    /// Whether both are the same secret (constant time).
    pub fn same_as(&self, other: &Secret) -> bool {
        self.matches(&other.0)
    }

    /// The secret itself, to present it to a peer (offerd reading a task's log from its
    /// agent with the agent token); never to show.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// The token a guarded route requires, with the failure counts of those presenting it.
#[derive(Clone)]
pub struct SharedSecret {
    token: Secret,
    limiter: Arc<FailureLimiter>,
}

impl SharedSecret {
    /// The secret, or `None` for an empty one (no guard). Failures are limited by a
    /// [`FailureLimiter::default`] of its own.
    pub fn new(token: &str) -> Option<SharedSecret> {
        (!token.is_empty()).then(|| SharedSecret {
            token: Secret::new(token),
            limiter: Arc::default(),
        })
    }

    /// The same secret counting failures in `limiter` (shared with other guards).
    pub fn with_limiter(self, limiter: Arc<FailureLimiter>) -> SharedSecret {
        SharedSecret { limiter, ..self }
    }

    /// Where failed attempts are counted.
    pub fn limiter(&self) -> &Arc<FailureLimiter> {
        &self.limiter
    }

    /// Whether the request's headers present this secret.
    pub fn presented_in(&self, headers: &HeaderMap) -> bool {
        presented_token(headers).is_some_and(|t| self.matches(t))
    }

    /// Whether `token` is this secret (constant time).
    pub fn matches(&self, token: &[u8]) -> bool {
        self.token.matches(token)
    }

    /// The secret, to present it to a peer (see [`Secret::expose`]).
    pub fn secret(&self) -> &Secret {
        &self.token
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(<hidden>)")
    }
}

/// The token a request presents: `Authorization: Bearer TOKEN` or `Authorization: token=TOKEN`
/// (DC/OS's form, sent by the `marathon` Python client's `auth_token`), else `X-Consul-Token`.
pub fn presented_token(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        for scheme in [&b"bearer "[..], &b"token="[..]] {
            if v.len() > scheme.len() && v[..scheme.len()].eq_ignore_ascii_case(scheme) {
                return Some(&v[scheme.len()..]);
            }
        }
    }
    headers.get(CONSUL_TOKEN).map(|v| v.as_bytes())
}

/// HTTP Basic credentials (`Authorization: Basic base64(user:password)`). Its `Debug` hides
/// the password.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// The HTTP Basic credentials a request presents, if any (and well formed: base64 of UTF-8
/// `user:password`, the user without a colon, as RFC 7617 says).
pub fn basic_credentials(headers: &HeaderMap) -> Option<BasicCredentials> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = b"basic ";
    if v.len() <= scheme.len() || !v[..scheme.len()].eq_ignore_ascii_case(scheme) {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(v[scheme.len()..].trim_ascii())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(BasicCredentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// The peer of a request (cairn-http hands it to every request as axum's `ConnectInfo`).
pub fn peer_of(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// A wait in whole seconds, rounded up (as `Retry-After` gives it).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// 429 for a peer refused by a [`FailureLimiter`]: `Retry-After` in whole seconds (rounded
/// up), a JSON `{"message"}` body.
pub fn too_many_failures(wait: Duration) -> Response {
    let secs = retry_after_secs(wait);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.to_string())],
        axum::Json(serde_json::json!({
            "message": format!(
                "too many failed authentications from this address; retry in {secs}s"
            )
        })),
    )
        .into_response()
}

/// Middleware (`axum::middleware::from_fn_with_state`): 401 unless the request presents the
/// secret; 429 (the token not looked at) for a peer past its failure limit. The refusal is
/// logged with the peer, method and path, never with what was presented.
pub async fn require_secret(
    State(secret): State<SharedSecret>,
    req: Request,
    next: Next,
) -> Response {
    let peer = peer_of(&req);
    if let Some(p) = peer
        && let Err(wait) = secret.limiter.check(p.ip())
    {
        tracing::warn!(peer = %p, method = %req.method(), path = %req.uri().path(), retry_after_s = retry_after_secs(wait), "refused: too many failed authentications");
        return too_many_failures(wait);
    }
    if secret.presented_in(req.headers()) {
        return next.run(req).await;
    }
    if let Some(p) = peer {
        // Once per distinct credential: an agent retrying a stale token counts once.
        match presented_token(req.headers()) {
            Some(token) => secret.limiter.failed_with(p.ip(), token),
            None => secret.limiter.failed(p.ip()),
        }
    }
    // The peer, so an operator can see (and firewall) who keeps trying.
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    tracing::warn!(%peer, method = %req.method(), path = %req.uri().path(), "refused: no valid token");
    token_required()
}

/// 401 for a request without a valid token (`WWW-Authenticate: Bearer`).
pub fn token_required() -> Response {
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

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn presented_tokens() {
        let secret = SharedSecret::new("s3cret").expect("non-empty");
        let cases: [(&[(&str, &str)], bool); 9] = [
            (&[], false),
            (&[("authorization", "Bearer s3cret")], true),
            (&[("authorization", "bearer s3cret")], true),
            (&[("authorization", "Bearer s3cre")], false),
            (&[("authorization", "Basic czNjcmV0")], false),
            (&[("authorization", "token=s3cret")], true),
            (&[("authorization", "token=s3cret2")], false),
            (&[("x-consul-token", "s3cret")], true),
            (&[("x-consul-token", "s3cret-and-more")], false),
        ];
        for (pairs, want) in cases {
            assert_eq!(secret.presented_in(&headers(pairs)), want, "{pairs:?}");
        }
        assert!(SharedSecret::new("").is_none());
        assert_eq!(format!("{secret:?}"), "SharedSecret(<hidden>)");
    }

    #[test]
    fn basic_credentials_as_rfc_7617() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cases: Vec<(String, Option<(&str, &str)>)> = vec![
            (format!("Basic {}", b64("alice:pw")), Some(("alice", "pw"))),
            (
                format!("basic {}", b64("alice:p:w")),
                Some(("alice", "p:w")),
            ),
            (format!("Basic {}", b64("alice:")), Some(("alice", ""))),
            (format!("Basic {}", b64("alice")), None),
            ("Basic !!!".to_string(), None),
            (format!("Bearer {}", b64("alice:pw")), None),
        ];
        for (value, want) in cases {
            let got = basic_credentials(&headers(&[("authorization", &value)]));
            let got = got.as_ref().map(|c| (c.user.as_str(), c.password.as_str()));
            assert_eq!(got, want, "{value}");
        }
        assert_eq!(basic_credentials(&HeaderMap::new()), None);
        let c = BasicCredentials {
            user: "alice".into(),
            password: "pw-s3cret".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn retry_after_rounds_up() {
        for (wait, want) in [
            (Duration::from_millis(1), "1"),
            (Duration::from_secs(3), "3"),
            (Duration::from_millis(9_001), "10"),
        ] {
            let r = too_many_failures(wait);
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(r.headers()[header::RETRY_AFTER], want, "{wait:?}");
        }
    }

    #[tokio::test]
    async fn require_secret_answers_429_past_the_failure_limit() {
        let limiter = Arc::new(FailureLimiter::new(2, Duration::from_secs(3600)));
        let secret = SharedSecret::new("s3cret")
            .expect("non-empty")
            .with_limiter(limiter);
        let app = axum::Router::new()
            .route("/x", axum::routing::get(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn_with_state(secret, require_secret));
        let call = |peer: &str, token: Option<&str>| {
            let mut req = Request::builder().uri("/x");
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let mut req = req.body(axum::body::Body::empty()).expect("request");
            let peer: SocketAddr = peer.parse().expect("peer");
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let mut svc = app.clone();
            async move {
                tower_service::Service::call(&mut svc, req)
                    .await
                    .expect("infallible")
                    .status()
            }
        };
        assert_eq!(call("10.0.0.1:1000", Some("s3cret")).await, StatusCode::OK);
        assert_eq!(call("10.0.0.1:1001", None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            call("10.0.0.1:1002", Some("guess")).await,
            StatusCode::UNAUTHORIZED
        );
        // Two failures: the peer is refused, even with the right token (it is not looked at).
        assert_eq!(
            call("10.0.0.1:1003", Some("guess")).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            call("10.0.0.1:1004", Some("s3cret")).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        // Another peer is not.
        assert_eq!(call("10.0.0.2:1000", Some("s3cret")).await, StatusCode::OK);
    }
}
