//! `/v1/operator/*`: what an open-source, single-server Consul answers about its Raft peers,
//! autopilot, gossip keyring and usage. catalogd is one server that is always the leader (one
//! machine, the embedded store); it answers these as that server would, so operator tooling and
//! dashboards read a healthy one-node cluster, and refuses what such a server refuses.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};

use super::respond::{blocking, json_plain, json_read};
use super::{HttpError, HttpResult, QueryParams, Read, decode_value};
use crate::core::Core;
use crate::server_node::{CONSUL_VERSION, default_autopilot, is_server_service};
use crate::state::{AUTOPILOT_KEY, Table};
use crate::watch::Topic;
use crate::writer::{Command, Reply};

/// `GET /v1/operator/raft/configuration`.
pub async fn raft_configuration(State(core): State<Arc<Core>>) -> HttpResult {
    Ok(json_plain(&json!({
        "Servers": [{
            "ID": core.node_id(),
            "Node": core.config.node,
            "Address": super::misc::raft_addr(&core),
            "Leader": true,
            "ProtocolVersion": "3",
            "Voter": true,
            "LastIndex": core.index(),
        }],
        "Index": 0,
    })))
}

/// `POST /v1/operator/raft/transfer-leader?id=`: there is no other server to hand over to.
pub async fn transfer_leader(RawQuery(q): RawQuery) -> HttpResult {
    let query = QueryParams::parse(q.as_deref());
    let why = match query.first("id").filter(|id| !id.is_empty()) {
        Some(id) => format!("Could not find address for server id {id}"),
        None => "cannot find peer".to_string(),
    };
    Err(HttpError::internal(format!(
        "rpc error: code = Unknown desc = {why}"
    )))
}

/// `DELETE /v1/operator/raft/peer?id=|address=`: only catalogd is in the configuration, and
/// it cannot remove the last voter.
pub async fn remove_peer(State(core): State<Arc<Core>>, RawQuery(q): RawQuery) -> HttpResult {
    let query = QueryParams::parse(q.as_deref());
    let id = query.first("id").filter(|v| !v.is_empty());
    let address = query.first("address").filter(|v| !v.is_empty());
    match (id, address) {
        (None, None) => Err(HttpError::bad_request(
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
        )),
        (Some(_), Some(_)) => Err(HttpError::bad_request(
            "Must specify only one of ?id or ?address",
        )),
        (Some(id), None) if id != core.node_id() => Err(HttpError::internal(format!(
            "id {id:?} was not found in the Raft configuration"
        ))),
        (None, Some(addr)) if addr != super::misc::raft_addr(&core) => Err(HttpError::internal(
            format!("address {addr:?} was not found in the Raft configuration"),
        )),
        _ => Err(HttpError::internal(
            "need at least one voter in configuration",
        )),
    }
}

/// `GET /v1/operator/autopilot/configuration`.
pub async fn autopilot_get(State(core): State<Arc<Core>>) -> HttpResult {
    let st = core.current.load();
    let Some(doc) = st.doc(Table::System, AUTOPILOT_KEY) else {
        return Err(HttpError::internal("autopilot config not initialized yet"));
    };
    let mut body = (*doc.value).clone();
    if let Value::Object(m) = &mut body {
        m.insert("CreateIndex".into(), json!(doc.create_index));
        m.insert("ModifyIndex".into(), json!(doc.modify_index));
    }
    Ok(json_plain(&body))
}

/// Reads a duration field of an autopilot body (a Go duration string, or nanoseconds).
fn duration_field(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => cairn_wire::parse_go_duration(s)
            .map(cairn_wire::format_go_duration)
            .map_err(|_| format!("time: invalid duration {s:?}")),
        Value::Number(n) => n
            .as_u64()
            .map(|ns| cairn_wire::format_go_duration(std::time::Duration::from_nanos(ns)))
            .ok_or_else(|| format!("invalid duration {n}")),
        other => Err(format!("invalid duration {other}")),
    }
}

/// `PUT /v1/operator/autopilot/configuration[?cas=]`: fields left out take Consul's defaults
/// (not the stored values), as Consul decodes onto a fresh default configuration.
pub async fn autopilot_put(
    State(core): State<Arc<Core>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> HttpResult {
    let query = QueryParams::parse(q.as_deref());
    let cas = match query.first("cas") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|e| HttpError::bad_request(format!("Error parsing cas value: {e}")))?,
        ),
    };
    let given = decode_value(&body).map_err(|e| {
        HttpError::bad_request(
            e.message
                .replace("Request decode failed", "Error parsing autopilot config"),
        )
    })?;
    let Value::Object(given) = given else {
        return Err(HttpError::bad_request(
            "Error parsing autopilot config: expected a JSON object",
        ));
    };
    let mut config = default_autopilot();
    for (k, v) in given {
        let Some(slot) = config.get_mut(&k) else {
            if k == "CreateIndex" || k == "ModifyIndex" {
                continue;
            }
            return Err(HttpError::bad_request(format!(
                "Error parsing autopilot config: json: unknown field {k:?}"
            )));
        };
        let fits = match (&*slot, &v) {
            (Value::Bool(_), Value::Bool(_)) | (Value::String(_), Value::String(_)) => true,
            (Value::Number(_), Value::Number(n)) => n.is_u64(),
            _ => false,
        };
        *slot = if k == "LastContactThreshold" || k == "ServerStabilizationTime" {
            Value::String(duration_field(&v).map_err(|e| {
                HttpError::bad_request(format!("Error parsing autopilot config: {e}"))
            })?)
        } else if fits {
            v
        } else {
            return Err(HttpError::bad_request(format!(
                "Error parsing autopilot config: json: cannot unmarshal {v} into field {k}"
            )));
        };
    }
    match core
        .writer
        .submit(Command::AutopilotSet { config, cas })
        .await?
    {
        Reply::Bool(ok) => Ok(json_plain(&ok)),
        _ => Ok(json_plain(&true)),
    }
}

