//! What the web UI (`cairn-ui`, served at `/ui/`) needs of offerd beyond Marathon's API:
//!
//! - `GET /v1/auth/self`: who the caller is and what its role lets it do, so the page offers
//!   only the actions the caller may take (the API still decides each one).
//! - `/ui/catalog/v1/...`: a relay to offerd's catalog, so that one URL shows the whole
//!   platform even where the browser cannot reach catalogd. It carries the browser's own
//!   `X-Consul-Token` and never offerd's: the catalog judges the person, not offerd. Only the
//!   reads the UI makes (KV, the catalog, health, the caller's own token) and KV writes and
//!   Consul's authorization check go through; anything else is 404. The answer is streamed
//!   back (whole catalogs are large) and at most [`MAX_RELAYS`] are open at once, blocking
//!   queries included.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Semaphore;

use super::{ApiError, AppState};
use crate::auth::Caller;

/// Where the relay answers (the page's `catalogBase`).
pub const CATALOG_RELAY: &str = "/ui/catalog";
/// Most relayed requests open at once (blocking queries hold theirs while they wait).
pub const MAX_RELAYS: usize = 256;
/// A request that does not block must be answered within this.
const PLAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A blocking query waits at most 10 minutes plus Consul's jitter of a sixteenth.
const BLOCKING_TIMEOUT: Duration = Duration::from_secs(11 * 60);
/// The catalog's answer headers the page reads.
const PASSED_HEADERS: [&str; 4] = [
    "content-type",
    "x-consul-index",
    "x-consul-knownleader",
    "x-consul-lastcontact",
];

static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(MAX_RELAYS)));

/// `GET /v1/auth/self`.
pub async fn whoami(State(st): State<AppState>, caller: Caller) -> Response {
    let (role, paths) = match &caller {
        Caller::Anyone => ("admin", vec!["/".to_string()]),
        Caller::Principal(p) => (
            p.role.as_str(),
            match p.role {
                crate::auth::Role::Admin => vec!["/".to_string()],
                crate::auth::Role::Deployer => p.paths.clone(),
                crate::auth::Role::Viewer => Vec::new(),
            },
        ),
    };
    axum::Json(json!({
        "name": caller.name(),
        "role": role,
        "paths": paths,
        "authRequired": st.access.has_auth_file(),
    }))
    .into_response()
}

/// Whether the relay carries `method` on `path` (below `/ui/catalog/`).
fn relayed(method: &Method, path: &str) -> bool {
    let kv = path == "v1/kv" || path.starts_with("v1/kv/");
    match *method {
        Method::GET | Method::HEAD => {
            kv || path == "v1/cairn/catalog"
                || path.starts_with("v1/catalog/")
                || path.starts_with("v1/health/")
                || path == "v1/acl/token/self"
                || path == "v1/status/leader"
        }
        Method::PUT | Method::DELETE => kv,
        Method::POST => path == "v1/internal/acl/authorize",
        _ => false,
    }
}

fn refused(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

/// `/ui/catalog/{*path}`: the request on to the catalog, as the caller.
pub async fn relay(
    State(st): State<AppState>,
    caller: Caller,
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(catalog) = st.catalog.as_ref() else {
        return Err(ApiError::NotFound(
            "offerd has no catalog (--catalog) to show".into(),
        ));
    };
    // The path as the client sent it (still percent-encoded: a KV key may hold `%2F`).
    let raw = uri
        .path()
        .strip_prefix(CATALOG_RELAY)
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or(&path);
    if !relayed(&method, raw) {
        return Err(ApiError::NotFound(format!(
            "the UI's relay does not carry {method} /{raw}: only KV, catalog, health and \
             authorization requests go to the catalog"
        )));
    }
    let Ok(permit) = SLOTS.clone().try_acquire_owned() else {
        return Err(ApiError::Unavailable(format!(
            "{MAX_RELAYS} catalog requests are open through offerd; try again later"
        )));
    };
    let token = headers
        .get(cairn_client::TOKEN_HEADER)
        .cloned()
        .map(|mut t| {
            t.set_sensitive(true);
            t
        });
    let blocking = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.starts_with("index=")));
    let timeout = if blocking {
        BLOCKING_TIMEOUT
    } else {
        PLAIN_TIMEOUT
    };
    tracing::debug!(principal = caller.name(), %method, path = raw, "relaying to the catalog");
    let answer = catalog
        .relay(method, raw, uri.query(), token, body, timeout)
        .await;
    let resp = match answer {
        Ok(resp) => resp,
        Err(e) => {
            return Ok(refused(
                StatusCode::BAD_GATEWAY,
                format!("cannot reach the catalog: {e}"),
            ));
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let passed: Vec<(&'static str, HeaderValue)> = PASSED_HEADERS
        .iter()
        .filter_map(|name| Some((*name, resp.headers().get(*name)?.clone())))
        .collect();
    // The permit goes with the body: the slot is free once the answer is sent or dropped.
    let stream = futures::stream::unfold((resp, permit), |(mut resp, permit)| async move {
        match resp.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), (resp, permit))),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e)), (resp, permit))),
        }
    });
    let mut out = Response::new(Body::from_stream(stream));
    *out.status_mut() = status;
    let out_headers = out.headers_mut();
    for (name, value) in passed {
        out_headers.insert(name, value);
    }
    out_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_only_what_the_page_uses() {
        let cases = [
            (Method::GET, "v1/kv/app/config", true),
            (Method::GET, "v1/kv", true),
            (Method::PUT, "v1/kv/app/config", true),
            (Method::DELETE, "v1/kv/app/config", true),
            (Method::GET, "v1/cairn/catalog", true),
            (Method::GET, "v1/health/node/n1", true),
            (Method::GET, "v1/catalog/services", true),
            (Method::POST, "v1/internal/acl/authorize", true),
            (Method::GET, "v1/acl/token/self", true),
            (Method::PUT, "v1/catalog/register", false),
            (Method::PUT, "v1/acl/token", false),
            (Method::GET, "v1/acl/tokens", false),
            (Method::GET, "v1/snapshot", false),
            (Method::PUT, "v1/agent/service/register", false),
            (Method::POST, "v1/kv/x", false),
            (Method::GET, "v1/kvx", false),
            (Method::GET, "metrics", false),
        ];
        for (method, path, carried) in cases {
            assert_eq!(relayed(&method, path), carried, "{method} {path}");
        }
    }
}
