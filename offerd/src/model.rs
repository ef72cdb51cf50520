//! The records offerd keeps, in memory and (as JSON) in the store: apps with their version
//! history and launch backoff, tasks, agents and deployments.

use cairn_marathon::{AgentRegistration, App, Attributes, Resources, TaskState};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An app and what the scheduler remembers about launching it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppEntry {
    /// The current version.
    pub app: App,
    /// Every version's timestamp, oldest first (the definitions live under `versions/`).
    pub versions: Vec<String>,
    /// Consecutive failed launches of the current config (drives the backoff).
    pub failures: u32,
    /// No launch before this instant (Unix ms).
    pub delay_until_ms: u64,
    /// The last task failure (Marathon's `lastTaskFailure`).
    #[serde(default)]
    pub last_failure: Option<TaskFailure>,
}

impl AppEntry {
    /// The config version tasks of the current definition carry.
    pub fn config_version(&self) -> &str {
        self.app
            .version_info
            .as_ref()
            .map(|v| v.last_config_change_at.as_str())
            .unwrap_or_default()
    }
}

/// Marathon's `lastTaskFailure`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskFailure {
    pub app_id: String,
    pub host: String,
    pub message: String,
    pub state: String,
    pub task_id: String,
    pub timestamp: String,
    pub version: String,
    pub slave_id: String,
}

/// A task offerd placed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Task {
    pub id: String,
    pub app_id: String,
    /// The app version it was launched from.
    pub version: String,
    /// The app's config version then (see [`AppEntry::config_version`]).
    pub config_version: String,
    pub node: String,
    pub host: String,
    pub ports: Vec<u16>,
    pub service_ports: Vec<u16>,
    pub state: TaskState,
    pub staged_at: u64,
    pub started_at: Option<u64>,
    #[serde(default)]
    pub message: String,
    /// All its catalog checks passing (None: no checks, or not known yet).
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Since when (Unix ms) its checks have been failing, without a pass in between.
    #[serde(default)]
    pub unhealthy_since: Option<u64>,
    /// When its health was seen to change (Marathon's health result timestamps).
    #[serde(default)]
    pub health: HealthHistory,
    /// offerd wants it gone: it has left its agent's desired set.
    #[serde(default)]
    pub kill_requested: bool,
    /// The whole launch spec, as sent to the agent.
    pub spec: cairn_marathon::TaskSpec,
    /// The framework that launched it through the offers API (None: a Marathon app's task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
}

/// Marathon's health result times for a task (Unix ms). offerd learns health from the catalog,
/// which reports status changes, not every run of a check: `lastSuccess`/`lastFailure` are the
/// last time the task was seen turning (or first seen) passing/failing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct HealthHistory {
    pub first_success: Option<u64>,
    pub last_success: Option<u64>,
    pub last_failure: Option<u64>,
    /// The failing check's output.
    pub last_failure_cause: Option<String>,
}

impl HealthHistory {
    /// Records a pass or a failure seen at `now_ms`.
    pub fn record(&mut self, passing: bool, cause: Option<String>, now_ms: u64) {
        if passing {
            self.first_success.get_or_insert(now_ms);
            self.last_success = Some(now_ms);
        } else {
            self.last_failure = Some(now_ms);
            self.last_failure_cause = cause;
        }
    }
}

impl Task {
    /// Counts against its agent's resources and its app's instances.
    pub fn is_active(&self) -> bool {
        !self.state.is_terminal()
    }

    /// In its agent's desired set.
    pub fn is_desired(&self) -> bool {
        self.is_active() && !self.kill_requested
    }

    /// Marathon's `ipAddresses` of the task: the address it is reached on (its agent's; cairn
    /// does not report containers' own bridge addresses), as Mesos' `NetworkInfo.IPAddress`. A
    /// host name is not an IP address and gives none. Both the task JSON and the events carry it.
    pub fn ip_addresses(&self) -> Value {
        match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => json!([{
                "ipAddress": ip.to_string(),
                "protocol": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
            }]),
            Err(_) => json!([]),
        }
    }
}

