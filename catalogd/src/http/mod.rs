//! The Consul-compatible HTTP API: routes, body decoding and the per-area handlers.

mod agent;
mod catalog;
mod error;
mod health;
mod kv;
mod misc;
mod query;
mod respond;
mod session;
mod txn;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::de::DeserializeOwned;

pub use error::{HttpError, HttpResult};
pub use query::{Query, Read, ReadOpts};

use crate::core::Core;

/// Largest request body accepted (a txn of many maximal values); KV values are checked on their own.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Decodes a JSON body the way Consul does: keys matched case-insensitively (snake_case too),
/// errors naming the offending field.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(HttpError::bad_request("missing request body"));
    }
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("request body is not valid JSON: {e}")))?;
    cairn_wire::canonicalize_keys(&mut value);
    cairn_wire::drop_nulls(&mut value);
    cairn_wire::durations_from_numbers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            HttpError::bad_request(format!("request body: {}", e.inner()))
        } else {
            HttpError::bad_request(format!("{path}: {}", e.inner()))
        }
    })
}

/// Counts requests and reads every body whole before routing: a handler that answers without
/// reading the body (a GET with one, a 404, a 405) would otherwise make hyper drop the
/// keep-alive connection under a pooled client's next request.
async fn count_requests(State(core): State<Arc<Core>>, req: Request, next: Next) -> Response {
    core.metrics.http_requests.fetch_add(1, Relaxed);
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            core.metrics.http_errors.fetch_add(1, Relaxed);
            return HttpError {
                status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                message: format!("request body unreadable or larger than {MAX_BODY} bytes: {e}"),
            }
            .into_response();
        }
    };
    let resp = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    if resp.status().is_client_error() || resp.status().is_server_error() {
        core.metrics.http_errors.fetch_add(1, Relaxed);
    }
    resp
}

async fn unknown_endpoint(req: Request) -> HttpError {
    HttpError::not_found(format!(
        "unknown endpoint {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// Every route of the API.
pub fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route(
            "/v1/catalog/register",
            put(catalog::register).post(catalog::register),
        )
        .route(
            "/v1/catalog/deregister",
            put(catalog::deregister).post(catalog::deregister),
        )
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/service/{name}", get(catalog::service))
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/node/{node}", get(catalog::node))
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route("/v1/health/service/{name}", get(health::service))
        .route("/v1/health/checks/{name}", get(health::checks))
        .route("/v1/health/node/{node}", get(health::node))
        .route("/v1/health/state/{state}", get(health::state))
        .route("/v1/agent/self", get(agent::self_info))
        .route("/v1/agent/members", get(agent::members))
        .route("/v1/agent/services", get(agent::services))
        .route("/v1/agent/service/{id}", get(agent::service))
        .route("/v1/agent/checks", get(agent::checks))
        .route(
            "/v1/agent/service/register",
            put(agent::register_service).post(agent::register_service),
        )
        .route(
            "/v1/agent/service/deregister/{id}",
            put(agent::deregister_service).post(agent::deregister_service),
        )
        .route(
            "/v1/agent/service/maintenance/{id}",
            put(agent::service_maintenance).post(agent::service_maintenance),
        )
        .route(
            "/v1/agent/maintenance",
            put(agent::node_maintenance).post(agent::node_maintenance),
        )
        .route(
            "/v1/agent/check/register",
            put(agent::register_check).post(agent::register_check),
        )
        .route(
            "/v1/agent/check/deregister/{id}",
            put(agent::deregister_check).post(agent::deregister_check),
        )
        .route(
            "/v1/agent/check/pass/{id}",
            put(agent::pass).post(agent::pass),
        )
        .route(
            "/v1/agent/check/warn/{id}",
            put(agent::warn).post(agent::warn),
        )
        .route(
            "/v1/agent/check/fail/{id}",
            put(agent::fail).post(agent::fail),
        )
        .route(
            "/v1/agent/check/update/{id}",
            put(agent::update).post(agent::update),
        )
        .route(
            "/v1/kv/",
            get(kv::get_root).put(kv::put_root).delete(kv::delete_root),
        )
        .route(
            "/v1/kv/{*key}",
            get(kv::get).put(kv::put).post(kv::put).delete(kv::delete),
        )
        .route(
            "/v1/session/create",
            put(session::create).post(session::create),
        )
        .route(
            "/v1/session/destroy/{id}",
            put(session::destroy).post(session::destroy),
        )
        .route(
            "/v1/session/renew/{id}",
            put(session::renew).post(session::renew),
        )
        .route("/v1/session/info/{id}", get(session::info))
        .route("/v1/session/list", get(session::list))
        .route("/v1/session/node/{node}", get(session::node))
        .route("/v1/txn", put(txn::txn).post(txn::txn))
        .route("/v1/status/leader", get(misc::leader))
        .route("/v1/status/peers", get(misc::peers))
        .route("/v1/cairn/catalog", get(misc::whole_catalog))
        .route("/", get(misc::index))
        .route("/metrics", get(misc::metrics))
        .route("/v1/agent/metrics", get(misc::metrics))
        .fallback(unknown_endpoint)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(core.clone(), count_requests))
        .with_state(core)
}
