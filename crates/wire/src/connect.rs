//! The service-mesh parts of a service as Consul stores and returns them: proxy configuration,
//! `Connect`, `Locality` and service tagged addresses. catalogd runs no proxies; it keeps what
//! clients register and hands it back in Consul's shapes, because mesh tooling and UIs read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// An address and port (service `TaggedAddresses` values).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceAddress {
    pub address: String,
    pub port: i64,
}

/// Where a service runs, for locality-aware routing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Locality {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub zone: String,
}

/// `MeshGateway` of a proxy or upstream: `{}` when unset, as Consul renders it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MeshGatewayConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

/// `Expose` of a proxy: `{}` when unset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExposeConfig {
    #[serde(skip_serializing_if = "is_false")]
    pub checks: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<Value>,
}

/// One upstream of a proxy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Upstream {
    pub destination_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_partition: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_peer: String,
    pub destination_name: String,
    pub datacenter: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_bind_address: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub local_bind_port: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_bind_socket_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_bind_socket_mode: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    pub mesh_gateway: MeshGatewayConfig,
}

/// A proxy's configuration (`Proxy` of a service, `ServiceProxy` of a catalog row).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConnectProxyConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub envoy_extensions: Vec<Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_service_name: String,
    #[serde(
        rename = "DestinationServiceID",
        skip_serializing_if = "String::is_empty"
    )]
    pub destination_service_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_service_address: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub local_service_port: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_service_socket_path: String,
    pub mode: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Upstream>,
    pub mesh_gateway: MeshGatewayConfig,
    pub expose: ExposeConfig,
    /// Rendered only when set, as Consul's custom marshaller does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transparent_proxy: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_logs: Option<Value>,
}

/// The agent API's rendering of a proxy (`api.AgentServiceConnectProxyConfig`): like the
/// catalog's, but `Mode` is left out when empty.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentProxyConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub envoy_extensions: Vec<Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination_service_name: String,
    #[serde(
        rename = "DestinationServiceID",
        skip_serializing_if = "String::is_empty"
    )]
    pub destination_service_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_service_address: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub local_service_port: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_service_socket_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transparent_proxy: Option<Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Upstream>,
    pub mesh_gateway: MeshGatewayConfig,
    pub expose: ExposeConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_logs: Option<Value>,
}

impl ConnectProxyConfig {
    pub fn for_agent(&self) -> AgentProxyConfig {
        let c = self.clone();
        AgentProxyConfig {
            envoy_extensions: c.envoy_extensions,
            destination_service_name: c.destination_service_name,
            destination_service_id: c.destination_service_id,
            local_service_address: c.local_service_address,
            local_service_port: c.local_service_port,
            local_service_socket_path: c.local_service_socket_path,
            mode: c.mode,
            transparent_proxy: c.transparent_proxy,
            config: c.config,
            upstreams: c.upstreams,
            mesh_gateway: c.mesh_gateway,
            expose: c.expose,
            access_logs: c.access_logs,
        }
    }
}

/// `Connect` of a stored service: `{}` unless the service is mesh-native.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceConnect {
    #[serde(skip_serializing_if = "is_false")]
    pub native: bool,
}

/// Service kinds that are proxies or gateways (their `Proxy` is rendered by the agent API).
pub fn is_proxy_kind(kind: &str) -> bool {
    matches!(
        kind,
        "connect-proxy"
            | "mesh-gateway"
            | "terminating-gateway"
            | "ingress-gateway"
            | "api-gateway"
    )
}

/// Service tagged addresses keyed by name (`lan`, `wan`, `lan_ipv4`, ...).
pub type ServiceTaggedAddresses = BTreeMap<String, ServiceAddress>;
