//! The records offerd keeps, in memory and (as JSON) in the store: apps with their version
//! history and launch backoff, tasks, agents and deployments.

use cairn_marathon::{AgentRegistration, App, Attributes, Resources, TaskState};
use imbl::{OrdMap, OrdSet};
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
/// is durable. The task and deployment tables keep their own indexes (by node, by app) in the
/// same persistent maps, so an index can never disagree with the records of its clone.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub apps: OrdMap<String, AppEntry>,
    pub tasks: Tasks,
    pub agents: OrdMap<String, Agent>,
    pub deployments: Deployments,
    pub queue: OrdMap<String, QueueEntry>,
    /// The most recently ended tasks with their final state, newest last (memory only), so
    /// frameworks and operators can read how a task ended.
    pub finished: imbl::Vector<Task>,
}

/// The tasks by id, indexed by node and by app, and each agent's desired set with every spec
/// already encoded: an agent's desired set, an agent listing or an app's scheduling round costs
/// in proportion to that agent's or app's tasks, not to the whole fleet's, and answering an
/// agent's poll copies bytes instead of cloning and encoding specs (1,000 agents are answered
/// after every change to their sets). Every change goes through [`Tasks::insert`],
/// [`Tasks::remove`] and [`Tasks::get_mut`] (whose guard re-indexes a task whose node, app or
/// desiredness changed), so the indexes are kept in one place. A task's spec is never changed
/// after launch (a new spec is a new task), so its encoding is made once.
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    by_id: OrdMap<String, Task>,
    by_node: OrdMap<String, OrdSet<String>>,
    by_app: OrdMap<String, OrdSet<String>>,
    /// Per node: its desired tasks' specs as JSON, by task id.
    desired: OrdMap<String, OrdMap<String, SpecJson>>,
}

/// A task spec encoded as JSON (what an agent's desired set is made of).
pub type SpecJson = std::sync::Arc<[u8]>;

fn spec_json(t: &Task) -> SpecJson {
    // A TaskSpec is plain data (strings, numbers, maps with string keys, JSON values): its
    // encoding cannot fail; an empty object would only ever stand for one that did.
    serde_json::to_vec(&t.spec)
        .unwrap_or_else(|_| b"{}".to_vec())
        .into()
}

fn desired_add(desired: &mut OrdMap<String, OrdMap<String, SpecJson>>, t: &Task) {
    let json = spec_json(t);
    match desired.get_mut(&t.node) {
        Some(set) => {
            set.insert(t.id.clone(), json);
        }
        None => {
            desired.insert(t.node.clone(), OrdMap::unit(t.id.clone(), json));
        }
    }
}

fn desired_remove(desired: &mut OrdMap<String, OrdMap<String, SpecJson>>, node: &str, id: &str) {
    let empty = match desired.get_mut(node) {
        Some(set) => {
            set.remove(id);
            set.is_empty()
        }
        None => false,
    };
    if empty {
        desired.remove(node);
    }
}

/// Adds `id` under `key` in an index.
fn index_add(index: &mut OrdMap<String, OrdSet<String>>, key: &str, id: &str) {
    match index.get_mut(key) {
        Some(ids) => {
            ids.insert(id.to_string());
        }
        None => {
            index.insert(key.to_string(), OrdSet::unit(id.to_string()));
        }
    }
}

/// Removes `id` from under `key` (and the key once it holds nothing).
fn index_remove(index: &mut OrdMap<String, OrdSet<String>>, key: &str, id: &str) {
    let empty = match index.get_mut(key) {
        Some(ids) => {
            ids.remove(id);
            ids.is_empty()
        }
        None => false,
    };
    if empty {
        index.remove(key);
    }
}