fn server_health(core: &Core) -> Value {
    json!({
        "ID": core.node_id(),
        "Name": core.config.node,
        "Address": super::misc::raft_addr(core),
        "SerfStatus": "alive",
        "Version": CONSUL_VERSION,
        "Leader": true,
        "LastContact": "0s",
        "LastTerm": 1,
        "LastIndex": core.index(),
        "Healthy": true,
        "Voter": true,
        "StableSince": cairn_wire::rfc3339_seconds(core.started),
    })
}

/// `GET /v1/operator/autopilot/health`.
pub async fn autopilot_health(State(core): State<Arc<Core>>) -> HttpResult {
    Ok(json_plain(&json!({
        "Healthy": true,
        "FailureTolerance": 0,
        "Servers": [server_health(&core)],
    })))
}

/// `GET /v1/operator/autopilot/state`.
pub async fn autopilot_state(State(core): State<Arc<Core>>) -> HttpResult {
    let id = core.node_id();
    let meta = core
        .current
        .load()
        .nodes
        .get(&core.config.node)
        .map(|n| json!(n.meta))
        .unwrap_or(Value::Null);
    let mut server = server_health(&core);
    if let Value::Object(m) = &mut server {
        m.remove("SerfStatus");
        m.remove("Leader");
        m.remove("Voter");
        m.insert("NodeStatus".into(), json!("alive"));
        m.insert("ReadReplica".into(), json!(false));
        m.insert("Status".into(), json!("leader"));
        m.insert("Meta".into(), meta);
        m.insert("NodeType".into(), json!("voter"));
    }
    Ok(json_plain(&json!({
        "Healthy": true,
        "FailureTolerance": 0,
        "OptimisticFailureTolerance": 0,
        "Servers": {id.clone(): server},
        "Leader": id,
        "Voters": [id],
    })))
}

/// `/v1/operator/keyring` (every method): gossip encryption is off, so every pool reports the
/// failure a Consul server without a keyring reports.
pub async fn keyring(
    State(core): State<Arc<Core>>,
    method: axum::http::Method,
    body: Bytes,
) -> HttpResult {
    if method != axum::http::Method::GET {
        let v = decode_value(&body)?;
        if let Some(key) = v.get("Key").and_then(Value::as_str)
            && cairn_wire::b64_decode(key).is_err()
        {
            return Err(HttpError::internal(format!(
                "1 error occurred:\n\t* illegal base64 data in key {key:?}\n\n"
            )));
        }
    }
    let why = if method == axum::http::Method::GET {
        "Keyring is empty (encryption not enabled)"
    } else {
        "No keyring to modify (encryption not enabled)"
    };
    let node = &core.config.node;
    let dc = &core.config.datacenter;
    Err(HttpError::internal(format!(
        "4 errors occurred:\n\t* WAN error: 1/1 nodes reported failure\n\t* {node}.{dc}: {why}\n\t* {dc} (LAN) error: 1/1 nodes reported failure\n\t* {node}: {why}\n\n"
    )))
}

/// `GET /v1/operator/usage[?global]`: service and node counts; the body carries Consul's query
/// metadata fields, as Consul's does.
pub async fn usage(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let dc = core.config.datacenter.clone();
    let (idx, body) = blocking(&core, &read.opts, Topic::Catalog, |st| {
        let mut names = std::collections::BTreeSet::new();
        let mut instances = 0u64;
        let mut billable = 0u64;
        let mut kinds: std::collections::BTreeMap<&str, u64> = [
            "api-gateway",
            "connect-native",
            "connect-proxy",
            "ingress-gateway",
            "mesh-gateway",
            "terminating-gateway",
        ]
        .into_iter()
        .map(|k| (k, 0))
        .collect();
        for ((_, id), svc) in st.services.iter() {
            names.insert(svc.service.clone());
            instances += 1;
            if svc.connect.native {
                *kinds.entry("connect-native").or_default() += 1;
            }
            if let Some(n) = kinds.get_mut(svc.kind.as_str()) {
                *n += 1;
            }
            if (svc.kind.is_empty() || svc.connect.native) && !is_server_service(id) {
                billable += 1;
            }
        }
        let body = json!({
            "Usage": {dc.clone(): {
                "Services": names.len(),
                "ServiceInstances": instances,
                "ConnectServiceInstances": kinds,
                "BillableServiceInstances": billable,
                "Nodes": st.nodes.len(),
            }},
            "Index": st.catalog_index(),
            "LastContact": 0,
            "KnownLeader": true,
            "ConsistencyLevel": "leader",
            "NotModified": false,
            "Backend": 0,
            "ResultsFilteredByACLs": false,
        });
        (st.catalog_index(), body)
    })
    .await;
    Ok(json_read(idx, &body))
}
