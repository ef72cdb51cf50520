//! Agent endpoint bodies: service and check registration, TTL updates, `/v1/agent/self`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{NodeService, StringMap, Weights};
use crate::connect::{
    AgentProxyConfig, ConnectProxyConfig, Locality, ServiceConnect, ServiceTaggedAddresses,
    is_proxy_kind,
};
use crate::health::CheckStatus;

/// A check as registered through the agent (`/v1/agent/check/register` or a service's `Check`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentCheckRegistration {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub notes: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub status: Option<CheckStatus>,
    #[serde(rename = "TTL")]
    pub ttl: String,
    #[serde(rename = "HTTP")]
    pub http: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub method: String,
    pub body: String,
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    #[serde(rename = "TCP")]
    pub tcp: String,
    #[serde(rename = "UDP")]
    pub udp: String,
    #[serde(rename = "GRPC")]
    pub grpc: String,
    #[serde(rename = "GRPCUseTLS")]
    pub grpc_use_tls: bool,
    #[serde(rename = "H2PING")]
    pub h2ping: String,
    #[serde(rename = "H2PingUseTLS")]
    pub h2ping_use_tls: Option<bool>,
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    pub disable_redirects: bool,
    #[serde(rename = "DockerContainerID")]
    pub docker_container_id: String,
    pub shell: String,
    pub alias_node: String,
    pub alias_service: String,
    pub args: Vec<String>,
    pub script_args: Vec<String>,
    pub interval: String,
    pub timeout: String,
    pub deregister_critical_service_after: String,
    pub output_max_size: u64,
    pub success_before_passing: u64,
    pub failures_before_warning: u64,
    pub failures_before_critical: u64,
}

/// Body of `PUT /v1/agent/service/register` (Consul's `ServiceDefinition`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentServiceRegistration {
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub tagged_addresses: ServiceTaggedAddresses,
    pub meta: StringMap,
    pub port: u16,
    pub socket_path: String,
    pub check: Option<AgentCheckRegistration>,
    pub checks: Vec<AgentCheckRegistration>,
    pub enable_tag_override: bool,
    pub weights: Option<Weights>,
    pub locality: Option<Locality>,
    pub proxy: Option<ConnectProxyConfig>,
    pub connect: Option<AgentServiceConnect>,
    /// Accepted as Consul does; catalogd keeps no per-service tokens.
    #[serde(skip_serializing)]
    pub token: String,
}

/// `Connect` of a service registration: mesh-native, or a sidecar proxy to register with it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentServiceConnect {
    pub native: bool,
    pub sidecar_service: Option<Box<AgentServiceRegistration>>,
}

/// A service as the agent endpoints return it (`api.AgentService`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentService {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub meta: StringMap,
    pub port: u16,
    pub address: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: ServiceTaggedAddresses,
    pub weights: Weights,
    pub enable_tag_override: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<AgentProxyConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ServiceConnect>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer_name: String,
    pub datacenter: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
}

impl AgentService {
    /// The agent's view of a stored service: no Raft indexes, `Proxy` only for proxies and
    /// gateways, `Connect` only when native.
    pub fn from_node_service(s: &NodeService, datacenter: &str) -> Self {
        AgentService {
            kind: s.kind.clone(),
            id: s.id.clone(),
            service: s.service.clone(),
            tags: s.tags.clone(),
            meta: s.meta.clone(),
            port: s.port,
            address: s.address.clone(),
            socket_path: s.socket_path.clone(),
            tagged_addresses: s.tagged_addresses.clone(),
            weights: s.weights,
            enable_tag_override: s.enable_tag_override,
            content_hash: String::new(),
            proxy: is_proxy_kind(&s.kind).then(|| s.proxy.for_agent()),
            connect: s.connect.native.then(|| s.connect.clone()),
            peer_name: s.peer_name.clone(),
            datacenter: datacenter.to_string(),
            locality: s.locality.clone(),
        }
    }
}

/// Body of `PUT /v1/agent/check/update/:id`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckUpdate {
    pub status: Option<CheckStatus>,
    pub output: String,
}

/// Body of `/v1/agent/self` (the fields clients read).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentSelf {
    pub config: AgentConfig,
    pub member: AgentMember,
    pub meta: StringMap,
}

/// `Config` of `/v1/agent/self`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentConfig {
    pub datacenter: String,
    pub node_name: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub server: bool,
    pub revision: String,
    pub version: String,
}

/// A gossip member (`/v1/agent/members`); catalogd reports itself.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentMember {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub tags: StringMap,
    /// 1 = alive, as Serf numbers it.
    pub status: u8,
    pub protocol_min: u8,
    pub protocol_max: u8,
    pub protocol_cur: u8,
    pub delegate_min: u8,
    pub delegate_max: u8,
    pub delegate_cur: u8,
}