impl Tasks {
    pub fn get(&self, id: &str) -> Option<&Task> {
        self.by_id.get(id)
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every task, by id.
    pub fn values(&self) -> impl Iterator<Item = &Task> {
        self.by_id.values()
    }

    /// Adds (or replaces) a task under its id.
    pub fn insert(&mut self, task: Task) {
        self.remove(&task.id);
        index_add(&mut self.by_node, &task.node, &task.id);
        index_add(&mut self.by_app, &task.app_id, &task.id);
        if task.is_desired() {
            desired_add(&mut self.desired, &task);
        }
        self.by_id.insert(task.id.clone(), task);
    }

    pub fn remove(&mut self, id: &str) -> Option<Task> {
        let task = self.by_id.remove(id)?;
        index_remove(&mut self.by_node, &task.node, id);
        index_remove(&mut self.by_app, &task.app_id, id);
        desired_remove(&mut self.desired, &task.node, id);
        Some(task)
    }

    /// A task to change in place; the guard re-indexes it when dropped, should its node, app or
    /// desiredness have changed.
    pub fn get_mut(&mut self, id: &str) -> Option<TaskMut<'_>> {
        let task = self.by_id.get_mut(id)?;
        let (node, app_id, desired) = (task.node.clone(), task.app_id.clone(), task.is_desired());
        Some(TaskMut {
            task,
            by_node: &mut self.by_node,
            by_app: &mut self.by_app,
            desired_sets: &mut self.desired,
            node,
            app_id,
            desired,
        })
    }

    /// The specs of `node`'s desired tasks as JSON, by task id: its desired set.
    pub fn desired_on(&self, node: &str) -> impl Iterator<Item = &SpecJson> {
        self.desired
            .get(node)
            .into_iter()
            .flat_map(|set| set.values())
    }

    /// The tasks recorded on `node` (in any state).
    pub fn on_node<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Task> + 'a {
        self.by_node
            .get(node)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.by_id.get(id))
    }

    /// The tasks of `app_id` (in any state; launched by an app or by a framework under it).
    /// Task ids start with the app id's prefix (see [`cairn_marathon::task_id_for`]), so this is
    /// a walk over that range of ids, with no lookup per task; ids of another app sharing the
    /// prefix (`/a/b` and `/a_b`) are skipped.
    pub fn of_app<'a>(&'a self, app_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        let prefix = cairn_marathon::task_id_for(app_id, "");
        self.by_id
            .range(prefix.clone()..)
            .take_while(move |(id, _)| id.starts_with(&prefix))
            .map(|(_, t)| t)
            .filter(move |t| t.app_id == app_id)
    }

    /// Every app id that has tasks.
    pub fn app_ids(&self) -> impl Iterator<Item = &String> {
        self.by_app.keys()
    }

    /// The indexes as they would be rebuilt from the records: `(by node, by app, desired
    /// sets)`, for tests that check them against [`Tasks::indexes`].
    #[cfg(test)]
    pub fn recomputed_indexes(&self) -> (IndexOf, IndexOf, DesiredOf) {
        let mut by_node = OrdMap::new();
        let mut by_app = OrdMap::new();
        let mut desired = OrdMap::new();
        for t in self.by_id.values() {
            index_add(&mut by_node, &t.node, &t.id);
            index_add(&mut by_app, &t.app_id, &t.id);
            if t.is_desired() {
                desired_add(&mut desired, t);
            }
        }
        (by_node, by_app, desired)
    }

    #[cfg(test)]
    pub fn indexes(&self) -> (IndexOf, IndexOf, DesiredOf) {
        (
            self.by_node.clone(),
            self.by_app.clone(),
            self.desired.clone(),
        )
    }
}

/// `tasks[id]` and `deployments[id]`, as on the maps they wrap (panics on an unknown id, like
/// them: for ids just looked up).
macro_rules! index_by_id {
    ($table:ty, $record:ty) => {
        impl std::ops::Index<&str> for $table {
            type Output = $record;
            fn index(&self, id: &str) -> &$record {
                &self.by_id[id]
            }
        }
        impl std::ops::Index<&String> for $table {
            type Output = $record;
            fn index(&self, id: &String) -> &$record {
                &self.by_id[id.as_str()]
            }
        }
    };
}
index_by_id!(Tasks, Task);
index_by_id!(Deployments, Deployment);

