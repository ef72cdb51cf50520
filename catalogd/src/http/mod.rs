//! The Consul-compatible HTTP API: routes, body decoding and the per-area handlers.

mod acl;
mod agent;
mod catalog;
mod chain;
mod config;
mod connect;
mod coordinate;
mod error;
mod event;
pub mod forward;
pub mod front;
mod guard;
mod health;
mod kv;
mod misc;
mod operator;
pub mod peer;
mod prepared;
mod prometheus_sd;
mod query;
mod respond;
mod session;
mod snapshot;
mod txn;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;

use cairn_http::QueryParams;
pub use error::{HttpError, HttpResult};
pub use misc::raft_addr_of;
pub use query::{Read, ReadOpts};

use crate::core::Core;

/// Consul's `txn_max_req_len` (raised to `kv_max_value_size` when that is larger, as Consul
/// does): the largest `/v1/txn` body.
const MAX_TXN_BODY: usize = 512 * 1024;
/// Largest body of the other JSON endpoints (registrations, config entries, queries, events):
/// room for a refused 1 MiB meta value to be read and named in a 400, as Consul does (it has
/// no cap of its own there), far below the server's cap.
const MAX_JSON_BODY: usize = 2 * 1024 * 1024;

/// The largest body a request to `path` may carry and the Consul setting that names it; `None`
/// for a snapshot restore, bounded only by the server's `--max-body-bytes`.
fn body_limit(path: &str) -> Option<(usize, &'static str)> {
    if path.starts_with("/v1/kv/") || path == "/v1/kv" {
        Some((cairn_wire::MAX_KV_VALUE, "kv_max_value_size"))
    } else if path == "/v1/txn" {
        Some((
            MAX_TXN_BODY.max(cairn_wire::MAX_KV_VALUE),
            "txn_max_req_len",
        ))
    } else if path == "/v1/snapshot" {
        None
    } else {
        Some((MAX_JSON_BODY, "limits"))
    }
}

/// Consul's answer to a body past its limit.
fn too_large(len: Option<u64>, max: usize, setting: &str) -> HttpError {
    let size = len.map_or_else(
        || "Request body".to_string(),
        |n| format!("Request body({n} bytes)"),
    );
    HttpError {
        status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "{size} too large, max size: {max} bytes. See \
             https://www.consul.io/docs/agent/config/config-files#{setting}."
        ),
    }
}

/// One snapshot restore at a time: each holds its whole archive and a second state in memory.
static RESTORES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Reads a JSON body the way Consul's decoder sees it: keys matched case-insensitively
/// (snake_case too), `null` as absent, numeric durations as nanoseconds. Errors start with
/// Consul's `Request decode failed:`.
pub fn decode_value(body: &[u8]) -> Result<serde_json::Value, HttpError> {
    let mut value = decode_keys(body)?;
    cairn_wire::durations_from_numbers(&mut value)
        .map_err(|e| HttpError::bad_request(format!("Request decode failed: {e}")))?;
    Ok(value)
}

/// Like [`decode_value`], but leaves duration fields as given: for bodies whose `TTL` and the
/// like are plain strings to Consul (sessions), checked by the endpoint with its own texts.
pub fn decode_keys(body: &[u8]) -> Result<serde_json::Value, HttpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(HttpError::bad_request("Request decode failed: EOF"));
    }
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("Request decode failed: {e}")))?;
    cairn_wire::canonicalize_keys(&mut value);
    cairn_wire::drop_nulls(&mut value);
    if let Some(field) = enterprise_field(&value) {
        let mut message = format!("Request decode failed: json: unknown field {field:?}");
        if field == "Namespace" {
            message.push_str(" - Namespaces are a Consul Enterprise feature");
        }
        return Err(HttpError::bad_request(message));
    }
    Ok(value)
}

