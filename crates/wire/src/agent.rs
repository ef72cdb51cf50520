//! Agent endpoint bodies: service and check registration, TTL updates, `/v1/agent/self`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{StringMap, Weights};
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
    pub args: Vec<String>,
    pub script_args: Vec<String>,
    pub interval: String,
    pub timeout: String,
    pub deregister_critical_service_after: String,
}

/// Body of `PUT /v1/agent/service/register`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentServiceRegistration {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub tagged_addresses: BTreeMap<String, Value>,
    pub meta: StringMap,
    pub port: u16,
    pub kind: String,
    pub check: Option<AgentCheckRegistration>,
    pub checks: Vec<AgentCheckRegistration>,
    pub enable_tag_override: bool,
    pub weights: Option<Weights>,
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
