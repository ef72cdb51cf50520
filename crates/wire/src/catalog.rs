//! Catalog and health types: nodes, services, checks, and the shapes Consul returns them in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::connect::{ConnectProxyConfig, Locality, ServiceConnect, ServiceTaggedAddresses};
use crate::health::CheckStatus;

/// Map of user-chosen string keys (`Meta`, `NodeMeta`, node `TaggedAddresses`).
pub type StringMap = BTreeMap<String, String>;

/// A node, as `/v1/catalog/nodes` returns it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: StringMap,
    pub meta: StringMap,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Load-balancing weights of a service instance.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Weights {
    pub passing: i64,
    pub warning: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_zero_port(p: &u16) -> bool {
    *p == 0
}

/// A service instance on a node (catalog node `Services`, health `Service`), in Consul's field
/// order and with its omissions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeService {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: ServiceTaggedAddresses,
    pub meta: StringMap,
    #[serde(skip_serializing_if = "is_zero_port")]
    pub port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    pub weights: Weights,
    pub enable_tag_override: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    pub proxy: ConnectProxyConfig,
    pub connect: ServiceConnect,
    pub peer_name: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Type-specific part of a check (`Definition`); durations are Go duration strings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckDefinition {
    #[serde(rename = "HTTP", skip_serializing_if = "String::is_empty")]
    pub http: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub body: String,
    #[serde(rename = "TLSServerName", skip_serializing_if = "String::is_empty")]
    pub tls_server_name: String,
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "std::ops::Not::not")]
    pub tls_skip_verify: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disable_redirects: bool,
    #[serde(rename = "TCP", skip_serializing_if = "String::is_empty")]
    pub tcp: String,
    #[serde(rename = "UDP", skip_serializing_if = "String::is_empty")]
    pub udp: String,
    #[serde(rename = "H2PING", skip_serializing_if = "String::is_empty")]
    pub h2ping: String,
    #[serde(rename = "H2PingUseTLS", skip_serializing_if = "std::ops::Not::not")]
    pub h2ping_use_tls: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub script_args: Vec<String>,
    #[serde(rename = "DockerContainerID", skip_serializing_if = "String::is_empty")]
    pub docker_container_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub shell: String,
    #[serde(rename = "GRPC", skip_serializing_if = "String::is_empty")]
    pub grpc: String,
    #[serde(rename = "GRPCUseTLS", skip_serializing_if = "std::ops::Not::not")]
    pub grpc_use_tls: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias_node: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias_service: String,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub output_max_size: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interval: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    #[serde(rename = "TTL", skip_serializing_if = "String::is_empty")]
    pub ttl: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deregister_critical_service_after: String,
}

/// A health check, as `/v1/health/*` and `/v1/agent/checks` return it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheck {
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub status: CheckStatus,
    pub notes: String,
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    #[serde(rename = "Type")]
    pub check_type: String,
    /// The definition's interval and timeout, repeated at the top level as Consul does.
    pub interval: String,
    pub timeout: String,
    pub exposed_port: u16,
    pub definition: CheckDefinition,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One row of `/v1/catalog/service/:name`: node and service fields flattened.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct CatalogService {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: StringMap,
    pub node_meta: StringMap,
    pub service_kind: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    pub service_address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_tagged_addresses: ServiceTaggedAddresses,
    pub service_weights: Weights,
    pub service_meta: StringMap,
    pub service_port: u16,
    pub service_socket_path: String,
    pub service_enable_tag_override: bool,
    pub service_proxy: ConnectProxyConfig,
    pub service_connect: ServiceConnect,
    pub service_locality: Option<Locality>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer_name: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl CatalogService {
    /// Flattens a node and one of its services the way Consul does.
    pub fn new(node: &Node, svc: &NodeService) -> Self {
        CatalogService {
            id: node.id.clone(),
            node: node.node.clone(),
            address: node.address.clone(),
            datacenter: node.datacenter.clone(),
            tagged_addresses: node.tagged_addresses.clone(),
            node_meta: node.meta.clone(),
            service_kind: svc.kind.clone(),
            service_id: svc.id.clone(),
            service_name: svc.service.clone(),
            service_tags: svc.tags.clone(),
            service_address: svc.address.clone(),
            service_tagged_addresses: svc.tagged_addresses.clone(),
            service_weights: svc.weights,
            service_meta: svc.meta.clone(),
            service_port: svc.port,
            service_socket_path: svc.socket_path.clone(),
            service_enable_tag_override: svc.enable_tag_override,
            service_proxy: svc.proxy.clone(),
            service_connect: svc.connect.clone(),
            service_locality: svc.locality.clone(),
            peer_name: svc.peer_name.clone(),
            create_index: svc.create_index,
            modify_index: svc.modify_index,
        }
    }
}

/// One row of `/v1/health/service/:name`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceEntry {
    pub node: Node,
    pub service: NodeService,
    pub checks: Vec<HealthCheck>,
}

impl ServiceEntry {
    /// The address to reach this instance at: the service's own, else its node's.
    pub fn address(&self) -> &str {
        if self.service.address.is_empty() {
            &self.node.address
        } else {
            &self.service.address
        }
    }

    /// Aggregated status over the service's and its node's checks (critical > warning > passing).
    pub fn status(&self) -> CheckStatus {
        crate::health::aggregate_status(self.checks.iter().map(|c| c.status))
    }
}

/// Body of `/v1/catalog/node/:node`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct CatalogNodeServices {
    pub node: Node,
    pub services: BTreeMap<String, NodeService>,
}

/// Body of `PUT /v1/catalog/register`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct CatalogRegistration {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: StringMap,
    pub node_meta: StringMap,
    pub service: Option<NodeService>,
    pub check: Option<HealthCheck>,
    pub checks: Vec<HealthCheck>,
    pub skip_node_update: bool,
}

impl CatalogRegistration {
    /// A cairn daemon's own service on `node` (created with `address` if new, left as it is
    /// otherwise): its API at `api_host:api_port`, tagged `cairn`, with the port and path
    /// Prometheus scrapes, so catalogd's service discovery (`/v1/cairn/prometheus/targets`)
    /// lists it. The service's ID is its name: one per daemon and node.
    pub fn daemon_service(
        name: &str,
        node: &str,
        address: &str,
        api_host: &str,
        api_port: u16,
    ) -> CatalogRegistration {
        CatalogRegistration {
            node: node.into(),
            address: address.into(),
            skip_node_update: true,
            service: Some(NodeService {
                id: name.into(),
                service: name.into(),
                tags: vec!["cairn".into()],
                address: api_host.into(),
                port: api_port,
                meta: BTreeMap::from([
                    ("prometheus_port".to_string(), api_port.to_string()),
                    ("prometheus_path".to_string(), "/metrics".to_string()),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Body of `PUT /v1/catalog/deregister`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct CatalogDeregistration {
    pub node: String,
    pub datacenter: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
}