/// A `Namespace` or `Partition` set to something other than the default, anywhere in a body:
/// open-source Consul has neither and refuses them as unknown fields.
fn enterprise_field(v: &serde_json::Value) -> Option<&'static str> {
    match v {
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let set = v.as_str().is_some_and(|s| !s.is_empty() && s != "default");
            match k.as_str() {
                "Namespace" if set => Some("Namespace"),
                "Partition" if set => Some("Partition"),
                "Meta" | "NodeMeta" | "ServiceMeta" | "Config" => None,
                _ => enterprise_field(v),
            }
        }),
        serde_json::Value::Array(items) => items.iter().find_map(enterprise_field),
        _ => None,
    }
}

/// Decodes a JSON body into `T` as [`decode_value`] reads it, naming the offending field.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    typed(decode_value(body)?)
}

/// Deserializes a decoded body, naming the offending field.
pub fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, HttpError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            HttpError::bad_request(format!("Request decode failed: {}", e.inner()))
        } else {
            HttpError::bad_request(format!("Request decode failed: {path}: {}", e.inner()))
        }
    })
}

/// The token a request presents, as Consul reads it.
pub fn request_token(req: &Request) -> Option<String> {
    let headers = req.headers();
    if let Some(t) = headers
        .get(respond::names::TOKEN)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    {
        return Some(t.to_string());
    }
    // `Bearer <token>`, or a bare token: Prometheus' `http_sd_configs` sends
    // `authorization: {credentials: ...}` without the scheme when `type` is left out
    // (prometheus/docs#2377). A value with another scheme (`Basic ...`) is not a token.
    if let Some(t) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| match v.strip_prefix("Bearer ") {
            Some(t) => Some(t.trim()),
            None => (!v.trim().contains(char::is_whitespace)).then(|| v.trim()),
        })
        .filter(|t| !t.is_empty())
    {
        return Some(t.to_string());
    }
    let raw = req.uri().query()?;
    if !raw.contains("token=") {
        return None;
    }
    QueryParams::parse(Some(raw))
        .first("token")
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// An error answer to a request whose body was not read to its end: the connection cannot carry
/// another request, and the client is told so.
fn closing(e: HttpError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// Consul sends its default ACL policy on every answer.
fn with_policy(mut resp: Response, policy: cairn_acl::DefaultPolicy) -> Response {
    let value = match policy {
        cairn_acl::DefaultPolicy::Allow => "allow",
        cairn_acl::DefaultPolicy::Deny => "deny",
    };
    resp.headers_mut().insert(
        respond::names::DEFAULT_ACL_POLICY,
        axum::http::HeaderValue::from_static(value),
    );
    resp
}

/// Namespaces and admin partitions are Consul Enterprise features: open-source Consul refuses
/// a request that names one, and so does catalogd, with the same text.
fn open_source(req: &Request) -> Result<(), HttpError> {
    let refuse = |what: String, feature: &str| {
        Err(HttpError::bad_request(format!(
            "{what} - {feature} are a Consul Enterprise feature"
        )))
    };
    let header = |name: axum::http::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .is_some()
    };
    if header(respond::names::NAMESPACE) {
        return refuse(
            "Invalid header: \"X-Consul-Namespace\"".into(),
            "Namespaces",
        );
    }
    if header(respond::names::PARTITION) {
        return refuse(
            "Invalid header: \"X-Consul-Partition\"".into(),
            "Partitions",
        );
    }
    let raw = req.uri().query().unwrap_or_default();
    if !raw.contains("ns=") && !raw.contains("partition=") {
        return Ok(());
    }
    let q = QueryParams::parse(Some(raw));
    if q.first("ns").is_some_and(|v| !v.is_empty()) {
        return refuse("Invalid query parameter: \"ns\"".into(), "Namespaces");
    }
    if q.first("partition")
        .is_some_and(|v| !v.is_empty() && v != "default")
    {
        return refuse(
            "Invalid query parameter: \"partition\"".into(),
            "Partitions",
        );
    }
    Ok(())
}