/// An index: key → ids.
pub type IndexOf = OrdMap<String, OrdSet<String>>;
/// The desired sets: node → task id → spec JSON.
pub type DesiredOf = OrdMap<String, OrdMap<String, SpecJson>>;

/// A task being changed in place (see [`Tasks::get_mut`]).
pub struct TaskMut<'a> {
    task: &'a mut Task,
    by_node: &'a mut OrdMap<String, OrdSet<String>>,
    by_app: &'a mut OrdMap<String, OrdSet<String>>,
    desired_sets: &'a mut DesiredOf,
    node: String,
    app_id: String,
    desired: bool,
}

impl std::ops::Deref for TaskMut<'_> {
    type Target = Task;
    fn deref(&self) -> &Task {
        &*self.task
    }
}

impl std::ops::DerefMut for TaskMut<'_> {
    fn deref_mut(&mut self) -> &mut Task {
        &mut *self.task
    }
}

impl Drop for TaskMut<'_> {
    fn drop(&mut self) {
        if self.task.node != self.node {
            index_remove(self.by_node, &self.node, &self.task.id);
            index_add(self.by_node, &self.task.node, &self.task.id);
        }
        if self.task.app_id != self.app_id {
            index_remove(self.by_app, &self.app_id, &self.task.id);
            index_add(self.by_app, &self.task.app_id, &self.task.id);
        }
        let desired = self.task.is_desired();
        if self.desired && (!desired || self.task.node != self.node) {
            desired_remove(self.desired_sets, &self.node, &self.task.id);
        }
        if desired && (!self.desired || self.task.node != self.node) {
            desired_add(self.desired_sets, self.task);
        }
    }
}

/// The running deployments by id, indexed by app (at most one runs per app unless forced, but
/// the index does not assume it).
#[derive(Clone, Debug, Default)]
pub struct Deployments {
    by_id: OrdMap<String, Deployment>,
    by_app: OrdMap<String, OrdSet<String>>,
}

impl Deployments {
    pub fn get(&self, id: &str) -> Option<&Deployment> {
        self.by_id.get(id)
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &Deployment> {
        self.by_id.values()
    }

    pub fn insert(&mut self, d: Deployment) {
        if let Some(old) = self.by_id.get(&d.id) {
            let app = old.app_id.clone();
            index_remove(&mut self.by_app, &app, &d.id);
        }
        index_add(&mut self.by_app, &d.app_id, &d.id);
        self.by_id.insert(d.id.clone(), d);
    }

    pub fn remove(&mut self, id: &str) -> Option<Deployment> {
        let d = self.by_id.remove(id)?;
        index_remove(&mut self.by_app, &d.app_id, id);
        Some(d)
    }

    /// The deployments of `app_id`, by id.
    pub fn of_app<'a>(&'a self, app_id: &str) -> impl Iterator<Item = &'a Deployment> + 'a {
        self.by_app
            .get(app_id)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.by_id.get(id))
    }

    #[cfg(test)]
    pub fn index_is_consistent(&self) -> bool {
        let mut by_app = OrdMap::new();
        for d in self.by_id.values() {
            index_add(&mut by_app, &d.app_id, &d.id);
        }
        by_app == self.by_app
    }
}

/// How many ended tasks [`State::finished`] keeps.
pub const FINISHED_KEPT: usize = 1000;

/// Versions kept per app in [`AppEntry::versions`] (older ones are dropped from the store), as
/// Marathon's `zk_max_versions`.
pub const MAX_VERSIONS: usize = 50;

impl State {
    /// The active tasks of an app (from the app index: its own tasks only).
    pub fn app_tasks<'a>(&'a self, app_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks.of_app(app_id).filter(|t| t.is_active())
    }

    /// The deployment running for an app, if any.
    pub fn deployment_of(&self, app_id: &str) -> Option<&Deployment> {
        self.deployments.of_app(app_id).next()
    }
}
