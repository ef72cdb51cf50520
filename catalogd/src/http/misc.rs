//! Status endpoints, Prometheus metrics, and cairn's whole-catalog extension.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;

use super::query::Who;
use super::respond::{json_plain, json_read};
use super::{HttpResult, Read};
use crate::core::Core;
use crate::watch::Topic;

/// The address catalogd reports as its Raft server (Consul's server RPC port).
pub(crate) fn raft_addr(core: &Core) -> String {
    match &core.config.etcd {
        Some(etcd) => etcd.name.clone(),
        None => raft_addr_of(core.config.advertise),
    }
}

/// What a lone catalogd names itself as in `/v1/status/*`: Consul's server RPC address form.
pub fn raft_addr_of(advertise: std::net::IpAddr) -> String {
    match advertise {
        std::net::IpAddr::V6(ip) => format!("[{ip}]:8300"),
        ip => format!("{ip}:8300"),
    }
}

/// `GET /`: says what answers here, with 200 as Consul's agent does without its UI (HTTP checks
/// and load balancers probe the root).
pub async fn index() -> &'static str {
    "catalogd: a Consul-compatible catalog (HTTP API under /v1/, metrics at /metrics)\n"
}

/// `GET /v1/status/leader`: catalogd's own address, or `""` (Consul's "no leader") while its
/// store does not take writes, so that readiness checks and clients see it.
pub async fn leader(State(core): State<Arc<Core>>) -> HttpResult {
    if !core.store_health.is_writable() {
        return Ok(json_plain(&""));
    }
    Ok(json_plain(&core.leadership.view().leader))
}

/// `GET /v1/status/peers`: the live replicas (this one alone without replicas).
pub async fn peers(State(core): State<Arc<Core>>) -> HttpResult {
    Ok(json_plain(&core.leadership.view().peers))
}

/// `GET /metrics`: operator:read, unless the operator opened it (`--unauthenticated-metrics`)
/// for a scraper that holds no token.
pub async fn metrics(State(core): State<Arc<Core>>, Who(caller): Who) -> HttpResult {
    if !core.config.unauthenticated_metrics {
        caller.require(caller.authz.operator_read(), "operator", "read", None)?;
    }
    Ok(prometheus(&core))
}

/// The Prometheus exposition of catalogd's metrics.
pub fn prometheus(core: &Core) -> axum::response::Response {
    let body = core
        .metrics
        .render(&core.current.load(), core.registry.topic_count());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(cairn_metrics::CONTENT_TYPE),
        )],
        body,
    )
        .into_response()
}

/// `GET /v1/cairn/catalog`: every node with its checks and every instance with its checks, as
/// one blocking read that wakes on any catalog change. The answer grows with the catalog (tens
/// of megabytes at 100,000 instances), so it is built once, after the wait, on a blocking thread
/// (other clients' requests keep the runtime's workers), a few at a time, and shared by the
/// readers a change wakes together ([`crate::whole_catalog`]).
///
/// With `?delta`, the answer is a `CatalogDelta`: what changed after `?index` (the consumer's
/// last answer's), or the whole catalog marked `Full` when catalogd no longer knows.
pub async fn whole_catalog(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let Read {
        opts,
        caller,
        query,
    } = read;
    let form = if query.present("delta") {
        crate::whole_catalog::Form::DeltaSince(opts.index)
    } else {
        crate::whole_catalog::Form::Whole
    };
    let st =
        super::respond::snapshot_past(&core, &opts, Topic::Catalog, |st| st.catalog_index()).await;
    let built = core
        .whole_catalog
        .get_or_build(st, caller, opts.filter.clone(), form)
        .await
        .map_err(super::HttpError::internal)?;
    Ok(super::respond::filtered_by_acls(
        built.hidden,
        super::respond::json_read_bytes(built.index, built.bytes.clone()),
    ))
}

/// `GET /v1/peerings`: catalogd has no cluster peerings.
pub async fn peerings(State(core): State<Arc<Core>>) -> HttpResult {
    Ok(json_read(core.index(), &Vec::<()>::new()))
}

/// `GET /v1/peering/:name`: there are none to find.
pub async fn peering(axum::extract::Path(name): axum::extract::Path<String>) -> HttpResult {
    if name.is_empty() {
        return Err(super::HttpError::bad_request(
            "Must specify a name to fetch.",
        ));
    }
    Err(super::HttpError::not_found(format!(
        "Peering not found for {name:?}"
    )))
}

/// `DELETE /v1/peering/:name`: deleting one that does not exist succeeds, as Consul's does.
pub async fn peering_delete() -> HttpResult {
    Ok(axum::http::StatusCode::OK.into_response())
}

/// `POST /v1/peering/token|establish`: peering joins another cluster's servers, which catalogd
/// (one datacenter on its own store) cannot do; refused with the reason rather than pretended.
pub async fn peering_unsupported(body: axum::body::Bytes) -> HttpResult {
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| super::HttpError::bad_request(format!("Body decoding failed: {e}")))?;
    if v.get("PeerName")
        .and_then(|p| p.as_str())
        .is_none_or(str::is_empty)
    {
        return Err(super::HttpError::bad_request(
            "PeerName is required in the payload when generating a new peering token.",
        ));
    }
    Err(super::HttpError::internal(
        "cluster peering is not supported by catalogd (one datacenter)",
    ))
}