/// A request for another datacenter (`?dc=`) has nowhere to go: catalogd is one datacenter.
/// The agent endpoints answer for the local agent whatever `dc` says, as Consul's do.
fn local_datacenter(req: &Request, datacenter: &str) -> Result<(), HttpError> {
    // Most requests carry no `dc`: spare them a parse of the query string.
    let raw = req.uri().query().unwrap_or_default();
    if !raw.contains("dc=") || req.uri().path().starts_with("/v1/agent/") {
        return Ok(());
    }
    match QueryParams::parse(Some(raw)).first("dc") {
        Some(dc) if !dc.is_empty() && dc != datacenter => {
            Err(HttpError::internal("No path to datacenter"))
        }
        _ => Ok(()),
    }
}

/// Consul's answer for a path it has no endpoint for.
async fn unknown_endpoint(req: Request) -> HttpError {
    HttpError::not_found(if req.uri().path().contains("/v1/") {
        "Invalid URL path: not a recognized HTTP API endpoint\n"
    } else {
        "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
    })
}

/// Consul's answer for a method an endpoint does not take.
async fn method_not_allowed(req: Request) -> HttpError {
    HttpError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        message: format!("method {} not allowed", req.method()),
    }
}

/// A write endpoint: Consul's method (PUT), and POST, which earlier cairn clients sent.
fn write<H, T>(handler: H) -> axum::routing::MethodRouter<Arc<Core>>
where
    H: axum::handler::Handler<T, Arc<Core>> + Clone,
    T: 'static,
{
    put(handler.clone()).post(handler)
}

/// `/v1/agent/*`. IDs take the rest of the path (`/v1/agent/service/deregister/a/b` is service
/// `a/b`), as Consul's prefix routes do.
fn agent_routes() -> Router<Arc<Core>> {
    Router::new()
        .route("/v1/agent/self", get(agent::self_info))
        .route("/v1/agent/version", get(agent::version))
        .route("/v1/agent/members", get(agent::members))
        .route("/v1/agent/services", get(agent::services))
        .route("/v1/agent/service/{*id}", get(agent::service))
        .route("/v1/agent/checks", get(agent::checks))
        .route(
            "/v1/agent/health/service/id/{*id}",
            get(agent::health_by_id),
        )
        .route(
            "/v1/agent/health/service/name/{*name}",
            get(agent::health_by_name),
        )
        .route("/v1/agent/metrics", get(agent::metrics))
        .route("/v1/agent/monitor", get(agent::monitor))
        .route("/v1/agent/reload", put(agent::reload))
        .route("/v1/agent/leave", put(agent::leave))
        .route("/v1/agent/force-leave/{*node}", put(agent::force_leave))
        .route("/v1/agent/token/{*kind}", put(agent::token))
        .route("/v1/agent/maintenance", write(agent::node_maintenance))
        .route("/v1/agent/service/register", write(agent::register_service))
        .route(
            "/v1/agent/service/deregister/{*id}",
            write(agent::deregister_service),
        )
        .route(
            "/v1/agent/service/maintenance/{*id}",
            write(agent::service_maintenance),
        )
        .route("/v1/agent/check/register", write(agent::register_check))
        .route(
            "/v1/agent/check/deregister/{*id}",
            write(agent::deregister_check),
        )
        .route("/v1/agent/check/pass/{*id}", write(agent::pass))
        .route("/v1/agent/check/warn/{*id}", write(agent::warn))
        .route("/v1/agent/check/fail/{*id}", write(agent::fail))
        .route("/v1/agent/check/update/{*id}", write(agent::update))
}

