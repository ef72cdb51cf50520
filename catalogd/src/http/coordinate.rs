//! `/v1/coordinate/*`: network coordinates (Serf's Vivaldi model) of nodes. catalogd measures
//! no round-trip times, so its own node sits at the origin with Serf's initial error; clients
//! may store coordinates of other nodes, and reads return them as Consul does (without Consul's
//! five-second batching: an update is readable once acknowledged).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::query::Who;
use super::respond::{blocking, json_list, json_plain};
use super::{HttpError, HttpResult, Read, decode_value};
use crate::core::Core;
use crate::server_node::origin_coordinate;
use crate::state::{State as CatalogState, Table};
use crate::watch::Topic;
use crate::writer::Command;

/// A stored coordinate as Consul lists it.
fn entry(node: &str, coord: &Value) -> Value {
    json!({"Node": node, "Segment": "", "Coord": coord})
}

fn all(st: &CatalogState) -> Vec<Value> {
    st.docs_with_prefix(Table::Coordinates, "")
        .map(|(node, d)| entry(node, &d.value))
        .collect()
}

/// `GET /v1/coordinate/datacenters`: the servers' coordinates per datacenter (catalogd is the
/// one server of its one datacenter).
pub async fn datacenters(State(core): State<Arc<Core>>) -> HttpResult {
    let st = core.current.load();
    let own = st
        .doc(Table::Coordinates, &core.config.node)
        .map_or_else(origin_coordinate, |d| (*d.value).clone());
    Ok(json_plain(&[json!({
        "Datacenter": core.config.datacenter,
        "AreaID": "wan",
        "Coordinates": [entry(&core.config.node, &own)],
    })]))
}

/// `GET /v1/coordinate/nodes`.
pub async fn nodes(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let segment = read.query.first("segment").map(str::to_string);
    let (idx, list) = blocking(&core, &read.opts, Topic::Table(Table::Coordinates), |st| {
        // Every coordinate is in the default segment.
        let mut list = if segment.as_deref().is_some_and(|s| !s.is_empty()) {
            Vec::new()
        } else {
            all(st)
        };
        list.retain(|e| {
            e["Node"]
                .as_str()
                .is_some_and(|n| read.caller.authz.node_read(n))
        });
        (st.table_index(Table::Coordinates), list)
    })
    .await;
    Ok(json_list(idx, &list, &read.opts))
}

/// `GET /v1/coordinate/node/:node`: 404 with an empty body when the node has none.
pub async fn node(
    State(core): State<Arc<Core>>,
    Path(node): Path<String>,
    read: Read,
) -> HttpResult {
    let (idx, found) = blocking(&core, &read.opts, Topic::Table(Table::Coordinates), |st| {
        let found = st
            .doc(Table::Coordinates, &node)
            .filter(|_| read.caller.authz.node_read(&node))
            .map(|d| entry(&node, &d.value));
        (st.table_index(Table::Coordinates), found)
    })
    .await;
    match found {
        Some(e) => Ok(json_list(idx, &[e], &read.opts)),
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}

/// `PUT /v1/coordinate/update` with `{"Node", "Segment", "Coord"}`.
pub async fn update(State(core): State<Arc<Core>>, Who(caller): Who, body: Bytes) -> HttpResult {
    let v = decode_value(&body)?;
    let node = v
        .get("Node")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let coord = v.get("Coord").cloned().unwrap_or(Value::Null);
    if node.is_empty() {
        return Err(HttpError::bad_request(
            "Request decode failed: missing Node",
        ));
    }
    caller.require(caller.authz.node_write(&node), "node", "write", Some(&node))?;
    core.writer
        .submit(Command::CoordinateUpdate { node, coord })
        .await?;
    Ok(StatusCode::OK.into_response())
}