/// An agent (a taskrun node).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Agent {
    pub node: String,
    pub address: String,
    pub http_addr: String,
    pub resources: Resources,
    pub attributes: Attributes,
    /// Declared lost after `--agent-timeout` of silence; its tasks were replaced.
    pub lost: bool,
    /// Taken out for maintenance: no new tasks; its tasks are replaced elsewhere.
    #[serde(default)]
    pub draining: bool,
    /// Unix ms of the last request from it.
    pub last_seen_ms: u64,
}

impl Agent {
    pub fn from_registration(r: &AgentRegistration, now_ms: u64) -> Agent {
        Agent {
            node: r.node.clone(),
            address: r.address.clone(),
            http_addr: r.http_addr.clone(),
            resources: r.resources.clone(),
            attributes: r.attributes.clone(),
            lost: false,
            draining: false,
            last_seen_ms: now_ms,
        }
    }
}

/// What a deployment does to its app.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum DeploymentKind {
    Start,
    Scale,
    Restart,
    Stop,
}

/// A running deployment: the app converging on a new version.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Deployment {
    pub id: String,
    pub version: String,
    pub app_id: String,
    pub kind: DeploymentKind,
    /// The definition before the change (None when the app is new): what a rollback restores.
    pub previous: Option<App>,
    pub started_ms: u64,
}

impl Deployment {
    /// Marathon's step and action names.
    pub fn steps(&self) -> Vec<Vec<&'static str>> {
        match self.kind {
            DeploymentKind::Start => vec![vec!["StartApplication"], vec!["ScaleApplication"]],
            DeploymentKind::Scale => vec![vec!["ScaleApplication"]],
            DeploymentKind::Restart => vec![vec!["RestartApplication"]],
            DeploymentKind::Stop => vec![vec!["StopApplication"]],
        }
    }
}

/// Why an app's missing tasks are not launched (for `/v2/queue`); not persisted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueEntry {
    pub count: u32,
    pub delay_until_ms: u64,
    pub since_ms: u64,
    pub reason: Option<String>,
    pub agents_considered: usize,
}

/// Everything offerd knows. The collections are persistent (structurally shared) maps, so a
/// clone is O(1): a change is applied to a clone and the clone replaces the state only once it
/// is durable.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub apps: OrdMap<String, AppEntry>,
    pub tasks: OrdMap<String, Task>,
    pub agents: OrdMap<String, Agent>,
    pub deployments: OrdMap<String, Deployment>,
    pub queue: OrdMap<String, QueueEntry>,
    /// The most recently ended tasks with their final state, newest last (memory only), so
    /// frameworks and operators can read how a task ended.
    pub finished: imbl::Vector<Task>,
}

/// How many ended tasks [`State::finished`] keeps.
pub const FINISHED_KEPT: usize = 1000;

/// Versions kept per app in [`AppEntry::versions`] (older ones are dropped from the store), as
/// Marathon's `zk_max_versions`.
pub const MAX_VERSIONS: usize = 50;

impl State {
    /// The active tasks of an app.
    /// Task ids start with the app id's prefix (see [`cairn_marathon::task_id_for`]), so this is
    /// a range scan, not a walk over every task.
    pub fn app_tasks<'a>(&'a self, app_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        let prefix = cairn_marathon::task_id_for(app_id, "");
        self.tasks
            .range(prefix.clone()..)
            .take_while(move |(id, _)| id.starts_with(&prefix))
            .map(|(_, t)| t)
            .filter(move |t| t.app_id == app_id && t.is_active())
    }

    /// The deployment running for an app, if any.
    pub fn deployment_of(&self, app_id: &str) -> Option<&Deployment> {
        self.deployments.values().find(|d| d.app_id == app_id)
    }
}