/// `/v1/acl/*`.
fn acl_routes() -> Router<Arc<Core>> {
    Router::new()
        .route("/v1/acl/bootstrap", put(acl::bootstrap))
        .route("/v1/acl/replication", get(acl::replication))
        .route("/v1/acl/tokens", get(acl::token_list))
        .route("/v1/acl/token", put(acl::token_create))
        .route(
            "/v1/acl/token/{*rest}",
            get(acl::token_get)
                .put(acl::token_put)
                .delete(acl::token_delete),
        )
        .route("/v1/acl/policies", get(acl::policy_list))
        .route("/v1/acl/policy", put(acl::policy_create))
        .route("/v1/acl/policy/name/{*name}", get(acl::policy_by_name))
        .route(
            "/v1/acl/policy/{id}",
            get(acl::policy_get)
                .put(acl::policy_put)
                .delete(acl::policy_delete),
        )
        .route("/v1/acl/roles", get(acl::role_list))
        .route("/v1/acl/role", put(acl::role_create))
        .route(
            "/v1/acl/role/{*rest}",
            get(acl::role_get)
                .put(acl::role_put)
                .delete(acl::role_delete),
        )
        .route("/v1/acl/templated-policies", get(acl::templated_list))
        .route(
            "/v1/acl/templated-policy/name/{*name}",
            get(acl::templated_get),
        )
        .route(
            "/v1/acl/templated-policy/preview/{*name}",
            write(acl::templated_preview),
        )
        .route("/v1/acl/auth-methods", get(acl::auth_method_list))
        .route("/v1/acl/auth-method", put(acl::auth_method_create))
        .route(
            "/v1/acl/auth-method/{name}",
            get(acl::auth_method_get)
                .put(acl::auth_method_put)
                .delete(acl::auth_method_delete),
        )
        .route("/v1/acl/binding-rules", get(acl::binding_rule_list))
        .route("/v1/acl/binding-rule", put(acl::binding_rule_create))
        .route(
            "/v1/acl/binding-rule/{id}",
            get(acl::binding_rule_get)
                .put(acl::binding_rule_put)
                .delete(acl::binding_rule_delete),
        )
        .route("/v1/acl/login", write(acl::login))
        .route("/v1/acl/logout", write(acl::logout))
}

