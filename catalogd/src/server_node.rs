//! What a Consul server keeps on its own node, so clients and UIs that count on it find it: the
//! `consul` service (the server's RPC port) and the `serfHealth` node check that says the member
//! is alive. They belong to the server, not to the agent's local state, so the agent endpoints
//! (`/v1/agent/services`, `/v1/agent/checks`) do not list them, as Consul's do not. Also the
//! server's starting values: its node's coordinate and the autopilot configuration.

use std::collections::BTreeMap;
use std::net::IpAddr;

use cairn_wire::{CatalogRegistration, CheckStatus, HealthCheck, Node, NodeService};
use serde_json::{Value, json};

/// The Consul API level catalogd reports (`Config.Version`, member tags, the `consul` service).
pub const CONSUL_VERSION: &str = "1.17.0";
/// Service a Consul server registers on itself.
pub const SERVER_SERVICE: &str = "consul";
/// Port of that service (Consul's server RPC port).
pub const SERVER_PORT: u16 = 8300;
/// Node check of a live member.
pub const SERF_CHECK_ID: &str = "serfHealth";
pub const SERF_CHECK_NAME: &str = "Serf Health Status";
pub const SERF_ALIVE_OUTPUT: &str = "Agent alive and reachable";

/// Whether a service on catalogd's node is the server's own rather than the agent's.
pub fn is_server_service(id: &str) -> bool {
    id == SERVER_SERVICE
}

/// Whether a check on catalogd's node is the server's own rather than the agent's.
pub fn is_server_check(id: &str) -> bool {
    id == SERF_CHECK_ID
}

/// The `serfHealth` check of a live member `node`.
pub fn serf_health(node: &str) -> HealthCheck {
    HealthCheck {
        node: node.to_string(),
        check_id: SERF_CHECK_ID.to_string(),
        name: SERF_CHECK_NAME.to_string(),
        status: CheckStatus::Passing,
        output: SERF_ALIVE_OUTPUT.to_string(),
        ..Default::default()
    }
}

/// Registration of catalogd's node `node` (at `advertise`) with the server's service and check;
/// `existing` keeps what operators set on the node (tagged addresses, meta) across restarts.
pub fn registration(
    node: &str,
    advertise: IpAddr,
    id: String,
    existing: Option<&Node>,
) -> CatalogRegistration {
    let meta: BTreeMap<String, String> = [
        ("non_voter", "false"),
        ("raft_version", "3"),
        ("read_replica", "false"),
        ("serf_protocol_current", "2"),
        ("serf_protocol_max", "5"),
        ("serf_protocol_min", "1"),
        ("version", CONSUL_VERSION),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let address = advertise.to_string();
    let mut tagged = existing
        .map(|n| n.tagged_addresses.clone())
        .unwrap_or_default();
    tagged
        .entry("lan".to_string())
        .or_insert_with(|| address.clone());
    tagged
        .entry("wan".to_string())
        .or_insert_with(|| address.clone());
    CatalogRegistration {
        id,
        node: node.to_string(),
        address,
        tagged_addresses: tagged,
        node_meta: existing.map(|n| n.meta.clone()).unwrap_or_else(|| {
            BTreeMap::from([("consul-network-segment".to_string(), String::new())])
        }),
        service: Some(NodeService {
            id: SERVER_SERVICE.to_string(),
            service: SERVER_SERVICE.to_string(),
            port: SERVER_PORT,
            meta,
            ..Default::default()
        }),
        check: Some(serf_health(node)),
        ..Default::default()
    }
}

/// Serf's initial coordinate, the server node's until a client stores another: 8 zero
/// dimensions, the maximum error, no adjustment, the minimum height.
pub fn origin_coordinate() -> Value {
    json!({"Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0,
        "Height": 1e-05})
}

/// Consul's default autopilot configuration.
pub fn default_autopilot() -> Value {
    json!({
        "CleanupDeadServers": true,
        "LastContactThreshold": "200ms",
        "MaxTrailingLogs": 250,
        "MinQuorum": 0,
        "ServerStabilizationTime": "10s",
        "RedundancyZoneTag": "",
        "DisableUpgradeMigration": false,
        "UpgradeVersionTag": "",
    })
}
