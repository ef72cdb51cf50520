//! The agent protocol between offerd and taskrun (cairn's own, plain JSON over HTTP):
//!
//! - `POST /v1/agents/register` [`AgentRegistration`] → [`RegisterResponse`]: the node, its
//!   resources and attributes, and the task ids it already runs.
//! - `GET /v1/agents/{node}/tasks?index=N&wait=D` → [`DesiredTasks`] with `X-Consul-Index`: the
//!   whole set of tasks the node should run, as a blocking query (level-triggered, so either side
//!   can restart and converge by comparing sets). Each poll is also the agent's heartbeat.
//! - `POST /v1/agents/{node}/status` [`StatusBatch`]: task state changes, batched.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::app::HealthCheckDef;
use crate::resources::{Attributes, Resources};
use crate::task_state::TaskState;

/// An agent announcing itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRegistration {
    /// Node name: the agent's identity (`slaveId`, `hostname` for constraints).
    pub node: String,
    /// Address tasks are reachable on (task `host`, catalog service address).
    pub address: String,
    /// The agent's own HTTP API (task logs), `host:port`.
    #[serde(default)]
    pub http_addr: String,
    pub resources: Resources,
    #[serde(default)]
    pub attributes: Attributes,
    /// The latest status of every task it knows (running ones, and terminal ones offerd may not
    /// have heard of yet), so a restarted offerd or agent converges at once.
    #[serde(default)]
    pub tasks: Vec<TaskStatusUpdate>,
}

/// offerd's answer to a registration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub node: String,
    /// The agent must poll (heartbeat) at least this often, in milliseconds.
    pub heartbeat_ms: u64,
}

/// An agent as offerd sees it (`GET /v1/agents`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub node: String,
    pub address: String,
    pub http_addr: String,
    pub resources: Resources,
    /// Resources taken by the tasks placed there.
    pub used: Resources,
    pub attributes: Attributes,
    /// `active` or `lost`.
    pub state: String,
    pub tasks: usize,
    /// Milliseconds since the agent was last heard from.
    pub last_seen_ms_ago: u64,
}

/// One task an agent should run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: String,
    pub app_id: String,
    /// App version the task was launched from.
    pub version: String,
    #[serde(default)]
    pub cmd: Option<String>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    /// The app's `user` (Marathon's field): who the task runs as on the agent (absent: the
    /// agent's `--default-user`; root only where the agent has `--allow-root-tasks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
    /// Host ports assigned from the agent's ranges, in portDefinitions order.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Names of those ports where the app gave one.
    #[serde(default)]
    pub port_names: Vec<Option<String>>,
    #[serde(default)]
    pub health_checks: Vec<HealthCheckDef>,
    pub kill_grace_seconds: f64,
    #[serde(default)]
    pub container: Option<Value>,
    /// The app's `networks` (Marathon 1.5+), which say what network the container joins; absent
    /// in specs from before them, whose container carries `docker.network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<crate::network::Network>>,
    /// The app's service ports (the load balancer's ports), in the app's order.
    #[serde(default)]
    pub service_ports: Vec<u16>,
    /// The catalog service name (see [`crate::service_name`]).
    pub service_name: String,
}

/// The desired set of one agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredTasks {
    pub tasks: Vec<TaskSpec>,
}

/// One task's change of state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatusUpdate {
    pub task_id: String,
    pub state: TaskState,
    #[serde(default)]
    pub message: String,
    /// Unix milliseconds when the agent saw the change.
    #[serde(default)]
    pub timestamp: u64,
    /// Health from the task's checks, when it has any and they have run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

/// Status updates posted together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusBatch {
    pub updates: Vec<TaskStatusUpdate>,
}