/// Every route of the API.
fn router(core: Arc<Core>) -> Router {
    Router::new()
        .merge(acl_routes())
        .route(
            "/v1/catalog/register",
            put(catalog::register).post(catalog::register),
        )
        .route(
            "/v1/catalog/deregister",
            put(catalog::deregister).post(catalog::deregister),
        )
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/service/{*name}", get(catalog::service))
        .route("/v1/catalog/connect/{*name}", get(catalog::connect))
        .route(
            "/v1/catalog/gateway-services/{*gateway}",
            get(catalog::gateway_services),
        )
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/node/{node}", get(catalog::node))
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route(
            "/v1/catalog/node-services/{*node}",
            get(catalog::node_services),
        )
        .route("/v1/health/service/{*name}", get(health::service))
        .route("/v1/health/connect/{*name}", get(health::connect))
        .route("/v1/health/ingress/{*name}", get(health::ingress))
        .route("/v1/health/checks/{name}", get(health::checks))
        .route("/v1/health/node/{node}", get(health::node))
        .route("/v1/health/state/{state}", get(health::state))
        .merge(agent_routes())
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
        .route("/v1/coordinate/datacenters", get(coordinate::datacenters))
        .route("/v1/coordinate/nodes", get(coordinate::nodes))
        .route("/v1/coordinate/node/{*node}", get(coordinate::node))
        .route("/v1/coordinate/update", write(coordinate::update))
        .route(
            "/v1/operator/raft/configuration",
            get(operator::raft_configuration),
        )
        .route(
            "/v1/operator/raft/transfer-leader",
            axum::routing::post(operator::transfer_leader),
        )
        .route(
            "/v1/operator/raft/peer",
            axum::routing::delete(operator::remove_peer),
        )
        .route(
            "/v1/operator/autopilot/configuration",
            get(operator::autopilot_get).put(operator::autopilot_put),
        )
        .route(
            "/v1/operator/autopilot/health",
            get(operator::autopilot_health),
        )
        .route(
            "/v1/operator/autopilot/state",
            get(operator::autopilot_state),
        )
        .route(
            "/v1/operator/keyring",
            get(operator::keyring)
                .post(operator::keyring)
                .put(operator::keyring)
                .delete(operator::keyring),
        )
        .route("/v1/operator/usage", get(operator::usage))
        .route(
            "/v1/discovery-chain/{*service}",
            get(chain::get).post(chain::get),
        )
        .route("/v1/snapshot", get(snapshot::get).put(snapshot::put))
        .route("/v1/query", get(prepared::root).post(prepared::root))
        .route(
            "/v1/query/{*rest}",
            get(prepared::by_id)
                .put(prepared::by_id)
                .delete(prepared::by_id)
                .post(prepared::by_id),
        )
        .route("/v1/config", write(config::apply))
        .route("/v1/config/", get(config::list_all))
        .route(
            "/v1/config/{*rest}",
            get(config::get).delete(config::delete),
        )
        .route("/v1/connect/intentions", get(connect::list))
        .route(
            "/v1/connect/intentions/exact",
            get(connect::exact_get)
                .put(connect::exact_put)
                .delete(connect::exact_delete),
        )
        .route("/v1/connect/intentions/check", get(connect::check))
        .route("/v1/connect/intentions/match", get(connect::match_))
        .route(
            "/v1/connect/ca/configuration",
            get(connect::ca_get).put(connect::ca_put),
        )
        .route("/v1/event/fire/{*name}", write(event::fire))
        .route("/v1/event/list", get(event::list))
        .route("/v1/peerings", get(misc::peerings))
        .route(
            "/v1/peering/token",
            axum::routing::post(misc::peering_unsupported),
        )
        .route(
            "/v1/peering/establish",
            axum::routing::post(misc::peering_unsupported),
        )
        .route(
            "/v1/peering/{*name}",
            get(misc::peering).delete(misc::peering_delete),
        )
        .route("/v1/status/leader", get(misc::leader))
        .route("/v1/status/peers", get(misc::peers))
        .route("/v1/cairn/catalog", get(misc::whole_catalog))
        .route("/v1/cairn/prometheus/targets", get(prometheus_sd::targets))
        .route("/v1/internal/acl/authorize", post(acl::authorize))
        .route("/", get(misc::index))
        .merge(cairn_ui::routes(cairn_ui::UiConfig::catalogd()))
        .route("/metrics", get(misc::metrics))
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read (and bounded) by the front door (`front`) before any extractor runs.
        .layer(DefaultBodyLimit::disable())
        .with_state(core)
}

/// The API behind its front door (`front`): what each connection serves.
pub fn app(core: Arc<Core>) -> front::Front {
    front::Front::new(router(core.clone()), core)
}

#[cfg(test)]
mod tests {
    /// Where a request's token is read from, and what is not a token.
    #[test]
    fn request_token_sources() {
        /// Headers, the URI, the token read.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<&'a str>);
        let cases: &[Case] = &[
            (&[], "/v1/kv/a", None),
            (&[("X-Consul-Token", "t1")], "/v1/kv/a", Some("t1")),
            (&[("Authorization", "Bearer t2")], "/", Some("t2")),
            // Prometheus' http_sd without `type`: the bare credentials.
            (&[("Authorization", "t3")], "/", Some("t3")),
            (&[("Authorization", "Basic dTpw")], "/", None),
            (&[("Authorization", "Bearer ")], "/", None),
            (&[("Authorization", "")], "/", None),
            (
                &[("X-Consul-Token", "t1"), ("Authorization", "Bearer t2")],
                "/",
                Some("t1"),
            ),
            (&[], "/v1/kv/a?token=t4", Some("t4")),
        ];
        for (headers, uri, want) in cases {
            let mut req = axum::http::Request::builder().uri(*uri);
            for (name, value) in *headers {
                req = req.header(*name, *value);
            }
            let req = req.body(axum::body::Body::empty()).expect("a request");
            assert_eq!(
                super::request_token(&req).as_deref(),
                *want,
                "{headers:?} {uri}"
            );
        }
    }
}
